/*
 * bench_informer: end-to-end informer figures over loopback HTTPS from the
 * in-process fake API server.
 *
 *  - sync: time from kc_informer_start to has-synced for N preloaded
 *    ConfigMaps (10,000 and 100,000) and Pods, with page size 500;
 *  - memory: cache bytes per object next to the object's minified JSON,
 *    and the process's peak RSS (which includes the fake server's copy);
 *  - events/s: a churn of M changes applied at once on the server, timed
 *    until the informer's cache has reached the server's last revision and
 *    a counting handler has been called for them (stream -> decode ->
 *    cache -> handler).
 *
 * Prints figures only; no assertions on timing.  KC_BENCH_SMALL=1 runs
 * smaller sizes (for a quick check).
 *
 * External-server mode (env KC_BENCH_KUBECONFIG set; bench/README.md):
 * run.sh starts the server with the preload and hands over its
 * kubeconfig; this program runs one informer on KC_BENCH_RESOURCE (all
 * namespaces), waits for the sync of KC_BENCH_EXPECT objects, starts
 * KC_BENCH_CHURN_CMD (sh -c, not waited for) and counts handler events
 * until KC_BENCH_CHURN_EVENTS arrived (or 5 s without one after the first,
 * or 60 s), then appends the informer figures of the README under the
 * names the client-go peer uses, measured the same way (RSS from
 * /proc/self/status, CPU from getrusage).  KC_BENCH_PAGE sets the list page
 * size (default 500, the informer's default; 0 = one unpaged list) and
 * KC_BENCH_IMPL the impl label (default kcache).  Events merged by the
 * handler queue's coalescing (kc_handler_t) count as handled: the handler
 * saw their net effect.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cJSON.h>

#include "kc_informer.h"
#include "fakeapi.h"
#include "bench_out.h"

extern char **environ;

typedef struct counter {
    _Atomic unsigned long long n;
} counter_t;

static void c_add(void *ud, kc_obj_t *o)
{
    (void)o;
    atomic_fetch_add(&((counter_t *)ud)->n, 1);
}

static void c_update(void *ud, kc_obj_t *a, kc_obj_t *b)
{
    (void)a;
    (void)b;
    atomic_fetch_add(&((counter_t *)ud)->n, 1);
}

static void c_delete(void *ud, kc_obj_t *o, int u)
{
    (void)o;
    (void)u;
    atomic_fetch_add(&((counter_t *)ud)->n, 1);
}

static long peak_rss_kb(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static double secs(uint64_t a, uint64_t b)
{
    return (double)(b - a) / 1e9;
}

/* Bare cJSON_Parse rate over the cached objects' JSON (objects/s), the
 * yardstick for the end-to-end event rate: the fastest of three passes,
 * so that a moment of noise on a shared machine does not flatter the
 * ratio against it. */
static double cjson_rate(kc_objlist_t *l, size_t *bytes)
{
    double best = 0;
    size_t b = 0;

    /* objects kept compressed are unpacked once, outside the timing: the
     * yardstick is the parse alone */
    for (size_t i = 0; i < l->len; i++)
        kc_obj_json(l->items[i], NULL);
    for (int pass = 0; pass < 3; pass++) {
        uint64_t t0 = kc_now_ns();
        b = 0;
        for (size_t i = 0; i < l->len; i++) {
            size_t len;
            const char *j = kc_obj_json(l->items[i], &len);
            cJSON *t = cJSON_ParseWithLength(j, len);
            cJSON_Delete(t);
            b += len;
        }
        double r = (double)l->len / secs(t0, kc_now_ns());
        if (r > best)
            best = r;
    }
    *bytes = b;
    return best;
}

typedef struct env {
    kc_fakeapi_t *fa;
    kc_config_t *cfg;
    kc_client_t *cl;
    char dir[64], kc[128];
} env_t;

static int env_start(env_t *e)
{
    kc_fakeapi_opts_t fo = KC_FAKEAPI_OPTS_INIT;
    kc_config_opts_t co = KC_CONFIG_OPTS_INIT;
    kc_client_opts_t clo = KC_CLIENT_OPTS_INIT;
    kc_errbuf_t eb = { 0, "" };

    memset(e, 0, sizeof(*e));
    fo.history_window = 200000;
    if (kc_fakeapi_new(&fo, &e->fa) != 0 || kc_fakeapi_start(e->fa) != 0)
        return -1;
    snprintf(e->dir, sizeof(e->dir), "/tmp/kc-bench-XXXXXX");
    if (mkdtemp(e->dir) == NULL)
        return -1;
    snprintf(e->kc, sizeof(e->kc), "%s/kubeconfig", e->dir);
    if (kc_fakeapi_write_kubeconfig(e->fa, e->kc, NULL) != 0)
        return -1;
    co.kubeconfig = e->kc;
    if (kc_config_load(&co, &e->cfg, &eb) != 0) {
        fprintf(stderr, "config: %s\n", eb.msg);
        return -1;
    }
    clo.qps = 0;
    if (kc_client_new(e->cfg, &clo, &e->cl, &eb) != 0) {
        fprintf(stderr, "client: %s\n", eb.msg);
        return -1;
    }
    return 0;
}

