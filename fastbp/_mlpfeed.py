"""How fit feeds an MLP (its fastbp.training.Feed): samples are rows, one optimizer step per batch.

Everything here goes through the MLP's public methods: ``loss_and_grad`` for
a step, ``predict`` for the accuracy, ``params``, ``sizes`` and
``is_classifier`` for the checks.
"""
import numpy as np

from ._data import in_memory, unread
from ._validate import as_array, float_array, label_array, readable


class MLPFeed:
    """The rows of X (B, n_0) and their targets y: labels (B,) or rows (B, n_L)."""

    def __init__(self, model):
        self.model = model
        self.settings = {}

    def prepare(self, X, y, xname, yname, lazy=False):
        if lazy:
            return self._layout(X, y, xname, yname)
        return self._checked(X, y, xname, yname)

    def _checked(self, X, y, xname, yname):
        """Everything checked before the first step (values too: a bad label or a NaN
        target in the last batch is refused before any parameter changes)."""
        model = self.model
        W0 = model.params[0][0]
        X = float_array(X, xname, dtype=W0.dtype, ndim=2, shape=(None, W0.shape[1]))
        y = as_array(y, yname)
        if y.ndim == 0 or y.shape[0] != X.shape[0]:
            raise ValueError(f"{yname}: expected {X.shape[0]} targets (one per row of {xname}), "
                             f"got shape {y.shape}")
        if X.shape[0] == 0:
            raise ValueError(f"{xname}: expected at least one sample, got shape {X.shape}")
        n_out = model.sizes[-1]
        if model.is_classifier() and y.ndim == 1:
            y = label_array(y, yname, n_out, shape=(X.shape[0],))
        else:
            y = float_array(y, yname, dtype=W0.dtype, ndim=2, shape=(X.shape[0], n_out))
        return X, y

    def _layout(self, X, y, xname, yname):
        """_checked for in-memory arrays; for others (memory-mapped, array-likes)
        its checks from the shapes and the first sample only, X and y neither read
        nor converted: each rank validates its own rows, batch by batch."""
        # what NumPy cannot read (a ragged list) is refused by name
        X, y = unread(readable(X, xname)), unread(readable(y, yname))
        if in_memory(X, y) or X.ndim != 2 or X.shape[0] == 0:
            return self._checked(X, y, xname, yname)     # (a bad shape raises unread)
        if y.ndim == 0 or y.shape[0] != X.shape[0]:
            raise ValueError(f"{yname}: expected {X.shape[0]} targets (one per row of {xname}), "
                             f"got shape {y.shape}")
        self._checked(X[:1], y[:1], xname, yname)
        return X, y

    def check_scored(self, X, name, training):
        """Every row is scored: nothing to check."""

    def n_samples(self, X):
        return X.shape[0]

    def take(self, X, y, idx):
        return X[idx], y[idx]

    def steps_per_batch(self, X):
        return 1

    def batch_steps(self, X, batch):
        return 1

    def steps(self, X, y):
        loss, grads = self.model.loss_and_grad(X, y)
        yield loss, [g for pair in grads for g in pair], X.shape[0]

    def score(self, X, y):
        model = self.model
        loss, _ = model.loss_and_grad(X, y)
        correct = None
        if model.is_classifier():
            labels = y if y.ndim == 1 else np.argmax(y, axis=-1)
            correct = int(np.count_nonzero(model.predict(X) == labels))
        return loss * X.shape[0], X.shape[0], correct
