/* The time loop: forward and BPTT of one direction of one layer over a whole
 * sequence, written once (engine.h has the contract). engine.c includes this
 * file once per cell and REAL, with
 *     CELL(name)    the cell's functions: FN(rnn_##name), ...
 *     CELL_K(name)  the cell's constants: FBP_RNN_##name, ... (cell.h)
 *
 * Shape of a call. Forward:
 *   one GEMM over all M slot rows for the input side of every gate,
 *   per step: the recurrent product on the n_t active rows (added to the input
 *             side, or apart for a separate cell), then the cell's fused row
 *             pass (biases, gates, the new states).
 * Backward:
 *   per step: the cell's fused row pass (gate gradients, the carried state
 *             gradients, bias sums), then the recurrent product for
 *             ∂L/∂h_{t−1},
 *   after the loop: dW_ih, dW_hh and dX as one GEMM each over the M rows.
 * Lengths and resets follow seq.h: step t works on the first n_t rows of its
 * block; at a reset event the previous state is swapped for the initial state
 * for the step, and no gradient crosses the event (it goes to the initial
 * state's gradient instead). */

static int CELL(engine_check)(const fbp_seq *seq, ptrdiff_t *events, const void *work,
                              fbp_dims dims)
{
    const int T = dims.T, B = dims.B, I = dims.I, H = dims.H;
    if (T < 0 || B < 0 || I < 0 || H < 1) return FBP_ERR_ARG;
    /* the stacked GEMMs' M or K, and the gate width */
    if ((int64_t)T * B > INT32_MAX || CELL_K(GATES) * (int64_t)H > INT32_MAX) return FBP_ERR_ARG;
    const int st = fbp_seq_check(seq, T, B, events);
    if (st) return st;
    return *events && !work ? FBP_ERR_ARG : FBP_OK;
}

/* M of seq.h: the slot rows of all T steps. */
static int CELL(engine_slots)(const fbp_seq *seq, int T, int B)
{
    int M = 0;
    for (int t = 0; t < T; t++) M += fbp_seq_block(seq, t, B);
    return M;
}

static int CELL(engine_forward)(fbp_run *run, const fbp_weights *w, const fbp_scratch *scr,
                                int act, const fbp_seq *seq, fbp_dims dims)
{
    enum { G = CELL_K(GATES), S = CELL_K(STATES), SAVED = CELL_K(SAVED),
           SEPARATE = CELL_K(SEPARATE) };
    ptrdiff_t events;
    int st = CELL(engine_check)(seq, &events, scr->work, dims);
    if (st) return st;
    const int T = dims.T, B = dims.B, I = dims.I, H = dims.H, GH = G * H;
    /* the RNN may stage its input side in hs only where the blocks coincide */
    if (!run->gates && (SAVED || (seq && seq->rows))) return FBP_ERR_ARG;
    if (SEPARATE && !scr->rec) return FBP_ERR_ARG;
    if (T == 0 || B == 0) return FBP_OK;
    const ptrdiff_t h = H, BH = (ptrdiff_t)B * H;
    const int ldg = SAVED ? SAVED * H : H;         /* the gates buffer's row stride */
    const int M = CELL(engine_slots)(seq, T, B);
    REAL *state[FBP_MAX_STATES], *work = scr->work, *rec = scr->rec, *pack = scr->pack;
    for (int k = 0; k < S; k++) state[k] = run->state[k];
    const REAL *x = run->x, *W_ih = w->W_ih, *W_hh = w->W_hh;
    /* The input side of every step at once: A(M, GH) = X(M, I) @ W_ih(GH, I)ᵀ,
     * into the gates buffer, or where h_1..h_T go (state[0]'s blocks 1..T) */
    REAL *A = run->gates ? (REAL *)run->gates : state[0] + BH;
    if (I > 0)
        st = FN(fbp_gemm)(A, ldg, x, I, W_ih, I, M, GH, I, 0, 1, (REAL)1, (REAL)0);
    else    /* no inputs: the recurrent product and the bias alone */
        memset(A, 0, (size_t)M * (size_t)ldg * sizeof(REAL));
    if (st) return st;

    const FN(fbp_cell_params) params = {w->b_ih, w->b_hh, w->peep};
    if (pack) FN(fbp_pack)(pack, W_hh, H, GH, 1);   /* panels of W_hhᵀ (H, GH) */
    ptrdiff_t s = 0;                                /* s_t, seq.h */
    for (int t = 0; t < T; t++) {
        const int m = fbp_seq_block(seq, t, B), n = fbp_seq_rows(seq, t, B);
        FN(fbp_step) step = {.n = n, .H = H, .gates = A + s * ldg, .rec = rec};
        for (int k = 0; k < S; k++) {
            step.prev[k] = state[k] + s * h;
            step.next[k] = state[k] + (s + m) * h;
        }
        const int *ev;
        const int ne = fbp_seq_events(seq, t, &ev);
        for (int k = 0; k < S && ne; k++)           /* reset rows start from block 0 */
            FN(fbp_seq_swap_in)(state[k] + s * h, work + k * BH, state[k], ev, ne, H);
        if (n > 0) {
            /* gates(n, GH) += h_{t−1}(n, H) @ W_hhᵀ, or rec(n, GH) = it apart */
            if (SEPARATE)
                st = FN(engine_product_forward)(rec, GH, step.prev[0], W_hh, pack, n, H, GH, 0);
            else
                st = FN(engine_product_forward)(step.gates, ldg, step.prev[0], W_hh, pack, n, H,
                                                GH, 1);
            if (st) return st;
            CELL(forward_step)(&step, &params, act);
        }
        for (int k = 0; k < S && ne; k++)           /* the states keep the true h_{t−1}, ... */
            FN(fbp_seq_restore)(state[k] + s * h, work + k * BH, ev, ne, H);
        s += m;
    }
    return FBP_OK;
}

