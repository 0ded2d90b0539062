"""ENTRIES: every public function and model method, as the harness sees it.

Each entry says which arrays a call takes (name, shape in shared size symbols,
kind), its other arguments (valid and refused values), how to call fastbp and
how to compute the same with fastbp.reference. See spec.Arg and spec.Entry;
the package docstring shows how to add an argument or a function.
"""
import copy
import importlib.util
import os

import numpy as np

import fastbp
from fastbp import reference as R
from fastbp.clip import clip_grad_norm
from fastbp.gradcheck import gradcheck
from fastbp._recurrent import SPECS
from fastbp.gru import GRU, gru_backward, gru_forward
from fastbp.lstm import LSTM, lstm_backward, lstm_forward
from fastbp.mlp import MLP
from fastbp.optim import SGD, Adam
from fastbp.rnn import RNN, rnn_backward, rnn_forward
from fastbp.tbptt import Stream

from cells import cells
from cells.cells import KERNEL_CELLS

from .spec import EXTREME_REGIMES, REGIMES, Arg, Entry

ACTS = ("identity", "sigmoid", "tanh", "relu", "softmax")
BAD_NAMES = ("gelu", "", None, 3, ["tanh"])
F64 = np.dtype(np.float64)


def _keyed(prefix, d):
    return {f"{prefix}{k}": v for k, v in d.items()}


# ---- functional -----------------------------------------------------------------------------
def _activation_forward():
    return Entry(
        "activation_forward",
        [Arg("z", ("*", "N"), finite=False)],
        call=lambda ex: {"a": fastbp.activation_forward(ex.a["z"], ex.o["name"])},
        # (the reference's softmax cannot take a max over an empty last axis: nothing in, nothing out)
        reference=lambda ex: {"a": R.activation_forward(ex.c["z"], ex.o["name"]) if ex.c["z"].shape[-1]
                              else ex.c["z"].copy()},
        dims={"*": (0, 4), "N": (0, 5)}, options={"name": ACTS}, bad_options={"name": BAD_NAMES},
        dtype_from="z", regimes=REGIMES + EXTREME_REGIMES)


def _activation_backward():
    return Entry(
        "activation_backward",
        [Arg("da", ("*", "N"), finite=False), Arg("a", ("*", "N"), finite=False)],
        call=lambda ex: {"dz": fastbp.activation_backward(ex.a["da"], ex.a["a"], ex.o["name"])},
        reference=lambda ex: {"dz": R.activation_backward(ex.c["da"], ex.c["a"], ex.o["name"])},
        dims={"*": (0, 4), "N": (0, 5)}, options={"name": ACTS}, bad_options={"name": BAD_NAMES},
        dtype_from="a", regimes=REGIMES + EXTREME_REGIMES)


def _softmax_cross_entropy():
    def args(o):
        if o["target"] == "labels":
            return [Arg("logits", ("*", "K")), Arg("target", ("*",), kind="labels", classes="K")]
        return [Arg("logits", ("*", "K")), Arg("target", ("*", "K"), limits=False)]

    def call(ex):
        loss, d = fastbp.softmax_cross_entropy(ex.a["logits"], ex.a["target"])
        return {"loss": loss, "dlogits": d}

    def reference(ex):
        loss, d = R.softmax_cross_entropy(ex.c["logits"], ex.c["target"])
        return {"loss": loss, "dlogits": d}
    # at least one row: the mean over no rows is undefined (refused, like the reference)
    return Entry("softmax_cross_entropy", args, call, reference,
                 dims={"*": (1, 4), "K": (1, 5)}, options={"target": ("labels", "probs")},
                 dtype_from="logits", regimes=REGIMES + ("limits",), reference_in_float64=True)


def _squared_error():
    def call(ex):
        loss, d = fastbp.squared_error(ex.a["pred"], ex.a["target"], ex.o["form"])
        return {"loss": loss, "dpred": d}

    def reference(ex):
        loss, d = R.squared_error(ex.c["pred"], ex.c["target"], ex.o["form"])
        return {"loss": loss, "dpred": d}
    return Entry("squared_error", [Arg("pred", ("*", "O")), Arg("target", ("*", "O"))], call, reference,
                 dims={"*": (1, 4), "O": (1, 5)}, options={"form": ("sum", "half_mean")},
                 bad_options={"form": ("mean", None, 1)}, dtype_from="pred",
                 regimes=REGIMES + ("limits",), reference_in_float64=True)


# ---- the recurrent layers -----------------------------------------------------------------------
# Every cell fact (gate blocks, state names, parameter kinds) comes from the cell
# descriptions, fastbp._recurrent.SPECS, through tests/cells/cells.py's Cell and
# its adapters (which also call the NumPy reference of each cell).
NONLIN = ("tanh", "relu", "identity")
SEQ_DIMS = {"T": (0, 5), "B": (0, 4), "I": (0, 4), "H": (1, 5)}
VARLEN_ARGS = [Arg("lengths", ("B",), kind="lengths", optional=True),
               Arg("reset", ("T", "B"), kind="mask", optional=True)]
# "G<g>": the g·H rows of a weight with g gate blocks (the RNN's 1, the LSTM's 4, the GRU's 3)
GATE_ROWS = {f"G{spec.gates}": (lambda d, g=spec.gates: g * d["H"]) for spec in SPECS.values()}


def gate_rows(name):
    """The size symbol of cell `name`'s weight rows (a key of GATE_ROWS)."""
    return f"G{SPECS[name].gates}"


CELL_BY_ID = {c.id: c for c in KERNEL_CELLS}
# the variants of each cell (options) the entries draw from
CELL_IDS = {name: tuple(c.id for c in KERNEL_CELLS if c.name == name) for name in SPECS}


def layer_oracle(cell, X, states, w, lengths=None, reset=None):
    """A recurrent layer through the reference, each row alone and split at its
    resets (the oracle of tests/cells/cells.py's row_by_row): Hs (T, B, H), zero
    past each row's length; the final states, each row's after its last step;
    the pieces [(b, a, e, last, cache)] for backward_oracle. w: the arrays by
    kind (cell.kinds); states: one (B, H) array or None (zeros) per state name."""
    T, B, _ = X.shape
    H = w["weight_hh"].shape[1]
    init = [np.zeros((B, H), X.dtype) if s is None else s for s in states]
    Hs = np.zeros((T, B, H), X.dtype)
    final = [s.copy() for s in init]
    pieces = []
    for b in range(B):
        L = T if lengths is None else int(lengths[b])
        for a, e in cells.pieces(L, np.zeros(T, bool) if reset is None else reset[:, b]):
            if a == e:
                continue
            y, fin, cache = cells.forward(cell, X[a:e, b:b + 1], tuple(s[b:b + 1] for s in init), w,
                                          impl="reference")
            Hs[a:e, b] = y[:, 0]
            pieces.append((b, a, e, e == L, cache))
            if e == L:
                for k, s in enumerate(fin):
                    final[k][b] = s[0]
    return Hs, tuple(final), pieces


def backward_oracle(cell, pieces, dHs, dfinals, params):
    """Gradients of the parameters named in `params` from layer_oracle's pieces;
    dfinals: one (B, H) array or None per state name."""
    grads = {n: np.zeros_like(params[n]) for n in params}
    for b, a, e, last, cache in pieces:
        dy = None if dHs is None else dHs[a:e, b:b + 1]
        dfin = tuple(d[b:b + 1] if last and d is not None else None for d in dfinals)
        g = cells.backward(cell, dy, dfin, cache, impl="reference")
        for n in grads:
            grads[n] = grads[n] + g[n]
    return grads


