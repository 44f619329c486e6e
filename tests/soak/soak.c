/*
 * kcache soak: the replicator (kc_replicator run by a kc_manager) and its
 * informers against the in-process fake API server, under a steady
 * mutation load, while every fault the fake server knows fires at random
 * from a printed seed: watches closed and stalled, 410 after compaction,
 * 429 with Retry-After, 500 and 503, events cut mid-way, delays, every
 * connection dropped, the server stopped and started again on the same
 * port (connections refused meanwhile), and clean watch ends.
 *
 * Load (its own thread, through the fake server's direct data API so that
 * it is steady whatever the faults do): creates, updates and deletes of
 * Secrets and ConfigMaps in namespaces src-0..src-2 that share their names
 * (s-0..s-N), each source annotated kcache.io/replicate-to with a random
 * subset of the team namespaces it owns (src-i owns team-2i and team-2i+1,
 * so two sources never claim the same copy); plain objects in the team
 * namespaces; hand edits and deletions of copies.
 *
 * At the end: load and faults stop; the program waits for convergence and
 * checks that every informer's cache equals the server's objects exactly
 * (key and resourceVersion), that every copy matches its source (data,
 * type, marks) and exists exactly where the annotation says; prints the
 * counts of events, faults, relists, reconnects and reconciles, and the RSS
 * after warm-up and at the end (growth must stay under 5% when the run is
 * long enough to judge, >= 120 s without a sanitizer).  Exit status 0 only
 * if every check passed.
 *
 * Usage: soak [--duration S] [--seed N] [--quiet]
 * Threads: main (checks), the manager's, load, faults; the program is the
 * only owner of everything it creates and frees it all before exiting.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fakeapi.h"
#include "kc_cache.h"
#include "kc_client.h"
#include "kc_controller.h"
#include "kc_informer.h"

#define NSRC 3
#define NTEAM (2 * NSRC)
#define NNAMES 12
#define NPLAIN 8

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static uint64_t rnd(uint64_t *s)
{
    /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rnd01(uint64_t *s)
{
    return (double)(rnd(s) >> 11) / 9007199254740992.0;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

typedef struct soak {
    kc_fakeapi_t *fa;
    kc_config_t *cfg;
    kc_client_t *client;
    kc_metrics_t *metrics;
    kc_informer_factory_t *fac;
    kc_replicator_t *rep;
    kc_manager_t *mgr;
    pthread_t mgr_thread, load_thread, fault_thread;
    int run_rc;
    _Atomic int stop_load, stop_faults;
    /* readers: every use of the fake server by the load and fault threads;
     * writer: a full stop/start of the server (kc_fakeapi_stop/start are
     * not thread-safe against the direct data calls) */
    pthread_rwlock_t fa_lock;
    uint64_t seed;
    int quiet;
    /* counts (written by their own thread, read after join) */
    uint64_t ops_create, ops_update, ops_delete, ops_hand_edit, ops_copy_delete, ops_plain;
    uint64_t f_settings, f_compact, f_restart, f_close, f_stopstart, f_start_fail;
} soak_t;

static void log_cb(void *ud, kc_log_level_t level, const char *component, const char *msg)
{
    soak_t *s = ud;
    static const char *const names[] = { "ERROR", "WARN", "INFO", "DEBUG", "TRACE" };
    if (s->quiet)
        return;
    fprintf(stderr, "%s %s: %s\n", names[level], component, msg);
}

/* ------------------------------------------------------------------ load */

