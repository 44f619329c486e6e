/*
 * Keys, name validation and immutable objects (see kc_cache.h).
 *
 * An object is built once by kc_obj_new and never written again except for
 * its reference count.  kc_obj_new validates and minifies the JSON with
 * kc_json in one pass (skipped when the caller vouches for bytes a scan
 * already validated and found minified: kc_obj_opts_t.prevalidated), reads
 * the metadata it needs with kc_json's iterator in one walk over metadata
 * (no cJSON tree on this path), or, when the caller's validating scan of
 * the same bytes noted the metadata members already (kc_obj_opts_t.meta,
 * the watch decoder's kc_json_scan_object_meta), takes them from those
 * notes without walking metadata at all (meta_take: only for notes that
 * describe exactly these bytes and the plain success case; everything else
 * takes the walk, so both give the same object or error), then makes one
 * allocation: header,
 * unescaped metadata strings and the minified JSON (cache_int.h shows the
 * layout), LZ4-compressed when it is large (kc_obj_opts_t.pack_min).
 * Nothing here locks: objects are shared between threads only through the
 * reference count, whose release decrement orders all reads of the object
 * before the free.  The one later write, a packed object's decompressed
 * copy for kc_obj_json, is published once by compare-and-swap (acquire on
 * every read), so a reader sees either NULL or the whole copy.
 */
#include "cache_int.h"
#include "kc_json.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <lz4.h>
#include <stdbool.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* LZ4's speed/size knob: 4 packs a 5 KB Pod in ~2.3 µs here and keeps a
 * real Pod at 0.23 of its JSON (1, the default: ~3.6 µs, 0.21; 16: ~1.2
 * µs, 0.33), bench_apply and bench_cache */
#define KC__PACK_ACCELERATION 4

/* ------------------------------------------------------------------ */
/* names and keys */

static int is_lower_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* kc_namespace_validate of ns[0..n) (no NUL inside). */
static int ns_valid_n(const char *ns, size_t n)
{
    if (n == 0 || n > KC_NS_MAX)
        return KC_EBADNAME;
    if (!is_lower_alnum((unsigned char)ns[0]) || !is_lower_alnum((unsigned char)ns[n - 1]))
        return KC_EBADNAME;
    for (size_t i = 1; i + 1 < n; i++)
        if (!is_lower_alnum((unsigned char)ns[i]) && ns[i] != '-')
            return KC_EBADNAME;
    return 0;
}

int kc_namespace_validate(const char *ns)
{
    return ns ? ns_valid_n(ns, strlen(ns)) : KC_EBADNAME;
}

static int subdomain_ok(const char *s, size_t n)
{
    /* dot-separated labels, each [a-z0-9]([-a-z0-9]*[a-z0-9])? */
    size_t i = 0;

    while (i < n) {
        size_t start = i;
        while (i < n && s[i] != '.')
            i++;
        size_t len = i - start;
        if (len == 0)
            return 0;
        if (!is_lower_alnum((unsigned char)s[start]) || !is_lower_alnum((unsigned char)s[i - 1]))
            return 0;
        for (size_t j = start + 1; j + 1 < i; j++)
            if (!is_lower_alnum((unsigned char)s[j]) && s[j] != '-')
                return 0;
        if (i < n) {
            i++; /* the dot */
            if (i == n)
                return 0; /* trailing dot */
        }
    }
    return 1;
}

/* kc_name_validate of name[0..n) (no NUL inside). */
static int name_valid_n(const char *name, size_t n, kc_name_rule_t rule)
{
    if (n == 0 || n > KC_NAME_MAX)
        return KC_EBADNAME;
    switch (rule) {
    case KC_NAME_DNS1123_SUBDOMAIN:
        return subdomain_ok(name, n) ? 0 : KC_EBADNAME;
    case KC_NAME_PATH_SEGMENT:
        if ((n == 1 && name[0] == '.') || (n == 2 && name[0] == '.' && name[1] == '.'))
            return KC_EBADNAME;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)name[i];
            if (c < 0x20 || c == 0x7f || c == '/' || c == '%')
                return KC_EBADNAME;
        }
        return 0;
    }
    return KC_EBADNAME;
}

int kc_name_validate(const char *name, kc_name_rule_t rule)
{
    return name ? name_valid_n(name, strlen(name), rule) : KC_EBADNAME;
}

int kc_key_init_rule(kc_key_t *k, const char *ns, const char *name, kc_name_rule_t rule)
{
    if (!k)
        return -EINVAL;
    memset(k, 0, sizeof(*k));
    if (ns && *ns && kc_namespace_validate(ns) < 0)
        return KC_EBADNAME;
    if (kc_name_validate(name, rule) < 0)
        return KC_EBADNAME;
    if (ns)
        memcpy(k->ns, ns, strlen(ns) + 1);
    memcpy(k->name, name, strlen(name) + 1);
    return 0;
}

int kc_key_init(kc_key_t *k, const char *ns, const char *name)
{
    return kc_key_init_rule(k, ns, name, KC_NAME_DNS1123_SUBDOMAIN);
}

int kc_key_parse_rule(kc_key_t *k, const char *s, kc_name_rule_t rule)
{
    char ns[KC_NS_MAX + 1];
    const char *slash;

    if (!k)
        return -EINVAL;
    memset(k, 0, sizeof(*k));
    if (!s)
        return KC_EBADNAME;
    slash = strchr(s, '/');
    if (!slash)
        return kc_key_init_rule(k, NULL, s, rule);
    size_t n = (size_t)(slash - s);
    if (n == 0 || n > KC_NS_MAX)
        return KC_EBADNAME; /* "/name" names no namespace: not a cluster key either */
    memcpy(ns, s, n);
    ns[n] = '\0';
    return kc_key_init_rule(k, ns, slash + 1, rule); /* a second '/' fails the name */
}

int kc_key_parse(kc_key_t *k, const char *s)
{
    return kc_key_parse_rule(k, s, KC_NAME_DNS1123_SUBDOMAIN);
}

