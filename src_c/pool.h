/* A cache of freed large blocks for the arrays fastbp allocates (src_c/pool.c).
 *
 * A training loop allocates the same large buffers on every call (the gates,
 * the states, the gradients: megabytes at batch 16). Freed, glibc returns
 * them to the kernel, and the next call faults every page in again, zeroed by
 * the kernel, and unmapping shoots down the other core's TLB while the team
 * runs on it: at B = 16 about 3,300 page faults a call for the LSTM. Blocks
 * kept here instead go to the next request of the same size.
 *
 * Every block is malloc's: a kept block is one whose free() is deferred, so
 * whatever takes or frees it later, free() remains right. Thread-safe. */
#ifndef FASTBP_POOL_H
#define FASTBP_POOL_H

#include <stddef.h>

#define FBP_POOL_MIN_BYTES (256 * 1024)     /* smaller blocks are not kept */
/* kept at most, by default; none under AddressSanitizer, which must see every
 * free to catch a use after it (tests that exercise the pool set a limit) */
#if defined(__SANITIZE_ADDRESS__)
#define FBP_POOL_DEFAULT_BYTES ((size_t)0)
#else
#define FBP_POOL_DEFAULT_BYTES ((size_t)256 << 20)
#endif

/* A kept block of exactly n bytes (the most recently kept), or NULL. */
void *fbp_pool_take(size_t n);
/* Keep block p of n bytes (malloc's, at least n usable bytes) for a later
 * request: returns 1 if kept (the caller must not free it), 0 if not (too
 * small, or the pool's limit is 0). Older blocks are freed to stay under the
 * limit. */
int fbp_pool_keep(void *p, size_t n);
/* Free every kept block; returns the bytes freed. */
size_t fbp_pool_release(void);
/* The most bytes kept (0: nothing is kept); returns the previous limit. */
size_t fbp_pool_set_limit(size_t bytes);

typedef struct {
    size_t limit;       /* the most bytes kept */
    size_t bytes;       /* bytes kept now */
    int blocks;         /* blocks kept now */
    long long reused;   /* requests served by a kept block so far */
    long long kept;     /* blocks kept so far */
} fbp_pool_stats;
void fbp_pool_get_stats(fbp_pool_stats *s);

#endif /* FASTBP_POOL_H */
