/* Stress test of the cache: writer threads add, update, delete and take
 * random keys across namespaces (the same names in every namespace) while
 * reader threads get, list, list by namespace and query indexes, holding
 * references across deletes.  Each writer owns a disjoint set of names and
 * keeps a model; at the end the store (primary map and every index) must
 * equal the models.  A second phase swaps whole sets with replace_all under
 * readers.  Bounded run time; shorter under KC_SANITIZER. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kc_cache.h"

#define NNS 8
#define NNAMES 48
#define NWRITERS 2
#define NREADERS 2
#define NAPPS 3
#define HELD 32

static const char *apps[NAPPS] = { "web", "db", "cache" };

typedef struct model_ent {
    int present;
    unsigned rv;
    int app;
} model_ent_t;

typedef struct shared {
    kc_cache_t *c;
    atomic_int stop;
    double seconds;
    model_ent_t model[NNS][NNAMES]; /* entry [ns][name] written only by its owner */
    atomic_long reads, writes, lists;
    atomic_int failures;
    char failmsg[256];
    pthread_mutex_t fail_lock;
} shared_t;

typedef struct worker {
    shared_t *sh;
    int id;
    unsigned seed;
} worker_t;

static unsigned rnd(unsigned *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void fail_once(shared_t *sh, const char *fmt, ...) KC_PRINTF(2, 3);
static void fail_once(shared_t *sh, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&sh->fail_lock);
    if (atomic_fetch_add(&sh->failures, 1) == 0) {
        va_start(ap, fmt);
        vsnprintf(sh->failmsg, sizeof(sh->failmsg), fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&sh->fail_lock);
    atomic_store(&sh->stop, 1);
}

static kc_obj_t *make(int ns, int name, unsigned rv, int app)
{
    char buf[512];
    int n = snprintf(buf, sizeof(buf),
                     "{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"app-config-%d\","
                     "\"namespace\":\"team-%d\",\"uid\":\"u-%d-%d\",\"resourceVersion\":\"%u\","
                     "\"labels\":{\"app\":\"%s\"}},\"data\":{\"check\":\"team-%d/app-config-%d\"}}",
                     name, ns, ns, name, rv, apps[app], ns, name);
    kc_obj_t *o = NULL;
    if (kc_obj_new(buf, (size_t)n, NULL, &o, NULL) != 0)
        abort();
    return o;
}

static void app_index(const kc_obj_t *o, void *ud, kc_index_emit_cb emit, void *ctx)
{
    (void)ud;
    const char *v = kc_obj_label(o, "app");
    if (v)
        emit(ctx, v);
}

/* A held object must stay readable and self-consistent. */
static int obj_ok(const kc_obj_t *o)
{
    char want[96];
    size_t len;
    const char *j = kc_obj_json(o, &len);
    snprintf(want, sizeof(want), "\"check\":\"%s/%s\"", kc_obj_namespace(o), kc_obj_name(o));
    return strlen(j) == len && strstr(j, want) != NULL;
}

static void *writer(void *arg)
{
    worker_t *w = arg;
    shared_t *sh = w->sh;
    uint64_t end = kc_now_ns() + (uint64_t)(sh->seconds * 1e9);
    unsigned rv = (unsigned)w->id * 100000000u;

    while (!atomic_load(&sh->stop) && kc_now_ns() < end) {
        int ns = (int)(rnd(&w->seed) % NNS);
        int name = (int)(rnd(&w->seed) % (NNAMES / NWRITERS)) * NWRITERS + w->id;
        model_ent_t *m = &sh->model[ns][name];
        unsigned op = rnd(&w->seed) % 10;
        char nsb[24], nameb[32];
        kc_key_t k;
        snprintf(nsb, sizeof(nsb), "team-%d", ns);
        snprintf(nameb, sizeof(nameb), "app-config-%d", name);
        if (kc_key_init(&k, nsb, nameb) != 0)
            abort();
        int rc;
        if (op < 3) { /* add */
            int app = (int)(rnd(&w->seed) % NAPPS);
            kc_obj_t *o = make(ns, name, ++rv, app);
            rc = kc_cache_add(sh->c, o);
            if (rc != (m->present ? KC_EEXISTS : 0))
                fail_once(sh, "add %s/%s: %s, model present %d", nsb, nameb, kc_err_name(rc),
                          m->present);
            if (rc == 0) {
                m->present = 1;
                m->rv = rv;
                m->app = app;
            }
            kc_obj_unref(o);
        } else if (op < 6) { /* replace */
            int app = (int)(rnd(&w->seed) % NAPPS);
            kc_obj_t *o = make(ns, name, ++rv, app), *old = NULL;
            rc = kc_cache_replace(sh->c, o, &old);
            if (rc != 0 || (old != NULL) != m->present ||
                (old && strtoul(kc_obj_resource_version(old), NULL, 10) != m->rv))
                fail_once(sh, "replace %s/%s: %s", nsb, nameb, kc_err_name(rc));
            kc_obj_unref(old);
            m->present = 1;
            m->rv = rv;
            m->app = app;
            kc_obj_unref(o);
        } else if (op < 9) { /* delete */
            rc = kc_cache_delete(sh->c, &k);
            if (rc != (m->present ? 0 : KC_ENOTFOUND))
                fail_once(sh, "delete %s/%s: %s, model present %d", nsb, nameb,
                          kc_err_name(rc), m->present);
            m->present = 0;
        } else { /* take */
            kc_obj_t *old = NULL;
            rc = kc_cache_take(sh->c, &k, &old);
            if (rc != (m->present ? 0 : KC_ENOTFOUND) || (old && !obj_ok(old)))
                fail_once(sh, "take %s/%s: %s", nsb, nameb, kc_err_name(rc));
            kc_obj_unref(old);
            m->present = 0;
        }
        atomic_fetch_add_explicit(&sh->writes, 1, memory_order_relaxed);
    }
    return NULL;
}

static void *reader(void *arg)
{
    worker_t *w = arg;
    shared_t *sh = w->sh;
    kc_obj_t *held[HELD] = { 0 };
    unsigned hi = 0;

    while (!atomic_load(&sh->stop)) {
        unsigned op = rnd(&w->seed) % 100;
        kc_objlist_t l = KC_OBJLIST_INIT;
        if (op < 85) {
            char nsb[24], nameb[32];
            kc_key_t k;
            kc_obj_t *o = NULL;
            int ns = (int)(rnd(&w->seed) % NNS), name = (int)(rnd(&w->seed) % NNAMES);
            snprintf(nsb, sizeof(nsb), "team-%d", ns);
            snprintf(nameb, sizeof(nameb), "app-config-%d", name);
            kc_key_init(&k, nsb, nameb);
            int rc = kc_cache_get(sh->c, &k, &o);
            if (rc == 0) {
                if (strcmp(kc_obj_namespace(o), nsb) || strcmp(kc_obj_name(o), nameb) ||
                    !obj_ok(o))
                    fail_once(sh, "get %s/%s returned %s/%s", nsb, nameb,
                              kc_obj_namespace(o), kc_obj_name(o));
                /* hold it across later deletes; release an old one */
                kc_obj_unref(held[hi % HELD]);
                held[hi++ % HELD] = o;
            } else if (rc != KC_ENOTFOUND) {
                fail_once(sh, "get: %s", kc_err_name(rc));
            }
            atomic_fetch_add_explicit(&sh->reads, 1, memory_order_relaxed);
            continue;
        }
        int rc;
        char nsb[24];
        const char *app = apps[rnd(&w->seed) % NAPPS];
        snprintf(nsb, sizeof(nsb), "team-%u", rnd(&w->seed) % NNS);
        if (op < 90)
            rc = kc_cache_list(sh->c, &l);
        else if (op < 95)
            rc = kc_cache_list_ns(sh->c, nsb, &l);
        else
            rc = kc_cache_index_query(sh->c, "app", app, &l);
        if (rc != 0)
            fail_once(sh, "list: %s", kc_err_name(rc));
        for (size_t i = 0; i < l.len; i++) {
            kc_obj_t *o = l.items[i];
            if (!obj_ok(o))
                fail_once(sh, "listed object inconsistent");
            if (op >= 90 && op < 95 && strcmp(kc_obj_namespace(o), nsb) != 0)
                fail_once(sh, "list_ns %s gave %s", nsb, kc_obj_namespace(o));
            if (op >= 95 && strcmp(kc_obj_label(o, "app"), app) != 0)
                fail_once(sh, "index app=%s gave app=%s", app, kc_obj_label(o, "app"));
        }
        /* a snapshot never holds one key twice */
        for (size_t i = 1; i < l.len && l.len < 64; i++)
            for (size_t j = 0; j < i; j++)
                if (!strcmp(kc_obj_namespace(l.items[i]), kc_obj_namespace(l.items[j])) &&
                    !strcmp(kc_obj_name(l.items[i]), kc_obj_name(l.items[j])))
                    fail_once(sh, "key listed twice");
        kc_objlist_free(&l);
        atomic_fetch_add_explicit(&sh->lists, 1, memory_order_relaxed);
    }
    for (unsigned i = 0; i < HELD; i++) {
        if (held[i] && !obj_ok(held[i]))
            fail_once(sh, "held object unreadable");
        kc_obj_unref(held[i]);
    }
    return NULL;
}

static void count_calls(void *ud, kc_diff_t kind, kc_obj_t *old, kc_obj_t *nw)
{
    (void)kind;
    (void)old;
    (void)nw;
    (*(int *)ud)++;
}

static double run_seconds(void)
{
    const char *s = getenv("KC_SANITIZER");
    return (s && *s) ? 1.0 : 2.0;
}

static void test_writers_readers_model(void **state)
{
    (void)state;
    shared_t *sh = calloc(1, sizeof(*sh));
    assert_non_null(sh);
    kc_cache_opts_t opts = KC_CACHE_OPTS_INIT;
    opts.shards = 16; /* fewer shards: more sharing of locks between threads */
    assert_int_equal(kc_cache_new(&opts, &sh->c), 0);
    assert_int_equal(kc_cache_add_index(sh->c, "app", app_index, NULL), 0);
    pthread_mutex_init(&sh->fail_lock, NULL);
    sh->seconds = run_seconds();

    pthread_t th[NWRITERS + NREADERS];
    worker_t wk[NWRITERS + NREADERS];
    for (int i = 0; i < NWRITERS + NREADERS; i++) {
        wk[i].sh = sh;
        wk[i].id = i < NWRITERS ? i : i - NWRITERS;
        wk[i].seed = 0x9e3779b9u * (unsigned)(i + 1);
        assert_int_equal(pthread_create(&th[i], NULL, i < NWRITERS ? writer : reader, &wk[i]),
                         0);
    }
    for (int i = 0; i < NWRITERS; i++)
        pthread_join(th[i], NULL);
    atomic_store(&sh->stop, 1);
    for (int i = NWRITERS; i < NWRITERS + NREADERS; i++)
        pthread_join(th[i], NULL);
    if (atomic_load(&sh->failures))
        fail_msg("%d failures, first: %s", atomic_load(&sh->failures), sh->failmsg);
    print_message("  %ld writes, %ld gets, %ld lists/queries\n", atomic_load(&sh->writes),
                  atomic_load(&sh->reads), atomic_load(&sh->lists));
    assert_true(atomic_load(&sh->writes) > 1000);

    /* the store equals the model: by key, by namespace and by index */
    size_t present = 0, per_app[NAPPS] = { 0 };
    for (int ns = 0; ns < NNS; ns++) {
        size_t in_ns = 0;
        for (int n = 0; n < NNAMES; n++) {
            model_ent_t *m = &sh->model[ns][n];
            char nsb[24], nameb[32];
            kc_key_t k;
            kc_obj_t *o = NULL;
            snprintf(nsb, sizeof(nsb), "team-%d", ns);
            snprintf(nameb, sizeof(nameb), "app-config-%d", n);
            assert_int_equal(kc_key_init(&k, nsb, nameb), 0);
            int rc = kc_cache_get(sh->c, &k, &o);
            if (!m->present) {
                assert_int_equal(rc, KC_ENOTFOUND);
                continue;
            }
            assert_int_equal(rc, 0);
            assert_int_equal(strtoul(kc_obj_resource_version(o), NULL, 10), m->rv);
            assert_string_equal(kc_obj_label(o, "app"), apps[m->app]);
            kc_obj_unref(o);
            present++;
            in_ns++;
            per_app[m->app]++;
        }
        kc_objlist_t l = KC_OBJLIST_INIT;
        char nsb[24];
        snprintf(nsb, sizeof(nsb), "team-%d", ns);
        assert_int_equal(kc_cache_list_ns(sh->c, nsb, &l), 0);
        assert_int_equal(l.len, in_ns);
        kc_objlist_free(&l);
    }
    assert_int_equal(kc_cache_len(sh->c), present);
    for (int a = 0; a < NAPPS; a++) {
        kc_objlist_t l = KC_OBJLIST_INIT;
        assert_int_equal(kc_cache_index_query(sh->c, "app", apps[a], &l), 0);
        assert_int_equal(l.len, per_app[a]);
        kc_objlist_free(&l);
    }
    kc_objlist_t all = KC_OBJLIST_INIT;
    assert_int_equal(kc_cache_list(sh->c, &all), 0);
    assert_int_equal(all.len, present);

    /* relisting the same content reports nothing */
    int calls = 0;
    assert_int_equal(kc_cache_replace_all(sh->c, all.items, all.len, count_calls, &calls), 0);
    assert_int_equal(calls, 0);
    assert_int_equal(kc_cache_len(sh->c), present);
    kc_objlist_free(&all);

    kc_cache_free(sh->c);
    pthread_mutex_destroy(&sh->fail_lock);
    free(sh);
}

/* Phase two: replace_all swaps between two whole sets while readers run.
 * Readers must see objects of one set or the other, every listing must be
 * a whole set (replace_all is atomic and listings are snapshots). */
typedef struct swap_ctx {
    shared_t *sh;
    kc_objlist_t sets[2];
    atomic_int diff_calls;
} swap_ctx_t;

static void count_diff(void *ud, kc_diff_t kind, kc_obj_t *old, kc_obj_t *nw)
{
    swap_ctx_t *s = ud;
    (void)kind;
    if ((old && !obj_ok(old)) || (nw && !obj_ok(nw)))
        fail_once(s->sh, "diff callback got a bad object");
    atomic_fetch_add(&s->diff_calls, 1);
}

static void *swap_reader(void *arg)
{
    swap_ctx_t *s = arg;
    while (!atomic_load(&s->sh->stop)) {
        kc_objlist_t l = KC_OBJLIST_INIT;
        if (kc_cache_list(s->sh->c, &l) != 0)
            fail_once(s->sh, "list failed");
        /* set 0 has rv 1 for all, set 1 rv 2: a snapshot is all one or the other */
        if (l.len != s->sets[0].len && l.len != s->sets[1].len)
            fail_once(s->sh, "snapshot of %zu objects", l.len);
        for (size_t i = 1; i < l.len; i++)
            if (strcmp(kc_obj_resource_version(l.items[i]),
                       kc_obj_resource_version(l.items[0])) != 0)
                fail_once(s->sh, "snapshot mixes two relists");
        kc_objlist_free(&l);
        if (kc_cache_index_query(s->sh->c, "app", "web", &l) != 0)
            fail_once(s->sh, "query failed");
        for (size_t i = 0; i < l.len; i++)
            if (strcmp(kc_obj_label(l.items[i], "app"), "web") != 0)
                fail_once(s->sh, "index mismatch");
        kc_objlist_free(&l);
    }
    return NULL;
}

static void test_replace_all_under_readers(void **state)
{
    (void)state;
    swap_ctx_t *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    s->sh = calloc(1, sizeof(*s->sh));
    assert_non_null(s->sh);
    pthread_mutex_init(&s->sh->fail_lock, NULL);
    assert_int_equal(kc_cache_new(NULL, &s->sh->c), 0);
    assert_int_equal(kc_cache_add_index(s->sh->c, "app", app_index, NULL), 0);
    /* set 0: every name in namespaces 0..3, rv 1; set 1: namespaces 2..7, rv 2 */
    for (int set = 0; set < 2; set++) {
        size_t n = 0;
        s->sets[set].items = calloc(NNS * NNAMES, sizeof(kc_obj_t *));
        assert_non_null(s->sets[set].items);
        for (int ns = set ? 2 : 0; ns < (set ? 8 : 4); ns++)
            for (int name = 0; name < NNAMES; name++)
                s->sets[set].items[n++] = make(ns, name, (unsigned)set + 1, name % NAPPS);
        s->sets[set].len = n;
    }
    assert_int_equal(kc_cache_replace_all(s->sh->c, s->sets[0].items, s->sets[0].len, NULL,
                                          NULL), 0);
    pthread_t th[NREADERS];
    for (int i = 0; i < NREADERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, swap_reader, s), 0);
    uint64_t end = kc_now_ns() + (uint64_t)(run_seconds() / 2 * 1e9);
    int swaps = 0;
    while (kc_now_ns() < end && !atomic_load(&s->sh->stop)) {
        int set = (swaps + 1) % 2;
        assert_int_equal(kc_cache_replace_all(s->sh->c, s->sets[set].items, s->sets[set].len,
                                              count_diff, s), 0);
        swaps++;
    }
    atomic_store(&s->sh->stop, 1);
    for (int i = 0; i < NREADERS; i++)
        pthread_join(th[i], NULL);
    if (atomic_load(&s->sh->failures))
        fail_msg("%s", s->sh->failmsg);
    /* each swap: 2 namespaces deleted, 2 updated, 4 added (or the reverse) */
    assert_int_equal(atomic_load(&s->diff_calls), swaps * 8 * NNAMES);
    int last = swaps % 2;
    assert_int_equal(kc_cache_len(s->sh->c), s->sets[last].len);
    print_message("  %d relists under readers\n", swaps);
    kc_objlist_free(&s->sets[0]);
    kc_objlist_free(&s->sets[1]);
    kc_cache_free(s->sh->c);
    pthread_mutex_destroy(&s->sh->fail_lock);
    free(s->sh);
    free(s);
}


