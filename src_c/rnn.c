/* Elman RNN forward and BPTT for float and double (see rnn.h, rnn_body.h). */
#include <math.h>
#include <string.h>
#include "fastbp.h"
#include "fbp_math.h"
#include "rnn.h"
#include "packed.h"
#include "seq.h"

#define REAL float
#define FN(name) name##_f
#include "rnn_body.h"
#undef REAL
#undef FN

#define REAL double
#define FN(name) name##_d
#include "rnn_body.h"
