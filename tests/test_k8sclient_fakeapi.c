/* k8sclient against the in-process fake API server (tests/fakeapi): real
 * object semantics (resourceVersion conflicts, AlreadyExists, NotFound,
 * RBAC 403, pagination), watches fed by real writes, 410 Expired as an
 * ERROR event, and 429 fault injection with Retry-After. */
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
#include <unistd.h>

#include "fakeapi.h"
#include "kc_client.h"

static kc_fakeapi_t *S;
static char tmpdir[128];

static kc_client_t *client_as(const char *user, const kc_client_opts_t *o)
{
    char path[256];
    kc_config_opts_t co = KC_CONFIG_OPTS_INIT;
    kc_config_t *cfg;
    kc_client_t *c;
    kc_errbuf_t eb;

    snprintf(path, sizeof(path), "%s/kubeconfig-%s", tmpdir, user ? user : "admin");
    assert_int_equal(kc_fakeapi_write_kubeconfig(S, path, user), 0);
    co.kubeconfig = path;
    if (kc_config_load(&co, &cfg, &eb) != 0)
        fail_msg("config: %s", eb.msg);
    if (kc_client_new(cfg, o, &c, &eb) != 0)
        fail_msg("client: %s", eb.msg);
    kc_config_free(cfg);
    return c;
}

static int setup(void **state)
{
    kc_fakeapi_opts_t o = KC_FAKEAPI_OPTS_INIT;

    (void)state;
    kc_global_init();
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/kc-fakeapi-test-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    if (kc_fakeapi_new(&o, &S) != 0)
        return -1;
    return kc_fakeapi_start(S);
}

static int teardown(void **state)
{
    char cmd[200];

    (void)state;
    kc_fakeapi_free(S);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        return -1;
    kc_global_cleanup();
    return 0;
}

static char *rv_of(const kc_buf_t *b)
{
    cJSON *j = cJSON_ParseWithLength(b->data, b->len);
    char *rv;

    assert_non_null(j);
    rv = strdup(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "metadata"),
                                                         "resourceVersion")));
    cJSON_Delete(j);
    return rv;
}

static void test_crud_semantics(void **state)
{
    kc_client_t *c = client_as(NULL, NULL);
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    char *rv1, *rv2, upd[512];
    const char *cm = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"crud\","
                     "\"labels\":{\"app\":\"kc\"}},\"data\":{\"a\":\"1\"}}";
    kc_list_opts_t lo = KC_LIST_OPTS_INIT;
    kc_delete_opts_t dopt = KC_DELETE_OPTS_INIT;
    kc_patch_opts_t po = KC_PATCH_OPTS_INIT;

    (void)state;
    assert_int_equal(kc_client_create(c, &kc_res_configmaps, "default", cm, strlen(cm), &b, &st), 0);
    assert_int_equal(st.http_code, 201);
    rv1 = rv_of(&b);
    assert_int_equal(kc_client_create(c, &kc_res_configmaps, "default", cm, strlen(cm), &b, &st),
                     KC_EEXISTS);
    assert_true(kc_status_is_already_exists(&st));
    assert_string_equal(st.reason, "AlreadyExists");

    snprintf(upd, sizeof(upd),
             "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"crud\","
             "\"labels\":{\"app\":\"kc\"},\"resourceVersion\":\"%s\"},\"data\":{\"a\":\"2\"}}",
             rv1);
    assert_int_equal(kc_client_update(c, &kc_res_configmaps, "default", "crud", upd, strlen(upd), &b, &st), 0);
    rv2 = rv_of(&b);
    assert_string_not_equal(rv1, rv2);
    /* the same stale resourceVersion again: 409 Conflict */
    assert_int_equal(kc_client_update(c, &kc_res_configmaps, "default", "crud", upd, strlen(upd), &b, &st),
                     KC_ECONFLICT);
    assert_true(kc_status_is_conflict(&st));
    assert_non_null(strstr(st.message, "the object has been modified"));

    assert_int_equal(kc_client_patch(c, &kc_res_configmaps, "default", "crud", KC_PATCH_MERGE,
                                     "{\"data\":{\"b\":\"3\"}}", 18, NULL, &b, &st), 0);
    assert_non_null(strstr(b.data, "\"b\":\"3\""));
    po.field_manager = "kc-test";
    po.force = 1;
    {
        const char *ap = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"applied\"},"
                         "\"data\":{\"x\":\"y\"}}";
        assert_int_equal(kc_client_patch(c, &kc_res_configmaps, "default", "applied", KC_PATCH_APPLY,
                                         ap, strlen(ap), &po, &b, &st), 0);
        assert_int_equal(st.http_code, 201);
    }

    lo.label_selector = "app=kc";
    assert_int_equal(kc_client_list(c, &kc_res_configmaps, "default", &lo, &b, &st), 0);
    assert_non_null(strstr(b.data, "\"name\":\"crud\""));
    assert_null(strstr(b.data, "\"name\":\"applied\""));

    dopt.precondition_resource_version = rv1;   /* stale */
    assert_int_equal(kc_client_delete(c, &kc_res_configmaps, "default", "crud", &dopt, &b, &st), KC_ECONFLICT);
    dopt.precondition_resource_version = NULL;
    dopt.propagation_policy = "Background";
    assert_int_equal(kc_client_delete(c, &kc_res_configmaps, "default", "crud", &dopt, &b, &st), 0);
    assert_int_equal(kc_client_get(c, &kc_res_configmaps, "default", "crud", &b, &st), KC_ENOTFOUND);
    assert_true(kc_status_is_not_found(&st));
    assert_non_null(strstr(st.message, "not found"));
    assert_int_equal(kc_client_delete(c, &kc_res_configmaps, "default", "applied", NULL, &b, &st), 0);
    free(rv1);
    free(rv2);
    kc_buf_free(&b);
    kc_client_free(c);
}

