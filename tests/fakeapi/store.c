/*
 * Fake API server: the resource table, stored objects, the revision
 * history, list snapshots, label/field selectors and Status objects.
 *
 * The store keeps one vector per resource, sorted by key ("ns/name" or
 * "name"), of immutable reference-counted objects.  Every change gets the
 * next global revision and is appended to a bounded ring of events (the
 * watch history).  A snapshot at an older revision is rebuilt by undoing
 * the events newer than it, which is exact as long as they are all still in
 * the ring (revision >= compacted_rv); older ones answer 410 Expired.
 *
 * Everything here runs on the loop thread (see fakeapi_int.h); there are
 * no locks.  Objects are freed when their last reference goes.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fakeapi_int.h"

/* One line per resource: plural, singular, kind, group, version, short
 * names, namespaced, status, generation, unconditional update, create on
 * update, extra field selectors. */
#define RES(...) {__VA_ARGS__, 0, "", "", "", {""}}
static fa_res_t g_res_init[] = {
    RES("namespaces", "namespace", "Namespace", "", "v1", "ns", 0, 1, 0, 1, 0, "status.phase"),
    RES("configmaps", "configmap", "ConfigMap", "", "v1", "cm", 1, 0, 0, 1, 0, ""),
    RES("secrets", "secret", "Secret", "", "v1", "", 1, 0, 0, 1, 0, "type"),
    RES("pods", "pod", "Pod", "", "v1", "po", 1, 1, 0, 1, 0, "spec.nodeName,status.phase"),
    RES("services", "service", "Service", "", "v1", "svc", 1, 1, 0, 1, 0, ""),
    RES("serviceaccounts", "serviceaccount", "ServiceAccount", "", "v1", "sa", 1, 0, 0, 1, 0, ""),
    RES("events", "event", "Event", "", "v1", "ev", 1, 0, 0, 1, 0,
     "involvedObject.kind,involvedObject.name,involvedObject.namespace,reason,type"),
    RES("leases", "lease", "Lease", "coordination.k8s.io", "v1", "", 1, 0, 0, 0, 1, ""),
    RES("deployments", "deployment", "Deployment", "apps", "v1", "deploy", 1, 1, 1, 1, 0, ""),
    RES("roles", "role", "Role", "rbac.authorization.k8s.io", "v1", "", 1, 0, 0, 1, 0, ""),
    RES("rolebindings", "rolebinding", "RoleBinding", "rbac.authorization.k8s.io", "v1", "", 1, 0, 0, 1, 0, ""),
    RES("clusterroles", "clusterrole", "ClusterRole", "rbac.authorization.k8s.io", "v1", "", 0, 0, 0, 1, 0, ""),
    RES("clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding", "rbac.authorization.k8s.io", "v1", "", 0, 0, 0, 1, 0, ""),
};

const size_t fa_nres = sizeof(g_res_init) / sizeof(g_res_init[0]);
static pthread_once_t g_res_once = PTHREAD_ONCE_INIT;

static void res_init_once(void)
{
    static const char *types[4] = {"ADDED", "MODIFIED", "DELETED", "BOOKMARK"};

    for (size_t i = 0; i < fa_nres; i++) {
        fa_res_t *r = &g_res_init[i];
        r->index = (int)i;
        if (r->group[0])
            snprintf(r->gv, sizeof(r->gv), "%s/%s", r->group, r->version);
        else
            snprintf(r->gv, sizeof(r->gv), "%s", r->version);
        if (r->group[0])
            snprintf(r->qualified, sizeof(r->qualified), "%s.%s", r->plural, r->group);
        else
            snprintf(r->qualified, sizeof(r->qualified), "%s", r->plural);
        snprintf(r->obj_prefix, sizeof(r->obj_prefix), "{\"kind\":\"%s\",\"apiVersion\":\"%s\",",
                 r->kind, r->gv);
        for (int t = 0; t < 4; t++)
            snprintf(r->ev_prefix[t], sizeof(r->ev_prefix[t]), "{\"type\":\"%s\",\"object\":%s",
                     types[t], r->obj_prefix);
    }
}

const fa_res_t *fa_res_at(size_t i)
{
    pthread_once(&g_res_once, res_init_once);
    return i < fa_nres ? &g_res_init[i] : NULL;
}

const fa_res_t *fa_res_find(const char *group, const char *version, const char *plural)
{
    pthread_once(&g_res_once, res_init_once);
    for (size_t i = 0; i < fa_nres; i++) {
        const fa_res_t *r = &g_res_init[i];
        if (!strcmp(r->group, group) && !strcmp(r->version, version) && !strcmp(r->plural, plural))
            return r;
    }
    return NULL;
}

const fa_res_t *fa_res_by_plural(const char *plural)
{
    pthread_once(&g_res_once, res_init_once);
    if (!plural)
        return NULL;
    for (size_t i = 0; i < fa_nres; i++)
        if (!strcmp(g_res_init[i].plural, plural))
            return &g_res_init[i];
    return NULL;
}

/* ---- helpers -------------------------------------------------------------- */

char *fa_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

int fa_query_bool(const char *v)
{
    if (!v || !*v)
        return 0;
    if (!strcmp(v, "0") || !strcasecmp(v, "false"))
        return 0;
    return 1;
}

uint64_t fa_rand(uint64_t *x)
{
    /* splitmix64: reproducible from the seed, good enough for tests */
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double fa_rand01(uint64_t *x)
{
    return (double)(fa_rand(x) >> 11) / (double)(1ULL << 53);
}

void fa_now_rfc3339(char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int dns_label(const char *s, size_t n)
{
    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && !(c == '-' && i > 0 && i + 1 < n))
            return 0;
    }
    return 1;
}

