# The pool of freed large blocks (src_c/pool.h) and the NumPy allocator over
# it (src_c/numpy_pool.h), which fastbp sets around its calls
# (fastbp/_memory.py): the megabytes a training step allocates come back from
# the pool on the next step instead of being faulted in from the kernel again.

cdef extern from "pool.h":
    enum:
        FBP_POOL_MIN_BYTES
    ctypedef struct fbp_pool_stats:
        size_t limit
        size_t bytes
        int blocks
        long long reused
        long long kept
    size_t fbp_pool_release() nogil
    size_t fbp_pool_set_limit(size_t nbytes) nogil
    void fbp_pool_get_stats(fbp_pool_stats *s) nogil

cdef extern from "numpy_pool.h":
    object fbp_np_handler_capsule()

cdef extern from "numpy/arrayobject.h":
    object PyDataMem_SetHandler(object handler)

POOL_MIN_BYTES = FBP_POOL_MIN_BYTES
_POOL_HANDLER = fbp_np_handler_capsule()


def pool_scope_enter():
    """Make the pool's allocator NumPy's in this thread's context; returns the
    allocator it replaced, for pool_scope_exit."""
    return PyDataMem_SetHandler(_POOL_HANDLER)


def pool_scope_exit(previous):
    """Put back the allocator pool_scope_enter replaced."""
    PyDataMem_SetHandler(previous)


def pool_set_limit(size_t nbytes):
    """The most bytes the pool keeps (0: none); returns the previous limit."""
    return fbp_pool_set_limit(nbytes)


def pool_release():
    """Free every block the pool keeps; returns the bytes freed."""
    return fbp_pool_release()


def pool_stats():
    """The pool's state: a dict of limit, bytes and blocks kept now, and the
    requests served from it (reused) and blocks kept (kept) so far."""
    cdef fbp_pool_stats s
    fbp_pool_get_stats(&s)
    return {"limit": s.limit, "bytes": s.bytes, "blocks": s.blocks, "reused": s.reused,
            "kept": s.kept}
