"""Stacked and bidirectional recurrent layers: the layer loop that fastbp.lstm
and fastbp.rnn share.

Semantics are those of ``torch.nn.LSTM`` / ``torch.nn.RNN`` with ``num_layers``
= L and ``bidirectional`` (D = 2 directions, else 1):

- layer 0 reads x (T, B, I); layer l > 0 reads the previous layer's output
  (T, B, D·H), ``[forward, reverse]`` concatenated on the last axis;
- the reverse direction of a row runs over that row's own valid steps
  backwards, times L_b − 1 … 0 (what torch does on a packed sequence), from
  its own initial state; its output at time t is its state after time t;
- initial and final states are (L·D, B, H), index l·D + d (layer 0 forward,
  layer 0 reverse, layer 1 forward, ...); a reverse direction's final state is
  the one after time 0;
- a reset at (t, b) cuts row b into pieces that run as separate sequences
  through every layer and both directions, each from the initial states: the
  reverse direction enters each piece at its last step (the reverse schedule
  carries the mirrored events, fastbp._sequence.Layout.reverse_sched).

How: per layer ONE compiled call runs both directions (src_c/engine.h:
``fbp_engine_forward`` / ``fbp_engine_backward``), each with its input
GEMM over all slots, its time loop and, in backward, its stacked weight GEMMs.
The reverse direction holds each row's steps in reverse order in the same slot
layout (rows sorted by length, src_c/seq.h), so it shares the forward
direction's rows per step. Between layers the two directions' outputs are
written into the (T, B, 2H) caller layout and gathered into each direction's
order for the next layer (and the gradients back the same way); one
direction without lengths reads the previous layer's state buffer directly.

A *cell* (``fastbp._recurrent.EngineCell``: a cell description and its
options) supplies the per-layer calls; this module owns the layer loop, the
plumbing and the naming, and ``stack_forward``/``stack_backward`` are the
``{rnn,lstm,gru}_stack_*`` functions for any cell.
"""
from types import MappingProxyType

import numpy as np

from ._memory import pooled
from ._sequence import Layout, ReadOnly, lengths_array, reset_array
from ._validate import as_array, as_numpy, flag, float_array, positive_int

REVERSE_SUFFIX = "_reverse"
_CONSUMED = ("cache: already consumed by a backward pass with overwrite_cache=True; "
             "run the forward again")


def stack_config(num_layers, bidirectional):
    """Validated (num_layers, num_directions)."""
    L = positive_int(num_layers, "num_layers")
    return L, 2 if flag(bidirectional, "bidirectional") else 1


def param_name(kind, layer, direction):
    """torch's name of a layer parameter: ("weight_ih", 1, 1) -> "weight_ih_l1_reverse"."""
    return f"{kind}_l{layer}{REVERSE_SUFFIX if direction else ''}"


def model_param_name(kind, layer, direction):
    """The models' name: layer 0's forward direction keeps the one-layer names
    ("weight_ih", ...); every other gets torch's suffix."""
    return kind if layer == 0 and direction == 0 else param_name(kind, layer, direction)


def layer_input_size(input_size, hidden_size, layer, D):
    return input_size if layer == 0 else D * hidden_size


def hidden_size(params, gates, name="params"):
    """H from params["weight_hh_l0"], which must be (gates·H, H) with H >= 1."""
    if not hasattr(params, "keys"):
        raise TypeError(f"{name}: expected a mapping of parameter names to arrays, got "
                        f"{type(params).__name__}")
    key = param_name("weight_hh", 0, 0)
    if key not in params:
        raise ValueError(f"{name}: missing {key!r}")
    shape = as_array(params[key], f"{name}[{key!r}]").shape
    if len(shape) != 2 or shape[1] < 1 or shape[0] != gates * shape[1]:
        form = "(H, H)" if gates == 1 else f"({gates}H, H)"
        raise ValueError(f"{name}[{key!r}]: expected shape {form} with H >= 1, got {shape}")
    return shape[1]


