/*
 * kc_json: validating, non-allocating JSON scanner (see kc_json.h).
 *
 * Design.  kc_json_scan is the only validating walker: an iterative state
 * machine over the bytes with a bit stack for the open containers (object or
 * array), so nesting costs one bit and never recursion.  String bodies are
 * scanned 16 bytes at a time (SSE2 where the target has it, else 8 bytes at a
 * time with SWAR arithmetic) looking for the only bytes that need attention:
 * '"', '\\', control characters and bytes >= 0x80 (UTF-8 sequences, which are
 * then validated exactly: no overlongs, no surrogates, nothing above
 * U+10FFFF).  \u escapes must be well-formed and surrogates paired, so every
 * string kc_json_scan accepts can be unescaped into valid UTF-8.
 *
 * kc_json_scan_object_meta validates an object with the same grammar,
 * member by member (member_next, member_value, the same messages), so that
 * it can note the Kubernetes metadata members a cache object keeps on the
 * way (kc_json_meta_t); values it does not note go through the same
 * scan_value, with the nesting limit reduced by the levels above them.
 *
 * The iterator and kc_json_obj_get run over spans that kc_json_scan already
 * validated, so they only skip: they match brackets and find closing quotes
 * without re-validating.  They never read outside the span, so a span that
 * was not well-formed gives KC_EPARSE (or a wrong member), never a crash.
 *
 * Invariants: no function reads buf[len] or beyond; no function allocates
 * except kc_json_str_dup.  No shared state: everything is reentrant.
 */
#include "kc_json.h"
#include "kc_common.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#if defined(__GNUC__)
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define LIKELY(x) (x)
#define UNLIKELY(x) (x)
#endif

const char *kc_json_type_name(kc_json_type_t t)
{
    switch (t) {
    case KC_JSON_OBJECT: return "object";
    case KC_JSON_ARRAY: return "array";
    case KC_JSON_STRING: return "string";
    case KC_JSON_NUMBER: return "number";
    case KC_JSON_TRUE: return "true";
    case KC_JSON_FALSE: return "false";
    case KC_JSON_NULL: return "null";
    case KC_JSON_INVALID: break;
    }
    return "invalid";
}

static inline int is_ws(unsigned char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static inline const char *skip_ws(const char *p, const char *end)
{
    while (p < end && is_ws((unsigned char)*p))
        p++;
    return p;
}

/* skip_ws that notes in *ws whether there was any. */
static inline const char *ws_skip(const char *p, const char *end, int *ws)
{
    /* every whitespace byte is <= ' ': the usual token fails the first test */
    if (p < end && UNLIKELY((unsigned char)*p <= ' ') && is_ws((unsigned char)*p)) {
        *ws = 1;
        p = skip_ws(p + 1, end);
    }
    return p;
}

static inline int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* 4 hex digits at p (caller checked p + 4 <= end), or -1. */
static inline long hex4(const unsigned char *p)
{
    int a = hexval(p[0]), b = hexval(p[1]), c = hexval(p[2]), d = hexval(p[3]);

    if ((a | b | c | d) < 0)
        return -1;
    return (long)((a << 12) | (b << 8) | (c << 4) | d);
}

/* Advance p to the first byte in [p, end) that is '"', '\\', < 0x20 or
 * >= 0x80, or to end. */
static inline const unsigned char *find_special(const unsigned char *p,
                                                const unsigned char *end)
{
#if defined(__SSE2__)
    const __m128i vq = _mm_set1_epi8('"');
    const __m128i vb = _mm_set1_epi8('\\');
    const __m128i sp = _mm_set1_epi8(0x20);

    /* A signed compare with 0x20 finds both control characters and bytes
     * >= 0x80 (negative as signed). */
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i m = _mm_or_si128(_mm_cmpeq_epi8(v, vq), _mm_cmpeq_epi8(v, vb));
        unsigned mask = (unsigned)_mm_movemask_epi8(_mm_or_si128(m, _mm_cmplt_epi8(v, sp)));
        if (mask)
            return p + __builtin_ctz(mask);
        p += 16;
    }
#else
    while (end - p >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
        uint64_t xq = x ^ (ones * '"'), xb = x ^ (ones * '\\');
        uint64_t t = ((xq - ones) & ~xq) | ((xb - ones) & ~xb) | (x - ones * 0x20) | x;
        if (t & high)
            break; /* the byte loop below finds the exact position */
        p += 8;
    }
#endif
    while (p < end) {
        unsigned char c = *p;
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80)
            return p;
        p++;
    }
    return p;
}

/* Length of the valid UTF-8 sequence starting at p (c = *p >= 0x80), or 0. */
static inline int utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned char c = p[0];
    size_t avail = (size_t)(end - p);

    if (c >= 0xc2 && c <= 0xdf) {
        if (avail < 2 || (p[1] & 0xc0) != 0x80)
            return 0;
        return 2;
    }
    if (c >= 0xe0 && c <= 0xef) {
        if (avail < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
            return 0;
        if (c == 0xe0 && p[1] < 0xa0)
            return 0; /* overlong */
        if (c == 0xed && p[1] >= 0xa0)
            return 0; /* UTF-16 surrogate */
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (avail < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 ||
            (p[3] & 0xc0) != 0x80)
            return 0;
        if (c == 0xf0 && p[1] < 0x90)
            return 0; /* overlong */
        if (c == 0xf4 && p[1] >= 0x90)
            return 0; /* above U+10FFFF */
        return 4;
    }
    return 0;
}

