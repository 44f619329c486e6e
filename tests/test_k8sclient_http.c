/* Network tests of k8sclient over real TLS against a scripted HTTPS
 * responder (tests/support/k8sclient_responder.c) on 127.0.0.1: every verb
 * and what it puts on the wire, error decoding, Retry-After, bounded
 * retries, wrong CA / host name, client certificates, bearer tokens,
 * in-cluster token rotation, exec plugin expiry, the rate limiter, and
 * watches (stream, truncation, idle, cancel, bad lines). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "client_int.h"
#include "k8sclient_responder.h"
#include "kc_client.h"

#define STREAM_FILE "tests/data/k8sclient/watch_stream.jsonl"

enum { W_STREAM, W_TRUNC_CLEAN, W_CUT, W_STALL, W_BAD, W_FORBIDDEN };

static struct {
    pthread_mutex_t mu;
    char token[128];          /* accepted bearer token; "" accepts anything */
    char token_prefix[64];    /* or any token with this prefix */
    char reject_once[128];    /* answer 401 once to this token */
    char last_method[16];
    char last_target[4096];
    char last_ctype[128];
    char last_body[4096];
    char last_ua[128];
    char last_ae[128];
    char last_auth[1100];
    unsigned long requests;
    unsigned long hits_503;
    unsigned long hits_post503;
    int apf_left;
    int watch_mode;
    char *stream;
    size_t stream_len;
} T = {.mu = PTHREAD_MUTEX_INITIALIZER};

static kc_resp_t *R;
static char tmpdir[256];

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int echo(kc_resp_conn_t *c, const kc_resp_req_t *rq, int code)
{
    cJSON *j = cJSON_CreateObject();
    char *s;
    int rc;

    cJSON_AddStringToObject(j, "kind", "ConfigMap");
    cJSON_AddStringToObject(j, "method", rq->method);
    cJSON_AddStringToObject(j, "target", rq->target);
    cJSON_AddStringToObject(j, "ctype", rq->content_type);
    cJSON_AddStringToObject(j, "body", rq->body);
    s = cJSON_PrintUnformatted(j);
    rc = kc_resp_send_json(c, code, s);
    free(s);
    cJSON_Delete(j);
    return rc;
}

static int stall(kc_resp_conn_t *c, long ms)
{
    for (long t = 0; t < ms && !kc_resp_stopping(c); t += 20)
        sleep_ms(20);
    return 0;
}

static int do_watch(kc_resp_conn_t *c, int mode)
{
    const char *s = T.stream;
    size_t n = T.stream_len, pos = 0, step = 1;
    const char *nl;

    if (mode == W_FORBIDDEN)
        return kc_resp_send_status(c, 403, "Forbidden",
                                   "configmaps is forbidden: User \\\"bob\\\" cannot watch",
                                   NULL);
    if (kc_resp_start_chunked(c))
        return 1;
    switch (mode) {
    case W_STREAM:
        /* odd chunk sizes so events straddle chunks, several per chunk too */
        while (pos < n) {
            size_t k = (step * 977) % 2900 + 1;
            if (k > n - pos)
                k = n - pos;
            if (kc_resp_chunk(c, s + pos, k))
                return 1;
            pos += k;
            step++;
            sleep_ms(2);
        }
        break;
    case W_TRUNC_CLEAN:
    case W_CUT:
        nl = memchr(s, '\n', n);
        kc_resp_chunk(c, s, (size_t)(nl - s) + 1 + 100);
        if (mode == W_CUT)
            return 1;   /* close without the terminating chunk */
        break;
    case W_STALL:
        nl = memchr(s, '\n', n);
        kc_resp_chunk(c, s, (size_t)(nl - s) + 1);
        /* far longer than the client's idle limit, so that only the idle
         * guard or a cancel can end the watch before it, however slow the
         * run (returns at once when the responder stops) */
        stall(c, 20000);
        break;
    case W_BAD:
        nl = memchr(s, '\n', n);
        kc_resp_chunk(c, s, (size_t)(nl - s) + 1);
        {
            const char *bad = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{}}}\n<html>oops\n";
            kc_resp_chunk(c, bad, strlen(bad));
        }
        break;
    }
    kc_resp_chunk(c, NULL, 0);
    return 0;
}

static int handler(void *ud, const kc_resp_req_t *rq, kc_resp_conn_t *c)
{
    const char *t = rq->target;
    int auth_ok, reject = 0, mode;
    const char *tok = strncmp(rq->authorization, "Bearer ", 7) == 0 ? rq->authorization + 7 : NULL;

    (void)ud;
    pthread_mutex_lock(&T.mu);
    T.requests++;
    snprintf(T.last_method, sizeof(T.last_method), "%s", rq->method);
    snprintf(T.last_target, sizeof(T.last_target), "%s", rq->target);
    snprintf(T.last_ctype, sizeof(T.last_ctype), "%s", rq->content_type);
    snprintf(T.last_body, sizeof(T.last_body), "%s", rq->body);
    snprintf(T.last_ua, sizeof(T.last_ua), "%s", rq->user_agent);
    snprintf(T.last_ae, sizeof(T.last_ae), "%s", rq->accept_encoding);
    snprintf(T.last_auth, sizeof(T.last_auth), "%s", rq->authorization);
    auth_ok = (T.token[0] == '\0' && T.token_prefix[0] == '\0') ||
              (tok && T.token[0] && strcmp(tok, T.token) == 0) ||
              (tok && T.token_prefix[0] && strncmp(tok, T.token_prefix, strlen(T.token_prefix)) == 0);
    if (tok && T.reject_once[0] && strcmp(tok, T.reject_once) == 0) {
        reject = 1;
        T.reject_once[0] = '\0';
    }
    if (strncmp(t, "/always503", 10) == 0)
        strcmp(rq->method, "POST") == 0 ? T.hits_post503++ : T.hits_503++;
    mode = T.watch_mode;
    pthread_mutex_unlock(&T.mu);

    if (strcmp(t, "/whoami") == 0) {
        char b[256];
        snprintf(b, sizeof(b), "{\"cn\":\"%s\"}", rq->client_cn);
        return kc_resp_send_json(c, 200, b);
    }
    if (!auth_ok || reject)
        return kc_resp_send_status(c, 401, "Unauthorized", "Unauthorized", NULL);
    if (strncmp(t, "/fail/", 6) == 0) {
        int code = atoi(t + 6);
        const char *reason = strchr(t + 6, '/') ? strchr(t + 6, '/') + 1 : "Failure";
        return kc_resp_send_status(c, code, reason, "scripted failure",
                                   code == 410 ? NULL : NULL);
    }
    if (strcmp(t, "/apf") == 0) {
        int left;
        pthread_mutex_lock(&T.mu);
        left = T.apf_left > 0 ? T.apf_left-- : 0;
        pthread_mutex_unlock(&T.mu);
        if (left) {
            const char *b = "Too many requests, please try again later.\n";
            return kc_resp_send(c, 429, "text/plain; charset=utf-8", "Retry-After: 1\r\n", b,
                                strlen(b));
        }
        return kc_resp_send_json(c, 200, "{\"kind\":\"ConfigMap\",\"metadata\":{}}");
    }
    if (strncmp(t, "/always503", 10) == 0)
        return kc_resp_send_status(c, 503, "ServiceUnavailable", "try later", NULL);
    if (strcmp(t, "/html") == 0) {
        const char *b = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";
        return kc_resp_send(c, 502, "text/html", NULL, b, strlen(b));
    }
    if (strcmp(t, "/empty") == 0)
        return kc_resp_send(c, 500, "text/plain", NULL, "", 0);
    if (strcmp(t, "/api/v1") == 0)
        return kc_resp_send_json(c, 200,
                                 "{\"kind\":\"APIResourceList\",\"groupVersion\":\"v1\",\"resources\":["
                                 "{\"name\":\"pods/status\",\"namespaced\":true,\"kind\":\"Pod\"},"
                                 "{\"name\":\"pods\",\"namespaced\":true,\"kind\":\"Pod\"},"
                                 "{\"name\":\"nodes\",\"namespaced\":false,\"kind\":\"Node\"}]}");
    if (strcmp(t, "/apis/apps/v1") == 0)
        return kc_resp_send_json(c, 200,
                                 "{\"kind\":\"APIResourceList\",\"groupVersion\":\"apps/v1\","
                                 "\"resources\":[{\"name\":\"deployments\",\"namespaced\":true,"
                                 "\"kind\":\"Deployment\"}]}");
    if (strstr(t, "watch=true"))
        return do_watch(c, mode);
    return echo(c, rq, strcmp(rq->method, "POST") == 0 ? 201 : 200);
}