def read_params(params, kinds, optional, shape, num_layers, D, dtype, name="params"):
    """Validate a mapping of torch-named arrays into ``weights[l][d]`` dicts by kind.

    kinds: the parameter kinds of a layer ("weight_ih", ...), ``optional`` among
    them: kinds that must be all present or all absent (the LSTM's peepholes);
    shape(kind, layer) -> expected shape. Missing or unexpected names
    raise ValueError listing them; values go through float_array (any
    array-like, CPU torch tensors included) in ``dtype``.
    """
    if not hasattr(params, "keys"):
        raise TypeError(f"{name}: expected a mapping of parameter names to arrays, got "
                        f"{type(params).__name__}")
    required = [k for k in kinds if k not in optional]
    with_optional = any(param_name(k, 0, 0) in params for k in optional)
    kinds = required + (list(optional) if with_optional else [])
    expected = [param_name(k, l, d) for l in range(num_layers) for d in range(D) for k in kinds]
    missing = [n for n in expected if n not in params]
    unexpected = [n for n in params.keys() if n not in expected]
    if missing or unexpected:
        raise ValueError(f"{name}: " + "; ".join(part for part in (
            f"missing {missing}" if missing else "",
            f"unexpected {unexpected}" if unexpected else "") if part)
            + f" (num_layers={num_layers}, bidirectional={D == 2}: expected {expected})")
    weights = []
    for l in range(num_layers):
        weights.append([{k: float_array(as_numpy(params[param_name(k, l, d)]),
                                        f"{name}[{param_name(k, l, d)!r}]", dtype=dtype,
                                        shape=shape(k, l))
                         for k in kinds} for d in range(D)])
    return weights


def split_states(s, name, num_layers, D, B, H, dtype):
    """(L·D, B, H) or None -> [[(B, H) or None per direction] per layer]."""
    if s is None:
        return [[None] * D for _ in range(num_layers)]
    s = float_array(s, name, dtype=dtype, shape=(num_layers * D, B, H))
    return [[s[l * D + d] for d in range(D)] for l in range(num_layers)]


class StackCache(ReadOnly):
    """What a stacked forward keeps for its backward (kernels' layouts, sorted
    rows; read-only: attributes cannot be assigned, and the containers are
    tuples and read-only mappings). Attributes: ``x`` (T, B, I), ``y`` (T, B,
    D·H), ``layout``, ``num_layers``, ``num_directions``, ``hidden_size``,
    ``weights[l][d]`` and ``runs[l][d]`` (the cell's buffers of each layer and
    direction), ``consumed`` (the gate buffers were reused by a backward pass)."""

    __slots__ = ("x", "y", "layout", "num_layers", "num_directions", "hidden_size", "weights",
                 "runs", "cell", "consumed")
    _viewed = ("x",)

    def __init__(self, x, y, layout, num_layers, D, H, weights, runs, cell):
        self._set(x=x, y=y, layout=layout, num_layers=num_layers, num_directions=D,
                  hidden_size=H, weights=_frozen_layers(weights), runs=_frozen_layers(runs),
                  cell=cell, consumed=False)

    @property
    def lengths(self):
        return self.layout.lengths

    def __repr__(self):
        T, B, I = self.x.shape
        return (f"StackCache({type(self.cell).__name__}, T={T}, B={B}, I={I}, "
                f"H={self.hidden_size}, num_layers={self.num_layers}, "
                f"bidirectional={self.num_directions == 2}, dtype={self.x.dtype}, "
                f"lengths={self.lengths is not None}, consumed={self.consumed})")


def _frozen_layers(layers):
    """[[dict per direction] per layer] -> the same as tuples of read-only
    mappings (the dicts are the cache's own: forward built them)."""
    return tuple(tuple(MappingProxyType(d) for d in layer) for layer in layers)


