/* Activations, their derivatives and the losses, written once for REAL.
 * Included by elementwise.c with REAL = float / double. */

/* a(rows,cols) = f(z); a may alias z. */
FBP_HOT int FN(fbp_activation_forward)(REAL *a, const REAL *z, ptrdiff_t rows, ptrdiff_t cols, int act)
{
    ptrdiff_t n = rows * cols;
    switch (act) {
    case FBP_IDENTITY:
        if (a != z) memmove(a, z, (size_t)n * sizeof(REAL));
        return FBP_OK;
    case FBP_SIGMOID:
        for (ptrdiff_t i = 0; i < n; i++) a[i] = FN(fbp_sigmoid)(z[i]);
        return FBP_OK;
    case FBP_TANH:
        for (ptrdiff_t i = 0; i < n; i++) a[i] = FN(fbp_tanh)(z[i]);
        return FBP_OK;
    case FBP_RELU:
        /* written as "z < 0 ? 0 : z" so that NaN passes through, as in np.maximum */
        for (ptrdiff_t i = 0; i < n; i++) a[i] = z[i] < 0 ? (REAL)0 : z[i];
        return FBP_OK;
    case FBP_SOFTMAX:
        for (ptrdiff_t r = 0; r < rows; r++) {
            const REAL *zr = z + r * cols;
            REAL *ar = a + r * cols;
            REAL m = -INFINITY;
            for (ptrdiff_t j = 0; j < cols; j++) m = zr[j] > m ? zr[j] : m;
            REAL s = 0;
            for (ptrdiff_t j = 0; j < cols; j++) { ar[j] = FN(fbp_exp)(zr[j] - m); s += ar[j]; }
            REAL inv = (REAL)1 / s;
            for (ptrdiff_t j = 0; j < cols; j++) ar[j] *= inv;
        }
        return FBP_OK;
    default:
        return FBP_ERR_ARG;
    }
}

/* dz(rows,cols) = da ⊙ f'(z), f' written from the forward output a; dz may alias da. */
FBP_HOT int FN(fbp_activation_backward)(REAL *dz, const REAL *a, const REAL *da, ptrdiff_t rows, ptrdiff_t cols, int act)
{
    ptrdiff_t n = rows * cols;
    switch (act) {
    case FBP_IDENTITY:
        if (dz != da) memmove(dz, da, (size_t)n * sizeof(REAL));
        return FBP_OK;
    case FBP_SIGMOID:
        for (ptrdiff_t i = 0; i < n; i++) dz[i] = da[i] * a[i] * ((REAL)1 - a[i]);
        return FBP_OK;
    case FBP_TANH:
        for (ptrdiff_t i = 0; i < n; i++) dz[i] = da[i] * ((REAL)1 - a[i] * a[i]);
        return FBP_OK;
    case FBP_RELU:   /* 1[z > 0] = 1[a > 0]; 0 at the kink, as in the notes */
        for (ptrdiff_t i = 0; i < n; i++) dz[i] = a[i] > 0 ? da[i] : (REAL)0;
        return FBP_OK;
    case FBP_SOFTMAX:   /* JVP: dz = a ⊙ (da − ⟨da, a⟩), never the Jacobian */
        for (ptrdiff_t r = 0; r < rows; r++) {
            const REAL *ar = a + r * cols, *dar = da + r * cols;
            REAL *dzr = dz + r * cols;
            REAL dot = 0;
            for (ptrdiff_t j = 0; j < cols; j++) dot += dar[j] * ar[j];
            for (ptrdiff_t j = 0; j < cols; j++) dzr[j] = ar[j] * (dar[j] - dot);
        }
        return FBP_OK;
    default:
        return FBP_ERR_ARG;
    }
}

/* The row max of x(cols). */
static REAL FN(row_max)(const REAL *x, ptrdiff_t cols)
{
    REAL m = -INFINITY;
    for (ptrdiff_t j = 0; j < cols; j++) m = x[j] > m ? x[j] : m;
    return m;
}

