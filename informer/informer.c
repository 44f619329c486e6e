/*
 * The informer: a reflector thread that lists and watches one resource into
 * the cache, while a watch runs an applier thread that applies its events
 * (see "the watch applier" below, with its queue's lock), a timer thread
 * (resync, streaming-list deadline), and one processor per handler
 * (processor.c).
 *
 * Reflector.  List (paged, or a streaming list: a watch with
 * sendInitialEvents=true that ends its initial state with a bookmark
 * annotated k8s.io/initial-events-end), store the whole result with
 * kc_cache_replace_all and emit its diff, then watch from the list's
 * resourceVersion.  The newest resourceVersion seen (events and bookmarks)
 * is where every later watch resumes.  A watch that ends, is closed,
 * stalls (the client's idle timeout) or fails with 429, 5xx or a refused
 * connection is resumed from that version after a backoff (none after a
 * normal end); only 410 Gone (an HTTP answer or an ERROR event) or an
 * expired continue token lists again.  A relist's diff turns into events:
 * vanished objects become Delete(last known, final_state_unknown=1),
 * changed ones (resourceVersion differs) Update, new ones Add, unchanged
 * ones nothing, so nothing is emitted twice.  Watch events are checked
 * against the cache the same way: an ADDED or MODIFIED whose
 * resourceVersion equals the cached one emits nothing, a DELETED of a key
 * not cached emits nothing.
 *
 * Invariant: the cache and what the handlers were told move together.  The
 * reflector (watch events, list diffs), the resync and a handler added
 * after start all write the cache and push to the processors while holding
 * the emit token, so a handler's events per key follow the cache's history.
 *
 * Locks.  The emit token (emit_begin/emit_end: a flag under mu with a
 * condition variable, not a mutex held across the work, because
 * kc_cache_replace_all takes every shard lock and lock-order checkers cap
 * how many locks one thread may hold) serialises emitters.  mu protects
 * the phase, the counters, the stop flag, the cancel flag, the deadline
 * and the token, and is a leaf: nothing is called with it held except the
 * atomic cancel flag.  The processors' own locks are leaves.  No lock is
 * held across a client call, JSON parsing of a page, or logging, and the
 * cache is written only by the token's holder.  The procs array changes
 * only with both the token and mu held, so either is enough to read it.
 */
#include "informer_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kc_json.h"

#define COMPONENT "informer"
#define RV_MAX 128

struct kc_informer {
    kc_client_t *client;
    kc_resource_t res;               /* strings owned below */
    char *group, *version, *resource, *kind;
    char *ns, *label_sel, *field_sel; /* NULL: none */
    kc_informer_opts_t o;            /* copy; string fields point at ours */
    kc_cache_t *cache;
    pthread_t reflector, timer;
    int started;                     /* start/stop/free only */

    /* protected by the emit token (writes also hold mu): */
    kc__proc_t **procs;
    size_t nprocs, procs_cap;

    pthread_mutex_t mu;
    /* protected by mu: */
    pthread_cond_t cond;             /* synced, stop, deadline changes */
    pthread_cond_t emit_cv;          /* the emit token was released */
    int emitting;                    /* the emit token is taken */
    int stopping;
    int synced;
    kc_informer_state_t st;          /* except cached_objects/since_last_event_s */
    uint64_t last_event_ns;          /* 0: none yet */
    uint64_t stream_deadline_ns;     /* 0: no streaming list running */
    int deadline_fired;
    uint64_t next_resync_ns;
    kc_cancel_t cancel;              /* set by stop and by the deadline */

    /* reflector thread only: */
    kc__backoff_t bo;
    uint64_t rng;
    char rv[RV_MAX];                 /* resume point; "" before the first list */
    kc_buf_t body;
};

const char *kc_informer_phase_name(kc_informer_phase_t p)
{
    switch (p) {
    case KC_INFORMER_NEW: return "new";
    case KC_INFORMER_LISTING: return "listing";
    case KC_INFORMER_WATCHING: return "watching";
    case KC_INFORMER_BACKOFF: return "backoff";
    case KC_INFORMER_STOPPED: return "stopped";
    }
    return "unknown";
}

/* ----------------------------------------------------------- small helpers */

/* Take / release the emit token (see the opening comment). */
static void emit_begin(kc_informer_t *inf)
{
    kc__mu_lock(&inf->mu);
    while (inf->emitting)
        kc__cond_wait_until(&inf->emit_cv, &inf->mu, 0);
    inf->emitting = 1;
    kc__mu_unlock(&inf->mu);
}

static void emit_end(kc_informer_t *inf)
{
    kc__mu_lock(&inf->mu);
    inf->emitting = 0;
    pthread_cond_signal(&inf->emit_cv);
    kc__mu_unlock(&inf->mu);
}

static char *dup_opt(const char *s, int *fail)
{
    char *d;

    if (s == NULL || *s == '\0')
        return NULL;
    d = strdup(s);
    if (d == NULL)
        *fail = 1;
    return d;
}

static int is_stopping(kc_informer_t *inf)
{
    int s;

    kc__mu_lock(&inf->mu);
    s = inf->stopping;
    kc__mu_unlock(&inf->mu);
    return s;
}

static void set_phase(kc_informer_t *inf, kc_informer_phase_t ph)
{
    kc__mu_lock(&inf->mu);
    if (inf->st.phase != ph) {
        inf->st.phase = ph;
        inf->st.phase_since = kc_wall_time();
    }
    kc__mu_unlock(&inf->mu);
}

/* Sleep until the monotonic deadline or stop; returns 1 if stopping. */
static int sleep_until(kc_informer_t *inf, uint64_t deadline_ns)
{
    int s;

    kc__mu_lock(&inf->mu);
    while (!inf->stopping && kc_now_ns() < deadline_ns)
        kc__cond_wait_until(&inf->cond, &inf->mu, deadline_ns);
    s = inf->stopping;
    kc__mu_unlock(&inf->mu);
    return s;
}

/* Arm the cancel flag for a new request; returns 1 if stopping. */
static int arm_request(kc_informer_t *inf)
{
    int s;

    kc__mu_lock(&inf->mu);
    s = inf->stopping;
    if (!s)
        kc_cancel_reset(&inf->cancel);
    inf->deadline_fired = 0;
    kc__mu_unlock(&inf->mu);
    return s;
}

/* Count watch events (n[] by type: ADDED, MODIFIED, DELETED, BOOKMARK,
 * ERROR) and, when rv is not NULL, make it the newest resourceVersion (see
 * set_rv): one lock round trip for all. */
static void note_events(kc_informer_t *inf, const uint64_t n[5], const char *rv)
{
    size_t len = 0;

    if (rv != NULL && *rv != '\0') {
        len = strnlen(rv, sizeof(inf->rv) - 1);
        memcpy(inf->rv, rv, len);
        inf->rv[len] = '\0';
    }
    kc__mu_lock(&inf->mu);
    if (len > 0) {
        size_t m = len < sizeof(inf->st.last_rv) - 1 ? len : sizeof(inf->st.last_rv) - 1;
        memcpy(inf->st.last_rv, inf->rv, m);
        inf->st.last_rv[m] = '\0';
    }
    inf->last_event_ns = kc_now_ns();
    inf->st.events_added += n[KC_WATCH_ADDED];
    inf->st.events_modified += n[KC_WATCH_MODIFIED];
    inf->st.events_deleted += n[KC_WATCH_DELETED];
    inf->st.events_bookmark += n[KC_WATCH_BOOKMARK];
    inf->st.events_error += n[KC_WATCH_ERROR];
    kc__mu_unlock(&inf->mu);
}

