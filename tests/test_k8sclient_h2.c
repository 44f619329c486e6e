/* k8sclient over HTTP/2: a Go net/http server (tests/data/k8sclient/
 * h2server.go, standard library only) negotiates h2 by ALPN as a real
 * kube-apiserver does.  Checks that requests go out as HTTP/2.0, Status
 * errors decode, a watch stream arriving in odd DATA frames is framed
 * exactly, and cancel works on an h2 stream; that concurrent watches and
 * requests from many threads share ONE connection (counted by the server),
 * each watch getting its events exactly once, that a watch whose caller
 * is slow stalls only itself, and that cancelling one stream leaves the
 * others running.  Skipped when no Go toolchain is installed. */
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

#include <cjson/cJSON.h>

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


#define SEQ_EVENTS 200     /* h2server.go seqEvents */
#define BIG_EVENTS 20000   /* h2server.go bigEvents */
#define NWATCH 16
#define NLISTERS 4
#define NLISTS 10

/* A watch that checks its events arrive numbered 1, 2, 3... exactly once. */
typedef struct seqw {
    kc_client_t *c;
    const char *sel;
    kc_cancel_t cancel;
    pthread_mutex_t mu;
    int n;                 /* protected by mu: events in order so far */
    int bad;               /* protected by mu: an event out of order or repeated */
    int block;             /* protected by mu: the callback waits while set */
    int rc;
    kc_status_t st;
} seqw_t;

static int seq_cb(void *ud, const kc_watch_event_t *ev)
{
    seqw_t *w = ud;
    cJSON *o = kc_watch_event_parse(ev);
    const char *rv = cJSON_GetStringValue(
        cJSON_GetObjectItem(cJSON_GetObjectItem(o, "metadata"), "resourceVersion"));
    int blocked;

    pthread_mutex_lock(&w->mu);
    if (ev->type != KC_WATCH_ADDED || rv == NULL || strtol(rv, NULL, 10) != w->n + 1)
        w->bad++;
    else
        w->n++;
    blocked = w->block;
    pthread_mutex_unlock(&w->mu);
    cJSON_Delete(o);
    /* a slow consumer: sits on its first event until released */
    while (blocked) {
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&w->mu);
        blocked = w->block;
        pthread_mutex_unlock(&w->mu);
    }
    return 0;
}

static void *seq_watcher(void *p)
{
    seqw_t *w = p;
    kc_watch_opts_t wo = KC_WATCH_OPTS_INIT;

    wo.label_selector = w->sel;
    wo.cancel = &w->cancel;
    w->rc = kc_client_watch(w->c, &kc_res_configmaps, "default", &wo, seq_cb, w, &w->st);
    return NULL;
}

static int seq_count(seqw_t *w)
{
    int n;

    pthread_mutex_lock(&w->mu);
    n = w->n;
    pthread_mutex_unlock(&w->mu);
    return n;
}

