"""Truncated BPTT(k1, k2) (fastbp.tbptt, fit(bptt=(k1, k2))) against a brute
force computation of the same truncated objective through the NumPy reference."""
import numpy as np
import pytest

from fastbp import reference as ref
from fastbp.gru import GRU
from fastbp.lstm import LSTM
from fastbp.optim import SGD
from fastbp.rnn import RNN
from fastbp._stack import model_param_name
from fastbp.tbptt import Stream
from cells import cells
from cells.cells import MODEL_CELLS


def stack_forward(model, X, states):
    """The reference layers one after the other (states: a tuple per layer, one
    (B, H) array per state name): (top y, the finals tuple per layer, caches)."""
    cell = cells.cell_of(model)
    finals, caches = [], []
    for l in range(model.num_layers):
        X, fin, cache = cells.forward(cell, X, states[l], cells.model_layer_weights(model, l),
                                      impl="reference")
        finals.append(fin)
        caches.append(cache)
    return X, finals, caches


def stack_backward(model, dy, caches):
    cell = cells.cell_of(model)
    grads = {}
    for l in reversed(range(model.num_layers)):
        g = cells.backward(cell, dy, (None,) * len(cell.state_names), caches[l], impl="reference")
        for kind in cell.kinds:
            grads[model_param_name(kind, l, 0)] = g[kind]
        dy = g["x"]
    return grads


def zero_states(model, B):
    H, S = model.hidden_size, len(cells.cell_of(model).state_names)
    return [(np.zeros((B, H)),) * S] * model.num_layers


def brute_force(model, X, Y, a, e, k2):
    """Gradient of the mean squared error of steps [a, e), backpropagated to
    step max(0, e − k2) only, the state there a constant (the reference)."""
    B, H = X.shape[1], model.hidden_size
    s = max(0, e - k2)
    states = zero_states(model, B)
    if s:
        _, states, _ = stack_forward(model, X[:s], states)
    y, _, caches = stack_forward(model, X[s:e], states)
    W, b = model.params["weight_out"], model.params["bias_out"]
    new = y[a - s:].reshape(-1, H)
    out = new @ W.T + b
    loss, dout = ref.squared_error(out, Y[a:e].reshape(-1, W.shape[0]))
    dy = np.zeros_like(y)
    dy[a - s:] = (dout @ W).reshape(e - a, B, H)
    grads = stack_backward(model, dy, caches)
    grads["weight_out"], grads["bias_out"] = dout.T @ new, dout.sum(0)
    return loss, grads


def models():
    return [LSTM(3, 4, 2, seed=1), LSTM(3, 4, 2, peepholes=True, seed=2),
            RNN(3, 4, 2, seed=3), RNN(3, 4, 2, nonlinearity="relu", seed=4),
            LSTM(3, 4, 2, num_layers=2, peepholes=True, seed=5), RNN(3, 4, 2, num_layers=3, seed=6),
            GRU(3, 4, 2, seed=7), GRU(3, 4, 2, num_layers=2, seed=8)]


@pytest.mark.parametrize("k1,k2", [(2, 5), (3, 3), (1, 4), (4, 9), (2, 30)])
@pytest.mark.parametrize("which", range(len(models())))
def test_every_chunk_equals_the_brute_force_truncated_gradient(which, k1, k2):
    model = models()[which]
    rng = np.random.default_rng(k1 * 10 + k2)
    T, B = 23, 3                       # > capacity 2·k2 + k1 for most: the buffer compacts
    X = rng.standard_normal((T, B, 3))
    Y = rng.standard_normal((T, B, 2))
    stream = Stream(model, k1, k2, batch=B)
    for a in range(0, T, k1):
        e = min(a + k1, T)
        loss, grads = stream.step(X[a:e], Y[a:e])
        want_loss, want = brute_force(model, X, Y, a, e, k2)
        assert loss == pytest.approx(want_loss, rel=1e-12)
        assert list(grads) == list(model.params)
        for n in model.params:
            np.testing.assert_allclose(grads[n], want[n], rtol=1e-10, atol=1e-12, err_msg=n)
    assert stream.steps == T
    L = model.num_layers
    _, finals, _ = stack_forward(model, X, zero_states(model, B))
    state = stream.state
    state = state if isinstance(state, tuple) else (state,)       # h or (h, c): the models' form
    assert len(state) == len(finals[0])
    for k, s in enumerate(state):
        np.testing.assert_allclose(s.reshape(L, B, 4), np.stack([f[k] for f in finals]),
                                   rtol=1e-12)


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_k2_covering_the_sequence_adds_up_to_full_bptt(cell):
    """Each chunk's losses go back to step 0: the chunks' gradients, weighted by
    their rows, sum to the full-sequence BPTT gradient."""
    model = cells.model(cell, 2, 5, 3, seed=7)
    rng = np.random.default_rng(8)
    T, B, k1 = 11, 4, 3
    X, Y = rng.standard_normal((T, B, 2)), rng.standard_normal((T, B, 3))
    stream = Stream(model, k1, T, batch=B)
    total = {n: 0 for n in model.params}
    for a in range(0, T, k1):
        e = min(a + k1, T)
        _, grads = stream.step(X[a:e], Y[a:e])
        for n in total:
            total[n] = total[n] + grads[n] * (e - a)
    _, full, _ = model.loss_and_grad(X, Y)
    for n in total:
        np.testing.assert_allclose(total[n] / T, full[n], rtol=1e-10, atol=1e-13, err_msg=n)


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_k1_equal_k2_is_ordinary_chunked_truncation(cell):
    """(T a multiple of k: a shorter last chunk would look back k2 = k steps in
    BPTT(k, k), but only to its own start in plain chunking.)"""
    rng = np.random.default_rng(9)
    X, Y = rng.standard_normal((12, 6, 2)), rng.standard_normal((12, 6, 2))
    a, b = cells.model(cell, 2, 3, 2, seed=5), cells.model(cell, 2, 3, 2, seed=5)
    ha = a.fit(X, Y, epochs=2, batch_size=4, optimizer=SGD(lr=0.05), seed=1, progress=False,
               bptt=4)
    hb = b.fit(X, Y, epochs=2, batch_size=4, optimizer=SGD(lr=0.05), seed=1, progress=False,
               bptt=(4, 4))
    for n in a.params:
        np.testing.assert_allclose(a.params[n], b.params[n], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-12)


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_fit_with_k1_k2_and_burn_in_equals_a_hand_written_stream_loop(cell):
    rng = np.random.default_rng(10)
    T, N = 17, 5
    X, Y = rng.standard_normal((T, N, 2)), rng.standard_normal((T, N, 3))
    fitted, manual = cells.model(cell, 2, 4, 3, seed=6), cells.model(cell, 2, 4, 3, seed=6)
    fitted.fit(X, Y, epochs=1, batch_size=N, optimizer=SGD(lr=0.1), shuffle=False,
               progress=False, bptt=(3, 7), burn_in=5)
    opt = SGD(lr=0.1)
    stream = Stream(manual, 3, 7, batch=N)
    stream.advance(X[0:3]).advance(X[3:5])
    for a in range(5, T, 3):
        _, grads = stream.step(X[a:a + 3], Y[a:a + 3])
        opt.step(list(manual.params.values()), list(grads.values()))
    for n in manual.params:
        np.testing.assert_allclose(fitted.params[n], manual.params[n], rtol=1e-12, atol=1e-15)


