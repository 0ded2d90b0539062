"""Deploy what was trained: export an LSTM to ONNX, run it in onnxruntime, and stream it with model.step.

The model learns next-value prediction on noisy sums of sines (the signal of
sine_rnn.py), then:

1. ``fastbp.onnx.export(model, path)`` writes the ONNX graph (inputs X,
   lengths, h0, c0; outputs Y, h_n, c_n);
2. onnxruntime runs it on new sequences of different lengths, from given
   initial states, and its outputs are compared with ``model.forward``'s;
3. ``model.step`` streams the first sequence one step at a time, the state
   carried from call to call, as a server would as values arrive, and gives
   ``model.forward``'s results over that whole sequence bit for bit.

    python examples/deploy_onnx_step.py        # [--out model.onnx] [--quick]

Needs the onnx extra and onnxruntime: pip install "fastbp[onnx]" onnxruntime
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

import fastbp
import fastbp.onnx
from fastbp.optim import Adam

PERIODS = (23.0, 41.0, 67.0)      # steps
AMPLITUDES = (1.0, 0.6, 0.4)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sequences", type=int, default=256, help="training sequences (default 256)")
    p.add_argument("--length", type=int, default=200, help="steps per sequence (default 200)")
    p.add_argument("--hidden", type=int, default=32, help="hidden units per layer (default 32)")
    p.add_argument("--layers", type=int, default=2, help="stacked LSTM layers (default 2)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--out", metavar="FILE.onnx", help="where to write the model (default: a "
                   "temporary file)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a tiny run, for the tests")
    args = p.parse_args(argv)
    if args.quick:
        args.sequences, args.length, args.epochs, args.hidden = 32, 60, 3, 16
    return args


def make_signals(n, length, rng, noise=0.05):
    """(length + 1, n): time-major, one noisy sum of sines per column."""
    t = np.arange(length + 1)[:, None]
    clean = sum(a * np.sin(2 * np.pi * t / P + rng.uniform(0, 2 * np.pi, n))
                for a, P in zip(AMPLITUDES, PERIODS))
    return (clean + noise * rng.standard_normal(clean.shape)).astype(np.float32)


def relative_error(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def main(argv=None):
    args = parse_args(argv)
    try:
        import onnxruntime as ort
    except ImportError:
        sys.exit("this example needs onnxruntime (and onnx): pip install \"fastbp[onnx]\" "
                 "onnxruntime")
    rng = np.random.default_rng(args.seed)
    train = make_signals(args.sequences, args.length, rng)
    X, Y = train[:-1, :, None], train[1:, :, None]             # (T, N, 1): next value
    model = fastbp.LSTM(1, args.hidden, 1, num_layers=args.layers, dtype="float32",
                        seed=args.seed)
    print(f"model: LSTM 1 -> {args.layers} x {args.hidden} -> 1, squared error; "
          f"{X.shape[1]} sequences of {X.shape[0]} steps, {args.epochs} epochs")
    t0 = time.perf_counter()
    history = model.fit(X, Y, epochs=args.epochs, batch_size=32, bptt=50, optimizer=Adam(lr=3e-3),
                        seed=args.seed, progress=False)
    print(f"trained in {time.perf_counter() - t0:.2f} s: loss {history['loss'][0]:.4f} -> "
          f"{history['loss'][-1]:.4f}")

    # 1. export
    with tempfile.TemporaryDirectory() as tmp:
        path = args.out or os.path.join(tmp, "lstm.onnx")
        proto = fastbp.onnx.export(model, path)
        size = os.path.getsize(path)
        options = ort.SessionOptions()
        options.log_severity_level = 3      # lengths, h0, c0 are optional inputs (with defaults)
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    print(f"\nexported to {path if args.out else 'a temporary file'}: {size / 1024:.1f} kB, opset "
          f"{proto.opset_import[0].version}; inputs "
          + ", ".join(f"{i.name} {_shape(i)}" for i in proto.graph.input)
          + "; outputs " + ", ".join(f"{o.name} {_shape(o)}" for o in proto.graph.output))

    # 2. onnxruntime on new sequences of different lengths, from given states
    test = make_signals(8, args.length, rng)[:-1, :, None]      # (T, 8, 1)
    T, B = test.shape[:2]
    lengths = rng.integers(T // 2, T + 1, B).astype(np.int32)
    lengths[0] = T
    h0 = 0.1 * rng.standard_normal((args.layers, B, args.hidden)).astype(np.float32)
    c0 = 0.1 * rng.standard_normal((args.layers, B, args.hidden)).astype(np.float32)
    t0 = time.perf_counter()
    y_ort, h_ort, c_ort = session.run(None, {"X": test, "lengths": lengths, "h0": h0, "c0": c0})
    t_ort = time.perf_counter() - t0
    t0 = time.perf_counter()
    y_fb, (h_fb, c_fb) = model.forward(test, h0, c0, lengths=lengths)
    t_fb = time.perf_counter() - t0
    ort_err = max(relative_error(y_ort, y_fb), relative_error(h_ort, h_fb),
                  relative_error(c_ort, c_fb))
    print(f"\nonnxruntime on {B} new sequences of {lengths.min()}-{lengths.max()} steps, "
          f"given h0 and c0: {1e3 * t_ort:.2f} ms (fastbp forward {1e3 * t_fb:.2f} ms)")
    print(f"    largest difference from model.forward (Y, h_n, c_n), relative: {ort_err:.1e}")

    # 3. stream the first sequence (every step valid) one step per call, and
    # compare with forward over that sequence: the same batch (of one), so the
    # same bits (a batch of 8 or more sums the recurrent product in another
    # order, docs/usage.md "Streaming")
    y_one, (h_one, c_one) = model.forward(test[:, :1], h0[:, :1], c0[:, :1])
    state, ys = (h0[:, :1], c0[:, :1]), []
    t0 = time.perf_counter()
    for t in range(T):
        y, state = model.step(test[t, :1], state)            # x (1, 1) -> y (1, 1)
        ys.append(y)
    t_step = (time.perf_counter() - t0) / T
    step_err = max(relative_error(np.stack(ys), y_one), relative_error(state[0], h_one),
                   relative_error(state[1], c_one))
    print(f"\nmodel.step, one value at a time: {1e6 * t_step:.0f} µs per step; largest difference "
          f"from model.forward, relative: {step_err:.1e}")
    mse = float(np.mean((np.stack(ys)[:-1, 0, 0] - test[1:, 0, 0]) ** 2))
    print(f"    next-value squared error along the stream: {mse:.4f}")
    return dict(history=history, ort_error=ort_err, step_error=step_err, t_step=t_step,
                opset=proto.opset_import[0].version)


def _shape(value_info):
    return "(" + ", ".join(str(d.dim_param or d.dim_value)
                           for d in value_info.type.tensor_type.shape.dim) + ")"


if __name__ == "__main__":
    main()
