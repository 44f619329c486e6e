/* Offline tests of the watch stream framer (kc_watch_decoder_*) and of
 * Status decoding: a recorded stream split at every byte offset gives the
 * same events; bad input ends the stream with "line N, byte M: what" and
 * keeps what was delivered before. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kc_client.h"
#include "kc_cache.h"
#include "kc_json.h"

/* ------------------------------------------------------------------ */
/* Allocation failures: fail_at / live (tests/support/kc_test_alloc.h). */
#include "kc_test_alloc.h"
#include "kc_test_obj.h"

#define STREAM_FILE "tests/data/k8sclient/watch_stream.jsonl"
#define MAX_EV 64

typedef struct rec_ev {
    kc_watch_type_t type;
    char *object;
    size_t len;
    size_t line_no;
    const char *ptr;   /* where the object was when delivered */
    unsigned flags;
} rec_ev_t;

typedef struct rec {
    rec_ev_t ev[MAX_EV];
    size_t n;
    size_t stop_at;    /* return 1 on this event number (1-based); 0: never */
    int parse;         /* parse each non-ERROR event with kc_watch_event_parse */
} rec_t;

static int record(void *ud, const kc_watch_event_t *ev)
{
    rec_t *r = ud;
    rec_ev_t *e;

    assert_true(r->n < MAX_EV);
    e = &r->ev[r->n++];
    e->type = ev->type;
    e->len = ev->object_len;
    e->line_no = ev->line_no;
    e->ptr = ev->object;
    e->flags = ev->flags;
    /* the notes on metadata come with the flag, describe these bytes, and
     * build the object kc_obj_new's own walk builds */
    if ((ev->meta != NULL) != ((ev->flags & KC_WATCH_OBJECT_MINIFIED) != 0))
        fail_msg("line %zu: meta %p with flags %u", ev->line_no, (const void *)ev->meta,
                 ev->flags);
    if (ev->meta) {
        kc_obj_opts_t walk = KC_OBJ_OPTS_INIT, noted = KC_OBJ_OPTS_INIT;
        kc_obj_t *a = NULL, *b = NULL;
        kc_errbuf_t ea = {0, ""}, eb = {0, ""};
        assert_ptr_equal(ev->meta->obj, ev->object);
        assert_int_equal(ev->meta->obj_len, ev->object_len);
        walk.prevalidated = noted.prevalidated = 1;
        noted.meta = ev->meta;
        int ra = kc_obj_new(ev->object, ev->object_len, &walk, &a, &ea);
        int rb = kc_obj_new(ev->object, ev->object_len, &noted, &b, &eb);
        assert_int_equal(ra, rb);
        assert_string_equal(ea.msg, eb.msg);
        if (ra == 0)
            assert_obj_same(a, b);
        kc_obj_unref(a);
        kc_obj_unref(b);
    }
    e->object = malloc(ev->object_len + 1);
    assert_non_null(e->object);
    memcpy(e->object, ev->object, ev->object_len);
    e->object[ev->object_len] = '\0';
    if (r->parse && ev->type != KC_WATCH_ERROR) {
        /* the tree the decoder hands over (built while validating, once
         * the decoder has seen this callback parse) is the one a parse of
         * the bytes gives; a second call gives a new tree of its own */
        cJSON *t = kc_watch_event_parse(ev), *t2, *ref;
        assert_non_null(t);
        ref = cJSON_ParseWithLength(ev->object, ev->object_len);
        assert_non_null(ref);
        assert_true(cJSON_Compare(t, ref, 1));
        t2 = kc_watch_event_parse(ev);
        assert_non_null(t2);
        assert_ptr_not_equal(t, t2);
        assert_true(cJSON_Compare(t2, ref, 1));
        cJSON_Delete(t);
        cJSON_Delete(t2);
        cJSON_Delete(ref);
    }
    if (r->stop_at && r->n == r->stop_at)
        return 1;
    return 0;
}