int fa_valid_name(const fa_res_t *r, const char *name)
{
    size_t n = strlen(name);
    if (!strcmp(r->plural, "namespaces"))
        return dns_label(name, n);
    if (r->group[0] && !strcmp(r->group, "rbac.authorization.k8s.io")) {
        /* path segment names: anything but / and % and . / .. */
        if (!n || n > 253 || !strcmp(name, ".") || !strcmp(name, ".."))
            return 0;
        return strpbrk(name, "/%") == NULL;
    }
    if (n == 0 || n > 253)
        return 0;
    const char *p = name;
    while (p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (!dns_label(p, len))
            return 0;
        p = dot ? dot + 1 : NULL;
    }
    return 1;
}

/* ---- Status ----------------------------------------------------------------- */

int fa_status_set(fa_status_t *st, int code, const char *reason, const char *fmt, ...)
{
    va_list ap;
    memset(st, 0, sizeof(*st));
    st->code = code;
    st->reason = reason;
    va_start(ap, fmt);
    vsnprintf(st->msg, sizeof(st->msg), fmt, ap);
    va_end(ap);
    return -1;
}

void fa_status_list_invalid(fa_status_t *st, const char *field, const char *cause, const char *detail)
{
    fa_status_set(st, 422, "Invalid", "ListOptions.meta.k8s.io \"\" is invalid: %s: %s", field, detail);
    st->kind = "ListOptions";
    st->group = "meta.k8s.io";
    st->cause_reason = cause;
    snprintf(st->cause_field, sizeof(st->cause_field), "%s", field);
    snprintf(st->cause_msg, sizeof(st->cause_msg), "%s", detail);
}

void fa_status_bad_rv(fa_status_t *st, const char *rv)
{
    fa_status_set(st, 400, "BadRequest",
                  "invalid resource version: resourceVersion: Invalid value: \"%.200s\": strconv.ParseUint: "
                  "parsing \"%.200s\": invalid syntax", rv, rv);
}

char *fa_status_json(const fa_status_t *st)
{
    cJSON *j = cJSON_CreateObject(), *md, *d;
    char *out;
    if (!j)
        return NULL;
    cJSON_AddStringToObject(j, "kind", "Status");
    cJSON_AddStringToObject(j, "apiVersion", "v1");
    md = cJSON_AddObjectToObject(j, "metadata");
    if (md && st->cont[0])
        cJSON_AddStringToObject(md, "continue", st->cont);
    cJSON_AddStringToObject(j, "status", st->code < 300 ? "Success" : "Failure");
    cJSON_AddStringToObject(j, "message", st->msg);
    if (st->reason && st->reason[0])
        cJSON_AddStringToObject(j, "reason", st->reason);
    if (st->name[0] || st->kind || st->retry_after || st->cause_reason) {
        d = cJSON_AddObjectToObject(j, "details");
        if (d) {
            if (st->name[0])
                cJSON_AddStringToObject(d, "name", st->name);
            if (st->group && st->group[0])
                cJSON_AddStringToObject(d, "group", st->group);
            if (st->kind)
                cJSON_AddStringToObject(d, "kind", st->kind);
            if (st->cause_reason) {
                cJSON *cs = cJSON_AddArrayToObject(d, "causes"), *c = cJSON_CreateObject();
                if (cs && c) {
                    cJSON_AddStringToObject(c, "reason", st->cause_reason);
                    cJSON_AddStringToObject(c, "message",
                                            st->cause_msg[0] ? st->cause_msg : st->msg);
                    if (st->cause_field[0])
                        cJSON_AddStringToObject(c, "field", st->cause_field);
                    cJSON_AddItemToArray(cs, c);
                    for (int i = 0; i < st->nxcauses; i++) {
                        cJSON *x = cJSON_CreateObject();
                        cJSON_AddStringToObject(x, "reason", st->cause_reason);
                        cJSON_AddStringToObject(x, "message", st->xcause_msg[i]);
                        cJSON_AddStringToObject(x, "field", st->xcause_field[i]);
                        cJSON_AddItemToArray(cs, x);
                    }
                } else {
                    cJSON_Delete(c);
                }
            }
            if (st->retry_after)
                cJSON_AddNumberToObject(d, "retryAfterSeconds", st->retry_after);
        }
    }
    cJSON_AddNumberToObject(j, "code", st->code);
    out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return out;
}

int fa_status_errno(const fa_status_t *st)
{
    switch (st->code) {
    case 0: case 200: case 201: return 0;
    case 400: return KC_EBADREQUEST;
    case 401: return KC_EUNAUTHORIZED;
    case 403: return KC_EFORBIDDEN;
    case 404: return KC_ENOTFOUND;
    case 409: return st->reason && !strcmp(st->reason, "AlreadyExists") ? KC_EEXISTS : KC_ECONFLICT;
    case 410: return KC_EGONE;
    case 413: return KC_ETOOBIG;
    case 415: return KC_EUNSUPPORTED;
    case 422: return KC_EINVALID;
    case 429: return KC_ETOOMANY;
    default: return st->code >= 500 ? KC_ESERVER : KC_EHTTP;
    }
}

/* ---- objects ----------------------------------------------------------------- */

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const cJSON *jpath(const cJSON *o, const char *path)
{
    char part[128];
    const char *p = path;
    while (o && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof(part))
            return NULL;
        memcpy(part, p, n);
        part[n] = 0;
        o = cJSON_GetObjectItemCaseSensitive(o, part);
        p = dot ? dot + 1 : p + n;
    }
    return o;
}