size_t kc_key_format(const kc_key_t *k, char *buf, size_t cap)
{
    size_t nl = strnlen(k->ns, sizeof(k->ns)), ml = strnlen(k->name, sizeof(k->name));
    size_t total = nl ? nl + 1 + ml : ml, w = 0;

    if (!buf || cap == 0)
        return total;
    if (nl) {
        size_t c = nl < cap - 1 ? nl : cap - 1;
        memcpy(buf, k->ns, c);
        w = c;
        if (w < cap - 1)
            buf[w++] = '/';
    }
    if (w < cap - 1) {
        size_t c = ml < cap - 1 - w ? ml : cap - 1 - w;
        memcpy(buf + w, k->name, c);
        w += c;
    }
    buf[w] = '\0';
    return total;
}

int kc_key_equal(const kc_key_t *a, const kc_key_t *b)
{
    return strcmp(a->ns, b->ns) == 0 && strcmp(a->name, b->name) == 0;
}

/* ------------------------------------------------------------------ */
/* building objects */

struct owner_spans {
    kc_json_span_t f[4]; /* apiVersion, kind, name, uid; p NULL if absent */
    unsigned flags;
};

#define LABELS_KEPT 32

struct meta {
    kc_json_span_t md;       /* metadata object (p NULL if absent) */
    kc_json_span_t name, ns, uid, rv, labels, owners;
    int has_mf;              /* metadata.managedFields present */
    kc_json_span_t mf_key, mf_val; /* its member, when present */
    int deleting;
    int64_t generation;
    size_t nlabels, nowners;
    unsigned plain;          /* bit (1u << KC_JSON_META_x): the string is known
                              * to hold no escape (noted by a scan) */
    size_t strings;          /* bytes of data[] before the JSON */
    size_t labels_strings;   /* of which the labels' */
    /* the first LABELS_KEPT labels' spans and unescaped lengths, noted by
     * scan_labels so that kc_obj_new copies them without walking the
     * labels object again */
    kc_json_span_t lk[LABELS_KEPT], lv[LABELS_KEPT];
    size_t lkl[LABELS_KEPT], lvl[LABELS_KEPT];
};

static int type_err(kc_errbuf_t *eb, const char *field, const char *want, kc_json_span_t v)
{
    return kc_errf(eb, KC_EPARSE, "%s: expected %s, got %s", field, want,
                   kc_json_type_name(v.type));
}

/* Optional string field: absent or null leaves *dst empty. */
static int want_string(kc_json_span_t v, kc_json_span_t *dst, const char *field, kc_errbuf_t *eb)
{
    if (v.type == KC_JSON_NULL)
        return 0;
    if (v.type != KC_JSON_STRING)
        return type_err(eb, field, "string", v);
    *dst = v;
    return 0;
}

static long str_size(kc_json_span_t s, const char *field, kc_errbuf_t *eb)
{
    if (!s.p)
        return 1;
    long n = kc_json_str_len(s);
    if (n < 0)
        return kc_errf(eb, KC_EPARSE, "%s: bad string", field);
    return n + 1;
}

static int parse_generation(kc_json_span_t v, int64_t *out, kc_errbuf_t *eb)
{
    char buf[32];
    char *end;

    if (v.type == KC_JSON_NULL)
        return 0;
    if (v.type != KC_JSON_NUMBER)
        return type_err(eb, "metadata.generation", "integer", v);
    if (v.len >= sizeof(buf) || memchr(v.p, '.', v.len) || memchr(v.p, 'e', v.len) ||
        memchr(v.p, 'E', v.len))
        return kc_errf(eb, KC_EPARSE, "metadata.generation: not a 64-bit integer");
    memcpy(buf, v.p, v.len);
    buf[v.len] = '\0';
    errno = 0;
    long long g = strtoll(buf, &end, 10);
    if (errno || *end)
        return kc_errf(eb, KC_EPARSE, "metadata.generation: not a 64-bit integer");
    *out = g;
    return 0;
}

/* The labels object starts at p (its '{'), inside a document ending
 * before limit: one walk notes every label and sets m->labels. */
static int scan_labels(struct meta *m, const char *p, const char *limit, kc_errbuf_t *eb)
{
    kc_json_iter_t it;
    kc_json_span_t k, v;
    int rc;

    kc_json_iter_init_at(&it, p, limit);
    while ((rc = kc_json_iter_next(&it, &k, &v)) == 1) {
        if (v.type != KC_JSON_STRING) {
            char key[64];
            if (kc_json_str_unescape(k, key, sizeof(key)) < 0)
                snprintf(key, sizeof(key), "...");
            return kc_errf(eb, KC_EPARSE, "metadata.labels[\"%s\"]: expected string, got %s",
                           key, kc_json_type_name(v.type));
        }
        long a = str_size(k, "metadata.labels", eb), b = str_size(v, "metadata.labels", eb);
        if (a < 0 || b < 0)
            return KC_EPARSE;
        m->strings += (size_t)a + (size_t)b;
        if (m->nlabels < LABELS_KEPT) {
            m->lk[m->nlabels] = k;
            m->lv[m->nlabels] = v;
            m->lkl[m->nlabels] = (size_t)a - 1;
            m->lvl[m->nlabels] = (size_t)b - 1;
        }
        m->nlabels++;
    }
    if (rc < 0)
        return kc_errf(eb, KC_EPARSE, "metadata.labels: malformed");
    m->labels.p = p;
    m->labels.len = (size_t)(kc_json_iter_end(&it) - p);
    m->labels.type = KC_JSON_OBJECT;
    if (m->nlabels > UINT16_MAX)
        return kc_errf(eb, KC_ETOOBIG, "metadata.labels: more than %u labels", UINT16_MAX);
    return 0;
}

static const char *const owner_fields[4] = { "apiVersion", "kind", "name", "uid" };
static const size_t owner_field_len[4] = { 10, 4, 4, 3 };

