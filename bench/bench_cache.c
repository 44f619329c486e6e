/*
 * bench_cache: the lock-strategy table of issue 2, in the manner of the
 * classic Go comparison of sync.Map, a map under one RWMutex and a sharded
 * map.
 *
 *   (a) global-rw : the real kc_cache with one shard, i.e. one pthread RW lock
 *   (b) sharded   : the real kc_cache with its default 64 shards
 *   (c) mutex     : the same table code with one pthread mutex; this file
 *                   compiles its own copy of cache/kc_cache.c with
 *                   KC_CACHE_BENCH_MUTEX (symbols renamed), so the product
 *                   carries no slow path for it
 *
 * Workloads: 95% get / 5% replace, 50/50, and delete-heavy (50% get, 25%
 * replace, 25% delete).  Key distributions: hot (100 keys), random (100,000
 * keys), cold (every write a key not in the cache: a per-thread pool of
 * fresh keys; its deletes remove the thread's oldest inserted keys; reads go
 * to the 100,000 preloaded keys).  Keys look like real ones
 * ("team-payments-prod-7/app-config-0012345", about 40 bytes).  A get
 * includes releasing the reference.  Objects are built before the clock
 * starts, so the figures are the cache's, not JSON parsing's.
 *
 * Each cell runs KC_BENCH_REPS times (default 3; the three strategies take
 * turns) for KC_BENCH_MS milliseconds (default 120) on 1 and 2 threads and
 * prints the best run's ns/op (per thread) and million ops/s (all
 * threads): on a shared machine the best run is the one least disturbed.
 * No assertions: figures only.
 *
 * With env KC_BENCH_OUT set it also appends records (bench/README.md):
 * per cell, workload "<mix>-<keys>-<N>t", figures "ops_per_s" (all threads)
 * and "ns_per_op" (per thread) with impl kcache (the sharded cache),
 * global-rw and mutex, so the report gives sharded/global ratios; and
 * "bytes_per_object" / "bytes_per_minified_json" per fixture.
 */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kc_cache.h"
#include "kc_common.h"
#include "kc_json.h"
#include "bench_out.h"

/* The mutex flavour: kc_cache.c again, with a mutex per shard and every
 * public symbol renamed so it can sit next to the real one. */
#define KC_CACHE_BENCH_MUTEX 1
#define kc_cache_new mx_cache_new
#define kc_cache_free mx_cache_free
#define kc_cache_add_index mx_cache_add_index
#define kc_cache_get mx_cache_get
#define kc_cache_get_nsname mx_cache_get_nsname
#define kc_cache_add mx_cache_add
#define kc_cache_replace mx_cache_replace
#define kc_cache_take mx_cache_take
#define kc_cache_delete mx_cache_delete
#define kc_objlist_free mx_objlist_free
#define kc_cache_len mx_cache_len
#define kc_cache_list mx_cache_list
#define kc_cache_list_ns mx_cache_list_ns
#define kc_cache_index_query mx_cache_index_query
#define kc_cache_replace_all mx_cache_replace_all
#define kc_cache_mem_overhead mx_cache_mem_overhead
#define kc_cache_mem_usage mx_cache_mem_usage
#include "../cache/kc_cache.c"
#undef kc_cache_new
#undef kc_cache_free
#undef kc_cache_add_index
#undef kc_cache_get
#undef kc_cache_get_nsname
#undef kc_cache_add
#undef kc_cache_replace
#undef kc_cache_take
#undef kc_cache_delete
#undef kc_objlist_free
#undef kc_cache_len
#undef kc_cache_list
#undef kc_cache_list_ns
#undef kc_cache_index_query
#undef kc_cache_replace_all
#undef kc_cache_mem_overhead
#undef kc_cache_mem_usage

/* One interface over both builds. */
typedef struct ops {
    const char *name;
    int (*new_)(const kc_cache_opts_t *, kc_cache_t **);
    void (*free_)(kc_cache_t *);
    int (*get)(kc_cache_t *, const char *, const char *, kc_obj_t **);
    int (*replace)(kc_cache_t *, kc_obj_t *, kc_obj_t **);
    int (*del)(kc_cache_t *, const kc_key_t *);
    unsigned shards;
} ops_t;

