/* One engine call as a team region, written once for REAL (included by
 * engine.c before engine_body.h): what the members share, and how the work
 * is cut into chunks whose boundaries depend on the problem only (team.h),
 * so that results never depend on the team size.
 *
 * Per step, the chunks are ranges of hidden units (ENGINE_UNITS at least, a
 * multiple of every packed panel width): a chunk's forward computes the gate
 * columns of its units (each gate block) and their fused pass; its backward
 * the fused pass of its units and then its columns of ∂L/∂h_{t−1} =
 * δ_rec W_hh. Each chunk has its own packed slice of W_hh, packed by the
 * member that owns it, which then stays in that core's cache across steps.
 * The stacked GEMMs before and after the loop run in fixed row blocks. */

#define ENGINE_UNITS 32             /* units per chunk at least (panels: 16 floats, 8 doubles) */
#define ENGINE_GEMM_ROWS 256        /* rows per block of the stacked GEMMs at least */
#define ENGINE_GEMM_BLOCKS 16       /* blocks of one stacked GEMM at most */
/* (FBP_ENGINE_TEAM_MIN_MACS, engine.h: below it a call runs on its caller alone) */

typedef struct {
    /* the call */
    int T, B, I, H, M, act;
    const fbp_seq *seq;
    ptrdiff_t events;
    const REAL *x, *W_ih, *W_hh;
    REAL *state[FBP_MAX_STATES];
    REAL *gates;                    /* the run's gates buffer (or the RNN's staging area) */
    int ldg;                        /* its row stride */
    FN(fbp_cell_params) params;
    REAL *work, *pack, *rec;
    /* backward */
    REAL *carry[FBP_MAX_STATES], *dgates, *drec, *dx, *dW_ih, *dW_hh;
    const REAL *dy;
    FN(fbp_cell_grads) grads;
    /* the chunks */
    int units;                      /* units per chunk */
    int chunks;                     /* unit chunks: ceil(H / units) */
    ptrdiff_t pack_stride;          /* elements of one chunk's packed slices */
    fbp_phases ph;
} FN(engine_ctx);

/* Whether a call of this size runs on the team. */
static int FN(engine_use_team)(const FN(engine_ctx) *c, int G)
{
    return c->chunks > 1 && (int64_t)c->B * G * c->H * c->H >= FBP_ENGINE_TEAM_MIN_MACS;
}

/* Units per chunk for hidden size H: ENGINE_UNITS, more when H is so large
 * that the chunks would pass FBP_TEAM_MAX_CHUNKS. */
static int FN(engine_units)(int H)
{
    int u = ENGINE_UNITS;
    while ((H + u - 1) / u > FBP_TEAM_MAX_CHUNKS) u += ENGINE_UNITS;
    return u;
}

/* Elements of one chunk's packed slices: G blocks of W_hhᵀ (K = H, N = units)
 * forward, the columns of W_hh (K = GH, N = units) backward. */
static ptrdiff_t FN(engine_chunk_pack)(int H, int G, int units)
{
    const ptrdiff_t fwd = G * FN(fbp_pack_size)(H, units), bwd = FN(fbp_pack_size)(G * H, units);
    return fwd > bwd ? fwd : bwd;
}

/* Rows per block of a stacked GEMM over `rows` rows (ENGINE_GEMM_ROWS at
 * least, ENGINE_GEMM_BLOCKS blocks at most), and the number of blocks. */
static int FN(engine_gemm_rows)(int rows)
{
    int r = ENGINE_GEMM_ROWS;
    if ((rows + r - 1) / r > ENGINE_GEMM_BLOCKS) r = (rows + ENGINE_GEMM_BLOCKS - 1) / ENGINE_GEMM_BLOCKS;
    return r;
}

static int FN(engine_gemm_blocks)(int rows)
{
    const int r = FN(engine_gemm_rows)(rows);
    return rows == 0 ? 0 : (rows + r - 1) / r;
}

/* ---- reset events on one chunk's units [u0, u1) ---------------------------------
 * As seq.h's swap_in / restore / divert, on the columns of a unit chunk only:
 * blk (·,H) with rows ev[0..ne) events; save (ne,H). */
static void FN(cols_swap_in)(REAL *blk, REAL *save, const REAL *init, const int *ev, int ne,
                             int H, int u0, int u1)
{
    const size_t bytes = (size_t)(u1 - u0) * sizeof(REAL);
    for (int k = 0; k < ne; k++) {
        const ptrdiff_t o = (ptrdiff_t)ev[k] * H + u0;
        memcpy(save + (ptrdiff_t)k * H + u0, blk + o, bytes);
        memcpy(blk + o, init + o, bytes);
    }
}

static void FN(cols_restore)(REAL *blk, const REAL *save, const int *ev, int ne, int H, int u0,
                             int u1)
{
    for (int k = 0; k < ne; k++)
        memcpy(blk + (ptrdiff_t)ev[k] * H + u0, save + (ptrdiff_t)k * H + u0,
               (size_t)(u1 - u0) * sizeof(REAL));
}

static void FN(cols_divert)(REAL *acc, REAL *g, const int *ev, int ne, int H, int u0, int u1)
{
    for (int k = 0; k < ne; k++) {
        const ptrdiff_t o = (ptrdiff_t)ev[k] * H;
        for (int j = u0; j < u1; j++) { acc[o + j] += g[o + j]; g[o + j] = 0; }
    }
}