/* Parse one ownerReferences element into *os (validating types). */
static int scan_owner(kc_json_span_t el, size_t idx, struct owner_spans *os, kc_errbuf_t *eb)
{
    kc_json_iter_t it;
    kc_json_span_t k, v;
    char field[64];
    int rc;

    memset(os, 0, sizeof(*os));
    if (el.type != KC_JSON_OBJECT) {
        snprintf(field, sizeof(field), "metadata.ownerReferences[%zu]", idx);
        return type_err(eb, field, "object", el);
    }
    kc_json_iter_init(&it, el);
    while ((rc = kc_json_iter_next(&it, &k, &v)) == 1) {
        for (int f = 0; f < 4; f++) {
            if (!kc_json_str_eqn(k, owner_fields[f], owner_field_len[f]))
                continue;
            if (v.type != KC_JSON_STRING && v.type != KC_JSON_NULL) {
                /* the field's name is formatted only for the message */
                snprintf(field, sizeof(field), "metadata.ownerReferences[%zu].%s", idx,
                         owner_fields[f]);
                return type_err(eb, field, "string", v);
            }
            if (v.type == KC_JSON_STRING)
                os->f[f] = v;
        }
        unsigned bit = KC_JSON_STR_EQ_LIT(k, "controller") ? KC__OWNER_CONTROLLER
                     : KC_JSON_STR_EQ_LIT(k, "blockOwnerDeletion") ? KC__OWNER_BLOCK : 0;
        if (bit) {
            if (v.type == KC_JSON_TRUE)
                os->flags |= bit;
            else if (v.type != KC_JSON_FALSE && v.type != KC_JSON_NULL) {
                snprintf(field, sizeof(field), "metadata.ownerReferences[%zu].%s", idx,
                         bit == KC__OWNER_CONTROLLER ? "controller" : "blockOwnerDeletion");
                return type_err(eb, field, "boolean", v);
            }
        }
    }
    return rc < 0 ? kc_errf(eb, KC_EPARSE, "metadata.ownerReferences: malformed") : 0;
}

static int scan_owners(struct meta *m, kc_errbuf_t *eb)
{
    kc_json_iter_t it;
    kc_json_span_t v;
    struct owner_spans os;
    int rc;

    kc_json_iter_init(&it, m->owners);
    while ((rc = kc_json_iter_next(&it, NULL, &v)) == 1) {
        rc = scan_owner(v, m->nowners, &os, eb);
        if (rc < 0)
            return rc;
        for (int f = 0; f < 4; f++) {
            long n = str_size(os.f[f], "metadata.ownerReferences", eb);
            if (n < 0)
                return KC_EPARSE;
            m->strings += (size_t)n;
        }
        m->strings += 1; /* flags byte */
        m->nowners++;
    }
    if (rc < 0)
        return kc_errf(eb, KC_EPARSE, "metadata.ownerReferences: malformed");
    if (m->nowners > UINT16_MAX)
        return kc_errf(eb, KC_ETOOBIG, "metadata.ownerReferences: too many");
    return 0;
}

/* One walk over metadata: the members kc_obj_new needs are taken as they
 * come (labels walked in place), the others skipped once.  top is a
 * well-formed object (validated by kc_obj_new or its caller). */
static int scan_metadata(kc_json_span_t top, struct meta *m, kc_errbuf_t *eb)
{
    kc_json_iter_t it;
    kc_json_span_t k, v;
    const char *limit = top.p + top.len, *vp, *mdp;
    int rc;

    memset(m, 0, offsetof(struct meta, lk)); /* lk..lvl: written before read */
    if (top.type != KC_JSON_OBJECT)
        return type_err(eb, "object", "a JSON object", top);
    kc_json_iter_init(&it, top);
    while ((rc = kc_json_iter_next_key(&it, &k, &mdp)) == 1)
        if (KC_JSON_STR_EQ_LIT(k, "metadata"))
            break;
    if (rc == 0)
        return kc_errf(eb, KC_EPARSE, "metadata: missing");
    if (rc < 0)
        return kc_errf(eb, KC_EPARSE, "malformed object");
    if (*mdp != '{') {
        if (kc_json_iter_value(&it, &m->md) < 0)
            return kc_errf(eb, KC_EPARSE, "malformed object");
        return type_err(eb, "metadata", "object", m->md);
    }

    kc_json_iter_init_at(&it, mdp, limit);
    while ((rc = kc_json_iter_next_key(&it, &k, &vp)) == 1) {
        /* Dispatch on the key's first character: most keys miss. */
        char first = k.len > 1 ? k.p[1] : 0;
        if (first == '\\') {
            /* an escaped first character (servers do not send these) */
            char kb[32];
            first = kc_json_str_unescape(k, kb, sizeof(kb)) == 0 ? kb[0] : 0;
        }
        /* the members below want the value as a span, except labels */
        int want = 0;
        switch (first) {
        case 'n': want = KC_JSON_STR_EQ_LIT(k, "name") ? 1
                       : KC_JSON_STR_EQ_LIT(k, "namespace") ? 2 : 0; break;
        case 'u': want = KC_JSON_STR_EQ_LIT(k, "uid") ? 3 : 0; break;
        case 'r': want = KC_JSON_STR_EQ_LIT(k, "resourceVersion") ? 4 : 0; break;
        case 'g': want = KC_JSON_STR_EQ_LIT(k, "generation") ? 5 : 0; break;
        case 'd': want = KC_JSON_STR_EQ_LIT(k, "deletionTimestamp") ? 6 : 0; break;
        case 'l': want = KC_JSON_STR_EQ_LIT(k, "labels") ? 7 : 0; break;
        case 'o': want = KC_JSON_STR_EQ_LIT(k, "ownerReferences") ? 8 : 0; break;
        case 'm': want = !m->has_mf && KC_JSON_STR_EQ_LIT(k, "managedFields") ? 9 : 0; break;
        default: break;
        }
        if (want == 0)
            continue; /* the next call skips the value */
        if (want == 7 && *vp == '{') {
            /* a later duplicate "labels" replaces an earlier one */
            m->strings -= m->labels_strings;
            m->nlabels = 0;
            size_t before = m->strings;
            if ((rc = scan_labels(m, vp, limit, eb)) < 0)
                return rc;
            m->labels_strings = m->strings - before;
            kc_json_iter_resume(&it, m->labels.p + m->labels.len);
            continue;
        }
        if (kc_json_iter_value(&it, &v) < 0) {
            rc = KC_EPARSE;
            break;
        }
        switch (want) {
        case 1: rc = want_string(v, &m->name, "metadata.name", eb); break;
        case 2: rc = want_string(v, &m->ns, "metadata.namespace", eb); break;
        case 3: rc = want_string(v, &m->uid, "metadata.uid", eb); break;
        case 4: rc = want_string(v, &m->rv, "metadata.resourceVersion", eb); break;
        case 5: rc = parse_generation(v, &m->generation, eb); break;
        case 6:
            if (v.type == KC_JSON_STRING)
                m->deleting = 1;
            else if (v.type != KC_JSON_NULL)
                rc = type_err(eb, "metadata.deletionTimestamp", "string", v);
            break;
        case 7:
            if (v.type != KC_JSON_NULL)
                rc = type_err(eb, "metadata.labels", "object", v);
            break;
        case 8:
            if (v.type == KC_JSON_ARRAY)
                m->owners = v;
            else if (v.type != KC_JSON_NULL)
                rc = type_err(eb, "metadata.ownerReferences", "array", v);
            break;
        case 9:
            m->has_mf = 1;
            m->mf_key = k;
            m->mf_val = v;
            break;
        }
        if (rc < 0)
            return rc;
    }
    if (rc < 0)
        return kc_errf(eb, KC_EPARSE, "metadata: malformed");
    m->md.p = mdp;
    m->md.len = (size_t)(kc_json_iter_end(&it) - mdp);
    m->md.type = KC_JSON_OBJECT;
    if (!m->name.p)
        return kc_errf(eb, KC_EPARSE, "metadata.name: missing");
    if (m->owners.p && (rc = scan_owners(m, eb)) < 0)
        return rc;
    return 0;
}

