/*
 * kc_client: configuration, HTTPS transport, REST verbs and streaming
 * watches against a Kubernetes API server (what client-go's rest and
 * tools/clientcmd packages are for Go).
 *
 * Ownership, in one place:
 *  - kc_config_t and kc_client_t are created with kc_config_load / kc_client_new and released
 *    with the matching _free (NULL accepted).  kc_client_new copies everything it needs
 *    from the config: the config may be freed right after.
 *  - Every call that talks to the server takes a caller-owned kc_status_t
 *    (may be NULL) that it fills on every return, success or failure.
 *    Nothing is stored on the client for the caller to read back.
 *  - Response bodies go to a caller-owned kc_buf_t; the call appends to it
 *    after resetting len to 0 (the allocation is reused); free it with
 *    kc_buf_free.
 *  - Resource descriptors (kc_resource_t) are immutable; the kc_res_*
 *    constants and those returned by kc_client_discover live as long as the
 *    program (resp. the client).
 *  - Watch event objects are borrowed for the duration of the callback.
 *
 * Threads: a kc_client_t is safe for use from many threads at once.  Each
 * client runs one transport thread of its own (started by kc_client_new,
 * joined by kc_client_free) that drives every transfer; a calling thread
 * blocks until its request is done, and a watch's events are framed,
 * parsed and delivered on the thread that called kc_client_watch while the
 * transport thread receives (and decrypts) the next bytes.  The config
 * object is immutable after kc_config_load and may be shared.
 * kc_global_init() must have run before.
 *
 * Transport: HTTPS (TLS >= 1.2, verified unless the kubeconfig says
 * insecure-skip-tls-verify), HTTP/2 when the server offers it by ALPN,
 * else HTTP/1.1.  Over HTTP/2 all concurrent requests and watches of a
 * client are streams of one connection; over HTTP/1.1 each concurrent
 * transfer has its own.  Idle connections are reused.  A watch whose
 * callback is slower than the network is paused (flow control holds the
 * server back) without slowing the client's other transfers.
 *
 * Errors: functions return 0 or a negative code (KC_E* or -errno):
 *   400 KC_EBADREQUEST, 401 KC_EUNAUTHORIZED, 403 KC_EFORBIDDEN,
 *   404 KC_ENOTFOUND, 409 KC_ECONFLICT (reason AlreadyExists: KC_EEXISTS),
 *   410 KC_EGONE, 422 KC_EINVALID, 429 KC_ETOOMANY, 5xx KC_ESERVER,
 *   other non-2xx KC_EHTTP; TLS failures KC_ETLS, connection failures
 *   KC_ECONNECT, timeouts KC_ETIMEOUT, a connection dropped mid-response
 *   KC_ECLOSED, credential plugin failures KC_EAUTH, bad configuration
 *   KC_ECONFIG / KC_EUNSUPPORTED.
 */
#ifndef KC_CLIENT_H
#define KC_CLIENT_H

#include <stdatomic.h>
#include <stddef.h>

#include "kc_common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cJSON;

/* ------------------------------------------------------------------ */
/* Configuration                                                        */

typedef struct kc_config kc_config_t;

typedef struct kc_config_opts {
    /* Explicit kubeconfig path (like --kubeconfig): used alone, not merged.
     * NULL: $KUBECONFIG (':'-separated, merged, missing files skipped),
     * else in-cluster, else ~/.kube/config. */
    const char *kubeconfig;
    const char *context;        /* NULL: current-context */
    /* Service-account directory for in-cluster config; NULL:
     * /var/run/secrets/kubernetes.io/serviceaccount. */
    const char *incluster_dir;
    /* Non-zero: only in-cluster (no kubeconfig); error if not available. */
    int in_cluster;
    kc_logger_t log;
} kc_config_opts_t;

#define KC_CONFIG_OPTS_INIT { NULL, NULL, NULL, 0, KC_LOGGER_INIT }

/* Resolve the configuration as kubectl does.  On success *out is a new
 * config (release with kc_config_free).  On failure returns KC_ECONFIG,
 * KC_EUNSUPPORTED (a field this code does not support, named in eb),
 * -ENOENT (no configuration found at all) or -ENOMEM; *out is untouched.
 * Files named by the config (CA, certificates, keys) are read here; token
 * files and exec plugins are read/run by the client when it needs them.
 * Thread-safe (reads the environment). */
