"""Compiled Elman RNN: the whole sequence forward in one call, the whole BPTT in one.

Same signatures and semantics as :mod:`fastbp.reference.rnn` (docs/equations.md §6,
``torch.nn.RNN``'s layout, one layer, one direction, time-major)::

    a_t = x_t W_ihᵀ + h_{t−1} W_hhᵀ + b_ih + b_hh,    h_t = φ(a_t),   φ ∈ {tanh, relu, identity}

How it computes (src_c/rnn_body.h): one GEMM ``X(T·B,I) W_ihᵀ`` for the input
side of every step, then per step only the recurrent product and one fused
pass for the biases and φ; backward, per step one fused pass
``δ_t = ∂L/∂h_t ⊙ φ'(a_t)`` (accumulating the bias gradient) and one recurrent
product ``δ_t W_hh``, then ``dW_ih``, ``dW_hh`` and ``dX`` as one GEMM each over
the stacked ``(T·B, ·)`` arrays. The time loops run in C with the GIL
released. The recurrent products run on a copy of W_hh packed once per call
(a register-blocked kernel; a matrix-vector kernel at batch 1) or, when they
are large, through BLAS: see PACKED_MAX_MACS.

Memory: the forward keeps one state buffer ``hs`` of shape ``(T+1, B, H)``,
``hs[0] = h0``; ``y = hs[1:]`` and the previous states ``hs[:-1]`` are views of
it. The backward allocates its outputs and a ``(T, B, H)`` buffer for ``δ``:
about ``2·T·B·H`` floats in all, besides ``x``, ``dx`` and the ``H²``-sized
packed weight.

Dtype rule: everything is computed in ``x``'s dtype (float32 or float64;
other real dtypes become float64); the other arrays are converted to it.
"""

import numpy as np

from . import _core, _stack
from ._seqmodel import SequenceModel
from . import _sequence
from ._sequence import Layout, ReadOnly, lengths_array, reset_array
from ._validate import choice, float_array

__all__ = ["RNN_NONLINEARITIES", "RNNCache", "rnn_forward", "rnn_backward", "RNN",
           "rnn_stack_forward", "rnn_stack_backward"]

RNN_NONLINEARITIES = ("tanh", "relu", "identity")
# the arrays of one layer and direction, in torch.nn.RNN's state-dict order
LAYER_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

# Per-step products on the packed kernel up to PACKED_MAX_MACS (B·H² per step),
# BLAS beyond: the rule and its measurements are in fastbp/_sequence.py.
PACKED_MAX_MACS = _sequence.PACKED_MAX_MACS


def _pack_workspace(B, H, dtype):
    """The packing workspace for the kernels, or None to use BLAS per step."""
    if B * H * H > PACKED_MAX_MACS:
        return None
    return np.empty(_core.rnn_pack_size(H, dtype == np.float64), dtype)


