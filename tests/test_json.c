/* Unit tests for common/kc_json: the validating scanner, iteration,
 * unescaping, minify and quote.  Valid and invalid tables, every
 * truncation of a real fixture, escapes, UTF-8 and the depth limit. */
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

#include "kc_common.h"
#include "kc_json.h"

#include "kc_test_fixture.h"

static int sanitizer(void)
{
    const char *s = getenv("KC_SANITIZER");
    return s && *s;
}

static int parse(const char *s, kc_json_span_t *v, kc_json_err_t *e)
{
    return kc_json_parse_doc(s, strlen(s), v, e);
}

/* kc_json_scan_object_meta validates exactly as kc_json_scan_ex: the same
 * answer, offset and message, the same end and whitespace report, for any
 * input that starts with an object. */
static void check_meta_agrees(const char *buf, size_t len, unsigned max_depth)
{
    size_t lead = 0;   /* buf need not be NUL-terminated */
    while (lead < len && (buf[lead] == ' ' || buf[lead] == '\t' || buf[lead] == '\r' ||
                          buf[lead] == '\n'))
        lead++;
    if (lead >= len || buf[lead] != '{')
        return;
    size_t p1 = 0, p2 = 0;
    kc_json_span_t v1, v2;
    kc_json_err_t e1 = { 0, NULL }, e2 = { 0, NULL };
    kc_json_meta_t m;
    int w1 = -1, w2 = -1;
    int r1 = kc_json_scan_ex(buf, len, &p1, max_depth, &v1, &w1, &e1);
    int r2 = kc_json_scan_object_meta(buf, len, &p2, max_depth, &v2, &w2, &m, &e2);
    if (r1 != r2)
        fail_msg("scan_ex %d, scan_object_meta %d on %.80s", r1, r2, buf);
    if (r1 == 0) {
        assert_int_equal(p1, p2);
        assert_int_equal(w1, w2);
        assert_ptr_equal(v1.p, v2.p);
        assert_int_equal(v1.len, v2.len);
        assert_ptr_equal(m.obj, v2.p);
        assert_int_equal(m.obj_len, v2.len);
    } else {
        if (e1.offset != e2.offset || strcmp(e1.what, e2.what) != 0)
            fail_msg("scan_ex at %zu '%s', scan_object_meta at %zu '%s'", e1.offset, e1.what,
                     e2.offset, e2.what);
        assert_int_equal(p2, 0);
    }
}

static void test_valid_table(void **state)
{
    static const struct { const char *in; kc_json_type_t type; size_t vlen; } t[] = {
        { "{}", KC_JSON_OBJECT, 2 },
        { "[]", KC_JSON_ARRAY, 2 },
        { " \t\r\n{ } \n", KC_JSON_OBJECT, 3 },
        { "0", KC_JSON_NUMBER, 1 },
        { "-0", KC_JSON_NUMBER, 2 },
        { "-12.5e+3", KC_JSON_NUMBER, 8 },
        { "1E9", KC_JSON_NUMBER, 3 },
        { "0.000", KC_JSON_NUMBER, 5 },
        { "true", KC_JSON_TRUE, 4 },
        { "false", KC_JSON_FALSE, 5 },
        { "null", KC_JSON_NULL, 4 },
        { "\"\"", KC_JSON_STRING, 2 },
        { "\"a\\\"b\\\\c\\/\\b\\f\\n\\r\\t\"", KC_JSON_STRING, 21 },
        { "\"\\u00e9\\uD83D\\uDE00\"", KC_JSON_STRING, 20 },
        { "\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\"", KC_JSON_STRING, 17 },
        { "{\"a\":[1,2,{\"b\":null}],\"c\":\"d\"}", KC_JSON_OBJECT, 30 },
        { "[[[[[]]]]]", KC_JSON_ARRAY, 10 },
        { "{ \"k\" : [ true , false ] }", KC_JSON_OBJECT, 26 },
        { "\"0123456789abcdef0123456789abcdef\\n0123456789abcdef\"", KC_JSON_STRING, 52 },
    };
    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        kc_json_span_t v;
        kc_json_err_t e = { 0, NULL };
        int rc = parse(t[i].in, &v, &e);
        if (rc != 0)
            fail_msg("valid[%zu] %s: rc %d at %zu: %s", i, t[i].in, rc, e.offset, e.what);
        assert_int_equal(v.type, t[i].type);
        assert_int_equal(v.len, t[i].vlen);
    }
}

