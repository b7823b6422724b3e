/*
 * upstream.h — the gateway's calls to tokend, asynchronous: one NNG REQ
 * socket, a context and an aio per call, and a callback when the call is
 * over, so that no HTTP worker thread ever waits for a reply.
 *
 * It speaks the envelope of proto/tokend.proto through the shared RPC layer
 * (proto/rpc.h: packing, capped decoding, status mapping) and the generated
 * protobuf-c types; it knows nothing of HTTP and nothing of service/. It is
 * the only gateway module that touches NNG.
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

#include "tokend.h"

typedef struct upstream upstream;
typedef struct upstream_call upstream_call;

typedef struct upstream_config {
    const char *const *urls; /* tokend URLs to dial, at least one */
    size_t n_urls;
    int timeout_ms;   /* limit of each call, send and reply together */
    int max_inflight; /* calls in flight at once */
} upstream_config;

/* upstream_start() refused the call: max_inflight calls are in flight. */
#define UPSTREAM_OVERLOADED (-1)

/* Opens the socket and starts dialling every URL in the background (a
 * tokend that is not up yet is retried every 10..500 ms). Returns 0 and
 * *out, or a tokend status with err filled. */
int upstream_open(const upstream_config *cfg, upstream **out, tokend_error *err);

/* Runs once per started call, on an NNG thread, when the call is over. It
 * must not block (NNG has few such threads); typically it wakes whoever
 * waits for the call. */
typedef void (*upstream_done_fn)(void *arg);

/*
 * Starts calling TokenService method `method` (e.g. "Verify") with `input`
 * (its request message) and `credential` (NULL or "": none). Everything is
 * packed before this returns, so the caller may free `input` at once; the
 * packed payload is wiped (it may carry a token).
 *
 * Returns 0 with *out set: `done(arg)` will run exactly once, maybe before
 * this function returns. Otherwise `done` never runs and the result is
 * UPSTREAM_OVERLOADED, TOKEND_UNAVAILABLE (shutting down) or
 * TOKEND_INTERNAL (out of memory, unknown method).
 */
int upstream_start(upstream *up, const char *method, const ProtobufCMessage *input,
                   const char *credential, upstream_done_fn done, void *arg,
                   upstream_call **out);

/*
 * The outcome of a finished call (call only after `done` ran). Returns the
 * tokend status: TOKEND_OK with *output the method's response message, or
 * why it failed — the service's status, or TOKEND_UNAVAILABLE (tokend not
 * reachable within the time limit, connection lost), TOKEND_DEADLINE_EXCEEDED
 * (no reply in time), TOKEND_BAD_MESSAGE (undecodable reply) — with
 * *message a readable detail that never contains a token. Both pointers
 * stay valid until upstream_call_release(). Decoding happens here, on the
 * caller's thread, not in the NNG callback.
 */
int upstream_call_result(upstream_call *call, const ProtobufCMessage **output,
                         const char **message);

/* Gives a finished call back (wiping the reply, which may carry a token).
 * NULL is ignored. */
void upstream_call_release(upstream_call *call);

/* Calls in flight now. */
int upstream_inflight(upstream *up);

/* Refuses new calls, closes the socket (calls in flight finish with
 * TOKEND_UNAVAILABLE, their `done` runs) and waits up to wait_ms for every
 * `done` to have run. */
void upstream_shutdown(upstream *up, int wait_ms);

/* Frees the pool and the upstream; every call must have been released.
 * NULL is ignored. */
void upstream_free(upstream *up);

#endif /* GATEWAY_UPSTREAM_H */
