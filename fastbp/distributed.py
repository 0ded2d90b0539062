"""Synchronous data-parallel training on MPI (through mpi4py), for every model.

The same script runs on every rank; ``fit`` does the rest::

    mpiexec -n 4 python train.py

    # train.py
    from mpi4py import MPI
    history = model.fit(X, y, epochs=10, batch_size=256, seed=0, comm=MPI.COMM_WORLD)

mpi4py and an MPI library are optional (``pip install "fastbp[mpi]"``): this
module imports mpi4py only when it is used, never when fastbp is imported.

How ``fit(..., comm=...)`` trains (N ranks, P parameters):

1. Every rank checks that all ranks called ``fit`` with the same settings
   (sample counts, batch size, epochs, seed, optimizer, model layout), then the
   parameters are broadcast from rank 0 (``root``), so every rank starts equal.
2. Every rank draws the same permutation (rank 0's seed) and so walks the same
   global batches; each rank computes the loss and gradients of its shard of
   every global batch only: the contiguous part ``[r·m/N, (r+1)·m/N)`` of the
   batch's m indices (sequences for the RNN and LSTM). Only that rank's rows
   are read and validated, so memory-mapped ``.npy`` inputs
   (``np.load(path, mmap_mode="r")``) stay on disk except for the rows used.
3. Each step ends with ONE ``Allreduce`` (``MPI.SUM``, in place) of a single
   preallocated contiguous buffer of the model's dtype holding

       [rows_r·g_r for every parameter (P values) | rows_r·loss_r | rows_r | failed | interrupted]

   so the global mean gradient is ``Σ_r rows_r·g_r / Σ_r rows_r``, exactly
   the mean over the whole global batch however unevenly it was cut, and the
   loss is the global mean too. No per-parameter messages, no pickled arrays.
4. Every rank applies the same clipping and optimizer update to the same
   numbers, so the parameters stay identical (checked once at the end of
   ``fit``). With the same seed, N ranks give the 1-rank result to rounding.

Failures. A rank whose step raises (bad data in its shard, an error in its
computation) still joins the step's Allreduce with ``failed = 1``; then every
rank raises at the same step: the failing rank its own exception, the others a
:class:`RankError` naming the rank and its error. Ctrl-C stops every rank after
the same step. For exceptions outside the steps, a ``DataParallel`` on more
than one rank installs a ``sys.excepthook`` that calls ``MPI_Abort`` on an
uncaught exception, so no rank waits forever for a peer that is gone (without
it, MPICH's ``MPI_Finalize`` on the failed rank waits for the others, which
wait in their next collective: the job hangs). A rank that dies is detected by
``mpiexec``, which ends the job. ``timeout=`` (seconds) adds a watchdog: a
step whose Allreduce does not complete in time (a peer hung) aborts the job.

Checkpoints. ``fit(..., comm=..., checkpoint=path)`` resumes exactly, as in one
process: rank ``root`` reads the file when it exists (only it needs to see the
path) and every rank receives the parameters and the optimizer state (one Bcast
each); after every epoch rank ``root`` rewrites it, the others waiting until it
is written (an error there is raised on every rank).

Lower level, for custom training loops (the same N-rank = 1-rank guarantee
when every rank walks the same global batches)::

    dp = DataParallel(model, MPI.COMM_WORLD)
    dp.broadcast_parameters()                   # rank 0's parameters everywhere
    opt = fastbp.optim.Adam()
    for idx in batches:                         # the same global index arrays on every rank
        local = dp.local_indices(idx)           # this rank's part of the batch
        loss, grads = model.loss_and_grad(X[local], y[local])
        loss, grads, rows = dp.allreduce_gradients(grads, rows=len(local), loss=loss)
        opt.step(dp.parameters(), grads)        # global mean gradients, same on every rank
    dp.save("model.npz")                        # rank 0 writes, every rank waits for it
    model = fastbp.distributed.load("model.npz", MPI.COMM_WORLD)   # every rank, from rank 0's file
"""
import numbers
import os
import sys
import time
import traceback
import warnings
import zlib
from collections.abc import Mapping

import numpy as np

from . import io as _io
from ._data import in_memory

__all__ = ["DataParallel", "RankError", "load", "save"]


class RankError(RuntimeError):
    """Raised on every rank whose peers failed at a collective step (the
    failing rank raises its own exception)."""


_MPI = []


