"""The sequence estimators' input: a ragged list runs through the kernels'
lengths exactly as the padded batch with lengths does (training and
prediction); 3-D arrays, 2-D arrays (one feature per step) and lists of
equal-length sequences agree; any length at prediction; the estimators learn
sequence tasks; bad input is refused by name."""
import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import ClassifierMixin  # noqa: E402

from fastbp.gru import GRU  # noqa: E402
from fastbp.lstm import LSTM  # noqa: E402
from fastbp.optim import Adam  # noqa: E402
from fastbp.rnn import RNN  # noqa: E402
from fastbp.sklearn import (GRUClassifier, GRURegressor, LSTMClassifier,  # noqa: E402
                            LSTMRegressor, RNNClassifier, RNNRegressor)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SEQUENCE_ESTIMATORS = [RNNClassifier, RNNRegressor, LSTMClassifier, LSTMRegressor,
                       GRUClassifier, GRURegressor]


def ragged(n=30, F=3, seed=0, low=2, high=9):
    """n sequences of 2..8 steps of F features; label: the sign of the sum of
    feature 0 (a value: that sum)."""
    rng = np.random.default_rng(seed)
    X = [rng.standard_normal((int(t), F)) for t in rng.integers(low, high, n)]
    s = np.array([x[:, 0].sum() for x in X])
    return X, (s > 0).astype(int), s


def padded(X, dtype=np.float64):
    """(time-major zero-padded (T, N, F), lengths (N,))."""
    lengths = np.array([len(x) for x in X])
    out = np.zeros((lengths.max(), len(X), X[0].shape[1]), dtype=dtype)
    for b, x in enumerate(X):
        out[:len(x), b] = x
    return out, lengths


def seeds(random_state):
    """The estimator draws the model's seed, then the shuffling seed, from
    random_state (fastbp.sklearn's fit)."""
    rs = np.random.RandomState(random_state)
    return int(rs.randint(np.iinfo(np.int32).max)), int(rs.randint(np.iinfo(np.int32).max))


@pytest.mark.parametrize("est_cls, model_cls, classifier", [
    (LSTMClassifier, LSTM, True), (GRURegressor, GRU, False), (RNNClassifier, RNN, True)])
def test_a_ragged_list_trains_and_predicts_as_the_padded_batch_with_lengths(est_cls, model_cls,
                                                                            classifier):
    X, labels, sums = ragged()
    y = labels if classifier else sums
    est = est_cls(hidden_size=6, max_iter=3, batch_size=8, learning_rate_init=0.01,
                  random_state=3, alpha=0.0).fit(X, y)
    init_seed, shuffle_seed = seeds(3)
    model = model_cls(3, 6, 2 if classifier else 1, loss="cross_entropy" if classifier else "mse",
                      many_to_one=True, dtype="float64", seed=init_seed, mse_form="half_mean")
    Xp, lengths = padded(X)
    for b, n in enumerate(lengths):       # garbage past each length: never read
        Xp[n:, b] = 1e6
    target = y if classifier else y[:, None]
    history = model.fit(Xp, target, lengths=lengths, epochs=3, batch_size=8, seed=shuffle_seed,
                        optimizer=Adam(0.01), progress=False, clip_norm=5.0)
    for (name, p), (_, q) in zip(est.model_.named_parameters(), model.named_parameters()):
        np.testing.assert_array_equal(p, q, err_msg=name)
    assert est.loss_curve_ == history["loss"]
    out = model.forward(Xp, lengths=lengths)[0]
    if classifier:
        z = np.exp(out - out.max(axis=1, keepdims=True))
        np.testing.assert_allclose(est.predict_proba(X), z / z.sum(axis=1, keepdims=True),
                                   rtol=1e-12)
        np.testing.assert_array_equal(est.predict(X), np.argmax(out, axis=1))
    else:
        np.testing.assert_allclose(est.predict(X), out[:, 0], rtol=1e-12)


@pytest.mark.parametrize("est_cls", SEQUENCE_ESTIMATORS)
def test_each_sequence_is_predicted_as_when_alone(est_cls):
    X, labels, sums = ragged(n=25)
    y = labels if issubclass(est_cls, ClassifierMixin) else sums
    est = est_cls(hidden_size=5, max_iter=2, random_state=0).fit(X, y)
    method = est.predict_proba if hasattr(est, "predict_proba") else est.predict
    together = method(X)
    alone = np.concatenate([method([x]) for x in X])
    np.testing.assert_allclose(together, alone, rtol=1e-10, atol=1e-12)


