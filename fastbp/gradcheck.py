"""Gradient checking by central finite differences (docs/equations.md §4, §5).

Depends on NumPy only.

Method
------
Each checked entry ``x`` of a parameter is perturbed in place and the loss is
evaluated twice::

    n = (f(x + h) - f(x - h)) / ((x + h) - (x - h))

the central difference, with the denominator taken from the two values that
were actually stored (so rounding of ``x +- h`` does not bias the quotient).
Its error is ``O(h^2)`` truncation (``h^2 f''' / 6``) plus ``O(eps_mach |f| / h)``
rounding. The notes (seed 004) use the forward difference
``(f(x + h) - f(x)) / h`` with ``h = 1e-4``, whose truncation error is ``O(h)``
(~1e-4 relative): far too coarse to tell a subtly wrong gradient from a right
one. With central differences in float64, ``h = 1e-6`` makes truncation
~1e-12 and rounding ~1e-10 (absolute, for losses of order one), giving
relative errors of 1e-8..1e-10 for derivatives that are not tiny (see the
floor below); the default tolerance of :meth:`GradcheckReport.ok`, 1e-6,
leaves orders of magnitude of margin on both sides (a wrong gradient is
typically wrong by O(1) relative). Only float64 parameters are
accepted: in float32 the rounding term would be ~1e-1 at this step.

Error measure
-------------
Per entry, ``|a - n| / max(|a|, |n|, floor)`` with ``a`` the analytic and ``n``
the numeric derivative; per parameter, the max over checked entries.

The floor keeps entries whose true derivative is (near) zero from dividing
the finite-difference noise by ~0. That noise is absolute, not relative: the
rounding term is about ``eps_mach |f| / h`` (~2e-10 |f| at h = 1e-6, measured
1e-9 for an LSTM loss of 2.6), so an entry of size 1e-4 can only be confirmed
to ~1e-5 relative, whatever the code's correctness. A fixed floor such as 1e-8
would fail correct gradients for that reason, so the default floor follows
the noise::

    floor = 1e-8 * F / h,     F = max(1, |f(params)|)

i.e. ``1e-2 F`` at the default ``h = 1e-6``. Entries at least that large are
judged by their relative error; smaller ones by ``|a - n| / floor``, i.e. they
must agree to ``tol * floor`` (1e-8 F at the defaults) in absolute terms,
which still catches any real mistake. The rounding noise stays near
``eps_mach / 1e-8 ~ 2e-8`` of the floor (times a small factor for
cancellation inside ``f``), well under the 1e-6 tolerance. ``F >= 1`` guards
a loss that happens to cancel to ~0. Pass ``floor=`` to override. Exact zeros
on both sides give 0; non-finite results count as inf.
"""

import math
import numbers
from collections.abc import Mapping

import numpy as np

from ._validate import as_array

__all__ = ["gradcheck", "GradcheckReport", "ParamCheck"]


class ParamCheck:
    """Result of checking one parameter.

    Attributes
    ----------
    name : str or int
        Key of the parameter (dict key, or list position).
    shape : tuple
    indices : ndarray of int, shape (n_checked,)
        Flat (C-order) indices of the checked entries, sorted.
    analytic, numeric : ndarray, shape (n_checked,)
        The analytic and finite-difference derivatives at those entries.
    errors : ndarray, shape (n_checked,)
        Relative errors (see module docstring); non-finite results count as inf.
    """

    def __init__(self, name, shape, indices, analytic, numeric, errors):
        self.name = name
        self.shape = tuple(shape)
        self.indices = indices
        self.analytic = analytic
        self.numeric = numeric
        self.errors = errors

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def max_error(self):
        return float(self.errors.max()) if self.errors.size else 0.0

    @property
    def worst_index(self):
        """Multi-index of the entry with the largest error (None if nothing was checked)."""
        if not self.errors.size:
            return None
        flat = int(self.indices[int(np.argmax(self.errors))])
        return tuple(int(i) for i in np.unravel_index(flat, self.shape))