/* ---- fixtures ---- */

static char *slurp(const char *path, size_t *len)
{
    kc__blob_t b = {0};
    assert_int_equal(kc__read_file(path, 1 << 24, &b), 0);
    *len = b.len;
    return b.data;
}

static int group_setup(void **state)
{
    (void)state;
    kc_global_init();
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/kc-http-test-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    T.stream = slurp(STREAM_FILE, &T.stream_len);
    unsetenv("KUBECONFIG");
    return kc_resp_start(handler, NULL, &R);
}

static int group_teardown(void **state)
{
    char cmd[400];

    (void)state;
    kc_resp_stop(R);
    free(T.stream);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        return -1;
    kc_global_cleanup();
    return 0;
}

static int reset(void **state)
{
    (void)state;
    pthread_mutex_lock(&T.mu);
    T.token[0] = T.token_prefix[0] = T.reject_once[0] = '\0';
    T.requests = T.hits_503 = T.hits_post503 = 0;
    T.apf_left = 0;
    T.watch_mode = W_STREAM;
    pthread_mutex_unlock(&T.mu);
    return 0;
}

static const char *tpath(const char *rel)
{
    static char bufs[8][512];
    static int i;
    char *b = bufs[i++ & 7];

    snprintf(b, 512, "%s/%s", tmpdir, rel);
    return b;
}

static void wfile(const char *rel, const char *content)
{
    char tmp[600];
    FILE *f;

    /* write then rename: readers never see a half-written file */
    snprintf(tmp, sizeof(tmp), "%s.tmp", tpath(rel));
    f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    chmod(tmp, 0700);
    assert_int_equal(rename(tmp, tpath(rel)), 0);
}

/* A kubeconfig for the responder with the given user block (YAML lines
 * indented 4) and extra cluster lines. */
static kc_client_t *client_for(const char *server, const char *ca_pem, const char *cluster_extra,
                               const char *user_block, const kc_client_opts_t *o, int expect_ok)
{
    char *ca = kc__b64_encode(ca_pem, strlen(ca_pem));
    char *yaml;
    kc_config_opts_t co = KC_CONFIG_OPTS_INIT;
    kc_config_t *cfg = NULL;
    kc_client_t *c = NULL;
    kc_errbuf_t eb;

    assert_true(asprintf(&yaml,
                         "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
                         "clusters:\n- name: c\n  cluster:\n    server: %s\n"
                         "    certificate-authority-data: %s\n%s"
                         "users:\n- name: u\n  user:\n%s"
                         "contexts:\n- name: t\n  context: {cluster: c, user: u, namespace: default}\n",
                         server ? server : kc_resp_url(R), ca, cluster_extra ? cluster_extra : "",
                         user_block ? user_block : "    {}\n") > 0);
    wfile("kubeconfig", yaml);
    free(yaml);
    free(ca);
    co.kubeconfig = tpath("kubeconfig");
    if (kc_config_load(&co, &cfg, &eb) != 0)
        fail_msg("config: %s", eb.msg);
    if (kc_client_new(cfg, o, &c, &eb) != 0)
        fail_msg("client: %s", eb.msg);
    kc_config_free(cfg);
    (void)expect_ok;
    return c;
}

static kc_client_t *token_client(const kc_client_opts_t *o)
{
    pthread_mutex_lock(&T.mu);
    snprintf(T.token, sizeof(T.token), "tok-admin");
    pthread_mutex_unlock(&T.mu);
    return client_for(NULL, kc_resp_ca_pem(R), NULL, "    token: tok-admin\n", o, 1);
}

static cJSON *body_json(const kc_buf_t *b)
{
    cJSON *j = cJSON_ParseWithLength(b->data, b->len);
    assert_non_null(j);
    return j;
}

#define JS(j, k) cJSON_GetStringValue(cJSON_GetObjectItem((j), (k)))

/* ---- tests ---- */

static unsigned long hook_calls;
static void on_req(void *ud, const char *method, int code, const char *host, double s)
{
    (void)ud;
    (void)method;
    (void)s;
    if (code > 0 && strncmp(host, "127.0.0.1:", 10) == 0)
        __atomic_fetch_add(&hook_calls, 1, __ATOMIC_RELAXED);
}

