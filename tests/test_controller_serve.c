/* Tests for the metrics registry and exposition, the probe/metrics HTTP
 * servers (scraped over a real socket on 127.0.0.1) and the logger. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kc_controller.h"

/* ------------------------------------------------------------------ */
/* A strict parser for the text format, enough to check what we emit.   */

typedef struct sample {
    char name[128];
    char labels[8][2][256]; /* unescaped name/value pairs */
    int nlabels;
    double value;
} sample_t;

typedef struct parsed {
    sample_t s[512];
    int n;
    char types[64][2][128]; /* family, type */
    int ntypes;
} parsed_t;

static const char *family_type(parsed_t *p, const char *fam)
{
    for (int i = 0; i < p->ntypes; i++)
        if (strcmp(p->types[i][0], fam) == 0)
            return p->types[i][1];
    return NULL;
}

/* Returns 0 or fails the test with the offending line. */
static void parse_exposition(const char *text, parsed_t *p)
{
    const char *line = text;
    char last_family[128] = "";

    memset(p, 0, sizeof(*p));
    assert_true(strlen(text) == 0 || text[strlen(text) - 1] == '\n');
    while (*line) {
        const char *eol = strchr(line, '\n');
        char buf[2048];
        size_t len;

        assert_non_null(eol);
        len = (size_t)(eol - line);
        assert_true(len < sizeof(buf));
        memcpy(buf, line, len);
        buf[len] = '\0';
        line = eol + 1;
        if (strncmp(buf, "# HELP ", 7) == 0)
            continue;
        if (strncmp(buf, "# TYPE ", 7) == 0) {
            char fam[128], type[32];
            assert_int_equal(sscanf(buf + 7, "%127s %31s", fam, type), 2);
            assert_null(family_type(p, fam)); /* one TYPE per family */
            assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                        strcmp(type, "histogram") == 0);
            snprintf(p->types[p->ntypes][0], 128, "%s", fam);
            snprintf(p->types[p->ntypes][1], 128, "%s", type);
            p->ntypes++;
            snprintf(last_family, sizeof(last_family), "%s", fam);
            continue;
        }
        assert_true(buf[0] != '#');
        sample_t *s = &p->s[p->n++];
        char *c = buf;
        size_t nl = strcspn(c, "{ ");
        assert_true(nl > 0 && nl < sizeof(s->name));
        memcpy(s->name, c, nl);
        s->name[nl] = '\0';
        c += nl;
        /* the sample belongs to the family declared last */
        assert_int_equal(strncmp(s->name, last_family, strlen(last_family)), 0);
        if (*c == '{') {
            c++;
            while (*c != '}') {
                size_t kl = strcspn(c, "=");
                assert_true(kl > 0 && c[kl] == '=' && c[kl + 1] == '"');
                memcpy(s->labels[s->nlabels][0], c, kl);
                s->labels[s->nlabels][0][kl] = '\0';
                c += kl + 2;
                char *v = s->labels[s->nlabels][1];
                size_t vi = 0;
                while (*c != '"') {
                    assert_true(*c != '\0' && *c != '\n');
                    if (*c == '\\') {
                        c++;
                        assert_true(*c == '\\' || *c == '"' || *c == 'n');
                        v[vi++] = *c == 'n' ? '\n' : *c;
                    } else {
                        v[vi++] = *c;
                    }
                    c++;
                }
                v[vi] = '\0';
                c++;
                s->nlabels++;
                if (*c == ',')
                    c++;
                else
                    assert_true(*c == '}');
            }
            c++;
        }
        assert_true(*c == ' ');
        c++;
        if (strcmp(c, "+Inf") == 0)
            s->value = INFINITY;
        else {
            char *end;
            s->value = strtod(c, &end);
            assert_true(*end == '\0');
        }
    }
}

static sample_t *find_sample(parsed_t *p, const char *name, const char *lk, const char *lv)
{
    for (int i = 0; i < p->n; i++) {
        if (strcmp(p->s[i].name, name) != 0)
            continue;
        if (lk == NULL)
            return &p->s[i];
        for (int j = 0; j < p->s[i].nlabels; j++)
            if (strcmp(p->s[i].labels[j][0], lk) == 0 && strcmp(p->s[i].labels[j][1], lv) == 0)
                return &p->s[i];
    }
    return NULL;
}

/* ------------------------------------------------------------------ */

