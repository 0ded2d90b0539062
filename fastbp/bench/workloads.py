"""The workloads, their inputs and matmul work, and the fastbp and NumPy
reference implementations of one training step of each.

A *problem* is one workload at one size: shapes, the arrays every
implementation starts from (the same weights and inputs for all of them) and
the matmul FLOPs of one step. An *implementation* turns a problem into a
:class:`Runner`: ``step()`` is what gets timed, one forward + backward pass
producing every gradient; ``grads()`` runs the same step and returns the
gradients as NumPy arrays by name, for the check against fastbp.

Workloads (one training step each, forward + backward, every gradient):

- ``mlp``:  784-256-256-10 MLP, ReLU, softmax cross-entropy (mean over the batch).
- ``rnn``:  Elman RNN, tanh, I=64, H=256, a linear readout to O=64 at every
  step and the squared error summed over outputs, mean over the T·B rows;
  forward + full BPTT.
- ``lstm``: LSTM, I=H=256, loss ``sum(h_t · R_t)`` over the whole sequence (so
  ``dL/dh_t = R_t``); forward + full BPTT including ``dL/dx``.
- ``gru``: the same with a GRU (``torch.nn.GRU``'s cell: gates r, z, n, so
  3H rows in ``weight_ih``/``weight_hh`` where the LSTM has 4H).
- ``lstm_len``: the same LSTM on a batch of sequences of different lengths
  (uniform in [T/10, T]), the loss over each sequence's own steps only. fastbp
  passes ``lengths=``; torch packs (``pack_padded_sequence``); the reference
  and ``fastbp-padded`` run the padded batch with the loss masked, which gives
  the same gradients at the cost of every padded step.
- ``lstm2bi``: a 2-layer bidirectional LSTM (``torch.nn.LSTM(num_layers=2,
  bidirectional=True)``), I=H, loss ``sum(y_t · R_t)`` over the top layer's
  (T, B, 2H) outputs; forward + full BPTT, every weight gradient and dL/dx.
  fastbp runs ``lstm_stack_forward``/``lstm_stack_backward``; the reference
  composes the NumPy LSTM layer by layer, the reverse direction on the
  time-flipped sequence.
- ``lstm_infer``: inference, the ``lstm`` workload's LSTM forward only from
  given initial states (h0, c0), nothing kept for a backward: fastbp's
  ``lstm_forward(..., keep_cache=False)``, ``torch.nn.LSTM`` under
  ``torch.inference_mode()`` and a one-node ONNX ``LSTM`` graph in
  onnxruntime. Its check compares the outputs (y, h_n, c_n) instead of
  gradients, to :data:`OUTPUT_TOL`; ``Runner.grads`` returns them.
"""
import functools
import importlib
import inspect
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .. import functional
from .. import reference as ref

IMPLEMENTATIONS = ("fastbp", "reference", "torch", "jax", "onnxruntime", "fastbp-padded")
NOT_INSTALLED = "not installed"
NOT_AVAILABLE = "not available in this build"
NOT_SUPPORTED = "not supported"        # a peer that lacks the workload's dtype, say

MLP_INPUT, MLP_CLASSES = 784, 10
RNN_INPUT, RNN_OUTPUT = 64, 64


class Unavailable(Exception):
    """An implementation that cannot run here; ``status`` is what its row shows."""

    def __init__(self, status, detail=""):
        super().__init__(detail or status)
        self.status = status
        self.detail = detail


@dataclass
class Runner:
    step: Callable[[], object]
    grads: Callable[[], dict]     # the checked arrays by name (a forward-only problem: outputs)
    note: str = ""


@dataclass
class Problem:
    workload: str
    size: dict
    label: str
    dtype: np.dtype
    data: dict
    flops: float                  # matmul FLOPs (2·m·n·k per product) of one step
    grad_names: tuple = field(default=())
    checks: str = "gradient"      # what Runner.grads returns: "gradient"s, or "output"s


# -- problem definitions -------------------------------------------------------

