/*
 * bench_server: not a benchmark but the API server run.sh measures against
 * (bench/README.md).  It is build/kcache-fakeapi's library
 * (tests/fakeapi/) with the options run.sh uses, plus the one thing the
 * program lacks: a one-shot churn burst on demand.  kcache-fakeapi's admin
 * endpoint only churns at a rate, and a rate high enough not to limit the
 * clients starves the server's own watch streams on a 2-core machine.
 * Here the whole burst of n changes is applied in one go on the server's
 * loop thread (one fa_call of the library's internal fa_load_churn), before
 * any of its events is streamed: the store, the history and every event's
 * bytes (each stored object keeps its rendered JSON) are ready before the
 * first event goes out, and each watcher's backlog is rendered into one
 * block (the same bytes, framed as the event-by-event pump frames them),
 * so from then on the server only hands slices of that block to the TLS
 * stream.  So the events/s a client measures (first to
 * last event it handled) is its own consumption rate, not the rate at
 * which this server makes changes (~5 us each on this machine, the same
 * order as a fast client's cost per event).  --no-prerender leaves the
 * backlog to the event-by-event pump (which copies each event's bytes out
 * of its object while streaming: ~0.2-0.3 us more of the server's CPU per
 * ConfigMap event, on the cores the client uses).  --churn-sliced restores
 * kc_fakeapi_churn's slices of 256 with the watchers fed in between, where
 * generation and streaming overlap.
 *
 *   bench_server --listen ADDR --kubeconfig-out PATH --preload N
 *                --load-resource configmaps|pods --history-window N
 *                --churn N
 *
 * Prints "ready URL" on stdout once serving.  SIGUSR1 applies a burst of N
 * changes (~75% create-or-update, 25% delete, over 100 names in each of the
 * 10 load namespaces: exactly N watch events); SIGTERM/SIGINT stop it.
 * Signals are taken with sigwait on the main thread, blocked before the
 * server's thread starts.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fakeapi.h"
#include "fakeapi_int.h"   /* fa_call, fa_load_churn: the burst in one go */

struct burst {
    const kc_fakeapi_load_t *l;
    size_t n;
    int prerender;
};

/* On the loop thread: every change of the burst, with no streaming in
 * between (fa_emit only schedules the watchers' pump), then each watcher's
 * backlog rendered into one block (fa_watch_prerender_all): the bytes the
 * pump would have copied event by event out of the stored objects while
 * streaming, so that streaming is the TLS writes alone. */
static int burst_fn(fa_server_t *s, void *arg)
{
    struct burst *b = arg;
    int rc = fa_load_churn(s, b->l, b->n);
    if (rc == 0 && b->prerender)
        fa_watch_prerender_all(s);
    return rc;
}

/* CPU seconds of the thread behind clock c (pthread_getcpuclockid); -1 if
 * unknown. */
static double thread_cpu(clockid_t c)
{
    struct timespec ts;

    if (c == (clockid_t)-1 || clock_gettime(c, &ts) != 0)
        return -1;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    kc_fakeapi_opts_t o = KC_FAKEAPI_OPTS_INIT;
    kc_fakeapi_load_t l = KC_FAKEAPI_LOAD_INIT;
    const char *kcout = NULL;
    long preload = 0, churn = 0;
    int sliced = 0, prerender = 1;
    kc_fakeapi_t *s = NULL;
    clockid_t loop_clock = (clockid_t)-1;
    double applied_cpu = -1;
    sigset_t set;
    int c, rc = 1;
    static const struct option opts[] = {
        { "listen", 1, 0, 'l' }, { "kubeconfig-out", 1, 0, 'k' }, { "preload", 1, 0, 'p' },
        { "load-resource", 1, 0, 'r' }, { "history-window", 1, 0, 'w' },
        { "churn", 1, 0, 'c' }, { "churn-sliced", 0, 0, 's' }, { "no-prerender", 0, 0, 'n' },
        { "help", 0, 0, 'h' },
        { 0, 0, 0, 0 }
    };

    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'l': o.listen = optarg; break;
        case 'k': kcout = optarg; break;
        case 'p': preload = strtol(optarg, NULL, 10); break;
        case 'r': l.resource = optarg; break;
        case 'w': o.history_window = strtoul(optarg, NULL, 10); break;
        case 'c': churn = strtol(optarg, NULL, 10); break;
        case 's': sliced = 1; break;
        case 'n': prerender = 0; break;
        case 'h':
            printf("usage: bench_server [--listen ADDR] [--kubeconfig-out PATH] [--preload N]\n"
                   "  [--load-resource configmaps|pods] [--history-window N] [--churn N]\n"
                   "  [--churn-sliced] [--no-prerender]\n"
                   "SIGUSR1: apply N changes at once; SIGTERM/SIGINT: stop.\n");
            return 0;
        default:
            return 2;
        }
    }
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if ((c = kc_fakeapi_new(&o, &s)) < 0) {
        fprintf(stderr, "bench_server: %s\n", kc_strerror(c));
        return 1;
    }
    if (preload > 0 && (c = kc_fakeapi_preload(s, &l, (size_t)preload)) < 0) {
        fprintf(stderr, "bench_server: preload: %s\n", kc_strerror(c));
        goto out;
    }
    if ((c = kc_fakeapi_start(s)) < 0) {
        fprintf(stderr, "bench_server: cannot listen on %s: %s\n", o.listen, kc_strerror(c));
        goto out;
    }
    if (kcout && (c = kc_fakeapi_write_kubeconfig(s, kcout, NULL)) < 0) {
        fprintf(stderr, "bench_server: %s: %s\n", kcout, kc_strerror(c));
        goto out;
    }
    if (pthread_getcpuclockid(((fa_server_t *)s)->thread, &loop_clock) != 0)
        loop_clock = (clockid_t)-1;
    printf("ready %s\n", kc_fakeapi_url(s));
    fflush(stdout);
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig != SIGUSR1) {
            if (applied_cpu >= 0 && churn > 0)
                fprintf(stderr, "bench_server: %.3f us of the loop thread's CPU per event after "
                        "the last burst was applied (streaming it)\n",
                        (thread_cpu(loop_clock) - applied_cpu) * 1e6 / (double)churn);
            break;
        }
        if (churn > 0) {
            uint64_t t0 = kc_now_ns();
            struct burst b = { &l, (size_t)churn, prerender };
            c = sliced ? kc_fakeapi_churn(s, &l, (size_t)churn)
                       : fa_call((fa_server_t *)s, burst_fn, &b);
            applied_cpu = thread_cpu(loop_clock);
            fprintf(stderr, "bench_server: churn of %ld: %s in %.3f s\n", churn,
                    c < 0 ? kc_strerror(c) : "done", (double)(kc_now_ns() - t0) / 1e9);
        }
    }
    rc = 0;
out:
    kc_fakeapi_free(s);
    return rc;
}
