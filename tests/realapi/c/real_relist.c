/* The informer's relist after 410 against the real kube-apiserver of
 * tests/realapi/run.sh, with changes to apply.
 *
 * An informer on ConfigMaps labelled kc-real=rl (every namespace) reaches
 * the server through a loopback TCP proxy in this program (127.0.0.1, the
 * TLS bytes passed through untouched: the server's certificate names the IP
 * 127.0.0.1, which holds whatever the port).  Once it has synced, the proxy
 * cuts it off (every connection closed, new ones accepted and closed at
 * once) while this program creates, updates and deletes objects in three
 * namespaces with the same names, takes one object out of the selector and
 * brings another in, then compacts etcd and restarts kube-apiserver: the new
 * watch cache starts at the current revision, so the informer's
 * resourceVersion is gone (the watch cache of a running server would still
 * replay it).  The proxy resumes; the informer's watch gets 410 (an ERROR
 * event), it relists, and the test asserts, object by object, what its
 * handler saw: each deleted object exactly one Delete marked
 * final-state-unknown carrying the last state the informer knew, each
 * changed object exactly one Update from that state to the server's, each
 * new one exactly one Add, nothing for the rest; that the cache equals the
 * server's objects (keys, uids, resourceVersions); and that the counters
 * show one relist, caused by the 410.
 *
 * Threads: the proxy runs one thread (poll loop); the test thread changes
 * its cut flag under its mutex and wakes it through a pipe.  The handler
 * records under the recorder's mutex.  Every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kc_cache.h"
#include "kc_client.h"
#include "kc_informer.h"
#include "real_support.h"

#define NNS 3
#define NNAMES 10
#define NSLOTS (NNS * NNAMES)
#define SELECTOR "kc-real=rl"

static const real_grid_t G = { "kc-real-rl", NNS, NNAMES, SELECTOR };
#define MAXEV 8

/* ------------------------------------------------------------------ proxy */

#define PROXY_MAXPAIRS 64

typedef struct proxy {
    int lfd, wake[2];
    int port, upstream_port;
    pthread_t th;
    pthread_mutex_t mu;
    int cut;                    /* under mu: close everything, refuse new */
    int stop;                   /* under mu */
    int gen;                    /* under mu: bumped by each cut */
    int a[PROXY_MAXPAIRS], b[PROXY_MAXPAIRS]; /* proxy thread only */
    int npairs;                 /* proxy thread only */
    unsigned long accepted, refused; /* proxy thread only (read after join) */
} proxy_t;

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void close_pair(proxy_t *p, int i)
{
    if (p->a[i] >= 0)
        close(p->a[i]);
    if (p->b[i] >= 0)
        close(p->b[i]);
    p->a[i] = p->b[i] = -1;
}

