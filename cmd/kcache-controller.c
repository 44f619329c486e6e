/*
 * kcache-controller: the replicator as a program.  Loads the client
 * configuration (kubeconfig or in-cluster), builds the shared informers,
 * the replicator's controllers and a manager (probes, metrics, optional
 * leader election), and runs until SIGTERM or SIGINT, then shuts down in
 * order and exits 0.  Exits 1 on a startup error or a lost lease.
 *
 * Signals are blocked in every thread and taken by one thread with
 * sigtimedwait, which only asks the manager to stop; between signals it
 * returns freed heap to the system (kc_heap_trim) after the caches sync.
 */
#include "kc_cache.h"
#include "kc_client.h"
#include "kc_common.h"
#include "kc_controller.h"
#include "kc_informer.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct args {
    const char *kubeconfig, *context, *namespace_, *le_namespace, *le_id;
    const char *metrics_addr, *probe_addr;
    int workers, verbosity;
    bool leader_elect;
    kc_log_format_t fmt;
    double lease_s, renew_s, retry_s, shutdown_s, sync_s;
} args_t;

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: kcache-controller [flags]\n"
            "\n"
            "Replicates Secrets and ConfigMaps annotated kcache.io/replicate-to: \"ns-a,team-*\"\n"
            "into the namespaces named there.\n"
            "\n"
            "Flags:\n"
            "  --kubeconfig PATH                  kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)\n"
            "  --context NAME                     kubeconfig context (default: current-context)\n"
            "  --namespace NS                     only replicate sources from this namespace (default: all)\n"
            "  --workers N                        concurrent reconciles per kind (default 2)\n"
            "  --leader-elect                     run controllers only while holding the lease\n"
            "  --leader-election-namespace NS     lease namespace (default: $POD_NAMESPACE or the config's)\n"
            "  --leader-election-id NAME          lease name (default kcache-controller)\n"
            "  --leader-elect-lease-duration S    (default 15)\n"
            "  --leader-elect-renew-deadline S    (default 10)\n"
            "  --leader-elect-retry-period S      (default 2)\n"
            "  --metrics-bind-address ADDR        /metrics address (default :8080; 0 disables)\n"
            "  --health-probe-bind-address ADDR   /healthz and /readyz address (default :8081; 0 disables)\n"
            "  --shutdown-timeout S               bound for running reconciles at shutdown (default 30)\n"
            "  --cache-sync-timeout S             give up when caches do not sync (default 0: wait)\n"
            "  --log-format json|text             (default text)\n"
            "  -v, --v N                          log verbosity: 0 info, 1 debug, 2 trace\n"
            "  --help                             this text\n"
            "  --version                          print the version\n");
}

static int parse_num(const char *s, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return errno || end == s || *end != '\0' || *out < 0 ? -1 : 0;
}

