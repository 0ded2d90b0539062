"""Saving and loading models and training checkpoints: one .npz file, read without pickle.

File layout (NumPy's .npz: a zip of .npy arrays, all plain, no object arrays):

    "fastbp_format"   int scalar     the format version, FORMAT_VERSION (1)
    "model"           str scalar     the class: "MLP", "RNN", "LSTM" or "GRU"
    "config"          str scalar     JSON of the constructor's keyword arguments
    "param/<name>"    arrays         the parameters under their state-dict names
                                     (see fastbp._torch_names), in the model's dtype

A training checkpoint (:func:`save_checkpoint`, ``fit(..., checkpoint=path)``)
is a model file with the rest of the training state; ``load`` still reads its
model:

    "optimizer"              str scalar   JSON: class, hyperparameters, t, epoch, slots
    "optimizer/<i>/<j>"      arrays       slot j (momentum; Adam's m, v) of parameter i
    "training"               str scalar   JSON: epoch, seed, RNG state, fit's settings
    "history/<key>"          float arrays fit's History so far (loss, val_loss, ...)

Reading is a boundary: every entry's zip metadata and .npy header is checked
(compression method, sizes against the file's, dtype, shape) before its bytes
are read, so nothing is allocated beyond what the file holds; the JSON is
bounded in size and depth; the configuration is checked, and the parameter
shapes it implies compared with the arrays' headers, before a model is built.
Any missing, truncated, corrupted, crafted, newer or mismatched file raises a
ValueError naming the file and the problem (FileNotFoundError for a missing
one), never returns a half-loaded model.

Writing is atomic and durable: a temporary file in the target's folder
(created with the umask's permissions, or those of the file it replaces; named
after the writer's host and process), fsynced, renamed over the target (through a symlink: over the
link's target), then the folder fsynced. Temporary files left by writers that
were killed (their process is gone), or left for a day, are removed by the
next save into that folder.
"""
from __future__ import annotations

import errno
import inspect
import json
import math
import numbers
import os
import re
import secrets
import socket
import stat
import time
import zipfile
from collections import namedtuple
from typing import Any, Optional, Union

import numpy as np

from .optim import OPTIMIZER_CLASSES

__all__ = ["save", "load", "save_checkpoint", "load_checkpoint", "Checkpoint", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_FORMAT_KEY = "fastbp_format"
_PARAM_PREFIX = "param/"
_OPT_PREFIX = "optimizer/"
_HISTORY_PREFIX = "history/"
_KINDS = ("MLP", "RNN", "LSTM", "GRU")   # the model classes a file may name
_CLASSES = {}                       # name -> class, filled by register_model (io imports no model)

_MAX_ENTRIES = 1 << 16          # zip entries in a file
_MAX_JSON = 1 << 20             # characters of a JSON entry
_MAX_DEPTH = 8                  # nesting of a JSON entry
_MAX_SIZE = 2 ** 31 - 1         # a layer width or an input size
_DEFLATE_RATIO = 1100           # deflate expands at most ~1032 times
_MAX_EXPANSION = 64             # bytes a file's arrays may declare per byte of the file...
_EXPANSION_SLACK = 64 << 20     # ... plus these (a small compressed file of zeros)
_SLACK = 64                     # parameters a configuration may name beyond the file's (reported by name)


def _fspath(path, name="path"):
    """``path`` as a str (bytes decoded as the file system does), else TypeError naming it."""
    try:
        return os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(f"{name}: expected a str, bytes or os.PathLike path, got "
                        f"{type(path).__name__}") from None


def register_model(cls):
    """Make ``cls`` (fastbp.MLP, RNN, LSTM or GRU; fastbp._persistent registers every
    Persistent model) the class that files naming it are loaded as. Only fastbp's own:
    a user's subclass of the same name (``class MLP(fastbp.MLP)``) leaves the
    registry alone (it made every fastbp.MLP unsavable and files load as it)."""
    if cls.__name__ in _KINDS and cls.__module__.split(".")[0] == __name__.split(".")[0]:
        _CLASSES[cls.__name__] = cls
    return cls


def _model_classes():
    return {name: _CLASSES[name] for name in _KINDS if name in _CLASSES}


# -- writing ---------------------------------------------------------------------
def _model_arrays(model):
    name = type(model).__name__
    if name not in _CLASSES or not isinstance(model, _CLASSES[name]):
        raise TypeError(f"model: expected a fastbp MLP, RNN, LSTM or GRU, got {name}")
    arrays = {_FORMAT_KEY: np.array(FORMAT_VERSION, dtype=np.int64),
              "model": np.array(name),
              "config": np.array(json.dumps(model.config(), sort_keys=True))}
    for pname, p in model.named_parameters():
        if not np.isfinite(p).all():        # load refuses such a file: not written
            raise ValueError(f"model: parameter {pname!r} contains NaN or infinity (the training "
                             f"diverged); a file holding it could not be loaded")
        arrays[_PARAM_PREFIX + pname] = p
    return arrays


def save(model: Any, path: Union[str, os.PathLike]) -> str:
    """Write ``model`` to ``path`` (exactly; no suffix added). Returns ``path``.

    Atomic and durable (see the module documentation): a failure or a kill
    part-way leaves any previous file at ``path`` intact, and a power loss
    after ``save`` returned keeps the new file.
    """
    path = _fspath(path)
    _write(path, _model_arrays(model))
    return path


_TEMP = re.compile(r"\.fastbp-(\d+)-([0-9a-f]{16})-(.*)\.npz\.tmp")


def _host():
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:64] or "host"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True         # another user's process (or a pid we cannot ask about): keep
    return True


