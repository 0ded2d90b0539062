"""GRU and backpropagation through time (docs/equations.md §8).

Layout and semantics of ``torch.nn.GRU`` (one layer, one direction),
time-major; the gate blocks stack r, z, n in ``weight_ih (3H, I)``,
``weight_hh (3H, H)``, ``bias_ih (3H,)``, ``bias_hh (3H,)``::

    r_t = sigmoid(x_t W_irT + b_ir + h_{t-1} W_hrT + b_hr)     reset gate
    z_t = sigmoid(x_t W_izT + b_iz + h_{t-1} W_hzT + b_hz)     update gate
    m_t = h_{t-1} W_hnT + b_hn                                 kept apart: r scales it
    n_t = tanh(x_t W_inT + b_in + r_t * m_t)                   candidate
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

Backward, with ``eps_t = dL/dh_t`` (``dy_t`` plus what step t+1 sends back)::

    dn_t = eps_t * (1 - z_t) * (1 - n_t^2)                     at n's pre-activation
    dz_t = eps_t * (h_{t-1} - n_t) * z_t (1 - z_t)
    dr_t = dn_t * m_t * r_t (1 - r_t)
    dm_t = dn_t * r_t                                          the recurrent n block
    eps_{t-1} = dy_{t-1} + eps_t * z_t + [dr_t, dz_t, dm_t] W_hh
    dW_ih = sum_t [dr, dz, dn]_tT x_t        db_ih = sum_t sum_rows [dr, dz, dn]_t
    dW_hh = sum_t [dr, dz, dm]_tT h_{t-1}    db_hh = sum_t sum_rows [dr, dz, dm]_t
    dx_t  = [dr, dz, dn]_t W_ih

Unlike the RNN's and LSTM's, the input-side and recurrent-side gate gradients
differ (in the n block), so they are two arrays.
"""

import numpy as np

from ._cell_inputs import cell_inputs, incoming_grad
from .activations import activation_forward

__all__ = ["gru_forward", "gru_backward"]


def _sigmoid(z):
    return activation_forward(z, "sigmoid")


def gru_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh):
    """Run a GRU over a whole sequence.

    Parameters
    ----------
    x : ndarray, shape (T, B, I)
        Inputs, time-major.
    h0 : ndarray, shape (B, H), or None
        Initial state; ``None`` means zeros.
    weight_ih : ndarray, shape (3H, I)
        ``[W_ir; W_iz; W_in]``.
    weight_hh : ndarray, shape (3H, H)
        ``[W_hr; W_hz; W_hn]``.
    bias_ih, bias_hh : ndarray, shape (3H,)

    Returns
    -------
    y : ndarray, shape (T, B, H)
        Every ``h_t``, ``t = 1..T``.
    h_n : ndarray, shape (B, H)
        ``h_T`` (``h0`` when ``T = 0``).
    cache : dict
        ``"x"``, ``"h0"`` (the initial state used), ``"weight_ih"``,
        ``"weight_hh"``, ``"y"``, ``"gates"`` (T, B, 3H): r, z, n after their
        nonlinearities, and ``"m"`` (T, B, H): ``h_{t-1} W_hnT + b_hn``.
    """
    dt, x, (h0,), W_ih, W_hh, b_ih, b_hh, H = cell_inputs(
        "gru", 3, x, {"h0": h0}, weight_ih, weight_hh, bias_ih, bias_hh)
    T, B, I = x.shape

    # input side of every step at once: x_t W_ihT + b_ih, blocks r, z, n
    a_in = (x.reshape(T * B, I) @ W_ih.T + b_ih).reshape(T, B, 3 * H)
    y = np.empty((T, B, H), dtype=dt)
    gates = np.empty((T, B, 3 * H), dtype=dt)
    m = np.empty((T, B, H), dtype=dt)
    h = h0
    for t in range(T):
        a_rec = h @ W_hh.T + b_hh                       # h_{t-1} W_hhT + b_hh, blocks r, z, n
        r = _sigmoid(a_in[t, :, :H] + a_rec[:, :H])
        z = _sigmoid(a_in[t, :, H:2 * H] + a_rec[:, H:2 * H])
        m[t] = a_rec[:, 2 * H:]                         # m_t = h_{t-1} W_hnT + b_hn
        n = np.tanh(a_in[t, :, 2 * H:] + r * m[t])
        h = (1 - z) * n + z * h                         # h_t
        gates[t, :, :H], gates[t, :, H:2 * H], gates[t, :, 2 * H:] = r, z, n
        y[t] = h
    cache = {"x": x, "h0": h0, "weight_ih": W_ih, "weight_hh": W_hh, "y": y,
             "gates": gates, "m": m}
    return y, h.copy(), cache