fa_obj_t *fa_obj_ref(fa_obj_t *o)
{
    if (o)
        o->refs++;
    return o;
}

void fa_obj_unref(fa_obj_t *o)
{
    if (!o)
        return;
    if (--o->refs > 0)
        return;
    if (o->refs < 0)
        abort();
    free(o->key);
    free(o->ns);
    free(o->name);
    free(o->uid);
    free(o->body);
    for (size_t i = 0; i < o->nlabels; i++) {
        free(o->labels[i].k);
        free(o->labels[i].v);
    }
    free(o->labels);
    for (size_t i = 0; i < o->nfields; i++)
        free(o->fieldv[i]);
    free(o->fieldv);
    free(o);
}

fa_obj_t *fa_obj_from_json(const fa_res_t *r, const cJSON *j)
{
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(j, "metadata");
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(md, "labels");
    const cJSON *fin = cJSON_GetObjectItemCaseSensitive(md, "finalizers");
    const char *name = jstr(md, "name"), *ns = jstr(md, "namespace"), *rv, *uid;
    fa_obj_t *o = calloc(1, sizeof(*o));
    size_t klen;

    if (!o)
        return NULL;
    o->refs = 1;
    o->res = r;
    if (!name)
        name = "";
    if (!r->namespaced || !ns)
        ns = "";
    o->name = strdup(name);
    o->ns = strdup(ns);
    uid = jstr(md, "uid");
    o->uid = strdup(uid ? uid : "");
    rv = jstr(md, "resourceVersion");
    o->rv = rv ? strtoull(rv, NULL, 10) : 0;
    klen = strlen(ns) + strlen(name) + 2;
    o->key = malloc(klen);
    if (o->key) {
        if (r->namespaced)
            snprintf(o->key, klen, "%s/%s", ns, name);
        else
            snprintf(o->key, klen, "%s", name);
    }
    o->body = cJSON_PrintUnformatted(j);
    if (!o->name || !o->ns || !o->uid || !o->key || !o->body)
        goto fail;
    o->len = strlen(o->body);
    if (cJSON_IsObject(labels)) {
        size_t n = (size_t)cJSON_GetArraySize(labels), i = 0;
        const cJSON *l;
        o->labels = calloc(n ? n : 1, sizeof(*o->labels));
        if (!o->labels)
            goto fail;
        cJSON_ArrayForEach(l, labels) {
            if (!cJSON_IsString(l) || !l->string)
                continue;
            o->labels[i].k = strdup(l->string);
            o->labels[i].v = strdup(l->valuestring);
            if (!o->labels[i].k || !o->labels[i].v) {
                o->nlabels = i + 1;
                goto fail;
            }
            i++;
        }
        o->nlabels = i;
    }
    o->nfinalizers = cJSON_IsArray(fin) ? cJSON_GetArraySize(fin) : 0;
    o->deleting = cJSON_GetObjectItemCaseSensitive(md, "deletionTimestamp") != NULL &&
                  !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(md, "deletionTimestamp"));
    if (!strcmp(r->plural, "namespaces")) {
        const cJSON *ph = jpath(j, "status.phase");
        o->ns_terminating = cJSON_IsString(ph) && !strcmp(ph->valuestring, "Terminating");
    }
    if (r->fields[0]) {
        size_t n = 1, i = 0;
        for (const char *c = r->fields; *c; c++)
            n += *c == ',';
        o->fieldv = calloc(n, sizeof(char *));
        if (!o->fieldv)
            goto fail;
        o->nfields = n;
        for (const char *f = r->fields; *f && i < n; i++) {
            char path[128];
            const char *c = strchr(f, ',');
            size_t fl = c ? (size_t)(c - f) : strlen(f);
            snprintf(path, sizeof(path), "%.*s", (int)fl, f);
            const cJSON *v = jpath(j, path);
            o->fieldv[i] = strdup(cJSON_IsString(v) ? v->valuestring : "");
            if (!o->fieldv[i])
                goto fail;
            f += fl + (c ? 1 : 0);
        }
    }
    return o;
fail:
    fa_obj_unref(o);
    return NULL;
}

/* Replace the string value that follows the first occurrence of key_pat
 * (e.g. "\"resourceVersion\":\"") in body; returns a new body or NULL. */
static char *replace_value(const char *body, size_t len, const char *key_pat, const char *val,
                           size_t *outlen)
{
    const char *k = strstr(body, key_pat), *v, *end;
    size_t vl = strlen(val), n;
    char *out;
    if (!k)
        return NULL;
    v = k + strlen(key_pat);
    end = strchr(v, '"');
    if (!end)
        return NULL;
    n = (size_t)(v - body) + vl + (len - (size_t)(end - body));
    out = malloc(n + 1);
    if (!out)
        return NULL;
    memcpy(out, body, (size_t)(v - body));
    memcpy(out + (v - body), val, vl);
    memcpy(out + (v - body) + vl, end, len - (size_t)(end - body));
    out[n] = 0;
    *outlen = n;
    return out;
}

