/* What kube-apiserver v1.37.2 answers, byte for byte, where the fake API
 * server (tests/fakeapi/) must answer the same: recorded from the real
 * server of tests/realapi/, and checked against both by two suites, so the
 * two pin the same behaviour:
 *   tests/test_fakeapi.c      (test_wire_like_real_server, test_bookmark_shape)
 *   tests/realapi/c/real_watch.c (the same tables against the real server)
 * Header-only data and one matcher; no state.
 *
 * In the expected bodies '#' stands for a run of one or more digits (a
 * revision that differs from run to run); bodies are compact JSON in the
 * server's field order (the real server's pretty output for curl is the same
 * after cJSON_PrintUnformatted). */
#ifndef KC_WIRE_EXPECT_H
#define KC_WIRE_EXPECT_H

#include <ctype.h>
#include <stddef.h>

/* 1 when s matches pat ('#' = one or more digits), else 0. */
static inline int wire_match(const char *pat, const char *s)
{
    while (*pat) {
        if (*pat == '#') {
            if (!isdigit((unsigned char)*s))
                return 0;
            while (isdigit((unsigned char)*s))
                s++;
            pat++;
        } else if (*pat++ != *s++) {
            return 0;
        }
    }
    return *s == '\0';
}

/* Requests on /api/v1/namespaces/NS/configmaps?QUERY and their answers
 * (body NULL: only the code is pinned). */
