/* Elman RNN forward and BPTT, written once for REAL (see rnn.h for the contract).
 * Included by rnn.c with REAL = float / double.
 *
 * Every per-step helper takes the number of rows it works on (`rows`, today
 * always B) and a leading dimension of H, so that a step over only the first
 * n_t rows of the batch (variable lengths, rows sorted by length) is a change
 * of one argument, not of the pointer arithmetic. */

/* φ(a) for the activation code `act`, a compile-time constant at every call
 * site below, so that each loop is specialised and vectorised. */
FBP_ALWAYS_INLINE REAL FN(rnn_phi)(REAL a, const int act)
{
    if (act == FBP_TANH) return FN(fbp_tanh)(a);
    if (act == FBP_RELU) return a > 0 ? a : (REAL)0;
    return a;   /* identity */
}

/* φ'(a_t)·e written from the forward output h = φ(a_t): tanh 1 − h², relu
 * 1[h > 0] (0 at the kink, as in the notes), identity 1. */
FBP_ALWAYS_INLINE REAL FN(rnn_dphi_times)(REAL e, REAL h, const int act)
{
    if (act == FBP_TANH) return e * ((REAL)1 - h * h);
    if (act == FBP_RELU) return h > 0 ? e : (REAL)0;
    return e;   /* identity */
}

/* One row of the forward fused pass: h(H) = φ(h + b_ih + b_hh) in place,
 * where h holds x_t W_ihᵀ + h_{t−1} W_hhᵀ on entry. */
FBP_ALWAYS_INLINE void FN(rnn_bias_act_row)(REAL *restrict h, const REAL *restrict b_ih,
                                            const REAL *restrict b_hh, ptrdiff_t H, const int act)
{
    for (ptrdiff_t j = 0; j < H; j++) h[j] = FN(rnn_phi)(h[j] + b_ih[j] + b_hh[j], act);
}

/* Forward fused pass of one step over h(rows,H), leading dimension H.
 * FBP_HOT: also compiled for x86-64-v3 (AVX2), picked at load. */
FBP_HOT static void FN(rnn_bias_act)(REAL *h, const REAL *b_ih, const REAL *b_hh, ptrdiff_t rows,
                                     ptrdiff_t H, int act)
{
    for (ptrdiff_t r = 0; r < rows; r++) {
        REAL *hr = h + r * H;
        switch (act) {
        case FBP_TANH: FN(rnn_bias_act_row)(hr, b_ih, b_hh, H, FBP_TANH); break;
        case FBP_RELU: FN(rnn_bias_act_row)(hr, b_ih, b_hh, H, FBP_RELU); break;
        default:       FN(rnn_bias_act_row)(hr, b_ih, b_hh, H, FBP_IDENTITY); break;
        }
    }
}

/* One row of the backward fused pass:
 *   δ(H) = (dy + rec) ⊙ φ'(a_t),   db(H) += δ
 * rec = δ_{t+1} W_hh (the recurrent part of ∂L/∂h_t) is in d on entry and δ
 * replaces it; dy may be NULL (no gradient from above at this step). */
FBP_ALWAYS_INLINE void FN(rnn_delta_row)(REAL *restrict d, REAL *restrict db, const REAL *restrict dy,
                                         const REAL *restrict h, ptrdiff_t H, const int act)
{
    for (ptrdiff_t j = 0; j < H; j++) {
        REAL e = dy ? d[j] + dy[j] : d[j];          /* ∂L/∂h_t */
        REAL v = FN(rnn_dphi_times)(e, h[j], act);  /* δ_t = ∂L/∂h_t ⊙ φ'(a_t) */
        d[j] = v;
        db[j] += v;
    }
}

/* Backward fused pass of one step over delta(rows,H); dy(rows,H) or NULL;
 * h(rows,H) = h_t. The row order is fixed, so db's sum is deterministic. */
FBP_HOT static void FN(rnn_delta)(REAL *delta, REAL *db, const REAL *dy, const REAL *h,
                                  ptrdiff_t rows, ptrdiff_t H, int act)
{
    for (ptrdiff_t r = 0; r < rows; r++) {
        REAL *dr = delta + r * H;
        const REAL *hr = h + r * H;
        /* the NULL / non-NULL dy and the act constant are fixed per call of the
         * inlined row function, so each of the six loops compiles branch-free */
        if (dy) {
            const REAL *yr = dy + r * H;
            switch (act) {
            case FBP_TANH: FN(rnn_delta_row)(dr, db, yr, hr, H, FBP_TANH); break;
            case FBP_RELU: FN(rnn_delta_row)(dr, db, yr, hr, H, FBP_RELU); break;
            default:       FN(rnn_delta_row)(dr, db, yr, hr, H, FBP_IDENTITY); break;
            }
        } else {
            switch (act) {
            case FBP_TANH: FN(rnn_delta_row)(dr, db, NULL, hr, H, FBP_TANH); break;
            case FBP_RELU: FN(rnn_delta_row)(dr, db, NULL, hr, H, FBP_RELU); break;
            default:       FN(rnn_delta_row)(dr, db, NULL, hr, H, FBP_IDENTITY); break;
            }
        }
    }
}

