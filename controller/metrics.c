/*
 * Metrics registry and the Prometheus text exposition format 0.0.4.
 *
 * A registry holds families (counter, gauge, histogram), each with a fixed
 * list of label names and any number of series keyed by label values.
 * Families are never removed before the registry is freed, so a
 * kc_metric_t pointer stays valid for the registry's lifetime.
 *
 * Locking: the registry lock protects the family list and the collector
 * list; each family has its own lock protecting its series.  The order is
 * registry, then family (kc_metrics_write takes the registry lock only to
 * snapshot the family list, then each family's lock in turn).  Collect
 * callbacks run with no lock held; the registry counts running collect
 * passes so that removing a collector waits until no pass can still call
 * it.
 */
#include "kc_controller.h"
#include "ctrl_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_OUT_MAX (64u << 20) /* exposition cap: 64 MiB */

typedef struct series {
    char **values;           /* nlabels copies */
    double value;            /* counter/gauge value; histogram sum */
    uint64_t *counts;        /* histogram: nbuckets non-cumulative counts + Inf */
    uint64_t count;          /* histogram observations */
} series_t;

struct kc_metric {
    char *name, *help;
    kc_metric_type_t type;
    size_t nlabels;
    char **labels;
    size_t nbuckets;
    double *buckets;

    pthread_mutex_t lock;
    /* protected by lock: */
    series_t **series;
    size_t nseries, capseries;
};

typedef struct collector {
    kc_metrics_collect_cb cb;
    void *ud;
} collector_t;

struct kc_metrics {
    pthread_mutex_t lock;
    /* protected by lock: */
    kc_metric_t **fams;
    size_t nfams, capfams;
    collector_t *colls;
    size_t ncolls, capcolls;
    int collecting;          /* collect passes running */
    pthread_cond_t collect_done;
};

static const double default_buckets[] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
};

int kc_metrics_new(kc_metrics_t **out)
{
    kc_metrics_t *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return -ENOMEM;
    ctrl_mutex_init(&m->lock);
    ctrl_cond_init(&m->collect_done);
    *out = m;
    return 0;
}

static void series_free(series_t *s, size_t nlabels)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < nlabels; i++)
        free(s->values[i]);
    free(s->values);
    free(s->counts);
    free(s);
}

static void family_free(kc_metric_t *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->nseries; i++)
        series_free(f->series[i], f->nlabels);
    free(f->series);
    for (size_t i = 0; i < f->nlabels; i++)
        free(f->labels[i]);
    free(f->labels);
    free(f->buckets);
    free(f->name);
    free(f->help);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

