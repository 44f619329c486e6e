/*
 * assert_obj_same: two cache objects built from the same JSON by two paths
 * (e.g. kc_obj_new with and without kc_obj_opts_t.prevalidated) hold the
 * same stored JSON and the same metadata: namespace, name, uid,
 * resourceVersion, generation, deletion mark, labels in order and owner
 * references.  For cmocka test programs (include cmocka.h first).
 */
#ifndef KC_TEST_OBJ_H
#define KC_TEST_OBJ_H

#include "kc_cache.h"

static void assert_obj_same(const kc_obj_t *a, const kc_obj_t *b)
{
    size_t la, lb;
    const char *ja = kc_obj_json(a, &la), *jb = kc_obj_json(b, &lb);
    char ua[KC_UID_BUF], ub[KC_UID_BUF];

    assert_int_equal(la, lb);
    assert_memory_equal(ja, jb, la);
    assert_string_equal(kc_obj_namespace(a), kc_obj_namespace(b));
    assert_string_equal(kc_obj_name(a), kc_obj_name(b));
    assert_string_equal(kc_obj_uid(a, ua), kc_obj_uid(b, ub));
    assert_string_equal(kc_obj_resource_version(a), kc_obj_resource_version(b));
    assert_int_equal(kc_obj_generation(a), kc_obj_generation(b));
    assert_int_equal(kc_obj_deleting(a), kc_obj_deleting(b));
    assert_int_equal(kc_obj_label_count(a), kc_obj_label_count(b));
    for (size_t i = 0; i < kc_obj_label_count(a); i++) {
        const char *ka, *va, *kb, *vb;
        assert_int_equal(kc_obj_label_at(a, i, &ka, &va), 0);
        assert_int_equal(kc_obj_label_at(b, i, &kb, &vb), 0);
        assert_string_equal(ka, kb);
        assert_string_equal(va, vb);
    }
    assert_int_equal(kc_obj_owner_count(a), kc_obj_owner_count(b));
    for (size_t i = 0; i < kc_obj_owner_count(a); i++) {
        kc_owner_ref_t oa, ob;
        assert_int_equal(kc_obj_owner_at(a, i, &oa), 0);
        assert_int_equal(kc_obj_owner_at(b, i, &ob), 0);
        assert_string_equal(oa.uid, ob.uid);
        assert_string_equal(oa.kind, ob.kind);
        assert_int_equal(oa.controller, ob.controller);
    }
}

#endif
