"""The shared sequence-model machinery (readout, losses, L2, many-to-one),
driven by the NumPy reference RNN so it is tested independently of any kernel."""
import numpy as np
import pytest

import fastbp
from fastbp import reference as ref
from fastbp._seqmodel import SequenceModel
from fastbp.gradcheck import gradcheck


class ReferenceRNN(SequenceModel):
    """A SequenceModel whose layer is the NumPy reference Elman RNN."""

    def __init__(self, I, H, O, **kw):
        super().__init__(I, H, O, **kw)

    def _init_layer(self, rng):
        H, I = self.hidden_size, self.input_size
        for name, shape in (("weight_ih", (H, I)), ("weight_hh", (H, H)),
                            ("bias_ih", (H,)), ("bias_hh", (H,))):
            self._params[name] = rng.uniform(-0.5, 0.5, shape).astype(self.dtype)

    def _layer_forward(self, X, states, layout, keep_cache=True):
        assert not layout.varlen and not layout.sched.has_resets   # the reference has neither
        p = self._params
        y, h_n, cache = ref.rnn_forward(X, states[0], p["weight_ih"], p["weight_hh"],
                                        p["bias_ih"], p["bias_hh"], "tanh")
        return y, (h_n,), cache

    def _layer_backward(self, dy, dfinal, cache):
        return ref.rnn_backward(dy, dfinal[0], cache)


def _data(rng, T, B, I, O, loss, many_to_one, onehot=False):
    X = rng.standard_normal((T, B, I))
    lead = (B,) if many_to_one else (T, B)
    if loss == "mse":
        Y = rng.standard_normal(lead + (O,))
    else:
        Y = rng.integers(0, O, lead)
        if onehot:
            Y = np.eye(O)[Y]
    return X, Y


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("many_to_one", [False, True])
@pytest.mark.parametrize("l2", [0.0, 0.1])
def test_model_gradients_match_finite_differences(loss, many_to_one, l2):
    rng = np.random.default_rng(1)
    m = ReferenceRNN(3, 4, 5, loss=loss, many_to_one=many_to_one, l2=l2, dtype="float64", seed=0)
    X, Y = _data(rng, 4, 2, 3, 5, loss, many_to_one)
    h0 = rng.standard_normal((2, 4))
    _, grads, _ = m._loss_and_grad(X, Y, (h0,))
    report = gradcheck(lambda: m._loss_and_grad(X, Y, (h0,))[0], m.params, grads)
    assert report.ok(1e-6), str(report)


def test_loss_is_the_mean_over_time_and_batch():
    rng = np.random.default_rng(2)
    m = ReferenceRNN(3, 4, 2, loss="mse", many_to_one=False, l2=0.0, dtype="float64", seed=0)
    X, Y = _data(rng, 5, 3, 3, 2, "mse", False)
    loss, _, _ = m._loss_and_grad(X, Y, (None,))
    out, _ = m._outputs(X, (None,))
    assert out.shape == (5, 3, 2)
    np.testing.assert_allclose(loss, ((out - Y) ** 2).sum(-1).mean(), rtol=1e-12)


def test_one_hot_targets_equal_integer_labels():
    rng = np.random.default_rng(3)
    m = ReferenceRNN(3, 4, 5, loss="cross_entropy", many_to_one=False, l2=0.0, dtype="float64", seed=0)
    X, Y = _data(rng, 3, 2, 3, 5, "cross_entropy", False)
    l1, g1, _ = m._loss_and_grad(X, Y, (None,))
    l2_, g2, _ = m._loss_and_grad(X, np.eye(5)[Y], (None,))
    np.testing.assert_allclose(l1, l2_, rtol=1e-12)
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-10, atol=1e-14)


def test_bad_inputs_name_the_argument():
    m = ReferenceRNN(3, 4, 5, loss="cross_entropy", many_to_one=False, l2=0.0, dtype="float64", seed=0)
    X = np.zeros((2, 1, 3))
    with pytest.raises(ValueError, match="X"):
        m._loss_and_grad(np.zeros((2, 1, 4)), np.zeros((2, 1), int), (None,))
    with pytest.raises(ValueError, match="Y"):
        m._loss_and_grad(X, np.full((2, 1), 5), (None,))
    with pytest.raises(ValueError, match="Y"):
        m._loss_and_grad(X, np.zeros((3, 1), int), (None,))
    with pytest.raises(ValueError, match="h0"):
        m._loss_and_grad(X, np.zeros((2, 1), int), (np.zeros((2, 4)),))
    with pytest.raises(ValueError, match="X"):
        m._loss_and_grad(np.full((2, 1, 3), np.nan), np.zeros((2, 1), int), (None,))
    with pytest.raises(ValueError, match="loss"):
        ReferenceRNN(3, 4, 5, loss="hinge", many_to_one=False, l2=0.0, dtype="float64", seed=0)
    with pytest.raises(TypeError, match="dtype"):
        ReferenceRNN(3, 4, 5, loss="mse", many_to_one=False, l2=0.0, dtype="int32", seed=0)


def test_set_params_is_all_or_nothing():
    m = ReferenceRNN(3, 4, 5, loss="mse", many_to_one=False, l2=0.0, dtype="float64", seed=0)
    before = {k: v.copy() for k, v in m.params.items()}
    with pytest.raises(ValueError, match="weight_hh"):
        m.set_params({"weight_ih": np.ones((4, 3)), "weight_hh": np.ones((3, 3))})
    for k in before:
        np.testing.assert_array_equal(m.params[k], before[k])
    m.set_params({"weight_ih": np.ones((4, 3))})
    np.testing.assert_array_equal(m.params["weight_ih"], 1.0)


@pytest.mark.parametrize("cls, option", [(fastbp.RNN, "many_to_one"), (fastbp.LSTM, "many_to_one"),
                                         (fastbp.LSTM, "peepholes"), (fastbp.RNN, "bidirectional"),
                                         (fastbp.GRU, "many_to_one"), (fastbp.GRU, "bidirectional")])
@pytest.mark.parametrize("value", ["no", 0, 1, None, "False"])
def test_flags_are_true_or_false_never_anything_truthy(cls, option, value):
    """bool("no") is True: a flag that is not True or False is refused by name."""
    with pytest.raises(TypeError, match=option):
        cls(3, 4, 2, loss="mse", l2=0.0, dtype="float64", seed=0, **{option: value})
    net = cls(3, 4, 2, loss="mse", l2=0.0, dtype="float64", seed=0, **{option: np.bool_(True)})
    assert getattr(net, option) is True