static void test_exposition_format(void **state)
{
    kc_metrics_t *m;
    kc_metric_t *c, *g, *h, *again;
    static const char *const ln[] = { "controller", "result", NULL };
    const double buckets[] = { 0.1, 1, 10 };
    char *text;
    size_t len;
    parsed_t *p = calloc(1, sizeof(*p));

    (void)state;
    assert_int_equal(kc_metrics_new(&m), 0);
    assert_int_equal(kc_metrics_counter(m, "controller_runtime_reconcile_total",
                                        "Total number of reconciliations per controller", ln, &c), 0);
    assert_int_equal(kc_metrics_counter(m, "controller_runtime_reconcile_total", "x", ln, &again), 0);
    assert_ptr_equal(c, again);
    assert_int_equal(kc_metrics_gauge(m, "controller_runtime_reconcile_total", "x", ln, &again),
                     KC_EEXISTS);
    assert_int_equal(kc_metrics_gauge(m, "bad-name", "x", NULL, &again), -EINVAL);
    assert_int_equal(kc_metrics_gauge(m, "leader_election_master_status",
                                      "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease. Please make sure to group by name.",
                                      (const char *[]){ "name", NULL }, &g), 0);
    assert_int_equal(kc_metrics_histogram(m, "lat_seconds", "Latency with a \\ and\nnewline",
                                          (const char *[]){ "verb", NULL }, buckets, 3, &h), 0);

    kc_metric_inc(c, (const char *[]){ "replicator", "success" });
    kc_metric_add(c, (const char *[]){ "replicator", "success" }, 2);
    kc_metric_inc(c, (const char *[]){ "we\"ird\\name\nx", "error" });
    kc_metric_add(c, (const char *[]){ "replicator", "success" }, -5); /* ignored */
    kc_metric_set(g, (const char *[]){ "kcache" }, 1);
    kc_metric_observe(h, (const char *[]){ "LIST" }, 0.05);
    kc_metric_observe(h, (const char *[]){ "LIST" }, 0.5);
    kc_metric_observe(h, (const char *[]){ "LIST" }, 0.5);
    kc_metric_observe(h, (const char *[]){ "LIST" }, 100);
    assert_true(kc_metric_value(c, (const char *[]){ "replicator", "success" }) == 3.0);

    assert_int_equal(kc_metrics_write(m, &text, &len), 0);
    assert_int_equal(strlen(text), len);
    parse_exposition(text, p);
    assert_string_equal(family_type(p, "controller_runtime_reconcile_total"), "counter");
    assert_string_equal(family_type(p, "lat_seconds"), "histogram");
    sample_t *s = find_sample(p, "controller_runtime_reconcile_total", "controller", "we\"ird\\name\nx");
    assert_non_null(s);
    assert_true(s->value == 1.0);
    s = find_sample(p, "controller_runtime_reconcile_total", "controller", "replicator");
    assert_non_null(s);
    assert_true(s->value == 3.0);
    assert_non_null(strstr(text, "# HELP lat_seconds Latency with a \\\\ and\\nnewline\n"));
    assert_non_null(strstr(text, "lat_seconds_bucket{verb=\"LIST\",le=\"0.1\"} 1\n"));
    assert_non_null(strstr(text, "lat_seconds_bucket{verb=\"LIST\",le=\"1\"} 3\n"));
    assert_non_null(strstr(text, "lat_seconds_bucket{verb=\"LIST\",le=\"10\"} 3\n"));
    assert_non_null(strstr(text, "lat_seconds_bucket{verb=\"LIST\",le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(text, "lat_seconds_sum{verb=\"LIST\"} 101.05\n"));
    assert_non_null(strstr(text, "lat_seconds_count{verb=\"LIST\"} 4\n"));
    assert_non_null(strstr(text, "leader_election_master_status{name=\"kcache\"} 1\n"));
    /* families sorted by name */
    assert_true(strstr(text, "# TYPE controller_runtime") < strstr(text, "# TYPE lat_seconds"));
    free(text);

    kc_metric_remove(c, (const char *[]){ "we\"ird\\name\nx", "error" });
    assert_int_equal(kc_metrics_write(m, &text, &len), 0);
    assert_null(strstr(text, "error"));
    free(text);

    char esc[32];
    assert_int_equal(kc_metrics_escape_label(esc, sizeof(esc), "a\"b\\c\nd"), 10);
    assert_string_equal(esc, "a\\\"b\\\\c\\nd");
    assert_int_equal(kc_metrics_escape_help(esc, sizeof(esc), "a\"b\n"), 5);
    assert_string_equal(esc, "a\"b\\n");
    kc_metrics_free(m);
    free(p);
}

/* Concurrent updates are all counted. */
typedef struct upd {
    kc_metric_t *c, *h;
} upd_t;

static void *updater(void *arg)
{
    upd_t *u = arg;
    for (int i = 0; i < 2000; i++) {
        kc_metric_inc(u->c, (const char *[]){ i % 2 ? "a" : "b" });
        kc_metric_observe(u->h, NULL, 0.001);
    }
    return NULL;
}

static void test_metrics_threads(void **state)
{
    kc_metrics_t *m;
    upd_t u;
    pthread_t t[4];
    char *text;

    (void)state;
    assert_int_equal(kc_metrics_new(&m), 0);
    assert_int_equal(kc_metrics_counter(m, "c_total", "c", (const char *[]){ "k", NULL }, &u.c), 0);
    assert_int_equal(kc_metrics_histogram(m, "h_seconds", "h", NULL, NULL, 0, &u.h), 0);
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, updater, &u);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(kc_metrics_write(m, &text, NULL), 0);
        free(text);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_true(kc_metric_value(u.c, (const char *[]){ "a" }) == 4000.0);
    assert_true(kc_metric_value(u.c, (const char *[]){ "b" }) == 4000.0);
    assert_int_equal(kc_metrics_write(m, &text, NULL), 0);
    assert_non_null(strstr(text, "h_seconds_count 8000\n"));
    free(text);
    kc_metrics_free(m);
}

