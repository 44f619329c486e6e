/*
 * Internals of the fake API server shared between its files.
 *
 * Ownership: every piece of server state below (store, history, watchers,
 * faults, counters) belongs to the loop thread.  Public functions called
 * from other threads run their work on the loop thread through fa_call();
 * before start / after stop they run on the caller's thread, which is then
 * the only one.  So nothing here takes a lock except the call queue and
 * the counters snapshot.
 *
 * Objects (fa_obj_t) are immutable once stored and reference-counted (loop
 * thread only): the store, history events, list snapshots and evbuffer
 * references to their JSON each hold one.
 */
#ifndef KC_FAKEAPI_INT_H
#define KC_FAKEAPI_INT_H

#include <pthread.h>
#include <stdint.h>
#include <stddef.h>

#include <cJSON.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/buffer.h>
#include <openssl/ssl.h>

#include "fakeapi.h"

#define FA_COMP "fakeapi"

/* ---- resources ----------------------------------------------------------- */

typedef struct fa_res {
    const char *plural, *singular, *kind, *group, *version;
    const char *short_names;     /* comma separated, "" for none */
    int namespaced;
    int has_status;              /* status subresource */
    int has_generation;          /* metadata.generation follows spec */
    int unconditional_update;    /* PUT without resourceVersion allowed */
    int create_on_update;        /* PUT of a missing object creates it */
    const char *fields;          /* extra field selectors, comma separated */
    /* derived at init */
    int index;
    char gv[64];                 /* "v1", "apps/v1" */
    char qualified[96];          /* "configmaps", "leases.coordination.k8s.io" */
    char obj_prefix[160];        /* {"kind":"ConfigMap","apiVersion":"v1", */
    char ev_prefix[4][192];      /* {"type":"ADDED","object":{"kind":...,  */
} fa_res_t;

enum { FA_ADDED = 0, FA_MODIFIED = 1, FA_DELETED = 2, FA_BOOKMARK = 3 };

extern const size_t fa_nres;
const fa_res_t *fa_res_at(size_t i);
const fa_res_t *fa_res_find(const char *group, const char *version, const char *plural);
const fa_res_t *fa_res_by_plural(const char *plural);

/* ---- objects ------------------------------------------------------------- */

typedef struct fa_label { char *k, *v; } fa_label_t;

typedef struct fa_obj {
    int refs;
    const fa_res_t *res;
    char *key;                   /* "ns/name" or "name": store order */
    char *ns;                    /* "" for cluster-scoped */
    char *name;
    char *uid;
    uint64_t rv;
    char *body;                  /* JSON without kind/apiVersion, metadata
                                    first; starts with '{' */
    size_t len;
    fa_label_t *labels;
    size_t nlabels;
    char **fieldv;               /* values of res->fields, in order */
    size_t nfields;
    int deleting;                /* has deletionTimestamp */
    int nfinalizers;
    int ns_terminating;          /* namespaces: status.phase Terminating */
} fa_obj_t;

/* Build an object from a tree (kind/apiVersion removed, metadata first).
 * Does not take j.  Returns NULL on allocation failure. */
fa_obj_t *fa_obj_from_json(const fa_res_t *r, const cJSON *j);
fa_obj_t *fa_obj_ref(fa_obj_t *o);
/* A copy of o with metadata.resourceVersion set to rv and, if key2_pat is
 * given, the string value after its first occurrence replaced by val2 -- a
 * text edit for the load generator's own objects (metadata first, no
 * look-alike keys before resourceVersion).  NULL on failure. */
fa_obj_t *fa_obj_with_values(const fa_obj_t *o, uint64_t rv, const char *key2_pat,
                             const char *val2);
void fa_obj_unref(fa_obj_t *o);
/* Parse the stored body back into a tree with kind and apiVersion. */
cJSON *fa_obj_json(const fa_obj_t *o);
/* The full object text (with kind/apiVersion), malloc'd. */
char *fa_obj_text(const fa_obj_t *o);
/* Append the full object to an evbuffer (copied), after prefix. */
void fa_obj_add_to(struct evbuffer *b, fa_obj_t *o, const char *prefix);

/* ---- errors -> Status ----------------------------------------------------- */

