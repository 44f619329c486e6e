/*
 * Incremental framer for the watch stream: newline-delimited JSON events
 * {"type":"ADDED","object":{...}} split arbitrarily across the chunks curl
 * hands over.
 *
 * Invariants: an event is copied at most once.  Complete lines inside a fed
 * chunk are validated and delivered straight from the caller's bytes; only
 * the tail of a chunk that has no newline yet is copied into the carry
 * buffer, and the next newline completes it there.  The carry buffer never
 * exceeds max_event bytes: a line longer than that is KC_ETOOBIG as soon as
 * it is known to be too long, before more memory is spent on it.  After an
 * error the decoder is dead: every later call returns the same code, and
 * the callback is not called again.  Every event before the bad line has
 * been delivered, in order, exactly once.
 *
 * Validation per line (kc_json, no allocation, one validating pass): one
 * JSON object; "type" a
 * string among ADDED, MODIFIED, DELETED, BOOKMARK, ERROR; "object" an
 * object; for every type but ERROR the object has a "metadata" object.
 * Blank lines (and a trailing '\r') are tolerated.  The "object" is
 * scanned member by member (kc_json_scan_object_meta), so the "metadata"
 * check, whether the object holds insignificant whitespace and the spans of
 * the metadata members a cache object keeps (kc_json_meta_t) come from
 * that same pass; an object validated so and found minified is flagged
 * KC_WATCH_OBJECT_MINIFIED and its notes handed over in ev->meta, which
 * lets a consumer build its cache object without validating the bytes or
 * walking metadata again (kc_obj_opts_t.prevalidated and .meta).
 *
 * One pass for callers that parse: while the callback keeps calling
 * kc_watch_event_parse (noted in parsed_cur, carried to parse_next), the
 * "object" member is validated by cJSON_ParseWithLengthOpts instead of
 * kc_json_scan (only when the rest of the line is printable ASCII, so that
 * cJSON's laxer string rules cannot let through what the scan refuses; the
 * remaining differences: cJSON takes numbers such as "+1" or "01" and
 * nests up to 1000 deep, the scan 256), and the tree is kept in d->tree for kc_watch_event_parse to
 * take; what the callback does not take is freed when it returns.  If
 * cJSON rejects the object, the line is checked again by the scan, which
 * either names the error or (for JSON cJSON alone refuses, e.g. nesting
 * deeper than its limit) delivers the event without a tree.  ERROR events
 * do not change the mode (their objects are Status values callers decode
 * with kc_status_from_json).
 *
 * Not thread-safe: one decoder per stream, used by one thread.
 */
#include "client_int.h"
#include "kc_json.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define DEFAULT_MAX_EVENT ((size_t)16 << 20)

struct kc_watch_decoder {
    kc_watch_cb cb;
    void *ud;
    size_t max_event;
    char *carry;           /* partial line; capacity carry_cap <= max_event */
    size_t carry_len;
    size_t carry_cap;
    size_t line_no;        /* lines completed so far */
    size_t offset;         /* stream offset of the first byte not yet consumed */
    size_t line_start;     /* stream offset of the line being assembled */
    size_t events;
    int err;               /* sticky */
    char errmsg[256];
    int parse_next;        /* validate the next object by parsing it with cJSON */
    int parsed_cur;        /* the callback called kc_watch_event_parse on cur */
    const kc_watch_event_t *cur;   /* the event in the callback; NULL outside it */
    cJSON *tree;           /* cur's object as parsed by the decoder, until taken */
};

#define ENVELOPE_RETRY 1   /* envelope(): cJSON refused the object, scan it instead */

const char *kc_watch_type_name(kc_watch_type_t t)
{
    switch (t) {
    case KC_WATCH_ADDED: return "ADDED";
    case KC_WATCH_MODIFIED: return "MODIFIED";
    case KC_WATCH_DELETED: return "DELETED";
    case KC_WATCH_BOOKMARK: return "BOOKMARK";
    case KC_WATCH_ERROR: return "ERROR";
    }
    return "?";
}

int kc_watch_decoder_new(size_t max_event, kc_watch_cb cb, void *ud,
                         kc_watch_decoder_t **out)
{
    kc_watch_decoder_t *d;

    if (cb == NULL || out == NULL)
        return -EINVAL;
    d = calloc(1, sizeof(*d));
    if (d == NULL)
        return -ENOMEM;
    d->cb = cb;
    d->ud = ud;
    d->max_event = max_event ? max_event : DEFAULT_MAX_EVENT;
    *out = d;
    return 0;
}