static void rec_reset(rec_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->ev[i].object);
    memset(r, 0, sizeof(*r));
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Feed data in the given pieces; returns the first non-zero code. */
static int feed_pieces(size_t max_event, const char *data, size_t len, const size_t *cuts,
                       size_t ncuts, rec_t *r, kc_errbuf_t *eb)
{
    kc_watch_decoder_t *d;
    size_t pos = 0;
    int rc = 0;

    assert_int_equal(kc_watch_decoder_new(max_event, record, r, &d), 0);
    for (size_t i = 0; i <= ncuts && rc == 0; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        rc = kc_watch_decoder_feed(d, data + pos, end - pos, eb);
        pos = end;
    }
    if (rc == 0)
        rc = kc_watch_decoder_finish(d, eb);
    kc_watch_decoder_free(d);
    return rc;
}

static void assert_same_events(const rec_t *a, const rec_t *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_int_equal(a->ev[i].type, b->ev[i].type);
        assert_int_equal(a->ev[i].len, b->ev[i].len);
        assert_int_equal(a->ev[i].line_no, b->ev[i].line_no);
        assert_memory_equal(a->ev[i].object, b->ev[i].object, a->ev[i].len);
    }
}

static void test_recorded_stream_whole(void **state)
{
    size_t len;
    char *data = slurp(STREAM_FILE, &len);
    rec_t r = {0};
    kc_errbuf_t eb = {0, ""};
    static const kc_watch_type_t want[] = {KC_WATCH_ADDED,   KC_WATCH_MODIFIED,
                                           KC_WATCH_ADDED,   KC_WATCH_ADDED,
                                           KC_WATCH_MODIFIED, KC_WATCH_DELETED,
                                           KC_WATCH_BOOKMARK, KC_WATCH_ERROR};

    (void)state;
    assert_int_equal(feed_pieces(0, data, len, NULL, 0, &r, &eb), 0);
    assert_int_equal(r.n, 8);
    for (size_t i = 0; i < r.n; i++) {
        assert_int_equal(r.ev[i].type, want[i]);
        /* zero-copy: events complete in one chunk point into the caller's bytes */
        assert_true(r.ev[i].ptr >= data && r.ev[i].ptr + r.ev[i].len <= data + len);
        assert_int_equal(r.ev[i].object[0], '{');
        assert_int_equal(r.ev[i].object[r.ev[i].len - 1], '}');
    }
    /* a blank line after event 4 counts as a line */
    assert_int_equal(r.ev[3].line_no, 4);
    assert_int_equal(r.ev[4].line_no, 6);
    assert_non_null(strstr(r.ev[1].object, "\"resourceVersion\":\"1002\""));
    rec_reset(&r);
    free(data);
}

static void test_split_every_offset(void **state)
{
    size_t len;
    char *data = slurp(STREAM_FILE, &len);
    rec_t ref = {0}, r = {0};
    kc_errbuf_t eb = {0, ""};

    (void)state;
    assert_int_equal(feed_pieces(0, data, len, NULL, 0, &ref, &eb), 0);
    for (size_t cut = 0; cut <= len; cut++) {
        size_t cuts[1] = {cut};
        assert_int_equal(feed_pieces(0, data, len, cuts, 1, &r, &eb), 0);
        assert_same_events(&ref, &r);
        rec_reset(&r);
    }
    /* a callback that parses (the decoder then validates with cJSON and
     * hands the tree over): the same events at every split */
    for (size_t cut = 0; cut <= len; cut++) {
        size_t cuts[1] = {cut};
        r.parse = 1;
        assert_int_equal(feed_pieces(0, data, len, cuts, 1, &r, &eb), 0);
        assert_same_events(&ref, &r);
        rec_reset(&r);
    }
    /* three pieces: every offset paired with a second cut a prime step later */
    for (size_t cut = 0; cut + 1 < len; cut += 3) {
        size_t cuts[2] = {cut, cut + 1 + (cut * 7919) % (len - cut - 1)};
        assert_int_equal(feed_pieces(0, data, len, cuts, 2, &r, &eb), 0);
        assert_same_events(&ref, &r);
        rec_reset(&r);
    }
    rec_reset(&ref);
    free(data);
}