/* ------------------------------------------------------------------ */
/* HTTP                                                                 */

typedef struct body {
    char data[65536];
    size_t len;
} body_t;

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    body_t *b = ud;
    size_t n = size * nmemb;
    if (b->len + n >= sizeof(b->data))
        return 0;
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

static long http_get(int port, const char *path, body_t *b, char *ctype, size_t ctsz)
{
    char url[128];
    CURL *c = curl_easy_init();
    long code = 0;
    char *ct = NULL;

    assert_non_null(c);
    b->len = 0;
    b->data[0] = '\0';
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    if (ctype)
        snprintf(ctype, ctsz, "%s", ct ? ct : "");
    curl_easy_cleanup(c);
    return code;
}

static atomic_int ready_flag;

static bool ready_check(void *ud, char *why, size_t whysz)
{
    (void)ud;
    if (atomic_load(&ready_flag))
        return true;
    snprintf(why, whysz, "informer caches not synced: secrets");
    return false;
}

static void test_http_servers(void **state)
{
    kc_metrics_t *m;
    kc_metric_t *g;
    kc_httpserver_opts_t o = KC_HTTPSERVER_OPTS_INIT;
    kc_httpserver_t *s = NULL;
    kc_errbuf_t eb;
    body_t *b = calloc(1, sizeof(*b));
    parsed_t *p = calloc(1, sizeof(*p));
    char ct[128];
    int mport, pport;

    (void)state;
    assert_int_equal(kc_metrics_new(&m), 0);
    assert_int_equal(kc_metrics_gauge(m, "leader_election_master_status", "leader",
                                      (const char *[]){ "name", NULL }, &g), 0);
    kc_metric_set(g, (const char *[]){ "kcache-controller" }, 1);
    o.metrics_addr = "127.0.0.1:0";
    o.probe_addr = "127.0.0.1:0";
    o.metrics = m;
    o.ready = ready_check;
    atomic_store(&ready_flag, 0);
    assert_int_equal(kc_httpserver_start(&o, &s, &eb), 0);
    mport = kc_httpserver_port(s, 0);
    pport = kc_httpserver_port(s, 1);
    assert_true(mport > 0 && pport > 0 && mport != pport);

    assert_int_equal(http_get(pport, "/healthz", b, NULL, 0), 200);
    assert_string_equal(b->data, "ok");
    assert_int_equal(http_get(pport, "/readyz", b, NULL, 0), 503);
    assert_non_null(strstr(b->data, "informer caches not synced: secrets"));
    atomic_store(&ready_flag, 1);
    assert_int_equal(http_get(pport, "/readyz", b, NULL, 0), 200);
    assert_int_equal(http_get(pport, "/metrics", b, NULL, 0), 404); /* metrics on its own port */
    assert_int_equal(http_get(mport, "/healthz", b, NULL, 0), 404);
    assert_int_equal(http_get(mport, "/metrics", b, ct, sizeof(ct)), 200);
    assert_string_equal(ct, "text/plain; version=0.0.4; charset=utf-8");
    parse_exposition(b->data, p);
    sample_t *sm = find_sample(p, "leader_election_master_status", "name", "kcache-controller");
    assert_non_null(sm);
    assert_true(sm->value == 1.0);
    kc_httpserver_stop(s);

    /* both on one fixed address: pick a free port first */
    {
        char addr[64];
        o.metrics_addr = "127.0.0.1:0";
        o.probe_addr = "0";
        assert_int_equal(kc_httpserver_start(&o, &s, &eb), 0);
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", kc_httpserver_port(s, 0));
        kc_httpserver_stop(s);
        o.metrics_addr = o.probe_addr = addr;
        assert_int_equal(kc_httpserver_start(&o, &s, &eb), 0);
    }
    assert_int_equal(kc_httpserver_port(s, 0), kc_httpserver_port(s, 1));
    assert_int_equal(http_get(kc_httpserver_port(s, 0), "/metrics", b, NULL, 0), 200);
    assert_int_equal(http_get(kc_httpserver_port(s, 0), "/readyz", b, NULL, 0), 200);
    kc_httpserver_stop(s);

    /* disabled metrics; bad address reported */
    o.metrics_addr = "0";
    o.probe_addr = "127.0.0.1:0";
    assert_int_equal(kc_httpserver_start(&o, &s, &eb), 0);
    assert_int_equal(kc_httpserver_port(s, 0), 0);
    kc_httpserver_stop(s);
    o.metrics_addr = "nonsense";
    assert_int_equal(kc_httpserver_start(&o, &s, &eb), -EINVAL);
    assert_non_null(strstr(eb.msg, "nonsense"));
    kc_metrics_free(m);
    free(b);
    free(p);
}

