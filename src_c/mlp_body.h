/* The MLP kernels (docs/equations.md §1–4), written once for REAL.
 * Included by mlp.c with REAL = float / double. Shapes are row-major; layer
 * sizes n_in = n_l, n_out = n_{l+1}; B is the batch. */

/* A(B,n) = f(Z + b), in place over Z(B,n): the bias add fused into the
 * activation pass, one sweep over Z after the GEMM. */
static int FN(bias_activation)(REAL *Z, const REAL *restrict b, ptrdiff_t B, ptrdiff_t n, int act)
{
    for (ptrdiff_t r = 0; r < B; r++) {
        REAL *restrict z = Z + r * n;
        switch (act) {
        case FBP_IDENTITY:
            for (ptrdiff_t j = 0; j < n; j++) z[j] += b[j];
            break;
        case FBP_SIGMOID:
            for (ptrdiff_t j = 0; j < n; j++) z[j] = FN(fbp_sigmoid)(z[j] + b[j]);
            break;
        case FBP_TANH:
            for (ptrdiff_t j = 0; j < n; j++) z[j] = FN(fbp_tanh)(z[j] + b[j]);
            break;
        case FBP_RELU:   /* max(0, z); the kink maps to 0; NaN (from an overflow) passes through */
            for (ptrdiff_t j = 0; j < n; j++) {
                REAL v = z[j] + b[j];
                z[j] = v < 0 ? (REAL)0 : v;
            }
            break;
        case FBP_SOFTMAX: {   /* stable: subtract the row max before exp */
            REAL m = -INFINITY;
            for (ptrdiff_t j = 0; j < n; j++) {
                REAL v = z[j] + b[j];
                z[j] = v;
                m = v > m ? v : m;
            }
            REAL s = 0;
            for (ptrdiff_t j = 0; j < n; j++) { z[j] = FN(fbp_exp)(z[j] - m); s += z[j]; }
            REAL inv = (REAL)1 / s;
            for (ptrdiff_t j = 0; j < n; j++) z[j] *= inv;
            break;
        }
        default:
            return FBP_ERR_ARG;
        }
    }
    return FBP_OK;
}

/* Δ(B,n) = dA ⊙ f'(·) written from the forward output A and stored over A;
 * db(n) = Σ_rows Δ in the same sweep (rows added in order: deterministic).
 * Softmax hidden layers use the JVP Δ = a ⊙ (dA − ⟨dA, a⟩), never the Jacobian. */
static int FN(activation_backward_bias)(REAL *A, REAL *restrict db, const REAL *dA,
                                        ptrdiff_t B, ptrdiff_t n, int act)
{
    for (ptrdiff_t j = 0; j < n; j++) db[j] = 0;
    for (ptrdiff_t r = 0; r < B; r++) {
        REAL *restrict a = A + r * n;
        const REAL *restrict da = dA + r * n;
        switch (act) {
        case FBP_IDENTITY:
            for (ptrdiff_t j = 0; j < n; j++) { a[j] = da[j]; db[j] += da[j]; }
            break;
        case FBP_SIGMOID:   /* f' = a (1 − a) */
            for (ptrdiff_t j = 0; j < n; j++) {
                REAL d = da[j] * a[j] * ((REAL)1 - a[j]);
                a[j] = d;
                db[j] += d;
            }
            break;
        case FBP_TANH:      /* f' = 1 − a² */
            for (ptrdiff_t j = 0; j < n; j++) {
                REAL d = da[j] * ((REAL)1 - a[j] * a[j]);
                a[j] = d;
                db[j] += d;
            }
            break;
        case FBP_RELU:      /* f' = 1[z > 0] = 1[a > 0] */
            for (ptrdiff_t j = 0; j < n; j++) {
                REAL g = da[j];   /* loaded unconditionally, so the select vectorises */
                REAL d = a[j] > 0 ? g : (REAL)0;
                a[j] = d;
                db[j] += d;
            }
            break;
        case FBP_SOFTMAX: {
            REAL dot = 0;
            for (ptrdiff_t j = 0; j < n; j++) dot += da[j] * a[j];
            for (ptrdiff_t j = 0; j < n; j++) {
                REAL d = a[j] * (da[j] - dot);
                a[j] = d;
                db[j] += d;
            }
            break;
        }
        default:
            return FBP_ERR_ARG;
        }
    }
    return FBP_OK;
}

