/*
 * The sharded concurrent store of objects (see kc_cache.h).
 *
 * Layout.  A key's 64-bit hash picks a shard by its low bits; inside the
 * shard the high 32 bits pick a slot of an open-addressing table (linear
 * probing, backward-shift deletion, so no tombstones).  A slot is one word:
 * the object pointer with 16 more bits of the hash (bits 16..31) in its
 * unused top 16 bits, so a probe rejects other keys without touching their
 * objects, and an entry costs 8 bytes of table (the object holds its key).
 * User-space heap pointers on the 64-bit targets kcache supports fit in 48
 * bits; a pointer that does not aborts at insertion rather than corrupt.
 *
 * Each shard also holds its part of every index: a table from index value
 * to a node holding the member objects (one pointer inline while the value
 * has a single member in the shard, the usual case for owner UIDs; else an
 * open-addressing pointer set).  Custom index values are computed once,
 * when an entry is stored (the index functions run without any lock); the
 * entry then keeps pointers to its index nodes next to its slot (ixr[]: one
 * inline, several in a small array), so removal never calls the index
 * function again.  A node lives while it has members, so those pointers
 * stay valid while the entry is stored.
 *
 * Locking rule.  Everything in a shard_content_t is protected by its
 * shard's lock: readers take it shared, writers exclusive.  A single-key
 * call takes one shard lock.  Calls that span shards (list, list_ns,
 * index_query, replace_all, mem_usage) take every shard lock in ascending
 * shard order, which is the only order in which two shard locks are ever
 * held together, so they cannot deadlock; they see (or make) one atomic
 * snapshot.  No lock is held while calling the caller's code (index
 * functions, the replace_all callback), and objects are released after the
 * lock is dropped.  Lock wrappers abort on any pthread error.
 *
 * Ownership.  The cache holds one reference per stored object.  Readers
 * take their own reference while holding the shard lock, so a writer that
 * removes an object and releases the cache's reference can never free
 * memory a reader is about to use.  A replace stores the new object (and
 * its index entries) before it releases the old one.
 *
 * Indexes agree with the primary table: every write updates both under
 * the same exclusive lock, reserving all memory first so that nothing can
 * fail half-way (a failed call leaves the cache unchanged).
 */
#include "cache_int.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* locks */

#ifdef KC_CACHE_BENCH_MUTEX
/* Used only by bench/bench_cache.c, which compiles its own copy of this
 * file to measure the "one mutex" strategy with the same table code. */
typedef pthread_mutex_t shard_lock_t;
static void lock_init(shard_lock_t *l)
{
    if (pthread_mutex_init(l, NULL))
        abort();
}
static void lock_destroy(shard_lock_t *l)
{
    if (pthread_mutex_destroy(l))
        abort();
}
static void rdlock(shard_lock_t *l)
{
    if (pthread_mutex_lock(l))
        abort();
}
static void wrlock(shard_lock_t *l)
{
    if (pthread_mutex_lock(l))
        abort();
}
static void unlock(shard_lock_t *l)
{
    if (pthread_mutex_unlock(l))
        abort();
}
#else
typedef pthread_rwlock_t shard_lock_t;
static void lock_init(shard_lock_t *l)
{
    pthread_rwlockattr_t a;

    if (pthread_rwlockattr_init(&a))
        abort();
    /* An informer writing steadily must not starve behind readers. */
    if (pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        abort();
    if (pthread_rwlock_init(l, &a))
        abort();
    pthread_rwlockattr_destroy(&a);
}
static void lock_destroy(shard_lock_t *l)
{
    if (pthread_rwlock_destroy(l))
        abort();
}
static void rdlock(shard_lock_t *l)
{
    if (pthread_rwlock_rdlock(l))
        abort();
}
static void wrlock(shard_lock_t *l)
{
    if (pthread_rwlock_wrlock(l))
        abort();
}
static void unlock(shard_lock_t *l)
{
    if (pthread_rwlock_unlock(l))
        abort();
}
#endif

/* ------------------------------------------------------------------ */
/* structures */

/* 0: empty; else tag | pointer */
typedef uintptr_t slot_t;

#if UINTPTR_MAX > 0xffffffffu
#define PTR_BITS 48
#define PTR_MASK (((uintptr_t)1 << PTR_BITS) - 1)
static inline uintptr_t tag_of(uint64_t h)
{
    return (uintptr_t)((h >> 16) & 0xffff) << PTR_BITS;
}
#else
#define PTR_MASK (~(uintptr_t)0)
static inline uintptr_t tag_of(uint64_t h)
{
    (void)h;
    return 0;
}
#endif

static inline kc_obj_t *slot_obj(slot_t s)
{
    return (kc_obj_t *)(s & PTR_MASK);
}

static inline slot_t make_slot(kc_obj_t *o, uint64_t h)
{
    if ((uintptr_t)o & ~PTR_MASK)
        abort(); /* see the file comment */
    return (uintptr_t)o | tag_of(h);
}

typedef struct ixnode {
    uint64_t hash;
    uint32_t count;
    uint32_t mask;          /* 0: the one member is inline (u.one); else capacity - 1 */
    union {
        kc_obj_t *one;      /* mask 0: the member or NULL */
        kc_obj_t **set;     /* open addressing, NULL = empty */
    } u;
    char value[];
} ixnode_t;

/* The member slots of a node: the inline one or the set. */
static inline kc_obj_t **node_slots(ixnode_t *n, size_t *cap)
{
    if (n->mask == 0) {
        *cap = 1;
        return &n->u.one;
    }
    *cap = (size_t)n->mask + 1;
    return n->u.set;
}

static void node_free(ixnode_t *n)
{
    if (n->mask)
        free(n->u.set);
    free(n);
}

typedef struct ixtab {
    ixnode_t **nodes;       /* open addressing, NULL = empty; may be NULL */
    size_t mask;
    size_t count;
} ixtab_t;

typedef struct shard_content {
    slot_t *slots;          /* may be NULL while empty */
    uintptr_t *ixr;         /* parallel to slots when the cache has custom indexes:
                             * each entry's ixref (see ix_prepare_entry) */
    size_t mask;
    size_t count;
    ixtab_t *ix;            /* [nix] */
} shard_content_t;

typedef struct shard {
    shard_lock_t lock;
    /* protected by lock: */
    shard_content_t ct;
    /* written under lock, read without it by kc_cache_len */
    atomic_size_t n;
} __attribute__((aligned(64))) shard_t;

typedef struct index_def {
    char *name;
    kc_index_cb fn;
    void *ud;
} index_def_t;

struct kc_cache {
    shard_t *shards;
    unsigned nshards;
    unsigned shard_mask;
    int namespaced;
    kc_name_rule_t name_rule;
    /* ix[0] is the namespace index in a namespaced cache; custom indexes
     * follow.  Fixed before the first write. */
    unsigned nix;
    unsigned ix_first_custom;
    index_def_t defs[KC_CACHE_MAX_INDEXES];
    unsigned ndefs;
    atomic_int frozen;      /* set by the first write: no more add_index */
};

#define MIN_SLOTS 8
#define MIN_SET 4
#define MIN_NODES 4

static inline size_t slot_of(uint64_t hash, size_t mask)
{
    return (size_t)(hash >> 32) & mask;
}

static inline size_t ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ULL;
    return (size_t)(x >> 29);
}

