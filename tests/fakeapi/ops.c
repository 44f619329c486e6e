/*
 * Fake API server: the write verbs (create, update, patch, delete) with
 * the registry semantics of kube-apiserver: server-set metadata, optimistic
 * concurrency, finalizers and deletionTimestamp, namespace deletion,
 * status subresource, generation, no-op updates that change nothing.
 *
 * Every function runs on the loop thread, works on cJSON trees it owns and
 * publishes immutable fa_obj_t objects through fa_emit().  On failure the
 * fa_status_t is filled with the real server's code, reason and message and
 * the store is unchanged.
 *
 * Deviations from the real server: propagationPolicy Foreground/Orphan act
 * like Background (there is no garbage collector and no dependents).
 *
 * Namespace deletion works as in a cluster: DELETE marks the namespace
 * Terminating (deletionTimestamp, status.phase) and returns; a stand-in for
 * the namespace controller (a timer per namespace, fa_nsweep_t, opts
 * ns_delete_delay_ms; -1 disables it) later deletes the contents, then
 * removes the namespace once nothing is left in it -- at once, or when the
 * last object held by a finalizer goes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fakeapi_int.h"

static cJSON *md_of(cJSON *j)
{
    cJSON *md = cJSON_GetObjectItemCaseSensitive(j, "metadata");
    if (!cJSON_IsObject(md)) {
        cJSON_DeleteItemFromObjectCaseSensitive(j, "metadata");
        md = cJSON_AddObjectToObject(j, "metadata");
    }
    return md;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void set_str(cJSON *o, const char *k, const char *v)
{
    cJSON_DeleteItemFromObjectCaseSensitive(o, k);
    cJSON_AddStringToObject(o, k, v);
}

/* Replace o[k] by a copy of src (or remove it when src is NULL). */
static void set_copy(cJSON *o, const char *k, const cJSON *src)
{
    cJSON_DeleteItemFromObjectCaseSensitive(o, k);
    if (src)
        cJSON_AddItemToObject(o, k, cJSON_Duplicate(src, 1));
}

/* Canonical stored form: no kind/apiVersion, metadata first. */
static void canon(cJSON *j)
{
    cJSON_DeleteItemFromObjectCaseSensitive(j, "kind");
    cJSON_DeleteItemFromObjectCaseSensitive(j, "apiVersion");
    cJSON *md = cJSON_DetachItemFromObjectCaseSensitive(j, "metadata");
    if (md) {
        if (j->child) {
            md->next = j->child;
            md->prev = j->child->prev;
            j->child->prev = md;
            j->child = md;
        } else {
            j->child = md;
            md->prev = md;
            md->next = NULL;
        }
    }
}

static void set_rv(cJSON *md, uint64_t rv)
{
    char b[32];
    snprintf(b, sizeof(b), "%" PRIu64, rv);
    set_str(md, "resourceVersion", b);
}

