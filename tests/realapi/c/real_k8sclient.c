/* k8sclient against the real kube-apiserver of tests/realapi/run.sh: every
 * verb (get, list, create, update, update_status, the four patch types,
 * delete with preconditions and a propagation policy, delete_collection),
 * pagination with limit/continue, label and field selectors, a stale
 * resourceVersion (409), the Status errors (404, 409 AlreadyExists, 422,
 * 403 for the ServiceAccount outside its ClusterRole), a server-side apply
 * conflict, discovery, and a streaming list (sendInitialEvents).
 * Everything happens in namespace kc-real-client (and -b). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kc_client.h"
#include "real_support.h"

#define NS "kc-real-client"
#define NS2 "kc-real-client-b"

static kc_client_t *A;   /* admin */
static kc_client_t *SA;  /* the controller's ServiceAccount */

static int setup(void **state)
{
    (void)state;
    kc_global_init();
    A = real_client("KC_REAL_KUBECONFIG", NULL);
    SA = real_client("KC_REAL_SA_KUBECONFIG", NULL);
    if (real_ensure_ns(A, NS) != 0 || real_ensure_ns(A, NS2) != 0) {
        fprintf(stderr, "cannot create namespaces %s, %s\n", NS, NS2);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kc_client_free(A);
    kc_client_free(SA);
    kc_global_cleanup();
    return 0;
}

static char *rv_of(const kc_buf_t *b) { return real_meta(b->data, b->len, "resourceVersion"); }

static void test_crud_conflicts_errors(void **state)
{
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    char *rv1, *rv2, *uid, upd[512];
    const char *cm = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"crud\","
                     "\"labels\":{\"app\":\"kc\"}},\"data\":{\"a\":\"1\"}}";
    const char *bad = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"bad\"},"
                      "\"data\":{\"not a key!\":\"1\"}}";
    kc_delete_opts_t dopt = KC_DELETE_OPTS_INIT;

    (void)state;
    assert_int_equal(kc_client_create(A, &kc_res_configmaps, NS, cm, strlen(cm), &b, &st), 0);
    assert_int_equal(st.http_code, 201);
    rv1 = rv_of(&b);
    uid = real_meta(b.data, b.len, "uid");
    assert_int_equal(kc_client_create(A, &kc_res_configmaps, NS, cm, strlen(cm), &b, &st), KC_EEXISTS);
    assert_int_equal(st.http_code, 409);
    assert_true(kc_status_is_already_exists(&st));
    assert_string_equal(st.reason, "AlreadyExists");
    assert_non_null(strstr(st.message, "already exists"));

    assert_int_equal(kc_client_get(A, &kc_res_configmaps, NS, "crud", &b, &st), 0);
    assert_int_equal(st.http_code, 200);
    assert_non_null(strstr(b.data, "\"a\":\"1\""));

    snprintf(upd, sizeof(upd),
             "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"crud\","
             "\"labels\":{\"app\":\"kc\"},\"resourceVersion\":\"%s\"},\"data\":{\"a\":\"2\"}}", rv1);
    assert_int_equal(kc_client_update(A, &kc_res_configmaps, NS, "crud", upd, strlen(upd), &b, &st), 0);
    rv2 = rv_of(&b);
    assert_string_not_equal(rv1, rv2);
    /* the same, now stale, resourceVersion: 409 Conflict */
    assert_int_equal(kc_client_update(A, &kc_res_configmaps, NS, "crud", upd, strlen(upd), &b, &st),
                     KC_ECONFLICT);
    assert_int_equal(st.http_code, 409);
    assert_true(kc_status_is_conflict(&st));
    assert_false(kc_status_is_already_exists(&st));
    assert_string_equal(st.reason, "Conflict");
    assert_non_null(strstr(st.message, "the object has been modified"));

    /* 404 */
    assert_int_equal(kc_client_get(A, &kc_res_configmaps, NS, "nope", &b, &st), KC_ENOTFOUND);
    assert_int_equal(st.http_code, 404);
    assert_true(kc_status_is_not_found(&st));
    assert_string_equal(st.reason, "NotFound");
    assert_non_null(strstr(st.message, "\"nope\" not found"));
    /* 422 Invalid */
    assert_int_equal(kc_client_create(A, &kc_res_configmaps, NS, bad, strlen(bad), &b, &st), KC_EINVALID);
    assert_int_equal(st.http_code, 422);
    assert_true(kc_status_is_invalid(&st));
    assert_string_equal(st.reason, "Invalid");
    assert_non_null(strstr(st.message, "not a key!"));
    /* 404 for a namespace that does not exist */
    assert_int_equal(kc_client_create(A, &kc_res_configmaps, "kc-real-missing", cm, strlen(cm), &b, &st),
                     KC_ENOTFOUND);

    /* delete: stale resourceVersion and wrong uid preconditions, then Background */
    dopt.precondition_resource_version = rv1;
    assert_int_equal(kc_client_delete(A, &kc_res_configmaps, NS, "crud", &dopt, &b, &st), KC_ECONFLICT);
    assert_int_equal(st.http_code, 409);
    printf("# stale precondition: %d %s: %s\n", st.http_code, st.reason, st.message);
    assert_string_equal(st.reason, "Conflict");
    assert_non_null(strstr(st.message, "precondition"));
    dopt.precondition_resource_version = NULL;
    dopt.precondition_uid = "00000000-0000-0000-0000-000000000000";
    assert_int_equal(kc_client_delete(A, &kc_res_configmaps, NS, "crud", &dopt, &b, &st), KC_ECONFLICT);
    dopt.precondition_uid = uid;
    dopt.precondition_resource_version = rv2;
    dopt.propagation_policy = "Background";
    dopt.grace_period_seconds = 0;
    assert_int_equal(kc_client_delete(A, &kc_res_configmaps, NS, "crud", &dopt, &b, &st), 0);
    assert_int_equal(st.http_code, 200);
    assert_int_equal(kc_client_get(A, &kc_res_configmaps, NS, "crud", &b, &st), KC_ENOTFOUND);
    assert_int_equal(kc_client_delete(A, &kc_res_configmaps, NS, "crud", NULL, &b, &st), KC_ENOTFOUND);
    free(rv1);
    free(rv2);
    free(uid);
    kc_buf_free(&b);
}

static void test_update_status(void **state)
{
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    char *rv, upd[1024];
    const char *dep =
        "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"web\"},"
        "\"spec\":{\"replicas\":1,\"selector\":{\"matchLabels\":{\"app\":\"web\"}},"
        "\"template\":{\"metadata\":{\"labels\":{\"app\":\"web\"}},\"spec\":{\"containers\":["
        "{\"name\":\"web\",\"image\":\"nginx:1\"},{\"name\":\"side\",\"image\":\"busybox:1\"}]}}}}";
    cJSON *j;

    (void)state;
    assert_int_equal(kc_client_create(A, &kc_res_deployments, NS, dep, strlen(dep), &b, &st), 0);
    rv = rv_of(&b);
    /* a status PUT changes status only: replicas 5 in spec is ignored */
    snprintf(upd, sizeof(upd),
             "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"web\","
             "\"resourceVersion\":\"%s\"},"
             "\"spec\":{\"replicas\":5,\"selector\":{\"matchLabels\":{\"app\":\"web\"}},"
             "\"template\":{\"metadata\":{\"labels\":{\"app\":\"web\"}},\"spec\":{\"containers\":["
             "{\"name\":\"web\",\"image\":\"nginx:1\"}]}}},"
             "\"status\":{\"observedGeneration\":1,\"replicas\":1,\"updatedReplicas\":1}}", rv);
    assert_int_equal(kc_client_update_status(A, &kc_res_deployments, NS, "web", upd, strlen(upd), &b, &st), 0);
    j = cJSON_ParseWithLength(b.data, b.len);
    assert_non_null(j);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "status"), "observedGeneration")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "spec"), "replicas")->valueint, 1);
    cJSON_Delete(j);
    /* stale again */
    assert_int_equal(kc_client_update_status(A, &kc_res_deployments, NS, "web", upd, strlen(upd), &b, &st),
                     KC_ECONFLICT);

    /* strategic merge: containers merge by name (a merge patch would replace the list) */
    {
        const char *sp = "{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"web\",\"image\":\"nginx:2\"}]}}}}";
        assert_int_equal(kc_client_patch(A, &kc_res_deployments, NS, "web", KC_PATCH_STRATEGIC, sp, strlen(sp),
                                         NULL, &b, &st), 0);
        assert_non_null(strstr(b.data, "nginx:2"));
        assert_non_null(strstr(b.data, "busybox:1"));
        assert_int_equal(kc_client_patch(A, &kc_res_deployments, NS, "web", KC_PATCH_MERGE, sp, strlen(sp),
                                         NULL, &b, &st), 0);
        assert_non_null(strstr(b.data, "nginx:2"));
        assert_null(strstr(b.data, "busybox:1"));
    }
    /* a patch to the status subresource */
    {
        kc_patch_opts_t po = KC_PATCH_OPTS_INIT;
        const char *sp = "{\"status\":{\"observedGeneration\":7}}";
        po.subresource = "status";
        assert_int_equal(kc_client_patch(A, &kc_res_deployments, NS, "web", KC_PATCH_MERGE, sp, strlen(sp),
                                         &po, &b, &st), 0);
        assert_non_null(strstr(b.data, "\"observedGeneration\":7"));
    }
    assert_int_equal(kc_client_delete(A, &kc_res_deployments, NS, "web", NULL, &b, &st), 0);
    free(rv);
    kc_buf_free(&b);
}

