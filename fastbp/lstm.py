"""Compiled LSTM with backpropagation through time (docs/equations.md §7).

Graves' cell with optional peepholes, in ``torch.nn.LSTM``'s layout: gates
stacked i, f, g, o in ``weight_ih (4H, I)``, ``weight_hh (4H, H)``,
``bias_ih (4H,)``, ``bias_hh (4H,)``. Without peepholes this is exactly one
layer of ``torch.nn.LSTM``: weights move between the two with no reshuffling.

:func:`lstm_forward` and :func:`lstm_backward` have the signatures of
``fastbp.reference.lstm_forward`` / ``lstm_backward``; each runs a whole
sequence in one C call (src_c/lstm_body.h) with the GIL released:

- forward: one GEMM ``X (T·B, I) @ W_ihᵀ`` for the input side of every step,
  then per step one recurrent GEMM for the four gates together (a GEMV at
  batch 1) and one fused elementwise pass (bias, σ, σ, tanh, σ, peepholes,
  ``c_t``, ``h_t``);
- backward: per step one fused pass giving all four gate gradients (and the
  cell-state gradient carried to t − 1, the bias and peephole sums) and one
  recurrent product for ``∂L/∂h_{t−1}``; after the loop ``dW_ih``, ``dW_hh``
  and ``dX`` as one GEMM each over the stacked ``(T·B, ·)`` arrays.

Memory: the forward pass keeps ``h_t`` and ``c_t`` for every step (``(T+1, B,
H)`` each, index 0 the initial state) and the activated gates ``(T, B, 4H)``:
``6·T·B·H`` numbers, what BPTT needs. ``tanh(c_t)`` is recomputed in backward
rather than stored. Backward needs one more ``(T, B, 4H)`` buffer for the gate
gradients unless ``overwrite_cache=True`` lets it reuse the gates' buffer.

Dtype rule: everything is computed in ``x``'s dtype (float32 or float64; other
real inputs are computed in float64); the other arrays are converted to it.

:class:`LSTM` is the model: this layer, a linear readout and a loss, on the
shared :class:`fastbp._seqmodel.SequenceModel`.
"""
import numbers

import numpy as np

from . import _core, _stack
from ._seqmodel import SequenceModel
from . import _sequence
from ._sequence import Layout, ReadOnly, lengths_array, reset_array
from ._validate import flag, float_array

__all__ = ["LSTM", "LSTMCache", "lstm_forward", "lstm_backward", "lstm_stack_forward",
           "lstm_stack_backward"]

PEEPHOLE_NAMES = ("peephole_i", "peephole_f", "peephole_o")
# the arrays of one layer and direction, in torch.nn.LSTM's state-dict order
LAYER_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") + PEEPHOLE_NAMES

# Per-step products on the packed kernel for batches in [lo, hi) (hi None: up
# to _sequence.PACKED_MAX_MACS multiply-adds, B·4H·H), BLAS otherwise: the rule
# and its measurements are in fastbp/_sequence.py. The tests set both paths.
_PACKED_BATCHES = (1, None)


def _pack_workspace(B, H, dtype):
    """Workspace for the packed recurrent product, or None to use BLAS."""
    lo, hi = _PACKED_BATCHES
    if B < lo or (B >= hi if hi is not None else B * 4 * H * H > _sequence.PACKED_MAX_MACS):
        return None
    return np.empty(_core.lstm_pack_size(H, dtype == np.float64), dtype=dtype)


