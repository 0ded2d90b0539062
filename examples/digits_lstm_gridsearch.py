"""Handwritten digits read row by row by an LSTM, tuned by GridSearchCV, next to scikit-learn's MLP.

scikit-learn's bundled 8x8 digits (1,797 images, no download) become
sequences of 8 rows: T = 8 steps of 8 pixels each. ``fastbp.sklearn.
LSTMClassifier`` (the last step's state read out into 10 classes) is tuned by
scikit-learn's ``GridSearchCV`` (3-fold) over the hidden size and the learning
rate, refitted on the whole training set and scored on the test set, beside
scikit-learn's ``MLPClassifier`` on the flat 64-pixel images:

    pip install "fastbp[sklearn]"
    python examples/digits_lstm_gridsearch.py        # [--quick] [--epochs 30]
"""
import argparse
import sys
import time
import warnings

import numpy as np

try:
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.neural_network import MLPClassifier
except ImportError:
    sys.exit('this example needs scikit-learn: pip install "fastbp[sklearn]"')

from fastbp.sklearn import LSTMClassifier


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=30, help="max_iter of every fit (default 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a small grid and few epochs (tests)")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = min(args.epochs, 8)
    return args


def main(argv=None):
    args = parse_args(argv)
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)          # (1797, 8, 8) in [0, 1]
    X_train, X_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, stratify=digits.target, random_state=args.seed)
    print(f"digits: {len(X_train)} training and {len(X_test)} test images as sequences of "
          f"8 rows (T=8 steps, 8 pixels per step)")

    grid = ({"hidden_size": [32], "learning_rate_init": [0.01]} if args.quick else
            {"hidden_size": [32, 64], "learning_rate_init": [0.003, 0.01]})
    lstm = LSTMClassifier(max_iter=args.epochs, batch_size=32, dtype="float32",
                          random_state=args.seed, n_iter_no_change=args.epochs)
    search = GridSearchCV(lstm, grid, cv=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        started = time.perf_counter()
        search.fit(X_train, y_train)            # (n, 8, 8): batch-first sequences
        lstm_time = time.perf_counter() - started
    lstm_acc = search.score(X_test, y_test)
    print(f"\nLSTMClassifier in GridSearchCV ({len(search.cv_results_['params'])} settings x 3 "
          f"folds + the refit, {args.epochs} epochs each):")
    for params, mean in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
        print(f"    {params}: cross-validated accuracy {mean:.4f}")
    print(f"    best {search.best_params_}; test accuracy {lstm_acc:.4f}; search time "
          f"{lstm_time:.2f} s")

    flat_train, flat_test = X_train.reshape(len(X_train), 64), X_test.reshape(len(X_test), 64)
    mlp = MLPClassifier(hidden_layer_sizes=(64,), batch_size=32, max_iter=args.epochs,
                        random_state=args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        started = time.perf_counter()
        mlp.fit(flat_train, y_train)
        mlp_time = time.perf_counter() - started
    mlp_acc = mlp.score(flat_test, y_test)
    print(f"\nscikit-learn MLPClassifier on the flat 64-pixel images (64 -> 64 relu -> 10, "
          f"{mlp.n_iter_} epochs): test accuracy {mlp_acc:.4f}, one fit {mlp_time:.2f} s")
    per_fit = lstm_time / (3 * len(search.cv_results_["params"]) + 1)
    print(f"one LSTM fit took {per_fit:.2f} s on average ({per_fit / mlp_time:.1f}x the MLP's)")
    return {"lstm": {"accuracy": lstm_acc, "time": lstm_time, "best": search.best_params_,
                     "search": search},
            "sklearn": {"accuracy": mlp_acc, "time": mlp_time}}


if __name__ == "__main__":
    main()
