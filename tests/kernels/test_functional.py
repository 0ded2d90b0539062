"""Compiled activations and losses (fastbp.functional) against the NumPy reference."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastbp
from fastbp import reference as ref

ACTS = ["identity", "sigmoid", "tanh", "relu", "softmax"]


def _z(rng, shape, dtype=np.float64):
    z = rng.standard_normal(shape) * 3
    return (z + np.sign(z) * 0.01).astype(dtype)   # away from relu's kink


@pytest.mark.parametrize("name", ACTS)
@pytest.mark.parametrize("shape", [(1, 1), (4, 7), (2, 3, 5), (6,)])
def test_activation_forward_and_backward_match_reference_float64(name, shape):
    rng = np.random.default_rng(0)
    z = _z(rng, shape)
    a = fastbp.activation_forward(z, name)
    np.testing.assert_allclose(a, ref.activation_forward(z, name), rtol=1e-13, atol=1e-15)
    da = rng.standard_normal(shape)
    np.testing.assert_allclose(fastbp.activation_backward(da, a, name),
                               ref.activation_backward(da, a, name), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ACTS)
def test_float32_tracks_float64(name):
    rng = np.random.default_rng(1)
    z = _z(rng, (16, 33))
    a64 = fastbp.activation_forward(z, name)
    a32 = fastbp.activation_forward(z.astype(np.float32), name)
    assert a32.dtype == np.float32
    np.testing.assert_allclose(a32, a64, rtol=2e-6, atol=1e-7)
    da = rng.standard_normal(z.shape)
    np.testing.assert_allclose(
        fastbp.activation_backward(da.astype(np.float32), a32, name),
        fastbp.activation_backward(da, a64, name), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturating_inputs_stay_finite_and_silent(dtype):
    z = np.array([[-1e4, -1000.0, -88.0, 0.0, 88.0, 1000.0, 1e4]], dtype=dtype)
    with np.errstate(all="raise"):
        for name in ACTS:
            a = fastbp.activation_forward(z, name)
            assert np.isfinite(a).all(), name
    np.testing.assert_allclose(fastbp.activation_forward(z, "sigmoid")[0, [0, 1, 5, 6]], [0, 0, 1, 1], atol=1e-30)
    np.testing.assert_array_equal(fastbp.activation_forward(z, "tanh")[0, [0, 1, 5, 6]], [-1, -1, 1, 1])
    loss, d = fastbp.softmax_cross_entropy(z, np.array([0]))
    assert np.isfinite(loss) and np.isfinite(d).all()
    np.testing.assert_allclose(loss, 2e4 if dtype == np.float64 else 2e4, rtol=1e-6)


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("shape", [(1, 1), (5, 4), (3, 2, 6)])
def test_softmax_cross_entropy_labels_and_onehot_match_reference(dtype, tol, shape):
    rng = np.random.default_rng(2)
    logits = _z(rng, shape, dtype)
    labels = rng.integers(0, shape[-1], shape[:-1])
    for target in (labels, np.eye(shape[-1], dtype=dtype)[labels]):
        loss, d = fastbp.softmax_cross_entropy(logits, target)
        rloss, rd = ref.softmax_cross_entropy(logits.astype(np.float64), target)
        np.testing.assert_allclose(loss, rloss, rtol=tol)
        np.testing.assert_allclose(d, rd, rtol=tol, atol=tol * 1e-2)


def test_soft_label_targets_match_reference():
    rng = np.random.default_rng(3)
    logits = _z(rng, (4, 5))
    probs = rng.dirichlet(np.ones(5), 4)
    loss, d = fastbp.softmax_cross_entropy(logits, probs)
    rloss, rd = ref.softmax_cross_entropy(logits, probs)
    np.testing.assert_allclose(loss, rloss, rtol=1e-12)
    np.testing.assert_allclose(d, rd, rtol=1e-11, atol=1e-15)


@pytest.mark.parametrize("form", ["sum", "half_mean"])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_squared_error_matches_reference(form, dtype, tol):
    rng = np.random.default_rng(4)
    pred = rng.standard_normal((3, 4, 5)).astype(dtype)
    target = rng.standard_normal((3, 4, 5)).astype(dtype)
    loss, d = fastbp.squared_error(pred, target, form)
    rloss, rd = ref.squared_error(pred.astype(np.float64), target.astype(np.float64), form)
    np.testing.assert_allclose(loss, rloss, rtol=tol)
    np.testing.assert_allclose(d, rd, rtol=tol, atol=tol * 1e-2)


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 6), cols=st.integers(1, 6), name=st.sampled_from(ACTS),
       seed=st.integers(0, 2**16), transpose=st.booleans())
def test_any_shape_and_layout_matches_reference(rows, cols, name, seed, transpose):
    rng = np.random.default_rng(seed)
    z = _z(rng, (cols, rows) if transpose else (rows, cols))
    z = z.T if transpose else z            # non-contiguous input
    z.flags.writeable = False              # read-only input
    a = fastbp.activation_forward(z, name)
    np.testing.assert_allclose(a, ref.activation_forward(np.array(z), name), rtol=1e-13, atol=1e-15)


def test_inputs_are_not_modified():
    rng = np.random.default_rng(5)
    z = _z(rng, (4, 3))
    keep = z.copy()
    labels = np.array([0, 1, 2, 0])
    for name in ACTS:
        fastbp.activation_forward(z, name)
        fastbp.activation_backward(z, fastbp.activation_forward(z, name), name)
    fastbp.softmax_cross_entropy(z, labels)
    fastbp.squared_error(z, z + 1)
    np.testing.assert_array_equal(z, keep)
    np.testing.assert_array_equal(labels, [0, 1, 2, 0])


def test_bad_inputs_raise_clear_errors():
    z = np.zeros((2, 3))
    with pytest.raises(ValueError, match="name"):
        fastbp.activation_forward(z, "gelu")
    with pytest.raises(TypeError, match="z"):
        fastbp.activation_forward(z.astype(complex), "tanh")
    with pytest.raises(TypeError, match="z"):
        fastbp.activation_forward(np.array([["a"]]), "tanh")
    with pytest.raises(ValueError, match="da"):
        fastbp.activation_backward(np.zeros((3, 2)), z, "tanh")
    with pytest.raises(ValueError, match="target"):
        fastbp.softmax_cross_entropy(z, np.array([0, 3]))
    with pytest.raises(ValueError, match="target"):
        fastbp.softmax_cross_entropy(z, np.array([0, -1]))
    with pytest.raises(ValueError, match="target"):
        fastbp.softmax_cross_entropy(z, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="logits"):
        fastbp.softmax_cross_entropy(np.full((2, 3), np.nan), np.array([0, 1]))
    with pytest.raises(ValueError, match="target"):
        fastbp.squared_error(z, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="form"):
        fastbp.squared_error(z, z, form="mean")


def test_integer_inputs_are_computed_in_float64():
    a = fastbp.activation_forward(np.array([[1, -2, 3]]), "relu")
    assert a.dtype == np.float64
    np.testing.assert_array_equal(a, [[1, 0, 3]])
