/* Recurrent products on a weight packed once per sequence (src_c/packed.c),
 * shared by the Elman RNN and LSTM time loops. */
#ifndef FASTBP_PACKED_H
#define FASTBP_PACKED_H

#include <stddef.h>

/* Elements of the panels of op(W)(K,N). */
ptrdiff_t fbp_pack_size_f(int K, int N);
ptrdiff_t fbp_pack_size_d(int K, int N);

/* P(fbp_pack_size(K,N)) = the panels of op(W)(K,N): Wᵀ of a row-major W(N,K)
 * when transposed, else W(K,N) itself; ldw: W's row stride (K, resp. N, for a
 * whole matrix; more for a slice of a wider one). */
void fbp_pack_f(float *P, const float *W, int ldw, int K, int N, int transposed);
void fbp_pack_d(double *P, const double *W, int ldw, int K, int N, int transposed);

/* C(M,N) (+)= A(M,K) @ op(W)(K,N), op(W) packed by fbp_pack; lda, ldc row
 * strides; accumulate adds to C instead of overwriting it. */
void fbp_gemm_packed_f(float *C, int ldc, const float *A, int lda, const float *P,
                       int M, int N, int K, int accumulate);
void fbp_gemm_packed_d(double *C, int ldc, const double *A, int lda, const double *P,
                       int M, int N, int K, int accumulate);

/* The same with every element summed in one order, one FMA chain over k from
 * zero, whatever M or the tile it falls in (fbp_gemm_packed runs a lone row
 * on a faster split-k kernel): a row's result does not depend on how many
 * rows share the call, which the engine's forward needs (engine_products.h). */
void fbp_gemm_packed_fixed_f(float *C, int ldc, const float *A, int lda, const float *P,
                             int M, int N, int K, int accumulate);
void fbp_gemm_packed_fixed_d(double *C, int ldc, const double *A, int lda, const double *P,
                             int M, int N, int K, int accumulate);

#endif /* FASTBP_PACKED_H */
