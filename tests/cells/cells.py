"""The recurrent cells the contract suite runs over, and one way to call each.

Every test in tests/cells is parametrized over ``CELLS``: the Elman RNN (tanh
and relu), the LSTM (with and without peepholes) and the GRU. A :class:`Cell`
names the cell's functions (looked up on ``fastbp`` when a test runs, so a
cell that is missing fails its own cases, not the collection) and the
adapters below call each API the same way whatever the cell:

- states are a tuple, one (B, H) array (or None) per state name: ``(h,)`` or
  ``(h, c)``; their gradients are ``"h0"`` (and ``"c0"``);
- ``forward(cell, x, states, weights, ...)`` -> ``(y, finals, cache)`` with
  ``finals`` a tuple of final states, ``backward(cell, dy, dfinals, cache)``
  -> the gradient dict; the same for the NumPy reference (``impl="reference"``)
  and for the stacks (``stack_forward`` / ``stack_backward``, torch names);
- the models: ``model_forward`` / ``model_loss_and_grad`` return the final
  states as a tuple too; ``torch_module`` / ``torch_run`` build and run the
  matching ``torch.nn`` module (torch is imported only there).

Adding a cell is adding a row to ``CELLS`` (and a branch to an adapter if its
signatures differ).
"""
from dataclasses import dataclass, field

import numpy as np

import fastbp
from fastbp import _recurrent, reference

# the cell facts (gate blocks, state names, parameter kinds) come from the
# library's cell descriptions, fastbp._recurrent.SPECS
LAYER_KINDS = _recurrent.WEIGHT_KINDS
PEEPHOLE_KINDS = _recurrent.LSTM_SPEC.optional_kinds


@dataclass(frozen=True)
class Cell:
    id: str                     # the pytest id ("rnn-relu", "lstm-peepholes", "gru")
    name: str                   # "rnn", "lstm", "gru": fastbp.<name>_forward, fastbp.<NAME>
    options: dict = field(default_factory=dict)   # the cell's own keywords (nonlinearity=...)
    torch_class: str = None     # "RNN", "LSTM", "GRU"; None: torch has no such cell

    @property
    def spec(self):
        return _recurrent.SPECS[self.name]

    @property
    def gates(self):
        """Gate blocks stacked in weight_ih / weight_hh (1, 4, 3)."""
        return self.spec.gates

    @property
    def state_names(self):
        """("h",) or ("h", "c")."""
        return self.spec.state_names

    # -- the functions under test (looked up when called) -----------------------
    @property
    def forward_fn(self):
        return getattr(fastbp, f"{self.name}_forward")

    @property
    def backward_fn(self):
        return getattr(fastbp, f"{self.name}_backward")

    @property
    def reference_forward_fn(self):
        return getattr(reference, f"{self.name}_forward")

    @property
    def reference_backward_fn(self):
        return getattr(reference, f"{self.name}_backward")

    @property
    def stack_forward_fn(self):
        return getattr(fastbp, f"{self.name}_stack_forward")

    @property
    def stack_backward_fn(self):
        return getattr(fastbp, f"{self.name}_stack_backward")

    @property
    def model_class(self):
        return getattr(fastbp, self.name.upper())

    # -- names ------------------------------------------------------------------
    @property
    def peepholes(self):
        return bool(self.options.get("peepholes"))

    @property
    def kinds(self):
        """The parameter kinds of one layer direction, in state-dict order."""
        return LAYER_KINDS + (PEEPHOLE_KINDS if self.peepholes else ())

    @property
    def state_grads(self):
        """The initial states' gradient names: ("h0",) or ("h0", "c0")."""
        return tuple(s + "0" for s in self.state_names)

    @property
    def grad_names(self):
        """Every key of backward's gradient dict."""
        return ("x",) + self.state_grads + self.kinds

    def kind_shape(self, kind, H, I):
        G = self.gates
        return {"weight_ih": (G * H, I), "weight_hh": (G * H, H), "bias_ih": (G * H,),
                "bias_hh": (G * H,)}.get(kind, (H,))

    def __str__(self):
        return self.id


CELLS = (
    Cell("rnn-tanh", "rnn", {"nonlinearity": "tanh"}, "RNN"),
    Cell("rnn-relu", "rnn", {"nonlinearity": "relu"}, "RNN"),
    Cell("lstm", "lstm", {}, "LSTM"),
    Cell("lstm-peepholes", "lstm", {"peepholes": True}, None),
    Cell("gru", "gru", {}, "GRU"),
)
TORCH_CELLS = tuple(c for c in CELLS if c.torch_class)


# ---- problems -------------------------------------------------------------------

def layer_weights(cell, rng, I, H, dtype=np.float64, scale=0.6):
    """One layer direction's arrays by kind (peepholes included for a cell with them)."""
    return {k: (scale * rng.standard_normal(cell.kind_shape(k, H, I))).astype(dtype)
            for k in cell.kinds}


def problem(cell, rng, T, B, I, H, dtype=np.float64):
    """A random single-layer problem: x, states (a tuple), weights (by kind),
    and backward's incoming gradients dy, dfinals (a tuple)."""
    return {"x": rng.standard_normal((T, B, I)).astype(dtype),
            "states": tuple(rng.standard_normal((B, H)).astype(dtype) for _ in cell.state_names),
            "weights": layer_weights(cell, rng, I, H, dtype),
            "dy": rng.standard_normal((T, B, H)).astype(dtype),
            "dfinals": tuple(rng.standard_normal((B, H)).astype(dtype)
                             for _ in cell.state_names)}


# ---- one layer: compiled and reference ----------------------------------------------

