# Declarations shared by every kernel family, the BLAS table, status codes.

cdef extern from "fastbp.h":
    enum:
        FBP_OK
        FBP_ERR_ARG
        FBP_ERR_LABEL
        FBP_ERR_NO_BLAS

    ctypedef void (*fbp_sgemm_fn)(char *, char *, int *, int *, int *, float *, float *, int *,
                                  float *, int *, float *, float *, int *) noexcept nogil
    ctypedef void (*fbp_dgemm_fn)(char *, char *, int *, int *, int *, double *, double *, int *,
                                  double *, int *, double *, double *, int *) noexcept nogil
    ctypedef void (*fbp_sgemv_fn)(char *, int *, int *, float *, float *, int *, float *, int *,
                                  float *, float *, int *) noexcept nogil
    ctypedef void (*fbp_dgemv_fn)(char *, int *, int *, double *, double *, int *, double *, int *,
                                  double *, double *, int *) noexcept nogil
    ctypedef void (*fbp_sger_fn)(int *, int *, float *, float *, int *, float *, int *,
                                 float *, int *) noexcept nogil
    ctypedef void (*fbp_dger_fn)(int *, int *, double *, double *, int *, double *, int *,
                                 double *, int *) noexcept nogil
    ctypedef struct fbp_blas_table:
        fbp_sgemm_fn sgemm
        fbp_dgemm_fn dgemm
        fbp_sgemv_fn sgemv
        fbp_dgemv_fn dgemv
        fbp_sger_fn sger
        fbp_dger_fn dger

    fbp_blas_table fbp_blas
    const char *fbp_kernel_isa() noexcept nogil
    int fbp_blas_ready() noexcept nogil
    int fbp_blas_find_thread_control() noexcept nogil

    int fbp_gemm_f(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                   int M, int N, int K, int trans_a, int trans_b, float alpha, float beta) noexcept nogil
    int fbp_gemm_d(double *C, int ldc, const double *A, int lda, const double *B, int ldb,
                   int M, int N, int K, int trans_a, int trans_b, double alpha, double beta) noexcept nogil
    int fbp_gemm_team_f(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                        int M, int N, int K, int trans_a, int trans_b, float alpha,
                        float beta) noexcept nogil
    int fbp_gemm_team_d(double *C, int ldc, const double *A, int lda, const double *B, int ldb,
                        int M, int N, int K, int trans_a, int trans_b, double alpha,
                        double beta) noexcept nogil
    int fbp_gemv_f(float *y, const float *A, int lda, const float *x, int M, int N,
                   int trans_a, float alpha, float beta) noexcept nogil
    int fbp_gemv_d(double *y, const double *A, int lda, const double *x, int M, int N,
                   int trans_a, double alpha, double beta) noexcept nogil
    int fbp_ger_f(float *A, int lda, const float *x, const float *y, int M, int N, float alpha) noexcept nogil
    int fbp_ger_d(double *A, int lda, const double *x, const double *y, int M, int N, double alpha) noexcept nogil


cdef extern from "rowdot.h":
    void fbp_rowdot_team_f(float *C, int ldc, const float *A, int lda, const float *W, int ldw,
                           int M, int N, int K, int accumulate) noexcept nogil
    void fbp_rowdot_team_d(double *C, int ldc, const double *A, int lda, const double *W, int ldw,
                           int M, int N, int K, int accumulate) noexcept nogil


def kernel_isa():
    """Which copy of the multiversioned kernels runs on this CPU (src_c/fastbp.h,
    FBP_HOT): ``"x86-64-v4"`` (AVX-512), ``"x86-64-v3"`` (AVX2, FMA), ``"x86-64"``
    (the baseline), or ``"portable"`` in a build without multiversioning."""
    return fbp_kernel_isa().decode("ascii")


cdef int check_status(int status) except -1:
    """Turn a kernel's status code into an exception (0 passes through)."""
    if status == FBP_OK:
        return 0
    if status == FBP_ERR_LABEL:
        raise ValueError("target: a class label is outside [0, n_classes)")
    if status == FBP_ERR_NO_BLAS:
        raise RuntimeError("fastbp._core: the BLAS table is not filled")
    if status == FBP_ERR_ARG:
        raise ValueError("fastbp._core: a kernel rejected its sizes or options "
                         "(this is a bug in fastbp's input validation; please report it)")
    raise RuntimeError(f"fastbp._core: kernel failed with status {status}")