/* db(n) = Σ_rows D(B,n). */
static void FN(column_sum)(REAL *restrict db, const REAL *restrict D, ptrdiff_t B, ptrdiff_t n)
{
    for (ptrdiff_t j = 0; j < n; j++) db[j] = D[j];
    for (ptrdiff_t r = 1; r < B; r++)
        for (ptrdiff_t j = 0; j < n; j++) db[j] += D[r * n + j];
}

/* Squared error on the output Y_hat(B,n) against Y(B,n), and Δ^(L) over Y_hat:
 * returns scale · Σ (ŷ − y)²; Δ = (2 scale (ŷ − y)) ⊙ f'(ŷ) (softmax: the JVP). */
static double FN(squared_error_delta)(REAL *Y_hat, const REAL *Y, ptrdiff_t B, ptrdiff_t n,
                                      int act, double scale)
{
    const REAL two_scale = (REAL)(2 * scale);
    double total = 0;
    for (ptrdiff_t r = 0; r < B; r++) {
        REAL *restrict a = Y_hat + r * n;
        const REAL *restrict y = Y + r * n;
        for (ptrdiff_t j = 0; j < n; j++) {
            double diff = (double)a[j] - (double)y[j];
            total += diff * diff;
        }
        if (act == FBP_SOFTMAX) {
            /* dŷ = 2s(ŷ − y); Δ = ŷ ⊙ (dŷ − ⟨dŷ, ŷ⟩), dot first because Δ overwrites ŷ */
            REAL dot = 0;
            for (ptrdiff_t j = 0; j < n; j++) dot += two_scale * (a[j] - y[j]) * a[j];
            for (ptrdiff_t j = 0; j < n; j++) a[j] = a[j] * (two_scale * (a[j] - y[j]) - dot);
            continue;
        }
        /* ∂L/∂ŷ = 2s(ŷ − y), then ⊙ f'(ŷ) written from ŷ */
        switch (act) {
        case FBP_SIGMOID:
            for (ptrdiff_t j = 0; j < n; j++) a[j] = two_scale * (a[j] - y[j]) * (a[j] * ((REAL)1 - a[j]));
            break;
        case FBP_TANH:
            for (ptrdiff_t j = 0; j < n; j++) a[j] = two_scale * (a[j] - y[j]) * ((REAL)1 - a[j] * a[j]);
            break;
        case FBP_RELU:   /* ŷ = 0 on the flat side: its gradient is 0 */
            for (ptrdiff_t j = 0; j < n; j++) a[j] = a[j] > 0 ? two_scale * (a[j] - y[j]) : (REAL)0;
            break;
        default:         /* identity */
            for (ptrdiff_t j = 0; j < n; j++) a[j] = two_scale * (a[j] - y[j]);
            break;
        }
    }
    return scale * total;
}

/* A(B,n) = Zt(n,B)ᵀ with A's row stride lda, in 16×16 tiles so both sides
 * stay in cache lines. */
static void FN(transpose)(REAL *restrict A, ptrdiff_t lda, const REAL *restrict Zt, ptrdiff_t B,
                          ptrdiff_t n)
{
    enum { T = 16 };
    for (ptrdiff_t r0 = 0; r0 < B; r0 += T) {
        ptrdiff_t r1 = r0 + T < B ? r0 + T : B;
        for (ptrdiff_t j0 = 0; j0 < n; j0 += T) {
            ptrdiff_t j1 = j0 + T < n ? j0 + T : n;
            for (ptrdiff_t r = r0; r < r1; r++)
                for (ptrdiff_t j = j0; j < j1; j++) A[r * lda + j] = Zt[j * B + r];
        }
    }
}

/* The product of one dense layer forward, on its output columns [j0, j1):
 * Z(B, j0:j1) = A_prev(B,n_in) W(j0:j1,n_in)ᵀ into A (the bias and the
 * activation follow in one pass over all of Z). Small batches run one GEMV per
 * row: OpenBLAS's GEMM packs all of W first and costs several GEMVs' time when
 * B is a handful of rows. Medium batches compute Zᵀ = W A_prevᵀ into `work`
 * (n_out·B entries) and transpose it: with W as BLAS's second operand OpenBLAS
 * packs it more cheaply, ~30% faster at B = 32 (equal by B = 256). work may
 * be NULL (plain GEMM). */
