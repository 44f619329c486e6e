/*
 * Fake API server: load generation for benchmarks.  Objects have realistic
 * shapes (ConfigMaps of ~1 KB, Pods of ~5 KB with containers, env, probes,
 * volumes and status) and recurring names: obj-<k> exists in every
 * namespace load-<i>.  Churn applies creates, updates and deletes chosen by
 * the server's PRNG, so a run is reproducible from the seed.
 *
 * Loop thread only (called through fa_call).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fakeapi_int.h"

static size_t nns(const kc_fakeapi_load_t *l)
{
    return l->namespaces ? l->namespaces : 10;
}

static int ensure_namespaces(fa_server_t *s, const kc_fakeapi_load_t *l)
{
    const fa_res_t *nr = fa_res_by_plural("namespaces");
    for (size_t i = 0; i < nns(l); i++) {
        char name[32];
        snprintf(name, sizeof(name), "load-%zu", i);
        if (fa_store_get(&s->store, nr, NULL, name))
            continue;
        cJSON *j = cJSON_CreateObject(), *md = cJSON_AddObjectToObject(j, "metadata");
        fa_status_t st = {0};
        cJSON_AddStringToObject(md, "name", name);
        fa_obj_t *o = fa_do_apply(s, nr, j, &st);
        cJSON_Delete(j);
        if (!o)
            return fa_status_errno(&st) ? fa_status_errno(&st) : -ENOMEM;
        fa_obj_unref(o);
    }
    return 0;
}

static void filler(char *buf, size_t n, uint64_t *rng)
{
    static const char a[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    for (size_t i = 0; i + 1 < n; i++)
        buf[i] = a[fa_rand(rng) % (sizeof(a) - 1)];
    buf[n ? n - 1 : 0] = 0;
}

static cJSON *make_configmap(fa_server_t *s, const char *ns, const char *name, size_t bytes,
                             uint64_t gen)
{
    cJSON *j = cJSON_CreateObject(), *md = cJSON_AddObjectToObject(j, "metadata");
    cJSON *lb = cJSON_AddObjectToObject(md, "labels"), *an = cJSON_AddObjectToObject(md, "annotations");
    cJSON *data = cJSON_AddObjectToObject(j, "data");
    char v[32], buf[256];
    size_t target = bytes ? bytes : 1024, used = 420;
    cJSON_AddStringToObject(md, "name", name);
    cJSON_AddStringToObject(md, "namespace", ns);
    cJSON_AddStringToObject(lb, "app", "load");
    cJSON_AddStringToObject(lb, "app.kubernetes.io/part-of", "kcache-bench");
    snprintf(v, sizeof(v), "tier-%" PRIu64, gen % 3);
    cJSON_AddStringToObject(lb, "tier", v);
    snprintf(v, sizeof(v), "%" PRIu64, gen);
    cJSON_AddStringToObject(an, "kcache.io/generation", v);
    cJSON_AddStringToObject(data, "config.yaml", "log_level: info\nlisten: 0.0.0.0:8080\n");
    for (int k = 0; used < target; k++) {
        char key[32];
        size_t n = target - used > 200 ? 200 : target - used;
        snprintf(key, sizeof(key), "key-%d", k);
        filler(buf, n + 1, &s->rng);
        cJSON_AddStringToObject(data, key, buf);
        used += n + 16;
    }
    return j;
}

static cJSON *make_pod(fa_server_t *s, const char *ns, const char *name, size_t bytes, uint64_t gen)
{
    char buf[1024], v[64];
    cJSON *j = cJSON_CreateObject(), *md = cJSON_AddObjectToObject(j, "metadata");
    cJSON *lb = cJSON_AddObjectToObject(md, "labels"), *an = cJSON_AddObjectToObject(md, "annotations");
    cJSON_AddStringToObject(md, "name", name);
    cJSON_AddStringToObject(md, "namespace", ns);
    cJSON_AddStringToObject(lb, "app", "load");
    cJSON_AddStringToObject(lb, "pod-template-hash", "7d9f8b6c5d");
    snprintf(v, sizeof(v), "%" PRIu64, gen);
    cJSON_AddStringToObject(an, "kcache.io/generation", v);
    cJSON *owner = cJSON_CreateObject(), *owners = cJSON_AddArrayToObject(md, "ownerReferences");
    cJSON_AddStringToObject(owner, "apiVersion", "apps/v1");
    cJSON_AddStringToObject(owner, "kind", "ReplicaSet");
    cJSON_AddStringToObject(owner, "name", "load-7d9f8b6c5d");
    cJSON_AddStringToObject(owner, "uid", "0b9c4a8e-4d7f-4f0e-9a53-3a1f0c2d1e11");
    cJSON_AddBoolToObject(owner, "controller", 1);
    cJSON_AddBoolToObject(owner, "blockOwnerDeletion", 1);
    cJSON_AddItemToArray(owners, owner);
    cJSON *spec = cJSON_AddObjectToObject(j, "spec");
    cJSON *cs = cJSON_AddArrayToObject(spec, "containers");
    size_t target = bytes ? bytes : 5120;
    for (int c = 0; c < 2; c++) {
        cJSON *ct = cJSON_CreateObject();
        snprintf(v, sizeof(v), c ? "sidecar" : "app");
        cJSON_AddStringToObject(ct, "name", v);
        cJSON_AddStringToObject(ct, "image", c ? "registry.k8s.io/pause:3.10" : "ghcr.io/example/app:1.4.2");
        cJSON_AddStringToObject(ct, "imagePullPolicy", "IfNotPresent");
        cJSON *args = cJSON_AddArrayToObject(ct, "args");
        cJSON_AddItemToArray(args, cJSON_CreateString("--port=8080"));
        cJSON_AddItemToArray(args, cJSON_CreateString("--log-format=json"));
        cJSON *ports = cJSON_AddArrayToObject(ct, "ports"), *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "name", "http");
        cJSON_AddNumberToObject(p, "containerPort", 8080 + c);
        cJSON_AddStringToObject(p, "protocol", "TCP");
        cJSON_AddItemToArray(ports, p);
        cJSON *env = cJSON_AddArrayToObject(ct, "env");
        for (int e = 0; e < 6; e++) {
            cJSON *ev = cJSON_CreateObject();
            snprintf(v, sizeof(v), "VAR_%d", e);
            cJSON_AddStringToObject(ev, "name", v);
            filler(buf, 40, &s->rng);
            cJSON_AddStringToObject(ev, "value", buf);
            cJSON_AddItemToArray(env, ev);
        }
        cJSON *res = cJSON_AddObjectToObject(ct, "resources");
        cJSON *rq = cJSON_AddObjectToObject(res, "requests"), *lm = cJSON_AddObjectToObject(res, "limits");
        cJSON_AddStringToObject(rq, "cpu", "100m");
        cJSON_AddStringToObject(rq, "memory", "128Mi");
        cJSON_AddStringToObject(lm, "memory", "256Mi");
        cJSON *probe = cJSON_AddObjectToObject(ct, "readinessProbe");
        cJSON *hg = cJSON_AddObjectToObject(probe, "httpGet");
        cJSON_AddStringToObject(hg, "path", "/readyz");
        cJSON_AddNumberToObject(hg, "port", 8080);
        cJSON_AddStringToObject(hg, "scheme", "HTTP");
        cJSON_AddNumberToObject(probe, "periodSeconds", 10);
        cJSON_AddNumberToObject(probe, "timeoutSeconds", 1);
        cJSON *vm = cJSON_AddArrayToObject(ct, "volumeMounts"), *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "name", "kube-api-access-x7k2p");
        cJSON_AddStringToObject(m, "mountPath", "/var/run/secrets/kubernetes.io/serviceaccount");
        cJSON_AddBoolToObject(m, "readOnly", 1);
        cJSON_AddItemToArray(vm, m);
        cJSON_AddStringToObject(ct, "terminationMessagePath", "/dev/termination-log");
        cJSON_AddStringToObject(ct, "terminationMessagePolicy", "File");
        cJSON *sc = cJSON_AddObjectToObject(ct, "securityContext");
        cJSON_AddBoolToObject(sc, "allowPrivilegeEscalation", 0);
        cJSON_AddBoolToObject(sc, "readOnlyRootFilesystem", 1);
        cJSON_AddItemToArray(cs, ct);
    }
    cJSON_AddStringToObject(spec, "restartPolicy", "Always");
    cJSON_AddNumberToObject(spec, "terminationGracePeriodSeconds", 30);
    cJSON_AddStringToObject(spec, "dnsPolicy", "ClusterFirst");
    cJSON_AddStringToObject(spec, "serviceAccountName", "default");
    snprintf(v, sizeof(v), "node-%" PRIu64, fa_rand(&s->rng) % 50);
    cJSON_AddStringToObject(spec, "nodeName", v);
    cJSON_AddStringToObject(spec, "schedulerName", "default-scheduler");
    cJSON *vols = cJSON_AddArrayToObject(spec, "volumes"), *vol = cJSON_CreateObject();
    cJSON_AddStringToObject(vol, "name", "kube-api-access-x7k2p");
    cJSON *proj = cJSON_AddObjectToObject(vol, "projected");
    cJSON_AddNumberToObject(proj, "defaultMode", 420);
    cJSON *srcs = cJSON_AddArrayToObject(proj, "sources"), *src = cJSON_CreateObject();
    cJSON *sat = cJSON_AddObjectToObject(src, "serviceAccountToken");
    cJSON_AddNumberToObject(sat, "expirationSeconds", 3607);
    cJSON_AddStringToObject(sat, "path", "token");
    cJSON_AddItemToArray(srcs, src);
    cJSON_AddItemToArray(vols, vol);
    cJSON *status = cJSON_AddObjectToObject(j, "status");
    cJSON_AddStringToObject(status, "phase", "Running");
    cJSON *conds = cJSON_AddArrayToObject(status, "conditions");
    static const char *ctypes[] = {"PodReadyToStartContainers", "Initialized", "Ready",
                                   "ContainersReady", "PodScheduled"};
    for (int c = 0; c < 5; c++) {
        cJSON *cd = cJSON_CreateObject();
        cJSON_AddStringToObject(cd, "type", ctypes[c]);
        cJSON_AddStringToObject(cd, "status", "True");
        cJSON_AddNullToObject(cd, "lastProbeTime");
        cJSON_AddStringToObject(cd, "lastTransitionTime", "2026-01-01T00:00:00Z");
        cJSON_AddItemToArray(conds, cd);
    }
    snprintf(v, sizeof(v), "10.244.%u.%u", (unsigned)(fa_rand(&s->rng) % 250),
             (unsigned)(fa_rand(&s->rng) % 250));
    cJSON_AddStringToObject(status, "podIP", v);
    cJSON_AddStringToObject(status, "hostIP", "192.168.10.11");
    cJSON_AddStringToObject(status, "qosClass", "Burstable");
    cJSON_AddStringToObject(status, "startTime", "2026-01-01T00:00:00Z");
    /* pad to the target size with a realistic-looking annotation */
    char *t = cJSON_PrintUnformatted(j);
    size_t have = t ? strlen(t) : 0;
    free(t);
    if (have + 64 < target) {
        size_t pad = target - have - 64;
        char *p = malloc(pad + 1);
        if (p) {
            filler(p, pad + 1, &s->rng);
            cJSON_AddStringToObject(an, "kubectl.kubernetes.io/last-applied-configuration", p);
            free(p);
        }
    }
    return j;
}