def _varlen(ex, src):
    """lengths= and reset= for the call (from ex.a) or the reference (from ex.c)."""
    return {"lengths": src["lengths"], "reset": src["reset"]} if ex.o.get("varlen") else {}


def _rnn_forward():
    base = [Arg("x", ("T", "B", "I")), Arg("h0", ("B", "H"), optional=True),
            Arg("weight_ih", ("H", "I")), Arg("weight_hh", ("H", "H")),
            Arg("bias_ih", ("H",)), Arg("bias_hh", ("H",))]
    names = [a.name for a in base]

    def call(ex):
        y, h_n, _ = rnn_forward(*(ex.a[n] for n in names), nonlinearity=ex.o["nonlinearity"],
                                **_varlen(ex, ex.a))
        return {"y": y, "h_n": h_n}

    def reference(ex):
        c, v = ex.c, _varlen(ex, ex.c)
        if not v:
            y, h_n, _ = R.rnn_forward(*(c[n] for n in names), nonlinearity=ex.o["nonlinearity"])
            return {"y": y, "h_n": h_n}
        cell = cells.Cell("rnn", "rnn", {"nonlinearity": ex.o["nonlinearity"]})
        y, (h_n,), _ = layer_oracle(cell, c["x"], (c["h0"],), c, **v)
        return {"y": y, "h_n": h_n}
    return Entry("rnn_forward", lambda o: base + (VARLEN_ARGS if o["varlen"] else []), call, reference,
                 dims=SEQ_DIMS, options={"nonlinearity": NONLIN, "varlen": (False, True)},
                 bad_options={"nonlinearity": ("sigmoid", None, 0)}, dtype_from="x")


def _lstm_forward():
    G = gate_rows("lstm")
    optional = SPECS["lstm"].optional_kinds              # the peepholes, passed as a tuple

    def args(o):
        out = [Arg("x", ("T", "B", "I")), Arg("h0", ("B", "H"), optional=True),
               Arg("c0", ("B", "H"), optional=True),
               Arg("weight_ih", (G, "I")), Arg("weight_hh", (G, "H")),
               Arg("bias_ih", (G,)), Arg("bias_hh", (G,))]
        if o["peepholes"]:
            out += [Arg(f"peepholes[{k}]", ("H",)) for k in range(len(optional))]
        return out + (VARLEN_ARGS if o["varlen"] else [])
    names = ["x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"]

    def peep(ex, src):
        return tuple(src[f"peepholes[{k}]"] for k in range(len(optional))) if ex.o["peepholes"] else None

    def call(ex):
        y, (h_n, c_n), cache = lstm_forward(*(ex.a[n] for n in names), peepholes=peep(ex, ex.a),
                                            **_varlen(ex, ex.a))
        out = {"y": y, "h_n": h_n, "c_n": c_n}
        if not ex.o["varlen"]:      # (with lengths the cache is in the kernels' slot layout)
            out.update(c=cache.c, gates=cache.gates)
        return out

    def reference(ex):
        c, v = ex.c, _varlen(ex, ex.c)
        if not v:
            y, (h_n, c_n), cache = R.lstm_forward(*(c[n] for n in names), peepholes=peep(ex, c))
            return {"y": y, "h_n": h_n, "c_n": c_n, "c": cache["c"], "gates": cache["gates"]}
        cell = cells.Cell("lstm", "lstm", {"peepholes": ex.o["peepholes"]})
        w = dict(c, **dict(zip(optional, peep(ex, c) or ())))
        y, (h_n, c_n), _ = layer_oracle(cell, c["x"], (c["h0"], c["c0"]), w, **v)
        return {"y": y, "h_n": h_n, "c_n": c_n}
    return Entry("lstm_forward", args, call, reference, dims=SEQ_DIMS, derived=GATE_ROWS,
                 options={"peepholes": (False, True), "varlen": (False, True)}, dtype_from="x")


def _gru_forward():
    G = gate_rows("gru")
    base = [Arg("x", ("T", "B", "I")), Arg("h0", ("B", "H"), optional=True),
            Arg("weight_ih", (G, "I")), Arg("weight_hh", (G, "H")),
            Arg("bias_ih", (G,)), Arg("bias_hh", (G,))]
    names = [a.name for a in base]

    def call(ex):
        y, h_n, cache = gru_forward(*(ex.a[n] for n in names), **_varlen(ex, ex.a))
        out = {"y": y, "h_n": h_n}
        if not ex.o["varlen"]:      # (with lengths the cache is in the kernels' slot layout)
            out.update(gates=cache.gates, m=cache.m)
        return out

    def reference(ex):
        c, v = ex.c, _varlen(ex, ex.c)
        if not v:
            y, h_n, cache = R.gru_forward(*(c[n] for n in names))
            return {"y": y, "h_n": h_n, "gates": cache["gates"], "m": cache["m"]}
        y, (h_n,), _ = layer_oracle(CELL_BY_ID["gru"], c["x"], (c["h0"],), c, **v)
        return {"y": y, "h_n": h_n}
    return Entry("gru_forward", lambda o: base + (VARLEN_ARGS if o["varlen"] else []), call, reference,
                 dims=SEQ_DIMS, derived=GATE_ROWS, options={"varlen": (False, True)}, dtype_from="x")


def _forward_inputs(ex, name):
    """Valid inputs of cell `name`'s forward pass in ex.comp, for the backward
    entries: x, one initial state per state name, then the four weight arrays."""
    rng = np.random.default_rng(ex.d["T"] * 100 + ex.d["B"] * 10 + ex.d["H"])
    T, B, I, H = (ex.d[k] for k in "TBIH")
    G = SPECS[name].gates * H
    states = [(B, H)] * len(SPECS[name].state_names)
    return [rng.standard_normal(s).astype(ex.comp) for s in
            [(T, B, I)] + states + [(G, I), (G, H), (G,), (G,)]]


def _backward_cache(ex, cache):
    """backward's cache: its own, a reference dict, None or an array (the bad ones)."""
    return {"own": cache, "dict": ex.ref_cache, "none": None, "array": np.zeros(3)}[ex.o["cache"]]


def _rnn_backward():
    args = [Arg("dy", ("T", "B", "H"), optional=True), Arg("dh_n", ("B", "H"), optional=True)]

    def setup(ex):
        inputs = _forward_inputs(ex, "rnn")
        ex.cache = rnn_forward(*inputs, nonlinearity=ex.o["nonlinearity"])[2]
        ex.ref_cache = R.rnn_forward(*inputs, nonlinearity=ex.o["nonlinearity"])[2]

    def call(ex):
        return _keyed("d", rnn_backward(ex.a["dy"], ex.a["dh_n"], _backward_cache(ex, ex.cache)))

    def reference(ex):
        return _keyed("d", R.rnn_backward(ex.c["dy"], ex.c["dh_n"], ex.ref_cache))
    return Entry("rnn_backward", args, call, reference, dims=SEQ_DIMS, setup=setup,
                 options={"nonlinearity": NONLIN, "dtype": ("float64", "float32"), "cache": ("own",)},
                 bad_options={"cache": ("dict", "none", "array")},
                 dtype_from=lambda ex: ex.o["dtype"])