class GradcheckReport:
    """Outcome of :func:`gradcheck`.

    Attributes
    ----------
    checks : dict
        Parameter name -> :class:`ParamCheck` (details per entry).
    eps : float
        The step ``h`` used.
    floor : float
        The denominator floor of the relative error.
    """

    def __init__(self, checks, eps, floor):
        self.checks = checks
        self.eps = eps
        self.floor = floor

    @property
    def per_param(self):
        """dict: parameter name -> max relative error over its checked entries."""
        return {name: c.max_error for name, c in self.checks.items()}

    @property
    def max_error(self):
        """float: the largest relative error over all parameters (0.0 if none)."""
        return max(self.per_param.values(), default=0.0)

    def ok(self, tol=1e-6):
        """True when every checked entry has relative error <= ``tol``."""
        return bool(self.max_error <= tol)

    def __str__(self):
        rows = [("parameter", "shape", "checked", "max rel err", "worst entry")]
        for name, c in self.checks.items():
            rows.append((str(name), str(c.shape), "%d/%d" % (c.indices.size, c.size),
                         "%.3e" % c.max_error, str(c.worst_index)))
        widths = [max(len(r[k]) for r in rows) for k in range(5)]
        lines = ["gradcheck: central differences, h=%g, relative error floor %g"
                 % (self.eps, self.floor)]
        for r in rows:
            lines.append("  ".join(s.ljust(w) for s, w in zip(r, widths)).rstrip())
        lines.append("max error %.3e" % self.max_error)
        return "\n".join(lines)

    __repr__ = __str__


def _pairs(params, grads):
    """Zip params and grads into a list of (name, param, grad) with validation."""
    if isinstance(params, Mapping):
        if not isinstance(grads, Mapping):
            raise TypeError("params is a dict, so grads must be a dict with the same keys")
        if set(params) != set(grads):
            raise ValueError("params and grads have different keys: %s vs %s"
                             % (sorted(map(str, params)), sorted(map(str, grads))))
        items = [(k, params[k], grads[k]) for k in params]
    elif isinstance(params, (list, tuple)):
        if isinstance(grads, Mapping) or not isinstance(grads, (list, tuple)):
            raise TypeError("params is a list, so grads must be a list of the same length")
        if len(params) != len(grads):
            raise ValueError("%d params but %d grads" % (len(params), len(grads)))
        items = list(zip(range(len(params)), params, grads))
    else:
        raise TypeError("params must be a dict name -> ndarray or a list of ndarrays, got %s"
                        % type(params).__name__)
    out = []
    for name, p, g in items:
        label = "[%r]" % (name,)                 # params[0], params['W'] in the messages
        if not isinstance(p, np.ndarray):
            raise TypeError("params%s: must be a numpy ndarray (perturbed in place), got %s"
                            % (label, type(p).__name__))
        if p.dtype != np.float64:
            raise TypeError("params%s: must be float64 for a finite-difference check, got %s"
                            % (label, p.dtype))
        if not p.flags.writeable:
            raise ValueError("params%s: is read-only; gradcheck perturbs it in place" % (label,))
        g = as_array(g, "grads" + label)
        if g.dtype.kind not in "fiub":
            raise TypeError("grads%s: expected a real array, got dtype %s" % (label, g.dtype))
        g = np.array(g, dtype=np.float64)        # copy: fun() must not be able to change it
        if g.shape != p.shape:
            raise ValueError("grads%s: has shape %s, the parameter has shape %s"
                             % (label, g.shape, p.shape))
        out.append((name, p, g))
    return out


def _select(size, g_flat, max_entries, rng):
    """Flat indices to check: all if few, else extremes + a seeded random subset."""
    if size <= max_entries:
        return np.arange(size)
    # always: the first and last entries and the largest analytic derivative
    chosen = list(dict.fromkeys([0, size - 1, int(np.argmax(np.abs(g_flat)))]))[:max_entries]
    rest = np.setdiff1d(np.arange(size), chosen)
    extra = rng.choice(rest, size=max_entries - len(chosen), replace=False)
    return np.sort(np.concatenate([np.asarray(chosen, dtype=np.intp), extra.astype(np.intp)]))


def _scalar(v):
    v = np.asarray(v)
    if v.size != 1:
        raise ValueError("fun() must return a scalar loss, got an array of shape %s" % (v.shape,))
    return float(v.reshape(()))


