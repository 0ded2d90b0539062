"""The fit loop: epochs of shuffled mini-batches, one optimizer step per step a Feed yields.

:func:`fit` trains any :class:`~fastbp.training.Trainable` through the
:class:`~fastbp.training.Feed` the model made for the call; the models'
``fit`` methods delegate to it.
"""
from __future__ import annotations

import logging
import math
import numbers
import os
import time

from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from .. import io as _io
from ..distributed import DataParallel
from ..callbacks import Callback
from ..optim import OPTIMIZER_CLASSES, Optimizer, clip_grad_norm, get_optimizer
from .._validate import positive_int
from . import checkpoint as _checkpoint
from .history import VALIDATION_KEYS, History, even_out, new_history
from .interrupt import deferred_sigint
from .lock import training
from .order import shuffle_order
from .progress import Progress
from .protocol import Feed, Trainable
from .run import Callbacks, Run
from .scoring import score

logger = logging.getLogger("fastbp.training")


def fit(model: Trainable, feed: Feed, X: Any, y: Any, epochs: int = 10, batch_size: int = 32,
        optimizer: Union[Optimizer, str, None] = None, validation_data: Optional[tuple] = None,
        shuffle: bool = True, seed: Optional[int] = None, progress: bool = True,
        clip_norm: Optional[float] = None, comm: Any = None,
        checkpoint: Union[str, os.PathLike, None] = None,
        callbacks: Optional[Sequence[Union[Callback, Callable[[History], Any]]]] = None,
        validation_split: Optional[float] = None) -> History:
    """Train ``model`` with mini-batches; returns a :class:`~fastbp.training.History`.

    Parameters
    ----------
    model : fastbp.training.Trainable
        The model trained (its parameters are updated in place).
    feed : fastbp.training.Feed
        The model's data adapter for this call (``fastbp.MLP.fit`` and
        ``fastbp.RNN.fit`` make it): how X and y are checked, batched and
        turned into optimizer steps.
    X, y : arrays
        Training inputs and targets, as for the model's ``loss_and_grad``.
    epochs : int
        Passes over the data (with ``checkpoint``: the epoch to reach,
        counting those the checkpoint holds).
    batch_size : int
        Samples per optimizer step (the last batch of an epoch may be smaller).
    optimizer : fastbp.optim.Optimizer, 'sgd', 'adam' or None
        None is ``Adam()``. Pass the same instance again to continue training
        with its state (momentum, moments, and ``optimizer.epoch``, the
        epochs it has completed: ``fit(epochs=1)`` twice with one optimizer
        and one seed is ``fit(epochs=2)``, bit for bit).
    validation_data : (X_val, y_val) or None
        Scored after every epoch: loss and, for classifiers, accuracy.
    validation_split : float in (0, 1) or None
        Hold out this fraction of the samples of ``X`` and ``y`` as the
        validation data instead: the LAST ``round(n · validation_split)``
        samples (at least one, leaving at least one to train on), taken
        before any shuffling, as Keras does (shuffle or stratify the data
        beforehand if its order matters). Not with ``validation_data``.
    shuffle : bool
        Visit the samples in a new random order each epoch.
    seed : int >= 0 or None
        Seeds the shuffling: epoch e visits the samples in the order
        :func:`~fastbp.training.shuffle_order` (n, seed, e) draws, so the same
        seed, model and data give the same run, however it is cut into fit
        calls. None draws a seed (saved in the checkpoint).
    progress : bool
        A progress bar with the running loss on stderr (tqdm when installed,
        a plain self-overwriting line otherwise).
    clip_norm : float or None
        Rescale the gradients so their global L2 norm is at most this, before
        each step.
    comm : mpi4py communicator, fastbp.distributed.DataParallel or None
        Data-parallel training over MPI (``fastbp.distributed``): every rank
        calls fit with the same arguments, computes the gradients of its
        part of each global batch (reading only those rows, so X may be
        memory-mapped), and one Allreduce per step sums them; the result
        equals one process's to rounding. Only rank 0 shows progress.
    checkpoint : str, os.PathLike or None
        A file holding the whole training state (model, optimizer, epoch,
        seed, history; :func:`fastbp.io.save_checkpoint`), rewritten
        atomically after every epoch. When it exists, fit first resumes from
        it: the parameters, the optimizer's state and the history are
        restored and training continues with the next epoch, up to
        ``epochs``; the result equals that of a run never interrupted, bit
        for bit (with ``comm``, rank ``root`` reads and writes it). A
        checkpoint of another model configuration, optimizer, seed, batch
        size, shuffling, clipping, bptt or sample count is refused
        (ValueError naming what differs). A run stopped mid-epoch resumes at
        the start of that epoch. A path that could not be written (missing
        or read-only folder, a directory, a symlink loop) raises its OSError
        before training.
    callbacks : list or None
        Functions ``f(history)`` called at the end of every epoch (a true
        return value stops training), or :class:`fastbp.callbacks.Callback`
        objects (hooks at the start and end of the run and of each epoch:
        :class:`~fastbp.callbacks.EarlyStopping`, the learning-rate schedules
        :class:`~fastbp.callbacks.StepLR`, ``ExponentialLR``,
        ``CosineAnnealingLR``, ``ReduceLROnPlateau``), called in list order
        after the epoch's validation. With callbacks the history also lists
        the learning rate of each epoch (``"lr"``), and ``history.stopped_by``
        names the callback that stopped training (None otherwise). With
        ``checkpoint``, see :mod:`fastbp.callbacks` for what is resumed.
        With ``comm``, every rank runs them; training stops on every rank
        when a callback stops it on any.

    Exceptions raised during training propagate and leave the parameters as
    after the last completed step (a step is all or nothing). Ctrl-C
    (KeyboardInterrupt) is different: the current step is finished, training
    stops, and the history so far is returned with ``interrupted=True``; a
    second Ctrl-C stops at once, but never inside an optimizer step.

    Threads: one model is trained by one ``fit`` at a time; a second ``fit``
    of the same model from another thread raises RuntimeError. Separate
    models train in parallel (the kernels release the GIL).
    """
    with training(model):
        return _fit(model, feed, X, y, epochs, batch_size, optimizer, validation_data, shuffle,
                    seed, progress, clip_norm, comm, checkpoint, callbacks, validation_split)


