"""The estimators inside scikit-learn's tools: clone, Pipeline, GridSearchCV,
cross_val_score (ragged lists of sequences included), pickling."""
import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from fastbp.callbacks import StepLR  # noqa: E402
from fastbp.sklearn import (GRURegressor, LSTMClassifier, MLPClassifier,  # noqa: E402
                            MLPRegressor, RNNClassifier)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def sequences(n=80, seed=0, ragged=False):
    rng = np.random.default_rng(seed)
    if ragged:
        X = [rng.standard_normal((int(t), 2)) for t in rng.integers(2, 7, n)]
    else:
        X = list(rng.standard_normal((n, 5, 2)))
    y = np.array([int(x[:, 0].sum() > 0) for x in X])
    return (X if ragged else np.array(X)), y


def test_clone_keeps_the_parameters_and_drops_the_fit():
    est = LSTMClassifier(hidden_size=7, peepholes=True, lr_schedule=StepLR(2), max_iter=3,
                         random_state=1, dtype="float32")
    X, y = sequences()
    est.fit(X, y)
    copy = clone(est)
    assert copy.get_params()["hidden_size"] == 7 and copy.get_params()["dtype"] == "float32"
    assert repr(copy.lr_schedule) == repr(est.lr_schedule)
    assert not hasattr(copy, "model_") and hasattr(est, "model_")
    np.testing.assert_array_equal(copy.fit(X, y).predict_proba(X), est.predict_proba(X))


def test_pipeline_scales_then_fits():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 6)) * 100 + 50
    y = (X[:, 0] > 50).astype(int)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), batch_size=16, learning_rate_init=0.01,
                                                         random_state=0, max_iter=60))
    assert pipe.fit(X, y).score(X, y) > 0.95
    seq = make_pipeline(StandardScaler(), RNNClassifier(hidden_size=8, max_iter=30,
                                                        learning_rate_init=0.01, random_state=0))
    assert seq.fit(X, y).score(X, y) > 0.9     # 2-D: 6 steps of one (scaled) feature


def test_grid_search_over_sequence_estimator_parameters():
    X, y = sequences(n=90)
    search = GridSearchCV(LSTMClassifier(max_iter=10, learning_rate_init=0.02, random_state=0),
                          {"hidden_size": [2, 8], "bidirectional": [False, True]}, cv=3)
    search.fit(X, y)
    assert set(search.cv_results_["params"][0]) == {"hidden_size", "bidirectional"}
    assert search.best_score_ > 0.8 and search.best_estimator_.model_.hidden_size in (2, 8)
    assert search.predict(X).shape == (90,)


def test_cross_val_score_on_ragged_lists():
    X, y = sequences(n=60, ragged=True)
    scores = cross_val_score(GRURegressor(hidden_size=6, max_iter=20, learning_rate_init=0.02,
                                          random_state=0),
                             X, y.astype(float), cv=KFold(3, shuffle=True, random_state=0))
    assert scores.shape == (3,) and np.all(scores > 0.3)


@pytest.mark.parametrize("make", [
    lambda: MLPRegressor(hidden_layer_sizes=(5,), max_iter=3, random_state=0),
    lambda: LSTMClassifier(hidden_size=4, max_iter=2, random_state=0)])
def test_a_pickled_estimator_predicts_the_same_and_trains_on(make):
    X, y = sequences()
    if isinstance(make(), MLPRegressor):
        X = X.reshape(len(X), -1)
    est = make().fit(X, y)
    copy = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(copy.predict(X), est.predict(X))
    copy.partial_fit(X, y)
    est.partial_fit(X, y)
    np.testing.assert_array_equal(copy.predict(X), est.predict(X))
