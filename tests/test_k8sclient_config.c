/* Offline tests of configuration loading: kubeconfig variants (merge,
 * relative paths, data/file certificates, tokens, errors), in-cluster from a
 * temporary directory, and exec credential plugins run from scripts written
 * to a temporary directory. */
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
#include <sys/stat.h>
#include <unistd.h>

#include "client_int.h"
#include "kc_client.h"

/* ------------------------------------------------------------------ */
/* Allocation failures: fail_at / live (tests/support/kc_test_alloc.h). */
#include "kc_test_alloc.h"

static char tmpdir[256];

static void wfile(const char *rel, const char *content, int mode)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
    for (char *q = path + strlen(tmpdir) + 1; (q = strchr(q, '/')) != NULL; q++) {
        *q = '\0';
        mkdir(path, 0700);
        *q = '/';
    }
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    chmod(path, (mode_t)mode);
}

static char *tpath(const char *rel)
{
    static char bufs[4][512];
    static int i;
    char *b = bufs[i++ & 3];

    snprintf(b, 512, "%s/%s", tmpdir, rel);
    return b;
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/kc-config-test-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    unsetenv("KUBECONFIG");
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    unsetenv("POD_NAMESPACE");
    return 0;
}

static int teardown(void **state)
{
    char cmd[600];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    assert_int_equal(system(cmd), 0);
    unsetenv("KUBECONFIG");
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    unsetenv("POD_NAMESPACE");
    return 0;
}

static int load(const char *kubeconfig, const char *context, kc_config_t **cfg, kc_errbuf_t *eb)
{
    kc_config_opts_t o = KC_CONFIG_OPTS_INIT;

    o.kubeconfig = kubeconfig;
    o.context = context;
    eb->msg[0] = '\0';
    return kc_config_load(&o, cfg, eb);
}

static void expect_fail(const char *kc, const char *ctx, int code, const char *text)
{
    kc_config_t *cfg = NULL;
    kc_errbuf_t eb;
    int rc = load(kc, ctx, &cfg, &eb);

    if (rc != code || strstr(eb.msg, text) == NULL)
        fail_msg("expected %s with \"%s\", got %s: \"%s\"", kc_err_name(code), text,
                 kc_err_name(rc), eb.msg);
    assert_null(cfg);
}

#define CA_PEM "-----BEGIN CERTIFICATE-----\nCAFILE\n-----END CERTIFICATE-----\n"
/* base64 of "-----BEGIN CERTIFICATE-----\nCADATA\n-----END CERTIFICATE-----\n" */
static char *b64(const char *s)
{
    char *r = kc__b64_encode(s, strlen(s));
    assert_non_null(r);
    return r;
}

static void test_basic_token(void **state)
{
    kc_config_t *cfg = NULL;
    kc_errbuf_t eb;

    (void)state;
    wfile("basic/config",
          "apiVersion: v1\nkind: Config\ncurrent-context: dev\n"
          "clusters:\n- name: c1\n  cluster:\n    server: https://10.0.0.1:6443/\n"
          "    certificate-authority: ca.crt\n"
          "users:\n- name: u1\n  user:\n    token: s3cr3t\n"
          "contexts:\n- name: dev\n  context:\n    cluster: c1\n    user: u1\n"
          "    namespace: team-a\n"
          "preferences: {}\n",
          0600);
    wfile("basic/ca.crt", CA_PEM, 0600);
    assert_int_equal(load(tpath("basic/config"), NULL, &cfg, &eb), 0);
    assert_string_equal(kc_config_server(cfg), "https://10.0.0.1:6443");
    assert_string_equal(kc_config_namespace(cfg), "team-a");
    assert_string_equal(kc_config_context(cfg), "dev");
    assert_false(kc_config_is_in_cluster(cfg));
    assert_string_equal(cfg->token, "s3cr3t");
    assert_string_equal(cfg->ca.data, CA_PEM);
    assert_null(cfg->exec);
    kc_config_free(cfg);
}

