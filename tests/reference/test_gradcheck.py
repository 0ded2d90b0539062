"""fastbp.gradcheck: catches wrong gradients, passes right ones, leaves params intact."""

import numpy as np
import pytest

from fastbp.gradcheck import GradcheckReport, gradcheck


def quadratic_problem(seed=0, shape=(4, 3)):
    """f(W, v) = sum(tanh(W) * C) + 0.5 * ||v||^2 * s, with known gradients."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal(shape)
    v = rng.standard_normal(5)
    C = rng.standard_normal(shape)
    s = 1.7

    def fun():
        return np.sum(np.tanh(W) * C) + 0.5 * s * np.sum(v * v)

    grads = {"W": (1 - np.tanh(W) ** 2) * C, "v": s * v}
    return fun, {"W": W, "v": v}, grads


def test_right_gradient_passes():
    fun, params, grads = quadratic_problem()
    report = gradcheck(fun, params, grads)
    assert isinstance(report, GradcheckReport)
    assert report.ok()
    assert report.ok(tol=1e-6)
    assert set(report.per_param) == {"W", "v"}
    assert report.max_error == max(report.per_param.values())
    assert report.max_error < 1e-7
    text = str(report)
    assert "W" in text and "v" in text and "max error" in text


@pytest.mark.parametrize("mistake", ["sign", "scale", "one_entry", "transpose", "missing_term"])
def test_wrong_gradient_is_caught(mistake):
    fun, params, grads = quadratic_problem(shape=(3, 3))
    bad = {k: g.copy() for k, g in grads.items()}
    if mistake == "sign":
        bad["v"] = -bad["v"]
    elif mistake == "scale":
        bad["W"] = bad["W"] * 1.001                   # 1e-3 relative, all entries
    elif mistake == "one_entry":
        bad["W"][1, 2] += 1e-4 * max(1.0, abs(bad["W"][1, 2]))
    elif mistake == "transpose":
        bad["W"] = bad["W"].T.copy()
    else:
        bad["v"] = bad["v"] / 1.7                     # forgot the factor s
    report = gradcheck(fun, params, bad)
    assert not report.ok()
    assert report.max_error > 1e-5
    good = gradcheck(fun, params, grads)
    assert good.ok()
    # the report points at the parameter that is wrong
    wrong = "v" if mistake in ("sign", "missing_term") else "W"
    assert report.per_param[wrong] > 1e-5
    other = ({"W", "v"} - {wrong}).pop()
    assert report.per_param[other] < 1e-6


def test_wrong_entry_outside_subset_is_caught_when_checked():
    """An error in one entry is found whenever that entry is in the checked subset."""
    fun, params, grads = quadratic_problem(shape=(20, 10))
    bad = {k: g.copy() for k, g in grads.items()}
    bad["W"][-1, -1] += 0.5                           # the last entry is always checked
    report = gradcheck(fun, params, bad, max_entries=8)
    assert not report.ok()
    assert report.checks["W"].worst_index == (19, 9)


def test_list_params_are_supported():
    fun, params, grads = quadratic_problem()
    report = gradcheck(fun, [params["W"], params["v"]], [grads["W"], grads["v"]])
    assert report.ok()
    assert set(report.per_param) == {0, 1}


def bits(a):
    return a.view(np.uint64).copy()


def test_params_are_restored_bitwise():
    fun, params, grads = quadratic_problem(shape=(3, 4))
    # values whose +-h round-trip would not be exact, plus -0.0
    params["W"][0, 0] = 0.1
    params["W"][0, 1] = -0.0
    params["W"][0, 2] = 1e300                         # x + h == x - h == x here
    before = {k: bits(p) for k, p in params.items()}
    ids = {k: id(p) for k, p in params.items()}
    report = gradcheck(fun, params, grads)
    # at 1e300 the step vanishes: no derivative can be formed, which counts as failure
    assert report.checks["W"].errors[2] == np.inf and not report.ok()
    for k in params:
        assert id(params[k]) == ids[k]
        np.testing.assert_array_equal(bits(params[k]), before[k])


def test_params_are_restored_when_fun_raises():
    rng = np.random.default_rng(3)
    W = rng.standard_normal((3, 4))
    before = bits(W)
    calls = {"n": 0}

    def fun():
        calls["n"] += 1
        if calls["n"] == 4:                           # fails in the middle of a perturbation
            raise RuntimeError("boom")
        return np.sum(W ** 2)

    with pytest.raises(RuntimeError, match="boom"):
        gradcheck(fun, {"W": W}, {"W": 2 * W})
    np.testing.assert_array_equal(bits(W), before)


def test_non_contiguous_params_are_perturbed_and_restored():
    base = np.random.default_rng(4).standard_normal((6, 8))
    view = base[::2, 1::3]                            # a strided view
    before = bits(base)
    report = gradcheck(lambda: np.sum(view ** 3), {"view": view}, {"view": 3 * view ** 2})
    assert report.ok()
    np.testing.assert_array_equal(bits(base), before)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int64])
def test_rejects_non_float64_params(dtype):
    W = np.ones((2, 2), dtype=dtype)
    with pytest.raises(TypeError, match="'W'"):
        gradcheck(lambda: float(np.sum(W)), {"W": W}, {"W": np.ones((2, 2))})
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda: float(np.sum(W)), [W], [np.ones((2, 2))])


def test_rejects_bad_structure():
    W = np.ones((2, 2))
    with pytest.raises(ValueError, match="shape"):
        gradcheck(lambda: np.sum(W), {"W": W}, {"W": np.ones(4)})
    with pytest.raises(ValueError, match="keys"):
        gradcheck(lambda: np.sum(W), {"W": W}, {"V": np.ones((2, 2))})
    with pytest.raises(TypeError):
        gradcheck(lambda: np.sum(W), {"W": [[1.0, 1.0], [1.0, 1.0]]}, {"W": np.ones((2, 2))})
    with pytest.raises(ValueError, match="scalar"):
        gradcheck(lambda: W * 2, {"W": W}, {"W": np.ones((2, 2))})


def test_subset_sampling_is_reproducible_from_seed():
    fun, params, grads = quadratic_problem(shape=(30, 20))
    size = params["W"].size
    r1 = gradcheck(fun, params, grads, max_entries=16, seed=7)
    r2 = gradcheck(fun, params, grads, max_entries=16, seed=7)
    r3 = gradcheck(fun, params, grads, max_entries=16, seed=8)
    idx1, idx2, idx3 = (r.checks["W"].indices for r in (r1, r2, r3))
    assert idx1.size == 16 and len(set(idx1.tolist())) == 16
    np.testing.assert_array_equal(idx1, idx2)
    np.testing.assert_array_equal(r1.checks["W"].numeric, r2.checks["W"].numeric)
    assert not np.array_equal(idx1, idx3)
    for idx in (idx1, idx3):
        assert 0 in idx and size - 1 in idx             # extremes always included
        assert int(np.argmax(np.abs(grads["W"]))) in idx
    # small arrays are checked entirely
    np.testing.assert_array_equal(r1.checks["v"].indices, np.arange(5))
    assert r1.ok() and r3.ok()


def test_numeric_derivative_is_accurate():
    """Sanity of the numeric derivative itself: exact for a quadratic up to rounding."""
    x = np.array([0.3, -1.2, 2.5])
    report = gradcheck(lambda: np.sum(x ** 2 + 3 * x), [x], [2 * x + 3])
    np.testing.assert_allclose(report.checks[0].numeric, 2 * x + 3, rtol=1e-8)
    assert report.max_error < 1e-8