/* ---- the per-step recurrent product ----------------------------------------
 * It is small (rows ≤ B against the H×H weight) and repeated T times with the
 * same weight, and BLAS repacks the whole weight on every call: at B = 16 that
 * costs about as much as the arithmetic. So the weight is packed once per
 * sequence into panels of RNN_NR columns, P[p][k][jj] = op(W)[k][p·NR + jj]
 * (zero past N), and a register-blocked kernel runs over them: RNN_MR rows at a
 * time, or RNN_ROW_PANELS panels at a time for a single row (B = 1, where the
 * product is a matrix-vector product bound by streaming the weight from L2).
 * Single-threaded, and every output sums over k in order: deterministic. */
#define RNN_NR (64 / (int)sizeof(REAL))     /* two 32-byte vectors of REAL */
#define RNN_MR 6                            /* 6 × 2 accumulators + 2 loads + 1 broadcast */
#define RNN_ROW_PANELS 4                    /* one row: 4 panels × 2 accumulators in flight */

/* P (ceil(N/NR)·NR·K): the panels of op(W)(K,N), where op(W) = Wᵀ for a
 * row-major W(N,K) if transposed, else W(K,N) itself. */
static void FN(rnn_pack)(REAL *P, const REAL *W, int K, int N, int transposed)
{
    for (int j0 = 0; j0 < N; j0 += RNN_NR) {
        REAL *panel = P + (ptrdiff_t)j0 * K;
        const int nc = N - j0 < RNN_NR ? N - j0 : RNN_NR;
        for (int k = 0; k < K; k++) {
            REAL *dst = panel + (ptrdiff_t)k * RNN_NR;
            if (transposed)
                for (int jj = 0; jj < nc; jj++) dst[jj] = W[(ptrdiff_t)(j0 + jj) * K + k];
            else
                for (int jj = 0; jj < nc; jj++) dst[jj] = W[(ptrdiff_t)k * N + j0 + jj];
            for (int jj = nc; jj < RNN_NR; jj++) dst[jj] = 0;
        }
    }
}

#if defined(__GNUC__)
/* GCC/Clang vector extensions: explicit 32-byte vectors keep the accumulators
 * in registers; the baseline (non-AVX) clone lowers each to two SSE registers. */
typedef REAL FN(rnn_vec) __attribute__((vector_size(32), aligned(sizeof(REAL)), may_alias));

/* C(mr, ncols) (+)= A(mr, K) @ panel(K, NR)[:, :ncols], mr ≤ RNN_MR a constant
 * at every call site. */
FBP_ALWAYS_INLINE void FN(rnn_micro)(REAL *restrict C, int ldc, const REAL *restrict A, int lda,
                                     const REAL *restrict panel, int K, int ncols, int accumulate,
                                     const int mr)
{
    typedef FN(rnn_vec) vec;
    enum { HALF = RNN_NR / 2 };
    vec acc0[RNN_MR], acc1[RNN_MR];
    for (int i = 0; i < mr; i++) {
        acc0[i] = (vec){0};
        acc1[i] = (vec){0};
    }
    for (int k = 0; k < K; k++) {
        const vec w0 = *(const vec *)(panel + (ptrdiff_t)k * RNN_NR);
        const vec w1 = *(const vec *)(panel + (ptrdiff_t)k * RNN_NR + HALF);
        for (int i = 0; i < mr; i++) {
            const REAL a = A[(ptrdiff_t)i * lda + k];
            acc0[i] += a * w0;
            acc1[i] += a * w1;
        }
    }
    for (int i = 0; i < mr; i++) {
        REAL *c = C + (ptrdiff_t)i * ldc, out[RNN_NR];
        *(vec *)out = acc0[i];
        *(vec *)(out + HALF) = acc1[i];
        if (accumulate) for (int jj = 0; jj < ncols; jj++) c[jj] += out[jj];
        else for (int jj = 0; jj < ncols; jj++) c[jj] = out[jj];
    }
}

