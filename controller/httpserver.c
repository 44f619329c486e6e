/*
 * The probe (/healthz, /readyz) and metrics (/metrics) HTTP servers, on
 * libevent's evhttp: no hand-written HTTP parsing.
 *
 * One thread runs one event_base holding up to two evhttp listeners.  All
 * request callbacks run on that thread.  To stop, another thread writes a
 * byte to a pipe the base watches; its callback breaks the loop on the
 * server thread, so libevent's own threading support is not needed (no
 * process-global evthread setup).  Nothing in this file holds a lock while
 * calling the ready/health callbacks or kc_metrics_write.
 */
#include "kc_controller.h"
#include "ctrl_int.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

struct kc_httpserver {
    struct event_base *base;
    struct evhttp *http[2];          /* metrics, probe (probe may be NULL if shared) */
    int port[2];
    struct event *wake_ev;
    int wake[2];                     /* pipe: [0] read in loop, [1] written by stop */
    pthread_t thread;
    bool thread_started;
    kc_metrics_t *metrics;
    kc_check_cb ready, healthy;
    void *ready_ud, *healthy_ud;
    kc_logger_t log;
};

static void reply_text(struct evhttp_request *req, int code, const char *reason,
                       const char *ctype, const char *body, size_t len)
{
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
    if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD)
        evbuffer_add(b, body, len);
    evhttp_send_reply(req, code, reason, b);
    evbuffer_free(b);
}

static void check_reply(struct evhttp_request *req, kc_check_cb cb, void *ud)
{
    char why[256] = "";
    char body[300];
    int n;

    if (cb == NULL || cb(ud, why, sizeof(why))) {
        reply_text(req, 200, "OK", "text/plain; charset=utf-8", "ok", 2);
        return;
    }
    why[sizeof(why) - 1] = '\0';
    n = snprintf(body, sizeof(body), "not ready: %s\n", why[0] ? why : "unknown");
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(body))
        n = sizeof(body) - 1;
    reply_text(req, 503, "Service Unavailable", "text/plain; charset=utf-8", body,
               (size_t)n);
}

static void handle_healthz(struct evhttp_request *req, void *arg)
{
    kc_httpserver_t *s = arg;
    check_reply(req, s->healthy, s->healthy_ud);
}

static void handle_readyz(struct evhttp_request *req, void *arg)
{
    kc_httpserver_t *s = arg;
    check_reply(req, s->ready, s->ready_ud);
}