static void test_verbs(void **state)
{
    kc_client_opts_t o = KC_CLIENT_OPTS_INIT;
    kc_client_t *c;
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    kc_list_opts_t lo = KC_LIST_OPTS_INIT;
    kc_patch_opts_t po = KC_PATCH_OPTS_INIT;
    kc_delete_opts_t dopt = KC_DELETE_OPTS_INIT;
    kc_resource_t res;
    cJSON *j;
    static const struct {
        kc_patch_type_t t;
        const char *ct;
    } pt[] = {{KC_PATCH_MERGE, "application/merge-patch+json"},
              {KC_PATCH_STRATEGIC, "application/strategic-merge-patch+json"},
              {KC_PATCH_JSON, "application/json-patch+json"},
              {KC_PATCH_APPLY, "application/apply-patch+yaml"}};

    (void)state;
    o.field_manager = "kcache-test";
    o.on_request = on_req;
    hook_calls = 0;
    c = token_client(&o);
    assert_string_equal(kc_client_namespace(c), "default");

    assert_int_equal(kc_client_get(c, &kc_res_configmaps, "default", "cm1", &b, &st), 0);
    assert_int_equal(st.http_code, 200);
    j = body_json(&b);
    assert_string_equal(JS(j, "method"), "GET");
    assert_string_equal(JS(j, "target"), "/api/v1/namespaces/default/configmaps/cm1");
    cJSON_Delete(j);
    assert_string_equal(T.last_ua, "kcache/" KC_VERSION_STRING);
    assert_string_equal(T.last_auth, "Bearer tok-admin");

    lo.label_selector = "app in (a,b),!x";
    lo.field_selector = "metadata.name=n1";
    lo.limit = 500;
    lo.continue_token = "abc=";
    lo.resource_version = "0";
    lo.resource_version_match = "NotOlderThan";
    lo.timeout_seconds = 30;
    assert_int_equal(kc_client_list(c, &kc_res_leases, "ns1", &lo, &b, &st), 0);
    assert_string_equal(T.last_target,
                        "/apis/coordination.k8s.io/v1/namespaces/ns1/leases?labelSelector=app%20in"
                        "%20%28a%2Cb%29%2C%21x&fieldSelector=metadata.name%3Dn1&limit=500&"
                        "continue=abc%3D&resourceVersion=0&resourceVersionMatch=NotOlderThan&"
                        "timeoutSeconds=30");
    assert_int_equal(kc_client_list(c, &kc_res_configmaps, NULL, NULL, &b, &st), 0);
    assert_string_equal(T.last_target, "/api/v1/configmaps");
    /* lists may come compressed (large ones do); watches never (see below) */
    assert_non_null(strstr(T.last_ae, "gzip"));
    assert_int_equal(kc_client_get(c, &kc_res_namespaces, "ignored", "kube-system", &b, &st), 0);
    assert_string_equal(T.last_target, "/api/v1/namespaces/kube-system");

    assert_int_equal(kc_client_create(c, &kc_res_configmaps, "default", "{\"a\":1}", 7, &b, &st), 0);
    assert_int_equal(st.http_code, 201);
    assert_string_equal(T.last_method, "POST");
    assert_string_equal(T.last_target, "/api/v1/namespaces/default/configmaps?fieldManager=kcache-test");
    assert_string_equal(T.last_ctype, "application/json");
    assert_string_equal(T.last_body, "{\"a\":1}");

    assert_int_equal(kc_client_update(c, &kc_res_configmaps, "default", "cm1", "{\"b\":2}", 7, &b, &st), 0);
    assert_string_equal(T.last_method, "PUT");
    assert_string_equal(T.last_target, "/api/v1/namespaces/default/configmaps/cm1?fieldManager=kcache-test");
    assert_string_equal(T.last_body, "{\"b\":2}");
    assert_int_equal(kc_client_update_status(c, &kc_res_deployments, "default", "d1", "{}", 2, &b, &st), 0);
    assert_string_equal(T.last_target, "/apis/apps/v1/namespaces/default/deployments/d1/status?fieldManager=kcache-test");

    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(kc_client_patch(c, &kc_res_configmaps, "default", "cm1", pt[i].t, "[]", 2,
                                         NULL, &b, &st), 0);
        assert_string_equal(T.last_method, "PATCH");
        assert_string_equal(T.last_ctype, pt[i].ct);
        assert_string_equal(T.last_body, "[]");
    }
    po.field_manager = "mgr";
    po.force = 1;
    po.subresource = "status";
    assert_int_equal(kc_client_patch(c, &kc_res_configmaps, "default", "cm1", KC_PATCH_APPLY, "{}", 2,
                                     &po, &b, &st), 0);
    assert_string_equal(T.last_target, "/api/v1/namespaces/default/configmaps/cm1/status?fieldManager=mgr&force=true");

    dopt.propagation_policy = "Foreground";
    dopt.grace_period_seconds = 0;
    dopt.precondition_uid = "uid-1";
    dopt.precondition_resource_version = "42";
    assert_int_equal(kc_client_delete(c, &kc_res_configmaps, "default", "cm1", &dopt, &b, &st), 0);
    assert_string_equal(T.last_method, "DELETE");
    j = cJSON_Parse(T.last_body);
    assert_non_null(j);
    assert_string_equal(JS(j, "kind"), "DeleteOptions");
    assert_string_equal(JS(j, "propagationPolicy"), "Foreground");
    assert_int_equal(cJSON_GetObjectItem(j, "gracePeriodSeconds")->valueint, 0);
    assert_string_equal(JS(cJSON_GetObjectItem(j, "preconditions"), "uid"), "uid-1");
    assert_string_equal(JS(cJSON_GetObjectItem(j, "preconditions"), "resourceVersion"), "42");
    cJSON_Delete(j);
    assert_int_equal(kc_client_delete(c, &kc_res_configmaps, "default", "cm1", NULL, &b, &st), 0);
    assert_string_equal(T.last_body, "");
    lo = (kc_list_opts_t)KC_LIST_OPTS_INIT;
    lo.label_selector = "app=x";
    assert_int_equal(kc_client_delete_collection(c, &kc_res_configmaps, "default", &lo, &b, &st), 0);
    assert_string_equal(T.last_target, "/api/v1/namespaces/default/configmaps?labelSelector=app%3Dx");

    /* discovery, cached */
    assert_int_equal(kc_client_discover(c, "v1", "Pod", &res, &st), 0);
    assert_string_equal(res.resource, "pods");
    assert_string_equal(res.group, "");
    assert_true(res.namespaced);
    assert_int_equal(kc_client_discover(c, "apps/v1", "Deployment", &res, &st), 0);
    assert_string_equal(res.resource, "deployments");
    assert_string_equal(res.group, "apps");
    {
        unsigned long before = T.requests;
        assert_int_equal(kc_client_discover(c, "v1", "Node", &res, &st), 0);
        assert_false(res.namespaced);
        assert_int_equal(kc_client_discover(c, "v1", "Pod", &res, &st), 0);
        assert_int_equal(T.requests, before + 1);   /* v1 Node fetched, Pod cached */
    }
    assert_int_equal(kc_client_discover(c, "v1", "Gizmo", &res, &st), KC_ENOTFOUND);

    /* bad names never reach the server */
    assert_int_equal(kc_client_get(c, &kc_res_configmaps, "default", "a/b", &b, &st), KC_EBADNAME);
    assert_int_equal(kc_client_get(c, &kc_res_configmaps, "default", "..", &b, &st), KC_EBADNAME);
    assert_int_equal(kc_client_get(c, &kc_res_configmaps, NULL, "x", &b, &st), -EINVAL);
    assert_true(__atomic_load_n(&hook_calls, __ATOMIC_RELAXED) >= 18);

    kc_buf_free(&b);
    kc_client_free(c);
}