struct scan_err {
    const char *at;
    const char *what;
};

/* Fill *e and return ret (NULL from the scanners, -1 from member_next). */
#define FAIL_AS(ret, where, msg)                                                              \
    do {                                                                                      \
        e->at = (const char *)(where);                                                        \
        e->what = (msg);                                                                      \
        return ret;                                                                           \
    } while (0)
#define FAIL(where, msg) FAIL_AS(NULL, where, msg)

/* Validate a string whose opening quote is at p.  Returns the byte after
 * the closing quote, or NULL with *e filled.  esc (a constant NULL in most
 * callers, so that the test disappears) is set to 1 at an escape. */
static inline __attribute__((always_inline)) const char *
scan_string(const char *start, const char *endc, struct scan_err *e, int *esc)
{
    const unsigned char *p = (const unsigned char *)start + 1;
    const unsigned char *end = (const unsigned char *)endc;

    for (;;) {
        p = find_special(p, end);
        if (UNLIKELY(p >= end))
            FAIL(end, "unterminated string");
        unsigned char c = *p;
        if (LIKELY(c == '"'))
            return (const char *)p + 1;
        if (c == '\\') {
            if (esc)
                *esc = 1;
            if (end - p < 2)
                FAIL(end, "unterminated string");
            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                p += 2;
                continue;
            case 'u':
                break;
            default:
                FAIL(p, "invalid escape");
            }
            if (end - p < 6) {
                /* Report truncation rather than a bad escape when what is
                 * there so far could still be valid. */
                for (const unsigned char *q = p + 2; q < end; q++)
                    if (hexval(*q) < 0)
                        FAIL(p, "invalid \\u escape");
                FAIL(end, "unterminated string");
            }
            long u = hex4(p + 2);
            if (u < 0)
                FAIL(p, "invalid \\u escape");
            if (u >= 0xdc00 && u <= 0xdfff)
                FAIL(p, "unpaired UTF-16 surrogate");
            if (u >= 0xd800 && u <= 0xdbff) {
                if (end - p < 12) {
                    if (end - p >= 7 && p[6] != '\\')
                        FAIL(p, "unpaired UTF-16 surrogate");
                    if (end - p >= 8 && p[7] != 'u')
                        FAIL(p, "unpaired UTF-16 surrogate");
                    FAIL(end, "unterminated string");
                }
                long lo = p[6] == '\\' && p[7] == 'u' ? hex4(p + 8) : -1;
                if (lo < 0xdc00 || lo > 0xdfff)
                    FAIL(p, "unpaired UTF-16 surrogate");
                p += 12;
            } else {
                p += 6;
            }
            continue;
        }
        if (c < 0x20)
            FAIL(p, "control character in string");
        int n = utf8_seq(p, end);
        if (n == 0) {
            /* A sequence cut by the end of the buffer is truncation. */
            int need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
            if (c >= 0xc2 && c <= 0xf4 && end - p < need) {
                int ok = 1;
                for (const unsigned char *q = p + 1; q < end; q++)
                    ok &= (*q & 0xc0) == 0x80;
                if (ok)
                    FAIL(end, "unterminated string");
            }
            FAIL(p, "invalid UTF-8 in string");
        }
        p += n;
    }
}

static const char *scan_number(const char *p, const char *end, struct scan_err *e)
{
    if (*p == '-')
        p++;
    if (p >= end)
        FAIL(end, "unexpected end of input in number");
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    } else {
        FAIL(p, "invalid number");
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end)
            FAIL(end, "unexpected end of input in number");
        if (!(*p >= '0' && *p <= '9'))
            FAIL(p, "invalid number: digit expected after '.'");
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end)
            FAIL(end, "unexpected end of input in number");
        if (!(*p >= '0' && *p <= '9'))
            FAIL(p, "invalid number: digit expected in exponent");
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    return p;
}

static const char *scan_literal(const char *p, const char *end, const char *lit,
                                size_t n, struct scan_err *e)
{
    for (size_t i = 0; i < n; i++) {
        if (p + i >= end)
            FAIL(end, "unexpected end of input in literal");
        if (p[i] != lit[i])
            FAIL(p, "invalid literal");
    }
    return p + n;
}

static kc_json_type_t type_of(char c)
{
    switch (c) {
    case '{': return KC_JSON_OBJECT;
    case '[': return KC_JSON_ARRAY;
    case '"': return KC_JSON_STRING;
    case 't': return KC_JSON_TRUE;
    case 'f': return KC_JSON_FALSE;
    case 'n': return KC_JSON_NULL;
    default:
        if (c == '-' || (c >= '0' && c <= '9'))
            return KC_JSON_NUMBER;
        return KC_JSON_INVALID;
    }
}

/* The validating walker.  p points at the first byte of a value (after
 * whitespace).  Returns the byte after the value or NULL with *e filled.
 * When outp is non-NULL the value is also written, without insignificant
 * whitespace, at *outp (advanced); callers pass a constant so that the
 * compiler makes a plain and a minifying copy of this function. */
