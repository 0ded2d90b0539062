"""Matrix products of the Python layer, on the compiled core's BLAS (SciPy's), never NumPy's.

NumPy's ``@``, ``dot`` and ``vdot`` run on NumPy's own bundled OpenBLAS, a
second thread pool beside the one under fastbp's kernels (SciPy's). Its idle
workers busy-wait after each call on the cores the kernels need: measured on a
2-core machine, the RNN model's readout through NumPy made a training step
4-5x slower than the NumPy reference with default threads, and 46x slower than
one thread while another process held a core. Every product of a training or
inference path goes through here (docs: README "Threads").
"""
import numpy as np

from . import _core


def matmul(a, b, *, trans_a=False, trans_b=False, out=None):
    """Row-major ``op(a) @ op(b)`` (2-D, one float dtype) through ``_core.gemm``.

    a, b: 2-D float32/float64 arrays of one dtype (made C-contiguous here if
    they are not); op(x) is x or xᵀ. Returns ``out`` (M, N), allocated when None.
    """
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b, dtype=a.dtype)
    M = a.shape[1] if trans_a else a.shape[0]
    N = b.shape[0] if trans_b else b.shape[1]
    if out is None:
        out = np.empty((M, N), dtype=a.dtype)
    _core.gemm(out, a, b, trans_a, trans_b)
    return out


def matmul_rows(a, w):
    """The product a·wᵀ (a (M, K), w (N, K), one float dtype) in the compiled
    core (``_core.rowdot``, on fastbp's thread team when large), every
    element summed in one fixed order: a row of the result depends on that row of ``a`` and on ``w``
    only, never on how many rows come with it. The recurrent models read out
    through it, so that ``model.step`` reads out a step exactly as ``forward``
    does inside a whole sequence. Returns a new (M, N) array."""
    if a.strides[-1] != a.itemsize:
        a = np.ascontiguousarray(a)
    w = np.ascontiguousarray(w, dtype=a.dtype)
    out = np.empty((a.shape[0], w.shape[0]), dtype=a.dtype)
    _core.rowdot(out, a, w)
    return out


def sum_of_squares(a):
    """``Σ a²`` over every element, as a Python float (the L2 penalty's ‖W‖²_F)."""
    flat = np.ascontiguousarray(a).reshape(1, -1)
    return float(matmul(flat, flat, trans_b=True)[0, 0])