# Every buffer a kernel reads or writes is checked here, in the glue, against
# the sizes passed to C, whatever the Python layer has validated before: an
# array replaced or reshaped in a cache or a model between the two is refused,
# never read out of bounds.
cdef int _check_matrix(arr, Py_ssize_t rows, Py_ssize_t cols, str name) except -1:
    if arr is None or arr.shape[0] != rows or arr.shape[1] != cols:
        raise ValueError(f"{name}: expected shape ({rows}, {cols}), got "
                         f"{None if arr is None else tuple(arr.shape)}")
    return 0


cdef int _check_vector(arr, Py_ssize_t n, str name) except -1:
    if arr is None or arr.shape[0] != n:
        raise ValueError(f"{name}: expected shape ({n},), got "
                         f"{None if arr is None else tuple(arr.shape)}")
    return 0



def _fill_blas_table():
    """Point the C kernels at SciPy's BLAS (sgemm, dgemm, sgemv, dgemv, sger, dger)."""
    fbp_blas.sgemm = cython_blas.sgemm
    fbp_blas.dgemm = cython_blas.dgemm
    fbp_blas.sgemv = cython_blas.sgemv
    fbp_blas.dgemv = cython_blas.dgemv
    fbp_blas.sger = cython_blas.sger
    fbp_blas.dger = cython_blas.dger
    if not fbp_blas_ready():
        raise ImportError("fastbp._core: could not fill the BLAS table from scipy.linalg.cython_blas")
    return bool(fbp_blas_find_thread_control())

# BLAS_THREAD_CONTROL: fastbp found SciPy's BLAS's thread-count controls, so
# every product it hands to BLAS runs on one BLAS thread (the rule and its
# measurements: src_c/fastbp.h, src_c/blas.c). False with a BLAS fastbp cannot
# steer (not OpenBLAS): products then run on that library's own setting.
BLAS_THREAD_CONTROL = _fill_blas_table()


def gemm(floating[:, ::1] C, const floating[:, ::1] A, const floating[:, ::1] B,
         bint trans_a=False, bint trans_b=False, double alpha=1.0, double beta=0.0):
    """Row-major C = alpha op(A) @ op(B) + beta C through the BLAS table: the
    Python layer's products (fastbp/_linalg.py). On the thread team when large
    enough, in blocks of C fixed by the shape (src_c/blas_body.h): the result
    does not depend on the team size.

    Shapes: op(A) (M, K), op(B) (K, N), C (M, N); checked here.
    """
    cdef int M = C.shape[0], N = C.shape[1]
    cdef int K = A.shape[0] if trans_a else A.shape[1]
    if (A.shape[1] if trans_a else A.shape[0]) != M:
        raise ValueError(f"A: op(A) must have {M} rows, got shape ({A.shape[0]}, {A.shape[1]})")
    if (B.shape[1] if trans_b else B.shape[0]) != K or (B.shape[0] if trans_b else B.shape[1]) != N:
        raise ValueError(f"B: op(B) must be ({K}, {N}), got shape ({B.shape[0]}, {B.shape[1]})")
    cdef int st
    with nogil:
        if floating is float:
            st = fbp_gemm_team_f(&C[0, 0] if M and N else NULL, N,
                                 &A[0, 0] if A.shape[0] and A.shape[1] else NULL, <int>A.shape[1],
                                 &B[0, 0] if B.shape[0] and B.shape[1] else NULL, <int>B.shape[1],
                                 M, N, K, trans_a, trans_b, <float>alpha, <float>beta)
        else:
            st = fbp_gemm_team_d(&C[0, 0] if M and N else NULL, N,
                                 &A[0, 0] if A.shape[0] and A.shape[1] else NULL, <int>A.shape[1],
                                 &B[0, 0] if B.shape[0] and B.shape[1] else NULL, <int>B.shape[1],
                                 M, N, K, trans_a, trans_b, alpha, beta)
    check_status(st)


