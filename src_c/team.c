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
#define WORKER_SPINS 20000      /* a worker's spin for the next region before it sleeps, */
#define WORKER_YIELD_EVERY 64   /* yielding its core now and then: when it shares one with
                                   its caller (another process holds the other), the
                                   caller's Python between two regions runs meanwhile */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* A region's hand-overs avoid the mutex: a spinning worker sees the new
 * generation, reads the region with atomic loads and joins it by taking one
 * of its tickets; it reports the end through `finished`, and the caller spins
 * for that before it sleeps. A futex wake-up costs a VM microseconds, and a
 * streamed step (fastbp/_step.py) is one region of a few tens of µs. */
static struct {
    pthread_mutex_t lock;           /* guards every field below but the atomic ones */
    pthread_cond_t wake;            /* workers: a new region (or exit) */
    pthread_cond_t finished_cv;     /* the caller, asleep: a worker finished the region */
    pthread_cond_t idle;            /* set_size: no region in flight */
    int size;                       /* members wanted (the caller included) */
    int started;                    /* workers alive: ids 1 .. started */
    int exit_from;                  /* workers with id >= exit_from leave */
    int running;                    /* a region is in flight */
    unsigned long generation;       /* bumped by each region (atomic; written under lock) */
    fbp_team_fn fn;                 /* the region (atomic; written before generation) */
    void *ctx;
    int members;
    uint64_t tickets;               /* (generation << 16) | places left: a worker joins by
                                       taking one; the caller closes the region by taking
                                       the rest (atomic) */
    int finished;                   /* workers that joined and returned (atomic) */
    int caller_waiting;             /* the caller sleeps on finished_cv (atomic) */
    pthread_t threads[FBP_TEAM_MAX];
    unsigned long born[FBP_TEAM_MAX];   /* the generation when each worker was started */
    int64_t stalled_at;             /* when a region last went solo (atomic) */
    int64_t backoff_ns;             /* how long regions run alone after it (atomic) */
    int stall_streak;               /* stalls since a region last completed on the team
                                       (atomic) */
    long stalls;                    /* stalls so far (atomic) */
    long requests;                  /* fbp_team_run calls so far (atomic) */
} team = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
          PTHREAD_COND_INITIALIZER, 1, 0, FBP_TEAM_MAX, 0, 0, NULL, NULL, 1, 0, 0, 0, {0}, {0}, 0,
          FBP_TEAM_BACKOFF_NS, 0, 0, 0};

/* A member was held up (another process has its core): the regions of the
 * back-off that follows run on their callers alone. Each stall with no team
 * region completed since the last one doubles the back-off (the core is still
 * taken: each retry costs a stall); a region that completes on the team
 * starts it over (a passing burst, such as another runtime's threads spinning
 * down, costs one short back-off). Races between members only blur the length
 * of one back-off. */
static void team_note_stall(void)
{
    const int streak = __atomic_add_fetch(&team.stall_streak, 1, __ATOMIC_RELAXED);
    int64_t backoff = FBP_TEAM_BACKOFF_NS;
    for (int i = 1; i < streak && 2 * backoff <= FBP_TEAM_BACKOFF_MAX_NS; i++) backoff *= 2;
    __atomic_store_n(&team.backoff_ns, backoff, __ATOMIC_RELAXED);
    __atomic_add_fetch(&team.stalls, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&team.stalled_at, fbp_team_now_ns(), __ATOMIC_RELAXED);
}

#define TICKET_BITS 16              /* FBP_TEAM_MAX < 2^16 */
#define TICKET_PLACES(t) ((int)((t) & ((1u << TICKET_BITS) - 1)))  /* places left */

void fbp_team_stall_state(int64_t *ago_ns, int64_t *backoff_ns)
{
    const int64_t at = __atomic_load_n(&team.stalled_at, __ATOMIC_RELAXED);
    *ago_ns = at ? fbp_team_now_ns() - at : -1;
    *backoff_ns = __atomic_load_n(&team.backoff_ns, __ATOMIC_RELAXED);
}

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
        /* spin a little for the next region (a forward is followed by its
         * backward, a streamed step by the next), then sleep */
        unsigned long g = seen;
        for (int i = 0; i < WORKER_SPINS &&
                        (g = __atomic_load_n(&team.generation, __ATOMIC_ACQUIRE)) == seen; i++) {
            cpu_relax();
            if (i % WORKER_YIELD_EVERY == WORKER_YIELD_EVERY - 1) sched_yield();
        }
        if (g == seen) {
            pthread_mutex_lock(&team.lock);
            while (team.generation == seen && id < team.exit_from)
                pthread_cond_wait(&team.wake, &team.lock);
            const int leave = id >= team.exit_from;
            g = team.generation;
            pthread_mutex_unlock(&team.lock);
            if (leave) return NULL;
        }
        seen = g;
        const fbp_team_fn fn = __atomic_load_n(&team.fn, __ATOMIC_RELAXED);
        void *ctx = __atomic_load_n(&team.ctx, __ATOMIC_RELAXED);
        const int members = __atomic_load_n(&team.members, __ATOMIC_RELAXED);
        if (id >= members) continue;            /* not part of this region */
        /* join region g unless its caller closed it (it finished alone while
         * this worker slept, or a later region began: then what was read above
         * is not used) */
        uint64_t t = __atomic_load_n(&team.tickets, __ATOMIC_ACQUIRE);
        int joined = 0;
        while (!joined && t >> TICKET_BITS == (uint64_t)g && TICKET_PLACES(t) > 0)
            joined = __atomic_compare_exchange_n(&team.tickets, &t, t - 1, 0, __ATOMIC_ACQ_REL,
                                                 __ATOMIC_ACQUIRE);
        if (!joined) continue;
        fn(ctx, id, members);
        __atomic_add_fetch(&team.finished, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&team.caller_waiting, __ATOMIC_SEQ_CST)) {
            pthread_mutex_lock(&team.lock);
            pthread_cond_signal(&team.finished_cv);
            pthread_mutex_unlock(&team.lock);
        }
    }
}

