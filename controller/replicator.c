/*
 * The replicator: copies annotated Secrets and ConfigMaps into the
 * namespaces their kcache.io/replicate-to annotation names (see
 * kc_controller.h for the rules).
 *
 * One controller per kind, keyed by the SOURCE's "ns/name".  Events map to
 * source keys: every Secret or ConfigMap that is not one of our copies
 * enqueues itself (it is, or may have been, a source); a copy (managed-by
 * label) enqueues the source named in its replicated-from annotation; a namespace event enqueues every source
 * of the kind.  Reconcile computes the set of target namespaces from the
 * caches and converges: create missing copies, update differing ones
 * (PUT with the cached resourceVersion, so a concurrent replacement fails
 * with 409 rather than being overwritten), delete copies of this source in
 * namespaces no longer targeted (DELETE with a uid precondition).  An
 * object that is not this source's copy is never written: that is a
 * conflict, reported and re-checked later.
 *
 * Ownership is decided by two marks together: the managed-by label AND
 * replicated-from == this source's key.  So two sources with the same name
 * in different namespaces never touch each other's copies.
 *
 * What the caches keep: kc_replicator_transform, the factory's transform
 * in kcache-controller, keeps sources and copies whole and only the
 * metadata of every other Secret and ConfigMap (their data is never read,
 * so it is neither held in memory nor kept alive in a core dump).  An
 * object that becomes a source arrives whole in its watch event.
 *
 * Caches get two indexes (added before the informers start): "kcache-copy-of"
 * (replicated-from value of our copies) and "kcache-source" ("1" for
 * objects carrying the replicate-to annotation).
 *
 * Locking: r->lock protects only the set of conflicts already reported
 * (so a standing conflict is logged at warn level, counted and turned into
 * an Event once, not at every retry); it is never held across a request or
 * logging.  Everything else is immutable after new; the caches and the
 * client are thread-safe.
 */
#include "kc_controller.h"
#include "kc_cache.h"
#include "kc_client.h"
#include "kc_informer.h"
#include "ctrl_int.h"

#include <cjson/cJSON.h>
#include <fnmatch.h>
#include <time.h>

#define IDX_COPY "kcache-copy-of"
#define IDX_SOURCE "kcache-source"
#define IDX_SOURCE_NAME "kcache-source-name"

struct kc_replicator;

typedef struct kind {
    struct kc_replicator *r;
    const kc_resource_t *res;
    const char *name;          /* "secrets" / "configmaps": controller suffix */
    kc_informer_t *inf;
    kc_cache_t *cache;
    kc_controller_t *ctrl;
} kind_t;

struct kc_replicator {
    kc_client_t *client;
    char *source_ns;           /* NULL: all */
    char *component;
    uint64_t conflict_retry_ns;
    kc_logger_t log;
    kc_informer_t *ns_inf;
    kc_cache_t *ns_cache;
    kind_t kinds[2];
    bool handed_over;
    kc_metric_t *m_conflicts, *m_copies;

    pthread_mutex_t lock;
    /* protected by lock: */
    char **reported;           /* "Kind src-key ns/name uid" already reported */
    size_t nreported, capreported;
};

#define REPORTED_MAX 4096      /* past this the set is cleared: re-reporting
                                * is harmless, growing without bound is not */

/* True the first time this conflict is seen (and remembers it). */
static bool first_report(kc_replicator_t *r, const char *id)
{
    bool first = true;
    char *copy;

    ctrl_lock(&r->lock);
    for (size_t i = 0; i < r->nreported; i++)
        if (strcmp(r->reported[i], id) == 0) {
            first = false;
            break;
        }
    if (first) {
        if (r->nreported >= REPORTED_MAX) {
            for (size_t i = 0; i < r->nreported; i++)
                free(r->reported[i]);
            r->nreported = 0;
        }
        if (r->nreported == r->capreported) {
            size_t nc = r->capreported ? r->capreported * 2 : 16;
            char **p = realloc(r->reported, nc * sizeof(*p));
            if (p != NULL) {
                r->reported = p;
                r->capreported = nc;
            }
        }
        if (r->nreported < r->capreported && (copy = strdup(id)) != NULL)
            r->reported[r->nreported++] = copy;
    }
    ctrl_unlock(&r->lock);
    return first;
}

