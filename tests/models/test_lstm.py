"""Compiled LSTM (fastbp.lstm) against the NumPy reference, finite differences,
itself across dtypes and BLAS thread counts, and bad inputs."""
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastbp import _recurrent
from fastbp import reference as ref
from fastbp.gradcheck import gradcheck
from fastbp.lstm import LSTM, LSTMCache, lstm_backward, lstm_forward

GRAD_NAMES = ("x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh")
PEEP_NAMES = ("peephole_i", "peephole_f", "peephole_o")


def make(T, B, I, H, peep=False, seed=0, dtype=np.float64, states=True):
    rng = np.random.default_rng(seed)
    p = {"x": rng.standard_normal((T, B, I)),
         "h0": rng.standard_normal((B, H)) if states else None,
         "c0": rng.standard_normal((B, H)) if states else None,
         "weight_ih": rng.standard_normal((4 * H, I)) * 0.6,
         "weight_hh": rng.standard_normal((4 * H, H)) * 0.6,
         "bias_ih": rng.standard_normal(4 * H) * 0.5,
         "bias_hh": rng.standard_normal(4 * H) * 0.5,
         "peepholes": tuple(rng.standard_normal(H) for _ in range(3)) if peep else None}
    for k, v in p.items():
        if isinstance(v, np.ndarray):
            p[k] = v.astype(dtype)
        elif isinstance(v, tuple):
            p[k] = tuple(a.astype(dtype) for a in v)
    upstream = {"dy": rng.standard_normal((T, B, H)).astype(dtype),
                "dh_n": rng.standard_normal((B, H)).astype(dtype),
                "dc_n": rng.standard_normal((B, H)).astype(dtype)}
    return p, upstream


# The per-step recurrent products run through fastbp's packed kernel or
# through BLAS (GEMV at batch 1) by a size rule (fastbp._recurrent.pack_workspace):
# test both at every size.
RECURRENT_PATHS = ("packed", "blas")


@pytest.fixture(params=RECURRENT_PATHS)
def recurrent_path(request, monkeypatch):
    monkeypatch.setattr(_recurrent, "FORCE_PRODUCTS", request.param)
    return request.param


