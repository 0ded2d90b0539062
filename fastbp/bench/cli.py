"""``fastbp bench``: time fastbp against the NumPy reference, PyTorch, JAX and onnxruntime.

For every workload and size, every implementation gets the same weights and
inputs; each runs one step first (timed apart as its first call) whose
gradients (the inference workload: outputs) are checked against fastbp's, and
only the implementations that agree are timed (``harness.measure``). The
environment goes at the top of the output, the table at the end; Ctrl-C prints
what was measured so far.
"""
import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

import fastbp

from . import env as envmod
from . import harness, load, peers_jax, peers_onnx, peers_torch, report, workloads
from .workloads import IMPLEMENTATIONS, Unavailable

MODELS = ("mlp", "rnn", "lstm", "lstm_len", "lstm2bi", "gru", "lstm_infer")
DTYPES = ("float32", "float64")
DEFAULT_HIDDEN = 256

# batches per model, sequence length, samples per row, seconds per sample at least,
# seconds a row should stay under, seconds of quiet before each block of samples, rounds
# the samples are spread over (harness.measure), and the size of the ceiling's GEMM
MODES = {
    "quick": {"batches": {"mlp": [1, 32], "rnn": [1, 16], "lstm": [1, 16], "lstm_len": [8],
                          "lstm2bi": [4], "gru": [1, 16], "lstm_infer": [1, 16]},
              "seq_len": 20,
              "repeat": 3, "min_time": 0.002, "budget": 0.3, "pause": 0.02, "rounds": 1,
              "ceiling_n": 512},
    "default": {"batches": {"mlp": [1, 32, 256], "rnn": [1, 16, 64], "lstm": [1, 16, 64],
                            "lstm_len": [64], "lstm2bi": [32], "gru": [1, 16, 64],
                            "lstm_infer": [1, 16, 64]},
                "seq_len": 100, "repeat": 9, "min_time": 0.01, "budget": 2.0, "pause": 0.1,
                "rounds": 3, "ceiling_n": 1024},
    "full": {"batches": {"mlp": [1, 32, 256, 1024], "rnn": [1, 16, 64, 256],
                         "lstm": [1, 16, 64, 256], "lstm_len": [64, 256],
                         "lstm2bi": [32, 128], "gru": [1, 16, 64, 256],
                         "lstm_infer": [1, 16, 64, 256]}, "seq_len": 100,
             "repeat": 15, "min_time": 0.05, "budget": 6.0, "pause": 0.3, "rounds": 3,
             "ceiling_n": 2048},
}

EXIT_INTERRUPTED = 130


# -- command line ------------------------------------------------------------------

def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _int_list(text):
    return [_positive_int(t) for t in text.split(",") if t.strip()] or _positive_int("")


def _choices_list(allowed):
    def parse(text):
        names = [t.strip() for t in text.split(",") if t.strip()]
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {', '.join(allowed)}; got {text!r}")
        return names
    return parse