def _lstm_backward():
    args = [Arg("dy", ("T", "B", "H"), optional=True), Arg("dh_n", ("B", "H"), optional=True),
            Arg("dc_n", ("B", "H"), optional=True)]

    def setup(ex):
        inputs = _forward_inputs(ex, "lstm")
        H = ex.d["H"]
        peep = (tuple(np.linspace(-0.5, 0.5, H).astype(ex.comp)
                      for _ in SPECS["lstm"].optional_kinds) if ex.o["peepholes"] else None)
        ex.cache = lstm_forward(*inputs, peepholes=peep)[2]
        ex.ref_cache = R.lstm_forward(*inputs, peepholes=peep)[2]

    def call(ex):
        return _keyed("d", lstm_backward(ex.a["dy"], ex.a["dh_n"], ex.a["dc_n"],
                                         _backward_cache(ex, ex.cache),
                                         overwrite_cache=ex.o["overwrite_cache"]))

    def reference(ex):
        return _keyed("d", R.lstm_backward(ex.c["dy"], ex.c["dh_n"], ex.c["dc_n"], ex.ref_cache))
    return Entry("lstm_backward", args, call, reference, dims=SEQ_DIMS, setup=setup,
                 options={"peepholes": (False, True), "overwrite_cache": (False, True),
                          "dtype": ("float64", "float32"), "cache": ("own",)},
                 bad_options={"cache": ("dict", "none", "array")},
                 dtype_from=lambda ex: ex.o["dtype"])


def _gru_backward():
    args = [Arg("dy", ("T", "B", "H"), optional=True), Arg("dh_n", ("B", "H"), optional=True)]

    def setup(ex):
        inputs = _forward_inputs(ex, "gru")
        ex.cache = gru_forward(*inputs)[2]
        ex.ref_cache = R.gru_forward(*inputs)[2]

    def call(ex):
        return _keyed("d", gru_backward(ex.a["dy"], ex.a["dh_n"], _backward_cache(ex, ex.cache)))

    def reference(ex):
        return _keyed("d", R.gru_backward(ex.c["dy"], ex.c["dh_n"], ex.ref_cache))
    return Entry("gru_backward", args, call, reference, dims=SEQ_DIMS, setup=setup,
                 options={"dtype": ("float64", "float32"), "cache": ("own",)},
                 bad_options={"cache": ("dict", "none", "array")},
                 dtype_from=lambda ex: ex.o["dtype"])


# ---- stacked and bidirectional layers: fastbp.<cell>_stack_forward / _backward ------------------
STACK_DIMS = {"T": (0, 4), "B": (0, 3), "I": (0, 3), "H": (1, 3)}
STACK_DERIVED = dict(GATE_ROWS, H2=lambda d: 2 * d["H"])       # H2: a bidirectional layer's output
STACK_OPTIONS = {"num_layers": (1, 2), "bidirectional": (False, True)}


def _stack_shape(cell, kind, layer, D):
    """The size symbols of one parameter of a stack (as the spec's layer_shape gives
    them in numbers: checked below for one set of sizes)."""
    rows = gate_rows(cell.name)
    if kind in cell.spec.optional_kinds:
        shape = ("H",)
    elif kind == "weight_ih":
        shape = (rows, "I" if layer == 0 else ("H2" if D == 2 else "H"))
    elif kind == "weight_hh":
        shape = (rows, "H")
    else:
        shape = (rows,)
    d = dict(I=7, H=5, H2=10, **{g: fn({"H": 5}) for g, fn in GATE_ROWS.items()})
    assert tuple(d[s] for s in shape) == cell.spec.layer_shape(7, 5, D)(kind, layer), (kind, shape)
    return shape


def _stack_params(cell, o):
    """[(torch name, Arg)] of a stack with o's num_layers and bidirectional."""
    L, D = o["num_layers"], 2 if o["bidirectional"] else 1
    return [(f"{k}_l{l}{'_reverse' if d else ''}", _stack_shape(cell, k, l, D))
            for l in range(L) for d in range(D) for k in cell.kinds]


def _stack_states(cell, o, prefix="", suffix="0"):
    LD = o["num_layers"] * (2 if o["bidirectional"] else 1)
    return [Arg(prefix + state + suffix, (LD, "B", "H"), optional=True) for state in cell.state_names]


def _stack_forward(name):
    def args(o):
        cell = CELL_BY_ID[o["cell"]]
        return ([Arg("x", ("T", "B", "I"))] + _stack_states(cell, o)
                + [Arg(n, shape) for n, shape in _stack_params(cell, o)]
                + (VARLEN_ARGS if o["varlen"] else []))

    def split(ex, src):
        cell = CELL_BY_ID[ex.o["cell"]]
        params = {n: src[n] for n, _ in _stack_params(cell, ex.o)}
        states = tuple(src[s + "0"] for s in cell.state_names)
        return cell, params, states

    def call(ex):
        cell, params, states = split(ex, ex.a)
        v = _varlen(ex, ex.a)
        y, finals, _ = cells.stack_forward(cell, ex.a["x"], params, states, ex.o["num_layers"],
                                           ex.o["bidirectional"], **v)
        return {"y": y, **{s + "_n": f for s, f in zip(cell.state_names, finals)}}

    def reference(ex):
        cell, params, states = split(ex, ex.c)
        v = _varlen(ex, ex.c)
        y, finals, _ = cells.stack_row_by_row(cell, params, ex.c["x"], states, ex.o["num_layers"],
                                              ex.o["bidirectional"], v.get("lengths"), v.get("reset"))
        return {"y": y, **{s + "_n": f for s, f in zip(cell.state_names, finals)}}
    return Entry(f"{name}_stack_forward", args, call, reference, dims=STACK_DIMS,
                 derived=STACK_DERIVED,
                 options=dict(STACK_OPTIONS, cell=CELL_IDS[name], varlen=(False, True)),
                 dtype_from="x")


def _stack_backward(name):
    def args(o):
        cell = CELL_BY_ID[o["cell"]]
        return ([Arg("dy", ("T", "B", "H2" if o["bidirectional"] else "H"), optional=True)]
                + _stack_states(cell, o, prefix="d", suffix="_n"))

    def setup(ex):
        cell = CELL_BY_ID[ex.o["cell"]]
        T, B, I, H = (ex.d[k] for k in "TBIH")
        rng = np.random.default_rng(T * 100 + B * 10 + H)
        L, bidirectional = ex.o["num_layers"], ex.o["bidirectional"]
        LD = L * (2 if bidirectional else 1)
        ex.params = cells.stack_params(cell, rng, I, H, L, bidirectional, dtype=ex.comp)
        ex.x = rng.standard_normal((T, B, I)).astype(ex.comp)
        ex.states = tuple(rng.standard_normal((LD, B, H)).astype(ex.comp) for _ in cell.state_names)
        lengths = rng.integers(0, T + 1, B) if ex.o["varlen"] else None
        reset = rng.random((T, B)) < 0.3 if ex.o["varlen"] else None
        ex.seq = {"lengths": lengths, "reset": reset}
        ex.cache = cells.stack_forward(cell, ex.x, ex.params, ex.states, L, bidirectional,
                                       **ex.seq)[2]

    def call(ex):
        cell = CELL_BY_ID[ex.o["cell"]]
        cache = {"own": ex.cache, "none": None, "array": np.zeros(3), "params": ex.params}[ex.o["cache"]]
        dfinals = tuple(ex.a[f"d{s}_n"] for s in cell.state_names)
        return _keyed("d", cell.stack_backward_fn(ex.a["dy"], *dfinals, cache))

    def reference(ex):
        cell = CELL_BY_ID[ex.o["cell"]]
        dfinals = tuple(ex.c[f"d{s}_n"] for s in cell.state_names)
        _, _, g = cells.stack_row_by_row(cell, ex.params, ex.x, ex.states, ex.o["num_layers"],
                                         ex.o["bidirectional"], dy=ex.c["dy"], dfinals=dfinals,
                                         **ex.seq)
        return _keyed("d", g)
    return Entry(f"{name}_stack_backward", args, call, reference, dims=STACK_DIMS,
                 derived=STACK_DERIVED, setup=setup,
                 options=dict(STACK_OPTIONS, cell=CELL_IDS[name], varlen=(False, True),
                              dtype=("float64", "float32"), cache=("own",)),
                 bad_options={"cache": ("none", "array", "params")},
                 dtype_from=lambda ex: ex.o["dtype"])


