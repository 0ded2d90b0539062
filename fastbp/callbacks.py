"""Callbacks for fit: hooks at each epoch's start and end, early stopping, learning-rate schedules.

Pass them as ``model.fit(..., callbacks=[...])`` (every model: MLP, RNN,
LSTM, GRU; :func:`fastbp.training.fit` runs them). A callback is either

- a plain function ``f(history)``, called at the end of every epoch with the
  :class:`~fastbp.training.History` so far; a true return value stops
  training after that epoch; or
- a :class:`Callback`, whose hooks receive the :class:`~fastbp.training.Run`
  (the model, the optimizer, the history, the epoch, the learning rate of
  the epoch): ``on_train_begin``, ``on_epoch_begin``, ``on_epoch_end`` (a
  true return value stops training), ``on_train_end``.

Provided here: :class:`EarlyStopping` and the learning-rate schedules
:class:`StepLR`, :class:`ExponentialLR`, :class:`CosineAnnealingLR` (closed
forms of the epoch, PyTorch's rules) and :class:`ReduceLROnPlateau` (a
function of the monitored history). A schedule sets the learning rate of
each epoch from the optimizer's own ``lr`` (its base): fit applies it to the
optimizer during the epoch's steps only, so ``optimizer.lr`` keeps its
configured value between epochs and after fit, and ``history["lr"]`` records
the rate of every epoch. Schedules compose in list order (each one's output
is the next one's input).

Checkpoints (``fit(checkpoint=...)``): the schedules and EarlyStopping's
counters are functions of the epoch and of the history, which a checkpoint
holds, so a resumed run continues them exactly; their descriptions (``repr``)
are recorded and a resumed run with other schedules or another EarlyStopping
is refused by name. EarlyStopping's best weights are not in a checkpoint:
``EarlyStopping(restore_best=True)`` with ``checkpoint=`` is refused (pass
``restore_best=False``). What a user's own callback keeps is not saved; a
resumed run calls it from the resumed epoch on, with the whole history.

Messages (early stopping, learning-rate reductions) go to the ``logging``
module, logger ``fastbp.callbacks`` (level INFO), never to stdout or stderr
directly.
"""
from __future__ import annotations

import logging
import math
import numbers
from typing import Any, List, Mapping, Optional

import numpy as np

__all__ = ["Run", "Callback", "EarlyStopping", "LRSchedule", "StepLR", "ExponentialLR",
           "CosineAnnealingLR", "ReduceLROnPlateau", "SCHEDULES"]

logger = logging.getLogger(__name__)


# -- argument checks ----------------------------------------------------------------
def _number(value, name, low=None, high=None, low_open=False, high_open=False, integer=False):
    """A finite Python int/float in the bounds, else TypeError/ValueError naming ``name``."""
    kinds = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(f"{name}: expected {'an integer' if integer else 'a real number'}, "
                        f"got {type(value).__name__}")
    v = int(value) if integer else float(value)
    bad = (not math.isfinite(v) or (low is not None and (v < low or (low_open and v == low)))
           or (high is not None and (v > high or (high_open and v == high))))
    if bad:
        lo = "(" if low_open else "["
        hi = ")" if high_open or high is None else "]"
        raise ValueError(f"{name}: expected a number in {lo}{'-∞' if low is None else low}, "
                         f"{'∞' if high is None else high}{hi}, got {value!r}")
    return v


def _mode(mode, monitor):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode: expected 'auto', 'min' or 'max', got {mode!r}")
    if not isinstance(monitor, str) or not monitor:
        raise TypeError(f"monitor: expected the name of a history list (such as 'val_loss'), "
                        f"got {monitor!r}")
    if mode == "auto":
        return "max" if monitor.endswith(("accuracy", "score")) else "min"
    return mode


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

    def __init__(self, model: Any, optimizer: Any, history: dict, epoch: int, last_epoch: int,
                 checkpoint: Optional[str]):
        self.model, self.optimizer, self.history = model, optimizer, history
        self.epoch, self.last_epoch, self.checkpoint = epoch, last_epoch, checkpoint
        self.base_lr = self.lr = optimizer.lr

    def track(self, key: str) -> List[float]:
        """Add the per-epoch history list ``key`` (NaN for the epochs already
        listed; a resumed run keeps the checkpoint's list) and return it; the
        callback appends one value at each epoch's end."""
        if key not in self.history:
            self.history[key] = [math.nan] * len(self.history["epoch"])
        return self.history[key]



