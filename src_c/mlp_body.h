/* The MLP kernels (docs/equations.md §1–4), written once for REAL.
 * Included by mlp.c with REAL = float / double. Shapes are row-major; layer
 * sizes n_in = n_l, n_out = n_{l+1}; B is the batch. */

/* 1 when x(n) holds no NaN or ±inf: x − x is 0 exactly for finite x, NaN otherwise. */
int FN(fbp_all_finite)(const REAL *x, ptrdiff_t n)
{
    int ok = 1;
    for (ptrdiff_t i = 0; i < n; i++) ok &= (x[i] - x[i] == 0);
    return ok;
}

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

/* A(B,n) = Zt(n,B)ᵀ, in 16×16 tiles so both sides stay in cache lines. */
static void FN(transpose)(REAL *restrict A, const REAL *restrict Zt, ptrdiff_t B, ptrdiff_t n)
{
    enum { T = 16 };
    for (ptrdiff_t r0 = 0; r0 < B; r0 += T) {
        ptrdiff_t r1 = r0 + T < B ? r0 + T : B;
        for (ptrdiff_t j0 = 0; j0 < n; j0 += T) {
            ptrdiff_t j1 = j0 + T < n ? j0 + T : n;
            for (ptrdiff_t r = r0; r < r1; r++)
                for (ptrdiff_t j = j0; j < j1; j++) A[r * n + j] = Zt[j * B + r];
        }
    }
}

/* One dense layer forward: A(B,n_out) = f(A_prev(B,n_in) W(n_out,n_in)ᵀ + b).
 * Small batches run one GEMV per row: OpenBLAS's GEMM packs all of W first and
 * costs several GEMVs' time when B is a handful of rows. Medium batches compute
 * Zᵀ = W A_prevᵀ into `work` (n_out·B entries) and transpose it: with W as
 * BLAS's second operand OpenBLAS packs it more cheaply, ~30% faster at B = 32
 * (equal by B = 256). work may be NULL (plain GEMM). */
static int FN(dense_forward)(REAL *A, REAL *work, const REAL *A_prev, const REAL *W, const REAL *b,
                             int B, int n_in, int n_out, int act)
{
    int st = FBP_OK;
    if (B <= FBP_MLP_SMALL_BATCH) {
        for (int r = 0; r < B && !st; r++)   /* z_r(n_out) = W(n_out,n_in) @ a_prev_r(n_in) */
            st = FN(fbp_gemv)(A + (ptrdiff_t)r * n_out, W, n_in, A_prev + (ptrdiff_t)r * n_in,
                              n_out, n_in, 0, 1, 0);
    } else if (B <= FBP_MLP_TRANSPOSED_MAX_BATCH && work) {
        /* Zᵀ(n_out,B) = W(n_out,n_in) @ A_prev(B,n_in)ᵀ, then Z(B,n_out) = Zᵀᵀ */
        st = FN(fbp_gemm)(work, B, W, n_in, A_prev, n_in, n_out, B, n_in, 0, 1, 1, 0);
        if (!st) FN(transpose)(A, work, B, n_out);
    } else {      /* Z(B,n_out) = A_prev(B,n_in) @ W(n_out,n_in)ᵀ */
        st = FN(fbp_gemm)(A, n_out, A_prev, n_in, W, n_in, B, n_out, n_in, 0, 1, 1, 0);
    }
    if (st) return st;
    return FN(bias_activation)(A, b, B, n_out, act);
}

/* Small batches, one sweep over the rows of W and dW (no BLAS: a one-column
 * GEMM costs ~10 GEMVs here, GER needs a zeroed dW):
 *   dW[i,:] = l2 W[i,:] + Σ_r Δ[r,i] A_prev[r,:]        dW(n_out,n_in) = Δᵀ A_prev + l2 W
 *   dA_prev[r,:] += Δ[r,i] W[i,:]                        dA_prev(B,n_in) = Δ W, if dA_prev != NULL
 * Δ is (B,n_out), A_prev (B,n_in). A dead ReLU unit (Δ[r,i] = 0) is skipped:
 * without L2 a row of all-dead units is one zero fill and W's row is never read.
 * Bound by store bandwidth (it writes all of dW), hence the AVX2 clone; rows
 * are added in order, so the result is deterministic. */
FBP_STORE_BOUND
static void FN(dense_backward_row_sweep)(REAL *dW, REAL *dA_prev, const REAL *delta, const REAL *A_prev,
                                         const REAL *W, int B, int n_in, int n_out, REAL l2)
{
    if (dA_prev)
        memset(dA_prev, 0, (size_t)B * n_in * sizeof(REAL));
    for (ptrdiff_t i = 0; i < n_out; i++) {
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
            if (dA_prev) {
                REAL *restrict da = dA_prev + r * (ptrdiff_t)n_in;
                for (ptrdiff_t j = 0; j < n_in; j++) da[j] += d * w[j];
            }
        }
        if (!written) memset(row, 0, (size_t)n_in * sizeof(REAL));
    }
}