static void test_patches_and_apply(void **state)
{
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    kc_patch_opts_t po = KC_PATCH_OPTS_INIT;
    const char *cm = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"p\"},"
                     "\"data\":{\"a\":\"1\"}}";
    const char *ap1 = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"ap\"},"
                      "\"data\":{\"x\":\"1\"}}";
    const char *ap2 = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"ap\"},"
                      "\"data\":{\"x\":\"2\"}}";
    const char *jp = "[{\"op\":\"add\",\"path\":\"/data/c\",\"value\":\"4\"},"
                     "{\"op\":\"remove\",\"path\":\"/data/a\"}]";
    const char *jbad = "[{\"op\":\"test\",\"path\":\"/data/c\",\"value\":\"5\"}]";

    (void)state;
    assert_int_equal(kc_client_create(A, &kc_res_configmaps, NS, cm, strlen(cm), &b, &st), 0);
    assert_int_equal(kc_client_patch(A, &kc_res_configmaps, NS, "p", KC_PATCH_MERGE,
                                     "{\"data\":{\"b\":\"3\"}}", 18, NULL, &b, &st), 0);
    assert_non_null(strstr(b.data, "\"b\":\"3\""));
    assert_non_null(strstr(b.data, "\"a\":\"1\""));
    assert_int_equal(kc_client_patch(A, &kc_res_configmaps, NS, "p", KC_PATCH_JSON, jp, strlen(jp),
                                     NULL, &b, &st), 0);
    assert_non_null(strstr(b.data, "\"c\":\"4\""));
    assert_null(strstr(b.data, "\"a\":\"1\""));
    /* a failed JSON-patch test operation */
    assert_int_not_equal(kc_client_patch(A, &kc_res_configmaps, NS, "p", KC_PATCH_JSON, jbad, strlen(jbad),
                                         NULL, &b, &st), 0);
    printf("# json-patch failed test op: %d %s: %s\n", st.http_code, st.reason, st.message);
    assert_true(st.http_code == 422 || st.http_code == 409 || st.http_code == 500);
    /* patch of a missing object */
    assert_int_equal(kc_client_patch(A, &kc_res_configmaps, NS, "nope", KC_PATCH_MERGE, "{}", 2, NULL, &b, &st),
                     KC_ENOTFOUND);

    /* server-side apply: create (201), owner conflict (409), force */
    po.field_manager = "kc-one";
    assert_int_equal(kc_client_patch(A, &kc_res_configmaps, NS, "ap", KC_PATCH_APPLY, ap1, strlen(ap1),
                                     &po, &b, &st), 0);
    assert_int_equal(st.http_code, 201);
    assert_non_null(strstr(b.data, "\"manager\":\"kc-one\""));
    assert_int_equal(kc_client_patch(A, &kc_res_configmaps, NS, "ap", KC_PATCH_APPLY, ap1, strlen(ap1),
                                     &po, &b, &st), 0);
    assert_int_equal(st.http_code, 200);
    po.field_manager = "kc-two";
    assert_int_equal(kc_client_patch(A, &kc_res_configmaps, NS, "ap", KC_PATCH_APPLY, ap2, strlen(ap2),
                                     &po, &b, &st), KC_ECONFLICT);
    assert_int_equal(st.http_code, 409);
    assert_true(kc_status_is_conflict(&st));
    assert_non_null(strstr(st.message, "conflict"));
    assert_non_null(strstr(st.message, "kc-one"));
    po.force = 1;
    assert_int_equal(kc_client_patch(A, &kc_res_configmaps, NS, "ap", KC_PATCH_APPLY, ap2, strlen(ap2),
                                     &po, &b, &st), 0);
    assert_non_null(strstr(b.data, "\"x\":\"2\""));
    assert_non_null(strstr(b.data, "\"manager\":\"kc-two\""));
    /* the default field manager of an apply without one */
    po.field_manager = NULL;
    po.force = 1;
    assert_int_equal(kc_client_patch(A, &kc_res_configmaps, NS, "ap", KC_PATCH_APPLY, ap1, strlen(ap1),
                                     &po, &b, &st), 0);
    assert_non_null(strstr(b.data, "\"manager\":\"kcache\""));

    assert_int_equal(kc_client_delete(A, &kc_res_configmaps, NS, "p", NULL, &b, &st), 0);
    assert_int_equal(kc_client_delete(A, &kc_res_configmaps, NS, "ap", NULL, &b, &st), 0);
    kc_buf_free(&b);
}