fa_obj_t *fa_obj_with_values(const fa_obj_t *o, uint64_t rv, const char *key2_pat,
                             const char *val2)
{
    fa_obj_t *c = calloc(1, sizeof(*c));
    char rvs[32];
    size_t n1, n2;
    char *b1, *b2 = NULL;
    if (!c)
        return NULL;
    snprintf(rvs, sizeof(rvs), "%" PRIu64, rv);
    b1 = replace_value(o->body, o->len, "\"resourceVersion\":\"", rvs, &n1);
    if (b1 && key2_pat) {
        b2 = replace_value(b1, n1, key2_pat, val2, &n2);
        free(b1);
        b1 = b2;
        n1 = n2;
    }
    if (!b1) {
        free(c);
        return NULL;
    }
    *c = *o;
    c->refs = 1;
    c->rv = rv;
    c->body = b1;
    c->len = n1;
    c->key = strdup(o->key);
    c->ns = strdup(o->ns);
    c->name = strdup(o->name);
    c->uid = strdup(o->uid);
    c->labels = o->nlabels ? calloc(o->nlabels, sizeof(*c->labels)) : NULL;
    c->fieldv = o->nfields ? calloc(o->nfields, sizeof(char *)) : NULL;
    c->nlabels = c->labels ? o->nlabels : 0;
    c->nfields = c->fieldv ? o->nfields : 0;
    int bad = !c->key || !c->ns || !c->name || !c->uid || (o->nlabels && !c->labels) ||
              (o->nfields && !c->fieldv);
    for (size_t i = 0; i < c->nlabels; i++) {
        c->labels[i].k = strdup(o->labels[i].k);
        c->labels[i].v = strdup(o->labels[i].v);
        bad |= !c->labels[i].k || !c->labels[i].v;
    }
    for (size_t i = 0; i < c->nfields; i++)
        bad |= !(c->fieldv[i] = strdup(o->fieldv[i]));
    if (bad) {
        fa_obj_unref(c);
        return NULL;
    }
    return c;
}

cJSON *fa_obj_json(const fa_obj_t *o)
{
    cJSON *j = cJSON_ParseWithLength(o->body, o->len), *out = cJSON_CreateObject();
    if (!j || !out || !cJSON_AddStringToObject(out, "kind", o->res->kind) ||
        !cJSON_AddStringToObject(out, "apiVersion", o->res->gv)) {
        cJSON_Delete(j);
        cJSON_Delete(out);
        return NULL;
    }
    while (j->child) {
        cJSON *c = cJSON_DetachItemViaPointer(j, j->child);
        cJSON_AddItemToArray(out, c);
    }
    cJSON_Delete(j);
    return out;
}

char *fa_obj_text(const fa_obj_t *o)
{
    size_t pl = strlen(o->res->obj_prefix);
    char *t = malloc(pl + o->len);
    if (!t)
        return NULL;
    memcpy(t, o->res->obj_prefix, pl);
    memcpy(t + pl, o->body + 1, o->len - 1);
    t[pl + o->len - 1] = 0;
    return t;
}

void fa_obj_add_to(struct evbuffer *b, fa_obj_t *o, const char *prefix)
{
    /* Copied, not referenced: the bytes are encrypted per connection anyway,
     * and one contiguous buffer means few large TLS records and syscalls
     * instead of one per object piece. */
    evbuffer_add(b, prefix, strlen(prefix));
    evbuffer_add(b, o->body + 1, o->len - 1);
}

/* ---- object vectors ------------------------------------------------------------ */

static size_t vec_lower(const fa_objv_t *v, const char *key, int *found)
{
    size_t lo = 0, hi = v->n;
    *found = 0;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(v->v[mid]->key, key);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Put o (takes the reference) at its key, replacing and releasing any old
 * one.  Returns 0 or -ENOMEM (o released). */
static int vec_put(fa_objv_t *v, fa_obj_t *o)
{
    int found;
    size_t i = vec_lower(v, o->key, &found);
    if (found) {
        fa_obj_t *old = v->v[i];
        v->v[i] = o;
        fa_obj_unref(old);
        return 0;
    }
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 64;
        fa_obj_t **nv = realloc(v->v, nc * sizeof(*nv));
        if (!nv) {
            fa_obj_unref(o);
            return -ENOMEM;
        }
        v->v = nv;
        v->cap = nc;
    }
    memmove(v->v + i + 1, v->v + i, (v->n - i) * sizeof(*v->v));
    v->v[i] = o;
    v->n++;
    return 0;
}

static void vec_del(fa_objv_t *v, const char *key)
{
    int found;
    size_t i = vec_lower(v, key, &found);
    if (!found)
        return;
    fa_obj_unref(v->v[i]);
    memmove(v->v + i, v->v + i + 1, (v->n - i - 1) * sizeof(*v->v));
    v->n--;
}

void fa_objv_free(fa_objv_t *v)
{
    for (size_t i = 0; i < v->n; i++)
        fa_obj_unref(v->v[i]);
    free(v->v);
    memset(v, 0, sizeof(*v));
}

/* ---- store ------------------------------------------------------------------ */

int fa_store_init(fa_store_t *st, size_t window, uint64_t seed)
{
    memset(st, 0, sizeof(*st));
    st->objs = calloc(fa_nres, sizeof(*st->objs));
    st->hcap = window ? window : 10000;
    st->hist = calloc(st->hcap, sizeof(*st->hist));
    if (!st->objs || !st->hist) {
        free(st->objs);
        free(st->hist);
        return -ENOMEM;
    }
    /* Start like a fresh cluster, so RVs look realistic and never "0". */
    st->rv = 1000;
    st->compacted_rv = 1000;
    st->seed_state = seed ^ 0x5eed;
    return 0;
}

void fa_event_unref(fa_event_t *e)
{
    if (!e || --e->refs > 0)
        return;
    fa_obj_unref(e->obj);
    fa_obj_unref(e->prev);
    fa_obj_unref(e->prev_at_rv);
    free(e);
}

