/*
 * The shared informer factory: one informer per (resource, namespace
 * scope, label selector, field selector), shared by every controller of
 * the process, so that two controllers watching ConfigMaps cost one watch
 * and one cache.
 *
 * One mutex protects the list of informers and the started flag.  Creating
 * and starting an informer happens with it held (neither calls back nor
 * talks to the server); waiting for sync and stopping happen without it,
 * on a snapshot of the list (informers are freed only by
 * kc_informer_factory_free, so the snapshot stays valid).
 */
#include "informer_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

typedef struct fent {
    char *id;                  /* "group/version/resource|ns|label|field" */
    kc_informer_t *inf;
} fent_t;

struct kc_informer_factory {
    kc_client_t *client;
    kc_informer_opts_t defaults;
    pthread_mutex_t mu;
    /* protected by mu: */
    fent_t *v;
    size_t n, cap;
    int started;
    int stopped;
};

int kc_informer_factory_new(kc_client_t *client, const kc_informer_opts_t *defaults,
                            kc_informer_factory_t **out)
{
    kc_informer_factory_t *f;
    kc_informer_opts_t d = KC_INFORMER_OPTS_INIT;
    int rc;

    *out = NULL;
    if (client == NULL)
        return -EINVAL;
    f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    rc = kc__mu_init(&f->mu);
    if (rc != 0) {
        free(f);
        return rc;
    }
    f->client = client;
    f->defaults = defaults ? *defaults : d;
    f->defaults.resource = NULL;
    f->defaults.namespace_ = NULL;
    f->defaults.label_selector = NULL;
    f->defaults.field_selector = NULL;
    *out = f;
    return 0;
}

static char *make_id(const kc_resource_t *r, const char *ns, const char *ls, const char *fs)
{
    size_t len = strlen(r->group ? r->group : "") + strlen(r->version) +
                 strlen(r->resource) + strlen(ns) + strlen(ls) + strlen(fs) + 8;
    char *id = malloc(len);

    if (id != NULL)
        snprintf(id, len, "%s/%s/%s|%s|%s|%s", r->group ? r->group : "", r->version,
                 r->resource, ns, ls, fs);
    return id;
}

int kc_informer_factory_get(kc_informer_factory_t *f, const kc_resource_t *res,
                            const char *ns, const char *label_selector,
                            const char *field_selector, kc_informer_t **out)
{
    kc_informer_opts_t o;
    kc_informer_t *inf = NULL;
    char *id;
    int rc = 0;

    *out = NULL;
    if (res == NULL || res->resource == NULL || res->version == NULL)
        return -EINVAL;
    if (!res->namespaced || ns == NULL)
        ns = "";
    if (label_selector == NULL)
        label_selector = "";
    if (field_selector == NULL)
        field_selector = "";
    id = make_id(res, ns, label_selector, field_selector);
    if (id == NULL)
        return -ENOMEM;

    kc__mu_lock(&f->mu);
    for (size_t i = 0; i < f->n; i++) {
        if (strcmp(f->v[i].id, id) == 0) {
            *out = f->v[i].inf;
            goto done;
        }
    }
    if (f->stopped) {
        rc = KC_ESTOPPED;
        goto done;
    }
    if (f->n == f->cap) {
        size_t nc = f->cap ? f->cap * 2 : 8;
        fent_t *nv = realloc(f->v, nc * sizeof(*nv));
        if (nv == NULL) {
            rc = -ENOMEM;
            goto done;
        }
        f->v = nv;
        f->cap = nc;
    }
    o = f->defaults;
    o.resource = res;
    o.namespace_ = ns;
    o.label_selector = label_selector;
    o.field_selector = field_selector;
    rc = kc_informer_new(f->client, &o, &inf, NULL);
    if (rc != 0)
        goto done;
    if (f->started) {
        rc = kc_informer_start(inf);
        if (rc != 0) {
            kc_informer_free(inf);
            goto done;
        }
    }
    f->v[f->n].id = id;
    f->v[f->n].inf = inf;
    f->n++;
    id = NULL;
    *out = inf;
done:
    kc__mu_unlock(&f->mu);
    free(id);
    return rc;
}

int kc_informer_factory_start(kc_informer_factory_t *f)
{
    int rc = 0, r;

    kc__mu_lock(&f->mu);
    if (f->stopped) {
        kc__mu_unlock(&f->mu);
        return KC_ESTOPPED;
    }
    if (!f->started) {
        f->started = 1;
        for (size_t i = 0; i < f->n; i++) {
            r = kc_informer_start(f->v[i].inf);
            if (r != 0 && r != KC_EBUSY && rc == 0)
                rc = r;
        }
    }
    kc__mu_unlock(&f->mu);
    return rc;
}

/* A snapshot of the informers (stable: freed only by factory_free). */
static kc_informer_t **snapshot(kc_informer_factory_t *f, size_t *n)
{
    kc_informer_t **v;

    kc__mu_lock(&f->mu);
    *n = f->n;
    v = malloc((f->n ? f->n : 1) * sizeof(*v));
    if (v != NULL)
        for (size_t i = 0; i < f->n; i++)
            v[i] = f->v[i].inf;
    kc__mu_unlock(&f->mu);
    return v;
}

int kc_informer_factory_wait_synced(kc_informer_factory_t *f, long timeout_ms)
{
    uint64_t start = kc_now_ns();
    kc_informer_t **v;
    size_t n;
    int rc = 0;

    v = snapshot(f, &n);
    if (v == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n && rc == 0; i++) {
        long left = timeout_ms;
        if (timeout_ms >= 0) {
            left = timeout_ms - (long)((kc_now_ns() - start) / 1000000ull);
            if (left < 0)
                left = 0;
        }
        rc = kc_informer_wait_synced(v[i], left);
    }
    free(v);
    return rc;
}

void kc_informer_factory_stop(kc_informer_factory_t *f)
{
    kc_informer_t **v;
    size_t n;

    kc__mu_lock(&f->mu);
    f->stopped = 1;
    kc__mu_unlock(&f->mu);
    v = snapshot(f, &n);
    if (v == NULL) {
        /* no memory for a snapshot: stop them under the lock instead */
        kc__mu_lock(&f->mu);
        for (size_t i = 0; i < f->n; i++)
            kc_informer_stop(f->v[i].inf);
        kc__mu_unlock(&f->mu);
        return;
    }
    for (size_t i = 0; i < n; i++)
        kc_informer_stop(v[i]);
    free(v);
}

void kc_informer_factory_free(kc_informer_factory_t *f)
{
    if (f == NULL)
        return;
    kc_informer_factory_stop(f);
    for (size_t i = 0; i < f->n; i++) {
        kc_informer_free(f->v[i].inf);
        free(f->v[i].id);
    }
    free(f->v);
    pthread_mutex_destroy(&f->mu);
    free(f);
}
