/*
 * kc_fakeapi: a fake Kubernetes API server for tests and benchmarks.
 *
 * It serves HTTPS (HTTP/1.1, libevent evhttp over OpenSSL) on a loopback
 * address and behaves like kube-apiserver 1.32 closely enough for kubectl,
 * the Python client and kcache's own client: discovery, JSON objects with
 * server-set metadata, one global resource-version counter (like etcd's
 * revision), list with pagination and selectors, watch with replay from a
 * bounded history window, writes (POST/PUT/PATCH/DELETE, status), and
 * Status errors with the real codes and reasons.  It can misbehave on
 * purpose (kc_fakeapi_set_faults) reproducibly from a seed.
 *
 * Threads: kc_fakeapi_start() runs one event-loop thread that owns all
 * server state.  Every other public function may be called from any thread
 * (it hands its work to the loop thread and waits for the answer), except
 * where its comment says otherwise.  Before start and after stop the
 * functions run on the calling thread.  Never call them from a log callback.
 *
 * Resource versions are decimal strings of the global counter; clients must
 * treat them as opaque.  kc_fakeapi_revision() exposes the counter for tests.
 *
 * Known deviations from kube-apiserver: propagationPolicy Foreground and
 * Orphan delete at once like Background (there is no garbage collector);
 * a deleted namespace is emptied and removed by a built-in stand-in for the
 * namespace controller (opts.ns_delete_delay_ms);
 * managedFields and server-side apply know no schema (every list is atomic,
 * "." only for well-known maps such as labels and data); a list or watch at a
 * resourceVersion newer than the server's answers 504 at once instead of
 * waiting up to 3 s; only JSON bodies are accepted (protobuf/CBOR/YAML get
 * 415); responses are never gzipped.
 *
 * The admin endpoint (admin token only) offers the same controls over
 * HTTP: GET /fakeapi/admin/counters; POST /fakeapi/admin/faults (a JSON
 * object with the kc_fakeapi_faults_t field names), /compact, /restart,
 * /close-watches, /churn?rate=OPS&resource=R.
 *
 * Links into tests and benchmarks only (build/libkcache-fakeapi.a), never
 * into libkcache.  Errors are 0 or negative codes from kc_common.h.
 */
#ifndef KC_FAKEAPI_H
#define KC_FAKEAPI_H

#include <stddef.h>
#include <stdint.h>

#include "kc_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kc_fakeapi kc_fakeapi_t;

typedef struct kc_fakeapi_opts {
    const char *listen;          /* "127.0.0.1:0" (port 0: pick a free one) */
    const char *token;           /* bearer token of user "admin"; NULL: random */
    uint64_t seed;               /* faults, uids, generateName, load; 0 -> 1 */
    int bookmark_interval_ms;    /* BOOKMARK period when asked; 0 -> 60000 */
    size_t history_window;       /* watch events kept for replay; 0 -> 10000 */
    long continue_ttl_revisions; /* continue token expires when this many
                                    revisions newer than its list; 0: only
                                    when compacted out of the history window */
    int min_request_timeout_s;   /* watch without timeoutSeconds lasts
                                    this x (1 + rand) seconds; 0 -> 1800 */
    size_t max_body;             /* request body cap; 0 -> 3 MiB */
    const char *cert_file;       /* server cert + key (PEM); NULL: generate */
    const char *key_file;
    const char *ca_file;         /* CA that signed cert_file / verifies clients */
    const char *ca_key_file;     /* CA key, for kc_fakeapi_issue_client_cert */
    kc_logger_t log;             /* component "fakeapi"; never logs tokens */
    int ns_delete_delay_ms;      /* the namespace controller: this long after a
                                    namespace is marked Terminating its contents
                                    are deleted and then it is removed (0: on the
                                    loop's next turn); -1: no namespace controller,
                                    it stays Terminating (a bare kube-apiserver) */
} kc_fakeapi_opts_t;

#define KC_FAKEAPI_OPTS_INIT                                                \
    { "127.0.0.1:0", NULL, 1, 60000, 10000, 0, 1800, 3u << 20,              \
      NULL, NULL, NULL, NULL, KC_LOGGER_INIT, 0 }

/* Create a server (not yet listening).  Copies every string in o (o may be
 * NULL for defaults).  Generates the CA and server certificate unless files
 * are given.  *out receives the server; release with kc_fakeapi_free.
 * Not thread-safe. */
int kc_fakeapi_new(const kc_fakeapi_opts_t *o, kc_fakeapi_t **out);

/* Bind, start the loop thread and return once it accepts connections.
 * Returns -EADDRINUSE etc., or -EALREADY if started.  Not thread-safe. */
int kc_fakeapi_start(kc_fakeapi_t *s);

/* End every connection, stop and join the loop thread.  Data is kept (the
 * server may be started again, on the same port if it was fixed).  Safe to
 * call twice.  Not thread-safe; never from the loop thread. */
