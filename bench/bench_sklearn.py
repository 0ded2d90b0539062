"""fastbp.sklearn.MLPClassifier against scikit-learn's MLPClassifier on real data, at equal accuracy.

The data is scikit-learn's bundled 8x8 digits (1,797 images, 64 pixels, no
download), split 75/25 (stratified). Both estimators train the same network
(64 -> hidden -> 10, relu, softmax cross-entropy, Adam with the same learning
rate, batch size and alpha) one epoch at a time with ``partial_fit``; after
every epoch (untimed) the test accuracy is scored. Reported per library and
seed: the training time until the test accuracy first reaches ``--target``,
the epochs that took, and the time and accuracy of ``--epochs`` epochs.

    python bench/bench_sklearn.py [--target 0.97] [--epochs 40] [--hidden 100] [--seeds 5]

Run from a clone against the installed package (or a tree built in place).
"""
import argparse
import os
import platform
import statistics
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _which_fastbp  # noqa: E402,F401  (the fastbp being measured: installed or built in place)

import numpy as np  # noqa: E402

try:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier as SkMLP
except ImportError:
    sys.exit('this benchmark needs scikit-learn: pip install "fastbp[sklearn]"')

from fastbp.sklearn import MLPClassifier as FbpMLP  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", type=float, default=0.97, help="test accuracy to reach")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--hidden", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--alpha", type=float, default=1e-4)
    p.add_argument("--seeds", type=int, default=5)
    return p.parse_args(argv)


def run(make, X, y, Xt, yt, classes, epochs, target):
    """(seconds to reach target or None, epochs to target, seconds for all epochs,
    final accuracy) training epoch by epoch with partial_fit."""
    est = make()
    spent, reached, reached_epoch = 0.0, None, None
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        est.partial_fit(X, y, classes=classes)
        spent += time.perf_counter() - started
        acc = est.score(Xt, yt)
        if reached is None and acc >= target:
            reached, reached_epoch = spent, epoch
    return reached, reached_epoch, spent, acc


def main(argv=None):
    args = parse_args(argv)
    digits = load_digits()
    X = digits.data / 16.0
    X, Xt, y, yt = train_test_split(X, digits.target, test_size=0.25, stratify=digits.target,
                                    random_state=0)
    classes = np.arange(10)
    common = dict(hidden_layer_sizes=(args.hidden,), activation="relu", solver="adam",
                  alpha=args.alpha, batch_size=args.batch_size, learning_rate_init=args.lr,
                  shuffle=True)
    libraries = {
        "scikit-learn": lambda seed: SkMLP(random_state=seed, **common),
        "fastbp float64": lambda seed: FbpMLP(random_state=seed, dtype="float64", **common),
        "fastbp float32": lambda seed: FbpMLP(random_state=seed, dtype="float32", **common),
    }
    print(f"digits: {len(X)} training and {len(Xt)} test images of 64 pixels, 10 classes")
    print(f"network: 64 -> {args.hidden} relu -> 10 softmax; Adam lr {args.lr}, batch "
          f"{args.batch_size}, alpha {args.alpha}; {args.seeds} seeds; target test accuracy "
          f"{args.target}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, cpus {os.cpu_count()}")
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in range(args.seeds):
            for name, make in libraries.items():      # interleaved: the same machine state
                results.setdefault(name, []).append(
                    run(lambda: make(seed), X, y, Xt, yt, classes, args.epochs, args.target))
    print(f"\n{'library':16s} {'time to target':>15s} {'epochs':>7s} {'reached':>8s} "
          f"{'time ' + str(args.epochs) + ' epochs':>16s} {'final acc':>10s}")
    summary = {}
    for name, rows in results.items():
        to_target = [r[0] for r in rows if r[0] is not None]
        epochs = [r[1] for r in rows if r[1] is not None]
        whole = statistics.median(r[2] for r in rows)
        acc = statistics.median(r[3] for r in rows)
        median_target = statistics.median(to_target) if to_target else float("nan")
        summary[name] = (median_target, whole)
        print(f"{name:16s} {median_target:14.3f}s {statistics.median(epochs) if epochs else '-':>7} "
              f"{len(to_target)}/{len(rows):<6d} {whole:15.3f}s {acc:10.4f}")
    base_target, base_whole = summary["scikit-learn"]
    for name in ("fastbp float64", "fastbp float32"):
        t, w = summary[name]
        print(f"speed-up of {name} over scikit-learn: {base_target / t:.2f}x to the target, "
              f"{base_whole / w:.2f}x for {args.epochs} epochs (medians)")
    return results


if __name__ == "__main__":
    main()