static void handle_metrics(struct evhttp_request *req, void *arg)
{
    kc_httpserver_t *s = arg;
    char *text = NULL;
    size_t len = 0;
    int rc;

    if (s->metrics == NULL) {
        reply_text(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", "", 0);
        return;
    }
    rc = kc_metrics_write(s->metrics, &text, &len);
    if (rc != 0) {
        kc_log(&s->log, KC_LOG_ERROR, "metrics", "rendering /metrics failed: %s",
               kc_strerror(rc));
        evhttp_send_error(req, 500, NULL);
        return;
    }
    reply_text(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

static void handle_other(struct evhttp_request *req, void *arg)
{
    (void)arg;
    reply_text(req, 404, "Not Found", "text/plain; charset=utf-8", "404 page not found\n",
               19);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    kc_httpserver_t *s = arg;
    char c;

    (void)what;
    if (read(fd, &c, 1) < 0) {
        /* nothing to do: the loop stops either way */
    }
    event_base_loopbreak(s->base);
}

static void *server_main(void *arg)
{
    kc_httpserver_t *s = arg;
    event_base_dispatch(s->base);
    return NULL;
}

/* Split "host:port" / ":port" / "[v6]:port".  host gets "0.0.0.0" when
 * empty. */
static int parse_addr(const char *addr, char *host, size_t hostsz, int *port)
{
    const char *colon;
    size_t hl;
    char *end;
    long p;

    if (addr[0] == '[') {
        const char *rb = strchr(addr, ']');
        if (rb == NULL || rb[1] != ':')
            return -EINVAL;
        hl = (size_t)(rb - addr - 1);
        if (hl >= hostsz)
            return -EINVAL;
        memcpy(host, addr + 1, hl);
        host[hl] = '\0';
        colon = rb + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL)
            return -EINVAL;
        hl = (size_t)(colon - addr);
        if (hl >= hostsz)
            return -EINVAL;
        memcpy(host, addr, hl);
        host[hl] = '\0';
        if (hl == 0)
            snprintf(host, hostsz, "0.0.0.0");
    }
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end != '\0' || p < 0 || p > 65535)
        return -EINVAL;
    *port = (int)p;
    return 0;
}

static int bound_port(struct evhttp_bound_socket *h)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    evutil_socket_t fd = evhttp_bound_socket_get_fd(h);

    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

static int disabled(const char *a)
{
    return a == NULL || a[0] == '\0' || strcmp(a, "0") == 0;
}

static int make_http(kc_httpserver_t *s, int which, const char *addr, bool metrics,
                     bool probes, kc_errbuf_t *eb)
{
    char host[256];
    int port;
    struct evhttp *h;
    struct evhttp_bound_socket *bs;

    if (parse_addr(addr, host, sizeof(host), &port) != 0)
        return kc_errf(eb, -EINVAL, "bad listen address \"%s\"", addr);
    h = evhttp_new(s->base);
    if (h == NULL)
        return kc_errf(eb, -ENOMEM, "evhttp_new failed");
    s->http[which] = h;
    evhttp_set_allowed_methods(h, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_max_headers_size(h, 16384);
    evhttp_set_max_body_size(h, 4096);
    evhttp_set_timeout(h, 30);
    if (metrics)
        evhttp_set_cb(h, "/metrics", handle_metrics, s);
    if (probes) {
        evhttp_set_cb(h, "/healthz", handle_healthz, s);
        evhttp_set_cb(h, "/readyz", handle_readyz, s);
    }
    evhttp_set_gencb(h, handle_other, s);
    bs = evhttp_bind_socket_with_handle(h, host, (ev_uint16_t)port);
    if (bs == NULL)
        return kc_errf(eb, -EADDRINUSE, "cannot listen on %s: %s", addr, strerror(errno));
    s->port[which] = bound_port(bs);
    return 0;
}

int kc_httpserver_start(const kc_httpserver_opts_t *o, kc_httpserver_t **out,
                        kc_errbuf_t *eb)
{
    kc_httpserver_t *s;
    bool moff, poff, same;
    int rc;

    if (o == NULL || out == NULL)
        return -EINVAL;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->wake[0] = s->wake[1] = -1;
    s->metrics = o->metrics;
    s->ready = o->ready;
    s->ready_ud = o->ready_ud;
    s->healthy = o->healthy;
    s->healthy_ud = o->healthy_ud;
    s->log = o->log;
    s->base = event_base_new();
    if (s->base == NULL) {
        rc = kc_errf(eb, -ENOMEM, "event_base_new failed");
        goto fail;
    }
    if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        rc = kc_errf(eb, -errno, "pipe: %s", strerror(errno));
        goto fail;
    }
    s->wake_ev = event_new(s->base, s->wake[0], EV_READ | EV_PERSIST, on_wake, s);
    if (s->wake_ev == NULL || event_add(s->wake_ev, NULL) != 0) {
        rc = kc_errf(eb, -ENOMEM, "event_new failed");
        goto fail;
    }
    moff = disabled(o->metrics_addr);
    poff = disabled(o->probe_addr);
    /* One listener for both only when the same fixed port is asked for;
     * two ":0" addresses get two ephemeral ports. */
    same = !moff && !poff && strcmp(o->metrics_addr, o->probe_addr) == 0 &&
           !(strlen(o->metrics_addr) >= 2 &&
             strcmp(o->metrics_addr + strlen(o->metrics_addr) - 2, ":0") == 0);
    if (!moff && (rc = make_http(s, 0, o->metrics_addr, true, same, eb)) != 0)
        goto fail;
    if (same)
        s->port[1] = s->port[0];
    else if (!poff && (rc = make_http(s, 1, o->probe_addr, false, true, eb)) != 0)
        goto fail;
    rc = pthread_create(&s->thread, NULL, server_main, s);
    if (rc != 0) {
        rc = kc_errf(eb, -rc, "pthread_create: %s", strerror(rc));
        goto fail;
    }
    s->thread_started = true;
    *out = s;
    return 0;
fail:
    kc_httpserver_stop(s);
    return rc;
}

int kc_httpserver_port(kc_httpserver_t *s, int which)
{
    if (s == NULL || which < 0 || which > 1)
        return 0;
    return s->port[which];
}

void kc_httpserver_stop(kc_httpserver_t *s)
{
    if (s == NULL)
        return;
    if (s->thread_started) {
        char c = 1;
        while (write(s->wake[1], &c, 1) < 0 && errno == EINTR)
            ;
        pthread_join(s->thread, NULL);
    }
    for (int i = 0; i < 2; i++)
        if (s->http[i])
            evhttp_free(s->http[i]);
    if (s->wake_ev)
        event_free(s->wake_ev);
    if (s->base)
        event_base_free(s->base);
    if (s->wake[0] >= 0)
        close(s->wake[0]);
    if (s->wake[1] >= 0)
        close(s->wake[1]);
    free(s);
}