def _outputs(layout, hs, H, D):
    """A layer's output (T, B, D·H) from its directions' state buffers: a view
    of hs for one direction without lengths."""
    if D == 1:
        return layout.outputs(hs[0], H)
    y = np.empty((layout.T, layout.B, 2 * H), hs[0].dtype)
    layout.outputs(hs[0], H, out=y[..., :H])
    layout.outputs(hs[1], H, reverse=True, out=y[..., H:])
    return y


def _next_inputs(layout, hs, H, D):
    """The next layer's input in each direction's slot order, (slots, D·H)."""
    if D == 1 and not layout.varlen:
        return [hs[0][layout.B:]]           # h_1..h_T: the (T·B, H) input rows, no copy
    y = _outputs(layout, hs, H, D)
    return [layout.slots(y)] + ([layout.slots(y, reverse=True)] if D == 2 else [])


@pooled
def forward(cell, x, weights, init, layout, num_layers, D, H, keep_cache=True):
    """Run the stack. x (T, B, I) validated (its dtype computes); weights[l][d]:
    the cell's validated arrays; init[l][d]: a tuple with one (B, H) array or
    None per state (caller order); layout: fastbp._sequence.Layout;
    keep_cache=False: inference, a layer's buffers are let go as soon as the
    next layer has read them and no cache is built.

    Returns (y (T, B, D·H), finals: one (L·D, B, H) array per state, cache or None)."""
    T, B, _ = x.shape
    dt = x.dtype
    xs = [layout.slots(x)] + ([layout.slots(x, reverse=True)] if D == 2 else [])
    scratch = cell.scratch(layout.sched, H, dt, False, cell.pack_workspace(B, H, dt),
                           layout.reverse_sched if D == 2 else None)
    S = len(cell.spec.state_names)
    runs, finals = [], [[] for _ in range(S)]
    for l in range(num_layers):
        layer = cell.forward_layer(layout, xs, weights[l], init[l], H, scratch)
        # each direction's states after its last step (the initial states when T = 0)
        for k in range(S):
            finals[k] += [layout.final(run["states"][k]) for run in layer]
        if l + 1 < num_layers:
            xs = _next_inputs(layout, [r["states"][0] for r in layer], H, D)
        runs.append(layer if keep_cache else None)
    y = _outputs(layout, [r["states"][0] for r in layer], H, D)
    finals = tuple(np.stack(f) for f in finals)
    if not keep_cache:
        return y, finals, None
    return y, finals, StackCache(x, y, layout, num_layers, D, H, weights, runs, cell)


@pooled
def backward(cache, dy, dfinal, want_dx, overwrite):
    """BPTT through the stack. dy (T, B, D·H) validated or None; dfinal[l][d]:
    a tuple with one (B, H) array or None per state, the gradients of the final
    states (caller order). overwrite: the gradients may reuse the cache's gate
    buffers (the cache is consumed).

    Returns (dx (T, B, I) or None, grads[l][d]: dict by kind, dinit[l][d]: a
    tuple of (B, H) gradients of the initial states, caller order)."""
    if cache.consumed:
        raise RuntimeError(_CONSUMED)
    cell, layout = cache.cell, cache.layout
    L, D, H = cache.num_layers, cache.num_directions, cache.hidden_size
    T, B, I = cache.x.shape
    dt = cache.x.dtype
    if dy is None:
        dys = [None] * D
    elif D == 1:
        dys = [layout.slots(dy)]
    else:
        dys = [layout.slots(dy[..., :H]), layout.slots(dy[..., H:], reverse=True)]
    scratch = cell.scratch(layout.sched, H, dt, True, cell.pack_workspace(B, H, dt),
                           layout.reverse_sched if D == 2 else None)
    grads, dinit = [None] * L, [None] * L
    dx = None
    if overwrite and cache._swap("consumed", True):   # another thread consumed it first
        raise RuntimeError(_CONSUMED)
    for l in reversed(range(L)):
        need_dx = l > 0 or want_dx
        grads[l], dxs, dinit[l] = cell.backward_layer(layout, cache.runs[l], cache.weights[l],
                                                      dys, dfinal[l], need_dx, H, scratch,
                                                      overwrite)
        if l > 0:
            dys = _output_grads(layout, dxs, H, D)
        elif want_dx:
            dx = layout.unslot(dxs[0], I)     # (a view of our own dxs[0] without lengths)
            if D == 2:
                layout.unslot(dxs[1], I, reverse=True, out=dx, accumulate=True)
    return dx, grads, dinit


