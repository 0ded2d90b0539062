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