/* ------------------------------------------------------------------ */
/* pointer sets (index postings) */

static int set_resize(ixnode_t *n, size_t cap)
{
    kc_obj_t **s = calloc(cap, sizeof(*s));
    size_t oldcap;
    kc_obj_t **old = node_slots(n, &oldcap);

    if (!s)
        return -ENOMEM;
    for (size_t i = 0; i < oldcap; i++) {
        kc_obj_t *o = old[i];
        if (!o)
            continue;
        size_t j = ptr_hash(o) & (cap - 1);
        while (s[j])
            j = (j + 1) & (cap - 1);
        s[j] = o;
    }
    if (n->mask)
        free(n->u.set);
    n->u.set = s;
    n->mask = (uint32_t)(cap - 1);
    return 0;
}

static int set_reserve(ixnode_t *n, size_t extra)
{
    size_t need = n->count + extra;

    if (n->mask == 0) {
        if (need <= 1)
            return 0; /* fits inline */
    } else if (need * 4 <= ((size_t)n->mask + 1) * 3) {
        return 0;
    }
    size_t nc = n->mask ? (size_t)n->mask + 1 : MIN_SET;
    while (need * 4 > nc * 3)
        nc *= 2;
    if (nc > UINT32_MAX)
        return -ENOMEM;
    return set_resize(n, nc);
}

/* Capacity reserved by set_reserve. */
static void set_add(ixnode_t *n, kc_obj_t *o)
{
    if (n->mask == 0) {
        if (n->u.one != o) {
            n->u.one = o;
            n->count++;
        }
        return;
    }
    size_t j = ptr_hash(o) & n->mask;
    while (n->u.set[j]) {
        if (n->u.set[j] == o)
            return;
        j = (j + 1) & n->mask;
    }
    n->u.set[j] = o;
    n->count++;
}

static void set_remove(ixnode_t *n, kc_obj_t *o)
{
    if (n->mask == 0) {
        if (n->u.one == o) {
            n->u.one = NULL;
            n->count--;
        }
        return;
    }
    kc_obj_t **set = n->u.set;
    size_t mask = n->mask, i = ptr_hash(o) & mask;
    while (set[i] != o) {
        if (!set[i])
            return;
        i = (i + 1) & mask;
    }
    /* backward-shift deletion */
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!set[j])
            break;
        size_t home = ptr_hash(set[j]) & mask;
        /* move set[j] into the hole at i unless its home lies in (i, j] */
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            set[i] = set[j];
            i = j;
        }
    }
    set[i] = NULL;
    n->count--;
    size_t cap = mask + 1;
    if (cap > MIN_SET && (size_t)n->count * 8 < cap)
        set_resize(n, cap / 2); /* best effort: on failure keep the big set */
}

/* ------------------------------------------------------------------ */
/* index tables: value -> node */

static size_t node_slot(const ixtab_t *t, uint64_t h)
{
    return (size_t)(h >> 32) & t->mask;
}

static ixnode_t *ix_find(const ixtab_t *t, const char *value, uint64_t h)
{
    if (!t->nodes)
        return NULL;
    for (size_t i = node_slot(t, h);; i = (i + 1) & t->mask) {
        ixnode_t *n = t->nodes[i];
        if (!n)
            return NULL;
        if (n->hash == h && strcmp(n->value, value) == 0)
            return n;
    }
}

static int ix_resize(ixtab_t *t, size_t cap)
{
    ixnode_t **a = calloc(cap, sizeof(*a));

    if (!a)
        return -ENOMEM;
    for (size_t i = 0; t->nodes && i <= t->mask; i++) {
        ixnode_t *n = t->nodes[i];
        if (!n)
            continue;
        size_t j = (size_t)(n->hash >> 32) & (cap - 1);
        while (a[j])
            j = (j + 1) & (cap - 1);
        a[j] = n;
    }
    free(t->nodes);
    t->nodes = a;
    t->mask = cap - 1;
    return 0;
}

/* Find or create the node for value and reserve room for one more member.
 * On failure nothing observable changed (a node created here is empty and
 * is removed by ix_prune). */
