/*
 * Fake API server: server-side printing (meta.k8s.io/v1 Table), which
 * `kubectl get` asks for with Accept: application/json;as=Table;...  The
 * columns follow kube-apiserver's printers for the common kinds (ConfigMap
 * DATA, Namespace STATUS, Pod READY/STATUS/RESTARTS, ...); other kinds get
 * NAME and AGE.  Each row carries the object's metadata as a
 * PartialObjectMetadata, as with the default includeObject=Metadata.
 *
 * Pure functions over immutable objects; loop thread only because objects'
 * reference counts are.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fakeapi_int.h"

typedef struct col { const char *name, *type, *desc; } col_t;

static const col_t NAME = {"Name", "string", "Name must be unique within a namespace."};
static const col_t AGE = {"Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was created."};

static size_t columns(const fa_res_t *r, const col_t **out)
{
    size_t n = 0;
    out[n++] = &NAME;
    if (!strcmp(r->plural, "configmaps")) {
        static const col_t d = {"Data", "string", "Number of keys."};
        out[n++] = &d;
    } else if (!strcmp(r->plural, "secrets")) {
        static const col_t t = {"Type", "string", "The type of secret."};
        static const col_t d = {"Data", "string", "Number of keys."};
        out[n++] = &t;
        out[n++] = &d;
    } else if (!strcmp(r->plural, "namespaces")) {
        static const col_t st = {"Status", "string", "The status of the namespace."};
        out[n++] = &st;
    } else if (!strcmp(r->plural, "pods")) {
        static const col_t rd = {"Ready", "string", "The aggregate readiness state of this pod."};
        static const col_t st = {"Status", "string", "The aggregate status of the containers in this pod."};
        static const col_t rs = {"Restarts", "string", "The number of times the containers in this pod have been restarted."};
        out[n++] = &rd;
        out[n++] = &st;
        out[n++] = &rs;
    } else if (!strcmp(r->plural, "leases")) {
        static const col_t h = {"Holder", "string", "The holder of the lease."};
        out[n++] = &h;
    } else if (!strcmp(r->plural, "deployments")) {
        static const col_t rd = {"Ready", "string", "Number of the pod with ready state."};
        static const col_t up = {"Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."};
        static const col_t av = {"Available", "string", "Total number of available pods."};
        out[n++] = &rd;
        out[n++] = &up;
        out[n++] = &av;
    }
    out[n++] = &AGE;
    return n;
}

/* kubectl's HumanDuration, close enough. */
static void human_age(const char *ts, char *out, size_t n)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (!ts || !strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm)) {
        snprintf(out, n, "<unknown>");
        return;
    }
    long s = (long)difftime(time(NULL), timegm(&tm));
    if (s < 0)
        s = 0;
    long m = s / 60, h = m / 60, d = h / 24;
    if (s < 120)
        snprintf(out, n, "%lds", s);
    else if (m < 10)
        snprintf(out, n, "%ldm%lds", m, s % 60);
    else if (m < 180)
        snprintf(out, n, "%ldm", m);
    else if (h < 8)
        snprintf(out, n, "%ldh%ldm", h, m % 60);
    else if (h < 48)
        snprintf(out, n, "%ldh", h);
    else if (d < 8)
        snprintf(out, n, "%ldd%ldh", d, h % 24);
    else
        snprintf(out, n, "%ldd", d);
}

static const cJSON *path(const cJSON *o, const char *a, const char *b)
{
    o = cJSON_GetObjectItemCaseSensitive(o, a);
    return b ? cJSON_GetObjectItemCaseSensitive(o, b) : o;
}

static int nkeys(const cJSON *o)
{
    return cJSON_IsObject(o) ? cJSON_GetArraySize(o) : 0;
}

