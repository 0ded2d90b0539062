"""model.fit for the MLP and the recurrent models (RNN, LSTM, GRU): the loss falls, runs are
reproducible, fit takes exactly the steps a hand-written loop takes, truncated
BPTT carries the state across chunks, and failures and Ctrl-C leave the model
as after the last completed step."""
import os
import signal
import sys
import tracemalloc

import numpy as np
import pytest

from fastbp.mlp import MLP
from fastbp.optim import SGD, Adam
from fastbp.training import History, shuffle_order
from cells import cells
from cells.cells import MODEL_CELLS

RNN_CELL = MODEL_CELLS[0]


# -- small problems ------------------------------------------------------------
def blobs(n=120, seed=0):
    """Three separable Gaussian blobs in 4-D: (X (n, 4), labels (n,))."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.standard_normal((n, 4)) * 0.5 + np.eye(4)[y] * 2.0
    return X, y


def sequences(T=12, N=16, I=2, O=3, loss="cross_entropy", many_to_one=False, seed=0):
    """Sequences whose target at t depends on past inputs (a running sum)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((T, N, I))
    s = np.cumsum(X[..., 0], axis=0)
    if loss == "cross_entropy":
        Y = np.digitize(s, np.quantile(s, np.linspace(0, 1, O + 1)[1:-1]))
    else:
        Y = np.repeat(0.3 * s[..., None], O, axis=-1)
    if many_to_one:
        Y = Y[-1]
    return X, Y


def seq_model(cell, I=2, H=5, O=3, **kw):
    """The model of a cell (tests/cells/cells.py's Cell) with these defaults."""
    kw.setdefault("dtype", "float64")
    kw.setdefault("loss", "cross_entropy")
    kw.setdefault("seed", 0)
    return cells.model(cell, I, H, O, **kw)


def params_of(model):
    return [p.copy() for _, p in model.named_parameters()]


def assert_same_params(a, b, rtol=0.0):
    for x, y in zip(params_of(a) if not isinstance(a, list) else a,
                    params_of(b) if not isinstance(b, list) else b):
        if rtol:
            np.testing.assert_allclose(x, y, rtol=rtol, atol=1e-13)
        else:
            np.testing.assert_array_equal(x, y)


def no_states(model):
    """No initial states (zeros): one None per state name of the model's cell."""
    return (None,) * len(cells.cell_of(model).state_names)


def public_loss_and_grad(model, X, Y, states):
    """The sequence models' public loss_and_grad with explicit initial states;
    returns (loss, grads list in state-dict order, final states tuple)."""
    loss, grads, final = cells.model_loss_and_grad(cells.cell_of(model), model, X, Y, states)
    return loss, [grads[name] for name in model.params], tuple(final)


# -- the loss falls ----------------------------------------------------------------
def test_mlp_fit_learns_blobs():
    X, y = blobs()
    net = MLP([4, 16, 3], seed=0)
    before = net.evaluate(X, y)
    history = net.fit(X, y, epochs=15, batch_size=16, optimizer=Adam(0.01), seed=0,
                      validation_data=(X, y), progress=False)
    assert isinstance(history, History) and not history.interrupted
    assert history["epoch"] == list(range(1, 16))
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["val_loss"][-1] < 0.2 * before[0]
    assert history["val_accuracy"][-1] >= 0.95
    assert set(history) == {"epoch", "loss", "time", "val_loss", "val_accuracy", "val_time"}
    assert all(len(v) == 15 for v in history.values())


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
@pytest.mark.parametrize("loss, many_to_one", [("cross_entropy", False), ("mse", False),
                                               ("cross_entropy", True)])
def test_sequence_fit_reduces_the_loss(cell, loss, many_to_one):
    X, Y = sequences(loss=loss, many_to_one=many_to_one)
    model = seq_model(cell, loss=loss, many_to_one=many_to_one, seed=1)
    loss0, _ = model.evaluate(X, Y)
    history = model.fit(X, Y, epochs=25, batch_size=4, optimizer=Adam(0.02), bptt=6,
                        validation_data=(X, Y), seed=0, progress=False)
    assert history["val_loss"][-1] < 0.7 * loss0
    assert ("val_accuracy" in history) == (loss == "cross_entropy")


def test_sgd_with_the_notes_rule_descends():
    X, y = blobs()
    net = MLP([4, 8, 3], seed=3)
    history = net.fit(X, y, epochs=10, batch_size=len(X), optimizer=SGD(lr=0.5), shuffle=False,
                      progress=False)
    assert all(b < a for a, b in zip(history["loss"], history["loss"][1:]))   # full-batch GD


