/*
 * Fake API server: the HTTP side.  libevent's evhttp parses HTTP/1.1 over
 * OpenSSL bufferevents; this file authenticates (bearer token or client
 * certificate), authorises (optional allow-list), injects faults, and
 * routes: /version, discovery (aggregated and legacy), /openapi/v3, the
 * admin endpoint, and the resource URLs to list/get/create/update/patch/
 * delete (watch streams live in watch.c).
 *
 * Runs only on the loop thread.  Requests are answered synchronously,
 * except when a delay fault defers the answer with a timer (evhttp keeps a
 * request whose connection died until it is answered, then frees it).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/keyvalq_struct.h>
#include <openssl/evp.h>

#include "fakeapi_int.h"

#define REQLOG_MAX 1024

/* ---- replies ----------------------------------------------------------------- */

static const char *method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    default: return "OTHER";
    }
}

void fa_http_note(fa_server_t *s, struct evhttp_request *req, int code)
{
    kc_fakeapi_counters_t *c = &s->cnt;
    char *line;
    const char *uri = evhttp_request_get_uri(req);
    size_t n;

    if (code < 300)
        c->status_2xx++;
    else if (code == 401)
        c->status_401++;
    else if (code == 403)
        c->status_403++;
    else if (code == 404)
        c->status_404++;
    else if (code == 409)
        c->status_409++;
    else if (code == 410)
        c->status_410++;
    else if (code == 415)
        c->status_415++;
    else if (code == 422)
        c->status_422++;
    else if (code == 429)
        c->status_429++;
    else if (code >= 500)
        c->status_5xx++;
    n = strlen(uri ? uri : "") + 32;
    line = malloc(n);
    if (!line)
        return;
    snprintf(line, n, "%s %s %d", method_name(evhttp_request_get_command(req)), uri ? uri : "",
             code);
    if (!s->reqlog)
        s->reqlog = calloc(REQLOG_MAX, sizeof(char *));
    if (!s->reqlog) {
        free(line);
        return;
    }
    if (s->reqlog_n == REQLOG_MAX) {
        free(s->reqlog[s->reqlog_head]);
        s->reqlog[s->reqlog_head] = line;
        s->reqlog_head = (s->reqlog_head + 1) % REQLOG_MAX;
    } else {
        s->reqlog[(s->reqlog_head + s->reqlog_n) % REQLOG_MAX] = line;
        s->reqlog_n++;
    }
    kc_log(&s->o.log, KC_LOG_DEBUG, FA_COMP, "%s", line);
}

void fa_http_headers(fa_server_t *s, struct evhttp_request *req, const char *ctype)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char uid[40];
    uint64_t a = fa_rand(&s->rng), b = fa_rand(&s->rng);
    snprintf(uid, sizeof(uid), "%08x-%04x-4%03x-%04x-%012" PRIx64, (unsigned)(a >> 32),
             (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff,
             (unsigned)((b >> 48) & 0x3fff) | 0x8000, (uint64_t)(b & 0xffffffffffffULL));
    evhttp_add_header(h, "Audit-Id", uid);
    evhttp_add_header(h, "Cache-Control", "no-cache, private");
    evhttp_add_header(h, "Content-Type", ctype);
    evhttp_add_header(h, "X-Kubernetes-Pf-Flowschema-Uid", "f0e1d2c3-0000-4000-8000-000000000001");
    evhttp_add_header(h, "X-Kubernetes-Pf-Prioritylevel-Uid", "f0e1d2c3-0000-4000-8000-000000000002");
}

static void reply_buf(fa_server_t *s, struct evhttp_request *req, int code, const char *ctype,
                      struct evbuffer *b)
{
    static const struct { int code; const char *text; } texts[] = {
        {200, "OK"}, {201, "Created"}, {400, "Bad Request"}, {401, "Unauthorized"},
        {403, "Forbidden"}, {404, "Not Found"}, {405, "Method Not Allowed"},
        {406, "Not Acceptable"}, {409, "Conflict"}, {410, "Gone"}, {413, "Request Entity Too Large"},
        {415, "Unsupported Media Type"}, {422, "Unprocessable Entity"}, {429, "Too Many Requests"},
        {500, "Internal Server Error"}, {503, "Service Unavailable"}, {504, "Gateway Timeout"}};
    const char *reason = "Status";
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        if (texts[i].code == code)
            reason = texts[i].text;
    fa_http_headers(s, req, ctype);
    fa_http_note(s, req, code);
    evhttp_send_reply(req, code, reason, b);
}

static void reply_text(fa_server_t *s, struct evhttp_request *req, int code, const char *ctype,
                       const char *text)
{
    struct evbuffer *b = evbuffer_new();
    if (b && text)
        evbuffer_add(b, text, strlen(text));
    reply_buf(s, req, code, ctype, b);
    if (b)
        evbuffer_free(b);
}

static void reply_json_take(fa_server_t *s, struct evhttp_request *req, int code, char *text)
{
    reply_text(s, req, code, "application/json", text ? text : "{}");
    free(text);
}

static void reply_status(fa_server_t *s, struct evhttp_request *req, const fa_status_t *st)
{
    char *j = fa_status_json(st);
    if (st->retry_after) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%d", st->retry_after);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", ra);
    }
    reply_json_take(s, req, st->code, j);
}

static void reply_err(fa_server_t *s, struct evhttp_request *req, int code, const char *reason,
                      const char *msg)
{
    fa_status_t st;
    fa_status_set(&st, code, reason, "%s", msg);
    reply_status(s, req, &st);
}

static void reply_obj(fa_server_t *s, struct evhttp_request *req, int code, fa_obj_t *o)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        reply_err(s, req, 500, "InternalError", "out of memory");
        return;
    }
    fa_obj_add_to(b, o, o->res->obj_prefix);
    reply_buf(s, req, code, "application/json", b);
    evbuffer_free(b);
}

/* ---- discovery ------------------------------------------------------------------ */

static cJSON *verbs_array(void)
{
    static const char *v[] = {"create", "delete", "deletecollection", "get", "list",
                              "patch", "update", "watch"};
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(v[i]));
    return a;
}

static cJSON *short_names(const fa_res_t *r)
{
    cJSON *a = cJSON_CreateArray();
    const char *p = r->short_names;
    while (*p) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        char buf[32];
        snprintf(buf, sizeof(buf), "%.*s", (int)n, p);
        cJSON_AddItemToArray(a, cJSON_CreateString(buf));
        p += n + (c ? 1 : 0);
    }
    return a;
}

/* Distinct groups ("" first), in table order. */
static size_t groups(const char **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < fa_nres; i++) {
        const fa_res_t *r = fa_res_at(i);
        size_t k;
        for (k = 0; k < n; k++)
            if (!strcmp(out[k], r->group))
                break;
        if (k == n && n < max)
            out[n++] = r->group;
    }
    return n;
}

