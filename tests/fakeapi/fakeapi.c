/*
 * Fake API server: lifecycle, the loop thread, and the public C API.
 *
 * All server state is owned by one thread, the libevent loop started by
 * kc_fakeapi_start.  Public functions called from other threads queue a
 * call (fa_call) under call_mu, wake the loop through an eventfd, and wait
 * on call_cv for the result; the loop runs queued calls one by one without
 * holding call_mu.  When the loop is not running the caller runs the call
 * itself.  call_mu is the only lock, and it is never held while a call
 * runs.
 *
 * Ownership: kc_fakeapi_new copies every option string; returned strings
 * are new allocations the caller frees; url/token/ca_pem are borrowed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "fakeapi_int.h"

struct fa_call {
    fa_call_fn fn;
    void *arg;
    int rc;
    int done;
    struct fa_call *next;
};

static void run_calls(evutil_socket_t fd, short what, void *arg)
{
    fa_server_t *s = arg;
    uint64_t n;
    (void)what;
    if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        kc_log(&s->o.log, KC_LOG_WARN, FA_COMP, "eventfd read: %s", strerror(errno));
    for (;;) {
        pthread_mutex_lock(&s->call_mu);
        struct fa_call *c = s->calls_head;
        if (c) {
            s->calls_head = c->next;
            if (!s->calls_head)
                s->calls_tail = NULL;
        }
        pthread_mutex_unlock(&s->call_mu);
        if (!c)
            break;
        int rc = c->fn(s, c->arg);
        pthread_mutex_lock(&s->call_mu);
        c->rc = rc;
        c->done = 1;
        pthread_cond_broadcast(&s->call_cv);
        pthread_mutex_unlock(&s->call_mu);
    }
}

int fa_call(fa_server_t *s, fa_call_fn fn, void *arg)
{
    struct fa_call c = {fn, arg, 0, 0, NULL};
    uint64_t one = 1;

    pthread_mutex_lock(&s->call_mu);
    if (!s->running || pthread_equal(pthread_self(), s->thread)) {
        pthread_mutex_unlock(&s->call_mu);
        return fn(s, arg);
    }
    if (s->calls_tail)
        s->calls_tail->next = &c;
    else
        s->calls_head = &c;
    s->calls_tail = &c;
    pthread_mutex_unlock(&s->call_mu);
    if (write(s->call_fd, &one, sizeof(one)) < 0)
        kc_log(&s->o.log, KC_LOG_WARN, FA_COMP, "eventfd write: %s", strerror(errno));
    pthread_mutex_lock(&s->call_mu);
    while (!c.done)
        pthread_cond_wait(&s->call_cv, &s->call_mu);
    pthread_mutex_unlock(&s->call_mu);
    return c.rc;
}

static void pump_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    fa_watch_pump_all(arg);
}

static void churn_cb(evutil_socket_t fd, short what, void *arg)
{
    fa_server_t *s = arg;
    uint64_t now = kc_now_ns();
    (void)fd;
    (void)what;
    if (s->churn_rate <= 0)
        return;
    s->churn_carry += s->churn_rate * (double)(now - s->churn_last_ns) / 1e9;
    s->churn_last_ns = now;
    if (s->churn_carry >= 1) {
        /* at most ~20 ms of work per tick so requests keep being served; a
         * rate the loop cannot sustain is clipped, not queued up */
        size_t n = (size_t)s->churn_carry;
        if (n > 1000)
            n = 1000;
        s->churn_carry = s->churn_carry - (double)n > 1000 ? 0 : s->churn_carry - (double)n;
        if (fa_load_churn(s, &s->churn_load, n) < 0)
            kc_log(&s->o.log, KC_LOG_WARN, FA_COMP, "churn failed");
    }
    struct timeval tv = {0, 5000};
    event_add(s->churn_ev, &tv);
}

static int parse_listen(fa_server_t *s, const char *l)
{
    const char *colon = strrchr(l, ':');
    char *end;
    long port;
    if (!colon)
        return -EINVAL;
    port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        return -EINVAL;
    if (l[0] == '[' && colon > l && colon[-1] == ']')
        s->listen_host = strndup(l + 1, (size_t)(colon - l - 2));
    else
        s->listen_host = strndup(l, (size_t)(colon - l));
    if (!s->listen_host)
        return -ENOMEM;
    s->listen_port = (int)port;
    s->port = (int)port;
    return 0;
}