# -- fit takes exactly the steps of a plain loop ----------------------------------
def test_mlp_fit_equals_a_hand_written_loop():
    X, y = blobs(50)
    a, b = MLP([4, 6, 3], dtype="float64", seed=2), MLP([4, 6, 3], dtype="float64", seed=2)
    a.fit(X, y, epochs=2, batch_size=16, optimizer=SGD(0.1, momentum=0.9), shuffle=False,
          progress=False)
    opt = SGD(0.1, momentum=0.9)
    for _ in range(2):
        for start in range(0, 50, 16):
            _, grads = b.loss_and_grad(X[start:start + 16], y[start:start + 16])
            opt.step([p for pair in b.params for p in pair], [g for pair in grads for g in pair])
    assert_same_params(a, b)


def test_shuffled_fit_visits_batches_in_the_seeded_order():
    X, y = blobs(40)
    a, b = MLP([4, 6, 3], dtype="float64", seed=2), MLP([4, 6, 3], dtype="float64", seed=2)
    a.fit(X, y, epochs=2, batch_size=10, optimizer=SGD(0.1), seed=7, progress=False)
    opt = SGD(0.1)
    for epoch in (1, 2):    # epoch e's order is drawn from (seed, e) alone
        order = np.random.default_rng(np.random.SeedSequence(7, spawn_key=(epoch,))).permutation(40)
        np.testing.assert_array_equal(order, shuffle_order(40, 7, epoch))
        for start in range(0, 40, 10):
            idx = order[start:start + 10]
            _, grads = b.loss_and_grad(X[idx], y[idx])
            opt.step([p for pair in b.params for p in pair], [g for pair in grads for g in pair])
    assert_same_params(a, b)


@pytest.mark.parametrize("make", [lambda: MLP([4, 6, 3], seed=0)] + [
    lambda cell=cell: seq_model(cell, I=4, O=3, loss="cross_entropy", dtype="float32")
    for cell in MODEL_CELLS], ids=["mlp"] + [c.id for c in MODEL_CELLS])
