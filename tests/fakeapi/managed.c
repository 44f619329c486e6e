/*
 * Fake API server: metadata.managedFields and server-side apply conflicts,
 * an approximation of kube-apiserver's field manager (structured-merge-diff)
 * without schemas.
 *
 * A field set is a FieldsV1 tree as the real server writes it:
 * {"f:data":{".":{},"f:key":{}}}.  "f:NAME" names a member of an object;
 * a member with no children is owned whole (scalars, and lists: without a
 * schema every list is atomic); "." inside a member says the map itself is
 * owned.  "." is written only for members known to be maps (labels,
 * annotations, data, ...), since a struct such as spec gets none on the real
 * server and there is no schema here to tell them apart.
 *
 * Managers are (manager, operation) pairs: one entry each, updated in place.
 *  - Update (create, update, patch): the entry gains the fields the request
 *    added or changed (and "." for maps it created); those fields leave every
 *    other manager.
 *  - Apply: the entry becomes exactly the applied configuration's fields
 *    (no "."); a field the request would change that another manager owns is
 *    a conflict (409) unless force=true, which moves it to the applier; a
 *    field the manager applied before and no longer does is removed from
 *    the object unless another manager owns it.
 *  - Fields gone from the object leave every manager; an entry left empty
 *    is dropped.
 * Server-owned metadata (name, namespace, uid, resourceVersion, generation,
 * creationTimestamp, deletion*, managedFields) and, for kinds with a status
 * subresource, status are never tracked.
 *
 * Everything here runs on the loop thread on trees the caller owns; nothing
 * is kept between calls.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fakeapi_int.h"

static int is_map_member(const char *k)
{
    static const char *maps[] = {"labels", "annotations", "data", "binaryData", "stringData",
                                 "matchLabels", "nodeSelector"};
    for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++)
        if (!strcmp(k, maps[i]))
            return 1;
    return 0;
}

static int skipped(int level, const char *k, int strip_status)
{
    static const char *md[] = {"name", "namespace", "uid", "resourceVersion", "generation",
                               "creationTimestamp", "deletionTimestamp",
                               "deletionGracePeriodSeconds", "managedFields", "selfLink"};
    if (level == 0)
        return !strcmp(k, "kind") || !strcmp(k, "apiVersion") ||
               (strip_status && !strcmp(k, "status"));
    if (level == 1)
        for (size_t i = 0; i < sizeof(md) / sizeof(md[0]); i++)
            if (!strcmp(k, md[i]))
                return 1;
    return 0;
}

/* Add to set the members of v that o (NULL: none) lacks or holds with
 * another value; "." for maps new in v when dots.  Returns how many
 * entries were added (<0: out of memory). */
static int diff_into(cJSON *set, const cJSON *v, const cJSON *o, int dots, int level,
                     int strip_status)
{
    const cJSON *c;
    int added = 0;
    cJSON_ArrayForEach(c, v) {
        char key[320];
        const cJSON *oc;
        if (!c->string || skipped(level, c->string, strip_status))
            continue;
        oc = o ? cJSON_GetObjectItemCaseSensitive(o, c->string) : NULL;
        snprintf(key, sizeof(key), "f:%s", c->string);
        if (cJSON_IsObject(c) && c->child) {
            cJSON *sub = cJSON_CreateObject();
            int n = 0;
            if (!sub)
                return -1;
            if (dots && !cJSON_IsObject(oc) && is_map_member(c->string)) {
                cJSON_AddItemToObject(sub, ".", cJSON_CreateObject());
                n++;
            }
            int k = diff_into(sub, c, cJSON_IsObject(oc) ? oc : NULL, dots,
                              level == 0 && !strcmp(c->string, "metadata") ? 1 : 2, 0);
            if (k < 0) {
                cJSON_Delete(sub);
                return -1;
            }
            n += k;
            if (n > 0) {
                cJSON_AddItemToObject(set, key, sub);
                added++;
            } else {
                cJSON_Delete(sub);
            }
        } else if (!oc || !cJSON_Compare(c, oc, 1)) {
            cJSON_AddItemToObject(set, key, cJSON_CreateObject());
            added++;
        }
    }
    return added;
}

cJSON *fa_mf_diff(const cJSON *obj, const cJSON *old, int dots, int strip_status)
{
    cJSON *set = cJSON_CreateObject();
    if (set && diff_into(set, obj, old, dots, 0, strip_status) < 0) {
        cJSON_Delete(set);
        return NULL;
    }
    return set;
}

