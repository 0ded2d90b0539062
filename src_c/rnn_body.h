/* Elman RNN forward and BPTT, written once for REAL (see rnn.h for the contract).
 * Included by rnn.c with REAL = float / double.
 *
 * Every per-step helper takes the number of rows it works on: step t runs on
 * the first n_t rows of its block (seq.h: rows sorted by length, the slot
 * layout, reset events). */

/* φ(a) for the activation code `act`, a compile-time constant at every call
 * site below, so that each loop is specialised and vectorised. */
FBP_ALWAYS_INLINE REAL FN(rnn_phi)(REAL a, const int act)
{
    if (act == FBP_TANH) return FN(fbp_tanh)(a);
    if (act == FBP_RELU) return a < 0 ? (REAL)0 : a;    /* NaN stays NaN, as np.maximum */
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

/* Out of place: h(H) = φ(a + b_ih + b_hh), for the slot layout where the
 * input side of step t (a) is not stored where h_t goes. */
FBP_ALWAYS_INLINE void FN(rnn_bias_act_to_row)(REAL *restrict h, const REAL *restrict a,
                                               const REAL *restrict b_ih, const REAL *restrict b_hh,
                                               ptrdiff_t H, const int act)
{
    for (ptrdiff_t j = 0; j < H; j++) h[j] = FN(rnn_phi)(a[j] + b_ih[j] + b_hh[j], act);
}

FBP_HOT static void FN(rnn_bias_act_to)(REAL *h, const REAL *a, const REAL *b_ih, const REAL *b_hh,
                                        ptrdiff_t rows, ptrdiff_t H, int act)
{
    for (ptrdiff_t r = 0; r < rows; r++) {
        REAL *hr = h + r * H;
        const REAL *ar = a + r * H;
        switch (act) {
        case FBP_TANH: FN(rnn_bias_act_to_row)(hr, ar, b_ih, b_hh, H, FBP_TANH); break;
        case FBP_RELU: FN(rnn_bias_act_to_row)(hr, ar, b_ih, b_hh, H, FBP_RELU); break;
        default:       FN(rnn_bias_act_to_row)(hr, ar, b_ih, b_hh, H, FBP_IDENTITY); break;
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

static int FN(rnn_check_args)(const fbp_seq *seq, ptrdiff_t *events, const REAL *work,
                              int T, int B, int I, int H, int act)
{
    if (T < 0 || B < 0 || I < 0 || H < 0) return FBP_ERR_ARG;
    if (act != FBP_IDENTITY && act != FBP_TANH && act != FBP_RELU) return FBP_ERR_ARG;
    if ((int64_t)T * B > INT32_MAX) return FBP_ERR_ARG;   /* the stacked GEMMs' M or K */
    int st = fbp_seq_check(seq, T, B, events);
    if (st) return st;
    return *events && !work ? FBP_ERR_ARG : FBP_OK;
}

/* M of seq.h: the slot rows of all T steps. */
static int FN(rnn_slots)(const fbp_seq *seq, int T, int B)
{
    int M = 0;
    for (int t = 0; t < T; t++) M += fbp_seq_block(seq, t, B);
    return M;
}

int FN(fbp_rnn_forward)(REAL *hs, REAL *pre, REAL *work, const REAL *x, const REAL *W_ih,
                        const REAL *W_hh, const REAL *b_ih, const REAL *b_hh, REAL *pack,
                        const fbp_seq *seq, int T, int B, int I, int H, int act)
{
    ptrdiff_t events;
    int st = FN(rnn_check_args)(seq, &events, work, T, B, I, H, act);
    if (st) return st;
    if (!pre && seq && seq->rows) return FBP_ERR_ARG;    /* lengths need their own buffer */
    const ptrdiff_t h = H;
    if (T == 0 || B == 0 || H == 0) return FBP_OK;
    const int M = FN(rnn_slots)(seq, T, B);
    /* The input side of every step at once: A(M,H) = X(M,I) @ W_ih(H,I)ᵀ,
     * written where h_1..h_T will go (hs blocks 1..T) unless `pre` is given */
    REAL *A = pre ? pre : hs + (ptrdiff_t)B * h;
    if (I > 0)
        st = FN(fbp_gemm)(A, H, x, I, W_ih, I, M, H, I, 0, 1, (REAL)1, (REAL)0);
    else
        memset(A, 0, (size_t)M * (size_t)H * sizeof(REAL));
    if (st) return st;

    if (pack) FN(fbp_pack)(pack, W_hh, H, H, 1);   /* panels of W_hhᵀ (H,H) */
    ptrdiff_t s = 0;                               /* s_t, seq.h */
    for (int t = 0; t < T; t++) {
        const int m = fbp_seq_block(seq, t, B), n = fbp_seq_rows(seq, t, B);
        REAL *h_prev = hs + s * h, *h_new = hs + (s + m) * h;
        REAL *a = pre ? pre + s * h : h_new;       /* holds x_t W_ihᵀ */
        const int *ev;
        const int ne = fbp_seq_events(seq, t, &ev);
        if (ne) FN(fbp_seq_swap_in)(h_prev, work, hs, ev, ne, H);   /* reset rows: h0 */
        if (n > 0) {
            /* a_t = x_t W_ihᵀ + h_{t−1} W_hhᵀ, then h_t = φ(a_t + b_ih + b_hh) */
            st = FN(rnn_recurrent_forward)(a, h_prev, W_hh, pack, n, H);
            if (st) return st;
            if (a == h_new) FN(rnn_bias_act)(h_new, b_ih, b_hh, n, H, act);
            else FN(rnn_bias_act_to)(h_new, a, b_ih, b_hh, n, H, act);
        }
        if (ne) FN(fbp_seq_restore)(h_prev, work, ev, ne, H);
        s += m;
    }
    return FBP_OK;
}

/* ∂L/∂h of rows [lo, hi) at their last step: dh_n's rows, or zeros. */
static void FN(rnn_final_grad)(REAL *dst, const REAL *dh_n, int lo, int hi, int H)
{
    if (hi <= lo) return;
    const size_t bytes = (size_t)(hi - lo) * (size_t)H * sizeof(REAL);
    if (dh_n) memcpy(dst + (ptrdiff_t)lo * H, dh_n + (ptrdiff_t)lo * H, bytes);
    else memset(dst + (ptrdiff_t)lo * H, 0, bytes);
}

int FN(fbp_rnn_backward)(REAL *dx, REAL *dh0, REAL *dW_ih, REAL *dW_hh, REAL *db, REAL *delta,
                         REAL *work, const REAL *dy, const REAL *dh_n, REAL *hs, const REAL *x,
                         const REAL *W_ih, const REAL *W_hh, REAL *pack, const fbp_seq *seq,
                         int T, int B, int I, int H, int act)
{
    ptrdiff_t events;
    int st = FN(rnn_check_args)(seq, &events, work, T, B, I, H, act);
    if (st) return st;
    const ptrdiff_t h = H, BH = (ptrdiff_t)B * H;
    if (BH == 0) return FBP_OK;
    /* rows that never ran (length 0, or T = 0): ∂L/∂h_0 = ∂L/∂h_n */
    const int n0 = T > 0 ? fbp_seq_rows(seq, 0, B) : 0;
    FN(rnn_final_grad)(dh0, dh_n, n0, B, H);
    if (T == 0) return FBP_OK;
    REAL *acc = work, *h_save = work + BH;
    if (events) memset(acc, 0, (size_t)BH * sizeof(REAL));
    const int M = FN(rnn_slots)(seq, T, B);

    /* The recurrent part of ∂L/∂h_t is staged in delta's block t, where the
     * fused pass of step t reads it and overwrites it with δ_t. Rows whose
     * last step is t get dh_n there instead. */
    if (pack) FN(fbp_pack)(pack, W_hh, H, H, 0);   /* panels of W_hh (H,H) */
    ptrdiff_t s = M;
    for (int t = T - 1; t >= 0; t--) {
        const int m = fbp_seq_block(seq, t, B), n = fbp_seq_rows(seq, t, B);
        const int n_next = t + 1 < T ? fbp_seq_rows(seq, t + 1, B) : 0;
        s -= m;
        REAL *d = delta + s * h;
        const REAL *h_t = hs + (s + m) * h;
        FN(rnn_final_grad)(d, dh_n, n_next, n, H);
        if (m > n) memset(d + (ptrdiff_t)n * h, 0, (size_t)(m - n) * (size_t)H * sizeof(REAL));
        if (n == 0) continue;
        /* δ_t = (dy_t + δ_{t+1} W_hh) ⊙ φ'(a_t);  db += Σ_rows δ_t */
        FN(rnn_delta)(d, db, dy ? dy + s * h : NULL, h_t, n, H, act);
        /* δ_t W_hh: the recurrent part of ∂L/∂h_{t−1}, into block t−1; at t = 0 it is ∂L/∂h_0 */
        REAL *rec = t > 0 ? d - (ptrdiff_t)fbp_seq_block(seq, t - 1, B) * h : dh0;
        st = FN(rnn_recurrent_backward)(rec, d, W_hh, pack, n, H);
        if (st) return st;
        const int *ev;
        const int ne = fbp_seq_events(seq, t, &ev);
        if (ne) FN(fbp_seq_divert)(acc, rec, ev, ne, H);   /* no gradient across a reset */
    }
    if (events)
        for (ptrdiff_t k = 0; k < BH; k++) dh0[k] += acc[k];

    /* The weight and input gradients: one GEMM each over all M rows. */
    /* dW_ih(H,I) += Δ(M,H)ᵀ @ X(M,I) */
    st = FN(fbp_gemm)(dW_ih, I, delta, H, x, I, H, I, M, 1, 0, (REAL)1, (REAL)1);
    if (st) return st;
    /* dW_hh(H,H) += Δ(M,H)ᵀ @ H_prev(M,H),  H_prev = hs blocks 0..T−1 (h0 in
     * the rows of reset events for the duration of the GEMM) */
    if (events) FN(fbp_seq_swap_all)(hs, h_save, seq, T, B, H, 1);
    st = FN(fbp_gemm)(dW_hh, H, delta, H, hs, H, H, H, M, 1, 0, (REAL)1, (REAL)1);
    if (events) FN(fbp_seq_swap_all)(hs, h_save, seq, T, B, H, 0);
    if (st) return st;
    if (dx)   /* dX(M,I) = Δ(M,H) @ W_ih(H,I) */
        st = FN(fbp_gemm)(dx, I, delta, H, W_ih, I, M, I, H, 0, 0, (REAL)1, (REAL)0);
    return st;
}

/* ---- both directions of a layer (rnn.h) ---------------------------------------- */

int FN(fbp_rnn_forward_dirs)(int D, REAL *const hs[], REAL *const pre[], REAL *work,
                             const REAL *const x[], const REAL *const W_ih[],
                             const REAL *const W_hh[], const REAL *const b_ih[],
                             const REAL *const b_hh[], REAL *pack, const fbp_seq *const seq[],
                             int T, int B, int I, int H, int act)
{
    if (D < 1 || D > 2) return FBP_ERR_ARG;
    for (int d = 0; d < D; d++) {
        const int st = FN(fbp_rnn_forward)(hs[d], pre[d], work, x[d], W_ih[d], W_hh[d], b_ih[d],
                                           b_hh[d], pack, seq[d], T, B, I, H, act);
        if (st) return st;
    }
    return FBP_OK;
}

int FN(fbp_rnn_backward_dirs)(int D, REAL *const dx[], REAL *const dh0[], REAL *const dW_ih[],
                              REAL *const dW_hh[], REAL *const db[], REAL *const delta[],
                              REAL *work, const REAL *const dy[], const REAL *const dh_n[],
                              REAL *const hs[], const REAL *const x[], const REAL *const W_ih[],
                              const REAL *const W_hh[], REAL *pack, const fbp_seq *const seq[],
                              int T, int B, int I, int H, int act)
{
    if (D < 1 || D > 2) return FBP_ERR_ARG;
    for (int d = 0; d < D; d++) {
        const int st = FN(fbp_rnn_backward)(dx[d], dh0[d], dW_ih[d], dW_hh[d], db[d], delta[d],
                                            work, dy[d], dh_n[d], hs[d], x[d], W_ih[d], W_hh[d],
                                            pack, seq[d], T, B, I, H, act);
        if (st) return st;
    }
    return FBP_OK;
}
