/*
 * metrics_http.h — `tokend serve --metrics-listen ADDR:PORT`: a small
 * HTTP listener (libmicrohttpd, one thread) that answers GET /metrics with
 * a metrics page (proto/metrics.h) in the Prometheus text format, and
 * nothing else. It is off by default; it needs no credential, so listen on
 * an address only the scraper reaches (the page holds no token, token id
 * or owner).
 */
#ifndef TOKEND_METRICS_HTTP_H
#define TOKEND_METRICS_HTTP_H

#include <stdbool.h>

#include "metrics.h"
#include "tokend.h"

typedef struct metrics_http metrics_http;

/* Whether `listen` is IPv4:PORT or [IPv6]:PORT with a numeric host (port
 * 0: any free one), checked before anything starts. */
bool metrics_http_listen_ok(const char *listen);

/* Serves `page` (which must outlive the listener) on `listen`. TOKEND_OK
 * and *out; INVALID_ARGUMENT for an address that is not one;
 * UNAVAILABLE when it cannot be listened on ("cannot listen on ADDR:
 * address already in use ..."), INTERNAL; err says which. */
int metrics_http_start(const char *listen, const metrics_page *page, metrics_http **out,
                       tokend_error *err);

/* The port listened on (useful with port 0). */
int metrics_http_port(const metrics_http *mh);

/* Stops the listener and frees it. NULL is ignored. */
void metrics_http_stop(metrics_http *mh);

#endif /* TOKEND_METRICS_HTTP_H */
