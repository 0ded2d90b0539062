/* Matrix products whose every element is summed in one fixed order
 * (src_c/rowdot_body.h): the input side and the readout of the recurrent
 * models, and the forward recurrent product of the small-batch path. */
#ifndef FASTBP_ROWDOT_H
#define FASTBP_ROWDOT_H

/* C(M,N) (+)= A(M,K) @ W(N,K)ᵀ: lda, ldw, ldc row strides; accumulate adds
 * to C instead of overwriting it. Each C[i][j] depends on row i of A and row
 * j of W only, never on M, N or where the element falls. */
void fbp_rowdot_f(float *C, int ldc, const float *A, int lda, const float *W, int ldw, int M,
                  int N, int K, int accumulate);
void fbp_rowdot_d(double *C, int ldc, const double *A, int lda, const double *W, int ldw, int M,
                  int N, int K, int accumulate);

/* The same, on the thread team (team.h) when it is large enough to share,
 * in fixed tiles: the result is the same whoever computes a tile. */
void fbp_rowdot_team_f(float *C, int ldc, const float *A, int lda, const float *W, int ldw,
                       int M, int N, int K, int accumulate);
void fbp_rowdot_team_d(double *C, int ldc, const double *A, int lda, const double *W, int ldw,
                       int M, int N, int K, int accumulate);

#endif /* FASTBP_ROWDOT_H */
