/* C(M,N) (+)= A(M,K) @ W(N,K)ᵀ with a summation order fixed per element,
 * written once for REAL (included by rowdot.c).
 *
 * Each C[i][j] is the dot product of row i of A and row j of W, both
 * contiguous in k, summed the same way whatever M, N, the tile the element
 * falls in or the thread that computes it: LANES (= 32 bytes of REAL)
 * interleaved partial sums, lane l sequentially over k ≡ l (mod LANES) from
 * zero (the last, partial block zero-padded), then the fixed tree
 * ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)) (double: (l0 + l1) +
 * (l2 + l3)). So a row's result does not depend on how many rows share the
 * product: the input side and the readout of one streamed step equal those
 * of the same step inside a whole sequence, bit for bit (fastbp/_step.py),
 * and neither W needs packing, so a step reads the model's weights as they
 * are. BLAS gives neither: OpenBLAS picks kernels, and GEMV against GEMM,
 * by shape. */

#define RD_LANES (32 / (int)sizeof(REAL))
#define RD_MR 4             /* rows of A per tile */
#define RD_NR 3             /* rows of W per tile: 4 × 3 accumulators, 3 + 1 loads (the
                               fastest of 2-4 × 2-6 here, AVX2) */
#define RD_TILE_BYTES 16384 /* W rows one column block keeps in L1 across the rows of A */
#define RD_ROW_BYTES 98304  /* A rows one row block keeps in L2 across the column blocks
                               (a 6400 × 1024 × 256 input side in 400-row tiles, one
                               thread, a harness: 72-77 GFLOP/s against 63-72 for the
                               whole tile; lstm_forward B=64 about 6% faster, B=16 level) */

#if defined(__GNUC__) && !defined(__clang__)
typedef REAL FN(rd_vec) __attribute__((vector_size(32), aligned(sizeof(REAL)), may_alias));

/* *v = n < LANES elements at p, zero past them. */
FBP_ALWAYS_INLINE void FN(rd_load_part)(FN(rd_vec) *v, const REAL *p, int n)
{
    union { FN(rd_vec) v; REAL e[RD_LANES]; } u = {{0}};
    for (int l = 0; l < n; l++) u.e[l] = p[l];
    *v = u.v;
}

/* out[e] = the tree sum of v[e]'s lanes, e < n ≤ LANES (shuffles across the
 * vectors add the same pairs as the scalar tree, in the same order). */
FBP_ALWAYS_INLINE void FN(rd_reduce)(REAL *out, const FN(rd_vec) *v, int n)
{
    typedef FN(rd_vec) vec;
    vec x[RD_LANES];
    for (int e = 0; e < RD_LANES; e++) x[e] = e < n ? v[e] : (vec){0};
#if RD_DOUBLE
    typedef long long idx __attribute__((vector_size(32)));
    /* [a0+a1, b0+b1, a2+a3, b2+b3] */
    const vec ab = __builtin_shuffle(x[0], x[1], (idx){0, 4, 2, 6})
                   + __builtin_shuffle(x[0], x[1], (idx){1, 5, 3, 7});
    const vec cd = __builtin_shuffle(x[2], x[3], (idx){0, 4, 2, 6})
                   + __builtin_shuffle(x[2], x[3], (idx){1, 5, 3, 7});
    /* [(a0+a1)+(a2+a3), (b..), (c..), (d..)] */
    const vec r = __builtin_shuffle(ab, cd, (idx){0, 1, 4, 5})
                  + __builtin_shuffle(ab, cd, (idx){2, 3, 6, 7});
#else
    typedef int idx __attribute__((vector_size(32)));
    const idx odd = {1, 9, 3, 11, 5, 13, 7, 15}, even = {0, 8, 2, 10, 4, 12, 6, 14};
    vec p[4], q[2];
    for (int e = 0; e < 4; e++)     /* [a0+a1, b0+b1, a2+a3, b2+b3, a4+a5, b4+b5, a6+a7, b6+b7] */
        p[e] = __builtin_shuffle(x[2 * e], x[2 * e + 1], even)
               + __builtin_shuffle(x[2 * e], x[2 * e + 1], odd);
    for (int e = 0; e < 2; e++)     /* [(a0+a1)+(a2+a3), b, c, d, (a4+a5)+(a6+a7), b, c, d] */
        q[e] = __builtin_shuffle(p[2 * e], p[2 * e + 1], (idx){0, 1, 8, 9, 4, 5, 12, 13})
               + __builtin_shuffle(p[2 * e], p[2 * e + 1], (idx){2, 3, 10, 11, 6, 7, 14, 15});
    /* [a, b, c, d, e, f, g, h]: the low half of each plus its high half */
    const vec r = __builtin_shuffle(q[0], q[1], (idx){0, 1, 2, 3, 8, 9, 10, 11})
                  + __builtin_shuffle(q[0], q[1], (idx){4, 5, 6, 7, 12, 13, 14, 15});
#endif
    union { vec v; REAL e[RD_LANES]; } u = {r};
    for (int e = 0; e < n; e++) out[e] = u.e[e];
}

