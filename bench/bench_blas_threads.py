"""When do BLAS's threads pay for fastbp's products? The measurement behind
FBP_BLAS_THREADED_MIN_MACS (src_c/fastbp.h, src_c/blas.c).

For GEMMs shaped like fastbp's stacked products (rows = T·B against a weight
of H x G), from 2^20 to 2^32 multiply-adds, times SciPy's sgemm on one thread
and on BLAS's default, alternating in one process; with ``--load``, while a
busy process spins on one core (a user's desk: a browser, a build). It also
reports how long an OpenBLAS worker keeps spinning after a threaded call (CPU
time of its threads over the following second, from /proc).

    python bench/bench_blas_threads.py [--load] [--dtype float32]

Runs against the installed fastbp (or none: only SciPy and threadpoolctl are
needed). Prints the CPU model, ISA and OPENBLAS_CORETYPE with the figures.
"""
import argparse
import multiprocessing
import os
import platform
import statistics
import time

import numpy as np
from scipy.linalg import blas
from threadpoolctl import ThreadpoolController


def busy():
    while True:
        pass


def cpu_description():
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        model = next(l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name"))
        flags = next(l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags"))
        isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"
    except (OSError, StopIteration):
        isa = "?"
    return f"{model}, {isa}, {os.cpu_count()} logical cores"


def thread_cpu_ticks():
    ticks = {}
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks[int(tid)] = int(fields[11]) + int(fields[12])
    return ticks


def median_ms(fn, seconds=0.3, at_least=5):
    fn()
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    n = max(at_least, int(seconds / max(one, 1e-6)))
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--load", action="store_true", help="a busy process on one core meanwhile")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = p.parse_args()
    dtype = np.dtype(args.dtype)
    gemm = blas.sgemm if dtype == np.float32 else blas.dgemm
    controller = ThreadpoolController()
    scipy_blas = [lib for lib in controller.lib_controllers
                  if lib.internal_api == "openblas" and "scipy.libs" in lib.filepath
                  or "scipy_openblas" in os.path.basename(lib.filepath) and "64_" not in lib.filepath]
    if not scipy_blas:
        raise SystemExit("SciPy's OpenBLAS not found by threadpoolctl")
    lib = scipy_blas[0]
    default_threads = lib.num_threads
    print(f"CPU: {cpu_description()}")
    print(f"OPENBLAS_CORETYPE: {os.environ.get('OPENBLAS_CORETYPE', 'not set')}; "
          f"SciPy's BLAS: {lib.internal_api} {lib.version}, kernel {lib.architecture}, "
          f"default {default_threads} threads; {dtype.name}; "
          f"load average {os.getloadavg()[0]:.2f}")

    loader = None
    if args.load:
        loader = multiprocessing.Process(target=busy, daemon=True)
        loader.start()
        try:
            os.sched_setaffinity(loader.pid, {0})
        except (AttributeError, OSError):
            pass
        print("load: a busy process pinned to core 0")
    try:
        a = np.asfortranarray(np.ones((512, 512), dtype))
        gemm(1.0, a, a)
        time.sleep(1.0)
        before = thread_cpu_ticks()
        gemm(1.0, np.asfortranarray(np.ones((1024, 1024), dtype)), a.repeat(2, 0).repeat(2, 1))
        mid = thread_cpu_ticks()
        time.sleep(1.0)
        after = thread_cpu_ticks()
        spin = max((after[t] - mid.get(t, 0)) for t in after if t != os.getpid())
        print(f"after one threaded 1024^3 GEMM, the busiest BLAS worker used {spin * 10} ms of CPU "
              f"in the next second (spinning for work)")
        del before

        H = 256
        print(f"\n{'rows x H x G':>20} {'MACs':>8} {'1 thread ms':>12} {default_threads} threads ms  ratio")
        for log2 in range(20, 33, 2):
            macs = 1 << log2
            G = 4 * H
            rows = max(1, macs // (H * G))
            x = np.asfortranarray(np.ones((rows, H), dtype))
            w = np.asfortranarray(np.ones((H, G), dtype))
            times = {1: [], default_threads: []}
            for _ in range(2):                      # alternate: a burst of load hits both
                for n in times:
                    lib.set_num_threads(n)
                    time.sleep(0.15)                # the other setting's workers go quiet
                    times[n].append(median_ms(lambda: gemm(1.0, x, w)))
            one, many = min(times[1]), min(times[default_threads])
            print(f"{rows:>8}x{H}x{G:<6} 2^{log2:<5} {one:12.3f} {many:14.3f}  {one / many:5.2f}x")
    finally:
        lib.set_num_threads(default_threads)
        if loader is not None:
            loader.terminate()


if __name__ == "__main__":
    main()
