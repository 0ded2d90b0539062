"""The recurrent models' layer half: parameters, initialisation and layer calls of fastbp.RNN, LSTM and GRU from their cell description.

A model class sets ``_spec`` (fastbp._recurrent.CellSpec) and builds
``self._cell`` (an EngineCell with its options) before calling
``RecurrentModel.__init__``; everything else that depends on the cell is read
from the spec. The readout, losses, states and training live in
fastbp._seqmodel.SequenceModel.
"""
from typing import Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

from . import _stack
from ._seqmodel import SequenceModel
from ._step import Stepper

__all__ = ["RecurrentModel", "HiddenStateModel"]


class RecurrentModel(SequenceModel):
    """Base of the compiled recurrent models; not used directly."""

    _spec = None                 # the cell description, set by each model class
    _with_optional = False       # whether the layers have the spec's optional kinds
    _optional_flag = None        # the constructor argument that adds them (fastbp.io reads it)

    @property
    def _state_names(self):
        return self._spec.state_names

    def _pack_workspace(self, B, H, dt):
        """The per-step product rule of this cell (fastbp.tbptt.Stream asks for it)."""
        return self._cell.pack_workspace(B, H, dt)

    def _layer_kinds(self):
        spec = self._spec
        return spec.layer_kinds if self._with_optional else spec.layer_kinds[:4]

    def _init_layer(self, rng):
        """Every layer array ~ U(−1/√H, 1/√H), as torch.nn.RNN/LSTM/GRU do, in
        torch's order (layer, direction, kind), then _init_direction's changes."""
        H, D = self.hidden_size, self.num_directions
        bound = 1.0 / np.sqrt(H)
        shape = self._spec.layer_shape(self.input_size, H, D)
        for l in range(self.num_layers):
            for d in range(D):
                names = {kind: _stack.model_param_name(kind, l, d) for kind in self._layer_kinds()}
                for kind, name in names.items():
                    self._params[name] = rng.uniform(-bound, bound,
                                                     shape(kind, l)).astype(self.dtype)
                self._init_direction(names)

    def _init_direction(self, names):
        """A cell's own initial values for one layer direction (names: kind -> name)."""

    def _layer_forward(self, X, states, layout, keep_cache=True):
        # the params are validated when set: C-contiguous, the model's dtype and shapes
        weights = [[self._cell.engine_weights(w) for w in layer]
                   for layer in self._layer_params(self._layer_kinds())]
        y, finals, cache = _stack.forward(self._cell, X, weights, self._split_states(states),
                                          layout, self.num_layers, self.num_directions,
                                          self.hidden_size, keep_cache)
        return y, self._join_states(finals), cache

    # -- streaming ------------------------------------------------------------------
    def step(self, x: ArrayLike,
             state: Union[ArrayLike, Tuple[ArrayLike, ArrayLike], None] = None
             ) -> Tuple[np.ndarray, Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]]:
        """Run one step (or k steps) from a carried state: streaming inference.

        x : array, shape (B, I) for one step, or (k, B, I) for k steps
        state : the state as :meth:`forward` (and ``step``) return it, or None
            (zeros): ``h_n`` (B, H), ``(h_n, c_n)`` for an LSTM (a None
            part is zeros), each (num_layers, B, H) for a stack.

        Returns ``(y, state)``: y the readout of the new state(s), (B, O) for
        one step, (k, B, O) for k steps (before the softmax of a cross-entropy
        model), or with ``many_to_one`` the readout of the new final state
        (B, O); state the new state, in the same form. A loop of steps runs
        what :meth:`forward` runs over the whole sequence, and matches it to
        rounding (``step`` over k steps is ``forward`` over those k steps bit
        for bit; fastbp._step says where a loop of single steps may round
        differently). Bidirectional models cannot stream (ValueError): their
        reverse direction starts from each row's last step.

        The inputs and the state are copied (the caller's arrays are never
        read by the compiled code, nor modified); the buffers are kept for the
        next call of the same shape.
        """
        stepper = self.__dict__.get("_stepper")
        if stepper is None:
            if self.bidirectional:
                raise ValueError(f"{type(self).__name__}.step: a bidirectional model cannot "
                                 "stream: its reverse direction reads each sequence from its "
                                 "last step backwards, which a stream does not have yet (run "
                                 "forward over the whole sequence instead)")
            names = [{kind: _stack.model_param_name(kind, l, 0) for kind in self._layer_kinds()}
                     for l in range(self.num_layers)]
            stepper = self._stepper = Stepper(self, names)
        return stepper.run(x, state)

    def _layer_backward(self, dHs, dfinal, cache):
        # the model owns this cache and needs no ∂L/∂X: the gate gradients may
        # overwrite the gates
        _, grads, _ = _stack.backward(cache, dHs, self._split_states(dfinal), want_dx=False,
                                      overwrite=True)
        return self._layer_grads(grads)


class HiddenStateModel(RecurrentModel):
    """A recurrent model whose only state is h (fastbp.RNN, fastbp.GRU): the
    public calls those two share; the LSTM has its own, with (h, c)."""

    def forward(self, X, h0=None, lengths=None, reset=None):
        """Readout outputs and the final state.

        X (T, B, I); h0 (B, H), or (num_layers·D, B, H) for a stack, or None
        (zeros); lengths (B,) and reset (T, B) as for the cell's stack forward
        (:func:`fastbp.rnn_stack_forward`, :func:`fastbp.gru_stack_forward`).
        Returns ``(outputs, h_n)``: outputs (T, B, O) (zero past each row's
        length), or (B, O) read from each row's final state when many_to_one,
        before the softmax of a cross-entropy model.
        """
        out, (h_n,) = self._outputs(X, (h0,), lengths, reset)
        return out, h_n

    def predict(self, X, h0=None, lengths=None, reset=None):
        """Class labels (argmax) for cross-entropy models, outputs for mse."""
        return self._predict_from(self.forward(X, h0, lengths, reset)[0])

    def loss_and_grad(self, X, Y, h0=None, lengths=None, reset=None):
        """Loss, gradients and final state for one sequence (or chunk of one).

        X (T, B, I); Y: targets (T, B, O) / labels (T, B), or (B, O) / (B,)
        when many_to_one; h0 (B, H), or (num_layers·D, B, H) for a stack, or
        None (zeros). Returns ``(loss, grads, h_n)``: grads by parameter name
        (same order as ``params``); pass h_n as the next chunk's h0 to carry the
        state (truncated BPTT; this makes no sense for a reverse direction,
        whose final state is the one at the chunk's start).

        lengths (B,) int: each sequence's valid steps (the loss averages over
        those only; Y past a row's length is not read); reset (T, B) bool:
        rows that restart from h0 (or zeros) at a step (every layer and
        direction: the pieces are separate sequences). See the cell's stack
        forward (:func:`fastbp.rnn_stack_forward`, :func:`fastbp.gru_stack_forward`).
        """
        loss, grads, (h_n,) = self._loss_and_grad(X, Y, (h0,), lengths, reset)
        return loss, grads, h_n