static int FN(dense_forward_cols)(REAL *A, REAL *work, const REAL *A_prev, const REAL *W,
                                  int B, int n_in, int n_out, int j0, int j1)
{
    const int nj = j1 - j0;
    const REAL *Wj = W + (ptrdiff_t)j0 * n_in;
    int st = FBP_OK;
    if (B <= FBP_MLP_SMALL_BATCH) {
        for (int r = 0; r < B && !st; r++)   /* z_r(j0:j1) = W(j0:j1,n_in) @ a_prev_r(n_in) */
            st = FN(fbp_gemv)(A + (ptrdiff_t)r * n_out + j0, Wj, n_in,
                              A_prev + (ptrdiff_t)r * n_in, nj, n_in, 0, 1, 0);
    } else if (B <= FBP_MLP_TRANSPOSED_MAX_BATCH && work) {
        /* Zᵀ(j0:j1,B) = W(j0:j1,n_in) @ A_prev(B,n_in)ᵀ, then Z(B,j0:j1) = its transpose */
        REAL *Zt = work + (ptrdiff_t)j0 * B;
        st = FN(fbp_gemm)(Zt, B, Wj, n_in, A_prev, n_in, nj, B, n_in, 0, 1, 1, 0);
        if (!st) FN(transpose)(A + j0, n_out, Zt, B, nj);
    } else {      /* Z(B,j0:j1) = A_prev(B,n_in) @ W(j0:j1,n_in)ᵀ */
        st = FN(fbp_gemm)(A + j0, n_out, A_prev, n_in, Wj, n_in, B, nj, n_in, 0, 1, 1, 0);
    }
    return st;
}

/* Small batches, one sweep over rows [i0, i1) of W and dW (no BLAS: a
 * one-column GEMM costs ~10 GEMVs here, GER needs a zeroed dW):
 *   dW[i,:] = l2 W[i,:] + Σ_r Δ[r,i] A_prev[r,:]        dW(n_out,n_in) = Δᵀ A_prev + l2 W
 * Δ is (B,n_out), A_prev (B,n_in). A dead ReLU unit (Δ[r,i] = 0) is skipped:
 * without L2 a row of all-dead units is one zero fill. Bound by store
 * bandwidth (it writes all of dW), hence the AVX2 clone; rows are added in
 * order, so the result is deterministic. */
FBP_STORE_BOUND
static void FN(dense_backward_row_sweep)(REAL *dW, const REAL *delta, const REAL *A_prev,
                                         const REAL *W, int B, int n_in, int n_out, REAL l2,
                                         int i0, int i1)
{
    for (ptrdiff_t i = i0; i < i1; i++) {
        REAL *restrict row = dW + i * (ptrdiff_t)n_in;
        const REAL *restrict w = W + i * (ptrdiff_t)n_in;
        int written = 0;
        if (l2 != 0) {
            for (ptrdiff_t j = 0; j < n_in; j++) row[j] = l2 * w[j];
            written = 1;
        }
        for (ptrdiff_t r = 0; r < B; r++) {
            const REAL d = delta[r * (ptrdiff_t)n_out + i];
            if (d == 0) continue;
            const REAL *restrict a = A_prev + r * (ptrdiff_t)n_in;
            if (written) {
                for (ptrdiff_t j = 0; j < n_in; j++) row[j] += d * a[j];
            } else {
                for (ptrdiff_t j = 0; j < n_in; j++) row[j] = d * a[j];
                written = 1;
            }
        }
        if (!written) memset(row, 0, (size_t)n_in * sizeof(REAL));
    }
}

/* One dense layer's weight gradient on its rows [i0, i1):
 *   dW(i0:i1,n_in) = Δ(B,i0:i1)ᵀ A_prev + l2 W(i0:i1)      (overwritten) */
