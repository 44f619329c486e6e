/* Unit tests for cache/: keys and name validation, objects (metadata
 * extraction, errors naming the field), every cache call, the
 * namespaced-delete test, indexes, replace_all diffs and the memory bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kc_cache.h"
#include "kc_json.h"

/* ------------------------------------------------------------------ */
/* helpers */

#include "kc_test_fixture.h"
#include "kc_test_obj.h"

/* The fixture with metadata.namespace/name (and resourceVersion if rv)
 * patched, as (unformatted) JSON the caller frees. */
static char *patched_fixture(const char *file, const char *ns, const char *name, const char *rv)
{
    size_t len;
    char *raw = read_fixture(file, &len);
    cJSON *root = cJSON_ParseWithLength(raw, len);
    assert_non_null(root);
    free(raw);
    cJSON *md = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    assert_non_null(md);
    cJSON_ReplaceItemInObjectCaseSensitive(md, "name", cJSON_CreateString(name));
    if (ns)
        cJSON_ReplaceItemInObjectCaseSensitive(md, "namespace", cJSON_CreateString(ns));
    else
        cJSON_DeleteItemFromObjectCaseSensitive(md, "namespace");
    if (rv)
        cJSON_ReplaceItemInObjectCaseSensitive(md, "resourceVersion", cJSON_CreateString(rv));
    char *out = cJSON_PrintUnformatted(root);
    assert_non_null(out);
    cJSON_Delete(root);
    return out;
}

static kc_obj_t *fixture_obj(const char *file, const char *ns, const char *name, const char *rv)
{
    char *j = patched_fixture(file, ns, name, rv);
    kc_obj_t *o = NULL;
    kc_errbuf_t eb = { 0, "" };
    int rc = kc_obj_new(j, strlen(j), NULL, &o, &eb);
    if (rc != 0)
        fail_msg("kc_obj_new(%s): %s: %s", file, kc_err_name(rc), eb.msg);
    cJSON_free(j);
    return o;
}

/* A small object: labels as "k=v,k2=v2" (may be NULL), owner uid optional. */
static kc_obj_t *mkobj(const char *ns, const char *name, const char *rv, const char *labels,
                       const char *owner_uid)
{
    char lab[512] = "", own[256] = "", nsf[128] = "", buf[2048];
    if (labels) {
        size_t w = 0;
        char tmp[256];
        snprintf(tmp, sizeof(tmp), "%s", labels);
        w += (size_t)snprintf(lab + w, sizeof(lab) - w, ",\"labels\":{");
        int first = 1;
        for (char *save = NULL, *kv = strtok_r(tmp, ",", &save); kv;
             kv = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(kv, '=');
            assert_non_null(eq);
            *eq = '\0';
            w += (size_t)snprintf(lab + w, sizeof(lab) - w, "%s\"%s\":\"%s\"", first ? "" : ",",
                                  kv, eq + 1);
            first = 0;
        }
        snprintf(lab + w, sizeof(lab) - w, "}");
    }
    if (owner_uid)
        snprintf(own, sizeof(own),
                 ",\"ownerReferences\":[{\"apiVersion\":\"apps/v1\",\"kind\":\"ReplicaSet\","
                 "\"name\":\"rs\",\"uid\":\"%s\",\"controller\":true}]",
                 owner_uid);
    if (ns)
        snprintf(nsf, sizeof(nsf), ",\"namespace\":\"%s\"", ns);
    snprintf(buf, sizeof(buf),
             "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"%s\"%s,"
             "\"uid\":\"uid-%s\",\"resourceVersion\":\"%s\"%s%s},\"data\":{\"k\":\"v\"}}",
             name, nsf, name, rv, lab, own);
    kc_obj_t *o = NULL;
    kc_errbuf_t eb = { 0, "" };
    int rc = kc_obj_new(buf, strlen(buf), NULL, &o, &eb);
    if (rc != 0)
        fail_msg("mkobj: %s: %s (%s)", kc_err_name(rc), eb.msg, buf);
    return o;
}

static kc_cache_t *new_cache(int namespaced, kc_name_rule_t rule)
{
    kc_cache_opts_t opts = KC_CACHE_OPTS_INIT;
    kc_cache_t *c = NULL;
    opts.namespaced = namespaced;
    opts.name_rule = rule;
    assert_int_equal(kc_cache_new(&opts, &c), 0);
    return c;
}

static kc_key_t key(const char *ns, const char *name)
{
    kc_key_t k;
    int rc = kc_key_init(&k, ns, name);
    if (rc != 0)
        fail_msg("kc_key_init(%s, %s): %s", ns ? ns : "NULL", name, kc_err_name(rc));
    return k;
}

static int list_has(const kc_objlist_t *l, const char *ns, const char *name)
{
    for (size_t i = 0; i < l->len; i++)
        if (strcmp(kc_obj_namespace(l->items[i]), ns) == 0 &&
            strcmp(kc_obj_name(l->items[i]), name) == 0)
            return 1;
    return 0;
}

static void label_index(const kc_obj_t *o, void *ud, kc_index_emit_cb emit, void *ctx)
{
    const char *v = kc_obj_label(o, (const char *)ud);
    if (v)
        emit(ctx, v);
}

static void owner_index(const kc_obj_t *o, void *ud, kc_index_emit_cb emit, void *ctx)
{
    (void)ud;
    for (size_t i = 0; i < kc_obj_owner_count(o); i++) {
        kc_owner_ref_t r;
        assert_int_equal(kc_obj_owner_at(o, i, &r), 0);
        emit(ctx, r.uid);
    }
}

/* every label value, each emitted twice (duplicates must count once) */
static void all_labels_index(const kc_obj_t *o, void *ud, kc_index_emit_cb emit, void *ctx)
{
    (void)ud;
    for (size_t i = 0; i < kc_obj_label_count(o); i++) {
        const char *k, *v;
        assert_int_equal(kc_obj_label_at(o, i, &k, &v), 0);
        emit(ctx, v);
        emit(ctx, v);
    }
}

static size_t query_len(kc_cache_t *c, const char *ix, const char *v)
{
    kc_objlist_t l = KC_OBJLIST_INIT;
    int rc = kc_cache_index_query(c, ix, v, &l);
    if (rc != 0)
        fail_msg("index_query(%s, %s): %s", ix, v, kc_err_name(rc));
    size_t n = l.len;
    kc_objlist_free(&l);
    return n;
}

/* ------------------------------------------------------------------ */
/* keys and names */

static void test_name_validation(void **state)
{
    static const struct { const char *s; int ns_ok, sub_ok, seg_ok; } t[] = {
        { "a", 1, 1, 1 },
        { "team-a", 1, 1, 1 },
        { "0abc9", 1, 1, 1 },
        { "app.config", 0, 1, 1 },
        { "a.b.c-d", 0, 1, 1 },
        { "", 0, 0, 0 },
        { "-a", 0, 0, 1 },
        { "a-", 0, 0, 1 },
        { "A", 0, 0, 1 },
        { "nameValue", 0, 0, 1 },
        { "a..b", 0, 0, 1 },
        { ".a", 0, 0, 1 },
        { "a.", 0, 0, 1 },
        { "a/b", 0, 0, 0 },
        { "a%2f", 0, 0, 0 },
        { ".", 0, 0, 0 },
        { "..", 0, 0, 0 },
        { "...", 0, 0, 1 },
        { "system:controller:foo", 0, 0, 1 },
        { "a b", 0, 0, 1 },
        { "tab\there", 0, 0, 0 },
        { "a_b", 0, 0, 1 },
        { "x-y.z-1", 0, 1, 1 },
    };
    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        int ns = kc_namespace_validate(t[i].s) == 0;
        int sub = kc_name_validate(t[i].s, KC_NAME_DNS1123_SUBDOMAIN) == 0;
        int seg = kc_name_validate(t[i].s, KC_NAME_PATH_SEGMENT) == 0;
        if (ns != t[i].ns_ok || sub != t[i].sub_ok || seg != t[i].seg_ok)
            fail_msg("'%s': ns %d sub %d seg %d, want %d %d %d", t[i].s, ns, sub, seg,
                     t[i].ns_ok, t[i].sub_ok, t[i].seg_ok);
    }
    /* lengths */
    char buf[300];
    memset(buf, 'a', sizeof(buf));
    buf[63] = '\0';
    assert_int_equal(kc_namespace_validate(buf), 0);
    buf[63] = 'a';
    buf[64] = '\0';
    assert_int_equal(kc_namespace_validate(buf), KC_EBADNAME);
    memset(buf, 'a', sizeof(buf));
    buf[253] = '\0';
    assert_int_equal(kc_name_validate(buf, KC_NAME_DNS1123_SUBDOMAIN), 0);
    assert_int_equal(kc_name_validate(buf, KC_NAME_PATH_SEGMENT), 0);
    buf[253] = 'a';
    buf[254] = '\0';
    assert_int_equal(kc_name_validate(buf, KC_NAME_DNS1123_SUBDOMAIN), KC_EBADNAME);
    assert_int_equal(kc_name_validate(buf, KC_NAME_PATH_SEGMENT), KC_EBADNAME);
    assert_int_equal(kc_name_validate(NULL, KC_NAME_PATH_SEGMENT), KC_EBADNAME);
}

static void test_keys(void **state)
{
    kc_key_t k, k2;
    char buf[KC_KEY_STR_MAX];
    (void)state;

    assert_int_equal(kc_key_init(&k, "team-a", "app-config"), 0);
    assert_int_equal(kc_key_format(&k, buf, sizeof(buf)), strlen("team-a/app-config"));
    assert_string_equal(buf, "team-a/app-config");
    assert_int_equal(kc_key_parse(&k2, "team-a/app-config"), 0);
    assert_true(kc_key_equal(&k, &k2));
    assert_int_equal(kc_key_parse(&k2, "team-b/app-config"), 0);
    assert_false(kc_key_equal(&k, &k2));

    assert_int_equal(kc_key_init(&k, NULL, "node-1"), 0);
    assert_string_equal(k.ns, "");
    assert_int_equal(kc_key_init(&k2, "", "node-1"), 0);
    assert_true(kc_key_equal(&k, &k2));
    kc_key_format(&k, buf, sizeof(buf));
    assert_string_equal(buf, "node-1");
    assert_int_equal(kc_key_parse(&k2, "node-1"), 0);
    assert_true(kc_key_equal(&k, &k2));

    /* truncation reports the full length */
    assert_int_equal(kc_key_init(&k, "team-a", "app-config"), 0);
    assert_int_equal(kc_key_format(&k, buf, 5), 17u);
    assert_string_equal(buf, "team");

    static const struct { const char *ns, *name; } bad[] = {
        { "team-a", "a/b" }, { "Team", "x" }, { "team-a", "" }, { "team-a", NULL },
        { "a/b", "x" }, { "team-a", "UPPER" }, { "team-a", "system:foo" }, { "-x", "y" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&k, 'x', sizeof(k));
        assert_int_equal(kc_key_init(&k, bad[i].ns, bad[i].name), KC_EBADNAME);
        assert_string_equal(k.name, ""); /* zeroed */
    }
    static const char *badtext[] = { "a/b/c", "/x", "team-a/", "", "x//y", "Team/x",
                                     "team-a/UP" };
    for (size_t i = 0; i < sizeof(badtext) / sizeof(badtext[0]); i++)
        if (kc_key_parse(&k, badtext[i]) != KC_EBADNAME)
            fail_msg("kc_key_parse('%s') accepted", badtext[i]);

    /* RBAC-style names with the path-segment rule */
    assert_int_equal(kc_key_init_rule(&k, NULL, "system:controller:foo", KC_NAME_PATH_SEGMENT),
                     0);
    assert_int_equal(kc_key_parse_rule(&k2, "system:controller:foo", KC_NAME_PATH_SEGMENT), 0);
    assert_true(kc_key_equal(&k, &k2));
    assert_int_equal(kc_key_parse_rule(&k2, "ns1/a:b", KC_NAME_PATH_SEGMENT), 0);
    assert_string_equal(k2.ns, "ns1");
    assert_string_equal(k2.name, "a:b");
    assert_int_equal(kc_key_init_rule(&k, "ns1", "..", KC_NAME_PATH_SEGMENT), KC_EBADNAME);
    assert_int_equal(kc_key_init_rule(&k, "ns1", "50%", KC_NAME_PATH_SEGMENT), KC_EBADNAME);
}

