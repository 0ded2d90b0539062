/* The MLP kernels (src_c/mlp_body.h) for float and double. */

/* setup.py builds every kernel with -fno-trapping-math, which is what lets
 * GCC vectorise the fused activation loops here. */
#include <math.h>
#include <string.h>
#include "fastbp.h"
#include "fbp_math.h"
#include "mlp.h"
#include "team.h"

/* A step runs on the thread team when one of its layers' products has this
 * many multiply-adds (B·n_in·n_out); smaller ones run on the caller alone:
 * the hand-over between cores costs more than sharing saves (speed only). */
#define FBP_MLP_TEAM_MIN_MACS (1 << 17)

/* Batches up to this many rows skip GEMM (see dense_forward / dense_backward_row_sweep). */
#ifndef FBP_MLP_SMALL_BATCH
#define FBP_MLP_SMALL_BATCH 8
#endif
/* Batches up to this many rows compute the forward GEMM transposed (see dense_forward). */
#ifndef FBP_MLP_TRANSPOSED_MAX_BATCH
#define FBP_MLP_TRANSPOSED_MAX_BATCH 128
#endif

/* Loops bound by store bandwidth (the batch-1 weight gradient writes a whole
 * dW per step) run twice as fast with 32-byte AVX2 stores as with the SSE2
 * baseline the portable build targets. GCC builds both and picks one at load
 * time (ifunc); no FMA is enabled, so both give bitwise the same results. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define FBP_STORE_BOUND __attribute__((target_clones("avx2", "default")))
#else
#define FBP_STORE_BOUND
#endif

#define REAL float
#define FN(name) name##_f
#include "mlp_body.h"
#undef REAL
#undef FN

#define REAL double
#define FN(name) name##_d
#include "mlp_body.h"
