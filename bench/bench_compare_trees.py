"""Time the sequence models of two fastbp source trees against each other, interleaved.

    python bench/bench_compare_trees.py --before ../old-checkout [--after .] [--rounds 5]

A kernel change (such as moving the RNN and LSTM onto the one recurrent
engine) must not slow anything down. The two trees cannot be imported in one
process, so each round runs every row once in the "before" tree and once in
the "after" tree, each in a fresh child process, alternating which goes first;
the ratio after/before is taken per round and the median over rounds is
reported, so a shared machine's drift hits both sides alike. One thread
(``--threads 1`` of ``fastbp bench``); both trees must be built in place
(``python setup.py build_ext --inplace``).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
import fastbp
rows = json.loads(sys.argv[2])
out = {}
for name, cls, B, what in rows:
    T, I, H, O = 100, 64, 256, 64
    rng = np.random.default_rng(0)
    X = rng.standard_normal((T, B, I)).astype(np.float32)
    Y = rng.standard_normal((T, B, O)).astype(np.float32)
    model = getattr(fastbp, cls)(I, H, O, dtype="float32", seed=0)
    run = (lambda: model.loss_and_grad(X, Y)) if what == "loss_and_grad" else (lambda: model.predict(X))
    run()
    samples = []
    for _ in range(5):
        t0 = time.perf_counter()
        run()
        samples.append(time.perf_counter() - t0)
    out[name] = min(samples)
print(json.dumps(out))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="the tree before the change")
    ap.add_argument("--after", default=".", help="the tree after it (default: here)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--models", default="RNN,LSTM")
    ap.add_argument("--batches", default="1,16,64", help="comma-separated batch sizes")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    rows = [(f"{cls} B={B} {what}", cls, B, what) for cls in args.models.split(",")
            for B in batches for what in ("loss_and_grad", "predict")]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    ratios = {name: [] for name, *_ in rows}
    times = {name: ([], []) for name, *_ in rows}
    for r in range(args.rounds):
        order = [args.before, args.after] if r % 2 == 0 else [args.after, args.before]
        res = {}
        for tree in order:
            out = subprocess.run([sys.executable, "-c", CHILD, os.path.abspath(tree), json.dumps(rows)],
                                 env=env, check=True, capture_output=True, text=True).stdout
            res[tree] = json.loads(out)
        for name in ratios:
            b, a = res[args.before][name], res[args.after][name]
            ratios[name].append(a / b)
            times[name][0].append(b)
            times[name][1].append(a)
    cpu = platform.processor() or "?"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if "model name" in l)
    except (OSError, StopIteration):
        pass
    print(f"# {cpu}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}; "
          f"1 thread; float32, T=100, I=64, H=256; {args.rounds} interleaved rounds")
    print(f"{'row':32s} {'before ms':>10s} {'after ms':>10s} {'after/before':>13s}")
    for name in ratios:
        b, a = (statistics.median(v) * 1e3 for v in times[name])
        print(f"{name:32s} {b:10.2f} {a:10.2f} {statistics.median(ratios[name]):13.3f}")


if __name__ == "__main__":
    main()
