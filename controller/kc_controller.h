/*
 * kcache controller runtime: work queue, metrics registry and Prometheus
 * exposition, probe/metrics HTTP servers, structured logger, leader
 * election, controllers and the manager, and the bundled replicator.
 *
 * Ownership: every kc_x_new() has a kc_x_free() that accepts NULL.  String
 * arguments are copied unless a comment says "borrows".  Each prototype's
 * comment ends with its thread rule.
 */
#ifndef KC_CONTROLLER_H
#define KC_CONTROLLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kc_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ===================================================================== */
/* Metrics registry and Prometheus text exposition (format 0.0.4)         */
/* ===================================================================== */

typedef struct kc_metrics kc_metrics_t;  /* a registry of metric families */
typedef struct kc_metric kc_metric_t;    /* one family: name, help, labels */

typedef enum {
    KC_METRIC_COUNTER = 0,
    KC_METRIC_GAUGE = 1,
    KC_METRIC_HISTOGRAM = 2
} kc_metric_type_t;

/* Called at the start of every kc_metrics_write(), without any registry
 * lock held, so that a component can refresh gauges computed on demand
 * (e.g. workqueue_unfinished_work_seconds). */
typedef void (*kc_metrics_collect_cb)(void *ud);

/* Create an empty registry.  Thread-safe. */
int kc_metrics_new(kc_metrics_t **out);
/* Free the registry and every family in it.  Families handed out become
 * invalid.  NULL is accepted.  Not thread-safe with users of m. */
void kc_metrics_free(kc_metrics_t *m);

/* Register a family, or return the existing one when a family of this name
 * with the same type and label names exists (so components sharing one
 * registry can each "register" workqueue_depth).  name and help are copied;
 * label_names is a NULL-terminated array (NULL for none), copied.  For a
 * histogram, buckets are the ascending upper bounds (+Inf is implicit),
 * copied; NULL/0 selects the Prometheus defaults.  Returns -EINVAL for a bad
 * name, KC_EEXISTS when the name exists with another type or labels.
 * *out is borrowed from the registry.  Thread-safe. */
int kc_metrics_counter(kc_metrics_t *m, const char *name, const char *help,
                       const char *const *label_names, kc_metric_t **out);
int kc_metrics_gauge(kc_metrics_t *m, const char *name, const char *help,
                     const char *const *label_names, kc_metric_t **out);
int kc_metrics_histogram(kc_metrics_t *m, const char *name, const char *help,
                         const char *const *label_names, const double *buckets,
                         size_t nbuckets, kc_metric_t **out);

/* Update the series named by label_values (same count and order as the
 * family's label names; NULL when it has none; copied on first use).
 * add: counters (v >= 0) and gauges; set: gauges, and counters that
 * mirror a count kept elsewhere (a lower value is ignored); observe:
 * histograms.
 * A NULL metric is a no-op, so optional metrics need no checks.  A call on
 * the wrong type is ignored.  Thread-safe. */
void kc_metric_add(kc_metric_t *f, const char *const *label_values, double v);
void kc_metric_inc(kc_metric_t *f, const char *const *label_values);
void kc_metric_set(kc_metric_t *f, const char *const *label_values, double v);
void kc_metric_observe(kc_metric_t *f, const char *const *label_values, double v);
/* Current value of a counter/gauge series (sum for a histogram); 0 when the
 * series does not exist.  For tests and progress displays.  Thread-safe. */
double kc_metric_value(kc_metric_t *f, const char *const *label_values);
/* Drop one series (e.g. a resource that is no longer watched).  Thread-safe. */
void kc_metric_remove(kc_metric_t *f, const char *const *label_values);

/* Register / remove a collect callback (see kc_metrics_collect_cb).
 * Removal waits for nothing: the caller must not free ud while a write may
 * run; components remove their collector before freeing themselves and
 * kc_metrics_write holds a read reference during the calls.  Thread-safe. */
