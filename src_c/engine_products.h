/* The engine's per-step recurrent products on one chunk of hidden units,
 * written once for REAL (included by engine.c before engine_body.h). On
 * fastbp's own kernels (small batches): the forward product is the
 * fixed-order row-dot product on W_hh's rows as they are (rowdot.h: no
 * packing, and one row's result does not depend on the batch), the backward
 * one the register-blocked kernel on the chunk's columns of W_hh, packed once
 * per call (packed.h). Else through BLAS: a GEMV for one row, a GEMM
 * otherwise. GH = G·H, the cell's gate width. */

/* One chunk's forward product for one gate block:
 * C(n,nu) (+)= h_prev(n,H) @ W_rows(nu,H)ᵀ, W_rows = that block's rows of
 * W_hh for the chunk's units (row stride H); ldc: C's row stride; accumulate:
 * add to C (the input side already there) instead of overwriting it; own:
 * fastbp's kernel, else BLAS. */
static int FN(chunk_product_forward)(REAL *C, int ldc, const REAL *h_prev, const REAL *W_rows,
                                     int own, int n, int H, int nu, int accumulate)
{
    if (own) {
        FN(fbp_rowdot)(C, ldc, h_prev, H, W_rows, H, n, nu, H, accumulate);
        return FBP_OK;
    }
    const REAL beta = accumulate ? (REAL)1 : (REAL)0;
    if (n == 1)         /* C(nu) (+)= W_rows(nu,H) @ h_prev(H) */
        return FN(fbp_gemv)(C, W_rows, H, h_prev, nu, H, 0, (REAL)1, beta);
    return FN(fbp_gemm)(C, ldc, h_prev, H, W_rows, H, n, nu, H, 0, 1, (REAL)1, beta);
}

/* One chunk's backward product: dh(n,nu) (+)= δ(n,GH) @ W_cols(GH,nu), W_cols
 * = the chunk's columns of W_hh (row stride H), dh's row stride H; ldd: δ's
 * row stride; panel: W_cols packed, or NULL for BLAS. */
static int FN(chunk_product_backward)(REAL *dh, const REAL *delta, int ldd, const REAL *W_cols,
                                      const REAL *panel, int n, int H, int GH, int nu,
                                      int accumulate)
{
    if (panel) {
        FN(fbp_gemm_packed)(dh, H, delta, ldd, panel, n, nu, GH, accumulate);
        return FBP_OK;
    }
    const REAL beta = accumulate ? (REAL)1 : (REAL)0;
    if (n == 1)         /* dh(nu) (+)= W_cols(GH,nu)ᵀ @ δ(GH) */
        return FN(fbp_gemv)(dh, W_cols, H, delta, GH, nu, 1, (REAL)1, beta);
    return FN(fbp_gemm)(dh, H, delta, ldd, W_cols, H, n, nu, GH, 0, 0, (REAL)1, beta);
}

int FN(fbp_engine_step_products)(fbp_cell cell, REAL *gates, REAL *dh, const REAL *hs,
                                 const REAL *W_hh, REAL *pack, int T, int B, int H)
{
    fbp_cell_info info;
    if (fbp_cell_describe(cell, &info) || T < 0 || B < 0 || H < 1) return FBP_ERR_ARG;
    const int GH = info.gates * H;
    const ptrdiff_t step_g = (ptrdiff_t)B * GH, step_h = (ptrdiff_t)B * H;
    int st;
    /* the whole width as one chunk: W_hh's rows (N = GH, K = H), then W_hh
     * packed (K = GH, N = H) */
    for (int t = 0; t < T; t++) {
        st = FN(chunk_product_forward)(gates + t * step_g, GH, hs + t * step_h, W_hh, pack != NULL,
                                       B, H, GH, 1);
        if (st) return st;
    }
    if (pack) FN(fbp_pack)(pack, W_hh, H, GH, H, 0);
    for (int t = T - 1; t >= 0; t--) {
        st = FN(chunk_product_backward)(dh, gates + t * step_g, GH, W_hh, pack, B, H, GH, H, 0);
        if (st) return st;
    }
    return FBP_OK;
}
