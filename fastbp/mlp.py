"""The multilayer perceptron on the compiled path (docs/equations.md §1–4).

``MLP.loss_and_grad`` runs a whole training step (forward, loss, backward,
every gradient) as ONE call into C with the GIL released; the NumPy reference
``fastbp.reference.mlp_loss_and_grad`` computes the same numbers and is the
test oracle.

Conventions
-----------
Layout: PyTorch's ``nn.Linear``. Layer ``l`` has ``W (n_l, n_{l-1})`` and
``b (n_l,)`` and computes ``Z = A_prev Wᵀ + b``, so weights move to and from
``torch.nn.Linear.weight`` / ``.bias`` unchanged.

Loss normalisation: the data loss is the MEAN over the batch (docs/equations.md §2),
so every gradient carries ``1/B``:

- ``"cross_entropy"``: ``L = -(1/B) Σ_rows Σ_k z_k ln ŷ_k`` with ``ŷ =
  softmax(Z^(L))`` (the output activation must be ``"softmax"``; it is fused
  into the loss, ``∂L/∂Z^(L) = (ŷ - z)/B``). Targets are integer labels
  ``(B,)`` or one-hot / probability rows ``(B, n_L)``. Equals
  ``torch.nn.functional.cross_entropy`` with its default mean reduction.
- ``"mse"``, ``mse_form="sum"`` (the notes' form): ``L = (1/B) Σ_rows Σ_j
  (y_j - ŷ_j)²``, ``∂L/∂ŷ = -2 (y - ŷ)/B``, after any output activation.
  ``mse_form="half_mean"``: ``L = ½ · mean over all B·n_L entries`` (``0.5 *
  F.mse_loss``).

L2: ``J = L + (λ/2) Σ_l ‖W^(l)‖²_F`` and ``∂J/∂W^(l) = ∂L/∂W^(l) + λ W^(l)``
(docs/equations.md §3, the plain λ/2 convention, NOT seed 002's λ/2m: pass ``l2=λ/m``
for that). Biases are not penalised.

Dtypes: the model computes in its ``dtype`` (float32 or float64). Inputs of
another real dtype (float16/32/64, integers, booleans) are converted ONCE per
call to the model's dtype (a float64 ``X`` given to a float32 model is rounded
to float32); complex, object and string arrays are refused. Class labels may
be any integer dtype. Nothing the caller passes is modified.

Gradients: ``loss_and_grad`` returns new arrays on every call, written
directly by the C kernel (no copy), which a later call never touches while
anything (a list, a tuple, a view) still refers to them. Behind that, the
model keeps the last two sets it handed out and refills one that nobody
refers to any more, so ``loss, grads = net.loss_and_grad(X, y)`` in a loop
allocates nothing after the second step (a fresh ~1 MB block can cost page
faults; measured up to ~1 ms at B = 256 in a busy process). Pass ``out=grads``
to choose the arrays to overwrite yourself.

Execution: one call into C per step with the GIL released; the activations
and scratch live in a workspace built once per batch size (the last four
sizes are kept) and reused. Calls on one model from several threads are
serialised by a lock; separate models run in parallel. ``forward`` runs large
batches in blocks of 1024 rows, so prediction on a big data set needs no big
workspace.
"""
from __future__ import annotations

import numbers
import os
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

from . import _core
from . import training
from ._mlpfeed import MLPFeed
from ._persistent import Persistent
from ._torch_names import linear_names
from ._validate import (as_array, check_shape, choice, float_array, nonnegative_float,
                        positive_int, resolve_dtype)
from .callbacks import Callback
from .functional import activation_code
from .optim import Optimizer, sigint_held
from .training import History

__all__ = ["MLP", "MLP_LOSSES", "MSE_FORMS"]

MLP_LOSSES = ("cross_entropy", "mse")
MSE_FORMS = ("sum", "half_mean")

_INT64 = np.dtype(np.int64)
_XENT_LABELS = _core.MLP_LOSS_CODES["xent_labels"]
_XENT_PROBS = _core.MLP_LOSS_CODES["xent_probs"]
_SQUARED = _core.MLP_LOSS_CODES["squared"]


