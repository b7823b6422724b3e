/*
 * stats.c — tokend's metrics page (stats.h, docs/metrics.md).
 */
#include "stats.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "rpc.h"
#include "tokend.h"

/* The statuses a Verify reply's reason can hold (tokend.proto). */
static const int verify_reasons[] = {TOKEND_OK, TOKEND_MALFORMED, TOKEND_NOT_FOUND,
                                     TOKEND_EXPIRED, TOKEND_INSUFFICIENT_ABILITY};
#define N_VERIFY_REASONS (sizeof(verify_reasons) / sizeof(verify_reasons[0]))

/* One method's counts; the last of stats_rpc.methods counts the calls
 * that named no method served here. */
typedef struct method_stats {
    metrics_counter by_status[TOKEND_STATUS_COUNT];
    metrics_histogram latency_us;
} method_stats;

struct stats_rpc {
    const ProtobufCServiceDescriptor *svc;
    const ProtobufCMethodDescriptor *verify; /* NULL if svc has none */
    metrics_counter verify_by_reason[TOKEND_STATUS_COUNT];
    size_t n_methods;
    method_stats methods[]; /* n_methods + 1 */
};

stats_rpc *stats_rpc_new(const ProtobufCServiceDescriptor *svc) {
    size_t n = svc->n_methods;
    stats_rpc *s = calloc(1, sizeof(*s) + (n + 1) * sizeof(method_stats));
    if (s == NULL) {
        return NULL;
    }
    s->svc = svc;
    s->n_methods = n;
    s->verify = protobuf_c_service_descriptor_get_method_by_name(svc, "Verify");
    for (size_t i = 0; i <= n; i++) {
        metrics_histogram_init(&s->methods[i].latency_us, &metrics_latency_us);
    }
    return s;
}

void stats_rpc_free(stats_rpc *s) {
    free(s);
}

void stats_rpc_observe(void *arg, const ProtobufCMethodDescriptor *method, int status,
                       const ProtobufCMessage *output, int64_t dur_us) {
    stats_rpc *s = arg;
    size_t i = s->n_methods;
    if (method != NULL && method >= s->svc->methods &&
        method < s->svc->methods + s->n_methods) {
        i = (size_t)(method - s->svc->methods);
    }
    if (status < 0 || status >= TOKEND_STATUS_COUNT) {
        status = TOKEND_INTERNAL;
    }
    metrics_counter_add(&s->methods[i].by_status[status], 1);
    metrics_histogram_observe(&s->methods[i].latency_us,
                              dur_us > 0 ? (uint64_t)dur_us : 0);
    /* A Verify answered OK carries its outcome in the reply: the reason. */
    if (method != NULL && method == s->verify && output != NULL) {
        int reason =
            rpc_status_from_wire(((const Tokend__V1__VerifyResponse *)output)->reason);
        if (reason >= 0 && reason < TOKEND_STATUS_COUNT) {
            metrics_counter_add(&s->verify_by_reason[reason], 1);
        }
    }
}

static const char *method_name(const stats_rpc *s, size_t i) {
    return i < s->n_methods ? s->svc->methods[i].name : "unknown";
}

static void collect_requests(const stats_rpc *s, metrics_out *o) {
    const char *name = "tokend_rpc_requests_total";
    metrics_family(o, name, METRICS_COUNTER,
                   "RPC calls answered, by method and status (the reply envelope's).");
    for (size_t i = 0; i <= s->n_methods; i++) {
        for (int st = 0; st < TOKEND_STATUS_COUNT; st++) {
            uint64_t v = metrics_counter_get(&s->methods[i].by_status[st]);
            /* OK always, so that a rate starts from 0; the rest once seen. */
            if (v > 0 || (st == TOKEND_OK && i < s->n_methods)) {
                metrics_label l[] = {{"method", method_name(s, i)},
                                     {"status", tokend_status_name(st)}};
                metrics_sample_u64(o, name, l, 2, v);
            }
        }
    }
    name = "tokend_rpc_request_duration_seconds";
    metrics_family(o, name, METRICS_HISTOGRAM,
                   "Time from a request's receipt to its reply being sent, by method.");
    for (size_t i = 0; i <= s->n_methods; i++) {
        metrics_label l[] = {{"method", method_name(s, i)}};
        metrics_histogram_write(o, name, l, 1, &s->methods[i].latency_us);
    }
}

