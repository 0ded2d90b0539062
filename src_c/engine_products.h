/* The engine's per-step recurrent products on one chunk of hidden units,
 * written once for REAL (included by engine.c before engine_body.h). On
 * fastbp's own kernels (the scratch has a pack): forward, from ENGINE_PACKED_ROWS
 * rows of batch up, the register-blocked kernel on the chunk's rows of W_hh
 * packed once per call (packed.h, its fixed-order entry), below that the
 * fixed-order row-dot product on W_hh's rows as they are (rowdot.h: a streamed
 * step of a few rows reads W_hh once, and packing it would cost more than
 * the product); backward,
 * the register-blocked kernel on the chunk's columns of W_hh, packed once per
 * call. Else through BLAS: a GEMV for one row, a GEMM otherwise. GH = G·H,
 * the cell's gate width. Either forward kernel sums each element in an order
 * fixed by K alone, and the choice depends on the batch B, never on the rows
 * a step has active: so a row's result does not depend on the other rows, the
 * thread or the number of steps in the call (a streamed step, fastbp/_step.py,
 * equals the whole sequence). The input side follows the same rule
 * (engine_region.h, engine_input_packs). */

/* Rows of batch from which the forward's per-step products run on the packed
 * kernel. One thread of the AVX2 EPYC, LSTM H = 256, T = 100, W_hh packed per
 * call: the forward 10-14% faster than on the row-dot kernel at B = 4, 16 and
 * 64. A streamed step packs on every call, which at B = 4 cost 20-27% more
 * than the row-dot product, at B = 8 about 11%, and paid off from B = 16
 * (docs/performance.md, session 10). From the same B the input side runs on
 * the packed kernel too, W_ih packed per call: the forward 4-21% faster in
 * float32 and 23-25% in float64, a streamed step 8% dearer at B = 8, 4% at
 * 16, 8% cheaper at 32 (session 11). */
#define ENGINE_PACKED_ROWS 8

/* One chunk's forward product for one gate block:
 * C(n,nu) (+)= h_prev(n,H) @ W_rows(nu,H)ᵀ, W_rows = that block's rows of
 * W_hh for the chunk's units (row stride H); ldc: C's row stride; accumulate:
 * add to C (the input side already there) instead of overwriting it; panel:
 * W_rows packed (fbp_pack, transposed), else own: the row-dot kernel, else
 * BLAS. */
static int FN(chunk_product_forward)(REAL *C, int ldc, const REAL *h_prev, const REAL *W_rows,
                                     const REAL *panel, int own, int n, int H, int nu,
                                     int accumulate)
{
    if (panel) {
        FN(fbp_gemm_packed_fixed)(C, ldc, h_prev, H, panel, n, nu, H, accumulate);
        return FBP_OK;
    }
    if (own) {
        FN(fbp_rowdot)(C, ldc, h_prev, H, W_rows, H, n, nu, H, accumulate);
        return FBP_OK;
    }
    const REAL beta = accumulate ? (REAL)1 : (REAL)0;
    if (n == 1)         /* C(nu) (+)= W_rows(nu,H) @ h_prev(H) */
        return FN(fbp_gemv)(C, W_rows, H, h_prev, nu, H, 0, (REAL)1, beta);
    return FN(fbp_gemm)(C, ldc, h_prev, H, W_rows, H, n, nu, H, 0, 1, (REAL)1, beta);
}

/* C(n,nu) (+)= A(n,K) @ W_rows(nu,K)ᵀ on the packed kernel for a single step
 * (a streamed step, fastbp/_step.py: the recurrent product, K = H, and the
 * input side, K = I), which packs W_rows on every call: one panel at a time
 * into panel, used at once while it is in L1 (the values are those of packing
 * the whole block first). */
static void FN(chunk_product_forward_once)(REAL *C, int ldc, const REAL *A, const REAL *W_rows,
                                           REAL *panel, int n, int K, int nu, int accumulate)
{
    const int width = (int)FN(fbp_pack_size)(1, 1);    /* the panel width */
    for (int j0 = 0; j0 < nu; j0 += width) {
        const int nc = nu - j0 < width ? nu - j0 : width;
        FN(fbp_pack)(panel, W_rows + (ptrdiff_t)j0 * K, K, K, nc, 1);
        FN(fbp_gemm_packed_fixed)(C + j0, ldc, A, K, panel, n, nc, K, accumulate);
    }
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
    /* the whole width as one chunk: W_hh's rows (N = GH, K = H), packed from
     * ENGINE_PACKED_ROWS rows up, then W_hh packed (K = GH, N = H) */
    const int packs_forward = pack && B >= ENGINE_PACKED_ROWS;
    if (packs_forward) FN(fbp_pack)(pack, W_hh, H, H, GH, 1);
    for (int t = 0; t < T; t++) {
        st = FN(chunk_product_forward)(gates + t * step_g, GH, hs + t * step_h, W_hh,
                                       packs_forward ? pack : NULL, pack != NULL, B, H, GH, 1);
        if (st) return st;
    }
    if (pack) FN(fbp_pack)(pack, W_hh, H, GH, H, 0);
    for (int t = T - 1; t >= 0; t--) {
        st = FN(chunk_product_backward)(dh, gates + t * step_g, GH, W_hh, pack, B, H, GH, H, 0);
        if (st) return st;
    }
    return FBP_OK;
}
