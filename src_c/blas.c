/* The BLAS function table, the BLAS thread rule, and the row-major
 * GEMM/GEMV/GER helpers (GEMM also in fixed blocks on the thread team). */
#define _GNU_SOURCE             /* dladdr */
#include <stddef.h>
#include <stdint.h>
#include "fastbp.h"
#include "team.h"

#if defined(__unix__) || defined(__APPLE__)
#include <dlfcn.h>
#include <pthread.h>
#define FBP_HAVE_DLADDR 1       /* and with it the thread control, so the lock below */
#define FBP_HAVE_PTHREAD 1
#endif

fbp_blas_table fbp_blas = {0};

int fbp_blas_ready(void)
{
    return fbp_blas.sgemm && fbp_blas.dgemm && fbp_blas.sgemv && fbp_blas.dgemv &&
           fbp_blas.sger && fbp_blas.dger;
}

int fbp_blas_find_thread_control(void)
{
#ifdef FBP_HAVE_DLADDR
    /* SciPy's wheels bundle OpenBLAS with its symbols renamed (scipy_...,
     * with a 64_ suffix in ILP64 builds); a system OpenBLAS keeps the plain
     * names. Look only in the library that holds the sgemm we call. */
    const char *const names[][2] = {     /* on the stack: no writable global */
        {"scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"},
        {"scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"},
        {"openblas_get_num_threads", "openblas_set_num_threads"},
        {"openblas_get_num_threads64_", "openblas_set_num_threads64_"},
    };
    Dl_info info;
    if (!fbp_blas.sgemm || !dladdr((void *)fbp_blas.sgemm, &info) || !info.dli_fname)
        return 0;
    void *lib = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
    if (!lib)
        return 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *get = dlsym(lib, names[i][0]), *set = dlsym(lib, names[i][1]);
        if (get && set) {
            /* POSIX guarantees object <-> function pointer conversion for dlsym */
            *(void **)&fbp_blas.get_threads = get;
            *(void **)&fbp_blas.set_threads = set;
            return 1;       /* the handle stays open: the library stays loaded anyway */
        }
    }
    dlclose(lib);
#endif
    return 0;
}

/* The rule (fastbp.h): one BLAS thread per product. Measured with
 * bench/bench_blas_threads.py on a 2-core AMD EPYC VM (AVX2, SciPy's OpenBLAS
 * 0.3.30, Haswell kernels, OPENBLAS_CORETYPE not set) while other jobs kept
 * one core busy (load average 1.35): sgemm of (rows x 256) @ (256 x 1024),
 * 1 thread against 2, from 2^20 to 2^32 multiply-adds:
 *     2^20 0.10 / 4.4 ms, 2^24 0.42 / 8.0 ms, 2^28 6.5 / 16.0 ms,
 *     2^30 28.2 / 40.0 ms, 2^32 122 / 152 ms: two threads never ahead.
 * OpenBLAS splits a product into one equal share per thread, so the share
 * whose core is shared finishes last: no product is large enough to win back
 * what the stall costs. After each threaded call an OpenBLAS worker spun for
 * 100 ms of CPU time (read from /proc), beside fastbp's single-threaded time
 * loop. Whole training steps with default threads (T=100, H=256, another job
 * on the second core) were 4-7x slower than with one thread before this rule
 * (RNN B=16: 101-136 against 22 ms) and level with it after.
 * Concurrent callers: the setting is process-wide, so it is counted, not
 * saved per call. The first product to start (no other in flight) saves the
 * setting and lowers it to 1; the last to finish restores it. In between,
 * every product of every thread runs on one thread: a per-call save/restore
 * would let one thread restore 2 just before another's product started
 * (caught by tests/test_harden_threads.py as parallel training that differed
 * from serial). Meanwhile a BLAS call of the user's own in another thread
 * runs on one thread too (speed only), and a setting the user changes while
 * fastbp computes is replaced by the saved one when fastbp is done. */
#ifdef FBP_HAVE_PTHREAD
static pthread_mutex_t blas_threads_lock = PTHREAD_MUTEX_INITIALIZER;
static void blas_threads_lock_take(void) { pthread_mutex_lock(&blas_threads_lock); }
static void blas_threads_lock_give(void) { pthread_mutex_unlock(&blas_threads_lock); }
#else   /* no thread control without dladdr: these guard nothing */
static void blas_threads_lock_take(void) {}
static void blas_threads_lock_give(void) {}
#endif
static int blas_threads_users = 0;      /* fastbp products in flight, all threads */
static int blas_threads_saved = 0;      /* BLAS's setting before the first of them */

void fbp_blas_threads_enter(void)
{
    if (!fbp_blas.get_threads || !fbp_blas.set_threads)
        return;
    blas_threads_lock_take();
    if (blas_threads_users++ == 0) {
        blas_threads_saved = fbp_blas.get_threads();
        if (blas_threads_saved > 1)
            fbp_blas.set_threads(1);
    }
    blas_threads_lock_give();
}

void fbp_blas_threads_leave(void)
{
    if (!fbp_blas.get_threads || !fbp_blas.set_threads)
        return;
    blas_threads_lock_take();
    if (--blas_threads_users == 0 && blas_threads_saved > 1)
        fbp_blas.set_threads(blas_threads_saved);
    blas_threads_lock_give();
}

/* fbp_gemm_team: below this many multiply-adds a product is one BLAS call on
 * its caller; else C in blocks of rows (or columns) of GEMM_TEAM_BLOCK_MIN at
 * least, GEMM_TEAM_BLOCKS at most, shared by the team */
#define GEMM_TEAM_MIN_MACS (1 << 17)
#define GEMM_TEAM_BLOCK_MIN 32
#define GEMM_TEAM_BLOCKS 8

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