def test_looking_back_k2_steps_learns_what_k1_chunks_cannot():
    """Predict x_{t-3}: the gradient must cross 3 steps. With chunks of k1 = 2
    and k2 = 8 an LSTM does; chunked truncation at 2 cannot learn the task.
    (The exact truncated gradients of every cell: the brute force above.)"""
    rng = np.random.default_rng(11)
    T, N = 60, 16
    X = rng.standard_normal((T, N, 1))
    Y = np.zeros((T, N, 1))
    Y[3:] = X[:-3]
    result = {}
    for bptt in [(2, 8), (2, 2)]:
        model = LSTM(1, 16, 1, seed=0, mse_form="half_mean")
        before, _ = model.evaluate(X, Y)
        model.fit(X, Y, epochs=80, batch_size=16, progress=False, bptt=bptt, seed=0)
        result[bptt] = model.evaluate(X, Y)[0] / before
    assert result[(2, 8)] < 0.05 and result[(2, 2)] > 0.5, result


def test_stream_errors_name_the_argument():
    model = LSTM(2, 3, 1)
    with pytest.raises(ValueError, match="k2"):
        Stream(model, 5, 2)
    with pytest.raises(ValueError, match="k1"):
        Stream(model, 0)
    with pytest.raises(ValueError, match="many_to_one"):
        Stream(LSTM(2, 3, 1, many_to_one=True), 2)
    with pytest.raises(TypeError, match="model"):
        Stream(object(), 2)
    with pytest.raises(ValueError, match="bidirectional"):
        Stream(LSTM(2, 3, 1, bidirectional=True), 2)
    stream = Stream(model, 2, 4, batch=3)
    with pytest.raises(ValueError, match="X"):
        stream.step(np.zeros((3, 3, 2)), np.zeros((3, 3, 1)))    # more than k1 steps
    with pytest.raises(ValueError, match="X"):
        stream.step(np.zeros((2, 2, 2)), np.zeros((2, 2, 1)))    # wrong batch
    every_state = {n for c in MODEL_CELLS for n in c.state_grads}       # h0, c0
    for cell in MODEL_CELLS:                   # a state the cell does not have, by name
        for name in sorted(every_state - set(cell.state_grads)):
            with pytest.raises(TypeError, match=name):
                Stream(cells.model(cell, 2, 3, 1), 2).reset(**{name: np.zeros((1, 3))})
    X, Y = np.zeros((6, 3, 2)), np.zeros((6, 3, 1))
    with pytest.raises(ValueError, match="bptt"):
        model.fit(X, Y, bptt=(3, 2), progress=False)
    with pytest.raises(ValueError, match="lengths"):
        model.fit(X, Y, bptt=(2, 3), lengths=[6, 6, 6], progress=False)
    with pytest.raises(ValueError, match="burn_in"):
        model.fit(X, Y, burn_in=2, progress=False)
    with pytest.raises(TypeError, match="bptt"):
        model.fit(X, Y, bptt=2.5, progress=False)


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_float32_stream_matches_float64(cell):
    rng = np.random.default_rng(12)
    X, Y = rng.standard_normal((9, 2, 3)), rng.standard_normal((9, 2, 2))
    m64 = cells.model(cell, 3, 5, 2, seed=3)
    m32 = cells.model(cell, 3, 5, 2, seed=3, dtype="float32")
    m32.set_params({n: v.astype(np.float32) for n, v in m64.params.items()})
    s64, s32 = Stream(m64, 2, 5, batch=2), Stream(m32, 2, 5, batch=2)
    for a in range(0, 9, 2):
        l64, g64 = s64.step(X[a:a + 2], Y[a:a + 2])
        l32, g32 = s32.step(X[a:a + 2], Y[a:a + 2])
        assert l32 == pytest.approx(l64, rel=1e-4)
        for n in g64:
            assert g32[n].dtype == np.float32
            np.testing.assert_allclose(g32[n], g64[n], rtol=1e-3, atol=1e-4, err_msg=n)