int kc_metrics_add_collector(kc_metrics_t *m, kc_metrics_collect_cb cb, void *ud);
void kc_metrics_remove_collector(kc_metrics_t *m, kc_metrics_collect_cb cb, void *ud);

/* Render every family in the Prometheus text format 0.0.4 (families sorted
 * by name, series in creation order, HELP/label values escaped).  *out is a
 * NUL-terminated malloc'd string the caller frees; *len its length.
 * Thread-safe. */
int kc_metrics_write(kc_metrics_t *m, char **out, size_t *len);

/* Escape a label value (\\, \", \n) or HELP text (\\, \n) into dst
 * (always NUL-terminated); returns the length needed without the NUL, as
 * snprintf does.  Thread-safe. */
size_t kc_metrics_escape_label(char *dst, size_t dstsz, const char *s);
size_t kc_metrics_escape_help(char *dst, size_t dstsz, const char *s);

/* ===================================================================== */
/* Work queue (client-go's workqueue semantics)                           */
/* ===================================================================== */

/*
 * Keys are strings ("ns/name"), copied on add.  Rules:
 *  - an item added while it is queued is not queued twice;
 *  - an item added while a worker processes it (between get and done) is
 *    queued again once done is called, and is never handed to two workers
 *    at once;
 *  - FIFO otherwise;
 *  - add_after queues the item once the delay has passed (a pending delayed
 *    add of the same key keeps the earlier deadline);
 *  - add_rate_limited = add_after(max(per-item exponential backoff, overall
 *    token bucket)), capped at max_delay.  The per-item failure count rises
 *    only when add_rate_limited is called while the key is NOT already
 *    waiting out a rate-limited delay, so a new event for a key in backoff
 *    does not raise its count; forget resets it;
 *  - after shutdown, adds are ignored, get still hands out what is queued
 *    and then returns KC_ESTOPPED; waiting (delayed) items are dropped.
 */
typedef struct kc_workqueue kc_workqueue_t;

typedef struct kc_workqueue_opts {
    const char *name;          /* metric label "name"/"controller"; copied */
    uint64_t base_delay_ns;    /* per-item backoff start (5 ms) */
    uint64_t max_delay_ns;     /* per-item backoff cap and overall cap (1000 s) */
    double qps;                /* overall token bucket refill (10/s); <= 0 disables */
    int burst;                 /* token bucket size (100) */
    kc_metrics_t *metrics;     /* optional registry; borrowed, must outlive q */
} kc_workqueue_opts_t;

#define KC_WORKQUEUE_OPTS_INIT \
    { "", 5000000ull, 1000000000000ull, 10.0, 100, NULL }

/* Create a queue.  Copies o.  Thread-safe. */
int kc_workqueue_new(const kc_workqueue_opts_t *o, kc_workqueue_t **out);
/* Free the queue (shuts it down first).  No thread may be inside a queue
 * call.  NULL accepted. */
void kc_workqueue_free(kc_workqueue_t *q);

/* Queue key now.  Returns 0 (also when deduplicated), KC_ESTOPPED after
 * shutdown, -ENOMEM.  Thread-safe. */
int kc_workqueue_add(kc_workqueue_t *q, const char *key);
/* Queue key after delay_ns (0 = now).  Thread-safe. */
int kc_workqueue_add_after(kc_workqueue_t *q, const char *key, uint64_t delay_ns);
/* Queue key after its rate-limited delay (see above).  If delay_out is not
 * NULL it receives the delay chosen.  Thread-safe. */
int kc_workqueue_add_rate_limited(kc_workqueue_t *q, const char *key,
                                  uint64_t *delay_out);
/* Reset key's failure count.  Thread-safe. */
void kc_workqueue_forget(kc_workqueue_t *q, const char *key);
/* key's failure count.  Thread-safe. */
int kc_workqueue_num_requeues(kc_workqueue_t *q, const char *key);