static char *aggregated(int core)
{
    cJSON *j = cJSON_CreateObject(), *items;
    const char *gs[32];
    size_t ng = groups(gs, 32);
    cJSON_AddStringToObject(j, "kind", "APIGroupDiscoveryList");
    cJSON_AddStringToObject(j, "apiVersion", "apidiscovery.k8s.io/v2");
    cJSON_AddObjectToObject(j, "metadata");
    items = cJSON_AddArrayToObject(j, "items");
    for (size_t g = 0; g < ng; g++) {
        if ((core && gs[g][0]) || (!core && !gs[g][0]))
            continue;
        cJSON *it = cJSON_CreateObject(), *md = cJSON_AddObjectToObject(it, "metadata");
        if (gs[g][0])
            cJSON_AddStringToObject(md, "name", gs[g]);
        cJSON_AddNullToObject(md, "creationTimestamp");
        cJSON *vers = cJSON_AddArrayToObject(it, "versions");
        cJSON *ver = cJSON_CreateObject();
        cJSON_AddStringToObject(ver, "version", "v1");
        cJSON *res = cJSON_AddArrayToObject(ver, "resources");
        for (size_t i = 0; i < fa_nres; i++) {
            const fa_res_t *r = fa_res_at(i);
            if (strcmp(r->group, gs[g]))
                continue;
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "resource", r->plural);
            cJSON *rk = cJSON_AddObjectToObject(e, "responseKind");
            cJSON_AddStringToObject(rk, "group", r->group);
            cJSON_AddStringToObject(rk, "version", r->version);
            cJSON_AddStringToObject(rk, "kind", r->kind);
            cJSON_AddStringToObject(e, "scope", r->namespaced ? "Namespaced" : "Cluster");
            cJSON_AddStringToObject(e, "singularResource", r->singular);
            cJSON_AddItemToObject(e, "verbs", verbs_array());
            if (r->short_names[0])
                cJSON_AddItemToObject(e, "shortNames", short_names(r));
            if (r->has_status) {
                cJSON *subs = cJSON_AddArrayToObject(e, "subresources"), *sr = cJSON_CreateObject();
                cJSON_AddStringToObject(sr, "subresource", "status");
                cJSON *srk = cJSON_AddObjectToObject(sr, "responseKind");
                cJSON_AddStringToObject(srk, "group", r->group);
                cJSON_AddStringToObject(srk, "version", r->version);
                cJSON_AddStringToObject(srk, "kind", r->kind);
                cJSON *sv = cJSON_AddArrayToObject(sr, "verbs");
                cJSON_AddItemToArray(sv, cJSON_CreateString("get"));
                cJSON_AddItemToArray(sv, cJSON_CreateString("patch"));
                cJSON_AddItemToArray(sv, cJSON_CreateString("update"));
                cJSON_AddItemToArray(subs, sr);
            }
            cJSON_AddItemToArray(res, e);
        }
        cJSON_AddStringToObject(ver, "freshness", "Current");
        cJSON_AddItemToArray(vers, ver);
        cJSON_AddItemToArray(items, it);
    }
    char *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return out;
}

static char *resource_list(const char *group)
{
    cJSON *j = cJSON_CreateObject(), *res;
    char gv[80];
    if (group[0])
        snprintf(gv, sizeof(gv), "%s/v1", group);
    else
        snprintf(gv, sizeof(gv), "v1");
    cJSON_AddStringToObject(j, "kind", "APIResourceList");
    cJSON_AddStringToObject(j, "apiVersion", "v1");
    cJSON_AddStringToObject(j, "groupVersion", gv);
    res = cJSON_AddArrayToObject(j, "resources");
    for (size_t i = 0; i < fa_nres; i++) {
        const fa_res_t *r = fa_res_at(i);
        if (strcmp(r->group, group))
            continue;
        for (int sub = 0; sub < (r->has_status ? 2 : 1); sub++) {
            cJSON *e = cJSON_CreateObject();
            char nm[96];
            snprintf(nm, sizeof(nm), "%s%s", r->plural, sub ? "/status" : "");
            cJSON_AddStringToObject(e, "name", nm);
            cJSON_AddStringToObject(e, "singularName", sub ? "" : r->singular);
            cJSON_AddBoolToObject(e, "namespaced", r->namespaced);
            cJSON_AddStringToObject(e, "kind", r->kind);
            if (sub) {
                cJSON *sv = cJSON_AddArrayToObject(e, "verbs");
                cJSON_AddItemToArray(sv, cJSON_CreateString("get"));
                cJSON_AddItemToArray(sv, cJSON_CreateString("patch"));
                cJSON_AddItemToArray(sv, cJSON_CreateString("update"));
            } else {
                cJSON_AddItemToObject(e, "verbs", verbs_array());
                if (r->short_names[0])
                    cJSON_AddItemToObject(e, "shortNames", short_names(r));
            }
            cJSON_AddItemToArray(res, e);
        }
    }
    char *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return out;
}

static char *group_list(void)
{
    cJSON *j = cJSON_CreateObject(), *gl;
    const char *gs[32];
    size_t ng = groups(gs, 32);
    cJSON_AddStringToObject(j, "kind", "APIGroupList");
    cJSON_AddStringToObject(j, "apiVersion", "v1");
    gl = cJSON_AddArrayToObject(j, "groups");
    for (size_t g = 0; g < ng; g++) {
        if (!gs[g][0])
            continue;
        char gv[80];
        snprintf(gv, sizeof(gv), "%s/v1", gs[g]);
        cJSON *e = cJSON_CreateObject(), *vs = cJSON_AddArrayToObject(e, "versions");
        cJSON *v = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", gs[g]);
        cJSON_AddStringToObject(v, "groupVersion", gv);
        cJSON_AddStringToObject(v, "version", "v1");
        cJSON_AddItemToArray(vs, v);
        cJSON *pv = cJSON_AddObjectToObject(e, "preferredVersion");
        cJSON_AddStringToObject(pv, "groupVersion", gv);
        cJSON_AddStringToObject(pv, "version", "v1");
        cJSON_AddItemToArray(gl, e);
    }
    char *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return out;
}

static int group_known(const char *g)
{
    for (size_t i = 0; i < fa_nres; i++)
        if (!strcmp(fa_res_at(i)->group, g))
            return 1;
    return 0;
}

static char *openapi_index(void)
{
    cJSON *j = cJSON_CreateObject(), *p = cJSON_AddObjectToObject(j, "paths");
    const char *gs[32];
    size_t ng = groups(gs, 32);
    for (size_t g = 0; g < ng; g++) {
        char key[96], url[160];
        if (gs[g][0])
            snprintf(key, sizeof(key), "apis/%s/v1", gs[g]);
        else
            snprintf(key, sizeof(key), "api/v1");
        snprintf(url, sizeof(url), "/openapi/v3/%s?hash=%s", key, "0123456789ABCDEF");
        cJSON *e = cJSON_AddObjectToObject(p, key);
        cJSON_AddStringToObject(e, "serverRelativeURL", url);
    }
    char *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return out;
}

/* A minimal OpenAPI v3 document: one PATCH operation per kind carrying
 * x-kubernetes-group-version-kind and the fieldValidation parameter, which
 * is what kubectl's query-param verifier looks for before it delegates
 * validation to the server. */