static void test_byte_by_byte(void **state)
{
    size_t len;
    char *data = slurp(STREAM_FILE, &len);
    rec_t ref = {0}, r = {0};
    kc_errbuf_t eb = {0, ""};
    kc_watch_decoder_t *d;

    (void)state;
    assert_int_equal(feed_pieces(0, data, len, NULL, 0, &ref, &eb), 0);
    assert_int_equal(kc_watch_decoder_new(0, record, &r, &d), 0);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(kc_watch_decoder_feed(d, data + i, 1, &eb), 0);
    assert_int_equal(kc_watch_decoder_finish(d, &eb), 0);
    assert_int_equal(kc_watch_decoder_events(d), 8);
    kc_watch_decoder_free(d);
    assert_same_events(&ref, &r);
    rec_reset(&r);
    rec_reset(&ref);
    free(data);
}

static void test_many_per_chunk(void **state)
{
    const char *one = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n";
    size_t ol = strlen(one), n = 50;
    char *buf = malloc(ol * n);
    rec_t r = {0};
    kc_errbuf_t eb = {0, ""};

    (void)state;
    for (size_t i = 0; i < n; i++)
        memcpy(buf + i * ol, one, ol);
    /* 50 events in one chunk, then the same split in chunks of 17 bytes */
    assert_int_equal(feed_pieces(0, buf, ol * n, NULL, 0, &r, &eb), 0);
    assert_int_equal(r.n, MAX_EV < 50 ? MAX_EV : 50);
    assert_int_equal(r.ev[49].line_no, 50);
    rec_reset(&r);
    {
        size_t cuts[64], nc = 0;
        for (size_t p = 17; p < ol * n && nc < 64; p += 17 * 3)
            cuts[nc++] = p;
        assert_int_equal(feed_pieces(0, buf, ol * n, cuts, nc, &r, &eb), 0);
        assert_int_equal(r.n, 50);
    }
    rec_reset(&r);
    free(buf);
}

static void test_crlf_and_blank_lines(void **state)
{
    const char *s = "\n\r\n{\"type\":\"DELETED\",\"object\":{\"metadata\":{}}}\r\n  \n";
    rec_t r = {0};
    kc_errbuf_t eb = {0, ""};

    (void)state;
    assert_int_equal(feed_pieces(0, s, strlen(s), NULL, 0, &r, &eb), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.ev[0].type, KC_WATCH_DELETED);
    assert_int_equal(r.ev[0].line_no, 3);
    rec_reset(&r);
}

static void test_oversized_event(void **state)
{
    size_t len;
    char *data = slurp(STREAM_FILE, &len);
    size_t first = (size_t)(strchr(data, '\n') - data) + 1;  /* line 1: 935 bytes + '\n' */
    rec_t r = {0};
    kc_errbuf_t eb = {0, ""};
    kc_watch_decoder_t *d;
    size_t i;
    int rc;

    (void)state;
    assert_true(first < 1000);
    /* whole: line 1 is delivered, the 1154-byte line 2 is too big */
    rc = feed_pieces(1000, data, len, NULL, 0, &r, &eb);
    assert_int_equal(rc, KC_ETOOBIG);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.ev[0].type, KC_WATCH_ADDED);
    if (!strstr(eb.msg, "line 2") || !strstr(eb.msg, "exceeds the limit of 1000 bytes"))
        fail_msg("message: %s", eb.msg);
    rec_reset(&r);

    /* byte by byte: refused as soon as the buffered part passes the cap */
    assert_int_equal(kc_watch_decoder_new(1000, record, &r, &d), 0);
    rc = 0;
    for (i = 0; i < len && rc == 0; i++)
        rc = kc_watch_decoder_feed(d, data + i, 1, &eb);
    assert_int_equal(rc, KC_ETOOBIG);
    assert_int_equal(i, first + 1001);   /* the 1001st byte of line 2 */
    assert_int_equal(r.n, 1);
    if (!strstr(eb.msg, "line 2"))
        fail_msg("message: %s", eb.msg);
    /* sticky */
    assert_int_equal(kc_watch_decoder_feed(d, "\n", 1, &eb), KC_ETOOBIG);
    assert_int_equal(kc_watch_decoder_finish(d, &eb), KC_ETOOBIG);
    kc_watch_decoder_free(d);
    rec_reset(&r);
    free(data);
}

