"""fastbp.mlp.MLP on the compiled path == the NumPy reference == finite differences.

docs/equations.md §1–4. float64 results must match fastbp.reference to ~1e-10
relative; float32 must track float64 to float32 precision.
"""
import copy
import pickle
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastbp import reference
from fastbp.gradcheck import gradcheck
from fastbp.mlp import MLP

ACTS = ("identity", "sigmoid", "tanh", "relu", "softmax")
RTOL, ATOL = 1e-10, 1e-12


def make_data(net, batch, seed=0, target="labels"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, net.sizes[0]))
    n_out = net.sizes[-1]
    if target == "labels":
        y = rng.integers(0, n_out, size=batch)
    elif target == "onehot":
        y = np.eye(n_out)[rng.integers(0, n_out, size=batch)]
    elif target == "probs":
        y = rng.random((batch, n_out))
        y /= y.sum(axis=1, keepdims=True)
    else:
        y = rng.standard_normal((batch, n_out))
    return X, y


def randomize_biases(net, seed=1):
    """Zero biases would hide a bias bug: give every layer a random one."""
    rng = np.random.default_rng(seed)
    net.params = [(W, rng.standard_normal(b.shape) * 0.3) for W, b in net.params]


def reference_loss_and_grad(net, X, y):
    return reference.mlp_loss_and_grad(X, y, net.params, list(net.activations), loss=net.loss,
                                       l2=net.l2, mse_form=net.mse_form)


def assert_grads_close(grads, expected, rtol=RTOL, atol=ATOL):
    assert len(grads) == len(expected)
    for l, ((dW, db), (eW, eb)) in enumerate(zip(grads, expected)):
        np.testing.assert_allclose(dW, eW, rtol=rtol, atol=atol, err_msg=f"dW of layer {l}")
        np.testing.assert_allclose(db, eb, rtol=rtol, atol=atol, err_msg=f"db of layer {l}")


# ---- compiled == reference (float64) ------------------------------------------

CONFIGS = [
    # sizes, hidden activation(s), output, loss, target kind
    ([5, 7, 3], "relu", "softmax", "cross_entropy", "labels"),
    ([5, 7, 3], "tanh", "softmax", "cross_entropy", "onehot"),
    ([5, 7, 3], "sigmoid", "softmax", "cross_entropy", "probs"),
    ([5, 7, 3], "softmax", "softmax", "mse", "regression"),     # seed 004: softmax + squared error
    ([5, 7, 3], "identity", "identity", "mse", "regression"),
    ([5, 7, 3], "relu", "tanh", "mse", "regression"),
    ([5, 7, 3], "tanh", "sigmoid", "mse", "regression"),
    ([5, 7, 3], "sigmoid", "relu", "mse", "regression"),
    ([4, 3], "relu", "softmax", "cross_entropy", "labels"),     # one layer, no hidden
    ([4, 3], "relu", "identity", "mse", "regression"),
    ([6, 5, 4, 3, 2], ["relu", "tanh", "softmax"], "softmax", "cross_entropy", "labels"),
    ([6, 5, 4, 3, 2], ["sigmoid", "identity", "relu"], "tanh", "mse", "regression"),
]


@pytest.mark.parametrize("sizes,activation,output,loss,target", CONFIGS)
@pytest.mark.parametrize("batch", [1, 2, 7, 13, 150])   # the batch-1, small, transposed-GEMM and GEMM paths
@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_loss_and_grad_matches_reference(sizes, activation, output, loss, target, batch, l2):
    net = MLP(sizes, activation=activation, output=output, loss=loss, l2=l2, dtype="float64", seed=3)
    randomize_biases(net)
    X, y = make_data(net, batch, target=target)
    value, grads = net.loss_and_grad(X, y)
    ref_value, ref_grads = reference_loss_and_grad(net, X, y)
    assert isinstance(value, float)
    np.testing.assert_allclose(value, ref_value, rtol=RTOL, atol=ATOL)
    assert_grads_close(grads, ref_grads)
    for (dW, db), (W, b) in zip(grads, net.params):
        assert dW.shape == W.shape and db.shape == b.shape
        assert dW.dtype == np.float64 and db.dtype == np.float64
        assert dW.flags.c_contiguous and db.flags.c_contiguous


