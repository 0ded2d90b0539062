"""Compiled Elman RNN (fastbp.rnn) against the NumPy reference (docs/equations.md §6).

float64: equal to the reference to ~1e-10 relative; float32: tracks float64.
Edge shapes (B = 1, T = 1, H = 1, I = 0, T = 0), non-contiguous and read-only
inputs, BLAS thread counts, and every bad input raising a clear error.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastbp import reference as ref
from fastbp.functional import activation_forward
from fastbp import _recurrent
from fastbp.rnn import RNN_NONLINEARITIES, RNNCache, rnn_backward, rnn_forward

GRAD_KEYS = ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh")


def make(T, B, I, H, seed=0, dtype=np.float64, scale=0.5):
    """x, h0, W_ih, W_hh, b_ih, b_hh, dy, dh_n; weights scaled so tanh does not saturate."""
    rng = np.random.default_rng(seed)
    arrs = (rng.standard_normal((T, B, I)), rng.standard_normal((B, H)),
            rng.standard_normal((H, I)) * scale / max(1, np.sqrt(I)),
            rng.standard_normal((H, H)) * scale / np.sqrt(H),
            rng.standard_normal(H) * 0.1, rng.standard_normal(H) * 0.1,
            rng.standard_normal((T, B, H)), rng.standard_normal((B, H)))
    return [a.astype(dtype) for a in arrs]


def assert_matches_reference(T, B, I, H, act, with_h0=True, with_dy=True, with_dh_n=True,
                             seed=0, rtol=1e-10, atol=1e-12):
    x, h0, W_ih, W_hh, b_ih, b_hh, dy, dh_n = make(T, B, I, H, seed)
    h0 = h0 if with_h0 else None
    dy = dy if with_dy else None
    dh_n = dh_n if with_dh_n else None
    y, h_n, cache = rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh, act)
    y_r, h_n_r, cache_r = ref.rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh, act)
    np.testing.assert_allclose(y, y_r, rtol=rtol, atol=atol)
    np.testing.assert_allclose(h_n, h_n_r, rtol=rtol, atol=atol)
    g = rnn_backward(dy, dh_n, cache)
    g_r = ref.rnn_backward(dy, dh_n, cache_r)
    assert set(g) == set(GRAD_KEYS)
    for k in GRAD_KEYS:
        assert g[k].shape == g_r[k].shape and g[k].dtype == g_r[k].dtype, k
        np.testing.assert_allclose(g[k], g_r[k], rtol=rtol, atol=atol, err_msg=k)


@pytest.mark.parametrize("act", RNN_NONLINEARITIES)
@pytest.mark.parametrize("shape", [(6, 3, 4, 5), (1, 1, 1, 1), (7, 1, 3, 8), (1, 4, 2, 3),
                                   (4, 2, 5, 1), (3, 2, 0, 4), (5, 9, 17, 33)])
def test_float64_equals_reference(act, shape):
    assert_matches_reference(*shape, act)


@pytest.mark.parametrize("act", RNN_NONLINEARITIES)
@pytest.mark.parametrize("with_h0,with_dy,with_dh_n",
                         [(False, True, False), (True, False, True), (False, False, True),
                          (True, True, False), (False, False, False)])
def test_optional_arguments_equal_reference(act, with_h0, with_dy, with_dh_n):
    assert_matches_reference(5, 2, 3, 4, act, with_h0, with_dy, with_dh_n, seed=3)


@settings(max_examples=30, deadline=None)
@given(T=st.integers(0, 6), B=st.integers(1, 5), I=st.integers(0, 6), H=st.integers(1, 7),
       act=st.sampled_from(RNN_NONLINEARITIES), with_h0=st.booleans(), with_dh_n=st.booleans(),
       seed=st.integers(0, 2**16))
def test_hypothesis_shapes_equal_reference(T, B, I, H, act, with_h0, with_dh_n, seed):
    assert_matches_reference(T, B, I, H, act, with_h0=with_h0, with_dh_n=with_dh_n, seed=seed)


@pytest.mark.parametrize("act", RNN_NONLINEARITIES)
@pytest.mark.parametrize("B", [1, 4])
def test_float32_tracks_float64(act, B):
    arrs64 = make(8, B, 5, 16, seed=5)
    arrs32 = [a.astype(np.float32) for a in arrs64]
    out = []
    for x, h0, W_ih, W_hh, b_ih, b_hh, dy, dh_n in (arrs64, arrs32):
        y, h_n, cache = rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh, act)
        g = rnn_backward(dy, dh_n, cache)
        assert y.dtype == x.dtype and all(v.dtype == x.dtype for v in g.values())
        out.append((y, h_n, g))
    (y64, hn64, g64), (y32, hn32, g32) = out
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(hn32, hn64, rtol=1e-4, atol=1e-5)
    for k in GRAD_KEYS:
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-4, atol=1e-4, err_msg=k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_tanh_is_the_library_tanh(dtype):
    """With W_ih = identity and W_hh = 0, h_t = tanh(x_t): the kernel's fused tanh
    (fbp_tanh inside the multiversioned fused pass) gives exactly fastbp's elementwise tanh."""
    H = 37
    x = np.linspace(-12, 12, 3 * 2 * H).reshape(3, 2, H).astype(dtype)
    x[0, 0, :6] = [0.0, 1e-30, -0.6249, 0.625, 1e-8, 88.5]   # around the branch points
    zero = np.zeros(H, dtype)
    y, _, _ = rnn_forward(x, None, np.eye(H, dtype=dtype), np.zeros((H, H), dtype), zero, zero, "tanh")
    np.testing.assert_array_equal(y, activation_forward(x, "tanh"))


