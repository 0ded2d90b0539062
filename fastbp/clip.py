"""Gradient clipping by global norm, for the exploding gradients of BPTT.

``clip_grad_norm(grads, max_norm)`` is ``torch.nn.utils.clip_grad_norm_``
for NumPy arrays: the L2 norm of all gradients taken together as one vector,
``‖g‖ = sqrt(Σ_arrays Σ_entries g²)``; when it exceeds ``max_norm`` every
array is scaled in place by ``max_norm / (‖g‖ + 1e-6)``, so the direction of
the update is kept and only its length is capped. The norm before clipping is
returned, to log or to detect divergence.
"""
import math
import numbers
from collections.abc import Mapping

import numpy as np

__all__ = ["clip_grad_norm"]

_EPS = 1e-6   # as torch: keeps the scale finite for a zero norm and the result just under max_norm


def _arrays(grads, name="grads"):
    """The gradient arrays of a dict, list or tuple, nested to any depth, in order."""
    if isinstance(grads, np.ndarray):
        return [(name, grads)]
    if isinstance(grads, Mapping):
        items = [(f"{name}[{k!r}]", v) for k, v in grads.items()]
    elif isinstance(grads, (list, tuple)):
        items = [(f"{name}[{i}]", v) for i, v in enumerate(grads)]
    else:
        raise TypeError(f"{name}: expected a NumPy array, or a dict / list / tuple of them, "
                        f"got {type(grads).__name__}")
    out = []
    for sub, v in items:
        if v is not None:          # an absent gradient (e.g. a frozen parameter) is skipped
            out.extend(_arrays(v, sub))
    return out


def clip_grad_norm(grads, max_norm, error_if_nonfinite=False):
    """Scale gradients in place so that their global L2 norm is at most max_norm.

    Parameters
    ----------
    grads : ndarray, or dict / list / tuple of ndarrays (nested to any depth)
        Floating-point gradient arrays, modified in place (so they must be
        writeable ndarrays). ``None`` entries are skipped.
    max_norm : float > 0
    error_if_nonfinite : bool
        If True, raise ValueError when the norm is NaN or infinite. If False
        (default), such gradients are left unchanged and the non-finite norm
        is returned, for the caller to skip the update.

    Returns
    -------
    total_norm : float
        ``sqrt(Σ g²)`` over every entry of every array, before clipping,
        accumulated in float64.
    """
    if (isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real)
            or not math.isfinite(max_norm) or max_norm <= 0):
        raise ValueError(f"max_norm: expected a finite number > 0, got {max_norm!r}")
    arrays = _arrays(grads)
    for name, g in arrays:
        if g.dtype.kind != "f":
            raise TypeError(f"{name}: expected a floating-point array, got dtype {g.dtype}")
        if not g.flags.writeable:
            raise ValueError(f"{name}: the array is read-only; clip_grad_norm scales in place")
    # float64 sums in a fixed order (NumPy's pairwise sum, no BLAS): deterministic
    total = math.sqrt(sum(float(np.square(g, dtype=np.float64).sum()) for _, g in arrays))
    if not math.isfinite(total):
        if error_if_nonfinite:
            raise ValueError(f"grads: the total norm is {total}; the gradients contain NaN or "
                             "infinity and are left unchanged")
        return total
    scale = max_norm / (total + _EPS)
    if scale < 1.0:
        for _, g in arrays:
            g *= g.dtype.type(scale)
    return total
