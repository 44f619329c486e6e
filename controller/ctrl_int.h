/*
 * Private helpers shared by the controller/ files: lock wrappers that abort
 * on a pthread error (error-checking mutexes unless NDEBUG), monotonic
 * condition variables, a capped growable text buffer, and a small string
 * hash.  Everything here is static inline, so nothing is exported from the
 * library.
 */
#ifndef KC_CTRL_INT_H
#define KC_CTRL_INT_H

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline void ctrl_abort(const char *what, int rc)
{
    fprintf(stderr, "kcache: fatal: %s failed: %s\n", what, strerror(rc));
    abort();
}

static inline void ctrl_mutex_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    int rc;

    pthread_mutexattr_init(&a);
#ifndef NDEBUG
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
#endif
    rc = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    if (rc != 0)
        ctrl_abort("pthread_mutex_init", rc);
}

static inline void ctrl_lock(pthread_mutex_t *m)
{
    int rc = pthread_mutex_lock(m);
    if (rc != 0)
        ctrl_abort("pthread_mutex_lock", rc);
}

static inline void ctrl_unlock(pthread_mutex_t *m)
{
    int rc = pthread_mutex_unlock(m);
    if (rc != 0)
        ctrl_abort("pthread_mutex_unlock", rc);
}

/* Condition variables wait on CLOCK_MONOTONIC so wall-clock jumps do not
 * stretch or shorten delays. */
static inline void ctrl_cond_init(pthread_cond_t *c)
{
    pthread_condattr_t a;
    int rc;

    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    rc = pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
    if (rc != 0)
        ctrl_abort("pthread_cond_init", rc);
}

static inline void ctrl_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
    int rc = pthread_cond_wait(c, m);
    if (rc != 0)
        ctrl_abort("pthread_cond_wait", rc);
}

/* Wait until the monotonic deadline (ns).  Returns 0 when signalled (or
 * spuriously woken), ETIMEDOUT when the deadline passed. */
static inline int ctrl_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m,
                                      uint64_t deadline_ns)
{
    struct timespec ts;
    int rc;

    ts.tv_sec = (time_t)(deadline_ns / 1000000000ull);
    ts.tv_nsec = (long)(deadline_ns % 1000000000ull);
    rc = pthread_cond_timedwait(c, m, &ts);
    if (rc != 0 && rc != ETIMEDOUT)
        ctrl_abort("pthread_cond_timedwait", rc);
    return rc;
}

static inline void ctrl_cond_signal(pthread_cond_t *c) { pthread_cond_signal(c); }
static inline void ctrl_cond_broadcast(pthread_cond_t *c) { pthread_cond_broadcast(c); }

/* FNV-1a. */
static inline uint64_t ctrl_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;

    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 1099511628211ull;
    }
    return h;
}

/* A growable text buffer with a hard cap.  Past the cap every append fails
 * with KC_ETOOBIG (sticky in err). */
typedef struct ctrl_buf {
    char *data;
    size_t len, cap, max;
    int err;
} ctrl_buf_t;

static inline void ctrl_buf_init(ctrl_buf_t *b, size_t max)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->max = max;
    b->err = 0;
}

static inline int ctrl_buf_reserve(ctrl_buf_t *b, size_t extra)
{
    size_t need, ncap;
    char *p;

    if (b->err)
        return b->err;
    need = b->len + extra + 1;
    if (need > b->max) {
        b->err = -1001; /* KC_ETOOBIG */
        return b->err;
    }
    if (need <= b->cap)
        return 0;
    ncap = b->cap ? b->cap : 256;
    while (ncap < need)
        ncap *= 2;
    if (ncap > b->max)
        ncap = b->max;
    p = realloc(b->data, ncap);
    if (p == NULL) {
        b->err = -ENOMEM;
        return b->err;
    }
    b->data = p;
    b->cap = ncap;
    return 0;
}

static inline int ctrl_buf_append(ctrl_buf_t *b, const char *s, size_t n)
{
    if (ctrl_buf_reserve(b, n) != 0)
        return b->err;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static inline int ctrl_buf_puts(ctrl_buf_t *b, const char *s)
{
    return ctrl_buf_append(b, s, strlen(s));
}

static inline int ctrl_buf_printf(ctrl_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline int ctrl_buf_printf(ctrl_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->err)
        return b->err;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return b->err = -EINVAL;
    if (ctrl_buf_reserve(b, (size_t)n) != 0)
        return b->err;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

static inline void ctrl_buf_free(ctrl_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

#endif