void kc_fakeapi_stop(kc_fakeapi_t *s);

/* Stop if running and free everything.  Accepts NULL.  Not thread-safe. */
void kc_fakeapi_free(kc_fakeapi_t *s);

/* "https://127.0.0.1:PORT" (valid after start), the port, the admin token,
 * the CA certificate in PEM.  Borrowed: valid until kc_fakeapi_free.
 * Thread-safe. */
const char *kc_fakeapi_url(const kc_fakeapi_t *s);
int kc_fakeapi_port(const kc_fakeapi_t *s);
const char *kc_fakeapi_token(const kc_fakeapi_t *s);
const char *kc_fakeapi_ca_pem(const kc_fakeapi_t *s);

/* Write the CA certificate (PEM) to path, mode 0600.  Thread-safe. */
int kc_fakeapi_write_ca(kc_fakeapi_t *s, const char *path);

/* Write a kubeconfig (mode 0600) with the server URL and embedded CA data.
 * user NULL: user "admin" with the bearer token; otherwise a client
 * certificate issued for user (CN=user) is embedded.  Context namespace is
 * "default".  Valid after start.  Thread-safe. */
int kc_fakeapi_write_kubeconfig(kc_fakeapi_t *s, const char *path, const char *user);

/* Issue a client certificate signed by the server's CA with CN=user.
 * *cert_pem and *key_pem are new strings; free() them.  Thread-safe. */
int kc_fakeapi_issue_client_cert(kc_fakeapi_t *s, const char *user, char **cert_pem,
                                 char **key_pem);

/* Accept another bearer token, authenticating as user (copied).
 * Thread-safe. */
int kc_fakeapi_add_token(kc_fakeapi_t *s, const char *token, const char *user);

/* Allow-list authorisation.  The first call for a user makes every request
 * of that user forbidden (403) unless some rule allows it.  verb is a
 * Kubernetes verb (get, list, watch, create, update, patch, delete,
 * deletecollection) or "*"; resource is a plural ("configmaps",
 * "configmaps/status") or "*".  User "admin" is never restricted unless a
 * rule is added for it.  Thread-safe. */
int kc_fakeapi_set_allow(kc_fakeapi_t *s, const char *user, const char *verb,
                         const char *resource);
/* Remove every rule (everyone may do everything again).  Thread-safe. */
int kc_fakeapi_clear_allow(kc_fakeapi_t *s);

/* ---- direct data access (bypasses HTTP, auth and faults) ---------------- */

/* Resources are named by plural: "configmaps", "namespaces", "leases", ...
 * ns is ignored for cluster-scoped resources.  Returned JSON strings are new
 * allocations; free() them.  Errors: KC_ENOTFOUND (no such resource or
 * object), KC_EPARSE (bad JSON), KC_EINVALID (bad name or object), -EINVAL (bad argument). */

/* Create the object, or replace it if it exists (no resourceVersion check;
 * uid and creationTimestamp are kept).  Namespace from metadata.namespace
 * ("default" when unset for a namespaced resource; the namespace must
 * exist).  *out_json (may be NULL) receives the stored object.
 * Emits ADDED or MODIFIED (nothing if unchanged).  Thread-safe. */
int kc_fakeapi_apply_json(kc_fakeapi_t *s, const char *resource, const char *json,
                          char **out_json);

/* Delete as the API would with default options: objects with finalizers
 * only get a deletionTimestamp; a namespace deletes its contents.
 * Thread-safe. */
int kc_fakeapi_delete(kc_fakeapi_t *s, const char *resource, const char *ns,
                      const char *name);

/* One object as JSON (with kind and apiVersion).  Thread-safe. */
int kc_fakeapi_get_json(kc_fakeapi_t *s, const char *resource, const char *ns,
                        const char *name, char **out_json);

/* Every object of a resource (ns NULL: all namespaces) as a List object,
 * items sorted by namespace/name.  Thread-safe. */
int kc_fakeapi_list_json(kc_fakeapi_t *s, const char *resource, const char *ns,
                         char **out_json);

/* Number of objects of a resource (ns NULL: all).  Thread-safe. */
size_t kc_fakeapi_count(kc_fakeapi_t *s, const char *resource, const char *ns);

/* The current global revision (last resourceVersion handed out).
 * Thread-safe. */
uint64_t kc_fakeapi_revision(kc_fakeapi_t *s);

/* Drop the watch history: a watch or continue token from any revision
 * older than the current one now gets 410 Expired.  Thread-safe. */
int kc_fakeapi_compact(kc_fakeapi_t *s);

/* Drop every client connection (watches end abruptly, keep-alive
 * connections close); data and revision counter stay.  Listening goes on.
 * Thread-safe. */
int kc_fakeapi_restart(kc_fakeapi_t *s);

/* End every open watch stream cleanly (terminating chunk).  Thread-safe. */
int kc_fakeapi_close_watches(kc_fakeapi_t *s);