/* After fork() only the forking thread exists in the child: start over. */
static void team_after_fork_child(void)
{
    pthread_mutex_init(&team.lock, NULL);
    pthread_cond_init(&team.wake, NULL);
    pthread_cond_init(&team.finished_cv, NULL);
    pthread_cond_init(&team.idle, NULL);
    team.started = 0;
    team.exit_from = FBP_TEAM_MAX;
    team.running = 0;
    team.tickets = 0;
    team.finished = 0;
    team.caller_waiting = 0;
    team.stalled_at = 0;
    team.backoff_ns = FBP_TEAM_BACKOFF_NS;
    team.stall_streak = 0;
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

long fbp_team_requests(void)
{
    return __atomic_load_n(&team.requests, __ATOMIC_RELAXED);
}

int fbp_team_run(fbp_team_fn fn, void *ctx)
{
    pthread_once(&fork_once, register_fork_handler);
    __atomic_add_fetch(&team.requests, 1, __ATOMIC_RELAXED);
    const int64_t stalled_at = __atomic_load_n(&team.stalled_at, __ATOMIC_RELAXED);
    if (stalled_at && fbp_team_now_ns() - stalled_at
                      < __atomic_load_n(&team.backoff_ns, __ATOMIC_RELAXED)) {
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
    __atomic_store_n(&team.fn, fn, __ATOMIC_RELAXED);
    __atomic_store_n(&team.ctx, ctx, __ATOMIC_RELAXED);
    __atomic_store_n(&team.members, members, __ATOMIC_RELAXED);
    __atomic_store_n(&team.finished, 0, __ATOMIC_RELAXED);
    const unsigned long g = team.generation + 1;
    __atomic_store_n(&team.tickets, ((uint64_t)g << TICKET_BITS) | (uint64_t)(members - 1),
                     __ATOMIC_RELEASE);
    __atomic_store_n(&team.generation, g, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&team.wake);     /* the sleepers (no system call without any) */
    pthread_mutex_unlock(&team.lock);

    const long stalls_before = __atomic_load_n(&team.stalls, __ATOMIC_RELAXED);
    fn(ctx, 0, members);

    /* The caller took every chunk the others did not claim, so the region's
     * work is done: it closes the region to workers that have not taken it up
     * yet (asleep when it began: a streamed step after a pause), and waits
     * only for those inside it, spinning first. */
    const uint64_t left = __atomic_exchange_n(&team.tickets, (uint64_t)g << TICKET_BITS,
                                              __ATOMIC_ACQ_REL);
    const int joined = members - 1 - TICKET_PLACES(left);
    for (int i = 0; i < SPINS && __atomic_load_n(&team.finished, __ATOMIC_ACQUIRE) < joined; i++)
        cpu_relax();
    pthread_mutex_lock(&team.lock);
    if (__atomic_load_n(&team.finished, __ATOMIC_ACQUIRE) >= joined) {
        /* done on the team, nobody held up: the next stall starts over */
        if (joined > 0 && __atomic_load_n(&team.stalls, __ATOMIC_RELAXED) == stalls_before)
            __atomic_store_n(&team.stall_streak, 0, __ATOMIC_RELAXED);
    } else {
        team_note_stall();          /* a worker that is not running (its core is taken) */
        __atomic_store_n(&team.caller_waiting, 1, __ATOMIC_SEQ_CST);
        while (__atomic_load_n(&team.finished, __ATOMIC_SEQ_CST) < joined)
            pthread_cond_wait(&team.finished_cv, &team.lock);
        __atomic_store_n(&team.caller_waiting, 0, __ATOMIC_SEQ_CST);
    }
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
            team_note_stall();
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
