/* Slot-layout copies and reset-event helpers, written once for REAL (see seq.h). */

void FN(fbp_seq_gather)(REAL *dst, const REAL *src, const int *order, const int *lengths,
                        const fbp_seq *seq, int T, int B, int D, int block, int reverse)
{
    const ptrdiff_t d = D, BD = (ptrdiff_t)B * D;
    ptrdiff_t s = 0;                        /* s_t, start of block t */
    for (int t = 0; t < T; t++) {
        const int m = fbp_seq_block(seq, t, B), n = fbp_seq_rows(seq, t, B);
        REAL *blk = dst + (block ? s + m : s) * d;   /* step t's rows */
        for (int r = 0; r < n; r++) {
            const int tt = reverse ? lengths[r] - 1 - t : t;
            memcpy(blk + r * d, src + tt * BD + (ptrdiff_t)order[r] * d, (size_t)D * sizeof(REAL));
        }
        if (!block && m > n) memset(blk + n * d, 0, (size_t)(m - n) * (size_t)D * sizeof(REAL));
        s += m;
    }
}

void FN(fbp_seq_scatter)(REAL *dst, const REAL *src, const int *order, const int *lengths,
                         const fbp_seq *seq, int T, int B, int D, int block, int reverse)
{
    const ptrdiff_t d = D, BD = (ptrdiff_t)B * D;
    ptrdiff_t s = 0;
    for (int t = 0; t < T; t++) {
        const int m = fbp_seq_block(seq, t, B), n = fbp_seq_rows(seq, t, B);
        const REAL *blk = src + (block ? s + m : s) * d;
        for (int r = 0; r < n; r++) {
            const int tt = reverse ? lengths[r] - 1 - t : t;
            memcpy(dst + tt * BD + (ptrdiff_t)order[r] * d, blk + r * d, (size_t)D * sizeof(REAL));
        }
        /* time t of the rows that have ended: zero (forward order only; in
         * reverse order those positions are covered by earlier t) */
        for (int r = n; r < B; r++)
            memset(dst + t * BD + (ptrdiff_t)order[r] * d, 0, (size_t)D * sizeof(REAL));
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
