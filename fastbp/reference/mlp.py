"""Multilayer perceptron, forward and backward (docs/equations.md §4).

Layout follows PyTorch's ``nn.Linear``: ``W^(l)`` has shape ``(n_l, n_{l-1})``,
a layer is ``Z^(l) = A^(l-1) W^(l)T + b^(l)``. Batches are rows.

Forward::

    A^(0) = X
    Z^(l) = A^(l-1) W^(l)T + b^(l)
    A^(l) = f_l(Z^(l))

Backward, from ``Delta^(L) = dL/dZ^(L)``::

    dL/dW^(l)   = Delta^(l)T A^(l-1)          (+ lam W^(l))
    dL/db^(l)   = sum_rows Delta^(l)
    dL/dA^(l-1) = Delta^(l) W^(l)
    Delta^(l-1) = dL/dA^(l-1) * f'_{l-1}       (softmax: the JVP, §1)
"""

import numpy as np

from .activations import _float_dtype, activation_backward, activation_forward
from .losses import l2_penalty, softmax_cross_entropy, squared_error

__all__ = ["MLP_LOSSES", "mlp_forward", "mlp_backward", "mlp_loss_and_grad"]

MLP_LOSSES = ("cross_entropy", "mse")


def _check_params(x, params, activations):
    if x.ndim != 2:
        raise ValueError("mlp: x must have shape (B, n0), got %s" % (x.shape,))
    if len(params) != len(activations):
        raise ValueError(
            "mlp: %d layers of params but %d activations" % (len(params), len(activations))
        )
    if len(params) == 0:
        raise ValueError("mlp: need at least one layer")
    n_prev = x.shape[1]
    for l, (W, b) in enumerate(params, start=1):
        W = np.asarray(W)
        b = np.asarray(b)
        if W.ndim != 2 or W.shape[1] != n_prev:
            raise ValueError(
                "mlp: W of layer %d must have shape (n_%d, %d), got %s" % (l, l, n_prev, W.shape)
            )
        if b.shape != (W.shape[0],):
            raise ValueError(
                "mlp: b of layer %d must have shape (%d,), got %s" % (l, W.shape[0], b.shape)
            )
        n_prev = W.shape[0]


def mlp_forward(x, params, activations):
    """Forward pass of an MLP (docs/equations.md §4).

    Parameters
    ----------
    x : ndarray, shape (B, n0)
        Input batch ``A^(0) = X``.
    params : list of (W, b)
        One pair per layer ``l = 1..L``: ``W`` of shape ``(n_l, n_{l-1})``,
        ``b`` of shape ``(n_l,)``.
    activations : list of str
        One activation name per layer (see ``ACTIVATIONS``); the last is the
        output activation.

    Returns
    -------
    out : ndarray, shape (B, n_L)
        ``A^(L)``, the output after the output activation.
    cache : dict
        What backward needs:

        ``"A"``: list of ``A^(0) .. A^(L)`` (``A^(0) = x``), shapes ``(B, n_l)``;
        ``"Z"``: list of ``Z^(1) .. Z^(L)``, shapes ``(B, n_l)`` (the fused
        cross-entropy of ``mlp_loss_and_grad`` reads ``Z^(L)``);
        ``"params"``: the ``(W, b)`` pairs as used (computation dtype);
        ``"activations"``: the activation names.

    Notes
    -----
    Computation happens in the common floating dtype of ``x`` and the params
    (float32 stays float32).
    """
    x = np.asarray(x)
    activations = list(activations)
    _check_params(x, params, activations)
    dt = _float_dtype(x, *[a for Wb in params for a in Wb])
    params = [(np.asarray(W, dtype=dt), np.asarray(b, dtype=dt)) for W, b in params]

    A = [x.astype(dt, copy=False)]                     # A^(0) = X
    Z = []
    for (W, b), f in zip(params, activations):
        Z_l = A[-1] @ W.T + b                          # Z^(l) = A^(l-1) W^(l)T + b^(l)
        Z.append(Z_l)
        A.append(activation_forward(Z_l, f))           # A^(l) = f_l(Z^(l))
    cache = {"A": A, "Z": Z, "params": params, "activations": activations}
    return A[-1], cache


def _mlp_backward_from_delta(delta_L, cache):
    """Backward pass from ``Delta^(L) = dL/dZ^(L)`` (shape (B, n_L)).

    Returns the list of ``(dW, db)`` pairs, same structure as the params.
    """
    A, params, activations = cache["A"], cache["params"], cache["activations"]
    L = len(params)
    grads = [None] * L
    delta = delta_L                                    # Delta^(L)
    for l in range(L, 0, -1):                          # l = L .. 1
        W, _ = params[l - 1]
        A_prev = A[l - 1]                              # A^(l-1)
        dW = delta.T @ A_prev                          # dL/dW^(l) = Delta^(l)T A^(l-1)
        db = np.sum(delta, axis=0)                     # dL/db^(l) = sum_rows Delta^(l)
        grads[l - 1] = (dW, db)
        if l > 1:
            dA_prev = delta @ W                        # dL/dA^(l-1) = Delta^(l) W^(l)
            # Delta^(l-1) = dL/dA^(l-1) * f'_{l-1}, written from A^(l-1)
            delta = activation_backward(dA_prev, A_prev, activations[l - 2])
    return grads


