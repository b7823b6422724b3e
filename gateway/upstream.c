/*
 * upstream.c — the gateway's pool of engine calls to tokend and its limit
 * on calls in flight. See upstream.h for the life of a call; the wire, the
 * deadlines, decoding and wiping are the engine's (rpc_client.c).
 *
 * It owns the pool and the count of calls in flight; it must not block in
 * the engine's `done` callback (it runs on an NNG thread) and must not
 * touch a call once the owner's `done` has returned.
 */
#include "upstream.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "error.h"
#include "rpc.h"

/* Defaults of upstream_config's limits. */
#define UPSTREAM_DEFAULT_TIMEOUT_MS 2000
#define UPSTREAM_DEFAULT_MAX_INFLIGHT 1024
/* Released calls kept for reuse at most (the rest are freed). */
#define UPSTREAM_POOL_MAX 1024

struct upstream_call {
    upstream *up;
    rpc_call *rpc;
    /* The owner's, for the request in flight. */
    rpc_call_done_fn done;
    void *done_arg;
    size_t method;      /* index in the TokenService descriptor */
    int64_t started_us; /* metrics_now_us at the start */
    upstream_call *next_free;
};

struct upstream {
    rpc_client *rpc;
    int timeout_ms;
    int max_inflight;
    atomic_int inflight;
    atomic_bool closing;
    pthread_mutex_t pool_mtx;
    upstream_call *pool;
    size_t n_pool;
    /* Metrics (upstream_observe). */
    metrics_histogram *latency_us; /* per TokenService method */
    metrics_counter failures[TOKEND_STATUS_COUNT];
    metrics_counter overloaded;
};

int upstream_open(const upstream_config *cfg, upstream **out, tokend_error *err) {
    *out = NULL;
    upstream *up = calloc(1, sizeof(*up));
    if (up == NULL) {
        return error_set(err, TOKEND_INTERNAL, "out of memory");
    }
    up->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : UPSTREAM_DEFAULT_TIMEOUT_MS;
    up->max_inflight =
        cfg->max_inflight > 0 ? cfg->max_inflight : UPSTREAM_DEFAULT_MAX_INFLIGHT;
    rpc_client_config rc = {
        .urls = cfg->urls,
        .n_urls = cfg->n_urls,
        .where = "tokend",
        .tls_ca_file = cfg->tls_ca_file,
        .tls_cert_file = cfg->tls_cert_file,
        .tls_key_file = cfg->tls_key_file,
        .tls_server_name = cfg->tls_server_name,
    };
    size_t n_methods = tokend__v1__token_service__descriptor.n_methods;
    up->latency_us = calloc(n_methods, sizeof(*up->latency_us));
    if (up->latency_us == NULL) {
        free(up);
        return error_set(err, TOKEND_INTERNAL, "out of memory");
    }
    for (size_t i = 0; i < n_methods; i++) {
        metrics_histogram_init(&up->latency_us[i], &metrics_latency_us);
    }
    int rv = rpc_client_open(&rc, &up->rpc, err);
    if (rv != TOKEND_OK) {
        free(up->latency_us);
        free(up);
        return rv;
    }
    pthread_mutex_init(&up->pool_mtx, NULL);
    *out = up;
    return TOKEND_OK;
}

/* The engine's `done` of every pooled call: the owner's `done`, then the
 * call stops counting. The owner may release (and another thread reuse)
 * the call as soon as its `done` returns, so nothing here touches it
 * afterwards. */
static void call_done(void *arg) {
    upstream_call *c = arg;
    upstream *up = c->up;
    metrics_histogram_observe(&up->latency_us[c->method],
                              (uint64_t)(metrics_now_us() - c->started_us));
    c->done(c->done_arg);
    atomic_fetch_sub(&up->inflight, 1);
}

static void call_destroy(upstream_call *c) {
    rpc_call_free(c->rpc);
    free(c);
}

