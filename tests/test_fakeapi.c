/*
 * Tests of the fake API server (tests/fakeapi/) over real HTTPS with
 * libcurl: discovery, authentication and authorisation, create/update/
 * patch/delete semantics and Status errors, pagination and continue
 * expiry, resourceVersion semantics, selectors, watch replay, the history
 * window and 410, bookmarks, sendInitialEvents, finalizers, namespace
 * deletion, every fault, restart, many watchers, and the direct C API.
 *
 * Each test starts its own server on 127.0.0.1:0 and frees it in the
 * teardown.  Watches are bounded by timeoutSeconds so every test stops by
 * itself.  KC_SANITIZER=asan|tsan scales the bigger loops down.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>
#include <curl/curl.h>

#include "realapi/c/wire_expect.h"

#include "fakeapi.h"
#include "fakeapi_int.h"   /* fa_call, fa_load_churn, fa_watch_prerender_all */

static kc_fakeapi_t *srv;
static int g_scale = 1; /* divisor under sanitizers */

/* ---- helpers --------------------------------------------------------------- */

static void start(kc_fakeapi_opts_t *o)
{
    kc_fakeapi_opts_t d = KC_FAKEAPI_OPTS_INIT;
    if (!o)
        o = &d;
    o->token = "test-token";
    assert_int_equal(kc_fakeapi_new(o, &srv), 0);
    assert_int_equal(kc_fakeapi_start(srv), 0);
    assert_true(strncmp(kc_fakeapi_url(srv), "https://127.0.0.1:", 18) == 0);
}

static int teardown(void **state)
{
    (void)state;
    kc_fakeapi_free(srv);
    srv = NULL;
    return 0;
}

typedef struct resp {
    long code;
    char *body;
    size_t len;
    char ctype[256];
    char retry_after[256];
    CURLcode cc;
    double secs;
} resp_t;

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    resp_t *r = ud;
    char *nb = realloc(r->body, r->len + sz * n + 1);
    if (!nb)
        return 0;
    memcpy(nb + r->len, p, sz * n);
    r->body = nb;
    r->len += sz * n;
    r->body[r->len] = 0;
    return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    resp_t *r = ud;
    size_t len = sz * n;
    char line[256];
    snprintf(line, sizeof(line), "%.*s", (int)(len < 255 ? len : 255), p);
    line[strcspn(line, "\r\n")] = 0;
    if (!strncasecmp(line, "Content-Type: ", 14))
        snprintf(r->ctype, sizeof(r->ctype), "%s", line + 14);
    if (!strncasecmp(line, "Retry-After: ", 13))
        snprintf(r->retry_after, sizeof(r->retry_after), "%s", line + 13);
    return len;
}

typedef struct reqopt {
    const char *token;           /* NULL: test-token; "": none */
    const char *accept;
    const char *cert_pem, *key_pem;
    long timeout_ms;
    const char *user_agent;
} reqopt_t;

static void reqx(const char *method, const char *path, const char *ctype, const char *body,
                 const reqopt_t *ro, resp_t *r)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    char url[1024], hb[256];
    struct curl_blob ca = {(void *)kc_fakeapi_ca_pem(srv), strlen(kc_fakeapi_ca_pem(srv)), CURL_BLOB_COPY};
    reqopt_t dflt = {NULL, NULL, NULL, NULL, 0, NULL};
    if (!ro)
        ro = &dflt;
    memset(r, 0, sizeof(*r));
    assert_non_null(c);
    snprintf(url, sizeof(url), "%s%s", kc_fakeapi_url(srv), path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &ca);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, ro->timeout_ms ? ro->timeout_ms : 20000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (!ro->token || ro->token[0]) {
        snprintf(hb, sizeof(hb), "Authorization: Bearer %s", ro->token ? ro->token : "test-token");
        h = curl_slist_append(h, hb);
    }
    if (ro->accept) {
        snprintf(hb, sizeof(hb), "Accept: %s", ro->accept);
        h = curl_slist_append(h, hb);
    }
    if (ro->user_agent)
        curl_easy_setopt(c, CURLOPT_USERAGENT, ro->user_agent);
    if (ctype) {
        snprintf(hb, sizeof(hb), "Content-Type: %s", ctype);
        h = curl_slist_append(h, hb);
    }
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    struct curl_blob cb, kb;
    if (ro->cert_pem) {
        cb.data = (void *)ro->cert_pem;
        cb.len = strlen(ro->cert_pem);
        cb.flags = CURL_BLOB_COPY;
        kb.data = (void *)ro->key_pem;
        kb.len = strlen(ro->key_pem);
        kb.flags = CURL_BLOB_COPY;
        curl_easy_setopt(c, CURLOPT_SSLCERT_BLOB, &cb);
        curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(c, CURLOPT_SSLKEY_BLOB, &kb);
        curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    r->cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->code);
    curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &r->secs);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (!r->body)
        r->body = calloc(1, 1);
}

static void req(const char *method, const char *path, const char *body, resp_t *r)
{
    reqx(method, path, body ? "application/json" : NULL, body, NULL, r);
}

static void rfree(resp_t *r)
{
    free(r->body);
    r->body = NULL;
}

/* Value at a dotted path of a JSON text, as a string ("" if absent).  Numbers
 * are printed as integers. */
static const char *jget(const char *json, const char *path)
{
    static char out[1024];
    cJSON *j = cJSON_Parse(json), *cur = j;
    char part[128];
    const char *p = path;
    out[0] = 0;
    while (cur && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        snprintf(part, sizeof(part), "%.*s", (int)n, p);
        if (cJSON_IsArray(cur))
            cur = cJSON_GetArrayItem(cur, atoi(part));
        else
            cur = cJSON_GetObjectItemCaseSensitive(cur, part);
        p = dot ? dot + 1 : p + n;
    }
    if (cJSON_IsString(cur))
        snprintf(out, sizeof(out), "%s", cur->valuestring);
    else if (cJSON_IsNumber(cur))
        snprintf(out, sizeof(out), "%.0f", cur->valuedouble);
    else if (cJSON_IsBool(cur))
        snprintf(out, sizeof(out), "%s", cJSON_IsTrue(cur) ? "true" : "false");
    else if (cur && !cJSON_IsNull(cur))
        snprintf(out, sizeof(out), "<%s>", cJSON_IsArray(cur) ? "array" : "object");
    cJSON_Delete(j);
    return out;
}

static int jcount(const char *json, const char *path)
{
    cJSON *j = cJSON_Parse(json);
    cJSON *a = cJSON_GetObjectItemCaseSensitive(j, path);
    int n = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : -1;
    cJSON_Delete(j);
    return n;
}

static void create_cm(const char *ns, const char *name, const char *labels_json)
{
    char path[256], body[1024];
    resp_t r;
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps", ns);
    snprintf(body, sizeof(body), "{\"metadata\":{\"name\":\"%s\"%s%s},\"data\":{\"k\":\"v\"}}", name,
             labels_json ? ",\"labels\":" : "", labels_json ? labels_json : "");
    req("POST", path, body, &r);
    if (r.code != 201)
        fail_msg("create %s/%s: %ld %s", ns, name, r.code, r.body);
    rfree(&r);
}

static void create_ns(const char *name)
{
    char body[256];
    resp_t r;
    snprintf(body, sizeof(body), "{\"metadata\":{\"name\":\"%s\"}}", name);
    req("POST", "/api/v1/namespaces", body, &r);
    if (r.code != 201)
        fail_msg("create ns %s: %ld %s", name, r.code, r.body);
    rfree(&r);
}

static char g_rv[32];
static const char *rv_now(void)
{
    snprintf(g_rv, sizeof(g_rv), "%" PRIu64, kc_fakeapi_revision(srv));
    return g_rv;
}

/* ---- watch collection -------------------------------------------------------- */

typedef struct events {
    int n;
    char type[256][16];
    char name[256][64];
    char rv[256][24];
    char ann[256][8];            /* "end" for initial-events-end bookmarks */
    double t[256];               /* arrival, seconds since start */
    char code[256][8];           /* ERROR events: status code */
    resp_t r;
    size_t parsed;
    struct timespec t0;
    int stop_after;
} events_t;

static size_t on_watch(char *p, size_t sz, size_t n, void *ud)
{
    events_t *e = ud;
    struct timespec now;
    on_body(p, sz, n, &e->r);
    clock_gettime(CLOCK_MONOTONIC, &now);
    char *nl;
    while ((nl = memchr(e->r.body + e->parsed, '\n', e->r.len - e->parsed)) != NULL) {
        size_t len = (size_t)(nl - (e->r.body + e->parsed));
        cJSON *j = cJSON_ParseWithLength(e->r.body + e->parsed, len);
        e->parsed += len + 1;
        if (!j || e->n >= 256) {
            cJSON_Delete(j);
            continue;
        }
        cJSON *o = cJSON_GetObjectItemCaseSensitive(j, "object");
        cJSON *md = cJSON_GetObjectItemCaseSensitive(o, "metadata");
        cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "type");
        cJSON *nm = cJSON_GetObjectItemCaseSensitive(md, "name");
        cJSON *rv = cJSON_GetObjectItemCaseSensitive(md, "resourceVersion");
        cJSON *an = cJSON_GetObjectItemCaseSensitive(md, "annotations");
        cJSON *code = cJSON_GetObjectItemCaseSensitive(o, "code");
        snprintf(e->type[e->n], 16, "%s", cJSON_IsString(t) ? t->valuestring : "?");
        snprintf(e->name[e->n], 64, "%s", cJSON_IsString(nm) ? nm->valuestring : "");
        snprintf(e->rv[e->n], 24, "%s", cJSON_IsString(rv) ? rv->valuestring : "");
        snprintf(e->ann[e->n], 8, "%s",
                 cJSON_GetObjectItemCaseSensitive(an, "k8s.io/initial-events-end") ? "end" : "");
        snprintf(e->code[e->n], 8, "%d", cJSON_IsNumber(code) ? code->valueint : 0);
        e->t[e->n] = (double)(now.tv_sec - e->t0.tv_sec) + (double)(now.tv_nsec - e->t0.tv_nsec) / 1e9;
        __atomic_store_n(&e->n, e->n + 1, __ATOMIC_RELEASE); /* polled by other threads */
        cJSON_Delete(j);
    }
    if (e->stop_after && e->n >= e->stop_after)
        return 0;
    return sz * n;
}

static const char *g_watch_accept; /* Accept header for watch_collect */

/* GET path (a watch URL with timeoutSeconds) until the server ends it. */
static void watch_collect(const char *path, events_t *e)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer test-token");
    char url[1024];
    struct curl_blob ca = {(void *)kc_fakeapi_ca_pem(srv), strlen(kc_fakeapi_ca_pem(srv)), CURL_BLOB_COPY};
    int stop = e->stop_after;
    if (g_watch_accept) {
        snprintf(url, sizeof(url), "Accept: %s", g_watch_accept);
        h = curl_slist_append(h, url);
    }
    memset(e, 0, sizeof(*e));
    e->stop_after = stop;
    clock_gettime(CLOCK_MONOTONIC, &e->t0);
    snprintf(url, sizeof(url), "%s%s", kc_fakeapi_url(srv), path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &ca);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_watch);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, e);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &e->r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    e->r.cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &e->r.code);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static void efree(events_t *e)
{
    rfree(&e->r);
}

/* ---- tests ----------------------------------------------------------------------- */

