/*
 * Client configuration, resolved as kubectl resolves it: an explicit
 * kubeconfig file alone; else $KUBECONFIG (':'-separated files merged, the
 * first file to set a map entry or current-context wins, missing files
 * skipped); else in-cluster (service-account directory); else
 * ~/.kube/config.
 *
 * kubeconfig files are parsed with libyaml's document API.  All documents
 * stay loaded until resolution finishes, so merged entries are pointers to
 * nodes of their own document together with the directory their relative
 * paths resolve against.  Fields this code does not implement are reported
 * as KC_EUNSUPPORTED naming the field, never ignored (only "extensions"
 * and "preferences" are knowingly ignored).
 *
 * The resulting kc_config_t is immutable and holds everything by value
 * (PEM data read from files, decoded *-data fields); token files and exec
 * plugins are consulted later by the client, because their output changes.
 * Secrets held here (token, password, key) are wiped when freed and never
 * appear in messages.  No shared state: kc_config_load is thread-safe.
 */
#include "client_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#define MAX_KUBECONFIG_FILES 64
#define MAX_PEM_FILE (1u << 20)
#define MAX_KUBECONFIG_SIZE (16u << 20)
#define DEFAULT_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

typedef struct kfile {
    char *path;
    char *dir;
    yaml_document_t doc;
    int loaded;
} kfile_t;

typedef struct named {
    const char *name;
    yaml_node_t *node;   /* the inner mapping ("cluster:", "user:", "context:") */
    size_t file;
} named_t;

typedef struct named_list {
    named_t *v;
    size_t n, cap;
} named_list_t;

typedef struct loader {
    kfile_t files[MAX_KUBECONFIG_FILES];
    size_t nfiles;
    named_list_t clusters, users, contexts;
    const char *current_context;
    const kc_logger_t *log;
    kc_errbuf_t *eb;
} loader_t;

/* ------------------------------------------------------------------ */

static void exec_free(kc__exec_t *ex)
{
    if (ex == NULL)
        return;
    free(ex->api_version);
    free(ex->command);
    free(ex->install_hint);
    for (size_t i = 0; i < ex->nargs; i++)
        free(ex->args[i]);
    free(ex->args);
    for (size_t i = 0; i < ex->nenv; i++) {
        free(ex->env[i].name);
        kc__str_wipe(&ex->env[i].value);
    }
    free(ex->env);
    free(ex);
}

void kc_config_free(kc_config_t *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->server);
    free(cfg->namespace_);
    free(cfg->context);
    free(cfg->source);
    kc__blob_free(&cfg->ca);
    free(cfg->tls_server_name);
    free(cfg->proxy_url);
    kc__blob_free(&cfg->client_cert);
    kc__blob_wipe(&cfg->client_key);
    kc__str_wipe(&cfg->token);
    free(cfg->token_file);
    free(cfg->username);
    kc__str_wipe(&cfg->password);
    exec_free(cfg->exec);
    free(cfg);
}

const char *kc_config_server(const kc_config_t *cfg)
{
    return cfg->server;
}

const char *kc_config_namespace(const kc_config_t *cfg)
{
    return cfg->namespace_ && cfg->namespace_[0] ? cfg->namespace_ : "default";
}

const char *kc_config_context(const kc_config_t *cfg)
{
    return cfg->context ? cfg->context : "";
}

int kc_config_is_in_cluster(const kc_config_t *cfg)
{
    return cfg->in_cluster;
}

static int blob_dup(kc__blob_t *dst, const kc__blob_t *src)
{
    dst->data = NULL;
    dst->len = 0;
    if (src->data == NULL)
        return 0;
    dst->data = malloc(src->len + 1);
    if (dst->data == NULL)
        return -ENOMEM;
    memcpy(dst->data, src->data, src->len);
    dst->data[src->len] = '\0';
    dst->len = src->len;
    return 0;
}

#define DUPSTR(field)                                                         \
    do {                                                                      \
        if (src->field && (dst->field = strdup(src->field)) == NULL)          \
            goto fail;                                                        \
    } while (0)

static kc__exec_t *exec_dup(const kc__exec_t *src)
{
    kc__exec_t *dst = calloc(1, sizeof(*dst));

    if (dst == NULL)
        return NULL;
    DUPSTR(api_version);
    DUPSTR(command);
    DUPSTR(install_hint);
    dst->provide_cluster_info = src->provide_cluster_info;
    dst->args = calloc(src->nargs + 1, sizeof(char *));
    if (dst->args == NULL)
        goto fail;
    for (; dst->nargs < src->nargs; dst->nargs++)
        if ((dst->args[dst->nargs] = strdup(src->args[dst->nargs])) == NULL)
            goto fail;
    if (src->nenv) {
        dst->env = calloc(src->nenv, sizeof(*dst->env));
        if (dst->env == NULL)
            goto fail;
        for (; dst->nenv < src->nenv; dst->nenv++) {
            kc__exec_env_t *e = &dst->env[dst->nenv];
            e->name = strdup(src->env[dst->nenv].name);
            e->value = strdup(src->env[dst->nenv].value);
            if (e->name == NULL || e->value == NULL) {
                dst->nenv++;
                goto fail;
            }
        }
    }
    return dst;
fail:
    exec_free(dst);
    return NULL;
}