def add_arguments(p):
    p.add_argument("--models", type=_choices_list(MODELS), metavar="LIST",
                   help=f"comma-separated workloads to run: {','.join(MODELS)} "
                        "(default: all)")
    p.add_argument("--impl", type=_choices_list(IMPLEMENTATIONS), metavar="LIST",
                   help=f"implementations to run: {','.join(IMPLEMENTATIONS)} (default: all; "
                        "fastbp-padded only runs lstm_len, onnxruntime only lstm_infer)")
    p.add_argument("--batch", type=_int_list, metavar="LIST",
                   help="batch sizes for every workload, e.g. 1,32,256 (default: per workload)")
    p.add_argument("--hidden", type=_positive_int, metavar="H",
                   help=f"hidden width: MLP hidden layers, RNN/LSTM/GRU state "
                        f"(default {DEFAULT_HIDDEN})")
    p.add_argument("--seq-len", type=_positive_int, metavar="T",
                   help="sequence length of the RNN, LSTM and GRU (default 100; 20 with --quick)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="default float32")
    p.add_argument("--repeat", type=_positive_int, metavar="N",
                   help="timed samples per row (default 9; 3 with --quick, 15 with --full); "
                        "slow rows get fewer, never fewer than min(N, 3)")
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="fastbp's thread team (fastbp.set_num_threads), BLAS threads (through "
                        "threadpoolctl), torch threads (torch.set_num_threads) and "
                        "onnxruntime's intra_op_num_threads; default: the libraries' own")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="small sizes and few repeats: a smoke test in seconds")
    mode.add_argument("--full", action="store_true",
                      help="more sizes (up to batch 1024/256) and repeats: several minutes")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.add_argument("--plot", metavar="FILE.png",
                   help="draw the comparison to FILE.png (needs matplotlib)")
    p.add_argument("--blas-coretype", metavar="auto|NAME",
                   help="rerun the fastbp and NumPy rows in a child process with "
                        "OPENBLAS_CORETYPE removed (auto) or set to NAME")
    p.add_argument("--load", action="store_true",
                   help="keep one core busy with a spinning process during the timing "
                        "(a shared machine: the robustness row)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return p


def resolve_config(args, error):
    """Options + mode defaults -> the run's configuration (a JSON-ready dict)."""
    mode = "quick" if args.quick else "full" if args.full else "default"
    m = MODES[mode]
    models = list(dict.fromkeys(args.models or MODELS))
    batches = {w: list(dict.fromkeys(args.batch)) if args.batch else m["batches"][w]
               for w in models}
    for name in ("json", "plot"):
        path = getattr(args, name)
        if path:
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                error(f"--{name} {path}: folder {folder} does not exist")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            error("--plot needs matplotlib, which is not installed "
                  "(pip install matplotlib, or pip install 'fastbp[bench]')")
    coretype = args.blas_coretype
    if coretype is not None and (not coretype.strip() or any(c.isspace() for c in coretype)):
        error(f"--blas-coretype: expected 'auto' or an OpenBLAS core name, got {coretype!r}")
    return {
        "mode": mode, "dtype": args.dtype, "models": models,
        "implementations": list(dict.fromkeys(args.impl or IMPLEMENTATIONS)),
        "batches": batches,
        "seq_len": args.seq_len or m["seq_len"],
        "hidden": args.hidden or DEFAULT_HIDDEN,
        "repeat": args.repeat or m["repeat"],
        "min_time": m["min_time"], "budget": m["budget"], "pause": m["pause"],
        "rounds": m["rounds"],
        "ceiling_n": m["ceiling_n"],
        "threads": args.threads, "blas_coretype": coretype, "load": bool(args.load),
    }


# -- progress on stderr --------------------------------------------------------------

class Progress:
    """A one-line bar with the current activity on a terminal; on a file or pipe,
    one line per finished row instead (a bar redrawn with \\r would be noise there)."""

    def __init__(self, total, enabled=True, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.total, self.done = total, 0
        self.start = time.perf_counter()

    def activity(self, text):
        """What is running now (drawn on a terminal only)."""
        if self.tty:
            elapsed = time.perf_counter() - self.start
            fill = int(24 * self.done / max(1, self.total))
            line = f"[{'#' * fill}{'.' * (24 - fill)}] {self.done}/{self.total} {elapsed:4.0f}s {text}"
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write("\r" + line[:width].ljust(width))
            self.stream.flush()

    def finished(self, text):
        """A row is done."""
        self.done += 1
        if self.tty:
            self.activity(text)
        elif self.enabled:
            elapsed = time.perf_counter() - self.start
            self.stream.write(f"[{self.done}/{self.total} {elapsed:.0f}s] {text}\n")
            self.stream.flush()

    def close(self):
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write("\r" + " " * width + "\r")
            self.stream.flush()


# -- threads -----------------------------------------------------------------------

def _installed(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):   # ValueError: a module blocked in sys.modules
        return False


# --load's extra row: fastbp's own step on one thread, beside the team's
ONE_THREAD = "fastbp@1thread"


@contextlib.contextmanager
def one_thread():
    """fastbp's team at one thread for the block, then as it was."""
    before = fastbp.get_num_threads()
    fastbp.set_num_threads(1)
    try:
        yield
    finally:
        fastbp.set_num_threads(before)


@contextlib.contextmanager
def thread_control(threads, notes):
    """Set fastbp's team, BLAS (threadpoolctl), torch and onnxruntime threads to
    ``threads`` for the block."""
    if threads is None:
        yield
        return
    team_before = fastbp.get_num_threads()
    team = min(threads, fastbp._core.TEAM_MAX)
    if team < threads:
        notes.append(f"--threads: fastbp's team has at most {team} threads")
    fastbp.set_num_threads(team)
    peers_onnx.set_intra_op_threads(threads)
    limits = contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
        limits = threadpool_limits(limits=threads, user_api="blas")
    except ImportError:
        notes.append("--threads: threadpoolctl is not installed, BLAS threads are NOT limited "
                     "(set OPENBLAS_NUM_THREADS before starting instead)")
    if _installed("jax"):
        notes.append("--threads: XLA's CPU threads (the jax rows) are not limited")
    torch, before = None, None
    try:
        import torch
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
    except ImportError:
        pass
    try:
        with limits:
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)
        peers_onnx.set_intra_op_threads(None)
        fastbp.set_num_threads(team_before)


# -- one problem: build, check, time ---------------------------------------------------

def builders():
    """Implementation name -> {workload: builder}; the peers import their libraries lazily."""
    return {"fastbp": workloads.FASTBP, "reference": workloads.REFERENCE,
            "torch": peers_torch.BUILDERS, "jax": peers_jax.BUILDERS,
            "onnxruntime": peers_onnx.BUILDERS, "fastbp-padded": workloads.FASTBP_PADDED}


def new_row(problem, impl):
    return {"workload": problem.workload, "label": problem.label, "size": problem.size,
            "dtype": problem.dtype.name, "implementation": impl, "status": "pending",
            "detail": "", "note": "", "median_us": None, "min_us": None, "max_us": None,
            "repeats": None, "inner": None, "first_call_s": None, "gflops": None,
            "ceiling_fraction": None, "grad_check": None, "ratios": {}}


def _error_text(e):
    return f"{type(e).__name__}: {e}".strip().splitlines()[0][:300]


def check_same_bits(row, got, want, what="gradient"):
    """Mark ``row`` WRONG unless ``got`` equals ``want`` bit for bit (fastbp on
    one thread against its team: the README's guarantee)."""
    err, name = workloads.compare_grads(got, want)
    same = got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)
    row["grad_check"] = {"against": "fastbp", "max_rel_error": err, "worst": name, "tol": 0.0,
                         "ok": same}
    if not same:
        row["status"] = "WRONG"
        row["detail"] = (f"{what}s differ from the team's in the last bits (relative error "
                         f"{err:.2e}): results should not depend on the thread count; not timed")


