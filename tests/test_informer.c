/*
 * Tests of informer/: backoff, relist budget, the per-handler processor
 * (coalescing rules, bound, ordering), the relist diff, and against the
 * fake API server: list+watch, 410 relists, faults, streaming lists,
 * late handlers, resync, the factory, and the convergence test (a seeded
 * random workload under faults; the cache must equal the server and each
 * handler's per-key history must replay to the same final state).
 *
 * Environment: KC_INFORMER_SEEDS=N runs N convergence seeds (50 by
 * default, 12 under sanitizers; a soak is e.g. KC_INFORMER_SEEDS=2000),
 * KC_INFORMER_SEED_FIRST=S starts at seed S (to replay one failure),
 * KC_TEST_VERBOSE=1 logs the informer and dumps handler events on failure,
 * KC_TEST_PROGRESS=1 prints each seed's timings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "informer_int.h"
#include "kc_json.h"
#include "fakeapi.h"

/* ------------------------------------------------------------ helpers */

static int sanitizer(void)
{
    const char *s = getenv("KC_SANITIZER");
    return s != NULL && *s != '\0';
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static kc_obj_t *mkobj(const char *ns, const char *name, const char *rv)
{
    char json[512];
    kc_obj_t *o = NULL;
    int n;

    if (ns && *ns)
        n = snprintf(json, sizeof(json),
                     "{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"%s\","
                     "\"namespace\":\"%s\",\"resourceVersion\":\"%s\"},\"data\":{\"k\":\"v\"}}",
                     name, ns, rv);
    else
        n = snprintf(json, sizeof(json),
                     "{\"metadata\":{\"name\":\"%s\",\"resourceVersion\":\"%s\"}}", name, rv);
    assert_int_equal(kc_obj_new(json, (size_t)n, NULL, &o, NULL), 0);
    return o;
}

/* A recording handler: one line per event, and a gate that can hold the
 * first callback until released (so that later events pile up). */
#define REC_MAX 200000
typedef struct rec {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int gate_closed;
    int in_gate;
    size_t n;
    char **lines;
} rec_t;

static void rec_init(rec_t *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->lines = calloc(REC_MAX, sizeof(char *));
    assert_non_null(r->lines);
}

static void rec_free(rec_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->lines[i]);
    free(r->lines);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
}

static void rec_push(rec_t *r, const char *fmt, ...) KC_PRINTF(2, 3);
static void rec_push(rec_t *r, const char *fmt, ...)
{
    char buf[600];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&r->mu);
    if (r->n < REC_MAX)
        r->lines[r->n++] = strdup(buf);
    while (r->gate_closed) {
        r->in_gate = 1;
        pthread_cond_broadcast(&r->cv);
        pthread_cond_wait(&r->cv, &r->mu);
    }
    r->in_gate = 0;
    pthread_mutex_unlock(&r->mu);
}

static void rec_wait_in_gate(rec_t *r)
{
    pthread_mutex_lock(&r->mu);
    while (!r->in_gate)
        pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
}

static void rec_open_gate(rec_t *r)
{
    pthread_mutex_lock(&r->mu);
    r->gate_closed = 0;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void on_add(void *ud, kc_obj_t *o)
{
    rec_push(ud, "A %s/%s %s", kc_obj_namespace(o), kc_obj_name(o), kc_obj_resource_version(o));
}

static void on_update(void *ud, kc_obj_t *old, kc_obj_t *o)
{
    rec_push(ud, "U %s/%s %s>%s", kc_obj_namespace(o), kc_obj_name(o),
             kc_obj_resource_version(old), kc_obj_resource_version(o));
}

static void on_delete(void *ud, kc_obj_t *o, int unknown)
{
    rec_push(ud, "D %s/%s %s%s", kc_obj_namespace(o), kc_obj_name(o),
             kc_obj_resource_version(o), unknown ? " unknown" : "");
}

static kc_handler_t rec_handler(rec_t *r)
{
    kc_handler_t h = { on_add, on_update, on_delete, r };
    return h;
}

/* Join the recorded lines with '|' for one comparison. */
static char *rec_join(rec_t *r)
{
    size_t len = 1;
    char *s;

    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++)
        len += strlen(r->lines[i]) + 1;
    s = calloc(1, len);
    for (size_t i = 0; i < r->n; i++) {
        if (i)
            strcat(s, "|");
        strcat(s, r->lines[i]);
    }
    pthread_mutex_unlock(&r->mu);
    return s;
}

/* ------------------------------------------------------------ backoff */

static void test_backoff_growth_cap_reset(void **state)
{
    kc__backoff_t b;
    uint64_t now = 1000000000ull, d, expect = 800000000ull;

    (void)state;
    kc__backoff_init(&b, 800, 30000, 120000, 42);
    for (int i = 0; i < 12; i++) {
        d = kc__backoff_next(&b, now);
        /* uniform in (expect/2, expect] */
        assert_true(d > expect / 2);
        assert_true(d <= expect);
        expect = expect * 2 > 30000000000ull ? 30000000000ull : expect * 2;
        now += d;
    }
    assert_int_equal(b.cur_ns, 30000000000ull);
    /* failures keep coming within the stable period: stays at max */
    d = kc__backoff_next(&b, now + 1000000000ull);
    assert_true(d > 15000000000ull && d <= 30000000000ull);
    now += 1000000000ull;
    /* two minutes without failure: starts from the initial delay again */
    d = kc__backoff_next(&b, now + 120000000000ull);
    assert_true(d > 400000000ull && d <= 800000000ull);
    kc__backoff_reset(&b);
    d = kc__backoff_next(&b, 5);
    assert_true(d > 400000000ull && d <= 800000000ull);
}

static void test_backoff_jitter_spreads(void **state)
{
    kc__backoff_t a, b;
    int differ = 0;

    (void)state;
    for (uint64_t s = 1; s <= 20; s++) {
        kc__backoff_init(&a, 800, 30000, 120000, s);
        kc__backoff_init(&b, 800, 30000, 120000, s + 1000);
        if (kc__backoff_next(&a, 1) != kc__backoff_next(&b, 1))
            differ++;
    }
    assert_true(differ >= 18);
    /* defaults when given nonsense */
    kc__backoff_init(&a, 0, 0, 0, 0);
    assert_int_equal(a.initial_ns, 800000000ull);
    assert_int_equal(a.max_ns, 800000000ull);
}

/* ------------------------------------------------------------ budget */

static void test_relist_budget(void **state)
{
    kc_relist_budget_t *b;
    uint64_t t = 1000, w;

    (void)state;
    assert_int_equal(kc_relist_budget_new(0, 1, &b), -EINVAL);
    assert_int_equal(kc_relist_budget_new(1, 0.5, &b), -EINVAL);
    assert_int_equal(kc_relist_budget_new(2.0, 3, &b), 0);
    /* burst of 3 free, then one every 0.5 s */
    assert_int_equal(kc__relist_budget_reserve_at(b, t), 0);
    assert_int_equal(kc__relist_budget_reserve_at(b, t), 0);
    assert_int_equal(kc__relist_budget_reserve_at(b, t), 0);
    w = kc__relist_budget_reserve_at(b, t);
    assert_true(w >= 499000000ull && w <= 501000000ull);
    w = kc__relist_budget_reserve_at(b, t);
    assert_true(w >= 999000000ull && w <= 1001000000ull);
    /* after 10 s the bucket is full again, never more than burst */
    t += 10000000000ull;
    for (int i = 0; i < 3; i++)
        assert_int_equal(kc__relist_budget_reserve_at(b, t), 0);
    assert_true(kc__relist_budget_reserve_at(b, t) > 0);
    assert_true(kc_relist_budget_reserve(NULL) == 0);
    kc_relist_budget_free(b);
    kc_relist_budget_free(NULL);
}

/* ------------------------------------------------------------ processor */

typedef struct proc_fixture {
    rec_t rec;
    kc__proc_t *p;
    kc_obj_t *gate_obj;
} proc_fixture_t;

/* Start a processor whose first delivery (Add of gate/x) blocks. */
static void pf_start(proc_fixture_t *f, size_t backlog)
{
    kc_handler_t h;

    rec_init(&f->rec);
    h = rec_handler(&f->rec);
    assert_int_equal(kc__proc_new(&h, backlog, NULL, &f->p), 0);
    assert_int_equal(kc__proc_start(f->p), 0);
    f->rec.gate_closed = 1;
    f->gate_obj = mkobj("gate", "x", "1");
    assert_int_equal(kc__proc_add(f->p, f->gate_obj), 0);
    rec_wait_in_gate(&f->rec);
}

