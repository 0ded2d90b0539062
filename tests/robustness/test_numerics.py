"""Numbers: extreme logits and saturating nonlinearities
stay finite and silent, float32 LSTM and GRU training over T = 2000 with
clipping gives no NaN, results repeat bit for bit from run to run, and BLAS threads
change nothing in float64 and only float32 rounding (documented in
docs/usage.md, "Guarantees")."""
import warnings

import numpy as np
import pytest

import fastbp
from fastbp.mlp import MLP
from fastbp.optim import SGD, Adam
from fastbp.rnn import RNN
from cells import cells
from cells.cells import FULL_CELLS, MODEL_CELLS

CELL_BY_ID = {c.id: c for c in FULL_CELLS + MODEL_CELLS}

DTYPES = [np.float32, np.float64]


class silent:
    """No warning of any kind, and NumPy floating-point errors raised, inside."""

    def __enter__(self):
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("error")
        self._e = np.errstate(all="raise", under="ignore")
        self._e.__enter__()

    def __exit__(self, *exc):
        self._e.__exit__(*exc)
        self._w.__exit__(*exc)


def all_finite(*arrays):
    return all(np.isfinite(np.asarray(a)).all() for a in arrays)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_and_cross_entropy_with_logits_of_1e4_stay_finite(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4]], dtype)
    labels = np.array([1, 0, 2])                      # the worst labels: ŷ_k ≈ e^-20000
    with silent():
        p = fastbp.activation_forward(logits, "softmax")
        loss, d = fastbp.softmax_cross_entropy(logits, labels)
        loss_p, d_p = fastbp.softmax_cross_entropy(logits, np.eye(3, dtype=dtype)[labels])
    assert all_finite(p, loss, d, loss_p, d_p)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    assert loss == pytest.approx((6e4 + np.log(2)) / 3, rel=1e-9) and loss_p == pytest.approx(loss)
    # the same logits produced inside the models
    net = MLP([3, 3], output="softmax", dtype=dtype)
    net.params = [(np.eye(3), np.zeros(3))]
    rnn = RNN(3, 3, 3, loss="cross_entropy", nonlinearity="identity", dtype=dtype)
    rnn.set_params({"weight_ih": np.eye(3) * 1e-4, "weight_hh": np.zeros((3, 3)), "bias_ih": np.zeros(3),
                    "bias_hh": np.zeros(3), "weight_out": np.eye(3) * 1e4, "bias_out": np.zeros(3)})
    with silent():
        mlp_loss, mlp_grads = net.loss_and_grad(logits, labels)
        rnn_loss, rnn_grads, _ = rnn.loss_and_grad(logits[None], labels[None])
    assert mlp_loss == pytest.approx(loss, rel=1e-6) and rnn_loss == pytest.approx(loss, rel=1e-3)
    assert all_finite(*[g for pair in mlp_grads for g in pair], *rnn_grads.values())


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_and_tanh_at_1000_saturate_without_overflow_warnings(dtype):
    z = np.array([[-1000.0, -100.0, 0.0, 100.0, 1000.0]], dtype)
    with silent():
        s = fastbp.activation_forward(z, "sigmoid")
        t = fastbp.activation_forward(z, "tanh")
        ds = fastbp.activation_backward(np.ones_like(z), s, "sigmoid")
        dt = fastbp.activation_backward(np.ones_like(z), t, "tanh")
    np.testing.assert_allclose(s[0], [0, 0, 0.5, 1, 1], atol=1e-30)
    np.testing.assert_array_equal(t[0], [-1, -1, 0, 1, 1])
    assert all_finite(ds, dt)
    # and where the models apply them: MLP hidden layers, the RNN's tanh, the LSTM's and GRU's gates
    rng = np.random.default_rng(0)
    X = rng.choice([-1000.0, 1000.0], size=(4, 5)).astype(dtype)
    for act in ("sigmoid", "tanh"):
        net = MLP([5, 6, 3], activation=act, dtype=dtype, seed=0)
        with silent():
            loss, grads = net.loss_and_grad(X * 100, np.array([0, 1, 2, 0]))
        assert all_finite(loss, *[g for pair in grads for g in pair])
    Xs = rng.choice([-1000.0, 1000.0], size=(6, 3, 5)).astype(dtype)
    for cell in FULL_CELLS:
        model = cells.model(cell, 5, 4, 2, dtype=dtype, seed=0)
        with silent():
            loss, grads, _ = model.loss_and_grad(Xs, np.zeros((6, 3, 2), dtype))
        assert all_finite(loss, *grads.values()), cell
    peaks = []
    for cell in MODEL_CELLS:                  # every gate saturated: weights of ±1
        w = {k: rng.choice([-1.0, 1.0], cell.kind_shape(k, 8, 5)).astype(dtype)
             for k in cell.kinds}
        w["bias_ih"] = w["bias_hh"] = np.zeros(cell.gates * 8, dtype)
        with silent():
            y, _, cache = cells.forward(cell, Xs, (None,) * len(cell.state_names), w)
            g = cells.backward(cell, np.ones_like(y), (None,) * len(cell.state_names), cache)
        assert np.abs(y).max() <= 1 and all_finite(y, *g.values()), cell
        peaks.append(np.abs(y).max())
    assert max(peaks) == 1                    # tanh saturated to exactly 1 (the RNN's, the GRU's n)