/* Fill *m from what the caller's validating scan of json[0..len) noted
 * (kc_obj_opts_t.meta) instead of walking metadata: 1 when done, 0 when
 * the note does not describe these bytes or anything about it is not the
 * plain success case (a field of the wrong type, no name, a bad generation
 * or owner reference).  Then scan_metadata reads the bytes and reports
 * exactly as without the note; the checks here are the same (want_string,
 * parse_generation, scan_owners), so both paths give the same object. */
static int meta_take(const kc_json_meta_t *s, const char *json, size_t len, struct meta *m)
{
    kc_json_span_t *str[4] = { &m->name, &m->ns, &m->uid, &m->rv };
    unsigned seen = s->seen;

    if (!s->usable || s->obj != json || s->obj_len != len)
        return 0;
    memset(m, 0, offsetof(struct meta, lk)); /* lk..lvl: written before read */
    for (int f = KC_JSON_META_NAME; f <= KC_JSON_META_RV; f++) {
        if (!(seen & (1u << f)) || s->f[f].type == KC_JSON_NULL)
            continue;
        if (s->f[f].type != KC_JSON_STRING)
            return 0;
        *str[f] = s->f[f];
        if (!(s->esc & (1u << f)))
            m->plain |= 1u << f;
    }
    if (!m->name.p)
        return 0;
    if ((seen & (1u << KC_JSON_META_GENERATION)) &&
        parse_generation(s->f[KC_JSON_META_GENERATION], &m->generation, NULL) < 0)
        return 0;
    if (seen & (1u << KC_JSON_META_DELETION)) {
        kc_json_type_t t = s->f[KC_JSON_META_DELETION].type;
        if (t == KC_JSON_STRING)
            m->deleting = 1;
        else if (t != KC_JSON_NULL)
            return 0;
    }
    if (seen & (1u << KC_JSON_META_LABELS)) {
        kc_json_span_t v = s->f[KC_JSON_META_LABELS];
        if (v.type == KC_JSON_OBJECT) {
            m->labels = v;
            m->nlabels = s->nlabels;   /* at most KC_JSON_META_LABELS_MAX */
            for (size_t i = 0; i < m->nlabels; i++) {
                long a = (s->lk_esc >> i) & 1 ? kc_json_str_len(s->lk[i]) : (long)s->lk[i].len - 2;
                long b = (s->lv_esc >> i) & 1 ? kc_json_str_len(s->lv[i]) : (long)s->lv[i].len - 2;
                if (a < 0 || b < 0)
                    return 0;
                m->lk[i] = s->lk[i];
                m->lv[i] = s->lv[i];
                m->lkl[i] = (size_t)a;
                m->lvl[i] = (size_t)b;
                m->strings += (size_t)a + (size_t)b + 2;
            }
        } else if (v.type != KC_JSON_NULL) {
            return 0;
        }
    }
    if (seen & (1u << KC_JSON_META_OWNERS)) {
        kc_json_span_t v = s->f[KC_JSON_META_OWNERS];
        if (v.type == KC_JSON_ARRAY)
            m->owners = v;
        else if (v.type != KC_JSON_NULL)
            return 0;
    }
    if (s->mf_key.p) {
        m->has_mf = 1;
        m->mf_key = s->mf_key;
        m->mf_val = s->mf_val;
    }
    if (m->owners.p && scan_owners(m, NULL) < 0)
        return 0;
    return 1;
}

static int put_str(kc_json_span_t s, char **w, char *limit);

/* The 16 bytes of a uid in the canonical form the API server writes (36
 * characters: lowercase hex in groups of 8-4-4-4-12); 0 if it is not in
 * that form, which is then kept as text.  uid_text writes it back. */
static int uid_pack(const char *s, size_t n, unsigned char out[16])
{
    static const signed char hex[256] = {
        ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7,
        ['7'] = 8, ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14,
        ['e'] = 15, ['f'] = 16,
    };   /* digit value + 1: 0 for everything else, uppercase included */
    size_t k = 0;

    if (n != KC_UID_BUF - 1)
        return 0;
    for (size_t i = 0; i < n; i += 2) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
            i++;
        }
        int hi = hex[(unsigned char)s[i]], lo = hex[(unsigned char)s[i + 1]];
        if (!hi || !lo)
            return 0;
        out[k++] = (unsigned char)((hi - 1) << 4 | (lo - 1));
    }
    return 1;
}

