/*
 * Fake API server: watch streams.  A watch is a chunked 200 response of
 * newline-terminated JSON events.  Each watcher keeps a position (the last
 * revision it has considered) in the global history and pulls the events
 * after it; every object is serialised once, when it is stored, and the
 * same bytes are copied into each watcher's TLS stream.  A backlog can also
 * be rendered ahead (fa_watch_prerender_all, bench_server's burst): the
 * same bytes in one block that pump then hands over in slices by
 * reference, the watcher's position already past them.  Selector
 * transitions follow the real cacher: starts matching -> ADDED, stops
 * matching -> DELETED with the previous content at the event's revision.
 *
 * Flow control: a watcher writes while its connection's output buffer is
 * under FA_WATCH_HIGH bytes and resumes from evhttp's "written" callback,
 * so a slow client never makes the server buffer the world.  A watcher that
 * falls out of the history window has its stream ended (the client then
 * re-watches and gets 410), like the real server's slow-watcher handling.
 *
 * Lifetime: a watcher lives from fa_watch_start until its stream ends
 * (timeout, fault, close-all) or its connection closes (evhttp's close
 * callback).  When the client went away first, evhttp hands the request to
 * us and we free it with evhttp_send_reply_end.  Loop thread only.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent.h>

#include "fakeapi_int.h"

#define FA_WATCH_HIGH (256u * 1024u)

struct fa_watcher {
    fa_server_t *s;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    const fa_res_t *r;
    char *ns;                    /* NULL: all namespaces */
    fa_selector_t sel;
    uint64_t pos;
    int bookmarks;
    int table;                   /* events carry one-row Tables (kubectl get -w) */
    int end_bookmark_pending;
    uint64_t start_rv;           /* bookmarks only past this: the store's revision
                                  * when the watch started (the real cacher's rule) */
    fa_objv_t init;
    size_t init_i;
    long events;
    int stalled;
    int ending;                  /* end the stream after the current chunk */
    int cutting;
    struct event *timeout_ev, *pre_ev, *bm_ev, *stall_ev, *cut_ev;
    struct fa_rendered *rendered;  /* backlog rendered ahead (fa_watch_prerender_all) */
    size_t rendered_off;         /* its bytes already handed to the connection */
    fa_watcher_t *prev, *next;
};

/* A watcher's backlog rendered ahead of streaming (fa_watch_prerender_all):
 * the exact bytes pump would write for those events, one contiguous block
 * that pump hands to the connection slice by slice by reference (no copy);
 * each slice holds a reference until libevent has written it. */
typedef struct fa_rendered {
    int refs;                    /* loop thread only */
    size_t len;
    char data[];
} fa_rendered_t;

static void rendered_unref(fa_rendered_t *r)
{
    if (r && --r->refs == 0)
        free(r);
}

static void rendered_slice_done(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    rendered_unref(arg);
}

static void unlink_free(fa_watcher_t *w)
{
    fa_server_t *s = w->s;
    if (w->prev)
        w->prev->next = w->next;
    else
        s->watchers = w->next;
    if (w->next)
        w->next->prev = w->prev;
    if (s->cnt.watches_open)
        s->cnt.watches_open--;
    if (w->timeout_ev)
        event_free(w->timeout_ev);
    if (w->pre_ev)
        event_free(w->pre_ev);
    if (w->bm_ev)
        event_free(w->bm_ev);
    if (w->stall_ev)
        event_free(w->stall_ev);
    if (w->cut_ev)
        event_free(w->cut_ev);
    rendered_unref(w->rendered);
    fa_objv_free(&w->init);
    fa_selector_free(&w->sel);
    free(w->ns);
    free(w);
}

/* End the stream cleanly (terminating chunk) and forget the watcher. */
static void end_stream(fa_watcher_t *w)
{
    if (w->evcon)
        evhttp_connection_set_closecb(w->evcon, NULL, NULL);
    evhttp_send_reply_end(w->req);
    unlink_free(w);
}