static void gen_uid(fa_store_t *st, char *out, size_t n)
{
    uint64_t a = fa_rand(&st->seed_state), b = fa_rand(&st->seed_state);
    snprintf(out, n, "%08x-%04x-4%03x-%04x-%012" PRIx64, (unsigned)(a >> 32),
             (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff,
             (unsigned)((b >> 48) & 0x3fff) | 0x8000, (uint64_t)(b & 0xffffffffffffULL));
}

static void details(fa_status_t *st, const fa_res_t *r, const char *name)
{
    snprintf(st->name, sizeof(st->name), "%s", name ? name : "");
    st->group = r->group;
    st->kind = r->plural;
}

static int not_found(fa_status_t *st, const fa_res_t *r, const char *name)
{
    fa_status_set(st, 404, "NotFound", "%s \"%s\" not found", r->qualified, name);
    details(st, r, name);
    return -1;
}

static int invalid(fa_status_t *st, const fa_res_t *r, const char *name, const char *field,
                   const char *cause, const char *fmt_detail)
{
    fa_status_set(st, 422, "Invalid", "%s \"%s\" is invalid: %s: %s", r->kind, name, field,
                  fmt_detail);
    snprintf(st->name, sizeof(st->name), "%s", name);
    st->group = r->group;
    st->kind = r->kind;
    st->cause_reason = cause;
    snprintf(st->cause_field, sizeof(st->cause_field), "%s", field);
    /* the cause carries only its own part, as the real server's field.Error */
    snprintf(st->cause_msg, sizeof(st->cause_msg), "%s", fmt_detail);
    return -1;
}

static int conflict(fa_status_t *st, const fa_res_t *r, const char *name, const char *why)
{
    fa_status_set(st, 409, "Conflict", "Operation cannot be fulfilled on %s \"%s\": %s",
                  r->qualified, name, why);
    details(st, r, name);
    return -1;
}

static const char *OPT_LOCK = "the object has been modified; please apply your changes to the latest version and try again";

/* kind/apiVersion in a body must match the URL's (or be absent). */
static int check_type(const fa_res_t *r, const cJSON *body, fa_status_t *st)
{
    const char *k = jstr(body, "kind"), *av = jstr(body, "apiVersion");
    if (!cJSON_IsObject(body))
        return fa_status_set(st, 400, "BadRequest", "the body of the request is not a JSON object");
    if (av && *av && strcmp(av, r->gv))
        return fa_status_set(st, 400, "BadRequest",
                             "the API version in the data (%s) does not match the expected API version (%s)",
                             av, r->gv);
    if (k && *k && strcmp(k, r->kind))
        return fa_status_set(st, 400, "BadRequest",
                             "%s in version \"%s\" cannot be handled as a %s: no kind \"%s\" is registered for version \"%s\"",
                             k, r->version, r->kind, k, r->gv);
    return 0;
}

static int check_namespace(fa_server_t *s, const fa_res_t *r, cJSON *md, const char *url_ns,
                           int creating, fa_status_t *st)
{
    const char *ns = jstr(md, "namespace");
    if (!r->namespaced) {
        cJSON_DeleteItemFromObjectCaseSensitive(md, "namespace");
        return 0;
    }
    if (url_ns && *url_ns) {
        if (ns && *ns && strcmp(ns, url_ns))
            return fa_status_set(st, 400, "BadRequest",
                                 "the namespace of the provided object does not match the namespace sent on the request");
        set_str(md, "namespace", url_ns);
    } else if (!ns || !*ns) {
        set_str(md, "namespace", "default");
    }
    ns = jstr(md, "namespace");
    fa_obj_t *nso = fa_store_get(&s->store, fa_res_by_plural("namespaces"), NULL, ns);
    if (!nso) {
        fa_status_set(st, 404, "NotFound", "namespaces \"%s\" not found", ns);
        snprintf(st->name, sizeof(st->name), "%s", ns);
        st->kind = "namespaces";
        return -1;
    }
    if (creating && nso->ns_terminating) {
        fa_status_set(st, 403, "Forbidden",
                      "%s \"%s\" is forbidden: unable to create new content in namespace %s because it is being terminated",
                      r->qualified, jstr(md, "name") ? jstr(md, "name") : "", ns);
        details(st, r, jstr(md, "name"));
        st->cause_reason = "NamespaceTerminating";
        snprintf(st->cause_field, sizeof(st->cause_field), "metadata.namespace");
        snprintf(st->cause_msg, sizeof(st->cause_msg), "namespace %s is being terminated", ns);
        return -1;
    }
    return 0;
}

static size_t ns_content(fa_server_t *s, const char *ns)
{
    return fa_store_ns_empty(&s->store, ns) ? 0 : 1;
}

/* Remove o now: DELETED carries its last state with the deletion revision. */
static fa_obj_t *remove_now(fa_server_t *s, fa_obj_t *old);

/* Work of the namespace controller for one Terminating namespace: the
 * timer, then (swept) waiting for objects held by finalizers to go. */
typedef struct fa_nsweep {
    struct fa_nsweep *next;
    fa_server_t *s;
    struct event *ev;
    int swept;                   /* contents deleted once */
    char uid[48];
    char name[256];
} fa_nsweep_t;

static fa_nsweep_t **nsweep_find(fa_server_t *s, const char *name)
{
    fa_nsweep_t **pp;
    for (pp = &s->nsweeps; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->name, name))
            return pp;
    return NULL;
}

static void nsweep_drop(fa_server_t *s, const char *name)
{
    fa_nsweep_t **pp = nsweep_find(s, name), *w;
    if (!pp)
        return;
    w = *pp;
    *pp = w->next;
    if (w->ev)
        event_free(w->ev);
    free(w);
}

void fa_nsweep_free_all(fa_server_t *s)
{
    while (s->nsweeps)
        nsweep_drop(s, s->nsweeps->name);
}

