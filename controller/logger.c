/*
 * A structured logger for kcache programs: one line per message, logfmt or
 * JSON lines, written with a single write(2) so lines from different
 * threads never interleave.  The library itself never logs secret values;
 * as a last line of defence this logger masks the text after "Bearer " and
 * "token=" in case a caller's message carries one.
 *
 * State is immutable after kc_stdlog_new (fd, format, level), so no lock is
 * needed.
 */
#include "kc_controller.h"
#include "ctrl_int.h"

#include <math.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 8192

struct kc_stdlog {
    int fd;
    kc_log_format_t fmt;
    kc_log_level_t level;
};

static const char *const level_names[] = { "error", "warn", "info", "debug", "trace" };

int kc_stdlog_new(int fd, kc_log_format_t fmt, int verbosity, kc_stdlog_t **out)
{
    kc_stdlog_t *l;
    int lv;

    if (out == NULL || fd < 0 || (fmt != KC_LOGFMT_TEXT && fmt != KC_LOGFMT_JSON))
        return -EINVAL;
    l = calloc(1, sizeof(*l));
    if (l == NULL)
        return -ENOMEM;
    l->fd = fd;
    l->fmt = fmt;
    lv = KC_LOG_INFO + (verbosity < 0 ? 0 : verbosity);
    l->level = lv > KC_LOG_TRACE ? KC_LOG_TRACE : (kc_log_level_t)lv;
    *out = l;
    return 0;
}

void kc_stdlog_free(kc_stdlog_t *l)
{
    free(l);
}

/* Append s escaped for a JSON string (json=1) or a logfmt quoted value. */
static void put_escaped(ctrl_buf_t *b, const char *s, int json)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char tmp[8];
        switch (*p) {
        case '"': ctrl_buf_puts(b, "\\\""); break;
        case '\\': ctrl_buf_puts(b, "\\\\"); break;
        case '\n': ctrl_buf_puts(b, "\\n"); break;
        case '\r': ctrl_buf_puts(b, "\\r"); break;
        case '\t': ctrl_buf_puts(b, "\\t"); break;
        default:
            if (*p < 0x20 || (json && *p == 0x7f)) {
                snprintf(tmp, sizeof(tmp), "\\u%04x", *p);
                ctrl_buf_puts(b, tmp);
            } else {
                ctrl_buf_append(b, (const char *)p, 1);
            }
        }
    }
}

/* Mask credentials that slipped into a message: after each marker, replace
 * the following run of non-space characters by "[REDACTED]". */
static void redact(const char *in, char *out, size_t outsz)
{
    static const char *const markers[] = { "Bearer ", "bearer ", "token=", "password=" };
    size_t o = 0;

    while (*in && o + 1 < outsz) {
        size_t ml = 0;
        for (size_t m = 0; m < sizeof(markers) / sizeof(markers[0]); m++) {
            size_t l = strlen(markers[m]);
            if (strncmp(in, markers[m], l) == 0) {
                ml = l;
                break;
            }
        }
        if (ml == 0) {
            out[o++] = *in++;
            continue;
        }
        for (size_t i = 0; i < ml && o + 1 < outsz; i++)
            out[o++] = *in++;
        if (*in && *in != ' ' && *in != '"') {
            const char *r = "[REDACTED]";
            while (*in && *in != ' ' && *in != '"' && *in != ',')
                in++;
            while (*r && o + 1 < outsz)
                out[o++] = *r++;
        }
    }
    out[o] = '\0';
}

size_t kc_stdlog_format(kc_log_format_t fmt, double wall_time, kc_log_level_t level,
                        const char *component, const char *msg, char *dst, size_t dstsz)
{
    char ts[96], safe[2048];
    struct tm tm;
    /* floor without libm: the program needs nothing else from it */
    time_t secs = (time_t)wall_time;
    int ms = (int)((wall_time - (double)secs) * 1000.0);
    ctrl_buf_t b;
    size_t n;

    if ((double)secs > wall_time) {
        secs--;
        ms = (int)((wall_time - (double)secs) * 1000.0);
    }
    if (ms < 0)
        ms = 0;
    if (ms > 999)
        ms = 999;
    gmtime_r(&secs, &tm);
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    if ((unsigned)level > KC_LOG_TRACE)
        level = KC_LOG_TRACE;
    redact(msg ? msg : "", safe, sizeof(safe));
    ctrl_buf_init(&b, LINE_MAX_BYTES);
    if (fmt == KC_LOGFMT_JSON) {
        ctrl_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"logger\":\"", ts,
                        level_names[level]);
        put_escaped(&b, component ? component : "", 1);
        ctrl_buf_puts(&b, "\",\"msg\":\"");
        put_escaped(&b, safe, 1);
        ctrl_buf_puts(&b, "\"}\n");
    } else {
        ctrl_buf_printf(&b, "ts=%s level=%s logger=", ts, level_names[level]);
        put_escaped(&b, component && *component ? component : "-", 0);
        ctrl_buf_puts(&b, " msg=\"");
        put_escaped(&b, safe, 0);
        ctrl_buf_puts(&b, "\"\n");
    }
    if (b.err || b.data == NULL) {
        /* too long: keep a truncated but well-formed marker line */
        ctrl_buf_free(&b);
        n = (size_t)snprintf(dst, dstsz, "ts=%s level=%s msg=\"(log line too long)\"\n", ts,
                             level_names[level]);
        return n;
    }
    n = b.len;
    if (dstsz > 0) {
        size_t c = n < dstsz - 1 ? n : dstsz - 1;
        memcpy(dst, b.data, c);
        dst[c] = '\0';
    }
    ctrl_buf_free(&b);
    return n;
}

static void stdlog_cb(void *ud, kc_log_level_t level, const char *component, const char *msg)
{
    kc_stdlog_t *l = ud;
    char line[LINE_MAX_BYTES];
    size_t n, off = 0;

    n = kc_stdlog_format(l->fmt, kc_wall_time(), level, component, msg, line, sizeof(line));
    if (n >= sizeof(line)) {
        n = sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    while (off < n) {
        ssize_t w = write(l->fd, line + off, n - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        off += (size_t)w;
    }
}

kc_logger_t kc_stdlog_logger(kc_stdlog_t *l)
{
    kc_logger_t lg = KC_LOGGER_INIT;

    if (l != NULL) {
        lg.fn = stdlog_cb;
        lg.ud = l;
        lg.level = l->level;
    }
    return lg;
}