/* The Status of an error answer is decoded whether or not the caller gives
 * a body buffer (and whatever that buffer's cap): every verb returns the
 * code the Status names, with its reason and message in st. */
static void test_errors_without_body(void **state)
{
    kc_client_t *c = client_as(NULL, NULL);
    kc_buf_t b = KC_BUF_INIT, tiny = KC_BUF_INIT;
    kc_status_t st;
    kc_list_opts_t lo = KC_LIST_OPTS_INIT;
    kc_delete_opts_t dopt = KC_DELETE_OPTS_INIT;
    char *rv1, upd[512], oldrv[32];
    const char *cm = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"nobody\"},"
                     "\"data\":{\"a\":\"1\"}}";

    (void)state;
    snprintf(oldrv, sizeof(oldrv), "%llu", (unsigned long long)kc_fakeapi_revision(S));
    assert_int_equal(kc_client_create(c, &kc_res_configmaps, "default", cm, strlen(cm), &b, &st), 0);
    rv1 = rv_of(&b);

    /* AlreadyExists (409) */
    assert_int_equal(kc_client_create(c, &kc_res_configmaps, "default", cm, strlen(cm), NULL, &st),
                     KC_EEXISTS);
    assert_int_equal(st.err, KC_EEXISTS);
    assert_int_equal(st.http_code, 409);
    assert_true(kc_status_is_already_exists(&st));
    assert_false(kc_status_is_conflict(&st));
    assert_string_equal(st.reason, "AlreadyExists");
    assert_non_null(strstr(st.message, "already exists"));
    /* the same with a body buffer too small for the Status: still decoded */
    tiny.max = 8;
    assert_int_equal(kc_client_create(c, &kc_res_configmaps, "default", cm, strlen(cm), &tiny, &st),
                     KC_EEXISTS);
    assert_string_equal(st.reason, "AlreadyExists");
    /* and a NULL status as well */
    assert_int_equal(kc_client_create(c, &kc_res_configmaps, "default", cm, strlen(cm), NULL, NULL),
                     KC_EEXISTS);

    /* Conflict (409, stale resourceVersion) on update and on delete */
    assert_int_equal(kc_client_patch(c, &kc_res_configmaps, "default", "nobody", KC_PATCH_MERGE,
                                     "{\"data\":{\"b\":\"3\"}}", 18, NULL, NULL, &st), 0);
    snprintf(upd, sizeof(upd),
             "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"nobody\","
             "\"resourceVersion\":\"%s\"},\"data\":{\"a\":\"2\"}}", rv1);
    assert_int_equal(kc_client_update(c, &kc_res_configmaps, "default", "nobody", upd, strlen(upd),
                                      NULL, &st), KC_ECONFLICT);
    assert_int_equal(st.http_code, 409);
    assert_true(kc_status_is_conflict(&st));
    assert_string_equal(st.reason, "Conflict");
    assert_non_null(strstr(st.message, "the object has been modified"));
    dopt.precondition_resource_version = rv1;
    assert_int_equal(kc_client_delete(c, &kc_res_configmaps, "default", "nobody", &dopt, NULL, &st),
                     KC_ECONFLICT);
    assert_string_equal(st.reason, "Conflict");

    /* NotFound (404) on every verb that addresses one object */
    assert_int_equal(kc_client_delete(c, &kc_res_configmaps, "default", "nobody", NULL, NULL, &st), 0);
    assert_int_equal(kc_client_get(c, &kc_res_configmaps, "default", "nobody", NULL, &st),
                     KC_ENOTFOUND);
    assert_int_equal(st.http_code, 404);
    assert_true(kc_status_is_not_found(&st));
    assert_string_equal(st.reason, "NotFound");
    assert_non_null(strstr(st.message, "not found"));
    assert_int_equal(kc_client_update(c, &kc_res_configmaps, "default", "nobody", upd, strlen(upd),
                                      NULL, &st), KC_ENOTFOUND);
    assert_string_equal(st.reason, "NotFound");
    assert_int_equal(kc_client_patch(c, &kc_res_configmaps, "default", "nobody", KC_PATCH_MERGE,
                                     "{\"data\":{\"b\":\"4\"}}", 18, NULL, NULL, &st),
                     KC_ENOTFOUND);
    assert_string_equal(st.reason, "NotFound");
    assert_int_equal(kc_client_delete(c, &kc_res_configmaps, "default", "nobody", NULL, NULL, &st),
                     KC_ENOTFOUND);
    assert_string_equal(st.reason, "NotFound");
    assert_int_equal(kc_client_request(c, "GET", "/api/v1/namespaces/default/configmaps/nobody",
                                       NULL, NULL, NULL, 0, NULL, &st), KC_ENOTFOUND);
    assert_string_equal(st.reason, "NotFound");

    /* Gone (410 Expired): an exact list at a compacted resourceVersion */
    assert_int_equal(kc_fakeapi_compact(S), 0);
    lo.resource_version = oldrv;
    lo.resource_version_match = "Exact";
    assert_int_equal(kc_client_list(c, &kc_res_configmaps, "default", &lo, NULL, &st), KC_EGONE);
    assert_int_equal(st.http_code, 410);
    assert_true(kc_status_is_gone(&st));
    assert_string_equal(st.reason, "Expired");
    assert_non_null(strstr(st.message, "too old"));

    free(rv1);
    kc_buf_free(&b);
    kc_buf_free(&tiny);
    kc_client_free(c);
}

