"""Property tests of the NumPy reference over random shapes (hypothesis).

Shapes include the degenerate T = 1, B = 1, H = 1, I = 1. Checked: output and
gradient shapes, whole-sequence functions == an explicit loop of one-step calls
(forward and backward), MLP backward == finite differences, float32 tracks
float64, plus numerical-stability and validation unit tests.
"""

import warnings

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fastbp import reference as ref
from fastbp.gradcheck import gradcheck

SETTINGS = settings(max_examples=25, deadline=None)

dims = st.integers(min_value=1, max_value=4)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def rnn_inputs(rng, T, B, I, H, dtype=np.float64):
    arrs = (rng.standard_normal((T, B, I)), rng.standard_normal((B, H)),
            0.6 * rng.standard_normal((H, I)), 0.6 * rng.standard_normal((H, H)),
            0.3 * rng.standard_normal(H), 0.3 * rng.standard_normal(H))
    return tuple(a.astype(dtype) for a in arrs)


def lstm_inputs(rng, T, B, I, H, peep, dtype=np.float64):
    arrs = [rng.standard_normal((T, B, I)), rng.standard_normal((B, H)),
            rng.standard_normal((B, H)),
            0.6 * rng.standard_normal((4 * H, I)), 0.6 * rng.standard_normal((4 * H, H)),
            0.3 * rng.standard_normal(4 * H), 0.3 * rng.standard_normal(4 * H)]
    pp = tuple(0.5 * rng.standard_normal(H).astype(dtype) for _ in range(3)) if peep else None
    return tuple(a.astype(dtype) for a in arrs), pp


def assert_tracks(lo, hi, rel=1e-4, name=""):
    """float32 result `lo` agrees with float64 `hi` to `rel` (normwise, max norm).

    The scale has a floor of 1e-2: every result is a sum of O(1) terms (the
    inputs and weights are), so float32 rounding leaves an absolute error of a
    few 1e-8 even where the sum itself nearly cancels (hypothesis found an LSTM
    c_n of 1e-3 off by 1.2e-7: T=4, B=1, I=4, H=1, seed=10871)."""
    assert lo.dtype == np.float32, (name, lo.dtype)
    scale = max(float(np.max(np.abs(hi), initial=0.0)), 1e-2)
    err = float(np.max(np.abs(lo.astype(np.float64) - hi), initial=0.0))
    assert err <= rel * scale, "%s: float32 off by %.3g relative" % (name, err / scale)


# --------------------------------------------------------------------------- RNN

@SETTINGS
@given(T=dims, B=dims, I=dims, H=dims, seed=seeds,
       phi=st.sampled_from(ref.RNN_NONLINEARITIES), with_h0=st.booleans())