static void note_event(kc_informer_t *inf, int type)
{
    uint64_t n[5] = { 0, 0, 0, 0, 0 };

    n[type >= 0 && type < 5 ? type : KC_WATCH_ERROR] = 1;
    note_events(inf, n, NULL);
}

/* Remember the newest resourceVersion (reflector thread; mirrored into st
 * for readers). */
static void set_rv(kc_informer_t *inf, const char *rv)
{
    if (rv == NULL || *rv == '\0')
        return;
    snprintf(inf->rv, sizeof(inf->rv), "%s", rv);
    kc__mu_lock(&inf->mu);
    memcpy(inf->st.last_rv, inf->rv, sizeof(inf->st.last_rv) - 1);
    inf->st.last_rv[sizeof(inf->st.last_rv) - 1] = '\0';
    kc__mu_unlock(&inf->mu);
}

/* Record and log a failure once, with its cause; returns rc. */
static int record_error(kc_informer_t *inf, int rc, const char *what, const kc_status_t *st)
{
    char msg[400];

    if (st != NULL && st->message[0] != '\0')
        snprintf(msg, sizeof(msg), "%.80s: %.60s (%.120s%s%.60s)", what, kc_strerror(rc),
                 st->message, st->detail[0] ? "; " : "", st->detail);
    else
        snprintf(msg, sizeof(msg), "%.180s: %.60s", what, kc_strerror(rc));
    kc__mu_lock(&inf->mu);
    inf->st.errors++;
    inf->st.last_error = rc;
    inf->st.last_error_time = kc_wall_time();
    snprintf(inf->st.last_error_msg, sizeof(inf->st.last_error_msg), "%.255s", msg);
    kc__mu_unlock(&inf->mu);
    kc_log(&inf->o.log, KC_LOG_WARN, COMPONENT, "%s %s: %s", inf->res.resource,
           inf->ns ? inf->ns : "(all namespaces)", msg);
    return rc;
}

/* Back off after a failure; returns 1 if stopping.  min_ns: at least this
 * long (Retry-After). */
static int backoff_wait(kc_informer_t *inf, uint64_t min_ns)
{
    uint64_t now = kc_now_ns(), d = kc__backoff_next(&inf->bo, now);

    /* honour Retry-After, but never beyond the configured maximum */
    if (min_ns > inf->bo.max_ns)
        min_ns = inf->bo.max_ns;
    if (d < min_ns)
        d = min_ns;
    set_phase(inf, KC_INFORMER_BACKOFF);
    return sleep_until(inf, now + d);
}

/* --------------------------------------------------- building objects */

/* Parse one object's JSON into a cache object and run the transform. */
static int make_obj(kc_informer_t *inf, const char *json, size_t len, int prevalidated,
                    const kc_json_meta_t *meta, kc_obj_t **out, kc_errbuf_t *eb)
{
    kc_obj_opts_t oo = KC_OBJ_OPTS_INIT;
    kc_obj_t *obj = NULL, *t = NULL;
    int rc;

    *out = NULL;
    oo.keep_managed_fields = inf->o.keep_managed_fields;
    /* validated once: by the watch decoder or the page's scan, which also
     * found the bytes minified (kc_obj_opts_t.prevalidated) */
    oo.prevalidated = prevalidated;
    oo.meta = meta;   /* the decoder's notes on the metadata, if any */
    oo.pack_min = inf->o.pack_min;
    rc = kc_obj_new(json, len, &oo, &obj, eb);
    if (rc != 0)
        return rc;
    if (inf->o.transform != NULL) {
        rc = inf->o.transform(inf->o.transform_ud, obj, &t);
        if (rc == 0 && t != NULL) {
            kc_obj_unref(obj);
            obj = t;
        } else {
            kc_log(&inf->o.log, KC_LOG_WARN, COMPONENT,
                   "transform failed for %s/%s: %s; storing it unchanged",
                   kc_obj_namespace(obj), kc_obj_name(obj), kc_strerror(rc));
        }
    }
    *out = obj;
    return 0;
}

/* --------------------------------------------------- emitting to handlers */

static void emit_add(kc_informer_t *inf, kc_obj_t *obj)
{
    for (size_t i = 0; i < inf->nprocs; i++)
        kc__proc_add(inf->procs[i], obj);
}

static void emit_update(kc_informer_t *inf, kc_obj_t *old, kc_obj_t *obj)
{
    for (size_t i = 0; i < inf->nprocs; i++)
        kc__proc_update(inf->procs[i], old, obj);
}

static void emit_delete(kc_informer_t *inf, kc_obj_t *obj, int unknown)
{
    for (size_t i = 0; i < inf->nprocs; i++)
        kc__proc_delete(inf->procs[i], obj, unknown);
}

/* A relist diff goes straight to the handlers: kc_cache_replace_all calls
 * back with no cache lock held, and we hold the emit token. */
typedef struct diff_ctx {
    kc_informer_t *inf;
    uint64_t adds, upd, dels;
} diff_ctx_t;

static void diff_cb(void *ud, kc_diff_t kind, kc_obj_t *old, kc_obj_t *obj)
{
    diff_ctx_t *d = ud;

    switch (kind) {
    case KC_DIFF_ADDED:
        emit_add(d->inf, obj);
        d->adds++;
        break;
    case KC_DIFF_UPDATED:
        emit_update(d->inf, old, obj);
        d->upd++;
        break;
    default:
        emit_delete(d->inf, old, 1);
        d->dels++;
        break;
    }
}

/* Store a complete list and emit its diff.  Takes the references in
 * items (and frees the array).  Called on the reflector thread. */
static int store_list(kc_informer_t *inf, kc_obj_t **items, size_t n, const char *rv,
                      int relist)
{
    diff_ctx_t d = { inf, 0, 0, 0 };
    int rc;

    emit_begin(inf);
    rc = kc_cache_replace_all(inf->cache, items, n, diff_cb, &d);
    emit_end(inf);
    for (size_t i = 0; i < n; i++)
        kc_obj_unref(items[i]);
    free(items);
    if (rc != 0)
        return rc;
    /* hand the memory the list used only while it ran (page bodies, the
     * items array, the decoder's buffers) back to the system: it was freed
     * into holes between the objects the list stored, which glibc keeps
     * resident, so a process would otherwise keep a list's peak (a page per
     * 500 objects, or the whole response of an unpaged list) for as long as
     * it runs.  Once per list: about a millisecond per 100 MB of heap. */
    kc_heap_trim();

    set_rv(inf, rv);
    kc__mu_lock(&inf->mu);
    inf->st.lists++;
    if (relist) {
        inf->st.relists++;
        inf->st.relist_adds += d.adds;
        inf->st.relist_updates += d.upd;
        inf->st.relist_deletes += d.dels;
    }
    inf->last_event_ns = kc_now_ns();
    inf->synced = 1;
    inf->st.synced = 1;
    pthread_cond_broadcast(&inf->cond);
    kc__mu_unlock(&inf->mu);
    if (relist)
        kc_log(&inf->o.log, KC_LOG_INFO, COMPONENT,
               "%s %s: relisted at resourceVersion %s: %zu objects, %llu added, "
               "%llu updated, %llu deleted", inf->res.resource,
               inf->ns ? inf->ns : "(all namespaces)", rv, n, (unsigned long long)d.adds,
               (unsigned long long)d.upd, (unsigned long long)d.dels);
    return 0;
}

/* One live watch event's object into the cache, then to the handlers.
 * The caller holds the emit token. */
