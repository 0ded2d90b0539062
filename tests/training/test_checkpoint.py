"""Training checkpoints: a run interrupted (between fit calls, by an error or a
restart mid-epoch) and resumed from its checkpoint equals the uninterrupted run
bit for bit, for fit and for custom loops; a checkpoint of another run is
refused by name."""
import json
import os
import signal
import zipfile

import numpy as np
import pytest

import fastbp
from fastbp.gru import GRU
from fastbp.io import load_checkpoint, save_checkpoint
from fastbp.lstm import LSTM
from fastbp.mlp import MLP
from fastbp.optim import SGD, Adam
from fastbp.rnn import RNN


def blobs(n=50, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return rng.standard_normal((n, 4)) * 0.5 + np.eye(4)[y] * 2.0, y


def sequences(T=6, N=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((T, N, 2))
    return X, (np.cumsum(X[..., 0], axis=0) > 0).astype(int)


def mlp_case():
    X, y = blobs()
    return (lambda: MLP([4, 8, 3], dtype="float32", seed=1), X, y,
            dict(batch_size=16, validation_data=blobs(20, seed=1), clip_norm=1.0))


def rnn_case():
    X, y = sequences()
    return (lambda: RNN(2, 5, 2, loss="cross_entropy", dtype="float64", seed=1), X, y,
            dict(batch_size=4, bptt=4, validation_data=sequences(seed=1)))


def lstm_case():
    X, y = sequences()
    return (lambda: LSTM(2, 4, 2, loss="cross_entropy", dtype="float64", seed=1), X, y,
            dict(batch_size=4, bptt=(2, 10 ** 6)))


def gru_case():
    """Truncated BPTT over sequences of their own lengths, with resets."""
    X, y = sequences()
    rng = np.random.default_rng(2)
    lengths, reset = rng.integers(1, X.shape[0] + 1, X.shape[1]), rng.random(X.shape[:2]) < 0.2
    return (lambda: GRU(2, 4, 2, loss="cross_entropy", dtype="float64", seed=1), X, y,
            dict(batch_size=4, bptt=3, lengths=lengths, reset=reset,
                 validation_data=sequences(seed=1)))


CASES = {"mlp": mlp_case, "rnn": rnn_case, "lstm": lstm_case, "gru": gru_case}
OPTIMIZERS = {"adam": lambda: Adam(0.01), "momentum": lambda: SGD(0.05, momentum=0.9, nesterov=True)}


def assert_same_run(a, b, ha, hb):
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p, q, err_msg=name)
    for key in ha:
        if key not in ("time", "val_time"):
            np.testing.assert_array_equal(ha[key], hb[key], err_msg=key)
    assert list(hb) == list(ha) and len(hb["time"]) == len(ha["time"])
    np.testing.assert_array_equal(ha.step_loss, hb.step_loss)


def assert_same_optimizer(oa, ob):
    sa, sb = oa.state_dict(), ob.state_dict()
    assert {k: sa[k] for k in ("class", "hyper", "t", "epoch")} == \
        {k: sb[k] for k in ("class", "hyper", "t", "epoch")}
    for ra, rb in zip(sa["state"], sb["state"]):
        for x, y in zip(ra, rb):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("opt", OPTIMIZERS)
@pytest.mark.parametrize("case", CASES)
def test_resumed_fit_equals_uninterrupted_fit(tmp_path, case, opt):
    make, X, y, kw = CASES[case]()
    whole, whole_opt = make(), OPTIMIZERS[opt]()
    h_whole = whole.fit(X, y, epochs=4, optimizer=whole_opt, seed=3, progress=False,
                        checkpoint=tmp_path / "whole.npz", **kw)
    path = tmp_path / "cut.npz"
    make().fit(X, y, epochs=2, optimizer=OPTIMIZERS[opt](), seed=3, progress=False,
               checkpoint=path, **kw)
    # a new process: a fresh model and optimizer, the same call
    resumed, resumed_opt = make(), OPTIMIZERS[opt]()
    h_resumed = resumed.fit(X, y, epochs=4, optimizer=resumed_opt, seed=3, progress=False,
                            checkpoint=path, **kw)
    assert h_resumed["epoch"] == [1, 2, 3, 4]
    assert_same_run(whole, resumed, h_whole, h_resumed)
    assert_same_optimizer(whole_opt, resumed_opt)
    for p in (tmp_path / "whole.npz", path):         # both files hold epoch 4's state
        ck = load_checkpoint(p)
        assert ck.epoch == 4 and ck.seed == 3 and ck.history["loss"] == h_whole["loss"]
    again = make()                                   # finished: nothing left to train
    h_again = again.fit(X, y, epochs=4, optimizer=OPTIMIZERS[opt](), seed=3, progress=False,
                        checkpoint=path, **kw)
    assert_same_run(whole, again, h_whole, h_again)


@pytest.mark.parametrize("case", ["mlp", "rnn", "gru"])
def test_fit_stopped_mid_epoch_resumes_at_the_start_of_that_epoch(tmp_path, case, monkeypatch):
    make, X, y, kw = CASES[case]()
    whole = make()
    h_whole = whole.fit(X, y, epochs=3, optimizer=Adam(0.01), progress=False,
                        checkpoint=tmp_path / "whole.npz", **kw)
    seed = load_checkpoint(tmp_path / "whole.npz").seed     # seed=None: drawn, then saved
    path = tmp_path / "cut.npz"
    opt = Adam(0.01)
    real_step, calls = Adam.step, []
    per_epoch = len(h_whole.step_loss) // 3

    def failing_step(self, params, grads):
        calls.append(1)
        if len(calls) == per_epoch + 2:     # in the middle of epoch 2
            raise RuntimeError("the machine went down")
        return real_step(self, params, grads)
    monkeypatch.setattr(Adam, "step", failing_step)
    with pytest.raises(RuntimeError, match="went down"):
        make().fit(X, y, epochs=3, optimizer=opt, seed=seed, progress=False, checkpoint=path,
                   **kw)
    monkeypatch.setattr(Adam, "step", real_step)
    assert load_checkpoint(path).epoch == 1
    resumed = make()
    h_resumed = resumed.fit(X, y, epochs=3, optimizer=Adam(0.01), progress=False,
                            checkpoint=path, **kw)
    assert_same_run(whole, resumed, h_whole, h_resumed)


@pytest.mark.parametrize("case", CASES)
def test_fit_twice_with_one_optimizer_equals_one_longer_fit(case):
    make, X, y, kw = CASES[case]()
    kw.pop("validation_data", None)
    a, b = make(), make()
    ha = a.fit(X, y, epochs=2, optimizer=Adam(0.01), seed=5, progress=False, **kw)
    opt = Adam(0.01)
    h1 = b.fit(X, y, epochs=1, optimizer=opt, seed=5, progress=False, **kw)
    h2 = b.fit(X, y, epochs=1, optimizer=opt, seed=5, progress=False, **kw)
    assert (h1["epoch"], h2["epoch"], opt.epoch) == ([1], [2], 2)
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p, q)
    assert ha["loss"] == h1["loss"] + h2["loss"]