/* Phase three: everything at once, no model: single-key writers, a
 * relister calling replace_all with random subsets, and readers.  At the
 * end the primary map and every index must agree with each other. */
typedef struct chaos {
    shared_t *sh;
    kc_obj_t *pool[NNS][NNAMES][2];
} chaos_t;

typedef struct chaos_worker {
    chaos_t *ch;
    int id;
    unsigned seed;
} chaos_worker_t;

static void *chaos_writer(void *arg)
{
    chaos_worker_t *w = arg;
    shared_t *sh = w->ch->sh;
    while (!atomic_load(&sh->stop)) {
        int ns = (int)(rnd(&w->seed) % NNS), name = (int)(rnd(&w->seed) % NNAMES);
        kc_obj_t *o = w->ch->pool[ns][name][rnd(&w->seed) & 1];
        unsigned op = rnd(&w->seed) % 4;
        if (op == 0) {
            kc_cache_add(sh->c, o);
        } else if (op == 1) {
            kc_cache_replace(sh->c, o, NULL);
        } else {
            kc_key_t k;
            kc_obj_key(o, &k);
            kc_cache_delete(sh->c, &k);
        }
    }
    return NULL;
}

static void *chaos_relister(void *arg)
{
    chaos_worker_t *w = arg;
    shared_t *sh = w->ch->sh;
    kc_obj_t **objs = calloc(NNS * NNAMES, sizeof(*objs));
    if (!objs)
        abort();
    while (!atomic_load(&sh->stop)) {
        size_t n = 0;
        for (int ns = 0; ns < NNS; ns++)
            for (int name = 0; name < NNAMES; name++)
                if (rnd(&w->seed) % 3 == 0)
                    objs[n++] = w->ch->pool[ns][name][rnd(&w->seed) & 1];
        int calls = 0;
        if (kc_cache_replace_all(sh->c, objs, n, count_calls, &calls) != 0)
            fail_once(sh, "replace_all failed");
    }
    free(objs);
    return NULL;
}