/* ------------------------------------------------------------------ */
/* objects */

static void test_obj_fixture_metadata(void **state)
{
    (void)state;
    kc_obj_t *o = fixture_obj("core.v1.Pod.json", "team-a", "web-0", NULL);
    char ub[KC_UID_BUF];

    assert_string_equal(kc_obj_namespace(o), "team-a");
    assert_string_equal(kc_obj_name(o), "web-0");
    assert_string_equal(kc_obj_uid(o, ub), "uidValue");
    assert_string_equal(kc_obj_resource_version(o), "resourceVersionValue");
    assert_int_equal(kc_obj_generation(o), 7);
    assert_true(kc_obj_deleting(o));
    assert_int_equal(kc_obj_label_count(o), 1);
    assert_string_equal(kc_obj_label(o, "labelsKey"), "labelsValue");
    assert_null(kc_obj_label(o, "nope"));
    const char *k, *v;
    assert_int_equal(kc_obj_label_at(o, 0, &k, &v), 0);
    assert_string_equal(k, "labelsKey");
    assert_string_equal(v, "labelsValue");
    assert_int_equal(kc_obj_label_at(o, 1, &k, &v), KC_ENOTFOUND);

    assert_int_equal(kc_obj_owner_count(o), 1);
    kc_owner_ref_t r;
    assert_int_equal(kc_obj_owner_at(o, 0, &r), 0);
    assert_string_equal(r.api_version, "apiVersionValue");
    assert_string_equal(r.kind, "kindValue");
    assert_string_equal(r.name, "nameValue");
    assert_string_equal(r.uid, "uidValue");
    assert_true(r.controller);
    assert_true(r.block_owner_deletion);
    assert_int_equal(kc_obj_owner_at(o, 1, &r), KC_ENOTFOUND);
    memset(&r, 0, sizeof(r));
    assert_int_equal(kc_obj_controller_ref(o, &r), 0);
    assert_string_equal(r.kind, "kindValue");

    char *ann = NULL;
    assert_int_equal(kc_obj_annotation(o, "annotationsKey", &ann), 0);
    assert_string_equal(ann, "annotationsValue");
    free(ann);
    assert_int_equal(kc_obj_annotation(o, "missing", &ann), KC_ENOTFOUND);
    assert_null(ann);

    kc_key_t kk;
    kc_obj_key(o, &kk);
    assert_string_equal(kk.ns, "team-a");
    assert_string_equal(kk.name, "web-0");

    /* stored JSON: minified, valid, no managedFields, spec kept */
    size_t len;
    const char *j = kc_obj_json(o, &len);
    assert_int_equal(strlen(j), len);
    kc_json_span_t top;
    kc_json_err_t e;
    assert_int_equal(kc_json_parse_doc(j, len, &top, &e), 0);
    assert_null(strstr(j, ": "));
    cJSON *tree = kc_obj_parse(o);
    assert_non_null(tree);
    cJSON *md = cJSON_GetObjectItemCaseSensitive(tree, "metadata");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(md, "name")->valuestring, "web-0");
    assert_non_null(cJSON_GetObjectItemCaseSensitive(tree, "spec"));
    assert_non_null(cJSON_GetObjectItemCaseSensitive(md, "finalizers"));
    assert_null(cJSON_GetObjectItemCaseSensitive(md, "managedFields"));
    cJSON_Delete(tree);
    assert_true(kc_obj_mem_size(o) >= len);

    /* ref/unref */
    assert_ptr_equal(kc_obj_ref(o), o);
    kc_obj_unref(o);
    kc_obj_unref(o);
    kc_obj_unref(NULL);
    assert_null(kc_obj_ref(NULL));

    /* keep_managed_fields */
    char *raw = patched_fixture("core.v1.ConfigMap.json", "team-a", "cm", NULL);
    kc_obj_opts_t opts = KC_OBJ_OPTS_INIT;
    opts.keep_managed_fields = 1;
    assert_int_equal(kc_obj_new(raw, strlen(raw), &opts, &o, NULL), 0);
    assert_non_null(strstr(kc_obj_json(o, NULL), "\"managedFields\":[{"));
    kc_obj_unref(o);
    opts.max_size = 100;
    kc_errbuf_t eb;
    assert_int_equal(kc_obj_new(raw, strlen(raw), &opts, &o, &eb), KC_ETOOBIG);
    assert_null(o);
    cJSON_free(raw);
}

/* A uid in the API server's form is kept in 16 bytes and spelled out in the
 * caller's buffer; anything else is kept as it came.  A generation is kept
 * only when set.  Every other field reads back the same around them. */
static kc_obj_t *uid_obj(const char *uid_json, const char *extra)
{
    char j[2048];
    kc_obj_t *o = NULL;
    kc_errbuf_t eb = { 0, "" };

    snprintf(j, sizeof(j),
             "{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"cm\",\"namespace\":\"ns-a\","
             "\"uid\":%s,\"resourceVersion\":\"77\",\"labels\":{\"app\":\"web\",\"tier\":"
             "\"db\"}%s},\"data\":{\"k\":\"v\"}}",
             uid_json, extra);
    if (kc_obj_new(j, strlen(j), NULL, &o, &eb) != 0)
        fail_msg("kc_obj_new: %s", eb.msg);
    return o;
}

static void check_around_uid(const kc_obj_t *o, long long gen)
{
    assert_string_equal(kc_obj_namespace(o), "ns-a");
    assert_string_equal(kc_obj_name(o), "cm");
    assert_string_equal(kc_obj_resource_version(o), "77");
    assert_int_equal(kc_obj_generation(o), gen);
    assert_int_equal(kc_obj_label_count(o), 2);
    assert_string_equal(kc_obj_label(o, "app"), "web");
    assert_string_equal(kc_obj_label(o, "tier"), "db");
}

static void test_obj_uid_forms(void **state)
{
    (void)state;
    static const char *canon[] = {
        "b36117b1-31fe-499e-9596-ea309359a70b", "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff", "0123abcd-4567-89ef-fedc-ba9876543210",
    };
    /* kept as text, exactly */
    static const char *text[] = {
        "B36117B1-31FE-499E-9596-EA309359A70B",   /* uppercase */
        "b36117b1-31fe-499e-9596-ea309359a70",    /* 35 characters */
        "b36117b1-31fe-499e-9596-ea309359a70bc",  /* 37 */
        "b36117b131fe-499e-9596-ea309359a70b0",   /* a hyphen moved */
        "b36117b1-31fe-499e-9596-ea309359a70g",   /* not hex */
        "b36117b1 31fe 499e 9596 ea309359a70b",
        "uidValue", "x",
    };
    char ub[KC_UID_BUF], q[64];
    const char *u;

    for (size_t i = 0; i < sizeof(canon) / sizeof(*canon); i++) {
        snprintf(q, sizeof(q), "\"%s\"", canon[i]);
        kc_obj_t *o = uid_obj(q, "");
        memset(ub, '#', sizeof(ub));
        u = kc_obj_uid(o, ub);
        assert_ptr_equal(u, ub);          /* spelled out: it was kept in 16 bytes */
        assert_string_equal(u, canon[i]);
        check_around_uid(o, 0);
        /* the same object with the uid in capitals keeps 37 bytes */
        int letters = 0;
        for (size_t k = 0; k < sizeof(q); k++) {
            letters |= islower((unsigned char)q[k]);
            q[k] = (char)toupper((unsigned char)q[k]);
        }
        if (letters) {
            kc_obj_t *t = uid_obj(q, "");
            assert_true(kc_obj_mem_size(t) >= kc_obj_mem_size(o) + 16);
            kc_obj_unref(t);
        }
        kc_obj_unref(o);
    }
    for (size_t i = 0; i < sizeof(text) / sizeof(*text); i++) {
        snprintf(q, sizeof(q), "\"%s\"", text[i]);
        kc_obj_t *o = uid_obj(q, "");
        u = kc_obj_uid(o, ub);
        assert_true(u != ub);
        assert_string_equal(u, text[i]);
        check_around_uid(o, 0);
        kc_obj_unref(o);
    }
    /* escaped (not the plain copy): decoded and packed all the same */
    kc_obj_t *o = uid_obj("\"\\u0062\\u003361\\u00317b1-31fe-499e-9596-ea309359a70b\"", "");
    assert_string_equal(kc_obj_uid(o, ub), canon[0]);
    kc_obj_unref(o);
    o = uid_obj("null", "");
    assert_string_equal(kc_obj_uid(o, ub), "");
    kc_obj_unref(o);

    /* generations, with a packed uid before them and labels and owners after */
    static const long long gens[] = { 1, 7, -3, 9223372036854775807LL, -9223372036854775807LL - 1 };
    for (size_t i = 0; i < sizeof(gens) / sizeof(*gens); i++) {
        char extra[512];
        kc_owner_ref_t ref;
        snprintf(extra, sizeof(extra),
                 ",\"generation\":%lld,\"ownerReferences\":[{\"apiVersion\":\"v1\","
                 "\"kind\":\"Node\",\"name\":\"n1\",\"uid\":\"%s\",\"controller\":true}]",
                 gens[i], canon[3]);
        snprintf(q, sizeof(q), "\"%s\"", canon[i % 4]);
        o = uid_obj(q, extra);
        assert_string_equal(kc_obj_uid(o, ub), canon[i % 4]);
        check_around_uid(o, gens[i]);
        assert_int_equal(kc_obj_controller_ref(o, &ref), 0);
        assert_string_equal(ref.uid, canon[3]);
        assert_string_equal(ref.name, "n1");
        kc_obj_unref(o);
    }
}