int kc_config_load(const kc_config_opts_t *opts, kc_config_t **out, kc_errbuf_t *eb);
void kc_config_free(kc_config_t *cfg);

/* Borrowed strings, valid while cfg lives.  Thread-safe. */
const char *kc_config_server(const kc_config_t *cfg);
const char *kc_config_namespace(const kc_config_t *cfg); /* context ns or "default" */
const char *kc_config_context(const kc_config_t *cfg);   /* "" when in-cluster */
int kc_config_is_in_cluster(const kc_config_t *cfg);

/* ------------------------------------------------------------------ */
/* Status of one call                                                   */

typedef struct kc_status {
    int http_code;              /* 0 when no HTTP response was received */
    int err;                    /* the code the call returned */
    char reason[64];            /* "NotFound", "Conflict", ... or derived from the code */
    char message[512];          /* Status.message, or a description of the failure */
    char detail[256];           /* details (kind/name/first cause) or curl's error text */
    double retry_after_s;       /* Retry-After / details.retryAfterSeconds, 0 if none */
    char continue_token[1024];  /* Status.metadata.continue on 410 Expired, else "" */
    int attempts;               /* HTTP attempts made (retries + 1) */
} kc_status_t;

void kc_status_clear(kc_status_t *st);
/* Decode a metav1.Status JSON object (e.g. a watch ERROR event's object)
 * into st; returns the KC_E* code matching its code/reason, or KC_EPARSE
 * if it is not a Status.  Thread-safe. */
int kc_status_from_json(const char *json, size_t len, kc_status_t *st);

int kc_status_is_not_found(const kc_status_t *st);
int kc_status_is_already_exists(const kc_status_t *st);
int kc_status_is_conflict(const kc_status_t *st);   /* 409 other than AlreadyExists */
int kc_status_is_gone(const kc_status_t *st);       /* 410 Gone or Expired */
int kc_status_is_unauthorized(const kc_status_t *st);
int kc_status_is_forbidden(const kc_status_t *st);
int kc_status_is_invalid(const kc_status_t *st);
int kc_status_is_too_many(const kc_status_t *st);
int kc_status_is_server_error(const kc_status_t *st);
/* Transient: 429, 5xx, connection/timeout/closed errors. */
int kc_status_is_retryable(const kc_status_t *st);

/* ------------------------------------------------------------------ */
/* Buffers                                                              */

typedef struct kc_buf {
    char *data;   /* NUL-terminated after every call that fills it */
    size_t len;
    size_t cap;
    size_t max;   /* cap on len; 0: the client's max_response_size */
} kc_buf_t;

#define KC_BUF_INIT { NULL, 0, 0, 0 }
void kc_buf_free(kc_buf_t *b);   /* frees data, resets to KC_BUF_INIT keeping max */

/* ------------------------------------------------------------------ */
/* Cancellation                                                         */

typedef struct kc_cancel {
    _Atomic int flag;
} kc_cancel_t;

#define KC_CANCEL_INIT { 0 }
void kc_cancel_set(kc_cancel_t *c);      /* thread-safe, async-signal-safe */
void kc_cancel_reset(kc_cancel_t *c);
int kc_cancel_is_set(const kc_cancel_t *c);

/* ------------------------------------------------------------------ */
/* Client                                                               */

typedef struct kc_client kc_client_t;

/* Metrics hook, called once per HTTP attempt after it completes (code 0 if
 * no response).  Called without client locks held, from the requesting
 * thread; must be thread-safe. */
typedef void (*kc_request_cb)(void *ud, const char *method, int code,
                              const char *host, double seconds);

typedef struct kc_client_opts {
    double qps;                 /* token bucket rate; <= 0: unlimited (default 50) */
    int burst;                  /* bucket size (default 100) */
    long connect_timeout_ms;    /* default 10000 */
    long request_timeout_ms;    /* non-watch requests, total; default 60000 */
    long watch_idle_timeout_ms; /* no bytes for this long ends a watch: KC_ETIMEOUT; default 330000 */
    int max_retries;            /* retries after the first attempt; default 5; 0: none */
    long retry_base_ms;         /* backoff base (default 200), doubles per retry, full jitter */
    long retry_max_ms;          /* backoff cap (default 10000); also caps Retry-After waits */
    size_t max_event_size;      /* one watch event; default 16 MiB */
    size_t max_response_size;   /* default response cap for kc_buf_t.max == 0; default 512 MiB */
    const char *user_agent;     /* default "kcache/<version>"; copied */
    const char *field_manager;  /* default fieldManager for writes; copied; NULL: none
                                 * (apply patches then use "kcache") */
    kc_logger_t log;
    kc_request_cb on_request;
    void *on_request_ud;
} kc_client_opts_t;

