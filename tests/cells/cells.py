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

Adding a cell is adding a row to ``CELLS``: the adapters read everything
cell-specific from the row (its spec, its options, its model class's
``_optional_flag``). Other selections: ``TORCH_CELLS`` (the cells torch has),
``MODEL_CELLS`` (each cell once, plain), ``FULL_CELLS`` (each cell once, with
its optional kinds), ``KERNEL_CELLS`` (``CELLS`` and the RNN's identity);
``cell_of(model)`` is a model's row. The NumPy oracles of lengths, resets and
stacks (``row_by_row``, ``stack_row_by_row``) are here too.
"""
import sys
from dataclasses import dataclass, field

import numpy as np

import fastbp
from fastbp import _recurrent, reference

# the cell facts (gate blocks, state names, parameter kinds) come from the
# library's cell descriptions, fastbp._recurrent.SPECS
LAYER_KINDS = _recurrent.WEIGHT_KINDS
PEEPHOLE_KINDS = _recurrent.LSTM_SPEC.optional_kinds


def _fastbp(name, module=fastbp):
    """module.<name>, looked up by an interned name (a new string per call would
    stay in CPython's attribute cache: tests/robustness/test_leaks.py counts it)."""
    return getattr(module, sys.intern(name))


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
        return _fastbp(f"{self.name}_forward")

    @property
    def backward_fn(self):
        return _fastbp(f"{self.name}_backward")

    @property
    def reference_forward_fn(self):
        return _fastbp(f"{self.name}_forward", reference)

    @property
    def reference_backward_fn(self):
        return _fastbp(f"{self.name}_backward", reference)

    @property
    def stack_forward_fn(self):
        return _fastbp(f"{self.name}_stack_forward")

    @property
    def stack_backward_fn(self):
        return _fastbp(f"{self.name}_stack_backward")

    @property
    def model_class(self):
        return _fastbp(self.name.upper())

    # -- options and names --------------------------------------------------------
    @property
    def optional_flag(self):
        """The option that adds the spec's optional kinds (the model class's
        ``_optional_flag``: the LSTM's "peepholes"), or None (also without a model
        class: the tables below are built at collection)."""
        return getattr(getattr(fastbp, sys.intern(self.name.upper()), None), "_optional_flag", None)

    @property
    def peepholes(self):
        """The layers have the spec's optional kinds (the LSTM's peepholes)."""
        return bool(self.optional_flag and self.options.get(self.optional_flag))

    @property
    def function_options(self):
        """The cell's own keywords of its functions and torch module, the optional
        kinds' flag aside (the RNN's nonlinearity)."""
        return {k: v for k, v in self.options.items() if k != self.optional_flag}

    @property
    def kinds(self):
        """The parameter kinds of one layer direction, in state-dict order."""
        return LAYER_KINDS + (self.spec.optional_kinds if self.peepholes else ())

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
# one row per cell (its plain variant): where a test runs each model class once
MODEL_CELLS = tuple({c.name: c for c in reversed(CELLS)}[name]
                    for name in dict.fromkeys(c.name for c in CELLS))
# one row per cell, the variant with the most parameter kinds (the LSTM with peepholes)
FULL_CELLS = tuple(max((c for c in CELLS if c.name == name), key=lambda c: len(c.kinds))
                   for name in dict.fromkeys(c.name for c in CELLS))
# the kernels' tests also run the Elman RNN's third nonlinearity (torch has no such cell)
RNN_IDENTITY = Cell("rnn-identity", "rnn", {"nonlinearity": "identity"}, None)
KERNEL_CELLS = CELLS + (RNN_IDENTITY,)


def cell_of(model):
    """The row of KERNEL_CELLS a fastbp model instance is: its spec's name, its
    options (each the model's attribute of that name), whether it has the
    spec's optional kinds."""
    for c in KERNEL_CELLS:
        if (c.name == model._spec.name and c.peepholes == bool(model._with_optional)
                and all(getattr(model, k) == v for k, v in c.function_options.items())):
            return c
    raise LookupError(f"no row of KERNEL_CELLS for {model!r}")


def model_layer_weights(model, layer=0, direction=0):
    """One layer direction's arrays of a model, by kind (the models name layer 0's
    forward direction without a suffix)."""
    from fastbp._stack import model_param_name
    return {k: model.params[model_param_name(k, layer, direction)] for k in cell_of(model).kinds}


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
    """The cell's keyword arguments: its function options (the RNN's
    nonlinearity), and its optional kinds as one tuple under the flag's name
    (the LSTM's peepholes=)."""
    kwargs = dict(cell.function_options)
    if cell.peepholes:
        kwargs[cell.optional_flag] = tuple(weights[k] for k in cell.spec.optional_kinds)
    return kwargs


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


# ---- lengths and resets: the reference row by row, piece by piece ------------------

def pieces(length, resets_of_row):
    """[(a, e)]: a row's steps up to its length, cut at its resets."""
    cuts = [0] + [t for t in range(1, length) if resets_of_row[t]] + [length]
    return list(zip(cuts[:-1], cuts[1:]))


def row_by_row(cell, p, lengths=None, reset=None):
    """Every row alone, split at its resets, through the reference: y, finals,
    gradients (summed over the pieces; the final states' gradients enter the
    last piece; a row of length 0 passes them to its initial states)."""
    x, states, dy, dfinals = p["x"], p["states"], p["dy"], p["dfinals"]
    T, B, _ = x.shape
    H = dy.shape[2]
    y = np.zeros((T, B, H))
    finals = [s.copy() for s in states]
    g = {"x": np.zeros_like(x)}
    g.update({n: np.zeros((B, H)) for n in cell.state_grads})
    g.update({k: np.zeros_like(w) for k, w in p["weights"].items()})
    for b in range(B):
        L = T if lengths is None else int(lengths[b])
        if L == 0:
            for n, d in zip(cell.state_grads, dfinals):
                g[n][b] = d[b]
            continue
        for a, e in pieces(L, np.zeros(T, bool) if reset is None else reset[:, b]):
            last = e == L
            yr, fr, cache = forward(cell, x[a:e, b:b + 1], tuple(s[b:b + 1] for s in states),
                                    p["weights"], impl="reference")
            gr = backward(cell, dy[a:e, b:b + 1],
                          tuple(d[b:b + 1] if last else None for d in dfinals), cache,
                          impl="reference")
            y[a:e, b] = yr[:, 0]
            g["x"][a:e, b] = gr["x"][:, 0]
            for n in cell.state_grads:
                g[n][b] += gr[n][0]
            for k in p["weights"]:
                g[k] += gr[k]
            if last:
                for f, v in zip(finals, fr):
                    f[b] = v[0]
    return y, tuple(finals), g


def check_row_by_row(cell, p, lengths=None, reset=None, rtol=1e-11, atol=1e-12):
    """The compiled forward and backward with lengths and resets equal
    :func:`row_by_row`; returns the compiled cache."""
    y, finals, cache = forward(cell, p["x"], p["states"], p["weights"], lengths, reset)
    g = backward(cell, p["dy"], p["dfinals"], cache)
    y_r, finals_r, g_r = row_by_row(cell, p, lengths, reset)
    tol = dict(rtol=rtol, atol=atol)
    np.testing.assert_allclose(y, y_r, err_msg="y", **tol)
    assert len(finals) == len(cell.state_names)
    for name, f, f_r in zip(cell.state_names, finals, finals_r):
        np.testing.assert_allclose(f, f_r, err_msg=name + "_n", **tol)
    assert set(g) == set(g_r) == set(cell.grad_names)
    for name in g_r:
        np.testing.assert_allclose(g[name], g_r[name], err_msg=name, **tol)
    return cache


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
    y, finals, cache = cell.stack_forward_fn(x, params, *states, num_layers=num_layers,
                                             bidirectional=bidirectional, lengths=lengths,
                                             reset=reset, **cell.function_options)
    return y, finals if isinstance(finals, tuple) else (finals,), cache


def stack_backward(cell, dy, dfinals, cache):
    return cell.stack_backward_fn(dy, *dfinals, cache)


def _suffix(l, d):
    return f"_l{l}{'_reverse' if d else ''}"


def stack_row_by_row(cell, params, x, states, num_layers, bidirectional, lengths=None,
                     reset=None, dy=None, dfinals=None):
    """A stack through the reference: every row alone, split at its resets into
    pieces, each piece run layer by layer (the reverse direction on the piece's
    steps flipped in time). states, dfinals: one (L·D, B, H) array or None
    (zeros) per state name; dy (T, B, D·H) or None. Returns y (T, B, D·H),
    finals (a tuple of (L·D, B, H)) and every gradient by the stack's names
    ("x", "h0"[, "c0"], then the torch names)."""
    T, B, _ = x.shape
    L, D = num_layers, 2 if bidirectional else 1
    H = params["weight_hh_l0"].shape[1]
    S = len(cell.state_names)
    zeros = np.zeros((L * D, B, H), x.dtype)
    init = [zeros if s is None else np.asarray(s) for s in states]
    dfinals = [zeros if s is None else np.asarray(s)
               for s in (dfinals if dfinals is not None else (None,) * S)]
    dy = np.zeros((T, B, D * H), x.dtype) if dy is None else dy
    y = np.zeros((T, B, D * H), x.dtype)
    finals = [np.array(s) for s in init]          # rows of length 0 keep them
    g = {"x": np.zeros_like(x)}
    dinit = [np.zeros_like(s) for s in init]
    g.update({n: np.zeros_like(np.asarray(a)) for n, a in params.items()})
    for b in range(B):
        Lb = T if lengths is None else int(lengths[b])
        if Lb == 0:
            for k in range(S):
                dinit[k][:, b] = dfinals[k][:, b]
            continue
        for a, e in pieces(Lb, np.zeros(T, bool) if reset is None else reset[:, b]):
            inp, caches = x[a:e, b:b + 1], []
            for l in range(L):
                outs, layer = [], []
                for d in range(D):
                    w = {k: params[k + _suffix(l, d)] for k in cell.kinds}
                    st0 = tuple(s[l * D + d, b:b + 1] for s in init)
                    out, fin, cache = forward(cell, inp[::-1] if d else inp, st0, w,
                                              impl="reference")
                    outs.append(out[::-1] if d else out)
                    layer.append(cache)
                    # the forward direction ends in the last piece, the reverse in the first
                    if (d == 0 and e == Lb) or (d == 1 and a == 0):
                        for k in range(S):
                            finals[k][l * D + d, b] = fin[k][0]
                caches.append(layer)
                inp = np.concatenate(outs, axis=2)
            y[a:e, b] = inp[:, 0]
            dys = [dy[a:e, b:b + 1, d * H:(d + 1) * H] for d in range(D)]
            for l in reversed(range(L)):
                dx = 0
                for d in range(D):
                    ends = (d == 0 and e == Lb) or (d == 1 and a == 0)
                    dfin = tuple(f[l * D + d, b:b + 1] if ends else None for f in dfinals)
                    gr = backward(cell, dys[d][::-1] if d else dys[d], dfin, caches[l][d],
                                  impl="reference")
                    for k in cell.kinds:
                        g[k + _suffix(l, d)] += gr[k]
                    for k, name in enumerate(cell.state_grads):
                        dinit[k][l * D + d, b] += gr[name][0]
                    dx = dx + (gr["x"][::-1] if d else gr["x"])
                dys = [dx[..., d * H:(d + 1) * H] for d in range(D)]
            g["x"][a:e, b] = dx[:, 0]
    g.update(zip(cell.state_grads, dinit))
    return y, tuple(finals), g


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
    kw = cell.function_options                       # (torch.nn.RNN's nonlinearity)
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