static int ix_reserve(ixtab_t *t, const char *value, uint64_t h, ixnode_t **out)
{
    ixnode_t *n = ix_find(t, value, h);
    int rc;

    if (!n) {
        size_t cap = t->nodes ? t->mask + 1 : 0;
        if (!cap || (t->count + 1) * 4 > cap * 3) {
            rc = ix_resize(t, cap ? cap * 2 : MIN_NODES);
            if (rc < 0)
                return rc;
        }
        size_t vl = strlen(value);
        n = malloc(sizeof(*n) + vl + 1);
        if (!n)
            return -ENOMEM;
        n->hash = h;
        n->count = 0;
        n->mask = 0;
        n->u.one = NULL;
        memcpy(n->value, value, vl + 1);
        size_t i = node_slot(t, h);
        while (t->nodes[i])
            i = (i + 1) & t->mask;
        t->nodes[i] = n;
        t->count++;
    }
    rc = set_reserve(n, 1);
    if (rc < 0)
        return rc;
    *out = n;
    return 0;
}

/* Remove the node for value if it has no members. */
static void ix_prune(ixtab_t *t, const char *value, uint64_t h)
{
    if (!t->nodes)
        return;
    size_t mask = t->mask, i = node_slot(t, h);
    for (;; i = (i + 1) & mask) {
        ixnode_t *n = t->nodes[i];
        if (!n)
            return;
        if (n->hash == h && strcmp(n->value, value) == 0)
            break;
    }
    ixnode_t *dead = t->nodes[i];
    if (dead->count)
        return;
    node_free(dead);
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!t->nodes[j])
            break;
        size_t home = node_slot(t, t->nodes[j]->hash);
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            t->nodes[i] = t->nodes[j];
            i = j;
        }
    }
    t->nodes[i] = NULL;
    t->count--;
    if (t->count == 0) {
        free(t->nodes);
        t->nodes = NULL;
        t->mask = 0;
    }
}

static void ix_remove(ixtab_t *t, const char *value, uint64_t h, kc_obj_t *o)
{
    ixnode_t *n = ix_find(t, value, h);

    if (!n)
        return;
    set_remove(n, o);
    if (n->count == 0)
        ix_prune(t, value, h);
}

static void ix_free(ixtab_t *t)
{
    for (size_t i = 0; t->nodes && i <= t->mask; i++) {
        if (t->nodes[i])
            node_free(t->nodes[i]);
    }
    free(t->nodes);
    t->nodes = NULL;
    t->count = 0;
    t->mask = 0;
}

static inline uint64_t value_hash(const char *v)
{
    return kc__hash_bytes(v, strlen(v), 0x13198a2e03707344ULL);
}

/* ------------------------------------------------------------------ */
/* index values of one object
 *
 * An entry's values are the namespace (index 0 of a namespaced cache, taken
 * from the object) and, per custom index, the values its function emitted,
 * kept in a blob: records of [index byte][value bytes]['\0'], ended by a
 * 0xff byte.  NULL blob: no custom values. */

typedef struct emit_ctx {
    char *buf;
    size_t len, cap;
    unsigned idx;
    int err;
} emit_ctx_t;

static void emit_value(void *vctx, const char *value)
{
    emit_ctx_t *e = vctx;

    if (e->err || !value)
        return;
    size_t vl = strlen(value);
    if (vl > KC_CACHE_INDEX_VALUE_MAX) {
        e->err = KC_ETOOBIG;
        return;
    }
    /* duplicates within one index count once */
    for (size_t p = 0; p < e->len;) {
        size_t l = strlen(e->buf + p + 1);
        if ((unsigned char)e->buf[p] == e->idx && l == vl && memcmp(e->buf + p + 1, value, vl) == 0)
            return;
        p += l + 2;
    }
    if (e->len + vl + 3 > e->cap) {
        size_t nc = e->cap ? e->cap * 2 : 64;
        while (nc < e->len + vl + 3)
            nc *= 2;
        char *b = realloc(e->buf, nc);
        if (!b) {
            e->err = -ENOMEM;
            return;
        }
        e->buf = b;
        e->cap = nc;
    }
    e->buf[e->len++] = (char)e->idx;
    memcpy(e->buf + e->len, value, vl + 1);
    e->len += vl + 1;
}

/* Run the custom index functions for o (no lock held).  *out is NULL when
 * nothing was emitted. */
static int compute_ixv(kc_cache_t *c, const kc_obj_t *o, char **out)
{
    emit_ctx_t e = { NULL, 0, 0, 0, 0 };

    *out = NULL;
    for (unsigned d = 0; d < c->ndefs; d++) {
        e.idx = c->ix_first_custom + d;
        c->defs[d].fn(o, c->defs[d].ud, emit_value, &e);
        if (e.err) {
            free(e.buf);
            return e.err;
        }
    }
    if (e.len == 0) {
        free(e.buf);
        return 0;
    }
    char *b = realloc(e.buf, e.len + 1);
    if (!b) {
        free(e.buf);
        return -ENOMEM;
    }
    b[e.len] = (char)0xff;
    *out = b;
    return 0;
}

/* Walk the (index, value) pairs of an entry.  Returns 1 and fills, or 0. */
typedef struct ixv_iter {
    const kc_cache_t *c;
    const kc_obj_t *o;
    const char *p;
    int did_ns;
} ixv_iter_t;

static int ixv_next(ixv_iter_t *it, unsigned *idx, const char **value)
{
    if (!it->did_ns) {
        it->did_ns = 1;
        if (it->c->namespaced) {
            *idx = 0;
            *value = kc__obj_ns(it->o);
            return 1;
        }
    }
    if (!it->p || (unsigned char)*it->p == 0xff)
        return 0;
    *idx = (unsigned char)*it->p;
    *value = it->p + 1;
    it->p += strlen(it->p + 1) + 2;
    return 1;
}

/* Reserve index room for an entry's values; on failure prune what was
 * created and return the error (nothing observable changed). */
static int ix_reserve_entry(kc_cache_t *c, shard_content_t *ct, const kc_obj_t *o,
                            const char *blob)
{
    ixv_iter_t it = { c, o, blob, 0 };
    unsigned idx;
    const char *v;
    ixnode_t *n;
    int rc = 0;

    while (ixv_next(&it, &idx, &v)) {
        rc = ix_reserve(&ct->ix[idx], v, value_hash(v), &n);
        if (rc < 0)
            break;
    }
    if (rc < 0) {
        ixv_iter_t it2 = { c, o, blob, 0 };
        while (ixv_next(&it2, &idx, &v))
            ix_prune(&ct->ix[idx], v, value_hash(v));
    }
    return rc;
}