def test_fit_is_reproducible_given_a_seed(make):
    X, y = blobs(48)
    if not isinstance(make(), MLP):
        X, y = np.stack([X] * 3), np.stack([y] * 3)      # (T=3, N=48, 4)
    runs = []
    for seed in (5, 5, 6):
        model = make()
        h = model.fit(X, y, epochs=2, batch_size=8, seed=seed, progress=False)
        runs.append((params_of(model), h["loss"]))
    assert_same_params(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    assert any(not np.array_equal(p, q) for p, q in zip(runs[0][0], runs[2][0]))


# -- truncated BPTT ------------------------------------------------------------------
@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_bptt_covering_the_sequence_is_full_bptt(cell):
    X, Y = sequences(T=10, N=6)
    runs = []
    for bptt in (None, 10, 25):
        model = seq_model(cell, seed=4)
        model.fit(X, Y, epochs=2, batch_size=3, optimizer=SGD(0.2), bptt=bptt, shuffle=False,
                  progress=False)
        runs.append(model)
    # the same steps by hand: one full-sequence gradient per batch of sequences
    ref = seq_model(cell, seed=4)
    opt = SGD(0.2)
    for _ in range(2):
        for cols in (slice(0, 3), slice(3, 6)):
            _, grads, _ = public_loss_and_grad(ref, X[:, cols], Y[:, cols], no_states(ref))
            opt.step(list(ref.params.values()), grads)
    for model in runs:
        assert_same_params(model, ref)


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_truncated_bptt_carries_the_state_between_chunks(cell):
    X, Y = sequences(T=11, N=4)
    model = seq_model(cell, seed=5)
    model.fit(X, Y, epochs=1, batch_size=4, optimizer=SGD(0.1), bptt=4, shuffle=False,
              progress=False)
    # by hand: chunks [0,4) [4,8) [8,11), each starting from the previous chunk's final state
    ref = seq_model(cell, seed=5)
    opt, states = SGD(0.1), no_states(ref)
    for t0, t1 in ((0, 4), (4, 8), (8, 11)):
        _, grads, states = public_loss_and_grad(ref, X[t0:t1], Y[t0:t1], states)
        opt.step(list(ref.params.values()), grads)
    assert_same_params(model, ref)


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_truncated_bptt_many_to_one_trains_the_last_chunk(cell):
    X, Y = sequences(T=9, N=4, many_to_one=True)
    model = seq_model(cell, many_to_one=True, seed=6)
    model.fit(X, Y, epochs=1, batch_size=4, optimizer=SGD(0.1), bptt=4, shuffle=False,
              progress=False)
    ref = seq_model(cell, many_to_one=True, seed=6)
    # the state after the first 5 steps, from a forward pass over them
    *_, states = public_loss_and_grad(ref, X[:5], Y, no_states(ref))
    _, grads, _ = public_loss_and_grad(ref, X[5:], Y, states)
    SGD(0.1).step(list(ref.params.values()), grads)
    assert_same_params(model, ref)


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
@pytest.mark.parametrize("loss, many_to_one, l2, one_hot", [
    ("cross_entropy", False, 0.0, False), ("cross_entropy", False, 0.1, True),
    ("cross_entropy", True, 0.1, False), ("mse", False, 0.0, False), ("mse", True, 0.2, False)])
def test_evaluation_scores_the_training_objective_in_any_chunks(cell, loss, many_to_one, l2, one_hot):
    X, Y = sequences(T=13, N=5, loss=loss, many_to_one=many_to_one)
    if one_hot:
        Y = np.eye(3)[Y]
    model = seq_model(cell, loss=loss, many_to_one=many_to_one, l2=l2, seed=7)
    whole = model.evaluate(X, Y)
    loss_full, _, _ = public_loss_and_grad(model, X, Y, no_states(model))
    np.testing.assert_allclose(whole[0], loss_full, rtol=1e-12)
    if loss == "cross_entropy":
        labels = np.argmax(Y, -1) if one_hot else Y
        assert whole[1] == np.mean(model.predict(X) == labels)
    else:
        assert whole[1] is None
    for bptt in (1, 4, 13):
        chunked = model.evaluate(X, Y, batch_size=2, bptt=bptt)
        np.testing.assert_allclose(chunked[0], whole[0], rtol=1e-12)    # the state is carried
        assert chunked[1] == whole[1]


# -- clipping ------------------------------------------------------------------------
def test_clip_norm_bounds_every_step():
    X, y = blobs(30)
    net = MLP([4, 6, 3], dtype="float64", seed=0)
    before = np.concatenate([p.ravel() for p in params_of(net)])
    net.fit(X, y, epochs=1, batch_size=30, optimizer=SGD(1.0), clip_norm=1e-3, progress=False)
    after = np.concatenate([p.ravel() for p in params_of(net)])
    assert 0 < np.linalg.norm(after - before) <= 1e-3 * (1 + 1e-6)


# -- failures and interruptions --------------------------------------------------------
def _fail_on_call(monkeypatch, model, method, n, exc):
    """Make model.<method> raise `exc` on its n-th call."""
    original = getattr(model, method)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise exc
        return original(*args, **kwargs)
    monkeypatch.setattr(model, method, wrapper)


def _mlp_after_steps(X, y, steps):
    ref = MLP([4, 6, 3], seed=1)
    ref.fit(X[:10 * steps], y[:10 * steps], epochs=1, batch_size=10, optimizer=SGD(0.1),
            shuffle=False, progress=False)
    return ref


def test_an_error_mid_fit_leaves_the_last_completed_step(monkeypatch):
    X, y = blobs(60)
    net = MLP([4, 6, 3], seed=1)
    _fail_on_call(monkeypatch, net, "loss_and_grad", 3, RuntimeError("disk on fire"))
    with pytest.raises(RuntimeError, match="disk on fire"):
        net.fit(X, y, epochs=1, batch_size=10, optimizer=SGD(0.1), shuffle=False, progress=False)
    assert_same_params(net, _mlp_after_steps(X, y, 2))


def test_keyboard_interrupt_returns_the_history_so_far(monkeypatch):
    X, y = blobs(60)
    net = MLP([4, 6, 3], seed=1)
    _fail_on_call(monkeypatch, net, "loss_and_grad", 9, KeyboardInterrupt())   # in epoch 2
    history = net.fit(X, y, epochs=5, batch_size=10, optimizer=SGD(0.1), shuffle=False,
                      progress=False)
    assert history.interrupted
    assert history["epoch"] == [1] and len(history["loss"]) == 1
    ref = MLP([4, 6, 3], seed=1)
    opt = SGD(0.1)
    ref.fit(X, y, epochs=1, batch_size=10, optimizer=opt, shuffle=False, progress=False)
    ref.fit(X[:20], y[:20], epochs=1, batch_size=10, optimizer=opt, shuffle=False, progress=False)
    assert_same_params(net, ref)


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32",
                    reason="needs POSIX signals")
