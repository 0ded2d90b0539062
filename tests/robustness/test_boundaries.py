"""Boundaries: sizes past 32-bit indices are refused
before anything is allocated, at every entry point; and one regression test
for each boundary bug the fuzzing harness (tests/fuzz/test_fuzz.py) found."""
import numpy as np
import pytest

import fastbp
from fastbp import reference as R
from fastbp.mlp import MLP
from fastbp.optim import SGD
from fbp_fuzz.spec import blame_all, plain_example, shape_of
from fbp_fuzz.table import ENTRIES, FakeComm
from memory_limits import no_big_allocation

HUGE = 2**31            # one more than the largest 32-bit BLAS index


def huge_view(ndim, dtype):
    """A zero-stride array that takes no memory but whose shape does not fit
    32-bit BLAS indices: one axis of 2**31, or (ndim >= 3) 2**32 rows."""
    if ndim >= 3:
        shape = (2**16, 2**16) + (2,) * (ndim - 2)
    else:
        shape = (HUGE,) + (2,) * (ndim - 1)
    return np.broadcast_to(np.zeros((), dtype), shape)


def _huge_cases():
    for entry in ENTRIES:
        seen = set()
        for options in ({}, {"varlen": True}) if "varlen" in entry.options else ({},):
            ex = plain_example(entry, **options)
            for arg in ex.args:
                if shape_of(arg, ex) and arg.name not in seen:
                    seen.add(arg.name)
                    yield pytest.param(entry, arg.name, options, id=f"{entry.id}-{arg.name}")


@pytest.mark.parametrize("entry, name, options", list(_huge_cases()))
def test_sizes_past_32_bit_indices_are_refused_by_name_before_allocating(entry, name, options):
    ex = plain_example(entry, **options)
    if entry.setup is not None:
        entry.setup(ex)
    arg = next(a for a in ex.args if a.name == name)
    if arg.kind in ("labels", "lengths", "mask"):
        dtype = np.int32                      # not int64 or bool: a conversion would copy
    else:
        dtype = np.float32 if ex.comp == np.float64 else np.float64
    ex.a[name] = huge_view(len(shape_of(arg, ex)), dtype)
    with no_big_allocation():
        with pytest.raises((ValueError, TypeError)) as info:
            entry.call(ex)
    assert any(n in str(info.value) for n in blame_all(ex, arg)), str(info.value)


@pytest.mark.parametrize("call, match", [
    (lambda v: fastbp.activation_forward(v, "tanh"), r"z: 4294967296 rows .* exceed 32-bit"),
    (lambda v: fastbp.rnn_forward(v, None, np.zeros((3, 2)), np.zeros((3, 3)), np.zeros(3),
                                  np.zeros(3)), r"x: 4294967296 rows"),
    (lambda v: MLP([2, 3]).fit(np.broadcast_to(v[0, 0], (HUGE, 2)),
                               np.broadcast_to(np.int32(0), (HUGE,)), progress=False),
     r"X: shape \(2147483648, 2\) is too large"),
], ids=["activation", "rnn_forward", "mlp_fit"])
def test_the_refusal_says_why(call, match):
    v = np.broadcast_to(np.float32(0), (2**16, 2**16, 2))
    with no_big_allocation(), pytest.raises(ValueError, match=match):
        call(v)


# ---- regressions: one per boundary bug the harness found ----------------------------------------
def misaligned(a):
    buf = np.zeros(a.nbytes + 1, np.uint8)
    m = buf[1:].view(a.dtype).reshape(a.shape)
    m[...] = a
    assert not m.flags.aligned
    return m