int kc_fakeapi_new(const kc_fakeapi_opts_t *o, kc_fakeapi_t **out)
{
    kc_fakeapi_opts_t dflt = KC_FAKEAPI_OPTS_INIT;
    fa_server_t *s;
    kc_errbuf_t eb;
    int rc = -ENOMEM;

    *out = NULL;
    if (!o)
        o = &dflt;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->o = *o;
    s->o.cert_file = s->o.key_file = s->o.ca_file = s->o.ca_key_file = NULL;
    s->o.listen = NULL;
    s->o.token = NULL;
    if (!s->o.seed)
        s->o.seed = 1;
    if (s->o.bookmark_interval_ms <= 0)
        s->o.bookmark_interval_ms = 60000;
    if (!s->o.history_window)
        s->o.history_window = 10000;
    if (s->o.min_request_timeout_s <= 0)
        s->o.min_request_timeout_s = 1800;
    if (!s->o.max_body)
        s->o.max_body = 3u << 20;
    s->rng = s->o.seed;
    s->call_fd = -1;
    pthread_mutex_init(&s->call_mu, NULL);
    pthread_cond_init(&s->call_cv, NULL);
    rc = parse_listen(s, o->listen ? o->listen : "127.0.0.1:0");
    if (rc)
        goto fail;
    rc = -ENOMEM;
    if (o->token) {
        s->token = strdup(o->token);
    } else {
        unsigned char rb[16];
        s->token = malloc(33);
        if (s->token && RAND_bytes(rb, sizeof(rb)) == 1)
            for (int i = 0; i < 16; i++)
                snprintf(s->token + 2 * i, 3, "%02x", rb[i]);
        else if (s->token)
            snprintf(s->token, 33, "kcache-fakeapi-%016" PRIx64, fa_rand(&s->rng));
    }
    if (!s->token)
        goto fail;
    rc = fa_pki_init(&s->pki, o, &eb);
    if (rc)
        goto fail;
    s->ssl = fa_pki_ssl_ctx(&s->pki);
    if (!s->ssl) {
        rc = KC_ETLS;
        goto fail;
    }
    rc = fa_store_init(&s->store, s->o.history_window, s->o.seed);
    if (rc)
        goto fail;
    s->base = event_base_new();
    s->call_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!s->base || s->call_fd < 0) {
        rc = -ENOMEM;
        goto fail;
    }
    s->call_ev = event_new(s->base, s->call_fd, EV_READ | EV_PERSIST, run_calls, s);
    s->pump_ev = event_new(s->base, -1, 0, pump_cb, s);
    s->churn_ev = evtimer_new(s->base, churn_cb, s);
    if (!s->call_ev || !s->pump_ev || !s->churn_ev || event_add(s->call_ev, NULL) < 0) {
        rc = -ENOMEM;
        goto fail;
    }
    {
        /* the namespaces every cluster has */
        static const char *nss[] = {"default", "kube-system", "kube-public"};
        const fa_res_t *nr = fa_res_by_plural("namespaces");
        for (size_t i = 0; i < 3; i++) {
            cJSON *j = cJSON_CreateObject(), *md = cJSON_AddObjectToObject(j, "metadata");
            fa_status_t st = {0};
            cJSON_AddStringToObject(md, "name", nss[i]);
            fa_obj_t *ob = fa_do_apply(s, nr, j, &st);
            cJSON_Delete(j);
            fa_obj_unref(ob);
        }
    }
    *out = (kc_fakeapi_t *)s;
    return 0;
fail:
    kc_fakeapi_free((kc_fakeapi_t *)s);
    return rc;
}

