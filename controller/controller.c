/*
 * A controller: a work queue fed by informer handlers (sources), and N
 * worker threads that take keys off the queue and call reconcile, as
 * controller-runtime's controller does.
 *
 * Sources turn informer events into keys: SELF enqueues the object's own
 * key, OWNER the key of the owner named in its ownerReferences (same
 * namespace), MAP whatever the map function emits.  A predicate may drop
 * events first.  Handlers run on the informer's handler threads and only
 * add to the queue, which is thread-safe, so the controller needs no lock
 * of its own for them.
 *
 * Workers: get, reconcile, record the result (metrics, log), requeue as the
 * result asks, done.  The queue guarantees a key is never reconciled by
 * two workers at once.  Once stopping is set, a worker that gets a key
 * hands it back (done) without reconciling and exits, so stop waits only
 * for reconciles already running.
 *
 * Locking: c->lock protects started/stopped/nsources/sources growth and
 * the worker bookkeeping; never held while reconciling or logging.
 */
#include "kc_controller.h"
#include "kc_cache.h"
#include "kc_informer.h"
#include "ctrl_int.h"

#include <cjson/cJSON.h>
#include <stdatomic.h>

typedef struct source {
    kc_controller_t *c;
    kc_source_t s;
    char *owner_kind, *owner_group;
    struct source *next;
} source_t;

struct kc_controller {
    char *name;
    kc_reconcile_cb reconcile;
    void *ud;
    int nworkers;
    kc_workqueue_t *q;
    kc_logger_t log;
    kc_metric_t *m_total, *m_errors, *m_time, *m_active, *m_max;
    atomic_int stopping;
    atomic_int active;

    pthread_mutex_t lock;
    /* protected by lock: */
    source_t *sources;
    pthread_t *threads;
    int nthreads;
    bool started, stopped;
    bool leaked_workers;     /* stop timed out: do not free */
};

/* controller-runtime's reconcile time buckets */
static const double reconcile_buckets[] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6,
    0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8,
    9, 10, 15, 20, 25, 30, 40, 50, 60
};

static int register_metrics(kc_controller_t *c, kc_metrics_t *m)
{
    static const char *const lc[] = { "controller", NULL };
    static const char *const lcr[] = { "controller", "result", NULL };
    const char *v[] = { c->name, NULL };
    int rc;

    if ((rc = kc_metrics_counter(m, "controller_runtime_reconcile_total",
                                 "Total number of reconciliations per controller", lcr,
                                 &c->m_total)) != 0 ||
        (rc = kc_metrics_counter(m, "controller_runtime_reconcile_errors_total",
                                 "Total number of reconciliation errors per controller", lc,
                                 &c->m_errors)) != 0 ||
        (rc = kc_metrics_histogram(m, "controller_runtime_reconcile_time_seconds",
                                   "Length of time per reconciliation per controller", lc,
                                   reconcile_buckets,
                                   sizeof(reconcile_buckets) / sizeof(reconcile_buckets[0]),
                                   &c->m_time)) != 0 ||
        (rc = kc_metrics_gauge(m, "controller_runtime_active_workers",
                               "Number of currently used workers per controller", lc,
                               &c->m_active)) != 0 ||
        (rc = kc_metrics_gauge(m, "controller_runtime_max_concurrent_reconciles",
                               "Maximum number of concurrent reconciles per controller", lc,
                               &c->m_max)) != 0)
        return rc;
    static const char *const results[] = { "success", "error", "requeue", "requeue_after" };
    for (size_t i = 0; i < 4; i++)
        kc_metric_add(c->m_total, (const char *const[]){ c->name, results[i] }, 0);
    kc_metric_add(c->m_errors, v, 0);
    kc_metric_set(c->m_active, v, 0);
    kc_metric_set(c->m_max, v, c->nworkers);
    return 0;
}