static void pf_finish(proc_fixture_t *f, const char *expect)
{
    char *got;

    rec_open_gate(&f->rec);
    assert_int_equal(kc__proc_wait_idle(f->p, 5000), 0);
    got = rec_join(&f->rec);
    assert_string_equal(got, expect);
    free(got);
    kc__proc_free(f->p);
    kc_obj_unref(f->gate_obj);
    rec_free(&f->rec);
}

static void test_proc_coalesce_rules(void **state)
{
    struct {
        const char *ops;     /* a:add u:update d:delete (rv increments) */
        const char *expect;
    } cases[] = {
        { "au", "A gate/x 1|A ns/k 3" },                      /* Add, Update -> Add(newest) */
        { "Uu", "A gate/x 1|U ns/k 1>3" },                    /* Update, Update -> Update(a,c) */
        /* the state before a Delete is kept: a handler that maps objects to
         * other keys (owners, a copy's source) must see it */
        { "Ud", "A gate/x 1|U ns/k 1>2|D ns/k 3" },
        { "Uud", "A gate/x 1|U ns/k 1>3|D ns/k 4" },
        { "ad", "A gate/x 1|A ns/k 2|D ns/k 3" },             /* never seen: both */
        { "aud", "A gate/x 1|A ns/k 3|D ns/k 4" },
        { "da", "A gate/x 1|D ns/k 2|A ns/k 3" },             /* Delete, Add: both */
        { "dau", "A gate/x 1|D ns/k 2|A ns/k 4" },
        { "dad", "A gate/x 1|D ns/k 2" },                     /* re-created, re-deleted */
        { "dada", "A gate/x 1|D ns/k 2|A ns/k 5" },
        { "Uda", "A gate/x 1|U ns/k 1>2|D ns/k 3|A ns/k 4" },
        { "Udad", "A gate/x 1|U ns/k 1>2|D ns/k 3" },         /* bounded after a Delete */
        { "D", "A gate/x 1|D ns/k 2 unknown" },               /* relist delete keeps its flag */
        { "R", "A gate/x 1|U ns/k 1>1" },                     /* resync Update(obj,obj) */
    };

    (void)state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        proc_fixture_t f;
        kc_obj_t *prev = mkobj("ns", "k", "1");
        int rv = 1;

        pf_start(&f, 16);
        for (const char *op = cases[c].ops; *op; op++) {
            char rvs[16];
            kc_obj_t *o;
            snprintf(rvs, sizeof(rvs), "%d", ++rv);
            o = mkobj("ns", "k", rvs);
            switch (*op) {
            case 'a': assert_int_equal(kc__proc_add(f.p, o), 0); break;
            case 'u':
            case 'U': assert_int_equal(kc__proc_update(f.p, prev, o), 0); break;
            case 'd': assert_int_equal(kc__proc_delete(f.p, o, 0), 0); break;
            case 'D': assert_int_equal(kc__proc_delete(f.p, o, 1), 0); break;
            case 'R': assert_int_equal(kc__proc_update(f.p, prev, prev), 0); break;
            }
            kc_obj_unref(prev);
            prev = o;
        }
        kc_obj_unref(prev);
        pf_finish(&f, cases[c].expect);
    }
}

/* Same names in different namespaces are different keys. */
static void test_proc_keys_by_namespace(void **state)
{
    proc_fixture_t f;
    kc_obj_t *a = mkobj("team-a", "app", "5"), *b = mkobj("team-b", "app", "6");

    (void)state;
    pf_start(&f, 16);
    assert_int_equal(kc__proc_add(f.p, a), 0);
    assert_int_equal(kc__proc_add(f.p, b), 0);
    assert_int_equal(kc__proc_delete(f.p, a, 0), 0); /* a goes, b stays */
    kc_obj_unref(a);
    kc_obj_unref(b);
    pf_finish(&f, "A gate/x 1|A team-a/app 5|D team-a/app 5|A team-b/app 6");
}

typedef struct pusher {
    kc__proc_t *p;
    kc_obj_t **objs;
    size_t n;
    int rc;
} pusher_t;

static void *push_thread(void *arg)
{
    pusher_t *ps = arg;

    for (size_t i = 0; i < ps->n; i++) {
        ps->rc = kc__proc_add(ps->p, ps->objs[i]);
        if (ps->rc != 0)
            break;
    }
    return NULL;
}

static void test_proc_backlog_bound(void **state)
{
    proc_fixture_t f;
    kc_handler_stats_t st;
    kc_obj_t *objs[6];
    pusher_t ps;
    pthread_t t;
    char name[16];

    (void)state;
    pf_start(&f, 2);
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof(name), "k%d", i);
        objs[i] = mkobj("ns", name, "7");
    }
    ps.p = f.p;
    ps.objs = objs;
    ps.n = 6;
    ps.rc = -1;
    assert_int_equal(pthread_create(&t, NULL, push_thread, &ps), 0);
    /* the pusher must block: 2 pending at most while the handler is held */
    for (int i = 0; i < 200; i++) {
        kc__proc_stats(f.p, &st);
        if (st.blocked > 0)
            break;
        sleep_ms(5);
    }
    kc__proc_stats(f.p, &st);
    assert_true(st.blocked > 0);
    assert_int_equal(st.pending, 2);
    rec_open_gate(&f.rec);
    pthread_join(t, NULL);
    assert_int_equal(ps.rc, 0);
    assert_int_equal(kc__proc_wait_idle(f.p, 5000), 0);
    kc__proc_stats(f.p, &st);
    assert_int_equal(st.pending_hwm, 2);
    assert_int_equal(st.adds, 7);
    assert_int_equal(st.pending, 0);
    for (int i = 0; i < 6; i++)
        kc_obj_unref(objs[i]);
    pf_finish(&f, "A gate/x 1|A ns/k0 7|A ns/k1 7|A ns/k2 7|A ns/k3 7|A ns/k4 7|A ns/k5 7");
}

/* A backlog far larger than the key table's resting size (the processor
 * grows its table to it, and gives it back once the batch is taken): every
 * event is delivered, in order, and so are the events pushed after it,
 * which grow the table anew. */
static void test_proc_large_backlog_drains(void **state)
{
    enum { N = 3000 };
    proc_fixture_t f;
    kc_handler_stats_t st;
    kc_obj_t **v1 = calloc(N, sizeof(*v1)), **v2 = calloc(N, sizeof(*v2));
    char *expect = calloc(1, (size_t)N * 40 + 16), *w;
    char name[16];

    (void)state;
    assert_non_null(v1);
    assert_non_null(v2);
    assert_non_null(expect);
    pf_start(&f, 2 * N);
    w = expect + sprintf(expect, "A gate/x 1");
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "k%d", i);
        v1[i] = mkobj("ns", name, "1");
        assert_int_equal(kc__proc_add(f.p, v1[i]), 0);
        w += sprintf(w, "|A ns/%s 1", name);
    }
    kc__proc_stats(f.p, &st);
    assert_int_equal(st.pending, N);
    rec_open_gate(&f.rec);
    assert_int_equal(kc__proc_wait_idle(f.p, 10000), 0);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "k%d", i);
        v2[i] = mkobj("ns", name, "2");
        assert_int_equal(kc__proc_update(f.p, v1[i], v2[i]), 0);
        w += sprintf(w, "|U ns/%s 1>2", name);
    }
    assert_int_equal(kc__proc_wait_idle(f.p, 10000), 0);
    kc__proc_stats(f.p, &st);
    assert_int_equal(st.adds, N + 1);
    assert_int_equal(st.updates, N);
    assert_int_equal(st.pending, 0);
    assert_true(st.pending_hwm >= N);
    pf_finish(&f, expect);
    for (int i = 0; i < N; i++) {
        kc_obj_unref(v1[i]);
        kc_obj_unref(v2[i]);
    }
    free(v1);
    free(v2);
    free(expect);
}

/* Stopping releases a pusher that waits for room. */
static void test_proc_stop_releases_pusher(void **state)
{
    proc_fixture_t f;
    kc_obj_t *objs[4];
    pusher_t ps;
    pthread_t t;
    kc_handler_stats_t st;
    char name[16];

    (void)state;
    pf_start(&f, 1);
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        objs[i] = mkobj("ns", name, "1");
    }
    ps.p = f.p;
    ps.objs = objs;
    ps.n = 4;
    ps.rc = 0;
    assert_int_equal(pthread_create(&t, NULL, push_thread, &ps), 0);
    do {
        sleep_ms(2);
        kc__proc_stats(f.p, &st);
    } while (st.blocked == 0);
    rec_open_gate(&f.rec); /* lets the held callback return so stop can join */
    kc__proc_stop(f.p);
    pthread_join(t, NULL);
    assert_true(ps.rc == 0 || ps.rc == KC_ESTOPPED);
    assert_int_equal(kc__proc_add(f.p, objs[0]), KC_ESTOPPED);
    for (int i = 0; i < 4; i++)
        kc_obj_unref(objs[i]);
    kc__proc_free(f.p);
    kc_obj_unref(f.gate_obj);
    rec_free(&f.rec);
}

