/*
 * bench_apply: the informer's per-event JSON and cache work without the
 * network, for repeatable measurements (wall time here, instruction
 * counts under `valgrind --tool=callgrind`).
 *
 * Setup: an in-process fake API server is preloaded with N ConfigMaps (or
 * Pods), listed into a cache, then M churn changes are applied and one
 * watch from the list's revision captures the stream the server sends for
 * them.  Measured: the captured stream fed through a kc_watch_decoder in
 * 64 KiB chunks whose callback does what the informer's two threads do per
 * live event: build the object straight from the decoder's bytes
 * (kc_obj_new, with kc_obj_opts_t.prevalidated and the decoder's notes on
 * the metadata, kc_watch_event_t.meta, when the decoder says the bytes are
 * validated and minified, as the informer does), and store it
 * (kc_cache_replace or kc_cache_take).  Next to it: bare cJSON_Parse of the
 * same objects, the yardstick of issue 5.
 *
 * Prints ns per event for each stage; no assertions.  Env:
 * KC_BENCH_RESOURCE (configmaps | pods, default configmaps), KC_BENCH_N
 * (preload, default 10000), KC_BENCH_CHURN (default 20000), KC_BENCH_REPS
 * (passes over the stream, default 5; use 1 under callgrind),
 * KC_BENCH_NO_PREVALIDATED=1 builds every object with full validation,
 * KC_BENCH_NO_META=1 without the decoder's metadata notes.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fakeapi.h"
#include "kc_cache.h"
#include "kc_client.h"
#include "kc_json.h"

typedef struct capture {
    char *data;
    size_t len, cap;
    size_t events, want;
    char **objs;       /* each event's object, for the cJSON reference */
    size_t *olen;
} capture_t;

static void cap_put(capture_t *c, const char *p, size_t n)
{
    if (c->len + n > c->cap) {
        size_t nc = c->cap ? c->cap * 2 : (size_t)1 << 20;
        while (nc < c->len + n)
            nc *= 2;
        c->data = realloc(c->data, nc);
        if (!c->data)
            abort();
        c->cap = nc;
    }
    memcpy(c->data + c->len, p, n);
    c->len += n;
}

static int capture_cb(void *ud, const kc_watch_event_t *ev)
{
    capture_t *c = ud;
    char head[64];
    int n;

    if (ev->type == KC_WATCH_BOOKMARK || ev->type == KC_WATCH_ERROR)
        return 0;
    n = snprintf(head, sizeof(head), "{\"type\":\"%s\",\"object\":", kc_watch_type_name(ev->type));
    cap_put(c, head, (size_t)n);
    cap_put(c, ev->object, ev->object_len);
    cap_put(c, "}\n", 2);
    c->objs[c->events] = malloc(ev->object_len);
    if (!c->objs[c->events])
        abort();
    memcpy(c->objs[c->events], ev->object, ev->object_len);
    c->olen[c->events] = ev->object_len;
    c->events++;
    return c->events >= c->want ? 1 : 0;
}

typedef struct apply {
    kc_cache_t *cache;
    int use_flag, use_meta;
    size_t events, prevalidated, failed;
} apply_t;

static int apply_cb(void *ud, const kc_watch_event_t *ev)
{
    apply_t *a = ud;
    kc_obj_opts_t oo = KC_OBJ_OPTS_INIT;
    kc_obj_t *obj = NULL, *old = NULL;
    kc_key_t k;

    if (a->use_flag && (ev->flags & KC_WATCH_OBJECT_MINIFIED)) {
        oo.prevalidated = 1;
        if (a->use_meta)
            oo.meta = ev->meta;
        a->prevalidated++;
    }
    if (kc_obj_new(ev->object, ev->object_len, &oo, &obj, NULL) != 0) {
        a->failed++;
        return 0;
    }
    if (ev->type == KC_WATCH_DELETED) {
        kc_obj_key(obj, &k);
        if (kc_cache_take(a->cache, &k, &old) != 0)
            old = NULL;
    } else if (kc_cache_replace(a->cache, obj, &old) != 0) {
        a->failed++;
    }
    kc_obj_unref(old);
    kc_obj_unref(obj);
    a->events++;
    return 0;
}

