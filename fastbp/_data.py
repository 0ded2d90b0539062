"""The training data as fit and the data-parallel trainer hold it.

A sequence data set travels as :class:`SeqData` (X with its lengths and
resets, which a batch slices together); :func:`in_memory` tells plain arrays
(validated at once) from memory-mapped or lazy ones (read batch by batch).
"""
from collections import namedtuple

import numpy as np


class SeqData(namedtuple("SeqData", "X lengths reset")):
    """A sequence data set for fit: X (T, N, I), lengths (N,) or None, reset
    (T, N) or None; a batch takes the same columns of all three."""


def unread(a):
    """``a`` itself when it can be indexed lazily (an ndarray, memory-mapped or
    not, or any object with shape, ndim, dtype and __getitem__), else np.asarray(a)."""
    if isinstance(a, np.ndarray) or all(hasattr(a, k) for k in ("shape", "ndim", "dtype",
                                                                 "__getitem__")):
        return a
    return np.asarray(a)


def in_memory(X, y):
    """Both plain in-memory ndarrays (not memory-mapped, not array-likes)? For
    sequence data, X's array (lengths and reset are always validated at once)."""
    X = X.X if isinstance(X, SeqData) else X
    return type(X) is np.ndarray and type(y) is np.ndarray
