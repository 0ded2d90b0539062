"""What a call reads without the GIL, fastbp owns: arrays another thread
rewrites meanwhile, caches and parameters tampered with between calls, and
calls that must leave shared objects as they found them.

Race tests run for a bounded time (about a second) and pass on a
deterministic criterion: every call either returns exactly the serial result
or raises a ValueError naming the argument, and the interpreter survives.
"""
import inspect
import re
import threading
import time

from types import MappingProxyType

import numpy as np
import pytest

import fastbp
from fastbp import functional
from fastbp._sequence import Layout
from fastbp.tbptt import Stream
from fastbp.rnn import rnn_backward, rnn_forward, rnn_stack_backward, rnn_stack_forward
from cells import cells
from cells.cells import MODEL_CELLS
from installed_python import run_python

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


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_labels_rewritten_by_another_thread_cannot_crash_the_sequence_models(cell):
    model = cells.model(cell, 3, 4, 5, loss="cross_entropy", seed=0)
    rng = np.random.default_rng(2)
    X = rng.standard_normal((20, 64, 3))
    Y = np.zeros((20, 64), dtype=np.int64)
    expected = model.loss_and_grad(X, Y)[0]
    outcomes = _race(Y, (11, 30), (1 << 40, 0), lambda: model.loss_and_grad(X, Y)[0])
    _check_outcomes(outcomes, expected, "Y", lambda a, b: a == b)


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_lengths_and_resets_rewritten_by_another_thread_cannot_crash(cell):
    model = cells.model(cell, 3, 4, 2, seed=0)
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
    for name in ("order", "lengths", "rows", "reset_ptr", "reset_rows"):   # what C reads
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


def _none(cell):
    return (None,) * len(cell.state_names)


def _caches(rng, reset=None):
    """(cell, a one-layer cache of it) for every cell."""
    out = []
    for cell in MODEL_CELLS:
        p = cells.problem(cell, rng, 5, 3, 2, 4)
        out.append((cell, cells.forward(cell, p["x"], _none(cell), p["weights"], reset=reset)[2]))
    return out


def test_caches_refuse_assignment_to_their_attributes():
    for _, cache in _caches(np.random.default_rng(4)):
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


def test_a_caches_layout_and_lengths_cannot_be_changed_after_its_forward():
    """The backward reads the row order, lengths and resets from the cache's
    Layout: neither its attributes nor its arrays can be changed (a reversed
    row order gave silently wrong gradients)."""
    rng = np.random.default_rng(14)
    T, B, I, H = 5, 3, 2, 4
    x = rng.standard_normal((T, B, I))
    W_ih, W_hh, b = rng.standard_normal((H, I)), 0.3 * rng.standard_normal((H, H)), np.zeros(H)
    lengths = np.array([5, 2, 4])
    reset = np.eye(T, B, k=-1, dtype=bool)
    params = {"weight_ih_l0": W_ih, "weight_hh_l0": W_hh, "bias_ih_l0": b, "bias_hh_l0": b,
              "weight_ih_l0_reverse": W_ih, "weight_hh_l0_reverse": W_hh,
              "bias_ih_l0_reverse": b, "bias_hh_l0_reverse": b}
    y, _, rc = rnn_forward(x, None, W_ih, W_hh, b, b, lengths=lengths, reset=reset)
    ys, _, sc = rnn_stack_forward(x, params, bidirectional=True, lengths=lengths, reset=reset)
    sc.layout.reverse_sched                          # built lazily, read-only too
    expected = rnn_backward(np.ones_like(y), None, rc)
    for cache in (rc, sc):
        layout = cache.layout
        for name in ("sched", "order", "lengths", "varlen", "T", "_rsched"):
            with pytest.raises(AttributeError, match="read-only"):
                setattr(layout, name, None)
        with pytest.raises(AttributeError, match="read-only"):
            del layout.order
        for arr in (cache.lengths, layout.order, layout._sorted, layout._events):
            with pytest.raises(ValueError, match="read-only"):
                arr[...] = 0
            with pytest.raises(ValueError):
                arr.flags.writeable = True
    got = rnn_backward(np.ones_like(y), None, rc)
    for k in expected:
        assert np.array_equal(got[k], expected[k])
    rnn_stack_backward(np.ones_like(ys), None, sc)


