/* fastbp: the multilayer perceptron, a whole training step in one call
 * (docs/equations.md §1–4).
 *
 * A network of L layers has sizes n_0 .. n_L (sizes[0..L]) and per layer
 * l = 0 .. L−1 (0-based here; layer l+1 of the equations):
 *   W[l]  (n_{l+1}, n_l)   row-major, PyTorch's nn.Linear layout
 *   b[l]  (n_{l+1})
 *   acts[l]                an enum fbp_activation code, applied to the output of layer l
 *   A[l]  (B, n_{l+1})     workspace: the layer's output A^(l+1); holds Δ^(l+1) after backward
 * X (B, n_0) is A^(0). `work` is scratch of B·max(n_1 .. n_L) entries: Zᵀ of a
 * layer in the forward pass, ∂L/∂A of a hidden layer in the backward pass.
 *
 * Every pointer array is built once per batch shape by the caller (fastbp/_mlp.pxi)
 * and every buffer is allocated by it: the kernels never allocate.
 *
 * Three paths by batch size (measured on OpenBLAS 0.3.30, 784-256-256-10):
 *   B <= 8    GEMV per row forward; backward one fused sweep over the rows of W
 *             and dW (outer products, no zero-fill; a one-column GEMM costs ~10
 *             GEMVs, and GEMM packs all of W for a handful of rows)
 *   B <= 128  forward GEMM computed transposed, Zᵀ = W A_prevᵀ, then transposed
 *             back (OpenBLAS packs W more cheaply as its second operand)
 *   larger    plain GEMMs.
 * Bias + activation is one pass over Z after its GEMM; Δ = dA ⊙ f'(A) and the
 * bias-gradient reduction are one pass; cross-entropy is fused with the softmax.
 */
#ifndef FASTBP_MLP_H
#define FASTBP_MLP_H

#include <stdint.h>
#include "fastbp.h"

/* How the loss reads the output layer. */
enum fbp_mlp_loss {
    FBP_MLP_XENT_LABELS = 1,   /* softmax cross-entropy, int64 labels (B,); output act must be softmax */
    FBP_MLP_XENT_PROBS = 2,    /* softmax cross-entropy, target distributions (B, n_L) */
    FBP_MLP_SQUARED = 3        /* scale · Σ (ŷ − y)² on the output A^(L) (any output activation) */
};

/* Forward only: A[l] = f_l(A[l−1] W[l]ᵀ + b[l]) for every layer; the network's
 * output is A[L−1] (B, n_L). work may be NULL (slower for medium batches). */
int fbp_mlp_forward_f(float *const *A, float *work, const float *X, const float *const *W, const float *const *b,
                      const int *sizes, const int *acts, int n_layers, int batch);
int fbp_mlp_forward_d(double *const *A, double *work, const double *X, const double *const *W, const double *const *b,
                      const int *sizes, const int *acts, int n_layers, int batch);

/* Forward + loss + backward, one call.
 *   *loss = data loss + (l2/2) Σ_l ‖W[l]‖²
 *   dW[l] (n_{l+1}, n_l) = Δ^(l+1)ᵀ A^(l) + l2 W[l]      (overwritten, not accumulated)
 *   db[l] (n_{l+1})      = Σ_rows Δ^(l+1)
 * Loss codes:
 *   FBP_MLP_XENT_LABELS  labels (B,) int64 in [0, n_L); scale·Σ −ln ŷ_label, Δ^(L) = scale (ŷ − onehot)
 *   FBP_MLP_XENT_PROBS   target (B, n_L);  scale·Σ −z ln ŷ,    Δ^(L) = scale (ŷ Σz − z)
 *   FBP_MLP_SQUARED      target (B, n_L);  scale·Σ (ŷ − y)²,   ∂L/∂ŷ = 2 scale (ŷ − y), then f_L'
 * scale is 1/B for a batch mean (1/(2·B·n_L) for the half-mean squared error).
 * Cross-entropy fuses the softmax into the loss: acts[L−1] must be FBP_SOFTMAX.
 * The unused one of labels/target may be NULL; work may not. dW/db never alias W/b.
 * On return A[l] holds Δ^(l+1), not the forward activations. */
int fbp_mlp_loss_grad_f(double *loss, float *const *dW, float *const *db, float *const *A, float *work,
                        const float *X, const int64_t *labels, const float *target,
                        const float *const *W, const float *const *b,
                        const int *sizes, const int *acts, int n_layers, int batch,
                        int loss_code, double scale, double l2);
int fbp_mlp_loss_grad_d(double *loss, double *const *dW, double *const *db, double *const *A, double *work,
                        const double *X, const int64_t *labels, const double *target,
                        const double *const *W, const double *const *b,
                        const int *sizes, const int *acts, int n_layers, int batch,
                        int loss_code, double scale, double l2);

#endif /* FASTBP_MLP_H */
