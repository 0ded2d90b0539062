"""Scoring a model on data in batches, without changing it: the mean loss and the accuracy."""
from __future__ import annotations

from typing import Any, Optional, Tuple

from ..distributed import DataParallel
from .._validate import positive_int
from .protocol import Feed, Trainable


def evaluate(model: Trainable, feed: Feed, X: Any, y: Any, batch_size: int = 256,
             comm: Any = None) -> Tuple[float, Optional[float]]:
    """(loss, accuracy) of ``model`` (a :class:`~fastbp.training.Trainable`) on
    data, accuracy None for regressors; no parameter changes. ``feed`` (a
    :class:`~fastbp.training.Feed`) checks and batches the data. With ``comm``
    (as in :func:`fastbp.training.fit`) each rank scores its block of the samples."""
    dp = None if comm is None else DataParallel.of(model, comm)
    X, y = feed.prepare(X, y, "X", "y", lazy=dp is not None)
    feed.check_scored(X, "lengths", training=False)
    return score(model, feed, X, y, positive_int(batch_size, "batch_size"), dp)


def score(model, feed, X, y, batch_size, dp=None, names=("X", "y")):
    """(mean loss, accuracy or None) over prepared data, in batches, no update."""
    if dp is not None:
        return dp._evaluate(feed, X, y, batch_size, names)
    n = feed.n_samples(X)
    loss_sum, rows_sum, correct = 0.0, 0, 0
    for start in range(0, n, batch_size):
        Xb, yb = feed.take(X, y, slice(start, start + batch_size))
        batch_loss, rows, batch_correct = feed.score(Xb, yb)
        loss_sum += batch_loss
        rows_sum += rows
        if batch_correct is not None:
            correct += batch_correct
    return float(loss_sum / rows_sum), (correct / rows_sum if model.is_classifier() else None)