_ANY_TEMP = re.compile(r"\.fastbp-.*\.npz\.tmp")
_STALE_SECONDS = 24 * 3600      # no save takes a day: older temp files are abandoned


def _remove_stale(folder):
    """Remove the temporary files of writers on this host whose process is gone
    (killed mid-save), and any temporary file left for a day (a writer on
    another host sharing the folder, or an older fastbp's, whose process we
    cannot ask about). The pid check is POSIX only (Windows' os.kill would
    terminate the process): there, the age alone."""
    host, now = _host(), time.time()
    try:
        names = [n for n in os.listdir(folder) if _ANY_TEMP.fullmatch(n)]
    except OSError:
        return
    for name in names:
        full = os.path.join(folder, name)
        m = _TEMP.fullmatch(name)
        try:
            if m and m.group(3) == host and os.name == "posix":
                stale = int(m.group(1)) != os.getpid() and not _alive(int(m.group(1)))
            else:
                stale = now - os.lstat(full).st_mtime > _STALE_SECONDS
            if stale:
                os.unlink(full)
        except OSError:
            pass        # another saver removed it first, or we may not: harmless


def _fsync_folder(folder):
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass                # file systems that cannot fsync a directory
    finally:
        os.close(fd)


def _target(path):
    """The file a save to ``path`` replaces: ``path``, or through a symlink the
    file it leads to (created when missing). The OSError opening it would raise
    for an empty path or a symlink loop (which a rename would replace)."""
    if not path:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
    if path.endswith((os.sep, os.altsep or os.sep)):    # names a folder: no file to replace
        raise IsADirectoryError(errno.EISDIR, "Is a directory (the path ends in a separator)",
                                path)
    if not os.path.islink(path):
        return path
    try:
        return os.path.realpath(path, strict=True)
    except FileNotFoundError:
        return os.path.realpath(path)       # a dangling link: its target is created
    except OSError as e:                    # a loop (ELOOP): no file to write through it
        raise OSError(e.errno, e.strerror, path) from None


def _open_temp(folder):
    """(descriptor, name) of a new temporary file in ``folder`` (umask permissions)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(folder, f".fastbp-{os.getpid()}-{secrets.token_hex(8)}-{_host()}.npz.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp     # the umask applies, as for any new file
        except FileExistsError:
            continue


def _keep_mode(fd, target):
    """A file replaced keeps its permission bits (a private 0600 checkpoint stays
    private); a new one has the umask's."""
    if not hasattr(os, "fchmod"):
        return
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return          # no file there yet
    os.fchmod(fd, mode & 0o777)


def _check_name_length(folder, target):
    """OSError(ENAMETOOLONG) for a file name or path the folder's file system refuses."""
    for key, value in (("PC_NAME_MAX", os.path.basename(target)),
                       ("PC_PATH_MAX", os.path.abspath(target))):
        try:
            limit = os.pathconf(folder, key)
        except (AttributeError, ValueError, OSError):   # not POSIX, or no limit known
            continue
        if limit is not None and limit > 0 and len(os.fsencode(value)) > limit:
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), target)