static void maybe_finish_namespace(fa_server_t *s, const char *ns)
{
    const fa_res_t *nr = fa_res_by_plural("namespaces");
    fa_obj_t *nso;
    fa_nsweep_t **pp;
    char name[256];
    if (!ns || !*ns)
        return;
    pp = nsweep_find(s, ns);
    if (!pp || !(*pp)->swept)
        return;               /* the controller has not got to it yet */
    snprintf(name, sizeof(name), "%s", ns); /* ns may live in the object */
    nso = fa_store_get(&s->store, nr, NULL, name);
    if (nso && nso->ns_terminating && ns_content(s, name) == 0) {
        fa_obj_unref(remove_now(s, nso));
        nso = NULL;
    }
    if (!nso)
        nsweep_drop(s, name);
}

/* Delete everything in namespace ns (objects with finalizers are only
 * marked), as the namespace controller does. */
static void delete_contents(fa_server_t *s, const char *ns)
{
    for (size_t i = 0; i < fa_nres; i++) {
        const fa_res_t *cr = fa_res_at(i);
        if (!cr->namespaced)
            continue;
        fa_objv_t snap;
        if (fa_store_snapshot(&s->store, cr, ns, s->store.rv, &snap) < 0)
            continue;
        for (size_t k = 0; k < snap.n; k++) {
            fa_write_t cw = {0};
            fa_status_t cst;
            fa_obj_t *cl = NULL, *co;
            if (snap.v[k]->deleting)
                continue;
            cw.res = cr;
            cw.ns = ns;
            cw.name = snap.v[k]->name;
            co = fa_do_delete(s, &cw, &cl, &cst);
            fa_obj_unref(co);
            fa_obj_unref(cl);
        }
        fa_objv_free(&snap);
    }
}

static void nsweep_cb(evutil_socket_t fd, short what, void *arg)
{
    fa_nsweep_t *w = arg;
    fa_server_t *s = w->s;
    fa_obj_t *nso;
    char name[256];
    (void)fd;
    (void)what;
    snprintf(name, sizeof(name), "%s", w->name);
    nso = fa_store_get(&s->store, fa_res_by_plural("namespaces"), NULL, name);
    if (!nso || strcmp(nso->uid, w->uid) || !nso->ns_terminating) {
        nsweep_drop(s, name);
        return;
    }
    w->swept = 1;
    delete_contents(s, name);
    maybe_finish_namespace(s, name); /* may free w */
}

/* Hand a Terminating namespace to the namespace controller. */
static void nsweep_schedule(fa_server_t *s, const fa_obj_t *nso)
{
    fa_nsweep_t *w;
    struct timeval tv;
    if (s->o.ns_delete_delay_ms < 0 || nsweep_find(s, nso->name))
        return;
    w = calloc(1, sizeof(*w));
    if (!w)
        return;
    w->s = s;
    snprintf(w->uid, sizeof(w->uid), "%s", nso->uid);
    snprintf(w->name, sizeof(w->name), "%s", nso->name);
    w->ev = evtimer_new(s->base, nsweep_cb, w);
    if (!w->ev) {
        free(w);
        return;
    }
    tv.tv_sec = s->o.ns_delete_delay_ms / 1000;
    tv.tv_usec = (s->o.ns_delete_delay_ms % 1000) * 1000;
    evtimer_add(w->ev, &tv);
    w->next = s->nsweeps;
    s->nsweeps = w;
}

static fa_obj_t *remove_now(fa_server_t *s, fa_obj_t *old)
{
    cJSON *j = fa_obj_json(old);
    fa_obj_t *o;
    char ns[256];
    if (!j)
        return NULL;
    canon(j);
    set_rv(md_of(j), ++s->store.rv);
    o = fa_obj_from_json(old->res, j);
    cJSON_Delete(j);
    if (!o)
        return NULL;
    snprintf(ns, sizeof(ns), "%s", old->ns);
    int namespaced = old->res->namespaced;
    fa_emit(s, FA_DELETED, old->res, fa_obj_ref(o), fa_obj_ref(old));
    if (namespaced)
        maybe_finish_namespace(s, ns);
    return o;
}

/* Publish j (canonical, any rv) as the new state of old.  A change that
 * leaves the object identical writes nothing and returns old.  A deleting
 * object without finalizers left is removed.  Returns a new reference. */