static int apply_locked(kc_informer_t *inf, int type, kc_obj_t *obj)
{
    kc_obj_t *old = NULL;
    int rc = 0;

    if (type == KC_WATCH_DELETED) {
        kc_key_t k;
        kc_obj_key(obj, &k);
        rc = kc_cache_take(inf->cache, &k, &old);
        if (rc == 0)
            emit_delete(inf, obj, 0);
        else if (rc == KC_ENOTFOUND)
            rc = 0; /* never emit a Delete for a key the cache lacks */
    } else {
        rc = kc_cache_replace(inf->cache, obj, &old);
        if (rc == 0) {
            if (old == NULL)
                emit_add(inf, obj);
            else if (strcmp(kc_obj_resource_version(old), kc_obj_resource_version(obj)) != 0)
                emit_update(inf, old, obj);
            /* same resourceVersion: a replayed event, already told */
        }
    }
    if (old)
        kc_obj_unref(old);
    return rc;
}

/* ----------------------------------------------------------- paged list */

/* kc_json_parse_doc that also tells whether the value holds insignificant
 * whitespace (*ws). */
static int scan_page(const char *buf, size_t len, kc_json_span_t *doc, int *ws)
{
    size_t pos = 0;
    int rc = kc_json_scan_ex(buf, len, &pos, KC_JSON_MAX_DEPTH, doc, ws, NULL);

    if (rc != 0)
        return rc;
    while (pos < len && (buf[pos] == ' ' || buf[pos] == '\t' || buf[pos] == '\r' ||
                         buf[pos] == '\n'))
        pos++;
    return pos == len ? 0 : KC_EPARSE;
}

static int list_paged(kc_informer_t *inf, int relist, kc_status_t *st)
{
    kc_obj_t **items = NULL;
    size_t n = 0, cap = 0;
    char cont[1024] = "", rv[RV_MAX] = "";
    kc_errbuf_t eb;
    int rc, expired = 0, page_ws = 1;

    for (;;) {
        kc_list_opts_t lo = KC_LIST_OPTS_INIT;
        kc_json_span_t doc, meta, v, arr, item;
        kc_json_iter_t it;
        int r;

        if (is_stopping(inf)) {
            rc = KC_ESTOPPED;
            goto out;
        }
        lo.label_selector = inf->label_sel;
        lo.field_selector = inf->field_sel;
        lo.limit = inf->o.page_size > 0 ? inf->o.page_size : 0;
        lo.continue_token = cont[0] ? cont : NULL;
        kc_status_clear(st);
        rc = kc_client_list(inf->client, &inf->res, inf->ns, &lo, &inf->body, st);
        if (rc == KC_EGONE && cont[0] != '\0' && expired < 3) {
            /* the continue token expired: a consistent list needs a fresh
             * start (the token in the answer would give an inconsistent one) */
            kc_log(&inf->o.log, KC_LOG_INFO, COMPONENT,
                   "%s: continue token expired after %zu objects; listing again from the start",
                   inf->res.resource, n);
            for (size_t i = 0; i < n; i++)
                kc_obj_unref(items[i]);
            n = 0;
            cont[0] = '\0';
            expired++;
            continue;
        }
        if (rc != 0) {
            record_error(inf, rc, relist ? "relist" : "list", st);
            goto out;
        }
        /* parse: metadata.resourceVersion, metadata.continue, items[] spans;
         * a page without insignificant whitespace (what servers send) has
         * its items validated and minified by this one scan */
        rc = scan_page(inf->body.data, inf->body.len, &doc, &page_ws);
        if (rc == 0 && doc.type != KC_JSON_OBJECT)
            rc = KC_EPARSE;
        if (rc == 0 && kc_json_obj_get(doc, "metadata", &meta) == 0 &&
            meta.type == KC_JSON_OBJECT) {
            if (kc_json_obj_get(meta, "resourceVersion", &v) == 0 && v.type == KC_JSON_STRING)
                rc = kc_json_str_unescape(v, rv, sizeof(rv));
            if (rc == 0 && kc_json_obj_get(meta, "continue", &v) == 0 &&
                v.type == KC_JSON_STRING) {
                char prev[sizeof(cont)];
                memcpy(prev, cont, sizeof(prev));
                rc = kc_json_str_unescape(v, cont, sizeof(cont));
                /* a server that hands back the token it was given would
                 * page forever */
                if (rc == 0 && cont[0] != '\0' && strcmp(prev, cont) == 0)
                    rc = KC_EPARSE;
            } else if (rc == 0) {
                cont[0] = '\0';
            }
        } else if (rc == 0) {
            rc = KC_EPARSE;
        }
        if (rc == 0 && kc_json_obj_get(doc, "items", &arr) == 0 && arr.type == KC_JSON_ARRAY)
            rc = kc_json_iter_init(&it, arr);
        else if (rc == 0)
            arr.type = KC_JSON_NULL; /* "items": null or absent: empty page */
        if (rc != 0) {
            record_error(inf, rc, "list: malformed response", NULL);
            goto out;
        }
        while (arr.type == KC_JSON_ARRAY && (r = kc_json_iter_next(&it, NULL, &item)) == 1) {
            kc_obj_t *obj;
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 512;
                kc_obj_t **ni = realloc(items, nc * sizeof(*ni));
                if (ni == NULL) {
                    rc = -ENOMEM;
                    goto out;
                }
                items = ni;
                cap = nc;
            }
            rc = make_obj(inf, item.p, item.len, !page_ws, NULL, &obj, &eb);
            if (rc != 0) {
                char what[300];
                snprintf(what, sizeof(what), "list: item %zu: %.200s", n, eb.msg);
                record_error(inf, rc, what, NULL);
                goto out;
            }
            items[n++] = obj;
        }
        if (cont[0] == '\0')
            break;
    }
    if (rv[0] == '\0') {
        rc = record_error(inf, KC_EPARSE, "list: no metadata.resourceVersion", NULL);
        goto out;
    }
    kc_buf_free(&inf->body);   /* before store_list releases the list's memory */
    rc = store_list(inf, items, n, rv, relist);
    items = NULL;
    n = 0;
    if (rc != 0)
        record_error(inf, rc, "storing the list", NULL);

out:
    for (size_t i = 0; i < n; i++)
        kc_obj_unref(items[i]);
    free(items);
    /* the page buffer is not kept for the next relist: an idle informer
     * would hold a page's worth (~0.5 MB for 500 ConfigMaps) for nothing */
    kc_buf_free(&inf->body);
    return rc;
}

/* ----------------------------------------------------------- watch */


/* ------------------------------------------------- the watch applier
 *
 * A live watch event is framed and validated on the reflector thread (in
 * the transport's callback), which also builds its object (kc_obj_new
 * straight from the decoder's bytes, which it validated once, and the
 * transform); an applier thread then stores it and pushes it to the
 * handlers.  So on two cores the stream is read and objects are built
 * while the previous events are applied, and an event's bytes are copied
 * once, into their object.  The applier takes the events in stream order,
 * one at a time, so everything the reflector did inline (per-key order,
 * the cache and the handlers moving together under the emit token, the
 * newest resourceVersion) holds as before.  A batch is stored and emitted
 * under one emit token and counted with one lock round trip (apply_batch),
 * so a resync or a new handler waits for at most one batch.  One applier
 * runs per watch: run_watch starts it, and joins it after the stream ended
 * and everything queued was applied.
 *
 * The queue is bounded (PIPE_MAX events, PIPE_BYTES bytes of objects'
 * JSON): a full queue blocks the reflector, i.e. the stream.  Records are
 * recycled (pool: up to a full queue's worth while events flow, so no
 * allocation is made per event in steady state but the object's own, and
 * PIPE_POOL_IDLE once the applier has been idle for PIPE_IDLE_NS).
 * Hand-offs are batched as in processor.c: the applier takes the whole
 * queue at once and, after a batch, naps for up to PIPE_NAP_NS instead of
 * being woken for every event.
 *
 * An object kc_obj_new refuses fails the reflector's callback at once,
 * after the events before it were applied (a drain).  The first failure
 * of the applier (the cache refuses an object) is recorded with its
 * message; later events are dropped, and the reflector returns that error
 * from its next callback, which ends the watch, as when it applied inline.
 * Events other than ADDED, MODIFIED and DELETED (bookmarks, errors) and
 * everything of a streaming list's initial state are handled on the
 * reflector thread after the queue is drained (wctx_t), so their order
 * relative to the data events holds.
 *
 * Locking: pipe.mu protects every field below it; it is a leaf, never held
 * while applying.  inf->rv is written by the applier while a watch runs
 * and read by the reflector only after a drain or the join. */