static void test_invalid_table(void **state)
{
    static const struct { const char *in; size_t off; const char *what; } t[] = {
        { "", 0, "end of input" },
        { "   ", 3, "end of input" },
        { "{", 1, "end of input" },
        { "[1,", 3, "end of input" },
        { "[1 2]", 3, "',' or ']'" },
        { "{\"a\" 1}", 5, "':'" },
        { "{\"a\":1,}", 7, "member name" },
        { "{a:1}", 1, "member name" },
        { "[1,]", 3, "value expected" },
        { "01", 1, "trailing" },
        { "1.", 2, "end of input" },
        { "1.e5", 2, "digit expected" },
        { "1e", 2, "end of input" },
        { "1e+x", 3, "digit expected" },
        { "-", 1, "end of input" },
        { "-a", 1, "invalid number" },
        { "+1", 0, "value expected" },
        { "tru", 3, "end of input" },
        { "trux", 0, "invalid literal" },
        { "nul", 3, "end of input" },
        { "\"abc", 4, "unterminated" },
        { "\"a\\x\"", 2, "invalid escape" },
        { "\"\\u12G4\"", 1, "\\u escape" },
        { "\"\\uD800\"", 1, "surrogate" },
        { "\"\\uDC00\"", 1, "surrogate" },
        { "\"\\uD800\\u0041\"", 1, "surrogate" },
        { "\"a\tb\"", 2, "control character" },
        { "\"\x01\"", 1, "control character" },
        { "\"\xc3\x28\"", 1, "UTF-8" },
        { "\"\xc0\xaf\"", 1, "UTF-8" },
        { "\"\xe0\x80\xaf\"", 1, "UTF-8" },
        { "\"\xed\xa0\x80\"", 1, "UTF-8" },
        { "\"\xf4\x90\x80\x80\"", 1, "UTF-8" },
        { "\"\xff\"", 1, "UTF-8" },
        { "\"\x80\"", 1, "UTF-8" },
        { "\"0123456789abcdef\x80xyz\"", 17, "UTF-8" },
        { "\"0123456789abcdef0123\x1f\"", 21, "control character" },
        { "{} {}", 3, "trailing" },
        { "]", 0, "value expected" },
        { "[1}", 2, "',' or ']'" },
        { "{\"a\":1]", 6, "',' or '}'" },
    };
    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        kc_json_span_t v;
        kc_json_err_t e = { 9999, NULL };
        char dst[64];
        size_t dl;
        int rc = kc_json_parse_doc_minify(t[i].in, strlen(t[i].in), dst, &dl, &v, &e);
        if (rc != KC_EPARSE || e.offset != t[i].off || !strstr(e.what, t[i].what))
            fail_msg("minify invalid[%zu] '%s': rc %d offset %zu '%s'", i, t[i].in, rc,
                     e.offset, e.what ? e.what : "");
        e.offset = 9999;
        e.what = NULL;
        rc = parse(t[i].in, &v, &e);
        if (rc != KC_EPARSE)
            fail_msg("invalid[%zu] '%s': rc %d, expected KC_EPARSE", i, t[i].in, rc);
        check_meta_agrees(t[i].in, strlen(t[i].in), KC_JSON_MAX_DEPTH);
        assert_non_null(e.what);
        if (e.offset != t[i].off || !strstr(e.what, t[i].what))
            fail_msg("invalid[%zu] '%s': got offset %zu '%s', want %zu '%s'", i, t[i].in,
                     e.offset, e.what, t[i].off, t[i].what);
    }
}

static void test_depth_limit(void **state)
{
    char buf[2 * (KC_JSON_MAX_DEPTH + 1) + 1];
    kc_json_span_t v;
    kc_json_err_t e;
    (void)state;

    for (int d = KC_JSON_MAX_DEPTH; d <= KC_JSON_MAX_DEPTH + 1; d++) {
        for (int i = 0; i < d; i++)
            buf[i] = '[';
        for (int i = 0; i < d; i++)
            buf[d + i] = ']';
        int rc = kc_json_parse_doc(buf, (size_t)(2 * d), &v, &e);
        if (d == KC_JSON_MAX_DEPTH) {
            assert_int_equal(rc, 0);
        } else {
            assert_int_equal(rc, KC_EPARSE);
            assert_int_equal(e.offset, KC_JSON_MAX_DEPTH);
            assert_non_null(strstr(e.what, "too deep"));
        }
    }
    /* Mixed objects: {"a":{"a":...}} at depth limit + 1 */
    size_t n = 0;
    char *big = malloc(8 * (KC_JSON_MAX_DEPTH + 2));
    assert_non_null(big);
    for (int i = 0; i < KC_JSON_MAX_DEPTH + 1; i++) {
        memcpy(big + n, "{\"a\":", 5);
        n += 5;
    }
    big[n++] = '1';
    for (int i = 0; i < KC_JSON_MAX_DEPTH + 1; i++)
        big[n++] = '}';
    assert_int_equal(kc_json_parse_doc(big, n, &v, &e), KC_EPARSE);
    assert_non_null(strstr(e.what, "too deep"));
    /* one level less is fine */
    assert_int_equal(kc_json_parse_doc(big + 5, n - 6, &v, &e), 0);
    free(big);
}

/* Every prefix of a fixture must fail (the whole is a single object), with
 * an offset inside the prefix; the whole must pass. */
static void check_truncations(const char *buf, size_t len, size_t stride)
{
    kc_json_span_t v;
    kc_json_err_t e;

    assert_int_equal(kc_json_parse_doc(buf, len, &v, &e), 0);
    assert_int_equal(v.type, KC_JSON_OBJECT);
    for (size_t cut = 0; cut < len; cut += stride) {
        /* the object ends at its last '}'; trailing newline may follow */
        if (cut >= (size_t)(v.p - buf) + v.len)
            break;
        char *copy = malloc(cut ? cut : 1); /* exact size: ASan catches over-reads */
        assert_non_null(copy);
        memcpy(copy, buf, cut);
        e.offset = (size_t)-1;
        e.what = NULL;
        int rc = kc_json_parse_doc(copy, cut, &v, &e);
        if (rc != KC_EPARSE)
            fail_msg("prefix of %zu bytes: rc %d", cut, rc);
        check_meta_agrees(copy, cut, KC_JSON_MAX_DEPTH);
        assert_true(e.offset <= cut);
        assert_non_null(e.what);
        char *dst = malloc(cut ? cut : 1);
        size_t dl;
        kc_json_err_t e2;
        assert_non_null(dst);
        assert_int_equal(kc_json_parse_doc_minify(copy, cut, dst, &dl, NULL, &e2), KC_EPARSE);
        assert_int_equal(e2.offset, e.offset);
        free(dst);
        free(copy);
        kc_json_parse_doc(buf, len, &v, &e);
    }
}

