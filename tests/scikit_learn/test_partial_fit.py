"""partial_fit: one more epoch carrying the optimizer's state, so k calls equal
fit(max_iter=k) bit for bit; classes are fixed by the first call."""
import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import ClassifierMixin  # noqa: E402

from fastbp.sklearn import (GRUClassifier, GRURegressor, LSTMClassifier,  # noqa: E402
                            LSTMRegressor, MLPClassifier, MLPRegressor, RNNClassifier,
                            RNNRegressor)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def data(sequences, n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5, 2)) if sequences else rng.standard_normal((n, 4))
    s = X.reshape(n, -1)[:, :3].sum(axis=1)
    return X, (s > 0).astype(int) + (s > 1), s


ALL = [(MLPClassifier, dict(hidden_layer_sizes=(8,))), (MLPRegressor, dict(hidden_layer_sizes=(8,))),
       (RNNClassifier, {}), (RNNRegressor, {}), (LSTMClassifier, dict(peepholes=True)),
       (LSTMRegressor, {}), (GRUClassifier, dict(num_layers=2)),
       (GRURegressor, dict(bidirectional=True))]


@pytest.mark.parametrize("cls, kw", ALL, ids=[c.__name__ for c, _ in ALL])
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_partial_fit_twice_equals_two_epochs(cls, kw, solver):
    classifier = issubclass(cls, ClassifierMixin)
    X, labels, s = data(sequences="hidden_layer_sizes" not in kw)
    y = labels if classifier else s
    kw = dict(kw, batch_size=8, learning_rate_init=0.01, random_state=4, solver=solver)
    if "hidden_layer_sizes" not in kw:
        kw["hidden_size"] = 5
    whole = cls(max_iter=2, **kw).fit(X, y)
    parts = cls(**kw)
    extra = dict(classes=[0, 1, 2]) if classifier else {}
    parts.partial_fit(X, y, **extra)
    assert parts.n_iter_ == 1
    parts.partial_fit(X, y)
    for (name, p), (_, q) in zip(whole.model_.named_parameters(),
                                 parts.model_.named_parameters()):
        np.testing.assert_array_equal(p, q, err_msg=name)
    assert parts.loss_curve_ == whole.loss_curve_ and parts.n_iter_ == whole.n_iter_ == 2
    assert parts.t_ == whole.t_ == 80
    assert parts._optimizer.epoch == 2 and parts._optimizer.t == 10    # the same optimizer
    np.testing.assert_array_equal(parts.predict(X), whole.predict(X))


def test_partial_fit_continues_a_schedule_over_the_calls():
    X, y, _ = data(sequences=False)
    kw = dict(hidden_layer_sizes=(8,), batch_size=8, random_state=0, lr_schedule="cosine",
              max_iter=4)
    whole = MLPClassifier(**kw).fit(X, y)
    parts = MLPClassifier(**kw)
    lrs = []
    for _ in range(4):
        parts.partial_fit(X, y, classes=[0, 1, 2])
        lrs += parts.history_["lr"]
    assert lrs == whole.history_["lr"] and lrs[0] > lrs[1] > lrs[2] > lrs[3]
    np.testing.assert_array_equal(parts.predict_proba(X), whole.predict_proba(X))


def test_classes_are_required_first_and_fixed_after():
    X, y, _ = data(sequences=True)
    est = GRUClassifier(hidden_size=3)
    with pytest.raises(ValueError, match="classes: must be passed on the first call"):
        est.partial_fit(X, y)
    est.partial_fit(X[:5], np.zeros(5, int), classes=[0, 1, 2, 3])     # labels seen later
    np.testing.assert_array_equal(est.classes_, [0, 1, 2, 3])
    assert est.predict_proba(X).shape == (40, 4)
    est.partial_fit(X, y)
    with pytest.raises(ValueError, match=r"y: labels \[7\] are not among the classes"):
        est.partial_fit(X[:2], [0, 7])
    with pytest.raises(ValueError, match="classes: .* differs from the classes of the first"):
        est.partial_fit(X, y, classes=[0, 1])
