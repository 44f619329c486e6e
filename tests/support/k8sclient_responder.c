/*
 * Scripted HTTPS responder for k8sclient tests and benchmarks (see the
 * header).  Blocking OpenSSL on plain sockets: an accept thread polls the
 * listening socket and a wake pipe; each connection gets a thread that
 * parses HTTP/1.1 requests (headers capped at 64 KiB, bodies at 16 MiB)
 * and calls the handler.  The list of connections is under conns_mu so
 * kc_resp_stop can shut their sockets down and join their threads.
 */
#include "k8sclient_responder.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_HEAD (64u << 10)
#define MAX_BODY (16u << 20)

struct kc_resp_conn {
    kc_resp_t *r;
    int fd;
    SSL *ssl;
    pthread_t th;
    int done;
    char buf[MAX_HEAD];
    size_t blen;
    struct kc_resp_conn *next;
};

struct kc_resp {
    kc_resp_handler h;
    void *ud;
    int lfd;
    int port;
    int wake[2];
    char url[64];
    SSL_CTX *ctx;
    EVP_PKEY *ca_key;
    X509 *ca;
    char *ca_pem;
    char *other_ca_pem;
    pthread_t accept_th;
    _Atomic int stopping;
    _Atomic unsigned long seq;
    _Atomic unsigned long nconn;
    long serial;
    pthread_mutex_t mu;          /* conns, serial */
    kc_resp_conn_t *conns;
};

/* ---- certificates ---- */

static char *pem_of_cert(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p, *out;
    long n;

    PEM_write_bio_X509(b, x);
    n = BIO_get_mem_data(b, &p);
    out = strndup(p, (size_t)n);
    BIO_free(b);
    return out;
}

static char *pem_of_key(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p, *out;
    long n;

    PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    n = BIO_get_mem_data(b, &p);
    out = strndup(p, (size_t)n);
    BIO_free(b);
    return out;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *val)
{
    X509V3_CTX v3;
    X509_EXTENSION *e;

    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    e = X509V3_EXT_conf_nid(NULL, &v3, nid, val);
    if (e) {
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
}

static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey, int is_ca,
                       const char *san, int client, long serial)
{
    X509 *x = X509_new();
    X509_NAME *n;

    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 2 * 86400);
    X509_set_pubkey(x, key);
    n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    if (is_ca) {
        add_ext(x, issuer, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, issuer, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature");
    } else {
        add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(x, issuer, NID_key_usage, "critical,digitalSignature,keyEncipherment");
        add_ext(x, issuer, NID_ext_key_usage, client ? "clientAuth" : "serverAuth");
    }
    if (san)
        add_ext(x, issuer, NID_subject_alt_name, san);
    X509_sign(x, ikey ? ikey : key, EVP_sha256());
    return x;
}

int kc_resp_issue_client_cert(kc_resp_t *r, const char *cn, char **cert_pem, char **key_pem)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x;
    long serial;

    if (k == NULL)
        return -ENOMEM;
    pthread_mutex_lock(&r->mu);
    serial = ++r->serial;
    pthread_mutex_unlock(&r->mu);
    x = make_cert(cn, k, r->ca, r->ca_key, 0, NULL, 1, serial);
    *cert_pem = pem_of_cert(x);
    *key_pem = pem_of_key(k);
    X509_free(x);
    EVP_PKEY_free(k);
    return 0;
}

/* ---- I/O ---- */