static void collect_verify(const stats_rpc *s, metrics_out *o) {
    const char *name = "tokend_verify_total";
    metrics_family(o, name, METRICS_COUNTER,
                   "Verify calls answered, by the reason the reply gives (OK: valid "
                   "with the abilities asked for).");
    for (size_t i = 0; i < N_VERIFY_REASONS; i++) {
        metrics_label l[] = {{"reason", tokend_status_name(verify_reasons[i])}};
        metrics_sample_u64(o, name, l, 1,
                           metrics_counter_get(&s->verify_by_reason[verify_reasons[i]]));
    }
}

static void collect_rpc(void *arg, metrics_out *o) {
    const stats_sources *src = arg;
    collect_requests(src->rpc, o);
    collect_verify(src->rpc, o);
    metrics_family(o, "tokend_rpc_in_flight", METRICS_GAUGE,
                   "RPC requests received and not yet answered.");
    metrics_sample(o, "tokend_rpc_in_flight", NULL, 0, server_in_flight(src->srv));
}

static void collect_writer(void *arg, metrics_out *o) {
    const stats_sources *src = arg;
    writer_observed wo;
    writer_observe(src->w, &wo);
    metrics_family(o, "tokend_writer_commit_duration_seconds", METRICS_HISTOGRAM,
                   "Time of each group commit of writes, WAL fsync included.");
    metrics_histogram_write(o, "tokend_writer_commit_duration_seconds", NULL, 0,
                            wo.commit_us);
    metrics_family(o, "tokend_writer_group_jobs", METRICS_HISTOGRAM,
                   "Writes (jobs) committed together by one fsync.");
    metrics_histogram_write(o, "tokend_writer_group_jobs", NULL, 0, wo.group_jobs);
    metrics_family(o, "tokend_writer_writes_stopped", METRICS_GAUGE,
                   "1 while a disk fault stops writes (reads go on), else 0.");
    metrics_sample(o, "tokend_writer_writes_stopped", NULL, 0, wo.writes_stopped);
    /* Since the start until the first flush: a flusher that never ran
     * shows as lag too. */
    int64_t since =
        wo.last_flush_unix_ms != 0 ? wo.last_flush_unix_ms : wo.started_unix_ms;
    int64_t lag_ms = rpc_now_ms() - since;
    metrics_family(o, "tokend_usage_flush_lag_seconds", METRICS_GAUGE,
                   "Time since usage counts were last written to the store (since "
                   "the start before the first flush).");
    metrics_sample(o, "tokend_usage_flush_lag_seconds", NULL, 0,
                   (double)(lag_ms > 0 ? lag_ms : 0) / 1000.0);
    metrics_family(o, "tokend_usage_flush_duration_seconds", METRICS_GAUGE,
                   "How long the last usage flush took.");
    metrics_sample(o, "tokend_usage_flush_duration_seconds", NULL, 0,
                   (double)wo.last_flush_us / 1e6);
}

/* One gauge family of a per-column-family size. */
static void family_gauge(metrics_out *o, const store_sizes *sz, const char *name,
                         const char *help, size_t offset) {
    metrics_family(o, name, METRICS_GAUGE, help);
    for (size_t i = 0; i < STORE_FAMILIES; i++) {
        const store_family_sizes *f = &sz->families[i];
        metrics_label l[] = {{"cf", f->name}};
        metrics_sample_u64(o, name, l, 1, *(const uint64_t *)((const char *)f + offset));
    }
}

