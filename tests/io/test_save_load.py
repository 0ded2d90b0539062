"""save/load and state_dict: exact round trips for every model, PyTorch's
names and layouts, and every kind of bad file or dict refused without a
half-loaded model."""
import errno
import io
import json
import os
import pickle
import signal
import stat
import struct
import subprocess
import sys
import time
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

import fastbp
from fastbp.optim import SGD
from fastbp.gru import GRU
from fastbp.io import FORMAT_VERSION, load
from fastbp.lstm import LSTM
from fastbp.mlp import MLP
from fastbp.rnn import RNN
from cells import cells
from installed_python import run_python, start_python

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
    "gru": lambda seed=0: GRU(5, 6, 3, loss="cross_entropy", seed=seed),
    "gru-stacked": lambda seed=0: GRU(5, 6, 3, loss="mse", many_to_one=True, l2=0.1,
                                      dtype="float32", seed=seed, mse_form="half_mean",
                                      num_layers=2, bidirectional=True),
}

TORCH_NAMES = {
    "mlp": ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"],
    "mlp-mse": ["0.weight", "0.bias"],
    "rnn": ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "readout.weight", "readout.bias"],
    "lstm": ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "readout.weight", "readout.bias"],
    "gru": ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "readout.weight", "readout.bias"],
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
    assert a.config() == b.config()
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
        gates = cells.cell_of(model).gates
        assert sd["weight_ih_l0"].shape == (gates * 6, 5)
        assert sd["weight_hh_l0"].shape == (gates * 6, 6)
        assert sd["bias_ih_l0"].shape == sd["bias_hh_l0"].shape == (gates * 6,)
        assert sd["readout.weight"].shape == (3, 6) and sd["readout.bias"].shape == (3,)


def test_lstm_peepholes_have_their_own_names():
    sd = MODELS["lstm-peep"]().state_dict()
    assert [k for k in sd if k.startswith("peephole")] == ["peephole_i_l0", "peephole_f_l0",
                                                         "peephole_o_l0"]
    assert all(sd[k].shape == (6,) for k in sd if k.startswith("peephole"))


@pytest.mark.parametrize("kind", ["mlp", "rnn", "lstm", "gru"])
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


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_path_that_is_not_a_regular_file_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    code = ("import sys, fastbp\n"
            "for path in sys.argv[1:]:\n"
            "    try:\n"
            "        fastbp.load(path)\n"
            "    except ValueError as e:\n"
            "        print(e)\n")
    # a subprocess, so that a load waiting for a FIFO's writer fails the test, not hangs it
    out = run_python(code, fifo, tmp_path, os.devnull, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"{p}: not a fastbp model file (.npz): not a regular file"
                                       for p in (fifo, tmp_path, os.devnull)]


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
    (lambda a: a.update(model=np.array("Transformer")), "unknown model class 'Transformer'"),
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


def test_loading_as_the_wrong_class(saved, tmp_path):
    with pytest.raises(ValueError, match="holds a RNN, not a LSTM"):
        LSTM.load(saved)
    with pytest.raises(ValueError, match="holds a RNN, not a GRU"):
        GRU.load(saved)
    gru = MODELS["gru"]().save(tmp_path / "gru.npz")
    for cls in (RNN, LSTM, MLP):
        with pytest.raises(ValueError, match=f"holds a GRU, not a {cls.__name__}"):
            cls.load(gru)


