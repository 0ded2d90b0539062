/* fastbp: shared declarations of the C kernels.
 *
 * Every kernel body is written once in a *_body.h file and compiled twice, for
 * float (suffix _f) and double (suffix _d). Arrays are row-major and contiguous
 * unless a leading dimension is passed. Kernels never allocate, print or abort:
 * they return one of the status codes below and the Cython layer turns a
 * non-zero code into a Python exception.
 */
#ifndef FASTBP_H
#define FASTBP_H

#include <stddef.h>
#include <stdint.h>

/* FBP_HOT marks the fused elementwise loops and the matrix-product kernels.
 * GCC compiles each three times, for the x86-64 baseline, for x86-64-v3
 * (AVX2, FMA) and for x86-64-v4 (AVX-512 F/BW/CD/DQ/VL), and the dynamic
 * loader picks the best for the running CPU (function multiversioning through
 * an ifunc; fbp_kernel_isa says which): twice the throughput of the
 * transcendental loops on AVX2 machines while the wheel stays portable (no
 * -march flag). The v4 copies vectorise the elementwise loops 16 floats wide
 * and have 32 vector registers (the LSTM's gate pass spills constants with 16);
 * the product kernels keep their 32-byte vectors, and with them their
 * summation order. "arch=haswell" would dispatch on the CPU model and never
 * select AMD processors; x86-64-vN dispatches on features. Builds that cannot
 * do it (other compilers, non-glibc, -DFBP_NO_MULTIVERSION) fall back to the
 * baseline loops, same results. FP contraction stays off (-std=c99) outside
 * FBP_CONTRACT, so every version computes bit-identical elementwise values. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__x86_64__) && \
    defined(__GLIBC__) && !defined(FBP_NO_MULTIVERSION)
#define FBP_MULTIVERSION 1
#define FBP_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FBP_MULTIVERSION 0
#define FBP_HOT
#endif

/* The copy of the FBP_HOT functions the loader picks on this CPU, by the
 * rule GCC's resolver follows: "x86-64-v4", "x86-64-v3", "x86-64" (the
 * baseline), or "portable" in a build without multiversioning (src_c/cpu.c). */
const char *fbp_kernel_isa(void);

/* FBP_CONTRACT lets GCC contract a*b + c into FMA in the matrix-product
 * kernels only (packed.c, rowdot.c): they are products like BLAS's, whose
 * rounding differs across CPUs anyway; the fused elementwise passes stay
 * uncontracted. Every element of one kernel goes through the same code, so
 * its results still do not depend on the tiling. */
#if defined(__GNUC__) && !defined(__clang__)
#define FBP_CONTRACT __attribute__((optimize("fp-contract=fast")))
#else
#define FBP_CONTRACT
#endif

/* Per-row loops are inlined into the (multiversioned) per-step passes with
 * constant flags and sizes, so each combination becomes its own branch-free,
 * vectorised loop. */
#if defined(__GNUC__)
#define FBP_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define FBP_ALWAYS_INLINE static inline
#endif

enum fbp_status {
    FBP_OK = 0,
    FBP_ERR_ARG = 1,        /* a size or option the Python layer should have rejected */
    FBP_ERR_LABEL = 2,      /* an integer class label outside [0, n_classes) */
    FBP_ERR_NO_BLAS = 3     /* the BLAS table has not been filled */
};

enum fbp_activation {
    FBP_IDENTITY = 0,
    FBP_SIGMOID = 1,
    FBP_TANH = 2,
    FBP_RELU = 3,
    FBP_SOFTMAX = 4         /* row-wise; a vector function, not elementwise */
};

/* ---- BLAS function table -------------------------------------------------
 * Filled once at import by fastbp/_core.pyx from scipy.linalg.cython_blas, so
 * the C code links against no BLAS of its own and uses exactly SciPy's.
 * Fortran calling convention: every argument by pointer, column-major. */
typedef void (*fbp_sgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                             float *alpha, float *a, int *lda, float *b, int *ldb,
                             float *beta, float *c, int *ldc);
typedef void (*fbp_dgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                             double *alpha, double *a, int *lda, double *b, int *ldb,
                             double *beta, double *c, int *ldc);
typedef void (*fbp_sgemv_fn)(char *trans, int *m, int *n, float *alpha, float *a,
                             int *lda, float *x, int *incx, float *beta, float *y,
                             int *incy);
typedef void (*fbp_dgemv_fn)(char *trans, int *m, int *n, double *alpha, double *a,
                             int *lda, double *x, int *incx, double *beta, double *y,
                             int *incy);
typedef void (*fbp_sger_fn)(int *m, int *n, float *alpha, float *x, int *incx,
                            float *y, int *incy, float *a, int *lda);
typedef void (*fbp_dger_fn)(int *m, int *n, double *alpha, double *x, int *incx,
                            double *y, int *incy, double *a, int *lda);

typedef int (*fbp_get_threads_fn)(void);
typedef void (*fbp_set_threads_fn)(int);

typedef struct {
    fbp_sgemm_fn sgemm;
    fbp_dgemm_fn dgemm;
    fbp_sgemv_fn sgemv;
    fbp_dgemv_fn dgemv;
    fbp_sger_fn sger;
    fbp_dger_fn dger;
    /* The BLAS library's own thread-count controls (OpenBLAS's
     * openblas_get/set_num_threads, found next to sgemm by
     * fbp_blas_find_thread_control); NULL when the library has none that
     * fastbp knows, and then every product runs on BLAS's own setting. */
    fbp_get_threads_fn get_threads;
    fbp_set_threads_fn set_threads;
} fbp_blas_table;