def test_tampered_caches_are_refused_by_backward_never_read_out_of_bounds():
    """The buffers a backward hands to C, replaced through the caches' private
    names (the engine's weights, state buffers, inputs), are refused."""
    rng = np.random.default_rng(5)
    for cell, cache in _caches(rng):
        def backward(c, cell=cell):
            return cells.backward(cell, None, _none(cell), c)
        weights = dict(cache._weights)
        for name, bad in (
                ("_weights", MappingProxyType(dict(weights, weight_ih=np.zeros((1, 1))))),
                ("_weights", MappingProxyType(dict(weights, weight_hh=np.zeros((1, 1))))),
                ("_weights", MappingProxyType(dict(
                    weights, weight_ih=weights["weight_ih"].astype(np.float32)))),
                ("_states", (np.zeros((1, 1)),) + cache._states[1:]),
                ("_xs", np.zeros((1, 1)))):
            good = getattr(cache, name)
            object.__setattr__(cache, name, bad)      # past the read-only guard
            with pytest.raises((ValueError, TypeError)):
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


@pytest.mark.parametrize("stacked", [False, True], ids=["layer", "stack"])
@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_backward_on_a_shared_cache_with_resets_leaves_it_intact_across_threads(cell, stacked):
    rng = np.random.default_rng(7)
    T, B, I, H = 12, 6, 3, 5
    x = rng.standard_normal((T, B, I))
    reset = _reset(T, B, rng)
    none = _none(cell)
    if stacked:
        params = cells.stack_params(cell, rng, I, H, 2, True)
        _, _, cache = cells.stack_forward(cell, x, params, none, 2, True, reset=reset)
        run = lambda: cells.stack_backward(cell, np.ones((T, B, 2 * H)), none, cache)  # noqa: E731
    else:
        _, _, cache = cells.forward(cell, x, none, cells.layer_weights(cell, rng, I, H),
                                    reset=reset)
        run = lambda: cells.backward(cell, np.ones((T, B, H)), none, cache)  # noqa: E731
    states = [a.copy() for a in _state_buffers(cell, cache)]
    assert len(states) == len(cell.state_names) * (4 if stacked else 1)
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
    for before, after in zip(states, _state_buffers(cell, cache)):
        np.testing.assert_array_equal(after, before)


def _state_buffers(cell, cache):
    """Every state buffer a backward reads: each layer and direction's of a stack
    (its runs' "states"), a layer cache's hs (, cs)."""
    if hasattr(cache, "runs"):
        return [s for layer in cache.runs for run in layer for s in run["states"]]
    return [getattr(cache, name + "s") for name in cell.state_names]


# ---- parameters: tampered ones refused by name at every entry -------------------

def _tampered(model, name):
    """Ways to break a model's parameter array behind set_params' back."""
    p = model.params[name]
    yield "wrong shape", np.zeros((1, 1), model.dtype), ValueError
    yield "wrong dtype", p.astype(np.float32), TypeError
    yield "not contiguous", np.repeat(p, 2, axis=-1)[..., ::2], ValueError
    yield "not an array", p.tolist(), TypeError
    yield "byte-swapped", p.astype(p.dtype.newbyteorder()), TypeError
    reshaped = p.copy()
    reshaped.shape = (p.size,) if p.ndim == 2 else (1, p.size)
    yield "reshaped in place", reshaped, ValueError


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
@pytest.mark.parametrize("name", ["weight_ih", "weight_hh", "bias_hh", "weight_out"])
def test_tampered_parameters_are_refused_by_name_by_every_entry_point(cell, name):
    model = cells.model(cell, 3, 4, 2, seed=0)
    rng = np.random.default_rng(8)
    X, Y = rng.standard_normal((6, 2, 3)), rng.standard_normal((6, 2, 2))
    stream = Stream(model, 3, 3, batch=2)
    good = model.params[name]
    calls = {"forward": lambda: model.forward(X), "predict": lambda: model.predict(X),
             "loss_and_grad": lambda: model.loss_and_grad(X, Y),
             "evaluate": lambda: model.evaluate(X, Y),
             "fit": lambda: model.fit(X, Y, epochs=1, progress=False),
             "Stream": lambda: Stream(model, 3, 3, batch=2),
             "Stream.step": lambda: stream.step(X[:3], Y[:3]),
             "Stream.advance": lambda: stream.advance(X[:3]),
             "step": lambda: model.step(X[0])}
    for how, bad, err in _tampered(model, name):
        if how == "wrong shape":         # assignment is set_params: validated by name
            with pytest.raises(ValueError, match=name):
                model.params[name] = bad
        elif how != "reshaped in place":  # ... and converted into a copy of the model's own
            model.params[name] = bad
            p = model.params[name]
            assert type(p) is np.ndarray and p.dtype == model.dtype and p.flags.c_contiguous
        dict.__setitem__(model.params, name, bad)      # past it, or changed in place
        for call_name, call in calls.items():
            with pytest.raises(err, match=f"params\\[{name!r}\\]"):
                call()
    dict.__setitem__(model.params, name, good)   # even a valid array, put in behind set_params
    with pytest.raises(ValueError, match=f"params\\[{name!r}\\]: not the model's own"):
        model.forward(X)
    model.params[name] = good
    for call in calls.values():
        call()
    with pytest.raises(TypeError, match="fixed"):
        del model.params[name]
    model.params[name] = good * 2                      # a valid assignment: a copy is kept
    assert not np.shares_memory(model.params[name], good)


