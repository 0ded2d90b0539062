"""`fastbp bench`: the command runs, its JSON is complete, every listed implementation
produces a number or says why not, bad options are usage errors, wrong gradients and
Ctrl-C are handled. Sizes are tiny; no test asserts a duration.
"""
import contextlib
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from installed_python import PACKAGE_PARENT

import fastbp
from fastbp import _core
from fastbp.__main__ import main
from fastbp.bench import cli, harness, workloads
from fastbp.bench.workloads import Runner

TINY = ["--quick", "--repeat", "1", "--batch", "2", "--hidden", "16", "--seq-len", "4",
        "--no-progress"]
MODULE_OF = {"mlp": "fastbp.mlp", "rnn": "fastbp.rnn", "lstm": "fastbp.lstm",
             "lstm_len": "fastbp.lstm", "lstm2bi": "fastbp.lstm", "gru": "fastbp.gru",
             "lstm_infer": "fastbp.lstm"}
ROW_KEYS = {"workload", "label", "size", "dtype", "implementation", "status", "detail", "note",
            "median_us", "min_us", "max_us", "repeats", "inner", "first_call_s", "gflops",
            "ceiling_fraction", "grad_check", "ratios"}


def _importable(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


def expected_status(workload, impl, dtype="float32"):
    """What a row must say on this machine: a number wherever the code is there."""
    if impl in ("fastbp", "fastbp-padded"):
        return "ok" if _importable(MODULE_OF[workload]) else workloads.NOT_AVAILABLE
    if impl in ("torch", "jax"):
        return "ok" if _importable(impl) else workloads.NOT_INSTALLED
    if impl == "onnxruntime":
        if not (_importable("onnx") and _importable("onnxruntime")):
            return workloads.NOT_INSTALLED
        return "ok" if dtype == "float32" else workloads.NOT_SUPPORTED
    return "ok"


def run_bench(tmp_path, *options):
    out = tmp_path / "bench.json"
    code = main(["bench", *TINY, "--json", str(out), *options])
    return code, json.loads(out.read_text())


def check_document(doc, implementations, models, batches):
    assert doc["schema"] == "fastbp-bench/1"
    assert doc["interrupted"] is False
    env = doc["environment"]
    assert env["cpu"] and env["cores"] >= 1
    assert env["fastbp_kernels"] == _core.kernel_isa()
    assert "openblas_coretype" in env and env["versions"]["numpy"] == np.__version__
    ceiling = doc["gemm_ceiling"]
    assert ceiling["routine"] in ("sgemm", "dgemm")
    assert ceiling["gflops"] == max(ceiling["gflops_start"], ceiling["gflops_end"]) > 0

    rows = doc["results"]
    # a row for every implementation that has the workload (fastbp-padded: lstm_len only)
    builders = cli.builders()
    assert len(rows) == len(batches) * sum(1 for m in models for i in implementations
                                           if m in builders[i])
    for row in rows:
        assert set(row) >= ROW_KEYS
        want = expected_status(row["workload"], row["implementation"], row["dtype"])
        assert row["status"] == want, (row["implementation"], row["workload"], row["detail"])
        if want != "ok":
            assert row["median_us"] is None and row["detail"]
            continue
        assert all(math.isfinite(row[k]) and row[k] > 0
                   for k in ("median_us", "min_us", "max_us", "gflops", "first_call_s",
                             "ceiling_fraction"))
        assert row["min_us"] <= row["median_us"] <= row["max_us"]
        assert row["repeats"] >= 1 and row["inner"] >= 1
        # a ratio against every other implementation that produced a number for this size
        others = {r["implementation"] for r in rows if r is not row and r["status"] == "ok"
                  and r["workload"] == row["workload"] and r["label"] == row["label"]}
        assert set(row["ratios"]) == others
        for other, ratio in row["ratios"].items():
            twin = next(r for r in rows if r["implementation"] == other
                        and r["workload"] == row["workload"] and r["label"] == row["label"])
            assert ratio == pytest.approx(twin["median_us"] / row["median_us"])
        check = row["grad_check"]
        if check is not None:
            assert check["ok"] and check["max_rel_error"] <= check["tol"]
    return rows


def test_tiny_run_json_has_a_number_for_every_available_implementation(tmp_path, capsys):
    code, doc = run_bench(tmp_path, "--threads", "1")
    assert code == 0
    rows = check_document(doc, cli.IMPLEMENTATIONS, cli.MODELS, [2])
    assert doc["config"]["threads"] == 1 and doc["config"]["dtype"] == "float32"
    # the peers were checked against fastbp's gradients (or the reference's without fastbp)
    for row in rows:
        if row["status"] == "ok" and row["implementation"] in ("torch", "jax"):
            assert row["grad_check"]["against"] in ("fastbp", "reference")
    out = capsys.readouterr().out
    assert "OPENBLAS_CORETYPE" in out and "GEMM ceiling" in out
    assert "Traceback" not in out
    for impl in cli.IMPLEMENTATIONS:
        assert impl in out


def test_float64_run(tmp_path):
    code, doc = run_bench(tmp_path, "--dtype", "float64", "--models", "rnn,lstm,gru",
                          "--impl", "fastbp,reference,torch")
    assert code == 0
    check_document(doc, ["fastbp", "reference", "torch"], ["rnn", "lstm", "gru"], [2])
    assert doc["gemm_ceiling"]["routine"] == "dgemm"


def test_gru_workload_is_the_lstm_one_with_three_gate_blocks():
    lstm = workloads.make_problem("lstm", 3, 5, 8, "float32")
    gru = workloads.make_problem("gru", 3, 5, 8, "float32")
    assert gru.workload == "gru" and gru.label == lstm.label and gru.size == lstm.size
    assert gru.grad_names == lstm.grad_names == ("x", "weight_ih", "weight_hh", "bias_ih",
                                                 "bias_hh")
    shapes = {k: v.shape for k, v in gru.data["params"].items()}
    assert shapes == {"weight_ih": (24, 8), "weight_hh": (24, 8), "bias_ih": (24,),
                      "bias_hh": (24,)}
    assert gru.flops == pytest.approx(lstm.flops * 3 / 4)
    assert gru.data["X"].shape == gru.data["R"].shape == (5, 3, 8)
    # every gradient the workload promises, dL/dx included, from the reference
    grads = workloads.REFERENCE["gru"](gru).grads()
    assert {k: v.shape for k, v in grads.items()} == dict(shapes, x=(5, 3, 8))


def test_missing_peers_show_not_installed(tmp_path, monkeypatch, capsys):
    # None in sys.modules makes `import torch` / `import jax` raise ImportError
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "jax", None)
    code, doc = run_bench(tmp_path, "--models", "mlp")
    assert code == 0
    peers = [r for r in doc["results"] if r["implementation"] in ("torch", "jax")]
    assert peers and all(r["status"] == workloads.NOT_INSTALLED for r in peers)
    assert doc["environment"]["torch"] is None
    captured = capsys.readouterr()
    assert "not installed" in captured.out
    assert "Traceback" not in captured.out + captured.err


