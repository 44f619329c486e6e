/* The replicator end to end against the fake API server, run by a real
 * manager (probes, metrics, informers) in this process: create, update,
 * hand edit restored, copy deletion undone, namespace added later,
 * annotation narrowed, same source name in two namespaces, a foreign
 * object left alone (with an Event and a metric), source deleted; /readyz
 * false before the caches sync and true after; /metrics parsed; a
 * controller unit test with owner mapping, predicates and results. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
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

#define MS 1000000ull

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

#define WAIT_FOR(cond, timeout_ms)                                              \
    do {                                                                        \
        uint64_t t0_ = kc_now_ns();                                             \
        while (!(cond)) {                                                       \
            if (kc_now_ns() - t0_ > (uint64_t)(timeout_ms) * MS)                \
                fail_msg("line %d: timed out after %d ms waiting for %s", __LINE__, \
                         (int)(timeout_ms), #cond);                             \
            sleep_ms(20);                                                       \
        }                                                                       \
    } while (0)

typedef struct env {
    char dir[64], kubeconfig[128];
    kc_fakeapi_t *fa;
    kc_config_t *cfg;
    kc_client_t *client;
    kc_metrics_t *metrics;
    kc_informer_factory_t *fac;
    kc_replicator_t *rep;
    kc_manager_t *mgr;
    pthread_t thread;
    int run_rc;
} env_t;

/* Create or replace an object through the API (HTTP), as a user would.
 * (Namespaced objects go over HTTP rather than kc_fakeapi_apply_json.) */
static int put_json(kc_client_t *cl, const char *res, const char *json)
{
    const kc_resource_t *r = strcmp(res, "secrets") == 0      ? &kc_res_secrets
                             : strcmp(res, "configmaps") == 0 ? &kc_res_configmaps
                                                              : &kc_res_namespaces;
    cJSON *o = cJSON_Parse(json), *md, *cur;
    kc_buf_t body = KC_BUF_INIT;
    kc_status_t st;
    const char *ns, *name;
    char *text;
    int rc;

    assert_non_null(o);
    md = cJSON_GetObjectItem(o, "metadata");
    name = cJSON_GetObjectItem(md, "name")->valuestring;
    ns = r->namespaced ? cJSON_GetObjectItem(md, "namespace")->valuestring : NULL;
    rc = kc_client_get(cl, r, ns, name, &body, &st);
    if (rc == KC_ENOTFOUND) {
        text = cJSON_PrintUnformatted(o);
        rc = kc_client_create(cl, r, ns, text, strlen(text), NULL, &st);
    } else {
        assert_int_equal(rc, 0);
        cur = cJSON_Parse(body.data);
        cJSON_AddStringToObject(md, "resourceVersion",
            cJSON_GetObjectItem(cJSON_GetObjectItem(cur, "metadata"), "resourceVersion")->valuestring);
        cJSON_Delete(cur);
        text = cJSON_PrintUnformatted(o);
        rc = kc_client_update(cl, r, ns, name, text, strlen(text), NULL, &st);
    }
    free(text);
    kc_buf_free(&body);
    cJSON_Delete(o);
    return rc;
}

static void apply(env_t *e, const char *res, const char *json)
{
    int rc = put_json(e->client, res, json);
    if (rc != 0)
        fail_msg("apply %s: %s: %s", res, kc_strerror(rc), json);
}

static void add_ns(env_t *e, const char *ns)
{
    char j[256];
    snprintf(j, sizeof(j),
             "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"%s\"}}", ns);
    assert_int_equal(kc_fakeapi_apply_json(e->fa, "namespaces", j, NULL), 0);
}

/* Returns the object as a cJSON tree, or NULL if absent. */
static cJSON *get_obj(env_t *e, const char *res, const char *ns, const char *name)
{
    char *json = NULL;
    cJSON *o;

    if (kc_fakeapi_get_json(e->fa, res, ns, name, &json) != 0)
        return NULL;
    o = cJSON_Parse(json);
    free(json);
    return o;
}