static void test_merge_and_relative_paths(void **state)
{
    kc_config_t *cfg = NULL;
    kc_errbuf_t eb;
    char env[1024];
    char *cert = b64("-----BEGIN CERTIFICATE-----\nCLIENTDATA\n-----END CERTIFICATE-----\n");
    char yaml[2048];

    (void)state;
    /* file 1: clusters and contexts, current-context ctx-a */
    wfile("m/one/config",
          "current-context: ctx-a\n"
          "clusters:\n- name: c\n  cluster:\n    server: https://first:1\n"
          "    certificate-authority: pki/ca.crt\n"
          "contexts:\n- name: ctx-a\n  context: {cluster: c, user: u}\n"
          "- name: ctx-b\n  context: {cluster: c, user: u2, namespace: nb}\n",
          0600);
    wfile("m/one/pki/ca.crt", CA_PEM, 0600);
    /* file 2: users, a cluster "c" that must lose, its own current-context */
    snprintf(yaml, sizeof(yaml),
             "current-context: ctx-b\n"
             "clusters:\n- name: c\n  cluster:\n    server: https://second:2\n"
             "users:\n- name: u\n  user:\n    client-certificate: pki/client.crt\n"
             "    client-key: pki/client.key\n    tokenFile: tok/token\n"
             "- name: u2\n  user:\n    client-certificate-data: %s\n"
             "    client-certificate: does-not-exist.crt\n"
             "    client-key-data: %s\n",
             cert, cert);
    wfile("m/two/config", yaml, 0600);
    wfile("m/two/pki/client.crt", "CLIENTFILE", 0600);
    wfile("m/two/pki/client.key", "KEYFILE", 0600);
    snprintf(env, sizeof(env), "%s:%s:%s", tpath("m/one/config"), tpath("m/missing/config"),
             tpath("m/two/config"));
    setenv("KUBECONFIG", env, 1);

    assert_int_equal(load(NULL, NULL, &cfg, &eb), 0);
    assert_string_equal(kc_config_server(cfg), "https://first:1");
    assert_string_equal(kc_config_context(cfg), "ctx-a");
    assert_string_equal(kc_config_namespace(cfg), "default");
    assert_string_equal(cfg->ca.data, CA_PEM);           /* relative to file one */
    assert_string_equal(cfg->client_cert.data, "CLIENTFILE"); /* relative to file two */
    assert_string_equal(cfg->client_key.data, "KEYFILE");
    assert_string_equal(cfg->token_file, tpath("m/two/tok/token"));
    kc_config_free(cfg);

    /* --context picks another context; data wins over the file path */
    assert_int_equal(load(NULL, "ctx-b", &cfg, &eb), 0);
    assert_string_equal(kc_config_namespace(cfg), "nb");
    assert_string_equal(cfg->client_cert.data,
                        "-----BEGIN CERTIFICATE-----\nCLIENTDATA\n-----END CERTIFICATE-----\n");
    kc_config_free(cfg);

    /* an explicit kubeconfig is not merged: file two alone has no contexts */
    expect_fail(tpath("m/two/config"), NULL, KC_ECONFIG, "context \"ctx-b\" not found");
    unsetenv("KUBECONFIG");
    free(cert);
}