/* ---- per-key replay checker, shared with the informer tests ----
 * Replays a handler's recorded events per key: Add only when absent,
 * Update/Delete only when present (and Update's old RV must be the one the
 * handler has).  Returns the number of violations; fills the final view. */
typedef struct view {
    size_t n, cap;
    char **key;
    char **rv;   /* NULL: absent */
} view_t;

static ssize_t view_find(view_t *v, const char *k)
{
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->key[i], k) == 0)
            return (ssize_t)i;
    return -1;
}

static size_t view_slot(view_t *v, const char *k)
{
    ssize_t i = view_find(v, k);

    if (i >= 0)
        return (size_t)i;
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 64;
        v->key = realloc(v->key, v->cap * sizeof(char *));
        v->rv = realloc(v->rv, v->cap * sizeof(char *));
    }
    v->key[v->n] = strdup(k);
    v->rv[v->n] = NULL;
    return v->n++;
}

static void view_free(view_t *v)
{
    for (size_t i = 0; i < v->n; i++) {
        free(v->key[i]);
        free(v->rv[i]);
    }
    free(v->key);
    free(v->rv);
    memset(v, 0, sizeof(*v));
}

static size_t view_present(view_t *v)
{
    size_t c = 0;

    for (size_t i = 0; i < v->n; i++)
        c += v->rv[i] != NULL;
    return c;
}

