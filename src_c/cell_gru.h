/* The GRU cell for the engine (docs/equations.md §8), torch.nn.GRU's layout:
 * gate blocks r, z, n along the 3H axis of W_ih, W_hh, b_ih, b_hh.
 *     r = σ(x W_irᵀ + b_ir + h W_hrᵀ + b_hr)
 *     z = σ(x W_izᵀ + b_iz + h W_hzᵀ + b_hz)
 *     m = h W_hnᵀ + b_hn                       (kept apart: r scales it)
 *     n = tanh(x W_inᵀ + b_in + r ⊙ m)
 *     h' = (1 − z) ⊙ n + z ⊙ h
 * Written once for REAL (included by engine.c after cell.h); the interface is
 * in cell.h.
 *
 * One state, h. Because r multiplies the recurrent side of the n block, the
 * engine keeps the recurrent product apart (FBP_GRU_SEPARATE) and backward has
 * two gate gradients: [δr, δz, δn] for W_ih, b_ih, x and [δr, δz, r ⊙ δn] for
 * W_hh, b_hh, h. The gates buffer (M, 4H) receives x_t W_ihᵀ in its first 3H
 * columns and leaves [r, z, n, m] for backward. ∂L/∂h_{t−1} has a direct part
 * z ⊙ ε_h besides the product (FBP_GRU_DIRECT_H). */
#define FBP_GRU_GATES 3
#define FBP_GRU_STATES 1
#define FBP_GRU_SAVED 4
#define FBP_GRU_SEPARATE 1
#define FBP_GRU_PREV_READ 1        /* h_{t−1}: δz = ε_h (h_{t−1} − n) z (1 − z) */
#define FBP_GRU_DIRECT_H 1

/* One row of the forward pass. gr, gz, gn (H): in x_t W_ihᵀ blocks r, z, n;
 * out r, z, n. gm (H): out m. qr, qz, qn (H): h_{t−1} W_hhᵀ blocks. bi_*, bh_*:
 * b_ih, b_hh blocks. hp (H): h_{t−1}; hn (H): out h_t. Additions follow torch
 * ((x W_ihᵀ + b_ih) + (h W_hhᵀ + b_hh)) so results stay close to it. */
FBP_ALWAYS_INLINE void FN(gru_forward_row)(
    REAL *restrict gr, REAL *restrict gz, REAL *restrict gn, REAL *restrict gm,
    REAL *restrict hn, const REAL *restrict hp, const REAL *restrict qr,
    const REAL *restrict qz, const REAL *restrict qn, const REAL *restrict bi_r,
    const REAL *restrict bi_z, const REAL *restrict bi_n, const REAL *restrict bh_r,
    const REAL *restrict bh_z, const REAL *restrict bh_n, int H)
{
    for (int j = 0; j < H; j++) {
        REAL r = FN(fbp_sigmoid)((gr[j] + bi_r[j]) + (qr[j] + bh_r[j]));
        REAL z = FN(fbp_sigmoid)((gz[j] + bi_z[j]) + (qz[j] + bh_z[j]));
        REAL m = qn[j] + bh_n[j];                        /* h W_hnᵀ + b_hn */
        REAL n = FN(fbp_tanh)((gn[j] + bi_n[j]) + r * m);
        hn[j] = (1 - z) * n + z * hp[j];                 /* h_t */
        gr[j] = r; gz[j] = z; gn[j] = n; gm[j] = m;
    }
}

FBP_HOT static void FN(gru_forward_step)(const FN(fbp_step) *st, const FN(fbp_cell_params) *p,
                                         int act)
{
    (void)act;
    const ptrdiff_t h = st->H, u0 = st->u0;
    const int H = st->nu;                               /* the pass's units */
    const REAL *bi = p->b_ih + u0, *bh = p->b_hh + u0;
    for (int r = 0; r < st->n; r++) {
        REAL *g = st->gates + 4 * h * r + u0;
        const REAL *q = st->rec + 3 * h * r + u0;
        FN(gru_forward_row)(g, g + h, g + 2 * h, g + 3 * h, st->next[0] + h * r + u0,
                            st->prev[0] + h * r + u0, q, q + h, q + 2 * h, bi, bi + h, bi + 2 * h,
                            bh, bh + h, bh + 2 * h, H);
    }
}

