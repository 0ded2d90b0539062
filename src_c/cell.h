/* The interface between the engine's time loop (engine_body.h) and a cell
 * (cell_*.h), written once for REAL: included by engine.c with REAL and FN
 * defined, before the cells.
 *
 * A cell header defines, for a prefix X (rnn, lstm, gru):
 *   FBP_X_GATES, FBP_X_STATES, FBP_X_SAVED, FBP_X_SEPARATE   its fbp_cell_info
 *   FBP_X_PREV_READ   bit k set: the backward pass reads state k before the
 *                     step (the engine swaps in the initial state at resets)
 *   FBP_X_DIRECT_H    1: the backward pass writes a direct part of
 *                     ∂L/∂h_{t−1} into carry[0], which the recurrent product
 *                     then adds to; 0: the product overwrites carry[0]
 *   FN(X_forward_step)(const FN(fbp_step) *, const FN(fbp_cell_params) *, int act)
 *   FN(X_backward_step)(const FN(fbp_step) *, const FN(fbp_cell_params) *,
 *                       const FN(fbp_cell_grads) *, int act)
 * Both passes run over the step's n active rows (the first n of the block)
 * and over its units [u0, u0 + nu) of H only: a thread of the team
 * (team.h) owns a chunk of the hidden units, and every gate block, state and
 * bias element of a unit is that unit's alone, so the chunks never share a
 * write. Row strides stay those of the whole buffers (H, G·H, ...). */

/* One step of one direction, rows [0, n) of each buffer. */
typedef struct {
    int n, H;                            /* active rows; the row length of the state buffers */
    int u0, nu;                          /* the units of this pass: [u0, u0 + nu) */
    /* forward and backward */
    REAL *gates;                         /* (n, saved·H) forward: the input side (plus
                                            the recurrent side unless separate) in,
                                            what backward reads out; backward: in */
    const REAL *prev[FBP_MAX_STATES];    /* (n, H) the states before the step */
    REAL *next[FBP_MAX_STATES];          /* (n, H) after it (forward writes them) */
    /* forward only */
    const REAL *rec;                     /* (n, G·H) separate cells: h_{t−1} W_hhᵀ */
    /* backward only */
    REAL *carry[FBP_MAX_STATES];         /* (n, H) in: ∂L/∂state after the step from
                                            above step t (h: δ_{t+1} W_hh, or the final
                                            state's gradient); out: ∂L/∂state before it
                                            (h: see FBP_X_DIRECT_H) */
    const REAL *dy;                      /* (n, H) ∂L/∂h_t from above, or NULL */
    REAL *dgates;                        /* (n, G·H) out: δ of the input side */
    REAL *drec;                          /* (n, G·H) out, separate cells: δ of the
                                            recurrent side (else == dgates) */
} FN(fbp_step);

/* The parameters a row pass reads. */
typedef struct {
    const REAL *b_ih, *b_hh;             /* (G·H) */
    const REAL *peep;                    /* (3, H) or NULL (LSTM) */
} FN(fbp_cell_params);

/* Their gradients, accumulated over rows and steps (+=). */
typedef struct {
    REAL *b_ih;                          /* (G·H) */
    REAL *b_hh;                          /* (G·H), separate cells only */
    REAL *peep;                          /* (3, H) when params.peep */
} FN(fbp_cell_grads);