def args(p):
    return (p["x"], p["h0"], p["c0"], p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"])


def close(a, b, rtol=1e-10, atol=1e-12):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def check_against_reference(p, up, rtol=1e-10, atol=1e-12):
    y, (h_n, c_n), cache = lstm_forward(*args(p), peepholes=p["peepholes"])
    y_r, (h_r, c_r), cache_r = ref.lstm_forward(*args(p), peepholes=p["peepholes"])
    close(y, y_r, rtol, atol)
    close(h_n, h_r, rtol, atol)
    close(c_n, c_r, rtol, atol)
    close(cache.c, cache_r["c"], rtol, atol)
    close(cache.gates, cache_r["gates"], rtol, atol)
    close(cache.tanh_c, cache_r["tanh_c"], rtol, atol)
    g = lstm_backward(up["dy"], up["dh_n"], up["dc_n"], cache)
    g_r = ref.lstm_backward(up["dy"], up["dh_n"], up["dc_n"], cache_r)
    assert set(g) == set(g_r)
    for name in g_r:
        assert g[name].dtype == y.dtype and g[name].shape == g_r[name].shape, name
        close(g[name], g_r[name], rtol, atol)
    return g


# ---- compiled == reference (float64) --------------------------------------------

@pytest.mark.parametrize("peep", [False, True])
@pytest.mark.parametrize("T,B,I,H", [(7, 3, 5, 4), (5, 1, 4, 6), (1, 2, 3, 2), (6, 5, 2, 9)])
def test_matches_reference_float64(T, B, I, H, peep, recurrent_path):
    p, up = make(T, B, I, H, peep, seed=T * 100 + B)
    check_against_reference(p, up)


@pytest.mark.parametrize("peep", [False, True])
def test_optional_upstream_gradients_and_states(peep):
    p, up = make(6, 3, 4, 5, peep, states=False)
    for dy, dh_n, dc_n in [(None, up["dh_n"], None), (up["dy"], None, None), (None, None, up["dc_n"]),
                           (None, None, None)]:
        _, _, cache = lstm_forward(*args(p), peepholes=p["peepholes"])
        _, _, cache_r = ref.lstm_forward(*args(p), peepholes=p["peepholes"])
        g = lstm_backward(dy, dh_n, dc_n, cache)
        g_r = ref.lstm_backward(dy, dh_n, dc_n, cache_r)
        for name in g_r:
            close(g[name], g_r[name])


def test_cache_exposes_states_and_gates():
    p, _ = make(5, 2, 3, 4, peep=True)
    y, (h_n, c_n), cache = lstm_forward(*args(p), peepholes=p["peepholes"])
    H = 4
    i, f, g, o = (cache.gates[..., k * H:(k + 1) * H] for k in range(4))
    c_prev = np.concatenate([p["c0"][None], cache.c[:-1]])
    close(cache.c, f * c_prev + i * g, 1e-14, 1e-14)          # c_t = f c_{t-1} + i g
    close(y, o * np.tanh(cache.c), 1e-14, 1e-14)              # h_t = o tanh(c_t)
    np.testing.assert_array_equal(cache.h0, p["h0"])
    np.testing.assert_array_equal(cache.c0, p["c0"])
    np.testing.assert_array_equal(cache.y, y)
    np.testing.assert_array_equal(c_n, cache.c[-1])
    np.testing.assert_array_equal(h_n, y[-1])
    assert isinstance(cache, LSTMCache) and "T=5" in repr(cache)


def test_empty_sequence_passes_states_through():
    p, up = make(0, 3, 4, 2)
    y, (h_n, c_n), cache = lstm_forward(*args(p))
    assert y.shape == (0, 3, 2) and cache.gates.shape == (0, 3, 8)
    np.testing.assert_array_equal(h_n, p["h0"])
    np.testing.assert_array_equal(c_n, p["c0"])
    g = lstm_backward(up["dy"], up["dh_n"], up["dc_n"], cache)
    np.testing.assert_array_equal(g["h0"], up["dh_n"])
    np.testing.assert_array_equal(g["c0"], up["dc_n"])
    assert g["x"].shape == (0, 3, 4) and not g["weight_hh"].any()


def test_no_inputs_is_a_pure_recurrence():
    p, up = make(4, 2, 0, 3, peep=True)
    check_against_reference(p, up)


# ---- finite differences --------------------------------------------------------------

@pytest.mark.parametrize("peep", [False, True])
def test_gradients_match_finite_differences(peep):
    p, up = make(5, 2, 3, 4, peep, seed=11)
    params = {k: v for k, v in p.items() if isinstance(v, np.ndarray)}
    if peep:
        params.update(zip(PEEP_NAMES, (a.copy() for a in p["peepholes"])))

    def loss_and_grads():
        peeps = tuple(params[k] for k in PEEP_NAMES) if peep else None
        y, (h_n, c_n), cache = lstm_forward(params["x"], params["h0"], params["c0"], params["weight_ih"],
                                            params["weight_hh"], params["bias_ih"], params["bias_hh"],
                                            peepholes=peeps)
        loss = np.sum(y * up["dy"]) + np.sum(h_n * up["dh_n"]) + np.sum(c_n * up["dc_n"])
        return loss, lstm_backward(up["dy"], up["dh_n"], up["dc_n"], cache)

    _, grads = loss_and_grads()
    report = gradcheck(lambda: loss_and_grads()[0], params, {k: grads[k] for k in params})
    assert report.ok(1e-6), str(report)


# ---- float32 ------------------------------------------------------------------------

@pytest.mark.parametrize("peep", [False, True])
@pytest.mark.parametrize("B", [1, 4])
def test_float32_tracks_float64(B, peep, recurrent_path):
    p64, up64 = make(8, B, 5, 16, peep, seed=3)
    p32, up32 = make(8, B, 5, 16, peep, seed=3, dtype=np.float32)
    y64, _, c64 = lstm_forward(*args(p64), peepholes=p64["peepholes"])
    y32, _, c32 = lstm_forward(*args(p32), peepholes=p32["peepholes"])
    assert y32.dtype == np.float32 and c32.gates.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=2e-5)
    g64 = lstm_backward(up64["dy"], up64["dh_n"], up64["dc_n"], c64)
    g32 = lstm_backward(up32["dy"], up32["dh_n"], up32["dc_n"], c32)
    for name in g64:
        assert g32[name].dtype == np.float32
        scale = np.abs(g64[name]).max()
        np.testing.assert_allclose(g32[name], g64[name], rtol=1e-4, atol=3e-5 * scale, err_msg=name)