# ---- MLP ------------------------------------------------------------------------------------------
MLP_HEADS = ("xent-labels", "xent-probs", "mse-identity", "mse-sigmoid", "mse-tanh", "mse-relu",
             "mse-softmax")
MLP_OPTIONS = {"dtype": ("float64", "float32"), "activation": ACTS, "head": MLP_HEADS,
               "hidden_layers": (0, 1, 2), "l2": (0.0, 0.05), "mse_form": ("sum", "half_mean")}
MLP_DIMS = {"B": (1, 6), "I": (1, 5), "H": (1, 6), "O": (1, 4)}


def _mlp_target(o):
    if o["head"] == "xent-labels":
        return Arg("y", ("B",), kind="labels", classes="O")
    return Arg("y", ("B", "O"))


def _mlp_setup(ex):
    o, d = ex.o, ex.d
    loss, output = o["head"].split("-")
    loss = "cross_entropy" if loss == "xent" else "mse"
    output = "softmax" if loss == "cross_entropy" else output
    sizes = [d["I"]] + [d["H"]] * o["hidden_layers"] + [d["O"]]
    ex.model = MLP(sizes, activation=o["activation"], output=output, loss=loss, l2=o["l2"],
                   dtype=o["dtype"], seed=d["B"], mse_form=o["mse_form"])
    rng = np.random.default_rng(d["I"])
    for _, b in ex.model.params:            # nonzero biases
        b[...] = rng.standard_normal(b.shape) * 0.3
    ex.params0 = [(W.copy(), b.copy()) for W, b in ex.model.params]


def _mlp_ref(ex, X, y, params=None):
    m = ex.model
    return R.mlp_loss_and_grad(X, y, params or ex.params0, m.activations, m.loss, m.l2, m.mse_form)


def _mlp_loss_and_grad():
    def call(ex):
        loss, grads = ex.model.loss_and_grad(ex.a["X"], ex.a["y"])
        return {"loss": loss, **{f"grad{l}.{k}": g for l, pair in enumerate(grads) for k, g in enumerate(pair)}}

    def reference(ex):
        loss, grads = _mlp_ref(ex, ex.c["X"], ex.c["y"])
        return {"loss": loss, **{f"grad{l}.{k}": g for l, pair in enumerate(grads) for k, g in enumerate(pair)}}
    return Entry("MLP.loss_and_grad", lambda o: [Arg("X", ("B", "I")), _mlp_target(o)], call, reference,
                 dims=MLP_DIMS, options=MLP_OPTIONS, setup=_mlp_setup,
                 dtype_from=lambda ex: ex.o["dtype"])


def _mlp_forward():
    def call(ex):
        out = ex.model.forward(ex.a["X"])
        pred = ex.model.predict(ex.a["X"])
        want = out.argmax(axis=1) if ex.model.loss == "cross_entropy" else out
        np.testing.assert_array_equal(pred, want, err_msg="predict is not the forward's argmax/output")
        return {"out": out}
    return Entry("MLP.forward/predict", [Arg("X", ("B", "I"))], call,
                 lambda ex: {"out": R.mlp_forward(ex.c["X"], ex.params0, ex.model.activations)[0]},
                 dims=dict(MLP_DIMS, B=(0, 6)), options=MLP_OPTIONS, setup=_mlp_setup,
                 dtype_from=lambda ex: ex.o["dtype"])


def _mlp_params_setter():
    def args(o):
        n = o["hidden_layers"] + 1
        dims = ["I"] + ["H"] * o["hidden_layers"] + ["O"]
        return [a for l in range(n) for a in (Arg(f"params[{l}][0]", (dims[l + 1], dims[l])),
                                              Arg(f"params[{l}][1]", (dims[l + 1],)))]

    def call(ex):
        n = len(ex.model.params)
        ex.model.params = [(ex.a[f"params[{l}][0]"], ex.a[f"params[{l}][1]"]) for l in range(n)]
        return {f"params[{l}][{k}]": p for l, pair in enumerate(ex.model.params) for k, p in enumerate(pair)}

    def reference(ex):
        return {name: v for name, v in ex.c.items()}
    return Entry("MLP.params=", args, call, reference, dims=MLP_DIMS, options=MLP_OPTIONS,
                 setup=_mlp_setup, dtype_from=lambda ex: ex.o["dtype"], model_mutates=True)


FIT_OPTIONS = {"batch_size": (1, 2, 3, 7), "clip_norm": (None, 0.5)}
FIT_BAD = {"batch_size": (0, -1, 2.5, None, True), "clip_norm": (0.0, -1.0, float("nan"), "1"),
           "epochs": (0, -2, 1.5, None)}


def _sgd_ref(params, grads, lr=0.1):   # (= SEQ_LR for the sequence models)
    for p, g in zip(params, grads):
        p -= (np.asarray(g, dtype=p.dtype) * lr).astype(p.dtype)


def _clip_ref(grads, max_norm):
    total = np.sqrt(sum(float(np.square(g, dtype=np.float64).sum()) for g in grads))
    if np.isfinite(total) and max_norm / (total + 1e-6) < 1:
        for g in grads:
            g *= g.dtype.type(max_norm / (total + 1e-6))
    return total


def _fit_kwargs(ex, lr=0.1):
    kw = dict(epochs=ex.o.get("epochs", 1), batch_size=ex.o["batch_size"], optimizer=SGD(lr),
              shuffle=False, progress=False, clip_norm=ex.o["clip_norm"])
    if "bptt" in ex.o:
        kw["bptt"] = ex.o["bptt"]
    if "comm" in ex.o:
        kw["comm"] = _comm(ex)
    return kw


# ---- fastbp.distributed: DataParallel over an in-process communicator -----------------------
class FakeComm:
    """One MPI rank in this process: the mpi4py methods fastbp.distributed calls
    (Get_rank, Get_size, Allreduce, Bcast, allgather, bcast). A sum or a
    broadcast over one rank leaves the buffer as it is, so fit and evaluate
    through DataParallel must equal the plain calls."""

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 1

    def Allreduce(self, sendbuf, recvbuf=None, op=None):
        if recvbuf is not None and not isinstance(sendbuf, np.ndarray):
            return                                  # MPI.IN_PLACE: recvbuf holds the sum
        if recvbuf is not None:
            np.copyto(recvbuf, sendbuf)

    def Bcast(self, buf, root=0):
        assert root == 0

    def allgather(self, obj):
        return [obj]

    def bcast(self, obj, root=0):
        return obj


def _comm(ex):
    """fit's / evaluate's comm: a FakeComm, or the bad value drawn."""
    c = ex.o.get("comm")
    return FakeComm() if c == "fake" else c


# the collective calls take mpi4py's constants (MPI.IN_PLACE, MPI.SUM): the
# DataParallel entries run where mpi4py is installed (CI installs it)
HAVE_MPI4PY = (importlib.util.find_spec("mpi4py") is not None
               or os.environ.get("FASTBP_REQUIRE_MPI") == "1")


