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
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "kc_informer.h"
#include "fakeapi.h"

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

static void run(const char *resource, const kc_resource_t *res, size_t n, size_t churn)
{
    kc_fakeapi_load_t l = KC_FAKEAPI_LOAD_INIT;
    kc_informer_opts_t o = KC_INFORMER_OPTS_INIT;
    kc_informer_t *inf = NULL;
    counter_t c = { 0 };
    kc_handler_t h = { c_add, c_update, c_delete, &c };
    kc_objlist_t lst = KC_OBJLIST_INIT;
    size_t json_bytes = 0, mem;
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
    printf("%-10s sync %7zu objects: %7.3f s (%9.0f objects/s); handler Adds done after %.3f s\n",
           resource, n, secs(t0, t1), (double)n / secs(t0, t1), secs(t0, kc_now_ns()));

    if (kc_cache_list(kc_informer_cache(inf), &lst) == 0) {
        for (size_t i = 0; i < lst.len; i++) {
            size_t jl;
            kc_obj_json(lst.items[i], &jl);
            json_bytes += jl;
        }
        mem = kc_cache_mem_usage(kc_informer_cache(inf));
        if (lst.len)
            printf("%-10s memory: %.0f bytes/object cached, minified JSON %.0f bytes/object "
                   "(ratio %.2fx); peak RSS %ld MiB (fake server included)\n",
                   resource, (double)mem / (double)lst.len,
                   (double)json_bytes / (double)lst.len, (double)mem / (double)json_bytes,
                   peak_rss_kb() / 1024);
        kc_objlist_free(&lst);
    }

    if (churn > 0) {
        before = atomic_load(&c.n);
        t0 = kc_now_ns();
        kc_fakeapi_churn(e.fa, &l, churn);
        rev = kc_fakeapi_revision(e.fa);
        /* deletes of absent keys are no-ops on the server; count what the
         * informer must see by the revision, and the handler by half */
        if (wait_caught_up(inf, rev, &c, before + churn / 2, 120) == 0) {
            t1 = kc_now_ns();
            kc_informer_state_t st;
            kc_informer_state(inf, &st);
            printf("%-10s events: %zu changes applied+streamed in %.3f s: %9.0f events/s "
                   "end to end (%llu handler calls)\n", resource, churn, secs(t0, t1),
                   (double)churn / secs(t0, t1), atomic_load(&c.n) - before);
        } else {
            printf("%-10s events: did not catch up\n", resource);
        }
    }
out:
    kc_informer_free(inf);
    env_stop(&e);
}

int main(void)
{
    int small = getenv("KC_BENCH_SMALL") != NULL;

    kc_global_init();
    run("configmaps", &kc_res_configmaps, small ? 2000 : 10000, small ? 2000 : 20000);
    run("configmaps", &kc_res_configmaps, small ? 5000 : 100000, 0);
    run("pods", &kc_res_pods, small ? 1000 : 10000, small ? 1000 : 10000);
    kc_global_cleanup();
    return 0;
}