class LSTMCache(ReadOnly):
    """What :func:`lstm_forward` keeps for :func:`lstm_backward`, open to the user.

    Read-only: attributes cannot be assigned, and :func:`lstm_backward` leaves
    the cache unchanged unless ``overwrite_cache=True`` consumes it.

    Attributes (computation dtype, caller's row order; do not modify them
    before backward)
    ----------
    x : (T, B, I)           the inputs (the converted array, not a copy)
    weight_ih : (4H, I), weight_hh : (4H, H)
    peepholes : tuple (p_i, p_f, p_o) of (H,) arrays, or None
    lengths : (B,) int64 or None, reset : (T, B) bool or None, as given
    y, c : (T, B, H)        every ``h_t`` and every cell state ``c_t`` (zero
                            past each row's length)
    h0, c0 : (B, H)         the initial states used (zeros for None)
    gates : (T, B, 4H)      the activated gates ``[i_t, f_t, g_t, o_t]`` stacked
                            along the last axis (gone after a backward pass with
                            ``overwrite_cache=True``)
    tanh_c : (T, B, H)      ``tanh(c_t)``, computed on request (not stored)
    hs, cs                  the kernels' state buffers: ``(T+1, B, H)`` with
                            ``hs[0] = h0``, ``hs[t] = h_t`` for full-length
                            rows; with lengths, src_c/seq.h's slot layout
    """

    __slots__ = ("x", "weight_ih", "weight_hh", "peepholes", "hs", "cs", "_gates", "_peep",
                 "layout", "_xs", "_y", "reset")
    _viewed = ("x", "_xs", "weight_ih", "weight_hh")

    def __init__(self, x, xs, weight_ih, weight_hh, peep, hs, cs, gates, layout, y, reset):
        self._set(x=x, _xs=xs,                # _xs: x in the slot layout (x itself when plain)
                  weight_ih=weight_ih, weight_hh=weight_hh,
                  _peep=peep,                 # (3, H) contiguous, or None
                  hs=hs, cs=cs, _gates=gates, layout=layout, _y=y, reset=reset)
        self._set(peepholes=None if peep is None else (self._peep[0], self._peep[1],
                                                       self._peep[2]))

    @property
    def lengths(self):
        return self.layout.lengths

    @property
    def y(self):
        return self._y

    @property
    def c(self):
        return self.layout.outputs(self.cs.reshape(-1, self.H), self.H)

    @property
    def H(self):
        return self.weight_hh.shape[1]

    @property
    def h0(self):
        return self.layout.to_caller(self.hs.reshape(-1, self.H)[:self.layout.B])

    @property
    def c0(self):
        return self.layout.to_caller(self.cs.reshape(-1, self.H)[:self.layout.B])

    @property
    def tanh_c(self):
        return np.tanh(self.c)

    @property
    def consumed(self):
        """True once a backward pass with ``overwrite_cache=True`` reused the gates' buffer."""
        return self._gates is None

    @property
    def gates(self):
        if self._gates is None:
            raise RuntimeError("cache.gates: this cache was consumed by "
                               "lstm_backward(..., overwrite_cache=True)")
        if self.layout.varlen:
            return self.layout.unslot(self._gates, 4 * self.H)
        return self._gates

    def __repr__(self):
        T, B, I = self.x.shape
        return (f"LSTMCache(T={T}, B={B}, I={I}, H={self.H}, dtype={self.hs.dtype}, "
                f"peepholes={self.peepholes is not None}, lengths={self.lengths is not None}, "
                f"resets={self.layout.sched.events}, consumed={self.consumed})")


def lstm_forward(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, peepholes=None,
                 lengths=None, reset=None):
    """Run an LSTM over a whole sequence (compiled).

    Parameters
    ----------
    x : array, shape (T, B, I)
        Inputs, time-major. Its dtype is the computation dtype.
    h0, c0 : array, shape (B, H), or None
        Initial output and cell state; ``None`` means zeros.
    weight_ih : array, shape (4H, I)
        ``[W_i; W_f; W_g; W_o]``.
    weight_hh : array, shape (4H, H)
        ``[U_i; U_f; U_g; U_o]``.
    bias_ih, bias_hh : array, shape (4H,)
        Their sum is ``[b_i; b_f; b_g; b_o]``.
    peepholes : tuple (p_i, p_f, p_o) of arrays of shape (H,), or None
        Diagonal peephole weights; ``p_i``, ``p_f`` see ``c_{t-1}``, ``p_o``
        sees ``c_t``. None gives exactly ``torch.nn.LSTM``.
    lengths : int array, shape (B,), or None
        Each row's number of valid steps, 0 <= length <= T (None: all T). Rows
        are computed only over their own steps: outputs past a row's length
        are zero, ``h_n``/``c_n`` are the states after the row's last step,
        and the work is proportional to the sum of the lengths.
    reset : bool array, shape (T, B), or None
        Where ``reset[t, b]`` is set (t >= 1), row b starts step t from its
        initial state (``h0[b]``, ``c0[b]``, or zeros) instead of carrying
        ``h_{t-1}``, ``c_{t-1}``; no gradient crosses that step.

    Returns
    -------
    y : ndarray, shape (T, B, H)
        Every ``h_t`` (a view of ``cache.hs`` without lengths).
    (h_n, c_n) : tuple of ndarray, shape (B, H) each
        The states after each row's last step (copies of ``h0``, ``c0`` when T = 0).
    cache : LSTMCache
        For :func:`lstm_backward`; also every ``c_t`` (``cache.c``) and the
        activated gates (``cache.gates``).
    """
    x = float_array(x, "x", ndim=3)
    dt = x.dtype
    T, B, I = x.shape
    weight_hh = float_array(weight_hh, "weight_hh", dtype=dt, ndim=2)
    H4, H = weight_hh.shape
    if H < 1 or H4 != 4 * H:
        raise ValueError(f"weight_hh: expected shape (4H, H) with H >= 1, got {weight_hh.shape}")
    weight_ih = float_array(weight_ih, "weight_ih", dtype=dt, shape=(4 * H, I))
    bias_ih = float_array(bias_ih, "bias_ih", dtype=dt, shape=(4 * H,))
    bias_hh = float_array(bias_hh, "bias_hh", dtype=dt, shape=(4 * H,))
    states = [None if s is None else float_array(s, name, dtype=dt, shape=(B, H))
              for s, name in ((h0, "h0"), (c0, "c0"))]
    peep = _peephole_array(peepholes, H, dt)
    layout = Layout(T, B, lengths_array(lengths, T, B), reset_array(reset, T, B))
    return _forward(x, states[0], states[1], weight_ih, weight_hh, bias_ih + bias_hh, peep,
                    layout)


