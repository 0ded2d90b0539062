"""Benchmark: compiled Elman RNN, forward + full BPTT, against the NumPy
reference and torch.nn.RNN, in one process (issue 4).

Task: tanh RNN, T = 100, I = 64, H = 256, a linear readout of 64 at every
step and the squared-error loss of the notes (sum over outputs, mean over the
T·B rows), forward and backward through time with every parameter gradient
(W_ih, W_hh, b_ih, b_hh, readout W, b), batch 1 / 16 / 64, float32 and float64.

    python bench/bench_rnn.py                       # the table
    python bench/bench_rnn.py --breakdown           # where fastbp's time goes
    python bench/bench_rnn.py --threads 1           # BLAS and torch on one thread
    python bench/bench_rnn.py --batches 1 --dtypes float32 --repeats 50

Timing: the three implementations run round-robin (fastbp, reference, torch,
fastbp, ...), so a change in the machine's load hits all of them alike; the
table shows the median wall time of each over --repeats rounds after warm-up
and the ratios peer / fastbp. Before timing, the three are checked to compute
the same loss and gradients (a fast wrong answer is no result).

fastbp runs as a user would: the model's loss_and_grad when fastbp.rnn has
the RNN model, otherwise rnn_forward + the readout GEMM + squared_error +
rnn_backward (which then also computes dX, which the model skips).
"""
import argparse
import os
import sys
import time

import numpy as np

from _which_fastbp import ROOT  # noqa: E402,F401  (bench/: a built tree, else the installed fastbp)

import fastbp  # noqa: E402
from fastbp import _core, _recurrent  # noqa: E402
from fastbp import reference as ref  # noqa: E402
from fastbp import rnn as fastbp_rnn  # noqa: E402
from fastbp.functional import squared_error  # noqa: E402

try:
    import torch
except ImportError:     # the table then has no torch column
    torch = None
try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:
    threadpool_info = threadpool_limits = None

T, I, H, O = 100, 64, 256, 64


def coretype_label():
    v = os.environ.get("OPENBLAS_CORETYPE")
    return f"OPENBLAS_CORETYPE={v}" if v else "OPENBLAS_CORETYPE unset"


def blas_description():
    if threadpool_info is None:
        return "threadpoolctl not installed"
    for info in threadpool_info():
        if "scipy.libs" in info.get("filepath", ""):
            return (f"SciPy's {info['internal_api']} {info.get('version')} "
                    f"({info.get('architecture')} kernels, {info['num_threads']} threads)")
    return "SciPy's BLAS (not identified)"


def make_problem(B, dtype, seed=0):
    """Weights drawn as torch.nn.RNN / nn.Linear initialise them."""
    rng = np.random.default_rng(seed)
    k, kq = 1 / np.sqrt(H), 1 / np.sqrt(H)
    p = {"x": rng.standard_normal((T, B, I)), "y": rng.standard_normal((T, B, O)),
         "weight_ih": rng.uniform(-k, k, (H, I)), "weight_hh": rng.uniform(-k, k, (H, H)),
         "bias_ih": rng.uniform(-k, k, H), "bias_hh": rng.uniform(-k, k, H),
         "weight_out": rng.uniform(-kq, kq, (O, H)), "bias_out": rng.uniform(-kq, kq, O)}
    return {name: a.astype(dtype) for name, a in p.items()}


# ---- the three implementations: each returns (loss, {name: gradient}) ----------

def functional_step(p):
    """fastbp's functional API: compiled RNN, readout GEMM in NumPy, compiled loss."""
    x, Y = p["x"], p["y"]
    Tn, B, _ = x.shape
    y, _, cache = fastbp_rnn.rnn_forward(x, None, p["weight_ih"], p["weight_hh"],
                                         p["bias_ih"], p["bias_hh"])
    Hs = y.reshape(Tn * B, H)
    out = Hs @ p["weight_out"].T                     # O(T·B,O) = H(T·B,H) @ W_out(O,H)ᵀ
    out += p["bias_out"]
    loss, dout = squared_error(out.reshape(Tn, B, O), Y)
    dout = dout.reshape(Tn * B, O)
    g = fastbp_rnn.rnn_backward((dout @ p["weight_out"]).reshape(Tn, B, H), None, cache)
    g["weight_out"] = dout.T @ Hs                    # dW_out(O,H) = dO(T·B,O)ᵀ @ H(T·B,H)
    g["bias_out"] = dout.sum(axis=0)
    return loss, g