@pytest.mark.parametrize("act", RNN_NONLINEARITIES)
def test_relu_and_tanh_derivative_come_from_the_output(act):
    """A state exactly at the relu kink (a_t = 0) gets derivative 0, as in the notes."""
    x = np.zeros((1, 1, 1))
    y, _, cache = rnn_forward(x, None, np.ones((1, 1)), np.ones((1, 1)), np.zeros(1), np.zeros(1), act)
    g = rnn_backward(np.ones((1, 1, 1)), None, cache)
    expected = {"relu": 0.0, "tanh": 1.0, "identity": 1.0}[act]
    assert g["bias_ih"][0] == expected


def test_many_steps_long_sequence_equals_reference():
    assert_matches_reference(200, 2, 3, 6, "tanh", seed=9)


@pytest.mark.parametrize("recurrent_product", ["packed", "blas"])
@pytest.mark.parametrize("B,H", [(1, 70), (1, 64), (1, 16), (1, 3), (2, 33), (6, 17), (7, 40),
                                 (13, 8), (1, 130)])
def test_both_recurrent_product_paths_equal_reference(monkeypatch, recurrent_product, B, H):
    """fastbp's packed kernel (whole panels, a last partial panel, one row with
    several panels at a time, full and partial row blocks) and BLAS (GEMV at B = 1)."""
    monkeypatch.setattr(_recurrent, "FORCE_PRODUCTS", recurrent_product)
    assert ((_recurrent.pack_workspace(_recurrent.RNN_SPEC, B, H, np.float64) is None)
            == (recurrent_product == "blas"))
    assert_matches_reference(5, B, 7, H, "tanh", seed=B + H)


# ---- the cache and the outputs ----------------------------------------------------------

def test_cache_views_and_h_n_is_a_copy():
    x, h0, W_ih, W_hh, b_ih, b_hh, dy, dh_n = make(4, 2, 3, 5)
    y, h_n, cache = rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh)
    assert isinstance(cache, RNNCache)
    assert cache.hs.shape == (5, 2, 5)
    np.testing.assert_array_equal(cache.h0, h0)
    assert np.shares_memory(y, cache.hs) and np.shares_memory(cache.y, cache.hs)
    np.testing.assert_array_equal(cache.y, y)
    np.testing.assert_array_equal(cache.h_n, y[-1])
    np.testing.assert_array_equal(h_n, y[-1])
    assert not np.shares_memory(h_n, cache.hs)
    # no copies: the cache holds its own views of the caller's arrays
    assert all(np.shares_memory(a, b) and a.base is b
               for a, b in ((cache.x, x), (cache.weight_ih, W_ih), (cache.weight_hh, W_hh)))
    assert cache.dtype == np.float64 and "T=4" in repr(cache)
    h0_before = h0.copy()
    h_n[:] = 7.0                    # the caller's h0 and the cache stay untouched
    np.testing.assert_array_equal(h0, h0_before)
    np.testing.assert_array_equal(cache.h_n, y[-1])