static void env_stop(env_t *e)
{
    kc_client_free(e->cl);
    kc_config_free(e->cfg);
    kc_fakeapi_free(e->fa);
    unlink(e->kc);
    rmdir(e->dir);
}

/* Wait until the informer has seen resourceVersion rv (decimal, from the
 * fake's counter) and the handler counted at least want callbacks. */
static int wait_caught_up(kc_informer_t *inf, uint64_t rv, counter_t *c,
                          unsigned long long want, double timeout_s)
{
    uint64_t end = kc_now_ns() + (uint64_t)(timeout_s * 1e9);
    char rvs[32];

    snprintf(rvs, sizeof(rvs), "%llu", (unsigned long long)rv);
    for (;;) {
        kc_informer_state_t st;
        kc_informer_state(inf, &st);
        if (strcmp(st.last_rv, rvs) == 0 && atomic_load(&c->n) >= want)
            return 0;
        if (kc_now_ns() > end)
            return -1;
        usleep(200);
    }
}

static void run(const char *resource, const kc_resource_t *res, size_t n, size_t churn,
                long page)
{
    kc_fakeapi_load_t l = KC_FAKEAPI_LOAD_INIT;
    kc_informer_opts_t o = KC_INFORMER_OPTS_INIT;
    kc_informer_t *inf = NULL;
    counter_t c = { 0 };
    kc_handler_t h = { c_add, c_update, c_delete, &c };
    kc_objlist_t lst = KC_OBJLIST_INIT;
    size_t json_bytes = 0, mem, cj_bytes = 0, nobj = 0;
    double cj_rate = 0;
    uint64_t t0, t1, rev;
    unsigned long long before;
    env_t e;

    if (env_start(&e) != 0) {
        fprintf(stderr, "cannot start the fake API server\n");
        return;
    }
    l.resource = resource;
    l.namespaces = 10;
    if (kc_fakeapi_preload(e.fa, &l, n) != 0) {
        fprintf(stderr, "preload failed\n");
        env_stop(&e);
        return;
    }
    o.resource = res;
    o.page_size = page;
    if (getenv("KC_BENCH_PAGE"))
        o.page_size = strtol(getenv("KC_BENCH_PAGE"), NULL, 10);
    o.backoff_initial_ms = 1; /* retry at once when the 403 is lifted */
    o.backoff_max_ms = 5;
    if (kc_informer_new(e.cl, &o, &inf, NULL) != 0 || kc_informer_add_handler(inf, &h) != 0) {
        fprintf(stderr, "informer_new failed\n");
        env_stop(&e);
        return;
    }
    t0 = kc_now_ns();
    kc_informer_start(inf);
    if (kc_informer_wait_synced(inf, 600000) != 0) {
        fprintf(stderr, "sync failed\n");
        goto out;
    }
    t1 = kc_now_ns();
    kc_informer_wait_handlers_idle(inf, 600000);
    printf("%-10s sync %7zu objects, pages of %ld: %7.3f s (%9.0f objects/s); handler Adds "
           "done after %.3f s\n", resource, n, o.page_size, secs(t0, t1),
           (double)n / secs(t0, t1), secs(t0, kc_now_ns()));

    if (kc_cache_list(kc_informer_cache(inf), &lst) == 0) {
        for (size_t i = 0; i < lst.len; i++) {
            json_bytes += kc_obj_json_len(lst.items[i]);
        }
        mem = kc_cache_mem_usage(kc_informer_cache(inf));
        cj_rate = cjson_rate(&lst, &cj_bytes);
        nobj = lst.len;
        if (lst.len)
            printf("%-10s memory: %.0f bytes/object cached, minified JSON %.0f bytes/object "
                   "(ratio %.2fx); peak RSS %ld MiB (fake server included)\n",
                   resource, (double)mem / (double)lst.len,
                   (double)json_bytes / (double)lst.len, (double)mem / (double)json_bytes,
                   peak_rss_kb() / 1024);
        kc_objlist_free(&lst);
    }

    if (churn > 0) {
        kc_informer_state_t s0, s1;
        uint64_t rev0;
        /* Keep the informer from watching (403) while the server applies
         * the churn, then let it watch again from its last resourceVersion:
         * the server replays the changes from its history as fast as the
         * informer takes them, so the time measured is stream -> decode ->
         * cache -> handler only. */
        kc_fakeapi_set_allow(e.fa, "admin", "get", "nothing");
        kc_fakeapi_close_watches(e.fa);
        usleep(100000);
        rev0 = kc_fakeapi_revision(e.fa);
        kc_fakeapi_churn(e.fa, &l, churn);
        rev = kc_fakeapi_revision(e.fa);
        kc_informer_state(inf, &s0);
        before = atomic_load(&c.n);
        t0 = kc_now_ns();
        kc_fakeapi_clear_allow(e.fa);
        if (wait_caught_up(inf, rev, &c, before, 120) == 0 &&
            kc_informer_wait_handlers_idle(inf, 120000) == 0) {
            unsigned long long ev;
            t1 = kc_now_ns();
            kc_informer_state(inf, &s1);
            ev = (s1.events_added + s1.events_modified + s1.events_deleted) -
                 (s0.events_added + s0.events_modified + s0.events_deleted);
            printf("%-10s events: %llu watch events (%llu revisions) in %.3f s: %9.0f events/s "
                   "end to end, %llu handler calls%s\n", resource, ev,
                   (unsigned long long)(rev - rev0), secs(t0, t1), (double)ev / secs(t0, t1),
                   atomic_load(&c.n) - before,
                   s1.relists != s0.relists ? " (relisted: history too short)" : "");
            if (cj_rate > 0 && nobj > 0)
                printf("%-10s events: bare cJSON_Parse of the same objects: %9.0f objects/s "
                       "(%.0f MB/s); end to end is %.2fx that\n", resource, cj_rate,
                       cj_rate * (double)cj_bytes / (double)nobj / 1e6,
                       ((double)ev / secs(t0, t1)) / cj_rate);
        } else {
            printf("%-10s events: did not catch up\n", resource);
        }
    }
out:
    kc_informer_free(inf);
    env_stop(&e);
}

