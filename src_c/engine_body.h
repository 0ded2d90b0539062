/* The time loop: forward and BPTT of one direction of one layer over a whole
 * sequence, written once (engine.h has the contract). engine.c includes this
 * file once per cell and REAL, with
 *     CELL(name)    the cell's functions: FN(rnn_##name), ...
 *     CELL_K(name)  the cell's constants: FBP_RNN_##name, ... (cell.h)
 *
 * Shape of a call. Forward:
 *   one product over all M slot rows for the input side of every gate
 *             (rowdot.h, or from 8 rows of batch packed.h on W_ih packed
 *             first; in tiles),
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
 * state's gradient instead).
 *
 * Threads. Every member of the team (team.h) runs the same loop, phase by
 * phase, on the chunks it claims (engine_region.h): the stacked GEMMs in row
 * blocks, each step in chunks of hidden units. Forward step t of a chunk:
 * put back the reset rows of step t − 1, the chunk's gate columns of the
 * recurrent product, its fused pass, then swap in the reset rows of step
 * t + 1 (the product of step t + 1 reads whole rows of h_t, so they must be
 * in place before the phase ends). Backward: one phase per step, where a
 * chunk computes its columns of ∂L/∂h_t from the complete δ of step t + 1 and
 * then its units' fused pass of step t. */

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

/* The fields of a region shared by forward and backward. */
static void CELL(engine_setup)(FN(engine_ctx) *c, fbp_run *run, const fbp_weights *w,
                               const fbp_scratch *scr, int act, const fbp_seq *seq,
                               ptrdiff_t events, fbp_dims dims)
{
    memset(c, 0, sizeof *c);
    c->T = dims.T; c->B = dims.B; c->I = dims.I; c->H = dims.H; c->act = act;
    c->seq = seq;
    c->events = events;
    int M = 0;                                  /* M of seq.h: the slot rows of all T steps */
    for (int t = 0; t < dims.T; t++) M += fbp_seq_block(seq, t, dims.B);
    c->M = M;
    c->x = run->x; c->W_ih = w->W_ih; c->W_hh = w->W_hh;
    for (int k = 0; k < CELL_K(STATES); k++) c->state[k] = run->state[k];
    c->params.b_ih = w->b_ih; c->params.b_hh = w->b_hh; c->params.peep = w->peep;
    c->work = scr->work; c->pack = scr->pack; c->rec = scr->rec;
    c->units = FN(engine_units)(dims.H);
    c->chunks = (dims.H + c->units - 1) / c->units;
    c->pack_stride = FN(engine_chunk_pack)(dims.H, CELL_K(GATES), c->units);
}

/* ---- forward ---------------------------------------------------------------------- */

/* A(r0 : r0 + nr, j0 : j0 + nc) = X(r0 : r0 + nr, I) @ W_ih[j0 : j0 + nc](nc, I)ᵀ,
 * on the fixed-order kernel (rowdot.h): a row's values do not depend on how
 * many rows the call has, nor on the blocking, so a streamed step
 * (fastbp/_step.py) computes the same input side as the whole sequence. */
static void CELL(input_block)(FN(engine_ctx) *c, int r0, int nr, int j0, int nc)
{
    REAL *A = c->gates + (ptrdiff_t)r0 * c->ldg + j0;
    if (c->I == 0) {    /* no inputs: the recurrent product and the bias alone */
        for (int r = 0; r < nr; r++) memset(A + (ptrdiff_t)r * c->ldg, 0, (size_t)nc * sizeof(REAL));
        return;
    }
    FN(fbp_rowdot)(A, c->ldg, c->x + (ptrdiff_t)r0 * c->I, c->I, c->W_ih + (ptrdiff_t)j0 * c->I,
                   c->I, nr, nc, c->I, 0);
}

/* Tiles of the input side (row blocks × column blocks). */
static int CELL(input_tiles)(const FN(engine_ctx) *c)
{
    const int GH = CELL_K(GATES) * c->H, cols = FN(engine_input_cols)(c->M, GH);
    return FN(engine_gemm_blocks)(c->M) * ((GH + cols - 1) / cols);
}

