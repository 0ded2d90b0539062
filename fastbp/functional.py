"""Compiled activations and losses with the reference's signatures.

Each function mirrors the one of the same name in ``fastbp.reference`` and is
checked against it in the tests. Arrays may have any number of leading
dimensions: activations and losses act on the last axis, and a loss is the
mean over all leading "rows" (the batch, or T·B for a sequence), docs/equations.md §2,
so the loss of an empty array is undefined and refused (ValueError), as in
the reference.
The dtype is the first argument's (float32 or float64; other real inputs are
computed in float64); the other arrays are converted to it.
"""
import numpy as np

from . import _core
from ._validate import as_array, choice, float_array, label_array

ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "softmax")
MSE_FORMS = ("sum", "half_mean")


def activation_code(name, argname="activation"):
    """The C kernels' integer code for an activation name."""
    return _core.ACTIVATION_CODES[choice(name, argname, ACTIVATIONS)]


def _as_rows(a):
    """A 2-D (rows, last) view of a C-contiguous array (1-D is one row)."""
    return a.reshape(-1, a.shape[-1])


def activation_forward(z, name):
    """a = f(z), elementwise (softmax: row-wise over the last axis). Shape of z."""
    code = activation_code(name, "name")
    z = float_array(z, "z", finite=False)
    if z.ndim == 0:
        raise ValueError("z: expected an array of shape (..., n), got a scalar")
    a = np.empty_like(z)
    if z.size:
        _core.activation_forward(_as_rows(a), _as_rows(z), code)
    return a


def activation_backward(da, a, name):
    """dz = da ⊙ f'(z) written from the forward output a (softmax: JVP). Shape of a."""
    code = activation_code(name, "name")
    a = float_array(a, "a", finite=False)
    da = float_array(da, "da", dtype=a.dtype, shape=a.shape, finite=False)
    dz = np.empty_like(a)
    if a.ndim == 0:
        raise ValueError("a: expected an array of shape (..., n), got a scalar")
    if a.size:
        _core.activation_backward(_as_rows(dz), _as_rows(a), _as_rows(da), code)
    return dz


def softmax_cross_entropy(logits, target):
    """Mean softmax cross-entropy and its fused gradient, docs/equations.md §2.

    logits: (..., K) pre-softmax activations. target: integer labels (...) or a
    one-hot / probability array (..., K) of any real dtype (told apart by the
    shape, as in the reference). Returns (loss, dlogits) with
    loss = −(1/rows) Σ z ln ŷ and dlogits = (ŷ − z)/rows, rows = prod(...).
    """
    logits = float_array(logits, "logits")
    if logits.ndim < 1 or logits.size == 0:
        raise ValueError(f"logits: expected shape (..., K) with K >= 1 and at least one row "
                         f"(the mean over no rows is undefined), got {logits.shape}")
    rows = logits.size // logits.shape[-1]
    dlogits = np.empty_like(logits)
    t = as_array(target, "target")
    if t.ndim == logits.ndim - 1:
        labels = label_array(t, "target", logits.shape[-1], shape=logits.shape[:-1])
        loss = _core.softmax_xent_labels(_as_rows(dlogits), _as_rows(logits),
                                         labels.reshape(-1), 1.0 / rows)
    else:
        probs = float_array(t, "target", dtype=logits.dtype, shape=logits.shape)
        loss = _core.softmax_xent_probs(_as_rows(dlogits), _as_rows(logits), _as_rows(probs), 1.0 / rows)
    return loss, dlogits


def squared_error(pred, target, form="sum"):
    """Squared error and its gradient, docs/equations.md §2.

    form="sum" (the notes): loss = (1/rows) Σ (y − ŷ)², summed over outputs and
    averaged over rows; dpred = −2 (y − ŷ)/rows. form="half_mean": ½ · the mean
    over every element, dpred = (ŷ − y)/(rows·O).
    """
    choice(form, "form", MSE_FORMS)
    pred = float_array(pred, "pred")
    if pred.ndim < 1 or pred.size == 0:
        raise ValueError(f"pred: expected shape (..., O) with O >= 1 and at least one row "
                         f"(the mean over no rows is undefined), got {pred.shape}")
    target = float_array(target, "target", dtype=pred.dtype, shape=pred.shape)
    dpred = np.empty_like(pred)
    rows = pred.size // pred.shape[-1]
    scale = 1.0 / rows if form == "sum" else 0.5 / pred.size
    loss = _core.squared_error(_as_rows(dpred), _as_rows(pred), _as_rows(target), scale)
    return loss, dpred
