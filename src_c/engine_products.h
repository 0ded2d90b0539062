/* The engine's per-step recurrent products, written once for REAL (included
 * by engine.c before engine_body.h). pack: W_hh packed once per call for
 * fastbp's register-blocked kernel (packed.h), or NULL for BLAS: a GEMV for
 * one row, a GEMM otherwise. GH = G·H, the cell's gate width. */

/* C(n,GH) (+)= h_prev(n,H) @ W_hh(GH,H)ᵀ; ldc: C's row stride; accumulate: add
 * to C (the input side already there) instead of overwriting it. */
static int FN(engine_product_forward)(REAL *C, int ldc, const REAL *h_prev, const REAL *W_hh,
                                      const REAL *pack, int n, int H, int GH, int accumulate)
{
    if (pack) {
        FN(fbp_gemm_packed)(C, ldc, h_prev, H, pack, n, GH, H, accumulate);
        return FBP_OK;
    }
    const REAL beta = accumulate ? (REAL)1 : (REAL)0;
    if (n == 1)         /* C(GH) (+)= W_hh(GH,H) @ h_prev(H) */
        return FN(fbp_gemv)(C, W_hh, H, h_prev, GH, H, 0, (REAL)1, beta);
    return FN(fbp_gemm)(C, ldc, h_prev, H, W_hh, H, n, GH, H, 0, 1, (REAL)1, beta);
}

/* dh(n,H) (+)= δ(n,GH) @ W_hh(GH,H); ldd: δ's row stride. */
static int FN(engine_product_backward)(REAL *dh, const REAL *delta, int ldd, const REAL *W_hh,
                                       const REAL *pack, int n, int H, int GH, int accumulate)
{
    if (pack) {
        FN(fbp_gemm_packed)(dh, H, delta, ldd, pack, n, H, GH, accumulate);
        return FBP_OK;
    }
    const REAL beta = accumulate ? (REAL)1 : (REAL)0;
    if (n == 1)         /* dh(H) (+)= W_hh(GH,H)ᵀ @ δ(GH) */
        return FN(fbp_gemv)(dh, W_hh, H, delta, GH, H, 1, (REAL)1, beta);
    return FN(fbp_gemm)(dh, H, delta, ldd, W_hh, H, n, H, GH, 0, 0, (REAL)1, beta);
}

/* Elements of the packing workspace: the larger of W_hhᵀ (K = H, N = GH)
 * forward and W_hh (K = GH, N = H) backward. */
static ptrdiff_t FN(engine_pack_elements)(int H, int GH)
{
    const ptrdiff_t fwd = FN(fbp_pack_size)(H, GH), bwd = FN(fbp_pack_size)(GH, H);
    return fwd > bwd ? fwd : bwd;
}

int FN(fbp_engine_step_products)(fbp_cell cell, REAL *gates, REAL *dh, const REAL *hs,
                                 const REAL *W_hh, REAL *pack, int T, int B, int H)
{
    fbp_cell_info info;
    if (fbp_cell_describe(cell, &info) || T < 0 || B < 0 || H < 1) return FBP_ERR_ARG;
    const int GH = info.gates * H;
    const ptrdiff_t step_g = (ptrdiff_t)B * GH, step_h = (ptrdiff_t)B * H;
    int st;
    if (pack) FN(fbp_pack)(pack, W_hh, H, GH, 1);
    for (int t = 0; t < T; t++) {
        st = FN(engine_product_forward)(gates + t * step_g, GH, hs + t * step_h, W_hh, pack, B, H,
                                        GH, 1);
        if (st) return st;
    }
    if (pack) FN(fbp_pack)(pack, W_hh, GH, H, 0);
    for (int t = T - 1; t >= 0; t--) {
        st = FN(engine_product_backward)(dh, gates + t * step_g, GH, W_hh, pack, B, H, GH, 0);
        if (st) return st;
    }
    return FBP_OK;
}
