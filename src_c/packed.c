/* The packed recurrent-product kernel (packed_body.h) for float and double. */
#include <string.h>
#include "fastbp.h"
#include "packed.h"

/* Let GCC contract a*b + c into FMA in the packed matrix-product kernel only:
 * it is a matrix product like BLAS's, whose rounding differs across CPUs
 * anyway; the fused elementwise passes stay uncontracted. */
#if defined(__GNUC__) && !defined(__clang__)
#define FBP_CONTRACT __attribute__((optimize("fp-contract=fast")))
#else
#define FBP_CONTRACT
#endif

#define REAL float
#define FN(name) name##_f
#include "packed_body.h"
#undef REAL
#undef FN

#define REAL double
#define FN(name) name##_d
#include "packed_body.h"