def gru_backward(dy, dh_n, cache):
    """Backpropagation through time for :func:`gru_forward`.

    Parameters
    ----------
    dy : ndarray, shape (T, B, H), or None
        ``dL/dh_t`` from above at every step (None: zeros).
    dh_n : ndarray, shape (B, H), or None
        Extra ``dL/dh_T`` from the final state (None: zeros).
    cache : dict
        From :func:`gru_forward`.

    Returns
    -------
    grads : dict
        ``"x"`` (T, B, I), ``"h0"`` (B, H), ``"weight_ih"`` (3H, I),
        ``"weight_hh"`` (3H, H), ``"bias_ih"`` (3H,), ``"bias_hh"`` (3H,).
    """
    x, h0, y = cache["x"], cache["h0"], cache["y"]
    W_ih, W_hh, gates, m = cache["weight_ih"], cache["weight_hh"], cache["gates"], cache["m"]
    T, B, I = x.shape
    H = h0.shape[1]
    dt = y.dtype
    dy = incoming_grad("gru", dy, (T, B, H), "dy", dt)
    dh_n = incoming_grad("gru", dh_n, (B, H), "dh_n", dt)

    h_prev = np.concatenate([h0[None], y], axis=0)[:T]  # h_{t-1}, t = 1..T: (T, B, H)
    d_in = np.empty((T, B, 3 * H), dtype=dt)           # [dr, dz, dn]: input-side gate gradients
    d_rec = np.empty((T, B, 3 * H), dtype=dt)          # [dr, dz, dm]: recurrent-side
    dh_next = dh_n                                     # what step t+1 sends to h_t
    for t in range(T - 1, -1, -1):
        r, z, n = gates[t, :, :H], gates[t, :, H:2 * H], gates[t, :, 2 * H:]
        eps = dy[t] + dh_next                          # dL/dh_t
        dn = eps * (1 - z) * (1 - n * n)
        dz = eps * (h_prev[t] - n) * z * (1 - z)
        dr = dn * m[t] * r * (1 - r)
        d_in[t, :, :H], d_in[t, :, H:2 * H], d_in[t, :, 2 * H:] = dr, dz, dn
        d_rec[t, :, :H], d_rec[t, :, H:2 * H], d_rec[t, :, 2 * H:] = dr, dz, dn * r
        dh_next = eps * z + d_rec[t] @ W_hh            # dL/dh_{t-1} from step t
    G_in = d_in.reshape(T * B, 3 * H)
    G_rec = d_rec.reshape(T * B, 3 * H)
    return {"x": (G_in @ W_ih).reshape(T, B, I),      # dX(T*B,I) = dG_in(T*B,3H) @ W_ih(3H,I)
            "h0": np.array(dh_next, dtype=dt),
            "weight_ih": G_in.T @ x.reshape(T * B, I),           # (3H,I) = dG_inT @ X
            "weight_hh": G_rec.T @ h_prev.reshape(T * B, H),     # (3H,H) = dG_recT @ H_prev
            "bias_ih": G_in.sum(axis=0), "bias_hh": G_rec.sum(axis=0)}
