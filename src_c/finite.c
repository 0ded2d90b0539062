/* finite.h: an exponent field of all ones is NaN or ±inf. Tested on the bits,
 * in blocks (an early answer for a bad array, vector code in a block), so
 * the compiler vectorises it without -ffast-math. */
#include <stdint.h>
#include "fastbp.h"
#include "finite.h"

#define FINITE_BLOCK 4096

#if defined(__GNUC__)
typedef uint32_t fbp_bits32 __attribute__((may_alias));
typedef uint64_t fbp_bits64 __attribute__((may_alias));
#else
typedef uint32_t fbp_bits32;
typedef uint64_t fbp_bits64;
#endif

FBP_HOT int fbp_all_finite_f(const float *x, ptrdiff_t n)
{
    const fbp_bits32 *u = (const fbp_bits32 *)x;
    const uint32_t exponent = 0x7f800000u;
    for (ptrdiff_t i0 = 0; i0 < n; i0 += FINITE_BLOCK) {
        const ptrdiff_t i1 = n - i0 < FINITE_BLOCK ? n : i0 + FINITE_BLOCK;
        uint32_t bad = 0;
        for (ptrdiff_t i = i0; i < i1; i++) bad |= (u[i] & exponent) == exponent;
        if (bad) return 0;
    }
    return 1;
}

FBP_HOT int fbp_all_finite_d(const double *x, ptrdiff_t n)
{
    const fbp_bits64 *u = (const fbp_bits64 *)x;
    const uint64_t exponent = 0x7ff0000000000000ull;
    for (ptrdiff_t i0 = 0; i0 < n; i0 += FINITE_BLOCK) {
        const ptrdiff_t i1 = n - i0 < FINITE_BLOCK ? n : i0 + FINITE_BLOCK;
        uint64_t bad = 0;
        for (ptrdiff_t i = i0; i < i1; i++) bad |= (u[i] & exponent) == exponent;
        if (bad) return 0;
    }
    return 1;
}
