"""Truncated backpropagation through time, BPTT(k1, k2) (Williams and Peng, 1990).

A long sequence is streamed: every k1 new steps, the losses of those k1 steps
are backpropagated through the last k2 >= k1 steps, and the caller updates the
weights. The activations of the last k2 steps stay in a buffer, so windows that
overlap (k2 > k1) need no recomputation: each step is computed forward once,
and every backward pass is one compiled call over a contiguous window.

The buffer holds ``capacity = 2·k2 + k1`` steps; steps are appended at its
end, and when the next chunk would not fit, the last k2 − k1 steps (all a
later window can reach) move to its front: a copy of k2 − k1 steps every
about k2/k1 chunks, so the amortised cost is one step's activations per step.

With k1 = k2 this is the ordinary chunked truncation (``fit(bptt=k)``) when
the sequence length is a multiple of k1 (a shorter last chunk is still
backpropagated k2 steps, into the chunk before it); with
k2 at least the sequence length, each chunk's losses are backpropagated to the
start of the sequence, and the gradients of all chunks add up to the full
BPTT gradient of the whole sequence.

:class:`Stream` is the low-level object for custom loops; ``fit(...,
bptt=(k1, k2))`` uses it, one optimizer step per chunk.
"""
import numbers

import numpy as np

from . import _core
from ._stack import model_param_name
from ._validate import float_array, positive_int

# the attributes a model must have to be streamed (fastbp.RNN, LSTM, GRU): its
# cell on the engine (fastbp._recurrent.EngineCell) says everything cell-specific
_STREAMABLE = ("_cell", "_checked_params", "_pack_workspace", "many_to_one",
               "hidden_size", "input_size", "dtype")

__all__ = ["Stream"]


