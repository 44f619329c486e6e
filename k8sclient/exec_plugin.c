/*
 * exec credential plugins (client.authentication.k8s.io/v1 and v1beta1):
 * run the configured command with its args and env plus
 * KUBERNETES_EXEC_INFO, read an ExecCredential from its stdout, and return
 * the token or client certificate/key with its expiry.
 *
 * The child gets stdin from /dev/null (kcache never runs plugins
 * interactively), its stdout is read up to 1 MiB, the first 1 KiB of its
 * stderr is kept for the error message.  A plugin that runs longer than the
 * timeout is killed.  Nothing here keeps state between runs: the caching
 * and the decision when to run again live in client.c.  The credential is
 * never logged; output buffers are wiped before they are freed.
 * Thread-safe: each call uses only its own pipes and buffers.
 */
#include "client_int.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define MAX_STDOUT (1u << 20)
#define MAX_STDERR 1024

void kc__exec_cred_free(kc__exec_cred_t *cr)
{
    kc__str_wipe(&cr->token);
    kc__blob_free(&cr->cert);
    kc__blob_wipe(&cr->key);
    cr->expires = 0;
}

static char *exec_info(const kc_config_t *cfg)
{
    cJSON *root = cJSON_CreateObject(), *spec, *cl;
    char *out = NULL, *ca = NULL;

    if (root == NULL)
        return NULL;
    if (!cJSON_AddStringToObject(root, "kind", "ExecCredential") ||
        !cJSON_AddStringToObject(root, "apiVersion", cfg->exec->api_version) ||
        (spec = cJSON_AddObjectToObject(root, "spec")) == NULL ||
        !cJSON_AddBoolToObject(spec, "interactive", 0))
        goto out;
    if (cfg->exec->provide_cluster_info) {
        if ((cl = cJSON_AddObjectToObject(spec, "cluster")) == NULL ||
            !cJSON_AddStringToObject(cl, "server", cfg->server))
            goto out;
        if (cfg->tls_server_name && !cJSON_AddStringToObject(cl, "tls-server-name",
                                                             cfg->tls_server_name))
            goto out;
        if (cfg->insecure && !cJSON_AddBoolToObject(cl, "insecure-skip-tls-verify", 1))
            goto out;
        if (cfg->ca.data) {
            if ((ca = kc__b64_encode(cfg->ca.data, cfg->ca.len)) == NULL ||
                !cJSON_AddStringToObject(cl, "certificate-authority-data", ca))
                goto out;
        }
        if (cfg->proxy_url && !cJSON_AddStringToObject(cl, "proxy-url", cfg->proxy_url))
            goto out;
        if (!cJSON_AddNullToObject(cl, "config"))
            goto out;
    }
    out = cJSON_PrintUnformatted(root);
out:
    free(ca);
    cJSON_Delete(root);
    return out;
}

/* environ + plugin env (overriding) + KUBERNETES_EXEC_INFO; strings owned
 * by the returned array where marked in owned[]. */
static char **build_env(const kc_config_t *cfg, const char *info, char ***owned, size_t *nowned)
{
    size_t n = 0, k = 0, o = 0;
    char **env, **own;

    while (environ[n])
        n++;
    env = calloc(n + cfg->exec->nenv + 2, sizeof(char *));
    own = calloc(cfg->exec->nenv + 2, sizeof(char *));
    if (env == NULL || own == NULL)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t nl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        int skip = strncmp(environ[i], "KUBERNETES_EXEC_INFO=", 21) == 0;
        for (size_t j = 0; j < cfg->exec->nenv && !skip; j++)
            if (strlen(cfg->exec->env[j].name) == nl &&
                strncmp(environ[i], cfg->exec->env[j].name, nl) == 0)
                skip = 1;
        if (!skip)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < cfg->exec->nenv; j++) {
        char *s;
        if (asprintf(&s, "%s=%s", cfg->exec->env[j].name, cfg->exec->env[j].value) < 0)
            goto fail;
        env[k++] = own[o++] = s;
    }
    {
        char *s;
        if (asprintf(&s, "KUBERNETES_EXEC_INFO=%s", info) < 0)
            goto fail;
        env[k++] = own[o++] = s;
    }
    *owned = own;
    *nowned = o;
    return env;
fail:
    if (own)
        for (size_t i = 0; i < o; i++)
            free(own[i]);
    free(own);
    free(env);
    return NULL;
}

