"""More threads never hurt: every fastbp model's training step and inference
with the libraries' default threads against one thread, in one process.

For each model (MLP 784-256-256-10; RNN, LSTM, LSTM with lengths, 2-layer
bidirectional LSTM, all T=100, H=256), ``loss_and_grad`` and ``predict`` are
timed with BLAS's default threads and under ``threadpool_limits(1)``,
alternating in rounds, each block after the process's other threads went idle
(fastbp.bench.harness.settle). ``--load`` keeps one core busy with a spinning
process meanwhile. The ratio column is default / one thread: at most 1.10
is the goal (README, "Threads").

    python bench/bench_threads.py [--load] [--batches 1,16,64] [--dtype float32]

Needs threadpoolctl. Prints the CPU model and flags and OPENBLAS_CORETYPE.
"""
import argparse
import contextlib
import os
import sys

import numpy as np
from threadpoolctl import threadpool_limits

from _which_fastbp import ROOT  # noqa: F401  (bench/: a built tree, else the installed fastbp)

import fastbp  # noqa: E402
from fastbp.bench import env as envmod  # noqa: E402
from fastbp.bench import harness, load  # noqa: E402


# the MLP's batch beside the sequence models' B (fastbp bench's sizes: 1, 32, 256)
MLP_BATCH = {1: 1, 16: 32, 64: 256}


def models(B, T, H, dtype, rng):
    """name -> (model, X, Y, keyword arguments of the calls)"""
    x = lambda *s: rng.standard_normal(s).astype(dtype)   # noqa: E731
    out = {}
    rows = MLP_BATCH.get(B, B)
    out["mlp"] = (fastbp.MLP([784, H, H, 10], activation="relu", output="softmax",
                             loss="cross_entropy", dtype=dtype, seed=0),
                  x(rows, 784), rng.integers(0, 10, rows), {})
    out["rnn"] = (fastbp.RNN(64, H, 64, loss="mse", dtype=dtype, seed=0),
                  x(T, B, 64), x(T, B, 64), {})
    out["lstm"] = (fastbp.LSTM(H, H, 64, loss="mse", dtype=dtype, seed=0),
                   x(T, B, H), x(T, B, 64), {})
    lengths = rng.integers(T // 10, T + 1, B)
    out["lstm_len"] = (out["lstm"][0], out["lstm"][1], out["lstm"][2], {"lengths": lengths})
    out["lstm2bi"] = (fastbp.LSTM(H, H, 64, loss="mse", dtype=dtype, seed=0, num_layers=2,
                                  bidirectional=True), x(T, B, H), x(T, B, 64), {})
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--load", action="store_true", help="a busy process on one core meanwhile")
    p.add_argument("--batches", default="1,16,64")
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--models", default="mlp,rnn,lstm,lstm_len,lstm2bi")
    args = p.parse_args()
    env = envmod.collect()
    for line in envmod.lines(env) + envmod.thread_lines(env):
        print(line)
    print(f"fastbp from {os.path.dirname(fastbp.__file__)}; {args.dtype}; T={args.seq_len}, "
          f"H={args.hidden}; MLP batch: {MLP_BATCH} by B")
    busy = load.busy_core() if args.load else contextlib.nullcontext()
    rng = np.random.default_rng(0)
    wanted = args.models.split(",")
    with busy as text:
        if text:
            print("load:", text)
        print(f"\n{'model':9} {'B':>4} {'call':14} {'default ms':>11} {'1 thread ms':>12} {'ratio':>6}")
        for B in map(int, args.batches.split(",")):
            for name, (net, X, Y, kw) in models(B, args.seq_len, args.hidden, args.dtype, rng).items():
                if name not in wanted:
                    continue
                calls = {"loss_and_grad": lambda: net.loss_and_grad(X, Y, **kw),
                         "predict": lambda: net.predict(X, **kw)}
                for call, fn in calls.items():
                    fn()
                    times = {"default": [], "one": []}
                    # alternate: a burst of outside load hits both settings alike
                    for _ in range(3):
                        for setting in times:
                            limit = threadpool_limits(1) if setting == "one" else contextlib.nullcontext()
                            with limit:
                                t = harness.measure({setting: fn}, repeat=3, min_time=0.02,
                                                    budget=1.0, pause=0.05)
                            times[setting].append(t[setting].median)
                    d, o = min(times["default"]), min(times["one"])
                    print(f"{name:9} {B:>4} {call:14} {d * 1e3:11.3f} {o * 1e3:12.3f} {d / o:6.2f}",
                          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