void kc_watch_decoder_free(kc_watch_decoder_t *d)
{
    if (d == NULL)
        return;
    free(d->carry);
    free(d);
}

size_t kc_watch_decoder_events(const kc_watch_decoder_t *d)
{
    return d->events;
}

static int fail(kc_watch_decoder_t *d, kc_errbuf_t *eb, int code, size_t byte,
                const char *what)
{
    d->err = code;
    snprintf(d->errmsg, sizeof(d->errmsg), "watch stream line %zu, byte %zu: %s",
             d->line_no + 1, byte, what);
    return kc_errf(eb, code, "%s", d->errmsg);
}

static int type_of(kc_json_span_t s, kc_watch_type_t *t)
{
    /* KC_JSON_STR_EQ_LIT: one length test per miss, escapes handled */
    if (KC_JSON_STR_EQ_LIT(s, "MODIFIED"))
        *t = KC_WATCH_MODIFIED;
    else if (KC_JSON_STR_EQ_LIT(s, "ADDED"))
        *t = KC_WATCH_ADDED;
    else if (KC_JSON_STR_EQ_LIT(s, "DELETED"))
        *t = KC_WATCH_DELETED;
    else if (KC_JSON_STR_EQ_LIT(s, "BOOKMARK"))
        *t = KC_WATCH_BOOKMARK;
    else if (KC_JSON_STR_EQ_LIT(s, "ERROR"))
        *t = KC_WATCH_ERROR;
    else
        return -1;
    return 0;
}

/* 1 if every byte of p[0..n) is printable ASCII (0x20..0x7f).  Such an
 * object holds no byte for which cJSON's string rules are laxer than
 * kc_json_scan's (raw control characters, invalid UTF-8), so cJSON may
 * validate it; anything else goes through the scan. */
static int printable_ascii(const char *p, size_t n)
{
    size_t i = 0;
#if defined(__SSE2__)
    const __m128i sp = _mm_set1_epi8(0x20);

    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
        /* signed compare: 0x80..0xff are negative, so one test finds both */
        if (_mm_movemask_epi8(_mm_cmplt_epi8(v, sp)) != 0)
            return 0;
    }
#endif
    for (; i < n; i++)
        if ((unsigned char)p[i] < 0x20 || (unsigned char)p[i] >= 0x80)
            return 0;
    return 1;
}

static size_t skip_ws(const char *p, size_t pos, size_t len)
{
    while (pos < len && (p[pos] == ' ' || p[pos] == '\t' || p[pos] == '\r' || p[pos] == '\n'))
        pos++;
    return pos;
}

/* Validate one complete, non-blank line (without its '\n') and fill *ev.
 * start is the stream offset of line[0].  The envelope is walked member by
 * member with kc_json_scan, so every byte is validated exactly once and the
 * "object" span falls out of that one pass.  With tree != NULL the
 * "object" member is validated by parsing it with cJSON instead, and the
 * tree is stored in *tree (the caller frees it on every outcome);
 * ENVELOPE_RETRY when cJSON refuses it (nothing recorded: scan again). */
