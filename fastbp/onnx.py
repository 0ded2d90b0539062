"""ONNX export of every fastbp model: ``fastbp.onnx.export(model, path=None, *, opset=None)``.

The ``onnx`` package is an optional extra (``pip install "fastbp[onnx]"``),
imported when :func:`export` is called, never by ``import fastbp``.

What the graph computes is what ``model.forward`` returns (docs/usage.md,
"ONNX export"):

- MLP: input ``"X"`` (B, I); output ``"Y"`` (B, O), ``forward``'s output
  (after the output activation: softmax probabilities for a classifier), one
  ``Gemm`` and one activation per layer.
- RNN, LSTM, GRU: input ``"X"`` (T, B, I), time-major, T and B dynamic;
  optional inputs ``"lengths"`` (B,) int32, each row's valid steps, fed to the
  operators' ``sequence_lens``, and ``"h0"`` (and ``"c0"``) in the model's
  state shape, (B, H) or (num_layers·D, B, H); outputs ``"Y"`` (T, B, O), or
  (B, O) for ``many_to_one`` (the readout, before any softmax, zero past each
  row's length), then ``"h_n"`` (and ``"c_n"``) in the model's state shape.
  An optional input that is not fed takes its default: every row has T steps,
  the initial states are zeros. (They are graph inputs with an empty
  initializer, ONNX's overridable default: onnxruntime lists them under
  ``get_overridable_initializers()``, not ``get_inputs()``.)

One ONNX ``RNN``/``LSTM``/``GRU`` node per layer, both directions in one
(``direction="bidirectional"``), layers chained through ``Transpose`` +
``Reshape`` of ``Y`` (T, D, B, H) into (T, B, D·H). The weights are
reordered from torch's gate order to ONNX's:

- LSTM: torch i, f, g, o -> ONNX i, o, f, c; ``B`` = [bias_ih, bias_hh]
  reordered; peepholes ``P`` = [p_i, p_o, p_f]. ONNX's peepholes are fastbp's
  (docs/equations.md §7): p_i and p_f see c_{t−1}, p_o sees c_t.
- GRU: torch r, z, n -> ONNX z, r, h, with ``linear_before_reset=1``:
  ``h̃ = tanh(x W_hᵀ + b_Wh + r ⊙ (h W_Rhᵀ + b_Rh))``, torch's form.
- RNN: ``activations`` Tanh or Relu; the identity is ``Affine`` with alpha 1,
  beta 0.

Rows of length 0: ONNX leaves the final state of such a row unspecified and
onnxruntime returns zeros; fastbp returns the row's initial state. The graph
gives fastbp's answer: each layer's final states go through
``Where(lengths == 0, initial state, operator's final state)``.

Resets (``reset=``) are not part of the graph: a stream that restarts is fed
as separate rows, or as separate runs.
"""
from __future__ import annotations

import json
import numbers
import os
from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from ._stack import model_param_name
from .gru import GRU
from .lstm import LSTM
from .mlp import MLP
from .rnn import RNN

if TYPE_CHECKING:           # the optional extra, for the annotations only
    import onnx

__all__ = ["export", "DEFAULT_OPSET", "MIN_OPSET"]

DEFAULT_OPSET = 17      # onnxruntime >= 1.13 runs it; every operator used here exists there
MIN_OPSET = 13          # Unsqueeze/Squeeze/ReduceX with axes as inputs, Softmax over one axis

# torch's gate blocks -> ONNX's, per cell
_GATE_ORDER = {"lstm": (0, 3, 1, 2),      # i, f, g, o -> i, o, f, c
               "gru": (1, 0, 2),          # r, z, n -> z, r, h
               "rnn": (0,)}
_OP = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
_RNN_ACTIVATION = {"tanh": ("Tanh", None), "relu": ("Relu", None), "identity": ("Affine", (1.0, 0.0))}
_MLP_ACTIVATION = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}


def _import_onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError as e:
        raise ImportError("fastbp.onnx.export needs the onnx package: pip install "
                          "\"fastbp[onnx]\" (or pip install onnx)") from e
    return onnx, helper, numpy_helper


