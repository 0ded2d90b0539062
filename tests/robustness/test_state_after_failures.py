"""State after failures: whatever stops ``fit`` - an exception in a
step, a diverging step whose gradients the optimizer refuses, Ctrl-C, a second
Ctrl-C in the middle of an optimizer update - the model's parameters and the
optimizer's state are exactly those after the last completed step, for every
model, also between the chunks of truncated BPTT. (fastbp.load refusing
pickles and newer formats: tests/io/test_save_load.py.)"""
import os
import signal
import sys
import time

import numpy as np
import pytest

from fastbp.mlp import MLP
from fastbp.optim import SGD, Adam
from fastbp.rnn import RNN
from cells import cells
from cells.cells import MODEL_CELLS
from ctrl_c import interrupt_during

CELL_BY_ID = {c.id: c for c in MODEL_CELLS}
KINDS = ["mlp"] + list(CELL_BY_ID)            # the MLP and every recurrent model


class Recording:
    """Mixin for an optimizer: keeps the parameters and its own state after every step."""

    def step(self, params, grads):
        super().step(params, grads)
        self.after.append(([p.copy() for p in params], self.t,
                           [tuple(s.copy() for s in st) for st in self.state]))


class RecordingAdam(Recording, Adam):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.after = []


class RecordingSGD(Recording, SGD):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.after = []


def setup(kind):
    """(fresh model, X, y, fit kwargs, the method each step calls once)."""
    rng = np.random.default_rng(0)
    if kind == "mlp":
        return (MLP([4, 6, 3], dtype="float64", seed=1), rng.standard_normal((50, 4)),
                np.arange(50) % 3, {}, "loss_and_grad")
    # bptt=3 over T=8: three optimizer steps per batch, so failures land mid-batch too
    model = cells.model(CELL_BY_ID[kind], 2, 5, 3, loss="cross_entropy", dtype="float64", seed=1)
    return (model, rng.standard_normal((8, 20, 2)),
            rng.integers(0, 3, (8, 20)), {"bptt": 3}, "_loss_and_grad")


def params_of(model):
    return [p.copy() for _, p in model.named_parameters()]


def assert_state(model, opt, recorded):
    """model and opt are as the clean run was after the step `recorded` describes."""
    params, t, state = recorded
    for p, q in zip(params_of(model), params):
        assert p.tobytes() == q.tobytes()
    assert opt.t == t
    for st, st_ref in zip(opt.state, state):
        for s, s_ref in zip(st, st_ref):
            assert s.tobytes() == s_ref.tobytes()


def fail_on_call(monkeypatch, model, method, k, exc):
    original = getattr(model, method)
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == k:
            raise exc
        return original(*args, **kwargs)
    monkeypatch.setattr(model, method, wrapped)


