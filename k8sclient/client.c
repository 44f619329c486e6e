/*
 * The HTTPS transport and REST verbs: one kc_client_t shared by all
 * threads of a program.
 *
 * The hub: each client starts one transport thread that owns one curl multi
 * handle (CURLMOPT_PIPELINING = CURLPIPE_MULTIPLEX) and drives every
 * transfer of every thread.  Over HTTP/2 concurrent requests and watches
 * are streams of one connection; over HTTP/1.1 each concurrent transfer
 * gets its own connection (no per-host cap: a watch never waits for
 * another); idle connections stay in the multi handle's cache and are
 * reused.  DNS results and TLS sessions go through a CURLSH.
 *
 * A request (attempt()) prepares its own easy handle on the calling
 * thread, queues it to the hub (WANT_ADD on the attention list under
 * hub_mu, then curl_multi_wakeup) and sleeps on its transfer's condition
 * variable.  The hub's write callback copies the bytes into a queue of
 * chunks on the transfer (under the transfer's mu) and wakes the caller,
 * which takes the whole queue and feeds it, on its own thread, to the
 * watch decoder or the body buffer: TLS decryption runs on the hub,
 * framing and JSON parsing on the caller, in parallel.  A queue holding
 * QUEUE_MAX bytes makes the write callback pause that transfer
 * (CURL_WRITEFUNC_PAUSE); the caller, once it has drained it, asks the hub
 * to resume it (WANT_RESUME), so memory stays bounded and a slow watch
 * stalls only itself (HTTP/2 flow control is per stream).  The caller
 * wakes every 100 ms to look at its cancel flag and the watch idle guard;
 * giving up (cancel, idle, a sink error, the watch callback's stop) is
 * WANT_ABORT, after which the hub removes the handle (an h2 stream is
 * reset, the connection stays).  An error answer's body is always kept
 * (its first 64 KiB) so that its Status is decoded whether or not the
 * caller asked for the body.
 *
 * Which thread touches which curl handle: the multi handle only the hub
 * (curl_multi_wakeup excepted, which curl allows from any thread); an easy
 * handle its caller while preparing it and after the hub has set done, the
 * hub in between; a transfer's xfer_t likewise, apart from the fields
 * under its mu and hub_mu.  The hub never touches a transfer after setting
 * done.  kc_client_free sets stopping: new requests fail with KC_ESTOPPED,
 * the hub fails every transfer in flight, free waits until no caller is
 * inside the client (nactive) and joins the hub.
 *
 * Credentials: a static token, a token file (re-read whenever its identity
 * (inode, size, mtime) changes, and after a 401), basic auth, client
 * certificates from memory, or an exec plugin (kept until it expires, run
 * again after a 401).  The current credential lives under auth_mu; a
 * request copies what it needs under the lock and never holds it while
 * reading files, running the plugin or talking to the server.  One thread
 * at a time refreshes (auth_refreshing + auth_cv); the others wait for its
 * result.
 *
 * Rate limit: a token bucket under rl_mu; a request reserves a token and
 * sleeps, without the lock, until it is due.
 *
 * Retries: 429 (any verb, waiting Retry-After when given), 5xx and dropped
 * connections for idempotent verbs (GET, PUT, DELETE), connection refused
 * for any verb (nothing was sent), each after exponential backoff with full
 * jitter, at most max_retries times.  A 401 refreshes a refreshable
 * credential and tries once more.
 *
 * Locks: hub_mu, each transfer's mu, rl_mu, auth_mu, disc_mu and the share
 * locks are leaves: none is taken while another is held, and none is held
 * across a curl call, a callback, JSON parsing or logging (the hub's write
 * callback takes a transfer's mu only to copy bytes into its queue).  Tokens and keys never reach
 * the logger or a status message.
 */
#include "client_int.h"
#include "kc_json.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define POLL_SLICE_MS 100
#define MAX_IDLE_EASY 64
#define QUEUE_MAX (1u << 20)
#define CHUNK_SIZE (64u << 10)
#define SPARE_MAX 4            /* drained chunks a busy transfer keeps for reuse */
#define MAX_ERROR_BODY (64u << 10)
#define EXEC_TIMEOUT_MS 60000
#define EXEC_EXPIRY_LEEWAY_S 5.0

const kc_resource_t kc_res_configmaps = {"", "v1", "configmaps", "ConfigMap", 1};
const kc_resource_t kc_res_secrets = {"", "v1", "secrets", "Secret", 1};
const kc_resource_t kc_res_namespaces = {"", "v1", "namespaces", "Namespace", 0};
const kc_resource_t kc_res_pods = {"", "v1", "pods", "Pod", 1};
const kc_resource_t kc_res_services = {"", "v1", "services", "Service", 1};
const kc_resource_t kc_res_events = {"", "v1", "events", "Event", 1};
const kc_resource_t kc_res_leases = {"coordination.k8s.io", "v1", "leases", "Lease", 1};
const kc_resource_t kc_res_deployments = {"apps", "v1", "deployments", "Deployment", 1};

typedef struct xfer xfer_t;

typedef struct disc_entry {
    char *api_version;
    char *kind;
    char *group;
    char *version;
    char *resource;
    kc_resource_t res;
    struct disc_entry *next;
} disc_entry_t;

typedef struct token_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    int valid;
} token_id_t;

struct kc_client {
    kc_config_t *cfg;
    kc_client_opts_t o;        /* user_agent/field_manager point into owned copies */
    char *user_agent;
    char *field_manager;
    char *base;                /* URL prefix requests use (host may be tls-server-name) */
    char *host;                /* host[:port] for metrics */
    struct curl_slist *connect_to;

    CURLSH *share;
    pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];

    /* The transport hub: one thread drives every transfer through one
     * multi handle (see the comment at the top). */
    CURLM *multi;              /* the hub thread's, except curl_multi_wakeup */
    pthread_t hub;
    int hub_started;
    xfer_t *active;            /* hub thread only: transfers in the multi handle */
    uint64_t hub_bytes;        /* hub thread only: bytes received, to know when to poll */
    _Atomic int stop_flag;     /* set with stopping, read without the lock by sleeps */
    pthread_mutex_t hub_mu;
    pthread_cond_t hub_cv;     /* signalled when nactive drops to 0 while stopping */
    xfer_t *attn_head;         /* protected by hub_mu: transfers the hub must act on */
    xfer_t *attn_tail;         /* protected by hub_mu */
    int stopping;              /* protected by hub_mu: kc_client_free has begun */
    size_t nactive;            /* protected by hub_mu: requests inside perform() */
    CURL *idle_easy[MAX_IDLE_EASY]; /* protected by hub_mu: reset before reuse */
    size_t nidle_easy;         /* protected by hub_mu */

    pthread_mutex_t rl_mu;
    double rl_tokens;          /* protected by rl_mu */
    uint64_t rl_last_ns;       /* protected by rl_mu */

    pthread_mutex_t auth_mu;
    pthread_cond_t auth_cv;
    int auth_refreshing;       /* protected by auth_mu */
    uint64_t auth_gen;         /* protected by auth_mu: bumped on every new credential */
    char *file_token;          /* protected by auth_mu */
    token_id_t file_id;        /* protected by auth_mu */
    kc__exec_cred_t exec_cred; /* protected by auth_mu */
    int exec_valid;            /* protected by auth_mu */

    pthread_mutex_t disc_mu;
    disc_entry_t *disc;        /* protected by disc_mu; entries immutable, freed with the client */

    _Atomic uint64_t rng;
};

/* ------------------------------------------------------------------ */
/* small things                                                         */

void kc_buf_free(kc_buf_t *b)
{
    size_t max;

    if (b == NULL)
        return;
    max = b->max;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->max = max;
}

void kc_cancel_set(kc_cancel_t *c)
{
    atomic_store(&c->flag, 1);
}

void kc_cancel_reset(kc_cancel_t *c)
{
    atomic_store(&c->flag, 0);
}

int kc_cancel_is_set(const kc_cancel_t *c)
{
    return c != NULL && atomic_load(&((kc_cancel_t *)c)->flag) != 0;
}

static void lock(pthread_mutex_t *m)
{
    if (pthread_mutex_lock(m) != 0)
        abort();
}

static void unlock(pthread_mutex_t *m)
{
    if (pthread_mutex_unlock(m) != 0)
        abort();
}

static int mutex_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    int rc;

    pthread_mutexattr_init(&a);
#ifndef NDEBUG
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
#endif
    rc = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return -rc;
}

static double rand01(kc_client_t *c)
{
    uint64_t x = atomic_fetch_add(&c->rng, 0x9e3779b97f4a7c15ull);

    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return (double)(x >> 11) / 9007199254740992.0;
}

/* Sleep ms, waking early (returning KC_ESTOPPED) when cancel is set or the
 * client is being freed. */
static int sleep_ms(kc_client_t *c, double ms, kc_cancel_t *cancel)
{
    uint64_t end = kc_now_ns() + (uint64_t)(ms * 1e6);

    for (;;) {
        uint64_t now = kc_now_ns();
        struct timespec ts;
        uint64_t left;
        if (kc_cancel_is_set(cancel) || atomic_load(&c->stop_flag))
            return KC_ESTOPPED;
        if (now >= end)
            return 0;
        left = end - now;
        if (left > 50000000ull)
            left = 50000000ull;
        ts.tv_sec = (time_t)(left / 1000000000ull);
        ts.tv_nsec = (long)(left % 1000000000ull);
        nanosleep(&ts, NULL);
    }
}

static int cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    int rc;

    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    rc = pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
    return -rc;
}

const char *kc_client_server(const kc_client_t *c)
{
    return c->cfg->server;
}

const char *kc_client_namespace(const kc_client_t *c)
{
    return kc_config_namespace(c->cfg);
}

/* ------------------------------------------------------------------ */
/* status                                                               */

void kc_status_clear(kc_status_t *st)
{
    if (st)
        memset(st, 0, sizeof(*st));
}

static const char *reason_for_code(int code)
{
    switch (code) {
    case 400: return "BadRequest";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "NotFound";
    case 405: return "MethodNotAllowed";
    case 406: return "NotAcceptable";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "RequestEntityTooLarge";
    case 415: return "UnsupportedMediaType";
    case 422: return "Invalid";
    case 429: return "TooManyRequests";
    case 500: return "InternalError";
    case 503: return "ServiceUnavailable";
    case 504: return "Timeout";
    default:
        return "Unknown";
    }
}