def _data_parallel(entry):
    """The same entry through fit(comm=...)/evaluate(comm=...) with a FakeComm;
    a comm that is not a communicator is refused by name."""
    e = copy.copy(entry)
    e.id = "DataParallel(FakeComm):" + entry.id

    e.options = dict(entry.options, comm=("fake",))
    e.bad_options = dict(entry.bad_options, comm=("not a comm", 3, object()))
    return e


# ---- parameters tampered with behind set_params' back ----------------------------------------
# model.params[name] replaced through dict.__setitem__ (past the mapping's own
# validation), or the model's array reshaped in place: every entry that
# computes must refuse it, naming params[name], and change nothing.
TAMPER_OPTIONS = {"params": ("intact",)}
TAMPER_BAD = {"params": tuple(f"{how}:{name}" for how in ("shape", "dtype", "strided", "reshaped")
                              for name in ("weight_ih", "weight_hh", "bias_hh", "weight_out"))}


def _tamper(ex):
    """Apply ex.o["params"] to ex.model (after ex.params0 was taken)."""
    how, _, name = ex.o.get("params", "intact").partition(":")
    if how == "intact":
        return
    P = ex.model.params
    p = P[name]
    if how == "shape":
        bad = np.zeros(tuple(n + 1 for n in p.shape), p.dtype)
    elif how == "dtype":
        bad = p.astype(np.float32 if p.dtype == np.float64 else np.float64)
    elif how == "strided":
        bad = np.repeat(p, 2, axis=-1)[..., ::2]
    else:                                            # the model's own array, reshaped in place
        p.shape = (p.size,) if p.ndim == 2 else (1, p.size)
        return
    dict.__setitem__(P, name, bad)


def _mlp_fit():
    def call(ex):
        history = ex.model.fit(ex.a["X"], ex.a["y"], **_fit_kwargs(ex))
        return {"loss": history["loss"][0],
                **{f"param{i}": p for i, (_, p) in enumerate(ex.model.named_parameters())}}

    def reference(ex):
        params = [(W.copy(), b.copy()) for W, b in ex.params0]
        X, y, bs = ex.c["X"], ex.c["y"], ex.o["batch_size"]
        total = 0.0
        for s in range(0, X.shape[0], bs):
            loss, grads = _mlp_ref(ex, X[s:s + bs], y[s:s + bs], params)
            flat = [np.array(g) for pair in grads for g in pair]
            if ex.o["clip_norm"]:
                _clip_ref(flat, ex.o["clip_norm"])
            _sgd_ref([p for pair in params for p in pair], flat)
            total += float(loss) * min(bs, X.shape[0] - s)
        return {"loss": total / X.shape[0],
                **{f"param{i}": p for i, p in enumerate(p for pair in params for p in pair)}}
    return Entry("MLP.fit", lambda o: [Arg("X", ("B", "I")), _mlp_target(o)], call, reference,
                 dims=dict(MLP_DIMS, B=(1, 9)), options=dict(MLP_OPTIONS, **FIT_OPTIONS),
                 bad_options=FIT_BAD, setup=_mlp_setup, dtype_from=lambda ex: ex.o["dtype"],
                 model_mutates=True, regimes=("normal", "small", "large"))


def _mlp_evaluate():
    def call(ex):
        loss, acc = ex.model.evaluate(ex.a["X"], ex.a["y"], batch_size=ex.o["batch_size"],
                                      comm=_comm(ex))
        if ex.model.loss == "cross_entropy":
            y = np.asarray(ex.a["y"])
            labels = y if y.ndim == 1 else y.argmax(axis=1)
            assert acc == np.mean(ex.model.predict(ex.a["X"]) == labels)
        else:
            assert acc is None
        return {"loss": loss}
    return Entry("MLP.evaluate", lambda o: [Arg("X", ("B", "I")), _mlp_target(o)], call,
                 lambda ex: {"loss": _mlp_ref(ex, ex.c["X"], ex.c["y"])[0]},
                 dims=MLP_DIMS, options=dict(MLP_OPTIONS, batch_size=(1, 2, 256)),
                 bad_options={"batch_size": (0, 1.5)}, setup=_mlp_setup,
                 dtype_from=lambda ex: ex.o["dtype"])


# ---- the recurrent models: RNN, LSTM, GRU ---------------------------------------------------------
SEQ_HEADS = ("xent-labels", "xent-probs", "mse-sum", "mse-half_mean")
SEQ_MODELS = {cls.__name__: cls for cls in (RNN, LSTM, GRU)}
# each model's own constructor keywords for the option "variant" (0, 1, 2)
SEQ_VARIANTS = {"RNN": [{"nonlinearity": n} for n in NONLIN],
                "LSTM": [{}, {"peepholes": True}, {"forget_bias": None}],
                "GRU": [{}, {}, {}]}
SEQ_OPTIONS = {"model": tuple(SEQ_MODELS), "dtype": ("float64", "float32"), "head": SEQ_HEADS,
               "many_to_one": (False, True), "l2": (0.0, 0.05), "variant": (0, 1, 2),
               "varlen": (False, True)}
SEQ_MODEL_DIMS = {"T": (1, 5), "B": (1, 4), "I": (1, 4), "H": (1, 5), "O": (1, 4)}


def _seq_target(o, name):
    lead = ("B",) if o["many_to_one"] else ("T", "B")
    if o["head"] == "xent-labels":
        return Arg(name, lead, kind="labels", classes="O")
    if o["head"] == "xent-probs":
        return Arg(name, lead + ("O",), sources=("float64", "float32", "float16", ">f8", "bool"))
    return Arg(name, lead + ("O",))


def _seq_args(o, states=True, target="Y"):
    """loss_and_grad(X, Y, h0[, c0], lengths=, reset=); fit and evaluate call the target y."""
    out = [Arg("X", ("T", "B", "I")), _seq_target(o, target)]
    if states:
        out += [Arg(s + "0", ("B", "H"), optional=True) for s in _spec(o).state_names]
    return out + (VARLEN_ARGS if o["varlen"] else [])


def _seq_setup(ex):
    o, d = ex.o, ex.d
    loss = "cross_entropy" if o["head"].startswith("xent") else "mse"
    form = "half_mean" if o["head"] == "mse-half_mean" else "sum"
    common = dict(loss=loss, many_to_one=o["many_to_one"], l2=o["l2"], dtype=o["dtype"], seed=d["B"],
                  mse_form=form)
    ex.model = SEQ_MODELS[o["model"]](d["I"], d["H"], d["O"], **SEQ_VARIANTS[o["model"]][o["variant"]],
                                      **common)
    ex.params0 = {k: v.copy() for k, v in ex.model.params.items()}
    _tamper(ex)


def _spec(o):
    """The cell description of the option "model"."""
    return SEQ_MODELS[o["model"]]._spec


def _states(ex, src):
    """The initial states (h0[, c0]) from the arrays as passed or converted."""
    return tuple(src.get(s + "0") for s in _spec(ex.o).state_names)


def _no_states(model):
    return (None,) * len(model._spec.state_names)


def _model_layer(model, p, X, states, lengths, reset):
    return layer_oracle(cells.cell_of(model), X, states, p, lengths, reset)


def _valid_rows(T, B, lengths):
    """The (t, b) rows, in (T·B) order, that are scored: t < lengths[b]."""
    if lengths is None:
        return np.ones(T * B, bool)
    return (np.arange(T)[:, None] < np.asarray(lengths)[None, :]).reshape(-1)