/* Drop from set what obj no longer has. */
static void prune(cJSON *set, const cJSON *obj)
{
    cJSON *c = set->child, *next;
    for (; c; c = next) {
        next = c->next;
        if (!c->string || strncmp(c->string, "f:", 2))
            continue;
        const cJSON *ov = cJSON_GetObjectItemCaseSensitive(obj, c->string + 2);
        if (!ov) {
            cJSON_Delete(cJSON_DetachItemViaPointer(set, c));
        } else if (c->child) {
            if (cJSON_IsObject(ov))
                prune(c, ov);
            if (!cJSON_IsObject(ov) || !c->child)
                cJSON_Delete(cJSON_DetachItemViaPointer(set, c));
        }
    }
}

/* Remove from set every owned path of rm. */
static void subtract(cJSON *set, const cJSON *rm)
{
    const cJSON *r;
    cJSON_ArrayForEach(r, rm) {
        cJSON *c = cJSON_GetObjectItemCaseSensitive(set, r->string);
        if (!c)
            continue;
        if (!r->child) {
            cJSON_Delete(cJSON_DetachItemViaPointer(set, c));
        } else if (c->child) {
            subtract(c, r);
            if (!c->child)
                cJSON_Delete(cJSON_DetachItemViaPointer(set, c));
        }
    }
}

/* dst gains every path of src. */
static void unite(cJSON *dst, const cJSON *src)
{
    const cJSON *s;
    cJSON_ArrayForEach(s, src) {
        cJSON *d = cJSON_GetObjectItemCaseSensitive(dst, s->string);
        if (!d)
            cJSON_AddItemToObject(dst, s->string, cJSON_Duplicate(s, 1));
        else if (s->child)
            unite(d, s);
    }
}

/* 1 if set owns the path of leaf node p (a chain of names). */
static int owns(const cJSON *set, const char *const *path, size_t n)
{
    const cJSON *c = set;
    for (size_t i = 0; i < n; i++) {
        c = cJSON_GetObjectItemCaseSensitive(c, path[i]);
        if (!c)
            return 0;
        if (!c->child)
            return 1;    /* owned whole */
    }
    return 1;
}

static const char *estr(const cJSON *e, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static void print_manager(const cJSON *e, char *out, size_t n)
{
    if (!strcmp(estr(e, "operation"), "Update"))
        snprintf(out, n, "\"%s\" using %s", estr(e, "manager"), estr(e, "apiVersion"));
    else
        snprintf(out, n, "\"%s\"", estr(e, "manager"));
}

typedef struct conflict { char mgr[200]; char path[300]; } conflict_t;

typedef struct walk {
    const cJSON *mf;             /* managedFields array */
    const char *manager, *op;
    const char *names[32];
    conflict_t *cv;
    size_t ncv, cap;
} walk_t;

/* For each owned leaf of changed, the other managers that own it. */
static int find_conflicts(walk_t *w, const cJSON *changed, size_t depth)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, changed) {
        if (!c->string || !strcmp(c->string, ".") || depth >= 32)
            continue;
        w->names[depth] = c->string;
        if (c->child) {
            if (find_conflicts(w, c, depth + 1) < 0)
                return -1;
            continue;
        }
        const cJSON *e;
        cJSON_ArrayForEach(e, w->mf) {
            if (!strcmp(estr(e, "manager"), w->manager) && !strcmp(estr(e, "operation"), w->op))
                continue;
            if (!owns(cJSON_GetObjectItemCaseSensitive(e, "fieldsV1"), w->names, depth + 1))
                continue;
            if (w->ncv == w->cap) {
                size_t nc = w->cap ? w->cap * 2 : 4;
                conflict_t *nv = realloc(w->cv, nc * sizeof(*nv));
                if (!nv)
                    return -1;
                w->cv = nv;
                w->cap = nc;
            }
            conflict_t *k = &w->cv[w->ncv++];
            print_manager(e, k->mgr, sizeof(k->mgr));
            size_t off = 0;
            k->path[0] = 0;
            for (size_t i = 0; i <= depth && off < sizeof(k->path); i++)
                off += (size_t)snprintf(k->path + off, sizeof(k->path) - off, ".%s",
                                        w->names[i] + 2);
        }
    }
    return 0;
}

static int cmp_conflict(const void *a, const void *b)
{
    return strcmp(((const conflict_t *)a)->mgr, ((const conflict_t *)b)->mgr);
}

