"""Which copy of the multiversioned kernels (src_c/fastbp.h, FBP_HOT) the loader picks."""
import platform

import pytest

from fastbp import _core

# /proc/cpuinfo's names for the features of each x86-64 level GCC's resolver tests
# (lzcnt is "abm", sse3 "pni"); x86-64-v3 includes v2, x86-64-v4 includes v3
X86_64_V2 = {"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"}
X86_64_V3 = X86_64_V2 | {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}
X86_64_V4 = X86_64_V3 | {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}


def cpu_flags():
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def test_kernel_isa_is_one_of_the_copies():
    assert _core.kernel_isa() in ("x86-64-v4", "x86-64-v3", "x86-64", "portable")


@pytest.mark.skipif(platform.system() != "Linux" or platform.machine() != "x86_64",
                    reason="the copies are built for x86-64 Linux only (/proc/cpuinfo "
                           "names the features there); elsewhere every kernel is portable")
def test_kernel_isa_is_the_highest_level_this_cpu_has():
    flags = cpu_flags()
    expected = ("x86-64-v4" if X86_64_V4 <= flags else
                "x86-64-v3" if X86_64_V3 <= flags else "x86-64")
    assert _core.kernel_isa() == expected, f"missing for x86-64-v4: {sorted(X86_64_V4 - flags)}"
