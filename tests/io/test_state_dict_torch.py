"""state_dict interop with torch.nn (Sequential for the MLP; RNN, LSTM, GRU
plus a Linear readout for the recurrent models): the same weights give the
same outputs, both ways, as plain NumPy arrays or torch tensors (fastbp
itself never imports torch)."""
import numpy as np
import pytest

from fastbp.mlp import MLP
from cells import cells
from cells.cells import TORCH_CELLS

torch = pytest.importorskip("torch")
nn = torch.nn


def to_torch(sd):
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}


def to_numpy(sd):
    return {k: v.detach().numpy() for k, v in sd.items()}


def split_readout(sd):
    """fastbp's sequence state dict -> (the recurrent layer's, the readout Linear's)."""
    layer = {k: v for k, v in sd.items() if not k.startswith("readout.")}
    readout = {k[len("readout."):]: v for k, v in sd.items() if k.startswith("readout.")}
    return layer, readout


def torch_mlp():
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 4), nn.ReLU(),
                         nn.Linear(4, 3)).double()


def test_mlp_weights_move_into_torch_sequential():
    net = MLP([5, 7, 4, 3], activation=["tanh", "relu"], dtype="float64", seed=1)
    seq = torch_mlp()
    seq.load_state_dict(to_torch(net.state_dict()))          # strict: every name matches
    X = np.random.default_rng(0).standard_normal((6, 5))
    expected = torch.softmax(seq(torch.from_numpy(X)), dim=1).detach().numpy()
    np.testing.assert_allclose(net.forward(X), expected, rtol=1e-12, atol=1e-15)


def test_mlp_weights_come_back_from_torch_sequential():
    torch.manual_seed(0)
    seq = torch_mlp()
    net = MLP([5, 7, 4, 3], activation=["tanh", "relu"], dtype="float64", seed=9)
    net.load_state_dict(to_numpy(seq.state_dict()))
    X = np.random.default_rng(1).standard_normal((6, 5))
    expected = torch.softmax(seq(torch.from_numpy(X)), dim=1).detach().numpy()
    np.testing.assert_allclose(net.forward(X), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("cell", TORCH_CELLS, ids=str)     # torch.nn.RNN (tanh, relu), LSTM, GRU
def test_sequence_weights_move_both_ways(cell):
    model = cells.model(cell, 5, 6, 3, loss="cross_entropy", dtype="float64", seed=2)
    layer = cells.torch_module(cell, 5, 6)
    readout = nn.Linear(6, 3).double()
    layer_sd, readout_sd = split_readout(model.state_dict())
    layer.load_state_dict(to_torch(layer_sd))
    readout.load_state_dict(to_torch(readout_sd))
    X = np.random.default_rng(3).standard_normal((4, 2, 5))
    expected = readout(layer(torch.from_numpy(X))[0]).detach().numpy()
    out, _ = model.forward(X)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)

    # and back: fresh torch weights into a fastbp model built from another seed
    torch.manual_seed(4)
    layer, readout = cells.torch_module(cell, 5, 6), nn.Linear(6, 3).double()
    sd = dict(to_numpy(layer.state_dict()))
    sd.update({"readout." + k: v for k, v in to_numpy(readout.state_dict()).items()})
    other = cells.model(cell, 5, 6, 3, loss="cross_entropy", dtype="float64", seed=5)
    other.load_state_dict(sd)
    out, _ = other.forward(X)
    expected = readout(layer(torch.from_numpy(X))[0]).detach().numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", TORCH_CELLS, ids=str)
def test_torch_tensors_are_accepted_directly(cell):
    layer, readout = cells.torch_module(cell, 5, 6, dtype=np.float32), nn.Linear(6, 3)
    sd = dict(layer.state_dict())
    sd.update({"readout." + k: v for k, v in readout.state_dict().items()})
    model = cells.model(cell, 5, 6, 3, loss="cross_entropy", seed=0)
    model.load_state_dict(sd)                           # tensors (float32), no conversion by hand
    for name, t in sd.items():
        np.testing.assert_array_equal(model.state_dict()[name], t.detach().numpy(), err_msg=name)