static int envelope(kc_watch_decoder_t *d, const char *line, size_t len, size_t start,
                    cJSON **tree, kc_watch_event_t *ev, kc_json_meta_t *om, kc_errbuf_t *eb)
{
    kc_json_span_t key, val, type = {NULL, 0, KC_JSON_INVALID}, obj = {NULL, 0, KC_JSON_INVALID};
    kc_json_span_t meta;
    kc_json_err_t jerr = {0, NULL};
    char what[160];
    size_t pos;
    int has_meta = -1;     /* -1: not known from the scan; 0/1 */
    int obj_ws = 1;

    pos = skip_ws(line, 0, len);
    if (line[pos] != '{') {
        size_t p2 = pos;
        if (kc_json_scan(line, len, &p2, &val, &jerr) != 0)
            goto not_json;
        return fail(d, eb, KC_EPARSE, start + pos, "event is not a JSON object");
    }
    pos = skip_ws(line, pos + 1, len);
    if (pos < len && line[pos] == '}') {
        pos++;
    } else {
        for (;;) {
            if (pos >= len || line[pos] != '"') {
                jerr.offset = pos;
                jerr.what = "expected a member name";
                goto not_json;
            }
            if (kc_json_scan_string(line, len, &pos, &key, &jerr) != 0)
                goto not_json;
            pos = skip_ws(line, pos, len);
            if (pos >= len || line[pos] != ':') {
                jerr.offset = pos;
                jerr.what = "expected ':'";
                goto not_json;
            }
            pos++;
            if (tree != NULL && obj.p == NULL && kc_json_str_eq(key, "object") &&
                (pos = skip_ws(line, pos, len)) < len && line[pos] == '{') {
                const char *endp = NULL;
                if (!printable_ascii(line + pos, len - pos))
                    return ENVELOPE_RETRY;
                *tree = cJSON_ParseWithLengthOpts(line + pos, len - pos, &endp, 0);
                if (*tree == NULL || endp == NULL || endp <= line + pos || endp > line + len)
                    return ENVELOPE_RETRY;
                obj.p = line + pos;
                obj.len = (size_t)(endp - obj.p);
                obj.type = KC_JSON_OBJECT;
                pos = (size_t)(endp - line);
            } else if (obj.p == NULL && KC_JSON_STR_EQ_LIT(key, "object") &&
                       (pos = skip_ws(line, pos, len)) < len && line[pos] == '{') {
                if (kc_json_scan_object_meta(line, len, &pos, KC_JSON_MAX_DEPTH, &obj, &obj_ws,
                                             om, &jerr) != 0)
                    goto not_json;
                has_meta = om->has_metadata;
            } else {
                pos = skip_ws(line, pos, len);
                if (pos < len && line[pos] == '"' ? kc_json_scan_string(line, len, &pos, &val, &jerr)
                                                  : kc_json_scan(line, len, &pos, &val, &jerr))
                    goto not_json;
                if (type.p == NULL && KC_JSON_STR_EQ_LIT(key, "type"))
                    type = val;
                else if (obj.p == NULL && KC_JSON_STR_EQ_LIT(key, "object"))
                    obj = val;
            }
            pos = skip_ws(line, pos, len);
            if (pos < len && line[pos] == ',') {
                pos = skip_ws(line, pos + 1, len);
                continue;
            }
            if (pos < len && line[pos] == '}') {
                pos++;
                break;
            }
            jerr.offset = pos;
            jerr.what = pos < len ? "expected ',' or '}'" : "unterminated object";
            goto not_json;
        }
    }
    pos = skip_ws(line, pos, len);
    if (pos != len) {
        jerr.offset = pos;
        jerr.what = "trailing bytes after the event";
        goto not_json;
    }
    if (type.p == NULL || type.type != KC_JSON_STRING)
        return fail(d, eb, KC_EPARSE, start, "event without a \"type\" string");
    if (type_of(type, &ev->type) != 0) {
        snprintf(what, sizeof(what), "unknown event type %.*s%s",
                 type.len <= 40 ? (int)type.len : 40, type.p, type.len <= 40 ? "" : "...");
        return fail(d, eb, KC_EPARSE, start + (size_t)(type.p - line), what);
    }
    if (obj.p == NULL || obj.type != KC_JSON_OBJECT) {
        snprintf(what, sizeof(what), "%s event without an \"object\" object",
                 kc_watch_type_name(ev->type));
        return fail(d, eb, KC_EPARSE, start, what);
    }
    if (ev->type != KC_WATCH_ERROR &&
        (tree != NULL && *tree != NULL
             ? !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(*tree, "metadata"))
         : has_meta >= 0
             ? !has_meta
             : kc_json_obj_get(obj, "metadata", &meta) != 0 || meta.type != KC_JSON_OBJECT)) {
        snprintf(what, sizeof(what), "%s event object without \"metadata\"",
                 kc_watch_type_name(ev->type));
        return fail(d, eb, KC_EPARSE, start + (size_t)(obj.p - line), what);
    }
    ev->object = obj.p;
    ev->object_len = obj.len;
    if (has_meta >= 0 && !obj_ws) {
        ev->flags |= KC_WATCH_OBJECT_MINIFIED;
        ev->meta = om;
    }
    return 0;
not_json:
    snprintf(what, sizeof(what), "not JSON: %s", jerr.what ? jerr.what : "malformed");
    return fail(d, eb, KC_EPARSE, start + jerr.offset, what);
}