/* The input side of every step: tile k of A(M, GH) = X(M, I) @ W_ih(GH, I)ᵀ. */
static void CELL(input_tile)(FN(engine_ctx) *c, int k)
{
    const int GH = CELL_K(GATES) * c->H, rows = FN(engine_gemm_rows)(c->M);
    const int cols = FN(engine_input_cols)(c->M, GH), col_blocks = (GH + cols - 1) / cols;
    const int r0 = k / col_blocks * rows, nr = c->M - r0 < rows ? c->M - r0 : rows;
    const int j0 = k % col_blocks * cols, nc = GH - j0 < cols ? GH - j0 : cols;
    CELL(input_block)(c, r0, nr, j0, nc);
}

/* The input side of every step on the packed kernel (engine_region.h), as
 * phases of the region: per pass over the gate columns, W_ih's panels packed
 * into the pack scratch (free until step 0 packs W_hh's rows there), then
 * A(M, pass columns) = X(M, I) @ those panels in tiles. Every element is one
 * FMA chain over k (packed.h's fixed-order entry), whatever tile or pass it
 * falls in: a streamed step (forward_chunk, T = 1) computes the same values. */
static void CELL(input_side_packed)(FN(engine_ctx) *c, fbp_phase_state *ph)
{
    const int GH = CELL_K(GATES) * c->H, I = c->I, M = c->M;
    const int width = (int)FN(fbp_pack_size)(1, 1), group = FN(engine_input_pass_cols)(c, GH);
    const ptrdiff_t panel = FN(fbp_pack_size)(I, 1);    /* elements of one packed panel */
    int k;
    for (int j0 = 0; j0 < GH; j0 += group) {
        const int nc = GH - j0 < group ? GH - j0 : group, panels = (nc + width - 1) / width;
        const int per = fbp_block_size(panels, ENGINE_PACK_PANELS, FBP_TEAM_MAX_CHUNKS);
        const int pieces = (panels + per - 1) / per;
        fbp_phase_begin(ph);
        while ((k = fbp_phase_next(&c->ph, ph, pieces)) >= 0) {
            for (int p = k * per; p < (k + 1) * per && p < panels; p++) {
                const int j = j0 + p * width, w = GH - j < width ? GH - j : width;
                FN(fbp_pack)(c->pack + p * panel, c->W_ih + (ptrdiff_t)j * I, I, I, w, 1);
            }
            fbp_phase_done(&c->ph);
        }
        fbp_phase_end(&c->ph, ph, pieces);
        const int cols = FN(engine_input_tile_cols)(nc), col_blocks = (nc + cols - 1) / cols;
        const int rows = FN(engine_input_tile_rows)(M, col_blocks);
        const int tiles = (M + rows - 1) / rows * col_blocks;
        fbp_phase_begin(ph);
        while ((k = fbp_phase_next(&c->ph, ph, tiles)) >= 0) {
            const int r0 = k / col_blocks * rows, nr = M - r0 < rows ? M - r0 : rows;
            const int c0 = k % col_blocks * cols, w = nc - c0 < cols ? nc - c0 : cols;
            FN(fbp_gemm_packed_fixed)(c->gates + (ptrdiff_t)r0 * c->ldg + j0 + c0, c->ldg,
                                      c->x + (ptrdiff_t)r0 * I, I, c->pack + c0 / width * panel,
                                      nr, w, I, 0);
            fbp_phase_done(&c->ph);
        }
        fbp_phase_end(&c->ph, ph, tiles);
    }
}