def _peephole_array(peepholes, H, dt):
    """(p_i, p_f, p_o) -> one C-contiguous (3, H) array, or None."""
    if peepholes is None:
        return None
    if isinstance(peepholes, np.ndarray) or not hasattr(peepholes, "__len__") or len(peepholes) != 3:
        raise TypeError("peepholes: expected None or a tuple (p_i, p_f, p_o) of arrays of "
                        f"shape ({H},), got {type(peepholes).__name__}")
    peep = np.empty((3, H), dtype=dt)
    for k, (p, name) in enumerate(zip(peepholes, ("p_i", "p_f", "p_o"))):
        peep[k] = float_array(p, f"peepholes[{k}] ({name})", dtype=dt, shape=(H,))
    return peep


def _forward(x, h0, c0, weight_ih, weight_hh, bias, peep, layout):
    """lstm_forward on validated arrays: x (T,B,I) sets the dtype, everything
    else C-contiguous in it; h0, c0 (B,H) or None; bias (4H) = b_ih + b_hh;
    peep (3,H) or None; layout: the batch's lengths and resets."""
    T, B, I = x.shape
    H = weight_hh.shape[1]
    dt = x.dtype
    sched = layout.sched
    hs = layout.states(h0, H, dt)
    cs = layout.states(c0, H, dt)
    gates = np.empty((sched.slots, 4 * H), dtype=dt)
    xs = layout.slots(x)
    work = _work(sched, H, dt, backward=False)
    if T and B:
        _core.lstm_forward(hs, cs, gates, work, xs, weight_ih, weight_hh, bias, peep,
                           _pack_workspace(B, H, dt), sched)
    y = layout.outputs(hs, H)
    final = (layout.final(hs), layout.final(cs))
    if not layout.varlen:       # the familiar (T+1, B, H) and (T, B, 4H) views
        hs, cs = hs.reshape(T + 1, B, H), cs.reshape(T + 1, B, H)
        gates = gates.reshape(T, B, 4 * H)
    cache = LSTMCache(x, xs, weight_ih, weight_hh, peep, hs, cs, gates, layout, y, None)
    return cache.y, final, cache


def _work(sched, H, dt, backward):
    """The kernels' reset workspace, or None when there are no resets."""
    n = sched.work_size(H, 2, backward)
    return np.empty(n, dtype=dt) if n else None


