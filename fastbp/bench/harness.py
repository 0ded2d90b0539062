"""Timing: first call apart, calibrated inner loops, rounds, medians.

A step that takes microseconds cannot be timed one call at a time (the clock's
own cost and jitter are of the same order), so each sample runs the step
``inner`` times back to back, with ``inner`` chosen from a warm-up so a sample
lasts at least ``min_time`` seconds; the per-step time of a sample is its
duration over ``inner``. The first call of a step is timed on its own by the
caller and reported apart: it carries one-time costs (JAX's jit compilation,
oneDNN's primitive creation, page faults on fresh buffers) that a training
loop pays once.

The implementations of one problem are timed in rounds: in each round every
implementation runs a block of its samples, after a pause and one re-warming
call. Blocks, because the libraries' thread pools (two OpenBLAS builds,
torch's OpenMP) keep spinning for a while after a call, and on a 2-core
machine a spinning pool starves the next library's threads if calls are
interleaved. The pause lasts until every other thread of this process has
been idle for a while (:func:`settle`; measured: an OpenBLAS worker spins for
~0.1 s of CPU after a threaded call), so each implementation is timed free
of the previous one's idle threads. Rounds, because a neighbour's burst of
load then hits every implementation alike instead of one, and the median
over all samples shrugs it off.

Each implementation also has a time budget: a slow step (the NumPy reference
at large sizes) gets fewer samples, never fewer than ``min(repeat, 3)``, so
the suite's length stays predictable. The samples taken are recorded.
"""
import contextlib
import math
import os
import statistics
import threading
import time
from dataclasses import asdict, dataclass

# a sample never runs the step more often than this, however fast it is
MAX_INNER = 100_000


@dataclass
class Timing:
    """Seconds per step, over ``repeats`` samples of ``inner`` calls each."""
    median: float
    min: float
    max: float
    repeats: int
    inner: int

    def as_dict(self):
        return asdict(self)


def time_call(fn):
    """Run ``fn()`` once; return (its result, the seconds it took)."""
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def calibrate(step, min_time, clock=time.perf_counter):
    """(inner, seconds per step): how many calls make a sample of >= min_time."""
    t0 = clock()
    step()                                  # also warms up after the first call
    estimate = max(clock() - t0, 1e-9)
    inner = int(min(MAX_INNER, max(1, math.ceil(min_time / estimate))))
    if inner > 1:
        # refine the estimate over a whole calibrated loop (one call is noisy)
        t0 = clock()
        for _ in range(inner):
            step()
        estimate = max((clock() - t0) / inner, 1e-9)
        inner = int(min(MAX_INNER, max(1, math.ceil(min_time / estimate))))
    return inner, estimate


def other_threads_cpu_ticks(skip_name=None):
    """CPU clock ticks used so far by every thread of this process but the
    caller (Linux's /proc), or None where that cannot be read; threads named
    ``skip_name`` (e.g. fastbp's own team, ``fastbp._core.TEAM_THREAD_NAME``)
    are left out."""
    me = threading.get_native_id()
    ticks = 0
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    for tid in tids:
        if int(tid) == me:
            continue
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                comm, rest = f.read().split(" (", 1)[1].rsplit(")", 1)
                fields = rest.split()
            if skip_name is not None and comm == skip_name:
                continue
        except OSError:                      # the thread ended meanwhile
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks


def settle(pause, window=0.05, max_wait=2.0):
    """Sleep ``pause`` seconds, then on until no other thread of this process
    (the libraries' thread pools) used CPU for ``window`` seconds, at most
    ``max_wait`` in all. Returns the seconds slept."""
    t0 = time.perf_counter()
    time.sleep(pause)
    before = other_threads_cpu_ticks()
    while before is not None and time.perf_counter() - t0 < max_wait:
        time.sleep(window)
        now = other_threads_cpu_ticks()
        if now == before:
            break
        before = now
    return time.perf_counter() - t0


def measure(steps, *, repeat, min_time, budget, pause=0.0, rounds=1,
            clock=time.perf_counter, on_block=None, contexts=None):
    """Time every ``steps[name]()`` (each already called once: its first call).

    repeat: samples wanted per step; budget: seconds a step's samples should
    stay under, lowering its samples to no fewer than min(repeat, 3); pause:
    seconds of sleep before each block, and on until the other threads are
    idle (:func:`settle`; 0: no pause); rounds: how many blocks the samples are
    spread over; on_block(name, round): called before each block (progress);
    contexts: {name: a function returning a context manager}, entered around
    that step's calibration and each of its blocks (e.g. a thread setting).

    Returns {name: Timing, or the exception the step raised}.
    """
    if repeat < 1:
        raise ValueError(f"repeat: expected >= 1, got {repeat}")
    results, plans = {}, {}
    contexts = contexts or {}

    def around(name):
        return contexts[name]() if name in contexts else contextlib.nullcontext()

    for name, step in steps.items():
        try:
            with around(name):
                inner, estimate = calibrate(step, min_time, clock)
        except Exception as e:   # one failing implementation must not stop the others
            results[name] = e
            continue
        affordable = int(budget // (inner * estimate))
        plans[name] = (inner, min(repeat, max(min(repeat, 3), affordable)))

    samples = {name: [] for name in plans}
    rounds = max(1, rounds)
    for r in range(rounds):
        for name, (inner, repeats) in plans.items():
            # this round's share of the samples (the first rounds take the remainder)
            share = repeats // rounds + (1 if r < repeats % rounds else 0)
            if name in results or share == 0:
                continue
            if on_block is not None:
                on_block(name, r)
            if pause > 0:
                settle(pause)
            step = steps[name]
            try:
                with around(name):
                    step()                  # re-warm this library's threads and caches
                    for _ in range(share):
                        t0 = clock()
                        for _ in range(inner):
                            step()
                        samples[name].append((clock() - t0) / inner)
            except Exception as e:
                results[name] = e
    for name, (inner, _) in plans.items():
        if name not in results:
            got = samples[name]
            results[name] = Timing(median=statistics.median(got), min=min(got), max=max(got),
                                   repeats=len(got), inner=inner)
    return results


def gemm_ceiling(dtype, n, repeat=7):
    """GFLOP/s of one n×n×n GEMM through SciPy's BLAS (the library fastbp's kernels call).

    The best of ``repeat`` runs after a warm-up: the machine's attainable matmul
    rate, against which every row's matmul work is put as a fraction.
    """
    import numpy as np
    from scipy.linalg import blas

    routine = "sgemm" if np.dtype(dtype) == np.float32 else "dgemm"
    gemm = getattr(blas, routine)
    rng = np.random.default_rng(0)
    a = np.asfortranarray(rng.standard_normal((n, n)), dtype=dtype)
    b = np.asfortranarray(rng.standard_normal((n, n)), dtype=dtype)
    gemm(1.0, a, b)                     # warm-up: threads started, pages touched
    best = min(time_call(lambda: gemm(1.0, a, b))[1] for _ in range(repeat))
    return {"routine": routine, "n": n, "seconds": best,
            "gflops": 2.0 * n ** 3 / best / 1e9}
