/* Elman RNN forward and BPTT for float and double (see rnn.h, rnn_body.h). */
#include <math.h>
#include <string.h>
#include "fastbp.h"
#include "fbp_math.h"
#include "rnn.h"

/* The per-row loops and the micro-kernels are inlined with constant flags and
 * sizes, so each combination becomes its own branch-free loop. */
#if defined(__GNUC__)
#define FBP_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define FBP_ALWAYS_INLINE static inline
#endif

/* Let GCC contract a*b + c into FMA in the packed matrix-product kernel only. */
#if defined(__GNUC__) && !defined(__clang__)
#define FBP_CONTRACT __attribute__((optimize("fp-contract=fast")))
#else
#define FBP_CONTRACT
#endif

#define REAL float
#define FN(name) name##_f
#include "rnn_body.h"
#undef REAL
#undef FN

#define REAL double
#define FN(name) name##_d
#include "rnn_body.h"
