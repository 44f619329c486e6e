/*
 * kc_cache: keys, immutable reference-counted objects, and the concurrent
 * store of Kubernetes objects at the centre of kcache.
 *
 * Keys.  A namespaced object is always named by (namespace, name); a
 * cluster-scoped one by ("", name).  No call takes a bare name for a
 * namespaced object: a namespaced cache rejects a key with an empty
 * namespace and a cluster-scoped cache rejects a key with one (both
 * KC_EBADNAME).  The text form is "ns/name" or "name".
 *
 * Objects (kc_obj_t) are immutable once built and reference-counted with
 * atomics.  Each is one allocation holding a small header, the metadata the
 * cache and controllers need (namespace, name, uid, resourceVersion,
 * generation, labels, owner references) and the object's minified JSON.
 * kc_obj_parse gives the whole body as a cJSON tree when a caller needs it.
 * Every accessor returns pointers into the object: they stay valid for as
 * long as the caller holds a reference.
 *
 * The cache (kc_cache_t) is sharded by key hash; each shard has a pthread
 * RW lock, so readers never block readers and a writer blocks only its
 * shard.  Indexes (the built-in "namespace" index and custom ones) live in
 * the shards next to the primary map and change under the same lock: an
 * object visible by key is visible in its indexes, and the reverse.  No
 * call holds a lock while calling back into the caller.
 *
 * Ownership words used below: "borrows" (the callee keeps no pointer after
 * returning), "copies", "takes a reference" (the callee adds its own), and
 * "returns a new reference" (release it with kc_obj_unref).
 */
#ifndef KC_CACHE_H
#define KC_CACHE_H

#include <stddef.h>

#include "kc_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* cJSON is only needed by callers of kc_obj_parse. */
struct cJSON;

/* ------------------------------------------------------------------ */
/* Names and keys                                                      */

#define KC_NS_MAX 63
#define KC_NAME_MAX 253

/* Which names a key or cache accepts.  Namespaces are always DNS-1123
 * labels ([a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 bytes). */
typedef enum {
    /* DNS-1123 subdomain: lower-case alphanumerics, '-' and '.', starting
     * and ending alphanumeric, dot-separated parts, at most 253 bytes.
     * What most resources (ConfigMap, Pod, Deployment, ...) require. */
    KC_NAME_DNS1123_SUBDOMAIN = 0,
    /* Path segment: any bytes >= 0x20 except '/' and '%', not "." or "..",
     * at most 253 bytes.  The rule of resources such as RBAC roles
     * ("system:controller:foo"). */
    KC_NAME_PATH_SEGMENT = 1
} kc_name_rule_t;

/* 0 if ns is a valid namespace, else KC_EBADNAME.  Thread-safe. */
int kc_namespace_validate(const char *ns);
/* 0 if name is valid under rule, else KC_EBADNAME.  Thread-safe. */
int kc_name_validate(const char *name, kc_name_rule_t rule);

typedef struct kc_key {
    char ns[KC_NS_MAX + 1];      /* "" for cluster-scoped objects */
    char name[KC_NAME_MAX + 1];
} kc_key_t;

/* Build a key from a namespace (NULL or "" = cluster-scoped) and a name
 * (copies both), validating them: the namespace as a DNS-1123 label, the
 * name as a DNS-1123 subdomain.  Returns 0, or KC_EBADNAME with *k zeroed.
 * Thread-safe. */
int kc_key_init(kc_key_t *k, const char *ns, const char *name);
/* Same with an explicit name rule (e.g. KC_NAME_PATH_SEGMENT for RBAC
 * objects).  Thread-safe. */
int kc_key_init_rule(kc_key_t *k, const char *ns, const char *name, kc_name_rule_t rule);
/* Parse "ns/name" or "name" (DNS-1123 subdomain names), validating.
 * Returns 0 or KC_EBADNAME.  Thread-safe. */