/* An entry's custom index memberships (ixref), kept next to its slot: 0
 * for none; one node pointer with bit 0 set; or a malloc'd NULL-terminated
 * array of node pointers.  A node lives while it has members, so these
 * pointers stay valid for as long as the entry is stored. */
typedef uintptr_t ixref_t;

static ixnode_t *ixref_at(ixref_t r, size_t i)
{
    if (!r)
        return NULL;
    if (r & 1)
        return i == 0 ? (ixnode_t *)(r & ~(uintptr_t)1) : NULL;
    return ((ixnode_t **)r)[i];
}

static void ixref_free(ixref_t r)
{
    if (r && !(r & 1))
        free((void *)r);
}

/* Reserve index room for o (custom values in blob, the namespace from o)
 * and build its ixref.  On failure nothing observable changed. */
static int ix_prepare_entry(kc_cache_t *c, shard_content_t *ct, const kc_obj_t *o,
                            const char *blob, ixref_t *ref)
{
    ixv_iter_t it = { c, o, blob, 0 };
    unsigned idx;
    const char *v;
    size_t k = 0;
    int rc;

    *ref = 0;
    rc = ix_reserve_entry(c, ct, o, blob);
    if (rc < 0)
        return rc;
    while (ixv_next(&it, &idx, &v))
        if (idx >= c->ix_first_custom)
            k++;
    if (k == 0)
        return 0;
    ixnode_t **arr = NULL;
    if (k > 1) {
        arr = malloc((k + 1) * sizeof(*arr));
        if (!arr) {
            ixv_iter_t it2 = { c, o, blob, 0 };
            while (ixv_next(&it2, &idx, &v))
                ix_prune(&ct->ix[idx], v, value_hash(v));
            return -ENOMEM;
        }
    }
    ixv_iter_t it3 = { c, o, blob, 0 };
    size_t j = 0;
    while (ixv_next(&it3, &idx, &v)) {
        if (idx < c->ix_first_custom)
            continue;
        ixnode_t *n = ix_find(&ct->ix[idx], v, value_hash(v));
        if (!n)
            abort(); /* reserved above */
        if (arr)
            arr[j++] = n;
        else
            *ref = (uintptr_t)n | 1;
    }
    if (arr) {
        arr[j] = NULL;
        *ref = (uintptr_t)arr;
    }
    return 0;
}

static void ix_add_entry(kc_cache_t *c, shard_content_t *ct, kc_obj_t *o, ixref_t ref)
{
    if (c->namespaced) {
        const char *ns = kc__obj_ns(o);
        ixnode_t *n = ix_find(&ct->ix[0], ns, value_hash(ns));
        if (!n)
            abort(); /* reserved by ix_prepare_entry */
        set_add(n, o);
    }
    ixnode_t *n;
    for (size_t i = 0; (n = ixref_at(ref, i)) != NULL; i++)
        set_add(n, o);
}

/* Free node n (empty) from whichever custom index table holds it. */
static void prune_node(kc_cache_t *c, shard_content_t *ct, ixnode_t *n)
{
    uint64_t h = n->hash;

    for (unsigned x = c->ix_first_custom; x < c->nix; x++) {
        if (ix_find(&ct->ix[x], n->value, h) == n) {
            ix_prune(&ct->ix[x], n->value, h);
            return;
        }
    }
    abort(); /* an entry pointed at a node no table holds */
}

static void ix_remove_entry(kc_cache_t *c, shard_content_t *ct, kc_obj_t *o, ixref_t ref)
{
    if (c->namespaced) {
        const char *ns = kc__obj_ns(o);
        ix_remove(&ct->ix[0], ns, value_hash(ns), o);
    }
    ixnode_t *n;
    for (size_t i = 0; (n = ixref_at(ref, i)) != NULL; i++) {
        set_remove(n, o);
        if (n->count == 0)
            prune_node(c, ct, n);
    }
}

/* ------------------------------------------------------------------ */
/* the primary table of a shard */

static int has_ixr(const kc_cache_t *c)
{
    return c->ndefs > 0;
}

static int map_resize(const kc_cache_t *c, shard_content_t *ct, size_t cap)
{
    slot_t *s = calloc(cap, sizeof(*s));
    uintptr_t *x = NULL;

    if (!s)
        return -ENOMEM;
    if (has_ixr(c) && !(x = calloc(cap, sizeof(*x)))) {
        free(s);
        return -ENOMEM;
    }
    for (size_t i = 0; ct->slots && i <= ct->mask; i++) {
        if (!ct->slots[i])
            continue;
        size_t j = slot_of(kc__obj_hash(slot_obj(ct->slots[i])), cap - 1);
        while (s[j])
            j = (j + 1) & (cap - 1);
        s[j] = ct->slots[i];
        if (x)
            x[j] = ct->ixr[i];
    }
    free(ct->slots);
    free(ct->ixr);
    ct->slots = s;
    ct->ixr = x;
    ct->mask = cap - 1;
    return 0;
}

static int map_reserve(const kc_cache_t *c, shard_content_t *ct, size_t extra)
{
    size_t cap = ct->slots ? ct->mask + 1 : 0, need = ct->count + extra;

    if (cap && need * 4 <= cap * 3)
        return 0;
    size_t nc = cap ? cap : MIN_SLOTS;
    while (need * 4 > nc * 3)
        nc *= 2;
    return map_resize(c, ct, nc);
}

/* Slot of (ns, name) or of the empty slot where it would go; *found says
 * which.  The table must exist. */