@pytest.mark.filterwarnings("ignore:the matrix subclass")
@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_set_params_keeps_copies_never_views_of_the_callers_arrays(cell, tmp_path):
    model = cells.model(cell, 3, 4, 2, seed=0)
    rng = np.random.default_rng(9)
    X, Y = rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 2, 2))
    W = model.params["weight_hh"].copy()
    path = tmp_path / "w.npy"
    np.save(path, W)
    rw = np.load(path, mmap_mode="r+")
    model.set_params({"weight_hh": rw})
    model.fit(X, Y, epochs=2, progress=False, optimizer="sgd")
    rw.flush()
    np.testing.assert_array_equal(np.load(path), W)              # the file is the caller's
    assert not np.shares_memory(model.params["weight_hh"], rw)
    ro = np.load(path, mmap_mode="r")
    model.set_params({"weight_hh": ro})
    model.fit(X, Y, epochs=1, progress=False)                    # a read-only source trains
    m = np.matrix(W)
    model.set_params({"weight_hh": m})
    m[0, 0] = 1e3
    assert model.params["weight_hh"][0, 0] == W[0, 0]
    assert type(model.params["weight_hh"]) is np.ndarray


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_set_params_during_fit_in_another_thread_is_refused(cell):
    model = cells.model(cell, 3, 4, 2, seed=0)
    rng = np.random.default_rng(10)
    X, Y = rng.standard_normal((5, 4, 3)), rng.standard_normal((5, 4, 2))
    in_step, release = threading.Event(), threading.Event()

    class Blocking(fastbp.optim.SGD):
        def step(self, params, grads):
            in_step.set()
            release.wait(5)
            return super().step(params, grads)

    errors = []
    fit = threading.Thread(target=lambda: errors.append(
        model.fit(X, Y, epochs=1, batch_size=4, optimizer=Blocking(), progress=False)))
    fit.start()
    try:
        assert in_step.wait(5)
        before = model.params["weight_hh"].copy()
        with pytest.raises(RuntimeError, match="set_params: .*fit"):
            model.set_params({"weight_hh": np.zeros_like(before)})
    finally:
        release.set()
        fit.join()
    model.set_params({"weight_hh": np.zeros_like(before)})       # after fit: accepted
    assert not model.params["weight_hh"].any()


# ---- MLP out= buffers -----------------------------------------------------------

def test_mlp_out_buffers_that_overlap_inputs_parameters_or_each_other_are_refused_by_name():
    net = fastbp.MLP([4, 4, 4], dtype="float64", loss="mse", output="identity", seed=0)
    rng = np.random.default_rng(11)
    X, y = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))
    loss, grads = net.loss_and_grad(X, y)
    fresh = lambda: [(np.empty_like(W), np.empty_like(b)) for W, b in net.params]  # noqa: E731
    cases = []
    out = fresh(); out[0] = (X, out[0][1]); cases.append((out, "out[0][0]", "X"))  # noqa: E702
    out = fresh(); out[1] = (y, out[1][1]); cases.append((out, "out[1][0]", "y"))  # noqa: E702
    out = fresh(); out[0] = (net.params[0][0], out[0][1])  # noqa: E702
    cases.append((out, "out[0][0]", "params[0][0]"))
    out = fresh(); out[1] = (out[0][0], out[1][1]); cases.append((out, "out[1][0]", "out[0][0]"))  # noqa: E702,E501
    out = fresh(); out[0] = (out[0][0], out[0][0][0]); cases.append((out, "out[0][1]", "out[0][0]"))  # noqa: E702,E501
    for out, name, other in cases:
        X0, y0, P0 = X.copy(), y.copy(), [(W.copy(), b.copy()) for W, b in net.params]
        with pytest.raises(ValueError, match=rf"{re_escape(name)}: overlaps {re_escape(other)}"):
            net.loss_and_grad(X, y, out=out)
        np.testing.assert_array_equal(X, X0)
        np.testing.assert_array_equal(y, y0)
        for (W, b), (W0, b0) in zip(net.params, P0):
            np.testing.assert_array_equal(W, W0)
            np.testing.assert_array_equal(b, b0)
    flat = np.empty(sum(W.size + b.size for W, b in net.params))   # one flat buffer, split
    out, k = [], 0
    for W, b in net.params:
        dW = flat[k:k + W.size].reshape(W.shape); k += W.size  # noqa: E702
        db = flat[k:k + b.size]; k += b.size  # noqa: E702
        out.append((dW, db))
    loss2, grads2 = net.loss_and_grad(X, y, out=out)
    assert loss2 == loss and all(np.array_equal(a, b) for p, q in zip(grads, grads2)
                                 for a, b in zip(p, q))


