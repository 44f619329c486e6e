/*
 * kc_json: a validating, non-allocating JSON scanner over a byte buffer.
 *
 * kcache keeps objects as their JSON bytes and reads only the fields it
 * needs (metadata, the watch event envelope) without building a cJSON tree
 * on the hot path.  A span is a pointer into the caller's buffer: it borrows
 * that buffer and is valid only while the buffer is.  Spans of strings
 * include their quotes; kc_json_str_* handle escapes.
 *
 * Every function validates what it walks over (RFC 8259 grammar, UTF-8 in
 * strings, escapes, nesting at most KC_JSON_MAX_DEPTH) and reports errors
 * as KC_EPARSE with the byte offset where the input went wrong.
 * All functions are reentrant and thread-safe (no shared state).
 */
#ifndef KC_JSON_H
#define KC_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KC_JSON_MAX_DEPTH 256

typedef enum {
    KC_JSON_INVALID = 0,
    KC_JSON_OBJECT,
    KC_JSON_ARRAY,
    KC_JSON_STRING,
    KC_JSON_NUMBER,
    KC_JSON_TRUE,
    KC_JSON_FALSE,
    KC_JSON_NULL
} kc_json_type_t;

typedef struct kc_json_span {
    const char *p;       /* first byte of the value ('{', '"', digit, ...) */
    size_t len;          /* bytes up to and including its last byte */
    kc_json_type_t type;
} kc_json_span_t;

/* Error detail: filled on KC_EPARSE when the caller passes one. */
typedef struct kc_json_err {
    size_t offset;       /* byte offset from the start of the buffer scanned */
    const char *what;    /* static text: "unterminated string", ... */
} kc_json_err_t;

/* Type name for messages ("object", "string", ...). */
const char *kc_json_type_name(kc_json_type_t t);

/* Scan exactly one JSON value in buf[*pos .. len), skipping leading
 * whitespace.  On success fills *out, advances *pos past the value (not past
 * trailing whitespace) and returns 0.  Returns KC_EPARSE (err filled, *pos
 * unchanged) on malformed or truncated input. */
int kc_json_scan(const char *buf, size_t len, size_t *pos, kc_json_span_t *out,
                 kc_json_err_t *err);

/* kc_json_scan with a nesting limit (at most KC_JSON_MAX_DEPTH; counting
 * the value itself: 1 allows an empty or flat container) for a value that
 * sits inside a container its caller walks, and a report: *has_ws (may be
 * NULL) is set to 1 when the value holds insignificant whitespace (between
 * its tokens; leading whitespace skipped before it does not count), else 0.
 * A value scanned with has_ws 0 is already minified. */
int kc_json_scan_ex(const char *buf, size_t len, size_t *pos, unsigned max_depth,
                    kc_json_span_t *out, int *has_ws, kc_json_err_t *err);

/* What kc_json_scan_object_meta notes about a Kubernetes object while it
 * validates it: the spans of the metadata members a cache object keeps, so
 * that whoever builds one from the same bytes (kc_obj_new with
 * kc_obj_opts_t.meta) need not walk metadata again.  Spans point into the
 * scanned buffer and are valid only while it is. */
enum {
    KC_JSON_META_NAME = 0,      /* metadata.name */
    KC_JSON_META_NAMESPACE,     /* metadata.namespace */
    KC_JSON_META_UID,           /* metadata.uid */
    KC_JSON_META_RV,            /* metadata.resourceVersion */
    KC_JSON_META_GENERATION,    /* metadata.generation */
    KC_JSON_META_DELETION,      /* metadata.deletionTimestamp */
    KC_JSON_META_LABELS,        /* metadata.labels */
    KC_JSON_META_OWNERS,        /* metadata.ownerReferences */
    KC_JSON_META_NFIELDS
};
#define KC_JSON_META_LABELS_MAX 32

