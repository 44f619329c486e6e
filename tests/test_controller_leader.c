/* Leader election against the fake API server: two electors in one
 * process on one Lease; exactly one leads; a crashed leader (abandoned,
 * never released) is replaced within the lease duration plus a retry;
 * a released lease is taken over at the next retry; a leader that cannot
 * renew stops leading within the renew deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <time.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fakeapi.h"
#include "kc_client.h"
#include "kc_controller.h"

#define MS 1000000ull
#define LEASE_NS (2000 * MS)
#define RENEW_NS (1500 * MS)
#define RETRY_NS (250 * MS)

typedef struct env {
    char dir[64];
    char kubeconfig[128];
    kc_fakeapi_t *fa;
    kc_config_t *cfg;
    kc_client_t *cl[3];
} env_t;

typedef struct counts {
    atomic_int started, stopped;
} counts_t;

static void on_started(void *ud)
{
    counts_t *c = ud;
    atomic_fetch_add(&c->started, 1);
}

static void on_stopped(void *ud)
{
    counts_t *c = ud;
    atomic_fetch_add(&c->stopped, 1);
}

static void env_up(env_t *e)
{
    kc_fakeapi_opts_t fo = KC_FAKEAPI_OPTS_INIT;
    kc_config_opts_t co = KC_CONFIG_OPTS_INIT;
    kc_client_opts_t clo = KC_CLIENT_OPTS_INIT;
    kc_errbuf_t eb;

    memset(e, 0, sizeof(*e));
    snprintf(e->dir, sizeof(e->dir), "/tmp/kc-leader-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->kubeconfig, sizeof(e->kubeconfig), "%s/kubeconfig", e->dir);
    assert_int_equal(kc_fakeapi_new(&fo, &e->fa), 0);
    assert_int_equal(kc_fakeapi_start(e->fa), 0);
    assert_int_equal(kc_fakeapi_write_kubeconfig(e->fa, e->kubeconfig, NULL), 0);
    assert_int_equal(kc_fakeapi_apply_json(e->fa, "namespaces",
                                           "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\","
                                           "\"metadata\":{\"name\":\"kcache-system\"}}",
                                           NULL), 0);
    co.kubeconfig = e->kubeconfig;
    assert_int_equal(kc_config_load(&co, &e->cfg, &eb), 0);
    /* as kcache-controller does: short requests, no retries */
    clo.request_timeout_ms = 500;
    clo.connect_timeout_ms = 500;
    clo.max_retries = 0;
    clo.qps = 0;
    for (int i = 0; i < 3; i++)
        assert_int_equal(kc_client_new(e->cfg, &clo, &e->cl[i], &eb), 0);
}

static void env_down(env_t *e)
{
    for (int i = 0; i < 3; i++)
        kc_client_free(e->cl[i]);
    kc_config_free(e->cfg);
    kc_fakeapi_free(e->fa);
    unlink(e->kubeconfig);
    rmdir(e->dir);
}

