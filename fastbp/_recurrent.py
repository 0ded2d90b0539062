"""The recurrent engine's Python side: cell descriptions and one layer call for every cell.

A :class:`CellSpec` says everything cell-specific that the Python layers need
(the stack code, truncated BPTT, io, the models, the tests): its parameter
kinds in torch's order, its state names, its gate blocks and what the engine
keeps (from ``_core.cell_info``, i.e. src_c/engine.h). An :class:`EngineCell`
is a spec with its options (the RNN's nonlinearity) and runs one layer, one or
two directions, in one compiled call (``_core.engine_forward`` /
``engine_backward``) on named buffers. Nothing here branches on which cell it
is: a new cell is a C header (src_c/cell_*.h), a reference function, and one
``CellSpec`` (docs/design.md, "How to add a cell").
"""
from dataclasses import dataclass, field

import numpy as np

from . import _core
from ._sequence import PACKED_MAX_MACS

__all__ = ["CellSpec", "EngineCell", "RNN_SPEC", "LSTM_SPEC", "GRU_SPEC", "SPECS",
           "pack_workspace"]

WEIGHT_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

# Which per-step product path the engine takes: None applies the size rule
# below; "packed" or "blas" force one (the tests run both).
FORCE_PRODUCTS = None


@dataclass(frozen=True)
class CellSpec:
    """What a recurrent cell is, for every layer above the C engine.

    name : "rnn", "lstm", "gru" (also the torch module: torch.nn.RNN, ...)
    kind : the engine's cell code (_core.CELL_*)
    state_names : the recurrent states, h first: ("h",) or ("h", "c")
    optional_kinds : parameter kinds a layer may have in addition to
        WEIGHT_KINDS, all or none (the LSTM's peepholes, each (H,)), which
        reach the engine stacked as one (len, H) "peep" array
    gate_names : the gate blocks along the G·H axis, in torch's order
    """

    name: str
    kind: int
    state_names: tuple
    gate_names: tuple
    optional_kinds: tuple = ()
    info: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "info", _core.cell_info(self.kind))
        assert self.info["gates"] == len(self.gate_names)
        assert self.info["states"] == len(self.state_names)

    @property
    def gates(self):
        """G: gate blocks of H rows in weight_ih, weight_hh, the biases."""
        return self.info["gates"]

    @property
    def separate(self):
        """The recurrent product stays apart (the two biases' gradients differ)."""
        return self.info["separate"]

    @property
    def layer_kinds(self):
        """Every parameter kind of a layer and direction, torch's state-dict order."""
        return WEIGHT_KINDS + self.optional_kinds

    def layer_shape(self, input_size, H, D):
        """shape(kind, layer) for fastbp._stack.read_params."""
        G = self.gates

        def shape(kind, layer):
            if kind in self.optional_kinds:
                return (H,)
            if kind == "weight_ih":
                return (G * H, input_size if layer == 0 else D * H)
            return (G * H, H) if kind == "weight_hh" else (G * H,)
        return shape


RNN_SPEC = CellSpec("rnn", _core.CELL_RNN, ("h",), ("h",))
LSTM_SPEC = CellSpec("lstm", _core.CELL_LSTM, ("h", "c"), ("i", "f", "g", "o"),
                     ("peephole_i", "peephole_f", "peephole_o"))
GRU_SPEC = CellSpec("gru", _core.CELL_GRU, ("h",), ("r", "z", "n"))
SPECS = {spec.name: spec for spec in (RNN_SPEC, LSTM_SPEC, GRU_SPEC)}


def pack_workspace(spec, B, H, dtype):
    """Workspace for the per-step products on fastbp's packed kernel, or None
    to run them through BLAS. The packed kernel (W_hh packed once per call, one
    thread) wins up to PACKED_MAX_MACS multiply-adds per step (B·G·H²), BLAS
    beyond: the rule and its measurements are in fastbp/_sequence.py."""
    use_blas = (FORCE_PRODUCTS == "blas" if FORCE_PRODUCTS is not None
                else B * spec.gates * H * H > PACKED_MAX_MACS)
    if use_blas:
        return None
    return np.empty(_core.engine_pack_size(spec.kind, 0, H, dtype == np.float64), dtype)