static void test_errors(void **state)
{
    char yaml[1024];

    (void)state;
    expect_fail(tpath("nope/config"), NULL, -ENOENT, "nope/config");
    wfile("e/ctx", "current-context: x\ncontexts:\n- name: y\n  context: {cluster: c}\n", 0600);
    expect_fail(tpath("e/ctx"), NULL, KC_ECONFIG, "context \"x\" not found");
    expect_fail(tpath("e/ctx"), "y", KC_ECONFIG, "cluster \"c\" not found");
    wfile("e/nocc", "clusters: []\n", 0600);
    expect_fail(tpath("e/nocc"), NULL, KC_ECONFIG, "no current-context");
    wfile("e/user", "current-context: a\nclusters:\n- name: c\n  cluster: {server: https://x}\n"
                    "contexts:\n- name: a\n  context: {cluster: c, user: ghost}\n", 0600);
    expect_fail(tpath("e/user"), NULL, KC_ECONFIG, "user \"ghost\" not found");
    wfile("e/b64", "current-context: a\nclusters:\n- name: c\n  cluster:\n"
                   "    server: https://x\n    certificate-authority-data: '!!!notbase64'\n"
                   "contexts:\n- name: a\n  context: {cluster: c}\n", 0600);
    expect_fail(tpath("e/b64"), NULL, KC_ECONFIG, "certificate-authority-data is not valid base64");
    wfile("e/ap", "current-context: a\nclusters:\n- name: c\n  cluster: {server: https://x}\n"
                  "users:\n- name: u\n  user:\n    auth-provider:\n      name: gcp\n"
                  "contexts:\n- name: a\n  context: {cluster: c, user: u}\n", 0600);
    expect_fail(tpath("e/ap"), NULL, KC_EUNSUPPORTED, "field \"auth-provider\" is not supported");
    wfile("e/imp", "current-context: a\nclusters:\n- name: c\n  cluster: {server: https://x}\n"
                   "users:\n- name: u\n  user: {token: t, as: bob}\n"
                   "contexts:\n- name: a\n  context: {cluster: c, user: u}\n", 0600);
    expect_fail(tpath("e/imp"), NULL, KC_EUNSUPPORTED, "field \"as\"");
    wfile("e/cf", "current-context: a\nclusters:\n- name: c\n  cluster: {server: https://x, "
                  "bogus-field: 1}\ncontexts:\n- name: a\n  context: {cluster: c}\n", 0600);
    expect_fail(tpath("e/cf"), NULL, KC_EUNSUPPORTED, "field \"bogus-field\"");
    wfile("e/cert", "current-context: a\nclusters:\n- name: c\n  cluster: {server: https://x}\n"
                    "users:\n- name: u\n  user: {client-certificate: missing.crt, "
                    "client-key: missing.key}\n"
                    "contexts:\n- name: a\n  context: {cluster: c, user: u}\n", 0600);
    expect_fail(tpath("e/cert"), NULL, KC_ECONFIG, "missing.crt");
    wfile("e/half", "current-context: a\nclusters:\n- name: c\n  cluster: {server: https://x}\n"
                    "users:\n- name: u\n  user: {client-certificate-data: QUJD}\n"
                    "contexts:\n- name: a\n  context: {cluster: c, user: u}\n", 0600);
    expect_fail(tpath("e/half"), NULL, KC_ECONFIG, "certificate and key must be given together");
    wfile("e/insec", "current-context: a\nclusters:\n- name: c\n  cluster: {server: https://x, "
                     "insecure-skip-tls-verify: true, certificate-authority-data: QUJD}\n"
                     "contexts:\n- name: a\n  context: {cluster: c}\n", 0600);
    expect_fail(tpath("e/insec"), NULL, KC_ECONFIG, "insecure-skip-tls-verify is not allowed");
    wfile("e/srv", "current-context: a\nclusters:\n- name: c\n  cluster: {server: ftp://x}\n"
                   "contexts:\n- name: a\n  context: {cluster: c}\n", 0600);
    expect_fail(tpath("e/srv"), NULL, KC_ECONFIG, "not an http(s) URL");
    wfile("e/yaml", "current-context: [a\n", 0600);
    expect_fail(tpath("e/yaml"), NULL, KC_ECONFIG, "line");
    snprintf(yaml, sizeof(yaml),
             "current-context: a\nclusters:\n- name: c\n  cluster: {server: https://x}\n"
             "users:\n- name: u\n  user:\n    exec:\n      apiVersion: "
             "client.authentication.k8s.io/v1alpha1\n      command: x\n"
             "contexts:\n- name: a\n  context: {cluster: c, user: u}\n");
    wfile("e/execv", yaml, 0600);
    expect_fail(tpath("e/execv"), NULL, KC_EUNSUPPORTED, "v1alpha1");
}