static int FN(dense_backward_dW)(REAL *dW, const REAL *delta, const REAL *A_prev, const REAL *W,
                                 int B, int n_in, int n_out, REAL l2, int i0, int i1)
{
    if (B <= FBP_MLP_SMALL_BATCH) {
        FN(dense_backward_row_sweep)(dW, delta, A_prev, W, B, n_in, n_out, l2, i0, i1);
        return FBP_OK;
    }
    REAL beta = 0;
    REAL *dWi = dW + (ptrdiff_t)i0 * n_in;
    if (l2 != 0) {   /* dW = l2 W, then the GEMM accumulates onto it */
        const ptrdiff_t n = (ptrdiff_t)(i1 - i0) * n_in;
        const REAL *Wi = W + (ptrdiff_t)i0 * n_in;
        for (ptrdiff_t i = 0; i < n; i++) dWi[i] = l2 * Wi[i];
        beta = 1;
    }
    /* dW(i0:i1,n_in) = Δ(B,i0:i1)ᵀ @ A_prev(B,n_in) + beta dW */
    return FN(fbp_gemm)(dWi, n_in, delta + i0, n_out, A_prev, n_in, i1 - i0, n_in, B, 1, 0, 1,
                        beta);
}

/* ∂L/∂A_prev on its columns [j0, j1): dA_prev(B,j0:j1) = Δ(B,n_out) @ W(n_out,j0:j1). */
static int FN(dense_backward_dA)(REAL *dA_prev, const REAL *delta, const REAL *W, int B, int n_in,
                                 int n_out, int j0, int j1)
{
    int st = FBP_OK;
    if (B <= FBP_MLP_SMALL_BATCH) {   /* per row: da(j0:j1) = W(n_out,j0:j1)ᵀ @ δ_r(n_out) */
        for (int r = 0; r < B && !st; r++)
            st = FN(fbp_gemv)(dA_prev + (ptrdiff_t)r * n_in + j0, W + j0, n_in,
                              delta + (ptrdiff_t)r * n_out, n_out, j1 - j0, 1, 1, 0);
        return st;
    }
    return FN(fbp_gemm)(dA_prev + j0, n_in, delta, n_out, W + j0, n_in, B, j1 - j0, n_out, 0, 0,
                        1, 0);
}

static int FN(check_network)(const int *sizes, const int *acts, int n_layers, int batch)
{
    if (n_layers < 1 || batch < 1) return FBP_ERR_ARG;
    for (int l = 0; l <= n_layers; l++)
        if (sizes[l] < 1) return FBP_ERR_ARG;
    for (int l = 0; l < n_layers; l++)
        if (acts[l] < FBP_IDENTITY || acts[l] > FBP_SOFTMAX) return FBP_ERR_ARG;
    return FBP_OK;
}

/* ---- a whole step on the thread team (team.h) -------------------------------------
 * Each layer's products run in column (or row) blocks whose boundaries depend
 * on the sizes only, the members claiming them; the passes over a whole layer
 * (bias and activation, the loss, the activation gradient, the penalty) are
 * one chunk each. So the results are the same for every team size. */
typedef struct {
    /* the call (see mlp.h) */
    REAL *const *A, *const *dW, *const *db;
    REAL *work;
    const REAL *X, *target, *const *W, *const *b;
    const int64_t *labels;
    const int *sizes, *acts;
    int L, B, loss_code, backward;
    double scale, l2;
    /* out */
    double data_loss, penalty;
    fbp_phases ph;
} FN(mlp_ctx);

/* Columns per block of an n-wide product: 64 at least, 16 blocks at most. */
static int FN(mlp_block)(int n)
{
    int w = 64;
    if ((n + w - 1) / w > 16) w = (n + 15) / 16;
    return w;
}

static int FN(mlp_blocks)(int n)
{
    const int w = FN(mlp_block)(n);
    return (n + w - 1) / w;
}

/* One chunk that a single member computes (a pass over a whole layer). */
#define MLP_SINGLE(c, s, body)                                                  \
    do {                                                                         \
        fbp_phase_begin(&s);                                                     \
        if (fbp_phase_next(&(c)->ph, &s, 1) >= 0) {                              \
            int st_ = (body);                                                    \
            if (st_) fbp_phase_fail(&(c)->ph, st_);                              \
            fbp_phase_done(&(c)->ph);                                            \
        }                                                                        \
        fbp_phase_end(&(c)->ph, &s, 1);                                          \
    } while (0)