static void expect_status(kc_client_t *c, const char *path, int err, int code, const char *reason,
                          const char *msg_part)
{
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    int rc = kc_client_request(c, "GET", path, NULL, NULL, NULL, 0, &b, &st);

    if (rc != err || st.err != err || st.http_code != code || strcmp(st.reason, reason) != 0 ||
        strstr(st.message, msg_part) == NULL)
        fail_msg("%s: want %s %d %s \"%s\", got %s %d %s \"%s\"", path, kc_err_name(err), code,
                 reason, msg_part, kc_err_name(rc), st.http_code, st.reason, st.message);
    kc_buf_free(&b);
}

static void test_errors_decoded(void **state)
{
    kc_client_opts_t o = KC_CLIENT_OPTS_INIT;
    kc_client_t *c;
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;

    (void)state;
    o.max_retries = 0;
    c = token_client(&o);
    expect_status(c, "/fail/403/Forbidden", KC_EFORBIDDEN, 403, "Forbidden", "scripted failure");
    expect_status(c, "/fail/404/NotFound", KC_ENOTFOUND, 404, "NotFound", "scripted");
    expect_status(c, "/fail/409/Conflict", KC_ECONFLICT, 409, "Conflict", "scripted");
    expect_status(c, "/fail/409/AlreadyExists", KC_EEXISTS, 409, "AlreadyExists", "scripted");
    expect_status(c, "/fail/410/Expired", KC_EGONE, 410, "Expired", "scripted");
    expect_status(c, "/fail/422/Invalid", KC_EINVALID, 422, "Invalid", "scripted");
    expect_status(c, "/fail/400/BadRequest", KC_EBADREQUEST, 400, "BadRequest", "scripted");
    expect_status(c, "/fail/500/InternalError", KC_ESERVER, 500, "InternalError", "scripted");
    expect_status(c, "/fail/418/Teapot", KC_EHTTP, 418, "Teapot", "scripted");
    expect_status(c, "/html", KC_ESERVER, 502, "Unknown", "HTML page instead of a Kubernetes Status: 502 Bad Gateway");
    expect_status(c, "/empty", KC_ESERVER, 500, "InternalError", "empty body");
    pthread_mutex_lock(&T.mu);
    T.apf_left = 1;
    pthread_mutex_unlock(&T.mu);
    expect_status(c, "/apf", KC_ETOOMANY, 429, "TooManyRequests",
                  "HTTP 429 (TooManyRequests): Too many requests, please try again later.");

    assert_int_equal(kc_client_get(c, &kc_res_configmaps, "default", "x", &b, &st), 0);
    assert_int_equal(kc_client_request(c, "GET", "/fail/404/NotFound", NULL, NULL, NULL, 0, &b, &st),
                     KC_ENOTFOUND);
    assert_true(kc_status_is_not_found(&st));
    assert_non_null(strstr(st.detail, "name=x"));
    assert_non_null(strstr(b.data, "\"kind\":\"Status\""));   /* the Status is in the body */
    assert_int_equal(kc_client_request(c, "GET", "/fail/409/Conflict", NULL, NULL, NULL, 0, &b, &st),
                     KC_ECONFLICT);
    assert_true(kc_status_is_conflict(&st));
    assert_int_equal(kc_client_request(c, "GET", "/fail/410/Expired", NULL, NULL, NULL, 0, &b, &st),
                     KC_EGONE);
    assert_true(kc_status_is_gone(&st));

    /* 401 with a static token: no refresh possible, one attempt */
    pthread_mutex_lock(&T.mu);
    snprintf(T.token, sizeof(T.token), "something-else");
    pthread_mutex_unlock(&T.mu);
    assert_int_equal(kc_client_get(c, &kc_res_configmaps, "default", "x", &b, &st), KC_EUNAUTHORIZED);
    assert_true(kc_status_is_unauthorized(&st));
    assert_int_equal(st.attempts, 1);

    /* a response bigger than the buffer's cap */
    pthread_mutex_lock(&T.mu);
    T.token[0] = '\0';
    pthread_mutex_unlock(&T.mu);
    b.max = 10;
    assert_int_equal(kc_client_get(c, &kc_res_configmaps, "default", "x", &b, &st), KC_ETOOBIG);
    assert_non_null(strstr(st.message, "larger than 10 bytes"));
    kc_buf_free(&b);
    kc_client_free(c);
}

static void test_retry_after_and_bounds(void **state)
{
    kc_client_opts_t o = KC_CLIENT_OPTS_INIT;
    kc_client_t *c;
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    uint64_t t0;
    double secs;

    (void)state;
    o.max_retries = 3;
    o.retry_base_ms = 10;
    o.retry_max_ms = 5000;
    c = token_client(&o);

    /* 429 + Retry-After: 1 twice, then 200: waits ~1 s each time */
    pthread_mutex_lock(&T.mu);
    T.apf_left = 2;
    pthread_mutex_unlock(&T.mu);
    t0 = kc_now_ns();
    assert_int_equal(kc_client_request(c, "GET", "/apf", NULL, NULL, NULL, 0, &b, &st), 0);
    secs = (double)(kc_now_ns() - t0) / 1e9;
    assert_int_equal(st.attempts, 3);
    if (secs < 1.9)
        fail_msg("Retry-After not honoured: %.3f s for two 1 s waits", secs);

    /* 503 forever: GET retried max_retries times then fails */
    assert_int_equal(kc_client_request(c, "GET", "/always503", NULL, NULL, NULL, 0, &b, &st), KC_ESERVER);
    assert_int_equal(st.attempts, 4);
    assert_int_equal(T.hits_503, 4);
    assert_true(kc_status_is_retryable(&st));
    /* POST is not idempotent: no retry on 5xx */
    assert_int_equal(kc_client_request(c, "POST", "/always503", NULL, "application/json", "{}", 2, &b, &st),
                     KC_ESERVER);
    assert_int_equal(T.hits_post503, 1);
    kc_client_free(c);

    /* connection refused: retried (nothing was sent), bounded */
    {
        kc_resp_t *dead;
        char url[64];
        assert_int_equal(kc_resp_start(handler, NULL, &dead), 0);
        snprintf(url, sizeof(url), "%s", kc_resp_url(dead));
        kc_resp_stop(dead);
        o.max_retries = 2;
        c = client_for(url, kc_resp_ca_pem(R), NULL, NULL, &o, 1);
        assert_int_equal(kc_client_get(c, &kc_res_configmaps, "default", "x", &b, &st), KC_ECONNECT);
        assert_int_equal(st.attempts, 3);
        assert_int_equal(st.http_code, 0);
        kc_client_free(c);
    }
    kc_buf_free(&b);
}

static void expect_tls_fail(kc_client_t *c, const char *what)
{
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    int rc = kc_client_get(c, &kc_res_configmaps, "default", "x", &b, &st);

    if (rc != KC_ETLS || strstr(st.message, "TLS") == NULL)
        fail_msg("%s: want KC_ETLS, got %s: %s", what, kc_err_name(rc), st.message);
    assert_int_equal(st.attempts, 1);   /* TLS failures are not retried */
    kc_buf_free(&b);
    kc_client_free(c);
}

