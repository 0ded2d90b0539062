/* Variable sequence lengths and per-row state resets, shared by every cell of
 * the recurrent engine (engine.h).
 *
 * Row order. Inside the kernels the batch rows are sorted by length, longest
 * first (the caller gathers them so, once per call), so the rows still active
 * at step t are always the first n_t: every per-step product and fused pass
 * runs on a contiguous prefix, and the work is proportional to the sum of the
 * lengths, not to T·B.
 *
 * Slot layout. Step t owns a block of m_t rows, m_0 = B and m_t = n_{t−1}:
 * its n_t active rows, then m_t − n_t rows of rows that ended at t − 1
 * (padding, zero where a stacked GEMM reads them). Block t starts at row
 *     s_t = m_0 + … + m_{t−1}          (s_0 = 0; M = s_T rows in all).
 * Inputs x, gate buffers and δ use it: (M, ·). The state buffer hs (and cs)
 * holds T + 1 blocks in the same positions: block t (m_t rows at s_t) is the
 * previous state of step t, i.e. h0 for t = 0 and h_{t−1} after, and block
 * t + 1 (m_{t+1} = n_t rows) is step t's output. Both alignments hold at once,
 * which is what lets dW_hh = Σ_t δ_tᵀ h_{t−1} stay ONE GEMM over M rows:
 *     dW_hh(gH,H) += Δ(M,gH)ᵀ @ hs[0:M](M,H).
 * Without lengths every n_t = B and this is the plain (T, B, ·) layout.
 * A row of length L ends in block L of hs: s_L + r.
 *
 * Resets. An event (t, r), t ≥ 1, r < n_t, starts row r's step t from the
 * initial state (hs/cs block 0, i.e. h0/c0 or zeros) instead of h_{t−1}: the
 * kernels substitute it for the duration of the step (and, in backward, of
 * the dW_hh GEMM), then put h_{t−1} back, so hs keeps every true output. No
 * gradient crosses an event: ∂L/∂h at the event goes to ∂L/∂h0 of the row.
 * Events are given as CSR over steps: rows reset_rows[reset_ptr[t] ..
 * reset_ptr[t+1]) at step t. */
#ifndef FASTBP_SEQ_H
#define FASTBP_SEQ_H

#include "fastbp.h"

typedef struct {
    const int *rows;        /* (T) n_t, non-increasing, 0 ≤ n_t ≤ B; NULL: every n_t = B */
    const int *reset_ptr;   /* (T+1) CSR offsets into reset_rows, or NULL: no resets */
    const int *reset_rows;  /* events' rows (sorted order), each < n_t, increasing per step */
} fbp_seq;

/* FBP_OK when the schedule is consistent for T steps of B rows, else FBP_ERR_ARG;
 * *events = number of reset events (0 without resets). */
int fbp_seq_check(const fbp_seq *seq, int T, int B, ptrdiff_t *events);

/* n_t and s_t of the layout above (seq NULL or seq->rows NULL: dense). */
static inline int fbp_seq_rows(const fbp_seq *seq, int t, int B)
{
    return seq && seq->rows ? seq->rows[t] : B;
}

/* m_t: the rows of block t (t = 0..T; m_0 = B). */
static inline int fbp_seq_block(const fbp_seq *seq, int t, int B)
{
    return t == 0 ? B : fbp_seq_rows(seq, t - 1, B);
}


/* Copy between the caller's (T, B, D) time-major layout, caller row order, and
 * the slot layout (rows sorted by length; order[r] is the caller's row of
 * sorted row r; lengths[r] its length, non-increasing). order NULL: the
 * identity; lengths NULL: every row has T steps (dense, without lengths).
 * The caller's array may be a column slice of a wider one: its row (t, b) starts
 * at element (t·B + b)·ldc (ldc ≥ D; D for a plain (T, B, D) array).
 * gather:  dst(slots,D) ← src(T,B,D) for active rows, 0 in the padding rows;
 *          block = 0: the (M,D) input layout; block = 1: the (·,D) layout of
 *          hs[1:] (step t at s_{t+1}).
 * scatter: dst(T,B,D) ← src slots (accumulate: +=), and, unless accumulating,
 *          zeros past each row's length.
 * reverse: step t of row r is the caller's time lengths[r] − 1 − t (the reverse
 *          direction of a bidirectional layer), else t. */
void fbp_seq_gather_f(float *dst, const float *src, ptrdiff_t ldc, const int *order,
                      const int *lengths, const fbp_seq *seq, int T, int B, int D, int block,
                      int reverse);
void fbp_seq_gather_d(double *dst, const double *src, ptrdiff_t ldc, const int *order,
                      const int *lengths, const fbp_seq *seq, int T, int B, int D, int block,
                      int reverse);
void fbp_seq_scatter_f(float *dst, ptrdiff_t ldc, const float *src, const int *order,
                       const int *lengths, const fbp_seq *seq, int T, int B, int D, int block,
                       int reverse, int accumulate);
void fbp_seq_scatter_d(double *dst, ptrdiff_t ldc, const double *src, const int *order,
                       const int *lengths, const fbp_seq *seq, int T, int B, int D, int block,
                       int reverse, int accumulate);


/* ---- reset events inside a step (used by the kernels) ----------------------
 * blk: a (·,H) state block whose rows ev[0..ne) are events; init: block 0.
 * swap_in:  save[k] = blk[ev[k]], blk[ev[k]] = init[ev[k]]
 * restore:  blk[ev[k]] = save[k]
 * divert:   acc[ev[k]] += g[ev[k]], g[ev[k]] = 0   (a gradient that must not
 *           cross the event goes to ∂L/∂(initial state) instead) */
void fbp_seq_swap_in_f(float *blk, float *save, const float *init, const int *ev, int ne, int H);
void fbp_seq_swap_in_d(double *blk, double *save, const double *init, const int *ev, int ne, int H);
void fbp_seq_restore_f(float *blk, const float *save, const int *ev, int ne, int H);
void fbp_seq_restore_d(double *blk, const double *save, const int *ev, int ne, int H);
void fbp_seq_divert_f(float *acc, float *g, const int *ev, int ne, int H);
void fbp_seq_divert_d(double *acc, double *g, const int *ev, int ne, int H);

/* Every event of the sequence at once, around a backward pass's dW_hh GEMM:
 * in = 1 swaps h0 into each event's row of hs (block t, the previous state of
 * step t), saving h_{t−1} in save (events,H); in = 0 puts them back. */
void fbp_seq_swap_all_f(float *hs, float *save, const fbp_seq *seq, int T, int B, int H, int in);
void fbp_seq_swap_all_d(double *hs, double *save, const fbp_seq *seq, int T, int B, int H, int in);

/* The events of step t: *ev = their rows, returns their number. */
static inline int fbp_seq_events(const fbp_seq *seq, int t, const int **ev)
{
    if (!seq || !seq->reset_ptr) { *ev = NULL; return 0; }
    *ev = seq->reset_rows + seq->reset_ptr[t];
    return seq->reset_ptr[t + 1] - seq->reset_ptr[t];
}

#endif /* FASTBP_SEQ_H */