static void test_discovery(void **state)
{
    resp_t r;
    reqopt_t agg = {NULL, "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json", NULL, NULL, 0, NULL};
    (void)state;
    start(NULL);
    reqx("GET", "/version", NULL, NULL, &(reqopt_t){"", NULL, NULL, NULL, 0, NULL}, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(jget(r.body, "minor"), "32");
    rfree(&r);
    reqx("GET", "/api", NULL, NULL, &agg, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(r.ctype, "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList");
    assert_non_null(strstr(r.body, "\"shortNames\":[\"cm\"]"));
    rfree(&r);
    reqx("GET", "/apis", NULL, NULL, &agg, &r);
    assert_non_null(strstr(r.body, "coordination.k8s.io"));
    assert_non_null(strstr(r.body, "rbac.authorization.k8s.io"));
    rfree(&r);
    req("GET", "/api", NULL, &r);
    assert_string_equal(jget(r.body, "kind"), "APIVersions");
    rfree(&r);
    req("GET", "/apis", NULL, &r);
    assert_string_equal(jget(r.body, "kind"), "APIGroupList");
    rfree(&r);
    req("GET", "/api/v1", NULL, &r);
    assert_string_equal(jget(r.body, "kind"), "APIResourceList");
    assert_non_null(strstr(r.body, "\"name\":\"configmaps\""));
    rfree(&r);
    req("GET", "/apis/apps/v1", NULL, &r);
    assert_non_null(strstr(r.body, "\"name\":\"deployments\""));
    rfree(&r);
    req("GET", "/openapi/v3", NULL, &r);
    assert_string_equal(jget(r.body, "paths.api/v1.serverRelativeURL"), "/openapi/v3/api/v1?hash=0123456789ABCDEF");
    rfree(&r);
    req("GET", "/openapi/v3/api/v1?hash=0123456789ABCDEF", NULL, &r);
    assert_non_null(strstr(r.body, "fieldValidation"));
    assert_non_null(strstr(r.body, "x-kubernetes-group-version-kind"));
    rfree(&r);
    req("GET", "/nope", NULL, &r);
    assert_int_equal(r.code, 404);
    assert_string_equal(jget(r.body, "reason"), "NotFound");
    rfree(&r);
    reqx("GET", "/healthz", NULL, NULL, &(reqopt_t){"", NULL, NULL, NULL, 0, NULL}, &r);
    assert_int_equal(r.code, 200);
    rfree(&r);
}

static void test_auth(void **state)
{
    resp_t r;
    char *cert, *key;
    (void)state;
    start(NULL);
    reqx("GET", "/api/v1/configmaps", NULL, NULL, &(reqopt_t){"", NULL, NULL, NULL, 0, NULL}, &r);
    assert_int_equal(r.code, 401);
    assert_string_equal(jget(r.body, "reason"), "Unauthorized");
    rfree(&r);
    reqx("GET", "/version", NULL, NULL, &(reqopt_t){"wrong", NULL, NULL, NULL, 0, NULL}, &r);
    assert_int_equal(r.code, 401);
    rfree(&r);
    assert_int_equal(kc_fakeapi_issue_client_cert(srv, "carol", &cert, &key), 0);
    reqx("GET", "/api/v1/configmaps", NULL, NULL, &(reqopt_t){"", NULL, cert, key, 0, NULL}, &r);
    assert_int_equal(r.code, 200);
    rfree(&r);
    /* the client-cert user is subject to the allow-list like any other */
    assert_int_equal(kc_fakeapi_set_allow(srv, "carol", "get", "configmaps"), 0);
    reqx("GET", "/api/v1/configmaps", NULL, NULL, &(reqopt_t){"", NULL, cert, key, 0, NULL}, &r);
    assert_int_equal(r.code, 403);
    assert_non_null(strstr(r.body, "User \\\"carol\\\" cannot list resource \\\"configmaps\\\""));
    rfree(&r);
    free(cert);
    free(key);
}

static void test_forbidden(void **state)
{
    resp_t r;
    reqopt_t alice = {"alice-token", NULL, NULL, NULL, 0, NULL};
    (void)state;
    start(NULL);
    assert_int_equal(kc_fakeapi_add_token(srv, "alice-token", "alice"), 0);
    assert_int_equal(kc_fakeapi_set_allow(srv, "alice", "list", "configmaps"), 0);
    assert_int_equal(kc_fakeapi_set_allow(srv, "alice", "*", "leases"), 0);
    reqx("GET", "/api/v1/namespaces/default/configmaps", NULL, NULL, &alice, &r);
    assert_int_equal(r.code, 200);
    rfree(&r);
    reqx("POST", "/api/v1/namespaces/default/configmaps", "application/json",
         "{\"metadata\":{\"name\":\"x\"}}", &alice, &r);
    assert_int_equal(r.code, 403);
    assert_string_equal(jget(r.body, "reason"), "Forbidden");
    assert_string_equal(jget(r.body, "message"),
                        "configmaps is forbidden: User \"alice\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"default\"");
    rfree(&r);
    reqx("POST", "/apis/coordination.k8s.io/v1/namespaces/default/leases", "application/json",
         "{\"metadata\":{\"name\":\"l\"},\"spec\":{\"holderIdentity\":\"a\"}}", &alice, &r);
    assert_int_equal(r.code, 201);
    rfree(&r);
    assert_int_equal(kc_fakeapi_clear_allow(srv), 0);
    reqx("GET", "/api/v1/namespaces/default/configmaps/x", NULL, NULL, &alice, &r);
    assert_int_equal(r.code, 404);
    rfree(&r);
}

static void test_protobuf_415(void **state)
{
    resp_t r;
    (void)state;
    start(NULL);
    reqx("POST", "/api/v1/namespaces/default/configmaps", "application/vnd.kubernetes.protobuf",
         "k8s\x00", NULL, &r);
    assert_int_equal(r.code, 415);
    assert_string_equal(jget(r.body, "reason"), "UnsupportedMediaType");
    assert_non_null(strstr(r.body, "unknown format"));
    rfree(&r);
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/x", "text/plain", "x", NULL, &r);
    assert_int_equal(r.code, 415); /* the patch type is checked first */
    rfree(&r);
    create_cm("default", "x", NULL);
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/x", "text/plain", "{}", NULL, &r);
    assert_int_equal(r.code, 415);
    rfree(&r);
}

static void test_crud(void **state)
{
    resp_t r;
    char rv1[32], uid[64], body[512];
    (void)state;
    start(NULL);
    req("POST", "/api/v1/namespaces/default/configmaps",
        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\",\"creationTimestamp\":null},\"data\":{\"x\":\"1\"}}", &r);
    assert_int_equal(r.code, 201);
    assert_string_equal(jget(r.body, "kind"), "ConfigMap");
    assert_string_equal(jget(r.body, "metadata.namespace"), "default");
    assert_string_equal(jget(r.body, "metadata.resourceVersion"), rv_now());
    snprintf(rv1, sizeof(rv1), "%s", jget(r.body, "metadata.resourceVersion"));
    snprintf(uid, sizeof(uid), "%s", jget(r.body, "metadata.uid"));
    assert_int_equal(strlen(uid), 36);
    assert_int_equal(strlen(jget(r.body, "metadata.creationTimestamp")), 20);
    rfree(&r);
    req("POST", "/api/v1/namespaces/default/configmaps", "{\"metadata\":{\"name\":\"a\"}}", &r);
    assert_int_equal(r.code, 409);
    assert_string_equal(jget(r.body, "reason"), "AlreadyExists");
    assert_string_equal(jget(r.body, "message"), "configmaps \"a\" already exists");
    rfree(&r);
    req("GET", "/api/v1/namespaces/default/configmaps/nope", NULL, &r);
    assert_int_equal(r.code, 404);
    assert_string_equal(jget(r.body, "message"), "configmaps \"nope\" not found");
    assert_string_equal(jget(r.body, "details.kind"), "configmaps");
    rfree(&r);
    req("POST", "/api/v1/namespaces/default/configmaps", "{\"metadata\":{\"name\":\"Bad_Name\"}}", &r);
    assert_int_equal(r.code, 422);
    assert_string_equal(jget(r.body, "reason"), "Invalid");
    assert_string_equal(jget(r.body, "details.kind"), "ConfigMap");
    assert_string_equal(jget(r.body, "details.causes.0.field"), "metadata.name");
    assert_string_equal(jget(r.body, "details.causes.0.reason"), "FieldValueInvalid");
    /* the cause holds only its own part, not the whole Status message */
    assert_true(strncmp(jget(r.body, "details.causes.0.message"),
                        "Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist", 70) == 0);
    assert_true(strncmp(jget(r.body, "message"),
                        "ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase", 80) == 0);
    rfree(&r);
    req("POST", "/api/v1/namespaces/nons/configmaps", "{\"metadata\":{\"name\":\"b\"}}", &r);
    assert_int_equal(r.code, 404);
    assert_string_equal(jget(r.body, "message"), "namespaces \"nons\" not found");
    rfree(&r);
    req("POST", "/api/v1/namespaces/default/configmaps", "{\"kind\":\"Secret\",\"metadata\":{\"name\":\"b\"}}", &r);
    assert_int_equal(r.code, 400);
    rfree(&r);
    req("POST", "/api/v1/namespaces/default/configmaps", "{\"metadata\":{\"generateName\":\"gen-\"}}", &r);
    assert_int_equal(r.code, 201);
    assert_int_equal(strlen(jget(r.body, "metadata.name")), 9);
    assert_memory_equal(jget(r.body, "metadata.name"), "gen-", 4);
    rfree(&r);
    /* PUT: stale RV -> 409, current RV -> 200 with a new RV */
    snprintf(body, sizeof(body), "{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"999\"},\"data\":{\"x\":\"2\"}}");
    req("PUT", "/api/v1/namespaces/default/configmaps/a", body, &r);
    assert_int_equal(r.code, 409);
    assert_string_equal(jget(r.body, "reason"), "Conflict");
    assert_non_null(strstr(r.body, "the object has been modified"));
    rfree(&r);
    snprintf(body, sizeof(body), "{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"%s\"},\"data\":{\"x\":\"2\"}}", rv1);
    req("PUT", "/api/v1/namespaces/default/configmaps/a", body, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(jget(r.body, "data.x"), "2");
    assert_string_equal(jget(r.body, "metadata.uid"), uid);
    assert_string_not_equal(jget(r.body, "metadata.resourceVersion"), rv1);
    rfree(&r);
    /* no-op update keeps the RV */
    char before[32];
    snprintf(before, sizeof(before), "%s", rv_now());
    req("PUT", "/api/v1/namespaces/default/configmaps/a", "{\"metadata\":{\"name\":\"a\"},\"data\":{\"x\":\"2\"}}", &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(jget(r.body, "metadata.resourceVersion"), before);
    assert_string_equal(rv_now(), before);
    rfree(&r);
    req("PUT", "/api/v1/namespaces/default/configmaps/a", "{\"metadata\":{\"name\":\"zz\"}}", &r);
    assert_int_equal(r.code, 400);
    rfree(&r);
    req("PUT", "/api/v1/namespaces/default/configmaps/missing", "{\"metadata\":{\"name\":\"missing\"}}", &r);
    assert_int_equal(r.code, 404);
    rfree(&r);
    /* leases: PUT needs an RV; PUT of a missing lease creates it */
    req("PUT", "/apis/coordination.k8s.io/v1/namespaces/default/leases/le", "{\"metadata\":{\"name\":\"le\"},\"spec\":{\"holderIdentity\":\"a\"}}", &r);
    assert_int_equal(r.code, 201);
    assert_string_equal(jget(r.body, "apiVersion"), "coordination.k8s.io/v1");
    rfree(&r);
    req("PUT", "/apis/coordination.k8s.io/v1/namespaces/default/leases/le", "{\"metadata\":{\"name\":\"le\"},\"spec\":{\"holderIdentity\":\"b\"}}", &r);
    assert_int_equal(r.code, 422);
    assert_non_null(strstr(r.body, "must be specified for an update"));
    rfree(&r);
    /* deployments: generation follows spec; the status subresource */
    req("POST", "/apis/apps/v1/namespaces/default/deployments", "{\"metadata\":{\"name\":\"d\"},\"spec\":{\"replicas\":1},\"status\":{\"replicas\":9}}", &r);
    assert_int_equal(r.code, 201);
    assert_string_equal(jget(r.body, "metadata.generation"), "1");
    assert_string_equal(jget(r.body, "status.replicas"), "");
    rfree(&r);
    req("PUT", "/apis/apps/v1/namespaces/default/deployments/d", "{\"metadata\":{\"name\":\"d\"},\"spec\":{\"replicas\":2},\"status\":{\"replicas\":5}}", &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(jget(r.body, "metadata.generation"), "2");
    assert_string_equal(jget(r.body, "status.replicas"), "");
    rfree(&r);
    req("PUT", "/apis/apps/v1/namespaces/default/deployments/d/status", "{\"metadata\":{\"name\":\"d\"},\"spec\":{\"replicas\":7},\"status\":{\"replicas\":2}}", &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(jget(r.body, "spec.replicas"), "2");
    assert_string_equal(jget(r.body, "status.replicas"), "2");
    assert_string_equal(jget(r.body, "metadata.generation"), "2");
    rfree(&r);
    /* cluster-scoped */
    req("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", "{\"metadata\":{\"name\":\"system:reader\"},\"rules\":[]}", &r);
    assert_int_equal(r.code, 201);
    assert_string_equal(jget(r.body, "metadata.namespace"), "");
    rfree(&r);
}

static void test_patches(void **state)
{
    resp_t r;
    char rv[32];
    (void)state;
    start(NULL);
    create_cm("default", "p", "{\"a\":\"1\"}");
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/p", "application/merge-patch+json",
         "{\"data\":{\"b\":\"2\",\"k\":null},\"metadata\":{\"labels\":{\"team\":\"x\"}}}", NULL, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(jget(r.body, "data.b"), "2");
    assert_string_equal(jget(r.body, "data.k"), "");
    assert_string_equal(jget(r.body, "metadata.labels.team"), "x");
    assert_string_equal(jget(r.body, "metadata.labels.a"), "1");
    snprintf(rv, sizeof(rv), "%s", jget(r.body, "metadata.resourceVersion"));
    rfree(&r);
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/p", "application/json-patch+json",
         "[{\"op\":\"add\",\"path\":\"/data/c\",\"value\":\"3\"},{\"op\":\"remove\",\"path\":\"/data/b\"},"
         "{\"op\":\"replace\",\"path\":\"/metadata/labels/team\",\"value\":\"y\"}]", NULL, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(jget(r.body, "data.c"), "3");
    assert_string_equal(jget(r.body, "data.b"), "");
    assert_string_equal(jget(r.body, "metadata.labels.team"), "y");
    rfree(&r);
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/p", "application/json-patch+json",
         "[{\"op\":\"remove\",\"path\":\"/data/nope\"}]", NULL, &r);
    assert_int_equal(r.code, 422);
    rfree(&r);
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/p", "application/strategic-merge-patch+json",
         "{\"data\":{\"c\":null,\"d\":\"4\"},\"$setElementOrder/x\":[]}", NULL, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(jget(r.body, "data.c"), "");
    assert_string_equal(jget(r.body, "data.d"), "4");
    rfree(&r);
    /* a patch carrying a stale resourceVersion is a conflict */
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/p", "application/merge-patch+json",
         "{\"metadata\":{\"resourceVersion\":\"1\"},\"data\":{\"e\":\"5\"}}", NULL, &r);
    assert_int_equal(r.code, 409);
    rfree(&r);
    /* strategic merge of containers by name */
    req("POST", "/api/v1/namespaces/default/pods",
        "{\"metadata\":{\"name\":\"pod\"},\"spec\":{\"containers\":[{\"name\":\"a\",\"image\":\"i:1\"},{\"name\":\"b\",\"image\":\"j:1\"}]}}", &r);
    assert_int_equal(r.code, 201);
    rfree(&r);
    reqx("PATCH", "/api/v1/namespaces/default/pods/pod", "application/strategic-merge-patch+json",
         "{\"spec\":{\"containers\":[{\"name\":\"b\",\"image\":\"j:2\"}]}}", NULL, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(jget(r.body, "spec.containers.0.image"), "i:1");
    assert_string_equal(jget(r.body, "spec.containers.1.image"), "j:2");
    rfree(&r);
    /* server-side apply */
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/ssa?fieldManager=test", "application/apply-patch+yaml",
         "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"ssa\"},\"data\":{\"a\":\"1\"}}", NULL, &r);
    assert_int_equal(r.code, 201);
    rfree(&r);
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/ssa?fieldManager=test", "application/apply-patch+yaml",
         "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"ssa\"},\"data\":{\"b\":\"2\"}}", NULL, &r);
    assert_int_equal(r.code, 200);
    /* a field the manager no longer applies (and nobody else owns) goes */
    assert_string_equal(jget(r.body, "data.a"), "");
    assert_string_equal(jget(r.body, "data.b"), "2");
    rfree(&r);
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/ssa?fieldManager=other", "application/merge-patch+json",
         "{\"data\":{\"c\":\"3\"}}", NULL, &r);
    rfree(&r);
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/ssa?fieldManager=test", "application/apply-patch+yaml",
         "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"ssa\"},\"data\":{\"c\":\"3\"}}", NULL, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(jget(r.body, "data.b"), "");
    assert_string_equal(jget(r.body, "data.c"), "3");
    rfree(&r);
    /* c is shared: when test stops applying it, other still owns it */
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/ssa?fieldManager=test", "application/apply-patch+yaml",
         "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"ssa\"},\"data\":{\"d\":\"4\"}}", NULL, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(jget(r.body, "data.c"), "3");
    assert_string_equal(jget(r.body, "data.d"), "4");
    rfree(&r);
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/ssa", "application/apply-patch+yaml",
         "{\"metadata\":{\"name\":\"ssa\"}}", NULL, &r);
    assert_int_equal(r.code, 422);
    assert_non_null(strstr(r.body, "fieldManager: Required value"));
    rfree(&r);
}

/* metadata.managedFields of object json: entry i's member k, or its
 * fieldsV1 printed ("" when absent). */
static const char *mf_get(const char *json, int i, const char *k)
{
    static char out[1024];
    cJSON *j = cJSON_Parse(json);
    cJSON *mf = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "metadata"), "managedFields");
    cJSON *e = cJSON_GetArrayItem(mf, i), *v = cJSON_GetObjectItemCaseSensitive(e, k);
    out[0] = 0;
    if (cJSON_IsString(v)) {
        snprintf(out, sizeof(out), "%s", v->valuestring);
    } else if (v) {
        char *p = cJSON_PrintUnformatted(v);
        snprintf(out, sizeof(out), "%s", p ? p : "");
        free(p);
    }
    cJSON_Delete(j);
    return out;
}