static int FN(mlp_loss)(FN(mlp_ctx) *c)
{
    const int L = c->L, B = c->B, n_out = c->sizes[L];
    REAL *delta_out = c->A[L - 1];
    int st = FBP_OK;
    switch (c->loss_code) {
    case FBP_MLP_XENT_LABELS:   /* Δ = scale (ŷ − onehot) */
        st = FN(fbp_softmax_xent_labels)(&c->data_loss, delta_out, delta_out, c->labels, B, n_out,
                                         c->scale);
        break;
    case FBP_MLP_XENT_PROBS:    /* Δ = scale (ŷ Σz − z) */
        st = FN(fbp_softmax_xent_probs)(&c->data_loss, delta_out, delta_out, c->target, B, n_out,
                                        c->scale);
        break;
    default:                    /* FBP_MLP_SQUARED */
        c->data_loss = FN(squared_error_delta)(delta_out, c->target, B, n_out, c->acts[L - 1],
                                               c->scale);
        break;
    }
    if (!st) FN(column_sum)(c->db[L - 1], delta_out, B, n_out);
    return st;
}

/* J's penalty (l2/2) Σ ‖W‖² (docs/equations.md §3; biases not penalised). */
static int FN(mlp_penalty)(FN(mlp_ctx) *c)
{
    double penalty = 0;
    for (int l = 0; l < c->L; l++) {
        const ptrdiff_t n = (ptrdiff_t)c->sizes[l] * c->sizes[l + 1];
        const REAL *w = c->W[l];
        for (ptrdiff_t i = 0; i < n; i++) penalty += (double)w[i] * w[i];
    }
    c->penalty = 0.5 * c->l2 * penalty;
    return FBP_OK;
}

static void FN(mlp_member)(void *vctx, int member, int members)
{
    FN(mlp_ctx) *c = vctx;
    fbp_phase_state s = fbp_phase_start(member, members);
    const int L = c->L, B = c->B;
    const int xent = c->loss_code == FBP_MLP_XENT_LABELS || c->loss_code == FBP_MLP_XENT_PROBS;
    int k, st;
    /* Forward. With cross-entropy the last layer keeps its logits Z^(L): the
     * softmax is fused into the loss and its gradient. */
    for (int l = 0; l < L; l++) {
        const int n_in = c->sizes[l], n_out = c->sizes[l + 1], w = FN(mlp_block)(n_out);
        const int blocks = FN(mlp_blocks)(n_out);
        const REAL *A_prev = l ? c->A[l - 1] : c->X;
        fbp_phase_begin(&s);
        while ((k = fbp_phase_next(&c->ph, &s, blocks)) >= 0) {
            const int j0 = k * w, j1 = j0 + w < n_out ? j0 + w : n_out;
            if ((st = FN(dense_forward_cols)(c->A[l], c->work, A_prev, c->W[l], B, n_in, n_out,
                                             j0, j1)))
                fbp_phase_fail(&c->ph, st);
            fbp_phase_done(&c->ph);
        }
        fbp_phase_end(&c->ph, &s, blocks);
        const int act = (c->backward && xent && l == L - 1) ? FBP_IDENTITY : c->acts[l];
        MLP_SINGLE(c, s, FN(bias_activation)(c->A[l], c->b[l], B, n_out, act));
    }
    if (!c->backward) return;
    /* Loss and Δ^(L) = ∂L/∂Z^(L)(B,n_L), written over the output A[L−1]. */
    MLP_SINGLE(c, s, FN(mlp_loss)(c));
    /* Backward, layer by layer; Δ of layer l sits in A[l]. The input gradient
     * of the first layer is not needed and never computed. */
    for (int l = L - 1; l >= 0; l--) {
        const int n_in = c->sizes[l], n_out = c->sizes[l + 1];
        const REAL *A_prev = l ? c->A[l - 1] : c->X;
        /* dW^(l+1) in row blocks, and work(B,n_l) = ∂L/∂A^(l) = Δ^(l+1) W^(l+1) in
         * column blocks unless l is the input */
        const int wr = FN(mlp_block)(n_out), rows = FN(mlp_blocks)(n_out);
        const int wc = FN(mlp_block)(n_in), cols = l ? FN(mlp_blocks)(n_in) : 0;
        fbp_phase_begin(&s);
        while ((k = fbp_phase_next(&c->ph, &s, rows + cols)) >= 0) {
            if (k < rows) {
                const int i0 = k * wr, i1 = i0 + wr < n_out ? i0 + wr : n_out;
                st = FN(dense_backward_dW)(c->dW[l], c->A[l], A_prev, c->W[l], B, n_in, n_out,
                                           (REAL)c->l2, i0, i1);
            } else {
                const int j0 = (k - rows) * wc, j1 = j0 + wc < n_in ? j0 + wc : n_in;
                st = FN(dense_backward_dA)(c->work, c->A[l], c->W[l], B, n_in, n_out, j0, j1);
            }
            if (st) fbp_phase_fail(&c->ph, st);
            fbp_phase_done(&c->ph);
        }
        fbp_phase_end(&c->ph, &s, rows + cols);
        if (l == 0) break;
        /* Δ^(l) = ∂L/∂A^(l) ⊙ f'(A^(l)) over A[l−1], db fused */
        MLP_SINGLE(c, s, FN(activation_backward_bias)(c->A[l - 1], c->db[l - 1], c->work, B,
                                                      n_in, c->acts[l - 1]));
    }
    if (c->l2 != 0) MLP_SINGLE(c, s, FN(mlp_penalty)(c));
}