kc_config_t *kc__config_dup(const kc_config_t *src)
{
    kc_config_t *dst = calloc(1, sizeof(*dst));

    if (dst == NULL)
        return NULL;
    DUPSTR(server);
    DUPSTR(namespace_);
    DUPSTR(context);
    DUPSTR(source);
    dst->in_cluster = src->in_cluster;
    dst->insecure = src->insecure;
    dst->disable_compression = src->disable_compression;
    if (blob_dup(&dst->ca, &src->ca) || blob_dup(&dst->client_cert, &src->client_cert) ||
        blob_dup(&dst->client_key, &src->client_key))
        goto fail;
    DUPSTR(tls_server_name);
    DUPSTR(proxy_url);
    DUPSTR(token);
    DUPSTR(token_file);
    DUPSTR(username);
    DUPSTR(password);
    if (src->exec && (dst->exec = exec_dup(src->exec)) == NULL)
        goto fail;
    return dst;
fail:
    kc_config_free(dst);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* YAML helpers                                                         */

static const char *scalar(yaml_node_t *n)
{
    if (n == NULL || n->type != YAML_SCALAR_NODE)
        return NULL;
    return (const char *)n->data.scalar.value;
}

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
    yaml_node_pair_t *p;

    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const char *k = scalar(yaml_document_get_node(doc, p->key));
        if (k && strcmp(k, key) == 0)
            return yaml_document_get_node(doc, p->value);
    }
    return NULL;
}

static int is_null_node(yaml_node_t *n)
{
    const char *s = scalar(n);

    return n == NULL || (s && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                         (strcmp(s, "") == 0 || strcmp(s, "null") == 0 || strcmp(s, "~") == 0));
}

/* Store a new string in *dst (NULL nv: out of memory).  A key given twice
 * in one mapping replaces the earlier value, as in kubectl, instead of
 * leaking it; the old value is wiped (it may be a token or password). */
static int dup_into(char **dst, char *nv)
{
    if (nv == NULL)
        return -ENOMEM;
    kc__str_wipe(dst);
    *dst = nv;
    return 0;
}

static int parse_bool(const char *s, int *out)
{
    if (s == NULL)
        return -EINVAL;
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) {
        *out = 1;
        return 0;
    }
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) {
        *out = 0;
        return 0;
    }
    return -EINVAL;
}

static int named_add(loader_t *ld, named_list_t *l, const char *name, yaml_node_t *node,
                     size_t file)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].name, name) == 0)
            return 0;   /* first file to set a key wins */
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 8;
        named_t *nv = realloc(l->v, ncap * sizeof(*nv));
        if (nv == NULL)
            return kc_errf(ld->eb, -ENOMEM, "out of memory");
        l->v = nv;
        l->cap = ncap;
    }
    l->v[l->n].name = name;
    l->v[l->n].node = node;
    l->v[l->n].file = file;
    l->n++;
    return 0;
}

static const named_t *named_find(const named_list_t *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].name, name) == 0)
            return &l->v[i];
    return NULL;
}

static int load_section(loader_t *ld, size_t fi, yaml_node_t *seq, const char *section,
                        const char *inner, named_list_t *l)
{
    kfile_t *f = &ld->files[fi];
    yaml_node_item_t *it;

    if (is_null_node(seq))
        return 0;
    if (seq->type != YAML_SEQUENCE_NODE)
        return kc_errf(ld->eb, KC_ECONFIG, "kubeconfig %s: \"%s\" is not a list", f->path,
                       section);
    for (it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
        yaml_node_t *ent = yaml_document_get_node(&f->doc, *it);
        const char *name = scalar(map_get(&f->doc, ent, "name"));
        yaml_node_t *body = map_get(&f->doc, ent, inner);
        int rc;

        if (name == NULL || name[0] == '\0')
            return kc_errf(ld->eb, KC_ECONFIG, "kubeconfig %s: entry of \"%s\" without a name",
                           f->path, section);
        if (body != NULL && body->type != YAML_MAPPING_NODE && !is_null_node(body))
            return kc_errf(ld->eb, KC_ECONFIG, "kubeconfig %s: %s \"%s\": \"%s\" is not a map",
                           f->path, section, name, inner);
        if ((rc = named_add(ld, l, name, body, fi)) != 0)
            return rc;
    }
    return 0;
}