def _mpi():
    """mpi4py's MPI module, imported on first use."""
    if not _MPI:
        try:
            from mpi4py import MPI
        except ImportError as e:
            raise ImportError("fastbp.distributed needs mpi4py and an MPI library: "
                              "pip install \"fastbp[mpi]\" (mpi4py and the mpich wheel)") from e
        _MPI.append(MPI)
    return _MPI[0]


def _world(comm):
    if comm is None:
        return _mpi().COMM_WORLD
    for method in ("Get_rank", "Get_size", "Allreduce", "Bcast", "allgather", "bcast"):
        if not callable(getattr(comm, method, None)):
            raise TypeError(f"comm: expected an mpi4py communicator (e.g. MPI.COMM_WORLD), "
                            f"got {type(comm).__name__} without {method}()")
    return comm


_hooked = []


def _install_excepthook(comm, rank, size):
    """On an uncaught exception: print it as usual, then MPI_Abort the job
    (installed once per process, with the first communicator of more than one rank)."""
    if _hooked:
        return
    _hooked.append(comm)
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        note = (f"fastbp.distributed: uncaught {exc_type.__name__} on rank {rank} of {size}; "
                f"calling MPI_Abort so that no rank waits for it forever\n")
        try:
            if previous is sys.__excepthook__:    # one write: mpiexec forwards it whole
                sys.stderr.write("".join(traceback.format_exception(exc_type, exc, tb)) + note)
            else:
                previous(exc_type, exc, tb)
                sys.stderr.write(note)
            sys.stderr.flush()
        finally:
            _abort(comm)

    sys.excepthook = hook


def _abort(comm):
    """MPI_Abort, a moment after the last output (mpiexec ends the job at once and
    drops what it had not forwarded yet); should MPI_Abort return (MPICH's does,
    leaving the killing to mpiexec), wait for it, then exit anyway."""
    try:
        time.sleep(1.0)
        comm.Abort(1)
        time.sleep(10)
    finally:
        os._exit(1)


def _describe(error):
    return None if error is None else f"{type(error).__name__}: {error}"


