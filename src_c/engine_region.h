/* One engine call as a team region, written once for REAL (included by
 * engine.c before engine_body.h): what the members share, and how the work
 * is cut into chunks whose boundaries depend on the problem only (team.h),
 * so that results never depend on the team size.
 *
 * Per step, the chunks are ranges of hidden units (ENGINE_UNITS at least, a
 * multiple of every packed panel width): a chunk's forward computes the gate
 * columns of its units (each gate block, from those rows of W_hh) and their
 * fused pass; its backward the fused pass of its units and then its columns
 * of ∂L/∂h_{t−1} = δ_rec W_hh. Each chunk has its own packed slice of W_hh:
 * backward its columns, forward on the packed kernel its rows of each gate
 * block (engine_products.h), packed by the member that runs the chunk first,
 * which then usually keeps it in that core's cache across steps. The stacked
 * GEMMs before and after the loop run in fixed blocks: the input side in row ×
 * column blocks (on the row-dot kernel, rowdot.h, or from ENGINE_PACKED_ROWS
 * rows of batch on the packed kernel's fixed-order entry, after a phase that
 * packs W_ih; neither kernel's elements depend on the blocking), the
 * gradients in row blocks. */

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

/* Whether a call of this size runs on the team: its per-step recurrent
 * product is large enough (engine.h: in multiply-adds, or in multiply-adds
 * and the bytes of W_hh it streams), or it is one step (a streamed step,
 * fastbp/_step.py) whose whole product, the input side included, is
 * (FBP_ENGINE_STEP_TEAM_MIN_MACS, engine.h). */
static int FN(engine_use_team)(const FN(engine_ctx) *c, int G)
{
    if (c->chunks < 2) return 0;
    if (c->T == 1)
        return (int64_t)c->B * G * c->H * (c->H + c->I) >= FBP_ENGINE_STEP_TEAM_MIN_MACS;
    const int64_t macs = (int64_t)c->B * G * c->H * c->H;
    const int64_t weight_bytes = (int64_t)G * c->H * c->H * (int64_t)sizeof(REAL);
    return macs >= FBP_ENGINE_TEAM_MIN_MACS
           || (2 * macs >= FBP_ENGINE_TEAM_MIN_MACS
               && weight_bytes >= FBP_ENGINE_TEAM_MIN_WEIGHT_BYTES);
}

/* Units per chunk for hidden size H: ENGINE_UNITS, more when H is so large
 * that the chunks would pass FBP_TEAM_MAX_CHUNKS. */
static int FN(engine_units)(int H)
{
    int u = ENGINE_UNITS;
    while ((H + u - 1) / u > FBP_TEAM_MAX_CHUNKS) u += ENGINE_UNITS;
    return u;
}

/* Whether the forward's per-step products run on the packed kernel (engine_products.h):
 * fastbp's kernels, and a batch of ENGINE_PACKED_ROWS rows or more. */
static int FN(engine_forward_packs)(const FN(engine_ctx) *c)
{
    return c->pack != NULL && c->B >= ENGINE_PACKED_ROWS;
}

/* Elements of one chunk's packed slice: backward, its columns of W_hh (K =
 * GH, N = units); forward, the same number: its rows of each gate block
 * transposed, G panels of (K = H, N = units). */
static ptrdiff_t FN(engine_chunk_pack)(int H, int G, int units)
{
    return FN(fbp_pack_size)(G * H, units);
}

/* Rows per block of a stacked GEMM over `rows` rows (ENGINE_GEMM_ROWS at
 * least, ENGINE_GEMM_BLOCKS blocks at most), and the number of blocks. */
static int FN(engine_gemm_rows)(int rows)
{
    return fbp_block_size(rows, ENGINE_GEMM_ROWS, ENGINE_GEMM_BLOCKS);
}

static int FN(engine_gemm_blocks)(int rows)
{
    const int r = FN(engine_gemm_rows)(rows);
    return rows == 0 ? 0 : (rows + r - 1) / r;
}

/* Columns per block of the input side (GH columns over `rows` rows): all of
 * them, or when there are fewer than ENGINE_INPUT_TILES row blocks (a short
 * sequence, a step) enough column blocks to make that many tiles, so that
 * every member gets a share. */
#define ENGINE_INPUT_TILES 4
static int FN(engine_input_cols)(int rows, int GH)
{
    const int row_blocks = FN(engine_gemm_blocks)(rows);
    if (row_blocks == 0 || row_blocks >= ENGINE_INPUT_TILES) return GH;
    const int want = (ENGINE_INPUT_TILES + row_blocks - 1) / row_blocks;
    const int cols = ((GH + want - 1) / want + 11) / 12 * 12;   /* whole 4 × 3 tiles */
    return cols < GH ? cols : GH;
}

/* The input side on the packed kernel, in passes over the gate columns: per
 * pass, W_ih's panels for as many columns as the pack holds (G·H × H elements
 * and a little more: all of them when I ≤ H), packed in pieces of
 * ENGINE_PACK_PANELS panels, then X @ those columns in tiles of
 * ENGINE_INPUT_ROWS rows at least × ENGINE_INPUT_COLS columns (a tile's rows
 * of X stay in L1 and its panels in L2 while it runs). */
#define ENGINE_PACK_PANELS 8
#define ENGINE_INPUT_ROWS 32
#define ENGINE_INPUT_COLS 256
#define ENGINE_INPUT_COL_BLOCKS 16  /* column blocks of one pass at most */

/* Gate columns of one pass: whole panels, as many as the pack holds. */
static int FN(engine_input_pass_cols)(const FN(engine_ctx) *c, int GH)
{
    const int width = (int)FN(fbp_pack_size)(1, 1);
    const ptrdiff_t panels = (ptrdiff_t)c->chunks * c->pack_stride / FN(fbp_pack_size)(c->I, 1);
    return panels * width < GH ? (int)panels * width : GH;
}

/* Whether the input side runs on the packed kernel too (engine_body.h): when
 * the forward's per-step products do, one panel of W_ih (K = I) fits in a
 * chunk's slice of the pack, where a one-step call packs W_ih panel by panel,
 * and the whole sequence's call packs all of W_ih in ENGINE_INPUT_MAX_PASSES
 * passes at most (each pass reads X once more). The rule reads B, I, H and
 * the cell only, so a streamed step and the whole sequence choose alike. */
#define ENGINE_INPUT_MAX_PASSES 2
static int FN(engine_input_packs)(const FN(engine_ctx) *c, int GH)
{
    if (!FN(engine_forward_packs)(c) || c->I <= 0 || FN(fbp_pack_size)(c->I, 1) > c->pack_stride)
        return 0;
    const int cols = FN(engine_input_pass_cols)(c, GH);
    return (GH + cols - 1) / cols <= ENGINE_INPUT_MAX_PASSES;
}

/* Columns per tile of a pass of nc columns (whole panels), and rows per tile. */
static int FN(engine_input_tile_cols)(int nc)
{
    const int width = (int)FN(fbp_pack_size)(1, 1);
    int blocks = (nc + ENGINE_INPUT_COLS - 1) / ENGINE_INPUT_COLS;
    if (blocks > ENGINE_INPUT_COL_BLOCKS) blocks = ENGINE_INPUT_COL_BLOCKS;
    return ((nc + blocks - 1) / blocks + width - 1) / width * width;
}

static int FN(engine_input_tile_rows)(int M, int col_blocks)
{
    return fbp_block_size(M, ENGINE_INPUT_ROWS, FBP_TEAM_MAX_CHUNKS / col_blocks);
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