static const ops_t strategies[3] = {
    { "global-rw", kc_cache_new, kc_cache_free, kc_cache_get_nsname, kc_cache_replace,
      kc_cache_delete, 1 },
    { "sharded", kc_cache_new, kc_cache_free, kc_cache_get_nsname, kc_cache_replace, kc_cache_delete,
      KC_CACHE_SHARDS_DEFAULT },
    { "mutex", mx_cache_new, mx_cache_free, mx_cache_get_nsname, mx_cache_replace, mx_cache_delete,
      1 },
};

enum { DIST_HOT, DIST_RANDOM, DIST_COLD, NDIST };
static const char *dist_names[NDIST] = { "hot", "random", "cold" };
static const size_t dist_keys[NDIST] = { 100, 100000, 100000 };

typedef struct workload {
    const char *name;
    unsigned read_pct, write_pct; /* rest: delete */
} workload_t;

static const workload_t workloads[] = {
    { "95r/5w", 95, 5 },
    { "50r/50w", 50, 50 },
    { "50r/25w/25d", 50, 25 },
    { "100r", 100, 0 },
};
#define NWORK (sizeof(workloads) / sizeof(workloads[0]))

#define MAXT 2
#define COLD_POOL 100000

/* Prebuilt objects and keys for one distribution. */
typedef struct ckey {
    char ns[24];
    char name[40];
} ckey_t; /* one cache line: how a caller would keep hot keys */

typedef struct keyset {
    size_t n;
    ckey_t *ck;        /* for gets */
    kc_key_t *keys;    /* for deletes */
    kc_obj_t **v[2];   /* two versions per key, writes alternate */
} keyset_t;

static keyset_t sets[NDIST];
static keyset_t cold_pool[MAXT];

static kc_obj_t *make_obj(const char *ns, const char *name, unsigned rv)
{
    char buf[512];
    int n = snprintf(buf, sizeof(buf),
                     "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"%s\","
                     "\"namespace\":\"%s\",\"uid\":\"6f1c2f0e-3d1b-4a53-9a55-%012u\","
                     "\"resourceVersion\":\"%u\",\"labels\":{\"app\":\"web\"}},"
                     "\"data\":{\"k\":\"v\"}}",
                     name, ns, rv, rv);
    kc_obj_t *o = NULL;
    kc_errbuf_t eb;
    if (kc_obj_new(buf, (size_t)n, NULL, &o, &eb) != 0) {
        fprintf(stderr, "kc_obj_new: %s\n", eb.msg);
        exit(1);
    }
    return o;
}

static void build_set(keyset_t *s, size_t n, const char *prefix)
{
    s->n = n;
    s->keys = calloc(n, sizeof(*s->keys));
    s->ck = aligned_alloc(64, n * sizeof(*s->ck));
    s->v[0] = calloc(n, sizeof(kc_obj_t *));
    s->v[1] = calloc(n, sizeof(kc_obj_t *));
    if (!s->keys || !s->ck || !s->v[0] || !s->v[1])
        exit(1);
    for (size_t i = 0; i < n; i++) {
        char ns[64], name[64];
        snprintf(ns, sizeof(ns), "team-payments-prod-%zu", i % 16);
        snprintf(name, sizeof(name), "%s-config-%07zu", prefix, i);
        if (kc_key_init(&s->keys[i], ns, name) != 0)
            exit(1);
        snprintf(s->ck[i].ns, sizeof(s->ck[i].ns), "%.23s", ns);
        snprintf(s->ck[i].name, sizeof(s->ck[i].name), "%.39s", name);
        s->v[0][i] = make_obj(ns, name, 1);
        s->v[1][i] = make_obj(ns, name, 2);
    }
}

static void free_set(keyset_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        kc_obj_unref(s->v[0][i]);
        kc_obj_unref(s->v[1][i]);
    }
    free(s->keys);
    free(s->ck);
    free(s->v[0]);
    free(s->v[1]);
}

typedef struct run {
    const ops_t *ops;
    kc_cache_t *c;
    const workload_t *wl;
    int dist;
    int tid;
    atomic_int *go;
    uint64_t ms;
    uint64_t nops;
    uint64_t ns;
} run_t;

