/* fastbp's thread team: the second core inside the time loop.
 *
 * A persistent team of pthreads (not OpenMP: it must not fight torch's or
 * OpenBLAS's runtimes in the same process). Its size is set from Python
 * (fastbp.set_num_threads, FASTBP_NUM_THREADS, by default the usable cores);
 * the caller of a parallel region is member 0 and the workers are the rest.
 * Between regions the workers sleep on a condition variable; after a region
 * they spin briefly first, so the backward that follows a forward (or the
 * next streamed step) finds them awake. A region's hand-overs between awake
 * threads are atomic operations only: a worker joins it by taking a ticket,
 * and the caller spins for the joined workers' end before it sleeps; the
 * mutex and the condition variables serve sleepers only (a futex wake-up
 * costs a VM microseconds, a streamed step is one region of a few tens).
 *
 * Work inside a region is split into chunks whose boundaries depend on the
 * problem only, never on the team size, and each chunk is computed the same
 * way whoever computes it: results are bit-identical for every team size.
 * Chunks are claimed (fbp_team_claim), each member first trying the ones it
 * owned before (its weight slices stay in its core's cache), then the rest: a
 * member that another process has descheduled does not stall the step, its
 * partner takes its chunks.
 *
 * Several callers: a region that finds the team busy with another caller's
 * region runs on its caller alone (one member), with the same results.
 */
#ifndef FASTBP_TEAM_H
#define FASTBP_TEAM_H

#include <stdint.h>

#define FBP_TEAM_MAX 64             /* members at most */
#define FBP_TEAM_MAX_CHUNKS 256     /* chunks of one phase at most */
#define FBP_TEAM_THREAD_NAME "fastbp-team"     /* the workers' name (Linux: /proc/.../comm) */
#define FBP_TEAM_STALL_NS 300000L   /* a wait this long (0.3 ms) makes a region solo */
#define FBP_TEAM_BACKOFF_NS 100000000L  /* and the regions of the next 0.1 s run alone; */
#define FBP_TEAM_BACKOFF_MAX_NS 3200000000L /* doubled, up to 3.2 s, for each stall with
                                               no region completed on the team since the
                                               last (a core held for good by another
                                               process) */

/* Elements per block when n elements are cut into blocks of min_size at least
 * and max_blocks at most: max(min_size, ceil(n / max_blocks)). Blocks that
 * depend on the problem only, never on the team size. */
static inline int fbp_block_size(int n, int min_size, int max_blocks)
{
    const int size = (int)(((int64_t)n + max_blocks - 1) / max_blocks);
    return size > min_size ? size : min_size;
}

/* fn(ctx, member, members) runs on every member of a region. */
typedef void (*fbp_team_fn)(void *ctx, int member, int members);

/* Set the team size (1 .. FBP_TEAM_MAX; 1: no workers); returns FBP_OK or
 * FBP_ERR_ARG. Waits for a running region to end; workers beyond the new size
 * exit, new ones start lazily at the next region. */
int fbp_team_set_size(int n);
int fbp_team_size(void);

/* Run fn on the team and return when every member has returned. Runs on the
 * caller alone when the team has one member, is busy, or a region stalled on a
 * held-up member less than the back-off ago, after which the team is tried
 * again. The back-off is FBP_TEAM_BACKOFF_NS, doubled for stalls in a row; a
 * caller that waited past its spin for a worker to leave the region counts
 * as a stall too. Returns the number of members that ran it. */
int fbp_team_run(fbp_team_fn fn, void *ctx);
/* How many regions were asked of the team so far (fbp_team_run calls, however
 * they ran): which calls are large enough to share, for tests. */
long fbp_team_requests(void);

/* ---- chunked phases inside a region -----------------------------------------
 * A phase has `chunks` pieces of work (≤ FBP_TEAM_MAX_CHUNKS). Every member
 * calls fbp_phase_claim until it returns −1, computing each chunk it gets,
 * then fbp_phase_done for each, then fbp_phase_wait: it returns once every
 * chunk of the phase is done. Phases are numbered 1, 2, ... within a region
 * (a fbp_phases shared by the members, zeroed before the region). */
