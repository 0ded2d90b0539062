"""What is the GRU's own (fastbp/gru.py): its cache (the gates r, z, n and the
recurrent side of n, m = h W_hnᵀ + b_hn) against the reference's on both
product paths, the two bias gradients that differ in the n block only, the
model's torch initialisation and its loss and gradients against
torch.nn.GRU plus a Linear readout. (Everything every cell shares:
tests/cells.)"""
import numpy as np
import pytest

from fastbp import _recurrent
from fastbp import reference as ref
from fastbp.gru import GRU, GRUCache, gru_backward, gru_forward

from cells import cells

CELL = next(c for c in cells.CELLS if c.name == "gru")


@pytest.mark.parametrize("path", ["packed", "blas"])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_cache_holds_the_gates_and_the_recurrent_side_of_n(path, with_lengths, monkeypatch):
    monkeypatch.setattr(_recurrent, "FORCE_PRODUCTS", path)
    rng = np.random.default_rng(1)
    T, B, I, H = 5, 3, 2, 4
    p = cells.problem(CELL, rng, T, B, I, H)
    w = [p["weights"][k] for k in CELL.kinds]
    lengths = np.array([5, 2, 0]) if with_lengths else None
    y, h_n, cache = gru_forward(p["x"], p["states"][0], *w, lengths=lengths)
    assert isinstance(cache, GRUCache)
    assert cache.gates.shape == (T, B, CELL.gates * H) and cache.m.shape == (T, B, H)
    for b in range(B):
        L = T if lengths is None else lengths[b]
        _, _, cache_r = ref.gru_forward(p["x"][:L, b:b + 1], p["states"][0][b:b + 1], *w)
        np.testing.assert_allclose(cache.gates[:L, b], cache_r["gates"][:, 0], rtol=1e-12,
                                   atol=1e-14)
        np.testing.assert_allclose(cache.m[:L, b], cache_r["m"][:, 0], rtol=1e-12, atol=1e-14)
        assert not cache.gates[L:, b].any() and not cache.m[L:, b].any()
    for name in ("gates", "m"):
        with pytest.raises(AttributeError, match="read-only"):
            setattr(cache, name, None)


def test_the_bias_gradients_differ_in_the_n_block_only_by_the_reset_gate():
    """bias_ih's gradient sums [dr, dz, dn], bias_hh's [dr, dz, dn ⊙ r] (the cell
    keeps its recurrent product apart: CellSpec.separate): equal in the r and z
    blocks, different in the n block, and equal there too once r = 1."""
    assert CELL.spec.separate
    rng = np.random.default_rng(2)
    T, B, I, H = 6, 4, 3, 5
    p = cells.problem(CELL, rng, T, B, I, H)
    rz, n = slice(0, 2 * H), slice(2 * H, 3 * H)
    for r_is_one in (False, True):
        w = dict(p["weights"])
        if r_is_one:                                    # σ(40 + ...) is 1.0 in float64
            w["bias_ih"] = w["bias_ih"].copy()
            w["bias_ih"][:H] = 40.0
        args = [w[k] for k in CELL.kinds]
        _, _, cache = gru_forward(p["x"], p["states"][0], *args)
        g = gru_backward(p["dy"], p["dfinals"][0], cache)
        _, _, cache_r = ref.gru_forward(p["x"], p["states"][0], *args)
        g_r = ref.gru_backward(p["dy"], p["dfinals"][0], cache_r)
        for k in ("bias_ih", "bias_hh"):
            np.testing.assert_allclose(g[k], g_r[k], rtol=1e-12, atol=1e-14, err_msg=k)
        np.testing.assert_allclose(g["bias_ih"][rz], g["bias_hh"][rz], rtol=1e-12, atol=1e-14)
        assert np.all(cache.gates[..., :H] == 1) == r_is_one
        assert np.allclose(g["bias_ih"][n], g["bias_hh"][n], rtol=1e-12, atol=1e-14) == r_is_one


@pytest.mark.parametrize("num_layers, bidirectional", [(1, False), (2, True)])
def test_the_model_initialises_as_torch_does(num_layers, bidirectional):
    """Every layer array ~ U(−1/√H, 1/√H) as torch.nn.GRU, the readout ~ U(−1/√F,
    1/√F) as torch.nn.Linear (F = D·H), the same for a seed, another for another."""
    H, D = 16, 2 if bidirectional else 1
    model = GRU(3, H, 2, seed=0, num_layers=num_layers, bidirectional=bidirectional)
    layer = {n: a for n, a in model.params.items() if n not in ("weight_out", "bias_out")}
    assert len(layer) == num_layers * D * len(CELL.kinds)
    for name, a in layer.items():
        assert a.shape[0] == CELL.gates * H, name
        assert np.abs(a).max() <= 1 / np.sqrt(H) and a.std() > 0.2 / np.sqrt(H), name
    for name in ("weight_out", "bias_out"):
        assert np.abs(model.params[name]).max() <= 1 / np.sqrt(D * H), name
    again = GRU(3, H, 2, seed=0, num_layers=num_layers, bidirectional=bidirectional)
    other = GRU(3, H, 2, seed=1, num_layers=num_layers, bidirectional=bidirectional)
    for name, a in model.params.items():
        np.testing.assert_array_equal(again.params[name], a)
        assert not np.array_equal(other.params[name], a), name


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("many_to_one", [False, True])
def test_model_matches_torch_gru_with_linear_readout(loss, many_to_one):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    T, B, I, H, O = 6, 4, 3, 5, 3
    model = GRU(I, H, O, loss=loss, many_to_one=many_to_one, seed=4)
    sd = model.state_dict()
    layer = cells.torch_module(CELL, I, H)
    layer.load_state_dict({n: torch.from_numpy(a) for n, a in sd.items()
                           if not n.startswith("readout.")})
    readout = torch.nn.Linear(H, O, dtype=torch.float64)
    readout.load_state_dict({"weight": torch.from_numpy(sd["readout.weight"]),
                             "bias": torch.from_numpy(sd["readout.bias"])})
    X = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((B, H))
    lead = (B,) if many_to_one else (T, B)
    Y = rng.integers(0, O, lead) if loss == "cross_entropy" else rng.standard_normal(lead + (O,))
    value, grads, h_n = model.loss_and_grad(X, Y, h0)

    h0t = torch.tensor(h0[None], requires_grad=True)
    yt, hnt = layer(torch.from_numpy(X), h0t)
    out = readout(hnt[0] if many_to_one else yt)
    if loss == "cross_entropy":
        loss_t = torch.nn.functional.cross_entropy(out.reshape(-1, O), torch.from_numpy(Y).reshape(-1))
    else:                               # mse_form="sum": the squared error summed over O, mean over rows
        loss_t = ((out - torch.from_numpy(Y)) ** 2).sum(-1).mean()
    loss_t.backward()
    assert value == pytest.approx(loss_t.item(), rel=1e-12)
    np.testing.assert_allclose(h_n, hnt[0].detach().numpy(), rtol=1e-12, atol=1e-14)
    want = {n: p.grad.numpy() for n, p in layer.named_parameters()}
    want["readout.weight"], want["readout.bias"] = readout.weight.grad.numpy(), \
        readout.bias.grad.numpy()
    by_torch_name = dict(zip(sd, grads.values()))
    assert set(by_torch_name) == set(want)
    for n, g in want.items():
        np.testing.assert_allclose(by_torch_name[n], g, rtol=1e-10, atol=1e-13, err_msg=n)