/* One row: c(N) (+)= a(K) @ op(W)(K,N) over RNN_ROW_PANELS whole panels at once
 * (np of them, a constant), so 2·np independent accumulator chains hide the
 * FMA latency that a single panel's two chains would expose. */
FBP_ALWAYS_INLINE void FN(rnn_micro_row)(REAL *restrict c, const REAL *restrict a,
                                         const REAL *restrict P, int K, int accumulate, const int np)
{
    typedef FN(rnn_vec) vec;
    enum { HALF = RNN_NR / 2 };
    vec acc0[RNN_ROW_PANELS], acc1[RNN_ROW_PANELS];
    for (int p = 0; p < np; p++) {
        acc0[p] = (vec){0};
        acc1[p] = (vec){0};
    }
    const ptrdiff_t panel_size = (ptrdiff_t)K * RNN_NR;
    for (int k = 0; k < K; k++) {
        const REAL ak = a[k];
        for (int p = 0; p < np; p++) {
            const REAL *w = P + p * panel_size + (ptrdiff_t)k * RNN_NR;
            acc0[p] += ak * *(const vec *)w;
            acc1[p] += ak * *(const vec *)(w + HALF);
        }
    }
    for (int p = 0; p < np; p++) {
        REAL out[RNN_NR];
        *(vec *)out = acc0[p];
        *(vec *)(out + HALF) = acc1[p];
        REAL *cp = c + p * RNN_NR;
        if (accumulate) for (int jj = 0; jj < RNN_NR; jj++) cp[jj] += out[jj];
        else for (int jj = 0; jj < RNN_NR; jj++) cp[jj] = out[jj];
    }
}
#else
FBP_ALWAYS_INLINE void FN(rnn_micro)(REAL *restrict C, int ldc, const REAL *restrict A, int lda,
                                     const REAL *restrict panel, int K, int ncols, int accumulate,
                                     const int mr)
{
    for (int i = 0; i < mr; i++) {
        REAL out[RNN_NR] = {0};
        for (int k = 0; k < K; k++) {
            const REAL a = A[(ptrdiff_t)i * lda + k];
            for (int jj = 0; jj < RNN_NR; jj++) out[jj] += a * panel[(ptrdiff_t)k * RNN_NR + jj];
        }
        REAL *c = C + (ptrdiff_t)i * ldc;
        for (int jj = 0; jj < ncols; jj++) c[jj] = (accumulate ? c[jj] : 0) + out[jj];
    }
}

FBP_ALWAYS_INLINE void FN(rnn_micro_row)(REAL *restrict c, const REAL *restrict a,
                                         const REAL *restrict P, int K, int accumulate, const int np)
{
    for (int p = 0; p < np; p++)
        FN(rnn_micro)(c + p * RNN_NR, 0, a, 0, P + (ptrdiff_t)p * K * RNN_NR, K, RNN_NR, accumulate, 1);
}
#endif

/* C(M,N) (+)= A(M,K) @ op(W)(K,N), op(W) packed by rnn_pack; lda, ldc row
 * strides. FMA contraction is allowed here (and only here): it is a matrix
 * product like BLAS's, whose rounding differs across CPUs anyway; the fused
 * elementwise passes stay uncontracted. */
FBP_HOT FBP_CONTRACT static void FN(rnn_gemm_packed)(REAL *C, int ldc, const REAL *A, int lda,
                                                     const REAL *P, int M, int N, int K,
                                                     int accumulate)
{
    if (M == 1) {       /* a matrix-vector product: several panels at a time */
        int j0 = 0;
        for (; j0 + RNN_ROW_PANELS * RNN_NR <= N; j0 += RNN_ROW_PANELS * RNN_NR)
            FN(rnn_micro_row)(C + j0, A, P + (ptrdiff_t)j0 * K, K, accumulate, RNN_ROW_PANELS);
        for (; j0 < N; j0 += RNN_NR) {     /* the last panels one by one */
            const int nc = N - j0 < RNN_NR ? N - j0 : RNN_NR;
            FN(rnn_micro)(C + j0, ldc, A, lda, P + (ptrdiff_t)j0 * K, K, nc, accumulate, 1);
        }
        return;
    }
    for (int j0 = 0; j0 < N; j0 += RNN_NR) {
        const REAL *panel = P + (ptrdiff_t)j0 * K;
        const int nc = N - j0 < RNN_NR ? N - j0 : RNN_NR;
        REAL *Cj = C + j0;
        int r = 0;
        for (; r + RNN_MR <= M; r += RNN_MR)
            FN(rnn_micro)(Cj + (ptrdiff_t)r * ldc, ldc, A + (ptrdiff_t)r * lda, lda, panel, K, nc,
                          accumulate, RNN_MR);
        REAL *Cr = Cj + (ptrdiff_t)r * ldc;
        const REAL *Ar = A + (ptrdiff_t)r * lda;
        switch (M - r) {    /* the last rows: one constant-size copy of the kernel each */
        case 1: FN(rnn_micro)(Cr, ldc, Ar, lda, panel, K, nc, accumulate, 1); break;
        case 2: FN(rnn_micro)(Cr, ldc, Ar, lda, panel, K, nc, accumulate, 2); break;
        case 3: FN(rnn_micro)(Cr, ldc, Ar, lda, panel, K, nc, accumulate, 3); break;
        case 4: FN(rnn_micro)(Cr, ldc, Ar, lda, panel, K, nc, accumulate, 4); break;
        case 5: FN(rnn_micro)(Cr, ldc, Ar, lda, panel, K, nc, accumulate, 5); break;
        default: break;
        }
    }
}