def test_rnn_shapes_and_stepwise_equivalence(T, B, I, H, seed, phi, with_h0):
    rng = np.random.default_rng(seed)
    x, h0, W_ih, W_hh, b_ih, b_hh = rnn_inputs(rng, T, B, I, H)
    if not with_h0:
        h0 = None
    dy, dh_n = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))

    y, h_n, cache = ref.rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh, nonlinearity=phi)
    g = ref.rnn_backward(dy, dh_n, cache)
    assert y.shape == (T, B, H) and h_n.shape == (B, H)
    np.testing.assert_array_equal(h_n, y[-1])
    expected = {"x": (T, B, I), "h0": (B, H), "weight_ih": (H, I), "weight_hh": (H, H),
                "bias_ih": (H,), "bias_hh": (H,)}
    assert {k: v.shape for k, v in g.items()} == expected

    # forward: T one-step calls, chaining the state
    h = np.zeros((B, H)) if h0 is None else h0
    steps = []
    for t in range(T):
        y_t, h, c_t = ref.rnn_forward(x[t:t + 1], h, W_ih, W_hh, b_ih, b_hh, nonlinearity=phi)
        steps.append(c_t)
        np.testing.assert_allclose(y_t[0], y[t], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(h, h_n, rtol=1e-13, atol=1e-13)

    # backward: one-step calls from t = T down to 1, carrying dL/dh_{t-1}
    carry = dh_n
    acc = {k: 0.0 for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    for t in range(T - 1, -1, -1):
        g_t = ref.rnn_backward(dy[t:t + 1], carry, steps[t])
        np.testing.assert_allclose(g_t["x"][0], g["x"][t], rtol=1e-11, atol=1e-11)
        for k in acc:
            acc[k] = acc[k] + g_t[k]
        carry = g_t["h0"]
    np.testing.assert_allclose(carry, g["h0"], rtol=1e-11, atol=1e-11)
    for k in acc:
        np.testing.assert_allclose(acc[k], g[k], rtol=1e-11, atol=1e-11)


# --------------------------------------------------------------------------- LSTM

@SETTINGS
@given(T=dims, B=dims, I=dims, H=dims, seed=seeds, peep=st.booleans())
def test_lstm_shapes_and_stepwise_equivalence(T, B, I, H, seed, peep):
    rng = np.random.default_rng(seed)
    (x, h0, c0, W_ih, W_hh, b_ih, b_hh), pp = lstm_inputs(rng, T, B, I, H, peep)
    dy, dh_n, dc_n = (rng.standard_normal((T, B, H)), rng.standard_normal((B, H)),
                      rng.standard_normal((B, H)))

    y, (h_n, c_n), cache = ref.lstm_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, peepholes=pp)
    g = ref.lstm_backward(dy, dh_n, dc_n, cache)
    assert y.shape == (T, B, H) and h_n.shape == (B, H) and c_n.shape == (B, H)
    assert cache["c"].shape == (T, B, H) and cache["gates"].shape == (T, B, 4 * H)
    np.testing.assert_array_equal(h_n, y[-1])
    np.testing.assert_array_equal(c_n, cache["c"][-1])
    # gates are the activated i, f, g, o: sigmoids in (0, 1), tanh in [-1, 1], and
    # c_t = f c_{t-1} + i g, h_t = o tanh(c_t)
    i_, f_, g_, o_ = np.split(cache["gates"], 4, axis=-1)
    for gate in (i_, f_, o_):
        assert np.all((gate >= 0) & (gate <= 1))
    assert np.all(np.abs(g_) <= 1)
    c_prev = np.concatenate([c0[None], cache["c"][:-1]])
    np.testing.assert_allclose(cache["c"], f_ * c_prev + i_ * g_, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(y, o_ * np.tanh(cache["c"]), rtol=1e-13, atol=1e-13)
    expected = {"x": (T, B, I), "h0": (B, H), "c0": (B, H), "weight_ih": (4 * H, I),
                "weight_hh": (4 * H, H), "bias_ih": (4 * H,), "bias_hh": (4 * H,)}
    if peep:
        expected.update(peephole_i=(H,), peephole_f=(H,), peephole_o=(H,))
    assert {k: v.shape for k, v in g.items()} == expected

    # forward: one-step calls chaining (h, c)
    h, c = h0, c0
    steps = []
    for t in range(T):
        y_t, (h, c), c_t = ref.lstm_forward(x[t:t + 1], h, c, W_ih, W_hh, b_ih, b_hh,
                                            peepholes=pp)
        steps.append(c_t)
        np.testing.assert_allclose(y_t[0], y[t], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(h, h_n, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(c, c_n, rtol=1e-13, atol=1e-13)

    # backward: one-step calls carrying (dL/dh_{t-1}, dL/dc_{t-1})
    dh, dc = dh_n, dc_n
    acc = {k: 0.0 for k in expected if k not in ("x", "h0", "c0")}
    for t in range(T - 1, -1, -1):
        g_t = ref.lstm_backward(dy[t:t + 1], dh, dc, steps[t])
        np.testing.assert_allclose(g_t["x"][0], g["x"][t], rtol=1e-11, atol=1e-11)
        for k in acc:
            acc[k] = acc[k] + g_t[k]
        dh, dc = g_t["h0"], g_t["c0"]
    np.testing.assert_allclose(dh, g["h0"], rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(dc, g["c0"], rtol=1e-11, atol=1e-11)
    for k in acc:
        np.testing.assert_allclose(acc[k], g[k], rtol=1e-11, atol=1e-11)


# --------------------------------------------------------------------------- GRU

def gru_inputs(rng, T, B, I, H, dtype=np.float64):
    arrs = (rng.standard_normal((T, B, I)), rng.standard_normal((B, H)),
            0.6 * rng.standard_normal((3 * H, I)), 0.6 * rng.standard_normal((3 * H, H)),
            0.3 * rng.standard_normal(3 * H), 0.3 * rng.standard_normal(3 * H))
    return tuple(a.astype(dtype) for a in arrs)


@SETTINGS
@given(T=dims, B=dims, I=dims, H=dims, seed=seeds)
def test_gru_shapes_and_stepwise_equivalence(T, B, I, H, seed):
    rng = np.random.default_rng(seed)
    x, h0, W_ih, W_hh, b_ih, b_hh = gru_inputs(rng, T, B, I, H)
    dy, dh_n = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))

    y, h_n, cache = ref.gru_forward(x, h0, W_ih, W_hh, b_ih, b_hh)
    g = ref.gru_backward(dy, dh_n, cache)
    assert y.shape == (T, B, H) and h_n.shape == (B, H)
    assert cache["gates"].shape == (T, B, 3 * H) and cache["m"].shape == (T, B, H)
    np.testing.assert_array_equal(h_n, y[-1])
    # gates are the activated r, z, n: sigmoids in (0, 1), tanh in [-1, 1];
    # m_t = h_{t-1} W_hn^T + b_hn and h_t = (1 - z) n + z h_{t-1}
    r_, z_, n_ = np.split(cache["gates"], 3, axis=-1)
    for gate in (r_, z_):
        assert np.all((gate >= 0) & (gate <= 1))
    assert np.all(np.abs(n_) <= 1)
    h_prev = np.concatenate([h0[None], y[:-1]])
    np.testing.assert_allclose(cache["m"], h_prev @ W_hh[2 * H:].T + b_hh[2 * H:], rtol=1e-13,
                               atol=1e-13)
    np.testing.assert_allclose(y, (1 - z_) * n_ + z_ * h_prev, rtol=1e-13, atol=1e-13)
    expected = {"x": (T, B, I), "h0": (B, H), "weight_ih": (3 * H, I), "weight_hh": (3 * H, H),
                "bias_ih": (3 * H,), "bias_hh": (3 * H,)}
    assert {k: v.shape for k, v in g.items()} == expected

    # forward: one-step calls chaining h
    h, steps = h0, []
    for t in range(T):
        y_t, h, c_t = ref.gru_forward(x[t:t + 1], h, W_ih, W_hh, b_ih, b_hh)
        steps.append(c_t)
        np.testing.assert_allclose(y_t[0], y[t], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(h, h_n, rtol=1e-13, atol=1e-13)

    # backward: one-step calls carrying dL/dh_{t-1}
    dh = dh_n
    acc = {k: 0.0 for k in expected if k not in ("x", "h0")}
    for t in range(T - 1, -1, -1):
        g_t = ref.gru_backward(dy[t:t + 1], dh, steps[t])
        np.testing.assert_allclose(g_t["x"][0], g["x"][t], rtol=1e-11, atol=1e-11)
        for k in acc:
            acc[k] = acc[k] + g_t[k]
        dh = g_t["h0"]
    np.testing.assert_allclose(dh, g["h0"], rtol=1e-11, atol=1e-11)
    for k in acc:
        np.testing.assert_allclose(acc[k], g[k], rtol=1e-11, atol=1e-11)


# --------------------------------------------------------------------------- MLP

smooth_acts = st.sampled_from(("identity", "sigmoid", "tanh", "softmax"))


@SETTINGS
@given(sizes=st.lists(dims, min_size=2, max_size=4), B=dims, seed=seeds,
       data=st.data())
def test_mlp_backward_matches_gradcheck(sizes, B, seed, data):
    L = len(sizes) - 1
    acts = data.draw(st.lists(smooth_acts, min_size=L, max_size=L))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, sizes[0]))
    params = [(rng.standard_normal((n, m)), 0.5 * rng.standard_normal(n))
              for m, n in zip(sizes[:-1], sizes[1:])]
    R = rng.standard_normal((B, sizes[-1]))

    out, cache = ref.mlp_forward(x, params, acts)
    grads = ref.mlp_backward(R, cache)
    assert out.shape == (B, sizes[-1])
    assert len(cache["A"]) == L + 1 and cache["A"][0] is not None
    for (W, b), (dW, db) in zip(params, grads):
        assert dW.shape == W.shape and db.shape == b.shape

    report = gradcheck(lambda: np.sum(ref.mlp_forward(x, params, acts)[0] * R),
                       [a for Wb in params for a in Wb], [d for dWb in grads for d in dWb],
                       max_entries=16, seed=seed)
    assert report.ok(1e-6), "\n" + str(report)


@SETTINGS
@given(sizes=st.lists(dims, min_size=2, max_size=4), B=dims, seed=seeds, data=st.data())
def test_mlp_cross_entropy_float32_tracks_float64(sizes, B, seed, data):
    L = len(sizes) - 1
    acts = data.draw(st.lists(st.sampled_from(("identity", "sigmoid", "tanh", "softmax")),
                              min_size=L - 1, max_size=L - 1)) + ["softmax"]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, sizes[0])).astype(np.float32)
    params = [(rng.standard_normal((n, m)).astype(np.float32),
               rng.standard_normal(n).astype(np.float32))
              for m, n in zip(sizes[:-1], sizes[1:])]
    labels = rng.integers(0, sizes[-1], B)
    params64 = [(W.astype(np.float64), b.astype(np.float64)) for W, b in params]

    v32, g32 = ref.mlp_loss_and_grad(x, labels, params, acts, l2=0.1)
    v64, g64 = ref.mlp_loss_and_grad(x.astype(np.float64), labels, params64, acts, l2=0.1)
    assert isinstance(v32, np.float32) and isinstance(v64, np.float64)
    assert abs(float(v32) - float(v64)) <= 1e-4 * max(abs(float(v64)), 1.0)
    for (dW32, db32), (dW64, db64) in zip(g32, g64):
        assert_tracks(dW32, dW64, name="dW")
        assert_tracks(db32, db64, name="db")