@pytest.mark.parametrize("mse_form", ["sum", "half_mean"])
@pytest.mark.parametrize("output", ["identity", "softmax", "sigmoid"])
def test_mse_forms_match_reference(mse_form, output):
    net = MLP([5, 7, 3], activation="tanh", output=output, loss="mse", mse_form=mse_form,
              dtype="float64", seed=2)
    randomize_biases(net)
    X, y = make_data(net, 6, target="regression")
    value, grads = net.loss_and_grad(X, y)
    ref_value, ref_grads = reference_loss_and_grad(net, X, y)
    np.testing.assert_allclose(value, ref_value, rtol=RTOL, atol=ATOL)
    assert_grads_close(grads, ref_grads)


def test_half_mean_is_half_the_mean_and_sum_is_row_sum():
    net = MLP([3, 2], output="identity", loss="mse", dtype="float64", seed=0)
    X, y = make_data(net, 4, target="regression")
    err = net.forward(X) - y
    assert net.loss_and_grad(X, y)[0] == pytest.approx((err ** 2).sum(axis=1).mean(), rel=1e-12)
    net.mse_form = "half_mean"
    assert net.loss_and_grad(X, y)[0] == pytest.approx(0.5 * (err ** 2).mean(), rel=1e-12)


@pytest.mark.parametrize("sizes,activation,output,loss,target", CONFIGS)
@pytest.mark.parametrize("batch", [1, 7, 13])
def test_forward_and_predict_match_reference(sizes, activation, output, loss, target, batch):
    net = MLP(sizes, activation=activation, output=output, loss=loss, dtype="float64", seed=4)
    randomize_biases(net)
    X, _ = make_data(net, batch, target=target)
    out = net.forward(X)
    ref_out, _ = reference.mlp_forward(X, net.params, list(net.activations))
    np.testing.assert_allclose(out, ref_out, rtol=RTOL, atol=ATOL)
    pred = net.predict(X)
    if loss == "cross_entropy":
        assert pred.shape == (batch,) and pred.dtype.kind == "i"
        np.testing.assert_array_equal(pred, np.argmax(ref_out, axis=1))
    else:
        np.testing.assert_allclose(pred, ref_out, rtol=RTOL, atol=ATOL)


def test_forward_large_batch_runs_in_blocks():
    """forward() splits batches over 1024 rows into blocks: the seams must not show."""
    net = MLP([6, 5, 4], activation="tanh", dtype="float64", seed=5)
    randomize_biases(net)
    X, _ = make_data(net, 2500)
    ref_out, _ = reference.mlp_forward(X, net.params, list(net.activations))
    np.testing.assert_allclose(net.forward(X), ref_out, rtol=RTOL, atol=ATOL)


def test_forward_empty_batch():
    net = MLP([4, 3, 2], dtype="float64")
    assert net.forward(np.empty((0, 4))).shape == (0, 2)
    assert net.predict(np.empty((0, 4))).shape == (0,)


def test_integer_labels_and_onehot_agree():
    net = MLP([5, 7, 3], activation="relu", dtype="float64", seed=6)
    X, labels = make_data(net, 5)
    v1, g1 = net.loss_and_grad(X, labels)
    v2, g2 = net.loss_and_grad(X, np.eye(3)[labels])
    v3, g3 = net.loss_and_grad(X, labels.astype(np.int32))
    v4, g4 = net.loss_and_grad(X, np.eye(3, dtype=np.int8)[labels])   # integer one-hot rows
    assert v1 == pytest.approx(v2, rel=1e-13) and v1 == v3
    assert_grads_close(g1, g2, rtol=1e-12, atol=1e-15)
    assert_grads_close(g1, g3, rtol=0, atol=0)
    assert v4 == v2
    assert_grads_close(g4, g2, rtol=0, atol=0)


def test_extreme_logits_stay_finite():
    net = MLP([3, 4], activation="relu", output="softmax", dtype="float64")
    net.params = [(np.full((4, 3), 300.0), np.array([0.0, 1e4, -1e4, 5.0]))]
    X = np.array([[10.0, -3.0, 2.0], [1.0, 1.0, 1.0]])
    value, grads = net.loss_and_grad(X, np.array([2, 1]))
    ref_value, ref_grads = reference_loss_and_grad(net, X, np.array([2, 1]))
    assert np.isfinite(value) and value == pytest.approx(ref_value, rel=1e-12)
    assert_grads_close(grads, ref_grads)


