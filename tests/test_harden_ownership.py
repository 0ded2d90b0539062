"""What a call reads without the GIL, fastbp owns: arrays another thread
rewrites meanwhile, caches and parameters tampered with between calls, and
calls that must leave shared objects as they found them.

Race tests run for a bounded time (about a second) and pass on a
deterministic criterion: every call either returns exactly the serial result
or raises a ValueError naming the argument, and the interpreter survives.
"""
import threading
import time

import numpy as np
import pytest

import fastbp
from fastbp import functional
from fastbp._sequence import Layout
from fastbp.lstm import lstm_backward, lstm_forward, lstm_stack_backward, lstm_stack_forward
from fastbp.rnn import rnn_backward, rnn_forward, rnn_stack_backward, rnn_stack_forward

RACE_SECONDS = 0.6


def _flip_until(stop, arr, index, values):
    """Rewrite arr[index] through `values` in a loop until `stop` is set."""
    k = 0
    while not stop.is_set():
        arr[index] = values[k % len(values)]
        k += 1


def _race(arr, index, values, call):
    """Run call() repeatedly while another thread rewrites arr[index]; returns
    the list of outcomes (a result, or the ValueError raised)."""
    stop = threading.Event()
    writer = threading.Thread(target=_flip_until, args=(stop, arr, index, values))
    writer.start()
    outcomes = []
    try:
        deadline = time.perf_counter() + RACE_SECONDS
        while time.perf_counter() < deadline:
            try:
                outcomes.append(call())
            except ValueError as e:
                outcomes.append(e)
    finally:
        stop.set()
        writer.join()
    return outcomes


def _check_outcomes(outcomes, expected, name, same):
    assert outcomes
    for out in outcomes:
        if isinstance(out, ValueError):
            assert name in str(out)
        else:
            assert same(out, expected)


# ---- values that index memory: labels, lengths, resets ------------------------

def test_labels_rewritten_by_another_thread_cannot_crash_softmax_cross_entropy():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4096, 5))
    labels = np.zeros(4096, dtype=np.int64)
    expected = functional.softmax_cross_entropy(logits, labels)
    outcomes = _race(labels, 2049, (1 << 40, 0, -(1 << 40), 0),
                     lambda: functional.softmax_cross_entropy(logits, labels))
    _check_outcomes(outcomes, expected, "target",
                    lambda a, b: a[0] == b[0] and np.array_equal(a[1], b[1]))


def test_labels_rewritten_by_another_thread_cannot_crash_the_mlp():
    net = fastbp.MLP([6, 8, 5], dtype="float64", seed=0)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((2048, 6))
    y = np.zeros(2048, dtype=np.int64)
    expected = net.loss_and_grad(X, y)[0]
    outcomes = _race(y, 1500, (1 << 40, 0), lambda: net.loss_and_grad(X, y)[0])
    _check_outcomes(outcomes, expected, "y", lambda a, b: a == b)


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_labels_rewritten_by_another_thread_cannot_crash_the_sequence_models(kind):
    cls = fastbp.RNN if kind == "rnn" else fastbp.LSTM
    model = cls(3, 4, 5, loss="cross_entropy", seed=0)
    rng = np.random.default_rng(2)
    X = rng.standard_normal((20, 64, 3))
    Y = np.zeros((20, 64), dtype=np.int64)
    expected = model.loss_and_grad(X, Y)[0]
    outcomes = _race(Y, (11, 30), (1 << 40, 0), lambda: model.loss_and_grad(X, Y)[0])
    _check_outcomes(outcomes, expected, "Y", lambda a, b: a == b)


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_lengths_and_resets_rewritten_by_another_thread_cannot_crash(kind):
    model = (fastbp.RNN if kind == "rnn" else fastbp.LSTM)(3, 4, 2, seed=0)
    rng = np.random.default_rng(3)
    T, B = 30, 16
    X, Y = rng.standard_normal((T, B, 3)), rng.standard_normal((T, B, 2))
    lengths = np.full(B, T, dtype=np.int64)
    reset = np.zeros((T, B), dtype=bool)
    expected = model.loss_and_grad(X, Y, lengths=lengths, reset=reset)[0]
    call = lambda: model.loss_and_grad(X, Y, lengths=lengths, reset=reset)[0]  # noqa: E731
    _check_outcomes(_race(lengths, 5, (1 << 30, T, -(1 << 30), T), call), expected, "lengths",
                    lambda a, b: a == b)
    lengths[:] = T
    reset_int = np.zeros((T, B), dtype=np.int8)
    call = lambda: model.loss_and_grad(X, Y, lengths=lengths, reset=reset_int)[0]  # noqa: E731
    _check_outcomes(_race(reset_int, (7, 3), (0, 0, 5, 0), call), expected, "reset",
                    lambda a, b: a == b)


def test_a_schedule_cannot_be_rewritten_after_its_check():
    layout = Layout(5, 3, np.array([5, 2, 4]), np.eye(5, 3, k=-1, dtype=bool))
    sched = layout.sched
    for name in ("order", "lengths", "rows", "reset_ptr", "reset_rows", "starts"):
        arr = getattr(sched, name)
        with pytest.raises(ValueError):
            arr[0] = 1 << 30
        with pytest.raises(ValueError):
            arr.flags.writeable = True


# ---- caches: read-only, and what backward reads is checked ----------------------

def _rnn_args(rng, T=5, B=3, I=2, H=4, gates=1):
    return (rng.standard_normal((T, B, I)), rng.standard_normal((gates * H, I)) * 0.5,
            rng.standard_normal((gates * H, H)) * 0.5, rng.standard_normal(gates * H) * 0.1,
            rng.standard_normal(gates * H) * 0.1)