static size_t map_probe(const shard_content_t *ct, uint64_t h, const char *ns, size_t ns_len,
                        const char *name, size_t name_len, int *found)
{
    size_t i = slot_of(h, ct->mask);
    uintptr_t tag = tag_of(h);

    for (;; i = (i + 1) & ct->mask) {
        slot_t s = ct->slots[i];
        if (!s) {
            *found = 0;
            return i;
        }
        if ((s & ~PTR_MASK) == tag) {
            const kc_obj_t *o = slot_obj(s);
            if (o->ns_len == ns_len && o->name_len == name_len &&
                memcmp(kc__obj_name(o), name, name_len) == 0 &&
                memcmp(kc__obj_ns(o), ns, ns_len) == 0) {
                *found = 1;
                return i;
            }
        }
    }
}

static void map_remove_at(const kc_cache_t *c, shard_content_t *ct, size_t i)
{
    size_t mask = ct->mask, j = i;

    for (;;) {
        j = (j + 1) & mask;
        if (!ct->slots[j])
            break;
        size_t home = slot_of(kc__obj_hash(slot_obj(ct->slots[j])), mask);
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            ct->slots[i] = ct->slots[j];
            if (ct->ixr)
                ct->ixr[i] = ct->ixr[j];
            i = j;
        }
    }
    ct->slots[i] = 0;
    if (ct->ixr)
        ct->ixr[i] = 0;
    ct->count--;
    size_t cap = mask + 1;
    if (cap > MIN_SLOTS && ct->count * 8 < cap)
        map_resize(c, ct, cap / 2); /* best effort */
}

static void content_free(const kc_cache_t *c, shard_content_t *ct, int unref)
{
    for (size_t i = 0; ct->slots && i <= ct->mask; i++) {
        if (ct->slots[i] && unref)
            kc_obj_unref(slot_obj(ct->slots[i]));
        if (ct->ixr)
            ixref_free(ct->ixr[i]);
    }
    free(ct->slots);
    free(ct->ixr);
    for (unsigned x = 0; ct->ix && x < c->nix; x++)
        ix_free(&ct->ix[x]);
    free(ct->ix);
    memset(ct, 0, sizeof(*ct));
}

static int content_init(const kc_cache_t *c, shard_content_t *ct)
{
    memset(ct, 0, sizeof(*ct));
    if (c->nix == 0)
        return 0;
    ct->ix = calloc(c->nix, sizeof(*ct->ix));
    return ct->ix ? 0 : -ENOMEM;
}

/* Store o (its custom index values in blob, which stays the caller's)
 * into ct, replacing any entry with the same key.  The previous object, if
 * any, goes to *old with the cache's reference (the caller releases it
 * after unlocking); if exclusive is set and the key exists, KC_EEXISTS and
 * nothing changes.  On any error nothing changed. */
static int content_put(kc_cache_t *c, shard_content_t *ct, kc_obj_t *o, uint64_t h,
                       const char *blob, int exclusive, kc_obj_t **old)
{
    int found, rc;
    size_t i;
    ixref_t ref;

    *old = NULL;
    rc = map_reserve(c, ct, 1);
    if (rc < 0)
        return rc;
    i = map_probe(ct, h, kc__obj_ns(o), o->ns_len, kc__obj_name(o), o->name_len, &found);
    if (found && exclusive)
        return KC_EEXISTS;
    if (found && slot_obj(ct->slots[i]) == o) {
        /* same object again: nothing to change, but the caller's new
         * reference replaces the cache's old one */
        *old = kc_obj_ref(o);
        return 0;
    }
    if (found && !has_ixr(c)) {
        /* The usual watch update: same key, so the same namespace node, and
         * no custom index.  Swap the object in that node's set (removing
         * one member leaves room for one, so nothing can fail) instead of
         * reserving, adding and removing through three lookups. */
        kc_obj_t *prev = slot_obj(ct->slots[i]);
        kc_obj_ref(o);
        if (c->namespaced) {
            const char *ns = kc__obj_ns(o);
            ixnode_t *n = ix_find(&ct->ix[0], ns, value_hash(ns));
            if (!n)
                abort(); /* a stored object's namespace has a node */
            set_remove(n, prev);
            set_add(n, o);
        }
        ct->slots[i] = make_slot(o, h);
        *old = prev;
        return 0;
    }
    rc = ix_prepare_entry(c, ct, o, blob, &ref);
    if (rc < 0)
        return rc;
    kc_obj_ref(o);
    ix_add_entry(c, ct, o, ref);
    if (found) {
        kc_obj_t *prev = slot_obj(ct->slots[i]);
        ixref_t prev_ref = ct->ixr ? ct->ixr[i] : 0;
        ct->slots[i] = make_slot(o, h); /* new stored before the old is dropped */
        if (ct->ixr)
            ct->ixr[i] = ref;
        ix_remove_entry(c, ct, prev, prev_ref);
        ixref_free(prev_ref);
        *old = prev;
    } else {
        ct->slots[i] = make_slot(o, h);
        if (ct->ixr)
            ct->ixr[i] = ref;
        ct->count++;
    }
    return 0;
}

/* Remove key; the cache's reference goes to *old. */
static int content_take(kc_cache_t *c, shard_content_t *ct, uint64_t h, const char *ns,
                        const char *name, int drop_index, kc_obj_t **old)
{
    int found;

    if (!ct->slots || ct->count == 0)
        return KC_ENOTFOUND;
    size_t i = map_probe(ct, h, ns, strlen(ns), name, strlen(name), &found);
    if (!found)
        return KC_ENOTFOUND;
    kc_obj_t *o = slot_obj(ct->slots[i]);
    ixref_t ref = ct->ixr ? ct->ixr[i] : 0;
    if (drop_index)
        ix_remove_entry(c, ct, o, ref);
    ixref_free(ref);
    if (ct->ixr)
        ct->ixr[i] = 0;
    map_remove_at(c, ct, i);
    *old = o;
    return 0;
}

/* ------------------------------------------------------------------ */
/* public API */