typedef struct fa_status {
    int code;                    /* 0: no error */
    const char *reason;
    char msg[768];
    char name[256];
    const char *group;
    const char *kind;            /* details.kind */
    char cont[512];              /* metadata.continue for Expired lists */
    int retry_after;
    const char *cause_reason;    /* details.causes[0].reason (StatusCause.Type) */
    char cause_field[128];
    char cause_msg[700];         /* the cause's own message ("" = msg) */
#define FA_MAX_XCAUSES 7
    int nxcauses;                /* more causes, same reason/type */
    char xcause_field[FA_MAX_XCAUSES][128];
    char xcause_msg[FA_MAX_XCAUSES][160];
} fa_status_t;

int fa_status_set(fa_status_t *st, int code, const char *reason, const char *fmt, ...)
    KC_PRINTF(4, 5);
char *fa_status_json(const fa_status_t *st);
/* 422 Invalid for ListOptions as the real server words it: message
 * 'ListOptions.meta.k8s.io "" is invalid: FIELD: DETAIL', details group
 * meta.k8s.io, kind ListOptions, one cause (CAUSE, DETAIL, FIELD). */
void fa_status_list_invalid(fa_status_t *st, const char *field, const char *cause, const char *detail);
/* 400 for an unparsable resourceVersion, in the real server's words. */
void fa_status_bad_rv(fa_status_t *st, const char *rv);
/* kcache error code matching st->code, for the direct C API. */
int fa_status_errno(const fa_status_t *st);

/* ---- store and history ---------------------------------------------------- */

typedef struct fa_objv { fa_obj_t **v; size_t n, cap; } fa_objv_t;

typedef struct fa_event {
    int refs;
    uint64_t rv;
    int type;
    const fa_res_t *res;
    fa_obj_t *obj;               /* new state; DELETED: last state at rv */
    fa_obj_t *prev;              /* state before (MODIFIED/DELETED) */
    fa_obj_t *prev_at_rv;        /* lazily: prev with rv of this event */
} fa_event_t;

typedef struct fa_store {
    fa_objv_t *objs;             /* per resource, sorted by key */
    uint64_t rv;                 /* last revision handed out */
    fa_event_t **hist;           /* ring of events, oldest first */
    size_t hcap, hhead, hcount;
    uint64_t compacted_rv;       /* events <= this are gone */
    uint64_t seed_state;         /* PRNG for uids/generateName */
} fa_store_t;

int fa_store_init(fa_store_t *st, size_t history_window, uint64_t seed);
void fa_store_destroy(fa_store_t *st);
fa_obj_t *fa_store_get(fa_store_t *st, const fa_res_t *r, const char *ns, const char *name);
fa_event_t *fa_hist_at(fa_store_t *st, size_t i);
size_t fa_hist_first_after(fa_store_t *st, uint64_t rv);
void fa_event_unref(fa_event_t *e);
void fa_store_compact(fa_store_t *st);
/* 1 if no namespaced object lives in namespace ns. */
int fa_store_ns_empty(fa_store_t *st, const char *ns);

/* Objects of r (ns NULL or "": all) at revision rv (must be within the
 * history window, or the current revision), sorted by key.  The vector
 * holds references; free with fa_objv_free. */
int fa_store_snapshot(fa_store_t *st, const fa_res_t *r, const char *ns, uint64_t rv,
                      fa_objv_t *out);
void fa_objv_free(fa_objv_t *v);

/* Mutations.  Each fills st on failure (code != 0) and returns the new or
 * current object (a new reference) on success; *created says 201. */
typedef struct fa_server fa_server_t;

typedef struct fa_write {
    const fa_res_t *res;
    const char *ns;              /* URL namespace (may be NULL) */
    const char *name;            /* URL name (update/patch/delete) */
    int subresource_status;
    int dry_run;
    const char *patch_type;      /* for patch */
    const char *field_manager;
    const char *manager;         /* managedFields manager: fieldManager, else
                                    the User-Agent's product; NULL: not tracked */
    char ua_manager[129];
    int force;
    /* delete options */
    const char *pre_uid, *pre_rv;
    const char *propagation;
} fa_write_t;

