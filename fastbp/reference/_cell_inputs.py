"""The arguments every reference recurrent cell takes, converted and checked once:
forward's inputs and weights (:func:`cell_inputs`), backward's incoming
gradients (:func:`incoming_grad`).

A cell with G gate blocks has ``weight_ih (G·H, I)``, ``weight_hh (G·H, H)``,
``bias_ih``, ``bias_hh (G·H,)`` and initial states of ``(B, H)`` (``None``:
zeros), over time-major inputs ``x (T, B, I)``; everything is computed in the
common floating dtype of the arrays.
"""
import numpy as np

from .activations import _float_dtype


def cell_inputs(cell, gates, x, states, weight_ih, weight_hh, bias_ih, bias_hh, extra=()):
    """Check and convert one cell's arguments.

    cell: the name in messages ("lstm"); gates: G; states: {name: array or
    None}, in order; extra: further arrays that only decide the dtype
    (peepholes). Returns (dt, x, [states...], W_ih, W_hh, b_ih, b_hh, H).
    """
    dt = _float_dtype(x, *states.values(), weight_ih, weight_hh, bias_ih, bias_hh, *extra)
    x = np.asarray(x, dtype=dt)
    W_ih, W_hh = np.asarray(weight_ih, dtype=dt), np.asarray(weight_hh, dtype=dt)
    b_ih, b_hh = np.asarray(bias_ih, dtype=dt), np.asarray(bias_hh, dtype=dt)
    if x.ndim != 3:
        raise ValueError("%s: x must have shape (T, B, I), got %s" % (cell, x.shape))
    T, B, I = x.shape
    rows = "%dH" % gates if gates > 1 else "H"
    if W_ih.ndim != 2 or W_ih.shape[1] != I or W_ih.shape[0] % gates:
        raise ValueError("%s: weight_ih must have shape (%s, %d), got %s" % (cell, rows, I, W_ih.shape))
    H = W_ih.shape[0] // gates
    for name, arr, shape in (("weight_hh", W_hh, (gates * H, H)), ("bias_ih", b_ih, (gates * H,)),
                             ("bias_hh", b_hh, (gates * H,))):
        if arr.shape != shape:
            raise ValueError("%s: %s must have shape %s, got %s" % (cell, name, shape, arr.shape))
    converted = []
    for name, s in states.items():
        if s is None:
            s = np.zeros((B, H), dtype=dt)
        else:
            s = np.asarray(s, dtype=dt)
            if s.shape != (B, H):
                raise ValueError("%s: %s must have shape %s, got %s" % (cell, name, (B, H), s.shape))
        converted.append(s)
    return dt, x, converted, W_ih, W_hh, b_ih, b_hh, H


def incoming_grad(cell, g, shape, name, dt):
    """A gradient backward receives (``dy``, ``dh_n``, ``dc_n``): zeros for None,
    else converted to ``dt`` and checked against ``shape``."""
    if g is None:
        return np.zeros(shape, dtype=dt)
    g = np.asarray(g).astype(dt, copy=False)
    if g.shape != shape:
        raise ValueError("%s_backward: %s must have shape %s, got %s" % (cell, name, shape, g.shape))
    return g