def re_escape(s):
    return re.escape(s)


# ---- torch tensors that record gradients ---------------------------------------

def test_tensors_that_require_grad_are_read_through_detach_everywhere():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    logits = rng.standard_normal((3, 4))
    t = torch.tensor(logits, requires_grad=True)
    ref = functional.softmax_cross_entropy(logits, [0, 1, 2])
    got = functional.softmax_cross_entropy(t, [0, 1, 2])
    assert got[0] == ref[0] and np.array_equal(got[1], ref[1])
    net = fastbp.MLP([4, 3], dtype="float64", seed=0)
    np.testing.assert_array_equal(net.forward(t), net.forward(logits))
    net.params = [(torch.zeros((3, 4), requires_grad=True), torch.ones(3, requires_grad=True))]
    model = fastbp.RNN(2, 3, 2, seed=0)
    model.set_params({"weight_hh": torch.zeros((3, 3), dtype=torch.float64, requires_grad=True)})
    assert not model.params["weight_hh"].any()
    x = rng.standard_normal((4, 2, 2))
    out = model.forward(torch.tensor(x, requires_grad=True))[0]
    np.testing.assert_array_equal(out, model.forward(x)[0])


# the cells whose backward offers overwrite_cache= (the LSTM's), layer and stack
OVERWRITING = [(cell, stacked) for cell in MODEL_CELLS for stacked in (False, True)
               if "overwrite_cache" in inspect.signature(
                   cell.stack_backward_fn if stacked else cell.backward_fn).parameters]


@pytest.mark.parametrize("cell, stacked", OVERWRITING,
                         ids=[f"{c}-{'stack' if s else 'layer'}" for c, s in OVERWRITING])
def test_a_cache_consumed_by_overwrite_goes_to_exactly_one_of_two_threads(cell, stacked):
    rng = np.random.default_rng(13)
    T, B, I, H = 6, 3, 2, 4
    x = rng.standard_normal((T, B, I))
    none = _none(cell)
    if stacked:
        _, _, cache = cells.stack_forward(cell, x, cells.stack_params(cell, rng, I, H, 1, False),
                                          none, 1, False)
        backward = cell.stack_backward_fn
    else:
        _, _, cache = cells.forward(cell, x, none, cells.layer_weights(cell, rng, I, H))
        backward = cell.backward_fn
    run = lambda: backward(np.ones((T, B, H)), *none, cache, overwrite_cache=True)  # noqa: E731
    start = threading.Barrier(2)
    outcomes = []

    def worker():
        start.wait()
        try:
            outcomes.append(run())
        except RuntimeError as e:
            outcomes.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [o for o in outcomes if isinstance(o, RuntimeError)]
    assert len(outcomes) == 2 and len(errors) == 1 and "consumed" in str(errors[0])