static int load_file(loader_t *ld, const char *path, int must_exist)
{
    kfile_t *f;
    kc__blob_t data = {0};
    yaml_parser_t parser;
    yaml_node_t *root;
    const char *slash;
    int rc;

    if (ld->nfiles == MAX_KUBECONFIG_FILES)
        return kc_errf(ld->eb, KC_ECONFIG, "too many kubeconfig files (max %d)",
                       MAX_KUBECONFIG_FILES);
    rc = kc__read_file(path, MAX_KUBECONFIG_SIZE, &data);
    if (rc == -ENOENT && !must_exist)
        return 0;
    if (rc)
        return kc_errf(ld->eb, rc == -ENOENT || rc == -ENOMEM ? rc : KC_ECONFIG,
                       "kubeconfig %s: %s", path, kc_strerror(rc));
    f = &ld->files[ld->nfiles];
    memset(f, 0, sizeof(*f));
    f->path = strdup(path);
    slash = strrchr(path, '/');
    f->dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
    if (f->path == NULL || f->dir == NULL) {
        free(f->path);
        free(f->dir);
        kc__blob_wipe(&data);
        return kc_errf(ld->eb, -ENOMEM, "out of memory");
    }
    ld->nfiles++;

    if (!yaml_parser_initialize(&parser)) {
        kc__blob_wipe(&data);
        return kc_errf(ld->eb, -ENOMEM, "out of memory");
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)data.data, data.len);
    if (!yaml_parser_load(&parser, &f->doc)) {
        /* libyaml reports every syntax error with a problem text; some of
         * its allocation failures leave error unset and problem NULL */
        if (parser.error == YAML_MEMORY_ERROR || parser.problem == NULL)
            rc = kc_errf(ld->eb, -ENOMEM, "out of memory");
        else
            rc = kc_errf(ld->eb, KC_ECONFIG, "kubeconfig %s: line %zu: %s", path,
                     parser.problem_mark.line + 1,
                     parser.problem ? parser.problem : "invalid YAML");
        yaml_parser_delete(&parser);
        kc__blob_wipe(&data);
        return rc;
    }
    f->loaded = 1;
    yaml_parser_delete(&parser);
    kc__blob_wipe(&data);

    root = yaml_document_get_root_node(&f->doc);
    if (root == NULL || is_null_node(root))
        return 0;   /* empty file */
    if (root->type != YAML_MAPPING_NODE)
        return kc_errf(ld->eb, KC_ECONFIG, "kubeconfig %s: top level is not a map", path);
    if ((rc = load_section(ld, ld->nfiles - 1, map_get(&f->doc, root, "clusters"), "clusters",
                           "cluster", &ld->clusters)) ||
        (rc = load_section(ld, ld->nfiles - 1, map_get(&f->doc, root, "users"), "users", "user",
                           &ld->users)) ||
        (rc = load_section(ld, ld->nfiles - 1, map_get(&f->doc, root, "contexts"), "contexts",
                           "context", &ld->contexts)))
        return rc;
    if (ld->current_context == NULL) {
        const char *cc = scalar(map_get(&f->doc, root, "current-context"));
        if (cc && cc[0])
            ld->current_context = cc;
    }
    return 0;
}

static void loader_free(loader_t *ld)
{
    for (size_t i = 0; i < ld->nfiles; i++) {
        if (ld->files[i].loaded)
            yaml_document_delete(&ld->files[i].doc);
        free(ld->files[i].path);
        free(ld->files[i].dir);
    }
    free(ld->clusters.v);
    free(ld->users.v);
    free(ld->contexts.v);
}

/* path relative to the directory of the file that named it */
static char *resolve_path(const loader_t *ld, size_t fi, const char *p)
{
    char *out;

    if (p[0] == '/')
        return strdup(p);
    if (asprintf(&out, "%s/%s", ld->files[fi].dir, p) < 0)
        return NULL;
    return out;
}

static int read_pem(loader_t *ld, size_t fi, const char *what, const char *name,
                    const char *path, kc__blob_t *out)
{
    char *full = resolve_path(ld, fi, path);
    int rc;

    if (full == NULL)
        return kc_errf(ld->eb, -ENOMEM, "out of memory");
    rc = kc__read_file(full, MAX_PEM_FILE, out);
    if (rc)
        rc = kc_errf(ld->eb, rc == -ENOMEM ? rc : KC_ECONFIG, "kubeconfig %s: %s \"%s\": %s: %s",
                     ld->files[fi].path, what, name, full, kc_strerror(rc));
    free(full);
    return rc;
}

