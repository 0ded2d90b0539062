"""Training cases shared by the MPI scripts (run under mpiexec) and the tests
that check them against one process (tests/training/test_distributed.py).

Every case builds its model and data from fixed seeds, so every rank and the
test process hold the same arrays. All in float64, with shard sizes that are
uneven on 2 ranks and, in the MLP case, a last batch of one sample that leaves
rank 0 with nothing (its empty part must still join the step).
"""
import numpy as np

import fastbp
from fastbp.callbacks import EarlyStopping, StepLR
from fastbp.optim import SGD, Adam
from fastbp.training import shuffle_order


def mlp():
    rng = np.random.default_rng(11)
    X, y = rng.standard_normal((103, 6)), rng.integers(0, 4, 103)      # 6 batches of 17, then 1
    val = rng.standard_normal((29, 6)), rng.integers(0, 4, 29)
    model = fastbp.MLP([6, 16, 12, 4], activation="tanh", l2=1e-3, dtype="float64", seed=5)
    return model, X, y, dict(epochs=3, batch_size=17, optimizer=Adam(lr=1e-2), clip_norm=1.0,
                             seed=7, validation_data=val)


def rnn():
    rng = np.random.default_rng(12)
    X, Y = rng.standard_normal((12, 11, 3)), rng.standard_normal((12, 11, 2))
    val = rng.standard_normal((12, 7, 3)), rng.standard_normal((12, 7, 2))
    model = fastbp.RNN(3, 8, 2, loss="mse", l2=1e-3, dtype="float64", seed=6)
    return model, X, Y, dict(epochs=3, batch_size=4, bptt=5, optimizer=SGD(lr=0.05, momentum=0.9),
                             seed=8, validation_data=val)


def lstm():
    rng = np.random.default_rng(13)
    X, Y = rng.standard_normal((15, 13, 4)), rng.integers(0, 5, (15, 13))
    val = rng.standard_normal((15, 5, 4)), rng.integers(0, 5, (15, 5))
    model = fastbp.LSTM(4, 9, 5, peepholes=True, loss="cross_entropy", dtype="float64", seed=7)
    return model, X, Y, dict(epochs=3, batch_size=5, bptt=6, optimizer=Adam(lr=1e-2), clip_norm=5.0,
                             seed=9, validation_data=val)


def lstm_many_to_one():
    rng = np.random.default_rng(14)
    X, Y = rng.standard_normal((9, 10, 3)), rng.standard_normal((10, 2))
    model = fastbp.LSTM(3, 7, 2, loss="mse", many_to_one=True, dtype="float64", seed=8)
    return model, X, Y, dict(epochs=2, batch_size=3, bptt=4, optimizer=Adam(lr=1e-2), shuffle=False)


def rnn_lengths():
    """Variable lengths (some batches end before their last chunk, and a rank's
    part before the other's) and resets."""
    rng = np.random.default_rng(15)
    X, Y = rng.standard_normal((12, 11, 3)), rng.standard_normal((12, 11, 2))
    lengths = np.array([12, 3, 2, 5, 1, 0, 4, 9, 2, 3, 4])
    reset = rng.random((12, 11)) < 0.15
    val = rng.standard_normal((12, 5, 3)), rng.standard_normal((12, 5, 2)), np.array([2, 12, 0, 7, 5])
    model = fastbp.RNN(3, 8, 2, loss="mse", dtype="float64", seed=9)
    return model, X, Y, dict(epochs=3, batch_size=4, bptt=4, lengths=lengths, reset=reset,
                             optimizer=Adam(lr=1e-2), seed=10, validation_data=val)


def lstm_tbptt():
    """BPTT(k1, k2) with a burn-in (fastbp.tbptt.Stream on each rank's part)."""
    rng = np.random.default_rng(16)
    X, Y = rng.standard_normal((14, 9, 3)), rng.integers(0, 4, (14, 9))
    model = fastbp.LSTM(3, 6, 4, loss="cross_entropy", dtype="float64", seed=10)
    return model, X, Y, dict(epochs=2, batch_size=4, bptt=(3, 6), burn_in=2,
                             optimizer=Adam(lr=1e-2), seed=11)