class Callback:
    """Base class of fit's callbacks; every hook does nothing unless overridden.

    Each hook receives the :class:`fastbp.training.Run` of the fit call:
    ``run.model``, ``run.optimizer``, ``run.history`` (the History so far,
    resumed epochs included), ``run.epoch`` (the epoch starting or ending,
    1-based, counted over the optimizer's life), ``run.last_epoch``,
    ``run.lr`` (the epoch's learning rate: set it in ``on_epoch_begin`` to
    change it), ``run.base_lr`` (the optimizer's own), ``run.checkpoint`` (the
    path or None) and ``run.track(key)`` (add a per-epoch history list).
    """

    def on_train_begin(self, run: Run) -> Optional[bool]:
        """Before the first epoch (after a checkpoint was resumed); a true
        return value stops training before any epoch."""

    def on_epoch_begin(self, run: Run) -> None:
        """Before the epoch's first step; may set ``run.lr``."""

    def on_epoch_end(self, run: Run) -> Optional[bool]:
        """After the epoch's steps and its validation; a true return value stops training."""

    def on_train_end(self, run: Run) -> None:
        """After the last epoch (also when Ctrl-C or a callback stopped training;
        not when an exception propagates)."""

    def config(self) -> Optional[str]:
        """What a checkpoint records of this callback and a resumed run must
        match: a string, or None when the callback has no part in the training
        state (the default). fastbp's callbacks return their ``repr``."""
        return None

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._args().items())
        return f"{type(self).__name__}({args})"

    def _args(self):
        return {}


def _improved(value, best, mode, min_delta):
    """value better than best by more than min_delta (NaN never is)."""
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def _monitored(run, monitor, who):
    """The monitored history list, or ValueError naming monitor and the lists there are."""
    if monitor not in run.history:
        hint = ("; pass validation_data or validation_split to fit"
                if monitor.startswith("val_") else "")
        raise ValueError(f"monitor: {who} monitors {monitor!r}, which is not in fit's history "
                         f"(it has {', '.join(sorted(run.history))}){hint}")
    return run.history[monitor]