static int warned;
static void logcap(void *ud, kc_log_level_t level, const char *comp, const char *msg)
{
    (void)ud;
    (void)comp;
    if (level == KC_LOG_WARN && strstr(msg, "insecure-skip-tls-verify"))
        warned++;
}

static void test_insecure_warns_and_basic_auth(void **state)
{
    kc_config_opts_t o = KC_CONFIG_OPTS_INIT;
    kc_config_t *cfg = NULL;
    kc_errbuf_t eb;

    (void)state;
    wfile("i/config", "current-context: a\nclusters:\n- name: c\n  cluster:\n"
                      "    server: https://x\n    insecure-skip-tls-verify: true\n"
                      "    tls-server-name: kubernetes.default.svc\n"
                      "    proxy-url: http://proxy:3128\n    disable-compression: true\n"
                      "users:\n- name: u\n  user: {username: alice, password: pw}\n"
                      "contexts:\n- name: a\n  context: {cluster: c, user: u}\n", 0600);
    o.kubeconfig = tpath("i/config");
    o.log.fn = logcap;
    o.log.level = KC_LOG_DEBUG;
    warned = 0;
    assert_int_equal(kc_config_load(&o, &cfg, &eb), 0);
    assert_int_equal(warned, 1);
    assert_true(cfg->insecure);
    assert_string_equal(cfg->tls_server_name, "kubernetes.default.svc");
    assert_string_equal(cfg->proxy_url, "http://proxy:3128");
    assert_true(cfg->disable_compression);
    assert_string_equal(cfg->username, "alice");
    assert_string_equal(cfg->password, "pw");
    kc_config_free(cfg);
}

static void test_in_cluster(void **state)
{
    kc_config_opts_t o = KC_CONFIG_OPTS_INIT;
    kc_config_t *cfg = NULL;
    kc_errbuf_t eb;

    (void)state;
    wfile("sa/token", "tok-1\n", 0600);
    wfile("sa/ca.crt", CA_PEM, 0600);
    wfile("sa/namespace", "kube-apps\n", 0600);
    o.incluster_dir = tpath("sa");
    o.in_cluster = 1;
    assert_int_equal(kc_config_load(&o, &cfg, &eb), -ENOENT);
    assert_non_null(strstr(eb.msg, "KUBERNETES_SERVICE_HOST"));
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    assert_int_equal(kc_config_load(&o, &cfg, &eb), 0);
    assert_true(kc_config_is_in_cluster(cfg));
    assert_string_equal(kc_config_server(cfg), "https://10.96.0.1:443");
    assert_string_equal(kc_config_namespace(cfg), "kube-apps");
    assert_string_equal(cfg->token_file, tpath("sa/token"));
    assert_string_equal(cfg->ca.data, CA_PEM);
    kc_config_free(cfg);

    setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
    setenv("POD_NAMESPACE", "from-env", 1);
    /* no explicit choice and no KUBECONFIG: in-cluster comes before ~/.kube */
    o.in_cluster = 0;
    assert_int_equal(kc_config_load(&o, &cfg, &eb), 0);
    assert_string_equal(kc_config_server(cfg), "https://[fd00::1]:443");
    assert_string_equal(kc_config_namespace(cfg), "from-env");
    kc_config_free(cfg);

    /* token file missing: a clear error */
    o.incluster_dir = tpath("nosa");
    assert_int_equal(kc_config_load(&o, &cfg, &eb), KC_ECONFIG);
    assert_non_null(strstr(eb.msg, "token"));
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    unsetenv("POD_NAMESPACE");
}