# the gated cells (the control's unclipped run of the Elman RNN overflows its gradients, which the
# optimizer refuses, before its loss is seen to diverge)
@pytest.mark.parametrize("cell", [c for c in MODEL_CELLS if c.gates > 1], ids=str)
def test_float32_gated_cell_over_2000_steps_with_clipping_stays_finite(cell):
    """Full BPTT over T = 2000 in float32 with a step size that makes training
    diverge without clipping (the control: the loss reaches ~1e13); clip_norm
    keeps every step, the loss and the parameters finite and bounded."""
    rng = np.random.default_rng(0)
    T, B, I, H = 2000, 4, 3, 16
    X = rng.standard_normal((T, B, I)).astype(np.float32)
    Y = np.cumsum(X[..., :1], axis=0) * 0.05                        # long-range dependence

    def train(clip_norm):
        model = cells.model(cell, I, H, 1, dtype="float32", seed=0)
        model.params["weight_hh"] *= 4
        with np.errstate(all="ignore"):
            history = model.fit(X, Y, epochs=5, batch_size=B, optimizer=SGD(10.0), clip_norm=clip_norm,
                                progress=False)
        return model, history
    _, unclipped = train(None)
    assert not unclipped["loss"][-1] < 1e6                          # diverged (or NaN)
    model, history = train(1.0)
    assert all_finite(history["loss"], history.step_loss, *model.params.values())
    assert max(history["loss"]) < 1e4                               # bounded (seen: at most ~330)
    loss, grads, finals = cells.model_loss_and_grad(cell, model, X, Y)
    assert all_finite(loss, *finals, *grads.values())


def _train(kind, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "mlp":
        model, X, y, kw = MLP([128, 256, 10], dtype=dtype, seed=0), rng.standard_normal((256, 128)), \
            rng.integers(0, 10, 256), {}
    else:
        model = cells.model(CELL_BY_ID[kind], 16, 64, 4, loss="mse", dtype=dtype, seed=0)
        X, y, kw = rng.standard_normal((16, 96, 16)), rng.standard_normal((16, 96, 4)), {"bptt": 6}
    history = model.fit(X, y, epochs=2, batch_size=64, optimizer=Adam(1e-3), seed=3, progress=False,
                        clip_norm=2.0, **kw)
    return [p.copy() for _, p in model.named_parameters()] + [np.array(history.step_loss)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["mlp"] + [c.id for c in MODEL_CELLS])
def test_training_repeats_bit_for_bit(kind, dtype):
    a, b = _train(kind, dtype), _train(kind, dtype)
    for x, y in zip(a, b):
        assert x.tobytes() == y.tobytes()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", ["mlp"] + [c.id for c in MODEL_CELLS])
def test_one_or_two_blas_threads(kind, dtype):
    """Bit-identical in both dtypes: fastbp hands every product to BLAS on one
    BLAS thread whatever BLAS's setting (src_c/fastbp.h), so OpenBLAS's split
    of a product across threads (which sums edge tiles in another order) never
    applies to fastbp's products."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    results = []
    for n in (1, 2):
        with threadpoolctl.threadpool_limits(n, user_api="blas"):
            results.append(_train(kind, dtype))
    for x, y in zip(*results):
        assert x.tobytes() == y.tobytes()
