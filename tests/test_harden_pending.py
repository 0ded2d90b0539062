"""PENDING: hardening (issue #8) failures in the RNN/LSTM files, for their owner.

Each test states the promise and fails today; it is marked
``xfail(strict=True)``, so the suite stays green now and FAILS as soon as the
fix lands (an unexpected pass): then delete the marker, and the matching
``pending=`` entry in tests/fbp_fuzz/table.py. The fixes are described in
each test's docstring (and in the hardening report)."""
import numpy as np
import pytest

from fastbp import reference as R
from fastbp.lstm import LSTM
from fastbp.rnn import RNN, rnn_forward

pending = pytest.mark.xfail(strict=True, reason="pending a fix in the RNN/LSTM files (see docstring)")


@pending
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rnn_relu_keeps_nan(dtype):
    """src_c/rnn_body.h, rnn_phi: `a > 0 ? a : 0` maps NaN to 0, so finite inputs
    that overflow (inf - inf in the recurrent product) give a finite, wrong state
    where the reference gives NaN. Fix: `return a < 0 ? (REAL)0 : a;` (the same
    select; NaN passes, as in np.maximum; done so in elementwise_body.h and mlp_body.h)."""
    big = np.finfo(dtype).max / 4
    x = np.full((3, 1, 1), big, dtype)
    W = np.full((2, 1), big, dtype)
    U = np.array([[1.0, -1.0], [1.0, 1.0]], dtype)
    b = np.zeros(2, dtype)
    with np.errstate(all="ignore"):
        y, _, _ = rnn_forward(x, None, W, U, b, b, "relu")
        y_ref = R.rnn_forward(x, None, W, U, b, b, "relu")[0]
    assert np.isnan(y_ref).any()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(y_ref))


@pending
@pytest.mark.parametrize("cls", [RNN, LSTM])
def test_a_ragged_target_is_refused_by_name(cls):
    """fastbp/_seqmodel.py, SequenceModel._check_Y: `np.asarray(Y)` raises NumPy's
    "setting an array element with a sequence" without naming Y. Fix: use
    `as_array(Y, "Y")` from fastbp._validate (it names the argument)."""
    model = cls(1, 2, 3, loss="cross_entropy")
    with pytest.raises(ValueError, match="^Y: "):
        model.loss_and_grad(np.zeros((2, 1, 1)), [[0], [0, 1]])


@pending
@pytest.mark.parametrize("cls", [RNN, LSTM])
def test_integer_one_hot_targets_are_accepted(cls):
    """fastbp/_seqmodel.py, SequenceModel._check_Y tells labels from one-hot targets
    by dtype (integers = labels), so integer one-hot Y (T, B, O) - np.eye(O, dtype=int)[labels],
    which the MLP, fastbp.softmax_cross_entropy and the reference accept - is refused.
    Fix: tell them apart by shape, as the reference does: labels when Y.ndim ==
    len(lead) (and then they must be integers), else one-hot / probabilities of any
    real dtype via float_array."""
    rng = np.random.default_rng(0)
    model = cls(2, 4, 3, loss="cross_entropy", dtype="float64", seed=0)
    X, labels = rng.standard_normal((5, 2, 2)), rng.integers(0, 3, (5, 2))
    loss_labels = model.loss_and_grad(X, labels)[0]
    loss_one_hot = model.loss_and_grad(X, np.eye(3, dtype=np.int64)[labels])[0]
    assert loss_one_hot == pytest.approx(loss_labels, rel=1e-12)


def test_pending_list_is_current():
    """Every `pending=` corruption in the fuzzing table has a strict-xfail test above."""
    from fbp_fuzz.table import ENTRIES
    pending_kinds = {c for e in ENTRIES for o in [{k: v[0] for k, v in e.options.items()}]
                     for a in e.args(o) for c in a.pending}
    assert pending_kinds <= {"ragged"}      # test_a_ragged_target_is_refused_by_name