@SETTINGS
@given(T=dims, B=dims, I=dims, H=dims, seed=seeds, phi=st.sampled_from(("tanh", "identity")))
def test_rnn_float32_tracks_float64(T, B, I, H, seed, phi):
    rng = np.random.default_rng(seed)
    a64 = rnn_inputs(rng, T, B, I, H)
    a32 = tuple(a.astype(np.float32) for a in a64)
    a64 = tuple(a.astype(np.float64) for a in a32)       # the same numbers in both
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    out = {}
    for key, args in (("32", a32), ("64", a64)):
        y, h_n, cache = ref.rnn_forward(*args, nonlinearity=phi)
        out[key] = dict(ref.rnn_backward(dy, None, cache), y=y, h_n=h_n)
    for k in out["64"]:
        assert_tracks(out["32"][k], out["64"][k], name=k)


@SETTINGS
@given(T=dims, B=dims, I=dims, H=dims, seed=seeds, peep=st.booleans())
@example(T=4, B=1, I=4, H=1, seed=10871, peep=False)     # a nearly cancelling c_n
def test_lstm_float32_tracks_float64(T, B, I, H, seed, peep):
    rng = np.random.default_rng(seed)
    a32, pp32 = lstm_inputs(rng, T, B, I, H, peep, dtype=np.float32)
    a64 = tuple(a.astype(np.float64) for a in a32)
    pp64 = None if pp32 is None else tuple(p.astype(np.float64) for p in pp32)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    dc = rng.standard_normal((B, H)).astype(np.float32)
    out = {}
    for key, args, pp in (("32", a32, pp32), ("64", a64, pp64)):
        y, (h_n, c_n), cache = ref.lstm_forward(*args, peepholes=pp)
        out[key] = dict(ref.lstm_backward(dy, None, dc, cache), y=y, h_n=h_n, c_n=c_n)
    for k in out["64"]:
        assert_tracks(out["32"][k], out["64"][k], name=k)