void fa_store_destroy(fa_store_t *st)
{
    if (st->objs)
        for (size_t i = 0; i < fa_nres; i++)
            fa_objv_free(&st->objs[i]);
    for (size_t i = 0; i < st->hcount; i++)
        fa_event_unref(fa_hist_at(st, i));
    free(st->objs);
    free(st->hist);
    memset(st, 0, sizeof(*st));
}

fa_event_t *fa_hist_at(fa_store_t *st, size_t i)
{
    return st->hist[(st->hhead + i) % st->hcap];
}

/* Index of the first event with rv > given, or hcount. */
size_t fa_hist_first_after(fa_store_t *st, uint64_t rv)
{
    size_t lo = 0, hi = st->hcount;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (fa_hist_at(st, mid)->rv <= rv)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void hist_drop_oldest(fa_store_t *st)
{
    fa_event_t *e = st->hist[st->hhead];
    st->compacted_rv = e->rv;
    st->hist[st->hhead] = NULL;
    st->hhead = (st->hhead + 1) % st->hcap;
    st->hcount--;
    fa_event_unref(e);
}

void fa_store_compact(fa_store_t *st)
{
    while (st->hcount)
        hist_drop_oldest(st);
    st->compacted_rv = st->rv;
}

fa_obj_t *fa_store_get(fa_store_t *st, const fa_res_t *r, const char *ns, const char *name)
{
    char key[600];
    int found;
    fa_objv_t *v = &st->objs[r->index];
    if (r->namespaced)
        snprintf(key, sizeof(key), "%s/%s", ns ? ns : "", name);
    else
        snprintf(key, sizeof(key), "%s", name);
    size_t i = vec_lower(v, key, &found);
    return found ? v->v[i] : NULL;
}

int fa_store_ns_empty(fa_store_t *st, const char *ns)
{
    char prefix[300];
    int found;
    size_t pl;
    snprintf(prefix, sizeof(prefix), "%s/", ns);
    pl = strlen(prefix);
    for (size_t i = 0; i < fa_nres; i++) {
        const fa_res_t *r = fa_res_at(i);
        fa_objv_t *v = &st->objs[i];
        if (!r->namespaced)
            continue;
        size_t k = vec_lower(v, prefix, &found);
        if (k < v->n && !strncmp(v->v[k]->key, prefix, pl))
            return 0;
    }
    return 1;
}

void fa_emit(fa_server_t *s, int type, const fa_res_t *r, fa_obj_t *obj, fa_obj_t *prev)
{
    fa_store_t *st = &s->store;
    fa_event_t *e = calloc(1, sizeof(*e));

    /* the store itself */
    if (type == FA_DELETED)
        vec_del(&st->objs[r->index], obj->key);
    else if (vec_put(&st->objs[r->index], fa_obj_ref(obj)) < 0)
        kc_log(&s->o.log, KC_LOG_ERROR, FA_COMP, "out of memory storing %s", obj->key);

    if (!e) {
        /* cannot record: the history now has a hole, so expire it */
        fa_obj_unref(obj);
        fa_obj_unref(prev);
        fa_store_compact(st);
        return;
    }
    e->refs = 1;
    e->rv = obj->rv;
    e->type = type;
    e->res = r;
    e->obj = obj;
    e->prev = prev;
    if (st->hcount == st->hcap)
        hist_drop_oldest(st);
    st->hist[(st->hhead + st->hcount) % st->hcap] = e;
    st->hcount++;
    if (s->pump_ev)
        event_active(s->pump_ev, EV_TIMEOUT, 0);
}

int fa_store_snapshot(fa_store_t *st, const fa_res_t *r, const char *ns, uint64_t rv,
                      fa_objv_t *out)
{
    fa_objv_t *cur = &st->objs[r->index], all = {0};
    int filter_ns = r->namespaced && ns && ns[0];
    size_t nslen = filter_ns ? strlen(ns) : 0;

    memset(out, 0, sizeof(*out));
    if (rv < st->rv) {
        /* rebuild the past: copy, then undo newer events newest first */
        all.v = malloc((cur->n ? cur->n : 1) * sizeof(*all.v));
        if (!all.v)
            return -ENOMEM;
        all.cap = cur->n ? cur->n : 1;
        for (size_t i = 0; i < cur->n; i++)
            all.v[all.n++] = fa_obj_ref(cur->v[i]);
        for (size_t i = st->hcount; i > 0; i--) {
            fa_event_t *e = fa_hist_at(st, i - 1);
            if (e->rv <= rv)
                break;
            if (e->res != r)
                continue;
            if (e->type == FA_ADDED)
                vec_del(&all, e->obj->key);
            else if (vec_put(&all, fa_obj_ref(e->prev)) < 0) {
                fa_objv_free(&all);
                return -ENOMEM;
            }
        }
        cur = &all;
    }
    out->v = malloc((cur->n ? cur->n : 1) * sizeof(*out->v));
    if (!out->v) {
        fa_objv_free(&all);
        return -ENOMEM;
    }
    out->cap = cur->n ? cur->n : 1;
    for (size_t i = 0; i < cur->n; i++) {
        fa_obj_t *o = cur->v[i];
        if (filter_ns && (strncmp(o->key, ns, nslen) || o->key[nslen] != '/'))
            continue;
        out->v[out->n++] = fa_obj_ref(o);
    }
    fa_objv_free(&all);
    return 0;
}

/* ---- selectors ------------------------------------------------------------------ */

static void req_free(fa_req_sel_t *q)
{
    free(q->key);
    for (size_t i = 0; i < q->nvals; i++)
        free(q->vals[i]);
    free(q->vals);
}

void fa_selector_free(fa_selector_t *sel)
{
    for (size_t i = 0; i < sel->nlabel; i++)
        req_free(&sel->label[i]);
    for (size_t i = 0; i < sel->nfield; i++)
        req_free(&sel->field[i]);
    free(sel->label);
    free(sel->field);
    memset(sel, 0, sizeof(*sel));
}

int fa_selector_empty(const fa_selector_t *sel)
{
    return sel->nlabel == 0 && sel->nfield == 0;
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static char *dup_trim(const char *a, const char *b)
{
    while (a < b && (*a == ' ' || *a == '\t'))
        a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
        b--;
    return strndup(a, (size_t)(b - a));
}

static int push_req(fa_req_sel_t **arr, size_t *n, fa_req_sel_t *q)
{
    fa_req_sel_t *na = realloc(*arr, (*n + 1) * sizeof(**arr));
    if (!na) {
        req_free(q);
        return -ENOMEM;
    }
    *arr = na;
    na[(*n)++] = *q;
    return 0;
}

static int push_val(fa_req_sel_t *q, char *v)
{
    char **nv;
    if (!v)
        return -ENOMEM;
    nv = realloc(q->vals, (q->nvals + 1) * sizeof(*nv));
    if (!nv) {
        free(v);
        return -ENOMEM;
    }
    q->vals = nv;
    nv[q->nvals++] = v;
    return 0;
}

/* Label selector grammar of apimachinery/pkg/labels, parsed the way its
 * lexer and recursive-descent parser do so that errors carry the same
 * words: first the whole string is cut into tokens (identifiers run until
 * a blank or one of "=!(),<>"; operator symbols take the longest known
 * token), then requirements are read; "in" and "notin" count as
 * identifiers where a value is expected. */
enum { LT_EOS, LT_ERR, LT_CLOSE, LT_COMMA, LT_NOT, LT_DEQ, LT_EQ, LT_GT, LT_ID, LT_IN, LT_LT,
       LT_NE, LT_NOTIN, LT_OPEN };
typedef struct ltok { int t; const char *s; size_t n; } ltok_t;

static int is_sel_special(char c)
{
    return c == '=' || c == '!' || c == '(' || c == ')' || c == ',' || c == '>' || c == '<';
}

static int is_sel_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int sym_token(const char *s, size_t n)
{
    static const struct { const char *s; int t; } k[] = {
        {")", LT_CLOSE}, {",", LT_COMMA}, {"!", LT_NOT}, {"==", LT_DEQ}, {"=", LT_EQ},
        {">", LT_GT}, {"<", LT_LT}, {"!=", LT_NE}, {"(", LT_OPEN}, {"in", LT_IN},
        {"notin", LT_NOTIN}};
    for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++)
        if (strlen(k[i].s) == n && !strncmp(k[i].s, s, n))
            return k[i].t;
    return -1;
}

/* Tokens of s into v (room for strlen(s) + 1); the last is LT_EOS or LT_ERR. */
static size_t sel_lex(const char *s, ltok_t *v)
{
    size_t n = 0;
    const char *p = s;
    for (;;) {
        while (is_sel_blank(*p))
            p++;
        ltok_t t = {LT_EOS, p, 0};
        if (!*p) {
            v[n++] = t;
            return n;
        }
        if (is_sel_special(*p)) {
            size_t len = 0, best = 0;
            int bt = -1;
            while (is_sel_special(p[len])) {
                len++;
                int k = sym_token(p, len);
                if (k >= 0) {
                    bt = k;
                    best = len;
                } else if (bt >= 0) {
                    break;
                }
            }
            if (bt < 0) {
                t.t = LT_ERR;
                t.n = len;
                v[n++] = t;
                return n;
            }
            t.t = bt;
            t.n = best;
            p += best;
        } else {
            while (*p && !is_sel_special(*p) && !is_sel_blank(*p))
                p++;
            t.n = (size_t)(p - t.s);
            int k = sym_token(t.s, t.n);
            t.t = (k == LT_IN || k == LT_NOTIN) ? k : LT_ID;
        }
        v[n++] = t;
    }
}

/* Token type where a value may stand: in/notin are identifiers there. */
static int tv(const ltok_t *t)
{
    return (t->t == LT_IN || t->t == LT_NOTIN) ? LT_ID : t->t;
}

static int label_value_ok(const char *v)
{
    size_t n = strlen(v);
    if (n == 0)
        return 1;
    if (n > 63 || !isalnum((unsigned char)v[0]) || !isalnum((unsigned char)v[n - 1]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)v[i]) && v[i] != '-' && v[i] != '_' && v[i] != '.')
            return 0;
    return 1;
}

