"""onnxruntime peer: the inference workload as a one-node ONNX ``LSTM`` graph.

The graph is built with ``onnx.helper`` from the problem's weights and run by an
``onnxruntime.InferenceSession`` on the CPU execution provider, one
``session.run`` per step, as an ONNX user would deploy the layer. ONNX's LSTM
differs from torch's (and fastbp's) layout in two ways, both mapped here:

- the gate blocks are ordered i, o, f, c where torch has i, f, g, o (g is c);
- ``W`` (num_directions, 4H, I), ``R`` (num_directions, 4H, H) and
  ``B`` (num_directions, 8H) = [Wb, Rb], i.e. bias_ih then bias_hh.

onnxruntime's intra-op threads follow ``--threads`` (:func:`set_intra_op_threads`,
called by the command like ``torch.set_num_threads``); without it, onnxruntime's
default. Its CPU LSTM kernel computes in float32 only.
"""
import numpy as np

from .workloads import INFER_OUTPUTS, NOT_INSTALLED, NOT_SUPPORTED, Runner, Unavailable

OPSET = 14
# torch's gate blocks i, f, g, o in ONNX's order i, o, f, c
ONNX_GATE_ORDER = (0, 3, 1, 2)

_intra_op_threads = None


def set_intra_op_threads(n):
    """The sessions built from now on use ``n`` intra-op threads (None: onnxruntime's default)."""
    global _intra_op_threads
    _intra_op_threads = n


def get_intra_op_threads():
    return _intra_op_threads


def thread_rule():
    """The line the report prints about onnxruntime's threads."""
    n = _intra_op_threads
    if n:
        return f"onnxruntime: intra_op_num_threads = {n} (--threads), sequential execution"
    return ("onnxruntime: intra_op_num_threads not set (onnxruntime's default: one per "
            "physical core), sequential execution")


def import_onnxruntime():
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise Unavailable(NOT_INSTALLED, f"{e.name or 'onnx'} is not installed "
                                         "(pip install onnx onnxruntime)") from None
    return onnx, onnxruntime


def to_onnx_gates(a, hidden):
    """Reorder the 4H gate rows (the first axis) from torch's i, f, g, o to ONNX's i, o, f, c."""
    return np.concatenate([a[k * hidden:(k + 1) * hidden] for k in ONNX_GATE_ORDER])


def lstm_model(onnx, params, seq_len, batch, dtype):
    """A one-node ONNX graph: Y, Y_h, Y_c = LSTM(X, W, R, B, initial_h, initial_c),
    the weights as initializers (torch.nn.LSTM's names, less _l0)."""
    from onnx import helper, numpy_helper

    H = params["weight_hh"].shape[1]
    I = params["weight_ih"].shape[1]
    weights = {"W": to_onnx_gates(params["weight_ih"], H)[None],
               "R": to_onnx_gates(params["weight_hh"], H)[None],
               "B": np.concatenate([to_onnx_gates(params["bias_ih"], H),
                                    to_onnx_gates(params["bias_hh"], H)])[None]}
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))

    def value(name, shape):
        return helper.make_tensor_value_info(name, elem, shape)

    node = helper.make_node("LSTM", ["X", "W", "R", "B", "", "initial_h", "initial_c"],
                            ["Y", "Y_h", "Y_c"], hidden_size=H, direction="forward")
    graph = helper.make_graph(
        [node], "fastbp_bench_lstm",
        [value("X", [seq_len, batch, I]), value("initial_h", [1, batch, H]),
         value("initial_c", [1, batch, H])],
        [value("Y", [seq_len, 1, batch, H]), value("Y_h", [1, batch, H]),
         value("Y_c", [1, batch, H])],
        [numpy_helper.from_array(np.ascontiguousarray(w), name) for name, w in weights.items()])
    model = helper.make_model_gen_version(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return model


def ort_lstm_infer(p):
    onnx, ort = import_onnxruntime()
    if p.dtype != np.float32:
        raise Unavailable(NOT_SUPPORTED, "onnxruntime's CPU LSTM kernel is float32 only "
                                         "(\"LSTM operator does not support double yet\")")
    d, s = p.data, p.size
    model = lstm_model(onnx, d["params"], s["seq_len"], s["batch"], p.dtype)
    options = ort.SessionOptions()
    options.log_severity_level = 3                      # errors only
    if _intra_op_threads:
        options.intra_op_num_threads = _intra_op_threads
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    feed = {"X": np.ascontiguousarray(d["X"]),
            "initial_h": np.ascontiguousarray(d["h0"][None]),
            "initial_c": np.ascontiguousarray(d["c0"][None])}

    def step():
        return session.run(None, feed)

    def outputs():
        Y, Y_h, Y_c = step()
        return dict(zip(INFER_OUTPUTS, (Y[:, 0], Y_h[0], Y_c[0])))
    return Runner(step, outputs, note=f"one-node ONNX LSTM graph (opset {OPSET}), "
                                      "CPUExecutionProvider, session.run per step")


BUILDERS = {"lstm_infer": ort_lstm_infer}
