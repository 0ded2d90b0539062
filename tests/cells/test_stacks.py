"""Every cell's stack (fastbp.<cell>_stack_forward / _backward, torch names)
equals its single-layer compiled calls chained by hand: layer l > 0 reads
[forward, reverse] of the layer below, the reverse direction runs each row's
valid steps backwards (resets mirrored), and the gradients flow back the same
way; on both per-step product paths. This covers the cells torch lacks (the
LSTM with peepholes) and the resets torch has no form for."""
import numpy as np
import pytest

from cells import cells
from cells.cells import CELLS


def _reverse(a, lengths):
    """Each row's first L_b steps in reverse order (zero past L_b); its own inverse."""
    T, B = a.shape[:2]
    out = np.zeros_like(a)
    for b in range(B):
        L = T if lengths is None else int(lengths[b])
        out[:L, b] = a[:L, b][::-1]
    return out


def _reverse_resets(reset, lengths):
    """A cut before step c of a row of length L is a cut before step L - c reversed."""
    if reset is None:
        return None
    T, B = reset.shape
    out = np.zeros_like(reset)
    for b in range(B):
        L = T if lengths is None else int(lengths[b])
        for c in range(1, L):
            if reset[c, b]:
                out[L - c, b] = True
    return out


def chained(cell, x, params, states, L, D, lengths, reset, dy, dfinals):
    """The stack by hand from the single-layer compiled calls."""
    T, B, _ = x.shape
    H = params["weight_hh_l0"].shape[1]
    runs, inp = [], x
    for l in range(L):
        outs, layer = [], []
        for d in range(D):
            suffix = f"_l{l}" + ("_reverse" if d else "")
            w = {k: params[k + suffix] for k in cell.kinds}
            st = tuple(s[l * D + d] for s in states)
            if d:
                y, fin, cache = cells.forward(cell, _reverse(inp, lengths), st, w, lengths,
                                              _reverse_resets(reset, lengths))
                y = _reverse(y, lengths)
            else:
                y, fin, cache = cells.forward(cell, inp, st, w, lengths, reset)
            outs.append(y)
            layer.append((fin, cache, suffix))
        runs.append(layer)
        inp = np.concatenate(outs, axis=2)
    y_top = inp
    finals = tuple(np.stack([run[0][i] for layer in runs for run in layer])
                   for i in range(len(cell.state_names)))
    grads = {}
    dstates = [[None] * D for _ in range(L)]
    d_out = dy
    for l in reversed(range(L)):
        d_in = 0
        for d, (_, cache, suffix) in enumerate(runs[l]):
            dy_d = d_out[..., d * H:(d + 1) * H]
            g = cells.backward(cell, _reverse(dy_d, lengths) if d else dy_d,
                               tuple(f[l * D + d] for f in dfinals), cache)
            d_in = d_in + (_reverse(g["x"], lengths) if d else g["x"])
            grads.update({k + suffix: g[k] for k in cell.kinds})
            dstates[l][d] = tuple(g[n] for n in cell.state_grads)
        d_out = d_in
    grads["x"] = d_out
    for i, n in enumerate(cell.state_grads):
        grads[n] = np.stack([dstates[l][d][i] for l in range(L) for d in range(D)])
    return y_top, finals, grads


STACKS = {"one-layer": (1, False), "two-layers": (2, False), "bidirectional": (1, True),
          "two-layers-bidirectional": (2, True)}
SEQUENCES = {"whole": (False, False), "lengths": (True, False), "resets": (False, True),
             "lengths-and-resets": (True, True)}


@pytest.mark.parametrize("path", ["packed", "blas"])
@pytest.mark.parametrize("sequences", sorted(SEQUENCES))
@pytest.mark.parametrize("stack", sorted(STACKS))
@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_stack_equals_the_single_layers_chained(cell, stack, sequences, path, monkeypatch):
    calls = cells.force_product_path(cell, path, monkeypatch)
    L, bidirectional = STACKS[stack]
    with_lengths, with_resets = SEQUENCES[sequences]
    D = 2 if bidirectional else 1
    rng = np.random.default_rng([len(cell.id), len(stack), len(sequences)])
    T, B, I, H = 6, 4, 3, 4
    params = cells.stack_params(cell, rng, I, H, L, bidirectional)
    x = rng.standard_normal((T, B, I))
    states = tuple(rng.standard_normal((L * D, B, H)) for _ in cell.state_names)
    dy = rng.standard_normal((T, B, D * H))
    dfinals = tuple(rng.standard_normal((L * D, B, H)) for _ in cell.state_names)
    lengths = np.array([6, 2, 0, 5]) if with_lengths else None
    reset = None
    if with_resets:
        reset = np.zeros((T, B), bool)
        reset[[2, 4, 1, 3], [0, 0, 1, 3]] = True

    y, finals, cache = cells.stack_forward(cell, x, params, states, L, bidirectional, lengths,
                                           reset)
    g = cells.stack_backward(cell, dy, dfinals, cache)
    cells.check_path_taken(calls, path)
    y_r, finals_r, g_r = chained(cell, x, params, states, L, D, lengths, reset, dy, dfinals)

    tol = dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, y_r, err_msg="y", **tol)
    assert len(finals) == len(cell.state_names)
    for name, f, f_r in zip(cell.state_names, finals, finals_r):
        np.testing.assert_allclose(f, f_r, err_msg=name + "_n", **tol)
    assert set(g) == set(g_r) == {"x", *cell.state_grads, *params}
    for name in g_r:
        np.testing.assert_allclose(g[name], g_r[name], err_msg=name, **tol)


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_stack_refuses_missing_and_unexpected_parameters_by_name(cell):
    rng = np.random.default_rng(1)
    params = cells.stack_params(cell, rng, 3, 4, 2, False)
    x = rng.standard_normal((3, 2, 3))
    none = (None,) * len(cell.state_names)
    with pytest.raises(ValueError, match="weight_ih_l1_reverse"):
        cells.stack_forward(cell, x, params, none, 2, True)
    with pytest.raises(ValueError, match="bias_hh_l1"):
        cells.stack_forward(cell, x, {k: v for k, v in params.items() if k != "bias_hh_l1"},
                            none, 2, False)
    with pytest.raises(ValueError, match="weight_ih_l2"):
        cells.stack_forward(cell, x, dict(params, weight_ih_l2=params["weight_ih_l1"]), none, 2,
                            False)
    for i, name in enumerate(cell.state_grads):
        states = list(none)
        states[i] = np.zeros((1, 2, 4))             # (B, H) without the L·D axis
        with pytest.raises(ValueError, match=name):
            cells.stack_forward(cell, x, params, tuple(states), 2, False)