static void test_home_fallback(void **state)
{
    kc_config_t *cfg = NULL;
    kc_errbuf_t eb;
    char *old = getenv("HOME") ? strdup(getenv("HOME")) : NULL;

    (void)state;
    setenv("HOME", tpath("home"), 1);
    expect_fail(NULL, NULL, -ENOENT, ".kube/config");
    wfile("home/.kube/config", "current-context: a\nclusters:\n- name: c\n  cluster: "
                               "{server: 'https://home:6443'}\n"
                               "contexts:\n- name: a\n  context: {cluster: c}\n", 0600);
    assert_int_equal(load(NULL, NULL, &cfg, &eb), 0);
    assert_string_equal(kc_config_server(cfg), "https://home:6443");
    kc_config_free(cfg);
    if (old) {
        setenv("HOME", old, 1);
        free(old);
    }
}

/* ---- exec plugins ---- */

static kc_config_t *exec_config(const char *script_rel, const char *apiv, int cluster_info)
{
    char yaml[2048];
    kc_config_t *cfg = NULL;
    kc_errbuf_t eb;

    snprintf(yaml, sizeof(yaml),
             "current-context: a\nclusters:\n- name: c\n  cluster:\n    server: https://x:1\n"
             "    certificate-authority-data: QUJD\n"
             "users:\n- name: u\n  user:\n    exec:\n      apiVersion: %s\n"
             "      command: %s\n      args: [--out, '%s']\n"
             "      env: [{name: FOO, value: bar}]\n      interactiveMode: Never\n"
             "      provideClusterInfo: %s\n      installHint: install it\n"
             "contexts:\n- name: a\n  context: {cluster: c, user: u}\n",
             apiv, script_rel, tpath("x/info.json"), cluster_info ? "true" : "false");
    wfile("x/config", yaml, 0600);
    if (load(tpath("x/config"), NULL, &cfg, &eb) != 0)
        fail_msg("load: %s", eb.msg);
    return cfg;
}

static void test_exec_token(void **state)
{
    kc_config_t *cfg;
    kc__exec_cred_t cr;
    kc_errbuf_t eb;
    size_t len;
    kc__blob_t info = {0};
    cJSON *j;

    (void)state;
    wfile("x/bin/plugin.sh",
          "#!/bin/sh\n"
          "[ \"$1\" = --out ] || exit 9\n"
          "printf '%s' \"$KUBERNETES_EXEC_INFO\" > \"$2\"\n"
          "echo '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\","
          "\"status\":{\"token\":\"tok-'\"$FOO\"'\",\"expirationTimestamp\":\"2099-01-01T00:00:00Z\"}}'\n",
          0700);
    /* relative command with a '/' resolves against the kubeconfig's directory */
    cfg = exec_config("bin/plugin.sh", "client.authentication.k8s.io/v1", 1);
    assert_string_equal(cfg->exec->command, tpath("x/bin/plugin.sh"));
    assert_int_equal(kc__exec_run(cfg, 10000, &cr, &eb), 0);
    assert_string_equal(cr.token, "tok-bar");
    assert_true(cr.expires > 4070908799.0 && cr.expires < 4070908801.0);
    kc__exec_cred_free(&cr);
    assert_int_equal(kc__read_file(tpath("x/info.json"), 1 << 20, &info), 0);
    j = cJSON_Parse(info.data);
    assert_non_null(j);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "kind")), "ExecCredential");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "spec"), "interactive")));
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(
                            cJSON_GetObjectItem(cJSON_GetObjectItem(j, "spec"), "cluster"),
                            "server")),
                        "https://x:1");
    assert_string_equal(
        cJSON_GetStringValue(cJSON_GetObjectItem(
            cJSON_GetObjectItem(cJSON_GetObjectItem(j, "spec"), "cluster"),
            "certificate-authority-data")),
        "QUJD");
    cJSON_Delete(j);
    kc__blob_free(&info);
    (void)len;
    kc_config_free(cfg);
}