def seq_reference(model, p, X, Y, states, lengths=None, reset=None):
    """What SequenceModel._loss_and_grad computes, with fastbp.reference: the layer
    (each row alone, split at resets), a readout at every valid step (or at each
    row's last step), the mean loss over those rows, L2 on the weight matrices.
    Returns (loss, grads by name, final states)."""
    Hs, final, pieces = _model_layer(model, p, X, states, lengths, reset)
    T, B, H = Hs.shape
    if model.many_to_one:
        Hrows, Yrows = final[0], Y
    else:
        valid = _valid_rows(T, B, lengths)
        Hrows, Yrows = Hs.reshape(T * B, H)[valid], Y.reshape((T * B,) + Y.shape[2:])[valid]
    out = Hrows @ p["weight_out"].T + p["bias_out"]
    if model.loss == "cross_entropy":
        loss, dout = R.softmax_cross_entropy(out, Yrows)
    else:
        loss, dout = R.squared_error(out, Yrows, model.mse_form)
    grads = {"weight_out": dout.T @ Hrows, "bias_out": dout.sum(axis=0)}
    dH = dout @ p["weight_out"]
    if model.many_to_one:
        dHs, dh_n = None, dH
    else:
        full = np.zeros((T * B, H), dH.dtype)
        full[valid] = dH
        dHs, dh_n = full.reshape(T, B, H), None
    layer = {n: v for n, v in p.items() if n not in grads}
    grads.update(backward_oracle(cells.cell_of(model), pieces, dHs,
                                 (dh_n,) + _no_states(model)[1:], layer))
    loss = float(loss)
    for name, W in p.items():
        if name.startswith("weight") and model.l2:
            loss += 0.5 * model.l2 * float(np.vdot(W, W))
            grads[name] = grads[name] + model.l2 * W
    return loss, grads, final


def _seq_loss_and_grad():
    def call(ex):
        m, v = ex.model, _varlen(ex, ex.a)
        states = {s + "0": ex.a[s + "0"] for s in _spec(ex.o).state_names}     # h0=[, c0=]
        loss, grads, final = m.loss_and_grad(ex.a["X"], ex.a["Y"], **states, **v)
        final = final if isinstance(final, tuple) else (final,)
        return {"loss": loss, **_keyed("grad:", grads), **{f"state{i}": s for i, s in enumerate(final)}}

    def reference(ex):
        loss, grads, final = seq_reference(ex.model, ex.params0, ex.c["X"], ex.c["Y"], _states(ex, ex.c),
                                           **_varlen(ex, ex.c))
        return {"loss": loss, **_keyed("grad:", grads), **{f"state{i}": s for i, s in enumerate(final)}}
    return Entry("RNN|LSTM|GRU.loss_and_grad", _seq_args, call, reference, dims=SEQ_MODEL_DIMS,
                 options=dict(SEQ_OPTIONS, **TAMPER_OPTIONS), bad_options=TAMPER_BAD,
                 setup=_seq_setup, dtype_from=lambda ex: ex.o["dtype"])


def _seq_forward():
    def call(ex):
        m, states, v = ex.model, _states(ex, ex.a), _varlen(ex, ex.a)
        out, final = m.forward(ex.a["X"], *states, **v)
        final = final if isinstance(final, tuple) else (final,)
        pred = m.predict(ex.a["X"], *states, **v)
        np.testing.assert_array_equal(pred, out.argmax(-1) if m.loss == "cross_entropy" else out)
        return {"out": out, **{f"state{i}": s for i, s in enumerate(final)}}

    def reference(ex):
        m, p, v = ex.model, ex.params0, _varlen(ex, ex.c)
        Hs, final, _ = _model_layer(m, p, ex.c["X"], _states(ex, ex.c), v.get("lengths"), v.get("reset"))
        if m.many_to_one:
            out = final[0] @ p["weight_out"].T + p["bias_out"]
        else:      # zero past each row's length
            out = Hs @ p["weight_out"].T + p["bias_out"]
            out[~_valid_rows(*Hs.shape[:2], v.get("lengths")).reshape(Hs.shape[:2])] = 0
        return {"out": out, **{f"state{i}": s for i, s in enumerate(final)}}
    return Entry("RNN|LSTM|GRU.forward/predict", lambda o: [a for a in _seq_args(o) if a.name != "Y"], call,
                 reference, dims=SEQ_MODEL_DIMS, options=dict(SEQ_OPTIONS, **TAMPER_OPTIONS),
                 bad_options=TAMPER_BAD, setup=_seq_setup, dtype_from=lambda ex: ex.o["dtype"])


def _chunks(T, k, many_to_one):
    """Truncated BPTT's chunks (the rule of the sequence models' fit docstring)."""
    k = T if k is None else k
    if many_to_one:
        last = max(T - k, 0)
        return [(t0, min(t0 + k, last), False) for t0 in range(0, last, k)] + [(last, T, True)]
    return [(t0, min(t0 + k, T), True) for t0 in range(0, T, k)]


def _seq_bptt(ex):
    """fit's bptt: an int, or (k, k): BPTT(k1, k2) with k1 = k2 is the chunked
    truncation, one step per chunk, when T is a multiple of k (a shorter last
    chunk is backpropagated k2 steps, into the chunk before). None with
    lengths/reset (whole sequences); (k, k) only for many-to-many, which is
    what BPTT(k1, k2) supports."""
    k = ex.o["bptt"]
    if ex.corruption == ("bptt", "option"):
        return k                                    # a value that must be refused
    if ex.o["varlen"]:
        return None
    if isinstance(k, tuple) and (ex.o["many_to_one"] or ex.d["T"] % k[0]):
        return k[0]
    return k


# A step size and clipping at which identity and relu RNNs over up to 5 steps of
# batch 1 do not diverge (a divergence is refused by name - "grads[0]: contains
# NaN" - but then there is nothing to compare).
SEQ_LR = 0.01
SEQ_FIT_OPTIONS = {"batch_size": (1, 2, 3, 7), "clip_norm": (1.0, 0.5)}


def _seq_fit():
    def call(ex):
        kw = dict(_fit_kwargs(ex, SEQ_LR), bptt=_seq_bptt(ex), **_varlen(ex, ex.a))
        history = ex.model.fit(ex.a["X"], ex.a["y"], **kw)
        return {"loss": history["loss"][0], **_keyed("param:", ex.model.params)}

    def reference(ex):
        m, X, Y, bs = ex.model, ex.c["X"], ex.c["y"], ex.o["batch_size"]
        k = _seq_bptt(ex)
        k = k[0] if isinstance(k, tuple) else k
        v = _varlen(ex, ex.c)
        lengths, reset = v.get("lengths"), v.get("reset")
        p = {name: value.copy() for name, value in ex.params0.items()}
        total, rows_total = 0.0, 0
        for s in range(0, X.shape[1], bs):
            cols = slice(s, s + bs)
            Xb, Yb = X[:, cols], (Y[cols] if m.many_to_one else Y[:, cols])
            Lb = None if lengths is None else lengths[cols]
            Rb = None if reset is None else reset[:, cols]
            if Lb is not None and not m.many_to_one and not Lb.any():
                continue                     # no step to score in this batch
            states = _no_states(m)
            for t0, t1, train in _chunks(X.shape[0], k, m.many_to_one):
                if not train:     # many_to_one: carry the state through, no step
                    _, _, states = seq_reference(m, p, Xb[t0:t1], Yb, states)
                    continue
                loss, grads, states = seq_reference(m, p, Xb[t0:t1], Yb if m.many_to_one else Yb[t0:t1],
                                                    states, Lb, Rb)
                flat = [np.array(grads[name]) for name in p]
                if ex.o["clip_norm"]:
                    _clip_ref(flat, ex.o["clip_norm"])
                _sgd_ref(list(p.values()), flat, SEQ_LR)
                rows = (Xb.shape[1] if m.many_to_one else
                        int(_valid_rows(t1 - t0, Xb.shape[1], Lb).sum()))
                total += loss * rows
                rows_total += rows
        return {"loss": total / rows_total, **_keyed("param:", p)}
    return Entry("RNN|LSTM|GRU.fit", lambda o: _seq_args(o, states=False, target="y"), call, reference,
                 dims=dict(SEQ_MODEL_DIMS, B=(1, 5)),
                 options=dict(SEQ_OPTIONS, bptt=(None, 1, 2, 3, (2, 2)), **SEQ_FIT_OPTIONS,
                              **TAMPER_OPTIONS),
                 bad_options=dict(FIT_BAD, bptt=(0, -1, 1.5, "2", (3, 2)), **TAMPER_BAD),
                 setup=_seq_setup,
                 dtype_from=lambda ex: ex.o["dtype"], model_mutates=True,
                 regimes=("normal", "small", "large"))