static int replay(rec_t *r, view_t *v, int verbose)
{
    int bad = 0;

    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++) {
        char t, key[400], rv[200];
        size_t s;
        if (sscanf(r->lines[i], "%c %399s %199s", &t, key, rv) != 3) {
            bad++;
            continue;
        }
        s = view_slot(v, key);
        if (t == 'A') {
            if (v->rv[s] != NULL) {
                if (verbose)
                    fprintf(stderr, "replay: Add of present key: %s\n", r->lines[i]);
                bad++;
            }
            free(v->rv[s]);
            v->rv[s] = strdup(rv);
        } else if (t == 'U') {
            char *gt = strchr(rv, '>');
            if (v->rv[s] == NULL || gt == NULL ||
                strncmp(v->rv[s], rv, (size_t)(gt - rv)) != 0 ||
                v->rv[s][gt - rv] != '\0') {
                if (verbose)
                    fprintf(stderr, "replay: bad Update (have %s): %s\n",
                            v->rv[s] ? v->rv[s] : "absent", r->lines[i]);
                bad++;
            }
            free(v->rv[s]);
            v->rv[s] = strdup(gt ? gt + 1 : rv);
        } else if (t == 'D') {
            if (v->rv[s] == NULL) {
                if (verbose)
                    fprintf(stderr, "replay: Delete of absent key: %s\n", r->lines[i]);
                bad++;
            }
            free(v->rv[s]);
            v->rv[s] = NULL;
        } else {
            bad++;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return bad;
}

/* A random valid event stream over a few keys, pushed while the handler
 * sleeps at random: the handler's replayed view must equal the model. */
static void test_proc_random_replay(void **state)
{
    int seeds = sanitizer() ? 5 : 30;

    (void)state;
    for (int seed = 1; seed <= seeds; seed++) {
        enum { NK = 12 };
        kc_obj_t *model[NK] = { 0 };
        uint64_t rng = (uint64_t)seed * 7919;
        rec_t rec;
        kc__proc_t *p;
        kc_handler_t h;
        view_t v = { 0 };
        int rv = 1;

        rec_init(&rec);
        h = rec_handler(&rec);
        assert_int_equal(kc__proc_new(&h, 4, NULL, &p), 0);
        assert_int_equal(kc__proc_start(p), 0);
        for (int i = 0; i < 2000; i++) {
            int k = (int)(kc__rand_next(&rng) % NK);
            char name[16], rvs[16];
            kc_obj_t *o;
            snprintf(name, sizeof(name), "k%d", k % 6);
            snprintf(rvs, sizeof(rvs), "%d", ++rv);
            o = mkobj(k < 6 ? "a" : "b", name, rvs);
            if (model[k] == NULL) {
                assert_int_equal(kc__proc_add(p, o), 0);
                model[k] = o;
            } else if (kc__rand_next(&rng) % 3 == 0) {
                assert_int_equal(kc__proc_delete(p, o, (int)(kc__rand_next(&rng) & 1)), 0);
                kc_obj_unref(o);
                kc_obj_unref(model[k]);
                model[k] = NULL;
            } else {
                assert_int_equal(kc__proc_update(p, model[k], o), 0);
                kc_obj_unref(model[k]);
                model[k] = o;
            }
            if (kc__rand_next(&rng) % 100 == 0)
                sleep_ms(1);
        }
        assert_int_equal(kc__proc_wait_idle(p, 10000), 0);
        assert_int_equal(replay(&rec, &v, 1), 0);
        for (int k = 0; k < NK; k++) {
            char key[32];
            ssize_t s;
            snprintf(key, sizeof(key), "%s/k%d", k < 6 ? "a" : "b", k % 6);
            s = view_find(&v, key);
            if (model[k] == NULL) {
                assert_true(s < 0 || v.rv[s] == NULL);
            } else {
                assert_true(s >= 0);
                assert_non_null(v.rv[s]);
                assert_string_equal(v.rv[s], kc_obj_resource_version(model[k]));
                kc_obj_unref(model[k]);
            }
        }
        view_free(&v);
        kc__proc_free(p);
        rec_free(&rec);
    }
}

/* ------------------------------------------------------------ fake API env */

typedef struct env {
    kc_fakeapi_t *fa;
    kc_config_t *cfg;
    kc_client_t *cl;           /* the informer's, user "admin" (token) */
    char dir[64];
    char kubeconfig[128];
} env_t;

static void env_start(env_t *e, const kc_fakeapi_opts_t *fo)
{
    kc_fakeapi_opts_t o = KC_FAKEAPI_OPTS_INIT;
    kc_config_opts_t co = KC_CONFIG_OPTS_INIT;
    kc_client_opts_t clo = KC_CLIENT_OPTS_INIT;
    kc_errbuf_t eb = { 0, "" };
    int rc;

    memset(e, 0, sizeof(*e));
    if (fo)
        o = *fo;
    assert_int_equal(kc_fakeapi_new(&o, &e->fa), 0);
    assert_int_equal(kc_fakeapi_start(e->fa), 0);
    snprintf(e->dir, sizeof(e->dir), "/tmp/kc-inf-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->kubeconfig, sizeof(e->kubeconfig), "%s/kubeconfig", e->dir);
    assert_int_equal(kc_fakeapi_write_kubeconfig(e->fa, e->kubeconfig, NULL), 0);
    co.kubeconfig = e->kubeconfig;
    rc = kc_config_load(&co, &e->cfg, &eb);
    if (rc != 0)
        fprintf(stderr, "config: %s\n", eb.msg);
    assert_int_equal(rc, 0);
    clo.qps = 0;
    clo.watch_idle_timeout_ms = 1500;
    clo.connect_timeout_ms = 2000;
    clo.request_timeout_ms = 10000;
    clo.max_retries = 2;
    clo.retry_base_ms = 5;
    clo.retry_max_ms = 50;
    rc = kc_client_new(e->cfg, &clo, &e->cl, &eb);
    if (rc != 0)
        fprintf(stderr, "client: %s\n", eb.msg);
    assert_int_equal(rc, 0);
}

static void env_stop(env_t *e)
{
    kc_client_free(e->cl);
    kc_config_free(e->cfg);
    kc_fakeapi_free(e->fa);
    unlink(e->kubeconfig);
    rmdir(e->dir);
}

static void fa_ns(env_t *e, const char *ns)
{
    char json[128];

    snprintf(json, sizeof(json), "{\"metadata\":{\"name\":\"%s\"}}", ns);
    assert_int_equal(kc_fakeapi_apply_json(e->fa, "namespaces", json, NULL), 0);
}

/* Create or change a ConfigMap directly in the server's store (no HTTP,
 * no faults): the workload is never disturbed by the faults aimed at the
 * informer.  Returns 0 or the fake's code. */
static int fa_try_put(env_t *e, const char *ns, const char *name, const char *val)
{
    char json[256];

    snprintf(json, sizeof(json),
             "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"%s\","
             "\"namespace\":\"%s\",\"labels\":{\"app\":\"t\"}},\"data\":{\"v\":\"%s\"}}",
             name, ns, val);
    return kc_fakeapi_apply_json(e->fa, "configmaps", json, NULL);
}

static void fa_put(env_t *e, const char *ns, const char *name, const char *val)
{
    int rc = fa_try_put(e, ns, name, val);

    if (rc != 0)
        fprintf(stderr, "put %s/%s=%s: %s\n", ns, name, val, kc_strerror(rc));
    assert_int_equal(rc, 0);
}

static int fa_del(env_t *e, const char *ns, const char *name)
{
    return kc_fakeapi_delete(e->fa, "configmaps", ns, name);
}

static void log_stderr(void *ud, kc_log_level_t level, const char *comp, const char *msg)
{
    (void)ud;
    fprintf(stderr, "[%.3f] %d %s: %s\n", (double)kc_now_ns() / 1e9, (int)level, comp, msg);
}

static kc_informer_opts_t test_opts(uint64_t seed)
{
    kc_informer_opts_t o = KC_INFORMER_OPTS_INIT;

    if (getenv("KC_TEST_VERBOSE")) {
        o.log.fn = log_stderr;
        o.log.level = KC_LOG_DEBUG;
    }

    o.resource = &kc_res_configmaps;
    o.page_size = 5;
    o.backoff_initial_ms = 10;
    o.backoff_max_ms = 150;
    o.watch_timeout_min_s = 1;
    o.watch_timeout_max_s = 3;
    o.streaming_deadline_ms = 2000;
    o.seed = seed;
    return o;
}

/* Server objects as a view ("ns/name" -> rv), from the List JSON. */
static void server_view(env_t *e, const char *resource, view_t *v)
{
    char *json = NULL;
    kc_json_span_t doc, items, it, meta, f;
    kc_json_iter_t iter;

    assert_int_equal(kc_fakeapi_list_json(e->fa, resource, NULL, &json), 0);
    assert_int_equal(kc_json_parse_doc(json, strlen(json), &doc, NULL), 0);
    assert_int_equal(kc_json_obj_get(doc, "items", &items), 0);
    if (items.type == KC_JSON_ARRAY) {
        assert_int_equal(kc_json_iter_init(&iter, items), 0);
        while (kc_json_iter_next(&iter, NULL, &it) == 1) {
            char ns[80] = "", name[300] = "", rv[64] = "", key[400];
            size_t s;
            assert_int_equal(kc_json_obj_get(it, "metadata", &meta), 0);
            if (kc_json_obj_get(meta, "namespace", &f) == 0)
                assert_int_equal(kc_json_str_unescape(f, ns, sizeof(ns)), 0);
            assert_int_equal(kc_json_obj_get(meta, "name", &f), 0);
            assert_int_equal(kc_json_str_unescape(f, name, sizeof(name)), 0);
            assert_int_equal(kc_json_obj_get(meta, "resourceVersion", &f), 0);
            assert_int_equal(kc_json_str_unescape(f, rv, sizeof(rv)), 0);
            snprintf(key, sizeof(key), "%s/%s", ns, name);
            s = view_slot(v, key);
            v->rv[s] = strdup(rv);
        }
    }
    free(json);
}

static void cache_view(kc_cache_t *c, view_t *v)
{
    kc_objlist_t l = KC_OBJLIST_INIT;

    assert_int_equal(kc_cache_list(c, &l), 0);
    for (size_t i = 0; i < l.len; i++) {
        char key[400];
        size_t s;
        snprintf(key, sizeof(key), "%s/%s", kc_obj_namespace(l.items[i]), kc_obj_name(l.items[i]));
        s = view_slot(v, key);
        free(v->rv[s]);
        v->rv[s] = strdup(kc_obj_resource_version(l.items[i]));
    }
    kc_objlist_free(&l);
}

/* Every present key of a has the same rv in b, and the counts match. */
static int views_equal(view_t *a, view_t *b, int verbose)
{
    int diff = 0;

    for (size_t i = 0; i < a->n; i++) {
        ssize_t j;
        if (a->rv[i] == NULL)
            continue;
        j = view_find(b, a->key[i]);
        if (j < 0 || b->rv[j] == NULL || strcmp(b->rv[j], a->rv[i]) != 0) {
            if (verbose)
                fprintf(stderr, "  %s: %s vs %s\n", a->key[i], a->rv[i],
                        j < 0 || !b->rv[j] ? "absent" : b->rv[j]);
            diff++;
        }
    }
    if (view_present(a) != view_present(b)) {
        if (verbose)
            fprintf(stderr, "  count %zu vs %zu\n", view_present(a), view_present(b));
        diff++;
    }
    return diff == 0;
}

/* Poll until the informer's cache equals the server; returns 1 if so. */
static int wait_converged(env_t *e, kc_informer_t *inf, long timeout_ms)
{
    uint64_t end = kc_now_ns() + (uint64_t)timeout_ms * 1000000ull;

    for (;;) {
        view_t sv = { 0 }, cv = { 0 };
        int eq, last = kc_now_ns() >= end;
        if (!kc_informer_has_synced(inf)) { /* an empty cache may equal an empty server */
            if (last) {
                fprintf(stderr, "  informer never synced\n");
                return 0;
            }
            sleep_ms(20);
            continue;
        }
        server_view(e, "configmaps", &sv);
        cache_view(kc_informer_cache(inf), &cv);
        eq = views_equal(&sv, &cv, last);
        view_free(&sv);
        view_free(&cv);
        if (eq)
            return 1;
        if (last)
            return 0;
        sleep_ms(20);
    }
}

/* ------------------------------------------------------------ informer tests */

static void test_informer_list_watch_basic(void **state)
{
    env_t e;
    kc_informer_opts_t o = test_opts(1);
    kc_informer_t *inf;
    kc_informer_state_t st;
    rec_t rec;
    kc_handler_t h;
    kc_obj_t *obj = NULL;
    kc_key_t k;
    char *got;
    char name[32];

    (void)state;
    env_start(&e, NULL);
    fa_ns(&e, "team-a");
    fa_ns(&e, "team-b");
    for (int i = 0; i < 12; i++) { /* more than two pages of 5 */
        snprintf(name, sizeof(name), "cm-%d", i);
        fa_put(&e, i % 2 ? "team-a" : "team-b", name, "1");
    }
    fa_put(&e, "team-a", "app-config", "a");
    fa_put(&e, "team-b", "app-config", "b");
    rec_init(&rec);
    h = rec_handler(&rec);
    assert_int_equal(kc_informer_new(e.cl, &o, &inf, NULL), 0);
    assert_int_equal(kc_informer_add_handler(inf, &h), 0);
    assert_int_equal(kc_informer_has_synced(inf), 0);
    assert_int_equal(kc_informer_start(inf), 0);
    assert_int_equal(kc_informer_start(inf), KC_EBUSY);
    assert_int_equal(kc_informer_wait_synced(inf, 10000), 0);
    assert_int_equal(kc_informer_has_synced(inf), 1);
    assert_int_equal(kc_cache_len(kc_informer_cache(inf)), 14);
    assert_true(wait_converged(&e, inf, 5000));
    /* The handler must have seen the initial Adds before the live Delete:
     * otherwise Add+Delete of team-a/app-config would be delivered
     * together after it, and the order checked below would differ. */
    assert_int_equal(kc_informer_wait_handlers_idle(inf, 5000), 0);

    /* live changes: delete team-a/app-config, team-b's stays */
    assert_int_equal(fa_del(&e, "team-a", "app-config"), 0);
    fa_put(&e, "team-b", "app-config", "b2");
    assert_true(wait_converged(&e, inf, 5000));
    assert_int_equal(kc_key_init(&k, "team-a", "app-config"), 0);
    assert_int_equal(kc_cache_get(kc_informer_cache(inf), &k, &obj), KC_ENOTFOUND);
    assert_int_equal(kc_key_init(&k, "team-b", "app-config"), 0);
    assert_int_equal(kc_cache_get(kc_informer_cache(inf), &k, &obj), 0);
    kc_obj_unref(obj);

    assert_int_equal(kc_informer_wait_handlers_idle(inf, 5000), 0);
    {
        view_t hv = { 0 }, cv = { 0 };
        assert_int_equal(replay(&rec, &hv, 1), 0);
        cache_view(kc_informer_cache(inf), &cv);
        assert_true(views_equal(&cv, &hv, 1));
        view_free(&hv);
        view_free(&cv);
    }
    got = rec_join(&rec);
    assert_non_null(strstr(got, "D team-a/app-config"));
    assert_null(strstr(got, "unknown"));
    free(got);

    assert_int_equal(kc_informer_state(inf, &st), 0);
    assert_int_equal(st.phase, KC_INFORMER_WATCHING);
    assert_int_equal(st.synced, 1);
    assert_int_equal(st.lists, 1);
    assert_int_equal(st.relists, 0);
    assert_true(st.events_deleted >= 1);
    assert_true(st.last_rv[0] != '\0');
    assert_true(st.since_last_event_s >= 0);
    assert_int_equal(st.cached_objects, 13);

    assert_int_equal(kc_informer_stop(inf), 0);
    assert_int_equal(kc_informer_state(inf, &st), 0);
    assert_int_equal(st.phase, KC_INFORMER_STOPPED);
    assert_int_equal(kc_informer_add_handler(inf, &h), KC_ESTOPPED);
    kc_informer_free(inf);
    rec_free(&rec);
    env_stop(&e);
}

/* The relist difference: while the informer cannot watch, one object
 * vanishes, one changes, one stays, one appears; after 410 it relists and
 * emits exactly Delete(unknown), Update, Add, and nothing for the rest. */
static void test_informer_relist_diff(void **state)
{
    env_t e;
    kc_informer_opts_t o = test_opts(2);
    kc_fakeapi_faults_t f = KC_FAKEAPI_FAULTS_INIT;
    kc_informer_t *inf;
    kc_informer_state_t st;
    rec_t rec;
    kc_handler_t h;
    size_t before;
    char *got;

    (void)state;
    env_start(&e, NULL);
    fa_ns(&e, "x");
    fa_put(&e, "x", "gone", "1");
    fa_put(&e, "x", "changed", "1");
    fa_put(&e, "x", "same", "1");
    rec_init(&rec);
    h = rec_handler(&rec);
    assert_int_equal(kc_informer_new(e.cl, &o, &inf, NULL), 0);
    assert_int_equal(kc_informer_add_handler(inf, &h), 0);
    assert_int_equal(kc_informer_start(inf), 0);
    assert_int_equal(kc_informer_wait_synced(inf, 10000), 0);
    assert_int_equal(kc_informer_wait_handlers_idle(inf, 5000), 0);
    before = rec.n;
    assert_int_equal(before, 3);

    /* the informer's user may do nothing (403) while the writer changes
     * things; end its running watch */
    (void)f;
    assert_int_equal(kc_fakeapi_set_allow(e.fa, "admin", "get", "nothing"), 0);
    assert_int_equal(kc_fakeapi_close_watches(e.fa), 0);
    sleep_ms(100);
    assert_int_equal(fa_del(&e, "x", "gone"), 0);
    fa_put(&e, "x", "changed", "2");
    fa_put(&e, "x", "new", "1");
    assert_int_equal(kc_fakeapi_compact(e.fa), 0);
    sleep_ms(50);
    assert_int_equal(kc_informer_state(inf, &st), 0);
    assert_int_equal(st.last_error, KC_EFORBIDDEN); /* the state says why */
    assert_int_equal(kc_fakeapi_clear_allow(e.fa), 0);

    assert_true(wait_converged(&e, inf, 10000));
    assert_int_equal(kc_informer_wait_handlers_idle(inf, 5000), 0);
    assert_int_equal(kc_informer_state(inf, &st), 0);
    assert_int_equal(st.relists, 1);
    assert_int_equal(st.relist_deletes, 1);
    assert_int_equal(st.relist_updates, 1);
    assert_int_equal(st.relist_adds, 1);
    assert_true(st.errors >= 1);
    assert_true(st.last_error != 0);
    got = rec_join(&rec);
    /* three initial Adds, then the diff, each key once */
    assert_int_equal(rec.n, 6);
    assert_non_null(strstr(got, "D x/gone "));
    assert_non_null(strstr(got, " unknown"));
    assert_non_null(strstr(got, "U x/changed "));
    assert_non_null(strstr(got, "A x/new "));
    assert_null(strstr(got, "U x/same"));
    free(got);
    kc_informer_free(inf);
    rec_free(&rec);
    env_stop(&e);
}

/* A handler added after sync gets an Add per cached object, then live
 * events; resync delivers Update(obj, obj). */
static void test_informer_late_handler_and_resync(void **state)
{
    env_t e;
    kc_informer_opts_t o = test_opts(3);
    kc_informer_t *inf;
    kc_informer_state_t st;
    rec_t rec;
    kc_handler_t h;
    view_t hv = { 0 }, cv = { 0 };
    char *got;

    (void)state;
    env_start(&e, NULL);
    fa_ns(&e, "y");
    fa_put(&e, "y", "a", "1");
    fa_put(&e, "y", "b", "1");
    o.resync_s = 0.2;
    assert_int_equal(kc_informer_new(e.cl, &o, &inf, NULL), 0);
    assert_int_equal(kc_informer_start(inf), 0);
    assert_int_equal(kc_informer_wait_synced(inf, 10000), 0);
    rec_init(&rec);
    h = rec_handler(&rec);
    assert_int_equal(kc_informer_add_handler(inf, &h), 0);
    fa_put(&e, "y", "c", "1");
    assert_true(wait_converged(&e, inf, 5000));
    sleep_ms(500);
    assert_int_equal(kc_informer_wait_handlers_idle(inf, 5000), 0);
    assert_int_equal(replay(&rec, &hv, 1), 0);
    cache_view(kc_informer_cache(inf), &cv);
    assert_true(views_equal(&cv, &hv, 1));
    got = rec_join(&rec);
    assert_non_null(strstr(got, "A y/a "));
    assert_non_null(strstr(got, "A y/b "));
    assert_non_null(strstr(got, "A y/c "));
    assert_non_null(strstr(got, "U y/a ")); /* a resync */
    free(got);
    assert_int_equal(kc_informer_state(inf, &st), 0);
    assert_true(st.resyncs >= 1);
    view_free(&hv);
    view_free(&cv);
    kc_informer_free(inf);
    rec_free(&rec);
    env_stop(&e);
}

/* Streaming list against a server that supports it, then one that never
 * ends its initial events in time (deadline -> paged list, remembered). */
static void test_informer_streaming_list(void **state)
{
    env_t e;
    kc_informer_opts_t o = test_opts(4);
    kc_informer_t *inf;
    kc_informer_state_t st;

    (void)state;
    env_start(&e, NULL);
    fa_ns(&e, "z");
    for (int i = 0; i < 7; i++) {
        char name[16];
        snprintf(name, sizeof(name), "s%d", i);
        fa_put(&e, "z", name, "1");
    }
    o.use_streaming_list = 1;
    assert_int_equal(kc_informer_new(e.cl, &o, &inf, NULL), 0);
    assert_int_equal(kc_informer_start(inf), 0);
    assert_int_equal(kc_informer_wait_synced(inf, 10000), 0);
    assert_true(wait_converged(&e, inf, 5000));
    fa_put(&e, "z", "s1", "2");
    assert_true(wait_converged(&e, inf, 5000));
    assert_int_equal(kc_informer_state(inf, &st), 0);
    assert_int_equal(st.streaming_supported, 1);
    assert_int_equal(st.lists, 1);
    kc_informer_free(inf);
    env_stop(&e);
}

static void test_informer_selectors_and_scope(void **state)
{
    env_t e;
    kc_informer_opts_t o = test_opts(5);
    kc_informer_t *inf;

    (void)state;
    env_start(&e, NULL);
    fa_ns(&e, "p");
    fa_ns(&e, "q");
    fa_put(&e, "p", "one", "1");
    fa_put(&e, "q", "one", "1");
    fa_put(&e, "p", "two", "1");
    o.namespace_ = "p";
    o.field_selector = "metadata.name=one";
    assert_int_equal(kc_informer_new(e.cl, &o, &inf, NULL), 0);
    assert_int_equal(kc_informer_start(inf), 0);
    assert_int_equal(kc_informer_wait_synced(inf, 10000), 0);
    assert_int_equal(kc_cache_len(kc_informer_cache(inf)), 1);
    fa_put(&e, "q", "one", "2");
    fa_put(&e, "p", "one", "2");
    sleep_ms(300);
    {
        kc_key_t k;
        kc_obj_t *obj;
        assert_int_equal(kc_key_init(&k, "p", "one"), 0);
        assert_int_equal(kc_cache_get(kc_informer_cache(inf), &k, &obj), 0);
        kc_obj_unref(obj);
    }
    assert_int_equal(kc_cache_len(kc_informer_cache(inf)), 1);
    kc_informer_free(inf);
    env_stop(&e);
}

static void test_informer_factory(void **state)
{
    env_t e;
    kc_informer_opts_t d = test_opts(6);
    kc_informer_factory_t *f;
    kc_informer_t *a, *b, *c;

    (void)state;
    env_start(&e, NULL);
    fa_ns(&e, "f");
    fa_put(&e, "f", "x", "1");
    assert_int_equal(kc_informer_factory_new(e.cl, &d, &f), 0);
    assert_int_equal(kc_informer_factory_get(f, &kc_res_configmaps, NULL, NULL, NULL, &a), 0);
    assert_int_equal(kc_informer_factory_get(f, &kc_res_configmaps, "", "", NULL, &b), 0);
    assert_ptr_equal(a, b);
    assert_int_equal(kc_informer_factory_get(f, &kc_res_configmaps, "f", NULL, NULL, &c), 0);
    assert_ptr_not_equal(a, c);
    assert_int_equal(kc_informer_factory_start(f), 0);
    assert_int_equal(kc_informer_factory_wait_synced(f, 10000), 0);
    assert_int_equal(kc_cache_len(kc_informer_cache(a)), 1);
    assert_int_equal(kc_cache_len(kc_informer_cache(c)), 1);
    /* a cluster-scoped resource, made after start: started at once; the
     * namespace argument is ignored for it */
    assert_int_equal(kc_informer_factory_get(f, &kc_res_namespaces, "f", NULL, NULL, &b), 0);
    assert_int_equal(kc_informer_wait_synced(b, 10000), 0);
    {
        kc_key_t k;
        kc_obj_t *obj;
        kc_informer_t *b2;
        assert_int_equal(kc_key_init(&k, NULL, "f"), 0);
        assert_int_equal(kc_cache_get(kc_informer_cache(b), &k, &obj), 0);
        kc_obj_unref(obj);
        assert_int_equal(kc_informer_factory_get(f, &kc_res_namespaces, NULL, NULL, NULL, &b2), 0);
        assert_ptr_equal(b, b2);
    }
    kc_informer_factory_free(f);
    env_stop(&e);
}

/* A streaming list whose initial events do not end in time (every event
 * stalls): after the deadline the informer lists in pages and remembers
 * that streaming does not work here. */
static void test_informer_streaming_deadline_fallback(void **state)
{
    env_t e;
    kc_informer_opts_t o = test_opts(7);
    kc_fakeapi_faults_t f = KC_FAKEAPI_FAULTS_INIT;
    kc_informer_t *inf;
    kc_informer_state_t st;

    (void)state;
    env_start(&e, NULL);
    fa_ns(&e, "d");
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof(name), "s%d", i);
        fa_put(&e, "d", name, "1");
    }
    f.p_stall = 1.0;
    f.stall_ms = 700; /* below the client's idle timeout, above the deadline */
    assert_int_equal(kc_fakeapi_set_faults(e.fa, &f), 0);
    o.use_streaming_list = 1;
    o.streaming_deadline_ms = 300;
    assert_int_equal(kc_informer_new(e.cl, &o, &inf, NULL), 0);
    assert_int_equal(kc_informer_start(inf), 0);
    assert_int_equal(kc_informer_wait_synced(inf, 10000), 0);
    assert_int_equal(kc_fakeapi_set_faults(e.fa, NULL), 0);
    assert_true(wait_converged(&e, inf, 10000));
    assert_int_equal(kc_informer_state(inf, &st), 0);
    assert_int_equal(st.streaming_supported, 0);
    assert_int_equal(st.lists, 1);
    kc_informer_free(inf);
    env_stop(&e);
}

