/* LSTM forward and BPTT for float and double (body in lstm_body.h). */
#include <stdint.h>
#include <string.h>
#include "fastbp.h"
#include "fbp_math.h"
#include "lstm.h"
#include "packed.h"
#include "seq.h"

#define REAL float
#define FN(name) name##_f
#include "lstm_body.h"
#undef REAL
#undef FN

#define REAL double
#define FN(name) name##_d
#include "lstm_body.h"