/* Elements of the packing workspace for hidden size H: op(W_hh) is H×H both
 * ways (W_hhᵀ forward, W_hh backward). */
ptrdiff_t FN(fbp_rnn_pack_size)(int H)
{
    return H < 0 ? 0 : ((ptrdiff_t)H + RNN_NR - 1) / RNN_NR * RNN_NR * H;
}

/* Recurrent product of a forward step: h(rows,H) += h_prev(rows,H) @ W_hh(H,H)ᵀ,
 * on the packed W_hhᵀ when pack is given, else through BLAS (a GEMV for one row). */
static int FN(rnn_recurrent_forward)(REAL *h, const REAL *h_prev, const REAL *W_hh,
                                     const REAL *pack, int rows, int H)
{
    if (pack) {
        FN(rnn_gemm_packed)(h, H, h_prev, H, pack, rows, H, H, 1);
        return FBP_OK;
    }
    if (rows == 1)   /* h(H) += W_hh(H,H) @ h_prev(H) */
        return FN(fbp_gemv)(h, W_hh, H, h_prev, H, H, 0, (REAL)1, (REAL)1);
    /* h(rows,H) += h_prev(rows,H) @ W_hh(H,H)ᵀ */
    return FN(fbp_gemm)(h, H, h_prev, H, W_hh, H, rows, H, H, 0, 1, (REAL)1, (REAL)1);
}

/* Recurrent product of a backward step: rec(rows,H) = δ_t(rows,H) @ W_hh(H,H),
 * the recurrent part of ∂L/∂h_{t−1}; on the packed W_hh when pack is given. */
static int FN(rnn_recurrent_backward)(REAL *rec, const REAL *delta, const REAL *W_hh,
                                      const REAL *pack, int rows, int H)
{
    if (pack) {
        FN(rnn_gemm_packed)(rec, H, delta, H, pack, rows, H, H, 0);
        return FBP_OK;
    }
    if (rows == 1)   /* rec(H) = W_hh(H,H)ᵀ @ δ(H) */
        return FN(fbp_gemv)(rec, W_hh, H, delta, H, H, 1, (REAL)1, (REAL)0);
    /* rec(rows,H) = δ(rows,H) @ W_hh(H,H) */
    return FN(fbp_gemm)(rec, H, delta, H, W_hh, H, rows, H, H, 0, 0, (REAL)1, (REAL)0);
}

static int FN(rnn_check_args)(int T, int B, int I, int H, int act)
{
    if (T < 0 || B < 0 || I < 0 || H < 0) return FBP_ERR_ARG;
    if (act != FBP_IDENTITY && act != FBP_TANH && act != FBP_RELU) return FBP_ERR_ARG;
    if ((int64_t)T * B > INT32_MAX) return FBP_ERR_ARG;   /* the stacked GEMMs' M or K */
    return FBP_OK;
}

