"""Streaming inference for the recurrent models: ``model.step(x, state)``, one or k steps a call, the state carried by the caller.

A :class:`Stepper` belongs to one model and runs its layers on the recurrent
engine as ``forward`` does (``_core.engine_forward``, the model's cell and its
per-step product rule), on buffers it keeps from call to call, so that a step
costs one engine call per layer, one readout product and a few copies. Each
engine call still packs its layer's weights (BLAS for the input side, the
packed kernel's copy of W_hh), once per call as for a whole sequence: at batch
1 and H=256 that is most of a step's time (docs/performance.md, "Streaming:
model.step", measured, and what the engine would need).

Per call: the input and the carried state are copied into the stepper's own
buffers (the engine reads them without the GIL; nothing the caller holds is
read), the layers run, and the new state and the outputs are returned as new
arrays. Buffers are kept per (k, B), the last few shapes; a call that finds
them in use by another thread works on buffers of its own.

What differs from ``forward``: nothing in the cell arithmetic (the same
compiled passes, the same product path for the same B), but the input side of
a layer, and the readout, are one matrix product over the rows of the call,
k·B here and T·B in ``forward``, and BLAS may round a row differently
depending on how many rows share the product (OpenBLAS picks its kernels by
shape). So a loop of steps
equals ``forward`` to rounding, not always bit for bit; ``step`` over k steps
is bit for bit ``forward`` over the same k steps.
"""
import threading

import numpy as np

from . import _core, _recurrent
from ._validate import float_array

__all__ = ["Stepper"]

_KEEP = 4       # buffer sets kept, by (k, B) (and the product path)


class _Buffers:
    """One call shape's buffers: the schedule, the engine's scratch, each
    layer's state buffers (block 0 the carried state, then each step's), the
    layer-0 input, a gate buffer the layers share (inference keeps none), and
    each layer's engine run over them (layer l > 0 reads layer l − 1's states
    h_1..h_k in place)."""

    __slots__ = ("k", "B", "sched", "scratch", "x", "states", "heads", "runs", "top", "last")

    def __init__(self, stepper, k, B):
        spec, cell = stepper.spec, stepper.cell
        H, dt = stepper.H, stepper.dtype
        self.k, self.B = k, B
        self.sched = _core.Schedule(k, B)
        self.scratch = cell.scratch(self.sched, H, dt, False, cell.pack_workspace(B, H, dt))
        self.x = np.empty((k * B, stepper.I), dt)
        self.states = [[np.empty(((k + 1) * B, H), dt) for _ in spec.state_names]
                       for _ in range(stepper.L)]
        # heads[q][l]: block 0 of state q of layer l, where the carried state goes
        self.heads = [[self.states[l][q][:B] for l in range(stepper.L)]
                      for q in range(len(spec.state_names))]
        saved = spec.info["saved"]
        gates = np.empty((k * B, saved * H), dt) if saved else None
        self.runs = [[{"x": self.x if l == 0 else self.states[l - 1][0][B:],
                       "states": self.states[l], "gates": gates}] for l in range(stepper.L)]
        self.top = self.states[-1][0][B:]                    # the top layer's h_1..h_k
        self.last = [[self.states[l][q][k * B:] for l in range(stepper.L)]
                     for q in range(len(spec.state_names))]  # each layer's h_k (and c_k)