static const struct wire_case {
    const char *query;
    int code;
    const char *body;
} wire_cases[] = {
    {"resourceVersionMatch=Exact", 422,
     "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"ListOptions.meta.k8s.io \\\"\\\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided\",\"reason\":\"Invalid\",\"details\":{\"group\":\"meta.k8s.io\",\"kind\":\"ListOptions\",\"causes\":[{\"reason\":\"FieldValueForbidden\",\"message\":\"Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided\",\"field\":\"resourceVersionMatch\"}]},\"code\":422}"},
    {"resourceVersion=0&resourceVersionMatch=Exact", 422,
     "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"ListOptions.meta.k8s.io \\\"\\\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch \\\"exact\\\" is forbidden for resourceVersion \\\"0\\\"\",\"reason\":\"Invalid\",\"details\":{\"group\":\"meta.k8s.io\",\"kind\":\"ListOptions\",\"causes\":[{\"reason\":\"FieldValueForbidden\",\"message\":\"Forbidden: resourceVersionMatch \\\"exact\\\" is forbidden for resourceVersion \\\"0\\\"\",\"field\":\"resourceVersionMatch\"}]},\"code\":422}"},
    {"resourceVersion=5&resourceVersionMatch=Bogus", 422,
     "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"ListOptions.meta.k8s.io \\\"\\\" is invalid: resourceVersionMatch: Unsupported value: \\\"Bogus\\\": supported values: \\\"Exact\\\", \\\"NotOlderThan\\\", \\\"\\\"\",\"reason\":\"Invalid\",\"details\":{\"group\":\"meta.k8s.io\",\"kind\":\"ListOptions\",\"causes\":[{\"reason\":\"FieldValueNotSupported\",\"message\":\"Unsupported value: \\\"Bogus\\\": supported values: \\\"Exact\\\", \\\"NotOlderThan\\\", \\\"\\\"\",\"field\":\"resourceVersionMatch\"}]},\"code\":422}"},
    {"resourceVersion=99999999&resourceVersionMatch=NotOlderThan", 504,
     "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"Timeout: Too large resource version: 99999999, current: #\",\"reason\":\"Timeout\",\"details\":{\"causes\":[{\"reason\":\"ResourceVersionTooLarge\",\"message\":\"Too large resource version\"}],\"retryAfterSeconds\":1},\"code\":504}"},
    {"resourceVersion=abc", 400,
     "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"invalid resource version: resourceVersion: Invalid value: \\\"abc\\\": strconv.ParseUint: parsing \\\"abc\\\": invalid syntax\",\"reason\":\"BadRequest\",\"code\":400}"},
    {"sendInitialEvents=true", 422,
     "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"ListOptions.meta.k8s.io \\\"\\\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list\",\"reason\":\"Invalid\",\"details\":{\"group\":\"meta.k8s.io\",\"kind\":\"ListOptions\",\"causes\":[{\"reason\":\"FieldValueForbidden\",\"message\":\"Forbidden: sendInitialEvents is forbidden for list\",\"field\":\"sendInitialEvents\"}]},\"code\":422}"},
    {"watch=1&resourceVersionMatch=NotOlderThan", 422,
     "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"ListOptions.meta.k8s.io \\\"\\\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided\",\"reason\":\"Invalid\",\"details\":{\"group\":\"meta.k8s.io\",\"kind\":\"ListOptions\",\"causes\":[{\"reason\":\"FieldValueForbidden\",\"message\":\"Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided\",\"field\":\"resourceVersionMatch\"}]},\"code\":422}"},
    {"watch=1&sendInitialEvents=true", 422,
     "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"ListOptions.meta.k8s.io \\\"\\\" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan\",\"reason\":\"Invalid\",\"details\":{\"group\":\"meta.k8s.io\",\"kind\":\"ListOptions\",\"causes\":[{\"reason\":\"FieldValueForbidden\",\"message\":\"Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan\",\"field\":\"resourceVersionMatch\"}]},\"code\":422}"},
    {"resourceVersion=abc&watch=1", 500,
     "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"resourceVersion: Invalid value: \\\"abc\\\": strconv.ParseUint: parsing \\\"abc\\\": invalid syntax\",\"code\":500}"},
    /* a negative limit is no limit */
    {"limit=-1", 200, NULL},
};

/* What follows "metadata":{...} in a BOOKMARK's object, per kind: the
 * kind's empty (Go zero-value) object with only resourceVersion (and the
 * initial-events-end annotation) set.  No "creationTimestamp":null. */
static const struct wire_bookmark {
    const char *path, *kind, *gv, *tail;
} wire_bookmarks[] = {
    {"/api/v1/namespaces", "Namespace", "v1", ",\"spec\":{},\"status\":{}"},
    {"/api/v1/configmaps", "ConfigMap", "v1", ""},
    {"/api/v1/secrets", "Secret", "v1", ""},
    {"/api/v1/pods", "Pod", "v1", ",\"spec\":{\"containers\":null},\"status\":{}"},
    {"/api/v1/services", "Service", "v1", ",\"spec\":{},\"status\":{\"loadBalancer\":{}}"},
    {"/api/v1/serviceaccounts", "ServiceAccount", "v1", ""},
    {"/api/v1/events", "Event", "v1",
     ",\"involvedObject\":{},\"source\":{},\"firstTimestamp\":null,\"lastTimestamp\":null,"
     "\"eventTime\":null,\"reportingComponent\":\"\",\"reportingInstance\":\"\""},
    {"/apis/coordination.k8s.io/v1/leases", "Lease", "coordination.k8s.io/v1", ",\"spec\":{}"},
    {"/apis/apps/v1/deployments", "Deployment", "apps/v1",
     ",\"spec\":{\"replicas\":0,\"selector\":null,\"template\":{\"metadata\":{},"
     "\"spec\":{\"containers\":null}},\"strategy\":{}},\"status\":{}"},
    {"/apis/rbac.authorization.k8s.io/v1/roles", "Role", "rbac.authorization.k8s.io/v1", ",\"rules\":null"},
    {"/apis/rbac.authorization.k8s.io/v1/rolebindings", "RoleBinding", "rbac.authorization.k8s.io/v1",
     ",\"roleRef\":{\"apiGroup\":\"\",\"kind\":\"\",\"name\":\"\"}"},
    {"/apis/rbac.authorization.k8s.io/v1/clusterroles", "ClusterRole", "rbac.authorization.k8s.io/v1",
     ",\"rules\":null"},
    {"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", "ClusterRoleBinding",
     "rbac.authorization.k8s.io/v1", ",\"roleRef\":{\"apiGroup\":\"\",\"kind\":\"\",\"name\":\"\"}"},
};

/* The ERROR event of a watch from an expired resourceVersion, and its
 * object (printf formats: the requested resourceVersion; '#' the oldest one
 * still served). */
#define WIRE_EXPIRED_OBJECT_FMT                                                         \
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","       \
    "\"message\":\"too old resource version: %s (#)\",\"reason\":\"Expired\",\"code\":410}"
#define WIRE_EXPIRED_EVENT_FMT "{\"type\":\"ERROR\",\"object\":" WIRE_EXPIRED_OBJECT_FMT "}"

#endif