static void on_close(struct evhttp_connection *evcon, void *arg)
{
    fa_watcher_t *w = arg;
    (void)evcon;
    evhttp_connection_set_closecb(evcon, NULL, NULL);
    if (!evhttp_request_get_connection(w->req))
        evhttp_send_reply_end(w->req); /* detached: ours to free */
    unlink_free(w);
}

static struct evbuffer *conn_output(fa_watcher_t *w)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(w->evcon);
    return bufferevent_get_output(bev);
}

/* The bytes of a JSON watch event for o, the ones add_event writes: the
 * type's prefix, the object after its '{', "}\n".  Copied to dst when it
 * is not NULL; returns their length. */
static size_t json_event(const fa_watcher_t *w, int type, const fa_obj_t *o, char *dst)
{
    const char *pre = w->r->ev_prefix[type];
    size_t pl = strlen(pre);

    if (dst) {
        memcpy(dst, pre, pl);
        memcpy(dst + pl, o->body + 1, o->len - 1);
        memcpy(dst + pl + o->len - 1, "}\n", 2);
    }
    return pl + o->len - 1 + 2;
}

static void add_event(fa_watcher_t *w, struct evbuffer *b, int type, fa_obj_t *o)
{
    if (w->table) {
        static const char *types[] = {"ADDED", "MODIFIED", "DELETED"};
        char rv[32];
        snprintf(rv, sizeof(rv), "%" PRIu64, o->rv);
        char *t = fa_table_json(w->r, &o, 1, rv, NULL, -1);
        if (t)
            evbuffer_add_printf(b, "{\"type\":\"%s\",\"object\":%s}\n", types[type], t);
        free(t);
    } else {
        fa_obj_add_to(b, o, w->r->ev_prefix[type]);
        evbuffer_add(b, "}\n", 2);
    }
    w->events++;
    w->s->cnt.watch_events++;
}

/* What follows "metadata" in a bookmark's object: the real server sends an
 * empty object of the kind (Go's zero value) with only its resourceVersion
 * (and the initial-events-end annotation) set, so some kinds carry fields.
 * Byte for byte what kube-apiserver v1.37.2 sends (tests/realapi). */
