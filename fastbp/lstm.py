"""Compiled LSTM with backpropagation through time (docs/equations.md §7).

Graves' cell with optional peepholes, in ``torch.nn.LSTM``'s layout: gates
stacked i, f, g, o in ``weight_ih (4H, I)``, ``weight_hh (4H, H)``,
``bias_ih (4H,)``, ``bias_hh (4H,)``. Without peepholes this is exactly one
layer of ``torch.nn.LSTM``: weights move between the two with no reshuffling.

:func:`lstm_forward` and :func:`lstm_backward` have the signatures of
``fastbp.reference.lstm_forward`` / ``lstm_backward``; each runs a whole
sequence in one C call with the GIL released: the cell src_c/cell_lstm.h on
the recurrent engine (src_c/engine_body.h):

- forward: one GEMM ``X (T·B, I) @ W_ihᵀ`` for the input side of every step,
  then per step one recurrent product for the four gates together (a GEMV at
  batch 1) and one fused elementwise pass (biases, σ, σ, tanh, σ, peepholes,
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

:class:`LSTM` is the model: this layer, a linear readout and a loss.
"""
import numbers

import numpy as np

from . import _layer, _stack
from ._layer import LayerCache
from ._recurrent import LSTM_SPEC, EngineCell
from ._recurrent_model import RecurrentModel
from ._sequence import Layout, lengths_array, reset_array
from ._validate import flag, float_array

__all__ = ["LSTM", "LSTMCache", "lstm_forward", "lstm_backward", "lstm_stack_forward",
           "lstm_stack_backward"]

PEEPHOLE_NAMES = LSTM_SPEC.optional_kinds
# the arrays of one layer and direction, in torch.nn.LSTM's state-dict order
LAYER_KINDS = LSTM_SPEC.layer_kinds
_CELL = EngineCell(LSTM_SPEC)


class LSTMCache(LayerCache):
    """What :func:`lstm_forward` keeps for :func:`lstm_backward`, open to the user.

    Read-only: attributes cannot be assigned, and :func:`lstm_backward` leaves
    the cache unchanged unless ``overwrite_cache=True`` consumes it.

    Attributes (computation dtype, caller's row order; do not modify them
    before backward): those of :class:`fastbp._layer.LayerCache` (``x``,
    ``weight_ih``, ``weight_hh``, ``lengths``, ``y``, ``h0``, ``hs``), and
    ----------
    peepholes : tuple (p_i, p_f, p_o) of (H,) arrays, or None
    c : (T, B, H)           every cell state ``c_t`` (zero past each row's length)
    c0 : (B, H)             the initial cell state used (zeros for None)
    gates : (T, B, 4H)      the activated gates ``[i_t, f_t, g_t, o_t]`` stacked
                            along the last axis (gone after a backward pass with
                            ``overwrite_cache=True``)
    tanh_c : (T, B, H)      ``tanh(c_t)``, computed on request (not stored)
    cs                      the engine's c buffer, laid out as ``hs``
    """

    __slots__ = ()

    @property
    def peepholes(self):
        peep = self._weights["peep"]
        return None if peep is None else (peep[0], peep[1], peep[2])

    @property
    def cs(self):
        return self._state_buffer(1)

    @property
    def c(self):
        return self._every(1)

    @property
    def c0(self):
        return self._initial(1)

    @property
    def tanh_c(self):
        return np.tanh(self.c)

    @property
    def gates(self):
        return self._saved_gates(4 * self.H, "gates")

    def __repr__(self):
        return (super().__repr__()[:-1] + f", peepholes={self.peepholes is not None}, "
                f"consumed={self.consumed})")