/* Validate and deliver one complete line (without its '\n'). */
static int deliver(kc_watch_decoder_t *d, const char *line, size_t len, size_t start,
                   kc_errbuf_t *eb)
{
    kc_watch_event_t ev;
    kc_json_meta_t om;     /* what the scan notes about the object, for ev.meta */
    cJSON *tree = NULL;
    char what[160];
    int rc;

    if (skip_ws(line, 0, len) == len) {   /* blank line */
        d->line_no++;
        return 0;
    }
    if (len > d->max_event) {
        snprintf(what, sizeof(what), "event of %zu bytes exceeds the limit of %zu bytes", len,
                 d->max_event);
        return fail(d, eb, KC_ETOOBIG, start, what);
    }
    memset(&ev, 0, sizeof(ev));
    rc = envelope(d, line, len, start, d->parse_next ? &tree : NULL, &ev, &om, eb);
    if (rc == ENVELOPE_RETRY) {
        cJSON_Delete(tree);
        tree = NULL;
        rc = envelope(d, line, len, start, NULL, &ev, &om, eb);
    }
    if (rc != 0) {
        cJSON_Delete(tree);
        return rc;
    }
    d->line_no++;
    ev.line_no = d->line_no;
    ev.decoder = d;
    d->events++;
    d->cur = &ev;
    d->tree = tree;
    d->parsed_cur = 0;
    rc = d->cb(d->ud, &ev);
    cJSON_Delete(d->tree);   /* what the callback did not take */
    d->tree = NULL;
    d->cur = NULL;
    if (ev.type != KC_WATCH_ERROR)
        d->parse_next = d->parsed_cur;
    if (rc != 0) {
        d->err = rc;
        snprintf(d->errmsg, sizeof(d->errmsg), "watch stopped by the callback at line %zu",
                 d->line_no);
        return kc_errf(eb, rc, "%s", d->errmsg);
    }
    return 0;
}

static int carry_append(kc_watch_decoder_t *d, const char *p, size_t n, kc_errbuf_t *eb)
{
    char what[128];

    if (n > d->max_event - d->carry_len) {
        snprintf(what, sizeof(what), "event exceeds the limit of %zu bytes", d->max_event);
        return fail(d, eb, KC_ETOOBIG, d->line_start, what);
    }
    if (d->carry_len + n > d->carry_cap) {
        size_t ncap = d->carry_cap ? d->carry_cap : 4096;
        char *np;
        while (ncap < d->carry_len + n)
            ncap = ncap > d->max_event / 2 ? d->max_event : ncap * 2;
        np = realloc(d->carry, ncap);
        if (np == NULL) {
            d->err = -ENOMEM;
            return kc_errf(eb, -ENOMEM, "out of memory buffering a watch event");
        }
        d->carry = np;
        d->carry_cap = ncap;
    }
    memcpy(d->carry + d->carry_len, p, n);
    d->carry_len += n;
    return 0;
}

int kc_watch_decoder_feed(kc_watch_decoder_t *d, const char *bytes, size_t n,
                          kc_errbuf_t *eb)
{
    const char *p = bytes, *end = bytes + n, *nl;
    int rc;

    if (d->err)
        return kc_errf(eb, d->err, "%s", d->errmsg);
    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) {
            if (d->carry_len == 0)
                d->line_start = d->offset;
            rc = carry_append(d, p, (size_t)(end - p), eb);
            if (rc)
                return rc;
            d->offset += (size_t)(end - p);
            return 0;
        }
        if (d->carry_len) {
            /* completes a line begun in an earlier chunk: its one copy */
            rc = carry_append(d, p, (size_t)(nl - p), eb);
            if (rc)
                return rc;
            size_t len = d->carry_len;
            d->offset += (size_t)(nl - p) + 1;
            d->carry_len = 0;
            rc = deliver(d, d->carry, len, d->line_start, eb);
            if (rc)
                return rc;
        } else {
            size_t start = d->offset;
            d->offset += (size_t)(nl - p) + 1;
            rc = deliver(d, p, (size_t)(nl - p), start, eb);
            if (rc)
                return rc;
        }
        p = nl + 1;
    }
    return 0;
}

int kc_watch_decoder_finish(kc_watch_decoder_t *d, kc_errbuf_t *eb)
{
    size_t i;

    if (d->err)
        return kc_errf(eb, d->err, "%s", d->errmsg);
    for (i = 0; i < d->carry_len; i++)
        if (d->carry[i] != ' ' && d->carry[i] != '\t' && d->carry[i] != '\r')
            break;
    if (i < d->carry_len)
        return fail(d, eb, KC_EPARSE, d->offset, "stream ended in the middle of an event "
                                                 "(truncated)");
    d->carry_len = 0;
    return 0;
}

struct cJSON *kc_watch_event_parse(const kc_watch_event_t *ev)
{
    kc_watch_decoder_t *d;

    if (ev == NULL || ev->object == NULL)
        return NULL;
    d = ev->decoder;
    if (d != NULL && d->cur == ev) {
        d->parsed_cur = 1;
        if (d->tree != NULL) {   /* built while validating: hand it over */
            cJSON *t = d->tree;
            d->tree = NULL;
            return t;
        }
    }
    return cJSON_ParseWithLength(ev->object, ev->object_len);
}