/* Forward step t (rows s.. of block t, m rows, n active) on chunk k's units. */
static int CELL(forward_chunk)(FN(engine_ctx) *c, int t, ptrdiff_t s, int m, int k)
{
    enum { G = CELL_K(GATES), S = CELL_K(STATES), SEPARATE = CELL_K(SEPARATE) };
    const int H = c->H, B = c->B, GH = G * H, n = fbp_seq_rows(c->seq, t, B);
    const int u0 = k * c->units, u1 = u0 + c->units < H ? u0 + c->units : H, nu = u1 - u0;
    const ptrdiff_t h = H, BH = (ptrdiff_t)B * H;
    const int *ev;
    int ne, st = FBP_OK;
    if (t > 0 && (ne = fbp_seq_events(c->seq, t - 1, &ev))) {
        /* step t − 1 is over everywhere: its reset rows get their true states back */
        const ptrdiff_t s_prev = s - fbp_seq_block(c->seq, t - 1, B);
        for (int q = 0; q < S; q++)
            FN(cols_restore)(c->state[q] + s_prev * h, c->work + ((t - 1) % 2 * S + q) * BH, ev,
                             ne, H, u0, u1);
    }
    FN(fbp_step) step = {.n = n, .H = H, .u0 = u0, .nu = nu, .gates = c->gates + s * c->ldg,
                         .rec = c->rec};
    for (int q = 0; q < S; q++) {
        step.prev[q] = c->state[q] + s * h;
        step.next[q] = c->state[q] + (s + m) * h;
    }
    /* on the packed kernel, the chunk's rows of W_hh packed per gate block by
     * whoever runs step 0 (one step: panel by panel as it goes) */
    REAL *panels = FN(engine_forward_packs)(c) ? c->pack + k * c->pack_stride : NULL;
    if (c->T == 1) {    /* one step: its input side here, the chunk's columns of each gate */
        const int input_packs = FN(engine_input_packs)(c, G * H);
        for (int g = 0; g < G; g++) {
            if (input_packs)        /* W_ih's rows, panel by panel */
                FN(chunk_product_forward_once)(step.gates + (ptrdiff_t)g * H + u0, c->ldg, c->x,
                                               c->W_ih + ((ptrdiff_t)g * H + u0) * c->I, panels,
                                               m, c->I, nu, 0);
            else
                CELL(input_block)(c, 0, m, g * H + u0, nu);
        }
    }
    const ptrdiff_t panel_stride = FN(fbp_pack_size)(H, c->units);
    if (panels && t == 0 && c->T > 1)
        for (int g = 0; g < G; g++)
            FN(fbp_pack)(panels + g * panel_stride, c->W_hh + ((ptrdiff_t)g * H + u0) * H, H, H,
                         nu, 1);
    if (n > 0) {
        /* per gate block g: gates(n, units) += h_{t−1}(n, H) @ W_hh[g·H + units]ᵀ,
         * or rec(n, units) = it apart */
        for (int g = 0; g < G && !st; g++) {
            const REAL *W_rows = c->W_hh + ((ptrdiff_t)g * H + u0) * H;
            REAL *C = SEPARATE ? c->rec + (ptrdiff_t)g * H + u0
                               : step.gates + (ptrdiff_t)g * H + u0;
            const int ldc = SEPARATE ? GH : c->ldg;
            if (panels && c->T == 1)
                FN(chunk_product_forward_once)(C, ldc, step.prev[0], W_rows, panels, n, H, nu,
                                               !SEPARATE);
            else
                st = FN(chunk_product_forward)(C, ldc, step.prev[0], W_rows,
                                               panels ? panels + g * panel_stride : NULL,
                                               c->pack != NULL, n, H, nu, !SEPARATE);
        }
        if (st) return st;
        CELL(forward_step)(&step, &c->params, c->act);
    }
    if (t + 1 < c->T && (ne = fbp_seq_events(c->seq, t + 1, &ev)))
        for (int q = 0; q < S; q++)     /* reset rows of step t + 1 start from block 0 */
            FN(cols_swap_in)(step.next[q], c->work + ((t + 1) % 2 * S + q) * BH, c->state[q],
                             ev, ne, H, u0, u1);
    return FBP_OK;
}