static void test_obj_escapes_and_cluster(void **state)
{
    (void)state;
    const char *j = "{ \"metadata\" : { \"name\" : \"n\\u0031\", \"labels\": {\"a\\/b\": "
                    "\"x\\\"y \\u00e9\"}, \"uid\": null, \"ownerReferences\": null, "
                    "\"generation\": -3 },\n \"kind\":\"Node\" }";
    kc_obj_t *o = NULL;
    kc_errbuf_t eb;
    char ub[KC_UID_BUF];
    assert_int_equal(kc_obj_new(j, strlen(j), NULL, &o, &eb), 0);
    assert_string_equal(kc_obj_name(o), "n1");
    assert_string_equal(kc_obj_namespace(o), "");
    assert_string_equal(kc_obj_uid(o, ub), "");
    assert_string_equal(kc_obj_resource_version(o), "");
    assert_int_equal(kc_obj_generation(o), -3);
    assert_false(kc_obj_deleting(o));
    assert_string_equal(kc_obj_label(o, "a/b"), "x\"y \xc3\xa9");
    assert_int_equal(kc_obj_owner_count(o), 0);
    assert_int_equal(kc_obj_controller_ref(o, NULL), KC_ENOTFOUND);
    assert_string_equal(kc_obj_json(o, NULL),
                        "{\"metadata\":{\"name\":\"n\\u0031\",\"labels\":{\"a\\/b\":"
                        "\"x\\\"y \\u00e9\"},\"uid\":null,\"ownerReferences\":null,"
                        "\"generation\":-3},\"kind\":\"Node\"}");
    kc_obj_unref(o);
}

/* managedFields dropped wherever it sits in metadata */
static void test_obj_managed_fields_positions(void **state)
{
    static const struct { const char *in, *want; } t[] = {
        { "{\"metadata\":{\"managedFields\":[{\"a\":1}]},\"x\":{\"name\":\"n\"}}", NULL },
        { "{\"metadata\":{\"managedFields\":[{\"a\":1}],\"name\":\"n\"}}",
          "{\"metadata\":{\"name\":\"n\"}}" },
        { "{\"metadata\":{\"name\":\"n\", \"managedFields\" : [ ] }, \"k\":1}",
          "{\"metadata\":{\"name\":\"n\"},\"k\":1}" },
        { "{\"metadata\":{\"name\":\"n\",\"managedFields\":null,\"uid\":\"u\"}}",
          "{\"metadata\":{\"name\":\"n\",\"uid\":\"u\"}}" },
        { "{\"a\":{\"managedFields\":1},\"metadata\":{\"name\":\"n\"}}",
          "{\"a\":{\"managedFields\":1},\"metadata\":{\"name\":\"n\"}}" },
    };
    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        kc_obj_t *o = NULL;
        kc_errbuf_t eb = { 0, "" };
        int rc = kc_obj_new(t[i].in, strlen(t[i].in), NULL, &o, &eb);
        if (!t[i].want) {
            assert_int_equal(rc, KC_EPARSE); /* no metadata.name */
            continue;
        }
        if (rc != 0)
            fail_msg("[%zu]: %s", i, eb.msg);
        assert_string_equal(kc_obj_json(o, NULL), t[i].want);
        kc_obj_unref(o);
    }
    /* a nested "metadata" elsewhere is not the object's: nothing dropped */
    const char *only = "{\"metadata\":{\"name\":\"n\"},\"spec\":{\"metadata\":1}}";
    kc_obj_t *o = NULL;
    assert_int_equal(kc_obj_new(only, strlen(only), NULL, &o, NULL), 0);
    assert_string_equal(kc_obj_json(o, NULL), only);
    kc_obj_unref(o);
}

/* kc_obj_opts_t.prevalidated: minified fixtures (every field set, owners,
 * managedFields, escapes) give the same object with and without the
 * validating pass, keeping or dropping managedFields; anything but an
 * object still gets the ordinary error. */
static void test_obj_prevalidated(void **state)
{
    static const char *const files[] = {
        "core.v1.Pod.json", "core.v1.ConfigMap.json", "apps.v1.Deployment.json",
        "core.v1.Secret.json", "core.v1.Service.json", "core.v1.Event.json",
        "coordination.k8s.io.v1.Lease.json",
    };
    (void)state;

    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        char *j = patched_fixture(files[f], "team-a", "x\\u0031", "5");
        size_t len = strlen(j);
        for (int keep = 0; keep < 2; keep++) {
            kc_obj_opts_t full = KC_OBJ_OPTS_INIT, pre = KC_OBJ_OPTS_INIT;
            kc_obj_t *a = NULL, *b = NULL;
            kc_errbuf_t eb = { 0, "" };
            full.keep_managed_fields = pre.keep_managed_fields = keep;
            pre.prevalidated = 1;
            if (kc_obj_new(j, len, &full, &a, &eb) != 0)
                fail_msg("%s: %s", files[f], eb.msg);
            if (kc_obj_new(j, len, &pre, &b, &eb) != 0)
                fail_msg("%s (prevalidated): %s", files[f], eb.msg);
            assert_obj_same(a, b);
            assert_string_equal(kc_obj_name(b), "x\\u0031");
            assert_string_equal(kc_obj_resource_version(b), "5");
            kc_obj_unref(a);
            kc_obj_unref(b);
        }
        cJSON_free(j);
    }

    /* labels given twice: the last object wins, as without the flag */
    const char *dup = "{\"metadata\":{\"name\":\"d\",\"labels\":{\"a\":\"1\",\"b\":\"2\"},"
                      "\"labels\":{\"c\":\"3\"},\"labels\":null}}";
    for (int pv = 0; pv < 2; pv++) {
        kc_obj_opts_t o = KC_OBJ_OPTS_INIT;
        kc_obj_t *x = NULL;
        o.prevalidated = pv;
        assert_int_equal(kc_obj_new(dup, strlen(dup), &o, &x, NULL), 0);
        assert_int_equal(kc_obj_label_count(x), 1);
        assert_string_equal(kc_obj_label(x, "c"), "3");
        assert_null(kc_obj_label(x, "a"));
        kc_obj_unref(x);
    }

    /* not an object: the same error either way */
    kc_obj_opts_t pre = KC_OBJ_OPTS_INIT;
    kc_errbuf_t e1 = { 0, "" }, e2 = { 0, "" };
    kc_obj_t *x = NULL;
    pre.prevalidated = 1;
    assert_int_equal(kc_obj_new("[1]", 3, NULL, &x, &e1), KC_EPARSE);
    assert_int_equal(kc_obj_new("[1]", 3, &pre, &x, &e2), KC_EPARSE);
    assert_string_equal(e1.msg, e2.msg);
    /* field errors still name the field */
    const char *badlab = "{\"metadata\":{\"name\":\"d\",\"labels\":{\"a\":1}}}";
    assert_int_equal(kc_obj_new(badlab, strlen(badlab), &pre, &x, &e2), KC_EPARSE);
    assert_non_null(strstr(e2.msg, "metadata.labels[\"a\"]: expected string, got number"));
    const char *badmd = "{\"kind\":\"X\",\"metadata\":[]}";
    assert_int_equal(kc_obj_new(badmd, strlen(badmd), &pre, &x, &e2), KC_EPARSE);
    assert_non_null(strstr(e2.msg, "metadata: expected object, got array"));
    assert_null(x);
}

/* kc_obj_opts_t.meta: json minified, scanned by kc_json_scan_object_meta,
 * then built prevalidated with and without the notes: the same object, or
 * the same error and message.  Returns meta.usable. */
static int check_notes_same(const char *json, size_t len, int keep)
{
    char *min = malloc(len + 1);
    size_t mlen, pos = 0;
    kc_json_span_t v;
    kc_json_err_t je;
    kc_json_meta_t meta;
    int ws = -1;

    assert_non_null(min);
    if (kc_json_parse_doc_minify(json, len, min, &mlen, NULL, &je) != 0)
        fail_msg("not JSON at %zu: %s: %.80s", je.offset, je.what, json);
    assert_int_equal(kc_json_scan_object_meta(min, mlen, &pos, KC_JSON_MAX_DEPTH, &v, &ws,
                                              &meta, &je), 0);
    assert_int_equal(pos, mlen);
    assert_int_equal(ws, 0);
    kc_obj_opts_t plain = KC_OBJ_OPTS_INIT, noted = KC_OBJ_OPTS_INIT;
    plain.prevalidated = noted.prevalidated = 1;
    plain.keep_managed_fields = noted.keep_managed_fields = keep;
    plain.pack_min = noted.pack_min = 256;   /* and packed the same */
    noted.meta = &meta;
    kc_obj_t *a = NULL, *b = NULL;
    kc_errbuf_t ea = { 0, "" }, eb = { 0, "" };
    int ra = kc_obj_new(min, mlen, &plain, &a, &ea);
    int rb = kc_obj_new(min, mlen, &noted, &b, &eb);
    if (ra != rb || strcmp(ea.msg, eb.msg) != 0)
        fail_msg("without notes %d '%s', with %d '%s': %.100s", ra, ea.msg, rb, eb.msg, min);
    if (ra == 0) {
        assert_obj_same(a, b);
        assert_int_equal(kc_obj_packed(a), kc_obj_packed(b));
        assert_int_equal(kc_obj_json_len(a), kc_obj_json_len(b));
        for (size_t i = 0; i < kc_obj_owner_count(a); i++) {
            kc_owner_ref_t oa, ob;
            kc_obj_owner_at(a, i, &oa);
            kc_obj_owner_at(b, i, &ob);
            assert_string_equal(oa.api_version, ob.api_version);
            assert_string_equal(oa.name, ob.name);
            assert_int_equal(oa.block_owner_deletion, ob.block_owner_deletion);
        }
    } else {
        assert_null(a);
        assert_null(b);
    }
    /* notes about other bytes are not used: a copy builds the same */
    if (ra == 0) {
        char *copy = malloc(mlen);
        kc_obj_t *c = NULL;
        assert_non_null(copy);
        memcpy(copy, min, mlen);
        assert_int_equal(kc_obj_new(copy, mlen, &noted, &c, NULL), 0);
        assert_obj_same(a, c);
        kc_obj_unref(c);
        free(copy);
    }
    kc_obj_unref(a);
    kc_obj_unref(b);
    free(min);
    return meta.usable;
}

/* The decoder's notes on metadata (kc_obj_opts_t.meta) build exactly the
 * object kc_obj_new's own walk builds, for every fixture and for the odd
 * cases (escapes, duplicates, nulls, wrong types, many labels), which must
 * fail with the same message. */