def test_float32_against_reference_in_float32():
    p, up = make(6, 3, 4, 32, peep=True, seed=5, dtype=np.float32)
    check_against_reference(p, up, rtol=2e-5, atol=2e-5)


def test_saturated_gates_stay_finite():
    p, up = make(4, 2, 3, 5, peep=True, seed=9)
    p["x"] = p["x"] * 1e3            # pre-activations of order 1e3: σ and tanh saturate
    for dtype in (np.float64, np.float32):
        q = {k: (v.astype(dtype) if isinstance(v, np.ndarray) else tuple(a.astype(dtype) for a in v))
             for k, v in p.items()}
        y, _, cache = lstm_forward(*args(q), peepholes=q["peepholes"])
        g = lstm_backward(up["dy"], up["dh_n"], up["dc_n"], cache)
        assert np.isfinite(y).all() and all(np.isfinite(v).all() for v in g.values())
    check_against_reference(p, up)


# ---- hypothesis over shapes ------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(T=st.integers(0, 5), B=st.integers(0, 8), I=st.integers(0, 5), H=st.integers(1, 19),
       peep=st.booleans(), states=st.booleans(), path=st.sampled_from(RECURRENT_PATHS),
       seed=st.integers(0, 2**16))
def test_hypothesis_shapes_match_reference(T, B, I, H, peep, states, path, seed):
    p, up = make(T, B, I, H, peep, seed=seed, states=states)
    saved = _recurrent.FORCE_PRODUCTS
    _recurrent.FORCE_PRODUCTS = path
    try:
        check_against_reference(p, up)
    finally:
        _recurrent.FORCE_PRODUCTS = saved


# ---- cache reuse --------------------------------------------------------------------

def test_overwrite_cache_gives_the_same_gradients_and_consumes_the_cache():
    p, up = make(5, 3, 4, 6, peep=True)
    _, _, cache = lstm_forward(*args(p), peepholes=p["peepholes"])
    gates = cache.gates.copy()
    g_keep = lstm_backward(up["dy"], up["dh_n"], up["dc_n"], cache)
    np.testing.assert_array_equal(cache.gates, gates)      # the default leaves the cache intact
    g_again = lstm_backward(up["dy"], up["dh_n"], up["dc_n"], cache)
    g_over = lstm_backward(up["dy"], up["dh_n"], up["dc_n"], cache, overwrite_cache=True)
    for name in g_keep:
        np.testing.assert_array_equal(g_again[name], g_keep[name])
        np.testing.assert_array_equal(g_over[name], g_keep[name])
    assert cache.consumed
    with pytest.raises(RuntimeError, match="consumed"):
        cache.gates
    with pytest.raises(RuntimeError, match="consumed"):
        lstm_backward(up["dy"], None, None, cache)


def test_inputs_are_not_modified():
    p, up = make(4, 2, 3, 5, peep=True)
    before = {k: (v.copy() if isinstance(v, np.ndarray) else tuple(a.copy() for a in v))
              for k, v in {**p, **up}.items()}
    _, _, cache = lstm_forward(*args(p), peepholes=p["peepholes"])
    lstm_backward(up["dy"], up["dh_n"], up["dc_n"], cache, overwrite_cache=True)
    for k, v in {**p, **up}.items():
        for a, b in zip(v if isinstance(v, tuple) else (v,),
                        before[k] if isinstance(v, tuple) else (before[k],)):
            np.testing.assert_array_equal(a, b, err_msg=k)