def _uniform(rng, bound, shape, dtype):
    """torch.nn's default init, U(-1/√fan_in, 1/√fan_in)."""
    return rng.uniform(-bound, bound, shape).astype(dtype)


def mlp_problem(batch, hidden, dtype, seed=0):
    layers = [MLP_INPUT, hidden, hidden, MLP_CLASSES]
    rng = np.random.default_rng(seed)
    params = []
    for n_in, n_out in zip(layers[:-1], layers[1:]):
        bound = 1.0 / np.sqrt(n_in)
        params.append((_uniform(rng, bound, (n_out, n_in), dtype),
                       _uniform(rng, bound, (n_out,), dtype)))
    data = {"X": rng.standard_normal((batch, MLP_INPUT)).astype(dtype),
            "y": rng.integers(0, MLP_CLASSES, batch).astype(np.int64),
            "params": params, "layers": layers}
    # forward Z = A Wᵀ: 2·B·in·out per layer; backward dW = Δᵀ A for every layer and
    # dA = Δ W for all but the first (nobody needs dL/dX): 3 products, 2 for layer 1
    pairs = [n_in * n_out for n_in, n_out in zip(layers[:-1], layers[1:])]
    flops = 2.0 * batch * (3 * sum(pairs) - pairs[0])
    names = tuple(f"{k}{l}" for l in range(1, len(params) + 1) for k in ("W", "b"))
    return Problem("mlp", {"batch": batch, "layers": layers}, f"B={batch} h={hidden}",
                   np.dtype(dtype), data, flops, names)


RNN_PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_out", "bias_out")


def rnn_problem(batch, seq_len, hidden, dtype, seed=0):
    T, B, I, H, O = seq_len, batch, RNN_INPUT, hidden, RNN_OUTPUT
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(H)
    params = {"weight_ih": _uniform(rng, bound, (H, I), dtype),
              "weight_hh": _uniform(rng, bound, (H, H), dtype),
              "bias_ih": _uniform(rng, bound, (H,), dtype),
              "bias_hh": _uniform(rng, bound, (H,), dtype),
              "weight_out": _uniform(rng, bound, (O, H), dtype),
              "bias_out": _uniform(rng, bound, (O,), dtype)}
    data = {"X": rng.standard_normal((T, B, I)).astype(dtype),
            "Y": rng.standard_normal((T, B, O)).astype(dtype),
            "params": params}
    # forward: X W_ihᵀ, h W_hhᵀ, H W_outᵀ; backward: dW_ih, dW_hh, dh W_hh, dW_out, dO W_out
    # (dL/dX is not a parameter gradient, so it is not counted)
    flops = 2.0 * T * B * (2 * I * H + 3 * H * H + 3 * H * O)
    return Problem("rnn", {"seq_len": T, "batch": B, "input": I, "hidden": H, "output": O},
                   f"T={T} B={B} H={H}", np.dtype(dtype), data, flops, RNN_PARAMS)


# the one-layer gated cells (data["cell"] of their problems): gate blocks of H rows in
# weight_ih / weight_hh, and the states the cell carries ((h, c) for the LSTM, h for the GRU)
CELL_GATES = {"lstm": 4, "gru": 3}
CELL_STATES = {"lstm": 2, "gru": 1}
CELL_PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")   # torch.nn's names, less _l0
CELL_GRADS = ("x",) + CELL_PARAMS


def cell_problem(cell, batch, seq_len, hidden, dtype, seed=0):
    """The lstm or gru workload: one layer, I=H, loss sum(h·R)."""
    T, B, H, G = seq_len, batch, hidden, CELL_GATES[cell]
    I = H
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(H)
    data = {"X": rng.standard_normal((T, B, I)).astype(dtype),
            "R": rng.standard_normal((T, B, H)).astype(dtype),
            "params": {"weight_ih": _uniform(rng, bound, (G * H, I), dtype),
                       "weight_hh": _uniform(rng, bound, (G * H, H), dtype),
                       "bias_ih": _uniform(rng, bound, (G * H,), dtype),
                       "bias_hh": _uniform(rng, bound, (G * H,), dtype)},
            "cell": cell}
    # forward: X W_ihᵀ, h W_hhᵀ (G·H gates); backward: dW_ih, dX, dW_hh, dG W_hh
    flops = 2.0 * T * B * G * H * (I + H) * 3
    return Problem(cell, {"seq_len": T, "batch": B, "input": I, "hidden": H},
                   f"T={T} B={B} H={H}", np.dtype(dtype), data, flops, CELL_GRADS)


