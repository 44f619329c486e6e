/*
 * The work queue: client-go's workqueue (dirty set + processing set + FIFO),
 * its delaying queue (a min-heap of items waiting out a delay) and its
 * default controller rate limiter (max of per-item exponential backoff and
 * an overall token bucket), in one structure under one lock.
 *
 * Each distinct key has one item_t, found through a hash table, that lives
 * while the key is dirty (queued or to be requeued), processing, waiting in
 * the heap, or has a non-zero failure count; it is freed as soon as none of
 * these hold.  Invariants, all under q->lock:
 *   in_fifo  <=> dirty && !processing
 *   heap_idx != NONE <=> waiting; the heap keeps one entry per key with the
 *                        earliest deadline asked for.
 *   rl_pending: a rate-limited add happened since the item was last handed
 *               out by get; a further rate-limited add before that does not
 *               count as another failure.
 *
 * There is no timer thread: get() moves items whose delay has passed from
 * the heap to the FIFO and sleeps on a CLOCK_MONOTONIC condition variable
 * until the earliest deadline, so no one busy-waits.  add/len also promote
 * due items so the depth gauge stays current.
 *
 * Locking: q->lock protects everything below it in struct kc_workqueue.
 * Metric updates take the metric family's own lock after q->lock (order:
 * queue, then family); the collect callback computes under q->lock and
 * updates gauges after releasing it.
 */
#include "kc_controller.h"
#include "ctrl_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NONE ((size_t)-1)

typedef struct item {
    char *key;
    uint64_t hash;
    struct item *hnext;     /* hash chain */
    struct item *qnext;     /* FIFO link */
    bool dirty, processing, in_fifo, rl_pending;
    size_t heap_idx;        /* NONE when not waiting */
    uint64_t ready_ns;      /* when waiting: deadline */
    int failures;
    uint64_t added_ns;      /* when it became dirty (queue latency) */
    uint64_t start_ns;      /* when get handed it out (work duration) */
} item_t;

struct kc_workqueue {
    char *name;
    uint64_t base_ns, max_ns;
    double qps;
    int burst;
    kc_metrics_t *reg;
    kc_metric_t *m_depth, *m_adds, *m_latency, *m_work, *m_retries, *m_unfinished,
        *m_longest;

    pthread_mutex_t lock;
    /* protected by lock: */
    pthread_cond_t cond;        /* FIFO non-empty, heap changed, shutdown */
    pthread_cond_t drained;     /* nprocessing reached 0 */
    item_t **buckets;
    size_t nbuckets, nitems;
    item_t *head, *tail;
    size_t depth, nprocessing;
    item_t **heap;
    size_t nheap, capheap;
    double tokens;
    uint64_t tokens_ns;
    bool shutting_down;
};

/* ------------------------------------------------------------------ */
/* hash table                                                          */

static item_t *lookup(kc_workqueue_t *q, const char *key, uint64_t h)
{
    for (item_t *it = q->buckets[h % q->nbuckets]; it; it = it->hnext)
        if (it->hash == h && strcmp(it->key, key) == 0)
            return it;
    return NULL;
}

static void rehash(kc_workqueue_t *q)
{
    size_t nb = q->nbuckets * 2;
    item_t **nbk = calloc(nb, sizeof(*nbk));

    if (nbk == NULL)
        return; /* keep the old table: slower, still correct */
    for (size_t i = 0; i < q->nbuckets; i++) {
        item_t *it = q->buckets[i];
        while (it) {
            item_t *next = it->hnext;
            it->hnext = nbk[it->hash % nb];
            nbk[it->hash % nb] = it;
            it = next;
        }
    }
    free(q->buckets);
    q->buckets = nbk;
    q->nbuckets = nb;
}