static int mf_count(const char *json)
{
    cJSON *j = cJSON_Parse(json);
    int n = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "metadata"), "managedFields"));
    cJSON_Delete(j);
    return n;
}

/* managedFields: one entry per manager and operation with the fields it
 * set; server-side apply conflicts with another manager's fields. */
static void test_managed_fields(void **state)
{
    resp_t r;
    reqopt_t ua = {0};
    char rv[32];
    const char *path = "/api/v1/namespaces/default/configmaps/mf";
    (void)state;
    start(NULL);
    /* the manager comes from the User-Agent when there is no fieldManager */
    ua.user_agent = "kubectl-client-side-apply/v1.32.4 (linux/amd64) kubernetes/abc";
    reqx("POST", "/api/v1/namespaces/default/configmaps", "application/json",
         "{\"metadata\":{\"name\":\"mf\",\"labels\":{\"app\":\"x\"}},\"data\":{\"k\":\"v\"}}", &ua, &r);
    assert_int_equal(r.code, 201);
    assert_int_equal(mf_count(r.body), 1);
    assert_string_equal(mf_get(r.body, 0, "manager"), "kubectl-client-side-apply");
    assert_string_equal(mf_get(r.body, 0, "operation"), "Update");
    assert_string_equal(mf_get(r.body, 0, "apiVersion"), "v1");
    assert_string_equal(mf_get(r.body, 0, "fieldsType"), "FieldsV1");
    assert_int_equal(strlen(mf_get(r.body, 0, "time")), 20);
    assert_string_equal(mf_get(r.body, 0, "fieldsV1"),
                        "{\"f:data\":{\".\":{},\"f:k\":{}},\"f:metadata\":{\"f:labels\":{\".\":{},\"f:app\":{}}}}");
    rfree(&r);
    /* another manager: its own entry with the fields it changed */
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/mf?fieldManager=kubectl-patch",
         "application/merge-patch+json", "{\"data\":{\"m\":\"1\"},\"metadata\":{\"labels\":{\"s\":\"1\"}}}", NULL, &r);
    assert_int_equal(r.code, 200);
    assert_int_equal(mf_count(r.body), 2);
    assert_string_equal(mf_get(r.body, 1, "manager"), "kubectl-patch");
    assert_string_equal(mf_get(r.body, 1, "fieldsV1"), "{\"f:data\":{\"f:m\":{}},\"f:metadata\":{\"f:labels\":{\"f:s\":{}}}}");
    snprintf(rv, sizeof(rv), "%s", jget(r.body, "metadata.resourceVersion"));
    rfree(&r);
    /* a patch that changes nothing writes nothing */
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/mf?fieldManager=kubectl-patch",
         "application/merge-patch+json", "{\"data\":{\"m\":\"1\"}}", NULL, &r);
    assert_string_equal(jget(r.body, "metadata.resourceVersion"), rv);
    rfree(&r);
    /* an update takes the fields it changes from their previous manager */
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/mf?fieldManager=kubectl-patch",
         "application/merge-patch+json", "{\"data\":{\"k\":\"w\"}}", NULL, &r);
    assert_int_equal(mf_count(r.body), 2);
    assert_string_equal(mf_get(r.body, 0, "fieldsV1"), "{\"f:data\":{\".\":{}},\"f:metadata\":{\"f:labels\":{\".\":{},\"f:app\":{}}}}");
    assert_string_equal(mf_get(r.body, 1, "fieldsV1"), "{\"f:data\":{\"f:k\":{},\"f:m\":{}},\"f:metadata\":{\"f:labels\":{\"f:s\":{}}}}");
    rfree(&r);
    /* apply: another value for a field another manager owns is a conflict */
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/mf?fieldManager=ssa", "application/apply-patch+yaml",
         "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"mf\"},\"data\":{\"k\":\"v2\"}}", NULL, &r);
    assert_int_equal(r.code, 409);
    assert_string_equal(jget(r.body, "reason"), "Conflict");
    assert_string_equal(jget(r.body, "message"), "Apply failed with 1 conflict: conflict with \"kubectl-patch\" using v1: .data.k");
    assert_string_equal(jget(r.body, "details.causes.0.reason"), "FieldManagerConflict");
    assert_string_equal(jget(r.body, "details.causes.0.field"), ".data.k");
    assert_string_equal(jget(r.body, "details.causes.0.message"), "conflict with \"kubectl-patch\" using v1");
    assert_string_equal(jget(r.body, "details.name"), "");
    rfree(&r);
    req("GET", path, NULL, &r);
    assert_string_equal(jget(r.body, "data.k"), "w");
    rfree(&r);
    /* the same value: no conflict, the field is shared */
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/mf?fieldManager=ssa", "application/apply-patch+yaml",
         "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"mf\"},\"data\":{\"m\":\"1\",\"n\":\"2\"}}", NULL, &r);
    assert_int_equal(r.code, 200);
    assert_int_equal(mf_count(r.body), 3);
    assert_string_equal(mf_get(r.body, 0, "manager"), "ssa"); /* Apply sorts first */
    assert_string_equal(mf_get(r.body, 0, "operation"), "Apply");
    assert_string_equal(mf_get(r.body, 0, "fieldsV1"), "{\"f:data\":{\"f:m\":{},\"f:n\":{}}}");
    assert_string_equal(mf_get(r.body, 2, "fieldsV1"), "{\"f:data\":{\"f:k\":{},\"f:m\":{}},\"f:metadata\":{\"f:labels\":{\"f:s\":{}}}}");
    rfree(&r);
    /* several conflicts, grouped by manager */
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/mf?fieldManager=other", "application/apply-patch+yaml",
         "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"mf\"},\"data\":{\"k\":\"x\",\"m\":\"y\",\"n\":\"z\"}}", NULL, &r);
    assert_int_equal(r.code, 409);
    assert_string_equal(jget(r.body, "message"),
                        "Apply failed with 4 conflicts: conflicts with \"kubectl-patch\" using v1:\n- .data.k\n- .data.m\n"
                        "conflicts with \"ssa\":\n- .data.m\n- .data.n");
    assert_string_equal(jget(r.body, "details.causes.3.field"), ".data.n");
    rfree(&r);
    /* force=true: the applier takes the fields */
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/mf?fieldManager=ssa&force=true", "application/apply-patch+yaml",
         "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"mf\"},\"data\":{\"k\":\"v3\",\"m\":\"1\",\"n\":\"2\"}}", NULL, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(jget(r.body, "data.k"), "v3");
    assert_string_equal(mf_get(r.body, 0, "fieldsV1"), "{\"f:data\":{\"f:k\":{},\"f:m\":{},\"f:n\":{}}}");
    assert_string_equal(mf_get(r.body, 2, "fieldsV1"), "{\"f:data\":{\"f:m\":{}},\"f:metadata\":{\"f:labels\":{\"f:s\":{}}}}");
    rfree(&r);
    /* a field removed leaves every manager; an entry left empty goes */
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/mf?fieldManager=cleaner", "application/merge-patch+json",
         "{\"data\":{\"m\":null},\"metadata\":{\"labels\":{\"s\":null}}}", NULL, &r);
    assert_int_equal(r.code, 200);
    assert_int_equal(mf_count(r.body), 2);
    assert_string_equal(mf_get(r.body, 0, "fieldsV1"), "{\"f:data\":{\"f:k\":{},\"f:n\":{}}}");
    assert_string_equal(mf_get(r.body, 1, "manager"), "kubectl-client-side-apply");
    rfree(&r);
    /* the server's own label on a namespace is its creator's, as on the
     * real server; status and spec.finalizers are not */
    req("POST", "/api/v1/namespaces?fieldManager=kubectl-create", "{\"metadata\":{\"name\":\"mfns\"}}", &r);
    assert_int_equal(r.code, 201);
    assert_string_equal(mf_get(r.body, 0, "fieldsV1"),
                        "{\"f:metadata\":{\"f:labels\":{\".\":{},\"f:kubernetes.io/metadata.name\":{}}}}");
    rfree(&r);
    /* managedFields sent by a client are ignored */
    req("GET", path, NULL, &r);
    char *body = strdup(r.body);
    rfree(&r);
    char *p = strstr(body, "\"manager\":\"ssa\"");
    assert_non_null(p);
    memcpy(p, "\"manager\":\"zzz\"", 15);
    req("PUT", path, body, &r);
    free(body);
    assert_int_equal(r.code, 200);
    assert_string_equal(mf_get(r.body, 0, "manager"), "ssa");
    rfree(&r);
}