static void put_source(soak_t *s, uint64_t *r, const char *res, int src, int name, uint64_t gen)
{
    char to[128] = "", j[1024];
    size_t n = 0;
    int mask = (int)(rnd(r) % 4); /* 0: no annotation */

    for (int t = 0; t < 2; t++)
        if (mask & (1 << t))
            n += (size_t)snprintf(to + n, sizeof(to) - n, "%steam-%d", n ? "," : "", 2 * src + t);
    if (mask == 3 && rnd(r) % 2)
        snprintf(to, sizeof(to), "team-%d*", 2 * src); /* a glob that matches team-2i only */
    snprintf(j, sizeof(j),
             "{\"apiVersion\":\"v1\",\"kind\":\"%s\",\"metadata\":{\"name\":\"s-%d\","
             "\"namespace\":\"src-%d\",\"labels\":{\"gen\":\"g%" PRIu64 "\"}%s%s%s},"
             "%s\"data\":{\"v\":\"%s%" PRIu64 "\",\"k%d\":\"x\"}}",
             strcmp(res, "secrets") == 0 ? "Secret" : "ConfigMap", name, src, gen,
             to[0] ? ",\"annotations\":{\"kcache.io/replicate-to\":\"" : "", to,
             to[0] ? "\"}" : "", strcmp(res, "secrets") == 0 ? "\"type\":\"Opaque\"," : "",
             strcmp(res, "secrets") == 0 ? "dj" : "v", gen, (int)(gen % 5));
    if (kc_fakeapi_apply_json(s->fa, res, j, NULL) == 0)
        s->ops_update++;
}

static void *load_main(void *arg)
{
    soak_t *s = arg;
    uint64_t r = s->seed ^ 0x10ad, gen = 0;

    while (!atomic_load(&s->stop_load)) {
        const char *res = rnd(&r) % 2 ? "secrets" : "configmaps";
        int src = (int)(rnd(&r) % NSRC), name = (int)(rnd(&r) % NNAMES);
        double p = rnd01(&r);
        char nm[32], ns[32];

        gen++;
        pthread_rwlock_rdlock(&s->fa_lock);
        if (p < 0.60) {
            put_source(s, &r, res, src, name, gen);
        } else if (p < 0.75) {
            snprintf(nm, sizeof(nm), "s-%d", name);
            snprintf(ns, sizeof(ns), "src-%d", src);
            if (kc_fakeapi_delete(s->fa, res, ns, nm) == 0)
                s->ops_delete++;
        } else if (p < 0.82) {
            /* hand edit of a copy (if there is one): the controller undoes it */
            char j[512];
            char *cur = NULL;
            snprintf(nm, sizeof(nm), "s-%d", name);
            snprintf(ns, sizeof(ns), "team-%d", 2 * src + (int)(rnd(&r) % 2));
            if (kc_fakeapi_get_json(s->fa, res, ns, nm, &cur) == 0) {
                cJSON *o = cJSON_Parse(cur);
                cJSON *d = o ? cJSON_GetObjectItem(o, "data") : NULL;
                if (d != NULL) {
                    cJSON_ReplaceItemInObject(d, "v", cJSON_CreateString("aGFuZA=="));
                    char *txt = cJSON_PrintUnformatted(o);
                    if (txt && kc_fakeapi_apply_json(s->fa, res, txt, NULL) == 0)
                        s->ops_hand_edit++;
                    free(txt);
                }
                cJSON_Delete(o);
                free(cur);
            }
            (void)j;
        } else if (p < 0.87) {
            snprintf(nm, sizeof(nm), "s-%d", name);
            snprintf(ns, sizeof(ns), "team-%d", 2 * src + (int)(rnd(&r) % 2));
            if (kc_fakeapi_delete(s->fa, res, ns, nm) == 0)
                s->ops_copy_delete++;
        } else {
            /* plain objects in the team namespaces, never replicated */
            char j[512];
            int t = (int)(rnd(&r) % NTEAM), k = (int)(rnd(&r) % NPLAIN);
            snprintf(nm, sizeof(nm), "p-%d", k);
            snprintf(ns, sizeof(ns), "team-%d", t);
            if (rnd(&r) % 4 == 0) {
                kc_fakeapi_delete(s->fa, res, ns, nm);
            } else {
                snprintf(j, sizeof(j),
                         "{\"apiVersion\":\"v1\",\"kind\":\"%s\",\"metadata\":{\"name\":\"%s\","
                         "\"namespace\":\"%s\"},\"data\":{\"p\":\"cA==\",\"g\":\"Zw%" PRIu64 "\"}}",
                         strcmp(res, "secrets") == 0 ? "Secret" : "ConfigMap", nm, ns, gen % 10);
                kc_fakeapi_apply_json(s->fa, res, j, NULL);
            }
            s->ops_plain++;
        }
        pthread_rwlock_unlock(&s->fa_lock);
        sleep_ms(2 + (long)(rnd(&r) % 8));
    }
    return NULL;
}