def test_a_checkpoint_is_refused_by_a_different_run(tmp_path):
    make, X, y, kw = CASES["mlp"]()
    path = tmp_path / "ck.npz"
    make().fit(X, y, epochs=1, optimizer=Adam(0.01), seed=3, progress=False, checkpoint=path, **kw)
    before = path.read_bytes()
    for change, match in [
            (dict(seed=4), "seed: 3 in the file, 4 here"),
            (dict(batch_size=8), "batch_size: 16 in the file, 8 here"),
            (dict(optimizer=Adam(0.02)), r"the optimizer: Adam\(lr=0.01.* in the file, Adam\(lr=0.02"),
            (dict(optimizer=SGD(0.01)), "the optimizer"),
            (dict(shuffle=False), "shuffle: True in the file, False here"),
            (dict(clip_norm=None), "clip_norm: 1.0 in the file, None here")]:
        model = make()
        args = dict(kw, epochs=2, optimizer=Adam(0.01), seed=3, progress=False, checkpoint=path)
        args.update(change)
        with pytest.raises(ValueError, match="checkpoint: .*ck.npz is the state of another run; "
                                             ".*" + match):
            model.fit(X, y, **args)
        np.testing.assert_array_equal(model.params[0][0], make().params[0][0])  # untouched
    with pytest.raises(ValueError, match="the model"):
        MLP([4, 9, 3], dtype="float32").fit(X, y, epochs=2, optimizer=Adam(0.01), seed=3,
                                           progress=False, checkpoint=path, **kw)
    with pytest.raises(ValueError, match="holds a MLP, not a RNN"):
        RNN(4, 3, 3).fit(np.zeros((2, 50, 4)), np.zeros((2, 50, 3)), progress=False,
                         checkpoint=path)
    with pytest.raises(ValueError, match="samples: 50 in the file, 49 here"):
        make().fit(X[:49], y[:49], epochs=2, optimizer=Adam(0.01), seed=3, progress=False,
                   checkpoint=path, **kw)
    with pytest.raises(TypeError, match="checkpoint: expected a path"):
        make().fit(X, y, progress=False, checkpoint=3)
    assert path.read_bytes() == before


