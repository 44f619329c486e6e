/* Shared helpers of the C suites that run against the real kube-apiserver
 * of tests/realapi/run.sh (header-only: each suite is one program).
 * Clients come from the kubeconfigs the harness wrote (KC_REAL_KUBECONFIG
 * for admin, KC_REAL_SA_KUBECONFIG for the controller's ServiceAccount);
 * the harness's admin endpoint (KC_REAL_ADMIN_URL) compacts etcd and
 * restarts kube-apiserver.  Without KC_REAL_KUBECONFIG a suite skips (77). */
#ifndef KC_REAL_SUPPORT_H
#define KC_REAL_SUPPORT_H

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kc_cache.h"
#include "kc_client.h"

static inline void real_sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

#define REAL_WAIT_FOR(cond, timeout_ms)                                         \
    do {                                                                        \
        long waited_ = 0;                                                       \
        while (!(cond) && waited_ < (timeout_ms)) {                             \
            real_sleep_ms(20);                                                  \
            waited_ += 20;                                                      \
        }                                                                       \
    } while (0)

/* Skip the whole program (exit 77) when not run by tests/realapi/run.sh. */
static inline void real_require_env(void)
{
    if (getenv("KC_REAL_KUBECONFIG") == NULL) {
        fprintf(stderr, "skipped: KC_REAL_KUBECONFIG not set (run through make test-real)\n");
        exit(77);
    }
}

/* A client from the kubeconfig named by env var `var`; aborts the test on
 * failure.  o may be NULL. */
static inline kc_client_t *real_client(const char *var, const kc_client_opts_t *o)
{
    kc_config_opts_t co = KC_CONFIG_OPTS_INIT;
    kc_config_t *cfg = NULL;
    kc_client_t *c = NULL;
    kc_errbuf_t eb;

    co.kubeconfig = getenv(var);
    if (co.kubeconfig == NULL) {
        fprintf(stderr, "%s not set\n", var);
        abort();
    }
    if (kc_config_load(&co, &cfg, &eb) != 0) {
        fprintf(stderr, "config %s: %s\n", co.kubeconfig, eb.msg);
        abort();
    }
    if (kc_client_new(cfg, o, &c, &eb) != 0) {
        fprintf(stderr, "client: %s\n", eb.msg);
        abort();
    }
    kc_config_free(cfg);
    return c;
}

/* A client from a copy of the admin kubeconfig with disable-compression:
 * true (the copy goes to $KC_REAL_DIR, mode 0600). */
static inline kc_client_t *real_client_nocompress(const kc_client_opts_t *o)
{
    const char *src = getenv("KC_REAL_KUBECONFIG"), *dir = getenv("KC_REAL_DIR");
    char path[512], line[8192];
    FILE *in, *out;
    int fd;

    snprintf(path, sizeof(path), "%s/nocompress.kubeconfig", dir ? dir : "/tmp");
    in = fopen(src, "r");
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    out = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (in == NULL || out == NULL) {
        fprintf(stderr, "cannot copy %s to %s\n", src, path);
        abort();
    }
    while (fgets(line, sizeof(line), in)) {
        const char *srv = strstr(line, "server: ");
        if (srv && strspn(line, " ") == (size_t)(srv - line))
            fprintf(out, "%.*sdisable-compression: true\n", (int)(srv - line), line);
        fputs(line, out);
    }
    fclose(in);
    fclose(out);
    setenv("KC_REAL_NOCOMPRESS_KUBECONFIG", path, 1);
    return real_client("KC_REAL_NOCOMPRESS_KUBECONFIG", o);
}

/* POST to the harness's admin endpoint ("compact", "restart") with curl(1);
 * returns 0 when it answered 2xx. */
static inline int real_admin(const char *what)
{
    char cmd[512];
    const char *url = getenv("KC_REAL_ADMIN_URL");

    if (url == NULL)
        return -1;
    snprintf(cmd, sizeof(cmd), "curl -sSf --noproxy '*' -m 60 -X POST '%s/%s' >/dev/null", url, what);
    return system(cmd) == 0 ? 0 : -1;
}

/* Create namespace ns as c (AlreadyExists is fine). */
static inline int real_ensure_ns(kc_client_t *c, const char *ns)
{
    char json[256];
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    int rc;

    snprintf(json, sizeof(json),
             "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"%s\"}}", ns);
    /* a body buffer: without one kc_client drops the error Status, and a 409
     * AlreadyExists comes back as KC_ECONFLICT (see README) */
    rc = kc_client_create(c, &kc_res_namespaces, NULL, json, strlen(json), &b, &st);
    kc_buf_free(&b);
    if (rc != 0 && rc != KC_EEXISTS)
        fprintf(stderr, "create namespace %s: %d %s: %s\n", ns, st.http_code, st.reason, st.message);
    return rc == KC_EEXISTS ? 0 : rc;
}

/* metadata.<field> of a JSON object as a new string ("" if absent). */
static inline char *real_meta(const char *json, size_t len, const char *field)
{
    cJSON *j = cJSON_ParseWithLength(json, len);
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "metadata"), field));
    char *s = strdup(v ? v : "");

    cJSON_Delete(j);
    return s;
}