static int err_for(int code, const char *reason)
{
    switch (code) {
    case 400: return KC_EBADREQUEST;
    case 401: return KC_EUNAUTHORIZED;
    case 403: return KC_EFORBIDDEN;
    case 404: return KC_ENOTFOUND;
    case 409: return reason && strcmp(reason, "AlreadyExists") == 0 ? KC_EEXISTS : KC_ECONFLICT;
    case 410: return KC_EGONE;
    case 422: return KC_EINVALID;
    case 429: return KC_ETOOMANY;
    default:
        if (code >= 500 && code < 600)
            return KC_ESERVER;
        if (code >= 200 && code < 300)
            return 0;
        return KC_EHTTP;
    }
}

static const char *jstr(const cJSON *o, const char *k)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

int kc_status_from_json(const char *json, size_t len, kc_status_t *st)
{
    cJSON *root = cJSON_ParseWithLength(json, len), *v, *d;
    const char *s;
    int code = 0, rc;
    kc_status_t tmp;

    if (st == NULL)
        st = &tmp;
    if (root == NULL || !cJSON_IsObject(root) || (s = jstr(root, "kind")) == NULL ||
        strcmp(s, "Status") != 0) {
        cJSON_Delete(root);
        return KC_EPARSE;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "code");
    if (cJSON_IsNumber(v))
        code = v->valueint;
    st->http_code = code ? code : st->http_code;
    if ((s = jstr(root, "reason")) != NULL && s[0])
        kc__strlcpy(st->reason, s, sizeof(st->reason));
    else if (st->http_code)
        kc__strlcpy(st->reason, reason_for_code(st->http_code), sizeof(st->reason));
    if ((s = jstr(root, "message")) != NULL)
        kc__strlcpy(st->message, s, sizeof(st->message));
    v = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    if ((s = jstr(v, "continue")) != NULL)
        kc__strlcpy(st->continue_token, s, sizeof(st->continue_token));
    d = cJSON_GetObjectItemCaseSensitive(root, "details");
    if (cJSON_IsObject(d)) {
        const cJSON *causes = cJSON_GetObjectItemCaseSensitive(d, "causes");
        const cJSON *c0 = cJSON_IsArray(causes) ? cJSON_GetArrayItem(causes, 0) : NULL;
        v = cJSON_GetObjectItemCaseSensitive(d, "retryAfterSeconds");
        if (cJSON_IsNumber(v) && v->valuedouble > 0 && st->retry_after_s <= 0)
            st->retry_after_s = v->valuedouble;
        snprintf(st->detail, sizeof(st->detail), "%s%s%s%s%s%s%s%s%s%s",
                 jstr(d, "kind") ? "kind=" : "", jstr(d, "kind") ? jstr(d, "kind") : "",
                 jstr(d, "group") && jstr(d, "group")[0] ? " group=" : "",
                 jstr(d, "group") ? jstr(d, "group") : "",
                 jstr(d, "name") ? " name=" : "", jstr(d, "name") ? jstr(d, "name") : "",
                 c0 && jstr(c0, "field") ? " field=" : "",
                 c0 && jstr(c0, "field") ? jstr(c0, "field") : "",
                 c0 && jstr(c0, "message") ? " cause: " : "",
                 c0 && jstr(c0, "message") ? jstr(c0, "message") : "");
    }
    s = jstr(root, "status");
    if (s && strcmp(s, "Success") == 0 && (code == 0 || (code >= 200 && code < 300)))
        rc = 0;
    else
        rc = err_for(st->http_code, st->reason);
    if (rc == 0 && s && strcmp(s, "Failure") == 0)
        rc = KC_EHTTP;
    st->err = rc;
    cJSON_Delete(root);
    return rc;
}

