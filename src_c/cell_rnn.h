/* The Elman RNN cell for the engine (docs/equations.md §6), torch.nn.RNN's
 * layout: a_t = x_t W_ihᵀ + h_{t−1} W_hhᵀ + b_ih + b_hh, h_t = φ(a_t) with φ
 * the identity, tanh or relu (fastbp.h's codes in fbp_cell.act). Written once
 * for REAL (included by engine.c after cell.h); the interface is in cell.h.
 *
 * One state, h. Backward needs nothing but h_t (φ' is written from φ's
 * output), so the cell saves no gates: the input side goes to the caller's
 * (M, H) buffer, or, without lengths, straight into h_1..h_T's blocks of the
 * state buffer, where each step finishes it in place. */
#define FBP_RNN_GATES 1
#define FBP_RNN_STATES 1
#define FBP_RNN_SAVED 0
#define FBP_RNN_SEPARATE 0
#define FBP_RNN_PREV_READ 0
#define FBP_RNN_DIRECT_H 0

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

/* One row, in place: h(H) = φ(h + b_ih + b_hh), h holding x_t W_ihᵀ + h_{t−1} W_hhᵀ. */
FBP_ALWAYS_INLINE void FN(rnn_bias_act_row)(REAL *restrict h, const REAL *restrict b_ih,
                                            const REAL *restrict b_hh, ptrdiff_t H, const int act)
{
    for (ptrdiff_t j = 0; j < H; j++) h[j] = FN(rnn_phi)(h[j] + b_ih[j] + b_hh[j], act);
}

/* One row, out of place: h(H) = φ(a + b_ih + b_hh). */
FBP_ALWAYS_INLINE void FN(rnn_bias_act_to_row)(REAL *restrict h, const REAL *restrict a,
                                               const REAL *restrict b_ih, const REAL *restrict b_hh,
                                               ptrdiff_t H, const int act)
{
    for (ptrdiff_t j = 0; j < H; j++) h[j] = FN(rnn_phi)(a[j] + b_ih[j] + b_hh[j], act);
}

/* One row of the forward for a constant act: in place when the input side was
 * staged where h_t goes. */
FBP_ALWAYS_INLINE void FN(rnn_forward_row)(REAL *h, const REAL *a, const REAL *b_ih,
                                           const REAL *b_hh, ptrdiff_t H, const int act)
{
    if (h == a) FN(rnn_bias_act_row)(h, b_ih, b_hh, H, act);
    else FN(rnn_bias_act_to_row)(h, a, b_ih, b_hh, H, act);
}

/* The step's forward pass: next[0] = φ(gates + b_ih + b_hh) over n rows, the
 * pass's units. */
FBP_HOT static void FN(rnn_forward_step)(const FN(fbp_step) *st, const FN(fbp_cell_params) *p,
                                         int act)
{
    const ptrdiff_t H = st->H, u0 = st->u0, nu = st->nu;
    const REAL *bi = p->b_ih + u0, *bh = p->b_hh + u0;
    for (int r = 0; r < st->n; r++) {
        REAL *h = st->next[0] + r * H + u0;
        const REAL *a = st->gates + r * H + u0;
        switch (act) {
        case FBP_TANH: FN(rnn_forward_row)(h, a, bi, bh, nu, FBP_TANH); break;
        case FBP_RELU: FN(rnn_forward_row)(h, a, bi, bh, nu, FBP_RELU); break;
        default:       FN(rnn_forward_row)(h, a, bi, bh, nu, FBP_IDENTITY); break;
        }
    }
}

/* One row of the backward pass:
 *   δ(H) = (dh + dy) ⊙ φ'(a_t),   db(H) += δ
 * dh = δ_{t+1} W_hh (the recurrent part of ∂L/∂h_t, or the final state's
 * gradient); dy may be NULL (no gradient from above at this step). */
FBP_ALWAYS_INLINE void FN(rnn_delta_row)(REAL *restrict d, REAL *restrict db,
                                         const REAL *restrict dh, const REAL *restrict dy,
                                         const REAL *restrict h, ptrdiff_t H, const int act)
{
    for (ptrdiff_t j = 0; j < H; j++) {
        REAL e = dy ? dh[j] + dy[j] : dh[j];         /* ∂L/∂h_t */
        REAL v = FN(rnn_dphi_times)(e, h[j], act);  /* δ_t = ∂L/∂h_t ⊙ φ'(a_t) */
        d[j] = v;
        db[j] += v;
    }
}

/* The step's backward pass over n rows: dgates = δ_t from carry[0], dy and
 * h_t = next[0]; db_ih += Σ_rows δ_t (row order fixed: a deterministic sum). */
FBP_HOT static void FN(rnn_backward_step)(const FN(fbp_step) *st, const FN(fbp_cell_params) *p,
                                          const FN(fbp_cell_grads) *g, int act)
{
    (void)p;
    const ptrdiff_t H = st->H, u0 = st->u0, nu = st->nu;
    REAL *db = g->b_ih + u0;
    for (ptrdiff_t r = 0; r < st->n; r++) {
        REAL *d = st->dgates + r * H + u0;
        const REAL *dh = st->carry[0] + r * H + u0, *h = st->next[0] + r * H + u0;
        /* the NULL / non-NULL dy and the act constant are fixed per call of the
         * inlined row function, so each of the six loops compiles branch-free */
        if (st->dy) {
            const REAL *y = st->dy + r * H + u0;
            switch (act) {
            case FBP_TANH: FN(rnn_delta_row)(d, db, dh, y, h, nu, FBP_TANH); break;
            case FBP_RELU: FN(rnn_delta_row)(d, db, dh, y, h, nu, FBP_RELU); break;
            default:       FN(rnn_delta_row)(d, db, dh, y, h, nu, FBP_IDENTITY); break;
            }
        } else {
            switch (act) {
            case FBP_TANH: FN(rnn_delta_row)(d, db, dh, NULL, h, nu, FBP_TANH); break;
            case FBP_RELU: FN(rnn_delta_row)(d, db, dh, NULL, h, nu, FBP_RELU); break;
            default:       FN(rnn_delta_row)(d, db, dh, NULL, h, nu, FBP_IDENTITY); break;
            }
        }
    }
}
