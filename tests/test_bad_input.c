/* Bad input, table-driven: every class of malformed input kcache can be
 * handed by the network or by a user's files, each with the exact error
 * code it must produce, words its message must contain (what and where),
 * and the state it must leave behind.
 *
 *  - watch streams through kc_watch_decoder (split at every byte, too):
 *    non-JSON line, truncated event, event over the size limit, unknown
 *    event type, wrong shapes, invalid UTF-8, NUL bytes;
 *  - objects through kc_obj_new and a cache already holding objects:
 *    no name, no namespace, a name with '/', wrong JSON types for metadata
 *    fields, invalid UTF-8 -- the cache keeps what it had;
 *  - the same bad events through a running informer fed by a scripted TLS
 *    responder: the informer records the error (code and message), the
 *    objects it had cached stay, and it recovers by relisting;
 *  - configuration: a kubeconfig with a missing context, a bad base64
 *    certificate, an unreadable token file, an exec plugin that exits
 *    non-zero or prints garbage;
 *  - an HTML error page from a proxy instead of a Status.
 * Nothing may crash or leak (make asan runs this file too). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "k8sclient_responder.h"
#include "kc_cache.h"
#include "kc_client.h"
#include "kc_informer.h"

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Every word of want (separated by '|') must occur in msg. */
static void assert_msg_has(const char *what, const char *msg, const char *want)
{
    char buf[256];
    const char *p = want;

    while (p != NULL && *p) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n >= sizeof(buf))
            n = sizeof(buf) - 1;
        memcpy(buf, p, n);
        buf[n] = '\0';
        if (strstr(msg, buf) == NULL)
            fail_msg("%s: message \"%s\" does not name \"%s\"", what, msg, buf);
        p = bar ? bar + 1 : NULL;
    }
}

/* ================================================================ streams */

#define CM(name) "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"" name \
                 "\",\"namespace\":\"ns1\",\"resourceVersion\":\"5\"}}"
#define EV(type, obj) "{\"type\":\"" type "\",\"object\":" obj "}\n"
#define GOOD EV("ADDED", CM("a"))

typedef struct stream_case {
    const char *name;
    const char *bytes;      /* the stream (NUL-terminated unless len given) */
    size_t len;             /* 0: strlen(bytes) */
    size_t max_event;       /* 0: default */
    int finish;             /* call kc_watch_decoder_finish at the end */
    int want;               /* the code */
    const char *want_msg;   /* words the message must contain ('|' between) */
    size_t want_events;     /* events delivered before the error */
} stream_case_t;

static char big_line[2048];

static const stream_case_t stream_cases[] = {
    { "non-JSON line", GOOD "this is not json\n" GOOD, 0, 0, 0, KC_EPARSE, "line 2", 1 },
    { "truncated event", GOOD "{\"type\":\"ADDED\",\"object\":{\"metad", 0, 0, 1, KC_EPARSE,
      "line 2|truncated", 1 },
    { "truncated inside a string", GOOD "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a",
      0, 0, 1, KC_EPARSE, "line 2", 1 },
    { "event over the size limit", NULL, 0, 512, 0, KC_ETOOBIG, "line 2", 1 },
    { "unknown event type", GOOD EV("EXPLODED", CM("b")), 0, 0, 0, KC_EPARSE, "line 2|type", 1 },
    { "type not a string", GOOD "{\"type\":7,\"object\":" CM("b") "}\n", 0, 0, 0, KC_EPARSE,
      "line 2|type", 1 },
    { "missing type", GOOD "{\"object\":" CM("b") "}\n", 0, 0, 0, KC_EPARSE, "line 2|type", 1 },
    { "object not an object", GOOD EV("ADDED", "\"x\""), 0, 0, 0, KC_EPARSE, "line 2|object", 1 },
    { "object without metadata", GOOD EV("MODIFIED", "{\"kind\":\"ConfigMap\"}"), 0, 0, 0,
      KC_EPARSE, "line 2|metadata", 1 },
    { "top level array", GOOD "[1,2,3]\n", 0, 0, 0, KC_EPARSE, "line 2", 1 },
    { "two values on a line", GOOD "{\"type\":\"ADDED\",\"object\":" CM("b") "} {}\n", 0, 0, 0, KC_EPARSE, "line 2", 1 },
    { "invalid UTF-8 in a string", GOOD "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":"
      "\"a\xff\xfe\"}}}\n", 0, 0, 0, KC_EPARSE, "line 2", 1 },
    { "overlong UTF-8", GOOD "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":"
      "\"\xc0\xaf\"}}}\n", 0, 0, 0, KC_EPARSE, "line 2", 1 },
    { "lone surrogate escape", GOOD "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":"
      "\"\\ud800\"}}}\n", 0, 0, 0, KC_EPARSE, "line 2", 1 },
    { "NUL byte in a line", GOOD "{\"type\":\"ADDED\",\0\"object\":{}}\n",
      sizeof(GOOD "{\"type\":\"ADDED\",\0\"object\":{}}\n") - 1,
      0, 0, KC_EPARSE, "line 2", 1 },
    { "unterminated object then EOF", "{", 0, 0, 1, KC_EPARSE, "line 1|truncated", 0 },
    { "blank lines are fine", "\n\n" GOOD "\r\n" GOOD, 0, 0, 1, 0, NULL, 2 },
};

