"""Compiled LSTM (fastbp.lstm) against torch.nn.LSTM autograd on the same weights."""
import numpy as np
import pytest

from fastbp.lstm import lstm_backward, lstm_forward

torch = pytest.importorskip("torch")


def run_torch(x, h0, c0, W_ih, W_hh, b_ih, b_hh, dy, dh_n, dc_n):
    """torch.nn.LSTM forward + autograd of L = Σ y·dy + Σ h_n·dh_n + Σ c_n·dc_n."""
    T, B, I = x.shape
    H = W_hh.shape[1]
    dt = torch.float64 if x.dtype == np.float64 else torch.float32
    lstm = torch.nn.LSTM(I, H).to(dt)
    with torch.no_grad():
        for name, a in (("weight_ih_l0", W_ih), ("weight_hh_l0", W_hh), ("bias_ih_l0", b_ih),
                        ("bias_hh_l0", b_hh)):
            getattr(lstm, name).copy_(torch.from_numpy(a))
    xt = torch.from_numpy(x).requires_grad_()
    h0t = torch.from_numpy(h0)[None].requires_grad_()
    c0t = torch.from_numpy(c0)[None].requires_grad_()
    y, (h_n, c_n) = lstm(xt, (h0t, c0t))
    loss = (y * torch.from_numpy(dy)).sum() + (h_n[0] * torch.from_numpy(dh_n)).sum() \
        + (c_n[0] * torch.from_numpy(dc_n)).sum()
    loss.backward()
    grads = {"x": xt.grad, "h0": h0t.grad[0], "c0": c0t.grad[0], "weight_ih": lstm.weight_ih_l0.grad,
             "weight_hh": lstm.weight_hh_l0.grad, "bias_ih": lstm.bias_ih_l0.grad,
             "bias_hh": lstm.bias_hh_l0.grad}
    return (y.detach().numpy(), h_n[0].detach().numpy(), c_n[0].detach().numpy(),
            {k: v.numpy() for k, v in grads.items()})


@pytest.mark.parametrize("dtype,rtol,atol", [(np.float64, 1e-10, 1e-12), (np.float32, 2e-4, 2e-5)])
@pytest.mark.parametrize("T,B,I,H", [(7, 3, 5, 4), (4, 1, 6, 8), (1, 5, 2, 3), (12, 16, 24, 32)])
def test_matches_torch_lstm(T, B, I, H, dtype, rtol, atol):
    rng = np.random.default_rng(T * 1000 + B * 10 + H)
    k = 1 / np.sqrt(H)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0, c0 = (rng.standard_normal((B, H)).astype(dtype) for _ in range(2))
    W_ih = rng.uniform(-k, k, (4 * H, I)).astype(dtype)
    W_hh = rng.uniform(-k, k, (4 * H, H)).astype(dtype)
    b_ih, b_hh = (rng.uniform(-k, k, 4 * H).astype(dtype) for _ in range(2))
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    dh_n, dc_n = (rng.standard_normal((B, H)).astype(dtype) for _ in range(2))

    y, (h_n, c_n), cache = lstm_forward(x, h0, c0, W_ih, W_hh, b_ih, b_hh)
    grads = lstm_backward(dy, dh_n, dc_n, cache)
    y_t, h_t, c_t, grads_t = run_torch(x, h0, c0, W_ih, W_hh, b_ih, b_hh, dy, dh_n, dc_n)

    np.testing.assert_allclose(y, y_t, rtol=rtol, atol=atol)
    np.testing.assert_allclose(h_n, h_t, rtol=rtol, atol=atol)
    np.testing.assert_allclose(c_n, c_t, rtol=rtol, atol=atol)
    for name, g in grads_t.items():
        scale = max(1.0, np.abs(g).max()) if dtype == np.float32 else 1.0
        np.testing.assert_allclose(grads[name], g, rtol=rtol, atol=atol * scale, err_msg=name)