static void test_pagination(void **state)
{
    kc_client_t *c = client_as(NULL, NULL);
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    kc_list_opts_t lo = KC_LIST_OPTS_INIT;
    kc_delete_opts_t dopt = KC_DELETE_OPTS_INIT;
    int seen[25] = {0}, nseen = 0;
    char cont[1024] = "";
    size_t total = 0, pages = 0;

    (void)state;
    for (int i = 0; i < 25; i++) {
        char cm[200];
        snprintf(cm, sizeof(cm), "{\"metadata\":{\"name\":\"page-%02d\",\"labels\":"
                                 "{\"pg\":\"yes\"}}}", i);
        assert_int_equal(kc_client_create(c, &kc_res_configmaps, "default", cm, strlen(cm), &b, &st), 0);
    }
    lo.label_selector = "pg=yes";
    lo.limit = 10;
    do {
        cJSON *j, *items;
        const char *t;
        lo.continue_token = cont[0] ? cont : NULL;
        if (kc_client_list(c, &kc_res_configmaps, "default", &lo, &b, &st) != 0)
            fail_msg("list: %s %s", kc_err_name(st.err), st.message);
        j = cJSON_ParseWithLength(b.data, b.len);
        items = cJSON_GetObjectItem(j, "items");
        total += (size_t)cJSON_GetArraySize(items);
        {
            cJSON *it;
            cJSON_ArrayForEach(it, items) {
                const char *nm = cJSON_GetStringValue(
                    cJSON_GetObjectItem(cJSON_GetObjectItem(it, "metadata"), "name"));
                int k = nm && strncmp(nm, "page-", 5) == 0 ? atoi(nm + 5) : -1;
                assert_true(k >= 0 && k < 25);
                seen[k] = 1;
            }
        }
        pages++;
        t = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "metadata"), "continue"));
        snprintf(cont, sizeof(cont), "%s", t ? t : "");
        cJSON_Delete(j);
    } while (cont[0] && pages < 10);
    /* every object exactly once, over three pages */
    for (int i = 0; i < 25; i++)
        nseen += seen[i];
    assert_int_equal(nseen, 25);
    assert_int_equal(total, 25);
    assert_int_equal(pages, 3);
    lo = (kc_list_opts_t)KC_LIST_OPTS_INIT;
    lo.label_selector = "pg=yes";
    (void)dopt;
    assert_int_equal(kc_client_delete_collection(c, &kc_res_configmaps, "default", &lo, &b, &st), 0);
    assert_int_equal(kc_client_list(c, &kc_res_configmaps, "default", &lo, &b, &st), 0);
    assert_non_null(strstr(b.data, "\"items\":[]"));
    kc_buf_free(&b);
    kc_client_free(c);
}

