/*
 * Fake API server: PATCH bodies.  JSON merge patch (RFC 7386), JSON patch
 * (RFC 6902) and strategic merge patch as far as kubectl apply and the
 * Python client need it: maps merge, null deletes, lists of objects that
 * carry a "name" (containers, env, volumes, ports with names) merge by
 * name, other lists replace; the directives $patch (replace/delete),
 * $retainKeys, $setElementOrder/ and $deleteFromPrimitiveList/ are honoured
 * in their simple forms.
 *
 * Every function works on copies: inputs are never modified, the result is
 * a new tree owned by the caller.  Pure functions, thread-safe.
 */
#include <stdlib.h>
#include <string.h>

#include "fakeapi_int.h"

static void merge_into(cJSON *dst, const cJSON *patch)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, patch) {
        if (!p->string)
            continue;
        if (cJSON_IsNull(p)) {
            cJSON_DeleteItemFromObjectCaseSensitive(dst, p->string);
            continue;
        }
        cJSON *d = cJSON_GetObjectItemCaseSensitive(dst, p->string);
        if (cJSON_IsObject(p) && cJSON_IsObject(d)) {
            merge_into(d, p);
        } else if (cJSON_IsObject(p)) {
            cJSON *n = cJSON_CreateObject();
            merge_into(n, p);
            cJSON_DeleteItemFromObjectCaseSensitive(dst, p->string);
            cJSON_AddItemToObject(dst, p->string, n);
        } else {
            cJSON_DeleteItemFromObjectCaseSensitive(dst, p->string);
            cJSON_AddItemToObject(dst, p->string, cJSON_Duplicate(p, 1));
        }
    }
}

cJSON *fa_merge_patch(const cJSON *target, const cJSON *patch)
{
    if (!cJSON_IsObject(patch))
        return cJSON_Duplicate(patch, 1);
    cJSON *out = cJSON_IsObject(target) ? cJSON_Duplicate(target, 1) : cJSON_CreateObject();
    if (out)
        merge_into(out, patch);
    return out;
}

/* ---- strategic merge ---------------------------------------------------------- */

static const char *name_of(const cJSON *o)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, "name");
    return cJSON_IsString(n) ? n->valuestring : NULL;
}

static int all_named(const cJSON *arr)
{
    const cJSON *e;
    int n = 0;
    cJSON_ArrayForEach(e, arr) {
        if (!cJSON_IsObject(e) || !name_of(e))
            return 0;
        n++;
    }
    return n > 0;
}

static void smp_into(cJSON *dst, const cJSON *patch);