# ---- gradient check --------------------------------------------------------------

@pytest.mark.parametrize("activation,output,loss,target", [
    ("relu", "softmax", "cross_entropy", "labels"),
    (["tanh", "softmax"], "softmax", "cross_entropy", "probs"),
    (["sigmoid", "identity"], "softmax", "mse", "regression"),
    (["tanh", "relu"], "sigmoid", "mse", "regression"),
])
@pytest.mark.parametrize("batch", [1, 5, 12])
def test_gradcheck(activation, output, loss, target, batch):
    net = MLP([5, 7, 6, 3], activation=activation, output=output, loss=loss, l2=0.05,
              dtype="float64", seed=7)
    randomize_biases(net)
    X, y = make_data(net, batch, target=target)
    if "relu" in activation:
        X = X + 0.05   # no pre-activation within eps of relu's kink for this seed
    _, grads = net.loss_and_grad(X, y)
    flat_params = [a for pair in net.params for a in pair]   # the model's live arrays
    flat_grads = [a for pair in grads for a in pair]
    report = gradcheck(lambda: net.loss_and_grad(X, y)[0], flat_params, flat_grads)
    assert report.ok(1e-6), str(report)


# ---- float32 ------------------------------------------------------------------------

@pytest.mark.parametrize("sizes,activation,output,loss,target", CONFIGS)
@pytest.mark.parametrize("batch", [1, 7, 20])
def test_float32_tracks_float64(sizes, activation, output, loss, target, batch):
    kw = dict(activation=activation, output=output, loss=loss, l2=0.1, seed=8)
    net64 = MLP(sizes, dtype="float64", **kw)
    net32 = MLP(sizes, dtype="float32", **kw)
    randomize_biases(net64)
    net32.params = net64.params      # rounded to float32 on the way in
    X, y = make_data(net64, batch, target=target)
    X = X.astype(np.float32).astype(np.float64)   # the same inputs for both
    v64, g64 = net64.loss_and_grad(X, y)
    v32, g32 = net32.loss_and_grad(X.astype(np.float32), y)
    assert v32 == pytest.approx(v64, rel=1e-4, abs=1e-5)
    for (dW32, db32), (dW64, db64) in zip(g32, g64):
        assert dW32.dtype == np.float32 and db32.dtype == np.float32
        scale = max(np.abs(dW64).max(), np.abs(db64).max(), 1e-3)
        np.testing.assert_allclose(dW32, dW64, rtol=0, atol=1e-4 * scale)
        np.testing.assert_allclose(db32, db64, rtol=0, atol=1e-4 * scale)
    np.testing.assert_allclose(net32.forward(X), net64.forward(X), rtol=0, atol=1e-5)


def test_float32_matches_reference_in_float32():
    net = MLP([784, 256, 256, 10], dtype="float32", seed=0)
    X, y = make_data(net, 32)
    X = X.astype(np.float32)
    v, g = net.loss_and_grad(X, y)
    rv, rg = reference_loss_and_grad(net, X, y)
    assert v == pytest.approx(float(rv), rel=1e-5)
    for (dW, db), (rW, rb) in zip(g, rg):
        np.testing.assert_allclose(dW, rW, rtol=0, atol=2e-5 * np.abs(rW).max())
        np.testing.assert_allclose(db, rb, rtol=0, atol=2e-5 * np.abs(rb).max())


# ---- property test over shapes ----------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 9), min_size=2, max_size=5),
       batch=st.integers(1, 9),
       hidden=st.sampled_from(ACTS),
       output=st.sampled_from(ACTS),
       l2=st.sampled_from([0.0, 0.2]),
       seed=st.integers(0, 2**16))
def test_hypothesis_shapes(sizes, batch, hidden, output, l2, seed):
    loss = "cross_entropy" if output == "softmax" and seed % 2 else "mse"
    net = MLP(sizes, activation=hidden, output=output, loss=loss, l2=l2, dtype="float64", seed=seed)
    randomize_biases(net, seed)
    X, y = make_data(net, batch, seed=seed, target="labels" if loss == "cross_entropy" else "regression")
    value, grads = net.loss_and_grad(X, y)
    ref_value, ref_grads = reference_loss_and_grad(net, X, y)
    np.testing.assert_allclose(value, ref_value, rtol=RTOL, atol=ATOL)
    assert_grads_close(grads, ref_grads)
    ref_out, _ = reference.mlp_forward(X, net.params, list(net.activations))
    np.testing.assert_allclose(net.forward(X), ref_out, rtol=RTOL, atol=ATOL)