def test_backward_is_repeatable_and_leaves_the_cache_alone():
    x, h0, W_ih, W_hh, b_ih, b_hh, dy, dh_n = make(5, 3, 2, 4)
    _, _, cache = rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh)
    hs = cache.hs.copy()
    g1 = rnn_backward(dy, dh_n, cache)
    g2 = rnn_backward(dy, dh_n, cache)
    np.testing.assert_array_equal(cache.hs, hs)
    for k in GRAD_KEYS:
        np.testing.assert_array_equal(g1[k], g2[k])
    assert not np.shares_memory(g1["bias_ih"], g1["bias_hh"])


def test_zero_steps():
    x, h0, W_ih, W_hh, b_ih, b_hh, _, dh_n = make(0, 3, 2, 4)
    y, h_n, cache = rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh)
    assert y.shape == (0, 3, 4)
    np.testing.assert_array_equal(h_n, h0)
    g = rnn_backward(np.zeros((0, 3, 4)), dh_n, cache)
    np.testing.assert_array_equal(g["h0"], dh_n)
    assert g["x"].shape == (0, 3, 2) and not g["weight_hh"].any() and not g["bias_hh"].any()
    g = rnn_backward(None, None, cache)
    np.testing.assert_array_equal(g["h0"], np.zeros((3, 4)))


def test_dtype_follows_x():
    x, h0, W_ih, W_hh, b_ih, b_hh, dy, dh_n = make(3, 2, 2, 3)
    y, h_n, cache = rnn_forward(x.astype(np.float32), h0, W_ih, W_hh, b_ih, b_hh)
    assert y.dtype == h_n.dtype == np.float32
    g = rnn_backward(dy, dh_n, cache)                   # float64 dy is converted
    assert all(v.dtype == np.float32 for v in g.values())
    y, _, _ = rnn_forward(np.ones((2, 1, 2), dtype=np.int32), None, W_ih, W_hh, b_ih, b_hh)
    assert y.dtype == np.float64
    y, _, _ = rnn_forward(x.tolist(), h0.tolist(), W_ih.tolist(), W_hh, b_ih, b_hh)   # lists
    assert y.dtype == np.float64