# ---- layouts and dtypes at the boundary -----------------------------------------------

def test_non_contiguous_and_read_only_inputs():
    p, up = make(6, 3, 4, 5, peep=True)
    expected = check_against_reference(p, up)
    big = np.zeros((12, 3, 8))
    big[::2, :, ::2] = p["x"]
    q = dict(p)
    q["x"] = big[::2, :, ::2]                                  # strided view
    q["weight_ih"] = np.asfortranarray(p["weight_ih"])
    q["weight_hh"] = p["weight_hh"].copy()
    q["weight_hh"].setflags(write=False)                       # read-only
    q["h0"] = p["h0"].copy()
    q["h0"].setflags(write=False)
    dy = np.asfortranarray(up["dy"])
    dh_n = up["dh_n"].copy()
    dh_n.setflags(write=False)
    _, _, cache = lstm_forward(*args(q), peepholes=q["peepholes"])
    g = lstm_backward(dy, dh_n, up["dc_n"], cache)
    for name in expected:
        np.testing.assert_array_equal(g[name], expected[name])


def test_dtype_follows_x():
    p, up = make(3, 2, 3, 4)
    q = dict(p, x=p["x"].astype(np.float32))                   # float64 weights, float32 x
    y, (h_n, c_n), cache = lstm_forward(*args(q))
    assert y.dtype == h_n.dtype == c_n.dtype == cache.weight_hh.dtype == np.float32
    g = lstm_backward(up["dy"], None, None, cache)             # float64 dy converted
    assert all(v.dtype == np.float32 for v in g.values())
    y_int, _, _ = lstm_forward(np.ones((2, 1, 3), dtype=np.int64), None, None, *args(p)[3:])
    assert y_int.dtype == np.float64


# ---- determinism ------------------------------------------------------------------

def test_results_do_not_depend_on_blas_threads(recurrent_path):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    results = []
    for B in (1, 24):
        p, up = make(6, B, 40, 64, peep=True, seed=B)   # big enough that OpenBLAS threads
        for threads in (1, 2):
            with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
                y, _, cache = lstm_forward(*args(p), peepholes=p["peepholes"])
                g = lstm_backward(up["dy"], up["dh_n"], up["dc_n"], cache)
            results.append((y, g))
        (y1, g1), (y2, g2) = results[-2:]
        np.testing.assert_array_equal(y1, y2)
        for name in g1:
            np.testing.assert_array_equal(g1[name], g2[name], err_msg=f"B={B} {name}")


def test_repeated_calls_are_bitwise_identical():
    p, up = make(5, 4, 6, 8, peep=True, dtype=np.float32)
    outs = []
    for _ in range(2):
        y, _, cache = lstm_forward(*args(p), peepholes=p["peepholes"])
        outs.append((y, lstm_backward(up["dy"], up["dh_n"], up["dc_n"], cache)))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    for name in outs[0][1]:
        np.testing.assert_array_equal(outs[0][1][name], outs[1][1][name])


# ---- bad inputs -------------------------------------------------------------------

def _call_forward(**changes):
    p, _ = make(3, 2, 4, 5, peep=True)
    p.update(changes)
    return lstm_forward(*args(p), peepholes=p["peepholes"])


@pytest.mark.parametrize("changes,exc,match", [
    ({"x": np.zeros((3, 4))}, ValueError, "x"),
    ({"x": np.zeros((3, 2, 4), dtype=complex)}, TypeError, "x"),
    ({"x": np.full((3, 2, 4), np.nan)}, ValueError, "x"),
    ({"weight_ih": np.zeros((20, 3))}, ValueError, "weight_ih"),
    ({"weight_hh": np.zeros((20, 4))}, ValueError, "weight_hh"),
    ({"weight_hh": np.zeros((0, 0))}, ValueError, "weight_hh"),
    ({"bias_ih": np.zeros(19)}, ValueError, "bias_ih"),
    ({"bias_hh": np.zeros((4, 5))}, ValueError, "bias_hh"),
    ({"h0": np.zeros((3, 5))}, ValueError, "h0"),
    ({"c0": np.zeros((2, 4))}, ValueError, "c0"),
    ({"peepholes": (np.zeros(5), np.zeros(5))}, TypeError, "peepholes"),
    ({"peepholes": np.zeros((3, 5))}, TypeError, "peepholes"),
    ({"peepholes": (np.zeros(5), np.zeros(4), np.zeros(5))}, ValueError, "p_f"),
])
def test_bad_forward_inputs_name_the_argument(changes, exc, match):
    with pytest.raises(exc, match=match):
        _call_forward(**changes)