int kc_cache_new(const kc_cache_opts_t *opts, kc_cache_t **out)
{
    kc_cache_opts_t d = KC_CACHE_OPTS_INIT;
    kc_cache_t *c;

    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!opts)
        opts = &d;
    if (opts->shards == 0 || opts->shards > 65536 || (opts->shards & (opts->shards - 1)))
        return -EINVAL;
    if (opts->name_rule != KC_NAME_DNS1123_SUBDOMAIN && opts->name_rule != KC_NAME_PATH_SEGMENT)
        return -EINVAL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->nshards = opts->shards;
    c->shard_mask = opts->shards - 1;
    c->namespaced = opts->namespaced ? 1 : 0;
    c->name_rule = opts->name_rule;
    c->nix = c->namespaced ? 1 : 0;
    c->ix_first_custom = c->nix;
    c->shards = aligned_alloc(64, sizeof(shard_t) * c->nshards);
    if (!c->shards) {
        free(c);
        return -ENOMEM;
    }
    memset(c->shards, 0, sizeof(shard_t) * c->nshards);
    for (unsigned i = 0; i < c->nshards; i++) {
        lock_init(&c->shards[i].lock);
        atomic_init(&c->shards[i].n, 0);
    }
    atomic_init(&c->frozen, 0);
    *out = c;
    return 0;
}

void kc_cache_free(kc_cache_t *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < c->nshards; i++) {
        content_free(c, &c->shards[i].ct, 1);
        lock_destroy(&c->shards[i].lock);
    }
    for (unsigned d = 0; d < c->ndefs; d++)
        free(c->defs[d].name);
    free(c->shards);
    free(c);
}

int kc_cache_add_index(kc_cache_t *c, const char *name, kc_index_cb fn, void *ud)
{
    if (!c || !name || !*name || !fn)
        return -EINVAL;
    if (atomic_load_explicit(&c->frozen, memory_order_relaxed))
        return KC_EBUSY;
    if (strcmp(name, "namespace") == 0)
        return -EEXIST;
    for (unsigned d = 0; d < c->ndefs; d++)
        if (strcmp(c->defs[d].name, name) == 0)
            return -EEXIST;
    if (c->ndefs >= KC_CACHE_MAX_INDEXES)
        return -ENOSPC;
    char *n = strdup(name);
    if (!n)
        return -ENOMEM;
    c->defs[c->ndefs].name = n;
    c->defs[c->ndefs].fn = fn;
    c->defs[c->ndefs].ud = ud;
    c->ndefs++;
    c->nix++;
    return 0;
}

static void freeze(kc_cache_t *c)
{
    if (!atomic_load_explicit(&c->frozen, memory_order_relaxed))
        atomic_store_explicit(&c->frozen, 1, memory_order_relaxed);
}

/* Index contents are allocated on the first write (once nix is final). */
static int ensure_ix(kc_cache_t *c, shard_content_t *ct)
{
    if (ct->ix || c->nix == 0)
        return 0;
    ct->ix = calloc(c->nix, sizeof(*ct->ix));
    return ct->ix ? 0 : -ENOMEM;
}

static int check_key_scope(const kc_cache_t *c, const char *ns)
{
    if (c->namespaced ? ns[0] == '\0' : ns[0] != '\0')
        return KC_EBADNAME;
    return 0;
}

static int check_obj(const kc_cache_t *c, const kc_obj_t *o)
{
    if (check_key_scope(c, kc__obj_ns(o)) < 0)
        return KC_EBADNAME;
    if (c->name_rule != KC_NAME_PATH_SEGMENT && kc_name_validate(kc__obj_name(o), c->name_rule) < 0)
        return KC_EBADNAME;
    return 0;
}

static inline shard_t *shard_for(kc_cache_t *c, uint64_t h)
{
    return &c->shards[h & c->shard_mask];
}

static int get_lens(kc_cache_t *c, const char *ns, size_t nl, const char *name, size_t ml,
                    kc_obj_t **out)
{
    int found;

    if (c->namespaced ? nl == 0 : nl != 0)
        return KC_EBADNAME;
    if (nl > KC_NS_MAX || ml > KC_NAME_MAX || ml == 0)
        return KC_EBADNAME;
    uint64_t h = kc__key_hash(ns, nl, name, ml);
    shard_t *s = shard_for(c, h);

    rdlock(&s->lock);
    if (s->ct.count) {
        size_t i = map_probe(&s->ct, h, ns, nl, name, ml, &found);
        if (found)
            *out = kc_obj_ref(slot_obj(s->ct.slots[i]));
    }
    unlock(&s->lock);
    return *out ? 0 : KC_ENOTFOUND;
}

int kc_cache_get(kc_cache_t *c, const kc_key_t *key, kc_obj_t **out)
{
    if (!c || !key || !out)
        return -EINVAL;
    *out = NULL;
    return get_lens(c, key->ns, strnlen(key->ns, sizeof(key->ns)), key->name,
                    strnlen(key->name, sizeof(key->name)), out);
}

int kc_cache_get_nsname(kc_cache_t *c, const char *ns, const char *name, kc_obj_t **out)
{
    if (!c || !name || !out)
        return -EINVAL;
    *out = NULL;
    if (!ns)
        ns = "";
    return get_lens(c, ns, strnlen(ns, KC_NS_MAX + 1), name, strnlen(name, KC_NAME_MAX + 1),
                    out);
}

static int put(kc_cache_t *c, kc_obj_t *obj, int exclusive, kc_obj_t **old)
{
    char *ixv = NULL;
    kc_obj_t *prev = NULL;
    int rc;

    if (old)
        *old = NULL;
    if (!c || !obj)
        return -EINVAL;
    rc = check_obj(c, obj);
    if (rc < 0)
        return rc;
    freeze(c);
    if (c->ndefs) {
        rc = compute_ixv(c, obj, &ixv); /* user code: no lock held */
        if (rc < 0)
            return rc;
    }
    uint64_t h = kc__obj_hash(obj);
    shard_t *s = shard_for(c, h);
    wrlock(&s->lock);
    rc = ensure_ix(c, &s->ct);
    if (rc == 0)
        rc = content_put(c, &s->ct, obj, h, ixv, exclusive, &prev);
    if (rc == 0)
        atomic_store_explicit(&s->n, s->ct.count, memory_order_relaxed);
    unlock(&s->lock);
    free(ixv);
    if (rc < 0)
        return rc;
    if (old)
        *old = prev;
    else
        kc_obj_unref(prev);
    return 0;
}

