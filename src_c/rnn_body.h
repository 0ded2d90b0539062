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

/* Elements of the packing workspace for hidden size H: op(W_hh) is H×H both
 * ways (W_hhᵀ forward, W_hh backward). */
ptrdiff_t FN(fbp_rnn_pack_size)(int H)
{
    return FN(fbp_pack_size)(H, H);
}

/* Recurrent product of a forward step: h(rows,H) += h_prev(rows,H) @ W_hh(H,H)ᵀ,
 * on the packed W_hhᵀ when pack is given, else through BLAS (a GEMV for one row). */
static int FN(rnn_recurrent_forward)(REAL *h, const REAL *h_prev, const REAL *W_hh,
                                     const REAL *pack, int rows, int H)
{
    if (pack) {
        FN(fbp_gemm_packed)(h, H, h_prev, H, pack, rows, H, H, 1);
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
        FN(fbp_gemm_packed)(rec, H, delta, H, pack, rows, H, H, 0);
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

    if (pack) FN(fbp_pack)(pack, W_hh, H, H, 1);   /* panels of W_hhᵀ (H,H) */
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

    if (pack) FN(fbp_pack)(pack, W_hh, H, H, 0);   /* panels of W_hh (H,H) */
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