int kc_key_parse(kc_key_t *k, const char *s);
int kc_key_parse_rule(kc_key_t *k, const char *s, kc_name_rule_t rule);
/* Write "ns/name" or "name" into buf (NUL-terminated, truncated to cap).
 * Returns the length of the full text (like snprintf).  Thread-safe. */
size_t kc_key_format(const kc_key_t *k, char *buf, size_t cap);
/* 1 if equal, else 0.  Thread-safe. */
int kc_key_equal(const kc_key_t *a, const kc_key_t *b);
/* Room for any formatted key, NUL included. */
#define KC_KEY_STR_MAX (KC_NS_MAX + 1 + KC_NAME_MAX + 1)

/* ------------------------------------------------------------------ */
/* Objects                                                             */

typedef struct kc_obj kc_obj_t;

typedef struct kc_obj_opts {
    int keep_managed_fields; /* 0 (default): drop metadata.managedFields */
    size_t max_size;         /* input larger than this: KC_ETOOBIG */
    /* 1: the caller vouches that json is exactly one JSON value that a
     * validating scan has already accepted (kc_json_scan's grammar, UTF-8
     * and escapes) and that holds no insignificant whitespace, e.g. the
     * bytes of a watch event flagged KC_WATCH_OBJECT_MINIFIED, copied
     * as they are.  kc_obj_new then skips its validating, minifying pass
     * and reads the bytes directly (metadata is still checked field by
     * field).  Never set it for bytes no scan has validated: malformed
     * input could then be stored. */
    int prevalidated;
    /* JSON of at least this many bytes (as stored: minified, without
     * managedFields) is kept LZ4-compressed when that saves at least an
     * eighth; 0: never.  Default 2048: Pods, Deployments and large
     * ConfigMaps take less memory (a real Pod about a quarter of its JSON),
     * at ~0.5 µs per KB to pack and less to unpack (once, when kc_obj_json
     * is first called for the object); the metadata accessors never
     * unpack. */
    size_t pack_min;
    /* With prevalidated: what the caller's own validating scan of exactly
     * these bytes noted about their metadata (kc_json_scan_object_meta,
     * e.g. kc_watch_event_t.meta), or NULL.  kc_obj_new then reads the
     * metadata members from it instead of walking metadata again; it is
     * used only when it describes json[0..len) itself and says it is
     * usable, else ignored.  Borrowed for the call. */
    const struct kc_json_meta *meta;
} kc_obj_opts_t;

#define KC_OBJ_MAX_SIZE_DEFAULT ((size_t)16 << 20)
#define KC_OBJ_PACK_MIN_DEFAULT ((size_t)2048)
#define KC_OBJ_OPTS_INIT { 0, KC_OBJ_MAX_SIZE_DEFAULT, 0, KC_OBJ_PACK_MIN_DEFAULT, NULL }

/* Build an object from one JSON document json[0..len) (copies it; the
 * input need not be NUL-terminated).  The JSON is validated (unless
 * opts->prevalidated) and stored minified, without metadata.managedFields
 * unless opts keeps them.
 * metadata.name is required (a path-segment-valid name), metadata.namespace
 * optional (a DNS-1123 label when present).  Errors, with eb (may be NULL)
 * naming the offset or field: KC_EPARSE for malformed JSON, a missing name
 * or a field of the wrong JSON type ("metadata.labels: expected object,
 * got array"), KC_EBADNAME for an invalid name or namespace, KC_ETOOBIG,
 * -ENOMEM.  opts may be NULL (KC_OBJ_OPTS_INIT).  On success *out is a new
 * reference.  Thread-safe. */
int kc_obj_new(const char *json, size_t len, const kc_obj_opts_t *opts, kc_obj_t **out,
               kc_errbuf_t *eb);

/* Add a reference; returns o.  NULL ok.  Thread-safe. */
kc_obj_t *kc_obj_ref(kc_obj_t *o);
/* Release a reference; the last one frees.  NULL ok.  Releasing more
 * references than were taken aborts.  Thread-safe. */