class RNNCache(ReadOnly):
    """What :func:`rnn_backward` needs from :func:`rnn_forward` (read-only: its
    attributes cannot be assigned, and :func:`rnn_backward` never changes it).

    Attributes
    ----------
    x : ndarray, shape (T, B, I)
        The input (a view of the caller's array when it was already
        C-contiguous in the computation dtype: do not modify it before the
        backward).
    hs : ndarray
        The kernels' state buffer: shape (T+1, B, H) with ``hs[0] = h0``
        (zeros when None was given), ``hs[t] = h_t`` for full-length rows;
        with lengths, src_c/seq.h's slot layout.
    y, h0, h_n : ndarray
        Every output (T, B, H) (zero past each row's length), the initial
        state used and each row's final state (B, H), in the caller's order.
    lengths : (B,) int64 or None
    weight_ih, weight_hh : ndarray
        The weights used (views of the caller's arrays where possible:
        update them only after the backward, as an optimizer step does).
    nonlinearity : str
    """

    __slots__ = ("x", "hs", "weight_ih", "weight_hh", "nonlinearity", "act",
                 "layout", "_xs", "_y")
    _viewed = ("x", "_xs", "weight_ih", "weight_hh")

    def __init__(self, x, xs, hs, weight_ih, weight_hh, nonlinearity, act, layout, y):
        self._set(x=x, _xs=xs,            # _xs: x in the slot layout (x itself when plain)
                  hs=hs, weight_ih=weight_ih, weight_hh=weight_hh, nonlinearity=nonlinearity,
                  act=act, layout=layout, _y=y)

    @property
    def lengths(self):
        return self.layout.lengths

    @property
    def y(self):
        """Every state ``h_1..h_T``, shape (T, B, H) (a view of ``hs`` without lengths)."""
        return self._y

    @property
    def h0(self):
        """The initial state used, shape (B, H)."""
        return self.layout.to_caller(self._states()[:self.layout.B])

    @property
    def h_n(self):
        """Each row's final state, shape (B, H) (``h0`` when T = 0)."""
        return self.layout.final(self._states())

    @property
    def dtype(self):
        return self.hs.dtype

    def _states(self):
        return self.hs.reshape(-1, self.weight_hh.shape[0])

    def __repr__(self):
        T, B, I = self.x.shape
        return (f"RNNCache(T={T}, B={B}, I={I}, H={self.weight_hh.shape[0]}, "
                f"nonlinearity={self.nonlinearity!r}, dtype={self.hs.dtype}, "
                f"lengths={self.lengths is not None}, resets={self.layout.sched.events})")


def _act_code(nonlinearity):
    choice(nonlinearity, "nonlinearity", RNN_NONLINEARITIES)
    return _core.ACTIVATION_CODES[nonlinearity]


def rnn_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity="tanh",
                lengths=None, reset=None):
    """Run an Elman RNN over a whole sequence (compiled).

    Parameters
    ----------
    x : array_like, shape (T, B, I)
        Inputs, time-major. Its dtype is the computation dtype.
    h0 : array_like, shape (B, H), or None
        Initial state; None means zeros.
    weight_ih : array_like, shape (H, I)
    weight_hh : array_like, shape (H, H)
    bias_ih, bias_hh : array_like, shape (H,)
    nonlinearity : {"tanh", "relu", "identity"}
    lengths : int array, shape (B,), or None
        Each row's number of valid steps, 0 <= length <= T (None: all T). Rows
        are computed only over their own steps: outputs past a row's length
        are zero, ``h_n`` is the state after the row's last step, and the
        work is proportional to the sum of the lengths.
    reset : bool array, shape (T, B), or None
        Where ``reset[t, b]`` is set (t >= 1), row b starts step t from its
        initial state (``h0[b]`` or zeros) instead of ``h_{t-1}``; no
        gradient crosses that step.

    Returns
    -------
    y : ndarray, shape (T, B, H)
        ``h_1..h_T``: without lengths a view of ``cache.hs``, so modifying it
        changes what the backward sees.
    h_n : ndarray, shape (B, H)
        Each row's state after its last step (a copy of ``h0`` when T = 0); a
        copy, safe to keep and to pass as the next chunk's ``h0``.
    cache : RNNCache
        For :func:`rnn_backward`.
    """
    act = _act_code(nonlinearity)
    x = float_array(x, "x", ndim=3)
    dt = x.dtype
    T, B, I = x.shape
    weight_ih = float_array(weight_ih, "weight_ih", dtype=dt, ndim=2, shape=(None, I))
    H = weight_ih.shape[0]
    if H == 0:
        raise ValueError("weight_ih: expected shape (H, I) with H >= 1, got (0, %d)" % I)
    weight_hh = float_array(weight_hh, "weight_hh", dtype=dt, ndim=2, shape=(H, H))
    bias_ih = float_array(bias_ih, "bias_ih", dtype=dt, ndim=1, shape=(H,))
    bias_hh = float_array(bias_hh, "bias_hh", dtype=dt, ndim=1, shape=(H,))
    h0 = None if h0 is None else float_array(h0, "h0", dtype=dt, ndim=2, shape=(B, H))
    layout = Layout(T, B, lengths_array(lengths, T, B), reset_array(reset, T, B))
    cache = _forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity, act, layout)
    return cache.y, cache.h_n, cache


