/* The cache of freed large blocks (pool.h). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#ifdef __linux__
#include <malloc.h>
#endif
#include "pool.h"

#define POOL_SLOTS 64               /* blocks kept at most */

static struct {
    pthread_mutex_t lock;
    void *ptr[POOL_SLOTS];          /* oldest first */
    size_t size[POOL_SLOTS];
    int n;
    size_t bytes, limit;
    long long reused, kept;
} pool = {PTHREAD_MUTEX_INITIALIZER, {0}, {0}, 0, 0, FBP_POOL_DEFAULT_BYTES, 0, 0};

/* fork() copies the blocks with the memory; the lock may have been held by a
 * thread that does not exist in the child */
static void pool_prepare(void) { pthread_mutex_lock(&pool.lock); }
static void pool_after(void) { pthread_mutex_unlock(&pool.lock); }   /* the forking thread
                                                                       holds it, in both */
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static void pool_register_fork(void) { pthread_atfork(pool_prepare, pool_after, pool_after); }
static void pool_lock(void)
{
    pthread_once(&pool_once, pool_register_fork);
    pthread_mutex_lock(&pool.lock);
}

/* Remove slot i (under the lock). */
static void *pool_remove(int i)
{
    void *p = pool.ptr[i];
    pool.bytes -= pool.size[i];
    for (int j = i + 1; j < pool.n; j++) {
        pool.ptr[j - 1] = pool.ptr[j];
        pool.size[j - 1] = pool.size[j];
    }
    pool.n--;
    return p;
}

void *fbp_pool_take(size_t n)
{
    if (n < FBP_POOL_MIN_BYTES) return NULL;
    void *p = NULL;
    pool_lock();
    for (int i = pool.n - 1; i >= 0; i--)
        if (pool.size[i] == n) {
            p = pool_remove(i);
            pool.reused++;
            break;
        }
    pthread_mutex_unlock(&pool.lock);
    return p;
}

int fbp_pool_keep(void *p, size_t n)
{
    if (!p || n < FBP_POOL_MIN_BYTES) return 0;
#ifdef __linux__
    /* not the block its size says (glibc's and musl's malloc know): let it go */
    if (malloc_usable_size(p) < n) return 0;
#else
    return 0;       /* no way to check a block's size here: keep nothing */
#endif
    void *evicted[POOL_SLOTS];
    int ne = 0, kept = 0;
    pool_lock();
    if (n <= pool.limit) {
        /* the oldest blocks make room */
        while (pool.n > 0 && (pool.n == POOL_SLOTS || pool.bytes + n > pool.limit))
            evicted[ne++] = pool_remove(0);
        pool.ptr[pool.n] = p;
        pool.size[pool.n] = n;
        pool.n++;
        pool.bytes += n;
        pool.kept++;
        kept = 1;
    }
    pthread_mutex_unlock(&pool.lock);
    for (int i = 0; i < ne; i++) free(evicted[i]);     /* outside the lock */
    return kept;
}

size_t fbp_pool_release(void)
{
    void *blocks[POOL_SLOTS];
    pool_lock();
    const int n = pool.n;
    const size_t bytes = pool.bytes;
    for (int i = 0; i < n; i++) blocks[i] = pool.ptr[i];
    pool.n = 0;
    pool.bytes = 0;
    pthread_mutex_unlock(&pool.lock);
    for (int i = 0; i < n; i++) free(blocks[i]);
    return bytes;
}

size_t fbp_pool_set_limit(size_t bytes)
{
    void *evicted[POOL_SLOTS];
    int ne = 0;
    pool_lock();
    const size_t old = pool.limit;
    pool.limit = bytes;
    while (pool.n > 0 && pool.bytes > pool.limit) evicted[ne++] = pool_remove(0);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 0; i < ne; i++) free(evicted[i]);
    return old;
}

void fbp_pool_get_stats(fbp_pool_stats *s)
{
    pool_lock();
    s->limit = pool.limit;
    s->bytes = pool.bytes;
    s->blocks = pool.n;
    s->reused = pool.reused;
    s->kept = pool.kept;
    pthread_mutex_unlock(&pool.lock);
}