int kc_cache_add(kc_cache_t *c, kc_obj_t *obj)
{
    return put(c, obj, 1, NULL);
}

int kc_cache_replace(kc_cache_t *c, kc_obj_t *obj, kc_obj_t **old)
{
    return put(c, obj, 0, old);
}

int kc_cache_take(kc_cache_t *c, const kc_key_t *key, kc_obj_t **old)
{
    kc_obj_t *o = NULL;
    int rc;

    if (old)
        *old = NULL;
    if (!c || !key)
        return -EINVAL;
    if (check_key_scope(c, key->ns) < 0)
        return KC_EBADNAME;
    size_t nl = strnlen(key->ns, sizeof(key->ns)), ml = strnlen(key->name, sizeof(key->name));
    if (nl > KC_NS_MAX || ml > KC_NAME_MAX || ml == 0)
        return KC_EBADNAME;
    uint64_t h = kc__key_hash(key->ns, nl, key->name, ml);
    shard_t *s = shard_for(c, h);
    freeze(c);
    wrlock(&s->lock);
    rc = content_take(c, &s->ct, h, key->ns, key->name, 1, &o);
    if (rc == 0)
        atomic_store_explicit(&s->n, s->ct.count, memory_order_relaxed);
    unlock(&s->lock);
    if (rc < 0)
        return rc;
    if (old)
        *old = o;
    else
        kc_obj_unref(o); /* after the unlock: readers hold their own refs */
    return 0;
}

int kc_cache_delete(kc_cache_t *c, const kc_key_t *key)
{
    return kc_cache_take(c, key, NULL);
}

void kc_objlist_free(kc_objlist_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->len; i++)
        kc_obj_unref(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->len = 0;
}

size_t kc_cache_len(kc_cache_t *c)
{
    size_t n = 0;

    for (unsigned i = 0; c && i < c->nshards; i++)
        n += atomic_load_explicit(&c->shards[i].n, memory_order_relaxed);
    return n;
}

typedef struct collect {
    kc_objlist_t *out;
    size_t cap;
    int err;
} collect_t;

static void collect_add(collect_t *co, kc_obj_t *o)
{
    if (co->err)
        return;
    if (co->out->len == co->cap) {
        size_t nc = co->cap ? co->cap * 2 : 64;
        kc_obj_t **a = realloc(co->out->items, nc * sizeof(*a));
        if (!a) {
            co->err = -ENOMEM;
            return;
        }
        co->out->items = a;
        co->cap = nc;
    }
    co->out->items[co->out->len++] = kc_obj_ref(o);
}

static void rdlock_all(kc_cache_t *c)
{
    for (unsigned i = 0; i < c->nshards; i++)
        rdlock(&c->shards[i].lock);
}

static void unlock_all(kc_cache_t *c)
{
    for (unsigned i = c->nshards; i-- > 0;)
        unlock(&c->shards[i].lock);
}

/* Collect from every shard under all read locks (a consistent snapshot).
 * ix < 0: every object; else the members of index ix with value. */
static int collect(kc_cache_t *c, int ix, const char *value, kc_objlist_t *out)
{
    collect_t co = { out, 0, 0 };
    uint64_t vh = value ? value_hash(value) : 0;

    out->items = NULL;
    out->len = 0;
    size_t guess = ix < 0 ? kc_cache_len(c) : 0;
    if (guess) {
        out->items = malloc(guess * sizeof(*out->items));
        co.cap = out->items ? guess : 0;
    }
    rdlock_all(c);
    for (unsigned s = 0; s < c->nshards && !co.err; s++) {
        shard_content_t *ct = &c->shards[s].ct;
        if (ix < 0) {
            for (size_t i = 0; ct->slots && i <= ct->mask; i++)
                if (ct->slots[i])
                    collect_add(&co, slot_obj(ct->slots[i]));
        } else if (ct->ix) {
            ixnode_t *n = ix_find(&ct->ix[ix], value, vh);
            size_t cap = 0;
            kc_obj_t **m = n ? node_slots(n, &cap) : NULL;
            for (size_t i = 0; i < cap; i++)
                if (m[i])
                    collect_add(&co, m[i]);
        }
    }
    unlock_all(c);
    if (co.err) {
        kc_objlist_free(out);
        return co.err;
    }
    return 0;
}

int kc_cache_list(kc_cache_t *c, kc_objlist_t *out)
{
    if (!c || !out)
        return -EINVAL;
    return collect(c, -1, NULL, out);
}

int kc_cache_list_ns(kc_cache_t *c, const char *ns, kc_objlist_t *out)
{
    if (!c || !out)
        return -EINVAL;
    out->items = NULL;
    out->len = 0;
    if (!c->namespaced)
        return -EINVAL;
    if (kc_namespace_validate(ns) < 0)
        return KC_EBADNAME;
    return collect(c, 0, ns, out);
}

int kc_cache_index_query(kc_cache_t *c, const char *index, const char *value,
                         kc_objlist_t *out)
{
    if (!c || !index || !value || !out)
        return -EINVAL;
    out->items = NULL;
    out->len = 0;
    if (c->namespaced && strcmp(index, "namespace") == 0)
        return collect(c, 0, value, out);
    for (unsigned d = 0; d < c->ndefs; d++)
        if (strcmp(c->defs[d].name, index) == 0)
            return collect(c, (int)(c->ix_first_custom + d), value, out);
    return KC_ENOTFOUND;
}