static void test_pagination(void **state)
{
    resp_t r;
    char path[1024], cont[600], listrv[32];
    int total = 0;
    (void)state;
    start(NULL);
    create_ns("a");
    create_ns("b");
    for (int i = 0; i < 25; i++) {
        char name[32];
        snprintf(name, sizeof(name), "cm-%02d", i);
        create_cm(i % 2 ? "b" : "a", name, NULL);
    }
    req("GET", "/api/v1/configmaps?limit=10", NULL, &r);
    assert_int_equal(r.code, 200);
    assert_int_equal(jcount(r.body, "items"), 10);
    assert_string_equal(jget(r.body, "metadata.remainingItemCount"), "15");
    assert_string_equal(jget(r.body, "items.0.metadata.namespace"), "a");
    assert_string_equal(jget(r.body, "items.0.kind"), ""); /* list items carry no kind */
    snprintf(cont, sizeof(cont), "%s", jget(r.body, "metadata.continue"));
    snprintf(listrv, sizeof(listrv), "%s", jget(r.body, "metadata.resourceVersion"));
    assert_true(strlen(cont) > 10);
    total += 10;
    rfree(&r);
    /* changes between pages do not show: the list is a snapshot */
    create_cm("b", "cm-99", NULL);
    assert_int_equal(kc_fakeapi_delete(srv, "configmaps", "b", "cm-23"), 0);
    int pages = 1, saw23 = 0, saw99 = 0;
    while (cont[0]) {
        snprintf(path, sizeof(path), "/api/v1/configmaps?limit=10&continue=%s", cont);
        req("GET", path, NULL, &r);
        assert_int_equal(r.code, 200);
        assert_string_equal(jget(r.body, "metadata.resourceVersion"), listrv);
        total += jcount(r.body, "items");
        saw23 |= strstr(r.body, "\"cm-23\"") != NULL;
        saw99 |= strstr(r.body, "\"cm-99\"") != NULL;
        snprintf(cont, sizeof(cont), "%s", jget(r.body, "metadata.continue"));
        pages++;
        rfree(&r);
    }
    assert_int_equal(total, 25);
    assert_int_equal(pages, 3);
    assert_true(saw23);
    assert_false(saw99);
    /* namespaced list pagination */
    req("GET", "/api/v1/namespaces/a/configmaps?limit=5", NULL, &r);
    assert_int_equal(jcount(r.body, "items"), 5);
    snprintf(cont, sizeof(cont), "%s", jget(r.body, "metadata.continue"));
    rfree(&r);
    snprintf(path, sizeof(path), "/api/v1/namespaces/a/configmaps?limit=100&continue=%s", cont);
    req("GET", path, NULL, &r);
    assert_int_equal(jcount(r.body, "items"), 8);
    assert_string_equal(jget(r.body, "metadata.continue"), "");
    rfree(&r);
    /* resourceVersion=0 ignores limit */
    req("GET", "/api/v1/configmaps?limit=3&resourceVersion=0", NULL, &r);
    assert_int_equal(jcount(r.body, "items"), 25);
    rfree(&r);
    req("GET", "/api/v1/configmaps?continue=!!bad", NULL, &r);
    assert_int_equal(r.code, 400);
    rfree(&r);
}

static void test_continue_expiry(void **state)
{
    kc_fakeapi_opts_t o = KC_FAKEAPI_OPTS_INIT;
    resp_t r;
    char path[1024], cont[600];
    (void)state;
    o.continue_ttl_revisions = 5;
    start(&o);
    for (int i = 0; i < 6; i++) {
        char name[16];
        snprintf(name, sizeof(name), "c%d", i);
        create_cm("default", name, NULL);
    }
    req("GET", "/api/v1/namespaces/default/configmaps?limit=2", NULL, &r);
    snprintf(cont, sizeof(cont), "%s", jget(r.body, "metadata.continue"));
    rfree(&r);
    snprintf(path, sizeof(path), "/api/v1/namespaces/default/configmaps?limit=2&continue=%s", cont);
    req("GET", path, NULL, &r);
    assert_int_equal(r.code, 200);
    rfree(&r);
    for (int i = 0; i < 6; i++) {
        char name[16];
        snprintf(name, sizeof(name), "d%d", i);
        create_cm("default", name, NULL);
    }
    req("GET", path, NULL, &r);
    assert_int_equal(r.code, 410);
    assert_string_equal(jget(r.body, "reason"), "Expired");
    assert_non_null(strstr(r.body, "The provided continue parameter is too old"));
    char newtok[600];
    snprintf(newtok, sizeof(newtok), "%s", jget(r.body, "metadata.continue"));
    assert_true(strlen(newtok) > 10);
    rfree(&r);
    /* the token in the 410 continues at the latest revision */
    snprintf(path, sizeof(path), "/api/v1/namespaces/default/configmaps?limit=100&continue=%s", newtok);
    req("GET", path, NULL, &r);
    assert_int_equal(r.code, 200);
    assert_int_equal(jcount(r.body, "items"), 10);
    rfree(&r);
    /* compaction expires tokens too */
    req("GET", "/api/v1/namespaces/default/configmaps?limit=2", NULL, &r);
    snprintf(cont, sizeof(cont), "%s", jget(r.body, "metadata.continue"));
    rfree(&r);
    create_cm("default", "e1", NULL);
    assert_int_equal(kc_fakeapi_compact(srv), 0);
    snprintf(path, sizeof(path), "/api/v1/namespaces/default/configmaps?limit=2&continue=%s", cont);
    req("GET", path, NULL, &r);
    assert_int_equal(r.code, 410);
    rfree(&r);
}

static void test_rv_semantics(void **state)
{
    resp_t r;
    char path[256], rv0[32];
    (void)state;
    start(NULL);
    create_cm("default", "x", NULL);
    snprintf(rv0, sizeof(rv0), "%s", rv_now());
    create_cm("default", "y", NULL);
    snprintf(path, sizeof(path), "/api/v1/namespaces/default/configmaps?resourceVersion=%s&resourceVersionMatch=Exact", rv0);
    req("GET", path, NULL, &r);
    assert_int_equal(r.code, 200);
    assert_int_equal(jcount(r.body, "items"), 1);
    assert_string_equal(jget(r.body, "metadata.resourceVersion"), rv0);
    rfree(&r);
    snprintf(path, sizeof(path), "/api/v1/namespaces/default/configmaps?resourceVersion=%s&resourceVersionMatch=NotOlderThan", rv0);
    req("GET", path, NULL, &r);
    assert_int_equal(jcount(r.body, "items"), 2);
    rfree(&r);
    req("GET", "/api/v1/namespaces/default/configmaps?resourceVersionMatch=Exact", NULL, &r);
    assert_int_equal(r.code, 422);
    assert_non_null(strstr(r.body, "resourceVersionMatch is forbidden unless resourceVersion is provided"));
    rfree(&r);
    req("GET", "/api/v1/namespaces/default/configmaps?resourceVersion=0&resourceVersionMatch=Exact", NULL, &r);
    assert_int_equal(r.code, 422);
    rfree(&r);
    req("GET", "/api/v1/namespaces/default/configmaps?resourceVersion=99999999", NULL, &r);
    assert_int_equal(r.code, 504);
    assert_string_equal(r.retry_after, "1");
    assert_string_equal(jget(r.body, "details.causes.0.reason"), "ResourceVersionTooLarge");
    rfree(&r);
    req("GET", "/api/v1/namespaces/default/configmaps?sendInitialEvents=true", NULL, &r);
    assert_int_equal(r.code, 422);
    rfree(&r);
    assert_int_equal(kc_fakeapi_compact(srv), 0);
    req("GET", path, NULL, &r); /* NotOlderThan still fine */
    assert_int_equal(r.code, 200);
    rfree(&r);
    snprintf(path, sizeof(path), "/api/v1/namespaces/default/configmaps?resourceVersion=%s&resourceVersionMatch=Exact", rv0);
    req("GET", path, NULL, &r);
    assert_int_equal(r.code, 410);
    assert_string_equal(jget(r.body, "reason"), "Expired");
    rfree(&r);
}

/* List and watch option errors answered as the real server answers them,
 * byte for byte (wire_cases in wire_expect.h, checked against the real
 * server by real_watch.c). */
static void test_wire_like_real_server(void **state)
{
    resp_t r;
    char path[512];
    (void)state;
    start(NULL);
    create_cm("default", "w", NULL);
    for (size_t i = 0; i < sizeof(wire_cases) / sizeof(wire_cases[0]); i++) {
        snprintf(path, sizeof(path), "/api/v1/namespaces/default/configmaps?%s", wire_cases[i].query);
        req("GET", path, NULL, &r);
        if (r.code != wire_cases[i].code || (wire_cases[i].body && !wire_match(wire_cases[i].body, r.body)))
            fail_msg("%s: got %ld %s\n  want %d %s", wire_cases[i].query, r.code, r.body,
                     wire_cases[i].code, wire_cases[i].body ? wire_cases[i].body : "");
        rfree(&r);
    }
}

static int count_names(const char *path)
{
    resp_t r;
    req("GET", path, NULL, &r);
    if (r.code != 200)
        fail_msg("%s: %ld %s", path, r.code, r.body);
    int n = jcount(r.body, "items");
    rfree(&r);
    return n;
}

static void test_selectors(void **state)
{
    resp_t r;
    (void)state;
    start(NULL);
    create_ns("other");
    create_cm("default", "a", "{\"app\":\"web\",\"tier\":\"fe\"}");
    create_cm("default", "b", "{\"app\":\"db\",\"tier\":\"be\"}");
    create_cm("default", "c", "{\"app\":\"web\"}");
    create_cm("other", "a", "{\"app\":\"web\"}");
    assert_int_equal(count_names("/api/v1/configmaps?labelSelector=app%3Dweb"), 3);
    assert_int_equal(count_names("/api/v1/configmaps?labelSelector=app%3D%3Dweb"), 3);
    assert_int_equal(count_names("/api/v1/configmaps?labelSelector=app%21%3Dweb"), 1);
    assert_int_equal(count_names("/api/v1/configmaps?labelSelector=app%20in%20(web,db)"), 4);
    assert_int_equal(count_names("/api/v1/configmaps?labelSelector=tier%20notin%20(fe)"), 3);
    assert_int_equal(count_names("/api/v1/configmaps?labelSelector=tier"), 2);
    assert_int_equal(count_names("/api/v1/configmaps?labelSelector=%21tier"), 2);
    assert_int_equal(count_names("/api/v1/configmaps?labelSelector=app%3Dweb,tier"), 1);
    assert_int_equal(count_names("/api/v1/configmaps?fieldSelector=metadata.name%3Da"), 2);
    assert_int_equal(count_names("/api/v1/configmaps?fieldSelector=metadata.namespace%3Dother"), 1);
    assert_int_equal(count_names("/api/v1/configmaps?fieldSelector=metadata.name%21%3Da,metadata.namespace%3D%3Ddefault"), 2);
    req("GET", "/api/v1/configmaps?fieldSelector=data.k%3Dv", NULL, &r);
    assert_int_equal(r.code, 400);
    assert_non_null(strstr(r.body, "is not a known field selector"));
    rfree(&r);
    req("GET", "/api/v1/configmaps?labelSelector=app%20in%20web", NULL, &r);
    assert_int_equal(r.code, 400);
    rfree(&r);
    /* with a selector a page has a continue token but no remainingItemCount */
    req("GET", "/api/v1/configmaps?labelSelector=app%3Dweb&limit=1", NULL, &r);
    assert_true(strlen(jget(r.body, "metadata.continue")) > 0);
    assert_string_equal(jget(r.body, "metadata.remainingItemCount"), "");
    rfree(&r);
}

/* Label selector errors are worded like apimachinery's parser (compared
 * with a real kube-apiserver by tests/realapi/compare_kubectl.sh). */