/* 429 answers to the watch: back off and watch again, never relist. */
static void test_informer_429_no_relist(void **state)
{
    env_t e;
    kc_informer_opts_t o = test_opts(8);
    kc_fakeapi_faults_t f = KC_FAKEAPI_FAULTS_INIT;
    kc_informer_t *inf;
    kc_informer_state_t st;
    uint64_t end;

    (void)state;
    env_start(&e, NULL);
    fa_ns(&e, "r");
    fa_put(&e, "r", "a", "1");
    assert_int_equal(kc_informer_new(e.cl, &o, &inf, NULL), 0);
    assert_int_equal(kc_informer_start(inf), 0);
    assert_int_equal(kc_informer_wait_synced(inf, 10000), 0);
    f.p_429 = 1.0;
    f.retry_after_s = 1;
    f.max_http_faults = 3;
    assert_int_equal(kc_fakeapi_set_faults(e.fa, &f), 0);
    assert_int_equal(kc_fakeapi_close_watches(e.fa), 0);
    fa_put(&e, "r", "b", "1");
    fa_put(&e, "r", "a", "2");
    assert_true(wait_converged(&e, inf, 10000));
    end = kc_now_ns() + 5000000000ull;
    do { /* the errors were recorded */
        assert_int_equal(kc_informer_state(inf, &st), 0);
        if (st.errors >= 3)
            break;
        sleep_ms(10);
    } while (kc_now_ns() < end);
    assert_true(st.errors >= 3);
    assert_int_equal(st.last_error, KC_ETOOMANY);
    assert_int_equal(st.relists, 0);
    assert_int_equal(st.lists, 1);
    assert_int_equal(st.phase, KC_INFORMER_WATCHING);
    kc_informer_free(inf);
    kc_fakeapi_set_faults(e.fa, NULL);
    env_stop(&e);
}