static void test_tls_verification(void **state)
{
    kc_client_t *c;
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    char url[64];

    (void)state;
    /* wrong CA */
    expect_tls_fail(client_for(NULL, kc_resp_other_ca_pem(R), NULL, NULL, NULL, 1), "wrong CA");
    /* host name not in the certificate (tls-server-name sets SNI + verified name) */
    expect_tls_fail(client_for(NULL, kc_resp_ca_pem(R), "    tls-server-name: wrong.example.com\n",
                               NULL, NULL, 1),
                    "wrong host name");
    /* the right name through tls-server-name, and "localhost" which is in the SAN */
    c = client_for(NULL, kc_resp_ca_pem(R), "    tls-server-name: localhost\n", NULL, NULL, 1);
    assert_int_equal(kc_client_get(c, &kc_res_configmaps, "default", "x", &b, &st), 0);
    kc_client_free(c);
    snprintf(url, sizeof(url), "https://localhost:%d", kc_resp_port(R));
    c = client_for(url, kc_resp_ca_pem(R), NULL, NULL, NULL, 1);
    assert_int_equal(kc_client_get(c, &kc_res_configmaps, "default", "x", &b, &st), 0);
    kc_client_free(c);
    kc_buf_free(&b);
}

static void test_client_cert(void **state)
{
    char *cert, *key, *cb, *kb, user[4096];
    kc_client_t *c;
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    cJSON *j;

    (void)state;
    assert_int_equal(kc_resp_issue_client_cert(R, "alice", &cert, &key), 0);
    cb = kc__b64_encode(cert, strlen(cert));
    kb = kc__b64_encode(key, strlen(key));
    snprintf(user, sizeof(user), "    client-certificate-data: %s\n    client-key-data: %s\n", cb, kb);
    c = client_for(NULL, kc_resp_ca_pem(R), NULL, user, NULL, 1);
    assert_int_equal(kc_client_request(c, "GET", "/whoami", NULL, NULL, NULL, 0, &b, &st), 0);
    j = body_json(&b);
    assert_string_equal(JS(j, "cn"), "alice");
    cJSON_Delete(j);
    kc_client_free(c);

    /* from files, relative to the kubeconfig */
    wfile("alice.crt", cert);
    wfile("alice.key", key);
    c = client_for(NULL, kc_resp_ca_pem(R), NULL,
                   "    client-certificate: alice.crt\n    client-key: alice.key\n", NULL, 1);
    assert_int_equal(kc_client_request(c, "GET", "/whoami", NULL, NULL, NULL, 0, &b, &st), 0);
    j = body_json(&b);
    assert_string_equal(JS(j, "cn"), "alice");
    cJSON_Delete(j);
    kc_client_free(c);

    /* no certificate: no CN */
    c = client_for(NULL, kc_resp_ca_pem(R), NULL, NULL, NULL, 1);
    assert_int_equal(kc_client_request(c, "GET", "/whoami", NULL, NULL, NULL, 0, &b, &st), 0);
    j = body_json(&b);
    assert_string_equal(JS(j, "cn"), "");
    cJSON_Delete(j);
    kc_client_free(c);
    free(cert);
    free(key);
    free(cb);
    free(kb);
    kc_buf_free(&b);
}

static void set_token(const char *t)
{
    pthread_mutex_lock(&T.mu);
    snprintf(T.token, sizeof(T.token), "%s", t);
    pthread_mutex_unlock(&T.mu);
}

static void test_in_cluster_token_rotation(void **state)
{
    kc_config_opts_t co = KC_CONFIG_OPTS_INIT;
    kc_config_t *cfg;
    kc_client_t *c;
    kc_errbuf_t eb;
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    char port[16];

    (void)state;
    mkdir(tpath("sa"), 0700);
    wfile("sa/token", "token-one\n");
    wfile("sa/ca.crt", kc_resp_ca_pem(R));
    wfile("sa/namespace", "apps");
    snprintf(port, sizeof(port), "%d", kc_resp_port(R));
    setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", port, 1);
    co.in_cluster = 1;
    co.incluster_dir = tpath("sa");
    assert_int_equal(kc_config_load(&co, &cfg, &eb), 0);
    assert_int_equal(kc_client_new(cfg, NULL, &c, &eb), 0);
    kc_config_free(cfg);
    assert_string_equal(kc_client_namespace(c), "apps");

    set_token("token-one");
    assert_int_equal(kc_client_get(c, &kc_res_configmaps, "apps", "x", &b, &st), 0);
    assert_string_equal(T.last_auth, "Bearer token-one");
    /* the kubelet rotates the file: the next request uses the new token */
    set_token("token-two");
    wfile("sa/token", "token-two\n");
    assert_int_equal(kc_client_get(c, &kc_res_configmaps, "apps", "x", &b, &st), 0);
    assert_string_equal(T.last_auth, "Bearer token-two");
    assert_int_equal(st.attempts, 1);
    /* server stops accepting token-two: 401, re-read, still two: fails
     * after exactly one credential refresh */
    set_token("token-three");
    assert_int_equal(kc_client_get(c, &kc_res_configmaps, "apps", "x", &b, &st), KC_EUNAUTHORIZED);
    assert_int_equal(st.attempts, 2);
    /* a 401 makes the client re-read the file even if it looks unchanged */
    pthread_mutex_lock(&T.mu);
    snprintf(T.reject_once, sizeof(T.reject_once), "token-three");
    pthread_mutex_unlock(&T.mu);
    wfile("sa/token", "token-three");
    assert_int_equal(kc_client_get(c, &kc_res_configmaps, "apps", "x", &b, &st), 0);
    assert_int_equal(st.attempts, 2);
    assert_string_equal(T.last_auth, "Bearer token-three");
    kc_client_free(c);
    kc_buf_free(&b);
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
}