static fa_obj_t *commit_update(fa_server_t *s, const fa_write_t *w, fa_obj_t *old,
                               cJSON *oldj, cJSON *j, const cJSON *applied_set,
                               const cJSON *take, fa_status_t *st)
{
    const fa_res_t *r = w->res;
    int dry_run = w->dry_run;
    cJSON *md = md_of(j);
    fa_obj_t *o;

    canon(j);
    canon(oldj);
    set_rv(md, old->rv);
    /* a tree comparison (member order does not matter) is cheaper than
     * printing the candidate only to compare texts */
    if (cJSON_Compare(j, oldj, 1))
        return fa_obj_ref(old);
    /* managedFields: only a real change is recorded */
    if (w->manager && *w->manager && !w->subresource_status) {
        const cJSON *omf = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(oldj, "metadata"), "managedFields");
        if (applied_set) {
            fa_mf_record(j, omf, w->manager, "Apply", r->gv, applied_set, take);
        } else {
            cJSON *set = fa_mf_diff(j, oldj, 1, r->has_status);
            if (set)
                fa_mf_record(j, omf, w->manager, "Update", r->gv, set, set);
            cJSON_Delete(set);
        }
    }
    if (dry_run) {
        o = fa_obj_from_json(r, j);
        goto out;
    }
    set_rv(md, ++s->store.rv);
    o = fa_obj_from_json(r, j);
    if (!o)
        goto out;
    /* a Terminating namespace is held by spec.finalizers ("kubernetes"):
     * only the namespace controller removes it */
    if (o->deleting && o->nfinalizers == 0 && !o->ns_terminating) {
        fa_emit(s, FA_DELETED, r, fa_obj_ref(o), fa_obj_ref(old));
        if (r->namespaced)
            maybe_finish_namespace(s, o->ns);
        return o;
    }
    fa_emit(s, FA_MODIFIED, r, fa_obj_ref(o), fa_obj_ref(old));
out:
    if (!o)
        fa_status_set(st, 500, "InternalError", "out of memory");
    return o;
}

static const char *NAME_MSG_SUB =
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
static const char *NAME_MSG_LABEL =
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

static int check_name(const fa_res_t *r, const char *name, fa_status_t *st)
{
    char detail[700];
    if (fa_valid_name(r, name))
        return 0;
    snprintf(detail, sizeof(detail), "Invalid value: \"%.100s\": %s", name,
             !strcmp(r->plural, "namespaces") ? NAME_MSG_LABEL : NAME_MSG_SUB);
    return invalid(st, r, name, "metadata.name", "FieldValueInvalid", detail);
}