def _seq_evaluate():
    def call(ex):
        bptt = None if ex.o["varlen"] and ex.corruption != ("bptt", "option") else ex.o["bptt"]
        loss, acc = ex.model.evaluate(ex.a["X"], ex.a["y"], batch_size=ex.o["batch_size"], bptt=bptt,
                                      comm=_comm(ex), **_varlen(ex, ex.a))
        assert (acc is None) == (ex.model.loss != "cross_entropy")
        return {"loss": loss}

    def reference(ex):
        states = _no_states(ex.model)
        return {"loss": seq_reference(ex.model, ex.params0, ex.c["X"], ex.c["y"], states,
                                      **_varlen(ex, ex.c))[0]}
    return Entry("RNN|LSTM|GRU.evaluate", lambda o: _seq_args(o, states=False, target="y"), call, reference,
                 dims=SEQ_MODEL_DIMS, options=dict(SEQ_OPTIONS, batch_size=(1, 3, 256), bptt=(None, 2),
                                                   **TAMPER_OPTIONS),
                 bad_options=dict({"batch_size": (0, None), "bptt": (0, 2.0)}, **TAMPER_BAD),
                 setup=_seq_setup,
                 dtype_from=lambda ex: ex.o["dtype"])


STREAM_OPTIONS = dict({k: v for k, v in SEQ_OPTIONS.items() if k != "varlen"},   # full length
                      many_to_one=(False,), method=("step", "advance", "reset+step"),
                      k2_extra=(0, 2), k1=("T",), **TAMPER_OPTIONS)


def _stream():
    """tbptt.Stream: built, then one chunk of T <= k1 steps from h0 (and c0):
    step() backpropagates the whole chunk (k2 >= T), so it equals
    loss_and_grad over the chunk; advance() moves the state as forward does;
    reset() after a chunk starts over. Construction, step, advance and reset
    all see tampered parameters and bad arguments."""
    def call(ex):
        T, B = ex.d["T"], ex.d["B"]
        k1 = T if ex.o["k1"] == "T" else ex.o["k1"]
        states = _states(ex, ex.a)
        kw = {s + "0": v for s, v in zip(_spec(ex.o).state_names, states)}
        if ex.o["method"] == "reset+step":
            stream = Stream(ex.model, k1, k2=T + ex.o["k2_extra"], batch=B)
            stream.advance(np.ones((1, B, ex.d["I"])))
            stream.reset(**kw)
        else:
            stream = Stream(ex.model, k1, k2=T + ex.o["k2_extra"], batch=B, **kw)
        if ex.o["method"] == "advance":
            stream.advance(ex.a["X"])
            out = {}
        else:
            loss, grads = stream.step(ex.a["X"], ex.a["Y"])
            out = {"loss": loss, **_keyed("grad:", grads)}
        state = stream.state
        state = state if isinstance(state, tuple) else (state,)
        assert stream.steps == len(ex.a["X"])
        return dict(out, **{f"state{i}": s for i, s in enumerate(state)})

    def reference(ex):
        if ex.o["method"] == "advance":
            _, final, _ = _model_layer(ex.model, ex.params0, ex.c["X"], _states(ex, ex.c), None, None)
            out = {}
        else:
            loss, grads, final = seq_reference(ex.model, ex.params0, ex.c["X"], ex.c["Y"],
                                               _states(ex, ex.c))
            out = {"loss": loss, **_keyed("grad:", grads)}
        return dict(out, **{f"state{i}": s for i, s in enumerate(final)})

    def args(o):      # advance() takes no targets
        return [a for a in _seq_args(dict(o, varlen=False))
                if not (o["method"] == "advance" and a.name == "Y")]
    return Entry("tbptt.Stream", args, call, reference, dims=SEQ_MODEL_DIMS,
                 options=STREAM_OPTIONS,
                 bad_options=dict({"k1": (0, -1, 2.5, "3", True)}, **TAMPER_BAD),
                 setup=_seq_setup, dtype_from=lambda ex: ex.o["dtype"])


STEP_OPTIONS = dict({k: v for k, v in SEQ_OPTIONS.items() if k != "varlen"},   # no lengths
                    one=(False, True), **TAMPER_OPTIONS)


def _seq_step():
    """model.step: x (T, B, I) as T steps in one call, or its first step (B,
    I) (option "one"), from the state (h_n[, c_n], None parts zeros): forward
    over those steps, the readout of every new state (of the last with
    many_to_one)."""
    def state_args(o):
        return [Arg(s + "_n", ("B", "H"), optional=True) for s in _spec(o).state_names]

    def args(o):
        return [Arg("x", ("B", "I") if o["one"] else ("T", "B", "I"))] + state_args(o)

    def call(ex):
        parts = tuple(ex.a.get(s + "_n") for s in _spec(ex.o).state_names)
        state = (None if all(p is None for p in parts)
                 else parts if len(parts) > 1 else parts[0])
        y, new = ex.model.step(ex.a["x"], state)
        new = new if isinstance(new, tuple) else (new,)
        return {"y": y, **{f"state{i}": s for i, s in enumerate(new)}}

    def reference(ex):
        m, p = ex.model, ex.params0
        # an ndim corruption may make (B, I) into (k, B, I), valid (kept integer by the harness)
        x = ex.c["x"].astype(m.dtype)
        one = x.ndim == 2
        X = x[None] if one else x
        states = tuple(ex.c.get(s + "_n") for s in _spec(ex.o).state_names)
        Hs, final, _ = _model_layer(m, p, X, states, None, None)
        if m.many_to_one:
            y = final[0] @ p["weight_out"].T + p["bias_out"]
        else:
            y = Hs @ p["weight_out"].T + p["bias_out"]
            y = y[0] if one else y
        return {"y": y, **{f"state{i}": s for i, s in enumerate(final)}}
    return Entry("RNN|LSTM|GRU.step", args, call, reference, dims=SEQ_MODEL_DIMS,
                 options=STEP_OPTIONS, bad_options=TAMPER_BAD, setup=_seq_setup,
                 dtype_from=lambda ex: ex.o["dtype"])


def _seq_cell(o):
    """The Cell of the model the options build (its kinds: the LSTM's peepholes or not)."""
    return cells.cell_of(SEQ_MODELS[o["model"]](1, 1, 1, **SEQ_VARIANTS[o["model"]][o["variant"]]))