int fa_mf_conflicts(const cJSON *mf, const cJSON *changed, const char *manager,
                    fa_status_t *st)
{
    walk_t w = {0};
    int rc = 0;
    w.mf = mf;
    w.manager = manager;
    w.op = "Apply";
    if (!cJSON_IsArray(mf))
        return 0;
    if (find_conflicts(&w, changed, 0) < 0) {
        free(w.cv);
        return fa_status_set(st, 500, "InternalError", "out of memory");
    }
    if (w.ncv == 0)
        return 0;
    if (w.ncv == 1) {
        fa_status_set(st, 409, "Conflict", "Apply failed with 1 conflict: conflict with %s: %s",
                      w.cv[0].mgr, w.cv[0].path);
    } else {
        char msg[768];
        size_t off;
        /* stable: a manager's paths keep their order */
        for (size_t i = 1; i < w.ncv; i++) {
            conflict_t t = w.cv[i];
            size_t j = i;
            for (; j > 0 && cmp_conflict(&w.cv[j - 1], &t) > 0; j--)
                w.cv[j] = w.cv[j - 1];
            w.cv[j] = t;
        }
        off = (size_t)snprintf(msg, sizeof(msg), "Apply failed with %zu conflicts: ", w.ncv);
        for (size_t i = 0; i < w.ncv && off < sizeof(msg); i++) {
            if (i == 0 || strcmp(w.cv[i].mgr, w.cv[i - 1].mgr))
                off += (size_t)snprintf(msg + off, sizeof(msg) - off, "%sconflicts with %s:",
                                        i ? "\n" : "", w.cv[i].mgr);
            if (off < sizeof(msg))
                off += (size_t)snprintf(msg + off, sizeof(msg) - off, "\n- %s", w.cv[i].path);
        }
        fa_status_set(st, 409, "Conflict", "%s", msg);
    }
    /* details: causes only (no name or kind), as NewApplyConflict */
    /* StatusCause.Type is "reason" on the wire */
    st->cause_reason = "FieldManagerConflict";
    snprintf(st->cause_field, sizeof(st->cause_field), "%.127s", w.cv[0].path);
    snprintf(st->cause_msg, sizeof(st->cause_msg), "conflict with %s", w.cv[0].mgr);
    for (size_t i = 1; i < w.ncv && st->nxcauses < FA_MAX_XCAUSES; i++) {
        snprintf(st->xcause_field[st->nxcauses], sizeof(st->xcause_field[0]), "%.127s",
                 w.cv[i].path);
        snprintf(st->xcause_msg[st->nxcauses], sizeof(st->xcause_msg[0]), "conflict with %.140s",
                 w.cv[i].mgr);
        st->nxcauses++;
    }
    free(w.cv);
    rc = -1;
    return rc;
}

typedef struct dropw {
    cJSON *obj;
    const cJSON *mf, *applied;
    const char *manager;
    const char *names[32];
} dropw_t;

/* Remove from obj the member at names[0..n) ("f:" stripped). */
static void delete_path(cJSON *obj, const char *const *names, size_t n)
{
    cJSON *c = obj;
    for (size_t i = 0; i + 1 < n && c; i++)
        c = cJSON_GetObjectItemCaseSensitive(c, names[i] + 2);
    if (cJSON_IsObject(c))
        cJSON_DeleteItemFromObjectCaseSensitive(c, names[n - 1] + 2);
}

static void drop_walk(dropw_t *d, const cJSON *set, size_t depth)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, set) {
        if (!c->string || strncmp(c->string, "f:", 2) || depth >= 32)
            continue;
        d->names[depth] = c->string;
        if (c->child) {
            drop_walk(d, c, depth + 1);
            continue;
        }
        if (owns(d->applied, d->names, depth + 1))
            continue;
        const cJSON *e;
        int other = 0;
        cJSON_ArrayForEach(e, d->mf) {
            if (!strcmp(estr(e, "manager"), d->manager) && !strcmp(estr(e, "operation"), "Apply"))
                continue;
            other |= owns(cJSON_GetObjectItemCaseSensitive(e, "fieldsV1"), d->names, depth + 1);
        }
        if (!other)
            delete_path(d->obj, d->names, depth + 1);
    }
}

void fa_mf_drop_unapplied(cJSON *obj, const cJSON *mf, const char *manager,
                          const cJSON *applied_set)
{
    const cJSON *e;
    dropw_t d = {0};
    d.obj = obj;
    d.mf = mf;
    d.applied = applied_set;
    d.manager = manager;
    cJSON_ArrayForEach(e, mf) {
        if (!strcmp(estr(e, "manager"), manager) && !strcmp(estr(e, "operation"), "Apply"))
            drop_walk(&d, cJSON_GetObjectItemCaseSensitive(e, "fieldsV1"), 0);
    }
}

static int cmp_member(const void *a, const void *b)
{
    return strcmp((*(cJSON *const *)a)->string, (*(cJSON *const *)b)->string);
}

/* Members in byte order at every level ("." first), as the real server
 * serialises a field set. */