#define EMIT1(c) do { if (outp) *o++ = (c); } while (0)
#define EMITN(s, n) do { if (outp) { memcpy(o, (s), (size_t)(n)); o += (n); } } while (0)
static inline __attribute__((always_inline)) const char *
scan_value_t(const char *p, const char *end, struct scan_err *e, char **outp,
             unsigned max_depth, int *wsp)
{
    unsigned char stack[KC_JSON_MAX_DEPTH / 8]; /* bit set: container is an object */
    unsigned depth = 0;
    int ws = 0;                                 /* insignificant whitespace seen */
    char *o = outp ? *outp : NULL;
    const char *start;

value:
    if (UNLIKELY(p >= end))
        FAIL(end, "unexpected end of input: value expected");
    start = p;
    switch (*p) {
    case '{':
        if (depth >= max_depth)
            FAIL(p, "nesting too deep");
        stack[depth / 8] |= (unsigned char)(1u << (depth % 8));
        depth++;
        EMIT1('{');
        p = ws_skip(p + 1, end, &ws);
        if (p < end && *p == '}') {
            EMIT1('}');
            p++;
            depth--;
            goto after;
        }
        goto key;
    case '[':
        if (depth >= max_depth)
            FAIL(p, "nesting too deep");
        stack[depth / 8] &= (unsigned char)~(1u << (depth % 8));
        depth++;
        EMIT1('[');
        p = ws_skip(p + 1, end, &ws);
        if (p < end && *p == ']') {
            EMIT1(']');
            p++;
            depth--;
            goto after;
        }
        goto value;
    case '"':
        p = scan_string(p, end, e, NULL);
        if (!p)
            return NULL;
        EMITN(start, p - start);
        goto after;
    case 't':
        p = scan_literal(p, end, "true", 4, e);
        break;
    case 'f':
        p = scan_literal(p, end, "false", 5, e);
        break;
    case 'n':
        p = scan_literal(p, end, "null", 4, e);
        break;
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        p = scan_number(p, end, e);
        break;
    default:
        FAIL(p, "value expected");
    }
    if (!p)
        return NULL;
    EMITN(start, p - start);

after:
    if (depth == 0) {
        if (outp)
            *outp = o;
        if (wsp)
            *wsp = ws;
        return p;
    }
    p = ws_skip(p, end, &ws);
    if (UNLIKELY(p >= end))
        FAIL(end, "unexpected end of input in container");
    {
        int in_obj = (stack[(depth - 1) / 8] >> ((depth - 1) % 8)) & 1;
        if (*p == ',') {
            EMIT1(',');
            p = ws_skip(p + 1, end, &ws);
            if (in_obj)
                goto key;
            goto value;
        }
        if (*p == (in_obj ? '}' : ']')) {
            EMIT1(*p);
            p++;
            depth--;
            goto after;
        }
        FAIL(p, in_obj ? "',' or '}' expected" : "',' or ']' expected");
    }

key:
    if (UNLIKELY(p >= end))
        FAIL(end, "unexpected end of input: member name expected");
    if (*p != '"')
        FAIL(p, "member name (string) expected");
    start = p;
    p = scan_string(p, end, e, NULL);
    if (!p)
        return NULL;
    EMITN(start, p - start);
    p = ws_skip(p, end, &ws);
    if (UNLIKELY(p >= end))
        FAIL(end, "unexpected end of input: ':' expected");
    if (*p != ':')
        FAIL(p, "':' expected after member name");
    EMIT1(':');
    p = ws_skip(p + 1, end, &ws);
    goto value;
}
#undef EMIT1
#undef EMITN

static const char *scan_value(const char *p, const char *end, struct scan_err *e,
                              unsigned max_depth, int *ws)
{
    return scan_value_t(p, end, e, NULL, max_depth, ws);
}

static const char *scan_value_min(const char *p, const char *end, struct scan_err *e,
                                  char **outp)
{
    return scan_value_t(p, end, e, outp, KC_JSON_MAX_DEPTH, NULL);
}

/* ---- validating an object member by member, noting its metadata ---- */

/* The next member of an object validated member by member.  *pp is just
 * after its '{' (first) or after the previous member's value.  Returns 1
 * with the name in *key (*kesc: it holds an escape) and *pp at the value's
 * first byte (after whitespace); 0 with *pp after the closing '}'; NULL's
 * counterpart -1 with *e filled.  Same grammar and messages as
 * scan_value_t's object states. */
static inline __attribute__((always_inline)) int
member_next(const char **pp, const char *end, int first, int *ws, struct scan_err *e,
            kc_json_span_t *key, int *kesc)
{
    const char *p = *pp, *q;

    if (!first && LIKELY(end - p >= 2 && p[0] == ',' && p[1] == '"')) {
        p++;   /* minified: ,"name" */
    } else {
        p = ws_skip(p, end, ws);
        if (!first) {
            if (UNLIKELY(p >= end))
                FAIL_AS(-1, end, "unexpected end of input in container");
            if (*p == '}') {
                *pp = p + 1;
                return 0;
            }
            if (UNLIKELY(*p != ','))
                FAIL_AS(-1, p, "',' or '}' expected");
            p = ws_skip(p + 1, end, ws);
        } else if (p < end && *p == '}') {
            *pp = p + 1;
            return 0;
        }
        if (UNLIKELY(p >= end))
            FAIL_AS(-1, end, "unexpected end of input: member name expected");
        if (UNLIKELY(*p != '"'))
            FAIL_AS(-1, p, "member name (string) expected");
    }
    *kesc = 0;
    q = scan_string(p, end, e, kesc);
    if (!q)
        return -1;
    key->p = p;
    key->len = (size_t)(q - p);
    key->type = KC_JSON_STRING;
    if (LIKELY(q < end && *q == ':')) {
        p = q + 1;   /* minified: "name": */
    } else {
        p = ws_skip(q, end, ws);
        if (UNLIKELY(p >= end))
            FAIL_AS(-1, end, "unexpected end of input: ':' expected");
        if (UNLIKELY(*p != ':'))
            FAIL_AS(-1, p, "':' expected after member name");
        p++;
    }
    *pp = ws_skip(p, end, ws);
    return 1;
}