static void test_exec_plugin_expiry(void **state)
{
    kc_client_t *c;
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    char script[2048], user[1024];
    uint64_t t_run, now;

    (void)state;
    /* each run hands out gen-N, valid for 11-12 s (date truncates to the
     * second); the client renews 5 s early, i.e. 6-7 s after the run */
    snprintf(script, sizeof(script),
             "#!/bin/sh\n"
             "n=$(cat '%s' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '%s'\n"
             "exp=$(date -u -d '+12 seconds' +%%Y-%%m-%%dT%%H:%%M:%%SZ)\n"
             "echo '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\","
             "\"status\":{\"token\":\"gen-'$n'\",\"expirationTimestamp\":\"'$exp'\"}}'\n",
             tpath("execcount"), tpath("execcount"));
    wfile("plugin.sh", script);
    snprintf(user, sizeof(user),
             "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n"
             "      command: ./plugin.sh\n      interactiveMode: Never\n");
    pthread_mutex_lock(&T.mu);
    snprintf(T.token_prefix, sizeof(T.token_prefix), "gen-");
    pthread_mutex_unlock(&T.mu);
    c = client_for(NULL, kc_resp_ca_pem(R), NULL, user, NULL, 1);
    assert_int_equal(kc_client_get(c, &kc_res_configmaps, "default", "x", &b, &st), 0);
    t_run = kc_now_ns();   /* the plugin ran before this */
    assert_string_equal(T.last_auth, "Bearer gen-1");
    assert_int_equal(kc_client_get(c, &kc_res_configmaps, "default", "x", &b, &st), 0);
    /* cached: reused for at least 6 s after the run, so this holds unless
     * the two requests together took that long */
    assert_string_equal(T.last_auth, "Bearer gen-1");
    /* 7.1 s after the run the credential is within 5 s of its expiry
     * however the timestamp was rounded: renewed */
    now = kc_now_ns();
    if (now < t_run + 7100000000ull)
        sleep_ms((long)((t_run + 7100000000ull - now) / 1000000ull) + 1);
    assert_int_equal(kc_client_get(c, &kc_res_configmaps, "default", "x", &b, &st), 0);
    assert_string_equal(T.last_auth, "Bearer gen-2");
    /* a 401 runs the plugin again */
    pthread_mutex_lock(&T.mu);
    snprintf(T.reject_once, sizeof(T.reject_once), "gen-2");
    pthread_mutex_unlock(&T.mu);
    assert_int_equal(kc_client_get(c, &kc_res_configmaps, "default", "x", &b, &st), 0);
    assert_string_equal(T.last_auth, "Bearer gen-3");
    assert_int_equal(st.attempts, 2);
    kc_client_free(c);

    /* a failing plugin: the request fails with its message, nothing sent */
    wfile("plugin.sh", "#!/bin/sh\necho 'token expired, run login' >&2\nexit 1\n");
    c = client_for(NULL, kc_resp_ca_pem(R), NULL, user, NULL, 1);
    {
        unsigned long before = T.requests;
        assert_int_equal(kc_client_get(c, &kc_res_configmaps, "default", "x", &b, &st), KC_EAUTH);
        assert_non_null(strstr(st.message, "token expired, run login"));
        assert_int_equal(T.requests, before);
    }
    kc_client_free(c);
    kc_buf_free(&b);
}

typedef struct rl_arg {
    kc_client_t *c;
    _Atomic int tickets;   /* requests left to make, shared by the threads */
    _Atomic int errors;
} rl_arg_t;

static void *rl_worker(void *p)
{
    rl_arg_t *a = p;
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;

    while (atomic_fetch_sub(&a->tickets, 1) > 0)
        if (kc_client_get(a->c, &kc_res_configmaps, "default", "x", &b, &st) != 0)
            atomic_fetch_add(&a->errors, 1);
    kc_buf_free(&b);
    return NULL;
}

/* The bucket holds `burst` tokens and refills at qps: however the threads
 * are scheduled, n requests cannot all have been admitted sooner than
 * (n - burst) / qps after the bucket was last full.  That lower bound holds
 * on any machine, so it is asserted exactly; a slow run only adds time, so
 * the upper bound (the limiter must not starve requests) is generous. */
static void test_rate_limiter_and_threads(void **state)
{
    kc_client_opts_t o = KC_CLIENT_OPTS_INIT;
    rl_arg_t a;
    pthread_t th[6];
    unsigned long n, conns0;
    const int total = 45;
    double secs, floor_s;
    uint64_t t0;

    (void)state;
    o.qps = 20;
    o.burst = 5;
    t0 = kc_now_ns();   /* before the client (and its full bucket) exists */
    a.c = token_client(&o);
    atomic_init(&a.tickets, total);
    atomic_init(&a.errors, 0);
    pthread_mutex_lock(&T.mu);
    T.requests = 0;
    pthread_mutex_unlock(&T.mu);
    conns0 = kc_resp_connections(R);
    for (int i = 0; i < 6; i++)
        pthread_create(&th[i], NULL, rl_worker, &a);
    for (int i = 0; i < 6; i++)
        pthread_join(th[i], NULL);
    secs = (double)(kc_now_ns() - t0) / 1e9;
    pthread_mutex_lock(&T.mu);
    n = T.requests;
    pthread_mutex_unlock(&T.mu);
    assert_int_equal(atomic_load(&a.errors), 0);
    assert_int_equal(n, (unsigned long)total);
    floor_s = (total - o.burst) / o.qps;   /* 2.0 s */
    if (secs < floor_s - 0.01 || secs > floor_s + 30.0)
        fail_msg("rate limiter: %d requests took %.3f s at qps %.0f burst %d (at least %.2f s)",
                 total, secs, o.qps, o.burst, floor_s);
    print_message("rate limiter: %d requests in %.3f s (floor %.2f s)\n", total, secs, floor_s);
    /* six threads, connection reuse: at most one connection per thread */
    assert_true(kc_resp_connections(R) - conns0 <= 6);
    kc_client_free(a.c);
}

typedef struct wrec {
    int n;
    kc_watch_type_t types[16];
    size_t lens[16];
    int stop_after;
} wrec_t;

static int wcb(void *ud, const kc_watch_event_t *ev)
{
    wrec_t *w = ud;

    if (w->n < 16) {
        w->types[w->n] = ev->type;
        w->lens[w->n] = ev->object_len;
    }
    w->n++;
    return w->stop_after && w->n >= w->stop_after ? 1 : 0;
}

static void set_watch_mode(int m)
{
    pthread_mutex_lock(&T.mu);
    T.watch_mode = m;
    pthread_mutex_unlock(&T.mu);
}

typedef struct cancel_arg {
    kc_cancel_t *cancel;
    wrec_t w;            /* written by the watching thread only */
    _Atomic int seen;    /* events so far, for the cancelling thread */
    uint64_t cancel_ns;  /* when the cancel was set (0: never) */
} cancel_arg_t;

static int wcb_seen(void *ud, const kc_watch_event_t *ev)
{
    cancel_arg_t *a = ud;
    int rc = wcb(&a->w, ev);

    atomic_fetch_add(&a->seen, 1);
    return rc;
}

/* Cancel once the watch has delivered its first event (not after a fixed
 * time, which a slow TLS handshake under a sanitizer can outlast); gives up
 * after 30 s so that a broken watch cannot hang the test. */
static void *canceller(void *p)
{
    cancel_arg_t *a = p;

    for (int i = 0; i < 3000 && atomic_load(&a->seen) == 0; i++)
        sleep_ms(10);
    sleep_ms(50);
    a->cancel_ns = kc_now_ns();
    kc_cancel_set(a->cancel);
    return NULL;
}