def test_cell_states_of_every_step_match_torch_cell_by_cell():
    """cache.c holds every c_t, which torch.nn.LSTM only gives for the last step:
    rebuild them with torch.nn.LSTMCell on the same weights."""
    rng = np.random.default_rng(7)
    T, B, I, H = 6, 3, 4, 5
    x = rng.standard_normal((T, B, I))
    W_ih, W_hh = rng.standard_normal((4 * H, I)) * 0.5, rng.standard_normal((4 * H, H)) * 0.5
    b_ih, b_hh = rng.standard_normal(4 * H) * 0.5, rng.standard_normal(4 * H) * 0.5
    _, _, cache = lstm_forward(x, None, None, W_ih, W_hh, b_ih, b_hh)
    cell = torch.nn.LSTMCell(I, H).double()
    with torch.no_grad():
        for name, a in (("weight_ih", W_ih), ("weight_hh", W_hh), ("bias_ih", b_ih), ("bias_hh", b_hh)):
            getattr(cell, name).copy_(torch.from_numpy(a))
        h = torch.zeros(B, H, dtype=torch.float64)
        c = torch.zeros(B, H, dtype=torch.float64)
        for t in range(T):
            h, c = cell(torch.from_numpy(x[t]), (h, c))
            np.testing.assert_allclose(cache.c[t], c.numpy(), rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(cache.y[t], h.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("many_to_one", [False, True])
def test_model_matches_torch_lstm_with_linear_readout(loss, many_to_one):
    from fastbp.lstm import LSTM

    rng = np.random.default_rng(3)
    T, B, I, H, O = 6, 4, 3, 5, 4
    m = LSTM(I, H, O, loss=loss, many_to_one=many_to_one, l2=0.01, dtype="float64", seed=0)
    X = rng.standard_normal((T, B, I))
    lead = (B,) if many_to_one else (T, B)
    Y = rng.standard_normal(lead + (O,)) if loss == "mse" else rng.integers(0, O, lead)
    h0, c0 = rng.standard_normal((2, B, H))
    value, grads, (h_n, c_n) = m.loss_and_grad(X, Y, h0, c0)

    lstm = torch.nn.LSTM(I, H).double()
    lin = torch.nn.Linear(H, O).double()
    p = m.params
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(lstm, name + "_l0").copy_(torch.from_numpy(p[name]))
        lin.weight.copy_(torch.from_numpy(p["weight_out"]))
        lin.bias.copy_(torch.from_numpy(p["bias_out"]))
    y, (h_t, c_t) = lstm(torch.from_numpy(X), (torch.from_numpy(h0)[None], torch.from_numpy(c0)[None]))
    out = lin(y[-1] if many_to_one else y)
    if loss == "mse":
        L = ((out - torch.from_numpy(Y)) ** 2).sum(-1).mean()
    else:
        L = torch.nn.functional.cross_entropy(out.reshape(-1, O), torch.from_numpy(Y).reshape(-1))
    L = L + 0.005 * sum((w ** 2).sum() for w in (lstm.weight_ih_l0, lstm.weight_hh_l0, lin.weight))
    L.backward()
    np.testing.assert_allclose(value, L.item(), rtol=1e-12)
    np.testing.assert_allclose(h_n, h_t[0].detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c_n, c_t[0].detach().numpy(), rtol=1e-12, atol=1e-14)
    torch_grads = {"weight_ih": lstm.weight_ih_l0.grad, "weight_hh": lstm.weight_hh_l0.grad,
                   "bias_ih": lstm.bias_ih_l0.grad, "bias_hh": lstm.bias_hh_l0.grad,
                   "weight_out": lin.weight.grad, "bias_out": lin.bias.grad}
    for name, g in torch_grads.items():
        np.testing.assert_allclose(grads[name], g.numpy(), rtol=1e-10, atol=1e-13, err_msg=name)
