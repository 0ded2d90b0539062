"""Handwritten digits with a fastbp MLP, next to scikit-learn's MLPClassifier.

The data is scikit-learn's bundled 8×8 digits (1,797 images, no download):

    pip install scikit-learn          # the optional extra this example needs
    python examples/digits_mlp.py     # [--hidden 64] [--epochs 30] [--plot loss.png]

Both libraries train the same network (64 → hidden → 10, relu, softmax output,
cross-entropy, no L2) with the same optimizer (Adam, same learning rate, batch
size and number of epochs) on the same split, and the script prints the test
accuracy and the time each took.
"""
import argparse
import sys
import time
import warnings

import numpy as np

from fastbp.mlp import MLP
from fastbp.optim import Adam


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, default=64, help="hidden units (default 64)")
    p.add_argument("--epochs", type=int, default=30, help="passes over the training set (default 30)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-sklearn", action="store_true", help="skip the MLPClassifier comparison")
    p.add_argument("--quick", action="store_true", help="a few epochs, for the tests")
    p.add_argument("--plot", metavar="FILE.png", help="save the loss curves as a PNG")
    p.add_argument("--progress", action="store_true", help="show fastbp's progress bar")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = min(args.epochs, 5)
    return args


def load_split(seed):
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        sys.exit("this example needs scikit-learn for its bundled digits: pip install scikit-learn")
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)      # pixel intensities 0..16 -> [0, 1]
    return train_test_split(X, digits.target, test_size=0.2, stratify=digits.target,
                            random_state=seed)


def run_sklearn(args, X_train, X_test, y_train, y_test):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(args.hidden,), activation="relu", solver="adam",
                        alpha=0.0, batch_size=args.batch_size, learning_rate_init=args.lr,
                        max_iter=args.epochs, shuffle=True, random_state=args.seed,
                        tol=0.0, n_iter_no_change=args.epochs + 1)   # exactly `epochs` epochs
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X_train, y_train)
    seconds = time.perf_counter() - started
    return dict(seconds=seconds, accuracy=float(clf.score(X_test, y_test)), loss_curve=clf.loss_curve_)


def main(argv=None):
    args = parse_args(argv)
    t0 = time.perf_counter()
    X_train, X_test, y_train, y_test = load_split(args.seed)
    t_data = time.perf_counter() - t0
    print(f"digits: {len(X_train)} training and {len(X_test)} test images of 8x8 pixels, "
          f"10 classes (importing scikit-learn and loading: {t_data:.2f} s)")
    print(f"network: 64 -> {args.hidden} relu -> 10 softmax, cross-entropy; Adam lr {args.lr}, "
          f"batch {args.batch_size}, {args.epochs} epochs")

    net = MLP([64, args.hidden, 10], activation="relu", output="softmax", loss="cross_entropy",
              dtype="float32", seed=args.seed)
    history = net.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                      optimizer=Adam(lr=args.lr), validation_data=(X_test, y_test),
                      seed=args.seed, progress=args.progress)
    if not history["epoch"]:
        sys.exit("interrupted (Ctrl-C) before the first epoch completed")
    if history.interrupted:
        print(f"interrupted (Ctrl-C): keeping the model after {len(history['epoch'])} epochs")
    t_fit, t_val = sum(history["time"]), sum(history["val_time"])
    t0 = time.perf_counter()
    accuracy = float(np.mean(net.predict(X_test) == y_test))
    t_predict = time.perf_counter() - t0
    print(f"fastbp MLP : test accuracy {accuracy:.4f}, training {t_fit:.2f} s, "
          f"test-set scoring after each epoch {t_val:.2f} s, prediction {1e3 * t_predict:.1f} ms")
    print(f"             loss by epoch: {history['loss'][0]:.4f} -> {history['loss'][-1]:.4f}")

    result = dict(fastbp=dict(seconds=t_fit, accuracy=accuracy, history=history))
    if not args.no_sklearn:
        sk = run_sklearn(args, X_train, X_test, y_train, y_test)
        result["sklearn"] = sk
        print(f"sklearn MLPClassifier: test accuracy {sk['accuracy']:.4f}, training {sk['seconds']:.2f} s")
        print(f"training time ratio sklearn/fastbp: {sk['seconds'] / t_fit:.1f}x")
    if args.plot:
        save_plot(args.plot, history, result.get("sklearn"), args.hidden)
        print(f"loss curves saved to {args.plot}")
    return result


def save_plot(path, history, sk, hidden):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(history["epoch"], history["loss"], label="fastbp training loss")
    ax.plot(history["epoch"], history["val_loss"], label="fastbp test loss")
    if sk is not None:
        ax.plot(range(1, len(sk["loss_curve"]) + 1), sk["loss_curve"], "--",
                label="scikit-learn training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy")
    ax.set_yscale("log")
    ax.set_title(f"8x8 digits, MLP 64-{hidden}-10")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
