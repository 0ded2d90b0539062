"""The NumPy reference against central finite differences (docs/equations.md §5).

Every analytic gradient of ``fastbp.reference`` is checked with
``fastbp.gradcheck`` in float64 to 1e-6 relative. Inputs are kept away from the
relu kink (the preconditions are asserted, so a bad seed fails loudly instead
of testing nothing).
"""

import numpy as np
import pytest

from fastbp import reference as ref
from fastbp.gradcheck import gradcheck

TOL = 1e-6


def check(fun, params, grads, **kw):
    report = gradcheck(fun, params, grads, **kw)
    assert report.ok(TOL), "\n" + str(report)
    # an honest check compares something: every parameter has checked entries
    assert all(c.indices.size > 0 for c in report.checks.values())
    return report


def away_from_zero(rng, shape, lo=0.2, hi=2.0):
    """Random values with |v| in [lo, hi] and random sign."""
    return rng.uniform(lo, hi, shape) * rng.choice([-1.0, 1.0], shape)


# --------------------------------------------------------------------------- §1

@pytest.mark.parametrize("name", ref.ACTIVATIONS)
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4), (1, 1)])
def test_activation_backward_matches_fd(name, shape):
    rng = np.random.default_rng([ref.ACTIVATIONS.index(name), *shape])
    z = away_from_zero(rng, shape)
    R = rng.standard_normal(shape)

    def f():
        return np.sum(ref.activation_forward(z, name) * R)

    a = ref.activation_forward(z, name)
    dz = ref.activation_backward(R, a, name)
    check(f, {"z": z}, {"z": dz})


# --------------------------------------------------------------------------- §2

@pytest.mark.parametrize("form", ["sum", "half_mean"])
@pytest.mark.parametrize("shape", [(6, 3), (3, 4, 2), (1, 1), (5,)])
def test_squared_error_matches_fd(form, shape):
    rng = np.random.default_rng(7)
    pred = rng.standard_normal(shape)
    target = rng.standard_normal(shape)
    loss, dpred = ref.squared_error(pred, target, form=form)
    check(lambda: ref.squared_error(pred, target, form=form)[0], {"pred": pred}, {"pred": dpred})


@pytest.mark.parametrize("target_kind", ["labels", "onehot", "probabilities"])
@pytest.mark.parametrize("shape", [(6, 4), (3, 2, 5), (1, 3)])
def test_softmax_cross_entropy_matches_fd(target_kind, shape):
    rng = np.random.default_rng(11)
    logits = 2 * rng.standard_normal(shape)
    K = shape[-1]
    labels = rng.integers(0, K, shape[:-1])
    if target_kind == "labels":
        target = labels
    elif target_kind == "onehot":
        target = np.eye(K)[labels]
    else:
        p = rng.uniform(0.1, 1.0, shape)
        target = p / p.sum(-1, keepdims=True)
    loss, dlogits = ref.softmax_cross_entropy(logits, target)
    check(lambda: ref.softmax_cross_entropy(logits, target)[0],
          {"logits": logits}, {"logits": dlogits})


# --------------------------------------------------------------------------- §3

def test_l2_penalty_matches_fd():
    rng = np.random.default_rng(3)
    ws = [rng.standard_normal((4, 3)), rng.standard_normal((2, 4)), rng.standard_normal((5,))]
    lam = 0.37
    value, grads = ref.l2_penalty(ws, lam)
    check(lambda: ref.l2_penalty(ws, lam)[0], ws, grads)


# --------------------------------------------------------------------------- §4

MLP_CASES = [
    # (sizes, batch, activations, loss, target, l2, mse_form)
    ([4, 3], 5, ["softmax"], "cross_entropy", "labels", 0.0, "sum"),
    ([4, 3], 5, ["softmax"], "cross_entropy", "onehot", 0.0, "sum"),
    ([4, 3], 5, ["sigmoid"], "mse", "values", 0.0, "sum"),
    ([4, 3], 5, ["identity"], "mse", "values", 0.0, "half_mean"),
    ([4, 6, 3], 5, ["tanh", "softmax"], "cross_entropy", "labels", 0.0, "sum"),
    ([4, 6, 3], 5, ["tanh", "softmax"], "cross_entropy", "onehot", 0.0, "sum"),
    ([4, 6, 3], 5, ["relu", "identity"], "mse", "values", 0.0, "sum"),
    ([4, 6, 3], 5, ["softmax", "softmax"], "mse", "values", 0.0, "sum"),       # seed 004
    ([4, 6, 5, 3], 4, ["sigmoid", "relu", "softmax"], "cross_entropy", "labels", 0.1, "sum"),
    ([4, 6, 5, 3], 4, ["sigmoid", "relu", "softmax"], "cross_entropy", "onehot", 0.1, "sum"),
    ([4, 6, 5, 3], 4, ["tanh", "softmax", "sigmoid"], "mse", "values", 0.05, "half_mean"),
    ([5, 7, 3], 1, ["tanh", "softmax"], "cross_entropy", "labels", 0.0, "sum"),  # odd sizes, B=1
    ([5, 7, 3], 1, ["relu", "tanh"], "mse", "values", 0.2, "sum"),
]