static void test_obj_meta_notes(void **state)
{
    static const char *const files[] = {
        "core.v1.Pod.json", "core.v1.ConfigMap.json", "apps.v1.Deployment.json",
        "core.v1.Secret.json", "core.v1.Service.json", "core.v1.Event.json",
        "coordination.k8s.io.v1.Lease.json", "core.v1.Namespace.json",
        "core.v1.Status.json", "core.v1.WatchEvent.json",
    };
    (void)state;

    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        size_t len;
        char *raw = read_fixture(files[f], &len);
        for (int keep = 0; keep < 2; keep++)
            check_notes_same(raw, len, keep);
        free(raw);
        if (f >= 8)
            continue;   /* Status and WatchEvent: errors, checked above */
        char *j = patched_fixture(files[f], "team-a", "x\\u0031", "5");
        for (int keep = 0; keep < 2; keep++)
            assert_int_equal(check_notes_same(j, strlen(j), keep), 1);
        cJSON_free(j);
    }

    static const struct { const char *md; int usable; } t[] = {
        { "\"name\":\"a\"", 1 },
        { "\"name\":\"a\",\"namespace\":\"ns\",\"uid\":\"u\",\"resourceVersion\":\"9\","
          "\"generation\":12,\"deletionTimestamp\":\"2024-01-01T00:00:00Z\","
          "\"labels\":{\"a\":\"1\",\"b\":\"\"},\"ownerReferences\":[{\"apiVersion\":\"v1\","
          "\"kind\":\"K\",\"name\":\"o\",\"uid\":\"ou\",\"controller\":true,"
          "\"blockOwnerDeletion\":false},{\"kind\":\"L\",\"controller\":null}],"
          "\"managedFields\":[{\"manager\":\"m\"}],\"annotations\":{\"x\":\"y\"}", 1 },
        { "\"managedFields\":[],\"name\":\"a\"", 1 },
        { "\"name\":\"a\",\"managedFields\":[]", 1 },
        { "\"name\":\"a\",\"managedFields\":[1],\"managedFields\":[2]", 1 },
        { "\"name\":\"a\\u0062\",\"namespace\":\"n\\u0073\",\"uid\":\"\\\"\",\"resourceVersion\":\"\\n\","
          "\"labels\":{\"k\\t\":\"v\\\\\",\"\\u00e9\":\"\\ud83d\\ude00\"}", 1 },
        { "\"name\":\"a\",\"namespace\":null,\"uid\":null,\"resourceVersion\":null,"
          "\"generation\":null,\"deletionTimestamp\":null,\"labels\":null,"
          "\"ownerReferences\":null", 1 },
        { "\"name\":\"a\",\"generation\":-9223372036854775808", 1 },
        { "\"name\":\"a\",\"labels\":{}", 1 },
        { "\"name\":\"a\",\"ownerReferences\":[]", 1 },
        /* errors */
        { "\"namespace\":\"ns\"", 1 },
        { "\"name\":null", 1 },
        { "\"name\":5", 1 },
        { "\"name\":\"\"", 1 },
        { "\"name\":\"a/b\"", 1 },
        { "\"name\":\"a\\u0000\"", 1 },
        { "\"name\":\"a\",\"namespace\":\"UPPER\"", 1 },
        { "\"name\":\"a\",\"namespace\":[]", 1 },
        { "\"name\":\"a\",\"uid\":{}", 1 },
        { "\"name\":\"a\",\"resourceVersion\":1", 1 },
        { "\"name\":\"a\",\"generation\":\"1\"", 1 },
        { "\"name\":\"a\",\"generation\":1.5", 1 },
        { "\"name\":\"a\",\"generation\":99999999999999999999", 1 },
        { "\"name\":\"a\",\"deletionTimestamp\":5", 1 },
        { "\"name\":\"a\",\"labels\":[]", 1 },
        { "\"name\":\"a\",\"labels\":{\"a\":1}", 0 },
        { "\"name\":\"a\",\"labels\":{\"a\":\"b\\u0000\"}", 1 },
        { "\"name\":\"a\",\"ownerReferences\":{}", 1 },
        { "\"name\":\"a\",\"ownerReferences\":[1]", 1 },
        { "\"name\":\"a\",\"ownerReferences\":[{\"uid\":5}]", 1 },
        { "\"name\":\"a\",\"ownerReferences\":[{\"controller\":\"yes\"}]", 1 },
        { "\"uid\":5,\"name\":7", 1 },
        /* not described by the notes: kc_obj_new's own walk */
        { "\"name\":\"a\",\"name\":\"b\"", 0 },
        { "\"name\":5,\"name\":\"b\"", 0 },
        { "\"name\":\"a\",\"labels\":{\"a\":\"1\"},\"labels\":{\"b\":\"2\"}", 0 },
        { "\"name\":\"a\",\"labels\":null,\"labels\":{\"b\":\"2\"}", 0 },
        { "\"n\\u0061me\":\"a\"", 0 },
        { "\"name\":\"a\",\"gener\\u0061tion\":\"x\"", 0 },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char doc[1024];
        int n = snprintf(doc, sizeof(doc), "{\"kind\":\"X\",\"metadata\":{%s},\"spec\":{}}", t[i].md);
        assert_true(n > 0 && (size_t)n < sizeof(doc));
        for (int keep = 0; keep < 2; keep++) {
            int u = check_notes_same(doc, (size_t)n, keep);
            if (u != t[i].usable)
                fail_msg("%s: usable %d, want %d", doc, u, t[i].usable);
        }
    }
    /* metadata missing, not an object, or first not an object */
    static const char *const odd[] = {
        "{\"kind\":\"X\"}", "{\"metadata\":[]}", "{\"metadata\":null,\"metadata\":{\"name\":\"a\"}}",
        "{\"metadata\":{\"name\":\"a\"},\"metadata\":{\"name\":\"b\"}}", "{}",
    };
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++)
        check_notes_same(odd[i], strlen(odd[i]), 0);
    /* 32 labels through the notes, 33 through the walk, the same objects */
    for (int nl = 31; nl <= 34; nl++) {
        char doc[2048];
        size_t n = (size_t)snprintf(doc, sizeof(doc), "{\"metadata\":{\"name\":\"a\",\"labels\":{");
        for (int l = 0; l < nl; l++)
            n += (size_t)snprintf(doc + n, sizeof(doc) - n, "%s\"k%d\":\"v%s%d\"", l ? "," : "", l,
                                  l % 3 ? "" : "\\n", l);
        n += (size_t)snprintf(doc + n, sizeof(doc) - n, "}}}");
        assert_int_equal(check_notes_same(doc, n, 0), nl <= 32);
    }
}

/* kc_obj_without_fields: top-level members only, wherever they are; the
 * metadata and the accessors unchanged; no copy when nothing is cut. */
static void test_obj_without_fields(void **state)
{
    static const char *const payload[] = { "data", "binaryData", "stringData", NULL };
    static const struct { const char *in, *want; } t[] = {
        { "{\"data\":{\"k\":\"v\"},\"metadata\":{\"name\":\"n\"}}",
          "{\"metadata\":{\"name\":\"n\"}}" },
        { "{\"kind\":\"ConfigMap\",\"data\":{\"k\":\"v\"},\"metadata\":{\"name\":\"n\"},"
          "\"binaryData\":{\"b\":\"AA==\"}}",
          "{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"n\"}}" },
        { "{\"metadata\":{\"name\":\"n\"},\"type\":\"Opaque\",\"data\":null}",
          "{\"metadata\":{\"name\":\"n\"},\"type\":\"Opaque\"}" },
        /* an escaped key is the same key */
        { "{\"metadata\":{\"name\":\"n\"},\"d\\u0061ta\":[1,{\"data\":2}],\"z\":1}",
          "{\"metadata\":{\"name\":\"n\"},\"z\":1}" },
    };
    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        kc_obj_t *o = NULL, *c = NULL;
        assert_int_equal(kc_obj_new(t[i].in, strlen(t[i].in), NULL, &o, NULL), 0);
        assert_int_equal(kc_obj_without_fields(o, payload, &c), 0);
        assert_ptr_not_equal(c, o);
        assert_string_equal(kc_obj_json(c, NULL), t[i].want);
        assert_string_equal(kc_obj_name(c), "n");
        kc_obj_unref(o);
        kc_obj_unref(c);
    }

    /* a fixture with everything set: same metadata, labels, owners */
    char *j = patched_fixture("core.v1.Secret.json", "team-a", "s1", "42");
    kc_obj_t *o = NULL, *c = NULL, *again = NULL;
    assert_int_equal(kc_obj_new(j, strlen(j), NULL, &o, NULL), 0);
    assert_non_null(strstr(kc_obj_json(o, NULL), "\"data\":{"));
    assert_int_equal(kc_obj_without_fields(o, payload, &c), 0);
    assert_null(strstr(kc_obj_json(c, NULL), "\"data\":{"));
    assert_string_equal(kc_obj_namespace(c), "team-a");
    assert_string_equal(kc_obj_resource_version(c), "42");
    char uc[KC_UID_BUF], uo[KC_UID_BUF];
    assert_string_equal(kc_obj_uid(c, uc), kc_obj_uid(o, uo));
    assert_int_equal(kc_obj_label_count(c), kc_obj_label_count(o));
    assert_int_equal(kc_obj_owner_count(c), kc_obj_owner_count(o));
    assert_true(kc_obj_mem_size(c) < kc_obj_mem_size(o));
    {
        cJSON *t0 = kc_obj_parse(o), *t1 = kc_obj_parse(c);
        assert_non_null(t1);
        for (int f = 0; payload[f]; f++)
            cJSON_DeleteItemFromObjectCaseSensitive(t0, payload[f]);
        assert_true(cJSON_Compare(t0, t1, 1));
        cJSON_Delete(t0);
        cJSON_Delete(t1);
    }
    /* nothing left to cut: the same object, one more reference */
    assert_int_equal(kc_obj_without_fields(c, payload, &again), 0);
    assert_ptr_equal(again, c);
    kc_obj_unref(again);
    kc_obj_unref(c);
    kc_obj_unref(o);
    cJSON_free(j);

    assert_int_equal(kc_obj_without_fields(NULL, payload, &c), -EINVAL);
}

/* kc_obj_opts_t.pack_min: a large object is kept LZ4-compressed and reads
 * back byte for byte; small or incompressible ones are stored as they are;
 * the first kc_obj_json unpacks once, for every thread at once. */
typedef struct unpack_race {
    kc_obj_t *o;
    pthread_barrier_t *go;
    const char *seen;
} unpack_race_t;

static void *unpack_racer(void *arg)
{
    unpack_race_t *r = arg;

    pthread_barrier_wait(r->go);
    r->seen = kc_obj_json(r->o, NULL);
    return NULL;
}