def _count(n, name):
    """A number of samples: an integer >= 0, else TypeError/ValueError naming ``name``."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name}: expected an integer >= 0, got {n!r}")
    if n < 0:
        raise ValueError(f"{name}: expected an integer >= 0, got {n!r}")
    return int(n)


class DataParallel:
    """Synchronous data parallelism for one model over an MPI communicator.

    Parameters
    ----------
    model : fastbp.MLP, fastbp.RNN or fastbp.LSTM
    comm : mpi4py communicator or None
        None is ``MPI.COMM_WORLD``. Every rank must build its DataParallel
        with a model of the same layout.
    root : int
        The rank whose parameters are broadcast and which writes checkpoints.
    timeout : float or None
        Seconds a rank waits in a step's Allreduce (or a broadcast) for its
        peers before it aborts the whole job with an error; None waits forever
        (a peer that crashes or raises is handled without it, see the module
        documentation; the timeout is for a peer that hangs).
    abort_on_exception : bool
        With more than one rank, install a ``sys.excepthook`` that calls
        ``MPI_Abort`` after printing an uncaught exception (what
        ``python -m mpi4py script.py`` does).

    Attributes
    ----------
    rank, size : this rank and the number of ranks.
    stats : dict with ``steps`` (gradient Allreduces made), ``allreduce_seconds``
        (wall-clock time inside them, waiting for slower ranks included),
        ``allreduce_cpu_seconds`` (this process's CPU time inside them: MPICH
        polls while it waits) and ``allreduce_bytes`` (buffer bytes per rank);
        :meth:`reset_stats` zeroes them.
    stop_requested : True once any rank was interrupted (Ctrl-C) by the last step.

    Pass a DataParallel as ``fit(..., comm=dp)`` to choose these options or to
    read ``stats`` afterwards.
    """

    def __init__(self, model, comm=None, *, root=0, timeout=None, abort_on_exception=True):
        if not callable(getattr(model, "named_parameters", None)):
            raise TypeError(f"model: expected a fastbp MLP, RNN or LSTM, got {type(model).__name__}")
        self.model = model
        self.comm = _world(comm)
        self.rank, self.size = int(self.comm.Get_rank()), int(self.comm.Get_size())
        if isinstance(root, bool) or not isinstance(root, numbers.Integral) or not 0 <= root < self.size:
            raise ValueError(f"root: expected a rank in [0, {self.size}), got {root!r}")
        self.root = int(root)
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, numbers.Real)
                                    or not 0 < timeout < np.inf):
            raise ValueError(f"timeout: expected a positive number of seconds or None, got {timeout!r}")
        self.timeout = None if timeout is None else float(timeout)
        named = model.named_parameters()
        self._names = [name for name, _ in named]
        self._shapes = [p.shape for _, p in named]
        self.dtype = named[0][1].dtype
        sizes = [int(np.prod(s)) for s in self._shapes]
        self._offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.n_parameters = P = int(self._offsets[-1])
        # [grads | loss·rows | rows | failed | interrupted]: one contiguous buffer, one Allreduce
        self._buffer = np.zeros(P + 4, dtype=self.dtype)
        self._grads = [self._buffer[o:o + n].reshape(s)
                       for o, n, s in zip(self._offsets[:-1], sizes, self._shapes)]
        self.stop_requested = False
        self.reset_stats()
        if self.size > 1 and abort_on_exception:
            _install_excepthook(self.comm, self.rank, self.size)

    @classmethod
    def of(cls, model, comm):
        """``comm`` itself when it is a DataParallel of ``model``, else a new one."""
        if isinstance(comm, DataParallel):
            if comm.model is not model:
                raise ValueError("comm: this DataParallel wraps another model")
            return comm
        return cls(model, comm)

    def reset_stats(self):
        self.stats = {"steps": 0, "allreduce_seconds": 0.0, "allreduce_cpu_seconds": 0.0,
                      "allreduce_bytes": 0}

    def __repr__(self):
        return (f"DataParallel({type(self.model).__name__}, rank {self.rank} of {self.size}, "
                f"{self.n_parameters} parameters, {self.dtype})")

    # -- parameters -----------------------------------------------------------
    def parameters(self):
        """The model's live parameter arrays, in state-dict order (the order of
        the gradients :meth:`allreduce_gradients` returns)."""
        return [p for _, p in self.model.named_parameters()]

    def broadcast_parameters(self):
        """Copy rank ``root``'s parameters into every rank's model (one Bcast of a flat buffer)."""
        flat = self._buffer[:self.n_parameters]
        params = self.parameters()
        if self.rank == self.root:
            for p, view in zip(params, self._grads):
                np.copyto(view, p)
        self._collective("Bcast", flat, "the parameter broadcast")
        if self.rank != self.root:
            for p, view in zip(params, self._grads):
                np.copyto(p, view)

    def in_sync(self):
        """True when every rank's parameters are bitwise equal (one small Allreduce)."""
        h = 0
        for p in self.parameters():
            h = zlib.crc32(np.ascontiguousarray(p), h)
        both = np.array([h, -h], dtype=np.int64)
        self._collective("Allreduce", both, "the parameter check", op="MAX")
        return int(both[0]) == h and int(-both[1]) == h

    # -- sharding ---------------------------------------------------------------
    def _bounds(self, m):
        return self.rank * m // self.size, (self.rank + 1) * m // self.size

    def shard(self, n):
        """This rank's contiguous block of ``range(n)`` as a slice: [r·n/N, (r+1)·n/N)."""
        lo, hi = self._bounds(_count(n, "n"))
        return slice(lo, hi)

    def local_indices(self, batch, n=None):
        """This rank's part of a global batch: for an index array, the slice
        ``batch[r·m/N : (r+1)·m/N]`` of its m indices; for a slice of
        ``range(n)``, the slice of the same part of the indices it selects (a
        view when indexing arrays; any step, negative too). ``n`` is needed
        unless the slice's start and stop are given and not negative, with a
        positive step (it then must not run past the end)."""
        if isinstance(batch, slice):
            for what in ("start", "stop", "step"):
                v = getattr(batch, what)
                if v is not None and (isinstance(v, (bool, np.bool_))
                                      or not isinstance(v, numbers.Integral)):
                    raise TypeError(f"batch: a slice's {what} must be an integer or None, "
                                    f"got {v!r:.80}")
            if batch.step == 0:
                raise ValueError(f"batch: a slice's step cannot be zero, got {batch}")
            if n is None:
                simple = (batch.step is None or batch.step > 0) and all(
                    v is not None and v >= 0 for v in (batch.start, batch.stop))
                if not simple:
                    raise ValueError(f"n: needed to resolve {batch} (a slice without a start "
                                     f"or stop, with negative bounds or a negative step)")
                n = batch.stop
            r = range(_count(n, "n"))[batch]
            # len(r) overflows past sys.maxsize: the count from the range's ends
            count = max(0, (r.stop - r.start + r.step - (1 if r.step > 0 else -1)) // r.step)
            lo, hi = self._bounds(count)
            part = r[lo:hi]
            if not part:
                return slice(0, 0)
            stop = part.start + (hi - lo) * part.step
            return slice(part.start, stop if stop >= 0 else None, part.step)
        idx = np.asarray(batch)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise TypeError(f"batch: expected a 1-D integer index array or a slice, got "
                            f"dtype {idx.dtype} shape {idx.shape}")
        if not idx.size:
            idx = idx.astype(np.intp)       # np.asarray([]) is float: no index array
        lo, hi = self._bounds(len(idx))
        return idx[lo:hi]

    # -- the collective calls ---------------------------------------------------
    def _abort(self, message):
        sys.stderr.write(f"fastbp.distributed: rank {self.rank} of {self.size}: {message}; "
                         f"aborting the MPI job\n")
        sys.stderr.flush()
        _abort(self.comm)

    def _collective(self, kind, buf, what, op="SUM"):
        """comm.Allreduce(IN_PLACE, buf, op) or comm.Bcast(buf, root); with a
        timeout, their nonblocking forms polled until done or the deadline."""
        MPI = _mpi()
        if kind == "Allreduce":
            args, kwargs = (MPI.IN_PLACE, buf), {"op": getattr(MPI, op)}
        else:
            args, kwargs = (buf,), {"root": self.root}
        if self.timeout is None:
            getattr(self.comm, kind)(*args, **kwargs)
            return
        request = getattr(self.comm, "I" + kind.lower())(*args, **kwargs)
        deadline = time.perf_counter() + self.timeout
        while not request.Test():
            if time.perf_counter() > deadline:
                self._abort(f"{what} did not complete within timeout={self.timeout:g} s "
                            f"(a rank is hung, or much slower than the others)")

    def _raise_collective(self, error, what):
        """Every rank learns who failed (strings, gathered on this rare path
        only) and raises: the failing ranks their own error, the others RankError."""
        texts = self.comm.allgather(_describe(error))
        if error is not None:
            raise error
        failed = "; ".join(f"rank {r}: {t}" for r, t in enumerate(texts) if t is not None)
        raise RankError(f"{what} failed on another rank ({failed}); rank {self.rank} of "
                        f"{self.size} stops at the same step")

    def allreduce_gradients(self, grads, rows, loss=0.0, *, error=None, interrupt=False):
        """The global mean loss and gradients of a step, from every rank's part.

        Parameters
        ----------
        grads : this rank's gradients, means over its ``rows``: a list in
            state-dict order, the MLP's list of (dW, db) pairs, or a dict by
            parameter name (the RNN/LSTM's ``loss_and_grad``); ignored when
            ``rows`` is 0 (a rank with nothing in this batch).
        rows : int >= 0
            The rows the local loss and gradients average over (B for the MLP
            and many-to-one models, T·B for many-to-many sequence models).
        loss : float
            The local mean loss.
        error : exception or None
            Pass an exception your step raised instead of gradients: every rank
            then raises at this call (this rank ``error``, the others RankError).
        interrupt : bool
            This rank wants to stop; :attr:`stop_requested` tells every rank.

        Returns ``(loss, grads, rows)``: the mean loss over the global batch,
        the mean gradients as a list of arrays in state-dict order (the
        parameter shapes; views into the buffer, valid until the next call,
        identical on every rank) and the global row count. One Allreduce.
        """
        buf, P = self._buffer, self.n_parameters
        try:
            if error is None:
                if isinstance(rows, bool) or not isinstance(rows, numbers.Integral) or rows < 0:
                    raise ValueError(f"rows: expected a non-negative integer, got {rows!r}")
                rows = int(rows)
                if self.dtype == np.float32 and rows * self.size >= 2 ** 24:
                    raise ValueError(f"rows: {rows} per rank and step is too many for the float32 "
                                     f"buffer (exact below 2**24 in all)")
                if rows:
                    for view, g, name in zip(self._grads, self._flatten(grads), self._names):
                        g = np.asarray(g)
                        if g.shape != view.shape:
                            raise ValueError(f"grads[{name!r}]: expected shape {view.shape}, "
                                             f"got {g.shape}")
                        np.multiply(g, rows, out=view, casting="same_kind")
                    buf[P] = float(loss) * rows
                    buf[P + 1] = rows
        except Exception as e:   # a bad argument is this rank's failure, reported to all
            error = e
        if error is not None or not rows:
            buf[:P + 2] = 0       # a failed or empty rank adds nothing
        buf[P + 2] = error is not None
        buf[P + 3] = bool(interrupt)
        started, cpu = time.perf_counter(), time.process_time()
        self._collective("Allreduce", buf, "the gradient allreduce")
        self.stats["allreduce_seconds"] += time.perf_counter() - started
        self.stats["allreduce_cpu_seconds"] += time.process_time() - cpu
        self.stats["steps"] += 1
        self.stats["allreduce_bytes"] += buf.nbytes
        if buf[P + 2]:
            self._raise_collective(error, "a training step")
        self.stop_requested = bool(buf[P + 3])
        total = float(buf[P + 1])
        if total == 0:
            raise ValueError("rows: 0 on every rank; a step needs at least one row somewhere")
        np.divide(buf[:P], total, out=buf[:P])
        return float(buf[P]) / total, list(self._grads), int(total)

    def _flatten(self, grads):
        if isinstance(grads, Mapping):
            internal = getattr(self.model, "_params", None)
            for names in (self._names, list(internal) if isinstance(internal, dict) else None):
                if names is not None and set(grads.keys()) == set(names):
                    return [grads[k] for k in names]
            raise ValueError(f"grads: expected the keys {self._names}, got {list(grads.keys())}")
        flat = []
        for g in grads:
            if isinstance(g, (tuple, list)):
                flat.extend(g)
            else:
                flat.append(g)
        if len(flat) != len(self._names):
            raise ValueError(f"grads: expected {len(self._names)} arrays ({', '.join(self._names)}), "
                             f"got {len(flat)}")
        return flat

    def allreduce_sum(self, values):
        """Sum a few numbers over the ranks (one Allreduce, float64); returns the array."""
        buf = np.array(values, dtype=np.float64).ravel()
        self._collective("Allreduce", buf, "the allreduce of metrics")
        return buf

    # -- what fit uses ------------------------------------------------------------
    def _start_fit(self, settings, seed):
        """Collective start of fit: every rank must pass the same settings and
        hold the same model layout (else ValueError on every rank); rank root's
        seed (drawn there when None) is returned to all; parameters broadcast."""
        self.stop_requested = False
        layout = (type(self.model).__name__, tuple(zip(self._names, self._shapes)), self.dtype.str)
        drawn = seed
        if seed is None and self.rank == self.root:
            drawn = int(np.random.SeedSequence().entropy)
        mine = dict(settings, model=layout, seed=seed)
        everyone = self.comm.allgather((mine, drawn))
        ref = everyone[self.root][0]
        for r, (theirs, _) in enumerate(everyone):
            diff = [k for k in ref if theirs.get(k) != ref[k]]
            if diff:
                k = diff[0]
                raise ValueError(f"fit: every rank must call fit with the same arguments and model; "
                                 f"{k} is {theirs.get(k)!r} on rank {r} but {ref[k]!r} on rank "
                                 f"{self.root}" + (f" (also differing: {', '.join(diff[1:])})"
                                                   if diff[1:] else ""))
        self.broadcast_parameters()
        return everyone[self.root][1]

    def _train_steps(self, feed, X, y, batch, interrupt):
        """Like ``feed.steps`` (a fastbp.training.Feed of the model), for this
        rank's part of the global ``batch``: yields the global (loss, grads,
        rows) of each step, one Allreduce each. A part whose sequences all
        ended (lengths) adds zero rows to the batch's remaining steps."""
        local = self.local_indices(batch, feed.n_samples(X))
        count = len(range(local.start, local.stop)) if isinstance(local, slice) else len(local)
        steps, error = None, None
        if count:
            try:
                Xb, yb = feed.take(X, y, local)
                if not in_memory(X, y):     # fit validated in-memory arrays at once
                    Xb, yb = feed.prepare(Xb, yb, "X", "y")
                steps = feed.steps(Xb, yb)
            except Exception as e:
                error = e
        for _ in range(feed.batch_steps(X, batch)):
            loss, grads, rows = 0.0, None, 0
            if steps is not None and error is None:
                try:
                    loss, grads, rows = next(steps)
                except StopIteration:
                    steps = None        # this part is done (its sequences ended)
                except Exception as e:
                    error = e
            yield self.allreduce_gradients(grads, rows, loss, error=error,
                                           interrupt=interrupt.is_set())

    def _evaluate(self, feed, X, y, batch_size, names=("X", "y")):
        """(mean loss, accuracy or None) over the data, each rank scoring its
        block of samples in batches (``feed``: a fastbp.training.Feed of the
        model); one Allreduce of the sums."""
        part = self.shard(feed.n_samples(X))
        sums, error = np.zeros(4), None     # loss·rows, rows, correct, failed
        try:
            for start in range(part.start, part.stop, batch_size):
                Xb, yb = feed.take(X, y, slice(start, min(start + batch_size, part.stop)))
                if not in_memory(X, y):
                    Xb, yb = feed.prepare(Xb, yb, *names)
                loss, rows, correct = feed.score(Xb, yb)
                sums[:3] += (loss, rows, correct or 0)
        except Exception as e:
            error = e
            sums[:3] = 0
        sums[3] = error is not None
        self._collective("Allreduce", sums, "the validation allreduce")
        if sums[3]:
            self._raise_collective(error, "evaluation")
        return float(sums[0] / sums[1]), (sums[2] / sums[1] if self.model.is_classifier() else None)

    def _on_root(self, action, what):
        """Run ``action()`` on rank root only and give its result to every rank
        (one bcast); if it raised, root raises its error and the others a
        RankError naming it."""
        result, error = None, None
        if self.rank == self.root:
            try:
                result = action()
            except Exception as e:
                error = e
        text, result = self.comm.bcast((_describe(error), result), root=self.root)
        if error is not None:
            raise error
        if text is not None:
            raise RankError(f"fit: could not {what} on rank {self.root} ({text}); rank "
                            f"{self.rank} of {self.size} stops too")
        return result

    def _broadcast_optimizer(self, opt):
        """Give every rank rank root's optimizer state: its header in one bcast,
        then each slot (momentum; Adam's m, v) in one Bcast of the flat buffer."""
        sd = opt.state_dict() if self.rank == self.root else None
        head = self.comm.bcast(None if sd is None else dict(
            {k: sd[k] for k in ("class", "hyper", "t", "epoch")},
            slots=None if sd["state"] is None else len(sd["state"][0])), root=self.root)
        state = None
        if head["slots"] is not None:
            flat = self._buffer[:self.n_parameters]
            state = [[] for _ in self._grads]
            for j in range(head["slots"]):
                if self.rank == self.root:
                    for view, st in zip(self._grads, sd["state"]):
                        np.copyto(view, st[j])
                self._collective("Bcast", flat, "the optimizer state broadcast")
                for row, view in zip(state, self._grads):
                    row.append(view.copy())
        if self.rank != self.root:
            opt.load_state_dict(dict({k: head[k] for k in ("class", "hyper", "t", "epoch")},
                                     state=state))

    def _end_fit(self):
        if not self.in_sync():
            warnings.warn("fit: the ranks' parameters differ after training (the MPI library's "
                          "Allreduce did not give every rank the same bits); copying rank "
                          f"{self.root}'s to all", RuntimeWarning, stacklevel=3)
            self.broadcast_parameters()

    # -- checkpoints -----------------------------------------------------------------
    def save(self, path):
        """Rank ``root`` writes the model to ``path`` (``model.save``); every rank
        returns once it is written, or raises if it could not be. Returns path."""
        return save(self.model, path, self.comm, root=self.root)


def save(model, path, comm=None, root=0):
    """Collective checkpoint: rank ``root`` writes ``model`` to ``path`` (atomically,
    as ``model.save``) and every rank returns after it succeeded; if it failed,
    root raises its error and the other ranks a RankError. Returns ``path``."""
    comm = _world(comm)
    error = None
    if comm.Get_rank() == root:
        try:
            model.save(path)
        except Exception as e:
            error = e
    text = comm.bcast(_describe(error), root=root)
    if error is not None:
        raise error
    if text is not None:
        raise RankError(f"save: rank {root} could not write {path}: {text}")
    return path


def load(path, comm=None, root=0, expected=None):
    """Collective resume: rank ``root`` reads the model file (only it needs to
    see ``path``), every rank builds the same model from its configuration and
    receives its parameters (one Bcast). Returns the model on every rank;
    errors (missing or bad file) are raised on every rank."""
    comm = _world(comm)
    rank = comm.Get_rank()
    model, error = None, None
    if rank == root:
        try:
            model = _io.load(path, expected)
        except Exception as e:
            error = e
    header = comm.bcast((_describe(error), None if model is None else
                         (type(model).__name__, model.config())), root=root)
    if error is not None:
        raise error
    if header[0] is not None:
        raise RankError(f"load: rank {root} could not read {path}: {header[0]}")
    if rank != root:
        kind, config = header[1]
        model = _io._model_classes()[kind](**config)
    DataParallel(model, comm, root=root, abort_on_exception=False).broadcast_parameters()
    return model
