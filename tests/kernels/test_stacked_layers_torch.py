"""Stacked and bidirectional layers of every cell torch has (torch.nn.RNN,
LSTM, GRU) against torch autograd on the same weights: with and without
lengths (torch on pack_padded_sequence(enforce_sorted=False)), given initial
states, float64 tight and float32; state dicts both ways; the models against
torch modules plus a Linear readout. (Two float64 layers:
tests/cells/test_against_torch.py.)"""
import numpy as np
import pytest

from cells import cells
from cells.cells import TORCH_CELLS

torch = pytest.importorskip("torch")

TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=2e-4, atol=2e-5)}


def _module(cell, I, H, L, bidirectional, dtype, seed=0):
    torch.manual_seed(seed)
    return cells.torch_module(cell, I, H, L, bidirectional, dtype)


@pytest.mark.parametrize("L, dtype", [(3, np.float64), (2, np.float32), (3, np.float32)],
                         ids=["3-float64", "2-float32", "3-float32"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("cell", TORCH_CELLS, ids=str)
def test_stack_equals_torch_autograd(cell, L, bidirectional, with_lengths, dtype):
    rng = np.random.default_rng([len(cell.id), L, bidirectional, with_lengths])
    T, B, I, H = 9, 6, 4, 5
    D = 2 if bidirectional else 1
    module = _module(cell, I, H, L, bidirectional, dtype)
    params = {n: p.detach().numpy().copy() for n, p in module.state_dict().items()}
    x = rng.standard_normal((T, B, I)).astype(dtype)
    lengths = np.array([9, 3, 6, 1, 9, 4]) if with_lengths else None
    states = tuple(rng.standard_normal((L * D, B, H)).astype(dtype) for _ in cell.state_names)
    dy = rng.standard_normal((T, B, D * H)).astype(dtype)
    dfinals = tuple(rng.standard_normal((L * D, B, H)).astype(dtype) for _ in cell.state_names)

    xt = torch.tensor(x, requires_grad=True)
    st = tuple(torch.tensor(s, requires_grad=True) for s in states)
    yt, ft = cells.torch_run(cell, module, xt, st, lengths)
    loss = (yt * torch.tensor(dy)).sum() + sum((f * torch.tensor(d)).sum()
                                               for f, d in zip(ft, dfinals))
    loss.backward()
    y, finals, cache = cells.stack_forward(cell, x, params, states, L, bidirectional, lengths)
    g = cells.stack_backward(cell, dy, dfinals, cache)

    assert y.dtype == dtype
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL[dtype])
    assert len(finals) == len(ft) == len(cell.state_names)
    for name, f, f_t in zip(cell.state_names, finals, ft):
        np.testing.assert_allclose(f, f_t.detach().numpy(), err_msg=name + "_n", **TOL[dtype])
    grads_t = {"x": xt.grad}
    grads_t.update({n: s.grad for n, s in zip(cell.state_grads, st)})
    grads_t.update({n: p.grad for n, p in module.named_parameters()})
    assert set(g) == set(grads_t)
    for n, want in grads_t.items():
        np.testing.assert_allclose(g[n], want.numpy(), err_msg=n, **TOL[dtype])


@pytest.mark.parametrize("many_to_one", [False, True])
@pytest.mark.parametrize("cell", TORCH_CELLS, ids=str)
def test_model_equals_torch_module_and_linear(cell, many_to_one):
    """The model's loss and every gradient equal torch's stack + Linear readout
    (many-to-one: the readout of [h_n forward, h_n reverse] of the top layer,
    as torch users write it), lengths included."""
    rng = np.random.default_rng(7)
    T, B, I, H, O, L = 7, 5, 3, 4, 3, 2
    model = cells.model(cell, I, H, O, loss="cross_entropy", many_to_one=many_to_one,
                        num_layers=L, bidirectional=True, seed=3)
    sd = model.state_dict()
    module = _module(cell, I, H, L, True, np.float64)
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

    yt, finals = cells.torch_run(cell, module, torch.from_numpy(X),
                                 (None,) * len(cell.state_names), lengths)
    h_n = finals[cell.state_names.index("h")]
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
    assert set(by_torch_name) == set(want)
    for n, w in want.items():
        np.testing.assert_allclose(by_torch_name[n], w, rtol=1e-10, atol=1e-13, err_msg=n)


@pytest.mark.parametrize("cell", TORCH_CELLS, ids=str)
def test_state_dicts_move_between_torch_and_fastbp(cell):
    rng = np.random.default_rng(8)
    T, B, I, H, O, L = 6, 3, 4, 5, 2, 3
    module = _module(cell, I, H, L, True, np.float32, seed=5)
    readout = torch.nn.Linear(2 * H, O)
    sd_t = {n: t for n, t in module.state_dict().items()}
    sd_t.update({"readout." + n: t for n, t in readout.state_dict().items()})
    model = cells.model(cell, I, H, O, num_layers=L, bidirectional=True, dtype="float32", seed=0)
    model.load_state_dict(sd_t)                       # torch tensors load as they are
    X = rng.standard_normal((T, B, I)).astype(np.float32)
    out, _ = model.forward(X)
    with torch.no_grad():
        want = readout(module(torch.from_numpy(X))[0]).numpy()
    np.testing.assert_allclose(out, want, rtol=2e-4, atol=2e-5)
    y = cells.stack_forward(cell, X, module.state_dict(), (None,) * len(cell.state_names), L,
                            True)[0]
    with torch.no_grad():
        np.testing.assert_allclose(y, module(torch.from_numpy(X))[0].numpy(), rtol=2e-4,
                                   atol=2e-5)

    # and back: fastbp's state dict loads into fresh torch modules, strictly
    other = _module(cell, I, H, L, True, np.float32, seed=6)
    sd = model.state_dict()
    other.load_state_dict({n: torch.from_numpy(a) for n, a in sd.items()
                           if not n.startswith("readout")}, strict=True)
    for n, t in other.state_dict().items():
        np.testing.assert_array_equal(t.numpy(), sd_t[n].numpy())