static void CELL(forward_member)(void *vctx, int member, int members)
{
    enum { G = CELL_K(GATES), S = CELL_K(STATES) };
    FN(engine_ctx) *c = vctx;
    const int H = c->H, B = c->B, T = c->T;
    fbp_phase_state ph = fbp_phase_start(member, members);
    int k, st;
    /* the input side of every step, in tiles (one step: in its chunks, below,
     * which saves a hand-over between the members), on the packed kernel from
     * 8 rows of batch */
    if (T > 1 && FN(engine_input_packs)(c, G * H)) {
        CELL(input_side_packed)(c, &ph);
    } else if (T > 1) {
        const int tiles = CELL(input_tiles)(c);
        fbp_phase_begin(&ph);
        while ((k = fbp_phase_next(&c->ph, &ph, tiles)) >= 0) {
            CELL(input_tile)(c, k);
            fbp_phase_done(&c->ph);
        }
        fbp_phase_end(&c->ph, &ph, tiles);
    }
    ptrdiff_t s = 0;                            /* s_t, seq.h */
    for (int t = 0; t < T; t++) {
        const int m = fbp_seq_block(c->seq, t, B);
        fbp_phase_begin(&ph);
        while ((k = fbp_phase_next(&c->ph, &ph, c->chunks)) >= 0) {
            if ((st = CELL(forward_chunk)(c, t, s, m, k))) fbp_phase_fail(&c->ph, st);
            fbp_phase_done(&c->ph);
        }
        fbp_phase_end(&c->ph, &ph, c->chunks);
        s += m;
    }
    /* the reset rows of the last step get their true states back */
    const int *ev;
    const int ne = T > 0 ? fbp_seq_events(c->seq, T - 1, &ev) : 0;
    if (ne) {
        const ptrdiff_t s_last = s - fbp_seq_block(c->seq, T - 1, B), BH = (ptrdiff_t)B * H;
        fbp_phase_begin(&ph);
        while ((k = fbp_phase_next(&c->ph, &ph, c->chunks)) >= 0) {
            const int u0 = k * c->units, u1 = u0 + c->units < H ? u0 + c->units : H;
            for (int q = 0; q < S; q++)
                FN(cols_restore)(c->state[q] + s_last * H, c->work + ((T - 1) % 2 * S + q) * BH,
                                 ev, ne, H, u0, u1);
            fbp_phase_done(&c->ph);
        }
        fbp_phase_end(&c->ph, &ph, c->chunks);
    }
}

static int CELL(engine_forward)(fbp_run *run, const fbp_weights *w, const fbp_scratch *scr,
                                int act, const fbp_seq *seq, fbp_dims dims)
{
    enum { SAVED = CELL_K(SAVED), SEPARATE = CELL_K(SEPARATE) };
    ptrdiff_t events;
    int st = CELL(engine_check)(seq, &events, scr->work, dims);
    if (st) return st;
    /* the RNN may stage its input side in hs only where the blocks coincide */
    if (!run->gates && (SAVED || (seq && seq->rows))) return FBP_ERR_ARG;
    if (SEPARATE && !scr->rec) return FBP_ERR_ARG;
    if (dims.T == 0 || dims.B == 0) return FBP_OK;
    FN(engine_ctx) c;
    CELL(engine_setup)(&c, run, w, scr, act, seq, events, dims);
    /* the input side goes into the gates buffer, or where h_1..h_T go
     * (state[0]'s blocks 1..T) */
    c.gates = run->gates ? (REAL *)run->gates : c.state[0] + (ptrdiff_t)dims.B * dims.H;
    c.ldg = SAVED ? SAVED * dims.H : dims.H;
    if (FN(engine_use_team)(&c, CELL_K(GATES))) fbp_team_run(CELL(forward_member), &c);
    else CELL(forward_member)(&c, 0, 1);        /* too small to share */
    return c.ph.status;
}

/* ---- backward --------------------------------------------------------------------- */