def check_writable(path, name="path"):
    """Raise the OSError a save to ``path`` would raise (a missing or read-only
    folder, a directory, an empty path, a symlink loop), naming ``name``,
    without writing ``path``: ``fit(checkpoint=...)`` checks before training."""
    path = _fspath(path, name)
    if "\0" in path:
        raise ValueError(f"{name}: a path cannot hold a null character, got {path!r:.200}")
    try:
        target = _target(path)
        if os.path.isdir(target):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        folder = os.path.dirname(os.path.abspath(target))
        fd, tmp = _open_temp(folder)
        try:
            os.close(fd)
        finally:
            os.unlink(tmp)
        _check_name_length(folder, target)      # the rename's, which the probe's name is not
    except OSError as e:
        if e.errno is None:
            raise
        raise type(e)(e.errno, f"{name}: cannot write {path!r}: {e.strerror}") from None


def _write(path, arrays):
    """np.savez(arrays) to path: temp file (umask permissions), fsync, rename, fsync folder."""
    path = _fspath(path)
    target = _target(path)
    folder = os.path.dirname(os.path.abspath(target))
    _remove_stale(folder)
    fd, tmp = _open_temp(folder)
    try:
        _keep_mode(fd, target)
        f = os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    try:
        with f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)


def save_checkpoint(path, model, optimizer, *, epoch=None, seed=None, rng=None, history=None,
                    settings=None):
    """Write the whole training state to ``path`` (one .npz, atomically, as :func:`save`).

    Parameters
    ----------
    model : fastbp.MLP, RNN, LSTM or GRU
    optimizer : fastbp.optim.Optimizer
        Its :meth:`~fastbp.optim.Optimizer.state_dict`: hyperparameters, step
        count, moments.
    epoch : int >= 0 or None
        Epochs completed; None is ``optimizer.epoch`` (what ``fit`` counts).
    seed : int >= 0 or None
        The shuffling seed of the run (``fit`` derives epoch e's order from it).
    rng : numpy.random.Generator or None
        A custom loop's generator: its exact state is saved and
        :func:`load_checkpoint` returns a generator that continues the same draws.
    history : dict of lists of numbers, or None
        ``fit``'s History so far (``step_loss`` included when present).
    settings : JSON-able dict or None
        What the run must keep to resume exactly (``fit`` stores its batch
        size, shuffling, clipping, bptt and sample count, and refuses to resume
        with others).

    In a custom loop, save at the end of each epoch and resume from
    :func:`load_checkpoint`: given the same data and loop, the resumed run
    equals the uninterrupted one bit for bit.

    Only what :func:`load_checkpoint` reads back is written: a model with NaN or
    infinite parameters, an optimizer other than fastbp's SGD and Adam or with
    state for other parameters, a seed of 2**128 or more, an epoch of 2**62 or
    more, settings beyond the JSON bounds and history keys that are not plain
    names are refused (ValueError/TypeError naming them) before anything is written.
    """
    path = _fspath(path)
    arrays = _model_arrays(model)
    if type(optimizer) not in OPTIMIZER_CLASSES.values():     # the classes a file may name
        raise TypeError(f"optimizer: expected a fastbp.optim SGD or Adam, got "
                        f"{type(optimizer).__name__}")
    sd = optimizer.state_dict()
    state = sd["state"] or []
    params = [p for _, p in model.named_parameters()]
    if state and (len(state) != len(params) or any(a.shape != p.shape or a.dtype != p.dtype
                                                   for p, row in zip(params, state) for a in row)):
        raise ValueError(f"optimizer: its state is for other parameters ({len(state)} arrays) than "
                         f"the model's ({len(params)}); step it with the model's parameters, "
                         f"or reset() it")
    try:
        optimizer._checked(sd, copy=False)      # load_checkpoint's own checks, no copy
    except (TypeError, ValueError) as e:
        raise ValueError(f"optimizer: its state could not be read back: {e}") from None
    arrays["optimizer"] = np.array(json.dumps(dict(
        {k: sd[k] for k in ("class", "hyper", "t", "epoch")},
        slots=len(state[0]) if state else 0, params=len(state))))
    for i, st in enumerate(state):
        for j, a in enumerate(st):
            arrays[f"{_OPT_PREFIX}{i}/{j}"] = a
    # everything written is what load_checkpoint reads back: checked against its bounds here
    epoch = sd["epoch"] if epoch is None else epoch
    if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or not 0 <= epoch < _MAX_COUNT:
        raise ValueError(f"epoch: expected an integer in [0, 2**62) or None, got {_show(epoch)}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
                             or not 0 <= seed < _SEED_LIMIT):
        raise ValueError(f"seed: expected an integer in [0, 2**128) or None, got {_show(seed)}")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator or None, got {type(rng).__name__}")
    rng_state = None if rng is None else _plain(rng.bit_generator.state)
    if rng_state is not None:
        try:
            _generator(rng_state)           # what load_checkpoint rebuilds it from
        except ValueError as e:
            raise TypeError(f"rng: a checkpoint holds a Generator over numpy's "
                            f"{', '.join(_BIT_GENERATORS)}: {e}") from None
    if settings is not None and not isinstance(settings, dict):
        raise TypeError(f"settings: expected a dict or None, got {type(settings).__name__}")
    training = dict(epoch=int(epoch), seed=None if seed is None else int(seed),
                    rng=rng_state,
                    settings=settings)
    try:
        arrays["training"] = np.array(_readable_json(training))
    except (TypeError, ValueError, RecursionError) as e:
        raise TypeError(f"settings: expected a JSON-able dict of finite values, at most "
                        f"{_MAX_DEPTH - 1} levels of dicts and lists deep: {e}") from None
    if history is not None and not isinstance(history, dict):
        raise TypeError(f"history: expected a dict of lists of numbers or None, got "
                        f"{type(history).__name__}")
    for key, values in (history or {}).items():
        if not _plain_name(key):     # the zip entry's name: a null ends it, "/" nests it
            raise ValueError(f"history: keys must be plain names (1 to 200 bytes of UTF-8, no "
                             f"'/' or null character), got {key!r:.80}")
        try:
            column = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            if column.ndim != 1:
                raise ValueError(f"shape {column.shape}")
        except (TypeError, ValueError) as e:
            raise TypeError(f"history[{key!r}]: expected a list of numbers (or None), got "
                            f"{type(values).__name__} ({e})") from None
        arrays[_HISTORY_PREFIX + key] = column
    _write(path, arrays)
    return path