/* Waits up to 20 s for all watches in [from, to) to reach n events. */
static int wait_counts(seqw_t *ws, int from, int to, int n)
{
    for (int t = 0; t < 2000; t++) {
        int ok = 1;
        for (int i = from; i < to && ok; i++)
            ok = seq_count(&ws[i]) >= n;
        if (ok)
            return 1;
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static long stat_of(kc_client_t *c, const char *field)
{
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    cJSON *o;
    long v;

    assert_int_equal(kc_client_request(c, "GET", "/stats", NULL, NULL, NULL, 0, &b, &st), 0);
    o = cJSON_Parse(b.data);
    assert_non_null(o);
    v = (long)cJSON_GetNumberValue(cJSON_GetObjectItem(o, field));
    cJSON_Delete(o);
    kc_buf_free(&b);
    return v;
}

typedef struct lister {
    kc_client_t *c;
    char remote[64];       /* the one address every answer came from, or "mixed" */
    int ok;
} lister_t;

static void *list_loop(void *p)
{
    lister_t *l = p;
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;

    for (int i = 0; i < NLISTS; i++) {
        cJSON *o;
        const char *r;
        if (kc_client_get(l->c, &kc_res_configmaps, "default", "x", &b, &st) != 0)
            continue;
        o = cJSON_Parse(b.data);
        r = cJSON_GetStringValue(cJSON_GetObjectItem(o, "remote"));
        if (r && l->remote[0] == '\0')
            snprintf(l->remote, sizeof(l->remote), "%s", r);
        else if (r == NULL || strcmp(r, l->remote) != 0)
            snprintf(l->remote, sizeof(l->remote), "mixed");
        cJSON_Delete(o);
        l->ok++;
    }
    kc_buf_free(&b);
    return NULL;
}

static void test_multiplexing(void **state)
{
    static seqw_t ws[NWATCH + 1];
    lister_t ls[NLISTERS];
    pthread_t wt[NWATCH + 1], lt[NLISTERS];
    seqw_t *slow = &ws[NWATCH];
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    long conns0, big_held;

    (void)state;
    if (C == NULL)
        skip();
    /* the first request opens the connection everything else must share */
    conns0 = stat_of(C, "conns");

    memset(ws, 0, sizeof(ws));
    for (int i = 0; i <= NWATCH; i++) {
        ws[i].c = C;
        ws[i].sel = i < NWATCH ? "seq" : "big";
        pthread_mutex_init(&ws[i].mu, NULL);
    }
    slow->block = 1;   /* its caller stops reading after the first event */
    pthread_create(&wt[NWATCH], NULL, seq_watcher, slow);
    for (int i = 0; i < NWATCH; i++)
        pthread_create(&wt[i], NULL, seq_watcher, &ws[i]);
    memset(ls, 0, sizeof(ls));
    for (int i = 0; i < NLISTERS; i++) {
        ls[i].c = C;
        pthread_create(&lt[i], NULL, list_loop, &ls[i]);
    }
    for (int i = 0; i < NLISTERS; i++)
        pthread_join(lt[i], NULL);

    /* every fast watch gets all its events while the slow one sits */
    if (!wait_counts(ws, 0, NWATCH, SEQ_EVENTS))
        fail_msg("watches stalled: first has %d of %d events, slow one %d", seq_count(&ws[0]),
                 SEQ_EVENTS, seq_count(slow));
    for (int i = 0; i < NLISTERS; i++) {
        assert_int_equal(ls[i].ok, NLISTS);
        assert_string_not_equal(ls[i].remote, "mixed");
        assert_string_equal(ls[i].remote, ls[0].remote);
    }
    /* all open at once, and no new connection: one TCP connection for
     * 17 watches and 40 requests from 21 threads */
    assert_int_equal(stat_of(C, "conns"), conns0);
    /* how far the server got with the slow watch (informational: libcurl
     * 7.88 may buffer a paused h2 stream beyond its window) */
    big_held = stat_of(C, "bigSent");
    printf("slow watch: %d events taken, server has written %ld of ~%d bytes\n",
           seq_count(slow), big_held, BIG_EVENTS * 500);
    assert_int_equal(seq_count(slow), 1);

    /* cancelling one stream leaves the others and the connection alone */
    kc_cancel_set(&ws[0].cancel);
    pthread_join(wt[0], NULL);
    assert_int_equal(ws[0].rc, KC_ESTOPPED);
    assert_int_equal(kc_client_get(C, &kc_res_configmaps, "default", "x", &b, &st), 0);

    /* the slow watch gets going again and receives everything, in order */
    pthread_mutex_lock(&slow->mu);
    slow->block = 0;
    pthread_mutex_unlock(&slow->mu);
    pthread_join(wt[NWATCH], NULL);
    assert_int_equal(slow->rc, 0);
    assert_int_equal(slow->bad, 0);
    assert_int_equal(slow->n, BIG_EVENTS);

    /* the held streams end normally, each event seen exactly once */
    assert_int_equal(kc_client_request(C, "GET", "/release", NULL, NULL, NULL, 0, &b, &st), 0);
    for (int i = 1; i < NWATCH; i++) {
        pthread_join(wt[i], NULL);
        if (ws[i].rc != 0)
            fail_msg("watch %d: %s %s", i, kc_err_name(ws[i].rc), ws[i].st.message);
        assert_int_equal(ws[i].bad, 0);
        assert_int_equal(ws[i].n, SEQ_EVENTS);
    }
    assert_int_equal(ws[0].bad, 0);
    assert_int_equal(stat_of(C, "conns"), conns0);
    for (int i = 0; i <= NWATCH; i++)
        pthread_mutex_destroy(&ws[i].mu);
    kc_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests_over_h2),
        cmocka_unit_test(test_watch_over_h2),
        cmocka_unit_test(test_multiplexing),
    };
    if (!have_go()) {
        printf("go not installed: HTTP/2 tests skipped\n");
        return 0;
    }
    return cmocka_run_group_tests(tests, setup, teardown);
}
