"""How fit calls its callbacks (Callbacks); what they see of the run is fastbp.callbacks.Run.

A callback is a :class:`fastbp.callbacks.Callback` or a plain function
``f(history)`` called at each epoch's end; see :mod:`fastbp.callbacks`.
"""
from __future__ import annotations

import logging
import math

from ..callbacks import Callback, LRSchedule, Run

logger = logging.getLogger("fastbp.training")


class _FunctionCallback(Callback):
    """A plain function f(history), called at each epoch's end."""

    def __init__(self, fn):
        self.fn = fn

    def on_epoch_end(self, run):
        return self.fn(run.history)

    def __repr__(self):
        return repr(self.fn)


class Callbacks:
    """fit's callbacks, checked and called in list order."""

    def __init__(self, callbacks):
        if callbacks is None:
            callbacks = []
        if isinstance(callbacks, (Callback, str, bytes)) or callable(callbacks) \
                or not hasattr(callbacks, "__iter__"):
            raise TypeError(f"callbacks: expected a list of callbacks (fastbp.callbacks."
                            f"Callback objects or functions of the history), got "
                            f"{type(callbacks).__name__}")
        self.items = []
        for i, cb in enumerate(callbacks):
            if isinstance(cb, Callback):
                self.items.append(cb)
            elif callable(cb):
                self.items.append(_FunctionCallback(cb))
            else:
                raise TypeError(f"callbacks[{i}]: expected a fastbp.callbacks.Callback or a "
                                f"function f(history), got {type(cb).__name__}")
        self.schedules = any(isinstance(cb, LRSchedule) for cb in self.items)

    def __bool__(self):
        return bool(self.items)

    def settings(self):
        """What a checkpoint records of the callbacks (their config()), or None."""
        configs = [c for c in (cb.config() for cb in self.items) if c is not None]
        return configs or None

    def train_begin(self, run):
        """True when a callback stops the run before its first epoch."""
        return self._stop(run, "on_train_begin")

    def epoch_begin(self, run):
        run.lr = run.base_lr
        for cb in self.items:
            cb.on_epoch_begin(run)
        if isinstance(run.lr, bool) or not isinstance(run.lr, (int, float)) \
                or not 0 <= run.lr < math.inf:
            raise ValueError(f"callbacks: the learning rate of epoch {run.epoch} is {run.lr!r}; "
                             f"expected a finite number >= 0")
        return float(run.lr)

    def epoch_end(self, run):
        """True when a callback stops the run after this epoch."""
        return self._stop(run, "on_epoch_end")

    def _stop(self, run, hook):
        stop = False
        for cb in self.items:
            if getattr(cb, hook)(run):
                if not stop:
                    run.history.stopped_by = repr(cb)
                    logger.info("fit: %r stopped training (%s, epoch %d)", cb, hook, run.epoch)
                stop = True
        return stop

    def train_end(self, run):
        for cb in self.items:
            cb.on_train_end(run)
