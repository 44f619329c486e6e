/*
 * The manager: what controller-runtime's Manager does.  kc_manager_run
 * serves /healthz, /readyz and /metrics, starts the shared informers, waits
 * for their caches, campaigns for the lease when leader election is on,
 * runs the controllers while leading, and on a stop request shuts down in
 * order: informers (no new events), controllers (running reconciles get a
 * bound), lease release (a standby takes over at once), servers.
 *
 * Threads: run() blocks its caller and sleeps on m->cond; the leader
 * elector's callbacks and request_stop wake it.  request_stop must be
 * async-signal-safe, so it only sets an atomic flag and writes one byte to
 * a pipe; a small thread turns that byte into a condition-variable signal.
 *
 * Locking: m->lock protects the event flags below it; never held while
 * starting or stopping components, logging or waiting for caches.
 */
#include "kc_controller.h"
#include "kc_informer.h"
#include "ctrl_int.h"

#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <unistd.h>

struct kc_manager {
    kc_manager_opts_t o;
    char *lease_ns, *lease_name, *identity;
    kc_controller_t **ctrls;
    size_t nctrls, capctrls;
    kc_httpserver_t *http;     /* run's thread only */
    atomic_int port[2];        /* bound ports, readable from any thread */
    kc_leader_t *le;
    atomic_int ready;
    atomic_int leading;
    atomic_int stop_flag;
    int pipe_fd[2];
    pthread_t pipe_thread;
    bool pipe_thread_started;

    pthread_mutex_t lock;
    /* protected by lock: */
    pthread_cond_t cond;
    bool ev_stop, ev_lead, ev_lost;
};

int kc_manager_new(const kc_manager_opts_t *o, kc_manager_t **out, kc_errbuf_t *eb)
{
    kc_manager_t *m;

    if (o == NULL || out == NULL || o->informers == NULL)
        return kc_errf(eb, -EINVAL, "manager: an informer factory is required");
    if (o->leader_elect && (o->leader.client == NULL || o->leader.lease_name == NULL ||
                            o->leader.lease_namespace == NULL))
        return kc_errf(eb, -EINVAL, "manager: leader election needs a client, lease namespace and name");
    m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -ENOMEM;
    m->o = *o;
    m->pipe_fd[0] = m->pipe_fd[1] = -1;
    ctrl_mutex_init(&m->lock);
    ctrl_cond_init(&m->cond);
    /* The address strings are only read during run, but copy the lease
     * strings that the elector keeps reading. */
    if (o->leader_elect) {
        m->lease_ns = strdup(o->leader.lease_namespace);
        m->lease_name = strdup(o->leader.lease_name);
        m->identity = o->leader.identity ? strdup(o->leader.identity) : NULL;
        if (m->lease_ns == NULL || m->lease_name == NULL ||
            (o->leader.identity && m->identity == NULL)) {
            kc_manager_free(m);
            return -ENOMEM;
        }
        m->o.leader.lease_namespace = m->lease_ns;
        m->o.leader.lease_name = m->lease_name;
        m->o.leader.identity = m->identity;
    }
    if (pipe2(m->pipe_fd, O_CLOEXEC | O_NONBLOCK) != 0) {
        int e = errno;
        kc_manager_free(m);
        return kc_errf(eb, -e, "manager: pipe: %s", strerror(e));
    }
    *out = m;
    return 0;
}

int kc_manager_add(kc_manager_t *m, kc_controller_t *c)
{
    if (m == NULL || c == NULL)
        return -EINVAL;
    if (m->nctrls == m->capctrls) {
        size_t nc = m->capctrls ? m->capctrls * 2 : 4;
        kc_controller_t **p = realloc(m->ctrls, nc * sizeof(*p));
        if (p == NULL)
            return -ENOMEM;
        m->ctrls = p;
        m->capctrls = nc;
    }
    m->ctrls[m->nctrls++] = c;
    return 0;
}