/* Validate the value at p (a member's, after whitespace) into *v with
 * depth levels allowed counting itself; a string's escape sets *esc. */
static inline __attribute__((always_inline)) const char *
member_value(const char *p, const char *end, struct scan_err *e, unsigned depth, int *ws,
             kc_json_span_t *v, int *esc)
{
    const char *q;

    if (LIKELY(p < end && *p == '"')) {
        q = scan_string(p, end, e, esc);
        v->type = KC_JSON_STRING;
    } else {
        int w = 0;
        q = scan_value(p, end, e, depth, &w);
        *ws |= w;
        v->type = q ? type_of(*p) : KC_JSON_INVALID;
    }
    if (!q)
        return NULL;
    v->p = p;
    v->len = (size_t)(q - p);
    return q;
}

/* metadata.labels, the object at p, with depth levels allowed (counting
 * itself): validated, each member noted. */
static const char *scan_labels_meta(const char *p, const char *end, struct scan_err *e,
                                    unsigned depth, int *ws, kc_json_meta_t *m)
{
    kc_json_span_t key, v;
    size_t n = 0;
    int kesc, vesc;

    if (depth == 0)
        FAIL(p, "nesting too deep");
    p++;
    for (;;) {
        int r = member_next(&p, end, n == 0, ws, e, &key, &kesc);
        if (r < 0)
            return NULL;
        if (r == 0)
            break;
        vesc = 0;
        p = member_value(p, end, e, depth - 1, ws, &v, &vesc);
        if (!p)
            return NULL;
        if (v.type != KC_JSON_STRING)
            m->usable = 0;   /* kc_obj_new names the error */
        if (n < KC_JSON_META_LABELS_MAX) {
            m->lk[n] = key;
            m->lv[n] = v;
            m->lk_esc |= (uint32_t)kesc << n;
            m->lv_esc |= (uint32_t)vesc << n;
        }
        n++;
    }
    if (n > KC_JSON_META_LABELS_MAX)
        m->usable = 0;
    m->nlabels = n;
    return p;
}

#define META_MF KC_JSON_META_NFIELDS   /* managedFields, in meta_field's answer */

/* Which noted metadata member a name (without escapes) is, or -1. */
static inline int meta_field(const char *k, size_t n)
{
#define IS(lit) (n == sizeof(lit) - 1 && memcmp(k, lit, sizeof(lit) - 1) == 0)
    switch (n ? k[0] : 0) {
    case 'n':
        return IS("name") ? KC_JSON_META_NAME : IS("namespace") ? KC_JSON_META_NAMESPACE : -1;
    case 'u': return IS("uid") ? KC_JSON_META_UID : -1;
    case 'r': return IS("resourceVersion") ? KC_JSON_META_RV : -1;
    case 'g': return IS("generation") ? KC_JSON_META_GENERATION : -1;
    case 'd': return IS("deletionTimestamp") ? KC_JSON_META_DELETION : -1;
    case 'l': return IS("labels") ? KC_JSON_META_LABELS : -1;
    case 'o': return IS("ownerReferences") ? KC_JSON_META_OWNERS : -1;
    case 'm': return IS("managedFields") ? META_MF : -1;
    default: return -1;
    }
#undef IS
}

/* The metadata object at p, with depth levels allowed (counting itself):
 * validated member by member, the members kc_json_meta_t holds noted. */
static const char *scan_meta(const char *p, const char *end, struct scan_err *e,
                             unsigned depth, int *ws, kc_json_meta_t *m)
{
    kc_json_span_t key, v;
    int first = 1, kesc, vesc;

    if (depth == 0)
        FAIL(p, "nesting too deep");
    m->usable = 1;
    m->has_metadata = 1;
    p++;
    for (;;) {
        int r = member_next(&p, end, first, ws, e, &key, &kesc);
        if (r < 0)
            return NULL;
        if (r == 0)
            break;
        first = 0;
        /* an escaped name could spell any member: not summarised */
        int f = kesc ? -1 : meta_field(key.p + 1, key.len - 2);
        if (kesc)
            m->usable = 0;
        if (f == KC_JSON_META_LABELS && p < end && *p == '{' &&
            !(m->seen & (1u << KC_JSON_META_LABELS))) {
            const char *q = scan_labels_meta(p, end, e, depth - 1, ws, m);
            if (!q)
                return NULL;
            m->f[f].p = p;
            m->f[f].len = (size_t)(q - p);
            m->f[f].type = KC_JSON_OBJECT;
            m->seen |= 1u << f;
            p = q;
            continue;
        }
        vesc = 0;
        p = member_value(p, end, e, depth - 1, ws, &v, &vesc);
        if (!p)
            return NULL;
        if (f < 0)
            continue;
        if (f == META_MF) {
            if (!m->mf_key.p) {   /* the first counts, as for kc_obj_new */
                m->mf_key = key;
                m->mf_val = v;
            }
            continue;
        }
        if (m->seen & (1u << f))
            m->usable = 0;   /* twice: kc_obj_new decides which one counts */
        m->seen |= 1u << f;
        m->esc |= (unsigned)vesc << f;
        m->f[f] = v;
    }
    return p;
}