/* The transform hook sees every object (list and watch) before it is
 * stored.  (managedFields dropping is kc_obj_new's, tested with the cache:
 * the fake server never stores managedFields.) */
typedef struct xform {
    _Atomic int calls;
} xform_t;

static int add_marker(void *ud, kc_obj_t *in, kc_obj_t **out)
{
    xform_t *x = ud;
    size_t len;
    const char *json = kc_obj_json(in, &len);
    char *buf = malloc(len + 32);
    int rc;

    atomic_fetch_add(&x->calls, 1);
    /* replace the leading '{' by '{"marker":1,' */
    memcpy(buf, "{\"marker\":1,", 12);
    memcpy(buf + 12, json + 1, len - 1);
    rc = kc_obj_new(buf, len + 11, NULL, out, NULL);
    free(buf);
    return rc;
}

static void test_informer_transform(void **state)
{
    env_t e;
    kc_informer_opts_t o = test_opts(9);
    kc_informer_t *a;
    xform_t x;
    kc_key_t k;
    kc_obj_t *obj;

    (void)state;
    atomic_init(&x.calls, 0);
    env_start(&e, NULL);
    fa_ns(&e, "t");
    fa_put(&e, "t", "m", "1");
    o.transform = add_marker;
    o.transform_ud = &x;
    assert_int_equal(kc_informer_new(e.cl, &o, &a, NULL), 0);
    assert_int_equal(kc_informer_start(a), 0);
    assert_int_equal(kc_informer_wait_synced(a, 10000), 0);
    assert_int_equal(kc_key_init(&k, "t", "m"), 0);
    assert_int_equal(kc_cache_get(kc_informer_cache(a), &k, &obj), 0);
    assert_non_null(strstr(kc_obj_json(obj, NULL), "\"marker\":1"));
    kc_obj_unref(obj);
    assert_int_equal(atomic_load(&x.calls), 1);

    fa_put(&e, "t", "m", "2"); /* a watch event goes through the hook too */
    assert_true(wait_converged(&e, a, 5000));
    assert_int_equal(atomic_load(&x.calls), 2);
    assert_int_equal(kc_cache_get(kc_informer_cache(a), &k, &obj), 0);
    assert_non_null(strstr(kc_obj_json(obj, NULL), "\"marker\":1"));
    kc_obj_unref(obj);
    kc_informer_free(a);
    env_stop(&e);
}

/* A transform that makes the object named "poison" one the namespaced
 * cache refuses (no namespace); every other object passes unchanged. */
static int poison_no_ns(void *ud, kc_obj_t *in, kc_obj_t **out)
{
    char json[160];

    (void)ud;
    if (strcmp(kc_obj_name(in), "poison") != 0) {
        *out = kc_obj_ref(in);
        return 0;
    }
    snprintf(json, sizeof(json), "{\"metadata\":{\"name\":\"poison\",\"resourceVersion\":\"%s\"}}",
             kc_obj_resource_version(in));
    return kc_obj_new(json, strlen(json), NULL, out, NULL);
}

/* Waits (up to 5 s) until the informer has counted an error whose message
 * holds what; fails the test, printing the last error, if it never does. */