static void test_exec_v1beta1_cert(void **state)
{
    kc_config_t *cfg;
    kc__exec_cred_t cr;
    kc_errbuf_t eb;

    (void)state;
    wfile("x/certplugin",
          "#!/bin/sh\n"
          "echo '{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"kind\":\"ExecCredential\","
          "\"status\":{\"clientCertificateData\":\"CERT\",\"clientKeyData\":\"KEY\"}}'\n",
          0700);
    cfg = exec_config(tpath("x/certplugin"), "client.authentication.k8s.io/v1beta1", 0);
    assert_int_equal(kc__exec_run(cfg, 10000, &cr, &eb), 0);
    assert_null(cr.token);
    assert_string_equal(cr.cert.data, "CERT");
    assert_string_equal(cr.key.data, "KEY");
    assert_true(cr.expires == 0);
    kc__exec_cred_free(&cr);
    kc_config_free(cfg);
}

static void exec_expect_fail(const char *script, const char *text)
{
    kc_config_t *cfg;
    kc__exec_cred_t cr;
    kc_errbuf_t eb;
    int rc;

    wfile("x/bad", script, 0700);
    cfg = exec_config(tpath("x/bad"), "client.authentication.k8s.io/v1", 0);
    rc = kc__exec_run(cfg, 2000, &cr, &eb);
    if (rc != KC_EAUTH || strstr(eb.msg, text) == NULL)
        fail_msg("expected KC_EAUTH with \"%s\", got %s: \"%s\"", text, kc_err_name(rc), eb.msg);
    assert_null(cr.token);
    kc_config_free(cfg);
}

static void test_exec_failures(void **state)
{
    (void)state;
    exec_expect_fail("#!/bin/sh\necho 'login required: run mycloud auth' >&2\nexit 3\n",
                     "exited with status 3: login required: run mycloud auth");
    exec_expect_fail("#!/bin/sh\necho 'this is not json'\n", "output is not JSON");
    exec_expect_fail("#!/bin/sh\necho '{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\","
                     "\"kind\":\"ExecCredential\",\"status\":{\"token\":\"t\"}}'\n",
                     "does not match");
    exec_expect_fail("#!/bin/sh\necho '{\"apiVersion\":\"client.authentication.k8s.io/v1\","
                     "\"kind\":\"ExecCredential\",\"status\":{}}'\n",
                     "neither token nor client certificate");
    exec_expect_fail("#!/bin/sh\necho '{\"apiVersion\":\"client.authentication.k8s.io/v1\","
                     "\"kind\":\"ExecCredential\",\"status\":{\"token\":\"t\","
                     "\"expirationTimestamp\":\"tomorrow\"}}'\n",
                     "bad expirationTimestamp");
    exec_expect_fail("#!/bin/sh\nexec sleep 30\n", "killed");
    {
        kc_config_t *cfg = exec_config(tpath("x/does-not-exist"), "client.authentication.k8s.io/v1", 0);
        kc__exec_cred_t cr;
        kc_errbuf_t eb;
        assert_int_equal(kc__exec_run(cfg, 2000, &cr, &eb), KC_EAUTH);
        assert_non_null(strstr(eb.msg, "cannot run"));
        assert_non_null(strstr(eb.msg, "install it"));   /* installHint */
        kc_config_free(cfg);
    }
}

static void test_helpers(void **state)
{
    kc__blob_t b = {0};
    double t;
    char *e;

    (void)state;
    assert_int_equal(kc__b64_decode("aGVsbG8=", 8, &b), 0);
    assert_string_equal(b.data, "hello");
    kc__blob_free(&b);
    assert_int_equal(kc__b64_decode("aGVs\nbG8", 8, &b), 0);
    assert_string_equal(b.data, "hello");
    kc__blob_free(&b);
    assert_int_equal(kc__b64_decode("a", 1, &b), -EINVAL);
    assert_int_equal(kc__b64_decode("aG=Vs", 5, &b), -EINVAL);
    e = kc__b64_encode("hello", 5);
    assert_string_equal(e, "aGVsbG8=");
    free(e);
    assert_int_equal(kc__parse_rfc3339("1970-01-01T00:01:00Z", &t), 0);
    assert_true(t == 60.0);
    assert_int_equal(kc__parse_rfc3339("1970-01-01T01:00:00+01:00", &t), 0);
    assert_true(t == 0.0);
    assert_int_equal(kc__parse_rfc3339("1970-01-01T00:00:01.5Z", &t), 0);
    assert_true(t == 1.5);
    assert_int_equal(kc__parse_rfc3339("1970-01-01 00:00:00", &t), -EINVAL);
}