bool kc_replicator_match(const char *annotation, const char *ns)
{
    const char *p = annotation;

    if (annotation == NULL || ns == NULL)
        return false;
    while (*p) {
        char item[256];
        size_t n;
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        n = strcspn(p, ",");
        size_t len = n;
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len > 0 && len < sizeof(item)) {
            memcpy(item, p, len);
            item[len] = '\0';
            if (fnmatch(item, ns, 0) == 0)
                return true;
        }
        p += n;
    }
    return false;
}

static bool is_ours(const kc_obj_t *o)
{
    const char *v = kc_obj_label(o, KC_MANAGED_BY_LABEL);
    return v != NULL && strcmp(v, KC_MANAGED_BY_VALUE) == 0;
}

/* A source: it carries the replicate-to annotation. */
static bool is_source(const kc_obj_t *o)
{
    char *to = NULL;

    if (kc_obj_annotation(o, KC_REPLICATE_TO_ANNOTATION, &to) != 0)
        return false;
    free(to);
    return true;
}

/* One of our copies: our label and a replicated-from annotation. */
static bool is_copy(const kc_obj_t *o)
{
    char *from = NULL;

    if (!is_ours(o) || kc_obj_annotation(o, KC_REPLICATED_FROM_ANNOTATION, &from) != 0)
        return false;
    free(from);
    return true;
}

/* ------------------------------------------------------------------ */
/* what the caches keep                                                 */

int kc_replicator_transform(void *ud, kc_obj_t *in, kc_obj_t **out)
{
    static const char *const payload[] = { "data", "binaryData", "stringData", NULL };

    (void)ud;
    /* Sources are copied and copies compared: both are kept whole. */
    if (is_copy(in) || is_source(in)) {
        *out = kc_obj_ref(in);
        return 0;
    }
    return kc_obj_without_fields(in, payload, out);
}

/* ------------------------------------------------------------------ */
/* indexes and event mapping                                            */

static void index_copy(const kc_obj_t *o, void *ud, kc_index_emit_cb emit, void *ctx)
{
    char *from = NULL;

    (void)ud;
    if (!is_ours(o))
        return;
    if (kc_obj_annotation(o, KC_REPLICATED_FROM_ANNOTATION, &from) == 0) {
        emit(ctx, from);
        free(from);
    }
}

static void index_source(const kc_obj_t *o, void *ud, kc_index_emit_cb emit, void *ctx)
{
    (void)ud;
    if (is_source(o))
        emit(ctx, "1");
}

static bool source_ns_allowed(kind_t *k, const char *ns)
{
    return k->r->source_ns == NULL || strcmp(k->r->source_ns, ns) == 0;
}

static void index_source_name(const kc_obj_t *o, void *ud, kc_index_emit_cb emit, void *ctx)
{
    (void)ud;
    if (is_source(o))
        emit(ctx, kc_obj_name(o));
}

/* Secret/ConfigMap event -> source keys: the object itself unless it is
 * one of our copies, the source named by a copy, and every source with the object's
 * name (a foreign object or another source's copy in a target namespace
 * may just have gone, freeing the name). */
static void map_object(void *ud, kc_obj_t *obj, kc_emit_key_cb emit, void *ctx)
{
    kind_t *k = ud;
    char key[KC_KEY_STR_MAX];
    char *from = NULL;
    kc_key_t kk;
    /* one of our copies (as is_copy decides), reading the annotation once */
    int copy = is_ours(obj) &&
               kc_obj_annotation(obj, KC_REPLICATED_FROM_ANNOTATION, &from) == 0;

    /* The object itself unless it is one of our copies, annotated or not:
     * it is a source, or may have been one a moment ago.  The handler's
     * events coalesce (after a pending Delete only the final state is
     * kept: Delete(a), Add(b), Delete(b) arrives as Delete(a)), so the
     * annotation may be missing from every object the handler is given
     * while copies made from the state between still exist.  A key that is
     * not a source costs its reconcile a cache lookup and an index query. */
    if (!copy && source_ns_allowed(k, kc_obj_namespace(obj))) {
        kc_obj_key(obj, &kk);
        kc_key_format(&kk, key, sizeof(key));
        emit(ctx, key);
    }
    if (copy) {
        if (kc_key_parse(&kk, from) == 0 && source_ns_allowed(k, kk.ns))
            emit(ctx, from);
        free(from);
    }
    kc_objlist_t l = KC_OBJLIST_INIT;
    if (kc_cache_index_query(k->cache, IDX_SOURCE_NAME, kc_obj_name(obj), &l) == 0) {
        for (size_t i = 0; i < l.len; i++) {
            if (!source_ns_allowed(k, kc_obj_namespace(l.items[i])) ||
                strcmp(kc_obj_namespace(l.items[i]), kc_obj_namespace(obj)) == 0)
                continue;
            kc_obj_key(l.items[i], &kk);
            kc_key_format(&kk, key, sizeof(key));
            emit(ctx, key);
        }
        kc_objlist_free(&l);
    }
}

