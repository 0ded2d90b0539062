"""Losses and L2 regularisation (docs/equations.md §2, §3).

Every loss returns ``(loss, grad)``. The last axis holds the outputs (or
classes); every leading axis is a row, and the loss is the MEAN over
``rows = prod(shape[:-1])`` rows: the batch ``B`` for an MLP, ``T*B`` for a
time-major sequence ``(T, B, K)``, i.e. mean over the batch and mean over time
(§2: "every gradient carries 1/m", ``L = (1/T) sum_t l(o_t, y_t)``).
The loss is returned as a NumPy scalar of the computation dtype.
"""

import numpy as np

from .activations import _float_dtype

__all__ = ["SQUARED_ERROR_FORMS", "squared_error", "softmax_cross_entropy", "l2_penalty"]

SQUARED_ERROR_FORMS = ("sum", "half_mean")


def _rows(shape):
    """Number of rows: the product of all leading dimensions (1 for 1-d)."""
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    if rows == 0 or shape[-1] == 0:
        raise ValueError("loss of an empty array (shape %s) is undefined" % (shape,))
    return rows


def squared_error(pred, target, form="sum"):
    """Squared error, mean over rows (docs/equations.md §2, seed 004).

    Parameters
    ----------
    pred : ndarray, shape (..., O)
        Predictions ``y_hat``.
    target : ndarray, shape (..., O)
        Targets ``y``.
    form : {"sum", "half_mean"}
        ``"sum"`` (default, the notes' form): per row ``l = sum_j (y_j - y_hat_j)^2``,
        ``L = (1/rows) sum_rows l``, so ``dL/dy_hat = -2 (y - y_hat) / rows``.
        Equals torch's ``((y - y_hat)**2).sum(-1).mean()``.

        ``"half_mean"`` (documented option): ``L = 1/2 * mean over all elements``
        ``= sum (y - y_hat)^2 / (2 rows O)``, so
        ``dL/dy_hat = -(y - y_hat) / (rows O)``. Equals ``0.5 * F.mse_loss``.

    Returns
    -------
    loss : scalar of the computation dtype
    dpred : ndarray, shape (..., O)
        ``dL/dy_hat``.

    Raises
    ------
    ValueError
        Unknown ``form``, shape mismatch, or 0-d ``pred``.
    """
    if form not in SQUARED_ERROR_FORMS:
        raise ValueError(
            "unknown squared_error form %r; expected one of %s"
            % (form, ", ".join(SQUARED_ERROR_FORMS))
        )
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.ndim == 0:
        raise ValueError("squared_error: pred must have at least one axis (..., O)")
    if pred.shape != target.shape:
        raise ValueError(
            "squared_error: pred has shape %s but target has shape %s" % (pred.shape, target.shape)
        )
    dt = _float_dtype(pred, target)
    y_hat = pred.astype(dt, copy=False)
    y = target.astype(dt, copy=False)
    rows = _rows(y_hat.shape)
    r = y - y_hat                                       # residual y - y_hat
    if form == "sum":
        scale = dt.type(1.0 / rows)                     # 1/rows
        loss = np.sum(r * r) * scale                    # (1/rows) sum (y - y_hat)^2
        dpred = -2 * scale * r                          # -2 (y - y_hat) / rows
    else:
        n = rows * y_hat.shape[-1]
        scale = dt.type(1.0 / n)                        # 1/(rows O)
        loss = np.sum(r * r) * (scale / 2)              # 1/2 mean (y - y_hat)^2
        dpred = -scale * r                              # -(y - y_hat) / (rows O)
    return dt.type(loss), dpred.astype(dt, copy=False)


