"""Streaming inference for the recurrent models: ``model.step(x, state)``, one or k steps a call, the state carried by the caller.

A :class:`Stepper` belongs to one model and runs its layers on the recurrent
engine as ``forward`` does (the model's cell, its per-step product rule, the
same compiled passes), on buffers it keeps from call to call. For each call
shape (k steps of B rows) it keeps a compiled plan (``_core.StepPlan``): the
engine's structs of every layer, filled once, so a call is one compiled call
that copies the input and the carried state in, runs every layer and reads
out, with the GIL released. Below 8 rows of batch nothing is packed per call:
the engine's forward products (the input side, the recurrent product, the
readout) read the weights as they are (src_c/rowdot.h); from 8 rows the
recurrent product and the input side pack W_hh's and W_ih's panels as they go
(src_c/engine_products.h).

A loop of steps equals ``forward`` over the whole sequence bit for bit: those
products sum every element in one fixed order, whatever the number of rows
(k·B here, T·B in ``forward``) or the thread that computes it, and everything
else is the same code on the same rows.

Per call: the input and the carried state are copied into the stepper's own
buffers (nothing the caller holds is read without the GIL), and the new state
and the outputs are returned as new arrays. Buffers are kept per (k, B), the
last few shapes; a call that finds them in use by another thread works on
buffers of its own. The plans hold the model's weight arrays and are rebuilt
when ``set_params`` replaces them (in-place writes, the optimizers' and
``load_state_dict``'s, are read by the next call as they are).
"""
import threading

import numpy as np

from . import _core, _recurrent
from ._validate import float_array

__all__ = ["Stepper"]

_KEEP = 4       # buffer sets kept, by (k, B) (and the product path)


class _Buffers:
    """One call shape's buffers and their compiled plan (``_core.StepPlan``):
    the schedule, the engine's scratch, each layer's state buffers (block 0
    the carried state, then each step's), the layer-0 input, a gate buffer
    the layers share (inference keeps none); layer l > 0 reads layer l − 1's
    states h_1..h_k in place. The plan holds the model's weight arrays of one
    generation (``Stepper._weights``) and is rebuilt for the next."""

    __slots__ = ("k", "B", "force", "sched", "scratch", "x", "states", "gates", "plan",
                 "generation")

    def __init__(self, stepper, k, B):
        spec, cell = stepper.spec, stepper.cell
        H, dt = stepper.H, stepper.dtype
        self.k, self.B = k, B
        self.force = _recurrent.FORCE_PRODUCTS      # the product path the tests forced, if any
        self.sched = _core.Schedule(k, B)
        self.scratch = cell.scratch(self.sched, H, dt, False, cell.pack_workspace(B, H, dt))
        self.x = np.empty((k * B, stepper.I), dt)
        self.states = [[np.empty(((k + 1) * B, H), dt) for _ in spec.state_names]
                       for _ in range(stepper.L)]
        saved = spec.info["saved"]
        self.gates = np.empty((k * B, saved * H), dt) if saved else None
        self.plan, self.generation = None, None

    def plan_for(self, stepper):
        """The plan over the model's current weight arrays."""
        model = stepper.model
        key = (model._kernel_generation, model.many_to_one)
        if self.generation != key:
            engine, peep_sources = stepper._weights()       # (of that generation)
            self.plan = _core.StepPlan(
                stepper.spec.kind, stepper.cell.act, self.sched, self.x, self.states,
                self.gates, engine, peep_sources, self.scratch, model._kernel["weight_out"],
                model._kernel["bias_out"], model.many_to_one)
            self.generation = key
        return self.plan


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
        self._engine = None                     # (engine dicts, peephole arrays) the plans hold
        self._generation = None                 # the model's _kernel_generation they are of
        self._kept = {}                         # (k, B) -> _Buffers, most recent last
        self._recent = None                     # the last call's _Buffers
        self._lock = threading.Lock()

    # -- the call ----------------------------------------------------------------
    def run(self, x, state):
        model = self.model
        model._checked_params()          # replaced or reshaped since: refused by name
        if not self._lock.acquire(blocking=False):
            # another thread is stepping this model: buffers of this call's own
            x, one = self._check_x(x)
            init = self._check_state(state, x.shape[1])
            return self._run(_Buffers(self, x.shape[0], x.shape[1]), x, init, one)
        try:
            recent = self._recent
            if recent is not None and recent.force is _recurrent.FORCE_PRODUCTS:
                # the common case (arrays of the model's dtype, the last call's
                # shape) checked and run in one compiled call
                out = recent.plan_for(self).step(x, state, self.stacked)
                if out is not None:
                    return out
            x, one = self._check_x(x)
            init = self._check_state(state, x.shape[1])
            return self._run(self._buffers(x.shape[0], x.shape[1]), x, init, one)
        finally:
            self._lock.release()

    def _run(self, buf, x, init, one):
        k, B, dt = buf.k, buf.B, self.dtype
        lead = (self.L,) if self.stacked else ()
        new = tuple(np.empty(lead + (B, self.H), dt) for _ in range(self.S))
        many_to_one = self.model.many_to_one
        y = np.empty((B, self.O) if one or many_to_one else (k, B, self.O), dt)
        # the plan copies x and the state into the buffers (nothing the
        # caller holds is read without the GIL), runs the layers and reads out
        bad = buf.plan_for(self).run(x, init, y.reshape(-1, self.O), new)
        if bad:
            raise ValueError("x: contains NaN or infinity" if bad < 0
                             else f"{self._label(bad - 1)}: contains NaN or infinity")
        return y, (new if self.S > 1 else new[0])

    def _weights(self):
        """Each layer's arrays as the engine's dict (the model's private
        views) and the peephole arrays per layer (or None), rebuilt when the
        model's ``_kernel_generation`` moved on: set_params replaces arrays
        and moves it (the optimizers and load_state_dict write in place, into
        the same memory, which the plans read on every call; the peepholes,
        which reach the engine stacked, are restacked by the plan on every
        call)."""
        model = self.model
        if self._generation != model._kernel_generation:
            kernel = model._kernel
            opt = self.spec.optional_kinds
            engine, peeps = [], []
            for names in self.names:
                arrays = {kind: kernel[name] for kind, name in names.items() if name in kernel}
                w = self.cell.engine_weights(arrays)       # "peep": a stacked copy, ours
                engine.append(w)
                peeps.append([arrays[kind] for kind in opt] if w.get("peep") is not None
                             else None)
            self._engine = (engine, peeps)
            self._generation = model._kernel_generation
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
        self._recent = buf
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
        if not (x.flags.c_contiguous and x.flags.aligned):
            x = np.array(x, order="C")          # the compiled code reads it whole and aligned
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
            out.append(a if a.flags.c_contiguous and a.flags.aligned else np.array(a, order="C"))
        return tuple(out)