#undef MLP_SINGLE

/* Whether a step this size runs on the team: a layer's product big enough
 * that sharing it beats handing it over (speed only; same results). */
static int FN(mlp_use_team)(const int *sizes, int n_layers, int batch)
{
    for (int l = 0; l < n_layers; l++)
        if ((int64_t)batch * sizes[l] * sizes[l + 1] >= FBP_MLP_TEAM_MIN_MACS) return 1;
    return 0;
}

static int FN(mlp_run)(FN(mlp_ctx) *c)
{
    if (FN(mlp_use_team)(c->sizes, c->L, c->B)) fbp_team_run(FN(mlp_member), c);
    else FN(mlp_member)(c, 0, 1);
    return c->ph.status;
}

int FN(fbp_mlp_forward)(REAL *const *A, REAL *work, const REAL *X, const REAL *const *W, const REAL *const *b,
                        const int *sizes, const int *acts, int n_layers, int batch)
{
    int st = FN(check_network)(sizes, acts, n_layers, batch);
    if (st) return st;
    FN(mlp_ctx) c;
    memset(&c, 0, sizeof c);
    c.A = A; c.work = work; c.X = X; c.W = W; c.b = b; c.sizes = sizes; c.acts = acts;
    c.L = n_layers; c.B = batch;
    return FN(mlp_run)(&c);
}

int FN(fbp_mlp_loss_grad)(double *loss, REAL *const *dW, REAL *const *db, REAL *const *A, REAL *work,
                          const REAL *X, const int64_t *labels, const REAL *target,
                          const REAL *const *W, const REAL *const *b,
                          const int *sizes, const int *acts, int n_layers, int batch,
                          int loss_code, double scale, double l2)
{
    const int L = n_layers, B = batch;
    const int xent = loss_code == FBP_MLP_XENT_LABELS || loss_code == FBP_MLP_XENT_PROBS;
    int st = FN(check_network)(sizes, acts, L, B);
    if (st) return st;
    if ((xent && acts[L - 1] != FBP_SOFTMAX) || !work
        || (loss_code == FBP_MLP_XENT_LABELS && !labels)
        || ((loss_code == FBP_MLP_XENT_PROBS || loss_code == FBP_MLP_SQUARED) && !target)
        || (loss_code != FBP_MLP_XENT_LABELS && loss_code != FBP_MLP_XENT_PROBS
            && loss_code != FBP_MLP_SQUARED))
        return FBP_ERR_ARG;
    FN(mlp_ctx) c;
    memset(&c, 0, sizeof c);
    c.A = A; c.dW = dW; c.db = db; c.work = work; c.X = X; c.labels = labels; c.target = target;
    c.W = W; c.b = b; c.sizes = sizes; c.acts = acts; c.L = L; c.B = B;
    c.loss_code = loss_code; c.scale = scale; c.l2 = l2; c.backward = 1;
    st = FN(mlp_run)(&c);
    if (st) return st;
    *loss = c.data_loss + c.penalty;
    return FBP_OK;
}