static item_t *lookup_or_create(kc_workqueue_t *q, const char *key)
{
    uint64_t h = ctrl_hash(key);
    item_t *it = lookup(q, key, h);

    if (it != NULL)
        return it;
    it = calloc(1, sizeof(*it));
    if (it == NULL)
        return NULL;
    it->key = strdup(key);
    if (it->key == NULL) {
        free(it);
        return NULL;
    }
    it->hash = h;
    it->heap_idx = NONE;
    it->hnext = q->buckets[h % q->nbuckets];
    q->buckets[h % q->nbuckets] = it;
    q->nitems++;
    if (q->nitems > q->nbuckets * 2)
        rehash(q);
    return it;
}

/* Free it if nothing refers to it any more. */
static void maybe_release(kc_workqueue_t *q, item_t *it)
{
    item_t **pp;

    if (it->dirty || it->processing || it->heap_idx != NONE || it->failures > 0)
        return;
    for (pp = &q->buckets[it->hash % q->nbuckets]; *pp != it; pp = &(*pp)->hnext)
        ;
    *pp = it->hnext;
    q->nitems--;
    free(it->key);
    free(it);
}

/* ------------------------------------------------------------------ */
/* heap of waiting items, by ready_ns                                   */

static void heap_swap(kc_workqueue_t *q, size_t a, size_t b)
{
    item_t *t = q->heap[a];
    q->heap[a] = q->heap[b];
    q->heap[b] = t;
    q->heap[a]->heap_idx = a;
    q->heap[b]->heap_idx = b;
}

static void heap_up(kc_workqueue_t *q, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (q->heap[p]->ready_ns <= q->heap[i]->ready_ns)
            break;
        heap_swap(q, p, i);
        i = p;
    }
}

static void heap_down(kc_workqueue_t *q, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < q->nheap && q->heap[l]->ready_ns < q->heap[m]->ready_ns)
            m = l;
        if (r < q->nheap && q->heap[r]->ready_ns < q->heap[m]->ready_ns)
            m = r;
        if (m == i)
            break;
        heap_swap(q, i, m);
        i = m;
    }
}

static int heap_push(kc_workqueue_t *q, item_t *it)
{
    if (q->nheap == q->capheap) {
        size_t nc = q->capheap ? q->capheap * 2 : 16;
        item_t **p = realloc(q->heap, nc * sizeof(*p));
        if (p == NULL)
            return -ENOMEM;
        q->heap = p;
        q->capheap = nc;
    }
    it->heap_idx = q->nheap;
    q->heap[q->nheap++] = it;
    heap_up(q, it->heap_idx);
    return 0;
}

static void heap_remove(kc_workqueue_t *q, item_t *it)
{
    size_t i = it->heap_idx, last = q->nheap - 1;

    if (i != last) {
        heap_swap(q, i, last);
        q->nheap--;
        heap_down(q, i);
        heap_up(q, i);
    } else {
        q->nheap--;
    }
    it->heap_idx = NONE;
}

/* ------------------------------------------------------------------ */
/* core operations, q->lock held                                        */

static const char *const *labels(kc_workqueue_t *q, const char **v)
{
    v[0] = q->name;
    v[1] = q->name;
    return v;
}

static void set_depth(kc_workqueue_t *q)
{
    const char *v[2];
    kc_metric_set(q->m_depth, labels(q, v), (double)q->depth);
}

static void fifo_push(kc_workqueue_t *q, item_t *it)
{
    it->qnext = NULL;
    if (q->tail)
        q->tail->qnext = it;
    else
        q->head = it;
    q->tail = it;
    it->in_fifo = true;
    q->depth++;
    set_depth(q);
}

static item_t *fifo_pop(kc_workqueue_t *q)
{
    item_t *it = q->head;

    if (it == NULL)
        return NULL;
    q->head = it->qnext;
    if (q->head == NULL)
        q->tail = NULL;
    it->qnext = NULL;
    it->in_fifo = false;
    q->depth--;
    set_depth(q);
    return it;
}

/* client-go Add: dedup while dirty; defer while processing. */
static void add_locked(kc_workqueue_t *q, item_t *it, uint64_t now)
{
    const char *v[2];

    if (it->dirty)
        return;
    it->dirty = true;
    it->added_ns = now;
    kc_metric_inc(q->m_adds, labels(q, v));
    if (it->processing)
        return;
    fifo_push(q, it);
    ctrl_cond_signal(&q->cond);
}