def mlp_backward(dout, cache):
    """Backward pass of an MLP from the gradient wrt its output.

    Parameters
    ----------
    dout : ndarray, shape (B, n_L)
        ``dL/dA^(L)``, the gradient wrt the output AFTER the output activation.
    cache : dict
        From :func:`mlp_forward`.

    Returns
    -------
    grads : list of (dW, db)
        Same structure as the params: ``dW`` (n_l, n_{l-1}), ``db`` (n_l,).
    """
    A_L = cache["A"][-1]
    dt = A_L.dtype
    dout = np.asarray(dout)
    if dout.shape != A_L.shape:
        raise ValueError(
            "mlp_backward: dout must have shape %s, got %s" % (A_L.shape, dout.shape)
        )
    # Delta^(L) = dL/dA^(L) * f'_L (softmax output: the JVP)
    delta_L = activation_backward(dout.astype(dt, copy=False), A_L, cache["activations"][-1])
    return _mlp_backward_from_delta(delta_L, cache)


def mlp_loss_and_grad(x, y, params, activations, loss="cross_entropy", l2=0.0, mse_form="sum"):
    """Loss (mean over the batch) and gradients of an MLP.

    Parameters
    ----------
    x : ndarray, shape (B, n0)
    y : ndarray
        ``"cross_entropy"``: integer labels (B,) or one-hot/probabilities (B, n_L).
        ``"mse"``: targets (B, n_L).
    params : list of (W, b)
        As in :func:`mlp_forward`.
    activations : list of str
        One per layer; the last is the output activation.
    loss : {"cross_entropy", "mse"}
        ``"cross_entropy"`` requires the output activation ``"softmax"`` and uses
        the FUSED gradient on the last pre-activation,
        ``Delta^(L) = (y_hat - z) / B`` (§2), computed from ``Z^(L)`` with
        log-sum-exp. ``"mse"`` applies :func:`squared_error` to the output
        ``A^(L)`` (any output activation, softmax included, as in seed 004) and
        backpropagates through the output activation.
    l2 : float
        ``lambda`` of the L2 penalty (§3): adds ``(lambda/2) sum_l ||W^(l)||_F^2``
        to the loss and ``lambda W^(l)`` to each ``dW^(l)``; biases are not
        penalised; no ``1/m`` batch scaling (see :func:`l2_penalty`).
    mse_form : {"sum", "half_mean"}
        Form of the squared error, see :func:`squared_error`.

    Returns
    -------
    loss : scalar of the computation dtype
    grads : list of (dW, db)
        Same structure as ``params``.

    Raises
    ------
    ValueError
        Unknown loss, cross-entropy without a softmax output, bad shapes.
    """
    if loss not in MLP_LOSSES:
        raise ValueError("unknown loss %r; expected one of %s" % (loss, ", ".join(MLP_LOSSES)))
    activations = list(activations)
    if loss == "cross_entropy" and (not activations or activations[-1] != "softmax"):
        raise ValueError(
            "loss='cross_entropy' needs the output activation 'softmax', got %r"
            % (activations[-1] if activations else None,)
        )
    out, cache = mlp_forward(x, params, activations)
    dt = out.dtype
    if loss == "cross_entropy":
        # fused: Delta^(L) = dL/dZ^(L) = (y_hat - z) / B
        y = np.asarray(y)
        if np.issubdtype(y.dtype, np.floating):
            y = y.astype(dt, copy=False)               # one-hot z in the computation dtype
        value, delta_L = softmax_cross_entropy(cache["Z"][-1], y)
    else:
        # dL/dA^(L) = -2 (y - y_hat) / B, then through f'_L
        value, dout = squared_error(out, np.asarray(y).astype(dt, copy=False), form=mse_form)
        delta_L = activation_backward(dout, out, activations[-1])
    grads = _mlp_backward_from_delta(delta_L.astype(dt, copy=False), cache)

    if l2:
        s, dW_pen = l2_penalty([W for W, _ in cache["params"]], l2)   # s = (lam/2) sum ||W||^2
        value = dt.type(value + s)                                    # J = L + s
        grads = [(dW + g, db) for (dW, db), g in zip(grads, dW_pen)]  # dJ/dW = dL/dW + lam W
    return dt.type(value), grads
