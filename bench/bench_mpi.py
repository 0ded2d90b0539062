"""Benchmark: data-parallel training over MPI, 1 rank against 2 (fastbp.distributed).

Two workloads, the examples' models on their real data:

  mlp    the digits MLP of examples/digits_mlp.py: 64-64-10, relu, softmax
         cross-entropy, float32, Adam, 1,437 training images (needs scikit-learn)
  lstm   the character LSTM of examples/char_lstm.py: one-hot characters of
         Python's standard-library sources, 128 cells, float32, 32 streams,
         truncated BPTT over 64 steps, Adam, clipped at 5

each trained three ways, every process with ONE BLAS thread:

  plain     model.fit(...) in one process, no MPI at all (the baseline)
  1 rank    mpiexec -n 1, fit(..., comm=MPI.COMM_WORLD): the distributed path's own cost
  2 ranks   mpiexec -n 2, the same global batches split between two processes

The epochs are timed one at a time (fit(epochs=1) again and again, the first a
warm-up, not counted), in --rounds rounds that alternate the three runs (so a
neighbour's load hits them alike); the table gives medians over every timed
epoch: seconds per epoch, throughput (samples/s: images, or characters for the
LSTM), speed-up and scaling efficiency (speed-up / ranks) against the plain
run, the share of the epoch spent inside the gradient Allreduce (rank 0's
clock; it includes waiting for the slower rank) and the rest of a step, the
computation (per rank). A second table times the bare Allreduce of each model's
gradient buffer between 2 ranks, and a third puts the cost model on paper:

    t_step(N) ≈ t_compute / N + 2(N−1)·α + 2(N−1)/N · 4P / bandwidth

    python bench/bench_mpi.py                       # both workloads, 3 rounds
    python bench/bench_mpi.py --models mlp --rounds 5 --mlp-batch 32 256 --json mpi.json

Needs the mpi extra (pip install ".[mpi]": mpi4py and MPICH); mpiexec is taken
from next to this Python (a venv's bin) or from PATH.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

from _which_fastbp import ROOT  # noqa: E402  (bench/: a built tree, else the installed fastbp)

HERE = os.path.dirname(os.path.abspath(__file__))
ONE_THREAD = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", choices=["mlp", "lstm"], default=["mlp", "lstm"])
    p.add_argument("--rounds", type=int, default=3, help="rounds of the three runs (default 3)")
    p.add_argument("--epochs", type=int, nargs=2, default=[20, 3], metavar=("MLP", "LSTM"),
                   help="timed epochs per run and round (default 20 for the MLP, 3 for the LSTM)")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="rank counts (default 1 2)")
    p.add_argument("--mlp-batch", type=int, nargs="+", default=[32, 256],
                   help="global batch sizes for the MLP (default 32, the example's, and 256)")
    p.add_argument("--chars", type=int, default=60_000, help="characters of text for the LSTM")
    p.add_argument("--hidden", type=int, default=128, help="LSTM cells (default 128)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--timed", type=int, help=argparse.SUPPRESS)
    p.add_argument("--allreduce", type=int, metavar="P", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# -- the workloads --------------------------------------------------------------------
def _example(name):
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "examples", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(name, args):
    """(model, X, y, fit keywords, samples per epoch)"""
    import numpy as np
    from fastbp import LSTM, MLP
    from fastbp.optim import Adam
    if name == "mlp":
        X, _, y, _ = _example("digits_mlp").load_split(0)
        model = MLP([64, 64, 10], activation="relu", output="softmax", loss="cross_entropy",
                    dtype="float32", seed=0)
        return model, X, y, dict(batch_size=args.batch, optimizer=Adam(lr=1e-3)), len(X)
    ex = _example("char_lstm")
    text, _ = ex.read_corpus(None, args.chars)
    text = text.encode("ascii", "ignore").decode("ascii")
    vocab = sorted(set(text))
    index = {ch: i for i, ch in enumerate(vocab)}
    ids = np.array([index[ch] for ch in text], dtype=np.int64)
    inputs, targets = ex.streams(ids, 32)
    X = ex.one_hot(inputs, len(vocab))
    model = LSTM(len(vocab), args.hidden, len(vocab), loss="cross_entropy", dtype="float32", seed=0)
    return model, X, targets, dict(batch_size=32, bptt=64, optimizer=Adam(lr=3e-3), clip_norm=5.0,
                                   shuffle=False), X.shape[0] * X.shape[1]


def worker(args):
    """One run (plain, or one rank of an mpiexec job); rank 0 prints a JSON line."""
    comm = dp = None
    if not args.plain:
        from mpi4py import MPI
        from fastbp.distributed import DataParallel
        comm = MPI.COMM_WORLD
    if args.allreduce:
        return allreduce_only(comm, args.allreduce)
    model, X, y, kw, samples = build(args.model, args)
    if comm is not None:
        dp = DataParallel(model, comm)
    epochs, shares, compute, steps = [], [], [], 0
    for e in range(args.timed + 1):
        if dp is not None:
            dp.reset_stats()
        cpu = time.process_time()
        history = model.fit(X, y, epochs=1, progress=False, seed=e, comm=dp, **kw)
        cpu = time.process_time() - cpu
        if e:
            epochs.append(history["time"][0])
            compute.append(cpu)
            if dp is not None:
                shares.append(dp.stats["allreduce_seconds"] / history["time"][0])
                compute[-1] -= dp.stats["allreduce_cpu_seconds"]
                steps = dp.stats["steps"]
    result = dict(epoch_seconds=epochs, allreduce_share=shares, compute_cpu_seconds=compute,
                  steps=steps, samples=samples,
                  parameters=sum(p.size for _, p in model.named_parameters()),
                  final_loss=history["loss"][-1])
    if comm is not None:
        gathered = comm.gather(result, root=0)
        if comm.Get_rank() != 0:
            return
        result["allreduce_share_by_rank"] = [statistics.median(g["allreduce_share"]) for g in gathered]
        # the slowest rank's computation sets the pace
        result["compute_cpu_seconds"] = [max(c) for c in zip(*(g["compute_cpu_seconds"]
                                                                for g in gathered))]
    print("RESULT " + json.dumps(result), flush=True)


def allreduce_only(comm, P, repeats=300):
    """Median seconds of one in-place Allreduce of P float32 + 4 (the step's buffer)."""
    import numpy as np
    from mpi4py import MPI
    buf = np.ones(P + 4, dtype=np.float32)
    times = []
    for i in range(repeats + 20):
        comm.Barrier()
        t0 = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        if i >= 20:
            times.append(time.perf_counter() - t0)
    everyone = comm.gather(statistics.median(times), root=0)
    if comm.Get_rank() == 0:
        print("RESULT " + json.dumps(dict(P=P, seconds=max(everyone))), flush=True)


# -- the launcher ------------------------------------------------------------------------
def mpiexec_path():
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = here if os.access(here, os.X_OK) else shutil.which("mpiexec")
    if found is None:
        sys.exit("no mpiexec next to this Python or on PATH: pip install \".[mpi]\"")
    return found


def launch(ranks, extra, plain=False):
    # the ranks run this script, which picks the same fastbp as this process
    # (_which_fastbp): no PYTHONPATH, which would put an unbuilt source tree first
    env = dict(os.environ, **ONE_THREAD)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker"] + extra
    if plain:
        cmd.append("--plain")
    else:
        cmd = [mpiexec_path(), "-n", str(ranks)] + cmd
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}")
    return json.loads(lines[-1][len("RESULT "):])