class Stepper:
    """The streaming half of a unidirectional recurrent model (RNN, LSTM,
    GRU; any num_layers). ``run(x, state)`` is ``model.step``."""

    def __init__(self, model, layer_names):
        """layer_names[l]: kind -> the model's parameter name of layer l (forward)."""
        self.model = model
        self.cell = model._cell
        self.spec = self.cell.spec
        self.H, self.I, self.L = model.hidden_size, model.input_size, model.num_layers
        self.O = model.output_size
        self.dtype = np.dtype(model.dtype)
        self.stacked = model._stacked
        self.names = layer_names
        self.S = len(self.spec.state_names)
        self._peep = bool(model._with_optional)          # the LSTM's peepholes
        self._sources = None                             # (name, array) the engine dicts hold
        self._engine = None
        self._kept = {}                         # (k, B) -> _Buffers, most recent last
        self._lock = threading.Lock()

    # -- the call ----------------------------------------------------------------
    def run(self, x, state):
        model = self.model
        model._checked_params()          # replaced or reshaped since: refused by name
        x, one = self._check_x(x)
        k, B = x.shape[0], x.shape[1]
        init = self._check_state(state, B)
        mine = self._lock.acquire(blocking=False)
        try:
            buf = self._buffers(k, B) if mine else _Buffers(self, k, B)
            return self._run(buf, x, init, one)
        finally:
            if mine:
                self._lock.release()

    def _run(self, buf, x, init, one):
        k, B = buf.k, buf.B
        # the engine reads what fastbp owns: x and the state are copied in
        np.copyto(buf.x, x.reshape(k * B, self.I))
        if not np.isfinite(buf.x).all():
            raise ValueError("x: contains NaN or infinity")
        for q, heads in enumerate(buf.heads):
            if init[q] is None:
                for head in heads:
                    head.fill(0)
                continue
            if self.stacked:
                for l, head in enumerate(heads):
                    np.copyto(head, init[q][l])
            else:
                np.copyto(heads[0], init[q])
            for head in heads:
                if not np.isfinite(head).all():
                    raise ValueError(f"{self._label(q)}: contains NaN or infinity")
        kind, act = self.spec.kind, self.cell.act
        for run, weights in zip(buf.runs, self._weights()):
            _core.engine_forward(kind, act, run, weights, buf.scratch, buf.sched)
        # the new state: each layer's block k, copied out of the buffers
        if self.stacked:
            new = tuple(np.stack(last) for last in buf.last)
        else:
            new = tuple(last[0].copy() for last in buf.last)
        if self.model.many_to_one:
            y = self.model._readout(buf.last[0][-1])
        else:
            y = self.model._readout(buf.top)
            y = y.reshape(B, self.O) if one else y.reshape(k, B, self.O)
        return y, (new if self.S > 1 else new[0])

    def _weights(self):
        """Each layer's arrays as the engine's [dict], the model's private views:
        rebuilt when set_params replaced one (the optimizers and
        load_state_dict write in place, into the same memory); the peepholes,
        which reach the engine stacked, are restacked on every call."""
        kernel = self.model._kernel
        sources = self._sources
        if sources is None or not all(kernel[name] is a for name, a in sources):
            self._sources = [(name, kernel[name]) for names in self.names
                             for name in names.values() if name in kernel]
            self._engine = [[self.cell.engine_weights({kind: kernel[name]
                                                       for kind, name in names.items()
                                                       if name in kernel})]
                            for names in self.names]
        elif self._peep:
            for (w,), names in zip(self._engine, self.names):
                for row, kind in zip(w["peep"], self.spec.optional_kinds):
                    np.copyto(row, kernel[names[kind]])
        return self._engine

    def _buffers(self, k, B):
        # (the product path is the engine's rule for B, or the one the tests force)
        key = (k, B, _recurrent.FORCE_PRODUCTS)
        buf = self._kept.pop(key, None)
        if buf is None:
            buf = _Buffers(self, k, B)
            if len(self._kept) >= _KEEP:
                self._kept.pop(next(iter(self._kept)))     # the least recently used
        self._kept[key] = buf
        return buf

    # -- validation ----------------------------------------------------------------
    def _check_x(self, x):
        """(B, I) -> ((1, B, I), True); (k, B, I) -> (itself, False); the model's dtype."""
        dt, I = self.dtype, self.I
        if not (type(x) is np.ndarray and x.dtype == dt and x.ndim in (2, 3)
                and x.shape[-1] == I):
            x = float_array(x, "x", dtype=dt)
            if x.ndim not in (2, 3) or x.shape[-1] != I:
                raise ValueError(f"x: expected shape (B, {I}) for one step or (k, B, {I}) for "
                                 f"k steps, got {x.shape}")
        one = x.ndim == 2
        if one:
            x = x[None]
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"x: expected at least one step and one row, got shape "
                             f"{x.shape[1:] if one else x.shape}")
        return x, one

    def _label(self, q):
        name = self.spec.state_names[q] + "_n"
        return f"state[{q}] ({name})" if self.S > 1 else f"state ({name})"

    def _check_state(self, state, B):
        """The state as forward returns it (None: zeros; in a tuple, a None part
        is zeros, as forward's c0=None) -> one array or None per state name,
        each (B, H) or (num_layers, B, H)."""
        if state is None:
            return (None,) * self.S
        names = self.spec.state_names
        if self.S > 1:
            if not isinstance(state, (tuple, list)) or len(state) != self.S:
                raise TypeError(f"state: expected None or the tuple ({', '.join(n + '_n' for n in names)}) "
                                f"that forward and step return, got {type(state).__name__}"
                                + (f" of length {len(state)}" if isinstance(state, (tuple, list))
                                   else ""))
            parts = state
        else:
            parts = (state,)          # h_n, any array-like
        shape = ((self.L,) if self.stacked else ()) + (B, self.H)
        out = []
        for q, s in enumerate(parts):
            label = self._label(q)
            if s is None:
                out.append(None)
                continue
            a = s if (type(s) is np.ndarray and s.dtype == self.dtype) else float_array(
                s, label, dtype=self.dtype, finite=False)
            if a.shape != shape:
                raise ValueError(f"{label}: expected shape {shape}, got {a.shape}")
            out.append(a)
        return tuple(out)