def lstm_backward(dy, dh_n, dc_n, cache, overwrite_cache=False):
    """Backpropagation through time for :func:`lstm_forward` (compiled).

    Parameters
    ----------
    dy : array, shape (T, B, H), or None
        ``∂L/∂h_t`` from above at every step (None: zeros); entries past a
        row's length are ignored.
    dh_n, dc_n : array, shape (B, H), or None
        ``∂L/∂h_n`` and ``∂L/∂c_n``, the gradients of the final states
        returned by the forward (None: zeros).
    cache : LSTMCache
        From :func:`lstm_forward` (not a reference dict, not an RNN cache).
    overwrite_cache : bool
        Reuse the cache's gate buffer for the gate gradients instead of
        allocating another ``(T, B, 4H)`` array. The cache is consumed: a second
        backward pass or ``cache.gates`` raises afterwards.

    Returns
    -------
    grads : dict
        ``"x"`` (T, B, I) (zero past each row's length), ``"h0"``, ``"c0"``
        (B, H) (summed over every step that started from them: step 0 and
        the resets), ``"weight_ih"`` (4H, I),
        ``"weight_hh"`` (4H, H), ``"bias_ih"``, ``"bias_hh"`` (4H,) (equal,
        separate arrays); with peepholes also ``"peephole_i"``,
        ``"peephole_f"``, ``"peephole_o"`` (H,). In the cache's dtype.
    """
    if not isinstance(cache, LSTMCache):
        hint = (" (a dict: the NumPy reference's cache goes to fastbp.reference.lstm_backward)"
                if isinstance(cache, dict) else "")
        raise TypeError(f"cache: expected the LSTMCache returned by fastbp.lstm.lstm_forward, "
                        f"got {type(cache).__name__}{hint}")
    if cache.consumed:
        raise RuntimeError(_CONSUMED)
    T, B, _ = cache.x.shape
    H = cache.H
    dt = cache.hs.dtype
    if dy is not None:
        dy = float_array(dy, "dy", dtype=dt, shape=(T, B, H))
    dh = _state_grad(dh_n, "dh_n", B, H, dt)
    dc = _state_grad(dc_n, "dc_n", B, H, dt)
    return _backward(dy, dh, dc, cache, overwrite_cache)


_CONSUMED = ("cache: already consumed by lstm_backward(..., overwrite_cache=True); "
             "run lstm_forward again")


def _state_grad(g, name, B, H, dt):
    """A fresh (B, H) array the kernel may overwrite."""
    if g is None:
        return np.zeros((B, H), dtype=dt)
    g = float_array(g, name, dtype=dt, shape=(B, H))
    return g.copy()


def _backward(dy, dh, dc, cache, overwrite_cache):
    """lstm_backward on validated arrays: dy (T,B,H) or None; dh, dc (B,H)
    fresh arrays (∂L/∂h, ∂L/∂c after each row's last step), replaced by
    ∂L/∂h_0, ∂L/∂c_0."""
    x, W_ih, W_hh, peep, layout = cache.x, cache.weight_ih, cache.weight_hh, cache._peep, cache.layout
    T, B, I = x.shape
    H = W_hh.shape[1]
    dt = x.dtype
    sched = layout.sched
    if overwrite_cache:     # δ_t overwrite the gates in place: no second gate-sized buffer
        gates = cache._swap("_gates", None)
        if gates is None:   # another thread consumed it first
            raise RuntimeError(_CONSUMED)
        gates = gates.reshape(-1, 4 * H)
        dG = gates
    else:
        gates = cache._gates
        if gates is None:
            raise RuntimeError(_CONSUMED)
        gates = gates.reshape(-1, 4 * H)
        dG = np.empty_like(gates)
    dxs = np.empty((sched.slots, I), dtype=dt)
    dW_ih = np.zeros((4 * H, I), dtype=dt)
    dW_hh = np.zeros((4 * H, H), dtype=dt)
    db = np.zeros(4 * H, dtype=dt)
    dpeep = None if peep is None else np.zeros((3, H), dtype=dt)
    dys = None if dy is None else layout.slots(dy)
    dh, dc = layout.to_sorted(dh), layout.to_sorted(dc)
    hs, cs = cache.hs.reshape(-1, H), cache.cs.reshape(-1, H)
    if sched.has_resets and not overwrite_cache:
        # the kernel swaps the reset rows of hs and cs in place: a call that
        # leaves the cache intact (and may share it between threads) passes copies
        hs, cs = hs.copy(), cs.copy()
    if T and B:
        _core.lstm_backward(dG, dxs, dW_ih, dW_hh, db, dpeep, dh, dc, _work(sched, H, dt, True),
                            gates, dys, hs, cs,
                            cache._xs, W_ih, W_hh, peep, _pack_workspace(B, H, dt), sched)
    else:
        dxs.fill(0)
    grads = {"x": layout.unslot(dxs, I), "h0": layout.to_caller(dh), "c0": layout.to_caller(dc),
             "weight_ih": dW_ih, "weight_hh": dW_hh, "bias_ih": db, "bias_hh": db.copy()}
    if peep is not None:
        grads.update(zip(PEEPHOLE_NAMES, dpeep))
    return grads


