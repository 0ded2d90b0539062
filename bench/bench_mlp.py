"""Benchmark: one MLP training step (forward + loss + backward, every gradient).

The network of issue 3: 784-256-256-10, ReLU hidden layers, softmax
cross-entropy on integer labels. Peers, all in this one process on the same
weights and data:

  fastbp          MLP.loss_and_grad(X, y)            (new gradient arrays each call)
  fastbp out=     MLP.loss_and_grad(X, y, out=grads) (gradients overwritten in place)
  numpy ref       fastbp.reference.mlp_loss_and_grad (the pure NumPy oracle)
  numpy hand      a hand-written NumPy step (preallocation-free, fused where NumPy allows)
  torch           PyTorch eager: F.linear / relu / cross_entropy + torch.autograd.grad

Each sample times `number` back-to-back calls (number chosen so a sample
lasts >= --min-sample-ms); each peer runs its samples in a block of its own,
after a pause, in --rounds rounds (see bench()); the table gives the median
per call in µs and the ratios fastbp/torch and fastbp/numpy-ref (below 1 =
fastbp faster). Timings need a quiet machine: with 2 BLAS threads on 2 cores
any other busy process stalls a multithreaded GEMM, so medians then measure
the neighbours (--threads 1 --clock cpu is the robust fallback).

    python bench/bench_mlp.py                       # B = 1, 32, 256; float32 and float64
    python bench/bench_mlp.py --batch 1 32 --dtype float32 --repeats 101 --threads 1
"""
import argparse
import os
import platform
import sys
import time

import numpy as np

import _which_fastbp  # noqa: E402,F401  (bench/: a built tree, else the installed fastbp)

from fastbp import reference
from fastbp.mlp import MLP

SIZES = [784, 256, 256, 10]


def numpy_hand_step(X, y, params):
    """A straightforward NumPy training step for the ReLU / softmax-CE network.
    Batch 1 runs on 1-D vectors (W @ x is a GEMV, np.outer the weight
    gradient): NumPy's matmul sends (1, n) rows and (n, 1) columns to GEMM,
    several times slower."""
    B = X.shape[0]
    if B == 1:
        a = [X[0]]
        for l, (W, b) in enumerate(params):
            z = W @ a[-1] + b
            a.append(np.maximum(z, 0) if l < len(params) - 1 else z)
        e = np.exp(a[-1] - a[-1].max())
        p = e / e.sum()
        loss = -np.log(p[y[0]])
        delta = p
        delta[y[0]] -= 1
        grads = [None] * len(params)
        for l in range(len(params) - 1, -1, -1):
            grads[l] = (np.outer(delta, a[l]), delta.copy())
            if l:
                delta = (params[l][0].T @ delta) * (a[l] > 0)
        return loss, grads
    A = [X]
    for l, (W, b) in enumerate(params):
        Z = A[-1] @ W.T + b
        A.append(np.maximum(Z, 0) if l < len(params) - 1 else Z)
    Z = A[-1]
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    P = E / E.sum(axis=1, keepdims=True)
    rows = np.arange(B)
    loss = -np.log(P[rows, y]).mean()
    delta = P
    delta[rows, y] -= 1
    delta /= B
    grads = [None] * len(params)
    for l in range(len(params) - 1, -1, -1):
        grads[l] = (delta.T @ A[l], delta.sum(axis=0))
        if l:
            delta = (delta @ params[l][0]) * (A[l] > 0)
    return loss, grads


def make_torch_step(X, y, params):
    import torch
    import torch.nn.functional as F
    tW = [torch.tensor(W, requires_grad=True) for W, _ in params]
    tb = [torch.tensor(b, requires_grad=True) for _, b in params]
    tX, ty = torch.from_numpy(X), torch.from_numpy(y)
    leaves = tW + tb

    def step():
        h = tX
        for l in range(len(tW)):
            h = F.linear(h, tW[l], tb[l])
            if l < len(tW) - 1:
                h = torch.relu(h)
        loss = F.cross_entropy(h, ty)
        grads = torch.autograd.grad(loss, leaves)
        return loss.item(), grads
    return step


def calibrate(fn, min_sample_s, clock):
    """Calls per sample so one sample lasts at least min_sample_s."""
    number = 1
    while True:
        t = clock()
        for _ in range(number):
            fn()
        if clock() - t >= min_sample_s or number >= 1 << 16:
            return number
        number *= 2


