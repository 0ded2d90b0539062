"""Compiled Elman RNN: the whole sequence forward in one call, the whole BPTT in one.

Same signatures and semantics as :mod:`fastbp.reference.rnn` (EQUATIONS.md §5,
``torch.nn.RNN``'s layout, one layer, one direction, time-major)::

    a_t = x_t W_ihᵀ + h_{t−1} W_hhᵀ + b_ih + b_hh,    h_t = φ(a_t),   φ ∈ {tanh, relu, identity}

How it computes (src_c/rnn_body.h): one GEMM ``X(T·B,I) W_ihᵀ`` for the input
side of every step, then per step only the recurrent product (a GEMV at
batch 1) and one fused pass for the biases and φ; backward, per step one fused
pass ``δ_t = ∂L/∂h_t ⊙ φ'(a_t)`` (accumulating the bias gradient) and one
recurrent product ``δ_t W_hh``, then ``dW_ih``, ``dW_hh`` and ``dX`` as one GEMM
each over the stacked ``(T·B, ·)`` arrays. The time loops run in C with the
GIL released.

Memory: the forward keeps one state buffer ``hs`` of shape ``(T+1, B, H)``,
``hs[0] = h0``; ``y = hs[1:]`` and the previous states ``hs[:-1]`` are views of
it. The backward allocates its outputs and a ``(T, B, H)`` buffer for ``δ``:
about ``2·T·B·H`` floats in all, besides ``x`` and ``dx``.

Dtype rule: everything is computed in ``x``'s dtype (float32 or float64;
other real dtypes become float64); the other arrays are converted to it.
"""
import numpy as np

from . import _core
from ._validate import choice, float_array

__all__ = ["RNN_NONLINEARITIES", "RNNCache", "rnn_forward", "rnn_backward"]

RNN_NONLINEARITIES = ("tanh", "relu", "identity")


class RNNCache:
    """What :func:`rnn_backward` needs from :func:`rnn_forward`.

    Attributes
    ----------
    x : ndarray, shape (T, B, I)
        The input (the caller's array when it was already C-contiguous in the
        computation dtype: do not modify it before the backward).
    hs : ndarray, shape (T+1, B, H)
        ``hs[0] = h0`` (zeros when None was given), ``hs[t] = h_t``.
    weight_ih, weight_hh : ndarray
        The weights used (references to the caller's arrays where possible:
        update them only after the backward, as an optimizer step does).
    nonlinearity : str
    """

    __slots__ = ("x", "hs", "weight_ih", "weight_hh", "nonlinearity", "act")

    def __init__(self, x, hs, weight_ih, weight_hh, nonlinearity, act):
        self.x = x
        self.hs = hs
        self.weight_ih = weight_ih
        self.weight_hh = weight_hh
        self.nonlinearity = nonlinearity
        self.act = act

    @property
    def y(self):
        """Every state ``h_1..h_T``, shape (T, B, H) (a view of ``hs``)."""
        return self.hs[1:]

    @property
    def h0(self):
        """The initial state used, shape (B, H) (a view of ``hs``)."""
        return self.hs[0]

    @property
    def h_n(self):
        """The final state ``h_T``, shape (B, H) (a view of ``hs``; ``h0`` when T = 0)."""
        return self.hs[-1]

    @property
    def dtype(self):
        return self.hs.dtype

    def __repr__(self):
        T, B, I = self.x.shape
        return (f"RNNCache(T={T}, B={B}, I={I}, H={self.hs.shape[2]}, "
                f"nonlinearity={self.nonlinearity!r}, dtype={self.hs.dtype})")


def _act_code(nonlinearity):
    choice(nonlinearity, "nonlinearity", RNN_NONLINEARITIES)
    return _core.ACTIVATION_CODES[nonlinearity]


def rnn_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity="tanh"):
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

    Returns
    -------
    y : ndarray, shape (T, B, H)
        ``h_1..h_T``: a view of ``cache.hs``, so modifying it changes what the
        backward sees.
    h_n : ndarray, shape (B, H)
        ``h_T`` (a copy of ``h0`` when T = 0); a copy, safe to keep and to
        pass as the next chunk's ``h0``.
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
    cache = _forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity, act)
    return cache.y, cache.hs[-1].copy(), cache


def _forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity, act):
    """rnn_forward on validated arrays (C-contiguous, one dtype, shapes checked)."""
    T, B, _ = x.shape
    H = weight_hh.shape[0]
    hs = np.empty((T + 1, B, H), dtype=x.dtype)
    if h0 is None:
        hs[0] = 0
    else:
        hs[0] = h0
    if T and B:
        _core.rnn_forward(hs, x, weight_ih, weight_hh, bias_ih, bias_hh, act)
    return RNNCache(x, hs, weight_ih, weight_hh, nonlinearity, act)


def rnn_backward(dy, dh_n, cache):
    """Backpropagation through time for :func:`rnn_forward` (compiled).

    Parameters
    ----------
    dy : array_like, shape (T, B, H), or None
        ``∂L/∂h_t`` from above at every step (None: zeros).
    dh_n : array_like, shape (B, H), or None
        Extra ``∂L/∂h_T`` from the final state (None: zeros).
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
    H = cache.hs.shape[2]
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
    x, hs = cache.x, cache.hs
    T, B, I = x.shape
    H = hs.shape[2]
    dt = hs.dtype
    dx = np.empty((T, B, I), dt) if want_dx else None
    dW_ih = np.zeros((H, I), dt)
    dW_hh = np.zeros((H, H), dt)
    db = np.zeros(H, dt)
    if T and B:
        dh0 = np.empty((B, H), dt)
        delta = np.empty((T, B, H), dt)
        _core.rnn_backward(dx, dh0, dW_ih, dW_hh, db, delta, dy, dh_n, hs, x,
                           cache.weight_ih, cache.weight_hh, cache.act)
    else:   # no step: ∂L/∂h_0 = ∂L/∂h_T, every other gradient is zero (or empty)
        dh0 = np.zeros((B, H), dt) if dh_n is None else dh_n.copy()
        if dx is not None:
            dx.fill(0)
    return {"x": dx, "h0": dh0, "weight_ih": dW_ih, "weight_hh": dW_hh, "bias_ih": db}