def test_custom_loop_resumed_from_a_checkpoint_equals_uninterrupted_loop(tmp_path):
    X, y = blobs()

    def run(model, opt, rng, epochs, start=0, path=None):
        params = [p for _, p in model.named_parameters()]
        for epoch in range(start + 1, epochs + 1):
            order = rng.permutation(len(X))
            for i in range(0, len(X), 16):
                idx = order[i:i + 16]
                _, grads = model.loss_and_grad(X[idx], y[idx])
                opt.step(params, [g for pair in grads for g in pair])
            if path is not None:
                save_checkpoint(path, model, opt, epoch=epoch, rng=rng)

    whole = MLP([4, 8, 3], dtype="float64", seed=1)
    run(whole, SGD(0.1, momentum=0.9), np.random.default_rng(8), 3)
    path = tmp_path / "loop.npz"
    run(MLP([4, 8, 3], dtype="float64", seed=1), SGD(0.1, momentum=0.9),
        np.random.default_rng(8), 2, path=path)
    ck = load_checkpoint(path)
    assert ck.epoch == 2 and ck.seed is None and ck.settings is None
    assert isinstance(ck.optimizer, SGD) and ck.optimizer.t == 2 * 4
    run(ck.model, ck.optimizer, ck.rng, 3, start=ck.epoch)
    for (_, p), (_, q) in zip(whole.named_parameters(), ck.model.named_parameters()):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("bit_generator", ["PCG64", "MT19937", "Philox", "SFC64", "PCG64DXSM"])
def test_a_saved_generator_continues_the_same_draws(tmp_path, bit_generator):
    rng = np.random.Generator(getattr(np.random, bit_generator)(4))
    rng.random(7)
    save_checkpoint(tmp_path / "c.npz", MLP([2, 2]), Adam(), rng=rng)
    back = load_checkpoint(tmp_path / "c.npz").rng
    np.testing.assert_array_equal(back.random(5), rng.random(5))


def test_a_checkpoint_loads_as_a_model_and_a_model_file_is_not_a_checkpoint(tmp_path):
    model = MLP([3, 4, 2], seed=2)
    opt = Adam()
    params = [p for _, p in model.named_parameters()]
    opt.step(params, [np.ones_like(p) for p in params])
    save_checkpoint(tmp_path / "c.npz", model, opt, epoch=1)
    back = fastbp.load(tmp_path / "c.npz")
    np.testing.assert_array_equal(back.params[0][0], model.params[0][0])
    model.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match=r"m\.npz: holds a model but no training state"):
        load_checkpoint(tmp_path / "m.npz")


def _rewrite(path, change):
    with zipfile.ZipFile(path) as z:
        entries = {n[:-4]: np.lib.format.read_array(z.open(n)) for n in z.namelist()}
    change(entries)
    with open(path, "wb") as f:
        np.savez(f, **entries)


@pytest.mark.parametrize("change, match", [
    (lambda e: e.update({"optimizer/0/1": np.zeros((3, 3), np.float32)}),
     r"optimizer array 0/1 has shape \(3, 3\)"),
    (lambda e: e.pop("optimizer/1/0"), r"optimizer arrays \['optimizer/1/0'\] missing"),
    (lambda e: e.update({"optimizer/0/0": np.full((4, 3), np.nan, np.float32)}), "NaN"),
    (lambda e: e.update(optimizer=np.array(json.dumps({"class": "RMSprop"}))), "expected the keys"),
    (lambda e: e.update(training=np.array(json.dumps(
        {"epoch": -1, "seed": None, "rng": None, "settings": None}))), "epoch: expected an integer"),
    (lambda e: e.update(training=np.array(json.dumps(
        {"epoch": 1, "seed": None, "rng": {"bit_generator": "PCG64", "state": 5},
         "settings": None}))), "rng: not a valid PCG64 state"),
    (lambda e: e.update(training=np.array(json.dumps(
        {"epoch": 1, "seed": None, "rng": {"bit_generator": "os.system"},
         "settings": None}))), "rng: unknown bit generator"),
    (lambda e: e.update({"history/loss": np.zeros((2, 2))}), "'history/loss' is malformed"),
])
def test_bad_checkpoints_are_refused_by_name(tmp_path, change, match):
    model = MLP([3, 4, 2], seed=2)
    opt = Adam()
    params = [p for _, p in model.named_parameters()]
    opt.step(params, [np.ones_like(p) for p in params])
    path = tmp_path / "c.npz"
    save_checkpoint(path, model, opt, history={"loss": [1.0, 0.5]})
    _rewrite(path, change)
    with pytest.raises(ValueError, match=r"c\.npz: .*" + match):
        load_checkpoint(path)