/* Namespace event -> every source of the kind. */
static void map_namespace(void *ud, kc_obj_t *obj, kc_emit_key_cb emit, void *ctx)
{
    kind_t *k = ud;
    kc_objlist_t l = KC_OBJLIST_INIT;
    char key[KC_KEY_STR_MAX];

    (void)obj;
    if (kc_cache_index_query(k->cache, IDX_SOURCE, "1", &l) != 0)
        return;
    for (size_t i = 0; i < l.len; i++) {
        kc_key_t kk;
        if (!source_ns_allowed(k, kc_obj_namespace(l.items[i])))
            continue;
        kc_obj_key(l.items[i], &kk);
        kc_key_format(&kk, key, sizeof(key));
        emit(ctx, key);
    }
    kc_objlist_free(&l);
}

/* ------------------------------------------------------------------ */
/* building and comparing copies                                        */

static const char *const copied_fields[2][3] = {
    { "type", "data", NULL },           /* secrets */
    { "data", "binaryData", NULL },     /* configmaps */
};

/* The copy of src for namespace ns, as a cJSON tree (caller deletes). */
static cJSON *desired_copy(kind_t *k, const cJSON *src, const char *src_key, const char *ns)
{
    const cJSON *smd = cJSON_GetObjectItemCaseSensitive(src, "metadata");
    const cJSON *slabels = cJSON_GetObjectItemCaseSensitive(smd, "labels");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(smd, "name");
    int ki = k == &k->r->kinds[0] ? 0 : 1;
    cJSON *o = cJSON_CreateObject(), *md, *labels, *ann;

    if (o == NULL || !cJSON_IsString(name))
        goto fail;
    cJSON_AddStringToObject(o, "apiVersion", "v1");
    cJSON_AddStringToObject(o, "kind", k->res->kind);
    md = cJSON_AddObjectToObject(o, "metadata");
    if (md == NULL)
        goto fail;
    cJSON_AddStringToObject(md, "name", name->valuestring);
    cJSON_AddStringToObject(md, "namespace", ns);
    labels = cJSON_IsObject(slabels) ? cJSON_Duplicate(slabels, 1) : cJSON_CreateObject();
    if (labels == NULL)
        goto fail;
    cJSON_DeleteItemFromObjectCaseSensitive(labels, KC_MANAGED_BY_LABEL);
    cJSON_AddStringToObject(labels, KC_MANAGED_BY_LABEL, KC_MANAGED_BY_VALUE);
    cJSON_AddItemToObject(md, "labels", labels);
    ann = cJSON_AddObjectToObject(md, "annotations");
    if (ann == NULL)
        goto fail;
    cJSON_AddStringToObject(ann, KC_REPLICATED_FROM_ANNOTATION, src_key);
    for (int i = 0; copied_fields[ki][i]; i++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(src, copied_fields[ki][i]);
        if (f != NULL) {
            cJSON *d = cJSON_Duplicate(f, 1);
            if (d == NULL)
                goto fail;
            cJSON_AddItemToObject(o, copied_fields[ki][i], d);
        }
    }
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

static bool json_field_equal(const cJSON *a, const cJSON *b, const char *field)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(a, field);
    const cJSON *y = cJSON_GetObjectItemCaseSensitive(b, field);
    bool xe = x == NULL || (cJSON_IsObject(x) && x->child == NULL) || cJSON_IsNull(x);
    bool ye = y == NULL || (cJSON_IsObject(y) && y->child == NULL) || cJSON_IsNull(y);

    if (xe || ye)
        return xe && ye;
    return cJSON_Compare(x, y, 1);
}