static int label_key_ok(const char *k, size_t n)
{
    const char *slash = memchr(k, '/', n);
    const char *name = slash ? slash + 1 : k;
    size_t nn = n - (size_t)(name - k);
    if (slash && (slash == k || (size_t)(slash - k) > 253))
        return 0;
    for (const char *c = k; slash && c < slash; c++)
        if (!islower((unsigned char)*c) && !isdigit((unsigned char)*c) && *c != '-' && *c != '.')
            return 0;
    if (nn == 0 || nn > 63 || !isalnum((unsigned char)name[0]) ||
        !isalnum((unsigned char)name[nn - 1]))
        return 0;
    for (size_t i = 0; i < nn; i++)
        if (!isalnum((unsigned char)name[i]) && name[i] != '-' && name[i] != '_' &&
            name[i] != '.')
            return 0;
    return 1;
}

#define SEL_ERR(...) do { snprintf(err, errn, __VA_ARGS__); goto bad; } while (0)

/* One requirement starting at v[*pos]; fills q.  0, -1 (err filled) or -ENOMEM. */
static int parse_requirement(const ltok_t *v, size_t *pos, fa_req_sel_t *q, char *err,
                             size_t errn)
{
    size_t i = *pos;
    int notexists = 0;
    if (v[i].t == LT_NOT) {
        notexists = 1;
        i++;
    }
    if (tv(&v[i]) != LT_ID)
        SEL_ERR("found '%.*s', expected: identifier", (int)v[i].n, v[i].s);
    if (!label_key_ok(v[i].s, v[i].n))
        SEL_ERR("key: Invalid value: \"%.*s\": name part must consist of alphanumeric characters, "
                "'-', '_' or '.', and must start and end with an alphanumeric character "
                "(e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
                "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')", (int)v[i].n, v[i].s);
    q->key = strndup(v[i].s, v[i].n);
    if (!q->key)
        return -ENOMEM;
    i++;
    /* "!a=b": the requirement ends after the key, and the caller then
     * finds '=' where it expects ',' -- the real parser's reading */
    if (notexists || tv(&v[i]) == LT_EOS || tv(&v[i]) == LT_COMMA) {
        q->op = notexists ? FA_SEL_NOTEXISTS : FA_SEL_EXISTS;
        *pos = i;
        return 0;
    }
    switch (v[i].t) {
    case LT_IN: q->op = FA_SEL_IN; break;
    case LT_NOTIN: q->op = FA_SEL_NOTIN; break;
    case LT_EQ: case LT_DEQ: q->op = FA_SEL_EQ; break;
    case LT_NE: q->op = FA_SEL_NE; break;
    case LT_GT: q->op = FA_SEL_GT; break;
    case LT_LT: q->op = FA_SEL_LT; break;
    default:
        SEL_ERR("found '%.*s', expected: in, notin, =, ==, !=, gt, lt", (int)v[i].n, v[i].s);
    }
    i++;
    if (q->op == FA_SEL_IN || q->op == FA_SEL_NOTIN) {
        if (v[i].t != LT_OPEN)
            SEL_ERR("found '%.*s' expected: '('", (int)v[i].n, v[i].s);
        i++;
        if (tv(&v[i]) == LT_CLOSE) {
            if (push_val(q, strdup("")) < 0)
                return -ENOMEM;
            i++;
        } else if (tv(&v[i]) == LT_ID || tv(&v[i]) == LT_COMMA) {
            for (;;) {
                const ltok_t *t = &v[i++];
                if (tv(t) == LT_ID) {
                    if (push_val(q, strndup(t->s, t->n)) < 0)
                        return -ENOMEM;
                    if (tv(&v[i]) == LT_COMMA)
                        continue;
                    if (tv(&v[i]) == LT_CLOSE)
                        break;
                    SEL_ERR("found '%.*s', expected: ',' or ')'", (int)v[i].n, v[i].s);
                } else if (tv(t) == LT_COMMA) {
                    if (q->nvals == 0 && push_val(q, strdup("")) < 0)
                        return -ENOMEM;
                    if (tv(&v[i]) == LT_CLOSE)
                        break;
                } else {
                    SEL_ERR("found '%.*s', expected: ',', or identifier", (int)t->n, t->s);
                }
            }
            i++; /* ')' */
        } else {
            SEL_ERR("found '%.*s', expected: ',', ')' or identifier", (int)v[i].n, v[i].s);
        }
    } else {
        if (tv(&v[i]) == LT_EOS || tv(&v[i]) == LT_COMMA) {
            if (push_val(q, strdup("")) < 0)
                return -ENOMEM;
        } else if (tv(&v[i]) == LT_ID) {
            if (push_val(q, strndup(v[i].s, v[i].n)) < 0)
                return -ENOMEM;
            i++;
        } else {
            SEL_ERR("found '%.*s', expected: identifier", (int)v[i].n, v[i].s);
        }
    }
    for (size_t k = 0; k < q->nvals; k++) {
        if ((q->op == FA_SEL_GT || q->op == FA_SEL_LT)) {
            char *e;
            errno = 0;
            (void)strtoll(q->vals[k], &e, 10);
            if (errno || !*q->vals[k] || *e)
                SEL_ERR("values[%zu]: Invalid value: \"%s\": for 'Gt', 'Lt' operators, the value must be an integer",
                        k, q->vals[k]);
        } else if (!label_value_ok(q->vals[k])) {
            SEL_ERR("values[%zu][%s]: Invalid value: \"%s\": a valid label must be an empty string or consist of "
                    "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
                    "character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')", k, q->key, q->vals[k]);
        }
    }
    *pos = i;
    return 0;
bad:
    return -1;
}

