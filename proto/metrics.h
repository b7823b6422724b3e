/*
 * metrics.h — Prometheus metrics: lock-free counters and histograms cheap
 * enough for the hot paths, and a writer of the text exposition format
 * 0.0.4 (the format every Prometheus server and promtool read).
 *
 * Recording is one relaxed atomic add (a counter) or a short search of a
 * fixed bucket list and two adds (a histogram): no lock, no allocation,
 * safe from any thread. Reading happens only at scrape time, when a page
 * (metrics_page) asks each of its collectors to write its families into a
 * metrics_out: a program registers one collector per module, each reading
 * that module's own stats function, so adding a module's metrics is one
 * collector and one metrics_page_add.
 *
 * Label values are the program's own words (a method name, a status name,
 * a route class): never a token, a token id or an owner, which would leak
 * who uses the service and grow the page without bound. The writer
 * escapes whatever it is given as the format requires, so even a wrong
 * value cannot break the page.
 */
#ifndef TOKEND_METRICS_H
#define TOKEND_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokend.h"

/* ------------------------------------------------------------------------
 * Recording. */

/* A monotonic count. Zero-initialised storage is a counter at 0. */
typedef struct metrics_counter {
    _Atomic uint64_t v;
} metrics_counter;

static inline void metrics_counter_add(metrics_counter *c, uint64_t n) {
    atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

static inline uint64_t metrics_counter_get(const metrics_counter *c) {
    return atomic_load_explicit(&((metrics_counter *)c)->v, memory_order_relaxed);
}

/* Most finite buckets of a histogram. */
#define METRICS_BUCKETS_MAX 24

/* A histogram's upper bounds, in whole base units (microseconds, jobs),
 * ascending; the exposed unit is a base unit divided by `per_unit` (1e6
 * for microseconds shown as seconds, 1 for counts: a division, so that
 * 10 us shows as 1e-05, not as 10 * 1e-6 = 9.999999999999999e-06).
 * Shared by every histogram of that kind; static. */
typedef struct metrics_buckets {
    size_t n;
    double per_unit;
    uint64_t le[METRICS_BUCKETS_MAX];
} metrics_buckets;

/* Latencies in microseconds, shown in seconds: 10 us to 5 s. */
extern const metrics_buckets metrics_latency_us;
/* Sizes (jobs in a group): 1 to 1024, powers of two. */
extern const metrics_buckets metrics_size;

/* Observations per bucket (not cumulative: the writer sums them), the
 * last slot for those above every bound, and their sum in base units. */
typedef struct metrics_histogram {
    const metrics_buckets *buckets;
    _Atomic uint64_t counts[METRICS_BUCKETS_MAX + 1];
    _Atomic uint64_t sum;
} metrics_histogram;

/* Sets the bucket list and zeroes the counts (before any observe). */
void metrics_histogram_init(metrics_histogram *h, const metrics_buckets *buckets);

/* Records one observation of `v` base units. */
void metrics_histogram_observe(metrics_histogram *h, uint64_t v);

/* A monotonic clock in microseconds, for timing what is observed. */
int64_t metrics_now_us(void);

/* ------------------------------------------------------------------------
 * Writing the exposition format. */

typedef enum metrics_type {
    METRICS_COUNTER,
    METRICS_GAUGE,
    METRICS_HISTOGRAM,
} metrics_type;

typedef struct metrics_label {
    const char *name;  /* [a-zA-Z_][a-zA-Z0-9_]*, the program's own */
    const char *value; /* any text; escaped on output */
} metrics_label;

/* A page being written: a growing buffer with a ceiling. Past the
 * ceiling (or out of memory) further writes are dropped and `failed` is
 * set, so a collector never has to check each call. */
typedef struct metrics_out {
    char *buf;
    size_t len, cap, max;
    bool failed;
} metrics_out;

/* Up to `max` bytes (0: 4 MiB). */
void metrics_out_init(metrics_out *o, size_t max);
void metrics_out_free(metrics_out *o);

/* "# HELP name help" and "# TYPE name type": once per family, before its
 * samples. */
void metrics_family(metrics_out *o, const char *name, metrics_type type,
                    const char *help);

/* One sample line: name{labels} value. n may be 0 (labels NULL). */
void metrics_sample(metrics_out *o, const char *name, const metrics_label *labels,
                    size_t n, double value);
/* The same with a whole number, exact beyond 2^53. */
void metrics_sample_u64(metrics_out *o, const char *name, const metrics_label *labels,
                        size_t n, uint64_t value);

/* A histogram's samples: name_bucket{labels,le="…"} cumulative counts
 * ending with le="+Inf", then name_sum and name_count. */
void metrics_histogram_write(metrics_out *o, const char *name,
                             const metrics_label *labels, size_t n,
                             const metrics_histogram *h);

/* ------------------------------------------------------------------------
 * The page: collectors asked in turn at each scrape. */

/* Writes one module's families; reads the module's stats, never blocks
 * for long (a scrape runs beside the traffic). */
typedef void (*metrics_collect_fn)(void *arg, metrics_out *out);

#define METRICS_COLLECTORS_MAX 16

typedef struct metrics_page {
    struct {
        metrics_collect_fn fn;
        void *arg;
    } collectors[METRICS_COLLECTORS_MAX];
    size_t n;
    const char *program; /* the build_info label: "tokend", "tokend-gateway" */
    double start_time_s; /* Unix seconds when the page was made */
} metrics_page;

/* A page whose first collector writes tokend_build_info{version, program},
 * process_start_time_seconds (now) and process_resident_memory_bytes. */
void metrics_page_init(metrics_page *p, const char *program);

/* Adds a collector; TOKEND_RESOURCE_EXHAUSTED past METRICS_COLLECTORS_MAX. */
int metrics_page_add(metrics_page *p, metrics_collect_fn fn, void *arg);

/* Asks every collector in turn into *out (initialised by the caller).
 * TOKEND_OK, or TOKEND_RESOURCE_EXHAUSTED (with err) if the page outgrew
 * the buffer's ceiling or memory. */
int metrics_page_render(const metrics_page *p, metrics_out *out, tokend_error *err);

/* The media type of the text format, for the HTTP reply. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif /* TOKEND_METRICS_H */