static size_t items_of(const kc_buf_t *b, char names[][32], size_t cap, char *cont, size_t contcap)
{
    cJSON *j = cJSON_ParseWithLength(b->data, b->len), *it;
    size_t n = 0;
    const char *c;

    assert_non_null(j);
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "items")) {
        const char *nm = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(it, "metadata"), "name"));
        if (n < cap && nm)
            snprintf(names[n], 32, "%s", nm);
        n++;
    }
    c = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "metadata"), "continue"));
    snprintf(cont, contcap, "%s", c ? c : "");
    cJSON_Delete(j);
    return n;
}

static void test_pagination_selectors_collection(void **state)
{
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    kc_list_opts_t lo = KC_LIST_OPTS_INIT;
    char json[512], names[64][32], cont[1024], seen[32];
    size_t i, n, total = 0, pages = 0;

    (void)state;
    memset(seen, 0, sizeof(seen));
    for (i = 0; i < 23; i++) {
        snprintf(json, sizeof(json),
                 "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"pg-%02zu\","
                 "\"labels\":{\"set\":\"pg\",\"parity\":\"%s\"%s}}}", i, i % 2 ? "odd" : "even",
                 i % 5 == 0 ? ",\"five\":\"y\"" : "");
        assert_int_equal(kc_client_create(A, &kc_res_configmaps, NS2, json, strlen(json), NULL, &st), 0);
    }
    lo.label_selector = "set=pg";
    lo.limit = 10;
    do {
        assert_int_equal(kc_client_list(A, &kc_res_configmaps, NS2, &lo, &b, &st), 0);
        n = items_of(&b, names, 64, cont, sizeof(cont));
        assert_true(n <= 10);
        for (i = 0; i < n; i++) {
            unsigned k = (unsigned)strtoul(names[i] + 3, NULL, 10);
            assert_true(k < 23);
            assert_int_equal(seen[k], 0);
            seen[k] = 1;
        }
        total += n;
        pages++;
        lo.continue_token = cont;
    } while (cont[0] != '\0' && pages < 10);
    assert_int_equal(total, 23);
    assert_int_equal(pages, 3);

    /* an invalid continue token: 400 */
    lo.continue_token = "bm90LWEtdG9rZW4=";
    assert_int_not_equal(kc_client_list(A, &kc_res_configmaps, NS2, &lo, &b, &st), 0);
    assert_int_equal(st.http_code, 400);
    assert_int_equal(st.err, KC_EBADREQUEST);

    /* label selectors: equality, set-based, existence */
    lo = (kc_list_opts_t)KC_LIST_OPTS_INIT;
    lo.label_selector = "set=pg,parity=odd";
    assert_int_equal(kc_client_list(A, &kc_res_configmaps, NS2, &lo, &b, &st), 0);
    assert_int_equal(items_of(&b, names, 64, cont, sizeof(cont)), 11);
    lo.label_selector = "parity in (odd,even),!five";
    assert_int_equal(kc_client_list(A, &kc_res_configmaps, NS2, &lo, &b, &st), 0);
    assert_int_equal(items_of(&b, names, 64, cont, sizeof(cont)), 18);
    lo.label_selector = "five,parity!=odd";
    assert_int_equal(kc_client_list(A, &kc_res_configmaps, NS2, &lo, &b, &st), 0);
    assert_int_equal(items_of(&b, names, 64, cont, sizeof(cont)), 3); /* 0, 10, 20 */
    /* field selectors, in a namespace and across all */
    lo.label_selector = NULL;
    lo.field_selector = "metadata.name=pg-07";
    assert_int_equal(kc_client_list(A, &kc_res_configmaps, NS2, &lo, &b, &st), 0);
    assert_int_equal(items_of(&b, names, 64, cont, sizeof(cont)), 1);
    assert_string_equal(names[0], "pg-07");
    lo.field_selector = "metadata.namespace=" NS2 ",metadata.name!=pg-07";
    lo.label_selector = "set=pg";
    assert_int_equal(kc_client_list(A, &kc_res_configmaps, NULL, &lo, &b, &st), 0);
    assert_int_equal(items_of(&b, names, 64, cont, sizeof(cont)), 22);
    /* an unsupported field: 400 */
    lo.field_selector = "data.a=1";
    assert_int_equal(kc_client_list(A, &kc_res_configmaps, NS2, &lo, &b, &st), KC_EBADREQUEST);
    assert_int_equal(st.http_code, 400);

    /* delete_collection with a label selector leaves the others */
    lo = (kc_list_opts_t)KC_LIST_OPTS_INIT;
    lo.label_selector = "set=pg,parity=even";
    assert_int_equal(kc_client_delete_collection(A, &kc_res_configmaps, NS2, &lo, &b, &st), 0);
    lo.label_selector = "set=pg";
    assert_int_equal(kc_client_list(A, &kc_res_configmaps, NS2, &lo, &b, &st), 0);
    assert_int_equal(items_of(&b, names, 64, cont, sizeof(cont)), 11);
    assert_int_equal(kc_client_delete_collection(A, &kc_res_configmaps, NS2, &lo, &b, &st), 0);
    assert_int_equal(kc_client_list(A, &kc_res_configmaps, NS2, &lo, &b, &st), 0);
    assert_int_equal(items_of(&b, names, 64, cont, sizeof(cont)), 0);
    kc_buf_free(&b);
}