/* The same outcome whether or not the callback parses (after a first good
 * event that it parses, the decoder validates with cJSON: the error and
 * its message must not change), and at every split. */
static void expect_parse_error(const char *stream, size_t delivered, const char *where,
                               const char *what)
{
    for (int parse = 0; parse < 2; parse++) {
        rec_t r = {0};
        kc_errbuf_t eb = {0, ""};
        int rc;

        r.parse = parse;
        rc = feed_pieces(0, stream, strlen(stream), NULL, 0, &r, &eb);
        assert_int_equal(rc, KC_EPARSE);
        assert_int_equal(eb.code, KC_EPARSE);
        assert_int_equal(r.n, delivered);
        if (strstr(eb.msg, where) == NULL || strstr(eb.msg, what) == NULL)
            fail_msg("message \"%s\" lacks \"%s\" / \"%s\" (parse %d)", eb.msg, where, what,
                     parse);
        rec_reset(&r);
        for (size_t cut = 0; cut <= strlen(stream); cut++) {
            size_t cuts[1] = {cut};
            kc_errbuf_t eb2 = {0, ""};
            r.parse = parse;
            assert_int_equal(feed_pieces(0, stream, strlen(stream), cuts, 1, &r, &eb2), KC_EPARSE);
            assert_int_equal(r.n, delivered);
            assert_string_equal(eb.msg, eb2.msg);
            rec_reset(&r);
        }
    }
}

#define GOOD "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\"}}}\n"

/* Build an object from bytes with and without kc_obj_opts_t.prevalidated:
 * both must give the same stored JSON and metadata. */
static void assert_same_obj(const char *json, size_t len)
{
    kc_obj_opts_t full = KC_OBJ_OPTS_INIT, pre = KC_OBJ_OPTS_INIT;
    kc_obj_t *a = NULL, *b = NULL;
    kc_errbuf_t eb = {0, ""};

    pre.prevalidated = 1;
    if (kc_obj_new(json, len, &full, &a, &eb) != 0)
        fail_msg("kc_obj_new: %s: %.*s", eb.msg, (int)len, json);
    assert_int_equal(kc_obj_new(json, len, &pre, &b, &eb), 0);
    assert_obj_same(a, b);
    kc_obj_unref(a);
    kc_obj_unref(b);
}

/* KC_WATCH_OBJECT_MINIFIED: set exactly when the object's bytes were
 * validated by the decoder's scan and hold no insignificant whitespace;
 * such bytes build the same cache object without the second pass. */
