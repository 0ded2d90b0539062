/* Which copy of the multiversioned kernels (FBP_HOT, fastbp.h) runs here. */
#include "fastbp.h"

const char *fbp_kernel_isa(void)
{
#if FBP_MULTIVERSION
    /* GCC's ifunc resolver for target_clones takes the highest level the CPU
     * supports, in this order; the same test here names its pick. */
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4";
    if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3";
    return "x86-64";
#else
    return "portable";
#endif
}