def test_ctrl_c_finishes_the_current_step_then_stops(monkeypatch):
    X, y = blobs(60)
    net = MLP([4, 6, 3], seed=1)
    original = net.loss_and_grad
    calls = {"n": 0}

    def ctrl_c_during_third_step(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGINT)     # arrives while the step is computed
        return original(*args)
    monkeypatch.setattr(net, "loss_and_grad", ctrl_c_during_third_step)
    handler = signal.getsignal(signal.SIGINT)
    history = net.fit(X, y, epochs=2, batch_size=10, optimizer=SGD(0.1), shuffle=False,
                      progress=False)
    assert history.interrupted and history["epoch"] == []
    assert signal.getsignal(signal.SIGINT) is handler          # restored
    assert_same_params(net, _mlp_after_steps(X, y, 3))         # the third step completed


# -- progress ------------------------------------------------------------------------
def test_plain_progress_line_without_tqdm(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)            # import tqdm -> ImportError
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    X, y = blobs(40)
    MLP([4, 6, 3]).fit(X, y, epochs=2, batch_size=10, validation_data=(X, y), progress=True)
    err = capsys.readouterr().err
    assert "\r" in err and "epoch 2/2" in err and "loss" in err and "val_accuracy" in err
    assert err.count("\n") == 2                                 # one finished line per epoch


def test_tqdm_progress_bar(capsys):
    pytest.importorskip("tqdm")
    X, y = blobs(40)
    MLP([4, 6, 3]).fit(X, y, epochs=2, batch_size=10, progress=True)
    err = capsys.readouterr().err
    assert "epoch 2/2" in err and "4/4" in err and "loss" in err


def test_no_output_without_progress(capsys):
    X, y = blobs(40)
    MLP([4, 6, 3]).fit(X, y, epochs=1, progress=False)
    assert capsys.readouterr() == ("", "")


# -- bad arguments ---------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(epochs=0), ValueError, "epochs"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=2.5), TypeError, "batch_size"),
    (dict(optimizer="rmsprop"), TypeError, "optimizer"),
    (dict(clip_norm=0.0), ValueError, "clip_norm"),
    (dict(seed=1.5), TypeError, "seed"),
    (dict(seed=-1), ValueError, "seed: expected an integer >= 0 or None, got -1"),
    (dict(validation_data=np.zeros(3)), TypeError, "validation_data"),
])
def test_bad_fit_arguments_are_named(kwargs, exc, match):
    X, y = blobs(20)
    net = MLP([4, 6, 3])
    before = params_of(net)
    with pytest.raises(exc, match=match):
        net.fit(X, y, progress=False, **kwargs)
    assert_same_params(before, params_of(net))


def test_bad_data_is_named_before_training():
    X, y = blobs(20)
    net = MLP([4, 6, 3])
    with pytest.raises(ValueError, match="X"):
        net.fit(X[:, :3], y, progress=False)
    with pytest.raises(ValueError, match="y"):
        net.fit(X, y[:-1], progress=False)
    with pytest.raises(ValueError, match=r"validation_data\[0\]"):
        net.fit(X, y, validation_data=(X[:, :2], y), progress=False)
    with pytest.raises(TypeError):
        net.fit(X, y, bptt=5, progress=False)                   # sequence models only
    rnn = seq_model(RNN_CELL)
    Xs, Ys = sequences()
    with pytest.raises(ValueError, match="bptt"):
        rnn.fit(Xs, Ys, bptt=0, progress=False)
    with pytest.raises(ValueError, match="X"):
        rnn.fit(Xs[..., :1], Ys, progress=False)
    with pytest.raises(ValueError, match="y"):
        rnn.fit(Xs, Ys[:-1], progress=False)
    with pytest.raises(ValueError, match=r"validation_data\[1\]"):
        rnn.fit(Xs, Ys, validation_data=(Xs, Ys[:, :2]), progress=False)