static void test_watch(void **state)
{
    kc_client_opts_t o = KC_CLIENT_OPTS_INIT;
    kc_watch_opts_t wo = KC_WATCH_OPTS_INIT;
    kc_client_t *c;
    kc_status_t st;
    wrec_t w;
    uint64_t t0;
    double secs;
    kc_cancel_t cancel = KC_CANCEL_INIT;

    (void)state;
    /* the idle clock also runs while a new connection is set up: 2 s leaves
     * room for a TLS handshake in a slow sanitizer run */
    o.watch_idle_timeout_ms = 2000;
    c = token_client(&o);

    /* the recorded stream in odd chunks: all 8 events, in order */
    memset(&w, 0, sizeof(w));
    wo.resource_version = "1000";
    wo.timeout_seconds = 30;
    wo.label_selector = "app=x";
    assert_int_equal(kc_client_watch(c, &kc_res_configmaps, "default", &wo, wcb, &w, &st), 0);
    assert_string_equal(T.last_target, "/api/v1/namespaces/default/configmaps?watch=true&"
                                       "resourceVersion=1000&allowWatchBookmarks=true&"
                                       "labelSelector=app%3Dx&timeoutSeconds=30");
    assert_int_equal(w.n, 8);
    assert_int_equal(w.types[0], KC_WATCH_ADDED);
    assert_int_equal(w.types[5], KC_WATCH_DELETED);
    assert_int_equal(w.types[6], KC_WATCH_BOOKMARK);
    assert_int_equal(w.types[7], KC_WATCH_ERROR);
    /* no Accept-Encoding on a watch: kube-apiserver gzips a watch as many
     * gzip members and libcurl stops after the first */
    assert_string_equal(T.last_ae, "");

    /* streaming list parameters */
    memset(&w, 0, sizeof(w));
    wo = (kc_watch_opts_t)KC_WATCH_OPTS_INIT;
    wo.send_initial_events = 1;
    assert_int_equal(kc_client_watch(c, &kc_res_pods, NULL, &wo, wcb, &w, &st), 0);
    assert_string_equal(T.last_target, "/api/v1/pods?watch=true&allowWatchBookmarks=true&"
                                       "sendInitialEvents=true&resourceVersionMatch=NotOlderThan");

    /* callback stops after 3 */
    memset(&w, 0, sizeof(w));
    w.stop_after = 3;
    wo = (kc_watch_opts_t)KC_WATCH_OPTS_INIT;
    assert_int_equal(kc_client_watch(c, &kc_res_configmaps, "default", &wo, wcb, &w, &st), KC_ESTOPPED);
    assert_int_equal(w.n, 3);

    /* 403 before the stream: decoded, callback never called */
    set_watch_mode(W_FORBIDDEN);
    memset(&w, 0, sizeof(w));
    if (kc_client_watch(c, &kc_res_configmaps, "default", &wo, wcb, &w, &st) != KC_EFORBIDDEN)
        fail_msg("403 watch: %s %s", kc_err_name(st.err), st.message);
    assert_string_equal(st.reason, "Forbidden");
    assert_non_null(strstr(st.message, "cannot watch"));
    assert_int_equal(w.n, 0);

    /* stream ends cleanly in the middle of an event: truncated */
    set_watch_mode(W_TRUNC_CLEAN);
    memset(&w, 0, sizeof(w));
    assert_int_equal(kc_client_watch(c, &kc_res_configmaps, "default", &wo, wcb, &w, &st), KC_EPARSE);
    assert_int_equal(w.n, 1);
    assert_non_null(strstr(st.message, "truncated"));

    /* connection dropped mid-event */
    set_watch_mode(W_CUT);
    memset(&w, 0, sizeof(w));
    assert_int_equal(kc_client_watch(c, &kc_res_configmaps, "default", &wo, wcb, &w, &st), KC_ECLOSED);
    assert_int_equal(w.n, 1);

    /* a bad line: what and where */
    set_watch_mode(W_BAD);
    memset(&w, 0, sizeof(w));
    assert_int_equal(kc_client_watch(c, &kc_res_configmaps, "default", &wo, wcb, &w, &st), KC_EPARSE);
    assert_int_equal(w.n, 2);
    if (strstr(st.message, "line 3") == NULL || strstr(st.message, "not JSON") == NULL)
        fail_msg("bad line message: %s", st.message);

    /* idle: one event, then no bytes for 2 s (the server would stall for
     * 20 s): ended by the idle guard, not by the server */
    set_watch_mode(W_STALL);
    memset(&w, 0, sizeof(w));
    t0 = kc_now_ns();
    assert_int_equal(kc_client_watch(c, &kc_res_configmaps, "default", &wo, wcb, &w, &st), KC_ETIMEOUT);
    secs = (double)(kc_now_ns() - t0) / 1e9;
    assert_int_equal(w.n, 1);
    if (secs < 1.9 || secs > 15.0)
        fail_msg("idle guard of 2 s fired after %.3f s", secs);
    kc_client_free(c);

    /* cancel from another thread, on a client whose idle guard cannot
     * interfere */
    o.watch_idle_timeout_ms = 60000;
    c = token_client(&o);
    {
        pthread_t th;
        cancel_arg_t *ca = calloc(1, sizeof(*ca));
        assert_non_null(ca);
        ca->cancel = &cancel;
        wo.cancel = &cancel;
        pthread_create(&th, NULL, canceller, ca);
        assert_int_equal(kc_client_watch(c, &kc_res_configmaps, "default", &wo, wcb_seen, ca, &st),
                         KC_ESTOPPED);
        t0 = kc_now_ns();
        pthread_join(th, NULL);
        assert_true(ca->cancel_ns > 0);
        /* cancel is looked at every 100 ms; without it the watch would
         * last the server's 20 s stall */
        secs = t0 > ca->cancel_ns ? (double)(t0 - ca->cancel_ns) / 1e9 : 0;
        if (secs > 5.0)
            fail_msg("watch ended %.3f s after the cancel", secs);
        assert_int_equal(ca->w.n, 1);
        free(ca);
    }
    /* an event bigger than max_event_size */
    kc_client_free(c);
    o.max_event_size = 1000;
    c = token_client(&o);
    set_watch_mode(W_STREAM);
    memset(&w, 0, sizeof(w));
    wo = (kc_watch_opts_t)KC_WATCH_OPTS_INIT;
    assert_int_equal(kc_client_watch(c, &kc_res_configmaps, "default", &wo, wcb, &w, &st), KC_ETOOBIG);
    assert_int_equal(w.n, 1);
    assert_non_null(strstr(st.message, "line 2"));
    kc_client_free(c);
}

typedef struct conc_arg {
    kc_client_t *c;
    int n;
    int errors;
    int watch;
} conc_arg_t;

static void *conc_worker(void *p)
{
    conc_arg_t *a = p;
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;

    for (int i = 0; i < a->n; i++) {
        int rc;
        if (a->watch) {
            wrec_t w;
            kc_watch_opts_t wo = KC_WATCH_OPTS_INIT;
            memset(&w, 0, sizeof(w));
            rc = kc_client_watch(a->c, &kc_res_configmaps, "default", &wo, wcb, &w, &st);
            if (rc == 0 && w.n != 8)
                rc = -1;
        } else {
            rc = kc_client_get(a->c, &kc_res_configmaps, "default", "x", &b, &st);
        }
        if (rc != 0)
            __atomic_fetch_add(&a->errors, 1, __ATOMIC_RELAXED);
    }
    kc_buf_free(&b);
    return NULL;
}