/* ------------------------------------------------------------------ */
/* logger                                                               */

static void test_logger(void **state)
{
    char line[1024];
    int fds[2];
    kc_stdlog_t *l;
    kc_logger_t lg;
    char got[4096];
    ssize_t n;

    (void)state;
    kc_stdlog_format(KC_LOGFMT_JSON, 1764300000.25, KC_LOG_WARN, "leader",
                     "lost \"lease\"\nnow", line, sizeof(line));
    assert_string_equal(line, "{\"ts\":\"2025-11-28T03:20:00.250Z\",\"level\":\"warn\",\"logger\":\"leader\","
                              "\"msg\":\"lost \\\"lease\\\"\\nnow\"}\n");
    kc_stdlog_format(KC_LOGFMT_TEXT, 1764300000.0, KC_LOG_INFO, "informer", "synced 3 caches",
                     line, sizeof(line));
    assert_string_equal(line, "ts=2025-11-28T03:20:00.000Z level=info logger=informer msg=\"synced 3 caches\"\n");
    /* whole seconds round down, also before 1970 (floor without libm) */
    kc_stdlog_format(KC_LOGFMT_TEXT, -0.25, KC_LOG_INFO, "x", "m", line, sizeof(line));
    assert_string_equal(line, "ts=1969-12-31T23:59:59.750Z level=info logger=x msg=\"m\"\n");
    kc_stdlog_format(KC_LOGFMT_TEXT, 1764300000.75, KC_LOG_INFO, "x", "m", line, sizeof(line));
    assert_string_equal(line, "ts=2025-11-28T03:20:00.750Z level=info logger=x msg=\"m\"\n");
    kc_stdlog_format(KC_LOGFMT_TEXT, 0, KC_LOG_ERROR, "client",
                     "header Authorization: Bearer abc.def.ghi failed, token=s3cret end", line,
                     sizeof(line));
    assert_null(strstr(line, "abc.def"));
    assert_null(strstr(line, "s3cret"));
    assert_non_null(strstr(line, "Bearer [REDACTED] failed, token=[REDACTED] end"));

    assert_int_equal(pipe(fds), 0);
    assert_int_equal(kc_stdlog_new(fds[1], KC_LOGFMT_TEXT, 0, &l), 0);
    lg = kc_stdlog_logger(l);
    kc_log(&lg, KC_LOG_DEBUG, "x", "hidden at -v 0");
    kc_log(&lg, KC_LOG_INFO, "x", "shown %d", 1);
    kc_stdlog_free(l);
    assert_int_equal(kc_stdlog_new(fds[1], KC_LOGFMT_JSON, 1, &l), 0);
    lg = kc_stdlog_logger(l);
    kc_log(&lg, KC_LOG_DEBUG, "x", "shown at -v 1");
    kc_log(&lg, KC_LOG_TRACE, "x", "hidden at -v 1");
    kc_stdlog_free(l);
    close(fds[1]);
    n = read(fds[0], got, sizeof(got) - 1);
    close(fds[0]);
    assert_true(n > 0);
    got[n] = '\0';
    assert_null(strstr(got, "hidden"));
    assert_non_null(strstr(got, "msg=\"shown 1\""));
    assert_non_null(strstr(got, "\"level\":\"debug\",\"logger\":\"x\",\"msg\":\"shown at -v 1\"}\n"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exposition_format),
        cmocka_unit_test(test_metrics_threads),
        cmocka_unit_test(test_http_servers),
        cmocka_unit_test(test_logger),
    };
    int rc;

    kc_global_init();
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    kc_global_cleanup();
    return rc;
}
