/* The recurrent product with pre-packed weights, written once for REAL and
 * shared by the Elman RNN and the LSTM (included by packed.c).
 *
 * Per step the recurrent product is small (n ≤ B rows against the hidden
 * weight) and BLAS repacks the whole weight on every call: at B = 16 that
 * costs about as much as the arithmetic. So the weight is packed once per
 * sequence into panels of PACK_NR columns, P[p][k][jj] = op(W)[k][p·NR + jj]
 * (zero past N), and a register-blocked PACK_MR × PACK_NR kernel runs over
 * them, with a one-row kernel for batch 1 and leftover rows. Single-threaded
 * and deterministic (a fixed summation order over k). */
#define PACK_NR (64 / (int)sizeof(REAL))     /* two 32-byte vectors of REAL */
#define PACK_MR 6                            /* 6 × 2 accumulators + 2 loads + 1 broadcast */

ptrdiff_t FN(fbp_pack_size)(int K, int N)
{
    return K < 0 || N < 0 ? 0 : ((ptrdiff_t)N + PACK_NR - 1) / PACK_NR * PACK_NR * K;
}

#if defined(__GNUC__) && !defined(__clang__)
typedef REAL FN(pack_tvec) __attribute__((vector_size(32), aligned(sizeof(REAL)), may_alias));
#endif

/* One whole panel of Wᵀ, NR rows of W (ldw apart) × K, in blocks of LANES
 * × LANES transposed in registers: panel[k][jj] = W[jj][k]. A streamed step
 * packs W_hh on every call (engine_products.h), where the scalar gather cost
 * as much as the product at batch 4. */
FBP_ALWAYS_INLINE void FN(pack_panel_transposed)(REAL *restrict panel, const REAL *restrict W,
                                                 int ldw, int K)
{
    int k = 0;
#if defined(__GNUC__) && !defined(__clang__)
    typedef FN(pack_tvec) vec;
    enum { L = 32 / (int)sizeof(REAL) };        /* lanes: 8 floats, 4 doubles */
    for (; k + L <= K; k += L)
        for (int j0 = 0; j0 < PACK_NR; j0 += L) {
            vec r[L];
            for (int i = 0; i < L; i++) r[i] = *(const vec *)(W + (ptrdiff_t)(j0 + i) * ldw + k);
#if PACK_DOUBLE
            typedef long long idx __attribute__((vector_size(32)));
            /* [a0 b0 a2 b2], [a1 b1 a3 b3], [c0 d0 c2 d2], [c1 d1 c3 d3] */
            const vec ab0 = __builtin_shuffle(r[0], r[1], (idx){0, 4, 2, 6});
            const vec ab1 = __builtin_shuffle(r[0], r[1], (idx){1, 5, 3, 7});
            const vec cd0 = __builtin_shuffle(r[2], r[3], (idx){0, 4, 2, 6});
            const vec cd1 = __builtin_shuffle(r[2], r[3], (idx){1, 5, 3, 7});
            vec t[4] = {__builtin_shuffle(ab0, cd0, (idx){0, 1, 4, 5}),
                        __builtin_shuffle(ab1, cd1, (idx){0, 1, 4, 5}),
                        __builtin_shuffle(ab0, cd0, (idx){2, 3, 6, 7}),
                        __builtin_shuffle(ab1, cd1, (idx){2, 3, 6, 7})};
#else
            typedef int idx __attribute__((vector_size(32)));
            const idx lo = {0, 8, 1, 9, 4, 12, 5, 13}, hi = {2, 10, 3, 11, 6, 14, 7, 15};
            const idx lo2 = {0, 1, 8, 9, 4, 5, 12, 13}, hi2 = {2, 3, 10, 11, 6, 7, 14, 15};
            const idx first = {0, 1, 2, 3, 8, 9, 10, 11}, second = {4, 5, 6, 7, 12, 13, 14, 15};
            vec u[8], v[8], t[8];
            for (int i = 0; i < 8; i += 2) {    /* pairs of rows interleaved */
                u[i] = __builtin_shuffle(r[i], r[i + 1], lo);
                u[i + 1] = __builtin_shuffle(r[i], r[i + 1], hi);
            }
            for (int i = 0; i < 8; i += 4)      /* then pairs of pairs */
                for (int h = 0; h < 2; h++) {
                    v[i + h] = __builtin_shuffle(u[i + h], u[i + h + 2], lo2);
                    v[i + h + 2] = __builtin_shuffle(u[i + h], u[i + h + 2], hi2);
                }
            /* then the 128-bit halves: t[kk] = column k + kk of the 8 rows */
            const int order[4] = {0, 2, 1, 3};
            for (int q = 0; q < 4; q++) {
                t[q] = __builtin_shuffle(v[order[q]], v[order[q] + 4], first);
                t[q + 4] = __builtin_shuffle(v[order[q]], v[order[q] + 4], second);
            }
#endif
            for (int kk = 0; kk < L; kk++)
                *(vec *)(panel + (ptrdiff_t)(k + kk) * PACK_NR + j0) = t[kk];
        }
#endif
    for (; k < K; k++)         /* the last columns of W, or all of them without vectors */
        for (int jj = 0; jj < PACK_NR; jj++)
            panel[(ptrdiff_t)k * PACK_NR + jj] = W[(ptrdiff_t)jj * ldw + k];
}

