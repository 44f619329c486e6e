/*
 * Private cross-file declarations of k8sclient/: the resolved configuration
 * (shared by config.c, which fills it, and client.c, which copies it), the
 * credential helpers (auth.c), and small byte helpers (util.c).
 */
#ifndef KC_CLIENT_INT_H
#define KC_CLIENT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "kc_client.h"

#define KC__COMPONENT "k8sclient"

/* A byte blob owned by its holder (PEM data, never NUL-terminated required;
 * data is NUL-terminated anyway for convenience). */
typedef struct kc__blob {
    char *data;
    size_t len;
} kc__blob_t;

typedef struct kc__exec_env {
    char *name;
    char *value;
} kc__exec_env_t;

/* exec credential plugin as configured. */
typedef struct kc__exec {
    char *api_version;     /* client.authentication.k8s.io/v1 or v1beta1 */
    char *command;         /* resolved: relative paths with '/' against the kubeconfig dir */
    char **args;           /* NULL-terminated */
    size_t nargs;
    kc__exec_env_t *env;
    size_t nenv;
    int provide_cluster_info;
    char *install_hint;    /* shown when the command cannot be run */
} kc__exec_t;

struct kc_config {
    char *server;          /* no trailing '/' */
    char *namespace_;
    char *context;
    char *source;          /* "kubeconfig /path" or "in-cluster" for messages */
    int in_cluster;

    kc__blob_t ca;         /* PEM bundle; empty: system roots */
    int insecure;
    char *tls_server_name;
    char *proxy_url;
    int disable_compression;

    kc__blob_t client_cert; /* PEM */
    kc__blob_t client_key;  /* PEM */
    char *token;
    char *token_file;
    char *username;
    char *password;
    kc__exec_t *exec;      /* NULL: no plugin */
};

/* Deep copy (for kc_client_new).  Returns NULL on ENOMEM. */
kc_config_t *kc__config_dup(const kc_config_t *cfg);

/* ---- growable string with a cap ---- */
typedef struct kc__sb {
    char *p;
    size_t len;
    size_t cap;
    size_t max;    /* 0: unlimited (only for internally bounded data) */
    int err;       /* sticky: -ENOMEM or KC_ETOOBIG */
} kc__sb_t;

void kc__sb_init(kc__sb_t *sb, size_t max);
void kc__sb_free(kc__sb_t *sb);
int kc__sb_add(kc__sb_t *sb, const char *s, size_t n);
int kc__sb_adds(kc__sb_t *sb, const char *s);
int kc__sb_addf(kc__sb_t *sb, const char *fmt, ...) KC_PRINTF(2, 3);
/* percent-encode for a URL query value or path segment */
int kc__sb_add_escaped(kc__sb_t *sb, const char *s);

/* ---- misc helpers ---- */
/* Standard base64 (RFC 4648, padding optional, whitespace ignored).
 * Returns 0 and a new NUL-terminated buffer, -EINVAL on bad input. */
int kc__b64_decode(const char *in, size_t n, kc__blob_t *out);
/* Returns a new NUL-terminated string or NULL. */
char *kc__b64_encode(const char *in, size_t n);
/* Read a whole file (regular, at most max bytes).  0, -errno, KC_ETOOBIG. */
int kc__read_file(const char *path, size_t max, kc__blob_t *out);
void kc__blob_free(kc__blob_t *b);
/* Overwrite with zeros and free: for tokens and keys. */
void kc__blob_wipe(kc__blob_t *b);
void kc__str_wipe(char **s);
char *kc__strdup0(const char *s);  /* strdup(NULL) -> NULL */
/* bounded copy, always NUL-terminates */
void kc__strlcpy(char *dst, const char *src, size_t cap);
/* Parse RFC 3339 ("2006-01-02T15:04:05Z", fractional seconds and offsets
 * accepted) into seconds since the epoch; -EINVAL when malformed. */
int kc__parse_rfc3339(const char *s, double *out);

/* ---- credentials (auth.c) ---- */
typedef struct kc__exec_cred {
    char *token;
    kc__blob_t cert;
    kc__blob_t key;
    double expires;        /* wall-clock seconds; 0: never */
} kc__exec_cred_t;

/* Run the plugin once and read its ExecCredential.  Returns 0, KC_EAUTH
 * (message in eb: exit status, first stderr line, or what was wrong with the
 * output), -ENOMEM.  Thread-safe (no shared state); blocks up to
 * timeout_ms. */
int kc__exec_run(const kc_config_t *cfg, long timeout_ms, kc__exec_cred_t *out,
                 kc_errbuf_t *eb);
void kc__exec_cred_free(kc__exec_cred_t *cr);

#endif