/* Block until an item is available; *key_out receives a malloc'd copy the
 * caller frees (after calling done with it).  Returns 0 or KC_ESTOPPED
 * once the queue is shut down and empty.  Thread-safe. */
int kc_workqueue_get(kc_workqueue_t *q, char **key_out);
/* Like get, but gives up after timeout_ns with KC_ETIMEOUT.  Thread-safe. */
int kc_workqueue_get_timeout(kc_workqueue_t *q, uint64_t timeout_ns, char **key_out);
/* Mark key's processing finished; requeues it if it was added meanwhile.
 * Thread-safe. */
void kc_workqueue_done(kc_workqueue_t *q, const char *key);

/* Stop accepting items and wake every getter.  Does not wait.  Thread-safe. */
void kc_workqueue_shutdown(kc_workqueue_t *q);
/* Shut down, then wait until every item being processed is done, at most
 * timeout_ns (0 = forever).  Returns 0 or KC_ETIMEOUT.  Thread-safe. */
int kc_workqueue_shutdown_drain(kc_workqueue_t *q, uint64_t timeout_ns);
bool kc_workqueue_shutting_down(kc_workqueue_t *q);
/* Items queued and ready (not processing, not waiting).  Thread-safe. */
size_t kc_workqueue_len(kc_workqueue_t *q);
/* Items waiting out a delay.  Thread-safe. */
size_t kc_workqueue_waiting(kc_workqueue_t *q);
/* Items being processed.  Thread-safe. */
size_t kc_workqueue_processing(kc_workqueue_t *q);


/* ===================================================================== */
/* Probe and metrics HTTP servers (libevent evhttp)                        */
/* ===================================================================== */

/* Readiness/health check: return true when ready; otherwise write a short
 * reason into why (NUL-terminated) and return false.  Called on the
 * server's thread with no kcache lock held; must be thread-safe. */
typedef bool (*kc_check_cb)(void *ud, char *why, size_t whysz);

typedef struct kc_httpserver kc_httpserver_t;

typedef struct kc_httpserver_opts {
    /* "host:port", ":port" (all interfaces), "[v6]:port"; port 0 picks a
     * free port; "0" or "" disables that server.  When both are equal one
     * listener serves all paths.  Borrowed during start only. */
    const char *metrics_addr;       /* serves /metrics (default ":8080") */
    const char *probe_addr;         /* serves /healthz, /readyz (":8081") */
    kc_metrics_t *metrics;          /* borrowed; must outlive the server */
    kc_check_cb ready;              /* NULL: always ready */
    void *ready_ud;
    kc_check_cb healthy;            /* NULL: healthy while the server runs */
    void *healthy_ud;
    kc_logger_t log;
} kc_httpserver_opts_t;

#define KC_HTTPSERVER_OPTS_INIT \
    { ":8080", ":8081", NULL, NULL, NULL, NULL, NULL, KC_LOGGER_INIT }

/* Bind the listeners and start the server thread.  On error nothing is
 * left running and eb says which address failed.  Thread-safe. */
int kc_httpserver_start(const kc_httpserver_opts_t *o, kc_httpserver_t **out,
                        kc_errbuf_t *eb);
/* The bound TCP port of the metrics (which=0) or probe (which=1) listener,
 * or 0 when disabled.  Thread-safe. */
int kc_httpserver_port(kc_httpserver_t *s, int which);
/* Stop the thread, close the listeners and free s.  NULL accepted.
 * Not to be called from a check callback. */
void kc_httpserver_stop(kc_httpserver_t *s);

/* ===================================================================== */
/* Structured logger for programs                                         */
/* ===================================================================== */

typedef enum { KC_LOGFMT_TEXT = 0, KC_LOGFMT_JSON = 1 } kc_log_format_t;

typedef struct kc_stdlog kc_stdlog_t;