#define PIPE_MAX 1024
#define PIPE_BYTES ((size_t)1 << 20)
#define PIPE_NAP_NS 200000ull
#define PIPE_WAKE 128
#define PIPE_POOL_MAX PIPE_MAX /* records kept for reuse while events flow */
#define PIPE_POOL_IDLE 64        /* ... and once the applier was idle PIPE_IDLE_NS */
#define PIPE_IDLE_NS 100000000ull

typedef struct prec {
    struct prec *next;
    kc_obj_t *obj;           /* the queue's reference */
    int type;                /* ADDED, MODIFIED or DELETED */
    size_t line_no;
    size_t len;              /* the object's JSON bytes, for the bound */
} prec_t;

typedef struct wpipe {
    kc_informer_t *inf;
    pthread_t thread;
    pthread_mutex_t mu;
    /* protected by mu: */
    pthread_cond_t work;     /* events queued, closing, a full queue */
    pthread_cond_t room;     /* the queue shrank or the applier went idle */
    prec_t *head, *tail;
    size_t n, bytes;
    prec_t *pool;
    size_t npool;
    int busy;                /* the applier is applying a batch */
    int sleeping, napping;
    int closing;             /* no more events: drain and exit */
    int err;                 /* first failure; events after it are dropped */
    char msg[300];
} wpipe_t;

/* Store and emit a batch's objects in order under one emit token, then
 * count them: per batch, not per event, so the token and the counters
 * cost one round trip each.  Stops at the first failure, filling msg; the
 * events before it are applied.  Releases the batch's objects. */
static int apply_batch(kc_informer_t *inf, prec_t *batch, char *msg, size_t msgcap)
{
    uint64_t n[5] = { 0, 0, 0, 0, 0 };
    kc_obj_t *last = NULL;
    prec_t *r;
    int rc = 0;

    emit_begin(inf);
    for (r = batch; r != NULL; r = r->next) {
        int arc = apply_locked(inf, r->type, r->obj);
        n[r->type]++;
        if (arc != 0) {
            /* say which object the cache refused, e.g. one without a
             * namespace in a namespaced informer */
            kc_obj_t *o = r->obj;
            snprintf(msg, msgcap, "event on line %zu: object \"%.63s/%.100s\"%s: %s",
                     r->line_no, kc_obj_namespace(o), kc_obj_name(o),
                     inf->res.namespaced && kc_obj_namespace(o)[0] == '\0'
                         ? " has no metadata.namespace" : " not stored",
                     kc_strerror(arc));
            rc = arc;
            break;
        }
        last = r->obj;
    }
    emit_end(inf);
    note_events(inf, n, last ? kc_obj_resource_version(last) : NULL);
    for (r = batch; r != NULL; r = r->next) {
        kc_obj_unref(r->obj);
        r->obj = NULL;
    }
    return rc;
}

static void prec_free_list(prec_t *r)
{
    while (r != NULL) {
        prec_t *next = r->next;
        kc_obj_unref(r->obj);
        free(r);
        r = next;
    }
}

static void *applier_main(void *arg)
{
    wpipe_t *p = arg;
    prec_t *batch, *r, *spill;
    char msg[300];
    int nap = 0, failed;

    kc__mu_lock(&p->mu);
    for (;;) {
        while (p->head == NULL && !p->closing) {
            if (nap) {
                nap = 0;
                p->napping = 1;
                kc__cond_wait_until(&p->work, &p->mu, kc_now_ns() + PIPE_NAP_NS);
                p->napping = 0;
                continue;
            }
            p->sleeping = 1;
            if (p->npool > PIPE_POOL_IDLE &&
                kc__cond_wait_until(&p->work, &p->mu, kc_now_ns() + PIPE_IDLE_NS) == ETIMEDOUT &&
                p->head == NULL && !p->closing) {
                /* quiet for a while after a burst: keep a few records,
                 * not a full queue's worth */
                spill = p->pool;
                for (size_t i = 1; i < PIPE_POOL_IDLE; i++)
                    spill = spill->next;
                r = spill->next;
                spill->next = NULL;
                p->npool = PIPE_POOL_IDLE;
                kc__mu_unlock(&p->mu);
                prec_free_list(r);
                kc__mu_lock(&p->mu);
            }
            if (p->head == NULL && !p->closing)
                kc__cond_wait_until(&p->work, &p->mu, 0);
            p->sleeping = 0;
        }
        if (p->head == NULL)
            break; /* closing, and everything applied */
        batch = p->head;
        p->head = p->tail = NULL;
        p->n = p->bytes = 0;
        p->busy = 1;
        failed = p->err != 0;
        pthread_cond_broadcast(&p->room);
        kc__mu_unlock(&p->mu);

        if (!failed) {
            int rc = apply_batch(p->inf, batch, msg, sizeof(msg));
            if (rc != 0) {
                kc__mu_lock(&p->mu);
                p->err = rc;
                memcpy(p->msg, msg, sizeof(p->msg));
                kc__mu_unlock(&p->mu);
            }
        } else {
            for (r = batch; r != NULL; r = r->next) {
                kc_obj_unref(r->obj);
                r->obj = NULL;
            }
        }

        kc__mu_lock(&p->mu);
        spill = NULL;
        while (batch != NULL) {
            r = batch;
            batch = r->next;
            if (p->npool < PIPE_POOL_MAX) {
                r->next = p->pool;
                p->pool = r;
                p->npool++;
            } else {
                r->next = spill;
                spill = r;
            }
        }
        p->busy = 0;
        pthread_cond_broadcast(&p->room);
        if (spill != NULL) {
            kc__mu_unlock(&p->mu);
            prec_free_list(spill);
            kc__mu_lock(&p->mu);
        }
        nap = 1;
    }
    kc__mu_unlock(&p->mu);
    return NULL;
}

static int pipe_start(wpipe_t *p, kc_informer_t *inf)
{
    int rc;

    memset(p, 0, sizeof(*p));
    p->inf = inf;
    if ((rc = kc__mu_init(&p->mu)) != 0)
        return rc;
    if ((rc = kc__cond_init(&p->work)) != 0)
        goto fail_work;
    if ((rc = kc__cond_init(&p->room)) != 0)
        goto fail_room;
    rc = pthread_create(&p->thread, NULL, applier_main, p);
    if (rc != 0) {
        rc = -rc;
        goto fail_thread;
    }
    return 0;

fail_thread:
    pthread_cond_destroy(&p->room);
fail_room:
    pthread_cond_destroy(&p->work);
fail_work:
    pthread_mutex_destroy(&p->mu);
    return rc;
}

/* Apply what is queued, stop the applier and free everything; returns the
 * first failure (0: none), its message in msg. */