def test_a_failed_save_keeps_the_previous_file(saved, monkeypatch):
    before = saved.read_bytes()

    def broken_savez(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        MODELS["rnn"](seed=5).save(saved)
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == [saved.name]


# -- crafted files: refused by name before anything is built or allocated -----------------
def _npy(header, data=b""):
    """The bytes of an .npy entry with this header dict and these data bytes."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + data


def _zip(target, entries):
    with zipfile.ZipFile(target, "w") as z:
        for name, payload in entries.items():
            z.writestr(name + ".npy", payload if isinstance(payload, bytes) else
                       _array_bytes(payload))
    return target


def _array_bytes(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _entries_of(path):
    with zipfile.ZipFile(path) as z:
        return {n[:-4]: z.read(n) for n in z.namelist()}


def _nested(depth):
    return '{"sizes": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize("change, match", [
    (lambda e: e.update(config=_array_bytes(np.array(json.dumps({"sizes": [5, 2 ** 40]})))),
     r"sizes: expected an integer in \[1, 2147483647\], got 1099511627776"),
    (lambda e: e.update(config=_array_bytes(np.array(json.dumps({"sizes": [2 ** 30] * 4000})))),
     "sizes: expected a list of 2 to"),
    (lambda e: e.update(config=_array_bytes(np.array(json.dumps({"sizes": [5, 2 ** 30, 2 ** 30, 3]})))),
     r"'0.weight' has shape \(7, 5\), the configuration gives \(1073741824, 5\)"),
    (lambda e: e.update(config=_array_bytes(np.array(_nested(100000)))), "nested too deeply"),
    (lambda e: e.update(config=_array_bytes(np.array(_nested(20)))), "nested too deeply"),
    (lambda e: e.update(config=_array_bytes(np.array('{"sizes": [5, NaN]}'))), "NaN is not a number"),
    (lambda e: e.update(config=_array_bytes(np.array(json.dumps({"sizes": [5, 3], "evil": 1})))),
     r"unknown argument\(s\) \['evil'\]"),
    (lambda e: e.update({"param/0.weight": _npy({"descr": "<f4", "fortran_order": False,
                                                  "shape": (2 ** 40,)}, b"\0" * 64)}),
     r"declares shape \(1099511627776,\)"),
    (lambda e: e.update({"param/0.weight": _npy({"descr": "<f4", "fortran_order": False,
                                                  "shape": (2 ** 62, 2 ** 62)}, b"\0" * 64)}),
     "declares shape"),
    (lambda e: e.update({"param/0.weight": _npy({"descr": "|O", "fortran_order": False,
                                                  "shape": (1,)}, b"\0" * 8)}),
     "allow_pickle"),
    (lambda e: e.update({"param/0.weight": _npy({"descr": [("a", "<f4")], "fortran_order": False,
                                                  "shape": (1,)}, b"\0" * 4)}),
     "not a number or a string"),
], ids=["huge-size", "huge-layers", "size-beyond-arrays", "deep-json", "nested-json", "nan-json",
        "unknown-key", "npy-2**40", "npy-2**124", "npy-object", "npy-structured"])
def test_crafted_files_are_refused_by_name_before_allocating(tmp_path, change, match):
    MODELS["mlp"]().save(tmp_path / "good.npz")
    entries = _entries_of(tmp_path / "good.npz")
    change(entries)
    bad = _zip(tmp_path / "bad.npz", entries)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"bad\.npz: .*" + match):
            load(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak} bytes allocated to refuse a {bad.stat().st_size}-byte file"


def _overlapping_zip(target, n, tail):
    """n stored entries, each a valid .npy of uint8 whose bytes run to the end of
    the file, through every later entry (the "overlapped files" zip bomb): each
    declares about the file's size, n of them n times it."""
    def header(nbytes):
        text = f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({nbytes},), }}".encode()
        text += b" " * (63 - (10 + len(text)) % 64) + b"\n"
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text
    rest, records = b"\0" * tail, []
    for i in reversed(range(n)):
        name = f"e{i:04d}.npy".encode()
        data = header(len(rest)) + rest
        local = struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 0, 0, 0, zlib.crc32(data),
                            len(data), len(data), len(name), 0) + name
        records.append((name, zlib.crc32(data), len(data), len(local + data)))
        rest = local + data
    body, central = rest, b""
    for name, crc, size, span in reversed(records):
        central += struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, size,
                               size, len(name), 0, 0, 0, 0, 0, len(body) - span) + name
    target.write_bytes(body + central + struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, n, n,
                                                    len(central), len(body), 0))
    return target