/* A non-2xx answer whose body is not a Status: say what it was. */
static void status_from_text(kc_status_t *st, const char *body, size_t len)
{
    char text[200];
    size_t n = 0;
    const char *title;

    kc__strlcpy(st->reason, reason_for_code(st->http_code), sizeof(st->reason));
    if (len == 0) {
        snprintf(st->message, sizeof(st->message), "HTTP %d (%s), empty body", st->http_code,
                 st->reason);
        return;
    }
    if (memmem(body, len, "<html", 5) || memmem(body, len, "<HTML", 5) ||
        memmem(body, len, "<!DOCTYPE", 9)) {
        title = memmem(body, len, "<title>", 7);
        if (title) {
            title += 7;
            while (n < sizeof(text) - 1 && title + n < body + len && title[n] != '<')
                n++;
            memcpy(text, title, n);
        }
        text[n] = '\0';
        snprintf(st->message, sizeof(st->message),
                 "HTTP %d (%s): HTML page instead of a Kubernetes Status%s%s (a proxy?)",
                 st->http_code, st->reason, n ? ": " : "", text);
        return;
    }
    for (size_t i = 0; i < len && n < sizeof(text) - 1; i++) {
        unsigned char ch = (unsigned char)body[i];
        if (ch == '\n' || ch == '\r') {
            if (n)
                break;
            continue;
        }
        text[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    text[n] = '\0';
    snprintf(st->message, sizeof(st->message), "HTTP %d (%s): %s", st->http_code, st->reason,
             text);
}

static int status_is(const kc_status_t *st, int err)
{
    return st != NULL && st->err == err;
}

int kc_status_is_not_found(const kc_status_t *st) { return status_is(st, KC_ENOTFOUND); }
int kc_status_is_already_exists(const kc_status_t *st) { return status_is(st, KC_EEXISTS); }
int kc_status_is_conflict(const kc_status_t *st) { return status_is(st, KC_ECONFLICT); }
int kc_status_is_gone(const kc_status_t *st)
{
    return st != NULL && (st->err == KC_EGONE || st->http_code == 410 ||
                          strcmp(st->reason, "Expired") == 0 || strcmp(st->reason, "Gone") == 0);
}
int kc_status_is_unauthorized(const kc_status_t *st) { return status_is(st, KC_EUNAUTHORIZED); }
int kc_status_is_forbidden(const kc_status_t *st) { return status_is(st, KC_EFORBIDDEN); }
int kc_status_is_invalid(const kc_status_t *st) { return status_is(st, KC_EINVALID); }
int kc_status_is_too_many(const kc_status_t *st) { return status_is(st, KC_ETOOMANY); }
int kc_status_is_server_error(const kc_status_t *st) { return status_is(st, KC_ESERVER); }
int kc_status_is_retryable(const kc_status_t *st)
{
    return st != NULL && (st->err == KC_ETOOMANY || st->err == KC_ESERVER ||
                          st->err == KC_ECONNECT || st->err == KC_ETIMEOUT ||
                          st->err == KC_ECLOSED);
}

/* ------------------------------------------------------------------ */
/* curl share locks                                                     */

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access acc, void *ud)
{
    kc_client_t *c = ud;

    (void)h;
    (void)acc;
    lock(&c->share_mu[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ud)
{
    kc_client_t *c = ud;

    (void)h;
    unlock(&c->share_mu[data]);
}

/* ------------------------------------------------------------------ */
/* credentials                                                          */

typedef struct cred {
    char *bearer;
    kc__blob_t cert;
    kc__blob_t key;
    uint64_t gen;
} cred_t;

static void cred_free(cred_t *cr)
{
    kc__str_wipe(&cr->bearer);
    kc__blob_free(&cr->cert);
    kc__blob_wipe(&cr->key);
}

static int blob_copy(kc__blob_t *dst, const kc__blob_t *src)
{
    if (src->data == NULL)
        return 0;
    dst->data = malloc(src->len + 1);
    if (dst->data == NULL)
        return -ENOMEM;
    memcpy(dst->data, src->data, src->len);
    dst->data[src->len] = '\0';
    dst->len = src->len;
    return 0;
}

static int token_id_of(const char *path, token_id_t *id)
{
    struct stat s;

    if (stat(path, &s) != 0)
        return -errno;
    id->dev = s.st_dev;
    id->ino = s.st_ino;
    id->size = s.st_size;
    id->mtime = s.st_mtim;
    id->valid = 1;
    return 0;
}

static int token_id_eq(const token_id_t *a, const token_id_t *b)
{
    return a->valid && b->valid && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* Read the token file (no lock held).  Trimmed; empty is an error. */
static int read_token_file(kc_client_t *c, char **out, token_id_t *id, kc_errbuf_t *eb)
{
    kc__blob_t b = {0};
    size_t s = 0, e;
    int rc;

    token_id_of(c->cfg->token_file, id);
    rc = kc__read_file(c->cfg->token_file, 1u << 20, &b);
    if (rc)
        return kc_errf(eb, KC_ECONFIG, "token file %s: %s", c->cfg->token_file, kc_strerror(rc));
    e = b.len;
    while (s < e && (b.data[s] == ' ' || b.data[s] == '\n' || b.data[s] == '\r' || b.data[s] == '\t'))
        s++;
    while (e > s && (b.data[e - 1] == ' ' || b.data[e - 1] == '\n' || b.data[e - 1] == '\r' ||
                     b.data[e - 1] == '\t'))
        e--;
    if (e == s) {
        kc__blob_wipe(&b);
        return kc_errf(eb, KC_ECONFIG, "token file %s is empty", c->cfg->token_file);
    }
    *out = strndup(b.data + s, e - s);
    kc__blob_wipe(&b);
    return *out ? 0 : kc_errf(eb, -ENOMEM, "out of memory");
}

/* Wait until no other thread refreshes, then claim the refresh (auth_mu
 * held on entry and exit). */
static void refresh_claim(kc_client_t *c)
{
    while (c->auth_refreshing)
        pthread_cond_wait(&c->auth_cv, &c->auth_mu);
    c->auth_refreshing = 1;
}

static void refresh_release(kc_client_t *c)
{
    c->auth_refreshing = 0;
    pthread_cond_broadcast(&c->auth_cv);
}

/* Copy the credential a request should use into *out. */
static int cred_get(kc_client_t *c, cred_t *out, kc_errbuf_t *eb)
{
    const kc_config_t *cfg = c->cfg;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (cfg->exec) {
        kc__exec_cred_t fresh;
        double now = kc_wall_time();
        uint64_t gen0;
        int usable = 0;

        lock(&c->auth_mu);
        gen0 = c->auth_gen;
        for (;;) {
            /* good for a while yet; or brand new from the refresh we
             * waited for (short-lived credentials would otherwise make
             * every waiter run the plugin again) and not yet expired */
            usable = c->exec_valid &&
                     (c->exec_cred.expires == 0 ||
                      now < c->exec_cred.expires - EXEC_EXPIRY_LEEWAY_S ||
                      (c->auth_gen != gen0 && now < c->exec_cred.expires));
            if (usable || !c->auth_refreshing)
                break;
            pthread_cond_wait(&c->auth_cv, &c->auth_mu);
            now = kc_wall_time();
        }
        if (!usable) {
            refresh_claim(c);
            unlock(&c->auth_mu);
            kc_log(&c->o.log, KC_LOG_DEBUG, KC__COMPONENT, "running exec plugin %s",
                   cfg->exec->command);
            rc = kc__exec_run(cfg, EXEC_TIMEOUT_MS, &fresh, eb);
            lock(&c->auth_mu);
            if (rc == 0) {
                kc__exec_cred_free(&c->exec_cred);
                c->exec_cred = fresh;
                c->exec_valid = 1;
                c->auth_gen++;
            }
            refresh_release(c);
        }
        if (rc == 0) {
            out->gen = c->auth_gen;
            if (c->exec_cred.token && (out->bearer = strdup(c->exec_cred.token)) == NULL)
                rc = -ENOMEM;
            if (rc == 0 && (blob_copy(&out->cert, &c->exec_cred.cert) ||
                            blob_copy(&out->key, &c->exec_cred.key)))
                rc = -ENOMEM;
        }
        unlock(&c->auth_mu);
        if (rc == 0 && out->bearer == NULL && out->cert.data == NULL)
            rc = kc_errf(eb, KC_EAUTH, "exec plugin gave no credential");
        if (rc == -ENOMEM)
            kc_errf(eb, rc, "out of memory");
        if (rc)
            cred_free(out);
        return rc;
    }
    if (cfg->token_file) {
        token_id_t now_id = {0}, new_id = {0};
        char *tok = NULL;
        int need;

        token_id_of(cfg->token_file, &now_id);
        lock(&c->auth_mu);
        need = c->file_token == NULL || !token_id_eq(&now_id, &c->file_id);
        if (need && c->file_token == NULL && cfg->token && c->file_id.valid == 0 &&
            now_id.valid == 0)
            need = 0;   /* static token, token file unreadable: keep the static one */
        unlock(&c->auth_mu);
        if (need) {
            rc = read_token_file(c, &tok, &new_id, eb);
            if (rc) {
                int have_old;
                lock(&c->auth_mu);
                have_old = c->file_token != NULL;
                unlock(&c->auth_mu);
                if (!have_old && cfg->token == NULL)
                    return rc;
                /* mid-rotation or unreadable for a moment: keep the token
                 * we have; the next request (or a 401) tries again */
                kc_log(&c->o.log, KC_LOG_WARN, KC__COMPONENT, "%s; using the previous token",
                       eb ? eb->msg : "token file unreadable");
            }
            if (rc == 0) {
                lock(&c->auth_mu);
                if (c->file_token == NULL || strcmp(c->file_token, tok) != 0)
                    c->auth_gen++;
                kc__str_wipe(&c->file_token);
                c->file_token = tok;
                c->file_id = new_id;
                unlock(&c->auth_mu);
                kc_log(&c->o.log, KC_LOG_DEBUG, KC__COMPONENT, "read token file %s",
                       cfg->token_file);
            }
            rc = 0;
        }
        lock(&c->auth_mu);
        out->gen = c->auth_gen;
        if (c->file_token)
            out->bearer = strdup(c->file_token);
        else if (cfg->token)
            out->bearer = strdup(cfg->token);
        unlock(&c->auth_mu);
        if (out->bearer == NULL)
            return kc_errf(eb, -ENOMEM, "out of memory");
    } else if (cfg->token) {
        if ((out->bearer = strdup(cfg->token)) == NULL)
            return kc_errf(eb, -ENOMEM, "out of memory");
    }
    return 0;
}

/* After a 401: drop the credential used (gen) so the next request reads the
 * token file again / runs the plugin again.  Returns 1 if retrying can
 * help. */
static int cred_invalidate(kc_client_t *c, uint64_t gen)
{
    int refreshable = c->cfg->exec != NULL || c->cfg->token_file != NULL;

    if (!refreshable)
        return 0;
    lock(&c->auth_mu);
    if (c->auth_gen == gen) {
        c->exec_valid = 0;
        c->file_id.valid = 0;
        kc__str_wipe(&c->file_token);
    }
    unlock(&c->auth_mu);
    return 1;
}

/* ------------------------------------------------------------------ */
/* rate limiter                                                         */

static int rl_wait(kc_client_t *c, kc_cancel_t *cancel)
{
    double wait_s = 0;
    uint64_t now;

    if (c->o.qps <= 0)
        return 0;
    lock(&c->rl_mu);
    now = kc_now_ns();
    c->rl_tokens += (double)(now - c->rl_last_ns) / 1e9 * c->o.qps;
    if (c->rl_tokens > c->o.burst)
        c->rl_tokens = c->o.burst;
    c->rl_last_ns = now;
    if (c->rl_tokens < 1.0)
        wait_s = (1.0 - c->rl_tokens) / c->o.qps;
    c->rl_tokens -= 1.0;   /* reserve, even when it has to be waited for */
    unlock(&c->rl_mu);
    if (wait_s > 0)
        return sleep_ms(c, wait_s * 1000.0, cancel);
    return 0;
}

/* ------------------------------------------------------------------ */
/* the transport hub                                                    */

/* A chunk of response bytes on its way from the hub to the caller. */
typedef struct chunk {
    struct chunk *next;
    size_t len;
    size_t cap;
    char data[];
} chunk_t;

enum { WANT_ADD = 1, WANT_RESUME = 2, WANT_ABORT = 4 };

/* One HTTP attempt in flight.  Lives on the caller's stack; the hub
 * touches it from the moment it is queued with WANT_ADD until it sets done
 * (under mu), and never after. */
typedef struct xfer {
    kc_client_t *c;
    CURL *easy;                /* caller's until queued, the hub's until done */

    /* protected by c->hub_mu */
    struct xfer *next;         /* attention list */
    unsigned want;             /* WANT_* not yet acted on */
    int on_list;
    int finished;              /* the hub set done: refuse new wants */

    /* hub thread only */
    struct xfer *act_prev, *act_next;  /* transfers in the multi handle */
    int in_multi;
    long hub_code;
    double retry_after;        /* read by the caller once done */
    int is_json;               /* read by the caller once done */
    _Atomic uint64_t last_byte_ns;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    chunk_t *head;             /* protected by mu: bytes not yet taken by the caller */
    chunk_t *tail;             /* protected by mu */
    chunk_t *spare;            /* protected by mu: drained chunks kept for reuse */
    size_t nspare;             /* protected by mu: how many (at most SPARE_MAX) */
    size_t queued;             /* protected by mu: bytes in head..tail */
    long code;                 /* protected by mu: response code of the queued bytes */
    int paused;                /* protected by mu: the write callback returned PAUSE */
    int waiting;               /* protected by mu: the caller sleeps on cv */
    int discard;               /* protected by mu: the caller gave up, drop bytes */
    int oom;                   /* protected by mu: a chunk could not be allocated */
    int done;                  /* protected by mu */
    CURLcode result;           /* protected by mu: valid once done */
    int hub_err;               /* protected by mu: KC_ESTOPPED when the hub dropped it */
} xfer_t;

static void chunks_free(chunk_t *ch)
{
    while (ch) {
        chunk_t *n = ch->next;
        free(ch);
        ch = n;
    }
}

static void attn_unlink(kc_client_t *c, xfer_t *x)
{
    xfer_t **pp = &c->attn_head, *prev = NULL;

    while (*pp && *pp != x) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp == NULL)
        return;
    *pp = x->next;
    if (c->attn_tail == x)
        c->attn_tail = prev;
    x->next = NULL;
    x->on_list = 0;
}

/* Ask the hub to act on x.  WANT_ADD fails (KC_ESTOPPED) once the client is
 * being freed; other wants are dropped once x is finished.  Any thread but
 * the hub's. */
static int hub_request(kc_client_t *c, xfer_t *x, unsigned want)
{
    int rc = 0, wake = 0;

    lock(&c->hub_mu);
    if (want & WANT_ADD && c->stopping) {
        rc = KC_ESTOPPED;
    } else if (!x->finished) {
        x->want |= want;
        if (!x->on_list) {
            x->on_list = 1;
            x->next = NULL;
            if (c->attn_tail)
                c->attn_tail->next = x;
            else
                c->attn_head = x;
            c->attn_tail = x;
        }
        wake = 1;
    }
    unlock(&c->hub_mu);
    if (wake)
        curl_multi_wakeup(c->multi);
    return rc;
}

/* Hub thread: take x out of the multi handle and hand it back to its
 * caller.  After this the hub never touches x again. */
static void hub_finish(kc_client_t *c, xfer_t *x, CURLcode cc, int err)
{
    if (x->in_multi) {
        curl_multi_remove_handle(c->multi, x->easy);
        x->in_multi = 0;
        if (x->act_prev)
            x->act_prev->act_next = x->act_next;
        else
            c->active = x->act_next;
        if (x->act_next)
            x->act_next->act_prev = x->act_prev;
        x->act_prev = x->act_next = NULL;
    }
    lock(&c->hub_mu);
    if (x->on_list)
        attn_unlink(c, x);
    x->finished = 1;
    unlock(&c->hub_mu);
    lock(&x->mu);
    x->result = cc;
    x->hub_err = err;
    x->done = 1;
    pthread_cond_signal(&x->cv);
    unlock(&x->mu);
}

/* Hub thread: act on what a caller asked for. */
static void hub_attend(kc_client_t *c, xfer_t *x, unsigned want, int stopping)
{
    if (want & WANT_ADD) {
        if (stopping) {
            hub_finish(c, x, CURLE_OK, KC_ESTOPPED);
            return;
        }
        curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
        if (curl_multi_add_handle(c->multi, x->easy) != CURLM_OK) {
            hub_finish(c, x, CURLE_OUT_OF_MEMORY, 0);
            return;
        }
        x->in_multi = 1;
        x->act_prev = NULL;
        x->act_next = c->active;
        if (c->active)
            c->active->act_prev = x;
        c->active = x;
    }
    if (want & WANT_ABORT) {
        hub_finish(c, x, CURLE_OK, KC_ESTOPPED);
        return;
    }
    /* may call on_write at once with the bytes curl held back */
    if ((want & WANT_RESUME) && x->in_multi)
        curl_easy_pause(x->easy, CURLPAUSE_CONT);
}

/* The hub thread: the only thread that calls curl on the multi handle and
 * on an easy handle while it is in there. */
static void *hub_main(void *arg)
{
    kc_client_t *c = arg;
    int running = 0, stopping = 0;

    pthread_setname_np(pthread_self(), "kcache-hub");   /* for ps, gdb and the benches */
    for (;;) {
        CURLMsg *m;
        int left;
        uint64_t before;

        for (int n = 0; n < 4096; n++) {
            xfer_t *x;
            unsigned want = 0;

            lock(&c->hub_mu);
            x = c->attn_head;
            if (x) {
                c->attn_head = x->next;
                if (c->attn_head == NULL)
                    c->attn_tail = NULL;
                x->next = NULL;
                x->on_list = 0;
                want = x->want;
                x->want = 0;
            }
            stopping = c->stopping;
            unlock(&c->hub_mu);
            if (x == NULL)
                break;
            hub_attend(c, x, want, stopping);
        }
        if (stopping) {
            /* callers are told KC_ESTOPPED; none can queue a new transfer */
            while (c->active)
                hub_finish(c, c->active, CURLE_OK, KC_ESTOPPED);
            break;
        }
        before = c->hub_bytes;
        curl_multi_perform(c->multi, &running);
        while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
            if (m->msg == CURLMSG_DONE) {
                CURL *e = m->easy_handle;
                CURLcode cc = m->data.result;
                xfer_t *x = NULL;
                curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
                if (x)
                    hub_finish(c, x, cc, 0);
            }
        }
        /* Bytes came in: more are likely waiting (a busy stream delivers
         * TLS record after record, some already read into the TLS layer
         * where poll cannot see them): go straight back to perform. */
        if (c->hub_bytes == before || running == 0)
            curl_multi_poll(c->multi, NULL, 0, 1000, NULL);
    }
    return NULL;
}

static CURL *easy_get(kc_client_t *c)
{
    CURL *e = NULL;

    lock(&c->hub_mu);
    if (c->nidle_easy > 0)
        e = c->idle_easy[--c->nidle_easy];
    unlock(&c->hub_mu);
    if (e)
        curl_easy_reset(e);
    else
        e = curl_easy_init();
    return e;
}

static void easy_put(kc_client_t *c, CURL *e)
{
    lock(&c->hub_mu);
    if (c->nidle_easy < MAX_IDLE_EASY) {
        c->idle_easy[c->nidle_easy++] = e;
        e = NULL;
    }
    unlock(&c->hub_mu);
    if (e)
        curl_easy_cleanup(e);
}

/* ------------------------------------------------------------------ */
/* one HTTP attempt                                                     */

/* The caller's side of a transfer: where its bytes go. */
typedef struct sink {
    kc_buf_t *buf;             /* a body (may be NULL: discard, but keep errors) */
    size_t buf_max;
    kc_buf_t errbody;          /* any non-2xx body (first MAX_ERROR_BODY bytes), for
                                * the Status, whether or not the caller wants a body */
    kc_watch_decoder_t *dec;   /* a watch */
    kc_errbuf_t eb;            /* why the sink refused data */
} sink_t;

static int buf_append(kc_buf_t *b, size_t max, const char *p, size_t n)
{
    size_t need;

    if (n > max || b->len > max - n)
        return KC_ETOOBIG;
    need = b->len + n + 1;
    if (need > b->cap) {
        size_t ncap = b->cap ? b->cap : 16384;
        char *np;
        while (ncap < need)
            ncap *= 2;
        np = realloc(b->data, ncap);
        if (np == NULL)
            return -ENOMEM;
        b->data = np;
        b->cap = ncap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

/* Caller thread: hand bytes of a response with the given code to the sink.
 * Returns 0, an error, or the watch callback's non-zero value. */
static int sink_feed(sink_t *s, long code, const char *p, size_t n)
{
    int rc;

    if (code < 200 || code >= 300) {
        /* An error answer: keep its start for the Status decode, which
         * must not depend on whether (or how big) a body buffer the caller
         * gave; hand the caller a copy too, as far as it fits. */
        rc = buf_append(&s->errbody, MAX_ERROR_BODY, p, n);
        if (rc == KC_ETOOBIG)
            rc = 0;   /* the start of an error body is enough */
        if (rc == 0 && s->buf)
            (void)buf_append(s->buf, s->buf_max, p, n);   /* best effort */
        return rc;
    }
    if (s->dec)
        return kc_watch_decoder_feed(s->dec, p, n, &s->eb);
    rc = s->buf ? buf_append(s->buf, s->buf_max, p, n) : 0;
    if (rc == KC_ETOOBIG)
        kc_errf(&s->eb, rc, "response larger than %zu bytes", s->buf_max);
    else if (rc)
        kc_errf(&s->eb, rc, "out of memory buffering the response");
    return rc;
}

/* Hub thread: queue the bytes for the caller, or pause the transfer while
 * the caller has QUEUE_MAX bytes still to take. */
static size_t on_write(char *p, size_t size, size_t nmemb, void *ud)
{
    xfer_t *x = ud;
    size_t n = size * nmemb;
    chunk_t *ch;

    atomic_store(&x->last_byte_ns, kc_now_ns());
    if (x->hub_code == 0)
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->hub_code);
    lock(&x->mu);
    if (x->discard) {
        unlock(&x->mu);
        return n;
    }
    if (x->queued >= QUEUE_MAX) {
        x->paused = 1;
        unlock(&x->mu);
        return CURL_WRITEFUNC_PAUSE;
    }
    ch = x->tail;
    if (ch == NULL || ch->cap - ch->len < n) {
        if (x->spare && x->spare->cap >= n) {
            ch = x->spare;
            x->spare = ch->next;
            x->nspare--;
        } else {
            size_t cap = n > CHUNK_SIZE ? n : CHUNK_SIZE;
            ch = malloc(sizeof(*ch) + cap);
            if (ch == NULL) {
                x->oom = 1;
                unlock(&x->mu);
                return 0;   /* CURLE_WRITE_ERROR */
            }
            ch->cap = cap;
        }
        ch->len = 0;
        ch->next = NULL;
        if (x->tail)
            x->tail->next = ch;
        else
            x->head = ch;
        x->tail = ch;
    }
    memcpy(ch->data + ch->len, p, n);
    ch->len += n;
    x->queued += n;
    x->code = x->hub_code;
    if (x->waiting)
        pthread_cond_signal(&x->cv);
    unlock(&x->mu);
    x->c->hub_bytes += n;
    return n;
}

/* Hub thread. */
static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    xfer_t *x = ud;
    size_t n = size * nmemb;

    atomic_store(&x->last_byte_ns, kc_now_ns());
    if (n > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        char v[64];
        size_t i = 12, k = 0;
        while (i < n && (p[i] == ' ' || p[i] == '\t'))
            i++;
        while (i < n && p[i] != '\r' && p[i] != '\n' && k < sizeof(v) - 1)
            v[k++] = p[i++];
        v[k] = '\0';
        if (k) {
            char *end;
            double s = strtod(v, &end);
            if (end != v && *end == '\0' && s >= 0) {
                x->retry_after = s;
            } else {
                time_t t = curl_getdate(v, NULL);
                if (t > 0) {
                    double d = (double)t - kc_wall_time();
                    x->retry_after = d > 0 ? d : 0.001;
                }
            }
        }
    } else if (n > 13 && strncasecmp(p, "Content-Type:", 13) == 0) {
        x->is_json = memmem(p, n, "json", 4) != NULL;
    } else if (n > 5 && strncmp(p, "HTTP/", 5) == 0) {
        /* a new response (e.g. after 100 Continue): forget the old headers */
        x->retry_after = 0;
        x->is_json = 0;
        x->hub_code = 0;
    }
    return n;
}

static int map_curl_error(CURLcode cc)
{
    switch (cc) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_USE_SSL_FAILED:
        return KC_ETLS;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return KC_ECONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return KC_ETIMEOUT;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
        return KC_ECLOSED;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return KC_ECONFIG;
    default:
        return -EIO;
    }
}

typedef struct req {
    const char *method;
    const char *url;
    const char *content_type;
    const char *data;
    size_t len;
    int watch;
    kc_cancel_t *cancel;
} req_t;

static void set_common_opts(kc_client_t *c, CURL *e, const cred_t *cr, char *errbuf, int watch)
{
    const kc_config_t *cfg = c->cfg;

    curl_easy_setopt(e, CURLOPT_SHARE, c->share);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_USERAGENT, c->user_agent);
    /* gzip for large lists.  Never for watches: kube-apiserver 1.37 gzips a
     * watch as a series of gzip members (one per flush) and libcurl 7.88
     * fails after the first, ending the watch with a decoding error; a watch
     * is a stream of small flushes where gzip saves little.  Easy handles
     * are reused, so the option is always set, to "" or to NULL (off). */
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING,
                     cfg->disable_compression || watch ? NULL : "");
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    /* while the first connection is still in its TLS handshake, wait to
     * learn whether it speaks h2 (then join it as a stream) instead of
     * opening another; over HTTP/1.1 curl then opens one per transfer */
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 30L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->o.connect_timeout_ms);
    /* 64 KiB: over TLS each read returns at most one record (16 KiB), so a
     * larger buffer never fills; it only held memory (a pooled handle
     * keeps its buffer while idle: 512 KiB cost ~35 B per object of a
     * 10,000-object informer) */
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 64L * 1024);
    curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    /* AES-128-GCM first: as safe for this use and cheaper per byte on long watches */
    curl_easy_setopt(e, CURLOPT_TLS13_CIPHERS,
                     "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
    if (cfg->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    } else {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    }
    if (cfg->ca.data) {
        /* The kubeconfig's CA is the only trust anchor, as for client-go.
         * The blob replaces libcurl's default CA file, but not its default
         * CA directory: Debian's libcurl4 (what libkcache.so links) is
         * built with /etc/ssl/certs, and would otherwise also trust every
         * public CA there for the API server's name. */
        struct curl_blob b = {cfg->ca.data, cfg->ca.len, CURL_BLOB_NOCOPY};
        curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &b);
        curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
    }
    if (c->connect_to)
        curl_easy_setopt(e, CURLOPT_CONNECT_TO, c->connect_to);
    if (cfg->proxy_url)
        curl_easy_setopt(e, CURLOPT_PROXY, cfg->proxy_url);
    if (cr->cert.data) {
        /* certificates from an exec plugin rotate: never resume a TLS
         * session that was authenticated with an older one */
        struct curl_blob cb = {cr->cert.data, cr->cert.len, CURL_BLOB_COPY};
        curl_easy_setopt(e, CURLOPT_SSL_SESSIONID_CACHE, 0L);
        struct curl_blob kb = {cr->key.data, cr->key.len, CURL_BLOB_COPY};
        curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &cb);
        curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &kb);
        curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
    } else if (cfg->client_cert.data) {
        struct curl_blob cb = {cfg->client_cert.data, cfg->client_cert.len, CURL_BLOB_NOCOPY};
        struct curl_blob kb = {cfg->client_key.data, cfg->client_key.len, CURL_BLOB_NOCOPY};
        curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &cb);
        curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &kb);
        curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (cr->bearer) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
        curl_easy_setopt(e, CURLOPT_XOAUTH2_BEARER, cr->bearer);
    } else if (cfg->username) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(e, CURLOPT_USERNAME, cfg->username);
        curl_easy_setopt(e, CURLOPT_PASSWORD, cfg->password);
    }
}

