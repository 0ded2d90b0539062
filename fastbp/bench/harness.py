"""Timing: first call apart, calibrated inner loops, medians over repeats.

A step that takes microseconds cannot be timed one call at a time (the clock's
own cost and jitter are of the same order), so each repeat runs the step
``inner`` times back to back, with ``inner`` chosen from a warm-up so a repeat
lasts at least ``min_time`` seconds; the per-step time of a repeat is its
duration over ``inner``. The first call of a step is timed on its own and
reported apart: it carries one-time costs (JAX's jit compilation, oneDNN's
primitive creation, page faults on fresh buffers) that a training loop pays once.
Each implementation is timed in a block of its own, after a short pause, never
interleaved call by call with another library's thread pool.

A row also has a time budget: a slow step (the NumPy reference at large sizes)
gets fewer repeats, never fewer than ``min(repeat, 3)``, so the suite's length
stays predictable. The repeats actually run are recorded with the result.
"""
import math
import statistics
import time
from dataclasses import asdict, dataclass

# one repeat never runs the step more often than this, however fast it is
MAX_INNER = 100_000


@dataclass
class Timing:
    """Seconds per step."""
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


def measure(step, *, repeat, min_time, budget, pause=0.0, clock=time.perf_counter):
    """Time ``step()`` (already called once by the caller: the first call).

    repeat: repeats wanted; budget: seconds this measurement should stay under,
    lowering the repeats to no fewer than min(repeat, 3); pause: seconds to sleep
    first, so the thread pool of whatever ran before (OpenBLAS's, torch's OpenMP)
    stops spinning: on 2 cores a spinning pool starves the next one's threads.
    """
    if repeat < 1:
        raise ValueError(f"repeat: expected >= 1, got {repeat}")
    if pause > 0:
        time.sleep(pause)
    # warm-up: one more call, which also estimates the cost of a step
    t0 = clock()
    step()
    estimate = max(clock() - t0, 1e-9)
    inner = int(min(MAX_INNER, max(1, math.ceil(min_time / estimate))))
    if inner > 1:
        # refine the estimate over a whole calibrated loop (one call is noisy)
        t0 = clock()
        for _ in range(inner):
            step()
        estimate = max((clock() - t0) / inner, 1e-9)
        inner = int(min(MAX_INNER, max(1, math.ceil(min_time / estimate))))
    affordable = int(budget // (inner * estimate))
    repeats = min(repeat, max(min(repeat, 3), affordable))

    per_step = []
    for _ in range(repeats):
        t0 = clock()
        for _ in range(inner):
            step()
        per_step.append((clock() - t0) / inner)
    return Timing(median=statistics.median(per_step), min=min(per_step), max=max(per_step),
                  repeats=repeats, inner=inner)


def gemm_ceiling(dtype, n, repeat=5):
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