/* ------------------------------------------------------------------ */
/* replace_all */

static void report_and_free(kc_cache_t *c, shard_content_t *old, kc_obj_t *const *objs,
                            size_t n, const unsigned char *skip, kc_cache_diff_cb cb, void *ud)
{
    for (size_t i = 0; i < n; i++) {
        kc_obj_t *o = objs[i], *prev = NULL;
        if (skip[i])
            continue;
        uint64_t h = kc__obj_hash(o);
        shard_content_t *ct = &old[h & c->shard_mask];
        if (content_take(c, ct, h, kc__obj_ns(o), kc__obj_name(o), 0, &prev) < 0) {
            if (cb)
                cb(ud, KC_DIFF_ADDED, NULL, o);
            continue;
        }
        if (cb && prev != o &&
            strcmp(kc_obj_resource_version(prev), kc_obj_resource_version(o)) != 0)
            cb(ud, KC_DIFF_UPDATED, prev, o);
        kc_obj_unref(prev);
    }
    for (unsigned s = 0; s < c->nshards; s++) {
        shard_content_t *ct = &old[s];
        for (size_t i = 0; ct->slots && i <= ct->mask; i++) {
            kc_obj_t *o = slot_obj(ct->slots[i]);
            if (!o)
                continue;
            if (cb)
                cb(ud, KC_DIFF_DELETED, o, NULL);
        }
        content_free(c, ct, 1);
    }
}

int kc_cache_replace_all(kc_cache_t *c, kc_obj_t *const *objs, size_t n, kc_cache_diff_cb cb,
                         void *ud)
{
    shard_content_t *fresh = NULL;
    unsigned char *skip = NULL;
    int rc = 0;

    if (!c || (!objs && n))
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!objs[i])
            return -EINVAL;
        rc = check_obj(c, objs[i]);
        if (rc < 0)
            return rc;
    }
    freeze(c);
    fresh = calloc(c->nshards, sizeof(*fresh));
    skip = calloc(n ? n : 1, 1);
    if (!fresh || !skip) {
        rc = -ENOMEM;
        goto fail_alloc;
    }
    for (unsigned s = 0; s < c->nshards; s++) {
        rc = content_init(c, &fresh[s]);
        if (rc < 0)
            goto fail_build;
    }
    /* Build the new content off-lock.  Walk backwards so that of two
     * objects with one key the later one is kept and the earlier skipped. */
    for (size_t k = n; k-- > 0;) {
        kc_obj_t *o = objs[k], *prev = NULL;
        uint64_t h = kc__obj_hash(o);
        shard_content_t *ct = &fresh[h & c->shard_mask];
        int found = 0;
        if (ct->slots)
            map_probe(ct, h, kc__obj_ns(o), o->ns_len, kc__obj_name(o), o->name_len, &found);
        if (found) {
            skip[k] = 1;
            continue;
        }
        char *ixv = NULL;
        if (c->ndefs) {
            rc = compute_ixv(c, o, &ixv);
            if (rc < 0)
                goto fail_build;
        }
        rc = content_put(c, ct, o, h, ixv, 1, &prev);
        free(ixv);
        if (rc < 0)
            goto fail_build;
    }

    /* Swap: every write lock, in ascending order. */
    for (unsigned s = 0; s < c->nshards; s++)
        wrlock(&c->shards[s].lock);
    for (unsigned s = 0; s < c->nshards; s++) {
        shard_content_t tmp = c->shards[s].ct;
        c->shards[s].ct = fresh[s];
        fresh[s] = tmp;
        atomic_store_explicit(&c->shards[s].n, c->shards[s].ct.count, memory_order_relaxed);
    }
    unlock_all(c);

    /* fresh[] now holds the old content, ours alone: diff it, no lock held. */
    report_and_free(c, fresh, objs, n, skip, cb, ud);
    free(fresh);
    free(skip);
    return 0;

fail_build:
    for (unsigned s = 0; s < c->nshards; s++)
        content_free(c, &fresh[s], 1);
fail_alloc:
    free(fresh);
    free(skip);
    return rc;
}

/* ------------------------------------------------------------------ */
/* memory accounting */

static size_t msize(const void *p)
{
    return p ? malloc_usable_size((void *)p) + sizeof(size_t) : 0;
}

static size_t content_overhead(const kc_cache_t *c, const shard_content_t *ct, size_t *objs)
{
    size_t b = msize(ct->slots) + msize(ct->ixr) + msize(ct->ix);

    for (size_t i = 0; ct->slots && i <= ct->mask; i++) {
        if (ct->ixr && ct->ixr[i] && !(ct->ixr[i] & 1))
            b += msize((void *)ct->ixr[i]);
        if (objs && ct->slots[i])
            *objs += kc_obj_mem_size(slot_obj(ct->slots[i]));
    }
    for (unsigned x = 0; ct->ix && x < c->nix; x++) {
        const ixtab_t *t = &ct->ix[x];
        b += msize(t->nodes);
        for (size_t i = 0; t->nodes && i <= t->mask; i++)
            if (t->nodes[i])
                b += msize(t->nodes[i]) + (t->nodes[i]->mask ? msize(t->nodes[i]->u.set) : 0);
    }
    return b;
}

static size_t mem(kc_cache_t *c, size_t *objs)
{
    size_t b = msize(c) + msize(c->shards);

    for (unsigned d = 0; d < c->ndefs; d++)
        b += msize(c->defs[d].name);
    rdlock_all(c);
    for (unsigned s = 0; s < c->nshards; s++)
        b += content_overhead(c, &c->shards[s].ct, objs);
    unlock_all(c);
    return b;
}

size_t kc_cache_mem_overhead(kc_cache_t *c)
{
    return c ? mem(c, NULL) : 0;
}

size_t kc_cache_mem_usage(kc_cache_t *c)
{
    size_t objs = 0;

    if (!c)
        return 0;
    size_t b = mem(c, &objs);
    return b + objs;
}