/* A logger writing one line per message to fd (2 = stderr): logfmt
 * ("ts=... level=info logger=informer msg=\"...\"") or JSON lines
 * ({"ts":...,"level":...,"logger":...,"msg":...}).  verbosity 0 logs
 * error/warn/info, 1 adds debug, 2 and more add trace.  As a last line of
 * defence it masks anything after "Bearer " or "token=".  Thread-safe
 * (one write(2) per line).  fd is borrowed. */
int kc_stdlog_new(int fd, kc_log_format_t fmt, int verbosity, kc_stdlog_t **out);
void kc_stdlog_free(kc_stdlog_t *l);
/* A kc_logger_t that writes through l; valid while l lives. */
kc_logger_t kc_stdlog_logger(kc_stdlog_t *l);
/* Format one line into dst (for tests); returns its length. */
size_t kc_stdlog_format(kc_log_format_t fmt, double wall_time, kc_log_level_t level,
                        const char *component, const char *msg, char *dst, size_t dstsz);


/* ===================================================================== */
/* Leader election on a coordination.k8s.io/v1 Lease                      */
/* ===================================================================== */

struct kc_client;

typedef struct kc_leader kc_leader_t;

/* Called on the elector's thread with no lock held; must not block long
 * and must not call kc_leader_stop. */
typedef void (*kc_leader_cb)(void *ud);
typedef void (*kc_leader_new_cb)(void *ud, const char *identity);

typedef struct kc_leader_opts {
    struct kc_client *client;       /* borrowed; should have a request timeout
                                     * below retry_period and no retries */
    const char *lease_namespace;    /* copied */
    const char *lease_name;         /* copied */
    const char *identity;           /* copied; NULL: $POD_NAME or hostname,
                                     * plus "_" and a random suffix */
    uint64_t lease_duration_ns;     /* 15 s */
    uint64_t renew_deadline_ns;     /* 10 s */
    uint64_t retry_period_ns;       /* 2 s */
    bool release_on_stop;           /* true: kc_leader_stop gives the lease up */
    kc_leader_cb on_started_leading;
    kc_leader_cb on_stopped_leading;
    kc_leader_new_cb on_new_leader; /* holder changed (may be NULL) */
    void *ud;
    kc_metrics_t *metrics;          /* leader_election_master_status; borrowed */
    kc_logger_t log;
} kc_leader_opts_t;

#define KC_LEADER_OPTS_INIT                                                  \
    { NULL, NULL, NULL, NULL, 15000000000ull, 10000000000ull, 2000000000ull,  \
      true, NULL, NULL, NULL, NULL, NULL, KC_LOGGER_INIT }

/* Validate o (lease > renew deadline > 1.2 x retry), copy it and start the
 * elector thread, which campaigns for the lease (client-go's algorithm:
 * create if missing, take over once the holder's lease expired by the
 * local clock, optimistic concurrency on resourceVersion), renews every
 * retry period while leading, and stops leading at once (callback) when a
 * renewal has not succeeded within the renew deadline; it then campaigns
 * again.  Thread-safe. */
int kc_leader_start(const kc_leader_opts_t *o, kc_leader_t **out, kc_errbuf_t *eb);
/* True while this elector holds the lease and its last successful renewal
 * is younger than the renew deadline.  Thread-safe. */
bool kc_leader_is_leader(kc_leader_t *le);
/* This elector's identity.  Borrowed, valid while le lives.  Thread-safe. */
const char *kc_leader_identity(kc_leader_t *le);
/* Stop the elector thread; if leading and release_on_stop, release the
 * lease (holderIdentity "", leaseDurationSeconds 1) so a standby takes over
 * at once; on_stopped_leading runs if it was leading.  Frees le.  NULL
 * accepted.  Not from a callback. */
void kc_leader_stop(kc_leader_t *le);
/* Like stop but never releases: the lease stays held until it expires, as
 * after a crash.  For tests and for exiting on a fatal error. */
void kc_leader_abandon(kc_leader_t *le);


/* ===================================================================== */
/* Controllers                                                            */
/* ===================================================================== */

