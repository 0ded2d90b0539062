"""A character-level LSTM language model, trained on Python's own source code.

The text is already on every machine with Python: modules of the standard
library (or any files given with --text). The model reads one character at a
time (one-hot) and predicts the next; it is trained by truncated
backpropagation through time over parallel streams of the text, the state
carried from one chunk to the next, as in classic RNN language models:

    python examples/char_lstm.py               # [--chars 200000] [--epochs 10] [--plot loss.png]

It prints the loss (nats and bits per character) falling epoch by epoch, text
sampled from the model before and after training, and where the time went.
"""
import argparse
import os
import sys
import time

import numpy as np

from fastbp.lstm import LSTM
from fastbp.optim import Adam

# pure-Python standard-library modules, read in this order until --chars is reached
STDLIB_MODULES = ["textwrap", "string", "fnmatch", "glob", "shlex", "argparse", "calendar",
                  "difflib", "fractions", "heapq", "bisect", "configparser", "dataclasses",
                  "inspect", "tokenize", "pprint", "statistics", "random"]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--text", nargs="+", metavar="FILE",
                   help="text files to train on (default: Python standard-library sources)")
    p.add_argument("--chars", type=int, default=200_000, help="characters of text to use (default 200000)")
    p.add_argument("--hidden", type=int, default=128, help="LSTM cells (default 128)")
    p.add_argument("--streams", type=int, default=32,
                   help="parallel streams of text, the batch size (default 32)")
    p.add_argument("--bptt", type=int, default=64, help="truncated BPTT chunk length (default 64)")
    p.add_argument("--k2", type=int, metavar="K2",
                   help="BPTT(k1, k2): every --bptt steps, backpropagate K2 >= --bptt steps "
                        "(fastbp.tbptt; default: K2 = --bptt, plain chunks)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate (default 3e-3)")
    p.add_argument("--sample", type=int, default=300, help="characters to sample (default 300)")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a tiny run, for the tests")
    p.add_argument("--plot", metavar="FILE.png", help="save the loss curves as a PNG")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = p.parse_args(argv)
    if args.quick:
        args.chars, args.hidden, args.streams = min(args.chars, 4000), min(args.hidden, 24), 8
        args.bptt, args.epochs, args.sample = min(args.bptt, 20), min(args.epochs, 2), min(args.sample, 80)
    return args


def read_corpus(files, chars):
    """Text from the given files, or from standard-library sources, up to `chars` characters."""
    if files is None:
        folder = os.path.dirname(os.__file__)
        files = [os.path.join(folder, name + ".py") for name in STDLIB_MODULES]
        files = [f for f in files if os.path.exists(f)]
        if not files:   # a Python installed without its sources: fastbp's own will do
            import fastbp
            folder = os.path.dirname(fastbp.__file__)
            files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".py"))
    parts, total, used = [], 0, []
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            parts.append(f.read())
        used.append(os.path.basename(path))
        total += len(parts[-1])
        if total >= chars:
            break
    return "".join(parts)[:chars], used


def streams(ids, n_streams):
    """Cut a long sequence of ids into n parallel streams: (T, n) inputs and next-char targets."""
    T = (len(ids) - 1) // n_streams
    inputs = ids[:T * n_streams].reshape(n_streams, T).T           # stream s reads ids[s·T : (s+1)·T]
    targets = ids[1:T * n_streams + 1].reshape(n_streams, T).T
    return np.ascontiguousarray(inputs), np.ascontiguousarray(targets)


def one_hot(ids, V):
    X = np.zeros(ids.shape + (V,), dtype=np.float32)
    np.put_along_axis(X, ids[..., None], 1.0, axis=-1)
    return X