static void test_truncation_fixtures(void **state)
{
    size_t len;
    char *cm = read_fixture("core.v1.ConfigMap.json", &len);
    (void)state;

    check_truncations(cm, len, 1);
    free(cm);
    char *pod = read_fixture("core.v1.Pod.json", &len);
    check_truncations(pod, len, sanitizer() ? 97 : 7);
    free(pod);
}

/* The whole fixture set: kc_json agrees with cJSON, and minify output is
 * what cJSON_PrintUnformatted would give in byte count terms (re-parse). */
static void test_fixtures_agree_with_cjson(void **state)
{
    static const char *names[] = { "core.v1.ConfigMap.json", "core.v1.Pod.json",
                                   "apps.v1.Deployment.json", "core.v1.Event.json",
                                   "core.v1.Namespace.json",
                                   "coordination.k8s.io.v1.Lease.json" };
    (void)state;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        size_t len;
        char *b = read_fixture(names[i], &len);
        kc_json_span_t v;
        kc_json_err_t e;
        assert_int_equal(kc_json_parse_doc(b, len, &v, &e), 0);
        cJSON *ref = cJSON_ParseWithLength(b, len);
        assert_non_null(ref);

        char *min = malloc(len + 1);
        assert_non_null(min);
        size_t mlen = kc_json_minify(v, min);
        min[mlen] = '\0';
        /* the one-pass validate+minify gives the same bytes */
        char *min2 = malloc(len);
        size_t mlen2 = 0;
        kc_json_span_t v2;
        assert_non_null(min2);
        assert_int_equal(kc_json_parse_doc_minify(b, len, min2, &mlen2, &v2, &e), 0);
        assert_int_equal(mlen2, mlen);
        assert_memory_equal(min2, min, mlen);
        assert_ptr_equal(v2.p, min2);
        assert_int_equal(v2.len, mlen);
        free(min2);
        kc_json_span_t mv;
        assert_int_equal(kc_json_parse_doc(min, mlen, &mv, &e), 0);
        char *refmin = cJSON_PrintUnformatted(ref);
        assert_non_null(refmin);
        cJSON *re = cJSON_ParseWithLength(min, mlen);
        assert_non_null(re);
        assert_true(cJSON_Compare(ref, re, 1));
        /* no whitespace outside strings remains */
        assert_true(mlen <= strlen(refmin) + 64);

        /* iterate top-level members: same count as cJSON */
        kc_json_iter_t it;
        kc_json_span_t k, val;
        int n = 0, rc;
        assert_int_equal(kc_json_iter_init(&it, v), 0);
        while ((rc = kc_json_iter_next(&it, &k, &val)) == 1) {
            char *ks = NULL;
            assert_int_equal(kc_json_str_dup(k, &ks), 0);
            assert_non_null(cJSON_GetObjectItemCaseSensitive(ref, ks));
            free(ks);
            n++;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(n, cJSON_GetArraySize(ref));

        kc_json_span_t md, name;
        assert_int_equal(kc_json_obj_get(v, "metadata", &md), 0);
        assert_int_equal(md.type, KC_JSON_OBJECT);
        assert_int_equal(kc_json_obj_get(md, "name", &name), 0);
        assert_true(kc_json_str_eq(name, "nameValue"));
        assert_int_equal(kc_json_obj_get(md, "nope", &name), KC_ENOTFOUND);

        cJSON_Delete(re);
        cJSON_free(refmin);
        cJSON_Delete(ref);
        free(min);
        free(b);
    }
}

static void test_escapes_unescape(void **state)
{
    static const struct { const char *json; const char *want; } t[] = {
        { "\"plain\"", "plain" },
        { "\"a\\\"b\"", "a\"b" },
        { "\"\\\\\\/\\b\\f\\n\\r\\t\"", "\\/\b\f\n\r\t" },
        { "\"\\u0041\\u00e9\\u20ac\"", "A\xc3\xa9\xe2\x82\xac" },
        { "\"\\uD83D\\uDE00!\"", "\xf0\x9f\x98\x80!" },
        { "\"raw \xc3\xa9\"", "raw \xc3\xa9" },
        { "\"\"", "" },
    };
    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        kc_json_span_t v;
        kc_json_err_t e;
        assert_int_equal(parse(t[i].json, &v, &e), 0);
        long n = kc_json_str_len(v);
        assert_int_equal(n, (long)strlen(t[i].want));
        char buf[64];
        assert_int_equal(kc_json_str_unescape(v, buf, sizeof(buf)), 0);
        assert_string_equal(buf, t[i].want);
        assert_true(kc_json_str_eq(v, t[i].want));
        char longer[80];
        snprintf(longer, sizeof(longer), "%sx", t[i].want);
        assert_false(kc_json_str_eq(v, longer));
        if (n > 0) {
            char shorter[64];
            memcpy(shorter, t[i].want, (size_t)n - 1);
            shorter[n - 1] = '\0';
            assert_false(kc_json_str_eq(v, shorter));
        }
        /* exact capacity works, one less is -ERANGE */
        assert_int_equal(kc_json_str_unescape(v, buf, (size_t)n + 1), 0);
        assert_int_equal(kc_json_str_unescape(v, buf, (size_t)n), -ERANGE);
        char *d = NULL;
        assert_int_equal(kc_json_str_dup(v, &d), 0);
        assert_string_equal(d, t[i].want);
        free(d);
    }
    /* embedded NUL is rejected by unescape */
    kc_json_span_t v;
    kc_json_err_t e;
    char buf[16];
    assert_int_equal(parse("\"a\\u0000b\"", &v, &e), 0);
    assert_int_equal(kc_json_str_unescape(v, buf, sizeof(buf)), KC_EPARSE);
    /* non-strings */
    assert_int_equal(parse("12", &v, &e), 0);
    assert_int_equal(kc_json_str_unescape(v, buf, sizeof(buf)), -EINVAL);
    assert_false(kc_json_str_eq(v, "12"));
    assert_true(kc_json_str_len(v) < 0);
}

