/* LSTM forward and BPTT, written once for REAL. Included by lstm.c with
 * REAL = float / double; see lstm.h for the buffers and docs/equations.md §7.
 *
 * Shape of one call (forward):
 *   one GEMM over all T·B rows for the input side of every gate,
 *   per step: one recurrent GEMM for the four gates together (GEMV at n = 1),
 *             one fused pass: bias, σ σ tanh σ, peepholes, c_t, h_t.
 * Backward:
 *   per step: one fused pass giving all four gate gradients, the cell-state
 *             gradient carried to t−1 and the bias/peephole reductions, then
 *             one recurrent product for ∂L/∂h_{t−1},
 *   after the loop: dW_ih, dW_hh and dX as one GEMM each over the stacked
 *             (T·B, ·) arrays.
 * Each step works on its first n_t rows: variable lengths and resets follow
 * seq.h (rows sorted by length, the slot layout, reset events). */

/* Elements of the packing workspace for hidden size H: the larger of the two
 * packings, W_hhᵀ (K = H, N = 4H) forward and W_hh (K = 4H, N = H) backward. */
ptrdiff_t FN(fbp_lstm_pack_size)(int H)
{
    const ptrdiff_t fwd = FN(fbp_pack_size)(H, 4 * H), bwd = FN(fbp_pack_size)(4 * H, H);
    return fwd > bwd ? fwd : bwd;
}

/* ---- fused forward pass of one row of one step ------------------------------
 * gi, gf, gg, go (H each, the row's four gate blocks):
 *           in  x_t W_ihᵀ + h_{t-1} W_hhᵀ (bias not yet added), out i, f, g, o
 * cn, hn (H): out c_t, h_t;  cp (H): c_{t-1}
 * b_* (H): bias blocks;  p_* (H): peepholes (read only when has_peep).
 * Every pointer is a restrict parameter (GCC keeps restrict through inlining
 * only for parameters), so the loop vectorises without runtime alias checks. */
FBP_ALWAYS_INLINE void FN(lstm_forward_row)(
    REAL *restrict gi, REAL *restrict gf, REAL *restrict gg, REAL *restrict go,
    REAL *restrict cn, REAL *restrict hn, const REAL *restrict cp,
    const REAL *restrict b_i, const REAL *restrict b_f, const REAL *restrict b_g,
    const REAL *restrict b_o, const REAL *restrict p_i, const REAL *restrict p_f,
    const REAL *restrict p_o, int H, const int has_peep)
{
    for (int j = 0; j < H; j++) {
        REAL zi = gi[j] + b_i[j], zf = gf[j] + b_f[j];
        REAL zg = gg[j] + b_g[j], zo = go[j] + b_o[j];
        if (has_peep) {
            zi += p_i[j] * cp[j];                        /* + p_i ⊙ c_{t-1} */
            zf += p_f[j] * cp[j];                        /* + p_f ⊙ c_{t-1} */
        }
        REAL it = FN(fbp_sigmoid)(zi), ft = FN(fbp_sigmoid)(zf), gt = FN(fbp_tanh)(zg);
        REAL ct = ft * cp[j] + it * gt;                  /* c_t = f c_{t-1} + i g */
        if (has_peep) zo += p_o[j] * ct;                 /* + p_o ⊙ c_t (the NEW state) */
        REAL ot = FN(fbp_sigmoid)(zo);
        gi[j] = it; gf[j] = ft; gg[j] = gt; go[j] = ot;
        cn[j] = ct;
        hn[j] = ot * FN(fbp_tanh)(ct);                   /* h_t = o tanh(c_t) */
    }
}

/* One step's fused pass over rows [0, n):
 * g (n,4H) pre-activations -> activated [i, f, g, o]; c_new, h_new (n,H) out;
 * c_prev (n,H); bias (4H); peep (3,H) rows p_i, p_f, p_o, or NULL. */
