/* The informer against the real kube-apiserver of tests/realapi/run.sh:
 * the convergence test.  Two informers (one listing in pages, one by
 * streaming list: sendInitialEvents) watch ConfigMaps labelled
 * kc-real=inf in every namespace while this program makes random creates,
 * updates and deletes across three namespaces with shared names; midway
 * kube-apiserver is restarted (every watch cut; the new watch cache starts
 * at the current revision, so resuming from an older one gets 410), then
 * etcd is compacted and kube-apiserver restarted again (410 forced: the
 * informer relists).  A third informer streams through a client that does
 * not accept gzip (see test_watch_gzip in real_k8sclient.c).  At the end
 * each cache, and a mirror kept by a
 * handler from its callbacks, must equal the server's objects exactly
 * (names, uids, resourceVersions), and the state counters must show the
 * watches resumed, the relists, and bookmarks seen. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kc_cache.h"
#include "kc_client.h"
#include "kc_informer.h"
#include "real_support.h"

#define NNS 3
#define NNAMES 12
#define NSLOTS (NNS * NNAMES)
#define SELECTOR "kc-real=inf"

static const real_grid_t G = { "kc-real-inf", NNS, NNAMES, SELECTOR };

static kc_client_t *A;
static kc_client_t *NC;  /* the same identity, without gzip */