/* The copy's data[key] equals want, and it carries the marks of src. */
static bool copy_is(env_t *e, const char *res, const char *ns, const char *name,
                    const char *src, const char *key, const char *want)
{
    cJSON *o = get_obj(e, res, ns, name);
    bool ok = false;

    if (o != NULL) {
        cJSON *md = cJSON_GetObjectItem(o, "metadata");
        cJSON *lab = cJSON_GetObjectItem(cJSON_GetObjectItem(md, "labels"),
                                         KC_MANAGED_BY_LABEL);
        cJSON *from = cJSON_GetObjectItem(cJSON_GetObjectItem(md, "annotations"),
                                          KC_REPLICATED_FROM_ANNOTATION);
        cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "data"), key);
        ok = cJSON_IsString(lab) && strcmp(lab->valuestring, "kcache") == 0 &&
             cJSON_IsString(from) && strcmp(from->valuestring, src) == 0 &&
             cJSON_IsString(v) && strcmp(v->valuestring, want) == 0;
        cJSON_Delete(o);
    }
    return ok;
}

static bool absent(env_t *e, const char *res, const char *ns, const char *name)
{
    cJSON *o = get_obj(e, res, ns, name);
    cJSON_Delete(o);
    return o == NULL;
}

static void secret(env_t *e, const char *ns, const char *name, const char *to, const char *b64,
                   const char *extra_labels)
{
    char j[1024];
    snprintf(j, sizeof(j),
             "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"%s\","
             "\"namespace\":\"%s\",\"labels\":{%s}%s%s%s},\"type\":\"kubernetes.io/tls\","
             "\"data\":{\"tls.crt\":\"%s\",\"tls.key\":\"a2V5\"}}",
             name, ns, extra_labels ? extra_labels : "",
             to ? ",\"annotations\":{\"kcache.io/replicate-to\":\"" : "", to ? to : "",
             to ? "\"}" : "", b64);
    apply(e, "secrets", j);
}

/* ---- HTTP ------------------------------------------------------------ */

typedef struct body {
    char *data;
    size_t len;
} body_t;

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    body_t *b = ud;
    char *nd = realloc(b->data, b->len + sz * n + 1);
    if (nd == NULL)
        return 0;
    b->data = nd;
    memcpy(b->data + b->len, p, sz * n);
    b->len += sz * n;
    b->data[b->len] = '\0';
    return sz * n;
}

static long http_get(int port, const char *path, body_t *b)
{
    char url[128];
    CURL *c = curl_easy_init();
    long code = 0;

    b->len = 0;
    free(b->data);
    b->data = NULL;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    return code;
}