def check_gradients(rows, grads, tol, what="gradient"):
    """Mark rows whose gradients (``what``: or outputs) disagree WRONG.

    fastbp is checked against the NumPy reference (the oracle), and every other
    implementation against fastbp, or against the reference when fastbp is
    missing or WRONG. An implementation with nothing to compare to stays unchecked.
    """
    def mark(impl, against):
        err, name = workloads.compare_grads(grads[impl], grads[against])
        ok = err <= tol
        rows[impl]["grad_check"] = {"against": against, "max_rel_error": err,
                                    "worst": name, "tol": tol, "ok": ok}
        if not ok:
            rows[impl]["status"] = "WRONG"
            rows[impl]["detail"] = (f"{what} {name!r} differs from {against}'s: "
                                    f"relative error {err:.2e} > {tol:.0e}; not timed")
        return ok

    anchor = None
    if "fastbp" in grads:
        if "reference" not in grads or mark("fastbp", "reference"):
            anchor = "fastbp"
    if anchor is None and "reference" in grads:
        anchor = "reference"
    if anchor is None:
        return
    for impl in grads:
        if impl != anchor and rows[impl]["grad_check"] is None:
            mark(impl, anchor)
    if anchor == "fastbp" and "reference" in grads and rows["reference"]["grad_check"] is None:
        mark("reference", "fastbp")