static int count_cb(void *ud, const kc_watch_event_t *ev)
{
    (void)ev;
    (*(size_t *)ud)++;
    return 0;
}

/* Feed in pieces of `step` bytes (0: all at once). */
static int run_stream(const stream_case_t *tc, const char *bytes, size_t len, size_t step,
                      size_t *events, kc_errbuf_t *eb)
{
    kc_watch_decoder_t *d = NULL;
    int rc = 0;

    *events = 0;
    assert_int_equal(kc_watch_decoder_new(tc->max_event, count_cb, events, &d), 0);
    for (size_t off = 0; off < len && rc == 0;) {
        size_t n = step == 0 || len - off < step ? len - off : step;
        rc = kc_watch_decoder_feed(d, bytes + off, n, eb);
        off += n;
    }
    if (rc == 0 && tc->finish)
        rc = kc_watch_decoder_finish(d, eb);
    if (rc != 0) {
        /* sticky: a later feed returns the same code and delivers nothing */
        size_t before = *events;
        kc_errbuf_t eb2;
        assert_int_equal(kc_watch_decoder_feed(d, GOOD, strlen(GOOD), &eb2), rc);
        assert_int_equal(*events, before);
    }
    assert_int_equal(kc_watch_decoder_events(d), *events);
    kc_watch_decoder_free(d);
    return rc;
}

static void test_stream_table(void **state)
{
    (void)state;
    {
        size_t off = (size_t)snprintf(big_line, sizeof(big_line), "%s", GOOD);
        off += (size_t)snprintf(big_line + off, sizeof(big_line) - off,
                                "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"");
        while (off < 1500)
            big_line[off++] = 'x';
        memcpy(big_line + off, "\"}}}\n", 6);
    }
    for (size_t i = 0; i < sizeof(stream_cases) / sizeof(stream_cases[0]); i++) {
        const stream_case_t *tc = &stream_cases[i];
        const char *bytes = tc->bytes ? tc->bytes : big_line;
        size_t len = tc->len ? tc->len : strlen(bytes);
        static const size_t steps[] = { 0, 1, 7, 64 };

        for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
            kc_errbuf_t eb;
            size_t events;
            int rc;

            memset(&eb, 0, sizeof(eb));
            rc = run_stream(tc, bytes, len, steps[s], &events, &eb);
            if (rc != tc->want)
                fail_msg("%s (step %zu): got %s (%s), want %s", tc->name, steps[s],
                         kc_err_name(rc), eb.msg, kc_err_name(tc->want));
            if (events != tc->want_events)
                fail_msg("%s (step %zu): %zu events delivered, want %zu", tc->name, steps[s],
                         events, tc->want_events);
            if (rc != 0) {
                assert_int_equal(eb.code, rc);
                assert_msg_has(tc->name, eb.msg, tc->want_msg);
            }
        }
    }
}

/* ================================================================ objects */

typedef struct obj_case {
    const char *name;
    const char *json;
    int want_new;           /* kc_obj_new's code */
    const char *want_msg;
    int want_add;           /* if kc_obj_new succeeds: kc_cache_add's code into a
                             * namespaced cache */
} obj_case_t;

#define OBJ(md) "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":" md "}"