def _output_grads(layout, dxs, H, D):
    """∂L/∂(the previous layer's outputs) in each direction's slot order, (slots, H),
    from the layer's input gradients (slots, D·H) in each direction's order."""
    if D == 1:
        return [dxs[0]]                     # the input slots are the output slots
    dY = layout.unslot(dxs[0], 2 * H, out=np.empty((layout.T, layout.B, 2 * H), dxs[0].dtype))
    layout.unslot(dxs[1], 2 * H, reverse=True, out=dY, accumulate=True)
    return [layout.slots(dY[..., :H]), layout.slots(dY[..., H:], reverse=True)]


# ---- the public stack functions of every cell ----------------------------------

def stack_forward(cell, x, params, init, num_layers, bidirectional, lengths, reset,
                  keep_cache=True):
    """What ``{rnn,lstm,gru}_stack_forward`` do, for any cell (a
    fastbp._recurrent.EngineCell): validate, run, return (y, finals (one
    (L·D, B, H) array per state), StackCache, or None when not keep_cache).
    init: one (L·D, B, H) array or None per state name."""
    spec = cell.spec
    L, D = stack_config(num_layers, bidirectional)
    x = float_array(x, "x", ndim=3)
    dt = x.dtype
    T, B, I = x.shape
    H = hidden_size(params, spec.gates)
    arrays = read_params(params, spec.layer_kinds, spec.optional_kinds,
                         spec.layer_shape(I, H, D), L, D, dt)
    weights = [[cell.engine_weights(w) for w in layer] for layer in arrays]
    per_state = [split_states(s, name + "0", L, D, B, H, dt)
                 for s, name in zip(init, spec.state_names)]
    init = [[tuple(p[l][d] for p in per_state) for d in range(D)] for l in range(L)]
    layout = Layout(T, B, lengths_array(lengths, T, B), reset_array(reset, T, B))
    return forward(cell, x, weights, init, layout, L, D, H, flag(keep_cache, "keep_cache"))


def stack_backward(spec, dy, dfinal, cache, overwrite=False):
    """What ``{rnn,lstm,gru}_stack_backward`` do: dfinal one (L·D, B, H) array
    or None per state name. Returns a dict: "x", the initial states' gradients
    ("h0", "c0": (L·D, B, H)), then every parameter's under its torch name."""
    name = spec.name
    if not isinstance(cache, StackCache) or cache.cell.spec is not spec:
        raise TypeError(f"cache: expected the cache returned by {name}_stack_forward, got "
                        f"{type(cache).__name__}")
    T, B, _ = cache.x.shape
    L, D, H = cache.num_layers, cache.num_directions, cache.hidden_size
    dt = cache.x.dtype
    if dy is not None:
        dy = float_array(dy, "dy", dtype=dt, shape=(T, B, D * H))
    per_state = [split_states(s, "d" + state + "_n", L, D, B, H, dt)
                 for s, state in zip(dfinal, spec.state_names)]
    dfinal = [[tuple(p[l][d] for p in per_state) for d in range(D)] for l in range(L)]
    dx, grads, dinit = backward(cache, dy, dfinal, True, overwrite)
    out = {"x": dx}
    for k, state in enumerate(spec.state_names):
        out[state + "0"] = np.stack([s[k] for layer in dinit for s in layer])
    for l in range(L):
        for d in range(D):
            for kind in spec.layer_kinds:
                if kind in grads[l][d]:
                    out[param_name(kind, l, d)] = grads[l][d][kind]
    return out
