"""save/load and state_dict: exact round trips for every model, PyTorch's
names and layouts, and every kind of bad file or dict refused without a
half-loaded model."""
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from fastbp.io import FORMAT_VERSION, load
from fastbp.lstm import LSTM
from fastbp.mlp import MLP
from fastbp.rnn import RNN

MODELS = {
    "mlp": lambda seed=0: MLP([5, 7, 4, 3], activation=["tanh", "relu"], seed=seed),
    "mlp-mse": lambda seed=0: MLP([5, 3], output="identity", loss="mse", l2=0.01,
                                  dtype="float64", seed=seed, mse_form="half_mean"),
    "rnn": lambda seed=0: RNN(5, 6, 3, loss="cross_entropy", dtype="float32", seed=seed),
    "rnn-relu": lambda seed=0: RNN(5, 6, 3, nonlinearity="relu", loss="mse", many_to_one=True,
                                   l2=0.1, dtype="float64", seed=seed),
    "lstm": lambda seed=0: LSTM(5, 6, 3, loss="cross_entropy", seed=seed),
    "lstm-peep": lambda seed=0: LSTM(5, 6, 3, peepholes=True, loss="mse", dtype="float64",
                                     seed=seed),
}

TORCH_NAMES = {
    "mlp": ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"],
    "mlp-mse": ["0.weight", "0.bias"],
    "rnn": ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "readout.weight", "readout.bias"],
    "lstm": ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "readout.weight", "readout.bias"],
}


def outputs(model, seed=0):
    """The model's outputs on fixed random inputs."""
    rng = np.random.default_rng(seed)
    if isinstance(model, MLP):
        return model.forward(rng.standard_normal((4, 5)))
    out, _ = model.forward(rng.standard_normal((3, 2, 5)))
    return out


def assert_same_model(a, b):
    assert type(a) is type(b)
    assert a._config() == b._config()
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype
        np.testing.assert_array_equal(sa[k], sb[k])
    np.testing.assert_array_equal(outputs(a), outputs(b))


@pytest.mark.parametrize("kind", MODELS)
def test_save_load_round_trip_is_exact(kind, tmp_path):
    model = MODELS[kind](seed=3)
    path = tmp_path / "model.npz"
    assert model.save(path) == str(path)
    loaded = load(path)
    assert_same_model(model, loaded)
    assert_same_model(model, type(model).load(str(path)))
    assert os.listdir(tmp_path) == ["model.npz"]          # no temporary file left


@pytest.mark.parametrize("kind", MODELS)
def test_state_dict_round_trip_is_exact(kind):
    model, other = MODELS[kind](seed=1), MODELS[kind](seed=2)
    assert not np.array_equal(outputs(model), outputs(other))
    sd = model.state_dict()
    other.load_state_dict(sd)
    assert_same_model(model, other)
    # state_dict returns copies, and load_state_dict copies in: changing sd touches neither
    before = outputs(model)
    for v in sd.values():
        v[...] = 0
    np.testing.assert_array_equal(outputs(model), before)
    np.testing.assert_array_equal(outputs(other), before)


@pytest.mark.parametrize("kind", TORCH_NAMES)
def test_state_dict_uses_pytorch_names_and_layouts(kind):
    model = MODELS[kind]()
    sd = model.state_dict()
    assert list(sd) == TORCH_NAMES[kind]
    if isinstance(model, MLP):
        for l, (W, b) in enumerate(model.params):
            np.testing.assert_array_equal(sd[f"{2 * l}.weight"], W)
            np.testing.assert_array_equal(sd[f"{2 * l}.bias"], b)
    else:
        gates = 4 if isinstance(model, LSTM) else 1
        assert sd["weight_ih_l0"].shape == (gates * 6, 5)
        assert sd["weight_hh_l0"].shape == (gates * 6, 6)
        assert sd["bias_ih_l0"].shape == sd["bias_hh_l0"].shape == (gates * 6,)
        assert sd["readout.weight"].shape == (3, 6) and sd["readout.bias"].shape == (3,)


def test_lstm_peepholes_have_their_own_names():
    sd = MODELS["lstm-peep"]().state_dict()
    assert [k for k in sd if k.startswith("peephole")] == ["peephole_i_l0", "peephole_f_l0",
                                                         "peephole_o_l0"]
    assert all(sd[k].shape == (6,) for k in sd if k.startswith("peephole"))