/* A pooled call, or a new one. NULL when out of resources. */
static upstream_call *call_get(upstream *up) {
    pthread_mutex_lock(&up->pool_mtx);
    upstream_call *c = up->pool;
    if (c != NULL) {
        up->pool = c->next_free;
        up->n_pool--;
    }
    pthread_mutex_unlock(&up->pool_mtx);
    if (c != NULL) {
        return c;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->up = up;
    if (rpc_call_new(up->rpc, call_done, c, &c->rpc, NULL) != TOKEND_OK) {
        free(c);
        return NULL;
    }
    return c;
}

int upstream_start(upstream *up, const char *method_name, const ProtobufCMessage *input,
                   const char *credential, const Tokend__V1__RequestContext *context,
                   int timeout_ms, rpc_call_done_fn done, void *arg,
                   upstream_call **out) {
    *out = NULL;
    if (atomic_load(&up->closing)) {
        return TOKEND_UNAVAILABLE;
    }
    const ProtobufCMethodDescriptor *method = rpc_method(method_name);
    if (method == NULL) {
        return TOKEND_INTERNAL;
    }
    if (atomic_fetch_add(&up->inflight, 1) >= up->max_inflight) {
        atomic_fetch_sub(&up->inflight, 1);
        metrics_counter_add(&up->overloaded, 1);
        return UPSTREAM_OVERLOADED;
    }
    upstream_call *c = call_get(up);
    if (c == NULL) {
        atomic_fetch_sub(&up->inflight, 1);
        return TOKEND_INTERNAL;
    }
    c->done = done;
    c->done_arg = arg;
    c->method = (size_t)(method - tokend__v1__token_service__descriptor.methods);
    c->started_us = metrics_now_us();
    /* `done` may run (and read *out) before rpc_call_start returns. */
    *out = c;
    int rv = rpc_call_start(c->rpc, method, input, credential, context,
                            timeout_ms > 0 ? timeout_ms : up->timeout_ms, NULL);
    if (rv != TOKEND_OK) {
        *out = NULL;
        atomic_fetch_sub(&up->inflight, 1);
        upstream_call_release(c);
    }
    return rv;
}

/* The statuses of a call tokend did not answer (upstream_observed). */
static bool unanswered(int status) {
    return status == TOKEND_UNAVAILABLE || status == TOKEND_DEADLINE_EXCEEDED ||
           status == TOKEND_BAD_MESSAGE || status == TOKEND_INTERNAL;
}

int upstream_call_result(upstream_call *c, const ProtobufCMessage **output,
                         tokend_error *err) {
    int status = rpc_call_result(c->rpc, output, err);
    if (unanswered(status)) {
        metrics_counter_add(&c->up->failures[status], 1);
    }
    return status;
}

void upstream_call_release(upstream_call *c) {
    if (c == NULL) {
        return;
    }
    upstream *up = c->up;
    rpc_call_reset(c->rpc);
    pthread_mutex_lock(&up->pool_mtx);
    bool keep = up->n_pool < UPSTREAM_POOL_MAX && !atomic_load(&up->closing);
    if (keep) {
        c->next_free = up->pool;
        up->pool = c;
        up->n_pool++;
    }
    pthread_mutex_unlock(&up->pool_mtx);
    if (!keep) {
        call_destroy(c);
    }
}

int upstream_inflight(upstream *up) {
    return atomic_load(&up->inflight);
}

void upstream_observe(upstream *up, upstream_observed *out) {
    out->svc = &tokend__v1__token_service__descriptor;
    out->latency_us = up->latency_us;
    out->failures = up->failures;
    out->overloaded = metrics_counter_get(&up->overloaded);
    out->in_flight = atomic_load(&up->inflight);
}

void upstream_shutdown(upstream *up, int wait_ms) {
    atomic_store(&up->closing, true);
    /* Every call in flight finishes now, its `done` run. */
    rpc_client_close(up->rpc);
    for (int waited = 0; atomic_load(&up->inflight) > 0 && waited < wait_ms;
         waited += 5) {
        usleep(5 * 1000);
    }
}

void upstream_free(upstream *up) {
    if (up == NULL) {
        return;
    }
    if (!atomic_load(&up->closing)) {
        upstream_shutdown(up, 0);
    }
    upstream_call *c = up->pool;
    while (c != NULL) {
        upstream_call *next = c->next_free;
        call_destroy(c);
        c = next;
    }
    rpc_client_free(up->rpc);
    pthread_mutex_destroy(&up->pool_mtx);
    free(up->latency_us);
    free(up);
}
