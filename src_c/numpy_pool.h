/* NumPy's allocator for the arrays fastbp allocates (NEP 49), over the pool
 * of freed large blocks (pool.h). Included by fastbp/_pool.pxi after NumPy's
 * headers. fastbp sets it around its calls (fbp_pool_scope): an array made
 * meanwhile keeps it, so that its large block goes back to the pool when the
 * array is freed, whoever frees it and whenever. Arrays made elsewhere keep
 * NumPy's default allocator. */
#ifndef FASTBP_NUMPY_POOL_H
#define FASTBP_NUMPY_POOL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "pool.h"

static void *fbp_np_malloc(void *ctx, size_t n)
{
    (void)ctx;
    void *p = fbp_pool_take(n);
#ifndef NDEBUG
    /* debug builds: a reused block is all NaN (bytes 0xff), so that code which
     * only worked because fresh pages from the kernel are zero fails there */
    if (p) memset(p, 0xff, n);
#endif
    return p ? p : malloc(n);
}

static void *fbp_np_calloc(void *ctx, size_t nelem, size_t elsize)
{
    (void)ctx;
    if (elsize && nelem > SIZE_MAX / elsize) return NULL;
    void *p = fbp_pool_take(nelem * elsize);
    if (p) {    /* zeroing a kept block costs less than faulting in fresh zero pages */
        memset(p, 0, nelem * elsize);
        return p;
    }
    return calloc(nelem, elsize);
}

static void *fbp_np_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    return realloc(p, n);           /* every block is malloc's */
}

static void fbp_np_free(void *ctx, void *p, size_t n)
{
    (void)ctx;
    if (!fbp_pool_keep(p, n)) free(p);
}

static PyDataMem_Handler fbp_np_handler = {
    "fastbp_pool", 1, {NULL, fbp_np_malloc, fbp_np_calloc, fbp_np_realloc, fbp_np_free}};

/* The handler as NumPy takes it: a capsule named "mem_handler" (a new reference). */
static PyObject *fbp_np_handler_capsule(void)
{
    return PyCapsule_New(&fbp_np_handler, "mem_handler", NULL);
}

#endif /* FASTBP_NUMPY_POOL_H */
