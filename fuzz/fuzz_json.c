/* libFuzzer target: the kc_json scanner (scan, minify, iterate eagerly and
 * lazily, which must agree, unescape)
 * and kc_obj_new with every accessor on what it accepts; the input as a
 * key string through kc_key_parse and back through kc_key_format. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kc_cache.h"
#include "kc_json.h"

static void walk(kc_json_span_t v, int depth)
{
    kc_json_iter_t it;
    kc_json_span_t k, e;

    if (depth > 64)
        return;
    if (v.type == KC_JSON_STRING) {
        char *s = NULL;
        long n = kc_json_str_len(v);
        if (kc_json_str_dup(v, &s) == 0) {
            if (n >= 0 && (size_t)n != strlen(s))
                __builtin_trap(); /* the length and the unescaped value disagree */
            free(s);
        }
        return;
    }
    if (kc_json_iter_init(&it, v) != 0)
        return;
    /* the same members, walked lazily: next_key, then either the value
     * or an open iterator over it whose end is handed back */
    kc_json_iter_t lz;
    kc_json_span_t k2, e2;
    const char *vp;
    int i = 0;
    kc_json_iter_init(&lz, v);
    while (kc_json_iter_next(&it, &k, &e) == 1) {
        if (kc_json_iter_next_key(&lz, &k2, &vp) != 1 || vp != e.p || k2.p != k.p)
            __builtin_trap();
        if ((i++ & 1) && (*vp == '{' || *vp == '[')) {
            kc_json_iter_t in;
            if (kc_json_iter_init_at(&in, vp, v.p + v.len) != 0)
                __builtin_trap();
            while (kc_json_iter_next(&in, NULL, NULL) == 1)
                ;
            if (kc_json_iter_end(&in) != e.p + e.len || kc_json_iter_resume(&lz, e.p + e.len) != 0)
                __builtin_trap();
        } else if (i & 2) {
            if (kc_json_iter_value(&lz, &e2) != 0 || e2.p != e.p || e2.len != e.len)
                __builtin_trap();
        } /* else: the next call skips it */
        if (k.p && v.type == KC_JSON_OBJECT &&
            kc_json_str_eqn(k, k.p + 1, k.len - 2) != (memchr(k.p, '\\', k.len) == NULL))
            __builtin_trap(); /* a key without escapes equals its own body */
        walk(e, depth + 1);
    }
    if (kc_json_iter_next_key(&lz, &k2, &vp) != 0)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    kc_json_span_t sp;
    kc_json_err_t err;
    size_t pos = 0, dlen = 0;
    char *dst = malloc(size + 1);
    kc_obj_t *o = NULL;
    kc_errbuf_t eb;

    if (dst == NULL)
        return 0;
    {
        char *z = strndup(buf, size);
        kc_key_t k1, k2;
        char ks[KC_KEY_STR_MAX];
        for (int rule = 0; z != NULL && rule < 2; rule++) {
            if (kc_key_parse_rule(&k1, z, (kc_name_rule_t)rule) == 0) {
                kc_key_format(&k1, ks, sizeof(ks));
                if (kc_key_parse_rule(&k2, ks, (kc_name_rule_t)rule) != 0 || !kc_key_equal(&k1, &k2))
                    __builtin_trap(); /* a parsed key must survive format + parse */
            }
            (void)kc_name_validate(z, (kc_name_rule_t)rule);
        }
        (void)kc_namespace_validate(z ? z : "");
        free(z);
    }
    {
        /* on an object, the scan that notes metadata validates exactly as
         * kc_json_scan_ex: the same answer, end, whitespace report, or
         * error offset and message */
        size_t lead = 0;
        while (lead < size && (buf[lead] == ' ' || buf[lead] == '\t' || buf[lead] == '\r' ||
                               buf[lead] == '\n'))
            lead++;
        if (lead < size && buf[lead] == '{') {
            size_t p1 = 0, p2 = 0;
            int w1 = 0, w2 = 0;
            kc_json_err_t e1 = { 0, NULL }, e2 = { 0, NULL };
            kc_json_span_t s1, s2;
            kc_json_meta_t m;
            int r1 = kc_json_scan_ex(buf, size, &p1, KC_JSON_MAX_DEPTH, &s1, &w1, &e1);
            int r2 = kc_json_scan_object_meta(buf, size, &p2, KC_JSON_MAX_DEPTH, &s2, &w2, &m, &e2);
            if (r1 != r2)
                __builtin_trap();
            if (r1 == 0 && (p1 != p2 || w1 != w2 || s1.p != s2.p || s1.len != s2.len ||
                            m.obj != s1.p || m.obj_len != s1.len))
                __builtin_trap();
            if (r1 != 0 && (e1.offset != e2.offset || strcmp(e1.what, e2.what) != 0))
                __builtin_trap();
        }
    }
    while (pos < size && kc_json_scan(buf, size, &pos, &sp, &err) == 0)
        walk(sp, 0);
    if (kc_json_parse_doc_minify(buf, size, dst, &dlen, &sp, &err) == 0) {
        kc_json_span_t again;
        /* the minified text is itself a document, of the same length when minified again */
        if (kc_json_parse_doc(dst, dlen, &again, &err) != 0)
            __builtin_trap();
        if (kc_json_minify(again, dst + 0) != dlen)
            __builtin_trap();
        kc_json_span_t v;
        kc_json_obj_get(sp, "metadata", &v);
    }
    free(dst);
    if (kc_obj_new(buf, size, NULL, &o, &eb) == 0) {
        kc_key_t k;
        char ks[KC_KEY_STR_MAX], uid[KC_UID_BUF];
        const char *lk, *lv;
        kc_owner_ref_t ow;
        char *ann = NULL;
        size_t n;

        kc_obj_key(o, &k);
        kc_key_format(&k, ks, sizeof(ks));
        (void)kc_obj_uid(o, uid);
        (void)kc_obj_resource_version(o);
        (void)kc_obj_generation(o);
        (void)kc_obj_deleting(o);
        n = kc_obj_label_count(o);
        for (size_t i = 0; i < n; i++)
            if (kc_obj_label_at(o, i, &lk, &lv) == 0 && kc_obj_label(o, lk) == NULL)
                __builtin_trap();
        n = kc_obj_owner_count(o);
        for (size_t i = 0; i < n; i++)
            kc_obj_owner_at(o, i, &ow);
        kc_obj_controller_ref(o, &ow);
        if (kc_obj_annotation(o, "kcache.io/replicate-to", &ann) == 0)
            free(ann);
        (void)kc_obj_json(o, &n);
        kc_obj_unref(o);
    }
    return 0;
}