static void sort_set(cJSON *set)
{
    int n = cJSON_GetArraySize(set);
    cJSON **v;
    if (n > 1 && (v = calloc((size_t)n, sizeof(*v))) != NULL) {
        for (int i = 0; i < n; i++)
            v[i] = cJSON_DetachItemViaPointer(set, set->child);
        qsort(v, (size_t)n, sizeof(*v), cmp_member);
        for (int i = 0; i < n; i++)
            cJSON_AddItemToObject(set, v[i]->string, v[i]);
        free(v);
    }
    for (cJSON *c = set->child; c; c = c->next)
        sort_set(c);
}

/* Order of the real server's encoder: operation, time (seconds), manager,
 * apiVersion. */
static int cmp_entry(const void *a, const void *b)
{
    const cJSON *p = *(cJSON *const *)a, *q = *(cJSON *const *)b;
    int c = strcmp(estr(p, "operation"), estr(q, "operation"));
    if (!c)
        c = strcmp(estr(p, "time"), estr(q, "time"));
    if (!c)
        c = strcmp(estr(p, "manager"), estr(q, "manager"));
    if (!c)
        c = strcmp(estr(p, "apiVersion"), estr(q, "apiVersion"));
    return c;
}

int fa_mf_record(cJSON *obj, const cJSON *old_mf, const char *manager, const char *op,
                 const char *api_version, const cJSON *set, const cJSON *take)
{
    cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    cJSON *mf = cJSON_IsArray(old_mf) ? cJSON_Duplicate(old_mf, 1) : cJSON_CreateArray();
    cJSON *mine = NULL, *e, *next, **v = NULL;
    char ts[32];
    size_t n = 0;
    if (!mf || !cJSON_IsObject(md)) {
        cJSON_Delete(mf);
        return -1;
    }
    for (e = mf->child; e; e = next) {
        cJSON *fs = cJSON_GetObjectItemCaseSensitive(e, "fieldsV1");
        next = e->next;
        if (cJSON_IsObject(fs))
            prune(fs, obj);
        if (!strcmp(estr(e, "manager"), manager) && !strcmp(estr(e, "operation"), op)) {
            mine = e;
            continue;
        }
        if (take && cJSON_IsObject(fs))
            subtract(fs, take);
        if (!cJSON_IsObject(fs) || !fs->child)
            cJSON_Delete(cJSON_DetachItemViaPointer(mf, e));
    }
    if (mine) {
        cJSON *fs = cJSON_GetObjectItemCaseSensitive(mine, "fieldsV1");
        if (!strcmp(op, "Apply") || !cJSON_IsObject(fs)) {
            cJSON_ReplaceItemInObjectCaseSensitive(mine, "fieldsV1", cJSON_Duplicate(set, 1));
        } else {
            unite(fs, set);
        }
        fs = cJSON_GetObjectItemCaseSensitive(mine, "fieldsV1");
        if (!cJSON_IsObject(fs) || !fs->child) {
            cJSON_Delete(cJSON_DetachItemViaPointer(mf, mine));
        } else if (set->child) {
            fa_now_rfc3339(ts, sizeof(ts));
            cJSON_ReplaceItemInObjectCaseSensitive(mine, "time", cJSON_CreateString(ts));
        }
    } else if (set->child) {
        cJSON *ne = cJSON_CreateObject();
        fa_now_rfc3339(ts, sizeof(ts));
        cJSON_AddStringToObject(ne, "manager", manager);
        cJSON_AddStringToObject(ne, "operation", op);
        cJSON_AddStringToObject(ne, "apiVersion", api_version);
        cJSON_AddStringToObject(ne, "time", ts);
        cJSON_AddStringToObject(ne, "fieldsType", "FieldsV1");
        cJSON_AddItemToObject(ne, "fieldsV1", cJSON_Duplicate(set, 1));
        cJSON_AddItemToArray(mf, ne);
    }
    for (e = mf->child; e; e = e->next) {
        cJSON *fs = cJSON_GetObjectItemCaseSensitive(e, "fieldsV1");
        if (cJSON_IsObject(fs))
            sort_set(fs);
    }
    /* sort: detach all, order, re-attach */
    n = (size_t)cJSON_GetArraySize(mf);
    if (n > 1) {
        v = calloc(n, sizeof(*v));
        if (v) {
            for (size_t i = 0; i < n; i++)
                v[i] = cJSON_DetachItemFromArray(mf, 0);
            qsort(v, n, sizeof(*v), cmp_entry);
            for (size_t i = 0; i < n; i++)
                cJSON_AddItemToArray(mf, v[i]);
            free(v);
        }
    }
    cJSON_DeleteItemFromObjectCaseSensitive(md, "managedFields");
    if (n > 0)
        cJSON_AddItemToObject(md, "managedFields", mf);
    else
        cJSON_Delete(mf);
    return 0;
}