static void uid_text(const unsigned char *b, char out[KC_UID_BUF])
{
    static const char digits[] = "0123456789abcdef";
    char *w = out;

    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *w++ = '-';
        *w++ = digits[b[i] >> 4];
        *w++ = digits[b[i] & 15];
    }
    *w = '\0';
}

/* Like put_str for a string span whose unescaped length n is known: a
 * string without escapes (the usual case) is copied as it is, since every
 * escape decodes to fewer bytes than it takes. */
static inline int put_len(kc_json_span_t s, size_t n, char **w, char *limit)
{
    if (s.p && n == s.len - 2) {
        if ((size_t)(limit - *w) < n + 1)
            return -ERANGE;
        memcpy(*w, s.p + 1, n);
        (*w)[n] = '\0';
        *w += n + 1;
        return 0;
    }
    return put_str(s, w, limit);
}

/* Unescape s into *w (advancing past its NUL); an absent span gives "". */
static int put_str(kc_json_span_t s, char **w, char *limit)
{
    if (!s.p) {
        *(*w)++ = '\0';
        return 0;
    }
    int rc = kc_json_str_unescape(s, *w, (size_t)(limit - *w));
    if (rc < 0)
        return rc;
    *w += strlen(*w) + 1;
    return 0;
}

/* kc_json_str_unescape of a string span into dst[cap], which for one
 * known to hold no escape (plain) is a copy; *n gets the length (the
 * string holds no NUL: unescaping refuses \u0000, the scan raw ones). */
static int plain_copy(kc_json_span_t s, unsigned plain, char *dst, size_t cap, size_t *n)
{
    if (!plain) {
        int rc = kc_json_str_unescape(s, dst, cap);
        *n = rc == 0 ? strlen(dst) : 0;
        return rc;
    }
    if (s.len - 2 >= cap)
        return -ERANGE;
    memcpy(dst, s.p + 1, s.len - 2);
    dst[s.len - 2] = '\0';
    *n = s.len - 2;
    return 0;
}

/* The bytes [*cs, *ce) of the minified document min[0..len) that hold the
 * metadata.managedFields member and one comma next to it, if any. */
static void mf_cut(const char *min, size_t len, const struct meta *m, size_t *cs, size_t *ce)
{
    *cs = (size_t)(m->mf_key.p - min);
    *ce = (size_t)(m->mf_val.p + m->mf_val.len - min);
    if (min[*cs - 1] == ',')
        (*cs)--;                    /* ...,"managedFields":[...] */
    else if (*ce < len && min[*ce] == ',')
        (*ce)++;                    /* {"managedFields":[...],... */
}