static void test_serviceaccount_rbac(void **state)
{
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    kc_list_opts_t lo = KC_LIST_OPTS_INIT;
    const char *cm = "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"sa\"},"
                     "\"data\":{\"a\":\"1\"}}";

    (void)state;
    /* allowed by the manifests: list, create, delete */
    assert_int_equal(kc_client_list(SA, &kc_res_configmaps, NS, &lo, &b, &st), 0);
    assert_int_equal(kc_client_create(SA, &kc_res_configmaps, NS, cm, strlen(cm), &b, &st), 0);
    /* outside the ClusterRole: get (it reads from its caches), patch, pods */
    assert_int_equal(kc_client_get(SA, &kc_res_configmaps, NS, "sa", &b, &st), KC_EFORBIDDEN);
    assert_int_equal(st.http_code, 403);
    assert_true(kc_status_is_forbidden(&st));
    assert_string_equal(st.reason, "Forbidden");
    assert_non_null(strstr(st.message, "system:serviceaccount:kcache-system:kcache-controller"));
    assert_non_null(strstr(st.message, "cannot get resource \"configmaps\""));
    assert_int_equal(kc_client_patch(SA, &kc_res_configmaps, NS, "sa", KC_PATCH_MERGE, "{}", 2, NULL, &b, &st),
                     KC_EFORBIDDEN);
    assert_int_equal(kc_client_list(SA, &kc_res_pods, NS, &lo, &b, &st), KC_EFORBIDDEN);
    assert_non_null(strstr(st.message, "cannot list resource \"pods\""));
    assert_int_equal(kc_client_delete(SA, &kc_res_configmaps, NS, "sa", NULL, &b, &st), 0);
    kc_buf_free(&b);
}

