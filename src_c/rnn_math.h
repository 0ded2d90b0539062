/* A float tanh that GCC vectorises under the default flags.
 *
 * Same formulas and constants as fbp_tanh_f / fbp_exp_f in fbp_math.h, and
 * bit-identical results (tests/test_rnn.py checks it against
 * fastbp.functional.activation_forward). The difference: every `c ? a : b`
 * between computed floats is a bitwise select of two values that are both
 * always computed. Without -ffast-math GCC keeps the default -ftrapping-math
 * and then refuses to if-convert a conditional whose arm does floating-point
 * arithmetic (it first sinks the arithmetic into the arm: `x = x > M ? M : x;
 * y = x * c` becomes `x > M ? M * c : x * c`), so a loop calling fbp_tanh_f
 * stays scalar: ~4x slower, and the fused RNN pass is per-element bound.
 * (Proposed for fbp_math.h itself; until then the RNN kernels use this.)
 */
#ifndef FASTBP_RNN_MATH_H
#define FASTBP_RNN_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* c ? a : b with both a and b already computed: no branch, no FP op in an arm. */
static inline float rnn_select_f(int c, float a, float b)
{
    uint32_t ua, ub, mask = (uint32_t)0 - (uint32_t)(c != 0);
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    uint32_t r = (ua & mask) | (ub & ~mask);
    float f;
    memcpy(&f, &r, sizeof f);
    return f;
}

static inline double rnn_select_d(int c, double a, double b)
{
    uint64_t ua, ub, mask = (uint64_t)0 - (uint64_t)(c != 0);
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    uint64_t r = (ua & mask) | (ub & ~mask);
    double f;
    memcpy(&f, &r, sizeof f);
    return f;
}

static inline float rnn_exp_f(float x)
{
    x = rnn_select_f(x > 88.3762626647949f, 88.3762626647949f, x);
    x = rnn_select_f(x < -87.3365447504f, -87.3365447504f, x);
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
    int32_t bits = ((int32_t)n + 127) << 23;   /* 2^n through the exponent bits */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float rnn_tanh_f(float z)
{
    float az = fabsf(z);
    /* small |z|: odd polynomial, no cancellation */
    float z2 = z * z;
    float small = ((((-5.70498872745E-3f * z2 + 2.06390887954E-2f) * z2
                     - 5.37397155531E-2f) * z2 + 1.33314422036E-1f) * z2
                   - 3.33332819422E-1f) * z2 * z + z;
    /* large |z|: 1 − 2/(e^{2|z|} + 1) >= 0, given the sign of z by its sign bit */
    float big = 1.0f - 2.0f / (rnn_exp_f(2.0f * az) + 1.0f);
    uint32_t ub, uz;
    memcpy(&ub, &big, sizeof ub);
    memcpy(&uz, &z, sizeof uz);
    ub |= uz & 0x80000000u;
    memcpy(&big, &ub, sizeof big);
    return rnn_select_f(az < 0.625f, small, big);
}

/* double keeps libm, as fbp_tanh_d does: float64 is the checking path. */
static inline double rnn_tanh_d(double z) { return tanh(z); }

#endif /* FASTBP_RNN_MATH_H */