static void test_minified_flag(void **state)
{
    static const struct {
        const char *line;
        int minified;
    } cases[] = {
        /* escapes, unicode (raw and escaped, a surrogate pair), nested
         * arrays, strings holding whitespace and brackets */
        { "{\"type\":\"ADDED\",\"object\":{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\","
          "\"namespace\":\"ns\",\"uid\":\"u-1\",\"resourceVersion\":\"7\",\"labels\":{\"k\\u0031\":"
          "\"v \\\"q\\\" \\u00e9\xc3\xa9\",\"e\":\"\\ud83d\\ude00\"},\"managedFields\":[{\"a\":[[1,"
          "2],[]]}]},\"data\":{\"x\":\"a b\\n{c}[d]\",\"n\":[[[-1.5e3,true,null]]]}}}\n", 1 },
        /* whitespace around the envelope only */
        { " { \"type\" : \"MODIFIED\" , \"object\":{\"metadata\":{\"name\":\"b\"}} }\n", 1 },
        /* whitespace inside the object, at each kind of place */
        { "{\"type\":\"ADDED\",\"object\":{ \"metadata\":{\"name\":\"c\"}}}\n", 0 },
        { "{\"type\":\"ADDED\",\"object\":{\"metadata\" :{\"name\":\"c\"}}}\n", 0 },
        { "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"c\"} }}\n", 0 },
        { "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\": \"c\"}}}\n", 0 },
        { "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"c\"},\r\"d\":[1]}}\n", 0 },
        { "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"c\"},\"d\":[1,\t2]}}\n", 0 },
        { "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"d\",\"labels\":{}}}}\r\n", 1 },
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int parse = 0; parse < 2; parse++) {
            rec_t r = {0};
            kc_errbuf_t eb = {0, ""};
            /* parse: the second event goes the cJSON way (the first
             * callback parsed), which never sets the flag, unless the
             * line has bytes outside printable ASCII ('\r' too: then
             * the scan validates) */
            int ascii = 1;
            for (const char *c = cases[i].line; *c && *c != '\n'; c++)
                if ((unsigned char)*c >= 0x80 || (unsigned char)*c < 0x20)
                    ascii = 0;
            char stream[2048];
            snprintf(stream, sizeof(stream), "%s%s", cases[i].line, cases[i].line);
            r.parse = parse;
            if (feed_pieces(0, stream, strlen(stream), NULL, 0, &r, &eb) != 0)
                fail_msg("case %zu (parse %d): %s", i, parse, eb.msg);
            assert_int_equal(r.n, 2);
            for (size_t j = 0; j < 2; j++) {
                int want = parse && j == 1 && ascii ? 0 : cases[i].minified;
                if ((r.ev[j].flags & KC_WATCH_OBJECT_MINIFIED) != (want ? KC_WATCH_OBJECT_MINIFIED : 0u))
                    fail_msg("case %zu event %zu (parse %d): flags %u, want minified %d", i, j,
                             parse, r.ev[j].flags, want);
                if (r.ev[j].flags & KC_WATCH_OBJECT_MINIFIED)
                    assert_same_obj(r.ev[j].object, r.ev[j].len);
            }
            rec_reset(&r);
        }
    }
    /* malformed bytes inside the object are still refused, where they are */
    expect_parse_error(GOOD "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\"},\"d\":"
                            "[1,[2,]]}}\n", 1, "line 2, byte 112", "not JSON: value expected");
    expect_parse_error(GOOD "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\"} \"d\":1}}\n",
                       1, "line 2, byte 102", "not JSON: ',' or '}' expected");
    expect_parse_error(GOOD "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\"},1:2}}\n", 1,
                       "line 2, byte 102", "not JSON: member name (string) expected");
    expect_parse_error(GOOD "{\"type\":\"ADDED\",\"object\":{\"metadata\"{}}}\n", 1,
                       "line 2, byte 88", "not JSON: ':' expected after member name");
    expect_parse_error(GOOD "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"\xc3\"}}}\n", 1,
                       "line 2", "not JSON: invalid UTF-8 in string");
    expect_parse_error(GOOD "{\"type\":\"ADDED\",\"object\":{\"metadata\":[]}}\n", 1, "line 2",
                       "ADDED event object without \"metadata\"");
    /* the first "metadata" is the one that counts */
    expect_parse_error(GOOD "{\"type\":\"ADDED\",\"object\":{\"metadata\":null,\"metadata\":{}}}\n",
                       1, "line 2", "ADDED event object without \"metadata\"");
    /* nesting: the object counts as one level, as when it was scanned
     * whole; the deepest accepted object is one kc_obj_new accepts too */
    for (int extra = 0; extra < 2; extra++) {
        char deep[1200];
        size_t n = 0;
        int depth = KC_JSON_MAX_DEPTH - 1 + extra; /* arrays inside the object */
        n += (size_t)snprintf(deep + n, sizeof(deep) - n,
                              "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\"},\"d\":");
        for (int k = 0; k < depth; k++)
            deep[n++] = '[';
        for (int k = 0; k < depth; k++)
            deep[n++] = ']';
        n += (size_t)snprintf(deep + n, sizeof(deep) - n, "}}\n");
        rec_t r = {0};
        kc_errbuf_t eb = {0, ""};
        int rc = feed_pieces(0, deep, n, NULL, 0, &r, &eb);
        if (extra) {
            assert_int_equal(rc, KC_EPARSE);
            assert_non_null(strstr(eb.msg, "nesting too deep"));
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(r.n, 1);
            assert_true(r.ev[0].flags & KC_WATCH_OBJECT_MINIFIED);
            assert_same_obj(r.ev[0].object, r.ev[0].len);
        }
        rec_reset(&r);
    }
}

