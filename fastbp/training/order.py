"""The order in which fit visits the samples of each epoch (shuffle_order)."""
from __future__ import annotations

import numpy as np


def shuffle_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which ``fit`` visits n samples in epoch ``epoch`` (1, 2, ...)
    of a run seeded ``seed``: a permutation drawn from (seed, epoch) alone, so a
    resumed run draws what the uninterrupted one drew. Custom loops may use it
    too (or save their generator with :func:`fastbp.io.save_checkpoint`)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(epoch,))).permutation(n)