FBP_HOT static void FN(lstm_forward_pass)(
    REAL *g, REAL *c_new, REAL *h_new, const REAL *c_prev, const REAL *bias,
    const REAL *peep, int n, int H)
{
    const ptrdiff_t h = H;
    for (int r = 0; r < n; r++) {
        REAL *gr = g + 4 * h * r;
        ptrdiff_t o = h * r;
        /* two specialised copies of the loop: no peephole test per element */
        if (peep)
            FN(lstm_forward_row)(gr, gr + h, gr + 2 * h, gr + 3 * h, c_new + o, h_new + o, c_prev + o,
                                 bias, bias + h, bias + 2 * h, bias + 3 * h,
                                 peep, peep + h, peep + 2 * h, H, 1);
        else
            FN(lstm_forward_row)(gr, gr + h, gr + 2 * h, gr + 3 * h, c_new + o, h_new + o, c_prev + o,
                                 bias, bias + h, bias + 2 * h, bias + 3 * h,
                                 NULL, NULL, NULL, H, 0);
    }
}

/* ---- fused backward pass of one row of one step -----------------------------
 * gi, gf, gg, go (H each): in i, f, g, o activated;  out δi, δf, δg, δo
 * dcr (H):  in  ε_c^{t+1} f_{t+1} + p_i δi_{t+1} + p_f δf_{t+1} (dc_n at t = T)
 *           out the same quantity for step t, carried to t−1
 * dhr (H):  δ_{t+1} W_hh (dh_n at t = T);  dyr (H): ∂L/∂h_t from above (has_dy)
 * cp, cn (H): c_{t-1}, c_t;  p_* (H): peepholes (has_peep)
 * db_* (H), dp_* (H): accumulated (+=). */
FBP_ALWAYS_INLINE void FN(lstm_backward_row)(
    REAL *restrict gi, REAL *restrict gf, REAL *restrict gg, REAL *restrict go,
    REAL *restrict dcr, REAL *restrict db_i, REAL *restrict db_f, REAL *restrict db_g,
    REAL *restrict db_o, REAL *restrict dp_i, REAL *restrict dp_f, REAL *restrict dp_o,
    const REAL *restrict dhr, const REAL *restrict dyr, const REAL *restrict cp,
    const REAL *restrict cn, const REAL *restrict p_i, const REAL *restrict p_f,
    const REAL *restrict p_o, int H, const int has_peep, const int has_dy)
{
    for (int j = 0; j < H; j++) {
        REAL it = gi[j], ft = gf[j], gt = gg[j], ot = go[j];
        REAL tc = FN(fbp_tanh)(cn[j]);                   /* recomputed, not stored */
        REAL eh = has_dy ? dyr[j] + dhr[j] : dhr[j];     /* ε_h^t */
        REAL d_o = eh * tc * ot * (1 - ot);              /* δo = ε_h tanh(c) o(1−o) */
        REAL ec = eh * ot * (1 - tc * tc) + dcr[j];      /* ε_c^t */
        if (has_peep) ec += p_o[j] * d_o;                /*   + p_o δo_t */
        REAL d_g = ec * it * (1 - gt * gt);              /* δg = ε_c i (1−g²) */
        REAL d_f = ec * cp[j] * ft * (1 - ft);           /* δf = ε_c c_{t-1} f(1−f) */
        REAL d_i = ec * gt * it * (1 - it);              /* δi = ε_c g i(1−i) */
        REAL carry = ec * ft;                            /* → ε_c^{t-1}: ε_c f_t ... */
        if (has_peep) carry += p_i[j] * d_i + p_f[j] * d_f;   /* + p_i δi + p_f δf */
        dcr[j] = carry;
        gi[j] = d_i; gf[j] = d_f; gg[j] = d_g; go[j] = d_o;
        db_i[j] += d_i; db_f[j] += d_f; db_g[j] += d_g; db_o[j] += d_o;
        if (has_peep) {
            dp_i[j] += d_i * cp[j];                      /* Σ δi c_{t-1} */
            dp_f[j] += d_f * cp[j];                      /* Σ δf c_{t-1} */
            dp_o[j] += d_o * cn[j];                      /* Σ δo c_t */
        }
    }
}

