/* Whether every element of an array is finite (no NaN, no ±inf): the checks
 * of every argument a user passes (fastbp/_validate.py's float_array, through
 * fastbp/_arrays.pxi), without the temporary array and the second pass of
 * NumPy's isfinite(x).all(). */
#ifndef FASTBP_FINITE_H
#define FASTBP_FINITE_H

#include <stddef.h>

/* 1 when all n elements at x are finite, else 0 (n = 0: 1). */
int fbp_all_finite_f(const float *x, ptrdiff_t n);
int fbp_all_finite_d(const double *x, ptrdiff_t n);

#endif /* FASTBP_FINITE_H */