static int decode_data(loader_t *ld, size_t fi, const char *what, const char *name,
                       const char *field, const char *b64, kc__blob_t *out)
{
    int rc = kc__b64_decode(b64, strlen(b64), out);

    if (rc == -EINVAL)
        return kc_errf(ld->eb, KC_ECONFIG, "kubeconfig %s: %s \"%s\": %s is not valid base64",
                       ld->files[fi].path, what, name, field);
    if (rc)
        return kc_errf(ld->eb, rc, "out of memory");
    return 0;
}

#define FIELD_IS(k) (strcmp(key, (k)) == 0)

static int resolve_cluster(loader_t *ld, const named_t *cl, kc_config_t *cfg)
{
    kfile_t *f = &ld->files[cl->file];
    yaml_node_pair_t *p;
    const char *ca_file = NULL, *ca_data = NULL;
    int rc;

    if (cl->node == NULL || cl->node->type != YAML_MAPPING_NODE)
        return kc_errf(ld->eb, KC_ECONFIG, "kubeconfig %s: cluster \"%s\" is empty", f->path,
                       cl->name);
    for (p = cl->node->data.mapping.pairs.start; p < cl->node->data.mapping.pairs.top; p++) {
        const char *key = scalar(yaml_document_get_node(&f->doc, p->key));
        yaml_node_t *vn = yaml_document_get_node(&f->doc, p->value);
        const char *v = scalar(vn);

        if (key == NULL)
            continue;
        if (FIELD_IS("extensions"))
            continue;
        if (is_null_node(vn))
            continue;
        if (FIELD_IS("disable-compression")) {
            if (parse_bool(v, &cfg->disable_compression))
                return kc_errf(ld->eb, KC_ECONFIG,
                               "kubeconfig %s: cluster \"%s\": disable-compression: not a boolean",
                               f->path, cl->name);
            continue;
        }
        if (v == NULL)
            return kc_errf(ld->eb, KC_ECONFIG, "kubeconfig %s: cluster \"%s\": %s is not a string",
                           f->path, cl->name, key);
        if (FIELD_IS("server")) {
            if (dup_into(&cfg->server, strdup(v)) != 0)
                return -ENOMEM;
        } else if (FIELD_IS("certificate-authority")) {
            ca_file = v;
        } else if (FIELD_IS("certificate-authority-data")) {
            ca_data = v;
        } else if (FIELD_IS("insecure-skip-tls-verify")) {
            if (parse_bool(v, &cfg->insecure))
                return kc_errf(ld->eb, KC_ECONFIG,
                               "kubeconfig %s: cluster \"%s\": insecure-skip-tls-verify: "
                               "not a boolean", f->path, cl->name);
        } else if (FIELD_IS("tls-server-name")) {
            if (dup_into(&cfg->tls_server_name, strdup(v)) != 0)
                return -ENOMEM;
        } else if (FIELD_IS("proxy-url")) {
            if (dup_into(&cfg->proxy_url, strdup(v)) != 0)
                return -ENOMEM;
        } else {
            return kc_errf(ld->eb, KC_EUNSUPPORTED,
                           "kubeconfig %s: cluster \"%s\": field \"%s\" is not supported",
                           f->path, cl->name, key);
        }
    }
    if (cfg->server == NULL || cfg->server[0] == '\0')
        return kc_errf(ld->eb, KC_ECONFIG, "kubeconfig %s: cluster \"%s\" has no server", f->path,
                       cl->name);
    if (strncmp(cfg->server, "https://", 8) != 0 && strncmp(cfg->server, "http://", 7) != 0)
        return kc_errf(ld->eb, KC_ECONFIG,
                       "kubeconfig %s: cluster \"%s\": server \"%s\" is not an http(s) URL",
                       f->path, cl->name, cfg->server);
    if (ca_data) {
        if ((rc = decode_data(ld, cl->file, "cluster", cl->name, "certificate-authority-data",
                              ca_data, &cfg->ca)))
            return rc;
    } else if (ca_file) {
        if ((rc = read_pem(ld, cl->file, "cluster", cl->name, ca_file, &cfg->ca)))
            return rc;
    }
    if (cfg->insecure && cfg->ca.data)
        return kc_errf(ld->eb, KC_ECONFIG,
                       "kubeconfig %s: cluster \"%s\": certificate-authority together with "
                       "insecure-skip-tls-verify is not allowed", f->path, cl->name);
    return 0;
}

