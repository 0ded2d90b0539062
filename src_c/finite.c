/* finite.h: an exponent field of all ones is NaN or ±inf. Tested on the bits
 * with an integer AND and compare, which GCC vectorises without -ffast-math
 * (isfinite on the floats would not be). Checked in the objects: float in
 * every clone, double in the AVX2 and AVX-512 ones only, since the baseline
 * SSE2 has no 64-bit compare. In blocks, so that a bad array is answered
 * early. */
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

/* fbp_all_finite_<suffix> for REAL, read as BITS, whose exponent field is EXPONENT. */
#define FBP_ALL_FINITE(suffix, REAL, BITS, EXPONENT)                                    \
    FBP_HOT int fbp_all_finite_##suffix(const REAL *x, ptrdiff_t n)                     \
    {                                                                                   \
        const BITS *u = (const BITS *)x;                                                \
        for (ptrdiff_t i0 = 0; i0 < n; i0 += FINITE_BLOCK) {                            \
            const ptrdiff_t i1 = n - i0 < FINITE_BLOCK ? n : i0 + FINITE_BLOCK;         \
            BITS bad = 0;                                                               \
            for (ptrdiff_t i = i0; i < i1; i++) bad |= (u[i] & (EXPONENT)) == (EXPONENT); \
            if (bad) return 0;                                                          \
        }                                                                               \
        return 1;                                                                       \
    }

FBP_ALL_FINITE(f, float, fbp_bits32, 0x7f800000u)
FBP_ALL_FINITE(d, double, fbp_bits64, 0x7ff0000000000000ull)
