"""bench/bench_step.py (model.step against torch's cells): the script runs, checks
the two agree before timing, and reports a row per cell; no test asserts a duration."""
import importlib.util
import json

import pytest

from bench_scripts import run_bench_script


def run(*args):
    return run_bench_script("bench_step.py", *args)


def test_the_step_benchmark_reports_every_cell(tmp_path):
    out = tmp_path / "step.json"
    result = run("--quick", "--json", str(out))
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert [r["cell"] for r in doc["rows"]] == ["lstm", "gru", "rnn"]
    has_torch = importlib.util.find_spec("torch") is not None
    for row in doc["rows"]:
        assert row["fastbp_step_us"] > 0 and row["fastbp_forward_per_step_us"] > 0
        assert (row["torch_cell_us"] is not None and row["torch_cell_us"] > 0) == has_torch
    assert doc["cpu"] and doc["fastbp_threads"] >= 1
    assert "fastbp step" in result.stdout and "torch/fastbp" in result.stdout


@pytest.mark.parametrize("args", [["--cells", "lstm,lsmt"], ["--batch", "x"]])
def test_bad_options_are_usage_errors(args):
    result = run("--quick", *args)
    assert result.returncode == 2 and "usage:" in result.stderr
