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

/* ---- the same product in fixed blocks on the thread team (team.h) -----------
 * C's rows (or its columns, when it has fewer rows than columns) in blocks
 * whose size depends on the shape only, each one BLAS call on one thread: the
 * result is the same whoever computes a block, for every team size. */
typedef struct {
    REAL *C;
    const REAL *A, *B;
    int ldc, lda, ldb, M, N, K, trans_a, trans_b;
    REAL alpha, beta;
    int by_rows, size, blocks;      /* the blocks: of rows or columns, `size` each */
    fbp_phases ph;
} FN(gemm_team_ctx);

static int FN(gemm_block)(const FN(gemm_team_ctx) *c, int k)
{
    const int dim = c->by_rows ? c->M : c->N, lo = k * c->size;
    const int n = dim - lo < c->size ? dim - lo : c->size;
    if (c->by_rows)     /* C[lo:lo+n, :] = op(A)[lo:lo+n, :] @ op(B) */
        return FN(fbp_gemm)(c->C + (ptrdiff_t)lo * c->ldc, c->ldc,
                            c->A + (c->trans_a ? (ptrdiff_t)lo : (ptrdiff_t)lo * c->lda), c->lda,
                            c->B, c->ldb, n, c->N, c->K, c->trans_a, c->trans_b, c->alpha,
                            c->beta);
    /* C[:, lo:lo+n] = op(A) @ op(B)[:, lo:lo+n] */
    return FN(fbp_gemm)(c->C + lo, c->ldc, c->A, c->lda,
                        c->B + (c->trans_b ? (ptrdiff_t)lo * c->ldb : (ptrdiff_t)lo), c->ldb,
                        c->M, n, c->K, c->trans_a, c->trans_b, c->alpha, c->beta);
}

static void FN(gemm_team_member)(void *vctx, int member, int members)
{
    FN(gemm_team_ctx) *c = vctx;
    fbp_phase_state s = fbp_phase_start(member, members);
    int k, st;
    fbp_phase_begin(&s);
    while ((k = fbp_phase_next(&c->ph, &s, c->blocks)) >= 0) {
        if ((st = FN(gemm_block)(c, k))) fbp_phase_fail(&c->ph, st);
        fbp_phase_done(&c->ph);
    }
    fbp_phase_end(&c->ph, &s, c->blocks);
}

int FN(fbp_gemm_team)(REAL *C, int ldc, const REAL *A, int lda, const REAL *B, int ldb,
                      int M, int N, int K, int trans_a, int trans_b, REAL alpha, REAL beta)
{
    if (!BLAS_GEMM) return FBP_ERR_NO_BLAS;
    if (M < 0 || N < 0 || K < 0) return FBP_ERR_ARG;
    const int by_rows = M >= N, dim = by_rows ? M : N;
    const int size = fbp_block_size(dim, GEMM_TEAM_BLOCK_MIN, GEMM_TEAM_BLOCKS);
    if ((int64_t)M * N * K < GEMM_TEAM_MIN_MACS || dim <= size)     /* one block */
        return FN(fbp_gemm)(C, ldc, A, lda, B, ldb, M, N, K, trans_a, trans_b, alpha, beta);
    FN(gemm_team_ctx) c = {.C = C, .A = A, .B = B, .ldc = ldc, .lda = lda, .ldb = ldb, .M = M,
                           .N = N, .K = K, .trans_a = trans_a, .trans_b = trans_b,
                           .alpha = alpha, .beta = beta, .by_rows = by_rows, .size = size,
                           .blocks = (dim + size - 1) / size};
    fbp_team_run(FN(gemm_team_member), &c);
    return c.ph.status;
}
