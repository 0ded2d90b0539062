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

/* Let GCC contract a*b + c into FMA in the packed matrix-product kernel only. */
#if defined(__GNUC__) && !defined(__clang__)
#define FBP_CONTRACT __attribute__((optimize("fp-contract=fast")))
#else
#define FBP_CONTRACT
#endif

/* The nonlinearities of the fused passes. float: fbp_math.h's branch-free
 * polynomials. double: fbp_math.h calls libm there, which GCC cannot vectorise
 * (about 12 ns per exp, 22 per tanh here), and the float64 passes did 6 such
 * calls per cell: a quarter of the whole float64 run time at B = 64. These
 * branch-free versions vectorise (4 doubles per AVX2 instruction) and stay
 * within 1 ulp (exp), 2 ulp (tanh) and 3 ulp (sigmoid) of glibc over
 * [-700, 700], measured on 2·10⁶ points: still the gradient-checking path. */
static inline double lstm_exp_d(double x)
{
    x = x > 709.0 ? 709.0 : x;
    x = x < -708.0 ? -708.0 : x;
    /* x = n ln2 + r, |r| <= ln2/2: round x/ln2 with the 1.5·2⁵² trick, which also
     * leaves n in the low bits of t (AVX2 has no packed double -> int64). */
    const double shifter = 6755399441055744.0;
    double t = x * 1.4426950408889634074 + shifter;
    double n = t - shifter;
    double r = x - n * 6.93145751953125E-1;            /* ln2 split in two (Cephes) */
    r = r - n * 1.42860682030941723212E-6;
    /* Taylor series to r¹³: truncation below 5e-18 for |r| <= 0.347 */
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    int64_t t_bits, shifter_bits;
    memcpy(&t_bits, &t, sizeof t);
    memcpy(&shifter_bits, &shifter, sizeof shifter);
    int64_t bits = (t_bits - shifter_bits + 1023) << 52;  /* 2^n, n in [-1021, 1023] */
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline double lstm_sigmoid_d(double z) { return 1.0 / (1.0 + lstm_exp_d(-z)); }

static inline double lstm_tanh_d(double z)
{
    double az = fabs(z), s = z * z;
    /* |z| < 0.625: Cephes' rational approximation z + z s P(s)/Q(s), s = z² */
    double P = (-9.64399179425052238628E-1 * s - 9.92877231001918586564E1) * s
               - 1.61468768441708447952E3;
    double Q = ((s + 1.12811678491632931402E2) * s + 2.23548839060100448583E3) * s
               + 4.84406305325125486048E3;
    double small = z + z * s * P / Q;
    /* otherwise 1 − 2/(e^{2|z|} + 1), saturating to ±1 */
    double big = 1.0 - 2.0 / (lstm_exp_d(2.0 * az) + 1.0);
    big = z < 0 ? -big : big;
    return az < 0.625 ? small : big;
}

static inline float lstm_sigmoid_f(float z) { return fbp_sigmoid_f(z); }
static inline float lstm_tanh_f(float z) { return fbp_tanh_f(z); }

#define REAL float
#define FN(name) name##_f
#include "lstm_body.h"
#undef REAL
#undef FN

#define REAL double
#define FN(name) name##_d
#include "lstm_body.h"