static int connect_upstream(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void *proxy_main(void *arg)
{
    proxy_t *p = arg;
    static char buf[65536];
    struct pollfd pf[2 + 2 * PROXY_MAXPAIRS];
    int seen_gen = 0;

    for (;;) {
        int i, k, n, cut, stop, gen;

        /* drop closed pairs */
        for (i = 0, k = 0; i < p->npairs; i++)
            if (p->a[i] >= 0) {
                p->a[k] = p->a[i];
                p->b[k] = p->b[i];
                k++;
            }
        p->npairs = k;
        pf[0].fd = p->wake[0];
        pf[0].events = POLLIN;
        pf[1].fd = p->lfd;
        pf[1].events = POLLIN;
        for (i = 0; i < p->npairs; i++) {
            pf[2 + 2 * i].fd = p->a[i];
            pf[2 + 2 * i].events = POLLIN;
            pf[3 + 2 * i].fd = p->b[i];
            pf[3 + 2 * i].events = POLLIN;
        }
        n = 2 + 2 * p->npairs;
        if (poll(pf, (nfds_t)n, 1000) < 0 && errno != EINTR)
            break;
        if (pf[0].revents & POLLIN) {
            char c[16];
            if (read(p->wake[0], c, sizeof(c)) < 0)
                break;
        }
        pthread_mutex_lock(&p->mu);
        cut = p->cut;
        stop = p->stop;
        gen = p->gen;
        pthread_mutex_unlock(&p->mu);
        if (stop || gen != seen_gen) {
            for (i = 0; i < p->npairs; i++)
                close_pair(p, i);
            seen_gen = gen;
            if (stop)
                break;
            continue; /* pf no longer matches the pairs */
        }
        for (i = 0; i < p->npairs; i++) {
            int from[2] = { p->a[i], p->b[i] }, to[2] = { p->b[i], p->a[i] };
            short rev[2] = { pf[2 + 2 * i].revents, pf[3 + 2 * i].revents };
            for (k = 0; k < 2 && p->a[i] >= 0; k++) {
                if (!(rev[k] & (POLLIN | POLLHUP | POLLERR)))
                    continue;
                ssize_t r = read(from[k], buf, sizeof(buf));
                if (r <= 0 || write_all(to[k], buf, (size_t)r) != 0)
                    close_pair(p, i);
            }
        }
        if (pf[1].revents & POLLIN) {
            int c = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC), u;
            if (c >= 0) {
                if (cut || p->npairs >= PROXY_MAXPAIRS || (u = connect_upstream(p->upstream_port)) < 0) {
                    close(c);
                    p->refused++;
                } else {
                    p->a[p->npairs] = c;
                    p->b[p->npairs] = u;
                    p->npairs++;
                    p->accepted++;
                }
            }
        }
    }
    for (int i = 0; i < p->npairs; i++)
        close_pair(p, i);
    p->npairs = 0;
    return NULL;
}

static void proxy_start(proxy_t *p, int upstream_port)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);

    memset(p, 0, sizeof(*p));
    p->upstream_port = upstream_port;
    pthread_mutex_init(&p->mu, NULL);
    assert_int_equal(pipe2(p->wake, O_CLOEXEC), 0);
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(p->lfd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(p->lfd, 64), 0);
    assert_int_equal(getsockname(p->lfd, (struct sockaddr *)&sa, &sl), 0);
    p->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&p->th, NULL, proxy_main, p), 0);
}

static void proxy_set(proxy_t *p, int cut, int stop)
{
    pthread_mutex_lock(&p->mu);
    if (cut && !p->cut)
        p->gen++;
    p->cut = cut;
    p->stop = stop;
    pthread_mutex_unlock(&p->mu);
    if (write(p->wake[1], "x", 1) != 1)
        fail_msg("proxy wake: %s", strerror(errno));
}

static void proxy_stop(proxy_t *p)
{
    proxy_set(p, 1, 1);
    pthread_join(p->th, NULL);
    close(p->lfd);
    close(p->wake[0]);
    close(p->wake[1]);
    pthread_mutex_destroy(&p->mu);
}

/* A copy of the admin kubeconfig whose server is the proxy. */
static kc_client_t *proxy_client(const proxy_t *p)
{
    const char *src = getenv("KC_REAL_KUBECONFIG"), *dir = getenv("KC_REAL_DIR");
    char path[512], line[8192];
    FILE *in, *out;
    int fd, n = 0;

    snprintf(path, sizeof(path), "%s/proxy.kubeconfig", dir ? dir : "/tmp");
    in = fopen(src, "r");
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    out = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (in == NULL || out == NULL)
        fail_msg("cannot copy %s to %s", src, path);
    while (fgets(line, sizeof(line), in)) {
        const char *srv = strstr(line, "server: https://127.0.0.1:");
        if (srv) {
            fprintf(out, "%.*sserver: https://127.0.0.1:%d\n", (int)(srv - line), line, p->port);
            n++;
        } else {
            fputs(line, out);
        }
    }
    fclose(in);
    fclose(out);
    assert_int_equal(n, 1);
    setenv("KC_REAL_PROXY_KUBECONFIG", path, 1);
    return real_client("KC_REAL_PROXY_KUBECONFIG", NULL);
}

/* --------------------------------------------------------------- recorder */

