"""PyTorch peers: the same training steps with torch.nn modules and autograd.

Each module is built with fastbp's weights copied in (the layouts are the same:
``Linear.weight (out, in)``, ``RNN``/``LSTM``/``GRU`` ``weight_ih_l0``, ``weight_hh_l0``,
gates i, f, g, o for the LSTM and r, z, n for the GRU), runs in the benchmark's dtype, and one step is what a torch
user writes: clear the gradients, forward, loss, ``backward()``; the inference
workload (``lstm_infer``) runs the forward under ``torch.inference_mode()``.
"""
import numpy as np

from .workloads import (CELL_GRADS, CELL_PARAMS, INFER_OUTPUTS, NOT_INSTALLED, RNN_PARAMS, Runner,
                        Unavailable)


def import_torch():
    try:
        import torch
    except ImportError:
        raise Unavailable(NOT_INSTALLED, "PyTorch is not installed (pip install torch)") from None
    return torch


def _tensor(torch, a):
    return torch.from_numpy(np.ascontiguousarray(a))


def _copy_into(torch, module, values):
    """module.<name> <- values[name] for every name, without recording autograd history."""
    with torch.no_grad():
        for name, value in values.items():
            getattr(module, name).copy_(_tensor(torch, value))


def _dtype(torch, p):
    return torch.float32 if p.dtype == np.float32 else torch.float64


def _clear(parameters):
    for t in parameters:
        t.grad = None


def torch_mlp(p):
    torch = import_torch()
    d, dt = p.data, _dtype(torch, p)
    linears = []
    for W, b in d["params"]:
        lin = torch.nn.Linear(W.shape[1], W.shape[0], dtype=dt)
        _copy_into(torch, lin, {"weight": W, "bias": b})
        linears.append(lin)
    params = [t for lin in linears for t in (lin.weight, lin.bias)]
    X, y = _tensor(torch, d["X"]), _tensor(torch, d["y"])
    cross_entropy = torch.nn.functional.cross_entropy

    def step():
        _clear(params)
        h = X
        for lin in linears[:-1]:
            h = torch.relu(lin(h))
        loss = cross_entropy(linears[-1](h), y)       # softmax + mean cross-entropy
        loss.backward()
        return loss

    def grads():
        step()
        out = {}
        for l, lin in enumerate(linears, start=1):
            out[f"W{l}"], out[f"b{l}"] = lin.weight.grad.numpy(), lin.bias.grad.numpy()
        return out
    return Runner(step, grads)


def torch_rnn(p):
    torch = import_torch()
    d, s, dt = p.data, p.size, _dtype(torch, p)
    P = d["params"]
    rnn = torch.nn.RNN(s["input"], s["hidden"], nonlinearity="tanh", dtype=dt)
    _copy_into(torch, rnn, {"weight_ih_l0": P["weight_ih"], "weight_hh_l0": P["weight_hh"],
                            "bias_ih_l0": P["bias_ih"], "bias_hh_l0": P["bias_hh"]})
    readout = torch.nn.Linear(s["hidden"], s["output"], dtype=dt)
    _copy_into(torch, readout, {"weight": P["weight_out"], "bias": P["bias_out"]})
    params = list(rnn.parameters()) + list(readout.parameters())
    X, Y = _tensor(torch, d["X"]), _tensor(torch, d["Y"])

    def step():
        _clear(params)
        hs, _ = rnn(X)                                  # time-major (T, B, H), h0 = 0
        loss = ((readout(hs) - Y) ** 2).sum(-1).mean()  # sum over outputs, mean over T·B
        loss.backward()
        return loss

    def grads():
        step()
        g = [rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0,
             readout.weight, readout.bias]
        return {name: t.grad.numpy() for name, t in zip(RNN_PARAMS, g)}
    return Runner(step, grads)


def _new_cell(torch, p):
    """torch.nn.LSTM or torch.nn.GRU (the problem's cell), one layer, with the shared weights."""
    s = p.size
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[p.data["cell"]](
        s["input"], s["hidden"], dtype=_dtype(torch, p))
    _copy_into(torch, module, {f"{name}_l0": p.data["params"][name] for name in CELL_PARAMS})
    return module