def _fake_builder(grads_scale=1.0, interrupt_at_batch=None):
    """A peer built on the reference's step, optionally with wrong gradients, or
    pressing Ctrl-C while it is timed at one batch size."""
    def build(problem):
        real = workloads.REFERENCE[problem.workload](problem)

        def step():
            if problem.size["batch"] == interrupt_at_batch:
                raise KeyboardInterrupt
            return real.step()

        def grads():
            return {k: v * grads_scale for k, v in real.grads().items()}
        return Runner(step, grads)
    return build


def _with_fake_peer(monkeypatch, builder):
    real_builders = cli.builders

    def patched():
        table = real_builders()
        table["torch"] = {w: builder for w in cli.MODELS}
        return table
    monkeypatch.setattr(cli, "builders", patched)


def test_wrong_gradients_are_marked_and_not_timed(tmp_path, monkeypatch, capsys):
    _with_fake_peer(monkeypatch, _fake_builder(grads_scale=1.5))
    code, doc = run_bench(tmp_path, "--models", "mlp", "--impl", "fastbp,reference,torch")
    assert code == 1
    (row,) = [r for r in doc["results"] if r["implementation"] == "torch"]
    assert row["status"] == "WRONG" and row["median_us"] is None
    assert not row["grad_check"]["ok"] and row["grad_check"]["max_rel_error"] > 0.1
    assert "WRONG" in capsys.readouterr().out


