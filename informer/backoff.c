/*
 * Backoff, the relist budget and the lock helpers of informer/.
 *
 * The backoff is owned by one thread (the reflector) and has no lock.  The
 * relist budget is a token bucket shared by many informers: its one mutex
 * protects the token count and the refill time, and nothing is called while
 * it is held.
 */
#include "informer_int.h"

#include <errno.h>
#include <math.h>
#include <time.h>

int kc__mu_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    int rc;

    if (pthread_mutexattr_init(&a) != 0)
        return -ENOMEM;
#ifndef NDEBUG
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
#endif
    rc = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return rc ? -rc : 0;
}

int kc__cond_init(pthread_cond_t *c)
{
    pthread_condattr_t a;
    int rc;

    if (pthread_condattr_init(&a) != 0)
        return -ENOMEM;
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    rc = pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
    return rc ? -rc : 0;
}

int kc__cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, uint64_t deadline_ns)
{
    struct timespec ts;
    int rc;

    if (deadline_ns == 0) {
        if (pthread_cond_wait(c, m) != 0)
            abort();
        return 0;
    }
    /* kc_now_ns is CLOCK_MONOTONIC, the clock the condition was made with. */
    ts.tv_sec = (time_t)(deadline_ns / 1000000000ull);
    ts.tv_nsec = (long)(deadline_ns % 1000000000ull);
    rc = pthread_cond_timedwait(c, m, &ts);
    if (rc != 0 && rc != ETIMEDOUT)
        abort();
    return rc;
}

/* ---------------------------------------------------------------- backoff */

void kc__backoff_init(kc__backoff_t *b, long initial_ms, long max_ms,
                      long reset_after_ms, uint64_t seed)
{
    if (initial_ms <= 0)
        initial_ms = 800;
    if (max_ms < initial_ms)
        max_ms = initial_ms;
    if (reset_after_ms <= 0)
        reset_after_ms = 120000;
    b->initial_ns = (uint64_t)initial_ms * 1000000ull;
    b->max_ns = (uint64_t)max_ms * 1000000ull;
    b->reset_after_ns = (uint64_t)reset_after_ms * 1000000ull;
    b->cur_ns = b->initial_ns;
    b->last_fail_ns = 0;
    b->rng = seed ? seed : 0x853c49e6748fea9bull;
}

void kc__backoff_reset(kc__backoff_t *b)
{
    b->cur_ns = b->initial_ns;
    b->last_fail_ns = 0;
}

uint64_t kc__backoff_next(kc__backoff_t *b, uint64_t now_ns)
{
    uint64_t d, delay;

    if (b->last_fail_ns != 0 && now_ns - b->last_fail_ns >= b->reset_after_ns)
        b->cur_ns = b->initial_ns;
    d = b->cur_ns;
    /* uniform in (d/2, d]: never above max, and spread so that clients that
     * failed together do not retry together */
    delay = d - (uint64_t)(kc__rand_unit(&b->rng) * (double)(d / 2));
    b->cur_ns = d >= b->max_ns / 2 ? b->max_ns : d * 2;
    b->last_fail_ns = now_ns ? now_ns : 1;
    return delay;
}

/* ----------------------------------------------------------- relist budget */

struct kc_relist_budget {
    double per_ns;            /* tokens per nanosecond */
    double burst;
    pthread_mutex_t mu;
    /* protected by mu: */
    double tokens;            /* may go negative: reserved ahead */
    uint64_t last_ns;         /* time tokens was computed for */
};

int kc_relist_budget_new(double per_second, double burst, kc_relist_budget_t **out)
{
    kc_relist_budget_t *b;
    int rc;

    *out = NULL;
    if (!(per_second > 0) || !(burst >= 1) || !isfinite(per_second) || !isfinite(burst))
        return -EINVAL;
    b = calloc(1, sizeof(*b));
    if (b == NULL)
        return -ENOMEM;
    rc = kc__mu_init(&b->mu);
    if (rc != 0) {
        free(b);
        return rc;
    }
    b->per_ns = per_second / 1e9;
    b->burst = burst;
    b->tokens = burst;
    b->last_ns = 0;
    *out = b;
    return 0;
}

void kc_relist_budget_free(kc_relist_budget_t *b)
{
    if (b == NULL)
        return;
    pthread_mutex_destroy(&b->mu);
    free(b);
}

uint64_t kc__relist_budget_reserve_at(kc_relist_budget_t *b, uint64_t now_ns)
{
    double wait;

    kc__mu_lock(&b->mu);
    if (b->last_ns == 0)
        b->last_ns = now_ns;
    if (now_ns > b->last_ns) {
        b->tokens += (double)(now_ns - b->last_ns) * b->per_ns;
        if (b->tokens > b->burst)
            b->tokens = b->burst;
        b->last_ns = now_ns;
    }
    b->tokens -= 1.0;
    wait = b->tokens >= 0 ? 0.0 : -b->tokens / b->per_ns;
    kc__mu_unlock(&b->mu);
    return (uint64_t)wait;
}

uint64_t kc_relist_budget_reserve(kc_relist_budget_t *b)
{
    if (b == NULL)
        return 0;
    return kc__relist_budget_reserve_at(b, kc_now_ns());
}