/* ---------------------------------------------------------------- faults */

static void *fault_main(void *arg)
{
    soak_t *s = arg;
    uint64_t r = s->seed ^ 0xfa17;

    while (!atomic_load(&s->stop_faults)) {
        double p = rnd01(&r);
        sleep_ms(150 + (long)(rnd(&r) % 500));
        if (atomic_load(&s->stop_faults))
            break;
        if (p >= 0.95) {
            /* a real server restart: the listener goes away for a while,
             * then comes back on the same port with the same data */
            int rc = -1;
            pthread_rwlock_wrlock(&s->fa_lock);
            kc_fakeapi_stop(s->fa);
            sleep_ms(100 + (long)(rnd(&r) % 700));
            for (int i = 0; i < 50 && rc != 0; i++) {
                rc = kc_fakeapi_start(s->fa);
                if (rc != 0)
                    sleep_ms(100);
            }
            if (rc != 0)
                s->f_start_fail++;
            pthread_rwlock_unlock(&s->fa_lock);
            s->f_stopstart++;
            continue;
        }
        pthread_rwlock_rdlock(&s->fa_lock);
        if (p < 0.45) {
            kc_fakeapi_faults_t f = KC_FAKEAPI_FAULTS_INIT;
            f.p_429 = rnd01(&r) < 0.5 ? 0.05 * rnd01(&r) : 0;
            f.retry_after_s = 1;
            f.p_500 = rnd01(&r) < 0.5 ? 0.05 * rnd01(&r) : 0;
            f.p_503 = rnd01(&r) < 0.5 ? 0.05 * rnd01(&r) : 0;
            f.p_delay = rnd01(&r) < 0.3 ? 0.1 : 0;
            f.delay_ms = 50;
            f.p_close_watch = rnd01(&r) < 0.5 ? 0.02 * rnd01(&r) : 0;
            f.stall_ms = 200 + (int)(rnd(&r) % 400);
            f.p_stall = rnd01(&r) < 0.4 ? 0.01 * rnd01(&r) : 0;
            f.p_cut_mid_event = rnd01(&r) < 0.5 ? 0.01 * rnd01(&r) : 0;
            f.close_watch_after_events = rnd01(&r) < 0.2 ? 50 + (long)(rnd(&r) % 200) : 0;
            kc_fakeapi_set_faults(s->fa, &f);
            s->f_settings++;
        } else if (p < 0.60) {
            kc_fakeapi_compact(s->fa);
            s->f_compact++;
        } else if (p < 0.72) {
            kc_fakeapi_restart(s->fa);
            s->f_restart++;
        } else if (p < 0.82) {
            kc_fakeapi_close_watches(s->fa);
            s->f_close++;
        } else {
            kc_fakeapi_set_faults(s->fa, NULL);
        }
        pthread_rwlock_unlock(&s->fa_lock);
    }
    kc_fakeapi_set_faults(s->fa, NULL);
    return NULL;
}

/* ---------------------------------------------------------------- checks */

static void *mgr_main(void *arg)
{
    soak_t *s = arg;
    kc_errbuf_t eb;
    s->run_rc = kc_manager_run(s->mgr, &eb);
    if (s->run_rc != 0)
        fprintf(stderr, "soak: manager: %s\n", eb.msg);
    return NULL;
}

