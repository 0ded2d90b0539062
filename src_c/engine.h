/* fastbp: the recurrent engine. One time loop, forward and BPTT, for every
 * cell (docs/design.md "The recurrent engine"; the cells' math is
 * docs/equations.md §6 RNN, §7 LSTM, §8 GRU).
 *
 * A call runs one layer over a whole sequence in one or two directions, with
 * variable lengths and reset events (seq.h's slot layout), the per-step
 * recurrent products on fastbp's kernels (forward: rowdot.h below 8 rows of
 * batch, packed.h from 8, for the input side as for the recurrent product;
 * backward: packed.h) or through BLAS. It
 * allocates nothing: every buffer comes from the caller, named in the structs
 * below. The loop is in engine_body.h, written once; a cell (cell_rnn.h,
 * cell_lstm.h, cell_gru.h) supplies only its constants and two fused row
 * passes.
 *
 * Layout (torch.nn.RNN/LSTM/GRU, one layer and direction): G gate blocks of H
 * stacked along the first axis of W_ih (G·H, I), W_hh (G·H, H), b_ih and
 * b_hh (G·H). Rows are time-major; M is seq.h's number of slot rows (T·B
 * without lengths). Pointers are void so that one struct serves float and
 * double: the dtype is in the function's suffix (_f, _d), and the Cython layer
 * checks every array's dtype, shape and contiguity before it calls.
 */
#ifndef FASTBP_ENGINE_H
#define FASTBP_ENGINE_H

#include "fastbp.h"
#include "seq.h"

#define FBP_MAX_STATES 2        /* h, and the LSTM's c */
/* Multiply-adds of one step's recurrent product (B·G·H²) below which a call
 * runs on its caller alone, not on the thread team (team.h): the per-step
 * hand-over between cores costs about a microsecond, more than sharing saves.
 * Speed only: the results are the same either way. */
#define FBP_ENGINE_TEAM_MIN_MACS (1 << 17)
/* From half that, a call runs on the team when W_hh has this many bytes or
 * more: then each step streams the weight from L2 or L3 at a few rows of h
 * (batch 1), bound by the bandwidth, and each core's half takes half the
 * time. A smaller weight stays in L1/L2 and is reused across the batch's
 * rows, and the hand-over costs more than sharing saves. Measured, float32,
 * T = 100, B = 1, training step in ms, one alternative run after the other
 * (AVX2 EPYC, 512 KiB L2 per core): RNN H = 256 (256 KiB) 1.50-1.56 before,
 * 1.04-1.34 after; LSTM H = 128 1.80-1.90 against 1.20-1.45; float64 LSTM
 * H = 128 5.1-5.3 against 4.0-4.4. Left alone: the RNN at H = 128, B = 4
 * and the LSTM at H = 64, B = 4 (64 KiB, 2^16 multiply-adds), which ran
 * slower on two threads. */
#define FBP_ENGINE_TEAM_MIN_WEIGHT_BYTES (1 << 18)
/* The same for a call of one step (a streamed step), counting its input side:
 * one hand-over per call. From 2^16 (256 KiB of float32 weights, half a
 * core's L2 on the AVX2 EPYC measured) each core's half stays in its L2 from
 * step to step, which wins the hand-over back: B = 1, float32, µs per
 * model.step on one thread and two: RNN I=128 H=384 (2^16) 9.7 and 7.9, GRU
 * I=H=128 13.6 and 10.0, RNN I=H=256 17.2 and 13.7, GRU I=H=256 41 and 26. */
#define FBP_ENGINE_STEP_TEAM_MIN_MACS (1 << 16)

enum fbp_cell_kind {
    FBP_CELL_RNN = 0,           /* Elman: h' = φ(W_ih x + b_ih + W_hh h + b_hh) */
    FBP_CELL_LSTM = 1,          /* gates i, f, g, o; optional peepholes */
    FBP_CELL_GRU = 2            /* gates r, z, n; the n block's recurrent side kept apart */
};

typedef struct {
    int kind;                   /* fbp_cell_kind */
    int act;                    /* the RNN's φ: FBP_IDENTITY, FBP_TANH or FBP_RELU; 0 otherwise */
} fbp_cell;

/* What the engine needs to know about a cell, for buffer sizes. */
typedef struct {
    int gates;                  /* G: gate blocks of H in W_ih, W_hh, the biases */
    int states;                 /* S: state arrays (h; h and c) */
    int saved;                  /* width of the gates buffer in units of H (0: the RNN
                                   keeps nothing besides h_t and may stage in hs) */
    int separate;               /* 1: the recurrent product h W_hhᵀ stays apart from the
                                   input side (the GRU), so backward has two gate gradients */
} fbp_cell_info;

/* FBP_OK and *info filled, or FBP_ERR_ARG for an unknown kind or RNN act. */
int fbp_cell_describe(fbp_cell cell, fbp_cell_info *info);

typedef struct {
    int T, B, I, H;             /* steps, batch rows, inputs, hidden units */
} fbp_dims;

/* One direction's parameters (read only). */
typedef struct {
    const void *W_ih;           /* (G·H, I); may be NULL when I = 0 */
    const void *W_hh;           /* (G·H, H) */
    const void *b_ih;           /* (G·H) */
    const void *b_hh;           /* (G·H) */
    const void *peep;           /* LSTM: (3, H) peepholes p_i, p_f, p_o, or NULL */
} fbp_weights;