int kc_controller_new(const kc_controller_opts_t *o, kc_controller_t **out, kc_errbuf_t *eb)
{
    kc_workqueue_opts_t qo = KC_WORKQUEUE_OPTS_INIT;
    kc_controller_t *c;
    int rc;

    if (o == NULL || out == NULL || o->reconcile == NULL || o->name == NULL ||
        o->name[0] == '\0' || o->workers < 1)
        return kc_errf(eb, -EINVAL, "controller: name, reconcile and workers >= 1 are required");
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    ctrl_mutex_init(&c->lock);
    c->name = strdup(o->name);
    if (c->name == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    c->reconcile = o->reconcile;
    c->ud = o->ud;
    c->nworkers = o->workers;
    c->log = o->log;
    qo.name = o->name;
    qo.base_delay_ns = o->base_delay_ns;
    qo.max_delay_ns = o->max_delay_ns;
    qo.qps = o->qps;
    qo.burst = o->burst;
    qo.metrics = o->metrics;
    rc = kc_workqueue_new(&qo, &c->q);
    if (rc != 0) {
        kc_errf(eb, rc, "controller %s: work queue: %s", o->name, kc_strerror(rc));
        goto fail;
    }
    if (o->metrics != NULL && (rc = register_metrics(c, o->metrics)) != 0) {
        kc_errf(eb, rc, "controller %s: metrics: %s", o->name, kc_strerror(rc));
        goto fail;
    }
    *out = c;
    return 0;
fail:
    kc_workqueue_free(c->q);
    free(c->name);
    pthread_mutex_destroy(&c->lock);
    free(c);
    return rc;
}

/* ------------------------------------------------------------------ */
/* sources                                                              */

static void emit_key(void *ctx, const char *key)
{
    kc_controller_t *c = ctx;
    kc_workqueue_add(c->q, key);
}

static void enqueue_for(source_t *src, kc_obj_t *obj)
{
    kc_controller_t *c = src->c;
    char key[KC_KEY_STR_MAX];
    kc_key_t k;

    switch (src->s.kind) {
    case KC_SOURCE_SELF:
        kc_obj_key(obj, &k);
        kc_key_format(&k, key, sizeof(key));
        kc_workqueue_add(c->q, key);
        break;
    case KC_SOURCE_OWNER:
        for (size_t i = 0; i < kc_obj_owner_count(obj); i++) {
            kc_owner_ref_t ref;
            if (kc_obj_owner_at(obj, i, &ref) != 0)
                break;
            if (src->s.owner_controller_only && !ref.controller)
                continue;
            if (src->owner_kind && strcmp(ref.kind, src->owner_kind) != 0)
                continue;
            if (src->owner_group != NULL) {
                const char *slash = strchr(ref.api_version, '/');
                size_t gl = slash ? (size_t)(slash - ref.api_version) : 0;
                if (strlen(src->owner_group) != gl ||
                    strncmp(ref.api_version, src->owner_group, gl) != 0)
                    continue;
            }
            if (kc_key_init_rule(&k, kc_obj_namespace(obj), ref.name,
                                 KC_NAME_PATH_SEGMENT) != 0)
                continue;
            kc_key_format(&k, key, sizeof(key));
            kc_workqueue_add(c->q, key);
        }
        break;
    case KC_SOURCE_MAP:
        if (src->s.map)
            src->s.map(src->s.map_ud, obj, emit_key, c);
        break;
    }
}

static void on_add(void *ud, kc_obj_t *obj)
{
    source_t *src = ud;
    if (src->s.predicate && !src->s.predicate(src->s.predicate_ud, KC_EVENT_CREATE, NULL, obj))
        return;
    enqueue_for(src, obj);
}

static void on_update(void *ud, kc_obj_t *old, kc_obj_t *obj)
{
    source_t *src = ud;
    if (src->s.predicate && !src->s.predicate(src->s.predicate_ud, KC_EVENT_UPDATE, old, obj))
        return;
    /* an owner change moves the object: both owners must hear of it */
    if (src->s.kind != KC_SOURCE_SELF && old != NULL && old != obj)
        enqueue_for(src, old);
    enqueue_for(src, obj);
}

static void on_delete(void *ud, kc_obj_t *obj, int unknown)
{
    source_t *src = ud;
    (void)unknown;
    if (src->s.predicate && !src->s.predicate(src->s.predicate_ud, KC_EVENT_DELETE, NULL, obj))
        return;
    enqueue_for(src, obj);
}

int kc_controller_watch(kc_controller_t *c, const kc_source_t *s)
{
    kc_handler_t h = KC_HANDLER_INIT;
    source_t *src;
    int rc;

    if (c == NULL || s == NULL || s->informer == NULL ||
        (s->kind == KC_SOURCE_MAP && s->map == NULL))
        return -EINVAL;
    src = calloc(1, sizeof(*src));
    if (src == NULL)
        return -ENOMEM;
    src->c = c;
    src->s = *s;
    if (s->owner_kind && (src->owner_kind = strdup(s->owner_kind)) == NULL)
        goto nomem;
    if (s->owner_group && (src->owner_group = strdup(s->owner_group)) == NULL)
        goto nomem;
    src->s.owner_kind = src->owner_kind;
    src->s.owner_group = src->owner_group;
    /* Linked before registration: the handler may fire at once. */
    ctrl_lock(&c->lock);
    src->next = c->sources;
    c->sources = src;
    ctrl_unlock(&c->lock);
    h.on_add = on_add;
    h.on_update = on_update;
    h.on_delete = on_delete;
    h.ud = src;
    rc = kc_informer_add_handler(s->informer, &h);
    /* On failure the source stays linked (freed with the controller):
     * unlinking would race with nothing, but keeps the code simple. */
    return rc;
nomem:
    free(src->owner_kind);
    free(src->owner_group);
    free(src);
    return -ENOMEM;
}

/* ------------------------------------------------------------------ */
/* predicates                                                           */

static bool annotations_equal(kc_obj_t *a, kc_obj_t *b)
{
    cJSON *ja = kc_obj_parse(a), *jb = kc_obj_parse(b);
    bool eq = false;

    if (ja && jb) {
        cJSON *aa = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(ja, "metadata"), "annotations");
        cJSON *ab = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(jb, "metadata"), "annotations");
        if (aa == NULL || ab == NULL)
            eq = (aa == NULL) == (ab == NULL) ||
                 (cJSON_GetArraySize(aa ? aa : ab) == 0);
        else
            eq = cJSON_Compare(aa, ab, 1);
    }
    cJSON_Delete(ja);
    cJSON_Delete(jb);
    return eq;
}