/* One step's fused pass over rows [0, n):
 * gd (n,4H) activated gates -> δ_t; dc (n,H) carried cell gradient (in/out);
 * dh (n,H) δ_{t+1} W_hh; dy (n,H) or NULL; c_prev, c_new (n,H); peep (3,H) or NULL;
 * db (4H), dpeep (3,H) accumulated over rows (and, across calls, over t). */
FBP_HOT static void FN(lstm_backward_pass)(
    REAL *gd, REAL *dc, REAL *db, REAL *dpeep, const REAL *dh, const REAL *dy,
    const REAL *c_prev, const REAL *c_new, const REAL *peep, int n, int H)
{
    const ptrdiff_t h = H;
    REAL *db_i = db, *db_f = db + h, *db_g = db + 2 * h, *db_o = db + 3 * h;
    for (int r = 0; r < n; r++) {
        REAL *g = gd + 4 * h * r;
        ptrdiff_t o = h * r;
        /* four specialised copies: peepholes or not, ∂L/∂h_t from above or not
         * (a many-to-one model only feeds dh_n) */
        if (peep && dy)
            FN(lstm_backward_row)(g, g + h, g + 2 * h, g + 3 * h, dc + o, db_i, db_f, db_g, db_o,
                                  dpeep, dpeep + h, dpeep + 2 * h, dh + o, dy + o, c_prev + o,
                                  c_new + o, peep, peep + h, peep + 2 * h, H, 1, 1);
        else if (peep)
            FN(lstm_backward_row)(g, g + h, g + 2 * h, g + 3 * h, dc + o, db_i, db_f, db_g, db_o,
                                  dpeep, dpeep + h, dpeep + 2 * h, dh + o, NULL, c_prev + o,
                                  c_new + o, peep, peep + h, peep + 2 * h, H, 1, 0);
        else if (dy)
            FN(lstm_backward_row)(g, g + h, g + 2 * h, g + 3 * h, dc + o, db_i, db_f, db_g, db_o,
                                  NULL, NULL, NULL, dh + o, dy + o, c_prev + o,
                                  c_new + o, NULL, NULL, NULL, H, 0, 1);
        else
            FN(lstm_backward_row)(g, g + h, g + 2 * h, g + 3 * h, dc + o, db_i, db_f, db_g, db_o,
                                  NULL, NULL, NULL, dh + o, NULL, c_prev + o,
                                  c_new + o, NULL, NULL, NULL, H, 0, 0);
    }
}

/* ---- the per-step recurrent products ------------------------------------------
 * pack: the packed weight (fbp_pack, src_c/packed.h) to use the kernel above, or NULL for BLAS
 * (a GEMV at n = 1). */

/* G_t(n,4H) += h_{t-1}(n,H) @ W_hhᵀ(H,4H) */
static int FN(lstm_recurrent_forward)(REAL *g, const REAL *h_prev, const REAL *W_hh,
                                      const REAL *pack, int n, int H)
{
    const int H4 = 4 * H;
    if (pack) {
        FN(fbp_gemm_packed)(g, H4, h_prev, H, pack, n, H4, H, 1);
        return FBP_OK;
    }
    if (n == 1)         /* G_t(4H) += W_hh(4H,H) @ h_{t-1}(H) */
        return FN(fbp_gemv)(g, W_hh, H, h_prev, H4, H, 0, 1, 1);
    return FN(fbp_gemm)(g, H4, h_prev, H, W_hh, H, n, H4, H, 0, 1, 1, 1);
}