#define KC_CLIENT_OPTS_INIT                                                   \
    { 50.0, 100, 10000, 60000, 330000, 5, 200, 10000, (size_t)16 << 20,       \
      (size_t)512 << 20, NULL, NULL, KC_LOGGER_INIT, NULL, NULL }

/* Create a client for cfg (copied).  opts may be NULL (defaults).  Reads a
 * token file / runs an exec plugin lazily, on the first request.  Returns 0,
 * KC_ECONFIG, -ENOMEM.  Thread-safe. */
int kc_client_new(const kc_config_t *cfg, const kc_client_opts_t *opts,
                  kc_client_t **out, kc_errbuf_t *eb);
/* Free.  Requests still running on other threads end with KC_ESTOPPED
 * and free waits until they have returned (a watch callback that never
 * returns makes it wait forever); then the transport thread is joined.
 * NULL accepted. */
void kc_client_free(kc_client_t *c);

/* Server base URL, e.g. "https://127.0.0.1:6443".  Borrowed. */
const char *kc_client_server(const kc_client_t *c);
/* Default namespace of the config the client was made from.  Borrowed. */
const char *kc_client_namespace(const kc_client_t *c);

/* ------------------------------------------------------------------ */
/* Resources                                                            */

typedef struct kc_resource {
    const char *group;      /* "" for the core group */
    const char *version;    /* "v1" */
    const char *resource;   /* plural: "configmaps" */
    const char *kind;       /* "ConfigMap" */
    int namespaced;
} kc_resource_t;

extern const kc_resource_t kc_res_configmaps, kc_res_secrets, kc_res_namespaces,
    kc_res_pods, kc_res_services, kc_res_events, kc_res_leases, kc_res_deployments;

/* Find the resource serving kind in api_version ("v1", "apps/v1") through
 * discovery (/api/v1 or /apis/G/V); results are cached in the client, and
 * *out's strings live as long as the client.  KC_ENOTFOUND if the group
 * version does not serve the kind.  Thread-safe. */
int kc_client_discover(kc_client_t *c, const char *api_version, const char *kind,
                       kc_resource_t *out, kc_status_t *st);

/* ------------------------------------------------------------------ */
/* REST verbs.  ns is ignored for cluster-scoped resources; NULL or "" for a
 * namespaced resource means all namespaces (list/watch) and is an error
 * (-EINVAL) where a single object is addressed.  Names are validated
 * (KC_EBADNAME).  The body buffer receives the response (object, list, or
 * the Status on errors, as much as fits its cap); it may be NULL.  An
 * error answer's Status is decoded into st and the return code in every
 * case, whether or not a body buffer is given.  All are thread-safe.    */

typedef struct kc_list_opts {
    const char *label_selector;
    const char *field_selector;
    long limit;                       /* 0: unset */
    const char *continue_token;
    const char *resource_version;     /* NULL: unset */
    const char *resource_version_match; /* "NotOlderThan", "Exact" */
    long timeout_seconds;             /* 0: unset */
} kc_list_opts_t;

#define KC_LIST_OPTS_INIT { NULL, NULL, 0, NULL, NULL, NULL, 0 }

int kc_client_get(kc_client_t *c, const kc_resource_t *r, const char *ns,
                  const char *name, kc_buf_t *body, kc_status_t *st);
int kc_client_list(kc_client_t *c, const kc_resource_t *r, const char *ns,
                   const kc_list_opts_t *o, kc_buf_t *body, kc_status_t *st);
/* POST json (borrowed, len bytes). */
int kc_client_create(kc_client_t *c, const kc_resource_t *r, const char *ns,
                     const char *json, size_t len, kc_buf_t *body, kc_status_t *st);
/* PUT; the object's metadata.resourceVersion gives optimistic concurrency
 * (409 KC_ECONFLICT when stale). */
int kc_client_update(kc_client_t *c, const kc_resource_t *r, const char *ns,
                     const char *name, const char *json, size_t len,
                     kc_buf_t *body, kc_status_t *st);