def test_3d_arrays_lists_of_equal_sequences_and_2d_arrays_agree():
    rng = np.random.default_rng(1)
    X3 = rng.standard_normal((20, 6, 1))
    y = (X3.sum(axis=(1, 2)) > 0).astype(int)
    kw = dict(hidden_size=4, max_iter=2, random_state=0)
    a = LSTMClassifier(**kw).fit(X3, y)
    b = LSTMClassifier(**kw).fit(list(X3), y)          # equal lengths: one 3-D batch
    c = LSTMClassifier(**kw).fit(X3[:, :, 0], y)       # (n_samples, T): one feature per step
    for other in (b, c):
        for (_, p), (_, q) in zip(a.model_.named_parameters(), other.model_.named_parameters()):
            np.testing.assert_array_equal(p, q)
    assert a.n_features_in_ == b.n_features_in_ == c.n_features_in_ == 1
    np.testing.assert_array_equal(a.predict_proba(X3), c.predict_proba(X3[:, :, 0]))


def test_sequences_of_any_length_are_predicted():
    X, y, _ = ragged(n=30, low=4, high=6)
    est = GRUClassifier(hidden_size=4, max_iter=2, random_state=0).fit(X, y)
    rng = np.random.default_rng(5)
    assert est.predict(rng.standard_normal((7, 40, 3))).shape == (7,)
    assert est.predict([rng.standard_normal((1, 3)), rng.standard_normal((60, 3))]).shape == (2,)
    flat = GRUClassifier(hidden_size=4, max_iter=2, random_state=0).fit(
        rng.standard_normal((300, 2)), rng.integers(0, 3, 300))
    assert flat.predict(rng.standard_normal((300, 2)).T).shape == (2,)  # 2 sequences of 300 steps


def test_prediction_in_blocks_of_sequences_equals_one_call():
    rng = np.random.default_rng(2)
    X = [rng.standard_normal((int(t), 2)) for t in rng.integers(1, 5, 1100)]  # > one block
    y = rng.standard_normal(1100)
    est = RNNRegressor(hidden_size=3, max_iter=1, random_state=0).fit(X, y)
    Xp, lengths = padded(X)
    np.testing.assert_allclose(est.predict(X), est.model_.forward(Xp, lengths=lengths)[0][:, 0],
                               rtol=1e-12)


@pytest.mark.parametrize("est_cls", [RNNClassifier, LSTMClassifier, GRUClassifier])
def test_the_classifiers_learn_a_sequence_task(est_cls):
    X, y, _ = ragged(n=300, F=2, seed=4)
    Xt, yt, _ = ragged(n=200, F=2, seed=5)
    est = est_cls(hidden_size=16, max_iter=40, learning_rate_init=0.01, random_state=0).fit(X, y)
    assert est.score(X, y) > 0.9 and est.score(Xt, yt) > 0.85
    assert set(est.classes_) == {0, 1} and est.predict_proba(Xt).shape == (200, 2)


@pytest.mark.parametrize("est_cls", [RNNRegressor, LSTMRegressor, GRURegressor])
def test_the_regressors_learn_a_sequence_task(est_cls):
    X, _, s = ragged(n=300, F=2, seed=4)
    Xt, _, st = ragged(n=200, F=2, seed=5)
    est = est_cls(hidden_size=16, max_iter=60, learning_rate_init=0.01, random_state=0)
    est.fit(X, s)
    assert est.score(Xt, st) > 0.8
    two = est_cls(hidden_size=16, max_iter=5, random_state=0).fit(X, np.c_[s, -s])
    assert two.n_outputs_ == 2 and two.predict(Xt).shape == (200, 2)


@pytest.mark.parametrize("X, match", [
    ([np.zeros((3, 2)), np.zeros((4, 3))], r"X\[1\]: has 3 features per step, X\[0\] has 2"),
    ([np.zeros((3, 2)), np.zeros((0, 2))], r"X\[1\]: expected at least one step"),
    ([np.zeros((3, 2)), np.zeros((4, 2, 1))], r"X\[1\]: expected a sequence of shape"),
    (np.zeros((4, 3, 2, 1)), "X: expected a 3-D array"),
    (np.zeros((4, 0, 2)), "X: expected at least one sample, one step and one feature"),
    (np.zeros(4), "Expected 2D array"),
    ([np.zeros((3, 2)), np.full((4, 2), np.nan)], "NaN"),
])
def test_bad_sequences_are_refused_by_name(X, match):
    y = np.arange(len(X)) % 2
    with pytest.raises(ValueError, match=match):
        LSTMClassifier(max_iter=1).fit(X, y)


def test_another_number_of_features_per_step_is_refused_at_prediction():
    X, y, _ = ragged(n=10)
    est = LSTMClassifier(hidden_size=3, max_iter=1, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="X has 2 features per step, but LSTMClassifier is "
                                         "expecting 3 features per step"):
        est.predict(np.zeros((4, 5, 2)))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        LSTMClassifier(max_iter=1).fit(X, y[:-1])