@pytest.mark.parametrize("sizes,B,acts,loss,target,l2,form", MLP_CASES)
def test_mlp_loss_and_grad_matches_fd(sizes, B, acts, loss, target, l2, form):
    rng = np.random.default_rng([len(sizes), B, len(acts[0]), len(target)])
    x = away_from_zero(rng, (B, sizes[0]))
    params = [(rng.standard_normal((n, m)) / np.sqrt(m), 0.5 * rng.standard_normal(n))
              for m, n in zip(sizes[:-1], sizes[1:])]
    if loss == "cross_entropy":
        labels = rng.integers(0, sizes[-1], B)
        y = np.eye(sizes[-1])[labels] if target == "onehot" else labels
    else:
        y = rng.standard_normal((B, sizes[-1]))

    _, cache = ref.mlp_forward(x, params, acts)
    for Z, f in zip(cache["Z"], acts):
        if f == "relu":
            assert np.min(np.abs(Z)) > 1e-4, "relu pre-activation too close to the kink"

    value, grads = ref.mlp_loss_and_grad(x, y, params, acts, loss=loss, l2=l2, mse_form=form)

    def f():
        return ref.mlp_loss_and_grad(x, y, params, acts, loss=loss, l2=l2, mse_form=form)[0]

    named_p, named_g = {}, {}
    for l, ((W, b), (dW, db)) in enumerate(zip(params, grads), start=1):
        named_p["W%d" % l], named_p["b%d" % l] = W, b
        named_g["W%d" % l], named_g["b%d" % l] = dW, db
    check(f, named_p, named_g)


@pytest.mark.parametrize("acts", [["tanh", "sigmoid"], ["softmax", "softmax"],
                                  ["sigmoid", "relu", "identity"], ["relu", "softmax"]])
def test_mlp_backward_from_output_gradient_matches_fd(acts):
    """mlp_backward takes dL/dA^(L) (after the output activation)."""
    rng = np.random.default_rng(5)
    sizes = [3, 5, 4, 2][: len(acts) + 1]
    x = away_from_zero(rng, (4, sizes[0]))
    params = [(rng.standard_normal((n, m)), 0.3 * rng.standard_normal(n))
              for m, n in zip(sizes[:-1], sizes[1:])]
    R = rng.standard_normal((4, sizes[-1]))
    out, cache = ref.mlp_forward(x, params, acts)
    for Z, f in zip(cache["Z"], acts):
        if f == "relu":
            assert np.min(np.abs(Z)) > 1e-4
    grads = ref.mlp_backward(R, cache)
    check(lambda: np.sum(ref.mlp_forward(x, params, acts)[0] * R),
          [a for Wb in params for a in Wb], [g for dWb in grads for g in dWb])


# --------------------------------------------------------------------------- §6 RNN

def make_rnn(rng, T=5, B=3, I=4, H=6, scale=0.5):
    x = away_from_zero(rng, (T, B, I), 0.1, 1.0)
    h0 = rng.standard_normal((B, H))
    W_ih = scale * rng.standard_normal((H, I))
    W_hh = scale * rng.standard_normal((H, H))
    b_ih = 0.3 * rng.standard_normal(H)
    b_hh = 0.3 * rng.standard_normal(H)
    return x, h0, W_ih, W_hh, b_ih, b_hh


def rnn_preactivations(x, h0, W_ih, W_hh, b_ih, b_hh, phi):
    """a_t by an explicit loop, to keep relu away from its kink."""
    h = np.zeros((x.shape[1], W_hh.shape[0])) if h0 is None else h0
    out = []
    for t in range(x.shape[0]):
        a = x[t] @ W_ih.T + b_ih + h @ W_hh.T + b_hh
        out.append(a)
        h = ref.activation_forward(a, phi)
    return np.array(out)


@pytest.mark.parametrize("seeds", ["dy", "dh_n", "both"])
@pytest.mark.parametrize("with_h0", [True, False])
@pytest.mark.parametrize("phi", ref.RNN_NONLINEARITIES)
def test_rnn_matches_fd(phi, with_h0, seeds):
    rng = np.random.default_rng(["tanh", "relu", "identity"].index(phi) + 10 * with_h0)
    x, h0, W_ih, W_hh, b_ih, b_hh = make_rnn(rng)
    if not with_h0:
        h0 = None
    T, B, _ = x.shape
    H = W_hh.shape[0]
    if phi == "relu":
        a = rnn_preactivations(x, h0, W_ih, W_hh, b_ih, b_hh, phi)
        assert np.min(np.abs(a)) > 1e-4, "relu pre-activation too close to the kink"
    R = rng.standard_normal((T, B, H)) if seeds in ("dy", "both") else None
    Rh = rng.standard_normal((B, H)) if seeds in ("dh_n", "both") else None

    def f():
        y, h_n, _ = ref.rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh, nonlinearity=phi)
        total = 0.0
        if R is not None:
            total += np.sum(y * R)
        if Rh is not None:
            total += np.sum(h_n * Rh)
        return total

    _, _, cache = ref.rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh, nonlinearity=phi)
    g = ref.rnn_backward(R, Rh, cache)
    params = {"x": x, "weight_ih": W_ih, "weight_hh": W_hh, "bias_ih": b_ih, "bias_hh": b_hh}
    if with_h0:
        params["h0"] = h0
    check(f, params, {k: g[k] for k in params})
    np.testing.assert_array_equal(g["bias_ih"], g["bias_hh"])
    if not with_h0:
        # the h0 gradient is still the gradient wrt the zeros that were used
        _, _, cache0 = ref.rnn_forward(x, np.zeros((B, H)), W_ih, W_hh, b_ih, b_hh,
                                       nonlinearity=phi)
        np.testing.assert_array_equal(g["h0"], ref.rnn_backward(R, Rh, cache0)["h0"])


