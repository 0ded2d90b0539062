"""The sequence models' and stacks' validation names what it refuses (ragged
targets, lengths, resets and stack parameters, huge resets before conversion)
and accepts integer one-hot targets; each test states the promise and the fix
behind it."""
import numpy as np
import pytest

from fastbp.rnn import rnn_forward

from cells import cells
from cells.cells import MODEL_CELLS
from memory_limits import no_big_allocation

@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_a_ragged_target_is_refused_by_name(cell):
    """fastbp/_seqmodel.py, SequenceModel._check_Y: `np.asarray(Y)` raises NumPy's
    "setting an array element with a sequence" without naming Y. Fix: use
    `as_array(Y, "Y")` from fastbp._validate (it names the argument)."""
    model = cells.model(cell, 1, 2, 3, loss="cross_entropy")
    with pytest.raises(ValueError, match="^Y: "):
        model.loss_and_grad(np.zeros((2, 1, 1)), [[0], [0, 1]])


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_integer_one_hot_targets_are_accepted(cell):
    """fastbp/_seqmodel.py, SequenceModel._check_Y tells labels from one-hot targets
    by dtype (integers = labels), so integer one-hot Y (T, B, O) - np.eye(O, dtype=int)[labels],
    which the MLP, fastbp.softmax_cross_entropy and the reference accept - is refused.
    Fix: tell them apart by shape, as the reference does: labels when Y.ndim ==
    len(lead) (and then they must be integers), else one-hot / probabilities of any
    real dtype via float_array."""
    rng = np.random.default_rng(0)
    model = cells.model(cell, 2, 4, 3, loss="cross_entropy", dtype="float64", seed=0)
    X, labels = rng.standard_normal((5, 2, 2)), rng.integers(0, 3, (5, 2))
    loss_labels = model.loss_and_grad(X, labels)[0]
    loss_one_hot = model.loss_and_grad(X, np.eye(3, dtype=np.int64)[labels])[0]
    assert loss_one_hot == pytest.approx(loss_labels, rel=1e-12)


@pytest.mark.parametrize("name", ["lengths", "reset"])
def test_ragged_lengths_and_resets_are_refused_by_name(name):
    """fastbp/_sequence.py, lengths_array and reset_array: `np.asarray(...)` raises
    NumPy's unnamed error for a ragged list. Fix: `as_array(lengths, name)` /
    `as_array(reset, name)` from fastbp._validate."""
    x, W, U, b = np.zeros((2, 2, 1)), np.zeros((3, 1)), np.zeros((3, 3)), np.zeros(3)
    bad = {"lengths": [[1], [1, 2]], "reset": [[0], [0, 1]]}[name]
    with pytest.raises(ValueError, match=f"^{name}: "):
        rnn_forward(x, None, W, U, b, b, **{name: bad})


def test_a_huge_reset_is_refused_before_it_is_converted():
    """fastbp/_sequence.py, reset_array: `np.isin(arr, (0, 1))` and `astype(bool)`
    run before the shape check, so an integer reset of the wrong (huge) shape is
    copied first: 4 GiB for this zero-stride (2**16, 2**16) view, a MemoryError
    or a swapping machine instead of the ValueError naming reset. Fix: move the
    `if arr.shape != (T, B)` check up, right after np.asarray (as_array)."""
    x, W, U, b = np.zeros((2, 2, 1)), np.zeros((3, 1)), np.zeros((3, 3)), np.zeros(3)
    huge = np.broadcast_to(np.int8(0), (2**16, 2**16))
    with no_big_allocation(), pytest.raises(ValueError, match="reset"):
        rnn_forward(x, None, W, U, b, b, reset=huge)


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_a_ragged_stack_parameter_is_refused_by_name(cell):
    """The stack's hidden size is read from weight_hh_l0 before the other
    checks: a ragged list there is refused by name (fastbp/_stack.py,
    hidden_size), not with NumPy's unnamed "setting an array element with a
    sequence"."""
    params = cells.stack_params(cell, np.random.default_rng(0), 3, 2, 1, False)
    params["weight_hh_l0"] = [[0.0, 0.0], [0.0]]
    with pytest.raises(ValueError, match="weight_hh_l0"):
        cells.stack_forward(cell, np.zeros((2, 1, 3)), params, (None,) * len(cell.state_names),
                            1, False)


def test_no_pending_corruptions_are_left_in_the_fuzzing_table():
    """Every corruption the fuzzing table knows is generated for every argument."""
    from fbp_fuzz.table import ENTRIES
    pending_kinds = {c for e in ENTRIES for o in [{k: v[0] for k, v in e.options.items()}]
                     for a in e.args(o) for c in a.pending}
    assert pending_kinds == set()