@SETTINGS
@given(T=dims, B=dims, I=dims, H=dims, seed=seeds)
def test_gru_float32_tracks_float64(T, B, I, H, seed):
    rng = np.random.default_rng(seed)
    a32 = gru_inputs(rng, T, B, I, H, dtype=np.float32)
    a64 = tuple(a.astype(np.float64) for a in a32)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    dh = rng.standard_normal((B, H)).astype(np.float32)
    out = {}
    for key, args in (("32", a32), ("64", a64)):
        y, h_n, cache = ref.gru_forward(*args)
        out[key] = dict(ref.gru_backward(dy, dh, cache), y=y, h_n=h_n)
    for k in out["64"]:
        assert_tracks(out["32"][k], out["64"][k], name=k)


# --------------------------------------------------------------------------- stability

def test_sigmoid_and_softmax_are_stable_at_extremes():
    z = np.array([[-1000.0, -30.0, 0.0, 30.0, 1000.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")               # any overflow warning fails the test
        for dt in (np.float32, np.float64):
            s = ref.activation_forward(z.astype(dt), "sigmoid")
            assert s.dtype == dt and np.all(np.isfinite(s))
            np.testing.assert_allclose(s[0, [0, 2, 4]], [0.0, 0.5, 1.0])
            p = ref.activation_forward(z.astype(dt), "softmax")
            assert p.dtype == dt and np.all(np.isfinite(p))
            np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-6)
            assert p[0, -1] == pytest.approx(1.0)


def test_cross_entropy_is_finite_for_huge_logits():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for target in (np.array([1, 1]), np.eye(3)[[1, 1]]):
            loss, d = ref.softmax_cross_entropy(logits, target)
            assert np.isfinite(loss) and np.all(np.isfinite(d))
            # row 0 is wrong by 2e4 nats, row 1 right: mean loss = 2e4 / 2
            assert loss == pytest.approx(1e4)
            np.testing.assert_allclose(d, [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-12)


def test_relu_derivative_is_zero_at_zero():
    z = np.array([-1.0, 0.0, 2.0])
    a = ref.activation_forward(z, "relu")
    np.testing.assert_array_equal(ref.activation_backward(np.ones(3), a, "relu"), [0, 0, 1])


def test_softmax_backward_is_the_jacobian_product():
    rng = np.random.default_rng(0)
    z, da = rng.standard_normal(5), rng.standard_normal(5)
    s = ref.activation_forward(z, "softmax")
    J = np.diag(s) - np.outer(s, s)                  # ds_j/dz_i = delta_ij s_i - s_i s_j
    np.testing.assert_allclose(ref.activation_backward(da, s, "softmax"), J @ da, rtol=1e-13)


def test_losses_are_means_over_rows():
    rng = np.random.default_rng(1)
    pred, y = rng.standard_normal((3, 4, 2)), rng.standard_normal((3, 4, 2))
    loss, _ = ref.squared_error(pred, y)
    assert loss == pytest.approx(np.sum((y - pred) ** 2) / 12)
    loss, _ = ref.squared_error(pred, y, form="half_mean")
    assert loss == pytest.approx(np.mean((y - pred) ** 2) / 2)
    logits, labels = rng.standard_normal((3, 4, 5)), rng.integers(0, 5, (3, 4))
    loss, _ = ref.softmax_cross_entropy(logits, labels)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(np.take_along_axis(p, labels[..., None], -1))))
    v, gs = ref.l2_penalty([np.ones((2, 3)), 2 * np.ones(4)], 0.5)
    assert v == pytest.approx(0.25 * (6 + 16))
    np.testing.assert_array_equal(gs[1], np.ones(4))


# --------------------------------------------------------------------------- validation

def test_validation_errors():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="activation"):
        ref.activation_forward(x, "gelu")
    with pytest.raises(ValueError, match="activation"):
        ref.activation_backward(x, x, "swish")
    with pytest.raises(ValueError, match="form"):
        ref.squared_error(x, x, form="mean")
    with pytest.raises(ValueError, match="shape"):
        ref.squared_error(x, np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        ref.softmax_cross_entropy(x, np.array([0, 3]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        ref.softmax_cross_entropy(x, np.array([-1, 0]))
    with pytest.raises(ValueError, match="target"):
        ref.softmax_cross_entropy(x, np.zeros((2, 4)))
    params = [(np.zeros((4, 3)), np.zeros(4))]
    with pytest.raises(ValueError, match="softmax"):
        ref.mlp_loss_and_grad(x, np.array([0, 1]), params, ["sigmoid"])
    with pytest.raises(ValueError, match="loss"):
        ref.mlp_loss_and_grad(x, np.zeros((2, 4)), params, ["sigmoid"], loss="hinge")
    with pytest.raises(ValueError, match="activation"):
        ref.mlp_forward(x, params, ["swish"])
    with pytest.raises(ValueError, match="W of layer 1"):
        ref.mlp_forward(x, [(np.zeros((4, 2)), np.zeros(4))], ["tanh"])
    with pytest.raises(ValueError, match="activations"):
        ref.mlp_forward(x, params, ["tanh", "tanh"])
    xs, h0 = np.zeros((2, 3, 4)), np.zeros((3, 5))
    W_ih, W_hh, b = np.zeros((5, 4)), np.zeros((5, 5)), np.zeros(5)
    with pytest.raises(ValueError, match="nonlinearity"):
        ref.rnn_forward(xs, h0, W_ih, W_hh, b, b, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="weight_ih"):
        ref.rnn_forward(xs, h0, np.zeros((5, 3)), W_hh, b, b)
    with pytest.raises(ValueError, match="h0"):
        ref.rnn_forward(xs, np.zeros((2, 5)), W_ih, W_hh, b, b)
    b4 = np.zeros(20)
    with pytest.raises(ValueError, match="weight_hh"):
        ref.lstm_forward(xs, None, None, np.zeros((20, 4)), np.zeros((20, 4)), b4, b4)
    with pytest.raises(ValueError, match="peephole"):
        ref.lstm_forward(xs, None, None, np.zeros((20, 4)), np.zeros((20, 5)), b4, b4,
                         peepholes=(np.zeros(5), np.zeros(5), np.zeros(4)))