/* dh(n,H) = δ_t(n,4H) @ W_hh(4H,H) */
static int FN(lstm_recurrent_backward)(REAL *dh, const REAL *gd, const REAL *W_hh,
                                       const REAL *pack, int n, int H)
{
    const int H4 = 4 * H;
    if (pack) {
        FN(fbp_gemm_packed)(dh, H, gd, H4, pack, n, H, H4, 0);
        return FBP_OK;
    }
    if (n == 1)         /* dh(H) = W_hhᵀ(H,4H) @ δ_t(4H) */
        return FN(fbp_gemv)(dh, W_hh, H, gd, H4, H, 1, 1, 0);
    return FN(fbp_gemm)(dh, H, gd, H4, W_hh, H, n, H, H4, 0, 0, 1, 0);
}

/* ---- whole sequence ---------------------------------------------------------- */

int FN(fbp_lstm_forward)(REAL *hs, REAL *cs, REAL *gates, REAL *work,
                         const REAL *x, const REAL *W_ih, const REAL *W_hh,
                         const REAL *bias, const REAL *peep, REAL *pack,
                         const fbp_seq *seq, int T, int B, int I, int H)
{
    if (T < 0 || B < 0 || I < 0 || H < 1) return FBP_ERR_ARG;
    if ((int64_t)T * B > INT32_MAX || 4 * (int64_t)H > INT32_MAX) return FBP_ERR_ARG;
    ptrdiff_t events;
    int st = fbp_seq_check(seq, T, B, &events);
    if (st) return st;
    if (events && !work) return FBP_ERR_ARG;
    if (T == 0 || B == 0) return FBP_OK;
    const int H4 = 4 * H;
    const ptrdiff_t h = H, BH = (ptrdiff_t)B * H;
    int M = 0;                                   /* slot rows, T·B without lengths */
    for (int t = 0; t < T; t++) M += fbp_seq_block(seq, t, B);

    if (I > 0) {    /* G(M,4H) = X(M,I) @ W_ihᵀ(I,4H): the input side of every step at once */
        st = FN(fbp_gemm)(gates, H4, x, I, W_ih, I, M, H4, I, 0, 1, 1, 0);
        if (st) return st;
    } else {        /* no inputs: the recurrent product and the bias alone */
        memset(gates, 0, (size_t)M * H4 * sizeof(REAL));
    }

    if (pack) FN(fbp_pack)(pack, W_hh, H, H4, 1);     /* panels of W_hhᵀ (H,4H) */
    ptrdiff_t s = 0;                                 /* s_t: block t of gates, hs, cs */
    for (int t = 0; t < T; t++) {
        const int m = fbp_seq_block(seq, t, B), n = fbp_seq_rows(seq, t, B);
        REAL *g = gates + s * H4, *h_prev = hs + s * h, *c_prev = cs + s * h;
        const int *ev;
        const int ne = fbp_seq_events(seq, t, &ev);
        if (ne) {       /* reset rows start from h0, c0 (block 0) */
            FN(fbp_seq_swap_in)(h_prev, work, hs, ev, ne, H);
            FN(fbp_seq_swap_in)(c_prev, work + BH, cs, ev, ne, H);
        }
        if (n > 0) {
            st = FN(lstm_recurrent_forward)(g, h_prev, W_hh, pack, n, H);
            if (st) return st;
            FN(lstm_forward_pass)(g, cs + (s + m) * h, hs + (s + m) * h, c_prev, bias, peep, n, H);
        }
        if (ne) {       /* hs, cs keep the true h_{t−1}, c_{t−1} */
            FN(fbp_seq_restore)(h_prev, work, ev, ne, H);
            FN(fbp_seq_restore)(c_prev, work + BH, ev, ne, H);
        }
        s += m;
    }
    return FBP_OK;
}

