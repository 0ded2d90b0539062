"""bench/bench_held_core.py (the team against one thread beside a busy process):
the script runs every workload on both settings and reports them; no test
asserts a duration."""
import json

import pytest

from bench_scripts import run_bench_script


def run(*args):
    return run_bench_script("bench_held_core.py", *args)


def test_every_workload_is_timed_on_the_team_and_on_one_thread(tmp_path):
    out = tmp_path / "held.json"
    result = run("--quick", "--workloads", "lstm:1,mlp:4", "--json", str(out))
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert [r["workload"].split()[0] for r in doc["rows"]] == ["LSTM", "MLP"]
    for row in doc["rows"]:
        assert len(row["team"]) == len(row["one_thread"]) == 2
        assert all(us > 0 for us in row["team"] + row["one_thread"])
    assert "busy process pinned to core" in result.stdout


@pytest.mark.parametrize("spec", ["lstm", "lstm:0", "cnn:4"])
def test_bad_workloads_are_usage_errors(spec):
    result = run("--quick", "--workloads", spec)
    assert result.returncode == 2 and "usage:" in result.stderr
