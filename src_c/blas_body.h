/* Row-major wrappers over the column-major BLAS table, written once for REAL.
 * Included by blas.c with REAL = float / double. */

int FN(fbp_gemm)(REAL *C, int ldc, const REAL *A, int lda, const REAL *B, int ldb,
                 int M, int N, int K, int trans_a, int trans_b, REAL alpha, REAL beta)
{
    if (!BLAS_GEMM) return FBP_ERR_NO_BLAS;
    if (M < 0 || N < 0 || K < 0) return FBP_ERR_ARG;
    if (M == 0 || N == 0) return FBP_OK;
    /* Row-major C(M,N) is column-major Cᵀ(N,M): compute Cᵀ = op(B)ᵀ op(A)ᵀ. */
    char tb = trans_b ? 'T' : 'N';
    char ta = trans_a ? 'T' : 'N';
    int ldb_ = ldb > 1 ? ldb : 1, lda_ = lda > 1 ? lda : 1, ldc_ = ldc > 1 ? ldc : 1;
    fbp_blas_threads_enter();
    BLAS_GEMM(&tb, &ta, &N, &M, &K, &alpha, (REAL *)B, &ldb_, (REAL *)A, &lda_,
              &beta, C, &ldc_);
    fbp_blas_threads_leave();
    return FBP_OK;
}

int FN(fbp_gemv)(REAL *y, const REAL *A, int lda, const REAL *x, int M, int N,
                 int trans_a, REAL alpha, REAL beta)
{
    if (!BLAS_GEMV) return FBP_ERR_NO_BLAS;
    if (M < 0 || N < 0) return FBP_ERR_ARG;
    if (M == 0 || N == 0) {
        /* BLAS leaves y untouched when the product is empty; honour beta. */
        int n_out = trans_a ? N : M;
        for (int i = 0; i < n_out; i++) y[i] = beta == 0 ? (REAL)0 : beta * y[i];
        return FBP_OK;
    }
    /* Row-major A(M,N) is column-major Aᵀ(N,M): A x is a 'T' product there. */
    char t = trans_a ? 'N' : 'T';
    int one = 1, lda_ = lda > 1 ? lda : 1;
    fbp_blas_threads_enter();
    BLAS_GEMV(&t, &N, &M, &alpha, (REAL *)A, &lda_, (REAL *)x, &one, &beta, y, &one);
    fbp_blas_threads_leave();
    return FBP_OK;
}

int FN(fbp_ger)(REAL *A, int lda, const REAL *x, const REAL *y, int M, int N, REAL alpha)
{
    if (!BLAS_GER) return FBP_ERR_NO_BLAS;
    if (M < 0 || N < 0) return FBP_ERR_ARG;
    if (M == 0 || N == 0) return FBP_OK;
    /* Column-major Aᵀ(N,M) += alpha y xᵀ. */
    int one = 1, lda_ = lda > 1 ? lda : 1;
    fbp_blas_threads_enter();
    BLAS_GER(&N, &M, &alpha, (REAL *)y, &one, (REAL *)x, &one, A, &lda_);
    fbp_blas_threads_leave();
    return FBP_OK;
}