static inline uint64_t xs(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void *worker(void *arg)
{
    run_t *r = arg;
    const ops_t *op = r->ops;
    keyset_t *ks = &sets[r->dist];
    keyset_t *cold = &cold_pool[r->tid];
    uint64_t seed = 0x9e3779b97f4a7c15ULL * (uint64_t)(r->tid + 1);
    size_t cold_next = 0, cold_oldest = 0;
    uint64_t n = 0;

    while (!atomic_load_explicit(r->go, memory_order_acquire))
        ;
    uint64_t start = kc_now_ns(), end = start + r->ms * 1000000ULL, now = start;
    while (now < end) {
        for (int batch = 0; batch < 256; batch++) {
            uint64_t x = xs(&seed);
            unsigned pct = (unsigned)(x % 100);
            size_t k = (size_t)((x >> 8) % ks->n);
            if (pct < r->wl->read_pct) {
                kc_obj_t *o = NULL;
                if (op->get(r->c, ks->ck[k].ns, ks->ck[k].name, &o) == 0)
                    kc_obj_unref(o);
            } else if (pct < r->wl->read_pct + r->wl->write_pct) {
                if (r->dist == DIST_COLD) {
                    size_t i = cold_next++ % cold->n;
                    op->replace(r->c, cold->v[0][i], NULL);
                } else {
                    op->replace(r->c, ks->v[(x >> 40) & 1][k], NULL);
                }
            } else {
                if (r->dist == DIST_COLD) {
                    if (cold_oldest < cold_next)
                        op->del(r->c, &cold->keys[cold_oldest++ % cold->n]);
                } else {
                    op->del(r->c, &ks->keys[k]);
                }
            }
        }
        n += 256;
        now = kc_now_ns();
    }
    r->nops = n;
    r->ns = now - start;
    return NULL;
}

typedef struct cell {
    double ns_op, mops;
} cell_t;

static cell_t run_cell(const ops_t *op, const workload_t *wl, int dist, int threads,
                       uint64_t ms)
{
    kc_cache_opts_t o = KC_CACHE_OPTS_INIT;
    kc_cache_t *c = NULL;
    o.shards = op->shards;
    if (op->new_(&o, &c) != 0)
        exit(1);
    keyset_t *ks = &sets[dist];
    for (size_t i = 0; i < ks->n; i++)
        op->replace(c, ks->v[0][i], NULL);

    pthread_t th[MAXT];
    run_t r[MAXT];
    atomic_int go;
    atomic_init(&go, 0);
    for (int t = 0; t < threads; t++) {
        r[t] = (run_t){ op, c, wl, dist, t, &go, ms, 0, 0 };
        if (pthread_create(&th[t], NULL, worker, &r[t]) != 0)
            exit(1);
    }
    atomic_store_explicit(&go, 1, memory_order_release);
    uint64_t total = 0, maxns = 0, sumns = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        total += r[t].nops;
        sumns += r[t].ns;
        if (r[t].ns > maxns)
            maxns = r[t].ns;
    }
    op->free_(c);
    cell_t cell;
    cell.ns_op = (double)sumns / (double)total;      /* per-thread latency */
    cell.mops = (double)total / (double)maxns * 1e3; /* all threads, ops per µs */
    return cell;
}

/* bytes per object of a fixture, key and indexes included */
static char *read_fixture(const char *name, size_t *len)
{
    static const char *dirs[] = { "../shared/fixtures/api-testdata" };
    char path[512];
    const char *env = getenv("KC_FIXTURES");
    for (int i = -1; i < 1; i++) {
        const char *d = i < 0 ? env : dirs[i];
        if (!d)
            continue;
        snprintf(path, sizeof(path), "%s/%s", d, name);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *b = malloc((size_t)n + 1);
        if (!b || fread(b, 1, (size_t)n, f) != (size_t)n)
            exit(1);
        fclose(f);
        b[n] = '\0';
        *len = (size_t)n;
        return b;
    }
    return NULL;
}

