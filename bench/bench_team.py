"""Time every recurrent model on one thread of fastbp's team against two, in one process.

    python bench/bench_team.py [--threads 1,2] [--batch 1,16,64]

``loss_and_grad`` (a training step) and ``predict`` of the RNN, LSTM and GRU,
float32, T=100, I=H=256, O=64, best of 5 after a warm-up, with
``fastbp.set_num_threads(n)`` for each n; the results are the same bit for bit
whatever n (tests/kernels/test_thread_team.py), only the time changes.
"""
import argparse
import time

import numpy as np

from _which_fastbp import ROOT  # noqa: F401  (bench/: a built tree, else the installed fastbp)

import fastbp  # noqa: E402


def best_ms(f, repeat=5):
    f()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", default="1,16,64")
    args = ap.parse_args()
    threads = [int(n) for n in args.threads.split(",")]
    rng = np.random.default_rng(0)
    print("model  B  " + "  ".join(f"train {n}t ms  predict {n}t ms" for n in threads))
    for cls in ("LSTM", "RNN", "GRU"):
        for B in (int(b) for b in args.batch.split(",")):
            X = rng.standard_normal((100, B, 256)).astype(np.float32)
            Y = rng.standard_normal((100, B, 64)).astype(np.float32)
            model = getattr(fastbp, cls)(256, 256, 64, dtype="float32", seed=0)
            cols = []
            for n in threads:
                fastbp.set_num_threads(n)
                cols.append(f"{best_ms(lambda: model.loss_and_grad(X, Y)):12.2f}  "
                            f"{best_ms(lambda: model.predict(X)):14.2f}")
            print(f"{cls:5s} {B:3d}  " + "  ".join(cols), flush=True)


if __name__ == "__main__":
    main()