/* ---- external-server mode ------------------------------------------------ */

typedef struct tcounter {
    _Atomic unsigned long long n;
    _Atomic uint64_t first, last; /* kc_now_ns of the first / last event; 0: none */
} tcounter_t;

static void t_hit(tcounter_t *c)
{
    uint64_t now = kc_now_ns(), zero = 0;
    atomic_compare_exchange_strong(&c->first, &zero, now);
    atomic_store(&c->last, now);
    atomic_fetch_add(&c->n, 1);
}

static void t_add(void *ud, kc_obj_t *o)
{
    (void)o;
    t_hit(ud);
}

static void t_update(void *ud, kc_obj_t *a, kc_obj_t *b)
{
    (void)a;
    (void)b;
    t_hit(ud);
}

static void t_delete(void *ud, kc_obj_t *o, int u)
{
    (void)o;
    (void)u;
    t_hit(ud);
}

/* A field of /proc/self/status in bytes ("VmRSS", "VmHWM"); 0 if absent. */
static double proc_status_bytes(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t fl = strlen(field);
    double v = 0;

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
            v = strtod(line + fl + 1, NULL) * 1024.0;
            break;
        }
    }
    fclose(f);
    return v;
}

static double cpu_seconds(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

static int external(void)
{
    const char *kcpath = getenv("KC_BENCH_KUBECONFIG");
    const char *resource = env_or("KC_BENCH_RESOURCE", "configmaps");
    const char *churn_cmd = getenv("KC_BENCH_CHURN_CMD");
    const char *impl = env_or("KC_BENCH_IMPL", "kcache");
    long expect = strtol(env_or("KC_BENCH_EXPECT", "0"), NULL, 10);
    long churn_events = strtol(env_or("KC_BENCH_CHURN_EVENTS", "0"), NULL, 10);
    char wl_def[64];
    const char *wl;
    double cpu0 = cpu_seconds(), rss_base = proc_status_bytes("VmRSS");
    double anon_base = proc_status_bytes("RssAnon");
    kc_config_opts_t co = KC_CONFIG_OPTS_INIT;
    kc_client_opts_t clo = KC_CLIENT_OPTS_INIT;
    kc_informer_opts_t o = KC_INFORMER_OPTS_INIT;
    kc_config_t *cfg = NULL;
    kc_client_t *cl = NULL;
    kc_informer_t *inf = NULL;
    kc_errbuf_t eb = { 0, "" };
    tcounter_t c = { 0, 0, 0 };
    kc_handler_t h = { t_add, t_update, t_delete, &c };
    kc_handler_stats_t hs0, hs1;
    kc_informer_state_t is0, is1;
    pid_t child = -1;
    uint64_t t0, ts, tc0;
    double sync_time, sync_cpu, rss_synced, anon_synced, churn_cpu0, churn_cpu;
    unsigned long long n;
    size_t objects;
    int rc = 1;

    snprintf(wl_def, sizeof(wl_def), "%s-%ld", resource, expect);
    wl = env_or("KC_BENCH_WORKLOAD", wl_def);
    co.kubeconfig = kcpath;
    if (kc_config_load(&co, &cfg, &eb) != 0) {
        fprintf(stderr, "bench_informer: %s: %s\n", kcpath, eb.msg);
        goto out;
    }
    clo.qps = 0;
    if (kc_client_new(cfg, &clo, &cl, &eb) != 0) {
        fprintf(stderr, "bench_informer: client: %s\n", eb.msg);
        goto out;
    }
    if (strcmp(resource, "pods") == 0)
        o.resource = &kc_res_pods;
    else if (strcmp(resource, "configmaps") == 0)
        o.resource = &kc_res_configmaps;
    else {
        fprintf(stderr, "bench_informer: unknown resource %s\n", resource);
        goto out;
    }
    o.page_size = strtol(env_or("KC_BENCH_PAGE", "500"), NULL, 10);
    if (kc_informer_new(cl, &o, &inf, &eb) != 0 || kc_informer_add_handler(inf, &h) != 0) {
        fprintf(stderr, "bench_informer: informer: %s\n", eb.msg);
        goto out;
    }
    t0 = kc_now_ns();
    if (kc_informer_start(inf) != 0 || kc_informer_wait_synced(inf, 600000) != 0) {
        fprintf(stderr, "bench_informer: initial sync failed\n");
        goto out;
    }
    ts = kc_now_ns();
    sync_time = secs(t0, ts);
    sync_cpu = cpu_seconds() - cpu0;
    /* the cache at rest, not the notification backlog (as the peer does) */
    kc_informer_wait_handlers_idle(inf, 600000);
    objects = kc_cache_len(kc_informer_cache(inf));
    rss_synced = proc_status_bytes("VmRSS");
    anon_synced = proc_status_bytes("RssAnon");
    if (expect > 0 && (long)objects != expect)
        fprintf(stderr, "bench_informer: %zu objects after sync, expected %ld\n", objects, expect);
    fprintf(stderr, "bench_informer: synced %zu %s in %.3fs (pages of %ld)\n", objects, resource,
            sync_time, o.page_size);
    bench_record("informer", impl, wl, "sync_time", sync_time, "s");
    bench_record("informer", impl, wl, "sync_cpu", sync_cpu, "s");
    bench_record("informer", impl, wl, "objects", (double)objects, "objects");
    bench_record("informer", impl, wl, "rss_synced", rss_synced, "bytes");
    if (objects > 0) {
        kc_objlist_t lst = KC_OBJLIST_INIT;
        /* the process's own memory (heap, stacks) per object: code pages
         * of the program and its libraries first touched during the sync
         * are not memory an object costs (the peer measures the same) */
        bench_record("informer", impl, wl, "bytes_per_object",
                     (anon_synced - anon_base) / (double)objects, "bytes");
        bench_record("informer", impl, wl, "bytes_per_object_rss",
                     (rss_synced - rss_base) / (double)objects, "bytes");
        /* kcache only: the cache's own accounting next to the minified JSON
         * it keeps (issue 5: at most 1.25x) */
        if (kc_cache_list(kc_informer_cache(inf), &lst) == 0 && lst.len > 0) {
            double json = 0;
            for (size_t i = 0; i < lst.len; i++) {
                json += (double)kc_obj_json_len(lst.items[i]);
            }
            double mem = (double)kc_cache_mem_usage(kc_informer_cache(inf));
            bench_record("informer", impl, wl, "cache_bytes_per_object", mem / (double)lst.len,
                         "bytes");
            bench_record("informer", impl, wl, "cached_per_json", mem / json, "x");
            kc_objlist_free(&lst);
        }
    }

    /* churn phase */
    kc_informer_handler_stats(inf, 0, &hs0);
    kc_informer_state(inf, &is0);
    atomic_store(&c.n, 0);
    atomic_store(&c.first, 0);
    atomic_store(&c.last, 0);
    churn_cpu0 = cpu_seconds();
    tc0 = kc_now_ns();
    if (churn_cmd && *churn_cmd) {
        char *argv[] = { "sh", "-c", (char *)churn_cmd, NULL };
        if (posix_spawn(&child, "/bin/sh", NULL, NULL, argv, environ) != 0) {
            perror("bench_informer: churn command");
            child = -1;
        }
    }
    for (;;) {
        uint64_t now, last;
        usleep(10000);
        kc_informer_handler_stats(inf, 0, &hs1);
        kc_informer_state(inf, &is1);
        n = atomic_load(&c.n) + (hs1.coalesced - hs0.coalesced);
        {
            /* coalescing may count a merge of two events twice: never more
             * than the watch events the informer received */
            unsigned long long w =
                (is1.events_added + is1.events_modified + is1.events_deleted) -
                (is0.events_added + is0.events_modified + is0.events_deleted);
            if (n > w)
                n = w;
        }
        now = kc_now_ns();
        last = atomic_load(&c.last);
        if (churn_events > 0 && n >= (unsigned long long)churn_events)
            break;
        if (secs(tc0, now) >= 60)
            break;
        if (last != 0 && secs(last, now) >= 5)
            break;
    }
    churn_cpu = cpu_seconds() - churn_cpu0;
    if (n >= 2) {
        double span = secs(atomic_load(&c.first), atomic_load(&c.last));
        if (span > 0)
            bench_record("informer", impl, wl, "events_per_s", (double)n / span, "events/s");
        bench_record("informer", impl, wl, "cpu_per_kevent", churn_cpu / (double)n * 1000, "s");
    } else {
        fprintf(stderr, "bench_informer: no churn events seen; events_per_s not reported\n");
    }
    bench_record("informer", impl, wl, "churn_events", (double)n, "events");
    bench_record("informer", impl, wl, "churn_coalesced", (double)(hs1.coalesced - hs0.coalesced),
                 "events");
    bench_record("informer", impl, wl, "churn_cpu", churn_cpu, "s");
    bench_record("informer", impl, wl, "peak_rss", proc_status_bytes("VmHWM"), "bytes");
    bench_record("informer", impl, wl, "cpu_total", cpu_seconds() - cpu0, "s");
    {
        /* issue 5's yardstick, measured after everything else so it
         * disturbs nothing: bare cJSON_Parse of the cached objects' JSON,
         * objects/s, next to the end-to-end event rate */
        kc_objlist_t lst = KC_OBJLIST_INIT;
        double span = secs(atomic_load(&c.first), atomic_load(&c.last));
        if (kc_cache_list(kc_informer_cache(inf), &lst) == 0 && lst.len > 0) {
            size_t bytes;
            double r = cjson_rate(&lst, &bytes);
            bench_record("informer", impl, wl, "cjson_parse_per_s", r, "events/s");
            if (n >= 2 && span > 0)
                bench_record("informer", impl, wl, "events_vs_cjson", (double)n / span / r, "x");
        }
        kc_objlist_free(&lst);
    }
    fprintf(stderr, "bench_informer: %llu churn events (%llu coalesced)\n", n,
            (unsigned long long)(hs1.coalesced - hs0.coalesced));
    rc = 0;
out:
    if (child > 0) {
        /* the command only starts the burst; never let it hold the exit */
        for (int i = 0; i < 500 && waitpid(child, NULL, WNOHANG) == 0; i++)
            usleep(10000);
        if (waitpid(child, NULL, WNOHANG) == 0) {
            kill(child, SIGKILL);
            waitpid(child, NULL, 0);
        }
    }
    kc_informer_free(inf);
    kc_client_free(cl);
    kc_config_free(cfg);
    return rc;
}

int main(void)
{
    int small = getenv("KC_BENCH_SMALL") != NULL;

    kc_global_init();
    if (getenv("KC_BENCH_KUBECONFIG")) {
        int rc = external();
        kc_global_cleanup();
        return rc;
    }
    if (getenv("KC_BENCH_ONLY_100K")) {
        run("configmaps", &kc_res_configmaps, 100000, 0, 500);
        return 0;
    }
    run("configmaps", &kc_res_configmaps, small ? 2000 : 10000, small ? 2000 : 20000, 500);
    /* pages of 500 (the default) pay one request round trip each; the
     * larger page shows the informer's own cost when round trips are few */
    run("configmaps", &kc_res_configmaps, small ? 5000 : 100000, 0, 500);
    run("configmaps", &kc_res_configmaps, small ? 5000 : 100000, 0, 5000);
    run("pods", &kc_res_pods, small ? 1000 : 10000, small ? 1000 : 10000, 500);
    kc_global_cleanup();
    return 0;
}