static void bytes_per_object(const char *file, int keep_mf, size_t n)
{
    size_t len;
    char *raw = read_fixture(file, &len);
    if (!raw) {
        printf("  %-24s (fixture not found)\n", file);
        return;
    }
    cJSON *root = cJSON_ParseWithLength(raw, len);
    char *min = cJSON_PrintUnformatted(root);
    size_t minlen = strlen(min);
    cJSON *md = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    kc_cache_t *c = NULL;
    kc_cache_new(NULL, &c);
    size_t stored = 0;
    for (size_t i = 0; i < n; i++) {
        char ns[32], name[64];
        snprintf(ns, sizeof(ns), "team-%zu", i % 10);
        snprintf(name, sizeof(name), "app-config-%06zu", i);
        cJSON_ReplaceItemInObjectCaseSensitive(md, "name", cJSON_CreateString(name));
        cJSON_ReplaceItemInObjectCaseSensitive(md, "namespace", cJSON_CreateString(ns));
        char *j = cJSON_PrintUnformatted(root);
        kc_obj_opts_t oo = KC_OBJ_OPTS_INIT;
        oo.keep_managed_fields = keep_mf;
        kc_obj_t *o = NULL;
        if (kc_obj_new(j, strlen(j), &oo, &o, NULL) != 0)
            exit(1);
        stored = kc_obj_json_len(o);
        kc_cache_add(c, o);
        kc_obj_unref(o);
        cJSON_free(j);
    }
    double per = (double)kc_cache_mem_usage(c) / (double)n;
    printf("  %-24s %-22s minified %6zu B  stored %6zu B  in cache %8.0f B/object "
           "(%.3fx minified, %.3fx stored)\n",
           file, keep_mf ? "managedFields kept" : "default (no mgdFields)", minlen, stored, per,
           per / (double)minlen, per / (double)stored);
    {
        char wl[96];
        snprintf(wl, sizeof(wl), "%s%s", strstr(file, "Pod") ? "pod" : "configmap",
                 keep_mf ? "-managedfields" : "");
        bench_record("cache", NULL, wl, "bytes_per_object", per, "bytes");
        bench_record("cache", NULL, wl, "cached_per_minified", per / (double)minlen, "x");
    }
    kc_cache_free(c);
    cJSON_free(min);
    cJSON_Delete(root);
    free(raw);
}

/* kc_json throughput (validate a whole document) and kc_obj_new rate. */
static void json_speed(const char *file)
{
    size_t len;
    char *raw = read_fixture(file, &len);
    if (!raw)
        return;
    kc_json_span_t v;
    kc_json_err_t e;
    char *min = malloc(len);
    if (!min || kc_json_parse_doc(raw, len, &v, &e) != 0)
        exit(1);
    size_t mlen = kc_json_minify(v, min);
    const char *bufs[2] = { raw, min };
    size_t lens[2] = { len, mlen };
    double gbs[2];
    for (int k = 0; k < 2; k++) {
        uint64_t iters = 0, t0 = kc_now_ns(), t1;
        do {
            for (int i = 0; i < 64; i++)
                if (kc_json_parse_doc(bufs[k], lens[k], &v, &e) != 0)
                    exit(1);
            iters += 64;
            t1 = kc_now_ns();
        } while (t1 - t0 < 200000000ULL);
        gbs[k] = (double)lens[k] * (double)iters / (double)(t1 - t0);
    }
    /* the fixtures' namespace "namespaceValue" is not a DNS label: lower-case
     * it in place (same length) so kc_obj_new accepts the object */
    for (char *p = raw; (p = strstr(p, "namespaceValue")) != NULL; p++)
        p[9] = 'v';
    uint64_t n = 0, t0 = kc_now_ns(), t1;
    do {
        kc_obj_t *o = NULL;
        if (kc_obj_new(raw, len, NULL, &o, NULL) != 0)
            break; /* fixture names may not validate: skip the figure */
        kc_obj_unref(o);
        n++;
        t1 = kc_now_ns();
    } while (t1 - t0 < 200000000ULL);
    t1 = kc_now_ns();
    printf("  %-24s kc_json validate: %.2f GB/s as served (%zu B), %.2f GB/s minified (%zu B)",
           file, gbs[0], len, gbs[1], mlen);
    if (n)
        printf("; kc_obj_new %.1f us/object", (double)(t1 - t0) / (double)n / 1e3);
    printf("\n");
    free(min);
    free(raw);
}