static void test_rbac_and_client_cert(void **state)
{
    kc_client_t *c;
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;

    (void)state;
    assert_int_equal(kc_fakeapi_set_allow(S, "alice", "get", "configmaps"), 0);
    c = client_as("alice", NULL);   /* client certificate CN=alice */
    assert_int_equal(kc_client_get(c, &kc_res_configmaps, "default", "nope", &b, &st), KC_ENOTFOUND);
    assert_int_equal(kc_client_list(c, &kc_res_configmaps, "default", NULL, &b, &st), KC_EFORBIDDEN);
    assert_true(kc_status_is_forbidden(&st));
    assert_non_null(strstr(st.message, "alice"));
    kc_client_free(c);
    kc_fakeapi_clear_allow(S);
    kc_buf_free(&b);
}

typedef struct wstate {
    kc_client_t *c;
    const char *rv;
    kc_cancel_t cancel;
    pthread_mutex_t mu;
    int added, modified, deleted, errors, total;
    int rc;
    kc_status_t st;
} wstate_t;

static int wcb(void *ud, const kc_watch_event_t *ev)
{
    wstate_t *w = ud;

    pthread_mutex_lock(&w->mu);
    w->total++;
    if (ev->type == KC_WATCH_ADDED)
        w->added++;
    else if (ev->type == KC_WATCH_MODIFIED)
        w->modified++;
    else if (ev->type == KC_WATCH_DELETED)
        w->deleted++;
    else if (ev->type == KC_WATCH_ERROR) {
        w->errors++;
        kc_status_from_json(ev->object, ev->object_len, &w->st);
    }
    pthread_mutex_unlock(&w->mu);
    return 0;
}

static void *watcher(void *p)
{
    wstate_t *w = p;
    kc_watch_opts_t wo = KC_WATCH_OPTS_INIT;
    kc_status_t st;

    wo.resource_version = w->rv;
    wo.cancel = &w->cancel;
    wo.timeout_seconds = 60;
    w->rc = kc_client_watch(w->c, &kc_res_configmaps, "default", &wo, wcb, w, &st);
    return NULL;
}

static void test_watch_live(void **state)
{
    kc_client_t *c = client_as(NULL, NULL);
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    wstate_t w;
    pthread_t th;
    char *rv;
    const char *cm = "{\"metadata\":{\"name\":\"w1\"},\"data\":{\"a\":\"1\"}}";
    int done = 0;

    (void)state;
    memset(&w, 0, sizeof(w));
    pthread_mutex_init(&w.mu, NULL);
    assert_int_equal(kc_client_list(c, &kc_res_configmaps, "default", NULL, &b, &st), 0);
    rv = rv_of(&b);
    w.c = c;
    w.rv = rv;
    pthread_create(&th, NULL, watcher, &w);
    assert_int_equal(kc_client_create(c, &kc_res_configmaps, "default", cm, strlen(cm), &b, &st), 0);
    assert_int_equal(kc_client_patch(c, &kc_res_configmaps, "default", "w1", KC_PATCH_MERGE,
                                     "{\"data\":{\"a\":\"2\"}}", 18, NULL, &b, &st), 0);
    assert_int_equal(kc_client_delete(c, &kc_res_configmaps, "default", "w1", NULL, &b, &st), 0);
    for (int i = 0; i < 100 && !done; i++) {
        struct timespec ts = {0, 50000000L};
        pthread_mutex_lock(&w.mu);
        done = w.total >= 3;
        pthread_mutex_unlock(&w.mu);
        if (!done)
            nanosleep(&ts, NULL);
    }
    kc_cancel_set(&w.cancel);
    pthread_join(th, NULL);
    assert_int_equal(w.rc, KC_ESTOPPED);
    assert_int_equal(w.added, 1);
    assert_int_equal(w.modified, 1);
    assert_int_equal(w.deleted, 1);

    /* from a compacted resourceVersion: one ERROR 410 event, then a clean end */
    assert_int_equal(kc_fakeapi_compact(S), 0);
    memset(&w, 0, sizeof(w));
    pthread_mutex_init(&w.mu, NULL);
    w.c = c;
    w.rv = rv;
    watcher(&w);
    assert_int_equal(w.rc, 0);
    assert_int_equal(w.errors, 1);
    assert_int_equal(w.st.err, KC_EGONE);
    assert_true(kc_status_is_gone(&w.st));
    free(rv);
    kc_buf_free(&b);
    kc_client_free(c);
}