def _set_params():
    def args(o):
        cell = _seq_cell(o)
        return ([Arg(k, _stack_shape(cell, k, 0, 1)) for k in cell.kinds]
                + [Arg("weight_out", ("O", "H")), Arg("bias_out", ("O",))])

    def call(ex):
        ex.model.set_params({k: v for k, v in ex.a.items()})
        return {k: ex.model.params[k] for k in ex.a}
    return Entry("RNN|LSTM|GRU.set_params", args, call, lambda ex: dict(ex.c), dims=SEQ_MODEL_DIMS,
                 derived=GATE_ROWS, options=SEQ_OPTIONS,
                 setup=_seq_setup, dtype_from=lambda ex: ex.o["dtype"], model_mutates=True)


def _load_state_dict():
    def args(o):
        cell = _seq_cell(o)
        return ([Arg(k + "_l0", _stack_shape(cell, k, 0, 1)) for k in cell.kinds]
                + [Arg("readout.weight", ("O", "H")), Arg("readout.bias", ("O",))])

    def call(ex):
        ex.model.load_state_dict(dict(ex.a))
        return dict(ex.model.state_dict())
    return Entry("RNN|LSTM|GRU.load_state_dict", args, call, lambda ex: dict(ex.c),
                 dims=SEQ_MODEL_DIMS, derived=GATE_ROWS, options=SEQ_OPTIONS, setup=_seq_setup,
                 dtype_from=lambda ex: ex.o["dtype"], model_mutates=True)


# ---- optimizers, clipping, gradcheck --------------------------------------------------------------
def _optimizer_step():
    args = [Arg("params[0]", ("P",), kind="inplace", finite=False),
            Arg("params[1]", ("Q", "R"), kind="inplace", finite=False),
            Arg("grads[0]", ("P",), dtype="params[0]"), Arg("grads[1]", ("Q", "R"), dtype="params[1]")]

    def make(o):
        if o["optimizer"] == "adam":
            return Adam(lr=0.01, weight_decay=o["weight_decay"])
        return SGD(lr=0.1, momentum=0.9 if o["optimizer"] != "sgd" else 0.0,
                   nesterov=o["optimizer"] == "nesterov", weight_decay=o["weight_decay"])

    def call(ex):
        make(ex.o).step([ex.a["params[0]"], ex.a["params[1]"]], [ex.a["grads[0]"], ex.a["grads[1]"]])
        return {}

    def reference(ex):
        out = {}
        for i in range(2):
            p, g = ex.c[f"params[{i}]"].copy(), ex.c[f"grads[{i}]"]
            dt = p.dtype.type
            d = g + p * dt(ex.o["weight_decay"]) if ex.o["weight_decay"] else g
            if ex.o["optimizer"] == "adam":      # the first step from zero moments
                m, v = d * dt(0.1), d * d * dt(0.001)
                p -= (m / (np.sqrt(v) / np.sqrt(0.001) + 1e-8)) * dt(0.01 / 0.1)
            elif ex.o["optimizer"] == "nesterov":
                p -= d * dt(0.1) + d * dt(0.1 * 0.9)
            else:
                p -= d * dt(0.1)
            out[f"inplace:params[{i}]"] = p
        return out
    return Entry("optim.SGD|Adam.step", args, call, reference, dims={"P": (1, 5), "Q": (1, 4), "R": (1, 4)},
                 options={"optimizer": ("sgd", "momentum", "nesterov", "adam"), "weight_decay": (0.0, 0.01)},
                 mutates={"params[0]", "params[1]"}, tol={"float64": (1e-12, 1e-14), "float32": (1e-5, 1e-6)})


def _clip():
    # None is a frozen parameter's gradient: skipped; any float dtype is scaled in place
    refused = ("complex128", "object", "<U3", "datetime64[s]", "int64", "bool")
    args = [Arg("grads[0]", ("P",), kind="inplace", finite=False, optional=True, refused=refused),
            Arg("grads[1]", ("Q", "R"), kind="inplace", finite=False, optional=True, refused=refused)]

    def call(ex):
        return {"norm": clip_grad_norm([ex.a["grads[0]"], ex.a["grads[1]"]], ex.o["max_norm"])}

    def reference(ex):
        names = [n for n in ("grads[0]", "grads[1]") if ex.c[n] is not None]
        g = [ex.c[n].copy() for n in names]
        norm = _clip_ref(g, ex.o["max_norm"])
        return {"norm": norm, **{"inplace:" + n: v for n, v in zip(names, g)}}
    return Entry("clip_grad_norm", args, call, reference, dims={"P": (0, 5), "Q": (0, 4), "R": (1, 4)},
                 options={"max_norm": (0.5, 1.0, 1e3)},
                 bad_options={"max_norm": (0, -1.0, float("nan"), float("inf"), "1", None, True)},
                 mutates={"grads[0]", "grads[1]"}, regimes=REGIMES + EXTREME_REGIMES,
                 tol={"float64": (1e-12, 1e-14), "float32": (1e-6, 1e-7)})


def _gradcheck():
    # a NaN or inf parameter is not refused: the report then fails (errors are inf)
    args = [Arg("params[0]", ("P",), kind="inplace", finite=False),
            Arg("params[1]", ("Q", "R"), kind="inplace", finite=False)]

    def call(ex):
        params = [ex.a["params[0]"], ex.a["params[1]"]]
        # the gradients of fun = 0.75 Σ p² (bad params are passed on as they are, to be refused)
        grads = [p * 1.5 if isinstance(p, np.ndarray) and p.dtype == F64 else p for p in params]

        def fun():
            return sum(0.75 * float(np.sum(p ** 2)) for p in params)
        report = gradcheck(fun, params, grads, eps=ex.o["eps"], max_entries=ex.o["max_entries"])
        return {"ok": report.ok()}
    def reference(ex):
        return {"ok": all(np.isfinite(ex.c[n]).all() for n in ("params[0]", "params[1]"))}
    return Entry("gradcheck", args, call, reference, dims={"P": (1, 5), "Q": (1, 3), "R": (1, 3)},
                 options={"eps": (1e-6, 1e-5), "max_entries": (1, 3, 64)},
                 bad_options={"eps": (0.0, -1e-6, float("nan"), "x", None),
                              "max_entries": (0, -3, "a", None, 2.5)},
                 dtype_from=lambda ex: np.float64, regimes=("normal", "small", "large"),
                 exact_keys={"ok"}, sources={"inplace": ("float64",)})


ENTRIES = [
    _activation_forward(), _activation_backward(), _softmax_cross_entropy(), _squared_error(),
    _rnn_forward(), _rnn_backward(), _lstm_forward(), _lstm_backward(), _gru_forward(),
    _gru_backward(), *(f(name) for name in SPECS for f in (_stack_forward, _stack_backward)),
    _mlp_loss_and_grad(), _mlp_forward(), _mlp_params_setter(), _mlp_fit(), _mlp_evaluate(),
    _seq_loss_and_grad(), _seq_forward(), _seq_fit(), _seq_evaluate(), _set_params(),
    _load_state_dict(), _optimizer_step(), _clip(), _gradcheck(), _stream(), _seq_step(),
]
if HAVE_MPI4PY:
    ENTRIES += [_data_parallel(e) for e in ENTRIES
                if e.id in ("MLP.fit", "MLP.evaluate", "RNN|LSTM|GRU.fit", "RNN|LSTM|GRU.evaluate")]