/* Caller thread: wait (in slices, so cancel and the idle guard are looked
 * at) until x has bytes or is done. mu held.  Returns ETIMEDOUT when a
 * whole slice passed without a signal. */
static int xfer_wait(xfer_t *x)
{
    int rc;

    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += (long)POLL_SLICE_MS * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    x->waiting = 1;
    rc = pthread_cond_timedwait(&x->cv, &x->mu, &ts);
    x->waiting = 0;
    return rc;
}

/* Caller thread: run x on the hub until it is done, feeding its bytes to
 * the sink.  Returns 0 or why this side gave up (KC_ESTOPPED for cancel,
 * KC_ETIMEOUT for an idle watch, the sink's error); *hub_err and *cc say
 * how the hub finished it. */
static int xfer_run(kc_client_t *c, xfer_t *x, const req_t *rq, sink_t *s, int *sink_err,
                    long *code)
{
    uint64_t idle_ns = rq->watch && c->o.watch_idle_timeout_ms > 0
                           ? (uint64_t)c->o.watch_idle_timeout_ms * 1000000ull
                           : 0;
    uint64_t drained_ns = kc_now_ns();
    int gave_up = 0;

    for (;;) {
        chunk_t *ch, *idle_spares = NULL;
        int done, resume = 0;

        lock(&x->mu);
        while (x->head == NULL && !x->done) {
            if (!gave_up) {
                uint64_t now = kc_now_ns(), last = atomic_load(&x->last_byte_ns);
                if (last < drained_ns)
                    last = drained_ns;
                if (kc_cancel_is_set(rq->cancel))
                    gave_up = KC_ESTOPPED;
                else if (idle_ns && now > last && now - last > idle_ns)
                    gave_up = KC_ETIMEOUT;
                if (gave_up) {
                    x->discard = 1;
                    unlock(&x->mu);
                    hub_request(c, x, WANT_ABORT);
                    lock(&x->mu);
                    continue;
                }
            }
            if (xfer_wait(x) == ETIMEDOUT && x->nspare > 0 && idle_spares == NULL) {
                /* quiet for a slice: an idle watch keeps no chunk (the
                 * hub allocates one for its next bytes), so a program
                 * with many informers does not hold 64 KiB per watch */
                idle_spares = x->spare;
                x->spare = NULL;
                x->nspare = 0;
            }
        }
        ch = x->head;
        x->head = x->tail = NULL;
        x->queued = 0;
        *code = x->code;
        done = x->done;
        if (x->paused && !done) {
            x->paused = 0;
            resume = 1;
        }
        unlock(&x->mu);
        chunks_free(idle_spares);
        if (resume) {
            drained_ns = kc_now_ns();
            hub_request(c, x, WANT_RESUME);
        }
        for (chunk_t *k = ch; k && !gave_up; k = k->next) {
            int rc = sink_feed(s, *code, k->data, k->len);
            if (rc) {
                *sink_err = rc;
                gave_up = rc;
            }
        }
        if (!gave_up && kc_cancel_is_set(rq->cancel))
            gave_up = KC_ESTOPPED;
        if (gave_up && !done) {
            lock(&x->mu);
            x->discard = 1;
            unlock(&x->mu);
            hub_request(c, x, WANT_ABORT);
        }
        /* keep drained chunks for the hub to fill again: a chunk freed
         * here and allocated again on the hub costs the allocator's trim
         * (madvise) and a page fault per page on a busy stream */
        if (ch) {
            lock(&x->mu);
            while (ch && x->nspare < SPARE_MAX) {
                chunk_t *next = ch->next;
                ch->next = x->spare;
                x->spare = ch;
                x->nspare++;
                ch = next;
            }
            unlock(&x->mu);
            chunks_free(ch);
        }
        /* the hub sets done after its last byte: all were taken above */
        if (done)
            break;
    }
    return gave_up;
}