_REPLACED_BUFFER_SCRIPT = r"""
import threading, numpy as np, fastbp
net = fastbp.MLP([256, 512, 10], dtype="float64", seed=0)
X = np.random.default_rng(0).standard_normal((64, 256)); y = np.arange(64) % 10
loss0, _ = net.loss_and_grad(X, y)
W = net.params[0][0]
for call in (lambda: W.resize((1, 1), refcheck=False), lambda: W.resize((1, 1))):
    try:
        call(); print("RESIZED")
    except ValueError:
        pass
# another thread moves every parameter's buffer while calls run without the GIL
stop = threading.Event()
def mover():
    while not stop.is_set():
        for pair in net.params:
            for a in pair:
                a.__setstate__(a.__reduce__()[2])
                junk = np.full(a.shape, 1e300)    # the old buffer's memory, reused
t = threading.Thread(target=mover); t.start()
refused = 0
try:
    for _ in range(300):
        try:
            net.loss_and_grad(X, y); net.forward(X)
        except ValueError as e:
            assert "params[" in str(e) and "buffer was replaced" in str(e), e
            refused += 1
finally:
    stop.set(); t.join()
print("REFUSED", refused)
"""


def test_moving_an_mlp_parameters_buffer_in_place_cannot_crash_it():
    """The MLP's compiled core keeps pointers into the model's parameter
    arrays: ``W.__setstate__`` (or ``W.resize(refcheck=False)``) would move
    the array's data and free the buffer the core reads (a crash, even in one
    thread). The arrays view storage the core pins: they cannot be resized,
    a replaced buffer frees nothing, and a call refuses the array by name."""
    out = run_python(_REPLACED_BUFFER_SCRIPT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "RESIZED" not in out.stdout
    assert int(out.stdout.split("REFUSED")[1]) > 0


_MOVED_SEQ_PARAMS_SCRIPT = r"""
import sys, threading, numpy as np, fastbp
cls = getattr(fastbp, sys.argv[1])          # the model class: RNN, LSTM, GRU
m = cls(64, 256, 4, dtype="float64", seed=0)
rng = np.random.default_rng(0)
X = rng.standard_normal((40, 8, 64)); Y = rng.standard_normal((40, 8, 4))
expected = m.loss_and_grad(X, Y)[0]
W = m.params["weight_hh"]
try:
    W.resize((1, 1), refcheck=False); print("RESIZED")
except ValueError:
    pass
stop = threading.Event()
def mover():        # moves every parameter's buffer, then gives the model fresh ones
    while not stop.is_set():
        arrays = dict(m.params)
        for a in arrays.values():
            a.__setstate__(a.__reduce__()[2])
            junk = np.full(a.shape, 1e300)     # the old buffer's memory, reused
        m.set_params(arrays)
t = threading.Thread(target=mover); t.start()
ok = refused = 0
try:
    for _ in range(150):
        try:
            loss = m.loss_and_grad(X, Y)[0]
            assert loss == expected, (loss, expected)
            ok += 1
        except ValueError as e:
            assert "params[" in str(e) and "not the model's own" in str(e), e
            refused += 1
finally:
    stop.set(); t.join()
print("DONE", ok, refused)
"""


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_moving_a_sequence_models_parameter_buffers_cannot_crash_it(cell):
    """NumPy moves an array's data in place (``a.__setstate__``) and frees the
    old buffer, even while a kernel reads it without the GIL (a crash in
    another thread). The model's arrays view storage the model pins, its
    kernels read private views of it, and a call refuses an array whose
    buffer was replaced, by name; a call that runs gives the serial result."""
    out = run_python(_MOVED_SEQ_PARAMS_SCRIPT, cell.model_class.__name__, capture_output=True,
                     text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "RESIZED" not in out.stdout
    ok, refused = map(int, out.stdout.split("DONE")[1].split())
    assert ok + refused == 150 and refused > 0


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_pickled_and_deep_copied_sequence_models_own_their_parameters(cell):
    """A model's pinned storage is rebuilt by unpickling and copy.deepcopy: the
    copy computes the same, owns its arrays (none shared with the original),
    and guards them like any model."""
    import copy
    import pickle
    model = cells.model(cell, 2, 3, 2, num_layers=2, seed=1)
    X = np.random.default_rng(15).standard_normal((4, 2, 2))
    expected = model.forward(X)[0]
    for twin in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert np.array_equal(twin.forward(X)[0], expected)
        assert not any(np.shares_memory(twin.params[k], model.params[k]) for k in model.params)
        twin.params["weight_hh"] = np.zeros_like(model.params["weight_hh"])
        assert np.array_equal(model.forward(X)[0], expected)
        with pytest.raises(ValueError):
            twin.params["weight_hh"].resize((1, 1), refcheck=False)
        dict.__setitem__(twin.params, "weight_hh", model.params["weight_hh"])
        with pytest.raises(ValueError, match="not the model's own"):
            twin.forward(X)
