"""What fastbp.RNN and fastbp.LSTM share: a recurrent layer (or a stack of
them, optionally bidirectional), a linear readout at every step (or at the
last step only), a loss averaged over time and batch, and L2 on the weight
matrices.

The recurrent layer itself (its parameters, its compiled forward and BPTT) is
the subclass's; this class owns everything around it, so both models validate,
read out, score and regularise in exactly the same way:

    O_t = h_t W_outᵀ + b_out                       (B, O) per step; h_t is the top
                                                   layer's output, (B, D·H) with
                                                   D = 2 directions when bidirectional
    L   = mean over the T·B rows of ℓ(O_t, Y_t)    (many-to-many, docs/equations.md §2, §6;
                                                   with lengths, over the valid steps only)
    L   = mean over the B rows of ℓ(O_T, Y)        (many_to_one=True)
    J   = L + (λ/2) Σ ‖W‖²_F over every weight matrix (biases and peepholes not penalised)

ℓ is softmax cross-entropy (integer labels or one-hot targets) or squared error
(summed over outputs, "sum" form, or ½·mean with mse_form="half_mean").
"""
from __future__ import annotations

import os
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

from . import _core, functional, training
from ._linalg import matmul, matmul_rows, sum_of_squares
from ._memory import pooled
from ._persistent import Persistent
from ._seqfeed import SequenceFeed
from ._torch_names import sequence_name
from ._validate import (as_array, check_shape, choice, flag, float_array, label_array,
                        nonnegative_float, pinned_copy, positive_int, resolve_dtype)
from ._sequence import Layout, lengths_array, reset_array
from ._stack import model_param_name, stack_config
from .callbacks import Callback
from .optim import Optimizer, sigint_held
from .training import History

LOSSES = ("mse", "cross_entropy")


class _Params(dict):
    """A sequence model's parameters by name: a dict whose assignments go
    through the model's set_params (validated, copied, refused during fit) and
    whose names are fixed."""

    __slots__ = ("_model",)

    def __init__(self, model, params):
        super().__init__(params)
        self._model = model

    def __setitem__(self, name, value):
        self._model.set_params({name: value})

    def update(self, *args, **kwargs):
        self._model.set_params(dict(*args, **kwargs))

    def _fixed(self, *args, **kwargs):
        raise TypeError("params: the parameter names of a model are fixed (assign values "
                        "with model.params[name] = value or set_params)")

    __delitem__ = pop = popitem = clear = setdefault = _fixed

    def __reduce__(self):
        return dict, (dict(self),)


