/* The LSTM cell for the engine (docs/equations.md §7): Graves' cell with
 * optional peepholes in torch.nn.LSTM's layout, gate blocks i, f, g, o along
 * the 4H axis. Written once for REAL (included by engine.c after cell.h); the
 * interface is described in cell.h.
 *
 * States h, c. The gates buffer (M, 4H) receives x_t W_ihᵀ + h_{t−1} W_hhᵀ
 * and leaves the activated gates [i, f, g, o] for backward; tanh(c_t) is
 * recomputed there rather than stored. Backward works in place on the gate
 * gradients: each row's activations are copied into dgates first (a small
 * copy, hot in cache for the pass) unless dgates is the gates buffer itself. */
#define FBP_LSTM_GATES 4
#define FBP_LSTM_STATES 2
#define FBP_LSTM_SAVED 4
#define FBP_LSTM_SEPARATE 0
#define FBP_LSTM_PREV_READ 2       /* c_{t−1}: the f gate's and the peepholes' input */
#define FBP_LSTM_DIRECT_H 0

/* ---- fused forward pass of one row of one step ------------------------------
 * gi, gf, gg, go (H each, the row's four gate blocks):
 *           in  x_t W_ihᵀ + h_{t-1} W_hhᵀ (bias not yet added), out i, f, g, o
 * cn, hn (H): out c_t, h_t;  cp (H): c_{t-1}
 * bi_*, bh_* (H): the blocks of b_ih and b_hh;  p_* (H): peepholes (read only
 * when has_peep).
 * Every pointer is a restrict parameter (GCC keeps restrict through inlining
 * only for parameters), so the loop vectorises without runtime alias checks. */
FBP_ALWAYS_INLINE void FN(lstm_forward_row)(
    REAL *restrict gi, REAL *restrict gf, REAL *restrict gg, REAL *restrict go,
    REAL *restrict cn, REAL *restrict hn, const REAL *restrict cp,
    const REAL *restrict bi_i, const REAL *restrict bi_f, const REAL *restrict bi_g,
    const REAL *restrict bi_o, const REAL *restrict bh_i, const REAL *restrict bh_f,
    const REAL *restrict bh_g, const REAL *restrict bh_o, const REAL *restrict p_i,
    const REAL *restrict p_f, const REAL *restrict p_o, int H, const int has_peep)
{
    for (int j = 0; j < H; j++) {
        /* the bias is b_ih + b_hh (rounded once, as torch's sum) */
        REAL zi = gi[j] + (bi_i[j] + bh_i[j]), zf = gf[j] + (bi_f[j] + bh_f[j]);
        REAL zg = gg[j] + (bi_g[j] + bh_g[j]), zo = go[j] + (bi_o[j] + bh_o[j]);
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

/* One step's fused pass over its n rows (cell.h): gates (n,4H) pre-activations
 * -> activated [i, f, g, o]; next = (h_t, c_t); prev[1] = c_{t−1}. */
FBP_HOT static void FN(lstm_forward_step)(const FN(fbp_step) *st, const FN(fbp_cell_params) *p,
                                          int act)
{
    (void)act;
    const ptrdiff_t h = st->H, u0 = st->u0;
    const int H = st->nu;                               /* the pass's units */
    const REAL *bi = p->b_ih + u0, *bh = p->b_hh + u0, *peep = p->peep ? p->peep + u0 : NULL;
    for (int r = 0; r < st->n; r++) {
        REAL *gr = st->gates + 4 * h * r + u0;
        const ptrdiff_t o = h * r + u0;
        REAL *hn = st->next[0] + o, *cn = st->next[1] + o;
        const REAL *cp = st->prev[1] + o;
        /* two specialised copies of the loop: no peephole test per element */
        if (peep)
            FN(lstm_forward_row)(gr, gr + h, gr + 2 * h, gr + 3 * h, cn, hn, cp,
                                 bi, bi + h, bi + 2 * h, bi + 3 * h, bh, bh + h, bh + 2 * h,
                                 bh + 3 * h, peep, peep + h, peep + 2 * h, H, 1);
        else
            FN(lstm_forward_row)(gr, gr + h, gr + 2 * h, gr + 3 * h, cn, hn, cp,
                                 bi, bi + h, bi + 2 * h, bi + 3 * h, bh, bh + h, bh + 2 * h,
                                 bh + 3 * h, NULL, NULL, NULL, H, 0);
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

/* One step's fused pass over its n rows: dgates (n,4H) <- δ_t from the
 * activated gates; carry[1] = the carried cell gradient (in/out); carry[0] =
 * δ_{t+1} W_hh (read; the engine's product then overwrites it); db_ih (4H) and
 * dpeep (3,H) accumulated over rows (and, across steps, over t). */
FBP_HOT static void FN(lstm_backward_step)(const FN(fbp_step) *st, const FN(fbp_cell_params) *p,
                                           const FN(fbp_cell_grads) *g, int act)
{
    (void)act;
    const ptrdiff_t h = st->H, u0 = st->u0;
    const int H = st->nu;                               /* the pass's units */
    const REAL *peep = p->peep ? p->peep + u0 : NULL, *dy = st->dy;
    REAL *dpeep = g->peep ? g->peep + u0 : NULL, *db = g->b_ih + u0;
    REAL *db_i = db, *db_f = db + h, *db_g = db + 2 * h, *db_o = db + 3 * h;
    for (int r = 0; r < st->n; r++) {
        REAL *gd = st->dgates + 4 * h * r + u0;
        const ptrdiff_t o = h * r + u0;
        if (st->gates != st->dgates)     /* the pass works in place on dgates */
            for (int b = 0; b < 4; b++)
                memcpy(gd + b * h, st->gates + 4 * h * r + u0 + b * h, (size_t)H * sizeof(REAL));
        REAL *dc = st->carry[1] + o;
        const REAL *dh = st->carry[0] + o, *cp = st->prev[1] + o, *cn = st->next[1] + o;
        const REAL *dyr = dy ? dy + o : NULL;
        /* four specialised copies: peepholes or not, ∂L/∂h_t from above or not
         * (a many-to-one model only feeds dh_n) */
        if (peep && dy)
            FN(lstm_backward_row)(gd, gd + h, gd + 2 * h, gd + 3 * h, dc, db_i, db_f, db_g, db_o,
                                  dpeep, dpeep + h, dpeep + 2 * h, dh, dyr, cp, cn,
                                  peep, peep + h, peep + 2 * h, H, 1, 1);
        else if (peep)
            FN(lstm_backward_row)(gd, gd + h, gd + 2 * h, gd + 3 * h, dc, db_i, db_f, db_g, db_o,
                                  dpeep, dpeep + h, dpeep + 2 * h, dh, NULL, cp, cn,
                                  peep, peep + h, peep + 2 * h, H, 1, 0);
        else if (dy)
            FN(lstm_backward_row)(gd, gd + h, gd + 2 * h, gd + 3 * h, dc, db_i, db_f, db_g, db_o,
                                  NULL, NULL, NULL, dh, dyr, cp, cn, NULL, NULL, NULL, H, 0, 1);
        else
            FN(lstm_backward_row)(gd, gd + h, gd + 2 * h, gd + 3 * h, dc, db_i, db_f, db_g, db_o,
                                  NULL, NULL, NULL, dh, NULL, cp, cn, NULL, NULL, NULL, H, 0, 0);
    }
}
