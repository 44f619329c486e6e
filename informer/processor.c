/*
 * The per-handler event processor: a bounded, coalescing, per-key-ordered
 * queue and the thread that delivers it to one handler.
 *
 * Model.  For every key the handler has a view: absent, or the object it
 * was last given.  The informer pushes events that move its own view; the
 * processor keeps, per key with undelivered events, a pending entry
 *     base  the handler's view before the pending events (NULL: absent)
 *     mid   the newest object the key had before a first pending Delete,
 *           when Adds or Updates came before that Delete (else NULL)
 *     del   the first pending Delete's object, or NULL
 *     cur   the newest object after the pending events (NULL: absent)
 * and delivers it as: Add(mid) when base is NULL, else Update(base, mid),
 * if mid; then Delete(del) if del; then, if cur, Add(cur) when del is set
 * or base is NULL, else Update(base, cur).  Because the informer's view
 * after an event is what the handler's view will be after the entry is
 * delivered, a new entry's base is the informer's view before the event:
 * the old object of an Update, the object of a Delete, NULL for an Add.
 * So the handler's per-key history is always valid (no Delete or Update
 * of a key it lacks, no Add of a key it has) and its final state equals
 * the informer's.
 *
 * What coalescing keeps.  Newest wins between Deletes: Updates merge into
 * one Update(base, newest).  A Delete is never dropped, and neither is the
 * state before it: Update(a, b) then Delete(b) is delivered as both, not as
 * Delete(b) alone, and Add(a) then Delete(a) of a key the handler never
 * had as both, not as nothing.  Handlers that map an object to other keys
 * (its owners, the source a copy came from) need the states a key had:
 * Delete(b) alone would hide a's owner or annotation from them, while the
 * reconciles those keys drive may already have acted on a, which the
 * cache held.  Between the first pending Delete and the last event only
 * the final state is kept (Delete(a), Add(b), Delete(b) is Delete(a)):
 * the entry stays bounded at four objects.
 *
 * Bound.  Entries are keyed: events for a key with an entry merge into it
 * and never block; a new key waits while backlog_max entries are pending
 * (backpressure on the informer).  Entries leave in FIFO order of their
 * first event.
 *
 * Batches.  The delivery thread takes every pending entry at once (one
 * lock round trip per batch, not per event) and delivers them in order;
 * an event for a key of the batch being delivered starts a new pending
 * entry, delivered after the batch, so per-key order holds.  At most
 * backlog_max entries are pending and at most backlog_max more are being
 * delivered.  Hand-offs are batched too: a wake-up (futex) per event would
 * cost more than the event.  After a batch the thread naps for up to
 * NAP_NS (a timed wait nobody signals unless WAKE_BATCH entries piled up
 * or a pusher needs room) and then takes what arrived meanwhile; only
 * when a nap brought nothing does it sleep until signalled, and only then
 * does a push signal it.  So at a high event rate there is about one
 * wake-up per NAP_NS, and an event arriving while the thread is idle is
 * delivered at once; the latency this adds is at most NAP_NS, and only
 * right after a busy moment.  Delivered entries go back to a small free
 * list (POOL_MAX) for the next pushes, so no allocation is made per event
 * in steady state.  The key table grows with the backlog (a handler that
 * lags behind a large list may have up to backlog_max keys pending: 65,536
 * by default, a 512 KiB table); once a batch that large is taken the table
 * is empty, and it goes back to TAB_MIN buckets rather than keeping that
 * size for the informer's lifetime.
 *
 * Locking.  One mutex protects the table, the queue, the free list, the
 * flags and the counters.  The delivery thread locks, unlinks the whole
 * queue, unlocks, and only then calls the handler.  Objects are referenced
 * by the entry; the references are released after delivery, outside the
 * lock.
 */
#include "informer_int.h"

#include <errno.h>
#include <string.h>

