"""Training, persistence and PyTorch-named weights, shared by every model.

``Trainable`` gives a model ``fit`` (with checkpoints to resume from),
``save``, ``load``, ``state_dict`` and ``load_state_dict``. It needs only a
few hooks from the model:

    _named_params()                 -> [(state-dict name, live parameter array), ...]
                                       (in the order of the gradients below)
    _fit_data(X, y, xname, yname)   -> (X, y) validated once before training
    _fit_layout(X, y, xname, yname) -> (X, y) checked from shapes and one sample, unread
                                       (fit(comm=...): each rank validates its rows per batch)
    _n_samples(X)                   -> number of samples (rows; sequences for RNN/LSTM)
    _take(X, y, idx)                -> the batch of samples idx (an index array or a slice)
    _train_steps(Xb, yb, bptt)      -> yields (loss, [grad per param], rows), one per optimizer step
    _steps_per_batch(X, bptt)       -> how many steps _train_steps yields for a batch of X
    _batch_steps(X, batch, bptt)    -> exactly how many for the batch ``batch`` (fit(comm=...))
    _eval_batch(Xb, yb, bptt)       -> (loss·rows summed, rows, n_correct or None)
    _check_scored(X, bptt, name)    -> ValueError naming ``name`` when no step would be scored
                                       (a no-op by default)
    _is_classifier()                -> True when accuracy is meaningful
    _config()                       -> the constructor's keyword arguments (JSON-able);
                                       by default read from attributes of the same names

``MLPTrainable`` and ``SequenceTrainable`` implement them for ``fastbp.MLP``
and for ``fastbp.RNN``/``fastbp.LSTM`` (through their common base,
``fastbp._seqmodel.SequenceModel``).

State-dict names (PyTorch's, so weights move to and from ``torch.nn`` as plain
NumPy arrays with no reshuffling and no torch import here):

    MLP        "0.weight", "0.bias", "2.weight", "2.bias", ...  the Linear layers of
               ``torch.nn.Sequential(Linear, activation, Linear, activation, ..., Linear)``:
               layer l is module 2l, (out, in) weights.
    RNN, LSTM  "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"  as in
               ``torch.nn.RNN`` / ``torch.nn.LSTM`` (one layer, gates i, f, g, o), and
               "readout.weight", "readout.bias" for the ``torch.nn.Linear(hidden, output)``
               applied to every step's h_t. LSTM peepholes, which torch has no
               counterpart for, are "peephole_i_l0", "peephole_f_l0", "peephole_o_l0".
               Stacked and bidirectional layers: "weight_ih_l{k}[_reverse]", ... exactly
               as torch; peepholes "peephole_{i,f,o}_l{k}[_reverse]".
"""
import inspect
import math
import numbers
import os
import re
import signal
import sys
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np

from . import functional
from . import io as _io
from ._data import SeqData, in_memory, unread
from ._linalg import sum_of_squares
from ._sequence import lengths_array, reset_array
from .tbptt import Stream, parse_bptt
from ._validate import as_array, as_numpy, float_array, label_array, positive_int
from .distributed import DataParallel
from .optim import OPTIMIZER_CLASSES, clip_grad_norm, get_optimizer, sigint_held


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
    the first, the checkpoint's included."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.interrupted = False
        self.step_loss = []

    def __repr__(self):
        return f"History({dict.__repr__(self)}, interrupted={self.interrupted})"