def _cell_kwargs(cell, weights):
    """The cell's keyword arguments: the RNN's nonlinearity, the LSTM's peepholes tuple."""
    if cell.name == "rnn":
        return {"nonlinearity": cell.options["nonlinearity"]}
    if cell.name == "lstm" and cell.peepholes:
        return {"peepholes": tuple(weights[k] for k in PEEPHOLE_KINDS)}
    return {}


def forward(cell, x, states, weights, lengths=None, reset=None, impl="compiled"):
    """(y, finals tuple, cache) from the compiled forward or the reference
    (which has no lengths or resets)."""
    if impl == "compiled":
        fn = cell.forward_fn
        seq = {"lengths": lengths, "reset": reset}
    else:
        assert lengths is None and reset is None, "the reference runs whole sequences"
        fn = cell.reference_forward_fn
        seq = {}
    args = [x, *states] + [weights[k] for k in LAYER_KINDS]
    y, finals, cache = fn(*args, **_cell_kwargs(cell, weights), **seq)
    return y, finals if isinstance(finals, tuple) else (finals,), cache


def backward(cell, dy, dfinals, cache, impl="compiled"):
    fn = cell.backward_fn if impl == "compiled" else cell.reference_backward_fn
    return fn(dy, *dfinals, cache)


# ---- stacks --------------------------------------------------------------------------

def stack_params(cell, rng, I, H, num_layers, bidirectional, dtype=np.float64, scale=0.5):
    """torch-named parameters of a stack (weight_ih_l0, ..., _reverse)."""
    D = 2 if bidirectional else 1
    params = {}
    for l in range(num_layers):
        for d in range(D):
            w = layer_weights(cell, rng, I if l == 0 else D * H, H, dtype, scale)
            params.update({f"{k}_l{l}{'_reverse' if d else ''}": v for k, v in w.items()})
    return params


def stack_forward(cell, x, params, states, num_layers, bidirectional, lengths=None, reset=None):
    """(y, finals tuple, cache); states: a tuple of (L·D, B, H) arrays or Nones."""
    extra = {"nonlinearity": cell.options["nonlinearity"]} if cell.name == "rnn" else {}
    y, finals, cache = cell.stack_forward_fn(x, params, *states, num_layers=num_layers,
                                             bidirectional=bidirectional, lengths=lengths,
                                             reset=reset, **extra)
    return y, finals if isinstance(finals, tuple) else (finals,), cache


def stack_backward(cell, dy, dfinals, cache):
    return cell.stack_backward_fn(dy, *dfinals, cache)


# ---- models --------------------------------------------------------------------------

def model(cell, I, H, O, **kwargs):
    """The cell's model class with the cell's options (nonlinearity, peepholes)."""
    return cell.model_class(I, H, O, **cell.options, **kwargs)


def model_forward(cell, net, X, states=None, lengths=None, reset=None):
    """(outputs, finals tuple)."""
    states = states or (None,) * len(cell.state_names)
    out, finals = net.forward(X, *states, lengths=lengths, reset=reset)
    return out, finals if isinstance(finals, tuple) else (finals,)


def model_loss_and_grad(cell, net, X, Y, states=None, lengths=None, reset=None):
    """(loss, grads, finals tuple)."""
    states = states or (None,) * len(cell.state_names)
    loss, grads, finals = net.loss_and_grad(X, Y, *states, lengths=lengths, reset=reset)
    return loss, grads, finals if isinstance(finals, tuple) else (finals,)


# ---- torch -----------------------------------------------------------------------------

def torch_module(cell, I, H, num_layers=1, bidirectional=False, dtype=np.float64):
    """torch.nn.RNN / LSTM / GRU matching the cell (random weights)."""
    import torch
    kw = {"nonlinearity": cell.options["nonlinearity"]} if cell.name == "rnn" else {}
    return getattr(torch.nn, cell.torch_class)(
        I, H, num_layers=num_layers, bidirectional=bidirectional,
        dtype=torch.float64 if dtype == np.float64 else torch.float32, **kw)


def torch_run(cell, module, x, states, lengths=None):
    """Run a torch module on a (T, B, I) tensor from a tuple of state tensors (or
    Nones), with lengths through pack_padded_sequence(enforce_sorted=False).
    Returns (y (T, B, D·H) zero past each row's length, finals tuple)."""
    import torch
    state = None if states[0] is None else (tuple(states) if len(states) > 1 else states[0])
    if lengths is None:
        y, finals = module(x, state)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.as_tensor(lengths),
                                                         enforce_sorted=False)
        out, finals = module(packed, state)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=x.shape[0])
    return y, finals if isinstance(finals, tuple) else (finals,)


# ---- the per-step product path --------------------------------------------------------

def force_product_path(cell, path, monkeypatch):
    """Make the engine run the per-step recurrent products on fastbp's packed
    kernel (path "packed") or through BLAS ("blas"), whatever the sizes
    (fastbp._recurrent.FORCE_PRODUCTS); returns the list of workspaces the
    calls asked for, to check that the path was taken (None: BLAS)."""
    monkeypatch.setattr(_recurrent, "FORCE_PRODUCTS", path)
    original = _recurrent.pack_workspace
    calls = []

    def pack_workspace(spec, B, H, dtype):
        work = original(spec, B, H, dtype)
        if spec.name == cell.name:
            calls.append(work)
        return work

    monkeypatch.setattr(_recurrent, "pack_workspace", pack_workspace)
    return calls


def check_path_taken(calls, path):
    assert calls, "no compiled call asked for a product workspace"
    assert all((w is None) == (path == "blas") for w in calls), f"not all on the {path} path"