/* One row of the backward pass. r, z, n, m (H): from the forward. dh (H): in
 * the recurrent part of ∂L/∂h_t, out z ⊙ ε_h, the direct part of ∂L/∂h_{t−1}
 * (the engine adds [δr, δz, r δn] W_hh). dy (H) or NULL (has_dy). hp: h_{t−1}.
 * di_* (H): out δ of the input side; dq_* (H): out δ of the recurrent side;
 * dbi_*, dbh_*: accumulated. */
FBP_ALWAYS_INLINE void FN(gru_backward_row)(
    const REAL *restrict r_, const REAL *restrict z_, const REAL *restrict n_,
    const REAL *restrict m_, REAL *restrict dh, const REAL *restrict dy,
    const REAL *restrict hp, REAL *restrict di_r, REAL *restrict di_z, REAL *restrict di_n,
    REAL *restrict dq_r, REAL *restrict dq_z, REAL *restrict dq_n, REAL *restrict dbi_r,
    REAL *restrict dbi_z, REAL *restrict dbi_n, REAL *restrict dbh_r, REAL *restrict dbh_z,
    REAL *restrict dbh_n, int H, const int has_dy)
{
    for (int j = 0; j < H; j++) {
        REAL r = r_[j], z = z_[j], n = n_[j];
        REAL eps = has_dy ? dy[j] + dh[j] : dh[j];       /* ε_h = ∂L/∂h_t */
        REAL d_n = eps * (1 - z) * (1 - n * n);          /* at n's pre-activation */
        REAL d_z = eps * (hp[j] - n) * z * (1 - z);
        REAL d_r = d_n * m_[j] * r * (1 - r);
        REAL d_m = d_n * r;                              /* at m = h W_hnᵀ + b_hn */
        dh[j] = eps * z;
        di_r[j] = d_r; di_z[j] = d_z; di_n[j] = d_n;
        dq_r[j] = d_r; dq_z[j] = d_z; dq_n[j] = d_m;
        dbi_r[j] += d_r; dbi_z[j] += d_z; dbi_n[j] += d_n;
        dbh_r[j] += d_r; dbh_z[j] += d_z; dbh_n[j] += d_m;
    }
}

FBP_HOT static void FN(gru_backward_step)(const FN(fbp_step) *st, const FN(fbp_cell_params) *p,
                                          const FN(fbp_cell_grads) *g, int act)
{
    (void)act;
    (void)p;
    const ptrdiff_t h = st->H, u0 = st->u0;
    const int H = st->nu;                               /* the pass's units */
    REAL *bi = g->b_ih + u0, *bh = g->b_hh + u0;
    for (int r = 0; r < st->n; r++) {
        const REAL *s = st->gates + 4 * h * r + u0;
        REAL *di = st->dgates + 3 * h * r + u0, *dq = st->drec + 3 * h * r + u0;
        REAL *dh = st->carry[0] + h * r + u0;
        const REAL *hp = st->prev[0] + h * r + u0;
        if (st->dy)
            FN(gru_backward_row)(s, s + h, s + 2 * h, s + 3 * h, dh, st->dy + h * r + u0, hp,
                                 di, di + h, di + 2 * h, dq, dq + h, dq + 2 * h,
                                 bi, bi + h, bi + 2 * h, bh, bh + h, bh + 2 * h, H, 1);
        else
            FN(gru_backward_row)(s, s + h, s + 2 * h, s + 3 * h, dh, NULL, hp,
                                 di, di + h, di + 2 * h, dq, dq + h, dq + 2 * h,
                                 bi, bi + h, bi + 2 * h, bh, bh + h, bh + 2 * h, H, 0);
    }
}