static int noop_cb(void *ud, const kc_watch_event_t *ev)
{
    (void)ev;
    ((apply_t *)ud)->events++;
    return 0;
}

static __attribute__((noinline)) double feed(const capture_t *c, kc_watch_cb cb, apply_t *a)
{
    kc_watch_decoder_t *d = NULL;
    uint64_t t0 = kc_now_ns();

    if (kc_watch_decoder_new(0, cb, a, &d) != 0)
        abort();
    for (size_t off = 0; off < c->len; off += 65536) {
        size_t n = c->len - off < 65536 ? c->len - off : 65536;
        kc_errbuf_t eb = { 0, "" };
        if (kc_watch_decoder_feed(d, c->data + off, n, &eb) != 0) {
            fprintf(stderr, "bench_apply: decoder: %s\n", eb.msg);
            abort();
        }
    }
    kc_watch_decoder_free(d);
    return (double)(kc_now_ns() - t0);
}

/* Separate entry points for the two passes, so that callgrind's inclusive
 * counts (--toggle-collect=bench_decode_pass or bench_apply_pass) give the
 * decoder alone and decode+build+store per event. */
static __attribute__((noinline)) double bench_decode_pass(const capture_t *c, apply_t *a)
{
    return feed(c, noop_cb, a);
}

static __attribute__((noinline)) double bench_apply_pass(const capture_t *c, apply_t *a)
{
    return feed(c, apply_cb, a);
}

static long env_long(const char *name, long def)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : def;
}