int kc_obj_new(const char *json, size_t len, const kc_obj_opts_t *opts, kc_obj_t **out,
               kc_errbuf_t *eb)
{
    kc_obj_opts_t defaults = KC_OBJ_OPTS_INIT;
    kc_json_span_t top;
    kc_json_err_t jerr;
    struct meta m;
    char name[KC_NAME_MAX + 1], ns[KC_NS_MAX + 1];
    /* the minified copy of an object up to 8 KiB (ConfigMaps, most Pods:
     * the watch hot path) lives on the stack: no malloc/free pair for it */
    char small[8192];
    char *min = NULL;        /* the minified copy, when one is made */
    /* packing: the JSON in one piece (when managedFields were cut from it)
     * and its LZ4 block, on the stack up to 8 KiB */
    char flat_small[8192], pk_small[8192 + 8192 / 255 + 16];
    char *flat = flat_small, *pk = pk_small;
    int pk_len = 0;
    const char *doc;         /* the minified document: min, or json itself */
    size_t mlen = 0;
    kc_obj_t *o = NULL;
    int rc;

    if (!out || (!json && len))
        return kc_errf(eb, -EINVAL, "kc_obj_new: NULL argument");
    *out = NULL;
    if (!opts)
        opts = &defaults;
    if (len > opts->max_size || len > (size_t)INT32_MAX)
        return kc_errf(eb, KC_ETOOBIG, "object of %zu bytes exceeds the limit of %zu", len,
                       opts->max_size);
    if (opts->prevalidated && len >= 2 && json[0] == '{' && json[len - 1] == '}') {
        /* The caller's scan validated these bytes and found them minified
         * (kc_obj_opts_t): read them where they are.  (Anything but an
         * object takes the path below, for its error message.) */
        doc = json;
        mlen = len;
        top.p = json;
        top.len = len;
        top.type = KC_JSON_OBJECT;
    } else {
        /* One pass validates and minifies; everything after reads the
         * minified copy. */
        min = len <= sizeof(small) ? small : malloc(len);
        if (!min)
            return kc_errf(eb, -ENOMEM, "out of memory (%zu bytes)", len);
        rc = kc_json_parse_doc_minify(json, len, min, &mlen, &top, &jerr);
        if (rc < 0) {
            rc = kc_errf(eb, KC_EPARSE, "JSON offset %zu: %s", jerr.offset, jerr.what);
            goto out;
        }
        doc = min;
    }
    /* metadata: as the caller's scan noted it, else one walk */
    if (!(doc == json && opts->meta && meta_take(opts->meta, json, len, &m))) {
        rc = scan_metadata(top, &m, eb);
        if (rc < 0)
            goto out;
    }

    /* Names: validated before the object is allocated. */
    size_t ns_len = 0, name_len = 0;
    if (plain_copy(m.name, m.plain & (1u << KC_JSON_META_NAME), name, sizeof(name),
                   &name_len) < 0 ||
        name_valid_n(name, name_len, KC_NAME_PATH_SEGMENT) < 0) {
        rc = kc_errf(eb, KC_EBADNAME, "metadata.name: invalid name");
        goto out;
    }
    ns[0] = '\0';
    if (m.ns.p && (plain_copy(m.ns, m.plain & (1u << KC_JSON_META_NAMESPACE), ns, sizeof(ns),
                              &ns_len) < 0 ||
                   (ns_len && ns_valid_n(ns, ns_len) < 0))) {
        rc = kc_errf(eb, KC_EBADNAME, "metadata.namespace: invalid namespace \"%.63s\"", ns);
        goto out;
    }

    long uid_sz = m.plain & (1u << KC_JSON_META_UID) ? (long)m.uid.len - 1
                : str_size(m.uid, "metadata.uid", eb);
    long rv_sz = m.plain & (1u << KC_JSON_META_RV) ? (long)m.rv.len - 1
               : str_size(m.rv, "metadata.resourceVersion", eb);
    if (uid_sz < 0 || rv_sz < 0) {
        rc = KC_EPARSE;
        goto out;
    }
    int drop = !opts->keep_managed_fields && m.has_mf;
    size_t jlen = mlen, cs = mlen, ce = mlen;
    if (drop) {
        mf_cut(doc, mlen, &m, &cs, &ce);
        jlen -= ce - cs;
    }
    /* a canonical UUID is kept in 16 bytes; any other uid as text */
    unsigned char uid16[16];
    int is_uid16 = 0;
    if (m.uid.p && uid_sz == KC_UID_BUF) {
        char ut[KC_UID_BUF];
        size_t un;
        is_uid16 = plain_copy(m.uid, m.plain & (1u << KC_JSON_META_UID), ut, sizeof(ut),
                              &un) == 0 && uid_pack(ut, un, uid16);
    }
    size_t uid_room = is_uid16 ? sizeof(uid16) : (size_t)uid_sz;
    size_t gen_room = m.generation ? sizeof(int64_t) : 0;
    size_t strings = ns_len + 1 + name_len + 1 + uid_room + (size_t)rv_sz + gen_room + m.strings;
    size_t head = KC__OBJ_HDR + strings, pad = 0, cap;

    /* Large JSON is kept compressed when that saves at least an eighth. */
    if (opts->pack_min && jlen >= opts->pack_min && jlen <= (size_t)LZ4_MAX_INPUT_SIZE) {
        const char *src = doc;
        int bound = LZ4_compressBound((int)jlen);
        if (drop) {   /* LZ4 wants the bytes in one piece */
            flat = jlen <= sizeof(flat_small) ? flat_small : malloc(jlen);
            if (!flat) {
                rc = kc_errf(eb, -ENOMEM, "out of memory (%zu bytes)", jlen);
                goto out;
            }
            memcpy(flat, doc, cs);
            memcpy(flat + cs, doc + ce, mlen - ce);
            src = flat;
        }
        pk = (size_t)bound <= sizeof(pk_small) ? pk_small : malloc((size_t)bound);
        if (!pk) {
            rc = kc_errf(eb, -ENOMEM, "out of memory (%d bytes)", bound);
            goto out;
        }
        pk_len = LZ4_compress_fast(src, pk, (int)jlen, bound, KC__PACK_ACCELERATION);
        if (pk_len <= 0 || (size_t)pk_len > jlen - jlen / 8)
            pk_len = 0;   /* not worth it: stored as it is */
    }
    if (pk_len) {
        pad = (8 - head % 8) % 8;   /* kc__packed_t holds a pointer */
        cap = head + pad + offsetof(kc__packed_t, block) + (size_t)pk_len;
    } else {
        cap = head + jlen + 1;
    }

    o = malloc(cap);
    if (!o) {
        rc = kc_errf(eb, -ENOMEM, "out of memory (%zu bytes)", cap);
        goto out;
    }
    memset(o, 0, KC__OBJ_HDR);
    char *base = o->data, *w = base, *limit = (char *)o + cap;

    memcpy(w, ns, ns_len + 1);
    w += ns_len + 1;
    memcpy(w, name, name_len + 1);
    w += name_len + 1;
    if (is_uid16) {
        memcpy(w, uid16, sizeof(uid16));
        w += sizeof(uid16);
        o->flags |= KC__OBJ_UID16;
    } else if ((rc = put_len(m.uid, (size_t)uid_sz - 1, &w, limit)) < 0) {
        goto bad_string;
    }
    o->rv_off = (uint32_t)(w - base);
    if ((rc = put_len(m.rv, (size_t)rv_sz - 1, &w, limit)) < 0)
        goto bad_string;
    if (gen_room) {
        memcpy(w, &m.generation, gen_room);
        w += gen_room;
        o->flags |= KC__OBJ_GEN;
    }
    o->labels_off = (uint32_t)(w - base);
    if (m.labels.p && m.nlabels <= LABELS_KEPT) {
        for (size_t i = 0; i < m.nlabels; i++)
            if ((rc = put_len(m.lk[i], m.lkl[i], &w, limit)) < 0 ||
                (rc = put_len(m.lv[i], m.lvl[i], &w, limit)) < 0)
                goto bad_string;
    } else if (m.labels.p) {
        kc_json_iter_t it;
        kc_json_span_t k, v;
        kc_json_iter_init(&it, m.labels);
        while (kc_json_iter_next(&it, &k, &v) == 1) {
            if ((rc = put_str(k, &w, limit)) < 0 || (rc = put_str(v, &w, limit)) < 0)
                goto bad_string;
        }
    }
    o->owners_off = (uint32_t)(w - base);
    if (m.owners.p) {
        kc_json_iter_t it;
        kc_json_span_t v;
        struct owner_spans os;
        size_t i = 0;
        kc_json_iter_init(&it, m.owners);
        while (kc_json_iter_next(&it, NULL, &v) == 1) {
            scan_owner(v, i++, &os, NULL); /* validated above */
            for (int f = 0; f < 4; f++)
                if ((rc = put_str(os.f[f], &w, limit)) < 0)
                    goto bad_string;
            *w++ = (char)os.flags;
        }
    }
    if (pk_len) {
        memset(w, 0, pad);
        w += pad;
        o->json_off = (uint32_t)(w - base);
        kc__packed_t *pp = (kc__packed_t *)(void *)w;
        if (pp->block + pk_len != limit)
            abort(); /* the sizes computed above must match what was written */
        atomic_init(&pp->unpacked, NULL);
        pp->packed_len = (uint32_t)pk_len;
        memcpy(pp->block, pk, (size_t)pk_len);
        o->flags |= KC__OBJ_PACKED;
    } else {
        o->json_off = (uint32_t)(w - base);
        if (w + jlen + 1 != limit)
            abort(); /* the sizes computed above must match what was written */
        memcpy(w, doc, cs);
        memcpy(w + cs, doc + ce, mlen - ce);
        w[jlen] = '\0';
    }

    atomic_init(&o->refs, 1);
    o->json_len = (uint32_t)jlen;
    o->ns_len = (uint8_t)ns_len;
    o->name_len = (uint16_t)name_len;
    o->nlabels = (uint16_t)m.nlabels;
    o->nowners = (uint16_t)m.nowners;
    o->flags |= m.deleting ? KC__OBJ_DELETING : 0;
    *out = o;
    o = NULL;
    rc = 0;
    goto out;

bad_string:
    rc = kc_errf(eb, KC_EPARSE, "metadata: string with an embedded NUL or bad escape");
out:
    free(o);
    if (min != small)
        free(min);   /* NULL when prevalidated */
    if (flat != flat_small)
        free(flat);
    if (pk != pk_small)
        free(pk);
    return rc;
}