static void test_chaos_consistency(void **state)
{
    (void)state;
    chaos_t *ch = calloc(1, sizeof(*ch));
    assert_non_null(ch);
    ch->sh = calloc(1, sizeof(*ch->sh));
    assert_non_null(ch->sh);
    shared_t *sh = ch->sh;
    pthread_mutex_init(&sh->fail_lock, NULL);
    kc_cache_opts_t opts = KC_CACHE_OPTS_INIT;
    opts.shards = 8;
    assert_int_equal(kc_cache_new(&opts, &sh->c), 0);
    assert_int_equal(kc_cache_add_index(sh->c, "app", app_index, NULL), 0);
    for (int ns = 0; ns < NNS; ns++)
        for (int name = 0; name < NNAMES; name++)
            for (int v = 0; v < 2; v++)
                ch->pool[ns][name][v] = make(ns, name, (unsigned)v + 1, (name + v) % NAPPS);

    enum { NW = 2, NR = 1 };
    pthread_t th[NW + 1 + NR];
    chaos_worker_t wk[NW + 1 + NR];
    for (int i = 0; i < NW + 1 + NR; i++) {
        wk[i] = (chaos_worker_t){ ch, i, 0x85ebca6bu * (unsigned)(i + 7) };
        void *(*fn)(void *) = i < NW ? chaos_writer : i == NW ? chaos_relister : NULL;
        if (fn)
            assert_int_equal(pthread_create(&th[i], NULL, fn, &wk[i]), 0);
    }
    /* the reader of phase one, reused */
    worker_t rd = { sh, 0, 12345 };
    assert_int_equal(pthread_create(&th[NW + 1], NULL, reader, &rd), 0);
    uint64_t end = kc_now_ns() + (uint64_t)(run_seconds() / 2 * 1e9);
    while (kc_now_ns() < end && !atomic_load(&sh->stop))
        usleep(10000);
    atomic_store(&sh->stop, 1);
    for (int i = 0; i < NW + 1 + NR; i++)
        pthread_join(th[i], NULL);
    if (atomic_load(&sh->failures))
        fail_msg("%s", sh->failmsg);

    /* primary map, namespace index and custom index agree */
    kc_objlist_t all = KC_OBJLIST_INIT;
    assert_int_equal(kc_cache_list(sh->c, &all), 0);
    assert_int_equal(all.len, kc_cache_len(sh->c));
    size_t per_ns[NNS] = { 0 }, per_app[NAPPS] = { 0 };
    for (size_t i = 0; i < all.len; i++) {
        kc_obj_t *o = all.items[i], *got = NULL;
        int ns = atoi(kc_obj_namespace(o) + 5);
        per_ns[ns]++;
        for (int a = 0; a < NAPPS; a++)
            if (strcmp(kc_obj_label(o, "app"), apps[a]) == 0)
                per_app[a]++;
        kc_key_t k;
        kc_obj_key(o, &k);
        assert_int_equal(kc_cache_get(sh->c, &k, &got), 0);
        assert_ptr_equal(got, o);
        kc_obj_unref(got);
    }
    for (int ns = 0; ns < NNS; ns++) {
        char nsb[24];
        kc_objlist_t l = KC_OBJLIST_INIT;
        snprintf(nsb, sizeof(nsb), "team-%d", ns);
        assert_int_equal(kc_cache_list_ns(sh->c, nsb, &l), 0);
        assert_int_equal(l.len, per_ns[ns]);
        kc_objlist_free(&l);
    }
    for (int a = 0; a < NAPPS; a++) {
        kc_objlist_t l = KC_OBJLIST_INIT;
        assert_int_equal(kc_cache_index_query(sh->c, "app", apps[a], &l), 0);
        assert_int_equal(l.len, per_app[a]);
        kc_objlist_free(&l);
    }
    print_message("  %zu objects at the end\n", all.len);
    kc_objlist_free(&all);
    kc_cache_free(sh->c);
    for (int ns = 0; ns < NNS; ns++)
        for (int name = 0; name < NNAMES; name++)
            for (int v = 0; v < 2; v++)
                kc_obj_unref(ch->pool[ns][name][v]);
    pthread_mutex_destroy(&sh->fail_lock);
    free(sh);
    free(ch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writers_readers_model),
        cmocka_unit_test(test_replace_all_under_readers),
        cmocka_unit_test(test_chaos_consistency),
    };
    return cmocka_run_group_tests_name("kc_cache_stress", tests, NULL, NULL);
}
