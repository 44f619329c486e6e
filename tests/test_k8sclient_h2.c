/* k8sclient over HTTP/2: a Go net/http server (tests/data/k8sclient/
 * h2server.go, standard library only) negotiates h2 by ALPN as a real
 * kube-apiserver does.  Checks that requests go out as HTTP/2.0, Status
 * errors decode, a watch stream arriving in odd DATA frames is framed
 * exactly, and cancel works on an h2 stream.  Skipped when no Go toolchain
 * is installed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client_int.h"
#include "kc_client.h"

#define H2_BIN "build/k8sclient-h2server"

static char tmpdir[128];
static pid_t server_pid = -1;
static int server_stdin = -1;
static kc_client_t *C;

static int have_go(void)
{
    return system("command -v go >/dev/null 2>&1") == 0;
}

static int setup(void **state)
{
    char cmd[1024], path[256];
    int p[2];
    kc__blob_t port = {0}, ca = {0};
    char *b64, *yaml;
    kc_config_opts_t co = KC_CONFIG_OPTS_INIT;
    kc_config_t *cfg;
    kc_errbuf_t eb;
    FILE *f;

    (void)state;
    if (!have_go())
        return 0;
    kc_global_init();
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/kc-h2-test-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    /* standard library only, so this builds offline.  The binary is kept
     * in build/ (shared by the plain and sanitizer runs) and rebuilt only
     * when the source is newer; Go's own build cache makes rebuilds cheap. */
    {
        struct stat src, bin;
        if (stat("tests/data/k8sclient/h2server.go", &src) != 0)
            return -1;
        if (stat(H2_BIN, &bin) != 0 || bin.st_mtime < src.st_mtime) {
            snprintf(cmd, sizeof(cmd),
                     "mkdir -p build && cd tests/data/k8sclient && GOTOOLCHAIN=local GOFLAGS= "
                     "GO111MODULE=off go build -o ../../../%s.tmp h2server.go && "
                     "mv ../../../%s.tmp ../../../%s",
                     H2_BIN, H2_BIN, H2_BIN);
            if (system(cmd) != 0)
                return -1;
        }
    }
    if (pipe(p) != 0)
        return -1;
    server_pid = fork();
    if (server_pid == 0) {
        dup2(p[0], 0);
        close(p[1]);
        execl(H2_BIN, H2_BIN, tmpdir, "tests/data/k8sclient/watch_stream.jsonl", (char *)NULL);
        _exit(127);
    }
    close(p[0]);
    server_stdin = p[1];
    snprintf(path, sizeof(path), "%s/port", tmpdir);
    for (int i = 0; i < 200 && kc__read_file(path, 64, &port) != 0; i++) {
        struct timespec ts = {0, 50000000L};
        nanosleep(&ts, NULL);
    }
    if (port.data == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/ca.pem", tmpdir);
    if (kc__read_file(path, 1 << 20, &ca) != 0)
        return -1;
    b64 = kc__b64_encode(ca.data, ca.len);
    if (asprintf(&yaml,
                 "current-context: h\nclusters:\n- name: c\n  cluster:\n"
                 "    server: https://127.0.0.1:%s\n    certificate-authority-data: %s\n"
                 "users:\n- name: u\n  user: {token: h2-token}\n"
                 "contexts:\n- name: h\n  context: {cluster: c, user: u}\n",
                 port.data, b64) < 0)
        return -1;
    snprintf(path, sizeof(path), "%s/kubeconfig", tmpdir);
    f = fopen(path, "w");
    fputs(yaml, f);
    fclose(f);
    free(yaml);
    free(b64);
    kc__blob_free(&port);
    kc__blob_free(&ca);
    co.kubeconfig = path;
    if (kc_config_load(&co, &cfg, &eb) != 0 || kc_client_new(cfg, NULL, &C, &eb) != 0) {
        fprintf(stderr, "%s\n", eb.msg);
        return -1;
    }
    kc_config_free(cfg);
    return 0;
}

static int teardown(void **state)
{
    char cmd[256];
    int status;

    (void)state;
    kc_client_free(C);
    if (server_stdin >= 0)
        close(server_stdin);   /* the server exits when its stdin closes */
    if (server_pid > 0)
        waitpid(server_pid, &status, 0);
    if (tmpdir[0]) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            return -1;
    }
    if (C)
        kc_global_cleanup();
    return 0;
}

static void test_requests_over_h2(void **state)
{
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;

    (void)state;
    if (C == NULL)
        skip();
    assert_int_equal(kc_client_get(C, &kc_res_configmaps, "default", "x", &b, &st), 0);
    if (strstr(b.data, "\"proto\":\"HTTP/2.0\"") == NULL)
        fail_msg("not HTTP/2: %s", b.data);
    assert_non_null(strstr(b.data, "\"auth\":\"Bearer h2-token\""));
    assert_int_equal(kc_client_request(C, "GET", "/fail/404", NULL, NULL, NULL, 0, &b, &st),
                     KC_ENOTFOUND);
    assert_string_equal(st.reason, "NotFound");
    assert_int_equal(st.http_code, 404);
    kc_buf_free(&b);
}

typedef struct wrec {
    int n;
    kc_watch_type_t last;
} wrec_t;

static int wcb(void *ud, const kc_watch_event_t *ev)
{
    wrec_t *w = ud;
    w->n++;
    w->last = ev->type;
    return 0;
}

typedef struct cancel_arg {
    kc_cancel_t *c;
} cancel_arg_t;

static void *canceller(void *p)
{
    struct timespec ts = {0, 300000000L};
    nanosleep(&ts, NULL);
    kc_cancel_set(((cancel_arg_t *)p)->c);
    return NULL;
}

static void test_watch_over_h2(void **state)
{
    kc_watch_opts_t wo = KC_WATCH_OPTS_INIT;
    kc_status_t st;
    wrec_t w = {0, 0};
    kc_cancel_t cancel = KC_CANCEL_INIT;
    cancel_arg_t ca = {&cancel};
    pthread_t th;
    uint64_t t0;

    (void)state;
    if (C == NULL)
        skip();
    assert_int_equal(kc_client_watch(C, &kc_res_configmaps, "default", &wo, wcb, &w, &st), 0);
    assert_int_equal(w.n, 8);
    assert_int_equal(w.last, KC_WATCH_ERROR);

    /* a stalled h2 stream ends promptly on cancel (the server stalls when
     * labelSelector=stall) */
    memset(&w, 0, sizeof(w));
    wo.label_selector = "stall";
    wo.cancel = &cancel;
    pthread_create(&th, NULL, canceller, &ca);
    t0 = kc_now_ns();
    assert_int_equal(kc_client_watch(C, &kc_res_configmaps, "default", &wo, wcb, &w, &st),
                     KC_ESTOPPED);
    pthread_join(th, NULL);
    assert_int_equal(w.n, 1);
    assert_true(kc_now_ns() - t0 < 3000000000ull);

    /* and the connection is still good for the next request */
    {
        kc_buf_t b = KC_BUF_INIT;
        assert_int_equal(kc_client_get(C, &kc_res_configmaps, "default", "x", &b, &st), 0);
        kc_buf_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests_over_h2),
        cmocka_unit_test(test_watch_over_h2),
    };
    if (!have_go()) {
        printf("go not installed: HTTP/2 tests skipped\n");
        return 0;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