def test_bad_backward_inputs_name_the_argument():
    p, up = make(3, 2, 4, 5)
    _, _, cache = lstm_forward(*args(p))
    with pytest.raises(ValueError, match="dy"):
        lstm_backward(np.zeros((3, 2, 4)), None, None, cache)
    with pytest.raises(ValueError, match="dh_n"):
        lstm_backward(None, np.zeros((2, 4)), None, cache)
    with pytest.raises(ValueError, match="dc_n"):
        lstm_backward(None, None, np.zeros(5), cache)
    with pytest.raises(TypeError, match="dy"):
        lstm_backward(np.zeros((3, 2, 5), dtype=complex), None, None, cache)


def test_backward_rejects_foreign_caches():
    p, up = make(3, 2, 4, 5)
    _, _, ref_cache = ref.lstm_forward(*args(p))
    with pytest.raises(TypeError, match="reference"):
        lstm_backward(up["dy"], None, None, ref_cache)
    # an RNN-like cache object (same kind of attributes, another class)
    rnn_like = types.SimpleNamespace(x=p["x"], hs=np.zeros((4, 2, 5)), weight_ih=np.zeros((5, 4)),
                                     weight_hh=np.zeros((5, 5)))
    with pytest.raises(TypeError, match="LSTMCache"):
        lstm_backward(up["dy"], None, None, rnn_like)
    try:
        from fastbp import rnn
    except ImportError:
        return
    _, _, rnn_cache = rnn.rnn_forward(p["x"], None, np.zeros((5, 4)), np.zeros((5, 5)),
                                      np.zeros(5), np.zeros(5))
    with pytest.raises(TypeError, match="LSTMCache"):
        lstm_backward(up["dy"], None, None, rnn_cache)


# ---- the model ------------------------------------------------------------------

def _model_data(rng, T, B, I, O, loss, many_to_one):
    X = rng.standard_normal((T, B, I))
    lead = (B,) if many_to_one else (T, B)
    Y = rng.standard_normal(lead + (O,)) if loss == "mse" else rng.integers(0, O, lead)
    return X, Y


@pytest.mark.parametrize("peepholes", [False, True])
@pytest.mark.parametrize("loss,many_to_one,l2", [("mse", False, 0.0), ("cross_entropy", False, 0.1),
                                                 ("cross_entropy", True, 0.0), ("mse", True, 0.05)])
def test_model_gradcheck(peepholes, loss, many_to_one, l2):
    rng = np.random.default_rng(4)
    m = LSTM(3, 4, 5, peepholes=peepholes, loss=loss, many_to_one=many_to_one, l2=l2,
             dtype="float64", seed=1)
    X, Y = _model_data(rng, 5, 2, 3, 5, loss, many_to_one)
    h0, c0 = rng.standard_normal((2, 2, 4))
    loss_value, grads, _ = m.loss_and_grad(X, Y, h0, c0)
    assert list(grads) == list(m.params)
    assert {"peephole_i", "peephole_f", "peephole_o"} <= set(m.params) if peepholes else True
    report = gradcheck(lambda: m.loss_and_grad(X, Y, h0, c0)[0], m.params, grads)
    assert report.ok(1e-6), str(report)