int kc_resp_write(kc_resp_conn_t *c, const char *p, size_t n)
{
    while (n > 0) {
        int w = SSL_write(c->ssl, p, n > (1u << 30) ? (1 << 30) : (int)n);
        if (w <= 0)
            return -EPIPE;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static const char *reason_phrase(int code)
{
    switch (code) {
    case 200: return "OK";
    case 201: return "Created";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

int kc_resp_send(kc_resp_conn_t *c, int code, const char *content_type,
                 const char *extra_headers, const char *body, size_t len)
{
    char head[2048];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-cache, private\r\n%s\r\n",
                     code, reason_phrase(code), content_type ? content_type : "application/json",
                     len, extra_headers ? extra_headers : "");

    if (kc_resp_write(c, head, (size_t)n))
        return -EPIPE;
    return len ? kc_resp_write(c, body, len) : 0;
}

int kc_resp_send_json(kc_resp_conn_t *c, int code, const char *json)
{
    return kc_resp_send(c, code, "application/json", NULL, json, strlen(json));
}

int kc_resp_send_status(kc_resp_conn_t *c, int code, const char *reason, const char *message,
                        const char *extra_headers)
{
    char body[1024];
    int n = snprintf(body, sizeof(body),
                     "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"
                     "\"status\":\"Failure\",\"message\":\"%s\",\"reason\":\"%s\","
                     "\"details\":{\"name\":\"x\",\"kind\":\"configmaps\"},\"code\":%d}",
                     message, reason, code);

    return kc_resp_send(c, code, "application/json", extra_headers, body, (size_t)n);
}

int kc_resp_start_chunked(kc_resp_conn_t *c)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                               "Cache-Control: no-cache, private\r\n"
                               "Transfer-Encoding: chunked\r\n\r\n";

    return kc_resp_write(c, head, sizeof(head) - 1);
}

int kc_resp_chunk(kc_resp_conn_t *c, const char *p, size_t n)
{
    char h[32], *one;
    int hl = snprintf(h, sizeof(h), "%zx\r\n", n), rc;

    /* one write per chunk: one TLS record run instead of three */
    one = malloc((size_t)hl + n + 2);
    if (one == NULL)
        return -ENOMEM;
    memcpy(one, h, (size_t)hl);
    if (n)
        memcpy(one + hl, p, n);
    memcpy(one + hl + n, "\r\n", 2);
    rc = kc_resp_write(c, one, (size_t)hl + n + 2);
    free(one);
    return rc;
}

int kc_resp_stopping(const kc_resp_conn_t *c)
{
    return atomic_load(&c->r->stopping);
}

/* Read until buf holds a full header block; returns its length or <0. */
static long read_head(kc_resp_conn_t *c)
{
    for (;;) {
        char *e = c->blen >= 4 ? memmem(c->buf, c->blen, "\r\n\r\n", 4) : NULL;
        int n;
        if (e)
            return (long)(e - c->buf) + 4;
        if (c->blen >= sizeof(c->buf))
            return -1;
        n = SSL_read(c->ssl, c->buf + c->blen, (int)(sizeof(c->buf) - c->blen));
        if (n <= 0)
            return -1;
        c->blen += (size_t)n;
    }
}

static void header_value(const char *head, size_t hl, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = head, *end = head + hl;

    out[0] = '\0';
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (eol == NULL)
            break;
        if ((size_t)(eol - p) > nl + 1 && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            size_t k;
            while (*v == ' ')
                v++;
            k = (size_t)(eol - v) < cap - 1 ? (size_t)(eol - v) : cap - 1;
            memcpy(out, v, k);
            out[k] = '\0';
            return;
        }
        p = eol + 2;
    }
}

static void *conn_main(void *arg)
{
    kc_resp_conn_t *c = arg;
    kc_resp_t *r = c->r;

    if (SSL_accept(c->ssl) != 1)
        goto out;
    for (;;) {
        kc_resp_req_t rq;
        long hl = read_head(c);
        char cl[32];
        size_t blen, have;
        X509 *peer;
        int rc;

        if (hl < 0 || atomic_load(&r->stopping))
            break;
        memset(&rq, 0, sizeof(rq));
        if (sscanf(c->buf, "%15s %4095s", rq.method, rq.target) != 2)
            break;
        header_value(c->buf, (size_t)hl, "Authorization", rq.authorization,
                     sizeof(rq.authorization));
        header_value(c->buf, (size_t)hl, "Content-Type", rq.content_type, sizeof(rq.content_type));
        header_value(c->buf, (size_t)hl, "User-Agent", rq.user_agent, sizeof(rq.user_agent));
        header_value(c->buf, (size_t)hl, "Accept-Encoding", rq.accept_encoding,
                     sizeof(rq.accept_encoding));
        header_value(c->buf, (size_t)hl, "Content-Length", cl, sizeof(cl));
        blen = cl[0] ? strtoul(cl, NULL, 10) : 0;
        if (blen > MAX_BODY)
            break;
        rq.body = malloc(blen + 1);
        if (rq.body == NULL)
            break;
        have = c->blen - (size_t)hl;
        if (have > blen)
            have = blen;
        memcpy(rq.body, c->buf + hl, have);
        memmove(c->buf, c->buf + hl + have, c->blen - (size_t)hl - have);
        c->blen -= (size_t)hl + have;
        while (have < blen) {
            int n = SSL_read(c->ssl, rq.body + have, (int)(blen - have));
            if (n <= 0) {
                free(rq.body);
                goto out;
            }
            have += (size_t)n;
        }
        rq.body[blen] = '\0';
        rq.body_len = blen;
        peer = SSL_get0_peer_certificate(c->ssl);
        if (peer && SSL_get_verify_result(c->ssl) == X509_V_OK)
            X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, rq.client_cn,
                                      sizeof(rq.client_cn));
        rq.seq = atomic_fetch_add(&r->seq, 1) + 1;
        rc = r->h(r->ud, &rq, c);
        free(rq.body);
        if (rc)
            break;
    }
out:
    SSL_shutdown(c->ssl);
    pthread_mutex_lock(&r->mu);
    c->done = 1;
    shutdown(c->fd, SHUT_RDWR);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static void reap(kc_resp_t *r, int all)
{
    kc_resp_conn_t **pp = &r->conns, *c;

    for (;;) {
        pthread_mutex_lock(&r->mu);
        while ((c = *pp) != NULL && !(c->done || all))
            pp = &c->next;
        if (c)
            *pp = c->next;
        pthread_mutex_unlock(&r->mu);
        if (c == NULL)
            return;
        pthread_join(c->th, NULL);
        SSL_free(c->ssl);
        close(c->fd);
        free(c);
    }
}

static void *accept_main(void *arg)
{
    kc_resp_t *r = arg;

    while (!atomic_load(&r->stopping)) {
        struct pollfd p[2] = {{r->lfd, POLLIN, 0}, {r->wake[0], POLLIN, 0}};
        kc_resp_conn_t *c;
        int fd, one = 1;

        if (poll(p, 2, 200) <= 0 || p[1].revents)
            continue;
        fd = accept(r->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c = calloc(1, sizeof(*c));
        c->r = r;
        c->fd = fd;
        c->ssl = SSL_new(r->ctx);
        SSL_set_fd(c->ssl, fd);
        atomic_fetch_add(&r->nconn, 1);
        pthread_mutex_lock(&r->mu);
        c->next = r->conns;
        r->conns = c;
        pthread_mutex_unlock(&r->mu);
        pthread_create(&c->th, NULL, conn_main, c);
        reap(r, 0);
    }
    return NULL;
}

int kc_resp_start(kc_resp_handler h, void *ud, kc_resp_t **out)
{
    kc_resp_t *r = calloc(1, sizeof(*r));
    EVP_PKEY *skey, *okey;
    X509 *scert, *oca;
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    X509_STORE *store;
    int one = 1;

    if (r == NULL)
        return -ENOMEM;
    /* a client hanging up must not kill the test with SIGPIPE */
    signal(SIGPIPE, SIG_IGN);
    r->h = h;
    r->ud = ud;
    pthread_mutex_init(&r->mu, NULL);
    r->ca_key = EVP_EC_gen("P-256");
    r->ca = make_cert("kcache test CA", r->ca_key, NULL, NULL, 1, NULL, 0, 1);
    r->ca_pem = pem_of_cert(r->ca);
    okey = EVP_EC_gen("P-256");
    oca = make_cert("unrelated CA", okey, NULL, NULL, 1, NULL, 0, 1);
    r->other_ca_pem = pem_of_cert(oca);
    X509_free(oca);
    EVP_PKEY_free(okey);
    skey = EVP_EC_gen("P-256");
    r->serial = 100;
    scert = make_cert("127.0.0.1", skey, r->ca, r->ca_key, 0, "IP:127.0.0.1,DNS:localhost", 0,
                      ++r->serial);
    r->ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(r->ctx, TLS1_2_VERSION);
    SSL_CTX_use_certificate(r->ctx, scert);
    SSL_CTX_use_PrivateKey(r->ctx, skey);
    store = SSL_CTX_get_cert_store(r->ctx);
    X509_STORE_add_cert(store, r->ca);
    /* ask for a client certificate, but let the handler decide about auth */
    SSL_CTX_set_verify(r->ctx, SSL_VERIFY_PEER, NULL);
    /* needed for session resumption when client certificates are requested */
    SSL_CTX_set_session_id_context(r->ctx, (const unsigned char *)"kc-resp", 7);
    {
        STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
        sk_X509_NAME_push(names, X509_NAME_dup(X509_get_subject_name(r->ca)));
        SSL_CTX_set_client_CA_list(r->ctx, names);
    }
    X509_free(scert);
    EVP_PKEY_free(skey);

    r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(r->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(r->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(r->lfd, 64) != 0 ||
        getsockname(r->lfd, (struct sockaddr *)&sa, &sl) != 0 || pipe(r->wake) != 0) {
        close(r->lfd);
        SSL_CTX_free(r->ctx);
        free(r);
        return -errno;
    }
    r->port = ntohs(sa.sin_port);
    snprintf(r->url, sizeof(r->url), "https://127.0.0.1:%d", r->port);
    pthread_create(&r->accept_th, NULL, accept_main, r);
    *out = r;
    return 0;
}

void kc_resp_stop(kc_resp_t *r)
{
    kc_resp_conn_t *c;

    if (r == NULL)
        return;
    atomic_store(&r->stopping, 1);
    if (write(r->wake[1], "x", 1) < 0) {
        /* the accept thread also polls with a timeout */
    }
    pthread_join(r->accept_th, NULL);
    pthread_mutex_lock(&r->mu);
    for (c = r->conns; c; c = c->next)
        shutdown(c->fd, SHUT_RDWR);
    pthread_mutex_unlock(&r->mu);
    reap(r, 1);
    close(r->lfd);
    close(r->wake[0]);
    close(r->wake[1]);
    SSL_CTX_free(r->ctx);
    X509_free(r->ca);
    EVP_PKEY_free(r->ca_key);
    free(r->ca_pem);
    free(r->other_ca_pem);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

int kc_resp_port(const kc_resp_t *r) { return r->port; }
const char *kc_resp_url(const kc_resp_t *r) { return r->url; }
const char *kc_resp_ca_pem(const kc_resp_t *r) { return r->ca_pem; }
const char *kc_resp_other_ca_pem(const kc_resp_t *r) { return r->other_ca_pem; }
unsigned long kc_resp_connections(const kc_resp_t *r) { return atomic_load(&((kc_resp_t *)r)->nconn); }
