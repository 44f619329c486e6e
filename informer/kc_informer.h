/*
 * kc_informer: keep a kc_cache_t equal to the API server's state of one
 * resource (list, then watch), and tell handlers what changed.  This is
 * what client-go's Reflector, DeltaFIFO and SharedIndexInformer do together.
 *
 * Ownership, in one place:
 * - kc_informer_new borrows the client (it must outlive the informer) and
 *   copies every string of the options; the relist budget it borrows.
 * - The informer owns its cache; kc_informer_cache hands out a borrowed
 *   pointer valid until kc_informer_free.  Readers use the cache's own
 *   get/list calls, which return references they release.
 * - Objects passed to handler callbacks are borrowed for the duration of the
 *   call; take a reference (kc_obj_ref) to keep one.
 *
 * Threads: each informer runs one reflector thread (list, watch) and one
 * timer thread (resync, deadlines); while a watch runs, an applier thread
 * builds its events' objects and writes them to the cache in stream order
 * (the reflector meanwhile reads and frames the stream); each handler has
 * its own delivery thread.  Hand-offs between these threads are batched:
 * after a busy moment a thread collects for up to 0.2 ms before it takes
 * the next batch, so under load there is no wake-up per event, and an
 * event that arrives while they are idle goes through at once.  Handlers
 * are never called with an informer or cache lock held, and for one key a
 * handler sees events in the order they happened.
 *
 * Handler event rules (what a handler's view of the world replays to):
 * for every key, the sequence a handler receives is a valid history
 * starting from "absent": Add only for a key it does not have, Update and
 * Delete only for a key it has, and after the informer catches up, the set
 * of keys it has (and their newest objects) equals the cache.  A slow
 * handler's pending events for one key coalesce (see kc_handler_t).
 */
#ifndef KC_INFORMER_H
#define KC_INFORMER_H

#include <stddef.h>
#include <stdint.h>

#include "kc_common.h"
#include "kc_cache.h"
#include "kc_client.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- budget */

/* A process-wide relist budget: a token bucket shared by every informer
 * given the same object, so that a server hiccup that expires many watches
 * at once does not turn into a relist storm.  Each relist after the first
 * list of an informer takes one token (waiting for it if none is left).
 * Initial lists do not consume tokens. */
typedef struct kc_relist_budget kc_relist_budget_t;

/* per_second > 0 tokens refill per second, up to burst (>= 1) tokens; the
 * bucket starts full.  Returns 0 or -EINVAL/-ENOMEM.  Thread-safe. */
int kc_relist_budget_new(double per_second, double burst, kc_relist_budget_t **out);
/* NULL allowed.  No informer may still use it. */
void kc_relist_budget_free(kc_relist_budget_t *b);
/* Take one token now; returns how many nanoseconds the caller must wait
 * before using it (0 if a token was available).  Thread-safe. */
uint64_t kc_relist_budget_reserve(kc_relist_budget_t *b);

/* -------------------------------------------------------------- handlers */

/* Event callbacks.  Any may be NULL.  Objects are borrowed for the call.
 *
 * Coalescing (bounded memory for slow handlers): while events for a key are
 * pending for a handler, they merge into at most a Delete followed by an
 * Add, or a single Add, Update or Delete:
 *   Add(a), Update(a,b)           -> Add(b)
 *   Update(a,b), Update(b,c)      -> Update(a,c)
 *   Update(a,b), Delete(b)        -> Delete(b)
 *   Add(a), Delete(a)             -> nothing (the handler never saw the key)
 *   Delete(a), Add(b)             -> Delete(a), Add(b) (never an Update:
 *                                    b may be a different object, new UID)
 *   Delete(a), Add(b), Update(b,c) -> Delete(a), Add(c)
 * A Delete of a key the handler has is never dropped; final_state_unknown
 * is 1 when the informer learnt of the deletion from a relist (the object
 * passed is then the last state it knew, client-go's
 * DeletedFinalStateUnknown).  Resync delivers Update(obj, obj). */
typedef struct kc_handler {
    void (*on_add)(void *ud, kc_obj_t *obj);
    void (*on_update)(void *ud, kc_obj_t *old, kc_obj_t *new_obj);
    void (*on_delete)(void *ud, kc_obj_t *obj, int final_state_unknown);
    void *ud;
} kc_handler_t;

#define KC_HANDLER_INIT { NULL, NULL, NULL, NULL }

