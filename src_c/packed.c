/* The packed recurrent-product kernel (packed_body.h) for float and double. */
#include <string.h>
#include "fastbp.h"
#include "packed.h"

#define REAL float
#define FN(name) name##_f
#define PACK_DOUBLE 0
#include "packed_body.h"
#undef REAL
#undef FN
#undef PACK_DOUBLE

#define REAL double
#define FN(name) name##_d
#define PACK_DOUBLE 1
#include "packed_body.h"
