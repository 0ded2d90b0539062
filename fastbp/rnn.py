"""Compiled Elman RNN: the whole sequence forward in one call, the whole BPTT in one.

Same signatures and semantics as :mod:`fastbp.reference.rnn` (docs/equations.md §6,
``torch.nn.RNN``'s layout, one layer, one direction, time-major)::

    a_t = x_t W_ihᵀ + h_{t−1} W_hhᵀ + b_ih + b_hh,    h_t = φ(a_t),   φ ∈ {tanh, relu, identity}

The cell is src_c/cell_rnn.h on the recurrent engine (src_c/engine_body.h):
one GEMM ``X(T·B,I) W_ihᵀ`` for the input side of every step, then per step
the recurrent product and one fused pass for the biases and φ; backward, per
step one fused pass ``δ_t = ∂L/∂h_t ⊙ φ'(a_t)`` (accumulating the bias
gradient) and one recurrent product ``δ_t W_hh``, then ``dW_ih``, ``dW_hh`` and
``dX`` as one GEMM each over the stacked ``(T·B, ·)`` arrays, with the GIL
released. The per-step products run on a copy of W_hh packed once per call or,
when large, through BLAS (fastbp._recurrent.pack_workspace).

Memory: the forward keeps one state buffer ``hs`` of shape ``(T+1, B, H)``,
``hs[0] = h0``; ``y = hs[1:]`` and the previous states ``hs[:-1]`` are views of
it. The backward allocates its outputs and a ``(T, B, H)`` buffer for ``δ``.

Dtype rule: everything is computed in ``x``'s dtype (float32 or float64;
other real dtypes become float64); the other arrays are converted to it.
"""
from . import _core, _layer, _stack
from ._layer import LayerCache
from ._recurrent import RNN_SPEC, EngineCell
from ._recurrent_model import HiddenStateModel
from ._sequence import Layout, lengths_array, reset_array
from ._validate import choice, flag, float_array

__all__ = ["RNN_NONLINEARITIES", "RNNCache", "rnn_forward", "rnn_backward", "RNN",
           "rnn_stack_forward", "rnn_stack_backward"]

RNN_NONLINEARITIES = ("tanh", "relu", "identity")
# the arrays of one layer and direction, in torch.nn.RNN's state-dict order
LAYER_KINDS = RNN_SPEC.layer_kinds


def _cell(nonlinearity):
    choice(nonlinearity, "nonlinearity", RNN_NONLINEARITIES)
    return EngineCell(RNN_SPEC, _core.ACTIVATION_CODES[nonlinearity])


class RNNCache(LayerCache):
    """What :func:`rnn_backward` needs from :func:`rnn_forward` (read-only: its
    attributes cannot be assigned, and :func:`rnn_backward` never changes it).

    Attributes: ``x`` (T, B, I), ``hs`` (the engine's state buffer, (T+1, B, H)
    with ``hs[0] = h0`` without lengths), ``y`` (T, B, H), ``h0``, ``h_n``
    (B, H), ``lengths``, ``weight_ih``, ``weight_hh`` (views of the caller's
    arrays where possible: update them only after the backward),
    ``nonlinearity`` (see :class:`fastbp._layer.LayerCache`).
    """

    __slots__ = ("nonlinearity",)

    def __init__(self, x, xs, weights, run, layout, cell, y, nonlinearity):
        super().__init__(x, xs, weights, run, layout, cell, y)
        self._set(nonlinearity=nonlinearity)

    @property
    def act(self):
        return self.cell.act

    def __repr__(self):
        return super().__repr__()[:-1] + f", nonlinearity={self.nonlinearity!r})"