static void expect_sel_error(const char *qsel, const char *msg)
{
    resp_t r;
    char path[512];
    snprintf(path, sizeof(path), "/api/v1/configmaps?labelSelector=%s", qsel);
    req("GET", path, NULL, &r);
    assert_int_equal(r.code, 400);
    assert_string_equal(jget(r.body, "reason"), "BadRequest");
    assert_string_equal(jget(r.body, "message"), msg);
    rfree(&r);
}

static void test_selector_errors(void **state)
{
    (void)state;
    start(NULL);
    create_cm("default", "a", "{\"n\":\"5\",\"app\":\"in\"}");
    expect_sel_error("a%20in%20(b", "unable to parse requirement: found '', expected: ',' or ')'");
    expect_sel_error("a%3D%3D%3Db", "unable to parse requirement: found '=', expected: identifier");
    expect_sel_error("a%20in%20b", "unable to parse requirement: found 'b' expected: '('");
    expect_sel_error("a%20foo", "unable to parse requirement: found 'foo', expected: in, notin, =, ==, !=, gt, lt");
    expect_sel_error("a,", "found '', expected: identifier after ','");
    expect_sel_error("%3Da", "found '=', expected: !, identifier, or 'end of string'");
    expect_sel_error("%21a%3Db", "found '=', expected: ',' or 'end of string'");
    expect_sel_error("n%3E(", "unable to parse requirement: found '(', expected: identifier");
    /* in/notin are values where a value stands; gt/lt compare integers;
     * an empty value matches an empty or absent-valued label */
    assert_int_equal(count_names("/api/v1/configmaps?labelSelector=app%20in%20(in,x)"), 1);
    assert_int_equal(count_names("/api/v1/configmaps?labelSelector=n%3E4"), 1);
    assert_int_equal(count_names("/api/v1/configmaps?labelSelector=n%3C5"), 0);
    assert_int_equal(count_names("/api/v1/configmaps?labelSelector=app%3D,n"), 0);
    assert_int_equal(count_names("/api/v1/configmaps?labelSelector=%20n%20,%20%21x%20"), 1);
}

static void test_watch_replay(void **state)
{
    events_t e = {0};
    char path[256], rv0[32], rvc[32], rvm[32];
    resp_t r;
    (void)state;
    start(NULL);
    create_cm("default", "pre", NULL);
    snprintf(rv0, sizeof(rv0), "%s", rv_now());
    create_cm("default", "w", NULL);
    snprintf(rvc, sizeof(rvc), "%s", rv_now());
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/w", "application/merge-patch+json", "{\"data\":{\"k\":\"2\"}}", NULL, &r);
    rfree(&r);
    snprintf(rvm, sizeof(rvm), "%s", rv_now());
    create_cm("kube-system", "elsewhere", NULL);
    req("DELETE", "/api/v1/namespaces/default/configmaps/w", NULL, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(jget(r.body, "kind"), "Status");
    assert_string_equal(jget(r.body, "status"), "Success");
    assert_string_equal(jget(r.body, "details.kind"), "configmaps");
    rfree(&r);
    snprintf(path, sizeof(path), "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=%s&timeoutSeconds=1", rv0);
    watch_collect(path, &e);
    assert_int_equal(e.r.code, 200);
    assert_int_equal(e.r.cc, CURLE_OK);
    assert_string_equal(e.r.ctype, "application/json");
    assert_int_equal(e.n, 3);
    assert_string_equal(e.type[0], "ADDED");
    assert_string_equal(e.rv[0], rvc);
    assert_string_equal(e.type[1], "MODIFIED");
    assert_string_equal(e.rv[1], rvm);
    assert_string_equal(e.type[2], "DELETED");
    assert_string_equal(e.rv[2], rv_now()); /* the deletion revision */
    assert_string_equal(e.name[2], "w");
    assert_non_null(strstr(e.r.body, "{\"type\":\"ADDED\",\"object\":{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{"));
    assert_int_equal(e.r.body[e.r.len - 1], '\n');
    efree(&e);
    /* all namespaces, RV unset: synthetic ADDED for the current state */
    watch_collect("/api/v1/configmaps?watch=true&timeoutSeconds=1", &e);
    assert_int_equal(e.n, 2);
    assert_string_equal(e.type[0], "ADDED");
    assert_string_equal(e.name[0], "pre");
    assert_string_equal(e.name[1], "elsewhere");
    efree(&e);
    /* python's capitalised booleans */
    watch_collect("/api/v1/namespaces/default/configmaps?watch=True&timeoutSeconds=1", &e);
    assert_int_equal(e.n, 1);
    efree(&e);
    /* a resourceVersion ahead of the store: like the real watch cache, a
     * 200 stream that stays silent (real_watch.c checks the real one) */
    watch_collect("/api/v1/configmaps?watch=1&resourceVersion=99999999&timeoutSeconds=1", &e);
    assert_int_equal(e.r.code, 200);
    assert_int_equal(e.r.cc, CURLE_OK);
    assert_int_equal(e.n, 0);
    efree(&e);
    /* bad selector: plain HTTP error before the stream */
    watch_collect("/api/v1/configmaps?watch=1&fieldSelector=x%3Dy", &e);
    assert_int_equal(e.r.code, 400);
    efree(&e);
}

static void test_history_window_410(void **state)
{
    kc_fakeapi_opts_t o = KC_FAKEAPI_OPTS_INIT;
    events_t e = {0};
    char path[256], rv0[32];
    (void)state;
    o.history_window = 5;
    start(&o);
    snprintf(rv0, sizeof(rv0), "%s", rv_now());
    for (int i = 0; i < 8; i++) {
        char name[16];
        snprintf(name, sizeof(name), "h%d", i);
        create_cm("default", name, NULL);
    }
    snprintf(path, sizeof(path), "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=%s&timeoutSeconds=1", rv0);
    watch_collect(path, &e);
    assert_int_equal(e.r.code, 200);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.type[0], "ERROR");
    assert_string_equal(e.code[0], "410");
    char want[128], pat[512];
    snprintf(want, sizeof(want), "\"message\":\"too old resource version: %s (%" PRIu64 ")\"", rv0,
             kc_fakeapi_revision(srv) - 5);
    assert_non_null(strstr(e.r.body, want));
    /* the whole event, as the real server sends it (wire_expect.h) */
    snprintf(pat, sizeof(pat), WIRE_EXPIRED_EVENT_FMT "\n", rv0);
    if (!wire_match(pat, e.r.body))
        fail_msg("410 event:\n  got  %s\n  want %s", e.r.body, pat);
    efree(&e);
    /* the newest 5 are replayable */
    snprintf(path, sizeof(path), "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=%" PRIu64 "&timeoutSeconds=1",
             kc_fakeapi_revision(srv) - 5);
    watch_collect(path, &e);
    assert_int_equal(e.n, 5);
    assert_string_equal(e.name[4], "h7");
    efree(&e);
    kc_fakeapi_counters_t c;
    assert_int_equal(kc_fakeapi_get_counters(srv, &c), 0);
    assert_int_equal(c.watch_410, 1);
}

static void test_watch_selector_transitions(void **state)
{
    events_t e = {0};
    char path[256], rv0[32];
    resp_t r;
    (void)state;
    start(NULL);
    snprintf(rv0, sizeof(rv0), "%s", rv_now());
    create_cm("default", "s", "{\"app\":\"web\"}");
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/s", "application/merge-patch+json", "{\"data\":{\"k\":\"2\"}}", NULL, &r);
    rfree(&r);
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/s", "application/merge-patch+json", "{\"metadata\":{\"labels\":{\"app\":\"db\"}}}", NULL, &r);
    rfree(&r);
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/s", "application/merge-patch+json", "{\"metadata\":{\"labels\":{\"app\":\"web\"}}}", NULL, &r);
    rfree(&r);
    snprintf(path, sizeof(path), "/api/v1/configmaps?watch=1&labelSelector=app%%3Dweb&resourceVersion=%s&timeoutSeconds=1", rv0);
    watch_collect(path, &e);
    assert_int_equal(e.n, 4);
    assert_string_equal(e.type[0], "ADDED");
    assert_string_equal(e.type[1], "MODIFIED");
    assert_string_equal(e.type[2], "DELETED");
    assert_string_equal(e.rv[2], e.rv[2]);
    assert_string_equal(e.type[3], "ADDED");
    /* the DELETED carries the old content (app=web) at the event's RV */
    char want[64];
    snprintf(want, sizeof(want), "%" PRIu64, kc_fakeapi_revision(srv) - 1);
    assert_string_equal(e.rv[2], want);
    efree(&e);
}

/* A write (a Secret, so no ConfigMap event) ms milliseconds from now, from
 * another thread: the store moves on while a watch runs.  Join with
 * write_later_join. */
static void *write_later_main(void *arg)
{
    resp_t r;
    struct timespec ts = {0, (long)(intptr_t)arg * 1000000L};
    nanosleep(&ts, NULL);
    req("POST", "/api/v1/namespaces/default/secrets", "{\"metadata\":{\"generateName\":\"later-\"}}", &r);
    if (r.code != 201)
        fprintf(stderr, "write_later: %ld\n", r.code);
    rfree(&r);
    return NULL;
}

static pthread_t write_later(long ms)
{
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, write_later_main, (void *)(intptr_t)ms), 0);
    return t;
}

static void write_later_join(pthread_t t)
{
    pthread_join(t, NULL);
}

/* Periodic bookmarks, as kube-apiserver v1.37.2's cacher sends them (checked
 * against it: real_k8sclient's test_watch_bookmark_rules): only once the
 * store has moved past the revision the watch started from, so a watch on a
 * quiet server gets none; and never one at the deadline itself. */
static void test_bookmarks(void **state)
{
    kc_fakeapi_opts_t o = KC_FAKEAPI_OPTS_INIT;
    events_t e = {0};
    char path[256], rv0[32];
    resp_t r;
    pthread_t t;
    (void)state;
    o.bookmark_interval_ms = 100;
    start(&o);
    create_cm("default", "b", NULL);
    /* quiet: nothing after the watch's revision, no bookmark */
    snprintf(path, sizeof(path), "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=1", rv_now());
    watch_collect(path, &e);
    assert_int_equal(e.r.code, 200);
    assert_int_equal(e.n, 0);
    efree(&e);
    /* a write before the watch started does not count (the real cacher
     * raises the watch's revision to its own at the start) */
    snprintf(rv0, sizeof(rv0), "%s", rv_now());
    req("POST", "/api/v1/namespaces/default/secrets", "{\"metadata\":{\"name\":\"s\"}}", &r);
    assert_int_equal(r.code, 201);
    rfree(&r);
    snprintf(path, sizeof(path), "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=1", rv0);
    watch_collect(path, &e);
    assert_int_equal(e.n, 0);
    efree(&e);
    /* the store moves on during the watch (a Secret: no ConfigMap event):
     * bookmarks at the newest revision */
    t = write_later(300);
    watch_collect(path, &e);
    write_later_join(t);
    assert_true(e.n >= 2);
    for (int i = 0; i < e.n; i++) {
        assert_string_equal(e.type[i], "BOOKMARK");
        assert_string_equal(e.rv[i], rv_now());
    }
    efree(&e);
    /* without allowWatchBookmarks, none */
    snprintf(path, sizeof(path), "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=%s&timeoutSeconds=1", rv0);
    watch_collect(path, &e);
    assert_int_equal(e.n, 0);
    efree(&e);
}

/* The bookmark "right before the watcher timeout": 2 s before the deadline,
 * and nothing when the stream ends (the real server's timing, see
 * test_watch_bookmark_rules in real_k8sclient.c).  The periodic bookmark is
 * the default minute, so only the pre-deadline one can show up. */
static void test_bookmark_before_timeout(void **state)
{
    events_t e = {0};
    char path[256], rv0[32];
    pthread_t t;
    (void)state;
    start(NULL);
    snprintf(rv0, sizeof(rv0), "%s", rv_now());
    snprintf(path, sizeof(path), "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=3", rv0);
    t = write_later(300);
    watch_collect(path, &e);
    write_later_join(t);
    assert_int_equal(e.r.code, 200);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.type[0], "BOOKMARK");
    assert_string_equal(e.rv[0], rv_now());
    assert_true(e.t[0] > 0.8 && e.t[0] < 2.0);
    /* the stream ended at the deadline, with nothing after the bookmark */
    assert_int_equal(e.r.cc, CURLE_OK);
    efree(&e);
    /* a timeout of 2 s or less leaves no time before the deadline */
    snprintf(rv0, sizeof(rv0), "%s", rv_now());
    snprintf(path, sizeof(path), "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=2", rv0);
    t = write_later(300);
    watch_collect(path, &e);
    write_later_join(t);
    assert_int_equal(e.n, 0);
    efree(&e);
}