static const obj_case_t obj_cases[] = {
    { "no metadata", "{\"kind\":\"ConfigMap\"}", KC_EPARSE, "metadata", 0 },
    { "metadata not an object", OBJ("[]"), KC_EPARSE, "metadata", 0 },
    { "no name", OBJ("{\"namespace\":\"ns1\"}"), KC_EPARSE, "metadata.name", 0 },
    { "empty name", OBJ("{\"name\":\"\",\"namespace\":\"ns1\"}"), KC_EBADNAME, "metadata.name", 0 },
    { "name with /", OBJ("{\"name\":\"a/b\",\"namespace\":\"ns1\"}"), KC_EBADNAME,
      "metadata.name", 0 },
    { "name ..", OBJ("{\"name\":\"..\",\"namespace\":\"ns1\"}"), KC_EBADNAME, "metadata.name", 0 },
    { "namespace with /", OBJ("{\"name\":\"a\",\"namespace\":\"x/y\"}"), KC_EBADNAME,
      "metadata.namespace", 0 },
    { "name is a number", OBJ("{\"name\":42,\"namespace\":\"ns1\"}"), KC_EPARSE,
      "metadata.name|string", 0 },
    { "namespace is an object", OBJ("{\"name\":\"a\",\"namespace\":{}}"), KC_EPARSE,
      "metadata.namespace", 0 },
    { "resourceVersion is a number", OBJ("{\"name\":\"a\",\"namespace\":\"ns1\","
      "\"resourceVersion\":12}"), KC_EPARSE, "metadata.resourceVersion", 0 },
    { "uid is an array", OBJ("{\"name\":\"a\",\"namespace\":\"ns1\",\"uid\":[]}"), KC_EPARSE,
      "metadata.uid", 0 },
    { "generation is a string", OBJ("{\"name\":\"a\",\"namespace\":\"ns1\",\"generation\":\"3\"}"),
      KC_EPARSE, "metadata.generation", 0 },
    { "generation is a fraction", OBJ("{\"name\":\"a\",\"namespace\":\"ns1\",\"generation\":1.5}"),
      KC_EPARSE, "metadata.generation", 0 },
    { "labels is an array", OBJ("{\"name\":\"a\",\"namespace\":\"ns1\",\"labels\":[\"x\"]}"),
      KC_EPARSE, "metadata.labels", 0 },
    { "label value is a number", OBJ("{\"name\":\"a\",\"namespace\":\"ns1\",\"labels\":{\"k\":1}}"),
      KC_EPARSE, "metadata.labels", 0 },
    { "ownerReferences is an object", OBJ("{\"name\":\"a\",\"namespace\":\"ns1\","
      "\"ownerReferences\":{}}"), KC_EPARSE, "metadata.ownerReferences", 0 },
    { "invalid UTF-8 in a label", OBJ("{\"name\":\"a\",\"namespace\":\"ns1\","
      "\"labels\":{\"k\":\"\xed\xa0\x80\"}}"), KC_EPARSE, "JSON offset", 0 },
    { "trailing garbage", OBJ("{\"name\":\"a\",\"namespace\":\"ns1\"}") "x", KC_EPARSE,
      "JSON offset", 0 },
    { "not JSON at all", "<html><body>502 Bad Gateway</body></html>", KC_EPARSE, "JSON offset", 0 },
    /* parses (a cluster-scoped object) but a namespaced cache refuses it */
    { "no namespace", OBJ("{\"name\":\"a\"}"), 0, NULL, KC_EBADNAME },
};

static void test_object_table(void **state)
{
    kc_cache_t *c = NULL;
    kc_obj_t *keep = NULL, *got = NULL;
    kc_errbuf_t eb;
    const char *kj = OBJ("{\"name\":\"keep\",\"namespace\":\"ns1\",\"resourceVersion\":\"1\"}");

    (void)state;
    assert_int_equal(kc_cache_new(NULL, &c), 0);
    assert_int_equal(kc_obj_new(kj, strlen(kj), NULL, &keep, &eb), 0);
    assert_int_equal(kc_cache_add(c, keep), 0);
    for (size_t i = 0; i < sizeof(obj_cases) / sizeof(obj_cases[0]); i++) {
        const obj_case_t *tc = &obj_cases[i];
        kc_obj_t *o = (kc_obj_t *)(uintptr_t)1;
        int rc;

        memset(&eb, 0, sizeof(eb));
        rc = kc_obj_new(tc->json, strlen(tc->json), NULL, &o, &eb);
        if (rc != tc->want_new)
            fail_msg("%s: kc_obj_new %s (%s), want %s", tc->name, kc_err_name(rc), eb.msg,
                     kc_err_name(tc->want_new));
        if (rc != 0) {
            /* a failed call hands back no object */
            assert_true(o == NULL || o == (kc_obj_t *)(uintptr_t)1);
            assert_int_equal(eb.code, rc);
            assert_msg_has(tc->name, eb.msg, tc->want_msg);
        } else {
            rc = kc_cache_add(c, o);
            if (rc != tc->want_add)
                fail_msg("%s: kc_cache_add %s, want %s", tc->name, kc_err_name(rc),
                         kc_err_name(tc->want_add));
            rc = kc_cache_replace(c, o, NULL);
            if (rc != tc->want_add)
                fail_msg("%s: kc_cache_replace %s, want %s", tc->name, kc_err_name(rc),
                         kc_err_name(tc->want_add));
            kc_obj_unref(o);
        }
        /* what was cached is still there, unchanged */
        assert_int_equal(kc_cache_len(c), 1);
        assert_int_equal(kc_cache_get_nsname(c, "ns1", "keep", &got), 0);
        assert_ptr_equal(got, keep);
        kc_obj_unref(got);
    }
    /* the size cap */
    {
        kc_obj_opts_t oo = KC_OBJ_OPTS_INIT;
        kc_obj_t *o = NULL;
        oo.max_size = 16;
        assert_int_equal(kc_obj_new(kj, strlen(kj), &oo, &o, &eb), KC_ETOOBIG);
        assert_msg_has("size cap", eb.msg, "bytes|limit");
        assert_null(o);
    }
    /* keys */
    {
        kc_key_t k;
        assert_int_equal(kc_key_parse(&k, "a/b/c"), KC_EBADNAME);
        assert_int_equal(kc_key_parse(&k, "/b"), KC_EBADNAME);
        assert_int_equal(kc_key_parse(&k, "ns/"), KC_EBADNAME);
        assert_int_equal(kc_key_init(&k, "ns1", "a/b"), KC_EBADNAME);
        assert_int_equal(kc_key_init_rule(&k, "ns1", "a/b", KC_NAME_PATH_SEGMENT), KC_EBADNAME);
    }
    kc_obj_unref(keep);
    kc_cache_free(c);
}

