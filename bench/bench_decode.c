/*
 * Watch decode throughput: events/s and MB/s for ConfigMaps (~1 KB) and
 * Pods (~5 KB), for
 *   - bare cJSON_Parse of each event line (the reference),
 *   - the kcache framer alone on an in-memory stream (kc_watch_decoder),
 *   - the framer plus a cJSON parse of each object,
 *   - kc_client_watch over loopback HTTPS (TLS + chunked HTTP/1.1 + framing),
 *     without and with the cJSON parse of each object,
 * all on the same bytes in the same run.  Prints a table; no assertions.
 * The HTTPS server is tests/support/k8sclient_responder (its own thread,
 * writing a pre-built stream in 64 KiB chunks).  The client receives and
 * decrypts on its transport thread ("kcache-hub") while the calling thread
 * frames and parses; the CPU columns give both threads' CPU time (from
 * /proc/self/task/TID/schedstat) relative to the bare parse time.
 *
 * Env: KC_BENCH_SCALE (default 1.0) multiplies the event counts.  With
 * KC_BENCH_OUT set it also appends records (bench/README.md): workload
 * "configmaps" / "pods", figures "events_per_s" and "mb_per_s" for impl
 * cjson (bare cJSON_Parse), kcache (the whole path: HTTPS watch, TLS,
 * framing and a parse of each object), kcache-tls-framing (without the
 * parse), kcache-framer and kcache-framer-parse (in memory).
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "k8sclient_responder.h"
#include "kc_client.h"
#include "bench_out.h"

typedef struct stream {
    char *data;
    size_t len;
    size_t events;
} stream_t;

static const stream_t *g_serving;

static char *xstrdup_printf(const char *fmt, ...) KC_PRINTF(1, 2);
static char *xstrdup_printf(const char *fmt, ...)
{
    va_list ap;
    char *s;

    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        abort();
    va_end(ap);
    return s;
}

static void add_meta(cJSON *o, const char *kind, const char *name, size_t i, int pod)
{
    cJSON *m = cJSON_AddObjectToObject(o, "metadata"), *l, *a;
    char v[128];

    cJSON_AddStringToObject(o, "kind", kind);
    cJSON_AddStringToObject(o, "apiVersion", "v1");
    cJSON_AddStringToObject(m, "name", name);
    cJSON_AddStringToObject(m, "namespace", "team-payments");
    snprintf(v, sizeof(v), "%08zx-4b1e-4c55-9a2f-%012zx", i * 2654435761u, i);
    cJSON_AddStringToObject(m, "uid", v);
    snprintf(v, sizeof(v), "%zu", 1000000 + i);
    cJSON_AddStringToObject(m, "resourceVersion", v);
    cJSON_AddStringToObject(m, "creationTimestamp", "2026-11-20T08:14:02Z");
    l = cJSON_AddObjectToObject(m, "labels");
    cJSON_AddStringToObject(l, "app.kubernetes.io/name", "checkout");
    cJSON_AddStringToObject(l, "app.kubernetes.io/part-of", "payments");
    cJSON_AddStringToObject(l, "pod-template-hash", "7d9f8b6c5d");
    a = cJSON_AddObjectToObject(m, "annotations");
    cJSON_AddStringToObject(a, "kubectl.kubernetes.io/restartedAt", "2026-11-19T22:00:00Z");
    if (pod) {
        cJSON_AddStringToObject(a, "prometheus.io/scrape", "true");
        cJSON_AddStringToObject(a, "prometheus.io/path", "/actuator/prometheus");
        cJSON_AddStringToObject(a, "sidecar.istio.io/status",
                                "{\"initContainers\":[\"istio-init\"],\"containers\":"
                                "[\"istio-proxy\"],\"volumes\":[\"workload-socket\","
                                "\"credential-socket\",\"workload-certs\",\"istio-envoy\","
                                "\"istio-data\",\"istio-podinfo\",\"istio-token\","
                                "\"istiod-ca-cert\"],\"imagePullSecrets\":null,"
                                "\"revision\":\"default\"}");
        cJSON *refs = cJSON_AddArrayToObject(m, "ownerReferences"), *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "apiVersion", "apps/v1");
        cJSON_AddStringToObject(r, "kind", "ReplicaSet");
        cJSON_AddStringToObject(r, "name", "checkout-7d9f8b6c5d");
        cJSON_AddStringToObject(r, "uid", "5c0e7d7a-1f7e-4f0b-8b59-9b0e3c1d2a4f");
        cJSON_AddBoolToObject(r, "controller", 1);
        cJSON_AddBoolToObject(r, "blockOwnerDeletion", 1);
        cJSON_AddItemToArray(refs, r);
    }
}

static cJSON *make_configmap(size_t i)
{
    cJSON *o = cJSON_CreateObject(), *d;
    char name[64];

    snprintf(name, sizeof(name), "checkout-config-%zu", i);
    add_meta(o, "ConfigMap", name, i, 0);
    d = cJSON_AddObjectToObject(o, "data");
    cJSON_AddStringToObject(d, "application.yaml",
                            "server:\n  port: 8080\n  shutdown: graceful\nspring:\n  datasource:\n"
                            "    url: jdbc:postgresql://payments-db:5432/checkout\n    pool: 20\n"
                            "logging:\n  level: INFO\n  format: json\nfeatures:\n  newCart: true\n"
                            "  fraudCheck: strict\n  retries: 3\n");
    cJSON_AddStringToObject(d, "LOG_LEVEL", "info");
    cJSON_AddStringToObject(d, "REGION", "eu-west-1");
    cJSON_AddStringToObject(d, "FEATURE_FLAGS", "cart-v2,fast-checkout,apple-pay,klarna");
    cJSON_AddStringToObject(d, "payment-providers.json",
                            "{\"stripe\":{\"timeoutMs\":2500,\"retries\":2},\"adyen\":"
                            "{\"timeoutMs\":3000,\"retries\":1},\"paypal\":{\"timeoutMs\":"
                            "4000,\"retries\":0,\"sandbox\":false}}");
    return o;
}

static cJSON *container(const char *name, const char *image, int port)
{
    cJSON *c = cJSON_CreateObject(), *arr, *e, *res, *lim, *req, *pr, *hg;
    static const char *envs[][2] = {{"JAVA_OPTS", "-XX:MaxRAMPercentage=75 -XX:+UseG1GC"},
                                    {"SPRING_PROFILES_ACTIVE", "prod"},
                                    {"OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector:4317"},
                                    {"POD_IP", NULL}};

    cJSON_AddStringToObject(c, "name", name);
    cJSON_AddStringToObject(c, "image", image);
    arr = cJSON_AddArrayToObject(c, "ports");
    e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", "http");
    cJSON_AddNumberToObject(e, "containerPort", port);
    cJSON_AddStringToObject(e, "protocol", "TCP");
    cJSON_AddItemToArray(arr, e);
    arr = cJSON_AddArrayToObject(c, "env");
    for (size_t k = 0; k < 4; k++) {
        e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", envs[k][0]);
        if (envs[k][1]) {
            cJSON_AddStringToObject(e, "value", envs[k][1]);
        } else {
            cJSON *vf = cJSON_AddObjectToObject(e, "valueFrom");
            cJSON *fr = cJSON_AddObjectToObject(vf, "fieldRef");
            cJSON_AddStringToObject(fr, "apiVersion", "v1");
            cJSON_AddStringToObject(fr, "fieldPath", "status.podIP");
        }
        cJSON_AddItemToArray(arr, e);
    }
    res = cJSON_AddObjectToObject(c, "resources");
    lim = cJSON_AddObjectToObject(res, "limits");
    cJSON_AddStringToObject(lim, "cpu", "2");
    cJSON_AddStringToObject(lim, "memory", "2Gi");
    req = cJSON_AddObjectToObject(res, "requests");
    cJSON_AddStringToObject(req, "cpu", "500m");
    cJSON_AddStringToObject(req, "memory", "1Gi");
    arr = cJSON_AddArrayToObject(c, "volumeMounts");
    e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "name", "kube-api-access-x7k2p");
    cJSON_AddBoolToObject(e, "readOnly", 1);
    cJSON_AddStringToObject(e, "mountPath", "/var/run/secrets/kubernetes.io/serviceaccount");
    cJSON_AddItemToArray(arr, e);
    pr = cJSON_AddObjectToObject(c, "readinessProbe");
    hg = cJSON_AddObjectToObject(pr, "httpGet");
    cJSON_AddStringToObject(hg, "path", "/actuator/health/readiness");
    cJSON_AddNumberToObject(hg, "port", port);
    cJSON_AddStringToObject(hg, "scheme", "HTTP");
    cJSON_AddNumberToObject(pr, "periodSeconds", 10);
    cJSON_AddNumberToObject(pr, "failureThreshold", 3);
    cJSON_AddStringToObject(c, "terminationMessagePath", "/dev/termination-log");
    cJSON_AddStringToObject(c, "terminationMessagePolicy", "File");
    cJSON_AddStringToObject(c, "imagePullPolicy", "IfNotPresent");
    return c;
}

static cJSON *make_pod(size_t i)
{
    cJSON *o = cJSON_CreateObject(), *spec, *cs, *st, *arr, *e;
    static const char *ctypes[] = {"PodReadyToStartContainers", "Initialized", "Ready",
                                   "ContainersReady", "PodScheduled"};
    char name[64], v[64];

    snprintf(name, sizeof(name), "checkout-7d9f8b6c5d-%05zx", i);
    add_meta(o, "Pod", name, i, 1);
    spec = cJSON_AddObjectToObject(o, "spec");
    cs = cJSON_AddArrayToObject(spec, "containers");
    cJSON_AddItemToArray(cs, container("checkout", "registry.example.com/payments/checkout:2.41.7", 8080));
    cJSON_AddItemToArray(cs, container("envoy", "registry.example.com/mesh/envoy:1.32.2", 15001));
    cJSON_AddStringToObject(spec, "restartPolicy", "Always");
    cJSON_AddNumberToObject(spec, "terminationGracePeriodSeconds", 30);
    cJSON_AddStringToObject(spec, "dnsPolicy", "ClusterFirst");
    cJSON_AddStringToObject(spec, "serviceAccountName", "checkout");
    snprintf(v, sizeof(v), "ip-10-0-%zu-%zu.eu-west-1.compute.internal", i % 200, i % 250);
    cJSON_AddStringToObject(spec, "nodeName", v);
    cJSON_AddStringToObject(spec, "schedulerName", "default-scheduler");
    arr = cJSON_AddArrayToObject(spec, "tolerations");
    for (int k = 0; k < 2; k++) {
        e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "key", k ? "node.kubernetes.io/unreachable" : "node.kubernetes.io/not-ready");
        cJSON_AddStringToObject(e, "operator", "Exists");
        cJSON_AddStringToObject(e, "effect", "NoExecute");
        cJSON_AddNumberToObject(e, "tolerationSeconds", 300);
        cJSON_AddItemToArray(arr, e);
    }
    st = cJSON_AddObjectToObject(o, "status");
    cJSON_AddStringToObject(st, "phase", "Running");
    arr = cJSON_AddArrayToObject(st, "conditions");
    for (int k = 0; k < 5; k++) {
        e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "type", ctypes[k]);
        cJSON_AddStringToObject(e, "status", "True");
        cJSON_AddNullToObject(e, "lastProbeTime");
        cJSON_AddStringToObject(e, "lastTransitionTime", "2026-11-20T08:14:09Z");
        cJSON_AddItemToArray(arr, e);
    }
    snprintf(v, sizeof(v), "10.244.%zu.%zu", i % 250, (i / 250) % 250);
    cJSON_AddStringToObject(st, "podIP", v);
    cJSON_AddStringToObject(st, "hostIP", "10.0.12.34");
    cJSON_AddStringToObject(st, "qosClass", "Burstable");
    cJSON_AddStringToObject(st, "startTime", "2026-11-20T08:14:02Z");
    arr = cJSON_AddArrayToObject(st, "containerStatuses");
    for (int k = 0; k < 2; k++) {
        cJSON *state, *run;
        e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", k ? "envoy" : "checkout");
        state = cJSON_AddObjectToObject(e, "state");
        run = cJSON_AddObjectToObject(state, "running");
        cJSON_AddStringToObject(run, "startedAt", "2026-11-20T08:14:07Z");
        cJSON_AddBoolToObject(e, "ready", 1);
        cJSON_AddNumberToObject(e, "restartCount", 0);
        cJSON_AddStringToObject(e, "image", k ? "registry.example.com/mesh/envoy:1.32.2"
                                              : "registry.example.com/payments/checkout:2.41.7");
        cJSON_AddStringToObject(e, "imageID", "registry.example.com/payments/checkout@sha256:"
                                              "9f2b7c1d0e4a5b6c7d8e9f00112233445566778899aabbccddeeff0011223344");
        cJSON_AddStringToObject(e, "containerID", "containerd://4b1e9a2f0c3d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7");
        cJSON_AddBoolToObject(e, "started", 1);
        cJSON_AddItemToArray(arr, e);
    }
    return o;
}

static void build_stream(stream_t *s, int pod, size_t n)
{
    static const char *types[] = {"ADDED", "MODIFIED", "MODIFIED", "MODIFIED", "DELETED"};
    size_t cap = n * (pod ? 6000 : 1400) + 1024, len = 0;

    s->data = malloc(cap);
    for (size_t i = 0; i < n; i++) {
        cJSON *o = pod ? make_pod(i) : make_configmap(i);
        char *js = cJSON_PrintUnformatted(o);
        char *line = xstrdup_printf("{\"type\":\"%s\",\"object\":%s}\n", types[i % 5], js);
        size_t l = strlen(line);
        if (len + l > cap) {
            cap = (len + l) * 2;
            s->data = realloc(s->data, cap);
        }
        memcpy(s->data + len, line, l);
        len += l;
        free(line);
        free(js);
        cJSON_Delete(o);
    }
    s->len = len;
    s->events = n;
}

typedef struct counter {
    size_t events;
    size_t bytes;
    int parse;
} counter_t;

static int count_cb(void *ud, const kc_watch_event_t *ev)
{
    counter_t *c = ud;

    c->events++;
    c->bytes += ev->object_len;
    if (c->parse) {
        cJSON *j = kc_watch_event_parse(ev);
        if (j == NULL)
            return -1;
        cJSON_Delete(j);
    }
    return 0;
}

static double now_s(void)
{
    return (double)kc_now_ns() / 1e9;
}

static double run_bare(const stream_t *s)
{
    double t0 = now_s();
    const char *p = s->data, *end = s->data + s->len;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        cJSON *j = cJSON_ParseWithLength(p, (size_t)(nl - p));
        if (j == NULL)
            abort();
        cJSON_Delete(j);
        p = nl + 1;
    }
    return now_s() - t0;
}

static double run_decoder(const stream_t *s, int parse)
{
    counter_t c = {0, 0, parse};
    kc_watch_decoder_t *d;
    kc_errbuf_t eb;
    double t0 = now_s();
    size_t chunk = 16384;

    kc_watch_decoder_new(0, count_cb, &c, &d);
    for (size_t off = 0; off < s->len; off += chunk)
        if (kc_watch_decoder_feed(d, s->data + off, off + chunk > s->len ? s->len - off : chunk, &eb)) {
            fprintf(stderr, "decode: %s\n", eb.msg);
            exit(1);
        }
    kc_watch_decoder_finish(d, &eb);
    kc_watch_decoder_free(d);
    if (c.events != s->events)
        abort();
    return now_s() - t0;
}

static int serve(void *ud, const kc_resp_req_t *rq, kc_resp_conn_t *c)
{
    const stream_t *s = g_serving;
    size_t chunk = 65536;

    (void)ud;
    if (strstr(rq->target, "watch=true") == NULL)
        return kc_resp_send_json(c, 404, "{}");
    if (kc_resp_start_chunked(c))
        return 1;
    for (size_t off = 0; off < s->len; off += chunk)
        if (kc_resp_chunk(c, s->data + off, off + chunk > s->len ? s->len - off : chunk))
            return 1;
    kc_resp_chunk(c, NULL, 0);
    return 0;
}

static double g_cpu;   /* client thread CPU seconds of the last run_https */