# ---- stacked and bidirectional layers (fastbp._stack) ------------------------

class _LSTMCell:
    """The LSTM's per-layer calls for fastbp._stack: both directions of a layer
    in one compiled call (src_c/lstm.h fbp_lstm_forward_dirs/_backward_dirs)."""

    cells = 2                      # state arrays (h, c): sizes the reset workspace
    state_buffers = ("hs", "cs")

    @staticmethod
    def pack_workspace(B, H, dt):
        return _pack_workspace(B, H, dt)

    @staticmethod
    def forward_layer(layout, xs, weights, init, H, work, pack):
        """xs: each direction's input (slots, I) in its own order; weights: each
        direction's dict (with "bias" = b_ih + b_hh and "peep" (3, H) or None);
        init: each direction's (h0, c0). Returns each direction's buffers."""
        dt = xs[0].dtype
        runs, dirs = [], []
        for x, w, (h0, c0) in zip(xs, weights, init):
            run = {"hs": layout.states(h0, H, dt), "cs": layout.states(c0, H, dt),
                   "gates": np.empty((layout.sched.slots, 4 * H), dt), "x": x}
            dirs.append((run["hs"], run["cs"], run["gates"], x, w["weight_ih"], w["weight_hh"],
                         w["bias"], w["peep"]))
            runs.append(run)
        _core.lstm_forward_dirs(work, tuple(dirs), pack, layout.sched,
                                layout.reverse_sched if len(dirs) == 2 else None)
        return runs

    @staticmethod
    def backward_layer(layout, runs, weights, dys, dfinal, want_dx, H, work, pack, overwrite):
        """dys: each direction's ∂L/∂h_t (slots, H) or None; dfinal: each
        direction's (∂L/∂h_n, ∂L/∂c_n) (B, H) or None, caller order. Returns
        (grads by kind, dx (slots, I) or None, (∂L/∂h_0, ∂L/∂c_0) caller order)
        for each direction."""
        dt = runs[0]["hs"].dtype
        B, slots = layout.B, layout.sched.slots
        dirs, grads, dxs, dstates = [], [], [], []
        # the kernels swap the reset rows of hs and cs in place: unless the
        # caller gave the cache up (overwrite), they get copies
        private = not overwrite and _stack.has_resets(layout, len(runs))
        for run, w, dy, (dh_n, dc_n) in zip(runs, weights, dys, dfinal):
            I = run["x"].shape[1]
            gates = run["gates"]
            dG = gates if overwrite else np.empty_like(gates)   # δ_t over the gates, in place
            dx = np.empty((slots, I), dt) if want_dx else None
            g = {"weight_ih": np.zeros((4 * H, I), dt), "weight_hh": np.zeros((4 * H, H), dt),
                 "bias_ih": np.zeros(4 * H, dt)}
            dpeep = None if w["peep"] is None else np.zeros((3, H), dt)
            dh = np.zeros((B, H), dt) if dh_n is None else layout.to_sorted(dh_n)
            dc = np.zeros((B, H), dt) if dc_n is None else layout.to_sorted(dc_n)
            hs, cs = (run["hs"].copy(), run["cs"].copy()) if private else (run["hs"], run["cs"])
            dirs.append((dG, dx, g["weight_ih"], g["weight_hh"], g["bias_ih"], dpeep, dh, dc,
                         gates, dy, hs, cs, run["x"], w["weight_ih"],
                         w["weight_hh"], w["peep"]))
            if dpeep is not None:
                g.update(zip(PEEPHOLE_NAMES, dpeep))
            grads.append(g)
            dxs.append(dx)
            dstates.append((dh, dc))
        _core.lstm_backward_dirs(work, tuple(dirs), pack, layout.sched,
                                 layout.reverse_sched if len(dirs) == 2 else None)
        for g in grads:
            g["bias_hh"] = g["bias_ih"].copy()          # equal, as separate arrays
        dstates = [(layout.to_caller(dh), layout.to_caller(dc)) for dh, dc in dstates]
        return grads, dxs, dstates


_LSTM_CELL = _LSTMCell()


def _layer_weights(arrays):
    """A layer direction's validated arrays by kind -> the cell's dict (adds the
    summed bias and the (3, H) peepholes or None)."""
    w = dict(arrays)
    w["bias"] = w["bias_ih"] + w["bias_hh"]
    w["peep"] = (np.stack([w[name] for name in PEEPHOLE_NAMES]) if PEEPHOLE_NAMES[0] in w
                 else None)
    return w