static kc_leader_t *elector(env_t *e, int i, const char *id, counts_t *c, kc_metrics_t *m)
{
    kc_leader_opts_t o = KC_LEADER_OPTS_INIT;
    kc_leader_t *le = NULL;
    kc_errbuf_t eb;

    o.client = e->cl[i];
    o.lease_namespace = "kcache-system";
    o.lease_name = "kcache-controller";
    o.identity = id;
    o.lease_duration_ns = LEASE_NS;
    o.renew_deadline_ns = RENEW_NS;
    o.retry_period_ns = RETRY_NS;
    o.on_started_leading = on_started;
    o.on_stopped_leading = on_stopped;
    o.ud = c;
    o.metrics = m;
    assert_int_equal(kc_leader_start(&o, &le, &eb), 0);
    return le;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Wait until pred holds; returns elapsed ns, or fails after timeout. */
#define WAIT_FOR(cond, timeout_ms)                                              \
    ({                                                                          \
        uint64_t t0_ = kc_now_ns();                                             \
        while (!(cond)) {                                                       \
            if (kc_now_ns() - t0_ > (uint64_t)(timeout_ms) * MS)                \
                fail_msg("timed out after %d ms waiting for %s", (int)(timeout_ms), #cond); \
            sleep_ms(10);                                                       \
        }                                                                       \
        kc_now_ns() - t0_;                                                      \
    })

static void lease_spec(env_t *e, char *holder, size_t hsz, long *transitions, long *duration)
{
    char *json = NULL;
    cJSON *o, *spec, *v;

    assert_int_equal(kc_fakeapi_get_json(e->fa, "leases", "kcache-system", "kcache-controller",
                                         &json), 0);
    o = cJSON_Parse(json);
    assert_non_null(o);
    spec = cJSON_GetObjectItem(o, "spec");
    v = cJSON_GetObjectItem(spec, "holderIdentity");
    snprintf(holder, hsz, "%s", cJSON_IsString(v) ? v->valuestring : "");
    v = cJSON_GetObjectItem(spec, "leaseTransitions");
    *transitions = cJSON_IsNumber(v) ? (long)v->valuedouble : -1;
    v = cJSON_GetObjectItem(spec, "leaseDurationSeconds");
    *duration = cJSON_IsNumber(v) ? (long)v->valuedouble : -1;
    cJSON_Delete(o);
    free(json);
}

static void test_bad_options(void **state)
{
    kc_leader_opts_t o = KC_LEADER_OPTS_INIT;
    kc_leader_t *le = NULL;
    kc_errbuf_t eb;

    (void)state;
    assert_int_equal(kc_leader_start(&o, &le, &eb), -EINVAL); /* no client */
    o.client = (kc_client_t *)&o; /* never used: validation fails first */
    o.lease_namespace = "ns";
    o.lease_name = "x";
    o.renew_deadline_ns = o.lease_duration_ns;
    assert_int_equal(kc_leader_start(&o, &le, &eb), -EINVAL);
    assert_non_null(strstr(eb.msg, "renew deadline"));
    o.renew_deadline_ns = 10000 * MS;
    o.retry_period_ns = 9000 * MS; /* 1.2 x 9 s > 10 s */
    assert_int_equal(kc_leader_start(&o, &le, &eb), -EINVAL);
    assert_null(le);
}

static void test_two_electors_crash_and_release(void **state)
{
    env_t e;
    counts_t ca = { 0, 0 }, cb = { 0, 0 }, cc = { 0, 0 };
    kc_leader_t *a, *b, *c, *leader, *standby;
    counts_t *lc, *sc;
    kc_metrics_t *m;
    kc_metric_t *g;
    char holder[256];
    long trans, dur;
    uint64_t took;

    (void)state;
    env_up(&e);
    assert_int_equal(kc_metrics_new(&m), 0);
    a = elector(&e, 0, "pod-a_1", &ca, m);
    b = elector(&e, 1, "pod-b_2", &cb, NULL);

    /* exactly one leads */
    WAIT_FOR(kc_leader_is_leader(a) || kc_leader_is_leader(b), 5000);
    sleep_ms(600); /* a few retry periods: the other must stay standby */
    assert_true(kc_leader_is_leader(a) != kc_leader_is_leader(b));
    leader = kc_leader_is_leader(a) ? a : b;
    standby = leader == a ? b : a;
    lc = leader == a ? &ca : &cb;
    sc = leader == a ? &cb : &ca;
    assert_int_equal(atomic_load(&lc->started), 1);
    assert_int_equal(atomic_load(&sc->started), 0);
    lease_spec(&e, holder, sizeof(holder), &trans, &dur);
    assert_string_equal(holder, kc_leader_identity(leader));
    assert_int_equal(dur, 2);
    assert_int_equal(kc_metrics_gauge(m, "leader_election_master_status", "",
                                      (const char *const[]){ "name", NULL }, &g), 0);
    assert_true(kc_metric_value(g, (const char *const[]){ "kcache-controller" }) ==
                (leader == a ? 1.0 : 0.0));

    /* crash the leader: it stops renewing and never releases */
    kc_leader_abandon(leader);
    if (leader == a)
        a = NULL;
    else
        b = NULL;
    took = WAIT_FOR(kc_leader_is_leader(standby), 10000);
    /* client-go's bound: the lease duration from the standby's last
     * observation of a renewal, plus its (jittered) retry period */
    assert_true(took <= LEASE_NS + 3 * RETRY_NS + 500 * MS);
    assert_int_equal(atomic_load(&sc->started), 1);
    lease_spec(&e, holder, sizeof(holder), &trans, &dur);
    assert_string_equal(holder, kc_leader_identity(standby));
    assert_int_equal(trans, 1);

    /* a third elector waits; a graceful stop of the leader releases the
     * lease and the waiting one takes it at its next retry, well within
     * the lease duration */
    c = elector(&e, 2, "pod-c_3", &cc, NULL);
    sleep_ms(500);
    assert_false(kc_leader_is_leader(c));
    kc_leader_stop(standby);
    if (standby == a)
        a = NULL;
    else
        b = NULL;
    assert_int_equal(atomic_load(&sc->stopped), 1);
    took = WAIT_FOR(kc_leader_is_leader(c), 5000);
    assert_true(took < LEASE_NS);
    lease_spec(&e, holder, sizeof(holder), &trans, &dur);
    assert_string_equal(holder, "pod-c_3");
    assert_int_equal(trans, 2);

    /* the server goes away: the leader stops leading within the renew
     * deadline (plus one request timeout) */
    kc_fakeapi_stop(e.fa);
    took = WAIT_FOR(atomic_load(&cc.stopped) == 1, 5000);
    assert_true(took <= RENEW_NS + 1000 * MS);
    assert_false(kc_leader_is_leader(c));
    kc_leader_stop(c);
    assert_int_equal(atomic_load(&cc.stopped), 1); /* not called twice */
    kc_leader_stop(a);
    kc_leader_stop(b);
    kc_metrics_free(m);
    env_down(&e);
}

/* Another holder overwrites the lease (e.g. an operator, or a replica
 * whose clock ran ahead): the leader notices on its next renewal and stops
 * leading at once, not after the renew deadline. */
static void test_lease_taken_away(void **state)
{
    env_t e;
    counts_t ca = { 0, 0 };
    kc_leader_t *a;
    uint64_t took;
    char holder[256];
    long trans, dur;

    (void)state;
    env_up(&e);
    a = elector(&e, 0, "pod-a_1", &ca, NULL);
    WAIT_FOR(kc_leader_is_leader(a), 5000);
    assert_int_equal(kc_fakeapi_apply_json(e.fa, "leases",
        "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\",\"metadata\":{"
        "\"name\":\"kcache-controller\",\"namespace\":\"kcache-system\"},\"spec\":{"
        "\"holderIdentity\":\"intruder\",\"leaseDurationSeconds\":30,"
        "\"leaseTransitions\":7}}", NULL), 0);
    took = WAIT_FOR(atomic_load(&ca.stopped) == 1, 5000);
    assert_true(took < RENEW_NS);
    assert_false(kc_leader_is_leader(a));
    /* it does not take the intruder's valid lease */
    sleep_ms(600);
    lease_spec(&e, holder, sizeof(holder), &trans, &dur);
    assert_string_equal(holder, "intruder");
    assert_int_equal(atomic_load(&ca.started), 1);
    kc_leader_stop(a);
    assert_int_equal(atomic_load(&ca.stopped), 1);
    env_down(&e);
}

/* Under TSan: the cache's replace_all holds all 64 shard locks at once,
 * which overflows TSan's deadlock detector (a CHECK failure, not a
 * report).  Race detection stays on; only lock-order checking is off. */
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
    return "detect_deadlocks=0";
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_two_electors_crash_and_release),
        cmocka_unit_test(test_lease_taken_away),
    };
    int rc;

    kc_global_init();
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    kc_global_cleanup();
    return rc;
}
