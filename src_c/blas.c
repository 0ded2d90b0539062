/* The BLAS function table and the row-major GEMM/GEMV/GER helpers. */
#include "fastbp.h"

fbp_blas_table fbp_blas = {0};

int fbp_blas_ready(void)
{
    return fbp_blas.sgemm && fbp_blas.dgemm && fbp_blas.sgemv && fbp_blas.dgemv &&
           fbp_blas.sger && fbp_blas.dger;
}

#define REAL float
#define FN(name) name##_f
#define BLAS_GEMM fbp_blas.sgemm
#define BLAS_GEMV fbp_blas.sgemv
#define BLAS_GER fbp_blas.sger
#include "blas_body.h"
#undef REAL
#undef FN
#undef BLAS_GEMM
#undef BLAS_GEMV
#undef BLAS_GER

#define REAL double
#define FN(name) name##_d
#define BLAS_GEMM fbp_blas.dgemm
#define BLAS_GEMV fbp_blas.dgemv
#define BLAS_GER fbp_blas.dger
#include "blas_body.h"
