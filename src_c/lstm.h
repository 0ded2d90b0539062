/* LSTM forward and backpropagation through time (docs/equations.md §7, Graves' cell
 * with optional peepholes), torch.nn.LSTM's layout: the four gate blocks stack
 * in the order i, f, g, o along the 4H axis of W_ih (4H,I), W_hh (4H,H) and the
 * bias (4H). Sequences are time-major. One call runs a whole sequence; the time
 * loop is in C and allocates nothing: every buffer comes from the caller.
 *
 * Buffers (all row-major, C-contiguous), shown for the plain layout; with
 * variable lengths the T·B rows become seq.h's M slot rows:
 *   hs    (T+1, B, H)  hs[0] = h0, hs[t] = h_t. hs[:-1] is H_prev (T·B,H) for
 *                      dW_hh and hs[1:] is the output y, both without copies.
 *   cs    (T+1, B, H)  cs[0] = c0, cs[t] = c_t.
 *   gates (T, B, 4H)   the ACTIVATED gates [i_t, f_t, g_t, o_t]. The input GEMM
 *                      writes the pre-activations x_t W_ihᵀ there, the per-step
 *                      recurrent GEMM adds h_{t-1} W_hhᵀ, and the fused pass
 *                      overwrites them with the activations: no other buffer.
 * tanh(c_t) is not kept: backward recomputes it (saves T·B·H of memory).
 */
#ifndef FASTBP_LSTM_H
#define FASTBP_LSTM_H

#include "fastbp.h"
#include "seq.h"

/* Forward over a whole sequence. Row blocks follow seq.h's slot layout
 * (seq NULL: the plain (T,B,·) layout, every row active at every step).
 *   hs    (M+n_{T−1},H)  in: block 0 = h0;  out: block t+1 = h_t of step t
 *   cs    (M+n_{T−1},H)  in: block 0 = c0;  out: block t+1 = c_t
 *   gates (M,4H)     out: activated gates i, f, g, o (rows of ended rows: junk)
 *   work             fbp_seq_work_size(B, H, events, 2, 0) elements, or NULL
 *                    without reset events
 *   x     (M,I), W_ih (4H,I), W_hh (4H,H)
 *   bias  (4H)       b_ih + b_hh
 *   peep  (3,H)      rows p_i, p_f, p_o, or NULL for torch's cell without peepholes
 *   pack  workspace of fbp_lstm_pack_size(H) elements, or NULL (see below)
 *   seq   lengths (active rows per step) and reset events, or NULL */
int fbp_lstm_forward_f(float *hs, float *cs, float *gates, float *work,
                       const float *x, const float *W_ih, const float *W_hh,
                       const float *bias, const float *peep, float *pack,
                       const fbp_seq *seq, int T, int B, int I, int H);
int fbp_lstm_forward_d(double *hs, double *cs, double *gates, double *work,
                       const double *x, const double *W_ih, const double *W_hh,
                       const double *bias, const double *peep, double *pack,
                       const fbp_seq *seq, int T, int B, int I, int H);

/* Backward through time.
 *   dG    (M,4H)     out: δ_t = [δi, δf, δg, δo], the gradients of the gate
 *                    pre-activations (0 in the rows of ended rows)
 *   gates (M,4H)     the activated gates from the forward pass; may be dG
 *                    itself, which then saves a (M,4H) buffer (the gates are
 *                    consumed)
 *   dX    (M,I)      out (overwritten): ∂L/∂x_t; NULL to skip
 *   dW_ih (4H,I), dW_hh (4H,H), db (4H)      accumulated (+=)
 *   dpeep (3,H)      accumulated (+=) when peep is not NULL
 *   dh    (B,H)      in: ∂L/∂h at each row's last step (dh_n); out: ∂L/∂h_0
 *   dc    (B,H)      in: ∂L/∂c at each row's last step (dc_n); out: ∂L/∂c_0
 *   work             fbp_seq_work_size(B, H, events, 2, 1) elements, or NULL
 *                    without reset events
 *   dy    (M,H)      ∂L/∂h_t from above at every step, or NULL (all zero)
 *   hs, cs           from the forward pass; the rows of reset events are
 *                    swapped with h0/c0 during the call and put back
 *   x (M,I), W_ih (4H,I), W_hh (4H,H), peep (3,H) or NULL, pack, seq: as in forward */