static int resolve_exec(loader_t *ld, const named_t *us, yaml_node_t *ex, kc_config_t *cfg)
{
    kfile_t *f = &ld->files[us->file];
    kc__exec_t *e;
    yaml_node_pair_t *p;

    if (ex->type != YAML_MAPPING_NODE)
        return kc_errf(ld->eb, KC_ECONFIG, "kubeconfig %s: user \"%s\": exec is not a map",
                       f->path, us->name);
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -ENOMEM;
    cfg->exec = e;
    for (p = ex->data.mapping.pairs.start; p < ex->data.mapping.pairs.top; p++) {
        const char *key = scalar(yaml_document_get_node(&f->doc, p->key));
        yaml_node_t *vn = yaml_document_get_node(&f->doc, p->value);
        const char *v = scalar(vn);

        if (key == NULL || is_null_node(vn))
            continue;
        if (FIELD_IS("apiVersion")) {
            if (v == NULL || (strcmp(v, "client.authentication.k8s.io/v1") != 0 &&
                              strcmp(v, "client.authentication.k8s.io/v1beta1") != 0))
                return kc_errf(ld->eb, KC_EUNSUPPORTED,
                               "kubeconfig %s: user \"%s\": exec apiVersion \"%s\" is not "
                               "supported (use client.authentication.k8s.io/v1 or v1beta1)",
                               f->path, us->name, v ? v : "?");
            if (dup_into(&e->api_version, strdup(v)) != 0)
                return -ENOMEM;
        } else if (FIELD_IS("command")) {
            if (v == NULL)
                goto bad_type;
            kc__str_wipe(&e->command); /* a repeated key: the last one wins */
            if (strchr(v, '/') && v[0] != '/')
                e->command = resolve_path(ld, us->file, v);
            else
                e->command = strdup(v);
            if (e->command == NULL)
                return -ENOMEM;
        } else if (FIELD_IS("args")) {
            yaml_node_item_t *it;
            size_t n;
            if (vn->type != YAML_SEQUENCE_NODE)
                goto bad_type;
            n = (size_t)(vn->data.sequence.items.top - vn->data.sequence.items.start);
            e->args = calloc(n + 1, sizeof(char *));
            if (e->args == NULL)
                return -ENOMEM;
            for (it = vn->data.sequence.items.start; it < vn->data.sequence.items.top; it++) {
                const char *a = scalar(yaml_document_get_node(&f->doc, *it));
                if (a == NULL)
                    goto bad_type;
                if ((e->args[e->nargs] = strdup(a)) == NULL)
                    return -ENOMEM;
                e->nargs++;
            }
        } else if (FIELD_IS("env")) {
            yaml_node_item_t *it;
            size_t n;
            if (vn->type != YAML_SEQUENCE_NODE)
                goto bad_type;
            n = (size_t)(vn->data.sequence.items.top - vn->data.sequence.items.start);
            e->env = calloc(n ? n : 1, sizeof(*e->env));
            if (e->env == NULL)
                return -ENOMEM;
            for (it = vn->data.sequence.items.start; it < vn->data.sequence.items.top; it++) {
                yaml_node_t *en = yaml_document_get_node(&f->doc, *it);
                const char *nm = scalar(map_get(&f->doc, en, "name"));
                const char *val = scalar(map_get(&f->doc, en, "value"));
                if (nm == NULL || val == NULL)
                    return kc_errf(ld->eb, KC_ECONFIG,
                                   "kubeconfig %s: user \"%s\": exec env entry needs name and "
                                   "value", f->path, us->name);
                e->env[e->nenv].name = strdup(nm);
                e->env[e->nenv].value = strdup(val);
                e->nenv++;
                if (e->env[e->nenv - 1].name == NULL || e->env[e->nenv - 1].value == NULL)
                    return -ENOMEM;
            }
        } else if (FIELD_IS("provideClusterInfo")) {
            if (parse_bool(v, &e->provide_cluster_info))
                goto bad_type;
        } else if (FIELD_IS("interactiveMode")) {
            if (v == NULL)
                goto bad_type;
            if (strcmp(v, "Always") == 0)
                return kc_errf(ld->eb, KC_EUNSUPPORTED,
                               "kubeconfig %s: user \"%s\": exec interactiveMode \"Always\" is "
                               "not supported (kcache never runs plugins interactively)",
                               f->path, us->name);
        } else if (FIELD_IS("installHint")) {
            if (v == NULL)
                goto bad_type;
            if (dup_into(&e->install_hint, strdup(v)) != 0)
                return -ENOMEM;
        } else {
            return kc_errf(ld->eb, KC_EUNSUPPORTED,
                           "kubeconfig %s: user \"%s\": exec field \"%s\" is not supported",
                           f->path, us->name, key);
        }
        continue;
bad_type:
        return kc_errf(ld->eb, KC_ECONFIG, "kubeconfig %s: user \"%s\": exec %s has the wrong type",
                       f->path, us->name, key);
    }
    if (e->command == NULL || e->command[0] == '\0')
        return kc_errf(ld->eb, KC_ECONFIG, "kubeconfig %s: user \"%s\": exec without command",
                       f->path, us->name);
    if (e->api_version == NULL)
        return kc_errf(ld->eb, KC_ECONFIG, "kubeconfig %s: user \"%s\": exec without apiVersion",
                       f->path, us->name);
    if (e->args == NULL && (e->args = calloc(1, sizeof(char *))) == NULL)
        return -ENOMEM;
    return 0;
}

