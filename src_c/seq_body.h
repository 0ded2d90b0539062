/* Slot-layout copies and reset-event helpers, written once for REAL (see seq.h). */

/* The caller's time of sorted row r at step t. */
static inline int FN(seq_time)(const int *lengths, int T, int r, int t, int reverse)
{
    if (!reverse) return t;
    return (lengths ? lengths[r] : T) - 1 - t;
}

void FN(fbp_seq_gather)(REAL *dst, const REAL *src, ptrdiff_t ldc, const int *order,
                        const int *lengths, const fbp_seq *seq, int T, int B, int D, int block,
                        int reverse)
{
    const ptrdiff_t d = D;
    ptrdiff_t s = 0;                        /* s_t, start of block t */
    for (int t = 0; t < T; t++) {
        const int m = fbp_seq_block(seq, t, B), n = fbp_seq_rows(seq, t, B);
        REAL *blk = dst + (block ? s + m : s) * d;   /* step t's rows */
        for (int r = 0; r < n; r++) {
            const ptrdiff_t tt = FN(seq_time)(lengths, T, r, t, reverse);
            const ptrdiff_t b = order ? order[r] : r;
            memcpy(blk + r * d, src + (tt * B + b) * ldc, (size_t)D * sizeof(REAL));
        }
        if (!block && m > n) memset(blk + n * d, 0, (size_t)(m - n) * (size_t)D * sizeof(REAL));
        s += m;
    }
}

void FN(fbp_seq_scatter)(REAL *dst, ptrdiff_t ldc, const REAL *src, const int *order,
                         const int *lengths, const fbp_seq *seq, int T, int B, int D, int block,
                         int reverse, int accumulate)
{
    const ptrdiff_t d = D;
    ptrdiff_t s = 0;
    for (int t = 0; t < T; t++) {
        const int m = fbp_seq_block(seq, t, B), n = fbp_seq_rows(seq, t, B);
        const REAL *blk = src + (block ? s + m : s) * d;
        for (int r = 0; r < n; r++) {
            const ptrdiff_t tt = FN(seq_time)(lengths, T, r, t, reverse);
            const ptrdiff_t b = order ? order[r] : r;
            REAL *out = dst + (tt * B + b) * ldc;
            const REAL *in = blk + r * d;
            if (accumulate)
                for (int j = 0; j < D; j++) out[j] += in[j];
            else
                memcpy(out, in, (size_t)D * sizeof(REAL));
        }
        /* time t of the rows that have ended: zero (the same positions in
         * reverse order: a row's padding is past its length either way) */
        if (!accumulate)
            for (int r = n; r < B; r++)
                memset(dst + (t * (ptrdiff_t)B + (order ? order[r] : r)) * ldc, 0,
                       (size_t)D * sizeof(REAL));
        s += m;
    }
}

void FN(fbp_seq_swap_in)(REAL *blk, REAL *save, const REAL *init, const int *ev, int ne, int H)
{
    const size_t bytes = (size_t)H * sizeof(REAL);
    for (int k = 0; k < ne; k++) {
        const ptrdiff_t o = (ptrdiff_t)ev[k] * H;
        memcpy(save + (ptrdiff_t)k * H, blk + o, bytes);
        memcpy(blk + o, init + o, bytes);
    }
}

void FN(fbp_seq_restore)(REAL *blk, const REAL *save, const int *ev, int ne, int H)
{
    for (int k = 0; k < ne; k++)
        memcpy(blk + (ptrdiff_t)ev[k] * H, save + (ptrdiff_t)k * H, (size_t)H * sizeof(REAL));
}

void FN(fbp_seq_divert)(REAL *acc, REAL *g, const int *ev, int ne, int H)
{
    for (int k = 0; k < ne; k++) {
        const ptrdiff_t o = (ptrdiff_t)ev[k] * H;
        for (int j = 0; j < H; j++) { acc[o + j] += g[o + j]; g[o + j] = 0; }
    }
}

void FN(fbp_seq_swap_all)(REAL *hs, REAL *save, const fbp_seq *seq, int T, int B, int H, int in)
{
    ptrdiff_t s = 0, k = 0;                 /* s_t, and the events before step t */
    for (int t = 0; t < T; t++) {
        const int *ev;
        const int ne = fbp_seq_events(seq, t, &ev);
        if (ne) {
            if (in) FN(fbp_seq_swap_in)(hs + s * H, save + k * H, hs, ev, ne, H);
            else FN(fbp_seq_restore)(hs + s * H, save + k * H, ev, ne, H);
        }
        k += ne;
        s += fbp_seq_block(seq, t, B);
    }
}