static void *loop_main(void *arg)
{
    fa_server_t *s = arg;
    event_base_loop(s->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

int kc_fakeapi_start(kc_fakeapi_t *sp)
{
    fa_server_t *s = (fa_server_t *)sp;
    int rc;
    if (s->running)
        return -EALREADY;
    rc = fa_http_start(s);
    if (rc)
        return rc;
    if (s->churn_rate > 0) {
        struct timeval tv = {0, 10000};
        event_add(s->churn_ev, &tv);
    }
    pthread_mutex_lock(&s->call_mu);
    s->running = 1;
    rc = pthread_create(&s->thread, NULL, loop_main, s);
    if (rc)
        s->running = 0;
    pthread_mutex_unlock(&s->call_mu);
    if (rc) {
        fa_http_stop(s);
        return -rc;
    }
    kc_log(&s->o.log, KC_LOG_INFO, FA_COMP, "listening on %s", s->url);
    return 0;
}

static int stop_fn(fa_server_t *s, void *arg)
{
    (void)arg;
    fa_http_stop(s);
    event_del(s->churn_ev);
    event_base_loopbreak(s->base);
    return 0;
}

void kc_fakeapi_stop(kc_fakeapi_t *sp)
{
    fa_server_t *s = (fa_server_t *)sp;
    if (!s || !s->running)
        return;
    fa_call(s, stop_fn, NULL);
    pthread_join(s->thread, NULL);
    pthread_mutex_lock(&s->call_mu);
    s->running = 0;
    pthread_mutex_unlock(&s->call_mu);
    /* let libevent finish what freeing connections scheduled */
    event_base_loop(s->base, EVLOOP_NONBLOCK);
}

void kc_fakeapi_free(kc_fakeapi_t *sp)
{
    fa_server_t *s = (fa_server_t *)sp;
    if (!s)
        return;
    kc_fakeapi_stop(sp);
    if (s->http)
        fa_http_stop(s);
    if (s->call_ev)
        event_free(s->call_ev);
    if (s->pump_ev)
        event_free(s->pump_ev);
    if (s->churn_ev)
        event_free(s->churn_ev);
    fa_nsweep_free_all(s);
    if (s->base) {
        event_base_loop(s->base, EVLOOP_NONBLOCK);
        event_base_free(s->base);
    }
    if (s->call_fd >= 0)
        close(s->call_fd);
    fa_store_destroy(&s->store);
    if (s->ssl)
        SSL_CTX_free(s->ssl);
    fa_pki_destroy(&s->pki);
    for (size_t i = 0; i < s->ntokens; i++) {
        free(s->tokens[i].token);
        free(s->tokens[i].user);
    }
    free(s->tokens);
    for (size_t i = 0; i < s->nrules; i++) {
        free(s->rules[i].user);
        free(s->rules[i].verb);
        free(s->rules[i].resource);
    }
    free(s->rules);
    if (s->reqlog) {
        for (size_t i = 0; i < s->reqlog_n; i++)
            free(s->reqlog[(s->reqlog_head + i) % 1024]);
        free(s->reqlog);
    }
    free(s->listen_host);
    free(s->token);
    pthread_mutex_destroy(&s->call_mu);
    pthread_cond_destroy(&s->call_cv);
    free(s);
}

const char *kc_fakeapi_url(const kc_fakeapi_t *sp)
{
    return ((const fa_server_t *)sp)->url;
}

int kc_fakeapi_port(const kc_fakeapi_t *sp)
{
    return ((const fa_server_t *)sp)->port;
}

const char *kc_fakeapi_token(const kc_fakeapi_t *sp)
{
    return ((const fa_server_t *)sp)->token;
}

const char *kc_fakeapi_ca_pem(const kc_fakeapi_t *sp)
{
    return ((const fa_server_t *)sp)->pki.ca_pem;
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t n = strlen(text), off = 0;
    if (fd < 0)
        return -errno;
    if (fchmod(fd, 0600) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    while (off < n) {
        ssize_t w = write(fd, text + off, n - off);
        if (w < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            close(fd);
            return -e;
        }
        off += (size_t)w;
    }
    return close(fd) < 0 ? -errno : 0;
}

int kc_fakeapi_write_ca(kc_fakeapi_t *sp, const char *path)
{
    return write_file(path, kc_fakeapi_ca_pem(sp));
}

static char *b64(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(4 * ((n + 2) / 3) + 1);
    if (o)
        EVP_EncodeBlock((unsigned char *)o, (const unsigned char *)s, (int)n);
    return o;
}

struct issue_arg { const char *user; char **cert, **key; };

static int issue_fn(fa_server_t *s, void *arg)
{
    struct issue_arg *a = arg;
    return fa_pki_issue(&s->pki, a->user, 0, a->cert, a->key);
}

int kc_fakeapi_issue_client_cert(kc_fakeapi_t *sp, const char *user, char **cert_pem,
                                 char **key_pem)
{
    struct issue_arg a = {user, cert_pem, key_pem};
    if (!user || !*user)
        return -EINVAL;
    return fa_call((fa_server_t *)sp, issue_fn, &a);
}

int kc_fakeapi_write_kubeconfig(kc_fakeapi_t *sp, const char *path, const char *user)
{
    fa_server_t *s = (fa_server_t *)sp;
    char *ca = b64(s->pki.ca_pem), *cert = NULL, *key = NULL, *cb = NULL, *kb = NULL, *text;
    int rc = -ENOMEM;
    size_t n;
    if (!ca)
        return -ENOMEM;
    if (user) {
        rc = kc_fakeapi_issue_client_cert(sp, user, &cert, &key);
        if (rc)
            goto out;
        rc = -ENOMEM;
        cb = b64(cert);
        kb = b64(key);
        if (!cb || !kb)
            goto out;
    }
    n = strlen(ca) + (cb ? strlen(cb) + strlen(kb) : strlen(s->token)) + 1024;
    text = malloc(n);
    if (!text)
        goto out;
    snprintf(text, n,
             "apiVersion: v1\nkind: Config\npreferences: {}\ncurrent-context: kcache-fakeapi\n"
             "clusters:\n- name: kcache-fakeapi\n  cluster:\n    server: %s\n"
             "    certificate-authority-data: %s\n"
             "contexts:\n- name: kcache-fakeapi\n  context:\n    cluster: kcache-fakeapi\n"
             "    user: %s\n    namespace: default\n"
             "users:\n- name: %s\n  user:\n",
             s->url, ca, user ? user : "admin", user ? user : "admin");
    size_t l = strlen(text);
    if (user)
        snprintf(text + l, n - l, "    client-certificate-data: %s\n    client-key-data: %s\n", cb, kb);
    else
        snprintf(text + l, n - l, "    token: %s\n", s->token);
    rc = write_file(path, text);
    free(text);
out:
    free(ca);
    free(cert);
    free(key);
    free(cb);
    free(kb);
    return rc;
}

struct strpair { const char *a, *b, *c; };

static int add_token_fn(fa_server_t *s, void *arg)
{
    struct strpair *p = arg;
    fa_token_t *nt = realloc(s->tokens, (s->ntokens + 1) * sizeof(*nt));
    if (!nt)
        return -ENOMEM;
    s->tokens = nt;
    nt[s->ntokens].token = strdup(p->a);
    nt[s->ntokens].user = strdup(p->b);
    if (!nt[s->ntokens].token || !nt[s->ntokens].user) {
        free(nt[s->ntokens].token);
        free(nt[s->ntokens].user);
        return -ENOMEM;
    }
    s->ntokens++;
    return 0;
}

int kc_fakeapi_add_token(kc_fakeapi_t *sp, const char *token, const char *user)
{
    struct strpair p = {token, user, NULL};
    if (!token || !*token || !user || !*user)
        return -EINVAL;
    return fa_call((fa_server_t *)sp, add_token_fn, &p);
}

static int allow_fn(fa_server_t *s, void *arg)
{
    struct strpair *p = arg;
    fa_user_rule_t *nr = realloc(s->rules, (s->nrules + 1) * sizeof(*nr));
    if (!nr)
        return -ENOMEM;
    s->rules = nr;
    nr[s->nrules].user = strdup(p->a);
    nr[s->nrules].verb = strdup(p->b);
    nr[s->nrules].resource = strdup(p->c);
    if (!nr[s->nrules].user || !nr[s->nrules].verb || !nr[s->nrules].resource) {
        free(nr[s->nrules].user);
        free(nr[s->nrules].verb);
        free(nr[s->nrules].resource);
        return -ENOMEM;
    }
    s->nrules++;
    return 0;
}

int kc_fakeapi_set_allow(kc_fakeapi_t *sp, const char *user, const char *verb,
                         const char *resource)
{
    struct strpair p = {user, verb, resource};
    if (!user || !verb || !resource)
        return -EINVAL;
    return fa_call((fa_server_t *)sp, allow_fn, &p);
}

static int clear_allow_fn(fa_server_t *s, void *arg)
{
    (void)arg;
    for (size_t i = 0; i < s->nrules; i++) {
        free(s->rules[i].user);
        free(s->rules[i].verb);
        free(s->rules[i].resource);
    }
    free(s->rules);
    s->rules = NULL;
    s->nrules = 0;
    return 0;
}

int kc_fakeapi_clear_allow(kc_fakeapi_t *sp)
{
    return fa_call((fa_server_t *)sp, clear_allow_fn, NULL);
}

/* ---- direct data access ---------------------------------------------------- */

struct data_arg {
    const char *resource, *ns, *name, *json;
    char **out;
    size_t count;
};

static int apply_fn(fa_server_t *s, void *arg)
{
    struct data_arg *a = arg;
    const fa_res_t *r = fa_res_by_plural(a->resource);
    fa_status_t st = {0};
    cJSON *j;
    fa_obj_t *o;
    if (!r)
        return KC_ENOTFOUND;
    j = cJSON_Parse(a->json);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return KC_EPARSE;
    }
    o = fa_do_apply(s, r, j, &st);
    cJSON_Delete(j);
    if (!o)
        return fa_status_errno(&st) ? fa_status_errno(&st) : -ENOMEM;
    if (a->out) {
        *a->out = fa_obj_text(o);
        if (!*a->out) {
            fa_obj_unref(o);
            return -ENOMEM;
        }
    }
    fa_obj_unref(o);
    return 0;
}

int kc_fakeapi_apply_json(kc_fakeapi_t *sp, const char *resource, const char *json,
                          char **out_json)
{
    struct data_arg a = {resource, NULL, NULL, json, out_json, 0};
    if (out_json)
        *out_json = NULL;
    if (!resource || !json)
        return -EINVAL;
    return fa_call((fa_server_t *)sp, apply_fn, &a);
}

static int delete_fn(fa_server_t *s, void *arg)
{
    struct data_arg *a = arg;
    const fa_res_t *r = fa_res_by_plural(a->resource);
    fa_write_t w = {0};
    fa_status_t st = {0};
    fa_obj_t *o, *last = NULL;
    if (!r)
        return KC_ENOTFOUND;
    w.res = r;
    w.ns = r->namespaced ? (a->ns ? a->ns : "default") : NULL;
    w.name = a->name;
    o = fa_do_delete(s, &w, &last, &st);
    fa_obj_unref(o);
    fa_obj_unref(last);
    return o || last ? 0 : fa_status_errno(&st);
}

int kc_fakeapi_delete(kc_fakeapi_t *sp, const char *resource, const char *ns, const char *name)
{
    struct data_arg a = {resource, ns, name, NULL, NULL, 0};
    if (!resource || !name)
        return -EINVAL;
    return fa_call((fa_server_t *)sp, delete_fn, &a);
}

static int get_fn(fa_server_t *s, void *arg)
{
    struct data_arg *a = arg;
    const fa_res_t *r = fa_res_by_plural(a->resource);
    fa_obj_t *o;
    if (!r)
        return KC_ENOTFOUND;
    o = fa_store_get(&s->store, r, r->namespaced ? (a->ns ? a->ns : "default") : NULL, a->name);
    if (!o)
        return KC_ENOTFOUND;
    *a->out = fa_obj_text(o);
    return *a->out ? 0 : -ENOMEM;
}

int kc_fakeapi_get_json(kc_fakeapi_t *sp, const char *resource, const char *ns,
                        const char *name, char **out_json)
{
    struct data_arg a = {resource, ns, name, NULL, out_json, 0};
    if (!resource || !name || !out_json)
        return -EINVAL;
    *out_json = NULL;
    return fa_call((fa_server_t *)sp, get_fn, &a);
}

static int list_fn(fa_server_t *s, void *arg)
{
    struct data_arg *a = arg;
    const fa_res_t *r = fa_res_by_plural(a->resource);
    fa_objv_t snap;
    struct evbuffer *b;
    if (!r)
        return KC_ENOTFOUND;
    if (fa_store_snapshot(&s->store, r, a->ns, s->store.rv, &snap) < 0)
        return -ENOMEM;
    a->count = snap.n;
    if (!a->out) {
        fa_objv_free(&snap);
        return 0;
    }
    b = evbuffer_new();
    if (!b) {
        fa_objv_free(&snap);
        return -ENOMEM;
    }
    evbuffer_add_printf(b, "{\"kind\":\"%sList\",\"apiVersion\":\"%s\",\"metadata\":{\"resourceVersion\":\"%" PRIu64 "\"},\"items\":[",
                        r->kind, r->gv, s->store.rv);
    for (size_t i = 0; i < snap.n; i++) {
        if (i)
            evbuffer_add(b, ",", 1);
        evbuffer_add(b, snap.v[i]->body, snap.v[i]->len);
    }
    evbuffer_add(b, "]}", 3);
    fa_objv_free(&snap);
    size_t n = evbuffer_get_length(b);
    *a->out = malloc(n);
    if (*a->out)
        evbuffer_remove(b, *a->out, n);
    evbuffer_free(b);
    return *a->out ? 0 : -ENOMEM;
}

int kc_fakeapi_list_json(kc_fakeapi_t *sp, const char *resource, const char *ns,
                         char **out_json)
{
    struct data_arg a = {resource, ns, NULL, NULL, out_json, 0};
    if (!resource || !out_json)
        return -EINVAL;
    *out_json = NULL;
    return fa_call((fa_server_t *)sp, list_fn, &a);
}

size_t kc_fakeapi_count(kc_fakeapi_t *sp, const char *resource, const char *ns)
{
    struct data_arg a = {resource, ns, NULL, NULL, NULL, 0};
    if (!resource || fa_call((fa_server_t *)sp, list_fn, &a) < 0)
        return 0;
    return a.count;
}

static int rev_fn(fa_server_t *s, void *arg)
{
    *(uint64_t *)arg = s->store.rv;
    return 0;
}

uint64_t kc_fakeapi_revision(kc_fakeapi_t *sp)
{
    uint64_t rv = 0;
    fa_call((fa_server_t *)sp, rev_fn, &rv);
    return rv;
}

static int compact_fn(fa_server_t *s, void *arg)
{
    (void)arg;
    fa_watch_pump_all(s); /* deliver what is due before it is gone */
    fa_store_compact(&s->store);
    return 0;
}

int kc_fakeapi_compact(kc_fakeapi_t *sp)
{
    return fa_call((fa_server_t *)sp, compact_fn, NULL);
}

static int restart_fn(fa_server_t *s, void *arg)
{
    (void)arg;
    if (s->running && s->http)
        fa_http_restart(s);
    return 0;
}

int kc_fakeapi_restart(kc_fakeapi_t *sp)
{
    return fa_call((fa_server_t *)sp, restart_fn, NULL);
}

static int close_watches_fn(fa_server_t *s, void *arg)
{
    (void)arg;
    fa_watch_close_all(s, 0);
    return 0;
}

int kc_fakeapi_close_watches(kc_fakeapi_t *sp)
{
    return fa_call((fa_server_t *)sp, close_watches_fn, NULL);
}

static int faults_fn(fa_server_t *s, void *arg)
{
    kc_fakeapi_faults_t z = KC_FAKEAPI_FAULTS_INIT;
    s->faults = arg ? *(kc_fakeapi_faults_t *)arg : z;
    s->http_faults_done = 0;
    return 0;
}

int kc_fakeapi_set_faults(kc_fakeapi_t *sp, const kc_fakeapi_faults_t *f)
{
    return fa_call((fa_server_t *)sp, faults_fn, (void *)f);
}

static int counters_fn(fa_server_t *s, void *arg)
{
    *(kc_fakeapi_counters_t *)arg = s->cnt;
    return 0;
}

int kc_fakeapi_get_counters(kc_fakeapi_t *sp, kc_fakeapi_counters_t *out)
{
    return fa_call((fa_server_t *)sp, counters_fn, out);
}

static int reset_counters_fn(fa_server_t *s, void *arg)
{
    uint64_t open = s->cnt.watches_open;
    (void)arg;
    memset(&s->cnt, 0, sizeof(s->cnt));
    s->cnt.watches_open = open;
    return 0;
}

int kc_fakeapi_reset_counters(kc_fakeapi_t *sp)
{
    return fa_call((fa_server_t *)sp, reset_counters_fn, NULL);
}

struct log_arg { int clear; char *out; };

static int reqlog_fn(fa_server_t *s, void *arg)
{
    struct log_arg *a = arg;
    size_t n = 1;
    for (size_t i = 0; i < s->reqlog_n; i++)
        n += strlen(s->reqlog[(s->reqlog_head + i) % 1024]) + 1;
    a->out = malloc(n);
    if (!a->out)
        return -ENOMEM;
    a->out[0] = 0;
    size_t off = 0;
    for (size_t i = 0; i < s->reqlog_n; i++) {
        const char *l = s->reqlog[(s->reqlog_head + i) % 1024];
        size_t ln = strlen(l);
        memcpy(a->out + off, l, ln);
        a->out[off + ln] = '\n';
        off += ln + 1;
    }
    a->out[off] = 0;
    if (a->clear) {
        for (size_t i = 0; i < s->reqlog_n; i++)
            free(s->reqlog[(s->reqlog_head + i) % 1024]);
        s->reqlog_n = 0;
        s->reqlog_head = 0;
    }
    return 0;
}

char *kc_fakeapi_request_log(kc_fakeapi_t *sp, int clear)
{
    struct log_arg a = {clear, NULL};
    fa_call((fa_server_t *)sp, reqlog_fn, &a);
    return a.out;
}

struct load_arg { const kc_fakeapi_load_t *l; size_t n; double rate; };

static int preload_fn(fa_server_t *s, void *arg)
{
    struct load_arg *a = arg;
    return fa_load_preload(s, a->l, a->n);
}

int kc_fakeapi_preload(kc_fakeapi_t *sp, const kc_fakeapi_load_t *l, size_t count)
{
    kc_fakeapi_load_t d = KC_FAKEAPI_LOAD_INIT;
    struct load_arg a = {l ? l : &d, count, 0};
    return fa_call((fa_server_t *)sp, preload_fn, &a);
}

static int churn_fn(fa_server_t *s, void *arg)
{
    struct load_arg *a = arg;
    return fa_load_churn(s, a->l, a->n);
}

int kc_fakeapi_churn(kc_fakeapi_t *sp, const kc_fakeapi_load_t *l, size_t n)
{
    kc_fakeapi_load_t d = KC_FAKEAPI_LOAD_INIT;
    int rc = 0;
    /* In slices, so that between them the loop streams the events to the
     * watchers instead of letting a burst overflow the history window. */
    while (rc == 0 && n > 0) {
        struct load_arg a = {l ? l : &d, n < 256 ? n : 256, 0};
        rc = fa_call((fa_server_t *)sp, churn_fn, &a);
        n -= a.n;
    }
    return rc;
}

static int churn_rate_fn(fa_server_t *s, void *arg)
{
    struct load_arg *a = arg;
    const fa_res_t *r = fa_res_by_plural(a->l->resource ? a->l->resource : "configmaps");
    if (!r)
        return -EINVAL;
    s->churn_load = *a->l;
    s->churn_load.resource = r->plural; /* static string: no copy needed */
    s->churn_rate = a->rate;
    s->churn_carry = 0;
    s->churn_last_ns = kc_now_ns();
    if (a->rate > 0 && s->running) {
        struct timeval tv = {0, 10000};
        event_add(s->churn_ev, &tv);
    } else if (a->rate <= 0) {
        event_del(s->churn_ev);
    }
    return 0;
}

int kc_fakeapi_set_churn_rate(kc_fakeapi_t *sp, const kc_fakeapi_load_t *l, double ops_per_s)
{
    kc_fakeapi_load_t d = KC_FAKEAPI_LOAD_INIT;
    struct load_arg a = {l ? l : &d, 0, ops_per_s};
    return fa_call((fa_server_t *)sp, churn_rate_fn, &a);
}