def _forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity, act, layout):
    """rnn_forward on validated arrays (C-contiguous, one dtype, shapes checked)."""
    T, B, _ = x.shape
    H = weight_hh.shape[0]
    dt = x.dtype
    sched = layout.sched
    hs = layout.states(h0, H, dt)
    # with lengths the input side cannot wait in hs: its blocks are larger
    pre = np.empty((sched.slots, H), dt) if layout.varlen else None
    xs = layout.slots(x)
    pack = _pack_workspace(B, H, dt) if T else None
    if T and B:
        _core.rnn_forward(hs, pre, _work(sched, H, dt, False), xs, weight_ih, weight_hh,
                          bias_ih, bias_hh, pack, sched, act)
    y = layout.outputs(hs, H)
    if not layout.varlen:
        hs = hs.reshape(T + 1, B, H)
    return RNNCache(x, xs, hs, weight_ih, weight_hh, nonlinearity, act, layout, y)


def _work(sched, H, dt, backward):
    """The kernels' reset workspace, or None when there are no resets."""
    n = sched.work_size(H, 1, backward)
    return np.empty(n, dtype=dt) if n else None


def rnn_backward(dy, dh_n, cache):
    """Backpropagation through time for :func:`rnn_forward` (compiled).

    Parameters
    ----------
    dy : array_like, shape (T, B, H), or None
        ``∂L/∂h_t`` from above at every step (None: zeros).
    dh_n : array_like, shape (B, H), or None
        Extra ``∂L/∂h_n`` from the final state (None: zeros). ``dy`` entries
        past a row's length are ignored.
    cache : RNNCache
        From :func:`rnn_forward` (not a reference dict, not an LSTM cache).

    Returns
    -------
    grads : dict
        ``"x"`` (T, B, I), ``"h0"`` (B, H), ``"weight_ih"`` (H, I),
        ``"weight_hh"`` (H, H), ``"bias_ih"`` (H,), ``"bias_hh"`` (H,): the two
        bias gradients are equal, as separate arrays.
    """
    if not isinstance(cache, RNNCache):
        hint = (" (a dict is the cache of fastbp.reference.rnn_forward)"
                if isinstance(cache, dict) else "")
        raise TypeError("cache: expected the RNNCache returned by fastbp.rnn.rnn_forward, "
                        f"got {type(cache).__name__}{hint}")
    T, B, _ = cache.x.shape
    H = cache.weight_hh.shape[0]
    dt = cache.hs.dtype
    if dy is not None:
        dy = float_array(dy, "dy", dtype=dt, ndim=3, shape=(T, B, H))
    if dh_n is not None:
        dh_n = float_array(dh_n, "dh_n", dtype=dt, ndim=2, shape=(B, H))
    g = _backward(cache, dy, dh_n, want_dx=True)
    g["bias_hh"] = g["bias_ih"].copy()
    return g