def test_misaligned_arrays_are_computed_not_refused():
    """NumPy hands out misaligned views (e.g. of a byte buffer); reading doubles
    from them is undefined behaviour in C, so they are copied, never passed on
    (the MLP refused them with a confusing message, the others passed them)."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((5, 4)), np.array([0, 2, 1, 1, 0])
    net = MLP([4, 3], dtype="float64")
    loss, grads = net.loss_and_grad(misaligned(X), misaligned(y))
    assert loss == net.loss_and_grad(X, y)[0]
    z = misaligned(rng.standard_normal((3, 4)))
    np.testing.assert_array_equal(fastbp.activation_forward(z, "tanh"),
                                  fastbp.activation_forward(np.array(z), "tanh"))
    assert fastbp.softmax_cross_entropy(X, misaligned(y))[0] == fastbp.softmax_cross_entropy(X, y)[0]


def test_zero_d_arrays_are_refused_not_turned_into_one_element_arrays():
    with pytest.raises(ValueError, match="z: .*scalar"):
        fastbp.activation_forward(np.float64(2.0), "tanh")
    with pytest.raises(ValueError, match="logits"):
        fastbp.softmax_cross_entropy(np.float64(1.0), np.int64(0))


def test_big_endian_float32_is_computed_in_float32():
    z = np.linspace(-2, 2, 6).astype(">f4")
    a = fastbp.activation_forward(z, "sigmoid")
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, fastbp.activation_forward(z.astype(np.float32), "sigmoid"))


@pytest.mark.parametrize("call, name", [
    (lambda: fastbp.activation_forward([[1.0, 2.0], [3.0]], "tanh"), "z"),
    (lambda: fastbp.softmax_cross_entropy(np.zeros((2, 3)), [[1.0, 2.0, 0.0], [3.0]]), "target"),
    (lambda: MLP([2, 2]).loss_and_grad(np.zeros((2, 2)), [[0], [0, 1]]), "y"),
    (lambda: MLP([2, 2]).fit(np.zeros((2, 2)), [[0], [0, 1]], progress=False), "y"),
    (lambda: SGD().step([np.zeros(2)], [[1.0, [2.0]]]), r"grads\[0\]"),
])
def test_ragged_lists_are_refused_by_name(call, name):
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_keeps_nan_as_the_reference_does(dtype):
    z = np.array([np.nan, -1.0, 2.0], dtype)
    np.testing.assert_array_equal(fastbp.activation_forward(z, "relu"), [np.nan, 0, 2])
    # In the MLP: finite inputs overflow to h1 = (inf, inf), so layer 2 gets inf - inf = NaN.
    # relu used to map that NaN to 0, and the zero output weights then gave a finite,
    # wrong output; NaN, as in the reference, says the network overflowed.
    big = np.finfo(dtype).max
    net = MLP([1, 2, 1, 2], activation="relu", output="softmax", dtype=dtype)
    net.params = [(np.full((2, 1), big), np.zeros(2)), (np.array([[1.0, -1.0]]), np.zeros(1)),
                  (np.zeros((2, 1)), np.zeros(2))]
    x = np.full((1, 1), big, dtype)
    with np.errstate(all="ignore"):
        ref = R.mlp_forward(x, net.params, net.activations)[0]
    assert np.isnan(ref).all()
    assert np.isnan(net.forward(x)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_of_huge_equal_logits_is_ln_k(dtype):
    """(m + ln Σ) − x_k lost ln Σ to rounding once |m| ≫ 1e15; (m − x_k) + ln Σ does not."""
    big = 1e30 if dtype == np.float32 else 1e300
    logits = np.full((2, 3), big, dtype)
    loss, d = fastbp.softmax_cross_entropy(logits, np.array([0, 2]))
    assert loss == pytest.approx(np.log(3), rel=1e-6)
    loss_p, _ = fastbp.softmax_cross_entropy(logits, np.eye(3, dtype=dtype)[[0, 2]])
    assert loss_p == pytest.approx(np.log(3), rel=1e-6)
    net = MLP([1, 3], output="softmax", dtype=dtype)
    net.params = [(np.zeros((3, 1)), np.full(3, big))]
    assert net.loss_and_grad(np.ones((2, 1), dtype), np.array([0, 1]))[0] == pytest.approx(np.log(3))


def test_integer_one_hot_targets_are_probabilities():
    logits = np.random.default_rng(1).standard_normal((4, 3))
    labels = np.array([0, 2, 1, 1])
    one_hot = np.eye(3, dtype=np.int8)[labels]
    assert fastbp.softmax_cross_entropy(logits, one_hot)[0] == pytest.approx(
        fastbp.softmax_cross_entropy(logits, labels)[0], rel=1e-14)
    with pytest.raises(TypeError, match="target"):
        fastbp.softmax_cross_entropy(logits, labels.astype(float))     # float "labels"


def test_the_loss_of_nothing_is_refused():
    """The mean over no rows is undefined (the reference raises; this returned 0.0)."""
    with pytest.raises(ValueError, match="pred"):
        fastbp.squared_error(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(ValueError, match="logits"):
        fastbp.softmax_cross_entropy(np.zeros((0, 3)), np.zeros(0, int))


def test_mlp_fit_checks_every_target_before_the_first_step():
    X = np.random.default_rng(2).standard_normal((30, 4))
    y = np.arange(30) % 3
    net = MLP([4, 5, 3], dtype="float64")
    before = [p.copy() for _, p in net.named_parameters()]
    for bad, match in ((np.where(np.arange(30) == 29, 7, y), "class labels"),
                       (np.where(np.arange(30)[:, None] == 29, np.nan, np.eye(3)[y]), "NaN")):
        with pytest.raises(ValueError, match=match):
            net.fit(X, bad, batch_size=10, progress=False)      # the bad row is in the last batch
        for (_, p), old in zip(net.named_parameters(), before):
            np.testing.assert_array_equal(p, old)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_of_nan_is_nan(dtype):
    """fbp_exp's 2^n scaling shifted a negative value (undefined behaviour, caught by
    UBSan in the sanitizer build) for a NaN input; it is unsigned arithmetic now."""
    a = fastbp.activation_forward(np.array([np.nan, 0.0], dtype), "sigmoid")
    assert np.isnan(a[0]) and a[1] == 0.5


def test_gradcheck_and_optimizer_name_their_arguments():
    p = np.zeros(3)
    with pytest.raises(TypeError, match=r"params\[0\]"):
        fastbp.gradcheck(lambda: 0.0, [p.astype(np.float32)], [p])
    with pytest.raises(TypeError, match="eps"):
        fastbp.gradcheck(lambda: 0.0, [p], [p], eps="small")
    with pytest.raises(TypeError, match="max_entries"):
        fastbp.gradcheck(lambda: 0.0, [p], [p], max_entries=2.5)
    SGD(0.1).step([p], [np.array([True, False, True])])     # booleans are real numbers
    np.testing.assert_array_equal(p, [-0.1, 0, -0.1])
    with pytest.raises(TypeError, match=r"grads\[0\]"):
        SGD(0.1).step([p], [np.zeros(3, np.longdouble)])


@pytest.mark.parametrize("make", [lambda: MLP([2, 3], dtype="float64"),
                                  lambda: fastbp.RNN(2, 3, 2), lambda: fastbp.LSTM(2, 3, 2),
                                  lambda: fastbp.GRU(2, 3, 2)],
                         ids=["MLP", "RNN", "LSTM", "GRU"])
def test_fit_and_evaluate_with_a_communicator_name_an_argument_numpy_cannot_read(make):
    """fit/evaluate(comm=...) read X and y lazily; a ragged list is still
    refused naming it (it went to a bare np.asarray)."""
    model = make()
    ragged = [[0.0, 1.0], [0.0]]
    good_X = np.zeros((4, 2)) if isinstance(model, MLP) else np.zeros((3, 4, 2))
    good_y = np.zeros(4, dtype=np.int64) if isinstance(model, MLP) else np.zeros((3, 4, 2))
    for X, y, name in ((ragged, good_y, "X"), (good_X, ragged, "y")):
        for call in (lambda: model.fit(X, y, epochs=1, progress=False, comm=FakeComm()),
                     lambda: model.evaluate(X, y, comm=FakeComm())):
            with pytest.raises(ValueError, match=f"^{name}: cannot be read as an array"):
                call()