static void collect_store(void *arg, metrics_out *o) {
    const stats_sources *src = arg;
    store_sizes sz;
    if (store_sizes_read(src->st, &sz, NULL) != TOKEND_OK) {
        return; /* the store is closed: no sizes rather than made-up ones */
    }
    metrics_family(o, "tokend_rocksdb_block_cache_capacity_bytes", METRICS_GAUGE,
                   "Size of RocksDB's block cache (--block-cache-mb).");
    metrics_sample_u64(o, "tokend_rocksdb_block_cache_capacity_bytes", NULL, 0,
                       sz.block_cache_capacity);
    metrics_family(o, "tokend_rocksdb_block_cache_usage_bytes", METRICS_GAUGE,
                   "Memory in RocksDB's block cache: data, index and filter blocks.");
    metrics_sample_u64(o, "tokend_rocksdb_block_cache_usage_bytes", NULL, 0,
                       sz.block_cache_usage);
    metrics_family(o, "tokend_rocksdb_block_cache_pinned_bytes", METRICS_GAUGE,
                   "Block cache memory pinned by readers or by pinned L0 index blocks.");
    metrics_sample_u64(o, "tokend_rocksdb_block_cache_pinned_bytes", NULL, 0,
                       sz.block_cache_pinned);
    family_gauge(o, &sz, "tokend_rocksdb_memtable_bytes",
                 "Memory of the column family's memtables (writes not yet in tables).",
                 offsetof(store_family_sizes, memtable_bytes));
    family_gauge(o, &sz, "tokend_rocksdb_table_readers_bytes",
                 "Memory of table readers outside the block cache (estimate).",
                 offsetof(store_family_sizes, table_readers_bytes));
    family_gauge(o, &sz, "tokend_rocksdb_live_data_bytes",
                 "Live data of the column family (RocksDB's estimate).",
                 offsetof(store_family_sizes, live_data_bytes));
    family_gauge(o, &sz, "tokend_rocksdb_sst_bytes",
                 "Size of the column family's table (SST) files.",
                 offsetof(store_family_sizes, sst_bytes));
    family_gauge(o, &sz, "tokend_rocksdb_keys", "Keys in the column family (estimate).",
                 offsetof(store_family_sizes, keys));
}

static void collect_alerts(void *arg, metrics_out *o) {
    const stats_sources *src = arg;
    uint64_t counts[ALERTS_KINDS], dropped = 0;
    alerts_counts(src->alerts, counts, &dropped);
    metrics_family(o, "tokend_alerts_total", METRICS_COUNTER,
                   "Alerts raised (docs/alerts.md), by kind.");
    for (int k = 0; k < ALERTS_KINDS; k++) {
        metrics_label l[] = {{"kind", alerts_kind_name(ALERTS_FIRST + k)}};
        metrics_sample_u64(o, "tokend_alerts_total", l, 1, counts[k]);
    }
    metrics_family(o, "tokend_alert_observations_dropped_total", METRICS_COUNTER,
                   "Verify outcomes the alert queue had no room for (not examined).");
    metrics_sample_u64(o, "tokend_alert_observations_dropped_total", NULL, 0, dropped);
    if (src->wh == NULL) {
        return;
    }
    uint64_t delivered = 0, failed = 0, wh_dropped = 0;
    webhook_counts(src->wh, &delivered, &failed, &wh_dropped);
    metrics_family(o, "tokend_alert_webhook_deliveries_total", METRICS_COUNTER,
                   "Alerts the webhook answered 2xx to.");
    metrics_sample_u64(o, "tokend_alert_webhook_deliveries_total", NULL, 0, delivered);
    metrics_family(o, "tokend_alert_webhook_failed_attempts_total", METRICS_COUNTER,
                   "Webhook attempts that failed and were retried later.");
    metrics_sample_u64(o, "tokend_alert_webhook_failed_attempts_total", NULL, 0, failed);
    metrics_family(o, "tokend_alert_webhook_dropped_total", METRICS_COUNTER,
                   "Alerts never POSTed: the delivery queue was full or tokend stopped.");
    metrics_sample_u64(o, "tokend_alert_webhook_dropped_total", NULL, 0, wh_dropped);
}

int stats_page_add(metrics_page *page, const stats_sources *src) {
    int rv = TOKEND_OK;
    if (src->rpc != NULL && src->srv != NULL) {
        rv = metrics_page_add(page, collect_rpc, (void *)src);
    }
    if (rv == TOKEND_OK && src->w != NULL) {
        rv = metrics_page_add(page, collect_writer, (void *)src);
    }
    if (rv == TOKEND_OK && src->st != NULL) {
        rv = metrics_page_add(page, collect_store, (void *)src);
    }
    if (rv == TOKEND_OK && src->alerts != NULL) {
        rv = metrics_page_add(page, collect_alerts, (void *)src);
    }
    return rv;
}
