"""Benchmark: fastbp's thread team against one thread while another process holds a core.

    python bench/bench_held_core.py                       # LSTM, RNN (B=1, 16), MLP (B=32)
    python bench/bench_held_core.py --seconds 5 --workloads lstm:1
    python bench/bench_held_core.py --quick --json out.json   # tiny, for the tests

A busy process (a Python loop) is pinned to the last usable core for the
whole run. Each workload's training step (``loss_and_grad``: T=100, H=256,
float32; the MLP 784-256-256-10) then runs for --seconds on fastbp's team of
two, then on one thread, then both again, and reports the median call time
of each. What it shows: the team's back-off (src_c/team.h) after a member is
held up, in its steady state, where the team should cost no more than one
thread; the first second of a run pays for a few stalls (the back-off grows
0.1, 0.2, 0.4, ... s), which `fastbp bench --load`'s short rows include.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from _which_fastbp import ROOT  # noqa: F401  (bench/: a built tree, else the installed fastbp)

import fastbp  # noqa: E402
from fastbp import _core  # noqa: E402
from fastbp.mlp import MLP  # noqa: E402

WORKLOADS = ("lstm:1", "rnn:1", "rnn:16", "mlp:32")


def cpu_label():
    try:
        with open("/proc/cpuinfo") as f:
            info = dict(line.split(":", 1) for line in f if ":" in line)
        info = {k.strip(): v.strip() for k, v in info.items()}
        flags = set(info.get("flags", "").split())
        simd = [f for f in ("avx2", "fma", "avx512f") if f in flags]
        return f"{info.get('model name', 'unknown CPU')} ({', '.join(simd) or 'no AVX2'})"
    except OSError:
        return "unknown CPU"


def workload(spec, quick):
    """(label, step function) of 'kind:batch'."""
    kind, _, batch = spec.partition(":")
    if kind not in ("lstm", "rnn", "gru", "mlp") or not batch.isdigit() or int(batch) < 1:
        raise argparse.ArgumentTypeError(f"expected lstm|rnn|gru|mlp:BATCH, got {spec!r}")
    B = int(batch)
    rng = np.random.default_rng(0)
    if kind == "mlp":
        sizes = [32, 16, 4] if quick else [784, 256, 256, 10]
        net = MLP(sizes, activation="relu", output="softmax", loss="cross_entropy",
                  dtype="float32", seed=0)
        X = rng.standard_normal((B, sizes[0])).astype(np.float32)
        y = rng.integers(0, sizes[-1], B).astype(np.int64)
        grads = net.loss_and_grad(X, y)[1]
        return f"MLP {'-'.join(map(str, sizes))} B={B}", lambda: net.loss_and_grad(X, y, out=grads)
    T, H = (5, 16) if quick else (100, 256)
    net = getattr(fastbp, kind.upper())(H, H, H, loss="mse", dtype=np.float32, seed=0)
    X = rng.standard_normal((T, B, H)).astype(np.float32)
    Y = rng.standard_normal((T, B, H)).astype(np.float32)
    return f"{kind.upper()} T={T} B={B} H={H}", lambda: net.loss_and_grad(X, Y)


def median_us(step, seconds):
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e6, len(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help="comma-separated kind:batch, kind lstm|rnn|gru|mlp")
    ap.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and 0.2 s (the tests)")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)
    try:
        specs = [workload(s, args.quick) for s in args.workloads.split(",")]
    except argparse.ArgumentTypeError as e:
        ap.error(str(e))
    seconds = 0.2 if args.quick else args.seconds
    cores = sorted(os.sched_getaffinity(0))
    busy = subprocess.Popen([sys.executable, "-c",
                             f"import os\nos.sched_setaffinity(0, {{{cores[-1]}}})\n"
                             "while True: pass"])
    rows = []
    try:
        time.sleep(0.3)
        print(f"== training steps beside a busy process pinned to core {cores[-1]}; "
              f"{cpu_label()}, {len(cores)} usable cores; median µs per call over "
              f"{seconds:g} s each")
        print(f"{'workload':28s} {'team of 2':>12s} {'1 thread':>12s} {'team of 2':>12s} "
              f"{'1 thread':>12s}  back-off")
        n_before = fastbp.get_num_threads()
        for label, step in specs:
            row = {"workload": label, "team": [], "one_thread": []}
            for n in (2, 1, 2, 1):
                fastbp.set_num_threads(n)
                step()
                us, calls = median_us(step, seconds)
                row["team" if n == 2 else "one_thread"].append(us)
            row["backoff_s"] = _core.team_stall_state()[1]
            rows.append(row)
            t, o = row["team"], row["one_thread"]
            print(f"{label:28s} {t[0]:12.1f} {o[0]:12.1f} {t[1]:12.1f} {o[1]:12.1f}  "
                  f"{row['backoff_s']:.1f} s")
        fastbp.set_num_threads(n_before)
    finally:
        busy.kill()
        busy.wait()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_label(), "seconds": seconds, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