def _split_fraction(validation_split, validation_data):
    """validation_split checked: None or a float in (0, 1), not with validation_data."""
    if validation_split is None:
        return None
    if isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real):
        raise TypeError(f"validation_split: expected a fraction in (0, 1) or None, got "
                        f"{type(validation_split).__name__}")
    if not 0 < validation_split < 1:
        raise ValueError(f"validation_split: expected a fraction in (0, 1) or None, got "
                         f"{validation_split!r}")
    if validation_data is not None:
        raise ValueError("validation_split: give validation_data or validation_split, not both")
    return float(validation_split)


def _fit(model, feed, X, y, epochs, batch_size, optimizer, validation_data, shuffle, seed,
         progress, clip_norm, comm, checkpoint, callbacks, validation_split):
    epochs = positive_int(epochs, "epochs")
    validation_split = _split_fraction(validation_split, validation_data)
    callbacks = Callbacks(callbacks)
    batch_size = positive_int(batch_size, "batch_size")
    if clip_norm is not None and (isinstance(clip_norm, bool) or not isinstance(
            clip_norm, numbers.Real) or not 0 < clip_norm < np.inf):
        raise ValueError(f"clip_norm: expected a positive number or None, got {clip_norm!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise TypeError(f"seed: expected an integer or None, got {seed!r}")
    if seed is not None and seed < 0:
        raise ValueError(f"seed: expected an integer >= 0 or None, got {seed!r}")
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint: expected a path (str or os.PathLike) or None, got "
                        f"{type(checkpoint).__name__}")
    checkpoint = None if checkpoint is None else os.fspath(checkpoint)
    if checkpoint is not None and seed is not None and seed >= _io._SEED_LIMIT:
        raise ValueError(f"seed: expected an integer in [0, 2**128) with a checkpoint (which "
                         f"holds the seed), got {_io._show(seed)}")
    opt = get_optimizer(optimizer)
    if checkpoint is not None and type(opt) not in OPTIMIZER_CLASSES.values():
        raise TypeError(f"optimizer: a checkpoint holds the state of fastbp.optim SGD or "
                        f"Adam, got {type(opt).__name__}")
    dp = None if comm is None else DataParallel.of(model, comm)
    # on many ranks, only the shapes now: each rank validates its rows batch by batch
    X, y = feed.prepare(X, y, "X", "y", lazy=dp is not None)
    if validation_split is not None:    # the last samples, before any shuffling
        total = feed.n_samples(X)
        if total < 2:
            raise ValueError(f"validation_split: X has {total} sample(s); holding some out "
                             f"needs at least 2")
        held = min(max(int(round(total * validation_split)), 1), total - 1)
        Xv, yv = feed.take(X, y, slice(total - held, total))
        X, y = feed.take(X, y, slice(0, total - held))
        feed.check_scored(Xv, "validation_split (lengths)", training=False)
        validation_data = (Xv, yv)
    feed.check_scored(X, "lengths", training=True)
    if validation_data is not None and validation_split is None:
        try:
            Xv, yv = validation_data
        except (TypeError, ValueError) as e:
            raise TypeError("validation_data: expected a pair (X_val, y_val)") from e
        Xv, yv = feed.prepare(Xv, yv, "validation_data[0]", "validation_data[1]",
                              lazy=dp is not None)
        feed.check_scored(Xv, "validation_data[2] (lengths_val)", training=False)
    n = feed.n_samples(X)
    settings = dict(samples=n, batch_size=batch_size, shuffle=bool(shuffle), **feed.settings,
                    clip_norm=None if clip_norm is None else float(clip_norm))
    # recorded only when used, so that checkpoints written without them still resume
    if validation_split is not None:
        settings["validation_split"] = validation_split
    if callbacks.settings() is not None:
        settings["callbacks"] = callbacks.settings()
    seed_given = seed
    if dp is not None:
        seed = dp._start_fit(dict(
            settings, epochs=epochs, optimizer=(repr(opt), opt.t, opt.epoch),
            checkpoint=checkpoint is not None,
            validation=None if validation_data is None else feed.n_samples(Xv)), seed)
    elif seed is None:      # drawn, so that a checkpoint can resume the same shuffles
        seed = int(np.random.SeedSequence().entropy)
    history = new_history(validation_data is not None, model.is_classifier())
    if callbacks:
        history["lr"] = []
    if checkpoint is not None:
        seed = _checkpoint.resume(model, checkpoint, opt, seed_given, seed, settings, history, dp)
    params = [p for _, p in model.named_parameters()]
    first = opt.epoch + 1
    last = epochs if checkpoint is not None else opt.epoch + epochs
    steps_per_epoch = -(-n // batch_size) * feed.steps_per_batch(X)
    bar = Progress(progress and (dp is None or dp.rank == dp.root), last)
    run = Run(model, opt, history, first, last, checkpoint)
    stopped = _agreed(callbacks.train_begin(run), dp) if callbacks else False
    with deferred_sigint() as interrupt:
        try:
            for epoch in ([] if stopped else range(first, last + 1)):
                run.epoch = epoch
                lr = callbacks.epoch_begin(run) if callbacks else opt.lr
                started = time.perf_counter()
                bar.start_epoch(epoch, steps_per_epoch)
                order = shuffle_order(n, seed, epoch) if shuffle else None
                loss_sum, rows_sum = 0.0, 0
                opt.lr = lr     # the epoch's rate during its steps only (a schedule's)
                try:
                    for start in range(0, n, batch_size):
                        # in order: a slice, so a batch of rows is a view, not a copy
                        batch = (slice(start, start + batch_size) if order is None
                                 else order[start:start + batch_size])
                        if dp is None:
                            steps = feed.steps(*feed.take(X, y, batch))
                        else:   # this rank's part; the global loss, gradients and rows
                            steps = dp._train_steps(feed, X, y, batch, interrupt)
                        for loss, grads, rows in steps:
                            if clip_norm is not None:
                                clip_grad_norm(grads, clip_norm)
                            with interrupt.step():   # a second Ctrl-C waits for it
                                opt.step(params, grads)
                            loss_sum += float(loss) * rows
                            rows_sum += rows
                            history.step_loss.append(float(loss))
                            bar.update(loss_sum / rows_sum)
                            if interrupt.is_set() if dp is None else dp.stop_requested:
                                raise KeyboardInterrupt
                finally:
                    opt.lr = run.base_lr
                # the epoch's entries, "epoch" last: a Ctrl-C between them is evened out
                history["loss"].append(loss_sum / rows_sum)
                history["time"].append(time.perf_counter() - started)
                for key in VALIDATION_KEYS:    # NaN until scored
                    if key in history:
                        history[key].append(math.nan)
                if callbacks:
                    history["lr"].append(lr)
                history["epoch"].append(epoch)
                opt.epoch = epoch
                if validation_data is not None:
                    started = time.perf_counter()
                    val_loss, val_acc = score(model, feed, Xv, yv, batch_size, dp,
                                              ("validation_data[0]", "validation_data[1]"))
                    history["val_loss"][-1] = val_loss
                    if "val_accuracy" in history:
                        history["val_accuracy"][-1] = val_acc
                    history["val_time"][-1] = time.perf_counter() - started
                bar.end_epoch({k: history[k][-1] for k in ("loss", "val_loss", "val_accuracy")
                               if k in history})
                if callbacks:
                    stopped = _agreed(callbacks.epoch_end(run), dp)
                    even_out(history)     # one entry per epoch in every list callbacks track
                if checkpoint is not None:
                    _checkpoint.save(model, checkpoint, opt, seed, settings, history, dp)
                if stopped:
                    break
        except KeyboardInterrupt:
            if dp is not None and not dp.stop_requested:
                raise       # not at a step every rank agreed on: the job must end
            history.interrupted = True
            bar.interrupted()
            logger.warning("fit: interrupted (Ctrl-C); returning the history of the %d "
                           "completed epoch(s)", len(history["epoch"]))
        finally:
            even_out(history)
            bar.close()
    if callbacks:
        callbacks.train_end(run)
    if dp is not None:
        dp._end_fit()
    return history


def _agreed(stop, dp):
    """A callback's stop request, made every rank's (one Allreduce) under ``comm``."""
    if dp is None:
        return bool(stop)
    return bool(dp.allreduce_sum([1.0 if stop else 0.0])[0] > 0)