struct kc_obj;
struct kc_key;
struct kc_informer;
struct kc_informer_factory;

typedef enum {
    KC_RESULT_DONE = 0,        /* success: forget the key's backoff */
    KC_RESULT_REQUEUE,         /* reconcile again after the rate-limited delay */
    KC_RESULT_REQUEUE_AFTER,   /* reconcile again after after_ns (backoff reset) */
    KC_RESULT_ERROR            /* failure: logged, counted, rate-limited requeue */
} kc_result_kind_t;

typedef struct kc_result {
    kc_result_kind_t kind;
    uint64_t after_ns;         /* KC_RESULT_REQUEUE_AFTER */
    int err;                   /* KC_RESULT_ERROR: the code, for the log line */
} kc_result_t;

#define KC_RESULT_OK ((kc_result_t){ KC_RESULT_DONE, 0, 0 })

/* Reconcile one object: make the world match what key's object asks for.
 * Called from a worker thread with no kcache lock held; a key is never
 * reconciled by two workers at once.  Must be thread-safe across keys. */
typedef kc_result_t (*kc_reconcile_cb)(void *ud, const struct kc_key *key);

typedef enum {
    KC_EVENT_CREATE = 0,
    KC_EVENT_UPDATE = 1,
    KC_EVENT_DELETE = 2
} kc_event_type_t;

/* Filter: return true to let the event through.  old is NULL except for
 * updates.  Called on the informer's handler thread. */
typedef bool (*kc_predicate_cb)(void *ud, kc_event_type_t t, struct kc_obj *old,
                                struct kc_obj *obj);
/* Built-in predicate: updates pass only when metadata.generation, the
 * labels or the annotations changed (creates and deletes always pass). */
bool kc_predicate_generation_or_metadata_changed(void *ud, kc_event_type_t t,
                                                 struct kc_obj *old, struct kc_obj *obj);

/* Map function: call emit(ctx, key) for every key to reconcile because obj
 * changed. */
typedef void (*kc_emit_key_cb)(void *ctx, const char *key);
typedef void (*kc_map_cb)(void *ud, struct kc_obj *obj, kc_emit_key_cb emit, void *ctx);

typedef enum {
    KC_SOURCE_SELF = 0,   /* primary resource: enqueue the object's own key */
    KC_SOURCE_OWNER,      /* owned resource: enqueue the owner's key (same
                           * namespace) from ownerReferences of owner_kind */
    KC_SOURCE_MAP         /* anything else: keys from map() */
} kc_source_kind_t;

typedef struct kc_source {
    struct kc_informer *informer;  /* borrowed; must outlive the controller's
                                    * use: stop informers before controllers */
    kc_source_kind_t kind;
    const char *owner_kind;        /* KC_SOURCE_OWNER: e.g. "Secret"; copied */
    const char *owner_group;       /* KC_SOURCE_OWNER: API group ("" core, NULL any); copied */
    bool owner_controller_only;    /* only the ownerReference with controller=true */
    kc_map_cb map;                 /* KC_SOURCE_MAP */
    void *map_ud;
    kc_predicate_cb predicate;     /* NULL: every event */
    void *predicate_ud;
} kc_source_t;

#define KC_SOURCE_INIT { NULL, KC_SOURCE_SELF, NULL, NULL, false, NULL, NULL, NULL, NULL }

typedef struct kc_controller kc_controller_t;

typedef struct kc_controller_opts {
    const char *name;              /* metrics label and log component; copied */
    kc_reconcile_cb reconcile;
    void *ud;
    int workers;                   /* max concurrent reconciles (1) */
    uint64_t base_delay_ns;        /* rate limiter, see kc_workqueue_opts_t */
    uint64_t max_delay_ns;
    double qps;
    int burst;
    kc_metrics_t *metrics;         /* borrowed; may be NULL */
    kc_logger_t log;
} kc_controller_opts_t;