/* One dense layer backward from Δ(B,n_out):
 *   dW(n_out,n_in) = Δᵀ A_prev + l2 W          (overwritten)
 *   dA_prev(B,n_in) = Δ W                      (skipped when dA_prev is NULL) */
static int FN(dense_backward)(REAL *dW, REAL *dA_prev, const REAL *delta, const REAL *A_prev,
                              const REAL *W, int B, int n_in, int n_out, REAL l2)
{
    if (B <= FBP_MLP_SMALL_BATCH) {
        FN(dense_backward_row_sweep)(dW, dA_prev, delta, A_prev, W, B, n_in, n_out, l2);
        return FBP_OK;
    }
    REAL beta = 0;
    if (l2 != 0) {   /* dW = l2 W, then the GEMM accumulates onto it */
        ptrdiff_t n = (ptrdiff_t)n_out * n_in;
        for (ptrdiff_t i = 0; i < n; i++) dW[i] = l2 * W[i];
        beta = 1;
    }
    /* dW(n_out,n_in) = Δ(B,n_out)ᵀ @ A_prev(B,n_in) + beta dW */
    int st = FN(fbp_gemm)(dW, n_in, delta, n_out, A_prev, n_in, n_out, n_in, B, 1, 0, 1, beta);
    if (st || !dA_prev) return st;
    /* dA_prev(B,n_in) = Δ(B,n_out) @ W(n_out,n_in) */
    return FN(fbp_gemm)(dA_prev, n_in, delta, n_out, W, n_in, B, n_in, n_out, 0, 0, 1, 0);
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

int FN(fbp_mlp_forward)(REAL *const *A, REAL *work, const REAL *X, const REAL *const *W, const REAL *const *b,
                        const int *sizes, const int *acts, int n_layers, int batch)
{
    int st = FN(check_network)(sizes, acts, n_layers, batch);
    for (int l = 0; l < n_layers && !st; l++)
        st = FN(dense_forward)(A[l], work, l ? A[l - 1] : X, W[l], b[l], batch, sizes[l], sizes[l + 1], acts[l]);
    return st;
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
        || ((loss_code == FBP_MLP_XENT_PROBS || loss_code == FBP_MLP_SQUARED) && !target))
        return FBP_ERR_ARG;

    /* Forward. With cross-entropy the last layer keeps its logits Z^(L):
     * the softmax is fused into the loss and its gradient. */
    for (int l = 0; l < L; l++) {
        int act = (xent && l == L - 1) ? FBP_IDENTITY : acts[l];
        st = FN(dense_forward)(A[l], work, l ? A[l - 1] : X, W[l], b[l], B, sizes[l], sizes[l + 1], act);
        if (st) return st;
    }

    /* Loss and Δ^(L) = ∂L/∂Z^(L)(B,n_L), written over the output A[L−1]. */
    REAL *delta_out = A[L - 1];
    const int n_out = sizes[L];
    double data_loss = 0;
    switch (loss_code) {
    case FBP_MLP_XENT_LABELS:   /* Δ = scale (ŷ − onehot) */
        st = FN(fbp_softmax_xent_labels)(&data_loss, delta_out, delta_out, labels, B, n_out, scale);
        break;
    case FBP_MLP_XENT_PROBS:    /* Δ = scale (ŷ Σz − z) */
        st = FN(fbp_softmax_xent_probs)(&data_loss, delta_out, delta_out, target, B, n_out, scale);
        break;
    case FBP_MLP_SQUARED:
        data_loss = FN(squared_error_delta)(delta_out, target, B, n_out, acts[L - 1], scale);
        break;
    default:
        return FBP_ERR_ARG;
    }
    if (st) return st;
    FN(column_sum)(db[L - 1], delta_out, B, n_out);

    /* Backward, layer by layer; Δ of layer l sits in A[l]. The input gradient
     * of the first layer is not needed and never computed. */
    for (int l = L - 1; l >= 0; l--) {
        const REAL *A_prev = l ? A[l - 1] : X;
        /* dW^(l+1), and work(B,n_l) = ∂L/∂A^(l) = Δ^(l+1) W^(l+1) unless l is the input */
        st = FN(dense_backward)(dW[l], l ? work : NULL, A[l], A_prev, W[l], B, sizes[l], sizes[l + 1], (REAL)l2);
        if (st) return st;
        if (l == 0) break;
        /* Δ^(l) = ∂L/∂A^(l) ⊙ f'(A^(l)) over A[l−1], db fused */
        st = FN(activation_backward_bias)(A[l - 1], db[l - 1], work, B, sizes[l], acts[l - 1]);
        if (st) return st;
    }

    /* J = L + (l2/2) Σ ‖W‖² (docs/equations.md §3; biases not penalised) */
    double penalty = 0;
    if (l2 != 0) {
        for (int l = 0; l < L; l++) {
            ptrdiff_t n = (ptrdiff_t)sizes[l] * sizes[l + 1];
            const REAL *w = W[l];
            for (ptrdiff_t i = 0; i < n; i++) penalty += (double)w[i] * w[i];
        }
        penalty *= 0.5 * l2;
    }
    *loss = data_loss + penalty;
    return FBP_OK;
}
