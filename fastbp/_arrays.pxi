# Checks of NumPy arrays through NumPy's C API, for the calls whose Python
# overhead is what a user measures (model.step): reading an array's type,
# shape, flags and base from its struct costs nanoseconds where the Python
# attributes (x.flags, x.shape, x.dtype) cost a fraction of a microsecond each.
# Anything these refuse goes to the Python path, which converts it or says
# what is wrong by name.

cimport numpy as cnp

cdef extern from "numpy_compat.h":
    pass
from cpython.dict cimport PyDict_GetItem
from cpython.ref cimport PyObject
from cpython.mem cimport PyMem_Malloc, PyMem_Free

cdef extern from "finite.h":
    int fbp_all_finite_f(const float *x, Py_ssize_t n) noexcept nogil
    int fbp_all_finite_d(const double *x, Py_ssize_t n) noexcept nogil

cdef Py_ssize_t _INT32_MAX = 2147483647

cnp.import_array()


cdef inline bint _plain_array(object a, int type_num, int ndim) noexcept:
    """a is exactly an ndarray (no subclass) of type_num in native byte order,
    with ndim dimensions, C-contiguous and aligned."""
    if type(a) is not _np.ndarray:
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    return (cnp.PyArray_TYPE(arr) == type_num and cnp.PyArray_NDIM(arr) == ndim
            and not cnp.PyArray_ISBYTESWAPPED(arr)
            and (cnp.PyArray_FLAGS(arr) & (cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED))
            == (cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED))


cdef inline bint _has_shape(object a, Py_ssize_t d0, Py_ssize_t d1, Py_ssize_t d2) noexcept:
    """a (a _plain_array) has shape (d0, d1[, d2]) (d2 < 0: two dimensions)."""
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(<cnp.ndarray>a)
    return dims[0] == d0 and dims[1] == d1 and (d2 < 0 or dims[2] == d2)


cdef inline object _new_array(int type_num, Py_ssize_t d0, Py_ssize_t d1, Py_ssize_t d2):
    """A new C-contiguous array of type_num, (d0, d1[, d2]) (d2 < 0: two dimensions)."""
    cdef cnp.npy_intp dims[3]
    dims[0], dims[1], dims[2] = d0, d1, d2
    return cnp.PyArray_EMPTY(2 if d2 < 0 else 3, dims, type_num, 0)


def params_intact(params, dict shapes, dict bases, int type_num):
    """Whether every parameter is still the model's own array: params holds
    (a dict, or a subclass of one) exactly the names of shapes, each an ndarray of type_num (native byte
    order), of its shape, C-contiguous and aligned, whose base is bases[name].
    False sends the caller to its checks by name (fastbp._seqmodel)."""
    if not isinstance(params, dict) or len(params) != len(shapes):
        return False
    cdef PyObject *ref
    cdef cnp.npy_intp *dims
    cdef tuple shape
    cdef int d, ndim
    for name, shape in shapes.items():
        ref = PyDict_GetItem(params, name)  # (borrowed; NULL: missing)
        if ref == NULL:
            return False
        p = <object>ref
        ndim = len(shape)
        if not _plain_array(p, type_num, ndim):
            return False
        ref = cnp.PyArray_BASE(<cnp.ndarray>p)
        if ref == NULL or <object>ref is not bases[name]:
            return False
        dims = cnp.PyArray_DIMS(<cnp.ndarray>p)
        for d in range(ndim):
            if dims[d] != <cnp.npy_intp>shape[d]:
                return False
    return True


cdef inline bint _finite_data(const void *p, Py_ssize_t n, bint dbl) noexcept nogil:
    """Every one of the n elements at p is finite."""
    return fbp_all_finite_d(<const double *>p, n) if dbl else fbp_all_finite_f(<const float *>p, n)


def ready_float_array(x, int type_num, int ndim, shape, bint finite):
    """x itself when it needs neither a copy nor a message (fastbp._validate's
    float_array, in compiled code): an ndarray (no subclass) of type_num
    (−1: float32 or float64) in native byte order, C-contiguous and aligned,
    with ndim dimensions (−1: any) and shape (None: any; None entries match
    anything), within the 32-bit BLAS sizes, all finite when finite is set.
    Else None, and the caller's checks say what is wrong or convert it."""
    if type(x) is not _np.ndarray:
        return None
    cdef cnp.ndarray arr = <cnp.ndarray>x
    cdef int t = cnp.PyArray_TYPE(arr), nd = cnp.PyArray_NDIM(arr), d
    if type_num < 0:
        if t != cnp.NPY_FLOAT and t != cnp.NPY_DOUBLE:
            return None
    elif t != type_num:
        return None
    if ndim >= 0 and nd != ndim:
        return None
    if not _plain_array(x, t, nd):
        return None
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(arr)
    if shape is not None:
        if len(shape) != nd:
            return None
        for d in range(nd):
            s = shape[d]
            if s is not None and dims[d] != <cnp.npy_intp>s:
                return None
    cdef Py_ssize_t rows = 1, size = 1
    for d in range(nd):
        if dims[d] > _INT32_MAX:
            return None
        size *= dims[d]
        if d < nd - 1:
            rows *= dims[d]
            if rows > _INT32_MAX:
                return None
    if size > _INT32_MAX * 64:
        return None
    if finite and size and not _finite_data(cnp.PyArray_DATA(arr), size, t == cnp.NPY_DOUBLE):
        return None
    return x


cdef bint _extent(object a, char **lo, char **hi) noexcept:
    """The bytes an ndarray's elements can touch, [lo, hi) (NumPy's
    may_share_memory bounds); False when it has no elements."""
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef int d, nd = cnp.PyArray_NDIM(arr)
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(arr)
    cdef cnp.npy_intp *strides = cnp.PyArray_STRIDES(arr)
    cdef char *base = <char *>cnp.PyArray_DATA(arr)
    cdef Py_ssize_t low = 0, high = cnp.PyArray_ITEMSIZE(arr), step
    for d in range(nd):
        if dims[d] == 0:
            return False
        step = (dims[d] - 1) * strides[d]
        if step < 0:
            low += step
        else:
            high += step
    lo[0] = base + low
    hi[0] = base + high
    return True


def first_overlap(list bufs, list others):
    """The first pair that may share memory (by the bounds of their bytes, as
    np.may_share_memory), in the order: for each i, others[0..] and then
    bufs[0..i): (i, j, False) for others[j], (i, j, True) for bufs[j]; None
    when none does. Entries that are not ndarrays (or have no elements) are
    skipped."""
    cdef Py_ssize_t nb = len(bufs), no = len(others), n = nb + no, i, j
    # every extent once: [lo, hi) per entry, lo == hi for one that is skipped
    cdef char **lo = <char **>PyMem_Malloc(2 * (n + 1) * sizeof(char *))
    if lo == NULL:
        raise MemoryError()
    cdef char **hi = lo + n + 1
    try:
        for i in range(n):
            a = bufs[i] if i < nb else others[i - nb]
            if not isinstance(a, _np.ndarray) or not _extent(a, &lo[i], &hi[i]):
                lo[i] = hi[i] = NULL
        for i in range(nb):
            if lo[i] == hi[i]:
                continue
            for j in range(no):
                if lo[nb + j] != hi[nb + j] and lo[i] < hi[nb + j] and lo[nb + j] < hi[i]:
                    return i, j, False
            for j in range(i):
                if lo[j] != hi[j] and lo[i] < hi[j] and lo[j] < hi[i]:
                    return i, j, True
        return None
    finally:
        PyMem_Free(lo)