def test_a_compressed_file_declaring_far_more_than_it_holds_is_refused_before_allocating(tmp_path):
    MODELS["mlp"]().save(tmp_path / "good.npz")
    entries = _entries_of(tmp_path / "good.npz")
    zeros = np.zeros((80 << 20) // 8)      # 80 MiB of zeros: deflated to about 80 KiB
    entries["param/extra"] = _array_bytes(zeros)
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(bad, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, payload in entries.items():
            z.writestr(name + ".npy", payload)
    del zeros, entries
    assert bad.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"bad\.npz: .*declare \d+ bytes, more than 64 times"):
            load(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20
    small = tmp_path / "small.npz"         # compressed, within the bound: read as ever
    with zipfile.ZipFile(tmp_path / "good.npz") as src, \
            zipfile.ZipFile(small, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            z.writestr(info.filename, src.read(info))
    assert_same_model(load(small), MODELS["mlp"]())


def test_entries_sharing_bytes_are_refused_before_allocating(tmp_path):
    bad = _overlapping_zip(tmp_path / "bad.npz", 40, 100_000)
    with zipfile.ZipFile(bad) as z:     # a zip Python reads: every entry checks out
        assert len(z.read("e0039.npy")) > 100_000 and len(z.read("e0000.npy")) > 100_000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"bad\.npz: .*entry 'e0001' overlaps another"):
            load(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < bad.stat().st_size, f"{peak} bytes allocated to refuse a {bad.stat().st_size}-byte file"


@pytest.mark.parametrize("key, value", [("many_to_one", "no"), ("many_to_one", 0),
                                        ("peepholes", 1), ("bidirectional", None)])
def test_a_saved_flag_that_is_not_true_or_false_is_refused(tmp_path, key, value):
    LSTM(3, 4, 2, seed=0).save(tmp_path / "good.npz")
    entries = _entries_of(tmp_path / "good.npz")
    with zipfile.ZipFile(tmp_path / "good.npz") as z, z.open("config.npy") as f:
        config = json.loads(str(np.lib.format.read_array(f)))
    config[key] = value         # the constructor reads any value as bool(value): "no" as True
    entries["config"] = _array_bytes(np.array(json.dumps(config)))
    with pytest.raises(ValueError, match=rf"bad\.npz: .*{key}: expected true or false, got "
                                         rf"{value!r}"):
        load(_zip(tmp_path / "bad.npz", entries))


@pytest.mark.parametrize("num_layers", [2 ** 31 - 1, 2 ** 31, 200])
def test_a_configuration_larger_than_its_arrays_is_refused_before_building(tmp_path, num_layers):
    RNN(5, 6, 3, num_layers=2, seed=0).save(tmp_path / "good.npz")
    entries = _entries_of(tmp_path / "good.npz")
    with zipfile.ZipFile(tmp_path / "good.npz") as z, z.open("config.npy") as f:
        config = json.loads(str(np.lib.format.read_array(f)))
    config["num_layers"] = num_layers
    entries["config"] = _array_bytes(np.array(json.dumps(config)))
    bad = _zip(tmp_path / "bad.npz", entries)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ValueError, match=r"bad\.npz: .*num_layers"):
            load(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20 and time.perf_counter() - started < 2


@pytest.mark.parametrize("flag, method, match", [
    (0x1, None, "marked encrypted"), (0, 99, "compression method 99"),
    (0, zipfile.ZIP_BZIP2, "compression method 12")])
def test_unsupported_zip_features_are_refused_by_name(tmp_path, flag, method, match):
    path = tmp_path / "m.npz"
    MODELS["mlp"]().save(path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
    central = data.rindex(b"PK\x01\x02", 0, len(data))    # the last central record
    start = data.index(b"PK\x01\x02")
    for info in infos:                                    # change every entry, both headers
        local = info.header_offset
        central_at = data.index(b"PK\x01\x02" + data[start + 4:start + 6], start)
        for at, flag_at, method_at in ((local, 6, 8), (central_at, 8, 10)):
            if flag:
                data[at + flag_at] |= flag
            if method is not None:
                data[at + method_at:at + method_at + 2] = method.to_bytes(2, "little")
        start = central_at + 46 + int.from_bytes(data[central_at + 28:central_at + 30], "little") \
            + int.from_bytes(data[central_at + 30:central_at + 32], "little") \
            + int.from_bytes(data[central_at + 32:central_at + 34], "little")
    assert central >= 0
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"bad\.npz: .*" + match):
        load(bad)


def test_single_bit_flips_load_an_equal_model_or_are_refused_by_name(tmp_path):
    """Every bit of a small saved model flipped in turn: either the file still
    loads, to the same model, or load raises the documented ValueError. Every
    bit of every fourth byte in CI (about 3 s); FASTBP_BITFLIP_STRIDE=1 for all."""
    stride = int(os.environ.get("FASTBP_BITFLIP_STRIDE", "4"))
    good = tmp_path / "good.npz"
    model = MLP([2, 2], output="identity", loss="mse", dtype="float32", seed=1)
    model.save(good)
    data = good.read_bytes()
    bad = tmp_path / "flip.npz"
    outcomes = {"equal": 0, "refused": 0}
    for bit in (b for b in range(len(data) * 8) if (b // 8) % stride == 0):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        bad.write_bytes(bytes(flipped))
        try:
            back = load(bad)
        except ValueError as e:
            assert str(e).startswith(f"{bad}: "), (bit, e)
            outcomes["refused"] += 1
        else:
            assert back.config() == model.config()
            for (name, p), (_, q) in zip(back.named_parameters(), model.named_parameters()):
                assert p.dtype == q.dtype and np.array_equal(p, q), (bit, name)
            outcomes["equal"] += 1
    assert outcomes["refused"] > len(data) * 4 // stride and outcomes["equal"] > 0, outcomes


# -- save: atomic, durable, permissions, symlinks, stale temporary files ------------------
_KILLED_SAVER = """
import sys
import fastbp
model = fastbp.MLP([2048, 2048], dtype="float32", seed=0)   # 16 MiB
while True:
    model.save(sys.argv[1])
"""


def test_a_save_killed_mid_write_leaves_no_temporary_file_after_the_next_save(tmp_path):
    target = tmp_path / "big.npz"
    for attempt in range(3):        # a kill between two saves leaves nothing: try again
        proc = start_python(_KILLED_SAVER, target)
        try:
            deadline = time.monotonic() + 60
            while not [n for n in os.listdir(tmp_path) if n.endswith(".npz.tmp")]:
                assert time.monotonic() < deadline and proc.poll() is None, "the saver never wrote"
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        if [n for n in os.listdir(tmp_path) if n.endswith(".npz.tmp")]:
            break
    else:
        pytest.fail("three kills landed between saves")
    MODELS["mlp"]().save(tmp_path / "other.npz")        # any save into the folder
    assert sorted(os.listdir(tmp_path)) == sorted({"other.npz"} | ({"big.npz"} & set(os.listdir(tmp_path))))
    if target.exists():                                 # the last complete save is intact
        assert load(target).sizes == (2048, 2048)


def test_temporary_files_of_live_writers_are_kept_and_day_old_ones_removed(tmp_path):
    host = fastbp.io._host()
    live = [tmp_path / f".fastbp-{os.getpid()}-0123456789abcdef-{host}.npz.tmp",   # this process
            tmp_path / ".fastbp-1-0123456789abcdef-elsewhere.npz.tmp",     # another host's: recent
            tmp_path / ".fastbp-k2j4_9x1.npz.tmp",                       # an older fastbp's: recent
            tmp_path / "unrelated.npz.tmp"]
    old = [tmp_path / ".fastbp-1-fedcba9876543210-elsewhere.npz.tmp",
           tmp_path / ".fastbp-q8w7e6r5.npz.tmp"]
    for f in live + old:
        f.write_bytes(b"partial")
    day_ago = time.time() - 24 * 3600 - 60
    for f in old + [live[-1]]:
        os.utime(f, (day_ago, day_ago))
    MODELS["mlp"]().save(tmp_path / "m.npz")
    assert all(f.exists() for f in live) and not any(f.exists() for f in old)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_saved_files_get_the_permissions_of_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = MODELS["mlp"]().save(tmp_path / "m.npz")
        fastbp.io.save_checkpoint(tmp_path / "c.npz", MODELS["mlp"](), SGD(0.1))
    finally:
        os.umask(old)
    for name in ("m.npz", "c.npz"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o666 & ~umask
    assert path == str(tmp_path / "m.npz")


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o444])
def test_a_replaced_file_keeps_its_permissions(tmp_path, mode):
    old = os.umask(0o022)
    try:
        for name, save in (("m.npz", lambda p: MODELS["mlp"]().save(p)),
                           ("c.npz", lambda p: fastbp.io.save_checkpoint(p, MODELS["mlp"](), SGD(0.1)))):
            path = tmp_path / name
            save(path)
            os.chmod(path, mode)
            save(path)
            assert stat.S_IMODE(os.stat(path).st_mode) == mode
            link = tmp_path / ("link-" + name)      # through a symlink: its target's
            link.symlink_to(name)
            save(link)
            assert stat.S_IMODE(os.stat(path).st_mode) == mode and link.is_symlink()
    finally:
        os.umask(old)


def test_a_user_subclass_named_like_a_fastbp_model_leaves_save_and_load_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(fastbp.io, "_CLASSES", dict(fastbp.io._CLASSES))   # whatever happens
    model = MODELS["mlp"](seed=1)

    class MLP(fastbp.MLP):      # noqa: F811 (the name is the point)
        pass
    model.save(tmp_path / "m.npz")
    back = fastbp.MLP.load(tmp_path / "m.npz")
    assert type(back) is fastbp.MLP and type(load(tmp_path / "m.npz")) is fastbp.MLP
    assert_same_model(back, model)
    MLP([4, 3]).save(tmp_path / "sub.npz")         # a subclass is saved as its fastbp class
    assert type(load(tmp_path / "sub.npz")) is fastbp.MLP


def test_paths_may_be_bytes_and_anything_else_is_named(tmp_path):
    model = MODELS["mlp"](seed=1)
    raw = os.fsencode(tmp_path / "m.npz")
    assert model.save(raw) == str(tmp_path / "m.npz")
    assert_same_model(load(raw), model)
    fastbp.io.save_checkpoint(os.fsencode(tmp_path / "c.npz"), model, SGD(0.1))
    assert_same_model(fastbp.io.load_checkpoint(os.fsencode(tmp_path / "c.npz")).model, model)
    for call in (lambda: model.save(3), lambda: load(None),
                 lambda: fastbp.io.save_checkpoint(1.5, model, SGD(0.1)),
                 lambda: fastbp.io.load_checkpoint([])):
        with pytest.raises(TypeError, match="path: expected a str, bytes or os.PathLike path"):
            call()
    assert sorted(os.listdir(tmp_path)) == ["c.npz", "m.npz"]


def test_saving_to_a_symlink_loop_fails_and_keeps_the_link(tmp_path):
    loop = tmp_path / "loop.npz"
    loop.symlink_to("loop.npz")
    for save in (lambda: MODELS["mlp"]().save(loop),
                 lambda: fastbp.io.save_checkpoint(loop, MODELS["mlp"](), SGD(0.1))):
        with pytest.raises(OSError, match="loop.npz") as info:
            save()
        assert info.value.errno == errno.ELOOP
    assert loop.is_symlink() and os.readlink(loop) == "loop.npz"
    assert os.listdir(tmp_path) == ["loop.npz"]


def test_saving_through_a_symlink_writes_its_target(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "model.npz"
    MODELS["mlp"](seed=1).save(target)
    link = tmp_path / "latest.npz"
    link.symlink_to(os.path.join("real", "model.npz"))
    new = MODELS["mlp"](seed=2)
    new.save(link)
    assert link.is_symlink() and os.readlink(link) == os.path.join("real", "model.npz")
    assert_same_model(load(target), new)
    assert sorted(os.listdir(tmp_path)) == ["latest.npz", "real"]
    assert os.listdir(tmp_path / "real") == ["model.npz"]
