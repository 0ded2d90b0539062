"""Compiled Elman RNN and clip_grad_norm against PyTorch (torch.nn.RNN autograd,
torch.nn.utils.clip_grad_norm_) on the same weights. Skipped without torch."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fastbp.clip import clip_grad_norm  # noqa: E402
from fastbp.rnn import rnn_backward, rnn_forward  # noqa: E402

SHAPES = [(6, 3, 4, 5), (1, 1, 1, 1), (5, 1, 3, 4), (1, 4, 2, 3), (4, 2, 3, 1), (12, 2, 6, 16)]


def torch_rnn(x, h0, W_ih, W_hh, b_ih, b_hh, act, R, S):
    """y, h_n and every gradient of L = Σ y·R + Σ h_n·S by autograd."""
    T, B, I = x.shape
    H = W_hh.shape[0]
    rnn = torch.nn.RNN(I, H, nonlinearity=act).double()
    with torch.no_grad():
        for name, a in (("weight_ih", W_ih), ("weight_hh", W_hh), ("bias_ih", b_ih), ("bias_hh", b_hh)):
            getattr(rnn, name + "_l0").copy_(torch.from_numpy(a))
    xt = torch.from_numpy(x).requires_grad_()
    h0t = None if h0 is None else torch.from_numpy(h0)[None].clone().requires_grad_()
    y, h_n = rnn(xt, h0t)
    (torch.sum(y * torch.from_numpy(R)) + torch.sum(h_n[0] * torch.from_numpy(S))).backward()
    grads = {"x": xt.grad.numpy(), "weight_ih": rnn.weight_ih_l0.grad.numpy(),
             "weight_hh": rnn.weight_hh_l0.grad.numpy(), "bias_ih": rnn.bias_ih_l0.grad.numpy(),
             "bias_hh": rnn.bias_hh_l0.grad.numpy()}
    if h0t is not None:
        grads["h0"] = h0t.grad[0].numpy()
    return y.detach().numpy(), h_n[0].detach().numpy(), grads


@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("with_h0", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_rnn_equals_torch_autograd(act, with_h0, shape):
    T, B, I, H = shape
    rng = np.random.default_rng([SHAPES.index(shape), with_h0, act == "relu"])
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((B, H)) if with_h0 else None
    W_ih = rng.standard_normal((H, I)) * 0.6
    W_hh = rng.standard_normal((H, H)) * 0.6 / np.sqrt(H)
    b_ih, b_hh = rng.standard_normal(H) * 0.2, rng.standard_normal(H) * 0.2
    R, S = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))

    y, h_n, cache = rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh, act)
    g = rnn_backward(R, S, cache)
    y_t, h_n_t, g_t = torch_rnn(x, h0, W_ih, W_hh, b_ih, b_hh, act, R, S)
    np.testing.assert_allclose(y, y_t, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h_n, h_n_t, rtol=1e-10, atol=1e-12)
    for k, v in g_t.items():
        np.testing.assert_allclose(g[k], v, rtol=1e-9, atol=1e-12, err_msg=k)


def test_float32_rnn_close_to_torch_float32():
    rng = np.random.default_rng(3)
    T, B, I, H = 20, 4, 8, 32
    arrs = [rng.standard_normal(s) * c for s, c in
            (((T, B, I), 1), ((B, H), 1), ((H, I), 0.3), ((H, H), 0.15), ((H,), 0.1), ((H,), 0.1),
             ((T, B, H), 1), ((B, H), 1))]
    x, h0, W_ih, W_hh, b_ih, b_hh, R, S = [a.astype(np.float32) for a in arrs]
    y, h_n, cache = rnn_forward(x, h0, W_ih, W_hh, b_ih, b_hh)
    g = rnn_backward(R, S, cache)
    y_t, _, g_t = torch_rnn(*[a.astype(np.float64) for a in (x, h0, W_ih, W_hh, b_ih, b_hh)],
                            "tanh", R.astype(np.float64), S.astype(np.float64))
    np.testing.assert_allclose(y, y_t, rtol=1e-4, atol=1e-5)
    for k, v in g_t.items():
        np.testing.assert_allclose(g[k], v, rtol=1e-4, atol=1e-4 * np.abs(v).max(), err_msg=k)


@pytest.mark.parametrize("max_norm", [0.1, 1.0, 100.0])
def test_clip_grad_norm_equals_torch(max_norm):
    rng = np.random.default_rng(4)
    arrays = [rng.standard_normal((5, 3)), rng.standard_normal(7), rng.standard_normal((2, 2, 2))]
    params = [torch.nn.Parameter(torch.zeros(a.shape, dtype=torch.float64)) for a in arrays]
    for p, a in zip(params, arrays):
        p.grad = torch.from_numpy(a.copy())
    total_t = torch.nn.utils.clip_grad_norm_(params, max_norm)
    total = clip_grad_norm(arrays, max_norm)
    assert total == pytest.approx(total_t.item(), rel=1e-14)
    for p, a in zip(params, arrays):
        np.testing.assert_allclose(a, p.grad.numpy(), rtol=1e-14, atol=0)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("many_to_one", [False, True])
def test_model_equals_torch_rnn_with_linear_readout(nonlinearity, loss, many_to_one):
    """fastbp.rnn.RNN == torch.nn.RNN + torch.nn.Linear + the same loss, l2 = 0."""
    from fastbp.rnn import RNN
    T, B, I, H, O = 7, 3, 4, 6, 5
    rng = np.random.default_rng([loss == "mse", many_to_one, nonlinearity == "relu"])
    m = RNN(I, H, O, nonlinearity=nonlinearity, loss=loss, many_to_one=many_to_one, seed=2)
    X = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((B, H))
    lead = (B,) if many_to_one else (T, B)
    Y = rng.standard_normal(lead + (O,)) if loss == "mse" else rng.integers(0, O, lead)
    loss_f, g, h_n = m.loss_and_grad(X, Y, h0)

    rnn = torch.nn.RNN(I, H, nonlinearity=nonlinearity).double()
    lin = torch.nn.Linear(H, O).double()
    p = m.params
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(rnn, name + "_l0").copy_(torch.from_numpy(p[name]))
        lin.weight.copy_(torch.from_numpy(p["weight_out"]))
        lin.bias.copy_(torch.from_numpy(p["bias_out"]))
    y, h_n_t = rnn(torch.from_numpy(X), torch.from_numpy(h0)[None])
    out = lin(y[-1] if many_to_one else y)
    Yt = torch.from_numpy(Y)
    if loss == "mse":
        loss_t = ((out - Yt) ** 2).sum(-1).mean()
    else:
        loss_t = torch.nn.functional.cross_entropy(out.reshape(-1, O), Yt.reshape(-1))
    loss_t.backward()
    np.testing.assert_allclose(loss_f, loss_t.item(), rtol=1e-12)
    np.testing.assert_allclose(h_n, h_n_t[0].detach().numpy(), rtol=1e-12, atol=1e-14)
    torch_grads = {"weight_ih": rnn.weight_ih_l0.grad, "weight_hh": rnn.weight_hh_l0.grad,
                   "bias_ih": rnn.bias_ih_l0.grad, "bias_hh": rnn.bias_hh_l0.grad,
                   "weight_out": lin.weight.grad, "bias_out": lin.bias.grad}
    for k, v in torch_grads.items():
        np.testing.assert_allclose(g[k], v.numpy(), rtol=1e-9, atol=1e-13, err_msg=k)
