"""The fit lock: one fit per model at a time, in any thread.

``fit`` holds the lock of its model while it trains; a second ``fit`` of the
same model raises RuntimeError, and :func:`is_training` lets a model refuse
what would silently break the run (``set_params`` replacing an array the
optimizer is updating).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

_models_in_fit = set()          # id() of every model inside fit, in any thread
_models_in_fit_lock = threading.Lock()


def is_training(model: object) -> bool:
    """True while a ``fit`` (in any thread) is training ``model``."""
    return id(model) in _models_in_fit


@contextmanager
def training(model):
    """Mark `model` as being trained; RuntimeError if another fit is training it."""
    with _models_in_fit_lock:
        if id(model) in _models_in_fit:
            raise RuntimeError(f"{type(model).__name__}.fit: this model is already being trained "
                               "(by fit in another thread); train a model from one thread at a "
                               "time, or train separate models")
        _models_in_fit.add(id(model))
    try:
        yield
    finally:
        with _models_in_fit_lock:
            _models_in_fit.discard(id(model))