static void test_quote_roundtrip(void **state)
{
    static const char *in[] = { "", "simple", "q\"b\\s", "ctl\x01\x1f\n\t\r\b\f",
                                "utf8 \xc3\xa9 \xf0\x9f\x98\x80" };
    (void)state;
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        char q[256], back[256];
        size_t n = kc_json_quote(in[i], q);
        assert_true(n <= 6 * strlen(in[i]) + 2);
        kc_json_span_t v;
        kc_json_err_t e;
        assert_int_equal(kc_json_parse_doc(q, n, &v, &e), 0);
        assert_int_equal(v.type, KC_JSON_STRING);
        assert_int_equal(kc_json_str_unescape(v, back, sizeof(back)), 0);
        assert_string_equal(back, in[i]);
    }
}

static void test_scan_stream_and_iter(void **state)
{
    const char *s = " {\"a\":1} [2,3]  \"x\" 4";
    size_t pos = 0, len = strlen(s);
    kc_json_span_t v;
    kc_json_err_t e;
    kc_json_type_t want[] = { KC_JSON_OBJECT, KC_JSON_ARRAY, KC_JSON_STRING, KC_JSON_NUMBER };
    (void)state;

    for (int i = 0; i < 4; i++) {
        assert_int_equal(kc_json_scan(s, len, &pos, &v, &e), 0);
        assert_int_equal(v.type, want[i]);
    }
    assert_int_equal(pos, len);
    assert_int_equal(kc_json_scan(s, len, &pos, &v, &e), KC_EPARSE);
    assert_int_equal(pos, len); /* unchanged on error */

    const char *doc = "{ \"k\\u0031\" : [ 1 , \"two\" , { } , [ ] , null ] , \"k2\":true }";
    kc_json_span_t d, arr, key, val;
    assert_int_equal(parse(doc, &d, &e), 0);
    assert_int_equal(kc_json_obj_get(d, "k1", &arr), 0);
    assert_int_equal(arr.type, KC_JSON_ARRAY);
    kc_json_iter_t it;
    kc_json_type_t at[] = { KC_JSON_NUMBER, KC_JSON_STRING, KC_JSON_OBJECT, KC_JSON_ARRAY,
                            KC_JSON_NULL };
    assert_int_equal(kc_json_iter_init(&it, arr), 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(kc_json_iter_next(&it, &key, &val), 1);
        assert_int_equal(val.type, at[i]);
        assert_null(key.p);
    }
    assert_int_equal(kc_json_iter_next(&it, &key, &val), 0);
    assert_int_equal(kc_json_obj_get(d, "k2", &val), 0);
    assert_int_equal(val.type, KC_JSON_TRUE);
    assert_int_equal(kc_json_obj_get(arr, "k2", &val), -EINVAL);
    kc_json_span_t num = { "1", 1, KC_JSON_NUMBER };
    assert_int_equal(kc_json_iter_init(&it, num), -EINVAL);

    /* a span that is not well-formed: EPARSE, never a crash */
    kc_json_span_t bad = { "{\"a\" 1 \"b\":2}", 13, KC_JSON_OBJECT };
    assert_int_equal(kc_json_iter_init(&it, bad), 0);
    assert_int_equal(kc_json_iter_next(&it, &key, &val), KC_EPARSE);
    kc_json_span_t bad2 = { "[\"abc, 1]", 9, KC_JSON_ARRAY };
    assert_int_equal(kc_json_iter_init(&it, bad2), 0);
    assert_int_equal(kc_json_iter_next(&it, &key, &val), KC_EPARSE);

    /* minify keeps string whitespace */
    const char *pretty = "{ \"a b\" : [ 1 , \" x \\\" y \" ] }";
    char out[64];
    assert_int_equal(parse(pretty, &d, &e), 0);
    size_t n = kc_json_minify(d, out);
    out[n] = '\0';
    assert_string_equal(out, "{\"a b\":[1,\" x \\\" y \"]}");
}

/* kc_json_scan_ex: the whitespace report (what lets a validated object skip
 * a second, minifying pass) and the depth limit. */