/* Backward fused pass of step t on chunk k's units (rows s.. of block t). */
static void CELL(backward_pass)(FN(engine_ctx) *c, int t, ptrdiff_t s, int k)
{
    enum { G = CELL_K(GATES), S = CELL_K(STATES), SAVED = CELL_K(SAVED),
           SEPARATE = CELL_K(SEPARATE), PREV_READ = CELL_K(PREV_READ) };
    const int H = c->H, B = c->B, GH = G * H;
    const int m = fbp_seq_block(c->seq, t, B), n = fbp_seq_rows(c->seq, t, B);
    const int u0 = k * c->units, u1 = u0 + c->units < H ? u0 + c->units : H, nu = u1 - u0;
    const ptrdiff_t h = H, BH = (ptrdiff_t)B * H;
    FN(fbp_step) step = {.n = n, .H = H, .u0 = u0, .nu = nu,
                         .gates = SAVED ? c->gates + s * SAVED * h : NULL,
                         .dy = c->dy ? c->dy + s * h : NULL, .dgates = c->dgates + s * GH,
                         .drec = (SEPARATE ? c->drec : c->dgates) + s * GH};
    for (int q = 0; q < S; q++) {
        step.prev[q] = c->state[q] + s * h;
        step.next[q] = c->state[q] + (s + m) * h;
        step.carry[q] = c->carry[q];
    }
    /* the rows that ended before step t: no gradient into the stacked GEMMs */
    for (int r = n; r < m; r++)
        for (int g = 0; g < G; g++) {
            memset(step.dgates + (ptrdiff_t)r * GH + g * h + u0, 0, (size_t)nu * sizeof(REAL));
            if (SEPARATE)
                memset(step.drec + (ptrdiff_t)r * GH + g * h + u0, 0, (size_t)nu * sizeof(REAL));
        }
    const int *ev;
    const int ne = fbp_seq_events(c->seq, t, &ev);
    /* work: S accumulators (B,H), a swap for each state the pass reads, then the h swap */
    REAL *acc = c->work, *save = acc + S * BH;
    for (int q = 0; q < S && ne; q++)
        if (PREV_READ & (1 << q)) {             /* the pass sees the initial state there */
            FN(cols_swap_in)(c->state[q] + s * h, save, c->state[q], ev, ne, H, u0, u1);
            save += BH;
        }
    CELL(backward_step)(&step, &c->params, &c->grads, c->act);
    save = acc + S * BH;
    for (int q = 0; q < S && ne; q++) {
        if (PREV_READ & (1 << q)) {
            FN(cols_restore)(c->state[q] + s * h, save, ev, ne, H, u0, u1);
            save += BH;
        }
        /* ∂L/∂c (LSTM) at a reset → ∂L/∂c0; h's waits for the product */
        if (q > 0) FN(cols_divert)(acc + q * BH, c->carry[q], ev, ne, H, u0, u1);
    }
}

/* Chunk k's columns of ∂L/∂h_{t−1}: carry[0](n, units) (+)= δ_rec,t(n, GH) @ W_hh[:, units]. */
static int CELL(backward_product)(FN(engine_ctx) *c, int t, ptrdiff_t s, int k)
{
    enum { G = CELL_K(GATES), SEPARATE = CELL_K(SEPARATE), DIRECT_H = CELL_K(DIRECT_H) };
    const int H = c->H, GH = G * H, n = fbp_seq_rows(c->seq, t, c->B);
    const int u0 = k * c->units, u1 = u0 + c->units < H ? u0 + c->units : H, nu = u1 - u0;
    if (n > 0) {
        const REAL *drec = (SEPARATE ? c->drec : c->dgates) + s * GH;
        const int st = FN(chunk_product_backward)(c->carry[0] + u0, drec, GH, c->W_hh + u0,
                                                  c->pack ? c->pack + k * c->pack_stride : NULL,
                                                  n, H, GH, nu, DIRECT_H);
        if (st) return st;
    }
    const int *ev;
    const int ne = fbp_seq_events(c->seq, t, &ev);
    if (ne) FN(cols_divert)(c->work, c->carry[0], ev, ne, H, u0, u1);   /* no gradient across */
    return FBP_OK;
}

/* Block k of the stacked weight and input gradients: dW_ih's, then dW_hh's row
 * blocks, then dX's. */