static void test_obj_packed(void **state)
{
    (void)state;
    char *j = patched_fixture("core.v1.Pod.json", "team-a", "web-1", "7");
    size_t len = strlen(j);
    kc_obj_opts_t plain = KC_OBJ_OPTS_INIT, pre = KC_OBJ_OPTS_INIT;
    kc_obj_t *p = NULL, *u = NULL, *q = NULL;
    char *a1 = NULL, *a2 = NULL;

    plain.pack_min = 0;
    assert_int_equal(kc_obj_new(j, len, NULL, &p, NULL), 0);   /* the default packs */
    assert_int_equal(kc_obj_new(j, len, &plain, &u, NULL), 0);
    assert_true(kc_obj_packed(p));
    assert_false(kc_obj_packed(u));
    assert_int_equal(kc_obj_json_len(p), kc_obj_json_len(u));
    /* the real Pod (every field set) packs to well under half */
    size_t packed_size = kc_obj_mem_size(p);
    assert_true(packed_size * 2 < kc_obj_mem_size(u));
    /* metadata, annotations and cJSON trees without unpacking */
    assert_int_equal(kc_obj_annotation(p, "annotationsKey", &a1), 0);
    assert_int_equal(kc_obj_annotation(u, "annotationsKey", &a2), 0);
    assert_string_equal(a1, a2);
    {
        cJSON *tp = kc_obj_parse(p), *tu = kc_obj_parse(u);
        assert_non_null(tp);
        assert_true(cJSON_Compare(tp, tu, 1));
        cJSON_Delete(tp);
        cJSON_Delete(tu);
    }
    {
        static const char *const spec[] = { "spec", NULL };
        kc_obj_t *wp = NULL, *wu = NULL;
        assert_int_equal(kc_obj_without_fields(p, spec, &wp), 0);
        assert_int_equal(kc_obj_without_fields(u, spec, &wu), 0);
        assert_obj_same(wp, wu);
        kc_obj_unref(wp);
        kc_obj_unref(wu);
    }
    assert_int_equal(kc_obj_mem_size(p), packed_size);   /* still packed only */
    /* kc_obj_json: the same bytes, unpacked once and kept (and counted) */
    assert_obj_same(p, u);
    const char *first = kc_obj_json(p, NULL);
    assert_ptr_equal(kc_obj_json(p, NULL), first);
    assert_true(kc_obj_mem_size(p) > packed_size + kc_obj_json_len(p));

    /* prevalidated bytes pack the same */
    char *min = malloc(len);
    size_t mlen = 0;
    kc_json_span_t doc;
    assert_non_null(min);
    assert_int_equal(kc_json_parse_doc_minify(j, len, min, &mlen, &doc, NULL), 0);
    pre.prevalidated = 1;
    assert_int_equal(kc_obj_new(min, mlen, &pre, &q, NULL), 0);
    assert_true(kc_obj_packed(q));
    assert_obj_same(q, u);
    kc_obj_unref(q);

    /* every thread asking at once gets the one copy */
    {
        enum { N = 8 };
        pthread_t t[N];
        pthread_barrier_t go;
        unpack_race_t r[N];
        assert_int_equal(kc_obj_new(min, mlen, &pre, &q, NULL), 0);
        pthread_barrier_init(&go, NULL, N);
        for (int i = 0; i < N; i++) {
            r[i] = (unpack_race_t){ q, &go, NULL };
            assert_int_equal(pthread_create(&t[i], NULL, unpack_racer, &r[i]), 0);
        }
        for (int i = 0; i < N; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&go);
        for (int i = 0; i < N; i++) {
            assert_non_null(r[i].seen);
            assert_ptr_equal(r[i].seen, r[0].seen);
        }
        assert_string_equal(r[0].seen, kc_obj_json(u, NULL));
        kc_obj_unref(q);
    }
    free(min);

    /* below pack_min, or not worth it: stored as it is */
    const char *small = "{\"metadata\":{\"name\":\"s\"},\"data\":{\"k\":\"vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv\"}}";
    kc_obj_opts_t tiny = KC_OBJ_OPTS_INIT;
    tiny.pack_min = 16;
    assert_int_equal(kc_obj_new(small, strlen(small), NULL, &q, NULL), 0);
    assert_false(kc_obj_packed(q));
    kc_obj_unref(q);
    assert_int_equal(kc_obj_new(small, strlen(small), &tiny, &q, NULL), 0);
    assert_true(kc_obj_packed(q));   /* the repeated v's pack */
    assert_string_equal(kc_obj_json(q, NULL), small);
    kc_obj_unref(q);
    {
        /* 4 KiB of pseudo-random base64: LZ4 saves nothing worth keeping */
        char *rnd = malloc(4200);
        uint64_t x = 88172645463325252ull;
        int w = snprintf(rnd, 4200, "{\"metadata\":{\"name\":\"r\"},\"data\":{\"k\":\"");
        for (int i = 0; i < 4096; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            rnd[w++] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[x & 63];
        }
        w += snprintf(rnd + w, 4200 - (size_t)w, "\"}}");
        assert_int_equal(kc_obj_new(rnd, (size_t)w, NULL, &q, NULL), 0);
        assert_false(kc_obj_packed(q));
        assert_memory_equal(kc_obj_json(q, NULL), rnd, (size_t)w);
        kc_obj_unref(q);
        free(rnd);
    }

    free(a1);
    free(a2);
    kc_obj_unref(p);
    kc_obj_unref(u);
    cJSON_free(j);
}

static void test_obj_errors(void **state)
{
    static const struct { const char *json; int rc; const char *msg; } t[] = {
        { "", KC_EPARSE, "offset 0" },
        { "{\"metadata\":{\"name\":\"a\"}", KC_EPARSE, "offset 24" },
        { "[1]", KC_EPARSE, "expected a JSON object, got array" },
        { "{}", KC_EPARSE, "metadata: missing" },
        { "{\"metadata\":[]}", KC_EPARSE, "metadata: expected object, got array" },
        { "{\"metadata\":{}}", KC_EPARSE, "metadata.name: missing" },
        { "{\"metadata\":{\"name\":5}}", KC_EPARSE, "metadata.name: expected string, got number" },
        { "{\"metadata\":{\"name\":\"a\",\"namespace\":true}}", KC_EPARSE,
          "metadata.namespace: expected string, got true" },
        { "{\"metadata\":{\"name\":\"a\",\"uid\":{}}}", KC_EPARSE,
          "metadata.uid: expected string, got object" },
        { "{\"metadata\":{\"name\":\"a\",\"resourceVersion\":12}}", KC_EPARSE,
          "metadata.resourceVersion: expected string, got number" },
        { "{\"metadata\":{\"name\":\"a\",\"generation\":\"7\"}}", KC_EPARSE,
          "metadata.generation: expected integer, got string" },
        { "{\"metadata\":{\"name\":\"a\",\"generation\":1.5}}", KC_EPARSE,
          "metadata.generation: not a 64-bit integer" },
        { "{\"metadata\":{\"name\":\"a\",\"generation\":99999999999999999999}}", KC_EPARSE,
          "metadata.generation" },
        { "{\"metadata\":{\"name\":\"a\",\"labels\":[]}}", KC_EPARSE,
          "metadata.labels: expected object, got array" },
        { "{\"metadata\":{\"name\":\"a\",\"labels\":{\"app\":1}}}", KC_EPARSE,
          "metadata.labels[\"app\"]: expected string, got number" },
        { "{\"metadata\":{\"name\":\"a\",\"ownerReferences\":{}}}", KC_EPARSE,
          "metadata.ownerReferences: expected array, got object" },
        { "{\"metadata\":{\"name\":\"a\",\"ownerReferences\":[1]}}", KC_EPARSE,
          "metadata.ownerReferences[0]: expected object, got number" },
        { "{\"metadata\":{\"name\":\"a\",\"ownerReferences\":[{},{\"uid\":7}]}}", KC_EPARSE,
          "metadata.ownerReferences[1].uid: expected string, got number" },
        { "{\"metadata\":{\"name\":\"a\",\"ownerReferences\":[{\"controller\":\"yes\"}]}}",
          KC_EPARSE, "metadata.ownerReferences[0].controller: expected boolean, got string" },
        { "{\"metadata\":{\"name\":\"a\",\"deletionTimestamp\":1}}", KC_EPARSE,
          "metadata.deletionTimestamp: expected string" },
        { "{\"metadata\":{\"name\":\"a/b\"}}", KC_EBADNAME, "metadata.name" },
        { "{\"metadata\":{\"name\":\"\"}}", KC_EBADNAME, "metadata.name" },
        { "{\"metadata\":{\"name\":\"..\"}}", KC_EBADNAME, "metadata.name" },
        { "{\"metadata\":{\"name\":\"a\",\"namespace\":\"Bad_NS\"}}", KC_EBADNAME,
          "metadata.namespace" },
        { "{\"metadata\":{\"name\":\"a\\u0000b\"}}", KC_EBADNAME, "metadata.name" },
        { "{\"metadata\":{\"name\":\"a\",\"labels\":{\"k\":\"\\u0000\"}}}", KC_EPARSE,
          "metadata" },
    };
    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        kc_obj_t *o = (kc_obj_t *)&o;
        kc_errbuf_t eb = { 0, "" };
        int rc = kc_obj_new(t[i].json, strlen(t[i].json), NULL, &o, &eb);
        if (rc != t[i].rc || !strstr(eb.msg, t[i].msg))
            fail_msg("[%zu] %s: got %s '%s', want %s '%s'", i, t[i].json, kc_err_name(rc),
                     eb.msg, kc_err_name(t[i].rc), t[i].msg);
        assert_int_equal(eb.code, rc);
        assert_null(o);
    }
}

/* ------------------------------------------------------------------ */
/* the cache */

static void test_cache_basic(void **state)
{
    (void)state;
    kc_cache_t *c = new_cache(1, KC_NAME_DNS1123_SUBDOMAIN);
    kc_obj_t *a1 = mkobj("ns1", "a", "1", NULL, NULL);
    kc_obj_t *a2 = mkobj("ns1", "a", "2", NULL, NULL);
    kc_obj_t *b = mkobj("ns2", "a", "1", NULL, NULL);
    kc_obj_t *got = NULL, *old = NULL;
    kc_key_t ka = key("ns1", "a"), kb = key("ns2", "a"), kx = key("ns1", "x");

    assert_int_equal(kc_cache_len(c), 0);
    assert_int_equal(kc_cache_get(c, &ka, &got), KC_ENOTFOUND);
    assert_null(got);
    assert_int_equal(kc_cache_add(c, a1), 0);
    assert_int_equal(kc_cache_add(c, a2), KC_EEXISTS);
    assert_int_equal(kc_cache_add(c, b), 0);
    assert_int_equal(kc_cache_len(c), 2);

    assert_int_equal(kc_cache_get(c, &ka, &got), 0);
    assert_ptr_equal(got, a1);
    kc_obj_unref(got);
    assert_int_equal(kc_cache_get(c, &kb, &got), 0);
    assert_ptr_equal(got, b);
    kc_obj_unref(got);
    assert_int_equal(kc_cache_get_nsname(c, "ns2", "a", &got), 0);
    assert_ptr_equal(got, b);
    kc_obj_unref(got);
    assert_int_equal(kc_cache_get_nsname(c, "ns3", "a", &got), KC_ENOTFOUND);
    assert_null(got);
    assert_int_equal(kc_cache_get_nsname(c, NULL, "a", &got), KC_EBADNAME);
    assert_int_equal(kc_cache_get_nsname(c, "", "a", &got), KC_EBADNAME);

    /* replace hands back the old object */
    assert_int_equal(kc_cache_replace(c, a2, &old), 0);
    assert_ptr_equal(old, a1);
    kc_obj_unref(old);
    assert_int_equal(kc_cache_get(c, &ka, &got), 0);
    assert_string_equal(kc_obj_resource_version(got), "2");
    kc_obj_unref(got);
    /* replace of an absent key inserts, *old NULL */
    kc_obj_t *x = mkobj("ns1", "x", "1", NULL, NULL);
    assert_int_equal(kc_cache_replace(c, x, &old), 0);
    assert_null(old);
    assert_int_equal(kc_cache_len(c), 3);
    /* replace with the very same object keeps exactly one cache reference */
    assert_int_equal(kc_cache_replace(c, x, NULL), 0);
    assert_int_equal(kc_cache_replace(c, x, &old), 0);
    assert_ptr_equal(old, x);
    kc_obj_unref(old);

    /* take hands back the cache's reference */
    assert_int_equal(kc_cache_take(c, &kx, &old), 0);
    assert_ptr_equal(old, x);
    kc_obj_unref(old);
    assert_int_equal(kc_cache_take(c, &kx, &old), KC_ENOTFOUND);
    assert_null(old);
    assert_int_equal(kc_cache_delete(c, &kx), KC_ENOTFOUND);

    kc_objlist_t l = KC_OBJLIST_INIT;
    assert_int_equal(kc_cache_list(c, &l), 0);
    assert_int_equal(l.len, 2);
    assert_true(list_has(&l, "ns1", "a") && list_has(&l, "ns2", "a"));
    kc_objlist_free(&l);
    assert_int_equal(l.len, 0);
    assert_null(l.items);
    kc_objlist_free(NULL);

    assert_int_equal(kc_cache_list_ns(c, "ns1", &l), 0);
    assert_int_equal(l.len, 1);
    assert_ptr_equal(l.items[0], a2);
    kc_objlist_free(&l);
    assert_int_equal(kc_cache_list_ns(c, "nothing", &l), 0);
    assert_int_equal(l.len, 0);
    assert_int_equal(kc_cache_list_ns(c, "Bad/ns", &l), KC_EBADNAME);
    assert_int_equal(kc_cache_index_query(c, "nope", "x", &l), KC_ENOTFOUND);

    assert_int_equal(kc_cache_delete(c, &ka), 0);
    assert_int_equal(kc_cache_delete(c, &ka), KC_ENOTFOUND);
    assert_int_equal(kc_cache_len(c), 1);
    assert_true(kc_cache_mem_usage(c) > kc_cache_mem_overhead(c));

    /* many keys: growth and shrink of the tables */
    char name[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof(name), "obj-%d", i);
        kc_obj_t *o = mkobj(i % 2 ? "odd" : "even", name, "1", NULL, NULL);
        assert_int_equal(kc_cache_add(c, o), 0);
        kc_obj_unref(o);
    }
    assert_int_equal(kc_cache_len(c), 2001);
    assert_int_equal(query_len(c, "namespace", "odd"), 1000);
    for (int i = 0; i < 2000; i += 2) {
        snprintf(name, sizeof(name), "obj-%d", i);
        kc_key_t k = key("even", name);
        assert_int_equal(kc_cache_delete(c, &k), 0);
    }
    for (int i = 1; i < 2000; i += 2) {
        snprintf(name, sizeof(name), "obj-%d", i);
        kc_key_t k = key("odd", name);
        assert_int_equal(kc_cache_get(c, &k, &got), 0);
        assert_string_equal(kc_obj_name(got), name);
        kc_obj_unref(got);
    }
    assert_int_equal(query_len(c, "namespace", "even"), 0);
    assert_int_equal(kc_cache_len(c), 1001);

    kc_obj_unref(a1);
    kc_obj_unref(a2);
    kc_obj_unref(b);
    kc_obj_unref(x);
    kc_cache_free(c);
    kc_cache_free(NULL);
}