def _nested(levels):
    value = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("args, exc, match", [
    (dict(seed=2 ** 128), ValueError, r"seed: expected an integer in \[0, 2\*\*128\)"),
    (dict(seed=10 ** 5000), ValueError, "seed: .* an integer of 16610 bits"),
    (dict(epoch=2 ** 62), ValueError, r"epoch: expected an integer in \[0, 2\*\*62\)"),
    (dict(settings=[1, 2]), TypeError, "settings: expected a dict or None, got list"),
    (dict(settings={"a": _nested(7)}), TypeError, "settings: .* at most 7 levels"),
    (dict(settings={"a": "x" * (1 << 20)}), TypeError, "settings: .* more than 1048576"),
    (dict(settings={"a": 10 ** 5000}), TypeError, "settings: expected a JSON-able"),
    (dict(history=[1.0]), TypeError, "history: expected a dict"),
    (dict(history={"loss": 1.0}), TypeError, r"history\['loss'\]: expected a list of numbers"),
    (dict(history={"loss": [[1.0, 2.0]]}), TypeError, r"history\['loss'\]: .*shape \(1, 2\)"),
    (dict(history={"loss": ["x"]}), TypeError, r"history\['loss'\]"),
    (dict(history={"a\0b": [1.0]}), ValueError, "history: keys must be plain names"),
    (dict(history={"x" * 70000: [1.0]}), ValueError, "history: keys must be plain names"),
    (dict(history={"loss\udcff": [1.0]}), ValueError, "history: keys must be plain names"),
    (dict(history={"": [1.0]}), ValueError, "history: keys must be plain names"),
    (dict(history={3: [1.0]}), ValueError, "history: keys must be plain names"),
])
def test_save_checkpoint_refuses_what_load_checkpoint_could_not_read(tmp_path, args, exc, match):
    model, opt = MLP([3, 4, 2], seed=2), Adam()
    path = tmp_path / "c.npz"
    with pytest.raises(exc, match=match):
        save_checkpoint(path, model, opt, **args)
    assert not path.exists() and not list(tmp_path.iterdir())
    # the largest values accepted are read back as written
    save_checkpoint(path, model, opt, epoch=2 ** 62 - 1, seed=2 ** 128 - 1,
                    settings={"a": _nested(6)}, history={"loss": [1.0, None]})
    back = load_checkpoint(path)
    assert (back.epoch, back.seed, back.settings) == (2 ** 62 - 1, 2 ** 128 - 1, {"a": _nested(6)})
    assert back.history["loss"][0] == 1.0 and np.isnan(back.history["loss"][1])


def test_fit_with_a_checkpoint_refuses_an_unsavable_seed_before_training(tmp_path):
    make, X, y, kw = CASES["mlp"]()
    model = make()
    with pytest.raises(ValueError, match=r"seed: expected an integer in \[0, 2\*\*128\) with a "
                                         r"checkpoint"):
        model.fit(X, y, epochs=1, seed=2 ** 200, progress=False, checkpoint=tmp_path / "c.npz",
                  **kw)
    np.testing.assert_array_equal(model.params[0][0], make().params[0][0])     # untrained
    assert not list(tmp_path.iterdir())
    h = make().fit(X, y, epochs=1, seed=2 ** 128 - 1, progress=False,
                   checkpoint=tmp_path / "c.npz", **kw)
    assert load_checkpoint(tmp_path / "c.npz").seed == 2 ** 128 - 1 and h["epoch"] == [1]


