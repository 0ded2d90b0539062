"""Compiled GRU with backpropagation through time (docs/equations.md §8).

``torch.nn.GRU``'s cell and layout: gates r, z, n stacked in ``weight_ih (3H,
I)``, ``weight_hh (3H, H)``, ``bias_ih (3H,)``, ``bias_hh (3H,)``::

    r = σ(x W_irᵀ + b_ir + h W_hrᵀ + b_hr)
    z = σ(x W_izᵀ + b_iz + h W_hzᵀ + b_hz)
    n = tanh(x W_inᵀ + b_in + r ⊙ (h W_hnᵀ + b_hn))
    h' = (1 − z) ⊙ n + z ⊙ h

:func:`gru_forward` and :func:`gru_backward` have the signatures of
``fastbp.reference.gru_forward`` / ``gru_backward`` (plus lengths and resets)
and run the cell src_c/cell_gru.h on the recurrent engine (src_c/engine_body.h)
with the GIL released: one GEMM for the input side of every step, then per
step the recurrent product (kept apart from the input side: r scales its n
block) and one fused pass; backward, per step one fused pass and one product,
then ``dW_ih``, ``dW_hh``, ``dX`` as one GEMM each.

Memory: the forward keeps ``h_t`` for every step (``(T+1, B, H)``) and
``[r, z, n, h W_hnᵀ + b_hn]`` (``(T, B, 4H)``); the backward two ``(T, B,
3H)`` gate-gradient buffers (input side and recurrent side differ in the n
block).

Dtype rule: everything is computed in ``x``'s dtype (float32 or float64; other
real inputs are computed in float64); the other arrays are converted to it.
"""
from . import _layer, _stack
from ._layer import LayerCache
from ._recurrent import GRU_SPEC, EngineCell
from ._recurrent_model import HiddenStateModel
from ._sequence import Layout, lengths_array, reset_array
from ._validate import flag, float_array

__all__ = ["GRU", "GRUCache", "gru_forward", "gru_backward", "gru_stack_forward",
           "gru_stack_backward"]

# the arrays of one layer and direction, in torch.nn.GRU's state-dict order
LAYER_KINDS = GRU_SPEC.layer_kinds
_CELL = EngineCell(GRU_SPEC)


class GRUCache(LayerCache):
    """What :func:`gru_forward` keeps for :func:`gru_backward` (read-only; the
    backward never changes it).

    Attributes (computation dtype, caller's row order; do not modify them
    before backward): those of :class:`fastbp._layer.LayerCache` (``x``,
    ``weight_ih``, ``weight_hh``, ``lengths``, ``y``, ``h0``, ``h_n``, ``hs``), and
    ----------
    gates : (T, B, 3H)   r, z, n after their nonlinearities, stacked on the last axis
    m : (T, B, H)        ``h_{t−1} W_hnᵀ + b_hn``, the recurrent side of n
    """

    __slots__ = ()

    @property
    def gates(self):
        return self._saved_gates(3 * self.H, "gates")

    @property
    def m(self):
        return self._saved_gates(4 * self.H, "m")[..., 3 * self.H:]