def machine():
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    try:
        from mpi4py import MPI
        mpi = MPI.Get_library_version().splitlines()[0].strip()
        import mpi4py
        mpi += f", mpi4py {mpi4py.__version__}"
    except ImportError:
        mpi = "mpi4py not installed"
    import numpy as np
    return (f"  CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores; "
            f"load average before: {' '.join(f'{x:.2f}' for x in load) if load else 'n/a'}\n"
            f"  {mpi}; python {platform.python_version()}, numpy {np.__version__}; "
            f"one BLAS thread per process")


def _what(r):
    return f"digits MLP, batch {r['batch']}" if r["model"] == "mlp" else "char LSTM, 32 streams x 64"


def _run(r):
    return "plain" if r["mode"] == "plain" else f"{r['ranks']} rank" + "s" * (r["ranks"] > 1)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    print(machine())
    runs = []
    for name in args.models:
        for batch in (args.mlp_batch if name == "mlp" else [32]):
            epochs = args.epochs[0] if name == "mlp" else args.epochs[1]
            extra = ["--model", name, "--batch", str(batch), "--timed", str(epochs),
                     "--chars", str(args.chars), "--hidden", str(args.hidden)]
            configs = [("plain", 1)] + [("mpi", n) for n in args.ranks]
            merged = {}
            for _ in range(args.rounds):
                for mode, n in configs:
                    r = launch(n, extra, plain=mode == "plain")
                    if (mode, n) not in merged:
                        merged[mode, n] = dict(model=name, batch=batch, ranks=n, mode=mode, **r)
                    else:
                        for key in ("epoch_seconds", "allreduce_share", "compute_cpu_seconds"):
                            merged[mode, n][key] += r[key]
            runs += list(merged.values())
    plain = {(r["model"], r["batch"]): r for r in runs if r["mode"] == "plain"}
    sizes = {r["model"]: r["parameters"] for r in runs}
    bare = {}
    if 2 in args.ranks:
        for name, P in sizes.items():
            bare[name] = launch(2, ["--allreduce", str(P)])["seconds"]

    print("\nwall clock (medians over the timed epochs of every round):")
    print(f"{'workload':<28}{'run':<9}{'s/epoch':>9}{'samples/s':>12}{'speed-up':>10}"
          f"{'efficiency':>12}{'in Allreduce':>14}{'ms/Allreduce':>14}")
    for r in runs:
        sec = statistics.median(r["epoch_seconds"])
        base = statistics.median(plain[(r["model"], r["batch"])]["epoch_seconds"])
        r["steps_per_epoch"] = steps = (-(-r["samples"] // r["batch"]) if r["model"] == "mlp"
                                        else -(-r["samples"] // (32 * 64)))
        r.update(median_epoch_seconds=sec, throughput=r["samples"] / sec, speedup=base / sec,
                 efficiency=base / sec / r["ranks"], median_allreduce_share=0.0,
                 compute_cpu_ms_per_step=1e3 * statistics.median(r["compute_cpu_seconds"]) / steps)
        share = ms = ""
        if r["mode"] == "mpi":
            r["median_allreduce_share"] = statistics.median(r["allreduce_share"])
            share = f"{100 * r['median_allreduce_share']:.1f}%"
            ms = f"{1e3 * r['median_allreduce_share'] * sec / steps:.3f}"
        print(f"{_what(r):<28}{_run(r):<9}{sec:>9.3f}{r['throughput']:>12,.0f}{r['speedup']:>9.2f}x"
              f"{100 * r['efficiency']:>11.0f}%{share:>14}{ms:>14}")

    print("\nCPU time (immune to neighbours' load): computation per step on the slowest rank,"
          "\nAllreduce excluded, and the throughput a core per rank would give with the bare"
          "\nAllreduce below (compute + Allreduce per step):")
    print(f"{'workload':<28}{'run':<9}{'compute ms/step':>16}{'compute speed-up':>18}"
          f"{'samples/s':>12}{'speed-up':>10}{'efficiency':>12}")
    for r in runs:
        base = plain[(r["model"], r["batch"])]["compute_cpu_ms_per_step"]
        step_ms = r["compute_cpu_ms_per_step"] + (1e3 * bare.get(r["model"], 0.0) if r["ranks"] > 1 else 0)
        r["projected_throughput"] = r["samples"] / (r["steps_per_epoch"] * step_ms / 1e3)
        r["projected_speedup"] = base / step_ms
        print(f"{_what(r):<28}{_run(r):<9}{r['compute_cpu_ms_per_step']:>16.3f}"
              f"{base / r['compute_cpu_ms_per_step']:>17.2f}x{r['projected_throughput']:>12,.0f}"
              f"{r['projected_speedup']:>9.2f}x{100 * r['projected_speedup'] / r['ranks']:>11.0f}%")

    if bare:
        print("\nthe bare Allreduce of the step's buffer (P + 4 float32), 2 ranks, median of 300:")
        for name, P in sizes.items():
            print(f"  {name:<5} P = {P:>7,}  {4 * P / 1024:>7.1f} KiB  {1e6 * bare[name]:>8.1f} µs")

    print("\ncost model on paper, per step: t_compute/N + 2(N-1)·α + 2(N-1)/N·4P/bandwidth")
    print("(ring allreduce; α = 25 µs per message and 10 Gbit/s = 1.25 GB/s, or 100 Gbit/s;"
          " t_compute: the plain run's CPU time per step)")
    for r in runs:
        if r["mode"] != "plain":
            continue
        P = r["parameters"]
        tc = r["compute_cpu_ms_per_step"] / 1e3
        label = f"{r['model']} batch {r['batch']}" if r["model"] == "mlp" else "lstm"
        cells = []
        for N in (1, 2, 4, 8, 16):
            for bw in (1.25e9, 12.5e9):
                t = tc / N + (2 * (N - 1) * 25e-6 + 2 * (N - 1) / N * 4 * P / bw if N > 1 else 0)
                cells.append(tc / t)
        print(f"  {label:<15} P = {P:>7,}, t_compute = {1e3 * tc:.3f} ms/step; speed-up at "
              f"N = 1, 2, 4, 8, 16 (10 | 100 Gbit/s): "
              + ", ".join(f"{cells[2 * i]:.1f}|{cells[2 * i + 1]:.1f}" for i in range(5)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(runs=runs, bare_allreduce_seconds=bare), f, indent=1)
        print(f"\nresults written to {args.json}")


if __name__ == "__main__":
    main()