static void post(kc_manager_t *m, bool *flag)
{
    ctrl_lock(&m->lock);
    *flag = true;
    ctrl_cond_broadcast(&m->cond);
    ctrl_unlock(&m->lock);
}

static void on_started(void *ud)
{
    kc_manager_t *m = ud;
    post(m, &m->ev_lead);
}

static void on_stopped(void *ud)
{
    kc_manager_t *m = ud;
    post(m, &m->ev_lost);
}

void kc_manager_request_stop(kc_manager_t *m)
{
    char c = 1;
    ssize_t w;

    if (m == NULL)
        return;
    atomic_store(&m->stop_flag, 1);
    w = write(m->pipe_fd[1], &c, 1);
    (void)w;
}

/* Turns pipe bytes (from request_stop, maybe in a signal handler) into a
 * condition-variable wake-up. */
static void *pipe_main(void *arg)
{
    kc_manager_t *m = arg;
    struct pollfd p = { m->pipe_fd[0], POLLIN, 0 };
    char buf[16];

    for (;;) {
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            break;
        if (read(m->pipe_fd[0], buf, sizeof(buf)) > 0 || atomic_load(&m->stop_flag)) {
            post(m, &m->ev_stop);
            break;
        }
    }
    return NULL;
}

static bool ready_check(void *ud, char *why, size_t whysz)
{
    kc_manager_t *m = ud;

    if (atomic_load(&m->ready))
        return true;
    snprintf(why, whysz, "informer caches have not synced yet");
    return false;
}

bool kc_manager_ready(kc_manager_t *m)
{
    return m != NULL && atomic_load(&m->ready);
}

bool kc_manager_leading(kc_manager_t *m)
{
    return m != NULL && atomic_load(&m->leading);
}

int kc_manager_port(kc_manager_t *m, int which)
{
    if (m == NULL || which < 0 || which > 1)
        return 0;
    return atomic_load(&m->port[which]);
}

static void start_controllers(kc_manager_t *m)
{
    for (size_t i = 0; i < m->nctrls; i++) {
        int rc = kc_controller_start(m->ctrls[i]);
        if (rc != 0 && rc != KC_EBUSY)
            kc_log(&m->o.log, KC_LOG_ERROR, "manager", "starting controller %s: %s",
                   kc_controller_name(m->ctrls[i]), kc_strerror(rc));
    }
    atomic_store(&m->leading, 1);
}