void kc_metrics_free(kc_metrics_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nfams; i++)
        family_free(m->fams[i]);
    free(m->fams);
    free(m->colls);
    pthread_cond_destroy(&m->collect_done);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static int valid_name(const char *s, int allow_colon)
{
    if (s == NULL || *s == '\0')
        return 0;
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (allow_colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

static size_t count_labels(const char *const *l)
{
    size_t n = 0;

    while (l != NULL && l[n] != NULL)
        n++;
    return n;
}

static int same_shape(const kc_metric_t *f, kc_metric_type_t type,
                      const char *const *labels, size_t nl)
{
    if (f->type != type || f->nlabels != nl)
        return 0;
    for (size_t i = 0; i < nl; i++)
        if (strcmp(f->labels[i], labels[i]) != 0)
            return 0;
    return 1;
}

static int register_family(kc_metrics_t *m, kc_metric_type_t type, const char *name,
                           const char *help, const char *const *labels,
                           const double *buckets, size_t nb, kc_metric_t **out)
{
    size_t nl = count_labels(labels);
    kc_metric_t *f = NULL;
    int rc = -ENOMEM;

    if (m == NULL || out == NULL || !valid_name(name, 1))
        return -EINVAL;
    for (size_t i = 0; i < nl; i++)
        if (!valid_name(labels[i], 0) || strncmp(labels[i], "__", 2) == 0 ||
            (type == KC_METRIC_HISTOGRAM && strcmp(labels[i], "le") == 0))
            return -EINVAL;
    if (type == KC_METRIC_HISTOGRAM) {
        if (buckets == NULL || nb == 0) {
            buckets = default_buckets;
            nb = sizeof(default_buckets) / sizeof(default_buckets[0]);
        }
        for (size_t i = 1; i < nb; i++)
            if (!(buckets[i] > buckets[i - 1]))
                return -EINVAL;
    }

    f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    ctrl_mutex_init(&f->lock);
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    if (f->name == NULL || f->help == NULL)
        goto fail;
    if (nl > 0) {
        f->labels = calloc(nl, sizeof(char *));
        if (f->labels == NULL)
            goto fail;
        f->nlabels = nl;
        for (size_t i = 0; i < nl; i++)
            if ((f->labels[i] = strdup(labels[i])) == NULL)
                goto fail;
    }
    if (type == KC_METRIC_HISTOGRAM) {
        f->buckets = malloc(nb * sizeof(double));
        if (f->buckets == NULL)
            goto fail;
        memcpy(f->buckets, buckets, nb * sizeof(double));
        f->nbuckets = nb;
    }

    ctrl_lock(&m->lock);
    for (size_t i = 0; i < m->nfams; i++) {
        if (strcmp(m->fams[i]->name, name) == 0) {
            kc_metric_t *old = m->fams[i];
            int same = same_shape(old, type, labels, nl);
            ctrl_unlock(&m->lock);
            family_free(f);
            if (!same)
                return KC_EEXISTS;
            *out = old;
            return 0;
        }
    }
    if (m->nfams == m->capfams) {
        size_t nc = m->capfams ? m->capfams * 2 : 16;
        kc_metric_t **p = realloc(m->fams, nc * sizeof(*p));
        if (p == NULL) {
            ctrl_unlock(&m->lock);
            goto fail;
        }
        m->fams = p;
        m->capfams = nc;
    }
    m->fams[m->nfams++] = f;
    ctrl_unlock(&m->lock);
    *out = f;
    return 0;

fail:
    family_free(f);
    return rc;
}

int kc_metrics_counter(kc_metrics_t *m, const char *name, const char *help,
                       const char *const *label_names, kc_metric_t **out)
{
    return register_family(m, KC_METRIC_COUNTER, name, help, label_names, NULL, 0, out);
}

int kc_metrics_gauge(kc_metrics_t *m, const char *name, const char *help,
                     const char *const *label_names, kc_metric_t **out)
{
    return register_family(m, KC_METRIC_GAUGE, name, help, label_names, NULL, 0, out);
}

int kc_metrics_histogram(kc_metrics_t *m, const char *name, const char *help,
                         const char *const *label_names, const double *buckets,
                         size_t nbuckets, kc_metric_t **out)
{
    return register_family(m, KC_METRIC_HISTOGRAM, name, help, label_names, buckets,
                           nbuckets, out);
}

/* Find the series for values; caller holds f->lock.  Returns its index or
 * -1. */
static long find_series(const kc_metric_t *f, const char *const *values)
{
    for (size_t i = 0; i < f->nseries; i++) {
        size_t j;
        for (j = 0; j < f->nlabels; j++) {
            const char *v = values && values[j] ? values[j] : "";
            if (strcmp(f->series[i]->values[j], v) != 0)
                break;
        }
        if (j == f->nlabels)
            return (long)i;
    }
    return -1;
}

/* Find or create; caller holds f->lock.  NULL on allocation failure (the
 * update is then dropped: metrics never fail their caller). */
static series_t *get_series(kc_metric_t *f, const char *const *values)
{
    long i = find_series(f, values);
    series_t *s;

    if (i >= 0)
        return f->series[i];
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    if (f->nlabels > 0) {
        s->values = calloc(f->nlabels, sizeof(char *));
        if (s->values == NULL)
            goto fail;
        for (size_t j = 0; j < f->nlabels; j++) {
            const char *v = values && values[j] ? values[j] : "";
            if ((s->values[j] = strdup(v)) == NULL)
                goto fail;
        }
    }
    if (f->type == KC_METRIC_HISTOGRAM) {
        s->counts = calloc(f->nbuckets + 1, sizeof(uint64_t));
        if (s->counts == NULL)
            goto fail;
    }
    if (f->nseries == f->capseries) {
        size_t nc = f->capseries ? f->capseries * 2 : 4;
        series_t **p = realloc(f->series, nc * sizeof(*p));
        if (p == NULL)
            goto fail;
        f->series = p;
        f->capseries = nc;
    }
    f->series[f->nseries++] = s;
    return s;
fail:
    series_free(s, f->nlabels);
    return NULL;
}

void kc_metric_add(kc_metric_t *f, const char *const *label_values, double v)
{
    series_t *s;

    if (f == NULL || f->type == KC_METRIC_HISTOGRAM)
        return;
    if (f->type == KC_METRIC_COUNTER && !(v >= 0))
        return;
    ctrl_lock(&f->lock);
    s = get_series(f, label_values);
    if (s != NULL)
        s->value += v;
    ctrl_unlock(&f->lock);
}

void kc_metric_inc(kc_metric_t *f, const char *const *label_values)
{
    kc_metric_add(f, label_values, 1.0);
}

void kc_metric_set(kc_metric_t *f, const char *const *label_values, double v)
{
    series_t *s;

    if (f == NULL || f->type == KC_METRIC_HISTOGRAM)
        return;
    ctrl_lock(&f->lock);
    s = get_series(f, label_values);
    /* a counter may mirror a count kept elsewhere, but never goes down */
    if (s != NULL && (f->type == KC_METRIC_GAUGE || v >= s->value))
        s->value = v;
    ctrl_unlock(&f->lock);
}

void kc_metric_observe(kc_metric_t *f, const char *const *label_values, double v)
{
    series_t *s;
    size_t b;

    if (f == NULL || f->type != KC_METRIC_HISTOGRAM || isnan(v))
        return;
    for (b = 0; b < f->nbuckets; b++)
        if (v <= f->buckets[b])
            break;
    ctrl_lock(&f->lock);
    s = get_series(f, label_values);
    if (s != NULL) {
        s->counts[b]++;
        s->count++;
        s->value += v;
    }
    ctrl_unlock(&f->lock);
}

double kc_metric_value(kc_metric_t *f, const char *const *label_values)
{
    double v = 0;
    long i;

    if (f == NULL)
        return 0;
    ctrl_lock(&f->lock);
    i = find_series(f, label_values);
    if (i >= 0)
        v = f->series[i]->value;
    ctrl_unlock(&f->lock);
    return v;
}

void kc_metric_remove(kc_metric_t *f, const char *const *label_values)
{
    long i;

    if (f == NULL)
        return;
    ctrl_lock(&f->lock);
    i = find_series(f, label_values);
    if (i >= 0) {
        series_free(f->series[i], f->nlabels);
        memmove(&f->series[i], &f->series[i + 1],
                (f->nseries - (size_t)i - 1) * sizeof(series_t *));
        f->nseries--;
    }
    ctrl_unlock(&f->lock);
}

int kc_metrics_add_collector(kc_metrics_t *m, kc_metrics_collect_cb cb, void *ud)
{
    if (m == NULL || cb == NULL)
        return -EINVAL;
    ctrl_lock(&m->lock);
    if (m->ncolls == m->capcolls) {
        size_t nc = m->capcolls ? m->capcolls * 2 : 4;
        collector_t *p = realloc(m->colls, nc * sizeof(*p));
        if (p == NULL) {
            ctrl_unlock(&m->lock);
            return -ENOMEM;
        }
        m->colls = p;
        m->capcolls = nc;
    }
    m->colls[m->ncolls].cb = cb;
    m->colls[m->ncolls].ud = ud;
    m->ncolls++;
    ctrl_unlock(&m->lock);
    return 0;
}

void kc_metrics_remove_collector(kc_metrics_t *m, kc_metrics_collect_cb cb, void *ud)
{
    if (m == NULL)
        return;
    ctrl_lock(&m->lock);
    for (size_t i = 0; i < m->ncolls; i++) {
        if (m->colls[i].cb == cb && m->colls[i].ud == ud) {
            memmove(&m->colls[i], &m->colls[i + 1], (m->ncolls - i - 1) * sizeof(collector_t));
            m->ncolls--;
            break;
        }
    }
    /* A pass that snapshotted the old list may still call cb: wait it out. */
    while (m->collecting > 0)
        ctrl_cond_wait(&m->collect_done, &m->lock);
    ctrl_unlock(&m->lock);
}

static size_t escape(char *dst, size_t dstsz, const char *s, int quote)
{
    size_t n = 0;

    for (; *s; s++) {
        const char *rep = NULL;
        char one[2] = { *s, 0 };
        if (*s == '\\')
            rep = "\\\\";
        else if (*s == '\n')
            rep = "\\n";
        else if (quote && *s == '"')
            rep = "\\\"";
        else
            rep = one;
        for (; *rep; rep++, n++)
            if (dstsz > 0 && n < dstsz - 1)
                dst[n] = *rep;
    }
    if (dstsz > 0)
        dst[n < dstsz ? n : dstsz - 1] = '\0';
    return n;
}

size_t kc_metrics_escape_label(char *dst, size_t dstsz, const char *s)
{
    return escape(dst, dstsz, s ? s : "", 1);
}

size_t kc_metrics_escape_help(char *dst, size_t dstsz, const char *s)
{
    return escape(dst, dstsz, s ? s : "", 0);
}

static void buf_escaped(ctrl_buf_t *b, const char *s, int quote)
{
    size_t n = escape(NULL, 0, s, quote);

    if (ctrl_buf_reserve(b, n) != 0)
        return;
    escape(b->data + b->len, n + 1, s, quote);
    b->len += n;
}

/* Shortest text that reads back as v, laid out as Go's
 * strconv.FormatFloat(v, 'g', -1, 64) does (what client_golang emits, e.g.
 * "0.005", "1e-08", "2.7643904e+07"): exponent form when the decimal
 * exponent is < -4 or >= 6. */
static void fmt_value(char *dst, size_t n, double v)
{
    char e[64];
    int prec, exp;

    if (isnan(v)) {
        snprintf(dst, n, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(dst, n, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == 0) {
        snprintf(dst, n, "0");
        return;
    }
    for (prec = 1; prec <= 17; prec++) {
        snprintf(e, sizeof(e), "%.*e", prec - 1, v);
        if (strtod(e, NULL) == v)
            break;
    }
    exp = (int)strtol(strchr(e, 'e') + 1, NULL, 10);
    if (exp < -4 || exp >= 6) {
        snprintf(dst, n, "%s", e);
        return;
    }
    snprintf(dst, n, "%.*f", prec - 1 - exp > 0 ? prec - 1 - exp : 0, v);
}

static void write_labels(ctrl_buf_t *b, const kc_metric_t *f, const series_t *s,
                         const char *le)
{
    if (f->nlabels == 0 && le == NULL)
        return;
    ctrl_buf_puts(b, "{");
    for (size_t i = 0; i < f->nlabels; i++) {
        ctrl_buf_printf(b, "%s%s=\"", i ? "," : "", f->labels[i]);
        buf_escaped(b, s->values[i], 1);
        ctrl_buf_puts(b, "\"");
    }
    if (le != NULL)
        ctrl_buf_printf(b, "%sle=\"%s\"", f->nlabels ? "," : "", le);
    ctrl_buf_puts(b, "}");
}

static void write_family(ctrl_buf_t *b, kc_metric_t *f)
{
    static const char *const tname[] = { "counter", "gauge", "histogram" };
    char num[64];

    ctrl_buf_printf(b, "# HELP %s ", f->name);
    buf_escaped(b, f->help, 0);
    ctrl_buf_printf(b, "\n# TYPE %s %s\n", f->name, tname[f->type]);
    ctrl_lock(&f->lock);
    for (size_t i = 0; i < f->nseries; i++) {
        series_t *s = f->series[i];
        if (f->type != KC_METRIC_HISTOGRAM) {
            ctrl_buf_puts(b, f->name);
            write_labels(b, f, s, NULL);
            fmt_value(num, sizeof(num), s->value);
            ctrl_buf_printf(b, " %s\n", num);
            continue;
        }
        uint64_t cum = 0;
        for (size_t j = 0; j <= f->nbuckets; j++) {
            char le[64];
            cum += s->counts[j];
            if (j < f->nbuckets)
                fmt_value(le, sizeof(le), f->buckets[j]);
            else
                snprintf(le, sizeof(le), "+Inf");
            ctrl_buf_printf(b, "%s_bucket", f->name);
            write_labels(b, f, s, le);
            ctrl_buf_printf(b, " %llu\n", (unsigned long long)cum);
        }
        ctrl_buf_printf(b, "%s_sum", f->name);
        write_labels(b, f, s, NULL);
        fmt_value(num, sizeof(num), s->value);
        ctrl_buf_printf(b, " %s\n", num);
        ctrl_buf_printf(b, "%s_count", f->name);
        write_labels(b, f, s, NULL);
        ctrl_buf_printf(b, " %llu\n", (unsigned long long)s->count);
    }
    ctrl_unlock(&f->lock);
}

static int cmp_fam(const void *a, const void *b)
{
    const kc_metric_t *x = *(kc_metric_t *const *)a, *y = *(kc_metric_t *const *)b;
    return strcmp(x->name, y->name);
}

int kc_metrics_write(kc_metrics_t *m, char **out, size_t *len)
{
    collector_t *colls = NULL;
    kc_metric_t **fams = NULL;
    size_t ncolls, nfams;
    ctrl_buf_t b;
    int rc = 0;

    if (m == NULL || out == NULL)
        return -EINVAL;
    ctrl_lock(&m->lock);
    ncolls = m->ncolls;
    if (ncolls > 0) {
        colls = malloc(ncolls * sizeof(*colls));
        if (colls == NULL) {
            ctrl_unlock(&m->lock);
            return -ENOMEM;
        }
        memcpy(colls, m->colls, ncolls * sizeof(*colls));
        m->collecting++;
    }
    ctrl_unlock(&m->lock);

    for (size_t i = 0; i < ncolls; i++)
        colls[i].cb(colls[i].ud);

    ctrl_lock(&m->lock);
    if (ncolls > 0 && --m->collecting == 0)
        ctrl_cond_broadcast(&m->collect_done);
    nfams = m->nfams;
    fams = malloc((nfams ? nfams : 1) * sizeof(*fams));
    if (fams != NULL && nfams > 0)
        memcpy(fams, m->fams, nfams * sizeof(*fams));
    ctrl_unlock(&m->lock);
    free(colls);
    if (fams == NULL)
        return -ENOMEM;
    qsort(fams, nfams, sizeof(*fams), cmp_fam);

    ctrl_buf_init(&b, METRICS_OUT_MAX);
    ctrl_buf_reserve(&b, 0);
    for (size_t i = 0; i < nfams; i++)
        write_family(&b, fams[i]);
    free(fams);
    if (b.err) {
        rc = b.err;
        ctrl_buf_free(&b);
        return rc;
    }
    *out = b.data;
    if (len)
        *len = b.len;
    return 0;
}