/* Value of the first sample line starting with prefix (name{labels}). */
static double sample(const char *text, const char *prefix)
{
    const char *p = text;
    size_t n = strlen(prefix);

    while (p && *p) {
        if (strncmp(p, prefix, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -1;
}

/* ---- the environment ------------------------------------------------- */

static void *run_main(void *arg)
{
    env_t *e = arg;
    kc_errbuf_t eb;
    e->run_rc = kc_manager_run(e->mgr, &eb);
    return NULL;
}

static void env_up(env_t *e)
{
    kc_fakeapi_opts_t fo = KC_FAKEAPI_OPTS_INIT;
    kc_config_opts_t co = KC_CONFIG_OPTS_INIT;
    kc_informer_opts_t io = KC_INFORMER_OPTS_INIT;
    kc_replicator_opts_t ro = KC_REPLICATOR_OPTS_INIT;
    kc_manager_opts_t mo = KC_MANAGER_OPTS_INIT;
    kc_errbuf_t eb;

    memset(e, 0, sizeof(*e));
    snprintf(e->dir, sizeof(e->dir), "/tmp/kc-repl-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->kubeconfig, sizeof(e->kubeconfig), "%s/kubeconfig", e->dir);
    assert_int_equal(kc_fakeapi_new(&fo, &e->fa), 0);
    assert_int_equal(kc_fakeapi_start(e->fa), 0);
    assert_int_equal(kc_fakeapi_write_kubeconfig(e->fa, e->kubeconfig, NULL), 0);
    co.kubeconfig = e->kubeconfig;
    assert_int_equal(kc_config_load(&co, &e->cfg, &eb), 0);
    assert_int_equal(kc_client_new(e->cfg, NULL, &e->client, &eb), 0);
    assert_int_equal(kc_metrics_new(&e->metrics), 0);
    io.transform = kc_replicator_transform;   /* as kcache-controller runs it */
    assert_int_equal(kc_informer_factory_new(e->client, &io, &e->fac), 0);
    ro.client = e->client;
    ro.informers = e->fac;
    ro.metrics = e->metrics;
    ro.conflict_retry_ns = 500 * MS;
    assert_int_equal(kc_replicator_new(&ro, &e->rep, &eb), 0);
    mo.informers = e->fac;
    mo.metrics = e->metrics;
    mo.metrics_addr = "127.0.0.1:0";
    mo.probe_addr = "127.0.0.1:0";
    mo.shutdown_timeout_ns = 5000 * MS;
    assert_int_equal(kc_manager_new(&mo, &e->mgr, &eb), 0);
    assert_int_equal(kc_replicator_add_to(e->rep, e->mgr), 0);
}

static void env_run(env_t *e)
{
    assert_int_equal(pthread_create(&e->thread, NULL, run_main, e), 0);
}

static void env_down(env_t *e)
{
    kc_manager_request_stop(e->mgr);
    pthread_join(e->thread, NULL);
    assert_int_equal(e->run_rc, 0);
    kc_manager_free(e->mgr);
    kc_replicator_free(e->rep);
    kc_informer_factory_free(e->fac);
    kc_metrics_free(e->metrics);
    kc_client_free(e->client);
    kc_config_free(e->cfg);
    kc_fakeapi_free(e->fa);
    unlink(e->kubeconfig);
    rmdir(e->dir);
}

/* What the replicator's cache holds for ns/name: 1 whole (with "data"),
 * 0 without its data, -1 not cached (yet). */
static int cached_whole(env_t *e, const kc_resource_t *res, const char *ns, const char *name)
{
    kc_informer_t *inf = NULL;
    kc_obj_t *o = NULL;
    int whole;

    assert_int_equal(kc_informer_factory_get(e->fac, res, NULL, NULL, NULL, &inf), 0);
    if (kc_cache_get_nsname(kc_informer_cache(inf), ns, name, &o) != 0)
        return -1;
    whole = strstr(kc_obj_json(o, NULL), "\"data\":{") != NULL;
    kc_obj_unref(o);
    return whole;
}

static void test_match(void **state)
{
    (void)state;
    assert_true(kc_replicator_match("team-a,team-b,staging-*", "team-b"));
    assert_true(kc_replicator_match("team-a, team-b , staging-*", "staging-eu"));
    assert_true(kc_replicator_match(" team-a ", "team-a"));
    assert_false(kc_replicator_match("team-a,team-b", "team-c"));
    assert_false(kc_replicator_match("team-a", "team-ab"));
    assert_false(kc_replicator_match("", "x"));
    assert_false(kc_replicator_match(",,", "x"));
    assert_true(kc_replicator_match("*", "anything"));
}

static void test_replicator_end_to_end(void **state)
{
    env_t e;
    body_t b = { NULL, 0 };
    kc_fakeapi_faults_t f = KC_FAKEAPI_FAULTS_INIT;
    int mport, pport;
    char *foreign_before = NULL, *foreign_after = NULL;

    (void)state;
    env_up(&e);
    for (const char *const *ns = (const char *const[]){ "src", "src2", "team-a", "team-b",
                                                        "team-c", "staging-1", "other", NULL };
         *ns; ns++)
        add_ns(&e, *ns);
    /* a foreign object where a copy would go */
    apply(&e, "secrets",
          "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"tls\","
          "\"namespace\":\"team-c\"},\"data\":{\"tls.crt\":\"Zm9yZWlnbg==\"}}");
    assert_int_equal(kc_fakeapi_get_json(e.fa, "secrets", "team-c", "tls", &foreign_before), 0);
    secret(&e, "src", "tls", "team-a, team-b,team-c,staging-*", "djE=", "\"app\":\"web\"");
    apply(&e, "configmaps",
          "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"shared\","
          "\"namespace\":\"src\",\"annotations\":{\"kcache.io/replicate-to\":\"team-*\"}},"
          "\"data\":{\"k\":\"v\"}}");

    /* hold the informers' first lists back so /readyz can be seen false */
    f.delay_ms = 1500;
    f.p_delay = 1.0;
    assert_int_equal(kc_fakeapi_set_faults(e.fa, &f), 0);
    env_run(&e);
    WAIT_FOR(kc_manager_port(e.mgr, 1) > 0, 5000);
    mport = kc_manager_port(e.mgr, 0);
    pport = kc_manager_port(e.mgr, 1);
    assert_int_equal(http_get(pport, "/healthz", &b), 200);
    assert_int_equal(http_get(pport, "/readyz", &b), 503);
    assert_non_null(strstr(b.data, "not synced"));
    assert_false(kc_manager_ready(e.mgr));
    assert_int_equal(kc_fakeapi_set_faults(e.fa, NULL), 0);
    WAIT_FOR(kc_manager_ready(e.mgr), 10000);
    assert_int_equal(http_get(pport, "/readyz", &b), 200);

    /* create: every matching namespace, not the others */
    WAIT_FOR(copy_is(&e, "secrets", "team-a", "tls", "src/tls", "tls.crt", "djE="), 10000);
    WAIT_FOR(copy_is(&e, "secrets", "team-b", "tls", "src/tls", "tls.crt", "djE="), 10000);
    WAIT_FOR(copy_is(&e, "secrets", "staging-1", "tls", "src/tls", "tls.crt", "djE="), 10000);
    WAIT_FOR(copy_is(&e, "configmaps", "team-a", "shared", "src/shared", "k", "v"), 10000);
    assert_true(absent(&e, "secrets", "other", "tls"));
    assert_true(absent(&e, "secrets", "src2", "tls"));
    {
        cJSON *o = get_obj(&e, "secrets", "team-a", "tls");
        cJSON *md = cJSON_GetObjectItem(o, "metadata");
        assert_string_equal(cJSON_GetObjectItem(o, "type")->valuestring, "kubernetes.io/tls");
        assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(md, "labels"), "app")->valuestring, "web");
        /* the source's replicate-to annotation is not copied */
        assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(md, "annotations"),
                                        KC_REPLICATE_TO_ANNOTATION));
        cJSON_Delete(o);
    }

    /* kc_replicator_transform: the source and its copies are cached whole,
     * the foreign object (neither) without its data */
    assert_int_equal(cached_whole(&e, &kc_res_secrets, "src", "tls"), 1);
    WAIT_FOR(cached_whole(&e, &kc_res_secrets, "team-a", "tls") == 1, 10000);
    assert_int_equal(cached_whole(&e, &kc_res_secrets, "team-c", "tls"), 0);
    assert_int_equal(cached_whole(&e, &kc_res_configmaps, "src", "shared"), 1);

    /* the foreign object is left alone; the conflict is reported */
    WAIT_FOR(kc_fakeapi_count(e.fa, "events", "team-c") >= 1, 10000);
    {
        char *ev = NULL;
        assert_int_equal(kc_fakeapi_list_json(e.fa, "events", "team-c", &ev), 0);
        assert_non_null(strstr(ev, "ReplicationConflict"));
        assert_non_null(strstr(ev, "\"Warning\""));
        free(ev);
    }
    assert_int_equal(kc_fakeapi_get_json(e.fa, "secrets", "team-c", "tls", &foreign_after), 0);
    assert_string_equal(foreign_before, foreign_after);

    /* update: reaches every copy */
    secret(&e, "src", "tls", "team-a, team-b,team-c,staging-*", "djI=", "\"app\":\"web\"");
    WAIT_FOR(copy_is(&e, "secrets", "team-a", "tls", "src/tls", "tls.crt", "djI="), 10000);
    WAIT_FOR(copy_is(&e, "secrets", "team-b", "tls", "src/tls", "tls.crt", "djI="), 10000);
    WAIT_FOR(copy_is(&e, "secrets", "staging-1", "tls", "src/tls", "tls.crt", "djI="), 10000);

    /* a hand edit is undone, a hand deletion too */
    apply(&e, "secrets",
          "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"tls\","
          "\"namespace\":\"team-a\",\"labels\":{\"app.kubernetes.io/managed-by\":\"kcache\","
          "\"app\":\"web\"},\"annotations\":{\"kcache.io/replicated-from\":\"src/tls\"}},"
          "\"type\":\"kubernetes.io/tls\",\"data\":{\"tls.crt\":\"aGFjaw==\",\"tls.key\":\"a2V5\"}}");
    assert_int_equal(kc_fakeapi_delete(e.fa, "secrets", "team-b", "tls"), 0);
    WAIT_FOR(copy_is(&e, "secrets", "team-a", "tls", "src/tls", "tls.crt", "djI="), 10000);
    WAIT_FOR(copy_is(&e, "secrets", "team-b", "tls", "src/tls", "tls.crt", "djI="), 10000);

    /* a namespace created later gets its copy */
    add_ns(&e, "staging-2");
    WAIT_FOR(copy_is(&e, "secrets", "staging-2", "tls", "src/tls", "tls.crt", "djI="), 10000);

    /* same name in another namespace: its own copies, never the other's */
    secret(&e, "src2", "tls", "other,team-a", "c3JjMg==", NULL);
    WAIT_FOR(copy_is(&e, "secrets", "other", "tls", "src2/tls", "tls.crt", "c3JjMg=="), 10000);
    sleep_ms(300);
    assert_true(copy_is(&e, "secrets", "team-a", "tls", "src/tls", "tls.crt", "djI="));

    /* narrowing the annotation deletes the copies it made there only */
    secret(&e, "src", "tls", "team-a,team-c", "djI=", "\"app\":\"web\"");
    WAIT_FOR(absent(&e, "secrets", "team-b", "tls"), 10000);
    WAIT_FOR(absent(&e, "secrets", "staging-1", "tls"), 10000);
    WAIT_FOR(absent(&e, "secrets", "staging-2", "tls"), 10000);
    assert_true(copy_is(&e, "secrets", "team-a", "tls", "src/tls", "tls.crt", "djI="));
    assert_false(absent(&e, "secrets", "team-c", "tls")); /* foreign: still there */

    /* deleting the source deletes its copies; src2's are untouched, and
     * src2 may now take team-a, whose name has been freed */
    assert_int_equal(kc_fakeapi_delete(e.fa, "secrets", "src", "tls"), 0);
    WAIT_FOR(copy_is(&e, "secrets", "team-a", "tls", "src2/tls", "tls.crt", "c3JjMg=="), 10000);
    assert_true(copy_is(&e, "secrets", "other", "tls", "src2/tls", "tls.crt", "c3JjMg=="));
    assert_false(absent(&e, "secrets", "team-c", "tls"));

    /* removing the annotation deletes the copies */
    secret(&e, "src2", "tls", NULL, "c3JjMg==", NULL);
    WAIT_FOR(absent(&e, "secrets", "other", "tls"), 10000);
    WAIT_FOR(absent(&e, "secrets", "team-a", "tls"), 10000);
    free(foreign_after);
    foreign_after = NULL;
    assert_int_equal(kc_fakeapi_get_json(e.fa, "secrets", "team-c", "tls", &foreign_after), 0);
    assert_string_equal(foreign_before, foreign_after);

    /* an object cached without its data becomes a source: its watch event
     * brings it whole, and the copy carries the data */
    apply(&e, "configmaps",
          "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"late\","
          "\"namespace\":\"src\"},\"data\":{\"k\":\"late\"}}");
    WAIT_FOR(cached_whole(&e, &kc_res_configmaps, "src", "late") == 0, 10000);
    apply(&e, "configmaps",
          "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"late\","
          "\"namespace\":\"src\",\"annotations\":{\"kcache.io/replicate-to\":\"team-b\"}},"
          "\"data\":{\"k\":\"late\"}}");
    WAIT_FOR(copy_is(&e, "configmaps", "team-b", "late", "src/late", "k", "late"), 10000);
    assert_int_equal(cached_whole(&e, &kc_res_configmaps, "src", "late"), 1);

    /* the standing conflict (re-checked every 500 ms here) was reported once */
    assert_int_equal(kc_fakeapi_count(e.fa, "events", "team-c"), 1);

    /* metrics: scraped over HTTP and parsed */
    assert_int_equal(http_get(mport, "/metrics", &b), 200);
    assert_true(sample(b.data, "controller_runtime_reconcile_total{controller=\"replicator-secrets\",result=\"success\"}") > 0);
    assert_true(sample(b.data, "controller_runtime_max_concurrent_reconciles{controller=\"replicator-secrets\"}") == 2);
    assert_true(sample(b.data, "kcache_replicator_conflicts_total{kind=\"Secret\",namespace=\"team-c\"}") == 1);
    assert_true(sample(b.data, "workqueue_adds_total{name=\"replicator-secrets\",controller=\"replicator-secrets\"}") > 0);
    assert_true(sample(b.data, "kcache_replicator_copies_total{kind=\"Secret\",action=\"deleted\"}") >= 5);
    assert_non_null(strstr(b.data, "# TYPE controller_runtime_reconcile_time_seconds histogram\n"));
    assert_non_null(strstr(b.data, "# TYPE workqueue_longest_running_processor_seconds gauge\n"));

    free(foreign_before);
    free(foreign_after);
    free(b.data);
    env_down(&e);
}