int kc_manager_run(kc_manager_t *m, kc_errbuf_t *eb)
{
    kc_httpserver_opts_t ho = KC_HTTPSERVER_OPTS_INIT;
    uint64_t sync_deadline;
    bool synced = false, lead = false, lost = false;
    int rc = 0;

    if (m == NULL)
        return -EINVAL;
    if (pthread_create(&m->pipe_thread, NULL, pipe_main, m) != 0)
        return kc_errf(eb, -EAGAIN, "manager: cannot start a thread");
    m->pipe_thread_started = true;

    ho.metrics_addr = m->o.metrics_addr;
    ho.probe_addr = m->o.probe_addr;
    ho.metrics = m->o.metrics;
    ho.ready = ready_check;
    ho.ready_ud = m;
    ho.log = m->o.log;
    rc = kc_httpserver_start(&ho, &m->http, eb);
    if (rc != 0)
        goto out;
    atomic_store(&m->port[0], kc_httpserver_port(m->http, 0));
    atomic_store(&m->port[1], kc_httpserver_port(m->http, 1));
    kc_log(&m->o.log, KC_LOG_INFO, "manager", "serving metrics on port %d, probes on port %d",
           kc_httpserver_port(m->http, 0), kc_httpserver_port(m->http, 1));

    rc = kc_informer_factory_start(m->o.informers);
    if (rc != 0) {
        kc_errf(eb, rc, "manager: starting informers: %s", kc_strerror(rc));
        goto out;
    }

    if (m->o.leader_elect) {
        kc_leader_opts_t lo = m->o.leader;
        lo.on_started_leading = on_started;
        lo.on_stopped_leading = on_stopped;
        lo.ud = m;
        lo.metrics = m->o.metrics;
        if (lo.log.fn == NULL)
            lo.log = m->o.log;
        rc = kc_leader_start(&lo, &m->le, eb);
        if (rc != 0)
            goto out;
        kc_log(&m->o.log, KC_LOG_INFO, "manager", "campaigning for lease %s/%s as %s",
               lo.lease_namespace, lo.lease_name, kc_leader_identity(m->le));
    } else {
        lead = true;
    }

    /* Wait for caches, leadership and stop requests. */
    sync_deadline = m->o.sync_timeout_ns ? kc_now_ns() + m->o.sync_timeout_ns : 0;
    for (;;) {
        if (!synced) {
            int s = kc_informer_factory_wait_synced(m->o.informers, 100);
            if (s == 0) {
                synced = true;
                atomic_store(&m->ready, 1);
                kc_log(&m->o.log, KC_LOG_INFO, "manager", "caches synced");
            } else if (s != KC_ETIMEOUT) {
                rc = kc_errf(eb, s, "manager: waiting for caches: %s", kc_strerror(s));
                goto out;
            } else if (sync_deadline && kc_now_ns() > sync_deadline) {
                rc = kc_errf(eb, KC_ETIMEOUT, "manager: caches did not sync in time");
                goto out;
            }
        }
        if (synced && lead && !lost && !atomic_load(&m->leading)) {
            kc_log(&m->o.log, KC_LOG_INFO, "manager", "starting %zu controllers", m->nctrls);
            start_controllers(m);
        }
        ctrl_lock(&m->lock);
        if (synced && !m->ev_stop && !m->ev_lead && !m->ev_lost)
            ctrl_cond_wait(&m->cond, &m->lock);
        if (m->ev_lead) {
            lead = true;
            m->ev_lead = false;
        }
        if (m->ev_lost)
            lost = true;
        bool stop = m->ev_stop;
        ctrl_unlock(&m->lock);
        if (stop)
            break;
        if (lost) {
            atomic_store(&m->leading, 0);
            kc_log(&m->o.log, KC_LOG_ERROR, "manager", "leader election lost");
            rc = kc_errf(eb, KC_ESTOPPED, "leader election lost");
            break;
        }
    }

out:
    /* Orderly shutdown. */
    kc_log(&m->o.log, KC_LOG_INFO, "manager", "shutting down");
    /* A replica that lost the lease must stop reconciling before anything
     * else: another replica may already be leading. */
    if (lost)
        for (size_t i = 0; i < m->nctrls; i++)
            kc_controller_stop(m->ctrls[i], m->o.shutdown_timeout_ns);
    kc_informer_factory_stop(m->o.informers);
    for (size_t i = 0; i < m->nctrls; i++)
        kc_controller_stop(m->ctrls[i], m->o.shutdown_timeout_ns);
    atomic_store(&m->leading, 0);
    if (m->le != NULL) {
        if (lost)
            kc_leader_abandon(m->le);
        else
            kc_leader_stop(m->le);
        m->le = NULL;
    }
    atomic_store(&m->port[0], 0);
    atomic_store(&m->port[1], 0);
    kc_httpserver_stop(m->http);
    m->http = NULL;
    return rc;
}

void kc_manager_free(kc_manager_t *m)
{
    if (m == NULL)
        return;
    if (m->pipe_thread_started) {
        kc_manager_request_stop(m);
        pthread_join(m->pipe_thread, NULL);
    }
    for (size_t i = 0; i < m->nctrls; i++)
        kc_controller_free(m->ctrls[i]);
    free(m->ctrls);
    if (m->pipe_fd[0] >= 0)
        close(m->pipe_fd[0]);
    if (m->pipe_fd[1] >= 0)
        close(m->pipe_fd[1]);
    free(m->lease_ns);
    free(m->lease_name);
    free(m->identity);
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->lock);
    free(m);
}
