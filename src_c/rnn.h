/* fastbp: Elman RNN forward and backpropagation through time (docs/equations.md §6).
 *
 * Layout of torch.nn.RNN (one layer, one direction), time-major, row-major:
 *     a_t = x_t W_ihᵀ + h_{t−1} W_hhᵀ + b_ih + b_hh,    h_t = φ(a_t)
 * φ is FBP_IDENTITY, FBP_TANH or FBP_RELU (fastbp.h).
 *
 * State buffer hs(T+1,B,H): hs[0] = h0, hs[t] = h_t. So the previous states of
 * every step are hs[0..T−1], one contiguous (T·B,H) block, and the outputs are
 * hs[1..T]: neither is ever copied.
 *
 * Each kernel runs the whole sequence in one call (the time loop is here, with
 * no allocation: every buffer comes from the caller). Sizes are ints because
 * they go to 32-bit BLAS; the caller guarantees T·B·max(I,H) fits.
 */
#ifndef FASTBP_RNN_H
#define FASTBP_RNN_H

#include "fastbp.h"
#include "seq.h"

/* Forward over the whole sequence. Row blocks follow seq.h's slot layout
 * (seq NULL: the plain (T,B,·) layout below, every row active at every step).
 *   hs(T+1,B,H): in: hs[0] = h0; out: hs[1..T] = h_1..h_T.
 *      (slot layout: (M+n_{T−1},H), block 0 = h0, block t+1 = h_t)
 *   pre(M,H): the input side x_t W_ihᵀ, or NULL to keep it in hs[1..T] until
 *      each step overwrites it (only without lengths: the blocks differ then).
 *   work: fbp_seq_work_size(B, H, events, 1, 0) elements, NULL without resets.
 *   x(T,B,I) (slot layout (M,I)), W_ih(H,I), W_hh(H,H), b_ih(H), b_hh(H);
 *   act ∈ {IDENTITY, TANH, RELU}.
 *   pack: workspace of fbp_rnn_pack_size(H) elements to run the recurrent
 *         products on a packed copy of the weight (fastbp's own kernel), or
 *         NULL to run them through BLAS (GEMV for one row, GEMM otherwise).
 *   seq: lengths (active rows per step) and reset events, or NULL. */
int fbp_rnn_forward_f(float *hs, float *pre, float *work, const float *x, const float *W_ih,
                      const float *W_hh, const float *b_ih, const float *b_hh, float *pack,
                      const fbp_seq *seq, int T, int B, int I, int H, int act);
int fbp_rnn_forward_d(double *hs, double *pre, double *work, const double *x, const double *W_ih,
                      const double *W_hh, const double *b_ih, const double *b_hh, double *pack,
                      const fbp_seq *seq, int T, int B, int I, int H, int act);

/* BPTT over the whole sequence, from the forward's hs (slot layout: M rows for
 * the (T·B) ones).
 *   dx(T,B,I)    out (overwritten), or NULL when the input gradient is not wanted
 *   dh0(B,H)     out (overwritten): ∂L/∂h_0
 *   dW_ih(H,I), dW_hh(H,H), db(H): ACCUMULATED (+=): pass zeros for a plain gradient;
 *                db is ∂L/∂b_ih = ∂L/∂b_hh
 *   delta(T,B,H) workspace; out: δ_t = ∂L/∂a_t (0 in the rows of ended rows)
 *   work         fbp_seq_work_size(B, H, events, 1, 1) elements, NULL without resets
 *   dy(T,B,H)    ∂L/∂h_t from above (the readout), or NULL for zeros
 *   dh_n(B,H)    extra ∂L/∂h at each row's last step (a carried final state), or NULL
 *   hs           from the forward; the rows of reset events are swapped with
 *                h0 during the call and put back
 *   x(T,B,I), W_ih(H,I), W_hh(H,H), pack, seq as for the forward. */
int fbp_rnn_backward_f(float *dx, float *dh0, float *dW_ih, float *dW_hh, float *db, float *delta,
                       float *work, const float *dy, const float *dh_n, float *hs, const float *x,
                       const float *W_ih, const float *W_hh, float *pack, const fbp_seq *seq,
                       int T, int B, int I, int H, int act);
int fbp_rnn_backward_d(double *dx, double *dh0, double *dW_ih, double *dW_hh, double *db,
                       double *delta, double *work, const double *dy, const double *dh_n,
                       double *hs, const double *x, const double *W_ih, const double *W_hh,
                       double *pack, const fbp_seq *seq, int T, int B, int I, int H, int act);

/* Both directions of a bidirectional layer (or one, D = 1) in one call: the
 * functions above for d = 0 .. D−1 on direction d's buffers in turn, the GIL
 * released once. Direction 1 is the reverse direction, its buffers holding
 * each row's steps in reverse order (seq.h's gather with reverse = 1), so both
 * share the row order, lengths and slot layout; seq[1] carries the reset
 * events mirrored to the reverse order. Array arguments hold D pointers, with
 * the single-direction functions' meanings and NULL rules; work and pack are
 * shared (used in turn). */
int fbp_rnn_forward_dirs_f(int D, float *const hs[], float *const pre[], float *work,
                           const float *const x[], const float *const W_ih[],
                           const float *const W_hh[], const float *const b_ih[],
                           const float *const b_hh[], float *pack, const fbp_seq *const seq[],
                           int T, int B, int I, int H, int act);
int fbp_rnn_forward_dirs_d(int D, double *const hs[], double *const pre[], double *work,
                           const double *const x[], const double *const W_ih[],
                           const double *const W_hh[], const double *const b_ih[],
                           const double *const b_hh[], double *pack, const fbp_seq *const seq[],
                           int T, int B, int I, int H, int act);
int fbp_rnn_backward_dirs_f(int D, float *const dx[], float *const dh0[], float *const dW_ih[],
                            float *const dW_hh[], float *const db[], float *const delta[],
                            float *work, const float *const dy[], const float *const dh_n[],
                            float *const hs[], const float *const x[], const float *const W_ih[],
                            const float *const W_hh[], float *pack, const fbp_seq *const seq[],
                            int T, int B, int I, int H, int act);
int fbp_rnn_backward_dirs_d(int D, double *const dx[], double *const dh0[], double *const dW_ih[],
                            double *const dW_hh[], double *const db[], double *const delta[],
                            double *work, const double *const dy[], const double *const dh_n[],
                            double *const hs[], const double *const x[],
                            const double *const W_ih[], const double *const W_hh[], double *pack,
                            const fbp_seq *const seq[], int T, int B, int I, int H, int act);

/* Elements of the `pack` workspace for hidden size H. */
ptrdiff_t fbp_rnn_pack_size_f(int H);
ptrdiff_t fbp_rnn_pack_size_d(int H);

#endif /* FASTBP_RNN_H */