# ---- inputs: layout, dtype conversion, no mutation ------------------------------------

def test_noncontiguous_readonly_and_converted_inputs():
    net = MLP([5, 7, 3], activation="tanh", dtype="float64", seed=9)
    X, y = make_data(net, 6)
    expected = net.loss_and_grad(X, y)

    wide = np.zeros((6, 10))
    wide[:, ::2] = X
    X_strided = wide[:, ::2]                      # non-contiguous view
    assert not X_strided.flags.c_contiguous
    X_ro = X.copy()
    X_ro.flags.writeable = False
    y_ro = y.copy()
    y_ro.flags.writeable = False
    X_f = np.asfortranarray(X)
    for Xi, yi in [(X_strided, y), (X_ro, y_ro), (X_f, y[::-1][::-1]), (X.tolist(), y.tolist())]:
        v, g = net.loss_and_grad(Xi, yi)
        assert v == expected[0]
        assert_grads_close(g, expected[1], rtol=0, atol=0)


def test_dtype_conversion_rule():
    """Inputs are converted once to the model's dtype; nothing passed is modified."""
    net32 = MLP([5, 7, 3], dtype="float32", seed=10)
    X, y = make_data(net32, 4)
    X_copy, y_copy = X.copy(), y.copy()
    v64in, g64in = net32.loss_and_grad(X, y)              # float64 X into a float32 model
    v32in, g32in = net32.loss_and_grad(X.astype(np.float32), y)
    assert v64in == v32in
    assert_grads_close(g64in, g32in, rtol=0, atol=0)
    assert all(dW.dtype == np.float32 for dW, _ in g64in)
    np.testing.assert_array_equal(X, X_copy)
    np.testing.assert_array_equal(y, y_copy)
    Xi = np.arange(20).reshape(4, 5)                       # integers are fine too
    assert net32.forward(Xi).dtype == np.float32
    np.testing.assert_array_equal(net32.forward(Xi), net32.forward(Xi.astype(np.float32)))


def test_params_not_modified_by_a_step():
    net = MLP([5, 7, 3], dtype="float64", seed=11)
    before = [(W.copy(), b.copy()) for W, b in net.params]
    net.loss_and_grad(*make_data(net, 3))
    for (W, b), (W0, b0) in zip(net.params, before):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)


# ---- gradients: fresh arrays, or out= ---------------------------------------------------

def test_returned_grads_are_fresh_arrays():
    net = MLP([5, 7, 3], dtype="float64", seed=12)
    X1, y1 = make_data(net, 3, seed=1)
    X2, y2 = make_data(net, 3, seed=2)
    _, g1 = net.loss_and_grad(X1, y1)
    snapshot = [(dW.copy(), db.copy()) for dW, db in g1]
    _, g2 = net.loss_and_grad(X2, y2)
    for (dW, db), (s_dW, s_db), (dW2, _) in zip(g1, snapshot, g2):
        assert dW is not dW2 and not np.shares_memory(dW, dW2)
        np.testing.assert_array_equal(dW, s_dW)
        np.testing.assert_array_equal(db, s_db)


def test_recycled_gradient_sets_are_never_visible():
    """Returned gradients may be refilled later only once nothing refers to them."""
    net = MLP([5, 7, 3], dtype="float64", seed=15)
    data = [make_data(net, 3, seed=s) for s in range(6)]
    expected = [reference_loss_and_grad(net, X, y)[1] for X, y in data]
    kept = [net.loss_and_grad(X, y)[1] for X, y in data]        # all held: all distinct
    assert len({id(g[0][0]) for g in kept}) == len(kept)
    for g, e in zip(kept, expected):
        assert_grads_close(g, e)
    view = net.loss_and_grad(*data[0])[1][1][0][:2]               # only a view held
    snapshot = view.copy()
    for X, y in data[1:]:
        net.loss_and_grad(X, y)
    np.testing.assert_array_equal(view, snapshot)
    grads = None
    for (X, y), e in zip(data, expected):                         # the training-loop pattern
        previous = grads
        loss, grads = net.loss_and_grad(X, y)
        assert_grads_close(grads, e)
        if previous is not None:
            assert not np.shares_memory(grads[0][0], previous[0][0])