static int pipe_finish(wpipe_t *p, char *msg, size_t msgcap)
{
    int err;

    kc__mu_lock(&p->mu);
    p->closing = 1;
    pthread_cond_signal(&p->work);
    kc__mu_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    err = p->err;
    if (err != 0)
        snprintf(msg, msgcap, "%s", p->msg);
    prec_free_list(p->head);
    prec_free_list(p->pool);
    pthread_cond_destroy(&p->room);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->mu);
    return err;
}

/* Queue one live event's object (reflector thread), taking over the
 * caller's reference.  Blocks while the queue is full; returns the
 * applier's failure, if any (the object is then released, the event
 * dropped). */
static int pipe_push(wpipe_t *p, int type, size_t line_no, kc_obj_t *obj, char *msg,
                     size_t msgcap)
{
    prec_t *r;
    size_t len;
    int err;

    len = kc_obj_json_len(obj);
    kc__mu_lock(&p->mu);
    while (p->err == 0 && (p->n >= PIPE_MAX || (p->n > 0 && p->bytes + len > PIPE_BYTES))) {
        pthread_cond_signal(&p->work); /* ends a nap: the queue is full */
        kc__cond_wait_until(&p->room, &p->mu, 0);
    }
    if ((err = p->err) != 0) {
        snprintf(msg, msgcap, "%s", p->msg);
        kc__mu_unlock(&p->mu);
        kc_obj_unref(obj);
        return err;
    }
    r = p->pool;
    if (r != NULL) {
        p->pool = r->next;
        p->npool--;
    } else {
        r = malloc(sizeof(*r));
        if (r == NULL) {
            kc__mu_unlock(&p->mu);
            kc_obj_unref(obj);
            snprintf(msg, msgcap, "event on line %zu: out of memory queueing it", line_no);
            return -ENOMEM;
        }
    }
    r->next = NULL;
    r->obj = obj;
    r->type = type;
    r->line_no = line_no;
    r->len = len;
    if (p->tail != NULL)
        p->tail->next = r;
    else
        p->head = r;
    p->tail = r;
    p->n++;
    p->bytes += len;
    if (p->sleeping || (p->napping && p->n >= PIPE_WAKE))
        pthread_cond_signal(&p->work);
    kc__mu_unlock(&p->mu);
    return 0;
}

/* Wait until everything queued was applied (reflector thread); returns the
 * applier's failure, if any. */
static int pipe_drain(wpipe_t *p, char *msg, size_t msgcap)
{
    int err;

    kc__mu_lock(&p->mu);
    while (p->head != NULL || p->busy) {
        pthread_cond_signal(&p->work); /* no need to finish a nap */
        kc__cond_wait_until(&p->room, &p->mu, 0);
    }
    if ((err = p->err) != 0)
        snprintf(msg, msgcap, "%s", p->msg);
    kc__mu_unlock(&p->mu);
    return err;
}

typedef struct wctx {
    kc_informer_t *inf;
    wpipe_t *pipe;          /* live ADDED/MODIFIED/DELETED go there */
    int initial;            /* streaming list: collecting initial events */
    int relist;             /* the streaming list replaces earlier content */
    kc_obj_t **items;
    size_t n, cap;
    size_t events;          /* events of any kind on this stream */
    int error_code;         /* from an ERROR event */
    int cb_error;           /* the callback's own failure, with cb_msg */
    char cb_msg[300];
    kc_status_t est;
} wctx_t;

/* Extract metadata.resourceVersion and whether the initial-events-end
 * annotation is set from a bookmark object. */
static int parse_bookmark(const char *json, size_t len, char *rv, size_t rvcap, int *end)
{
    kc_json_span_t doc, meta, v, ann;
    int rc;

    *end = 0;
    rv[0] = '\0';
    rc = kc_json_parse_doc(json, len, &doc, NULL);
    if (rc != 0)
        return rc;
    if (kc_json_obj_get(doc, "metadata", &meta) != 0 || meta.type != KC_JSON_OBJECT)
        return KC_EPARSE;
    if (kc_json_obj_get(meta, "resourceVersion", &v) == 0 && v.type == KC_JSON_STRING) {
        rc = kc_json_str_unescape(v, rv, rvcap);
        if (rc != 0)
            return rc;
    }
    if (kc_json_obj_get(meta, "annotations", &ann) == 0 && ann.type == KC_JSON_OBJECT &&
        kc_json_obj_get(ann, "k8s.io/initial-events-end", &v) == 0 &&
        kc_json_str_eq(v, "true"))
        *end = 1;
    return 0;
}

static int watch_cb(void *ud, const kc_watch_event_t *ev)
{
    wctx_t *w = ud;
    kc_informer_t *inf = w->inf;
    kc_errbuf_t eb;
    kc_obj_t *obj = NULL;
    char rv[RV_MAX];
    int rc, end;

    w->events++;
    if (!w->initial && (ev->type == KC_WATCH_ADDED || ev->type == KC_WATCH_MODIFIED ||
                        ev->type == KC_WATCH_DELETED)) {
        rc = make_obj(inf, ev->object, ev->object_len,
                      (ev->flags & KC_WATCH_OBJECT_MINIFIED) != 0, ev->meta, &obj, &eb);
        if (rc != 0) {
            /* the events before it are applied first, as they came */
            int drc = pipe_drain(w->pipe, w->cb_msg, sizeof(w->cb_msg));
            if (drc != 0) {
                w->cb_error = drc;
                return drc;
            }
            w->cb_error = rc;
            snprintf(w->cb_msg, sizeof(w->cb_msg), "event on line %zu: %.200s", ev->line_no,
                     eb.msg);
            return rc;
        }
        rc = pipe_push(w->pipe, (int)ev->type, ev->line_no, obj, w->cb_msg, sizeof(w->cb_msg));
        if (rc != 0)
            w->cb_error = rc;
        return rc;
    }
    /* anything else comes after every data event before it */
    rc = pipe_drain(w->pipe, w->cb_msg, sizeof(w->cb_msg));
    if (rc != 0) {
        w->cb_error = rc;
        return rc;
    }
    note_event(inf, ev->type);
    switch (ev->type) {
    case KC_WATCH_BOOKMARK:
        rc = parse_bookmark(ev->object, ev->object_len, rv, sizeof(rv), &end);
        if (rc != 0)
            return rc;
        if (w->initial) {
            if (!end)
                return 0; /* progress during the initial state: not yet a resume point */
            if (rv[0] == '\0') {
                w->cb_error = KC_EPARSE;
                snprintf(w->cb_msg, sizeof(w->cb_msg),
                         "event on line %zu: initial-events-end bookmark without a "
                         "resourceVersion", ev->line_no);
                return KC_EPARSE;
            }
            w->initial = 0;
            rc = store_list(inf, w->items, w->n, rv, w->relist);
            w->items = NULL;
            w->n = w->cap = 0;
            if (rc != 0)
                return rc;
            kc__mu_lock(&inf->mu);
            inf->stream_deadline_ns = 0;
            inf->st.streaming_supported = 1;
            kc__mu_unlock(&inf->mu);
            set_phase(inf, KC_INFORMER_WATCHING);
            return 0;
        }
        set_rv(inf, rv);
        return 0;
    case KC_WATCH_ERROR:
        kc_status_clear(&w->est);
        rc = kc_status_from_json(ev->object, ev->object_len, &w->est);
        w->error_code = rc < 0 ? rc : KC_ESERVER;
        return w->error_code; /* ends the watch with this code */
    default:
        break;
    }

    /* the initial state of a streaming list: collected, stored at its end */
    rc = make_obj(inf, ev->object, ev->object_len, (ev->flags & KC_WATCH_OBJECT_MINIFIED) != 0,
                  ev->meta, &obj, &eb);
    if (rc != 0) {
        w->cb_error = rc;
        snprintf(w->cb_msg, sizeof(w->cb_msg), "event on line %zu: %.200s", ev->line_no, eb.msg);
        return rc;
    }
    if (ev->type != KC_WATCH_ADDED) {
        /* the server is not sending an initial state: not a streaming list */
        kc_obj_unref(obj);
        return KC_EUNSUPPORTED;
    }
    if (w->n == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 512;
        kc_obj_t **ni = realloc(w->items, nc * sizeof(*ni));
        if (ni == NULL) {
            kc_obj_unref(obj);
            return -ENOMEM;
        }
        w->items = ni;
        w->cap = nc;
    }
    w->items[w->n++] = obj;
    return 0;
}