static void test_malformed_lines(void **state)
{
    (void)state;
    expect_parse_error(GOOD "not json\n", 1, "line 2, byte 52", "not JSON");
    expect_parse_error(GOOD GOOD "{\"type\":\"ADDED\",\"object\":{\"metadata\":{}}\n", 2, "line 3",
                       "not JSON");
    expect_parse_error(GOOD "{\"type\":\"EXPLODED\",\"object\":{\"metadata\":{}}}\n", 1, "line 2",
                       "unknown event type \"EXPLODED\"");
    expect_parse_error(GOOD "{\"type\":\"ADDED\",\"object\":{\"kind\":\"X\"}}\n", 1, "line 2",
                       "ADDED event object without \"metadata\"");
    expect_parse_error("{\"object\":{\"metadata\":{}}}\n", 0, "line 1", "without a \"type\"");
    expect_parse_error("{\"type\":\"ADDED\"}\n", 0, "line 1", "without an \"object\"");
    expect_parse_error("[1,2]\n", 0, "line 1", "not a JSON object");
    expect_parse_error(GOOD "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"\xff\"}}}\n", 1,
                       "line 2", "not JSON");
    expect_parse_error(GOOD "{\"type\":\"ADDED\",\"object\":{\"metadata\":{}}} trailing\n", 1,
                       "line 2", "not JSON");
    /* inside the object, where cJSON validates once the callback parses */
    expect_parse_error(GOOD "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"a\":tru}}}\n", 1,
                       "line 2", "not JSON");
    expect_parse_error(GOOD "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"a\":\"\\x\"}}}\n", 1,
                       "line 2", "not JSON: invalid escape");
    expect_parse_error(GOOD "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"a\":\"\x01\"}}}\n", 1,
                       "line 2", "not JSON");
    expect_parse_error(GOOD "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"a\":[1,}}}\n", 1,
                       "line 2", "not JSON");
    /* ERROR events need no metadata */
    {
        const char *s = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410}}\n";
        rec_t r = {0};
        kc_errbuf_t eb = {0, ""};
        assert_int_equal(feed_pieces(0, s, strlen(s), NULL, 0, &r, &eb), 0);
        assert_int_equal(r.n, 1);
        rec_reset(&r);
    }
}

static void test_truncated(void **state)
{
    const char *s = GOOD "{\"type\":\"MODIFIED\",\"object\":{\"meta";
    rec_t r = {0};
    kc_errbuf_t eb = {0, ""};

    (void)state;
    assert_int_equal(feed_pieces(0, s, strlen(s), NULL, 0, &r, &eb), KC_EPARSE);
    assert_int_equal(r.n, 1);
    assert_non_null(strstr(eb.msg, "truncated"));
    assert_non_null(strstr(eb.msg, "line 2"));
    rec_reset(&r);
    /* a complete final line without its newline is still truncated: the
     * server always terminates events */
    s = GOOD "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{}}}";
    assert_int_equal(feed_pieces(0, s, strlen(s), NULL, 0, &r, &eb), KC_EPARSE);
    assert_int_equal(r.n, 1);
    rec_reset(&r);
}