def make_fastbp(p):
    model_cls = getattr(fastbp_rnn, "RNN", None)
    if model_cls is None:
        return lambda: functional_step(p), "rnn_forward/backward + NumPy readout"
    model = model_cls(I, H, O, nonlinearity="tanh", loss="mse", dtype=p["x"].dtype)
    model.set_params({k: p[k] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh",
                                        "weight_out", "bias_out")})

    def step():
        loss, grads, _ = model.loss_and_grad(p["x"], p["y"])
        return loss, grads
    return step, "RNN.loss_and_grad"


def reference_step(p):
    """The NumPy reference (a Python loop over time) with the same readout."""
    x, Y = p["x"], p["y"]
    Tn, B, _ = x.shape
    y, _, cache = ref.rnn_forward(x, None, p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"])
    Hs = y.reshape(Tn * B, H)
    out = Hs @ p["weight_out"].T + p["bias_out"]
    loss, dout = ref.squared_error(out.reshape(Tn, B, O), Y)
    dout = dout.reshape(Tn * B, O)
    g = ref.rnn_backward((dout @ p["weight_out"]).reshape(Tn, B, H), None, cache)
    g["weight_out"] = dout.T @ Hs
    g["bias_out"] = dout.sum(axis=0)
    return loss, g


class TorchStep:
    """torch.nn.RNN + nn.Linear + the same squared error, autograd, same weights."""

    def __init__(self, p):
        dt = torch.float32 if p["x"].dtype == np.float32 else torch.float64
        self.rnn = torch.nn.RNN(I, H, nonlinearity="tanh").to(dt)
        self.lin = torch.nn.Linear(H, O).to(dt)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self.rnn, name + "_l0").copy_(torch.from_numpy(p[name]))
            self.lin.weight.copy_(torch.from_numpy(p["weight_out"]))
            self.lin.bias.copy_(torch.from_numpy(p["bias_out"]))
        self.x = torch.from_numpy(p["x"])
        self.y = torch.from_numpy(p["y"])
        self.params = list(self.rnn.parameters()) + list(self.lin.parameters())

    def __call__(self):
        for q in self.params:
            q.grad = None
        h, _ = self.rnn(self.x)
        loss = ((self.lin(h) - self.y) ** 2).sum(-1).mean()
        loss.backward()
        return loss

    def grads(self):
        r, lin = self.rnn, self.lin
        return {"weight_ih": r.weight_ih_l0.grad, "weight_hh": r.weight_hh_l0.grad,
                "bias_ih": r.bias_ih_l0.grad, "bias_hh": r.bias_hh_l0.grad,
                "weight_out": lin.weight.grad, "bias_out": lin.bias.grad}


def check_agreement(dtype):
    """All three give the same loss and gradients on a batch of 3 before any timing."""
    p = make_problem(3, dtype, seed=1)
    rtol = 1e-9 if dtype == "float64" else 2e-3
    fast, _ = make_fastbp(p)
    loss_f, g_f = fast()
    loss_r, g_r = reference_step(p)
    np.testing.assert_allclose(loss_f, loss_r, rtol=rtol)
    for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_out", "bias_out"):
        np.testing.assert_allclose(g_f[k], g_r[k], rtol=rtol, atol=rtol * 1e-3, err_msg=k)
    if torch is not None:
        ts = TorchStep(p)
        loss_t = ts().item()
        np.testing.assert_allclose(loss_f, loss_t, rtol=rtol)
        for k, v in ts.grads().items():
            np.testing.assert_allclose(g_f[k], v.numpy(), rtol=rtol, atol=rtol * 1e-3, err_msg=k)


def round_robin(fns, repeats, warmup=3):
    """Median wall time of each fn, the fns interleaved in every round."""
    for _ in range(warmup):
        for f in fns:
            f()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for f, ts in zip(fns, times):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
    return [float(np.median(ts)) for ts in times]