static int resolve_user(loader_t *ld, const named_t *us, kc_config_t *cfg)
{
    kfile_t *f = &ld->files[us->file];
    yaml_node_pair_t *p;
    const char *cert_file = NULL, *cert_data = NULL, *key_file = NULL, *key_data = NULL;
    int rc;

    if (us->node == NULL || us->node->type != YAML_MAPPING_NODE)
        return 0;   /* a user with no credentials */
    for (p = us->node->data.mapping.pairs.start; p < us->node->data.mapping.pairs.top; p++) {
        const char *key = scalar(yaml_document_get_node(&f->doc, p->key));
        yaml_node_t *vn = yaml_document_get_node(&f->doc, p->value);
        const char *v = scalar(vn);

        if (key == NULL || FIELD_IS("extensions"))
            continue;
        if (is_null_node(vn))
            continue;
        if (FIELD_IS("exec")) {
            if ((rc = resolve_exec(ld, us, vn, cfg)))
                return rc;
            continue;
        }
        if (!(FIELD_IS("token") || FIELD_IS("tokenFile") || FIELD_IS("client-certificate") ||
              FIELD_IS("client-certificate-data") || FIELD_IS("client-key") ||
              FIELD_IS("client-key-data") || FIELD_IS("username") || FIELD_IS("password")))
            return kc_errf(ld->eb, KC_EUNSUPPORTED,
                           "kubeconfig %s: user \"%s\": field \"%s\" is not supported", f->path,
                           us->name, key);
        if (v == NULL)
            return kc_errf(ld->eb, KC_ECONFIG, "kubeconfig %s: user \"%s\": %s is not a string",
                           f->path, us->name, key);
        if (FIELD_IS("token")) {
            if (dup_into(&cfg->token, strdup(v)) != 0)
                return -ENOMEM;
        } else if (FIELD_IS("tokenFile")) {
            if (dup_into(&cfg->token_file, resolve_path(ld, us->file, v)) != 0)
                return -ENOMEM;
        } else if (FIELD_IS("client-certificate")) {
            cert_file = v;
        } else if (FIELD_IS("client-certificate-data")) {
            cert_data = v;
        } else if (FIELD_IS("client-key")) {
            key_file = v;
        } else if (FIELD_IS("client-key-data")) {
            key_data = v;
        } else if (FIELD_IS("username")) {
            if (dup_into(&cfg->username, strdup(v)) != 0)
                return -ENOMEM;
        } else if (FIELD_IS("password")) {
            if (dup_into(&cfg->password, strdup(v)) != 0)
                return -ENOMEM;
        }
    }
    if (cert_data)
        rc = decode_data(ld, us->file, "user", us->name, "client-certificate-data", cert_data,
                         &cfg->client_cert);
    else if (cert_file)
        rc = read_pem(ld, us->file, "user", us->name, cert_file, &cfg->client_cert);
    else
        rc = 0;
    if (rc)
        return rc;
    if (key_data)
        rc = decode_data(ld, us->file, "user", us->name, "client-key-data", key_data,
                         &cfg->client_key);
    else if (key_file)
        rc = read_pem(ld, us->file, "user", us->name, key_file, &cfg->client_key);
    if (rc)
        return rc;
    if ((cfg->client_cert.data == NULL) != (cfg->client_key.data == NULL))
        return kc_errf(ld->eb, KC_ECONFIG,
                       "kubeconfig %s: user \"%s\": client certificate and key must be given "
                       "together", f->path, us->name);
    if ((cfg->username == NULL) != (cfg->password == NULL))
        return kc_errf(ld->eb, KC_ECONFIG,
                       "kubeconfig %s: user \"%s\": username and password must be given together",
                       f->path, us->name);
    return 0;
}