/* ===================================================== the responder side */

static char g_dir[64];

static const char *tpath(const char *rel)
{
    static __thread char p[4][256];
    static __thread int i;
    i = (i + 1) % 4;
    snprintf(p[i], sizeof(p[i]), "%s/%s", g_dir, rel);
    return p[i];
}

static void wfile(const char *rel, const char *text, mode_t mode)
{
    FILE *f = fopen(tpath(rel), "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(tpath(rel), mode), 0);
}

static char *b64(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    assert_non_null(out);
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    return out;
}

/* What the responder serves: a list of two ConfigMaps at rv 10, and on
 * watch one good event then the scenario's bad bytes. */
typedef struct scen {
    pthread_mutex_t mu;
    const char *watch_tail;   /* bad bytes after one good event */
    int watch_html;           /* answer the watch 200 text/html instead */
    int list_html;            /* answer every list 502 text/html */
    unsigned long lists, watches;
} scen_t;

static scen_t S = { PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, 0, 0 };

#define HTML_PAGE "<html><head><title>502 Bad Gateway</title></head><body>" \
                  "<center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center>" \
                  "</body></html>\n"

static int handler(void *ud, const kc_resp_req_t *rq, kc_resp_conn_t *c)
{
    const char *tail;
    int html, lhtml;

    (void)ud;
    pthread_mutex_lock(&S.mu);
    tail = S.watch_tail;
    html = S.watch_html;
    lhtml = S.list_html;
    if (strstr(rq->target, "watch=") != NULL)
        S.watches++;
    else
        S.lists++;
    pthread_mutex_unlock(&S.mu);

    if (strstr(rq->target, "watch=") == NULL) {
        if (lhtml)
            return kc_resp_send(c, 502, "text/html", NULL, HTML_PAGE, strlen(HTML_PAGE)), 1;
        return kc_resp_send_json(c, 200,
            "{\"kind\":\"ConfigMapList\",\"apiVersion\":\"v1\",\"metadata\":"
            "{\"resourceVersion\":\"10\"},\"items\":["
            "{\"metadata\":{\"name\":\"a\",\"namespace\":\"ns1\",\"resourceVersion\":\"8\"}},"
            "{\"metadata\":{\"name\":\"b\",\"namespace\":\"ns1\",\"resourceVersion\":\"9\"}}]}"),
               0;
    }
    if (html)
        return kc_resp_send(c, 200, "text/html", NULL, HTML_PAGE, strlen(HTML_PAGE)), 1;
    if (kc_resp_start_chunked(c) != 0)
        return 1;
    {
        static const char ev[] =
            "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"c\",\"namespace\":\"ns1\","
            "\"resourceVersion\":\"11\"}}}\n";
        kc_resp_chunk(c, ev, strlen(ev));
        if (tail != NULL)
            kc_resp_chunk(c, tail, strlen(tail));
    }
    /* keep the stream open a moment, then end it */
    for (int i = 0; i < 5 && !kc_resp_stopping(c); i++)
        sleep_ms(20);
    return 1;
}

static kc_client_t *client_for(kc_resp_t *r, const char *user_block, const kc_client_opts_t *co)
{
    char *ca = b64(kc_resp_ca_pem(r)), *yaml = NULL;
    kc_config_opts_t o = KC_CONFIG_OPTS_INIT;
    kc_config_t *cfg = NULL;
    kc_client_t *c = NULL;
    kc_errbuf_t eb;

    assert_true(asprintf(&yaml,
                         "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
                         "clusters:\n- name: c\n  cluster:\n    server: %s\n"
                         "    certificate-authority-data: %s\n"
                         "users:\n- name: u\n  user:\n%s"
                         "contexts:\n- name: t\n  context: {cluster: c, user: u}\n",
                         kc_resp_url(r), ca, user_block) > 0);
    wfile("kubeconfig", yaml, 0600);
    free(yaml);
    free(ca);
    o.kubeconfig = tpath("kubeconfig");
    if (kc_config_load(&o, &cfg, &eb) != 0)
        fail_msg("config: %s", eb.msg);
    if (kc_client_new(cfg, co, &c, &eb) != 0)
        fail_msg("client: %s", eb.msg);
    kc_config_free(cfg);
    return c;
}

typedef struct inf_case {
    const char *name;
    const char *tail;
    int html;
    size_t max_event;
    int want;
    const char *want_msg;
} inf_case_t;

static char inf_big[1200];

static const inf_case_t inf_cases[] = {
    { "non-JSON line", "garbage, not json\n", 0, 0, KC_EPARSE, "line 2" },
    { "truncated event", "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":", 0, 0, KC_ECLOSED, "" },
    { "unknown event type", "{\"type\":\"REPLACED\",\"object\":{\"metadata\":{\"name\":\"a\","
      "\"namespace\":\"ns1\",\"resourceVersion\":\"12\"}}}\n", 0, 0, KC_EPARSE, "line 2|type" },
    { "object without name", "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":"
      "{\"namespace\":\"ns1\",\"resourceVersion\":\"12\"}}}\n", 0, 0, KC_EPARSE,
      "line 2|metadata.name" },
    { "name with /", "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"a/x\","
      "\"namespace\":\"ns1\",\"resourceVersion\":\"12\"}}}\n", 0, 0, KC_EBADNAME,
      "line 2|metadata.name" },
    { "object without namespace", "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":"
      "{\"name\":\"a\",\"resourceVersion\":\"12\"}}}\n", 0, 0, KC_EBADNAME,
      "line 2|metadata.namespace" },
    { "wrong metadata type", "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"a\","
      "\"namespace\":\"ns1\",\"resourceVersion\":12}}}\n", 0, 0, KC_EPARSE,
      "line 2|metadata.resourceVersion" },
    { "invalid UTF-8", "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"a\","
      "\"namespace\":\"ns1\",\"labels\":{\"x\":\"\xff\"}}}}\n", 0, 0, KC_EPARSE, "line 2" },
    { "event over the size limit", inf_big, 0, 600, KC_ETOOBIG, "line 2" },
    { "HTML page instead of a stream", NULL, 1, 0, KC_EPARSE, "line 1" },
};

static void test_informer_table(void **state)
{
    kc_resp_t *r = NULL;

    (void)state;
    {
        size_t off = (size_t)snprintf(inf_big, sizeof(inf_big),
                                      "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{"
                                      "\"name\":\"a\",\"namespace\":\"ns1\",\"x\":\"");
        while (off < 1000)
            inf_big[off++] = 'y';
        memcpy(inf_big + off, "\"}}}\n", 6);
    }
    assert_int_equal(kc_resp_start(handler, NULL, &r), 0);
    for (size_t i = 0; i < sizeof(inf_cases) / sizeof(inf_cases[0]); i++) {
        const inf_case_t *tc = &inf_cases[i];
        kc_client_opts_t co = KC_CLIENT_OPTS_INIT;
        kc_informer_opts_t io = KC_INFORMER_OPTS_INIT;
        kc_informer_t *inf = NULL;
        kc_informer_state_t st;
        kc_client_t *cl;
        kc_errbuf_t eb;
        kc_obj_t *o = NULL;
        uint64_t t0;
        int seen = 0;

        if (tc->max_event)
            co.max_event_size = tc->max_event;
        co.max_retries = 0;
        cl = client_for(r, "    token: t\n", &co);
        pthread_mutex_lock(&S.mu);
        S.watch_tail = tc->tail;
        S.watch_html = tc->html;
        S.list_html = 0;
        pthread_mutex_unlock(&S.mu);
        io.resource = &kc_res_configmaps;
        io.backoff_initial_ms = 50;
        io.backoff_max_ms = 200;
        io.seed = 7;
        assert_int_equal(kc_informer_new(cl, &io, &inf, &eb), 0);
        assert_int_equal(kc_informer_start(inf), 0);
        assert_int_equal(kc_informer_wait_synced(inf, 10000), 0);
        t0 = kc_now_ns();
        while (kc_now_ns() - t0 < 10000000000ull) {
            assert_int_equal(kc_informer_state(inf, &st), 0);
            if (st.last_error == tc->want) {
                seen = 1;
                break;
            }
            sleep_ms(10);
        }
        if (!seen)
            fail_msg("%s: informer last error %s (%s), want %s", tc->name,
                     kc_err_name(st.last_error), st.last_error_msg, kc_err_name(tc->want));
        assert_msg_has(tc->name, st.last_error_msg, tc->want_msg);
        print_message("informer, %s: %s: %s\n", tc->name, kc_err_name(st.last_error),
                      st.last_error_msg);
        /* the listed objects are still cached, and the bad one was not stored */
        for (const char *const *n = (const char *const[]){ "a", "b", NULL }; *n; n++) {
            assert_int_equal(kc_cache_get_nsname(kc_informer_cache(inf), "ns1", *n, &o), 0);
            if (strcmp(*n, "a") == 0 && tc->want != KC_ECLOSED)
                assert_true(strlen(kc_obj_resource_version(o)) == 1); /* "8" or its relist */
            kc_obj_unref(o);
        }
        assert_int_not_equal(kc_cache_get_nsname(kc_informer_cache(inf), "ns1", "a/x", &o), 0);
        /* it recovers: keeps relisting/watching rather than giving up */
        {
            uint64_t lists0 = st.lists;
            t0 = kc_now_ns();
            do {
                sleep_ms(20);
                kc_informer_state(inf, &st);
            } while (st.lists <= lists0 && st.watches < 3 && kc_now_ns() - t0 < 10000000000ull);
            assert_true(st.lists > lists0 || st.watches >= 3);
        }
        assert_int_equal(kc_informer_stop(inf), 0);
        kc_informer_free(inf);
        kc_client_free(cl);
    }
    kc_resp_stop(r);
}

/* ============================================================ configuration */

typedef struct cfg_case {
    const char *name;
    const char *yaml;        /* %1$s: server URL, %2$s: CA data, %3$s: the directory */
    int want_load;           /* kc_config_load's code */
    int want_request;        /* if it loads: the first request's code */
    const char *want_msg;
} cfg_case_t;

#define KC_HEAD "apiVersion: v1\nkind: Config\n"
#define KC_CLUSTER "clusters:\n- name: c\n  cluster:\n    server: %1$s\n" \
                   "    certificate-authority-data: %2$s\n"
#define KC_CTX "current-context: t\ncontexts:\n- name: t\n  context: {cluster: c, user: u}\n"

static const cfg_case_t cfg_cases[] = {
    { "missing context", KC_HEAD KC_CLUSTER "users:\n- name: u\n  user: {token: x}\n"
      "current-context: nope\ncontexts:\n- name: t\n  context: {cluster: c, user: u}\n",
      KC_ECONFIG, 0, "nope" },
    { "context names a missing cluster", KC_HEAD KC_CLUSTER "users:\n- name: u\n  user: {token: x}\n"
      "current-context: t\ncontexts:\n- name: t\n  context: {cluster: gone, user: u}\n",
      KC_ECONFIG, 0, "gone" },
    { "bad base64 certificate", KC_HEAD "clusters:\n- name: c\n  cluster:\n    server: %1$s\n"
      "    certificate-authority-data: '!!!not*base64!!!'\n"
      "users:\n- name: u\n  user: {token: x}\n" KC_CTX, KC_ECONFIG, 0,
      "certificate-authority-data" },
    { "base64 that is not a certificate", KC_HEAD "clusters:\n- name: c\n  cluster:\n"
      "    server: %1$s\n    certificate-authority-data: aGVsbG8gd29ybGQ=\n"
      "users:\n- name: u\n  user: {token: x}\n" KC_CTX, KC_ECONFIG, KC_ETLS, "" },
    { "bad base64 client key", KC_HEAD KC_CLUSTER "users:\n- name: u\n  user:\n"
      "    client-certificate-data: '@@@'\n    client-key-data: '@@@'\n" KC_CTX, KC_ECONFIG, 0,
      "client-certificate-data" },
    { "unreadable token file", KC_HEAD KC_CLUSTER "users:\n- name: u\n  user:\n"
      "    tokenFile: %3$s/unreadable-token\n" KC_CTX, 0, KC_ECONFIG, "unreadable-token" },
    { "missing token file", KC_HEAD KC_CLUSTER "users:\n- name: u\n  user:\n"
      "    tokenFile: %3$s/no-such-token\n" KC_CTX, 0, KC_ECONFIG, "no-such-token" },
    { "exec plugin exits non-zero", KC_HEAD KC_CLUSTER "users:\n- name: u\n  user:\n"
      "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/sh\n"
      "      args: ['-c', 'echo oops >&2; exit 3']\n      interactiveMode: Never\n" KC_CTX,
      0, KC_EAUTH, "/bin/sh" },
    { "exec plugin prints garbage", KC_HEAD KC_CLUSTER "users:\n- name: u\n  user:\n"
      "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/sh\n"
      "      args: ['-c', 'echo this is not json']\n      interactiveMode: Never\n" KC_CTX,
      0, KC_EAUTH, "/bin/sh" },
    { "exec plugin prints the wrong kind", KC_HEAD KC_CLUSTER "users:\n- name: u\n  user:\n"
      "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/sh\n"
      "      args: ['-c', 'echo {\\\"kind\\\":\\\"Pod\\\",\\\"status\\\":{}}']\n"
      "      interactiveMode: Never\n" KC_CTX, 0, KC_EAUTH, "/bin/sh" },
    { "exec plugin not found", KC_HEAD KC_CLUSTER "users:\n- name: u\n  user:\n"
      "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n"
      "      command: /nonexistent/kc-plugin\n      interactiveMode: Never\n" KC_CTX,
      0, KC_EAUTH, "kc-plugin" },
    { "YAML that is not a mapping", "- just\n- a list\n", KC_ECONFIG, 0, "" },
    { "broken YAML", "apiVersion: v1\nclusters: [\n", KC_ECONFIG, 0, "" },
};

static void test_config_table(void **state)
{
    kc_resp_t *r = NULL;
    char *ca;

    (void)state;
    pthread_mutex_lock(&S.mu);
    S.watch_tail = NULL;
    S.watch_html = 0;
    S.list_html = 0;
    pthread_mutex_unlock(&S.mu);
    assert_int_equal(kc_resp_start(handler, NULL, &r), 0);
    ca = b64(kc_resp_ca_pem(r));
    /* a directory: unreadable as a file even for root */
    assert_int_equal(mkdir(tpath("unreadable-token"), 0700), 0);
    for (size_t i = 0; i < sizeof(cfg_cases) / sizeof(cfg_cases[0]); i++) {
        const cfg_case_t *tc = &cfg_cases[i];
        kc_config_opts_t o = KC_CONFIG_OPTS_INIT;
        kc_config_t *cfg = (kc_config_t *)(uintptr_t)1;
        kc_client_t *cl = NULL;
        kc_errbuf_t eb;
        kc_status_t st;
        char *yaml = NULL;
        int rc;

        assert_true(asprintf(&yaml, tc->yaml, kc_resp_url(r), ca, g_dir) > 0);
        wfile("kubeconfig", yaml, 0600);
        free(yaml);
        o.kubeconfig = tpath("kubeconfig");
        memset(&eb, 0, sizeof(eb));
        rc = kc_config_load(&o, &cfg, &eb);
        if (rc != tc->want_load && !(tc->want_request && rc == 0))
            fail_msg("%s: kc_config_load %s (%s), want %s", tc->name, kc_err_name(rc), eb.msg,
                     kc_err_name(tc->want_load));
        if (rc != 0) {
            assert_ptr_equal(cfg, (kc_config_t *)(uintptr_t)1);
            assert_int_equal(eb.code, rc);
            /* where: the file; what: the field */
            assert_msg_has(tc->name, eb.msg, "kubeconfig");
            assert_msg_has(tc->name, eb.msg, tc->want_msg);
            continue;
        }
        if (tc->want_request == 0)
            fail_msg("%s: loaded, want %s", tc->name, kc_err_name(tc->want_load));
        rc = kc_client_new(cfg, NULL, &cl, &eb);
        kc_config_free(cfg);
        if (rc != 0) {
            if (rc != tc->want_request && rc != KC_ECONFIG)
                fail_msg("%s: kc_client_new %s (%s)", tc->name, kc_err_name(rc), eb.msg);
            continue;
        }
        rc = kc_client_get(cl, &kc_res_configmaps, "ns1", "a", NULL, &st);
        if (rc != tc->want_request)
            fail_msg("%s: request %s (%s), want %s", tc->name, kc_err_name(rc), st.message,
                     kc_err_name(tc->want_request));
        assert_int_equal(st.err, rc);
        assert_msg_has(tc->name, st.message, tc->want_msg);
        /* the token file's content never shows */
        assert_null(strstr(st.message, "secret-token-value"));
        assert_null(strstr(st.detail, "secret-token-value"));
        kc_client_free(cl);
    }
    rmdir(tpath("unreadable-token"));
    unlink(tpath("kubeconfig"));
    free(ca);
    kc_resp_stop(r);
}

/* A key given twice in one mapping: the last one wins, nothing leaks
 * (found by fuzz_kubeconfig: a repeated proxy-url leaked the first copy). */
static void test_config_duplicate_keys(void **state)
{
    kc_config_opts_t o = KC_CONFIG_OPTS_INIT;
    kc_config_t *cfg = NULL;
    kc_errbuf_t eb;

    (void)state;
    wfile("kubeconfig",
          "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
          "clusters:\n- name: c\n  cluster:\n    server: https://first:1\n"
          "    proxy-url: o=\n    tls-server-name: a\n    tls-server-name: b\n"
          "    proxy-url: http://proxy:3128\n    server: https://second:2\n"
          "users:\n- name: u\n  user:\n    token: t1\n    token: t2\n    username: a\n"
          "    username: b\n    password: p\n    password: q\n"
          "    tokenFile: /dev/null\n    tokenFile: /dev/zero\n"
          "- name: e\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n"
          "      apiVersion: client.authentication.k8s.io/v1beta1\n      command: a/b\n"
          "      command: /bin/true\n      installHint: x\n      installHint: y\n"
          "      interactiveMode: Never\n"
          "contexts:\n- name: t\n  context: {cluster: c, user: u, namespace: a, namespace: b}\n"
          "- name: x\n  context: {cluster: c, user: e}\n", 0600);
    o.kubeconfig = tpath("kubeconfig");
    if (kc_config_load(&o, &cfg, &eb) != 0)
        fail_msg("duplicate keys: %s", eb.msg);
    assert_string_equal(kc_config_server(cfg), "https://second:2");
    assert_string_equal(kc_config_namespace(cfg), "b");
    kc_config_free(cfg);
    o.context = "x";
    if (kc_config_load(&o, &cfg, &eb) != 0)
        fail_msg("duplicate keys (exec): %s", eb.msg);
    kc_config_free(cfg);
    unlink(tpath("kubeconfig"));
}

/* =========================================================== HTML errors */

static void test_html_error_page(void **state)
{
    kc_resp_t *r = NULL;
    kc_client_opts_t co = KC_CLIENT_OPTS_INIT;
    kc_client_t *cl;
    kc_status_t st;
    kc_buf_t body = KC_BUF_INIT;
    int rc;

    (void)state;
    pthread_mutex_lock(&S.mu);
    S.list_html = 1;
    S.watch_tail = NULL;
    S.watch_html = 0;
    pthread_mutex_unlock(&S.mu);
    assert_int_equal(kc_resp_start(handler, NULL, &r), 0);
    co.max_retries = 0;
    cl = client_for(r, "    token: t\n", &co);
    rc = kc_client_list(cl, &kc_res_configmaps, "ns1", NULL, &body, &st);
    if (rc != KC_ESERVER)
        fail_msg("HTML 502: %s (%s), want KC_ESERVER", kc_err_name(rc), st.message);
    assert_int_equal(st.http_code, 502);
    assert_int_equal(st.err, KC_ESERVER);
    /* a message a person can act on, not the raw page */
    assert_true(st.message[0] != '\0');
    assert_msg_has("HTML 502", st.message, "502");
    assert_null(strstr(st.message, "<html>"));
    assert_false(kc_status_is_not_found(&st));
    assert_true(kc_status_is_retryable(&st));
    /* Status decoding refuses the page */
    {
        kc_status_t s2;
        assert_int_equal(kc_status_from_json(HTML_PAGE, strlen(HTML_PAGE), &s2), KC_EPARSE);
        assert_int_equal(kc_status_from_json("{\"kind\":\"Pod\"}", 14, &s2), KC_EPARSE);
    }
    kc_buf_free(&body);
    kc_client_free(cl);
    pthread_mutex_lock(&S.mu);
    S.list_html = 0;
    pthread_mutex_unlock(&S.mu);
    kc_resp_stop(r);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/kc-badin-XXXXXX");
    if (mkdtemp(g_dir) == NULL)
        return -1;
    return kc_global_init();
}

static int teardown(void **state)
{
    (void)state;
    rmdir(g_dir);
    kc_global_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_table),
        cmocka_unit_test(test_object_table),
        cmocka_unit_test(test_informer_table),
        cmocka_unit_test(test_config_table),
        cmocka_unit_test(test_config_duplicate_keys),
        cmocka_unit_test(test_html_error_page),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