#define KC_CONTROLLER_OPTS_INIT \
    { "", NULL, NULL, 1, 5000000ull, 1000000000000ull, 10.0, 100, NULL, KC_LOGGER_INIT }

/* Create a controller (workers not started; events that arrive before
 * start are queued, deduplicated).  Copies o.  Thread-safe. */
int kc_controller_new(const kc_controller_opts_t *o, kc_controller_t **out, kc_errbuf_t *eb);
/* Feed the controller from an informer (registers a handler; copies s).
 * Before kc_controller_start or after: both work.  Thread-safe. */
int kc_controller_watch(kc_controller_t *c, const kc_source_t *s);
/* Enqueue a key ("ns/name") directly.  Thread-safe. */
int kc_controller_enqueue(kc_controller_t *c, const char *key);
/* The controller's queue (borrowed), e.g. for tests.  Thread-safe. */
kc_workqueue_t *kc_controller_queue(kc_controller_t *c);
const char *kc_controller_name(kc_controller_t *c);
/* Start the worker threads.  KC_EBUSY if started.  Thread-safe. */
int kc_controller_start(kc_controller_t *c);
/* Stop: no new reconcile starts; running ones get timeout_ns (0: no
 * limit) to finish, then the workers are joined.  Returns 0, or
 * KC_ETIMEOUT when a reconcile is still running (the controller must then
 * not be freed: kc_controller_free leaks it rather than race).  Stop the
 * informers feeding it first.  Idempotent.  Thread-safe. */
int kc_controller_stop(kc_controller_t *c, uint64_t timeout_ns);
/* Free a stopped (or never started) controller.  NULL accepted. */
void kc_controller_free(kc_controller_t *c);

/* ===================================================================== */
/* Manager                                                                */
/* ===================================================================== */

typedef struct kc_manager kc_manager_t;

typedef struct kc_manager_opts {
    struct kc_informer_factory *informers; /* borrowed; started and stopped
                                             * by the manager */
    kc_metrics_t *metrics;           /* borrowed; NULL: no /metrics content */
    const char *metrics_addr;        /* ":8080"; "0" disables */
    const char *probe_addr;          /* ":8081"; "0" disables */
    uint64_t sync_timeout_ns;        /* waiting for caches (0: forever) */
    uint64_t shutdown_timeout_ns;    /* bound for running reconciles (30 s) */
    bool leader_elect;               /* run controllers only while leading */
    kc_leader_opts_t leader;         /* used when leader_elect; the manager
                                      * fills callbacks and metrics */
    kc_logger_t log;
} kc_manager_opts_t;

#define KC_MANAGER_OPTS_INIT                                                   \
    { NULL, NULL, ":8080", ":8081", 0, 30000000000ull, false, KC_LEADER_OPTS_INIT, \
      KC_LOGGER_INIT }

/* Create (nothing runs yet).  Copies o.  Thread-safe. */
int kc_manager_new(const kc_manager_opts_t *o, kc_manager_t **out, kc_errbuf_t *eb);
/* Hand a controller to the manager (it starts, stops and frees it).
 * Before kc_manager_run only.  Not thread-safe. */
int kc_manager_add(kc_manager_t *m, kc_controller_t *c);
/* Run until kc_manager_request_stop: serve probes and metrics, start the
 * informers, wait for their caches (then /readyz turns 200), campaign for
 * the lease if asked, run the controllers (while leading).  Then, in
 * order: stop the informers, stop the controllers (running reconciles get
 * shutdown_timeout_ns), release the lease, stop the servers.  Returns 0
 * after a requested stop; KC_ESTOPPED when leadership was lost (the
 * process should exit non-zero, as controller-runtime does); KC_ETIMEOUT
 * when caches did not sync in time; other errors from startup (eb says
 * what).  Blocks the calling thread. */