static void test_concurrent_refresh(void **state)
{
    kc_client_opts_t o = KC_CLIENT_OPTS_INIT;
    kc_client_t *c;
    char script[1024], user[512];
    pthread_t th[6];
    conc_arg_t a[6];
    kc__blob_t runs = {0};
    int iters = getenv("KC_SANITIZER") ? 6 : 15;

    (void)state;
    /* credentials that are always "about to expire" (inside the 5 s
     * renewal margin): a request that finds one runs the plugin, so threads
     * meet in the refresh path; the server accepts any gen-* token */
    snprintf(script, sizeof(script),
             "#!/bin/sh\necho x >> '%s'\n"
             "exp=$(date -u -d '+4 seconds' +%%Y-%%m-%%dT%%H:%%M:%%SZ)\n"
             "echo '{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"kind\":\"ExecCredential\","
             "\"status\":{\"token\":\"gen-'$$'\",\"expirationTimestamp\":\"'$exp'\"}}'\n",
             tpath("runs"));
    wfile("plugin2.sh", script);
    snprintf(user, sizeof(user),
             "    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n"
             "      command: ./plugin2.sh\n");
    pthread_mutex_lock(&T.mu);
    snprintf(T.token_prefix, sizeof(T.token_prefix), "gen-");
    pthread_mutex_unlock(&T.mu);
    o.qps = 0;
    c = client_for(NULL, kc_resp_ca_pem(R), NULL, user, &o, 1);
    for (int i = 0; i < 6; i++) {
        a[i] = (conc_arg_t){c, iters, 0, i >= 4};
        pthread_create(&th[i], NULL, conc_worker, &a[i]);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(a[i].errors, 0);
    }
    kc_client_free(c);
    /* one run per refresh, not one per thread per refresh: the waiters
     * share the result of the thread that ran it */
    assert_int_equal(kc__read_file(tpath("runs"), 1 << 20, &runs), 0);
    if (runs.len / 2 < 1 || runs.len / 2 >= (size_t)(6 * iters))
        fail_msg("%zu plugin runs for %d requests", runs.len / 2, 6 * iters);
    print_message("concurrent refresh: %zu plugin runs for %d requests\n", runs.len / 2, 6 * iters);
    kc__blob_free(&runs);
}

/* ---- a one-tunnel-at-a-time HTTP CONNECT proxy for proxy-url ---- */

typedef struct proxy {
    int lfd;
    int port;
    pthread_t th;
    _Atomic int stop;
    _Atomic int connects;
    char target[256];   /* last CONNECT target, written by the proxy thread */
} proxy_t;

static void pump(proxy_t *px, int a, int b)
{
    char buf[16384];

    while (!atomic_load(&px->stop)) {
        struct pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
        int r = poll(p, 2, 100);
        if (r < 0)
            return;
        for (int i = 0; i < 2; i++) {
            ssize_t n;
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            n = read(p[i].fd, buf, sizeof(buf));
            if (n <= 0 || write(i ? a : b, buf, (size_t)n) != n)
                return;
        }
    }
}

static void *proxy_main(void *arg)
{
    proxy_t *px = arg;

    while (!atomic_load(&px->stop)) {
        struct pollfd pl = {px->lfd, POLLIN, 0};
        char req[2048], host[200];
        size_t len = 0;
        int cfd, ufd, port;
        struct sockaddr_in sa;

        if (poll(&pl, 1, 100) <= 0)
            continue;
        cfd = accept(px->lfd, NULL, NULL);
        if (cfd < 0)
            continue;
        while (len < sizeof(req) - 1) {
            ssize_t n = read(cfd, req + len, sizeof(req) - 1 - len);
            if (n <= 0)
                break;
            len += (size_t)n;
            req[len] = '\0';
            if (strstr(req, "\r\n\r\n"))
                break;
        }
        req[len] = '\0';
        if (sscanf(req, "CONNECT %199[^:]:%d ", host, &port) != 2) {
            close(cfd);
            continue;
        }
        snprintf(px->target, sizeof(px->target), "%s:%d", host, port);
        atomic_fetch_add(&px->connects, 1);
        ufd = socket(AF_INET, SOCK_STREAM, 0);
        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_port = htons((uint16_t)port);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(ufd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            const char *ok = "HTTP/1.1 200 Connection established\r\n\r\n";
            if (write(cfd, ok, strlen(ok)) > 0)
                pump(px, cfd, ufd);
        }
        close(ufd);
        close(cfd);
    }
    return NULL;
}

static void test_proxy_url(void **state)
{
    proxy_t px;
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    char extra[128], want[64];
    kc_client_t *c;
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;

    (void)state;
    memset(&px, 0, sizeof(px));
    px.lfd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(px.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(px.lfd, 4), 0);
    assert_int_equal(getsockname(px.lfd, (struct sockaddr *)&sa, &sl), 0);
    px.port = ntohs(sa.sin_port);
    pthread_create(&px.th, NULL, proxy_main, &px);

    snprintf(extra, sizeof(extra), "    proxy-url: http://127.0.0.1:%d\n", px.port);
    c = client_for(NULL, kc_resp_ca_pem(R), extra, NULL, NULL, 1);
    assert_int_equal(kc_client_get(c, &kc_res_configmaps, "default", "via-proxy", &b, &st), 0);
    assert_int_equal(kc_client_get(c, &kc_res_configmaps, "default", "via-proxy", &b, &st), 0);
    assert_string_equal(T.last_target, "/api/v1/namespaces/default/configmaps/via-proxy");
    assert_int_equal(atomic_load(&px.connects), 1);   /* the tunnel is reused */
    snprintf(want, sizeof(want), "127.0.0.1:%d", kc_resp_port(R));
    assert_string_equal(px.target, want);
    kc_client_free(c);

    atomic_store(&px.stop, 1);
    pthread_join(px.th, NULL);
    close(px.lfd);
    kc_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_verbs, reset),
        cmocka_unit_test_setup(test_errors_decoded, reset),
        cmocka_unit_test_setup(test_retry_after_and_bounds, reset),
        cmocka_unit_test_setup(test_tls_verification, reset),
        cmocka_unit_test_setup(test_client_cert, reset),
        cmocka_unit_test_setup(test_in_cluster_token_rotation, reset),
        cmocka_unit_test_setup(test_exec_plugin_expiry, reset),
        cmocka_unit_test_setup(test_rate_limiter_and_threads, reset),
        cmocka_unit_test_setup(test_watch, reset),
        cmocka_unit_test_setup(test_proxy_url, reset),
        cmocka_unit_test_setup(test_concurrent_refresh, reset),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