static void test_callback_stops(void **state)
{
    size_t len;
    char *data = slurp(STREAM_FILE, &len);
    rec_t r = {0};
    kc_errbuf_t eb = {0, ""};
    kc_watch_decoder_t *d;

    (void)state;
    r.stop_at = 2;
    assert_int_equal(kc_watch_decoder_new(0, record, &r, &d), 0);
    assert_int_equal(kc_watch_decoder_feed(d, data, len, &eb), 1);
    assert_int_equal(r.n, 2);
    assert_int_equal(kc_watch_decoder_feed(d, data, len, &eb), 1);
    assert_int_equal(r.n, 2);
    kc_watch_decoder_free(d);
    rec_reset(&r);
    free(data);
}

static void test_event_parse_and_status(void **state)
{
    size_t len;
    char *data = slurp(STREAM_FILE, &len);
    rec_t r = {0};
    kc_errbuf_t eb = {0, ""};
    kc_watch_event_t ev;
    kc_status_t st;
    cJSON *tree;

    (void)state;
    assert_int_equal(feed_pieces(0, data, len, NULL, 0, &r, &eb), 0);
    memset(&ev, 0, sizeof(ev));
    ev.type = r.ev[0].type;
    ev.object = r.ev[0].object;
    ev.object_len = r.ev[0].len;
    ev.line_no = 1;
    tree = kc_watch_event_parse(&ev);
    assert_non_null(tree);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(
                            cJSON_GetObjectItem(tree, "metadata"), "resourceVersion")),
                        "1001");
    cJSON_Delete(tree);

    kc_status_clear(&st);
    assert_int_equal(r.ev[7].type, KC_WATCH_ERROR);
    assert_int_equal(kc_status_from_json(r.ev[7].object, r.ev[7].len, &st), KC_EGONE);
    assert_int_equal(st.http_code, 410);
    assert_string_equal(st.reason, "Expired");
    assert_string_equal(st.message, "too old resource version: 5 (1011)");
    assert_true(kc_status_is_gone(&st));
    assert_false(kc_status_is_not_found(&st));
    assert_int_equal(kc_status_from_json(r.ev[0].object, r.ev[0].len, &st), KC_EPARSE);
    rec_reset(&r);
    free(data);
}

static void test_status_fixture(void **state)
{
    size_t len;
    char *data = slurp("../shared/fixtures/api-testdata/core.v1.Status.json", &len);
    kc_status_t st;
    const char *conflict = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"
                           "\"status\":\"Failure\",\"message\":\"configmaps \\\"a\\\" already "
                           "exists\",\"reason\":\"AlreadyExists\",\"code\":409,\"details\":"
                           "{\"name\":\"a\",\"kind\":\"configmaps\"}}";
    const char *ok = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":"
                     "\"Success\",\"details\":{\"name\":\"demo\",\"kind\":\"configmaps\"}}";

    (void)state;
    kc_status_clear(&st);
    /* the fixture is a generated Status with placeholder values; it must
     * decode without crashing and keep its message */
    kc_status_from_json(data, len, &st);
    assert_true(st.message[0] != '\0');
    free(data);

    kc_status_clear(&st);
    assert_int_equal(kc_status_from_json(conflict, strlen(conflict), &st), KC_EEXISTS);
    assert_true(kc_status_is_already_exists(&st));
    assert_false(kc_status_is_conflict(&st));
    assert_non_null(strstr(st.detail, "name=a"));
    kc_status_clear(&st);
    assert_int_equal(kc_status_from_json(ok, strlen(ok), &st), 0);
}

#ifndef NO_MALLOC_HOOK
static int count_only(void *ud, const kc_watch_event_t *ev)
{
    (void)ev;
    (*(size_t *)ud)++;
    return 0;
}
#endif