/* ------------------------------------------------------------------ */
/* objects */

static kc__packed_t *packed_of(const kc_obj_t *o)
{
    /* the one field written after publication is atomic */
    return (kc__packed_t *)(void *)(o->data + o->json_off);
}

/* A packed object's JSON, decompressed into a new NUL-terminated buffer
 * (the caller frees it); NULL when out of memory. */
static char *unpack(const kc_obj_t *o)
{
    const kc__packed_t *pp = packed_of(o);
    char *u = malloc((size_t)o->json_len + 1);

    if (!u)
        return NULL;
    if (LZ4_decompress_safe(pp->block, u, (int)pp->packed_len, (int)o->json_len) !=
        (int)o->json_len)
        abort();   /* kc_obj_new wrote this block: the object's memory is corrupt */
    u[o->json_len] = '\0';
    return u;
}

/* The JSON to read for a moment: the stored bytes, kc_obj_json's copy if
 * it made one, or a decompression into *tmp, which the caller frees.  NULL
 * when out of memory. */
static const char *json_view(const kc_obj_t *o, char **tmp)
{
    *tmp = NULL;
    if (!(o->flags & KC__OBJ_PACKED))
        return o->data + o->json_off;
    char *u = atomic_load_explicit(&packed_of(o)->unpacked, memory_order_acquire);
    if (u)
        return u;
    return *tmp = unpack(o);
}

kc_obj_t *kc_obj_ref(kc_obj_t *o)
{
    if (o)
        atomic_fetch_add_explicit(&o->refs, 1, memory_order_relaxed);
    return o;
}

void kc_obj_unref(kc_obj_t *o)
{
    if (!o)
        return;
    /* acq_rel rather than release + acquire fence: same code on x86, and
     * ThreadSanitizer understands it. */
    unsigned prev = atomic_fetch_sub_explicit(&o->refs, 1, memory_order_acq_rel);
    if (prev == 1) {
        if (o->flags & KC__OBJ_PACKED)
            free(atomic_load_explicit(&packed_of(o)->unpacked, memory_order_acquire));
        free(o);
    } else if (prev == 0) {
        abort(); /* more releases than references: a use-after-free in the making */
    }
}

const char *kc_obj_namespace(const kc_obj_t *o) { return kc__obj_ns(o); }
const char *kc_obj_name(const kc_obj_t *o) { return kc__obj_name(o); }
const char *kc_obj_resource_version(const kc_obj_t *o) { return o->data + o->rv_off; }

const char *kc_obj_uid(const kc_obj_t *o, char buf[KC_UID_BUF])
{
    const char *u = o->data + o->ns_len + o->name_len + 2;

    if (!(o->flags & KC__OBJ_UID16))
        return u;
    uid_text((const unsigned char *)u, buf);
    return buf;
}

long long kc_obj_generation(const kc_obj_t *o)
{
    int64_t g = 0;

    if (o->flags & KC__OBJ_GEN)
        memcpy(&g, o->data + o->labels_off - sizeof(g), sizeof(g));
    return (long long)g;
}
int kc_obj_deleting(const kc_obj_t *o) { return (o->flags & KC__OBJ_DELETING) != 0; }

void kc_obj_key(const kc_obj_t *o, kc_key_t *out)
{
    memcpy(out->ns, kc__obj_ns(o), (size_t)o->ns_len + 1);
    memcpy(out->name, kc__obj_name(o), (size_t)o->name_len + 1);
}

const char *kc_obj_json(const kc_obj_t *o, size_t *len)
{
    char *tmp, *seen = NULL;
    const char *j = json_view(o, &tmp);

    if (len)
        *len = o->json_len;
    if (!tmp)
        return j;   /* stored bytes, the copy already kept, or NULL (no memory) */
    /* a fresh decompression: keep it with the object, unless another
     * thread published its copy first */
    if (!atomic_compare_exchange_strong_explicit(&packed_of(o)->unpacked, &seen, tmp,
                                                 memory_order_acq_rel, memory_order_acquire)) {
        free(tmp);
        return seen;
    }
    return tmp;
}

size_t kc_obj_json_len(const kc_obj_t *o) { return o->json_len; }
int kc_obj_packed(const kc_obj_t *o) { return (o->flags & KC__OBJ_PACKED) != 0; }

size_t kc_obj_label_count(const kc_obj_t *o) { return o->nlabels; }

