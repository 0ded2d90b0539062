"""Variable lengths and per-row resets at the Python boundary (src_c/seq.h).

``lengths`` (B,) gives each row's number of valid steps; ``reset`` (T, B) bool
marks steps where a row starts again from its initial state. The kernels run
on the rows sorted by length (longest first) in a "slot layout" where the rows
still active at step t are the first n_t of the step's block; :class:`Layout`
builds that schedule once per call and moves arrays between the caller's
``(T, B, D)`` layout and the kernels'. Without lengths (or with every length
equal to T) the slot layout is the caller's own layout, and every move is a
free reshape.
"""
import threading

import numpy as np

from . import _core
from ._validate import as_array

# Which engine runs the per-step recurrent products of the RNN and LSTM (B·G·H
# multiply-adds per step, G = H or 4H): fastbp's packed kernel (src_c/packed.*,
# W_hh packed once per call, one thread) up to PACKED_MAX_MACS, BLAS beyond.
# BLAS repacks W_hh on every one of the T calls, which dominates small products
# (H = 256, one thread: 5 against 47 µs at B = 2, 110 against 250 µs for the
# LSTM at B = 16), and a threaded BLAS call per step stalls whenever another
# process holds the other core: measured on this 2-core machine while it was
# shared, LSTM T = 100, B = 64, H = 256 forward + backward took 5.8 s with
# threaded per-step BLAS against 0.38 s packed (1 thread: 0.33 against 0.31).
# On two idle cores threaded BLAS was ahead at B = 64 (~300 against ~430 µs per
# LSTM product), but predictable beats that: the per-step products stay on one
# thread up to 2²⁵ multiply-adds (LSTM B = 128 at H = 256), and only products
# large enough to amortise BLAS's packing and threads go to BLAS. The stacked
# GEMMs (input side, weight gradients) always use BLAS and its threads.
PACKED_MAX_MACS = 1 << 25


_swap_lock = threading.Lock()


class ReadOnly:
    """Base of the caches a forward returns for its backward: attributes cannot
    be assigned or deleted once built (the backward reads what the forward
    stored, nothing else), and the arrays a caller may also hold (``_viewed``:
    the input, the weights) are kept as the cache's own views, so reshaping
    the caller's array in place does not reshape the cache's.
    (The compiled glue also checks every buffer it hands to C against the
    sizes it passes: a cache tampered with through its private names is
    refused, never read out of bounds.)"""

    __slots__ = ()
    _viewed = ()        # attributes that may hold the caller's arrays: kept as views

    def _set(self, **attrs):
        for name, value in attrs.items():
            if name in self._viewed and value is not None:
                value = value.view()
            object.__setattr__(self, name, value)

    def _swap(self, name, value):
        """Set an internal attribute and return its old value, atomically (a
        backward with overwrite_cache=True consuming the cache: of two threads,
        exactly one gets the buffers)."""
        with _swap_lock:
            old = getattr(self, name)
            object.__setattr__(self, name, value)
        return old

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__}.{name}: a cache is read-only "
                             "(run the forward again for another one)")

    def __delattr__(self, name):
        raise AttributeError(f"{type(self).__name__}.{name}: a cache is read-only")


def lengths_array(lengths, T, B, name="lengths"):
    """Validated lengths as int64 (B,), or None for full-length rows.

    Lengths size the kernels' loops: they are copied (converted) first and the
    copy is checked, so no other thread can change what was checked. The same
    holds for reset_array."""
    if lengths is None:
        return None
    arr = as_array(lengths, name)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array of shape ({B},), got dtype {arr.dtype}")
    if arr.shape != (B,):
        raise ValueError(f"{name}: expected shape ({B},), got {arr.shape}")
    arr = arr.astype(np.int64)
    if B and (arr.min() < 0 or arr.max() > T):
        raise ValueError(f"{name}: every length must lie in [0, T] = [0, {T}], got values in "
                         f"[{arr.min()}, {arr.max()}]")
    return arr


def reset_array(reset, T, B, name="reset"):
    """Validated reset flags as bool (T, B), or None."""
    if reset is None:
        return None
    arr = as_array(reset, name)
    if arr.shape != (T, B):           # before any conversion: a huge array is not copied
        raise ValueError(f"{name}: expected shape ({T}, {B}), got {arr.shape}")
    if arr.dtype.kind == "b":
        arr = np.array(arr, copy=True)
    elif arr.dtype.kind in "iu":
        arr = np.array(arr, copy=True)
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name}: expected booleans (or 0/1), got other integers")
        arr = arr.astype(bool)
    else:
        raise TypeError(f"{name}: expected a bool array of shape ({T}, {B}), got dtype {arr.dtype}")
    if arr.shape != (T, B):
        raise ValueError(f"{name}: expected shape ({T}, {B}), got {arr.shape}")
    return arr


def _events_csr(events):
    """(T, B) bool events -> (reset_ptr, reset_rows) CSR over steps, or (None, None)."""
    t_idx, rows = np.nonzero(events)
    if not t_idx.size:
        return None, None
    return np.searchsorted(t_idx, np.arange(events.shape[0] + 1), side="left"), rows


def _frozen(a):
    """A copy of `a` that nobody can write, nor make writeable again (it views
    a bytes object)."""
    return np.frombuffer(a.tobytes(), dtype=a.dtype).reshape(a.shape)


