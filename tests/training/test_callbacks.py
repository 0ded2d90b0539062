"""fit(callbacks=[...]): functions of the history and Callback objects are
called at each epoch's boundaries for every model, can stop training, and
EarlyStopping stops when the monitored quantity stalls and restores the best
weights; with checkpoints its counters resume and its in-memory weights are
refused."""
import numpy as np
import pytest

from fastbp.callbacks import Callback, EarlyStopping
from fastbp.gru import GRU
from fastbp.lstm import LSTM
from fastbp.mlp import MLP
from fastbp.optim import SGD, Adam
from fastbp.rnn import RNN


def blobs(n=80, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return rng.standard_normal((n, 4)) * 0.5 + np.eye(4)[y] * 2.0, y


def sequences(T=5, N=24, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((T, N, 2))
    return X, (X[..., 0].sum(axis=0) > 0).astype(int)


MODELS = {
    "mlp": (lambda: MLP([4, 8, 3], seed=1), blobs),
    "rnn": (lambda: RNN(2, 4, 2, loss="cross_entropy", many_to_one=True, seed=1), sequences),
    "lstm": (lambda: LSTM(2, 4, 2, loss="cross_entropy", many_to_one=True, seed=1), sequences),
    "gru": (lambda: GRU(2, 4, 2, loss="cross_entropy", many_to_one=True, seed=1), sequences),
}


def params_of(model):
    return [p.copy() for _, p in model.named_parameters()]


class Recorder(Callback):
    """Records every hook with the epoch and the history length it saw."""

    def __init__(self):
        self.calls = []

    def on_train_begin(self, run):
        self.calls.append(("train_begin", run.epoch, len(run.history["epoch"])))

    def on_epoch_begin(self, run):
        self.calls.append(("epoch_begin", run.epoch, len(run.history["epoch"])))

    def on_epoch_end(self, run):
        self.calls.append(("epoch_end", run.epoch, len(run.history["epoch"])))

    def on_train_end(self, run):
        self.calls.append(("train_end", run.epoch, len(run.history["epoch"])))


@pytest.mark.parametrize("name", MODELS)
def test_callbacks_are_called_at_each_epoch_with_the_history_so_far(name):
    make, data = MODELS[name]
    X, y = data()
    seen, recorder = [], Recorder()
    history = make().fit(X, y, epochs=3, batch_size=8, seed=0, progress=False,
                         callbacks=[lambda h: seen.append({k: list(v) for k, v in h.items()}),
                                    recorder])
    assert [s["epoch"] for s in seen] == [[1], [1, 2], [1, 2, 3]]
    assert [s["loss"] for s in seen] == [history["loss"][:1], history["loss"][:2], history["loss"]]
    assert recorder.calls == [("train_begin", 1, 0),
                              ("epoch_begin", 1, 0), ("epoch_end", 1, 1),
                              ("epoch_begin", 2, 1), ("epoch_end", 2, 2),
                              ("epoch_begin", 3, 2), ("epoch_end", 3, 3),
                              ("train_end", 3, 3)]
    assert history["lr"] == [1e-3] * 3 and history.stopped_by is None


@pytest.mark.parametrize("name", MODELS)
def test_a_callback_returning_true_stops_after_that_epoch(name):
    make, data = MODELS[name]
    X, y = data()
    model = make()
    stop_at_2 = lambda h: h["epoch"][-1] == 2     # noqa: E731
    history = model.fit(X, y, epochs=5, batch_size=8, seed=0, progress=False,
                        optimizer=Adam(0.01), callbacks=[stop_at_2])
    assert history["epoch"] == [1, 2] and not history.interrupted
    assert history.stopped_by == repr(stop_at_2)
    ref = make()
    ref.fit(X, y, epochs=2, batch_size=8, seed=0, progress=False, optimizer=Adam(0.01))
    for p, q in zip(params_of(model), params_of(ref)):
        np.testing.assert_array_equal(p, q)


def test_callback_added_history_lists_keep_one_entry_per_epoch():
    class Tracks(Callback):
        def on_train_begin(self, run):
            run.track("twice_loss")

        def on_epoch_end(self, run):
            if run.epoch != 2:                  # forgets an epoch: padded with NaN
                run.history["twice_loss"].append(2 * run.history["loss"][-1])

    X, y = blobs()
    h = MLP([4, 8, 3], seed=1).fit(X, y, epochs=3, progress=False, seed=0, callbacks=[Tracks()])
    assert len(h["twice_loss"]) == 3 and np.isnan(h["twice_loss"][1])
    assert h["twice_loss"][2] == 2 * h["loss"][2]


# -- EarlyStopping -------------------------------------------------------------------------
class Snapshots(Callback):
    """The parameters after every epoch, and the value monitored."""

    def __init__(self):
        self.params = {}

    def on_epoch_end(self, run):
        self.params[run.epoch] = params_of(run.model)


def overfitting_problem():
    """A network far larger than 24 noisy samples need: the validation loss
    falls, then rises while the training loss keeps falling."""
    rng = np.random.default_rng(3)
    X, Xv = rng.standard_normal((24, 4)), rng.standard_normal((200, 4))
    w = rng.standard_normal(4)
    y = (X @ w + 1.5 * rng.standard_normal(24) > 0).astype(int)
    yv = (Xv @ w > 0).astype(int)
    return X, y, Xv, yv


@pytest.mark.parametrize("restore_best", [True, False])
def test_early_stopping_stops_and_restores_the_best_weights(restore_best):
    X, y, Xv, yv = overfitting_problem()
    net = MLP([4, 64, 64, 2], seed=0)
    snaps, stopper = Snapshots(), EarlyStopping(patience=3, restore_best=restore_best)
    h = net.fit(X, y, epochs=300, batch_size=8, optimizer=Adam(0.01), seed=0, progress=False,
                validation_data=(Xv, yv), callbacks=[snaps, stopper])
    best = int(np.argmin(h["val_loss"])) + 1
    assert len(h["epoch"]) < 300 and h.stopped_by == repr(stopper)
    assert stopper.best_epoch == best and stopper.best == min(h["val_loss"])
    assert stopper.stopped_epoch == h["epoch"][-1] == best + 3     # patience epochs later
    assert best < h["epoch"][-1]
    expected = snaps.params[best] if restore_best else snaps.params[h["epoch"][-1]]
    for p, q in zip(params_of(net), expected):
        np.testing.assert_array_equal(p, q)
    if restore_best:
        assert net.evaluate(Xv, yv)[0] == pytest.approx(min(h["val_loss"]), rel=1e-6)


def test_early_stopping_min_delta_mode_and_monitor_of_a_tracked_list():
    class Scripted(Callback):      # a monitored list whose values the test chooses
        def __init__(self, values):
            self.values = values

        def on_train_begin(self, run):
            run.track("score")

        def on_epoch_end(self, run):
            run.history["score"].append(self.values[run.epoch - 1])

    X, y = blobs()
    # "score" ends in "score": higher is better; +0.05 is not more than min_delta=0.1
    stopper = EarlyStopping("score", patience=2, min_delta=0.1, restore_best=False)
    h = MLP([4, 8, 3], seed=1).fit(X, y, epochs=10, progress=False, seed=0,
                                   callbacks=[Scripted([0.5, 0.7, 0.75, 0.78, 0.9, 1.0, 1.0,
                                                        1.0, 1.0, 1.0]), stopper])
    assert stopper.mode == "max" and stopper.best == 0.7 and stopper.best_epoch == 2
    assert h["epoch"] == [1, 2, 3, 4]
    stopper = EarlyStopping("score", patience=0, mode="min", restore_best=False)
    h = MLP([4, 8, 3], seed=1).fit(X, y, epochs=10, progress=False, seed=0,
                                   callbacks=[Scripted([3.0, 2.0, 2.5] + [0.0] * 7), stopper])
    assert h["epoch"] == [1, 2, 3] and stopper.best == 2.0


def test_early_stopping_without_its_monitor_is_refused_by_name():
    X, y = blobs()
    with pytest.raises(ValueError, match="monitor: .*'val_loss'.*validation_data or "
                                         "validation_split"):
        MLP([4, 8, 3]).fit(X, y, epochs=2, progress=False, callbacks=[EarlyStopping()])


def test_early_stopping_with_restore_best_and_a_checkpoint_is_refused(tmp_path):
    X, y = blobs()
    net = MLP([4, 8, 3], seed=1)
    before = params_of(net)
    with pytest.raises(ValueError, match="restore_best=True.*checkpoint"):
        net.fit(X, y, epochs=2, progress=False, validation_data=(X, y),
                checkpoint=tmp_path / "run.npz", callbacks=[EarlyStopping()])
    for p, q in zip(params_of(net), before):
        np.testing.assert_array_equal(p, q)
    assert not (tmp_path / "run.npz").exists()


def test_early_stopping_resumes_from_a_checkpoint_and_stays_stopped(tmp_path):
    X, y, Xv, yv = overfitting_problem()
    kw = dict(epochs=300, batch_size=8, seed=0, progress=False, validation_data=(Xv, yv))

    def stopper():
        return EarlyStopping(patience=3, restore_best=False)
    whole = MLP([4, 64, 64, 2], seed=0)
    h_whole = whole.fit(X, y, optimizer=Adam(0.01), callbacks=[stopper()], **kw)
    stop = h_whole["epoch"][-1]

    path = tmp_path / "run.npz"
    part = MLP([4, 64, 64, 2], seed=0)
    part.fit(X, y, optimizer=Adam(0.01), checkpoint=path, callbacks=[stopper(),
             lambda h: h["epoch"][-1] == stop - 2], **kw)      # "crashes" 2 epochs early
    resumed = MLP([4, 64, 64, 2], seed=0)
    h = resumed.fit(X, y, optimizer=Adam(0.01), checkpoint=path, callbacks=[stopper()], **kw)
    assert h["epoch"] == h_whole["epoch"] and h["val_loss"] == h_whole["val_loss"]
    for p, q in zip(params_of(resumed), params_of(whole)):
        np.testing.assert_array_equal(p, q)
    again = MLP([4, 64, 64, 2], seed=0)          # the finished run, resumed: nothing to do
    s = stopper()
    h = again.fit(X, y, optimizer=Adam(0.01), checkpoint=path, callbacks=[s], **kw)
    assert h["epoch"] == h_whole["epoch"] and s.stopped_epoch == stop
    for p, q in zip(params_of(again), params_of(whole)):
        np.testing.assert_array_equal(p, q)


def test_a_checkpoint_resumed_with_another_early_stopping_is_refused(tmp_path):
    X, y = blobs()
    path = tmp_path / "run.npz"
    kw = dict(batch_size=16, seed=0, progress=False, validation_data=(X, y), checkpoint=path)
    MLP([4, 8, 3], seed=1).fit(X, y, epochs=1, optimizer=SGD(0.1),
                               callbacks=[EarlyStopping(patience=3, restore_best=False)], **kw)
    with pytest.raises(ValueError, match="callbacks: .*patience=3.*patience=4"):
        MLP([4, 8, 3], seed=1).fit(X, y, epochs=2, optimizer=SGD(0.1),
                                   callbacks=[EarlyStopping(patience=4, restore_best=False)],
                                   **kw)


# -- bad arguments -----------------------------------------------------------------------------
@pytest.mark.parametrize("callbacks, exc, match", [
    (EarlyStopping(monitor="loss"), TypeError, "callbacks: expected a list"),
    (len, TypeError, "callbacks: expected a list"),
    ("stop", TypeError, "callbacks: expected a list"),
    ([EarlyStopping(monitor="loss"), 3], TypeError, r"callbacks\[1\]: expected"),
])
def test_bad_callbacks_are_named(callbacks, exc, match):
    X, y = blobs()
    with pytest.raises(exc, match=match):
        MLP([4, 8, 3]).fit(X, y, epochs=1, progress=False, callbacks=callbacks)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(patience=-1), ValueError, "patience"),
    (dict(patience=1.5), TypeError, "patience"),
    (dict(min_delta=-0.1), ValueError, "min_delta"),
    (dict(mode="up"), ValueError, "mode"),
    (dict(monitor=3), TypeError, "monitor"),
    (dict(restore_best="yes"), TypeError, "restore_best"),
])
def test_bad_early_stopping_arguments_are_named(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        EarlyStopping(**kwargs)