int FN(fbp_lstm_backward)(REAL *dG, REAL *dX, REAL *dW_ih, REAL *dW_hh, REAL *db,
                          REAL *dpeep, REAL *dh, REAL *dc, REAL *work,
                          const REAL *gates, const REAL *dy, REAL *hs, REAL *cs,
                          const REAL *x, const REAL *W_ih, const REAL *W_hh,
                          const REAL *peep, REAL *pack, const fbp_seq *seq,
                          int T, int B, int I, int H)
{
    if (T < 0 || B < 0 || I < 0 || H < 1) return FBP_ERR_ARG;
    if (peep && !dpeep) return FBP_ERR_ARG;
    if ((int64_t)T * B > INT32_MAX || 4 * (int64_t)H > INT32_MAX) return FBP_ERR_ARG;
    ptrdiff_t events;
    int st = fbp_seq_check(seq, T, B, &events);
    if (st) return st;
    if (events && !work) return FBP_ERR_ARG;
    if (T == 0 || B == 0) return FBP_OK;     /* dh, dc pass through: ∂L/∂h_0 = dh_n */
    const int H4 = 4 * H;
    const ptrdiff_t h = H, BH = (ptrdiff_t)B * H;
    REAL *acc_h = work, *acc_c = work + BH, *c_save = work + 2 * BH, *h_save = work + 3 * BH;
    if (events) memset(work, 0, (size_t)(2 * BH) * sizeof(REAL));
    int M = 0;
    for (int t = 0; t < T; t++) M += fbp_seq_block(seq, t, B);

    if (pack) FN(fbp_pack)(pack, W_hh, H4, H, 0);     /* panels of W_hh (4H,H) */
    ptrdiff_t s = M;
    for (int t = T - 1; t >= 0; t--) {
        const int m = fbp_seq_block(seq, t, B), n = fbp_seq_rows(seq, t, B);
        s -= m;
        REAL *gd = dG + s * H4, *c_prev = cs + s * h;
        /* the fused pass works in place: bring step t's activations over first
         * (one small copy that is hot in cache for the pass) unless dG is the
         * gates buffer itself */
        if (gates != dG) memcpy(gd, gates + s * H4, (size_t)n * H4 * sizeof(REAL));
        if (m > n) memset(gd + (ptrdiff_t)n * H4, 0, (size_t)(m - n) * H4 * sizeof(REAL));
        const int *ev;
        const int ne = fbp_seq_events(seq, t, &ev);
        if (ne) FN(fbp_seq_swap_in)(c_prev, c_save, cs, ev, ne, H);   /* c_{t−1} = c0 there */
        FN(lstm_backward_pass)(gd, dc, db, dpeep, dh, dy ? dy + s * h : NULL,
                               c_prev, cs + (s + m) * h, peep, n, H);
        if (ne) {
            FN(fbp_seq_restore)(c_prev, c_save, ev, ne, H);
            FN(fbp_seq_divert)(acc_c, dc, ev, ne, H);      /* ∂L/∂c at a reset → ∂L/∂c0 */
        }
        if (n > 0) {
            st = FN(lstm_recurrent_backward)(dh, gd, W_hh, pack, n, H);   /* → ∂L/∂h_{t-1} */
            if (st) return st;
        }
        if (ne) FN(fbp_seq_divert)(acc_h, dh, ev, ne, H);
    }
    if (events)
        for (ptrdiff_t k = 0; k < BH; k++) { dh[k] += acc_h[k]; dc[k] += acc_c[k]; }

    if (I > 0) {    /* dW_ih(4H,I) += dG(M,4H)ᵀ @ X(M,I) */
        st = FN(fbp_gemm)(dW_ih, I, dG, H4, x, I, H4, I, M, 1, 0, 1, 1);
        if (st) return st;
    }
    /* dW_hh(4H,H) += dG(M,4H)ᵀ @ H_prev(M,H), H_prev = hs blocks 0..T−1 (with
     * h0 in the rows of reset events for the duration of the GEMM) */
    if (events) FN(fbp_seq_swap_all)(hs, h_save, seq, T, B, H, 1);
    st = FN(fbp_gemm)(dW_hh, H, dG, H4, hs, H, H4, H, M, 1, 0, 1, 1);
    if (events) FN(fbp_seq_swap_all)(hs, h_save, seq, T, B, H, 0);
    if (st) return st;
    if (dX && I > 0) {  /* dX(M,I) = dG(M,4H) @ W_ih(4H,I) */
        st = FN(fbp_gemm)(dX, I, dG, H4, W_ih, I, M, I, H4, 0, 0, 1, 0);
        if (st) return st;
    }
    return FBP_OK;
}