/* C(mr, nr) (+)= A(mr, K) @ W(nr, K)ᵀ for constant mr ≤ 4, nr ≤ 8 (the
 * tiles used keep mr·nr ≤ 12 accumulators in registers). */
FBP_ALWAYS_INLINE void FN(rd_micro)(REAL *restrict C, int ldc, const REAL *restrict A, int lda,
                                    const REAL *restrict W, int ldw, int K, int accumulate,
                                    const int mr, const int nr)
{
    typedef FN(rd_vec) vec;
    vec acc[4 * 8];
    for (int e = 0; e < mr * nr; e++) acc[e] = (vec){0};
    int k = 0;
    for (; k + RD_LANES <= K; k += RD_LANES) {
        vec w[8];
        for (int j = 0; j < nr; j++) w[j] = *(const vec *)(W + (ptrdiff_t)j * ldw + k);
        for (int i = 0; i < mr; i++) {
            const vec a = *(const vec *)(A + (ptrdiff_t)i * lda + k);
            for (int j = 0; j < nr; j++) acc[i * nr + j] += a * w[j];
        }
    }
    if (k < K) {        /* the partial block, zero-padded (0·0 adds nothing) */
        vec w[8];
        for (int j = 0; j < nr; j++) FN(rd_load_part)(&w[j], W + (ptrdiff_t)j * ldw + k, K - k);
        for (int i = 0; i < mr; i++) {
            vec a;
            FN(rd_load_part)(&a, A + (ptrdiff_t)i * lda + k, K - k);
            for (int j = 0; j < nr; j++) acc[i * nr + j] += a * w[j];
        }
    }
    REAL out[4 * 8 + RD_LANES];
    for (int e = 0; e < mr * nr; e += RD_LANES)
        FN(rd_reduce)(out + e, acc + e, mr * nr - e < RD_LANES ? mr * nr - e : RD_LANES);
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            REAL *c = C + (ptrdiff_t)i * ldc + j;
            *c = accumulate ? *c + out[i * nr + j] : out[i * nr + j];
        }
}
#else
/* Portable: the same lanes and tree in scalar code. */
FBP_ALWAYS_INLINE void FN(rd_micro)(REAL *restrict C, int ldc, const REAL *restrict A, int lda,
                                    const REAL *restrict W, int ldw, int K, int accumulate,
                                    const int mr, const int nr)
{
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            const REAL *a = A + (ptrdiff_t)i * lda, *w = W + (ptrdiff_t)j * ldw;
            REAL lane[RD_LANES] = {0};
            for (int k = 0; k < K; k++) lane[k % RD_LANES] += a[k] * w[k];
#if RD_DOUBLE
            const REAL s = (lane[0] + lane[1]) + (lane[2] + lane[3]);
#else
            const REAL s = ((lane[0] + lane[1]) + (lane[2] + lane[3]))
                           + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
#endif
            REAL *c = C + (ptrdiff_t)i * ldc + j;
            *c = accumulate ? *c + s : s;
        }
}
#endif

/* One row block (mr constant, 1..4) across columns [j0, j1), nr at a time. */
FBP_ALWAYS_INLINE void FN(rd_rows)(REAL *C, int ldc, const REAL *A, int lda, const REAL *W,
                                   int ldw, int j0, int j1, int K, int accumulate, const int mr,
                                   const int nr)
{
    int j = j0;
    for (; j + nr <= j1; j += nr)
        FN(rd_micro)(C + j, ldc, A, lda, W + (ptrdiff_t)j * ldw, ldw, K, accumulate, mr, nr);
    REAL *Cj = C + j;
    const REAL *Wj = W + (ptrdiff_t)j * ldw;
    /* the last j1 - j < nr columns: one constant-size copy of the tile each.
     * The nr > n tests fold away and leave only the copies this nr can need
     * (rowdot.c compiles in a quarter of the time; the copies that run are the same). */
#define RD_TAIL(n) \
    case n: if (nr > n) FN(rd_micro)(Cj, ldc, A, lda, Wj, ldw, K, accumulate, mr, n); break;
    switch (j1 - j) {
    RD_TAIL(1) RD_TAIL(2) RD_TAIL(3) RD_TAIL(4) RD_TAIL(5) RD_TAIL(6) RD_TAIL(7)
    default: break;
    }
#undef RD_TAIL
}

/* C(M,N) (+)= A(M,K) @ W(N,K)ᵀ; lda, ldw, ldc row strides; accumulate adds to
 * C instead of overwriting it. FMA contraction is allowed here as in the
 * packed kernel (packed_body.h): every element goes through the same code. */