class Stream:
    """Truncated BPTT(k1, k2) over a stream of B parallel sequences.

    Parameters
    ----------
    model : fastbp.RNN, fastbp.LSTM or fastbp.GRU
        Unidirectional (any ``num_layers``), many-to-many (a loss at every step).
    k1 : int
        Steps per chunk: :meth:`step` takes up to k1 new steps.
    k2 : int or None
        Steps backpropagated through, k2 >= k1 (None: k1).
    batch : int
        B, the number of parallel sequences.
    h0, c0 : (B, H) arrays or None
        The initial state (zeros for None); :meth:`reset` starts over.

    A burn-in prefix (steps that only advance the state, with no loss) is fed
    with :meth:`advance`; later windows may still backpropagate through it.

    Usage::

        stream = Stream(model, k1=25, k2=50, batch=B)
        for t in range(0, T, 25):
            loss, grads = stream.step(X[t:t + 25], Y[t:t + 25])
            optimizer.step(list(model.params.values()), list(grads.values()))

    The stored activations were computed with the weights of their time, as in
    every BPTT(k1, k2) implementation: a window that reaches back across an
    update mixes old activations with the current weights.
    """

    def __init__(self, model, k1, k2=None, batch=1, h0=None, c0=None):
        # what a stream needs of a model (fastbp.RNN and fastbp.LSTM have it): a
        # recurrent layer's state names, its parameters checked, its packing rule
        if not all(hasattr(model, a) for a in _STREAMABLE):
            raise TypeError(f"model: expected a fastbp RNN, LSTM or GRU, got "
                            f"{type(model).__name__}")
        if model.many_to_one:
            raise ValueError("model: truncated BPTT(k1, k2) needs a loss at every step "
                             "(many_to_one=False)")
        if getattr(model, "bidirectional", False):
            raise ValueError("model: truncated BPTT(k1, k2) streams forward in time: "
                             "bidirectional=True cannot be streamed")
        model._checked_params()
        self.model = model
        self.L = getattr(model, "num_layers", 1)
        # parameter names of layer l (forward direction): "weight_ih", "weight_ih_l1", ...
        self._cell = cell = model._cell
        spec = cell.spec
        self._names = [{kind: model_param_name(kind, l, 0) for kind in spec.layer_kinds}
                       for l in range(self.L)]
        self.k1 = positive_int(k1, "k1")
        self.k2 = self.k1 if k2 is None else positive_int(k2, "k2")
        if self.k2 < self.k1:
            raise ValueError(f"k2: expected k2 >= k1 = {self.k1}, got {self.k2}")
        self.B = positive_int(batch, "batch")
        H, B, dt = model.hidden_size, self.B, model.dtype
        self.capacity = 2 * self.k2 + self.k1
        cap = self.capacity
        GH, saved = spec.gates * H, spec.info["saved"] * H
        # per layer: each state's buffer (block p = the carried state), the
        # gates the backward reads (none for the RNN: it stages in h), inputs
        self._states = [[np.empty(((cap + 1) * B, H), dt) for _ in spec.state_names]
                        for _ in range(self.L)]
        self._gates = [np.empty((cap * B, saved), dt) if saved else None for _ in range(self.L)]
        self._xs = [np.empty((cap * B, model.input_size if l == 0 else H), dt)
                    for l in range(self.L)]
        self._dG = np.empty((self.k2 * B, GH), dt)       # δ of a window
        self._drec = np.empty((self.k2 * B, GH), dt) if spec.separate else None
        self._dy = np.empty((self.k2 * B, H), dt)        # ∂L/∂h of a window (top layer)
        self._dx = np.empty((self.k2 * B, H), dt) if self.L > 1 else None
        self.reset(h0, c0)

    # -- state -----------------------------------------------------------------
    def reset(self, h0=None, c0=None):
        """Start a new stream from h0 (and c0 for an LSTM), or zeros: (B, H)
        for one layer, (num_layers, B, H) for a stack."""
        B, H, L = self.B, self.model.hidden_size, self.L
        shape = (B, H) if L == 1 else (L, B, H)
        names = self._cell.spec.state_names
        if c0 is not None and "c" not in names:
            raise TypeError(f"c0: a {self._cell.spec.name.upper()} has no cell state")
        given = {"h": h0, "c": c0}
        for k, name in enumerate(names):
            s = given[name]
            s = None if s is None else float_array(s, name + "0", dtype=self.model.dtype,
                                                   shape=shape).reshape(L, B, H)
            for l in range(L):
                self._states[l][k][:B] = 0 if s is None else s[l]
        self._p = 0          # steps in the buffer; the current state is block p
        self.steps = 0       # steps streamed since the last reset

    @property
    def state(self):
        """The current state (copies): h (B, H), or (h, c) for an LSTM; with
        num_layers > 1, (num_layers, B, H) arrays."""
        B, p = self.B, self._p

        def block(k):
            out = np.stack([layer[k][p * B:(p + 1) * B] for layer in self._states])
            return out[0] if self.L == 1 else out
        states = tuple(block(k) for k in range(len(self._cell.spec.state_names)))
        return states if len(states) > 1 else states[0]

    # -- streaming -------------------------------------------------------------------
    def advance(self, X):
        """Run new steps forward (X (n, B, I), n <= k1) without a loss: a burn-in."""
        X = self._check_X(X)
        self._forward(X)
        return self

    def step(self, X, Y):
        """Feed the next n <= k1 steps and backpropagate their losses k2 steps.

        X (n, B, I); Y targets (n, B, O) or labels (n, B). Returns ``(loss,
        grads)``: the mean loss over the n·B new rows (plus the L2 term) and
        its gradients by parameter name, truncated k2 steps back. The model's
        weights are not changed: apply an optimizer step with ``grads``.
        """
        X = self._check_X(X)
        n = X.shape[0]
        model = self.model
        Y = model._check_Y(Y, n, self.B)
        self._forward(X)
        B, H, p = self.B, model.hidden_size, self._p
        new = self._states[-1][0][(p - n + 1) * B:(p + 1) * B]   # top layer's h of the new steps
        loss, grads, dH = model._score(new, Y.reshape((n * B,) + Y.shape[2:]))
        w = min(self.k2, p)                              # window: steps p−w .. p−1
        dy = self._dy[:w * B]
        dy[:(w - n) * B] = 0                             # no loss on the older steps
        dy[(w - n) * B:] = dH
        grads.update(self._backward(w, dy))
        return model._regularize(float(loss), grads)

    # -- internals --------------------------------------------------------------------
    def _check_X(self, X):
        m = self.model
        m._checked_params()          # replaced or reshaped since: refused by name
        X = float_array(X, "X", dtype=m.dtype, ndim=3, shape=(None, self.B, m.input_size))
        if not 1 <= X.shape[0] <= self.k1:
            raise ValueError(f"X: expected 1 to k1 = {self.k1} steps, got {X.shape[0]}")
        return X

    def _make_room(self, n):
        """Move the last k2 − n steps to the front when n more would not fit."""
        if self._p + n <= self.capacity:
            return
        B, p = self.B, self._p
        keep = min(p, self.k2 - n)                       # what the next window can reach
        s = p - keep
        for l in range(self.L):
            for buf in self._states[l]:
                buf[:(keep + 1) * B] = buf[s * B:(p + 1) * B]
            self._xs[l][:keep * B] = self._xs[l][s * B:p * B]
            if self._gates[l] is not None:
                self._gates[l][:keep * B] = self._gates[l][s * B:p * B]
        self._p = keep

    def _forward(self, X):
        n, B, _ = X.shape
        self._make_room(n)
        p, cell = self._p, self._cell
        H, dt = self.model.hidden_size, np.dtype(self.model.dtype)
        rows = slice(p * B, (p + n) * B)
        states = slice(p * B, (p + n + 1) * B)           # block 0: the carried state
        sched = _core.Schedule(n, B)
        scratch = cell.scratch(sched, H, dt, False, self._pack())
        for l in range(self.L):
            xs = self._xs[l][rows]
            # layer 0 reads X, layer l the new outputs of layer l − 1
            xs[...] = (X.reshape(n * B, -1) if l == 0
                       else self._states[l - 1][0][(p + 1) * B:(p + n + 1) * B])
            gates = self._gates[l]
            run = {"x": xs, "states": [buf[states] for buf in self._states[l]],
                   "gates": None if gates is None else gates[rows]}
            _core.engine_forward(cell.spec.kind, cell.act, [run], [self._layer_weights(l)],
                                 scratch, sched)
        self._p += n
        self.steps += n

    def _backward(self, w, dy):
        """Layer gradients of the window of the last w steps, given the top
        layer's ∂L/∂h (w·B, H); layer by layer down, ∂L/∂x of one the ∂L/∂h of
        the next."""
        B, p, m, cell = self.B, self._p, self.model, self._cell
        spec = cell.spec
        H, dt = m.hidden_size, np.dtype(m.dtype)
        GH = spec.gates * H
        rows = slice((p - w) * B, p * B)
        states = slice((p - w) * B, (p + 1) * B)
        sched = _core.Schedule(w, B)
        scratch = cell.scratch(sched, H, dt, True, self._pack())
        grads = {}
        for l in reversed(range(self.L)):
            weights, names = self._layer_weights(l), self._names[l]
            I = self._xs[l].shape[1]
            dx = self._dx[:w * B] if l > 0 else None      # becomes layer l − 1's dy
            gates = self._gates[l]
            run = {"x": self._xs[l][rows], "states": [buf[states] for buf in self._states[l]],
                   "gates": None if gates is None else gates[rows]}
            # nothing flows in from the future: zero final-state gradients
            g = {"dgates": self._dG[:w * B],
                 "drec": None if self._drec is None else self._drec[:w * B], "dx": dx,
                 "dstates": [np.zeros((B, H), dt) for _ in spec.state_names], "dy": dy}
            dw = {"weight_ih": np.zeros((GH, I), dt), "weight_hh": np.zeros((GH, H), dt),
                  "bias_ih": np.zeros(GH, dt),
                  "bias_hh": np.zeros(GH, dt) if spec.separate else None,
                  "peep": None if weights["peep"] is None else np.zeros(weights["peep"].shape, dt)}
            _core.engine_backward(spec.kind, cell.act, [g], [dw], [run], [weights], scratch, sched)
            grads.update({names["weight_ih"]: dw["weight_ih"], names["weight_hh"]: dw["weight_hh"],
                          names["bias_ih"]: dw["bias_ih"],
                          names["bias_hh"]: dw["bias_hh"] if spec.separate else dw["bias_ih"].copy()})
            if dw["peep"] is not None:
                grads.update((names[k], d) for k, d in zip(spec.optional_kinds, dw["peep"]))
            if dx is not None:      # layer l's ∂L/∂x is layer l − 1's ∂L/∂h: swap, no copy
                dy = dx
                self._dy, self._dx = self._dx, self._dy
        return grads

    def _layer_weights(self, l):
        """Layer l's parameters as the engine's dict (the model's private views)."""
        P, names = self.model._kernel, self._names[l]
        return self._cell.engine_weights({kind: P[names[kind]] for kind in names
                                          if names[kind] in P})

    def _pack(self):
        m = self.model
        return m._pack_workspace(self.B, m.hidden_size, np.dtype(m.dtype))


def parse_bptt(bptt):
    """fit's bptt argument: None, k, or (k1, k2) -> None, int k, or (k1, k2)."""
    if bptt is None:
        return None
    if isinstance(bptt, tuple) or isinstance(bptt, list):
        if len(bptt) != 2:
            raise ValueError(f"bptt: expected k or (k1, k2), got {bptt!r}")
        k1 = positive_int(bptt[0], "bptt[0] (k1)")
        k2 = positive_int(bptt[1], "bptt[1] (k2)")
        if k2 < k1:
            raise ValueError(f"bptt: expected k2 >= k1, got (k1, k2) = ({k1}, {k2})")
        return (k1, k2)
    if isinstance(bptt, bool) or not isinstance(bptt, numbers.Integral):
        raise TypeError(f"bptt: expected None, an int k or a pair (k1, k2), got {bptt!r}")
    return positive_int(bptt, "bptt")