static void test_discovery(void **state)
{
    kc_resource_t r;
    kc_status_t st;
    kc_buf_t b = KC_BUF_INIT;

    (void)state;
    assert_int_equal(kc_client_discover(A, "apps/v1", "Deployment", &r, &st), 0);
    assert_string_equal(r.group, "apps");
    assert_string_equal(r.version, "v1");
    assert_string_equal(r.resource, "deployments");
    assert_string_equal(r.kind, "Deployment");
    assert_true(r.namespaced);
    assert_int_equal(kc_client_discover(A, "coordination.k8s.io/v1", "Lease", &r, &st), 0);
    assert_string_equal(r.group, "coordination.k8s.io");
    assert_string_equal(r.resource, "leases");
    assert_true(r.namespaced);
    assert_int_equal(kc_client_discover(A, "v1", "Namespace", &r, &st), 0);
    assert_string_equal(r.group, "");
    assert_string_equal(r.resource, "namespaces");
    assert_false(r.namespaced);
    assert_int_equal(kc_client_discover(A, "apps/v1", "NoSuchKind", &r, &st), KC_ENOTFOUND);
    assert_int_equal(kc_client_discover(A, "nosuch.example.com/v1", "Thing", &r, &st), KC_ENOTFOUND);
    /* what was discovered is usable */
    assert_int_equal(kc_client_discover(A, "coordination.k8s.io/v1", "Lease", &r, &st), 0);
    assert_int_equal(kc_client_list(A, &r, NS, NULL, &b, &st), 0);
    assert_non_null(strstr(b.data, "\"kind\":\"LeaseList\""));
    assert_int_equal(kc_client_request(A, "GET", "/version", NULL, NULL, NULL, 0, &b, &st), 0);
    assert_non_null(strstr(b.data, "\"gitVersion\""));
    kc_buf_free(&b);
}

