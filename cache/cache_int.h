/*
 * Private to cache/: the object layout and the key hash, shared by
 * kc_obj.c (which builds objects) and kc_cache.c (which stores them).
 */
#ifndef KC_CACHE_INT_H
#define KC_CACHE_INT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kc_cache.h"

/* One allocation per object: this header, then data[]:
 *   ns \0 name \0 uid rv \0 [generation]
 *   labels:  (key \0 value \0) * nlabels
 *   owners:  (apiVersion \0 kind \0 name \0 uid \0 flags-byte) * nowners
 *   json \0                          (unpacked)
 *   or, KC__OBJ_PACKED: padding to 8, then a kc__packed_t and the LZ4
 *   block of the json (json_len bytes once decompressed)
 * The uid is its 16 bytes (KC__OBJ_UID16: a UUID in the canonical
 * lowercase form the API server gives, 36 characters as text), else the
 * text and a NUL; it ends at rv_off.  A generation other than 0 is kept
 * (KC__OBJ_GEN) as 8 unaligned bytes right before labels_off.  Objects
 * without a generation (ConfigMaps, Secrets, Pods ...) spend nothing on
 * it.  Offsets are from data.  Everything but refs and
 * kc__packed_t.unpacked is written once, before the object is published,
 * and never changes; unpacked goes once from NULL to the decompressed JSON
 * (compare-and-swap) and is freed with the object. */
struct kc_obj {
    atomic_uint refs;
    uint32_t json_len;
    uint32_t rv_off, labels_off, owners_off, json_off;
    uint16_t name_len;
    uint16_t nlabels, nowners;
    uint8_t ns_len;         /* a namespace is at most KC_NS_MAX (63) bytes */
    uint8_t flags;          /* KC__OBJ_* */
    char data[];
};

_Static_assert(KC_NS_MAX <= UINT8_MAX, "kc_obj.ns_len is one byte");

/* Bytes before data[] (sizeof may add tail padding we do not need). */
#define KC__OBJ_HDR offsetof(struct kc_obj, data)

typedef struct kc__packed {
    _Atomic(char *) unpacked;   /* NULL until kc_obj_json needs the JSON */
    uint32_t packed_len;        /* bytes of the LZ4 block that follows */
    char block[];
} kc__packed_t;

#define KC__OBJ_DELETING 1u
#define KC__OBJ_PACKED 2u
#define KC__OBJ_UID16 4u
#define KC__OBJ_GEN 8u
#define KC__OWNER_CONTROLLER 1u
#define KC__OWNER_BLOCK 2u

static inline const char *kc__obj_ns(const kc_obj_t *o) { return o->data; }
static inline const char *kc__obj_name(const kc_obj_t *o) { return o->data + o->ns_len + 1; }

static inline uint64_t kc__mix(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/* A fast 64-bit hash (multiply-mix over 8-byte words).  Not meant to resist
 * chosen keys: names come from the API server. */
static inline uint64_t kc__hash_bytes(const char *p, size_t n, uint64_t seed)
{
    uint64_t h = seed ^ ((uint64_t)n * 0x9e3779b97f4a7c15ULL);

    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = kc__mix(h ^ w, 0xa0761d6478bd642fULL);
        p += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, p, n);
        h = kc__mix(h ^ w, 0xe7037ed1a0b428dbULL);
    }
    return kc__mix(h, 0x8ebc6af09c88c6e3ULL);
}

static inline uint64_t kc__key_hash(const char *ns, size_t ns_len, const char *name,
                                    size_t name_len)
{
    return kc__hash_bytes(name, name_len, kc__hash_bytes(ns, ns_len, 0x243f6a8885a308d3ULL));
}

static inline uint64_t kc__obj_hash(const kc_obj_t *o)
{
    return kc__key_hash(o->data, o->ns_len, o->data + o->ns_len + 1, o->name_len);
}

#endif