_MAX_COUNT = 2 ** 62            # epochs and steps a checkpoint holds
_SEED_LIMIT = 2 ** 128          # seeds a checkpoint holds (SeedSequence().entropy is 128 bits)


def _plain_name(key):
    try:
        return (isinstance(key, str) and 0 < len(key.encode("utf-8")) <= 200
                and "/" not in key and "\0" not in key)
    except UnicodeEncodeError:      # a lone surrogate
        return False


def _show(value):
    """repr(value) for a message, cut short (an int too long for repr included)."""
    try:
        text = repr(value)
    except ValueError:
        return f"an integer of {int(value).bit_length()} bits"
    return text if len(text) <= 80 else text[:77] + "..."


def _readable_json(value):
    """json.dumps(value), refused (ValueError) unless :func:`_json` reads it back."""
    text = json.dumps(value, allow_nan=False)
    if len(text) > _MAX_JSON:
        raise ValueError(f"{len(text)} characters, more than {_MAX_JSON}")
    _check_depth(json.loads(text), _MAX_DEPTH)
    return text


def _plain(value):
    """A bit generator's state as JSON types (arrays as lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


# -- reading -----------------------------------------------------------------------
def _read(path):
    """Every array of the .npz at ``path``, each entry's metadata and header
    checked before its bytes are read; ValueError naming the file otherwise."""
    try:    # non-blocking: opening a FIFO (or a device) waits for no writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:      # a directory, no permission, a null character
        raise ValueError(f"{path}: not a fastbp model file (.npz): {e}") from e
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ValueError(f"{path}: not a fastbp model file (.npz): not a regular file")
    with open(fd, "rb") as fh:
        size = st.st_size
        try:
            zf = zipfile.ZipFile(fh)
        except MemoryError:
            raise
        except Exception as e:          # anything the zip parser trips on: not a zip we read
            if _is_npy(fh):
                raise ValueError(f"{path}: not a fastbp model file (a single .npy array, not "
                                 f"an .npz)") from None
            raise ValueError(f"{path}: not a fastbp model file (.npz): {e}") from e
        with zf:
            try:
                return _entries(zf, size)
            except _Refused as e:
                raise ValueError(f"{path}: {e}") from None
            except MemoryError:         # the machine's, not the file's: sizes are bounded above
                raise
            except Exception as e:      # zipfile, zlib, the .npy parser: a corrupt file
                raise ValueError(f"{path}: corrupted or truncated model file: "
                                 f"{type(e).__name__}: {e}") from e


class _Refused(Exception):
    """A reason to refuse the file, already worded."""


def _is_npy(fh):
    fh.seek(0)
    return fh.read(6) == b"\x93NUMPY"


def _entries(zf, size):
    infos = zf.infolist()
    if len(infos) > _MAX_ENTRIES:
        raise _Refused(f"not a fastbp model file ({len(infos)} entries)")
    arrays = {}
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise _Refused(f"not a fastbp model file (entry {info.filename[:80]!r} is not an .npy)")
        key = info.filename[:-4]
        if key in arrays:
            raise _Refused(f"corrupted or truncated model file: entry {key[:80]!r} twice")
        if info.flag_bits & 0x1:
            raise _Refused(f"corrupted or truncated model file: entry {key[:80]!r} is marked "
                           f"encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _Refused(f"corrupted or truncated model file: entry {key[:80]!r} uses "
                           f"compression method {info.compress_type}")
        if info.header_offset + info.compress_size > size or (
                info.file_size != info.compress_size if info.compress_type == zipfile.ZIP_STORED
                else info.file_size > _DEFLATE_RATIO * info.compress_size + 1024):
            raise _Refused(f"corrupted or truncated model file: entry {key[:80]!r} declares "
                           f"{info.file_size} bytes, more than the file can hold")
        arrays[key] = None
    # deflate may expand 1032 times: a 100 MB file of zeros would ask for 100 GB. fastbp writes
    # stored (uncompressed) entries; a compressed file may hold 64 times its size (+ 64 MiB)
    declared = sum(info.file_size for info in infos)
    if declared > _MAX_EXPANSION * size + _EXPANSION_SLACK:
        raise _Refused(f"not a fastbp model file: its entries declare {declared} bytes, more "
                       f"than {_MAX_EXPANSION} times the file's {size} (+ {_EXPANSION_SLACK})")
    # each entry's bytes (local header, name, data) in a part of the file of its own: entries
    # whose data ran through the others' would each allocate up to the file's size
    end = 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset < end:
            raise _Refused(f"corrupted or truncated model file: entry "
                           f"{info.filename[:-4][:80]!r} overlaps another entry's bytes")
        try:
            name = len(info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437"))
        except UnicodeEncodeError:
            name = 0
        end = info.header_offset + 30 + name + info.compress_size
    for info in infos:
        arrays[info.filename[:-4]] = _array(zf, info)
    return arrays


def _array(zf, info):
    key = info.filename[:-4]
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=4096)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=4096)
        else:
            raise _Refused(f"corrupted or truncated model file: entry {key[:80]!r} has .npy "
                           f"version {version}")
        if dtype.hasobject:
            raise _Refused(f"entry {key[:80]!r} holds Python objects, which would need "
                           f"allow_pickle=True: fastbp never unpickles (allow_pickle=False)")
        if dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in "biufU":
            raise _Refused(f"entry {key[:80]!r} has dtype {dtype}, not a number or a string")
        if any(n < 0 for n in shape):
            raise _Refused(f"corrupted or truncated model file: entry {key[:80]!r} has shape {shape}")
        nbytes = math.prod(shape) * dtype.itemsize
        header = f.tell()
        if header + nbytes != info.file_size:
            raise _Refused(f"corrupted or truncated model file: entry {key[:80]!r} declares "
                           f"shape {shape} of {dtype} ({nbytes} bytes) in {info.file_size - header}")
        out = np.empty(math.prod(shape), dtype=dtype)     # at most what the file holds
        view, done = memoryview(out.view(np.uint8)) if nbytes else memoryview(b""), 0
        while done < nbytes:
            got = f.readinto(view[done:])
            if not got:
                break
            done += got
        if done != nbytes or f.read(1):     # reading to the end checks the CRC
            raise _Refused(f"corrupted or truncated model file: entry {key[:80]!r} is truncated")
    return out.reshape(shape[::-1]).T if fortran else out.reshape(shape)


def _scalar(arrays, key, kind, path):
    if key not in arrays:
        raise ValueError(f"{path}: not a fastbp model file (no {key!r} entry)")
    value = arrays[key]
    if value.shape != () or value.dtype.kind not in kind:
        raise ValueError(f"{path}: entry {key!r} is malformed (dtype {value.dtype}, shape {value.shape})")
    return value.item()


def _refuse_constant(name):
    raise ValueError(f"{name} is not a number fastbp writes")


def _json(arrays, key, path, what):
    """The JSON object in the string scalar ``key``, bounded in size and depth."""
    text = _scalar(arrays, key, "U", path)
    try:
        if len(text) > _MAX_JSON:
            raise ValueError(f"{len(text)} characters, more than {_MAX_JSON}")
        value = json.loads(text, parse_constant=_refuse_constant)
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
        _check_depth(value, _MAX_DEPTH)
    except RecursionError:
        raise ValueError(f"{path}: {what} is unreadable: nested too deeply") from None
    except ValueError as e:
        raise ValueError(f"{path}: {what} is unreadable: {e}") from e
    return value


def _check_depth(value, depth):
    if isinstance(value, (dict, list)):
        if depth == 0:
            raise ValueError("nested too deeply")
        for v in value.values() if isinstance(value, dict) else value:
            _check_depth(v, depth - 1)


def _config_keys(cls):
    """The constructor's keyword arguments a file may give, with their defaults."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return {p.name: p.default for p in params if p.name != "seed"
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _size(config, key, path, kind, low=1):
    v = config.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= _MAX_SIZE:
        raise ValueError(f"{path}: the saved configuration does not build a {kind}: {key}: "
                         f"expected an integer in [{low}, {_MAX_SIZE}], got {v!r:.80}")
    return v


