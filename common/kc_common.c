/*
 * Error texts, the logging hook, clocks and process-wide initialisation.
 *
 * No mutable state lives here except the curl global-init flag, which
 * kc_global_init documents as "call once before threads start".
 */
#include "kc_common.h"

#include <curl/curl.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

const char *kc_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define KC_ERR_TEXT(name, num, text) case KC_E##name: return text;
        KC_ERRNO_MAP(KC_ERR_TEXT)
#undef KC_ERR_TEXT
    default:
        break;
    }
    if (err < 0 && err > -4096)
        return strerror(-err); /* glibc: static texts for known errnos */
    return "unknown error";
}

const char *kc_err_name(int err)
{
    switch (err) {
    case 0:
        return "OK";
#define KC_ERR_NAME(name, num, text) case KC_E##name: return "KC_E" #name;
        KC_ERRNO_MAP(KC_ERR_NAME)
#undef KC_ERR_NAME
    case -ENOMEM: return "ENOMEM";
    case -EINVAL: return "EINVAL";
    case -ENOENT: return "ENOENT";
    case -EACCES: return "EACCES";
    case -ERANGE: return "ERANGE";
    case -EEXIST: return "EEXIST";
    case -EIO: return "EIO";
    case -EAGAIN: return "EAGAIN";
    case -ETIMEDOUT: return "ETIMEDOUT";
    default:
        return "UNKNOWN";
    }
}

int kc_errf(kc_errbuf_t *eb, int code, const char *fmt, ...)
{
    va_list ap;

    if (eb == NULL)
        return code;
    eb->code = code;
    va_start(ap, fmt);
    vsnprintf(eb->msg, sizeof(eb->msg), fmt, ap);
    va_end(ap);
    return code;
}

void kc_vlog(const kc_logger_t *lg, kc_log_level_t level, const char *component,
             const char *fmt, va_list ap)
{
    char msg[1024];

    if (lg == NULL || lg->fn == NULL || level > lg->level)
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    lg->fn(lg->ud, level, component, msg);
}

void kc_log(const kc_logger_t *lg, kc_log_level_t level, const char *component,
            const char *fmt, ...)
{
    va_list ap;

    if (lg == NULL || lg->fn == NULL || level > lg->level)
        return;
    va_start(ap, fmt);
    kc_vlog(lg, level, component, fmt, ap);
    va_end(ap);
}

static int global_inited; /* set once by kc_global_init, before threads */

int kc_global_init(void)
{
    if (global_inited)
        return 0;
    if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
        return -ENOMEM;
    global_inited = 1;
    return 0;
}

void kc_global_cleanup(void)
{
    if (!global_inited)
        return;
    curl_global_cleanup();
    global_inited = 0;
}

uint64_t kc_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Under ASan or TSan glibc's allocator is not the one in use, and
 * malloc_trim would initialise it from whichever thread calls first, which
 * glibc does not make thread-safe: two first calls racing (two informers
 * ending their lists together) trip glibc's assertion at thread exit. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define KC_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define KC_SANITIZED 1
#endif
#endif

void kc_heap_trim(void)
{
#if defined(__GLIBC__) && !defined(KC_SANITIZED)
    malloc_trim(0);
#endif
}

double kc_wall_time(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