typedef struct wstate {
    int added, bookmarks, initial_end, errors;
    char last_rv[64];
} wstate_t;

static int watch_cb(void *ud, const kc_watch_event_t *ev)
{
    wstate_t *w = ud;
    cJSON *j;

    switch (ev->type) {
    case KC_WATCH_ADDED:
        w->added++;
        break;
    case KC_WATCH_BOOKMARK:
        w->bookmarks++;
        j = kc_watch_event_parse(ev);
        if (j) {
            cJSON *md = cJSON_GetObjectItem(j, "metadata");
            cJSON *an = cJSON_GetObjectItem(md, "annotations");
            const char *rv = cJSON_GetStringValue(cJSON_GetObjectItem(md, "resourceVersion"));
            if (cJSON_IsString(cJSON_GetObjectItem(an, "k8s.io/initial-events-end")))
                w->initial_end++;
            if (rv)
                snprintf(w->last_rv, sizeof(w->last_rv), "%s", rv);
            cJSON_Delete(j);
        }
        return w->initial_end ? 1 : 0;   /* stop at the end of the initial events */
    case KC_WATCH_ERROR:
        w->errors++;
        return 1;
    default:
        break;
    }
    return 0;
}

static void test_streaming_list_and_watch(void **state)
{
    kc_status_t st;
    kc_watch_opts_t wo = KC_WATCH_OPTS_INIT;
    wstate_t w;
    char json[256];
    int i;

    (void)state;
    for (i = 0; i < 5; i++) {
        snprintf(json, sizeof(json),
                 "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"sl-%d\"}}", i);
        assert_int_equal(kc_client_create(A, &kc_res_configmaps, NS, json, strlen(json), NULL, &st), 0);
    }
    memset(&w, 0, sizeof(w));
    wo.send_initial_events = 1;
    wo.timeout_seconds = 20;
    assert_int_equal(kc_client_watch(A, &kc_res_configmaps, NS, &wo, watch_cb, &w, &st), KC_ESTOPPED);
    printf("# streaming list: %d added, %d bookmarks, initial-events-end %d, rv %s\n", w.added,
           w.bookmarks, w.initial_end, w.last_rv);
    assert_int_equal(w.errors, 0);
    assert_int_equal(w.initial_end, 1);
    assert_true(w.added >= 5);
    assert_true(w.last_rv[0] != '\0');
    assert_int_equal(kc_client_delete_collection(A, &kc_res_configmaps, NS, NULL, NULL, &st), 0);
}