static int put_one(fa_server_t *s, const kc_fakeapi_load_t *l, const fa_res_t *r, size_t nsi,
                   size_t k)
{
    char ns[32], name[32];
    fa_status_t st = {0};
    cJSON *j;
    snprintf(ns, sizeof(ns), "load-%zu", nsi);
    snprintf(name, sizeof(name), "obj-%zu", k);
    s->load_seq++;
    if (!strcmp(r->plural, "pods"))
        j = make_pod(s, ns, name, l->object_bytes, s->load_seq);
    else
        j = make_configmap(s, ns, name, l->object_bytes, s->load_seq);
    if (!j)
        return -ENOMEM;
    fa_obj_t *o = fa_do_apply(s, r, j, &st);
    cJSON_Delete(j);
    if (!o)
        return fa_status_errno(&st) ? fa_status_errno(&st) : -ENOMEM;
    fa_obj_unref(o);
    return 0;
}

/* Fast paths for the generator's own objects: an update only bumps the
 * generation annotation, a delete only the revision, by editing the stored
 * text instead of parsing and printing the whole object. */
static int fast_update(fa_server_t *s, fa_obj_t *cur)
{
    char gen[32];
    snprintf(gen, sizeof(gen), "%" PRIu64, ++s->load_seq);
    fa_obj_t *o = fa_obj_with_values(cur, s->store.rv + 1, "\"kcache.io/generation\":\"", gen);
    if (!o)
        return -ENOMEM;
    s->store.rv++;
    fa_emit(s, FA_MODIFIED, cur->res, o, fa_obj_ref(cur));
    return 0;
}

