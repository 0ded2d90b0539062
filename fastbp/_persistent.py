"""State dicts, configuration and files for every model: the Persistent mixin.

``Persistent`` gives a model ``state_dict``, ``load_state_dict``, ``save``,
``load`` and ``config`` on top of one method the model defines,
``named_parameters()`` (``[(state-dict name, parameter array), ...]``), and
registers the class with :mod:`fastbp.io` so that ``fastbp.load`` builds
files by class name. The names are PyTorch's (:mod:`fastbp._torch_names`).
"""
import inspect
from collections import OrderedDict

import numpy as np

from . import io as _io
from ._validate import as_numpy, float_array
from .optim import sigint_held


class Persistent:
    """Mixin: PyTorch-named state dicts, the constructor's configuration, save/load."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _io.register_model(cls)        # fastbp.load builds the models by their class name

    def named_parameters(self):
        """``[(state-dict name, parameter array), ...]``: the model's own arrays, in
        a fixed order (the order of the gradients training computes)."""
        raise NotImplementedError(f"{type(self).__name__} must define named_parameters()")

    # -- state dicts ----------------------------------------------------------
    def state_dict(self):
        """Parameters as an ordered dict of PyTorch-named NumPy arrays (copies)."""
        return OrderedDict((name, p.copy()) for name, p in self.named_parameters())

    def load_state_dict(self, state_dict):
        """Set every parameter from a dict of PyTorch-named arrays.

        The names must be exactly those of :meth:`state_dict`; values may be any
        array-likes of the right shapes (NumPy arrays, CPU torch tensors) and are
        converted to the model's dtype. All are validated before any is written:
        a bad entry raises ValueError/TypeError and leaves the model unchanged;
        a Ctrl-C during the writes is delivered once they are all done.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict: expected a mapping of names to arrays, got "
                            f"{type(state_dict).__name__}")
        named = self.named_parameters()
        expected = [name for name, _ in named]
        missing = [k for k in expected if k not in state_dict]
        unexpected = [k for k in state_dict.keys() if k not in expected]
        if missing or unexpected:
            raise ValueError(f"state_dict does not match {type(self).__name__}: "
                             + "; ".join(part for part in (
                                 f"missing {missing}" if missing else "",
                                 f"unexpected {unexpected}" if unexpected else "") if part)
                             + f" (expected {expected})")
        checked = [float_array(as_numpy(state_dict[name]), name, dtype=p.dtype, shape=p.shape)
                   for name, p in named]
        with sigint_held():         # all or nothing, Ctrl-C included
            for (_, p), value in zip(named, checked):
                np.copyto(p, value)

    # -- files ----------------------------------------------------------------
    def save(self, path):
        """Write the model (its configuration and parameters) to an .npz file at ``path``.

        The file is written exactly at ``path`` (no suffix added), via a temporary
        file renamed into place, so an interrupted save never leaves a truncated
        file behind. Read it back with ``fastbp.load(path)``. Returns ``path``.
        A model with NaN or infinite parameters (diverged training), which load
        would refuse, is not written (ValueError naming the parameter).
        """
        return _io.save(self, path)

    @classmethod
    def load(cls, path):
        """Read a model saved by :meth:`save`; ValueError if it holds another kind of model."""
        return _io.load(path, expected=cls)

    # -- configuration ----------------------------------------------------------
    def config(self):
        """The constructor's keyword arguments (JSON types), read from attributes
        of the same names; not ``seed``, which only draws initial weights that a
        load overwrites. A model whose arguments are not all attributes defines
        its own."""
        config = {}
        params = list(inspect.signature(type(self).__init__).parameters.values())[1:]
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name == "seed":
                continue
            if not hasattr(self, p.name):
                raise TypeError(f"{type(self).__name__}: no attribute {p.name!r} to save its "
                                f"constructor argument; the model must define config()")
            config[p.name] = _jsonable(getattr(self, p.name), p.name)
        return config


def _jsonable(value, name):
    """value as plain JSON types (dtypes by name, tuples as lists), else TypeError."""
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return np.dtype(value).name
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, name) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, name) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{name}: cannot save a constructor argument of type {type(value).__name__}")