int FN(fbp_rnn_forward)(REAL *hs, const REAL *x, const REAL *W_ih, const REAL *W_hh,
                        const REAL *b_ih, const REAL *b_hh, REAL *pack,
                        int T, int B, int I, int H, int act)
{
    int st = FN(rnn_check_args)(T, B, I, H, act);
    if (st) return st;
    const ptrdiff_t BH = (ptrdiff_t)B * H;
    if (T == 0 || BH == 0) return FBP_OK;
    REAL *a_all = hs + BH;   /* hs[1..T]: (T·B,H) */

    /* Input side of every step at once, written where h_1..h_T will go:
     * A(T·B,H) = X(T·B,I) @ W_ih(H,I)ᵀ */
    if (I > 0)
        st = FN(fbp_gemm)(a_all, H, x, I, W_ih, I, T * B, H, I, 0, 1, (REAL)1, (REAL)0);
    else
        memset(a_all, 0, (size_t)(T * BH) * sizeof(REAL));
    if (st) return st;

    if (pack) FN(rnn_pack)(pack, W_hh, H, H, 1);   /* panels of W_hhᵀ (H,H) */
    for (int t = 0; t < T; t++) {
        const REAL *h_prev = hs + (ptrdiff_t)t * BH;
        REAL *h = hs + (ptrdiff_t)(t + 1) * BH;   /* holds x_t W_ihᵀ */
        int rows = B;                             /* rows active at this step */
        /* a_t = x_t W_ihᵀ + h_{t−1} W_hhᵀ, then h_t = φ(a_t + b_ih + b_hh) */
        st = FN(rnn_recurrent_forward)(h, h_prev, W_hh, pack, rows, H);
        if (st) return st;
        FN(rnn_bias_act)(h, b_ih, b_hh, rows, H, act);
    }
    return FBP_OK;
}

int FN(fbp_rnn_backward)(REAL *dx, REAL *dh0, REAL *dW_ih, REAL *dW_hh, REAL *db, REAL *delta,
                         const REAL *dy, const REAL *dh_n, const REAL *hs, const REAL *x,
                         const REAL *W_ih, const REAL *W_hh, REAL *pack,
                         int T, int B, int I, int H, int act)
{
    int st = FN(rnn_check_args)(T, B, I, H, act);
    if (st) return st;
    const ptrdiff_t BH = (ptrdiff_t)B * H;
    if (BH == 0) return FBP_OK;
    if (T == 0) {   /* no step: ∂L/∂h_0 = ∂L/∂h_T */
        if (dh_n) memcpy(dh0, dh_n, (size_t)BH * sizeof(REAL));
        else memset(dh0, 0, (size_t)BH * sizeof(REAL));
        return FBP_OK;
    }

    /* The recurrent part of ∂L/∂h_t is staged in delta[t], where the fused
     * pass of step t reads it and overwrites it with δ_t. At t = T it is dh_n. */
    REAL *last = delta + (ptrdiff_t)(T - 1) * BH;
    if (dh_n) memcpy(last, dh_n, (size_t)BH * sizeof(REAL));
    else memset(last, 0, (size_t)BH * sizeof(REAL));

    if (pack) FN(rnn_pack)(pack, W_hh, H, H, 0);   /* panels of W_hh (H,H) */
    for (int t = T - 1; t >= 0; t--) {
        REAL *d = delta + (ptrdiff_t)t * BH;
        const REAL *h = hs + (ptrdiff_t)(t + 1) * BH;   /* h_t */
        int rows = B;                                    /* rows active at this step */
        /* δ_t = (dy_t + δ_{t+1} W_hh) ⊙ φ'(a_t);  db += Σ_rows δ_t */
        FN(rnn_delta)(d, db, dy ? dy + (ptrdiff_t)t * BH : NULL, h, rows, H, act);
        /* δ_t W_hh: the recurrent part of ∂L/∂h_{t−1}, into delta[t−1]; at t = 0 it is ∂L/∂h_0 */
        st = FN(rnn_recurrent_backward)(t > 0 ? d - BH : dh0, d, W_hh, pack, rows, H);
        if (st) return st;
    }

    /* The weight and input gradients: one GEMM each over all T·B rows. */
    /* dW_ih(H,I) += Δ(T·B,H)ᵀ @ X(T·B,I) */
    st = FN(fbp_gemm)(dW_ih, I, delta, H, x, I, H, I, T * B, 1, 0, (REAL)1, (REAL)1);
    if (st) return st;
    /* dW_hh(H,H) += Δ(T·B,H)ᵀ @ H_prev(T·B,H),  H_prev = hs[0..T−1] */
    st = FN(fbp_gemm)(dW_hh, H, delta, H, hs, H, H, H, T * B, 1, 0, (REAL)1, (REAL)1);
    if (st) return st;
    if (dx)   /* dX(T·B,I) = Δ(T·B,H) @ W_ih(H,I) */
        st = FN(fbp_gemm)(dx, I, delta, H, W_ih, I, T * B, I, H, 0, 0, (REAL)1, (REAL)0);
    return st;
}