def test_ctrl_c_prints_what_was_measured(tmp_path, monkeypatch, capsys):
    _with_fake_peer(monkeypatch, _fake_builder(interrupt_at_batch=3))
    out = tmp_path / "partial.json"
    code = main(["bench", *TINY, "--batch", "2,3", "--models", "mlp", "--impl",
                 "reference,torch", "--json", str(out)])
    assert code == cli.EXIT_INTERRUPTED
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True
    status = {(r["implementation"], r["size"]["batch"]): r["status"] for r in doc["results"]}
    assert status == {("reference", 2): "ok", ("torch", 2): "ok",
                      ("reference", 3): "interrupted", ("torch", 3): "interrupted"}
    text = capsys.readouterr().out
    assert "INTERRUPTED" in text and "B=2" in text


@pytest.mark.parametrize("options, complaint", [
    (["--batch", "0"], "--batch"),
    (["--batch", "a,b"], "--batch"),
    (["--models", "mlp,cnn"], "--models"),
    (["--impl", "tensorflow"], "--impl"),
    (["--dtype", "float16"], "--dtype"),
    (["--repeat", "-1"], "--repeat"),
    (["--threads", "two"], "--threads"),
    (["--quick", "--full"], "--full"),
    (["--json", "/no/such/folder/out.json"], "--json"),
    (["--blas-coretype", " "], "--blas-coretype"),
    (["--bogus"], "--bogus"),
])
def test_bad_options_are_usage_errors(options, complaint, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *options])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: fastbp bench" in err and complaint in err
    assert "Traceback" not in err


def test_help_and_no_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "bench" in capsys.readouterr().out
    assert main([]) == 2
    assert "usage: fastbp" in capsys.readouterr().out


def test_plot(tmp_path, capsys):
    png = tmp_path / "bench.png"
    if importlib.util.find_spec("matplotlib") is None:
        with pytest.raises(SystemExit) as exit_info:
            main(["bench", *TINY, "--plot", str(png)])
        assert exit_info.value.code == 2
        assert "matplotlib" in capsys.readouterr().err
        assert not png.exists()
    else:
        assert main(["bench", *TINY, "--models", "mlp", "--impl", "reference",
                     "--plot", str(png)]) == 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_blas_coretype_rerun_in_a_child_process(tmp_path, monkeypatch):
    # with a forced kernel, "auto" reruns the fastbp/reference rows with it removed
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    code, doc = run_bench(tmp_path, "--models", "mlp", "--impl", "reference",
                          "--blas-coretype", "auto")
    assert code == 0
    labels = {r["implementation"]: r for r in doc["results"]}
    assert set(labels) == {"reference", "reference@auto"}
    child = labels["reference@auto"]
    assert child["status"] == "ok" and child["median_us"] > 0
    assert "reference" in child["ratios"] and "reference@auto" in labels["reference"]["ratios"]
    assert doc["environment"]["openblas_coretype"] == "Haswell"
    assert doc["coretype_rerun"]["environment"]["openblas_coretype"] is None