fa_obj_t *fa_do_create(fa_server_t *s, const fa_write_t *w, cJSON *body, fa_status_t *st);
fa_obj_t *fa_do_update(fa_server_t *s, const fa_write_t *w, cJSON *body, int *created,
                       fa_status_t *st);
fa_obj_t *fa_do_patch(fa_server_t *s, const fa_write_t *w, const char *patch, size_t len,
                      int *created, fa_status_t *st);
/* Returns the object if it is only marked for deletion (finalizers), NULL
 * with *gone set when removed now (last state in *last, a reference). */
fa_obj_t *fa_do_delete(fa_server_t *s, const fa_write_t *w, fa_obj_t **last,
                       fa_status_t *st);
/* Create-or-replace used by kc_fakeapi_apply_json and the load generator. */
fa_obj_t *fa_do_apply(fa_server_t *s, const fa_res_t *r, cJSON *body, fa_status_t *st);

/* The namespace controller's pending work; freed at kc_fakeapi_free
 * (before the event base). */
void fa_nsweep_free_all(fa_server_t *s);

/* ---- managedFields (managed.c) ---------------------------------------------- */

/* The FieldsV1 set of obj's members that old (NULL: none) lacks or holds
 * with another value; dots: "." for maps new in obj.  NULL on OOM. */
cJSON *fa_mf_diff(const cJSON *obj, const cJSON *old, int dots, int strip_status);
/* Apply conflicts: changed (fields the apply would change) against the
 * other managers of mf.  0, or -1 with st filled (409 Conflict). */
int fa_mf_conflicts(const cJSON *mf, const cJSON *changed, const char *manager,
                    fa_status_t *st);
/* Remove from obj the fields manager applied before (its Apply entry in
 * mf) that applied_set no longer holds and no other manager owns. */
void fa_mf_drop_unapplied(cJSON *obj, const cJSON *mf, const char *manager,
                          const cJSON *applied_set);
/* Set obj.metadata.managedFields from old_mf after manager's op (Update or
 * Apply) touched set; take: fields leaving the other managers (NULL: none). */
int fa_mf_record(cJSON *obj, const cJSON *old_mf, const char *manager, const char *op,
                 const char *api_version, const cJSON *set, const cJSON *take);

/* ---- selectors ------------------------------------------------------------ */

typedef struct fa_req_sel {
    char *key;
    int op;                      /* FA_SEL_* */
    char **vals;
    size_t nvals;
} fa_req_sel_t;

enum { FA_SEL_EQ, FA_SEL_NE, FA_SEL_IN, FA_SEL_NOTIN, FA_SEL_EXISTS, FA_SEL_NOTEXISTS, FA_SEL_GT,
       FA_SEL_LT };

typedef struct fa_selector {
    fa_req_sel_t *label;
    size_t nlabel;
    fa_req_sel_t *field;         /* key = field path */
    size_t nfield;
} fa_selector_t;

int fa_selector_parse(fa_selector_t *sel, const fa_res_t *r, const char *label,
                      const char *field, fa_status_t *st);
int fa_selector_match(const fa_selector_t *sel, const fa_obj_t *o);
int fa_selector_empty(const fa_selector_t *sel);
void fa_selector_free(fa_selector_t *sel);

/* ---- patches (patch.c) ---------------------------------------------------- */

/* Apply to a copy of target; returns the new tree or NULL with st filled. */
cJSON *fa_merge_patch(const cJSON *target, const cJSON *patch);
cJSON *fa_strategic_patch(const cJSON *target, const cJSON *patch);
cJSON *fa_json_patch(const cJSON *target, const cJSON *ops, fa_status_t *st);

/* ---- pki (pki.c) ------------------------------------------------------------ */

typedef struct fa_pki {
    EVP_PKEY *ca_key;
    X509 *ca;
    EVP_PKEY *key;
    X509 *cert;
    char *ca_pem;
    uint64_t serial;
} fa_pki_t;

int fa_pki_init(fa_pki_t *p, const kc_fakeapi_opts_t *o, kc_errbuf_t *eb);
void fa_pki_destroy(fa_pki_t *p);
int fa_pki_issue(fa_pki_t *p, const char *cn, int server, char **cert_pem, char **key_pem);
SSL_CTX *fa_pki_ssl_ctx(fa_pki_t *p);