def lstm_forward(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, peepholes=None,
                 lengths=None, reset=None, keep_cache=True):
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
    keep_cache : bool
        False for inference: nothing is kept for a backward pass (the layers'
        buffers are let go as soon as they are read) and ``cache`` is None.

    Returns
    -------
    y : ndarray, shape (T, B, H)
        Every ``h_t`` (a view of ``cache.hs`` without lengths).
    (h_n, c_n) : tuple of ndarray, shape (B, H) each
        The states after each row's last step (copies of ``h0``, ``c0`` when T = 0).
    cache : LSTMCache or None
        For :func:`lstm_backward`; also every ``c_t`` (``cache.c``) and the
        activated gates (``cache.gates``). None when ``keep_cache=False``.
    """
    x = float_array(x, "x", ndim=3)
    dt = x.dtype
    T, B, I = x.shape
    weight_hh = float_array(weight_hh, "weight_hh", dtype=dt, ndim=2)
    H4, H = weight_hh.shape
    if H < 1 or H4 != 4 * H:
        raise ValueError(f"weight_hh: expected shape (4H, H) with H >= 1, got {weight_hh.shape}")
    weights = {"weight_ih": float_array(weight_ih, "weight_ih", dtype=dt, shape=(4 * H, I)),
               "weight_hh": weight_hh,
               "bias_ih": float_array(bias_ih, "bias_ih", dtype=dt, shape=(4 * H,)),
               "bias_hh": float_array(bias_hh, "bias_hh", dtype=dt, shape=(4 * H,))}
    states = [None if s is None else float_array(s, name, dtype=dt, shape=(B, H))
              for s, name in ((h0, "h0"), (c0, "c0"))]
    weights["peep"] = _peephole_array(peepholes, H, dt)
    layout = Layout(T, B, lengths_array(lengths, T, B), reset_array(reset, T, B))
    y, finals, cache = _layer.forward(_CELL, LSTMCache, x, states, weights, layout,
                                      flag(keep_cache, "keep_cache"))
    return y, finals, cache


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
        raise RuntimeError("cache: already consumed by lstm_backward(..., overwrite_cache=True); "
                           "run lstm_forward again")
    T, B, _ = cache.x.shape
    H, dt = cache.H, cache.dtype
    if dy is not None:
        dy = float_array(dy, "dy", dtype=dt, shape=(T, B, H))
    dh_n = None if dh_n is None else float_array(dh_n, "dh_n", dtype=dt, shape=(B, H))
    dc_n = None if dc_n is None else float_array(dc_n, "dc_n", dtype=dt, shape=(B, H))
    return _layer.backward(cache, dy, (dh_n, dc_n), overwrite_cache=flag(overwrite_cache,
                                                                         "overwrite_cache"))


# ---- stacked and bidirectional layers (fastbp._stack) ------------------------

def lstm_stack_forward(x, params, h0=None, c0=None, num_layers=1, bidirectional=False,
                       lengths=None, reset=None, keep_cache=True):
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
    keep_cache : bool
        False for inference: nothing is kept for a backward pass (the layers'
        buffers are let go as soon as they are read) and ``cache`` is None.

    Returns
    -------
    y : ndarray, shape (T, B, D·H)
        The top layer's outputs, ``[forward, reverse]`` on the last axis.
    (h_n, c_n) : ndarrays, shape (num_layers·D, B, H)
        Each layer and direction's state after its last step (for a reverse
        direction: after time 0).
    cache : fastbp._stack.StackCache or None
        For :func:`lstm_stack_backward` (None when ``keep_cache=False``).
    """
    return _stack.stack_forward(_CELL, x, params, (h0, c0), num_layers, bidirectional, lengths,
                                reset, keep_cache)


def lstm_stack_backward(dy, dh_n, dc_n, cache, overwrite_cache=False):
    """Backpropagation through time for :func:`lstm_stack_forward`.

    dy : (T, B, D·H) or None (∂L/∂y; entries past a row's length are ignored);
    dh_n, dc_n : (num_layers·D, B, H) or None; cache : from lstm_stack_forward;
    overwrite_cache : let the gate gradients reuse the cache's gate buffers
    (the cache is consumed).

    Returns a dict: ``"x"`` (T, B, I), ``"h0"``, ``"c0"`` (num_layers·D, B, H),
    then every parameter's gradient under its torch name (as in ``params``).
    """
    return _stack.stack_backward(LSTM_SPEC, dy, (dh_n, dc_n), cache,
                                 flag(overwrite_cache, "overwrite_cache"))


# ---- the model ---------------------------------------------------------------

class LSTM(RecurrentModel):
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

    _spec = LSTM_SPEC
    _cell = _CELL
    _optional_flag = "peepholes"

    def __init__(self, input_size, hidden_size, output_size, peepholes=False, loss="mse",
                 many_to_one=False, l2=0.0, forget_bias=1.0, dtype="float64", seed=None,
                 mse_form="sum", num_layers=1, bidirectional=False):
        self.peepholes = flag(peepholes, "peepholes")
        self._with_optional = self.peepholes
        if forget_bias is not None and (isinstance(forget_bias, bool) or not isinstance(
                forget_bias, numbers.Real) or not np.isfinite(forget_bias)):
            raise ValueError(f"forget_bias: expected a finite number or None, got {forget_bias!r}")
        self.forget_bias = None if forget_bias is None else float(forget_bias)
        super().__init__(input_size, hidden_size, output_size, loss=loss, many_to_one=many_to_one,
                         l2=l2, dtype=dtype, seed=seed, mse_form=mse_form, num_layers=num_layers,
                         bidirectional=bidirectional)

    def _init_direction(self, names):
        if self.forget_bias is not None:
            H = self.hidden_size
            self._params[names["bias_ih"]][H:2 * H] = self.forget_bias
            self._params[names["bias_hh"]][H:2 * H] = 0

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