static void test_scan_ex(void **state)
{
    static const struct {
        const char *doc;
        int ws;
    } cases[] = {
        { "{\"a\":[1,2,{\"b\":null}],\"c\":\"x y\\n \\\" z\"}", 0 },
        { "  {\"a\":1}", 0 },               /* leading whitespace is not inside */
        { "{\"a\": 1}", 1 },
        { "{\"a\":1 }", 1 },
        { "{ \"a\":1}", 1 },
        { "{\"a\" :1}", 1 },
        { "[1 ,2]", 1 },
        { "[1,\n2]", 1 },
        { "[[],{},\"\\u00e9\xc3\xa9\"]", 0 },
        { "[\t]", 1 },
        { "{\"k\":{\"l\":[[[\"\\t\"]]]}}", 0 },
        { "\"only a string with spaces\"", 0 },
    };
    kc_json_span_t v;
    kc_json_err_t e;
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t pos = 0, len = strlen(cases[i].doc);
        int ws = -1;
        assert_int_equal(kc_json_scan_ex(cases[i].doc, len, &pos, KC_JSON_MAX_DEPTH, &v, &ws, &e),
                         0);
        assert_int_equal(pos, len);
        if (ws != cases[i].ws)
            fail_msg("case %zu (%s): has_ws %d, want %d", i, cases[i].doc, ws, cases[i].ws);
        /* and the minifying pass agrees: unchanged exactly when no whitespace */
        char out[128];
        size_t olen;
        assert_int_equal(kc_json_parse_doc_minify(cases[i].doc, len, out, &olen, NULL, &e), 0);
        size_t lead = strspn(cases[i].doc, " \t\r\n");
        assert_int_equal(olen == len - lead && memcmp(out, cases[i].doc + lead, olen) == 0,
                         !cases[i].ws);
    }
    /* the depth limit counts the value itself */
    size_t pos = 0;
    assert_int_equal(kc_json_scan_ex("[[1]]", 5, &pos, 2, &v, NULL, &e), 0);
    pos = 0;
    assert_int_equal(kc_json_scan_ex("[[1]]", 5, &pos, 1, &v, NULL, &e), KC_EPARSE);
    assert_string_equal(e.what, "nesting too deep");
    assert_int_equal(e.offset, 1);
    assert_int_equal(pos, 0);
    pos = 0;
    assert_int_equal(kc_json_scan_ex("7", 1, &pos, 0, &v, NULL, &e), 0);
    pos = 0;
    assert_int_equal(kc_json_scan_ex("{}", 2, &pos, 0, &v, NULL, &e), KC_EPARSE);
    /* above the maximum is the maximum */
    pos = 0;
    assert_int_equal(kc_json_scan_ex("[]", 2, &pos, 100000, &v, NULL, &e), 0);
    /* errors still say what and where */
    pos = 0;
    assert_int_equal(kc_json_scan_ex("{\"a\":\"\\q\"}", 10, &pos, 256, &v, NULL, &e), KC_EPARSE);
    assert_string_equal(e.what, "invalid escape");
    assert_int_equal(e.offset, 6);
}

/* kc_json_str_eqn / KC_JSON_STR_EQ_LIT against escapes: the length
 * shortcuts must give what unescaping gives. */
