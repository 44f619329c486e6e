/* The watch and list wire details against the real kube-apiserver of
 * tests/realapi/run.sh, where the fake API server must behave the same; the
 * fake's own suite (tests/test_fakeapi.c) checks it against the same
 * expectations (wire_expect.h, shared), so the two pin one behaviour:
 * - test_wire_cases: list/watch option errors (422 with causes, 504, 400,
 *   the watch's 500) and a negative limit, byte for byte;
 * - test_bookmark_shapes: the initial-events-end BOOKMARK of every kind the
 *   fake serves (no creationTimestamp:null; each kind's zero-value fields);
 * - test_bookmark_before_deadline: the bookmark "right before the watcher
 *   timeout" arrives about 2 s before timeoutSeconds, with nothing at the
 *   deadline itself, and carries only kind, apiVersion and resourceVersion;
 * - test_future_rv_watch: a watch from a resourceVersion ahead of the store
 *   stays open and silent (no ERROR event);
 * - test_expired_error_event: the 410 ERROR event of a watch from an
 *   expired resourceVersion, byte for byte (after a restart of
 *   kube-apiserver when its watch cache still serves that revision).
 * Each watch is bounded by timeoutSeconds; the program stops by itself. */
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
#include <time.h>

#include "kc_client.h"
#include "real_support.h"
#include "wire_expect.h"

#define NS "kc-real-watch"

static kc_client_t *A;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int setup(void **state)
{
    kc_client_opts_t o = KC_CLIENT_OPTS_INIT;

    (void)state;
    kc_global_init();
    o.max_retries = 0; /* the 5xx answers are what we look at */
    A = real_client("KC_REAL_KUBECONFIG", &o);
    return real_ensure_ns(A, NS);
}

static int teardown(void **state)
{
    (void)state;
    kc_client_free(A);
    kc_global_cleanup();
    return 0;
}

/* The current resourceVersion of configmaps in NS (a list). */
static void list_rv(char *out, size_t n)
{
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    kc_list_opts_t lo = KC_LIST_OPTS_INIT;
    char *rv;

    lo.label_selector = "nomatch=1";
    assert_int_equal(kc_client_list(A, &kc_res_configmaps, NS, &lo, &b, &st), 0);
    rv = real_meta(b.data, b.len, "resourceVersion");
    snprintf(out, n, "%s", rv);
    free(rv);
    kc_buf_free(&b);
}

static void test_wire_cases(void **state)
{
    char path[256];
    size_t i;

    (void)state;
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps", NS);
    for (i = 0; i < sizeof(wire_cases) / sizeof(wire_cases[0]); i++) {
        kc_buf_t b = KC_BUF_INIT;
        kc_status_t st;
        char *compact = NULL;
        cJSON *j;

        memset(&st, 0, sizeof(st));
        (void)kc_client_request(A, "GET", path, wire_cases[i].query, NULL, NULL, 0, &b, &st);
        j = b.data ? cJSON_ParseWithLength(b.data, b.len) : NULL;
        if (j)
            compact = cJSON_PrintUnformatted(j);
        printf("# %s: %d %.200s\n", wire_cases[i].query, st.http_code, compact ? compact : "");
        if (st.http_code != wire_cases[i].code ||
            (wire_cases[i].body && (!compact || !wire_match(wire_cases[i].body, compact))))
            fail_msg("%s: got %d %s\n  want %d %s", wire_cases[i].query, st.http_code,
                     compact ? compact : "(no JSON body)", wire_cases[i].code,
                     wire_cases[i].body ? wire_cases[i].body : "");
        free(compact);
        cJSON_Delete(j);
        kc_buf_free(&b);
    }
}

typedef struct wrec {
    int n, bookmarks, errors;
    char first[1024];          /* the first event's object bytes */
    char bm[8][512];           /* bookmark objects */
    double bm_t[8];            /* their arrival, seconds after t0 */
    double t0;
    int stop_at_bookmark;
} wrec_t;

static int rec_cb(void *ud, const kc_watch_event_t *ev)
{
    wrec_t *w = ud;

    if (w->n == 0)
        snprintf(w->first, sizeof(w->first), "%.*s", (int)ev->object_len, ev->object);
    w->n++;
    if (ev->type == KC_WATCH_ERROR)
        w->errors++;
    if (ev->type == KC_WATCH_BOOKMARK) {
        if (w->bookmarks < 8) {
            snprintf(w->bm[w->bookmarks], sizeof(w->bm[0]), "%.*s", (int)ev->object_len, ev->object);
            w->bm_t[w->bookmarks] = now_s() - w->t0;
        }
        w->bookmarks++;
        if (w->stop_at_bookmark)
            return 1;
    }
    return 0;
}