static int fast_delete(fa_server_t *s, fa_obj_t *cur)
{
    fa_obj_t *o = fa_obj_with_values(cur, s->store.rv + 1, NULL, NULL);
    if (!o)
        return -ENOMEM;
    s->store.rv++;
    fa_emit(s, FA_DELETED, cur->res, o, fa_obj_ref(cur));
    return 0;
}

/* An object the generator made and may edit as text. */
static int generated(const fa_obj_t *o)
{
    static const char head[] = "{\"metadata\":{\"labels\":{\"app\":\"load\",";
    return o && !o->deleting && o->nfinalizers == 0 && !strncmp(o->body, head, sizeof(head) - 1) &&
           strstr(o->body, "\"kcache.io/generation\":\"");
}

int fa_load_preload(fa_server_t *s, const kc_fakeapi_load_t *l, size_t count)
{
    const fa_res_t *r = fa_res_by_plural(l->resource ? l->resource : "configmaps");
    int rc;
    if (!r || (strcmp(r->plural, "configmaps") && strcmp(r->plural, "pods")))
        return -EINVAL;
    rc = ensure_namespaces(s, l);
    for (size_t i = 0; rc == 0 && i < count; i++) {
        size_t per = l->names ? l->names : (count + nns(l) - 1) / nns(l);
        rc = put_one(s, l, r, i % nns(l), (i / nns(l)) % (per ? per : 1));
    }
    return rc;
}