def bench(peers, repeats, warmup, min_sample_s, clock, rounds=3, pause_s=0.3):
    """Median µs per call of each peer.

    Each round times every peer in its own block of samples, after a pause:
    the peers run thread pools of their own (OpenBLAS twice, torch's OpenMP)
    whose idle threads keep spinning for a while after a call, and on a
    2-core machine a spinning pool starves the next peer's threads if the
    peers are interleaved call by call. Several rounds spread slow drifts of
    the machine's load over all peers; the median is over every sample."""
    numbers = {}
    for name, fn in peers.items():
        for _ in range(warmup):
            fn()
        numbers[name] = calibrate(fn, min_sample_s, clock)
    samples = {name: [] for name in peers}
    per_round = max(1, repeats // rounds)
    for _ in range(rounds):
        for name, fn in peers.items():
            time.sleep(pause_s)
            n = numbers[name]
            for _ in range(3):      # re-warm caches and this peer's threads
                fn()
            for _ in range(per_round):
                t = clock()
                for _ in range(n):
                    fn()
                samples[name].append((clock() - t) / n)
    return {name: 1e6 * float(np.median(s)) for name, s in samples.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 32, 256])
    ap.add_argument("--dtype", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    ap.add_argument("--repeats", type=int, default=51, help="samples per peer (median taken)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds the samples are split over")
    ap.add_argument("--warmup", type=int, default=20, help="untimed calls per peer first")
    ap.add_argument("--min-sample-ms", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=None,
                    help="BLAS and torch threads (default: leave the libraries' defaults)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall: time.perf_counter (default); cpu: this thread's CPU time "
                         "(time.thread_time), which ignores time stolen by other processes on a "
                         "busy machine; needs --threads 1, since other threads' work is not counted")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)
    if args.clock == "cpu" and args.threads != 1:
        ap.error("--clock cpu needs --threads 1")
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter

    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            torch = None
    limiter = None
    if args.threads is not None:
        try:
            from threadpoolctl import threadpool_limits
            limiter = threadpool_limits(limits=args.threads)
        except ImportError:
            print("threadpoolctl not installed: --threads only applies to torch")
        if torch is not None:
            torch.set_num_threads(args.threads)

    import scipy
    print(f"fastbp MLP training step, net {'-'.join(map(str, SIZES))} relu / softmax-CE")
    torch_info = (f"{torch.__version__} ({torch.get_num_threads()} threads)" if torch
                  else "skipped (--no-torch)" if args.no_torch else "not installed")
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"torch {torch_info}")
    try:
        from threadpoolctl import threadpool_info
        print("BLAS: " + "; ".join(f"{i['filepath'].rsplit('/', 1)[-1]} {i.get('version')} "
                                   f"{i.get('architecture', '')} ({i['num_threads']} threads)"
                                   for i in threadpool_info() if i["user_api"] == "blas"))
    except ImportError:
        pass
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; "
          f"BLAS threads: {args.threads if args.threads is not None else 'default'}")
    print(f"median µs per step over {args.repeats} samples ({args.clock} clock); "
          "ratio < 1 means fastbp is faster\n")

    header = (f"{'dtype':8} {'B':>4} {'fastbp':>9} {'fb out=':>9} {'numpy ref':>10} {'numpy hand':>10} "
              f"{'torch':>9} {'fb/torch':>9} {'fb/np-ref':>9}")
    print(header)
    print("-" * len(header))
    for dtype in args.dtype:
        net = MLP(SIZES, activation="relu", output="softmax", loss="cross_entropy", dtype=dtype, seed=0)
        params = net.params
        acts = list(net.activations)
        for B in args.batch:
            rng = np.random.default_rng(B)
            X = rng.standard_normal((B, SIZES[0])).astype(dtype)
            y = rng.integers(0, SIZES[-1], size=B)
            grads = net.loss_and_grad(X, y)[1]
            peers = {
                "fastbp": lambda: net.loss_and_grad(X, y),
                "fastbp out=": lambda: net.loss_and_grad(X, y, out=grads),
                "numpy ref": lambda: reference.mlp_loss_and_grad(X, y, params, acts),
                "numpy hand": lambda: numpy_hand_step(X, y, params),
            }
            if torch is not None:
                peers["torch"] = make_torch_step(X, y, params)
            t = bench(peers, args.repeats, args.warmup, args.min_sample_ms / 1e3, clock, args.rounds)
            tt = t.get("torch")
            print(f"{dtype:8} {B:>4} {t['fastbp']:>9.1f} {t['fastbp out=']:>9.1f} {t['numpy ref']:>10.1f} "
                  f"{t['numpy hand']:>10.1f} "
                  + (f"{tt:>9.1f} {t['fastbp'] / tt:>9.3f} " if tt else f"{'n/a':>9} {'n/a':>9} ")
                  + f"{t['fastbp'] / t['numpy ref']:>9.3f}", flush=True)
    del limiter   # the thread limits held until here
    return 0


if __name__ == "__main__":
    sys.exit(main())