@pytest.mark.parametrize("batch", [1, 4])
def test_out_reuses_the_given_arrays(batch):
    net = MLP([5, 7, 3], dtype="float32", l2=0.1, seed=13)
    X, y = make_data(net, batch)
    v, g = net.loss_and_grad(X, y)
    out = [(np.full_like(dW, np.nan), np.full_like(db, np.nan)) for dW, db in g]
    v2, g2 = net.loss_and_grad(X, y, out=out)
    assert v2 == v and g2 is out
    for (dW, db), (e_dW, e_db) in zip(out, g):
        np.testing.assert_array_equal(dW, e_dW)
        np.testing.assert_array_equal(db, e_db)


def test_bad_out_is_refused_by_name():
    net = MLP([5, 7, 3], dtype="float32")
    X, y = make_data(net, 2)
    _, g = net.loss_and_grad(X, y)
    bad = [
        [g[0]],                                                # wrong length
        [g[0], (g[1][0].astype(np.float64), g[1][1])],          # wrong dtype
        [g[0], (g[1][0].T.copy(), g[1][1])],                    # wrong shape
        [g[0], (np.asfortranarray(g[1][0]), g[1][1])],          # not C-contiguous
        [g[0], g[1][0]],                                       # not a pair
    ]
    ro = g[1][0].copy()
    ro.flags.writeable = False
    bad.append([g[0], (ro, g[1][1])])                          # read-only
    for out in bad:
        with pytest.raises(ValueError, match=r"out"):
            net.loss_and_grad(X, y, out=out)


# ---- params -------------------------------------------------------------------------------

def test_params_are_live_contiguous_arrays_in_the_model_dtype():
    for dtype in ("float32", "float64"):
        net = MLP([5, 7, 3], dtype=dtype)
        for W, b in net.params:
            assert W.dtype == dtype and b.dtype == dtype
            assert W.flags.c_contiguous and b.flags.c_contiguous
        X, y = make_data(net, 3)
        v0 = net.loss_and_grad(X, y)[0]
        net.params[0][0][...] *= 2.0     # in-place update reaches the compiled path
        assert net.loss_and_grad(X, y)[0] != v0


def test_params_setter_validates_before_copying():
    net = MLP([5, 7, 3], dtype="float64", seed=14)
    before = [(W.copy(), b.copy()) for W, b in net.params]
    held = net.params
    good = [(np.ones((7, 5), np.float32), np.arange(7)), (np.zeros((3, 7)), np.zeros(3))]
    bad_shape = [good[0], (np.zeros((7, 3)), np.zeros(3))]
    bad_nan = [good[0], (np.full((3, 7), np.nan), np.zeros(3))]
    for bad, match in [(bad_shape, r"params\[1\]\[0\]"), (bad_nan, r"params\[1\]\[0\].*NaN"),
                       (good[:1], r"params"), ([good[0], (good[1][0],)], r"params\[1\]")]:
        with pytest.raises(ValueError, match=match):
            net.params = bad
        for (W, b), (W0, b0) in zip(net.params, before):   # unchanged, not half-updated
            np.testing.assert_array_equal(W, W0)
            np.testing.assert_array_equal(b, b0)
    net.params = good
    for (W, b), (gW, gb) in zip(net.params, good):
        assert W.dtype == np.float64 and W.flags.c_contiguous
        np.testing.assert_array_equal(W, gW)
        np.testing.assert_array_equal(b, gb)
    assert held[0][0] is net.params[0][0]   # the same storage, new values
    X, y = make_data(net, 4)
    ref_value, ref_grads = reference_loss_and_grad(net, X, y)
    value, grads = net.loss_and_grad(X, y)
    assert value == pytest.approx(ref_value, rel=1e-12)
    assert_grads_close(grads, ref_grads)


# ---- initialisation --------------------------------------------------------------------

