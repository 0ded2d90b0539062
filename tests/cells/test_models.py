"""Every cell's model (fastbp.RNN, LSTM, GRU: the cell, a linear readout, a
loss): loss_and_grad against central finite differences; save and
fastbp.load give back the same model; fit lowers the loss of a tiny problem
and is deterministic for a seed."""
import numpy as np
import pytest

import fastbp
from fastbp.gradcheck import gradcheck

from cells import cells
from cells.cells import CELLS

T, B, I, H, O = 4, 3, 2, 3, 2
# (loss, many_to_one, num_layers, bidirectional, lengths and resets)
FD_CASES = {"mse-one-layer": ("mse", False, 1, False, False),
            "cross-entropy-many-to-one-with-lengths-and-resets":
                ("cross_entropy", True, 1, False, True),
            "cross-entropy-two-layers-bidirectional-with-lengths-and-resets":
                ("cross_entropy", False, 2, True, True),
            "mse-many-to-one-two-layers": ("mse", True, 2, False, False)}


def _targets(rng, loss, many_to_one, lead=(T, B)):
    lead = (lead[1],) if many_to_one else lead
    return rng.integers(0, O, lead) if loss == "cross_entropy" else rng.standard_normal(lead + (O,))


@pytest.mark.parametrize("case", sorted(FD_CASES))
@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_loss_and_grad_equals_central_finite_differences(cell, case):
    loss, many_to_one, L, bidirectional, sequences = FD_CASES[case]
    rng = np.random.default_rng([len(cell.id), L, bidirectional, sequences])
    net = cells.model(cell, I, H, O, loss=loss, many_to_one=many_to_one, l2=0.01, seed=3,
                      num_layers=L, bidirectional=bidirectional)
    X = rng.standard_normal((T, B, I))
    Y = _targets(rng, loss, many_to_one)
    lead = (L * (2 if bidirectional else 1),) if (L > 1 or bidirectional) else ()
    states = tuple(0.5 * rng.standard_normal(lead + (B, H)) for _ in cell.state_names)
    kw = {}
    if sequences:
        kw = {"lengths": np.array([4, 1, 3]), "reset": np.eye(T, B, k=-2, dtype=bool)}

    def objective():
        return cells.model_loss_and_grad(cell, net, X, Y, states, **kw)[0]

    value, grads, finals = cells.model_loss_and_grad(cell, net, X, Y, states, **kw)
    assert list(grads) == list(net.params)
    assert len(finals) == len(cell.state_names)
    for f in finals:
        assert f.shape == lead + (B, H)
    assert value == objective()                     # no state kept between calls
    report = gradcheck(objective, net.params, grads)
    assert report.ok(1e-6), str(report)


@pytest.mark.parametrize("stacked", [False, True], ids=["one-layer", "two-layers-bidirectional"])
@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_save_and_load_give_back_the_same_model(cell, stacked, tmp_path):
    L, bidirectional = (2, True) if stacked else (1, False)
    net = cells.model(cell, I, H, O, loss="cross_entropy", many_to_one=True, l2=0.25,
                      dtype="float32", seed=4, num_layers=L, bidirectional=bidirectional)
    rng = np.random.default_rng(5)
    for name, p in net.params.items():               # not the initial values
        p[...] = rng.standard_normal(p.shape)
    path = tmp_path / "model.npz"
    net.save(path)
    back = fastbp.load(path)
    assert type(back) is type(net)
    for attr in ("input_size", "hidden_size", "output_size", "loss", "many_to_one", "l2", "dtype",
                 "num_layers", "bidirectional", *cell.options):
        assert getattr(back, attr) == getattr(net, attr), attr
    assert list(back.params) == list(net.params)
    for name in net.params:
        assert back.params[name].dtype == np.float32
        np.testing.assert_array_equal(back.params[name], net.params[name], err_msg=name)
    assert list(back.state_dict()) == list(net.state_dict())
    X = rng.standard_normal((T, B, I)).astype(np.float32)
    np.testing.assert_array_equal(back.predict(X), net.predict(X))
    np.testing.assert_array_equal(cells.model_forward(cell, back, X)[0],
                                  cells.model_forward(cell, net, X)[0])
    assert type(net).load(path).state_dict().keys() == net.state_dict().keys()


def _tiny_problem(rng, N=16):
    """A learnable regression: the running mean of the inputs."""
    X = rng.standard_normal((6, N, I))
    Y = np.cumsum(X, axis=0)[..., :O] / np.arange(1, 7)[:, None, None]
    return X, Y


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_fit_lowers_the_loss_and_is_deterministic_for_a_seed(cell):
    rng = np.random.default_rng(len(cell.id))
    X, Y = _tiny_problem(rng)
    runs = []
    for _ in range(2):
        net = cells.model(cell, I, 6, O, loss="mse", seed=11)
        before, _ = net.evaluate(X, Y)
        history = net.fit(X, Y, epochs=15, batch_size=4, optimizer=fastbp.optim.Adam(lr=0.02),
                          seed=3, progress=False)
        after, _ = net.evaluate(X, Y)
        runs.append((before, after, history["loss"], {n: p.copy() for n, p in net.params.items()}))
    (before, after, losses, params), (before2, after2, losses2, params2) = runs
    assert after < 0.5 * before, (before, after)
    assert losses[-1] < losses[0]
    assert before2 == before and after2 == after and losses2 == losses
    for name in params:
        np.testing.assert_array_equal(params2[name], params[name], err_msg=name)
    # another shuffling seed is another run
    other = cells.model(cell, I, 6, O, loss="mse", seed=11)
    other.fit(X, Y, epochs=2, batch_size=4, optimizer=fastbp.optim.Adam(lr=0.02), seed=4,
              progress=False)
    net2 = cells.model(cell, I, 6, O, loss="mse", seed=11)
    net2.fit(X, Y, epochs=2, batch_size=4, optimizer=fastbp.optim.Adam(lr=0.02), seed=3,
             progress=False)
    assert any(not np.array_equal(other.params[n], net2.params[n]) for n in params)