/* The object at p (after whitespace), with depth levels allowed (counting
 * itself): validated member by member, its first "metadata" member, when
 * an object, summarised in *m by scan_meta. */
static const char *scan_object_meta(const char *p, const char *end, struct scan_err *e,
                                    unsigned depth, int *ws, kc_json_meta_t *m)
{
    kc_json_span_t key;
    int first = 1, md_seen = 0, kesc;

    if (p >= end)
        FAIL(end, "unexpected end of input: value expected");
    if (*p != '{')
        FAIL(p, "object expected");
    if (depth == 0)
        FAIL(p, "nesting too deep");
    p++;
    for (;;) {
        int r = member_next(&p, end, first, ws, e, &key, &kesc);
        if (r < 0)
            return NULL;
        if (r == 0)
            return p;
        first = 0;
        if (!md_seen && (kesc ? KC_JSON_STR_EQ_LIT(key, "metadata")
                              : key.len == 10 && memcmp(key.p + 1, "metadata", 8) == 0)) {
            md_seen = 1;   /* the first "metadata" is the one that counts */
            if (p < end && *p == '{') {
                p = scan_meta(p, end, e, depth - 1, ws, m);
                if (!p)
                    return NULL;
                continue;
            }
        }
        int w = 0;
        p = scan_value(p, end, e, depth - 1, &w);
        if (!p)
            return NULL;
        *ws |= w;
    }
}

/* Fill *err (may be NULL) and return rc: every public scanner reports its
 * failures this way. */
static int report(kc_json_err_t *err, size_t offset, const char *what, int rc)
{
    if (err) {
        err->offset = offset;
        err->what = what;
    }
    return rc;
}

int kc_json_scan_object_meta(const char *buf, size_t len, size_t *pos, unsigned max_depth,
                             kc_json_span_t *out, int *has_ws, kc_json_meta_t *meta,
                             kc_json_err_t *err)
{
    const char *end = buf + len, *p, *start;
    struct scan_err e = { NULL, NULL };
    int ws = 0;

    if (!buf || !pos || *pos > len || !meta)
        return report(err, pos ? *pos : 0, "invalid arguments", -EINVAL);
    if (max_depth > KC_JSON_MAX_DEPTH)
        max_depth = KC_JSON_MAX_DEPTH;
    start = skip_ws(buf + *pos, end);
    meta->obj = start;
    meta->usable = meta->has_metadata = 0;
    meta->seen = meta->esc = 0;
    meta->mf_key.p = meta->mf_val.p = NULL;
    meta->nlabels = 0;
    meta->lk_esc = meta->lv_esc = 0;
    p = scan_object_meta(start, end, &e, max_depth, &ws, meta);
    if (!p)
        return report(err, (size_t)(e.at - buf), e.what, KC_EPARSE);
    meta->obj_len = (size_t)(p - start);
    if (out) {
        out->p = start;
        out->len = (size_t)(p - start);
        out->type = KC_JSON_OBJECT;
    }
    if (has_ws)
        *has_ws = ws;
    *pos = (size_t)(p - buf);
    return 0;
}

#undef FAIL
#undef FAIL_AS

int kc_json_scan_string(const char *buf, size_t len, size_t *pos, kc_json_span_t *out,
                        kc_json_err_t *err)
{
    struct scan_err e = { NULL, NULL };
    const char *p, *q;

    if (!buf || !pos || *pos >= len || buf[*pos] != '"')
        return report(err, pos ? *pos : 0, "string expected", -EINVAL);
    p = buf + *pos;
    q = scan_string(p, buf + len, &e, NULL);
    if (!q)
        return report(err, (size_t)(e.at - buf), e.what, KC_EPARSE);
    if (out) {
        out->p = p;
        out->len = (size_t)(q - p);
        out->type = KC_JSON_STRING;
    }
    *pos = (size_t)(q - buf);
    return 0;
}

int kc_json_scan(const char *buf, size_t len, size_t *pos, kc_json_span_t *out,
                 kc_json_err_t *err)
{
    return kc_json_scan_ex(buf, len, pos, KC_JSON_MAX_DEPTH, out, NULL, err);
}

