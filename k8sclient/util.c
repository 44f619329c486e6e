/*
 * Small byte helpers for k8sclient/: a growable string with a hard cap,
 * base64, whole-file reads with a cap, RFC 3339 times.
 *
 * Invariants: every kc__sb_t keeps p NUL-terminated once anything was
 * added; an error is sticky (later adds are no-ops returning it), so a
 * caller can build a string and check once.  No shared state: all functions
 * are thread-safe.
 */
#include "client_int.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void kc__sb_init(kc__sb_t *sb, size_t max)
{
    memset(sb, 0, sizeof(*sb));
    sb->max = max;
}

void kc__sb_free(kc__sb_t *sb)
{
    free(sb->p);
    sb->p = NULL;
    sb->len = sb->cap = 0;
}

static int sb_reserve(kc__sb_t *sb, size_t extra)
{
    size_t need, ncap;
    char *np;

    if (sb->err)
        return sb->err;
    if (extra > SIZE_MAX / 2 - sb->len - 1)
        return sb->err = -ENOMEM;
    need = sb->len + extra + 1;
    if (sb->max && need - 1 > sb->max)
        return sb->err = KC_ETOOBIG;
    if (need <= sb->cap)
        return 0;
    ncap = sb->cap ? sb->cap : 64;
    while (ncap < need)
        ncap *= 2;
    if (sb->max && ncap > sb->max + 1)
        ncap = sb->max + 1;
    np = realloc(sb->p, ncap);
    if (np == NULL)
        return sb->err = -ENOMEM;
    sb->p = np;
    sb->cap = ncap;
    return 0;
}

int kc__sb_add(kc__sb_t *sb, const char *s, size_t n)
{
    int rc = sb_reserve(sb, n);

    if (rc)
        return rc;
    if (n)
        memcpy(sb->p + sb->len, s, n);
    sb->len += n;
    sb->p[sb->len] = '\0';
    return 0;
}

int kc__sb_adds(kc__sb_t *sb, const char *s)
{
    return kc__sb_add(sb, s, strlen(s));
}

int kc__sb_addf(kc__sb_t *sb, const char *fmt, ...)
{
    va_list ap;
    int n, rc;

    if (sb->err)
        return sb->err;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return sb->err = -EINVAL;
    rc = sb_reserve(sb, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(sb->p + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
    return 0;
}

int kc__sb_add_escaped(kc__sb_t *sb, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char tmp[3];

    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            kc__sb_add(sb, (const char *)s, 1);
        } else {
            tmp[0] = '%';
            tmp[1] = hex[ch >> 4];
            tmp[2] = hex[ch & 15];
            kc__sb_add(sb, tmp, 3);
        }
    }
    return sb->err;
}

static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int kc__b64_decode(const char *in, size_t n, kc__blob_t *out)
{
    char *buf = malloc(n / 4 * 3 + 4);
    size_t o = 0, i;
    unsigned acc = 0;
    int bits = 0, pad = 0;

    if (buf == NULL)
        return -ENOMEM;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        int v;
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        if (pad)
            goto bad;          /* data after padding */
        v = b64_val(c);
        if (v < 0)
            goto bad;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    if (bits >= 6 || pad > 2)
        goto bad;              /* a lone 6-bit group cannot encode a byte */
    buf[o] = '\0';
    out->data = buf;
    out->len = o;
    return 0;
bad:
    free(buf);
    return -EINVAL;
}

char *kc__b64_encode(const char *in, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *s = (const unsigned char *)in;
    char *out = malloc((n + 2) / 3 * 4 + 1), *p = out;
    size_t i;

    if (out == NULL)
        return NULL;
    for (i = 0; i + 2 < n; i += 3) {
        *p++ = tab[s[i] >> 2];
        *p++ = tab[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
        *p++ = tab[((s[i + 1] & 15) << 2) | (s[i + 2] >> 6)];
        *p++ = tab[s[i + 2] & 63];
    }
    if (i < n) {
        *p++ = tab[s[i] >> 2];
        if (i + 1 < n) {
            *p++ = tab[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
            *p++ = tab[(s[i + 1] & 15) << 2];
        } else {
            *p++ = tab[(s[i] & 3) << 4];
            *p++ = '=';
        }
        *p++ = '=';
    }
    *p = '\0';
    return out;
}

int kc__read_file(const char *path, size_t max, kc__blob_t *out)
{
    struct stat stt;
    kc__sb_t sb;
    char tmp[8192];
    int fd, rc = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &stt) != 0) {
        rc = -errno;
        goto out_close;
    }
    if (S_ISDIR(stt.st_mode)) {
        rc = -EISDIR;
        goto out_close;
    }
    kc__sb_init(&sb, max);
    if (kc__sb_add(&sb, "", 0)) {
        rc = sb.err;
        goto out_close;
    }
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        if (n == 0)
            break;
        if ((rc = kc__sb_add(&sb, tmp, (size_t)n)) != 0)
            break;
    }
    explicit_bzero(tmp, sizeof(tmp));
    if (rc) {
        if (sb.p)
            explicit_bzero(sb.p, sb.cap);
        kc__sb_free(&sb);
        goto out_close;
    }
    out->data = sb.p;
    out->len = sb.len;
out_close:
    close(fd);
    return rc;
}

void kc__blob_free(kc__blob_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

void kc__blob_wipe(kc__blob_t *b)
{
    if (b->data)
        explicit_bzero(b->data, b->len);
    kc__blob_free(b);
}

void kc__str_wipe(char **s)
{
    if (*s) {
        explicit_bzero(*s, strlen(*s));
        free(*s);
        *s = NULL;
    }
}

char *kc__strdup0(const char *s)
{
    return s ? strdup(s) : NULL;
}

void kc__strlcpy(char *dst, const char *src, size_t cap)
{
    size_t n;

    if (cap == 0)
        return;
    n = strnlen(src, cap - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int kc__parse_rfc3339(const char *s, double *out)
{
    struct tm tm;
    int y, mo, d, h, mi, sec, oh, om;
    double frac = 0, t;
    const char *p;

    if (strlen(s) < 20 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) ||
        s[7] != '-' || digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
        digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) ||
        s[16] != ':' || digits(s + 17, 2, &sec))
        return -EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -EINVAL;
    p = s + 19;
    if (*p == '.') {
        double scale = 0.1;
        p++;
        if (*p < '0' || *p > '9')
            return -EINVAL;
        while (*p >= '0' && *p <= '9') {
            frac += (*p - '0') * scale;
            scale /= 10;
            p++;
        }
    }
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    t = (double)timegm(&tm) + frac;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') && digits(p + 1, 2, &oh) == 0 && p[3] == ':' &&
               digits(p + 4, 2, &om) == 0) {
        double off = oh * 3600.0 + om * 60.0;
        t += *p == '+' ? -off : off;
        p += 6;
    } else {
        return -EINVAL;
    }
    if (*p != '\0')
        return -EINVAL;
    *out = t;
    return 0;
}
