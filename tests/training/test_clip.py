"""fastbp.clip.clip_grad_norm: global-norm gradient clipping, in place.

(The comparison with torch.nn.utils.clip_grad_norm_ is in test_rnn_torch.py.)
"""
import math

import numpy as np
import pytest

from fastbp.clip import clip_grad_norm


def grads_dict(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return {"weight_ih": rng.standard_normal((4, 3)).astype(dtype),
            "weight_hh": rng.standard_normal((4, 4)).astype(dtype),
            "bias": rng.standard_normal(4).astype(dtype)}


def global_norm(arrays):
    return math.sqrt(sum(float(np.sum(np.asarray(a, np.float64) ** 2)) for a in arrays))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clips_to_max_norm_in_place_keeping_direction(dtype):
    g = grads_dict(dtype=dtype)
    before = {k: v.copy() for k, v in g.items()}
    ids = {k: id(v) for k, v in g.items()}
    norm = global_norm(before.values())
    total = clip_grad_norm(g, 1.0)
    assert isinstance(total, float)
    assert total == pytest.approx(norm, rel=1e-12)
    scale = 1.0 / (norm + 1e-6)
    for k in g:
        assert id(g[k]) == ids[k] and g[k].dtype == dtype        # in place, dtype kept
        np.testing.assert_allclose(g[k], before[k] * scale, rtol=1e-6 if dtype == np.float32 else 1e-14)
    assert global_norm(g.values()) == pytest.approx(1.0, rel=1e-5)


def test_below_max_norm_leaves_gradients_unchanged():
    g = grads_dict()
    before = {k: v.copy() for k, v in g.items()}
    total = clip_grad_norm(g, 1e3)
    assert total == pytest.approx(global_norm(before.values()), rel=1e-12)
    for k in g:
        np.testing.assert_array_equal(g[k], before[k])


def test_nested_lists_tuples_dicts_and_none():
    rng = np.random.default_rng(1)
    a, b, c = rng.standard_normal(5), rng.standard_normal((2, 3)), rng.standard_normal(4)
    grads = [a, (b, None), {"inner": [c]}]
    expected = global_norm([a, b, c])
    a0 = a.copy()
    assert clip_grad_norm(grads, 0.5) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(a, a0 * 0.5 / (expected + 1e-6), rtol=1e-14)
    assert global_norm([a, b, c]) == pytest.approx(0.5, rel=1e-5)


def test_single_array_empty_and_zero_gradients():
    x = np.array([3.0, 4.0])
    assert clip_grad_norm(x, 1.0) == 5.0
    np.testing.assert_allclose(x, [3 / (5 + 1e-6), 4 / (5 + 1e-6)])
    assert clip_grad_norm([], 1.0) == 0.0
    assert clip_grad_norm({"w": np.empty((0, 3))}, 1.0) == 0.0
    z = np.zeros(3)
    assert clip_grad_norm(z, 1.0) == 0.0 and not z.any()


def test_non_contiguous_gradients_are_scaled_in_place():
    base = np.arange(1.0, 13.0).reshape(3, 4)
    view = base[:, ::2]
    expected = global_norm([view])
    total = clip_grad_norm([view], 1.0)
    assert total == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(base[:, ::2], np.arange(1.0, 13.0).reshape(3, 4)[:, ::2] / (expected + 1e-6))
    np.testing.assert_array_equal(base[:, 1::2], np.arange(1.0, 13.0).reshape(3, 4)[:, 1::2])


def test_norm_accumulates_in_float64():
    """10⁶ float32 entries of 1e-3: the norm is 1, exactly up to float64 rounding."""
    g = np.full(10**6, 1e-3, dtype=np.float32)
    assert clip_grad_norm(g, 10.0) == pytest.approx(math.sqrt(10**6 * float(np.float32(1e-3)) ** 2), rel=1e-12)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_norm(bad):
    g = grads_dict()
    g["bias"][1] = bad
    before = {k: v.copy() for k, v in g.items()}
    total = clip_grad_norm(g, 1.0)
    assert not math.isfinite(total)
    for k in g:                                       # left unchanged for the caller to skip
        np.testing.assert_array_equal(g[k], before[k])
    with pytest.raises(ValueError, match=r"grads: the total norm is (nan|inf)"):
        clip_grad_norm(g, 1.0, error_if_nonfinite=True)


@pytest.mark.parametrize("max_norm", [0, 0.0, -1.0, np.nan, np.inf, "1", None, True])
def test_rejects_bad_max_norm(max_norm):
    with pytest.raises(ValueError, match=r"max_norm: expected a finite number > 0"):
        clip_grad_norm(grads_dict(), max_norm)


def test_rejects_bad_gradients():
    with pytest.raises(TypeError, match=r"grads\[1\]: expected a NumPy array, or a dict"):
        clip_grad_norm([np.ones(2), 3.0], 1.0)
    with pytest.raises(TypeError, match=r"grads\['w'\]: expected a floating-point array, got dtype int64"):
        clip_grad_norm({"w": np.ones(2, dtype=np.int64)}, 1.0)
    ro = np.ones(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"grads\[0\]: the array is read-only"):
        clip_grad_norm([ro], 1.0)
    with pytest.raises(TypeError, match=r"grads: expected a NumPy array"):
        clip_grad_norm("abc", 1.0)