int kc_json_scan_ex(const char *buf, size_t len, size_t *pos, unsigned max_depth,
                    kc_json_span_t *out, int *has_ws, kc_json_err_t *err)
{
    const char *end = buf + len;
    const char *p;
    struct scan_err e = { NULL, NULL };
    int ws = 0;

    if (!buf || !pos || *pos > len)
        return report(err, pos ? *pos : 0, "invalid arguments", -EINVAL);
    p = skip_ws(buf + *pos, end);
    const char *start = p;
    if (max_depth > KC_JSON_MAX_DEPTH)
        max_depth = KC_JSON_MAX_DEPTH;
    const char *q = scan_value(p, end, &e, max_depth, &ws);
    if (!q)
        return report(err, (size_t)(e.at - buf), e.what, KC_EPARSE);
    if (out) {
        out->p = start;
        out->len = (size_t)(q - start);
        out->type = type_of(*start);
    }
    if (has_ws)
        *has_ws = ws;
    *pos = (size_t)(q - buf);
    return 0;
}

int kc_json_parse_doc(const char *buf, size_t len, kc_json_span_t *out,
                      kc_json_err_t *err)
{
    size_t pos = 0;
    int rc = kc_json_scan(buf, len, &pos, out, err);

    if (rc < 0)
        return rc;
    const char *p = skip_ws(buf + pos, buf + len);
    if (p != buf + len)
        return report(err, (size_t)(p - buf), "trailing characters after the value", KC_EPARSE);
    return 0;
}

int kc_json_parse_doc_minify(const char *buf, size_t len, char *dst, size_t *dlen,
                             kc_json_span_t *out, kc_json_err_t *err)
{
    const char *end = buf + len, *p, *q;
    struct scan_err e = { NULL, NULL };
    char *o = dst;

    if (!buf || !dst || !dlen)
        return report(err, 0, "invalid arguments", -EINVAL);
    p = skip_ws(buf, end);
    q = scan_value_min(p, end, &e, &o);
    if (q) {
        const char *r = skip_ws(q, end);
        if (r != end) {
            e.at = r;
            e.what = "trailing characters after the value";
            q = NULL;
        }
    }
    if (!q)
        return report(err, (size_t)(e.at - buf), e.what, KC_EPARSE);
    *dlen = (size_t)(o - dst);
    if (out) {
        out->p = dst;
        out->len = *dlen;
        out->type = type_of(*dst);
    }
    return 0;
}

/* ---- non-validating skipping over already validated spans ---- */

/* p at an opening quote; returns the byte after the closing quote or NULL.
 * The string was validated, so only '"' and '\\' matter: 16 bytes at a time
 * (SSE2), which for the short strings of metadata is one load instead of a
 * memchr call per string. */
static inline const char *skip_string(const char *p, const char *end)
{
    p++;
#if defined(__SSE2__)
    const __m128i vq = _mm_set1_epi8('"');
    const __m128i vb = _mm_set1_epi8('\\');

    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        unsigned mq = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, vq));
        unsigned mb = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, vb));
        if (LIKELY(mq != 0 && (mb == 0 || (mq & -mq) < (mb & -mb))))
            return p + __builtin_ctz(mq) + 1;   /* a quote before any backslash */
        if (mb != 0 && (mq == 0 || (mb & -mb) < (mq & -mq))) {
            p += __builtin_ctz(mb) + 2;         /* skip the escape's two bytes */
            if (p > end)
                return NULL;
            continue;
        }
        p += 16;
    }
#endif
    while (p < end) {
        if (*p == '"')
            return p + 1;
        if (*p == '\\')
            p++;
        p++;
    }
    return NULL;
}

/* Skip one value starting at p (no leading whitespace).  NULL if malformed. */
static const char *skip_value(const char *p, const char *end)
{
    if (p >= end)
        return NULL;
    char c = *p;
    if (c == '"')
        return skip_string(p, end);
    if (c == '{' || c == '[') {
        unsigned depth = 0;
        while (p < end) {
            c = *p;
            if (c == '"') {
                p = skip_string(p, end);
                if (!p)
                    return NULL;
                continue;
            }
            if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (--depth == 0)
                    return p + 1;
            }
            p++;
        }
        return NULL;
    }
    const char *s = p;
    while (p < end) {
        c = *p;
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '-' || c == '+' ||
            c == '.' || c == 'E')
            p++;
        else
            break;
    }
    return p == s ? NULL : p;
}

int kc_json_iter_init(kc_json_iter_t *it, kc_json_span_t span)
{
    if (!it || !span.p || span.len < 2 ||
        (span.type != KC_JSON_OBJECT && span.type != KC_JSON_ARRAY))
        return -EINVAL;
    it->p = span.p + 1;
    it->end = span.p + span.len - 1; /* the closing bracket */
    it->is_object = span.type == KC_JSON_OBJECT;
    it->first = 1;
    it->open = 0;
    it->pending = 0;
    it->close = NULL;
    return 0;
}

int kc_json_iter_init_at(kc_json_iter_t *it, const char *p, const char *limit)
{
    if (!it || !p || !limit || p >= limit || (*p != '{' && *p != '['))
        return -EINVAL;
    it->p = p + 1;
    it->end = limit;
    it->is_object = *p == '{';
    it->first = 1;
    it->open = 1;
    it->pending = 0;
    it->close = NULL;
    return 0;
}

const char *kc_json_iter_end(const kc_json_iter_t *it)
{
    return it->close;
}

/* Move to the next member: 1 with *key filled (objects) and it->p at the
 * value's first byte, 0 at the end, KC_EPARSE. */