class EngineCell:
    """A cell with its options, running layers on the engine for fastbp._stack,
    fastbp.tbptt and the functional APIs.

    Buffers of one direction's forward (``run``): ``"x"`` (slots, I), ``"states"``
    one (state_rows, H) buffer per state name (block 0 the initial state, then
    every step's state in seq.h's slot layout), ``"gates"`` what the backward
    reads (None for the RNN without lengths)."""

    def __init__(self, spec, act=0):
        self.spec = spec
        self.act = act
        _core.cell_info(spec.kind, act)          # refuses a bad act

    def pack_workspace(self, B, H, dt):
        return pack_workspace(self.spec, B, H, dt)

    def scratch(self, sched, H, dt, backward, pack, sched_r=None):
        """The shared workspaces of one call on a schedule (and the reverse
        direction's): both directions use them in turn."""
        n = max(_core.engine_work_size(self.spec.kind, self.act, sc, H, backward)
                for sc in (sched, sched_r) if sc is not None)
        rec = (np.empty((sched.B, self.spec.gates * H), dt)
               if self.spec.separate and not backward else None)
        return {"work": np.empty(n, dt) if n else None, "pack": pack, "rec": rec}

    def engine_weights(self, arrays):
        """A layer direction's validated arrays by kind -> the engine's dict
        (the optional kinds stacked as "peep", or None)."""
        w = {kind: arrays[kind] for kind in WEIGHT_KINDS}
        opt = self.spec.optional_kinds
        w["peep"] = np.stack([arrays[k] for k in opt]) if opt and opt[0] in arrays else None
        return w

    def gates_buffer(self, layout, H, dt):
        saved = self.spec.info["saved"]
        if saved:
            return np.empty((layout.sched.slots, saved * H), dt)
        # the RNN: the input side waits in the state buffer unless lengths make
        # the blocks differ
        return np.empty((layout.sched.slots, H), dt) if layout.varlen else None

    def forward_layer(self, layout, xs, weights, init, H, scratch):
        """xs: each direction's input (slots, I) in its own order; weights: each
        direction's engine dict; init: each direction's tuple of initial states
        (B, H) or None, caller order. Returns each direction's run."""
        dt = xs[0].dtype
        runs = [{"x": x, "states": [layout.states(s, H, dt) for s in states],
                 "gates": self.gates_buffer(layout, H, dt)} for x, states in zip(xs, init)]
        _core.engine_forward(self.spec.kind, self.act, runs, list(weights), scratch, layout.sched,
                             layout.reverse_sched if len(runs) == 2 else None)
        return runs

    def backward_layer(self, layout, runs, weights, dys, dfinal, want_dx, H, scratch, overwrite):
        """dys: each direction's ∂L/∂h_t (slots, H) or None; dfinal: each
        direction's tuple of final-state gradients (B, H) or None, caller order;
        overwrite: the gate gradients may reuse the runs' gate buffers (the
        caller gave them up). Returns (grads by kind, dx (slots, I) or None,
        tuple of initial-state gradients, caller order) per direction."""
        spec, dt = self.spec, runs[0]["states"][0].dtype
        B, slots, GH = layout.B, layout.sched.slots, spec.gates * H
        # the engine swaps the reset rows of the state buffers in place: unless
        # the caller gave the cache up, it works on copies
        private = not overwrite and (layout.sched.has_resets
                                     or (len(runs) == 2 and layout.reverse_sched.has_resets))
        in_place = overwrite and spec.info["saved"] == spec.gates and not spec.separate
        engine_runs, grads, dweights = [], [], []
        for run, w, dy, finals in zip(runs, weights, dys, dfinal):
            I = run["x"].shape[1]
            states = [s.copy() for s in run["states"]] if private else run["states"]
            engine_runs.append(dict(run, states=states))
            grads.append({"dgates": run["gates"] if in_place else np.empty((slots, GH), dt),
                          "drec": np.empty((slots, GH), dt) if spec.separate else None,
                          "dx": np.empty((slots, I), dt) if want_dx else None,
                          "dstates": [np.zeros((B, H), dt) if f is None else layout.to_sorted(f)
                                      for f in finals],
                          "dy": dy})
            dweights.append({"weight_ih": np.zeros((GH, I), dt),
                             "weight_hh": np.zeros((GH, H), dt),
                             "bias_ih": np.zeros(GH, dt),
                             "bias_hh": np.zeros(GH, dt) if spec.separate else None,
                             "peep": None if w["peep"] is None else np.zeros(w["peep"].shape, dt)})
        _core.engine_backward(spec.kind, self.act, grads, dweights, engine_runs,
                              [dict(w) for w in weights],
                              scratch, layout.sched,
                              layout.reverse_sched if len(runs) == 2 else None)
        out = []
        for g, dw in zip(grads, dweights):
            by_kind = {"weight_ih": dw["weight_ih"], "weight_hh": dw["weight_hh"],
                       "bias_ih": dw["bias_ih"],
                       # one bias gradient for the cells that add the two biases
                       "bias_hh": dw["bias_hh"] if spec.separate else dw["bias_ih"].copy()}
            if dw["peep"] is not None:
                by_kind.update(zip(spec.optional_kinds, dw["peep"]))
            out.append((by_kind, g["dx"], tuple(layout.to_caller(d) for d in g["dstates"])))
        return [o[0] for o in out], [o[1] for o in out], [o[2] for o in out]