def flops(B, with_dx):
    """2 × multiply-adds of every product: input GEMM, T recurrent products
    forward and backward, readout forward, dW_out, dY, dW_ih, dW_hh (+ dX)."""
    macs = T * B * (I * H + H * H + O * H + O * H + O * H + H * H + I * H + H * H)
    return 2 * (macs + (T * B * H * I if with_dx else 0))


def table(args):
    fast_name = make_fastbp(make_problem(1, "float32"))[1]
    print(f"\n== tanh RNN + readout {O} + MSE, forward + full BPTT, T={T} I={I} H={H}; "
          f"{coretype_label()}; {blas_description()}; "
          f"torch {torch.__version__ + f' ({torch.get_num_threads()} threads)' if torch else 'not installed'}")
    print(f"   fastbp = {fast_name}; median of {args.repeats} round-robin rounds, µs; "
          f"ratio = peer time / fastbp time")
    head = (f"{'dtype':8} {'B':>3} {'fastbp':>9} {'GFLOP/s':>8} {'reference':>10} {'torch':>9} "
            f"{'×reference':>10} {'×torch':>7}")
    print(head)
    print("-" * len(head))
    for dtype in args.dtypes:
        check_agreement(dtype)
        for B in args.batches:
            p = make_problem(B, dtype)
            fast, name = make_fastbp(p)
            fns = [fast, lambda: reference_step(p)]
            if torch is not None and not args.no_torch:
                fns.append(TorchStep(p))
            ts = round_robin(fns, args.repeats) + [float("nan")]
            t_fast, t_ref, t_torch = ts[:3]
            gf = flops(B, with_dx=name.startswith("rnn_forward")) / t_fast / 1e9
            print(f"{dtype:8} {B:3d} {t_fast*1e6:9.0f} {gf:8.1f} {t_ref*1e6:10.0f} {t_torch*1e6:9.0f} "
                  f"{t_ref/t_fast:10.2f} {t_torch/t_fast:7.2f}", flush=True)


# ---- where the time goes ------------------------------------------------------------