def test_blas_coretype_auto_without_forced_kernel_is_a_note(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    code, doc = run_bench(tmp_path, "--models", "mlp", "--impl", "reference",
                          "--blas-coretype", "auto")
    assert code == 0
    assert [r["implementation"] for r in doc["results"]] == ["reference"]
    assert any("no rerun" in note for note in doc["notes"])


def test_python_dash_m_entry_point(tmp_path):
    """The command as a user types it: table on stdout, progress on stderr."""
    out = tmp_path / "b.json"
    # the fastbp these tests import (an in-place build), not another installed copy
    path = os.pathsep.join(p for p in (PACKAGE_PARENT, os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "fastbp", "bench", "--quick", "--repeat", "1",
         "--models", "lstm,gru", "--impl", "fastbp,reference", "--json", str(out)],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=path),
        cwd=tmp_path)   # not the repository root, whose fastbp/ has no compiled _core
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "workload" in proc.stdout and "lstm" in proc.stdout and "gru" in proc.stdout
    assert re.search(r"^\[1/8 ", proc.stderr, re.M)   # one progress line per finished row
    assert "Traceback" not in proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert cli.MODES["quick"]["batches"]["gru"] == cli.MODES["quick"]["batches"]["lstm"]
    check_document(doc, ["fastbp", "reference"], ["lstm", "gru"],
                   cli.MODES["quick"]["batches"]["lstm"])


def test_measure_calibrates_inner_loops_with_a_fake_clock():
    now = [0.0]

    def step():
        now[0] += 0.001          # every step "takes" 1 ms of the fake clock

    def clock():
        return now[0]

    (t,) = harness.measure({"a": step}, repeat=5, min_time=0.01, budget=10.0,
                           clock=clock).values()
    assert t.inner == 10 and t.repeats == 5
    assert t.min == pytest.approx(0.001) and t.max == pytest.approx(0.001)
    # a step too slow for the budget gets fewer samples, but never fewer than 3
    slow = harness.measure({"a": step}, repeat=50, min_time=0.0, budget=0.0025, clock=clock)
    assert slow["a"].inner == 1 and slow["a"].repeats == 3
    with pytest.raises(ValueError, match="repeat"):
        harness.measure({"a": step}, repeat=0, min_time=0.0, budget=1.0)


def test_measure_spreads_samples_over_rounds_and_survives_a_failing_step():
    now = [0.0]
    calls = []

    def step():
        now[0] += 0.001

    def broken():
        raise RuntimeError("boom")

    results = harness.measure({"a": step, "b": broken, "c": step}, repeat=5, min_time=0.0,
                              budget=10.0, rounds=3, clock=lambda: now[0],
                              on_block=lambda name, r: calls.append((name, r)))
    assert results["a"].repeats == 5 and results["c"].repeats == 5
    assert isinstance(results["b"], RuntimeError)
    # blocks alternate between the implementations, round by round
    assert calls == [("a", 0), ("c", 0), ("a", 1), ("c", 1), ("a", 2), ("c", 2)]


def test_measure_enters_a_steps_context_around_its_calibration_and_blocks():
    now = [0.0]
    inside, events = [], []

    @contextlib.contextmanager
    def tagged():
        events.append("enter")
        inside.append(True)
        try:
            yield
        finally:
            inside.pop()
            events.append("exit")

    seen = {"a": [], "b": []}

    def step_of(name):
        def step():
            now[0] += 0.001
            seen[name].append(bool(inside))
        return step

    results = harness.measure({"a": step_of("a"), "b": step_of("b")}, repeat=4, min_time=0.0,
                              budget=10.0, rounds=2, clock=lambda: now[0],
                              contexts={"b": tagged})
    assert results["a"].repeats == 4 and results["b"].repeats == 4
    assert seen["b"] and all(seen["b"]) and not any(seen["a"])
    # once for the calibration, once per block (two rounds), never left open
    assert events == ["enter", "exit"] * 3


