"""The record of a fit run: History, its per-epoch lists kept of one length.

``fit`` appends an epoch's entries with ``"epoch"`` last, so a Ctrl-C between
the appends leaves lists of different lengths; :func:`even_out` cuts and pads
them back to one entry per epoch.
"""
import math

# the lists fit fills only with validation data, NaN until the epoch is scored
VALIDATION_KEYS = ("val_loss", "val_accuracy", "val_time")


class History(dict):
    """What ``fit`` returns: per-epoch lists under ``"epoch"`` (1, 2, ...),
    ``"loss"`` (the training objective as minimised, L2 included, averaged over
    the epoch's samples), ``"time"`` (seconds training) and, with validation
    data, ``"val_loss"`` (the same objective), ``"val_accuracy"`` (classifiers)
    and ``"val_time"`` (seconds scoring). ``interrupted`` is True when Ctrl-C
    stopped training; the lists then hold the epochs whose training completed,
    all of the same length: an epoch whose validation Ctrl-C cut short has NaN
    validation entries. ``step_loss`` lists the loss of every optimizer step,
    for finer curves. A run resumed from a checkpoint lists every epoch from
    the first, the checkpoint's included.

    With callbacks, ``"lr"`` lists the learning rate of each epoch, callbacks
    may add lists of their own (one entry per epoch), and ``stopped_by`` is the
    ``repr`` of the callback that stopped training (None when none did)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.interrupted = False
        self.stopped_by = None
        self.step_loss = []

    def __repr__(self):
        return (f"History({dict.__repr__(self)}, interrupted={self.interrupted}"
                + (f", stopped_by={self.stopped_by!r}" if self.stopped_by else "") + ")")


def new_history(validation, classifier):
    """The empty History of a fit run: "epoch", "loss", "time", and the
    validation lists when there is validation data ("val_accuracy" for
    classifiers only)."""
    history = History(epoch=[], loss=[], time=[])
    if validation:
        history["val_loss"] = []
        if classifier:
            history["val_accuracy"] = []
        history["val_time"] = []
    return history


def even_out(history):
    """Every list of a History as long as its "epoch" list (a Ctrl-C between
    the appends of an epoch's entries); missing validation entries are NaN."""
    n = len(history["epoch"])
    for key, values in history.items():
        del values[n:]
        values.extend([math.nan] * (n - len(values)))