/* Per-handler figures for metrics. */
typedef struct kc_handler_stats {
    size_t pending;          /* keys with undelivered events now */
    size_t pending_hwm;      /* high-water mark of pending */
    uint64_t adds;           /* callbacks delivered, by kind */
    uint64_t updates;
    uint64_t deletes;
    uint64_t coalesced;      /* events merged into a pending one */
    uint64_t blocked;        /* times the informer waited for backlog room */
} kc_handler_stats_t;

/* --------------------------------------------------------------- options */

/* Transform hook: runs on every object before it is stored (list and
 * watch).  in is borrowed; on success *out is a new reference (it may be a
 * new reference to in itself).  A negative return drops nothing: the
 * informer logs it and stores in unchanged.  Called on the reflector
 * thread, with no lock held. */
typedef int (*kc_transform_cb)(void *ud, kc_obj_t *in, kc_obj_t **out);

typedef struct kc_informer_opts {
    const kc_resource_t *resource;   /* required; copied */
    const char *namespace_;          /* NULL or "": all namespaces */
    const char *label_selector;      /* NULL: none */
    const char *field_selector;      /* NULL: none */
    long page_size;                  /* list limit; default 500, 0 = unpaged */
    double resync_s;                 /* 0: no resync */
    int use_streaming_list;          /* try sendInitialEvents=true first */
    long streaming_deadline_ms;      /* initial-events-end deadline; 60 s */
    long backoff_initial_ms;         /* 800 */
    long backoff_max_ms;             /* 30000 */
    long backoff_reset_ms;           /* stable period that resets; 120000 */
    long watch_timeout_min_s;        /* randomised watch timeout; 300 */
    long watch_timeout_max_s;        /* 600 */
    kc_relist_budget_t *budget;      /* NULL: relists are not budgeted */
    int keep_managed_fields;         /* 0: drop metadata.managedFields */
    kc_transform_cb transform;       /* NULL: none beyond the above */
    void *transform_ud;
    size_t handler_backlog_max;      /* pending keys per handler; 65536 */
    uint64_t seed;                   /* jitter seed; 0: from clock+address */
    kc_logger_t log;
    size_t pack_min;                 /* kc_obj_opts_t.pack_min of the stored
                                      * objects: JSON of this many bytes or
                                      * more kept compressed; 2048; 0: never */
} kc_informer_opts_t;

#define KC_INFORMER_OPTS_INIT                                                \
    { NULL, NULL, NULL, NULL, 500, 0.0, 0, 60000, 800, 30000, 120000, 300,   \
      600, NULL, 0, NULL, NULL, 65536, 0, KC_LOGGER_INIT, KC_OBJ_PACK_MIN_DEFAULT }

/* ----------------------------------------------------------------- state */

typedef enum {
    KC_INFORMER_NEW = 0,      /* created, not started */
    KC_INFORMER_LISTING,      /* listing (paged or streaming) */
    KC_INFORMER_WATCHING,     /* watch established or being opened */
    KC_INFORMER_BACKOFF,      /* waiting after an error (see last_error) */
    KC_INFORMER_STOPPED
} kc_informer_phase_t;

const char *kc_informer_phase_name(kc_informer_phase_t p);

/* Counters and state, copied out under the informer's lock. */
typedef struct kc_informer_state {
    kc_informer_phase_t phase;
    double phase_since;          /* wall time the phase began */
    int synced;                  /* the first list completed */
    int last_error;              /* 0 or the last error code */
    char last_error_msg[256];    /* what and where; "" if none */
    double last_error_time;      /* wall time, 0 if none */
    char last_rv[64];            /* newest resourceVersion seen */
    double since_last_event_s;   /* since the last event or bookmark (or
                                    list); -1 before the first */
    int streaming_supported;     /* -1 unknown, 0 no, 1 yes */
    size_t cached_objects;
    uint64_t lists;              /* completed lists, initial included */
    uint64_t relists;            /* lists after the first (410 etc.) */
    uint64_t watches;            /* watch requests started */
    uint64_t restarts;           /* watches resumed after an end or error */
    uint64_t errors;             /* failed list/watch attempts */
    uint64_t events_added;       /* watch events received, by type */
    uint64_t events_modified;
    uint64_t events_deleted;
    uint64_t events_bookmark;
    uint64_t events_error;
    uint64_t relist_deletes;     /* Deletes emitted from a relist diff */
    uint64_t relist_updates;     /* Updates emitted from a relist diff */
    uint64_t relist_adds;        /* Adds emitted from a relist diff */
    uint64_t resyncs;
} kc_informer_state_t;