static int CELL(engine_backward)(fbp_run_grads *out, fbp_weight_grads *dw, fbp_run *run,
                                 const fbp_weights *w, const fbp_scratch *scr, int act,
                                 const fbp_seq *seq, fbp_dims dims)
{
    enum { G = CELL_K(GATES), S = CELL_K(STATES), SAVED = CELL_K(SAVED),
           SEPARATE = CELL_K(SEPARATE), PREV_READ = CELL_K(PREV_READ),
           DIRECT_H = CELL_K(DIRECT_H) };
    ptrdiff_t events;
    int st = CELL(engine_check)(seq, &events, scr->work, dims);
    if (st) return st;
    if (w->peep && !dw->peep) return FBP_ERR_ARG;
    if ((SAVED && !run->gates) || (SEPARATE && (!out->drec || !dw->b_hh))) return FBP_ERR_ARG;
    const int T = dims.T, B = dims.B, I = dims.I, H = dims.H, GH = G * H;
    /* rows that never run (length 0, or T = 0): ∂L/∂(initial state) = the final one's */
    if (T == 0 || B == 0) return FBP_OK;
    const ptrdiff_t h = H, BH = (ptrdiff_t)B * H;
    const int ldg = SAVED * H;
    const int M = CELL(engine_slots)(seq, T, B);
    REAL *state[FBP_MAX_STATES], *carry[FBP_MAX_STATES];
    for (int k = 0; k < S; k++) {
        state[k] = run->state[k];
        carry[k] = out->dstate[k];
    }
    REAL *dgates = out->dgates, *drec = SEPARATE ? (REAL *)out->drec : dgates;
    REAL *gates = run->gates, *pack = scr->pack;
    const REAL *dy = out->dy, *W_hh = w->W_hh;
    /* work: S accumulators of ∂L/∂(initial state) at resets (B, H), one (B, H)
     * swap for each state the row pass reads before the step, then (events, H)
     * to swap h0 into hs for the dW_hh GEMM (fbp_engine_work_size) */
    REAL *acc = scr->work, *prev_save = acc + S * BH, *h_save = prev_save;
    for (int k = 0; k < S; k++)
        if (PREV_READ & (1 << k)) h_save += BH;
    if (events) memset(acc, 0, (size_t)(S * BH) * sizeof(REAL));

    const FN(fbp_cell_params) params = {w->b_ih, w->b_hh, w->peep};
    const FN(fbp_cell_grads) grads = {dw->b_ih, dw->b_hh, dw->peep};
    if (pack) FN(fbp_pack)(pack, W_hh, GH, H, 0);   /* panels of W_hh (GH, H) */
    ptrdiff_t s = M;
    for (int t = T - 1; t >= 0; t--) {
        const int m = fbp_seq_block(seq, t, B), n = fbp_seq_rows(seq, t, B);
        s -= m;
        FN(fbp_step) step = {.n = n, .H = H, .gates = gates ? gates + s * ldg : NULL,
                             .dy = dy ? dy + s * h : NULL, .dgates = dgates + s * GH,
                             .drec = drec + s * GH};
        for (int k = 0; k < S; k++) {
            step.prev[k] = state[k] + s * h;
            step.next[k] = state[k] + (s + m) * h;
            step.carry[k] = carry[k];
        }
        /* the rows that ended before step t: no gradient into the stacked GEMMs */
        const size_t pad = (size_t)(m - n) * (size_t)GH * sizeof(REAL);
        if (m > n) memset(step.dgates + (ptrdiff_t)n * GH, 0, pad);
        if (SEPARATE && m > n) memset(step.drec + (ptrdiff_t)n * GH, 0, pad);
        const int *ev;
        const int ne = fbp_seq_events(seq, t, &ev);
        REAL *save = prev_save;
        for (int k = 0; k < S && ne; k++)
            if (PREV_READ & (1 << k)) {             /* the pass sees the initial state there */
                FN(fbp_seq_swap_in)(state[k] + s * h, save, state[k], ev, ne, H);
                save += BH;
            }
        CELL(backward_step)(&step, &params, &grads, act);
        save = prev_save;
        for (int k = 0; k < S && ne; k++) {
            if (PREV_READ & (1 << k)) {
                FN(fbp_seq_restore)(state[k] + s * h, save, ev, ne, H);
                save += BH;
            }
            /* ∂L/∂c (LSTM) at a reset → ∂L/∂c0; h's waits for the product */
            if (k > 0) FN(fbp_seq_divert)(acc + k * BH, carry[k], ev, ne, H);
        }
        if (n > 0) {    /* carry[0] (+)= δ_rec(n, GH) @ W_hh: ∂L/∂h_{t−1} */
            st = FN(engine_product_backward)(carry[0], step.drec, GH, W_hh, pack, n, H, GH,
                                             DIRECT_H);
            if (st) return st;
        }
        if (ne) FN(fbp_seq_divert)(acc, carry[0], ev, ne, H);
    }
    if (events)
        for (ptrdiff_t i = 0; i < BH; i++)
            for (int k = 0; k < S; k++) carry[k][i] += acc[k * BH + i];

    /* The weight and input gradients: one GEMM each over all M rows. */
    if (I > 0) {    /* dW_ih(GH, I) += Δ(M, GH)ᵀ @ X(M, I) */
        st = FN(fbp_gemm)(dw->W_ih, I, dgates, GH, run->x, I, GH, I, M, 1, 0, (REAL)1, (REAL)1);
        if (st) return st;
    }
    /* dW_hh(GH, H) += Δ_rec(M, GH)ᵀ @ H_prev(M, H), H_prev = state[0]'s blocks
     * 0..T−1 (h0 in the rows of reset events for the duration of the GEMM) */
    if (events) FN(fbp_seq_swap_all)(state[0], h_save, seq, T, B, H, 1);
    st = FN(fbp_gemm)(dw->W_hh, H, drec, GH, state[0], H, GH, H, M, 1, 0, (REAL)1, (REAL)1);
    if (events) FN(fbp_seq_swap_all)(state[0], h_save, seq, T, B, H, 0);
    if (st) return st;
    if (out->dx && I > 0)   /* dX(M, I) = Δ(M, GH) @ W_ih(GH, I) */
        st = FN(fbp_gemm)(out->dx, I, dgates, GH, w->W_ih, I, M, I, GH, 0, 0, (REAL)1, (REAL)0);
    return st;
}