static void test_alloc_failures(void **state)
{
#ifdef NO_MALLOC_HOOK
    (void)state;
    skip();
#else
    kc_config_opts_t o = KC_CONFIG_OPTS_INIT;
    char env[1024], yaml[2048];
    char *cert = b64("-----BEGIN CERTIFICATE-----\nC\n-----END CERTIFICATE-----\n");
    int n, rc = -1;

    (void)state;
    assert_int_equal(kc_global_init(), 0);
    wfile("a/one", "current-context: a\nclusters:\n- name: c\n  cluster:\n    server: https://x:1\n"
                   "    certificate-authority: ca.crt\n    tls-server-name: k\n"
                   "contexts:\n- name: a\n  context: {cluster: c, user: u, namespace: n}\n", 0600);
    wfile("a/ca.crt", CA_PEM, 0600);
    snprintf(yaml, sizeof(yaml),
             "users:\n- name: u\n  user:\n    client-certificate-data: %s\n"
             "    client-key-data: %s\n    tokenFile: tok\n    exec:\n"
             "      apiVersion: client.authentication.k8s.io/v1\n      command: bin/p\n"
             "      args: [a, b]\n      env: [{name: A, value: b}]\n"
             "- name: other\n  user: {token: t}\n", cert, cert);
    wfile("a/two", yaml, 0600);
    snprintf(env, sizeof(env), "%s:%s", tpath("a/one"), tpath("a/two"));
    setenv("KUBECONFIG", env, 1);
    for (n = 1; n < 10000; n++) {
        kc_config_t *cfg = NULL;
        kc_errbuf_t eb;
        long base = live;

        fail_at = n;
        rc = kc_config_load(&o, &cfg, &eb);
        fail_at = 0;
        if (rc == 0) {
            assert_non_null(cfg->exec);
            kc_config_free(cfg);
            assert_int_equal(live, base);
            break;
        }
        if (rc != -ENOMEM)
            fail_msg("allocation %d failed: %s: %s", n, kc_err_name(rc), eb.msg);
        assert_null(cfg);
        assert_int_equal(live, base);
    }
    assert_int_equal(rc, 0);
    assert_true(n > 20);
    /* the client copies the config: every failure point unwinds cleanly */
    for (n = 1; n < 10000; n++) {
        kc_config_t *cfg = NULL;
        kc_client_t *c = NULL;
        kc_errbuf_t eb;
        long base;

        assert_int_equal(kc_config_load(&o, &cfg, &eb), 0);
        base = live;
        fail_at = n;
        rc = kc_client_new(cfg, NULL, &c, &eb);
        fail_at = 0;
        if (rc == 0)
            kc_client_free(c);
        else
            assert_int_equal(rc, -ENOMEM);
        assert_int_equal(live, base);
        kc_config_free(cfg);
        if (rc == 0)
            break;
    }
    assert_int_equal(rc, 0);
    unsetenv("KUBECONFIG");
    free(cert);
    kc_global_cleanup();
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_basic_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_merge_and_relative_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_insecure_warns_and_basic_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_in_cluster, setup, teardown),
        cmocka_unit_test_setup_teardown(test_home_fallback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_v1beta1_cert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_failures, setup, teardown),
        cmocka_unit_test(test_helpers),
        cmocka_unit_test_setup_teardown(test_alloc_failures, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