static int parse_cred(const kc_config_t *cfg, const char *out, size_t len, kc__exec_cred_t *cr,
                      kc_errbuf_t *eb)
{
    const char *cmd = cfg->exec->command;
    cJSON *root = cJSON_ParseWithLength(out, len), *st, *v;
    const char *kind, *apiv;
    int rc = KC_EAUTH;

    if (root == NULL || !cJSON_IsObject(root)) {
        kc_errf(eb, KC_EAUTH, "exec plugin %s: output is not JSON (%zu bytes)", cmd, len);
        goto out;
    }
    kind = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "kind"));
    apiv = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(root, "apiVersion"));
    if (kind == NULL || strcmp(kind, "ExecCredential") != 0) {
        kc_errf(eb, KC_EAUTH, "exec plugin %s: output kind is not ExecCredential", cmd);
        goto out;
    }
    if (apiv == NULL || strcmp(apiv, cfg->exec->api_version) != 0) {
        kc_errf(eb, KC_EAUTH, "exec plugin %s: output apiVersion %s does not match %s", cmd,
                apiv ? apiv : "(none)", cfg->exec->api_version);
        goto out;
    }
    st = cJSON_GetObjectItemCaseSensitive(root, "status");
    if (!cJSON_IsObject(st)) {
        kc_errf(eb, KC_EAUTH, "exec plugin %s: ExecCredential without status", cmd);
        goto out;
    }
    v = cJSON_GetObjectItemCaseSensitive(st, "token");
    if (cJSON_IsString(v) && v->valuestring[0]) {
        if ((cr->token = strdup(v->valuestring)) == NULL) {
            rc = kc_errf(eb, -ENOMEM, "out of memory");
            goto out;
        }
    }
    {
        const char *crt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(st, "clientCertificateData"));
        const char *key = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(st, "clientKeyData"));
        if ((crt && crt[0]) != (key && key[0])) {
            kc_errf(eb, KC_EAUTH, "exec plugin %s: clientCertificateData and clientKeyData must "
                                  "be given together", cmd);
            goto out;
        }
        if (crt && crt[0]) {
            cr->cert.data = strdup(crt);
            cr->key.data = strdup(key);
            if (cr->cert.data == NULL || cr->key.data == NULL) {
                rc = kc_errf(eb, -ENOMEM, "out of memory");
                goto out;
            }
            cr->cert.len = strlen(crt);
            cr->key.len = strlen(key);
        }
    }
    if (cr->token == NULL && cr->cert.data == NULL) {
        kc_errf(eb, KC_EAUTH, "exec plugin %s: ExecCredential has neither token nor client "
                              "certificate", cmd);
        goto out;
    }
    v = cJSON_GetObjectItemCaseSensitive(st, "expirationTimestamp");
    if (cJSON_IsString(v)) {
        if (kc__parse_rfc3339(v->valuestring, &cr->expires) != 0) {
            kc_errf(eb, KC_EAUTH, "exec plugin %s: bad expirationTimestamp", cmd);
            goto out;
        }
    } else if (v != NULL && !cJSON_IsNull(v)) {
        kc_errf(eb, KC_EAUTH, "exec plugin %s: expirationTimestamp is not a string", cmd);
        goto out;
    }
    rc = 0;
out:
    if (root) {
        /* the tree holds the credential: wipe its strings */
        cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "status"), *it;
        if (cJSON_IsObject(s))
            cJSON_ArrayForEach(it, s)
                if (cJSON_IsString(it))
                    explicit_bzero(it->valuestring, strlen(it->valuestring));
        cJSON_Delete(root);
    }
    if (rc)
        kc__exec_cred_free(cr);
    return rc;
}