typedef struct {
    int claim[FBP_TEAM_MAX_CHUNKS];     /* the last phase number that claimed the chunk */
    int64_t done;                       /* chunks done, over all phases so far */
    int status;                         /* the first error any member met (0: none) */
    int solo;                           /* set once a wait stalled: member 0 does the rest */
} fbp_phases;

/* The next chunk of phase p (p ≥ 1) for `member` of `members`: its own chunks
 * first (a fixed share: chunk c belongs to member c·members/chunks), then any
 * left; −1 when none is left, and always for members but 0 once the region
 * went solo. */
int fbp_phase_claim(fbp_phases *ph, int p, int chunks, int member, int members, int *cursor);
void fbp_phase_done(fbp_phases *ph);
/* Wait until `total` chunks are done since the region began (spin, then yield,
 * then sleep in short naps). busy_ns: how long the waiting member itself spent
 * on its chunks of the phase (0: it got none). A wait longer than four times
 * that, and than FBP_TEAM_STALL_NS, means a member is held up (another process
 * has its core): the region goes solo, member 0 claims every later chunk, and
 * the call costs about what it costs on one thread instead of a stall per
 * step. Which member computes a chunk never changes a result. */
void fbp_phase_wait(fbp_phases *ph, int64_t total, int64_t busy_ns);
/* How long ago a member was last held up (−1: never since the start or the
 * last fork) and the back-off it set, in nanoseconds: diagnostics. */
void fbp_team_stall_state(int64_t *ago_ns, int64_t *backoff_ns);
/* A monotonic clock in nanoseconds, for busy_ns. */
int64_t fbp_team_now_ns(void);

/* ---- one member's walk through the phases --------------------------------------
 *     fbp_phase_state s = fbp_phase_start(member, members);
 *     fbp_phase_begin(&s);
 *     while ((k = fbp_phase_next(ph, &s, chunks)) >= 0) { work on chunk k; fbp_phase_done(ph); }
 *     fbp_phase_end(ph, &s, chunks);            (returns when the phase is complete) */
typedef struct {
    int p;              /* the current phase number */
    int64_t total;      /* chunks of every phase so far */
    int cursor;
    int member, members;
    int got;            /* chunks this member claimed in the phase */
    int64_t began;      /* when it began the phase (teams only) */
} fbp_phase_state;

static inline fbp_phase_state fbp_phase_start(int member, int members)
{
    fbp_phase_state s = {0, 0, 0, member, members, 0, 0};
    return s;
}

static inline void fbp_phase_begin(fbp_phase_state *s)
{
    s->p++;
    s->cursor = 0;
    s->got = 0;
    if (s->members > 1) s->began = fbp_team_now_ns();
}

static inline int fbp_phase_next(fbp_phases *ph, fbp_phase_state *s, int chunks)
{
    const int k = fbp_phase_claim(ph, s->p, chunks, s->member, s->members, &s->cursor);
    if (k >= 0) s->got++;
    return k;
}

static inline void fbp_phase_end(fbp_phases *ph, fbp_phase_state *s, int chunks)
{
    s->total += chunks;
    /* the time this member computed, if it got a chunk: what tells a held-up
     * partner from a busy one */
    int64_t busy = 0;
    if (s->members > 1 && s->got > 0 && __atomic_load_n(&ph->done, __ATOMIC_ACQUIRE) < s->total)
        busy = fbp_team_now_ns() - s->began;
    fbp_phase_wait(ph, s->total, busy);
}
/* Record a failure (the first one wins); members keep going through the
 * phases, so nobody waits for ever. */
void fbp_phase_fail(fbp_phases *ph, int status);

#endif /* FASTBP_TEAM_H */
