"""What fit's callbacks see of a run (Run), and how fit calls them (Callbacks).

A callback is a :class:`fastbp.callbacks.Callback` or a plain function
``f(history)`` called at each epoch's end; see :mod:`fastbp.callbacks`.
"""
import logging
import math

from ..callbacks import Callback, LRSchedule

logger = logging.getLogger("fastbp.training")


class Run:
    """The state of one fit call, as its callbacks see it.

    Attributes
    ----------
    model : the model being trained (a :class:`~fastbp.training.Trainable`)
    optimizer : fastbp.optim.Optimizer
    history : fastbp.training.History
        The epochs so far (a run resumed from a checkpoint: from epoch 1).
    epoch : int
        The epoch starting (``on_train_begin``: the first this call trains;
        ``on_epoch_begin``) or ending (``on_epoch_end``), counted over the
        optimizer's life (1, 2, ...).
    last_epoch : int
        The last epoch this call trains unless stopped.
    base_lr : float
        The optimizer's own learning rate (``optimizer.lr`` between epochs).
    lr : float
        The learning rate of the current epoch: ``base_lr`` at each epoch's
        start, then set by the callbacks' ``on_epoch_begin`` in list order;
        fit applies it to the optimizer during the epoch's steps.
    checkpoint : str or None
        The checkpoint path of the run.
    """

    def __init__(self, model, optimizer, history, epoch, last_epoch, checkpoint):
        self.model, self.optimizer, self.history = model, optimizer, history
        self.epoch, self.last_epoch, self.checkpoint = epoch, last_epoch, checkpoint
        self.base_lr = self.lr = optimizer.lr

    def track(self, key):
        """Add the per-epoch history list ``key`` (NaN for the epochs already
        listed; a resumed run keeps the checkpoint's list) and return it; the
        callback appends one value at each epoch's end."""
        if key not in self.history:
            self.history[key] = [math.nan] * len(self.history["epoch"])
        return self.history[key]


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
