/* The recurrent engine (engine.h): the time loop of engine_body.h compiled for
 * every cell and both precisions, and the entry points that pick one. */
#include <stdint.h>
#include <string.h>
#include "engine.h"
#include "fbp_math.h"
#include "packed.h"
#include "rowdot.h"
#include "team.h"

/* One line per cell: its fbp_cell_info. */
#define FBP_CELL_INFO(X) {FBP_##X##_GATES, FBP_##X##_STATES, FBP_##X##_SAVED, FBP_##X##_SEPARATE}

#define REAL float
#define FN(name) name##_f
#include "engine_cells.h"
#undef REAL
#undef FN

#define REAL double
#define FN(name) name##_d
#include "engine_cells.h"
#undef REAL
#undef FN

int fbp_cell_describe(fbp_cell cell, fbp_cell_info *info)
{
    static const fbp_cell_info rnn = FBP_CELL_INFO(RNN), lstm = FBP_CELL_INFO(LSTM),
                               gru = FBP_CELL_INFO(GRU);
    switch (cell.kind) {
    case FBP_CELL_RNN:
        if (cell.act != FBP_IDENTITY && cell.act != FBP_TANH && cell.act != FBP_RELU)
            return FBP_ERR_ARG;
        *info = rnn;
        return FBP_OK;
    case FBP_CELL_LSTM: *info = lstm; return FBP_OK;
    case FBP_CELL_GRU:  *info = gru;  return FBP_OK;
    default:            return FBP_ERR_ARG;
    }
}

/* Bit k of the states the cell's backward pass reads before the step. */
static int fbp_cell_prev_read(int kind)
{
    switch (kind) {
    case FBP_CELL_RNN:  return FBP_RNN_PREV_READ;
    case FBP_CELL_LSTM: return FBP_LSTM_PREV_READ;
    default:            return FBP_GRU_PREV_READ;
    }
}

ptrdiff_t fbp_engine_work_size(fbp_cell cell, int B, int H, ptrdiff_t events, int backward)
{
    fbp_cell_info info;
    if (fbp_cell_describe(cell, &info)) return -1;
    if (events == 0) return 0;
    const ptrdiff_t BH = (ptrdiff_t)B * H;
    /* forward: the reset swaps of every state, for two steps at once (a step's
     * reset rows are put back while the next step's are swapped in) */
    if (!backward) return 2 * info.states * BH;
    /* accumulators of ∂L/∂(initial states), the swaps of the states the pass
     * reads, and the h swap for the dW_hh GEMM (engine_body.h) */
    ptrdiff_t swaps = 0;
    for (int k = 0; k < info.states; k++)
        if (fbp_cell_prev_read(cell.kind) & (1 << k)) swaps++;
    return (info.states + swaps) * BH + events * (ptrdiff_t)H;
}

/* Every chunk's packed slice of W_hh (engine_region.h); at least the whole
 * W_hh packed either way (the benchmark hook's packing). */
#define FBP_ENGINE_PACK_SIZE(S)                                                              \
ptrdiff_t fbp_engine_pack_size_##S(fbp_cell cell, int H)                                    \
{                                                                                            \
    fbp_cell_info info;                                                                      \
    if (fbp_cell_describe(cell, &info) || H < 1) return -1;                                 \
    const int units = engine_units_##S(H), GH = info.gates * H;                             \
    const ptrdiff_t chunks = (H + units - 1) / units;                                        \
    const ptrdiff_t all = chunks * engine_chunk_pack_##S(H, info.gates, units);              \
    const ptrdiff_t whole = fbp_pack_size_##S(GH, H), rows = fbp_pack_size_##S(H, GH);     \
    const ptrdiff_t most = whole > rows ? whole : rows;                                      \
    return all > most ? all : most;                                                          \
}
FBP_ENGINE_PACK_SIZE(f)
FBP_ENGINE_PACK_SIZE(d)

/* The entry points: validate the cell, then run each direction in turn. */
#define FBP_ENGINE_ENTRY_POINTS(S)                                                           \
int fbp_engine_forward_##S(int D, fbp_run run[], const fbp_weights weights[],               \
                           const fbp_scratch *scratch, fbp_cell cell,                       \
                           const fbp_seq *const seq[], fbp_dims dims)                       \
{                                                                                            \
    fbp_cell_info info;                                                                      \
    if (D < 1 || D > 2 || fbp_cell_describe(cell, &info)) return FBP_ERR_ARG;               \
    for (int d = 0; d < D; d++) {                                                            \
        int st;                                                                              \
        switch (cell.kind) {                                                                 \
        case FBP_CELL_RNN:                                                                   \
            st = rnn_engine_forward_##S(&run[d], &weights[d], scratch, cell.act, seq[d], dims); \
            break;                                                                           \
        case FBP_CELL_LSTM:                                                                  \
            st = lstm_engine_forward_##S(&run[d], &weights[d], scratch, cell.act, seq[d], dims); \
            break;                                                                           \
        default:                                                                             \
            st = gru_engine_forward_##S(&run[d], &weights[d], scratch, cell.act, seq[d], dims); \
            break;                                                                           \
        }                                                                                    \
        if (st) return st;                                                                   \
    }                                                                                        \
    return FBP_OK;                                                                           \
}                                                                                            \
int fbp_engine_backward_##S(int D, fbp_run_grads grads[], fbp_weight_grads dweights[],      \
                            fbp_run run[], const fbp_weights weights[],                     \
                            const fbp_scratch *scratch, fbp_cell cell,                      \
                            const fbp_seq *const seq[], fbp_dims dims)                      \
{                                                                                            \
    fbp_cell_info info;                                                                      \
    if (D < 1 || D > 2 || fbp_cell_describe(cell, &info)) return FBP_ERR_ARG;               \
    for (int d = 0; d < D; d++) {                                                            \
        int st;                                                                              \
        switch (cell.kind) {                                                                 \
        case FBP_CELL_RNN:                                                                   \
            st = rnn_engine_backward_##S(&grads[d], &dweights[d], &run[d], &weights[d],     \
                                         scratch, cell.act, seq[d], dims);                  \
            break;                                                                           \
        case FBP_CELL_LSTM:                                                                  \
            st = lstm_engine_backward_##S(&grads[d], &dweights[d], &run[d], &weights[d],    \
                                          scratch, cell.act, seq[d], dims);                 \
            break;                                                                           \
        default:                                                                             \
            st = gru_engine_backward_##S(&grads[d], &dweights[d], &run[d], &weights[d],     \
                                         scratch, cell.act, seq[d], dims);                  \
            break;                                                                           \
        }                                                                                    \
        if (st) return st;                                                                   \
    }                                                                                        \
    return FBP_OK;                                                                           \
}

FBP_ENGINE_ENTRY_POINTS(f)
FBP_ENGINE_ENTRY_POINTS(d)