static char *openapi_group(const char *group)
{
    cJSON *j = cJSON_CreateObject(), *info, *paths;
    cJSON_AddStringToObject(j, "openapi", "3.0.0");
    info = cJSON_AddObjectToObject(j, "info");
    cJSON_AddStringToObject(info, "title", "Kubernetes");
    cJSON_AddStringToObject(info, "version", "v1.32.4");
    paths = cJSON_AddObjectToObject(j, "paths");
    for (size_t i = 0; i < fa_nres; i++) {
        const fa_res_t *r = fa_res_at(i);
        char path[256];
        if (strcmp(r->group, group))
            continue;
        snprintf(path, sizeof(path), "/%s/%s%s/%s/{name}", r->group[0] ? "apis" : "api", r->gv,
                 r->namespaced ? "/namespaces/{namespace}" : "", r->plural);
        cJSON *pe = cJSON_AddObjectToObject(paths, path);
        for (int m = 0; m < 3; m++) {
            static const char *ms[] = {"get", "put", "patch"};
            cJSON *op = cJSON_AddObjectToObject(pe, ms[m]);
            cJSON *gvk = cJSON_AddObjectToObject(op, "x-kubernetes-group-version-kind");
            cJSON_AddStringToObject(gvk, "group", r->group);
            cJSON_AddStringToObject(gvk, "version", r->version);
            cJSON_AddStringToObject(gvk, "kind", r->kind);
            cJSON_AddStringToObject(op, "x-kubernetes-action", m == 0 ? "get" : m == 1 ? "put" : "patch");
            cJSON *params = cJSON_AddArrayToObject(op, "parameters");
            static const char *qp[] = {"dryRun", "fieldManager", "fieldValidation", "force"};
            for (size_t k = 0; k < 4 && m; k++) {
                cJSON *pp = cJSON_CreateObject();
                cJSON_AddStringToObject(pp, "name", qp[k]);
                cJSON_AddStringToObject(pp, "in", "query");
                cJSON *sc = cJSON_AddObjectToObject(pp, "schema");
                cJSON_AddStringToObject(sc, "type", k == 3 ? "boolean" : "string");
                cJSON_AddItemToArray(params, pp);
            }
            cJSON *resp = cJSON_AddObjectToObject(op, "responses");
            cJSON *ok = cJSON_AddObjectToObject(resp, "200");
            cJSON_AddStringToObject(ok, "description", "OK");
        }
    }
    cJSON *comp = cJSON_AddObjectToObject(j, "components");
    cJSON_AddObjectToObject(comp, "schemas");
    char *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return out;
}

static const char VERSION_JSON[] =
    "{\"major\":\"1\",\"minor\":\"32\",\"gitVersion\":\"v1.32.4\",\"gitCommit\":\"kcache-fakeapi\","
    "\"gitTreeState\":\"clean\",\"buildDate\":\"2025-01-01T00:00:00Z\",\"goVersion\":\"go1.23.8\","
    "\"compiler\":\"gc\",\"platform\":\"linux/amd64\"}";

/* ---- auth ------------------------------------------------------------------------- */

/* The authenticated user (borrowed) or NULL; *bad set for an unknown token. */
static const char *authenticate(fa_server_t *s, struct evhttp_request *req, char *cn, size_t cnlen,
                                int *bad)
{
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    *bad = 0;
    if (auth) {
        if (!strncasecmp(auth, "Bearer ", 7)) {
            const char *t = auth + 7;
            while (*t == ' ')
                t++;
            if (!strcmp(t, s->token))
                return "admin";
            for (size_t i = 0; i < s->ntokens; i++)
                if (!strcmp(t, s->tokens[i].token))
                    return s->tokens[i].user;
        }
        *bad = 1;
        return NULL;
    }
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
    if (ssl) {
        X509 *peer = SSL_get1_peer_certificate(ssl);
        if (peer) {
            int ok = SSL_get_verify_result(ssl) == X509_V_OK;
            int n = X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn,
                                              (int)cnlen);
            X509_free(peer);
            if (ok && n > 0)
                return cn;
            *bad = 1;
        }
    }
    return NULL;
}

static int allowed(fa_server_t *s, const char *user, const char *verb, const char *resource)
{
    int restricted = 0;
    for (size_t i = 0; i < s->nrules; i++) {
        fa_user_rule_t *r = &s->rules[i];
        if (strcmp(r->user, user))
            continue;
        restricted = 1;
        if ((!strcmp(r->verb, "*") || !strcmp(r->verb, verb)) &&
            (!strcmp(r->resource, "*") || !strcmp(r->resource, resource)))
            return 1;
    }
    return !restricted;
}

/* ---- request context ---------------------------------------------------------------- */

typedef struct reqctx {
    fa_server_t *s;
    struct evhttp_request *req;
    char *path;                  /* decoded */
    struct evkeyvalq q;
    const char *user;
    char cn[256];
    struct event *ev;            /* delay fault timer */
    struct reqctx *prev, *next;  /* in s->delayed while delayed */
} reqctx_t;

static const char *qget(reqctx_t *c, const char *k)
{
    return evhttp_find_header(&c->q, k);
}

static char *body_str(struct evhttp_request *req, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    char *b = malloc(n + 1);
    if (!b)
        return NULL;
    evbuffer_copyout(in, b, n);
    b[n] = 0;
    *len = n;
    return b;
}

static int json_ctype_ok(reqctx_t *c, int patch)
{
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(c->req), "Content-Type");
    if (patch)
        return 1;
    if (!ct || !*ct || !strncmp(ct, "application/json", 16) || !strncmp(ct, "*/*", 3))
        return 1;
    return 0;
}

static void reply_415(reqctx_t *c)
{
    reply_err(c->s, c->req, 415, "UnsupportedMediaType",
              "the body of the request was in an unknown format - accepted media types include: "
              "application/json");
}

/* ---- continue tokens ----------------------------------------------------------------- */

static char *b64url(const unsigned char *d, size_t n)
{
    size_t cap = 4 * ((n + 2) / 3) + 1;
    char *o = malloc(cap);
    if (!o)
        return NULL;
    int len = EVP_EncodeBlock((unsigned char *)o, d, (int)n);
    while (len > 0 && o[len - 1] == '=')
        len--;
    o[len] = 0;
    for (char *p = o; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
    return o;
}

static unsigned char *unb64url(const char *s, size_t *outlen)
{
    size_t n = strlen(s), pad = (4 - n % 4) % 4;
    char *t = malloc(n + pad + 1);
    unsigned char *o;
    if (!t || pad == 3) {
        free(t);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        t[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    memset(t + n, '=', pad);
    t[n + pad] = 0;
    o = malloc((n + pad) / 4 * 3 + 1);
    if (!o) {
        free(t);
        return NULL;
    }
    int len = EVP_DecodeBlock(o, (unsigned char *)t, (int)(n + pad));
    free(t);
    if (len < 0) {
        free(o);
        return NULL;
    }
    *outlen = (size_t)len - pad;
    o[*outlen] = 0;
    return o;
}

static char *make_continue(long long rv, const char *start)
{
    cJSON *str = cJSON_CreateString(start);
    char *q = str ? cJSON_PrintUnformatted(str) : NULL, *tok = NULL;
    cJSON_Delete(str);
    if (!q)
        return NULL;
    size_t n = strlen(q) + 96;
    char *js = malloc(n);
    if (js) {
        q[strlen(q) - 1] = 0; /* drop the closing quote, add \u0000 */
        snprintf(js, n, "{\"v\":\"meta.k8s.io/v1\",\"rv\":%lld,\"start\":%s\\u0000\"}", rv, q);
        tok = b64url((unsigned char *)js, strlen(js));
        free(js);
    }
    free(q);
    return tok;
}

/* Decode a token; returns 0 and fills rv/start (malloc'd) or -1. */
static int parse_continue(const char *tok, long long *rv, char **start)
{
    size_t n;
    unsigned char *d = unb64url(tok, &n);
    cJSON *j;
    int rc = -1;
    if (!d)
        return -1;
    j = cJSON_ParseWithLength((char *)d, n);
    free(d);
    if (!j)
        return -1;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "v");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "rv");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "start");
    if (cJSON_IsString(v) && !strcmp(v->valuestring, "meta.k8s.io/v1") && cJSON_IsNumber(r) &&
        r->valuedouble != 0 && cJSON_IsString(st) && st->valuestring[0] &&
        !strstr(st->valuestring, "..")) {
        *rv = (long long)r->valuedouble;
        *start = strdup(st->valuestring);
        rc = *start ? 0 : -1;
    }
    cJSON_Delete(j);
    return rc;
}

/* ---- list ------------------------------------------------------------------------------ */