fa_obj_t *fa_do_create(fa_server_t *s, const fa_write_t *w, cJSON *body, fa_status_t *st)
{
    const fa_res_t *r = w->res;
    cJSON *md;
    const char *name, *rv;
    char ts[32], uid[40];
    fa_obj_t *o;

    if (check_type(r, body, st))
        return NULL;
    md = md_of(body);
    if (!md) {
        fa_status_set(st, 500, "InternalError", "out of memory");
        return NULL;
    }
    name = jstr(md, "name");
    if (!name || !*name) {
        const char *gn = jstr(md, "generateName");
        if (!gn || !*gn) {
            invalid(st, r, "", "metadata.name", "FieldValueRequired",
                    "Required value: name or generateName is required");
            return NULL;
        }
        static const char alphabet[] = "bcdfghjklmnpqrstvwxz2456789";
        char gen[300];
        for (int tries = 0;; tries++) {
            size_t gl = strlen(gn);
            snprintf(gen, sizeof(gen), "%.*s", (int)(gl > 58 ? 58 : gl), gn);
            size_t n = strlen(gen);
            for (int i = 0; i < 5; i++)
                gen[n + i] = alphabet[fa_rand(&s->store.seed_state) % (sizeof(alphabet) - 1)];
            gen[n + 5] = 0;
            if (!fa_store_get(&s->store, r, w->ns ? w->ns : jstr(md, "namespace"), gen) || tries > 8)
                break;
        }
        set_str(md, "name", gen);
        name = jstr(md, "name");
    }
    if (check_name(r, name, st))
        return NULL;
    if (check_namespace(s, r, md, w->ns, 1, st))
        return NULL;
    rv = jstr(md, "resourceVersion");
    if (rv && *rv) {
        fa_status_set(st, 500, "InternalError",
                      "Internal error occurred: resourceVersion should not be set on objects to be created");
        return NULL;
    }
    if (fa_store_get(&s->store, r, jstr(md, "namespace"), name)) {
        fa_status_set(st, 409, "AlreadyExists", "%s \"%s\" already exists", r->qualified, name);
        details(st, r, name);
        return NULL;
    }
    gen_uid(&s->store, uid, sizeof(uid));
    set_str(md, "uid", uid);
    fa_now_rfc3339(ts, sizeof(ts));
    set_str(md, "creationTimestamp", ts);
    cJSON_DeleteItemFromObjectCaseSensitive(md, "deletionTimestamp");
    cJSON_DeleteItemFromObjectCaseSensitive(md, "deletionGracePeriodSeconds");
    cJSON_DeleteItemFromObjectCaseSensitive(md, "managedFields");
    if (!strcmp(r->plural, "namespaces")) {
        /* the real server labels every namespace with its name, before it
         * records the creator's fields (so the creator owns the label) */
        cJSON *labels = cJSON_GetObjectItemCaseSensitive(md, "labels");
        if (!cJSON_IsObject(labels)) {
            cJSON_DeleteItemFromObjectCaseSensitive(md, "labels");
            labels = cJSON_AddObjectToObject(md, "labels");
        }
        set_str(labels, "kubernetes.io/metadata.name", name);
    }
    if (w->manager && *w->manager) {
        /* the fields the client sent; server-owned metadata is never tracked */
        int apply = w->patch_type && !strncmp(w->patch_type, "application/apply-patch", 23);
        cJSON *set = fa_mf_diff(body, NULL, !apply, r->has_status);
        if (set)
            fa_mf_record(body, NULL, w->manager, apply ? "Apply" : "Update", r->gv, set, NULL);
        cJSON_Delete(set);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(md, "generation");
    if (r->has_generation)
        cJSON_AddNumberToObject(md, "generation", 1);
    if (!strcmp(r->plural, "namespaces")) {
        cJSON *spec = cJSON_GetObjectItemCaseSensitive(body, "spec");
        if (!cJSON_IsObject(spec)) {
            cJSON_DeleteItemFromObjectCaseSensitive(body, "spec");
            spec = cJSON_AddObjectToObject(body, "spec");
        }
        cJSON *fin = cJSON_CreateArray();
        cJSON_AddItemToArray(fin, cJSON_CreateString("kubernetes"));
        cJSON_DeleteItemFromObjectCaseSensitive(spec, "finalizers");
        cJSON_AddItemToObject(spec, "finalizers", fin);
        cJSON *status = cJSON_CreateObject();
        cJSON_AddStringToObject(status, "phase", "Active");
        cJSON_DeleteItemFromObjectCaseSensitive(body, "status");
        cJSON_AddItemToObject(body, "status", status);
    } else if (r->has_status && strcmp(r->plural, "pods")) {
        cJSON_DeleteItemFromObjectCaseSensitive(body, "status");
    }
    canon(body);
    set_rv(md, w->dry_run ? s->store.rv : s->store.rv + 1);
    o = fa_obj_from_json(r, body);
    if (!o) {
        fa_status_set(st, 500, "InternalError", "out of memory");
        return NULL;
    }
    if (!w->dry_run) {
        s->store.rv++;
        fa_emit(s, FA_ADDED, r, fa_obj_ref(o), NULL);
    }
    return o;
}

/* Carry the server-owned fields of old into the new tree j. */
static void keep_server_fields(const fa_res_t *r, fa_obj_t *old, const cJSON *oldj, cJSON *j,
                               int status_only)
{
    cJSON *md = md_of(j);
    const cJSON *omd = cJSON_GetObjectItemCaseSensitive(oldj, "metadata");
    static const char *keep[] = {"uid", "creationTimestamp", "deletionTimestamp",
                                 "deletionGracePeriodSeconds", "name", "namespace"};
    (void)old;
    for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
        set_copy(md, keep[i], cJSON_GetObjectItemCaseSensitive(omd, keep[i]));
    /* server-owned: what the client sent is ignored; commit_update records
     * the request's manager */
    set_copy(md, "managedFields", cJSON_GetObjectItemCaseSensitive(omd, "managedFields"));
    if (!strcmp(r->plural, "namespaces") && !status_only)
        set_copy(j, "status", cJSON_GetObjectItemCaseSensitive(oldj, "status"));
    else if (r->has_status && !status_only)
        set_copy(j, "status", cJSON_GetObjectItemCaseSensitive(oldj, "status"));
    if (r->has_generation) {
        const cJSON *og = cJSON_GetObjectItemCaseSensitive(omd, "generation");
        double g = cJSON_IsNumber(og) ? og->valuedouble : 1;
        if (!cJSON_Compare(cJSON_GetObjectItemCaseSensitive(oldj, "spec"),
                           cJSON_GetObjectItemCaseSensitive(j, "spec"), 1))
            g += 1;
        cJSON_DeleteItemFromObjectCaseSensitive(md, "generation");
        cJSON_AddNumberToObject(md, "generation", g);
    }
}

/* Build the new state for an update of old from the client's tree nj. */
static cJSON *merge_for_update(const fa_res_t *r, fa_obj_t *old, const cJSON *oldj, cJSON *nj,
                               int status_sub)
{
    cJSON *j;
    if (status_sub) {
        j = cJSON_Duplicate(oldj, 1);
        if (!j)
            return NULL;
        set_copy(j, "status", cJSON_GetObjectItemCaseSensitive(nj, "status"));
    } else {
        j = cJSON_Duplicate(nj, 1);
        if (!j)
            return NULL;
    }
    keep_server_fields(r, old, oldj, j, status_sub);
    return j;
}

fa_obj_t *fa_do_update(fa_server_t *s, const fa_write_t *w, cJSON *body, int *created,
                       fa_status_t *st)
{
    const fa_res_t *r = w->res;
    cJSON *md, *oldj, *j;
    const char *name, *rv;
    fa_obj_t *old, *o;
    char rvs[32];

    *created = 0;
    if (check_type(r, body, st))
        return NULL;
    md = md_of(body);
    name = jstr(md, "name");
    if (name && w->name && strcmp(name, w->name)) {
        fa_status_set(st, 400, "BadRequest",
                      "the name of the object (%s) does not match the name on the URL (%s)", name,
                      w->name);
        return NULL;
    }
    if (!name)
        set_str(md, "name", w->name);
    if (check_namespace(s, r, md, w->ns, 0, st))
        return NULL;
    old = fa_store_get(&s->store, r, jstr(md, "namespace"), w->name);
    rv = jstr(md, "resourceVersion");
    if (!old) {
        if (r->create_on_update && !w->subresource_status) {
            if (rv && *rv) {
                not_found(st, r, w->name);
                return NULL;
            }
            *created = 1;
            return fa_do_create(s, w, body, st);
        }
        not_found(st, r, w->name);
        return NULL;
    }
    if (rv && *rv) {
        snprintf(rvs, sizeof(rvs), "%" PRIu64, old->rv);
        if (strcmp(rv, rvs)) {
            conflict(st, r, w->name, OPT_LOCK);
            return NULL;
        }
    } else if (!r->unconditional_update) {
        fa_status_set(st, 422, "Invalid",
                      "%s \"%s\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                      r->qualified, w->name);
        details(st, r, w->name);
        return NULL;
    }
    oldj = fa_obj_json(old);
    if (!oldj) {
        fa_status_set(st, 500, "InternalError", "out of memory");
        return NULL;
    }
    j = merge_for_update(r, old, oldj, body, w->subresource_status);
    if (!j) {
        cJSON_Delete(oldj);
        fa_status_set(st, 500, "InternalError", "out of memory");
        return NULL;
    }
    o = commit_update(s, w, old, oldj, j, NULL, NULL, st);
    cJSON_Delete(oldj);
    cJSON_Delete(j);
    return o;
}

/* Server-side apply, simplified: the applied configuration is merged into
 * the live object (maps merge, lists and scalars replace); field ownership
 * and conflicts are managed.c's. */
static void apply_merge(cJSON *dst, const cJSON *src)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, src) {
        cJSON *d = cJSON_GetObjectItemCaseSensitive(dst, c->string);
        if (cJSON_IsObject(c) && cJSON_IsObject(d))
            apply_merge(d, c);
        else
            set_copy(dst, c->string, c);
    }
}

