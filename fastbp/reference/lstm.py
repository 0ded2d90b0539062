"""LSTM, forward and backward through time (docs/equations.md §7, Graves' formulation).

Layout of ``torch.nn.LSTM`` (one layer, one direction, time-major): the four
gate blocks stack in the order i, f, g, o into ``W_ih (4H, I)``, ``W_hh (4H, H)``,
``b_ih (4H,)``, ``b_hh (4H,)``. Optional diagonal peepholes ``p_i, p_f, p_o`` (H,)
(not in torch; without them this is exactly ``torch.nn.LSTM``)::

    i_t = sigma(x_t W_iT + h_{t-1} U_iT + b_i + p_i * c_{t-1})     input gate
    f_t = sigma(x_t W_fT + h_{t-1} U_fT + b_f + p_f * c_{t-1})     forget gate
    g_t = tanh (x_t W_gT + h_{t-1} U_gT + b_g)                     cell input
    c_t = f_t * c_{t-1} + i_t * g_t                                cell state
    o_t = sigma(x_t W_oT + h_{t-1} U_oT + b_o + p_o * c_t)         output gate (NEW state)
    h_t = o_t * tanh(c_t)                                          cell output

Backward (§7), ``eps_h^t = dL/dh_t``, ``eps_c^t = dL/dc_t``::

    delta_o_t = eps_h^t * tanh(c_t) * o_t (1 - o_t)
    eps_c^t   = eps_h^t * o_t * (1 - tanh^2 c_t) + eps_c^{t+1} * f_{t+1}
                + p_i * delta_i_{t+1} + p_f * delta_f_{t+1} + p_o * delta_o_t
    delta_g_t = eps_c^t * i_t * (1 - g_t^2)
    delta_f_t = eps_c^t * c_{t-1} * f_t (1 - f_t)
    delta_i_t = eps_c^t * g_t * i_t (1 - i_t)
    eps_h^{t-1} = dy_{t-1} + delta_t U        (delta_t = [delta_i, delta_f, delta_g, delta_o])

Weight gradients are single stacked products over ``(T*B, .)``; peephole
gradients are ``sum_t sum_rows delta_i_t * c_{t-1}`` (likewise f) and
``sum_t sum_rows delta_o_t * c_t``.
"""

import numpy as np

from ._cell_inputs import cell_inputs, incoming_grad
from .activations import activation_forward

__all__ = ["lstm_forward", "lstm_backward"]


def _sigmoid(z):
    return activation_forward(z, "sigmoid")


