/* libFuzzer target: watch stream framing and event decoding.  The input is
 * fed to kc_watch_decoder in pieces whose sizes come from the first byte,
 * with a small event cap so the TOOBIG path is reached too; each event's
 * object is parsed with kc_watch_event_parse and kc_obj_new, and ERROR
 * events with kc_status_from_json, as the informer does.  An object the
 * decoder flags KC_WATCH_OBJECT_MINIFIED must build the same object with
 * kc_obj_opts_t.prevalidated as without, and again with the decoder's notes
 * on its metadata (kc_obj_opts_t.meta), or fail the same way. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "kc_cache.h"
#include "kc_client.h"

static int same_str(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

/* Every accessor gives the same answer for a and b. */
static int same_obj(const kc_obj_t *a, const kc_obj_t *b)
{
    size_t la, lb;
    const char *ja = kc_obj_json(a, &la), *jb = kc_obj_json(b, &lb);
    char ua[KC_UID_BUF], ub[KC_UID_BUF];

    if (la != lb || memcmp(ja, jb, la) != 0 || !same_str(kc_obj_name(a), kc_obj_name(b)) ||
        !same_str(kc_obj_namespace(a), kc_obj_namespace(b)) ||
        !same_str(kc_obj_uid(a, ua), kc_obj_uid(b, ub)) ||
        !same_str(kc_obj_resource_version(a), kc_obj_resource_version(b)) ||
        kc_obj_generation(a) != kc_obj_generation(b) || kc_obj_deleting(a) != kc_obj_deleting(b) ||
        kc_obj_label_count(a) != kc_obj_label_count(b) ||
        kc_obj_owner_count(a) != kc_obj_owner_count(b))
        return 0;
    for (size_t i = 0; i < kc_obj_label_count(a); i++) {
        const char *ka, *va, *kb, *vb;
        kc_obj_label_at(a, i, &ka, &va);
        kc_obj_label_at(b, i, &kb, &vb);
        if (!same_str(ka, kb) || !same_str(va, vb))
            return 0;
    }
    for (size_t i = 0; i < kc_obj_owner_count(a); i++) {
        kc_owner_ref_t oa, ob;
        kc_obj_owner_at(a, i, &oa);
        kc_obj_owner_at(b, i, &ob);
        if (!same_str(oa.api_version, ob.api_version) || !same_str(oa.kind, ob.kind) ||
            !same_str(oa.name, ob.name) || !same_str(oa.uid, ob.uid) ||
            oa.controller != ob.controller || oa.block_owner_deletion != ob.block_owner_deletion)
            return 0;
    }
    return 1;
}

static int on_event(void *ud, const kc_watch_event_t *ev)
{
    kc_obj_t *o = NULL;
    kc_errbuf_t eb;
    cJSON *j;

    (void)ud;
    if (ev->type == KC_WATCH_ERROR) {
        kc_status_t st;
        kc_status_clear(&st);
        kc_status_from_json(ev->object, ev->object_len, &st);
        return 0;
    }
    j = kc_watch_event_parse(ev);
    cJSON_Delete(j);
    int rc = kc_obj_new(ev->object, ev->object_len, NULL, &o, &eb);
    if (ev->flags & KC_WATCH_OBJECT_MINIFIED) {
        /* bytes the decoder vouches for build the same object without
         * the validating pass, or fail the same way */
        kc_obj_opts_t pre = KC_OBJ_OPTS_INIT;
        kc_obj_t *p = NULL;
        pre.prevalidated = 1;
        int prc = kc_obj_new(ev->object, ev->object_len, &pre, &p, &eb);
        if (prc != rc)
            abort();
        if (rc == 0) {
            size_t la, lb;
            const char *ja = kc_obj_json(o, &la), *jb = kc_obj_json(p, &lb);
            if (la != lb || memcmp(ja, jb, la) != 0 ||
                strcmp(kc_obj_name(o), kc_obj_name(p)) != 0 ||
                strcmp(kc_obj_resource_version(o), kc_obj_resource_version(p)) != 0 ||
                kc_obj_label_count(o) != kc_obj_label_count(p))
                abort();
            kc_obj_unref(p);
        }
        /* and with the decoder's notes on metadata, the same again */
        kc_obj_t *n = NULL;
        pre.meta = ev->meta;
        if (!ev->meta || kc_obj_new(ev->object, ev->object_len, &pre, &n, &eb) != rc)
            abort();
        if (rc == 0) {
            if (!same_obj(o, n))
                abort();
            kc_obj_unref(n);
        }
    }
    if (rc == 0) {
        kc_key_t k;
        kc_obj_key(o, &k);
        (void)kc_obj_label_count(o);
        kc_obj_unref(o);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kc_watch_decoder_t *d = NULL;
    kc_errbuf_t eb;
    size_t step, off;
    int rc = 0;

    if (size < 1)
        return 0;
    step = (size_t)(data[0] % 64) + 1;
    data++;
    size--;
    if (kc_watch_decoder_new(4096, on_event, NULL, &d) != 0)
        return 0;
    for (off = 0; off < size && rc == 0; off += step)
        rc = kc_watch_decoder_feed(d, (const char *)data + off,
                                   size - off < step ? size - off : step, &eb);
    if (rc == 0)
        kc_watch_decoder_finish(d, &eb);
    kc_watch_decoder_free(d);
    return 0;
}
