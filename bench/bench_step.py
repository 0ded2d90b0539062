"""Benchmark: the per-step cost of streaming inference, fastbp's model.step against torch's cells.

    python bench/bench_step.py                          # B=1, H=256, I=256, float32
    python bench/bench_step.py --input 32 --threads 1   # fastbp on one thread of its team
    python bench/bench_step.py --quick --json out.json  # tiny, for the tests

Each implementation streams the same sequence one step per call, carrying the
state, with a readout (a Linear H -> O) on every step, as ``model.step``
returns one:

- fastbp: ``y, state = model.step(x_t, state)`` (fastbp.RNN / LSTM / GRU);
- torch: ``torch.nn.RNNCell`` / ``LSTMCell`` / ``GRUCell`` and a
  ``torch.nn.Linear`` readout, under ``torch.inference_mode()``;
- fastbp forward: ``model.forward`` over the whole sequence in one call, per
  step (what streaming gives up).

Reported per step: the median over --repeats runs of --steps steps after a
warm-up, in µs, and torch / fastbp. The header prints the CPU, fastbp's and
torch's threads and the load average: on a shared machine the figures move
with the load, so compare rows of one run. The weights are torch's on both
sides, and the outputs are checked to agree before anything is timed.
"""
import argparse
import json
import os
import platform
import time

import numpy as np

from _which_fastbp import ROOT  # noqa: F401  (bench/: a built tree, else the installed fastbp)

import fastbp  # noqa: E402
from fastbp.bench.harness import settle  # noqa: E402

try:
    import torch
except ImportError:     # the table then has no torch column
    torch = None

CELLS = ("lstm", "gru", "rnn")
TORCH_CELL = {"lstm": "LSTMCell", "gru": "GRUCell", "rnn": "RNNCell"}


def cpu_label():
    """`lscpu`'s model name and the SIMD flags that matter here."""
    name, flags = platform.processor() or "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            info = dict(line.split(":", 1) for line in f if ":" in line)
        info = {k.strip(): v.strip() for k, v in info.items()}
        name, flags = info.get("model name", name), set(info.get("flags", "").split())
    except OSError:
        pass
    simd = [f for f in ("avx2", "fma", "avx512f") if f in flags]
    return f"{name} ({', '.join(simd) or 'no AVX2'}), {os.cpu_count()} CPUs"


def load_label():
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "load average unknown"


def per_step_us(runs, steps, repeats):
    """{name: µs per step}: the median over `repeats` rounds of (time of one
    stream of `steps` steps) / steps. The streams take turns, each after the
    process's other threads went idle (torch's and OpenBLAS's pools spin
    after a call, on the core fastbp's team uses) and one untimed stream:
    every implementation sees the same machine, warm."""
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    for r in range(repeats):
        names = list(runs)
        for name in names[r % len(names):] + names[:r % len(names)]:
            settle(0.0, window=0.02, max_wait=0.5)
            runs[name]()        # untimed: caches and clocks back from the idle wait
            t0 = time.perf_counter()
            runs[name]()
            times[name].append((time.perf_counter() - t0) / steps)
    return {name: float(np.median(t)) * 1e6 for name, t in times.items()}


def build(cell, I, H, O, dtype, seed=0):
    """A fastbp model and, when torch is there, the torch cell and readout
    holding the same weights."""
    model = getattr(fastbp, cell.upper())(I, H, O, dtype=dtype, seed=seed)
    if torch is None:
        return model, None
    tdt = torch.float32 if dtype == "float32" else torch.float64
    tcell = getattr(torch.nn, TORCH_CELL[cell])(I, H).to(tdt)
    readout = torch.nn.Linear(H, O).to(tdt)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(tcell, name).copy_(torch.from_numpy(model.params[name]))
        readout.weight.copy_(torch.from_numpy(model.params["weight_out"]))
        readout.bias.copy_(torch.from_numpy(model.params["bias_out"]))
    return model, (tcell, readout)


def fastbp_stream(model, X):
    def run():
        state = None
        for x in X:
            y, state = model.step(x, state)
        return y
    return run


def torch_stream(cell, peer, X):
    tcell, readout = peer
    Xt = torch.from_numpy(X)
    B, H = X.shape[1], tcell.hidden_size
    zeros = torch.zeros(B, H, dtype=Xt.dtype)

    def run():
        with torch.inference_mode():
            state = (zeros, zeros) if cell == "lstm" else zeros
            for x in Xt:
                state = tcell(x, state)
                y = readout(state[0] if cell == "lstm" else state)
        return y
    return run


def check(cell, model, peer, X):
    """The two agree before anything is timed (a fast wrong step is no result)."""
    ours = fastbp_stream(model, X[:5])()
    if peer is not None:
        theirs = torch_stream(cell, peer, X[:5])().numpy()
        tol = 1e-4 if X.dtype == np.float32 else 1e-10
        np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol)
    # a loop of steps is forward, bit for bit
    np.testing.assert_array_equal(ours, model.forward(X[:5])[0][-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--input", type=int, default=256)
    ap.add_argument("--output", type=int, default=10)
    ap.add_argument("--steps", type=int, default=200, help="steps per timed stream")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--cells", default=",".join(CELLS))
    ap.add_argument("--threads", type=int, default=None,
                    help="fastbp.set_num_threads (default: fastbp's default)")
    ap.add_argument("--torch-threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (the tests)")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    if args.quick:
        args.hidden, args.input, args.steps, args.repeats = 8, 4, 10, 2
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    bad = [c for c in cells if c not in CELLS]
    if bad:
        ap.error(f"--cells: unknown {bad}; choose from {', '.join(CELLS)}")
    if args.threads is not None:
        fastbp.set_num_threads(args.threads)
    if torch is not None and args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    B, H, I, O = args.batch, args.hidden, args.input, args.output
    print(f"== per-step cost of streaming inference, B={B} H={H} I={I} O={O} {args.dtype}; "
          f"median of {args.repeats} streams of {args.steps} steps, µs per step")
    print(f"   {cpu_label()}; fastbp {fastbp.get_num_threads()} threads; torch "
          + (f"{torch.__version__} {torch.get_num_threads()} threads" if torch else "not installed")
          + f"; {load_label()}")
    head = f"{'cell':5} {'fastbp step':>12} {'torch cell':>11} {'torch/fastbp':>13} {'forward/T':>10}"
    print(head)
    print("-" * len(head))
    rows = []
    rng = np.random.default_rng(0)
    for cell in cells:
        X = rng.standard_normal((args.steps, B, I)).astype(args.dtype)
        model, peer = build(cell, I, H, O, args.dtype)
        check(cell, model, peer, X)
        runs = {"step": fastbp_stream(model, X), "forward": lambda: model.forward(X)}
        if peer is not None:
            runs["torch"] = torch_stream(cell, peer, X)
        t = per_step_us(runs, args.steps, args.repeats)
        t_step, t_forward, t_torch = t["step"], t["forward"], t.get("torch")
        ratio = t_torch / t_step if t_torch else None
        rows.append({"cell": cell, "batch": B, "hidden": H, "input": I, "dtype": args.dtype,
                     "fastbp_step_us": t_step, "torch_cell_us": t_torch,
                     "torch_over_fastbp": ratio, "fastbp_forward_per_step_us": t_forward})
        print(f"{cell:5} {t_step:12.1f} {t_torch if t_torch else float('nan'):11.1f} "
              f"{ratio if ratio else float('nan'):13.2f} {t_forward:10.1f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": cpu_label(), "fastbp_threads": fastbp.get_num_threads(),
                       "torch_threads": torch.get_num_threads() if torch else None,
                       "load": load_label(), "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
