"""The BLAS table and the row-major GEMM/GEMV/GER helpers against NumPy."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastbp
from fastbp import _core

DTYPES = [(np.float32, 2e-5), (np.float64, 1e-13)]


def _operand(rng, rows, cols, trans, dtype):
    """A row-major operand whose op(·) is (rows, cols)."""
    a = rng.standard_normal((cols, rows) if trans else (rows, cols)).astype(dtype)
    return a, (a.T if trans else a)


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25)])
def test_gemm_every_transpose_combination(dtype, tol, trans_a, trans_b, alpha, beta):
    rng = np.random.default_rng(0)
    M, N, K = 7, 5, 3
    A, opA = _operand(rng, M, K, trans_a, dtype)
    B, opB = _operand(rng, K, N, trans_b, dtype)
    C = rng.standard_normal((M, N)).astype(dtype)
    expected = alpha * (opA.astype(np.float64) @ opB) + beta * C
    _core.gemm(C, A, B, trans_a, trans_b, alpha, beta)
    np.testing.assert_allclose(C, expected, rtol=tol, atol=tol)


@settings(max_examples=40, deadline=None)
@given(M=st.integers(1, 9), N=st.integers(1, 9), K=st.integers(0, 9),
       trans_a=st.booleans(), trans_b=st.booleans(), seed=st.integers(0, 2**16))
def test_gemm_shapes_including_ones_and_empty_k(M, N, K, trans_a, trans_b, seed):
    rng = np.random.default_rng(seed)
    A, opA = _operand(rng, M, K, trans_a, np.float64)
    B, opB = _operand(rng, K, N, trans_b, np.float64)
    C = np.full((M, N), np.nan)   # beta = 0 must ignore what C held, NaN included
    _core.gemm(C, np.ascontiguousarray(A), np.ascontiguousarray(B), trans_a, trans_b, 1.0, 0.0)
    np.testing.assert_allclose(C, opA @ opB, rtol=1e-13, atol=1e-13)


# (M, N, K): by blocks of rows (M >= N) and of columns, the last block partial
TEAM_SHAPES = [(300, 64, 100), (64, 300, 100), (257, 33, 70), (40, 700, 9)]


@pytest.mark.parametrize("M, N, K", TEAM_SHAPES)
@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True),
                                              (True, True)])
def test_gemm_on_the_team_is_the_product_and_the_same_for_every_team_size(
        M, N, K, dtype, tol, trans_a, trans_b, restore_threads):
    """Products of 2^17 multiply-adds and more go to the team in blocks of C
    fixed by the shape: NumPy's product to the tolerance, and the same bits
    on one, two and three threads."""
    assert M * N * K >= 1 << 17
    rng = np.random.default_rng(M + N + K)
    A, opA = _operand(rng, M, K, trans_a, dtype)
    B, opB = _operand(rng, K, N, trans_b, dtype)
    C0 = rng.standard_normal((M, N)).astype(dtype)
    results = {}
    for n in (1, 2, 3):
        fastbp.set_num_threads(n)
        C = C0.copy()
        before = _core.team_requests()
        _core.gemm(C, np.ascontiguousarray(A), np.ascontiguousarray(B), trans_a, trans_b,
                   0.5, 0.25)
        assert _core.team_requests() == before + 1
        results[n] = C
    expected = 0.5 * (opA.astype(np.float64) @ opB) + 0.25 * C0
    np.testing.assert_allclose(results[1], expected, rtol=tol * 10, atol=tol * 10)
    for n in (2, 3):
        np.testing.assert_array_equal(results[n], results[1], err_msg=f"{n} threads")


def test_small_products_stay_one_blas_call_on_the_caller():
    rng = np.random.default_rng(5)
    A, B = rng.standard_normal((64, 40)), rng.standard_normal((40, 50))    # 2^17 > 128000
    C = np.empty((64, 50))
    before = _core.team_requests()
    _core.gemm(C, A, B)
    assert _core.team_requests() == before
    np.testing.assert_allclose(C, A @ B, rtol=1e-13, atol=1e-13)


def test_gemm_rejects_mismatched_shapes():
    C = np.zeros((3, 4))
    with pytest.raises(ValueError, match="A"):
        _core.gemm(C, np.zeros((2, 5)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="B"):
        _core.gemm(C, np.zeros((3, 5)), np.zeros((6, 4)))


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("trans_a", [False, True])
def test_gemv(dtype, tol, trans_a):
    rng = np.random.default_rng(1)
    A = rng.standard_normal((6, 4)).astype(dtype)
    opA = A.T if trans_a else A
    x = rng.standard_normal(opA.shape[1]).astype(dtype)
    y = rng.standard_normal(opA.shape[0]).astype(dtype)
    expected = 1.5 * opA.astype(np.float64) @ x + 0.5 * y
    _core.gemv(y, A, x, trans_a, 1.5, 0.5)
    np.testing.assert_allclose(y, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_ger(dtype, tol):
    rng = np.random.default_rng(2)
    A = rng.standard_normal((6, 4)).astype(dtype)
    x = rng.standard_normal(6).astype(dtype)
    y = rng.standard_normal(4).astype(dtype)
    expected = A + 0.75 * np.outer(x, y)
    _core.ger(A, x, y, 0.75)
    np.testing.assert_allclose(A, expected, rtol=tol, atol=tol)


def test_gemm_accepts_read_only_inputs():
    A = np.arange(6.0).reshape(2, 3)
    B = np.arange(12.0).reshape(3, 4)
    A.flags.writeable = False
    B.flags.writeable = False
    C = np.zeros((2, 4))
    _core.gemm(C, A, B)
    np.testing.assert_array_equal(C, A @ B)