def test_model_matches_reference_layer():
    """The model's layer gradients equal the reference's for dy = dL/dh_t."""
    rng = np.random.default_rng(5)
    m = LSTM(3, 4, 2, peepholes=True, loss="mse", dtype="float64", seed=2)
    X, Y = _model_data(rng, 6, 3, 3, 2, "mse", False)
    loss, grads, (h_n, c_n) = m.loss_and_grad(X, Y)
    p = m.params
    peeps = tuple(p[k] for k in PEEP_NAMES)
    y, (h_r, c_r), cache = ref.lstm_forward(X, None, None, p["weight_ih"], p["weight_hh"],
                                            p["bias_ih"], p["bias_hh"], peeps)
    out = y @ p["weight_out"].T + p["bias_out"]
    close(loss, ((out - Y) ** 2).sum(-1).mean())
    dy = (2 * (out - Y) / (6 * 3)) @ p["weight_out"]
    g_r = ref.lstm_backward(dy, None, None, cache)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") + PEEP_NAMES:
        close(grads[name], g_r[name])
    close(h_n, h_r)
    close(c_n, c_r)


def test_model_chunks_carry_state():
    """Two chunks with the state carried equal one long forward pass."""
    rng = np.random.default_rng(6)
    m = LSTM(3, 5, 2, loss="mse", dtype="float64", seed=3)
    X, Y = _model_data(rng, 8, 2, 3, 2, "mse", False)
    out_full, (h_full, c_full) = m.forward(X)
    l1, _, state = m.loss_and_grad(X[:5], Y[:5])
    l2_, _, (h_n, c_n) = m.loss_and_grad(X[5:], Y[5:], *state)
    out2, _ = m.forward(X[5:], *state)
    close(out2, out_full[5:])
    close(h_n, h_full)
    close(c_n, c_full)
    close((5 * l1 + 3 * l2_) / 8, ((out_full - Y) ** 2).sum(-1).mean())


def test_model_float32_tracks_float64():
    rng = np.random.default_rng(7)
    X, Y = _model_data(rng, 6, 4, 3, 3, "cross_entropy", False)
    m64 = LSTM(3, 8, 3, peepholes=True, loss="cross_entropy", dtype="float64", seed=4)
    m32 = LSTM(3, 8, 3, peepholes=True, loss="cross_entropy", dtype="float32", seed=4)
    l64, g64, _ = m64.loss_and_grad(X, Y)
    l32, g32, _ = m32.loss_and_grad(X, Y)
    assert all(g.dtype == np.float32 for g in g32.values())
    np.testing.assert_allclose(l32, l64, rtol=1e-5)
    for name in g64:
        np.testing.assert_allclose(g32[name], g64[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_model_init_forget_bias_and_predict():
    m = LSTM(3, 4, 6, loss="cross_entropy", seed=0)
    b = m.params["bias_ih"] + m.params["bias_hh"]
    np.testing.assert_array_equal(b[4:8], 1.0)                       # forget gate block
    assert np.all(np.abs(m.params["weight_hh"]) <= 0.5)               # U(−1/√H, 1/√H)
    m_torch_init = LSTM(3, 4, 6, forget_bias=None, seed=0)
    assert not np.all(m_torch_init.params["bias_ih"][4:8] == 1.0)
    X = np.random.default_rng(0).standard_normal((5, 2, 3))
    labels = m.predict(X)
    assert labels.shape == (5, 2) and labels.dtype.kind == "i"
    out, (h_n, c_n) = m.forward(X)
    np.testing.assert_array_equal(labels, out.argmax(-1))
    assert h_n.shape == c_n.shape == (2, 4)


def test_model_bad_arguments():
    with pytest.raises(ValueError, match="forget_bias"):
        LSTM(3, 4, 2, forget_bias=float("nan"))
    with pytest.raises(ValueError, match="hidden_size"):
        LSTM(3, 0, 2)
    m = LSTM(3, 4, 2, loss="mse", seed=0)
    X = np.zeros((5, 2, 3))
    with pytest.raises(ValueError, match="X"):
        m.loss_and_grad(np.zeros((5, 2, 4)), np.zeros((5, 2, 2)))
    with pytest.raises(ValueError, match="Y"):
        m.loss_and_grad(X, np.zeros((5, 2, 3)))
    with pytest.raises(ValueError, match="c0"):
        m.loss_and_grad(X, np.zeros((5, 2, 2)), None, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="h0"):
        m.forward(X, np.zeros((2, 5)))