/* P (ceil(N/NR)·NR·K): the panels of op(W)(K,N): Wᵀ of a row-major W (N,K) when
 * transposed, else W (K,N) itself; ldw: W's row stride. */
FBP_HOT void FN(fbp_pack)(REAL *P, const REAL *W, int ldw, int K, int N, int transposed)
{
    const int full = N / PACK_NR * PACK_NR;     /* columns in whole panels */
    if (transposed) {   /* op(W)[k][j] = W[j][k]: each panel gathers NR rows of W */
        for (int j0 = 0; j0 < full; j0 += PACK_NR)
            FN(pack_panel_transposed)(P + (ptrdiff_t)j0 * K, W + (ptrdiff_t)j0 * ldw, ldw, K);
    } else {            /* op(W)[k][j] = W[k][j]: NR contiguous entries per panel row */
        for (int k = 0; k < K; k++)
            for (int j0 = 0; j0 < full; j0 += PACK_NR)
                memcpy(P + (ptrdiff_t)j0 * K + (ptrdiff_t)k * PACK_NR, W + (ptrdiff_t)k * ldw + j0,
                       PACK_NR * sizeof(REAL));
    }
    if (full < N) {     /* the last, partial panel, zero-padded */
        REAL *panel = P + (ptrdiff_t)full * K;
        for (int k = 0; k < K; k++)
            for (int jj = 0; jj < PACK_NR; jj++)
                panel[(ptrdiff_t)k * PACK_NR + jj] =
                    full + jj >= N ? 0 : transposed ? W[(ptrdiff_t)(full + jj) * ldw + k]
                                                   : W[(ptrdiff_t)k * ldw + full + jj];
    }
}

#if defined(__GNUC__)
/* GCC/Clang vector extensions: explicit 32-byte vectors, so the accumulators
 * stay in registers (auto-vectorisation picks the wrong loop here). The
 * default clone lowers them to pairs of SSE registers. */
typedef REAL FN(pack_vec) __attribute__((vector_size(32), aligned(sizeof(REAL)), may_alias));

/* C(mr, ncols) (+)= A(mr, K) @ panel(K, NR)[:, :ncols] for a constant mr ≤ PACK_MR. */
FBP_ALWAYS_INLINE void FN(pack_micro)(REAL *restrict C, int ldc, const REAL *restrict A, int lda,
                                      const REAL *restrict panel, int K, int ncols, int accumulate,
                                      const int mr)
{
    typedef FN(pack_vec) vec;
    enum { HALF = PACK_NR / 2 };
    vec acc0[PACK_MR], acc1[PACK_MR];
    for (int i = 0; i < mr; i++) {
        acc0[i] = (vec){0};
        acc1[i] = (vec){0};
    }
    for (int k = 0; k < K; k++) {
        const vec w0 = *(const vec *)(panel + (ptrdiff_t)k * PACK_NR);
        const vec w1 = *(const vec *)(panel + (ptrdiff_t)k * PACK_NR + HALF);
        for (int i = 0; i < mr; i++) {
            const REAL a = A[(ptrdiff_t)i * lda + k];
            acc0[i] += a * w0;
            acc1[i] += a * w1;
        }
    }
    for (int i = 0; i < mr; i++) {
        REAL *c = C + (ptrdiff_t)i * ldc, out[PACK_NR];
        *(vec *)out = acc0[i];
        *(vec *)(out + HALF) = acc1[i];
        if (accumulate) for (int jj = 0; jj < ncols; jj++) c[jj] += out[jj];
        else for (int jj = 0; jj < ncols; jj++) c[jj] = out[jj];
    }
}

/* c(ncols) (+)= a(K) @ panel(K, NR)[:, :ncols]: one row (batch 1 and a last
 * odd row). One row gives only two FMA chains, which the FMA latency would
 * throttle, so k is split four ways into eight independent accumulators. */