def _lstm_shape(I, H, D):
    def shape(kind, layer):
        if kind in PEEPHOLE_NAMES:
            return (H,)
        if kind == "weight_ih":
            return (4 * H, _stack.layer_input_size(I, H, layer, D))
        return (4 * H, H) if kind == "weight_hh" else (4 * H,)
    return shape


def lstm_stack_forward(x, params, h0=None, c0=None, num_layers=1, bidirectional=False,
                       lengths=None, reset=None):
    """Stacked, optionally bidirectional LSTM: ``torch.nn.LSTM(num_layers=...,
    bidirectional=...)`` (time-major, no dropout), compiled.

    Parameters
    ----------
    x : array, shape (T, B, I)
        Inputs; its dtype is the computation dtype.
    params : mapping of str to array
        torch.nn.LSTM's state-dict names (a ``torch.nn.LSTM.state_dict()``
        works as it is): for layer k and, when bidirectional, suffix
        ``_reverse``: ``weight_ih_l{k}`` (4H, I_k) with I_0 = I and I_k = D·H
        above, ``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}``
        (4H,); optionally peepholes ``peephole_i_l{k}``, ``peephole_f_l{k}``,
        ``peephole_o_l{k}`` (H,) for every layer and direction.
    h0, c0 : array, shape (num_layers·D, B, H), or None
        Initial states, index l·D + d (l0 forward, l0 reverse, l1 forward, ...),
        D = 2 directions when bidirectional else 1; None means zeros.
    num_layers : int
    bidirectional : bool
    lengths : int array (B,) or None
        Each row's valid steps: the forward direction runs times 0 … L_b − 1,
        the reverse direction L_b − 1 … 0 (torch's packed sequences); outputs
        past a row's length are zero.
    reset : bool array (T, B) or None
        ``reset[t, b]`` cuts row b before step t: the pieces run as separate
        sequences through every layer and both directions, each from h0, c0.

    Returns
    -------
    y : ndarray, shape (T, B, D·H)
        The top layer's outputs, ``[forward, reverse]`` on the last axis.
    (h_n, c_n) : ndarrays, shape (num_layers·D, B, H)
        Each layer and direction's state after its last step (for a reverse
        direction: after time 0).
    cache : fastbp._stack.StackCache
        For :func:`lstm_stack_backward`.
    """
    L, D = _stack.stack_config(num_layers, bidirectional)
    x = float_array(x, "x", ndim=3)
    dt = x.dtype
    T, B, I = x.shape
    H = _stack.hidden_size(params, 4)
    weights = _stack.read_params(params, LAYER_KINDS, PEEPHOLE_NAMES, _lstm_shape(I, H, D), L, D,
                                 dt)
    weights = [[_layer_weights(w) for w in layer] for layer in weights]
    hs0 = _stack.split_states(h0, "h0", L, D, B, H, dt)
    cs0 = _stack.split_states(c0, "c0", L, D, B, H, dt)
    init = [list(zip(h, c)) for h, c in zip(hs0, cs0)]
    layout = Layout(T, B, lengths_array(lengths, T, B), reset_array(reset, T, B))
    y, finals, cache = _stack.forward(_LSTM_CELL, x, weights, init, layout, L, D, H)
    return y, finals, cache


def lstm_stack_backward(dy, dh_n, dc_n, cache, overwrite_cache=False):
    """Backpropagation through time for :func:`lstm_stack_forward`.

    dy : (T, B, D·H) or None (∂L/∂y; entries past a row's length are ignored);
    dh_n, dc_n : (num_layers·D, B, H) or None; cache : from lstm_stack_forward;
    overwrite_cache : let the gate gradients reuse the cache's gate buffers
    (the cache is consumed).

    Returns a dict: ``"x"`` (T, B, I), ``"h0"``, ``"c0"`` (num_layers·D, B, H),
    then every parameter's gradient under its torch name (as in ``params``).
    """
    cache = _stack_cache(cache, _LSTMCell, "lstm_stack_forward")
    T, B, _ = cache.x.shape
    L, D, H = cache.num_layers, cache.num_directions, cache.hidden_size
    dt = cache.x.dtype
    if dy is not None:
        dy = float_array(dy, "dy", dtype=dt, shape=(T, B, D * H))
    dhs = _stack.split_states(dh_n, "dh_n", L, D, B, H, dt)
    dcs = _stack.split_states(dc_n, "dc_n", L, D, B, H, dt)
    dfinal = [list(zip(h, c)) for h, c in zip(dhs, dcs)]
    dx, grads, dinit = _stack.backward(cache, dy, dfinal, True, overwrite_cache)
    out = {"x": dx,
           "h0": np.stack([s[0] for layer in dinit for s in layer]),
           "c0": np.stack([s[1] for layer in dinit for s in layer])}
    for l in range(L):
        for d in range(D):
            for kind in LAYER_KINDS:
                if kind in grads[l][d]:
                    out[_stack.param_name(kind, l, d)] = grads[l][d][kind]
    return out