/* Move items whose delay has passed to the FIFO, earliest first. */
static void promote(kc_workqueue_t *q, uint64_t now)
{
    while (q->nheap > 0 && q->heap[0]->ready_ns <= now) {
        item_t *it = q->heap[0];
        heap_remove(q, it);
        add_locked(q, it, now);
    }
}

/* Schedule it at now+delay; keeps an earlier deadline already pending. */
static int schedule_locked(kc_workqueue_t *q, item_t *it, uint64_t now, uint64_t delay)
{
    uint64_t ready = now + delay;
    int rc;

    if (delay == 0) {
        add_locked(q, it, now);
        return 0;
    }
    if (it->heap_idx != NONE) {
        if (ready < it->ready_ns) {
            it->ready_ns = ready;
            heap_up(q, it->heap_idx);
            ctrl_cond_broadcast(&q->cond);
        }
        return 0;
    }
    it->ready_ns = ready;
    rc = heap_push(q, it);
    if (rc == 0 && it->heap_idx == 0)
        ctrl_cond_broadcast(&q->cond); /* new earliest deadline */
    return rc;
}

/* golang.org/x/time/rate Reserve: take a token now, possibly going into
 * debt; the debt is how long this item must wait. */
static uint64_t bucket_delay(kc_workqueue_t *q, uint64_t now)
{
    if (q->qps <= 0)
        return 0;
    q->tokens += (double)(now - q->tokens_ns) / 1e9 * q->qps;
    if (q->tokens > q->burst)
        q->tokens = q->burst;
    q->tokens_ns = now;
    q->tokens -= 1.0;
    if (q->tokens >= 0)
        return 0;
    return (uint64_t)(-q->tokens / q->qps * 1e9);
}

static uint64_t item_backoff(kc_workqueue_t *q, int exp)
{
    double d;

    if (exp >= 63)
        return q->max_ns;
    d = (double)q->base_ns * (double)(1ull << exp); /* exp < 63 */
    if (d >= (double)q->max_ns)
        return q->max_ns;
    return (uint64_t)d;
}

/* ------------------------------------------------------------------ */
/* metrics                                                              */

static void collect(void *ud)
{
    kc_workqueue_t *q = ud;
    uint64_t now = kc_now_ns();
    double unfinished = 0, longest = 0;
    const char *v[2];

    ctrl_lock(&q->lock);
    promote(q, now);
    for (size_t i = 0; i < q->nbuckets; i++)
        for (item_t *it = q->buckets[i]; it; it = it->hnext)
            if (it->processing) {
                double s = (double)(now - it->start_ns) / 1e9;
                unfinished += s;
                if (s > longest)
                    longest = s;
            }
    ctrl_unlock(&q->lock);
    kc_metric_set(q->m_unfinished, labels(q, v), unfinished);
    kc_metric_set(q->m_longest, labels(q, v), longest);
}