FBP_HOT FBP_CONTRACT void FN(fbp_rowdot)(REAL *C, int ldc, const REAL *A, int lda, const REAL *W,
                                         int ldw, int M, int N, int K, int accumulate)
{
    if (M <= 0 || N <= 0) return;
    switch (M) {        /* a few rows (a step, batch 1-3): wide tiles, W streamed once */
    case 1: FN(rd_rows)(C, ldc, A, lda, W, ldw, 0, N, K, accumulate, 1, 8); return;
    case 2: FN(rd_rows)(C, ldc, A, lda, W, ldw, 0, N, K, accumulate, 2, 6); return;
    case 3: FN(rd_rows)(C, ldc, A, lda, W, ldw, 0, N, K, accumulate, 3, 4); return;
    default: break;
    }
    /* rows in blocks that stay in L2 while every column block passes, columns
     * in blocks whose W rows stay in L1 while the block's rows of A pass */
    const int row_bytes = (int)sizeof(REAL) * (K > 0 ? K : 1);
    int mb = RD_ROW_BYTES / row_bytes / RD_MR * RD_MR, nb = RD_TILE_BYTES / row_bytes / RD_NR * RD_NR;
    if (mb < RD_MR) mb = RD_MR;
    if (nb < RD_NR) nb = RD_NR;
    for (int i0 = 0; i0 < M; i0 += mb) {
        const int i1 = M - i0 < mb ? M : i0 + mb;
        for (int j0 = 0; j0 < N; j0 += nb) {
            const int j1 = N - j0 < nb ? N : j0 + nb;
            int i = i0;
            for (; i + RD_MR <= i1; i += RD_MR)
                FN(rd_rows)(C + (ptrdiff_t)i * ldc, ldc, A + (ptrdiff_t)i * lda, lda, W, ldw, j0,
                            j1, K, accumulate, RD_MR, RD_NR);
            REAL *Ci = C + (ptrdiff_t)i * ldc;
            const REAL *Ai = A + (ptrdiff_t)i * lda;
            switch (i1 - i) {
            case 1: FN(rd_rows)(Ci, ldc, Ai, lda, W, ldw, j0, j1, K, accumulate, 1, RD_NR); break;
            case 2: FN(rd_rows)(Ci, ldc, Ai, lda, W, ldw, j0, j1, K, accumulate, 2, RD_NR); break;
            case 3: FN(rd_rows)(Ci, ldc, Ai, lda, W, ldw, j0, j1, K, accumulate, 3, RD_NR); break;
            default: break;
            }
        }
    }
}

/* ---- the same product on the thread team (team.h) -------------------------- */
typedef struct {
    REAL *C;
    const REAL *A, *W;
    int ldc, lda, ldw, M, N, K, accumulate;
    int rows, cols, col_blocks;     /* the tiles */
    fbp_phases ph;
} FN(rd_team_ctx);

static void FN(rd_team_member)(void *vctx, int member, int members)
{
    FN(rd_team_ctx) *c = vctx;
    const int tiles = (c->M + c->rows - 1) / c->rows * c->col_blocks;
    fbp_phase_state s = fbp_phase_start(member, members);
    int k;
    fbp_phase_begin(&s);
    while ((k = fbp_phase_next(&c->ph, &s, tiles)) >= 0) {
        const int r0 = k / c->col_blocks * c->rows, j0 = k % c->col_blocks * c->cols;
        const int nr = c->M - r0 < c->rows ? c->M - r0 : c->rows;
        const int nc = c->N - j0 < c->cols ? c->N - j0 : c->cols;
        FN(fbp_rowdot)(c->C + (ptrdiff_t)r0 * c->ldc + j0, c->ldc, c->A + (ptrdiff_t)r0 * c->lda,
                       c->lda, c->W + (ptrdiff_t)j0 * c->ldw, c->ldw, nr, nc, c->K, c->accumulate);
        fbp_phase_done(&c->ph);
    }
    fbp_phase_end(&c->ph, &s, tiles);
}

void FN(fbp_rowdot_team)(REAL *C, int ldc, const REAL *A, int lda, const REAL *W, int ldw, int M,
                         int N, int K, int accumulate)
{
    if (M <= 0 || N <= 0) return;
    if ((int64_t)M * N * K < RD_TEAM_MIN_MACS) {
        FN(fbp_rowdot)(C, ldc, A, lda, W, ldw, M, N, K, accumulate);
        return;
    }
    FN(rd_team_ctx) c = {.C = C, .A = A, .W = W, .ldc = ldc, .lda = lda, .ldw = ldw, .M = M,
                         .N = N, .K = K, .accumulate = accumulate};
    /* tiles of RD_TEAM_ROWS rows (more when that would make too many), and
     * when there are fewer than RD_TEAM_TILES row blocks, column blocks of
     * whole 4 × 3 tiles to make that many */
    c.rows = fbp_block_size(M, RD_TEAM_ROWS, FBP_TEAM_MAX_CHUNKS / RD_TEAM_TILES);
    const int row_blocks = (M + c.rows - 1) / c.rows;
    const int want = row_blocks >= RD_TEAM_TILES ? 1 : (RD_TEAM_TILES + row_blocks - 1) / row_blocks;
    c.cols = ((N + want - 1) / want + 11) / 12 * 12;
    if (c.cols > N) c.cols = N;
    c.col_blocks = (N + c.cols - 1) / c.cols;
    fbp_team_run(FN(rd_team_member), &c);
}

#undef RD_LANES
#undef RD_MR
#undef RD_NR
#undef RD_TILE_BYTES
#undef RD_ROW_BYTES