def _backward(cache, dy, dh_n, want_dx):
    """rnn_backward on validated arrays; "bias_ih" holds the one bias gradient,
    there is no "bias_hh"; "x" is None unless want_dx."""
    x, layout = cache.x, cache.layout
    T, B, I = x.shape
    H = cache.weight_hh.shape[0]
    dt = cache.hs.dtype
    sched = layout.sched
    dW_ih = np.zeros((H, I), dt)
    dW_hh = np.zeros((H, H), dt)
    db = np.zeros(H, dt)
    dx = None
    if T and B:
        dxs = np.empty((sched.slots, I), dt) if want_dx else None
        dh0 = np.empty((B, H), dt)
        delta = np.empty((sched.slots, H), dt)
        # the kernel swaps the reset rows of hs in place for its dW_hh GEMM: a
        # private copy leaves the cache untouched, so threads may share it
        hs = cache._states()
        if sched.has_resets:
            hs = hs.copy()
        _core.rnn_backward(dh0, dW_ih, dW_hh, db, delta, dxs, _work(sched, H, dt, True),
                           None if dy is None else layout.slots(dy),
                           None if dh_n is None else layout.to_sorted(dh_n),
                           hs, cache._xs, cache.weight_ih, cache.weight_hh,
                           _pack_workspace(B, H, dt), sched, cache.act)
        dh0 = layout.to_caller(dh0)
        if want_dx:
            dx = layout.unslot(dxs, I)
    else:   # no step: ∂L/∂h_0 = ∂L/∂h_T, every other gradient is zero (or empty)
        dh0 = np.zeros((B, H), dt) if dh_n is None else dh_n.copy()
        if want_dx:
            dx = np.zeros((T, B, I), dt)
    return {"x": dx, "h0": dh0, "weight_ih": dW_ih, "weight_hh": dW_hh, "bias_ih": db}


# ---- stacked and bidirectional layers (fastbp._stack) ------------------------

class _RNNCell:
    """The Elman RNN's per-layer calls for fastbp._stack: both directions of a
    layer in one compiled call (src_c/rnn.h fbp_rnn_forward_dirs/_backward_dirs)."""

    cells = 1
    state_buffers = ("hs",)

    def __init__(self, nonlinearity):
        self.act = _act_code(nonlinearity)
        self.nonlinearity = nonlinearity

    @staticmethod
    def pack_workspace(B, H, dt):
        return _pack_workspace(B, H, dt)

    def forward_layer(self, layout, xs, weights, init, H, work, pack):
        """xs: each direction's input (slots, I) in its own order; weights: each
        direction's arrays by kind; init: each direction's (h0,). Returns each
        direction's buffers."""
        dt = xs[0].dtype
        runs, dirs = [], []
        for x, w, (h0,) in zip(xs, weights, init):
            run = {"hs": layout.states(h0, H, dt), "x": x}
            # with lengths the input side cannot wait in hs: its blocks are larger
            pre = np.empty((layout.sched.slots, H), dt) if layout.varlen else None
            dirs.append((run["hs"], pre, x, w["weight_ih"], w["weight_hh"], w["bias_ih"],
                         w["bias_hh"]))
            runs.append(run)
        _core.rnn_forward_dirs(work, tuple(dirs), pack, layout.sched, self.act,
                               layout.reverse_sched if len(dirs) == 2 else None)
        return runs

    def backward_layer(self, layout, runs, weights, dys, dfinal, want_dx, H, work, pack,
                       overwrite):
        """dys: each direction's ∂L/∂h_t (slots, H) or None; dfinal: each
        direction's (∂L/∂h_n,) (B, H) or None, caller order. Returns (grads by
        kind, dx (slots, I) or None, (∂L/∂h_0,) caller order) per direction."""
        dt = runs[0]["hs"].dtype
        B, slots = layout.B, layout.sched.slots
        dirs, grads, dxs, dstates = [], [], [], []
        # the kernels swap the reset rows of hs in place for the dW_hh GEMM:
        # unless the caller gave the cache up (overwrite), they get a copy
        private = not overwrite and _stack.has_resets(layout, len(runs))
        for run, w, dy, (dh_n,) in zip(runs, weights, dys, dfinal):
            I = run["x"].shape[1]
            dx = np.empty((slots, I), dt) if want_dx else None
            g = {"weight_ih": np.zeros((H, I), dt), "weight_hh": np.zeros((H, H), dt),
                 "bias_ih": np.zeros(H, dt)}
            dh_n = None if dh_n is None else layout.to_sorted(dh_n)
            dh0 = np.empty((B, H), dt)
            if layout.T == 0:      # no step: ∂L/∂h_0 = ∂L/∂h_n
                dh0[...] = 0 if dh_n is None else dh_n
            dirs.append((dh0, g["weight_ih"], g["weight_hh"], g["bias_ih"],
                         np.empty((slots, H), dt), dx, dy, dh_n,
                         run["hs"].copy() if private else run["hs"], run["x"],
                         w["weight_ih"], w["weight_hh"]))
            grads.append(g)
            dxs.append(dx)
            dstates.append(dh0)
        if layout.T:
            _core.rnn_backward_dirs(work, tuple(dirs), pack, layout.sched, self.act,
                                    layout.reverse_sched if len(dirs) == 2 else None)
        for g in grads:
            g["bias_hh"] = g["bias_ih"].copy()          # equal, as separate arrays
        return grads, dxs, [(layout.to_caller(dh0),) for dh0 in dstates]