/* One attempt.  Fills st (http_code, err, texts) and returns the code. */
static int attempt(kc_client_t *c, const req_t *rq, kc_buf_t *body, kc_watch_decoder_t *dec,
                   const cred_t *cr, kc_status_t *st, double *retry_after)
{
    char errbuf[CURL_ERROR_SIZE];
    struct curl_slist *hdrs = NULL, *h2;
    CURL *e;
    xfer_t x;
    sink_t s;
    CURLcode cc = CURLE_OK;
    int rc = 0, gave_up = 0, sink_err = 0, hub_err = 0, oom = 0;
    long code = 0;
    uint64_t t0 = kc_now_ns();
    char ct[160];

    errbuf[0] = '\0';
    *retry_after = 0;
    memset(&s, 0, sizeof(s));
    s.buf = body;
    s.buf_max = body && body->max ? body->max : c->o.max_response_size;
    s.dec = dec;
    if (body)
        body->len = 0;
    e = easy_get(c);
    if (e == NULL) {
        kc__strlcpy(st->message, "out of memory creating a curl handle", sizeof(st->message));
        return st->err = -ENOMEM;
    }
    memset(&x, 0, sizeof(x));
    x.c = c;
    x.easy = e;
    atomic_init(&x.last_byte_ns, t0);
    if (mutex_init(&x.mu) != 0) {
        easy_put(c, e);
        kc__strlcpy(st->message, "pthread_mutex_init failed", sizeof(st->message));
        return st->err = -ENOMEM;
    }
    if (cond_init_mono(&x.cv) != 0) {
        pthread_mutex_destroy(&x.mu);
        easy_put(c, e);
        kc__strlcpy(st->message, "pthread_cond_init failed", sizeof(st->message));
        return st->err = -ENOMEM;
    }

    set_common_opts(c, e, cr, errbuf, rq->watch);
    curl_easy_setopt(e, CURLOPT_URL, rq->url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &x);
    if (!rq->watch && c->o.request_timeout_ms > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, c->o.request_timeout_ms);
    h2 = curl_slist_append(hdrs, "Accept: application/json");
    hdrs = h2 ? h2 : hdrs;
    h2 = curl_slist_append(hdrs, "Expect:");
    hdrs = h2 ? h2 : hdrs;
    if (rq->data) {
        snprintf(ct, sizeof(ct), "Content-Type: %s",
                 rq->content_type ? rq->content_type : "application/json");
        h2 = curl_slist_append(hdrs, ct);
        hdrs = h2 ? h2 : hdrs;
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, rq->data);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->len);
        if (strcmp(rq->method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, rq->method);
    } else if (strcmp(rq->method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(rq->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, rq->method);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);

    if (hub_request(c, &x, WANT_ADD) != 0) {
        rc = KC_ESTOPPED;
        kc__strlcpy(st->message, "client is being freed", sizeof(st->message));
        goto done;
    }
    gave_up = xfer_run(c, &x, rq, &s, &sink_err, &code);
    /* done: the hub let go of x and of the easy handle */
    lock(&x.mu);
    cc = x.result;
    hub_err = x.hub_err;
    oom = x.oom;
    unlock(&x.mu);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    st->http_code = (int)code;
    *retry_after = x.retry_after;
    st->retry_after_s = x.retry_after;

    if (gave_up == KC_ESTOPPED && !sink_err) {
        rc = KC_ESTOPPED;
        kc__strlcpy(st->message, "cancelled", sizeof(st->message));
    } else if (gave_up == KC_ETIMEOUT && !sink_err) {
        rc = KC_ETIMEOUT;
        snprintf(st->message, sizeof(st->message),
                 "watch idle: no bytes for %ld ms, connection closed", c->o.watch_idle_timeout_ms);
    } else if (sink_err) {
        rc = sink_err;
        kc__strlcpy(st->message, s.eb.msg, sizeof(st->message));
    } else if (hub_err) {
        rc = hub_err;
        kc__strlcpy(st->message, "client is being freed", sizeof(st->message));
    } else if (cc == CURLE_WRITE_ERROR && oom) {
        rc = -ENOMEM;
        kc__strlcpy(st->message, "out of memory queueing the response", sizeof(st->message));
    } else if (cc != CURLE_OK) {
        rc = map_curl_error(cc);
        snprintf(st->message, sizeof(st->message), "%s %s: %s%s%s", rq->method, c->host,
                 rc == KC_ETLS ? "TLS: " : "", errbuf[0] ? errbuf : curl_easy_strerror(cc),
                 rc == KC_ETLS && (cc == CURLE_PEER_FAILED_VERIFICATION ||
                                   cc == CURLE_SSL_CACERT_BADFILE)
                     ? " (server certificate not trusted or not valid for this host name)"
                     : "");
        kc__strlcpy(st->detail, curl_easy_strerror(cc), sizeof(st->detail));
    } else if (code < 200 || code >= 300) {
        const char *b = s.errbody.data;
        size_t bl = s.errbody.len;
        if (b == NULL || kc_status_from_json(b, bl, st) == KC_EPARSE) {
            status_from_text(st, b ? b : "", bl);
            rc = err_for((int)code, st->reason);
        } else {
            rc = err_for((int)code, st->reason);
        }
        if (st->retry_after_s > 0 && *retry_after <= 0)
            *retry_after = st->retry_after_s;
        if (st->message[0] == '\0')
            snprintf(st->message, sizeof(st->message), "HTTP %ld %s", code, st->reason);
    } else {
        rc = 0;
    }
done:
    chunks_free(x.head);
    chunks_free(x.spare);
    pthread_cond_destroy(&x.cv);
    pthread_mutex_destroy(&x.mu);
    curl_slist_free_all(hdrs);
    kc_buf_free(&s.errbody);
    easy_put(c, e);
    if (c->o.on_request)
        c->o.on_request(c->o.on_request_ud, rq->method, (int)code, c->host,
                        (double)(kc_now_ns() - t0) / 1e9);
    kc_log(&c->o.log, KC_LOG_DEBUG, KC__COMPONENT, "%s %s -> %ld %s (%.3f s)", rq->method,
           rq->url + strlen(c->base), code, rc ? kc_err_name(rc) : "OK",
           (double)(kc_now_ns() - t0) / 1e9);
    st->err = rc;
    return rc;
}

