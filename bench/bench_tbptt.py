"""Benchmark: training a character LSTM by truncated BPTT(k1, k2), fastbp
against PyTorch, tokens per second, in one process (issue #10).

The model and data are examples/char_lstm.py's: one-hot characters of Python
standard-library source, LSTM V -> H -> V, softmax cross-entropy, Adam, B
parallel streams, float32. Every k1 characters, one optimizer step on those
k1 steps' losses backpropagated k2 steps back.

- fastbp: ``fastbp.tbptt.Stream``: each step is computed forward once; the
  last k2 steps' activations stay in a buffer, and each update runs one
  compiled backward over the window.
- PyTorch (what its users write, since autograd cannot keep a graph for
  overlapping windows): keep the states, and every k1 steps re-run the
  forward over the last k2 steps from the detached state at t − k2, then
  backward and step. Forward work: k2 per k1 advanced.

    python bench/bench_tbptt.py                     # k1=25 k2=50 H=128 B=32
    python bench/bench_tbptt.py --k1 25 --k2 50 --threads 1 --updates 60

Reported: median time per update over rounds alternating the two, tokens per
second (k1·B / time), and the ratio.
"""
import argparse
import os
import sys
import time

import numpy as np

from _which_fastbp import ROOT  # noqa: E402  (bench/: a built tree, else the installed fastbp)
sys.path.insert(0, os.path.join(ROOT, "examples"))

import char_lstm  # noqa: E402  (examples/char_lstm.py: corpus, streams, one-hot)
from fastbp.lstm import LSTM  # noqa: E402
from fastbp.optim import Adam  # noqa: E402
from fastbp.tbptt import Stream  # noqa: E402


def fastbp_trainer(X, Y, V, H, k1, k2, seed):
    model = LSTM(V, H, V, loss="cross_entropy", dtype="float32", seed=seed)
    stream = Stream(model, k1, k2, batch=X.shape[1])
    opt = Adam(lr=3e-3)
    params = list(model.params.values())
    pos = [0]

    def update():
        t = pos[0]
        if t + k1 > X.shape[0]:
            stream.reset()
            t = 0
        loss, grads = stream.step(X[t:t + k1], Y[t:t + k1])
        opt.step(params, list(grads.values()))
        pos[0] = t + k1
        return loss
    return update, model


def torch_trainer(torch, X, Y, V, H, k1, k2, model):
    """The same model and weights; manual detach and recomputation of the window."""
    lstm = torch.nn.LSTM(V, H)
    readout = torch.nn.Linear(H, V)
    with torch.no_grad():
        for name, value in model.state_dict().items():
            target = readout if name.startswith("readout.") else lstm
            getattr(target, name.split(".")[-1]).copy_(torch.from_numpy(value))
    params = list(lstm.parameters()) + list(readout.parameters())
    opt = torch.optim.Adam(params, lr=3e-3)
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    B = X.shape[1]
    states = {}          # step -> detached (h, c) before that step
    pos = [0]

    def update():
        t = pos[0]
        if t + k1 > X.shape[0] or t == 0:
            t = 0
            states.clear()
            states[0] = (torch.zeros(1, B, H), torch.zeros(1, B, H))
        start = max(0, t + k1 - k2)
        opt.zero_grad()
        out, (h, c) = lstm(Xt[start:t + k1], states[start])      # recompute the window
        logits = readout(out[t - start:])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V),
                                                 Yt[t:t + k1].reshape(-1))
        loss.backward()
        opt.step()
        with torch.no_grad():   # the state at t + k1 (and keep what later windows start from)
            states[t + k1] = (h.detach(), c.detach())
            for s in [s for s in states if s < t + k1 - k2]:
                del states[s]
        # a later window starts at t' + k1 − k2, which must be a stored step: with k2 a
        # multiple of k1 every window start is a chunk boundary
        pos[0] = t + k1
        return loss.item()
    return update


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k1", type=int, default=25)
    ap.add_argument("--k2", type=int, default=50)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--streams", type=int, default=32)
    ap.add_argument("--chars", type=int, default=120_000)
    ap.add_argument("--updates", type=int, default=40, help="timed updates per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, help="BLAS and torch threads")
    args = ap.parse_args(argv)
    if args.k2 % args.k1:
        ap.error("--k2 must be a multiple of --k1 (PyTorch's recomputation restarts from "
                 "stored chunk boundaries)")
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
        try:
            from threadpoolctl import threadpool_limits
            threadpool_limits(args.threads)
        except ImportError:
            print("threadpoolctl not installed: BLAS threads not limited")

    text, _ = char_lstm.read_corpus(None, args.chars)
    text = text.encode("ascii", "ignore").decode("ascii")
    vocab = sorted(set(text))
    V = len(vocab)
    index = {ch: i for i, ch in enumerate(vocab)}
    ids = np.array([index[ch] for ch in text], dtype=np.int64)
    inputs, targets = char_lstm.streams(ids, args.streams)
    X = char_lstm.one_hot(inputs, V)
    fast, model = fastbp_trainer(X, targets, V, args.hidden, args.k1, args.k2, 0)
    slow = torch_trainer(torch, X, targets, V, args.hidden, args.k1, args.k2, model)
    for f in (fast, slow):          # warm-up
        for _ in range(3):
            f()
    times = {"fastbp": [], "torch": []}
    for _ in range(args.rounds):
        for name, f in (("fastbp", fast), ("torch", slow)):
            t0 = time.perf_counter()
            for _ in range(args.updates):
                f()
            times[name].append((time.perf_counter() - t0) / args.updates)
    tokens = args.k1 * args.streams
    print(f"char LSTM V={V} H={args.hidden} B={args.streams} float32, BPTT(k1={args.k1}, "
          f"k2={args.k2}), Adam; threads: {args.threads or 'default'}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}")
    med = {k: float(np.median(v)) for k, v in times.items()}
    for name in ("fastbp", "torch"):
        note = "" if name == "fastbp" else "  (re-runs the k2-step window forward each update)"
        print(f"  {name:7} {med[name] * 1e3:8.2f} ms/update  {tokens / med[name]:10,.0f} tokens/s"
              f"  (min {min(times[name]) * 1e3:.2f}, max {max(times[name]) * 1e3:.2f}){note}")
    print(f"  fastbp / torch throughput: {med['torch'] / med['fastbp']:.2f}x "
          f"(median of {args.rounds} rounds of {args.updates} updates, alternating)")


if __name__ == "__main__":
    main()
