"""Optimizers: gradient descent as in the notes, momentum, Nesterov, Adam.

Every optimizer works on flat lists of arrays and keeps its state (momentum
buffers, Adam moments) by position in that list:

    opt = SGD(lr=0.1, momentum=0.9)
    opt.step(params, grads)        # params: list of float32/float64 arrays, updated in place

The rules are PyTorch's (``torch.optim.SGD`` with ``dampening=0`` and
``torch.optim.Adam``), so hyperparameters carry over:

    SGD       g ← ∇L(θ) + λθ                      (weight_decay λ, coupled L2)
              θ ← θ − η g                          (momentum 0: the notes' rule θ ← θ − η ∇L(θ))
    momentum  v ← μ v + g;  θ ← θ − η v            (v starts at 0, so the first step is θ − η g)
    Nesterov  v ← μ v + g;  θ ← θ − η (g + μ v)
    Adam      m ← β₁ m + (1−β₁) g;  v ← β₂ v + (1−β₂) g²      (t = 1, 2, ...)
              θ ← θ − η · (m / (1−β₁ᵗ)) / (√(v / (1−β₂ᵗ)) + ε)

A step is all or nothing: every parameter and gradient is checked first
(shape, dtype, writeable, finite) and the state and scratch buffers exist
before the first parameter is written; after that the update is in-place
whole-array NumPy arithmetic into preallocated buffers, which allocates nothing
and cannot fail. So a step that raises leaves the parameters and the
optimizer's state exactly as they were. A NaN or infinite gradient is refused
(ValueError) rather than written into the model. No Python loop runs over
elements, and no array is allocated after the first step. Ctrl-C included:
while the parameters are written, SIGINT is held back (in the main thread, over
a Python-level handler) and delivered, to the handler that was in place, once
the whole step is committed, ``t`` included.

Saving and resuming: ``state_dict()`` returns the whole state (class name,
hyperparameters, step count ``t``, ``epoch`` (epochs completed by ``fit`` with
this optimizer) and copies of the per-parameter arrays); ``load_state_dict``
restores it, checked whole before anything is set. ``fastbp.io.save_checkpoint``
writes it with the model into one .npz (no pickle).
"""
from __future__ import annotations

import numbers
import os
import signal
import threading
from typing import Any, Dict, Sequence, Tuple, Union

import numpy as np

from ._validate import FLOAT_DTYPES, as_array
from .clip import clip_grad_norm

__all__ = ["Optimizer", "SGD", "Adam", "clip_grad_norm", "get_optimizer"]