static int is_idempotent(const char *m)
{
    return !strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "PUT") || !strcmp(m, "DELETE") ||
           !strcmp(m, "OPTIONS");
}

/* The request with rate limiting, credentials, 401 refresh and retries. */
static int perform(kc_client_t *c, const req_t *rq, kc_buf_t *body, kc_watch_decoder_t *dec,
                   kc_status_t *st)
{
    int rc, tries = 0, auth_retried = 0;
    double ra;

    lock(&c->hub_mu);
    rc = c->stopping ? KC_ESTOPPED : 0;
    if (rc == 0)
        c->nactive++;
    unlock(&c->hub_mu);
    if (rc) {
        kc_status_clear(st);
        kc__strlcpy(st->message, "client is being freed", sizeof(st->message));
        st->err = rc;
        return rc;
    }
    for (;;) {
        cred_t cr;
        kc_errbuf_t eb = {0, ""};
        double wait_ms;
        int retry = 0;

        kc_status_clear(st);
        if ((rc = rl_wait(c, rq->cancel)) != 0) {
            kc__strlcpy(st->message, "cancelled", sizeof(st->message));
            break;
        }
        if ((rc = cred_get(c, &cr, &eb)) != 0) {
            kc__strlcpy(st->message, eb.msg, sizeof(st->message));
            break;
        }
        rc = attempt(c, rq, body, dec, &cr, st, &ra);
        st->attempts = tries + auth_retried + 1;
        cred_free(&cr);
        if (rc == 0)
            break;
        if (rc == KC_EUNAUTHORIZED && !auth_retried && (!dec || kc_watch_decoder_events(dec) == 0)) {
            auth_retried = 1;
            if (cred_invalidate(c, cr.gen)) {
                kc_log(&c->o.log, KC_LOG_INFO, KC__COMPONENT,
                       "401 from %s: refreshing credentials and retrying", c->host);
                continue;
            }
        }
        if (dec || tries >= c->o.max_retries)
            break;
        if (rc == KC_ETOOMANY)
            retry = 1;
        else if (rc == KC_ESERVER || rc == KC_ECLOSED || rc == KC_ETIMEOUT)
            retry = is_idempotent(rq->method);
        else if (rc == KC_ECONNECT)
            retry = 1;
        if (!retry)
            break;
        {
            double cap = (double)c->o.retry_max_ms;
            double exp = (double)c->o.retry_base_ms * (double)(1u << (tries < 20 ? tries : 20));
            if (exp > cap)
                exp = cap;
            wait_ms = exp * rand01(c);  /* full jitter */
            if (ra > 0)
                wait_ms = ra * 1000.0 > cap ? cap : ra * 1000.0;
        }
        tries++;
        kc_log(&c->o.log, KC_LOG_INFO, KC__COMPONENT,
               "%s %s: %s (HTTP %d); retry %d/%d in %.0f ms", rq->method, c->host,
               kc_err_name(rc), st->http_code, tries, c->o.max_retries, wait_ms);
        if (sleep_ms(c, wait_ms, rq->cancel) != 0) {
            rc = KC_ESTOPPED;
            break;
        }
    }
    lock(&c->hub_mu);
    if (--c->nactive == 0 && c->stopping)
        pthread_cond_broadcast(&c->hub_cv);
    unlock(&c->hub_mu);
    st->err = rc;
    return rc;
}

/* ------------------------------------------------------------------ */
/* client lifetime                                                      */

/* Split "https://host:port/prefix" for CONNECT_TO and metrics. */
static int parse_server(const char *url, char **scheme_host, char **host, char **port,
                        const char **rest)
{
    const char *p = strstr(url, "://"), *h, *e, *colon = NULL;

    if (p == NULL)
        return -EINVAL;
    h = p + 3;
    if (*h == '[') {
        e = strchr(h, ']');
        if (e == NULL)
            return -EINVAL;
        e++;
    } else {
        e = h + strcspn(h, ":/");
    }
    *host = strndup(h, (size_t)(e - h));
    if (*e == ':') {
        colon = e + 1;
        e = colon + strcspn(colon, "/");
        *port = strndup(colon, (size_t)(e - colon));
    } else {
        *port = strdup(strncmp(url, "https", 5) == 0 ? "443" : "80");
    }
    *scheme_host = strndup(url, (size_t)(p + 3 - url));
    *rest = e;
    if (*host == NULL || *port == NULL || *scheme_host == NULL)
        return -ENOMEM;
    return 0;
}

void kc_client_free(kc_client_t *c)
{
    disc_entry_t *d;

    if (c == NULL)
        return;
    if (c->hub_started) {
        /* fail what is in flight (its callers return KC_ESTOPPED), wait
         * until no caller is inside the client, then let the hub go */
        lock(&c->hub_mu);
        c->stopping = 1;
        atomic_store(&c->stop_flag, 1);
        unlock(&c->hub_mu);
        curl_multi_wakeup(c->multi);
        lock(&c->hub_mu);
        while (c->nactive > 0)
            pthread_cond_wait(&c->hub_cv, &c->hub_mu);
        unlock(&c->hub_mu);
        pthread_join(c->hub, NULL);
    }
    if (c->multi)
        curl_multi_cleanup(c->multi);
    while (c->nidle_easy > 0)
        curl_easy_cleanup(c->idle_easy[--c->nidle_easy]);
    if (c->share)
        curl_share_cleanup(c->share);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&c->share_mu[i]);
    pthread_mutex_destroy(&c->hub_mu);
    pthread_cond_destroy(&c->hub_cv);
    pthread_mutex_destroy(&c->rl_mu);
    pthread_mutex_destroy(&c->auth_mu);
    pthread_cond_destroy(&c->auth_cv);
    pthread_mutex_destroy(&c->disc_mu);
    while ((d = c->disc) != NULL) {
        c->disc = d->next;
        free(d->api_version);
        free(d->kind);
        free(d->group);
        free(d->version);
        free(d->resource);
        free(d);
    }
    kc__str_wipe(&c->file_token);
    kc__exec_cred_free(&c->exec_cred);
    curl_slist_free_all(c->connect_to);
    free(c->user_agent);
    free(c->field_manager);
    free(c->base);
    free(c->host);
    kc_config_free(c->cfg);
    free(c);
}