def export(model: Union[MLP, RNN, LSTM, GRU], path: Union[str, os.PathLike, None] = None, *,
           opset: Optional[int] = None) -> "onnx.ModelProto":
    """Export a model to ONNX; returns the ``onnx.ModelProto`` (and writes it to
    ``path`` when given).

    Parameters
    ----------
    model : fastbp.MLP, RNN, LSTM or GRU
        Any configuration: stacked, bidirectional, many-to-one, peepholes,
        float32 or float64 (the graph computes in the model's dtype).
    path : str, os.PathLike or None
        Where to write the model (``onnx.save``); None writes nothing.
    opset : int or None
        The ONNX opset (default DEFAULT_OPSET, 17); from MIN_OPSET (13) to the
        newest the installed onnx knows.

    The graph's inputs and outputs are described in :mod:`fastbp.onnx`; it
    passes ``onnx.checker.check_model(..., full_check=True)``. onnxruntime
    runs float32 graphs (its RNN, LSTM and GRU kernels are float32 only);
    float64 graphs run in ONNX's reference evaluator.
    """
    onnx, helper, numpy_helper = _import_onnx()
    if not isinstance(model, (MLP, RNN, LSTM, GRU)):
        raise TypeError(f"model: expected a fastbp MLP, RNN, LSTM or GRU, got "
                        f"{type(model).__name__}")
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path (str or os.PathLike) or None, got "
                        f"{type(path).__name__}")
    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        opset = min(DEFAULT_OPSET, newest)
    elif isinstance(opset, bool) or not isinstance(opset, numbers.Integral):
        raise TypeError(f"opset: expected an integer or None, got {opset!r}")
    elif not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset: expected {MIN_OPSET} to {newest} (the newest this onnx "
                         f"{onnx.__version__} knows), got {opset}")
    opset = int(opset)
    g = _Graph(helper, numpy_helper, onnx.TensorProto, np.dtype(model.dtype))
    if isinstance(model, MLP):
        _mlp_graph(g, model)
    else:
        _sequence_graph(g, model)
    kind = type(model).__name__
    graph = helper.make_graph(g.nodes, f"fastbp_{kind.lower()}", g.inputs, g.outputs,
                              g.initializers)
    imports = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=imports, producer_name="fastbp",
                              ir_version=helper.find_min_ir_version_for(imports),
                              doc_string=f"fastbp.{kind} exported by fastbp.onnx.export: "
                                         "outputs equal model.forward's")
    helper.set_model_props(proto, {"fastbp.model": kind,
                                   "fastbp.config": json.dumps(model.config(), sort_keys=True)})
    onnx.checker.check_model(proto, full_check=True)
    if path is not None:
        onnx.save(proto, os.fspath(path))
    return proto


class _Graph:
    """The nodes, initializers, inputs and outputs of the graph being built,
    with a fresh name for every value."""

    def __init__(self, helper, numpy_helper, tensor_proto, dtype):
        self.helper, self.numpy_helper, self.TP = helper, numpy_helper, tensor_proto
        self.dtype = dtype
        self.elem = tensor_proto.FLOAT if dtype == np.float32 else tensor_proto.DOUBLE
        self.nodes, self.initializers, self.inputs, self.outputs = [], [], [], []
        self._count = 0

    def name(self, hint):
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value, hint, dtype=None):
        """An initializer (the graph's own copy of the value)."""
        name = self.name(hint)
        arr = np.array(value, dtype=dtype if dtype is not None else self.dtype)
        self.initializers.append(self.numpy_helper.from_array(arr, name))
        return name

    def ints(self, values, hint="axes"):
        return self.const(np.asarray(values, dtype=np.int64), hint, np.int64)

    def op(self, op_type, inputs, hint=None, n_out=1, **attrs):
        outs = [self.name(hint or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outs, **attrs))
        return outs[0] if n_out == 1 else outs

    def output(self, name, value, shape, elem=None):
        """Route ``value`` to the graph output ``name``."""
        self.nodes.append(self.helper.make_node("Identity", [value], [name]))
        self.outputs.append(self.helper.make_tensor_value_info(name, elem or self.elem, shape))

    def input(self, name, shape, elem=None, doc=""):
        self.inputs.append(self.helper.make_tensor_value_info(name, elem or self.elem, shape,
                                                              doc_string=doc))
        return name

    def optional_input(self, name, default, shape, elem=None, doc=""):
        """An input with an (empty) initializer of the same name: its value when
        the caller does not feed it (ONNX's overridable initializer)."""
        self.input(name, shape, elem, doc)
        self.initializers.append(self.numpy_helper.from_array(default, name))
        return name


# ---- the MLP ------------------------------------------------------------------------

def _mlp_graph(g, model):
    """Y = forward(X): per layer ``Gemm(A, W, b, transB=1)`` then the activation."""
    I = model.sizes[0]
    a = g.input("X", ["B", I], doc="inputs (B, I)")
    for l, ((W, b), act) in enumerate(zip(model.params, model.activations)):
        a = g.op("Gemm", [a, g.const(W, f"layer{l}.weight"), g.const(b, f"layer{l}.bias")],
                 f"z{l}", transB=1)
        if act == "softmax":
            a = g.op("Softmax", [a], f"a{l}", axis=1)
        elif act != "identity":
            a = g.op(_MLP_ACTIVATION[act], [a], f"a{l}")
    g.output("Y", a, ["B", model.sizes[-1]])