def _real(value, name, low, high=None, low_open=False):
    """A Python float in [low, high) (or (low, high) with low_open), else ValueError/TypeError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    try:
        v = float(value)
    except OverflowError:       # an integer beyond any float (its repr may be too long to print)
        raise ValueError(f"{name}: expected a finite number, got an integer of "
                         f"{int(value).bit_length()} bits") from None
    if not np.isfinite(v) or v < low or (low_open and v == low) or (high is not None and v >= high):
        lo = "(" if low_open else "["
        hi = f"{high})" if high is not None else "∞)"
        raise ValueError(f"{name}: expected a number in {lo}{low}, {hi}, got {value!r}")
    return v


class Optimizer:
    """Base class: validation, all-or-nothing commit, state by position.

    Subclasses implement ``_fresh_state(p)`` (the per-parameter state before the
    first step, a tuple of arrays) and ``_update(p, g, state, t, a, b)``,
    which updates ``p`` and its state in place, using the scratch arrays ``a``
    and ``b`` (p's shape and dtype) for intermediate values, never writing ``g``.
    The base class calls it only once every parameter has passed the checks.
    """

    _NONNEGATIVE_SLOTS = ()     # state slots that can never hold a negative value

    def __init__(self, lr, weight_decay=0.0):
        self.lr = _real(lr, "lr", 0.0, low_open=True)
        self.weight_decay = _real(weight_decay, "weight_decay", 0.0)
        self.reset()

    def reset(self) -> None:
        """Forget the state (momentum buffers, moments, step count)."""
        self.state = None   # list by position, one tuple of arrays per parameter
        self.t = 0          # number of completed steps
        self.epoch = 0      # epochs completed by fit with this optimizer (its shuffle draws)
        self._scratch = {}  # dtype -> two flat work buffers, each the largest parameter's size

    def _check(self, params, grads):
        params, grads = list(params), list(grads)
        if not params:
            raise ValueError("params: expected a non-empty list of arrays")
        if len(grads) != len(params):
            raise ValueError(f"grads: expected {len(params)} arrays (one per parameter), got {len(grads)}")
        checked = []
        for i, (p, g) in enumerate(zip(params, grads)):
            if not isinstance(p, np.ndarray) or p.dtype not in FLOAT_DTYPES:
                raise TypeError(f"params[{i}]: expected a float32 or float64 numpy array, got "
                                + (f"dtype {p.dtype}" if isinstance(p, np.ndarray) else type(p).__name__))
            if not p.flags.writeable:
                raise ValueError(f"params[{i}]: array is read-only, cannot update it in place")
            g = as_array(g, f"grads[{i}]")
            if g.shape != p.shape:
                raise ValueError(f"grads[{i}]: expected shape {p.shape} (as params[{i}]), got {g.shape}")
            if g.dtype.kind not in "fiub" or g.dtype.kind == "f" and g.dtype.itemsize > 8:
                raise TypeError(f"grads[{i}]: expected a real array, got dtype {g.dtype}")
            g = g.astype(p.dtype, copy=False)
            if not np.isfinite(g).all():
                raise ValueError(f"grads[{i}]: contains NaN or infinity; no parameter was changed")
            checked.append(g)
        if self.state is not None:
            if len(self.state) != len(params) or any(
                    s.shape != p.shape or s.dtype != p.dtype
                    for p, st in zip(params, self.state) for s in st):
                raise ValueError(
                    "params: this optimizer's state was built for a different list of parameters "
                    f"({len(self.state)} arrays); use a new optimizer or call reset()")
        return params, checked

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        """Update every array of ``params`` in place from ``grads`` (same order, same shapes)."""
        params, grads = self._check(params, grads)
        state = self.state if self.state is not None else [self._fresh_state(p) for p in params]
        largest = max(p.size for p in params)
        for p in params:
            if p.dtype not in self._scratch or self._scratch[p.dtype][0].size < largest:
                self._scratch[p.dtype] = (np.empty(largest, p.dtype), np.empty(largest, p.dtype))
        t = self.t + 1
        # From here on nothing can fail: every array is checked and allocated. Floating-point
        # errors only warn, as NumPy's defaults do (underflow is ignored), even under
        # np.seterr(all="raise"), so no step stops half-way; nor does Ctrl-C, held back
        # until the step, t included, is committed.
        with sigint_held(), np.errstate(over="warn", divide="warn", invalid="warn",
                                         under="ignore"):
            for p, g, st in zip(params, grads, state):
                a, b = (buf[:p.size].reshape(p.shape) for buf in self._scratch[p.dtype])
                self._update(p, g, st, t, a, b)
            self.state = state
            self.t = t

    # -- saving and resuming --------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """The optimizer's whole state, to resume exactly: a dict with
        ``"class"`` (``"SGD"``, ``"Adam"``), ``"hyper"`` (the constructor's
        arguments), ``"t"`` (completed steps), ``"epoch"`` (epochs completed by
        ``fit``) and ``"state"``: None before the first step, else one list of
        arrays (copies) per parameter, in the order of ``params`` (SGD with
        momentum: [velocity]; Adam: [first moment, second moment])."""
        return {"class": type(self).__name__, "hyper": self._hyper(), "t": self.t,
                "epoch": self.epoch,
                "state": None if self.state is None else [[s.copy() for s in st]
                                                          for st in self.state]}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (of this class): hyperparameters, ``t``,
        ``epoch`` and the per-parameter arrays (copied). Everything is checked
        before anything is set; a bad entry raises ValueError/TypeError naming it
        and leaves the optimizer unchanged. The arrays' shapes are checked
        against the parameters at the next :meth:`step`."""
        fresh, counts, arrays = self._checked(state_dict)
        with sigint_held():
            for k, v in vars(fresh).items():
                if k not in ("state", "t", "epoch", "_scratch"):
                    setattr(self, k, v)
            self.state, self.t, self.epoch = arrays, counts["t"], counts["epoch"]

    def _checked(self, state_dict, copy=True):
        """load_state_dict's checks: (an optimizer of the hyperparameters, {"t", "epoch"},
        the per-parameter arrays as tuples: copies, or the given arrays with copy=False)."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict: expected a dict from Optimizer.state_dict(), got "
                            f"{type(state_dict).__name__}")
        keys = {"class", "hyper", "t", "epoch", "state"}
        if set(state_dict) != keys:
            raise ValueError(f"state_dict: expected the keys {sorted(keys)}, got "
                             f"{sorted(map(str, state_dict))}")
        if state_dict["class"] != type(self).__name__:
            raise ValueError(f"state_dict: holds the state of {state_dict['class']!r}, "
                             f"not of {type(self).__name__!r}")
        hyper = state_dict["hyper"]
        if not isinstance(hyper, dict) or set(hyper) != set(self._hyper()):
            raise ValueError(f"state_dict['hyper']: expected the keys {sorted(self._hyper())}, "
                             f"got {hyper!r}")
        fresh = type(self)(**hyper)          # validates every hyperparameter by name
        counts = {}
        for key in ("t", "epoch"):
            v = state_dict[key]
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 0 <= v < 2 ** 62:
                raise ValueError(f"state_dict[{key!r}]: expected an integer >= 0, got {v!r}")
            counts[key] = int(v)
        arrays = state_dict["state"]
        if arrays is not None:
            if not isinstance(arrays, (list, tuple)) or not arrays:
                raise TypeError("state_dict['state']: expected None or a non-empty list (one "
                                "list of arrays per parameter)")
            probe = np.zeros(1)
            slots = len(fresh._fresh_state(probe))
            checked = []
            for i, st in enumerate(arrays):
                if not isinstance(st, (list, tuple)) or len(st) != slots:
                    raise ValueError(f"state_dict['state'][{i}]: expected a list of {slots} "
                                     f"arrays for {type(self).__name__}, got {st!r:.80}")
                row = []
                for j, a in enumerate(st):
                    where = f"state_dict['state'][{i}][{j}]"
                    if not isinstance(a, np.ndarray) or a.dtype not in FLOAT_DTYPES:
                        raise TypeError(f"{where}: expected a float32 or float64 numpy array, got "
                                        + (f"dtype {a.dtype}" if isinstance(a, np.ndarray)
                                           else type(a).__name__))
                    if j in self._NONNEGATIVE_SLOTS:     # +inf: a square that overflowed, as
                        if np.isnan(a).any() or (a < 0).any():   # step can leave it
                            raise ValueError(f"{where}: contains NaN or negative values; "
                                             f"{type(self).__name__}'s slot {j} is a sum of squares")
                    elif not np.isfinite(a).all():
                        raise ValueError(f"{where}: contains NaN or infinity")
                    if j and (a.shape != st[0].shape or a.dtype != st[0].dtype):
                        raise ValueError(f"{where}: expected shape {st[0].shape} and dtype "
                                         f"{st[0].dtype} (as [{i}][0]), got {a.shape} {a.dtype}")
                    row.append(np.array(a, order="C", copy=True) if copy else a)
                checked.append(tuple(row))
            if counts["t"] == 0:
                raise ValueError("state_dict['t']: 0 steps but per-parameter state is given")
            arrays = checked
        elif counts["t"] != 0:
            raise ValueError(f"state_dict['state']: None (no step taken) but t = {counts['t']}")
        return fresh, counts, arrays

    def _decayed(self, p, g, out):
        """g + λθ written into ``out``, or g itself when there is no weight decay."""
        if not self.weight_decay:
            return g
        np.multiply(p, self.weight_decay, out=out)
        out += g
        return out

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in self._hyper().items())
        return f"{type(self).__name__}({fields})"


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum and weight decay.

    Parameters
    ----------
    lr : float > 0
        Learning rate η.
    momentum : float in [0, 1)
        μ; 0 gives the notes' plain rule θ ← θ − η ∇L(θ).
    nesterov : bool
        Nesterov's look-ahead momentum (needs momentum > 0).
    weight_decay : float ≥ 0
        λ, added to the gradient as λθ (the L2 penalty (λ/2)‖θ‖², applied to
        every array given, biases included; prefer the models' ``l2`` to spare biases).
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        self.momentum = _real(momentum, "momentum", 0.0, 1.0)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov: expected True or False, got {nesterov!r:.80}")
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov: Nesterov momentum needs momentum > 0")
        super().__init__(lr, weight_decay)

    def _hyper(self):
        return dict(lr=self.lr, momentum=self.momentum, nesterov=self.nesterov,
                    weight_decay=self.weight_decay)

    def _fresh_state(self, p):
        return (np.zeros_like(p),) if self.momentum else ()

    def _update(self, p, g, state, t, a, b):
        d = self._decayed(p, g, a)                  # the caller's g, or g + λθ in a
        if self.momentum:
            v = state[0]
            v *= self.momentum                      # v ← μ v + d
            v += d
            if self.nesterov:                       # θ ← θ − η d − η μ v
                np.multiply(d, self.lr, out=b)
                p -= b
                np.multiply(v, self.lr * self.momentum, out=b)
            else:                                   # θ ← θ − η v
                np.multiply(v, self.lr, out=b)
        else:                                       # θ ← θ − η d
            np.multiply(d, self.lr, out=b)
        p -= b


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), bias-corrected, with optional coupled weight decay.

    Parameters
    ----------
    lr : float > 0
        Step size η.
    betas : (float, float) in [0, 1)
        Decay rates β₁, β₂ of the first and second moment estimates.
    eps : float > 0
        ε added to the denominator.
    weight_decay : float ≥ 0
        λ, added to the gradient as λθ before the moments (``torch.optim.Adam``'s rule).
    """

    def __init__(self, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        try:
            b1, b2 = betas
        except (TypeError, ValueError) as e:
            raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}") from e
        self.betas = (_real(b1, "betas[0]", 0.0, 1.0), _real(b2, "betas[1]", 0.0, 1.0))
        self.eps = _real(eps, "eps", 0.0, low_open=True)
        super().__init__(lr, weight_decay)

    _NONNEGATIVE_SLOTS = (1,)   # v, whose square root each step takes

    def _hyper(self):
        return dict(lr=self.lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay)

    def _fresh_state(self, p):
        return (np.zeros_like(p), np.zeros_like(p))

    def _update(self, p, g, state, t, a, b):
        b1, b2 = self.betas
        m, v = state
        d = self._decayed(p, g, a)                  # the caller's g, or g + λθ in a
        np.subtract(d, m, out=b)                    # m ← m + (1−β₁)(d − m)   (torch's lerp)
        b *= 1.0 - b1
        m += b
        v *= b2                                     # v ← β₂ v + (1−β₂) d²
        np.multiply(d, d, out=b)
        b *= 1.0 - b2
        v += b
        # torch's arrangement: θ ← θ − (η / (1−β₁ᵗ)) · m / (√v / √(1−β₂ᵗ) + ε)
        np.sqrt(v, out=b)
        b /= np.sqrt(1.0 - b2 ** t)
        b += self.eps
        np.divide(m, b, out=b)
        b *= self.lr / (1.0 - b1 ** t)
        p -= b


_OPTIMIZERS = {"sgd": SGD, "adam": Adam}
OPTIMIZER_CLASSES = {"SGD": SGD, "Adam": Adam}   # by class name, as state_dict() gives it


class sigint_held:
    """``with sigint_held(): ...`` commits several arrays all or nothing, Ctrl-C
    included (optimizer steps, ``load_state_dict``). Holds SIGINT back for the block: a Ctrl-C arriving inside it is delivered to
    the handler that was in place (Python's KeyboardInterrupt, fit's flag, the
    program's own) as soon as the block is done. Only in the main thread (where
    Python runs signal handlers), over a handler Python knows (not one a C
    extension set); under SIG_DFL the held Ctrl-C is re-sent once the default
    is back, under SIG_IGN it is dropped, as it would have been."""

    __slots__ = ("previous", "caught")

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is not threading.main_thread():
            return self
        if _get_sigint() is None:      # a handler set outside Python: leave it alone
            return self
        self.caught = None
        self.previous = _set_sigint(self._hold)
        return self

    def _hold(self, signum, frame):
        self.caught = (signum, frame)

    def __exit__(self, *exc):
        previous = self.previous
        if previous is None:
            return False
        _set_sigint(previous)
        if self.caught is not None:
            if callable(previous):
                previous(*self.caught)      # KeyboardInterrupt, now that the step is whole
            elif previous == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)
        return False


try:    # CPython's C functions under the signal module: 0.7 µs a swap, where signal.signal's
    import _signal   # enum wrapping costs 5 µs (measured), 2 swaps per optimizer step
    _SIGINT = int(signal.SIGINT)

    def _set_sigint(handler):
        return _signal.signal(_SIGINT, handler)

    def _get_sigint():
        return _signal.getsignal(_SIGINT)
except (ImportError, AttributeError):
    def _set_sigint(handler):
        return signal.signal(signal.SIGINT, handler)

    def _get_sigint():
        return signal.getsignal(signal.SIGINT)


def get_optimizer(optimizer: Union["Optimizer", str, None]) -> "Optimizer":
    """An Optimizer from an instance (returned as is), a name ('sgd', 'adam') or None (Adam)."""
    if optimizer is None:
        return Adam()
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in _OPTIMIZERS:
        return _OPTIMIZERS[optimizer.lower()]()
    raise TypeError(f"optimizer: expected an Optimizer (fastbp.optim.SGD, Adam), 'sgd', 'adam' "
                    f"or None, got {optimizer!r}")