def _caches(rng, reset=None):
    x, W_ih, W_hh, b_ih, b_hh = _rnn_args(rng)
    _, _, rc = rnn_forward(x, None, W_ih, W_hh, b_ih, b_hh, reset=reset)
    x, W_ih, W_hh, b_ih, b_hh = _rnn_args(rng, gates=4)
    _, _, lc = lstm_forward(x, None, None, W_ih, W_hh, b_ih, b_hh, reset=reset)
    return rc, lc


def test_caches_refuse_assignment_to_their_attributes():
    rc, lc = _caches(np.random.default_rng(4))
    for cache in (rc, lc):
        for name in ("weight_ih", "weight_hh", "hs", "x", "layout"):
            with pytest.raises(AttributeError, match="read-only"):
                setattr(cache, name, np.zeros((1, 1)))
        with pytest.raises(AttributeError, match="read-only"):
            del cache.x
    params = {"weight_ih_l0": np.ones((4, 2)), "weight_hh_l0": np.eye(4),
              "bias_ih_l0": np.zeros(4), "bias_hh_l0": np.zeros(4)}
    _, _, sc = rnn_stack_forward(np.ones((3, 2, 2)), params)
    with pytest.raises(AttributeError, match="read-only"):
        sc.weights = None
    with pytest.raises(TypeError):
        sc.weights[0][0]["weight_hh"] = np.zeros((1, 1))


def test_tampered_caches_are_refused_by_backward_never_read_out_of_bounds():
    rng = np.random.default_rng(5)
    rc, lc = _caches(rng)
    for cache, backward in ((rc, lambda c: rnn_backward(None, None, c)),
                            (lc, lambda c: lstm_backward(None, None, None, c))):
        for name, bad in (("weight_ih", np.zeros((1, 1))), ("weight_hh", np.zeros((1, 1))),
                          ("hs", np.zeros((1, 1))), ("weight_ih", np.zeros((4, 2), np.float32))):
            good = getattr(cache, name)
            object.__setattr__(cache, name, bad)      # past the read-only guard
            with pytest.raises(ValueError):
                backward(cache)
            object.__setattr__(cache, name, good)
        backward(cache)                               # intact again: runs


def test_reshaping_the_callers_weights_in_place_does_not_reshape_the_cache():
    rng = np.random.default_rng(6)
    x, W_ih, W_hh, b_ih, b_hh = _rnn_args(rng, I=4)
    _, _, cache = rnn_forward(x, None, W_ih, W_hh, b_ih, b_hh)
    expected = rnn_backward(None, None, cache)
    W_ih.shape = (W_ih.size,)                         # the caller's array, reshaped in place
    W_hh.shape = (2, 8)
    x.shape = (x.shape[0], -1)
    got = rnn_backward(None, None, cache)
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k])


# ---- a backward that looks read-only is read-only -------------------------------

def _reset(T, B, rng):
    r = rng.random((T, B)) < 0.3
    r[0] = False
    r[2, 0] = True
    return r


def _same_grads(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "rnn_stack", "lstm_stack"])
def test_backward_on_a_shared_cache_with_resets_leaves_it_intact_across_threads(kind):
    rng = np.random.default_rng(7)
    T, B, I, H = 12, 6, 3, 5
    x = rng.standard_normal((T, B, I))
    reset = _reset(T, B, rng)
    G = 4 if "lstm" in kind else 1
    W = lambda *s: rng.standard_normal(s) * 0.5  # noqa: E731
    if kind == "rnn":
        _, _, cache = rnn_forward(x, None, W(H, I), W(H, H), W(H), W(H), reset=reset)
        run = lambda: rnn_backward(np.ones((T, B, H)), None, cache)  # noqa: E731
    elif kind == "lstm":
        _, _, cache = lstm_forward(x, None, None, W(4 * H, I), W(4 * H, H), W(4 * H), W(4 * H),
                                   reset=reset)
        run = lambda: lstm_backward(np.ones((T, B, H)), None, None, cache)  # noqa: E731
    else:
        params = {}
        for l in range(2):
            for d in ("", "_reverse"):
                params.update({f"weight_ih_l{l}{d}": W(G * H, I if l == 0 else 2 * H),
                               f"weight_hh_l{l}{d}": W(G * H, H), f"bias_ih_l{l}{d}": W(G * H),
                               f"bias_hh_l{l}{d}": W(G * H)})
        if kind == "rnn_stack":
            _, _, cache = rnn_stack_forward(x, params, num_layers=2, bidirectional=True,
                                            reset=reset)
            run = lambda: rnn_stack_backward(np.ones((T, B, 2 * H)), None, cache)  # noqa: E731
        else:
            _, _, cache = lstm_stack_forward(x, params, num_layers=2, bidirectional=True,
                                             reset=reset)
            run = lambda: lstm_stack_backward(np.ones((T, B, 2 * H)), None, None,  # noqa: E731
                                              cache)
    states = [a.copy() for a in _state_buffers(cache)]
    expected = run()
    results, errors = [], []

    def worker():
        try:
            deadline = time.perf_counter() + RACE_SECONDS / 2
            while time.perf_counter() < deadline:
                results.append(run())
        except Exception as e:           # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) >= 2
    assert all(_same_grads(r, expected) for r in results)
    for before, after in zip(states, _state_buffers(cache)):
        np.testing.assert_array_equal(after, before)


def _state_buffers(cache):
    if hasattr(cache, "runs"):
        return [run[k] for layer in cache.runs for run in layer for k in ("hs", "cs") if k in run]
    return [cache.hs] + ([cache.cs] if hasattr(cache, "cs") else [])
