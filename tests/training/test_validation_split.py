"""fit(validation_split=f): the last fraction of the samples (sequences with
their lengths) is the validation data, exactly as passing it apart; bad
fractions and conflicting arguments are refused by name."""
import numpy as np
import pytest

from fastbp.gru import GRU
from fastbp.mlp import MLP
from fastbp.optim import Adam


def blobs(n=50, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return rng.standard_normal((n, 4)) * 0.5 + np.eye(4)[y] * 2.0, y


def assert_same(a, b, ha, hb):
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p, q)
    for key in ("epoch", "loss", "val_loss", "val_accuracy"):
        assert ha[key] == hb[key], key


@pytest.mark.parametrize("fraction, held", [(0.2, 10), (0.25, 12), (0.001, 1), (0.999, 49)])
def test_mlp_validation_split_holds_out_the_last_samples(fraction, held):
    X, y = blobs()
    kw = dict(epochs=3, batch_size=8, seed=0, progress=False)
    a, b = MLP([4, 6, 3], seed=1), MLP([4, 6, 3], seed=1)
    ha = a.fit(X, y, validation_split=fraction, optimizer=Adam(0.01), **kw)
    hb = b.fit(X[:-held], y[:-held], validation_data=(X[-held:], y[-held:]),
               optimizer=Adam(0.01), **kw)
    assert_same(a, b, ha, hb)


def test_sequence_validation_split_takes_the_lengths_along():
    rng = np.random.default_rng(0)
    T, N = 7, 20
    X = rng.standard_normal((T, N, 3))
    lengths = rng.integers(1, T + 1, N)
    y = (X[0, :, 0] > 0).astype(int)
    kw = dict(epochs=2, batch_size=4, seed=0, progress=False)

    def model():
        return GRU(3, 4, 2, loss="cross_entropy", many_to_one=True, seed=2)
    a, b = model(), model()
    ha = a.fit(X, y, lengths=lengths, validation_split=0.25, optimizer=Adam(0.01), **kw)
    hb = b.fit(X[:, :15], y[:15], lengths=lengths[:15], optimizer=Adam(0.01),
               validation_data=(X[:, 15:], y[15:], lengths[15:]), **kw)
    assert_same(a, b, ha, hb)


def test_a_checkpoint_records_the_validation_split(tmp_path):
    X, y = blobs()
    path = tmp_path / "run.npz"
    MLP([4, 6, 3]).fit(X, y, epochs=1, validation_split=0.2, checkpoint=path, progress=False,
                       seed=0)
    with pytest.raises(ValueError, match="validation_split: 0.2 in the file, 0.3 here"):
        MLP([4, 6, 3]).fit(X, y, epochs=2, validation_split=0.3, checkpoint=path,
                           progress=False, seed=0)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(validation_split=0.0), ValueError, r"validation_split: expected a fraction in \(0, 1\)"),
    (dict(validation_split=1.0), ValueError, "validation_split: expected a fraction"),
    (dict(validation_split="0.2"), TypeError, "validation_split: expected a fraction"),
    (dict(validation_split=True), TypeError, "validation_split: expected a fraction"),
    (dict(validation_split=0.2, validation_data=blobs(5)), ValueError,
     "validation_split: give validation_data or validation_split, not both"),
])
def test_bad_validation_splits_are_named(kwargs, exc, match):
    X, y = blobs()
    with pytest.raises(exc, match=match):
        MLP([4, 6, 3]).fit(X, y, epochs=1, progress=False, **kwargs)


def test_a_split_of_a_single_sample_is_refused_by_name():
    X, y = blobs(1)
    with pytest.raises(ValueError, match="validation_split: X has 1 sample"):
        MLP([4, 6, 3]).fit(X, y, epochs=1, progress=False, validation_split=0.5)
