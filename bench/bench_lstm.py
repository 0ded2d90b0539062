"""Benchmark: compiled LSTM forward + full BPTT against the NumPy reference and
torch.nn.LSTM, in one process (issue 5).

Task: T = 100 steps, I = H = 256, loss L = sum(h · R) for a fixed random R
(so ∂L/∂h_t = R_t), forward + backward through time with every gradient
(weights, biases, inputs, initial states), batch 1 / 16 / 64, float32 and
float64. Reported: median wall time over --repeats runs after warm-up, and
the ratios against the peers.

    python bench/bench_lstm.py                      # the table, then again in a child
                                                    # process with OPENBLAS_CORETYPE flipped
    python bench/bench_lstm.py --breakdown          # where the time goes, GEMM ceiling
    python bench/bench_lstm.py --memory             # peak memory, T=1000 B=64 H=512
    python bench/bench_lstm.py --batches 1 --dtypes float32 --repeats 20 --no-child

OPENBLAS_CORETYPE: some environments set it to Haswell, which holds SciPy's
OpenBLAS to its Haswell kernels on newer CPUs. The script prints the setting
of every run; by default it re-runs itself in a child process with the
variable removed (if set) or set to Haswell (if unset), so both are reported.
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

from _which_fastbp import ROOT  # noqa: E402,F401  (bench/: a built tree, else the installed fastbp)

import fastbp  # noqa: E402
from fastbp import _core, _recurrent  # noqa: E402
from fastbp import reference as ref  # noqa: E402
from fastbp.lstm import lstm_backward, lstm_forward  # noqa: E402

try:
    import torch
except ImportError:     # the table then has no torch column
    torch = None
try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:
    threadpool_info = threadpool_limits = None


def coretype_label():
    v = os.environ.get("OPENBLAS_CORETYPE")
    return f"OPENBLAS_CORETYPE={v}" if v else "OPENBLAS_CORETYPE unset"


def load_label():
    """Other processes share the cores: the load average says how much."""
    try:
        return "load average %.2f %.2f %.2f on %d CPUs" % (*os.getloadavg(), os.cpu_count())
    except OSError:
        return "load average unknown"


def blas_description():
    if threadpool_info is None:
        return "threadpoolctl not installed"
    for info in threadpool_info():
        if "scipy" in info.get("filepath", "") and "scipy.libs" in info.get("filepath", ""):
            return (f"SciPy's {info['internal_api']} {info.get('version')} "
                    f"({info.get('architecture')} kernels, {info['num_threads']} threads)")
    return "SciPy's BLAS (not identified)"


CLOCK = time.perf_counter      # --clock thread: time.thread_time (see main)


def median_time(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = CLOCK()
        fn()
        times.append(CLOCK() - t0)
    return float(np.median(times))


def make_problem(T, B, I, H, dtype, seed=0):
    rng = np.random.default_rng(seed)
    k = 1 / np.sqrt(H)          # torch.nn.LSTM's initialisation range
    p = {"x": rng.standard_normal((T, B, I)),
         "h0": rng.standard_normal((B, H)) * 0.1, "c0": rng.standard_normal((B, H)) * 0.1,
         "weight_ih": rng.uniform(-k, k, (4 * H, I)), "weight_hh": rng.uniform(-k, k, (4 * H, H)),
         "bias_ih": rng.uniform(-k, k, 4 * H), "bias_hh": rng.uniform(-k, k, 4 * H),
         "R": rng.standard_normal((T, B, H))}
    return {name: a.astype(dtype) for name, a in p.items()}


def run_fastbp(p, overwrite_cache=True):
    """Forward, then BPTT of L = Σ h·R (dy = R), every gradient."""
    y, _, cache = lstm_forward(p["x"], p["h0"], p["c0"], p["weight_ih"], p["weight_hh"],
                               p["bias_ih"], p["bias_hh"])
    return lstm_backward(p["R"], None, None, cache, overwrite_cache=overwrite_cache)


def run_reference(p):
    y, _, cache = ref.lstm_forward(p["x"], p["h0"], p["c0"], p["weight_ih"], p["weight_hh"],
                                   p["bias_ih"], p["bias_hh"])
    return ref.lstm_backward(p["R"], None, None, cache)


class TorchLSTM:
    """torch.nn.LSTM on the same weights; autograd for every gradient."""

    def __init__(self, p):
        T, B, I = p["x"].shape
        H = p["h0"].shape[1]
        dt = torch.float32 if p["x"].dtype == np.float32 else torch.float64
        self.lstm = torch.nn.LSTM(I, H).to(dt)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self.lstm, name + "_l0").copy_(torch.from_numpy(p[name]))
        self.x = torch.from_numpy(p["x"]).requires_grad_()
        self.h0 = torch.from_numpy(p["h0"])[None].requires_grad_()
        self.c0 = torch.from_numpy(p["c0"])[None].requires_grad_()
        self.R = torch.from_numpy(p["R"])

    def __call__(self):
        for t in (self.x, self.h0, self.c0, *self.lstm.parameters()):
            t.grad = None
        y, _ = self.lstm(self.x, (self.h0, self.c0))
        (y * self.R).sum().backward()
        return self.x.grad


def lstm_flops(T, B, I, H):
    """Multiply-adds ×2 of the six products: input GEMM, T recurrent GEMMs forward,
    T recurrent products backward, dW_ih, dW_hh, dX."""
    return 2 * T * B * 4 * H * (I + H + H + I + H + I)


def table(args):
    T, I, H = args.T, args.I, args.H
    print(f"\n== LSTM forward + BPTT, T={T} I={I} H={H}, loss sum(h·R); {coretype_label()}; "
          f"{blas_description()}; torch {torch.__version__ if torch else '-'} "
          f"({torch.get_num_threads() if torch else '-'} threads)")
    print(f"   median of {args.repeats} after warm-up, µs ({'thread CPU time' if CLOCK is time.thread_time else 'wall clock'}); "
          f"ratio = peer time / fastbp time; {load_label()}")
    head = f"{'dtype':8} {'B':>3} {'fastbp':>10} {'GFLOP/s':>8} {'keep cache':>10} {'reference':>10} {'torch':>10} {'×ref':>6} {'×torch':>7}"
    print(head)
    print("-" * len(head))
    for dtype in args.dtypes:
        for B in args.batches:
            p = make_problem(T, B, I, H, dtype)
            t_fast = median_time(lambda: run_fastbp(p), args.repeats)
            t_keep = median_time(lambda: run_fastbp(p, overwrite_cache=False), args.repeats)
            t_ref = (median_time(lambda: run_reference(p), max(3, args.repeats // 3))
                     if not args.no_reference else float("nan"))
            t_torch = (median_time(TorchLSTM(p), args.repeats)
                       if torch is not None and not args.no_torch else float("nan"))
            gf = lstm_flops(T, B, I, H) / t_fast / 1e9
            print(f"{dtype:8} {B:3d} {t_fast*1e6:10.0f} {gf:8.1f} {t_keep*1e6:10.0f} {t_ref*1e6:10.0f} "
                  f"{t_torch*1e6:10.0f} {t_ref/t_fast:6.2f} {t_torch/t_fast:7.2f}", flush=True)


def check_against_torch(args):
    """Same numbers as torch before timing anything (a fast wrong kernel is no result)."""
    if torch is None:
        return
    p = make_problem(5, 3, 7, 6, "float64")
    g = run_fastbp(p)
    peer = TorchLSTM(p)
    dx = peer().numpy()
    np.testing.assert_allclose(g["x"], dx, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g["weight_hh"], peer.lstm.weight_hh_l0.grad.numpy(), rtol=1e-9, atol=1e-12)


# ---- where the time goes ------------------------------------------------------------

def gemm_ceiling(dtype, n=1536, repeats=5):
    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    b = a.copy()
    c = np.empty_like(a)
    t = median_time(lambda: _core.gemm(c, a, b), repeats, warmup=1)
    return 2 * n ** 3 / t / 1e9


def breakdown(args):
    """Time the pieces of one forward + backward: the per-step recurrent products
    (through the kernels' own path, by a C hook), the stacked GEMMs (the same
    BLAS calls the kernels make), and the rest by difference: the fused
    elementwise passes, copies, allocation and the Python layer."""
    T, I, H = args.T, args.I, args.H
    print(f"\n== where the time goes ({coretype_label()}; {blas_description()}); µs per forward+backward; "
          f"{load_label()}")
    for dtype in args.dtypes:
        ceiling = gemm_ceiling(dtype)
        print(f"\n{dtype}: measured GEMM ceiling (1536³ through the same BLAS table): {ceiling:.0f} GFLOP/s")
        head = (f"{'B':>3} {'total':>8} {'steps':>8} {'path':>7} {'packed':>8} {'BLAS':>8} {'stacked':>8} "
                f"{'rest':>7} {'GFLOP/s':>8} {'%ceil':>6} {'steps GF/s':>10} {'stacked GF/s':>12}")
        print(head)
        for B in args.batches:
            p = make_problem(T, B, I, H, dtype)
            total = median_time(lambda: run_fastbp(p), args.repeats)
            x2 = p["x"].reshape(T * B, I)
            W_ih, W_hh = p["weight_ih"], p["weight_hh"]
            G = np.zeros((T, B, 4 * H), dtype)
            hs = np.zeros((T + 1, B, H), dtype)
            dh = np.zeros((B, H), dtype)
            dW_ih = np.zeros_like(W_ih)
            dW_hh = np.zeros_like(W_hh)
            dX = np.empty((T * B, I), dtype)
            lstm = _core.CELL_LSTM
            pack = np.empty(_core.engine_pack_size(lstm, 0, H, dtype == "float64"), dtype)
            steps_packed = median_time(
                lambda: _core.engine_step_products(lstm, 0, G, dh, hs, W_hh, pack), args.repeats)
            steps_blas = median_time(
                lambda: _core.engine_step_products(lstm, 0, G, dh, hs, W_hh, None), args.repeats)
            uses_packed = _recurrent.pack_workspace(_recurrent.LSTM_SPEC, B, H,
                                                    np.dtype(dtype)) is not None
            steps = steps_packed if uses_packed else steps_blas

            def stacked():
                G2 = G.reshape(T * B, 4 * H)
                _core.gemm(G2, x2, W_ih, trans_b=True)                      # input GEMM
                _core.gemm(dW_ih, G2, x2, trans_a=True, beta=1.0)           # dW_ih
                _core.gemm(dW_hh, G2, hs[:-1].reshape(T * B, H), trans_a=True, beta=1.0)  # dW_hh
                _core.gemm(dX, G2, W_ih)                                    # dX

            t_stacked = median_time(stacked, args.repeats)
            rest = total - steps - t_stacked
            flops_steps = 2 * 2 * T * B * 4 * H * H
            flops_stacked = lstm_flops(T, B, I, H) - flops_steps
            gf = lstm_flops(T, B, I, H) / total / 1e9
            print(f"{B:3d} {total*1e6:8.0f} {steps*1e6:8.0f} {'packed' if uses_packed else 'BLAS':>7} "
                  f"{steps_packed*1e6:8.0f} {steps_blas*1e6:8.0f} {t_stacked*1e6:8.0f} {rest*1e6:7.0f} {gf:8.1f} "
                  f"{100*gf/ceiling:6.1f} {flops_steps/steps/1e9:10.1f} {flops_stacked/t_stacked/1e9:12.1f}",
                  flush=True)
    print("steps: the 2T recurrent products as the kernels run them at this B (path: fastbp's packed "
          "kernel or BLAS, GEMV at B = 1), timed both ways in the next two columns; stacked: input "
          "GEMM + dW_ih + dW_hh + dX; rest = total − steps − stacked: fused passes, copies, "
          "allocation, Python.")


# ---- peak memory -------------------------------------------------------------------

def memory(args):
    """Peak bytes allocated (tracemalloc sees NumPy's buffers) during forward +
    backward, beyond the inputs and weights, against the activations BPTT must
    keep: h_t and c_t for t = 0..T and the four gates for t = 1..T."""
    import tracemalloc
    T, B, H, I = 1000, 64, 512, 512
    dtype = args.dtypes[0]
    p = make_problem(T, B, I, H, dtype)
    item = np.dtype(dtype).itemsize
    activations = (2 * (T + 1) * B * H + 4 * T * B * H) * item
    dx_bytes = T * B * I * item
    print(f"\n== peak memory, T={T} B={B} I={I} H={H} {dtype}")
    for overwrite in (True, False):
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        grads = run_fastbp(p, overwrite_cache=overwrite)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del grads
        extra = peak - base
        print(f"overwrite_cache={overwrite!s:5}: peak {extra/2**20:8.1f} MiB = "
              f"{extra/activations:.3f} × activations ({activations/2**20:.1f} MiB); "
              f"dX alone is {dx_bytes/2**20:.1f} MiB ({dx_bytes/activations:.3f} ×)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--I", type=int, default=256)
    ap.add_argument("--H", type=int, default=256)
    ap.add_argument("--no-torch", action="store_true", help="leave torch out")
    ap.add_argument("--no-reference", action="store_true", help="leave the NumPy reference out")
    ap.add_argument("--breakdown", action="store_true", help="where the time goes, GEMM ceiling")
    ap.add_argument("--memory", action="store_true", help="peak memory at T=1000 B=64 H=512")
    ap.add_argument("--no-table", action="store_true", help="skip the main table")
    ap.add_argument("--no-child", action="store_true",
                    help="do not re-run in a child process with OPENBLAS_CORETYPE flipped")
    ap.add_argument("--threads", type=int, default=None,
                    help="limit SciPy's BLAS and torch to this many threads (default: theirs)")
    ap.add_argument("--clock", choices=["wall", "thread"], default="wall",
                    help="wall: perf_counter; thread: CPU time of the calling thread, which "
                         "other processes on a shared machine do not inflate (needs --threads 1)")
    args = ap.parse_args(argv)
    if args.clock == "thread":
        if args.threads != 1:
            ap.error("--clock thread needs --threads 1 (other threads' work would not be counted)")
        global CLOCK
        CLOCK = time.thread_time
    if args.threads is not None:
        if threadpool_limits is None:
            ap.error("--threads needs threadpoolctl")
        threadpool_limits(limits=args.threads, user_api="blas")
        if torch is not None:
            torch.set_num_threads(args.threads)

    print(f"fastbp {fastbp.__version__} from {os.path.dirname(fastbp.__file__)}; {coretype_label()}")
    check_against_torch(args)
    if not args.no_table:
        table(args)
    if args.breakdown:
        breakdown(args)
    if args.memory:
        memory(args)
    if not args.no_child:
        env = dict(os.environ)
        if env.pop("OPENBLAS_CORETYPE", None) is None:
            env["OPENBLAS_CORETYPE"] = "Haswell"
        child = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--memory"]
        print(f"\n-- child process with {'OPENBLAS_CORETYPE=Haswell' if 'OPENBLAS_CORETYPE' in env else 'OPENBLAS_CORETYPE removed'}",
              flush=True)
        subprocess.run([sys.executable, os.path.abspath(__file__), *child, "--no-child"], env=env, check=True)


if __name__ == "__main__":
    main()
