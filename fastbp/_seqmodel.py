"""What fastbp.RNN and fastbp.LSTM share: a recurrent layer, a linear readout
at every step (or at the last step only), a loss averaged over time and batch,
and L2 on the weight matrices.

The recurrent layer itself (its parameters, its compiled forward and BPTT) is
the subclass's; this class owns everything around it, so both models validate,
read out, score and regularise in exactly the same way:

    O_t = h_t W_outᵀ + b_out                       (B, O) per step
    L   = mean over the T·B rows of ℓ(O_t, Y_t)    (many-to-many, EQUATIONS §2, §5;
                                                   with lengths, over the valid steps only)
    L   = mean over the B rows of ℓ(O_T, Y)        (many_to_one=True)
    J   = L + (λ/2) Σ ‖W‖²_F over every weight matrix (biases and peepholes not penalised)

ℓ is softmax cross-entropy (integer labels or one-hot targets) or squared error
(summed over outputs, "sum" form, or ½·mean with mse_form="half_mean").
"""
import numpy as np

from . import functional
from ._validate import (check_shape, choice, float_array, label_array, nonnegative_float,
                        positive_int, resolve_dtype)
from ._sequence import Layout, lengths_array, reset_array
from .training import SequenceTrainable

LOSSES = ("mse", "cross_entropy")