def softmax_cross_entropy(logits, target):
    """Softmax cross-entropy with the fused gradient (docs/equations.md §2, seeds 001/002).

    ``y_hat = softmax(a)`` over the last axis and, per row,
    ``l = -sum_k z_k ln y_hat_k``; ``L = (1/rows) sum_rows l``. The log-softmax is
    computed with log-sum-exp, ``ln y_hat_k = a_k - max(a) - ln sum_m e^{a_m - max(a)}``,
    so the loss stays finite for logits as large as +-1e4 (no ``ln 0``).

    Parameters
    ----------
    logits : ndarray, shape (..., K)
        The PRE-softmax activations ``a``.
    target : ndarray, shape (...) or (..., K)
        Either integer class labels in ``[0, K)`` of shape ``logits.shape[:-1]``,
        or a float one-hot / probability array ``z`` of the same shape as ``logits``
        whose rows sum to 1.

    Returns
    -------
    loss : scalar of the computation dtype
    dlogits : ndarray, shape (..., K)
        ``dL/da = (y_hat sum_k z_k - z) / rows``, which is the fused
        ``(y_hat - z) / rows`` of the notes for one-hot / probability targets
        (rows summing to 1). The ``sum_k z_k`` factor only matters for targets
        that are not distributions, where it keeps this the exact gradient
        (as torch does).

    Raises
    ------
    ValueError
        Target of the wrong shape, non-integer labels, labels out of range.
    """
    a = np.asarray(logits)
    target = np.asarray(target)
    if a.ndim == 0:
        raise ValueError("softmax_cross_entropy: logits must have at least one axis (..., K)")
    K = a.shape[-1]
    if target.shape == a.shape[:-1]:
        if not np.issubdtype(target.dtype, np.integer):
            raise ValueError(
                "softmax_cross_entropy: labels of shape %s must be integers, got dtype %s"
                % (target.shape, target.dtype)
            )
        if target.size and (target.min() < 0 or target.max() >= K):
            raise ValueError(
                "softmax_cross_entropy: labels must lie in [0, %d), got range [%d, %d]"
                % (K, target.min(), target.max())
            )
        labels = target
        z = None
        dt = _float_dtype(a)
    elif target.shape == a.shape:
        labels = None
        dt = _float_dtype(a, target)
        z = target.astype(dt, copy=False)
    else:
        raise ValueError(
            "softmax_cross_entropy: target must have shape %s (labels) or %s "
            "(one-hot/probabilities), got %s" % (a.shape[:-1], a.shape, target.shape)
        )
    a = a.astype(dt, copy=False)
    rows = _rows(a.shape)
    scale = dt.type(1.0 / rows)

    # log-sum-exp: ln y_hat = a - max - ln sum e^{a - max}
    shifted = a - np.max(a, axis=-1, keepdims=True)
    log_y_hat = shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
    y_hat = np.exp(log_y_hat)

    if labels is not None:
        # integer labels -> one-hot z (z_k = 1[k == label])
        z = (np.arange(K) == labels[..., None]).astype(dt)
    loss = -np.sum(z * log_y_hat) * scale             # -(1/rows) sum z_k ln y_hat_k
    z_sum = np.sum(z, axis=-1, keepdims=True)         # 1 for one-hot / distributions
    dlogits = (y_hat * z_sum - z) * scale             # (y_hat - z) / rows
    return dt.type(loss), dlogits.astype(dt, copy=False)


def l2_penalty(weights, lam):
    """L2 weight penalty (docs/equations.md §3).

    ``s = (lam/2) sum_l ||W^(l)||_F^2`` and ``ds/dW^(l) = lam W^(l)``. Only the
    weights passed in are penalised: pass weight matrices, never biases.

    The convention is the plain ``lam/2``: the batch-scaled ``lam/(2m)`` of seed 002
    (giving ``+ (lam/m) W``) is NOT used; a caller who wants it passes ``lam/m``.

    Parameters
    ----------
    weights : sequence of ndarray
        The weight matrices ``W^(l)`` (any shapes).
    lam : float
        ``lambda >= 0``.

    Returns
    -------
    value : scalar of the computation dtype
        ``(lam/2) sum_l ||W^(l)||_F^2`` (0 for an empty list).
    grads : list of ndarray
        ``lam W^(l)``, same shapes as ``weights``.

    Raises
    ------
    ValueError
        Negative or non-finite ``lam``.
    """
    lam = float(lam)
    if not np.isfinite(lam) or lam < 0:
        raise ValueError("l2_penalty: lam must be a finite number >= 0, got %r" % lam)
    weights = [np.asarray(W) for W in weights]
    dt = _float_dtype(*weights)
    weights = [W.astype(dt, copy=False) for W in weights]
    lam_ = dt.type(lam)
    value = dt.type(0)
    for W in weights:
        value = value + np.sum(W * W)
    value = dt.type(value * (lam_ / 2))
    grads = [lam_ * W for W in weights]
    return value, grads