/* -------------------------------------------------------------- informer */

typedef struct kc_informer kc_informer_t;

/* Create (not started).  Borrows client (must outlive the informer) and
 * o->budget; copies the rest.  Returns 0, -EINVAL (no resource, bad
 * option; eb says which), -ENOMEM.  Thread-safe. */
int kc_informer_new(kc_client_t *client, const kc_informer_opts_t *o,
                    kc_informer_t **out, kc_errbuf_t *eb);

/* Register a handler (copied; h->ud is borrowed and must stay valid until
 * kc_informer_free).  Added after start, it first receives an Add for every
 * object already cached, then the live events, with nothing missed or
 * doubled.  Returns 0, -ENOMEM, or KC_ESTOPPED after stop.  Thread-safe;
 * must not be called from a handler callback of the same informer. */
int kc_informer_add_handler(kc_informer_t *inf, const kc_handler_t *h);

/* Start the threads.  Returns 0, KC_EBUSY if already started, or -errno.
 * Thread-safe. */
int kc_informer_start(kc_informer_t *inf);

/* Stop every thread (cancelling a running request) and join them; pending
 * handler events are dropped.  Waits for a running callback to return, so
 * it must not be called from a handler.  Idempotent; returns 0.
 * Thread-safe. */
int kc_informer_stop(kc_informer_t *inf);

/* Stops if needed and frees everything, the cache included.  NULL allowed.
 * No other call on inf may be running or follow. */
void kc_informer_free(kc_informer_t *inf);

/* The informer's cache: borrowed, valid until kc_informer_free.  Only the
 * informer writes to it.  Thread-safe. */
kc_cache_t *kc_informer_cache(kc_informer_t *inf);

/* 1 once the first list has been stored in the cache, else 0.
 * Thread-safe. */
int kc_informer_has_synced(kc_informer_t *inf);

/* Wait until synced: 0, KC_ETIMEOUT (timeout_ms < 0: no limit) or
 * KC_ESTOPPED.  Thread-safe. */
int kc_informer_wait_synced(kc_informer_t *inf, long timeout_ms);

/* Wait until every handler has delivered every event for the changes the
 * cache held when the call began (an emission in progress, such as a
 * relist's diff, is waited for): 0 or KC_ETIMEOUT.  Meant for tests and
 * orderly shutdown.  Thread-safe; not from a handler. */
int kc_informer_wait_handlers_idle(kc_informer_t *inf, long timeout_ms);

/* Copy the state and counters.  Returns 0.  Thread-safe. */
int kc_informer_state(kc_informer_t *inf, kc_informer_state_t *out);

/* Figures of handler number i (in registration order): 0 or KC_ENOTFOUND.
 * Thread-safe. */
int kc_informer_handler_stats(kc_informer_t *inf, size_t i, kc_handler_stats_t *out);

/* -------------------------------------------------------------- factory */

/* One informer per (resource, namespace scope, label selector, field
 * selector), shared by every controller of the process. */
typedef struct kc_informer_factory kc_informer_factory_t;

/* defaults: options for every informer it makes (resource, namespace and
 * selectors are ignored); copied.  Borrows client and defaults->budget. */
int kc_informer_factory_new(kc_client_t *client, const kc_informer_opts_t *defaults,
                            kc_informer_factory_t **out);

/* The informer for that scope, created on first use; started at once if
 * the factory was started.  *out is borrowed: owned by the factory.
 * ns NULL or "" = all namespaces; selectors NULL or "" = none.
 * Thread-safe. */
int kc_informer_factory_get(kc_informer_factory_t *f, const kc_resource_t *res,
                            const char *ns, const char *label_selector,
                            const char *field_selector, kc_informer_t **out);

/* Start every informer made so far (and those made later).  Thread-safe. */
int kc_informer_factory_start(kc_informer_factory_t *f);

/* Wait until every informer made so far has synced: 0, KC_ETIMEOUT or
 * KC_ESTOPPED.  Thread-safe. */
int kc_informer_factory_wait_synced(kc_informer_factory_t *f, long timeout_ms);

/* Stop every informer.  Thread-safe; idempotent. */
void kc_informer_factory_stop(kc_informer_factory_t *f);

/* Stop and free every informer and the factory.  NULL allowed. */
void kc_informer_factory_free(kc_informer_factory_t *f);

#ifdef __cplusplus
}
#endif
#endif