def lstm_forward(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, peepholes=None):
    """Run an LSTM over a whole sequence.

    Parameters
    ----------
    x : ndarray, shape (T, B, I)
        Inputs, time-major.
    h0 : ndarray, shape (B, H), or None
        Initial output; ``None`` means zeros.
    c0 : ndarray, shape (B, H), or None
        Initial cell state; ``None`` means zeros.
    weight_ih : ndarray, shape (4H, I)
        ``[W_i; W_f; W_g; W_o]``.
    weight_hh : ndarray, shape (4H, H)
        ``[U_i; U_f; U_g; U_o]``.
    bias_ih, bias_hh : ndarray, shape (4H,)
        Their sum is ``[b_i; b_f; b_g; b_o]``.
    peepholes : tuple (p_i, p_f, p_o) of ndarray, shape (H,) each, or None
        Diagonal peephole weights; ``p_i``, ``p_f`` see ``c_{t-1}``, ``p_o`` sees ``c_t``.

    Returns
    -------
    y : ndarray, shape (T, B, H)
        Every ``h_t``.
    (h_n, c_n) : tuple of ndarray, shape (B, H) each
        ``h_T`` and ``c_T`` (``h0``, ``c0`` when ``T = 0``).
    cache : dict
        ``"x"`` (T, B, I); ``"h0"``, ``"c0"`` (B, H), the initial states used
        (zeros for None); ``"weight_ih"`` (4H, I); ``"weight_hh"`` (4H, H);
        ``"peepholes"``: None or the tuple ``(p_i, p_f, p_o)``; ``"y"`` (T, B, H):
        every ``h_t``; ``"c"`` (T, B, H): every ``c_t``; ``"tanh_c"`` (T, B, H):
        every ``tanh(c_t)``; ``"gates"`` (T, B, 4H): the ACTIVATED gates
        ``[i_t, f_t, g_t, o_t]`` stacked along the last axis. Computation dtype
        throughout.
    """
    dt, x, (h0, c0), W_ih, W_hh, b_ih, b_hh, H = cell_inputs(
        "lstm", 4, x, {"h0": h0, "c0": c0}, weight_ih, weight_hh, bias_ih, bias_hh,
        extra=peepholes if peepholes is not None else ())
    T, B, I = x.shape
    if peepholes is not None:
        if len(peepholes) != 3:
            raise ValueError("lstm: peepholes must be a tuple (p_i, p_f, p_o) or None")
        peepholes = tuple(np.asarray(p, dtype=dt) for p in peepholes)
        for name, p in zip(("p_i", "p_f", "p_o"), peepholes):
            if p.shape != (H,):
                raise ValueError("lstm: peephole %s must have shape (%d,), got %s"
                                 % (name, H, p.shape))
        p_i, p_f, p_o = peepholes

    # input side for all T*B rows at once: x_t W_ihT + b_ih + b_hh  -> (T, B, 4H)
    G_in = (x.reshape(T * B, I) @ W_ih.T + b_ih + b_hh).reshape(T, B, 4 * H)
    gates = np.empty((T, B, 4 * H), dtype=dt)
    c_all = np.empty((T, B, H), dtype=dt)
    tanh_c_all = np.empty((T, B, H), dtype=dt)
    y = np.empty((T, B, H), dtype=dt)
    h_prev, c_prev = h0, c0
    for t in range(T):
        pre = G_in[t] + h_prev @ W_hh.T                         # (B, 4H): x W^T + h_{t-1} U^T + b
        pre_i, pre_f, pre_g, pre_o = (pre[:, k * H:(k + 1) * H] for k in range(4))
        if peepholes is not None:
            pre_i = pre_i + p_i * c_prev                        # + p_i * c_{t-1}
            pre_f = pre_f + p_f * c_prev                        # + p_f * c_{t-1}
        i_t = _sigmoid(pre_i)
        f_t = _sigmoid(pre_f)
        g_t = np.tanh(pre_g)
        c_t = f_t * c_prev + i_t * g_t                          # c_t = f c_{t-1} + i g
        if peepholes is not None:
            pre_o = pre_o + p_o * c_t                           # + p_o * c_t (new state)
        o_t = _sigmoid(pre_o)
        tanh_c = np.tanh(c_t)
        h_t = o_t * tanh_c                                      # h_t = o tanh(c_t)
        gates[t] = np.concatenate([i_t, f_t, g_t, o_t], axis=1)
        c_all[t] = c_t
        tanh_c_all[t] = tanh_c
        y[t] = h_t
        h_prev, c_prev = h_t, c_t
    cache = {"x": x, "h0": h0, "c0": c0, "weight_ih": W_ih, "weight_hh": W_hh,
             "peepholes": peepholes, "y": y, "c": c_all, "tanh_c": tanh_c_all,
             "gates": gates}
    return y, (h_prev.copy(), c_prev.copy()), cache