static int iter_advance(kc_json_iter_t *it, kc_json_span_t *key)
{
    const char *p, *q;

    if (it->pending) {
        q = skip_value(it->p, it->end);
        if (!q)
            return KC_EPARSE;
        it->p = q;
        it->pending = 0;
    }
    p = skip_ws(it->p, it->end);
    if (it->open) {
        if (it->close)
            return 0;
        if (p >= it->end)
            return KC_EPARSE;
        if (*p == (it->is_object ? '}' : ']')) {
            it->p = it->close = p + 1;
            return 0;
        }
    } else if (p >= it->end) {
        it->p = it->end;
        return 0;
    }
    if (!it->first) {
        if (*p != ',')
            return KC_EPARSE;
        p = skip_ws(p + 1, it->end);
    }
    if (it->is_object) {
        if (p >= it->end || *p != '"')
            return KC_EPARSE;
        q = skip_string(p, it->end);
        if (!q)
            return KC_EPARSE;
        if (key) {
            key->p = p;
            key->len = (size_t)(q - p);
            key->type = KC_JSON_STRING;
        }
        p = skip_ws(q, it->end);
        if (p >= it->end || *p != ':')
            return KC_EPARSE;
        p = skip_ws(p + 1, it->end);
    } else if (key) {
        key->p = NULL;
        key->len = 0;
        key->type = KC_JSON_INVALID;
    }
    if (p >= it->end)
        return KC_EPARSE;
    it->p = p;
    it->first = 0;
    return 1;
}

int kc_json_iter_next(kc_json_iter_t *it, kc_json_span_t *key, kc_json_span_t *val)
{
    int rc = iter_advance(it, key);

    if (rc != 1)
        return rc;
    it->pending = 1;
    return kc_json_iter_value(it, val) == 0 ? 1 : KC_EPARSE;
}

int kc_json_iter_next_key(kc_json_iter_t *it, kc_json_span_t *key, const char **value)
{
    int rc = iter_advance(it, key);

    if (rc != 1)
        return rc;
    it->pending = 1;
    if (value)
        *value = it->p;
    return 1;
}

int kc_json_iter_value(kc_json_iter_t *it, kc_json_span_t *val)
{
    const char *p = it->p, *q;

    if (!it->pending)
        return -EINVAL;
    q = skip_value(p, it->end);
    if (!q)
        return KC_EPARSE;
    if (val) {
        val->p = p;
        val->len = (size_t)(q - p);
        val->type = type_of(*p);
    }
    it->p = q;
    it->pending = 0;
    return 0;
}

int kc_json_iter_resume(kc_json_iter_t *it, const char *after)
{
    if (!it->pending || !after || after <= it->p || after > it->end)
        return -EINVAL;
    it->p = after;
    it->pending = 0;
    return 0;
}

int kc_json_obj_get(kc_json_span_t obj, const char *key, kc_json_span_t *val)
{
    kc_json_iter_t it;
    kc_json_span_t k, v;
    int rc;

    if (obj.type != KC_JSON_OBJECT || !key)
        return -EINVAL;
    rc = kc_json_iter_init(&it, obj);
    if (rc < 0)
        return rc;
    size_t keylen = strlen(key);
    while ((rc = kc_json_iter_next(&it, &k, &v)) == 1) {
        if (kc_json_str_eqn(k, key, keylen)) {
            if (val)
                *val = v;
            return 0;
        }
    }
    return rc < 0 ? rc : KC_ENOTFOUND;
}

/* ---- unescaping ---- */

/* Decode one unit of a string body at *pp (before end) into out (1..4
 * bytes).  Returns the byte count, or -1 on a malformed escape. */
static int decode_one(const char **pp, const char *end, char out[4])
{
    const unsigned char *p = (const unsigned char *)*pp;
    long u;

    if (*p != '\\') {
        out[0] = (char)*p;
        *pp += 1;
        return 1;
    }
    if (end - (const char *)p < 2)
        return -1;
    switch (p[1]) {
    case '"': out[0] = '"'; break;
    case '\\': out[0] = '\\'; break;
    case '/': out[0] = '/'; break;
    case 'b': out[0] = '\b'; break;
    case 'f': out[0] = '\f'; break;
    case 'n': out[0] = '\n'; break;
    case 'r': out[0] = '\r'; break;
    case 't': out[0] = '\t'; break;
    case 'u':
        if (end - (const char *)p < 6 || (u = hex4(p + 2)) < 0)
            return -1;
        if (u >= 0xd800 && u <= 0xdbff) {
            long lo;
            if (end - (const char *)p < 12 || p[6] != '\\' || p[7] != 'u' ||
                (lo = hex4(p + 8)) < 0xdc00 || lo > 0xdfff)
                return -1;
            u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
            *pp += 12;
        } else if (u >= 0xdc00 && u <= 0xdfff) {
            return -1;
        } else {
            *pp += 6;
        }
        if (u < 0x80) {
            out[0] = (char)u;
            return 1;
        }
        if (u < 0x800) {
            out[0] = (char)(0xc0 | (u >> 6));
            out[1] = (char)(0x80 | (u & 0x3f));
            return 2;
        }
        if (u < 0x10000) {
            out[0] = (char)(0xe0 | (u >> 12));
            out[1] = (char)(0x80 | ((u >> 6) & 0x3f));
            out[2] = (char)(0x80 | (u & 0x3f));
            return 3;
        }
        out[0] = (char)(0xf0 | (u >> 18));
        out[1] = (char)(0x80 | ((u >> 12) & 0x3f));
        out[2] = (char)(0x80 | ((u >> 6) & 0x3f));
        out[3] = (char)(0x80 | (u & 0x3f));
        return 4;
    default:
        return -1;
    }
    *pp += 2;
    return 1;
}

