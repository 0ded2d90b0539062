"""`fastbp bench --models lstm_infer`: the inference workload (LSTM forward only, no
cache), its output check (tighter than the gradients'), the torch and onnxruntime
peers, --threads and --load. Sizes are tiny; no test asserts a duration.
"""
import importlib.util
import json
import sys

import numpy as np
import pytest

import fastbp
from fastbp import reference as ref
from fastbp.__main__ import main
from fastbp.bench import cli, harness, peers_onnx, workloads
from fastbp.bench.workloads import Runner

TINY = ["--quick", "--repeat", "1", "--batch", "2", "--hidden", "16", "--seq-len", "4",
        "--no-progress", "--models", "lstm_infer"]


def _installed(*names):
    return all(importlib.util.find_spec(n) is not None for n in names)


def run_bench(tmp_path, *options):
    out = tmp_path / "bench.json"
    code = main(["bench", *TINY, "--json", str(out), *options])
    return code, json.loads(out.read_text())


def rows_by_impl(doc):
    return {r["implementation"]: r for r in doc["results"]}


def test_problem_is_the_lstm_forward_from_given_states():
    lstm = workloads.make_problem("lstm", 3, 5, 8, "float32")
    p = workloads.make_problem("lstm_infer", 3, 5, 8, "float32")
    assert p.workload == "lstm_infer" and p.label == lstm.label and p.size == lstm.size
    assert p.checks == "output" and p.grad_names == workloads.INFER_OUTPUTS
    assert p.flops == pytest.approx(lstm.flops / 3)       # the forward's two products
    for name, w in lstm.data["params"].items():
        np.testing.assert_array_equal(p.data["params"][name], w)
    assert p.data["h0"].shape == p.data["c0"].shape == (3, 8) and np.any(p.data["h0"])
    assert workloads.check_tol(p) == 1e-5 < workloads.check_tol(lstm)
    out = workloads.REFERENCE["lstm_infer"](p).grads()
    assert {k: v.shape for k, v in out.items()} == {"y": (5, 3, 8), "h_n": (3, 8),
                                                    "c_n": (3, 8)}
    np.testing.assert_array_equal(out["h_n"], out["y"][-1])


def test_fastbp_row_keeps_no_cache_and_matches_the_reference():
    p = workloads.make_problem("lstm_infer", 4, 6, 16, "float32")
    runner = workloads.FASTBP["lstm_infer"](p)
    y, (h_n, c_n), cache = runner.step()
    assert cache is None                                   # keep_cache=False
    want = workloads.REFERENCE["lstm_infer"](p).grads()
    err, _ = workloads.compare_grads(runner.grads(), want)
    assert err < 1e-6


def test_quick_run_checks_outputs_and_times_every_row(tmp_path, capsys):
    impls = "fastbp,reference,torch"
    code, doc = run_bench(tmp_path, "--impl", impls, "--batch", "1,3")
    assert code == 0
    rows = doc["results"]
    assert [(r["implementation"], r["size"]["batch"]) for r in rows] == [
        (i, b) for b in (1, 3) for i in impls.split(",")]
    for row in rows:
        if row["implementation"] == "torch" and not _installed("torch"):
            assert row["status"] == workloads.NOT_INSTALLED
            continue
        assert row["status"] == "ok", row["detail"]
        assert row["median_us"] > 0 and row["gflops"] > 0 and row["ceiling_fraction"] > 0
        check = row["grad_check"]
        assert check["ok"] and check["tol"] == 1e-5 and check["max_rel_error"] <= 1e-5
        assert check["against"] == ("reference" if row["implementation"] == "fastbp"
                                    else "fastbp")
    out = capsys.readouterr().out
    assert "lstm_infer" in out and "compares the outputs" in out and "Traceback" not in out


def test_float64_runs_and_onnxruntime_says_float32_only(tmp_path):
    code, doc = run_bench(tmp_path, "--dtype", "float64",
                          "--impl", "fastbp,reference,onnxruntime")
    assert code == 0
    rows = rows_by_impl(doc)
    assert rows["fastbp"]["status"] == rows["reference"]["status"] == "ok"
    assert rows["fastbp"]["grad_check"]["tol"] == 1e-8
    want = (workloads.NOT_SUPPORTED if _installed("onnx", "onnxruntime")
            else workloads.NOT_INSTALLED)
    assert rows["onnxruntime"]["status"] == want and rows["onnxruntime"]["detail"]


