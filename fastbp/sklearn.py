"""scikit-learn estimators over fastbp's models: MLPs, and RNN, LSTM and GRU sequence-to-one models.

    pip install "fastbp[sklearn]"          # scikit-learn is an optional extra

    from fastbp.sklearn import LSTMClassifier
    clf = LSTMClassifier(hidden_size=32, max_iter=30, random_state=0).fit(X, y)
    clf.predict(X), clf.predict_proba(X), clf.score(X, y)

- :class:`MLPClassifier`, :class:`MLPRegressor`: :class:`fastbp.MLP` behind
  scikit-learn's estimator contract, with the parameters of scikit-learn's
  ``sklearn.neural_network`` estimators where the meaning is the same.
- :class:`RNNClassifier`, :class:`RNNRegressor`, :class:`LSTMClassifier`,
  :class:`LSTMRegressor`, :class:`GRUClassifier`, :class:`GRURegressor`: a
  sequence in, one label or value out (the fastbp models with
  ``many_to_one=True``). X is batch-first: a 3-D array ``(n_samples, T,
  n_features)``; a list of 2-D arrays ``(T_i, n_features)`` of different
  lengths (run through the kernels' ``lengths=``: each sequence costs its own
  steps, no padding work); or a 2-D array ``(n_samples, T)``, one feature per
  step. scikit-learn's ``check_estimator`` checks that cannot apply to
  sequences are listed, with the reason, by :func:`expected_failed_checks`.

All of them pass ``clone``, ``Pipeline``, ``GridSearchCV`` and
``cross_val_score``; ``fit`` returns the estimator, ``partial_fit`` trains one
more epoch carrying the optimizer's state, and the fitted attributes end in
``_`` (``model_`` is the fastbp model). Training runs through
:func:`fastbp.training.fit` with the callbacks of :mod:`fastbp.callbacks`.

This is the only fastbp module that imports scikit-learn: ``import fastbp``
does not, and importing this module without scikit-learn raises an
ImportError naming the extra.
"""
from __future__ import annotations

import copy
import numbers
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import (check_array, check_consistent_length,
                                          check_is_fitted, column_or_1d)
except ImportError as e:       # scikit-learn is an optional extra
    raise ImportError(
        f"fastbp.sklearn needs scikit-learn, an optional extra of fastbp: "
        f'pip install "fastbp[sklearn]" (or pip install "scikit-learn>=1.1") ({e})') from e

try:        # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:        # pragma: no cover - scikit-learn 1.1 to 1.5
    def _validate_data(estimator, X="no_validation", y="no_validation", reset=True, **kwargs):
        return estimator._validate_data(X, y, reset=reset, **kwargs)

from .callbacks import SCHEDULES, Callback, LRSchedule, ReduceLROnPlateau
from .gru import GRU
from .lstm import LSTM
from .mlp import MLP
from .optim import SGD, Adam
from .rnn import RNN

__all__ = ["MLPClassifier", "MLPRegressor", "RNNClassifier", "RNNRegressor", "LSTMClassifier",
           "LSTMRegressor", "GRUClassifier", "GRURegressor", "expected_failed_checks",
           "SEQUENCE_CHECKS_NOT_APPLICABLE", "FLOAT32_CHECKS_NOT_APPLICABLE"]

_SEED_BOUND = np.iinfo(np.int32).max
_PREDICT_BLOCK = 1024       # sequences per forward call at prediction (bounds the memory)


# -- the checks that cannot apply to sequence estimators ---------------------------------
SEQUENCE_CHECKS_NOT_APPLICABLE: Dict[str, str] = {
    "check_n_features_in": (
        "n_features_in_ counts the features of each step (1 for a 2-D X of one feature per "
        "step), not X.shape[1], which is the number of steps"),
    "check_n_features_in_after_fitting": (
        "a 2-D X with another number of columns holds sequences of another length, which a "
        "recurrent model reads: nothing to refuse"),
    "check_estimators_partial_fit_n_features": (
        "partial_fit on X[:, :-1] trains on sequences one step shorter, which is valid input"),
    "check_classifiers_train": (
        "it requires predict(X.T) to raise, but X.T (2, 300) is 2 sequences of 300 steps, "
        "valid input (the accuracy part is held by fastbp's own tests)"),
}


FLOAT32_CHECKS_NOT_APPLICABLE: Dict[str, str] = {
    "check_methods_subset_invariance": (
        "with dtype='float32' a sample's prediction depends on the batch it is computed in "
        "at float32 rounding (~1e-7 relative: the kernels block the products by batch size), "
        "and the check allows 1e-7 absolute; dtype='float64' (the default) meets it"),
}


def expected_failed_checks(estimator: BaseEstimator) -> Dict[str, str]:
    """``{check name: reason}`` of scikit-learn's estimator checks that cannot
    apply to ``estimator``: none for the MLP estimators with the default
    ``dtype="float64"``; for the sequence estimators, the checks that read a
    2-D X's columns as features while they are time steps here; with
    ``dtype="float32"``, the subset-invariance check, whose tolerance is below
    float32 rounding. Pass it to ``check_estimator(est,
    expected_failed_checks=expected_failed_checks(est))`` or
    ``parametrize_with_checks(..., expected_failed_checks=expected_failed_checks)``."""
    checks = {}
    if isinstance(estimator, _SequenceEstimator):
        checks.update(SEQUENCE_CHECKS_NOT_APPLICABLE)
    try:
        float32 = np.dtype(estimator.get_params().get("dtype")) == np.float32
    except TypeError:
        float32 = False
    if float32:
        checks.update(FLOAT32_CHECKS_NOT_APPLICABLE)
    return checks