/* A bookmark's object is the kind's empty object with only the
 * resourceVersion (and the initial-events-end annotation) set: byte for byte
 * what kube-apiserver v1.37.2 sends for each kind (no "creationTimestamp":
 * null; zero-valued fields of some kinds): wire_bookmarks, checked against
 * the real server by real_watch.c, with a streaming list that matches
 * nothing. */
static void test_bookmark_shape(void **state)
{
    const struct wire_bookmark *k = wire_bookmarks;
    kc_fakeapi_opts_t o = KC_FAKEAPI_OPTS_INIT;
    events_t e = {0};
    char path[256], want[512], rv0[32];
    (void)state;
    o.bookmark_interval_ms = 100;
    start(&o);
    for (size_t i = 0; i < sizeof(wire_bookmarks) / sizeof(wire_bookmarks[0]); i++) {
        snprintf(path, sizeof(path), "%s?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&"
                 "allowWatchBookmarks=true&labelSelector=nomatch%%3D1&timeoutSeconds=5", k[i].path);
        e.stop_after = 1;
        watch_collect(path, &e);
        snprintf(want, sizeof(want), "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"%s\",\"apiVersion\":\"%s\","
                 "\"metadata\":{\"resourceVersion\":\"%s\",\"annotations\":{\"k8s.io/initial-events-end\":\"true\"}}%s}}\n",
                 k[i].kind, k[i].gv, rv_now(), k[i].tail);
        assert_int_equal(e.n, 1);
        assert_string_equal(e.r.body, want);
        efree(&e);
    }
    /* a periodic bookmark: the same without the annotation */
    snprintf(rv0, sizeof(rv0), "%s", rv_now());
    snprintf(path, sizeof(path), "/api/v1/pods?watch=1&resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=5", rv0);
    e.stop_after = 1;
    pthread_t t = write_later(200);
    watch_collect(path, &e);
    write_later_join(t);
    snprintf(want, sizeof(want), "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Pod\",\"apiVersion\":\"v1\","
             "\"metadata\":{\"resourceVersion\":\"%s\"},\"spec\":{\"containers\":null},\"status\":{}}}\n", rv_now());
    assert_int_equal(e.n, 1);
    assert_string_equal(e.r.body, want);
    efree(&e);
}

static void test_send_initial_events(void **state)
{
    events_t e = {0};
    (void)state;
    start(NULL);
    create_cm("default", "i1", NULL);
    create_cm("default", "i2", NULL);
    create_cm("kube-system", "i3", NULL);
    watch_collect("/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&timeoutSeconds=1", &e);
    assert_int_equal(e.r.code, 422);
    assert_non_null(strstr(e.r.body, "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"));
    efree(&e);
    watch_collect("/api/v1/namespaces/default/configmaps?watch=1&resourceVersionMatch=NotOlderThan&timeoutSeconds=1", &e);
    assert_int_equal(e.r.code, 422);
    efree(&e);
    watch_collect("/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1", &e);
    assert_int_equal(e.r.code, 200);
    assert_true(e.n >= 3);
    assert_string_equal(e.type[0], "ADDED");
    assert_string_equal(e.name[0], "i1");
    assert_string_equal(e.type[1], "ADDED");
    assert_string_equal(e.name[1], "i2");
    assert_string_equal(e.type[2], "BOOKMARK");
    assert_string_equal(e.ann[2], "end");
    assert_string_equal(e.rv[2], rv_now());
    efree(&e);
}

