/*
 * metrics.c — counters, histograms and the text exposition format 0.0.4
 * (metrics.h).
 */
#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error.h"

const metrics_buckets metrics_latency_us = {
    .n = 18,
    .per_unit = 1e6,
    .le = {10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,
           250000, 500000, 1000000, 2500000, 5000000},
};

const metrics_buckets metrics_size = {
    .n = 11,
    .per_unit = 1,
    .le = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
};

#define METRICS_OUT_DEFAULT_MAX (4u << 20)

void metrics_histogram_init(metrics_histogram *h, const metrics_buckets *buckets) {
    memset(h, 0, sizeof(*h));
    h->buckets = buckets;
}

void metrics_histogram_observe(metrics_histogram *h, uint64_t v) {
    const metrics_buckets *b = h->buckets;
    /* A dozen or two bounds: a linear scan is as fast as a binary search
     * and most observations stop in the first few. */
    size_t i = 0;
    while (i < b->n && v > b->le[i]) {
        i++;
    }
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, v, memory_order_relaxed);
}

int64_t metrics_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ------------------------------------------------------------------------
 * The buffer. */

void metrics_out_init(metrics_out *o, size_t max) {
    memset(o, 0, sizeof(*o));
    o->max = max > 0 ? max : METRICS_OUT_DEFAULT_MAX;
}

void metrics_out_free(metrics_out *o) {
    free(o->buf);
    memset(o, 0, sizeof(*o));
}

/* Room for `need` more bytes and a NUL; false (and `failed`) if there is
 * none within the ceiling. */
static bool out_reserve(metrics_out *o, size_t need) {
    if (o->failed) {
        return false;
    }
    if (o->len + need + 1 <= o->cap) {
        return true;
    }
    if (o->len + need + 1 > o->max) {
        o->failed = true;
        return false;
    }
    size_t cap = o->cap > 0 ? o->cap : 4096;
    while (cap < o->len + need + 1) {
        cap *= 2;
    }
    if (cap > o->max) {
        cap = o->max;
    }
    char *buf = realloc(o->buf, cap);
    if (buf == NULL) {
        o->failed = true;
        return false;
    }
    o->buf = buf;
    o->cap = cap;
    return true;
}

static void out_bytes(metrics_out *o, const char *s, size_t n) {
    if (out_reserve(o, n)) {
        memcpy(o->buf + o->len, s, n);
        o->len += n;
        o->buf[o->len] = '\0';
    }
}

static void out_str(metrics_out *o, const char *s) {
    out_bytes(o, s, strlen(s));
}

static void out_fmt(metrics_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void out_fmt(metrics_out *o, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof(tmp)) {
        out_bytes(o, tmp, (size_t)n);
    } else {
        o->failed = true; /* only numbers come through here */
    }
}

/* Text with the format's escapes: backslash and newline everywhere, the
 * double quote too inside a label value. Other bytes go as they are (the
 * format is UTF-8; a value is the program's own text). */
static void out_escaped(metrics_out *o, const char *s, bool quote) {
    size_t start = 0, i = 0;
    for (; s[i] != '\0'; i++) {
        const char *esc = s[i] == '\\'           ? "\\\\"
                          : s[i] == '\n'         ? "\\n"
                          : quote && s[i] == '"' ? "\\\""
                                                 : NULL;
        if (esc != NULL) {
            out_bytes(o, s + start, i - start);
            out_str(o, esc);
            start = i + 1;
        }
    }
    out_bytes(o, s + start, i - start);
}

/* A float as the format writes one into buf[40]: NaN, +Inf, -Inf, a
 * whole number without exponent (no libm needed), or the shortest text that reads back as
 * the same double (0.1, not %.17g's 0.10000000000000001). */
static void format_double(char *buf, size_t size, double v) {
    if (isnan(v)) {
        snprintf(buf, size, "NaN");
    } else if (isinf(v)) {
        snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
    } else if (v > -1e15 && v < 1e15 && v == (double)(long long)v) {
        snprintf(buf, size, "%.0f", v);
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, size, "%.*g", prec, v);
            if (strtod(buf, NULL) == v) {
                return;
            }
        }
    }
}

static void out_double(metrics_out *o, double v) {
    char buf[40];
    format_double(buf, sizeof(buf), v);
    out_str(o, buf);
}

static void out_labels(metrics_out *o, const metrics_label *labels, size_t n,
                       const char *le) {
    if (n == 0 && le == NULL) {
        return;
    }
    out_str(o, "{");
    for (size_t i = 0; i < n; i++) {
        out_str(o, i > 0 ? "," : "");
        out_str(o, labels[i].name);
        out_str(o, "=\"");
        out_escaped(o, labels[i].value != NULL ? labels[i].value : "", true);
        out_str(o, "\"");
    }
    if (le != NULL) {
        out_str(o, n > 0 ? ",le=\"" : "le=\"");
        out_str(o, le);
        out_str(o, "\"");
    }
    out_str(o, "}");
}