static bool labels_equal(kc_obj_t *a, kc_obj_t *b)
{
    size_t n = kc_obj_label_count(a);

    if (n != kc_obj_label_count(b))
        return false;
    for (size_t i = 0; i < n; i++) {
        const char *k, *v, *v2;
        if (kc_obj_label_at(a, i, &k, &v) != 0)
            return false;
        v2 = kc_obj_label(b, k);
        if (v2 == NULL || strcmp(v, v2) != 0)
            return false;
    }
    return true;
}

bool kc_predicate_generation_or_metadata_changed(void *ud, kc_event_type_t t, kc_obj_t *old,
                                                 kc_obj_t *obj)
{
    (void)ud;
    if (t != KC_EVENT_UPDATE || old == NULL || obj == NULL)
        return true;
    if (kc_obj_generation(old) != kc_obj_generation(obj))
        return true;
    if (!labels_equal(old, obj))
        return true;
    return !annotations_equal(old, obj);
}

/* ------------------------------------------------------------------ */
/* workers                                                              */

static const char *result_name(kc_result_kind_t k)
{
    switch (k) {
    case KC_RESULT_DONE: return "success";
    case KC_RESULT_REQUEUE: return "requeue";
    case KC_RESULT_REQUEUE_AFTER: return "requeue_after";
    default: return "error";
    }
}

static void *worker_main(void *arg)
{
    kc_controller_t *c = arg;
    const char *lv[] = { c->name, NULL };
    char *ks;

    while (kc_workqueue_get(c->q, &ks) == 0) {
        kc_key_t key;
        kc_result_t r;
        uint64_t t0;

        if (atomic_load(&c->stopping)) {
            kc_workqueue_done(c->q, ks);
            free(ks);
            break;
        }
        if (kc_key_parse_rule(&key, ks, KC_NAME_PATH_SEGMENT) != 0) {
            kc_log(&c->log, KC_LOG_ERROR, c->name, "dropping malformed key \"%s\"", ks);
            kc_workqueue_forget(c->q, ks);
            kc_workqueue_done(c->q, ks);
            free(ks);
            continue;
        }
        kc_metric_set(c->m_active, lv, (double)(atomic_fetch_add(&c->active, 1) + 1));
        t0 = kc_now_ns();
        r = c->reconcile(c->ud, &key);
        kc_metric_observe(c->m_time, lv, (double)(kc_now_ns() - t0) / 1e9);
        kc_metric_set(c->m_active, lv, (double)(atomic_fetch_sub(&c->active, 1) - 1));
        kc_metric_inc(c->m_total, (const char *const[]){ c->name, result_name(r.kind) });
        switch (r.kind) {
        case KC_RESULT_DONE:
            kc_workqueue_forget(c->q, ks);
            break;
        case KC_RESULT_REQUEUE:
            kc_workqueue_add_rate_limited(c->q, ks, NULL);
            break;
        case KC_RESULT_REQUEUE_AFTER:
            kc_workqueue_forget(c->q, ks);
            kc_workqueue_add_after(c->q, ks, r.after_ns);
            break;
        case KC_RESULT_ERROR:
        default: {
            uint64_t delay = 0;
            kc_metric_inc(c->m_errors, lv);
            kc_workqueue_add_rate_limited(c->q, ks, &delay);
            kc_log(&c->log, KC_LOG_ERROR, c->name,
                   "reconcile %s failed: %s (attempt %d, retry in %.3f s)", ks,
                   kc_strerror(r.err), kc_workqueue_num_requeues(c->q, ks), (double)delay / 1e9);
            break;
        }
        }
        kc_workqueue_done(c->q, ks);
        free(ks);
    }
    return NULL;
}