static void test_finalizers(void **state)
{
    events_t e = {0};
    resp_t r;
    char path[256], rv0[32];
    (void)state;
    start(NULL);
    snprintf(rv0, sizeof(rv0), "%s", rv_now());
    req("POST", "/api/v1/namespaces/default/configmaps", "{\"metadata\":{\"name\":\"f\",\"finalizers\":[\"example.com/x\"]}}", &r);
    assert_int_equal(r.code, 201);
    rfree(&r);
    req("DELETE", "/api/v1/namespaces/default/configmaps/f", "{\"propagationPolicy\":\"Background\"}", &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(jget(r.body, "kind"), "ConfigMap");
    assert_int_equal(strlen(jget(r.body, "metadata.deletionTimestamp")), 20);
    rfree(&r);
    req("GET", "/api/v1/namespaces/default/configmaps/f", NULL, &r);
    assert_int_equal(r.code, 200);
    rfree(&r);
    reqx("PATCH", "/api/v1/namespaces/default/configmaps/f", "application/merge-patch+json", "{\"metadata\":{\"finalizers\":null}}", NULL, &r);
    assert_int_equal(r.code, 200);
    rfree(&r);
    req("GET", "/api/v1/namespaces/default/configmaps/f", NULL, &r);
    assert_int_equal(r.code, 404);
    rfree(&r);
    snprintf(path, sizeof(path), "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=%s&timeoutSeconds=1", rv0);
    watch_collect(path, &e);
    assert_int_equal(e.n, 3);
    assert_string_equal(e.type[0], "ADDED");
    assert_string_equal(e.type[1], "MODIFIED");
    assert_string_equal(e.type[2], "DELETED");
    efree(&e);
}

/* Wait (bounded) until namespace ns holds n configmaps. */
static void wait_cm_count(const char *ns, size_t n)
{
    for (int i = 0; i < 500 && kc_fakeapi_count(srv, "configmaps", ns) != n; i++)
        usleep(10000);
    assert_int_equal(kc_fakeapi_count(srv, "configmaps", ns), n);
}

/* DELETE marks the namespace Terminating; the namespace controller then
 * deletes its contents and removes it once the last finalizer is gone. */
static void test_namespace_deletion(void **state)
{
    events_t e = {0};
    resp_t r;
    char path[256], rv0[32];
    (void)state;
    start(NULL);
    create_ns("gone");
    create_cm("gone", "a", NULL);
    create_cm("gone", "b", NULL);
    req("POST", "/api/v1/namespaces/gone/configmaps", "{\"metadata\":{\"name\":\"held\",\"finalizers\":[\"x/y\"]}}", &r);
    assert_int_equal(r.code, 201);
    rfree(&r);
    snprintf(rv0, sizeof(rv0), "%s", rv_now());
    req("DELETE", "/api/v1/namespaces/gone", NULL, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(jget(r.body, "status.phase"), "Terminating");
    assert_int_equal(strlen(jget(r.body, "metadata.deletionTimestamp")), 20);
    assert_string_equal(jget(r.body, "spec.finalizers.0"), "kubernetes");
    rfree(&r);
    wait_cm_count("gone", 1);
    req("GET", "/api/v1/namespaces/gone", NULL, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(jget(r.body, "status.phase"), "Terminating");
    rfree(&r);
    req("POST", "/api/v1/namespaces/gone/configmaps", "{\"metadata\":{\"name\":\"late\"}}", &r);
    assert_int_equal(r.code, 403);
    assert_string_equal(jget(r.body, "reason"), "Forbidden");
    assert_string_equal(jget(r.body, "message"),
                        "configmaps \"late\" is forbidden: unable to create new content in namespace gone because it is being terminated");
    assert_string_equal(jget(r.body, "details.name"), "late");
    assert_string_equal(jget(r.body, "details.kind"), "configmaps");
    assert_string_equal(jget(r.body, "details.causes.0.reason"), "NamespaceTerminating");
    assert_string_equal(jget(r.body, "details.causes.0.message"), "namespace gone is being terminated");
    assert_string_equal(jget(r.body, "details.causes.0.field"), "metadata.namespace");
    rfree(&r);
    reqx("PATCH", "/api/v1/namespaces/gone/configmaps/held", "application/json-patch+json",
         "[{\"op\":\"remove\",\"path\":\"/metadata/finalizers\"}]", NULL, &r);
    assert_int_equal(r.code, 200);
    rfree(&r);
    assert_int_equal(kc_fakeapi_count(srv, "configmaps", "gone"), 0);
    req("GET", "/api/v1/namespaces/gone", NULL, &r);
    assert_int_equal(r.code, 404);
    rfree(&r);
    /* the contents' DELETED events come before the namespace's */
    snprintf(path, sizeof(path), "/api/v1/namespaces?watch=1&resourceVersion=%s&timeoutSeconds=1", rv0);
    watch_collect(path, &e);
    assert_int_equal(e.n, 2);
    assert_string_equal(e.type[0], "MODIFIED");
    assert_string_equal(e.type[1], "DELETED");
    assert_string_equal(e.name[1], "gone");
    char ns_deleted_rv[24];
    snprintf(ns_deleted_rv, sizeof(ns_deleted_rv), "%s", e.rv[1]);
    efree(&e);
    snprintf(path, sizeof(path), "/api/v1/namespaces/gone/configmaps?watch=1&resourceVersion=%s&timeoutSeconds=1", rv0);
    watch_collect(path, &e);
    assert_int_equal(e.n, 4); /* a, b DELETED; held MODIFIED, DELETED */
    for (int i = 0; i < (int)e.n; i++)
        assert_true(strtoull(e.rv[i], NULL, 10) < strtoull(ns_deleted_rv, NULL, 10));
    assert_string_equal(e.type[3], "DELETED");
    efree(&e);
}

/* Without the namespace controller (a bare kube-apiserver, as in
 * tests/realapi) a deleted namespace stays Terminating with its contents. */
static void test_namespace_no_controller(void **state)
{
    kc_fakeapi_opts_t o = KC_FAKEAPI_OPTS_INIT;
    resp_t r;
    (void)state;
    o.ns_delete_delay_ms = -1;
    start(&o);
    create_ns("stays");
    create_cm("stays", "a", NULL);
    req("DELETE", "/api/v1/namespaces/stays", NULL, &r);
    assert_int_equal(r.code, 200);
    rfree(&r);
    req("DELETE", "/api/v1/namespaces/stays", NULL, &r); /* again: still there */
    assert_int_equal(r.code, 200);
    rfree(&r);
    usleep(100000);
    assert_int_equal(kc_fakeapi_count(srv, "configmaps", "stays"), 1);
    req("GET", "/api/v1/namespaces/stays", NULL, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(jget(r.body, "status.phase"), "Terminating");
    rfree(&r);
    req("POST", "/api/v1/namespaces/stays/configmaps", "{\"metadata\":{\"name\":\"late\"}}", &r);
    assert_int_equal(r.code, 403);
    rfree(&r);
    /* an update of a Terminating namespace does not remove it */
    reqx("PATCH", "/api/v1/namespaces/stays", "application/merge-patch+json",
         "{\"metadata\":{\"labels\":{\"x\":\"y\"}}}", NULL, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(jget(r.body, "status.phase"), "Terminating");
    rfree(&r);
    req("GET", "/api/v1/namespaces/stays", NULL, &r);
    assert_int_equal(r.code, 200);
    rfree(&r);
    /* its contents can still be deleted; the namespace stays */
    req("DELETE", "/api/v1/namespaces/stays/configmaps/a", NULL, &r);
    assert_int_equal(r.code, 200);
    rfree(&r);
    req("GET", "/api/v1/namespaces/stays", NULL, &r);
    assert_int_equal(r.code, 200);
    rfree(&r);
}

static void test_delete_preconditions(void **state)
{
    resp_t r;
    char uid[64], rv[32], body[256];
    (void)state;
    start(NULL);
    req("POST", "/api/v1/namespaces/default/configmaps", "{\"metadata\":{\"name\":\"pc\"}}", &r);
    snprintf(uid, sizeof(uid), "%s", jget(r.body, "metadata.uid"));
    snprintf(rv, sizeof(rv), "%s", jget(r.body, "metadata.resourceVersion"));
    rfree(&r);
    req("DELETE", "/api/v1/namespaces/default/configmaps/pc", "{\"preconditions\":{\"uid\":\"nope\"}}", &r);
    assert_int_equal(r.code, 409);
    assert_non_null(strstr(r.body, "Precondition failed: UID in precondition: nope"));
    rfree(&r);
    req("DELETE", "/api/v1/namespaces/default/configmaps/pc", "{\"preconditions\":{\"resourceVersion\":\"1\"}}", &r);
    assert_int_equal(r.code, 409);
    rfree(&r);
    snprintf(body, sizeof(body), "{\"preconditions\":{\"uid\":\"%s\",\"resourceVersion\":\"%s\"},\"propagationPolicy\":\"Foreground\"}", uid, rv);
    req("DELETE", "/api/v1/namespaces/default/configmaps/pc", body, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(jget(r.body, "details.uid"), uid);
    rfree(&r);
    req("DELETE", "/api/v1/namespaces/default/configmaps/pc", NULL, &r);
    assert_int_equal(r.code, 404);
    rfree(&r);
}

static void test_fault_http(void **state)
{
    kc_fakeapi_faults_t f = KC_FAKEAPI_FAULTS_INIT;
    resp_t r;
    (void)state;
    start(NULL);
    f.p_429 = 1;
    f.retry_after_s = 2;
    f.max_http_faults = 2;
    assert_int_equal(kc_fakeapi_set_faults(srv, &f), 0);
    for (int i = 0; i < 2; i++) {
        req("GET", "/api/v1/configmaps", NULL, &r);
        assert_int_equal(r.code, 429);
        assert_string_equal(r.retry_after, "2");
        assert_string_equal(r.ctype, "text/plain; charset=utf-8");
        assert_string_equal(r.body, "Too many requests, please try again later.\n");
        rfree(&r);
    }
    req("GET", "/api/v1/configmaps", NULL, &r);
    assert_int_equal(r.code, 200);
    rfree(&r);
    /* discovery is never faulted */
    f.max_http_faults = 0;
    f.p_429 = 0;
    f.p_500 = 1;
    assert_int_equal(kc_fakeapi_set_faults(srv, &f), 0);
    req("GET", "/version", NULL, &r);
    assert_int_equal(r.code, 200);
    rfree(&r);
    req("GET", "/api/v1/configmaps", NULL, &r);
    assert_int_equal(r.code, 500);
    assert_string_equal(jget(r.body, "reason"), "InternalError");
    rfree(&r);
    f.p_500 = 0;
    f.p_503 = 1;
    assert_int_equal(kc_fakeapi_set_faults(srv, &f), 0);
    req("GET", "/api/v1/configmaps", NULL, &r);
    assert_int_equal(r.code, 503);
    assert_string_equal(r.retry_after, "2");
    assert_string_equal(jget(r.body, "reason"), "ServiceUnavailable");
    rfree(&r);
    /* shares are honoured roughly, reproducibly */
    f.p_503 = 0;
    f.p_500 = 0.5;
    assert_int_equal(kc_fakeapi_set_faults(srv, &f), 0);
    int n500 = 0;
    for (int i = 0; i < 40; i++) {
        req("GET", "/api/v1/configmaps", NULL, &r);
        n500 += r.code == 500;
        rfree(&r);
    }
    assert_in_range(n500, 8, 32);
    kc_fakeapi_faults_t d = KC_FAKEAPI_FAULTS_INIT;
    d.delay_ms = 300;
    d.p_delay = 1;
    assert_int_equal(kc_fakeapi_set_faults(srv, &d), 0);
    req("GET", "/api/v1/configmaps", NULL, &r);
    assert_int_equal(r.code, 200);
    assert_true(r.secs >= 0.29);
    rfree(&r);
    /* a client that gives up during a long delay; the server is freed with
     * the request still held (no leak, no use after free) */
    d.delay_ms = 5000;
    assert_int_equal(kc_fakeapi_set_faults(srv, &d), 0);
    reqx("GET", "/api/v1/configmaps", NULL, NULL, &(reqopt_t){NULL, NULL, NULL, NULL, 300, NULL}, &r);
    assert_int_equal(r.cc, CURLE_OPERATION_TIMEDOUT);
    rfree(&r);
    reqx("GET", "/api/v1/namespaces", NULL, NULL, &(reqopt_t){NULL, NULL, NULL, NULL, 300, NULL}, &r);
    rfree(&r);
    assert_int_equal(kc_fakeapi_set_faults(srv, NULL), 0);
    kc_fakeapi_counters_t c;
    assert_int_equal(kc_fakeapi_get_counters(srv, &c), 0);
    assert_int_equal(c.status_429, 2);
    assert_true(c.faults >= 5);
    char *log = kc_fakeapi_request_log(srv, 1);
    assert_non_null(log);
    assert_non_null(strstr(log, "GET /api/v1/configmaps 429\n"));
    free(log);
}

static void test_fault_watch_close(void **state)
{
    kc_fakeapi_faults_t f = KC_FAKEAPI_FAULTS_INIT;
    events_t e = {0};
    char path[256], rv0[32];
    (void)state;
    start(NULL);
    snprintf(rv0, sizeof(rv0), "%s", rv_now());
    for (int i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof(name), "e%d", i);
        create_cm("default", name, NULL);
    }
    snprintf(path, sizeof(path), "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=%s&timeoutSeconds=5", rv0);
    f.close_watch_after_events = 2;
    assert_int_equal(kc_fakeapi_set_faults(srv, &f), 0);
    watch_collect(path, &e);
    assert_int_equal(e.r.cc, CURLE_OK); /* ended cleanly */
    assert_int_equal(e.n, 2);
    assert_true(e.t[1] < 3.0);
    efree(&e);
    f.close_watch_after_events = 0;
    f.p_close_watch = 1;
    assert_int_equal(kc_fakeapi_set_faults(srv, &f), 0);
    watch_collect(path, &e);
    assert_int_equal(e.r.cc, CURLE_OK);
    assert_int_equal(e.n, 1);
    efree(&e);
    /* stall: the stream stays open without bytes, then continues */
    f.p_close_watch = 0;
    f.p_stall = 1;
    f.stall_ms = 400;
    assert_int_equal(kc_fakeapi_set_faults(srv, &f), 0);
    snprintf(path, sizeof(path), "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=%s&timeoutSeconds=3", rv0);
    watch_collect(path, &e);
    assert_true(e.n >= 3);
    assert_true(e.t[1] - e.t[0] >= 0.35);
    assert_true(e.t[2] - e.t[1] >= 0.35);
    efree(&e);
    /* cut mid-event: half a line, then the connection drops */
    f.p_stall = 0;
    f.p_cut_mid_event = 1;
    assert_int_equal(kc_fakeapi_set_faults(srv, &f), 0);
    watch_collect(path, &e);
    assert_int_not_equal(e.r.cc, CURLE_OK);
    assert_int_equal(e.n, 0);
    assert_true(e.r.len > 10);
    assert_int_not_equal(e.r.body[e.r.len - 1], '\n');
    efree(&e);
    assert_int_equal(kc_fakeapi_set_faults(srv, NULL), 0);
    watch_collect(path, &e);
    assert_int_equal(e.n, 5);
    efree(&e);
}

typedef struct bg_watch {
    events_t e;
    char path[256];
    pthread_t t;
} bg_watch_t;

static void *bg_main(void *arg)
{
    bg_watch_t *b = arg;
    watch_collect(b->path, &b->e);
    return NULL;
}

static void wait_watches(uint64_t n)
{
    kc_fakeapi_counters_t c;
    for (int i = 0; i < 500; i++) {
        kc_fakeapi_get_counters(srv, &c);
        if (c.watches_open == n)
            return;
        usleep(10000);
    }
    fail_msg("watches_open stayed %" PRIu64 ", wanted %" PRIu64, c.watches_open, n);
}

/* bench_server's burst: changes applied in one go on the loop thread, then
 * each watcher's backlog rendered into one block and streamed by
 * reference.  The stream must be byte for byte what the event-by-event
 * pump sends a watch from the same revision. */
static int burst_prerendered(fa_server_t *s, void *arg)
{
    kc_fakeapi_load_t l = KC_FAKEAPI_LOAD_INIT;
    int rc;

    l.namespaces = 3;
    l.names = 20;
    rc = fa_load_churn(s, &l, *(size_t *)arg);
    if (rc == 0)
        fa_watch_prerender_all(s);
    return rc;
}

static void test_watch_prerendered(void **state)
{
    kc_fakeapi_opts_t o = KC_FAKEAPI_OPTS_INIT;
    kc_fakeapi_load_t l = KC_FAKEAPI_LOAD_INIT;
    kc_fakeapi_counters_t c;
    bg_watch_t live;
    events_t replay = {0};
    size_t n = 600;   /* > 256 KiB of events: several slices */
    char rv0[32];
    (void)state;

    o.history_window = 100000;
    start(&o);
    l.namespaces = 3;
    l.names = 20;
    assert_int_equal(kc_fakeapi_preload(srv, &l, 60), 0);
    snprintf(rv0, sizeof(rv0), "%s", rv_now());
    memset(&live, 0, sizeof(live));
    snprintf(live.path, sizeof(live.path),
             "/api/v1/configmaps?watch=1&resourceVersion=%s&timeoutSeconds=3", rv0);
    assert_int_equal(pthread_create(&live.t, NULL, bg_main, &live), 0);
    wait_watches(1);
    assert_int_equal(kc_fakeapi_reset_counters(srv), 0);
    assert_int_equal(fa_call((fa_server_t *)srv, burst_prerendered, &n), 0);
    /* rendered (and counted) before anything is streamed */
    assert_int_equal(kc_fakeapi_get_counters(srv, &c), 0);
    uint64_t rendered = c.watch_events;
    pthread_join(live.t, NULL);

    /* the same revision afterwards: streamed event by event */
    snprintf(live.path, sizeof(live.path),
             "/api/v1/configmaps?watch=1&resourceVersion=%s&timeoutSeconds=1", rv0);
    watch_collect(live.path, &replay);
    assert_int_equal(live.e.r.code, 200);
    assert_int_equal(live.e.r.cc, CURLE_OK);
    assert_true(live.e.r.len > 256 * 1024);
    assert_int_equal(live.e.r.len, replay.r.len);
    assert_memory_equal(live.e.r.body, replay.r.body, replay.r.len);
    assert_int_equal(live.e.r.body[live.e.r.len - 1], '\n');
    size_t lines = 0;
    for (size_t i = 0; i < live.e.r.len; i++)
        lines += live.e.r.body[i] == '\n';
    assert_int_equal(rendered, lines);
    efree(&live.e);
    efree(&replay);
}

static void test_live_watch_and_restart(void **state)
{
    bg_watch_t b;
    resp_t r;
    char rv[32];
    (void)state;
    start(NULL);
    memset(&b, 0, sizeof(b));
    snprintf(b.path, sizeof(b.path), "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=%s&timeoutSeconds=10", rv_now());
    assert_int_equal(pthread_create(&b.t, NULL, bg_main, &b), 0);
    wait_watches(1);
    assert_int_equal(kc_fakeapi_apply_json(srv, "configmaps", "{\"metadata\":{\"name\":\"live\"},\"data\":{\"a\":\"1\"}}", NULL), 0);
    assert_int_equal(kc_fakeapi_apply_json(srv, "configmaps", "{\"metadata\":{\"name\":\"live\"},\"data\":{\"a\":\"2\"}}", NULL), 0);
    for (int i = 0; i < 500 && __atomic_load_n(&b.e.n, __ATOMIC_ACQUIRE) < 2; i++)
        usleep(10000);
    snprintf(rv, sizeof(rv), "%s", rv_now());
    assert_int_equal(kc_fakeapi_restart(srv), 0);
    pthread_join(b.t, NULL);
    assert_int_equal(b.e.n, 2);
    assert_string_equal(b.e.type[0], "ADDED");
    assert_string_equal(b.e.type[1], "MODIFIED");
    assert_int_not_equal(b.e.r.cc, CURLE_OK); /* dropped, not ended */
    efree(&b.e);
    wait_watches(0);
    /* data and revision survive */
    assert_string_equal(rv_now(), rv);
    req("GET", "/api/v1/namespaces/default/configmaps/live", NULL, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(jget(r.body, "data.a"), "2");
    rfree(&r);
    /* close-watches ends open streams cleanly */
    memset(&b, 0, sizeof(b));
    snprintf(b.path, sizeof(b.path), "/api/v1/configmaps?watch=1&timeoutSeconds=10");
    assert_int_equal(pthread_create(&b.t, NULL, bg_main, &b), 0);
    wait_watches(1);
    assert_int_equal(kc_fakeapi_close_watches(srv), 0);
    pthread_join(b.t, NULL);
    assert_int_equal(b.e.r.cc, CURLE_OK);
    assert_int_equal(b.e.n, 1);
    efree(&b.e);
}

/* Many watchers connect, some read to the end, most go away early. */
static void test_many_watchers(void **state)
{
    int n = 60 / g_scale;
    CURLM *m = curl_multi_init();
    CURL **h = calloc((size_t)n, sizeof(*h));
    events_t *ev = calloc((size_t)n, sizeof(*ev));
    struct curl_slist *hdr = curl_slist_append(NULL, "Authorization: Bearer test-token");
    char url[512];
    (void)state;
    start(NULL);
    kc_fakeapi_load_t l = KC_FAKEAPI_LOAD_INIT;
    l.namespaces = 3;
    assert_int_equal(kc_fakeapi_preload(srv, &l, 30), 0);
    struct curl_blob ca = {(void *)kc_fakeapi_ca_pem(srv), strlen(kc_fakeapi_ca_pem(srv)), CURL_BLOB_COPY};
    snprintf(url, sizeof(url), "%s/api/v1/configmaps?watch=1&allowWatchBookmarks=true&timeoutSeconds=3", kc_fakeapi_url(srv));
    for (int i = 0; i < n; i++) {
        h[i] = curl_easy_init();
        ev[i].stop_after = i % 3 == 0 ? 0 : 5 + i % 7; /* most hang up early */
        clock_gettime(CLOCK_MONOTONIC, &ev[i].t0);
        curl_easy_setopt(h[i], CURLOPT_URL, url);
        curl_easy_setopt(h[i], CURLOPT_CAINFO_BLOB, &ca);
        curl_easy_setopt(h[i], CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(h[i], CURLOPT_WRITEFUNCTION, on_watch);
        curl_easy_setopt(h[i], CURLOPT_WRITEDATA, &ev[i]);
        curl_easy_setopt(h[i], CURLOPT_TIMEOUT_MS, 20000L);
        curl_multi_add_handle(m, h[i]);
    }
    int running = 1;
    int churned = 0;
    while (running) {
        curl_multi_perform(m, &running);
        if (!churned) {
            kc_fakeapi_churn(srv, &l, 20);
            churned = 1;
        }
        curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    int full = 0;
    for (int i = 0; i < n; i++) {
        if (ev[i].stop_after == 0) {
            assert_true(ev[i].n >= 30);
            full++;
        } else {
            assert_true(ev[i].n >= ev[i].stop_after);
        }
        curl_multi_remove_handle(m, h[i]);
        curl_easy_cleanup(h[i]);
        rfree(&ev[i].r);
    }
    assert_true(full > 0);
    curl_multi_cleanup(m);
    curl_slist_free_all(hdr);
    free(h);
    free(ev);
    wait_watches(0);
}

static void test_direct_api_and_load(void **state)
{
    char *out = NULL;
    (void)state;
    start(NULL);
    assert_int_equal(kc_fakeapi_apply_json(srv, "configmaps", "{\"metadata\":{\"name\":\"d\",\"namespace\":\"default\"},\"data\":{\"a\":\"1\"}}", &out), 0);
    assert_string_equal(jget(out, "kind"), "ConfigMap");
    assert_string_equal(jget(out, "data.a"), "1");
    free(out);
    assert_int_equal(kc_fakeapi_get_json(srv, "configmaps", "default", "d", &out), 0);
    assert_string_equal(jget(out, "metadata.name"), "d");
    free(out);
    assert_int_equal(kc_fakeapi_get_json(srv, "configmaps", "default", "nope", &out), KC_ENOTFOUND);
    assert_int_equal(kc_fakeapi_apply_json(srv, "widgets", "{}", NULL), KC_ENOTFOUND);
    assert_int_equal(kc_fakeapi_apply_json(srv, "configmaps", "{bad", NULL), KC_EPARSE);
    assert_int_equal(kc_fakeapi_apply_json(srv, "configmaps", "{\"metadata\":{\"name\":\"Bad!\"}}", NULL), KC_EINVALID);
    assert_int_equal(kc_fakeapi_list_json(srv, "namespaces", NULL, &out), 0);
    assert_string_equal(jget(out, "kind"), "NamespaceList");
    assert_int_equal(jcount(out, "items"), 3);
    free(out);
    assert_int_equal(kc_fakeapi_delete(srv, "configmaps", "default", "d"), 0);
    assert_int_equal(kc_fakeapi_delete(srv, "configmaps", "default", "d"), KC_ENOTFOUND);

    kc_fakeapi_load_t l = KC_FAKEAPI_LOAD_INIT;
    l.namespaces = 5;
    l.names = 20;
    assert_int_equal(kc_fakeapi_preload(srv, &l, 100), 0);
    assert_int_equal(kc_fakeapi_count(srv, "configmaps", NULL), 100);
    assert_int_equal(kc_fakeapi_count(srv, "configmaps", "load-3"), 20);
    assert_int_equal(kc_fakeapi_get_json(srv, "configmaps", "load-0", "obj-19", &out), 0);
    assert_in_range(strlen(out), 800, 1400);
    free(out);
    l.resource = "pods";
    assert_int_equal(kc_fakeapi_preload(srv, &l, 10), 0);
    assert_int_equal(kc_fakeapi_get_json(srv, "pods", "load-1", "obj-0", &out), 0);
    assert_in_range(strlen(out), 4000, 6500);
    free(out);
    uint64_t before = kc_fakeapi_revision(srv);
    l.resource = "configmaps";
    assert_int_equal(kc_fakeapi_churn(srv, &l, 200), 0);
    assert_true(kc_fakeapi_revision(srv) >= before + 150);
    {
        /* the churn's events (edited in place as text) are well-formed and
         * carry their own revisions, in order */
        events_t e = {0};
        char path[256];
        snprintf(path, sizeof(path), "/api/v1/configmaps?watch=1&resourceVersion=%" PRIu64 "&timeoutSeconds=1", before);
        watch_collect(path, &e);
        assert_true(e.n >= 150);
        uint64_t prev = before;
        for (int i = 0; i < e.n; i++) {
            uint64_t rv = strtoull(e.rv[i], NULL, 10);
            assert_true(rv > prev);
            prev = rv;
            assert_true(e.name[i][0] != 0);
        }
        assert_int_equal(prev, kc_fakeapi_revision(srv));
        efree(&e);
        assert_int_equal(kc_fakeapi_list_json(srv, "configmaps", "load-2", &out), 0);
        cJSON *j = cJSON_Parse(out);
        assert_non_null(j);
        cJSON_Delete(j);
        free(out);
    }
    /* background churn */
    before = kc_fakeapi_revision(srv);
    assert_int_equal(kc_fakeapi_set_churn_rate(srv, &l, 500), 0);
    usleep(300000);
    assert_int_equal(kc_fakeapi_set_churn_rate(srv, &l, 0), 0);
    assert_true(kc_fakeapi_revision(srv) > before + 20);
}

static void test_table(void **state)
{
    resp_t r;
    events_t e = {0};
    reqopt_t t = {NULL, "application/json;as=Table;v=v1;g=meta.k8s.io,application/json", NULL, NULL, 0, NULL};
    (void)state;
    start(NULL);
    req("POST", "/api/v1/namespaces/default/configmaps", "{\"metadata\":{\"name\":\"t\"},\"data\":{\"a\":\"1\",\"b\":\"2\"}}", &r);
    rfree(&r);
    reqx("GET", "/api/v1/configmaps?limit=500", NULL, NULL, &t, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(jget(r.body, "kind"), "Table");
    assert_string_equal(jget(r.body, "columnDefinitions.1.name"), "Data");
    assert_string_equal(jget(r.body, "rows.0.cells.0"), "t");
    assert_string_equal(jget(r.body, "rows.0.cells.1"), "2");
    assert_string_equal(jget(r.body, "rows.0.object.kind"), "PartialObjectMetadata");
    assert_string_equal(jget(r.body, "rows.0.object.metadata.namespace"), "default");
    assert_string_equal(jget(r.body, "metadata.resourceVersion"), rv_now());
    rfree(&r);
    reqx("GET", "/api/v1/namespaces/default/configmaps/t", NULL, NULL, &t, &r);
    assert_string_equal(jget(r.body, "kind"), "Table");
    assert_string_equal(jget(r.body, "rows.0.cells.0"), "t");
    rfree(&r);
    reqx("GET", "/api/v1/namespaces", NULL, NULL, &t, &r);
    assert_string_equal(jget(r.body, "columnDefinitions.1.name"), "Status");
    assert_string_equal(jget(r.body, "rows.0.cells.1"), "Active");
    rfree(&r);
    /* a watch asked for Tables gets one-row Tables */
    g_watch_accept = t.accept;
    watch_collect("/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1", &e);
    g_watch_accept = NULL;
    assert_int_equal(e.n, 1);
    assert_string_equal(e.type[0], "ADDED");
    assert_non_null(strstr(e.r.body, "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Table\""));
    assert_non_null(strstr(e.r.body, "\"cells\":[\"t\",2,"));
    efree(&e);
}

static void test_kubeconfig_and_admin(void **state)
{
    char path[] = "/tmp/kc-fakeapi-test-XXXXXX";
    int fd = mkstemp(path);
    struct stat stt;
    resp_t r;
    (void)state;
    assert_true(fd >= 0);
    close(fd);
    start(NULL);
    assert_int_equal(kc_fakeapi_write_kubeconfig(srv, path, NULL), 0);
    assert_int_equal(stat(path, &stt), 0);
    assert_int_equal(stt.st_mode & 0777, 0600);
    FILE *f = fopen(path, "r");
    char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = 0;
    fclose(f);
    assert_non_null(strstr(buf, kc_fakeapi_url(srv)));
    assert_non_null(strstr(buf, "token: test-token"));
    assert_non_null(strstr(buf, "certificate-authority-data: "));
    assert_int_equal(kc_fakeapi_write_kubeconfig(srv, path, "bob"), 0);
    f = fopen(path, "r");
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = 0;
    fclose(f);
    assert_non_null(strstr(buf, "client-certificate-data: "));
    unlink(path);
    /* the admin endpoint */
    req("POST", "/fakeapi/admin/faults", "{\"p_503\":1,\"max_http_faults\":1}", &r);
    assert_int_equal(r.code, 200);
    rfree(&r);
    req("GET", "/api/v1/configmaps", NULL, &r);
    assert_int_equal(r.code, 503);
    rfree(&r);
    req("GET", "/api/v1/configmaps", NULL, &r);
    assert_int_equal(r.code, 200);
    rfree(&r);
    assert_int_equal(kc_fakeapi_add_token(srv, "t2", "eve"), 0);
    reqx("POST", "/fakeapi/admin/compact", NULL, "", &(reqopt_t){"t2", NULL, NULL, NULL, 0, NULL}, &r);
    assert_int_equal(r.code, 403);
    rfree(&r);
    req("POST", "/fakeapi/admin/compact", "", &r);
    assert_int_equal(r.code, 200);
    rfree(&r);
    req("GET", "/fakeapi/admin/counters", NULL, &r);
    assert_int_equal(r.code, 200);
    assert_string_equal(jget(r.body, "status_5xx"), "1");
    rfree(&r);
}

int main(void)
{
    const char *san = getenv("KC_SANITIZER");
    if (san && *san)
        g_scale = 3;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_discovery, teardown),
        cmocka_unit_test_teardown(test_auth, teardown),
        cmocka_unit_test_teardown(test_forbidden, teardown),
        cmocka_unit_test_teardown(test_protobuf_415, teardown),
        cmocka_unit_test_teardown(test_crud, teardown),
        cmocka_unit_test_teardown(test_patches, teardown),
        cmocka_unit_test_teardown(test_managed_fields, teardown),
        cmocka_unit_test_teardown(test_pagination, teardown),
        cmocka_unit_test_teardown(test_continue_expiry, teardown),
        cmocka_unit_test_teardown(test_rv_semantics, teardown),
        cmocka_unit_test_teardown(test_selectors, teardown),
        cmocka_unit_test_teardown(test_selector_errors, teardown),
        cmocka_unit_test_teardown(test_watch_replay, teardown),
        cmocka_unit_test_teardown(test_watch_prerendered, teardown),
        cmocka_unit_test_teardown(test_history_window_410, teardown),
        cmocka_unit_test_teardown(test_watch_selector_transitions, teardown),
        cmocka_unit_test_teardown(test_bookmarks, teardown),
        cmocka_unit_test_teardown(test_bookmark_before_timeout, teardown),
        cmocka_unit_test_teardown(test_bookmark_shape, teardown),
        cmocka_unit_test_teardown(test_wire_like_real_server, teardown),
        cmocka_unit_test_teardown(test_send_initial_events, teardown),
        cmocka_unit_test_teardown(test_finalizers, teardown),
        cmocka_unit_test_teardown(test_namespace_deletion, teardown),
        cmocka_unit_test_teardown(test_namespace_no_controller, teardown),
        cmocka_unit_test_teardown(test_delete_preconditions, teardown),
        cmocka_unit_test_teardown(test_fault_http, teardown),
        cmocka_unit_test_teardown(test_fault_watch_close, teardown),
        cmocka_unit_test_teardown(test_live_watch_and_restart, teardown),
        cmocka_unit_test_teardown(test_many_watchers, teardown),
        cmocka_unit_test_teardown(test_direct_api_and_load, teardown),
        cmocka_unit_test_teardown(test_table, teardown),
        cmocka_unit_test_teardown(test_kubeconfig_and_admin, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