int main(void)
{
    const char *resource = getenv("KC_BENCH_RESOURCE") ? getenv("KC_BENCH_RESOURCE") : "configmaps";
    const kc_resource_t *res = strcmp(resource, "pods") == 0 ? &kc_res_pods : &kc_res_configmaps;
    size_t n = (size_t)env_long("KC_BENCH_N", 10000);
    size_t churn = (size_t)env_long("KC_BENCH_CHURN", 20000);
    long reps = env_long("KC_BENCH_REPS", 5);
    int use_flag = getenv("KC_BENCH_NO_PREVALIDATED") == NULL;
    int use_meta = getenv("KC_BENCH_NO_META") == NULL;
    kc_fakeapi_opts_t fo = KC_FAKEAPI_OPTS_INIT;
    kc_fakeapi_load_t l = KC_FAKEAPI_LOAD_INIT;
    kc_config_opts_t co = KC_CONFIG_OPTS_INIT;
    kc_client_opts_t clo = KC_CLIENT_OPTS_INIT;
    kc_cache_opts_t cco = KC_CACHE_OPTS_INIT;
    kc_fakeapi_t *fa = NULL;
    kc_config_t *cfg = NULL;
    kc_client_t *cl = NULL;
    kc_buf_t body;
    kc_status_t st;
    kc_errbuf_t eb = { 0, "" };
    capture_t c;
    apply_t a;
    char dir[64] = "/tmp/kc-bench-apply-XXXXXX", kcp[128], rv[32];
    double best_apply = 0, best_dec = 0, best_cj = 0;

    kc_global_init();
    memset(&c, 0, sizeof(c));
    memset(&a, 0, sizeof(a));
    memset(&body, 0, sizeof(body));
    kc_status_clear(&st);
    fo.history_window = 200000;
    if (kc_fakeapi_new(&fo, &fa) != 0 || kc_fakeapi_start(fa) != 0 || !mkdtemp(dir))
        return 1;
    snprintf(kcp, sizeof(kcp), "%s/kubeconfig", dir);
    if (kc_fakeapi_write_kubeconfig(fa, kcp, NULL) != 0)
        return 1;
    co.kubeconfig = kcp;
    clo.qps = 0;
    if (kc_config_load(&co, &cfg, &eb) != 0 || kc_client_new(cfg, &clo, &cl, &eb) != 0) {
        fprintf(stderr, "bench_apply: %s\n", eb.msg);
        return 1;
    }
    l.resource = resource;
    l.namespaces = 10;
    if (kc_fakeapi_preload(fa, &l, n) != 0)
        return 1;

    /* the list, into the cache every pass starts from */
    cco.name_rule = KC_NAME_PATH_SEGMENT;
    if (kc_cache_new(&cco, &a.cache) != 0)
        return 1;
    if (kc_client_list(cl, res, NULL, NULL, &body, &st) != 0) {
        fprintf(stderr, "bench_apply: list failed\n");
        return 1;
    }
    {
        kc_json_span_t doc, items, it;
        kc_json_iter_t iter;
        if (kc_json_parse_doc(body.data, body.len, &doc, NULL) != 0 ||
            kc_json_obj_get(doc, "items", &items) != 0 || kc_json_iter_init(&iter, items) != 0)
            return 1;
        while (kc_json_iter_next(&iter, NULL, &it) == 1) {
            kc_obj_t *o;
            if (kc_obj_new(it.p, it.len, NULL, &o, NULL) == 0) {
                kc_cache_add(a.cache, o);
                kc_obj_unref(o);
            }
        }
    }
    snprintf(rv, sizeof(rv), "%llu", (unsigned long long)kc_fakeapi_revision(fa));
    kc_fakeapi_churn(fa, &l, churn);
    c.want = churn;
    c.objs = calloc(churn, sizeof(*c.objs));
    c.olen = calloc(churn, sizeof(*c.olen));
    {
        kc_watch_opts_t wo = KC_WATCH_OPTS_INIT;
        wo.resource_version = rv;
        wo.allow_bookmarks = 0;
        kc_client_watch(cl, res, NULL, &wo, capture_cb, &c, &st);
    }
    printf("bench_apply: %s: %zu cached, captured %zu events, %zu bytes (%.0f bytes/event)\n",
           resource, kc_cache_len(a.cache), c.events, c.len,
           c.events ? (double)c.len / (double)c.events : 0.0);
    if (c.events == 0)
        return 1;
    if (getenv("KC_BENCH_DUMP"))
        printf("%.*s", (int)(strchr(c.data, '\n') - c.data + 1), c.data);

    a.use_flag = use_flag;
    a.use_meta = use_meta;
    for (long r = 0; r < reps; r++) {
        double t;
        a.events = 0;
        t = bench_decode_pass(&c, &a) / (double)c.events;
        if (r == 0 || t < best_dec)
            best_dec = t;
        a.events = a.prevalidated = a.failed = 0;
        t = bench_apply_pass(&c, &a) / (double)c.events;
        if (r == 0 || t < best_apply)
            best_apply = t;
        uint64_t t0 = kc_now_ns();
        for (size_t i = 0; i < c.events; i++)
            cJSON_Delete(cJSON_ParseWithLength(c.objs[i], c.olen[i]));
        t = (double)(kc_now_ns() - t0) / (double)c.events;
        if (r == 0 || t < best_cj)
            best_cj = t;
    }
    printf("bench_apply: decoder alone      %7.0f ns/event (best of %ld)\n", best_dec, reps);
    printf("bench_apply: decode+build+store %7.0f ns/event (%zu of %zu prevalidated, %zu failed)\n",
           best_apply, a.prevalidated, a.events, a.failed);
    printf("bench_apply: bare cJSON_Parse   %7.0f ns/object (%.2fx of decode+build+store)\n",
           best_cj, best_cj / best_apply);

    for (size_t i = 0; i < c.events; i++)
        free(c.objs[i]);
    free(c.objs);
    free(c.olen);
    free(c.data);
    kc_cache_free(a.cache);
    kc_buf_free(&body);
    kc_client_free(cl);
    kc_config_free(cfg);
    kc_fakeapi_free(fa);
    unlink(kcp);
    rmdir(dir);
    kc_global_cleanup();
    return 0;
}
