"""fastbp._core: the thin Cython layer over the C kernels in src_c/.

Every public function here takes arrays that the Python layer has already
validated (dtype, shape, contiguity), dispatches float/double through the
`floating` fused type, calls one C kernel with the GIL released, and turns the
kernel's status code into a Python exception. The BLAS function table the
kernels use is filled once, below, from scipy.linalg.cython_blas.
"""
cimport scipy.linalg.cython_blas as cython_blas
from cython cimport floating
from libc.stdint cimport int64_t

include "_common.pxi"
include "_arrays.pxi"
include "_elementwise.pxi"
include "_mlp.pxi"
include "_seq.pxi"
include "_engine.pxi"
include "_stream.pxi"
include "_pool.pxi"
