"""The fit loop: epochs of shuffled mini-batches, one optimizer step per step a Feed yields.

:func:`fit` trains any :class:`~fastbp.training.Trainable` through the
:class:`~fastbp.training.Feed` the model made for the call; the models'
``fit`` methods delegate to it.
"""
import math
import numbers
import os
import time

import numpy as np

from .. import io as _io
from ..distributed import DataParallel
from ..optim import OPTIMIZER_CLASSES, clip_grad_norm, get_optimizer
from .._validate import positive_int
from . import checkpoint as _checkpoint
from .history import VALIDATION_KEYS, even_out, new_history
from .interrupt import deferred_sigint
from .lock import training
from .order import shuffle_order
from .progress import Progress
from .scoring import score


def fit(model, feed, X, y, epochs=10, batch_size=32, optimizer=None, validation_data=None,
        shuffle=True, seed=None, progress=True, clip_norm=None, comm=None, checkpoint=None):
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
                    seed, progress, clip_norm, comm, checkpoint)


def _fit(model, feed, X, y, epochs, batch_size, optimizer, validation_data, shuffle, seed,
         progress, clip_norm, comm, checkpoint):
    epochs = positive_int(epochs, "epochs")
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
    feed.check_scored(X, "lengths", training=True)
    if validation_data is not None:
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
    seed_given = seed
    if dp is not None:
        seed = dp._start_fit(dict(
            settings, epochs=epochs, optimizer=(repr(opt), opt.t, opt.epoch),
            checkpoint=checkpoint is not None,
            validation=None if validation_data is None else feed.n_samples(Xv)), seed)
    elif seed is None:      # drawn, so that a checkpoint can resume the same shuffles
        seed = int(np.random.SeedSequence().entropy)
    history = new_history(validation_data is not None, model.is_classifier())
    if checkpoint is not None:
        seed = _checkpoint.resume(model, checkpoint, opt, seed_given, seed, settings, history, dp)
    params = [p for _, p in model.named_parameters()]
    first = opt.epoch + 1
    last = epochs if checkpoint is not None else opt.epoch + epochs
    steps_per_epoch = -(-n // batch_size) * feed.steps_per_batch(X)
    bar = Progress(progress and (dp is None or dp.rank == dp.root), last)
    with deferred_sigint() as interrupt:
        try:
            for epoch in range(first, last + 1):
                started = time.perf_counter()
                bar.start_epoch(epoch, steps_per_epoch)
                order = shuffle_order(n, seed, epoch) if shuffle else None
                loss_sum, rows_sum = 0.0, 0
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
                # the epoch's entries, "epoch" last: a Ctrl-C between them is evened out
                history["loss"].append(loss_sum / rows_sum)
                history["time"].append(time.perf_counter() - started)
                for key in VALIDATION_KEYS:    # NaN until scored
                    if key in history:
                        history[key].append(math.nan)
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
                if checkpoint is not None:
                    _checkpoint.save(model, checkpoint, opt, seed, settings, history, dp)
                bar.end_epoch({k: history[k][-1] for k in ("loss", "val_loss", "val_accuracy")
                               if k in history})
        except KeyboardInterrupt:
            if dp is not None and not dp.stop_requested:
                raise       # not at a step every rank agreed on: the job must end
            history.interrupted = True
            bar.interrupted()
        finally:
            even_out(history)
            bar.close()
    if dp is not None:
        dp._end_fit()
    return history