static cJSON *row(const fa_res_t *r, const fa_obj_t *o)
{
    cJSON *j = cJSON_ParseWithLength(o->body, o->len);
    cJSON *rw = cJSON_CreateObject(), *cells = cJSON_AddArrayToObject(rw, "cells");
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(j, "metadata");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(md, "creationTimestamp");
    char age[32], buf[64];

    cJSON_AddItemToArray(cells, cJSON_CreateString(o->name));
    if (!strcmp(r->plural, "configmaps")) {
        cJSON_AddItemToArray(cells, cJSON_CreateNumber(nkeys(path(j, "data", NULL)) +
                                                       nkeys(path(j, "binaryData", NULL))));
    } else if (!strcmp(r->plural, "secrets")) {
        const cJSON *t = path(j, "type", NULL);
        cJSON_AddItemToArray(cells, cJSON_CreateString(cJSON_IsString(t) ? t->valuestring : "Opaque"));
        cJSON_AddItemToArray(cells, cJSON_CreateNumber(nkeys(path(j, "data", NULL))));
    } else if (!strcmp(r->plural, "namespaces")) {
        const cJSON *p = path(j, "status", "phase");
        cJSON_AddItemToArray(cells, cJSON_CreateString(cJSON_IsString(p) ? p->valuestring : "Active"));
    } else if (!strcmp(r->plural, "pods")) {
        const cJSON *cs = path(j, "spec", "containers"), *st = path(j, "status", "containerStatuses");
        const cJSON *p = path(j, "status", "phase"), *c;
        int ready = 0, restarts = 0;
        cJSON_ArrayForEach(c, st) {
            ready += cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "ready"));
            const cJSON *rc = cJSON_GetObjectItemCaseSensitive(c, "restartCount");
            restarts += cJSON_IsNumber(rc) ? rc->valueint : 0;
        }
        snprintf(buf, sizeof(buf), "%d/%d", ready, cJSON_IsArray(cs) ? cJSON_GetArraySize(cs) : 0);
        cJSON_AddItemToArray(cells, cJSON_CreateString(buf));
        cJSON_AddItemToArray(cells, cJSON_CreateString(cJSON_IsString(p) ? p->valuestring : "Pending"));
        cJSON_AddItemToArray(cells, cJSON_CreateNumber(restarts));
    } else if (!strcmp(r->plural, "leases")) {
        const cJSON *h = path(j, "spec", "holderIdentity");
        cJSON_AddItemToArray(cells, cJSON_CreateString(cJSON_IsString(h) ? h->valuestring : ""));
    } else if (!strcmp(r->plural, "deployments")) {
        const cJSON *rep = path(j, "spec", "replicas"), *rr = path(j, "status", "readyReplicas");
        const cJSON *up = path(j, "status", "updatedReplicas"), *av = path(j, "status", "availableReplicas");
        snprintf(buf, sizeof(buf), "%d/%d", cJSON_IsNumber(rr) ? rr->valueint : 0,
                 cJSON_IsNumber(rep) ? rep->valueint : 1);
        cJSON_AddItemToArray(cells, cJSON_CreateString(buf));
        cJSON_AddItemToArray(cells, cJSON_CreateNumber(cJSON_IsNumber(up) ? up->valueint : 0));
        cJSON_AddItemToArray(cells, cJSON_CreateNumber(cJSON_IsNumber(av) ? av->valueint : 0));
    }
    human_age(cJSON_IsString(ts) ? ts->valuestring : NULL, age, sizeof(age));
    cJSON_AddItemToArray(cells, cJSON_CreateString(age));
    cJSON *obj = cJSON_AddObjectToObject(rw, "object");
    cJSON_AddStringToObject(obj, "kind", "PartialObjectMetadata");
    cJSON_AddStringToObject(obj, "apiVersion", "meta.k8s.io/v1");
    if (md)
        cJSON_AddItemToObject(obj, "metadata", cJSON_Duplicate(md, 1));
    cJSON_Delete(j);
    return rw;
}

char *fa_table_json(const fa_res_t *r, fa_obj_t *const *objs, size_t n, const char *rv,
                    const char *cont, long remaining)
{
    const col_t *cols[8];
    size_t nc = columns(r, cols);
    cJSON *t = cJSON_CreateObject(), *md, *cd, *rows;
    char *out;
    if (!t)
        return NULL;
    cJSON_AddStringToObject(t, "kind", "Table");
    cJSON_AddStringToObject(t, "apiVersion", "meta.k8s.io/v1");
    md = cJSON_AddObjectToObject(t, "metadata");
    if (rv)
        cJSON_AddStringToObject(md, "resourceVersion", rv);
    if (cont && *cont) {
        cJSON_AddStringToObject(md, "continue", cont);
        if (remaining >= 0)
            cJSON_AddNumberToObject(md, "remainingItemCount", (double)remaining);
    }
    cd = cJSON_AddArrayToObject(t, "columnDefinitions");
    for (size_t i = 0; i < nc; i++) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "name", cols[i]->name);
        cJSON_AddStringToObject(c, "type", cols[i]->type);
        cJSON_AddStringToObject(c, "format", i == 0 ? "name" : "");
        cJSON_AddStringToObject(c, "description", cols[i]->desc);
        cJSON_AddNumberToObject(c, "priority", 0);
        cJSON_AddItemToArray(cd, c);
    }
    rows = cJSON_AddArrayToObject(t, "rows");
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(rows, row(r, objs[i]));
    out = cJSON_PrintUnformatted(t);
    cJSON_Delete(t);
    return out;
}

int fa_wants_table(const char *accept)
{
    return accept && strstr(accept, "as=Table") && strstr(accept, "g=meta.k8s.io");
}
