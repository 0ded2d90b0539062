/* Scalar nonlinearities shared by every kernel, for float (_f) and double (_d).
 *
 * float: branch-free polynomial exp and tanh (Cephes coefficients, about 2 ulp)
 * so that GCC vectorises the fused loops that call them; glibc's expf/tanhf
 * are opaque calls without -ffast-math. double keeps libm: float64 is the
 * gradient-checking path and must track the NumPy reference to ~1e-15.
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
    /* scale by 2^n through the exponent bits (n in [-127, 128] after the clamp) */
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline double fbp_exp_d(double x) { return exp(x); }

static inline float fbp_sigmoid_f(float z) { return 1.0f / (1.0f + fbp_exp_f(-z)); }

static inline double fbp_sigmoid_d(double z)
{
    /* never exponentiates a large positive number */
    if (z >= 0) return 1.0 / (1.0 + exp(-z));
    double e = exp(z);
    return e / (1.0 + e);
}

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

static inline double fbp_tanh_d(double z) { return tanh(z); }

#endif /* FBP_MATH_H */
