/*
 * stats.h — the gateway's metrics page (GET /metrics, docs/metrics.md):
 * requests by route class and HTTP status, forward-auth verdicts by
 * reason (counted as each request finishes, from its path, status and
 * problem code), and the upstream's calls to tokend (latency by method, in
 * flight, calls tokend did not answer), read at scrape time.
 *
 * Label values are route classes, status codes, problem codes and method
 * names, all fixed sets of this program: never a token, a token id, an
 * owner or a path as sent.
 */
#ifndef GATEWAY_STATS_H
#define GATEWAY_STATS_H

#include "http.h"
#include "metrics.h"
#include "upstream.h"

typedef struct gw_stats gw_stats;

/* The classes requests are counted by. */
typedef enum gw_route_class {
    GW_ROUTE_AUTH,   /* /v1/auth: forward auth */
    GW_ROUTE_TOKENS, /* /v1/tokens and /v1/tokens/{id}... */
    GW_ROUTE_SELF,   /* /v1/tokens/self */
    GW_ROUTE_USAGE,  /* /v1/usage..., .../usage */
    GW_ROUTE_EVENTS, /* /v1/events..., .../events */
    GW_ROUTE_HEALTH, /* /healthz, /readyz */
    GW_ROUTE_OTHER,  /* everything else: /metrics, /v1/openapi.json, no route */
    GW_ROUTE_COUNT
} gw_route_class;

/* The class of a path as sent (without the query). */
gw_route_class gw_stats_route_class(const char *path);
const char *gw_stats_route_name(gw_route_class c);

/* Counts for `up` (borrowed, outlives the stats); NULL when out of memory.
 * Free with gw_stats_free (NULL is ignored) once the HTTP server stopped. */
gw_stats *gw_stats_new(upstream *up);
void gw_stats_free(gw_stats *s);

/* Counts a finished request (from http_handlers.finished). Lock-free. */
void gw_stats_request(gw_stats *s, const http_request *req, int status);

/* The page: build info, process start, requests, verdicts, upstream. */
const metrics_page *gw_stats_page(const gw_stats *s);

#endif /* GATEWAY_STATS_H */