typedef struct kc_json_meta {
    const char *obj;        /* the object described (its '{'), and its length: */
    size_t obj_len;         /* a consumer checks that they are its bytes */
    /* 1: the object's first "metadata" member is an object and everything
     * below holds.  0: the scan saw what this summary does not describe
     * (metadata missing or not an object, a member name with an escape,
     * one of the fields twice, a label value that is not a string, more
     * than KC_JSON_META_LABELS_MAX labels): read the object itself. */
    int usable;
    int has_metadata;       /* 1: the first "metadata" member is an object */
    unsigned seen;          /* bit (1u << KC_JSON_META_x): the member is present */
    unsigned esc;           /* bit: its value is a string holding an escape */
    kc_json_span_t f[KC_JSON_META_NFIELDS]; /* each present member's value */
    /* metadata.managedFields, its first occurrence: name and value spans
     * (p NULL when absent) */
    kc_json_span_t mf_key, mf_val;
    size_t nlabels;         /* members of labels (f[KC_JSON_META_LABELS]) */
    uint32_t lk_esc, lv_esc; /* bit i: label i's name / value holds an escape */
    kc_json_span_t lk[KC_JSON_META_LABELS_MAX], lv[KC_JSON_META_LABELS_MAX];
} kc_json_meta_t;

/* Validate the object at buf[*pos] (after leading whitespace; anything but
 * an object is KC_EPARSE) exactly as kc_json_scan_ex does, with the same
 * nesting limit and *has_ws report, and fill *meta (see kc_json_meta_t) in
 * the same pass.  meta->usable is 1 only for an object of which it
 * describes everything kc_obj_new reads from metadata.  On KC_EPARSE *meta
 * holds garbage.  Thread-safe. */
int kc_json_scan_object_meta(const char *buf, size_t len, size_t *pos, unsigned max_depth,
                             kc_json_span_t *out, int *has_ws, kc_json_meta_t *meta,
                             kc_json_err_t *err);

/* kc_json_scan for a value known to start with '"' at buf[*pos] (no
 * leading whitespace): validates one string, the cheap way for member
 * names.  Returns 0 (*out filled, *pos past the closing quote) or
 * KC_EPARSE (err filled, *pos unchanged); -EINVAL when buf[*pos] is not
 * '"'.  Thread-safe. */
int kc_json_scan_string(const char *buf, size_t len, size_t *pos, kc_json_span_t *out,
                        kc_json_err_t *err);

/* Parse a whole document: one value and nothing but whitespace around it. */
int kc_json_parse_doc(const char *buf, size_t len, kc_json_span_t *out,
                      kc_json_err_t *err);

/* kc_json_parse_doc that also writes the document without insignificant
 * whitespace into dst, which must hold len bytes (dst must not overlap
 * buf).  One pass: this is how to validate and minify at once.  On 0,
 * *dlen is the bytes written (no NUL is added) and *out (may be NULL)
 * spans dst.  On KC_EPARSE dst holds garbage. */
int kc_json_parse_doc_minify(const char *buf, size_t len, char *dst, size_t *dlen,
                             kc_json_span_t *out, kc_json_err_t *err);

/* Iterate the members of an object or the elements of an array that was
 * produced by kc_json_scan (so it is known to be well-formed). */
typedef struct kc_json_iter {
    const char *p;       /* private */
    const char *end;     /* private */
    int is_object;       /* private */
    int first;           /* private */
    int open;            /* private */
    int pending;         /* private */
    const char *close;   /* private */
} kc_json_iter_t;

/* Returns 0, or -EINVAL if span is neither object nor array. */
int kc_json_iter_init(kc_json_iter_t *it, kc_json_span_t span);
/* Iterate the well-formed container whose '{' or '[' is at p, inside a
 * buffer that ends before limit, when its end is not known yet: iteration
 * stops at its closing bracket, and kc_json_iter_end then gives the byte
 * after it, so one walk both visits the members and finds the span.
 * Returns 0, or -EINVAL if p is not at '{' or '['. */
int kc_json_iter_init_at(kc_json_iter_t *it, const char *p, const char *limit);
/* After an iterator made by kc_json_iter_init_at returned 0: the byte
 * after the container's closing bracket; NULL before. */