static int register_metrics(kc_workqueue_t *q)
{
    static const char *const ln[] = { "name", "controller", NULL };
    /* client-go: prometheus.ExponentialBuckets(10e-9, 10, 10) */
    static const double b[] = { 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1, 10 };
    kc_metrics_t *m = q->reg;
    const char *v[2];
    int rc;

    if ((rc = kc_metrics_gauge(m, "workqueue_depth", "Current depth of workqueue", ln,
                               &q->m_depth)) != 0 ||
        (rc = kc_metrics_counter(m, "workqueue_adds_total",
                                 "Total number of adds handled by workqueue", ln,
                                 &q->m_adds)) != 0 ||
        (rc = kc_metrics_histogram(m, "workqueue_queue_duration_seconds",
                                   "How long in seconds an item stays in workqueue before being requested",
                                   ln, b, 10, &q->m_latency)) != 0 ||
        (rc = kc_metrics_histogram(m, "workqueue_work_duration_seconds",
                                   "How long in seconds processing an item from workqueue takes.",
                                   ln, b, 10, &q->m_work)) != 0 ||
        (rc = kc_metrics_counter(m, "workqueue_retries_total",
                                 "Total number of retries handled by workqueue", ln,
                                 &q->m_retries)) != 0 ||
        (rc = kc_metrics_gauge(m, "workqueue_unfinished_work_seconds",
                               "How many seconds of work has been done that is in progress and hasn't been observed by work_duration. Large values indicate stuck threads. One can deduce the number of stuck threads by observing the rate at which this increases.",
                               ln, &q->m_unfinished)) != 0 ||
        (rc = kc_metrics_gauge(m, "workqueue_longest_running_processor_seconds",
                               "How many seconds has the longest running processor for workqueue been running.",
                               ln, &q->m_longest)) != 0)
        return rc;
    /* Make every series exist from the start, as client-go does. */
    labels(q, v);
    kc_metric_set(q->m_depth, v, 0);
    kc_metric_add(q->m_adds, v, 0);
    kc_metric_add(q->m_retries, v, 0);
    kc_metric_set(q->m_unfinished, v, 0);
    kc_metric_set(q->m_longest, v, 0);
    return kc_metrics_add_collector(m, collect, q);
}

/* ------------------------------------------------------------------ */
/* public API                                                           */

int kc_workqueue_new(const kc_workqueue_opts_t *o, kc_workqueue_t **out)
{
    kc_workqueue_opts_t def = KC_WORKQUEUE_OPTS_INIT;
    kc_workqueue_t *q;
    int rc = -ENOMEM;

    if (out == NULL)
        return -EINVAL;
    if (o == NULL)
        o = &def;
    if (o->base_delay_ns == 0 || o->max_delay_ns < o->base_delay_ns || o->burst < 0)
        return -EINVAL;
    q = calloc(1, sizeof(*q));
    if (q == NULL)
        return -ENOMEM;
    ctrl_mutex_init(&q->lock);
    ctrl_cond_init(&q->cond);
    ctrl_cond_init(&q->drained);
    q->name = strdup(o->name ? o->name : "");
    q->nbuckets = 64;
    q->buckets = calloc(q->nbuckets, sizeof(item_t *));
    if (q->name == NULL || q->buckets == NULL)
        goto fail;
    q->base_ns = o->base_delay_ns;
    q->max_ns = o->max_delay_ns;
    q->qps = o->qps;
    q->burst = o->burst;
    q->tokens = o->burst;
    q->tokens_ns = kc_now_ns();
    q->reg = o->metrics;
    if (q->reg != NULL && (rc = register_metrics(q)) != 0) {
        q->reg = NULL;
        goto fail;
    }
    *out = q;
    return 0;
fail:
    free(q->buckets);
    free(q->name);
    pthread_cond_destroy(&q->cond);
    pthread_cond_destroy(&q->drained);
    pthread_mutex_destroy(&q->lock);
    free(q);
    return rc;
}

void kc_workqueue_free(kc_workqueue_t *q)
{
    if (q == NULL)
        return;
    kc_workqueue_shutdown(q);
    if (q->reg)
        kc_metrics_remove_collector(q->reg, collect, q);
    for (size_t i = 0; i < q->nbuckets; i++) {
        item_t *it = q->buckets[i];
        while (it) {
            item_t *next = it->hnext;
            free(it->key);
            free(it);
            it = next;
        }
    }
    free(q->buckets);
    free(q->heap);
    free(q->name);
    pthread_cond_destroy(&q->cond);
    pthread_cond_destroy(&q->drained);
    pthread_mutex_destroy(&q->lock);
    free(q);
}