def _init_weight(rng, n_out, n_in, activation):
    """He normal for ReLU layers (std √(2/n_in)), Glorot uniform otherwise
    (limit √(6/(n_in+n_out))): keeps activations and gradients of the right
    scale through depth. Drawn in float64 so float32 and float64 models built
    from the same seed hold the same numbers, up to rounding."""
    if activation == "relu":
        return rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in)
    limit = np.sqrt(6.0 / (n_in + n_out))
    return rng.uniform(-limit, limit, size=(n_out, n_in))


def _rebuilt(cls, config, state_dict):
    """An MLP of ``config`` holding ``state_dict`` (what unpickling calls)."""
    model = cls(**config)
    model.load_state_dict(state_dict)
    return model


class MLP(Persistent):
    """A multilayer perceptron trained by backpropagation (docs/equations.md §4).

    Parameters
    ----------
    sizes : sequence of int
        Layer widths ``[n_0, n_1, ..., n_L]``: ``n_0`` inputs, ``n_L`` outputs,
        at least one layer (two sizes); at most ``fastbp._core.MLP_MAX_LAYERS`` layers.
    activation : str or sequence of str
        The hidden layers' activation: one name for all, or one per hidden
        layer. Names: ``"identity", "sigmoid", "tanh", "relu", "softmax"``.
    output : str
        The output layer's activation (same names).
    loss : {"cross_entropy", "mse"}
        See the module docstring for the normalisation. ``"cross_entropy"``
        needs ``output="softmax"``.
    l2 : float
        λ >= 0 of the L2 penalty ``(λ/2) Σ ‖W‖²`` (biases not penalised).
    dtype : {"float32", "float64"}
        The precision of the parameters and of all computation.
    seed : int
        Seeds ``numpy.random.default_rng`` for the initial weights (He normal
        for ReLU layers, Glorot uniform otherwise; biases zero).
    mse_form : {"sum", "half_mean"}
        Form of the squared error when ``loss="mse"``.

    Attributes
    ----------
    sizes : tuple of int
    activations : tuple of str
        One per layer, the last being ``output``.
    loss, l2, dtype, mse_form, n_layers
    params : list of (W, b)
        See :attr:`params`.
    """

    def __init__(self, sizes: Sequence[int], activation: Union[str, Sequence[str]] = "relu",
                 output: str = "softmax", loss: str = "cross_entropy", l2: float = 0.0,
                 dtype: Any = "float32", seed: int = 0, mse_form: str = "sum"):
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__"):
            raise TypeError(f"sizes: expected a sequence of layer widths, got {sizes!r}")
        sizes = tuple(positive_int(n, f"sizes[{i}]") for i, n in enumerate(sizes))
        if len(sizes) < 2:
            raise ValueError(f"sizes: expected at least 2 widths (inputs and outputs), got {list(sizes)}")
        n_layers = len(sizes) - 1
        if n_layers > _core.MLP_MAX_LAYERS:
            raise ValueError(f"sizes: at most {_core.MLP_MAX_LAYERS} layers, got {n_layers}")
        if isinstance(activation, str):
            hidden = (activation,) * (n_layers - 1)
            activation_code(activation, "activation")
        else:
            hidden = tuple(activation)
            if len(hidden) != n_layers - 1:
                raise ValueError(f"activation: expected one name or a list of {n_layers - 1} "
                                 f"(one per hidden layer), got {len(hidden)}")
            for i, name in enumerate(hidden):
                activation_code(name, f"activation[{i}]")
        activation_code(output, "output")
        loss = choice(loss, "loss", MLP_LOSSES)
        self.mse_form = mse_form
        if loss == "cross_entropy" and output != "softmax":
            raise ValueError(f"output: loss='cross_entropy' is the softmax cross-entropy and needs "
                             f"output='softmax', got {output!r} (use loss='mse' for other outputs)")
        self.l2 = l2
        dtype = resolve_dtype(dtype, "dtype")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"seed: expected an integer, got {seed!r}")
        self._loss = loss
        self._dtype = dtype
        self._sizes = sizes
        self._n_layers = n_layers
        self._activations = hidden + (output,)

        rng = np.random.default_rng(int(seed))
        self._params = [
            (np.ascontiguousarray(_init_weight(rng, n_out, n_in, act), dtype=self._dtype),
             np.zeros(n_out, dtype=self._dtype))
            for n_in, n_out, act in zip(sizes[:-1], sizes[1:], self._activations)]
        self._core = _core.MLPCore(sizes, [activation_code(a) for a in self._activations],
                                   self._params, self._dtype)
        self._params = list(self._core.params)   # the core's arrays (pinned storage)
        if loss == "cross_entropy":
            self._target_code = None   # labels or probabilities, decided per call
        else:
            self._target_code = _SQUARED

    # ---- configuration: the architecture is fixed, l2 and mse_form may change ----
    sizes = property(lambda self: self._sizes, doc="Layer widths (n_0, ..., n_L).")
    activations = property(lambda self: self._activations,
                           doc="Activation names, one per layer; the last is the output's.")
    loss = property(lambda self: self._loss, doc='"cross_entropy" or "mse".')
    dtype = property(lambda self: self._dtype, doc="numpy.dtype float32 or float64.")
    n_layers = property(lambda self: self._n_layers, doc="Number of weight layers L.")

    @property
    def l2(self):
        """λ of the L2 penalty (λ/2) Σ‖W‖²; settable (validated)."""
        return self._l2

    @l2.setter
    def l2(self, value):
        self._l2 = nonnegative_float(value, "l2")

    @property
    def mse_form(self):
        """Form of the squared error, "sum" or "half_mean"; settable (validated)."""
        return self._mse_form

    @mse_form.setter
    def mse_form(self, value):
        self._mse_form = choice(value, "mse_form", MSE_FORMS)

    # ---- parameters ---------------------------------------------------------
    @property
    def params(self):
        """List of ``(W (n_l, n_{l-1}), b (n_l,))`` per layer, torch layout.

        These are the model's own C-contiguous arrays of its dtype, not
        copies: updating them in place (``W -= lr * dW``) changes the model,
        and finite-difference checks may perturb them. Assigning
        ``net.params = new`` validates every array (count, shapes, finite
        values; other real dtypes are converted) before copying any, so a bad
        assignment leaves the model unchanged.
        """
        return [(W, b) for W, b in self._params]

    @params.setter
    def params(self, new):
        if isinstance(new, (str, bytes)) or not hasattr(new, "__len__") or len(new) != self._n_layers:
            raise ValueError(f"params: expected a list of {self._n_layers} (weight, bias) pairs, "
                             f"got {type(new).__name__}"
                             + (f" of length {len(new)}" if hasattr(new, "__len__") else ""))
        staged = []
        for l, pair in enumerate(new):
            if not hasattr(pair, "__len__") or len(pair) != 2:
                raise ValueError(f"params[{l}]: expected a (weight, bias) pair")
            W_old, b_old = self._params[l]
            W = float_array(pair[0], f"params[{l}][0]", dtype=self._dtype, ndim=2, shape=W_old.shape)
            b = float_array(pair[1], f"params[{l}][1]", dtype=self._dtype, ndim=1, shape=b_old.shape)
            staged.append((W, b))
        # all valid: copy into the existing arrays, which the compiled core points
        # at, all or none (Ctrl-C is held until the last copy)
        with sigint_held():
            for (W_old, b_old), (W, b) in zip(self._params, staged):
                np.copyto(W_old, W)
                np.copyto(b_old, b)

    def named_parameters(self) -> List[Tuple[str, np.ndarray]]:
        """``[(state-dict name, array), ...]``: each layer's W and b, the model's own
        arrays, named as the Linear layers of ``torch.nn.Sequential`` ("0.weight",
        "0.bias", "2.weight", ...)."""
        named = []
        for layer, (W, b) in enumerate(self.params):
            w_name, b_name = linear_names(layer)
            named += [(w_name, W), (b_name, b)]
        return named

    def config(self) -> dict:
        """The constructor's keyword arguments (JSON types; not ``seed``)."""
        return dict(sizes=list(self.sizes), activation=list(self.activations[:-1]),
                    output=self.activations[-1], loss=self.loss, l2=self.l2,
                    dtype=self.dtype.name, mse_form=self.mse_form)

    def is_classifier(self) -> bool:
        """True for ``loss="cross_entropy"``: predictions are class labels."""
        return self._loss == "cross_entropy"

    def __reduce__(self):
        """Pickling and copy.deepcopy: the configuration and a state dict (the
        compiled core and its workspaces are rebuilt, not copied)."""
        return _rebuilt, (type(self), self.config(), self.state_dict())

    # ---- training -----------------------------------------------------------
    def fit(self, X: ArrayLike, y: ArrayLike, epochs: int = 10, batch_size: int = 32,
            optimizer: Union[Optimizer, str, None] = None, validation_data: Optional[tuple] = None,
            shuffle: bool = True, seed: Optional[int] = None, progress: bool = True,
            clip_norm: Optional[float] = None, comm: Any = None,
            checkpoint: Union[str, os.PathLike, None] = None,
            callbacks: Optional[Sequence[Union[Callback, Callable]]] = None,
            validation_split: Optional[float] = None) -> History:
        """Train with mini-batches of rows; returns a :class:`fastbp.training.History`.

        X (N, n_0) and y as for :meth:`loss_and_grad`; ``validation_data`` is
        ``(X_val, y_val)``, or ``validation_split`` holds out the last fraction
        of the rows. Every argument and the behaviour (callbacks such as
        :class:`fastbp.callbacks.EarlyStopping` and the learning-rate
        schedules, checkpoints, Ctrl-C, data parallelism with ``comm``, one
        fit per model at a time) are those of :func:`fastbp.training.fit`.
        """
        return training.fit(self, MLPFeed(self), X, y, epochs=epochs, batch_size=batch_size,
                            optimizer=optimizer, validation_data=validation_data,
                            shuffle=shuffle, seed=seed, progress=progress, clip_norm=clip_norm,
                            comm=comm, checkpoint=checkpoint, callbacks=callbacks,
                            validation_split=validation_split)

    def evaluate(self, X: ArrayLike, y: ArrayLike, batch_size: int = 256,
                 comm: Any = None) -> Tuple[float, Optional[float]]:
        """(loss, accuracy) on data, accuracy None for regressors; no parameter changes.
        With ``comm`` (as in :meth:`fit`) each rank scores its block of the samples."""
        return training.evaluate(self, MLPFeed(self), X, y, batch_size, comm)

    # ---- inputs -------------------------------------------------------------
    def _input(self, X):
        """X as a C-contiguous (B, n_0) array of the model dtype (finite values
        are checked in the compiled call)."""
        if (type(X) is np.ndarray and X.dtype is self._dtype and X.ndim == 2
                and X.flags.c_contiguous and X.flags.aligned):
            if X.shape[1] != self._sizes[0]:
                check_shape(X, "X", (None, self._sizes[0]))
            return X
        return float_array(X, "X", dtype=self._dtype, ndim=2, shape=(None, self._sizes[0]),
                           finite=False)

    def _target(self, y, batch):
        """(loss code, y) with y converted for the compiled call: int64 labels
        (B,) or a (B, n_L) array of the model dtype. Label ranges and finite
        values are checked in the compiled call, before any arithmetic."""
        n_out = self._sizes[-1]
        if self._target_code is not None:   # mse
            if type(y) is np.ndarray and y.dtype is self._dtype and y.flags.c_contiguous \
                    and y.flags.aligned and y.shape == (batch, n_out):
                return self._target_code, y
            return self._target_code, float_array(y, "y", dtype=self._dtype, ndim=2,
                                                  shape=(batch, n_out), finite=False)
        if (type(y) is np.ndarray and y.dtype is _INT64 and y.ndim == 1 and y.flags.c_contiguous
                and y.flags.aligned):
            y_arr = y                                  # the common case, no copy
            if y.shape[0] != batch:
                raise ValueError(f"y: expected integer class labels of shape ({batch},) or one-hot "
                                 f"targets of shape ({batch}, {n_out}), got shape {y.shape}")
        else:   # shapes are checked before any conversion copies the array
            y_arr = as_array(y, "y")
            if y_arr.dtype.kind in "iub" and y_arr.ndim == 2:   # integer one-hot rows
                check_shape(y_arr, "y", (batch, n_out))
                y_arr = y_arr.astype(self._dtype)
            elif y_arr.dtype.kind in "iu":
                if y_arr.shape != (batch,):
                    raise ValueError(f"y: expected integer class labels of shape ({batch},) or "
                                     f"one-hot targets of shape ({batch}, {n_out}), got shape "
                                     f"{y_arr.shape}")
                y_arr = np.array(y_arr, dtype=_INT64, order="C")   # aligned, contiguous
        if y_arr.dtype is _INT64:
            return _XENT_LABELS, y_arr
        if y_arr.ndim == 1:
            raise TypeError(f"y: expected integer class labels of shape ({batch},), got dtype {y_arr.dtype}")
        return _XENT_PROBS, float_array(y_arr, "y", dtype=self._dtype, ndim=2, shape=(batch, n_out),
                                        finite=False)

    # ---- compiled calls -----------------------------------------------------
    def loss_and_grad(self, X: ArrayLike, y: ArrayLike, out: Optional[list] = None
                      ) -> Tuple[float, List[Tuple[np.ndarray, np.ndarray]]]:
        """Loss and gradients of one batch: forward, loss, backward in one call.

        Parameters
        ----------
        X : array (B, n_0)
        y : array
            ``loss="cross_entropy"``: integer labels (B,) in ``[0, n_L)`` or
            one-hot / probability rows (B, n_L). ``loss="mse"``: targets (B, n_L).
        out : list of (dW, db), optional
            Gradient arrays from an earlier call (C-contiguous, model dtype),
            overwritten in place and returned, instead of new arrays.

        Returns
        -------
        loss : float
            The batch-mean data loss plus the L2 penalty.
        grads : list of (dW (n_l, n_{l-1}), db (n_l,))
            Same structure as :attr:`params`.

        Raises
        ------
        ValueError, TypeError
            Naming ``X``, ``y`` or ``out``: wrong shape or dtype, an empty
            batch, NaN/inf, a class label outside ``[0, n_L)``.
        """
        X_in, y_in = X, y
        X = self._input(X)
        batch = X.shape[0]
        if batch == 0:
            raise ValueError(f"X: the batch is empty (shape {X.shape}); the mean loss is undefined")
        code, y = self._target(y, batch)
        scale = 1.0 / batch
        if self._target_code is not None and self._mse_form == "half_mean":
            scale = 0.5 / (batch * self._sizes[-1])
        if out is not None:
            self._check_out_apart(out, (("X", X_in), ("X", X), ("y", y_in), ("y", y)))
        return self._core.loss_and_grad(X, y, code, scale, self._l2, out)

    def _check_out_apart(self, out, inputs):
        """ValueError naming the buffer when an ``out`` array may overlap an
        input, a parameter or another ``out`` array: the kernel writes the
        gradients while it still reads the others."""
        if not isinstance(out, list):
            return                  # the compiled call names the wrong structure
        bufs, where = [], []
        for l, pair in enumerate(out):
            if isinstance(pair, tuple) and len(pair) == 2:
                bufs += pair
                where += ((l, 0), (l, 1))
        others = [a for _, a in inputs] + [a for pair in self._params for a in pair]
        # compiled: np.may_share_memory's bounds, pair by pair (non-arrays skipped)
        hit = _core.first_overlap(bufs, others)
        if hit is not None:
            i, j, among_bufs = hit
            name = "out[{}][{}]".format(*where[i])
            if among_bufs:
                other = "out[{}][{}]".format(*where[j])
            elif j < len(inputs):
                other = inputs[j][0]
            else:
                other = "params[{}][{}]".format(*divmod(j - len(inputs), 2))
            raise ValueError(f"{name}: overlaps {other} in memory; the gradients need "
                             "buffers of their own (separate arrays)")

    def forward(self, X: ArrayLike) -> np.ndarray:
        """The network's output ``A^(L)`` (B, n_L) as a new array, after the
        output activation (class probabilities for a softmax output)."""
        return self._core.forward(self._input(X))

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Class labels (B,) int64 for ``loss="cross_entropy"`` (argmax of the
        output), the outputs (B, n_L) for ``loss="mse"``."""
        out = self.forward(X)
        if self._loss == "cross_entropy":
            return np.argmax(out, axis=1)
        return out

    def __repr__(self):
        return (f"MLP({list(self._sizes)}, activation={list(self._activations[:-1])}, "
                f"output={self._activations[-1]!r}, loss={self.loss!r}, l2={self.l2}, "
                f"dtype={self._dtype.name!r})")
