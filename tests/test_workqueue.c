/* Unit tests for the work queue: every client-go rule, with real threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kc_controller.h"

#define MS 1000000ull

static int sanitizer(void)
{
    const char *s = getenv("KC_SANITIZER");
    return s != NULL && *s != '\0';
}

static kc_workqueue_t *newq(uint64_t base, uint64_t max, double qps, int burst,
                            kc_metrics_t *m)
{
    kc_workqueue_opts_t o = KC_WORKQUEUE_OPTS_INIT;
    kc_workqueue_t *q = NULL;

    o.name = "test";
    o.base_delay_ns = base;
    o.max_delay_ns = max;
    o.qps = qps;
    o.burst = burst;
    o.metrics = m;
    assert_int_equal(kc_workqueue_new(&o, &q), 0);
    return q;
}

static void expect_get(kc_workqueue_t *q, const char *want)
{
    char *k = NULL;
    assert_int_equal(kc_workqueue_get_timeout(q, 2000 * MS, &k), 0);
    assert_string_equal(k, want);
    free(k);
}

static void expect_empty(kc_workqueue_t *q, uint64_t wait_ns)
{
    char *k = NULL;
    int rc = kc_workqueue_get_timeout(q, wait_ns, &k);
    if (rc == 0)
        fail_msg("queue should be empty, got %s", k);
    assert_int_equal(rc, KC_ETIMEOUT);
}

static void test_dedup_and_fifo(void **state)
{
    kc_workqueue_t *q = newq(5 * MS, 1000 * MS, 10, 100, NULL);

    (void)state;
    assert_int_equal(kc_workqueue_add(q, "ns/a"), 0);
    assert_int_equal(kc_workqueue_add(q, "ns/b"), 0);
    assert_int_equal(kc_workqueue_add(q, "ns/a"), 0);
    assert_int_equal(kc_workqueue_add(q, "ns/c"), 0);
    assert_int_equal(kc_workqueue_add(q, "ns/b"), 0);
    assert_int_equal(kc_workqueue_len(q), 3);
    expect_get(q, "ns/a");
    expect_get(q, "ns/b");
    expect_get(q, "ns/c");
    assert_int_equal(kc_workqueue_processing(q), 3);
    kc_workqueue_done(q, "ns/a");
    kc_workqueue_done(q, "ns/b");
    kc_workqueue_done(q, "ns/c");
    assert_int_equal(kc_workqueue_len(q), 0);
    assert_int_equal(kc_workqueue_processing(q), 0);
    expect_empty(q, 10 * MS);
    kc_workqueue_free(q);
}

static void test_requeue_while_processing(void **state)
{
    kc_workqueue_t *q = newq(5 * MS, 1000 * MS, 10, 100, NULL);

    (void)state;
    kc_workqueue_add(q, "ns/a");
    expect_get(q, "ns/a");
    /* added twice while processing: queued once, only after done */
    kc_workqueue_add(q, "ns/a");
    kc_workqueue_add(q, "ns/a");
    assert_int_equal(kc_workqueue_len(q), 0);
    expect_empty(q, 20 * MS);
    kc_workqueue_done(q, "ns/a");
    assert_int_equal(kc_workqueue_len(q), 1);
    expect_get(q, "ns/a");
    kc_workqueue_done(q, "ns/a");
    expect_empty(q, 10 * MS);
    kc_workqueue_free(q);
}

/* Many workers and producers: a key is never processed by two workers at
 * once, and every key added after its last processing started is processed
 * again. */
#define NKEYS 16
typedef struct stress {
    kc_workqueue_t *q;
    atomic_int busy[NKEYS];
    atomic_int processed;
    atomic_int overlap;
    atomic_long last_add[NKEYS];   /* sequence number of the last add */
    atomic_long last_seen[NKEYS];  /* highest add seq observed at get */
    atomic_long seq;
    int adds_per_producer;
} stress_t;