/* PUT to the status subresource. */
int kc_client_update_status(kc_client_t *c, const kc_resource_t *r, const char *ns,
                            const char *name, const char *json, size_t len,
                            kc_buf_t *body, kc_status_t *st);

typedef enum {
    KC_PATCH_MERGE = 0,   /* application/merge-patch+json */
    KC_PATCH_STRATEGIC,   /* application/strategic-merge-patch+json */
    KC_PATCH_JSON,        /* application/json-patch+json */
    KC_PATCH_APPLY        /* application/apply-patch+yaml (server-side apply) */
} kc_patch_type_t;

typedef struct kc_patch_opts {
    const char *field_manager; /* NULL: client default */
    int force;                 /* apply only: force=true */
    const char *subresource;   /* e.g. "status"; NULL: the object */
} kc_patch_opts_t;

#define KC_PATCH_OPTS_INIT { NULL, 0, NULL }

int kc_client_patch(kc_client_t *c, const kc_resource_t *r, const char *ns,
                    const char *name, kc_patch_type_t type, const char *patch,
                    size_t len, const kc_patch_opts_t *o, kc_buf_t *body,
                    kc_status_t *st);

typedef struct kc_delete_opts {
    const char *propagation_policy;  /* "Background", "Foreground", "Orphan" */
    long grace_period_seconds;       /* < 0: unset */
    const char *precondition_uid;
    const char *precondition_resource_version;
} kc_delete_opts_t;

#define KC_DELETE_OPTS_INIT { NULL, -1, NULL, NULL }

int kc_client_delete(kc_client_t *c, const kc_resource_t *r, const char *ns,
                     const char *name, const kc_delete_opts_t *o, kc_buf_t *body,
                     kc_status_t *st);
int kc_client_delete_collection(kc_client_t *c, const kc_resource_t *r,
                                const char *ns, const kc_list_opts_t *o,
                                kc_buf_t *body, kc_status_t *st);

/* Any request: method, absolute path ("/version", "/apis"), optional query
 * (already encoded, without '?'), optional body with its content type.
 * Retries as for the verb.  Thread-safe. */
int kc_client_request(kc_client_t *c, const char *method, const char *path,
                      const char *query, const char *content_type,
                      const char *data, size_t len, kc_buf_t *body, kc_status_t *st);

/* ------------------------------------------------------------------ */
/* Watches                                                              */

typedef enum {
    KC_WATCH_ADDED = 0,
    KC_WATCH_MODIFIED,
    KC_WATCH_DELETED,
    KC_WATCH_BOOKMARK,
    KC_WATCH_ERROR       /* object is a metav1.Status: see kc_status_from_json */
} kc_watch_type_t;

const char *kc_watch_type_name(kc_watch_type_t t);

typedef struct kc_watch_decoder kc_watch_decoder_t;

typedef struct kc_watch_event {
    kc_watch_type_t type;
    const char *object;   /* the object's JSON bytes, borrowed for the callback;
                           * not NUL-terminated */
    size_t object_len;
    size_t line_no;       /* 1-based line of the stream */
    /* The decoder that delivered the event (lets kc_watch_event_parse hand
     * over a tree it already built).  Must be NULL in an event built by
     * hand: zero-initialise such events. */
    kc_watch_decoder_t *decoder;
    /* KC_WATCH_OBJECT_* bits the decoder knows about object (0 in an
     * event built by hand). */
    unsigned flags;
    /* With KC_WATCH_OBJECT_MINIFIED: what the decoder's validating scan
     * noted about object's metadata (kc_json_meta_t, common/kc_json.h), for
     * kc_obj_opts_t.meta, valid during the callback; else NULL (and NULL
     * in an event built by hand). */
    const struct kc_json_meta *meta;
} kc_watch_event_t;

/* The decoder validated object's bytes with its own full scan (kc_json
 * grammar, UTF-8 and escapes, as kc_json_scan) and found no insignificant
 * whitespace in them: the bytes are one well-formed, minified JSON object.
 * A consumer that copies these exact bytes may build a cache object from
 * them with kc_obj_opts_t.prevalidated instead of validating them again.
 * Not set when the decoder validated the object some other way (the cJSON
 * path of kc_watch_event_parse) or saw whitespace in it. */
#define KC_WATCH_OBJECT_MINIFIED 1u

