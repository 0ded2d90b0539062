"""No leaks: every compiled entry point, called thousands of
times after a warm-up, keeps memory flat. Two measures: tracemalloc (every
Python object and NumPy buffer still alive, byte-exact) and the resident set
(/proc/self/statm, which also sees raw malloc) within a few MiB. The error
paths are included: calls that raise from inside the Cython layer after it
took buffers, built workspaces or handed out gradient arrays.

Not run under the sanitizer build (.ci/sanitize): ASan keeps freed memory in
quarantine, so the resident set there says nothing."""
import gc
import inspect
import os
import tracemalloc

import numpy as np
import pytest

import fastbp
from fastbp import _core
from fastbp.lstm import LSTM, lstm_backward, lstm_forward
from fastbp.mlp import MLP
from fastbp.optim import Adam
from fastbp.rnn import RNN, rnn_forward
from cells import cells
from cells.cells import FULL_CELLS, MODEL_CELLS

CALLS = 1000            # per workload, after WARMUP calls
WARMUP = 100
TRACED_SLACK = 32 << 10     # 1000 calls leaking one 40-byte object would already exceed it
RSS_SLACK = 4 << 20


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _raises(fn, exc=ValueError):
    def call():
        try:
            fn()
        except exc:
            return
        raise AssertionError("expected an error")
    return call


def _workloads():
    rng = np.random.default_rng(0)
    f64 = lambda *s: rng.standard_normal(s)               # noqa: E731
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)   # noqa: E731
    w = {}

    z = f64(16, 33)

    def activations():
        for name in ("identity", "sigmoid", "tanh", "relu", "softmax"):
            a = fastbp.activation_forward(z, name)
            fastbp.activation_backward(z, a, name)
    w["activations"] = activations
    labels = rng.integers(0, 33, 16)
    probs = np.abs(z) / np.abs(z).sum(1, keepdims=True)
    w["losses"] = lambda: (fastbp.softmax_cross_entropy(z, labels), fastbp.softmax_cross_entropy(z, probs),
                           fastbp.squared_error(z, probs))

    for B in (1, 48):   # packed recurrent product at B = 1, BLAS at B = 48
        x, h0, dy = f32(4, B, 8), f32(B, 16), f32(4, B, 16)
        for cell in FULL_CELLS:         # every cell, with its optional kinds (peepholes)
            weights = {k: f32(*cell.kind_shape(k, 16, 8)) for k in cell.kinds}
            plain = cells.Cell(cell.name, cell.name, cell.function_options)   # no optional kinds
            none = (None,) * len(cell.state_names)
            overwrite = ({"overwrite_cache": True} if "overwrite_cache"
                         in inspect.signature(cell.backward_fn).parameters else {})

            def layer(cell=cell, plain=plain, x=x, h0=h0, dy=dy, weights=weights, none=none,
                      overwrite=overwrite):
                y, finals, cache = cells.forward(cell, x, (h0,) * len(none), weights)
                cells.backward(cell, dy, finals, cache)
                y, _, cache = cells.forward(plain, x, none, weights)      # no states given
                cell.backward_fn(dy, *none, cache, **overwrite)
            w[f"{cell.name}_forward_backward_B{B}"] = layer

    net = MLP([33, 64, 10], dtype="float64", seed=0)
    X, y = z, labels % 10
    out = net.loss_and_grad(X, y)[1]
    w["mlp_loss_and_grad"] = lambda: net.loss_and_grad(X, y)
    w["mlp_loss_and_grad_out"] = lambda: net.loss_and_grad(X, y, out=out)
    small, X_big = MLP([2, 3], seed=0), f32(1100, 2)       # forward runs X_big in blocks of 1024 rows
    w["mlp_forward_predict"] = lambda: (net.forward(X), net.predict(X), small.forward(X_big))

    Xs, Ys = f64(5, 4, 3), f64(5, 4, 2)
    seq_models = [cells.model(cell, 3, 8, 2, dtype="float64", seed=0) for cell in FULL_CELLS]
    for cell, model in zip(FULL_CELLS, seq_models):
        w[f"{cell.name}_model_loss_and_grad"] = lambda model=model: model.loss_and_grad(Xs, Ys)
    # streaming: model.step's kept buffers (reused: as many call shapes as it keeps; buffers
    # replaced while tracing would count as growth here), its errors
    x_nan = Xs[0].copy()
    x_nan[0, 0] = np.nan

    def steps():
        for model in seq_models:
            state = None
            for k in (1, 2, 3, 2, 1):
                _, state = model.step(Xs[:k], state)
            model.step(Xs[0], state)
            _raises(lambda: model.step(x_nan, state))()
    w["model_step"] = steps
    # variable lengths and resets: the sorted slot layout, the schedule, the reset events
    lengths, reset = np.array([5, 0, 3, 2]), np.zeros((5, 4), bool)
    reset[2, 0] = reset[1, 2] = True
    w["varlen_model_loss_and_grad"] = lambda: (
        [model.loss_and_grad(Xs, Ys, lengths=lengths, reset=reset) for model in seq_models],
        seq_models[-1].forward(Xs, lengths=lengths))
    x4, dy4 = f64(5, 4, 3), f64(5, 4, 8)
    layer_weights = [{k: f64(*cell.kind_shape(k, 8, 3)) for k in cell.kinds} for cell in MODEL_CELLS]

    def varlen_layers():
        for cell, weights in zip(MODEL_CELLS, layer_weights):
            y, finals, cache = cells.forward(cell, x4, (None,) * len(cell.state_names), weights,
                                             lengths=lengths, reset=reset)
            cells.backward(cell, dy4, finals, cache)
    w["varlen_layers"] = varlen_layers

    # error paths inside the compiled layer
    bad_labels = np.where(np.arange(16) == 15, 99, y)
    X_nan = X.copy()
    X_nan[3, 3] = np.nan
    bad_out = [(np.zeros((64, 33)), np.zeros(64)), (np.zeros((10, 63)), np.zeros(10))]
    w["mlp_errors"] = lambda: (_raises(lambda: net.loss_and_grad(X, bad_labels))(),
                               _raises(lambda: net.loss_and_grad(X, y, out=bad_out))(),
                               _raises(lambda: net.loss_and_grad(X_nan, y))(),
                               _raises(lambda: net.forward(X_nan))())
    x, Wih, Whh, b = f64(4, 2, 3), f64(5, 3), f64(5, 5), f64(5)
    sched = _core.Schedule(4, 2)
    hs2, x2 = np.zeros((10, 5)), x.reshape(8, 3)
    w["core_errors"] = lambda: (
        _raises(lambda: _core.engine_forward(
            _core.CELL_RNN, 1, [{"x": x2, "states": [hs2], "gates": None}],
            [{"weight_ih": Wih, "weight_hh": Whh, "bias_ih": b, "bias_hh": b, "peep": None}],
            {"work": None, "pack": np.zeros(1), "rec": None}, sched))(),
        _raises(lambda: _core.Schedule(4, 2, order=[0, 0], lengths=[2, 1]))(),
        _raises(lambda: _core.Schedule(4, 2, reset_ptr=[0, 0, 0, 0, 9], reset_rows=[1]))(),
        _raises(lambda: rnn_forward(x, None, Wih, Whh[:4], b, b))(),
        _raises(lambda: lstm_forward(x, None, None, f64(20, 3), f64(20, 5), f64(20), f64(20),
                                     lengths=[5, 1]))(),
        _raises(lambda: fastbp.gru_forward(x, None, f64(15, 3), f64(15, 5), f64(15), f64(15),
                                           lengths=[5, 1]))(),
        _raises(lambda: fastbp.softmax_cross_entropy(z, labels + 40))())
    _, _, cache = lstm_forward(x, None, None, f64(20, 3), f64(20, 5), f64(20), f64(20))
    lstm_backward(None, None, None, cache, overwrite_cache=True)
    w["consumed_cache_error"] = _raises(lambda: lstm_backward(None, None, None, cache), RuntimeError)
    return w


