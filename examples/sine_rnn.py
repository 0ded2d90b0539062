"""Next-value prediction with an Elman RNN on noisy sums of sines.

Each sequence is x(t) = Σ_k a_k sin(2π t / P_k + φ_k) + noise, with fixed
periods P_k and amplitudes a_k and a random phase φ_k per sequence. The RNN
reads x(0..t) and predicts x(t+1); it is scored on new sequences against the
naive baseline that predicts the last value seen, x̂(t+1) = x(t), and against
the noise floor (the error of a predictor that knew the clean signal):

    python examples/sine_rnn.py           # [--length 400] [--bptt 50] [--plot loss.png]

Long sequences are trained by truncated BPTT (--bptt steps per chunk, the
state carried from chunk to chunk).
"""
import argparse
import sys
import time

import numpy as np

from fastbp.optim import Adam
from fastbp.rnn import RNN

PERIODS = (23.0, 41.0, 67.0)      # steps
AMPLITUDES = (1.0, 0.6, 0.4)
WARMUP = 20                       # first steps not scored: the RNN's state is still settling


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sequences", type=int, default=256, help="training sequences (default 256)")
    p.add_argument("--length", type=int, default=400, help="steps per sequence (default 400)")
    p.add_argument("--noise", type=float, default=0.05, help="noise standard deviation (default 0.05)")
    p.add_argument("--hidden", type=int, default=32, help="hidden units (default 32)")
    p.add_argument("--bptt", type=int, default=50, help="truncated BPTT chunk length (default 50)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate (default 3e-3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a tiny run, for the tests")
    p.add_argument("--plot", metavar="FILE.png", help="save the loss curves as a PNG")
    p.add_argument("--progress", action="store_true", help="show the progress bar")
    args = p.parse_args(argv)
    if args.quick:
        args.sequences, args.length, args.epochs = min(args.sequences, 64), min(args.length, 120), min(args.epochs, 8)
        args.hidden, args.bptt = min(args.hidden, 16), min(args.bptt, 30)
    return args


def make_signals(n, length, noise, rng):
    """(clean, noisy) arrays of shape (length + 1, n): time-major, one column per sequence."""
    t = np.arange(length + 1)[:, None]
    clean = sum(a * np.sin(2 * np.pi * t / P + rng.uniform(0, 2 * np.pi, n))
                for a, P in zip(AMPLITUDES, PERIODS))
    return clean, clean + noise * rng.standard_normal(clean.shape)


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    _, train = make_signals(args.sequences, args.length, args.noise, rng)
    clean_test, test = make_signals(args.sequences // 4 or 1, args.length, args.noise, rng)
    # inputs x(0..T−1), targets x(1..T): (T, N, 1)
    X, Y = train[:-1, :, None].astype(np.float32), train[1:, :, None].astype(np.float32)
    Xt, Yt = test[:-1, :, None].astype(np.float32), test[1:, :, None].astype(np.float32)
    t_data = time.perf_counter() - t0
    print(f"signal: sum of sines with periods {', '.join(f'{p:g}' for p in PERIODS)} steps, "
          f"random phases, noise sd {args.noise}")
    print(f"data: {X.shape[1]} training and {Xt.shape[1]} test sequences of {X.shape[0]} steps "
          f"(generated in {1e3 * t_data:.1f} ms)")
    print(f"model: Elman RNN 1 -> {args.hidden} tanh -> 1, squared error; Adam lr {args.lr}, "
          f"batch {args.batch_size}, truncated BPTT over {args.bptt} steps, {args.epochs} epochs")

    model = RNN(1, args.hidden, 1, nonlinearity="tanh", loss="mse", dtype="float32", seed=args.seed)
    history = model.fit(X, Y, epochs=args.epochs, batch_size=args.batch_size, bptt=args.bptt,
                        optimizer=Adam(lr=args.lr), validation_data=(Xt, Yt), seed=args.seed,
                        progress=args.progress)
    if not history["epoch"]:
        sys.exit("interrupted (Ctrl-C) before the first epoch completed")
    if history.interrupted:
        print(f"interrupted (Ctrl-C): keeping the model after {len(history['epoch'])} epochs")
    losses = history["loss"]
    shown = losses[::max(1, len(losses) // 8)]
    print("training loss by epoch: " + " ".join(f"{v:.4f}" for v in shown)
          + (f" ... {losses[-1]:.4f}" if shown[-1] is not losses[-1] else ""))

    t0 = time.perf_counter()
    pred, _ = model.forward(Xt)                                   # (T, N, 1), whole sequences
    t_pred = time.perf_counter() - t0
    scored = slice(WARMUP, None)
    mse_rnn = float(np.mean((pred[scored] - Yt[scored]) ** 2))
    mse_last = float(np.mean((Xt[scored] - Yt[scored]) ** 2))      # x̂(t+1) = x(t)
    mse_floor = float(np.mean((clean_test[1:, :, None][scored] - Yt[scored]) ** 2))
    print(f"\ntest mean squared error of the next value (after {WARMUP} warm-up steps):")
    print(f"    RNN                    {mse_rnn:.5f}")
    print(f"    last-value baseline    {mse_last:.5f}   ({mse_last / mse_rnn:.1f}x the RNN's)")
    print(f"    noise floor            {mse_floor:.5f}   (knowing the clean signal)")
    t_train, t_val = sum(history["time"]), sum(history["val_time"])
    print(f"\ntime: data {1e3 * t_data:.1f} ms, training {t_train:.2f} s "
          f"({t_train / len(history['epoch']) * 1e3:.0f} ms per epoch), "
          f"validation {t_val:.2f} s, prediction on the test set {1e3 * t_pred:.1f} ms")
    if args.plot:
        save_plot(args.plot, history, mse_last, mse_floor)
        print(f"loss curves saved to {args.plot}")
    return dict(history=history, mse_rnn=mse_rnn, mse_last=mse_last, mse_floor=mse_floor)


def save_plot(path, history, baseline, floor):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(history["epoch"], history["loss"], label="RNN, training")
    ax.plot(history["epoch"], history["val_loss"], label="RNN, test")
    ax.axhline(baseline, color="gray", ls="--", label="last-value baseline, test")
    ax.axhline(floor, color="gray", ls=":", label="noise floor")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean squared error")
    ax.set_yscale("log")
    ax.set_title("next-value prediction, noisy sum of sines")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