int kc_manager_run(kc_manager_t *m, kc_errbuf_t *eb);
/* Ask run to return.  Thread-safe and async-signal-safe. */
void kc_manager_request_stop(kc_manager_t *m);
/* True once every cache has synced.  Thread-safe. */
bool kc_manager_ready(kc_manager_t *m);
/* True while this replica runs the controllers.  Thread-safe. */
bool kc_manager_leading(kc_manager_t *m);
/* Bound ports of the metrics (0) and probe (1) servers while running. */
int kc_manager_port(kc_manager_t *m, int which);
void kc_manager_free(kc_manager_t *m);


/* ===================================================================== */
/* The replicator: the controller kcache ships                            */
/* ===================================================================== */

#define KC_REPLICATE_TO_ANNOTATION "kcache.io/replicate-to"
#define KC_REPLICATED_FROM_ANNOTATION "kcache.io/replicated-from"
#define KC_MANAGED_BY_LABEL "app.kubernetes.io/managed-by"
#define KC_MANAGED_BY_VALUE "kcache"

/*
 * Copies Secrets and ConfigMaps annotated kcache.io/replicate-to:
 * "team-a,team-b,staging-*" (names and fnmatch globs) into every matching
 * namespace, existing and future.  Data, type and the source's labels are
 * copied; a copy carries app.kubernetes.io/managed-by: kcache and
 * kcache.io/replicated-from: NS/NAME.  Copies follow the source, hand edits
 * and deletions are undone, and copies are deleted when their namespace
 * leaves the annotation, the annotation goes or the source goes.  An object
 * it did not make (no managed-by label, or another source's copy) is never
 * overwritten or deleted: the conflict is logged, counted
 * (kcache_replicator_conflicts_total) and reported as a Warning Event, once
 * per conflicting object; it is re-checked every conflict_retry_ns.
 */
typedef struct kc_replicator kc_replicator_t;

typedef struct kc_replicator_opts {
    struct kc_client *client;               /* borrowed */
    struct kc_informer_factory *informers;  /* borrowed; not yet started */
    const char *source_namespace;           /* only sources here; NULL: all */
    int workers;                            /* per kind (2) */
    uint64_t conflict_retry_ns;             /* re-check a conflict after (60 s) */
    const char *component;                  /* Event source ("kcache-controller") */
    kc_metrics_t *metrics;                  /* borrowed */
    kc_logger_t log;
} kc_replicator_opts_t;

#define KC_REPLICATOR_OPTS_INIT \
    { NULL, NULL, NULL, 2, 60000000000ull, "kcache-controller", NULL, KC_LOGGER_INIT }

/* Create the replicator: informers for secrets, configmaps and namespaces
 * (from the factory, with indexes added to their caches, so call before
 * the factory starts) and one controller per kind.  Thread-safe. */
int kc_replicator_new(const kc_replicator_opts_t *o, kc_replicator_t **out, kc_errbuf_t *eb);
/* Hand the controllers to the manager (which then owns them). */
int kc_replicator_add_to(kc_replicator_t *r, kc_manager_t *m);
/* Free; after the manager that runs its controllers was freed (or, if
 * never added, frees the controllers too).  NULL accepted. */
void kc_replicator_free(kc_replicator_t *r);
/* A kc_transform_cb for the informer factory that serves the replicator
 * (kc_informer_opts_t.transform; ud unused): sources (replicate-to
 * annotation) and the replicator's copies are stored whole; every other
 * object loses its top-level data, binaryData and stringData, which the
 * replicator never reads, so a cluster's Secrets are not all held in
 * memory.  Objects without those fields (Namespaces) pass unchanged.  Set
 * it only when no other controller sharing the factory reads the data of
 * Secrets or ConfigMaps; kcache-controller sets it.  Thread-safe. */
int kc_replicator_transform(void *ud, struct kc_obj *in, struct kc_obj **out);
/* Does namespace ns match the annotation value (comma-separated names and
 * globs, blanks around items ignored)?  Thread-safe. */
bool kc_replicator_match(const char *annotation, const char *ns);

#ifdef __cplusplus
}
#endif
#endif
