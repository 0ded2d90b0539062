"""Elman RNN and backpropagation through time (docs/equations.md §6).

Layout and semantics of ``torch.nn.RNN`` (one layer, one direction), time-major::

    a_t = x_t W_ihT + b_ih + h_{t-1} W_hhT + b_hh      (§6: W_xh = W_ih, b_h = b_ih + b_hh)
    h_t = phi(a_t)                                      phi in {tanh, relu, identity}

The output layer ``o_t = h_t W_qhT + b_q`` and the loss are not part of this
module: backward takes ``dy = dL/dh_t`` from whatever sits on top (for the
output layer of §6, ``dy_t = (dL/do_t) W_qh``) plus ``dh_n`` added at ``t = T``.

Backward (BPTT, §6), with ``eps_t = dL/dh_t`` including the recurrent term::

    eps_T   = dy_T + dh_n
    eps_t   = dy_t + delta_{t+1} W_hh            (t < T)
    delta_t = eps_t * phi'(a_t)                  (phi' from h_t: 1 - h^2, 1[h > 0], 1)
    dW_ih = sum_t delta_tT x_t    dW_hh = sum_t delta_tT h_{t-1}    db_ih = db_hh = sum_t sum_rows delta_t
    dx_t  = delta_t W_ih          dh_0  = delta_1 W_hh

The sums over t are single products over the stacked ``(T*B, .)`` arrays.
"""

import numpy as np

from ._cell_inputs import cell_inputs, incoming_grad
from .activations import activation_backward, activation_forward

__all__ = ["RNN_NONLINEARITIES", "rnn_forward", "rnn_backward"]

RNN_NONLINEARITIES = ("tanh", "relu", "identity")


def rnn_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, nonlinearity="tanh"):
    """Run an Elman RNN over a whole sequence.

    Parameters
    ----------
    x : ndarray, shape (T, B, I)
        Inputs, time-major.
    h0 : ndarray, shape (B, H), or None
        Initial state; ``None`` means zeros.
    weight_ih : ndarray, shape (H, I)
    weight_hh : ndarray, shape (H, H)
    bias_ih : ndarray, shape (H,)
    bias_hh : ndarray, shape (H,)
    nonlinearity : {"tanh", "relu", "identity"}
        ``phi``.

    Returns
    -------
    y : ndarray, shape (T, B, H)
        Every ``h_t``, ``t = 1..T``.
    h_n : ndarray, shape (B, H)
        ``h_T`` (``h0`` when ``T = 0``).
    cache : dict
        ``"x"`` (T, B, I); ``"h0"`` (B, H), the initial state actually used
        (zeros when ``h0`` was None); ``"weight_ih"`` (H, I); ``"weight_hh"``
        (H, H); ``"nonlinearity"``; ``"y"`` (T, B, H). All in the computation
        dtype (the common floating dtype of the inputs).
    """
    if nonlinearity not in RNN_NONLINEARITIES:
        raise ValueError(
            "unknown nonlinearity %r; expected one of %s"
            % (nonlinearity, ", ".join(RNN_NONLINEARITIES))
        )
    dt, x, (h0,), W_ih, W_hh, b_ih, b_hh, H = cell_inputs(
        "rnn", 1, x, {"h0": h0}, weight_ih, weight_hh, bias_ih, bias_hh)
    T, B, I = x.shape

    # input side for all T*B rows at once: x_t W_ihT + b_ih (+ b_hh)
    a_in = (x.reshape(T * B, I) @ W_ih.T + b_ih + b_hh).reshape(T, B, H)
    y = np.empty((T, B, H), dtype=dt)
    h = h0
    for t in range(T):
        a_t = a_in[t] + h @ W_hh.T                    # a_t = x_t W_ihT + h_{t-1} W_hhT + b
        h = activation_forward(a_t, nonlinearity)     # h_t = phi(a_t)
        y[t] = h
    h_n = h.copy()
    cache = {"x": x, "h0": h0, "weight_ih": W_ih, "weight_hh": W_hh,
             "nonlinearity": nonlinearity, "y": y}
    return y, h_n, cache


def rnn_backward(dy, dh_n, cache):
    """Backpropagation through time for :func:`rnn_forward`.

    Parameters
    ----------
    dy : ndarray, shape (T, B, H), or None
        ``dL/dh_t`` from above at every step (None: zeros).
    dh_n : ndarray, shape (B, H), or None
        Extra ``dL/dh_T`` from the final state (None: zeros), added at ``t = T``.
    cache : dict
        From :func:`rnn_forward`.

    Returns
    -------
    grads : dict
        ``"x"`` (T, B, I), ``"h0"`` (B, H) (the gradient wrt the initial state
        used, also when it was None), ``"weight_ih"`` (H, I), ``"weight_hh"``
        (H, H), ``"bias_ih"`` (H,), ``"bias_hh"`` (H,). The two bias gradients
        are equal (both ``sum_t sum_rows delta_t``), as separate arrays.
    """
    x, h0, y = cache["x"], cache["h0"], cache["y"]
    W_ih, W_hh, phi = cache["weight_ih"], cache["weight_hh"], cache["nonlinearity"]
    T, B, I = x.shape
    H = h0.shape[1]
    dt = y.dtype
    dy = incoming_grad("rnn", dy, (T, B, H), "dy", dt)
    dh_n = incoming_grad("rnn", dh_n, (B, H), "dh_n", dt)

    delta = np.empty((T, B, H), dtype=dt)
    dh_rec = dh_n                                     # recurrent part of dL/dh_t (dh_n at t = T)
    for t in range(T - 1, -1, -1):
        eps_t = dy[t] + dh_rec                        # dL/dh_t
        delta[t] = activation_backward(eps_t, y[t], phi)   # delta_t = eps_t * phi'(a_t)
        dh_rec = delta[t] @ W_hh                      # delta_t W_hh -> dL/dh_{t-1}
    dh0 = dh_rec                                      # dL/dh_0 = delta_1 W_hh (dh_n if T = 0)

    h_prev = np.concatenate([h0[None], y], axis=0)[:T]   # h_{t-1}, t = 1..T: (T, B, H)
    D = delta.reshape(T * B, H)
    dW_ih = D.T @ x.reshape(T * B, I)                 # dW_ih(H,I) = delta(T*B,H)T @ X(T*B,I)
    dW_hh = D.T @ h_prev.reshape(T * B, H)            # dW_hh(H,H) = delta(T*B,H)T @ H_prev(T*B,H)
    db = np.sum(D, axis=0)                            # db(H) = sum_t sum_rows delta_t
    dx = (D @ W_ih).reshape(T, B, I)                  # dX(T*B,I) = delta(T*B,H) @ W_ih(H,I)
    return {"x": dx, "h0": np.array(dh0, dtype=dt), "weight_ih": dW_ih, "weight_hh": dW_hh,
            "bias_ih": db, "bias_hh": db.copy()}