/* Their gradients, ACCUMULATED (+=): pass zeros for a plain gradient. */
typedef struct {
    void *W_ih;                 /* (G·H, I); unused when I = 0 */
    void *W_hh;                 /* (G·H, H) */
    void *b_ih;                 /* (G·H) */
    void *b_hh;                 /* (G·H) separate cells only; for the others ∂L/∂b_hh =
                                   ∂L/∂b_ih and this is not touched (may be NULL) */
    void *peep;                 /* (3, H) when the weights have peepholes */
} fbp_weight_grads;

/* One direction's forward buffers, kept for its backward. */
typedef struct {
    const void *x;              /* (M, I) input rows, slot layout; NULL when I = 0 */
    void *state[FBP_MAX_STATES];/* (M + n_{T−1}, H) each: block 0 the initial state (in),
                                   block t+1 the state after step t (out); h first */
    void *gates;                /* (M, saved·H): the input side x W_ihᵀ goes here first
                                   and the forward leaves what backward reads (the
                                   activated gates). RNN: (M, H) or NULL, which stages
                                   the input side in state[0]'s blocks 1..T (only
                                   without lengths) */
} fbp_run;

/* One direction's backward outputs. */
typedef struct {
    void *dgates;               /* (M, G·H) out: δ of the input-side pre-activations
                                   (0 in the rows of ended rows). LSTM: may be the run's
                                   gates buffer, which is then consumed */
    void *drec;                 /* (M, G·H) out, separate cells: δ of the recurrent
                                   side; NULL for the others (it equals dgates) */
    void *dx;                   /* (M, I) out (overwritten), or NULL: not wanted */
    void *dstate[FBP_MAX_STATES];/* (B, H) each, in: ∂L/∂state after each row's last
                                   step; out: ∂L/∂initial state */
    const void *dy;             /* (M, H) ∂L/∂h_t from above, or NULL (zeros) */
} fbp_run_grads;

/* Workspaces shared by the directions of a call (used in turn). */
typedef struct {
    void *work;                 /* fbp_engine_work_size elements; NULL without reset events */
    void *pack;                 /* fbp_engine_pack_size elements to run the per-step
                                   products on fastbp's kernels (forward: rowdot.h on
                                   W_hh as it is below 8 rows of batch, packed.h on its
                                   rows packed here from 8, and on W_ih's packed here
                                   first, before the loop, where it packs in two passes
                                   at most (engine_region.h); backward: packed.h, on the columns of
                                   W_hh packed here), or NULL for BLAS (GEMM, GEMV at
                                   one row); results agree to rounding */
    void *rec;                  /* (B, G·H) separate cells: one step's h W_hhᵀ; else NULL */
} fbp_scratch;

/* Forward over the whole sequence for D = 1 or 2 directions, one after the
 * other: run[d], weights[d], seq[d] are direction d's. Direction 1 is the
 * reverse direction, its buffers holding each row's steps in reverse order
 * (seq.h's gather with reverse = 1), so both share the row order, lengths and
 * slot layout; seq[1] carries the reset events mirrored to that order.
 * The rows of reset events in the states' previous blocks are swapped with
 * the initial state for the step and put back. */
int fbp_engine_forward_f(int D, fbp_run run[], const fbp_weights weights[],
                         const fbp_scratch *scratch, fbp_cell cell, const fbp_seq *const seq[],
                         fbp_dims dims);
int fbp_engine_forward_d(int D, fbp_run run[], const fbp_weights weights[],
                         const fbp_scratch *scratch, fbp_cell cell, const fbp_seq *const seq[],
                         fbp_dims dims);

/* BPTT for the forward's run: grads[d] and dweights[d] of direction d.
 * run's state buffers are read (their reset rows swapped during the call and
 * put back), its gates read (or consumed, LSTM dgates == gates). */
int fbp_engine_backward_f(int D, fbp_run_grads grads[], fbp_weight_grads dweights[],
                          fbp_run run[], const fbp_weights weights[],
                          const fbp_scratch *scratch, fbp_cell cell, const fbp_seq *const seq[],
                          fbp_dims dims);
int fbp_engine_backward_d(int D, fbp_run_grads grads[], fbp_weight_grads dweights[],
                          fbp_run run[], const fbp_weights weights[],
                          const fbp_scratch *scratch, fbp_cell cell, const fbp_seq *const seq[],
                          fbp_dims dims);

/* Elements of scratch.work for B rows, hidden size H and `events` reset
 * events (0 when there are none), forward or backward; −1 for a bad cell. */
ptrdiff_t fbp_engine_work_size(fbp_cell cell, int B, int H, ptrdiff_t events, int backward);

/* Elements of scratch.pack for hidden size H (the backward's packing of
 * W_hh's columns); −1 for a bad cell. */
ptrdiff_t fbp_engine_pack_size_f(fbp_cell cell, int H);
ptrdiff_t fbp_engine_pack_size_d(fbp_cell cell, int H);

/* Benchmark hook (bench/bench_lstm.py --breakdown): the per-step recurrent
 * products alone of one forward and one backward pass, through the engine's
 * own product path, without the row passes and the stacked GEMMs.
 * gates (T,B,G·H) accumulated; dh (B,H) overwritten; hs (T+1,B,H) read. */
int fbp_engine_step_products_f(fbp_cell cell, float *gates, float *dh, const float *hs,
                               const float *W_hh, float *pack, int T, int B, int H);
int fbp_engine_step_products_d(fbp_cell cell, double *gates, double *dh, const double *hs,
                               const double *W_hh, double *pack, int T, int B, int H);

#endif /* FASTBP_ENGINE_H */