def test_initialisation_is_reproducible_and_scaled():
    a = MLP([400, 300, 300, 10], activation=["relu", "tanh"], dtype="float64", seed=5)
    b = MLP([400, 300, 300, 10], activation=["relu", "tanh"], dtype="float64", seed=5)
    c = MLP([400, 300, 300, 10], activation=["relu", "tanh"], dtype="float64", seed=6)
    f = MLP([400, 300, 300, 10], activation=["relu", "tanh"], dtype="float32", seed=5)
    for (Wa, ba), (Wb, _), (Wc, _), (Wf, _) in zip(a.params, b.params, c.params, f.params):
        np.testing.assert_array_equal(Wa, Wb)
        assert not np.array_equal(Wa, Wc)
        np.testing.assert_array_equal(Wf, Wa.astype(np.float32))
        np.testing.assert_array_equal(ba, 0)
    W_relu, W_tanh, W_out = (W for W, _ in a.params)
    assert W_relu.std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)           # He
    limit = np.sqrt(6 / (300 + 300))                                            # Glorot uniform
    assert np.abs(W_tanh).max() <= limit and np.abs(W_tanh).max() > 0.99 * limit
    assert np.abs(W_out).max() <= np.sqrt(6 / 310)


# ---- bad arguments ----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(sizes=[5]), ValueError, "sizes"),
    (dict(sizes=[5, 0, 3]), ValueError, r"sizes\[1\]"),
    (dict(sizes=[5, 2.5, 3]), TypeError, r"sizes\[1\]"),
    (dict(sizes="abc"), TypeError, "sizes"),
    (dict(sizes=[2] * 70), ValueError, "layers"),
    (dict(activation="gelu"), ValueError, "activation"),
    (dict(activation=["relu"]), ValueError, "activation"),
    (dict(activation=["relu", "swish"]), ValueError, r"activation\[1\]"),
    (dict(output="tanh"), ValueError, "output"),                     # CE needs softmax
    (dict(output="bogus", loss="mse"), ValueError, "output"),
    (dict(loss="hinge"), ValueError, "loss"),
    (dict(loss="mse", mse_form="mean"), ValueError, "mse_form"),
    (dict(l2=-1.0), ValueError, "l2"),
    (dict(l2=float("nan")), ValueError, "l2"),
    (dict(dtype="float16"), TypeError, "dtype"),
    (dict(seed=1.5), TypeError, "seed"),
])
def test_constructor_errors_name_the_argument(kwargs, exc, match):
    kw = dict(sizes=[5, 7, 7, 3])
    kw.update(kwargs)
    with pytest.raises(exc, match=match):
        MLP(kw.pop("sizes"), **kw)


def test_bad_inputs_name_the_argument():
    net = MLP([5, 7, 3], dtype="float64")
    X, y = make_data(net, 4)
    cases = [
        ((X[0], y), ValueError, r"X.*2-D"),
        ((X[:, :4], y), ValueError, r"X.*\(any, 5\)"),
        ((X.astype(complex), y), TypeError, r"X"),
        ((np.empty((0, 5)), y[:0]), ValueError, r"X.*empty"),
        ((np.where(np.arange(5) == 2, np.nan, X), y), ValueError, r"X.*NaN"),
        ((np.where(np.arange(5) == 2, np.inf, X), y), ValueError, r"X.*NaN or inf"),
        ((X, y[:3]), ValueError, r"y.*\(4,\)"),
        ((X, np.array([0, 1, 3, 0])), ValueError, r"y.*\[0, 3\)"),
        ((X, np.array([0, -1, 2, 0])), ValueError, r"y.*\[0, 3\)"),
        ((X, y.astype(float)), TypeError, r"y.*integer"),
        ((X, np.eye(3)[y][:, :2]), ValueError, r"y"),
        ((X, np.where(np.eye(3)[y] > 0, np.nan, 0.0)), ValueError, r"y.*NaN"),
        ((X, y.reshape(2, 2)), ValueError, r"y"),
    ]
    for args, exc, match in cases:
        with pytest.raises(exc, match=match):
            net.loss_and_grad(*args)
    with pytest.raises(ValueError, match=r"X.*NaN"):
        net.forward(np.full((2, 5), np.nan))
    with pytest.raises(ValueError, match=r"X"):
        net.predict(np.ones((2, 4)))

    reg = MLP([5, 7, 3], output="identity", loss="mse", dtype="float32")
    Xr, yr = make_data(reg, 4, target="regression")
    for args, exc, match in [((Xr, yr[:, :2]), ValueError, r"y.*\(4, 3\)"),
                             ((Xr, yr[0]), ValueError, r"y"),
                             ((Xr, np.where(yr > 0, np.inf, yr)), ValueError, r"y.*NaN or inf")]:
        with pytest.raises(exc, match=match):
            reg.loss_and_grad(*args)