#define NAP_NS 200000ull   /* how long the thread waits for more after a batch */
#define WAKE_BATCH 256     /* pending entries that end a nap early */
#define POOL_MAX 512       /* free entries kept for reuse */
#define KEY_MIN 48         /* key bytes an entry is made with at least */
#define TAB_MIN 64         /* key table buckets to start with */
#define TAB_KEEP 1024      /* a drained table larger than this shrinks to TAB_MIN */

typedef struct pend {
    struct pend *hnext;        /* hash chain */
    struct pend *qnext;        /* FIFO */
    uint64_t hash;
    kc_obj_t *base;
    kc_obj_t *mid;
    kc_obj_t *del;
    kc_obj_t *cur;
    int del_unknown;
    size_t key_cap;            /* bytes of key[] */
    char *name;                /* points into key after the namespace */
    char key[];                /* "ns\0name\0" */
} pend_t;

struct kc__proc {
    kc_handler_t h;
    size_t backlog_max;
    const kc_logger_t *log;
    pthread_t thread;
    int thread_started;        /* only start/stop touch it */

    pthread_mutex_t mu;
    /* protected by mu: */
    pthread_cond_t work;       /* signalled: new entry, stop */
    pthread_cond_t room;       /* signalled: entry removed, idle, stop */
    pend_t **tab;
    size_t tab_size;           /* power of two */
    size_t count;              /* entries pending */
    pend_t *qhead, *qtail;
    pend_t *pool;              /* free entries, linked by qnext */
    size_t npool;
    int delivering;            /* thread is inside a callback */
    int sleeping;              /* thread waits for a signal: pushes signal */
    int napping;               /* thread naps: pushes signal at WAKE_BATCH */
    int stopping;
    kc_handler_stats_t st;
};

static uint64_t key_hash(const char *ns, const char *name)
{
    uint64_t h = 1469598103934665603ull;

    for (; *ns; ns++)
        h = (h ^ (unsigned char)*ns) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (; *name; name++)
        h = (h ^ (unsigned char)*name) * 1099511628211ull;
    return h ^ (h >> 29);
}

static const char *obj_ns(kc_obj_t *o)
{
    const char *s = kc_obj_namespace(o);
    return s ? s : "";
}

static const char *obj_name(kc_obj_t *o)
{
    const char *s = kc_obj_name(o);
    return s ? s : "";
}

int kc__proc_new(const kc_handler_t *h, size_t backlog_max, const kc_logger_t *log,
                 kc__proc_t **out)
{
    kc__proc_t *p;

    *out = NULL;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    p->h = *h;
    p->backlog_max = backlog_max ? backlog_max : 1;
    p->log = log;
    p->tab_size = TAB_MIN;
    p->tab = calloc(p->tab_size, sizeof(*p->tab));
    if (p->tab == NULL)
        goto fail_tab;
    if (kc__mu_init(&p->mu) != 0)
        goto fail_mu;
    if (kc__cond_init(&p->work) != 0)
        goto fail_work;
    if (kc__cond_init(&p->room) != 0)
        goto fail_room;
    *out = p;
    return 0;

fail_room:
    pthread_cond_destroy(&p->work);
fail_work:
    pthread_mutex_destroy(&p->mu);
fail_mu:
    free(p->tab);
fail_tab:
    free(p);
    return -ENOMEM;
}