# -- parameter checks (at fit, as scikit-learn does: __init__ only stores) --------------------
def _keep(estimator, params):
    """Store the constructor's arguments under their names, unchanged."""
    for name, value in params.items():
        if name not in ("self", "__class__"):
            setattr(estimator, name, value)


def _int(value, name, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    return int(value)


def _real(value, name, low, high=None, low_open=False, high_open=True):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {value!r}")
    v = float(value)
    if (not np.isfinite(v) or v < low or (low_open and v == low)
            or (high is not None and (v > high or (high_open and v == high)))):
        lo, hi = "(" if low_open else "[", ")" if high_open or high is None else "]"
        raise ValueError(f"{name}: expected a number in {lo}{low}, "
                         f"{'∞' if high is None else high}{hi}, got {value!r}")
    return v


def _bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def _choice(value, name, options):
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def _dtype(value):
    try:
        dt = np.dtype(value)
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {value!r}")
    return dt


class _Stopping(Callback):
    """scikit-learn's stopping rule of its MLPs, as a fastbp callback.

    Without validation (``score`` None): an epoch counts as no improvement
    when its training loss is above the best loss − tol; training stops when
    more than ``n_iter_no_change`` epochs in a row count so. With ``score``
    (the validation score of the model: accuracy or R², tracked in the
    history as "val_score"), an epoch counts when its score is below the best
    + tol, and the parameters of the best-scoring epoch are restored at the end."""

    def __init__(self, tol, n_iter_no_change, score=None):
        self.tol, self.n_iter_no_change, self.score = tol, n_iter_no_change, score

    def on_train_begin(self, run):
        self.count, self.best_state = 0, None
        self.best = -np.inf if self.score is not None else np.inf
        if self.score is not None:
            run.track("val_score")

    def on_epoch_end(self, run):
        if self.score is None:
            value = run.history["loss"][-1]
            self.count = self.count + 1 if value > self.best - self.tol else 0
            self.best = min(self.best, value)
        else:
            value = float(self.score(run.model))
            run.history["val_score"].append(value)
            self.count = self.count + 1 if value < self.best + self.tol else 0
            if value > self.best:
                self.best, self.best_state = value, run.model.state_dict()
        return self.count > self.n_iter_no_change

    def on_train_end(self, run):
        if self.best_state is not None:
            run.model.load_state_dict(self.best_state)
            self.best_state = None


# -- what every estimator shares -----------------------------------------------------------------
class _Estimator(BaseEstimator):
    """Training through fastbp.training.fit: parameters, optimizer, schedule,
    stopping, fit and partial_fit. Subclasses give the data and the model."""

    _default_batch_size = "auto"

    # -- parameters --------------------------------------------------------------------
    def _checked(self) -> Dict[str, Any]:
        """Every training parameter checked, by name (ValueError/TypeError)."""
        p = {}
        if self.solver == "lbfgs":
            raise ValueError("solver: 'lbfgs' is not available in fastbp (a full-batch "
                             "quasi-Newton method); use 'adam' or 'sgd'")
        p["solver"] = _choice(self.solver, "solver", ("adam", "sgd"))
        p["alpha"] = _real(self.alpha, "alpha", 0.0)
        if isinstance(self.batch_size, str) and self.batch_size == "auto":
            p["batch_size"] = "auto"
        elif isinstance(self.batch_size, str):
            raise ValueError(f"batch_size: expected 'auto' or an integer >= 1, got "
                             f"{self.batch_size!r}")
        else:
            p["batch_size"] = _int(self.batch_size, "batch_size", 1)
        p["learning_rate_init"] = _real(self.learning_rate_init, "learning_rate_init", 0.0,
                                        low_open=True)
        p["max_iter"] = _int(self.max_iter, "max_iter", 1)
        p["shuffle"] = _bool(self.shuffle, "shuffle")
        p["tol"] = _real(self.tol, "tol", 0.0)
        if isinstance(self.verbose, bool) or isinstance(self.verbose, numbers.Integral):
            p["verbose"] = bool(self.verbose)
        else:
            raise TypeError(f"verbose: expected a bool or an integer, got {self.verbose!r}")
        p["warm_start"] = _bool(self.warm_start, "warm_start")
        p["momentum"] = _real(self.momentum, "momentum", 0.0, 1.0)
        p["nesterovs_momentum"] = _bool(self.nesterovs_momentum, "nesterovs_momentum")
        p["early_stopping"] = _bool(self.early_stopping, "early_stopping")
        p["validation_fraction"] = _real(self.validation_fraction, "validation_fraction", 0.0,
                                         1.0, low_open=True)
        p["beta_1"] = _real(self.beta_1, "beta_1", 0.0, 1.0)
        p["beta_2"] = _real(self.beta_2, "beta_2", 0.0, 1.0)
        p["epsilon"] = _real(self.epsilon, "epsilon", 0.0, low_open=True)
        p["n_iter_no_change"] = _int(self.n_iter_no_change, "n_iter_no_change", 1)
        p["clip_norm"] = (None if self.clip_norm is None
                          else _real(self.clip_norm, "clip_norm", 0.0, low_open=True))
        p["dtype"] = _dtype(self.dtype)
        schedule = self.lr_schedule
        if schedule is not None and not isinstance(schedule, LRSchedule) and not (
                isinstance(schedule, str) and schedule in SCHEDULES):
            raise ValueError(f"lr_schedule: expected None, one of "
                             f"{', '.join(map(repr, SCHEDULES))} or a fastbp.callbacks."
                             f"LRSchedule, got {schedule!r}")
        self._check_model_params(p)
        return p

    def _check_model_params(self, p):
        """The model's own parameters, into p."""

    def _optimizer_for(self, p):
        if p["solver"] == "adam":
            return Adam(lr=p["learning_rate_init"], betas=(p["beta_1"], p["beta_2"]),
                        eps=p["epsilon"])
        return SGD(lr=p["learning_rate_init"], momentum=p["momentum"],
                   nesterov=p["nesterovs_momentum"] and p["momentum"] > 0)

    def _schedules_for(self, p):
        """The lr_schedule as fastbp callbacks (a fresh copy: its state is this fit's)."""
        s = self.lr_schedule
        if s is None:
            return []
        if isinstance(s, LRSchedule):
            return [copy.deepcopy(s)]
        if s == "step":         # a tenth of the rate every third of the epochs
            return [SCHEDULES["step"](max(1, p["max_iter"] // 3), gamma=0.1)]
        if s == "exponential":  # down to 1% of the rate over max_iter epochs
            return [SCHEDULES["exponential"](0.01 ** (1.0 / p["max_iter"]))]
        if s == "cosine":       # down to 0 over max_iter epochs
            return [SCHEDULES["cosine"](p["max_iter"])]
        # scikit-learn's learning_rate='adaptive': divide by 5 when the training loss has
        # not fallen by tol for 2 epochs
        return [ReduceLROnPlateau("loss", factor=0.2, patience=2, min_delta=p["tol"])]

    # -- fit -------------------------------------------------------------------------------
    def fit(self, X: ArrayLike, y: ArrayLike) -> "_Estimator":
        """Train for up to ``max_iter`` epochs (fewer when the stopping rule
        ends it; ``warm_start=True`` continues from the current parameters with a
        new optimizer). Returns the estimator."""
        return self._fit(X, y, incremental=False)

    def _fit(self, X, y, incremental, classes=None):
        p = self._checked()
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             f"is None")
        start_over = not hasattr(self, "model_") or (not incremental and not p["warm_start"])
        data = self._training_data(X, reset=start_over)
        check_consistent_length(self._lengths_of(X, data), y)
        y = self._training_targets(y, start_over, classes, incremental)
        n = self._n_of(data)
        if start_over:
            rs = check_random_state(self.random_state)
            init_seed = int(rs.randint(_SEED_BOUND))
            self._shuffle_seed = int(rs.randint(_SEED_BOUND))
            self.model_ = self._new_model(p, init_seed)
            self.loss_curve_, self.n_iter_, self.t_ = [], 0, 0
            self._optimizer = None
            self.best_loss_, self.validation_scores_, self.best_validation_score_ = None, None, None
        else:
            self._check_continuation(p)
            rs = check_random_state(self.random_state)
            rs.randint(_SEED_BOUND, size=2)       # the same draws as a first fit made
        if not incremental or self._optimizer is None:
            self._optimizer = self._optimizer_for(p)
            self._schedules = self._schedules_for(p)
        callbacks = list(self._schedules)
        validation = None
        if not incremental:
            if p["early_stopping"]:
                train, val = self._split(n, y, p["validation_fraction"], rs)
                validation = (self._take(data, val), y[val])
                data, y, n = self._take(data, train), y[train], len(train)
                Xv, yv = validation
                callbacks.append(_Stopping(p["tol"], p["n_iter_no_change"],
                                           score=lambda model: self._score_model(model, Xv, yv)))
            else:
                callbacks.append(_Stopping(p["tol"], p["n_iter_no_change"]))
        # at most the samples there are (scikit-learn's clipping)
        batch_size = min(200 if p["batch_size"] == "auto" else p["batch_size"], n)
        # scikit-learn's alpha: the penalty (alpha/2)·‖W‖²/batch_size added to the mean loss
        self.model_.l2 = p["alpha"] / batch_size
        epochs = 1 if incremental else p["max_iter"]
        history = self._train(data, y, epochs=epochs, batch_size=batch_size,
                              optimizer=self._optimizer, shuffle=p["shuffle"],
                              seed=self._shuffle_seed, progress=p["verbose"],
                              clip_norm=p["clip_norm"], callbacks=callbacks)
        ran = len(history["epoch"])
        self.n_iter_ += ran
        self.t_ += ran * n
        self.loss_curve_ = list(self.loss_curve_) + [float(v) for v in history["loss"]]
        self.history_ = history
        if validation is not None:
            self.validation_scores_ = [float(v) for v in history["val_score"]]
            self.best_validation_score_ = max(self.validation_scores_)
            self.best_loss_ = None
        else:
            self.best_loss_ = min(self.loss_curve_)
        if history.interrupted:
            warnings.warn("fit was interrupted (Ctrl-C): the estimator holds the parameters "
                          "of the last completed step", UserWarning, stacklevel=3)
        elif not incremental and history.stopped_by is None and ran == epochs:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({epochs}) reached and "
                          f"the optimization hasn't converged yet.", ConvergenceWarning,
                          stacklevel=3)
        return self

    def _split(self, n, y, fraction, rs):
        """scikit-learn's early-stopping split: train and validation indices
        (stratified for classifiers)."""
        stratify = y if isinstance(self, ClassifierMixin) else None
        train, val = train_test_split(np.arange(n), random_state=rs, test_size=fraction,
                                      stratify=stratify)
        if len(val) < 2:
            raise ValueError(f"validation_fraction: the validation set is too small ({len(val)} "
                             f"of {n} samples); increase validation_fraction or the data")
        return np.sort(train), np.sort(val)

    def _check_continuation(self, p):
        if p["dtype"] != self.model_.dtype:
            raise ValueError(f"dtype: {p['dtype'].name} differs from the fitted model's "
                             f"{self.model_.dtype.name}; fit again without warm_start")

    # -- the pieces subclasses give -------------------------------------------------------
    def _lengths_of(self, X, data):
        """What check_consistent_length compares with y: the samples of X."""
        return np.empty(self._n_of(data))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False
        return tags


class _ClassifierMixin(ClassifierMixin):
    """Labels encoded as 0..K-1 over ``classes_``; predict_proba from the softmax."""

    def _training_targets(self, y, start_over, classes, incremental):
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if start_over:
            if incremental:
                if classes is None:
                    raise ValueError("classes: must be passed on the first call to partial_fit "
                                     "(every class the estimator will see)")
                self.classes_ = np.unique(column_or_1d(classes))
            else:
                self.classes_ = np.unique(y)
        elif not incremental and not np.array_equal(np.unique(y), self.classes_) and (
                self.warm_start):
            raise ValueError(f"y: warm_start continues a fit on the classes "
                             f"{self.classes_.tolist()}, got labels {np.unique(y).tolist()}")
        elif incremental and classes is not None and not np.array_equal(
                np.unique(column_or_1d(classes)), self.classes_):
            raise ValueError(f"classes: {np.unique(classes).tolist()} differs from the classes "
                             f"of the first partial_fit, {self.classes_.tolist()}")
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(f"y: labels {unknown.tolist()[:10]} are not among the classes "
                             f"{self.classes_.tolist()[:20]}")
        self._n_outputs = len(self.classes_)
        return np.searchsorted(self.classes_, y).astype(np.int64)

    def _score_model(self, model, X, y):
        """Accuracy of ``model`` on prepared data, y encoded."""
        return float(np.mean(np.argmax(self._outputs(model, X), axis=1) == y))

    def predict(self, X: ArrayLike) -> np.ndarray:
        """The predicted class of each sample (an element of ``classes_``)."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self._outputs(self.model_, self._inputs(X)), axis=1)]

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities (n_samples, n_classes), in the order of ``classes_``."""
        check_is_fitted(self)
        return self._probabilities(self._outputs(self.model_, self._inputs(X)))

    def predict_log_proba(self, X: ArrayLike) -> np.ndarray:
        """The logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def partial_fit(self, X: ArrayLike, y: ArrayLike,
                    classes: Optional[ArrayLike] = None) -> "_ClassifierMixin":
        """One more epoch over (X, y), carrying the optimizer's state (moments,
        step and epoch counts: two calls are ``max_iter=2``). ``classes``
        (every label there will be) is required on the first call."""
        return self._fit(X, y, incremental=True, classes=classes)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags


class _RegressorMixin(RegressorMixin):
    """Targets (n,) or (n, n_outputs), squared error (½·mean, scikit-learn's)."""

    def _training_targets(self, y, start_over, classes, incremental):
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        if y.ndim not in (1, 2):
            raise ValueError(f"y: expected shape (n_samples,) or (n_samples, n_outputs), got "
                             f"{y.shape}")
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        if start_over:
            self.n_outputs_ = n_outputs
        elif n_outputs != self.n_outputs_:
            raise ValueError(f"y: {n_outputs} outputs, but the estimator was fitted with "
                             f"{self.n_outputs_}")
        self._n_outputs = n_outputs
        return y.reshape(len(y), n_outputs)

    def _score_model(self, model, X, y):
        """R² of ``model`` on prepared data."""
        return float(r2_score(y, self._outputs(model, X)))

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted values: (n_samples,) for one output, else (n_samples, n_outputs)."""
        check_is_fitted(self)
        out = self._outputs(self.model_, self._inputs(X))
        return out.ravel() if out.shape[1] == 1 else out

    def partial_fit(self, X: ArrayLike, y: ArrayLike) -> "_RegressorMixin":
        """One more epoch over (X, y), carrying the optimizer's state (two calls
        are ``max_iter=2``)."""
        return self._fit(X, y, incremental=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


# -- MLPs -------------------------------------------------------------------------------------------
_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}


class _MLPEstimator(_Estimator):
    """Rows in; fastbp.MLP."""

    def _check_model_params(self, p):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = (sizes,)
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
            raise TypeError(f"hidden_layer_sizes: expected a sequence of positive integers, "
                            f"got {self.hidden_layer_sizes!r}")
        p["hidden"] = [_int(s, f"hidden_layer_sizes[{i}]", 1) for i, s in enumerate(sizes)]
        p["activation"] = _ACTIVATIONS[_choice(self.activation, "activation",
                                               tuple(_ACTIVATIONS))]

    def _training_data(self, X, reset):
        return _validate_data(self, X, reset=reset, dtype=_dtype(self.dtype), order="C",
                              accept_sparse=False)

    def _inputs(self, X):
        dt = self.model_.dtype
        return _validate_data(self, X, reset=False, dtype=dt, order="C", accept_sparse=False)

    def _n_of(self, data):
        return data.shape[0]

    def _take(self, data, idx):
        return data[idx]

    def _train(self, X, y, **kwargs):
        return self.model_.fit(X, y, **kwargs)

    def _new_model(self, p, seed):
        classifier = isinstance(self, ClassifierMixin)
        sizes = [self.n_features_in_] + p["hidden"] + [self._n_outputs]
        hidden = p["activation"] if p["hidden"] else []
        return MLP(sizes, activation=hidden, output="softmax" if classifier else "identity",
                   loss="cross_entropy" if classifier else "mse", dtype=p["dtype"], seed=seed,
                   mse_form="half_mean")

    def _check_continuation(self, p):
        super()._check_continuation(p)
        if list(self.model_.sizes[1:-1]) != p["hidden"] or self.model_.sizes[-1] != self._n_outputs:
            raise ValueError(f"hidden_layer_sizes: warm_start continues the fitted network "
                             f"{list(self.model_.sizes)}; fit again without warm_start for "
                             f"another one")

    def _outputs(self, model, X):
        """The network's outputs (softmax probabilities for classifiers), float64."""
        return model.forward(X).astype(np.float64)

    def _probabilities(self, out):
        return out / out.sum(axis=1, keepdims=True)


_MLP_DOC_PARAMETERS = """
    hidden_layer_sizes : int or sequence of int, default=(100,)
        The widths of the hidden layers.
    activation : {"identity", "logistic", "tanh", "relu"}, default="relu"
        The hidden layers' activation ("logistic" is the sigmoid).
    solver : {"adam", "sgd"}, default="adam"
        The optimizer: fastbp.optim.Adam, or SGD with ``momentum`` and
        ``nesterovs_momentum``. ("lbfgs" does not exist in fastbp.)
    alpha : float >= 0, default=0.0001
        L2 penalty as scikit-learn's: ``(alpha/2)·Σ‖W‖²/batch_size`` added to
        the mean loss (biases not penalised): the model's ``l2`` is
        ``alpha / batch_size``."""

_TRAINING_DOC_PARAMETERS = """
    batch_size : int or "auto"
        Samples per optimizer step (at most n_samples); "auto" is
        ``min(200, n_samples)``.
    learning_rate_init : float > 0, default=0.001
        The optimizer's learning rate.
    lr_schedule : None, "step", "exponential", "cosine", "plateau" or a fastbp.callbacks.LRSchedule
        The learning rate per epoch (:mod:`fastbp.callbacks`): "step" a tenth
        every third of ``max_iter``, "exponential" down to 1% over
        ``max_iter``, "cosine" down to 0 over ``max_iter``, "plateau" a fifth
        whenever the training loss has not fallen by ``tol`` for 2 epochs
        (scikit-learn's ``learning_rate="adaptive"``); or a schedule object
        (copied at each fit).
    max_iter : int >= 1
        Epochs (passes over the data) of ``fit``.
    shuffle : bool, default=True
        Visit the samples in a new order every epoch.
    random_state : None, int or numpy RandomState
        Seeds the initial weights, the shuffling and the early-stopping split.
    tol : float >= 0, default=1e-4
        scikit-learn's stopping rule: training stops when the training loss
        (with ``early_stopping``, the validation score) has not improved by
        ``tol`` for more than ``n_iter_no_change`` epochs in a row.
    verbose : bool, default=False
        Show fastbp's progress bar (stderr).
    warm_start : bool, default=False
        ``fit`` continues from the fitted parameters (with a new optimizer).
    momentum : float in [0, 1), default=0.9
        SGD's momentum.
    nesterovs_momentum : bool, default=True
        Nesterov's momentum for SGD (when momentum > 0).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified for
        classifiers), score it after every epoch (accuracy or R², in
        ``validation_scores_``), stop when the score stalls (``tol``,
        ``n_iter_no_change``) and keep the parameters of the best epoch.
    validation_fraction : float in (0, 1), default=0.1
    beta_1, beta_2 : float in [0, 1), default=0.9, 0.999
        Adam's moment decay rates.
    epsilon : float > 0, default=1e-8
        Adam's epsilon.
    n_iter_no_change : int >= 1, default=10
    clip_norm : float > 0 or None
        Rescale the gradients to this global L2 norm at most (fastbp's fit).
    dtype : {"float32", "float64"}, default="float32"
        The precision the model computes in (float32 is fastbp's fast path);
        predictions are returned as float64."""

_TRAINING_DOC_ATTRIBUTES = """
    model_ : the fastbp model
        Trained; its ``save``, ``state_dict`` and ``forward`` are fastbp's.
    loss_curve_ : list of float
        The training loss of every epoch (L2 term included), over the fits
        of one model (``partial_fit``, ``warm_start``).
    n_iter_ : int
        Epochs trained; ``t_`` the samples seen.
    best_loss_ : float or None
        The lowest training loss (None with ``early_stopping``).
    validation_scores_, best_validation_score_ : list of float, float, or None
        The validation score of each epoch and the best one (``early_stopping``).
    history_ : fastbp.training.History
        What the last fastbp fit returned (per-epoch loss, time, lr, ...)."""


class MLPClassifier(_ClassifierMixin, _MLPEstimator):
    __doc__ = f"""A multilayer perceptron classifier: :class:`fastbp.MLP` behind scikit-learn's estimator API.

    Softmax outputs and cross-entropy, trained by mini-batch Adam or SGD in
    fastbp's compiled kernels. The parameters are scikit-learn's
    ``sklearn.neural_network.MLPClassifier``'s where the meaning is the same;
    ``lr_schedule``, ``clip_norm`` and ``dtype`` are fastbp's. Multi-label
    targets are not supported. Passes ``sklearn.utils.estimator_checks.
    check_estimator`` in full.

    Parameters
    ----------{_MLP_DOC_PARAMETERS}{_TRAINING_DOC_PARAMETERS}

    Attributes
    ----------
    classes_ : ndarray
        The class labels.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Set when X had column names.{_TRAINING_DOC_ATTRIBUTES}
    """

    def __init__(self, hidden_layer_sizes: Union[int, Sequence[int]] = (100,),
                 activation: str = "relu", *, solver: str = "adam", alpha: float = 0.0001,
                 batch_size: Union[int, str] = "auto", learning_rate_init: float = 0.001,
                 lr_schedule: Union[None, str, LRSchedule] = None, max_iter: int = 200,
                 shuffle: bool = True, random_state: Any = None, tol: float = 1e-4,
                 verbose: bool = False, warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int = 10,
                 clip_norm: Optional[float] = None, dtype: str = "float64"):
        _keep(self, locals())


class MLPRegressor(_RegressorMixin, _MLPEstimator):
    __doc__ = f"""A multilayer perceptron regressor: :class:`fastbp.MLP` behind scikit-learn's estimator API.

    Identity outputs and the squared error ½·mean (scikit-learn's), trained
    by mini-batch Adam or SGD in fastbp's compiled kernels; y may have several
    outputs. The parameters are scikit-learn's
    ``sklearn.neural_network.MLPRegressor``'s where the meaning is the same;
    ``lr_schedule``, ``clip_norm`` and ``dtype`` are fastbp's. Passes
    ``check_estimator`` in full.

    Parameters
    ----------{_MLP_DOC_PARAMETERS}{_TRAINING_DOC_PARAMETERS}

    Attributes
    ----------
    n_outputs_ : int
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Set when X had column names.{_TRAINING_DOC_ATTRIBUTES}
    """

    def __init__(self, hidden_layer_sizes: Union[int, Sequence[int]] = (100,),
                 activation: str = "relu", *, solver: str = "adam", alpha: float = 0.0001,
                 batch_size: Union[int, str] = "auto", learning_rate_init: float = 0.001,
                 lr_schedule: Union[None, str, LRSchedule] = None, max_iter: int = 200,
                 shuffle: bool = True, random_state: Any = None, tol: float = 1e-4,
                 verbose: bool = False, warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int = 10,
                 clip_norm: Optional[float] = None, dtype: str = "float64"):
        _keep(self, locals())


# -- sequences ---------------------------------------------------------------------------------
class _Sequences:
    """Sequences as the kernels take them: X (T, N, F) time-major, C-contiguous,
    lengths (N,) or None (all of length T)."""

    __slots__ = ("X", "lengths")

    def __init__(self, X, lengths):
        self.X, self.lengths = X, lengths


def _as_sequences(X, dtype, name="X"):
    """(time-major array (T, N, F), lengths or None) from batch-first input: a
    3-D array (N, T, F), a 2-D array (N, T) (one feature per step) or a list
    of 2-D arrays (T_i, F) (1-D: one feature per step) of any lengths."""
    if isinstance(X, (list, tuple)) and len(X) and _ragged(X):
        seqs = []
        for i, s in enumerate(X):
            a = check_array(s, ensure_2d=False, allow_nd=True, ensure_min_samples=0,
                            dtype=dtype, input_name=f"{name}[{i}]")
            if a.ndim == 1:
                a = a[:, None]
            if a.ndim != 2:
                raise ValueError(f"{name}[{i}]: expected a sequence of shape (T_i, n_features) "
                                 f"or (T_i,), got shape {a.shape}")
            if a.shape[0] == 0 or a.shape[1] == 0:
                raise ValueError(f"{name}[{i}]: expected at least one step of at least one "
                                 f"feature, got shape {a.shape}")
            if seqs and a.shape[1] != seqs[0].shape[1]:
                raise ValueError(f"{name}[{i}]: has {a.shape[1]} features per step, "
                                 f"{name}[0] has {seqs[0].shape[1]}")
            seqs.append(a)
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        T, F = int(lengths.max()), seqs[0].shape[1]
        out = np.zeros((T, len(seqs), F), dtype=dtype)      # time-major, padding never read
        for b, s in enumerate(seqs):
            out[:len(s), b] = s
        return out, (None if (lengths == T).all() else lengths)
    X = check_array(X, allow_nd=True, dtype=dtype, accept_sparse=False, input_name=name)
    if X.ndim == 2:
        X = X[:, :, None]
    if X.ndim != 3:
        raise ValueError(f"{name}: expected a 3-D array (n_samples, T, n_features), a 2-D "
                         f"array (n_samples, T) or a list of 2-D arrays (T_i, n_features), got "
                         f"shape {X.shape}")
    if 0 in X.shape:
        raise ValueError(f"{name}: expected at least one sample, one step and one feature, got "
                         f"shape {X.shape}")
    return np.ascontiguousarray(X.transpose(1, 0, 2)), None


def _ragged(X):
    """A list whose items NumPy cannot stack into one array (sequences of different lengths)."""
    shapes = set()
    for s in X:
        shape = np.shape(s) if not hasattr(s, "shape") else s.shape
        shapes.add(tuple(shape))
        if len(shapes) > 1:
            return True
    return False


class _SequenceEstimator(_Estimator):
    """Sequences in (batch-first), one label or value out; a fastbp many-to-one model."""

    _model_class = None

    def _check_model_params(self, p):
        p["hidden_size"] = _int(self.hidden_size, "hidden_size", 1)
        p["num_layers"] = _int(self.num_layers, "num_layers", 1)
        p["bidirectional"] = _bool(self.bidirectional, "bidirectional")

    def _cell_options(self, p):
        return {}

    def _sequences(self, X, reset):
        data = _Sequences(*_as_sequences(X, _dtype(self.dtype) if reset else self.model_.dtype))
        F = data.X.shape[2]
        if reset:
            self.n_features_in_ = F
        elif F != self.n_features_in_:
            raise ValueError(f"X has {F} features per step, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features per step as input")
        return data

    def _training_data(self, X, reset):
        return self._sequences(X, reset)

    def _inputs(self, X):
        return self._sequences(X, reset=False)

    def _n_of(self, data):
        return data.X.shape[1]

    def _take(self, data, idx):
        lengths = None if data.lengths is None else data.lengths[idx]
        T = data.X.shape[0] if lengths is None else int(lengths.max())
        X = np.ascontiguousarray(data.X[:T, idx])
        if lengths is not None and (lengths == T).all():
            lengths = None
        return _Sequences(X, lengths)

    def _train(self, data, y, **kwargs):
        return self.model_.fit(data.X, y, lengths=data.lengths, **kwargs)

    def _new_model(self, p, seed):
        classifier = isinstance(self, ClassifierMixin)
        return self._model_class(self.n_features_in_, p["hidden_size"], self._n_outputs,
                                 loss="cross_entropy" if classifier else "mse",
                                 many_to_one=True, dtype=p["dtype"], seed=seed,
                                 mse_form="half_mean", num_layers=p["num_layers"],
                                 bidirectional=p["bidirectional"], **self._cell_options(p))

    def _check_continuation(self, p):
        super()._check_continuation(p)
        m = self.model_
        if ((m.hidden_size, m.num_layers, m.bidirectional, m.output_size)
                != (p["hidden_size"], p["num_layers"], p["bidirectional"], self._n_outputs)
                or any(getattr(m, k) != v for k, v in self._cell_options(p).items())):
            raise ValueError(f"warm_start: continues the fitted {m!r:.200}; fit again without "
                             f"warm_start for another architecture or other outputs")

    def _outputs(self, model, data):
        """The readout of each sequence's last step (logits for classifiers), float64,
        in blocks of sequences (each cut to its longest sequence)."""
        N = data.X.shape[1]
        out = np.empty((N, model.output_size), dtype=np.float64)
        for start in range(0, N, _PREDICT_BLOCK):
            block = slice(start, min(start + _PREDICT_BLOCK, N))
            lengths = None if data.lengths is None else data.lengths[block]
            T = data.X.shape[0] if lengths is None else int(lengths.max())
            out[block] = model.forward(data.X[:T, block], lengths=lengths)[0]
        return out

    def _probabilities(self, logits):
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags


_SEQUENCE_DOC_INPUT = """
    X is batch-first: a 3-D array ``(n_samples, T, n_features)``; a list of
    2-D arrays ``(T_i, n_features)`` of different lengths (each sequence runs
    over its own T_i steps through the kernels' ``lengths=``: no work on
    padding, the readout at each sequence's own last step); or a 2-D array
    ``(n_samples, T)``, one feature per step (which is how scikit-learn's
    tools, Pipeline and the estimator checks, pass tables). The length may
    differ between fit and predict; the number of features per step may not
    (``n_features_in_``).

    scikit-learn's ``check_estimator`` passes except for the checks that read
    a 2-D X's columns as features, while here they are time steps
    (:func:`fastbp.sklearn.expected_failed_checks` lists them with the
    reason): ``check_n_features_in`` (``n_features_in_`` counts features per
    step), ``check_n_features_in_after_fitting`` and
    ``check_estimators_partial_fit_n_features`` (fewer columns are shorter
    sequences, valid input), ``check_classifiers_train`` (it requires
    ``predict(X.T)`` to fail, but that is valid input: 2 long sequences)."""

_SEQUENCE_DOC_PARAMETERS = """
    hidden_size : int >= 1, default=32
        Units of each recurrent layer (and direction).
    num_layers : int >= 1, default=1
        Stacked recurrent layers.
    bidirectional : bool, default=False
        Each layer also reads the sequences backwards; the readout reads the
        top layer's two final states."""

_SEQUENCE_DOC_TRAINING = """
    solver : {"adam", "sgd"}, default="adam"
    alpha : float >= 0, default=0.0001
        L2 penalty on every weight matrix, as scikit-learn's MLPs count it:
        ``(alpha/2)·Σ‖W‖²/batch_size``.""" + _TRAINING_DOC_PARAMETERS.replace(
    '''    batch_size : int or "auto"
        Samples per optimizer step (at most n_samples); "auto" is
        ``min(200, n_samples)``.''',
    '''    batch_size : int or "auto", default=32
        Sequences per optimizer step; "auto" is ``min(200, n_samples)``.''').replace(
    "    clip_norm : float > 0 or None\n",
    "    clip_norm : float > 0 or None, default=5.0\n")

_SEQUENCE_DOC_ATTRIBUTES = """
    n_features_in_ : int
        Features per step.""" + _TRAINING_DOC_ATTRIBUTES


def _sequence_doc(title, cell, extra_params, classifier):
    what = ("one label per sequence: softmax cross-entropy on the readout of the last step"
            if classifier else "one value (or vector) per sequence: the squared error ½·mean "
            "on the readout of the last step")
    attrs = ("\n    classes_ : ndarray\n        The class labels." if classifier
             else "\n    n_outputs_ : int")
    return f"""{title}

    {cell} (:class:`fastbp.{cell}`, ``many_to_one=True``) and a linear readout,
    {what}; trained by mini-batch Adam or SGD through the compiled forward and
    backpropagation through time.
    {_SEQUENCE_DOC_INPUT}

    Parameters
    ----------{_SEQUENCE_DOC_PARAMETERS}{extra_params}{_SEQUENCE_DOC_TRAINING}

    Attributes
    ----------{attrs}{_SEQUENCE_DOC_ATTRIBUTES}
    """


_RNN_DOC = """
    nonlinearity : {"tanh", "relu"}, default="tanh\""""
_LSTM_DOC = """
    peepholes : bool, default=False
        Graves' peephole connections."""


class _RNNEstimator(_SequenceEstimator):
    _model_class = RNN

    def _cell_options(self, p):
        return {"nonlinearity": _choice(self.nonlinearity, "nonlinearity", ("tanh", "relu"))}


class _LSTMEstimator(_SequenceEstimator):
    _model_class = LSTM

    def _cell_options(self, p):
        return {"peepholes": _bool(self.peepholes, "peepholes")}


class _GRUEstimator(_SequenceEstimator):
    _model_class = GRU


class RNNClassifier(_ClassifierMixin, _RNNEstimator):
    __doc__ = _sequence_doc("An Elman RNN classifier of sequences (sequence in, label out).",
                            "RNN", _RNN_DOC, True)

    def __init__(self, hidden_size: int = 32, num_layers: int = 1, bidirectional: bool = False,
                 nonlinearity: str = "tanh", *, solver: str = "adam", alpha: float = 0.0001,
                 batch_size: Union[int, str] = 32, learning_rate_init: float = 0.001,
                 lr_schedule: Union[None, str, LRSchedule] = None, max_iter: int = 100,
                 shuffle: bool = True, random_state: Any = None, tol: float = 1e-4,
                 verbose: bool = False, warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int = 10,
                 clip_norm: Optional[float] = 5.0, dtype: str = "float64"):
        _keep(self, locals())


class RNNRegressor(_RegressorMixin, _RNNEstimator):
    __doc__ = _sequence_doc("An Elman RNN regressor of sequences (sequence in, value out).",
                            "RNN", _RNN_DOC, False)

    def __init__(self, hidden_size: int = 32, num_layers: int = 1, bidirectional: bool = False,
                 nonlinearity: str = "tanh", *, solver: str = "adam", alpha: float = 0.0001,
                 batch_size: Union[int, str] = 32, learning_rate_init: float = 0.001,
                 lr_schedule: Union[None, str, LRSchedule] = None, max_iter: int = 100,
                 shuffle: bool = True, random_state: Any = None, tol: float = 1e-4,
                 verbose: bool = False, warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int = 10,
                 clip_norm: Optional[float] = 5.0, dtype: str = "float64"):
        _keep(self, locals())


class LSTMClassifier(_ClassifierMixin, _LSTMEstimator):
    __doc__ = _sequence_doc("An LSTM classifier of sequences (sequence in, label out).",
                            "LSTM", _LSTM_DOC, True)

    def __init__(self, hidden_size: int = 32, num_layers: int = 1, bidirectional: bool = False,
                 peepholes: bool = False, *, solver: str = "adam", alpha: float = 0.0001,
                 batch_size: Union[int, str] = 32, learning_rate_init: float = 0.001,
                 lr_schedule: Union[None, str, LRSchedule] = None, max_iter: int = 100,
                 shuffle: bool = True, random_state: Any = None, tol: float = 1e-4,
                 verbose: bool = False, warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int = 10,
                 clip_norm: Optional[float] = 5.0, dtype: str = "float64"):
        _keep(self, locals())


class LSTMRegressor(_RegressorMixin, _LSTMEstimator):
    __doc__ = _sequence_doc("An LSTM regressor of sequences (sequence in, value out).",
                            "LSTM", _LSTM_DOC, False)

    def __init__(self, hidden_size: int = 32, num_layers: int = 1, bidirectional: bool = False,
                 peepholes: bool = False, *, solver: str = "adam", alpha: float = 0.0001,
                 batch_size: Union[int, str] = 32, learning_rate_init: float = 0.001,
                 lr_schedule: Union[None, str, LRSchedule] = None, max_iter: int = 100,
                 shuffle: bool = True, random_state: Any = None, tol: float = 1e-4,
                 verbose: bool = False, warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int = 10,
                 clip_norm: Optional[float] = 5.0, dtype: str = "float64"):
        _keep(self, locals())


class GRUClassifier(_ClassifierMixin, _GRUEstimator):
    __doc__ = _sequence_doc("A GRU classifier of sequences (sequence in, label out).",
                            "GRU", "", True)

    def __init__(self, hidden_size: int = 32, num_layers: int = 1, bidirectional: bool = False,
                 *, solver: str = "adam", alpha: float = 0.0001,
                 batch_size: Union[int, str] = 32, learning_rate_init: float = 0.001,
                 lr_schedule: Union[None, str, LRSchedule] = None, max_iter: int = 100,
                 shuffle: bool = True, random_state: Any = None, tol: float = 1e-4,
                 verbose: bool = False, warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int = 10,
                 clip_norm: Optional[float] = 5.0, dtype: str = "float64"):
        _keep(self, locals())


class GRURegressor(_RegressorMixin, _GRUEstimator):
    __doc__ = _sequence_doc("A GRU regressor of sequences (sequence in, value out).",
                            "GRU", "", False)

    def __init__(self, hidden_size: int = 32, num_layers: int = 1, bidirectional: bool = False,
                 *, solver: str = "adam", alpha: float = 0.0001,
                 batch_size: Union[int, str] = 32, learning_rate_init: float = 0.001,
                 lr_schedule: Union[None, str, LRSchedule] = None, max_iter: int = 100,
                 shuffle: bool = True, random_state: Any = None, tol: float = 1e-4,
                 verbose: bool = False, warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int = 10,
                 clip_norm: Optional[float] = 5.0, dtype: str = "float64"):
        _keep(self, locals())
