"""The compiled checks of arrays (fastbp/_arrays.pxi, src_c/finite.c): the
common case of every argument check, which must accept exactly what the
Python path accepts unchanged and find every NaN and infinity, and the overlap
check of output buffers, which must agree with np.may_share_memory."""
import numpy as np
import pytest

from fastbp import _core
from fastbp._validate import float_array

DTYPES = (np.float32, np.float64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 8, 4095, 4096, 4097, 3 * 4096 + 5])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_every_position_of_a_non_finite_value_is_found(dtype, n, bad):
    x = np.linspace(-3, 3, n).astype(dtype)
    assert _core.ready_float_array(x, -1, 1, None, True) is x
    for i in sorted({0, n // 2, n - 1, min(4096, n - 1)}):
        y = x.copy()
        y[i] = bad
        assert _core.ready_float_array(y, -1, 1, None, True) is None
        assert _core.ready_float_array(y, -1, 1, None, False) is y      # unchecked: accepted
        with pytest.raises(ValueError, match="x: contains NaN or infinity"):
            float_array(y, "x")


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_finite_values_and_subnormals_are_finite(dtype):
    info = np.finfo(dtype)
    x = np.array([info.max, -info.max, info.tiny, info.smallest_subnormal, -0.0, 0.0], dtype)
    assert _core.ready_float_array(x, -1, 1, None, True) is x
    assert float_array(x, "x") is x


def test_anything_but_a_plain_array_of_the_dtype_and_shape_goes_to_the_python_path():
    x = np.arange(12.0).reshape(3, 4)
    num = np.dtype(np.float64).num
    assert _core.ready_float_array(x, num, 2, (3, 4), True) is x
    assert _core.ready_float_array(x, num, 2, (None, 4), True) is x
    refused = {
        "another dtype": (x.astype(np.float32), num, 2, None),
        "byte-swapped": (x.astype(x.dtype.newbyteorder()), num, 2, None),
        "integers": (np.arange(12).reshape(3, 4), -1, 2, None),
        "strided": (x[:, ::2], num, 2, None),
        "Fortran order": (np.asfortranarray(x), num, 2, None),
        "a subclass": (x.view(np.ma.MaskedArray), num, 2, None),
        "another rank": (x, num, 3, None),
        "another shape": (x, num, 2, (3, 5)),
        "a shape of another rank": (x, num, 2, (3, 4, 1)),
        "a list": (x.tolist(), num, 2, None),
    }
    raw = np.zeros(x.nbytes + 1, np.uint8)[1:]
    misaligned = raw.view(np.float64).reshape(3, 4)
    misaligned[...] = x
    refused["misaligned"] = (misaligned, num, 2, None)
    for how, (arr, t, ndim, shape) in refused.items():
        assert _core.ready_float_array(arr, t, ndim, shape, True) is None, how
    # and what the Python path then makes of them: the same values, aligned and contiguous
    for how in ("byte-swapped", "strided", "Fortran order", "misaligned"):
        arr = refused[how][0]
        out = float_array(arr, "x", dtype=np.float64)
        assert out is not arr and out.flags.c_contiguous and out.flags.aligned, how
        np.testing.assert_array_equal(out, arr)


def test_read_only_arrays_are_accepted_as_they_are():
    x = np.ones((2, 3))
    x.flags.writeable = False
    assert float_array(x, "x", ndim=2) is x


def test_first_overlap_agrees_with_numpys_bounds_check():
    """Views of one buffer (negative strides, steps, empty ones) and separate
    arrays: a pair is reported exactly when np.may_share_memory says so, the
    first one in the documented order."""
    rng = np.random.default_rng(5)
    base = np.zeros(400)
    views = [base[10:50], base[::-1][:30], base[100:200:7], base[45:45], base.reshape(20, 20)[:, 3],
             base.reshape(20, 20)[::-2, ::3], np.zeros(10), np.zeros((3, 0)), base[390:], base[0:5]]
    for _ in range(300):
        picked = [views[i] for i in rng.integers(0, len(views), rng.integers(1, 7))]
        cut = int(rng.integers(0, len(picked) + 1))
        bufs, others = picked[:cut], picked[cut:] + ["not an array"]
        want = None
        for i, a in enumerate(bufs):
            hits = [(i, j, False) for j, b in enumerate(others)
                    if isinstance(b, np.ndarray) and np.may_share_memory(a, b)]
            hits += [(i, j, True) for j, b in enumerate(bufs[:i]) if np.may_share_memory(a, b)]
            if hits:
                want = hits[0]
                break
        assert _core.first_overlap(bufs, others) == want
