/*
 * Tests of informer/: backoff, relist budget, the per-handler processor
 * (coalescing rules, bound, ordering), the relist diff, and against the
 * fake API server: list+watch, 410 relists, faults, streaming lists,
 * late handlers, resync, the factory, and the convergence test (a seeded
 * random workload under faults; the cache must equal the server and each
 * handler's per-key history must replay to the same final state).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
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
        { "Ud", "A gate/x 1|D ns/k 3" },                      /* Update, Delete -> Delete */
        { "ad", "A gate/x 1" },                               /* never seen: vanishes */
        { "aud", "A gate/x 1" },
        { "da", "A gate/x 1|D ns/k 2|A ns/k 3" },             /* Delete, Add: both */
        { "dau", "A gate/x 1|D ns/k 2|A ns/k 4" },
        { "dad", "A gate/x 1|D ns/k 2" },                     /* re-created, re-deleted */
        { "dada", "A gate/x 1|D ns/k 2|A ns/k 5" },
        { "Uda", "A gate/x 1|D ns/k 3|A ns/k 4" },
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
    assert_int_equal(kc__proc_delete(f.p, a, 0), 0); /* a vanishes, b stays */
    kc_obj_unref(a);
    kc_obj_unref(b);
    pf_finish(&f, "A gate/x 1|A team-b/app 6");
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
        cmocka_unit_test(test_proc_stop_releases_pusher),
        cmocka_unit_test(test_proc_random_replay),
    };

    kc_global_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
