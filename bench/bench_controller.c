/*
 * bench_controller: reconcile latency under a sustained event rate.
 *
 * An in-process fake API server holds N ConfigMaps; a controller (a SELF
 * source on a ConfigMap informer, 2 workers) runs against it over loopback
 * HTTPS.  Two writer threads update the ConfigMaps round robin at a fixed
 * total rate (default 1,000 updates/s) directly in the server's store
 * (kc_fakeapi_apply_json: no HTTP write in the way), each update carrying
 * its write time (monotonic ns) in an annotation.  Reconcile reads its
 * object from the informer's cache and records now - write time: the
 * latency from the change on the server, through the watch stream,
 * decoding, the cache, the handler and the work queue, to the start of
 * reconcile.  It is an upper bound on "event arrival to reconcile" (it
 * also contains the server's encoding and sending of the event).
 *
 * Prints p50/p99/max and the achieved rate; with KC_BENCH_OUT set, appends
 * records (bench/README.md protocol): reconcile_p50, reconcile_p99 (s),
 * workload "1000-events-per-s".  No assertions.  Knobs: KC_BENCH_RATE,
 * KC_BENCH_SECONDS (default 5), KC_BENCH_OBJECTS (default 1000).
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
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

#define MAX_SAMPLES 2000000

typedef struct bench {
    kc_fakeapi_t *fa;
    kc_client_t *client;
    kc_informer_t *inf;
    double rate;
    int objects;
    uint64_t end_ns;
    atomic_ullong writes, write_errors;
    pthread_mutex_t lock;
    double *lat;
    size_t nlat;
    atomic_int measuring;
} bench_t;

typedef struct writer {
    bench_t *b;
    int id, nwriters;
} writer_t;

static long envl(const char *k, long d)
{
    const char *v = getenv(k);
    return v && *v ? strtol(v, NULL, 10) : d;
}

static kc_result_t reconcile(void *ud, const kc_key_t *key)
{
    bench_t *b = ud;
    uint64_t now = kc_now_ns();
    kc_obj_t *o = NULL;
    char *t = NULL;

    if (!atomic_load(&b->measuring))
        return KC_RESULT_OK;
    if (kc_cache_get(kc_informer_cache(b->inf), key, &o) != 0)
        return KC_RESULT_OK;
    if (kc_obj_annotation(o, "bench/sent", &t) == 0) {
        uint64_t sent = strtoull(t, NULL, 10);
        pthread_mutex_lock(&b->lock);
        if (sent > 0 && now >= sent && b->nlat < MAX_SAMPLES)
            b->lat[b->nlat++] = (double)(now - sent) / 1e9;
        pthread_mutex_unlock(&b->lock);
        free(t);
    }
    kc_obj_unref(o);
    return KC_RESULT_OK;
}

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    bench_t *b = w->b;
    double per = w->nwriters / b->rate * 1e9; /* ns between this writer's writes */
    uint64_t next = kc_now_ns();
    char json[512];
    long i = w->id;

    while (kc_now_ns() < b->end_ns) {
        uint64_t now = kc_now_ns();
        char name[32];
        int rc;

        if (now < next) {
            struct timespec ts = { 0, (long)(next - now) };
            nanosleep(&ts, NULL);
        }
        next += (uint64_t)per;
        snprintf(name, sizeof(name), "cm-%ld", i % b->objects);
        i += w->nwriters;
        snprintf(json, sizeof(json),
                 "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"%s\","
                 "\"namespace\":\"bench\",\"annotations\":{\"bench/sent\":\"%llu\"}},"
                 "\"data\":{\"k\":\"%ld\"}}",
                 name, (unsigned long long)kc_now_ns(), i);
        rc = kc_fakeapi_apply_json(b->fa, "configmaps", json, NULL);
        atomic_fetch_add(rc == 0 ? &b->writes : &b->write_errors, 1);
    }
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void record(const char *name, double v, const char *unit, const char *workload)
{
    const char *out = getenv("KC_BENCH_OUT");
    char line[512];
    int n, fd;

    if (out == NULL || *out == '\0')
        return;
    n = snprintf(line, sizeof(line),
                 "{\"bench\":\"controller\",\"impl\":\"kcache\",\"workload\":\"%s\","
                 "\"name\":\"%s\",\"value\":%.9g,\"unit\":\"%s\",\"run\":%ld}\n",
                 workload, name, v, unit, envl("KC_BENCH_RUN", 1));
    fd = open(out, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0)
        return;
    if (write(fd, line, (size_t)n) != n)
        perror("bench_controller: write");
    close(fd);
}

