/* Shared helpers of the C suites that run against the real kube-apiserver
 * of tests/realapi/run.sh (header-only: each suite is one program).
 * Clients come from the kubeconfigs the harness wrote (KC_REAL_KUBECONFIG
 * for admin, KC_REAL_SA_KUBECONFIG for the controller's ServiceAccount);
 * the harness's admin endpoint (KC_REAL_ADMIN_URL) compacts etcd and
 * restarts kube-apiserver.  Without KC_REAL_KUBECONFIG a suite skips (77). */
#ifndef KC_REAL_SUPPORT_H
#define KC_REAL_SUPPORT_H

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kc_client.h"

static inline void real_sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

#define REAL_WAIT_FOR(cond, timeout_ms)                                         \
    do {                                                                        \
        long waited_ = 0;                                                       \
        while (!(cond) && waited_ < (timeout_ms)) {                             \
            real_sleep_ms(20);                                                  \
            waited_ += 20;                                                      \
        }                                                                       \
    } while (0)

/* Skip the whole program (exit 77) when not run by tests/realapi/run.sh. */
static inline void real_require_env(void)
{
    if (getenv("KC_REAL_KUBECONFIG") == NULL) {
        fprintf(stderr, "skipped: KC_REAL_KUBECONFIG not set (run through make test-real)\n");
        exit(77);
    }
}

/* A client from the kubeconfig named by env var `var`; aborts the test on
 * failure.  o may be NULL. */
static inline kc_client_t *real_client(const char *var, const kc_client_opts_t *o)
{
    kc_config_opts_t co = KC_CONFIG_OPTS_INIT;
    kc_config_t *cfg = NULL;
    kc_client_t *c = NULL;
    kc_errbuf_t eb;

    co.kubeconfig = getenv(var);
    if (co.kubeconfig == NULL) {
        fprintf(stderr, "%s not set\n", var);
        abort();
    }
    if (kc_config_load(&co, &cfg, &eb) != 0) {
        fprintf(stderr, "config %s: %s\n", co.kubeconfig, eb.msg);
        abort();
    }
    if (kc_client_new(cfg, o, &c, &eb) != 0) {
        fprintf(stderr, "client: %s\n", eb.msg);
        abort();
    }
    kc_config_free(cfg);
    return c;
}

/* A client from a copy of the admin kubeconfig with disable-compression:
 * true (the copy goes to $KC_REAL_DIR, mode 0600). */
static inline kc_client_t *real_client_nocompress(const kc_client_opts_t *o)
{
    const char *src = getenv("KC_REAL_KUBECONFIG"), *dir = getenv("KC_REAL_DIR");
    char path[512], line[8192];
    FILE *in, *out;
    int fd;

    snprintf(path, sizeof(path), "%s/nocompress.kubeconfig", dir ? dir : "/tmp");
    in = fopen(src, "r");
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    out = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (in == NULL || out == NULL) {
        fprintf(stderr, "cannot copy %s to %s\n", src, path);
        abort();
    }
    while (fgets(line, sizeof(line), in)) {
        const char *srv = strstr(line, "server: ");
        if (srv && strspn(line, " ") == (size_t)(srv - line))
            fprintf(out, "%.*sdisable-compression: true\n", (int)(srv - line), line);
        fputs(line, out);
    }
    fclose(in);
    fclose(out);
    setenv("KC_REAL_NOCOMPRESS_KUBECONFIG", path, 1);
    return real_client("KC_REAL_NOCOMPRESS_KUBECONFIG", o);
}

/* POST to the harness's admin endpoint ("compact", "restart") with curl(1);
 * returns 0 when it answered 2xx. */
static inline int real_admin(const char *what)
{
    char cmd[512];
    const char *url = getenv("KC_REAL_ADMIN_URL");

    if (url == NULL)
        return -1;
    snprintf(cmd, sizeof(cmd), "curl -sSf --noproxy '*' -m 60 -X POST '%s/%s' >/dev/null", url, what);
    return system(cmd) == 0 ? 0 : -1;
}

/* Create namespace ns as c (AlreadyExists is fine). */
static inline int real_ensure_ns(kc_client_t *c, const char *ns)
{
    char json[256];
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    int rc;

    snprintf(json, sizeof(json),
             "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"%s\"}}", ns);
    /* a body buffer: without one kc_client drops the error Status, and a 409
     * AlreadyExists comes back as KC_ECONFLICT (see README) */
    rc = kc_client_create(c, &kc_res_namespaces, NULL, json, strlen(json), &b, &st);
    kc_buf_free(&b);
    if (rc != 0 && rc != KC_EEXISTS)
        fprintf(stderr, "create namespace %s: %d %s: %s\n", ns, st.http_code, st.reason, st.message);
    return rc == KC_EEXISTS ? 0 : rc;
}

/* metadata.<field> of a JSON object as a new string ("" if absent). */
static inline char *real_meta(const char *json, size_t len, const char *field)
{
    cJSON *j = cJSON_ParseWithLength(json, len);
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "metadata"), field));
    char *s = strdup(v ? v : "");

    cJSON_Delete(j);
    return s;
}

#endif
