"""Input validation at the Python boundary.

Every public function and model method passes its arrays through here before
anything reaches compiled code, so a bad argument becomes a ValueError or
TypeError that names it, with the expected and the actual shape or dtype,
and the kernels only ever see aligned, C-contiguous float32/float64 buffers
whose sizes fit BLAS's 32-bit integers. Sizes are checked before anything is
copied, so an oversized request (even a zero-stride view that takes no
memory) is refused without allocating.

Dtype rule: float32 and float64 are computed in their own precision. Integers,
booleans and float16 are converted to the dtype asked for (float64 when none
is). Complex, object, string and other dtypes are refused with a TypeError.
Byte order does not matter: a big-endian float32 array is computed in float32.
"""
import math
import numbers
import operator

import numpy as np

from . import _core

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_INT32_MAX = 2**31 - 1
# float_array's fast path: a dtype spec as NumPy's type number
_FLOAT_NUMS = {d: np.dtype(d).num for d in (np.float32, np.float64, "float32", "float64",
                                             np.dtype(np.float32), np.dtype(np.float64))}


def resolve_dtype(dtype, name="dtype"):
    """Return np.float32 or np.float64 for a dtype spec, else TypeError."""
    try:
        d = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"{name}: expected 'float32' or 'float64', got {dtype!r}") from e
    if d not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected 'float32' or 'float64', got {d}")
    return d


def as_numpy(value):
    """A NumPy view of an array-like; CPU torch tensors via .numpy() (no torch import)."""
    if not isinstance(value, np.ndarray) and hasattr(value, "detach") and hasattr(value, "numpy"):
        value = value.detach().cpu().numpy()
    return value


def as_array(x, name):
    """``np.asarray(x)``, with NumPy's own complaints (a ragged nested list, an
    object whose ``__array__`` fails) turned into errors that name the argument.

    Every array argument of every entry point comes through here. A tensor that
    records gradients (torch's ``requires_grad=True``) is read through its
    ``detach()``: its values, as for any other array-like (fastbp computes its
    own gradients and never writes into an argument)."""
    if isinstance(x, np.ndarray):
        return x
    if getattr(x, "requires_grad", False) is True and callable(getattr(x, "detach", None)):
        x = x.detach()
    try:
        return np.asarray(x)
    except (ValueError, TypeError, RuntimeError) as e:
        err = TypeError if isinstance(e, RuntimeError) else type(e)
        raise err(f"{name}: cannot be read as an array: {e}") from e


def readable(a, name):
    """``a`` itself when it is an ndarray or can be indexed lazily (shape,
    ndim, dtype and __getitem__: a memory map, an HDF5 dataset), else
    ``as_array(a, name)``: what NumPy cannot read is refused by name."""
    if isinstance(a, np.ndarray) or all(hasattr(a, k) for k in ("shape", "ndim", "dtype",
                                                                  "__getitem__")):
        return a
    return as_array(a, name)


def _native_float(dtype):
    """float32/float64 in native byte order for any float32/float64 dtype, else None."""
    if dtype.kind == "f" and dtype.itemsize in (4, 8):
        return np.dtype(np.float32 if dtype.itemsize == 4 else np.float64)
    return None


def _kernel_ready(arr, dtype):
    """`arr` itself when it is an aligned C-contiguous ndarray of `dtype`, else a
    copy that is (np.array keeps 0-d arrays 0-d, unlike np.ascontiguousarray)."""
    if arr.dtype != dtype or not (arr.flags.c_contiguous and arr.flags.aligned):
        return np.array(arr, dtype=dtype, order="C")
    return arr if type(arr) is np.ndarray else arr.view(np.ndarray)


