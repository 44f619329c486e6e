/*
 * Leader election on a coordination.k8s.io/v1 Lease, following client-go's
 * tools/leaderelection (tryAcquireOrRenew) with its defaults: lease 15 s,
 * renew deadline 10 s, retry period 2 s.
 *
 * One elector thread does all the work.  It campaigns (get; create if
 * missing; otherwise take over only when the lease it last observed has not
 * changed for leaseDurationSeconds by the LOCAL monotonic clock, so clock
 * skew between replicas does not matter), and once leading it renews every
 * retry period with a PUT carrying the last seen resourceVersion (a 409
 * means someone else wrote the lease: the next round re-reads it).  A
 * leader whose renewals have failed for the whole renew deadline, or that
 * reads the lease and finds another holder, stops leading at once and
 * campaigns again.  On stop it may release the lease
 * (holderIdentity "", leaseDurationSeconds 1), as client-go's
 * ReleaseOnCancel does, so a standby takes over within one retry period.
 *
 * Locking: le->lock protects the fields marked below; it is never held
 * during a request, JSON work, logging or a callback.  The observed record
 * and the lease body are touched by the elector thread only (and by stop
 * after the thread was joined).
 */
#include "kc_controller.h"
#include "kc_client.h"
#include "ctrl_int.h"

#include <cjson/cJSON.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

typedef struct record {
    char *holder;
    long duration_s;
    char *acquire_time;
    char *renew_time;
    long transitions;
} record_t;

struct kc_leader {
    kc_client_t *client;
    char *ns, *name, *identity;
    uint64_t lease_ns, renew_ns, retry_ns;
    bool release;
    kc_leader_cb started, stopped;
    kc_leader_new_cb new_leader;
    void *ud;
    kc_metric_t *m_status;
    kc_logger_t log;
    pthread_t thread;

    /* elector thread only: */
    cJSON *lease;             /* last lease object read or written */
    record_t observed;        /* its spec */
    char *observed_rv;        /* its resourceVersion (compared for equality) */
    uint64_t observed_ns;     /* local time when the record last changed */
    char *last_leader;        /* for on_new_leader */

    pthread_mutex_t lock;
    /* protected by lock: */
    pthread_cond_t cond;      /* stop requested */
    bool stop;
    bool leading;
    uint64_t renewed_ns;      /* last successful acquire/renew */
};

static void record_clear(record_t *r)
{
    free(r->holder);
    free(r->acquire_time);
    free(r->renew_time);
    memset(r, 0, sizeof(*r));
}