fa_obj_t *fa_do_patch(fa_server_t *s, const fa_write_t *w, const char *patch, size_t len,
                      int *created, fa_status_t *st)
{
    const fa_res_t *r = w->res;
    const char *pt = w->patch_type ? w->patch_type : "";
    int apply = !strncmp(pt, "application/apply-patch", 23);
    cJSON *pj = NULL, *oldj = NULL, *patched = NULL, *j = NULL;
    cJSON *applied_set = NULL, *changed = NULL;
    fa_obj_t *old, *o = NULL;

    *created = 0;
    if (!apply && strncmp(pt, "application/json-patch+json", 27) &&
        strncmp(pt, "application/merge-patch+json", 28) &&
        strncmp(pt, "application/strategic-merge-patch+json", 38)) {
        fa_status_set(st, 415, "UnsupportedMediaType",
                      "the body of the request was in an unknown format - accepted media types include: "
                      "application/json-patch+json, application/merge-patch+json, "
                      "application/strategic-merge-patch+json, application/apply-patch+yaml");
        return NULL;
    }
    if (apply && (!w->field_manager || !*w->field_manager)) {
        fa_status_set(st, 422, "Invalid",
                      "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch");
        st->kind = "PatchOptions";
        st->group = "meta.k8s.io";
        return NULL;
    }
    pj = cJSON_ParseWithLength(patch, len);
    if (!pj) {
        fa_status_set(st, 400, "BadRequest", "error decoding patch: invalid JSON");
        return NULL;
    }
    old = fa_store_get(&s->store, r, w->ns, w->name);
    if (!old) {
        if (apply && !w->subresource_status) {
            cJSON *md = md_of(pj);
            const char *name = jstr(md, "name");
            if (name && strcmp(name, w->name)) {
                fa_status_set(st, 400, "BadRequest",
                              "the name of the object (%s) does not match the name on the URL (%s)",
                              name, w->name);
                goto out;
            }
            set_str(md, "name", w->name);
            cJSON_DeleteItemFromObjectCaseSensitive(md, "resourceVersion");
            o = fa_do_create(s, w, pj, st);
            *created = o != NULL;
            goto out;
        }
        not_found(st, r, w->name);
        goto out;
    }
    oldj = fa_obj_json(old);
    if (!oldj)
        goto oom;
    if (apply) {
        if (check_type(r, pj, st))
            goto out;
        /* field ownership: what this apply sets, and what of it would
         * change the live object (a conflict if another manager owns it) */
        applied_set = fa_mf_diff(pj, NULL, 0, r->has_status);
        changed = fa_mf_diff(pj, oldj, 0, r->has_status);
        if (!applied_set || !changed)
            goto oom;
        if (!w->subresource_status && !w->force &&
            fa_mf_conflicts(cJSON_GetObjectItemCaseSensitive(
                                cJSON_GetObjectItemCaseSensitive(oldj, "metadata"), "managedFields"),
                            changed, w->manager, st))
            goto out;
        patched = cJSON_Duplicate(oldj, 1);
        if (patched) {
            if (!w->subresource_status)
                fa_mf_drop_unapplied(patched, cJSON_GetObjectItemCaseSensitive(
                                                  cJSON_GetObjectItemCaseSensitive(oldj, "metadata"),
                                                  "managedFields"),
                                     w->manager, applied_set);
            apply_merge(patched, pj);
        }
    } else if (!strncmp(pt, "application/json-patch+json", 27)) {
        if (!cJSON_IsArray(pj)) {
            fa_status_set(st, 400, "BadRequest", "json: cannot unmarshal object into Go value of type jsonpatch.Patch");
            goto out;
        }
        patched = fa_json_patch(oldj, pj, st);
        if (!patched && st->code)
            goto out;
    } else if (!cJSON_IsObject(pj)) {
        fa_status_set(st, 400, "BadRequest", "error decoding patch: not a JSON object");
        goto out;
    } else if (!strncmp(pt, "application/merge-patch", 23)) {
        patched = fa_merge_patch(oldj, pj);
    } else {
        patched = fa_strategic_patch(oldj, pj);
    }
    if (!patched)
        goto oom;
    {
        /* a patch may carry metadata.resourceVersion as a precondition */
        const cJSON *pmd = cJSON_GetObjectItemCaseSensitive(patched, "metadata");
        const char *prv = jstr(pmd, "resourceVersion");
        char rvs[32];
        snprintf(rvs, sizeof(rvs), "%" PRIu64, old->rv);
        if (!apply && prv && *prv && strcmp(prv, rvs)) {
            conflict(st, r, w->name, OPT_LOCK);
            goto out;
        }
    }
    j = merge_for_update(r, old, oldj, patched, w->subresource_status);
    if (!j)
        goto oom;
    o = commit_update(s, w, old, oldj, j, applied_set, w->force ? changed : NULL, st);
    goto out;
oom:
    fa_status_set(st, 500, "InternalError", "out of memory");
out:
    cJSON_Delete(pj);
    cJSON_Delete(oldj);
    cJSON_Delete(patched);
    cJSON_Delete(j);
    cJSON_Delete(applied_set);
    cJSON_Delete(changed);
    return o;
}

