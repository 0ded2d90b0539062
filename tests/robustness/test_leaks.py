"""No leaks: every compiled entry point, called thousands of
times after a warm-up, keeps memory flat. Two measures: tracemalloc (every
Python object and NumPy buffer still alive, byte-exact) and the resident set
(/proc/self/statm, which also sees raw malloc) within a few MiB. The error
paths are included: calls that raise from inside the Cython layer after it
took buffers, built workspaces or handed out gradient arrays.

Not run under the sanitizer build (.ci/sanitize): ASan keeps freed memory in
quarantine, so the resident set there says nothing."""
import gc
import os
import tracemalloc

import numpy as np
import pytest

import fastbp
from fastbp import _core
from fastbp.lstm import LSTM, lstm_backward, lstm_forward
from fastbp.mlp import MLP
from fastbp.optim import Adam
from fastbp.rnn import RNN, rnn_backward, rnn_forward

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
        x, h0, Wih, Whh, b = f32(4, B, 8), f32(B, 16), f32(16, 8), f32(16, 16), f32(16)
        dy = f32(4, B, 16)

        def rnn(x=x, h0=h0, Wih=Wih, Whh=Whh, b=b, dy=dy):
            y, h_n, cache = rnn_forward(x, h0, Wih, Whh, b, b, "tanh")
            rnn_backward(dy, h_n, cache)
        w[f"rnn_forward_backward_B{B}"] = rnn
        Wih4, Whh4, b4 = f32(64, 8), f32(64, 16), f32(64)
        peep = (f32(16), f32(16), f32(16))

        def lstm(x=x, h0=h0, Wih4=Wih4, Whh4=Whh4, b4=b4, dy=dy, peep=peep):
            y, (h, c), cache = lstm_forward(x, h0, h0, Wih4, Whh4, b4, b4, peepholes=peep)
            lstm_backward(dy, h, c, cache)
            y, _, cache = lstm_forward(x, None, None, Wih4, Whh4, b4, b4)
            lstm_backward(dy, None, None, cache, overwrite_cache=True)
        w[f"lstm_forward_backward_B{B}"] = lstm

    net = MLP([33, 64, 10], dtype="float64", seed=0)
    X, y = z, labels % 10
    out = net.loss_and_grad(X, y)[1]
    w["mlp_loss_and_grad"] = lambda: net.loss_and_grad(X, y)
    w["mlp_loss_and_grad_out"] = lambda: net.loss_and_grad(X, y, out=out)
    small, X_big = MLP([2, 3], seed=0), f32(1100, 2)       # forward runs X_big in blocks of 1024 rows
    w["mlp_forward_predict"] = lambda: (net.forward(X), net.predict(X), small.forward(X_big))

    Xs, Ys = f64(5, 4, 3), f64(5, 4, 2)
    rnn_model = RNN(3, 8, 2, dtype="float64", seed=0)
    lstm_model = LSTM(3, 8, 2, peepholes=True, dtype="float64", seed=0)
    w["rnn_model_loss_and_grad"] = lambda: rnn_model.loss_and_grad(Xs, Ys)
    w["lstm_model_loss_and_grad"] = lambda: lstm_model.loss_and_grad(Xs, Ys)
    # variable lengths and resets: the sorted slot layout, the schedule, the reset events
    lengths, reset = np.array([5, 0, 3, 2]), np.zeros((5, 4), bool)
    reset[2, 0] = reset[1, 2] = True
    w["varlen_model_loss_and_grad"] = lambda: (
        rnn_model.loss_and_grad(Xs, Ys, lengths=lengths, reset=reset),
        lstm_model.loss_and_grad(Xs, Ys, lengths=lengths, reset=reset),
        lstm_model.forward(Xs, lengths=lengths))
    x4, dy4 = f64(5, 4, 3), f64(5, 4, 8)

    def varlen_layers():
        y, h, cache = rnn_forward(x4, None, f64(8, 3), f64(8, 8), f64(8), f64(8), lengths=lengths,
                                  reset=reset)
        rnn_backward(dy4, h, cache)
        y, (h, c), cache = lstm_forward(x4, None, None, f64(32, 3), f64(32, 8), f64(32), f64(32),
                                        lengths=lengths, reset=reset)
        lstm_backward(dy4, h, c, cache)
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
], ids=["mlp", "rnn", "lstm"])
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