static void test_alloc_failures(void **state)
{
#ifdef NO_MALLOC_HOOK
    (void)state;
    skip();
#else
    size_t len;
    char *data = slurp(STREAM_FILE, &len);
    int n, rc = -1;

    (void)state;
    for (n = 1; n < 1000; n++) {
        kc_watch_decoder_t *d = NULL;
        kc_errbuf_t eb;
        size_t events = 0;
        long base = live;

        fail_at = n;
        rc = kc_watch_decoder_new(0, count_only, &events, &d);
        for (size_t off = 0; rc == 0 && off < len; off += 7)
            rc = kc_watch_decoder_feed(d, data + off, off + 7 > len ? len - off : 7, &eb);
        if (rc == 0)
            rc = kc_watch_decoder_finish(d, &eb);
        fail_at = 0;
        if (rc != 0) {
            assert_int_equal(rc, -ENOMEM);
            if (d) /* sticky */
                assert_int_equal(kc_watch_decoder_feed(d, "x", 1, &eb), -ENOMEM);
        } else {
            assert_int_equal(events, 8);
        }
        kc_watch_decoder_free(d);
        assert_int_equal(live, base);
        if (rc == 0)
            break;
    }
    assert_int_equal(rc, 0);
    assert_true(n > 2);
    free(data);
#endif
}

/* Mutations of the recorded stream (bytes flipped, deleted, duplicated),
 * fed in random pieces (run under ASan by make asan): never a crash or a
 * leak, only success or KC_EPARSE / KC_ETOOBIG with the line in the
 * message, and never more events than lines. */
static void test_mutations(void **state)
{
    size_t len;
    char *data = slurp(STREAM_FILE, &len);
    char *m = malloc(len + 64);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int rounds = getenv("KC_SANITIZER") ? 300 : 2000;
    rec_t ref = {0};
    kc_errbuf_t eb;

    (void)state;
    assert_int_equal(feed_pieces(0, data, len, NULL, 0, &ref, &eb), 0);
    for (int round = 0; round < rounds; round++) {
        size_t ml = len, cuts[4], nc = 0, at;
        rec_t r = {0};
        int rc, kinds;

        memcpy(m, data, len);
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        kinds = 1 + (int)(x % 3);
        for (int k = 0; k < kinds; k++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            at = (size_t)(x >> 8) % ml;
            switch ((x >> 3) % 4) {
            case 0: m[at] = (char)(x >> 40); break;                      /* flip */
            case 1: memmove(m + at, m + at + 1, ml - at - 1); ml--; break; /* delete */
            case 2: if (ml < len + 60) { memmove(m + at + 1, m + at, ml - at); ml++; } break;
            case 3: m[at] = (x & 64) ? '\n' : '"'; break;                /* structure */
            }
        }
        for (size_t i = 0; i < 4; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            cuts[nc++] = (size_t)(x >> 9) % (ml + 1);
        }
        for (size_t i = 1; i < nc; i++)          /* sort the cut points */
            for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
                size_t t = cuts[j];
                cuts[j] = cuts[j - 1];
                cuts[j - 1] = t;
            }
        rc = feed_pieces(x & 1 ? 1200 : 0, m, ml, cuts, nc, &r, &eb);
        if (rc != 0 && rc != KC_EPARSE && rc != KC_ETOOBIG)
            fail_msg("round %d: unexpected %s: %s", round, kc_err_name(rc), eb.msg);
        if (rc != 0 && strstr(eb.msg, "line ") == NULL)
            fail_msg("round %d: message without a line: %s", round, eb.msg);
        assert_true(r.n <= ref.n + 3);
        rec_reset(&r);
    }
    rec_reset(&ref);
    free(m);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recorded_stream_whole),
        cmocka_unit_test(test_split_every_offset),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_many_per_chunk),
        cmocka_unit_test(test_crlf_and_blank_lines),
        cmocka_unit_test(test_oversized_event),
        cmocka_unit_test(test_malformed_lines),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_event_parse_and_status),
        cmocka_unit_test(test_status_fixture),
        cmocka_unit_test(test_minified_flag),
        cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