static int parse_args(int argc, char **argv, args_t *a)
{
    enum { O_KUBECONFIG = 256, O_CONTEXT, O_NS, O_WORKERS, O_LE, O_LENS, O_LEID, O_LEASE,
           O_RENEW, O_RETRY, O_METRICS, O_PROBE, O_SHUTDOWN, O_SYNC, O_FMT, O_HELP, O_VERSION };
    static const struct option opts[] = {
        { "kubeconfig", required_argument, NULL, O_KUBECONFIG },
        { "context", required_argument, NULL, O_CONTEXT },
        { "namespace", required_argument, NULL, O_NS },
        { "workers", required_argument, NULL, O_WORKERS },
        { "leader-elect", no_argument, NULL, O_LE },
        { "leader-election-namespace", required_argument, NULL, O_LENS },
        { "leader-election-id", required_argument, NULL, O_LEID },
        { "leader-elect-lease-duration", required_argument, NULL, O_LEASE },
        { "leader-elect-renew-deadline", required_argument, NULL, O_RENEW },
        { "leader-elect-retry-period", required_argument, NULL, O_RETRY },
        { "metrics-bind-address", required_argument, NULL, O_METRICS },
        { "health-probe-bind-address", required_argument, NULL, O_PROBE },
        { "shutdown-timeout", required_argument, NULL, O_SHUTDOWN },
        { "cache-sync-timeout", required_argument, NULL, O_SYNC },
        { "log-format", required_argument, NULL, O_FMT },
        { "v", required_argument, NULL, 'v' },
        { "help", no_argument, NULL, O_HELP },
        { "version", no_argument, NULL, O_VERSION },
        { NULL, 0, NULL, 0 },
    };
    double d;
    int c;

    while ((c = getopt_long(argc, argv, "v:h", opts, NULL)) != -1) {
        switch (c) {
        case O_KUBECONFIG: a->kubeconfig = optarg; break;
        case O_CONTEXT: a->context = optarg; break;
        case O_NS: a->namespace_ = optarg; break;
        case O_WORKERS:
            if (parse_num(optarg, &d) != 0 || d < 1 || d > 1024) {
                fprintf(stderr, "kcache-controller: --workers: need 1..1024\n");
                return 2;
            }
            a->workers = (int)d;
            break;
        case O_LE: a->leader_elect = true; break;
        case O_LENS: a->le_namespace = optarg; break;
        case O_LEID: a->le_id = optarg; break;
        case O_LEASE: case O_RENEW: case O_RETRY: case O_SHUTDOWN: case O_SYNC:
            if (parse_num(optarg, &d) != 0) {
                fprintf(stderr, "kcache-controller: bad number of seconds \"%s\"\n", optarg);
                return 2;
            }
            if (c == O_LEASE) a->lease_s = d;
            else if (c == O_RENEW) a->renew_s = d;
            else if (c == O_RETRY) a->retry_s = d;
            else if (c == O_SHUTDOWN) a->shutdown_s = d;
            else a->sync_s = d;
            break;
        case O_METRICS: a->metrics_addr = optarg; break;
        case O_PROBE: a->probe_addr = optarg; break;
        case O_FMT:
            if (strcmp(optarg, "json") == 0)
                a->fmt = KC_LOGFMT_JSON;
            else if (strcmp(optarg, "text") == 0)
                a->fmt = KC_LOGFMT_TEXT;
            else {
                fprintf(stderr, "kcache-controller: --log-format: json or text\n");
                return 2;
            }
            break;
        case 'v':
            if (parse_num(optarg, &d) != 0 || d > 10) {
                fprintf(stderr, "kcache-controller: -v: need 0..10\n");
                return 2;
            }
            a->verbosity = (int)d;
            break;
        case 'h': case O_HELP:
            usage(stdout);
            exit(0);
        case O_VERSION:
            printf("kcache-controller %s\n", KC_VERSION_STRING);
            exit(0);
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kcache-controller: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    return 0;
}

/* ---- metrics glue ---------------------------------------------------- */

typedef struct glue {
    kc_metric_t *requests, *req_latency;
    kc_metric_t *cached, *restarts, *relists, *events;
    kc_informer_t *infs[3];
    const char *names[3];
} glue_t;

static void on_request(void *ud, const char *method, int code, const char *host, double secs)
{
    glue_t *g = ud;
    char cs[16];

    if (code > 0)
        snprintf(cs, sizeof(cs), "%d", code);
    else
        snprintf(cs, sizeof(cs), "<error>");
    kc_metric_inc(g->requests, (const char *const[]){ cs, method, host });
    kc_metric_observe(g->req_latency, (const char *const[]){ method, host }, secs);
}

static void collect_informers(void *ud)
{
    glue_t *g = ud;

    for (int i = 0; i < 3; i++) {
        kc_informer_state_t st;
        const char *r = g->names[i];
        if (g->infs[i] == NULL || kc_informer_state(g->infs[i], &st) != 0)
            continue;
        kc_metric_set(g->cached, (const char *const[]){ r }, (double)st.cached_objects);
        kc_metric_set(g->restarts, (const char *const[]){ r }, (double)st.restarts);
        kc_metric_set(g->relists, (const char *const[]){ r }, (double)st.relists);
        kc_metric_set(g->events, (const char *const[]){ r, "ADDED" }, (double)st.events_added);
        kc_metric_set(g->events, (const char *const[]){ r, "MODIFIED" }, (double)st.events_modified);
        kc_metric_set(g->events, (const char *const[]){ r, "DELETED" }, (double)st.events_deleted);
        kc_metric_set(g->events, (const char *const[]){ r, "BOOKMARK" }, (double)st.events_bookmark);
        kc_metric_set(g->events, (const char *const[]){ r, "ERROR" }, (double)st.events_error);
    }
}

static int register_glue(kc_metrics_t *m, glue_t *g)
{
    int rc;
    if ((rc = kc_metrics_counter(m, "rest_client_requests_total",
                                 "Number of HTTP requests, partitioned by status code, method, and host.",
                                 (const char *const[]){ "code", "method", "host", NULL },
                                 &g->requests)) != 0 ||
        (rc = kc_metrics_histogram(m, "rest_client_request_duration_seconds",
                                   "Request latency in seconds. Broken down by verb, and host.",
                                   (const char *const[]){ "verb", "host", NULL },
                                   (const double[]){ 0.005, 0.025, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60 },
                                   12, &g->req_latency)) != 0 ||
        (rc = kc_metrics_gauge(m, "kcache_cached_objects", "Objects in the informer cache, per resource.",
                               (const char *const[]){ "resource", NULL }, &g->cached)) != 0 ||
        (rc = kc_metrics_counter(m, "kcache_watch_restarts_total",
                                 "Watches resumed after an end or an error, per resource.",
                                 (const char *const[]){ "resource", NULL }, &g->restarts)) != 0 ||
        (rc = kc_metrics_counter(m, "kcache_relists_total",
                                 "Lists after the first (410 Gone and the like), per resource.",
                                 (const char *const[]){ "resource", NULL }, &g->relists)) != 0 ||
        (rc = kc_metrics_counter(m, "kcache_watch_events_total", "Watch events received, by type.",
                                 (const char *const[]){ "resource", "type", NULL }, &g->events)) != 0)
        return rc;
    return 0;
}

/* ---- signals --------------------------------------------------------- */

typedef struct sigctx {
    sigset_t set;
    kc_manager_t *m;
    kc_logger_t *log;
} sigctx_t;

/* Give freed heap back to the system once the caches have synced (the
 * list pages, decode buffers and handler queues of the initial sync are
 * free by then but sit inside glibc's arenas) and as the initial
 * reconciles finish: every second for the first TRIM_EARLY_S seconds
 * after the sync, then once a minute (relists and bursts free memory the
 * same way).  kc_heap_trim (malloc_trim) costs well under a millisecond on
 * a heap of this size.  (The informer also trims once after each list.) */
#define TRIM_EARLY_S 30
#define TRIM_EVERY_S 60

static void *signal_main(void *arg)
{
    sigctx_t *s = arg;
    struct timespec tick = { 1, 0 };
    int sig, since_ready = 0;

    for (;;) {
        sig = sigtimedwait(&s->set, NULL, &tick);
        if (sig >= 0)
            break;
        if (errno != EAGAIN && errno != EINTR)
            return NULL;
        if (errno == EINTR || !kc_manager_ready(s->m))
            continue;
        since_ready++;
        if (since_ready <= TRIM_EARLY_S || since_ready % TRIM_EVERY_S == 0)
            kc_heap_trim();
    }
    if (sig == SIGUSR1)
        return NULL;
    kc_log(s->log, KC_LOG_INFO, "main", "received %s, shutting down",
           sig == SIGTERM ? "SIGTERM" : "SIGINT");
    kc_manager_request_stop(s->m);
    return NULL;
}

/* ---- main ------------------------------------------------------------ */

int main(int argc, char **argv)
{
    args_t a = { NULL, NULL, NULL, NULL, "kcache-controller", ":8080", ":8081", 2, 0, false,
                 KC_LOGFMT_TEXT, 15, 10, 2, 30, 0 };
    kc_config_opts_t co = KC_CONFIG_OPTS_INIT;
    kc_client_opts_t clo = KC_CLIENT_OPTS_INIT;
    kc_informer_opts_t io = KC_INFORMER_OPTS_INIT;
    kc_replicator_opts_t ro = KC_REPLICATOR_OPTS_INIT;
    kc_manager_opts_t mo = KC_MANAGER_OPTS_INIT;
    kc_stdlog_t *sl = NULL;
    kc_logger_t log;
    kc_config_t *cfg = NULL;
    kc_client_t *client = NULL, *le_client = NULL;
    kc_metrics_t *metrics = NULL;
    kc_informer_factory_t *fac = NULL;
    kc_replicator_t *rep = NULL;
    kc_manager_t *mgr = NULL;
    kc_errbuf_t eb = { 0, "" };
    glue_t glue;
    sigctx_t sc;
    pthread_t sigthread;
    bool sig_started = false;
    int rc, exit_code = 1;

    memset(&glue, 0, sizeof(glue));
    rc = parse_args(argc, argv, &a);
    if (rc != 0)
        return rc;
    if (kc_stdlog_new(2, a.fmt, a.verbosity, &sl) != 0)
        return 1;
    log = kc_stdlog_logger(sl);

    /* Block the stop signals before any thread exists, so only the
     * sigwait thread ever takes them. */
    sigemptyset(&sc.set);
    sigaddset(&sc.set, SIGTERM);
    sigaddset(&sc.set, SIGINT);
    sigaddset(&sc.set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &sc.set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if ((rc = kc_global_init()) != 0) {
        kc_log(&log, KC_LOG_ERROR, "main", "global init: %s", kc_strerror(rc));
        goto out;
    }
    co.kubeconfig = a.kubeconfig;
    co.context = a.context;
    co.log = log;
    rc = kc_config_load(&co, &cfg, &eb);
    if (rc != 0) {
        kc_log(&log, KC_LOG_ERROR, "main", "client configuration: %s", eb.msg);
        goto out;
    }
    if ((rc = kc_metrics_new(&metrics)) != 0 || (rc = register_glue(metrics, &glue)) != 0) {
        kc_log(&log, KC_LOG_ERROR, "main", "metrics: %s", kc_strerror(rc));
        goto out;
    }
    clo.log = log;
    clo.user_agent = "kcache-controller/" KC_VERSION_STRING;
    clo.field_manager = "kcache-controller";
    clo.on_request = on_request;
    clo.on_request_ud = &glue;
    rc = kc_client_new(cfg, &clo, &client, &eb);
    if (rc != 0) {
        kc_log(&log, KC_LOG_ERROR, "main", "client: %s", eb.msg);
        goto out;
    }
    kc_log(&log, KC_LOG_INFO, "main", "kcache-controller %s talking to %s", KC_VERSION_STRING,
           kc_config_server(cfg));

    io.log = log;
    /* the factory serves only the replicator: other objects' data is never
     * read, so it is not kept (kc_replicator_transform) */
    io.transform = kc_replicator_transform;
    rc = kc_informer_factory_new(client, &io, &fac);
    if (rc != 0) {
        kc_log(&log, KC_LOG_ERROR, "main", "informer factory: %s", kc_strerror(rc));
        goto out;
    }
    ro.client = client;
    ro.informers = fac;
    ro.source_namespace = a.namespace_;
    ro.workers = a.workers;
    ro.metrics = metrics;
    ro.log = log;
    rc = kc_replicator_new(&ro, &rep, &eb);
    if (rc != 0) {
        kc_log(&log, KC_LOG_ERROR, "main", "replicator: %s", eb.msg);
        goto out;
    }
    glue.names[0] = "secrets";
    glue.names[1] = "configmaps";
    glue.names[2] = "namespaces";
    kc_informer_factory_get(fac, &kc_res_secrets, NULL, NULL, NULL, &glue.infs[0]);
    kc_informer_factory_get(fac, &kc_res_configmaps, NULL, NULL, NULL, &glue.infs[1]);
    kc_informer_factory_get(fac, &kc_res_namespaces, NULL, NULL, NULL, &glue.infs[2]);
    kc_metrics_add_collector(metrics, collect_informers, &glue);

    mo.informers = fac;
    mo.metrics = metrics;
    mo.metrics_addr = a.metrics_addr;
    mo.probe_addr = a.probe_addr;
    mo.shutdown_timeout_ns = (uint64_t)(a.shutdown_s * 1e9);
    mo.sync_timeout_ns = (uint64_t)(a.sync_s * 1e9);
    mo.log = log;
    if (a.leader_elect) {
        kc_client_opts_t lco = clo;
        const char *lens = a.le_namespace;
        if (lens == NULL || *lens == '\0')
            lens = getenv("POD_NAMESPACE");
        if (lens == NULL || *lens == '\0')
            lens = kc_config_namespace(cfg);
        /* The elector's own client: requests bounded by the retry period
         * and never retried, so a renewal cannot outlive the deadline. */
        lco.request_timeout_ms = (long)(a.retry_s * 1000);
        if (lco.request_timeout_ms < 500)
            lco.request_timeout_ms = 500;
        lco.connect_timeout_ms = lco.request_timeout_ms;
        lco.max_retries = 0;
        lco.qps = 0;
        rc = kc_client_new(cfg, &lco, &le_client, &eb);
        if (rc != 0) {
            kc_log(&log, KC_LOG_ERROR, "main", "leader election client: %s", eb.msg);
            goto out;
        }
        mo.leader_elect = true;
        mo.leader.client = le_client;
        mo.leader.lease_namespace = lens;
        mo.leader.lease_name = a.le_id;
        mo.leader.lease_duration_ns = (uint64_t)(a.lease_s * 1e9);
        mo.leader.renew_deadline_ns = (uint64_t)(a.renew_s * 1e9);
        mo.leader.retry_period_ns = (uint64_t)(a.retry_s * 1e9);
        mo.leader.log = log;
    }
    rc = kc_manager_new(&mo, &mgr, &eb);
    if (rc != 0) {
        kc_log(&log, KC_LOG_ERROR, "main", "manager: %s", eb.msg);
        goto out;
    }
    if ((rc = kc_replicator_add_to(rep, mgr)) != 0)
        goto out;

    sc.m = mgr;
    sc.log = &log;
    if (pthread_create(&sigthread, NULL, signal_main, &sc) == 0)
        sig_started = true;

    rc = kc_manager_run(mgr, &eb);
    if (rc == 0) {
        exit_code = 0;
        kc_log(&log, KC_LOG_INFO, "main", "stopped cleanly");
    } else {
        kc_log(&log, KC_LOG_ERROR, "main", "exiting: %s", eb.msg[0] ? eb.msg : kc_strerror(rc));
    }

out:
    if (sig_started) {
        pthread_kill(sigthread, SIGUSR1);
        pthread_join(sigthread, NULL);
    }
    if (metrics)
        kc_metrics_remove_collector(metrics, collect_informers, &glue);
    kc_manager_free(mgr);
    kc_replicator_free(rep);
    kc_informer_factory_free(fac);
    kc_client_free(le_client);
    kc_client_free(client);
    kc_config_free(cfg);
    kc_metrics_free(metrics);
    kc_global_cleanup();
    kc_stdlog_free(sl);
    return exit_code;
}