/* The fake API server speaks HTTP/1.1 only: two watches open at once on one
 * client each get their own connection and both see every change. */
static void test_two_watches_http11(void **state)
{
    kc_client_t *c = client_as(NULL, NULL);
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    wstate_t w[2];
    pthread_t th[2];
    char *rv;
    int done = 0;

    (void)state;
    assert_int_equal(kc_client_list(c, &kc_res_configmaps, "default", NULL, &b, &st), 0);
    rv = rv_of(&b);
    for (int i = 0; i < 2; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        pthread_mutex_init(&w[i].mu, NULL);
        w[i].c = c;
        w[i].rv = rv;
        pthread_create(&th[i], NULL, watcher, &w[i]);
    }
    for (int i = 0; i < 3; i++) {
        char cm[128];
        snprintf(cm, sizeof(cm), "{\"metadata\":{\"name\":\"two-%d\"},\"data\":{\"a\":\"1\"}}", i);
        assert_int_equal(kc_client_create(c, &kc_res_configmaps, "default", cm, strlen(cm), &b,
                                          &st), 0);
    }
    for (int t = 0; t < 200 && !done; t++) {
        struct timespec ts = {0, 50000000L};
        done = 1;
        for (int i = 0; i < 2; i++) {
            pthread_mutex_lock(&w[i].mu);
            done = done && w[i].added >= 3;
            pthread_mutex_unlock(&w[i].mu);
        }
        if (!done)
            nanosleep(&ts, NULL);
    }
    for (int i = 0; i < 2; i++) {
        kc_cancel_set(&w[i].cancel);
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].rc, KC_ESTOPPED);
        assert_int_equal(w[i].added, 3);
        pthread_mutex_destroy(&w[i].mu);
    }
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof(name), "two-%d", i);
        assert_int_equal(kc_client_delete(c, &kc_res_configmaps, "default", name, NULL, &b, &st),
                         0);
    }
    free(rv);
    kc_buf_free(&b);
    kc_client_free(c);
}

/* Freeing a client while a watch runs on another thread ends that watch
 * with KC_ESTOPPED; free returns once the watch has returned. */
static void test_free_while_watching(void **state)
{
    kc_client_t *c = client_as(NULL, NULL);
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    wstate_t w;
    pthread_t th;
    struct timespec ts = {0, 200000000L};

    (void)state;
    assert_int_equal(kc_client_list(c, &kc_res_configmaps, "default", NULL, &b, &st), 0);
    memset(&w, 0, sizeof(w));
    pthread_mutex_init(&w.mu, NULL);
    w.c = c;
    w.rv = NULL;
    pthread_create(&th, NULL, watcher, &w);
    nanosleep(&ts, NULL);
    kc_client_free(c);
    pthread_join(th, NULL);
    assert_int_equal(w.rc, KC_ESTOPPED);
    pthread_mutex_destroy(&w.mu);
    kc_buf_free(&b);
}

