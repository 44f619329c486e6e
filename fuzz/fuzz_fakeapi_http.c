/* libFuzzer target: the fake API server's request handling.  One server
 * runs in-process for the whole session (token "fuzz", a few objects);
 * each input is sent as raw bytes over a fresh TLS connection and the
 * answer read until the server closes or goes quiet.  Run with
 * -detect_leaks=0: the server's own threads allocate between inputs. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "fakeapi.h"

static kc_fakeapi_t *srv;
static SSL_CTX *ctx;

static void setup(void)
{
    kc_fakeapi_opts_t o = KC_FAKEAPI_OPTS_INIT;
    kc_fakeapi_load_t l = KC_FAKEAPI_LOAD_INIT;

    kc_global_init();
    o.token = "fuzz";
    o.min_request_timeout_s = 1;
    o.max_body = 64 << 10;
    if (kc_fakeapi_new(&o, &srv) != 0 || kc_fakeapi_start(srv) != 0)
        abort();
    l.namespaces = 2;
    kc_fakeapi_preload(srv, &l, 10);
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sockaddr_in a;
    int fd;
    SSL *ssl;
    char buf[16384];

    if (srv == NULL)
        setup();
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)kc_fakeapi_port(srv));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    {
        /* no read or write blocks for long, whatever state the server is in */
        struct timeval tv = { 0, 200000 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) == 1 && (size == 0 || SSL_write(ssl, data, (int)size) > 0)) {
        /* read until closed, or nothing for 20 ms (a partial request, a watch) */
        for (int i = 0; i < 200; i++) {
            struct pollfd p = { fd, POLLIN, 0 };
            if (SSL_pending(ssl) == 0 && poll(&p, 1, 20) <= 0)
                break;
            if (SSL_read(ssl, buf, sizeof(buf)) <= 0)
                break;
        }
    }
    SSL_free(ssl);
    close(fd);
    return 0;
}