/* ---- the server ------------------------------------------------------------ */

typedef struct fa_watcher fa_watcher_t;

typedef struct fa_user_rule { char *user, *verb, *resource; } fa_user_rule_t;
typedef struct fa_token { char *token, *user; } fa_token_t;

struct fa_server {
    kc_fakeapi_opts_t o;
    char *listen_host;
    int listen_port;
    char *token;
    char url[96];
    int port;

    fa_pki_t pki;
    SSL_CTX *ssl;

    pthread_t thread;
    int running;
    int started;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    struct event *call_ev;       /* wakes the loop for queued calls */
    int call_fd;                 /* eventfd */
    struct event *pump_ev;       /* deferred: feed watchers */
    struct event *churn_ev;

    /* call queue: guarded by call_mu */
    pthread_mutex_t call_mu;
    pthread_cond_t call_cv;
    struct fa_call *calls_head, *calls_tail;

    /* everything below: loop thread only (see file comment) */
    fa_store_t store;
    fa_watcher_t *watchers;      /* doubly linked */
    void *delayed;               /* requests held by a delay fault (http.c) */
    fa_token_t *tokens;
    size_t ntokens;
    fa_user_rule_t *rules;
    size_t nrules;
    kc_fakeapi_faults_t faults;
    long http_faults_done;
    uint64_t rng;                /* fault PRNG */
    char **reqlog;
    size_t reqlog_head, reqlog_n;
    kc_fakeapi_load_t churn_load;
    double churn_rate;
    double churn_carry;
    uint64_t churn_last_ns;
    uint64_t load_seq;

    struct fa_nsweep *nsweeps;   /* namespace controller work (ops.c) */

    /* counters: written on the loop thread, read by get_counters via a call */
    kc_fakeapi_counters_t cnt;
};

/* Run fn(s, arg) on the loop thread (or inline when it is not running) and
 * wait for it.  Returns fn's result. */
typedef int (*fa_call_fn)(fa_server_t *s, void *arg);
int fa_call(fa_server_t *s, fa_call_fn fn, void *arg);

/* Record an event (takes the references) and schedule watcher pumping. */
void fa_emit(fa_server_t *s, int type, const fa_res_t *r, fa_obj_t *obj, fa_obj_t *prev);

uint64_t fa_rand(uint64_t *state);
double fa_rand01(uint64_t *state);
void fa_now_rfc3339(char *buf, size_t n);

/* http.c */
void fa_http_restart_cb(evutil_socket_t fd, short what, void *arg);
void fa_http_note(fa_server_t *s, struct evhttp_request *req, int code);
void fa_http_headers(fa_server_t *s, struct evhttp_request *req, const char *ctype);
int fa_faults_from_json(const char *text, kc_fakeapi_faults_t *f);
int fa_http_start(fa_server_t *s);
void fa_http_stop(fa_server_t *s);
void fa_http_restart(fa_server_t *s);

/* watch.c */
void fa_watch_start(fa_server_t *s, struct evhttp_request *req, const fa_res_t *r,
                    const char *ns, struct evkeyvalq *q);
void fa_watch_pump_all(fa_server_t *s);
/* Render every plain watcher's backlog ahead of streaming (bench_server's
 * burst); watch.c. */
void fa_watch_prerender_all(fa_server_t *s);
void fa_watch_close_all(fa_server_t *s, int abrupt);

/* table.c: a meta.k8s.io/v1 Table of objs (new string) */
char *fa_table_json(const fa_res_t *r, fa_obj_t *const *objs, size_t n, const char *rv,
                    const char *cont, long remaining);
int fa_wants_table(const char *accept);

/* load.c */
int fa_load_preload(fa_server_t *s, const kc_fakeapi_load_t *l, size_t count);
int fa_load_churn(fa_server_t *s, const kc_fakeapi_load_t *l, size_t n);

/* helpers */
int fa_query_bool(const char *v);
char *fa_strdup(const char *s);
int fa_valid_name(const fa_res_t *r, const char *name);

#endif