def test_non_contiguous_and_read_only_inputs():
    x, h0, W_ih, W_hh, b_ih, b_hh, dy, dh_n = make(4, 3, 5, 6, seed=4)
    # non-contiguous: Fortran order, strided slices, transposed views
    xs = np.asfortranarray(x)
    W_ih_s = np.ascontiguousarray(W_ih.T).T
    W_hh_big = np.zeros((6, 12))
    W_hh_big[:, ::2] = W_hh
    b_big = np.zeros(12)
    b_big[::2] = b_ih
    dy_s = np.asfortranarray(dy)
    arrays = [xs, h0, W_ih_s, W_hh_big[:, ::2], b_big[::2], b_hh, dy_s, dh_n]
    for a in arrays:
        if isinstance(a, np.ndarray) and a.base is None:
            a.flags.writeable = False
    ro = [np.array(a) for a in (x, h0, W_ih, W_hh, b_ih, b_hh, dy, dh_n)]
    for a in ro:
        a.flags.writeable = False
    y_r, hn_r, c_r = ref.rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh)
    g_r = ref.rnn_backward(dy, dh_n, c_r)
    for xx, hh0, wi, wh, bi, bh, ddy, ddh in (arrays, ro):
        y, h_n, cache = rnn_forward(xx, hh0, wi, wh, bi, bh)
        g = rnn_backward(ddy, ddh, cache)
        np.testing.assert_allclose(y, y_r, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(h_n, hn_r, rtol=1e-12, atol=1e-14)
        for k in GRAD_KEYS:
            np.testing.assert_allclose(g[k], g_r[k], rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("B", [1, 48])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_results_do_not_depend_on_blas_threads(B, dtype):
    """fastbp runs no threads of its own and sums in a fixed order, so the only
    thread dependence is BLAS's. OpenBLAS's dgemm/dgemv give bit-identical
    results on 1 and 2 threads, and so does fastbp in float64. Its sgemm does
    not: a 2-thread split of M that is not a multiple of the micro-kernel's
    tile sends some entries through an edge kernel that accumulates in another
    order (np.matmul on NumPy's own OpenBLAS shows the same, e.g. 128³), so in
    float32 the results agree to rounding, not bitwise."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    x, h0, W_ih, W_hh, b_ih, b_hh, dy, dh_n = make(6, B, 64, 256, seed=8, dtype=dtype)
    out = []
    for n in (1, 2):
        with threadpoolctl.threadpool_limits(n):
            y, h_n, cache = rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh)
            out.append((y.copy(), rnn_backward(dy, dh_n, cache)))
    if dtype == np.float64:
        check = np.testing.assert_array_equal
    else:
        def check(a, b, err_msg=""):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max(), err_msg=err_msg)
    check(out[0][0], out[1][0])
    for k in GRAD_KEYS:
        check(out[0][1][k], out[1][1][k], err_msg=k)


# ---- bad inputs ----------------------------------------------------------------------------

def good():
    x, h0, W_ih, W_hh, b_ih, b_hh, dy, dh_n = make(3, 2, 4, 5)
    return dict(x=x, h0=h0, weight_ih=W_ih, weight_hh=W_hh, bias_ih=b_ih, bias_hh=b_hh)


@pytest.mark.parametrize("name,value,err,match", [
    ("x", np.ones((3, 4)), ValueError, r"x: expected a 3-D array"),
    ("x", np.ones((3, 2, 4), dtype=complex), TypeError, r"x: expected a real floating"),
    ("x", np.full((3, 2, 4), np.nan), ValueError, r"x: contains NaN"),
    ("x", None, TypeError, r"x: expected an array"),
    ("h0", np.ones((2, 6)), ValueError, r"h0: expected shape \(2, 5\), got \(2, 6\)"),
    ("h0", np.ones(5), ValueError, r"h0: expected a 2-D array"),
    ("h0", np.full((2, 5), np.inf), ValueError, r"h0: contains NaN"),
    ("weight_ih", np.ones((5, 3)), ValueError, r"weight_ih: expected shape \(any, 4\), got \(5, 3\)"),
    ("weight_ih", np.ones((0, 4)), ValueError, r"weight_ih: expected shape \(H, I\) with H >= 1"),
    ("weight_ih", np.ones(20), ValueError, r"weight_ih: expected a 2-D array"),
    ("weight_hh", np.ones((5, 4)), ValueError, r"weight_hh: expected shape \(5, 5\), got \(5, 4\)"),
    ("weight_hh", np.ones((5, 5), dtype=object), TypeError, r"weight_hh: expected a real floating"),
    ("bias_ih", np.ones(4), ValueError, r"bias_ih: expected shape \(5,\), got \(4,\)"),
    ("bias_hh", np.ones((5, 1)), ValueError, r"bias_hh: expected a 1-D array"),
    ("bias_hh", np.array([1, 2, np.nan, 4, 5.0]), ValueError, r"bias_hh: contains NaN"),
])
def test_forward_rejects_bad_inputs(name, value, err, match):
    kw = good()
    kw[name] = value
    with pytest.raises(err, match=match):
        rnn_forward(**kw)


@pytest.mark.parametrize("nonlinearity", ["sigmoid", "softmax", "Tanh", None, 2])
def test_forward_rejects_unknown_nonlinearity(nonlinearity):
    with pytest.raises(ValueError, match=r"nonlinearity: expected one of 'tanh', 'relu', 'identity'"):
        rnn_forward(**good(), nonlinearity=nonlinearity)


def test_backward_rejects_bad_inputs():
    _, _, cache = rnn_forward(**good())
    with pytest.raises(ValueError, match=r"dy: expected shape \(3, 2, 5\), got \(3, 2, 4\)"):
        rnn_backward(np.ones((3, 2, 4)), None, cache)
    with pytest.raises(ValueError, match=r"dy: expected a 3-D array"):
        rnn_backward(np.ones((6, 5)), None, cache)
    with pytest.raises(ValueError, match=r"dy: contains NaN"):
        rnn_backward(np.full((3, 2, 5), np.nan), None, cache)
    with pytest.raises(ValueError, match=r"dh_n: expected shape \(2, 5\), got \(1, 5\)"):
        rnn_backward(None, np.ones((1, 5)), cache)
    with pytest.raises(TypeError, match=r"dh_n: expected a real floating"):
        rnn_backward(None, np.ones((2, 5), dtype=complex), cache)


def test_backward_rejects_foreign_caches():
    kw = good()
    _, _, ref_cache = ref.rnn_forward(*kw.values())
    with pytest.raises(TypeError, match=r"cache: expected the RNNCache .* got dict \(a dict is the "
                                        r"cache of fastbp.reference.rnn_forward\)"):
        rnn_backward(None, None, ref_cache)

    class LSTMCache:   # what another kernel family's cache looks like to this function
        pass
    with pytest.raises(TypeError, match=r"cache: expected the RNNCache .* got LSTMCache"):
        rnn_backward(None, None, LSTMCache())
    with pytest.raises(TypeError, match=r"got tuple"):
        rnn_backward(None, None, (1, 2))


# ---- the model -----------------------------------------------------------------------------

from fastbp.clip import clip_grad_norm  # noqa: E402
from fastbp.gradcheck import gradcheck  # noqa: E402
from fastbp.rnn import RNN  # noqa: E402

PARAM_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_out", "bias_out")


class ReferenceLayerRNN(RNN):
    """The same model with the NumPy reference as its layer: the oracle."""

    def _layer_forward(self, X, states, layout, keep_cache=True):
        assert not layout.varlen and not layout.sched.has_resets   # the reference has neither
        p = self._params
        y, h_n, cache = ref.rnn_forward(X, states[0], p["weight_ih"], p["weight_hh"],
                                        p["bias_ih"], p["bias_hh"], self.nonlinearity)
        return y, (h_n,), cache

    def _layer_backward(self, dy, dfinal, cache):
        return ref.rnn_backward(dy, dfinal[0], cache)


def model_data(rng, T, B, I, O, loss, many_to_one):
    X = rng.standard_normal((T, B, I))
    lead = (B,) if many_to_one else (T, B)
    Y = rng.standard_normal(lead + (O,)) if loss == "mse" else rng.integers(0, O, lead)
    return X, Y


@pytest.mark.parametrize("nonlinearity", RNN_NONLINEARITIES)
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("many_to_one", [False, True])
@pytest.mark.parametrize("l2", [0.0, 0.05])
def test_model_gradcheck(nonlinearity, loss, many_to_one, l2):
    rng = np.random.default_rng([RNN_NONLINEARITIES.index(nonlinearity), many_to_one, l2 > 0])
    m = RNN(3, 5, 4, nonlinearity=nonlinearity, loss=loss, many_to_one=many_to_one, l2=l2, seed=1)
    X, Y = model_data(rng, 4, 2, 3, 4, loss, many_to_one)
    h0 = rng.standard_normal((2, 5)) * 0.5
    _, grads, _ = m.loss_and_grad(X, Y, h0)
    assert list(grads) == list(PARAM_NAMES)
    report = gradcheck(lambda: m.loss_and_grad(X, Y, h0)[0], m.params, grads)
    assert report.ok(1e-6), str(report)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("many_to_one", [False, True])
@pytest.mark.parametrize("with_h0", [False, True])
def test_model_equals_model_on_reference_layer(loss, many_to_one, with_h0):
    rng = np.random.default_rng(7)
    kw = dict(nonlinearity="tanh", loss=loss, many_to_one=many_to_one, l2=0.01, seed=3)
    m, m_ref = RNN(4, 6, 3, **kw), ReferenceLayerRNN(4, 6, 3, **kw)
    X, Y = model_data(rng, 5, 3, 4, 3, loss, many_to_one)
    h0 = rng.standard_normal((3, 6)) if with_h0 else None
    loss_f, g_f, h_n = m.loss_and_grad(X, Y, h0)
    loss_r, g_r, h_n_r = m_ref.loss_and_grad(X, Y, h0)
    assert isinstance(loss_f, float)
    np.testing.assert_allclose(loss_f, loss_r, rtol=1e-12)
    np.testing.assert_allclose(h_n, h_n_r, rtol=1e-12, atol=1e-14)
    for k in PARAM_NAMES:
        np.testing.assert_allclose(g_f[k], g_r[k], rtol=1e-10, atol=1e-13, err_msg=k)
    out, h_n2 = m.forward(X, h0)
    out_r, _ = m_ref.forward(X, h0)
    np.testing.assert_allclose(out, out_r, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(h_n2, h_n)


def test_model_chunks_carry_the_state():
    """Truncated BPTT: two chunks with the state carried give the outputs and
    final state of the whole sequence, and each chunk's gradients are those of
    that chunk alone starting from the carried state."""
    rng = np.random.default_rng(11)
    m = RNN(3, 8, 2, seed=0)
    m_ref = ReferenceLayerRNN(3, 8, 2, seed=0)
    X, Y = model_data(rng, 10, 2, 3, 2, "mse", False)
    out_full, h_full = m.forward(X)
    loss1, g1, h_mid = m.loss_and_grad(X[:6], Y[:6])
    loss2, g2, h_end = m.loss_and_grad(X[6:], Y[6:], h_mid)
    np.testing.assert_allclose(h_end, h_full, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(m.forward(X[6:], h_mid)[0], out_full[6:], rtol=1e-12, atol=1e-14)
    loss_full = m.loss_and_grad(X, Y)[0]
    np.testing.assert_allclose((6 * loss1 + 4 * loss2) / 10, loss_full, rtol=1e-12)
    loss2_r, g2_r, _ = m_ref.loss_and_grad(X[6:], Y[6:], h_mid)
    for k in PARAM_NAMES:
        np.testing.assert_allclose(g2[k], g2_r[k], rtol=1e-10, atol=1e-13, err_msg=k)


def test_model_float32_tracks_float64():
    rng = np.random.default_rng(12)
    X, Y = model_data(rng, 6, 3, 4, 2, "mse", False)
    m64 = RNN(4, 16, 2, seed=5)
    m32 = RNN(4, 16, 2, seed=5, dtype="float32")
    l64, g64, h64 = m64.loss_and_grad(X, Y)
    l32, g32, h32 = m32.loss_and_grad(X, Y)
    assert all(g.dtype == np.float32 for g in g32.values()) and h32.dtype == np.float32
    np.testing.assert_allclose(l32, l64, rtol=1e-5)
    np.testing.assert_allclose(h32, h64, rtol=1e-4, atol=1e-5)
    for k in PARAM_NAMES:
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-3, atol=1e-5, err_msg=k)


def test_model_init_outputs_and_predict():
    m = RNN(3, 4, 5, loss="cross_entropy", seed=0)
    bound = 1 / np.sqrt(4)
    assert all(np.abs(v).max() <= bound for v in m.params.values())
    assert m.params["weight_ih"].shape == (4, 3) and m.params["weight_hh"].shape == (4, 4)
    np.testing.assert_array_equal(RNN(3, 4, 5, seed=0).params["weight_hh"], m.params["weight_hh"])
    X = np.random.default_rng(0).standard_normal((6, 2, 3))
    out, h_n = m.forward(X)
    assert out.shape == (6, 2, 5) and h_n.shape == (2, 4)
    np.testing.assert_array_equal(m.predict(X), np.argmax(out, axis=-1))
    m1 = RNN(3, 4, 5, many_to_one=True, seed=0)
    assert m1.forward(X)[0].shape == (2, 5)
    np.testing.assert_array_equal(m1.predict(X), m1.forward(X)[0])


def test_model_gradients_clip_and_train():
    """A few clipped SGD steps learn to output the previous input (needs the recurrence)."""
    rng = np.random.default_rng(0)
    m = RNN(1, 16, 1, seed=0)
    X = rng.standard_normal((12, 8, 1))
    Y = np.concatenate([np.zeros((1, 8, 1)), X[:-1]])
    first = m.loss_and_grad(X, Y)[0]
    for _ in range(300):
        loss, grads, _ = m.loss_and_grad(X, Y)
        norm = clip_grad_norm(grads, 1.0)
        assert np.isfinite(norm)
        for k, g in grads.items():
            m.params[k] -= 0.1 * g
    assert loss < 0.3 * first


def test_model_bad_arguments():
    with pytest.raises(ValueError, match=r"nonlinearity: expected one of"):
        RNN(3, 4, 5, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match=r"hidden_size: expected a positive integer"):
        RNN(3, 0, 5)
    with pytest.raises(TypeError, match=r"dtype"):
        RNN(3, 4, 5, dtype="float16")
    m = RNN(3, 4, 5, seed=0)
    X = np.zeros((2, 1, 3))
    with pytest.raises(ValueError, match=r"X: expected shape \(any, any, 3\)"):
        m.loss_and_grad(np.zeros((2, 1, 4)), np.zeros((2, 1, 5)))
    with pytest.raises(ValueError, match=r"Y: expected shape \(2, 1, 5\)"):
        m.loss_and_grad(X, np.zeros((2, 1, 4)))
    with pytest.raises(ValueError, match=r"h0: expected shape \(1, 4\)"):
        m.loss_and_grad(X, np.zeros((2, 1, 5)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"h0: contains NaN"):
        m.forward(X, np.full((1, 4), np.nan))
