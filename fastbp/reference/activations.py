"""Activations and their derivatives (docs/equations.md §1).

Every derivative is written from what the forward pass kept, the activated
output ``a = f(z)``, never from ``z`` itself (DESIGN.md: "Activation derivatives
use the forward output"):

==========  =====================  ===========================================
name        f(z)                   f'(z) from a = f(z)
==========  =====================  ===========================================
identity    z                      1
sigmoid     1 / (1 + e^-z)         a (1 - a)
tanh        tanh z                 1 - a^2
relu        max(0, z)              1[a > 0]   (same as 1[z > 0]; 0 at z = 0)
softmax     e^z_i / sum_m e^z_m    JVP: dz = a * (da - <da, a>)  (row-wise)
==========  =====================  ===========================================

Softmax is a vector function over the last axis; its backward never forms the
Jacobian ``ds_j/dz_i = delta_ij s_i - s_i s_j``, it applies the Jacobian-vector
product directly.
"""

import numpy as np

__all__ = ["ACTIVATIONS", "activation_forward", "activation_backward"]

ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "softmax")


def _float_dtype(*arrays):
    """Floating dtype in which the reference computes for the given inputs.

    The result type of the inputs if it is floating (float32 stays float32,
    any float64 input promotes to float64), float64 otherwise (e.g. integer
    inputs). ``None`` entries are ignored.
    """
    dts = [np.asarray(a).dtype for a in arrays if a is not None]
    if not dts:
        return np.dtype(np.float64)
    dt = np.result_type(*dts)
    if not np.issubdtype(dt, np.floating):
        return np.dtype(np.float64)
    return np.dtype(dt)


def _check_name(name):
    if name not in ACTIVATIONS:
        raise ValueError(
            "unknown activation %r; expected one of %s" % (name, ", ".join(ACTIVATIONS))
        )


def _sigmoid(z):
    # Stable logistic: with e = exp(-|z|) in (0, 1] nothing overflows.
    #   z >= 0:  1 / (1 + e^-z)
    #   z <  0:  e^z / (1 + e^z)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def _softmax(z):
    # s_i = e^{z_i - max} / sum_m e^{z_m - max}; subtracting the row max keeps
    # every exponent <= 0 (no overflow) and leaves s unchanged.
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def activation_forward(z, name):
    """Apply an activation elementwise (softmax: row-wise over the last axis).

    Parameters
    ----------
    z : ndarray, shape (..., n)
        Pre-activations. Computation happens in ``z``'s floating dtype
        (non-floating input is promoted to float64).
    name : {"identity", "sigmoid", "tanh", "relu", "softmax"}

    Returns
    -------
    a : ndarray, shape (..., n)
        ``f(z)``, a new array (never a view of ``z``).

    Raises
    ------
    ValueError
        Unknown ``name``, or softmax on a 0-d array.
    """
    _check_name(name)
    z = np.asarray(z)
    z = z.astype(_float_dtype(z), copy=False)
    if name == "identity":
        return z.copy()
    if name == "sigmoid":
        return _sigmoid(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0).astype(z.dtype, copy=False)
    # softmax
    if z.ndim == 0:
        raise ValueError("softmax needs at least one axis, got a 0-d array")
    return _softmax(z)


def activation_backward(da, a, name):
    """Backpropagate through an activation, using its forward OUTPUT.

    Parameters
    ----------
    da : ndarray, shape (..., n)
        ``dL/da``, the gradient wrt the activated output.
    a : ndarray, shape (..., n)
        The forward output ``a = f(z)``.
    name : {"identity", "sigmoid", "tanh", "relu", "softmax"}

    Returns
    -------
    dz : ndarray, shape (..., n)
        ``dL/dz``: ``da * f'(z)`` for the elementwise activations (table in
        the module docstring), and for softmax the row-wise JVP
        ``dz = a * (da - <da, a>)`` (docs/equations.md §1).

    Raises
    ------
    ValueError
        Unknown ``name`` or ``da.shape != a.shape``.
    """
    _check_name(name)
    da = np.asarray(da)
    a = np.asarray(a)
    if da.shape != a.shape:
        raise ValueError(
            "activation_backward: da has shape %s but a has shape %s" % (da.shape, a.shape)
        )
    dt = _float_dtype(da, a)
    da = da.astype(dt, copy=False)
    a = a.astype(dt, copy=False)
    if name == "identity":
        return da.copy()                                  # f' = 1
    if name == "sigmoid":
        return da * a * (1 - a)                           # f' = a (1 - a)
    if name == "tanh":
        return da * (1 - a * a)                           # f' = 1 - a^2
    if name == "relu":
        # f' = 1[z > 0], 0 at 0; a select (as torch's threshold_backward and the
        # compiled kernels), so an inf or NaN da where a <= 0 gives 0, not NaN
        return np.where(a > 0, da, dt.type(0))
    # softmax JVP: dz = a * (da - <da, a>) along the last axis
    return a * (da - np.sum(da * a, axis=-1, keepdims=True))
