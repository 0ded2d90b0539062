"""The BLAS table and the row-major GEMM/GEMV/GER helpers against NumPy."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

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