static int is_string_span(kc_json_span_t s)
{
    return s.type == KC_JSON_STRING && s.p && s.len >= 2 && s.p[0] == '"' &&
           s.p[s.len - 1] == '"';
}

int kc_json_str_eq(kc_json_span_t s, const char *lit)
{
    return lit ? kc_json_str_eqn(s, lit, strlen(lit)) : 0;
}

int kc_json_str_eqn(kc_json_span_t s, const char *lit, size_t litlen)
{
    if (!is_string_span(s) || !lit)
        return 0;
    const char *p = s.p + 1, *end = s.p + s.len - 1;
    size_t n = (size_t)(end - p);

    /* Every escape is longer than what it decodes to: a body no longer
     * than lit equals it only byte for byte (a body of lit's length with
     * an escape in it decodes shorter), and a longer body only if it has
     * an escape.  So the usual miss costs one comparison. */
    if (n < litlen)
        return 0;
    if (n == litlen)
        return memcmp(p, lit, n) == 0 && !memchr(lit, '\\', n);
    if (!memchr(p, '\\', n))
        return 0;
    while (p < end) {
        char u[4];
        int k = decode_one(&p, end, u);
        if (k < 0 || (size_t)k > litlen)
            return 0;
        for (int i = 0; i < k; i++, lit++)
            if (*lit != u[i])
                return 0;
        litlen -= (size_t)k;
    }
    return litlen == 0;
}

long kc_json_str_len(kc_json_span_t s)
{
    if (!is_string_span(s))
        return -EINVAL;
    const char *p = s.p + 1, *end = s.p + s.len - 1;
    long n = 0;

    if (!memchr(p, '\\', (size_t)(end - p)))
        return (long)(end - p);
    while (p < end) {
        char u[4];
        int k = decode_one(&p, end, u);
        if (k < 0)
            return KC_EPARSE;
        n += k;
    }
    return n;
}

int kc_json_str_unescape(kc_json_span_t s, char *dst, size_t cap)
{
    if (!is_string_span(s) || (!dst && cap))
        return -EINVAL;
    const char *p = s.p + 1, *end = s.p + s.len - 1;
    size_t n = 0;

    while (p < end) {
        const char *bs = memchr(p, '\\', (size_t)(end - p));
        size_t run = (size_t)((bs ? bs : end) - p);
        if (run) {
            if (n + run >= cap)
                return -ERANGE;
            memcpy(dst + n, p, run);
            n += run;
            p += run;
        }
        if (!bs)
            break;
        char u[4];
        int k = decode_one(&p, end, u);
        if (k < 0)
            return KC_EPARSE;
        if (k == 1 && u[0] == '\0')
            return KC_EPARSE;
        if (n + (size_t)k >= cap)
            return -ERANGE;
        memcpy(dst + n, u, (size_t)k);
        n += (size_t)k;
    }
    if (n >= cap)
        return -ERANGE;
    dst[n] = '\0';
    return 0;
}

int kc_json_str_dup(kc_json_span_t s, char **out)
{
    long n = kc_json_str_len(s);
    char *d;
    int rc;

    if (!out)
        return -EINVAL;
    *out = NULL;
    if (n < 0)
        return (int)n;
    d = malloc((size_t)n + 1);
    if (!d)
        return -ENOMEM;
    rc = kc_json_str_unescape(s, d, (size_t)n + 1);
    if (rc < 0) {
        free(d);
        return rc;
    }
    *out = d;
    return 0;
}

size_t kc_json_minify(kc_json_span_t v, char *dst)
{
    const char *p = v.p, *end = v.p + v.len;
    char *o = dst;

    while (p < end) {
        char c = *p;
        if (c == '"') {
            const char *q = skip_string(p, end);
            if (!q)
                q = end;
            memcpy(o, p, (size_t)(q - p));
            o += q - p;
            p = q;
            continue;
        }
        if (!is_ws((unsigned char)c))
            *o++ = c;
        p++;
    }
    return (size_t)(o - dst);
}

size_t kc_json_quote(const char *s, char *dst)
{
    static const char hex[] = "0123456789abcdef";
    char *o = dst;

    *o++ = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '"': *o++ = '\\'; *o++ = '"'; break;
        case '\\': *o++ = '\\'; *o++ = '\\'; break;
        case '\n': *o++ = '\\'; *o++ = 'n'; break;
        case '\r': *o++ = '\\'; *o++ = 'r'; break;
        case '\t': *o++ = '\\'; *o++ = 't'; break;
        case '\b': *o++ = '\\'; *o++ = 'b'; break;
        case '\f': *o++ = '\\'; *o++ = 'f'; break;
        default:
            if (c < 0x20) {
                *o++ = '\\';
                *o++ = 'u';
                *o++ = '0';
                *o++ = '0';
                *o++ = hex[c >> 4];
                *o++ = hex[c & 15];
            } else {
                *o++ = (char)c;
            }
        }
    }
    *o++ = '"';
    return (size_t)(o - dst);
}
