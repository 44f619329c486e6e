/*
 * A small scripted HTTPS responder for the k8sclient tests and the decode
 * benchmark: real TLS (its own CA generated at start, server certificate
 * for 127.0.0.1 and localhost, optional client certificates signed by the
 * same CA), HTTP/1.1 with keep-alive, and a handler the test writes that
 * answers each request however the scenario needs: Status JSON, plain text,
 * HTML, chunked streams, stalls, abrupt closes.
 *
 * Threads: one accept thread plus one thread per connection; the handler
 * runs on the connection's thread (so it must be thread-safe if clients
 * open several connections).  kc_resp_stop ends every connection and joins
 * every thread.  Listens on 127.0.0.1 only.
 */
#ifndef K8SCLIENT_RESPONDER_H
#define K8SCLIENT_RESPONDER_H

#include <stddef.h>

typedef struct kc_resp kc_resp_t;
typedef struct kc_resp_conn kc_resp_conn_t;

typedef struct kc_resp_req {
    char method[16];
    char target[4096];        /* path?query as sent */
    char authorization[1024]; /* "" if absent */
    char content_type[128];
    char user_agent[128];
    char accept_encoding[128]; /* "" if absent */
    char client_cn[128];      /* CN of a verified client certificate, or "" */
    char *body;               /* NUL-terminated */
    size_t body_len;
    unsigned long seq;        /* 1-based request number on this server */
} kc_resp_req_t;

/* Answer one request through conn.  Return 0 to keep the connection open
 * for the next request, non-zero to close it. */
typedef int (*kc_resp_handler)(void *ud, const kc_resp_req_t *rq, kc_resp_conn_t *conn);

int kc_resp_start(kc_resp_handler h, void *ud, kc_resp_t **out);
void kc_resp_stop(kc_resp_t *r);   /* joins everything and frees; NULL ok */

int kc_resp_port(const kc_resp_t *r);
const char *kc_resp_url(const kc_resp_t *r);     /* "https://127.0.0.1:PORT" */
const char *kc_resp_ca_pem(const kc_resp_t *r);
/* A second, unrelated CA (for "wrong CA" tests). */
const char *kc_resp_other_ca_pem(const kc_resp_t *r);
/* Issue a client certificate for CN=cn signed by the responder's CA; PEM
 * strings to free(). */
int kc_resp_issue_client_cert(kc_resp_t *r, const char *cn, char **cert_pem, char **key_pem);
/* Connections accepted so far. */
unsigned long kc_resp_connections(const kc_resp_t *r);

/* Writing a response. */
int kc_resp_send(kc_resp_conn_t *c, int code, const char *content_type,
                 const char *extra_headers, const char *body, size_t len);
int kc_resp_send_json(kc_resp_conn_t *c, int code, const char *json);
/* Send a Kubernetes Status with code, reason, message. */
int kc_resp_send_status(kc_resp_conn_t *c, int code, const char *reason, const char *message,
                        const char *extra_headers);
/* Start a chunked 200 application/json response, then chunks; n == 0 ends it. */
int kc_resp_start_chunked(kc_resp_conn_t *c);
int kc_resp_chunk(kc_resp_conn_t *c, const char *p, size_t n);
/* Raw bytes. */
int kc_resp_write(kc_resp_conn_t *c, const char *p, size_t n);
/* 1 once the responder is stopping (long handlers should return). */
int kc_resp_stopping(const kc_resp_conn_t *c);

#endif
