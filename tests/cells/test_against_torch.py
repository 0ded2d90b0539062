"""Every cell torch has (torch.nn.RNN, LSTM, GRU; not the LSTM with
peepholes) against torch on the same state dict, float64: the stacks
(num_layers = 2, one or two directions, lengths through packed sequences)
against torch's forward and autograd gradients, and the models' state dicts
loaded into the torch module plus a Linear readout."""
import numpy as np
import pytest

from cells import cells
from cells.cells import TORCH_CELLS

torch = pytest.importorskip("torch")

TOL = dict(rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", TORCH_CELLS, ids=str)
def test_two_layer_stack_equals_torch_autograd(cell, bidirectional, with_lengths):
    rng = np.random.default_rng([len(cell.id), bidirectional, with_lengths])
    T, B, I, H, L = 6, 5, 3, 4, 2
    D = 2 if bidirectional else 1
    torch.manual_seed(len(cell.id))
    module = cells.torch_module(cell, I, H, L, bidirectional)
    params = {n: t.detach().numpy().copy() for n, t in module.state_dict().items()}
    x = rng.standard_normal((T, B, I))
    states = tuple(rng.standard_normal((L * D, B, H)) for _ in cell.state_names)
    dy = rng.standard_normal((T, B, D * H))
    dfinals = tuple(rng.standard_normal((L * D, B, H)) for _ in cell.state_names)
    lengths = np.array([6, 2, 5, 1, 6]) if with_lengths else None

    y, finals, cache = cells.stack_forward(cell, x, params, states, L, bidirectional, lengths)
    g = cells.stack_backward(cell, dy, dfinals, cache)

    xt = torch.tensor(x, requires_grad=True)
    st = tuple(torch.tensor(s, requires_grad=True) for s in states)
    yt, ft = cells.torch_run(cell, module, xt, st, lengths)
    loss = (yt * torch.from_numpy(dy)).sum() + sum((f * torch.from_numpy(d)).sum()
                                                   for f, d in zip(ft, dfinals))
    loss.backward()

    assert y.shape == (T, B, D * H)
    np.testing.assert_allclose(y, yt.detach().numpy(), err_msg="y", **TOL)
    for name, f, f_t in zip(cell.state_names, finals, ft):
        np.testing.assert_allclose(f, f_t.detach().numpy(), err_msg=name + "_n", **TOL)
    want = {"x": xt.grad}
    want.update({n: s.grad for n, s in zip(cell.state_grads, st)})
    want.update({n: p.grad for n, p in module.named_parameters()})
    assert set(g) == set(want)
    for name, w in want.items():
        np.testing.assert_allclose(g[name], w.numpy(), err_msg=name, **TOL)


@pytest.mark.parametrize("stacked", [False, True], ids=["one-layer", "two-layers-bidirectional"])
@pytest.mark.parametrize("cell", TORCH_CELLS, ids=str)
def test_the_models_state_dict_loads_into_torch_and_gives_the_same_outputs(cell, stacked):
    rng = np.random.default_rng(len(cell.id) + stacked)
    T, B, I, H, O = 5, 3, 3, 4, 2
    L, bidirectional = (2, True) if stacked else (1, False)
    net = cells.model(cell, I, H, O, loss="cross_entropy", seed=1, num_layers=L,
                      bidirectional=bidirectional)
    sd = net.state_dict()
    assert list(sd)[-2:] == ["readout.weight", "readout.bias"]
    module = cells.torch_module(cell, I, H, L, bidirectional)
    module.load_state_dict({n: torch.from_numpy(a) for n, a in sd.items()
                            if not n.startswith("readout.")}, strict=True)
    readout = torch.nn.Linear((2 if bidirectional else 1) * H, O, dtype=torch.float64)
    readout.load_state_dict({"weight": torch.from_numpy(sd["readout.weight"]),
                             "bias": torch.from_numpy(sd["readout.bias"])}, strict=True)
    X = rng.standard_normal((T, B, I))
    lengths = np.array([5, 2, 4])
    for lens in (None, lengths):
        out, finals = cells.model_forward(cell, net, X, lengths=lens)
        with torch.no_grad():
            yt, ft = cells.torch_run(cell, module, torch.from_numpy(X),
                                     (None,) * len(cell.state_names), lens)
            want = readout(yt).numpy()
        if lens is not None:
            want[np.arange(T)[:, None] >= lens[None, :]] = 0      # fastbp: zero past each length
        np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-13)
        for f, f_t in zip(finals, ft):
            np.testing.assert_allclose(f, f_t.numpy().reshape(f.shape), rtol=1e-12, atol=1e-13)

    # and back: torch's weights into a model built from another seed
    torch.manual_seed(7)
    module = cells.torch_module(cell, I, H, L, bidirectional)
    readout = torch.nn.Linear((2 if bidirectional else 1) * H, O, dtype=torch.float64)
    sd_t = dict(module.state_dict())
    sd_t.update({"readout." + n: t for n, t in readout.state_dict().items()})
    other = cells.model(cell, I, H, O, loss="cross_entropy", seed=2, num_layers=L,
                        bidirectional=bidirectional)
    other.load_state_dict(sd_t)
    out, _ = cells.model_forward(cell, other, X)
    with torch.no_grad():
        want = readout(cells.torch_run(cell, module, torch.from_numpy(X),
                                       (None,) * len(cell.state_names))[0]).numpy()
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-13)