int kc_workqueue_add_after(kc_workqueue_t *q, const char *key, uint64_t delay_ns)
{
    uint64_t now = kc_now_ns();
    item_t *it;
    int rc;

    if (q == NULL || key == NULL)
        return -EINVAL;
    ctrl_lock(&q->lock);
    if (q->shutting_down) {
        ctrl_unlock(&q->lock);
        return KC_ESTOPPED;
    }
    promote(q, now);
    it = lookup_or_create(q, key);
    if (it == NULL) {
        ctrl_unlock(&q->lock);
        return -ENOMEM;
    }
    rc = schedule_locked(q, it, now, delay_ns);
    maybe_release(q, it);
    ctrl_unlock(&q->lock);
    return rc;
}

int kc_workqueue_add(kc_workqueue_t *q, const char *key)
{
    return kc_workqueue_add_after(q, key, 0);
}

int kc_workqueue_add_rate_limited(kc_workqueue_t *q, const char *key, uint64_t *delay_out)
{
    uint64_t now = kc_now_ns(), delay, b;
    item_t *it;
    const char *v[2];
    int rc;

    if (q == NULL || key == NULL)
        return -EINVAL;
    ctrl_lock(&q->lock);
    if (q->shutting_down) {
        ctrl_unlock(&q->lock);
        return KC_ESTOPPED;
    }
    promote(q, now);
    it = lookup_or_create(q, key);
    if (it == NULL) {
        ctrl_unlock(&q->lock);
        return -ENOMEM;
    }
    if (it->rl_pending) {
        /* Already waiting out this failure's backoff (or queued by it and
         * not yet handed out): not another failure. */
        if (delay_out)
            *delay_out = it->heap_idx != NONE && it->ready_ns > now ? it->ready_ns - now : 0;
        ctrl_unlock(&q->lock);
        return 0;
    }
    delay = item_backoff(q, it->failures);
    if (it->failures < INT32_MAX)
        it->failures++;
    b = bucket_delay(q, now);
    if (b > delay)
        delay = b;
    if (delay > q->max_ns)
        delay = q->max_ns;
    it->rl_pending = true;
    kc_metric_inc(q->m_retries, labels(q, v));
    rc = schedule_locked(q, it, now, delay);
    if (rc == 0 && delay_out)
        *delay_out = delay;
    maybe_release(q, it);
    ctrl_unlock(&q->lock);
    return rc;
}

void kc_workqueue_forget(kc_workqueue_t *q, const char *key)
{
    item_t *it;

    if (q == NULL || key == NULL)
        return;
    ctrl_lock(&q->lock);
    it = lookup(q, key, ctrl_hash(key));
    if (it != NULL) {
        it->failures = 0;
        maybe_release(q, it);
    }
    ctrl_unlock(&q->lock);
}

int kc_workqueue_num_requeues(kc_workqueue_t *q, const char *key)
{
    item_t *it;
    int n = 0;

    if (q == NULL || key == NULL)
        return 0;
    ctrl_lock(&q->lock);
    it = lookup(q, key, ctrl_hash(key));
    if (it != NULL)
        n = it->failures;
    ctrl_unlock(&q->lock);
    return n;
}

int kc_workqueue_get_timeout(kc_workqueue_t *q, uint64_t timeout_ns, char **key_out)
{
    uint64_t now = kc_now_ns(), deadline = timeout_ns ? now + timeout_ns : 0;
    const char *v[2];
    item_t *it;
    char *copy;

    if (q == NULL || key_out == NULL)
        return -EINVAL;
    ctrl_lock(&q->lock);
    for (;;) {
        uint64_t wake;
        now = kc_now_ns();
        if (!q->shutting_down)
            promote(q, now);
        if (q->head != NULL)
            break;
        if (q->shutting_down) {
            ctrl_unlock(&q->lock);
            return KC_ESTOPPED;
        }
        if (deadline && now >= deadline) {
            ctrl_unlock(&q->lock);
            return KC_ETIMEOUT;
        }
        wake = deadline;
        if (q->nheap > 0 && (wake == 0 || q->heap[0]->ready_ns < wake))
            wake = q->heap[0]->ready_ns;
        if (wake)
            ctrl_cond_timedwait(&q->cond, &q->lock, wake);
        else
            ctrl_cond_wait(&q->cond, &q->lock);
    }
    it = q->head;
    copy = strdup(it->key);
    if (copy == NULL) {
        ctrl_unlock(&q->lock);
        return -ENOMEM;
    }
    fifo_pop(q);
    it->dirty = false;
    it->processing = true;
    it->rl_pending = false;
    it->start_ns = now;
    q->nprocessing++;
    kc_metric_observe(q->m_latency, labels(q, v), (double)(now - it->added_ns) / 1e9);
    if (q->head != NULL)
        ctrl_cond_signal(&q->cond); /* promote may have queued several */
    ctrl_unlock(&q->lock);
    *key_out = copy;
    return 0;
}

