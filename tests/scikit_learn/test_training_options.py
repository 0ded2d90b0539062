"""The estimators' training options with scikit-learn's meaning: the stopping
rule (tol, n_iter_no_change), early_stopping (a stratified held-out split,
the best epoch's parameters kept), warm_start, alpha, lr_schedule, the
ConvergenceWarning; bad parameters refused by name at fit."""
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from fastbp.callbacks import ExponentialLR  # noqa: E402
from fastbp.sklearn import (GRUClassifier, LSTMClassifier, LSTMRegressor,  # noqa: E402
                            MLPClassifier, MLPRegressor)


def blobs(n=150, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return rng.standard_normal((n, 4)) * 0.8 + np.eye(4)[y] * 2.0, y


def test_training_stops_when_the_loss_stalls_as_in_scikit_learn():
    X, y = blobs()
    est = MLPClassifier(hidden_layer_sizes=(16,), max_iter=500, tol=0.05, n_iter_no_change=3,
                        random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est.fit(X, y)
    curve, count, best = est.loss_curve_, 0, np.inf
    for epoch, loss in enumerate(curve, 1):      # scikit-learn's rule, replayed
        count = count + 1 if loss > best - 0.05 else 0
        best = min(best, loss)
        if count > 3:
            break
    assert epoch == len(curve) == est.n_iter_ < 500 and est.best_loss_ == min(curve)


def test_early_stopping_keeps_the_best_validation_epoch():
    X, y = blobs(200)
    est = MLPClassifier(hidden_layer_sizes=(32,), early_stopping=True, validation_fraction=0.2,
                        n_iter_no_change=4, max_iter=300, random_state=0)
    est.fit(X, y)
    scores = est.validation_scores_
    assert len(scores) == est.n_iter_ < 300 and est.best_loss_ is None
    assert est.best_validation_score_ == max(scores)
    best = int(np.argmax(scores))
    assert est.n_iter_ - 1 - best >= 4           # stopped after the stall
    # the kept parameters are the best epoch's: its validation accuracy, recomputed
    rs = np.random.RandomState(0)
    rs.randint(np.iinfo(np.int32).max, size=2)   # the draws of the seeds
    _, val = train_test_split(np.arange(200), test_size=0.2, random_state=rs, stratify=y)
    assert est.score(X[np.sort(val)], y[np.sort(val)]) == max(scores)


def test_early_stopping_of_a_sequence_regressor_scores_r2():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 4, 1))
    y = X[:, :, 0].sum(axis=1)
    est = LSTMRegressor(hidden_size=8, early_stopping=True, max_iter=15, random_state=0,
                        learning_rate_init=0.02).fit(X, y)
    assert len(est.validation_scores_) == est.n_iter_ and max(est.validation_scores_) > 0.5
    assert est.history_["val_score"] == est.validation_scores_


def test_warm_start_continues_from_the_fitted_parameters():
    X, y = blobs()
    kw = dict(hidden_layer_sizes=(8,), max_iter=2, random_state=0, tol=0.0)
    est = MLPClassifier(warm_start=True, **kw).fit(X, y)
    first = [p.copy() for _, p in est.model_.named_parameters()]
    est.fit(X, y)
    assert est.n_iter_ == 4 and len(est.loss_curve_) == 4
    assert any(np.any(p != q) for (_, p), q in zip(est.model_.named_parameters(), first))
    cold = MLPClassifier(**kw).fit(X, y)
    cold.fit(X, y)
    assert cold.n_iter_ == 2          # a fit without warm_start starts over
    with pytest.raises(ValueError, match="y: warm_start continues a fit on the classes"):
        est.fit(X, np.where(y == 2, 5, y))


def test_alpha_is_the_l2_penalty_per_batch_as_in_scikit_learn():
    X, y = blobs(100)
    est = MLPRegressor(hidden_layer_sizes=(4,), alpha=0.5, batch_size=20, max_iter=1).fit(X, y)
    assert est.model_.l2 == 0.5 / 20
    auto = MLPRegressor(hidden_layer_sizes=(4,), alpha=0.5, max_iter=1).fit(X, y)
    assert auto.model_.l2 == 0.5 / 100        # "auto": min(200, n_samples)


