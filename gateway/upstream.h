/*
 * upstream.h — the gateway's calls to tokend, asynchronous: a pool of the
 * shared engine's calls (rpc_client.h: one NNG REQ socket, a context and an
 * aio per call, a callback when a call is over) and the limit on how many
 * are in flight, so that no HTTP worker thread ever waits for a reply and
 * a stalled tokend cannot pile up unbounded work.
 *
 * It knows nothing of HTTP and nothing of service/, and touches no NNG
 * object itself. Its failure messages call the service "tokend" (never by
 * URL: they reach HTTP clients).
 *
 * A call's life: upstream_start() sends; `done` runs once on an NNG thread
 * when the reply came, the time ran out or the connection failed; then the
 * owner reads upstream_call_result() on its own thread and gives the call
 * back with upstream_call_release(). Calls are pooled: a released call's
 * context and aio serve the next one.
 */
#ifndef GATEWAY_UPSTREAM_H
#define GATEWAY_UPSTREAM_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "metrics.h"
#include "rpc_client.h"
#include "tokend.h"

typedef struct upstream upstream;
typedef struct upstream_call upstream_call;

typedef struct upstream_config {
    const char *const *urls; /* tokend URLs to dial, at least one */
    size_t n_urls;
    int timeout_ms;   /* limit of each call, send and reply together */
    int max_inflight; /* calls in flight at once */
    /* TLS of tls+tcp:// URLs, as rpc_client_config's: PEM file paths (read
     * by upstream_open, not kept) and the server name; NULL: none. */
    const char *tls_ca_file;
    const char *tls_cert_file;
    const char *tls_key_file;
    const char *tls_server_name;
} upstream_config;

/* upstream_start() refused the call: max_inflight calls are in flight. */
#define UPSTREAM_OVERLOADED (-1)

/* Opens the engine's client and starts dialling every URL in the
 * background (a tokend that is not up yet is retried every 10..500 ms).
 * Returns TOKEND_OK and *out, or a tokend status with err filled:
 * INVALID_ARGUMENT for a URL that cannot be dialled at all, or TLS
 * settings that do not fit the URLs or cannot be read (rpc_client_open). */
int upstream_open(const upstream_config *cfg, upstream **out, tokend_error *err);

/*
 * Starts calling TokenService method `method` (e.g. "Verify") with `input`
 * (its request message), `credential` (NULL or "": none) and `context`,
 * the HTTP request the call is made for (the envelope's Request.context;
 * NULL: none), within
 * timeout_ms (0: the upstream's own limit; /readyz gives a shorter one).
 * Everything is
 * packed before this returns, so the caller may free `input` and `context`
 * at once; the
 * packed payload is wiped (it may carry a token).
 *
 * Returns 0 with *out set: `done(arg)` will run exactly once, on an NNG
 * thread, maybe before this function returns (*out is set before the call
 * is sent); it must not block. Otherwise `done` never runs, *out is NULL
 * and the result is UPSTREAM_OVERLOADED, TOKEND_UNAVAILABLE (shutting
 * down) or TOKEND_INTERNAL (out of memory, unknown method).
 */
int upstream_start(upstream *up, const char *method, const ProtobufCMessage *input,
                   const char *credential, const Tokend__V1__RequestContext *context,
                   int timeout_ms, rpc_call_done_fn done, void *arg, upstream_call **out);

/*
 * The outcome of a finished call (call only after `done` ran), on the
 * owner's thread, where the reply is decoded: rpc_call_result() of
 * rpc_client.h — the status, with err (if not NULL) holding it and a
 * readable message that never contains a token; *output the method's
 * response message when OK, valid until upstream_call_release().
 */
int upstream_call_result(upstream_call *call, const ProtobufCMessage **output,
                         tokend_error *err);

/* Gives a finished call back (wiping the reply, which may carry a token).
 * NULL is ignored. */
void upstream_call_release(upstream_call *call);

/* Calls in flight now. */
int upstream_inflight(upstream *up);

/* What the metrics page reads, at any time from any thread; valid until
 * upstream_free. */
typedef struct upstream_observed {
    const ProtobufCServiceDescriptor *svc; /* TokenService: latency_us's order */
    const metrics_histogram *latency_us;   /* per method: start to reply, in us */
    /* Per status: calls that got no answer from tokend (UNAVAILABLE,
     * DEADLINE_EXCEEDED, BAD_MESSAGE, INTERNAL: unreachable, too slow, a
     * reply that did not decode, no resources), TOKEND_STATUS_COUNT. */
    const metrics_counter *failures;
    uint64_t overloaded; /* calls refused at --max-inflight */
    int in_flight;
} upstream_observed;

void upstream_observe(upstream *up, upstream_observed *out);

/* Refuses new calls, closes the engine's socket (calls in flight finish
 * with TOKEND_UNAVAILABLE, their `done` runs) and waits up to wait_ms for
 * every `done` to have run. */
void upstream_shutdown(upstream *up, int wait_ms);

/* Frees the pool and the upstream; every call must have been released.
 * NULL is ignored. */
void upstream_free(upstream *up);

#endif /* GATEWAY_UPSTREAM_H */