static void test_cache_opts(void **state)
{
    kc_cache_opts_t o = KC_CACHE_OPTS_INIT;
    kc_cache_t *c = NULL;
    (void)state;
    assert_int_equal(o.shards, 64);
    assert_int_equal(o.namespaced, 1);
    o.shards = 3;
    assert_int_equal(kc_cache_new(&o, &c), -EINVAL);
    o.shards = 0;
    assert_int_equal(kc_cache_new(&o, &c), -EINVAL);
    o.shards = 1;
    assert_int_equal(kc_cache_new(&o, &c), 0);
    kc_cache_free(c);
    assert_int_equal(kc_cache_new(NULL, &c), 0);
    kc_cache_free(c);
}

/* Scope rules: a namespaced cache never takes a bare name, a cluster cache
 * never takes a namespace; name rules per cache. */
static void test_cache_scope(void **state)
{
    (void)state;
    kc_cache_t *nsd = new_cache(1, KC_NAME_DNS1123_SUBDOMAIN);
    kc_cache_t *cl = new_cache(0, KC_NAME_DNS1123_SUBDOMAIN);
    kc_cache_t *rbac = new_cache(0, KC_NAME_PATH_SEGMENT);
    kc_obj_t *bare = mkobj(NULL, "node-1", "1", NULL, NULL);
    kc_obj_t *nso = mkobj("team-a", "cm", "1", NULL, NULL);
    kc_obj_t *colon = mkobj(NULL, "system:controller:foo", "1", NULL, NULL);
    kc_obj_t *got = NULL;
    kc_key_t bare_key = key(NULL, "cm"), ns_key = key("team-a", "node-1");
    kc_objlist_t l = KC_OBJLIST_INIT;

    assert_int_equal(kc_cache_add(nsd, bare), KC_EBADNAME);
    assert_int_equal(kc_cache_replace(nsd, bare, NULL), KC_EBADNAME);
    assert_int_equal(kc_cache_add(nsd, nso), 0);
    assert_int_equal(kc_cache_get(nsd, &bare_key, &got), KC_EBADNAME);
    assert_int_equal(kc_cache_delete(nsd, &bare_key), KC_EBADNAME);
    assert_int_equal(kc_cache_take(nsd, &bare_key, &got), KC_EBADNAME);
    assert_null(got);
    assert_int_equal(kc_cache_len(nsd), 1);

    assert_int_equal(kc_cache_add(cl, nso), KC_EBADNAME);
    assert_int_equal(kc_cache_add(cl, bare), 0);
    assert_int_equal(kc_cache_get(cl, &ns_key, &got), KC_EBADNAME);
    kc_key_t nk = key(NULL, "node-1");
    assert_int_equal(kc_cache_get(cl, &nk, &got), 0);
    kc_obj_unref(got);
    assert_int_equal(kc_cache_get_nsname(cl, NULL, "node-1", &got), 0);
    kc_obj_unref(got);
    assert_int_equal(kc_cache_get_nsname(cl, "team-a", "node-1", &got), KC_EBADNAME);
    assert_int_equal(kc_cache_list_ns(cl, "team-a", &l), -EINVAL);
    assert_int_equal(kc_cache_index_query(cl, "namespace", "", &l), KC_ENOTFOUND);

    /* RBAC-style names need the path-segment rule */
    assert_int_equal(kc_cache_add(cl, colon), KC_EBADNAME);
    assert_int_equal(kc_cache_add(rbac, colon), 0);
    kc_key_t ck;
    assert_int_equal(kc_key_init_rule(&ck, NULL, "system:controller:foo", KC_NAME_PATH_SEGMENT),
                     0);
    assert_int_equal(kc_cache_get(rbac, &ck, &got), 0);
    assert_ptr_equal(got, colon);
    kc_obj_unref(got);

    kc_obj_unref(bare);
    kc_obj_unref(nso);
    kc_obj_unref(colon);
    kc_cache_free(nsd);
    kc_cache_free(cl);
    kc_cache_free(rbac);
}

/* The test this cache exists for. */
static void test_namespaced_delete(void **state)
{
    (void)state;
    kc_cache_t *c = new_cache(1, KC_NAME_DNS1123_SUBDOMAIN);
    assert_int_equal(kc_cache_add_index(c, "app", label_index, "app"), 0);
    assert_int_equal(kc_cache_add_index(c, "owner", owner_index, NULL), 0);
    kc_obj_t *a = fixture_obj("core.v1.ConfigMap.json", "team-a", "app-config", "1");
    kc_obj_t *b = fixture_obj("core.v1.ConfigMap.json", "team-b", "app-config", "1");
    kc_obj_t *a_small = mkobj("team-a", "other", "1", "app=web", "owner-1");
    kc_obj_t *b_small = mkobj("team-b", "other", "1", "app=web", "owner-1");
    assert_int_equal(kc_cache_add(c, a), 0);
    assert_int_equal(kc_cache_add(c, b), 0);
    assert_int_equal(kc_cache_add(c, a_small), 0);
    assert_int_equal(kc_cache_add(c, b_small), 0);

    kc_key_t ka = key("team-a", "app-config"), kb = key("team-b", "app-config");
    kc_obj_t *held = NULL, *got = NULL;
    assert_int_equal(kc_cache_get(c, &ka, &held), 0); /* a reader holds team-a's */
    kc_obj_unref(a);                                   /* only cache + reader now */

    assert_int_equal(query_len(c, "namespace", "team-a"), 2);
    assert_int_equal(query_len(c, "owner", "uidValue"), 2);
    assert_int_equal(kc_cache_delete(c, &ka), 0);

    /* team-b's stays: by key, in every index, in listings */
    assert_int_equal(kc_cache_get(c, &kb, &got), 0);
    assert_ptr_equal(got, b);
    kc_obj_unref(got);
    assert_int_equal(kc_cache_get(c, &ka, &got), KC_ENOTFOUND);
    kc_objlist_t l = KC_OBJLIST_INIT;
    assert_int_equal(kc_cache_list_ns(c, "team-b", &l), 0);
    assert_int_equal(l.len, 2);
    assert_true(list_has(&l, "team-b", "app-config"));
    kc_objlist_free(&l);
    assert_int_equal(kc_cache_list_ns(c, "team-a", &l), 0);
    assert_int_equal(l.len, 1);
    assert_false(list_has(&l, "team-a", "app-config"));
    kc_objlist_free(&l);
    assert_int_equal(kc_cache_index_query(c, "owner", "uidValue", &l), 0);
    assert_int_equal(l.len, 1);
    assert_true(list_has(&l, "team-b", "app-config"));
    kc_objlist_free(&l);
    assert_int_equal(kc_cache_index_query(c, "namespace", "team-b", &l), 0);
    assert_int_equal(l.len, 2);
    kc_objlist_free(&l);
    assert_int_equal(query_len(c, "app", "web"), 2);
    assert_int_equal(kc_cache_list(c, &l), 0);
    assert_int_equal(l.len, 3);
    assert_false(list_has(&l, "team-a", "app-config"));
    kc_objlist_free(&l);

    /* the reader still reads team-a's object safely (ASan checks this) */
    assert_string_equal(kc_obj_namespace(held), "team-a");
    assert_string_equal(kc_obj_name(held), "app-config");
    size_t len;
    const char *j = kc_obj_json(held, &len);
    assert_int_equal(strlen(j), len);
    cJSON *t = kc_obj_parse(held);
    assert_non_null(t);
    cJSON_Delete(t);
    kc_obj_unref(held);

    kc_obj_unref(b);
    kc_obj_unref(a_small);
    kc_obj_unref(b_small);
    kc_cache_free(c);
}