def gru_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, lengths=None, reset=None,
                keep_cache=True):
    """Run a GRU over a whole sequence (compiled).

    Parameters
    ----------
    x : array, shape (T, B, I)
        Inputs, time-major. Its dtype is the computation dtype.
    h0 : array, shape (B, H), or None
        Initial state; ``None`` means zeros.
    weight_ih : array, shape (3H, I)
        ``[W_ir; W_iz; W_in]``.
    weight_hh : array, shape (3H, H)
        ``[W_hr; W_hz; W_hn]``.
    bias_ih, bias_hh : array, shape (3H,)
    lengths : int array, shape (B,), or None
        Each row's number of valid steps, 0 <= length <= T (None: all T).
        Outputs past a row's length are zero, ``h_n`` is the state after the
        row's last step, and the work is proportional to the sum of the lengths.
    reset : bool array, shape (T, B), or None
        Where ``reset[t, b]`` is set (t >= 1), row b starts step t from its
        initial state (``h0[b]`` or zeros); no gradient crosses that step.
    keep_cache : bool
        False for inference: nothing is kept for a backward pass (the layers'
        buffers are let go as soon as they are read) and ``cache`` is None.

    Returns
    -------
    y : ndarray, shape (T, B, H)
        Every ``h_t`` (a view of ``cache.hs`` without lengths).
    h_n : ndarray, shape (B, H)
        Each row's state after its last step (a copy of ``h0`` when T = 0).
    cache : GRUCache or None
        For :func:`gru_backward` (None when ``keep_cache=False``).
    """
    x = float_array(x, "x", ndim=3)
    dt = x.dtype
    T, B, I = x.shape
    weight_hh = float_array(weight_hh, "weight_hh", dtype=dt, ndim=2)
    H3, H = weight_hh.shape
    if H < 1 or H3 != 3 * H:
        raise ValueError(f"weight_hh: expected shape (3H, H) with H >= 1, got {weight_hh.shape}")
    weights = {"weight_ih": float_array(weight_ih, "weight_ih", dtype=dt, shape=(3 * H, I)),
               "weight_hh": weight_hh,
               "bias_ih": float_array(bias_ih, "bias_ih", dtype=dt, shape=(3 * H,)),
               "bias_hh": float_array(bias_hh, "bias_hh", dtype=dt, shape=(3 * H,)),
               "peep": None}
    h0 = None if h0 is None else float_array(h0, "h0", dtype=dt, shape=(B, H))
    layout = Layout(T, B, lengths_array(lengths, T, B), reset_array(reset, T, B))
    y, (h_n,), cache = _layer.forward(_CELL, GRUCache, x, (h0,), weights, layout,
                                      flag(keep_cache, "keep_cache"))
    return y, h_n, cache


def gru_backward(dy, dh_n, cache):
    """Backpropagation through time for :func:`gru_forward` (compiled).

    Parameters
    ----------
    dy : array, shape (T, B, H), or None
        ``∂L/∂h_t`` from above at every step (None: zeros); entries past a
        row's length are ignored.
    dh_n : array, shape (B, H), or None
        ``∂L/∂h_n``, the gradient of the final state (None: zeros).
    cache : GRUCache
        From :func:`gru_forward`.

    Returns
    -------
    grads : dict
        ``"x"`` (T, B, I) (zero past each row's length), ``"h0"`` (B, H)
        (summed over every step that started from it: step 0 and the resets),
        ``"weight_ih"`` (3H, I), ``"weight_hh"`` (3H, H), ``"bias_ih"``,
        ``"bias_hh"`` (3H,) (they differ in the n block). In the cache's dtype.
    """
    if not isinstance(cache, GRUCache):
        hint = (" (a dict: the NumPy reference's cache goes to fastbp.reference.gru_backward)"
                if isinstance(cache, dict) else "")
        raise TypeError(f"cache: expected the GRUCache returned by fastbp.gru_forward, got "
                        f"{type(cache).__name__}{hint}")
    T, B, _ = cache.x.shape
    H, dt = cache.H, cache.dtype
    if dy is not None:
        dy = float_array(dy, "dy", dtype=dt, shape=(T, B, H))
    dh_n = None if dh_n is None else float_array(dh_n, "dh_n", dtype=dt, shape=(B, H))
    return _layer.backward(cache, dy, (dh_n,))


# ---- stacked and bidirectional layers (fastbp._stack) ------------------------

def gru_stack_forward(x, params, h0=None, num_layers=1, bidirectional=False, lengths=None,
                      reset=None, keep_cache=True):
    """Stacked, optionally bidirectional GRU: ``torch.nn.GRU(num_layers=...,
    bidirectional=...)`` (time-major, no dropout), compiled.

    Parameters
    ----------
    x : array, shape (T, B, I)
        Inputs; its dtype is the computation dtype.
    params : mapping of str to array
        torch.nn.GRU's state-dict names (``torch.nn.GRU.state_dict()`` works as
        it is): for layer k and, when bidirectional, suffix ``_reverse``:
        ``weight_ih_l{k}`` (3H, I_k) with I_0 = I and I_k = D·H above,
        ``weight_hh_l{k}`` (3H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}`` (3H,).
    h0 : array, shape (num_layers·D, B, H), or None
        Initial states, index l·D + d; None means zeros.
    num_layers, bidirectional : as for torch.nn.GRU.
    lengths, reset, keep_cache : as for :func:`fastbp.lstm.lstm_stack_forward`.

    Returns
    -------
    y : ndarray, shape (T, B, D·H)
        The top layer's outputs, ``[forward, reverse]`` on the last axis.
    h_n : ndarray, shape (num_layers·D, B, H)
        Each layer and direction's state after its last step (reverse: after time 0).
    cache : fastbp._stack.StackCache or None
        For :func:`gru_stack_backward` (None when ``keep_cache=False``).
    """
    y, (h_n,), cache = _stack.stack_forward(_CELL, x, params, (h0,), num_layers, bidirectional,
                                            lengths, reset, keep_cache)
    return y, h_n, cache