static void wait_informer_error(kc_informer_t *inf, const char *what)
{
    kc_informer_state_t st;
    int seen = 0;

    for (int i = 0; i < 500 && !seen; i++) {
        sleep_ms(10);
        assert_int_equal(kc_informer_state(inf, &st), 0);
        seen = st.errors > 0 && strstr(st.last_error_msg, what) != NULL;
    }
    if (!seen)
        fprintf(stderr, "last error: %s\n", st.last_error_msg);
    assert_true(seen);
}

/* ns/name is in the informer's cache (present) or not. */
static void assert_cached(kc_informer_t *inf, const char *ns, const char *name, int present)
{
    kc_key_t k;
    kc_obj_t *obj = NULL;

    assert_int_equal(kc_key_init(&k, ns, name), 0);
    assert_int_equal(kc_cache_get(kc_informer_cache(inf), &k, &obj), present ? 0 : KC_ENOTFOUND);
    kc_obj_unref(obj);
}

/* A live event the cache refuses, applied on the watch applier thread:
 * the events before it are applied, the watch fails with a message naming
 * the object, and it is retried from the last applied resourceVersion, so
 * nothing after the bad event is applied either.  Stop is clean meanwhile. */
static void test_informer_watch_refused_object(void **state)
{
    env_t e;
    kc_informer_opts_t o = test_opts(11);
    kc_informer_t *a;

    (void)state;
    env_start(&e, NULL);
    fa_ns(&e, "t");
    fa_put(&e, "t", "a0", "1");
    o.transform = poison_no_ns;
    assert_int_equal(kc_informer_new(e.cl, &o, &a, NULL), 0);
    assert_int_equal(kc_informer_start(a), 0);
    assert_int_equal(kc_informer_wait_synced(a, 10000), 0);
    fa_put(&e, "t", "a1", "1");
    fa_put(&e, "t", "poison", "1");
    fa_put(&e, "t", "a2", "1");
    wait_informer_error(a, "\"/poison\" has no metadata.namespace");
    assert_cached(a, "t", "a1", 1);
    assert_cached(a, "t", "a2", 0);
    assert_int_equal(kc_cache_len(kc_informer_cache(a)), 2);
    kc_informer_free(a);
    env_stop(&e);
}

/* A live event whose object kc_obj_new refuses (built on the reflector
 * thread) ends the watch with the object's error, after every event
 * before it was applied; nothing cached is lost and nothing after it is
 * applied. */
static void test_informer_watch_bad_object(void **state)
{
    env_t e;
    kc_informer_opts_t o = test_opts(12);
    kc_informer_t *a;
    int rc;

    (void)state;
    env_start(&e, NULL);
    fa_ns(&e, "t");
    fa_put(&e, "t", "a0", "1");
    assert_int_equal(kc_informer_new(e.cl, &o, &a, NULL), 0);
    assert_int_equal(kc_informer_start(a), 0);
    assert_int_equal(kc_informer_wait_synced(a, 10000), 0);
    fa_put(&e, "t", "a1", "1");
    rc = kc_fakeapi_apply_json(e.fa, "configmaps",
                               "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":"
                               "{\"name\":\"bad\",\"namespace\":\"t\",\"labels\":{\"app\":7}}}",
                               NULL);
    if (rc != 0) {
        /* the fake refuses such objects itself: nothing to test here */
        kc_informer_free(a);
        env_stop(&e);
        skip();
    }
    fa_put(&e, "t", "a2", "1");
    wait_informer_error(a, "metadata.labels[\"app\"]: expected string");
    assert_cached(a, "t", "a0", 1);
    assert_cached(a, "t", "a1", 1);
    assert_cached(a, "t", "a2", 0);
    kc_informer_free(a);
    env_stop(&e);
}

/* Stop returns promptly even with a handler that is stuck behind a full
 * backlog and a reflector waiting for room. */
static void test_informer_stop_with_slow_handler(void **state)
{
    env_t e;
    kc_informer_opts_t o = test_opts(10);
    kc_informer_t *inf;
    rec_t rec;
    kc_handler_t h;
    uint64_t t0;

    (void)state;
    env_start(&e, NULL);
    fa_ns(&e, "s");
    for (int i = 0; i < 10; i++) {
        char name[16];
        snprintf(name, sizeof(name), "x%d", i);
        fa_put(&e, "s", name, "1");
    }
    rec_init(&rec);
    rec.gate_closed = 1; /* the first callback blocks until the gate opens */
    h = rec_handler(&rec);
    o.handler_backlog_max = 2;
    assert_int_equal(kc_informer_new(e.cl, &o, &inf, NULL), 0);
    assert_int_equal(kc_informer_add_handler(inf, &h), 0);
    assert_int_equal(kc_informer_start(inf), 0);
    rec_wait_in_gate(&rec);
    sleep_ms(100); /* the reflector is now blocked on the full backlog */
    rec_open_gate(&rec);
    t0 = kc_now_ns();
    assert_int_equal(kc_informer_stop(inf), 0);
    assert_true(kc_now_ns() - t0 < 5000000000ull);
    kc_informer_free(inf);
    rec_free(&rec);
    env_stop(&e);
}

/* ------------------------------------------------------------ convergence */

/* A handler that is sometimes slow, so that its backlog coalesces. */
typedef struct slow {
    rec_t rec;
    uint64_t rng;
} slow_t;

static void slow_maybe(slow_t *s)
{
    /* rng touched only by this handler's thread */
    if (kc__rand_next(&s->rng) % 25 == 0)
        sleep_ms(2);
}

static void slow_add(void *ud, kc_obj_t *o) { slow_maybe(ud); on_add(&((slow_t *)ud)->rec, o); }
static void slow_update(void *ud, kc_obj_t *a, kc_obj_t *b)
{
    slow_maybe(ud);
    on_update(&((slow_t *)ud)->rec, a, b);
}
static void slow_delete(void *ud, kc_obj_t *o, int u)
{
    slow_maybe(ud);
    on_delete(&((slow_t *)ud)->rec, o, u);
}

static int check_handler(rec_t *r, kc_informer_t *inf, const char *what, int seed)
{
    view_t hv = { 0 }, cv = { 0 };
    int bad = replay(r, &hv, 1), ok;

    cache_view(kc_informer_cache(inf), &cv);
    ok = views_equal(&cv, &hv, 1);
    if (bad || !ok) {
        fprintf(stderr, "seed %d: handler %s: %d invalid events, final state %s\n", seed,
                what, bad, ok ? "equal" : "DIFFERENT");
        if (getenv("KC_TEST_VERBOSE"))
            for (size_t i = 0; i < r->n; i++)
                fprintf(stderr, "  event %zu: %s\n", i, r->lines[i]);
    }
    view_free(&hv);
    view_free(&cv);
    return bad == 0 && ok;
}

typedef struct totals {
    uint64_t relists, restarts, errors, relist_deletes, coalesced, streaming;
} totals_t;