@pytest.mark.parametrize("change, match", [
    (lambda e: e.update({"history/epoch": np.array([np.nan, 2.0])}), "history numbers 2 epochs"),
    (lambda e: e.update({"history/epoch": np.array([np.inf, 2.0])}), "history numbers 2 epochs"),
    (lambda e: e.update({"history/epoch": np.array([1.0, 3.0])}), "history numbers 2 epochs"),
    (lambda e: e.update({"history/epoch": np.arange(100.0)}), "history numbers 100 epochs"),
    (lambda e: e.update({"history/epoch": np.arange(3.0), "history/loss": np.ones(3),
                         "history/time": np.ones(3)}), "history numbers 3 epochs"),   # from 0
    (lambda e: e.pop("history/epoch"), "no 'epoch' list"),
    (lambda e: e.update({"history/loss": np.ones(3)}), r"lists \['loss'\] do not have one entry"),
    (lambda e: e.update(optimizer=np.array(json.dumps(
        dict(json.loads(e["optimizer"].item()), epoch=1000)))), "optimizer at epoch 1000"),
])
def test_fit_resumes_only_from_a_consistent_history_and_changes_nothing_otherwise(
        tmp_path, change, match):
    make, X, y, kw = CASES["mlp"]()
    path = tmp_path / "ck.npz"
    make().fit(X, y, epochs=2, optimizer=Adam(0.01), seed=3, progress=False, checkpoint=path, **kw)
    _rewrite(path, change)
    model, opt = make(), Adam(0.01)
    with pytest.raises(ValueError, match=r"checkpoint: .*ck\.npz is not the state of a fit run: "
                                         r".*" + match):
        model.fit(X, y, epochs=3, optimizer=opt, seed=3, progress=False, checkpoint=path, **kw)
    np.testing.assert_array_equal(model.params[0][0], make().params[0][0])
    assert (opt.t, opt.epoch, opt.state) == (0, 0, None)


def test_fit_resumes_from_a_checkpoint_without_history(tmp_path):
    make, X, y, kw = CASES["mlp"]()
    whole, path = make(), tmp_path / "ck.npz"
    ha = whole.fit(X, y, epochs=2, optimizer=Adam(0.01), seed=3, progress=False, **kw)
    first, opt = make(), Adam(0.01)
    first.fit(X, y, epochs=1, optimizer=opt, seed=3, progress=False, **kw)
    save_checkpoint(path, first, opt, seed=3, settings=dict(
        samples=len(X), batch_size=kw["batch_size"], shuffle=True, bptt=None,
        clip_norm=kw["clip_norm"]))
    resumed = make()
    hb = resumed.fit(X, y, epochs=2, optimizer=Adam(0.01), progress=False, checkpoint=path, **kw)
    assert hb["epoch"] == [2] and hb["loss"] == ha["loss"][1:]
    np.testing.assert_array_equal(resumed.params[0][0], whole.params[0][0])


def test_fit_refuses_a_checkpoint_path_it_could_not_write_before_training(tmp_path):
    make, X, y, kw = CASES["mlp"]()
    (tmp_path / "folder").mkdir()
    (tmp_path / "loop.npz").symlink_to("loop.npz")
    for path, exc, match in [
            (tmp_path / "absent" / "ck.npz", FileNotFoundError, "absent"),
            (tmp_path / "folder", IsADirectoryError, "Is a directory"),
            (tmp_path / "loop.npz", OSError, "symbolic links"),
            ("", FileNotFoundError, "''"),
            (str(tmp_path / "ck.npz") + os.sep, IsADirectoryError, "ends in a separator"),
            (tmp_path / ("x" * 300 + ".npz"), OSError, "too long"),
            (str(tmp_path / "a\0b.npz"), ValueError, "null character")]:
        model, opt = make(), Adam(0.01)
        with pytest.raises(exc, match="checkpoint: .*" + match):
            model.fit(X, y, epochs=1, optimizer=opt, seed=3, progress=False, checkpoint=path, **kw)
        np.testing.assert_array_equal(model.params[0][0], make().params[0][0])     # untrained
        assert opt.t == 0
    assert sorted(os.listdir(tmp_path)) == ["folder", "loop.npz"]
    assert os.listdir(tmp_path / "folder") == []


class _MyAdam(Adam):
    pass


def _stepped(opt, params):
    opt.step(params, [np.ones_like(p) for p in params])
    return opt


@pytest.mark.parametrize("make_opt, exc, match", [
    (lambda ps: _stepped(SGD(0.1, momentum=0.5), [np.ones(3)]), ValueError,
     r"optimizer: its state is for other parameters \(1 arrays\) than the model's \(4\)"),
    (lambda ps: _stepped(Adam(), [p.astype(np.float64) for p in ps]), ValueError,
     "optimizer: its state is for other parameters"),
    (lambda ps: _MyAdam(), TypeError, "optimizer: expected a fastbp.optim SGD or Adam, got _MyAdam"),
    (lambda ps: Adam, TypeError, "optimizer: expected a fastbp.optim SGD or Adam, got type"),
])
def test_save_checkpoint_refuses_an_optimizer_load_checkpoint_could_not_restore(
        tmp_path, make_opt, exc, match):
    model = MLP([3, 4, 2], seed=2)
    params = [p for _, p in model.named_parameters()]
    with pytest.raises(exc, match=match):
        save_checkpoint(tmp_path / "c.npz", model, make_opt(params))
    assert not list(tmp_path.iterdir())


