"""A block that must not allocate much: a missing size check shows up as a
failed test (or a MemoryError), never as a swapping machine."""
import contextlib
import resource
import tracemalloc

MiB = 1 << 20


@contextlib.contextmanager
def no_big_allocation(limit=64 * MiB):
    """Fail if the block allocates more than `limit` through Python or NumPy
    (tracemalloc sees both), and cap the address space meanwhile, so that a
    missing check becomes a MemoryError here instead of a swapping machine."""
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = vm + 2048 * MiB
    lowered = hard == resource.RLIM_INFINITY or cap < hard
    if lowered:
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        if lowered:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert peak < limit, f"{peak / MiB:.0f} MiB allocated"