static void converge_one(int seed, int ops, totals_t *tot)
{
    enum { NNS = 4, NNAMES = 6 };
    kc_fakeapi_opts_t fo = KC_FAKEAPI_OPTS_INIT;
    kc_informer_opts_t o = test_opts((uint64_t)seed);
    kc_fakeapi_faults_t f;
    kc_informer_t *inf;
    kc_informer_state_t st;
    kc_relist_budget_t *budget;
    uint64_t rng = 0x1234567ull * (uint64_t)seed + 99;
    rec_t fast;
    slow_t slow;
    kc_handler_t h1, h2 = { slow_add, slow_update, slow_delete, NULL };
    env_t e;
    char ns[16], name[16], val[16];

    if (getenv("KC_TEST_PROGRESS"))
        fprintf(stderr, "seed %d: start at %.2f s\n", seed, (double)kc_now_ns() / 1e9);
    fo.seed = (uint64_t)seed;
    fo.bookmark_interval_ms = 200;
    fo.history_window = 64 + (size_t)(kc__rand_next(&rng) % 64);
    fo.continue_ttl_revisions = 30;
    env_start(&e, &fo);
    for (int i = 0; i < NNS; i++) {
        snprintf(ns, sizeof(ns), "ns-%d", i);
        fa_ns(&e, ns);
    }
    for (int i = 0; i < 10; i++) {
        snprintf(ns, sizeof(ns), "ns-%d", (int)(kc__rand_next(&rng) % NNS));
        snprintf(name, sizeof(name), "n-%d", (int)(kc__rand_next(&rng) % NNAMES));
        fa_put(&e, ns, name, "0");
    }

    if (getenv("KC_TEST_PROGRESS"))
        fprintf(stderr, "seed %d: setup done at %.2f s\n", seed, (double)kc_now_ns() / 1e9);
    rec_init(&fast);
    rec_init(&slow.rec);
    slow.rng = (uint64_t)seed;
    h1 = rec_handler(&fast);
    h2.ud = &slow;
    assert_int_equal(kc_relist_budget_new(50, 5, &budget), 0);
    o.use_streaming_list = seed % 3 == 0;
    o.page_size = 1 + (long)(kc__rand_next(&rng) % 6);
    o.handler_backlog_max = 3;
    o.budget = budget;
    assert_int_equal(kc_informer_new(e.cl, &o, &inf, NULL), 0);
    assert_int_equal(kc_informer_add_handler(inf, &h1), 0);
    assert_int_equal(kc_informer_start(inf), 0);

    for (int i = 0; i < ops; i++) {
        uint64_t r = kc__rand_next(&rng) % 1000, op_t0 = kc_now_ns();
        snprintf(ns, sizeof(ns), "ns-%d", (int)(kc__rand_next(&rng) % NNS));
        snprintf(name, sizeof(name), "n-%d", (int)(kc__rand_next(&rng) % NNAMES));
        snprintf(val, sizeof(val), "%d", i);
        if (i == ops / 4)
            assert_int_equal(kc_informer_add_handler(inf, &h2), 0); /* late handler */
        if (r < 300) {
            fa_del(&e, ns, name); /* may be KC_ENOTFOUND */
        } else if (r < 930) {
            assert_int_equal(fa_try_put(&e, ns, name, val), 0);
        } else {
            /* a fault */
            switch (kc__rand_next(&rng) % 7) {
            case 0:
                kc_fakeapi_close_watches(e.fa);
                break;
            case 1:
                kc_fakeapi_compact(e.fa);
                if (kc__rand_next(&rng) & 1)
                    kc_fakeapi_close_watches(e.fa);
                break;
            case 2:
                kc_fakeapi_restart(e.fa);
                break;
            case 3:
                f = (kc_fakeapi_faults_t)KC_FAKEAPI_FAULTS_INIT;
                f.p_429 = 0.3;
                f.p_500 = 0.2;
                f.max_http_faults = 4;
                kc_fakeapi_set_faults(e.fa, &f);
                break;
            case 4:
                f = (kc_fakeapi_faults_t)KC_FAKEAPI_FAULTS_INIT;
                f.p_close_watch = 0.2;
                kc_fakeapi_set_faults(e.fa, &f);
                break;
            case 5:
                f = (kc_fakeapi_faults_t)KC_FAKEAPI_FAULTS_INIT;
                f.p_stall = 0.05;
                f.stall_ms = 1800; /* beyond the client's 1.5 s idle timeout */
                kc_fakeapi_set_faults(e.fa, &f);
                break;
            default:
                kc_fakeapi_set_faults(e.fa, NULL);
                break;
            }
        }
        if (kc__rand_next(&rng) % 2 == 0)
            sleep_ms(1); /* spread the load so faults meet a working informer */
        if (getenv("KC_TEST_PROGRESS") && kc_now_ns() - op_t0 > 100000000ull)
            fprintf(stderr, "seed %d: op %d (r=%d) took %.3f s\n", seed, i, (int)r,
                    (double)(kc_now_ns() - op_t0) / 1e9);
    }
    kc_fakeapi_set_faults(e.fa, NULL);
    if (getenv("KC_TEST_PROGRESS"))
        fprintf(stderr, "seed %d: load done at %.2f s\n", seed, (double)kc_now_ns() / 1e9);

    if (!wait_converged(&e, inf, 20000)) {
        kc_informer_state(inf, &st);
        fprintf(stderr, "seed %d: cache never converged; phase %s, last error %s\n", seed,
                kc_informer_phase_name(st.phase), st.last_error_msg);
        fail();
    }
    assert_int_equal(kc_informer_wait_handlers_idle(inf, 10000), 0);
    /* the cache still equals the server (no late stray event) */
    assert_true(wait_converged(&e, inf, 1));
    if (getenv("KC_TEST_PROGRESS"))
        fprintf(stderr, "seed %d: converged at %.2f s\n", seed, (double)kc_now_ns() / 1e9);
    assert_true(check_handler(&fast, inf, "fast", seed));
    assert_true(check_handler(&slow.rec, inf, "slow", seed));
    assert_int_equal(kc_informer_state(inf, &st), 0);
    assert_int_equal(st.synced, 1);
    tot->relists += st.relists;
    tot->restarts += st.restarts;
    tot->errors += st.errors;
    tot->relist_deletes += st.relist_deletes;
    tot->streaming += st.streaming_supported == 1;
    {
        kc_handler_stats_t hs;
        assert_int_equal(kc_informer_handler_stats(inf, 1, &hs), 0);
        tot->coalesced += hs.coalesced;
        assert_true(hs.pending_hwm <= 3);
    }

    kc_informer_free(inf);
    if (getenv("KC_TEST_PROGRESS"))
        fprintf(stderr, "seed %d: informer freed at %.2f s\n", seed, (double)kc_now_ns() / 1e9);
    kc_relist_budget_free(budget);
    rec_free(&fast);
    rec_free(&slow.rec);
    env_stop(&e);
}

static void test_informer_convergence(void **state)
{
    const char *env = getenv("KC_INFORMER_SEEDS");
    int seeds = sanitizer() ? 12 : 50, ops = sanitizer() ? 150 : 250;
    totals_t tot = { 0, 0, 0, 0, 0, 0 };

    (void)state;
    const char *first_env = getenv("KC_INFORMER_SEED_FIRST");
    int first = first_env ? (int)strtol(first_env, NULL, 10) : 1;

    if (env != NULL && strtol(env, NULL, 10) > 0)
        seeds = (int)strtol(env, NULL, 10);
    for (int seed = first; seed < first + seeds; seed++) {
        uint64_t t0 = kc_now_ns();
        converge_one(seed, ops, &tot);
        if (getenv("KC_TEST_PROGRESS"))
            fprintf(stderr, "seed %d: converged in %.2f s\n", seed, (double)(kc_now_ns() - t0) / 1e9);
    }
    fprintf(stderr, "convergence: %d seeds; %llu relists (%llu Deletes from relists), %llu "
            "watch restarts, %llu errors, %llu coalesced events, %llu streaming lists\n", seeds,
            (unsigned long long)tot.relists, (unsigned long long)tot.relist_deletes,
            (unsigned long long)tot.restarts, (unsigned long long)tot.errors,
            (unsigned long long)tot.coalesced, (unsigned long long)tot.streaming);
    /* the faults really happened (over all seeds) */
    if (seeds >= 10) {
        assert_true(tot.relists > 0);
        assert_true(tot.restarts > 0);
        assert_true(tot.errors > 0);
        if (!sanitizer()) /* timing-dependent; the rules have unit tests */
            assert_true(tot.coalesced > 0);
        assert_true(tot.streaming > 0);
    }
}

/* ------------------------------------------------------------ main */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_growth_cap_reset),
        cmocka_unit_test(test_backoff_jitter_spreads),
        cmocka_unit_test(test_relist_budget),
        cmocka_unit_test(test_proc_coalesce_rules),
        cmocka_unit_test(test_proc_keys_by_namespace),
        cmocka_unit_test(test_proc_backlog_bound),
        cmocka_unit_test(test_proc_large_backlog_drains),
        cmocka_unit_test(test_proc_stop_releases_pusher),
        cmocka_unit_test(test_proc_random_replay),
        cmocka_unit_test(test_informer_list_watch_basic),
        cmocka_unit_test(test_informer_relist_diff),
        cmocka_unit_test(test_informer_late_handler_and_resync),
        cmocka_unit_test(test_informer_streaming_list),
        cmocka_unit_test(test_informer_selectors_and_scope),
        cmocka_unit_test(test_informer_factory),
        cmocka_unit_test(test_informer_streaming_deadline_fallback),
        cmocka_unit_test(test_informer_429_no_relist),
        cmocka_unit_test(test_informer_transform),
        cmocka_unit_test(test_informer_watch_refused_object),
        cmocka_unit_test(test_informer_watch_bad_object),
        cmocka_unit_test(test_informer_stop_with_slow_handler),
        cmocka_unit_test(test_informer_convergence),
    };

    kc_global_init();
    /* the fake API server runs in this process: a client hanging up in
     * the middle of a stream (an informer ending a watch on a bad event)
     * must not kill the test with SIGPIPE, as kcache-fakeapi ignores it */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