FBP_ALWAYS_INLINE void FN(pack_micro_row)(REAL *restrict c, const REAL *restrict a,
                                          const REAL *restrict panel, int K, int ncols,
                                          int accumulate)
{
    typedef FN(pack_vec) vec;
    enum { HALF = PACK_NR / 2 };
    vec s[8];
    for (int u = 0; u < 8; u++) s[u] = (vec){0};
    int k = 0;
    for (; k + 4 <= K; k += 4) {
        for (int u = 0; u < 4; u++) {
            const REAL *w = panel + (ptrdiff_t)(k + u) * PACK_NR;
            s[2 * u] += a[k + u] * *(const vec *)w;
            s[2 * u + 1] += a[k + u] * *(const vec *)(w + HALF);
        }
    }
    for (; k < K; k++) {
        const REAL *w = panel + (ptrdiff_t)k * PACK_NR;
        s[0] += a[k] * *(const vec *)w;
        s[1] += a[k] * *(const vec *)(w + HALF);
    }
    REAL out[PACK_NR];
    *(vec *)out = (s[0] + s[2]) + (s[4] + s[6]);
    *(vec *)(out + HALF) = (s[1] + s[3]) + (s[5] + s[7]);
    if (accumulate) for (int jj = 0; jj < ncols; jj++) c[jj] += out[jj];
    else for (int jj = 0; jj < ncols; jj++) c[jj] = out[jj];
}
#else
FBP_ALWAYS_INLINE void FN(pack_micro_row)(REAL *restrict c, const REAL *restrict a,
                                          const REAL *restrict panel, int K, int ncols,
                                          int accumulate)
{
    REAL out[PACK_NR] = {0};
    for (int k = 0; k < K; k++)
        for (int jj = 0; jj < PACK_NR; jj++) out[jj] += a[k] * panel[(ptrdiff_t)k * PACK_NR + jj];
    for (int jj = 0; jj < ncols; jj++) c[jj] = (accumulate ? c[jj] : 0) + out[jj];
}

FBP_ALWAYS_INLINE void FN(pack_micro)(REAL *restrict C, int ldc, const REAL *restrict A, int lda,
                                      const REAL *restrict panel, int K, int ncols, int accumulate,
                                      const int mr)
{
    for (int i = 0; i < mr; i++) {
        REAL out[PACK_NR] = {0};
        for (int k = 0; k < K; k++) {
            const REAL a = A[(ptrdiff_t)i * lda + k];
            for (int jj = 0; jj < PACK_NR; jj++) out[jj] += a * panel[(ptrdiff_t)k * PACK_NR + jj];
        }
        REAL *c = C + (ptrdiff_t)i * ldc;
        for (int jj = 0; jj < ncols; jj++) c[jj] = (accumulate ? c[jj] : 0) + out[jj];
    }
}
#endif

/* C(M,N) (+)= A(M,K) @ op(W)(K,N), op(W) packed by fbp_pack; one_row: the
 * four-way split kernel for a single row (faster, but a row's sum then
 * depends on M), else every element is one FMA chain over k = 0..K−1, the
 * same in every tile. */
FBP_ALWAYS_INLINE void FN(pack_gemm)(REAL *C, int ldc, const REAL *A, int lda, const REAL *P,
                                     int M, int N, int K, int accumulate, const int one_row)
{
    for (int j0 = 0; j0 < N; j0 += PACK_NR) {
        const REAL *panel = P + (ptrdiff_t)j0 * K;
        const int nc = N - j0 < PACK_NR ? N - j0 : PACK_NR;
        REAL *Cj = C + j0;
        int r = 0;
        for (; r + PACK_MR <= M; r += PACK_MR)
            FN(pack_micro)(Cj + (ptrdiff_t)r * ldc, ldc, A + (ptrdiff_t)r * lda, lda, panel, K, nc,
                           accumulate, PACK_MR);
        REAL *Cr = Cj + (ptrdiff_t)r * ldc;
        const REAL *Ar = A + (ptrdiff_t)r * lda;
        switch (M - r) {    /* the last rows: one constant-size copy of the kernel each */
        case 1:
            if (one_row) FN(pack_micro_row)(Cr, Ar, panel, K, nc, accumulate);
            else FN(pack_micro)(Cr, ldc, Ar, lda, panel, K, nc, accumulate, 1);
            break;
        case 2: FN(pack_micro)(Cr, ldc, Ar, lda, panel, K, nc, accumulate, 2); break;
        case 3: FN(pack_micro)(Cr, ldc, Ar, lda, panel, K, nc, accumulate, 3); break;
        case 4: FN(pack_micro)(Cr, ldc, Ar, lda, panel, K, nc, accumulate, 4); break;
        case 5: FN(pack_micro)(Cr, ldc, Ar, lda, panel, K, nc, accumulate, 5); break;
        default: break;
        }
    }
}

/* FMA contraction is allowed here (and only here, with rowdot.h): these are
 * matrix products like BLAS's, whose rounding differs across CPUs anyway; the
 * elementwise passes stay uncontracted. */
FBP_HOT FBP_CONTRACT void FN(fbp_gemm_packed)(REAL *C, int ldc, const REAL *A, int lda,
                                              const REAL *P, int M, int N, int K, int accumulate)
{
    FN(pack_gemm)(C, ldc, A, lda, P, M, N, K, accumulate, 1);
}

FBP_HOT FBP_CONTRACT void FN(fbp_gemm_packed_fixed)(REAL *C, int ldc, const REAL *A, int lda,
                                                    const REAL *P, int M, int N, int K,
                                                    int accumulate)
{
    FN(pack_gemm)(C, ldc, A, lda, P, M, N, K, accumulate, 0);
}

#undef PACK_NR
#undef PACK_MR