static const char *jstr(const cJSON *o, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItem(o, a);
    if (b != NULL)
        x = cJSON_GetObjectItem(x, b);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

/* Cache == server for one resource: same keys, same resourceVersions.
 * Returns the number of differences; describes the first few in msg. */
static int cache_diff(soak_t *s, const char *res, const kc_resource_t *kr, int verbose)
{
    kc_informer_t *inf = NULL;
    kc_objlist_t l = KC_OBJLIST_INIT;
    char *json = NULL;
    cJSON *list = NULL, *items;
    int diffs = 0;
    size_t nitems;

    if (kc_informer_factory_get(s->fac, kr, NULL, NULL, NULL, &inf) != 0 ||
        kc_fakeapi_list_json(s->fa, res, NULL, &json) != 0 ||
        (list = cJSON_Parse(json)) == NULL || kc_cache_list(kc_informer_cache(inf), &l) != 0) {
        free(json);
        cJSON_Delete(list);
        fprintf(stderr, "soak: %s: cannot read the cache or the server\n", res);
        return 1;
    }
    free(json);
    items = cJSON_GetObjectItem(list, "items");
    nitems = (size_t)cJSON_GetArraySize(items);
    if (nitems != l.len) {
        diffs++;
        if (verbose)
            fprintf(stderr, "soak: %s: cache has %zu objects, server %zu\n", res, l.len, nitems);
    }
    for (cJSON *it = items ? items->child : NULL; it; it = it->next) {
        const char *ns = jstr(it, "metadata", "namespace"), *name = jstr(it, "metadata", "name");
        const char *rv = jstr(it, "metadata", "resourceVersion");
        kc_obj_t *o = NULL;
        if (kc_cache_get_nsname(kc_informer_cache(inf), ns ? ns : "", name ? name : "", &o) != 0) {
            if (verbose && diffs++ < 5)
                fprintf(stderr, "soak: %s: %s/%s missing from the cache\n", res, ns, name);
            else
                diffs++;
            continue;
        }
        if (rv == NULL || strcmp(rv, kc_obj_resource_version(o)) != 0) {
            if (verbose && diffs < 5)
                fprintf(stderr, "soak: %s: %s/%s at rv %s in the cache, %s on the server\n", res,
                        ns, name, kc_obj_resource_version(o), rv ? rv : "?");
            diffs++;
        }
        kc_obj_unref(o);
    }
    kc_objlist_free(&l);
    cJSON_Delete(list);
    return diffs;
}

/* Equal JSON values, both absent counting as equal. */
static bool same(const cJSON *a, const cJSON *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return cJSON_Compare(a, b, 1);
}

/* Every copy is what its source says, and exists exactly where it says. */
static int replica_diff(soak_t *s, const char *res, int verbose)
{
    char *json = NULL;
    cJSON *list;
    int diffs = 0;

    if (kc_fakeapi_list_json(s->fa, res, NULL, &json) != 0 || (list = cJSON_Parse(json)) == NULL) {
        free(json);
        return 1;
    }
    free(json);
    cJSON *items = cJSON_GetObjectItem(list, "items");
    /* sources: each matching team namespace holds a faithful copy */
    for (cJSON *it = items ? items->child : NULL; it; it = it->next) {
        const char *ns = jstr(it, "metadata", "namespace"), *name = jstr(it, "metadata", "name");
        const cJSON *ann = cJSON_GetObjectItem(cJSON_GetObjectItem(it, "metadata"), "annotations");
        const char *to = cJSON_IsString(cJSON_GetObjectItem(ann, KC_REPLICATE_TO_ANNOTATION))
                             ? cJSON_GetObjectItem(ann, KC_REPLICATE_TO_ANNOTATION)->valuestring
                             : NULL;
        char src[160];

        if (ns == NULL || strncmp(ns, "src-", 4) != 0 || name == NULL)
            continue;
        snprintf(src, sizeof(src), "%s/%s", ns, name);
        for (int t = 0; t < NTEAM; t++) {
            char tns[32];
            bool want;
            const cJSON *copy = NULL;

            snprintf(tns, sizeof(tns), "team-%d", t);
            want = to != NULL && kc_replicator_match(to, tns);
            for (cJSON *c = items->child; c; c = c->next) {
                const char *cns = jstr(c, "metadata", "namespace");
                const char *cname = jstr(c, "metadata", "name");
                if (cns && cname && strcmp(cns, tns) == 0 && strcmp(cname, name) == 0) {
                    copy = c;
                    break;
                }
            }
            const char *from = copy ? jstr(cJSON_GetObjectItem(copy, "metadata"), "annotations",
                                           KC_REPLICATED_FROM_ANNOTATION)
                                    : NULL;
            if (!want) {
                /* team namespaces of other sources may hold their copies */
                if (from != NULL && strcmp(from, src) == 0) {
                    if (verbose && diffs < 5)
                        fprintf(stderr, "soak: %s: %s/%s exists, but %s says \"%s\"\n", res, tns,
                                name, src, to ? to : "(no annotation)");
                    diffs++;
                }
                continue;
            }
            const char *mb = copy ? jstr(cJSON_GetObjectItem(copy, "metadata"), "labels",
                                         KC_MANAGED_BY_LABEL)
                                  : NULL;
            if (copy == NULL || from == NULL || strcmp(from, src) != 0 || mb == NULL ||
                strcmp(mb, KC_MANAGED_BY_VALUE) != 0 ||
                !same(cJSON_GetObjectItem(copy, "data"), cJSON_GetObjectItem(it, "data")) ||
                !same(cJSON_GetObjectItem(copy, "type"), cJSON_GetObjectItem(it, "type"))) {
                if (verbose && diffs < 5)
                    fprintf(stderr, "soak: %s: %s/%s is not a faithful copy of %s (%s)\n", res,
                            tns, name, src, copy ? "differs" : "missing");
                diffs++;
            }
        }
    }
    /* copies: their source exists (checked above the other way round) */
    for (cJSON *c = items ? items->child : NULL; c; c = c->next) {
        const char *from = jstr(cJSON_GetObjectItem(c, "metadata"), "annotations",
                                KC_REPLICATED_FROM_ANNOTATION);
        if (from == NULL)
            continue;
        bool found = false;
        for (cJSON *it = items->child; it && !found; it = it->next) {
            char src[160];
            snprintf(src, sizeof(src), "%s/%s", jstr(it, "metadata", "namespace"),
                     jstr(it, "metadata", "name"));
            found = strcmp(src, from) == 0;
        }
        if (!found) {
            if (verbose && diffs < 5)
                fprintf(stderr, "soak: %s: %s/%s is a copy of %s, which is gone\n", res,
                        jstr(c, "metadata", "namespace"), jstr(c, "metadata", "name"), from);
            diffs++;
        }
    }
    cJSON_Delete(list);
    return diffs;
}

static double metric_sum(soak_t *s, const char *prefix)
{
    char *text = NULL;
    size_t len = 0, n = strlen(prefix);
    double sum = 0;

    if (kc_metrics_write(s->metrics, &text, &len) != 0)
        return -1;
    for (char *p = text; p && *p;) {
        if (strncmp(p, prefix, n) == 0 && (p[n] == '{' || p[n] == ' ')) {
            char *sp = strchr(p, ' ');
            if (sp)
                sum += strtod(sp + 1, NULL);
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    free(text);
    return sum;
}

int main(int argc, char **argv)
{
    soak_t S;
    kc_fakeapi_opts_t fo = KC_FAKEAPI_OPTS_INIT;
    kc_config_opts_t co = KC_CONFIG_OPTS_INIT;
    kc_client_opts_t clo = KC_CLIENT_OPTS_INIT;
    kc_informer_opts_t io = KC_INFORMER_OPTS_INIT;
    kc_replicator_opts_t ro = KC_REPLICATOR_OPTS_INIT;
    kc_manager_opts_t mo = KC_MANAGER_OPTS_INIT;
    kc_errbuf_t eb;
    char dir[64], kcpath[128];
    double duration = 180;
    const char *san = getenv("KC_SANITIZER");
    int failures = 0, converged = 0;
    long rss_warm = -1, rss_end = -1;
    uint64_t t0;

    memset(&S, 0, sizeof(S));
    pthread_rwlock_init(&S.fa_lock, NULL);
    S.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--duration") == 0 && i + 1 < argc)
            duration = strtod(argv[++i], NULL);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            S.seed = strtoull(argv[++i], NULL, 0);
        else if (strcmp(argv[i], "--quiet") == 0)
            S.quiet = 1;
        else {
            fprintf(stderr, "usage: soak [--duration S] [--seed N] [--quiet]\n");
            return 2;
        }
    }
    if (duration < 1)
        duration = 1;
    printf("soak: seed %" PRIu64 " duration %.0f s%s%s\n", S.seed, duration,
           san && *san ? " sanitizer " : "", san && *san ? san : "");
    fflush(stdout);

    if (kc_global_init() != 0)
        return 1;
    snprintf(dir, sizeof(dir), "/tmp/kc-soak-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return 1;
    snprintf(kcpath, sizeof(kcpath), "%s/kubeconfig", dir);

    fo.seed = S.seed;
    fo.history_window = 3000;
    fo.min_request_timeout_s = 5;
    fo.bookmark_interval_ms = 1000;
    fo.log.fn = log_cb;
    fo.log.ud = &S;
    fo.log.level = KC_LOG_WARN;
    if (kc_fakeapi_new(&fo, &S.fa) != 0 || kc_fakeapi_start(S.fa) != 0 ||
        kc_fakeapi_write_kubeconfig(S.fa, kcpath, NULL) != 0) {
        fprintf(stderr, "soak: cannot start the fake API server\n");
        return 1;
    }
    for (int i = 0; i < NSRC + NTEAM; i++) {
        char j[160];
        snprintf(j, sizeof(j), "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":"
                 "{\"name\":\"%s-%d\"}}", i < NSRC ? "src" : "team", i < NSRC ? i : i - NSRC);
        kc_fakeapi_apply_json(S.fa, "namespaces", j, NULL);
    }
    co.kubeconfig = kcpath;
    clo.retry_max_ms = 1000;
    clo.watch_idle_timeout_ms = 3000;
    clo.log.fn = log_cb;
    clo.log.ud = &S;
    clo.log.level = KC_LOG_WARN;
    io.backoff_initial_ms = 50;
    io.backoff_max_ms = 1000;
    io.watch_timeout_min_s = 3;
    io.watch_timeout_max_s = 8;
    io.seed = S.seed;
    io.log = clo.log;
    if (kc_config_load(&co, &S.cfg, &eb) != 0 || kc_client_new(S.cfg, &clo, &S.client, &eb) != 0 ||
        kc_metrics_new(&S.metrics) != 0 || kc_informer_factory_new(S.client, &io, &S.fac) != 0) {
        fprintf(stderr, "soak: setup: %s\n", eb.msg);
        return 1;
    }
    ro.client = S.client;
    ro.informers = S.fac;
    ro.metrics = S.metrics;
    ro.conflict_retry_ns = 500000000ull;
    ro.log = clo.log;
    mo.informers = S.fac;
    mo.metrics = S.metrics;
    mo.metrics_addr = "0";
    mo.probe_addr = "0";
    mo.shutdown_timeout_ns = 10000000000ull;
    mo.log = clo.log;
    if (kc_replicator_new(&ro, &S.rep, &eb) != 0 || kc_manager_new(&mo, &S.mgr, &eb) != 0 ||
        kc_replicator_add_to(S.rep, S.mgr) != 0) {
        fprintf(stderr, "soak: setup: %s\n", eb.msg);
        return 1;
    }
    pthread_create(&S.mgr_thread, NULL, mgr_main, &S);
    t0 = kc_now_ns();
    while (!kc_manager_ready(S.mgr) && kc_now_ns() - t0 < 30000000000ull)
        sleep_ms(20);
    if (!kc_manager_ready(S.mgr)) {
        fprintf(stderr, "soak: the manager never became ready\n");
        failures++;
    }

    pthread_create(&S.load_thread, NULL, load_main, &S);
    pthread_create(&S.fault_thread, NULL, fault_main, &S);
    t0 = kc_now_ns();
    {
        /* warm-up: the fake server's watch history (3000 events) and every
         * cache are full well before a third of a long run */
        double warm = duration >= 120 ? duration / 3 : duration * 0.2;
        double last = 0;
        for (;;) {
            double el = (double)(kc_now_ns() - t0) / 1e9;
            if (el >= duration)
                break;
            if (rss_warm < 0 && el >= warm) {
                kc_heap_trim();
                rss_warm = rss_kb();
            }
            if (el - last >= 30) {
                last = el;
                printf("soak: %.0f s, rev %" PRIu64 ", rss %ld kB\n", el,
                       kc_fakeapi_revision(S.fa), rss_kb());
                fflush(stdout);
            }
            sleep_ms(100);
        }
    }
    atomic_store(&S.stop_load, 1);
    pthread_join(S.load_thread, NULL);
    atomic_store(&S.stop_faults, 1);
    pthread_join(S.fault_thread, NULL);
    kc_fakeapi_set_faults(S.fa, NULL);

    /* convergence: up to 60 s (faults are off; watches resume, relist) */
    t0 = kc_now_ns();
    while (kc_now_ns() - t0 < 60000000000ull) {
        if (cache_diff(&S, "secrets", &kc_res_secrets, 0) == 0 &&
            cache_diff(&S, "configmaps", &kc_res_configmaps, 0) == 0 &&
            cache_diff(&S, "namespaces", &kc_res_namespaces, 0) == 0 &&
            replica_diff(&S, "secrets", 0) == 0 && replica_diff(&S, "configmaps", 0) == 0) {
            converged = 1;
            break;
        }
        sleep_ms(200);
    }
    double conv_s = (double)(kc_now_ns() - t0) / 1e9;
    {
        int d1 = cache_diff(&S, "secrets", &kc_res_secrets, 1);
        int d2 = cache_diff(&S, "configmaps", &kc_res_configmaps, 1);
        int d3 = cache_diff(&S, "namespaces", &kc_res_namespaces, 1);
        int d4 = replica_diff(&S, "secrets", 1);
        int d5 = replica_diff(&S, "configmaps", 1);
        printf("soak: converged %s after %.1f s; cache differences: secrets %d, configmaps %d, "
               "namespaces %d; replica differences: secrets %d, configmaps %d\n",
               converged ? "yes" : "NO", conv_s, d1, d2, d3, d4, d5);
        if (!converged || d1 || d2 || d3 || d4 || d5)
            failures++;
    }
    kc_heap_trim();
    rss_end = rss_kb();

    /* counts */
    {
        kc_fakeapi_counters_t fc;
        uint64_t ev = 0, relists = 0, restarts = 0, errors = 0, lists = 0, bm = 0, everr = 0;
        const kc_resource_t *rs[] = { &kc_res_secrets, &kc_res_configmaps, &kc_res_namespaces };
        kc_fakeapi_get_counters(S.fa, &fc);
        for (size_t i = 0; i < 3; i++) {
            kc_informer_t *inf = NULL;
            kc_informer_state_t st;
            if (kc_informer_factory_get(S.fac, rs[i], NULL, NULL, NULL, &inf) != 0)
                continue;
            kc_informer_state(inf, &st);
            printf("soak: informer %-10s objects %zu, events %" PRIu64 " (bookmarks %" PRIu64
                   ", errors %" PRIu64 "), lists %" PRIu64 ", relists %" PRIu64
                   ", reconnects %" PRIu64 ", failed attempts %" PRIu64 "\n",
                   rs[i]->resource, st.cached_objects,
                   st.events_added + st.events_modified + st.events_deleted, st.events_bookmark,
                   st.events_error, st.lists, st.relists, st.restarts, st.errors);
            ev += st.events_added + st.events_modified + st.events_deleted;
            bm += st.events_bookmark;
            everr += st.events_error;
            relists += st.relists;
            lists += st.lists;
            restarts += st.restarts;
            errors += st.errors;
        }
        printf("soak: load: %" PRIu64 " source writes, %" PRIu64 " deletes, %" PRIu64
               " hand edits, %" PRIu64 " copy deletions, %" PRIu64 " plain-object ops; "
               "final revision %" PRIu64 "\n",
               S.ops_update, S.ops_delete, S.ops_hand_edit, S.ops_copy_delete, S.ops_plain,
               kc_fakeapi_revision(S.fa));
        printf("soak: faults: %" PRIu64 " injected by the server (429 %" PRIu64 ", 5xx %" PRIu64
               ", 410 events %" PRIu64 "), %" PRIu64 " fault settings, %" PRIu64
               " compactions, %" PRIu64 " connection drops, %" PRIu64 " server stop/starts, %" PRIu64
               " watch closes; %" PRIu64 " connections\n",
               fc.faults, fc.status_429, fc.status_5xx, fc.watch_410, S.f_settings, S.f_compact,
               S.f_restart, S.f_stopstart, S.f_close, fc.connections);
        if (S.f_start_fail) {
            printf("soak: FAIL: the server could not be started again %" PRIu64 " times\n",
                   S.f_start_fail);
            failures++;
        }
        printf("soak: totals: events %" PRIu64 ", bookmarks %" PRIu64 ", error events %" PRIu64
               ", lists %" PRIu64 ", relists %" PRIu64 ", reconnects %" PRIu64
               ", failed attempts %" PRIu64 ", reconciles %.0f (errors %.0f), copies %.0f\n",
               ev, bm, everr, lists, relists, restarts, errors,
               metric_sum(&S, "controller_runtime_reconcile_total"),
               metric_sum(&S, "controller_runtime_reconcile_errors_total"),
               metric_sum(&S, "kcache_replicator_copies_total"));
        if (ev == 0 || fc.faults == 0) {
            printf("soak: FAIL: no events or no faults: the run proved nothing\n");
            failures++;
        }
    }
    {
        double growth = rss_warm > 0 ? 100.0 * (double)(rss_end - rss_warm) / (double)rss_warm : 0;
        int judge = duration >= 120 && !(san && *san);
        printf("soak: RSS after warm-up %ld kB, at the end %ld kB (%+.1f%%)%s\n", rss_warm, rss_end,
               growth,
               judge ? (growth < 5 ? ": ok (< 5%)" : ": FAIL (>= 5%)")
                     : ": not judged (run shorter than 120 s or under a sanitizer)");
        if (judge && growth >= 5)
            failures++;
    }

    kc_manager_request_stop(S.mgr);
    pthread_join(S.mgr_thread, NULL);
    if (S.run_rc != 0) {
        printf("soak: FAIL: manager run returned %s\n", kc_err_name(S.run_rc));
        failures++;
    }
    kc_manager_free(S.mgr);
    kc_replicator_free(S.rep);
    kc_informer_factory_free(S.fac);
    kc_metrics_free(S.metrics);
    kc_client_free(S.client);
    kc_config_free(S.cfg);
    kc_fakeapi_free(S.fa);
    unlink(kcpath);
    rmdir(dir);
    kc_global_cleanup();
    printf("soak: %s (seed %" PRIu64 ")\n", failures ? "FAILED" : "passed", S.seed);
    return failures ? 1 : 0;
}