def gradcheck(fun, params, grads, *, eps=1e-6, max_entries=64, seed=0, floor=None):
    """Check analytic gradients against central finite differences.

    Parameters
    ----------
    fun : callable
        ``fun() -> scalar``: the loss, computed from the arrays in ``params``
        (it must read them, e.g. through a closure, on every call).
    params : dict name -> ndarray, or list of ndarray
        float64 arrays, perturbed IN PLACE one entry at a time and restored
        exactly (bitwise) afterwards, also when ``fun`` raises.
    grads : dict or list, same structure and shapes as ``params``
        The analytic gradients ``dfun/dparams`` at the current params.
    eps : float, keyword-only
        The finite-difference step ``h`` (default 1e-6; see module docstring).
    max_entries : int, keyword-only
        Arrays with more entries are checked on a subset of this many: the first
        and last entries, the one with the largest analytic derivative, and a
        random sample drawn with ``numpy.random.default_rng([seed, k])`` for the
        k-th parameter, so the subset is reproducible from ``seed``.
    seed : int, keyword-only
    floor : float or None, keyword-only
        Denominator floor of the relative error. None (default): ``1e-8 F / eps``
        with ``F = max(1, |fun()|)`` at the unperturbed params (module docstring).

    Returns
    -------
    GradcheckReport
        ``report.per_param`` (name -> max relative error), ``report.max_error``,
        ``report.ok(tol=1e-6)``, ``report.checks`` (details), readable ``str``.
        List params are named by their position (0, 1, ...).

    Raises
    ------
    TypeError
        A parameter that is not a float64 ndarray (the message names it), or
        mismatched container types.
    ValueError
        Shape/key mismatch, read-only parameter, non-scalar ``fun()``,
        bad ``eps``/``max_entries``/``floor``.
    """
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError("eps: expected a finite number > 0, got %r" % (eps,))
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError("eps: expected a finite number > 0, got %r" % (eps,))
    if isinstance(max_entries, bool) or not isinstance(max_entries, numbers.Integral):
        raise TypeError("max_entries: expected an integer >= 1, got %r" % (max_entries,))
    if max_entries < 1:
        raise ValueError("max_entries: expected an integer >= 1, got %r" % (max_entries,))
    max_entries = int(max_entries)
    items = _pairs(params, grads)
    f0 = _scalar(fun())                  # also fails early if fun() is not a scalar loss
    if floor is None:
        floor = 1e-8 * max(1.0, abs(f0)) / eps
    elif (isinstance(floor, bool) or not isinstance(floor, numbers.Real)
          or not (math.isfinite(floor) and floor > 0)):
        raise ValueError("floor: expected a finite number > 0, got %r" % (floor,))
    floor = float(floor)

    checks = {}
    for k, (name, p, g) in enumerate(items):
        rng = np.random.default_rng([seed, k])
        g_flat = g.reshape(-1)
        idx_flat = _select(p.size, g_flat, max_entries, rng)
        numeric = np.empty(idx_flat.size)
        for j, flat in enumerate(idx_flat):
            idx = np.unravel_index(int(flat), p.shape)
            orig = p[idx].copy()         # np.float64 scalar: the exact bits to restore
            try:
                p[idx] = orig + eps
                x_plus = p[idx].copy()
                f_plus = _scalar(fun())
                p[idx] = orig - eps
                x_minus = p[idx].copy()
                f_minus = _scalar(fun())
            finally:
                p[idx] = orig
            with np.errstate(invalid="ignore", divide="ignore"):
                # x_plus == x_minus only where h vanishes next to |x| (e.g. 1e300):
                # the quotient is then nan/inf and the entry counts as failed (inf)
                numeric[j] = (f_plus - f_minus) / (x_plus - x_minus)
        analytic = g_flat[idx_flat]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            denom = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor)
            errors = np.abs(analytic - numeric) / denom
        errors = np.where(np.isfinite(errors), errors, np.inf)
        checks[name] = ParamCheck(name, p.shape, idx_flat, analytic, numeric, errors)
    return GradcheckReport(checks, eps, floor)