int main(int argc, char **argv)
{
    /* optional filters: a workload name and a key distribution */
    const char *fw = argc > 1 ? argv[1] : NULL, *fd = argc > 2 ? argv[2] : NULL;
    const char *env = getenv("KC_BENCH_MS");
    uint64_t ms = env ? strtoull(env, NULL, 10) : 120;
    const char *renv = getenv("KC_BENCH_REPS");
    int reps = renv ? atoi(renv) : 3;
    cell_t res[3][NWORK][NDIST][MAXT];

    if (ms == 0)
        ms = 120;
    if (reps < 1)
        reps = 1;
    build_set(&sets[DIST_HOT], dist_keys[DIST_HOT], "hot");
    build_set(&sets[DIST_RANDOM], dist_keys[DIST_RANDOM], "app");
    sets[DIST_COLD] = sets[DIST_RANDOM]; /* reads go to the preloaded keys */
    for (int t = 0; t < MAXT; t++) {
        char p[16];
        snprintf(p, sizeof(p), "cold%d", t);
        build_set(&cold_pool[t], COLD_POOL, p);
    }
    printf("kcache cache benchmark: best of %d runs of %llu ms per cell, key e.g. "
           "\"team-payments-prod-7/app-config-0012345\"\n", reps, (unsigned long long)ms);
    printf("ns/op = per-thread time per operation; Mops/s = all threads together\n\n");
    printf("%-12s %-7s %-4s | %-22s | %-22s | %-22s | %s\n", "workload", "keys", "thr",
           "(a) global RW lock", "(b) sharded RW (64)", "(c) one mutex", "b/a");
    printf("%-12s %-7s %-4s | %9s %12s | %9s %12s | %9s %12s |\n", "", "", "", "ns/op", "Mops/s",
           "ns/op", "Mops/s", "ns/op", "Mops/s");
    for (size_t w = 0; w < NWORK; w++) {
        for (int d = 0; d < NDIST; d++) {
            if (workloads[w].read_pct == 100 && d == DIST_COLD)
                continue;
            if ((fw && strcmp(fw, workloads[w].name) != 0) || (fd && strcmp(fd, dist_names[d]) != 0))
                continue;
            for (int t = 1; t <= MAXT; t++) {
                for (int s = 0; s < 3; s++)
                    res[s][w][d][t - 1].mops = 0;
                for (int r = 0; r < reps; r++) {
                    for (int s = 0; s < 3; s++) {
                        cell_t cl = run_cell(&strategies[s], &workloads[w], d, t, ms);
                        if (cl.mops > res[s][w][d][t - 1].mops)
                            res[s][w][d][t - 1] = cl;
                    }
                }
                cell_t *a = &res[0][w][d][t - 1], *b = &res[1][w][d][t - 1],
                       *m = &res[2][w][d][t - 1];
                printf("%-12s %-7s %-4d | %9.1f %12.2f | %9.1f %12.2f | %9.1f %12.2f | %5.2fx\n",
                       workloads[w].name, dist_names[d], t, a->ns_op, a->mops, b->ns_op, b->mops,
                       m->ns_op, m->mops, b->mops / a->mops);
                fflush(stdout);
                {
                    static const char *impl[3] = { "global-rw", "kcache", "mutex" };
                    char wl[64];
                    snprintf(wl, sizeof(wl), "%s-%s-%dt", workloads[w].name, dist_names[d], t);
                    for (int s = 0; s < 3; s++) {
                        cell_t *x = &res[s][w][d][t - 1];
                        bench_record("cache", impl[s], wl, "ops_per_s", x->mops * 1e6, "ops/s");
                        bench_record("cache", impl[s], wl, "ns_per_op", x->ns_op, "ns");
                    }
                }
            }
        }
    }

    if (fw || fd)
        return 0;
    printf("\nTargets (2 threads, 95%% reads): sharded vs global RW on random keys %.2fx "
           "(target >= 1.8x), on hot keys %.2fx (target >= 3x);\n",
           res[1][0][DIST_RANDOM][1].mops / res[0][0][DIST_RANDOM][1].mops,
           res[1][0][DIST_HOT][1].mops / res[0][0][DIST_HOT][1].mops);
    printf("  sharded get+release, 2 threads, random keys: %.2f M/s at 95%% reads "
           "(%.2f M gets/s), %.2f M/s at 100%% reads (target >= 3.5 M/s)\n",
           res[1][0][DIST_RANDOM][1].mops, res[1][0][DIST_RANDOM][1].mops * 0.95,
           res[1][3][DIST_RANDOM][1].mops);

    printf("\nBytes per object (key, hash table and namespace index included; allocator "
           "overhead counted; N objects in 10 namespaces, 64 shards):\n");
    bytes_per_object("core.v1.ConfigMap.json", 0, 5000);
    bytes_per_object("core.v1.ConfigMap.json", 1, 5000);
    bytes_per_object("core.v1.Pod.json", 0, 500);
    bytes_per_object("core.v1.Pod.json", 1, 500);

    printf("\nJSON scanning (single thread):\n");
    json_speed("core.v1.ConfigMap.json");
    json_speed("core.v1.Pod.json");
    json_speed("apps.v1.Deployment.json");

    for (int d = 0; d < NDIST; d++)
        if (d != DIST_COLD)
            free_set(&sets[d]);
    for (int t = 0; t < MAXT; t++)
        free_set(&cold_pool[t]);
    return 0;
}
