/* The packed recurrent-product kernel (packed_body.h) for float and double. */
#include <string.h>
#include "fastbp.h"
#include "packed.h"

#define REAL float
#define FN(name) name##_f
#include "packed_body.h"
#undef REAL
#undef FN

#define REAL double
#define FN(name) name##_d
#include "packed_body.h"