static void test_str_eqn(void **state)
{
    static const struct {
        const char *span;   /* a string literal as JSON */
        const char *lit;
        size_t litlen;
        int eq;
    } cases[] = {
        { "\"name\"", "name", 4, 1 },
        { "\"name\"", "nam", 3, 0 },
        { "\"name\"", "names", 5, 0 },
        { "\"na\\u006de\"", "name", 4, 1 },
        { "\"\\u006e\\u0061\\u006d\\u0065\"", "name", 4, 1 },
        { "\"na\\u006de\"", "nime", 4, 0 },
        { "\"na\\\\me\"", "na\\me", 5, 1 },
        { "\"a\\\\\"", "a\\\\", 3, 0 },        /* same bytes, but it decodes to a\ */
        { "\"a\\\\\"", "a\\", 2, 1 },
        { "\"\\u00e9\"", "\xc3\xa9", 2, 1 },
        { "\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4, 1 },
        { "\"\\ud83d\\ude00\"", "\xf0\x9f\x98", 3, 0 },
        { "\"\"", "", 0, 1 },
        { "\"\\\"\"", "\"", 1, 1 },
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kc_json_span_t v;
        kc_json_err_t e;
        assert_int_equal(parse(cases[i].span, &v, &e), 0);
        int got = kc_json_str_eqn(v, cases[i].lit, cases[i].litlen);
        if (got != cases[i].eq)
            fail_msg("case %zu: %s vs \"%s\": %d, want %d", i, cases[i].span, cases[i].lit, got,
                     cases[i].eq);
        assert_int_equal(kc_json__str_eq_inl(v, cases[i].lit, cases[i].litlen), cases[i].eq);
        if (strlen(cases[i].lit) == cases[i].litlen)
            assert_int_equal(kc_json_str_eq(v, cases[i].lit), cases[i].eq);
    }
    kc_json_span_t num = { "1", 1, KC_JSON_NUMBER };
    assert_false(KC_JSON_STR_EQ_LIT(num, "1"));
    kc_json_span_t k;
    assert_int_equal(parse("\"metadata\"", &k, NULL), 0);
    assert_true(KC_JSON_STR_EQ_LIT(k, "metadata"));
    assert_false(KC_JSON_STR_EQ_LIT(k, "metadat"));
}

/* Open iterators and next_key/value/resume: one walk visits a member's
 * members and finds its span; the results equal those of the closed API. */
static void test_iter_open(void **state)
{
    const char *doc = "{\"kind\":\"X\",\"m\":{\"a\":1,\"l\":{\"x\":\"}\",\"y\":\"\\\"{\"},"
                      "\"z\":[1,{\"q\":\"]\"},[]],\"e\":{}},\"after\":true}";
    kc_json_span_t d, m, l, key, val;
    kc_json_iter_t top, it, in;
    const char *vp;
    (void)state;

    assert_int_equal(parse(doc, &d, NULL), 0);
    assert_int_equal(kc_json_obj_get(d, "m", &m), 0);
    assert_int_equal(kc_json_obj_get(m, "l", &l), 0);

    assert_int_equal(kc_json_iter_init(&top, d), 0);
    assert_int_equal(kc_json_iter_value(&top, &val), -EINVAL); /* nothing pending */
    assert_int_equal(kc_json_iter_next_key(&top, &key, &vp), 1);
    assert_true(kc_json_str_eq(key, "kind"));
    /* not taken: the next call skips it */
    assert_int_equal(kc_json_iter_next_key(&top, &key, &vp), 1);
    assert_true(kc_json_str_eq(key, "m"));
    assert_ptr_equal(vp, m.p);
    assert_int_equal(kc_json_iter_init_at(&it, vp, d.p + d.len), 0);
    assert_null(kc_json_iter_end(&it));
    int n = 0;
    while (kc_json_iter_next_key(&it, &key, &vp) == 1) {
        n++;
        if (kc_json_str_eq(key, "l")) {
            int k = 0;
            assert_int_equal(kc_json_iter_init_at(&in, vp, d.p + d.len), 0);
            while (kc_json_iter_next(&in, &key, &val) == 1)
                k++;
            assert_int_equal(k, 2);
            assert_ptr_equal(kc_json_iter_end(&in), l.p + l.len);
            assert_int_equal(kc_json_iter_next(&in, &key, &val), 0); /* stays ended */
            assert_int_equal(kc_json_iter_resume(&it, kc_json_iter_end(&in)), 0);
            assert_int_equal(kc_json_iter_resume(&it, kc_json_iter_end(&in)), -EINVAL);
        } else if (kc_json_str_eq(key, "z")) {
            assert_int_equal(kc_json_iter_value(&it, &val), 0);
            assert_int_equal(val.type, KC_JSON_ARRAY);
            assert_int_equal(val.len, strlen("[1,{\"q\":\"]\"},[]]"));
        } else if (kc_json_str_eq(key, "e")) {
            assert_int_equal(kc_json_iter_init_at(&in, vp, d.p + d.len), 0);
            assert_int_equal(kc_json_iter_next(&in, &key, &val), 0);
            assert_ptr_equal(kc_json_iter_end(&in), vp + 2);
        }
    }
    assert_int_equal(n, 4);
    assert_ptr_equal(kc_json_iter_end(&it), m.p + m.len);
    /* the outer iteration goes on after the member walked in place */
    assert_int_equal(kc_json_iter_resume(&top, kc_json_iter_end(&it)), 0);
    assert_int_equal(kc_json_iter_next(&top, &key, &val), 1);
    assert_true(kc_json_str_eq(key, "after"));
    assert_int_equal(val.type, KC_JSON_TRUE);
    assert_int_equal(kc_json_iter_next(&top, &key, &val), 0);

    /* an open iterator over a cut buffer: EPARSE, never a read past it */
    for (size_t cut = 1; cut < m.len; cut++) {
        char *b = malloc(cut);
        assert_non_null(b);
        memcpy(b, m.p, cut);
        assert_int_equal(kc_json_iter_init_at(&it, b, b + cut), 0);
        int rc;
        while ((rc = kc_json_iter_next(&it, &key, &val)) == 1)
            ;
        assert_int_equal(rc, KC_EPARSE);
        free(b);
    }
    assert_int_equal(kc_json_iter_init_at(&it, "x", doc + 1), -EINVAL);
}

/* Random mutations of a fixture must never crash the scanner (ASan checks
 * the reads) and must agree with cJSON on validity where cJSON is strict. */
static void test_mutations(void **state)
{
    size_t len;
    char *cm = read_fixture("core.v1.ConfigMap.json", &len);
    unsigned seed = 12345;
    int rounds = sanitizer() ? 500 : 5000;
    (void)state;

    for (int r = 0; r < rounds; r++) {
        char *m = malloc(len);
        assert_non_null(m);
        memcpy(m, cm, len);
        for (int k = 0; k < 3; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % len;
            seed = seed * 1103515245u + 12345u;
            m[at] = (char)(seed >> 16);
        }
        kc_json_span_t v;
        kc_json_err_t e;
        int rc = kc_json_parse_doc(m, len, &v, &e);
        char *dst = malloc(len);
        size_t dl;
        kc_json_span_t mv;
        kc_json_err_t me;
        assert_non_null(dst);
        int mrc = kc_json_parse_doc_minify(m, len, dst, &dl, &mv, &me);
        check_meta_agrees(m, len, KC_JSON_MAX_DEPTH);
        assert_int_equal(mrc, rc);
        if (rc == 0) {
            kc_json_span_t again;
            assert_int_equal(kc_json_parse_doc(dst, dl, &again, &me), 0);
            assert_true(dl <= len);
        } else {
            assert_int_equal(me.offset, e.offset);
        }
        free(dst);
        if (rc == 0 && v.type == KC_JSON_OBJECT) {
            kc_json_iter_t it;
            kc_json_span_t key, val;
            kc_json_iter_init(&it, v);
            while (kc_json_iter_next(&it, &key, &val) == 1)
                assert_true(val.p >= m && val.p + val.len <= m + len);
        } else if (rc != 0) {
            assert_true(e.offset <= len);
        }
        free(m);
    }
    free(cm);
}

/* kc_json_scan_object_meta: the same validation as kc_json_scan_ex, also
 * inside metadata and labels (errors, nesting limits), and notes that say
 * what kc_json_obj_get would find, or that they are not usable. */
static void test_scan_object_meta(void **state)
{
    static const char *const bad[] = {
        "{\"metadata\":{\"name\":\"a\" \"uid\":1}}",
        "{\"metadata\":{\"name\":\"a\",}}",
        "{\"metadata\":{\"labels\":{\"a\":\"b\",}}}",
        "{\"metadata\":{\"labels\":{\"a\" \"b\"}}}",
        "{\"metadata\":{\"labels\":{\"a\":\"\\q\"}}}",
        "{\"metadata\":{\"labels\":{\"a\":[1,]}}}",
        "{\"metadata\":{\"labels\":{1:\"b\"}}}",
        "{\"metadata\":{\"labels\":{\"a\":\"b\"}",
        "{\"metadata\":{\"name\":\"\xc3\"}}",
        "{\"metadata\":{\"name\":tru}}",
        "{\"metadata\":{\"generation\":01}}",
        "{\"metadata\":{\"uid\":\"a\tb\"}}",
        "{\"metadata\":{\"ownerReferences\":[{\"uid\":\"x\"]}}",
        "{\"metadata\":{\"managedFields\":[}}",
        "{\"metadata\":{}",
        "{\"metadata\":{",
        "{\"metadata\":",
        "{\"metadata\"",
        "{\"a\":1,\"metadata\":{\"name\":\"x\"},\"b\":[}",
        " { \"metadata\" : { \"name\" : \"x\" , \"labels\" : { \"a\" : \"b\" } } } ",
        "{\"metadata\":{\"name\":\"x\",\"labels\":{\"a\":\"b\"}}}",
    };
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        for (size_t cut = 1; cut <= strlen(bad[i]); cut++) {
            char *copy = malloc(cut); /* exact size: ASan catches over-reads */
            assert_non_null(copy);
            memcpy(copy, bad[i], cut);
            check_meta_agrees(copy, cut, KC_JSON_MAX_DEPTH);
            free(copy);
        }

    /* nesting: the limit counts the object, metadata and labels levels */
    static const char *const pre[] = { "{\"a\":", "{\"metadata\":{\"x\":",
                                       "{\"metadata\":{\"labels\":{\"a\":",
                                       "{\"metadata\":{\"generation\":" };
    static const int levels[] = { 1, 2, 3, 2 };
    char *deep = malloc(2 * KC_JSON_MAX_DEPTH + 64);
    assert_non_null(deep);
    for (size_t k = 0; k < sizeof(pre) / sizeof(pre[0]); k++)
        for (int extra = -1; extra <= 1; extra++) {
            int arrays = KC_JSON_MAX_DEPTH - levels[k] + extra;
            size_t n = strlen(pre[k]);
            memcpy(deep, pre[k], n);
            for (int a = 0; a < arrays; a++)
                deep[n++] = '[';
            for (int a = 0; a < arrays; a++)
                deep[n++] = ']';
            for (int l = 0; l < levels[k]; l++)
                deep[n++] = '}';
            for (unsigned md = 0; md <= 4; md++)
                check_meta_agrees(deep, n, md);
            check_meta_agrees(deep, n, KC_JSON_MAX_DEPTH);
        }
    free(deep);

    /* the notes */
    const char *doc = "{\"kind\":\"X\",\"metadata\":{\"name\":\"n\",\"namespace\":\"ns\","
                      "\"uid\":\"u\\u0031\",\"resourceVersion\":\"7\",\"generation\":3,"
                      "\"deletionTimestamp\":null,\"labels\":{\"a\":\"1\",\"b\\n\":\"2\"},"
                      "\"managedFields\":[{}],\"ownerReferences\":[],\"managedFields\":1},"
                      "\"metadata\":7}";
    kc_json_meta_t m;
    kc_json_span_t v;
    kc_json_err_t e;
    size_t pos = 0;
    int ws = -1;
    assert_int_equal(kc_json_scan_object_meta(doc, strlen(doc), &pos, KC_JSON_MAX_DEPTH, &v,
                                              &ws, &m, &e), 0);
    assert_int_equal(pos, strlen(doc));
    assert_int_equal(ws, 0);
    assert_int_equal(m.usable, 1);
    assert_int_equal(m.has_metadata, 1);
    assert_int_equal(m.seen, 0xffu);
    assert_int_equal(m.esc, 1u << KC_JSON_META_UID);
    assert_true(kc_json_str_eq(m.f[KC_JSON_META_NAME], "n"));
    assert_true(kc_json_str_eq(m.f[KC_JSON_META_NAMESPACE], "ns"));
    assert_true(kc_json_str_eq(m.f[KC_JSON_META_UID], "u1"));
    assert_true(kc_json_str_eq(m.f[KC_JSON_META_RV], "7"));
    assert_int_equal(m.f[KC_JSON_META_GENERATION].type, KC_JSON_NUMBER);
    assert_int_equal(m.f[KC_JSON_META_DELETION].type, KC_JSON_NULL);
    assert_int_equal(m.f[KC_JSON_META_OWNERS].type, KC_JSON_ARRAY);
    assert_int_equal(m.f[KC_JSON_META_LABELS].type, KC_JSON_OBJECT);
    assert_int_equal(m.f[KC_JSON_META_LABELS].len, strlen("{\"a\":\"1\",\"b\\n\":\"2\"}"));
    assert_int_equal(m.nlabels, 2);
    assert_int_equal(m.lk_esc, 2);
    assert_int_equal(m.lv_esc, 0);
    assert_true(kc_json_str_eq(m.lk[1], "b\n"));
    assert_true(kc_json_str_eq(m.lv[1], "2"));
    assert_memory_equal(m.mf_val.p, "[{}]", 4);   /* the first one */
    assert_true(kc_json_str_eq(m.mf_key, "managedFields"));

    /* what the notes do not describe makes them unusable */
    static const struct { const char *doc; int usable, has_md; } t[] = {
        { "{\"metadata\":{\"name\":\"a\"}}", 1, 1 },
        { "{\"metadata\":{}}", 1, 1 },
        { "{\"metadata\":{\"name\":\"a\",\"name\":\"b\"}}", 0, 1 },
        { "{\"metadata\":{\"labels\":null,\"labels\":{}}}", 0, 1 },
        { "{\"metadata\":{\"labels\":{},\"labels\":{}}}", 0, 1 },
        { "{\"metadata\":{\"n\\u0061me\":\"a\"}}", 0, 1 },
        { "{\"metadata\":{\"labels\":{\"a\":1}}}", 0, 1 },
        { "{\"metad\\u0061ta\":{\"name\":\"a\"}}", 1, 1 },
        { "{\"metadata\":[]}", 0, 0 },
        { "{\"metadata\":null,\"metadata\":{}}", 0, 0 },
        { "{\"kind\":\"X\"}", 0, 0 },
        { "{\"spec\":{\"metadata\":{}}}", 0, 0 },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        pos = 0;
        assert_int_equal(kc_json_scan_object_meta(t[i].doc, strlen(t[i].doc), &pos,
                                                  KC_JSON_MAX_DEPTH, &v, NULL, &m, &e), 0);
        if (m.usable != t[i].usable || m.has_metadata != t[i].has_md)
            fail_msg("%s: usable %d has_metadata %d", t[i].doc, m.usable, m.has_metadata);
    }
    /* 32 labels are noted, 33 are not */
    for (int nl = 32; nl <= 33; nl++) {
        char buf[1024];
        size_t n = (size_t)snprintf(buf, sizeof(buf), "{\"metadata\":{\"labels\":{");
        for (int l = 0; l < nl; l++)
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s\"k%d\":\"v\"", l ? "," : "", l);
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "}}}");
        pos = 0;
        assert_int_equal(kc_json_scan_object_meta(buf, n, &pos, KC_JSON_MAX_DEPTH, &v, NULL,
                                                  &m, &e), 0);
        assert_int_equal(m.usable, nl == 32);
        assert_int_equal(m.nlabels, (size_t)nl);
    }
    /* kc_json_scan_string: one string, validated as kc_json_scan would */
    static const struct { const char *in; int rc; size_t off; const char *what; } st[] = {
        { "\"type\":1", 0, 6, NULL },
        { "\"a\\u00e9\\n\"", 0, 11, NULL },
        { "\"\"", 0, 2, NULL },
        { "\"abc", KC_EPARSE, 4, "unterminated string" },
        { "\"a\\x\"", KC_EPARSE, 2, "invalid escape" },
        { "\"a\x01\"", KC_EPARSE, 2, "control character in string" },
        { "\"\xc3\x28\"", KC_EPARSE, 1, "invalid UTF-8 in string" },
        { "\"\\uD800\"", KC_EPARSE, 1, "unpaired UTF-16 surrogate" },
        { "abc", -EINVAL, 0, "string expected" },
        { " \"a\"", -EINVAL, 0, "string expected" },
    };
    for (size_t i = 0; i < sizeof(st) / sizeof(st[0]); i++) {
        size_t len = strlen(st[i].in), p1 = 0;
        char *copy = malloc(len);   /* exact size: ASan catches over-reads */
        assert_non_null(copy);
        memcpy(copy, st[i].in, len);
        e.offset = 9999;
        e.what = NULL;
        int rc = kc_json_scan_string(copy, len, &p1, &v, &e);
        if (rc != st[i].rc)
            fail_msg("scan_string %s: rc %d, want %d", st[i].in, rc, st[i].rc);
        if (rc == 0) {
            assert_int_equal(p1, st[i].off);
            assert_int_equal(v.type, KC_JSON_STRING);
            assert_ptr_equal(v.p, copy);
            assert_int_equal(v.len, st[i].off);
            /* the same as kc_json_scan */
            size_t p2 = 0;
            kc_json_span_t v2;
            assert_int_equal(kc_json_scan(copy, len, &p2, &v2, &e), 0);
            assert_int_equal(p2, p1);
        } else {
            assert_int_equal(p1, 0);
            assert_int_equal(e.offset, st[i].off);
            assert_string_equal(e.what, st[i].what);
        }
        free(copy);
    }
    pos = 5;
    assert_int_equal(kc_json_scan_string("\"abc\"", 5, &pos, &v, &e), -EINVAL);

    /* anything but an object is an error */
    pos = 0;
    assert_int_equal(kc_json_scan_object_meta("[1]", 3, &pos, KC_JSON_MAX_DEPTH, &v, NULL, &m,
                                              &e), KC_EPARSE);
    assert_string_equal(e.what, "object expected");
    assert_int_equal(kc_json_scan_object_meta("[1]", 3, &pos, KC_JSON_MAX_DEPTH, &v, NULL, NULL,
                                              &e), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_table),
        cmocka_unit_test(test_invalid_table),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_truncation_fixtures),
        cmocka_unit_test(test_fixtures_agree_with_cjson),
        cmocka_unit_test(test_escapes_unescape),
        cmocka_unit_test(test_quote_roundtrip),
        cmocka_unit_test(test_scan_stream_and_iter),
        cmocka_unit_test(test_scan_ex),
        cmocka_unit_test(test_str_eqn),
        cmocka_unit_test(test_iter_open),
        cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_scan_object_meta),
    };
    return cmocka_run_group_tests_name("kc_json", tests, NULL, NULL);
}
