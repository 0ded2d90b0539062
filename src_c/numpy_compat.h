/* Included by fastbp/_core.pyx right after NumPy's headers: they bring in
 * <complex.h>, whose macro `I` (the imaginary unit) would rewrite every field
 * and argument named I (the input size) in the kernels' headers. */
#undef I
