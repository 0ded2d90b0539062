/* LSTM forward and BPTT for float and double (body in lstm_body.h). */
#include <stdint.h>
#include <string.h>
#include "fastbp.h"
#include "fbp_math.h"
#include "lstm.h"

/* The per-row loops are inlined into the (multiversioned) per-step passes with
 * constant flags, so each flag combination becomes its own branch-free loop. */
#if defined(__GNUC__)
#define FBP_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define FBP_ALWAYS_INLINE static inline
#endif

#define REAL float
#define FN(name) name##_f
#include "lstm_body.h"
#undef REAL
#undef FN

#define REAL double
#define FN(name) name##_d
#include "lstm_body.h"