def _rnn_shape(I, H, D):
    def shape(kind, layer):
        if kind == "weight_ih":
            return (H, _stack.layer_input_size(I, H, layer, D))
        return (H, H) if kind == "weight_hh" else (H,)
    return shape


def rnn_stack_forward(x, params, h0=None, num_layers=1, bidirectional=False,
                      nonlinearity="tanh", lengths=None, reset=None):
    """Stacked, optionally bidirectional Elman RNN: ``torch.nn.RNN(num_layers=...,
    bidirectional=..., nonlinearity=...)`` (time-major, no dropout), compiled.

    Parameters
    ----------
    x : array, shape (T, B, I)
        Inputs; its dtype is the computation dtype.
    params : mapping of str to array
        torch.nn.RNN's state-dict names (``torch.nn.RNN.state_dict()`` works as
        it is): for layer k and, when bidirectional, suffix ``_reverse``:
        ``weight_ih_l{k}`` (H, I_k) with I_0 = I and I_k = D·H above,
        ``weight_hh_l{k}`` (H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}`` (H,).
    h0 : array, shape (num_layers·D, B, H), or None
        Initial states, index l·D + d (l0 forward, l0 reverse, l1 forward, ...);
        None means zeros.
    num_layers, bidirectional, nonlinearity : as for torch.nn.RNN ("identity" too).
    lengths, reset : as for :func:`fastbp.lstm.lstm_stack_forward`.

    Returns
    -------
    y : ndarray, shape (T, B, D·H)
        The top layer's outputs, ``[forward, reverse]`` on the last axis.
    h_n : ndarray, shape (num_layers·D, B, H)
        Each layer and direction's state after its last step (reverse: after time 0).
    cache : fastbp._stack.StackCache
        For :func:`rnn_stack_backward`.
    """
    cell = _RNNCell(nonlinearity)
    L, D = _stack.stack_config(num_layers, bidirectional)
    x = float_array(x, "x", ndim=3)
    dt = x.dtype
    T, B, I = x.shape
    H = _stack.hidden_size(params, 1)
    weights = _stack.read_params(params, LAYER_KINDS, (), _rnn_shape(I, H, D), L, D, dt)
    init = [[(h,) for h in layer] for layer in _stack.split_states(h0, "h0", L, D, B, H, dt)]
    layout = Layout(T, B, lengths_array(lengths, T, B), reset_array(reset, T, B))
    y, (h_n,), cache = _stack.forward(cell, x, weights, init, layout, L, D, H)
    return y, h_n, cache