/* Does the existing copy already look like want? */
static bool copy_up_to_date(kind_t *k, const cJSON *have, const cJSON *want)
{
    int ki = k == &k->r->kinds[0] ? 0 : 1;
    const cJSON *hmd = cJSON_GetObjectItemCaseSensitive(have, "metadata");
    const cJSON *wmd = cJSON_GetObjectItemCaseSensitive(want, "metadata");
    const cJSON *ha = cJSON_GetObjectItemCaseSensitive(hmd, "annotations");
    const cJSON *wa = cJSON_GetObjectItemCaseSensitive(wmd, "annotations");
    const cJSON *hf = cJSON_GetObjectItemCaseSensitive(ha, KC_REPLICATED_FROM_ANNOTATION);
    const cJSON *wf = cJSON_GetObjectItemCaseSensitive(wa, KC_REPLICATED_FROM_ANNOTATION);

    if (!json_field_equal(hmd, wmd, "labels"))
        return false;
    if (!cJSON_IsString(hf) || !cJSON_IsString(wf) || strcmp(hf->valuestring, wf->valuestring))
        return false;
    for (int i = 0; copied_fields[ki][i]; i++) {
        if (strcmp(copied_fields[ki][i], "type") == 0) {
            const cJSON *ht = cJSON_GetObjectItemCaseSensitive(have, "type");
            const cJSON *wt = cJSON_GetObjectItemCaseSensitive(want, "type");
            const char *hs = cJSON_IsString(ht) ? ht->valuestring : "Opaque";
            const char *ws = cJSON_IsString(wt) ? wt->valuestring : "Opaque";
            if (strcmp(hs, ws) != 0)
                return false;
            continue;
        }
        if (!json_field_equal(have, want, copied_fields[ki][i]))
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* conflicts                                                            */

static void report_conflict(kind_t *k, kc_obj_t *other, const char *src_key)
{
    kc_replicator_t *r = k->r;
    char *from = NULL;
    char msg[700], evname[320], ts[64];
    struct timespec now;
    struct tm tm;
    cJSON *ev = NULL, *md, *io, *srcj;
    char *json = NULL;
    kc_status_t st;
    char uid[KC_UID_BUF];
    int rc;

    snprintf(msg, sizeof(msg), "%s %s %s/%s %s", k->res->kind, src_key,
             kc_obj_namespace(other), kc_obj_name(other), kc_obj_uid(other, uid));
    if (!first_report(r, msg)) {
        kc_log(&r->log, KC_LOG_DEBUG, "replicator",
               "%s %s: %s/%s still not ours; leaving it alone", k->res->kind, src_key,
               kc_obj_namespace(other), kc_obj_name(other));
        return;
    }
    if (kc_obj_annotation(other, KC_REPLICATED_FROM_ANNOTATION, &from) != 0)
        from = NULL;
    if (is_ours(other) && from != NULL)
        snprintf(msg, sizeof(msg),
                 "not replicating %s %s into namespace %s: %s/%s is a copy of %s",
                 k->res->kind, src_key, kc_obj_namespace(other), kc_obj_namespace(other),
                 kc_obj_name(other), from);
    else
        snprintf(msg, sizeof(msg),
                 "not replicating %s %s into namespace %s: %s/%s exists and is not managed by kcache",
                 k->res->kind, src_key, kc_obj_namespace(other), kc_obj_namespace(other),
                 kc_obj_name(other));
    free(from);
    kc_log(&r->log, KC_LOG_WARN, "replicator", "%s", msg);
    kc_metric_inc(r->m_conflicts, (const char *const[]){ k->res->kind, kc_obj_namespace(other) });

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(evname, sizeof(evname), "%.240s.%llx", kc_obj_name(other),
             (unsigned long long)now.tv_sec * 1000000000ull + (unsigned long long)now.tv_nsec);
    ev = cJSON_CreateObject();
    if (ev == NULL)
        return;
    cJSON_AddStringToObject(ev, "apiVersion", "v1");
    cJSON_AddStringToObject(ev, "kind", "Event");
    md = cJSON_AddObjectToObject(ev, "metadata");
    io = cJSON_AddObjectToObject(ev, "involvedObject");
    srcj = cJSON_AddObjectToObject(ev, "source");
    if (md == NULL || io == NULL || srcj == NULL)
        goto out;
    cJSON_AddStringToObject(md, "name", evname);
    cJSON_AddStringToObject(md, "namespace", kc_obj_namespace(other));
    cJSON_AddStringToObject(io, "apiVersion", "v1");
    cJSON_AddStringToObject(io, "kind", k->res->kind);
    cJSON_AddStringToObject(io, "namespace", kc_obj_namespace(other));
    cJSON_AddStringToObject(io, "name", kc_obj_name(other));
    cJSON_AddStringToObject(io, "uid", kc_obj_uid(other, uid));
    cJSON_AddStringToObject(io, "resourceVersion", kc_obj_resource_version(other));
    cJSON_AddStringToObject(ev, "reason", "ReplicationConflict");
    cJSON_AddStringToObject(ev, "message", msg);
    cJSON_AddStringToObject(ev, "type", "Warning");
    cJSON_AddStringToObject(srcj, "component", r->component);
    cJSON_AddStringToObject(ev, "firstTimestamp", ts);
    cJSON_AddStringToObject(ev, "lastTimestamp", ts);
    cJSON_AddNumberToObject(ev, "count", 1);
    cJSON_AddStringToObject(ev, "reportingComponent", r->component);
    json = cJSON_PrintUnformatted(ev);
    if (json == NULL)
        goto out;
    rc = kc_client_create(r->client, &kc_res_events, kc_obj_namespace(other), json,
                          strlen(json), NULL, &st);
    if (rc != 0)
        kc_log(&r->log, KC_LOG_WARN, "replicator", "posting Event in %s failed: %s",
               kc_obj_namespace(other), kc_strerror(rc));
out:
    free(json);
    cJSON_Delete(ev);
}

/* ------------------------------------------------------------------ */
/* reconcile                                                            */

static void count_copy(kind_t *k, const char *action)
{
    kc_metric_inc(k->r->m_copies, (const char *const[]){ k->res->kind, action });
}

/* Make namespace ns hold an up-to-date copy.  Returns 0, 1 for a
 * conflict (nothing written), or a negative error. */
static int ensure_copy(kind_t *k, const cJSON *src, const char *src_key, const char *name,
                       const char *ns)
{
    kc_replicator_t *r = k->r;
    kc_obj_t *have = NULL;
    cJSON *want = NULL, *havej = NULL;
    char *json = NULL, *from = NULL;
    kc_status_t st;
    kc_key_t kk;
    int rc;

    if (kc_key_init(&kk, ns, name) != 0)
        return KC_EBADNAME;
    want = desired_copy(k, src, src_key, ns);
    if (want == NULL)
        return -ENOMEM;
    rc = kc_cache_get(k->cache, &kk, &have);
    if (rc == KC_ENOTFOUND) {
        json = cJSON_PrintUnformatted(want);
        if (json == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        rc = kc_client_create(r->client, k->res, ns, json, strlen(json), NULL, &st);
        if (rc == 0) {
            count_copy(k, "created");
            kc_log(&r->log, KC_LOG_INFO, "replicator", "created %s %s/%s from %s",
                   k->res->kind, ns, name, src_key);
        }
        goto out;
    }
    if (rc != 0)
        goto out;
    /* ours only if it carries our label and names THIS source */
    if (!is_ours(have) || kc_obj_annotation(have, KC_REPLICATED_FROM_ANNOTATION, &from) != 0 ||
        strcmp(from, src_key) != 0) {
        report_conflict(k, have, src_key);
        rc = 1;
        goto out;
    }
    havej = kc_obj_parse(have);
    if (havej == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if (copy_up_to_date(k, havej, want)) {
        rc = 0;
        goto out;
    }
    /* optimistic concurrency: the RV we decided on */
    cJSON_AddStringToObject(cJSON_GetObjectItemCaseSensitive(want, "metadata"),
                            "resourceVersion", kc_obj_resource_version(have));
    json = cJSON_PrintUnformatted(want);
    if (json == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    rc = kc_client_update(r->client, k->res, ns, name, json, strlen(json), NULL, &st);
    if (rc == 0) {
        count_copy(k, "updated");
        kc_log(&r->log, KC_LOG_INFO, "replicator", "restored %s %s/%s from %s", k->res->kind,
               ns, name, src_key);
    }
out:
    free(json);
    free(from);
    cJSON_Delete(want);
    cJSON_Delete(havej);
    kc_obj_unref(have);
    return rc;
}

static bool in_list(char **v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

static kc_result_t reconcile(void *ud, const kc_key_t *key)
{
    kind_t *k = ud;
    kc_replicator_t *r = k->r;
    char src_key[KC_KEY_STR_MAX];
    kc_obj_t *src = NULL;
    cJSON *srcj = NULL;
    char *to = NULL;
    char **targets = NULL;
    size_t ntargets = 0;
    kc_objlist_t nsl = KC_OBJLIST_INIT, copies = KC_OBJLIST_INIT;
    int err = 0, conflicts = 0, rc;
    kc_result_t res = KC_RESULT_OK;

    kc_key_format(key, src_key, sizeof(src_key));
    if (!source_ns_allowed(k, key->ns))
        return res;
    rc = kc_cache_get(k->cache, key, &src);
    if (rc != 0 && rc != KC_ENOTFOUND) {
        err = rc;
        goto out;
    }
    /* A source that is itself one of our copies is never replicated
     * (that would let copies chain). */
    if (src != NULL && !kc_obj_deleting(src) && !is_copy(src) &&
        kc_obj_annotation(src, KC_REPLICATE_TO_ANNOTATION, &to) == 0) {
        srcj = kc_obj_parse(src);
        if (srcj == NULL || kc_cache_list(r->ns_cache, &nsl) != 0) {
            err = -ENOMEM;
            goto out;
        }
        targets = calloc(nsl.len + 1, sizeof(char *));
        if (targets == NULL) {
            err = -ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < nsl.len; i++) {
            const char *ns = kc_obj_name(nsl.items[i]);
            if (strcmp(ns, key->ns) == 0 || kc_obj_deleting(nsl.items[i]))
                continue;
            if (kc_replicator_match(to, ns))
                targets[ntargets++] = (char *)ns;
        }
        for (size_t i = 0; i < ntargets; i++) {
            rc = ensure_copy(k, srcj, src_key, key->name, targets[i]);
            if (rc == 1)
                conflicts++;
            else if (rc != 0 && err == 0) {
                err = rc;
                kc_log(&r->log, KC_LOG_WARN, "replicator", "%s %s -> %s: %s", k->res->kind,
                       src_key, targets[i], kc_strerror(rc));
            }
        }
    }

    /* Delete this source's copies outside the targets. */
    rc = kc_cache_index_query(k->cache, IDX_COPY, src_key, &copies);
    if (rc != 0) {
        if (err == 0)
            err = rc;
        goto out;
    }
    for (size_t i = 0; i < copies.len; i++) {
        kc_obj_t *c = copies.items[i];
        kc_delete_opts_t dopts = KC_DELETE_OPTS_INIT;
        kc_status_t st;
        char ub[KC_UID_BUF];
        const char *uid;
        if (in_list(targets, ntargets, kc_obj_namespace(c)) || !is_ours(c))
            continue;
        uid = kc_obj_uid(c, ub);
        dopts.precondition_uid = uid[0] ? uid : NULL;
        rc = kc_client_delete(r->client, k->res, kc_obj_namespace(c), kc_obj_name(c), &dopts,
                              NULL, &st);
        if (rc == 0 || rc == KC_ENOTFOUND) {
            if (rc == 0) {
                count_copy(k, "deleted");
                kc_log(&r->log, KC_LOG_INFO, "replicator", "deleted %s %s/%s (copy of %s)",
                       k->res->kind, kc_obj_namespace(c), kc_obj_name(c), src_key);
            }
        } else if (err == 0) {
            err = rc;
        }
    }

out:
    if (err != 0) {
        res.kind = KC_RESULT_ERROR;
        res.err = err;
    } else if (conflicts > 0) {
        res.kind = KC_RESULT_REQUEUE_AFTER;
        res.after_ns = r->conflict_retry_ns;
    }
    free(targets);
    free(to);
    cJSON_Delete(srcj);
    kc_objlist_free(&nsl);
    kc_objlist_free(&copies);
    kc_obj_unref(src);
    return res;
}

/* ------------------------------------------------------------------ */
/* setup                                                                */

int kc_replicator_new(const kc_replicator_opts_t *o, kc_replicator_t **out, kc_errbuf_t *eb)
{
    static const kc_resource_t *const res[2] = { &kc_res_secrets, &kc_res_configmaps };
    static const char *const names[2] = { "replicator-secrets", "replicator-configmaps" };
    kc_replicator_t *r;
    int rc;

    if (o == NULL || out == NULL || o->client == NULL || o->informers == NULL)
        return kc_errf(eb, -EINVAL, "replicator: client and informer factory are required");
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    ctrl_mutex_init(&r->lock);
    r->client = o->client;
    r->log = o->log;
    r->conflict_retry_ns = o->conflict_retry_ns ? o->conflict_retry_ns : 60000000000ull;
    r->component = strdup(o->component ? o->component : "kcache-controller");
    if (r->component == NULL ||
        (o->source_namespace && *o->source_namespace &&
         (r->source_ns = strdup(o->source_namespace)) == NULL)) {
        rc = -ENOMEM;
        goto fail;
    }
    if (o->metrics) {
        if ((rc = kc_metrics_counter(o->metrics, "kcache_replicator_conflicts_total",
                                     "Conflicts found: objects in a target namespace the replicator did not make and left alone (each counted once)",
                                     (const char *const[]){ "kind", "namespace", NULL },
                                     &r->m_conflicts)) != 0 ||
            (rc = kc_metrics_counter(o->metrics, "kcache_replicator_copies_total",
                                     "Copies written by the replicator, by action",
                                     (const char *const[]){ "kind", "action", NULL },
                                     &r->m_copies)) != 0) {
            kc_errf(eb, rc, "replicator: metrics: %s", kc_strerror(rc));
            goto fail;
        }
    }
    rc = kc_informer_factory_get(o->informers, &kc_res_namespaces, NULL, NULL, NULL, &r->ns_inf);
    if (rc != 0) {
        kc_errf(eb, rc, "replicator: namespaces informer: %s", kc_strerror(rc));
        goto fail;
    }
    r->ns_cache = kc_informer_cache(r->ns_inf);
    for (int i = 0; i < 2; i++) {
        kind_t *k = &r->kinds[i];
        kc_controller_opts_t co = KC_CONTROLLER_OPTS_INIT;
        kc_source_t s = KC_SOURCE_INIT;

        k->r = r;
        k->res = res[i];
        k->name = names[i];
        rc = kc_informer_factory_get(o->informers, res[i], NULL, NULL, NULL, &k->inf);
        if (rc != 0) {
            kc_errf(eb, rc, "replicator: %s informer: %s", res[i]->resource, kc_strerror(rc));
            goto fail;
        }
        k->cache = kc_informer_cache(k->inf);
        if ((rc = kc_cache_add_index(k->cache, IDX_COPY, index_copy, NULL)) != 0 ||
            (rc = kc_cache_add_index(k->cache, IDX_SOURCE, index_source, NULL)) != 0 ||
            (rc = kc_cache_add_index(k->cache, IDX_SOURCE_NAME, index_source_name, NULL)) != 0) {
            kc_errf(eb, rc, "replicator: %s cache index: %s (create the replicator before "
                            "starting the informers)", res[i]->resource, kc_strerror(rc));
            goto fail;
        }
        co.name = names[i];
        co.reconcile = reconcile;
        co.ud = k;
        co.workers = o->workers > 0 ? o->workers : 2;
        co.metrics = o->metrics;
        co.log = o->log;
        rc = kc_controller_new(&co, &k->ctrl, eb);
        if (rc != 0)
            goto fail;
        s.informer = k->inf;
        s.kind = KC_SOURCE_MAP;
        s.map = map_object;
        s.map_ud = k;
        if ((rc = kc_controller_watch(k->ctrl, &s)) != 0) {
            kc_errf(eb, rc, "replicator: watch %s: %s", res[i]->resource, kc_strerror(rc));
            goto fail;
        }
        s.informer = r->ns_inf;
        s.map = map_namespace;
        if ((rc = kc_controller_watch(k->ctrl, &s)) != 0) {
            kc_errf(eb, rc, "replicator: watch namespaces: %s", kc_strerror(rc));
            goto fail;
        }
    }
    *out = r;
    return 0;
fail:
    kc_replicator_free(r);
    return rc;
}

int kc_replicator_add_to(kc_replicator_t *r, kc_manager_t *m)
{
    int rc;

    if (r == NULL || m == NULL)
        return -EINVAL;
    for (int i = 0; i < 2; i++)
        if ((rc = kc_manager_add(m, r->kinds[i].ctrl)) != 0)
            return rc;
    r->handed_over = true;
    return 0;
}

void kc_replicator_free(kc_replicator_t *r)
{
    if (r == NULL)
        return;
    if (!r->handed_over)
        for (int i = 0; i < 2; i++)
            kc_controller_free(r->kinds[i].ctrl);
    for (size_t i = 0; i < r->nreported; i++)
        free(r->reported[i]);
    free(r->reported);
    pthread_mutex_destroy(&r->lock);
    free(r->source_ns);
    free(r->component);
    free(r);
}