static double thread_cpu(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds of the client's transport thread (named "kcache-hub"), 0 if
 * it cannot be found. */
static double hub_cpu(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *de;
    double cpu = 0;

    if (d == NULL)
        return 0;
    while ((de = readdir(d)) != NULL) {
        char path[300], comm[64] = "";
        unsigned long long ns = 0;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
        if ((f = fopen(path, "r")) == NULL)
            continue;
        if (fgets(comm, sizeof(comm), f) == NULL)
            comm[0] = '\0';
        fclose(f);
        if (strncmp(comm, "kcache-hub", 10) != 0)
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/schedstat", de->d_name);
        if ((f = fopen(path, "r")) == NULL)
            continue;
        if (fscanf(f, "%llu", &ns) == 1)
            cpu += (double)ns / 1e9;
        fclose(f);
    }
    closedir(d);
    return cpu;
}

static double g_hub_cpu;   /* transport thread CPU seconds of the last run_https */

static double run_https(kc_client_t *cl, const stream_t *s, int parse)
{
    double c0 = thread_cpu(), h0 = hub_cpu();
    counter_t c = {0, 0, parse};
    kc_watch_opts_t wo = KC_WATCH_OPTS_INIT;
    kc_status_t st;
    double t0;
    int rc;

    g_serving = s;
    t0 = now_s();
    rc = kc_client_watch(cl, &kc_res_configmaps, "default", &wo, count_cb, &c, &st);
    if (rc != 0 || c.events != s->events) {
        fprintf(stderr, "watch: %s %s (%zu events)\n", kc_err_name(rc), st.message, c.events);
        exit(1);
    }
    g_cpu = thread_cpu() - c0;
    g_hub_cpu = hub_cpu() - h0;
    return now_s() - t0;
}

static double best(double a, double b)
{
    return a < b ? a : b;
}

static void row(const char *what, const stream_t *s, double secs, double ref, double cpu,
                double hcpu, const char *wl, const char *impl)
{
    bench_record("decode", impl, wl, "events_per_s", (double)s->events / secs, "events/s");
    bench_record("decode", impl, wl, "mb_per_s", (double)s->len / secs / 1e6, "MB/s");
    printf("  %-38s %10.0f ev/s %8.1f MB/s %7.0f%%", what, (double)s->events / secs,
           (double)s->len / secs / 1e6, ref / secs * 100.0);
    if (cpu > 0)
        printf("   (CPU vs bare parse time: caller %.0f%% (%.0f%% busy), transport %.0f%%)",
               cpu / ref * 100.0, cpu / secs * 100.0, hcpu / ref * 100.0);
    printf("\n");
}

static kc_client_t *make_client(kc_resp_t *r)
{
    char path[] = "/tmp/kc-bench-kubeconfig-XXXXXX";
    int fd = mkstemp(path);
    char *ca = NULL, *yaml;
    kc_config_opts_t co = KC_CONFIG_OPTS_INIT;
    kc_config_t *cfg;
    kc_client_t *c;
    kc_errbuf_t eb;
    kc_client_opts_t o = KC_CLIENT_OPTS_INIT;
    FILE *f;

    {
        /* base64 of the CA through cJSON-free route: write the PEM to a file */
        char cpath[] = "/tmp/kc-bench-ca-XXXXXX";
        int cfd = mkstemp(cpath);
        if (write(cfd, kc_resp_ca_pem(r), strlen(kc_resp_ca_pem(r))) < 0)
            abort();
        close(cfd);
        ca = strdup(cpath);
    }
    yaml = xstrdup_printf("current-context: b\nclusters:\n- name: c\n  cluster:\n    server: %s\n"
                          "    certificate-authority: %s\nusers:\n- name: u\n  user: {token: t}\n"
                          "contexts:\n- name: b\n  context: {cluster: c, user: u}\n",
                          kc_resp_url(r), ca);
    f = fdopen(fd, "w");
    fputs(yaml, f);
    fclose(f);
    co.kubeconfig = path;
    if (kc_config_load(&co, &cfg, &eb) != 0) {
        fprintf(stderr, "%s\n", eb.msg);
        exit(1);
    }
    o.qps = 0;
    if (kc_client_new(cfg, &o, &c, &eb) != 0) {
        fprintf(stderr, "%s\n", eb.msg);
        exit(1);
    }
    kc_config_free(cfg);
    unlink(path);
    unlink(ca);
    free(ca);
    free(yaml);
    return c;
}

int main(void)
{
    const char *sc = getenv("KC_BENCH_SCALE");
    double scale = sc ? atof(sc) : 1.0;
    kc_resp_t *r;
    kc_client_t *cl;
    struct {
        const char *name;
        int pod;
        size_t n;
    } kinds[] = {{"ConfigMap", 0, 20000}, {"Pod", 1, 5000}};

    if (scale <= 0)
        scale = 1.0;
    kc_global_init();
    if (kc_resp_start(serve, NULL, &r) != 0)
        return 1;
    cl = make_client(r);
    printf("watch decode throughput (best of 3; %% = relative to bare cJSON_Parse)\n");
    for (size_t k = 0; k < 2; k++) {
        stream_t s;
        double bare = 1e9, dec = 1e9, decp = 1e9, tls = 1e9, tlsp = 1e9, cpu_tls = 0, cpu_tlsp = 0,
               hub_tls = 0, hub_tlsp = 0;

        build_stream(&s, kinds[k].pod, (size_t)((double)kinds[k].n * scale) + 1);
        printf("%s: %zu events, %.1f MB, %.0f bytes/event\n", kinds[k].name, s.events,
               (double)s.len / 1e6, (double)s.len / (double)s.events);
        if (getenv("KC_BENCH_HTTPS_ONLY")) {   /* for profiling the transport alone */
            for (int rep = 0; rep < 5; rep++)
                run_https(cl, &s, 0);
            free(s.data);
            continue;
        }
        for (int rep = 0; rep < 3; rep++) {
            bare = best(bare, run_bare(&s));
            dec = best(dec, run_decoder(&s, 0));
            decp = best(decp, run_decoder(&s, 1));
            double t = run_https(cl, &s, 0);
            if (t < tls) {
                tls = t;
                cpu_tls = g_cpu;
                hub_tls = g_hub_cpu;
            }
            t = run_https(cl, &s, 1);
            if (t < tlsp) {
                tlsp = t;
                cpu_tlsp = g_cpu;
                hub_tlsp = g_hub_cpu;
            }
        }
        const char *wl = kinds[k].pod ? "pods" : "configmaps";
        row("bare cJSON_Parse per line", &s, bare, bare, 0, 0, wl, "cjson");
        row("framer (in memory)", &s, dec, bare, 0, 0, wl, "kcache-framer");
        row("framer + cJSON parse (in memory)", &s, decp, bare, 0, 0, wl, "kcache-framer-parse");
        row("HTTPS watch: TLS + framing", &s, tls, bare, cpu_tls, hub_tls, wl, "kcache-tls-framing");
        row("HTTPS watch: TLS + framing + parse", &s, tlsp, bare, cpu_tlsp, hub_tlsp, wl, "kcache");
        free(s.data);
    }
    kc_client_free(cl);
    kc_resp_stop(r);
    kc_global_cleanup();
    return 0;
}