int kc_controller_enqueue(kc_controller_t *c, const char *key)
{
    if (c == NULL || key == NULL)
        return -EINVAL;
    return kc_workqueue_add(c->q, key);
}

kc_workqueue_t *kc_controller_queue(kc_controller_t *c)
{
    return c ? c->q : NULL;
}

const char *kc_controller_name(kc_controller_t *c)
{
    return c ? c->name : NULL;
}

int kc_controller_start(kc_controller_t *c)
{
    int rc = 0;

    if (c == NULL)
        return -EINVAL;
    ctrl_lock(&c->lock);
    if (c->started) {
        ctrl_unlock(&c->lock);
        return KC_EBUSY;
    }
    c->threads = calloc((size_t)c->nworkers, sizeof(pthread_t));
    if (c->threads == NULL) {
        ctrl_unlock(&c->lock);
        return -ENOMEM;
    }
    c->started = true;
    for (int i = 0; i < c->nworkers; i++) {
        rc = pthread_create(&c->threads[i], NULL, worker_main, c);
        if (rc != 0) {
            rc = -rc;
            break;
        }
        c->nthreads++;
    }
    ctrl_unlock(&c->lock);
    if (rc == 0)
        kc_log(&c->log, KC_LOG_INFO, c->name, "started %d workers", c->nworkers);
    return rc;
}

int kc_controller_stop(kc_controller_t *c, uint64_t timeout_ns)
{
    int rc;

    if (c == NULL)
        return -EINVAL;
    ctrl_lock(&c->lock);
    if (c->stopped) {
        rc = c->leaked_workers ? KC_ETIMEOUT : 0;
        ctrl_unlock(&c->lock);
        return rc;
    }
    c->stopped = true;
    ctrl_unlock(&c->lock);
    atomic_store(&c->stopping, 1);
    rc = kc_workqueue_shutdown_drain(c->q, timeout_ns);
    if (rc != 0) {
        kc_log(&c->log, KC_LOG_ERROR, c->name,
               "%zu reconciles still running after %.1f s; abandoning them",
               kc_workqueue_processing(c->q), (double)timeout_ns / 1e9);
        ctrl_lock(&c->lock);
        c->leaked_workers = true;
        ctrl_unlock(&c->lock);
        return KC_ETIMEOUT;
    }
    /* every worker now returns from get (queue shut down, or the stopping
     * flag makes it hand back what it got) */
    for (int i = 0; i < c->nthreads; i++)
        pthread_join(c->threads[i], NULL);
    kc_log(&c->log, KC_LOG_INFO, c->name, "stopped");
    return 0;
}

void kc_controller_free(kc_controller_t *c)
{
    source_t *s;

    if (c == NULL)
        return;
    if (c->started && !c->stopped)
        kc_controller_stop(c, 0);
    if (c->leaked_workers)
        return; /* a reconcile may still use c: leak rather than race */
    s = c->sources;
    while (s) {
        source_t *next = s->next;
        free(s->owner_kind);
        free(s->owner_group);
        free(s);
        s = next;
    }
    kc_workqueue_free(c->q);
    free(c->threads);
    free(c->name);
    pthread_mutex_destroy(&c->lock);
    free(c);
}