def rnn_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity="tanh",
                lengths=None, reset=None, keep_cache=True):
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
    keep_cache : bool
        False for inference: nothing is kept for a backward pass (the layers'
        buffers are let go as soon as they are read) and ``cache`` is None.

    Returns
    -------
    y : ndarray, shape (T, B, H)
        ``h_1..h_T``: without lengths a view of ``cache.hs``, so modifying it
        changes what the backward sees.
    h_n : ndarray, shape (B, H)
        Each row's state after its last step (a copy of ``h0`` when T = 0); a
        copy, safe to keep and to pass as the next chunk's ``h0``.
    cache : RNNCache or None
        For :func:`rnn_backward` (None when ``keep_cache=False``).
    """
    cell = _cell(nonlinearity)
    x = float_array(x, "x", ndim=3)
    dt = x.dtype
    T, B, I = x.shape
    weight_ih = float_array(weight_ih, "weight_ih", dtype=dt, ndim=2, shape=(None, I))
    H = weight_ih.shape[0]
    if H == 0:
        raise ValueError("weight_ih: expected shape (H, I) with H >= 1, got (0, %d)" % I)
    weights = {"weight_ih": weight_ih,
               "weight_hh": float_array(weight_hh, "weight_hh", dtype=dt, ndim=2, shape=(H, H)),
               "bias_ih": float_array(bias_ih, "bias_ih", dtype=dt, ndim=1, shape=(H,)),
               "bias_hh": float_array(bias_hh, "bias_hh", dtype=dt, ndim=1, shape=(H,)),
               "peep": None}
    h0 = None if h0 is None else float_array(h0, "h0", dtype=dt, ndim=2, shape=(B, H))
    layout = Layout(T, B, lengths_array(lengths, T, B), reset_array(reset, T, B))
    y, (h_n,), cache = _layer.forward(cell, RNNCache, x, (h0,), weights, layout,
                                      flag(keep_cache, "keep_cache"), nonlinearity=nonlinearity)
    return y, h_n, cache


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
    H, dt = cache.H, cache.dtype
    if dy is not None:
        dy = float_array(dy, "dy", dtype=dt, ndim=3, shape=(T, B, H))
    if dh_n is not None:
        dh_n = float_array(dh_n, "dh_n", dtype=dt, ndim=2, shape=(B, H))
    return _layer.backward(cache, dy, (dh_n,))


# ---- stacked and bidirectional layers (fastbp._stack) ------------------------

def rnn_stack_forward(x, params, h0=None, num_layers=1, bidirectional=False,
                      nonlinearity="tanh", lengths=None, reset=None, keep_cache=True):
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
    lengths, reset, keep_cache : as for :func:`fastbp.lstm.lstm_stack_forward`.

    Returns
    -------
    y : ndarray, shape (T, B, D·H)
        The top layer's outputs, ``[forward, reverse]`` on the last axis.
    h_n : ndarray, shape (num_layers·D, B, H)
        Each layer and direction's state after its last step (reverse: after time 0).
    cache : fastbp._stack.StackCache or None
        For :func:`rnn_stack_backward` (None when ``keep_cache=False``).
    """
    y, (h_n,), cache = _stack.stack_forward(_cell(nonlinearity), x, params, (h0,), num_layers,
                                            bidirectional, lengths, reset, keep_cache)
    return y, h_n, cache


def rnn_stack_backward(dy, dh_n, cache):
    """Backpropagation through time for :func:`rnn_stack_forward`.

    dy : (T, B, D·H) or None (entries past a row's length are ignored);
    dh_n : (num_layers·D, B, H) or None; cache : from rnn_stack_forward.

    Returns a dict: ``"x"`` (T, B, I), ``"h0"`` (num_layers·D, B, H), then every
    parameter's gradient under its torch name (as in ``params``).
    """
    return _stack.stack_backward(RNN_SPEC, dy, (dh_n,), cache)


# ---- the model ---------------------------------------------------------------

class RNN(HiddenStateModel):
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

    _spec = RNN_SPEC

    def __init__(self, input_size, hidden_size, output_size, nonlinearity="tanh", loss="mse",
                 many_to_one=False, l2=0.0, dtype="float64", seed=None, mse_form="sum",
                 num_layers=1, bidirectional=False):
        self._cell = _cell(nonlinearity)
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, output_size, loss=loss, many_to_one=many_to_one,
                         l2=l2, dtype=dtype, seed=seed, mse_form=mse_form, num_layers=num_layers,
                         bidirectional=bidirectional)
