/*
 * stats.c — the gateway's metrics page (stats.h, docs/metrics.md).
 */
#include "stats.h"

#include <stdlib.h>
#include <string.h>

#include "tokend.h"

/* HTTP statuses counted: 100..599, each its own slot. */
#define STATUS_MIN 100
#define STATUS_SLOTS 500

/* The reasons a forward-auth (/v1/auth) request is answered with: OK for
 * a 2xx, else the problem's code when it is one of these, else OTHER. */
static const char *const verdicts[] = {
    "OK",         "MISSING_TOKEN",        "MALFORMED",         "NOT_FOUND",
    "EXPIRED",    "INSUFFICIENT_ABILITY", "BAD_REQUEST",       "INVALID_ARGUMENT",
    "OVERLOADED", "UNAVAILABLE",          "DEADLINE_EXCEEDED", "INTERNAL",
    "OTHER",
};
#define N_VERDICTS (sizeof(verdicts) / sizeof(verdicts[0]))

/* Statuses of upstream_observed.failures, shown as its reasons. */
static const int failure_statuses[] = {TOKEND_UNAVAILABLE, TOKEND_DEADLINE_EXCEEDED,
                                       TOKEND_BAD_MESSAGE, TOKEND_INTERNAL};

struct gw_stats {
    upstream *up;
    metrics_page page;
    metrics_counter requests[GW_ROUTE_COUNT][STATUS_SLOTS];
    metrics_counter verdicts[N_VERDICTS];
};

static bool starts_with(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* `path` is `base` or below it. */
static bool under(const char *path, const char *base) {
    size_t n = strlen(base);
    return strncmp(path, base, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

gw_route_class gw_stats_route_class(const char *path) {
    if (path == NULL) {
        return GW_ROUTE_OTHER;
    }
    if (strcmp(path, "/v1/auth") == 0) {
        return GW_ROUTE_AUTH;
    }
    if (strcmp(path, "/v1/tokens/self") == 0) {
        return GW_ROUTE_SELF;
    }
    if (under(path, "/v1/usage") ||
        (starts_with(path, "/v1/") && ends_with(path, "/usage"))) {
        return GW_ROUTE_USAGE;
    }
    if (under(path, "/v1/events") ||
        (starts_with(path, "/v1/") && ends_with(path, "/events"))) {
        return GW_ROUTE_EVENTS;
    }
    if (under(path, "/v1/tokens")) {
        return GW_ROUTE_TOKENS;
    }
    if (strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0) {
        return GW_ROUTE_HEALTH;
    }
    return GW_ROUTE_OTHER;
}

const char *gw_stats_route_name(gw_route_class c) {
    static const char *const names[GW_ROUTE_COUNT] = {"auth",   "tokens", "self", "usage",
                                                      "events", "health", "other"};
    return c < GW_ROUTE_COUNT ? names[c] : "other";
}

static size_t verdict_of(int status, const char *code) {
    if (status >= 200 && status < 300) {
        return 0;
    }
    for (size_t i = 1; code != NULL && i < N_VERDICTS - 1; i++) {
        if (strcmp(code, verdicts[i]) == 0) {
            return i;
        }
    }
    return N_VERDICTS - 1;
}

void gw_stats_request(gw_stats *s, const http_request *req, int status) {
    if (status < STATUS_MIN || status >= STATUS_MIN + STATUS_SLOTS) {
        return; /* not answered (the connection went first) */
    }
    gw_route_class c = gw_stats_route_class(http_path(req));
    metrics_counter_add(&s->requests[c][status - STATUS_MIN], 1);
    if (c == GW_ROUTE_AUTH) {
        metrics_counter_add(&s->verdicts[verdict_of(status, http_reply_code(req))], 1);
    }
}

static void collect_requests(void *arg, metrics_out *o) {
    const gw_stats *s = arg;
    const char *name = "tokend_gateway_http_requests_total";
    metrics_family(o, name, METRICS_COUNTER,
                   "HTTP requests answered, by route class and status code.");
    for (int c = 0; c < GW_ROUTE_COUNT; c++) {
        for (int i = 0; i < STATUS_SLOTS; i++) {
            uint64_t v = metrics_counter_get(&s->requests[c][i]);
            if (v == 0) {
                continue; /* a status once seen, from then on */
            }
            char code[12]; /* an int, as the compiler counts; a status is 3 digits */
            snprintf(code, sizeof(code), "%d", STATUS_MIN + i);
            metrics_label l[] = {{"route", gw_stats_route_name((gw_route_class)c)},
                                 {"code", code}};
            metrics_sample_u64(o, name, l, 2, v);
        }
    }
    name = "tokend_gateway_auth_verdicts_total";
    metrics_family(o, name, METRICS_COUNTER,
                   "Forward-auth (/v1/auth) answers, by reason: OK or the problem code.");
    for (size_t i = 0; i < N_VERDICTS; i++) {
        metrics_label l[] = {{"reason", verdicts[i]}};
        metrics_sample_u64(o, name, l, 1, metrics_counter_get(&s->verdicts[i]));
    }
}

static void collect_upstream(void *arg, metrics_out *o) {
    const gw_stats *s = arg;
    upstream_observed uo;
    upstream_observe(s->up, &uo);
    const char *name = "tokend_gateway_rpc_duration_seconds";
    metrics_family(o, name, METRICS_HISTOGRAM,
                   "Calls to tokend, from start to reply (or failure), by method.");
    for (size_t i = 0; i < uo.svc->n_methods; i++) {
        metrics_label l[] = {{"method", uo.svc->methods[i].name}};
        metrics_histogram_write(o, name, l, 1, &uo.latency_us[i]);
    }
    metrics_family(o, "tokend_gateway_rpc_in_flight", METRICS_GAUGE,
                   "Calls to tokend in flight (--max-inflight bounds it).");
    metrics_sample(o, "tokend_gateway_rpc_in_flight", NULL, 0, uo.in_flight);
    name = "tokend_gateway_upstream_errors_total";
    metrics_family(o, name, METRICS_COUNTER,
                   "Calls to tokend without an answer from it, by reason (OVERLOADED: "
                   "refused at --max-inflight, never sent).");
    for (size_t i = 0; i < sizeof(failure_statuses) / sizeof(failure_statuses[0]); i++) {
        metrics_label l[] = {{"reason", tokend_status_name(failure_statuses[i])}};
        metrics_sample_u64(o, name, l, 1,
                           metrics_counter_get(&uo.failures[failure_statuses[i]]));
    }
    metrics_label l[] = {{"reason", "OVERLOADED"}};
    metrics_sample_u64(o, name, l, 1, uo.overloaded);
}

gw_stats *gw_stats_new(upstream *up) {
    gw_stats *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->up = up;
    metrics_page_init(&s->page, "tokend-gateway");
    (void)metrics_page_add(&s->page, collect_requests, s);
    (void)metrics_page_add(&s->page, collect_upstream, s);
    return s;
}

void gw_stats_free(gw_stats *s) {
    free(s);
}

const metrics_page *gw_stats_page(const gw_stats *s) {
    return &s->page;
}