void metrics_family(metrics_out *o, const char *name, metrics_type type,
                    const char *help) {
    static const char *const types[] = {"counter", "gauge", "histogram"};
    out_str(o, "# HELP ");
    out_str(o, name);
    out_str(o, " ");
    out_escaped(o, help, false);
    out_str(o, "\n# TYPE ");
    out_str(o, name);
    out_str(o, " ");
    out_str(o, types[type]);
    out_str(o, "\n");
}

void metrics_sample(metrics_out *o, const char *name, const metrics_label *labels,
                    size_t n, double value) {
    out_str(o, name);
    out_labels(o, labels, n, NULL);
    out_str(o, " ");
    out_double(o, value);
    out_str(o, "\n");
}

void metrics_sample_u64(metrics_out *o, const char *name, const metrics_label *labels,
                        size_t n, uint64_t value) {
    out_str(o, name);
    out_labels(o, labels, n, NULL);
    out_fmt(o, " %llu\n", (unsigned long long)value);
}

/* name + suffix, for the _bucket, _sum and _count series. */
static void out_series(metrics_out *o, const char *name, const char *suffix) {
    out_str(o, name);
    out_str(o, suffix);
}

void metrics_histogram_write(metrics_out *o, const char *name,
                             const metrics_label *labels, size_t n,
                             const metrics_histogram *h) {
    const metrics_buckets *b = h->buckets;
    /* Read once, so that the +Inf bucket and _count agree even while
     * observations go on. */
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= b->n; i++) {
        cumulative += atomic_load_explicit(&((metrics_histogram *)h)->counts[i],
                                           memory_order_relaxed);
        char le[40];
        format_double(le, sizeof(le),
                      i < b->n ? (double)b->le[i] / b->per_unit : INFINITY);
        out_series(o, name, "_bucket");
        out_labels(o, labels, n, le);
        out_fmt(o, " %llu\n", (unsigned long long)cumulative);
    }
    uint64_t sum =
        atomic_load_explicit(&((metrics_histogram *)h)->sum, memory_order_relaxed);
    out_series(o, name, "_sum");
    out_labels(o, labels, n, NULL);
    out_str(o, " ");
    out_double(o, (double)sum / b->per_unit);
    out_str(o, "\n");
    out_series(o, name, "_count");
    out_labels(o, labels, n, NULL);
    out_fmt(o, " %llu\n", (unsigned long long)cumulative);
}

/* ------------------------------------------------------------------------
 * The page. */

/* Resident memory from /proc/self/statm (pages); 0 if it cannot be read. */
static double resident_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL) {
        return 0;
    }
    unsigned long long size = 0, resident = 0;
    int got = fscanf(f, "%llu %llu", &size, &resident);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return got == 2 && page > 0 ? (double)resident * (double)page : 0;
}

static void collect_process(void *arg, metrics_out *o) {
    const metrics_page *p = arg;
    metrics_family(o, "tokend_build_info", METRICS_GAUGE,
                   "Always 1: the release of this program, as labels.");
    metrics_label build[] = {{"version", TOKEND_VERSION}, {"program", p->program}};
    metrics_sample(o, "tokend_build_info", build, 2, 1);
    metrics_family(o, "process_start_time_seconds", METRICS_GAUGE,
                   "When the process started, in Unix seconds.");
    metrics_sample(o, "process_start_time_seconds", NULL, 0, p->start_time_s);
    metrics_family(o, "process_resident_memory_bytes", METRICS_GAUGE,
                   "Resident memory of the process, in bytes.");
    metrics_sample(o, "process_resident_memory_bytes", NULL, 0, resident_bytes());
}

void metrics_page_init(metrics_page *p, const char *program) {
    memset(p, 0, sizeof(*p));
    p->program = program;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    p->start_time_s = (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1000.0;
    (void)metrics_page_add(p, collect_process, p);
}

int metrics_page_add(metrics_page *p, metrics_collect_fn fn, void *arg) {
    if (p->n == METRICS_COLLECTORS_MAX) {
        return TOKEND_RESOURCE_EXHAUSTED;
    }
    p->collectors[p->n].fn = fn;
    p->collectors[p->n].arg = arg;
    p->n++;
    return TOKEND_OK;
}

int metrics_page_render(const metrics_page *p, metrics_out *out, tokend_error *err) {
    for (size_t i = 0; i < p->n; i++) {
        p->collectors[i].fn(p->collectors[i].arg, out);
    }
    if (out->failed) {
        return error_set(err, TOKEND_RESOURCE_EXHAUSTED,
                         "the metrics page outgrew its %zu bytes", out->max);
    }
    if (out->buf == NULL) {
        out_str(out, ""); /* an empty page is still a page */
    }
    return out->failed ? error_set(err, TOKEND_RESOURCE_EXHAUSTED, "out of memory")
                       : TOKEND_OK;
}