/* ln Σ exp(x − m) for the row max m, leaving exp(x − m) in e (cols) when e is
 * not NULL (e may alias x). The log-sum-exp is m + this, but the callers
 * subtract x_k from m first: (m − x_k) + ln Σ keeps the ln Σ ∈ [0, ln cols]
 * term whole for logits of any size, where (m + ln Σ) − x_k loses it to
 * rounding once |m| ≫ 1e15. */
static double FN(row_log_sum_exp)(REAL *e, const REAL *x, REAL m, ptrdiff_t cols)
{
    double s = 0;
    for (ptrdiff_t j = 0; j < cols; j++) {
        REAL ej = FN(fbp_exp)(x[j] - m);
        if (e) e[j] = ej;
        s += ej;
    }
    return log(s);
}

/* Turns d = exp(x − max) into scale · (softmax(x) · mass − target_part); the
 * caller subtracts the target's share afterwards. */
static void FN(scale_to_softmax)(REAL *d, ptrdiff_t cols, double scale)
{
    double norm = 0;
    for (ptrdiff_t j = 0; j < cols; j++) norm += d[j];
    REAL c = (REAL)(scale / norm);
    for (ptrdiff_t j = 0; j < cols; j++) d[j] *= c;
}

int FN(fbp_softmax_xent_labels)(double *loss, REAL *dlogits, const REAL *logits, const int64_t *labels,
                                ptrdiff_t rows, ptrdiff_t cols, double scale)
{
    for (ptrdiff_t r = 0; r < rows; r++)
        if (labels[r] < 0 || labels[r] >= cols) return FBP_ERR_LABEL;
    double total = 0;
    for (ptrdiff_t r = 0; r < rows; r++) {
        /* each label is read once and checked again where it is used: the
         * labels are the caller layer's own copy, and an index stays in bounds
         * even if that promise were broken */
        const int64_t k = labels[r];
        if (k < 0 || k >= cols) return FBP_ERR_LABEL;
        const REAL *x = logits + r * cols;
        REAL *d = dlogits ? dlogits + r * cols : NULL;
        REAL m = FN(row_max)(x, cols);
        double gap = (double)m - (double)x[k];   /* read before d may overwrite x */
        total += gap + FN(row_log_sum_exp)(d, x, m, cols);
        if (d) {   /* ∂L/∂a = scale (ŷ − z) */
            FN(scale_to_softmax)(d, cols, scale);
            d[k] -= (REAL)scale;
        }
    }
    *loss = scale * total;
    return FBP_OK;
}

int FN(fbp_softmax_xent_probs)(double *loss, REAL *dlogits, const REAL *logits, const REAL *target,
                               ptrdiff_t rows, ptrdiff_t cols, double scale)
{
    double total = 0;
    for (ptrdiff_t r = 0; r < rows; r++) {
        const REAL *x = logits + r * cols, *z = target + r * cols;
        REAL *d = dlogits ? dlogits + r * cols : NULL;
        /* −Σ z ln ŷ = Σ z (m − x) + Σz · ln Σ exp(x − m); read x before d may overwrite it */
        REAL m = FN(row_max)(x, cols);
        double mass = 0, zgap = 0;
        for (ptrdiff_t j = 0; j < cols; j++) {
            mass += z[j];
            zgap += (double)z[j] * ((double)m - (double)x[j]);
        }
        total += zgap + mass * FN(row_log_sum_exp)(d, x, m, cols);
        if (d) {   /* ∂L/∂a = scale (ŷ Σz − z) */
            FN(scale_to_softmax)(d, cols, scale * mass);
            for (ptrdiff_t j = 0; j < cols; j++) d[j] -= (REAL)scale * z[j];
        }
    }
    *loss = scale * total;
    return FBP_OK;
}

int FN(fbp_squared_error)(double *loss, REAL *dpred, const REAL *pred, const REAL *target,
                          ptrdiff_t rows, ptrdiff_t cols, double scale)
{
    ptrdiff_t n = rows * cols;
    double total = 0;
    REAL two_scale = (REAL)(2 * scale);
    for (ptrdiff_t i = 0; i < n; i++) {
        REAL diff = pred[i] - target[i];
        total += (double)diff * diff;
        if (dpred) dpred[i] = two_scale * diff;   /* ∂L/∂ŷ = −2 (y − ŷ), scaled */
    }
    *loss = scale * total;
    return FBP_OK;
}