static int setup(void **state)
{
    char ns[64];
    int i;

    (void)state;
    kc_global_init();
    A = real_client("KC_REAL_KUBECONFIG", NULL);
    NC = real_client_nocompress(NULL);
    for (i = 0; i < NNS; i++) {
        snprintf(ns, sizeof(ns), "kc-real-inf-%d", i);
        if (real_ensure_ns(A, ns) != 0)
            return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kc_client_free(A);
    kc_client_free(NC);
    kc_global_cleanup();
    return 0;
}

/* What a handler saw, slot by slot: the resourceVersion of the live object
 * ("" when deleted). */
typedef struct mirror {
    pthread_mutex_t mu;
    char rv[NSLOTS][32];     /* under mu */
    int bad;                 /* under mu: an update/delete for an unknown object */
    unsigned long adds, updates, deletes, unknown_deletes;
} mirror_t;


static void m_add(void *ud, kc_obj_t *o)
{
    mirror_t *m = ud;
    int s = real_slot_of(&G, o);

    pthread_mutex_lock(&m->mu);
    if (s < 0 || m->rv[s][0] != '\0')
        m->bad++;
    if (s >= 0)
        snprintf(m->rv[s], sizeof(m->rv[s]), "%s", kc_obj_resource_version(o));
    m->adds++;
    pthread_mutex_unlock(&m->mu);
}

static void m_update(void *ud, kc_obj_t *old, kc_obj_t *o)
{
    mirror_t *m = ud;
    int s = real_slot_of(&G, o);

    (void)old;
    pthread_mutex_lock(&m->mu);
    if (s < 0 || m->rv[s][0] == '\0')
        m->bad++;
    if (s >= 0)
        snprintf(m->rv[s], sizeof(m->rv[s]), "%s", kc_obj_resource_version(o));
    m->updates++;
    pthread_mutex_unlock(&m->mu);
}

static void m_delete(void *ud, kc_obj_t *o, int unknown)
{
    mirror_t *m = ud;
    int s = real_slot_of(&G, o);

    pthread_mutex_lock(&m->mu);
    if (s < 0 || m->rv[s][0] == '\0')
        m->bad++;
    if (s >= 0)
        m->rv[s][0] = '\0';
    m->deletes++;
    if (unknown)
        m->unknown_deletes++;
    pthread_mutex_unlock(&m->mu);
}

static int mirror_diff(mirror_t *m, const real_truth_t *t)
{
    int i, diff = 0;

    pthread_mutex_lock(&m->mu);
    for (i = 0; i < NSLOTS; i++)
        if (strcmp(m->rv[i], t->rv[i]) != 0)
            diff++;
    pthread_mutex_unlock(&m->mu);
    return diff;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

/* One random mutation; the server decides (409/404 are expected when our
 * guess of the state is wrong, nothing else is). */
static void mutate(int *done)
{
    int s = (int)rnd(NSLOTS), op = (int)rnd(10);
    char ns[32], nm[32], json[512];
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    int rc;

    snprintf(ns, sizeof(ns), "kc-real-inf-%d", s / NNAMES);
    snprintf(nm, sizeof(nm), "n-%d", s % NNAMES);
    if (op < 4) {
        snprintf(json, sizeof(json),
                 "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"%s\","
                 "\"labels\":{\"kc-real\":\"inf\"}},\"data\":{\"v\":\"%u\"}}", nm, rnd(1000000));
        rc = kc_client_create(A, &kc_res_configmaps, ns, json, strlen(json), &b, &st);
        if (rc != KC_EEXISTS)
            assert_int_equal(rc, 0);
    } else if (op < 8) {
        snprintf(json, sizeof(json), "{\"data\":{\"v\":\"%u\"}}", rnd(1000000));
        rc = kc_client_patch(A, &kc_res_configmaps, ns, nm, KC_PATCH_MERGE, json, strlen(json), NULL, &b, &st);
        if (rc != KC_ENOTFOUND)
            assert_int_equal(rc, 0);
    } else {
        rc = kc_client_delete(A, &kc_res_configmaps, ns, nm, NULL, &b, &st);
        if (rc != KC_ENOTFOUND)
            assert_int_equal(rc, 0);
    }
    if (rc == 0)
        (*done)++;
    kc_buf_free(&b);
}

/* Writes the informers do not see (another resource), so that their
 * resourceVersion falls behind etcd's revision before a compaction. */
static void unseen_writes(int n)
{
    char json[256];
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    int i;

    for (i = 0; i < n; i++) {
        snprintf(json, sizeof(json), "{\"data\":{\"v\":\"%d\"}}", i);
        if (kc_client_patch(A, &kc_res_configmaps, "kc-real-inf-0", "unseen", KC_PATCH_MERGE, json,
                            strlen(json), NULL, &b, &st) == KC_ENOTFOUND) {
            const char *c = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"unseen\"}}";
            assert_int_equal(kc_client_create(A, &kc_res_configmaps, "kc-real-inf-0", c, strlen(c), &b, &st), 0);
        }
    }
    kc_buf_free(&b);
}

static void log_cb(void *ud, kc_log_level_t level, const char *component, const char *msg)
{
    printf("# [%s] %d %s: %s\n", (const char *)ud, (int)level, component, msg);
}

static kc_informer_t *make_informer(kc_client_t *client, int streaming, mirror_t *m, const char *name)
{
    kc_informer_opts_t o = KC_INFORMER_OPTS_INIT;
    kc_handler_t h = KC_HANDLER_INIT;
    kc_informer_t *inf;
    kc_errbuf_t eb;

    o.resource = &kc_res_configmaps;
    o.label_selector = SELECTOR;
    o.page_size = 5;
    o.use_streaming_list = streaming;
    o.backoff_initial_ms = 200;
    o.backoff_max_ms = 1000;
    /* short server-side watch timeouts: watches end and resume often, and
     * the watch cache sends bookmarks ahead of each deadline */
    o.watch_timeout_min_s = 4;
    o.watch_timeout_max_s = 6;
    o.log.fn = log_cb;
    o.log.ud = (void *)name;
    o.log.level = getenv("KC_REAL_DEBUG") ? KC_LOG_DEBUG : KC_LOG_WARN;
    if (kc_informer_new(client, &o, &inf, &eb) != 0)
        fail_msg("informer: %s", eb.msg);
    h.on_add = m_add;
    h.on_update = m_update;
    h.on_delete = m_delete;
    h.ud = m;
    assert_int_equal(kc_informer_add_handler(inf, &h), 0);
    return inf;
}

static void print_state(const char *name, kc_informer_t *inf, mirror_t *m, kc_informer_state_t *s)
{
    kc_informer_state(inf, s);
    printf("# %s: phase %s, lists %lu (relists %lu), watches %lu, restarts %lu, errors %lu, "
           "events +%lu ~%lu -%lu bookmarks %lu error-events %lu, relist diff +%lu ~%lu -%lu, "
           "streaming %d, cached %zu, last error \"%s\"; handler +%lu ~%lu -%lu (unknown %lu)\n",
           name, kc_informer_phase_name(s->phase), (unsigned long)s->lists,
           (unsigned long)s->relists, (unsigned long)s->watches, (unsigned long)s->restarts,
           (unsigned long)s->errors, (unsigned long)s->events_added,
           (unsigned long)s->events_modified, (unsigned long)s->events_deleted,
           (unsigned long)s->events_bookmark, (unsigned long)s->events_error,
           (unsigned long)s->relist_adds, (unsigned long)s->relist_updates,
           (unsigned long)s->relist_deletes, s->streaming_supported, s->cached_objects,
           s->last_error_msg, m->adds, m->updates, m->deletes, m->unknown_deletes);
}

#define NINF 3

static void test_convergence(void **state)
{
    /* paged and streaming with the default client (gzip accepted), and
     * streaming with a client that does not ask for gzip */
    static const char *names[NINF] = { "paged", "streaming", "streaming-nogzip" };
    static mirror_t m[NINF];
    kc_informer_t *inf[NINF];
    kc_informer_state_t s[NINF];
    real_truth_t t;
    int i, k, done = 0, rounds = 120, d[NINF], md[NINF], all;
    const char *san = getenv("KC_SANITIZER");

    (void)state;
    if (san && *san)
        rounds = 60;
    /* a starting population, so the first lists have pages */
    for (i = 0; i < 40; i++)
        mutate(&done);
    for (k = 0; k < NINF; k++) {
        pthread_mutex_init(&m[k].mu, NULL);
        inf[k] = make_informer(k == 2 ? NC : A, k != 0, &m[k], names[k]);
        assert_int_equal(kc_informer_start(inf[k]), 0);
    }
    /* (the gzip streaming informer may not sync at all: judged at the end) */
    assert_int_equal(kc_informer_wait_synced(inf[0], 30000), 0);
    assert_int_equal(kc_informer_wait_synced(inf[2], 30000), 0);

    for (i = 0; i < rounds; i++)
        mutate(&done);
    /* 1: cut every connection */
    unseen_writes(3);
    printf("# restart\n");
    assert_int_equal(real_admin("restart"), 0);
    for (i = 0; i < rounds; i++)
        mutate(&done);
    /* 2: compact past the informers' resourceVersion, then restart: 410 */
    REAL_WAIT_FOR(kc_informer_state(inf[0], &s[0]) == 0 && s[0].phase == KC_INFORMER_WATCHING &&
                      kc_informer_state(inf[2], &s[2]) == 0 && s[2].phase == KC_INFORMER_WATCHING,
                  20000);
    real_sleep_ms(500);
    unseen_writes(3);
    printf("# compact + restart\n");
    assert_int_equal(real_admin("compact"), 0);
    assert_int_equal(real_admin("restart"), 0);
    for (i = 0; i < rounds; i++)
        mutate(&done);
    /* the watch deadlines of 4-6 s bring bookmarks */
    real_sleep_ms(6500);

    assert_int_equal(real_server_truth(A, &G, &t), 0);
    printf("# %d successful mutations, %d objects on the server\n", done, t.n);
    for (i = 0; i < 300; i++) {
        all = 0;
        for (k = 0; k < NINF; k++) {
            d[k] = real_cache_diff(kc_informer_cache(inf[k]), &G, &t, 0);
            md[k] = mirror_diff(&m[k], &t);
            all += d[k] + md[k];
        }
        if (all == 0)
            break;
        real_sleep_ms(100);
    }
    for (k = 0; k < NINF; k++) {
        print_state(names[k], inf[k], &m[k], &s[k]);
        if (d[k])
            real_cache_diff(kc_informer_cache(inf[k]), &G, &t, 1);
    }
    for (k = 0; k < NINF; k++) {
        assert_int_equal(d[k], 0);
        assert_int_equal(md[k], 0);
        assert_int_equal(m[k].bad, 0);
        assert_int_equal(kc_cache_len(kc_informer_cache(inf[k])), (size_t)t.n);
        /* watches resumed after each cut and deadline, at least one 410
         * relist (after the compaction), bookmarks seen */
        assert_true(s[k].restarts >= 2);
        assert_true(s[k].relists >= 1);
        assert_true(s[k].events_bookmark >= 1);
        if (k > 0)
            assert_int_equal(s[k].streaming_supported, 1);
        /* only failures where the server was gone (two restarts: a cut
         * watch, refused connections, the 410) */
        assert_true(s[k].errors <= 8);
    }
    for (k = 0; k < NINF; k++) {
        assert_int_equal(kc_informer_stop(inf[k]), 0);
        kc_informer_free(inf[k]);
        pthread_mutex_destroy(&m[k].mu);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_convergence),
    };

    real_require_env();
    return cmocka_run_group_tests(tests, setup, teardown);
}