static void micro_time(char *dst, size_t n)
{
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(dst, n, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             ts.tv_nsec / 1000);
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

/* Read the spec of a Lease object into r and its resourceVersion into *rv. */
static int parse_lease(const cJSON *lease, record_t *r, char **rv)
{
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(lease, "metadata");
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(lease, "spec");
    const cJSON *v;

    memset(r, 0, sizeof(*r));
    v = cJSON_GetObjectItemCaseSensitive(md, "resourceVersion");
    *rv = dup_or_empty(cJSON_IsString(v) ? v->valuestring : "");
    v = cJSON_GetObjectItemCaseSensitive(spec, "holderIdentity");
    r->holder = dup_or_empty(cJSON_IsString(v) ? v->valuestring : "");
    v = cJSON_GetObjectItemCaseSensitive(spec, "leaseDurationSeconds");
    r->duration_s = cJSON_IsNumber(v) ? (long)v->valuedouble : 0;
    v = cJSON_GetObjectItemCaseSensitive(spec, "acquireTime");
    r->acquire_time = dup_or_empty(cJSON_IsString(v) ? v->valuestring : "");
    v = cJSON_GetObjectItemCaseSensitive(spec, "renewTime");
    r->renew_time = dup_or_empty(cJSON_IsString(v) ? v->valuestring : "");
    v = cJSON_GetObjectItemCaseSensitive(spec, "leaseTransitions");
    r->transitions = cJSON_IsNumber(v) ? (long)v->valuedouble : 0;
    if (*rv == NULL || r->holder == NULL || r->acquire_time == NULL || r->renew_time == NULL) {
        free(*rv);
        *rv = NULL;
        record_clear(r);
        return -ENOMEM;
    }
    return 0;
}

/* Put spec r into a copy of base (or a fresh Lease when base is NULL). */
static char *build_lease(kc_leader_t *le, const cJSON *base, const record_t *r)
{
    cJSON *o = base ? cJSON_Duplicate(base, 1) : cJSON_CreateObject();
    cJSON *spec, *md;
    char *out = NULL;

    if (o == NULL)
        return NULL;
    if (base == NULL) {
        cJSON_AddStringToObject(o, "apiVersion", "coordination.k8s.io/v1");
        cJSON_AddStringToObject(o, "kind", "Lease");
        md = cJSON_AddObjectToObject(o, "metadata");
        if (md == NULL)
            goto done;
        cJSON_AddStringToObject(md, "name", le->name);
        cJSON_AddStringToObject(md, "namespace", le->ns);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(o, "spec");
    spec = cJSON_AddObjectToObject(o, "spec");
    if (spec == NULL)
        goto done;
    cJSON_AddStringToObject(spec, "holderIdentity", r->holder);
    cJSON_AddNumberToObject(spec, "leaseDurationSeconds", (double)r->duration_s);
    cJSON_AddStringToObject(spec, "acquireTime", r->acquire_time);
    cJSON_AddStringToObject(spec, "renewTime", r->renew_time);
    cJSON_AddNumberToObject(spec, "leaseTransitions", (double)r->transitions);
    out = cJSON_PrintUnformatted(o);
done:
    cJSON_Delete(o);
    return out;
}

/* Adopt the server's answer (the stored lease) as the observed record. */
static int adopt(kc_leader_t *le, const char *body, size_t len, bool changed_now)
{
    cJSON *lease = cJSON_ParseWithLength(body, len);
    record_t r;
    char *rv = NULL;

    if (lease == NULL)
        return KC_EPARSE;
    if (parse_lease(lease, &r, &rv) != 0) {
        cJSON_Delete(lease);
        return -ENOMEM;
    }
    if (changed_now || le->observed_rv == NULL || strcmp(rv, le->observed_rv) != 0)
        le->observed_ns = kc_now_ns();
    cJSON_Delete(le->lease);
    le->lease = lease;
    record_clear(&le->observed);
    le->observed = r;
    free(le->observed_rv);
    le->observed_rv = rv;
    return 0;
}

static bool observed_is_me(kc_leader_t *le)
{
    return le->observed.holder != NULL && strcmp(le->observed.holder, le->identity) == 0;
}

static bool lease_valid(kc_leader_t *le, uint64_t now)
{
    return le->observed_ns + (uint64_t)le->observed.duration_s * 1000000000ull > now;
}

/* client-go's tryAcquireOrRenew.  Returns true when we hold the lease. */
static bool try_acquire_or_renew(kc_leader_t *le)
{
    kc_buf_t body = KC_BUF_INIT;
    kc_status_t st;
    record_t want;
    char now_s[96];
    char *json = NULL;
    uint64_t now = kc_now_ns();
    bool ok = false;
    int rc;

    micro_time(now_s, sizeof(now_s));
    memset(&want, 0, sizeof(want));
    want.holder = le->identity;
    want.duration_s = (long)(le->lease_ns / 1000000000ull);
    want.acquire_time = now_s;
    want.renew_time = now_s;

    /* Fast path: we lead and our record is still valid: renew blindly with
     * the resourceVersion we last wrote. */
    if (le->lease != NULL && observed_is_me(le) && lease_valid(le, now)) {
        want.acquire_time = le->observed.acquire_time;
        want.transitions = le->observed.transitions;
        json = build_lease(le, le->lease, &want);
        if (json == NULL)
            goto out;
        rc = kc_client_update(le->client, &kc_res_leases, le->ns, le->name, json,
                              strlen(json), &body, &st);
        free(json);
        json = NULL;
        if (rc == 0 && adopt(le, body.data, body.len, true) == 0) {
            ok = true;
            goto out;
        }
        kc_log(&le->log, KC_LOG_DEBUG, "leader",
               "lease %s/%s: optimistic renew failed (%s), falling back to get",
               le->ns, le->name, kc_strerror(rc));
        want.acquire_time = now_s;
        want.transitions = 0;
    }

    rc = kc_client_get(le->client, &kc_res_leases, le->ns, le->name, &body, &st);
    if (rc == KC_ENOTFOUND) {
        json = build_lease(le, NULL, &want);
        if (json == NULL)
            goto out;
        rc = kc_client_create(le->client, &kc_res_leases, le->ns, json, strlen(json), &body, &st);
        if (rc != 0) {
            kc_log(&le->log, KC_LOG_INFO, "leader", "lease %s/%s: create failed: %s",
                   le->ns, le->name, kc_strerror(rc));
            goto out;
        }
        ok = adopt(le, body.data, body.len, true) == 0;
        goto out;
    }
    if (rc != 0) {
        kc_log(&le->log, KC_LOG_WARN, "leader", "lease %s/%s: get failed: %s", le->ns,
               le->name, kc_strerror(rc));
        goto out;
    }
    if (adopt(le, body.data, body.len, false) != 0)
        goto out;
    now = kc_now_ns();
    if (le->observed.holder[0] != '\0' && lease_valid(le, now) && !observed_is_me(le)) {
        kc_log(&le->log, KC_LOG_DEBUG, "leader", "lease %s/%s is held by %s and has not yet expired",
               le->ns, le->name, le->observed.holder);
        goto out;
    }
    if (observed_is_me(le)) {
        want.acquire_time = le->observed.acquire_time;
        want.transitions = le->observed.transitions;
    } else {
        want.transitions = le->observed.transitions + 1;
    }
    json = build_lease(le, le->lease, &want);
    if (json == NULL)
        goto out;
    rc = kc_client_update(le->client, &kc_res_leases, le->ns, le->name, json, strlen(json),
                          &body, &st);
    if (rc != 0) {
        kc_log(&le->log, rc == KC_ECONFLICT ? KC_LOG_DEBUG : KC_LOG_WARN, "leader",
               "lease %s/%s: update failed: %s", le->ns, le->name, kc_strerror(rc));
        goto out;
    }
    ok = adopt(le, body.data, body.len, true) == 0;
out:
    free(json);
    kc_buf_free(&body);
    return ok;
}

static void notify_holder(kc_leader_t *le)
{
    const char *h = le->observed.holder;

    if (h == NULL || h[0] == '\0')
        return;
    if (le->last_leader != NULL && strcmp(le->last_leader, h) == 0)
        return;
    free(le->last_leader);
    le->last_leader = strdup(h);
    kc_log(&le->log, KC_LOG_INFO, "leader", "lease %s/%s: new leader %s", le->ns, le->name, h);
    if (le->new_leader)
        le->new_leader(le->ud, h);
}

static void set_status(kc_leader_t *le, double v)
{
    kc_metric_set(le->m_status, (const char *const[]){ le->name }, v);
}

/* Sleep until deadline or stop; returns true when stop was requested. */
static bool sleep_until(kc_leader_t *le, uint64_t deadline)
{
    bool stop;

    ctrl_lock(&le->lock);
    while (!le->stop && kc_now_ns() < deadline)
        ctrl_cond_timedwait(&le->cond, &le->lock, deadline);
    stop = le->stop;
    ctrl_unlock(&le->lock);
    return stop;
}

static uint64_t jittered(uint64_t d)
{
    unsigned r = 0;

    if (getrandom(&r, sizeof(r), 0) != sizeof(r))
        r = (unsigned)kc_now_ns();
    return d + (uint64_t)((double)d * 1.2 * ((double)(r % 10000) / 10000.0));
}

static void *elector_main(void *arg)
{
    kc_leader_t *le = arg;

    for (;;) {
        /* campaign */
        for (;;) {
            bool got = try_acquire_or_renew(le);
            notify_holder(le);
            if (got)
                break;
            if (sleep_until(le, kc_now_ns() + jittered(le->retry_ns)))
                return NULL;
        }
        ctrl_lock(&le->lock);
        if (le->stop) {
            /* we hold the lease but are told to stop: stop() releases it */
            le->leading = true;
            le->renewed_ns = kc_now_ns();
            ctrl_unlock(&le->lock);
            return NULL;
        }
        le->leading = true;
        le->renewed_ns = kc_now_ns();
        ctrl_unlock(&le->lock);
        set_status(le, 1);
        kc_log(&le->log, KC_LOG_INFO, "leader", "lease %s/%s: acquired as %s", le->ns,
               le->name, le->identity);
        if (le->started)
            le->started(le->ud);

        /* renew */
        for (;;) {
            uint64_t deadline;
            bool renewed = false;

            /* The deadline counts from the last successful renewal, as
             * kc_leader_is_leader does. */
            ctrl_lock(&le->lock);
            deadline = le->renewed_ns + le->renew_ns;
            ctrl_unlock(&le->lock);
            while (kc_now_ns() < deadline) {
                uint64_t attempt = kc_now_ns();
                if (try_acquire_or_renew(le)) {
                    renewed = true;
                    break;
                }
                /* Someone else holds the lease now (we saw it): there is
                 * nothing to wait for, stop leading at once. */
                if (le->observed.holder != NULL && le->observed.holder[0] != '\0' &&
                    !observed_is_me(le))
                    break;
                if (sleep_until(le, attempt + le->retry_ns))
                    return NULL; /* stop(): still leading, it releases */
            }
            if (!renewed)
                break;
            ctrl_lock(&le->lock);
            le->renewed_ns = kc_now_ns();
            ctrl_unlock(&le->lock);
            if (sleep_until(le, kc_now_ns() + le->retry_ns))
                return NULL;
        }

        ctrl_lock(&le->lock);
        le->leading = false;
        ctrl_unlock(&le->lock);
        set_status(le, 0);
        kc_log(&le->log, KC_LOG_ERROR, "leader",
               "lease %s/%s: failed to renew within %.1f s: stopped leading", le->ns,
               le->name, (double)le->renew_ns / 1e9);
        if (le->stopped)
            le->stopped(le->ud);
        free(le->last_leader);
        le->last_leader = NULL;
    }
}

static char *default_identity(void)
{
    char host[256] = "";
    const char *pod = getenv("POD_NAME");
    unsigned char rnd[8];
    char *out;
    size_t n;

    if (pod == NULL || *pod == '\0') {
        if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
            snprintf(host, sizeof(host), "kcache");
        pod = host;
    }
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        uint64_t t = kc_now_ns() ^ (uint64_t)getpid();
        memcpy(rnd, &t, sizeof(rnd));
    }
    n = strlen(pod) + 1 + 16 + 1;
    out = malloc(n);
    if (out == NULL)
        return NULL;
    snprintf(out, n, "%s_%02x%02x%02x%02x%02x%02x%02x%02x", pod, rnd[0], rnd[1], rnd[2],
             rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    return out;
}

static void leader_free(kc_leader_t *le)
{
    free(le->ns);
    free(le->name);
    free(le->identity);
    free(le->observed_rv);
    free(le->last_leader);
    record_clear(&le->observed);
    cJSON_Delete(le->lease);
    pthread_cond_destroy(&le->cond);
    pthread_mutex_destroy(&le->lock);
    free(le);
}

int kc_leader_start(const kc_leader_opts_t *o, kc_leader_t **out, kc_errbuf_t *eb)
{
    kc_leader_t *le;
    int rc;

    if (o == NULL || out == NULL || o->client == NULL || o->lease_namespace == NULL ||
        o->lease_name == NULL || o->lease_name[0] == '\0' || o->lease_namespace[0] == '\0')
        return kc_errf(eb, -EINVAL, "leader election: client, lease namespace and name are required");
    if (!(o->lease_duration_ns > o->renew_deadline_ns) ||
        !((double)o->renew_deadline_ns > 1.2 * (double)o->retry_period_ns) ||
        o->retry_period_ns == 0 || o->lease_duration_ns < 1000000000ull)
        return kc_errf(eb, -EINVAL,
                       "leader election: need lease duration (>= 1 s) > renew deadline > 1.2 x retry period");
    le = calloc(1, sizeof(*le));
    if (le == NULL)
        return -ENOMEM;
    ctrl_mutex_init(&le->lock);
    ctrl_cond_init(&le->cond);
    le->client = o->client;
    le->ns = strdup(o->lease_namespace);
    le->name = strdup(o->lease_name);
    le->identity = o->identity ? strdup(o->identity) : default_identity();
    if (le->ns == NULL || le->name == NULL || le->identity == NULL) {
        leader_free(le);
        return -ENOMEM;
    }
    le->lease_ns = o->lease_duration_ns;
    le->renew_ns = o->renew_deadline_ns;
    le->retry_ns = o->retry_period_ns;
    le->release = o->release_on_stop;
    le->started = o->on_started_leading;
    le->stopped = o->on_stopped_leading;
    le->new_leader = o->on_new_leader;
    le->ud = o->ud;
    le->log = o->log;
    if (o->metrics != NULL) {
        rc = kc_metrics_gauge(o->metrics, "leader_election_master_status",
                              "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease. Please make sure to group by name.",
                              (const char *const[]){ "name", NULL }, &le->m_status);
        if (rc != 0) {
            leader_free(le);
            return kc_errf(eb, rc, "leader election: metric registration failed");
        }
        set_status(le, 0);
    }
    rc = pthread_create(&le->thread, NULL, elector_main, le);
    if (rc != 0) {
        leader_free(le);
        return kc_errf(eb, -rc, "leader election: pthread_create: %s", strerror(rc));
    }
    *out = le;
    return 0;
}

bool kc_leader_is_leader(kc_leader_t *le)
{
    bool l;

    if (le == NULL)
        return false;
    ctrl_lock(&le->lock);
    l = le->leading && kc_now_ns() < le->renewed_ns + le->renew_ns;
    ctrl_unlock(&le->lock);
    return l;
}

const char *kc_leader_identity(kc_leader_t *le)
{
    return le ? le->identity : NULL;
}

/* client-go's release(): keep transitions, holder "", duration 1 s. */
static void release_lease(kc_leader_t *le)
{
    kc_buf_t body = KC_BUF_INIT;
    kc_status_t st;
    record_t r;
    char now_s[96];
    char *json;
    int rc;

    if (le->lease == NULL || !observed_is_me(le))
        return;
    micro_time(now_s, sizeof(now_s));
    memset(&r, 0, sizeof(r));
    r.holder = "";
    r.duration_s = 1;
    r.acquire_time = now_s;
    r.renew_time = now_s;
    r.transitions = le->observed.transitions;
    json = build_lease(le, le->lease, &r);
    if (json == NULL)
        return;
    rc = kc_client_update(le->client, &kc_res_leases, le->ns, le->name, json, strlen(json),
                          &body, &st);
    if (rc == 0)
        kc_log(&le->log, KC_LOG_INFO, "leader", "lease %s/%s: released", le->ns, le->name);
    else
        kc_log(&le->log, KC_LOG_WARN, "leader", "lease %s/%s: release failed: %s", le->ns,
               le->name, kc_strerror(rc));
    free(json);
    kc_buf_free(&body);
}

static void stop_common(kc_leader_t *le, bool release)
{
    bool was;

    if (le == NULL)
        return;
    ctrl_lock(&le->lock);
    le->stop = true;
    ctrl_cond_broadcast(&le->cond);
    ctrl_unlock(&le->lock);
    pthread_join(le->thread, NULL);
    ctrl_lock(&le->lock);
    was = le->leading;
    le->leading = false;
    ctrl_unlock(&le->lock);
    if (was) {
        set_status(le, 0);
        if (release)
            release_lease(le);
        if (le->stopped)
            le->stopped(le->ud);
    }
    leader_free(le);
}

void kc_leader_stop(kc_leader_t *le)
{
    if (le != NULL)
        stop_common(le, le->release);
}

void kc_leader_abandon(kc_leader_t *le)
{
    stop_common(le, false);
}
