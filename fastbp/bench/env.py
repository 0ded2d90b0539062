"""The environment a benchmark ran in: CPU, BLAS libraries and their kernels, versions.

Timings mean little without it. Two OpenBLAS builds are usually loaded in one
process: SciPy's (which fastbp's kernels call through scipy.linalg.cython_blas)
and NumPy's (which the NumPy reference's ``@`` calls); each picks a kernel for
the CPU at load time unless ``OPENBLAS_CORETYPE`` forces one. threadpoolctl
reads the kernel in use ("architecture") and the thread count of each.
"""
import importlib
import os
import platform
import re
import sys

from .. import _core
from .._threads import get_num_threads

CORETYPE_VAR = "OPENBLAS_CORETYPE"

# fastbp._core.kernel_isa(): which copy of the multiversioned kernels runs (src_c/fastbp.h)
KERNEL_COPIES = {"x86-64-v4": "AVX-512", "x86-64-v3": "AVX2 and FMA",
                 "x86-64": "the SSE2 baseline", "portable": "a build without multiversioning"}


def cpu_model():
    """The CPU's marketing name (from /proc/cpuinfo on Linux), or what platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def load_average():
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):
        return None


def _owner(path):
    """Which package shipped a shared library, from its path (numpy.libs/..., scipy.libs/...)."""
    p = path.replace("\\", "/").lower()
    for name in ("scipy", "numpy", "torch", "jaxlib", "sklearn"):
        if f"/{name}.libs/" in p or f"/{name}/" in p:
            return name
    return "system"


def blas_libraries():
    """One dict per BLAS library loaded in this process, or None without threadpoolctl.

    Keys: owner (the package that ships it), library, version, kernel (OpenBLAS's
    "architecture", i.e. the kernel set it chose or was forced to), threads, path.
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    # fastbp's extension pulls SciPy's BLAS in; make sure it is loaded before asking
    import scipy.linalg.blas  # noqa: F401
    libs = []
    for info in threadpool_info():
        if info.get("user_api") != "blas":
            continue
        libs.append({
            "owner": _owner(info.get("filepath", "")),
            "library": info.get("internal_api", "unknown"),
            "version": info.get("version") or "unknown",
            "kernel": info.get("architecture") or "unknown",
            "threads": info.get("num_threads"),
            "path": info.get("filepath", ""),
        })
    return libs


def _version(module_name):
    try:
        mod = importlib.import_module(module_name)
    except Exception:   # a broken optional package is as good as a missing one here
        return None
    return getattr(mod, "__version__", "unknown")


def _torch_details():
    """BLAS, oneDNN, CPU capability and threads of the installed torch (None if absent)."""
    try:
        import torch
    except ImportError:
        return None
    config = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=(\w+)", config)
    onednn = re.search(r"MKL-DNN (v[\d.]+)", config)
    capability = re.search(r"CPU capability usage: (\w+)", config)
    return {
        "version": torch.__version__,
        "blas": blas.group(1) if blas else "unknown",
        "onednn": onednn.group(1) if onednn else None,
        "cpu_capability": capability.group(1) if capability else "unknown",
        "threads": torch.get_num_threads(),
    }


def collect():
    """The environment as a JSON-ready dict."""
    versions = {"python": platform.python_version()}
    for name in ("fastbp", "numpy", "scipy", "threadpoolctl", "torch", "jax", "jaxlib",
                 "onnx", "onnxruntime", "matplotlib"):
        versions[name] = _version(name)
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "load_average": load_average(),
        "platform": platform.platform(),
        "python_executable": sys.executable,
        "openblas_coretype": os.environ.get(CORETYPE_VAR),
        "blas": blas_libraries(),
        "torch": _torch_details(),
        "versions": versions,
        "fastbp_blas_thread_control": getattr(_core, "BLAS_THREAD_CONTROL", None),
        "fastbp_threads": get_num_threads(),
        "fastbp_kernels": _core.kernel_isa(),
    }


def thread_lines(env):
    """How the run uses threads: fastbp's team and its rule for its BLAS products,
    and the pause that keeps one implementation's idle threads out of the next's timing."""
    n = env.get("fastbp_threads")
    team = (f"its thread team of {n} (fastbp.set_num_threads; --threads sets it) runs the "
            "time loops" if n else "its thread team's size is unknown")
    control = env.get("fastbp_blas_thread_control")
    if control is None:
        rule = f"fastbp: {team}; its BLAS thread rule is unknown in this build"
    elif control:
        rule = (f"fastbp: {team}; every product it hands to BLAS runs on 1 BLAS thread, "
                "whatever the BLAS setting above (src_c/blas.c)")
    else:
        rule = (f"fastbp: {team}; this BLAS's thread controls were not found: its products "
                "run on the BLAS setting above")
    return [rule, "isolation: before each block of samples the run sleeps until every "
                  "other thread of the process (OpenBLAS's, torch's pools) is idle"]


def lines(env):
    """Human-readable lines for the top of the report."""
    out = [f"CPU: {env['cpu']}, {env['cores']} logical cores ({env['usable_cores']} usable)"]
    isa = env.get("fastbp_kernels")
    if isa:
        out.append(f"fastbp's kernels: the {isa} copy ({KERNEL_COPIES.get(isa, isa)}), "
                   "picked for this CPU when the module loaded")
    load = env["load_average"]
    if load is not None:
        busy = load[0] >= 1.0
        out.append(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1, 5, 15 min)"
                   + ("  <- other processes are running: timings will be disturbed" if busy
                      else ""))
    forced = env["openblas_coretype"]
    if forced:
        out.append(f"{CORETYPE_VAR}={forced}: the OpenBLAS kernel is FORCED, not auto-detected")
    else:
        out.append(f"{CORETYPE_VAR}: not set (OpenBLAS picks the kernel for this CPU)")
    if env["blas"] is None:
        out.append("BLAS: unknown (install threadpoolctl to see the libraries and kernels in use)")
    else:
        users = {"scipy": "fastbp's GEMMs", "numpy": "the NumPy reference"}
        for lib in env["blas"]:
            who = users.get(lib["owner"], lib["owner"])
            out.append(f"BLAS for {who}: {lib['library']} {lib['version']} ({lib['owner']}), "
                       f"kernel {lib['kernel']}, {lib['threads']} thread"
                       f"{'' if lib['threads'] == 1 else 's'}")
    t = env["torch"]
    if t is not None:
        onednn = f", oneDNN {t['onednn']}" if t["onednn"] else ""
        out.append(f"torch {t['version']}: BLAS {t['blas']}{onednn}, CPU capability "
                   f"{t['cpu_capability']}, {t['threads']} thread{'' if t['threads'] == 1 else 's'}")
    v = env["versions"]
    shown = ", ".join(f"{k} {v[k]}" for k in v if v[k] is not None)
    missing = ", ".join(k for k in v if v[k] is None)
    out.append(f"versions: {shown}" + (f" (not installed: {missing})" if missing else ""))
    return out
