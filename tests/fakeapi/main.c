/*
 * kcache-fakeapi: the fake Kubernetes API server as a program, for kubectl,
 * the Python client, `make run` and benchmarks.  Prints exactly one line
 * "ready https://127.0.0.1:PORT" on stdout once it accepts connections and
 * stops cleanly on SIGTERM or SIGINT.  Logs go to stderr.  Files it writes
 * (kubeconfig, CA) are mode 0600.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fakeapi.h"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: kcache-fakeapi [options]\n"
        "A fake Kubernetes API server (HTTPS, reports v1.32) for tests and benchmarks.\n"
        "Prints \"ready https://HOST:PORT\" on stdout when accepting; stops on SIGTERM/SIGINT.\n\n"
        "  --listen HOST:PORT          address to serve on (default 127.0.0.1:0, 0 = free port)\n"
        "  --kubeconfig-out PATH       write a kubeconfig (CA data + bearer token), mode 0600\n"
        "  --kubeconfig-user USER      ... with a client certificate for USER instead of the token\n"
        "  --ca-out PATH               write the CA certificate (PEM), mode 0600\n"
        "  --token TOKEN               bearer token of user \"admin\" (default: random)\n"
        "  --user-token USER=TOKEN     accept another token (repeatable)\n"
        "  --allow USER:VERB:RESOURCE  allow-list rule; a user with rules gets 403 otherwise\n"
        "                              (USER may contain colons: system:serviceaccount:NS:NAME)\n"
        "                              (repeatable; VERB/RESOURCE may be *)\n"
        "  --cert FILE --key FILE --ca FILE [--ca-key FILE]\n"
        "                              use these PEM files instead of generated ones\n"
        "  --seed N                    PRNG seed for faults, uids and load (default 1)\n"
        "  --bookmark-interval-ms N    BOOKMARK period for watches that allow them (default 60000)\n"
        "  --history-window N          watch events kept for replay (default 10000)\n"
        "  --continue-ttl N            continue tokens expire N revisions after their list\n"
        "                              (default 0: only when compacted out of the window)\n"
        "  --min-request-timeout N     watches without timeoutSeconds last N..2N s (default 1800)\n"
        "  --max-body BYTES            request body limit (default 3 MiB)\n"
        "  --namespace-delete-delay-ms N  a deleted namespace stays Terminating N ms, then its\n"
        "                              contents are deleted and it is removed (default 0)\n"
        "  --no-namespace-controller   deleted namespaces stay Terminating (like a bare\n"
        "                              kube-apiserver without kube-controller-manager)\n"
        "Load:\n"
        "  --preload N                 create N generated objects at start\n"
        "  --load-resource R           configmaps (~1 KB, default) or pods (~5 KB)\n"
        "  --load-namespaces N         spread over namespaces load-0..load-N-1 (default 10)\n"
        "  --load-names N              distinct names per namespace (default: N/namespaces)\n"
        "  --load-object-bytes N       approximate object size\n"
        "  --churn-rate OPS            creates/updates/deletes per second in the background\n"
        "Faults (resource requests only; also settable at runtime by POST\n"
        "/fakeapi/admin/faults with a JSON object of the same names, admin token):\n"
        "  --p-429 P --retry-after S   share of requests answered 429 (plain text, Retry-After)\n"
        "  --p-500 P --p-503 P         shares answered 500 / 503 Status\n"
        "  --max-http-faults N         stop 429/500/503 after N of them\n"
        "  --delay-ms N --p-delay P    delay this share of requests by N ms\n"
        "  --close-watch-after N       end every watch stream after N events\n"
        "  --p-close-watch P           per event: end the stream after it\n"
        "  --stall-ms N --p-stall P    per event: stall the stream N ms (no bytes)\n"
        "  --p-cut P                   per event: send half of it and drop the connection\n"
        "Admin endpoint (admin token): GET /fakeapi/admin/counters; POST /fakeapi/admin/\n"
        "  faults | compact | restart | close-watches | churn?rate=OPS&resource=R\n"
        "  -v, --verbose               log every request to stderr\n"
        "  -h, --help                  this text\n");
}

static void log_stderr(void *ud, kc_log_level_t level, const char *comp, const char *msg)
{
    static const char *names[] = {"error", "warn", "info", "debug", "trace"};
    (void)ud;
    fprintf(stderr, "%s: %s: %s\n", comp, names[level], msg);
}

static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return (*end || errno) ? -1 : 0;
}

static int parse_long(const char *s, long *out)
{
    char *end;
    errno = 0;
    *out = strtol(s, &end, 10);
    return (*end || errno || *out < 0) ? -1 : 0;
}

enum {
    O_LISTEN = 256, O_KCOUT, O_KCUSER, O_CAOUT, O_TOKEN, O_USERTOKEN, O_ALLOW, O_CERT, O_KEY,
    O_CA, O_CAKEY, O_SEED, O_BM, O_HIST, O_CTTL, O_MRT, O_MAXBODY, O_PRELOAD, O_LRES, O_LNS,
    O_LNAMES, O_LBYTES, O_CHURN, O_P429, O_RA, O_P500, O_P503, O_MAXF, O_DELAY, O_PDELAY,
    O_CLOSEN, O_PCLOSE, O_STALL, O_PSTALL, O_PCUT, O_NSDELAY, O_NONSCTL
};

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"listen", 1, 0, O_LISTEN}, {"kubeconfig-out", 1, 0, O_KCOUT},
        {"kubeconfig-user", 1, 0, O_KCUSER}, {"ca-out", 1, 0, O_CAOUT}, {"token", 1, 0, O_TOKEN},
        {"user-token", 1, 0, O_USERTOKEN}, {"allow", 1, 0, O_ALLOW}, {"cert", 1, 0, O_CERT},
        {"key", 1, 0, O_KEY}, {"ca", 1, 0, O_CA}, {"ca-key", 1, 0, O_CAKEY}, {"seed", 1, 0, O_SEED},
        {"bookmark-interval-ms", 1, 0, O_BM}, {"history-window", 1, 0, O_HIST},
        {"namespace-delete-delay-ms", 1, 0, O_NSDELAY}, {"no-namespace-controller", 0, 0, O_NONSCTL},
        {"continue-ttl", 1, 0, O_CTTL}, {"min-request-timeout", 1, 0, O_MRT},
        {"max-body", 1, 0, O_MAXBODY}, {"preload", 1, 0, O_PRELOAD},
        {"load-resource", 1, 0, O_LRES}, {"load-namespaces", 1, 0, O_LNS},
        {"load-names", 1, 0, O_LNAMES}, {"load-object-bytes", 1, 0, O_LBYTES},
        {"churn-rate", 1, 0, O_CHURN}, {"p-429", 1, 0, O_P429}, {"retry-after", 1, 0, O_RA},
        {"p-500", 1, 0, O_P500}, {"p-503", 1, 0, O_P503}, {"max-http-faults", 1, 0, O_MAXF},
        {"delay-ms", 1, 0, O_DELAY}, {"p-delay", 1, 0, O_PDELAY},
        {"close-watch-after", 1, 0, O_CLOSEN}, {"p-close-watch", 1, 0, O_PCLOSE},
        {"stall-ms", 1, 0, O_STALL}, {"p-stall", 1, 0, O_PSTALL}, {"p-cut", 1, 0, O_PCUT},
        {"verbose", 0, 0, 'v'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    kc_fakeapi_opts_t o = KC_FAKEAPI_OPTS_INIT;
    kc_fakeapi_faults_t f = KC_FAKEAPI_FAULTS_INIT;
    kc_fakeapi_load_t l = KC_FAKEAPI_LOAD_INIT;
    const char *kcout = NULL, *kcuser = NULL, *caout = NULL;
    const char *utok[32], *allow[64];
    int nutok = 0, nallow = 0, faults = 0, c, rc = 1;
    long preload = 0, n;
    double churn = 0, d;
    kc_fakeapi_t *s = NULL;
    sigset_t set;

    o.log.fn = log_stderr;
    o.log.level = KC_LOG_WARN;
    while ((c = getopt_long(argc, argv, "vh", lo, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case O_LISTEN: o.listen = optarg; break;
        case O_KCOUT: kcout = optarg; break;
        case O_KCUSER: kcuser = optarg; break;
        case O_CAOUT: caout = optarg; break;
        case O_TOKEN: o.token = optarg; break;
        case O_USERTOKEN: if (nutok < 32) utok[nutok++] = optarg; break;
        case O_ALLOW: if (nallow < 64) allow[nallow++] = optarg; break;
        case O_CERT: o.cert_file = optarg; break;
        case O_KEY: o.key_file = optarg; break;
        case O_CA: o.ca_file = optarg; break;
        case O_CAKEY: o.ca_key_file = optarg; break;
        case O_SEED: bad = parse_long(optarg, &n); o.seed = (uint64_t)n; break;
        case O_BM: bad = parse_long(optarg, &n); o.bookmark_interval_ms = (int)n; break;
        case O_HIST: bad = parse_long(optarg, &n); o.history_window = (size_t)n; break;
        case O_NSDELAY: bad = parse_long(optarg, &n); o.ns_delete_delay_ms = (int)n; break;
        case O_NONSCTL: o.ns_delete_delay_ms = -1; break;
        case O_CTTL: bad = parse_long(optarg, &n); o.continue_ttl_revisions = n; break;
        case O_MRT: bad = parse_long(optarg, &n); o.min_request_timeout_s = (int)n; break;
        case O_MAXBODY: bad = parse_long(optarg, &n); o.max_body = (size_t)n; break;
        case O_PRELOAD: bad = parse_long(optarg, &preload); break;
        case O_LRES: l.resource = optarg; break;
        case O_LNS: bad = parse_long(optarg, &n); l.namespaces = (size_t)n; break;
        case O_LNAMES: bad = parse_long(optarg, &n); l.names = (size_t)n; break;
        case O_LBYTES: bad = parse_long(optarg, &n); l.object_bytes = (size_t)n; break;
        case O_CHURN: bad = parse_double(optarg, &churn); break;
        case O_P429: bad = parse_double(optarg, &f.p_429); faults = 1; break;
        case O_RA: bad = parse_long(optarg, &n); f.retry_after_s = (int)n; break;
        case O_P500: bad = parse_double(optarg, &f.p_500); faults = 1; break;
        case O_P503: bad = parse_double(optarg, &f.p_503); faults = 1; break;
        case O_MAXF: bad = parse_long(optarg, &f.max_http_faults); break;
        case O_DELAY: bad = parse_long(optarg, &n); f.delay_ms = (int)n; faults = 1; break;
        case O_PDELAY: bad = parse_double(optarg, &f.p_delay); faults = 1; break;
        case O_CLOSEN: bad = parse_long(optarg, &f.close_watch_after_events); faults = 1; break;
        case O_PCLOSE: bad = parse_double(optarg, &f.p_close_watch); faults = 1; break;
        case O_STALL: bad = parse_long(optarg, &n); f.stall_ms = (int)n; faults = 1; break;
        case O_PSTALL: bad = parse_double(optarg, &f.p_stall); faults = 1; break;
        case O_PCUT: bad = parse_double(optarg, &f.p_cut_mid_event); faults = 1; break;
        case 'v': o.log.level = KC_LOG_DEBUG; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "kcache-fakeapi: bad value for an option: %s\n", optarg);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    (void)d;

    /* signals are taken by sigwait below; block them before threads start */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if ((c = kc_fakeapi_new(&o, &s)) < 0) {
        fprintf(stderr, "kcache-fakeapi: %s\n", kc_strerror(c));
        return 1;
    }
    for (int i = 0; i < nutok; i++) {
        char *eq = strchr(utok[i], '=');
        if (!eq) {
            fprintf(stderr, "kcache-fakeapi: --user-token wants USER=TOKEN\n");
            goto out;
        }
        *eq = 0;
        kc_fakeapi_add_token(s, eq + 1, utok[i]);
    }
    for (int i = 0; i < nallow; i++) {
        /* Split at the LAST two colons: user names may hold colons
         * ("system:serviceaccount:ns:name"); verbs and resources never do. */
        char *a = allow[i] ? strdup(allow[i]) : NULL, *c1 = NULL, *c2 = NULL;
        if (a && (c2 = strrchr(a, ':')) != NULL) {
            *c2 = 0;
            c1 = strrchr(a, ':');
        }
        int ok = a && c1 && c1 != a && c1[1] != 0 && c2[1] != 0;
        if (ok) {
            *c1 = 0;
            ok = kc_fakeapi_set_allow(s, a, c1 + 1, c2 + 1) == 0;
        }
        if (!ok) {
            fprintf(stderr, "kcache-fakeapi: --allow wants USER:VERB:RESOURCE, got \"%s\"\n",
                    allow[i] ? allow[i] : "");
            free(a);
            goto out;
        }
        free(a);
    }
    if (faults)
        kc_fakeapi_set_faults(s, &f);
    if (preload > 0 && (c = kc_fakeapi_preload(s, &l, (size_t)preload)) < 0) {
        fprintf(stderr, "kcache-fakeapi: preload: %s\n", kc_strerror(c));
        goto out;
    }
    if ((c = kc_fakeapi_start(s)) < 0) {
        fprintf(stderr, "kcache-fakeapi: cannot listen on %s: %s\n", o.listen, kc_strerror(c));
        goto out;
    }
    if (kcout && (c = kc_fakeapi_write_kubeconfig(s, kcout, kcuser)) < 0) {
        fprintf(stderr, "kcache-fakeapi: %s: %s\n", kcout, kc_strerror(c));
        goto out;
    }
    if (caout && (c = kc_fakeapi_write_ca(s, caout)) < 0) {
        fprintf(stderr, "kcache-fakeapi: %s: %s\n", caout, kc_strerror(c));
        goto out;
    }
    if (churn > 0)
        kc_fakeapi_set_churn_rate(s, &l, churn);
    printf("ready %s\n", kc_fakeapi_url(s));
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    rc = 0;
out:
    kc_fakeapi_free(s);
    return rc;
}