def run_problem(problem, cfg, impl_builders, all_rows, progress):
    rows, runners, grads = {}, {}, {}
    for impl in cfg["implementations"]:
        if problem.workload not in impl_builders[impl]:
            continue        # e.g. fastbp-padded exists for lstm_len only
        row = rows[impl] = new_row(problem, impl)
        all_rows.append(row)
        progress.activity(f"{problem.workload} {problem.label} · {impl}: first call, "
                          f"{problem.checks}s")
        try:
            runner = impl_builders[impl][problem.workload](problem)
            grads[impl], row["first_call_s"] = harness.time_call(runner.grads)
            runners[impl] = runner
            row["note"] = runner.note
        except Unavailable as e:
            row["status"], row["detail"] = e.status, e.detail
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as e:   # a failing implementation is reported, the run goes on
            row["status"], row["detail"] = "error", _error_text(e)

    contexts = {}
    if cfg["load"] and cfg["threads"] != 1 and "fastbp" in runners:
        # the team against one thread under the same load, in the same rounds
        row = rows[ONE_THREAD] = new_row(problem, ONE_THREAD)
        all_rows.append(row)
        row["note"] = ("fastbp on one thread (fastbp.set_num_threads(1)) under the same load, "
                       "timed in the same rounds as the team")
        with one_thread():
            got, row["first_call_s"] = harness.time_call(runners["fastbp"].grads)
        check_same_bits(row, got, grads["fastbp"], problem.checks)
        if row["status"] == "pending":
            runners[ONE_THREAD] = runners["fastbp"]
            contexts[ONE_THREAD] = one_thread

    check_gradients(rows, grads, workloads.check_tol(problem), problem.checks)

    pending = {impl: runners[impl].step for impl, row in rows.items()
               if row["status"] == "pending"}

    def on_block(impl, r):
        progress.activity(f"{problem.workload} {problem.label} · {impl}: timing, "
                          f"round {r + 1}/{cfg['rounds']}")
    timings = harness.measure(pending, repeat=cfg["repeat"], min_time=cfg["min_time"],
                              budget=cfg["budget"], pause=cfg["pause"], rounds=cfg["rounds"],
                              on_block=on_block, contexts=contexts)
    for impl, row in rows.items():
        t = timings.get(impl)
        if isinstance(t, BaseException):
            row["status"], row["detail"] = "error", _error_text(t)
        elif t is not None:
            gflops = problem.flops / t.median / 1e9
            row.update(status="ok", median_us=t.median * 1e6, min_us=t.min * 1e6,
                       max_us=t.max * 1e6, repeats=t.repeats, inner=t.inner, gflops=gflops)
        result = (f"{report.fmt_us(row['median_us'])} µs" if row["status"] == "ok"
                  else row["status"])
        progress.finished(f"{problem.workload} {problem.label} · {impl}: {result}")


# -- the OPENBLAS_CORETYPE rerun in a child process -------------------------------------

def _child_args(cfg):
    args = ["--models", ",".join(cfg["models"]), "--dtype", cfg["dtype"],
            "--seq-len", str(cfg["seq_len"]), "--hidden", str(cfg["hidden"]),
            "--repeat", str(cfg["repeat"])]
    if cfg["mode"] != "default":
        args.append("--" + cfg["mode"])
    if cfg["threads"]:
        args += ["--threads", str(cfg["threads"])]
    if cfg["load"]:
        args.append("--load")
    return args