void kc_obj_unref(kc_obj_t *o);

/* Metadata accessors.  The strings belong to o.  All thread-safe. */
const char *kc_obj_namespace(const kc_obj_t *o);        /* "" if cluster-scoped */
const char *kc_obj_name(const kc_obj_t *o);
const char *kc_obj_resource_version(const kc_obj_t *o); /* "" if absent */
/* metadata.uid ("" if absent), in buf or in o: a UUID (what the API server
 * gives every object) is kept in 16 bytes, not 37, and spelled out in buf
 * on demand.  buf must hold KC_UID_BUF bytes; the result lives as long as
 * the shorter-lived of buf and o. */
#define KC_UID_BUF 37
const char *kc_obj_uid(const kc_obj_t *o, char buf[KC_UID_BUF]);
long long kc_obj_generation(const kc_obj_t *o);         /* 0 if absent */
/* 1 if metadata.deletionTimestamp is set (the object is being deleted). */
int kc_obj_deleting(const kc_obj_t *o);
/* Fill *out with the object's key. */
void kc_obj_key(const kc_obj_t *o, kc_key_t *out);
/* The stored (minified) JSON, NUL-terminated; *len (may be NULL) gets its
 * length.  For an object kept compressed (kc_obj_opts_t.pack_min) the
 * first call decompresses it and keeps the result with the object (then
 * counted by kc_obj_mem_size) for the object's lifetime; NULL only if that
 * allocation fails.  kc_obj_parse, kc_obj_annotation and
 * kc_obj_without_fields decompress into a temporary instead.
 * Thread-safe. */
const char *kc_obj_json(const kc_obj_t *o, size_t *len);
/* The JSON's length, without decompressing anything. */
size_t kc_obj_json_len(const kc_obj_t *o);
/* 1 if the object is kept compressed (kc_obj_opts_t.pack_min). */
int kc_obj_packed(const kc_obj_t *o);

/* Labels: value of key, or NULL if absent. */
const char *kc_obj_label(const kc_obj_t *o, const char *key);
size_t kc_obj_label_count(const kc_obj_t *o);
/* i-th label (in document order): 0, or KC_ENOTFOUND past the end. */
int kc_obj_label_at(const kc_obj_t *o, size_t i, const char **key, const char **value);

/* Owner references.  Strings are "" when the field was absent. */
typedef struct kc_owner_ref {
    const char *api_version;
    const char *kind;
    const char *name;
    const char *uid;
    int controller;           /* ownerReferences[].controller == true */
    int block_owner_deletion; /* ownerReferences[].blockOwnerDeletion == true */
} kc_owner_ref_t;
size_t kc_obj_owner_count(const kc_obj_t *o);
/* i-th owner reference: 0, or KC_ENOTFOUND past the end. */
int kc_obj_owner_at(const kc_obj_t *o, size_t i, kc_owner_ref_t *out);
/* The owner reference with controller=true: 0, or KC_ENOTFOUND. */
int kc_obj_controller_ref(const kc_obj_t *o, kc_owner_ref_t *out);

/* metadata.annotations[key], unescaped, scanning the stored JSON on demand
 * (annotations are not extracted when the object is built).  On 0, *out is
 * a malloc'd copy the caller frees; KC_ENOTFOUND if absent; -ENOMEM.
 * Thread-safe. */
int kc_obj_annotation(const kc_obj_t *o, const char *key, char **out);

/* The object without the named top-level members (fields: a NULL-ended
 * list of keys, e.g. { "data", "binaryData", NULL }), for transforms that
 * keep only what a controller reads.  The rest of the JSON, the metadata
 * and the accessors' answers are unchanged.  On 0, *out is a new
 * reference: to o itself when it holds none of the fields, else to a new
 * object.  -EINVAL, -ENOMEM.  Thread-safe. */
int kc_obj_without_fields(kc_obj_t *o, const char *const *fields, kc_obj_t **out);