static int count_cb(void *ud, const kc_watch_event_t *ev)
{
    (void)ev;
    (*(int *)ud)++;
    return 0;
}

/* A watch that ends by its timeoutSeconds returns 0 with every event.
 * kube-apiserver 1.37 gzips watch responses for a client that accepts
 * gzip (kc_client does, unless the kubeconfig says disable-compression),
 * as several gzip members in a row (one per flush); libcurl 7.88's decoder
 * stops at the end of the first member with CURLE_WRITE_ERROR, so the
 * watch fails with -EIO after a few events.  A known kcache bug (the fake
 * API server never compresses a watch): reported as skipped, not failed,
 * until k8sclient stops asking for gzip on watches. */
static void test_watch_gzip(void **state)
{
    kc_status_t st;
    kc_buf_t b = KC_BUF_INIT;
    kc_watch_opts_t wo = KC_WATCH_OPTS_INIT;
    kc_list_opts_t lo = KC_LIST_OPTS_INIT;
    char json[2400], pad[2001];
    int i, n = 0, rc = 0, try;

    (void)state;
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    for (i = 0; i < 30; i++) {
        snprintf(json, sizeof(json),
                 "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"gz-%d\","
                 "\"labels\":{\"set\":\"gz\"}},\"data\":{\"v\":\"%s\"}}", i, pad);
        assert_int_equal(kc_client_create(A, &kc_res_configmaps, NS, json, strlen(json), &b, &st), 0);
    }
    wo.label_selector = "set=gz";
    wo.timeout_seconds = 2;
    /* whether a response is compressed depends on how the initial events
     * are flushed: try a few times */
    for (try = 0; try < 4 && rc == 0; try++) {
        n = 0;
        rc = kc_client_watch(A, &kc_res_configmaps, NULL, &wo, count_cb, &n, &st);
        printf("# watch of 30 objects: rc %d (%s), %d events, %s\n", rc, kc_strerror(rc), n, st.message);
    }
    lo.label_selector = "set=gz";
    assert_int_equal(kc_client_delete_collection(A, &kc_res_configmaps, NS, &lo, &b, &st), 0);
    kc_buf_free(&b);
    /* kcache asks for no compression on watches (kube-apiserver gzips a
     * watch as many gzip members, which libcurl 7.88 cannot follow): every
     * try must end normally at its timeout with every object seen */
    assert_int_equal(rc, 0);
    assert_true(n >= 30);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crud_conflicts_errors),
        cmocka_unit_test(test_update_status),
        cmocka_unit_test(test_patches_and_apply),
        cmocka_unit_test(test_pagination_selectors_collection),
        cmocka_unit_test(test_serviceaccount_rbac),
        cmocka_unit_test(test_discovery),
        cmocka_unit_test(test_streaming_list_and_watch),
        cmocka_unit_test(test_watch_gzip),
    };

    real_require_env();
    return cmocka_run_group_tests(tests, setup, teardown);
}