def test_rnn_with_output_layer_and_mean_cross_entropy_matches_fd():
    """§6 end to end: o_t = h_t W_qhT + b_q, L = (1/T) sum_t mean_batch CE(o_t, y_t)."""
    rng = np.random.default_rng(21)
    x, h0, W_ih, W_hh, b_ih, b_hh = make_rnn(rng, T=4, B=2, I=3, H=5)
    K = 3
    W_qh = rng.standard_normal((K, 5))
    b_q = rng.standard_normal(K)
    labels = rng.integers(0, K, (4, 2))

    def forward():
        y, _, cache = ref.rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh)
        o = y @ W_qh.T + b_q                          # (T, B, K)
        loss, do = ref.softmax_cross_entropy(o, labels)   # mean over T*B rows
        return loss, do, y, cache

    loss, do, y, cache = forward()
    g = ref.rnn_backward(do @ W_qh, None, cache)      # dL/dh_t = (dL/do_t) W_qh
    g["W_qh"] = do.reshape(-1, K).T @ y.reshape(-1, 5)
    g["b_q"] = do.reshape(-1, K).sum(0)
    params = {"x": x, "h0": h0, "weight_ih": W_ih, "weight_hh": W_hh, "bias_ih": b_ih,
              "bias_hh": b_hh, "W_qh": W_qh, "b_q": b_q}
    check(lambda: forward()[0], params, {k: g[k] for k in params})


# --------------------------------------------------------------------------- §7 LSTM

def make_lstm(rng, T=4, B=3, I=4, H=5, peepholes=False):
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((B, H))
    c0 = rng.standard_normal((B, H))
    W_ih = 0.5 * rng.standard_normal((4 * H, I))
    W_hh = 0.5 * rng.standard_normal((4 * H, H))
    b_ih = 0.3 * rng.standard_normal(4 * H)
    b_hh = 0.3 * rng.standard_normal(4 * H)
    pp = tuple(0.5 * rng.standard_normal(H) for _ in range(3)) if peepholes else None
    return x, h0, c0, W_ih, W_hh, b_ih, b_hh, pp


LSTM_CASES = [
    # (peepholes, with_states, dy, dh_n, dc_n)
    (False, True, True, True, True),
    (False, False, True, False, False),
    (False, True, False, True, False),
    (False, True, False, False, True),
    (True, True, True, True, True),
    (True, False, True, False, True),
    (True, True, False, True, False),
    (True, True, False, False, True),
]


@pytest.mark.parametrize("peep,with_states,use_dy,use_dh,use_dc", LSTM_CASES)
def test_lstm_matches_fd(peep, with_states, use_dy, use_dh, use_dc):
    rng = np.random.default_rng(100 + 16 * peep + 8 * with_states + 4 * use_dy + 2 * use_dh + use_dc)
    x, h0, c0, W_ih, W_hh, b_ih, b_hh, pp = make_lstm(rng, peepholes=peep)
    if not with_states:
        h0 = c0 = None
    T, B, _ = x.shape
    H = W_hh.shape[1]
    R = rng.standard_normal((T, B, H)) if use_dy else None
    Rh = rng.standard_normal((B, H)) if use_dh else None
    Rc = rng.standard_normal((B, H)) if use_dc else None

    def f():
        y, (h_n, c_n), _ = ref.lstm_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, peepholes=pp)
        total = 0.0
        for out, w in ((y, R), (h_n, Rh), (c_n, Rc)):
            if w is not None:
                total += np.sum(out * w)
        return total

    _, _, cache = ref.lstm_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh, peepholes=pp)
    g = ref.lstm_backward(R, Rh, Rc, cache)
    params = {"x": x, "weight_ih": W_ih, "weight_hh": W_hh, "bias_ih": b_ih, "bias_hh": b_hh}
    if with_states:
        params["h0"], params["c0"] = h0, c0
    if peep:
        params["peephole_i"], params["peephole_f"], params["peephole_o"] = pp
    else:
        assert not any(k.startswith("peephole") for k in g)
    check(f, params, {k: g[k] for k in params})
    np.testing.assert_array_equal(g["bias_ih"], g["bias_hh"])