static int CELL(gradient_block)(FN(engine_ctx) *c, int k)
{
    enum { G = CELL_K(GATES), SEPARATE = CELL_K(SEPARATE) };
    const int GH = G * c->H, H = c->H, I = c->I, M = c->M;
    const int w_rows = FN(engine_gemm_rows)(GH), w_blocks = FN(engine_gemm_blocks)(GH);
    const int ih_blocks = I > 0 ? w_blocks : 0;
    const REAL *drec = SEPARATE ? c->drec : c->dgates;
    if (k < ih_blocks) {    /* dW_ih(rows, I) += Δ(M, rows)ᵀ @ X(M, I) */
        const int r0 = k * w_rows, nr = GH - r0 < w_rows ? GH - r0 : w_rows;
        return FN(fbp_gemm)(c->dW_ih + (ptrdiff_t)r0 * I, I, c->dgates + r0, GH, c->x, I, nr, I, M,
                            1, 0, (REAL)1, (REAL)1);
    }
    k -= ih_blocks;
    if (k < w_blocks) {     /* dW_hh(rows, H) += Δ_rec(M, rows)ᵀ @ H_prev(M, H) */
        const int r0 = k * w_rows, nr = GH - r0 < w_rows ? GH - r0 : w_rows;
        return FN(fbp_gemm)(c->dW_hh + (ptrdiff_t)r0 * H, H, drec + r0, GH, c->state[0], H, nr, H,
                            M, 1, 0, (REAL)1, (REAL)1);
    }
    k -= w_blocks;          /* dX(rows, I) = Δ(rows, GH) @ W_ih(GH, I) */
    const int x_rows = FN(engine_gemm_rows)(M), r0 = k * x_rows;
    const int nr = M - r0 < x_rows ? M - r0 : x_rows;
    return FN(fbp_gemm)(c->dx + (ptrdiff_t)r0 * I, I, c->dgates + (ptrdiff_t)r0 * GH, GH, c->W_ih,
                        I, nr, I, GH, 0, 0, (REAL)1, (REAL)0);
}

static void CELL(backward_member)(void *vctx, int member, int members)
{
    enum { G = CELL_K(GATES), S = CELL_K(STATES), PREV_READ = CELL_K(PREV_READ) };
    FN(engine_ctx) *c = vctx;
    const int H = c->H, B = c->B, T = c->T, GH = G * H;
    const ptrdiff_t BH = (ptrdiff_t)B * H;
    fbp_phase_state ph = fbp_phase_start(member, members);
    int k, st;
    /* each chunk's columns of W_hh packed; its columns of the reset accumulators zeroed */
    fbp_phase_begin(&ph);
    while ((k = fbp_phase_next(&c->ph, &ph, c->chunks)) >= 0) {
        const int u0 = k * c->units, u1 = u0 + c->units < H ? u0 + c->units : H;
        if (c->pack)    /* panels of W_hh[:, units] (GH, nu) */
            FN(fbp_pack)(c->pack + k * c->pack_stride, c->W_hh + u0, H, GH, u1 - u0, 0);
        if (c->events)
            for (int q = 0; q < S; q++)
                for (int b = 0; b < B; b++)
                    memset(c->work + q * BH + (ptrdiff_t)b * H + u0, 0,
                           (size_t)(u1 - u0) * sizeof(REAL));
        fbp_phase_done(&c->ph);
    }
    fbp_phase_end(&c->ph, &ph, c->chunks);
    /* s_t of every step: the last step's first */
    ptrdiff_t s = c->M - fbp_seq_block(c->seq, T - 1, B);
    fbp_phase_begin(&ph);
    while ((k = fbp_phase_next(&c->ph, &ph, c->chunks)) >= 0) {
        CELL(backward_pass)(c, T - 1, s, k);
        fbp_phase_done(&c->ph);
    }
    fbp_phase_end(&c->ph, &ph, c->chunks);
    for (int t = T - 1; t >= 0; t--) {
        const ptrdiff_t s_prev = t > 0 ? s - fbp_seq_block(c->seq, t - 1, B) : 0;
        fbp_phase_begin(&ph);
        while ((k = fbp_phase_next(&c->ph, &ph, c->chunks)) >= 0) {
            /* δ_t is complete: this chunk's ∂L/∂h_{t−1}, then its pass of step t − 1 */
            if ((st = CELL(backward_product)(c, t, s, k))) fbp_phase_fail(&c->ph, st);
            if (t > 0) {
                CELL(backward_pass)(c, t - 1, s_prev, k);
            } else if (c->events) {     /* the gradients diverted at resets join ∂L/∂(initial) */
                const int u0 = k * c->units, u1 = u0 + c->units < H ? u0 + c->units : H;
                for (int q = 0; q < S; q++)
                    for (int b = 0; b < B; b++)
                        for (int j = u0; j < u1; j++)
                            c->carry[q][(ptrdiff_t)b * H + j] += c->work[q * BH + (ptrdiff_t)b * H + j];
            }
            fbp_phase_done(&c->ph);
        }
        fbp_phase_end(&c->ph, &ph, c->chunks);
        s = s_prev;
    }
    /* the stacked weight and input gradients, in row blocks; H_prev has h0 in
     * the rows of reset events for the duration (one member swaps them) */
    REAL *h_save = c->work + S * BH;
    for (int q = 0; q < S; q++)
        if (PREV_READ & (1 << q)) h_save += BH;
    if (c->events) {
        fbp_phase_begin(&ph);
        if (fbp_phase_next(&c->ph, &ph, 1) >= 0) {
            FN(fbp_seq_swap_all)(c->state[0], h_save, c->seq, T, B, H, 1);
            fbp_phase_done(&c->ph);
        }
        fbp_phase_end(&c->ph, &ph, 1);
    }
    const int w_blocks = FN(engine_gemm_blocks)(GH);
    const int blocks = (c->I > 0 ? w_blocks : 0) + w_blocks
                       + (c->dx && c->I > 0 ? FN(engine_gemm_blocks)(c->M) : 0);
    fbp_phase_begin(&ph);
    while ((k = fbp_phase_next(&c->ph, &ph, blocks)) >= 0) {
        if ((st = CELL(gradient_block)(c, k))) fbp_phase_fail(&c->ph, st);
        fbp_phase_done(&c->ph);
    }
    fbp_phase_end(&c->ph, &ph, blocks);
    if (c->events) {
        fbp_phase_begin(&ph);
        if (fbp_phase_next(&c->ph, &ph, 1) >= 0) {
            FN(fbp_seq_swap_all)(c->state[0], h_save, c->seq, T, B, H, 0);
            fbp_phase_done(&c->ph);
        }
        fbp_phase_end(&c->ph, &ph, 1);
    }
}