/* A new cJSON tree of the whole stored object (the caller cJSON_Delete()s
 * it), or NULL when out of memory.  Thread-safe. */
struct cJSON *kc_obj_parse(const kc_obj_t *o);

/* Bytes this object costs in memory (its allocation, allocator overhead
 * included).  Thread-safe. */
size_t kc_obj_mem_size(const kc_obj_t *o);

/* ------------------------------------------------------------------ */
/* The cache                                                           */

typedef struct kc_cache kc_cache_t;

typedef struct kc_cache_opts {
    unsigned shards;          /* power of two, 1 .. 65536 */
    int namespaced;           /* 1: keys are (ns, name); 0: cluster-scoped */
    kc_name_rule_t name_rule; /* names accepted by add/replace */
} kc_cache_opts_t;

#define KC_CACHE_SHARDS_DEFAULT 64
#define KC_CACHE_OPTS_INIT { KC_CACHE_SHARDS_DEFAULT, 1, KC_NAME_DNS1123_SUBDOMAIN }

/* Most custom indexes a cache can have (besides "namespace"). */
#define KC_CACHE_MAX_INDEXES 16
/* Longest index value an index function may emit (bytes). */
#define KC_CACHE_INDEX_VALUE_MAX 4096

/* opts may be NULL (KC_CACHE_OPTS_INIT).  Returns 0 and *out, -EINVAL for
 * a bad shard count, -ENOMEM.  Thread-safe. */
int kc_cache_new(const kc_cache_opts_t *opts, kc_cache_t **out);
/* Releases the cache's references to every object.  NULL ok.  Not
 * thread-safe: no other call on c may be running. */
void kc_cache_free(kc_cache_t *c);

/* Custom index: fn calls emit(ctx, value) zero or more times for an
 * object (duplicate values count once; emit copies value).  fn must be a
 * pure function of the object: it is called without any cache lock held,
 * when the object is stored and never again for it.  An emitted value
 * longer than KC_CACHE_INDEX_VALUE_MAX makes the write fail (KC_ETOOBIG). */
typedef void (*kc_index_emit_cb)(void *ctx, const char *value);
typedef void (*kc_index_cb)(const kc_obj_t *o, void *ud, kc_index_emit_cb emit, void *ctx);
/* Add index name (copied; not "namespace", not a duplicate: -EEXIST).
 * Only before the first write (KC_EBUSY after).  ud is borrowed for the
 * cache's lifetime.  Not thread-safe: call before sharing the cache. */
int kc_cache_add_index(kc_cache_t *c, const char *name, kc_index_cb fn, void *ud);

/* Look up key (borrowed).  Returns 0 with *out a new reference,
 * KC_ENOTFOUND, or KC_EBADNAME when the key's scope does not match the
 * cache (empty namespace in a namespaced cache, or the reverse).  Keys are
 * validated when built (kc_key_init), not here.  Thread-safe. */
int kc_cache_get(kc_cache_t *c, const kc_key_t *key, kc_obj_t **out);
/* Same as kc_cache_get with the namespace and name given as strings
 * (borrowed), saving the caller a kc_key_t: ns must be a non-empty
 * namespace in a namespaced cache and NULL or "" in a cluster-scoped one
 * (else KC_EBADNAME), and the lengths must fit a key.  Thread-safe. */
int kc_cache_get_nsname(kc_cache_t *c, const char *ns, const char *name, kc_obj_t **out);
/* Insert obj (the cache takes its own reference).  KC_EEXISTS if its key
 * is present, KC_EBADNAME if its name or scope does not fit the cache,
 * -ENOMEM, KC_ETOOBIG (index value).  On error nothing changed.
 * Thread-safe. */
