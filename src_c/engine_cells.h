/* Everything of the engine that is written for one REAL: the cell interface,
 * the cells, the per-step products, the region, and one time loop per cell.
 * Included by engine.c once with REAL = float, once with REAL = double; a new
 * cell is one more include and one more CELL/CELL_K block here. */
#include "cell.h"
#include "cell_rnn.h"
#include "cell_lstm.h"
#include "cell_gru.h"
#include "engine_products.h"
#include "engine_region.h"

#define CELL(name) FN(rnn_##name)
#define CELL_K(name) FBP_RNN_##name
#include "engine_body.h"
#undef CELL
#undef CELL_K

#define CELL(name) FN(lstm_##name)
#define CELL_K(name) FBP_LSTM_##name
#include "engine_body.h"
#undef CELL
#undef CELL_K

#define CELL(name) FN(gru_##name)
#define CELL_K(name) FBP_GRU_##name
#include "engine_body.h"
#undef CELL
#undef CELL_K