/* Mark old as deleting (deletionTimestamp); returns the new state. */
static fa_obj_t *mark_deleting(fa_server_t *s, fa_obj_t *old, int terminating_ns, fa_status_t *st)
{
    cJSON *j = fa_obj_json(old);
    char ts[32];
    fa_obj_t *o;
    if (!j) {
        fa_status_set(st, 500, "InternalError", "out of memory");
        return NULL;
    }
    cJSON *md = md_of(j);
    fa_now_rfc3339(ts, sizeof(ts));
    set_str(md, "deletionTimestamp", ts);
    cJSON_DeleteItemFromObjectCaseSensitive(md, "deletionGracePeriodSeconds");
    cJSON_AddNumberToObject(md, "deletionGracePeriodSeconds", 0);
    if (terminating_ns) {
        cJSON *status = cJSON_GetObjectItemCaseSensitive(j, "status");
        if (!cJSON_IsObject(status)) {
            cJSON_DeleteItemFromObjectCaseSensitive(j, "status");
            status = cJSON_AddObjectToObject(j, "status");
        }
        set_str(status, "phase", "Terminating");
    }
    canon(j);
    set_rv(md, ++s->store.rv);
    o = fa_obj_from_json(old->res, j);
    cJSON_Delete(j);
    if (!o) {
        fa_status_set(st, 500, "InternalError", "out of memory");
        return NULL;
    }
    fa_emit(s, FA_MODIFIED, old->res, fa_obj_ref(o), fa_obj_ref(old));
    return o;
}