@pytest.mark.parametrize("kind", ["mlp", "rnn", "lstm"])
def test_bad_state_dicts_leave_the_model_unchanged(kind):
    model = MODELS[kind]()
    good = model.state_dict()
    before = outputs(model)
    first, last = list(good)[0], list(good)[-1]
    cases = {
        "missing": {k: v for k, v in good.items() if k != last},
        "unexpected": dict(good, extra=np.zeros(3)),
        "shape": dict(good, **{last: np.zeros(good[last].size + 1)}),
        "nan": dict(good, **{last: np.full_like(good[last], np.nan)}),
    }
    messages = {"missing": "missing", "unexpected": "unexpected", "shape": last, "nan": "NaN"}
    for case, sd in cases.items():
        sd[first] = sd[first] + 1.0            # a valid change that must not be applied
        with pytest.raises(ValueError, match=messages[case]):
            model.load_state_dict(sd)
        np.testing.assert_array_equal(outputs(model), before)
    with pytest.raises(TypeError, match="state_dict"):
        model.load_state_dict([1, 2, 3])


def test_load_state_dict_converts_dtype_and_accepts_lists():
    model = MODELS["rnn"]()                    # float32
    sd = {k: v.astype(np.float64).tolist() for k, v in model.state_dict().items()}
    model.load_state_dict(sd)
    assert all(v.dtype == np.float32 for v in model.state_dict().values())


# -- bad files ----------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "rnn.npz"
    MODELS["rnn"]().save(path)
    return path


def _rewrite(path, target, change):
    """Copy the saved arrays to `target`, changed by change(dict) (in place)."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    change(arrays)
    with open(target, "wb") as f:
        np.savez(f, **arrays)
    return target


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nothing.npz")


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.95])
def test_truncated_file(saved, tmp_path, cut):
    data = saved.read_bytes()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(ValueError, match=r"bad\.npz: (not a fastbp model file|corrupted or truncated)"):
        load(bad)


def test_corrupted_bytes(saved, tmp_path):
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as z:              # flip bytes inside one stored array
        info = z.getinfo("param/weight_hh_l0.npy")
    middle = info.header_offset + 30 + len(info.filename) + info.compress_size // 2 + 40
    data[middle:middle + 8] = b"\xff" * 8
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"bad\.npz: corrupted or truncated.*CRC"):
        load(bad)


def test_not_an_npz(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a fastbp model file"):
        load(text)
    npy = tmp_path / "array.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(ValueError, match="single .npy"):
        load(npy)
    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(pickle.dumps({"weights": [1, 2]}))
    with pytest.raises(ValueError, match="not a fastbp model file"):
        load(pickled)


def test_pickled_arrays_are_never_loaded(saved, tmp_path):
    def add_object_array(a):
        a["param/readout.bias"] = np.array([object()], dtype=object)
    bad = _rewrite(saved, tmp_path / "bad.npz", add_object_array)
    with pytest.raises(ValueError, match="allow_pickle"):
        load(bad)


@pytest.mark.parametrize("change, match", [
    (lambda a: a.pop("fastbp_format"), "no 'fastbp_format'"),
    (lambda a: a.update(fastbp_format=np.array(FORMAT_VERSION + 1)), "newer"),
    (lambda a: a.update(fastbp_format=np.array("one")), "malformed"),
    (lambda a: a.pop("model"), "no 'model'"),
    (lambda a: a.update(model=np.array("GRU")), "unknown model class 'GRU'"),
    (lambda a: a.pop("config"), "no 'config'"),
    (lambda a: a.update(config=np.array("{not json")), "configuration is unreadable"),
    (lambda a: a.update(config=np.array(json.dumps({"hidden_size": 6}))), "does not build"),
    (lambda a: a.pop("param/weight_hh_l0"), "missing.*weight_hh_l0"),
    (lambda a: a.update({"param/extra": np.zeros(2)}), "unexpected.*extra"),
    (lambda a: a.update({"param/weight_hh_l0": np.zeros((6, 5), np.float32)}), "weight_hh_l0"),
    (lambda a: a.update({"param/bias_ih_l0": np.zeros(6, np.float64)}), "dtype float64"),
    (lambda a: a.update({"param/bias_ih_l0": np.full(6, np.inf, np.float32)}), "NaN or infinity"),
], ids=["no-format", "newer", "bad-format", "no-model", "unknown-model", "no-config",
        "bad-json", "bad-config", "missing-param", "extra-param", "wrong-shape", "wrong-dtype",
        "not-finite"])
def test_mismatched_files_are_refused_with_the_reason(saved, tmp_path, change, match):
    bad = _rewrite(saved, tmp_path / "bad.npz", change)
    with pytest.raises(ValueError, match=match):
        load(bad)


def test_loading_as_the_wrong_class(saved):
    with pytest.raises(ValueError, match="holds a RNN, not a LSTM"):
        LSTM.load(saved)


def test_a_failed_save_keeps_the_previous_file(saved, monkeypatch):
    before = saved.read_bytes()

    def broken_savez(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        MODELS["rnn"](seed=5).save(saved)
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == [saved.name]
