"""fastbp.mlp.MLP == torch.autograd on the same weights (torch layout, no reshuffling)."""
import numpy as np
import pytest

from fastbp.mlp import MLP

torch = pytest.importorskip("torch")
F = torch.nn.functional

TORCH_ACTS = {
    "identity": lambda z: z,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "softmax": lambda z: torch.softmax(z, dim=-1),
}


def torch_loss_and_grad(net, X, y):
    """The same network, loss and L2 convention written with torch ops."""
    dtype = torch.float64 if net.dtype == np.float64 else torch.float32
    Ws = [torch.tensor(W, dtype=dtype, requires_grad=True) for W, _ in net.params]
    bs = [torch.tensor(b, dtype=dtype, requires_grad=True) for _, b in net.params]
    h = torch.tensor(np.asarray(X), dtype=dtype)
    for l, (W, b) in enumerate(zip(Ws, bs)):
        z = F.linear(h, W, b)                       # torch.nn.Linear: z = h Wᵀ + b
        if net.loss == "cross_entropy" and l == len(Ws) - 1:
            h = z                                   # cross_entropy takes the logits
        else:
            h = TORCH_ACTS[net.activations[l]](z)
    y_t = torch.tensor(np.asarray(y))
    if net.loss == "cross_entropy":
        loss = F.cross_entropy(h, y_t if y_t.dtype == torch.int64 else y_t.to(dtype))
    elif net.mse_form == "sum":
        loss = ((h - y_t.to(dtype)) ** 2).sum(dim=-1).mean()
    else:
        loss = 0.5 * F.mse_loss(h, y_t.to(dtype))
    loss = loss + net.l2 / 2 * sum((W ** 2).sum() for W in Ws)   # biases not penalised
    grads = torch.autograd.grad(loss, Ws + bs)
    L = len(Ws)
    return loss.item(), [(grads[l].numpy(), grads[L + l].numpy()) for l in range(L)]


CASES = [
    ([784, 256, 256, 10], "relu", "softmax", "cross_entropy", "sum", "labels"),
    ([5, 7, 3], "relu", "softmax", "cross_entropy", "sum", "labels"),
    ([5, 7, 3], "tanh", "softmax", "cross_entropy", "sum", "onehot"),
    ([5, 7, 3], "sigmoid", "softmax", "cross_entropy", "sum", "probs"),
    ([6, 5, 4, 3], ["softmax", "identity"], "softmax", "cross_entropy", "sum", "labels"),
    ([5, 7, 3], "softmax", "softmax", "mse", "sum", "regression"),
    ([5, 7, 3], "tanh", "identity", "mse", "half_mean", "regression"),
    ([6, 5, 4, 3], ["relu", "sigmoid"], "tanh", "mse", "sum", "regression"),
    ([4, 3], "relu", "sigmoid", "mse", "half_mean", "regression"),
]


def make_target(n_out, batch, kind, rng):
    if kind == "labels":
        return rng.integers(0, n_out, size=batch)
    if kind == "onehot":
        return np.eye(n_out)[rng.integers(0, n_out, size=batch)]
    if kind == "probs":
        p = rng.random((batch, n_out))
        return p / p.sum(axis=1, keepdims=True)
    return rng.standard_normal((batch, n_out))


@pytest.mark.parametrize("sizes,activation,output,loss,mse_form,target", CASES)
@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("l2", [0.0, 0.2])
def test_matches_torch_autograd_float64(sizes, activation, output, loss, mse_form, target, batch, l2):
    net = MLP(sizes, activation=activation, output=output, loss=loss, mse_form=mse_form, l2=l2,
              dtype="float64", seed=1)
    rng = np.random.default_rng(2)
    net.params = [(W, rng.standard_normal(b.shape) * 0.2) for W, b in net.params]
    X = rng.standard_normal((batch, sizes[0]))
    y = make_target(sizes[-1], batch, target, rng)
    value, grads = net.loss_and_grad(X, y)
    t_value, t_grads = torch_loss_and_grad(net, X, y)
    assert value == pytest.approx(t_value, rel=1e-10, abs=1e-12)
    for (dW, db), (tW, tb) in zip(grads, t_grads):
        np.testing.assert_allclose(dW, tW, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(db, tb, rtol=1e-9, atol=1e-12)
    out = net.forward(X)
    with torch.no_grad():
        h = torch.tensor(X)
        for l, (W, b) in enumerate(net.params):
            h = TORCH_ACTS[net.activations[l]](F.linear(h, torch.tensor(W), torch.tensor(b)))
    np.testing.assert_allclose(out, h.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("batch", [1, 32])
def test_matches_torch_autograd_float32(batch):
    """The issue's network in float32 against torch in float32."""
    net = MLP([784, 256, 256, 10], dtype="float32", seed=0)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((batch, 784)).astype(np.float32)
    y = rng.integers(0, 10, size=batch)
    value, grads = net.loss_and_grad(X, y)
    t_value, t_grads = torch_loss_and_grad(net, X, y)
    assert value == pytest.approx(t_value, rel=1e-5)
    for (dW, db), (tW, tb) in zip(grads, t_grads):
        np.testing.assert_allclose(dW, tW, rtol=0, atol=1e-5 * np.abs(tW).max())
        np.testing.assert_allclose(db, tb, rtol=0, atol=1e-5 * np.abs(tb).max())


def test_weights_load_into_torch_linear_unchanged():
    """params are torch.nn.Linear.weight / .bias as they are."""
    net = MLP([5, 7, 3], activation="tanh", dtype="float32", seed=4)
    layers = [torch.nn.Linear(5, 7), torch.nn.Linear(7, 3)]
    with torch.no_grad():
        for layer, (W, b) in zip(layers, net.params):
            layer.weight.copy_(torch.from_numpy(W))
            layer.bias.copy_(torch.from_numpy(b))
    X = np.random.default_rng(5).standard_normal((4, 5)).astype(np.float32)
    with torch.no_grad():
        expected = torch.softmax(layers[1](torch.tanh(layers[0](torch.from_numpy(X)))), dim=-1)
    np.testing.assert_allclose(net.forward(X), expected.numpy(), rtol=1e-5, atol=1e-6)
