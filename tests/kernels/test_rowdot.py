"""The fixed-order row-dot product (src_c/rowdot.h, ``_core.rowdot``): C = A Wᵀ
to rounding, and each element independent of how many rows and columns come
with it, where the call's tiles fall, row strides and the thread team, so that
a streamed step equals the whole sequence bit for bit."""
import numpy as np
import pytest

import fastbp
from fastbp import _core

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 2e-6, np.float64: 1e-15}
# (M, N, K): one row (a step at batch 1), the 2- and 3-row tiles, whole 4 x 3
# tiles with partial column tiles, K shorter than a vector, not a multiple of
# it, empty
SHAPES = [(1, 1, 1), (1, 9, 7), (1, 40, 256), (2, 13, 17), (3, 5, 33), (4, 3, 8), (5, 7, 9),
          (9, 11, 64), (17, 100, 37), (300, 29, 130), (6, 4, 0)]


def reference(A, W):
    return A.astype(np.float64) @ W.astype(np.float64).T


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M, N, K", SHAPES)
def test_rowdot_is_the_matrix_product(dtype, M, N, K):
    rng = np.random.default_rng(M * 1000 + N * 10 + K)
    A = rng.standard_normal((M, K)).astype(dtype)
    W = rng.standard_normal((N, K)).astype(dtype)
    C = np.full((M, N), np.nan, dtype)
    _core.rowdot(C, A, W)
    want = reference(A, W)
    scale = np.abs(A).astype(np.float64) @ np.abs(W).astype(np.float64).T + 1
    assert np.all(np.abs(C - want) <= TOL[dtype] * scale * max(K, 1))
    before = C.copy()
    _core.rowdot(C, A, W, accumulate=True)          # C += A Wᵀ: twice the product
    np.testing.assert_array_equal(C, before + before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("M, N, K", [(23, 31, 45), (9, 26, 256), (40, 7, 3)])
def test_each_element_ignores_the_other_rows_and_columns(dtype, M, N, K):
    """Every block of rows and columns, computed alone, gives the bits of the
    whole product: one row alone (a step), the tails of every tile shape."""
    rng = np.random.default_rng(5)
    A = rng.standard_normal((M, K)).astype(dtype)
    W = rng.standard_normal((N, K)).astype(dtype)
    whole = np.empty((M, N), dtype)
    _core.rowdot(whole, A, W)
    for r0, r1 in ((0, 1), (M - 1, M), (1, 3), (2, 5), (3, min(10, M)), (0, M)):
        for c0, c1 in ((0, 1), (0, N), (1, N - 1), (N - 2, N), (2, min(9, N))):
            part = np.empty((r1 - r0, c1 - c0), dtype)
            _core.rowdot(part, A[r0:r1], W[c0:c1])
            np.testing.assert_array_equal(part, whole[r0:r1, c0:c1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_strides_are_read_as_given(dtype):
    """A, W and C as column slices of wider arrays (row stride > row length):
    the contiguous arrays' result."""
    rng = np.random.default_rng(6)
    A, W = rng.standard_normal((8, 30)).astype(dtype), rng.standard_normal((12, 30)).astype(dtype)
    want = np.empty((8, 12), dtype)
    _core.rowdot(want, A, W)
    wideA, wideW = np.zeros((8, 41), dtype), np.zeros((12, 35), dtype)
    wideA[:, 3:33], wideW[:, 5:35] = A, W
    wideC = np.zeros((8, 20), dtype)
    _core.rowdot(wideC[:, 4:16], wideA[:, 3:33], wideW[:, 5:35])
    np.testing.assert_array_equal(wideC[:, 4:16], want)
    assert not wideC[:, :4].any() and not wideC[:, 16:].any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_team_computes_the_same_bits(dtype):
    """Large enough for the thread team: one thread and the team agree."""
    rng = np.random.default_rng(7)
    A = rng.standard_normal((700, 96)).astype(dtype)
    W = rng.standard_normal((300, 96)).astype(dtype)
    before = fastbp.get_num_threads()
    out = []
    try:
        for n in (1, max(2, before)):
            fastbp.set_num_threads(n)
            C = np.empty((700, 300), dtype)
            _core.rowdot(C, A, W)
            out.append(C)
    finally:
        fastbp.set_num_threads(before)
    np.testing.assert_array_equal(out[0], out[1])


def test_bad_shapes_and_layouts_are_refused():
    A, W = np.ones((3, 4)), np.ones((5, 4))
    with pytest.raises(ValueError, match="rowdot"):
        _core.rowdot(np.empty((3, 6)), A, W)
    with pytest.raises(ValueError, match="rowdot"):
        _core.rowdot(np.empty((3, 5)), A, np.ones((5, 3)))
    with pytest.raises(ValueError, match="^A: expected unit stride"):
        _core.rowdot(np.empty((4, 5)), np.ones((4, 8))[:, ::2], W)
    with pytest.raises(ValueError):
        _core.rowdot(np.empty((3, 5), np.float32), A, W)     # one dtype throughout
    ro = np.empty((3, 5))
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        _core.rowdot(ro, A, W)