def _cell_module(torch, p):
    """The problem's cell (:func:`_new_cell`); X requires grad (dL/dx is part of the
    workload). Returns the module, X, R and every tensor whose gradient a step clears."""
    module = _new_cell(torch, p)
    X = _tensor(torch, p.data["X"]).clone().requires_grad_(True)
    return module, X, _tensor(torch, p.data["R"]), [X] + list(module.parameters())


def _cell_grads(module, X):
    g = [X] + [getattr(module, f"{name}_l0") for name in CELL_PARAMS]
    return {name: t.grad.numpy() for name, t in zip(CELL_GRADS, g)}


def torch_cell(p):
    """lstm and gru: nn.LSTM / nn.GRU on the whole sequence, h0 (and c0) = 0."""
    torch = import_torch()
    module, X, R, params = _cell_module(torch, p)

    def step():
        _clear(params)
        hs, _ = module(X)
        loss = (hs * R).sum()
        loss.backward()
        return loss

    def grads():
        step()
        return _cell_grads(module, X)
    return Runner(step, grads)


def torch_lstm_len(p):
    """The variable-length batch as PyTorch users run it: pack_padded_sequence
    (unsorted, as data comes), nn.LSTM on the PackedSequence, pad_packed_sequence."""
    torch = import_torch()
    lstm, X, R, params = _cell_module(torch, p)
    lengths = torch.from_numpy(np.asarray(p.data["lengths"], dtype=np.int64))
    T = X.shape[0]
    rnn_utils = torch.nn.utils.rnn

    def step():
        _clear(params)
        packed = rnn_utils.pack_padded_sequence(X, lengths, enforce_sorted=False)
        out, _ = lstm(packed)
        hs, _ = rnn_utils.pad_packed_sequence(out, total_length=T)
        loss = (hs * R).sum()
        loss.backward()
        return loss

    def grads():
        step()
        return _cell_grads(lstm, X)
    return Runner(step, grads, note="pack_padded_sequence(enforce_sorted=False) + nn.LSTM")


def torch_lstm_infer(p):
    """Inference as a torch user writes it: nn.LSTM from (h0, c0) under
    torch.inference_mode() (no autograd graph, no version counters)."""
    torch = import_torch()
    d = p.data
    lstm = _new_cell(torch, p)
    X = _tensor(torch, d["X"])
    states = tuple(_tensor(torch, d[k])[None] for k in ("h0", "c0"))   # (1, B, H): one layer

    def step():
        with torch.inference_mode():
            return lstm(X, states)

    def outputs():
        y, (h_n, c_n) = step()
        return dict(zip(INFER_OUTPUTS, (y.numpy(), h_n[0].numpy(), c_n[0].numpy())))
    return Runner(step, outputs, note="nn.LSTM under torch.inference_mode()")


def torch_lstm2bi(p):
    """nn.LSTM(num_layers=2, bidirectional=True) with the same weights by name."""
    torch = import_torch()
    d, s, dt = p.data, p.size, _dtype(torch, p)
    lstm = torch.nn.LSTM(s["input"], s["hidden"], num_layers=s["num_layers"],
                         bidirectional=True, dtype=dt)
    _copy_into(torch, lstm, d["params"])
    X = _tensor(torch, d["X"]).clone().requires_grad_(True)
    R = _tensor(torch, d["R"])
    params = [X] + list(lstm.parameters())

    def step():
        _clear(params)
        hs, _ = lstm(X)                                 # (T, B, 2H), h0 = c0 = 0
        loss = (hs * R).sum()
        loss.backward()
        return loss

    def grads():
        step()
        out = {"x": X.grad.numpy()}
        out.update({name: t.grad.numpy() for name, t in lstm.named_parameters()})
        return out
    return Runner(step, grads)


BUILDERS = {"mlp": torch_mlp, "rnn": torch_rnn, "lstm": torch_cell, "gru": torch_cell,
            "lstm_len": torch_lstm_len, "lstm2bi": torch_lstm2bi, "lstm_infer": torch_lstm_infer}