def rnn_stack_backward(dy, dh_n, cache):
    """Backpropagation through time for :func:`rnn_stack_forward`.

    dy : (T, B, D·H) or None (entries past a row's length are ignored);
    dh_n : (num_layers·D, B, H) or None; cache : from rnn_stack_forward.

    Returns a dict: ``"x"`` (T, B, I), ``"h0"`` (num_layers·D, B, H), then every
    parameter's gradient under its torch name (as in ``params``).
    """
    if not isinstance(cache, _stack.StackCache) or not isinstance(cache.cell, _RNNCell):
        raise TypeError("cache: expected the cache returned by rnn_stack_forward, got "
                        f"{type(cache).__name__}")
    T, B, _ = cache.x.shape
    L, D, H = cache.num_layers, cache.num_directions, cache.hidden_size
    dt = cache.x.dtype
    if dy is not None:
        dy = float_array(dy, "dy", dtype=dt, shape=(T, B, D * H))
    dfinal = [[(h,) for h in layer] for layer in _stack.split_states(dh_n, "dh_n", L, D, B, H, dt)]
    dx, grads, dinit = _stack.backward(cache, dy, dfinal, True, False)
    out = {"x": dx, "h0": np.stack([s[0] for layer in dinit for s in layer])}
    for l in range(L):
        for d in range(D):
            for kind in LAYER_KINDS:
                out[_stack.param_name(kind, l, d)] = grads[l][d][kind]
    return out


# ---- the model ---------------------------------------------------------------