static void test_fault_429(void **state)
{
    kc_client_opts_t o = KC_CLIENT_OPTS_INIT;
    kc_fakeapi_faults_t f = KC_FAKEAPI_FAULTS_INIT;
    kc_fakeapi_counters_t cnt;
    kc_client_t *c;
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;

    (void)state;
    o.max_retries = 4;
    c = client_as(NULL, &o);
    f.p_429 = 1.0;
    f.retry_after_s = 1;
    f.max_http_faults = 2;
    kc_fakeapi_reset_counters(S);
    assert_int_equal(kc_fakeapi_set_faults(S, &f), 0);
    assert_int_equal(kc_client_list(c, &kc_res_configmaps, "default", NULL, &b, &st), 0);
    assert_int_equal(st.attempts, 3);
    kc_fakeapi_get_counters(S, &cnt);
    assert_int_equal(cnt.status_429, 2);
    kc_fakeapi_set_faults(S, NULL);

    /* 500 forever on a GET: bounded by max_retries */
    f = (kc_fakeapi_faults_t)KC_FAKEAPI_FAULTS_INIT;
    f.p_500 = 1.0;
    kc_fakeapi_reset_counters(S);
    kc_fakeapi_set_faults(S, &f);
    kc_client_free(c);
    o.retry_base_ms = 10;
    o.max_retries = 2;
    c = client_as(NULL, &o);
    assert_int_equal(kc_client_get(c, &kc_res_configmaps, "default", "x", &b, &st), KC_ESERVER);
    assert_string_equal(st.reason, "InternalError");
    kc_fakeapi_get_counters(S, &cnt);
    assert_int_equal(cnt.status_5xx, 3);
    kc_fakeapi_set_faults(S, NULL);
    kc_buf_free(&b);
    kc_client_free(c);
}

static int count_cb(void *ud, const kc_watch_event_t *ev)
{
    (void)ev;
    (*(int *)ud)++;
    return 0;
}

/* Watch faults from the fake server: a clean early end, a cut in the middle
 * of an event, and a stall longer than the idle limit. */
static void test_watch_faults(void **state)
{
    kc_client_opts_t o = KC_CLIENT_OPTS_INIT;
    kc_fakeapi_faults_t f = KC_FAKEAPI_FAULTS_INIT;
    kc_watch_opts_t wo = KC_WATCH_OPTS_INIT;
    kc_client_t *c;
    kc_status_t st;
    int n, rc;

    (void)state;
    o.watch_idle_timeout_ms = 700;
    c = client_as(NULL, &o);
    for (int i = 0; i < 5; i++) {
        char cm[128];
        kc_buf_t b = KC_BUF_INIT;
        snprintf(cm, sizeof(cm), "{\"metadata\":{\"name\":\"wf-%d\"}}", i);
        assert_int_equal(kc_client_create(c, &kc_res_configmaps, "default", cm, strlen(cm), &b, &st), 0);
        kc_buf_free(&b);
    }
    wo.resource_version = "0";   /* initial ADDED events for what exists */
    wo.timeout_seconds = 30;

    f.close_watch_after_events = 2;
    kc_fakeapi_set_faults(S, &f);
    n = 0;
    rc = kc_client_watch(c, &kc_res_configmaps, "default", &wo, count_cb, &n, &st);
    assert_int_equal(rc, 0);
    assert_int_equal(n, 2);

    f = (kc_fakeapi_faults_t)KC_FAKEAPI_FAULTS_INIT;
    f.p_cut_mid_event = 1.0;
    kc_fakeapi_set_faults(S, &f);
    n = 0;
    rc = kc_client_watch(c, &kc_res_configmaps, "default", &wo, count_cb, &n, &st);
    if (rc != KC_ECLOSED && rc != KC_EPARSE)
        fail_msg("cut mid-event: %s %s", kc_err_name(rc), st.message);
    assert_int_equal(n, 0);

    f = (kc_fakeapi_faults_t)KC_FAKEAPI_FAULTS_INIT;
    f.p_stall = 1.0;
    f.stall_ms = 3000;
    kc_fakeapi_set_faults(S, &f);
    n = 0;
    rc = kc_client_watch(c, &kc_res_configmaps, "default", &wo, count_cb, &n, &st);
    if (rc != KC_ETIMEOUT)
        fail_msg("stall: %s %s (%d events)", kc_err_name(rc), st.message, n);
    kc_fakeapi_set_faults(S, NULL);
    kc_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crud_semantics),
        cmocka_unit_test(test_errors_without_body),
        cmocka_unit_test(test_pagination),
        cmocka_unit_test(test_rbac_and_client_cert),
        cmocka_unit_test(test_watch_live),
        cmocka_unit_test(test_two_watches_http11),
        cmocka_unit_test(test_free_while_watching),
        cmocka_unit_test(test_fault_429),
        cmocka_unit_test(test_watch_faults),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