def median_time(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def gemm_ceiling(dtype, n=1024, repeats=5):
    """GFLOP/s of a large square GEMM through fastbp's BLAS table: the machine's
    practical peak for this dtype and thread setting."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    c = np.empty_like(a)
    return 2 * n ** 3 / median_time(lambda: _core.gemm(c, a, a), repeats, warmup=1) / 1e9


def breakdown(args):
    """Time the pieces of one fastbp step: the two compiled calls, within them
    the stacked GEMMs (input, dW_ih, dW_hh through the same BLAS table) and the
    per-step work (recurrent products + fused passes; the tanh share measured
    as the difference to an identity forward), the readout's three GEMMs, and
    the rest (loss, validation, allocation, Python). The floor column is the
    whole step's FLOPs at the GEMM ceiling: no implementation on these cores
    and this BLAS can go below it."""
    print(f"\n== where fastbp's time goes, µs per forward + backward ({coretype_label()}; "
          f"{blas_description()})")
    head = (f"{'dtype':8} {'B':>3} {'step':>8} {'kern fwd':>9} {'kern bwd':>9} {'stacked':>8} "
            f"{'T steps':>8} {'(tanh)':>7} {'readout':>8} {'rest':>7} {'floor':>7} {'ceiling':>8}")
    print(head)
    for dtype in args.dtypes:
        ceiling = gemm_ceiling(dtype)
        for B in args.batches:
            p = make_problem(B, dtype)
            step = make_fastbp(p)[0]
            x, W_ih, W_hh = p["x"], p["weight_ih"], p["weight_hh"]
            b_ih, b_hh, W_out = p["bias_ih"], p["bias_hh"], p["weight_out"]
            tanh, identity = _core.ACTIVATION_CODES["tanh"], _core.ACTIVATION_CODES["identity"]
            # the engine's calls as rnn_forward / rnn_backward make them (src_c/engine.h)
            scratch = {"work": None, "rec": None,
                       "pack": _recurrent.pack_workspace(_recurrent.RNN_SPEC, B, H, np.dtype(dtype))}
            hs = np.zeros(((T + 1) * B, H), dtype)
            plain = _core.Schedule(T, B)                # every row runs every step
            x2 = x.reshape(T * B, I)
            run = {"x": x2, "states": [hs], "gates": None}   # the input side waits in hs
            weights = {"weight_ih": W_ih, "weight_hh": W_hh, "bias_ih": b_ih, "bias_hh": b_hh,
                       "peep": None}
            dy = np.random.default_rng(0).standard_normal((T * B, H)).astype(dtype) * 1e-3
            delta = np.empty((T * B, H), dtype)
            dh0 = np.zeros((B, H), dtype)
            dW_ih, dW_hh, db = np.zeros_like(W_ih), np.zeros_like(W_hh), np.zeros(H, dtype)
            grads = {"dgates": delta, "drec": None, "dx": None, "dstates": [dh0], "dy": dy}
            dweights = {"weight_ih": dW_ih, "weight_hh": dW_hh, "bias_ih": db, "bias_hh": None,
                        "peep": None}

            def kern_fwd(act=tanh):
                _core.engine_forward(_core.CELL_RNN, act, [run], [weights], scratch, plain)

            kern_fwd()

            def kern_bwd():
                _core.engine_backward(_core.CELL_RNN, tanh, [grads], [dweights], [run], [weights],
                                      scratch, plain)

            D, X2 = delta, x2
            A = np.empty((T * B, H), dtype)

            def stacked():   # input GEMM, dW_ih, dW_hh
                _core.gemm(A, X2, W_ih, trans_b=True)
                _core.gemm(dW_ih, D, X2, trans_a=True, beta=1.0)
                _core.gemm(dW_hh, D, hs[:T * B], trans_a=True, beta=1.0)

            Hs = hs[B:]
            out = np.empty((T * B, O), dtype)
            dW_out = np.zeros_like(W_out)

            def readout():   # forward, dW_out, dY
                _core.gemm(out, Hs, W_out, trans_b=True)
                _core.gemm(dW_out, out, Hs, trans_a=True, beta=1.0)
                _core.gemm(A, out, W_out)

            r = args.repeats
            t = {name: median_time(f, r) for name, f in
                 (("step", step), ("kf", kern_fwd), ("kid", lambda: kern_fwd(identity)),
                  ("kb", kern_bwd), ("st", stacked), ("ro", readout))}
            steps = t["kf"] + t["kb"] - t["st"]
            rest = t["step"] - t["kf"] - t["kb"] - t["ro"]
            floor = flops(B, with_dx=False) / ceiling / 1e3
            print(f"{dtype:8} {B:3d} {t['step']*1e6:8.0f} {t['kf']*1e6:9.0f} {t['kb']*1e6:9.0f} "
                  f"{t['st']*1e6:8.0f} {steps*1e6:8.0f} {(t['kf'] - t['kid'])*1e6:7.0f} "
                  f"{t['ro']*1e6:8.0f} {rest*1e6:7.0f} {floor:7.0f} {ceiling:6.0f} GF", flush=True)
    print("step: the whole fastbp step of the table; kern fwd/bwd: the two compiled calls; "
          "stacked: their input GEMM + dW_ih + dW_hh; T steps = kernels − stacked: the recurrent "
          "products and fused passes, of which (tanh) the nonlinearity; readout: its three GEMMs; "
          "rest = step − kernels − readout; floor = the step's FLOPs at the GEMM ceiling "
          "(a 1024³ GEMM).")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--threads", type=int, default=None,
                    help="limit BLAS (SciPy's and NumPy's) and torch to this many threads")
    ap.add_argument("--no-torch", action="store_true", help="leave torch out")
    ap.add_argument("--breakdown", action="store_true", help="where fastbp's time goes")
    ap.add_argument("--no-table", action="store_true", help="skip the main table")
    args = ap.parse_args(argv)

    if args.threads is not None:
        if threadpool_limits is None:
            sys.exit("--threads needs threadpoolctl")
        threadpool_limits(args.threads)       # after fastbp imported SciPy's BLAS
        if torch is not None:
            torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"fastbp {fastbp.__version__} from {os.path.dirname(fastbp.__file__)}; {coretype_label()}; "
          f"{os.cpu_count()} CPUs, load average {load:.2f} (other processes skew every column, "
          f"and multi-threaded BLAS most: compare ratios)")
    if not args.no_table:
        table(args)
    if args.breakdown:
        breakdown(args)


if __name__ == "__main__":
    main()