def _check_config(cls, kind, config, path):
    """The configuration's keys and value types, before anything is built."""
    keys = _config_keys(cls)
    unknown = [k for k in config if k not in keys]
    if unknown:
        raise ValueError(f"{path}: the saved configuration does not build a {kind}: unknown "
                         f"argument(s) {unknown[:5]!r:.200}")
    for k, v in config.items():
        if isinstance(keys[k], bool) and not isinstance(v, bool):   # flags: true or false only
            raise ValueError(f"{path}: the saved configuration does not build a {kind}: {k}: "
                             f"expected true or false, got {v!r:.80}")
        items = v if isinstance(v, list) else [v]
        if len(items) > 4096 or not all(x is None or isinstance(x, (bool, int, float, str))
                                        and (not isinstance(x, str) or len(x) <= 64)
                                        for x in items):
            raise ValueError(f"{path}: the saved configuration does not build a {kind}: {k}: "
                             f"expected a number, a name or a list of them, got {v!r:.80}")


def _expected_shapes(kind, config, path, n_params):
    """{state-dict name: shape} the configuration builds, computed without building
    it (and only once its size is that of the file's parameter list)."""
    if kind == "MLP":
        sizes = config.get("sizes")
        if not isinstance(sizes, list) or not 2 <= len(sizes) <= 1 + n_params // 2 + _SLACK:
            raise ValueError(f"{path}: the saved configuration does not build a MLP: sizes: "
                             f"expected a list of 2 to {1 + n_params // 2 + _SLACK} widths (the file has "
                             f"{n_params} parameter arrays), got {sizes!r:.80}")
        sizes = [_size({"sizes": s}, "sizes", path, kind) for s in sizes]
        shapes = {}
        for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            shapes[f"{2 * l}.weight"], shapes[f"{2 * l}.bias"] = (n_out, n_in), (n_out,)
        return shapes
    I, H, O = (_size(config, k, path, kind) for k in ("input_size", "hidden_size", "output_size"))
    L = _size(dict(config, num_layers=config.get("num_layers", 1)), "num_layers", path, kind)
    D = 2 if config.get("bidirectional", False) is True else 1
    # the recurrent models' layer arrays come from their cell description
    cls = _model_classes()[kind]
    spec, flag = cls._spec, cls._optional_flag
    optional = spec.optional_kinds if flag and config.get(flag, False) is True else ()
    per = 4 + len(optional)
    if L * D * per + 2 > n_params + _SLACK:
        raise ValueError(f"{path}: parameters do not match the saved {kind}: its configuration "
                         f"(num_layers={L}, bidirectional={D == 2}) has {L * D * per + 2} "
                         f"parameter arrays, the file {n_params}")
    G = spec.gates * H
    shapes = {}
    for l in range(L):
        for d in range(D):
            sfx = f"_l{l}" + ("_reverse" if d else "")
            shapes["weight_ih" + sfx] = (G, I if l == 0 else D * H)
            shapes["weight_hh" + sfx] = (G, H)
            shapes["bias_ih" + sfx] = shapes["bias_hh" + sfx] = (G,)
            for opt in optional:
                shapes[opt + sfx] = (H,)
    shapes["readout.weight"], shapes["readout.bias"] = (O, D * H), (O,)
    return shapes


