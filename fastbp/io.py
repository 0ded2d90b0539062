"""Saving and loading models: one .npz file, read without pickle.

File layout (NumPy's .npz: a zip of .npy arrays, all plain, no object arrays):

    "fastbp_format"   int scalar     the format version, FORMAT_VERSION (1)
    "model"           str scalar     the class: "MLP", "RNN" or "LSTM"
    "config"          str scalar     JSON of the constructor's keyword arguments
    "param/<name>"    arrays         the parameters under their state-dict names
                                     (see fastbp.training), in the model's dtype

``load`` opens it with ``allow_pickle=False``, checks everything (format and
version, class, config, the exact set of parameter names, every shape and
dtype, finiteness), builds a fresh model from the config and only then fills
it: a missing, truncated, corrupted, newer or mismatched file raises a
ValueError naming the file and the problem, never returns a half-loaded model.
"""
import json
import os
import tempfile
import zipfile
import zlib

import numpy as np

FORMAT_VERSION = 1
_FORMAT_KEY = "fastbp_format"
_PARAM_PREFIX = "param/"


def _model_classes():
    from .lstm import LSTM
    from .mlp import MLP
    from .rnn import RNN
    return {"MLP": MLP, "RNN": RNN, "LSTM": LSTM}


def save(model, path):
    """Write ``model`` to ``path`` (exactly; no suffix added). Returns ``path``.

    Writes a temporary file in the same folder and renames it over ``path``, so
    a failure part-way leaves any previous file at ``path`` intact.
    """
    name = type(model).__name__
    if name not in _model_classes():
        raise TypeError(f"model: expected a fastbp MLP, RNN or LSTM, got {name}")
    arrays = {_FORMAT_KEY: np.array(FORMAT_VERSION, dtype=np.int64),
              "model": np.array(name),
              "config": np.array(json.dumps(model._config(), sort_keys=True))}
    for pname, p in model._named_params():
        arrays[_PARAM_PREFIX + pname] = p
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastbp-", suffix=".npz.tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _read(path):
    """Every array of the .npz at ``path``, read eagerly; ValueError if it is not one."""
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise ValueError(f"{path}: not a fastbp model file (.npz): {e}") from e
    if not hasattr(data, "files"):
        raise ValueError(f"{path}: not a fastbp model file (a single .npy array, not an .npz)")
    try:
        return {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as e:
        raise ValueError(f"{path}: corrupted or truncated model file: {e}") from e
    finally:
        data.close()


def _scalar(arrays, key, kind, path):
    if key not in arrays:
        raise ValueError(f"{path}: not a fastbp model file (no {key!r} entry)")
    value = arrays[key]
    if value.shape != () or value.dtype.kind not in kind:
        raise ValueError(f"{path}: entry {key!r} is malformed (dtype {value.dtype}, shape {value.shape})")
    return value.item()


def load(path, expected=None):
    """Read a model written by ``model.save(path)``.

    Parameters
    ----------
    path : str or os.PathLike
    expected : class or None
        When given (``MLP.load`` passes its class), a file holding another kind
        of model is refused.

    Raises FileNotFoundError for a missing file and ValueError, naming the file
    and the problem, for anything else wrong with it.
    """
    path = os.fspath(path)
    arrays = _read(path)
    version = _scalar(arrays, _FORMAT_KEY, "iu", path)
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: saved in format version {version}, newer than this fastbp "
                         f"reads ({FORMAT_VERSION}); upgrade fastbp")
    if version < 1:
        raise ValueError(f"{path}: invalid format version {version}")
    classes = _model_classes()
    kind = _scalar(arrays, "model", "U", path)
    if kind not in classes:
        raise ValueError(f"{path}: unknown model class {kind!r} (expected one of {', '.join(classes)})")
    cls = classes[kind]
    if expected is not None and cls is not expected:
        raise ValueError(f"{path}: holds a {kind}, not a {expected.__name__}")
    try:
        config = json.loads(_scalar(arrays, "config", "U", path))
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        raise ValueError(f"{path}: the model configuration is unreadable: {e}") from e
    try:
        model = cls(**config)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: the saved configuration does not build a {kind}: {e}") from e
    params = {key[len(_PARAM_PREFIX):]: value for key, value in arrays.items()
              if key.startswith(_PARAM_PREFIX)}
    for pname, p in model._named_params():
        if pname in params and params[pname].dtype != p.dtype:
            raise ValueError(f"{path}: parameter {pname!r} has dtype {params[pname].dtype}, "
                             f"expected {p.dtype}")
    try:
        model.load_state_dict(params)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: parameters do not match the saved {kind}: {e}") from e
    return model