/* ---- the controller alone: owner mapping, predicates, results ---------- */

typedef struct recorder {
    pthread_mutex_t lock;
    char keys[64][KC_KEY_STR_MAX];
    int n;
    atomic_int fail_left;
} recorder_t;

static kc_result_t record_reconcile(void *ud, const kc_key_t *key)
{
    recorder_t *r = ud;
    char k[KC_KEY_STR_MAX];

    kc_key_format(key, k, sizeof(k));
    pthread_mutex_lock(&r->lock);
    if (r->n < 64)
        snprintf(r->keys[r->n++], sizeof(r->keys[0]), "%s", k);
    pthread_mutex_unlock(&r->lock);
    if (strcmp(k, "ns1/flaky") == 0 && atomic_fetch_sub(&r->fail_left, 1) > 0)
        return (kc_result_t){ KC_RESULT_ERROR, 0, KC_ESERVER };
    return KC_RESULT_OK;
}

static int count_key(recorder_t *r, const char *k)
{
    int n = 0;
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < r->n; i++)
        n += strcmp(r->keys[i], k) == 0;
    pthread_mutex_unlock(&r->lock);
    return n;
}

static void test_controller_sources(void **state)
{
    kc_fakeapi_opts_t fo = KC_FAKEAPI_OPTS_INIT;
    kc_config_opts_t co = KC_CONFIG_OPTS_INIT;
    kc_informer_opts_t io = KC_INFORMER_OPTS_INIT;
    kc_controller_opts_t o = KC_CONTROLLER_OPTS_INIT;
    kc_source_t s = KC_SOURCE_INIT;
    recorder_t r;
    kc_fakeapi_t *fa;
    kc_config_t *cfg;
    kc_client_t *cl;
    kc_informer_factory_t *fac;
    kc_informer_t *cms, *secrets;
    kc_controller_t *c;
    kc_metrics_t *m;
    kc_metric_t *errs;
    kc_errbuf_t eb;
    char dir[] = "/tmp/kc-ctl-XXXXXX", kc[64];

    (void)state;
    memset(&r, 0, sizeof(r));
    pthread_mutex_init(&r.lock, NULL);
    atomic_store(&r.fail_left, 2);
    assert_non_null(mkdtemp(dir));
    snprintf(kc, sizeof(kc), "%s/kubeconfig", dir);
    assert_int_equal(kc_fakeapi_new(&fo, &fa), 0);
    assert_int_equal(kc_fakeapi_start(fa), 0);
    assert_int_equal(kc_fakeapi_write_kubeconfig(fa, kc, NULL), 0);
    assert_int_equal(kc_fakeapi_apply_json(fa, "namespaces",
                                           "{\"metadata\":{\"name\":\"ns1\"}}", NULL), 0);
#define PUT(res, json) assert_int_equal(put_json(cl, res, json), 0)
    co.kubeconfig = kc;
    assert_int_equal(kc_config_load(&co, &cfg, &eb), 0);
    assert_int_equal(kc_client_new(cfg, NULL, &cl, &eb), 0);
    assert_int_equal(kc_metrics_new(&m), 0);
    assert_int_equal(kc_informer_factory_new(cl, &io, &fac), 0);
    assert_int_equal(kc_informer_factory_get(fac, &kc_res_configmaps, NULL, NULL, NULL, &cms), 0);
    assert_int_equal(kc_informer_factory_get(fac, &kc_res_secrets, NULL, NULL, NULL, &secrets), 0);

    o.name = "test";
    o.reconcile = record_reconcile;
    o.ud = &r;
    o.workers = 3;
    o.base_delay_ns = 1 * MS;
    o.metrics = m;
    assert_int_equal(kc_controller_new(&o, &c, &eb), 0);
    s.informer = cms;
    s.kind = KC_SOURCE_SELF;
    s.predicate = kc_predicate_generation_or_metadata_changed;
    assert_int_equal(kc_controller_watch(c, &s), 0);
    s.informer = secrets;
    s.kind = KC_SOURCE_OWNER;
    s.owner_kind = "ConfigMap";
    s.owner_group = "";
    s.predicate = NULL;
    assert_int_equal(kc_controller_watch(c, &s), 0);
    assert_int_equal(kc_informer_factory_start(fac), 0);
    assert_int_equal(kc_informer_factory_wait_synced(fac, 10000), 0);
    assert_int_equal(kc_controller_start(c), 0);
    assert_int_equal(kc_controller_start(c), KC_EBUSY);

    PUT("configmaps",
        "{\"metadata\":{\"name\":\"owner\",\"namespace\":\"ns1\"},\"data\":{\"a\":\"1\"}}");
    WAIT_FOR(count_key(&r, "ns1/owner") == 1, 5000);
    /* data-only update: the predicate drops it (ConfigMaps have no
     * generation; labels and annotations unchanged) */
    PUT("configmaps",
        "{\"metadata\":{\"name\":\"owner\",\"namespace\":\"ns1\"},\"data\":{\"a\":\"2\"}}");
    /* a label change passes */
    PUT("configmaps",
        "{\"metadata\":{\"name\":\"owner\",\"namespace\":\"ns1\",\"labels\":{\"x\":\"y\"}},\"data\":{\"a\":\"2\"}}");
    WAIT_FOR(count_key(&r, "ns1/owner") == 2, 5000);
    sleep_ms(200);
    assert_int_equal(count_key(&r, "ns1/owner"), 2);

    /* an owned Secret enqueues its owner; a Secret owned by another kind
     * does not */
    PUT("secrets",
        "{\"metadata\":{\"name\":\"child\",\"namespace\":\"ns1\",\"ownerReferences\":[{"
        "\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"name\":\"owner\",\"uid\":\"u1\","
        "\"controller\":true}]}}");
    PUT("secrets",
        "{\"metadata\":{\"name\":\"other-child\",\"namespace\":\"ns1\",\"ownerReferences\":[{"
        "\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"name\":\"dep\",\"uid\":\"u2\"}]}}");
    WAIT_FOR(count_key(&r, "ns1/owner") == 3, 5000);
    sleep_ms(200);
    assert_int_equal(count_key(&r, "ns1/child"), 0);
    assert_int_equal(count_key(&r, "ns1/dep"), 0);

    /* errors requeue with backoff until success */
    PUT("configmaps", "{\"metadata\":{\"name\":\"flaky\",\"namespace\":\"ns1\"}}");
    WAIT_FOR(count_key(&r, "ns1/flaky") == 3, 5000);
    assert_int_equal(kc_workqueue_num_requeues(kc_controller_queue(c), "ns1/flaky"), 0);
    assert_int_equal(kc_metrics_counter(m, "controller_runtime_reconcile_errors_total", "",
                                        (const char *const[]){ "controller", NULL }, &errs), 0);
    assert_true(kc_metric_value(errs, (const char *const[]){ "test" }) == 2.0);

    kc_informer_factory_stop(fac);
    assert_int_equal(kc_controller_stop(c, 5000 * MS), 0);
    kc_controller_free(c);
    kc_informer_factory_free(fac);
    kc_metrics_free(m);
    kc_client_free(cl);
    kc_config_free(cfg);
    kc_fakeapi_free(fa);
    unlink(kc);
    rmdir(dir);
    pthread_mutex_destroy(&r.lock);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_controller_sources),
        cmocka_unit_test(test_replicator_end_to_end),
    };
    int rc;

    kc_global_init();
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    kc_global_cleanup();
    return rc;
}