@pytest.mark.parametrize("schedule, first_lrs", [
    ("step", [0.01, 0.01, 0.001, 0.001]),
    ("cosine", [0.01, 0.01 * (1 + np.cos(np.pi / 6)) / 2]),
    (ExponentialLR(0.5), [0.01, 0.005, 0.0025])])
def test_lr_schedules(schedule, first_lrs):
    X, y = blobs()
    est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=6, learning_rate_init=0.01, tol=0.0,
                        n_iter_no_change=100, lr_schedule=schedule, random_state=0).fit(X, y)
    np.testing.assert_allclose(est.history_["lr"][:len(first_lrs)], first_lrs, rtol=1e-12)
    assert est._optimizer.lr == 0.01


def test_plateau_schedule_is_scikit_learns_adaptive_rate():
    X, y = blobs()
    est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=30, learning_rate_init=0.01, tol=0.5,
                        n_iter_no_change=100, lr_schedule="plateau", random_state=0).fit(X, y)
    lrs = est.history_["lr"]
    assert lrs[0] == 0.01 and min(lrs) < 0.01
    ratios = np.array(lrs[1:]) / np.array(lrs[:-1])
    assert np.all(np.isclose(ratios, 1.0, rtol=1e-12) | np.isclose(ratios, 0.2, rtol=1e-12))


def test_max_iter_without_convergence_warns():
    X, y = blobs()
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\) reached"):
        GRUClassifier(hidden_size=3, max_iter=3).fit(X[:, :, None], y)


@pytest.mark.parametrize("params, exc, match", [
    (dict(hidden_layer_sizes=(4, 0)), ValueError, r"hidden_layer_sizes\[1\]: expected an integer >= 1"),
    (dict(hidden_layer_sizes="4"), TypeError, "hidden_layer_sizes: expected a sequence"),
    (dict(activation="softplus"), ValueError, "activation: expected one of"),
    (dict(solver="lbfgs"), ValueError, "solver: 'lbfgs' is not available in fastbp"),
    (dict(alpha=-1.0), ValueError, "alpha: expected a number in"),
    (dict(batch_size=0), ValueError, "batch_size: expected an integer >= 1"),
    (dict(batch_size="big"), ValueError, "batch_size: expected 'auto'"),
    (dict(learning_rate_init=0.0), ValueError, "learning_rate_init"),
    (dict(max_iter=1.5), TypeError, "max_iter: expected an integer"),
    (dict(momentum=1.0), ValueError, "momentum"),
    (dict(validation_fraction=1.0), ValueError, "validation_fraction"),
    (dict(n_iter_no_change=0), ValueError, "n_iter_no_change"),
    (dict(dtype="float16"), ValueError, "dtype: expected 'float32' or 'float64'"),
    (dict(lr_schedule="linear"), ValueError, "lr_schedule: expected None, one of"),
    (dict(clip_norm=-1.0), ValueError, "clip_norm"),
    (dict(shuffle="yes"), TypeError, "shuffle: expected True or False"),
])
def test_bad_parameters_are_refused_by_name_at_fit(params, exc, match):
    X, y = blobs(20)
    est = MLPClassifier(**params)              # __init__ only stores (scikit-learn's rule)
    with pytest.raises(exc, match=match):
        est.fit(X, y)
    assert not hasattr(est, "model_")


@pytest.mark.parametrize("params, match", [
    (dict(hidden_size=0), "hidden_size"), (dict(num_layers=0), "num_layers"),
    (dict(bidirectional=1), "bidirectional"), (dict(peepholes="no"), "peepholes")])
def test_bad_sequence_parameters_are_refused_by_name_at_fit(params, match):
    X, y = blobs(20)
    with pytest.raises((TypeError, ValueError), match=match):
        LSTMClassifier(**params).fit(X[:, :, None], y)