class SequenceModel(SequenceTrainable):
    """Base class of the sequence models; not used directly.

    Subclasses set ``_state_names`` (("h",) or ("h", "c")), and implement
    ``_init_layer(rng)`` (fill ``self._params`` with the layer's arrays first),
    ``_layer_forward(X, states, layout) -> (Hs (T,B,H), final_states, cache)``
    (layout: fastbp._sequence.Layout, the batch's lengths and resets) and
    ``_layer_backward(dHs or None, dfinal_states, cache) -> dict`` with a
    gradient for each layer parameter name.
    """

    _state_names = ("h",)

    def __init__(self, input_size, hidden_size, output_size, *, loss, many_to_one, l2,
                 dtype, seed, mse_form="sum"):
        self.input_size = positive_int(input_size, "input_size")
        self.hidden_size = positive_int(hidden_size, "hidden_size")
        self.output_size = positive_int(output_size, "output_size")
        self.loss = choice(loss, "loss", LOSSES)
        self.mse_form = choice(mse_form, "mse_form", functional.MSE_FORMS)
        self.many_to_one = bool(many_to_one)
        self.l2 = nonnegative_float(l2, "l2")
        self.dtype = resolve_dtype(dtype)
        self.seed = seed
        rng = np.random.default_rng(seed)
        self._params = {}
        self._init_layer(rng)
        # readout initialised like torch.nn.Linear: U(−1/√H, 1/√H)
        bound = 1.0 / np.sqrt(self.hidden_size)
        self._params["weight_out"] = rng.uniform(
            -bound, bound, (self.output_size, self.hidden_size)).astype(self.dtype)
        self._params["bias_out"] = rng.uniform(-bound, bound, self.output_size).astype(self.dtype)

    # -- parameters ---------------------------------------------------------
    @property
    def params(self):
        """The parameters by name (the model's own arrays: modify with care)."""
        return self._params

    def set_params(self, new_params):
        """Replace parameters by name, all validated before any is changed."""
        checked = {}
        for name, value in new_params.items():
            if name not in self._params:
                raise KeyError(f"{name!r}: not a parameter of {type(self).__name__} "
                               f"(expected one of {', '.join(self._params)})")
            checked[name] = float_array(value, name, dtype=self.dtype, shape=self._params[name].shape)
        for name, value in checked.items():
            self._params[name] = value.copy() if value is new_params[name] else value

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
        return float_array(s, name, dtype=self.dtype, shape=(B, self.hidden_size))

    def _check_Y(self, Y, T, B, mask=None):
        """Targets: labels (T,B)/(B,) or one-hot/targets (T,B,O)/(B,O).

        mask (T,B): the valid steps when rows have lengths; entries past a
        row's length are not read (any padding value is accepted there)."""
        lead = (B,) if self.many_to_one else (T, B)
        O = self.output_size
        if mask is not None and not self.many_to_one:
            Y = np.asarray(Y)
            check_shape(Y, "Y", lead + (() if Y.ndim == 2 else (O,)))
            valid = self._check_Y(Y[mask][None], 1, int(mask.sum()))   # the valid rows as (1, N, ...)
            out = np.zeros(Y.shape, dtype=valid.dtype)
            out[mask] = valid.reshape((-1,) + Y.shape[2:])
            return out
        if self.loss == "cross_entropy" and np.asarray(Y).dtype.kind in "iu":
            return label_array(Y, "Y", O, shape=lead)
        Y = float_array(Y, "Y", dtype=self.dtype)
        check_shape(Y, "Y", lead + (O,))
        return Y

    # -- forward, loss, backward --------------------------------------------
    def _readout(self, Hrows):
        """O(rows,O) = H(rows,H) W_outᵀ + b_out: one GEMM for every step."""
        return Hrows @ self._params["weight_out"].T + self._params["bias_out"]

    def _forward(self, X, states, lengths=None, reset=None):
        X = self._check_X(X)
        T, B, _ = X.shape
        states = tuple(self._check_state(s, n + "0", B) for s, n in zip(states, self._state_names))
        layout = Layout(T, B, lengths_array(lengths, T, B), reset_array(reset, T, B))
        Hs, final, cache = self._layer_forward(X, states, layout)
        # many-to-one reads each row's own last state
        Hrows = final[0] if self.many_to_one else Hs.reshape(T * B, self.hidden_size)
        return X, Hs, Hrows, final, cache, layout

    def _outputs(self, X, states, lengths=None, reset=None):
        """Readout outputs (T,B,O) (zero past each row's length), or (B,O)
        when many_to_one, and the final states."""
        X, Hs, Hrows, final, _, layout = self._forward(X, states, lengths, reset)
        out = self._readout(Hrows)
        if not self.many_to_one:
            out = out.reshape(X.shape[0], X.shape[1], self.output_size)
            mask = layout.mask()
            if mask is not None:
                out[~mask] = 0
        return out, final

    def _predict_from(self, out):
        return np.argmax(out, axis=-1) if self.loss == "cross_entropy" else out

    def _score(self, Hrows, Yrows):
        """Readout and loss of rows of states: Hrows (rows, H), Yrows labels
        (rows,) or targets (rows, O). Returns (mean loss, {"weight_out",
        "bias_out"} gradients, dL/dHrows (rows, H))."""
        out = self._readout(Hrows)                          # (rows, O)
        if self.loss == "cross_entropy":
            loss, dout = functional.softmax_cross_entropy(out, Yrows)
        else:
            loss, dout = functional.squared_error(out, Yrows, self.mse_form)
        grads = {"weight_out": dout.T @ Hrows,              # dW_out(O,H) = dO(rows,O)ᵀ @ H(rows,H)
                 "bias_out": dout.sum(axis=0)}
        return loss, grads, dout @ self._params["weight_out"]   # dH(rows,H) = dO @ W_out(O,H)

    def _regularize(self, loss, grads):
        """Add the L2 term to a data loss and its gradients; the params' order."""
        if self.l2:
            for name, W in self._params.items():
                if name.startswith("weight"):
                    loss += 0.5 * self.l2 * float(np.vdot(W, W))
                    grads[name] = grads[name] + self.l2 * W
        return loss, {name: grads[name] for name in self._params}

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
            layer_grads = self._layer_backward(None, (dH,) + zeros[1:], cache)
        else:
            layer_grads = self._layer_backward(dH.reshape(T, B, H), zeros, cache)
        for name in self._params:
            if name not in grads:
                grads[name] = layer_grads[name]
        loss, grads = self._regularize(loss, grads)
        return float(loss), grads, final
