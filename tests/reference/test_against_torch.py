"""The NumPy reference against torch.autograd on the same weights (float64).

Outputs, final states, losses and every gradient must agree to ~1e-10 relative.
Identity-RNN and LSTM peepholes have no torch equivalent and are covered by
the finite-difference tests only.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from fastbp import reference as ref  # noqa: E402

RTOL = 1e-10


def assert_close(ours, theirs, name=""):
    if isinstance(theirs, torch.Tensor):
        theirs = theirs.detach().numpy()
    ours = np.asarray(ours)
    theirs = np.asarray(theirs)
    assert ours.shape == theirs.shape, (name, ours.shape, theirs.shape)
    scale = max(1.0, float(np.max(np.abs(theirs), initial=0.0)))
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=RTOL * 1e-2 * scale, err_msg=name)


def t(a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


TORCH_ACT = {
    "identity": lambda z: z,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "softmax": lambda z: torch.softmax(z, dim=-1),
}


def torch_mlp(x, params, acts):
    """nn.Linear stack with the same weights; returns (A^(L), Z^(L), linears)."""
    linears = []
    A = t(x)
    Z = None
    for (W, b), f in zip(params, acts):
        lin = torch.nn.Linear(W.shape[1], W.shape[0], dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(t(W))
            lin.bias.copy_(t(b))
        linears.append(lin)
        Z = lin(A)
        A = TORCH_ACT[f](Z)
    return A, Z, linears


def make_mlp(rng, sizes, B):
    x = rng.standard_normal((B, sizes[0]))
    params = [(rng.standard_normal((n, m)) / np.sqrt(m), 0.5 * rng.standard_normal(n))
              for m, n in zip(sizes[:-1], sizes[1:])]
    return x, params


MLP_CASES = [
    # (sizes, B, activations, loss, target, l2, mse_form)
    ([4, 3], 6, ["softmax"], "cross_entropy", "labels", 0.0, "sum"),
    ([4, 8, 3], 6, ["relu", "softmax"], "cross_entropy", "labels", 0.0, "sum"),
    ([4, 8, 3], 6, ["tanh", "softmax"], "cross_entropy", "onehot", 0.0, "sum"),
    ([4, 8, 5, 3], 6, ["sigmoid", "softmax", "softmax"], "cross_entropy", "probabilities", 0.1, "sum"),
    ([4, 8, 3], 6, ["relu", "identity"], "mse", "values", 0.0, "sum"),
    ([4, 8, 3], 6, ["tanh", "sigmoid"], "mse", "values", 0.0, "half_mean"),
    ([4, 8, 3], 6, ["softmax", "softmax"], "mse", "values", 0.3, "sum"),
    ([5, 7, 3], 1, ["sigmoid", "tanh"], "mse", "values", 0.0, "sum"),
    ([5, 7, 3], 1, ["relu", "softmax"], "cross_entropy", "labels", 0.01, "sum"),
]


@pytest.mark.parametrize("sizes,B,acts,loss,target,l2,form", MLP_CASES)
def test_mlp_loss_and_grad_matches_torch(sizes, B, acts, loss, target, l2, form):
    rng = np.random.default_rng([len(sizes), B, len(acts[-1]), len(target), len(form)])
    x, params = make_mlp(rng, sizes, B)
    K = sizes[-1]
    labels = rng.integers(0, K, B)
    if target == "labels":
        y, y_t = labels, torch.tensor(labels, dtype=torch.long)
    elif target == "onehot":
        y = np.eye(K)[labels]
        y_t = t(y)
    elif target == "probabilities":
        p = rng.uniform(0.1, 1.0, (B, K))
        y = p / p.sum(-1, keepdims=True)
        y_t = t(y)
    else:
        y = rng.standard_normal((B, K))
        y_t = t(y)

    value, grads = ref.mlp_loss_and_grad(x, y, params, acts, loss=loss, l2=l2, mse_form=form)
    out, _ = ref.mlp_forward(x, params, acts)

    A, Z, linears = torch_mlp(x, params, acts)
    if loss == "cross_entropy":
        L = F.cross_entropy(Z, y_t)                       # mean over the batch
    elif form == "sum":
        L = ((y_t - A) ** 2).sum(-1).mean()               # our "sum" form
    else:
        L = 0.5 * F.mse_loss(A, y_t)                      # our "half_mean" form
    if l2:
        L = L + l2 / 2 * sum((lin.weight ** 2).sum() for lin in linears)
    L.backward()

    assert_close(out, A, "output")
    assert_close(value, L, "loss")
    for l, (lin, (dW, db)) in enumerate(zip(linears, grads), start=1):
        assert_close(dW, lin.weight.grad, "dW%d" % l)
        assert_close(db, lin.bias.grad, "db%d" % l)


@pytest.mark.parametrize("acts", [["tanh", "softmax"], ["relu", "sigmoid", "identity"],
                                  ["softmax", "tanh"]])
def test_mlp_backward_matches_torch(acts):
    rng = np.random.default_rng(len(acts))
    sizes = [3, 6, 5, 4][: len(acts) + 1]
    x, params = make_mlp(rng, sizes, 5)
    dout = rng.standard_normal((5, sizes[-1]))
    out, cache = ref.mlp_forward(x, params, acts)
    grads = ref.mlp_backward(dout, cache)
    A, _, linears = torch_mlp(x, params, acts)
    A.backward(t(dout))
    assert_close(out, A, "output")
    for l, (lin, (dW, db)) in enumerate(zip(linears, grads), start=1):
        assert_close(dW, lin.weight.grad, "dW%d" % l)
        assert_close(db, lin.bias.grad, "db%d" % l)


@pytest.mark.parametrize("shape", [(7, 4), (3, 2, 5)])
def test_losses_match_torch(shape):
    rng = np.random.default_rng(len(shape))
    logits = 3 * rng.standard_normal(shape)
    labels = rng.integers(0, shape[-1], shape[:-1])
    K = shape[-1]
    a = t(logits, grad=True)
    L = F.cross_entropy(a.reshape(-1, K), torch.tensor(labels.reshape(-1)))
    L.backward()
    loss, d = ref.softmax_cross_entropy(logits, labels)
    assert_close(loss, L, "ce loss")
    assert_close(d, a.grad, "ce grad")

    target = rng.standard_normal(shape)
    for form, torch_loss in (("sum", lambda p, y: ((y - p) ** 2).sum(-1).mean()),
                             ("half_mean", lambda p, y: 0.5 * F.mse_loss(p, y))):
        p = t(logits, grad=True)
        L = torch_loss(p, t(target))
        L.backward()
        loss, d = ref.squared_error(logits, target, form=form)
        assert_close(loss, L, "mse %s loss" % form)
        assert_close(d, p.grad, "mse %s grad" % form)


# --------------------------------------------------------------------------- RNN

@pytest.mark.parametrize("with_h0", [True, False])
@pytest.mark.parametrize("phi", ["tanh", "relu"])
def test_rnn_matches_torch(phi, with_h0):
    rng = np.random.default_rng([len(phi), with_h0])
    T, B, I, H = 6, 3, 4, 5
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((B, H)) if with_h0 else None
    W_ih, W_hh = 0.5 * rng.standard_normal((H, I)), 0.5 * rng.standard_normal((H, H))
    b_ih, b_hh = 0.3 * rng.standard_normal(H), 0.3 * rng.standard_normal(H)
    R, Rh = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))

    y, h_n, cache = ref.rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh, nonlinearity=phi)
    g = ref.rnn_backward(R, Rh, cache)

    rnn = torch.nn.RNN(I, H, nonlinearity=phi, dtype=torch.float64)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(t(W_ih))
        rnn.weight_hh_l0.copy_(t(W_hh))
        rnn.bias_ih_l0.copy_(t(b_ih))
        rnn.bias_hh_l0.copy_(t(b_hh))
    x_t = t(x, grad=True)
    if with_h0:
        h0_t = t(h0[None], grad=True)
        y_t, hn_t = rnn(x_t, h0_t)
    else:
        y_t, hn_t = rnn(x_t)
    ((y_t * t(R)).sum() + (hn_t[0] * t(Rh)).sum()).backward()

    assert_close(y, y_t, "y")
    assert_close(h_n, hn_t[0], "h_n")
    assert_close(g["x"], x_t.grad, "dx")
    if with_h0:
        assert_close(g["h0"], h0_t.grad[0], "dh0")
    assert_close(g["weight_ih"], rnn.weight_ih_l0.grad, "dW_ih")
    assert_close(g["weight_hh"], rnn.weight_hh_l0.grad, "dW_hh")
    assert_close(g["bias_ih"], rnn.bias_ih_l0.grad, "db_ih")
    assert_close(g["bias_hh"], rnn.bias_hh_l0.grad, "db_hh")


# --------------------------------------------------------------------------- LSTM

@pytest.mark.parametrize("with_states", [True, False])
def test_lstm_matches_torch(with_states):
    rng = np.random.default_rng(40 + with_states)
    T, B, I, H = 5, 3, 4, 6
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((B, H)) if with_states else None
    c0 = rng.standard_normal((B, H)) if with_states else None
    W_ih, W_hh = 0.5 * rng.standard_normal((4 * H, I)), 0.5 * rng.standard_normal((4 * H, H))
    b_ih, b_hh = 0.3 * rng.standard_normal(4 * H), 0.3 * rng.standard_normal(4 * H)
    R, Rh, Rc = (rng.standard_normal((T, B, H)), rng.standard_normal((B, H)),
                 rng.standard_normal((B, H)))

    y, (h_n, c_n), cache = ref.lstm_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh)
    g = ref.lstm_backward(R, Rh, Rc, cache)

    lstm = torch.nn.LSTM(I, H, dtype=torch.float64)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(t(W_ih))
        lstm.weight_hh_l0.copy_(t(W_hh))
        lstm.bias_ih_l0.copy_(t(b_ih))
        lstm.bias_hh_l0.copy_(t(b_hh))
    x_t = t(x, grad=True)
    if with_states:
        h0_t, c0_t = t(h0[None], grad=True), t(c0[None], grad=True)
        y_t, (hn_t, cn_t) = lstm(x_t, (h0_t, c0_t))
    else:
        y_t, (hn_t, cn_t) = lstm(x_t)
    ((y_t * t(R)).sum() + (hn_t[0] * t(Rh)).sum() + (cn_t[0] * t(Rc)).sum()).backward()

    assert_close(y, y_t, "y")
    assert_close(h_n, hn_t[0], "h_n")
    assert_close(c_n, cn_t[0], "c_n")
    assert_close(cache["c"][-1], cn_t[0], "cache c_T")
    assert_close(g["x"], x_t.grad, "dx")
    if with_states:
        assert_close(g["h0"], h0_t.grad[0], "dh0")
        assert_close(g["c0"], c0_t.grad[0], "dc0")
    assert_close(g["weight_ih"], lstm.weight_ih_l0.grad, "dW_ih")
    assert_close(g["weight_hh"], lstm.weight_hh_l0.grad, "dW_hh")
    assert_close(g["bias_ih"], lstm.bias_ih_l0.grad, "db_ih")
    assert_close(g["bias_hh"], lstm.bias_hh_l0.grad, "db_hh")
