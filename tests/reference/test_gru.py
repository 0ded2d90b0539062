"""The NumPy reference GRU (fastbp.reference.gru) against central finite
differences (float64, 1e-6 relative) and torch.nn.GRU's forward and autograd
(1e-10), over shapes including batch 1, T = 1 and hidden 1."""
import numpy as np
import pytest

from fastbp import reference as ref
from fastbp.gradcheck import gradcheck

SHAPES = [(6, 3, 4, 5), (1, 1, 1, 1), (3, 1, 2, 1), (1, 4, 3, 2)]     # T, B, I, H


def make_gru(rng, T, B, I, H, with_h0=True):
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((B, H)) if with_h0 else None
    params = {"weight_ih": 0.6 * rng.standard_normal((3 * H, I)),
              "weight_hh": 0.6 * rng.standard_normal((3 * H, H)),
              "bias_ih": 0.4 * rng.standard_normal(3 * H),
              "bias_hh": 0.4 * rng.standard_normal(3 * H)}
    return x, h0, params


@pytest.mark.parametrize("seeds", ["dy", "dh_n", "both"])
@pytest.mark.parametrize("with_h0", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"T{T}B{B}I{I}H{H}" for T, B, I, H in SHAPES])
def test_gru_matches_finite_differences(shape, with_h0, seeds):
    rng = np.random.default_rng([*shape, with_h0, len(seeds)])
    x, h0, P = make_gru(rng, *shape, with_h0=with_h0)
    T, B, _, H = shape
    R = rng.standard_normal((T, B, H)) if seeds != "dh_n" else None
    Rh = rng.standard_normal((B, H)) if seeds != "dy" else None

    def loss():
        y, h_n, _ = ref.gru_forward(x, h0, **P)
        return (np.sum(y * R) if R is not None else 0.0) + (np.sum(h_n * Rh) if Rh is not None else 0.0)

    _, _, cache = ref.gru_forward(x, h0, **P)
    g = ref.gru_backward(R, Rh, cache)
    params = dict(P, x=x)
    if with_h0:
        params["h0"] = h0
    report = gradcheck(loss, params, {k: g[k] for k in params})
    assert report.ok(1e-6), str(report)



def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("with_h0", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"T{T}B{B}I{I}H{H}" for T, B, I, H in SHAPES])
def test_gru_matches_torch_autograd(shape, with_h0):
    torch = _torch()
    rng = np.random.default_rng([*shape, with_h0, 7])
    x, h0, P = make_gru(rng, *shape, with_h0=with_h0)
    T, B, I, H = shape
    R, Rh = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))
    y, h_n, cache = ref.gru_forward(x, h0, **P)
    g = ref.gru_backward(R, Rh, cache)

    gru = torch.nn.GRU(I, H, dtype=torch.float64)
    with torch.no_grad():
        for name, value in P.items():
            getattr(gru, name + "_l0").copy_(torch.from_numpy(value))
    x_t = torch.from_numpy(x).requires_grad_(True)
    h0_t = torch.from_numpy(h0[None]).requires_grad_(True) if with_h0 else None
    y_t, hn_t = gru(x_t, h0_t)
    ((y_t * torch.from_numpy(R)).sum() + (hn_t[0] * torch.from_numpy(Rh)).sum()).backward()

    def close(ours, theirs, what):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=what)
    close(y, y_t, "y")
    close(h_n, hn_t[0], "h_n")
    close(g["x"], x_t.grad, "dx")
    if with_h0:
        close(g["h0"], h0_t.grad[0], "dh0")
    for name in P:
        close(g[name], getattr(gru, name + "_l0").grad, "d" + name)


def test_gru_computes_in_the_inputs_dtype_and_refuses_bad_shapes():
    rng = np.random.default_rng(3)
    x, h0, P = make_gru(rng, 2, 3, 4, 5)
    y, h_n, cache = ref.gru_forward(x.astype(np.float32), h0.astype(np.float32),
                                    **{k: v.astype(np.float32) for k, v in P.items()})
    assert y.dtype == h_n.dtype == np.float32
    assert ref.gru_backward(None, None, cache)["weight_hh"].dtype == np.float32
    with pytest.raises(ValueError, match="weight_hh"):
        ref.gru_forward(x, h0, P["weight_ih"], P["weight_hh"][:, :4], P["bias_ih"], P["bias_hh"])
    with pytest.raises(ValueError, match="weight_ih"):
        ref.gru_forward(x, h0, P["weight_ih"][:14], P["weight_hh"], P["bias_ih"], P["bias_hh"])
    with pytest.raises(ValueError, match="h0"):
        ref.gru_forward(x, h0[:2], **P)