INFER_OUTPUTS = ("y", "h_n", "c_n")
FORWARD_ONLY = ("lstm_infer",)          # the workloads whose check is on outputs


def lstm_infer_problem(batch, seq_len, hidden, dtype, seed=0):
    """The lstm workload's LSTM, forward only, from random initial states (so the
    check covers how every implementation takes h0 and c0)."""
    p = cell_problem("lstm", batch, seq_len, hidden, dtype, seed)
    rng = np.random.default_rng([seed, 2])
    del p.data["R"]
    p.data["h0"], p.data["c0"] = (rng.standard_normal((batch, hidden)).astype(dtype)
                                  for _ in range(2))
    p.workload, p.grad_names, p.checks = "lstm_infer", INFER_OUTPUTS, "output"
    p.flops /= 3                # X W_ihᵀ and h W_hhᵀ: the forward third of a training step
    return p


def lstm_len_problem(batch, seq_len, hidden, dtype, seed=0):
    p = cell_problem("lstm", batch, seq_len, hidden, dtype, seed)
    T, B, H = seq_len, batch, hidden
    rng = np.random.default_rng([seed, 1])
    lengths = rng.integers(max(1, T // 10), T + 1, B)
    valid = np.arange(T)[:, None] < lengths[None, :]
    p.data["lengths"] = lengths
    p.data["R"] *= valid[:, :, None]            # no loss past a sequence's end
    p.data["X"] *= valid[:, :, None]            # padding, as a padded batch holds it
    share = lengths.sum() / (T * B)
    p.flops *= share                            # the work a sequence's own steps need
    p.workload = "lstm_len"
    p.size["lengths"] = [int(n) for n in lengths]
    p.label = f"T={T} B={B} H={H} L={T // 10 or 1}..{T} ({share:.0%} of T·B)"
    return p


STACK_LAYERS = 2


def _stack_names(L, D):
    return tuple(f"{kind}_l{l}{'_reverse' if d else ''}" for l in range(L) for d in range(D)
                 for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def lstm2bi_problem(batch, seq_len, hidden, dtype, seed=0):
    T, B, H, L, D = seq_len, batch, hidden, STACK_LAYERS, 2
    I = H
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(H)
    params = {}
    for name in _stack_names(L, D):
        layer = int(name.split("_l")[1].split("_")[0])
        rows = 4 * H
        shape = ((rows, I if layer == 0 else D * H) if name.startswith("weight_ih")
                 else (rows, H) if name.startswith("weight_hh") else (rows,))
        params[name] = _uniform(rng, bound, shape, dtype)
    data = {"X": rng.standard_normal((T, B, I)).astype(dtype),
            "R": rng.standard_normal((T, B, D * H)).astype(dtype),
            "params": params, "num_layers": L}
    # per layer and direction, as for lstm: X W_ihᵀ, dW_ih, dX and h W_hhᵀ, dW_hh, dG W_hh
    flops = sum(2.0 * T * B * 4 * H * ((I if l == 0 else D * H) + H) * 3 * D for l in range(L))
    return Problem("lstm2bi", {"seq_len": T, "batch": B, "input": I, "hidden": H,
                               "num_layers": L, "bidirectional": True},
                   f"T={T} B={B} H={H} L={L}x2", np.dtype(dtype), data, flops,
                   ("x",) + _stack_names(L, D))


WORKLOADS = {
    "mlp": "784-h-h-10 MLP, ReLU, softmax cross-entropy: forward + backward, all gradients",
    "rnn": f"Elman RNN tanh, I={RNN_INPUT}, readout O={RNN_OUTPUT}, squared error: "
           "forward + full BPTT",
    "lstm": "LSTM I=H, loss sum(h·R): forward + full BPTT incl. dL/dx",
    "gru": "GRU I=H (torch.nn.GRU's gates r, z, n), loss sum(h·R): forward + full BPTT "
           "incl. dL/dx",
    "lstm_len": "the lstm workload with sequence lengths uniform in [T/10, T]: fastbp with "
                "lengths=, torch with pack_padded_sequence, the reference and fastbp-padded on "
                "the padded batch (GFLOP/s count the valid steps' work only)",
    "lstm2bi": f"{STACK_LAYERS}-layer bidirectional LSTM I=H, loss sum(y·R) over the top "
               "layer's [forward, reverse] outputs: forward + full BPTT incl. dL/dx",
    "lstm_infer": "inference: the lstm workload's LSTM forward only from random (h0, c0), "
                  "nothing kept for a backward (fastbp keep_cache=False, torch under "
                  "inference_mode, onnxruntime's LSTM); checked: y, h_n, c_n",
}


def make_problem(workload, batch, seq_len, hidden, dtype, seed=0):
    if workload == "mlp":
        return mlp_problem(batch, hidden, dtype, seed)
    if workload == "rnn":
        return rnn_problem(batch, seq_len, hidden, dtype, seed)
    if workload in CELL_GATES:
        return cell_problem(workload, batch, seq_len, hidden, dtype, seed)
    if workload == "lstm_len":
        return lstm_len_problem(batch, seq_len, hidden, dtype, seed)
    if workload == "lstm2bi":
        return lstm2bi_problem(batch, seq_len, hidden, dtype, seed)
    if workload == "lstm_infer":
        return lstm_infer_problem(batch, seq_len, hidden, dtype, seed)
    raise ValueError(f"unknown workload {workload!r}")


# -- shared step bodies (NumPy glue around a forward/backward pair) -------------

def _rnn_readout_step(forward, backward, squared_error, X, Y, P, zeros_h):
    """RNN + readout + squared error, given rnn_forward/rnn_backward/squared_error
    functions (the reference's, or fastbp's compiled ones)."""
    T, B, _ = X.shape
    H, O = P["weight_hh"].shape[0], P["weight_out"].shape[0]
    Hs, _, cache = forward(X, zeros_h, P["weight_ih"], P["weight_hh"], P["bias_ih"],
                           P["bias_hh"], nonlinearity="tanh")
    Hrows = Hs.reshape(T * B, H)
    out = Hrows @ P["weight_out"].T + P["bias_out"]           # O(T·B,O) = H(T·B,H) W_outᵀ + b
    loss, dout = squared_error(out, Y.reshape(T * B, O))      # sum over outputs, mean over rows
    layer = backward((dout @ P["weight_out"]).reshape(T, B, H), zeros_h, cache)
    grads = {name: layer[name] for name in RNN_PARAMS[:4]}
    grads["weight_out"] = dout.T @ Hrows                      # dW_out(O,H) = dOᵀ H
    grads["bias_out"] = dout.sum(axis=0)
    return loss, grads


def _zero_states(p):
    """The initial states of the problem's cell, zeros: (h0, c0) for the LSTM, (h0,) for the GRU."""
    zeros_h = np.zeros((p.size["batch"], p.size["hidden"]), p.dtype)
    return (zeros_h,) * CELL_STATES[p.data["cell"]]


def _cell_step(forward, backward, X, R, P, states, **lengths):
    """A one-layer cell (LSTM, GRU) with loss sum(h·R): dL/dh_t = R_t, nothing
    flows in from the final states."""
    y, _, cache = forward(X, *states, P["weight_ih"], P["weight_hh"],
                          P["bias_ih"], P["bias_hh"], **lengths)
    return _inner(y, R), backward(R, *(None,) * len(states), cache)


def _inner(a, b):
    """Σ a·b without BLAS: np.vdot would run on NumPy's OpenBLAS, whose threads
    then spin beside the implementation being timed (einsum's own loop does not)."""
    return float(np.einsum("i,i->", a.ravel(), b.ravel()))


def _infer_runner(forward, p, **options):
    """lstm_infer: ``forward(X, h0, c0, *weights, **options)``, the outputs by name."""
    d = p.data
    P = d["params"]
    args = (d["X"], d["h0"], d["c0"]) + tuple(P[name] for name in CELL_PARAMS)

    def step():
        return forward(*args, **options)

    def outputs():
        y, (h_n, c_n), _ = step()
        return _pick({"y": y, "h_n": h_n, "c_n": c_n}, INFER_OUTPUTS)
    return Runner(step, outputs)


def _pick(grads, names):
    return {name: np.array(grads[name]) for name in names}


def _mlp_grad_dict(grads):
    out = {}
    for l, (dW, db) in enumerate(grads, start=1):
        out[f"W{l}"], out[f"b{l}"] = np.array(dW), np.array(db)
    return out


# -- the NumPy reference ---------------------------------------------------------

def reference_mlp(p):
    d = p.data
    acts = ["relu"] * (len(d["params"]) - 1) + ["softmax"]

    def step():
        return ref.mlp_loss_and_grad(d["X"], d["y"], d["params"], acts, loss="cross_entropy")
    return Runner(step, lambda: _mlp_grad_dict(step()[1]))


def reference_rnn(p):
    d = p.data
    zeros_h = np.zeros((p.size["batch"], p.size["hidden"]), p.dtype)

    def step():
        return _rnn_readout_step(ref.rnn_forward, ref.rnn_backward, ref.squared_error,
                                 d["X"], d["Y"], d["params"], zeros_h)
    return Runner(step, lambda: _pick(step()[1], RNN_PARAMS))


def reference_cell(p):
    """lstm, gru (and lstm_len on the padded batch): ref.<cell>_forward/_backward."""
    d, states = p.data, _zero_states(p)
    forward = getattr(ref, f"{d['cell']}_forward")
    backward = getattr(ref, f"{d['cell']}_backward")

    def step():
        return _cell_step(forward, backward, d["X"], d["R"], d["params"], states)
    return Runner(step, lambda: _pick(step()[1], CELL_GRADS))


def reference_lstm_infer(p):
    return _infer_runner(ref.lstm_forward, p)


def _reference_stack_step(X, R, P, L):
    """The bidirectional stack composed from the NumPy reference LSTM layer by
    layer: the reverse direction runs on the time-flipped input; loss sum(y·R)."""
    H = P["weight_hh_l0"].shape[1]
    inp, caches = X, []
    for l in range(L):
        outs, layer = [], []
        for d, suffix in enumerate((f"_l{l}", f"_l{l}_reverse")):
            xx = inp[::-1] if d else inp
            y, _, cache = ref.lstm_forward(xx, None, None, P["weight_ih" + suffix],
                                           P["weight_hh" + suffix], P["bias_ih" + suffix],
                                           P["bias_hh" + suffix])
            outs.append(y[::-1] if d else y)
            layer.append(cache)
        caches.append(layer)
        inp = np.concatenate(outs, axis=2)
    loss = np.vdot(inp, R)
    grads, dys = {}, [R[..., :H], R[..., H:]]
    for l in reversed(range(L)):
        dx = 0
        for d, suffix in enumerate((f"_l{l}", f"_l{l}_reverse")):
            g = ref.lstm_backward(dys[d][::-1] if d else dys[d], None, None, caches[l][d])
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                grads[kind + suffix] = g[kind]
            dx = dx + (g["x"][::-1] if d else g["x"])
        dys = [dx[..., :H], dx[..., H:]]
    grads["x"] = dx
    return loss, grads


def reference_lstm2bi(p):
    d = p.data

    def step():
        return _reference_stack_step(d["X"], d["R"], d["params"], d["num_layers"])
    return Runner(step, lambda: _pick(step()[1], p.grad_names))


# -- fastbp ----------------------------------------------------------------------

def _fastbp_module(name):
    """Import fastbp.<name>; a module that is not in this build is Unavailable.

    Only a missing module counts as "not available": an import that fails for any
    other reason is a real error and propagates.
    """
    full = f"fastbp.{name}"
    try:
        return importlib.import_module(full)
    except ModuleNotFoundError as e:
        if e.name == full:
            raise Unavailable(NOT_AVAILABLE, f"{full} is not in this build") from None
        raise


def _require(module, attr):
    if not hasattr(module, attr):
        raise Unavailable(NOT_AVAILABLE, f"{module.__name__}.{attr} is not in this build")
    return getattr(module, attr)


def _load_named_params(net, params):
    """Give a sequence model the shared weights, and make sure it holds them."""
    if hasattr(net, "set_params"):
        net.set_params(params)
    else:
        for name, value in params.items():
            net.params[name][...] = value
    for name, value in params.items():
        if not np.array_equal(net.params[name], value):
            raise RuntimeError(f"{type(net).__name__}.params[{name!r}] did not take the "
                               "shared weights")


def fastbp_mlp(p):
    MLP = _require(_fastbp_module("mlp"), "MLP")
    d = p.data
    net = MLP(d["layers"], activation="relu", output="softmax", loss="cross_entropy",
              l2=0.0, dtype=p.dtype.name, seed=0)
    # load the shared weights in place, then make sure the model really holds them
    for (W, b), (W0, b0) in zip(net.params, d["params"]):
        W[...] = W0
        b[...] = b0
    for (W, b), (W0, b0) in zip(net.params, d["params"]):
        if not (np.array_equal(W, W0) and np.array_equal(b, b0)):
            raise RuntimeError("MLP.params did not take the shared weights (a copy?)")
    X, y = d["X"], d["y"]
    if "out" not in inspect.signature(net.loss_and_grad).parameters:
        def step():
            return net.loss_and_grad(X, y)
        return Runner(step, lambda: _mlp_grad_dict(step()[1]))

    # a training loop hands the previous step's gradient arrays back (out=) to be
    # overwritten, instead of allocating new ones every step
    buffers = []

    def step():
        loss, grads = net.loss_and_grad(X, y, out=buffers[0] if buffers else None)
        if not buffers:
            buffers.append(grads)
        return loss, grads
    return Runner(step, lambda: _mlp_grad_dict(step()[1]))


def fastbp_rnn(p):
    mod = _fastbp_module("rnn")
    d = p.data
    if hasattr(mod, "RNN"):
        s = p.size
        net = mod.RNN(s["input"], s["hidden"], s["output"], nonlinearity="tanh", loss="mse",
                      many_to_one=False, l2=0.0, dtype=p.dtype.name, seed=0)
        _load_named_params(net, d["params"])
        X, Y = d["X"], d["Y"]

        def step():
            return net.loss_and_grad(X, Y)
        return Runner(step, lambda: _pick(step()[1], RNN_PARAMS))

    # no model class yet: the compiled layer with the same NumPy readout the model uses
    forward, backward = _require(mod, "rnn_forward"), _require(mod, "rnn_backward")
    zeros_h = np.zeros((p.size["batch"], p.size["hidden"]), p.dtype)

    def step():
        return _rnn_readout_step(forward, backward, functional.squared_error,
                                 d["X"], d["Y"], d["params"], zeros_h)
    return Runner(step, lambda: _pick(step()[1], RNN_PARAMS),
                  note="compiled rnn_forward/rnn_backward + NumPy readout (no RNN class yet)")


def _fastbp_cell_functions(cell):
    """fastbp.<cell>.<cell>_forward and _backward, the functional API."""
    mod = _fastbp_module(cell)
    forward = _require(mod, f"{cell}_forward")
    backward = _require(mod, f"{cell}_backward")
    if "overwrite_cache" in inspect.signature(backward).parameters:
        # a training step runs backward once per forward: the gate gradients may
        # reuse the cache's gate buffer instead of a fresh (T, B, G·H) array
        backward = functools.partial(backward, overwrite_cache=True)
    return forward, backward


def fastbp_cell(p):
    """lstm, gru (and fastbp-padded for lstm_len): the compiled functional API."""
    d, states = p.data, _zero_states(p)
    forward, backward = _fastbp_cell_functions(d["cell"])

    def step():
        return _cell_step(forward, backward, d["X"], d["R"], d["params"], states)
    return Runner(step, lambda: _pick(step()[1], CELL_GRADS))


def fastbp_lstm_len(p):
    """lengths= in the kernels: each step runs only the sequences still going."""
    d, states = p.data, _zero_states(p)
    forward, backward = _fastbp_cell_functions(d["cell"])
    if "lengths" not in inspect.signature(forward).parameters:
        raise Unavailable(NOT_AVAILABLE, f"{d['cell']}_forward has no lengths= in this build")

    def step():
        return _cell_step(forward, backward, d["X"], d["R"], d["params"], states,
                          lengths=d["lengths"])
    return Runner(step, lambda: _pick(step()[1], CELL_GRADS))


def fastbp_lstm2bi(p):
    """Both directions of each layer in one compiled call (lstm_stack_forward)."""
    mod = _fastbp_module("lstm")
    forward = _require(mod, "lstm_stack_forward")
    backward = functools.partial(_require(mod, "lstm_stack_backward"), overwrite_cache=True)
    d = p.data

    def step():
        y, _, cache = forward(d["X"], d["params"], num_layers=d["num_layers"],
                              bidirectional=True)
        return _inner(y, d["R"]), backward(d["R"], None, None, cache)
    return Runner(step, lambda: _pick(step()[1], p.grad_names))


def fastbp_lstm_infer(p):
    """The compiled forward with keep_cache=False: no cache, nothing for a backward."""
    forward = _require(_fastbp_module("lstm"), "lstm_forward")
    if "keep_cache" not in inspect.signature(forward).parameters:
        raise Unavailable(NOT_AVAILABLE, "lstm_forward has no keep_cache= in this build")
    return _infer_runner(forward, p, keep_cache=False)


FASTBP = {"mlp": fastbp_mlp, "rnn": fastbp_rnn, "lstm": fastbp_cell, "gru": fastbp_cell,
          "lstm_len": fastbp_lstm_len, "lstm2bi": fastbp_lstm2bi,
          "lstm_infer": fastbp_lstm_infer}
# the padded batch with the loss masked: every step of every row is computed
FASTBP_PADDED = {"lstm_len": fastbp_cell}
REFERENCE = {"mlp": reference_mlp, "rnn": reference_rnn, "lstm": reference_cell,
             "gru": reference_cell, "lstm_len": reference_cell, "lstm2bi": reference_lstm2bi,
             "lstm_infer": reference_lstm_infer}


# -- the gradient check ------------------------------------------------------------

CHECK_TOL = {np.dtype(np.float32): 1e-3, np.dtype(np.float64): 1e-8}
# a forward pass's outputs carry no backward's rounding: a tighter bound
OUTPUT_TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-8}


def check_tol(problem):
    """The check's bound for the problem: its outputs' or its gradients'."""
    return (OUTPUT_TOL if problem.checks == "output" else CHECK_TOL)[problem.dtype]


def compare_grads(got, want):
    """Worst norm-wise relative error ‖got − want‖ / ‖want‖ over the gradients.

    Returns (error, name of the worst gradient). A missing gradient or a shape
    mismatch counts as an infinite error.
    """
    worst, worst_name = 0.0, None
    for name, w in want.items():
        g = got.get(name)
        if g is None or np.shape(g) != np.shape(w):
            return float("inf"), name
        g = np.asarray(g, dtype=np.float64)
        w = np.asarray(w, dtype=np.float64)
        scale = np.linalg.norm(w)
        err = float(np.linalg.norm(g - w) / scale) if scale > 0 else float(np.linalg.norm(g))
        if not np.isfinite(err):
            return float("inf"), name
        if err >= worst:
            worst, worst_name = err, name
    return worst, worst_name