int fa_load_churn(fa_server_t *s, const kc_fakeapi_load_t *l, size_t n)
{
    const fa_res_t *r = fa_res_by_plural(l->resource ? l->resource : "configmaps");
    size_t names = l->names ? l->names : 100;
    int rc;
    if (!r || (strcmp(r->plural, "configmaps") && strcmp(r->plural, "pods")))
        return -EINVAL;
    rc = ensure_namespaces(s, l);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        size_t nsi = fa_rand(&s->rng) % nns(l), k = fa_rand(&s->rng) % names;
        double x = fa_rand01(&s->rng);
        char ns[32], name[32];
        snprintf(ns, sizeof(ns), "load-%zu", nsi);
        snprintf(name, sizeof(name), "obj-%zu", k);
        fa_obj_t *cur = fa_store_get(&s->store, r, ns, name);
        if (x >= 0.75 && generated(cur)) {
            rc = fast_delete(s, cur);
        } else if (x < 0.75 && generated(cur)) {
            rc = fast_update(s, cur);
        } else if (x >= 0.75 && cur && !cur->deleting) {
            fa_write_t w = {0};
            fa_status_t st;
            fa_obj_t *last = NULL, *o;
            w.res = r;
            w.ns = ns;
            w.name = name;
            o = fa_do_delete(s, &w, &last, &st);
            fa_obj_unref(o);
            fa_obj_unref(last);
        } else {
            rc = put_one(s, l, r, nsi, k);
        }
    }
    return rc;
}