static int parse_labels(fa_selector_t *sel, const char *s, fa_status_t *st)
{
    size_t n = strlen(s), pos = 0;
    ltok_t *v = calloc(n + 2, sizeof(*v));
    char err[600];
    int rc = 0;
    if (!v)
        return -ENOMEM;
    sel_lex(s, v);
    for (;;) {
        int t = tv(&v[pos]);
        if (t == LT_EOS)
            break;
        if (t != LT_ID && t != LT_NOT) {
            fa_status_set(st, 400, "BadRequest",
                          "found '%.*s', expected: !, identifier, or 'end of string'",
                          (int)v[pos].n, v[pos].s);
            rc = -1;
            break;
        }
        fa_req_sel_t q = {0};
        rc = parse_requirement(v, &pos, &q, err, sizeof(err));
        if (rc == 0)
            rc = push_req(&sel->label, &sel->nlabel, &q);
        else
            req_free(&q);
        if (rc == -1)
            fa_status_set(st, 400, "BadRequest", "unable to parse requirement: %s", err);
        if (rc)
            break;
        t = tv(&v[pos++]);
        if (t == LT_EOS)
            break;
        if (t != LT_COMMA) {
            fa_status_set(st, 400, "BadRequest", "found '%.*s', expected: ',' or 'end of string'",
                          (int)v[pos - 1].n, v[pos - 1].s);
            rc = -1;
            break;
        }
        if (tv(&v[pos]) != LT_ID && tv(&v[pos]) != LT_NOT) {
            fa_status_set(st, 400, "BadRequest", "found '%.*s', expected: identifier after ','",
                          (int)v[pos].n, v[pos].s);
            rc = -1;
            break;
        }
    }
    free(v);
    return rc;
}