static void smp_list(cJSON *dst, const char *key, const cJSON *plist)
{
    cJSON *d = cJSON_GetObjectItemCaseSensitive(dst, key);
    if (cJSON_IsArray(d) && all_named(plist) && (cJSON_GetArraySize(d) == 0 || all_named(d))) {
        const cJSON *pe;
        cJSON_ArrayForEach(pe, plist) {
            const cJSON *dir = cJSON_GetObjectItemCaseSensitive(pe, "$patch");
            const char *nm = name_of(pe);
            cJSON *de = NULL;
            int idx = 0, found = -1;
            cJSON_ArrayForEach(de, d) {
                if (!strcmp(name_of(de), nm)) {
                    found = idx;
                    break;
                }
                idx++;
            }
            if (cJSON_IsString(dir) && !strcmp(dir->valuestring, "delete")) {
                if (found >= 0)
                    cJSON_DeleteItemFromArray(d, found);
                continue;
            }
            if (found >= 0) {
                smp_into(de, pe);
            } else {
                cJSON *n = cJSON_CreateObject();
                smp_into(n, pe);
                cJSON_AddItemToArray(d, n);
            }
        }
        return;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(dst, key);
    cJSON *copy = cJSON_CreateArray();
    const cJSON *pe;
    cJSON_ArrayForEach(pe, plist) {
        if (cJSON_IsObject(pe)) {
            cJSON *n = cJSON_CreateObject();
            smp_into(n, pe);
            cJSON_AddItemToArray(copy, n);
        } else {
            cJSON_AddItemToArray(copy, cJSON_Duplicate(pe, 1));
        }
    }
    cJSON_AddItemToObject(dst, key, copy);
}

static void smp_into(cJSON *dst, const cJSON *patch)
{
    const cJSON *dir = cJSON_GetObjectItemCaseSensitive(patch, "$patch");
    const cJSON *p;
    if (cJSON_IsString(dir) && !strcmp(dir->valuestring, "replace")) {
        while (dst->child)
            cJSON_DeleteItemFromArray(dst, 0);
    }
    cJSON_ArrayForEach(p, patch) {
        if (!p->string)
            continue;
        if (p->string[0] == '$') {
            if (!strncmp(p->string, "$deleteFromPrimitiveList/", 25) && cJSON_IsArray(p)) {
                cJSON *l = cJSON_GetObjectItemCaseSensitive(dst, p->string + 25);
                const cJSON *v;
                cJSON_ArrayForEach(v, p) {
                    int i = 0;
                    cJSON *e;
                    cJSON_ArrayForEach(e, l) {
                        if (cJSON_Compare(e, v, 1)) {
                            cJSON_DeleteItemFromArray(l, i);
                            break;
                        }
                        i++;
                    }
                }
            }
            continue; /* $patch, $retainKeys, $setElementOrder/: order is not kept */
        }
        if (cJSON_IsNull(p)) {
            cJSON_DeleteItemFromObjectCaseSensitive(dst, p->string);
            continue;
        }
        cJSON *d = cJSON_GetObjectItemCaseSensitive(dst, p->string);
        if (cJSON_IsObject(p)) {
            const cJSON *pd = cJSON_GetObjectItemCaseSensitive(p, "$patch");
            if (cJSON_IsString(pd) && !strcmp(pd->valuestring, "delete")) {
                cJSON_DeleteItemFromObjectCaseSensitive(dst, p->string);
                continue;
            }
            if (!cJSON_IsObject(d)) {
                cJSON_DeleteItemFromObjectCaseSensitive(dst, p->string);
                d = cJSON_AddObjectToObject(dst, p->string);
            }
            if (d)
                smp_into(d, p);
        } else if (cJSON_IsArray(p)) {
            smp_list(dst, p->string, p);
        } else {
            cJSON_DeleteItemFromObjectCaseSensitive(dst, p->string);
            cJSON_AddItemToObject(dst, p->string, cJSON_Duplicate(p, 1));
        }
    }
}

cJSON *fa_strategic_patch(const cJSON *target, const cJSON *patch)
{
    cJSON *out = cJSON_IsObject(target) ? cJSON_Duplicate(target, 1) : cJSON_CreateObject();
    if (out && cJSON_IsObject(patch))
        smp_into(out, patch);
    return out;
}

/* ---- JSON patch ------------------------------------------------------------------- */

/* Decode one reference token (~1 -> /, ~0 -> ~) into buf. */
static int token_at(const char **pp, char *buf, size_t n)
{
    const char *p = *pp;
    size_t k = 0;
    if (*p != '/')
        return -1;
    p++;
    while (*p && *p != '/') {
        char c = *p++;
        if (c == '~') {
            if (*p == '0')
                c = '~';
            else if (*p == '1')
                c = '/';
            else
                return -1;
            p++;
        }
        if (k + 1 >= n)
            return -1;
        buf[k++] = c;
    }
    buf[k] = 0;
    *pp = p;
    return 0;
}

/* Find the parent container of path and the last token. */
static cJSON *resolve_parent(cJSON *root, const char *path, char *last, size_t n)
{
    cJSON *cur = root;
    const char *p = path;
    if (!*p)
        return NULL;
    for (;;) {
        if (token_at(&p, last, n) < 0)
            return NULL;
        if (!*p)
            return cur;
        if (cJSON_IsObject(cur)) {
            cur = cJSON_GetObjectItemCaseSensitive(cur, last);
        } else if (cJSON_IsArray(cur)) {
            char *end;
            long i = strtol(last, &end, 10);
            if (*end || i < 0)
                return NULL;
            cur = cJSON_GetArrayItem(cur, (int)i);
        } else {
            return NULL;
        }
        if (!cur)
            return NULL;
    }
}

static cJSON *get_child(cJSON *parent, const char *tok)
{
    if (cJSON_IsObject(parent))
        return cJSON_GetObjectItemCaseSensitive(parent, tok);
    if (cJSON_IsArray(parent)) {
        char *end;
        long i = strtol(tok, &end, 10);
        if (*end || i < 0)
            return NULL;
        return cJSON_GetArrayItem(parent, (int)i);
    }
    return NULL;
}

static cJSON *get_path(cJSON *root, const char *path)
{
    char tok[256];
    if (!*path)
        return root;
    cJSON *parent = resolve_parent(root, path, tok, sizeof(tok));
    return parent ? get_child(parent, tok) : NULL;
}

static int remove_path(cJSON *root, const char *path, cJSON **taken)
{
    char tok[256];
    cJSON *parent = resolve_parent(root, path, tok, sizeof(tok));
    cJSON *c = parent ? get_child(parent, tok) : NULL;
    if (!c)
        return -1;
    c = cJSON_DetachItemViaPointer(parent, c);
    if (taken)
        *taken = c;
    else
        cJSON_Delete(c);
    return 0;
}

static int add_path(cJSON *root, const char *path, cJSON *v)
{
    char tok[256];
    cJSON *parent = resolve_parent(root, path, tok, sizeof(tok));
    if (!parent)
        return -1;
    if (cJSON_IsObject(parent)) {
        cJSON_DeleteItemFromObjectCaseSensitive(parent, tok);
        cJSON_AddItemToObject(parent, tok, v);
        return 0;
    }
    if (cJSON_IsArray(parent)) {
        int size = cJSON_GetArraySize(parent);
        if (!strcmp(tok, "-")) {
            cJSON_AddItemToArray(parent, v);
            return 0;
        }
        char *end;
        long i = strtol(tok, &end, 10);
        if (*end || i < 0 || i > size)
            return -1;
        if (i == size)
            cJSON_AddItemToArray(parent, v);
        else
            cJSON_InsertItemInArray(parent, (int)i, v);
        return 0;
    }
    return -1;
}

cJSON *fa_json_patch(const cJSON *target, const cJSON *ops, fa_status_t *st)
{
    cJSON *doc = cJSON_Duplicate(target, 1);
    const cJSON *op;
    if (!doc)
        return NULL;
    cJSON_ArrayForEach(op, ops) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(op, "op");
        const cJSON *pa = cJSON_GetObjectItemCaseSensitive(op, "path");
        const cJSON *val = cJSON_GetObjectItemCaseSensitive(op, "value");
        const cJSON *from = cJSON_GetObjectItemCaseSensitive(op, "from");
        const char *name = cJSON_IsString(o) ? o->valuestring : "";
        const char *path = cJSON_IsString(pa) ? pa->valuestring : NULL;
        int rc = 0;
        if (!path) {
            fa_status_set(st, 400, "BadRequest", "the server rejected our request due to an error in our request");
            goto fail;
        }
        if (!strcmp(name, "add")) {
            cJSON *v = val ? cJSON_Duplicate(val, 1) : NULL;
            rc = v ? add_path(doc, path, v) : -1;
            if (rc && v)
                cJSON_Delete(v);
        } else if (!strcmp(name, "remove")) {
            rc = remove_path(doc, path, NULL);
        } else if (!strcmp(name, "replace")) {
            rc = val && get_path(doc, path) ? remove_path(doc, path, NULL) : -1;
            if (!rc) {
                cJSON *v = cJSON_Duplicate(val, 1);
                rc = v ? add_path(doc, path, v) : -1;
                if (rc && v)
                    cJSON_Delete(v);
            }
        } else if (!strcmp(name, "move") || !strcmp(name, "copy")) {
            const char *fp = cJSON_IsString(from) ? from->valuestring : NULL;
            cJSON *v = NULL;
            if (!fp)
                rc = -1;
            else if (name[0] == 'm')
                rc = remove_path(doc, fp, &v);
            else if ((v = get_path(doc, fp)) != NULL)
                v = cJSON_Duplicate(v, 1);
            else
                rc = -1;
            if (!rc && v && add_path(doc, path, v) < 0) {
                cJSON_Delete(v);
                rc = -1;
            }
        } else if (!strcmp(name, "test")) {
            cJSON *cur = get_path(doc, path);
            if (!cur || !val || !cJSON_Compare(cur, val, 1)) {
                fa_status_set(st, 422, "Invalid", "the server rejected our request due to an error in our request");
                goto fail;
            }
        } else {
            fa_status_set(st, 400, "BadRequest", "Unexpected kind: %s", name);
            goto fail;
        }
        if (rc) {
            fa_status_set(st, 422, "Invalid",
                          "the server rejected our request due to an error in our request");
            goto fail;
        }
    }
    return doc;
fail:
    cJSON_Delete(doc);
    return NULL;
}