def test_a_diverged_model_is_not_written_to_a_file_load_would_refuse(tmp_path):
    model = MLP([3, 4, 2], seed=2)
    model.params[1][1][0] = np.inf
    with pytest.raises(ValueError, match=r"model: parameter '2.bias' contains NaN or infinity"):
        model.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match=r"model: parameter '2.bias'"):
        save_checkpoint(tmp_path / "c.npz", model, Adam())
    assert not list(tmp_path.iterdir())


def test_a_checkpoint_with_an_overflowed_adam_moment_loads_back(tmp_path):
    model = MLP([3, 4, 2], seed=2)
    params = [p for _, p in model.named_parameters()]
    opt = Adam()
    with pytest.warns(RuntimeWarning, match="overflow"):
        opt.step(params, [np.full_like(p, 1e25) for p in params])     # v = inf in float32
    assert np.isinf(opt.state[0][1]).all()
    save_checkpoint(tmp_path / "c.npz", model, opt)
    assert_same_optimizer(load_checkpoint(tmp_path / "c.npz").optimizer, opt)


def test_fit_refuses_an_optimizer_a_checkpoint_cannot_hold_before_training(tmp_path):
    make, X, y, kw = CASES["mlp"]()
    model = make()
    with pytest.raises(TypeError, match="optimizer: a checkpoint holds the state of fastbp.optim "
                                        "SGD or Adam, got _MyAdam"):
        model.fit(X, y, epochs=1, optimizer=_MyAdam(0.01), seed=3, progress=False,
                  checkpoint=tmp_path / "c.npz", **kw)
    np.testing.assert_array_equal(model.params[0][0], make().params[0][0])
    assert not list(tmp_path.iterdir())


def test_ctrl_c_while_resuming_restores_the_model_and_its_optimizer_together(tmp_path, monkeypatch):
    make, X, y, kw = CASES["mlp"]()
    path = tmp_path / "ck.npz"
    trained, opt = make(), Adam(0.01)
    trained.fit(X, y, epochs=1, optimizer=opt, seed=3, progress=False, checkpoint=path, **kw)
    real = Adam.load_state_dict

    def interrupted(self, sd):      # Ctrl-C between the model's restore and the optimizer's
        if self is resumed:
            os.kill(os.getpid(), signal.SIGINT)
        real(self, sd)
    monkeypatch.setattr(Adam, "load_state_dict", interrupted)
    model, resumed = make(), Adam(0.01)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, epochs=2, optimizer=resumed, seed=3, progress=False, checkpoint=path, **kw)
    np.testing.assert_array_equal(model.params[0][0], trained.params[0][0])
    assert_same_optimizer(resumed, opt)


def test_fit_refuses_a_model_a_checkpoint_cannot_hold_before_training(tmp_path):
    class MyMLP(MLP):
        pass
    _, X, y, kw = CASES["mlp"]()
    model = MyMLP([4, 8, 3], dtype="float32", seed=1)
    before = model.params[0][0].copy()
    with pytest.raises(TypeError, match="model: expected a fastbp MLP, RNN, LSTM or GRU, got MyMLP"):
        model.fit(X, y, epochs=1, seed=3, progress=False, checkpoint=tmp_path / "c.npz", **kw)
    np.testing.assert_array_equal(model.params[0][0], before)
    assert not list(tmp_path.iterdir())


def test_save_checkpoint_refuses_a_generator_load_checkpoint_could_not_rebuild(tmp_path):
    class Foreign(np.random.Generator):     # as over a bit generator numpy does not ship
        @property
        def bit_generator(self):
            return type("Xoshiro256", (), {"state": {"bit_generator": "Xoshiro256",
                                                     "state": {"s": [1, 2, 3, 4]}}})()
    with pytest.raises(TypeError, match="rng: a checkpoint holds a Generator over numpy's "
                                        "PCG64, .*unknown bit generator 'Xoshiro256'"):
        save_checkpoint(tmp_path / "c.npz", MLP([2, 2]), SGD(0.1),
                        rng=Foreign(np.random.PCG64(1)))
    assert not list(tmp_path.iterdir())