int kc_client_new(const kc_config_t *cfg, const kc_client_opts_t *opts, kc_client_t **out,
                  kc_errbuf_t *eb)
{
    static const kc_client_opts_t defaults = KC_CLIENT_OPTS_INIT;
    kc_client_t *c;
    char *scheme = NULL, *host = NULL, *port = NULL;
    const char *rest = NULL;
    int rc;

    if (cfg == NULL || out == NULL)
        return kc_errf(eb, -EINVAL, "kc_client_new: NULL argument");
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return kc_errf(eb, -ENOMEM, "out of memory");
    c->o = opts ? *opts : defaults;
    if (c->o.burst < 1)
        c->o.burst = 1;
    if (c->o.max_retries < 0)
        c->o.max_retries = 0;
    if (c->o.retry_base_ms <= 0)
        c->o.retry_base_ms = defaults.retry_base_ms;
    if (c->o.retry_max_ms <= 0)
        c->o.retry_max_ms = defaults.retry_max_ms;
    if (c->o.max_event_size == 0)
        c->o.max_event_size = defaults.max_event_size;
    if (c->o.max_response_size == 0)
        c->o.max_response_size = defaults.max_response_size;
    c->rl_tokens = c->o.burst;
    c->rl_last_ns = kc_now_ns();
    atomic_init(&c->rng, kc_now_ns() ^ (uint64_t)(uintptr_t)c);
    atomic_init(&c->stop_flag, 0);

    if ((rc = mutex_init(&c->hub_mu)) || (rc = -pthread_cond_init(&c->hub_cv, NULL)) ||
        (rc = mutex_init(&c->rl_mu)) ||
        (rc = mutex_init(&c->auth_mu)) || (rc = mutex_init(&c->disc_mu)) ||
        (rc = -pthread_cond_init(&c->auth_cv, NULL))) {
        free(c);
        return kc_errf(eb, rc, "pthread init failed");
    }
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        if ((rc = mutex_init(&c->share_mu[i])) != 0)
            abort();

    rc = -ENOMEM;
    if ((c->cfg = kc__config_dup(cfg)) == NULL)
        goto fail;
    if (c->o.user_agent)
        c->user_agent = strdup(c->o.user_agent);
    else
        c->user_agent = strdup("kcache/" KC_VERSION_STRING);
    if (c->user_agent == NULL)
        goto fail;
    if (c->o.field_manager && (c->field_manager = strdup(c->o.field_manager)) == NULL)
        goto fail;
    c->o.user_agent = c->user_agent;
    c->o.field_manager = c->field_manager;

    rc = parse_server(cfg->server, &scheme, &host, &port, &rest);
    if (rc) {
        rc = kc_errf(eb, rc == -ENOMEM ? rc : KC_ECONFIG, "bad server URL %s", cfg->server);
        goto fail_msg;
    }
    if (asprintf(&c->host, "%s:%s", host, port) < 0) {
        c->host = NULL;
        goto fail;
    }
    if (cfg->tls_server_name && cfg->tls_server_name[0]) {
        /* SNI and verification use tls-server-name: address the URL to it and
         * let CONNECT_TO send the connection to the real host. */
        char *ct = NULL;
        /* host keeps its brackets: CONNECT_TO wants IPv6 literals that way */
        if (asprintf(&ct, "%s:%s:%s:%s", cfg->tls_server_name, port, host, port) < 0)
            goto fail;
        c->connect_to = curl_slist_append(NULL, ct);
        free(ct);
        if (c->connect_to == NULL)
            goto fail;
        if (asprintf(&c->base, "%s%s:%s%s", scheme, cfg->tls_server_name, port, rest) < 0) {
            c->base = NULL;
            goto fail;
        }
    } else if ((c->base = strdup(cfg->server)) == NULL) {
        goto fail;
    }
    c->share = curl_share_init();
    if (c->share == NULL)
        goto fail;
    curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    c->multi = curl_multi_init();
    if (c->multi == NULL)
        goto fail;
    /* h2 streams share a connection; over HTTP/1.1 each concurrent transfer
     * gets its own (no per-host cap: watches would wait for each other) */
    curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    if ((rc = -pthread_create(&c->hub, NULL, hub_main, c)) != 0) {
        rc = kc_errf(eb, rc, "starting the transport thread: %s", kc_strerror(rc));
        goto fail_msg;
    }
    c->hub_started = 1;
    free(scheme);
    free(host);
    free(port);
    *out = c;
    return 0;
fail:
    kc_errf(eb, rc, "out of memory");
fail_msg:
    free(scheme);
    free(host);
    free(port);
    kc_client_free(c);
    return rc;
}

/* ------------------------------------------------------------------ */
/* URLs                                                                 */

static int check_name(const char *what, const char *s, kc_status_t *st)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n > 253 || strchr(s, '/') || strcmp(s, ".") == 0 || strcmp(s, "..") == 0 ||
        strchr(s, '%')) {
        if (st) {
            snprintf(st->message, sizeof(st->message), "invalid %s \"%.100s\"", what, s ? s : "");
            st->err = KC_EBADNAME;
        }
        return KC_EBADNAME;
    }
    return 0;
}

static int build_path(kc_client_t *c, kc__sb_t *sb, const kc_resource_t *r, const char *ns,
                      const char *name, const char *sub, int need_ns, kc_status_t *st)
{
    int rc;

    if (r == NULL || r->version == NULL || r->resource == NULL) {
        if (st) {
            kc__strlcpy(st->message, "resource descriptor incomplete", sizeof(st->message));
            st->err = -EINVAL;
        }
        return -EINVAL;
    }
    kc__sb_adds(sb, c->base);
    if (r->group == NULL || r->group[0] == '\0')
        kc__sb_addf(sb, "/api/%s", r->version);
    else
        kc__sb_addf(sb, "/apis/%s/%s", r->group, r->version);
    if (r->namespaced && ns && ns[0]) {
        if ((rc = check_name("namespace", ns, st)))
            return rc;
        kc__sb_adds(sb, "/namespaces/");
        kc__sb_add_escaped(sb, ns);
    } else if (r->namespaced && need_ns) {
        if (st) {
            snprintf(st->message, sizeof(st->message), "%s is namespaced: namespace required",
                     r->resource);
            st->err = -EINVAL;
        }
        return -EINVAL;
    }
    kc__sb_adds(sb, "/");
    kc__sb_adds(sb, r->resource);
    if (name) {
        if ((rc = check_name("name", name, st)))
            return rc;
        kc__sb_adds(sb, "/");
        kc__sb_add_escaped(sb, name);
    }
    if (sub) {
        if ((rc = check_name("subresource", sub, st)))
            return rc;
        kc__sb_adds(sb, "/");
        kc__sb_adds(sb, sub);
    }
    return sb->err;
}

static void add_param(kc__sb_t *sb, int *first, const char *k, const char *v)
{
    if (v == NULL)
        return;
    kc__sb_adds(sb, *first ? "?" : "&");
    *first = 0;
    kc__sb_adds(sb, k);
    kc__sb_adds(sb, "=");
    kc__sb_add_escaped(sb, v);
}

static void add_param_long(kc__sb_t *sb, int *first, const char *k, long v)
{
    char tmp[32];

    snprintf(tmp, sizeof(tmp), "%ld", v);
    add_param(sb, first, k, tmp);
}

static void add_list_params(kc__sb_t *sb, int *first, const kc_list_opts_t *o)
{
    if (o == NULL)
        return;
    add_param(sb, first, "labelSelector", o->label_selector);
    add_param(sb, first, "fieldSelector", o->field_selector);
    if (o->limit > 0)
        add_param_long(sb, first, "limit", o->limit);
    add_param(sb, first, "continue", o->continue_token);
    add_param(sb, first, "resourceVersion", o->resource_version);
    add_param(sb, first, "resourceVersionMatch", o->resource_version_match);
    if (o->timeout_seconds > 0)
        add_param_long(sb, first, "timeoutSeconds", o->timeout_seconds);
}

static int sb_fail(kc__sb_t *sb, kc_status_t *st, int rc)
{
    if (st) {
        if (st->message[0] == '\0')
            snprintf(st->message, sizeof(st->message), "building the request: %s",
                     kc_strerror(rc));
        st->err = rc;
    }
    kc__sb_free(sb);
    return rc;
}

static int do_simple(kc_client_t *c, const char *method, kc__sb_t *url, const char *ctype,
                     const char *data, size_t len, kc_buf_t *body, kc_status_t *st)
{
    kc_status_t tmp;
    req_t rq = {method, url->p, ctype, data, len, 0, NULL};
    int rc;

    rc = perform(c, &rq, body, NULL, st ? st : &tmp);
    kc__sb_free(url);
    return rc;
}

/* ------------------------------------------------------------------ */
/* verbs                                                                */

int kc_client_get(kc_client_t *c, const kc_resource_t *r, const char *ns, const char *name,
                  kc_buf_t *body, kc_status_t *st)
{
    kc__sb_t u;
    int rc;

    kc_status_clear(st);
    kc__sb_init(&u, 0);
    if ((rc = build_path(c, &u, r, ns, name, NULL, 1, st)))
        return sb_fail(&u, st, rc);
    return do_simple(c, "GET", &u, NULL, NULL, 0, body, st);
}

/* A verb on a collection with list options: list (GET) and
 * deletecollection (DELETE). */
static int collection_verb(kc_client_t *c, const char *method, const kc_resource_t *r,
                           const char *ns, const kc_list_opts_t *o, kc_buf_t *body,
                           kc_status_t *st)
{
    kc__sb_t u;
    int rc, first = 1;

    kc_status_clear(st);
    kc__sb_init(&u, 0);
    if ((rc = build_path(c, &u, r, ns, NULL, NULL, 0, st)))
        return sb_fail(&u, st, rc);
    add_list_params(&u, &first, o);
    if (u.err)
        return sb_fail(&u, st, u.err);
    return do_simple(c, method, &u, NULL, NULL, 0, body, st);
}

int kc_client_list(kc_client_t *c, const kc_resource_t *r, const char *ns,
                   const kc_list_opts_t *o, kc_buf_t *body, kc_status_t *st)
{
    return collection_verb(c, "GET", r, ns, o, body, st);
}

static void add_field_manager(kc_client_t *c, kc__sb_t *u, int *first, const char *fm,
                              int apply)
{
    if (fm == NULL)
        fm = c->field_manager;
    if (fm == NULL && apply)
        fm = "kcache";
    add_param(u, first, "fieldManager", fm);
}

int kc_client_create(kc_client_t *c, const kc_resource_t *r, const char *ns, const char *json,
                     size_t len, kc_buf_t *body, kc_status_t *st)
{
    kc__sb_t u;
    int rc, first = 1;

    kc_status_clear(st);
    kc__sb_init(&u, 0);
    if ((rc = build_path(c, &u, r, ns, NULL, NULL, 1, st)))
        return sb_fail(&u, st, rc);
    add_field_manager(c, &u, &first, NULL, 0);
    if (u.err)
        return sb_fail(&u, st, u.err);
    return do_simple(c, "POST", &u, "application/json", json, len, body, st);
}

static int update_sub(kc_client_t *c, const kc_resource_t *r, const char *ns, const char *name,
                      const char *sub, const char *json, size_t len, kc_buf_t *body,
                      kc_status_t *st)
{
    kc__sb_t u;
    int rc, first = 1;

    kc_status_clear(st);
    kc__sb_init(&u, 0);
    if ((rc = build_path(c, &u, r, ns, name, sub, 1, st)))
        return sb_fail(&u, st, rc);
    add_field_manager(c, &u, &first, NULL, 0);
    if (u.err)
        return sb_fail(&u, st, u.err);
    return do_simple(c, "PUT", &u, "application/json", json, len, body, st);
}

int kc_client_update(kc_client_t *c, const kc_resource_t *r, const char *ns, const char *name,
                     const char *json, size_t len, kc_buf_t *body, kc_status_t *st)
{
    return update_sub(c, r, ns, name, NULL, json, len, body, st);
}

int kc_client_update_status(kc_client_t *c, const kc_resource_t *r, const char *ns,
                            const char *name, const char *json, size_t len, kc_buf_t *body,
                            kc_status_t *st)
{
    return update_sub(c, r, ns, name, "status", json, len, body, st);
}