# ---- the sequence models --------------------------------------------------------------

def _sequence_graph(g, model):
    """X -> one operator node per layer -> the readout; lengths and initial
    states optional (their defaults computed in the graph)."""
    P = model._checked_params()
    names = model._spec.state_names              # ("h",) or ("h", "c")
    L, D, H = model.num_layers, model.num_directions, model.hidden_size
    state_shape = [L * D, "B", H] if model._stacked else ["B", H]
    X, T1, lengths, inits, empty = _sequence_inputs(g, model, state_shape)
    finals = [[] for _ in names]            # per state, each layer's (D, B, H)
    x = X
    for l in range(L):
        layer_init = [g.op("Slice", [s, g.ints([l * D], "start"), g.ints([(l + 1) * D], "end"),
                                     g.ints([0], "axis0")], f"{name}0_l{l}")
                      for s, name in zip(inits, names)]
        Y, layer_finals = _layer(g, model, P, l, x, lengths, layer_init)
        # rows of length 0 keep their initial states (onnxruntime gives zeros)
        for k, (s, final) in enumerate(zip(names, layer_finals)):
            finals[k].append(g.op("Where", [empty, layer_init[k], final], f"{s}_n_l{l}"))
        # the next layer's input, or the readout's: (T, D, B, H) -> (T, B, D·H), [fwd, rev]
        x = (g.op("Squeeze", [Y, g.ints([1], "axis1")], f"y_l{l}") if D == 1 else
             g.op("Reshape", [g.op("Transpose", [Y], f"yt_l{l}", perm=[0, 2, 1, 3]),
                              g.ints([0, 0, D * H], "shape_tbf")], f"y_l{l}"))
    _readout(g, model, P, x, finals[0][-1], T1, lengths)
    for s, parts in zip(names, finals):
        joined = g.op("Concat", parts, f"{s}_n_all", axis=0) if len(parts) > 1 else parts[0]
        if not model._stacked:
            joined = g.op("Squeeze", [joined, g.ints([0], "axis0")], f"{s}_n_2d")
        g.output(f"{s}_n", joined, state_shape)


def _sequence_inputs(g, model, state_shape):
    """The graph inputs and what the layers read of them: X, T (1-D int64),
    the lengths (B,) int32 (T for every row when not fed), the initial states
    (L·D, B, H) each (zeros when not fed), and the rows of length 0 as a
    (1, B, 1) mask."""
    L, D, H, I = model.num_layers, model.num_directions, model.hidden_size, model.input_size
    i32 = g.TP.INT32
    X = g.input("X", ["T", "B", I], doc="inputs (T, B, I), time-major")
    lengths_in = g.optional_input(
        "lengths", np.zeros(0, np.int32), ["B"], i32,
        doc="optional: each row's valid steps, 0 <= length <= T (not fed: T)")
    init_in = [g.optional_input(
        f"{s}0", np.zeros([0 if d == "B" else d for d in state_shape], g.dtype), state_shape,
        doc=f"optional: initial {s} in the model's state shape (not fed: zeros)")
        for s in model._spec.state_names]
    shape = g.op("Shape", [X], "shape_x")
    T1 = g.op("Gather", [shape, g.ints([0], "i0")], "T", axis=0)
    B1 = g.op("Gather", [shape, g.ints([1], "i1")], "B", axis=0)
    zero1 = g.ints([0], "zero")
    # lengths: the fed ones, or T for every row: the first B of [fed; T, ..., T]
    full = g.op("Expand", [g.op("Cast", [T1], "T_i32", to=i32), B1], "full_lengths")
    lengths = g.op("Slice", [g.op("Concat", [lengths_in, full], "lengths_cat", axis=0),
                             zero1, B1, zero1], "lengths")
    # initial states: the fed ones, or zeros: the first B rows of [fed; zeros]
    batch_axis = 1 if model._stacked else 0
    zeros_shape = g.op("Concat", ([g.ints([L * D], "LD")] if model._stacked else [])
                       + [B1, g.ints([H], "H")], "state_shape", axis=0)
    zero_state = g.op("ConstantOfShape", [zeros_shape], "zero_state",
                      value=g.numpy_helper.from_array(np.zeros(1, g.dtype)))
    inits = []
    for s, fed in zip(model._spec.state_names, init_in):
        x = g.op("Slice", [g.op("Concat", [fed, zero_state], f"{s}0_cat", axis=batch_axis),
                           zero1, B1, g.ints([batch_axis], "batch_axis")], f"{s}0")
        inits.append(x if model._stacked else g.op("Unsqueeze", [x, zero1], f"{s}0_3d"))
    empty = g.op("Unsqueeze", [g.op("Equal", [lengths, g.const(np.zeros(1, np.int32), "zero_i32",
                                                                 np.int32)], "empty_rows"),
                               g.ints([0, 2], "axes02")], "empty_mask")
    return X, T1, lengths, inits, empty