FIT = dict(epochs=2, batch_size=10, shuffle=True, seed=4, progress=False, clip_norm=1.0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", [1, 4, 8])
def test_an_exception_in_a_step_leaves_the_last_completed_step(kind, k, monkeypatch):
    model, X, y, kw, method = setup(kind)
    clean_opt = RecordingAdam(0.01)
    model.fit(X, y, optimizer=clean_opt, **FIT, **kw)
    model, X, y, kw, method = setup(kind)
    opt = Adam(0.01)
    fail_on_call(monkeypatch, model, method, k, RuntimeError("disk on fire"))
    with pytest.raises(RuntimeError, match="disk on fire"):
        model.fit(X, y, optimizer=opt, **FIT, **kw)
    if k == 1:
        assert opt.t == 0 and opt.state is None
        assert all(p.tobytes() == q.tobytes() for p, q in zip(params_of(model), params_of(setup(kind)[0])))
    else:
        assert_state(model, opt, clean_opt.after[k - 2])


@pytest.mark.parametrize("kind", KINDS)
def test_keyboard_interrupt_in_a_step_returns_the_last_completed_step(kind, monkeypatch):
    model, X, y, kw, method = setup(kind)
    clean_opt = RecordingAdam(0.01)
    model.fit(X, y, optimizer=clean_opt, **FIT, **kw)
    model, X, y, kw, method = setup(kind)
    opt = Adam(0.01)
    fail_on_call(monkeypatch, model, method, 6, KeyboardInterrupt())
    history = model.fit(X, y, optimizer=opt, **FIT, **kw)
    assert history.interrupted and len(history.step_loss) == 5
    assert_state(model, opt, clean_opt.after[4])


def test_a_diverging_step_is_refused_and_the_model_kept():
    """A real failure, no mocking: with an absurd learning rate the weights
    overflow and the next gradients are inf/NaN; the optimizer refuses them
    (ValueError naming the gradient) and the model stays as after the last
    step it completed."""
    model, X, y, kw, _ = setup("mlp")
    opt = RecordingSGD(1e200)
    with np.errstate(all="ignore"), pytest.raises(ValueError, match=r"grads\[\d\]: contains NaN or infinity"):
        model.fit(X * 1e100, y, optimizer=opt, epochs=5, batch_size=10, shuffle=False, progress=False)
    assert opt.after, "at least one step completed"
    assert_state(model, opt, opt.after[-1])


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("kind", KINDS)
def test_a_second_ctrl_c_never_cuts_an_optimizer_update_in_half(kind):
    """Ctrl-C twice while the optimizer is writing the parameters (after the
    first array of step 3, before the others): the update completes, then fit
    stops and returns; never some arrays of a step updated and others not."""
    model, X, y, kw, _ = setup(kind)
    clean_opt = RecordingSGD(0.1, momentum=0.9)
    model.fit(X, y, optimizer=clean_opt, **FIT, **kw)

    class CtrlCTwiceInStep3(RecordingSGD):
        def _update(self, p, g, state, t, a, b):
            super()._update(p, g, state, t, a, b)
            if t == 3 and not getattr(self, "sent", False):
                self.sent = True
                for _ in range(2):
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(0.01)          # the Python-level handler runs before this returns

    model, X, y, kw, _ = setup(kind)
    opt = CtrlCTwiceInStep3(0.1, momentum=0.9)
    history = model.fit(X, y, optimizer=opt, **FIT, **kw)
    assert opt.sent and history.interrupted
    assert len(history.step_loss) == 3
    assert_state(model, opt, clean_opt.after[2])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _assign_params(model, new):
    if isinstance(model, MLP):
        model.params = new
    else:
        model.set_params(new)


def _param_values(model):
    if isinstance(model, MLP):
        return [a.copy() for pair in model.params for a in pair]
    return [a.copy() for a in model.params.values()]


@pytest.mark.parametrize("kind", ["mlp", "rnn"])
def test_ctrl_c_during_a_parameter_assignment_applies_all_of_it_or_none(kind):
    """SIGINT from a timer thread at random points of ``net.params = ...`` (the
    MLP copies layer by layer into its arrays) and ``set_params``: afterwards
    the parameters are either all the old values or all the new ones."""
    rng = np.random.default_rng(11)
    if kind == "mlp":
        model = MLP([200] * 41, dtype="float64", seed=0)
        new = [(rng.standard_normal(W.shape), rng.standard_normal(b.shape))
               for W, b in model.params]
        new_values = [np.asarray(a) for pair in new for a in pair]
    else:
        model = RNN(100, 100, 3, num_layers=20, dtype="float64", seed=0)
        new = {name: rng.standard_normal(p.shape) for name, p in model.params.items()}
        new_values = list(new.values())
    old_values = _param_values(model)
    began = time.perf_counter()
    _assign_params(model, new)
    duration = time.perf_counter() - began
    _assign_params(model, [(W, b) for W, b in zip(old_values[::2], old_values[1::2])]
                   if kind == "mlp" else dict(zip(model.params, old_values)))
    outcomes = set()
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)      # let the timer thread take the GIL mid-assignment
    try:
        for trial in range(60):
            start_values = _param_values(model)
            target = new_values if all(np.array_equal(a, b) for a, b in
                                       zip(start_values, old_values)) else old_values
            assign = ([(W, b) for W, b in zip(target[::2], target[1::2])] if kind == "mlp"
                      else dict(zip(model.params, target)))
            if interrupt_during(lambda: _assign_params(model, assign),
                                rng.uniform(0, 1.3 * duration)) == "inside":
                outcomes.add("inside")
            now = _param_values(model)
            done = all(np.array_equal(a, b) for a, b in zip(now, target))
            kept = all(np.array_equal(a, b) for a, b in zip(now, start_values))
            assert done or kept, f"trial {trial}: the assignment was applied in part"
            outcomes.add("all" if done else "none")
    finally:
        sys.setswitchinterval(switch)
    assert "inside" in outcomes      # some Ctrl-Cs did land while the assignment ran