/* Run one watch (a streaming list when streaming != 0).  Returns the
 * client's code, the ERROR event's code, or KC_ESTOPPED.  *initial_done
 * tells whether a streaming list completed its initial state. */
static int run_watch(kc_informer_t *inf, int streaming, int relist, size_t *events,
                     int *initial_done, int *deadline_hit, int *error_event, kc_status_t *st)
{
    kc_watch_opts_t wo = KC_WATCH_OPTS_INIT;
    wctx_t w;
    wpipe_t pipe;
    char pmsg[300];
    long span;
    int rc, perr;

    memset(&w, 0, sizeof(w));
    w.inf = inf;
    w.pipe = &pipe;
    w.initial = streaming;
    w.relist = relist;
    wo.resource_version = streaming ? NULL : inf->rv;
    wo.label_selector = inf->label_sel;
    wo.field_selector = inf->field_sel;
    wo.allow_bookmarks = 1;
    span = inf->o.watch_timeout_max_s - inf->o.watch_timeout_min_s;
    wo.timeout_seconds = inf->o.watch_timeout_min_s +
                         (span > 0 ? (long)(kc__rand_unit(&inf->rng) * (double)(span + 1)) : 0);
    wo.send_initial_events = streaming;
    wo.cancel = &inf->cancel;

    kc__mu_lock(&inf->mu);
    inf->st.watches++;
    if (streaming)
        inf->stream_deadline_ns = kc_now_ns() +
                                  (uint64_t)inf->o.streaming_deadline_ms * 1000000ull;
    pthread_cond_broadcast(&inf->cond);
    kc__mu_unlock(&inf->mu);

    kc_status_clear(st);
    rc = pipe_start(&pipe, inf);
    if (rc != 0) {
        snprintf(st->message, sizeof(st->message), "cannot start the watch applier thread");
        kc__mu_lock(&inf->mu);
        inf->stream_deadline_ns = 0;
        kc__mu_unlock(&inf->mu);
        *events = 0;
        *initial_done = 0;
        *deadline_hit = 0;
        *error_event = 0;
        return rc;
    }
    rc = kc_client_watch(inf->client, &inf->res, inf->ns, &wo, watch_cb, &w, st);
    /* what was queued is applied before the watch counts as ended */
    perr = pipe_finish(&pipe, pmsg, sizeof(pmsg));
    if (perr != 0 && w.cb_error == 0) {
        /* the applier failed after the last callback: the watch fails as
         * if the callback had returned it */
        w.cb_error = perr;
        memcpy(w.cb_msg, pmsg, sizeof(w.cb_msg));
        rc = perr;
    }
    *error_event = w.error_code != 0 && rc == w.error_code;
    if (*error_event) {
        *st = w.est;
    } else if (w.cb_error != 0 && rc == w.cb_error) {
        snprintf(st->message, sizeof(st->message), "%s", w.cb_msg);
    }

    kc__mu_lock(&inf->mu);
    inf->stream_deadline_ns = 0;
    *deadline_hit = 0;
    if (rc == KC_ESTOPPED && inf->deadline_fired && !inf->stopping) {
        rc = KC_ETIMEOUT;
        *deadline_hit = 1;
    }
    kc__mu_unlock(&inf->mu);

    *events = w.events;
    *initial_done = streaming && !w.initial;
    for (size_t i = 0; i < w.n; i++)
        kc_obj_unref(w.items[i]);
    free(w.items);
    return rc;
}

/* ----------------------------------------------------------- reflector */

static void *reflector_main(void *arg)
{
    kc_informer_t *inf = arg;
    int need_list = 1, listed_once = 0, error_events = 0, rc;
    kc_status_t st;

    while (!is_stopping(inf)) {
        int streaming = 0, initial_done = 0, deadline_hit = 0, error_event = 0;
        int relist = listed_once;
        size_t events = 0;
        uint64_t t0;

        if (need_list) {
            if (relist && inf->o.budget != NULL) {
                uint64_t wait = kc_relist_budget_reserve(inf->o.budget);
                if (wait > 0) {
                    kc_log(&inf->o.log, KC_LOG_INFO, COMPONENT,
                           "%s: relist waits %.3f s for the relist budget",
                           inf->res.resource, (double)wait / 1e9);
                    if (sleep_until(inf, kc_now_ns() + wait))
                        break;
                }
            }
            set_phase(inf, KC_INFORMER_LISTING);
            kc__mu_lock(&inf->mu);
            streaming = inf->o.use_streaming_list && inf->st.streaming_supported != 0;
            kc__mu_unlock(&inf->mu);
            if (!streaming) {
                if (arm_request(inf))
                    break;
                rc = list_paged(inf, relist, &st);
                if (rc == KC_ESTOPPED)
                    break;
                if (rc != 0) {
                    if (backoff_wait(inf, (uint64_t)(st.retry_after_s * 1e9)))
                        break;
                    continue;
                }
                need_list = 0;
                listed_once = 1;
                continue; /* now watch */
            }
        }

        if (arm_request(inf))
            break;
        if (!streaming)
            set_phase(inf, KC_INFORMER_WATCHING);
        t0 = kc_now_ns();
        rc = run_watch(inf, streaming, relist, &events, &initial_done, &deadline_hit,
                       &error_event, &st);
        if (rc == KC_ESTOPPED && is_stopping(inf))
            break;

        if (streaming && !initial_done) {
            /* the streaming list did not deliver its initial state */
            int lacks = rc == KC_EBADREQUEST || rc == KC_EINVALID || rc == KC_EUNSUPPORTED ||
                        deadline_hit;
            if (lacks) {
                kc__mu_lock(&inf->mu);
                inf->st.streaming_supported = 0;
                kc__mu_unlock(&inf->mu);
                kc_log(&inf->o.log, KC_LOG_WARN, COMPONENT,
                       "%s: streaming list not supported by the server (%s%s%s); "
                       "using paged lists from now on", inf->res.resource, kc_strerror(rc),
                       st.message[0] ? ": " : "", st.message);
                continue; /* need_list is still set: list now, paged */
            }
            record_error(inf, rc ? rc : KC_ECLOSED, "streaming list", &st);
            if (backoff_wait(inf, (uint64_t)(st.retry_after_s * 1e9)))
                break;
            continue;
        }
        if (streaming) {
            need_list = 0;
            listed_once = 1;
        }

        /* an ERROR event other than 410 (e.g. "Too large resource version"
         * after the server's store went back in time) that keeps coming
         * means our resourceVersion is no good there: list again */
        error_events = error_event ? error_events + 1 : 0;
        if (rc == KC_EGONE || error_events >= 3) {
            error_events = 0;
            kc_log(&inf->o.log, KC_LOG_INFO, COMPONENT,
                   "%s: watch from resourceVersion %s expired (%s); relisting",
                   inf->res.resource, inf->rv, st.message[0] ? st.message : "410 Gone");
            kc__mu_lock(&inf->mu);
            inf->st.restarts++;
            kc__mu_unlock(&inf->mu);
            need_list = 1;
            continue;
        }
        kc__mu_lock(&inf->mu);
        inf->st.restarts++;
        kc__mu_unlock(&inf->mu);
        if (rc == 0 && !(events == 0 && kc_now_ns() - t0 < 1000000000ull)) {
            kc_log(&inf->o.log, KC_LOG_DEBUG, COMPONENT,
                   "%s: watch ended after %zu events; resuming from resourceVersion %s",
                   inf->res.resource, events, inf->rv);
            continue;
        }
        /* errors, and a very short watch with no events, back off and watch
         * again from the same resourceVersion: no relist */
        record_error(inf, rc ? rc : KC_ECLOSED,
                     rc ? "watch" : "watch ended at once with no events", &st);
        if (backoff_wait(inf, (uint64_t)(st.retry_after_s * 1e9)))
            break;
    }
    set_phase(inf, KC_INFORMER_STOPPED);
    return NULL;
}