static void test_bookmark_shapes(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(wire_bookmarks) / sizeof(wire_bookmarks[0]); i++) {
        const struct wire_bookmark *k = &wire_bookmarks[i];
        kc_watch_opts_t wo = KC_WATCH_OPTS_INIT;
        kc_resource_t r;
        kc_status_t st;
        wrec_t w;
        char want[1024];

        assert_int_equal(kc_client_discover(A, k->gv, k->kind, &r, &st), 0);
        memset(&w, 0, sizeof(w));
        w.stop_at_bookmark = 1;
        wo.send_initial_events = 1;
        wo.label_selector = "nomatch=1";
        wo.timeout_seconds = 10;
        assert_int_equal(kc_client_watch(A, &r, NULL, &wo, rec_cb, &w, &st), KC_ESTOPPED);
        snprintf(want, sizeof(want),
                 "{\"kind\":\"%s\",\"apiVersion\":\"%s\",\"metadata\":{\"resourceVersion\":\"#\","
                 "\"annotations\":{\"k8s.io/initial-events-end\":\"true\"}}%s}",
                 k->kind, k->gv, k->tail);
        printf("# %s: %s\n", k->kind, w.bm[0]);
        assert_int_equal(w.n, 1);
        if (!wire_match(want, w.bm[0]))
            fail_msg("%s bookmark:\n  got  %s\n  want %s", k->kind, w.bm[0], want);
    }
}

/* A ConfigMap outside the watch's selector, created 1 s from now from
 * another thread: the store moves on while the watch runs (the real cacher
 * sends bookmarks only past its revision when the watch started). */
static void *create_later(void *arg)
{
    const char *cm = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"generateName\":\"bm-\"}}";
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;

    (void)arg;
    real_sleep_ms(1000);
    if (kc_client_create(A, &kc_res_configmaps, NS, cm, strlen(cm), &b, &st) != 0)
        fprintf(stderr, "create_later: %d %s\n", st.http_code, st.message);
    kc_buf_free(&b);
    return NULL;
}

static void test_bookmark_before_deadline(void **state)
{
    kc_watch_opts_t wo = KC_WATCH_OPTS_INIT;
    kc_status_t st;
    char rv0[64];
    pthread_t t;
    double end;
    wrec_t w;
    int i;

    (void)state;
    list_rv(rv0, sizeof(rv0));
    memset(&w, 0, sizeof(w));
    wo.resource_version = rv0;
    wo.label_selector = "nomatch=1";
    wo.timeout_seconds = 6;
    w.t0 = now_s();
    assert_int_equal(pthread_create(&t, NULL, create_later, NULL), 0);
    assert_int_equal(kc_client_watch(A, &kc_res_configmaps, NS, &wo, rec_cb, &w, &st), 0);
    end = now_s() - w.t0;
    pthread_join(t, NULL);
    printf("# watch of 6 s ended after %.2f s: %d bookmark(s)", end, w.bookmarks);
    for (i = 0; i < w.bookmarks && i < 8; i++)
        printf(" at %.2f s", w.bm_t[i]);
    printf("\n");
    assert_true(end > 5.0);
    assert_int_equal(w.n, w.bookmarks);
    assert_true(w.bookmarks >= 1 && w.bookmarks <= 3);
    for (i = 0; i < w.bookmarks && i < 8; i++) {
        /* ~2 s before the deadline (the cacher's 1 s buckets and timer),
         * none at the deadline */
        assert_true(w.bm_t[i] > 2.5);
        assert_true(end - w.bm_t[i] > 0.3);
        if (!wire_match("{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"#\"}}",
                        w.bm[i]))
            fail_msg("bookmark: %s", w.bm[i]);
    }
}

static void test_future_rv_watch(void **state)
{
    kc_watch_opts_t wo = KC_WATCH_OPTS_INIT;
    kc_status_t st;
    double end;
    wrec_t w;

    (void)state;
    memset(&w, 0, sizeof(w));
    wo.resource_version = "99999999";
    wo.timeout_seconds = 2;
    w.t0 = now_s();
    assert_int_equal(kc_client_watch(A, &kc_res_configmaps, NS, &wo, rec_cb, &w, &st), 0);
    end = now_s() - w.t0;
    printf("# watch from a future resourceVersion: %d events, ended after %.2f s\n", w.n, end);
    assert_int_equal(w.n, 0);
    assert_true(end > 1.5);
}

static void test_expired_error_event(void **state)
{
    kc_watch_opts_t wo = KC_WATCH_OPTS_INIT;
    kc_status_t st;
    char want[512];
    wrec_t w;
    int attempt;

    (void)state;
    for (attempt = 0; attempt < 2; attempt++) {
        memset(&w, 0, sizeof(w));
        wo.resource_version = "2";
        wo.timeout_seconds = 2;
        assert_int_equal(kc_client_watch(A, &kc_res_configmaps, NS, &wo, rec_cb, &w, &st), 0);
        if (w.errors)
            break;
        /* a watch cache that still replays from its start (it never
         * dropped a revision): a new kube-apiserver starts at the current
         * one */
        printf("# no 410 yet (%d events): restarting kube-apiserver\n", w.n);
        assert_int_equal(real_admin("restart"), 0);
    }
    printf("# %s\n", w.first);
    assert_int_equal(w.n, 1);
    assert_int_equal(w.errors, 1);
    snprintf(want, sizeof(want), WIRE_EXPIRED_OBJECT_FMT, "2");
    if (!wire_match(want, w.first))
        fail_msg("410 event object:\n  got  %s\n  want %s", w.first, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_cases),
        cmocka_unit_test(test_bookmark_shapes),
        cmocka_unit_test(test_bookmark_before_deadline),
        cmocka_unit_test(test_future_rv_watch),
        cmocka_unit_test(test_expired_error_event),
    };

    real_require_env();
    return cmocka_run_group_tests(tests, setup, teardown);
}
