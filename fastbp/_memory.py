"""The memory fastbp keeps between calls: fastbp.set_memory_pool, memory_pool_info, release_memory.

A training step allocates the same large buffers on every call: the gates,
the states and the gradients, megabytes at batch 16. Given back to the C
library, they go back to the kernel, and the next step faults every page in
again (zeroed by the kernel; unmapping also interrupts the other core, where
fastbp's team runs). So the arrays fastbp allocates in its recurrent layers
(:func:`pooled`) use NumPy's allocator hook (NEP 49) over a pool of freed
blocks of 256 KiB and more (src_c/pool.h): freed, such a block waits in the
pool for the next request of its size. Arrays allocated anywhere else keep
NumPy's default allocator.

The pool keeps at most 256 MiB by default, oldest blocks freed first;
``set_memory_pool(0)`` turns it off and ``release_memory()`` empties it.
"""
import functools

from . import _core

__all__ = ["set_memory_pool", "memory_pool_info", "release_memory"]


def pooled(fn):
    """Run ``fn`` with the pool's allocator as NumPy's (this thread only)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        previous = None
        try:        # (entered inside: a KeyboardInterrupt right after it still restores)
            previous = _core.pool_scope_enter()
            return fn(*args, **kwargs)
        finally:
            if previous is not None:
                _core.pool_scope_exit(previous)
    return wrapper


def set_memory_pool(max_bytes):
    """Keep at most ``max_bytes`` of freed buffers for fastbp's next calls (0:
    keep none; the default is 256 MiB). Blocks over the new limit are freed
    now, oldest first. Returns the previous limit."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int):
        raise TypeError(f"max_bytes: expected an int number of bytes, got "
                        f"{type(max_bytes).__name__}")
    if max_bytes < 0:
        raise ValueError(f"max_bytes: expected 0 or more bytes, got {max_bytes}")
    return _core.pool_set_limit(max_bytes)


def memory_pool_info():
    """The pool's state, a dict: ``limit`` (the most bytes kept), ``bytes`` and
    ``blocks`` (kept now), ``reused`` (allocations served from the pool so
    far), ``kept`` (blocks kept so far)."""
    return _core.pool_stats()


def release_memory():
    """Free every buffer the pool keeps (they go back to the C library);
    returns the bytes freed."""
    return _core.pool_release()