WORKLOADS = _workloads()


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_memory_stays_flat_over_thousands_of_calls(name):
    call = WORKLOADS[name]
    for _ in range(WARMUP):
        call()
    gc.collect()
    rss_before = _rss()
    tracemalloc.start()
    try:
        traced_before = tracemalloc.get_traced_memory()[0]
        for _ in range(CALLS):
            call()
        gc.collect()
        traced_growth = tracemalloc.get_traced_memory()[0] - traced_before
    finally:
        tracemalloc.stop()
    rss_growth = _rss() - rss_before
    assert traced_growth < TRACED_SLACK, f"{traced_growth} bytes still allocated after {CALLS} calls"
    assert rss_growth < RSS_SLACK, f"resident set grew by {rss_growth >> 10} KiB over {CALLS} calls"


@pytest.mark.parametrize("make", [
    lambda: (MLP([6, 16, 3], seed=0), np.random.default_rng(1).standard_normal((64, 6)),
             np.arange(64) % 3, {}),
    lambda: (RNN(3, 8, 2, seed=0), np.random.default_rng(2).standard_normal((12, 16, 3)),
             np.random.default_rng(3).standard_normal((12, 16, 2)), {"bptt": 4}),
    lambda: (LSTM(3, 8, 2, seed=0), np.random.default_rng(4).standard_normal((12, 16, 3)),
             np.random.default_rng(5).standard_normal((12, 16, 2)), {"bptt": 5}),
    lambda: (fastbp.GRU(3, 8, 2, seed=0), np.random.default_rng(6).standard_normal((12, 16, 3)),
             np.random.default_rng(7).standard_normal((12, 16, 2)), {"bptt": (3, 6)}),
], ids=["mlp", "rnn", "lstm", "gru"])
def test_fit_steps_keep_memory_flat(make):
    model, X, y, kw = make()
    opt = Adam(1e-3)

    def epoch():
        model.fit(X, y, epochs=1, batch_size=8, optimizer=opt, progress=False, clip_norm=1.0, **kw)
    for _ in range(20):
        epoch()
    gc.collect()
    rss_before = _rss()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(150):                # ~1000-2000 optimizer steps
            epoch()
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert growth < TRACED_SLACK, f"{growth} bytes still allocated"
    assert _rss() - rss_before < RSS_SLACK