int kc__exec_run(const kc_config_t *cfg, long timeout_ms, kc__exec_cred_t *out,
                 kc_errbuf_t *eb)
{
    const char *cmd = cfg->exec->command;
    int opipe[2] = {-1, -1}, epipe[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    char **argv = NULL, **env = NULL, **owned = NULL, *info = NULL;
    size_t nowned = 0;
    kc__sb_t so, se;
    pid_t pid = -1;
    int rc, status = 0, fa_init = 0, timed_out = 0;
    uint64_t deadline;

    memset(out, 0, sizeof(*out));
    kc__sb_init(&so, MAX_STDOUT);
    kc__sb_init(&se, 0);
    if ((info = exec_info(cfg)) == NULL ||
        (env = build_env(cfg, info, &owned, &nowned)) == NULL ||
        (argv = calloc(cfg->exec->nargs + 2, sizeof(char *))) == NULL) {
        rc = kc_errf(eb, -ENOMEM, "out of memory");
        goto out;
    }
    argv[0] = cfg->exec->command;
    for (size_t i = 0; i < cfg->exec->nargs; i++)
        argv[i + 1] = cfg->exec->args[i];
    if (pipe2(opipe, O_CLOEXEC) != 0 || pipe2(epipe, O_CLOEXEC) != 0) {
        rc = kc_errf(eb, -errno, "exec plugin %s: pipe: %s", cmd, strerror(errno));
        goto out;
    }
    if ((rc = posix_spawn_file_actions_init(&fa)) != 0) {
        rc = kc_errf(eb, -rc, "exec plugin %s: %s", cmd, strerror(rc));
        goto out;
    }
    fa_init = 1;
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, opipe[1], 1);
    posix_spawn_file_actions_adddup2(&fa, epipe[1], 2);
    rc = posix_spawnp(&pid, cmd, &fa, NULL, argv, env);
    if (rc != 0) {
        pid = -1;
        rc = kc_errf(eb, KC_EAUTH, "exec plugin %s: cannot run: %s%s%.200s", cmd, strerror(rc),
                     cfg->exec->install_hint ? ". " : "",
                     cfg->exec->install_hint ? cfg->exec->install_hint : "");
        goto out;
    }
    close(opipe[1]);
    close(epipe[1]);
    opipe[1] = epipe[1] = -1;

    deadline = kc_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    while (opipe[0] >= 0 || epipe[0] >= 0) {
        struct pollfd pfd[2];
        int np = 0, left;
        uint64_t now = kc_now_ns();
        char buf[4096];

        if (now >= deadline) {
            timed_out = 1;
            break;
        }
        left = (int)((deadline - now) / 1000000ull) + 1;
        if (opipe[0] >= 0)
            pfd[np++] = (struct pollfd){.fd = opipe[0], .events = POLLIN};
        if (epipe[0] >= 0)
            pfd[np++] = (struct pollfd){.fd = epipe[0], .events = POLLIN};
        if (poll(pfd, (nfds_t)np, left) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int i = 0; i < np; i++) {
            ssize_t n;
            if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            n = read(pfd[i].fd, buf, sizeof(buf));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                close(pfd[i].fd);
                if (pfd[i].fd == opipe[0])
                    opipe[0] = -1;
                else
                    epipe[0] = -1;
                continue;
            }
            if (pfd[i].fd == opipe[0])
                kc__sb_add(&so, buf, (size_t)n);
            else if (se.len < MAX_STDERR)
                kc__sb_add(&se, buf, (size_t)n < MAX_STDERR - se.len ? (size_t)n
                                                                     : MAX_STDERR - se.len);
            explicit_bzero(buf, sizeof(buf));
        }
    }
    if (timed_out)
        kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    pid = -1;
    if (timed_out) {
        rc = kc_errf(eb, KC_EAUTH, "exec plugin %s: no answer within %ld ms, killed", cmd,
                     timeout_ms);
        goto out;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        size_t l = 0;
        while (se.p && l < se.len && se.p[l] != '\n')
            l++;
        if (WIFEXITED(status))
            rc = kc_errf(eb, KC_EAUTH, "exec plugin %s exited with status %d%s%.*s", cmd,
                         WEXITSTATUS(status), l ? ": " : "", (int)l, se.p ? se.p : "");
        else
            rc = kc_errf(eb, KC_EAUTH, "exec plugin %s killed by signal %d", cmd,
                         WTERMSIG(status));
        goto out;
    }
    if (so.err == KC_ETOOBIG) {
        rc = kc_errf(eb, KC_EAUTH, "exec plugin %s: output larger than %u bytes", cmd,
                     MAX_STDOUT);
        goto out;
    }
    if (so.err) {
        rc = kc_errf(eb, so.err, "out of memory");
        goto out;
    }
    rc = parse_cred(cfg, so.p ? so.p : "", so.len, out, eb);
out:
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    if (fa_init)
        posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 2; i++) {
        if (opipe[i] >= 0)
            close(opipe[i]);
        if (epipe[i] >= 0)
            close(epipe[i]);
    }
    if (so.p)
        explicit_bzero(so.p, so.cap);
    kc__sb_free(&so);
    kc__sb_free(&se);
    for (size_t i = 0; i < nowned; i++)
        free(owned[i]);
    free(owned);
    free(env);
    free(argv);
    free(info);
    return rc;
}
