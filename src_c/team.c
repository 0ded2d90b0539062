/* fastbp's thread team (team.h): persistent pthreads, chunked phases. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>
#include "fastbp.h"
#include "team.h"
#ifdef __linux__
#include <sys/prctl.h>
#endif

/* How long a waiting member spins before it yields, and how long it yields
 * before it naps: a step of the time loop takes microseconds, so the partner
 * is normally back within the spin; a partner descheduled by another process
 * is not, and then the waiter gives its core away instead of burning it. */
#define SPINS 4000              /* pause instructions, about 10-40 µs */
#define YIELDS 200              /* sched_yield calls before napping */
#define NAP_NS 20000            /* 20 µs naps after that */
#define WORKER_SPINS 20000      /* a worker's spin for the next region before it sleeps */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static struct {
    pthread_mutex_t lock;           /* guards every field below but `pending`, `generation` */
    pthread_cond_t wake;            /* workers: a new region (or exit) */
    pthread_cond_t finished;        /* the caller: the workers are done with the region */
    pthread_cond_t idle;            /* set_size: no region in flight */
    int size;                       /* members wanted (the caller included) */
    int started;                    /* workers alive: ids 1 .. started */
    int exit_from;                  /* workers with id >= exit_from leave */
    int running;                    /* a region is in flight */
    unsigned long generation;       /* bumped by each region (read atomically by spinners) */
    fbp_team_fn fn;
    void *ctx;
    int members;
    int pending;                    /* workers still in the region */
    int joined;                     /* workers that took up the current region */
    unsigned long closed;           /* the last region its caller closed to late workers */
    pthread_t threads[FBP_TEAM_MAX];
    unsigned long born[FBP_TEAM_MAX];   /* the generation when each worker was started */
    int64_t stalled_at;             /* when a region last went solo (atomic) */
} team = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
          PTHREAD_COND_INITIALIZER, 1, 0, FBP_TEAM_MAX, 0, 0, NULL, NULL, 1, 0, 0, 0, {0}, {0}, 0};

int64_t fbp_team_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *worker(void *arg)
{
    const int id = (int)(intptr_t)arg;
#ifdef __linux__
    prctl(PR_SET_NAME, FBP_TEAM_THREAD_NAME, 0, 0, 0);     /* tools and tests tell it from BLAS's */
#endif
    /* the region it was started for is the one after `born` (the thread may
     * first run after that region began) */
    pthread_mutex_lock(&team.lock);
    unsigned long seen = team.born[id];
    pthread_mutex_unlock(&team.lock);
    for (;;) {
        /* spin a little for the next region (a forward is followed by its backward) */
        for (int i = 0; i < WORKER_SPINS &&
                        __atomic_load_n(&team.generation, __ATOMIC_ACQUIRE) == seen; i++)
            cpu_relax();
        pthread_mutex_lock(&team.lock);
        while (team.generation == seen && id < team.exit_from)
            pthread_cond_wait(&team.wake, &team.lock);
        if (id >= team.exit_from) {
            pthread_mutex_unlock(&team.lock);
            return NULL;
        }
        seen = team.generation;
        const fbp_team_fn fn = team.fn;
        void *ctx = team.ctx;
        const int members = team.members;
        /* not part of this region, or woken after its caller finished it alone */
        const int skip = id >= members || team.closed == seen;
        if (!skip) team.joined++;
        pthread_mutex_unlock(&team.lock);
        if (skip) continue;
        fn(ctx, id, members);
        pthread_mutex_lock(&team.lock);
        if (--team.pending == 0) pthread_cond_signal(&team.finished);
        pthread_mutex_unlock(&team.lock);
    }
}

/* After fork() only the forking thread exists in the child: start over. */
static void team_after_fork_child(void)
{
    pthread_mutex_init(&team.lock, NULL);
    pthread_cond_init(&team.wake, NULL);
    pthread_cond_init(&team.finished, NULL);
    pthread_cond_init(&team.idle, NULL);
    team.started = 0;
    team.exit_from = FBP_TEAM_MAX;
    team.running = 0;
    team.pending = 0;
}

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static void register_fork_handler(void)
{
    pthread_atfork(NULL, NULL, team_after_fork_child);
}

int fbp_team_set_size(int n)
{
    if (n < 1 || n > FBP_TEAM_MAX) return FBP_ERR_ARG;
    pthread_once(&fork_once, register_fork_handler);
    pthread_mutex_lock(&team.lock);
    while (team.running) pthread_cond_wait(&team.idle, &team.lock);
    team.size = n;
    int leaving_from = n, started = team.started;
    if (started > n - 1) {              /* workers n .. started leave */
        team.exit_from = leaving_from;
        pthread_cond_broadcast(&team.wake);
        team.started = n - 1;
        team.running = 1;               /* no region may start while they leave */
        pthread_mutex_unlock(&team.lock);
        for (int id = leaving_from; id <= started; id++) pthread_join(team.threads[id], NULL);
        pthread_mutex_lock(&team.lock);
        team.exit_from = FBP_TEAM_MAX;
        team.running = 0;
        pthread_cond_broadcast(&team.idle);
    }
    pthread_mutex_unlock(&team.lock);
    return FBP_OK;
}