class SequenceModel(Persistent):
    """Base class of the sequence models; not used directly.

    Subclasses set ``_state_names`` (("h",) or ("h", "c")), and implement
    ``_init_layer(rng)`` (fill ``self._params`` with the layers' arrays first),
    ``_layer_forward(X, states, layout, keep_cache) -> (Hs (T,B,F), final_states,
    cache)`` (keep_cache=False: no cache, None; layout: fastbp._sequence.Layout,
    the batch's lengths and resets; F =
    ``_features``) and ``_layer_backward(dHs or None, dfinal_states, cache) ->
    dict`` with a gradient for each layer parameter name.

    Stacks (``num_layers`` > 1 or ``bidirectional``): the states are
    (num_layers·D, B, H) as in torch, index l·D + d, instead of (B, H); the
    readout reads F = D·H features, ``[forward, reverse]``; many-to-one reads
    the top layer's final states, ``[h_n forward (after each row's last
    step), h_n reverse (after its whole reverse pass, at time 0)]``. Layer 0's
    forward direction keeps the one-layer parameter names ("weight_ih", ...);
    the others get torch's suffixes ("weight_ih_l1", "weight_ih_l0_reverse").
    """

    _state_names = ("h",)

    def __init__(self, input_size, hidden_size, output_size, *, loss, many_to_one, l2,
                 dtype, seed, mse_form="sum", num_layers=1, bidirectional=False):
        self.input_size = positive_int(input_size, "input_size")
        self.hidden_size = positive_int(hidden_size, "hidden_size")
        self.output_size = positive_int(output_size, "output_size")
        self.num_layers, D = stack_config(num_layers, bidirectional)
        self.bidirectional = D == 2
        self.loss = choice(loss, "loss", LOSSES)
        self.mse_form = choice(mse_form, "mse_form", functional.MSE_FORMS)
        self.many_to_one = flag(many_to_one, "many_to_one")
        self.l2 = nonnegative_float(l2, "l2")
        self.dtype = resolve_dtype(dtype)
        self.seed = seed
        rng = np.random.default_rng(seed)
        self._params = {}
        self._init_layer(rng)
        # readout initialised like torch.nn.Linear(F, O): U(−1/√F, 1/√F)
        bound = 1.0 / np.sqrt(self._features)
        self._params["weight_out"] = rng.uniform(
            -bound, bound, (self.output_size, self._features)).astype(self.dtype)
        self._params["bias_out"] = rng.uniform(-bound, bound, self.output_size).astype(self.dtype)
        # every parameter's shape, for good: what each call checks its arrays against
        self._shapes = {name: p.shape for name, p in self._params.items()}
        self._own(self._params)

    def _own(self, params):
        """Make the model's arrays from `params` (name -> array of its dtype)
        over storage it pins (fastbp._validate.pinned_copy): ``params`` hands
        out the public arrays, every computation reads the private views
        (_kernel) of the same memory, so no buffer a kernel reads without the
        GIL can be freed or moved meanwhile."""
        owned = {name: pinned_copy(p, self.dtype) for name, p in params.items()}
        self._kernel = {name: private for name, (_, private, _) in owned.items()}
        self._bases = {name: public.base for name, (public, _, _) in owned.items()}
        self._pins = {name: pin for name, (_, _, pin) in owned.items()}
        self._params = _Params(self, {name: public for name, (public, _, _) in owned.items()})
        self._kernel_generation = getattr(self, "_kernel_generation", 0) + 1

    def __getstate__(self):
        """Pickling and copy.deepcopy: the parameters as plain arrays (the
        pinned storage is rebuilt by __setstate__)."""
        state = self.__dict__.copy()
        # (_stepper: model.step's buffers, rebuilt on the next step)
        for private in ("_kernel", "_bases", "_pins", "_stepper"):
            state.pop(private, None)
        state["_params"] = {name: np.array(p) for name, p in self._params.items()}
        return state

    def __setstate__(self, state):
        params = state.pop("_params")
        self.__dict__.update(state)
        self._own(params)

    # -- training (fastbp.training, through the protocol's members) ----------------
    def fit(self, X: ArrayLike, y: ArrayLike, epochs: int = 10, batch_size: int = 32,
            optimizer: Union[Optimizer, str, None] = None, validation_data: Optional[tuple] = None,
            shuffle: bool = True, seed: Optional[int] = None, progress: bool = True,
            clip_norm: Optional[float] = None, bptt: Union[int, Tuple[int, int], None] = None,
            lengths: Optional[ArrayLike] = None, reset: Optional[ArrayLike] = None,
            burn_in: int = 0, comm: Any = None, checkpoint: Union[str, os.PathLike, None] = None,
            callbacks: Optional[Sequence[Union[Callback, Callable]]] = None,
            validation_split: Optional[float] = None) -> History:
        """Train with mini-batches of sequences; returns a :class:`fastbp.training.History`.

        X is (T, N, I) and y as for ``loss_and_grad`` ((T, N[, O]), or (N[, O])
        with ``many_to_one``); a batch is ``batch_size`` of the N sequences, each
        starting from a zero state.

        bptt : int, (k1, k2) or None
            Truncated backpropagation through time: train on chunks of ``bptt``
            time steps, one optimizer step per chunk, carrying the state (not its
            gradient) across chunks. None trains on whole sequences. With
            ``many_to_one`` the state is carried through the first T − bptt steps
            without gradient and the last ``bptt`` steps are trained.
            ``(k1, k2)``: Williams and Peng's BPTT(k1, k2) (:mod:`fastbp.tbptt`):
            every k1 steps, one optimizer step on those steps' losses
            backpropagated k2 >= k1 steps, without recomputing overlapping
            windows. Many-to-many, unidirectional (any num_layers), no lengths/reset.
        burn_in : int
            With ``bptt=(k1, k2)``: steps at the start of each batch that only
            warm the state up (no loss on them).
        lengths : int array (N,) or None
            Each sequence's number of valid steps (0 <= length <= T): the
            kernels skip the rest and the loss averages over valid steps only.
        reset : bool array (T, N) or None
            Steps where a sequence restarts from the zero state (episode or
            document boundaries inside one row).
        validation_data : (X_val, y_val[, lengths_val[, reset_val]]) or None
        validation_split : float in (0, 1) or None
            Hold out the last fraction of the N sequences (with their lengths
            and resets) as the validation data instead.

        The other arguments and the behaviour (``callbacks`` such as
        :class:`fastbp.callbacks.EarlyStopping` and the learning-rate
        schedules, ``checkpoint``, Ctrl-C, one fit per model at a time) are
        those of :func:`fastbp.training.fit`; with ``comm`` the ranks split
        every batch by sequences.
        """
        feed, X, validation_data = SequenceFeed.for_fit(self, X, validation_data, bptt, lengths,
                                                        reset, burn_in)
        return training.fit(self, feed, X, y, epochs=epochs, batch_size=batch_size,
                            optimizer=optimizer, validation_data=validation_data,
                            shuffle=shuffle, seed=seed, progress=progress, clip_norm=clip_norm,
                            comm=comm, checkpoint=checkpoint, callbacks=callbacks,
                            validation_split=validation_split)

    def evaluate(self, X: ArrayLike, y: ArrayLike, batch_size: int = 256,
                 bptt: Optional[int] = None, lengths: Optional[ArrayLike] = None,
                 reset: Optional[ArrayLike] = None,
                 comm: Any = None) -> Tuple[float, Optional[float]]:
        """(loss, accuracy) on data, accuracy None for regressors; ``bptt`` chunks
        long sequences (carrying the state) to bound memory; same result.
        lengths (N,) and reset (T, N) as for :meth:`fit`. With ``comm`` (as in
        :meth:`fit`) each rank scores its block of the sequences."""
        feed, X = SequenceFeed.for_evaluate(self, X, bptt, lengths, reset)
        return training.evaluate(self, feed, X, y, batch_size, comm)

    def named_parameters(self) -> List[Tuple[str, np.ndarray]]:
        """``[(state-dict name, array), ...]``: the model's own arrays in the
        order of ``params``, named as torch.nn.RNN/LSTM and a Linear readout
        ("weight_ih_l0", ..., "readout.weight", "readout.bias")."""
        return [(sequence_name(name), p) for name, p in self._params.items()]

    def is_classifier(self) -> bool:
        """True for ``loss="cross_entropy"``: predictions are class labels."""
        return self.loss == "cross_entropy"

    # -- stacks ----------------------------------------------------------------
    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def _stacked(self):
        """States are (num_layers·D, B, H) rather than (B, H)."""
        return self.num_layers > 1 or self.bidirectional

    @property
    def _features(self):
        """Width of the top layer's output, what the readout reads: D·H."""
        return self.num_directions * self.hidden_size

    def _layer_params(self, kinds):
        """weights[l][d]: each layer direction's arrays by kind (those it has)."""
        return [[{k: self._kernel[model_param_name(k, l, d)] for k in kinds
                  if model_param_name(k, l, d) in self._kernel}
                 for d in range(self.num_directions)] for l in range(self.num_layers)]

    def _layer_grads(self, grads):
        """grads[l][d][kind] -> a dict by the models' parameter names."""
        return {model_param_name(k, l, d): g for l, layer in enumerate(grads)
                for d, by_kind in enumerate(layer) for k, g in by_kind.items()}

    def _split_states(self, states):
        """The model's states (one per state name: (B, H), or (L·D, B, H) for a
        stack, or None) -> [[a tuple with one (B, H) or None per state, per
        direction] per layer]."""
        L, D = self.num_layers, self.num_directions
        per_state = [[[None] * D for _ in range(L)] if s is None
                     else [[s[l * D + d] for d in range(D)] for l in range(L)] if self._stacked
                     else [[s]] for s in states]
        return [[tuple(p[l][d] for p in per_state) for d in range(D)] for l in range(L)]

    def _join_states(self, finals):
        """(L·D, B, H) per state -> the model's form ((B, H) for one layer, one direction)."""
        return tuple(finals) if self._stacked else tuple(f[0] for f in finals)

    def _last_features(self, h_n):
        """Many-to-one features (B, F) from the final h: the top layer's directions."""
        if not self._stacked:
            return h_n
        D = self.num_directions
        return np.concatenate(list(h_n[-D:]), axis=1)

    def _last_features_grad(self, dF):
        """∂L/∂(final h) in the model's state form from ∂L/∂features (B, F)."""
        if not self._stacked:
            return dF
        L, D, H = self.num_layers, self.num_directions, self.hidden_size
        g = np.zeros((L * D, dF.shape[0], H), dtype=dF.dtype)
        for d in range(D):
            g[(L - 1) * D + d] = dF[:, d * H:(d + 1) * H]
        return g

    # -- parameters ---------------------------------------------------------
    @property
    def params(self):
        """The parameters by name (the model's own arrays: modify with care).

        ``model.params[name] = value`` is :meth:`set_params` (validated, copied,
        refused during fit); names cannot be added or removed."""
        return self._params

    def set_params(self, new_params: Mapping[str, ArrayLike]) -> None:
        """Replace parameters by name, all validated before any is changed.

        The model keeps copies (never views of the caller's arrays: a
        memory-mapped file, an ``np.matrix`` or a read-only array given here
        stays the caller's). Refused with RuntimeError while ``fit`` trains the
        model (in another thread): the optimizer updates the arrays it started
        with, so a replaced one would silently stop training. (``load_state_dict``
        writes into the model's arrays in place.)"""
        if training.is_training(self):
            raise RuntimeError(f"set_params: {type(self).__name__}.fit is training this model "
                               "(in another thread); set parameters before or after fit")
        if not hasattr(new_params, "items"):
            raise TypeError(f"new_params: expected a mapping of parameter names to arrays, got "
                            f"{type(new_params).__name__}")
        checked = {}
        for name, value in new_params.items():
            if name not in self._shapes:
                raise KeyError(f"{name!r}: not a parameter of {type(self).__name__} "
                               f"(expected one of {', '.join(self._shapes)})")
            value = float_array(value, name, dtype=self.dtype, shape=self._shapes[name])
            checked[name] = pinned_copy(value, self.dtype)     # the model's own
        # all or none, Ctrl-C included; an old private view keeps its storage
        # alive while a call still reads it
        with sigint_held():
            self._kernel.update({name: private for name, (_, private, _) in checked.items()})
            self._bases.update({name: public.base for name, (public, _, _) in checked.items()})
            self._pins.update({name: pin for name, (_, _, pin) in checked.items()})
            dict.update(self._params, {name: public for name, (public, _, _) in checked.items()})
            self._kernel_generation += 1    # arrays replaced: model.step's plans are rebuilt

    def _checked_params(self):
        """Refuse, by name, a parameter that was replaced (``model.params[name] =
        ...``) or changed in place since it was set: every call that computes
        checks the model's arrays first (the compiled glue checks sizes again,
        so nothing changed meanwhile is read out of bounds either)."""
        P = self._params
        if _core.params_intact(P, self._shapes, self._bases, self.dtype.num):
            return P                                # the common case, in compiled code
        if P.keys() != self._shapes.keys():
            missing = [n for n in self._shapes if n not in P]
            extra = [n for n in P if n not in self._shapes]
            raise ValueError(f"params: expected exactly {list(self._shapes)}"
                             + (f"; missing {missing}" if missing else "")
                             + (f"; unexpected {extra}" if extra else ""))
        for name, shape in self._shapes.items():
            p = P[name]
            if not isinstance(p, np.ndarray):
                raise TypeError(f"params[{name!r}]: expected a NumPy array of {self.dtype}, got "
                                f"{type(p).__name__} (assign parameters with set_params)")
            if p.dtype != self.dtype:
                raise TypeError(f"params[{name!r}]: expected dtype {self.dtype}, got {p.dtype} "
                                "(assign parameters with set_params, which converts)")
            if p.shape != shape:
                raise ValueError(f"params[{name!r}]: expected shape {shape}, got {p.shape}")
            if not (p.flags.c_contiguous and p.flags.aligned):
                raise ValueError(f"params[{name!r}]: expected a C-contiguous, aligned array "
                                 "(assign parameters with set_params, which copies)")
            if p.base is not self._bases[name]:
                raise ValueError(f"params[{name!r}]: not the model's own array (put in behind "
                                 "set_params, or its buffer was replaced in place): its values "
                                 "would not be the ones computed with (assign parameters with "
                                 "set_params, or write into the arrays)")
        return P

    # -- validation -----------------------------------------------------------
    def _check_X(self, X):
        X = float_array(X, "X", dtype=self.dtype, ndim=3, shape=(None, None, self.input_size))
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"X: expected shape (T, B, {self.input_size}) with T >= 1 and B >= 1, "
                             f"got {X.shape}")
        return X

    def _check_state(self, s, name, B):
        if s is None:
            return None
        lead = (self.num_layers * self.num_directions,) if self._stacked else ()
        return float_array(s, name, dtype=self.dtype, shape=lead + (B, self.hidden_size))

    def _check_Y(self, Y, T, B, mask=None):
        """Targets: labels (T,B)/(B,) or one-hot/targets (T,B,O)/(B,O).

        mask (T,B): the valid steps when rows have lengths; entries past a
        row's length are not read (any padding value is accepted there)."""
        lead = (B,) if self.many_to_one else (T, B)
        O = self.output_size
        if mask is not None and not self.many_to_one:
            Y = as_array(Y, "Y")
            check_shape(Y, "Y", lead + (() if Y.ndim == 2 else (O,)))
            valid = self._check_Y(Y[mask][None], 1, int(mask.sum()))   # the valid rows as (1, N, ...)
            out = np.zeros(Y.shape, dtype=valid.dtype)
            out[mask] = valid.reshape((-1,) + Y.shape[2:])
            return out
        Y = as_array(Y, "Y")
        if self.loss == "cross_entropy" and Y.dtype.kind in "iu" and Y.ndim == len(lead):
            return label_array(Y, "Y", O, shape=lead)     # labels; integer one-hot goes below
        Y = float_array(Y, "Y", dtype=self.dtype)
        check_shape(Y, "Y", lead + (O,))
        return Y

    # -- forward, loss, backward --------------------------------------------
    def _readout(self, Hrows):
        """O(rows,O) = H(rows,H) W_outᵀ + b_out for every step at once, each
        row as if alone (matmul_rows: what ``step`` reads out equals this)."""
        out = matmul_rows(Hrows, self._kernel["weight_out"])
        out += self._kernel["bias_out"]
        return out

    def _forward(self, X, states, lengths=None, reset=None, keep_cache=True):
        self._checked_params()
        X = self._check_X(X)
        T, B, _ = X.shape
        states = tuple(self._check_state(s, n + "0", B) for s, n in zip(states, self._state_names))
        layout = Layout(T, B, lengths_array(lengths, T, B), reset_array(reset, T, B))
        Hs, final, cache = self._layer_forward(X, states, layout, keep_cache)
        # many-to-one reads each row's own last state (both directions' final states)
        Hrows = (self._last_features(final[0]) if self.many_to_one
                 else Hs.reshape(T * B, self._features))
        return X, Hs, Hrows, final, cache, layout

    @pooled
    def _outputs(self, X, states, lengths=None, reset=None):
        """Readout outputs (T,B,O) (zero past each row's length), or (B,O)
        when many_to_one, and the final states."""
        # inference: the layers keep nothing for a backward
        X, Hs, Hrows, final, _, layout = self._forward(X, states, lengths, reset,
                                                       keep_cache=False)
        out = self._readout(Hrows)
        if not self.many_to_one:
            out = out.reshape(X.shape[0], X.shape[1], self.output_size)
            mask = layout.mask()
            if mask is not None:
                out[~mask] = 0
        return out, final

    def _predict_from(self, out):
        return np.argmax(out, axis=-1) if self.loss == "cross_entropy" else out

    def _data_loss(self, out, Yrows):
        """ℓ's mean over rows and its gradient ∂L/∂out: out (rows, O), Yrows
        labels (rows,) or targets (rows, O). The one loss of training and scoring."""
        if self.loss == "cross_entropy":
            return functional.softmax_cross_entropy(out, Yrows)
        return functional.squared_error(out, Yrows, self.mse_form)

    def _output_loss(self, out, Y):
        """The objective ``_loss_and_grad`` reports, from readout outputs (…, O)
        and validated targets (…) or (…, O) (scoring: no gradient is kept)."""
        flat = out.reshape(-1, self.output_size)
        target = Y.reshape((flat.shape[0],) + ((self.output_size,) if Y.ndim == out.ndim else ()))
        loss, _ = self._data_loss(flat, target)
        return float(self._penalized(loss))

    def _score(self, Hrows, Yrows):
        """Readout and loss of rows of states: Hrows (rows, F) (F = D·H features:
        H for one direction), Yrows labels (rows,) or targets (rows, O). Returns
        (mean loss, {"weight_out", "bias_out"} gradients, dL/dHrows (rows, F))."""
        out = self._readout(Hrows)                          # (rows, O)
        loss, dout = self._data_loss(out, Yrows)
        grads = {"weight_out": matmul(dout, Hrows, trans_a=True),   # dW_out(O,F) = dO(rows,O)ᵀ H(rows,F)
                 "bias_out": dout.sum(axis=0)}
        return loss, grads, matmul(dout, self._kernel["weight_out"])   # dH(rows,F) = dO W_out(O,F)

    def _penalized_weights(self):
        """The arrays the L2 term penalises: every weight matrix (not the biases,
        not the peepholes), by name, in the params' order."""
        return [(name, W) for name, W in self._kernel.items() if name.startswith("weight")]

    def _penalized(self, loss):
        """A data loss plus (λ/2) Σ‖W‖²_F, added one matrix at a time."""
        if self.l2:
            for _, W in self._penalized_weights():
                loss += 0.5 * self.l2 * sum_of_squares(W)
        return loss

    def _regularize(self, loss, grads):
        """Add the L2 term to a data loss and its gradients; the params' order."""
        if self.l2:
            loss = self._penalized(loss)
            for name, W in self._penalized_weights():
                grads[name] = grads[name] + self.l2 * W
        return loss, {name: grads[name] for name in self._params}

    @pooled     # the readout's arrays too (fastbp/_memory.py)
    def _loss_and_grad(self, X, Y, states, lengths=None, reset=None):
        X, Hs, Hrows, final, cache, layout = self._forward(X, states, lengths, reset)
        T, B, H = Hs.shape
        mask = layout.mask()
        Y = self._check_Y(Y, T, B, mask)
        valid = None
        if mask is not None and not self.many_to_one:   # score the valid steps only
            valid = mask.reshape(T * B)
            if not valid.any():
                raise ValueError("lengths: every length is 0, there is no step to score")
            Hrows = Hrows[valid]
            Y = Y.reshape((T * B,) + Y.shape[2:])[valid][None]
        lead = 1 if self.many_to_one else 2        # labels (rows,) or targets (rows, O)
        loss, grads, dH = self._score(Hrows, Y.reshape((Hrows.shape[0],) + Y.shape[lead:]))
        if valid is not None:                               # back to every (t, b); 0 past lengths
            full = np.zeros((T * B, H), dtype=dH.dtype)
            full[valid] = dH
            dH = full
        zeros = (None,) * len(self._state_names)
        if self.many_to_one:   # only h_T is read out: its gradient enters as ∂L/∂h_n
            layer_grads = self._layer_backward(None, (self._last_features_grad(dH),) + zeros[1:],
                                               cache)
        else:
            layer_grads = self._layer_backward(dH.reshape(T, B, H), zeros, cache)
        for name in self._params:
            if name not in grads:
                grads[name] = layer_grads[name]
        loss, grads = self._regularize(loss, grads)
        return float(loss), grads, final