def test_outputs_off_by_more_than_1e_5_are_wrong(tmp_path, monkeypatch, capsys):
    """A peer whose outputs are off by 1e-4 (inside the gradients' 1e-3) is WRONG here."""
    def off(problem):
        real = workloads.REFERENCE["lstm_infer"](problem)
        return Runner(real.step, lambda: {k: v * (1 + 1e-4) for k, v in real.grads().items()})
    real_builders = cli.builders

    def patched():
        table = real_builders()
        table["torch"] = {"lstm_infer": off}
        return table
    monkeypatch.setattr(cli, "builders", patched)
    code, doc = run_bench(tmp_path, "--impl", "fastbp,reference,torch")
    assert code == 1
    row = rows_by_impl(doc)["torch"]
    assert row["status"] == "WRONG" and row["median_us"] is None
    assert row["detail"].startswith("output ") and "fastbp" in row["detail"]
    assert "WRONG" in capsys.readouterr().out


def test_threads_set_fastbps_team_during_the_run_and_restore_it(tmp_path, monkeypatch):
    before = fastbp.get_num_threads()
    seen = []
    real_measure = harness.measure

    def measure(steps, **kw):
        seen.append((fastbp.get_num_threads(), peers_onnx.get_intra_op_threads()))
        return real_measure(steps, **kw)
    monkeypatch.setattr(cli.harness, "measure", measure)
    code, doc = run_bench(tmp_path, "--impl", "fastbp", "--threads", "1")
    assert code == 0
    assert seen == [(1, 1)]
    assert doc["environment"]["fastbp_threads"] == 1
    assert fastbp.get_num_threads() == before and peers_onnx.get_intra_op_threads() is None


def test_load_run(tmp_path, capsys):
    """--load (a busy process on one core) with every peer of the workload."""
    code, doc = run_bench(tmp_path, "--impl", "fastbp,torch,onnxruntime", "--load")
    assert code == 0 and doc["config"]["load"] is True
    for row in doc["results"]:
        assert row["status"] in ("ok", workloads.NOT_INSTALLED), row["detail"]
    assert rows_by_impl(doc)["fastbp"]["status"] == "ok"
    assert "load: a busy process" in capsys.readouterr().out


def test_missing_onnxruntime_shows_not_installed(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    code, doc = run_bench(tmp_path, "--impl", "fastbp,onnxruntime")
    assert code == 0
    row = rows_by_impl(doc)["onnxruntime"]
    assert row["status"] == workloads.NOT_INSTALLED and "pip install" in row["detail"]


# -- onnxruntime itself -----------------------------------------------------------------

def test_onnx_graph_maps_torch_gates_and_biases():
    """The one-node graph reproduces the reference LSTM: gates i, f, g, o reordered to
    ONNX's i, o, f, c in W, R and both halves of B; initial states taken."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    H = 4
    rows = np.arange(4 * H)
    np.testing.assert_array_equal(peers_onnx.to_onnx_gates(rows, H),
                                  np.r_[0:4, 12:16, 4:8, 8:12])
    p = workloads.make_problem("lstm_infer", 3, 5, H, "float32")
    model = peers_onnx.lstm_model(onnx, p.data["params"], 5, 3, np.float32)
    (node,) = model.graph.node
    assert node.op_type == "LSTM"
    got = peers_onnx.ort_lstm_infer(p).grads()
    want = workloads.REFERENCE["lstm_infer"](p).grads()
    assert workloads.compare_grads(got, want)[0] < 1e-6
    assert ort.__version__


def test_onnxruntime_row_in_a_run_with_threads(tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    threads = []
    real = peers_onnx.ort_lstm_infer

    def spy(problem):
        threads.append(peers_onnx.get_intra_op_threads())
        return real(problem)
    monkeypatch.setitem(peers_onnx.BUILDERS, "lstm_infer", spy)
    code, doc = run_bench(tmp_path, "--impl", "fastbp,torch,onnxruntime", "--threads", "1")
    assert code == 0
    row = rows_by_impl(doc)["onnxruntime"]
    assert row["status"] == "ok" and row["median_us"] > 0
    assert row["grad_check"]["against"] == "fastbp" and row["grad_check"]["ok"]
    assert threads == [1]
    assert doc["environment"]["versions"]["onnxruntime"]
    out = capsys.readouterr().out
    assert "onnxruntime: intra_op_num_threads = 1 (--threads)" in out