static int CELL(engine_backward)(fbp_run_grads *out, fbp_weight_grads *dw, fbp_run *run,
                                 const fbp_weights *w, const fbp_scratch *scr, int act,
                                 const fbp_seq *seq, fbp_dims dims)
{
    enum { S = CELL_K(STATES), SAVED = CELL_K(SAVED), SEPARATE = CELL_K(SEPARATE) };
    ptrdiff_t events;
    int st = CELL(engine_check)(seq, &events, scr->work, dims);
    if (st) return st;
    if (w->peep && !dw->peep) return FBP_ERR_ARG;
    if ((SAVED && !run->gates) || (SEPARATE && (!out->drec || !dw->b_hh))) return FBP_ERR_ARG;
    /* rows that never run (length 0, or T = 0): ∂L/∂(initial state) = the final one's */
    if (dims.T == 0 || dims.B == 0) return FBP_OK;
    FN(engine_ctx) c;
    CELL(engine_setup)(&c, run, w, scr, act, seq, events, dims);
    c.gates = run->gates;
    c.ldg = SAVED * dims.H;
    for (int q = 0; q < S; q++) c.carry[q] = out->dstate[q];
    c.dgates = out->dgates;
    c.drec = SEPARATE ? (REAL *)out->drec : NULL;
    c.dx = out->dx;
    c.dy = out->dy;
    c.dW_ih = dw->W_ih;
    c.dW_hh = dw->W_hh;
    c.grads.b_ih = dw->b_ih; c.grads.b_hh = dw->b_hh; c.grads.peep = dw->peep;
    if (FN(engine_use_team)(&c, CELL_K(GATES))) fbp_team_run(CELL(backward_member), &c);
    else CELL(backward_member)(&c, 0, 1);       /* too small to share */
    return c.ph.status;
}