def _model_from(arrays, path, expected=None):
    """Check the model entries of a read file whole, then build and fill the model."""
    version = _scalar(arrays, _FORMAT_KEY, "iu", path)
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: saved in format version {version}, newer than this fastbp "
                         f"reads ({FORMAT_VERSION}); upgrade fastbp")
    if version < 1:
        raise ValueError(f"{path}: invalid format version {version}")
    kind = _scalar(arrays, "model", "U", path)
    if kind not in _CLASSES:
        raise ValueError(f"{path}: unknown model class {kind[:80]!r} (expected one of "
                         f"{', '.join(_KINDS)})")
    cls = _CLASSES[kind]
    if expected is not None and cls is not expected:
        raise ValueError(f"{path}: holds a {kind}, not a {expected.__name__}")
    config = _json(arrays, "config", path, "the model configuration")
    _check_config(cls, kind, config, path)
    params = {key[len(_PARAM_PREFIX):]: value for key, value in arrays.items()
              if key.startswith(_PARAM_PREFIX)}
    shapes = _expected_shapes(kind, config, path, len(params))
    missing = [k for k in shapes if k not in params]
    unexpected = [k for k in params if k not in shapes]
    if missing or unexpected:
        raise ValueError(f"{path}: parameters do not match the saved {kind}: "
                         + "; ".join(part for part in (
                             f"missing {missing[:10]}" if missing else "",
                             f"unexpected {unexpected[:10]}" if unexpected else "") if part))
    dtype = config.get("dtype", _config_keys(cls).get("dtype"))
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        dtype = None
    for pname, shape in shapes.items():
        p = params[pname]
        if p.shape != shape:
            raise ValueError(f"{path}: parameters do not match the saved {kind}: {pname!r} has "
                             f"shape {p.shape}, the configuration gives {shape}")
        if dtype is not None and p.dtype != dtype:
            raise ValueError(f"{path}: parameter {pname!r} has dtype {p.dtype}, expected {dtype}")
    try:    # every size now matches the arrays the file holds: building allocates no more
        model = cls(**config)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: the saved configuration does not build a {kind}: {e}") from e
    try:
        model.load_state_dict(params)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: parameters do not match the saved {kind}: {e}") from e
    return model