class RNN(SequenceModel):
    """An Elman RNN (compiled forward and BPTT; stacked and bidirectional on
    request) with a linear readout and a loss.

    ``O_t = h_t W_outᵀ + b_out`` at every step (or at the last step only with
    ``many_to_one=True``), the loss averaged over the T·B rows (B rows), and L2
    on the weight matrices; see :class:`fastbp._seqmodel.SequenceModel`.

    Parameters
    ----------
    input_size, hidden_size, output_size : int
    nonlinearity : {"tanh", "relu", "identity"}
    loss : {"mse", "cross_entropy"}
    many_to_one : bool
        Read out (and score) only the final state; targets are then (B, O) or
        labels (B,). Bidirectional: the readout reads ``[h_n forward, h_n
        reverse]`` of the top layer, the forward direction after each row's last
        step and the reverse direction after its whole pass (at time 0).
    l2 : float
        λ of ``(λ/2) Σ ‖W‖²`` over every weight matrix (biases not).
    dtype : {"float32", "float64"}
    seed : int or None
        Seeds the initialisation: ``U(−1/√H, 1/√H)`` for every layer array, as
        ``torch.nn.RNN`` does, and ``U(−1/√F, 1/√F)`` for the readout (F = D·H
        features), as ``torch.nn.Linear`` does.
    mse_form : {"sum", "half_mean"}
    num_layers : int
        Stacked layers: layer l > 0 reads layer l − 1's outputs (no dropout
        between layers).
    bidirectional : bool
        Each layer also runs a reverse direction over each row's own valid
        steps (times L_b − 1 … 0), in the same compiled call; a layer's output
        is ``[forward, reverse]`` (D·H wide, D = 2).

    Parameters are in ``model.params``: ``weight_ih`` (H, I), ``weight_hh``
    (H, H), ``bias_ih``, ``bias_hh`` (H,) in ``torch.nn.RNN``'s layout for layer
    0's forward direction, then the same with torch's suffixes for every other
    layer and direction in torch's order (``weight_ih_l0_reverse``, ...,
    ``weight_ih_l1`` (H, D·H), ...), then ``weight_out`` (O, D·H), ``bias_out``
    (O,) in ``torch.nn.Linear``'s. The state dict uses torch.nn.RNN's names
    throughout (``weight_ih_l0``, ...).

    States: ``h0`` and the returned ``h_n`` are (B, H) for one layer in one
    direction, else (num_layers·D, B, H) as in torch (index l·D + d).

    Long sequences train in chunks (truncated BPTT): pass the ``h_n`` returned
    by :meth:`loss_and_grad` as the next chunk's ``h0``; gradients then stop at
    the chunk boundary. Clip exploding gradients with
    :func:`fastbp.clip.clip_grad_norm`.
    """

    _state_names = ("h",)
    # the per-step product rule of this cell (tbptt.Stream asks the model for it)
    _pack_workspace = staticmethod(_pack_workspace)

    def __init__(self, input_size, hidden_size, output_size, nonlinearity="tanh", loss="mse",
                 many_to_one=False, l2=0.0, dtype="float64", seed=None, mse_form="sum",
                 num_layers=1, bidirectional=False):
        self._cell = _RNNCell(nonlinearity)
        self._act = self._cell.act          # the kernels' activation code (fastbp.tbptt uses it)
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, output_size, loss=loss, many_to_one=many_to_one,
                         l2=l2, dtype=dtype, seed=seed, mse_form=mse_form, num_layers=num_layers,
                         bidirectional=bidirectional)

    def _init_layer(self, rng):
        H, D = self.hidden_size, self.num_directions
        bound = 1.0 / np.sqrt(H)
        for l in range(self.num_layers):
            I = _stack.layer_input_size(self.input_size, H, l, D)
            for d in range(D):
                for kind, shape in (("weight_ih", (H, I)), ("weight_hh", (H, H)),
                                    ("bias_ih", (H,)), ("bias_hh", (H,))):
                    self._params[_stack.model_param_name(kind, l, d)] = rng.uniform(
                        -bound, bound, shape).astype(self.dtype)

    def _layer_forward(self, X, states, layout):
        # the params are validated when set: C-contiguous, the model's dtype and shapes
        y, finals, cache = _stack.forward(self._cell, X, self._layer_params(LAYER_KINDS),
                                          self._split_states(states), layout, self.num_layers,
                                          self.num_directions, self.hidden_size)
        return y, self._join_states(finals), cache

    def _layer_backward(self, dHs, dfinal, cache):
        _, grads, _ = _stack.backward(cache, dHs, self._split_states(dfinal), want_dx=False,
                                      overwrite=True)   # the model needs no ∂L/∂X
        return self._layer_grads(grads)

    # -- public API -----------------------------------------------------------
    def forward(self, X, h0=None, lengths=None, reset=None):
        """Readout outputs and the final state.

        X (T, B, I); h0 (B, H), or (num_layers·D, B, H) for a stack, or None
        (zeros); lengths (B,) and reset (T, B) as for :func:`rnn_stack_forward`.
        Returns ``(outputs, h_n)``: outputs (T, B, O) (zero past each row's
        length), or (B, O) read from each row's final state when many_to_one,
        before the softmax of a cross-entropy model.
        """
        out, (h_n,) = self._outputs(X, (h0,), lengths, reset)
        return out, h_n

    def predict(self, X, h0=None, lengths=None, reset=None):
        """Class labels (argmax) for cross-entropy models, outputs for mse."""
        return self._predict_from(self.forward(X, h0, lengths, reset)[0])

    def loss_and_grad(self, X, Y, h0=None, lengths=None, reset=None):
        """Loss, gradients and final state for one sequence (or chunk of one).

        X (T, B, I); Y: targets (T, B, O) / labels (T, B), or (B, O) / (B,)
        when many_to_one; h0 (B, H), or (num_layers·D, B, H) for a stack, or
        None (zeros). Returns ``(loss, grads, h_n)``: grads by parameter name
        (same order as ``params``); pass h_n as the next chunk's h0 to carry the
        state (truncated BPTT; this makes no sense for a reverse direction,
        whose final state is the one at the chunk's start).

        lengths (B,) int: each sequence's valid steps (the loss averages over
        those only; Y past a row's length is not read); reset (T, B) bool:
        rows that restart from h0 (or zeros) at a step (every layer and
        direction: the pieces are separate sequences). See
        :func:`rnn_stack_forward`.
        """
        loss, grads, (h_n,) = self._loss_and_grad(X, Y, (h0,), lengths, reset)
        return loss, grads, h_n