const char *kc_json_iter_end(const kc_json_iter_t *it);
/* Returns 1 and fills *key (objects only; NULL allowed) and *val for the
 * next member, 0 at the end, KC_EPARSE if the span was not well-formed. */
int kc_json_iter_next(kc_json_iter_t *it, kc_json_span_t *key, kc_json_span_t *val);
/* Like kc_json_iter_next without walking the member's value: *value (may
 * be NULL) is its first byte.  Before the next call the caller may take
 * the value with kc_json_iter_value, or walk it itself (an object or array
 * with its own kc_json_iter_init_at) and hand the byte after it to
 * kc_json_iter_resume; if it does neither, the next call skips the value.
 * So a caller that looks inside one member walks its bytes once. */
int kc_json_iter_next_key(kc_json_iter_t *it, kc_json_span_t *key, const char **value);
/* The value kc_json_iter_next_key stopped at, as a span.  Returns 0,
 * KC_EPARSE, or -EINVAL when no value is pending. */
int kc_json_iter_value(kc_json_iter_t *it, kc_json_span_t *val);
/* Continue after the pending value, which the caller walked and which ends
 * just before after.  Returns 0, or -EINVAL when no value is pending or
 * after is out of range. */
int kc_json_iter_resume(kc_json_iter_t *it, const char *after);

/* Member of an object by (unescaped) key.  Returns 0 and fills *val, or
 * KC_ENOTFOUND, or -EINVAL if obj is not an object.  First match wins. */
int kc_json_obj_get(kc_json_span_t obj, const char *key, kc_json_span_t *val);

/* 1 if the string span's unescaped value equals the NUL-terminated lit,
 * else 0 (also 0 for non-strings). */
int kc_json_str_eq(kc_json_span_t s, const char *lit);
/* Same for lit[0..litlen); cheapest when the lengths differ.
 * KC_JSON_STR_EQ_LIT(s, "name") passes a literal's length, and its common
 * cases (a body without escapes) are inlined.  Thread-safe. */
int kc_json_str_eqn(kc_json_span_t s, const char *lit, size_t litlen);
#define KC_JSON_STR_EQ_LIT(s, lit) kc_json__str_eq_inl((s), "" lit "", sizeof(lit) - 1)

/* Every escape is longer than what it decodes to: a body no longer than
 * lit equals it only byte for byte (a body of lit's length with an escape
 * in it decodes shorter), and a longer body only if it has an escape. */
static inline int kc_json__str_eq_inl(kc_json_span_t s, const char *lit, size_t litlen)
{
    if (s.type != KC_JSON_STRING || s.len < litlen + 2)
        return 0;
    if (s.len == litlen + 2)
        return s.p[0] == '"' && memcmp(s.p + 1, lit, litlen) == 0 &&
               memchr(lit, '\\', litlen) == NULL;
    return kc_json_str_eqn(s, lit, litlen);
}

/* Unescaped length of a string span (bytes, without NUL), or negative. */
long kc_json_str_len(kc_json_span_t s);

/* Unescape a string span into dst (NUL-terminated).  Returns 0, -ERANGE if
 * cap is too small (cap must be >= kc_json_str_len + 1), KC_EPARSE, or
 * -EINVAL for a non-string.  Embedded NULs (\u0000) are rejected with
 * KC_EPARSE: Kubernetes names and values never carry them. */
int kc_json_str_unescape(kc_json_span_t s, char *dst, size_t cap);

/* Same, into a new malloc'd string the caller frees. */
int kc_json_str_dup(kc_json_span_t s, char **out);

/* Copy a well-formed value into dst without insignificant whitespace.
 * dst must hold at least v.len bytes.  Returns the bytes written. */
size_t kc_json_minify(kc_json_span_t v, char *dst);

/* Write s as a JSON string literal (quotes and escapes) into dst, which
 * must hold at least 6*strlen(s)+3 bytes.  Returns bytes written, no NUL. */
size_t kc_json_quote(const char *s, char *dst);

#ifdef __cplusplus
}
#endif
#endif
