/*
 * Fake API server: certificates.  Either loads the CA, server certificate
 * and key from files, or generates at start a CA and a server certificate
 * (EC P-256, SAN IP:127.0.0.1, DNS:localhost) that live only in memory.
 * Client certificates issued by the CA carry CN = user name; the server
 * asks for (but does not require) a client certificate and verifies it
 * against the CA.
 *
 * fa_pki_t is built once by kc_fakeapi_new and read-only afterwards except
 * for the serial counter, which fa_pki_issue uses under the caller's
 * serialisation (it runs on the loop thread through fa_call).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "fakeapi_int.h"

static EVP_PKEY *new_key(void)
{
    return EVP_EC_gen("P-256");
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ex;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ex)
        return -1;
    int ok = X509_add_ext(cert, ex, -1);
    X509_EXTENSION_free(ex);
    return ok ? 0 : -1;
}

/* Make a certificate for key signed by (issuer, ikey); issuer NULL: self. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *ikey,
                       uint64_t serial, int kind /* 0 CA, 1 server, 2 client */)
{
    X509 *c = X509_new();
    X509_NAME *nm;
    if (!c)
        return NULL;
    X509_set_version(c, 2);
    ASN1_INTEGER_set_uint64(X509_get_serialNumber(c), serial);
    X509_gmtime_adj(X509_getm_notBefore(c), -3600);
    X509_gmtime_adj(X509_getm_notAfter(c), 3600L * 24 * 365);
    X509_set_pubkey(c, key);
    nm = X509_get_subject_name(c);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    if (kind == 2)
        X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_ASC, (const unsigned char *)"system:authenticated", -1, -1, 0);
    X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : nm);
    X509 *iss = issuer ? issuer : c;
    int rc = 0;
    if (kind == 0) {
        rc |= add_ext(c, iss, NID_basic_constraints, "critical,CA:TRUE");
        rc |= add_ext(c, iss, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature");
        rc |= add_ext(c, iss, NID_subject_key_identifier, "hash");
    } else {
        rc |= add_ext(c, iss, NID_basic_constraints, "critical,CA:FALSE");
        rc |= add_ext(c, iss, NID_key_usage, "critical,digitalSignature,keyEncipherment");
        rc |= add_ext(c, iss, NID_ext_key_usage, kind == 1 ? "serverAuth" : "clientAuth");
        rc |= add_ext(c, iss, NID_authority_key_identifier, "keyid:always");
        if (kind == 1)
            rc |= add_ext(c, iss, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost,IP:::1");
    }
    if (rc || !X509_sign(c, ikey ? ikey : key, EVP_sha256())) {
        X509_free(c);
        return NULL;
    }
    return c;
}

static char *pem_of_cert(X509 *c)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *out = NULL;
    long n;
    if (!b)
        return NULL;
    if (PEM_write_bio_X509(b, c) && (n = BIO_get_mem_data(b, &data)) > 0) {
        out = malloc((size_t)n + 1);
        if (out) {
            memcpy(out, data, (size_t)n);
            out[n] = 0;
        }
    }
    BIO_free(b);
    return out;
}

static char *pem_of_key(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *out = NULL;
    long n;
    if (!b)
        return NULL;
    if (PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) &&
        (n = BIO_get_mem_data(b, &data)) > 0) {
        out = malloc((size_t)n + 1);
        if (out) {
            memcpy(out, data, (size_t)n);
            out[n] = 0;
        }
    }
    BIO_free(b);
    return out;
}

static X509 *load_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    X509 *c;
    if (!f)
        return NULL;
    c = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    return c;
}

static EVP_PKEY *load_key(const char *path)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *k;
    if (!f)
        return NULL;
    k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

int fa_pki_init(fa_pki_t *p, const kc_fakeapi_opts_t *o, kc_errbuf_t *eb)
{
    memset(p, 0, sizeof(*p));
    p->serial = 2;
    if (o->cert_file || o->key_file || o->ca_file) {
        if (!o->cert_file || !o->key_file || !o->ca_file)
            return kc_errf(eb, KC_ECONFIG, "cert_file, key_file and ca_file go together");
        p->cert = load_cert(o->cert_file);
        p->key = load_key(o->key_file);
        p->ca = load_cert(o->ca_file);
        if (o->ca_key_file)
            p->ca_key = load_key(o->ca_key_file);
        if (!p->cert || !p->key || !p->ca || (o->ca_key_file && !p->ca_key)) {
            fa_pki_destroy(p);
            return kc_errf(eb, KC_ECONFIG, "cannot read the certificate or key files");
        }
    } else {
        p->ca_key = new_key();
        p->key = new_key();
        if (!p->ca_key || !p->key)
            goto tls;
        p->ca = make_cert(p->ca_key, "kcache-fakeapi-ca", NULL, NULL, 1, 0);
        if (!p->ca)
            goto tls;
        p->cert = make_cert(p->key, "kube-apiserver", p->ca, p->ca_key, p->serial++, 1);
        if (!p->cert)
            goto tls;
    }
    p->ca_pem = pem_of_cert(p->ca);
    if (!p->ca_pem)
        goto tls;
    return 0;
tls:
    fa_pki_destroy(p);
    return kc_errf(eb, KC_ETLS, "cannot generate certificates");
}

void fa_pki_destroy(fa_pki_t *p)
{
    EVP_PKEY_free(p->ca_key);
    EVP_PKEY_free(p->key);
    X509_free(p->ca);
    X509_free(p->cert);
    free(p->ca_pem);
    memset(p, 0, sizeof(*p));
}

int fa_pki_issue(fa_pki_t *p, const char *cn, int server, char **cert_pem, char **key_pem)
{
    EVP_PKEY *k;
    X509 *c;
    *cert_pem = *key_pem = NULL;
    if (!p->ca_key)
        return KC_EUNSUPPORTED;
    k = new_key();
    if (!k)
        return KC_ETLS;
    c = make_cert(k, cn, p->ca, p->ca_key, p->serial++, server ? 1 : 2);
    if (c) {
        *cert_pem = pem_of_cert(c);
        *key_pem = pem_of_key(k);
    }
    X509_free(c);
    EVP_PKEY_free(k);
    if (!*cert_pem || !*key_pem) {
        free(*cert_pem);
        free(*key_pem);
        *cert_pem = *key_pem = NULL;
        return KC_ETLS;
    }
    return 0;
}

static int verify_cb(int ok, X509_STORE_CTX *ctx)
{
    (void)ctx;
    /* A bad client certificate does not fail the handshake: the request
     * is then treated as anonymous and gets 401, like the real server. */
    (void)ok;
    return 1;
}

SSL_CTX *fa_pki_ssl_ctx(fa_pki_t *p)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    X509_STORE *store;
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION);
    if (SSL_CTX_use_certificate(ctx, p->cert) != 1 || SSL_CTX_use_PrivateKey(ctx, p->key) != 1)
        goto fail;
    store = SSL_CTX_get_cert_store(ctx);
    if (X509_STORE_add_cert(store, p->ca) != 1)
        goto fail;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
    {
        /* advertise our CA as acceptable issuer for client certificates */
        STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
        if (names) {
            sk_X509_NAME_push(names, X509_NAME_dup(X509_get_subject_name(p->ca)));
            SSL_CTX_set_client_CA_list(ctx, names);
        }
    }
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"kcfake", 6);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}
