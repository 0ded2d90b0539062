"""Stacked and bidirectional layers against torch.nn.LSTM / torch.nn.RNN
autograd on the same weights: with and without lengths (torch on
pack_padded_sequence(enforce_sorted=False)), given initial states, float64
tight and float32; state dicts both ways; the models against torch modules
plus a Linear readout."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fastbp.lstm import LSTM, lstm_stack_backward, lstm_stack_forward  # noqa: E402
from fastbp.rnn import RNN, rnn_stack_backward, rnn_stack_forward  # noqa: E402

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-4, atol=2e-5)}


def _torch_dtype(dtype):
    return torch.float64 if dtype == np.float64 else torch.float32


def _module(kind, I, H, L, bidirectional, dtype, nonlinearity="tanh", seed=0):
    torch.manual_seed(seed)
    if kind == "lstm":
        return torch.nn.LSTM(I, H, num_layers=L, bidirectional=bidirectional,
                             dtype=_torch_dtype(dtype))
    return torch.nn.RNN(I, H, num_layers=L, bidirectional=bidirectional, nonlinearity=nonlinearity,
                        dtype=_torch_dtype(dtype))


def _run_torch(module, x, states, lengths):
    """Output (T, B, D·H) padded with zeros, and the final states."""
    T = x.shape[0]
    if lengths is None:
        return module(x, states)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.as_tensor(lengths),
                                                     enforce_sorted=False)
    out, final = module(packed, states)
    y, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    return y, final


@pytest.mark.parametrize("kind, nonlinearity", [("lstm", "tanh"), ("rnn", "tanh"),
                                                ("rnn", "relu")])
@pytest.mark.parametrize("L", [2, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_stack_equals_torch_autograd(kind, nonlinearity, L, bidirectional, with_lengths, dtype):
    rng = np.random.default_rng([len(kind), len(nonlinearity), L, bidirectional, with_lengths])
    T, B, I, H = 9, 6, 4, 5
    D = 2 if bidirectional else 1
    module = _module(kind, I, H, L, bidirectional, dtype, nonlinearity)
    params = {n: p.detach().numpy().copy() for n, p in module.state_dict().items()}
    x = rng.standard_normal((T, B, I)).astype(dtype)
    lengths = np.array([9, 3, 6, 1, 9, 4]) if with_lengths else None
    h0 = rng.standard_normal((L * D, B, H)).astype(dtype)
    c0 = rng.standard_normal((L * D, B, H)).astype(dtype)
    dy = rng.standard_normal((T, B, D * H)).astype(dtype)
    dh = rng.standard_normal((L * D, B, H)).astype(dtype)
    dc = rng.standard_normal((L * D, B, H)).astype(dtype)

    xt, h0t, c0t = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    if kind == "lstm":
        yt, (hnt, cnt) = _run_torch(module, xt, (h0t, c0t), lengths)
        loss = (yt * torch.tensor(dy)).sum() + (hnt * torch.tensor(dh)).sum() \
            + (cnt * torch.tensor(dc)).sum()
        y, (h_n, c_n), cache = lstm_stack_forward(x, params, h0, c0, num_layers=L,
                                                  bidirectional=bidirectional, lengths=lengths)
        g = lstm_stack_backward(dy, dh, dc, cache)
        np.testing.assert_allclose(c_n, cnt.detach().numpy(), **TOL[dtype])
    else:
        yt, hnt = _run_torch(module, xt, h0t, lengths)
        loss = (yt * torch.tensor(dy)).sum() + (hnt * torch.tensor(dh)).sum()
        y, h_n, cache = rnn_stack_forward(x, params, h0, num_layers=L, bidirectional=bidirectional,
                                          nonlinearity=nonlinearity, lengths=lengths)
        g = rnn_stack_backward(dy, dh, cache)
    loss.backward()
    assert y.dtype == dtype
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(h_n, hnt.detach().numpy(), **TOL[dtype])
    grads_t = {"x": xt.grad, "h0": h0t.grad}
    if kind == "lstm":
        grads_t["c0"] = c0t.grad
    grads_t.update({n: p.grad for n, p in module.named_parameters()})
    assert set(g) == set(grads_t)
    for n, want in grads_t.items():
        np.testing.assert_allclose(g[n], want.numpy(), err_msg=n, **TOL[dtype])


@pytest.mark.parametrize("Model, kind", [(LSTM, "lstm"), (RNN, "rnn")])
@pytest.mark.parametrize("many_to_one", [False, True])
def test_model_equals_torch_module_and_linear(Model, kind, many_to_one):
    """The model's loss and every gradient equal torch's stack + Linear readout
    (many-to-one: the readout of [h_n forward, h_n reverse] of the top layer,
    as torch users write it), lengths included."""
    rng = np.random.default_rng(7)
    T, B, I, H, O, L = 7, 5, 3, 4, 3, 2
    model = Model(I, H, O, loss="cross_entropy", many_to_one=many_to_one, num_layers=L,
                  bidirectional=True, seed=3)
    sd = model.state_dict()
    module = _module(kind, I, H, L, True, np.float64)
    module.load_state_dict({n: torch.from_numpy(a) for n, a in sd.items()
                            if not n.startswith("readout")})
    readout = torch.nn.Linear(2 * H, O, dtype=torch.float64)
    readout.load_state_dict({"weight": torch.from_numpy(sd["readout.weight"]),
                             "bias": torch.from_numpy(sd["readout.bias"])})
    X = rng.standard_normal((T, B, I))
    lengths = np.array([7, 2, 5, 1, 7])
    lead = (B,) if many_to_one else (T, B)
    Y = rng.integers(0, O, lead)
    loss, grads, _ = model.loss_and_grad(X, Y, lengths=lengths)

    yt, final = _run_torch(module, torch.from_numpy(X), None, lengths)
    h_n = final[0] if kind == "lstm" else final
    if many_to_one:
        logits = readout(torch.cat([h_n[-2], h_n[-1]], dim=1))
        target = torch.from_numpy(Y)
    else:
        valid = torch.from_numpy(np.arange(T)[:, None] < lengths[None, :])
        logits = readout(yt[valid])
        target = torch.from_numpy(Y)[valid]
    loss_t = torch.nn.functional.cross_entropy(logits, target)
    loss_t.backward()
    assert loss == pytest.approx(loss_t.item(), rel=1e-12)
    want = {n: p.grad.numpy() for n, p in module.named_parameters()}
    want["readout.weight"], want["readout.bias"] = readout.weight.grad.numpy(), \
        readout.bias.grad.numpy()
    by_torch_name = dict(zip(sd, grads.values()))
    for n, w in want.items():
        np.testing.assert_allclose(by_torch_name[n], w, rtol=1e-10, atol=1e-13, err_msg=n)


@pytest.mark.parametrize("Model, kind", [(LSTM, "lstm"), (RNN, "rnn")])
def test_state_dicts_move_between_torch_and_fastbp(Model, kind):
    rng = np.random.default_rng(8)
    T, B, I, H, O, L = 6, 3, 4, 5, 2, 3
    module = _module(kind, I, H, L, True, np.float32, seed=5)
    readout = torch.nn.Linear(2 * H, O)
    sd_t = {n: t for n, t in module.state_dict().items()}
    sd_t.update({"readout." + n: t for n, t in readout.state_dict().items()})
    model = Model(I, H, O, num_layers=L, bidirectional=True, dtype="float32", seed=0)
    model.load_state_dict(sd_t)                       # torch tensors load as they are
    X = rng.standard_normal((T, B, I)).astype(np.float32)
    out, _ = model.forward(X)
    with torch.no_grad():
        want = readout(module(torch.from_numpy(X))[0]).numpy()
    np.testing.assert_allclose(out, want, rtol=2e-4, atol=2e-5)
    stack_forward = lstm_stack_forward if kind == "lstm" else rnn_stack_forward
    y = stack_forward(X, module.state_dict(), num_layers=L, bidirectional=True)[0]
    with torch.no_grad():
        np.testing.assert_allclose(y, module(torch.from_numpy(X))[0].numpy(), rtol=2e-4,
                                   atol=2e-5)

    # and back: fastbp's state dict loads into fresh torch modules, strictly
    other = _module(kind, I, H, L, True, np.float32, seed=6)
    sd = model.state_dict()
    other.load_state_dict({n: torch.from_numpy(a) for n, a in sd.items()
                           if not n.startswith("readout")}, strict=True)
    for n, t in other.state_dict().items():
        np.testing.assert_array_equal(t.numpy(), sd_t[n].numpy())