fa_obj_t *fa_do_delete(fa_server_t *s, const fa_write_t *w, fa_obj_t **last, fa_status_t *st)
{
    const fa_res_t *r = w->res;
    fa_obj_t *old = fa_store_get(&s->store, r, w->ns, w->name);
    char rvs[32];

    *last = NULL;
    if (!old) {
        not_found(st, r, w->name);
        return NULL;
    }
    if (w->pre_uid && *w->pre_uid && strcmp(w->pre_uid, old->uid)) {
        char why[600];
        snprintf(why, sizeof(why),
                 "StorageError: invalid object, Code: 4, Key: /registry/%s/%s, ResourceVersion: 0, "
                 "AdditionalErrorMsg: Precondition failed: UID in precondition: %s, UID in object meta: %s",
                 r->plural, old->key, w->pre_uid, old->uid);
        conflict(st, r, w->name, why);
        return NULL;
    }
    snprintf(rvs, sizeof(rvs), "%" PRIu64, old->rv);
    if (w->pre_rv && *w->pre_rv && strcmp(w->pre_rv, rvs)) {
        char why[600];
        snprintf(why, sizeof(why),
                 "StorageError: invalid object, Code: 4, Key: /registry/%s/%s, ResourceVersion: 0, "
                 "AdditionalErrorMsg: Precondition failed: ResourceVersion in precondition: %s, "
                 "ResourceVersion in object meta: %s",
                 r->plural, old->key, w->pre_rv, rvs);
        conflict(st, r, w->name, why);
        return NULL;
    }
    if (w->dry_run)
        return fa_obj_ref(old);
    if (!strcmp(r->plural, "namespaces")) {
        /* Terminating now; the namespace controller empties and removes it */
        fa_obj_t *o = old->ns_terminating ? fa_obj_ref(old) : mark_deleting(s, old, 1, st);
        if (o)
            nsweep_schedule(s, o);
        return o;
    }
    if (old->nfinalizers > 0) {
        if (old->deleting)
            return fa_obj_ref(old);
        return mark_deleting(s, old, 0, st);
    }
    *last = remove_now(s, old);
    if (!*last)
        fa_status_set(st, 500, "InternalError", "out of memory");
    return NULL;
}

fa_obj_t *fa_do_apply(fa_server_t *s, const fa_res_t *r, cJSON *body, fa_status_t *st)
{
    cJSON *md = md_of(body);
    const char *name = jstr(md, "name"), *ns = jstr(md, "namespace");
    fa_write_t w = {0};
    int created;
    char nsbuf[256], namebuf[256];
    /* copies: the tree's strings change under the callees */
    snprintf(nsbuf, sizeof(nsbuf), "%s", ns && *ns ? ns : "default");
    snprintf(namebuf, sizeof(namebuf), "%s", name ? name : "");
    w.res = r;
    w.ns = r->namespaced ? nsbuf : NULL;
    w.name = name ? namebuf : NULL;
    cJSON_DeleteItemFromObjectCaseSensitive(md, "resourceVersion");
    if (!name || !fa_store_get(&s->store, r, w.ns, w.name))
        return fa_do_create(s, &w, body, st);
    /* unconditional replace, even for kinds that require a resourceVersion */
    fa_obj_t *old = fa_store_get(&s->store, r, w.ns, w.name);
    char rvs[32];
    snprintf(rvs, sizeof(rvs), "%" PRIu64, old->rv);
    set_str(md, "resourceVersion", rvs);
    return fa_do_update(s, &w, body, &created, st);
}