static int resolve(loader_t *ld, const kc_config_opts_t *o, kc_config_t *cfg)
{
    const char *ctxname = o->context ? o->context : ld->current_context;
    const named_t *ctx, *cl, *us = NULL;
    kfile_t *f;
    const char *clname = NULL, *usname = NULL;
    yaml_node_pair_t *p;
    int rc;

    if (ctxname == NULL || ctxname[0] == '\0')
        return kc_errf(ld->eb, KC_ECONFIG, "kubeconfig %s: no current-context and no context given",
                       ld->files[0].path);
    ctx = named_find(&ld->contexts, ctxname);
    if (ctx == NULL)
        return kc_errf(ld->eb, KC_ECONFIG, "kubeconfig %s: context \"%s\" not found",
                       ld->files[0].path, ctxname);
    f = &ld->files[ctx->file];
    if ((cfg->context = strdup(ctxname)) == NULL)
        return -ENOMEM;
    if (asprintf(&cfg->source, "kubeconfig %s", f->path) < 0) {
        cfg->source = NULL;
        return -ENOMEM;
    }
    if (ctx->node && ctx->node->type == YAML_MAPPING_NODE) {
        for (p = ctx->node->data.mapping.pairs.start; p < ctx->node->data.mapping.pairs.top; p++) {
            const char *key = scalar(yaml_document_get_node(&f->doc, p->key));
            yaml_node_t *vn = yaml_document_get_node(&f->doc, p->value);
            const char *v = scalar(vn);
            if (key == NULL || FIELD_IS("extensions") || is_null_node(vn))
                continue;
            if (FIELD_IS("cluster"))
                clname = v;
            else if (FIELD_IS("user"))
                usname = v;
            else if (FIELD_IS("namespace")) {
                if (v && dup_into(&cfg->namespace_, strdup(v)) != 0)
                    return -ENOMEM;
            } else
                return kc_errf(ld->eb, KC_EUNSUPPORTED,
                               "kubeconfig %s: context \"%s\": field \"%s\" is not supported",
                               f->path, ctxname, key);
        }
    }
    if (clname == NULL)
        return kc_errf(ld->eb, KC_ECONFIG, "kubeconfig %s: context \"%s\" has no cluster", f->path,
                       ctxname);
    cl = named_find(&ld->clusters, clname);
    if (cl == NULL)
        return kc_errf(ld->eb, KC_ECONFIG,
                       "kubeconfig %s: context \"%s\": cluster \"%s\" not found", f->path,
                       ctxname, clname);
    if (usname) {
        us = named_find(&ld->users, usname);
        if (us == NULL)
            return kc_errf(ld->eb, KC_ECONFIG,
                           "kubeconfig %s: context \"%s\": user \"%s\" not found", f->path,
                           ctxname, usname);
    }
    if ((rc = resolve_cluster(ld, cl, cfg)))
        return rc;
    if (us && (rc = resolve_user(ld, us, cfg)))
        return rc;
    return 0;
}

static int load_kubeconfig(const kc_config_opts_t *o, const char *const *paths, size_t n,
                           int must_exist, kc_config_t *cfg, kc_errbuf_t *eb)
{
    loader_t *ld = calloc(1, sizeof(*ld));
    int rc = 0;

    if (ld == NULL)
        return kc_errf(eb, -ENOMEM, "out of memory");
    ld->eb = eb;
    ld->log = &o->log;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = load_file(ld, paths[i], must_exist);
    if (rc == 0 && ld->nfiles == 0)
        rc = kc_errf(eb, -ENOENT, "no kubeconfig file found");
    if (rc == 0)
        rc = resolve(ld, o, cfg);
    if (rc == -ENOMEM)
        kc_errf(eb, rc, "out of memory");
    loader_free(ld);
    free(ld);
    return rc;
}

/* ------------------------------------------------------------------ */
/* in-cluster                                                           */

static char *trim_dup(const char *s, size_t n)
{
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    while (n && (*s == ' ' || *s == '\t' || *s == '\n')) {
        s++;
        n--;
    }
    return strndup(s, n);
}