/* Written once at import (before any kernel can run), read-only afterwards. */
extern fbp_blas_table fbp_blas;
int fbp_blas_ready(void);
/* Fill get_threads/set_threads from the library that holds fbp_blas.sgemm;
 * returns 1 when found. Called once at import, after the table is filled. */
int fbp_blas_find_thread_control(void);

/* ---- How many BLAS threads a product gets: the one rule ---------------------
 * Every product fastbp hands to BLAS runs on ONE BLAS thread, whatever BLAS's
 * own setting (measured in src_c/blas.c: on these 2-core machines BLAS's
 * statically partitioned threads lost at every size once another process held
 * a core, and each threaded call leaves a worker spinning for ~0.1 s beside
 * fastbp's time loop). The second core is fastbp's own to schedule. So a
 * result never depends on the BLAS thread count.
 * Around each product: fbp_blas_threads_enter before, fbp_blas_threads_leave
 * after (thread-safe; blas.c says how concurrent callers share the setting). */
void fbp_blas_threads_enter(void);
void fbp_blas_threads_leave(void);

/* ---- Row-major BLAS helpers (src_c/blas.c) ---------------------------------
 * C(M,N) = alpha * op(A) @ op(B) + beta * C, all row-major.
 * op(A) is (M,K): A is (M,K) with lda >= K, or (K,M) with lda >= M if trans_a.
 * op(B) is (K,N): B is (K,N) with ldb >= N, or (N,K) with ldb >= K if trans_b.
 * BLAS is column-major, so the helper computes Cᵀ = op(B)ᵀ op(A)ᵀ by swapping
 * the operands: the one place in fastbp where that trick lives. */
int fbp_gemm_f(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
               int M, int N, int K, int trans_a, int trans_b, float alpha, float beta);
int fbp_gemm_d(double *C, int ldc, const double *A, int lda, const double *B, int ldb,
               int M, int N, int K, int trans_a, int trans_b, double alpha, double beta);
/* The same, on the thread team when large enough: C in blocks of rows (or
 * columns) fixed by the shape, each one BLAS call, so the result does not
 * depend on the team size. Not from inside a team region (it would run alone). */
int fbp_gemm_team_f(float *C, int ldc, const float *A, int lda, const float *B, int ldb,
                    int M, int N, int K, int trans_a, int trans_b, float alpha, float beta);
int fbp_gemm_team_d(double *C, int ldc, const double *A, int lda, const double *B, int ldb,
                    int M, int N, int K, int trans_a, int trans_b, double alpha, double beta);

/* y(M) = alpha * A(M,N) @ x(N) + beta * y, or with trans_a: y(N) = alpha * A(M,N)ᵀ @ x(M) + beta * y.
 * A row-major with lda >= N. */
int fbp_gemv_f(float *y, const float *A, int lda, const float *x, int M, int N,
               int trans_a, float alpha, float beta);
int fbp_gemv_d(double *y, const double *A, int lda, const double *x, int M, int N,
               int trans_a, double alpha, double beta);

/* A(M,N) += alpha * x(M) yᵀ(N), A row-major with lda >= N. */
int fbp_ger_f(float *A, int lda, const float *x, const float *y, int M, int N, float alpha);
int fbp_ger_d(double *A, int lda, const double *x, const double *y, int M, int N, double alpha);

/* ---- Activations and losses (src_c/elementwise.c) --------------------------
 * a(rows,cols) = f(z); a may alias z. */
int fbp_activation_forward_f(float *a, const float *z, ptrdiff_t rows, ptrdiff_t cols, int act);
int fbp_activation_forward_d(double *a, const double *z, ptrdiff_t rows, ptrdiff_t cols, int act);
/* dz(rows,cols) = da ⊙ f'(·) written from the forward output a (softmax: the
 * row-wise JVP a ⊙ (da − ⟨da, a⟩)); dz may alias da. */
int fbp_activation_backward_f(float *dz, const float *a, const float *da, ptrdiff_t rows, ptrdiff_t cols, int act);
int fbp_activation_backward_d(double *dz, const double *a, const double *da, ptrdiff_t rows, ptrdiff_t cols, int act);

/* Softmax cross-entropy on logits(rows,cols), scaled by `scale` (1/rows for a
 * batch mean): *loss = scale * Σ_rows −ln softmax(logits)[label],
 * dlogits = scale * (softmax(logits) − onehot). dlogits may be NULL (loss only)
 * or alias logits. Labels are int64 class indices (rows,). */
int fbp_softmax_xent_labels_f(double *loss, float *dlogits, const float *logits, const int64_t *labels,
                              ptrdiff_t rows, ptrdiff_t cols, double scale);
int fbp_softmax_xent_labels_d(double *loss, double *dlogits, const double *logits, const int64_t *labels,
                              ptrdiff_t rows, ptrdiff_t cols, double scale);
/* The same with target distributions z(rows,cols) (one-hot or soft labels):
 * *loss = scale * Σ −z ln ŷ, dlogits = scale * (ŷ · Σz − z). */
int fbp_softmax_xent_probs_f(double *loss, float *dlogits, const float *logits, const float *target,
                             ptrdiff_t rows, ptrdiff_t cols, double scale);
int fbp_softmax_xent_probs_d(double *loss, double *dlogits, const double *logits, const double *target,
                             ptrdiff_t rows, ptrdiff_t cols, double scale);
/* Squared error: *loss = scale * Σ (y − ŷ)², dpred = 2 * scale * (ŷ − y).
 * dpred may be NULL or alias pred. */
int fbp_squared_error_f(double *loss, float *dpred, const float *pred, const float *target,
                        ptrdiff_t rows, ptrdiff_t cols, double scale);
int fbp_squared_error_d(double *loss, double *dpred, const double *pred, const double *target,
                        ptrdiff_t rows, ptrdiff_t cols, double scale);

#endif /* FASTBP_H */