def float_array(x, name, dtype=None, ndim=None, shape=None, finite=True):
    """Return `x` as an aligned, C-contiguous float32/float64 array, validated.

    dtype: the dtype to compute in; None keeps float32/float64 inputs as they
    are and converts other real numbers to float64.
    ndim / shape: required rank / shape; `None` entries in `shape` match anything.
    finite: refuse NaN and ±inf.
    The input is never modified; a copy is made only when needed, and only
    after the shape and the 32-bit size limits are checked.
    """
    if type(x) is np.ndarray:                   # the common case, checked in compiled code
        num = -1 if dtype is None else (_FLOAT_NUMS.get(dtype, -2)
                                        if isinstance(dtype, (type, str, np.dtype)) else -2)
        if num != -2 and _core.ready_float_array(x, num, -1 if ndim is None else ndim, shape,
                                                 finite) is not None:
            return x
    if x is None:
        raise TypeError(f"{name}: expected an array, got None")
    arr = as_array(x, name)
    kind = arr.dtype.kind
    if kind not in "fiub" or arr.dtype.itemsize > 8 and kind == "f":
        raise TypeError(f"{name}: expected a real floating-point array (float32 or float64), "
                        f"got dtype {arr.dtype}")
    target = resolve_dtype(dtype, name) if dtype is not None else (
        _native_float(arr.dtype) or np.dtype(np.float64))
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array"
                         + (f" of shape {_fmt(shape)}" if shape is not None else "")
                         + f", got shape {arr.shape}")
    if shape is not None:
        check_shape(arr, name, shape)
    check_blas_size(arr, name)
    arr = _kernel_ready(arr, target)
    if finite and arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or infinity")
    return arr


def label_array(y, name, n_classes, shape=None):
    """Integer class labels as an aligned, C-contiguous int64 array in [0, n_classes).

    Always a copy, made before the range is checked: labels index memory in
    the kernels, which read them without the GIL, so the array checked must
    be one that no other thread can rewrite (fastbp's own)."""
    arr = as_array(y, name)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer class labels, got dtype {arr.dtype}")
    if shape is not None:
        check_shape(arr, name, shape)
    check_blas_size(arr, name)
    arr = np.array(arr, dtype=np.int64, order="C", copy=True)
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError(f"{name}: class labels must lie in [0, {n_classes}), "
                         f"got values in [{arr.min()}, {arr.max()}]")
    return arr


def check_shape(arr, name, shape):
    """ValueError unless arr.shape matches `shape` (None entries match anything)."""
    if len(arr.shape) != len(shape) or any(s is not None and a != s for a, s in zip(arr.shape, shape)):
        raise ValueError(f"{name}: expected shape {_fmt(shape)}, got {arr.shape}")


def check_blas_size(arr, name):
    """Every dimension and every 2-D view must fit BLAS's 32-bit ints."""
    if any(d > _INT32_MAX for d in arr.shape) or arr.size > _INT32_MAX * 64:
        raise ValueError(f"{name}: shape {arr.shape} is too large for 32-bit BLAS indices")
    if arr.ndim >= 2:
        rows = math.prod(arr.shape[:-1])   # exact Python ints; np.prod costs ~7 µs a call
        if rows > _INT32_MAX:
            raise ValueError(f"{name}: {rows} rows (shape {arr.shape}) exceed 32-bit BLAS indices")


def positive_int(n, name):
    """An integer >= 1 (bools refused)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name}: expected a positive integer, got {n!r}")
    n = operator.index(n)
    if n < 1:
        raise ValueError(f"{name}: expected a positive integer, got {n}")
    if n > _INT32_MAX:
        raise ValueError(f"{name}: {n} exceeds 32-bit BLAS indices")
    return n


def flag(value, name):
    """True or False (NumPy's bool too); anything else is refused by name:
    bool("no") is True, which is not what the caller meant."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def nonnegative_float(x, name):
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not np.isfinite(x) or x < 0:
        raise ValueError(f"{name}: expected a finite number >= 0, got {x!r}")
    return float(x)


def choice(value, name, options):
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def _fmt(shape):
    return "(" + ", ".join("any" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"



def pinned_copy(a, dtype):
    """(public, private, pin): two C-contiguous arrays of `dtype` over one
    bytearray holding a copy of the array `a`, and a memoryview of it (the
    pin). A model hands out `public`, gives its kernels `private` and keeps
    the pin: NumPy can move an array's data in place (``a.__setstate__``,
    ``a.resize(refcheck=False)``) and free the old buffer, even while a kernel
    reads it without the GIL. Neither array can be resized (they do not own
    their data), moving `public`'s data detaches it from the storage without
    freeing anything, and while the pin lives the storage is never freed nor
    resized."""
    dtype = np.dtype(dtype)
    store = bytearray(max(a.size * dtype.itemsize, 1))
    pin = memoryview(store)
    public = np.frombuffer(store, dtype, count=a.size).reshape(a.shape)
    public[...] = a
    private = np.frombuffer(store, dtype, count=a.size).reshape(a.shape)
    return public, private, pin