int kc_workqueue_get(kc_workqueue_t *q, char **key_out)
{
    return kc_workqueue_get_timeout(q, 0, key_out);
}

void kc_workqueue_done(kc_workqueue_t *q, const char *key)
{
    uint64_t now = kc_now_ns();
    const char *v[2];
    item_t *it;

    if (q == NULL || key == NULL)
        return;
    ctrl_lock(&q->lock);
    it = lookup(q, key, ctrl_hash(key));
    if (it == NULL || !it->processing) {
        ctrl_unlock(&q->lock);
        return;
    }
    it->processing = false;
    q->nprocessing--;
    kc_metric_observe(q->m_work, labels(q, v), (double)(now - it->start_ns) / 1e9);
    if (it->dirty) {
        fifo_push(q, it);
        ctrl_cond_signal(&q->cond);
    }
    if (q->nprocessing == 0)
        ctrl_cond_broadcast(&q->drained);
    maybe_release(q, it);
    ctrl_unlock(&q->lock);
}

void kc_workqueue_shutdown(kc_workqueue_t *q)
{
    if (q == NULL)
        return;
    ctrl_lock(&q->lock);
    if (!q->shutting_down) {
        q->shutting_down = true;
        while (q->nheap > 0) {
            item_t *it = q->heap[q->nheap - 1];
            heap_remove(q, it);
            maybe_release(q, it);
        }
    }
    ctrl_cond_broadcast(&q->cond);
    ctrl_unlock(&q->lock);
}

int kc_workqueue_shutdown_drain(kc_workqueue_t *q, uint64_t timeout_ns)
{
    uint64_t deadline = timeout_ns ? kc_now_ns() + timeout_ns : 0;
    int rc = 0;

    if (q == NULL)
        return -EINVAL;
    kc_workqueue_shutdown(q);
    ctrl_lock(&q->lock);
    while (q->nprocessing > 0) {
        if (deadline) {
            if (ctrl_cond_timedwait(&q->drained, &q->lock, deadline) == ETIMEDOUT &&
                q->nprocessing > 0) {
                rc = KC_ETIMEOUT;
                break;
            }
        } else {
            ctrl_cond_wait(&q->drained, &q->lock);
        }
    }
    ctrl_unlock(&q->lock);
    return rc;
}

bool kc_workqueue_shutting_down(kc_workqueue_t *q)
{
    bool s;

    ctrl_lock(&q->lock);
    s = q->shutting_down;
    ctrl_unlock(&q->lock);
    return s;
}

size_t kc_workqueue_len(kc_workqueue_t *q)
{
    size_t n;

    ctrl_lock(&q->lock);
    if (!q->shutting_down)
        promote(q, kc_now_ns());
    n = q->depth;
    ctrl_unlock(&q->lock);
    return n;
}

size_t kc_workqueue_waiting(kc_workqueue_t *q)
{
    size_t n;

    ctrl_lock(&q->lock);
    if (!q->shutting_down)
        promote(q, kc_now_ns());
    n = q->nheap;
    ctrl_unlock(&q->lock);
    return n;
}

size_t kc_workqueue_processing(kc_workqueue_t *q)
{
    size_t n;

    ctrl_lock(&q->lock);
    n = q->nprocessing;
    ctrl_unlock(&q->lock);
    return n;
}