int fbp_lstm_backward_f(float *dG, float *dX, float *dW_ih, float *dW_hh, float *db,
                        float *dpeep, float *dh, float *dc, float *work,
                        const float *gates, const float *dy, float *hs, float *cs,
                        const float *x, const float *W_ih, const float *W_hh,
                        const float *peep, float *pack, const fbp_seq *seq,
                        int T, int B, int I, int H);
int fbp_lstm_backward_d(double *dG, double *dX, double *dW_ih, double *dW_hh, double *db,
                        double *dpeep, double *dh, double *dc, double *work,
                        const double *gates, const double *dy, double *hs, double *cs,
                        const double *x, const double *W_ih, const double *W_hh,
                        const double *peep, double *pack, const fbp_seq *seq,
                        int T, int B, int I, int H);

/* Both directions of a bidirectional layer (or one, D = 1) in one call: the
 * functions above run for d = 0 .. D−1 on direction d's buffers, one after the
 * other, with the GIL released once. Direction 1 is the reverse direction: its
 * buffers hold the rows' steps in reverse order (seq.h's gather with reverse =
 * 1: step t of a row of length L is time L − 1 − t), so both directions share
 * the row order, the lengths and the slot layout; seq[1] carries the reset
 * events mirrored to the reverse order. Each array argument holds D pointers,
 * one per direction, with the meaning (and the NULL rules) of the single-
 * direction functions; work and pack are shared (used in turn). */
int fbp_lstm_forward_dirs_f(int D, float *const hs[], float *const cs[], float *const gates[],
                            float *work, const float *const x[], const float *const W_ih[],
                            const float *const W_hh[], const float *const bias[],
                            const float *const peep[], float *pack, const fbp_seq *const seq[],
                            int T, int B, int I, int H);
int fbp_lstm_forward_dirs_d(int D, double *const hs[], double *const cs[], double *const gates[],
                            double *work, const double *const x[], const double *const W_ih[],
                            const double *const W_hh[], const double *const bias[],
                            const double *const peep[], double *pack, const fbp_seq *const seq[],
                            int T, int B, int I, int H);
int fbp_lstm_backward_dirs_f(int D, float *const dG[], float *const dX[], float *const dW_ih[],
                             float *const dW_hh[], float *const db[], float *const dpeep[],
                             float *const dh[], float *const dc[], float *work,
                             const float *const gates[], const float *const dy[],
                             float *const hs[], float *const cs[], const float *const x[],
                             const float *const W_ih[], const float *const W_hh[],
                             const float *const peep[], float *pack, const fbp_seq *const seq[],
                             int T, int B, int I, int H);
int fbp_lstm_backward_dirs_d(int D, double *const dG[], double *const dX[], double *const dW_ih[],
                             double *const dW_hh[], double *const db[], double *const dpeep[],
                             double *const dh[], double *const dc[], double *work,
                             const double *const gates[], const double *const dy[],
                             double *const hs[], double *const cs[], const double *const x[],
                             const double *const W_ih[], const double *const W_hh[],
                             const double *const peep[], double *pack, const fbp_seq *const seq[],
                             int T, int B, int I, int H);

/* Elements of the `pack` workspace both functions take for hidden size H:
 * with it, the per-step recurrent products run on a copy of W_hh packed once
 * per call for fastbp's own register-blocked kernel; with NULL, through BLAS
 * (GEMM, or GEMV at batch 1). Results agree to rounding. */
ptrdiff_t fbp_lstm_pack_size_f(int H);
ptrdiff_t fbp_lstm_pack_size_d(int H);

/* Benchmark hook: the per-step recurrent products alone (see lstm_body.h). */
int fbp_lstm_step_products_f(float *gates, float *dh, const float *hs, const float *W_hh,
                             float *pack, int T, int B, int H);
int fbp_lstm_step_products_d(double *gates, double *dh, const double *hs, const double *W_hh,
                             double *pack, int T, int B, int H);

#endif /* FASTBP_LSTM_H */