def sample(model, vocab, prime, n, temperature, rng):
    """Feed `prime`, then draw n characters one at a time, carrying (h, c)."""
    V = len(vocab)
    index = {ch: i for i, ch in enumerate(vocab)}
    ids = np.array([index[ch] for ch in prime if ch in index], dtype=np.int64)
    out, (h, c) = model.forward(one_hot(ids[:, None], V))         # (T, 1, V) softmax inputs
    logits = out[-1, 0]
    text = []
    for _ in range(n):
        z = logits / temperature
        p = np.exp(z - z.max())
        nxt = rng.choice(V, p=p / p.sum())
        text.append(vocab[nxt])
        out, (h, c) = model.forward(one_hot(np.array([[nxt]]), V), h, c)
        logits = out[0, 0]
    return prime + "".join(text)


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    text, used = read_corpus(args.text, args.chars)
    text = text.encode("ascii", "ignore").decode("ascii")      # a small, printable vocabulary
    vocab = sorted(set(text))
    V = len(vocab)
    index = {ch: i for i, ch in enumerate(vocab)}
    ids = np.array([index[ch] for ch in text], dtype=np.int64)
    split = int(0.9 * len(ids))
    train_in, train_out = streams(ids[:split], args.streams)
    val_in, val_out = streams(ids[split:], args.streams)
    X, Xv = one_hot(train_in, V), one_hot(val_in, V)
    t_data = time.perf_counter() - t0
    print(f"text: {len(text):,} characters of {', '.join(used[:4])}{', ...' if len(used) > 4 else ''} "
          f"({len(used)} files), {V} distinct characters")
    print(f"data: {args.streams} streams x {X.shape[0]} steps for training, "
          f"{Xv.shape[1]} x {Xv.shape[0]} for validation (prepared in {t_data:.2f} s)")
    print(f"model: LSTM {V} -> {args.hidden} -> {V}, softmax cross-entropy; Adam lr {args.lr}, "
          f"truncated BPTT({args.bptt}, {args.k2 or args.bptt}), gradient norm clipped at 5")

    model = LSTM(V, args.hidden, V, loss="cross_entropy", dtype="float32", seed=args.seed)
    t0 = time.perf_counter()
    before = sample(model, vocab, "def ", args.sample, args.temperature, rng)
    t_sample = time.perf_counter() - t0
    loss0, _ = model.evaluate(Xv, val_out, bptt=args.bptt)
    print(f"\nuntrained validation loss {loss0:.3f} nats/char (uniform guessing: {np.log(V):.3f})")
    print("sampled before training:\n" + indent(before))

    bptt = (args.bptt, args.k2) if args.k2 else args.bptt
    history = model.fit(X, train_out, epochs=args.epochs, batch_size=args.streams, bptt=bptt,
                        optimizer=Adam(lr=args.lr), clip_norm=5.0, shuffle=False,
                        validation_data=(Xv, val_out), progress=not args.no_progress)
    if not history["epoch"]:
        sys.exit("interrupted (Ctrl-C) before the first epoch completed")
    if history.interrupted:
        print(f"interrupted (Ctrl-C): keeping the model after {len(history['epoch'])} epochs")
    print()
    for e, loss, vloss, vacc in zip(history["epoch"], history["loss"], history["val_loss"],
                                    history["val_accuracy"]):
        print(f"epoch {e}: training loss {loss:.3f}, validation loss {vloss:.3f} nats/char "
              f"({vloss / np.log(2):.2f} bits), next-character accuracy {vacc:.1%}")

    t0 = time.perf_counter()
    after = sample(model, vocab, "def ", args.sample, args.temperature, rng)
    t_sample += time.perf_counter() - t0
    print("sampled after training:\n" + indent(after))

    t_train, t_val = sum(history["time"]), sum(history["val_time"])
    steps = len(history["epoch"]) * -(-X.shape[0] // args.bptt)
    print(f"\ntime: data {t_data:.2f} s, training {t_train:.2f} s ({steps} steps of "
          f"{args.streams}x{args.bptt} characters, {1e3 * t_train / steps:.1f} ms each, "
          f"{X.shape[0] * X.shape[1] * len(history['epoch']) / t_train:,.0f} characters/s), "
          f"validation {t_val:.2f} s, sampling {t_sample:.2f} s")
    if args.plot:
        save_plot(args.plot, history, loss0)
        print(f"loss curves saved to {args.plot}")
    return dict(history=history, loss_before=loss0, before=before, after=after, vocab=V)


def indent(text):
    return "\n".join("    | " + line for line in text.splitlines())


def save_plot(path, history, loss_before):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = np.arange(1, len(history.step_loss) + 1)
    per_epoch = len(steps) // len(history["epoch"])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, history.step_loss, lw=0.8, alpha=0.8, label="training (each step)")
    ax.plot([0] + [e * per_epoch for e in history["epoch"]], [loss_before] + history["val_loss"],
            "o-", label="validation (after each epoch)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats per character)")
    ax.set_title("character-level LSTM on Python source")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