/* ----------------------------------------------------------- timer thread */

static void resync(kc_informer_t *inf)
{
    kc_objlist_t l;
    size_t n;

    emit_begin(inf);
    if (kc_cache_list(inf->cache, &l) == 0) {
        n = l.len;
        for (size_t i = 0; i < n; i++)
            emit_update(inf, l.items[i], l.items[i]);
        kc_objlist_free(&l);
    }
    emit_end(inf);
    kc__mu_lock(&inf->mu);
    inf->st.resyncs++;
    kc__mu_unlock(&inf->mu);
}

static void *timer_main(void *arg)
{
    kc_informer_t *inf = arg;
    uint64_t period = inf->o.resync_s > 0 ? (uint64_t)(inf->o.resync_s * 1e9) : 0;

    kc__mu_lock(&inf->mu);
    inf->next_resync_ns = period ? kc_now_ns() + period : 0;
    while (!inf->stopping) {
        uint64_t now = kc_now_ns(), next = 0;
        if (inf->stream_deadline_ns && now >= inf->stream_deadline_ns) {
            inf->stream_deadline_ns = 0;
            inf->deadline_fired = 1;
            kc_cancel_set(&inf->cancel);
        }
        if (period && now >= inf->next_resync_ns) {
            inf->next_resync_ns = now + period;
            if (inf->synced) {
                kc__mu_unlock(&inf->mu);
                resync(inf);
                kc__mu_lock(&inf->mu);
                continue;
            }
        }
        if (inf->stream_deadline_ns)
            next = inf->stream_deadline_ns;
        if (period && (next == 0 || inf->next_resync_ns < next))
            next = inf->next_resync_ns;
        kc__cond_wait_until(&inf->cond, &inf->mu, next);
    }
    kc__mu_unlock(&inf->mu);
    return NULL;
}

/* ----------------------------------------------------------- public API */

int kc_informer_new(kc_client_t *client, const kc_informer_opts_t *o,
                    kc_informer_t **out, kc_errbuf_t *eb)
{
    kc_informer_t *inf;
    kc_cache_opts_t co = KC_CACHE_OPTS_INIT;
    int fail = 0, rc;

    *out = NULL;
    if (client == NULL || o == NULL || o->resource == NULL || o->resource->resource == NULL ||
        o->resource->version == NULL)
        return kc_errf(eb, -EINVAL, "informer: client and resource are required");
    if (o->page_size < 0 || o->resync_s < 0 || o->watch_timeout_min_s < 1 ||
        o->watch_timeout_max_s < o->watch_timeout_min_s)
        return kc_errf(eb, -EINVAL, "informer: bad page size, resync or watch timeouts");
    inf = calloc(1, sizeof(*inf));
    if (inf == NULL)
        return kc_errf(eb, -ENOMEM, "informer: out of memory");
    inf->client = client;
    inf->o = *o;
    inf->group = strdup(o->resource->group ? o->resource->group : "");
    inf->version = strdup(o->resource->version);
    inf->resource = strdup(o->resource->resource);
    inf->kind = strdup(o->resource->kind ? o->resource->kind : "");
    if (!inf->group || !inf->version || !inf->resource || !inf->kind)
        fail = 1;
    inf->ns = o->resource->namespaced ? dup_opt(o->namespace_, &fail) : NULL;
    inf->label_sel = dup_opt(o->label_selector, &fail);
    inf->field_sel = dup_opt(o->field_selector, &fail);
    if (fail) {
        rc = kc_errf(eb, -ENOMEM, "informer: out of memory");
        goto fail_strings;
    }
    inf->res.group = inf->group;
    inf->res.version = inf->version;
    inf->res.resource = inf->resource;
    inf->res.kind = inf->kind;
    inf->res.namespaced = o->resource->namespaced;
    inf->o.resource = &inf->res;
    inf->o.namespace_ = inf->ns;
    inf->o.label_selector = inf->label_sel;
    inf->o.field_selector = inf->field_sel;
    if (inf->o.streaming_deadline_ms <= 0)
        inf->o.streaming_deadline_ms = 60000;
    if (inf->o.handler_backlog_max == 0)
        inf->o.handler_backlog_max = 65536;
    inf->rng = o->seed ? o->seed : (kc_now_ns() ^ (uint64_t)(uintptr_t)inf);
    kc__backoff_init(&inf->bo, o->backoff_initial_ms, o->backoff_max_ms, o->backoff_reset_ms,
                     kc__rand_next(&inf->rng));
    co.namespaced = o->resource->namespaced ? 1 : 0;
    /* the server validated every name it sends: accept its widest rule */
    co.name_rule = KC_NAME_PATH_SEGMENT;
    rc = kc_cache_new(&co, &inf->cache);
    if (rc != 0) {
        kc_errf(eb, rc, "informer: creating the cache: %s", kc_strerror(rc));
        goto fail_strings;
    }
    if ((rc = kc__cond_init(&inf->emit_cv)) != 0)
        goto fail_emit;
    if ((rc = kc__mu_init(&inf->mu)) != 0)
        goto fail_mu;
    if ((rc = kc__cond_init(&inf->cond)) != 0)
        goto fail_cond;
    kc_cancel_reset(&inf->cancel);
    inf->st.phase = KC_INFORMER_NEW;
    inf->st.phase_since = kc_wall_time();
    inf->st.streaming_supported = -1;
    *out = inf;
    return 0;

fail_cond:
    pthread_mutex_destroy(&inf->mu);
fail_mu:
    pthread_cond_destroy(&inf->emit_cv);
fail_emit:
    kc_cache_free(inf->cache);
    kc_errf(eb, rc, "informer: %s", kc_strerror(rc));
fail_strings:
    free(inf->group);
    free(inf->version);
    free(inf->resource);
    free(inf->kind);
    free(inf->ns);
    free(inf->label_sel);
    free(inf->field_sel);
    free(inf);
    return rc;
}