def rerun_with_coretype(cfg, value, progress_enabled):
    """Run the fastbp and reference rows again with OPENBLAS_CORETYPE changed.

    Returns (rows labelled impl@value, a summary for the JSON, a note or None).
    """
    current = os.environ.get(envmod.CORETYPE_VAR)
    wanted = None if value == "auto" else value
    if current == wanted:
        return [], None, (f"--blas-coretype {value}: {envmod.CORETYPE_VAR} is already "
                          f"{current or 'unset'} here, the rows above are that run; no rerun")
    impls = [i for i in cfg["implementations"] if i in ("fastbp", "reference")]
    if not impls:
        return [], None, "--blas-coretype: neither fastbp nor reference is selected; no rerun"
    child_env = dict(os.environ)
    if wanted is None:
        child_env.pop(envmod.CORETYPE_VAR, None)
    else:
        child_env[envmod.CORETYPE_VAR] = wanted
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "child.json")
        # the child imports the very fastbp this process runs (not one that the current
        # folder or another sys.path entry might shadow it with)
        root = os.path.dirname(os.path.dirname(os.path.abspath(fastbp.__file__)))
        start = (f"import sys; sys.path.insert(0, {root!r}); "
                 "from fastbp.__main__ import main; sys.exit(main(sys.argv[1:]))")
        cmd = [sys.executable, "-c", start, "bench", *_child_args(cfg),
               "--impl", ",".join(impls), "--json", out]
        if not progress_enabled:
            cmd.append("--no-progress")
        # the default batches differ per workload: one child per distinct batch list
        batches = {tuple(b) for b in cfg["batches"].values()}
        docs = []
        for batch_list in sorted(batches):
            models = [w for w in cfg["models"] if tuple(cfg["batches"][w]) == batch_list]
            full = cmd + ["--batch", ",".join(map(str, batch_list))]
            full[full.index("--models") + 1] = ",".join(models)
            proc = subprocess.run(full, env=child_env, stdout=subprocess.PIPE,
                                  stderr=None, text=True)
            if not os.path.exists(out):
                tail = "; ".join(proc.stdout.strip().splitlines()[-3:])
                return [], None, (f"--blas-coretype {value}: the child process failed "
                                  f"(exit {proc.returncode}) {tail}")
            with open(out, encoding="utf-8") as f:
                docs.append(json.load(f))
            os.remove(out)
    rows = []
    for doc in docs:
        for row in doc["results"]:
            row["implementation"] = f"{row['implementation']}@{value}"
            row["variant"] = {"openblas_coretype": wanted}
            rows.append(row)
    summary = {"openblas_coretype": wanted, "environment": docs[0]["environment"],
               "gemm_ceiling": docs[0]["gemm_ceiling"]}
    kernels = ", ".join(f"{b['owner']}: {b['kernel']}"
                        for b in (docs[0]["environment"].get("blas") or []))
    note = (f"X@{value}: rerun in a child process with {envmod.CORETYPE_VAR} "
            f"{'removed' if wanted is None else '=' + wanted}; kernels there: "
            f"{kernels or 'unknown'}; ceiling there: {docs[0]['gemm_ceiling']['gflops']:.1f} GFLOP/s")
    return rows, summary, note


# -- the command ------------------------------------------------------------------------

def _sort_rows(rows):
    """Group by workload then size (in first-seen order); implementations keep their order."""
    order = {}
    for r in rows:
        order.setdefault((r["workload"], r["label"]), len(order))
    rows.sort(key=lambda r: (MODELS.index(r["workload"]), order[(r["workload"], r["label"])]))


