"""Learning-rate schedules (fastbp.callbacks): each schedule's rate per epoch,
as the optimizer uses it in the epoch's steps (and as torch's schedulers give
it); the optimizer's own lr kept between epochs; schedules continued across
fit calls and resumed from checkpoints exactly."""
import math

import numpy as np
import pytest

from fastbp.callbacks import (Callback, CosineAnnealingLR, ExponentialLR, ReduceLROnPlateau,
                              StepLR)
from fastbp.lstm import LSTM
from fastbp.mlp import MLP
from fastbp.optim import SGD, Adam


def blobs(n=40, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return rng.standard_normal((n, 4)) * 0.5 + np.eye(4)[y] * 2.0, y


class RecordingSGD(SGD):
    """SGD that records the learning rate of every step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def step(self, params, grads):
        self.seen.append(self.lr)
        super().step(params, grads)


def rates_per_epoch(schedules, epochs=8, lr=0.1, steps_per_epoch=2, optimizer=None):
    """(history["lr"], the rate of every optimizer step per epoch, the optimizer)."""
    X, y = blobs(20 * steps_per_epoch)
    opt = optimizer or RecordingSGD(lr)
    h = MLP([4, 6, 3], seed=0).fit(X, y, epochs=epochs, batch_size=20, optimizer=opt, seed=0,
                                   progress=False, callbacks=schedules)
    steps = np.array(opt.seen).reshape(epochs, steps_per_epoch)
    return h["lr"], steps, opt


@pytest.mark.parametrize("schedule, expected", [
    (StepLR(3, gamma=0.5), [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025]),
    (ExponentialLR(0.9), [0.1 * 0.9 ** e for e in range(8)]),
    (CosineAnnealingLR(T_max=7, eta_min=0.01),
     [0.01 + 0.09 * (1 + math.cos(math.pi * e / 7)) / 2 for e in range(8)]),
])
def test_each_schedule_sets_its_rate_for_every_step_of_each_epoch(schedule, expected):
    lrs, steps, opt = rates_per_epoch([schedule])
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)
    np.testing.assert_array_equal(steps, np.repeat(np.array(lrs)[:, None], 2, axis=1))
    assert opt.lr == 0.1                       # the optimizer's own rate, after fit


@pytest.mark.parametrize("make_ours, make_torch", [
    (lambda: StepLR(3, gamma=0.5), lambda o: ("StepLR", dict(step_size=3, gamma=0.5))),
    (lambda: ExponentialLR(0.9), lambda o: ("ExponentialLR", dict(gamma=0.9))),
    (lambda: CosineAnnealingLR(5, eta_min=0.01),
     lambda o: ("CosineAnnealingLR", dict(T_max=5, eta_min=0.01))),
])
def test_the_closed_form_schedules_give_torchs_rates(make_ours, make_torch):
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    name, kw = make_torch(opt)
    sched = getattr(torch.optim.lr_scheduler, name)(opt, **kw)
    theirs = []
    for _ in range(12):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    lrs, _, _ = rates_per_epoch([make_ours()], epochs=12)
    np.testing.assert_allclose(lrs, theirs, rtol=1e-12)


class Scripted(Callback):
    """Appends chosen values to a tracked history list "metric" (before the
    schedules that monitor it, in the callbacks list)."""

    def __init__(self, values):
        self.values = values

    def on_train_begin(self, run):
        run.track("metric")

    def on_epoch_end(self, run):
        run.history["metric"].append(self.values[run.epoch - 1])


def test_reduce_on_plateau_rates_per_epoch():
    metric = [5, 4, 4, 4, 3.99995, 4, 2, 2, 2, 2, 2, 2]
    plateau = ReduceLROnPlateau("metric", factor=0.5, patience=2, min_delta=1e-4, cooldown=2,
                                min_lr=0.02)
    lrs, steps, _ = rates_per_epoch([Scripted(metric), plateau], epochs=12)
    # epochs 3 and 4 do not improve on 4: x0.5 from epoch 5; epoch 5 is in the cooldown,
    # epoch 6 (4; 3.99995 was no improvement by 1e-4) counts 1, epoch 7 improves (2),
    # 8 and 9 do not: x0.5 from epoch 10; cooldown 10, 11 counted, 12 reduces again
    assert lrs == [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025]
    assert plateau.reductions == 3       # the third takes effect after the run
    np.testing.assert_array_equal(steps[:, 0], lrs)
    assert plateau.lr_at(13, 0.1, None) == 0.02        # 0.0125, floored at min_lr


def test_schedules_compose_in_list_order():
    lrs, _, _ = rates_per_epoch([StepLR(2, 0.5), ExponentialLR(0.5)], epochs=4)
    np.testing.assert_allclose(lrs, [0.1, 0.05, 0.0125, 0.00625], rtol=1e-12)


def test_a_callback_sets_the_epochs_rate_through_run_lr():
    class Halve(Callback):
        def on_epoch_begin(self, run):
            run.lr = run.lr / 2 if run.epoch % 2 == 0 else run.lr

    lrs, steps, _ = rates_per_epoch([Halve()], epochs=4)
    assert lrs == [0.1, 0.05, 0.1, 0.05]


@pytest.mark.parametrize("schedules", [
    [StepLR(2, 0.5)], [CosineAnnealingLR(5)],
    [Scripted([3, 3, 3, 3, 1, 1]), ReduceLROnPlateau("metric", factor=0.5, patience=1)]])
def test_fit_twice_with_one_optimizer_continues_the_schedule(schedules):
    X, y = blobs()
    whole, opt = MLP([4, 6, 3], seed=0), Adam(0.01)
    h = whole.fit(X, y, epochs=6, batch_size=8, optimizer=opt, seed=0, progress=False,
                  callbacks=schedules)
    parts, opt2, lrs = MLP([4, 6, 3], seed=0), Adam(0.01), []
    for epochs in (2, 1, 3):
        hp = parts.fit(X, y, epochs=epochs, batch_size=8, optimizer=opt2, seed=0,
                       progress=False, callbacks=schedules)
        lrs += hp["lr"]
    assert lrs == h["lr"] and opt2.lr == 0.01
    for (_, p), (_, q) in zip(whole.named_parameters(), parts.named_parameters()):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("make", [lambda: [StepLR(2, 0.5)],
                                  lambda: [ReduceLROnPlateau("loss", factor=0.5, patience=0,
                                                             min_delta=10.0)]])
def test_a_resumed_checkpoint_continues_the_schedule_exactly(tmp_path, make):
    X = np.random.default_rng(0).standard_normal((6, 10, 2))
    y = (X.sum(axis=(0, 2)) > 0).astype(int)

    def model():
        return LSTM(2, 4, 2, loss="cross_entropy", many_to_one=True, seed=1)
    kw = dict(batch_size=4, seed=0, progress=False, validation_data=(X, y))
    whole = model()
    h_whole = whole.fit(X, y, epochs=5, optimizer=Adam(0.01), callbacks=make(), **kw)
    path = tmp_path / "run.npz"
    model().fit(X, y, epochs=3, optimizer=Adam(0.01), callbacks=make(), checkpoint=path, **kw)
    resumed = model()
    h = resumed.fit(X, y, epochs=5, optimizer=Adam(0.01), callbacks=make(), checkpoint=path,
                    **kw)
    assert h["lr"] == h_whole["lr"] and len(set(h["lr"])) > 1
    assert h["loss"] == h_whole["loss"]
    for (_, p), (_, q) in zip(whole.named_parameters(), resumed.named_parameters()):
        np.testing.assert_array_equal(p, q)


def test_a_checkpoint_resumed_with_another_schedule_is_refused(tmp_path):
    X, y = blobs()
    path = tmp_path / "run.npz"
    MLP([4, 6, 3], seed=0).fit(X, y, epochs=1, optimizer=Adam(0.01), seed=0, progress=False,
                               callbacks=[StepLR(2, 0.5)], checkpoint=path)
    for other in ([StepLR(3, 0.5)], []):
        with pytest.raises(ValueError, match="callbacks: "):
            MLP([4, 6, 3], seed=0).fit(X, y, epochs=2, optimizer=Adam(0.01), seed=0,
                                       progress=False, callbacks=other, checkpoint=path)


def test_the_optimizer_keeps_its_own_rate_after_an_error_mid_epoch():
    X, y = blobs()
    opt = SGD(0.1)

    class Boom(Callback):
        def on_epoch_end(self, run):
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        MLP([4, 6, 3]).fit(X, y, epochs=3, optimizer=opt, progress=False,
                           callbacks=[StepLR(1, 0.5), Boom()])
    assert opt.lr == 0.1


def test_a_bad_rate_from_a_callback_is_refused_by_name():
    class Negative(Callback):
        def on_epoch_begin(self, run):
            run.lr = -1.0
    X, y = blobs()
    with pytest.raises(ValueError, match="callbacks: the learning rate of epoch 1 is -1.0"):
        MLP([4, 6, 3]).fit(X, y, epochs=1, progress=False, callbacks=[Negative()])


@pytest.mark.parametrize("make, exc, match", [
    (lambda: StepLR(0), ValueError, "step_size"),
    (lambda: StepLR(2, gamma=0), ValueError, "gamma"),
    (lambda: StepLR(2.5), TypeError, "step_size"),
    (lambda: ExponentialLR(1.5), ValueError, "gamma"),
    (lambda: CosineAnnealingLR(0), ValueError, "T_max"),
    (lambda: CosineAnnealingLR(3, eta_min=-1), ValueError, "eta_min"),
    (lambda: ReduceLROnPlateau(factor=1.0), ValueError, "factor"),
    (lambda: ReduceLROnPlateau(cooldown=-1), ValueError, "cooldown"),
    (lambda: ReduceLROnPlateau(min_lr=float("nan")), ValueError, "min_lr"),
    (lambda: ReduceLROnPlateau(mode="down"), ValueError, "mode"),
])
def test_bad_schedule_arguments_are_named(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_plateau_without_its_monitor_is_refused_by_name():
    X, y = blobs()
    with pytest.raises(ValueError, match="monitor: .*'val_loss'"):
        MLP([4, 6, 3]).fit(X, y, epochs=1, progress=False, callbacks=[ReduceLROnPlateau()])