int kc_obj_label_at(const kc_obj_t *o, size_t i, const char **key, const char **value)
{
    const char *p = o->data + o->labels_off;

    if (i >= o->nlabels)
        return KC_ENOTFOUND;
    for (size_t j = 0; j < i; j++) {
        p += strlen(p) + 1;
        p += strlen(p) + 1;
    }
    if (key)
        *key = p;
    if (value)
        *value = p + strlen(p) + 1;
    return 0;
}

const char *kc_obj_label(const kc_obj_t *o, const char *key)
{
    const char *p = o->data + o->labels_off;

    for (size_t j = 0; j < o->nlabels; j++) {
        const char *v = p + strlen(p) + 1;
        if (strcmp(p, key) == 0)
            return v;
        p = v + strlen(v) + 1;
    }
    return NULL;
}

size_t kc_obj_owner_count(const kc_obj_t *o) { return o->nowners; }

static const char *owner_fill(const char *p, kc_owner_ref_t *out)
{
    const char **f[4] = { &out->api_version, &out->kind, &out->name, &out->uid };

    for (int i = 0; i < 4; i++) {
        *f[i] = p;
        p += strlen(p) + 1;
    }
    out->controller = (*p & KC__OWNER_CONTROLLER) != 0;
    out->block_owner_deletion = (*p & KC__OWNER_BLOCK) != 0;
    return p + 1;
}

int kc_obj_owner_at(const kc_obj_t *o, size_t i, kc_owner_ref_t *out)
{
    const char *p = o->data + o->owners_off;
    kc_owner_ref_t tmp;

    if (i >= o->nowners)
        return KC_ENOTFOUND;
    for (size_t j = 0; j < i; j++)
        p = owner_fill(p, &tmp);
    owner_fill(p, out ? out : &tmp);
    return 0;
}

int kc_obj_controller_ref(const kc_obj_t *o, kc_owner_ref_t *out)
{
    const char *p = o->data + o->owners_off;
    kc_owner_ref_t r;

    for (size_t j = 0; j < o->nowners; j++) {
        p = owner_fill(p, &r);
        if (r.controller) {
            if (out)
                *out = r;
            return 0;
        }
    }
    return KC_ENOTFOUND;
}

int kc_obj_annotation(const kc_obj_t *o, const char *key, char **out)
{
    char *tmp;
    kc_json_span_t top = { NULL, o->json_len, KC_JSON_OBJECT };
    kc_json_span_t md, ann, v;
    int rc;

    if (!key || !out)
        return -EINVAL;
    *out = NULL;
    if (!(top.p = json_view(o, &tmp)))
        return -ENOMEM;
    if (kc_json_obj_get(top, "metadata", &md) < 0 || md.type != KC_JSON_OBJECT ||
        kc_json_obj_get(md, "annotations", &ann) < 0 || ann.type != KC_JSON_OBJECT ||
        kc_json_obj_get(ann, key, &v) < 0 || v.type != KC_JSON_STRING)
        rc = KC_ENOTFOUND;
    else
        rc = kc_json_str_dup(v, out);
    free(tmp);
    return rc;
}

static bool field_listed(kc_json_span_t key, const char *const *fields)
{
    for (size_t i = 0; fields[i]; i++)
        if (kc_json_str_eq(key, fields[i]) == 1)
            return true;
    return false;
}

int kc_obj_without_fields(kc_obj_t *o, const char *const *fields, kc_obj_t **out)
{
    kc_json_span_t top = { NULL, 0, KC_JSON_OBJECT };
    kc_obj_opts_t oo = KC_OBJ_OPTS_INIT;
    kc_json_iter_t it;
    kc_json_span_t k, v;
    char small[8192], *buf = NULL, *w, *tmp = NULL;
    bool cut = false;
    int rc;

    if (!o || !fields || !out)
        return -EINVAL;
    *out = NULL;
    top.len = o->json_len;
    if (!(top.p = json_view(o, &tmp)))
        return -ENOMEM;
    /* Most objects hold none of the fields: find out before copying. */
    kc_json_iter_init(&it, top);
    while ((rc = kc_json_iter_next(&it, &k, &v)) == 1)
        if (field_listed(k, fields)) {
            cut = true;
            break;
        }
    if (rc < 0)
        goto out;   /* cannot happen: the stored JSON was validated */
    if (!cut) {
        *out = kc_obj_ref(o);
        rc = 0;
        goto out;
    }
    /* Copy the other members, minified as they are: the result stays one
     * validated, minified document, so kc_obj_new need not scan it again. */
    buf = o->json_len <= sizeof(small) ? small : malloc(o->json_len);
    if (!buf) {
        rc = -ENOMEM;
        goto out;
    }
    w = buf;
    *w++ = '{';
    kc_json_iter_init(&it, top);
    while (kc_json_iter_next(&it, &k, &v) == 1) {
        if (field_listed(k, fields))
            continue;
        if (w != buf + 1)
            *w++ = ',';
        size_t n = (size_t)(v.p + v.len - k.p);   /* "key":value */
        memcpy(w, k.p, n);
        w += n;
    }
    *w++ = '}';
    oo.keep_managed_fields = 1;   /* o's own choice was made when it was built */
    oo.max_size = (size_t)INT32_MAX;
    oo.prevalidated = 1;
    rc = kc_obj_new(buf, (size_t)(w - buf), &oo, out, NULL);
out:
    if (buf != small)
        free(buf);   /* NULL before the copy */
    free(tmp);
    return rc;
}

struct cJSON *kc_obj_parse(const kc_obj_t *o)
{
    char *tmp;
    const char *j = json_view(o, &tmp);
    cJSON *t = j ? cJSON_ParseWithLength(j, o->json_len) : NULL;

    free(tmp);
    return t;
}

size_t kc_obj_mem_size(const kc_obj_t *o)
{
    /* glibc keeps one size_t of chunk header in front of each block */
    size_t n = malloc_usable_size((void *)o) + sizeof(size_t);

    if (o->flags & KC__OBJ_PACKED) {
        char *u = atomic_load_explicit(&packed_of(o)->unpacked, memory_order_acquire);
        if (u)
            n += malloc_usable_size(u) + sizeof(size_t);
    }
    return n;
}