static const char *bookmark_tail(const fa_res_t *r)
{
    static const struct {
        const char *kind, *tail;
    } t[] = {
        {"Namespace", ",\"spec\":{},\"status\":{}"},
        {"Pod", ",\"spec\":{\"containers\":null},\"status\":{}"},
        {"Service", ",\"spec\":{},\"status\":{\"loadBalancer\":{}}"},
        {"Event", ",\"involvedObject\":{},\"source\":{},\"firstTimestamp\":null,\"lastTimestamp\":null,"
                  "\"eventTime\":null,\"reportingComponent\":\"\",\"reportingInstance\":\"\""},
        {"Lease", ",\"spec\":{}"},
        {"Deployment", ",\"spec\":{\"replicas\":0,\"selector\":null,\"template\":{\"metadata\":{},"
                       "\"spec\":{\"containers\":null}},\"strategy\":{}},\"status\":{}"},
        {"Role", ",\"rules\":null"},
        {"ClusterRole", ",\"rules\":null"},
        {"RoleBinding", ",\"roleRef\":{\"apiGroup\":\"\",\"kind\":\"\",\"name\":\"\"}"},
        {"ClusterRoleBinding", ",\"roleRef\":{\"apiGroup\":\"\",\"kind\":\"\",\"name\":\"\"}"},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (!strcmp(r->kind, t[i].kind))
            return t[i].tail;
    return ""; /* ConfigMap, Secret, ServiceAccount */
}

static void add_bookmark(fa_watcher_t *w, struct evbuffer *b, int initial_end)
{
    evbuffer_add_printf(b, "%s\"metadata\":{\"resourceVersion\":\"%" PRIu64 "\"%s}%s}}\n",
                        w->r->ev_prefix[FA_BOOKMARK], w->s->store.rv,
                        initial_end ? ",\"annotations\":{\"k8s.io/initial-events-end\":\"true\"}" : "",
                        bookmark_tail(w->r));
    w->pos = w->s->store.rv;
    w->s->cnt.watch_bookmarks++;
    w->s->cnt.watch_events++;
}

static void add_error(fa_watcher_t *w, struct evbuffer *b, int code, const char *reason,
                      const char *msg)
{
    evbuffer_add_printf(b,
                        "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"
                        "\"status\":\"Failure\",\"message\":\"%s\",\"reason\":\"%s\",\"code\":%d}}\n",
                        msg, reason, code);
    if (code == 410)
        w->s->cnt.watch_410++;
}

static int ns_ok(const fa_watcher_t *w, const fa_obj_t *o)
{
    return !w->ns || !strcmp(w->ns, o->ns);
}

/* The previous object at this event's revision (for "stops matching"). */
static fa_obj_t *prev_at_rv(fa_event_t *e)
{
    if (!e->prev_at_rv) {
        cJSON *j = fa_obj_json(e->prev);
        if (!j)
            return NULL;
        cJSON *md = cJSON_GetObjectItemCaseSensitive(j, "metadata");
        char rv[32];
        snprintf(rv, sizeof(rv), "%" PRIu64, e->rv);
        cJSON_DeleteItemFromObjectCaseSensitive(md, "resourceVersion");
        cJSON_AddStringToObject(md, "resourceVersion", rv);
        cJSON_DeleteItemFromObjectCaseSensitive(j, "kind");
        cJSON_DeleteItemFromObjectCaseSensitive(j, "apiVersion");
        e->prev_at_rv = fa_obj_from_json(e->res, j);
        cJSON_Delete(j);
    }
    return e->prev_at_rv;
}

static void cut_cb(evutil_socket_t fd, short what, void *arg)
{
    fa_watcher_t *w = arg;
    (void)fd;
    (void)what;
    if (evbuffer_get_length(conn_output(w)) > 0) {
        struct timeval tv = {0, 5000};
        event_add(w->cut_ev, &tv);
        return;
    }
    struct evhttp_connection *evcon = w->evcon;
    evhttp_connection_set_closecb(evcon, NULL, NULL);
    unlink_free(w);
    evhttp_connection_free(evcon); /* frees the request too */
}

/* Write half of one event inside a chunk that claims the whole, then drop
 * the connection once that much is on the wire. */
static void cut_now(fa_watcher_t *w, struct evbuffer *pending, int type, fa_obj_t *o)
{
    struct evbuffer *out = conn_output(w), *ev = evbuffer_new();
    if (!ev)
        return;
    if (evbuffer_get_length(pending) > 0)
        evhttp_send_reply_chunk(w->req, pending);
    add_event(w, ev, type, o);
    size_t n = evbuffer_get_length(ev);
    evbuffer_add_printf(out, "%zx\r\n", n);
    evbuffer_remove_buffer(ev, out, n / 2);
    evbuffer_free(ev);
    w->cutting = 1;
    w->s->cnt.faults++;
    w->cut_ev = evtimer_new(w->s->base, cut_cb, w);
    struct timeval tv = {0, 1000};
    if (w->cut_ev)
        event_add(w->cut_ev, &tv);
}

static void stall_cb(evutil_socket_t fd, short what, void *arg);
static void pump(fa_watcher_t *w);

static void drain_cb(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    pump(arg);
}

/* Per-event faults: returns 1 when the stream must stop after this event,
 * 2 when it was cut (watcher now in cutting state). */
static int event_fault(fa_watcher_t *w, struct evbuffer *b, int type, fa_obj_t *o)
{
    kc_fakeapi_faults_t *f = &w->s->faults;
    if (f->p_cut_mid_event > 0 && fa_rand01(&w->s->rng) < f->p_cut_mid_event) {
        cut_now(w, b, type, o);
        return 2;
    }
    add_event(w, b, type, o);
    if (f->close_watch_after_events > 0 && w->events >= f->close_watch_after_events) {
        w->s->cnt.faults++;
        return 1;
    }
    if (f->p_close_watch > 0 && fa_rand01(&w->s->rng) < f->p_close_watch) {
        w->s->cnt.faults++;
        return 1;
    }
    if (f->p_stall > 0 && f->stall_ms > 0 && fa_rand01(&w->s->rng) < f->p_stall) {
        struct timeval tv = {f->stall_ms / 1000, (f->stall_ms % 1000) * 1000};
        w->s->cnt.faults++;
        w->stalled = 1;
        if (!w->stall_ev)
            w->stall_ev = evtimer_new(w->s->base, stall_cb, w);
        if (w->stall_ev)
            event_add(w->stall_ev, &tv);
    }
    return 0;
}

/* What history event e means to watcher w: the object to send and its
 * event type (*type), or NULL when w is not told about it. */
static fa_obj_t *pick(fa_watcher_t *w, fa_event_t *e, int *type)
{
    if (e->res != w->r)
        return NULL;
    int cur = ns_ok(w, e->obj) && fa_selector_match(&w->sel, e->obj);
    int prev = e->prev && ns_ok(w, e->prev) && fa_selector_match(&w->sel, e->prev);
    if (e->type == FA_ADDED) {
        *type = FA_ADDED;
        return cur ? e->obj : NULL;
    }
    if (e->type == FA_DELETED) {
        *type = FA_DELETED;
        return prev || cur ? e->obj : NULL;
    }
    if (cur) {
        *type = prev ? FA_MODIFIED : FA_ADDED;
        return e->obj;
    }
    *type = FA_DELETED;
    return prev ? prev_at_rv(e) : NULL;
}

/* Hand the next slices of w's rendered backlog to its connection, up to
 * FA_WATCH_HIGH bytes queued, each slice ending at an event's newline (one
 * chunk per slice, as pump makes them).  Returns 1 while some is left. */
static int send_rendered(fa_watcher_t *w)
{
    fa_rendered_t *r = w->rendered;
    size_t out = evbuffer_get_length(conn_output(w));

    while (r != NULL && out < FA_WATCH_HIGH) {
        const char *p = r->data + w->rendered_off;
        size_t left = r->len - w->rendered_off, n = left;
        if (n > FA_WATCH_HIGH - out) {
            const char *nl = memrchr(p, '\n', FA_WATCH_HIGH - out);
            if (nl == NULL) /* one event longer than the room: all of it */
                nl = memchr(p + (FA_WATCH_HIGH - out), '\n', left - (FA_WATCH_HIGH - out));
            n = nl ? (size_t)(nl - p) + 1 : left;
        }
        struct evbuffer *b = evbuffer_new();
        if (!b)
            return 1;
        r->refs++;
        if (evbuffer_add_reference(b, p, n, rendered_slice_done, r) != 0) {
            r->refs--;
            evbuffer_free(b);
            return 1;
        }
        evhttp_send_reply_chunk_with_cb(w->req, b, drain_cb, w);
        evbuffer_free(b);
        out += n;
        w->rendered_off += n;
        if (w->rendered_off == r->len) {
            rendered_unref(r);
            w->rendered = r = NULL;
        }
    }
    return r != NULL;
}

static void pump(fa_watcher_t *w)
{
    fa_server_t *s = w->s;
    fa_store_t *st = &s->store;
    struct evbuffer *b;
    int stop = 0;

    if (w->stalled || w->cutting)
        return;
    if (w->rendered && send_rendered(w))
        return; /* the rest when the connection has drained */
    if (w->init_i >= w->init.n && !w->end_bookmark_pending && w->pos < st->compacted_rv) {
        /* fell out of the history window: the client must re-watch */
        end_stream(w);
        return;
    }
    b = evbuffer_new();
    if (!b)
        return;
    size_t out = evbuffer_get_length(conn_output(w));
    size_t idx = fa_hist_first_after(st, w->pos);
    /* A backlog goes out as one large contiguous chunk: OpenSSL then writes
     * full 16 KiB records, with far fewer syscalls than one per 4 KiB
     * evbuffer chain. */
    if (w->init_i < w->init.n || st->hcount - idx > 16)
        evbuffer_expand(b, FA_WATCH_HIGH - (out < FA_WATCH_HIGH ? out : 0) + 16384);
    while (!stop && !w->stalled && out + evbuffer_get_length(b) < FA_WATCH_HIGH) {
        if (w->init_i < w->init.n) {
            fa_obj_t *o = w->init.v[w->init_i++];
            stop = event_fault(w, b, FA_ADDED, o);
            continue;
        }
        if (w->end_bookmark_pending) {
            w->end_bookmark_pending = 0;
            if (w->init.n) {
                fa_objv_free(&w->init);
                w->init_i = 0;
            }
            add_bookmark(w, b, 1);
            idx = fa_hist_first_after(st, w->pos);
            continue;
        }
        if (idx >= st->hcount)
            break;
        fa_event_t *e = fa_hist_at(st, idx++);
        int type;
        fa_obj_t *o;
        w->pos = e->rv;
        if ((o = pick(w, e, &type)) != NULL)
            stop = event_fault(w, b, type, o);
    }
    if (stop == 2) {
        evbuffer_free(b);
        return;
    }
    if (evbuffer_get_length(b) > 0)
        evhttp_send_reply_chunk_with_cb(w->req, b, drain_cb, w);
    evbuffer_free(b);
    if (stop || w->ending)
        end_stream(w);
}

static void stall_cb(evutil_socket_t fd, short what, void *arg)
{
    fa_watcher_t *w = arg;
    (void)fd;
    (void)what;
    w->stalled = 0;
    pump(w);
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    fa_watcher_t *w = arg;
    (void)fd;
    (void)what;
    if (w->cutting)
        return;
    w->stalled = 0;
    w->ending = 1;
    /* like the real server: the stream just ends (its bookmark came 2 s
     * earlier, see pretimeout_cb) */
    end_stream(w);
}

/* A periodic or pre-deadline bookmark.  Like the real cacher, only once the
 * store has moved past its revision when the watch started: a watch on a
 * quiet server gets none. */
static void bookmark_cb(evutil_socket_t fd, short what, void *arg)
{
    fa_watcher_t *w = arg;
    (void)fd;
    (void)what;
    if (w->stalled || w->cutting || w->init_i < w->init.n || w->end_bookmark_pending ||
        w->rendered)
        return;
    if (w->s->store.rv <= w->start_rv)
        return;
    if (fa_hist_first_after(&w->s->store, w->pos) < w->s->store.hcount)
        return; /* not caught up yet: the pump will get there first */
    if (evbuffer_get_length(conn_output(w)) >= FA_WATCH_HIGH)
        return;
    struct evbuffer *b = evbuffer_new();
    if (!b)
        return;
    add_bookmark(w, b, 0);
    evhttp_send_reply_chunk_with_cb(w->req, b, drain_cb, w);
    evbuffer_free(b);
}

static void watch_invalid(fa_server_t *s, struct evhttp_request *req, const char *field,
                          const char *detail)
{
    fa_status_t st;
    fa_status_list_invalid(&st, field, "FieldValueForbidden", detail);
    char *j = fa_status_json(&st);
    struct evbuffer *b = evbuffer_new();
    if (b && j)
        evbuffer_add(b, j, strlen(j));
    fa_http_headers(s, req, "application/json");
    fa_http_note(s, req, 422);
    evhttp_send_reply(req, 422, "Unprocessable Entity", b);
    if (b)
        evbuffer_free(b);
    free(j);
}

void fa_watch_start(fa_server_t *s, struct evhttp_request *req, const fa_res_t *r,
                    const char *ns, struct evkeyvalq *q)
{
    const char *rvs = evhttp_find_header(q, "resourceVersion");
    const char *rvm = evhttp_find_header(q, "resourceVersionMatch");
    const char *sie = evhttp_find_header(q, "sendInitialEvents");
    const char *ts = evhttp_find_header(q, "timeoutSeconds");
    int bookmarks = fa_query_bool(evhttp_find_header(q, "allowWatchBookmarks"));
    int initial, end_bookmark;
    uint64_t rv = 0;
    fa_status_t st;
    fa_watcher_t *w;

    if (sie && *sie) {
        if (!rvm || strcmp(rvm, "NotOlderThan")) {
            watch_invalid(s, req, "resourceVersionMatch",
                          "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan");
            return;
        }
    } else if (rvm && *rvm) {
        watch_invalid(s, req, "resourceVersionMatch",
                      "Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided");
        return;
    }
    if (rvs && *rvs) {
        char *end;
        rv = strtoull(rvs, &end, 10);
        if (*end || rvs[0] == '-') {
            /* the real server's words and code (500, no reason) */
            fa_status_set(&st, 500, "",
                          "resourceVersion: Invalid value: \"%.200s\": strconv.ParseUint: parsing \"%.200s\": "
                          "invalid syntax", rvs, rvs);
            goto http_error;
        }
    }
    if (sie && *sie) {
        initial = fa_query_bool(sie);
        end_bookmark = initial && bookmarks;
    } else {
        /* 1.32 defaulting (WatchList on): RV unset or 0 means initial state */
        initial = !rvs || !*rvs || rv == 0;
        end_bookmark = initial && bookmarks;
    }
    w = calloc(1, sizeof(*w));
    if (!w) {
        fa_status_set(&st, 500, "InternalError", "out of memory");
        goto http_error;
    }
    if (fa_selector_parse(&w->sel, r, evhttp_find_header(q, "labelSelector"),
                          evhttp_find_header(q, "fieldSelector"), &st)) {
        free(w);
        goto http_error;
    }
    w->s = s;
    w->req = req;
    w->evcon = evhttp_request_get_connection(req);
    w->r = r;
    w->ns = r->namespaced && ns && *ns ? strdup(ns) : NULL;
    w->bookmarks = bookmarks;
    w->table = fa_wants_table(evhttp_find_header(evhttp_request_get_input_headers(req), "Accept"));
    w->next = s->watchers;
    if (s->watchers)
        s->watchers->prev = w;
    s->watchers = w;
    s->cnt.watches_open++;

    fa_http_headers(s, req, "application/json");
    fa_http_note(s, req, 200);
    evhttp_send_reply_start(req, 200, "OK");
    {
        /* a watch reads nothing from the client: no read timeout; a client
         * that stops reading for a minute is dropped */
        struct timeval wtv = {60, 0};
        bufferevent_set_timeouts(evhttp_connection_get_bufferevent(w->evcon), NULL, &wtv);
    }
    evhttp_connection_set_closecb(w->evcon, on_close, w);

    if (!initial) {
        /* a resourceVersion ahead of the store: like the real watch cache,
         * the stream stays open and silent until the store gets there */
        if (rv < s->store.compacted_rv) {
            struct evbuffer *b = evbuffer_new();
            char msg[160];
            snprintf(msg, sizeof(msg), "too old resource version: %" PRIu64 " (%" PRIu64 ")", rv,
                     s->store.compacted_rv);
            if (b) {
                add_error(w, b, 410, "Expired", msg);
                evhttp_send_reply_chunk(req, b);
                evbuffer_free(b);
            }
            end_stream(w);
            return;
        }
        w->pos = rv;
        /* the real cacher raises a watcher's revision to what its cache
         * holds when the watch starts: bookmarks need a write after that */
        w->start_rv = rv > s->store.rv ? rv : s->store.rv;
    } else {
        fa_objv_t snap;
        w->pos = s->store.rv;
        w->start_rv = s->store.rv;
        if (fa_store_snapshot(&s->store, r, w->ns, s->store.rv, &snap) == 0) {
            /* keep only what matches the selectors */
            size_t k = 0;
            for (size_t i = 0; i < snap.n; i++) {
                if (fa_selector_match(&w->sel, snap.v[i]))
                    snap.v[k++] = snap.v[i];
                else
                    fa_obj_unref(snap.v[i]);
            }
            snap.n = k;
            w->init = snap;
        }
        w->end_bookmark_pending = end_bookmark;
    }
    {
        long secs = ts && *ts ? strtol(ts, NULL, 10) : 0;
        struct timeval tv;
        if (secs <= 0) {
            double m = s->o.min_request_timeout_s;
            double t = m * (1.0 + fa_rand01(&s->rng));
            tv.tv_sec = (time_t)t;
            tv.tv_usec = (suseconds_t)((t - (double)tv.tv_sec) * 1e6);
        } else {
            tv.tv_sec = secs;
            tv.tv_usec = 0;
        }
        w->timeout_ev = evtimer_new(s->base, timeout_cb, w);
        if (w->timeout_ev)
            event_add(w->timeout_ev, &tv);
        /* the real server's bookmark "right before the watcher timeout":
         * 2 s before the deadline, when that is still ahead */
        if (bookmarks && tv.tv_sec >= 2 && (tv.tv_sec > 2 || tv.tv_usec > 0)) {
            tv.tv_sec -= 2;
            w->pre_ev = evtimer_new(s->base, bookmark_cb, w);
            if (w->pre_ev)
                event_add(w->pre_ev, &tv);
        }
    }
    if (bookmarks) {
        int ms = s->o.bookmark_interval_ms;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        w->bm_ev = event_new(s->base, -1, EV_PERSIST, bookmark_cb, w);
        if (w->bm_ev)
            event_add(w->bm_ev, &tv);
    }
    pump(w);
    return;
http_error:
    {
        char *j = fa_status_json(&st);
        struct evbuffer *b = evbuffer_new();
        if (b && j)
            evbuffer_add(b, j, strlen(j));
        fa_http_headers(s, req, "application/json");
        fa_http_note(s, req, st.code);
        evhttp_send_reply(req, st.code, "Error", b);
        if (b)
            evbuffer_free(b);
        free(j);
    }
}

/* Render w's backlog (every history event after its position that it is
 * told about) into one block, exactly as pump would write it, and move its
 * position past them; pump then streams the block without touching the
 * objects again.  Only for a plain watch: JSON events, past its initial
 * state, with no fault configured and no rendered block pending (anything
 * else keeps streaming event by event). */
static void prerender(fa_watcher_t *w)
{
    fa_server_t *s = w->s;
    fa_store_t *st = &s->store;
    const kc_fakeapi_faults_t *f = &s->faults;
    size_t first = fa_hist_first_after(st, w->pos), idx, len = 0, n = 0;
    fa_rendered_t *r;
    int type;
    fa_obj_t *o;

    if (w->table || w->rendered || w->stalled || w->cutting || w->ending ||
        w->init_i < w->init.n || w->end_bookmark_pending || f->p_cut_mid_event > 0 ||
        f->close_watch_after_events > 0 || f->p_close_watch > 0 || f->p_stall > 0 ||
        first >= st->hcount)
        return;
    for (idx = first; idx < st->hcount; idx++)
        if ((o = pick(w, fa_hist_at(st, idx), &type)) != NULL)
            len += json_event(w, type, o, NULL);
    if (len == 0 || (r = malloc(sizeof(*r) + len)) == NULL)
        return;
    r->refs = 1;
    r->len = len;
    for (idx = first; idx < st->hcount; idx++) {
        fa_event_t *e = fa_hist_at(st, idx);
        w->pos = e->rv;
        if ((o = pick(w, e, &type)) == NULL)
            continue;
        n += json_event(w, type, o, r->data + n);
        w->events++;
        s->cnt.watch_events++;
    }
    w->rendered = r;
    w->rendered_off = 0;
}

void fa_watch_prerender_all(fa_server_t *s)
{
    for (fa_watcher_t *w = s->watchers; w; w = w->next)
        prerender(w);
}

void fa_watch_pump_all(fa_server_t *s)
{
    fa_watcher_t *w = s->watchers, *next;
    while (w) {
        next = w->next;
        pump(w);
        w = next;
    }
}

void fa_watch_close_all(fa_server_t *s, int abrupt)
{
    while (s->watchers) {
        fa_watcher_t *w = s->watchers;
        if (abrupt || w->cutting) {
            struct evhttp_connection *evcon = w->evcon;
            evhttp_connection_set_closecb(evcon, NULL, NULL);
            unlink_free(w);
            evhttp_connection_free(evcon);
        } else {
            end_stream(w);
        }
    }
}