typedef struct ev {
    char type;                  /* 'A', 'U', 'D' */
    int unknown;                /* Delete: final_state_unknown */
    char rv[32], old_rv[32], uid[40];
} ev_t;

typedef struct rec {
    pthread_mutex_t mu;
    ev_t ev[NSLOTS][MAXEV];     /* under mu */
    int n[NSLOTS];              /* under mu */
    int bad;                    /* under mu: an object outside the slots */
} rec_t;


static void record(rec_t *r, char type, kc_obj_t *old, kc_obj_t *o, int unknown)
{
    int s = real_slot_of(&G, o);

    pthread_mutex_lock(&r->mu);
    if (s < 0) {
        r->bad++;
    } else if (r->n[s] < MAXEV) {
        ev_t *e = &r->ev[s][r->n[s]++];
        e->type = type;
        e->unknown = unknown;
        snprintf(e->rv, sizeof(e->rv), "%s", kc_obj_resource_version(o));
        snprintf(e->old_rv, sizeof(e->old_rv), "%s", old ? kc_obj_resource_version(old) : "");
        char ub[KC_UID_BUF];
        snprintf(e->uid, sizeof(e->uid), "%s", kc_obj_uid(o, ub));
    }
    pthread_mutex_unlock(&r->mu);
}

static void r_add(void *ud, kc_obj_t *o) { record(ud, 'A', NULL, o, 0); }
static void r_update(void *ud, kc_obj_t *old, kc_obj_t *o) { record(ud, 'U', old, o, 0); }
static void r_delete(void *ud, kc_obj_t *o, int unknown) { record(ud, 'D', NULL, o, unknown); }

/* ------------------------------------------------------------ server side */

static kc_client_t *A;


static void cm_create(int ns, int name, int labelled)
{
    char nsb[32], json[512];
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;

    snprintf(nsb, sizeof(nsb), "kc-real-rl-%d", ns);
    snprintf(json, sizeof(json),
             "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"n-%d\"%s},"
             "\"data\":{\"v\":\"0\"}}",
             name, labelled ? ",\"labels\":{\"kc-real\":\"rl\"}" : "");
    if (kc_client_create(A, &kc_res_configmaps, nsb, json, strlen(json), &b, &st) != 0)
        fail_msg("create %s/n-%d: %d %s", nsb, name, st.http_code, st.message);
    kc_buf_free(&b);
}

static void cm_patch(int ns, int name, const char *patch)
{
    char nsb[32], nm[32];
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;

    snprintf(nsb, sizeof(nsb), "kc-real-rl-%d", ns);
    snprintf(nm, sizeof(nm), "n-%d", name);
    if (kc_client_patch(A, &kc_res_configmaps, nsb, nm, KC_PATCH_MERGE, patch, strlen(patch), NULL, &b, &st) != 0)
        fail_msg("patch %s/%s: %d %s", nsb, nm, st.http_code, st.message);
    kc_buf_free(&b);
}

static void cm_delete(int ns, int name, int missing_ok)
{
    char nsb[32], nm[32];
    kc_buf_t b = KC_BUF_INIT;
    kc_status_t st;
    int rc;

    snprintf(nsb, sizeof(nsb), "kc-real-rl-%d", ns);
    snprintf(nm, sizeof(nm), "n-%d", name);
    rc = kc_client_delete(A, &kc_res_configmaps, nsb, nm, NULL, &b, &st);
    if (rc != 0 && !(missing_ok && rc == KC_ENOTFOUND))
        fail_msg("delete %s/%s: %d %s", nsb, nm, st.http_code, st.message);
    kc_buf_free(&b);
}

/* Counts the informer's "expired ...; relisting" notes (its 410 path, for an
 * HTTP 410 as for an ERROR event); prints warnings and errors. */
static void log_cb(void *ud, kc_log_level_t level, const char *component, const char *msg)
{
    if (strstr(msg, "expired") && strstr(msg, "relisting"))
        __atomic_add_fetch((int *)ud, 1, __ATOMIC_SEQ_CST);
    if (level <= KC_LOG_WARN || getenv("KC_REAL_DEBUG"))
        printf("# [relist] %d %s: %s\n", (int)level, component, msg);
}