static int load_in_cluster(const kc_config_opts_t *o, kc_config_t *cfg, kc_errbuf_t *eb)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    const char *dir = o->incluster_dir ? o->incluster_dir : DEFAULT_SA_DIR;
    const char *podns = getenv("POD_NAMESPACE");
    kc__blob_t tok = {0}, ns = {0};
    char *path = NULL;
    int rc;

    if (host == NULL || host[0] == '\0' || port == NULL || port[0] == '\0')
        return kc_errf(eb, -ENOENT, "not in a cluster: KUBERNETES_SERVICE_HOST and "
                                    "KUBERNETES_SERVICE_PORT must be set");
    if (asprintf(&cfg->server, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
                 port) < 0) {
        cfg->server = NULL;
        return kc_errf(eb, -ENOMEM, "out of memory");
    }
    if (asprintf(&path, "%s/token", dir) < 0)
        return kc_errf(eb, -ENOMEM, "out of memory");
    rc = kc__read_file(path, MAX_PEM_FILE, &tok);
    kc__blob_wipe(&tok);
    if (rc) {
        rc = kc_errf(eb, KC_ECONFIG, "in-cluster: token file %s: %s", path, kc_strerror(rc));
        free(path);
        return rc;
    }
    cfg->token_file = path;
    if (asprintf(&path, "%s/ca.crt", dir) < 0)
        return kc_errf(eb, -ENOMEM, "out of memory");
    rc = kc__read_file(path, MAX_PEM_FILE, &cfg->ca);
    if (rc)
        kc_log(&o->log, KC_LOG_ERROR, KC__COMPONENT,
               "in-cluster: CA file %s: %s; using the system roots", path, kc_strerror(rc));
    free(path);
    if (podns && podns[0]) {
        cfg->namespace_ = strdup(podns);
    } else {
        if (asprintf(&path, "%s/namespace", dir) < 0)
            return kc_errf(eb, -ENOMEM, "out of memory");
        if (kc__read_file(path, 4096, &ns) == 0) {
            cfg->namespace_ = trim_dup(ns.data, ns.len);
            kc__blob_free(&ns);
        } else {
            cfg->namespace_ = strdup("default");
        }
        free(path);
    }
    cfg->in_cluster = 1;
    cfg->source = strdup("in-cluster");
    if (cfg->namespace_ == NULL || cfg->source == NULL)
        return kc_errf(eb, -ENOMEM, "out of memory");
    return 0;
}

/* ------------------------------------------------------------------ */

int kc_config_load(const kc_config_opts_t *opts, kc_config_t **out, kc_errbuf_t *eb)
{
    static const kc_config_opts_t defaults = KC_CONFIG_OPTS_INIT;
    const kc_config_opts_t *o = opts ? opts : &defaults;
    kc_config_t *cfg = calloc(1, sizeof(*cfg));
    const char *env = getenv("KUBECONFIG");
    int rc;

    if (cfg == NULL)
        return kc_errf(eb, -ENOMEM, "out of memory");
    if (o->in_cluster) {
        rc = load_in_cluster(o, cfg, eb);
    } else if (o->kubeconfig && o->kubeconfig[0]) {
        const char *paths[1] = {o->kubeconfig};
        rc = load_kubeconfig(o, paths, 1, 1, cfg, eb);
    } else if (env && env[0]) {
        const char *paths[MAX_KUBECONFIG_FILES];
        char *copy = strdup(env), *tok, *colon;
        size_t n = 0;
        if (copy == NULL) {
            rc = kc_errf(eb, -ENOMEM, "out of memory");
            goto done;
        }
        for (tok = copy; tok && n < MAX_KUBECONFIG_FILES; tok = colon ? colon + 1 : NULL) {
            colon = strchr(tok, ':');
            if (colon)
                *colon = '\0';
            if (tok[0])
                paths[n++] = tok;
        }
        rc = load_kubeconfig(o, paths, n, 0, cfg, eb);
        if (rc == -ENOENT)
            kc_errf(eb, rc, "no kubeconfig file found in $KUBECONFIG (%s)", env);
        free(copy);
    } else {
        const char *home = getenv("HOME");
        kc_errbuf_t ieb;
        rc = load_in_cluster(o, cfg, &ieb);
        if (rc == -ENOENT) {
            char *path = NULL;
            kc_config_free(cfg);
            if ((cfg = calloc(1, sizeof(*cfg))) == NULL)
                return kc_errf(eb, -ENOMEM, "out of memory");
            if (home == NULL || home[0] == '\0') {
                rc = kc_errf(eb, -ENOENT, "no configuration: set KUBECONFIG or HOME, or run in "
                                          "a cluster");
                goto done;
            }
            if (asprintf(&path, "%s/.kube/config", home) < 0) {
                rc = kc_errf(eb, -ENOMEM, "out of memory");
                goto done;
            }
            {
                const char *paths[1] = {path};
                rc = load_kubeconfig(o, paths, 1, 1, cfg, eb);
            }
            if (rc == -ENOENT)
                kc_errf(eb, rc, "no configuration: no $KUBECONFIG, not in a cluster, and %s "
                                "does not exist", path);
            free(path);
        } else if (rc) {
            kc_errf(eb, rc, "%s", ieb.msg);
        }
    }
done:
    if (rc) {
        kc_config_free(cfg);
        return rc;
    }
    /* a trailing '/' would double up in request paths */
    {
        size_t n = strlen(cfg->server);
        while (n > 0 && cfg->server[n - 1] == '/')
            cfg->server[--n] = '\0';
    }
    if (cfg->insecure)
        kc_log(&o->log, KC_LOG_WARN, KC__COMPONENT,
               "%s: insecure-skip-tls-verify is set: the server's certificate is NOT verified",
               cfg->source);
    *out = cfg;
    return 0;
}