int kc_cache_add(kc_cache_t *c, kc_obj_t *obj);
/* Upsert obj (the cache takes its own reference).  If old is non-NULL it
 * receives the previous object (a reference the caller releases) or NULL;
 * if old is NULL the previous object's reference is released.  The new
 * object is stored before the old one is released.  Errors as kc_cache_add
 * (never KC_EEXISTS).  Thread-safe. */
int kc_cache_replace(kc_cache_t *c, kc_obj_t *obj, kc_obj_t **old);
/* Remove key and release the cache's reference.  KC_ENOTFOUND,
 * KC_EBADNAME (scope).  Readers holding references keep reading the
 * object safely.  Thread-safe. */
int kc_cache_delete(kc_cache_t *c, const kc_key_t *key);
/* Remove key and hand the cache's reference to the caller in *old.
 * KC_ENOTFOUND, KC_EBADNAME.  Thread-safe. */
int kc_cache_take(kc_cache_t *c, const kc_key_t *key, kc_obj_t **old);

/* A snapshot: an array of references, owned by the caller. */
typedef struct kc_objlist {
    kc_obj_t **items;
    size_t len;
} kc_objlist_t;
#define KC_OBJLIST_INIT { NULL, 0 }
/* Release every reference and the array; the list is left empty.
 * NULL ok.  Thread-safe for distinct lists. */
void kc_objlist_free(kc_objlist_t *l);

/* Every object (order unspecified).  On 0, *out holds new references (also
 * when empty: items may be NULL).  Each shard is read under its read lock,
 * so each object's presence is consistent with its key at that moment.
 * -ENOMEM (out left empty).  Thread-safe. */
int kc_cache_list(kc_cache_t *c, kc_objlist_t *out);
/* Objects of namespace ns (borrowed; a valid DNS-1123 label).  -EINVAL on
 * a cluster-scoped cache, KC_EBADNAME for a bad ns.  Thread-safe. */
int kc_cache_list_ns(kc_cache_t *c, const char *ns, kc_objlist_t *out);
/* Objects whose index `index` has value `value` (both borrowed).
 * KC_ENOTFOUND for an unknown index name (an unknown value gives an empty
 * list).  Thread-safe. */
int kc_cache_index_query(kc_cache_t *c, const char *index, const char *value,
                         kc_objlist_t *out);
/* Number of objects.  Thread-safe (a moment's value). */
size_t kc_cache_len(kc_cache_t *c);

/* Relist: swap the whole content for objs[0..n) (borrowed; the cache takes
 * its own references; a key given twice keeps the later object).  The swap
 * is atomic: every shard's write lock is held across it, so no reader sees
 * a mix.  Then, with no lock held, cb (may be NULL) is called for every key
 * that appeared (KC_DIFF_ADDED, old NULL), changed resourceVersion
 * (KC_DIFF_UPDATED) or vanished (KC_DIFF_DELETED, new_obj NULL; old is the
 * last object stored).  Unchanged keys are not reported.  The objects
 * passed to cb are borrowed for the call (kc_obj_ref to keep one).  Errors
 * (KC_EBADNAME, -ENOMEM, KC_ETOOBIG) leave the cache unchanged and call cb
 * never.  Thread-safe; cb may call into the cache. */
typedef enum { KC_DIFF_ADDED, KC_DIFF_UPDATED, KC_DIFF_DELETED } kc_diff_t;
typedef void (*kc_cache_diff_cb)(void *ud, kc_diff_t kind, kc_obj_t *old, kc_obj_t *new_obj);
int kc_cache_replace_all(kc_cache_t *c, kc_obj_t *const *objs, size_t n, kc_cache_diff_cb cb,
                         void *ud);

/* Memory: bytes of the cache's own structures (hash tables, indexes, index
 * values), objects excluded. */
size_t kc_cache_mem_overhead(kc_cache_t *c);
/* The overhead plus kc_obj_mem_size of every stored object.  Thread-safe
 * (takes each shard's read lock in turn). */
size_t kc_cache_mem_usage(kc_cache_t *c);

#ifdef __cplusplus
}
#endif
#endif