def lstm_backward(dy, dh_n, dc_n, cache):
    """Backpropagation through time for :func:`lstm_forward` (docs/equations.md §7).

    Parameters
    ----------
    dy : ndarray, shape (T, B, H), or None
        ``dL/dh_t`` from above at every step (None: zeros).
    dh_n : ndarray, shape (B, H), or None
        Extra ``dL/dh_T`` (None: zeros).
    dc_n : ndarray, shape (B, H), or None
        ``dL/dc_T`` from the final cell state (None: zeros).
    cache : dict
        From :func:`lstm_forward`.

    Returns
    -------
    grads : dict
        ``"x"`` (T, B, I), ``"h0"`` (B, H), ``"c0"`` (B, H), ``"weight_ih"``
        (4H, I), ``"weight_hh"`` (4H, H), ``"bias_ih"`` (4H,), ``"bias_hh"``
        (4H,) (equal, separate arrays); with peepholes also ``"peephole_i"``,
        ``"peephole_f"``, ``"peephole_o"`` (H,).
    """
    x, h0, c0, y = cache["x"], cache["h0"], cache["c0"], cache["y"]
    W_ih, W_hh, peepholes = cache["weight_ih"], cache["weight_hh"], cache["peepholes"]
    c_all, tanh_c_all, gates = cache["c"], cache["tanh_c"], cache["gates"]
    T, B, I = x.shape
    H = h0.shape[1]
    dt = y.dtype

    dy = incoming_grad("lstm", dy, (T, B, H), "dy", dt)
    dh_n = incoming_grad("lstm", dh_n, (B, H), "dh_n", dt)
    dc_n = incoming_grad("lstm", dc_n, (B, H), "dc_n", dt)
    if peepholes is not None:
        p_i, p_f, p_o = peepholes

    c_prev_all = np.concatenate([c0[None], c_all], axis=0)[:T]   # c_{t-1}, t = 1..T
    h_prev_all = np.concatenate([h0[None], y], axis=0)[:T]       # h_{t-1}, t = 1..T
    dG = np.empty((T, B, 4 * H), dtype=dt)                        # delta_t = [di, df, dg, do]
    dh_rec = dh_n        # recurrent part of eps_h^t: delta_{t+1} U (dh_n at t = T)
    dc_rec = dc_n        # eps_c^{t+1} f_{t+1} + p_i di_{t+1} + p_f df_{t+1} (dc_n at t = T)
    for t in range(T - 1, -1, -1):
        i_t, f_t, g_t, o_t = (gates[t][:, k * H:(k + 1) * H] for k in range(4))
        tanh_c = tanh_c_all[t]
        c_prev = c_prev_all[t]
        eps_h = dy[t] + dh_rec                                    # eps_h^t
        d_o = eps_h * tanh_c * o_t * (1 - o_t)                    # delta_o_t
        eps_c = eps_h * o_t * (1 - tanh_c * tanh_c) + dc_rec      # eps_c^t ...
        if peepholes is not None:
            eps_c = eps_c + p_o * d_o                             # ... + p_o * delta_o_t
        d_g = eps_c * i_t * (1 - g_t * g_t)                       # delta_g_t
        d_f = eps_c * c_prev * f_t * (1 - f_t)                    # delta_f_t
        d_i = eps_c * g_t * i_t * (1 - i_t)                       # delta_i_t
        dG[t] = np.concatenate([d_i, d_f, d_g, d_o], axis=1)
        dh_rec = dG[t] @ W_hh                                     # delta_t U -> eps_h^{t-1}
        dc_rec = eps_c * f_t                                      # eps_c^t f_t -> eps_c^{t-1}
        if peepholes is not None:
            dc_rec = dc_rec + p_i * d_i + p_f * d_f               # + p_i di_t + p_f df_t
    dh0 = dh_rec
    dc0 = dc_rec

    D = dG.reshape(T * B, 4 * H)
    dW_ih = D.T @ x.reshape(T * B, I)             # dW_ih(4H,I) = dG(T*B,4H)T @ X(T*B,I)
    dW_hh = D.T @ h_prev_all.reshape(T * B, H)    # dW_hh(4H,H) = dG(T*B,4H)T @ H_prev(T*B,H)
    db = np.sum(D, axis=0)                        # db(4H) = sum_t sum_rows delta_t
    dx = (D @ W_ih).reshape(T, B, I)              # dX(T*B,I) = dG(T*B,4H) @ W_ih(4H,I)
    grads = {"x": dx, "h0": np.array(dh0, dtype=dt), "c0": np.array(dc0, dtype=dt),
             "weight_ih": dW_ih, "weight_hh": dW_hh, "bias_ih": db, "bias_hh": db.copy()}
    if peepholes is not None:
        grads["peephole_i"] = np.sum(dG[:, :, 0:H] * c_prev_all, axis=(0, 1))       # sum di c_{t-1}
        grads["peephole_f"] = np.sum(dG[:, :, H:2 * H] * c_prev_all, axis=(0, 1))   # sum df c_{t-1}
        grads["peephole_o"] = np.sum(dG[:, :, 3 * H:] * c_all, axis=(0, 1))         # sum do c_t
    return grads