# -- data with nothing to score; BPTT(k1, k2) with k2 beyond T ---------------------------
@pytest.mark.parametrize("where", ["fit", "validation", "evaluate"])
def test_data_with_no_step_to_score_is_refused_by_name_before_training(where):
    X, Y = sequences(T=5, N=4)
    rnn = seq_model(RNN_CELL)
    before = params_of(rnn)
    zero = np.zeros(4, dtype=int)
    with pytest.raises(ValueError, match=r"(lengths|validation_data\[2\] \(lengths_val\)): every "
                                         r"length is 0, there is no step to score"):
        if where == "fit":
            rnn.fit(X, Y, lengths=zero, progress=False)
        elif where == "validation":
            rnn.fit(X, Y, validation_data=(X, Y, zero), progress=False)
        else:
            rnn.evaluate(X, Y, lengths=zero)
    assert_same_params(before, params_of(rnn))
    with pytest.raises(ValueError, match=r"burn_in: expected fewer steps than the sequences' T = 5"):
        rnn.fit(X, Y, bptt=(2, 2), burn_in=5, progress=False)
    many_to_one = seq_model(RNN_CELL, many_to_one=True)         # scores the state at step 0: allowed
    many_to_one.fit(X, Y[-1], lengths=zero, epochs=1, progress=False)


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_bptt_k2_beyond_the_sequence_costs_the_memory_of_the_sequence(cell):
    X, Y = sequences(T=4, N=6)
    a, b = seq_model(cell), seq_model(cell)
    a.fit(X, Y, epochs=2, batch_size=3, bptt=(2, 4), seed=0, progress=False)
    tracemalloc.start()
    try:
        b.fit(X, Y, epochs=2, batch_size=3, bptt=(2, 10 ** 6), seed=0, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_same_params(a, b)
    assert peak < 1 << 20, f"{peak} bytes for a T=4 batch"


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
@pytest.mark.parametrize("burn_in", [0, 1])
def test_bptt_k1_beyond_the_sequence_costs_the_memory_of_the_sequence(cell, burn_in):
    X, Y = sequences(T=4, N=6)
    a, b = seq_model(cell), seq_model(cell)
    a.fit(X, Y, epochs=2, batch_size=3, bptt=(4, 4), burn_in=burn_in, seed=0, progress=False)
    tracemalloc.start()
    try:
        b.fit(X, Y, epochs=2, batch_size=3, bptt=(10 ** 6, 10 ** 6), burn_in=burn_in, seed=0,
              progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_same_params(a, b)
    assert peak < 1 << 20, f"{peak} bytes for a T=4 batch"


# -- Ctrl-C: the history's lists stay the same length --------------------------------------
@pytest.mark.parametrize("classifier", [True, False])
def test_history_lists_have_one_entry_per_epoch_wherever_ctrl_c_lands(monkeypatch, classifier):
    X, y = blobs(30)
    if not classifier:
        y = np.eye(3)[y]
    make = (lambda: MLP([4, 5, 3], seed=1) if classifier else
            MLP([4, 5, 3], output="identity", loss="mse", seed=1))
    calls_per_epoch = 3 + 2        # 3 training batches, then 2 validation batches
    for n in range(1, 3 * calls_per_epoch + 1):
        net = make()
        with monkeypatch.context() as m:
            _fail_on_call(m, net, "loss_and_grad", n, KeyboardInterrupt())
            history = net.fit(X, y, epochs=3, batch_size=10, optimizer=SGD(0.1), progress=False,
                              validation_data=(X[:20], y[:20]))
        assert history.interrupted
        epochs = len(history["epoch"])
        assert {len(v) for v in history.values()} == {epochs}, (n, history)
        in_validation = (n - 1) % calls_per_epoch >= 3
        assert epochs == (n - 1) // calls_per_epoch + in_validation, n
        if in_validation:           # trained, but its validation was cut short
            assert np.isnan(history["val_loss"][-1]) and np.isfinite(history["loss"][-1])


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32",
                    reason="needs POSIX signals")
def test_ctrl_c_during_load_state_dict_sets_every_parameter_or_none(monkeypatch):
    net, source = MLP([4, 6, 5, 3], seed=1), MLP([4, 6, 5, 3], seed=2)
    real_copyto, calls = np.copyto, []

    def copyto(dst, src, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):       # the handler would run here, between bytecodes
                pass
        return real_copyto(dst, src, *args, **kwargs)
    monkeypatch.setattr(np, "copyto", copyto)
    with pytest.raises(KeyboardInterrupt):
        net.load_state_dict(source.state_dict())
    monkeypatch.setattr(np, "copyto", real_copyto)
    assert len(calls) == 6
    assert_same_params(net, source)