/* ---- faults -------------------------------------------------------------- */

/* Faults apply to resource requests (not /version, discovery, openapi,
 * /healthz or the admin endpoint).  Probabilities are drawn from a PRNG
 * seeded with opts.seed, so a run is reproducible for a given request order.
 * A zeroed struct (KC_FAKEAPI_FAULTS_INIT) means no faults. */
typedef struct kc_fakeapi_faults {
    double p_429;                 /* share of requests answered 429 (APF: plain
                                     text, Retry-After) */
    int retry_after_s;            /* Retry-After for 429/503; 0 -> 1 */
    double p_500;                 /* share answered 500 InternalError Status */
    double p_503;                 /* share answered 503 ServiceUnavailable */
    long max_http_faults;         /* stop injecting 429/500/503 after this
                                     many; 0: unlimited */
    int delay_ms;                 /* delay before answering ... */
    double p_delay;               /* ... this share of requests */
    long close_watch_after_events;/* end every watch after N events; 0: off */
    double p_close_watch;         /* per event sent: end the stream after it */
    int stall_ms;                 /* per event: hold the stream open with no
                                     bytes for stall_ms ... */
    double p_stall;               /* ... with this probability */
    double p_cut_mid_event;       /* per event: send half of it, then drop the
                                     connection */
} kc_fakeapi_faults_t;

#define KC_FAKEAPI_FAULTS_INIT { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }

/* Replace the fault settings (f NULL: none).  Copies f.  Thread-safe. */
int kc_fakeapi_set_faults(kc_fakeapi_t *s, const kc_fakeapi_faults_t *f);

/* ---- observation --------------------------------------------------------- */

typedef struct kc_fakeapi_counters {
    uint64_t requests;            /* every HTTP request */
    uint64_t get, list, watch, create, update, patch, del; /* resource verbs */
    uint64_t status_2xx, status_401, status_403, status_404, status_409,
             status_410, status_415, status_422, status_429, status_5xx;
    uint64_t watch_events;        /* events written to watch streams */
    uint64_t watch_bookmarks;     /* of which BOOKMARK */
    uint64_t watch_410;           /* ERROR 410 events sent */
    uint64_t watches_open;        /* streams open now */
    uint64_t connections;         /* TLS connections accepted */
    uint64_t faults;              /* faults injected */
} kc_fakeapi_counters_t;

/* Snapshot of the counters.  Thread-safe. */
int kc_fakeapi_get_counters(kc_fakeapi_t *s, kc_fakeapi_counters_t *out);
/* Zero the counters (watches_open is kept).  Thread-safe. */
int kc_fakeapi_reset_counters(kc_fakeapi_t *s);

/* The last requests seen (at most 1024), one "METHOD URI CODE" line each,
 * oldest first, as a new string (free() it).  clear != 0 empties the log.
 * Thread-safe. */
char *kc_fakeapi_request_log(kc_fakeapi_t *s, int clear);

/* ---- load generation ------------------------------------------------------ */

typedef struct kc_fakeapi_load {
    const char *resource;         /* "configmaps" (~1 KB) or "pods" (~5 KB) */
    size_t namespaces;            /* spread over "load-0" .. ; created if
                                     missing; 0 -> 10 */
    size_t names;                 /* distinct names per namespace, the same
                                     names in every namespace; 0 -> count */
    size_t object_bytes;          /* approx. size; 0: default for the kind */
} kc_fakeapi_load_t;

#define KC_FAKEAPI_LOAD_INIT { "configmaps", 10, 0, 0 }

/* Create count generated objects now: object i goes to namespace
 * load-<i % namespaces> with name obj-<(i / namespaces) % names> (names 0:
 * count / namespaces, so all distinct).  Thread-safe. */
int kc_fakeapi_preload(kc_fakeapi_t *s, const kc_fakeapi_load_t *l, size_t count);

/* Apply n random changes now: for a random namespace and name (l->names
 * per namespace, 100 if 0), 75% create-or-update, 25% delete (if present).
 * About 230k ConfigMap / 65k Pod changes per second inline.  Runs in slices
 * of 256 on the loop thread so watchers are fed in between.  Thread-safe. */
int kc_fakeapi_churn(kc_fakeapi_t *s, const kc_fakeapi_load_t *l, size_t n);

/* Apply changes like kc_fakeapi_churn at ops_per_s in the background on the
 * loop thread (0 stops); a rate beyond what the loop sustains while still
 * serving requests (at most 1000 changes per 5 ms tick) is clipped.  For
 * event-throughput benchmarks, prefer kc_fakeapi_churn before the watch and
 * a watch from the older revision: the replay streams at ~1 GB/s.  Copies
 * l.  Thread-safe. */
int kc_fakeapi_set_churn_rate(kc_fakeapi_t *s, const kc_fakeapi_load_t *l,
                              double ops_per_s);

#ifdef __cplusplus
}
#endif
#endif