static void test_indexes(void **state)
{
    (void)state;
    kc_cache_t *c = new_cache(1, KC_NAME_DNS1123_SUBDOMAIN);
    assert_int_equal(kc_cache_add_index(c, "namespace", label_index, "x"), -EEXIST);
    assert_int_equal(kc_cache_add_index(c, "labels", all_labels_index, NULL), 0);
    assert_int_equal(kc_cache_add_index(c, "labels", all_labels_index, NULL), -EEXIST);
    assert_int_equal(kc_cache_add_index(c, "app", label_index, "app"), 0);

    kc_obj_t *o1 = mkobj("n1", "o1", "1", "app=web,tier=web", NULL);
    kc_obj_t *o2 = mkobj("n2", "o2", "1", "app=db", NULL);
    kc_obj_t *o3 = mkobj("n1", "o3", "1", NULL, NULL);
    assert_int_equal(kc_cache_add(c, o1), 0);
    assert_int_equal(kc_cache_add_index(c, "late", label_index, "x"), KC_EBUSY);
    assert_int_equal(kc_cache_add(c, o2), 0);
    assert_int_equal(kc_cache_add(c, o3), 0);

    assert_int_equal(query_len(c, "labels", "web"), 1); /* emitted 4x, counted once */
    assert_int_equal(query_len(c, "labels", "db"), 1);
    assert_int_equal(query_len(c, "app", "web"), 1);
    assert_int_equal(query_len(c, "app", "none"), 0);
    assert_int_equal(query_len(c, "namespace", "n1"), 2);

    /* an update moves the object between index values */
    kc_obj_t *o1b = mkobj("n1", "o1", "2", "app=db", NULL);
    assert_int_equal(kc_cache_replace(c, o1b, NULL), 0);
    assert_int_equal(query_len(c, "app", "web"), 0);
    assert_int_equal(query_len(c, "app", "db"), 2);
    assert_int_equal(query_len(c, "labels", "web"), 0);
    assert_int_equal(query_len(c, "namespace", "n1"), 2);
    kc_objlist_t l = KC_OBJLIST_INIT;
    assert_int_equal(kc_cache_index_query(c, "app", "db", &l), 0);
    for (size_t i = 0; i < l.len; i++)
        assert_true(l.items[i] == o1b || l.items[i] == o2);
    kc_objlist_free(&l);

    kc_key_t k2 = key("n2", "o2");
    assert_int_equal(kc_cache_delete(c, &k2), 0);
    assert_int_equal(query_len(c, "app", "db"), 1);
    assert_int_equal(query_len(c, "namespace", "n2"), 0);

    /* an index value over the limit fails the write and changes nothing */
    char big[KC_CACHE_INDEX_VALUE_MAX + 2];
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    char json[KC_CACHE_INDEX_VALUE_MAX + 200];
    snprintf(json, sizeof(json),
             "{\"metadata\":{\"name\":\"big\",\"namespace\":\"n1\",\"labels\":{\"app\":\"%s\"}}}",
             big);
    kc_obj_t *ob = NULL;
    assert_int_equal(kc_obj_new(json, strlen(json), NULL, &ob, NULL), 0);
    assert_int_equal(kc_cache_add(c, ob), KC_ETOOBIG);
    assert_int_equal(kc_cache_len(c), 2);
    assert_int_equal(query_len(c, "namespace", "n1"), 2);
    kc_obj_unref(ob);

    kc_obj_unref(o1);
    kc_obj_unref(o1b);
    kc_obj_unref(o2);
    kc_obj_unref(o3);
    kc_cache_free(c);
}

typedef struct diff_rec {
    int n;
    struct { kc_diff_t kind; char key[KC_KEY_STR_MAX]; char old_rv[16], new_rv[16]; } e[32];
    kc_cache_t *c;
    size_t len_seen;
} diff_rec_t;

static void record_diff(void *ud, kc_diff_t kind, kc_obj_t *old, kc_obj_t *nw)
{
    diff_rec_t *r = ud;
    kc_obj_t *any = nw ? nw : old;
    kc_key_t k;
    assert_true(r->n < 32);
    kc_obj_key(any, &k);
    r->e[r->n].kind = kind;
    kc_key_format(&k, r->e[r->n].key, sizeof(r->e[r->n].key));
    snprintf(r->e[r->n].old_rv, 16, "%s", old ? kc_obj_resource_version(old) : "-");
    snprintf(r->e[r->n].new_rv, 16, "%s", nw ? kc_obj_resource_version(nw) : "-");
    r->n++;
    /* no lock is held: calling back into the cache works */
    r->len_seen = kc_cache_len(r->c);
}

static int find_diff(const diff_rec_t *r, kc_diff_t kind, const char *k, const char *orv,
                     const char *nrv)
{
    for (int i = 0; i < r->n; i++)
        if (r->e[i].kind == kind && strcmp(r->e[i].key, k) == 0 &&
            strcmp(r->e[i].old_rv, orv) == 0 && strcmp(r->e[i].new_rv, nrv) == 0)
            return 1;
    return 0;
}

static void rv_index(const kc_obj_t *o, void *ud, kc_index_emit_cb emit, void *ctx)
{
    (void)ud;
    emit(ctx, kc_obj_resource_version(o));
}

/* Replacing stored objects (the fast path without custom indexes, and the
 * general one with one) keeps the namespace index exact: every namespace
 * lists exactly the current objects, many times over, in several sets
 * sizes (one member, small, grown and shrunk). */
static void test_replace_keeps_ns_index(void **state)
{
    (void)state;
    for (int custom = 0; custom < 2; custom++) {
        kc_cache_t *c = NULL;
        kc_obj_t *cur[3][40];
        memset(cur, 0, sizeof(cur));
        assert_int_equal(kc_cache_new(NULL, &c), 0);
        if (custom)
            assert_int_equal(kc_cache_add_index(c, "by-rv", rv_index, NULL), 0);
        size_t per_ns[3] = { 1, 5, 40 };
        for (int round = 0; round < 6; round++) {
            for (int n = 0; n < 3; n++) {
                char ns[16];
                snprintf(ns, sizeof(ns), "ns-%d", n);
                for (size_t i = 0; i < per_ns[n]; i++) {
                    char name[32], rv[32];
                    snprintf(name, sizeof(name), "o-%zu", i);
                    snprintf(rv, sizeof(rv), "%d", round);
                    kc_obj_t *o = mkobj(ns, name, rv, NULL, NULL), *old = NULL;
                    assert_int_equal(kc_cache_replace(c, o, &old), 0);
                    assert_ptr_equal(old, cur[n][i]); /* NULL: was absent */
                    kc_obj_unref(old);
                    cur[n][i] = o;
                    kc_obj_unref(o); /* the cache keeps its own */
                }
            }
            for (int n = 0; n < 3; n++) {
                char ns[16];
                kc_objlist_t l = KC_OBJLIST_INIT;
                snprintf(ns, sizeof(ns), "ns-%d", n);
                assert_int_equal(kc_cache_list_ns(c, ns, &l), 0);
                assert_int_equal(l.len, per_ns[n]);
                for (size_t k = 0; k < l.len; k++) {
                    int seen = 0;
                    for (size_t i = 0; i < per_ns[n]; i++)
                        seen += l.items[k] == cur[n][i];
                    assert_int_equal(seen, 1);
                }
                kc_objlist_free(&l);
            }
            if (custom) {
                char rv[16];
                kc_objlist_t l = KC_OBJLIST_INIT;
                snprintf(rv, sizeof(rv), "%d", round);
                assert_int_equal(kc_cache_index_query(c, "by-rv", rv, &l), 0);
                assert_int_equal(l.len, per_ns[0] + per_ns[1] + per_ns[2]);
                kc_objlist_free(&l);
            }
            /* shrink the big namespace by deleting half, then grow it back */
            if (round == 2) {
                for (size_t i = 20; i < 40; i++) {
                    kc_key_t k;
                    kc_obj_key(cur[2][i], &k);
                    assert_int_equal(kc_cache_delete(c, &k), 0);
                    cur[2][i] = NULL;
                }
                per_ns[2] = 20;
            } else if (round == 3) {
                per_ns[2] = 40;
            }
        }
        kc_cache_free(c);
    }
}

static void test_replace_all(void **state)
{
    (void)state;
    kc_cache_t *c = new_cache(1, KC_NAME_DNS1123_SUBDOMAIN);
    assert_int_equal(kc_cache_add_index(c, "app", label_index, "app"), 0);
    kc_obj_t *gone = mkobj("a", "gone", "1", "app=x", NULL);
    kc_obj_t *same = mkobj("a", "same", "5", "app=x", NULL);
    kc_obj_t *chg = mkobj("b", "chg", "1", "app=x", NULL);
    kc_obj_t *chg2 = mkobj("b", "chg", "2", "app=y", NULL);
    kc_obj_t *same_copy = mkobj("a", "same", "5", "app=x", NULL);
    kc_obj_t *added = mkobj("c", "added", "1", NULL, NULL);
    kc_obj_t *dup1 = mkobj("c", "dup", "1", NULL, NULL);
    kc_obj_t *dup2 = mkobj("c", "dup", "2", NULL, NULL);
    assert_int_equal(kc_cache_add(c, gone), 0);
    assert_int_equal(kc_cache_add(c, same), 0);
    assert_int_equal(kc_cache_add(c, chg), 0);

    diff_rec_t r;
    memset(&r, 0, sizeof(r));
    r.c = c;
    kc_obj_t *next[] = { same_copy, chg2, added, dup1, dup2 };
    assert_int_equal(kc_cache_replace_all(c, next, 5, record_diff, &r), 0);
    assert_int_equal(r.n, 4);
    assert_true(find_diff(&r, KC_DIFF_DELETED, "a/gone", "1", "-"));
    assert_true(find_diff(&r, KC_DIFF_UPDATED, "b/chg", "1", "2"));
    assert_true(find_diff(&r, KC_DIFF_ADDED, "c/added", "-", "1"));
    assert_true(find_diff(&r, KC_DIFF_ADDED, "c/dup", "-", "2")); /* later wins */
    assert_int_equal(r.len_seen, 4);
    assert_int_equal(kc_cache_len(c), 4);

    kc_obj_t *got = NULL;
    kc_key_t k = key("c", "dup");
    assert_int_equal(kc_cache_get(c, &k, &got), 0);
    assert_ptr_equal(got, dup2);
    kc_obj_unref(got);
    k = key("a", "gone");
    assert_int_equal(kc_cache_get(c, &k, &got), KC_ENOTFOUND);
    k = key("a", "same");
    assert_int_equal(kc_cache_get(c, &k, &got), 0);
    assert_ptr_equal(got, same_copy); /* the new object is stored even if unchanged */
    kc_obj_unref(got);
    assert_int_equal(query_len(c, "app", "x"), 1);
    assert_int_equal(query_len(c, "app", "y"), 1);
    assert_int_equal(query_len(c, "namespace", "a"), 1);
    assert_int_equal(query_len(c, "namespace", "c"), 2);

    /* a bad object: error, nothing changes, no callback */
    kc_obj_t *bare = mkobj(NULL, "bare", "1", NULL, NULL);
    kc_obj_t *bad[] = { added, bare };
    memset(&r, 0, sizeof(r));
    r.c = c;
    assert_int_equal(kc_cache_replace_all(c, bad, 2, record_diff, &r), KC_EBADNAME);
    assert_int_equal(r.n, 0);
    assert_int_equal(kc_cache_len(c), 4);

    /* replace with nothing: everything deleted */
    memset(&r, 0, sizeof(r));
    r.c = c;
    assert_int_equal(kc_cache_replace_all(c, NULL, 0, record_diff, &r), 0);
    assert_int_equal(r.n, 4);
    assert_int_equal(kc_cache_len(c), 0);
    assert_int_equal(query_len(c, "app", "x"), 0);
    /* and without a callback */
    assert_int_equal(kc_cache_replace_all(c, next, 5, NULL, NULL), 0);
    assert_int_equal(kc_cache_len(c), 4);

    kc_obj_t *all[] = { gone, same, chg, chg2, same_copy, added, dup1, dup2, bare };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        kc_obj_unref(all[i]);
    kc_cache_free(c);
}

/* Memory per object, key and indexes included, at most 1.25x the fixture's
 * minified JSON. */