/* Return 0 to continue; non-zero stops the watch (see kc_client_watch).
 * Called from the thread that called kc_client_watch, with no locks held. */
typedef int (*kc_watch_cb)(void *ud, const kc_watch_event_t *ev);

typedef struct kc_watch_opts {
    const char *resource_version;   /* NULL: unset */
    const char *label_selector;
    const char *field_selector;
    int allow_bookmarks;            /* default 1 */
    long timeout_seconds;           /* server-side timeoutSeconds; 0: unset */
    int send_initial_events;        /* sendInitialEvents=true&resourceVersionMatch=NotOlderThan */
    kc_cancel_t *cancel;            /* borrowed; checked every ~100 ms */
} kc_watch_opts_t;

#define KC_WATCH_OPTS_INIT { NULL, NULL, NULL, 1, 0, 0, NULL }

/* Watch r in ns, calling cb for each event in order, exactly once each.
 * Blocks in the calling thread until the stream ends.  Returns 0 when the
 * server ended the stream normally (an ERROR event is delivered to cb, not
 * turned into a return code), KC_ESTOPPED on cancel or when cb returned a
 * positive value, cb's value when negative, a non-2xx decoded into st,
 * KC_EPARSE / KC_ETOOBIG for a bad stream ("line N, byte M: what" in
 * st->message; every event before it was delivered), KC_ETIMEOUT when no
 * byte arrived for watch_idle_timeout_ms, KC_ECLOSED when the connection
 * dropped mid-event.  Not retried except once after a 401 with refreshed
 * credentials.  Thread-safe (one watch per calling thread). */
int kc_client_watch(kc_client_t *c, const kc_resource_t *r, const char *ns,
                    const kc_watch_opts_t *o, kc_watch_cb cb, void *ud,
                    kc_status_t *st);

/* The incremental framer kc_client_watch uses, public for tests, fuzzing and
 * benchmarks.  Feed it bytes as they arrive, split anywhere; it calls cb
 * once per complete line, in order.  A line is copied at most once (only
 * when it spans feeds).  Each event is validated: the line is one JSON
 * object with a known "type" string and an "object" object carrying
 * "metadata" (ERROR events: any object).
 *
 * Validation and parsing are one pass for callers that parse: once the
 * callback has called kc_watch_event_parse on an event, the decoder
 * validates the next events' objects by parsing them with cJSON and
 * kc_watch_event_parse hands over that tree instead of parsing again (it
 * goes back to its own validating scan as soon as an event is not parsed).
 * In that mode an object of printable ASCII is held to cJSON's grammar
 * (laxer only about numbers such as "+1" and in nesting up to 1000 deep);
 * any other object, and one cJSON rejects, goes through the scan, so errors
 * still say what and where.  Callers that do not parse get, for an object
 * the scan validated and found minified, KC_WATCH_OBJECT_MINIFIED in
 * ev->flags: validation and building a cache object are then one pass too.
 * Not thread-safe (one per stream). */

/* max_event: cap on one line in bytes (0: 16 MiB). */
int kc_watch_decoder_new(size_t max_event, kc_watch_cb cb, void *ud,
                         kc_watch_decoder_t **out);
/* Returns 0; KC_EPARSE or KC_ETOOBIG with "line N, byte M: what" in eb
 * (byte M counted from the start of the stream); or the callback's non-zero
 * value.  After an error every later call returns the same code. */
int kc_watch_decoder_feed(kc_watch_decoder_t *d, const char *bytes, size_t n,
                          kc_errbuf_t *eb);
/* End of stream: a pending partial line is KC_EPARSE ("truncated"). */
int kc_watch_decoder_finish(kc_watch_decoder_t *d, kc_errbuf_t *eb);
/* Events delivered so far. */
size_t kc_watch_decoder_events(const kc_watch_decoder_t *d);
void kc_watch_decoder_free(kc_watch_decoder_t *d);

/* Parse the event's object with cJSON; returns a new tree (cJSON_Delete)
 * or NULL on failure.  Called from the callback on the event it was given,
 * it returns the tree the decoder built while validating, if any (the
 * first call; later calls parse again).  Thread-safe for events built by
 * hand; for delivered events, from the callback only. */
struct cJSON *kc_watch_event_parse(const kc_watch_event_t *ev);

#ifdef __cplusplus
}
#endif
#endif