static int parse_rv(const char *v, uint64_t *out)
{
    char *end;
    if (!v || !*v)
        return 1;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (*end || errno || v[0] == '-')
        return -1;
    *out = x;
    return 0;
}

static void list_invalid(reqctx_t *c, const char *field, const char *cause, const char *detail)
{
    fa_status_t st;
    fa_status_list_invalid(&st, field, cause, detail);
    reply_status(c->s, c->req, &st);
}

static void do_list(reqctx_t *c, const fa_res_t *r, const char *ns)
{
    fa_server_t *s = c->s;
    fa_store_t *store = &s->store;
    const char *rvs = qget(c, "resourceVersion"), *rvm = qget(c, "resourceVersionMatch");
    const char *cont = qget(c, "continue"), *lim = qget(c, "limit");
    fa_selector_t sel;
    fa_status_t st;
    uint64_t rv = 0, R;
    long limit = 0;
    int has_rv;
    char *start = NULL;
    fa_objv_t snap = {0};
    struct evbuffer *b = NULL;

    s->cnt.list++;
    if (qget(c, "sendInitialEvents")) {
        list_invalid(c, "sendInitialEvents", "FieldValueForbidden", "Forbidden: sendInitialEvents is forbidden for list");
        return;
    }
    if (lim && *lim) {
        char *end;
        limit = strtol(lim, &end, 10);
        if (*end) {
            reply_err(s, c->req, 400, "BadRequest", "invalid limit");
            return;
        }
        if (limit < 0)
            limit = 0; /* the real server lists everything */
    }
    has_rv = parse_rv(rvs, &rv);
    if (has_rv < 0) {
        fa_status_bad_rv(&st, rvs);
        reply_status(s, c->req, &st);
        return;
    }
    has_rv = !has_rv;
    if (rvm && *rvm) {
        if (!has_rv) {
            list_invalid(c, "resourceVersionMatch", "FieldValueForbidden",
                         "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided");
            return;
        }
        if (cont && *cont) {
            list_invalid(c, "resourceVersionMatch", "FieldValueForbidden",
                         "Forbidden: resourceVersionMatch is forbidden when continue is provided");
            return;
        }
        if (strcmp(rvm, "Exact") && strcmp(rvm, "NotOlderThan")) {
            char m[300];
            snprintf(m, sizeof(m), "Unsupported value: \"%.100s\": supported values: \"Exact\", \"NotOlderThan\", \"\"", rvm);
            list_invalid(c, "resourceVersionMatch", "FieldValueNotSupported", m);
            return;
        }
        if (!strcmp(rvm, "Exact") && rv == 0) {
            list_invalid(c, "resourceVersionMatch", "FieldValueForbidden",
                         "Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"");
            return;
        }
    }
    if (fa_selector_parse(&sel, r, qget(c, "labelSelector"), qget(c, "fieldSelector"), &st)) {
        reply_status(s, c->req, &st);
        return;
    }
    R = store->rv;
    if (cont && *cont) {
        long long trv;
        if (parse_continue(cont, &trv, &start) < 0) {
            reply_err(s, c->req, 400, "BadRequest", "invalid continue token: continue key is not valid: illegal base64 data");
            goto out;
        }
        if (trv == -1) {
            R = store->rv;
        } else if ((uint64_t)trv < store->compacted_rv ||
                   (s->o.continue_ttl_revisions > 0 &&
                    store->rv - (uint64_t)trv > (uint64_t)s->o.continue_ttl_revisions)) {
            fa_status_set(&st, 410, "Expired",
                          "The provided continue parameter is too old to display a consistent list result. "
                          "You can start a new list without the continue parameter, or use the continue token "
                          "in this response to retrieve the remainder of the results. Continuing with the "
                          "provided token results in an inconsistent list - objects that were created, "
                          "modified, or deleted between the time the first chunk was returned and now may "
                          "show up in the list.");
            char *nt = make_continue(-1, start);
            if (nt)
                snprintf(st.cont, sizeof(st.cont), "%s", nt);
            free(nt);
            reply_status(s, c->req, &st);
            goto out;
        } else if ((uint64_t)trv > store->rv) {
            reply_err(s, c->req, 400, "BadRequest", "invalid continue token: continue key is not valid: resource version too large");
            goto out;
        } else {
            R = (uint64_t)trv;
        }
    } else if (has_rv && rv != 0) {
        int exact = (rvm && !strcmp(rvm, "Exact")) || ((!rvm || !*rvm) && limit > 0);
        if (rv > store->rv) {
            fa_status_set(&st, 504, "Timeout", "Timeout: Too large resource version: %" PRIu64 ", current: %" PRIu64,
                          rv, store->rv);
            st.retry_after = 1;
            st.cause_reason = "ResourceVersionTooLarge";
            snprintf(st.cause_msg, sizeof(st.cause_msg), "Too large resource version");
            reply_status(s, c->req, &st);
            goto out;
        }
        if (exact) {
            if (rv < store->compacted_rv) {
                fa_status_set(&st, 410, "Expired", "The resourceVersion for the provided list is too old.");
                reply_status(s, c->req, &st);
                goto out;
            }
            R = rv;
        }
    } else if (has_rv && rv == 0) {
        limit = 0; /* served from the watch cache in full, like 1.32 */
    }
    if (fa_store_snapshot(store, r, ns, R, &snap) < 0) {
        reply_err(s, c->req, 500, "InternalError", "out of memory");
        goto out;
    }
    b = evbuffer_new();
    if (!b) {
        reply_err(s, c->req, 500, "InternalError", "out of memory");
        goto out;
    }
    {
        char fullstart[600] = "";
        size_t i = 0, nitems = 0, last = 0;
        int namespaced_list = r->namespaced && ns && *ns;
        fa_obj_t **picked = malloc((snap.n ? snap.n : 1) * sizeof(*picked));
        if (!picked) {
            reply_err(s, c->req, 500, "InternalError", "out of memory");
            goto out;
        }
        if (start) {
            if (namespaced_list)
                snprintf(fullstart, sizeof(fullstart), "%s/%s", ns, start);
            else
                snprintf(fullstart, sizeof(fullstart), "%s", start);
            /* the token's start is "<last key>\0": strictly after it */
            while (i < snap.n && strcmp(snap.v[i]->key, fullstart) <= 0)
                i++;
        }
        for (; i < snap.n; i++) {
            fa_obj_t *o = snap.v[i];
            if (!fa_selector_match(&sel, o))
                continue;
            if (limit > 0 && (long)nitems == limit)
                break;
            picked[nitems++] = o;
            last = i;
        }
        char *ctok = NULL;
        size_t remaining = 0;
        if (i < snap.n && limit > 0 && (long)nitems == limit) {
            /* more may follow: continue after the last key returned */
            const char *k = snap.v[last]->key;
            char rel[600];
            if (namespaced_list)
                snprintf(rel, sizeof(rel), "%s", k + strlen(ns) + 1);
            else
                snprintf(rel, sizeof(rel), "%s", k);
            ctok = make_continue((long long)R, rel);
            remaining = snap.n - i;
        }
        if (fa_wants_table(evhttp_find_header(evhttp_request_get_input_headers(c->req), "Accept"))) {
            char rvbuf[32];
            snprintf(rvbuf, sizeof(rvbuf), "%" PRIu64, R);
            char *t = fa_table_json(r, picked, nitems, rvbuf, ctok,
                                    fa_selector_empty(&sel) ? (long)remaining : -1);
            if (t)
                evbuffer_add(b, t, strlen(t));
            free(t);
        } else {
            evbuffer_add_printf(b, "{\"kind\":\"%sList\",\"apiVersion\":\"%s\",\"metadata\":{\"resourceVersion\":\"%" PRIu64 "\"",
                                r->kind, r->gv, R);
            if (ctok) {
                evbuffer_add_printf(b, ",\"continue\":\"%s\"", ctok);
                if (fa_selector_empty(&sel))
                    evbuffer_add_printf(b, ",\"remainingItemCount\":%zu", remaining);
            }
            evbuffer_add_printf(b, "},\"items\":[");
            /* 256 KiB chains: OpenSSL writes full 16 KiB records, with far
             * fewer syscalls than one per small evbuffer chain */
            size_t room = 0;
            for (size_t k = 0; k < nitems; k++) {
                size_t need = picked[k]->len + 2;
                if (room < need) {
                    room = need > 262144 ? need : 262144;
                    evbuffer_expand(b, room);
                }
                evbuffer_add(b, k ? ",{" : "{", k ? 2 : 1);
                evbuffer_add(b, picked[k]->body + 1, picked[k]->len - 1);
                room -= need;
            }
            evbuffer_add(b, "]}", 2);
        }
        free(picked);
        free(ctok);
    }
    reply_buf(s, c->req, 200, "application/json", b);
out:
    if (b)
        evbuffer_free(b);
    fa_objv_free(&snap);
    fa_selector_free(&sel);
    free(start);
}

/* ---- writes ------------------------------------------------------------------------------ */

static void fill_write(reqctx_t *c, fa_write_t *w, const fa_res_t *r, const char *ns,
                       const char *name, int status)
{
    const char *dr = qget(c, "dryRun");
    memset(w, 0, sizeof(*w));
    w->res = r;
    w->ns = r->namespaced ? ns : NULL;
    w->name = name;
    w->subresource_status = status;
    w->dry_run = dr && !strcmp(dr, "All");
    w->field_manager = qget(c, "fieldManager");
    w->force = fa_query_bool(qget(c, "force"));
    /* the manager of managedFields: ?fieldManager=, else the User-Agent up
     * to its first '/' (at most 128 bytes), as kube-apiserver derives it */
    if (w->field_manager && *w->field_manager) {
        w->manager = w->field_manager;
    } else {
        const char *ua = evhttp_find_header(evhttp_request_get_input_headers(c->req), "User-Agent");
        size_t n = ua ? strcspn(ua, "/") : 0;
        if (n > sizeof(w->ua_manager) - 1)
            n = sizeof(w->ua_manager) - 1;
        memcpy(w->ua_manager, ua ? ua : "", n);
        w->ua_manager[n] = 0;
        w->manager = w->ua_manager;
    }
    w->patch_type = evhttp_find_header(evhttp_request_get_input_headers(c->req), "Content-Type");
}

static void do_create(reqctx_t *c, const fa_res_t *r, const char *ns)
{
    fa_write_t w;
    fa_status_t st = {0};
    size_t len;
    char *body;
    cJSON *j;
    fa_obj_t *o;

    c->s->cnt.create++;
    if (!json_ctype_ok(c, 0)) {
        reply_415(c);
        return;
    }
    body = body_str(c->req, &len);
    j = body ? cJSON_ParseWithLength(body, len) : NULL;
    free(body);
    if (!j) {
        reply_err(c->s, c->req, 400, "BadRequest", "the body of the request could not be decoded as JSON");
        return;
    }
    fill_write(c, &w, r, ns, NULL, 0);
    o = fa_do_create(c->s, &w, j, &st);
    cJSON_Delete(j);
    if (!o) {
        reply_status(c->s, c->req, &st);
        return;
    }
    reply_obj(c->s, c->req, 201, o);
    fa_obj_unref(o);
}

static void do_update(reqctx_t *c, const fa_res_t *r, const char *ns, const char *name, int status)
{
    fa_write_t w;
    fa_status_t st = {0};
    size_t len;
    char *body;
    cJSON *j;
    fa_obj_t *o;
    int created = 0;

    c->s->cnt.update++;
    if (!json_ctype_ok(c, 0)) {
        reply_415(c);
        return;
    }
    body = body_str(c->req, &len);
    j = body ? cJSON_ParseWithLength(body, len) : NULL;
    free(body);
    if (!j) {
        reply_err(c->s, c->req, 400, "BadRequest", "the body of the request could not be decoded as JSON");
        return;
    }
    fill_write(c, &w, r, ns, name, status);
    o = fa_do_update(c->s, &w, j, &created, &st);
    cJSON_Delete(j);
    if (!o) {
        reply_status(c->s, c->req, &st);
        return;
    }
    reply_obj(c->s, c->req, created ? 201 : 200, o);
    fa_obj_unref(o);
}

static void do_patch(reqctx_t *c, const fa_res_t *r, const char *ns, const char *name, int status)
{
    fa_write_t w;
    fa_status_t st = {0};
    size_t len;
    char *body;
    fa_obj_t *o;
    int created = 0;

    c->s->cnt.patch++;
    body = body_str(c->req, &len);
    if (!body) {
        reply_err(c->s, c->req, 500, "InternalError", "out of memory");
        return;
    }
    fill_write(c, &w, r, ns, name, status);
    o = fa_do_patch(c->s, &w, body, len, &created, &st);
    free(body);
    if (!o) {
        reply_status(c->s, c->req, &st);
        return;
    }
    reply_obj(c->s, c->req, created ? 201 : 200, o);
    fa_obj_unref(o);
}

static void do_delete(reqctx_t *c, const fa_res_t *r, const char *ns, const char *name)
{
    fa_write_t w;
    fa_status_t st = {0};
    size_t len;
    char *body = body_str(c->req, &len);
    cJSON *opts = body && len ? cJSON_ParseWithLength(body, len) : NULL;
    fa_obj_t *o, *last = NULL;

    c->s->cnt.del++;
    free(body);
    fill_write(c, &w, r, ns, name, 0);
    if (opts) {
        const cJSON *pre = cJSON_GetObjectItemCaseSensitive(opts, "preconditions");
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(pre, "uid");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(pre, "resourceVersion");
        const cJSON *dr = cJSON_GetObjectItemCaseSensitive(opts, "dryRun");
        if (cJSON_IsString(u))
            w.pre_uid = u->valuestring;
        if (cJSON_IsString(v))
            w.pre_rv = v->valuestring;
        if (cJSON_IsArray(dr) && cJSON_GetArraySize(dr) > 0)
            w.dry_run = 1;
    }
    o = fa_do_delete(c->s, &w, &last, &st);
    if (o) {
        reply_obj(c->s, c->req, 200, o);
    } else if (last) {
        fa_status_t ok;
        fa_status_set(&ok, 200, NULL, "%s", "");
        char *uid = last->uid;
        cJSON *j = cJSON_CreateObject(), *d;
        cJSON_AddStringToObject(j, "kind", "Status");
        cJSON_AddStringToObject(j, "apiVersion", "v1");
        cJSON_AddObjectToObject(j, "metadata");
        cJSON_AddStringToObject(j, "status", "Success");
        d = cJSON_AddObjectToObject(j, "details");
        cJSON_AddStringToObject(d, "name", name);
        if (r->group[0])
            cJSON_AddStringToObject(d, "group", r->group);
        cJSON_AddStringToObject(d, "kind", r->plural);
        cJSON_AddStringToObject(d, "uid", uid);
        reply_json_take(c->s, c->req, 200, cJSON_PrintUnformatted(j));
        cJSON_Delete(j);
    } else {
        reply_status(c->s, c->req, &st);
    }
    cJSON_Delete(opts);
    fa_obj_unref(o);
    fa_obj_unref(last);
}

static void do_delete_collection(reqctx_t *c, const fa_res_t *r, const char *ns)
{
    fa_selector_t sel;
    fa_status_t st;
    fa_objv_t snap;
    c->s->cnt.del++;
    if (fa_selector_parse(&sel, r, qget(c, "labelSelector"), qget(c, "fieldSelector"), &st)) {
        reply_status(c->s, c->req, &st);
        return;
    }
    if (fa_store_snapshot(&c->s->store, r, ns, c->s->store.rv, &snap) == 0) {
        for (size_t i = 0; i < snap.n; i++) {
            fa_write_t w = {0};
            fa_obj_t *last = NULL, *o;
            if (!fa_selector_match(&sel, snap.v[i]))
                continue;
            w.res = r;
            w.ns = snap.v[i]->ns;
            w.name = snap.v[i]->name;
            o = fa_do_delete(c->s, &w, &last, &st);
            fa_obj_unref(o);
            fa_obj_unref(last);
        }
        fa_objv_free(&snap);
    }
    fa_selector_free(&sel);
    reply_json_take(c->s, c->req, 200,
                    strdup("{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Success\"}"));
}

/* ---- admin endpoint ------------------------------------------------------------------------ */

static double jnum(const cJSON *o, const char *k, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

int fa_faults_from_json(const char *text, kc_fakeapi_faults_t *f)
{
    cJSON *j = cJSON_Parse(text);
    kc_fakeapi_faults_t z = KC_FAKEAPI_FAULTS_INIT;
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return -1;
    }
    z.p_429 = jnum(j, "p_429", 0);
    z.retry_after_s = (int)jnum(j, "retry_after_s", 0);
    z.p_500 = jnum(j, "p_500", 0);
    z.p_503 = jnum(j, "p_503", 0);
    z.max_http_faults = (long)jnum(j, "max_http_faults", 0);
    z.delay_ms = (int)jnum(j, "delay_ms", 0);
    z.p_delay = jnum(j, "p_delay", 0);
    z.close_watch_after_events = (long)jnum(j, "close_watch_after_events", 0);
    z.p_close_watch = jnum(j, "p_close_watch", 0);
    z.stall_ms = (int)jnum(j, "stall_ms", 0);
    z.p_stall = jnum(j, "p_stall", 0);
    z.p_cut_mid_event = jnum(j, "p_cut_mid_event", 0);
    cJSON_Delete(j);
    *f = z;
    return 0;
}

static char *counters_json(const kc_fakeapi_counters_t *c, uint64_t rv)
{
    char *o = malloc(1024);
    if (!o)
        return NULL;
    snprintf(o, 1024,
             "{\"revision\":%" PRIu64 ",\"requests\":%" PRIu64 ",\"get\":%" PRIu64 ",\"list\":%" PRIu64
             ",\"watch\":%" PRIu64 ",\"create\":%" PRIu64 ",\"update\":%" PRIu64 ",\"patch\":%" PRIu64
             ",\"delete\":%" PRIu64 ",\"watch_events\":%" PRIu64 ",\"watches_open\":%" PRIu64
             ",\"connections\":%" PRIu64 ",\"faults\":%" PRIu64 ",\"status_429\":%" PRIu64
             ",\"status_5xx\":%" PRIu64 "}",
             rv, c->requests, c->get, c->list, c->watch, c->create, c->update, c->patch, c->del,
             c->watch_events, c->watches_open, c->connections, c->faults, c->status_429,
             c->status_5xx);
    return o;
}

static void do_admin(reqctx_t *c, const char *what)
{
    fa_server_t *s = c->s;
    if (!strcmp(what, "counters")) {
        reply_json_take(s, c->req, 200, counters_json(&s->cnt, s->store.rv));
        return;
    }
    if (evhttp_request_get_command(c->req) != EVHTTP_REQ_POST) {
        reply_err(s, c->req, 405, "MethodNotAllowed", "use POST");
        return;
    }
    if (!strcmp(what, "faults")) {
        size_t len;
        char *b = body_str(c->req, &len);
        kc_fakeapi_faults_t f;
        if (!b || fa_faults_from_json(b, &f) < 0) {
            free(b);
            reply_err(s, c->req, 400, "BadRequest", "faults: expected a JSON object");
            return;
        }
        free(b);
        s->faults = f;
        s->http_faults_done = 0;
    } else if (!strcmp(what, "compact")) {
        fa_store_compact(&s->store);
    } else if (!strcmp(what, "close-watches")) {
        fa_watch_close_all(s, 0);
    } else if (!strcmp(what, "restart")) {
        /* answer first, then drop everything from a fresh loop iteration */
        reply_json_take(s, c->req, 200, strdup("{\"ok\":true}"));
        struct timeval tv = {0, 50000};
        event_base_once(s->base, -1, EV_TIMEOUT, fa_http_restart_cb, s, &tv);
        return;
    } else if (!strcmp(what, "churn")) {
        const char *rate = qget(c, "rate"), *res = qget(c, "resource");
        kc_fakeapi_load_t l = KC_FAKEAPI_LOAD_INIT;
        if (res && fa_res_by_plural(res))
            l.resource = fa_res_by_plural(res)->plural;
        s->churn_load = l;
        s->churn_rate = rate ? strtod(rate, NULL) : 0;
        s->churn_last_ns = kc_now_ns();
        if (s->churn_ev) {
            struct timeval tv = {0, 10000};
            event_add(s->churn_ev, &tv);
        }
    } else {
        reply_err(s, c->req, 404, "NotFound", "unknown admin action");
        return;
    }
    reply_json_take(s, c->req, 200, strdup("{\"ok\":true}"));
}

/* ---- routing --------------------------------------------------------------------------------- */

static const char *verb_of(enum evhttp_cmd_type m, int has_name, int watch)
{
    switch (m) {
    case EVHTTP_REQ_GET: return watch ? "watch" : has_name ? "get" : "list";
    case EVHTTP_REQ_POST: return "create";
    case EVHTTP_REQ_PUT: return "update";
    case EVHTTP_REQ_PATCH: return "patch";
    case EVHTTP_REQ_DELETE: return has_name ? "delete" : "deletecollection";
    default: return "unknown";
    }
}

/* Returns 1 if a fault answered the request. */
static int http_fault(reqctx_t *c)
{
    fa_server_t *s = c->s;
    kc_fakeapi_faults_t *f = &s->faults;
    double x;
    if (f->max_http_faults > 0 && s->http_faults_done >= f->max_http_faults)
        return 0;
    if (f->p_429 <= 0 && f->p_500 <= 0 && f->p_503 <= 0)
        return 0;
    x = fa_rand01(&s->rng);
    int ra = f->retry_after_s > 0 ? f->retry_after_s : 1;
    char ras[16];
    snprintf(ras, sizeof(ras), "%d", ra);
    if (x < f->p_429) {
        s->http_faults_done++;
        s->cnt.faults++;
        struct evkeyvalq *h = evhttp_request_get_output_headers(c->req);
        evhttp_add_header(h, "Retry-After", ras);
        evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
        reply_text(s, c->req, 429, "text/plain; charset=utf-8",
                   "Too many requests, please try again later.\n");
        return 1;
    }
    x -= f->p_429;
    if (x < f->p_500) {
        s->http_faults_done++;
        s->cnt.faults++;
        reply_err(s, c->req, 500, "InternalError", "Internal error occurred: injected fault");
        return 1;
    }
    x -= f->p_500;
    if (x < f->p_503) {
        fa_status_t st;
        s->http_faults_done++;
        s->cnt.faults++;
        fa_status_set(&st, 503, "ServiceUnavailable", "the server is currently unable to handle the request");
        st.retry_after = ra;
        reply_status(s, c->req, &st);
        return 1;
    }
    return 0;
}

static void route_resource(reqctx_t *c, char **seg, int nseg)
{
    /* seg: api v1 ... | apis G V ... */
    fa_server_t *s = c->s;
    const char *group = "", *version;
    int i;
    if (!strcmp(seg[0], "api")) {
        version = seg[1];
        i = 2;
    } else {
        group = seg[1];
        version = nseg > 2 ? seg[2] : "";
        i = 3;
    }
    const char *ns = NULL, *name = NULL, *sub = NULL;
    const fa_res_t *r = NULL;
    if (nseg - i >= 3 && !strcmp(seg[i], "namespaces")) {
        const fa_res_t *cand = fa_res_find(group, version, seg[i + 2]);
        if (cand && cand->namespaced) {
            ns = seg[i + 1];
            r = cand;
            i += 3;
        }
    }
    if (!r) {
        if (nseg - i < 1) {
            reply_err(s, c->req, 404, "NotFound", "the server could not find the requested resource");
            return;
        }
        r = fa_res_find(group, version, seg[i]);
        if (!r || (r->namespaced && nseg - i > 1)) {
            /* a namespaced resource addressed without namespace has no name */
            if (!r) {
                reply_err(s, c->req, 404, "NotFound", "the server could not find the requested resource");
                return;
            }
        }
        i++;
    }
    if (nseg - i >= 1)
        name = seg[i++];
    if (nseg - i >= 1)
        sub = seg[i++];
    if (nseg - i > 0 || (sub && strcmp(sub, "status")) || (sub && !r->has_status) ||
        (r->namespaced && !ns && name)) {
        reply_err(s, c->req, 404, "NotFound", "the server could not find the requested resource");
        return;
    }
    enum evhttp_cmd_type m = evhttp_request_get_command(c->req);
    int watch = m == EVHTTP_REQ_GET && !name && fa_query_bool(qget(c, "watch"));
    const char *verb = verb_of(m, name != NULL, watch);
    char resname[96];
    snprintf(resname, sizeof(resname), "%s%s", r->plural, sub ? "/status" : "");
    if (!allowed(s, c->user, verb, resname)) {
        fa_status_t st;
        char scope[300];
        if (ns)
            snprintf(scope, sizeof(scope), "in the namespace \"%s\"", ns);
        else
            snprintf(scope, sizeof(scope), "at the cluster scope");
        if (name)
            fa_status_set(&st, 403, "Forbidden",
                          "%s \"%s\" is forbidden: User \"%s\" cannot %s resource \"%s\" in API group \"%s\" %s",
                          r->qualified, name, c->user, verb, resname, r->group, scope);
        else
            fa_status_set(&st, 403, "Forbidden",
                          "%s is forbidden: User \"%s\" cannot %s resource \"%s\" in API group \"%s\" %s",
                          r->qualified, c->user, verb, resname, r->group, scope);
        snprintf(st.name, sizeof(st.name), "%s", name ? name : "");
        st.group = r->group;
        st.kind = r->plural;
        reply_status(s, c->req, &st);
        return;
    }
    if (http_fault(c))
        return;
    switch (m) {
    case EVHTTP_REQ_GET:
        if (!name) {
            if (watch) {
                s->cnt.watch++;
                fa_watch_start(s, c->req, r, ns, &c->q);
            } else {
                do_list(c, r, ns);
            }
            return;
        }
        {
            fa_obj_t *o = fa_store_get(&s->store, r, ns, name);
            s->cnt.get++;
            if (!o) {
                fa_status_t st;
                fa_status_set(&st, 404, "NotFound", "%s \"%s\" not found", r->qualified, name);
                snprintf(st.name, sizeof(st.name), "%s", name);
                st.group = r->group;
                st.kind = r->plural;
                reply_status(s, c->req, &st);
            } else if (fa_wants_table(evhttp_find_header(evhttp_request_get_input_headers(c->req), "Accept"))) {
                char rvs[32];
                snprintf(rvs, sizeof(rvs), "%" PRIu64, o->rv);
                reply_json_take(s, c->req, 200, fa_table_json(r, &o, 1, rvs, NULL, -1));
            } else {
                reply_obj(s, c->req, 200, o);
            }
        }
        return;
    case EVHTTP_REQ_POST:
        if (name) {
            reply_err(s, c->req, 405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
            return;
        }
        do_create(c, r, ns);
        return;
    case EVHTTP_REQ_PUT:
        if (!name) {
            reply_err(s, c->req, 405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
            return;
        }
        do_update(c, r, ns, name, sub != NULL);
        return;
    case EVHTTP_REQ_PATCH:
        if (!name) {
            reply_err(s, c->req, 405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
            return;
        }
        do_patch(c, r, ns, name, sub != NULL);
        return;
    case EVHTTP_REQ_DELETE:
        if (name)
            do_delete(c, r, ns, name);
        else
            do_delete_collection(c, r, ns);
        return;
    default:
        reply_err(s, c->req, 405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
    }
}

static int wants_aggregated(struct evhttp_request *req)
{
    const char *a = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept");
    return a && strstr(a, "as=APIGroupDiscoveryList") && strstr(a, "v=v2");
}

static void handle(reqctx_t *c)
{
    fa_server_t *s = c->s;
    char *seg[16];
    int nseg = 0, bad = 0;
    char *p = c->path;
    enum evhttp_cmd_type m = evhttp_request_get_command(c->req);

    while (*p == '/')
        p++;
    while (*p && nseg < 16) {
        seg[nseg++] = p;
        char *sl = strchr(p, '/');
        if (!sl)
            break;
        *sl = 0;
        p = sl + 1;
        while (*p == '/')
            p++;
    }
    if (nseg == 1 && (!strcmp(seg[0], "healthz") || !strcmp(seg[0], "livez") || !strcmp(seg[0], "readyz"))) {
        reply_text(s, c->req, 200, "text/plain; charset=utf-8", "ok");
        return;
    }
    c->user = authenticate(s, c->req, c->cn, sizeof(c->cn), &bad);
    if (!c->user && (bad || !(nseg == 1 && !strcmp(seg[0], "version")))) {
        reply_err(s, c->req, 401, "Unauthorized", "Unauthorized");
        return;
    }
    /* protobuf/CBOR bodies: a clear 415 rather than garbage */
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(c->req), "Content-Type");
    if (ct && (strstr(ct, "protobuf") || strstr(ct, "cbor"))) {
        reply_415(c);
        return;
    }
    if (nseg == 1 && !strcmp(seg[0], "version")) {
        reply_text(s, c->req, 200, "application/json", VERSION_JSON);
        return;
    }
    if (nseg >= 2 && !strcmp(seg[0], "fakeapi") && !strcmp(seg[1], "admin")) {
        if (strcmp(c->user, "admin")) {
            reply_err(s, c->req, 403, "Forbidden", "the admin endpoint needs the admin token");
            return;
        }
        do_admin(c, nseg >= 3 ? seg[2] : "");
        return;
    }
    if (m == EVHTTP_REQ_GET && nseg == 1 && (!strcmp(seg[0], "api") || !strcmp(seg[0], "apis"))) {
        int core = !strcmp(seg[0], "api");
        if (wants_aggregated(c->req)) {
            char *t = aggregated(core);
            reply_text(s, c->req, 200, "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
                       t ? t : "{}");
            free(t);
        } else if (core) {
            reply_text(s, c->req, 200, "application/json",
                       "{\"kind\":\"APIVersions\",\"versions\":[\"v1\"],\"serverAddressByClientCIDRs\":"
                       "[{\"clientCIDR\":\"0.0.0.0/0\",\"serverAddress\":\"127.0.0.1:6443\"}]}");
        } else {
            reply_json_take(s, c->req, 200, group_list());
        }
        return;
    }
    if (m == EVHTTP_REQ_GET && ((nseg == 2 && !strcmp(seg[0], "api") && !strcmp(seg[1], "v1")) ||
                                (nseg == 3 && !strcmp(seg[0], "apis") && group_known(seg[1]) &&
                                 !strcmp(seg[2], "v1")))) {
        reply_json_take(s, c->req, 200, resource_list(nseg == 2 ? "" : seg[1]));
        return;
    }
    if (m == EVHTTP_REQ_GET && nseg == 2 && !strcmp(seg[0], "apis") && group_known(seg[1]) && seg[1][0]) {
        char buf[512];
        snprintf(buf, sizeof(buf),
                 "{\"kind\":\"APIGroup\",\"apiVersion\":\"v1\",\"name\":\"%s\",\"versions\":[{\"groupVersion\":\"%s/v1\",\"version\":\"v1\"}],"
                 "\"preferredVersion\":{\"groupVersion\":\"%s/v1\",\"version\":\"v1\"}}",
                 seg[1], seg[1], seg[1]);
        reply_text(s, c->req, 200, "application/json", buf);
        return;
    }
    if (m == EVHTTP_REQ_GET && nseg >= 2 && !strcmp(seg[0], "openapi") && !strcmp(seg[1], "v3")) {
        if (nseg == 2) {
            reply_json_take(s, c->req, 200, openapi_index());
            return;
        }
        if (nseg == 4 && !strcmp(seg[2], "api") && !strcmp(seg[3], "v1")) {
            reply_json_take(s, c->req, 200, openapi_group(""));
            return;
        }
        if (nseg == 5 && !strcmp(seg[2], "apis") && group_known(seg[3]) && !strcmp(seg[4], "v1")) {
            reply_json_take(s, c->req, 200, openapi_group(seg[3]));
            return;
        }
    }
    if ((nseg >= 3 && !strcmp(seg[0], "api") && !strcmp(seg[1], "v1")) ||
        (nseg >= 4 && !strcmp(seg[0], "apis") && !strcmp(seg[2], "v1") && group_known(seg[1]) && seg[1][0])) {
        route_resource(c, seg, nseg);
        return;
    }
    reply_err(s, c->req, 404, "NotFound", "the server could not find the requested resource");
}

static void ctx_free(reqctx_t *c)
{
    if (c->ev) {
        fa_server_t *s = c->s;
        if (c->prev)
            c->prev->next = c->next;
        else
            s->delayed = c->next;
        if (c->next)
            c->next->prev = c->prev;
        event_free(c->ev);
    }
    evhttp_clear_headers(&c->q);
    free(c->path);
    free(c);
}

static void delayed_cb(evutil_socket_t fd, short what, void *arg)
{
    reqctx_t *c = arg;
    (void)fd;
    (void)what;
    if (!evhttp_request_get_connection(c->req)) {
        /* the client went away while we waited: release the request */
        evhttp_send_reply(c->req, 500, "Gone", NULL);
        ctx_free(c);
        return;
    }
    handle(c);
    ctx_free(c);
}

/* Forget delayed requests; evhttp_free then frees them with their
 * connections. */
static void drop_delayed(fa_server_t *s)
{
    while (s->delayed)
        ctx_free(s->delayed);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    fa_server_t *s = arg;
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
    const char *path = u ? evhttp_uri_get_path(u) : NULL, *query = u ? evhttp_uri_get_query(u) : NULL;
    reqctx_t *c = calloc(1, sizeof(*c));

    s->cnt.requests++;
    if (!c) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    c->s = s;
    c->req = req;
    TAILQ_INIT(&c->q);
    c->path = evhttp_uridecode(path ? path : "/", 0, NULL);
    if (!c->path || (query && evhttp_parse_query_str(query, &c->q) < 0)) {
        reply_err(s, req, 400, "BadRequest", "malformed URL");
        ctx_free(c);
        return;
    }
    int resource = !strncmp(c->path, "/api/", 5) || !strncmp(c->path, "/apis/", 6);
    if (resource && s->faults.p_delay > 0 && s->faults.delay_ms > 0 &&
        fa_rand01(&s->rng) < s->faults.p_delay) {
        struct timeval tv = {s->faults.delay_ms / 1000, (s->faults.delay_ms % 1000) * 1000};
        s->cnt.faults++;
        c->ev = evtimer_new(s->base, delayed_cb, c);
        if (c->ev && event_add(c->ev, &tv) == 0) {
            c->next = s->delayed;
            if (c->next)
                c->next->prev = c;
            s->delayed = c;
            return;
        }
        if (c->ev)
            event_free(c->ev);
        c->ev = NULL;
    }
    handle(c);
    ctx_free(c);
}

/* ---- server lifecycle --------------------------------------------------------------------------- */

static struct bufferevent *bevcb(struct event_base *base, void *arg)
{
    fa_server_t *s = arg;
    SSL *ssl = SSL_new(s->ssl);
    struct bufferevent *bev;
    if (!ssl)
        return NULL;
    bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (bev)
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    s->cnt.connections++;
    return bev;
}

static int http_setup(fa_server_t *s, int port)
{
    s->http = evhttp_new(s->base);
    if (!s->http)
        return -ENOMEM;
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_OPTIONS);
    evhttp_set_max_body_size(s->http, (ev_ssize_t)s->o.max_body);
    evhttp_set_max_headers_size(s->http, 64 * 1024);
    evhttp_set_timeout(s->http, 120);
    evhttp_set_bevcb(s->http, bevcb, s);
    evhttp_set_gencb(s->http, on_request, s);
    s->bound = evhttp_bind_socket_with_handle(s->http, s->listen_host, (ev_uint16_t)port);
    if (!s->bound) {
        evhttp_free(s->http);
        s->http = NULL;
        return -EADDRINUSE;
    }
    {
        /* Accepted sockets inherit TCP_NODELAY from the listener on Linux.
         * Without it a response written as two TLS records waits for the
         * client's delayed ACK: ~40 ms per request on keep-alive. */
        int one = 1;
        evutil_socket_t fd = evhttp_bound_socket_get_fd(s->bound);
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
            kc_log(&s->o.log, KC_LOG_WARN, FA_COMP, "TCP_NODELAY: %s", strerror(errno));
    }
    return 0;
}

int fa_http_start(fa_server_t *s)
{
    int rc = http_setup(s, s->port ? s->port : s->listen_port);
    if (rc)
        return rc;
    if (!s->port) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        evutil_socket_t fd = evhttp_bound_socket_get_fd(s->bound);
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
            if (ss.ss_family == AF_INET)
                s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
            else
                s->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        }
        snprintf(s->url, sizeof(s->url), "https://%s%s%s:%d", strchr(s->listen_host, ':') ? "[" : "",
                 s->listen_host, strchr(s->listen_host, ':') ? "]" : "", s->port);
    }
    return 0;
}

void fa_http_stop(fa_server_t *s)
{
    fa_watch_close_all(s, 1);
    drop_delayed(s);
    if (s->http)
        evhttp_free(s->http);
    s->http = NULL;
    s->bound = NULL;
}

void fa_http_restart(fa_server_t *s)
{
    fa_http_stop(s);
    if (http_setup(s, s->port) < 0)
        kc_log(&s->o.log, KC_LOG_ERROR, FA_COMP, "restart: cannot listen again on port %d", s->port);
}

void fa_http_restart_cb(evutil_socket_t fd, short what, void *arg)
{
    fa_server_t *s = arg;
    (void)fd;
    (void)what;
    if (s->running && s->http)
        fa_http_restart(s);
}