static void check_memory(const char *file, size_t nobj, int keep_mf, double *ratio_out)
{
    size_t len;
    char *raw = read_fixture(file, &len);
    kc_json_span_t top;
    kc_json_err_t e;
    assert_int_equal(kc_json_parse_doc(raw, len, &top, &e), 0);
    char *min = malloc(len);
    assert_non_null(min);
    size_t minlen = kc_json_minify(top, min);
    free(min);
    free(raw);

    kc_cache_t *c = new_cache(1, KC_NAME_DNS1123_SUBDOMAIN);
    char *pj = patched_fixture(file, "team-a", "x", NULL);
    size_t stored = 0;
    for (size_t i = 0; i < nobj; i++) {
        char ns[32], name[64];
        snprintf(ns, sizeof(ns), "team-%zu", i % 10);
        snprintf(name, sizeof(name), "app-config-%06zu", i);
        /* patch via text for speed: the patched fixture has "namespace":"team-a"
         * and "name":"x" in metadata (first occurrences) */
        char *j = malloc(strlen(pj) + 64);
        assert_non_null(j);
        const char *p = strstr(pj, "\"name\":\"x\"");
        assert_non_null(p);
        size_t w = (size_t)(p - pj);
        memcpy(j, pj, w);
        w += (size_t)sprintf(j + w, "\"name\":\"%s\"", name);
        p += strlen("\"name\":\"x\"");
        strcpy(j + w, p);
        char *q = strstr(j, "\"namespace\":\"team-a\"");
        assert_non_null(q);
        char *tail = strdup(q + strlen("\"namespace\":\"team-a\""));
        sprintf(q, "\"namespace\":\"%s\"%s", ns, tail);
        free(tail);
        kc_obj_opts_t opts = KC_OBJ_OPTS_INIT;
        opts.keep_managed_fields = keep_mf;
        kc_obj_t *o = NULL;
        assert_int_equal(kc_obj_new(j, strlen(j), &opts, &o, NULL), 0);
        free(j);
        size_t sl;
        kc_obj_json(o, &sl);
        stored = sl;
        assert_int_equal(kc_cache_add(c, o), 0);
        kc_obj_unref(o);
    }
    cJSON_free(pj);
    double per = (double)kc_cache_mem_usage(c) / (double)nobj;
    double ratio = per / (double)minlen;
    print_message("  %s%s: minified %zu B, stored %zu B, %.0f B/object in cache "
                  "(overhead %.0f B) = %.3fx minified, %.3fx stored\n",
                  file, keep_mf ? " (managedFields kept)" : "", minlen, stored, per,
                  (double)kc_cache_mem_overhead(c) / (double)nobj, ratio, per / (double)stored);
    if (ratio_out)
        *ratio_out = ratio;
    kc_cache_free(c);
}

static void test_memory_bound(void **state)
{
    double r;
    (void)state;
    check_memory("core.v1.ConfigMap.json", 5000, 0, &r);
    assert_true(r <= 1.25);
    check_memory("core.v1.Pod.json", 500, 0, &r);
    assert_true(r <= 1.25);
    check_memory("core.v1.ConfigMap.json", 5000, 1, &r);
    assert_true(r <= 1.25);
    check_memory("core.v1.Pod.json", 200, 1, &r);
    assert_true(r <= 1.25);
}


/* ------------------------------------------------------------------ */
/* allocation failures: fail_at / live (tests/support/kc_test_alloc.h). */
#include "kc_test_alloc.h"

#ifndef NO_MALLOC_HOOK
static void arm(long n)
{
    fail_at = n;
}

static void disarm(void)
{
    fail_at = 0;
}

/* A cache with two custom indexes and 6 objects in one shard (the next
 * insert grows the table). */
static kc_cache_t *oom_cache(void)
{
    kc_cache_opts_t o = KC_CACHE_OPTS_INIT;
    kc_cache_t *c = NULL;
    o.shards = 1;
    assert_int_equal(kc_cache_new(&o, &c), 0);
    assert_int_equal(kc_cache_add_index(c, "app", label_index, "app"), 0);
    assert_int_equal(kc_cache_add_index(c, "owner", owner_index, NULL), 0);
    for (int i = 0; i < 6; i++) {
        char name[16];
        snprintf(name, sizeof(name), "o%d", i);
        kc_obj_t *x = mkobj(i % 2 ? "n1" : "n2", name, "1", "app=web", "own-1");
        assert_int_equal(kc_cache_add(c, x), 0);
        kc_obj_unref(x);
    }
    return c;
}

static void check_oom_cache_unchanged(kc_cache_t *c)
{
    assert_int_equal(kc_cache_len(c), 6);
    assert_int_equal(query_len(c, "app", "web"), 6);
    assert_int_equal(query_len(c, "app", "db"), 0);
    assert_int_equal(query_len(c, "owner", "own-1"), 6);
    assert_int_equal(query_len(c, "owner", "own-2"), 0);
    assert_int_equal(query_len(c, "namespace", "n1"), 3);
    assert_int_equal(query_len(c, "namespace", "n3"), 0);
    kc_obj_t *got = NULL;
    assert_int_equal(kc_cache_get_nsname(c, "n3", "new", &got), KC_ENOTFOUND);
    assert_int_equal(kc_cache_get_nsname(c, "n1", "o1", &got), 0);
    assert_string_equal(kc_obj_label(got, "app"), "web");
    kc_obj_unref(got);
}

static void diff_count(void *ud, kc_diff_t kind, kc_obj_t *old, kc_obj_t *nw)
{
    (void)kind;
    (void)old;
    (void)nw;
    (*(int *)ud)++;
}

static void test_alloc_failures(void **state)
{
    (void)state;
    char *pod = patched_fixture("core.v1.Pod.json", "team-a", "p", NULL);
    size_t podlen = strlen(pod);
    int fails;

    /* kc_obj_new */
    for (long n = 1, done = 0; !done; n++) {
        long base = live;
        kc_obj_t *o = NULL;
        arm(n);
        int rc = kc_obj_new(pod, podlen, NULL, &o, NULL);
        disarm();
        if (rc == 0) {
            kc_obj_unref(o);
            done = 1;
        } else {
            assert_int_equal(rc, -ENOMEM);
            assert_null(o);
        }
        assert_int_equal(live, base);
    }

    /* add (table growth, index nodes, sets, index value blobs) */
    fails = 0;
    for (long n = 1;; n++) {
        kc_cache_t *c = oom_cache();
        kc_obj_t *x = mkobj("n3", "new", "1", "app=db", "own-2");
        long base = live;
        arm(n);
        int rc = kc_cache_add(c, x);
        disarm();
        if (rc == 0) {
            assert_int_equal(kc_cache_len(c), 7);
            assert_int_equal(query_len(c, "app", "db"), 1);
            assert_int_equal(query_len(c, "namespace", "n3"), 1);
            kc_obj_unref(x);
            kc_cache_free(c);
            break;
        }
        fails++;
        assert_int_equal(rc, -ENOMEM);
        assert_int_equal(live, base); /* nothing leaked, nothing kept */
        check_oom_cache_unchanged(c);
        kc_obj_unref(x);
        kc_cache_free(c);
    }
    assert_true(fails >= 3);

    /* replace moving the object to new index values */
    fails = 0;
    for (long n = 1;; n++) {
        kc_cache_t *c = oom_cache();
        kc_obj_t *x = mkobj("n1", "o1", "2", "app=db", "own-2"), *old = NULL;
        long base = live;
        arm(n);
        int rc = kc_cache_replace(c, x, &old);
        disarm();
        if (rc == 0) {
            assert_non_null(old);
            kc_obj_unref(old);
            assert_int_equal(query_len(c, "app", "db"), 1);
            assert_int_equal(query_len(c, "app", "web"), 5);
            kc_obj_unref(x);
            kc_cache_free(c);
            break;
        }
        fails++;
        assert_int_equal(rc, -ENOMEM);
        assert_int_equal(live, base);
        assert_null(old);
        check_oom_cache_unchanged(c);
        kc_obj_unref(x);
        kc_cache_free(c);
    }
    assert_true(fails >= 2);

    /* delete never fails for want of memory (shrinking is best effort) */
    {
        kc_cache_t *c = oom_cache();
        for (int i = 0; i < 6; i++) {
            char name[16];
            snprintf(name, sizeof(name), "o%d", i);
            kc_key_t k = key(i % 2 ? "n1" : "n2", name);
            arm(1);
            assert_int_equal(kc_cache_delete(c, &k), 0);
            disarm();
        }
        assert_int_equal(kc_cache_len(c), 0);
        assert_int_equal(query_len(c, "app", "web"), 0);
        kc_cache_free(c);
    }

    /* replace_all: unchanged and no callback on failure */
    fails = 0;
    for (long n = 1;; n++) {
        kc_cache_t *c = oom_cache();
        kc_obj_t *objs[3] = { mkobj("n3", "new", "1", "app=db", "own-2"),
                              mkobj("n1", "o1", "1", "app=web", "own-1"),
                              mkobj("n1", "o3", "9", "app=db", NULL) };
        int calls = 0;
        long base = live;
        arm(n);
        int rc = kc_cache_replace_all(c, objs, 3, diff_count, &calls);
        disarm();
        if (rc == 0) {
            assert_int_equal(calls, 1 + 1 + 4); /* added, o3 updated, 4 deleted; o1 same rv */
            assert_int_equal(kc_cache_len(c), 3);
            for (int i = 0; i < 3; i++)
                kc_obj_unref(objs[i]);
            kc_cache_free(c);
            break;
        }
        fails++;
        assert_int_equal(rc, -ENOMEM);
        assert_int_equal(calls, 0);
        assert_int_equal(live, base);
        check_oom_cache_unchanged(c);
        for (int i = 0; i < 3; i++)
            kc_obj_unref(objs[i]);
        kc_cache_free(c);
    }
    assert_true(fails >= 3);

    /* list */
    {
        kc_cache_t *c = oom_cache();
        kc_objlist_t l = KC_OBJLIST_INIT;
        arm(1);
        int rc = kc_cache_list(c, &l);
        disarm();
        if (rc != 0) {
            assert_int_equal(rc, -ENOMEM);
            assert_int_equal(l.len, 0);
            assert_null(l.items);
        } else {
            kc_objlist_free(&l);
        }
        kc_cache_free(c);
    }
    cJSON_free(pod);
}
#else
static void test_alloc_failures(void **state)
{
    (void)state;
    skip(); /* the sanitizers own malloc */
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_validation),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_obj_fixture_metadata),
        cmocka_unit_test(test_obj_escapes_and_cluster),
        cmocka_unit_test(test_obj_uid_forms),
        cmocka_unit_test(test_obj_managed_fields_positions),
        cmocka_unit_test(test_obj_errors),
        cmocka_unit_test(test_obj_prevalidated),
        cmocka_unit_test(test_obj_meta_notes),
        cmocka_unit_test(test_obj_without_fields),
        cmocka_unit_test(test_obj_packed),
        cmocka_unit_test(test_cache_basic),
        cmocka_unit_test(test_cache_opts),
        cmocka_unit_test(test_cache_scope),
        cmocka_unit_test(test_namespaced_delete),
        cmocka_unit_test(test_indexes),
        cmocka_unit_test(test_replace_keeps_ns_index),
        cmocka_unit_test(test_replace_all),
        cmocka_unit_test(test_memory_bound),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests_name("kc_cache", tests, NULL, NULL);
}