/* ---- both directions of a layer (lstm.h) ------------------------------------- */

int FN(fbp_lstm_forward_dirs)(int D, REAL *const hs[], REAL *const cs[], REAL *const gates[],
                              REAL *work, const REAL *const x[], const REAL *const W_ih[],
                              const REAL *const W_hh[], const REAL *const bias[],
                              const REAL *const peep[], REAL *pack, const fbp_seq *const seq[],
                              int T, int B, int I, int H)
{
    if (D < 1 || D > 2) return FBP_ERR_ARG;
    for (int d = 0; d < D; d++) {
        const int st = FN(fbp_lstm_forward)(hs[d], cs[d], gates[d], work, x[d], W_ih[d], W_hh[d],
                                            bias[d], peep[d], pack, seq[d], T, B, I, H);
        if (st) return st;
    }
    return FBP_OK;
}

int FN(fbp_lstm_backward_dirs)(int D, REAL *const dG[], REAL *const dX[], REAL *const dW_ih[],
                               REAL *const dW_hh[], REAL *const db[], REAL *const dpeep[],
                               REAL *const dh[], REAL *const dc[], REAL *work,
                               const REAL *const gates[], const REAL *const dy[],
                               REAL *const hs[], REAL *const cs[], const REAL *const x[],
                               const REAL *const W_ih[], const REAL *const W_hh[],
                               const REAL *const peep[], REAL *pack, const fbp_seq *const seq[],
                               int T, int B, int I, int H)
{
    if (D < 1 || D > 2) return FBP_ERR_ARG;
    for (int d = 0; d < D; d++) {
        const int st = FN(fbp_lstm_backward)(dG[d], dX[d], dW_ih[d], dW_hh[d], db[d], dpeep[d],
                                             dh[d], dc[d], work, gates[d], dy[d], hs[d], cs[d],
                                             x[d], W_ih[d], W_hh[d], peep[d], pack, seq[d],
                                             T, B, I, H);
        if (st) return st;
    }
    return FBP_OK;
}

/* Benchmark hook (bench/bench_lstm.py --breakdown): only the per-step recurrent
 * products of one forward and one backward pass, through the same path as the
 * two functions above, without the fused passes and the stacked GEMMs.
 * gates (T,B,4H) accumulated; dh (B,H) overwritten; hs (T+1,B,H) read. */
int FN(fbp_lstm_step_products)(REAL *gates, REAL *dh, const REAL *hs, const REAL *W_hh,
                               REAL *pack, int T, int B, int H)
{
    if (T < 0 || B < 0 || H < 1) return FBP_ERR_ARG;
    const ptrdiff_t step_g = (ptrdiff_t)B * 4 * H, step_h = (ptrdiff_t)B * H;
    int st;
    if (pack) FN(fbp_pack)(pack, W_hh, H, 4 * H, 1);
    for (int t = 0; t < T; t++) {
        st = FN(lstm_recurrent_forward)(gates + t * step_g, hs + t * step_h, W_hh, pack, B, H);
        if (st) return st;
    }
    if (pack) FN(fbp_pack)(pack, W_hh, 4 * H, H, 0);
    for (int t = T - 1; t >= 0; t--) {
        st = FN(lstm_recurrent_backward)(dh, gates + t * step_g, W_hh, pack, B, H);
        if (st) return st;
    }
    return FBP_OK;
}