int main(void)
{
    kc_fakeapi_opts_t fo = KC_FAKEAPI_OPTS_INIT;
    kc_config_opts_t co = KC_CONFIG_OPTS_INIT;
    kc_informer_opts_t io = KC_INFORMER_OPTS_INIT;
    kc_controller_opts_t cto = KC_CONTROLLER_OPTS_INIT;
    kc_source_t src = KC_SOURCE_INIT;
    kc_fakeapi_t *fa = NULL;
    kc_config_t *cfg = NULL;
    kc_informer_factory_t *fac = NULL;
    kc_controller_t *ctl = NULL;
    kc_errbuf_t eb = { 0, "" };
    char dir[] = "/tmp/kc-bench-ctl-XXXXXX", kc[64], workload[64];
    bench_t b;
    writer_t w[2];
    pthread_t wt[2];
    double secs = (double)envl("KC_BENCH_SECONDS", 5);
    int rc = 1;

    memset(&b, 0, sizeof(b));
    pthread_mutex_init(&b.lock, NULL);
    b.rate = (double)envl("KC_BENCH_RATE", 1000);
    b.objects = (int)envl("KC_BENCH_OBJECTS", 1000);
    b.lat = malloc(MAX_SAMPLES * sizeof(double));
    if (b.lat == NULL || b.rate <= 0 || b.objects <= 0 || mkdtemp(dir) == NULL)
        return 1;
    snprintf(kc, sizeof(kc), "%s/kubeconfig", dir);
    snprintf(workload, sizeof(workload), "%.0f-events-per-s", b.rate);
    kc_global_init();
    if (kc_fakeapi_new(&fo, &fa) != 0 || kc_fakeapi_start(fa) != 0 ||
        kc_fakeapi_write_kubeconfig(fa, kc, NULL) != 0 ||
        kc_fakeapi_apply_json(fa, "namespaces", "{\"metadata\":{\"name\":\"bench\"}}", NULL) != 0)
        goto out;
    co.kubeconfig = kc;
    if (kc_config_load(&co, &cfg, &eb) != 0 || kc_client_new(cfg, NULL, &b.client, &eb) != 0)
        goto out;
    b.fa = fa;
    for (int i = 0; i < b.objects; i++) {
        char json[256];
        snprintf(json, sizeof(json),
                 "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"cm-%d\","
                 "\"namespace\":\"bench\"},\"data\":{\"k\":\"0\"}}", i);
        if (kc_fakeapi_apply_json(fa, "configmaps", json, NULL) != 0)
            goto out;
    }
    if (kc_informer_factory_new(b.client, &io, &fac) != 0 ||
        kc_informer_factory_get(fac, &kc_res_configmaps, "bench", NULL, NULL, &b.inf) != 0)
        goto out;
    cto.name = "bench";
    cto.reconcile = reconcile;
    cto.ud = &b;
    cto.workers = 2;
    if (kc_controller_new(&cto, &ctl, &eb) != 0)
        goto out;
    src.informer = b.inf;
    if (kc_controller_watch(ctl, &src) != 0 || kc_informer_factory_start(fac) != 0 ||
        kc_informer_factory_wait_synced(fac, 60000) != 0 || kc_controller_start(ctl) != 0)
        goto out;
    /* let the initial reconciles of every object pass */
    while (kc_workqueue_len(kc_controller_queue(ctl)) > 0)
        usleep(10000);
    atomic_store(&b.measuring, 1);
    b.end_ns = kc_now_ns() + (uint64_t)(secs * 1e9);
    for (int i = 0; i < 2; i++) {
        w[i].b = &b;
        w[i].id = i;
        w[i].nwriters = 2;
        pthread_create(&wt[i], NULL, writer_main, &w[i]);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(wt[i], NULL);
    usleep(500000); /* the last events drain */
    atomic_store(&b.measuring, 0);

    pthread_mutex_lock(&b.lock);
    qsort(b.lat, b.nlat, sizeof(double), cmp_d);
    if (b.nlat > 0) {
        double p50 = b.lat[b.nlat / 2], p99 = b.lat[(size_t)((double)b.nlat * 0.99)];
        double max = b.lat[b.nlat - 1];
        printf("controller: %llu updates in %.1f s (%.0f/s, %llu errors) over %d ConfigMaps, "
               "%zu reconciles measured\n",
               (unsigned long long)atomic_load(&b.writes), secs,
               (double)atomic_load(&b.writes) / secs,
               (unsigned long long)atomic_load(&b.write_errors), b.objects, b.nlat);
        printf("controller: write -> reconcile start latency  p50 %.3f ms  p99 %.3f ms  max %.3f ms"
               "  (target p99 < 5 ms)\n", p50 * 1e3, p99 * 1e3, max * 1e3);
        record("reconcile_p50", p50, "s", workload);
        record("reconcile_p99", p99, "s", workload);
        rc = 0;
    } else {
        fprintf(stderr, "bench_controller: no reconcile measured\n");
    }
    pthread_mutex_unlock(&b.lock);

out:
    if (rc != 0 && eb.msg[0])
        fprintf(stderr, "bench_controller: %s\n", eb.msg);
    if (fac)
        kc_informer_factory_stop(fac);
    if (ctl)
        kc_controller_stop(ctl, 5000000000ull);
    kc_controller_free(ctl);
    kc_informer_factory_free(fac);
    kc_client_free(b.client);
    kc_config_free(cfg);
    kc_fakeapi_free(fa);
    unlink(kc);
    rmdir(dir);
    free(b.lat);
    kc_global_cleanup();
    return rc;
}
