/*
 * stats.h — tokend's metrics page: the RPC counters the server feeds, and
 * the collectors that read each module's own stats at scrape time (the
 * server's calls in flight, the writer's commits and usage flushes, the
 * store's RocksDB sizes). docs/metrics.md lists every metric.
 *
 * Label values are method names, status names and column family names,
 * all from this program: never a token, a token id or an owner.
 */
#ifndef TOKEND_STATS_H
#define TOKEND_STATS_H

#include <protobuf-c/protobuf-c.h>

#include "metrics.h"
#include "alerts.h"
#include "server.h"
#include "store.h"
#include "webhook.h"
#include "writer.h"

/* Calls of one served service: by method and status, their latency by
 * method, and Verify's outcomes by reason. */
typedef struct stats_rpc stats_rpc;

/* For the methods of `svc` (which must outlive it); NULL when out of
 * memory. Free with stats_rpc_free (NULL is ignored) after the server. */
stats_rpc *stats_rpc_new(const ProtobufCServiceDescriptor *svc);
void stats_rpc_free(stats_rpc *s);

/* A server_observe_fn: `arg` is the stats_rpc. Lock-free. */
void stats_rpc_observe(void *arg, const ProtobufCMethodDescriptor *method, int status,
                       const ProtobufCMessage *output, int64_t dur_us);

/* What tokend's page reads; each must outlive the page's last render. */
typedef struct stats_sources {
    stats_rpc *rpc;
    server *srv;
    writer *w;
    store *st;
    alerts *alerts; /* NULL: no alerts page */
    webhook *wh;    /* NULL: no webhook configured */
} stats_sources;

/* Adds a collector per source to `page` (metrics_page_init'd). `src` is
 * kept: it must outlive the page's last render. TOKEND_OK or
 * TOKEND_RESOURCE_EXHAUSTED (the page is full). */
int stats_page_add(metrics_page *page, const stats_sources *src);

#endif /* TOKEND_STATS_H */