int fbp_team_size(void)
{
    pthread_mutex_lock(&team.lock);
    const int n = team.size;
    pthread_mutex_unlock(&team.lock);
    return n;
}

int fbp_team_run(fbp_team_fn fn, void *ctx)
{
    pthread_once(&fork_once, register_fork_handler);
    const int64_t stalled_at = __atomic_load_n(&team.stalled_at, __ATOMIC_RELAXED);
    if (stalled_at && fbp_team_now_ns() - stalled_at < FBP_TEAM_BACKOFF_NS) {
        fn(ctx, 0, 1);                      /* a member was held up a moment ago */
        return 1;
    }
    pthread_mutex_lock(&team.lock);
    if (team.size == 1 || team.running) {   /* alone: no team, or it is another caller's now */
        pthread_mutex_unlock(&team.lock);
        fn(ctx, 0, 1);
        return 1;
    }
    while (team.started < team.size - 1) {  /* start the workers this size needs */
        const int id = team.started + 1;
        team.born[id] = team.generation;
        if (pthread_create(&team.threads[id], NULL, worker, (void *)(intptr_t)id) != 0) break;
        team.started = id;
    }
    const int members = team.started + 1;
    if (members == 1) {
        pthread_mutex_unlock(&team.lock);
        fn(ctx, 0, 1);
        return 1;
    }
    team.running = 1;
    team.fn = fn;
    team.ctx = ctx;
    team.members = members;
    team.pending = members - 1;
    team.joined = 0;
    __atomic_add_fetch(&team.generation, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&team.wake);
    pthread_mutex_unlock(&team.lock);

    fn(ctx, 0, members);

    /* The caller took every chunk the others did not claim, so the region's
     * work is done: workers that have not taken it up yet (asleep when it
     * began: a streamed step after a pause) skip it instead of being waited
     * for; only those inside it are. */
    pthread_mutex_lock(&team.lock);
    team.closed = team.generation;
    team.pending -= (members - 1) - team.joined;
    while (team.pending > 0) pthread_cond_wait(&team.finished, &team.lock);
    team.running = 0;
    pthread_cond_broadcast(&team.idle);
    pthread_mutex_unlock(&team.lock);
    return members;
}

/* ---- chunked phases ---------------------------------------------------------- */

int fbp_phase_claim(fbp_phases *ph, int p, int chunks, int member, int members, int *cursor)
{
    /* member m owns chunks [lo, hi): those c with c·members/chunks == m */
    if (member > 0 && __atomic_load_n(&ph->solo, __ATOMIC_ACQUIRE)) return -1;
    const int lo = (int)(((int64_t)member * chunks + members - 1) / members);
    while (*cursor < chunks) {
        const int c = (lo + *cursor) % chunks;
        (*cursor)++;
        /* claimed unless some member claimed it in this phase or a later one (a
         * late member must not take what was done while it was away) */
        int old = __atomic_load_n(&ph->claim[c], __ATOMIC_ACQUIRE);
        while (old < p)
            if (__atomic_compare_exchange_n(&ph->claim[c], &old, p, 0, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE))
                return c;
    }
    return -1;
}

void fbp_phase_done(fbp_phases *ph)
{
    __atomic_add_fetch(&ph->done, 1, __ATOMIC_RELEASE);
}


void fbp_phase_wait(fbp_phases *ph, int64_t total, int64_t busy_ns)
{
    int spins = 0, yields = 0;
    int64_t began = 0;
    const int64_t stall = busy_ns <= 0 ? INT64_MAX
                          : 4 * busy_ns > FBP_TEAM_STALL_NS ? 4 * busy_ns : FBP_TEAM_STALL_NS;
    while (__atomic_load_n(&ph->done, __ATOMIC_ACQUIRE) < total) {
        if (spins < SPINS) {
            spins++;
            cpu_relax();
            continue;
        }
        if (began == 0) began = fbp_team_now_ns();
        else if (stall != INT64_MAX && !ph->solo && fbp_team_now_ns() - began > stall) {
            __atomic_store_n(&ph->solo, 1, __ATOMIC_RELEASE);
            __atomic_store_n(&team.stalled_at, fbp_team_now_ns(), __ATOMIC_RELAXED);
        }
        if (yields < YIELDS) {
            yields++;
            sched_yield();
        } else {
            const struct timespec nap = {0, NAP_NS};
            nanosleep(&nap, NULL);
        }
    }
}

void fbp_phase_fail(fbp_phases *ph, int status)
{
    int expected = 0;
    __atomic_compare_exchange_n(&ph->status, &expected, status, 0, __ATOMIC_ACQ_REL,
                                __ATOMIC_ACQUIRE);
}