int kc_informer_add_handler(kc_informer_t *inf, const kc_handler_t *h)
{
    kc__proc_t *p;
    int rc, running;

    if (h == NULL)
        return -EINVAL;
    rc = kc__proc_new(h, inf->o.handler_backlog_max, &inf->o.log, &p);
    if (rc != 0)
        return rc;
    emit_begin(inf);
    kc__mu_lock(&inf->mu);
    if (inf->stopping) {
        kc__mu_unlock(&inf->mu);
        emit_end(inf);
        kc__proc_free(p);
        return KC_ESTOPPED;
    }
    if (inf->nprocs == inf->procs_cap) {
        size_t nc = inf->procs_cap ? inf->procs_cap * 2 : 4;
        kc__proc_t **np = realloc(inf->procs, nc * sizeof(*np));
        if (np == NULL) {
            kc__mu_unlock(&inf->mu);
            emit_end(inf);
            kc__proc_free(p);
            return -ENOMEM;
        }
        inf->procs = np;
        inf->procs_cap = nc;
    }
    running = inf->started;
    kc__mu_unlock(&inf->mu);

    if (running) {
        kc_objlist_t l;
        rc = kc__proc_start(p);
        if (rc == 0)
            rc = kc_cache_list(inf->cache, &l);
        if (rc != 0) {
            emit_end(inf);
            kc__proc_free(p);
            return rc;
        }
        /* token held: no event can slip between this snapshot and the
         * handler joining the list */
        for (size_t i = 0; i < l.len; i++)
            kc__proc_add(p, l.items[i]);
        kc_objlist_free(&l);
    }
    kc__mu_lock(&inf->mu);
    if (inf->stopping) {
        kc__mu_unlock(&inf->mu);
        emit_end(inf);
        kc__proc_free(p);
        return KC_ESTOPPED;
    }
    inf->procs[inf->nprocs++] = p;
    kc__mu_unlock(&inf->mu);
    emit_end(inf);
    return 0;
}

int kc_informer_start(kc_informer_t *inf)
{
    int rc;

    emit_begin(inf);
    kc__mu_lock(&inf->mu);
    if (inf->started || inf->stopping) {
        kc__mu_unlock(&inf->mu);
        emit_end(inf);
        return inf->stopping ? KC_ESTOPPED : KC_EBUSY;
    }
    kc__mu_unlock(&inf->mu);
    for (size_t i = 0; i < inf->nprocs; i++) {
        rc = kc__proc_start(inf->procs[i]);
        if (rc != 0 && rc != KC_EBUSY)
            goto fail;
    }
    rc = pthread_create(&inf->timer, NULL, timer_main, inf);
    if (rc != 0) {
        rc = -rc;
        goto fail;
    }
    rc = pthread_create(&inf->reflector, NULL, reflector_main, inf);
    if (rc != 0) {
        kc__mu_lock(&inf->mu);
        inf->stopping = 1;
        pthread_cond_broadcast(&inf->cond);
        kc__mu_unlock(&inf->mu);
        pthread_join(inf->timer, NULL);
        kc__mu_lock(&inf->mu);
        inf->stopping = 0;
        kc__mu_unlock(&inf->mu);
        rc = -rc;
        goto fail;
    }
    kc__mu_lock(&inf->mu);
    inf->started = 1;
    inf->st.phase = KC_INFORMER_LISTING;
    inf->st.phase_since = kc_wall_time();
    kc__mu_unlock(&inf->mu);
    emit_end(inf);
    return 0;

fail:
    for (size_t i = 0; i < inf->nprocs; i++)
        kc__proc_stop(inf->procs[i]);
    emit_end(inf);
    return rc;
}

int kc_informer_stop(kc_informer_t *inf)
{
    int started;
    size_t n;

    if (inf == NULL)
        return 0;
    kc__mu_lock(&inf->mu);
    inf->stopping = 1;
    kc_cancel_set(&inf->cancel);
    pthread_cond_broadcast(&inf->cond);
    started = inf->started;
    inf->started = 0;
    kc__mu_unlock(&inf->mu);
    /* handlers first: a reflector waiting for backlog room is released.
     * add_handler appends nothing once stopping is set. */
    for (size_t i = 0;; i++) {
        kc__proc_t *p = NULL;
        kc__mu_lock(&inf->mu);
        n = inf->nprocs;
        if (i < n)
            p = inf->procs[i];
        kc__mu_unlock(&inf->mu);
        if (p == NULL)
            break;
        kc__proc_stop(p);
    }
    if (started) {
        pthread_join(inf->reflector, NULL);
        pthread_join(inf->timer, NULL);
    }
    kc__mu_lock(&inf->mu);
    inf->st.phase = KC_INFORMER_STOPPED;
    inf->st.phase_since = kc_wall_time();
    pthread_cond_broadcast(&inf->cond);
    kc__mu_unlock(&inf->mu);
    return 0;
}

void kc_informer_free(kc_informer_t *inf)
{
    if (inf == NULL)
        return;
    kc_informer_stop(inf);
    for (size_t i = 0; i < inf->nprocs; i++)
        kc__proc_free(inf->procs[i]);
    free(inf->procs);
    kc_cache_free(inf->cache);
    kc_buf_free(&inf->body);
    pthread_cond_destroy(&inf->cond);
    pthread_mutex_destroy(&inf->mu);
    pthread_cond_destroy(&inf->emit_cv);
    free(inf->group);
    free(inf->version);
    free(inf->resource);
    free(inf->kind);
    free(inf->ns);
    free(inf->label_sel);
    free(inf->field_sel);
    free(inf);
}

kc_cache_t *kc_informer_cache(kc_informer_t *inf)
{
    return inf->cache;
}

int kc_informer_has_synced(kc_informer_t *inf)
{
    int s;

    kc__mu_lock(&inf->mu);
    s = inf->synced;
    kc__mu_unlock(&inf->mu);
    return s;
}

int kc_informer_wait_synced(kc_informer_t *inf, long timeout_ms)
{
    uint64_t deadline = timeout_ms < 0 ? 0 : kc_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    int rc = 0;

    kc__mu_lock(&inf->mu);
    while (!inf->synced) {
        if (inf->stopping) {
            rc = KC_ESTOPPED;
            break;
        }
        if (kc__cond_wait_until(&inf->cond, &inf->mu, deadline) == ETIMEDOUT) {
            rc = inf->synced ? 0 : KC_ETIMEOUT;
            break;
        }
    }
    kc__mu_unlock(&inf->mu);
    return rc;
}

int kc_informer_wait_handlers_idle(kc_informer_t *inf, long timeout_ms)
{
    uint64_t start = kc_now_ns();
    size_t n;
    int rc = 0;

    /* a barrier: an emission in progress (a relist's diff, a watch event)
     * holds the token until every event of it is queued, so once we got it,
     * all the changes already in the cache are in the handlers' queues */
    emit_begin(inf);
    emit_end(inf);
    kc__mu_lock(&inf->mu);
    n = inf->nprocs;
    kc__mu_unlock(&inf->mu);
    for (size_t i = 0; i < n && rc == 0; i++) {
        kc__proc_t *p;
        long left = timeout_ms;
        if (timeout_ms >= 0) {
            left = timeout_ms - (long)((kc_now_ns() - start) / 1000000ull);
            if (left < 0)
                left = 0;
        }
        kc__mu_lock(&inf->mu);
        p = inf->procs[i];
        kc__mu_unlock(&inf->mu);
        rc = kc__proc_wait_idle(p, left);
    }
    return rc;
}

int kc_informer_state(kc_informer_t *inf, kc_informer_state_t *out)
{
    uint64_t last;

    kc__mu_lock(&inf->mu);
    *out = inf->st;
    last = inf->last_event_ns;
    kc__mu_unlock(&inf->mu);
    out->since_last_event_s = last ? (double)(kc_now_ns() - last) / 1e9 : -1.0;
    out->cached_objects = kc_cache_len(inf->cache);
    return 0;
}

int kc_informer_handler_stats(kc_informer_t *inf, size_t i, kc_handler_stats_t *out)
{
    kc__proc_t *p = NULL;

    kc__mu_lock(&inf->mu);
    if (i < inf->nprocs)
        p = inf->procs[i];
    kc__mu_unlock(&inf->mu);
    if (p == NULL)
        return KC_ENOTFOUND;
    kc__proc_stats(p, out);
    return 0;
}