def run(args, error, argv=None, out=None):
    out = out or sys.stdout
    cfg = resolve_config(args, error)
    impl_builders = builders()

    def say(line=""):
        print(line, file=out, flush=True)

    n_rows = sum(len(cfg["batches"][w]) for w in cfg["models"] for i in cfg["implementations"]
                 if w in impl_builders[i])
    progress = Progress(n_rows, enabled=not args.no_progress)
    rows, notes = [], []
    doc = {"schema": report.JSON_SCHEMA,
           "command": " ".join(["fastbp", "bench"] + list(argv if argv is not None else [])),
           "config": cfg, "environment": None, "gemm_ceiling": None, "results": rows,
           "coretype_rerun": None, "interrupted": False, "notes": notes}
    started = time.perf_counter()
    busy = load.busy_core() if cfg["load"] else contextlib.nullcontext()
    try:
        with thread_control(cfg["threads"], notes):
            env = doc["environment"] = envmod.collect()
            say("command: " + doc["command"])
            for line in envmod.lines(env):
                say("  " + line)
            n = cfg["threads"]
            threads = (f"{n} thread{'s' if n > 1 else ''} (fastbp's team, BLAS, torch, "
                       "onnxruntime)" if n else "threads: the libraries' defaults")
            say(f"  run: {cfg['dtype']}, {cfg['mode']} sizes, up to {cfg['repeat']} samples per row "
                f"in {cfg['rounds']} round(s), {threads}")
            for line in envmod.thread_lines(env):
                say("  " + line)
            if "onnxruntime" in cfg["implementations"] and any(
                    w in peers_onnx.BUILDERS for w in cfg["models"]):
                say("  " + peers_onnx.thread_rule())
            progress.activity("measuring the GEMM ceiling")
            ceiling = doc["gemm_ceiling"] = harness.gemm_ceiling(cfg["dtype"], cfg["ceiling_n"])
            say(f"  GEMM ceiling: {ceiling['routine']} n={ceiling['n']} via SciPy's BLAS: "
                f"{ceiling['gflops']:.1f} GFLOP/s at the start (measured again at the end)")
            with busy as load_text:         # the ceilings are the machine's own, measured without it
                if load_text:
                    say(f"  load: {load_text} (not during the ceiling's GEMM)")
                    notes.append(f"--load: {load_text}; every row was timed beside it")
                for workload in cfg["models"]:
                    for batch in cfg["batches"][workload]:
                        problem = workloads.make_problem(workload, batch, cfg["seq_len"],
                                                         cfg["hidden"], cfg["dtype"])
                        run_problem(problem, cfg, impl_builders, rows, progress)
            # once more at the end, and keep the better: a neighbour's burst during one
            # measurement would otherwise make every row look closer to the ceiling
            progress.activity("measuring the GEMM ceiling again")
            again = harness.gemm_ceiling(cfg["dtype"], cfg["ceiling_n"])
            ceiling["gflops_start"], ceiling["gflops_end"] = ceiling["gflops"], again["gflops"]
            ceiling["gflops"] = max(ceiling["gflops"], again["gflops"])
            if cfg["blas_coretype"]:
                progress.close()   # the child draws its own progress
                if not args.no_progress:
                    print(f"rerunning the fastbp and reference rows with {envmod.CORETYPE_VAR} "
                          f"{cfg['blas_coretype']} in a child process", file=sys.stderr)
                child_rows, doc["coretype_rerun"], note = rerun_with_coretype(
                    cfg, cfg["blas_coretype"], not args.no_progress)
                rows.extend(child_rows)
                if note:
                    notes.append(note)
    except KeyboardInterrupt:
        doc["interrupted"] = True
        for row in rows:
            if row["status"] == "pending":
                row["status"], row["detail"] = "interrupted", ""
    finally:
        progress.close()
    doc["total_seconds"] = time.perf_counter() - started

    for row in rows:
        if row["status"] == "ok" and "variant" not in row and doc["gemm_ceiling"]:
            row["ceiling_fraction"] = row["gflops"] / doc["gemm_ceiling"]["gflops"]
    _sort_rows(rows)
    report.add_ratios(rows)
    say()
    if doc["interrupted"]:
        done = sum(r["status"] == "ok" for r in rows)
        say(f"INTERRUPTED: showing the {done} rows measured so far")
    if rows:
        for line in report.table(rows):
            say(line)
        notes[:0] = report.row_notes(rows)
    say()
    for line in notes:
        say("note: " + line)
    for line in report.legend(doc, cfg["models"]):
        say(line)
    say(f"total {doc['total_seconds']:.1f} s")
    if args.json:
        report.write_json(args.json, doc)
        say(f"wrote {args.json}")
    if args.plot and not doc["interrupted"]:
        try:
            report.plot(args.plot, doc)
            say(f"wrote {args.plot}")
        except ValueError as e:
            say(f"--plot: {e}")
    if doc["interrupted"]:
        return EXIT_INTERRUPTED
    failed = [r for r in rows if r["status"] in ("WRONG", "error")]
    return 1 if failed else 0