# ---- determinism, BLAS threads, concurrency, workspaces ------------------------------------

def test_results_do_not_depend_on_blas_threads():
    """Small batches (GEMV + fastbp's own loops) are bitwise the same with 1 or 2
    BLAS threads. Larger batches go through OpenBLAS's GEMM, which itself rounds
    differently with 2 threads (plain X @ W.T does too), so there the results
    agree to float32 rounding, the most BLAS guarantees."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    net = MLP([784, 256, 256, 10], dtype="float32", seed=0)
    for batch, rtol in ((1, 0), (5, 0), (32, 1e-5)):
        X, y = make_data(net, batch)
        results = {}
        for n in (1, 2):
            with threadpoolctl.threadpool_limits(limits=n):
                results[n] = (net.loss_and_grad(X, y), net.forward(X))
        (v1, g1), f1 = results[1]
        (v2, g2), f2 = results[2]
        assert v1 == pytest.approx(v2, rel=rtol, abs=0)
        for (dW1, db1), (dW2, db2) in zip(g1, g2):
            np.testing.assert_allclose(dW1, dW2, rtol=0, atol=rtol * np.abs(dW1).max())
            np.testing.assert_allclose(db1, db2, rtol=0, atol=rtol * np.abs(db1).max())
        np.testing.assert_allclose(f1, f2, rtol=0, atol=rtol)


def test_repeated_calls_are_bitwise_identical():
    net = MLP([20, 16, 4], activation="tanh", dtype="float32", seed=1)
    X, y = make_data(net, 8)
    v, g = net.loss_and_grad(X, y)
    for _ in range(3):
        v2, g2 = net.loss_and_grad(X, y)
        assert v2 == v
        assert_grads_close(g2, g, rtol=0, atol=0)


def test_many_batch_sizes_share_the_workspace_cache():
    """More batch sizes than the cache keeps: every result still right."""
    net = MLP([6, 5, 3], activation="sigmoid", dtype="float64", seed=2)
    randomize_biases(net)
    for batch in (1, 2, 3, 4, 5, 6, 1, 7, 2, 3):
        X, y = make_data(net, batch, seed=batch)
        value, grads = net.loss_and_grad(X, y)
        ref_value, ref_grads = reference_loss_and_grad(net, X, y)
        np.testing.assert_allclose(value, ref_value, rtol=RTOL, atol=ATOL)
        assert_grads_close(grads, ref_grads)


def test_concurrent_calls_on_one_model():
    """The GIL is released during the step; the shared workspace is locked."""
    net = MLP([30, 40, 5], activation="tanh", dtype="float64", seed=3)
    data = [make_data(net, 16, seed=s) for s in range(4)]
    expected = [net.loss_and_grad(X, y) for X, y in data]
    errors = []

    def worker(k):
        try:
            for _ in range(50):
                X, y = data[k]
                v, g = net.loss_and_grad(X, y)
                assert v == expected[k][0]
                assert_grads_close(g, expected[k][1], rtol=0, atol=0)
        except AssertionError as e:   # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_gradient_descent_learns_xor():
    """End to end: plain gradient descent on the gradients fastbp returns
    (θ ← θ − η ∇L, docs/equations.md §4) fits XOR, which no linear model can."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    y = np.array([0, 1, 1, 0])
    net = MLP([2, 8, 2], activation="tanh", dtype="float32", seed=0)
    first = net.loss_and_grad(X, y)[0]
    grads = None
    for _ in range(2000):
        loss, grads = net.loss_and_grad(X, y, out=grads)
        for (W, b), (dW, db) in zip(net.params, grads):
            W -= 0.5 * dW
            b -= 0.5 * db
    assert loss < 0.05 * first
    np.testing.assert_array_equal(net.predict(X), y)


def test_pickle_and_deepcopy_give_an_equal_independent_model():
    net = MLP([4, 7, 3], activation=["tanh"], l2=0.01, dtype="float32", seed=3, mse_form="sum")
    X = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    for other in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        assert type(other) is MLP and other.config() == net.config()
        np.testing.assert_array_equal(other.forward(X), net.forward(X))
        other.params[0][0][...] = 0          # its own arrays
        assert np.any(net.params[0][0] != 0)
