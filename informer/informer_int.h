/*
 * Private declarations shared by the files of informer/: lock wrappers,
 * the exponential backoff, and the per-handler event processor.
 * Nothing here is part of the public API; names carry the kc__ prefix.
 */
#ifndef KC_INFORMER_INT_H
#define KC_INFORMER_INT_H

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "kc_informer.h"

/* ---- lock wrappers: a pthread error is a bug, so it aborts ---- */

static inline void kc__mu_lock(pthread_mutex_t *m)
{
    if (pthread_mutex_lock(m) != 0)
        abort();
}

static inline void kc__mu_unlock(pthread_mutex_t *m)
{
    if (pthread_mutex_unlock(m) != 0)
        abort();
}

/* Initialise a mutex; error-checking in debug builds (NDEBUG unset). */
int kc__mu_init(pthread_mutex_t *m);
/* Condition variable on CLOCK_MONOTONIC. */
int kc__cond_init(pthread_cond_t *c);
/* Wait until signalled or until the monotonic deadline (ns, kc_now_ns
 * clock; 0 = no deadline).  Returns 0, or ETIMEDOUT. */
int kc__cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, uint64_t deadline_ns);

/* ---- small PRNG (xorshift64*), one per owner, no shared state ---- */

static inline uint64_t kc__rand_next(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform double in [0, 1). */
static inline double kc__rand_unit(uint64_t *s)
{
    return (double)(kc__rand_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- exponential backoff with jitter ----
 *
 * Delay n (counting from 0 after a reset) is drawn uniformly from
 * (d/2, d] with d = min(initial * 2^n, max), so delays never exceed max and
 * clients that failed together spread out.  When no failure has been
 * reported for reset_after_ns (a stable period), the next failure starts
 * again from initial.  Not thread-safe: one owner thread. */
typedef struct kc__backoff {
    uint64_t initial_ns;
    uint64_t max_ns;
    uint64_t reset_after_ns;
    uint64_t cur_ns;          /* d for the next failure */
    uint64_t last_fail_ns;    /* 0: never failed */
    uint64_t rng;
} kc__backoff_t;

void kc__backoff_init(kc__backoff_t *b, long initial_ms, long max_ms,
                      long reset_after_ms, uint64_t seed);
/* A failure happened at now_ns: returns how long to wait (ns). */
uint64_t kc__backoff_next(kc__backoff_t *b, uint64_t now_ns);
/* Forget past failures (e.g. after a long stable run). */
void kc__backoff_reset(kc__backoff_t *b);

/* Token-bucket reservation at an explicit time (for tests). */
uint64_t kc__relist_budget_reserve_at(kc_relist_budget_t *b, uint64_t now_ns);

/* ---- per-handler event processor ----
 *
 * One per registered handler, with its own thread.  The informer pushes
 * events; they coalesce per key while pending (see processor.c for the
 * rules) and the thread delivers them outside every lock. */
typedef struct kc__proc kc__proc_t;

/* Copies *h.  backlog_max is the bound on pending keys (>= 1). */
int kc__proc_new(const kc_handler_t *h, size_t backlog_max, const kc_logger_t *log,
                 kc__proc_t **out);
int kc__proc_start(kc__proc_t *p);
/* Push events.  Objects are borrowed: the processor takes its own
 * references.  Blocks while the backlog is full and the key has no pending
 * entry; returns KC_ESTOPPED if the processor stops meanwhile. */
int kc__proc_add(kc__proc_t *p, kc_obj_t *obj);
int kc__proc_update(kc__proc_t *p, kc_obj_t *old, kc_obj_t *new_obj);
int kc__proc_delete(kc__proc_t *p, kc_obj_t *obj, int final_state_unknown);
/* Wait until nothing is pending or being delivered; 0 or KC_ETIMEOUT. */
int kc__proc_wait_idle(kc__proc_t *p, long timeout_ms);
/* Stop the thread after its current callback, drop what is pending, join.
 * Idempotent. */
void kc__proc_stop(kc__proc_t *p);
/* Stops if needed, then frees.  NULL allowed. */
void kc__proc_free(kc__proc_t *p);
void kc__proc_stats(kc__proc_t *p, kc_handler_stats_t *out);

#endif