def gru_stack_backward(dy, dh_n, cache):
    """Backpropagation through time for :func:`gru_stack_forward`.

    dy : (T, B, D·H) or None (entries past a row's length are ignored);
    dh_n : (num_layers·D, B, H) or None; cache : from gru_stack_forward.

    Returns a dict: ``"x"`` (T, B, I), ``"h0"`` (num_layers·D, B, H), then every
    parameter's gradient under its torch name (as in ``params``).
    """
    return _stack.stack_backward(GRU_SPEC, dy, (dh_n,), cache)


# ---- the model ---------------------------------------------------------------

class GRU(HiddenStateModel):
    """A GRU (compiled forward and BPTT; stacked and bidirectional on request)
    with a linear readout and a loss.

    ``O_t = h_t W_outᵀ + b_out`` at every step (or at the last step only with
    ``many_to_one=True``), the loss averaged over the T·B rows (B rows), and L2
    on the weight matrices; see :class:`fastbp._seqmodel.SequenceModel`.

    Parameters
    ----------
    input_size, hidden_size, output_size : int
    loss : {"mse", "cross_entropy"}
    many_to_one : bool
        Read out (and score) only the final state; targets are then (B, O) or
        labels (B,). Bidirectional: the readout reads ``[h_n forward, h_n
        reverse]`` of the top layer.
    l2 : float
        λ of ``(λ/2) Σ ‖W‖²`` over every weight matrix (biases not).
    dtype : {"float32", "float64"}
    seed : int or None
        Seeds the initialisation: ``U(−1/√H, 1/√H)`` for every layer array, as
        ``torch.nn.GRU`` does, and ``U(−1/√F, 1/√F)`` for the readout (F = D·H
        features), as ``torch.nn.Linear`` does.
    mse_form : {"sum", "half_mean"}
    num_layers : int
        Stacked layers (no dropout between them).
    bidirectional : bool
        Each layer also runs a reverse direction over each row's own valid
        steps, in the same compiled call; a layer's output is ``[forward,
        reverse]`` (D·H wide).

    Parameters are in ``model.params``: ``weight_ih`` (3H, I), ``weight_hh``
    (3H, H), ``bias_ih``, ``bias_hh`` (3H,) for layer 0's forward direction,
    then the same with torch's suffixes for every other layer and direction
    (``weight_ih_l0_reverse``, ..., ``weight_ih_l1`` (3H, D·H), ...), then
    ``weight_out`` (O, D·H), ``bias_out`` (O,). The state dict
    (:meth:`state_dict`) uses torch.nn.GRU's names throughout and loads into a
    ``torch.nn.GRU`` plus a ``torch.nn.Linear`` readout.

    States: ``h0`` and the returned ``h_n`` are (B, H) for one layer in one
    direction, else (num_layers·D, B, H) as in torch (index l·D + d).
    """

    _spec = GRU_SPEC
    _cell = _CELL

    def __init__(self, input_size, hidden_size, output_size, loss="mse", many_to_one=False,
                 l2=0.0, dtype="float64", seed=None, mse_form="sum", num_layers=1,
                 bidirectional=False):
        super().__init__(input_size, hidden_size, output_size, loss=loss, many_to_one=many_to_one,
                         l2=l2, dtype=dtype, seed=seed, mse_form=mse_form, num_layers=num_layers,
                         bidirectional=bidirectional)