def rowdot(floating[:, :] C, const floating[:, :] A, const floating[:, :] W, bint accumulate=False):
    """C (+)= A @ Wᵀ, every element summed in one fixed order (src_c/rowdot.h),
    on the thread team when large enough.

    Shapes: A (M, K), W (N, K), C (M, N), each with unit stride along its rows
    (any row stride); checked here. A row of C depends on that row of A and
    on W only: the readout of one streamed step equals that step's inside a
    whole sequence, bit for bit.
    """
    cdef Py_ssize_t M = C.shape[0], N = C.shape[1], K = A.shape[1]
    if A.shape[0] != M or W.shape[0] != N or W.shape[1] != K:
        raise ValueError(f"rowdot: expected A (M, K), W (N, K), C (M, N); got A "
                         f"({A.shape[0]}, {A.shape[1]}), W ({W.shape[0]}, {W.shape[1]}), "
                         f"C ({M}, {N})")
    for name, arr in (("C", C), ("A", A), ("W", W)):
        if arr.shape[0] > 1 and arr.shape[1] > 0 and (arr.strides[0] % arr.itemsize
                                                      or arr.strides[0] < arr.shape[1] * arr.itemsize):
            raise ValueError(f"{name}: expected rows laid out one after the other, got row stride "
                             f"{arr.strides[0]} bytes")
        if arr.shape[1] > 1 and arr.strides[1] != arr.itemsize:
            raise ValueError(f"{name}: expected unit stride along the rows, got {arr.strides[1]} bytes")
    if max(M, N, K) > 2147483647:
        raise ValueError("rowdot: a dimension exceeds 2**31 - 1")
    if M == 0 or N == 0:
        return
    cdef int ldc = <int>(C.strides[0] // C.itemsize) if M > 1 else <int>N
    cdef int lda = <int>(A.strides[0] // A.itemsize) if M > 1 else <int>K
    cdef int ldw = <int>(W.strides[0] // W.itemsize) if N > 1 else <int>K
    with nogil:
        if floating is float:
            fbp_rowdot_team_f(&C[0, 0], ldc, &A[0, 0] if K else NULL, lda, &W[0, 0] if K else NULL,
                              ldw, <int>M, <int>N, <int>K, accumulate)
        else:
            fbp_rowdot_team_d(&C[0, 0], ldc, &A[0, 0] if K else NULL, lda, &W[0, 0] if K else NULL,
                              ldw, <int>M, <int>N, <int>K, accumulate)


def gemv(floating[::1] y, const floating[:, ::1] A, const floating[::1] x,
         bint trans_a=False, double alpha=1.0, double beta=0.0):
    """Row-major y = alpha op(A) @ x + beta y through the BLAS table (test hook)."""
    cdef int M = A.shape[0], N = A.shape[1]
    if x.shape[0] != (M if trans_a else N) or y.shape[0] != (N if trans_a else M):
        raise ValueError("gemv: x or y does not match A")
    cdef int st
    with nogil:
        if floating is float:
            st = fbp_gemv_f(&y[0] if y.shape[0] else NULL, &A[0, 0] if M and N else NULL, N,
                            &x[0] if x.shape[0] else NULL, M, N, trans_a, <float>alpha, <float>beta)
        else:
            st = fbp_gemv_d(&y[0] if y.shape[0] else NULL, &A[0, 0] if M and N else NULL, N,
                            &x[0] if x.shape[0] else NULL, M, N, trans_a, alpha, beta)
    check_status(st)


def ger(floating[:, ::1] A, const floating[::1] x, const floating[::1] y, double alpha=1.0):
    """Row-major A += alpha x yᵀ through the BLAS table (test hook)."""
    cdef int M = A.shape[0], N = A.shape[1]
    if x.shape[0] != M or y.shape[0] != N:
        raise ValueError("ger: x or y does not match A")
    cdef int st
    with nogil:
        if floating is float:
            st = fbp_ger_f(&A[0, 0] if M and N else NULL, N, &x[0] if M else NULL,
                           &y[0] if N else NULL, M, N, <float>alpha)
        else:
            st = fbp_ger_d(&A[0, 0] if M and N else NULL, N, &x[0] if M else NULL,
                           &y[0] if N else NULL, M, N, alpha)
    check_status(st)