def _layer(g, model, P, l, x, lengths, layer_init):
    """Layer l's ONNX RNN/LSTM/GRU node, both directions: its weights reordered
    to ONNX's gate order. Returns Y (T, D, B, H) and the final states (D, B, H)."""
    cell, D, H = model._spec.name, model.num_directions, model.hidden_size

    def stacked(kind):          # (D, ...) over the directions, ONNX's gate order
        return _reorder(cell, np.stack([P[model_param_name(kind, l, d)] for d in range(D)]))
    bias = np.concatenate([stacked("bias_ih"), stacked("bias_hh")], axis=1)
    ins = [x, g.const(stacked("weight_ih"), f"W_l{l}"), g.const(stacked("weight_hh"), f"R_l{l}"),
           g.const(bias, f"B_l{l}"), lengths, layer_init[0]]
    attrs = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
    if cell == "lstm":
        ins.append(layer_init[1])
        if model.peepholes:      # P = [p_i, p_o, p_f] per direction
            peep = np.stack([np.concatenate([P[model_param_name(k, l, d)] for k in
                                             ("peephole_i", "peephole_o", "peephole_f")])
                             for d in range(D)])
            ins.append(g.const(peep, f"P_l{l}"))
    elif cell == "gru":
        attrs["linear_before_reset"] = 1
    else:
        name, alpha_beta = _RNN_ACTIVATION[model.nonlinearity]
        attrs["activations"] = [name] * D
        if alpha_beta is not None:
            attrs["activation_alpha"] = [alpha_beta[0]] * D
            attrs["activation_beta"] = [alpha_beta[1]] * D
    outs = g.op(_OP[cell], ins, f"{cell}_l{l}", n_out=1 + len(layer_init), **attrs)
    return outs[0], outs[1:]


def _readout(g, model, P, x, top, T1, lengths):
    """Y: the readout of every step's top-layer output x (T, B, D·H), zero past
    each row's length, or with many_to_one of the top layer's final h (D, B, H)."""
    D, H, O = model.num_directions, model.hidden_size, model.output_size
    weight_out = g.const(np.ascontiguousarray(P["weight_out"].T), "readout.weight_T")
    bias_out = g.const(P["bias_out"], "readout.bias")
    zero1 = g.ints([0], "zero")
    if model.many_to_one:
        # [h_n forward, h_n reverse] of the top layer: (D, B, H) -> (B, D·H)
        feats = (g.op("Squeeze", [top, zero1], "features") if D == 1 else
                 g.op("Reshape", [g.op("Transpose", [top], "top_t", perm=[1, 0, 2]),
                                  g.ints([0, D * H], "shape_bf")], "features"))
        out = g.op("Add", [g.op("MatMul", [feats, weight_out], "readout"), bias_out], "outputs")
        g.output("Y", out, ["B", O])
        return
    out = g.op("Add", [g.op("MatMul", [x, weight_out], "readout"), bias_out], "outputs")
    # zero past each row's length, as forward: step t < lengths[b], a (T, B, 1) mask
    steps = g.op("Range", [g.ints(0, "start"), g.op("Squeeze", [T1, zero1], "T_scalar"),
                           g.ints(1, "delta")], "steps")
    valid = g.op("Less", [g.op("Unsqueeze", [steps, g.ints([1], "axis1")], "steps_col"),
                          g.op("Unsqueeze", [g.op("Cast", [lengths], "lengths_i64",
                                                  to=g.TP.INT64), zero1], "lengths_row")],
                 "valid")
    mask = g.op("Unsqueeze", [valid, g.ints([2], "axis2")], "valid_mask")
    out = g.op("Where", [mask, out, g.const(np.zeros(1, g.dtype), "zero_out")], "outputs_masked")
    g.output("Y", out, ["T", "B", O])


def _reorder(cell, a, axis=1):
    """Gate blocks along ``axis`` (G·H long; axis 1 of the (D, G·H, ·) and
    (D, G·H) stacks) from torch's order to ONNX's."""
    order = _GATE_ORDER[cell]
    if len(order) == 1:
        return np.ascontiguousarray(a)
    blocks = np.split(a, len(order), axis=axis)
    return np.ascontiguousarray(np.concatenate([blocks[i] for i in order], axis=axis))