def load(path: Union[str, os.PathLike], expected: Optional[type] = None) -> Any:
    """Read a model written by ``model.save(path)`` (or a checkpoint's model).

    Parameters
    ----------
    path : str or os.PathLike
    expected : class or None
        When given (``MLP.load`` passes its class), a file holding another kind
        of model is refused.

    Raises FileNotFoundError for a missing file and ValueError, naming the file
    and the problem, for anything else wrong with it.
    """
    path = _fspath(path)
    return _model_from(_read(path), path, expected)


Checkpoint = namedtuple("Checkpoint", "model optimizer epoch seed rng history settings")
Checkpoint.__doc__ = """What :func:`load_checkpoint` returns: the model, the optimizer (its
state restored), the epochs completed, the seed, a numpy Generator in the saved
state (or None), fit's history so far (a dict of lists) and the saved settings."""


def load_checkpoint(path: Union[str, os.PathLike], expected: Optional[type] = None
                    ) -> "Checkpoint":
    """Read a checkpoint written by :func:`save_checkpoint` (or ``fit(..., checkpoint=path)``).

    Returns a :class:`Checkpoint`. Checked whole, as :func:`load`, the
    optimizer's arrays against the model's parameters included; a model file
    without the training state, like any bad file, raises ValueError naming the file.
    """
    path = _fspath(path)
    arrays = _read(path)
    model = _model_from(arrays, path, expected)
    if "optimizer" not in arrays or "training" not in arrays:
        raise ValueError(f"{path}: holds a model but no training state (not a checkpoint: "
                         f"written by save, not save_checkpoint)")
    head = _json(arrays, "optimizer", path, "the optimizer state")
    params = [p for _, p in model.named_parameters()]
    try:
        if set(head) != {"class", "hyper", "t", "epoch", "slots", "params"}:
            raise ValueError(f"expected the keys class, hyper, t, epoch, slots, params, got "
                             f"{sorted(head)!r:.200}")
        if head["class"] not in OPTIMIZER_CLASSES:
            raise ValueError(f"unknown optimizer class {head['class']!r:.80}")
        n, slots = head["params"], head["slots"]
        if n not in (0, len(params)) or not isinstance(slots, int) or not 0 <= slots <= 4:
            raise ValueError(f"state for {n!r:.20} parameters of {slots!r:.20} arrays each, the "
                             f"model has {len(params)} parameters")
        names = {f"{_OPT_PREFIX}{i}/{j}" for i in range(n) for j in range(slots)}
        present = {k for k in arrays if k.startswith(_OPT_PREFIX)}
        if present != names:
            raise ValueError(f"optimizer arrays {sorted(present ^ names)[:5]} missing or unexpected")
        state = None
        if n:
            state = []
            for i, p in enumerate(params):
                row = [arrays[f"{_OPT_PREFIX}{i}/{j}"] for j in range(slots)]
                for j, a in enumerate(row):
                    if a.shape != p.shape or a.dtype != p.dtype:
                        raise ValueError(f"optimizer array {i}/{j} has shape {a.shape} and dtype "
                                         f"{a.dtype}, its parameter {p.shape} and {p.dtype}")
                state.append(row)
        hyper = head["hyper"]
        if not isinstance(hyper, dict):
            raise ValueError(f"hyper: expected an object, got {hyper!r:.80}")
        optimizer = OPTIMIZER_CLASSES[head["class"]](**hyper)
        optimizer.load_state_dict({"class": head["class"], "hyper": hyper, "t": head["t"],
                                   "epoch": head["epoch"], "state": state})
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: the optimizer state is unreadable: {e}") from e
    training = _json(arrays, "training", path, "the training state")
    try:
        if set(training) != {"epoch", "seed", "rng", "settings"}:
            raise ValueError(f"expected the keys epoch, seed, rng, settings, got "
                             f"{sorted(training)!r:.200}")
        epoch, seed = training["epoch"], training["seed"]
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < _MAX_COUNT:
            raise ValueError(f"epoch: expected an integer >= 0, got {epoch!r:.40}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                                 or not 0 <= seed < _SEED_LIMIT):
            raise ValueError(f"seed: expected an integer >= 0 or null, got {seed!r:.40}")
        rng = None if training["rng"] is None else _generator(training["rng"])
        settings = training["settings"]
        if settings is not None and not isinstance(settings, dict):
            raise ValueError(f"settings: expected an object or null, got {settings!r:.80}")
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: the training state is unreadable: {e}") from e
    history = {}
    for key, value in arrays.items():
        if key.startswith(_HISTORY_PREFIX):
            if value.ndim != 1 or value.dtype != np.float64:
                raise ValueError(f"{path}: entry {key!r} is malformed (dtype {value.dtype}, "
                                 f"shape {value.shape})")
            history[key[len(_HISTORY_PREFIX):]] = value.tolist()
    return Checkpoint(model, optimizer, epoch, seed, rng, history, settings)


_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def _generator(state):
    """A numpy Generator in the saved bit-generator state (ValueError if it is not one)."""
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in _BIT_GENERATORS:
        raise ValueError(f"rng: unknown bit generator {name!r:.40}")
    bit_generator = getattr(np.random, name)()
    try:
        bit_generator.state = state
    except Exception as e:      # numpy's own checks of the state, whatever they raise
        raise ValueError(f"rng: not a valid {name} state ({type(e).__name__}: {e})") from None
    return np.random.Generator(bit_generator)
