/* Activations, derivatives and losses for float and double. */
#include <math.h>
#include <string.h>
#include "fastbp.h"
#include "fbp_math.h"

#define REAL float
#define FN(name) name##_f
#include "elementwise_body.h"
#undef REAL
#undef FN

#define REAL double
#define FN(name) name##_d
#include "elementwise_body.h"
