/*
 * kcache common definitions: error codes, logging hook, global init.
 *
 * Every kcache function that can fail returns 0 or a negative code: a
 * negated errno (-ENOMEM, -EINVAL, ...) for system errors, or one of the
 * KC_E* codes below for kcache's own.  The codes come from one X-macro list
 * so that names, numbers and kc_strerror() texts cannot drift apart.  A
 * code's number is never reused.
 */
#ifndef KC_COMMON_H
#define KC_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KC_VERSION_MAJOR 0
#define KC_VERSION_MINOR 1
#define KC_VERSION_PATCH 0
#define KC_VERSION_STRING "0.1.0"

/* XX(NAME, number, text).  kcache's own codes live in -1000 .. -1999. */
#define KC_ERRNO_MAP(XX)                                                     \
    XX(PARSE,        -1000, "malformed input")                               \
    XX(TOOBIG,       -1001, "input exceeds size limit")                      \
    XX(BADNAME,      -1002, "invalid name or namespace")                     \
    XX(NOTFOUND,     -1003, "not found")                                     \
    XX(EXISTS,       -1004, "already exists")                                \
    XX(CONFLICT,     -1005, "conflict: object was modified")                 \
    XX(GONE,         -1006, "resource version too old (410 Gone/Expired)")   \
    XX(UNAUTHORIZED, -1007, "unauthorized (401)")                            \
    XX(FORBIDDEN,    -1008, "forbidden (403)")                               \
    XX(INVALID,      -1009, "invalid object (422)")                          \
    XX(TOOMANY,      -1010, "too many requests (429)")                       \
    XX(SERVER,       -1011, "server error (5xx)")                            \
    XX(HTTP,         -1012, "unexpected HTTP status")                        \
    XX(TLS,          -1013, "TLS error")                                     \
    XX(CONNECT,      -1014, "connection failed")                             \
    XX(TIMEOUT,      -1015, "timed out")                                     \
    XX(CONFIG,       -1016, "invalid configuration")                         \
    XX(UNSUPPORTED,  -1017, "unsupported")                                   \
    XX(BUSY,         -1018, "busy: still running")                           \
    XX(STOPPED,      -1019, "stopped")                                       \
    XX(BADREQUEST,   -1020, "bad request (400)")                             \
    XX(AUTH,         -1021, "credential plugin failed")                      \
    XX(CLOSED,       -1022, "stream closed")

enum {
#define KC_ERR_ENUM(name, num, text) KC_E##name = (num),
    KC_ERRNO_MAP(KC_ERR_ENUM)
#undef KC_ERR_ENUM
};

#if defined(__GNUC__)
#define KC_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define KC_PRINTF(a, b)
#endif

/* Text for a code returned by any kcache call: KC_E* or negated errno.
 * Never NULL; the string is static.  Thread-safe. */
const char *kc_strerror(int err);
/* Symbolic name ("KC_EGONE", "ENOMEM", ...).  Never NULL.  Thread-safe. */
const char *kc_err_name(int err);

/* Error detail: what went wrong and where, for the caller to show.  The
 * caller owns it (usually on its stack); kcache fills it when a call fails
 * and the caller passed one.  msg never holds tokens, keys or Secret data. */
typedef struct kc_errbuf {
    int code;            /* the code the call returned */
    char msg[512];       /* "kubeconfig /x/config: context \"dev\": no cluster" */
} kc_errbuf_t;

/* Fill eb (may be NULL) and return code, so error paths read
 * `return kc_errf(eb, KC_EPARSE, "watch line %zu: ...", n);`.
 * Thread-safe. */
int kc_errf(kc_errbuf_t *eb, int code, const char *fmt, ...) KC_PRINTF(3, 4);

/* Logging.  The library never prints: it calls the logger the program
 * installs in each component's options.  A NULL fn drops messages.
 * Messages never contain tokens, keys or Secret data. */
typedef enum {
    KC_LOG_ERROR = 0,
    KC_LOG_WARN = 1,
    KC_LOG_INFO = 2,
    KC_LOG_DEBUG = 3,
    KC_LOG_TRACE = 4
} kc_log_level_t;

typedef void (*kc_log_cb)(void *ud, kc_log_level_t level, const char *component,
                          const char *msg);

typedef struct kc_logger {
    kc_log_cb fn;        /* NULL: discard */
    void *ud;
    kc_log_level_t level; /* messages above this level are dropped */
} kc_logger_t;

#define KC_LOGGER_INIT { NULL, NULL, KC_LOG_INFO }

/* Format and emit one message.  lg may be NULL.  Thread-safe if lg->fn is. */
void kc_log(const kc_logger_t *lg, kc_log_level_t level, const char *component,
            const char *fmt, ...) KC_PRINTF(4, 5);
void kc_vlog(const kc_logger_t *lg, kc_log_level_t level, const char *component,
             const char *fmt, va_list ap);

/* One-time process initialisation (curl_global_init).  Call before any
 * thread uses kcache.  Not thread-safe; idempotent. */
int kc_global_init(void);
void kc_global_cleanup(void);

/* Monotonic clock in nanoseconds.  Thread-safe. */
uint64_t kc_now_ns(void);
/* Wall clock, seconds since the epoch, as a double.  Thread-safe. */
double kc_wall_time(void);

/* Hand memory the process has freed back to the system: glibc keeps freed
 * blocks in its arenas, in holes between live ones, and returns only a
 * free top of each heap (malloc_trim(0) walks the arenas and releases the
 * free pages inside them: about a millisecond per 100 MB of heap, with
 * each arena locked in turn).  A no-op without glibc, and in sanitizer
 * builds, whose allocators replace glibc's.  Thread-safe. */
void kc_heap_trim(void);

#ifdef __cplusplus
}
#endif
#endif