/* ---- a grid of objects -------------------------------------------------
 * The informer suites mutate ConfigMaps named n-<b> in namespaces
 * <prefix>-<a> (a < nns, b < nnames) carrying a label selector; slot
 * a * nnames + b identifies one.  The truth is the server's objects by
 * slot: resourceVersion and uid ("" when absent). */
#define REAL_MAX_SLOTS 64

typedef struct real_grid {
    const char *ns_prefix;       /* "kc-real-inf": namespaces kc-real-inf-0, ... */
    int nns, nnames;             /* nns * nnames <= REAL_MAX_SLOTS */
    const char *selector;
} real_grid_t;

typedef struct real_truth {
    char rv[REAL_MAX_SLOTS][32];
    char uid[REAL_MAX_SLOTS][40];
    int n;
} real_truth_t;

/* The slot of namespace ns and name nm, or -1 outside the grid. */
static inline int real_slot(const real_grid_t *g, const char *ns, const char *nm)
{
    size_t pl = strlen(g->ns_prefix);
    int a, b;

    if (ns == NULL || nm == NULL || strncmp(ns, g->ns_prefix, pl) != 0 || ns[pl] != '-' ||
        sscanf(ns + pl + 1, "%d", &a) != 1 || sscanf(nm, "n-%d", &b) != 1)
        return -1;
    if (a < 0 || a >= g->nns || b < 0 || b >= g->nnames)
        return -1;
    return a * g->nnames + b;
}

static inline int real_slot_of(const real_grid_t *g, kc_obj_t *o)
{
    return real_slot(g, kc_obj_namespace(o), kc_obj_name(o));
}

/* The server's objects matching the grid's selector, listed as c: 0, or -1
 * when the list fails or an object lies outside the grid. */
static inline int real_server_truth(kc_client_t *c, const real_grid_t *g, real_truth_t *t)
{
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    kc_list_opts_t lo = KC_LIST_OPTS_INIT;
    cJSON *j, *it;
    int rc = 0;

    memset(t, 0, sizeof(*t));
    lo.label_selector = g->selector;
    if (kc_client_list(c, &kc_res_configmaps, NULL, &lo, &b, &st) != 0) {
        fprintf(stderr, "list %s: %d %s\n", g->selector, st.http_code, st.message);
        kc_buf_free(&b);
        return -1;
    }
    j = cJSON_ParseWithLength(b.data, b.len);
    kc_buf_free(&b);
    if (j == NULL)
        return -1;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "items")) {
        cJSON *md = cJSON_GetObjectItem(it, "metadata");
        const char *rv = cJSON_GetStringValue(cJSON_GetObjectItem(md, "resourceVersion"));
        const char *uid = cJSON_GetStringValue(cJSON_GetObjectItem(md, "uid"));
        int s = real_slot(g, cJSON_GetStringValue(cJSON_GetObjectItem(md, "namespace")),
                          cJSON_GetStringValue(cJSON_GetObjectItem(md, "name")));
        if (s < 0 || rv == NULL || uid == NULL) {
            rc = -1;
            continue;
        }
        snprintf(t->rv[s], sizeof(t->rv[s]), "%s", rv);
        snprintf(t->uid[s], sizeof(t->uid[s]), "%s", uid);
        t->n++;
    }
    cJSON_Delete(j);
    return rc;
}

/* Number of differences between cache c and the truth (keys, uids and
 * resourceVersions; 0: equal), printed when verbose; -1 if c cannot be
 * listed. */
static inline int real_cache_diff(kc_cache_t *c, const real_grid_t *g, const real_truth_t *t,
                                  int verbose)
{
    kc_objlist_t l = KC_OBJLIST_INIT;
    int diff = 0, i, seen[REAL_MAX_SLOTS] = { 0 };
    size_t k;
    char ub[KC_UID_BUF];

    if (kc_cache_list(c, &l) != 0)
        return -1;
    for (k = 0; k < l.len; k++) {
        int s = real_slot_of(g, l.items[k]);
        if (s < 0 || strcmp(t->rv[s], kc_obj_resource_version(l.items[k])) != 0 ||
            strcmp(t->uid[s], kc_obj_uid(l.items[k], ub)) != 0) {
            if (verbose)
                printf("# cache %s/%s rv %s, server rv %s\n", kc_obj_namespace(l.items[k]),
                       kc_obj_name(l.items[k]), kc_obj_resource_version(l.items[k]),
                       s >= 0 ? t->rv[s] : "?");
            diff++;
        }
        if (s >= 0)
            seen[s] = 1;
    }
    for (i = 0; i < g->nns * g->nnames; i++)
        if (t->rv[i][0] != '\0' && !seen[i]) {
            if (verbose)
                printf("# missing from the cache: slot %d rv %s\n", i, t->rv[i]);
            diff++;
        }
    kc_objlist_free(&l);
    return diff;
}

#endif
