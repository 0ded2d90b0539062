/* Scalar nonlinearities shared by every kernel, for float (_f) and double (_d).
 *
 * Branch-free polynomial exp and tanh, so that GCC vectorises the fused loops
 * that call them; glibc's exp/tanh are opaque calls without -ffast-math (about
 * 12 and 22 ns each here, a quarter of a float64 LSTM step). float: Cephes
 * coefficients, about 2 ulp. double: within 1 ulp (exp), 2 ulp (tanh) and
 * 3 ulp (sigmoid) of glibc over [-700, 700], measured on 2·10⁶ points, so
 * float64 still tracks the NumPy reference to ~1e-15.
 * Inputs are clamped so no call overflows: sigmoid(±1000) and tanh(±1000)
 * saturate cleanly to 0/1 and ±1. */
#ifndef FBP_MATH_H
#define FBP_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float fbp_exp_f(float x)
{
    x = x > 88.3762626647949f ? 88.3762626647949f : x;
    x = x < -87.3365447504f ? -87.3365447504f : x;
    /* x = n ln2 + r, |r| <= ln2/2; rounding by the 1.5·2²³ trick keeps it branch-free. */
    const float shifter = 12582912.0f;
    float t = x * 1.44269504088896341f + shifter;
    float n = t - shifter;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float r2 = r * r;
    float p = 1.9875691500E-4f;
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * r2 + r + 1.0f;
    /* scale by 2^n through the exponent bits (n in [-127, 128] after the clamp): t's
     * low bits hold n, as in the double version, and unsigned arithmetic keeps a NaN
     * input (whose n is no integer) free of undefined float->int casts and shifts;
     * it gives a NaN result through p. */
    int32_t t_bits, shifter_bits;
    memcpy(&t_bits, &t, sizeof t);
    memcpy(&shifter_bits, &shifter, sizeof shifter);
    uint32_t bits = ((uint32_t)t_bits - (uint32_t)shifter_bits + 127u) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline double fbp_exp_d(double x)
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
    /* 2^n, n in [-1021, 1023]; unsigned, so a NaN input shifts no negative value */
    uint64_t bits = ((uint64_t)t_bits - (uint64_t)shifter_bits + 1023u) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}


static inline float fbp_sigmoid_f(float z) { return 1.0f / (1.0f + fbp_exp_f(-z)); }

static inline double fbp_sigmoid_d(double z) { return 1.0 / (1.0 + fbp_exp_d(-z)); }

static inline float fbp_tanh_f(float z)
{
    float az = fabsf(z);
    /* small |z|: odd polynomial, exact to float precision, no cancellation */
    float z2 = z * z;
    float small = ((((-5.70498872745E-3f * z2 + 2.06390887954E-2f) * z2
                     - 5.37397155531E-2f) * z2 + 1.33314422036E-1f) * z2
                   - 3.33332819422E-1f) * z2 * z + z;
    /* large |z|: 1 − 2/(e^{2|z|} + 1), saturating to 1 */
    float big = 1.0f - 2.0f / (fbp_exp_f(2.0f * az) + 1.0f);
    big = z < 0 ? -big : big;
    return az < 0.625f ? small : big;
}

static inline double fbp_tanh_d(double z)
{
    double az = fabs(z), s = z * z;
    /* |z| < 0.625: Cephes' rational approximation z + z s P(s)/Q(s), s = z² */
    double P = (-9.64399179425052238628E-1 * s - 9.92877231001918586564E1) * s
               - 1.61468768441708447952E3;
    double Q = ((s + 1.12811678491632931402E2) * s + 2.23548839060100448583E3) * s
               + 4.84406305325125486048E3;
    double small = z + z * s * P / Q;
    /* otherwise 1 − 2/(e^{2|z|} + 1), saturating to ±1 */
    double big = 1.0 - 2.0 / (fbp_exp_d(2.0 * az) + 1.0);
    big = z < 0 ? -big : big;
    return az < 0.625 ? small : big;
}


#endif /* FBP_MATH_H */