class Layout:
    """The kernels' view of one batch: row order, lengths, reset events.

    Attributes: ``sched`` (the ``_core.Schedule`` the kernels take),
    ``varlen`` (rows of different lengths: arrays must be gathered),
    ``lengths`` (B,) int64 in the caller's order (None: all T),
    ``order`` (B,) the caller's row of each sorted row (None: identity).
    """

    __slots__ = ("T", "B", "sched", "varlen", "lengths", "order", "_sorted", "_events", "_rsched")

    def __init__(self, T, B, lengths=None, reset=None):
        # Read-only once built, arrays included: a cache keeps its Layout, and
        # the backward reads the row order and lengths from it (lengths: the
        # caller's copy from lengths_array, fastbp's own).
        put = object.__setattr__
        if lengths is not None:
            lengths = _frozen(lengths)
        put(self, "T", T)
        put(self, "B", B)
        put(self, "lengths", lengths)
        if lengths is not None and bool((lengths == T).all()):
            lengths = None                         # nothing to skip: the plain layout
        varlen = lengths is not None
        put(self, "varlen", varlen)
        if varlen:
            order = np.argsort(-lengths, kind="stable").astype(np.int32)
            order, sorted_ = _frozen(order), _frozen(lengths[order])
        else:
            order = sorted_ = None
        put(self, "order", order)
        put(self, "_sorted", sorted_)
        ptr = rows = None
        kept = None                                # (T, B) bool, sorted order, or None
        if reset is not None and T > 1:
            events = reset if order is None else reset[:, order]
            events = events.copy()
            events[0] = False                      # step 0 starts from h0 anyway
            if varlen:                             # only rows still running
                events &= sorted_[None, :] > np.arange(T)[:, None]
            ptr, rows = _events_csr(events)
            if ptr is not None:
                kept = _frozen(events)
        put(self, "_events", kept)
        put(self, "_rsched", None)
        put(self, "sched", _core.Schedule(T, B, order, sorted_, ptr, rows))

    def __setattr__(self, name, value):
        raise AttributeError(f"Layout.{name}: a layout is read-only (a cache's backward reads it)")

    def __delattr__(self, name):
        raise AttributeError(f"Layout.{name}: a layout is read-only")

    @property
    def reverse_sched(self):
        """The Schedule of a reverse direction (bidirectional layers): the same
        rows per step, since step t of a row of length L is its time L − 1 − t;
        a reset at time t (the start of a piece) becomes an event at reverse
        step L − t, where the reverse pass enters the previous piece at its
        last step."""
        if self._events is None:
            return self.sched
        if self._rsched is None:
            T, B = self.T, self.B
            L = self._sorted if self.varlen else np.full(B, T)
            u = np.arange(T)[:, None]
            valid = (u >= 1) & (u < L[None, :])
            t_idx, r_idx = np.nonzero(valid)
            events = np.zeros((T, B), dtype=bool)
            events[t_idx, r_idx] = self._events[L[r_idx] - t_idx, r_idx]
            ptr, rows = _events_csr(events)
            object.__setattr__(self, "_rsched",
                               _core.Schedule(T, B, self.order, self._sorted, ptr, rows))
        return self._rsched

    # -- caller layout <-> slot layout ----------------------------------------
    # reverse=True: the reverse direction's order, step t of a row of length L
    # being its time L − 1 − t (src_c/seq.h). Caller-layout arrays may be
    # column slices of a wider (T, B, ·) array (the halves of a bidirectional
    # layer's output).
    def slots(self, a, reverse=False):
        """(T, B, D) -> (slots, D): a view without lengths (forward order, contiguous a)."""
        T, B, D = a.shape
        if not self.varlen and not reverse and a.flags.c_contiguous:
            return a.reshape(T * B, D)
        out = np.empty((self.sched.slots, D), a.dtype)
        _core.seq_gather(out, a, self.sched, False, reverse)
        return out

    def unslot(self, s, D, reverse=False, out=None, accumulate=False):
        """(slots, D) -> (T, B, D), zeros past each row's length; into ``out``
        (accumulate: added) when given."""
        if out is None and not self.varlen and not reverse:
            return s[:self.T * self.B].reshape(self.T, self.B, D)
        if out is None:
            out = np.empty((self.T, self.B, D), s.dtype)
        _core.seq_scatter(out, s, self.sched, False, reverse, accumulate)
        return out

    def states(self, init, H, dtype):
        """The (state_rows, H) state buffer with block 0 = init (B, H) in the
        sorted order (zeros for None)."""
        hs = np.empty((self.sched.state_rows, H), dtype)
        head = hs[:self.B]
        if init is None:
            head.fill(0)
        else:
            head[...] = init if self.order is None else init[self.order]
        return hs

    def outputs(self, hs, H, reverse=False, out=None):
        """Every step's output (T, B, H) from a state buffer: a view without
        lengths, a copy with zeros past each length with them; into ``out``
        when given."""
        if out is None and not self.varlen and not reverse:
            return hs[self.B:].reshape(self.T, self.B, H)
        if out is None:
            out = np.empty((self.T, self.B, H), hs.dtype)
        _core.seq_scatter(out, hs, self.sched, True, reverse, False)
        return out

    def final(self, hs):
        """Each row's state after its own last step, (B, H), caller order (a copy)."""
        if not self.varlen:
            return hs[self.T * self.B:(self.T + 1) * self.B].copy()
        last = hs[self.sched.starts[self._sorted] + np.arange(self.B)]
        return self.to_caller(last)

    def to_sorted(self, a):
        """(B, ·) caller order -> a fresh array in the kernels' order."""
        return np.array(a if self.order is None else a[self.order])

    def to_caller(self, a):
        """(B, ·) kernels' order -> caller order (in place when unordered)."""
        if self.order is None:
            return a
        out = np.empty_like(a)
        out[self.order] = a
        return out

    def mask(self):
        """(T, B) bool: the valid steps (None when every step is)."""
        if not self.varlen:
            return None
        return np.arange(self.T)[:, None] < self.lengths[None, :]