static int parse_fields(fa_selector_t *sel, const fa_res_t *r, const char *s, fa_status_t *st)
{
    const char *p = s;
    while (*(p = skip_ws(p))) {
        fa_req_sel_t q = {0};
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *op = p;
        while (op < end && *op != '=' && *op != '!')
            op++;
        if (op == end) {
            fa_status_set(st, 400, "BadRequest", "invalid selector: '%s'; can't understand '%.*s'", s,
                          (int)(end - p), p);
            return -1;
        }
        q.key = dup_trim(p, op);
        if (*op == '!') {
            if (op[1] != '=')
                goto bad;
            q.op = FA_SEL_NE;
            op += 2;
        } else {
            q.op = FA_SEL_EQ;
            op += (op[1] == '=') ? 2 : 1;
        }
        if (!q.key || push_val(&q, dup_trim(op, end)) < 0) {
            req_free(&q);
            return -ENOMEM;
        }
        int known = !strcmp(q.key, "metadata.name") || !strcmp(q.key, "metadata.namespace");
        if (!known && r->fields[0]) {
            size_t kl = strlen(q.key);
            for (const char *f = r->fields; *f;) {
                const char *c = strchr(f, ',');
                size_t fl = c ? (size_t)(c - f) : strlen(f);
                if (fl == kl && !strncmp(f, q.key, kl))
                    known = 1;
                f += fl + (c ? 1 : 0);
            }
        }
        if (!known) {
            fa_status_set(st, 400, "BadRequest",
                          "\"%s\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
                          q.key);
            req_free(&q);
            return -1;
        }
        if (push_req(&sel->field, &sel->nfield, &q) < 0)
            return -ENOMEM;
        p = *end ? end + 1 : end;
        continue;
    bad:
        req_free(&q);
        fa_status_set(st, 400, "BadRequest", "invalid selector: '%s'", s);
        return -1;
    }
    return 0;
}

int fa_selector_parse(fa_selector_t *sel, const fa_res_t *r, const char *label,
                      const char *field, fa_status_t *st)
{
    int rc = 0;
    memset(sel, 0, sizeof(*sel));
    if (label && *label)
        rc = parse_labels(sel, label, st);
    if (rc == 0 && field && *field)
        rc = parse_fields(sel, r, field, st);
    if (rc == -ENOMEM)
        fa_status_set(st, 500, "InternalError", "out of memory");
    if (rc)
        fa_selector_free(sel);
    return rc;
}

static const char *label_of(const fa_obj_t *o, const char *k)
{
    for (size_t i = 0; i < o->nlabels; i++)
        if (!strcmp(o->labels[i].k, k))
            return o->labels[i].v;
    return NULL;
}

static const char *field_of(const fa_obj_t *o, const char *k)
{
    if (!strcmp(k, "metadata.name"))
        return o->name;
    if (!strcmp(k, "metadata.namespace"))
        return o->ns;
    size_t i = 0, kl = strlen(k);
    for (const char *f = o->res->fields; *f && i < o->nfields; i++) {
        const char *c = strchr(f, ',');
        size_t fl = c ? (size_t)(c - f) : strlen(f);
        if (fl == kl && !strncmp(f, k, kl))
            return o->fieldv[i];
        f += fl + (c ? 1 : 0);
    }
    return "";
}

static int req_match(const fa_req_sel_t *q, const char *v)
{
    switch (q->op) {
    case FA_SEL_EXISTS: return v != NULL;
    case FA_SEL_NOTEXISTS: return v == NULL;
    case FA_SEL_EQ: return v && !strcmp(v, q->vals[0]);
    case FA_SEL_NE: return !v || strcmp(v, q->vals[0]);
    case FA_SEL_GT:
    case FA_SEL_LT: {
        char *e;
        long long a, b = strtoll(q->vals[0], NULL, 10);
        if (!v)
            return 0;
        a = strtoll(v, &e, 10);
        if (*e || !*v)
            return 0;
        return q->op == FA_SEL_GT ? a > b : a < b;
    }
    case FA_SEL_IN:
    case FA_SEL_NOTIN: {
        int in = 0;
        for (size_t i = 0; v && i < q->nvals; i++)
            in |= !strcmp(v, q->vals[i]);
        return q->op == FA_SEL_IN ? in : !in;
    }
    }
    return 0;
}

int fa_selector_match(const fa_selector_t *sel, const fa_obj_t *o)
{
    for (size_t i = 0; i < sel->nlabel; i++)
        if (!req_match(&sel->label[i], label_of(o, sel->label[i].key)))
            return 0;
    for (size_t i = 0; i < sel->nfield; i++)
        if (!req_match(&sel->field[i], field_of(o, sel->field[i].key)))
            return 0;
    return 1;
}