static void *stress_worker(void *arg)
{
    stress_t *s = arg;
    char *k;

    while (kc_workqueue_get(s->q, &k) == 0) {
        int i = atoi(k + 3);
        long seen = atomic_load(&s->last_add[i]);
        if (atomic_fetch_add(&s->busy[i], 1) != 0)
            atomic_fetch_add(&s->overlap, 1);
        if (seen > atomic_load(&s->last_seen[i]))
            atomic_store(&s->last_seen[i], seen);
        struct timespec ts = { 0, 20000 };
        nanosleep(&ts, NULL);
        atomic_fetch_sub(&s->busy[i], 1);
        atomic_fetch_add(&s->processed, 1);
        kc_workqueue_done(s->q, k);
        free(k);
    }
    return NULL;
}

static void *stress_producer(void *arg)
{
    stress_t *s = arg;
    unsigned seed = (unsigned)(uintptr_t)&seed;
    char key[32];

    for (int n = 0; n < s->adds_per_producer; n++) {
        int i = (int)(rand_r(&seed) % NKEYS);
        snprintf(key, sizeof(key), "ns/%d", i);
        long sq = atomic_fetch_add(&s->seq, 1) + 1;
        atomic_store(&s->last_add[i], sq);
        assert_int_equal(kc_workqueue_add(s->q, key), 0);
        if (n % 64 == 0) {
            struct timespec ts = { 0, 100000 };
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

static void test_never_two_workers(void **state)
{
    stress_t s;
    pthread_t w[4], p[3];

    (void)state;
    memset(&s, 0, sizeof(s));
    s.q = newq(5 * MS, 1000 * MS, 10, 100, NULL);
    s.adds_per_producer = sanitizer() ? 1000 : 5000;
    for (int i = 0; i < 4; i++)
        pthread_create(&w[i], NULL, stress_worker, &s);
    for (int i = 0; i < 3; i++)
        pthread_create(&p[i], NULL, stress_producer, &s);
    for (int i = 0; i < 3; i++)
        pthread_join(p[i], NULL);
    /* let the workers empty the queue, then stop them */
    while (kc_workqueue_len(s.q) > 0 || kc_workqueue_processing(s.q) > 0) {
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    assert_int_equal(kc_workqueue_shutdown_drain(s.q, 5000 * MS), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(w[i], NULL);
    assert_int_equal(atomic_load(&s.overlap), 0);
    assert_true(atomic_load(&s.processed) > 0);
    assert_true(atomic_load(&s.processed) <= 3 * s.adds_per_producer);
    /* every key's last add was observed by a processing that started after it */
    for (int i = 0; i < NKEYS; i++)
        assert_int_equal(atomic_load(&s.last_seen[i]), atomic_load(&s.last_add[i]));
    kc_workqueue_free(s.q);
}

static void test_add_after(void **state)
{
    kc_workqueue_t *q = newq(5 * MS, 1000 * MS, 10, 100, NULL);
    uint64_t t0;

    (void)state;
    t0 = kc_now_ns();
    assert_int_equal(kc_workqueue_add_after(q, "ns/late", 80 * MS), 0);
    assert_int_equal(kc_workqueue_add_after(q, "ns/early", 30 * MS), 0);
    assert_int_equal(kc_workqueue_waiting(q), 2);
    assert_int_equal(kc_workqueue_len(q), 0);
    expect_get(q, "ns/early");
    assert_true(kc_now_ns() - t0 >= 30 * MS);
    expect_get(q, "ns/late");
    assert_true(kc_now_ns() - t0 >= 80 * MS);
    kc_workqueue_done(q, "ns/early");
    kc_workqueue_done(q, "ns/late");

    /* a pending delayed add keeps the earlier deadline */
    t0 = kc_now_ns();
    kc_workqueue_add_after(q, "ns/x", 5000 * MS);
    kc_workqueue_add_after(q, "ns/x", 20 * MS);
    kc_workqueue_add_after(q, "ns/x", 3000 * MS);
    assert_int_equal(kc_workqueue_waiting(q), 1);
    expect_get(q, "ns/x");
    assert_true(kc_now_ns() - t0 < 2000 * MS);
    kc_workqueue_done(q, "ns/x");

    /* a delayed item that is already queued is not queued twice */
    kc_workqueue_add(q, "ns/y");
    kc_workqueue_add_after(q, "ns/y", 10 * MS);
    expect_get(q, "ns/y");
    expect_empty(q, 40 * MS); /* the delayed add fired while processing... */
    kc_workqueue_done(q, "ns/y");
    expect_get(q, "ns/y");    /* ...so it comes back once, after done */
    kc_workqueue_done(q, "ns/y");
    expect_empty(q, 10 * MS);
    kc_workqueue_free(q);
}

/* A getter blocked with nothing queued is woken by a later add_after whose
 * deadline is earlier than anything it was waiting for. */
typedef struct getter {
    kc_workqueue_t *q;
    char *key;
    int rc;
} getter_t;

static void *getter_thread(void *arg)
{
    getter_t *g = arg;
    g->rc = kc_workqueue_get(g->q, &g->key);
    return NULL;
}

static void test_blocked_getter_woken(void **state)
{
    kc_workqueue_t *q = newq(5 * MS, 1000 * MS, 10, 100, NULL);
    getter_t g = { q, NULL, -1 };
    pthread_t t;
    struct timespec ts = { 0, 20 * 1000000 };

    (void)state;
    kc_workqueue_add_after(q, "ns/far", 10000 * MS);
    pthread_create(&t, NULL, getter_thread, &g);
    nanosleep(&ts, NULL);
    kc_workqueue_add_after(q, "ns/near", 10 * MS);
    pthread_join(t, NULL);
    assert_int_equal(g.rc, 0);
    assert_string_equal(g.key, "ns/near");
    free(g.key);
    kc_workqueue_done(q, "ns/near");
    kc_workqueue_free(q);
}

static void test_backoff_growth_and_forget(void **state)
{
    /* qps <= 0 disables the bucket so only the per-item backoff shows */
    kc_workqueue_t *q = newq(1 * MS, 8 * MS, 0, 0, NULL);
    const uint64_t want[] = { 1 * MS, 2 * MS, 4 * MS, 8 * MS, 8 * MS, 8 * MS };
    uint64_t d;

    (void)state;
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_int_equal(kc_workqueue_add_rate_limited(q, "ns/f", &d), 0);
        assert_int_equal(d, want[i]);
        assert_int_equal(kc_workqueue_num_requeues(q, "ns/f"), (int)i + 1);
        expect_get(q, "ns/f");
        kc_workqueue_done(q, "ns/f");
    }
    kc_workqueue_forget(q, "ns/f");
    assert_int_equal(kc_workqueue_num_requeues(q, "ns/f"), 0);
    assert_int_equal(kc_workqueue_add_rate_limited(q, "ns/f", &d), 0);
    assert_int_equal(d, 1 * MS);
    /* other keys have their own count */
    assert_int_equal(kc_workqueue_add_rate_limited(q, "ns/g", &d), 0);
    assert_int_equal(d, 1 * MS);
    kc_workqueue_free(q);
}

static void test_new_event_during_backoff(void **state)
{
    kc_workqueue_t *q = newq(1000 * MS, 100000 * MS, 0, 0, NULL);
    uint64_t d;

    (void)state;
    assert_int_equal(kc_workqueue_add_rate_limited(q, "ns/k", &d), 0);
    assert_int_equal(d, 1000 * MS);
    assert_int_equal(kc_workqueue_num_requeues(q, "ns/k"), 1);
    /* a new event (plain add) while waiting: processed now, count unchanged */
    kc_workqueue_add(q, "ns/k");
    assert_int_equal(kc_workqueue_num_requeues(q, "ns/k"), 1);
    /* a second rate-limited add before the item was handed out again is
     * the same failure, not another one */
    assert_int_equal(kc_workqueue_add_rate_limited(q, "ns/k", &d), 0);
    assert_int_equal(kc_workqueue_num_requeues(q, "ns/k"), 1);
    assert_true(d <= 1000 * MS);
    expect_get(q, "ns/k");
    kc_workqueue_done(q, "ns/k");
    /* a real failure after processing raises it */
    assert_int_equal(kc_workqueue_add_rate_limited(q, "ns/k", &d), 0);
    assert_int_equal(kc_workqueue_num_requeues(q, "ns/k"), 2);
    kc_workqueue_free(q);
}

static void test_token_bucket_and_cap(void **state)
{
    /* burst 2 at 10 qps: the third distinct key waits ~100 ms */
    kc_workqueue_t *q = newq(1 * MS, 1000 * MS, 10, 2, NULL);
    uint64_t d1, d2, d3;

    (void)state;
    kc_workqueue_add_rate_limited(q, "ns/1", &d1);
    kc_workqueue_add_rate_limited(q, "ns/2", &d2);
    kc_workqueue_add_rate_limited(q, "ns/3", &d3);
    assert_int_equal(d1, 1 * MS);
    assert_int_equal(d2, 1 * MS);
    assert_true(d3 > 90 * MS && d3 <= 100 * MS);
    kc_workqueue_free(q);

    /* the bucket's debt never pushes a delay past the maximum */
    q = newq(1 * MS, 50 * MS, 1, 0, NULL);
    for (int i = 0; i < 20; i++) {
        char key[16];
        snprintf(key, sizeof(key), "ns/%d", i);
        kc_workqueue_add_rate_limited(q, key, &d1);
        assert_true(d1 <= 50 * MS);
    }
    assert_int_equal(d1, 50 * MS);
    kc_workqueue_free(q);

    /* huge failure counts do not overflow past the maximum */
    q = newq(5 * MS, 1000000 * MS, 0, 0, NULL);
    for (int i = 0; i < 100; i++) {
        kc_workqueue_add_rate_limited(q, "ns/x", &d1);
        assert_true(d1 <= 1000000 * MS);
        kc_workqueue_add(q, "ns/x");
        expect_get(q, "ns/x");
        kc_workqueue_done(q, "ns/x");
    }
    assert_int_equal(d1, 1000000 * MS);
    assert_int_equal(kc_workqueue_num_requeues(q, "ns/x"), 100);
    kc_workqueue_free(q);
}

static void test_shutdown(void **state)
{
    kc_workqueue_t *q = newq(5 * MS, 1000 * MS, 10, 100, NULL);
    getter_t g = { q, NULL, 0 };
    pthread_t t;
    struct timespec ts = { 0, 20 * 1000000 };
    char *k;

    (void)state;
    pthread_create(&t, NULL, getter_thread, &g);
    nanosleep(&ts, NULL);
    kc_workqueue_shutdown(q);
    pthread_join(t, NULL);
    assert_int_equal(g.rc, KC_ESTOPPED);
    assert_true(kc_workqueue_shutting_down(q));
    assert_int_equal(kc_workqueue_add(q, "ns/a"), KC_ESTOPPED);
    assert_int_equal(kc_workqueue_get(q, &k), KC_ESTOPPED);
    kc_workqueue_free(q);

    /* queued items are still handed out after shutdown; waiting ones dropped */
    q = newq(5 * MS, 1000 * MS, 10, 100, NULL);
    kc_workqueue_add(q, "ns/a");
    kc_workqueue_add(q, "ns/b");
    kc_workqueue_add_after(q, "ns/c", 10 * MS);
    kc_workqueue_shutdown(q);
    assert_int_equal(kc_workqueue_waiting(q), 0);
    expect_get(q, "ns/a");
    expect_get(q, "ns/b");
    assert_int_equal(kc_workqueue_get(q, &k), KC_ESTOPPED);
    kc_workqueue_done(q, "ns/a");
    kc_workqueue_done(q, "ns/b");
    kc_workqueue_free(q);
}

typedef struct slow_done {
    kc_workqueue_t *q;
    uint64_t delay_ns;
} slow_done_t;

static void *done_later(void *arg)
{
    slow_done_t *s = arg;
    struct timespec ts = { 0, (long)s->delay_ns };
    nanosleep(&ts, NULL);
    kc_workqueue_done(s->q, "ns/busy");
    return NULL;
}

static void test_shutdown_drain(void **state)
{
    kc_workqueue_t *q = newq(5 * MS, 1000 * MS, 10, 100, NULL);
    slow_done_t s = { q, 60 * MS };
    pthread_t t;
    uint64_t t0;

    (void)state;
    kc_workqueue_add(q, "ns/busy");
    expect_get(q, "ns/busy");
    pthread_create(&t, NULL, done_later, &s);
    t0 = kc_now_ns();
    assert_int_equal(kc_workqueue_shutdown_drain(q, 0), 0);
    assert_true(kc_now_ns() - t0 >= 50 * MS);
    assert_int_equal(kc_workqueue_processing(q), 0);
    pthread_join(t, NULL);
    kc_workqueue_free(q);

    /* bounded drain gives up */
    q = newq(5 * MS, 1000 * MS, 10, 100, NULL);
    kc_workqueue_add(q, "ns/busy");
    expect_get(q, "ns/busy");
    assert_int_equal(kc_workqueue_shutdown_drain(q, 30 * MS), KC_ETIMEOUT);
    kc_workqueue_done(q, "ns/busy");
    assert_int_equal(kc_workqueue_shutdown_drain(q, 30 * MS), 0);
    kc_workqueue_free(q);
}

static void test_metrics(void **state)
{
    kc_metrics_t *m = NULL;
    kc_workqueue_t *q;
    kc_metric_t *f;
    const char *lv[] = { "test", "test" };
    char *text = NULL;
    size_t len = 0;

    (void)state;
    assert_int_equal(kc_metrics_new(&m), 0);
    q = newq(1 * MS, 1000 * MS, 0, 0, m);
    kc_workqueue_add(q, "ns/a");
    kc_workqueue_add(q, "ns/a");
    kc_workqueue_add(q, "ns/b");
    assert_int_equal(kc_metrics_gauge(m, "workqueue_depth", "", (const char *[]){ "name", "controller", NULL }, &f), 0);
    assert_true(kc_metric_value(f, lv) == 2.0);
    assert_int_equal(kc_metrics_counter(m, "workqueue_adds_total", "", (const char *[]){ "name", "controller", NULL }, &f), 0);
    assert_true(kc_metric_value(f, lv) == 2.0);
    expect_get(q, "ns/a");
    kc_workqueue_add_rate_limited(q, "ns/c", NULL);
    assert_int_equal(kc_metrics_counter(m, "workqueue_retries_total", "", (const char *[]){ "name", "controller", NULL }, &f), 0);
    assert_true(kc_metric_value(f, lv) == 1.0);
    struct timespec ts = { 0, 30 * 1000000 };
    nanosleep(&ts, NULL);
    assert_int_equal(kc_metrics_write(m, &text, &len), 0);
    assert_non_null(strstr(text, "# TYPE workqueue_depth gauge\n"));
    assert_non_null(strstr(text, "workqueue_adds_total{name=\"test\",controller=\"test\"} 3\n"));
    assert_non_null(strstr(text, "workqueue_queue_duration_seconds_count{name=\"test\",controller=\"test\"} 1\n"));
    /* ns/a has been processing for >= 30 ms */
    assert_int_equal(kc_metrics_gauge(m, "workqueue_longest_running_processor_seconds", "", (const char *[]){ "name", "controller", NULL }, &f), 0);
    assert_true(kc_metric_value(f, lv) >= 0.03);
    free(text);
    kc_workqueue_done(q, "ns/a");
    assert_int_equal(kc_metrics_counter(m, "workqueue_work_duration_seconds", "", (const char *[]){ "name", "controller", NULL }, &f), KC_EEXISTS);
    kc_workqueue_free(q);
    kc_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dedup_and_fifo),
        cmocka_unit_test(test_requeue_while_processing),
        cmocka_unit_test(test_never_two_workers),
        cmocka_unit_test(test_add_after),
        cmocka_unit_test(test_blocked_getter_woken),
        cmocka_unit_test(test_backoff_growth_and_forget),
        cmocka_unit_test(test_new_event_during_backoff),
        cmocka_unit_test(test_token_bucket_and_cap),
        cmocka_unit_test(test_shutdown),
        cmocka_unit_test(test_shutdown_drain),
        cmocka_unit_test(test_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