class Trainable:
    """Mixin: fit, save/load and PyTorch-named state dicts on top of the hooks above."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _io.register_model(cls)        # fastbp.load builds the models by their class name

    # -- fit -----------------------------------------------------------------
    def fit(self, X, y, epochs=10, batch_size=32, optimizer=None, validation_data=None,
            shuffle=True, seed=None, progress=True, clip_norm=None, comm=None, checkpoint=None):
        """Train with mini-batches; returns a :class:`History`.

        Parameters
        ----------
        X, y : arrays
            Training inputs and targets, as for ``loss_and_grad``.
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
            :func:`shuffle_order` (n, seed, e) draws, so the same seed, model
            and data give the same run, however it is cut into fit calls. None
            draws a seed (saved in the checkpoint).
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
        return self._fit(X, y, epochs, batch_size, optimizer, validation_data, shuffle, seed,
                         progress, clip_norm, bptt=None, comm=comm, checkpoint=checkpoint)

    def _fit(self, X, y, epochs, batch_size, optimizer, validation_data, shuffle, seed,
             progress, clip_norm, bptt, comm=None, checkpoint=None):
        with _training(self):
            return self._fit_locked(X, y, epochs, batch_size, optimizer, validation_data, shuffle,
                                    seed, progress, clip_norm, bptt, comm, checkpoint)

    def _fit_locked(self, X, y, epochs, batch_size, optimizer, validation_data, shuffle, seed,
                    progress, clip_norm, bptt, comm, checkpoint):
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
        dp = _data_parallel(self, comm)
        # on many ranks, only the shapes now: each rank validates its rows batch by batch
        prepare = self._fit_data if dp is None else self._fit_layout
        X, y = prepare(X, y, "X", "y")
        self._check_scored(X, bptt, "lengths")
        if validation_data is not None:
            try:
                Xv, yv = validation_data
            except (TypeError, ValueError) as e:
                raise TypeError("validation_data: expected a pair (X_val, y_val)") from e
            Xv, yv = prepare(Xv, yv, "validation_data[0]", "validation_data[1]")
            self._check_scored(Xv, None, "validation_data[2] (lengths_val)")
        n = self._n_samples(X)
        settings = dict(samples=n, batch_size=batch_size, shuffle=bool(shuffle),
                        bptt=list(bptt) if isinstance(bptt, tuple) else bptt,
                        clip_norm=None if clip_norm is None else float(clip_norm))
        seed_given = seed
        if dp is not None:
            seed = dp._start_fit(dict(
                settings, epochs=epochs, optimizer=(repr(opt), opt.t, opt.epoch),
                checkpoint=checkpoint is not None,
                validation=None if validation_data is None else self._n_samples(Xv)), seed)
        elif seed is None:      # drawn, so that a checkpoint can resume the same shuffles
            seed = int(np.random.SeedSequence().entropy)
        history = History(epoch=[], loss=[], time=[])
        if validation_data is not None:
            history["val_loss"] = []
            if self._is_classifier():
                history["val_accuracy"] = []
            history["val_time"] = []
        if checkpoint is not None:
            seed = self._resume(checkpoint, opt, seed_given, seed, settings, history, dp)
        params = [p for _, p in self._named_params()]
        first = opt.epoch + 1
        last = epochs if checkpoint is not None else opt.epoch + epochs
        steps_per_epoch = -(-n // batch_size) * self._steps_per_batch(X, bptt)
        bar = _Progress(progress and (dp is None or dp.rank == dp.root), last)
        with _deferred_sigint() as interrupt:
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
                            steps = self._train_steps(*self._take(X, y, batch), bptt)
                        else:   # this rank's part; the global loss, gradients and rows
                            steps = dp._train_steps(X, y, batch, bptt, interrupt)
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
                    for key in _VALIDATION_KEYS:    # NaN until scored
                        if key in history:
                            history[key].append(math.nan)
                    history["epoch"].append(epoch)
                    opt.epoch = epoch
                    if validation_data is not None:
                        started = time.perf_counter()
                        val_loss, val_acc = self._evaluate(
                            Xv, yv, batch_size, bptt, dp, ("validation_data[0]", "validation_data[1]"))
                        history["val_loss"][-1] = val_loss
                        if "val_accuracy" in history:
                            history["val_accuracy"][-1] = val_acc
                        history["val_time"][-1] = time.perf_counter() - started
                    if checkpoint is not None:
                        self._save_checkpoint(checkpoint, opt, seed, settings, history, dp)
                    bar.end_epoch({k: history[k][-1] for k in ("loss", "val_loss", "val_accuracy")
                                   if k in history})
            except KeyboardInterrupt:
                if dp is not None and not dp.stop_requested:
                    raise       # not at a step every rank agreed on: the job must end
                history.interrupted = True
                bar.interrupted()
            finally:
                _even(history)
                bar.close()
        if dp is not None:
            dp._end_fit()
        return history

    # -- checkpoints ------------------------------------------------------------
    def _resume(self, path, opt, seed_given, seed, settings, history, dp):
        """Restore the training state from the checkpoint at ``path`` when it
        exists (checked against this run first); returns the run's seed."""
        if dp is None:
            found = self._restore(path, opt, seed_given, seed, settings)
        else:   # rank root reads; everyone receives the parameters and the optimizer state
            found = dp._on_root(lambda: self._restore(path, opt, seed_given, seed, settings),
                                f"resume from {path}")
            dp.broadcast_parameters()
            dp._broadcast_optimizer(opt)
        if found is None:
            return seed
        saved_seed, saved = found
        seed = seed if saved_seed is None else saved_seed
        step_loss = saved.pop("step_loss", [])
        for key in history:
            history[key] = list(saved.get(key, []))
        history["epoch"] = [int(e) for e in history["epoch"]]
        history.step_loss = list(step_loss)
        _even(history)
        return seed

    def _restore(self, path, opt, seed_given, seed, settings):
        """None when there is no checkpoint at ``path``; else load it into the
        model and ``opt`` (after checking it all) and return (seed, history).
        First, what saving after the first epoch would raise: a model no file can hold
        (TypeError, ValueError), a path that cannot be written (OSError)."""
        _io._model_arrays(self)     # a model a file cannot hold (rank root's under comm)
        _io.check_writable(path, "checkpoint")
        if not os.path.exists(path):
            return None
        ck = _io.load_checkpoint(path, expected=type(self))
        mismatch = []
        if ck.model._config() != self._config():
            mismatch.append(f"the model: {ck.model!r} in the file, {self!r} here")
        saved_opt = ck.optimizer.state_dict()
        if saved_opt["class"] != type(opt).__name__ or ck.optimizer._hyper() != opt._hyper():
            mismatch.append(f"the optimizer: {ck.optimizer!r} in the file, {opt!r} here")
        if seed_given is not None and ck.seed != seed_given:
            mismatch.append(f"seed: {ck.seed} in the file, {seed_given} here")
        for key, value in settings.items():
            theirs = (ck.settings or {}).get(key)
            if theirs != value:
                mismatch.append(f"{key}: {theirs!r} in the file, {value!r} here")
        if mismatch:
            raise ValueError(f"checkpoint: {path} is the state of another run; it differs in "
                             + "; ".join(mismatch))
        _check_fit_history(ck, path)        # before anything is restored
        with sigint_held():                 # the model and its optimizer both, Ctrl-C included
            self.load_state_dict(ck.model.state_dict())
            opt.load_state_dict(saved_opt)
        return ck.seed, dict(ck.history)

    def _save_checkpoint(self, path, opt, seed, settings, history, dp):
        saved = dict(history, step_loss=history.step_loss)

        def write():
            _io.save_checkpoint(path, self, opt, seed=seed, history=saved, settings=settings)
        if dp is None:
            write()
        else:
            dp._on_root(write, f"write the checkpoint {path}")

    def _check_scored(self, X, bptt, name):
        """ValueError naming ``name`` when the data has no step to score (sequence
        models: every length 0); nothing to check for the MLP."""

    def _evaluate(self, X, y, batch_size, bptt, dp=None, names=("X", "y")):
        """(mean loss, accuracy or None) over validated data, in batches, no update."""
        if dp is not None:
            return dp._evaluate(X, y, batch_size, bptt, names)
        n = self._n_samples(X)
        loss_sum, rows_sum, correct = 0.0, 0, 0
        for start in range(0, n, batch_size):
            Xb, yb = self._take(X, y, slice(start, start + batch_size))
            batch_loss, rows, batch_correct = self._eval_batch(Xb, yb, bptt)
            loss_sum += batch_loss
            rows_sum += rows
            if batch_correct is not None:
                correct += batch_correct
        return float(loss_sum / rows_sum), (correct / rows_sum if self._is_classifier() else None)

    def evaluate(self, X, y, batch_size=256, comm=None):
        """(loss, accuracy) on data, accuracy None for regressors; no parameter changes.
        With ``comm`` (as in :meth:`fit`) each rank scores its block of the samples."""
        dp = _data_parallel(self, comm)
        X, y = (self._fit_data if dp is None else self._fit_layout)(X, y, "X", "y")
        self._check_scored(X, None, "lengths")
        return self._evaluate(X, y, positive_int(batch_size, "batch_size"), None, dp)

    # -- state dicts ----------------------------------------------------------
    def state_dict(self):
        """Parameters as an ordered dict of PyTorch-named NumPy arrays (copies)."""
        return OrderedDict((name, p.copy()) for name, p in self._named_params())

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
        named = self._named_params()
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

    # -- persistence ----------------------------------------------------------
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

    def _config(self):
        """The constructor's arguments, read from attributes of the same names;
        not ``seed``, which only draws initial weights that a load overwrites."""
        config = {}
        params = list(inspect.signature(type(self).__init__).parameters.values())[1:]
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name == "seed":
                continue
            if not hasattr(self, p.name):
                raise TypeError(f"{type(self).__name__}: no attribute {p.name!r} to save its "
                                f"constructor argument; the model must define _config()")
            config[p.name] = _jsonable(getattr(self, p.name), p.name)
        return config

    def _is_classifier(self):
        return getattr(self, "loss", None) == "cross_entropy"


class MLPTrainable(Trainable):
    """The hooks for ``fastbp.MLP`` (samples are rows; parameters a list of (W, b))."""

    def _config(self):
        return dict(sizes=list(self.sizes), activation=list(self.activations[:-1]),
                    output=self.activations[-1], loss=self.loss, l2=self.l2,
                    dtype=self.dtype.name, mse_form=self.mse_form)

    def _named_params(self):
        named = []
        for layer, (W, b) in enumerate(self.params):
            named += [(f"{2 * layer}.weight", W), (f"{2 * layer}.bias", b)]
        return named

    def _fit_data(self, X, y, xname, yname):
        """Everything checked before the first step (values too: a bad label or a NaN
        target in the last batch is refused before any parameter changes)."""
        W0 = self.params[0][0]
        X = float_array(X, xname, dtype=W0.dtype, ndim=2, shape=(None, W0.shape[1]))
        y = as_array(y, yname)
        if y.ndim == 0 or y.shape[0] != X.shape[0]:
            raise ValueError(f"{yname}: expected {X.shape[0]} targets (one per row of {xname}), "
                             f"got shape {y.shape}")
        if X.shape[0] == 0:
            raise ValueError(f"{xname}: expected at least one sample, got shape {X.shape}")
        n_out = self.sizes[-1]
        if self._is_classifier() and y.ndim == 1:
            y = label_array(y, yname, n_out, shape=(X.shape[0],))
        else:
            y = float_array(y, yname, dtype=W0.dtype, ndim=2, shape=(X.shape[0], n_out))
        return X, y

    def _fit_layout(self, X, y, xname, yname):
        """_fit_data for in-memory arrays; for others (memory-mapped, array-likes)
        its checks from the shapes and the first sample only, X and y neither read
        nor converted: each rank validates its own rows, batch by batch."""
        X, y = unread(X), unread(y)
        if in_memory(X, y) or X.ndim != 2 or X.shape[0] == 0:
            return self._fit_data(X, y, xname, yname)     # (a bad shape raises unread)
        if y.ndim == 0 or y.shape[0] != X.shape[0]:
            raise ValueError(f"{yname}: expected {X.shape[0]} targets (one per row of {xname}), "
                             f"got shape {y.shape}")
        self._fit_data(X[:1], y[:1], xname, yname)
        return X, y

    def _n_samples(self, X):
        return X.shape[0]

    def _take(self, X, y, idx):
        return X[idx], y[idx]

    def _steps_per_batch(self, X, bptt):
        return 1

    def _batch_steps(self, X, batch, bptt):
        return 1

    def _train_steps(self, X, y, bptt):
        loss, grads = self.loss_and_grad(X, y)
        yield loss, [g for pair in grads for g in pair], X.shape[0]

    def _eval_batch(self, X, y, bptt):
        loss, _ = self.loss_and_grad(X, y)
        correct = None
        if self._is_classifier():
            labels = y if y.ndim == 1 else np.argmax(y, axis=-1)
            correct = int(np.count_nonzero(self.predict(X) == labels))
        return loss * X.shape[0], X.shape[0], correct


class _SeqNames(dict):
    """The fixed names below, and the parameters of stacked and bidirectional
    layers, which the models already name as torch does ("weight_ih_l1",
    "bias_hh_l0_reverse", "peephole_i_l2", ...): those map to themselves."""

    _STACKED = re.compile(r"(weight_ih|weight_hh|bias_ih|bias_hh|peephole_[ifo])_l\d+(_reverse)?")

    def __missing__(self, name):
        if self._STACKED.fullmatch(name):
            return name
        raise KeyError(name)


# state-dict names of SequenceModel's parameters: PyTorch's for the recurrent layers
_SEQ_NAMES = _SeqNames({"weight_ih": "weight_ih_l0", "weight_hh": "weight_hh_l0",
                        "bias_ih": "bias_ih_l0", "bias_hh": "bias_hh_l0",
                        "peephole_i": "peephole_i_l0", "peephole_f": "peephole_f_l0",
                        "peephole_o": "peephole_o_l0",
                        "weight_out": "readout.weight", "bias_out": "readout.bias"})


class SequenceTrainable(Trainable):
    """The hooks for the sequence models (``fastbp._seqmodel.SequenceModel``).

    Samples are sequences: X is (T, N, I) and batches take columns of axis 1.
    Long sequences are trained by truncated BPTT (``bptt=k``): each batch is cut
    into chunks of k steps, one optimizer step per chunk, the recurrent state
    carried from one chunk into the next (its value, not its gradient: BPTT
    stops at the chunk boundary), as in classic RNN language models.
    """

    def fit(self, X, y, epochs=10, batch_size=32, optimizer=None, validation_data=None,
            shuffle=True, seed=None, progress=True, clip_norm=None, bptt=None, lengths=None,
            reset=None, burn_in=0, comm=None, checkpoint=None):
        """Train with mini-batches of sequences; returns a :class:`History`.

        X is (T, N, I) and y as for ``loss_and_grad`` ((T, N[, O]), or (N[, O])
        with ``many_to_one``); a batch is ``batch_size`` of the N sequences, each
        starting from a zero state.

        bptt : int, (k1, k2) or None
            Truncated backpropagation through time: train on chunks of ``bptt``
            time steps, one optimizer step per chunk, carrying the state (not its
            gradient) across chunks. None trains on whole sequences. With
            ``many_to_one`` the state is carried through the first T − bptt steps
            without gradient and the last ``bptt`` steps are trained.
            ``(k1, k2)``: Williams and Peng's BPTT(k1, k2) (:mod:`fastbp.tbptt`):
            every k1 steps, one optimizer step on those steps' losses
            backpropagated k2 >= k1 steps, without recomputing overlapping
            windows. Many-to-many, unidirectional (any num_layers), no lengths/reset.
        burn_in : int
            With ``bptt=(k1, k2)``: steps at the start of each batch that only
            warm the state up (no loss on them).
        lengths : int array (N,) or None
            Each sequence's number of valid steps (0 <= length <= T): the
            kernels skip the rest and the loss averages over valid steps only.
        reset : bool array (T, N) or None
            Steps where a sequence restarts from the zero state (episode or
            document boundaries inside one row).
        validation_data : (X_val, y_val[, lengths_val[, reset_val]]) or None

        The other arguments are those of :meth:`Trainable.fit` (``checkpoint``
        included); with ``comm`` the ranks split every batch by sequences.
        """
        bptt = parse_bptt(bptt)
        burn_in = _nonnegative_int(burn_in, "burn_in")
        if isinstance(bptt, tuple):
            if lengths is not None or reset is not None:
                raise ValueError("bptt=(k1, k2) streams full-length sequences: lengths and "
                                 "reset are not supported with it (use bptt=k)")
            Stream(self, 1, 1, batch=1)     # refuses unsupported models, by name (small buffers)
            bptt = bptt + (burn_in,)
        elif burn_in:
            raise ValueError("burn_in: needs bptt=(k1, k2)")
        X = SeqData(X, lengths, reset)
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or not 2 <= len(validation_data) <= 4:
                raise TypeError("validation_data: expected (X_val, y_val[, lengths_val"
                                "[, reset_val]])")
            Xv, yv, *extra = validation_data
            extra += [None] * (2 - len(extra))
            validation_data = (SeqData(Xv, extra[0], extra[1]), yv)
        return self._fit(X, y, epochs, batch_size, optimizer, validation_data, shuffle, seed,
                         progress, clip_norm, bptt, comm, checkpoint)

    def evaluate(self, X, y, batch_size=256, bptt=None, lengths=None, reset=None, comm=None):
        """(loss, accuracy) on data, accuracy None for regressors; ``bptt`` chunks
        long sequences (carrying the state) to bound memory; same result.
        lengths (N,) and reset (T, N) as for :meth:`fit`. With ``comm`` (as in
        :meth:`fit`) each rank scores its block of the sequences."""
        dp = _data_parallel(self, comm)
        X, y = (self._fit_data if dp is None else self._fit_layout)(SeqData(X, lengths, reset), y,
                                                                      "X", "y")
        self._check_scored(X, None, "lengths")
        bptt = None if bptt is None else positive_int(bptt, "bptt")   # memory only: no (k1, k2)
        return self._evaluate(X, y, positive_int(batch_size, "batch_size"), bptt, dp)

    def _named_params(self):
        return [(_SEQ_NAMES[name], p) for name, p in self._params.items()]

    def _fit_data(self, X, y, xname, yname):
        data = X if isinstance(X, SeqData) else SeqData(X, None, None)
        try:
            X = self._check_X(data.X)
            T, N = X.shape[0], X.shape[1]
            lengths = lengths_array(data.lengths, T, N)
            reset = reset_array(data.reset, T, N)
            mask = None if lengths is None else np.arange(T)[:, None] < lengths[None, :]
            y = self._check_Y(y, T, N, mask)
        except (ValueError, TypeError) as e:   # name the caller's argument
            msg = str(e)
            for mine, theirs in (("X:", xname + ":"), ("Y:", yname + ":")):
                if msg.startswith(mine):
                    msg = theirs + msg[len(mine):]
            raise type(e)(msg) from e
        return SeqData(X, lengths, reset), y

    def _fit_layout(self, X, y, xname, yname):
        """As MLPTrainable._fit_layout, the first sequence for the sample; lengths
        and reset (small) are validated whole."""
        data = X if isinstance(X, SeqData) else SeqData(X, None, None)
        X, y = unread(data.X), unread(y)
        if in_memory(X, y) or X.ndim != 3 or 0 in X.shape[:2]:
            return self._fit_data(data._replace(X=X), y, xname, yname)   # (a bad shape raises unread)
        T, N = X.shape[:2]
        lead = (N,) if self.many_to_one else (T, N)
        if y.shape[:len(lead)] != lead or y.ndim > len(lead) + 1:
            raise ValueError(f"{yname}: expected shape {lead} (labels) or "
                             f"{lead + (self.output_size,)}, got {y.shape}")
        data = SeqData(X, lengths_array(data.lengths, T, N), reset_array(data.reset, T, N))
        self._fit_data(*self._take(data, y, slice(0, 1)), xname, yname)
        return data, y

    def _n_samples(self, X):
        return X.X.shape[1]

    def _check_scored(self, X, bptt, name):
        T = X.X.shape[0]
        if isinstance(bptt, tuple) and bptt[2] >= T:
            raise ValueError(f"burn_in: expected fewer steps than the sequences' T = {T} (the "
                             f"burn-in leaves none to train on), got {bptt[2]}")
        if X.lengths is not None and not self.many_to_one and not X.lengths.any():
            raise ValueError(f"{name}: every length is 0, there is no step to score")

    def _take(self, X, y, idx):
        data = SeqData(X.X[:, idx], None if X.lengths is None else X.lengths[idx],
                       None if X.reset is None else X.reset[:, idx])
        return data, (y[idx] if self.many_to_one else y[:, idx])

    def _chunks(self, T, bptt):
        """[(t0, t1)] covering 0..T in chunks of bptt steps (one chunk without bptt;
        chunks of k1 for bptt=(k1, k2, burn_in))."""
        k = T if bptt is None else bptt[0] if isinstance(bptt, tuple) else bptt
        if self.many_to_one:
            # forward-only chunks, then the last k steps trained
            last = max(T - k, 0)
            return [(t0, min(t0 + k, last)) for t0 in range(0, last, k)] + [(last, T)]
        return [(t0, min(t0 + k, T)) for t0 in range(0, T, k)]

    def _steps_per_batch(self, X, bptt):
        if isinstance(bptt, tuple):
            return -(-max(X.X.shape[0] - bptt[2], 0) // bptt[0])
        return 1 if self.many_to_one else len(self._chunks(X.X.shape[0], bptt))

    def _batch_steps(self, X, batch, bptt):
        """The steps _train_steps yields for the batch ``batch`` of X, from its
        lengths alone (it stops at the first chunk where every sequence has
        ended): fit(comm=...) makes exactly one Allreduce per step."""
        if X.lengths is None or self.many_to_one or isinstance(bptt, tuple):
            return self._steps_per_batch(X, bptt)
        longest = int(X.lengths[batch].max(initial=0))
        return sum(1 for t0, _ in self._chunks(X.X.shape[0], bptt) if t0 < longest)

    def _zero_states(self):
        return (None,) * len(self._state_names)

    def _chunk(self, data, y, t0, t1):
        """Chunk [t0, t1) of a batch: X, targets, lengths within it, resets, and
        the number of scored rows."""
        B = data.X.shape[1]
        lengths = None if data.lengths is None else np.clip(data.lengths - t0, 0, t1 - t0)
        reset = None if data.reset is None else data.reset[t0:t1]
        yc = y if self.many_to_one else y[t0:t1]
        if self.many_to_one:
            rows = B
        else:
            rows = (t1 - t0) * B if lengths is None else int(lengths.sum())
        return data.X[t0:t1], yc, lengths, reset, rows

    def _train_steps(self, X, y, bptt):
        if isinstance(bptt, tuple):
            yield from self._stream_steps(X.X, y, *bptt)
            return
        T = X.X.shape[0]
        chunks = self._chunks(T, bptt)
        states = self._zero_states()
        for i, (t0, t1) in enumerate(chunks):
            Xc, yc, lengths, reset, rows = self._chunk(X, y, t0, t1)
            if self.many_to_one and i < len(chunks) - 1:
                _, states = self._outputs(Xc, states, lengths, reset)   # state only, no gradient
            elif rows == 0:
                break       # every sequence of the batch has ended
            else:
                loss, grads, states = self._loss_and_grad(Xc, yc, states, lengths, reset)
                yield loss, list(grads.values()), rows
            states = tuple(np.array(s) for s in states)   # detached: a value, not a view

    def _stream_steps(self, X, y, k1, k2, burn_in):
        """BPTT(k1, k2) over a batch of sequences: the first burn_in steps
        forward only, then one optimizer step per k1 steps."""
        T, B = X.shape[0], X.shape[1]
        # a chunk never holds more than the batch's T steps, nor a window reaches further
        # back: buffers for min(k1, T) and min(k2, T) steps give the same gradients
        stream = Stream(self, min(k1, T), min(k2, T), batch=B)
        for t0 in range(0, min(burn_in, T), k1):
            stream.advance(X[t0:min(t0 + k1, burn_in, T)])
        for t0 in range(min(burn_in, T), T, k1):
            t1 = min(t0 + k1, T)
            loss, grads = stream.step(X[t0:t1], y[t0:t1])
            yield loss, list(grads.values()), (t1 - t0) * B

    def _eval_batch(self, X, y, bptt):
        T = X.X.shape[0]
        chunks = self._chunks(T, bptt)
        states = self._zero_states()
        loss_sum, rows, correct = 0.0, 0, 0
        for i, (t0, t1) in enumerate(chunks):
            Xc, yc, lengths, reset, n = self._chunk(X, y, t0, t1)
            if n == 0:
                break
            out, states = self._outputs(Xc, states, lengths, reset)   # forward only
            states = tuple(np.array(s) for s in states)
            if not self.many_to_one or i == len(chunks) - 1:
                if lengths is not None and not self.many_to_one:     # the valid steps only
                    valid = np.arange(t1 - t0)[:, None] < lengths[None, :]
                    out, yc = out[valid][None], yc[valid][None]
                loss_sum += self._objective(out, yc) * n
                rows += n
                if self._is_classifier():
                    labels = yc if yc.ndim == out.ndim - 1 else np.argmax(yc, axis=-1)
                    correct += int(np.count_nonzero(np.argmax(out, axis=-1) == labels))
        return loss_sum, rows, (correct if self._is_classifier() else None)

    def _objective(self, out, Y):
        """The loss ``_loss_and_grad`` reports, from readout outputs (…, O) and
        validated targets: the mean data loss over the rows plus the L2 penalty
        on the weight matrices (the same functions and the same rule as
        SequenceModel._loss_and_grad; a test holds the two equal)."""
        O = self.output_size
        flat = out.reshape(-1, O)
        if self.loss == "cross_entropy":
            target = Y.reshape((flat.shape[0],) + ((O,) if Y.ndim == out.ndim else ()))
            loss, _ = functional.softmax_cross_entropy(flat, target)
        else:
            loss, _ = functional.squared_error(flat, Y.reshape(-1, O), self.mse_form)
        if self.l2:
            loss += sum(0.5 * self.l2 * sum_of_squares(W)
                        for name, W in self._params.items() if name.startswith("weight"))
        return float(loss)


_VALIDATION_KEYS = ("val_loss", "val_accuracy", "val_time")


def shuffle_order(n, seed, epoch):
    """The order in which ``fit`` visits n samples in epoch ``epoch`` (1, 2, ...)
    of a run seeded ``seed``: a permutation drawn from (seed, epoch) alone, so a
    resumed run draws what the uninterrupted one drew. Custom loops may use it
    too (or save their generator with :func:`fastbp.io.save_checkpoint`)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(epoch,))).permutation(n)


def _even(history):
    """Every list of a History as long as its "epoch" list (a Ctrl-C between
    the appends of an epoch's entries); missing validation entries are NaN."""
    n = len(history["epoch"])
    for key, values in history.items():
        del values[n:]
        values.extend([math.nan] * (n - len(values)))


def _check_fit_history(ck, path):
    """A checkpoint of fit holds one history entry per epoch, numbered up to the
    optimizer's epoch, which is the checkpoint's: else ValueError naming it."""
    epochs, problem = ck.history.get("epoch"), None
    if ck.epoch != ck.optimizer.epoch:
        problem = f"it holds epoch {ck.epoch} but an optimizer at epoch {ck.optimizer.epoch}"
    elif epochs is None:
        if any(k != "step_loss" for k in ck.history):   # lists that could not be aligned
            problem = "its history has no 'epoch' list (not written by fit)"
    elif len(epochs) > ck.epoch or epochs != list(range(ck.epoch - len(epochs) + 1, ck.epoch + 1)):
        problem = (f"its history numbers {len(epochs)} epochs {epochs[:3]}... where the epochs "
                   f"up to {ck.epoch} were expected")
    else:
        uneven = [k for k, v in ck.history.items() if k != "step_loss" and len(v) != len(epochs)]
        if uneven:
            problem = f"its history lists {uneven[:5]} do not have one entry per epoch"
    if problem is not None:
        raise ValueError(f"checkpoint: {path} is not the state of a fit run: {problem}")


def _nonnegative_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")
    return int(value)


def _data_parallel(model, comm):
    """None without comm, else the DataParallel that fit uses (mpi4py is imported
    only then, by fastbp.distributed)."""
    if comm is None:
        return None
    return DataParallel.of(model, comm)


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


_models_in_fit = set()          # id() of every model inside fit, in any thread
_models_in_fit_lock = threading.Lock()


@contextmanager
def _training(model):
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


class _Interrupt:
    """Ctrl-C as fit sees it: ``is_set()`` once pressed; inside ``step()`` (the
    optimizer writing the parameters) even a second Ctrl-C only sets it."""

    def __init__(self):
        self.requested = False
        self.in_step = False

    def is_set(self):
        return self.requested

    @contextmanager
    def step(self):
        self.in_step = True
        try:
            yield
        finally:
            self.in_step = False


@contextmanager
def _deferred_sigint():
    """Turn the first Ctrl-C into a flag that fit checks between steps, so no
    step is cut in half; a second Ctrl-C raises KeyboardInterrupt at once, or
    as soon as an optimizer step in progress is complete. Only in the main
    thread and over Python's default handler (a program that set its own
    SIGINT handler keeps it)."""
    flag = _Interrupt()
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield flag
        return

    def handler(signum, frame):
        if flag.requested and not flag.in_step:
            raise KeyboardInterrupt
        flag.requested = True

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


class _Progress:
    """Per-epoch progress bar with the running loss: tqdm if importable, else a
    plain line on stderr rewritten with a carriage return (at most 10 times a second)."""

    def __init__(self, enabled, epochs):
        self.enabled, self.epochs = enabled, epochs
        self.bar = None
        self._tqdm = None
        if enabled:
            try:
                from tqdm.auto import tqdm
                self._tqdm = tqdm
            except ImportError:
                pass

    def start_epoch(self, epoch, total):
        if not self.enabled:
            return
        self.epoch, self.total, self.done, self.last_draw, self.width = epoch, total, 0, 0.0, 0
        self.desc = f"epoch {epoch}/{self.epochs}"
        if self._tqdm is not None:
            self.bar = self._tqdm(total=total, desc=self.desc, unit="step", file=sys.stderr,
                                  leave=True, dynamic_ncols=True)

    def update(self, running_loss):
        if not self.enabled:
            return
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{running_loss:.4f}", refresh=False)
            self.bar.update(1)
            return
        now = time.perf_counter()
        if now - self.last_draw >= 0.1 or self.done == self.total:
            self.last_draw = now
            width = 20
            filled = width * self.done // self.total
            self._line(f"{self.desc} [{'#' * filled}{'.' * (width - filled)}] "
                       f"{self.done}/{self.total} loss {running_loss:.4f}")

    def end_epoch(self, metrics):
        if not self.enabled:
            return
        text = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if v is not None)
        if self.bar is not None:
            self.bar.set_postfix_str(text)
            self.bar.close()
            self.bar = None
        else:
            self._line(f"{self.desc}: {text}", end="\n")

    def _line(self, text, end=""):
        """Rewrite the current stderr line, blanking what a longer previous text left."""
        sys.stderr.write("\r" + text.ljust(self.width) + end)
        sys.stderr.flush()
        self.width = 0 if end else len(text)

    def interrupted(self):
        if self.enabled:
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            sys.stderr.write("\ninterrupted: returning the history of the completed epochs\n")

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