/* Called with mu held. */
static pend_t *lookup(kc__proc_t *p, const char *ns, const char *name, uint64_t h)
{
    pend_t *e;

    for (e = p->tab[h & (p->tab_size - 1)]; e; e = e->hnext)
        if (e->hash == h && strcmp(e->key, ns) == 0 && strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

/* Called with mu held.  Growing is best-effort: a failed allocation leaves
 * longer chains, never a lost entry. */
static void maybe_grow(kc__proc_t *p)
{
    pend_t **nt;
    size_t ns, i;

    if (p->count < p->tab_size)
        return;
    ns = p->tab_size * 2;
    nt = calloc(ns, sizeof(*nt));
    if (nt == NULL)
        return;
    for (i = 0; i < p->tab_size; i++) {
        pend_t *e = p->tab[i], *next;
        for (; e; e = next) {
            next = e->hnext;
            e->hnext = nt[e->hash & (ns - 1)];
            nt[e->hash & (ns - 1)] = e;
        }
    }
    free(p->tab);
    p->tab = nt;
    p->tab_size = ns;
}

/* Unlink e from the table (mu held). */
static void unhash(kc__proc_t *p, pend_t *e)
{
    pend_t **pp = &p->tab[e->hash & (p->tab_size - 1)];

    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
}

/* Release the entry's object references (no lock needed: the entry is
 * unlinked and the counts are atomic). */
static void drop_objs(pend_t *e)
{
    if (e->base)
        kc_obj_unref(e->base);
    if (e->mid)
        kc_obj_unref(e->mid);
    if (e->del)
        kc_obj_unref(e->del);
    if (e->cur)
        kc_obj_unref(e->cur);
    e->base = e->mid = e->del = e->cur = NULL;
}

static void free_entry(pend_t *e)
{
    if (e == NULL)
        return;
    drop_objs(e);
    free(e);
}

/* A zeroed entry with room for a key of need bytes: from the free list
 * when its head is big enough (keys of one resource are alike), else new.
 * Called with mu held. */
static pend_t *entry_get(kc__proc_t *p, size_t need)
{
    pend_t *e = p->pool;
    size_t cap;

    if (e != NULL && e->key_cap >= need) {
        p->pool = e->qnext;
        p->npool--;
        cap = e->key_cap;
        memset(e, 0, sizeof(*e));
        e->key_cap = cap;
        return e;
    }
    cap = need < KEY_MIN ? KEY_MIN : need;
    e = calloc(1, sizeof(*e) + cap);
    if (e != NULL)
        e->key_cap = cap;
    return e;
}

/* Give a list of released entries (linked by qnext, objects dropped) back
 * to the free list up to POOL_MAX; returns what did not fit, to be freed
 * after unlocking.  Called with mu held. */
static pend_t *entries_put(kc__proc_t *p, pend_t *list)
{
    while (list != NULL && p->npool < POOL_MAX) {
        pend_t *e = list;
        list = e->qnext;
        e->qnext = p->pool;
        p->pool = e;
        p->npool++;
    }
    return list;
}

static void free_list(pend_t *list)
{
    while (list != NULL) {
        pend_t *e = list;
        list = e->qnext;
        free_entry(e);
    }
}

/* Swap *slot to obj (new reference taken), releasing the old one after. */
static void set_obj(kc_obj_t **slot, kc_obj_t *obj)
{
    kc_obj_t *old = *slot;

    *slot = obj ? kc_obj_ref(obj) : NULL;
    if (old)
        kc_obj_unref(old);
}

enum { EV_ADD, EV_UPDATE, EV_DELETE };

/* The heart of it: merge one event into the pending state of its key.
 * Object reference counting is atomic and takes no lock of ours, so calling
 * it with mu held is fine (it never calls back). */
static int push(kc__proc_t *p, int type, kc_obj_t *old, kc_obj_t *obj, int unknown)
{
    const char *ns = obj_ns(obj), *name = obj_name(obj);
    uint64_t h = key_hash(ns, name);
    pend_t *e;
    size_t nslen, namelen;

    kc__mu_lock(&p->mu);
    for (;;) {
        if (p->stopping) {
            kc__mu_unlock(&p->mu);
            return KC_ESTOPPED;
        }
        e = lookup(p, ns, name, h);
        if (e != NULL || p->count < p->backlog_max)
            break;
        p->st.blocked++;
        if (p->napping)   /* a full backlog ends the nap at once */
            pthread_cond_signal(&p->work);
        kc__cond_wait_until(&p->room, &p->mu, 0);
    }

    if (e == NULL) {
        nslen = strlen(ns);
        namelen = strlen(name);
        e = entry_get(p, nslen + namelen + 2);
        if (e == NULL) {
            kc__mu_unlock(&p->mu);
            return -ENOMEM;
        }
        memcpy(e->key, ns, nslen + 1);
        e->name = e->key + nslen + 1;
        memcpy(e->name, name, namelen + 1);
        e->hash = h;
        switch (type) {
        case EV_ADD:
            set_obj(&e->cur, obj);
            break;
        case EV_UPDATE:
            set_obj(&e->base, old ? old : obj);
            set_obj(&e->cur, obj);
            break;
        default:
            set_obj(&e->base, obj);
            set_obj(&e->del, obj);
            e->del_unknown = unknown;
            break;
        }
        maybe_grow(p);
        e->hnext = p->tab[h & (p->tab_size - 1)];
        p->tab[h & (p->tab_size - 1)] = e;
        e->qnext = NULL;
        if (p->qtail)
            p->qtail->qnext = e;
        else
            p->qhead = e;
        p->qtail = e;
        p->count++;
        if (p->count > p->st.pending_hwm)
            p->st.pending_hwm = p->count;
        if (p->sleeping || (p->napping && p->count >= WAKE_BATCH))
            pthread_cond_signal(&p->work);
        kc__mu_unlock(&p->mu);
        return 0;
    }

    p->st.coalesced++;
    switch (type) {
    case EV_ADD:
    case EV_UPDATE:
        /* newest object wins; Add after a pending Delete stays an Add */
        set_obj(&e->cur, obj);
        break;
    default:
        if (e->del == NULL) {
            /* the first Delete: the Add or Update before it is delivered
             * first (entries without a Delete always have cur) */
            e->mid = e->cur;
            e->cur = NULL;
            set_obj(&e->del, obj);
            e->del_unknown = unknown;
        } else {
            /* Delete(a), Add(b), Delete(b): Delete(a) alone brings the
             * handler to the final state */
            set_obj(&e->cur, NULL);
        }
        break;
    }
    kc__mu_unlock(&p->mu);
    return 0;
}

int kc__proc_add(kc__proc_t *p, kc_obj_t *obj)
{
    return push(p, EV_ADD, NULL, obj, 0);
}

int kc__proc_update(kc__proc_t *p, kc_obj_t *old, kc_obj_t *new_obj)
{
    return push(p, EV_UPDATE, old, new_obj, 0);
}

int kc__proc_delete(kc__proc_t *p, kc_obj_t *obj, int final_state_unknown)
{
    return push(p, EV_DELETE, NULL, obj, final_state_unknown ? 1 : 0);
}

/* Deliver one entry (no lock held). */
static void deliver(kc__proc_t *p, pend_t *e)
{
    if (e->mid) {
        if (e->base == NULL) {
            if (p->h.on_add)
                p->h.on_add(p->h.ud, e->mid);
        } else if (p->h.on_update) {
            p->h.on_update(p->h.ud, e->base, e->mid);
        }
    }
    if (e->del && p->h.on_delete)
        p->h.on_delete(p->h.ud, e->del, e->del_unknown);
    if (e->cur) {
        if (e->del || e->base == NULL) {
            if (p->h.on_add)
                p->h.on_add(p->h.ud, e->cur);
        } else if (p->h.on_update) {
            p->h.on_update(p->h.ud, e->base, e->cur);
        }
    }
}

/* With the table empty (mu held): after a large backlog, swap it for a
 * small one; returns the big one for the caller to free after unlocking
 * (NULL: kept).  Best effort: without memory the big table stays. */
static pend_t **shrink_drained(kc__proc_t *p)
{
    pend_t **old = p->tab, **nt;

    if (p->count != 0 || p->tab_size <= TAB_KEEP)
        return NULL;
    nt = calloc(TAB_MIN, sizeof(*nt));
    if (nt == NULL)
        return NULL;
    p->tab = nt;
    p->tab_size = TAB_MIN;
    return old;
}

static void *proc_main(void *arg)
{
    kc__proc_t *p = arg;
    pend_t *batch, *e, *spill, **old_tab;
    int nap = 0;

    kc__mu_lock(&p->mu);
    for (;;) {
        while (!p->stopping && p->qhead == NULL) {
            if (nap) {
                /* busy a moment ago: collect what comes next for a while
                 * instead of being woken for every single event */
                nap = 0;
                p->napping = 1;
                kc__cond_wait_until(&p->work, &p->mu, kc_now_ns() + NAP_NS);
                p->napping = 0;
                continue;
            }
            p->sleeping = 1;
            kc__cond_wait_until(&p->work, &p->mu, 0);
            p->sleeping = 0;
        }
        if (p->stopping)
            break;
        /* take the whole queue: it stays in FIFO order, linked by qnext */
        batch = p->qhead;
        for (e = batch; e; e = e->qnext) {
            unhash(p, e);
            if (e->mid) {
                if (e->base == NULL)
                    p->st.adds++;
                else
                    p->st.updates++;
            }
            if (e->del)
                p->st.deletes++;
            if (e->cur) {
                if (e->del || e->base == NULL)
                    p->st.adds++;
                else
                    p->st.updates++;
            }
        }
        p->qhead = p->qtail = NULL;
        p->count = 0;
        old_tab = shrink_drained(p);
        p->delivering = 1;
        pthread_cond_broadcast(&p->room);
        kc__mu_unlock(&p->mu);
        free(old_tab);

        /* no lock held from here: the handler may block or call the cache */
        for (e = batch; e; e = e->qnext) {
            deliver(p, e);
            drop_objs(e);
        }

        kc__mu_lock(&p->mu);
        spill = entries_put(p, batch);
        p->delivering = 0;
        if (p->qhead == NULL)
            pthread_cond_broadcast(&p->room);
        if (spill != NULL) {
            kc__mu_unlock(&p->mu);
            free_list(spill);
            kc__mu_lock(&p->mu);
        }
        nap = 1;
    }
    kc__mu_unlock(&p->mu);
    return NULL;
}

int kc__proc_start(kc__proc_t *p)
{
    int rc;

    if (p->thread_started)
        return KC_EBUSY;
    rc = pthread_create(&p->thread, NULL, proc_main, p);
    if (rc != 0)
        return -rc;
    p->thread_started = 1;
    return 0;
}

int kc__proc_wait_idle(kc__proc_t *p, long timeout_ms)
{
    uint64_t deadline = timeout_ms < 0 ? 0 : kc_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    int rc = 0;

    kc__mu_lock(&p->mu);
    while (!p->stopping && (p->qhead != NULL || p->delivering)) {
        if (kc__cond_wait_until(&p->room, &p->mu, deadline) == ETIMEDOUT) {
            rc = KC_ETIMEOUT;
            break;
        }
    }
    kc__mu_unlock(&p->mu);
    return rc;
}

void kc__proc_stop(kc__proc_t *p)
{
    pend_t *list, *pool;

    if (p == NULL)
        return;
    kc__mu_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->work);
    pthread_cond_broadcast(&p->room);
    kc__mu_unlock(&p->mu);
    if (p->thread_started) {
        pthread_join(p->thread, NULL);
        p->thread_started = 0;
    }
    kc__mu_lock(&p->mu);
    list = p->qhead;
    p->qhead = p->qtail = NULL;
    memset(p->tab, 0, p->tab_size * sizeof(*p->tab));
    p->count = 0;
    pool = p->pool;
    p->pool = NULL;
    p->npool = 0;
    kc__mu_unlock(&p->mu);
    free_list(list);
    free_list(pool);
}

void kc__proc_free(kc__proc_t *p)
{
    if (p == NULL)
        return;
    kc__proc_stop(p);
    pthread_cond_destroy(&p->room);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->mu);
    free(p->tab);
    free(p);
}

void kc__proc_stats(kc__proc_t *p, kc_handler_stats_t *out)
{
    kc__mu_lock(&p->mu);
    *out = p->st;
    out->pending = p->count;
    kc__mu_unlock(&p->mu);
}