static int setup(void **state)
{
    char ns[64];
    int i, k;

    (void)state;
    kc_global_init();
    A = real_client("KC_REAL_KUBECONFIG", NULL);
    for (i = 0; i < NNS; i++) {
        snprintf(ns, sizeof(ns), "kc-real-rl-%d", i);
        if (real_ensure_ns(A, ns) != 0)
            return -1;
        for (k = 0; k < NNAMES; k++) /* a clean start when run again */
            cm_delete(i, k, 1);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kc_client_free(A);
    kc_global_cleanup();
    return 0;
}

/* ------------------------------------------------------------------- test */

/* What the test does to each slot while the informer is cut off. */
enum { NONE = 0, ADD, UPD, DEL, RECREATE };

static void test_relist_after_410_with_changes(void **state)
{
    static rec_t r;
    static proxy_t px;
    int expect[NSLOTS] = { 0 };
    char known_rv[NSLOTS][32], known_uid[NSLOTS][40];
    kc_informer_opts_t o = KC_INFORMER_OPTS_INIT;
    kc_handler_t h = KC_HANDLER_INIT;
    kc_informer_state_t s, s0;
    kc_informer_t *inf;
    kc_client_t *pc;
    kc_errbuf_t eb;
    real_truth_t t;
    const char *srv = getenv("KC_REAL_SERVER"), *colon;
    int i, d = -1, nadd = 0, nupd = 0, ndel = 0;
    static int expired_notes;

    (void)state;
    colon = srv ? strrchr(srv, ':') : NULL;
    assert_non_null(colon);
    proxy_start(&px, (int)strtol(colon + 1, NULL, 10));
    pc = proxy_client(&px);

    /* n-0..n-7 labelled in each namespace; n-8 unlabelled in namespace 2 */
    for (i = 0; i < NNS; i++)
        for (int k = 0; k < 8; k++)
            cm_create(i, k, 1);
    cm_create(2, 8, 0);

    pthread_mutex_init(&r.mu, NULL);
    o.resource = &kc_res_configmaps;
    o.label_selector = SELECTOR;
    o.page_size = 5;
    o.backoff_initial_ms = 100;
    o.backoff_max_ms = 500;
    o.watch_timeout_min_s = 60; /* no deadline in the way */
    o.watch_timeout_max_s = 90;
    o.log.fn = log_cb;
    o.log.ud = &expired_notes;
    o.log.level = getenv("KC_REAL_DEBUG") ? KC_LOG_DEBUG : KC_LOG_INFO;
    if (kc_informer_new(pc, &o, &inf, &eb) != 0)
        fail_msg("informer: %s", eb.msg);
    h.on_add = r_add;
    h.on_update = r_update;
    h.on_delete = r_delete;
    h.ud = &r;
    assert_int_equal(kc_informer_add_handler(inf, &h), 0);
    assert_int_equal(kc_informer_start(inf), 0);
    assert_int_equal(kc_informer_wait_synced(inf, 30000), 0);
    assert_int_equal(real_server_truth(A, &G, &t), 0);
    assert_int_equal(t.n, NNS * 8);
    REAL_WAIT_FOR(real_cache_diff(kc_informer_cache(inf), &G, &t, 0) == 0, 10000);
    assert_int_equal(real_cache_diff(kc_informer_cache(inf), &G, &t, 1), 0);
    assert_int_equal(kc_informer_wait_handlers_idle(inf, 10000), 0);
    REAL_WAIT_FOR(kc_informer_state(inf, &s) == 0 && s.phase == KC_INFORMER_WATCHING, 10000);

    /* the initial Adds, then forget them: from here on each slot's events
     * are the relist's */
    pthread_mutex_lock(&r.mu);
    for (i = 0; i < NSLOTS; i++) {
        assert_int_equal(r.n[i], t.rv[i][0] ? 1 : 0);
        r.n[i] = 0;
    }
    pthread_mutex_unlock(&r.mu);
    memcpy(known_rv, t.rv, sizeof(known_rv));
    memcpy(known_uid, t.uid, sizeof(known_uid));
    kc_informer_state(inf, &s0);

    /* cut: the watch ends and every reconnection is refused */
    proxy_set(&px, 1, 0);
    REAL_WAIT_FOR(kc_informer_state(inf, &s) == 0 && s.phase == KC_INFORMER_BACKOFF, 15000);
    assert_int_equal(s.phase, KC_INFORMER_BACKOFF);
    printf("# cut off: phase %s, errors %lu\n", kc_informer_phase_name(s.phase), (unsigned long)s.errors);

    /* namespace 0: two deletes, two updates (one of them twice), a create */
    cm_delete(0, 0, 0);            expect[0 * NNAMES + 0] = DEL;
    cm_delete(0, 1, 0);            expect[0 * NNAMES + 1] = DEL;
    cm_patch(0, 2, "{\"data\":{\"v\":\"1\"}}"); expect[0 * NNAMES + 2] = UPD;
    cm_patch(0, 3, "{\"data\":{\"v\":\"1\"}}");
    cm_patch(0, 3, "{\"data\":{\"v\":\"2\"}}"); expect[0 * NNAMES + 3] = UPD;
    cm_create(0, 8, 1);            expect[0 * NNAMES + 8] = ADD;
    /* namespace 1: the same names, other fates; a delete and a re-create */
    cm_patch(1, 0, "{\"data\":{\"v\":\"1\"}}"); expect[1 * NNAMES + 0] = UPD;
    cm_delete(1, 2, 0);            expect[1 * NNAMES + 2] = DEL;
    cm_create(1, 8, 1);            expect[1 * NNAMES + 8] = ADD;
    cm_create(1, 9, 1);            expect[1 * NNAMES + 9] = ADD;
    cm_delete(1, 5, 0);
    cm_create(1, 5, 1);            expect[1 * NNAMES + 5] = RECREATE;
    /* namespace 2: one leaves the selector (a delete to the informer), one
     * joins it (an add), one deleted, one updated */
    cm_patch(2, 6, "{\"metadata\":{\"labels\":{\"kc-real\":null}}}"); expect[2 * NNAMES + 6] = DEL;
    cm_patch(2, 8, "{\"metadata\":{\"labels\":{\"kc-real\":\"rl\"}}}"); expect[2 * NNAMES + 8] = ADD;
    cm_delete(2, 3, 0);            expect[2 * NNAMES + 3] = DEL;
    cm_patch(2, 1, "{\"data\":{\"v\":\"1\"}}"); expect[2 * NNAMES + 1] = UPD;

    /* the informer's resourceVersion is gone: compacted in etcd, and a new
     * kube-apiserver whose watch cache starts now */
    assert_int_equal(real_admin("compact"), 0);
    assert_int_equal(real_admin("restart"), 0);
    assert_int_equal(real_server_truth(A, &G, &t), 0);

    /* nothing reached the handler while cut off */
    pthread_mutex_lock(&r.mu);
    for (i = 0; i < NSLOTS; i++)
        assert_int_equal(r.n[i], 0);
    pthread_mutex_unlock(&r.mu);

    proxy_set(&px, 0, 0);
    for (i = 0; i < 300; i++) {
        kc_informer_state(inf, &s);
        if (s.relists >= 1 && (d = real_cache_diff(kc_informer_cache(inf), &G, &t, 0)) == 0)
            break;
        real_sleep_ms(100);
    }
    assert_int_equal(kc_informer_wait_handlers_idle(inf, 10000), 0);
    kc_informer_state(inf, &s);
    printf("# resumed: phase %s, lists %lu (relists %lu), watches %lu, restarts %lu, errors %lu, "
           "error events %lu, relist diff +%lu ~%lu -%lu, cached %zu, server %d\n",
           kc_informer_phase_name(s.phase), (unsigned long)s.lists, (unsigned long)s.relists,
           (unsigned long)s.watches, (unsigned long)s.restarts, (unsigned long)s.errors,
           (unsigned long)s.events_error, (unsigned long)s.relist_adds,
           (unsigned long)s.relist_updates, (unsigned long)s.relist_deletes, s.cached_objects, t.n);
    assert_int_equal(real_cache_diff(kc_informer_cache(inf), &G, &t, 1), 0);
    assert_int_equal(kc_cache_len(kc_informer_cache(inf)), (size_t)t.n);

    /* one relist, and the 410 ERROR event that caused it (a restarted
     * kube-apiserver's watch cache answers an expired resourceVersion with
     * one; the informer's "expired ...; relisting" notes are printed too) */
    printf("# expiry notes in the informer's log: %d\n", __atomic_load_n(&expired_notes, __ATOMIC_SEQ_CST));
    assert_int_equal(s.relists, s0.relists + 1);
    assert_true(s.events_error >= s0.events_error + 1);

    /* slot by slot, exactly what changed, once */
    pthread_mutex_lock(&r.mu);
    assert_int_equal(r.bad, 0);
    for (i = 0; i < NSLOTS; i++) {
        ev_t *e = r.ev[i];
        int n = r.n[i];
        printf("# slot %d (kc-real-rl-%d/n-%d): expect %d, %d event(s)%s%c\n", i, i / NNAMES,
               i % NNAMES, expect[i], n, n ? ", first " : "", n ? e[0].type : ' ');
        switch (expect[i]) {
        case NONE:
            assert_int_equal(n, 0);
            break;
        case ADD:
            assert_int_equal(n, 1);
            assert_int_equal(e[0].type, 'A');
            assert_string_equal(e[0].rv, t.rv[i]);
            assert_string_equal(e[0].uid, t.uid[i]);
            nadd++;
            break;
        case UPD:
            assert_int_equal(n, 1);
            assert_int_equal(e[0].type, 'U');
            assert_string_equal(e[0].old_rv, known_rv[i]);
            assert_string_equal(e[0].rv, t.rv[i]);
            assert_string_equal(e[0].uid, t.uid[i]);
            nupd++;
            break;
        case DEL:
            assert_int_equal(n, 1);
            assert_int_equal(e[0].type, 'D');
            assert_int_equal(e[0].unknown, 1);
            assert_string_equal(e[0].rv, known_rv[i]);  /* the last state known */
            assert_string_equal(e[0].uid, known_uid[i]);
            assert_string_equal(t.rv[i], "");
            ndel++;
            break;
        case RECREATE:
            /* a new uid under the same key: either an Update (client-go's
             * relist does not compare uids) or a final-state-unknown Delete
             * of the old object and an Add of the new one */
            assert_true(n == 1 || n == 2);
            if (n == 1) {
                assert_int_equal(e[0].type, 'U');
                assert_string_equal(e[0].old_rv, known_rv[i]);
                nupd++;
            } else {
                assert_int_equal(e[0].type, 'D');
                assert_int_equal(e[0].unknown, 1);
                assert_string_equal(e[0].uid, known_uid[i]);
                assert_int_equal(e[1].type, 'A');
                ndel++;
                nadd++;
            }
            assert_string_equal(e[n - 1].rv, t.rv[i]);
            assert_string_equal(e[n - 1].uid, t.uid[i]);
            break;
        }
    }
    pthread_mutex_unlock(&r.mu);
    /* the relist diff counted the same */
    assert_int_equal(s.relist_adds - s0.relist_adds, (uint64_t)nadd);
    assert_int_equal(s.relist_updates - s0.relist_updates, (uint64_t)nupd);
    assert_int_equal(s.relist_deletes - s0.relist_deletes, (uint64_t)ndel);
    assert_true(nadd >= 4 && nupd >= 4 && ndel >= 5);

    assert_int_equal(kc_informer_stop(inf), 0);
    kc_informer_free(inf);
    kc_client_free(pc);
    proxy_stop(&px);
    printf("# proxy: %lu connections passed, %lu refused\n", px.accepted, px.refused);
    assert_true(px.refused >= 1);
    pthread_mutex_destroy(&r.mu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relist_after_410_with_changes),
    };

    real_require_env();
    return cmocka_run_group_tests(tests, setup, teardown);
}