def _stack_cache(cache, cell_type, forward_name):
    if not isinstance(cache, _stack.StackCache) or not isinstance(cache.cell, cell_type):
        raise TypeError(f"cache: expected the cache returned by {forward_name}, got "
                        f"{type(cache).__name__}")
    return cache


# ---- the model ---------------------------------------------------------------

class LSTM(SequenceModel):
    """An LSTM (compiled forward and BPTT; stacked and bidirectional on request)
    with a linear readout and a loss.

    ``O_t = h_t W_outᵀ + b_out`` at every step (or at the last step only with
    ``many_to_one=True``), the loss averaged over the T·B rows (B rows), and L2
    on the weight matrices; see :class:`fastbp._seqmodel.SequenceModel`.

    Parameters
    ----------
    input_size, hidden_size, output_size : int
    peepholes : bool
        Add Graves' diagonal peephole weights ``peephole_i``, ``peephole_f``,
        ``peephole_o`` (H,) to every layer and direction. Without them the
        layers are exactly ``torch.nn.LSTM`` and load into one with no reshuffling.
    loss : {"mse", "cross_entropy"}
    many_to_one : bool
        Read out (and score) only the final state; targets are then (B, O) or
        labels (B,). Bidirectional: the readout reads ``[h_n forward, h_n
        reverse]`` of the top layer, the forward direction after each row's last
        step and the reverse direction after its whole pass (at time 0).
    l2 : float
        λ of ``(λ/2) Σ ‖W‖²`` over every weight matrix (biases, peepholes not).
    forget_bias : float or None
        Initial total bias of the forget gate (``bias_ih + bias_hh`` on its
        block, every layer and direction; 1.0 by default, as Jozefowicz et al.
        2015 advise, so the cell remembers from the start). None keeps torch's
        uniform initialisation.
    dtype : {"float32", "float64"}
    seed : int or None
        Seeds the initialisation: ``U(−1/√H, 1/√H)`` for every layer array, as
        ``torch.nn.LSTM`` does, and ``U(−1/√F, 1/√F)`` for the readout (F = D·H
        features), as ``torch.nn.Linear`` does.
    mse_form : {"sum", "half_mean"}
    num_layers : int
        Stacked layers: layer l > 0 reads layer l − 1's outputs (no dropout
        between layers).
    bidirectional : bool
        Each layer also runs a reverse direction over each row's own valid
        steps (times L_b − 1 … 0), in the same compiled call; a layer's output
        is ``[forward, reverse]`` (D·H wide, D = 2).

    Parameters are in ``model.params``: ``weight_ih`` (4H, I), ``weight_hh``
    (4H, H), ``bias_ih``, ``bias_hh`` (4H,), with peepholes ``peephole_i``,
    ``peephole_f``, ``peephole_o`` (H,) for layer 0's forward direction, then
    the same with torch's suffixes for every other layer and direction in
    torch's order (``weight_ih_l0_reverse``, ..., ``weight_ih_l1`` (4H, D·H),
    ...), then ``weight_out`` (O, D·H), ``bias_out`` (O,). The state dict
    (:meth:`state_dict`) uses torch.nn.LSTM's names throughout (``weight_ih_l0``, ...).

    States: ``h0``, ``c0`` and the returned ``(h_n, c_n)`` are (B, H) for one
    layer in one direction, else (num_layers·D, B, H) as in torch (index l·D + d).
    """

    _state_names = ("h", "c")
    # the per-step product rule of this cell (tbptt.Stream asks the model for it)
    _pack_workspace = staticmethod(_pack_workspace)

    def __init__(self, input_size, hidden_size, output_size, peepholes=False, loss="mse",
                 many_to_one=False, l2=0.0, forget_bias=1.0, dtype="float64", seed=None,
                 mse_form="sum", num_layers=1, bidirectional=False):
        self.peepholes = flag(peepholes, "peepholes")
        if forget_bias is not None and (isinstance(forget_bias, bool) or not isinstance(
                forget_bias, numbers.Real) or not np.isfinite(forget_bias)):
            raise ValueError(f"forget_bias: expected a finite number or None, got {forget_bias!r}")
        self.forget_bias = None if forget_bias is None else float(forget_bias)
        super().__init__(input_size, hidden_size, output_size, loss=loss, many_to_one=many_to_one,
                         l2=l2, dtype=dtype, seed=seed, mse_form=mse_form, num_layers=num_layers,
                         bidirectional=bidirectional)

    def _init_layer(self, rng):
        H, D = self.hidden_size, self.num_directions
        bound = 1.0 / np.sqrt(H)
        for l in range(self.num_layers):
            I = _stack.layer_input_size(self.input_size, H, l, D)
            for d in range(D):
                def name(kind):
                    return _stack.model_param_name(kind, l, d)
                for kind, shape in (("weight_ih", (4 * H, I)), ("weight_hh", (4 * H, H)),
                                    ("bias_ih", (4 * H,)), ("bias_hh", (4 * H,))):
                    self._params[name(kind)] = rng.uniform(-bound, bound, shape).astype(self.dtype)
                if self.forget_bias is not None:
                    self._params[name("bias_ih")][H:2 * H] = self.forget_bias
                    self._params[name("bias_hh")][H:2 * H] = 0
                if self.peepholes:
                    for kind in PEEPHOLE_NAMES:
                        self._params[name(kind)] = rng.uniform(-bound, bound, H).astype(self.dtype)

    def _layer_forward(self, X, states, layout):
        weights = [[_layer_weights(w) for w in layer] for layer in self._layer_params(LAYER_KINDS)]
        y, finals, cache = _stack.forward(_LSTM_CELL, X, weights, self._split_states(states),
                                          layout, self.num_layers, self.num_directions,
                                          self.hidden_size)
        return y, self._join_states(finals), cache

    def _layer_backward(self, dHs, dfinal, cache):
        # the model owns this cache: the gate gradients may overwrite the gates
        _, grads, _ = _stack.backward(cache, dHs, self._split_states(dfinal), want_dx=False,
                                      overwrite=True)
        return self._layer_grads(grads)

    # -- public API -----------------------------------------------------------
    def forward(self, X, h0=None, c0=None, lengths=None, reset=None):
        """Readout outputs and the final states.

        X (T, B, I); h0, c0 (B, H), or (num_layers·D, B, H) for a stack, or
        None (zeros); lengths (B,) and reset (T, B) as for
        :func:`lstm_stack_forward`. Returns ``(outputs, (h_n, c_n))``: outputs
        (T, B, O) (zero past each row's length), or (B, O) read from each row's
        final state when many_to_one, before the softmax of a cross-entropy
        model.
        """
        return self._outputs(X, (h0, c0), lengths, reset)

    def predict(self, X, h0=None, c0=None, lengths=None, reset=None):
        """Class labels (argmax) for cross-entropy models, outputs for mse."""
        return self._predict_from(self.forward(X, h0, c0, lengths, reset)[0])

    def loss_and_grad(self, X, Y, h0=None, c0=None, lengths=None, reset=None):
        """Loss, gradients and final states for one sequence chunk.

        X (T, B, I); Y: targets (T, B, O) / labels (T, B), or (B, O) / (B,)
        when many_to_one; h0, c0 (B, H), or (num_layers·D, B, H) for a stack,
        or None (zeros). Returns ``(loss, grads, (h_n, c_n))``: grads by
        parameter name (same order as ``params``); pass ``(h_n, c_n)`` as the
        next chunk's ``h0, c0`` to carry state across chunks (truncated BPTT;
        this makes no sense for a reverse direction, whose final state is the
        one at the chunk's start).

        lengths (B,) int: each sequence's valid steps (the loss averages over
        those only; Y past a row's length is not read); reset (T, B) bool:
        rows that restart from h0, c0 (or zeros) at a step (every layer and
        direction: the pieces are separate sequences). See
        :func:`lstm_stack_forward`.
        """
        return self._loss_and_grad(X, Y, (h0, c0), lengths, reset)