def test_load_times_fastbp_on_one_thread_beside_its_team(tmp_path, capsys):
    """--load: a fastbp@1thread row for every fastbp row, timed in the same run,
    whose check is the team's results bit for bit; the team size is restored."""
    before = fastbp.get_num_threads()
    out = tmp_path / "r.json"
    assert main(["bench", *TINY, "--models", "mlp,gru", "--impl", "fastbp", "--load",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "fastbp@1thread (--load)" in text
    rows = json.loads(out.read_text())["results"]
    team = [r for r in rows if r["implementation"] == "fastbp"]
    alone = [r for r in rows if r["implementation"] == cli.ONE_THREAD]
    assert len(team) == len(alone) == 2
    for t, a in zip(team, alone):
        assert (a["workload"], a["label"]) == (t["workload"], t["label"])
        assert a["status"] == "ok" and a["median_us"] > 0
        assert a["grad_check"]["ok"] and a["grad_check"]["max_rel_error"] == 0.0
        assert t["ratios"][cli.ONE_THREAD] == pytest.approx(a["median_us"] / t["median_us"])
    assert fastbp.get_num_threads() == before
    # with --threads 1 the team is one thread already: no extra row
    assert main(["bench", *TINY, "--models", "mlp", "--impl", "fastbp", "--load",
                 "--threads", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert not any(r["implementation"] == cli.ONE_THREAD for r in rows)


def test_one_thread_results_must_be_the_teams_bit_for_bit():
    want = {"w": np.array([1.0, 2.0], np.float32)}
    row = {"status": "pending", "detail": ""}
    cli.check_same_bits(row, {"w": want["w"].copy()}, want)
    assert row["status"] == "pending" and row["grad_check"]["ok"]
    off = {"w": np.nextafter(want["w"], np.float32(3))}     # one ulp away
    cli.check_same_bits(row, off, want)
    assert row["status"] == "WRONG" and not row["grad_check"]["ok"]
    assert "thread count" in row["detail"]


def test_compare_grads():
    a = {"w": np.ones((3, 2)), "b": np.arange(3.0)}
    assert workloads.compare_grads(a, a) == (0.0, "b")
    err, name = workloads.compare_grads({"w": a["w"] * 1.01, "b": a["b"]}, a)
    assert name == "w" and err == pytest.approx(0.01)
    assert workloads.compare_grads({"w": a["w"]}, a)[0] == math.inf            # missing
    assert workloads.compare_grads({"w": a["w"].T, "b": a["b"]}, a)[0] == math.inf   # shape
    assert workloads.compare_grads({"w": a["w"] * np.nan, "b": a["b"]}, a)[0] == math.inf


def test_load_runs_a_busy_process_through_the_timing_and_ends_it(tmp_path, capsys, monkeypatch):
    """--load: a spinning process exists while the rows are timed (seen from
    inside a step) and is gone when the command returns."""
    seen = []
    real_busy_core = cli.load.busy_core

    def watching_busy_core():
        with real_busy_core() as text:
            seen.append(int(re.search(r"pid (\d+)", text).group(1)))
            yield text
    monkeypatch.setattr(cli.load, "busy_core", contextlib.contextmanager(watching_busy_core))
    alive_during = []
    real_measure = harness.measure

    def measure(steps, **kw):
        alive_during.append(os.path.exists(f"/proc/{seen[0]}") if seen else False)
        return real_measure(steps, **kw)
    monkeypatch.setattr(cli.harness, "measure", measure)
    out = tmp_path / "r.json"
    assert main(["bench", *TINY, "--models", "mlp", "--impl", "fastbp", "--load",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "load: a busy process" in text
    assert json.loads(out.read_text())["config"]["load"] is True
    assert seen and alive_during == [True]
    proc_dir = f"/proc/{seen[0]}"
    assert not os.path.exists(proc_dir) or "zombie" in open(proc_dir + "/status").read().lower()


def test_settle_waits_for_other_threads_to_go_idle():
    """The pause before a block lasts until the other threads stop using CPU."""
    stop = threading.Event()

    def spin(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end and not stop.is_set():
            pass
    worker = threading.Thread(target=spin, args=(0.4,))
    worker.start()
    try:
        slept = harness.settle(0.01, window=0.05, max_wait=2.0)
    finally:
        stop.set()
        worker.join()
    if harness.other_threads_cpu_ticks() is None:
        pytest.skip("no per-thread CPU times here (/proc): settle is a plain pause")
    assert slept >= 0.35, slept