int kc_client_patch(kc_client_t *c, const kc_resource_t *r, const char *ns, const char *name,
                    kc_patch_type_t type, const char *patch, size_t len,
                    const kc_patch_opts_t *o, kc_buf_t *body, kc_status_t *st)
{
    static const char *const ctypes[] = {
        "application/merge-patch+json", "application/strategic-merge-patch+json",
        "application/json-patch+json", "application/apply-patch+yaml"};
    kc__sb_t u;
    int rc, first = 1;

    kc_status_clear(st);
    if ((unsigned)type > KC_PATCH_APPLY) {
        if (st) {
            kc__strlcpy(st->message, "unknown patch type", sizeof(st->message));
            st->err = -EINVAL;
        }
        return -EINVAL;
    }
    kc__sb_init(&u, 0);
    if ((rc = build_path(c, &u, r, ns, name, o ? o->subresource : NULL, 1, st)))
        return sb_fail(&u, st, rc);
    add_field_manager(c, &u, &first, o ? o->field_manager : NULL, type == KC_PATCH_APPLY);
    if (type == KC_PATCH_APPLY && o && o->force)
        add_param(&u, &first, "force", "true");
    if (u.err)
        return sb_fail(&u, st, u.err);
    return do_simple(c, "PATCH", &u, ctypes[type], patch, len, body, st);
}

static char *delete_body(const kc_delete_opts_t *o)
{
    cJSON *root, *pre;
    char *out = NULL;

    if (o == NULL || (o->propagation_policy == NULL && o->grace_period_seconds < 0 &&
                      o->precondition_uid == NULL && o->precondition_resource_version == NULL))
        return NULL;
    root = cJSON_CreateObject();
    if (root == NULL)
        return NULL;
    cJSON_AddStringToObject(root, "kind", "DeleteOptions");
    cJSON_AddStringToObject(root, "apiVersion", "v1");
    if (o->propagation_policy)
        cJSON_AddStringToObject(root, "propagationPolicy", o->propagation_policy);
    if (o->grace_period_seconds >= 0)
        cJSON_AddNumberToObject(root, "gracePeriodSeconds", (double)o->grace_period_seconds);
    if (o->precondition_uid || o->precondition_resource_version) {
        pre = cJSON_AddObjectToObject(root, "preconditions");
        if (pre && o->precondition_uid)
            cJSON_AddStringToObject(pre, "uid", o->precondition_uid);
        if (pre && o->precondition_resource_version)
            cJSON_AddStringToObject(pre, "resourceVersion", o->precondition_resource_version);
    }
    out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

int kc_client_delete(kc_client_t *c, const kc_resource_t *r, const char *ns, const char *name,
                     const kc_delete_opts_t *o, kc_buf_t *body, kc_status_t *st)
{
    kc__sb_t u;
    char *db;
    int rc, has_opts;

    kc_status_clear(st);
    kc__sb_init(&u, 0);
    if ((rc = build_path(c, &u, r, ns, name, NULL, 1, st)))
        return sb_fail(&u, st, rc);
    has_opts = o && (o->propagation_policy || o->grace_period_seconds >= 0 ||
                     o->precondition_uid || o->precondition_resource_version);
    db = delete_body(o);
    if (has_opts && db == NULL)
        return sb_fail(&u, st, -ENOMEM);
    rc = do_simple(c, "DELETE", &u, "application/json", db, db ? strlen(db) : 0, body, st);
    free(db);
    return rc;
}

int kc_client_delete_collection(kc_client_t *c, const kc_resource_t *r, const char *ns,
                                const kc_list_opts_t *o, kc_buf_t *body, kc_status_t *st)
{
    return collection_verb(c, "DELETE", r, ns, o, body, st);
}

int kc_client_request(kc_client_t *c, const char *method, const char *path, const char *query,
                      const char *content_type, const char *data, size_t len, kc_buf_t *body,
                      kc_status_t *st)
{
    kc__sb_t u;

    kc_status_clear(st);
    if (method == NULL || path == NULL || path[0] != '/') {
        if (st) {
            kc__strlcpy(st->message, "method and absolute path required", sizeof(st->message));
            st->err = -EINVAL;
        }
        return -EINVAL;
    }
    kc__sb_init(&u, 0);
    kc__sb_adds(&u, c->base);
    kc__sb_adds(&u, path);
    if (query && query[0]) {
        kc__sb_adds(&u, "?");
        kc__sb_adds(&u, query);
    }
    if (u.err)
        return sb_fail(&u, st, u.err);
    return do_simple(c, method, &u, content_type, data, len, body, st);
}

/* ------------------------------------------------------------------ */
/* watch                                                                */

int kc_client_watch(kc_client_t *c, const kc_resource_t *r, const char *ns,
                    const kc_watch_opts_t *o, kc_watch_cb cb, void *ud, kc_status_t *st)
{
    static const kc_watch_opts_t defaults = KC_WATCH_OPTS_INIT;
    kc_watch_decoder_t *dec = NULL;
    kc_status_t tmp;
    kc_errbuf_t eb = {0, ""};
    kc__sb_t u;
    req_t rq;
    int rc, first = 1;

    if (st == NULL)
        st = &tmp;
    kc_status_clear(st);
    if (o == NULL)
        o = &defaults;
    kc__sb_init(&u, 0);
    if ((rc = build_path(c, &u, r, ns, NULL, NULL, 0, st)))
        return sb_fail(&u, st, rc);
    add_param(&u, &first, "watch", "true");
    add_param(&u, &first, "resourceVersion", o->resource_version);
    if (o->allow_bookmarks)
        add_param(&u, &first, "allowWatchBookmarks", "true");
    add_param(&u, &first, "labelSelector", o->label_selector);
    add_param(&u, &first, "fieldSelector", o->field_selector);
    if (o->send_initial_events) {
        add_param(&u, &first, "sendInitialEvents", "true");
        add_param(&u, &first, "resourceVersionMatch", "NotOlderThan");
    }
    if (o->timeout_seconds > 0)
        add_param_long(&u, &first, "timeoutSeconds", o->timeout_seconds);
    if (u.err)
        return sb_fail(&u, st, u.err);
    if ((rc = kc_watch_decoder_new(c->o.max_event_size, cb, ud, &dec)) != 0)
        return sb_fail(&u, st, rc);
    rq = (req_t){"GET", u.p, NULL, NULL, 0, 1, o->cancel};
    rc = perform(c, &rq, NULL, dec, st);
    if (rc == 0) {
        rc = kc_watch_decoder_finish(dec, &eb);
        if (rc) {
            kc__strlcpy(st->message, eb.msg, sizeof(st->message));
            st->err = rc;
        }
    } else if (rc > 0) {
        rc = KC_ESTOPPED;   /* the callback asked to stop */
        st->err = rc;
    }
    kc_watch_decoder_free(dec);
    kc__sb_free(&u);
    return rc;
}

/* ------------------------------------------------------------------ */
/* discovery                                                            */

static const disc_entry_t *disc_find(kc_client_t *c, const char *apiv, const char *kind)
{
    const disc_entry_t *d;

    lock(&c->disc_mu);
    for (d = c->disc; d; d = d->next)
        if (strcmp(d->api_version, apiv) == 0 && strcmp(d->kind, kind) == 0)
            break;
    unlock(&c->disc_mu);
    return d;
}

int kc_client_discover(kc_client_t *c, const char *api_version, const char *kind,
                       kc_resource_t *out, kc_status_t *st)
{
    const disc_entry_t *found;
    disc_entry_t *ne = NULL;
    kc_buf_t body = KC_BUF_INIT;
    kc_status_t tmp;
    cJSON *root = NULL, *res, *it;
    const char *slash;
    char path[512];
    int rc;

    if (st == NULL)
        st = &tmp;
    kc_status_clear(st);
    if (api_version == NULL || kind == NULL || out == NULL || api_version[0] == '\0' ||
        strchr(api_version, '?') || strlen(api_version) > 300)
        return st->err = -EINVAL;
    if ((found = disc_find(c, api_version, kind)) != NULL) {
        *out = found->res;
        return 0;
    }
    slash = strchr(api_version, '/');
    snprintf(path, sizeof(path), "%s/%s", slash ? "/apis" : "/api", api_version);
    rc = kc_client_request(c, "GET", path, NULL, NULL, NULL, 0, &body, st);
    if (rc)
        goto out;
    root = cJSON_ParseWithLength(body.data, body.len);
    res = cJSON_GetObjectItemCaseSensitive(root, "resources");
    if (!cJSON_IsArray(res)) {
        rc = KC_EPARSE;
        snprintf(st->message, sizeof(st->message), "discovery %.400s: not an APIResourceList", path);
        goto out;
    }
    cJSON_ArrayForEach(it, res) {
        const char *name = jstr(it, "name"), *k = jstr(it, "kind");
        if (name && k && strcmp(k, kind) == 0 && strchr(name, '/') == NULL)
            break;
    }
    if (it == NULL) {
        rc = KC_ENOTFOUND;
        snprintf(st->message, sizeof(st->message), "kind %s is not served by %s", kind,
                 api_version);
        goto out;
    }
    ne = calloc(1, sizeof(*ne));
    if (ne == NULL || (ne->api_version = strdup(api_version)) == NULL ||
        (ne->kind = strdup(kind)) == NULL || (ne->resource = strdup(jstr(it, "name"))) == NULL ||
        (ne->group = slash ? strndup(api_version, (size_t)(slash - api_version)) : strdup("")) ==
            NULL ||
        (ne->version = strdup(slash ? slash + 1 : api_version)) == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    ne->res.group = ne->group;
    ne->res.version = ne->version;
    ne->res.resource = ne->resource;
    ne->res.kind = ne->kind;
    ne->res.namespaced = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "namespaced"));
    lock(&c->disc_mu);
    for (found = c->disc; found; found = found->next)
        if (strcmp(found->api_version, api_version) == 0 && strcmp(found->kind, kind) == 0)
            break;
    if (found == NULL) {
        ne->next = c->disc;
        c->disc = ne;
        found = ne;
        ne = NULL;
    }
    *out = found->res;
    unlock(&c->disc_mu);
out:
    if (ne) {
        free(ne->api_version);
        free(ne->kind);
        free(ne->resource);
        free(ne->group);
        free(ne->version);
        free(ne);
    }
    cJSON_Delete(root);
    kc_buf_free(&body);
    st->err = rc;
    return rc;
}