class EarlyStopping(Callback):
    """Stop training when a monitored quantity stops improving; keep the best weights.

    Parameters
    ----------
    monitor : str
        The history list watched: ``"val_loss"`` (the default: needs
        validation data), ``"loss"``, ``"val_accuracy"`` or any list a callback
        tracks.
    patience : int >= 0
        Epochs without improvement after which training stops (0: stop at the
        first epoch that does not improve).
    min_delta : float >= 0
        An epoch improves when it beats the best value by more than this.
    mode : {"auto", "min", "max"}
        Whether lower or higher is better; "auto": higher for names ending in
        "accuracy" or "score", lower otherwise.
    restore_best : bool
        At the end of training (stopped, finished or interrupted by Ctrl-C),
        set the model's parameters to those of the best epoch (a copy is taken
        at every improvement). Not with ``fit(checkpoint=...)``, whose file
        does not hold them (refused with ValueError).

    Attributes
    ----------
    best : float or None
        The best value seen; ``best_epoch`` its epoch.
    stopped_epoch : int or None
        The epoch after which this callback stopped training.
    wait : int
        Epochs since the best one.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "auto", restore_best: bool = True):
        self.monitor = monitor
        self.mode = _mode(mode, monitor)
        self._mode_arg = mode
        self.patience = _number(patience, "patience", low=0, integer=True)
        self.min_delta = _number(min_delta, "min_delta", low=0)
        if not isinstance(restore_best, (bool, np.bool_)):
            raise TypeError(f"restore_best: expected True or False, got {restore_best!r}")
        self.restore_best = bool(restore_best)
        self._reset()

    def _args(self):
        return dict(monitor=self.monitor, patience=self.patience, min_delta=self.min_delta,
                    mode=self._mode_arg, restore_best=self.restore_best)

    def config(self):
        return repr(self)

    def _reset(self):
        self.best, self.best_epoch, self.stopped_epoch, self.wait = None, None, None, 0
        self._best_state = None

    def _see(self, epoch, value):
        if _improved(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.wait = float(value), epoch, 0
            return True
        self.wait += 1
        return False

    def on_train_begin(self, run):
        if self.restore_best and run.checkpoint is not None:
            raise ValueError("callbacks: EarlyStopping(restore_best=True) keeps the best weights "
                             "in memory, which a checkpoint does not hold (a resumed run could "
                             "not restore them); pass restore_best=False with checkpoint=, or "
                             "save the best model from a callback of your own")
        values = _monitored(run, self.monitor, repr(self))
        self._reset()
        # a resumed run (checkpoint): the counters replayed from the history it holds; if
        # its last epoch was one this callback stopped at, it stays stopped
        stopped = False
        for epoch, value in zip(run.history["epoch"], values):
            stopped = not self._see(epoch, value) and self.wait >= self.patience
        if stopped:
            self.stopped_epoch = run.history["epoch"][-1]
            logger.info("early stopping: the resumed run had stopped after epoch %d (best %s "
                        "%s at epoch %s)", self.stopped_epoch, self.monitor, self._best_text(),
                        self.best_epoch)
        return stopped

    def _best_text(self):
        return "none" if self.best is None else f"{self.best:.6g}"

    def on_epoch_end(self, run):
        if self._see(run.epoch, run.history[self.monitor][-1]):
            if self.restore_best:
                self._best_state = run.model.state_dict()
            return False
        if self.wait >= self.patience:
            self.stopped_epoch = run.epoch
            logger.info("early stopping after epoch %d: %s has not improved for %d epoch(s) "
                        "(best %s at epoch %s)", run.epoch, self.monitor, self.wait,
                        self._best_text(), self.best_epoch)
            return True
        return False

    def on_train_end(self, run):
        epochs = run.history["epoch"]
        if (self.restore_best and self._best_state is not None and epochs
                and self.best_epoch != epochs[-1]):
            run.model.load_state_dict(self._best_state)
            logger.info("early stopping: restored the parameters of epoch %d (best %s %.6g)",
                        self.best_epoch, self.monitor, self.best)
        self._best_state = None


class LRSchedule(Callback):
    """Base of the learning-rate schedules: sets ``run.lr`` at each epoch's
    start to :meth:`lr_at` (epoch, the rate before this schedule, history).
    Subclasses define ``lr_at``."""

    def on_epoch_begin(self, run):
        lr = self.lr_at(run.epoch, run.lr, run.history)
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not 0 <= lr < math.inf:
            raise ValueError(f"callbacks: {self!r} gave the learning rate {lr!r} for epoch "
                             f"{run.epoch}; expected a finite number >= 0")
        run.lr = float(lr)

    def lr_at(self, epoch: int, lr: float, history: Mapping[str, list]) -> float:
        """The learning rate of ``epoch`` (1, 2, ...) given the rate ``lr`` it
        starts from (the optimizer's, or the previous schedule's) and the
        history of the epochs before it."""
        # the base class has no rule of its own: StepLR, ExponentialLR, ... each define one
        raise NotImplementedError(f"{type(self).__name__}: a learning-rate schedule must "
                                  "define lr_at(epoch, lr, history)")

    def config(self):
        return repr(self)


class StepLR(LRSchedule):
    """``lr · gamma^⌊(epoch − 1) / step_size⌋``: decay by ``gamma`` every
    ``step_size`` epochs (torch.optim.lr_scheduler.StepLR; epochs count from 1).

    Parameters
    ----------
    step_size : int >= 1
    gamma : float in (0, 1]
    """

    def __init__(self, step_size: int, gamma: float = 0.1):
        self.step_size = _number(step_size, "step_size", low=1, integer=True)
        self.gamma = _number(gamma, "gamma", low=0, high=1, low_open=True)

    def _args(self):
        return dict(step_size=self.step_size, gamma=self.gamma)

    def lr_at(self, epoch, lr, history):
        return lr * self.gamma ** ((epoch - 1) // self.step_size)


class ExponentialLR(LRSchedule):
    """``lr · gamma^(epoch − 1)``: decay by ``gamma`` every epoch
    (torch.optim.lr_scheduler.ExponentialLR).

    Parameters
    ----------
    gamma : float in (0, 1]
    """

    def __init__(self, gamma: float):
        self.gamma = _number(gamma, "gamma", low=0, high=1, low_open=True)

    def _args(self):
        return dict(gamma=self.gamma)

    def lr_at(self, epoch, lr, history):
        return lr * self.gamma ** (epoch - 1)


class CosineAnnealingLR(LRSchedule):
    """``eta_min + (lr − eta_min)·(1 + cos(π·(epoch − 1)/T_max))/2``: from
    ``lr`` at epoch 1 down to ``eta_min`` at epoch ``T_max + 1``
    (torch.optim.lr_scheduler.CosineAnnealingLR's closed form, which rises
    again after that: pick T_max >= the epochs trained, or T_max = epochs − 1
    to end at eta_min).

    Parameters
    ----------
    T_max : int >= 1
        Half the period, in epochs.
    eta_min : float >= 0
    """

    def __init__(self, T_max: int, eta_min: float = 0.0):
        self.T_max = _number(T_max, "T_max", low=1, integer=True)
        self.eta_min = _number(eta_min, "eta_min", low=0)

    def _args(self):
        return dict(T_max=self.T_max, eta_min=self.eta_min)

    def lr_at(self, epoch, lr, history):
        return self.eta_min + (lr - self.eta_min) * (
            1 + math.cos(math.pi * (epoch - 1) / self.T_max)) / 2


class ReduceLROnPlateau(LRSchedule):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not
    improved for ``patience`` epochs (Keras's ReduceLROnPlateau: improvement
    by more than ``min_delta``, absolute), then wait ``cooldown`` epochs
    before counting again; never below ``min_lr``.

    The rate of epoch e is ``max(lr · factor^k, min_lr)``, k the reductions
    the history of epochs 1 … e − 1 calls for: a run resumed from a
    checkpoint (whose history goes back to epoch 1) replays them; a fit
    continuing with the same optimizer and this same object carries them on.

    Parameters
    ----------
    monitor : str
        A history list: "val_loss" (default), "loss", "val_accuracy", ...
    factor : float in (0, 1)
    patience : int >= 0
    min_delta : float >= 0
    cooldown : int >= 0
    min_lr : float >= 0
    mode : {"auto", "min", "max"}
        As for :class:`EarlyStopping`.

    Attributes
    ----------
    reductions : int
        k after the epochs seen so far.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0,
                 mode: str = "auto"):
        self.monitor = monitor
        self.mode = _mode(mode, monitor)
        self._mode_arg = mode
        self.factor = _number(factor, "factor", low=0, high=1, low_open=True, high_open=True)
        self.patience = _number(patience, "patience", low=0, integer=True)
        self.min_delta = _number(min_delta, "min_delta", low=0)
        self.cooldown = _number(cooldown, "cooldown", low=0, integer=True)
        self.min_lr = _number(min_lr, "min_lr", low=0)
        self._reset()

    def _args(self):
        return dict(monitor=self.monitor, factor=self.factor, patience=self.patience,
                    min_delta=self.min_delta, cooldown=self.cooldown, min_lr=self.min_lr,
                    mode=self._mode_arg)

    def _reset(self):
        self.reductions, self._best, self._wait, self._cooling = 0, None, 0, 0
        self._last = 0          # the last epoch seen

    def _see(self, epoch, value):
        self._last = epoch
        if self._cooling:
            self._cooling -= 1
            self._wait = 0
        if _improved(value, self._best, self.mode, self.min_delta):
            self._best, self._wait = float(value), 0
        elif not self._cooling:
            self._wait += 1
            if self._wait >= self.patience:
                self.reductions += 1
                self._cooling, self._wait = self.cooldown, 0
                logger.info("ReduceLROnPlateau: %s has not improved for %d epoch(s) after "
                            "epoch %d; learning rate x%g (reduction %d)", self.monitor,
                            self.patience, epoch, self.factor, self.reductions)

    def on_train_begin(self, run):
        _monitored(run, self.monitor, repr(self))
        epochs = run.history["epoch"]
        if epochs or run.epoch == 1:      # resumed (the history from epoch 1), or a new run
            self._reset()
            for epoch, value in zip(epochs, run.history[self.monitor]):
                self._see(epoch, value)
        elif self._last != run.epoch - 1:   # another object continuing an optimizer: start anew
            self._reset()
            self._last = run.epoch - 1

    def on_epoch_end(self, run):
        self._see(run.epoch, run.history[self.monitor][-1])

    def lr_at(self, epoch, lr, history):
        return max(lr * self.factor ** self.reductions, self.min_lr)


SCHEDULES = {"step": StepLR, "exponential": ExponentialLR, "cosine": CosineAnnealingLR,
             "plateau": ReduceLROnPlateau}
"""The schedules by short name (what fastbp.sklearn's ``lr_schedule`` strings name)."""