def gru():
    """A stacked bidirectional GRU read out from its final states."""
    rng = np.random.default_rng(17)
    X, Y = rng.standard_normal((8, 11, 3)), rng.integers(0, 3, 11)
    val = rng.standard_normal((8, 5, 3)), rng.integers(0, 3, 5)
    model = fastbp.GRU(3, 5, 3, loss="cross_entropy", many_to_one=True, num_layers=2,
                       bidirectional=True, l2=1e-3, dtype="float64", seed=11)
    return model, X, Y, dict(epochs=3, batch_size=4, optimizer=Adam(lr=1e-2), clip_norm=2.0,
                             seed=12, validation_data=val)


def gru_lengths():
    """The GRU with variable lengths and resets, in chunks of truncated BPTT."""
    rng = np.random.default_rng(18)
    X, Y = rng.standard_normal((10, 9, 3)), rng.standard_normal((10, 9, 2))
    lengths = np.array([10, 2, 0, 7, 4, 10, 1, 5, 3])
    reset = rng.random((10, 9)) < 0.2
    val = rng.standard_normal((10, 4, 3)), rng.standard_normal((10, 4, 2)), np.array([3, 10, 6, 1])
    model = fastbp.GRU(3, 6, 2, loss="mse", dtype="float64", seed=13)
    return model, X, Y, dict(epochs=3, batch_size=4, bptt=3, lengths=lengths, reset=reset,
                             optimizer=SGD(lr=0.05, momentum=0.9), seed=14, validation_data=val)


def gru_tbptt():
    """BPTT(k1, k2) with a burn-in for the GRU."""
    rng = np.random.default_rng(19)
    X, Y = rng.standard_normal((13, 7, 3)), rng.integers(0, 4, (13, 7))
    model = fastbp.GRU(3, 5, 4, loss="cross_entropy", dtype="float64", seed=15)
    return model, X, Y, dict(epochs=2, batch_size=3, bptt=(2, 5), burn_in=3,
                             optimizer=Adam(lr=1e-2), seed=16)


def mlp_callbacks():
    """validation_split, a schedule and early stopping on random labels (it stops, and
    restores the best epoch's parameters, on every rank at the same epoch)."""
    rng = np.random.default_rng(17)
    X, y = rng.standard_normal((60, 5)), rng.integers(0, 3, 60)
    model = fastbp.MLP([5, 24, 3], dtype="float64", seed=12)
    return model, X, y, dict(epochs=12, batch_size=9, optimizer=Adam(lr=3e-2), seed=12,
                             validation_split=0.3,
                             callbacks=[StepLR(2, 0.5), EarlyStopping(patience=1)])


CASES = {"mlp": mlp, "rnn": rnn, "lstm": lstm, "lstm_many_to_one": lstm_many_to_one,
         "rnn_lengths": rnn_lengths, "lstm_tbptt": lstm_tbptt, "gru": gru,
         "gru_lengths": gru_lengths, "gru_tbptt": gru_tbptt, "mlp_callbacks": mlp_callbacks}


def expected_steps(name):
    """Optimizer steps (one gradient Allreduce each) that fit makes in a case:
    those of the same fit in one process."""
    model, X, y, kw = CASES[name]()
    return len(model.fit(X, y, progress=False, **kw).step_loss)


def epochs_run(name):
    """The epochs a case trains (fewer than ``epochs`` when a callback stops it)."""
    model, X, y, kw = CASES[name]()
    return len(model.fit(X, y, progress=False, **kw)["epoch"])


class Recorder:
    """Array-like over an array: records the samples every read touches (along
    ``axis``) and refuses conversion of the whole array, so a fit that reads
    anything but batches of rows fails loudly."""

    def __init__(self, array, axis):
        self._array, self.axis = array, axis
        self.shape, self.ndim, self.dtype = array.shape, array.ndim, array.dtype
        self.reads = []

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        parts = key if isinstance(key, tuple) else (key,)
        index = parts[self.axis] if len(parts) > self.axis else slice(None)
        self.reads.append(np.arange(self.shape[self.axis])[index])
        return self._array[key]

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole array was converted: fit must read batches of rows only")


def local_parts(n, batch_size, epochs, seed, shuffle, rank, size):
    """The sample indices rank ``rank`` of ``size`` must read, batch by batch."""
    parts = []
    for epoch in range(1, epochs + 1):
        order = shuffle_order(n, seed, epoch) if shuffle else np.arange(n)
        for start in range(0, n, batch_size):
            batch = order[start:start + batch_size]
            m = len(batch)
            part = batch[rank * m // size:(rank + 1) * m // size]
            if len(part):
                parts.append(part)
    return parts
