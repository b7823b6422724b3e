/*
 * rpc_client.h — the client end of the tokend wire, one engine for
 * libtokend and the gateway: a REQ socket dialling the service's URLs, and
 * calls, each on an NNG context and aio of its own.
 *
 * A call's life: rpc_call_new() makes it (once: a call serves one request
 * after another); rpc_call_start() packs the envelope of rpc.h straight
 * into an NNG message and sends it, and the reply is received under the
 * same deadline. When the call is over, its `done` runs on an NNG thread;
 * a call made without `done` is instead driven to its end by
 * rpc_call_wait() on the owner's thread. Either way the owner then reads
 * rpc_call_result() on its own thread (the reply is decoded there, with the
 * capped allocator of rpc.h) and gives the call back with rpc_call_reset()
 * for its next request, or rpc_call_free().
 *
 * This is the only module of the shared layer that touches NNG sockets. It
 * knows nothing of HTTP, of libtokend's result structs or of who waits for
 * a call. Failures are tokend statuses with a tokend_error (error.h), the
 * one mapping of NNG's errors to statuses is here, and no message carries
 * a token. Every buffer of its own that held a credential, a token or a
 * reply is wiped before it is freed (NNG's internal copy of a sent request
 * is freed by NNG, which offers no hook to wipe it).
 */
#ifndef TOKEND_RPC_CLIENT_H
#define TOKEND_RPC_CLIENT_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "tokend.h"
#include "tokend.pb-c.h"

typedef struct rpc_client rpc_client;
typedef struct rpc_call rpc_call;

typedef struct rpc_client_config {
    const char *const *urls; /* service URLs to dial, at least one */
    size_t n_urls;
    /* What failure messages call the service ("could not reach WHERE
     * within 500 ms"). NULL: its URLs, joined and cut to 160 bytes. The
     * gateway says "tokend": its messages reach HTTP clients, which have
     * no business with its network. Copied. */
    const char *where;
    /* TLS of the URLs that tls_url() (tls.h) names, as PEM file paths,
     * read by rpc_client_open and not kept. tls_ca_file, the CA(s) the
     * service's certificate must chain to, is required when a URL is a TLS
     * one: the service is always verified. tls_cert_file and tls_key_file,
     * a pair, are the client's certificate, for a service that asks for
     * one. tls_server_name is the name the service's certificate must be
     * issued for; NULL or "": each URL's host. All NULL without TLS; set
     * with no TLS URL, they are refused. */
    const char *tls_ca_file;
    const char *tls_cert_file;
    const char *tls_key_file;
    const char *tls_server_name;
} rpc_client_config;

/*
 * Opens the REQ socket and starts dialling every URL in the background: a
 * service that is not up yet is dialled again every 10..500 ms, and calls
 * meanwhile wait for a connection until their deadline — unless every
 * URL's dial attempts since its last connection were refused (nothing
 * listens there: ECONNREFUSED, or no ipc:// socket file), which ends a
 * call waiting for a connection within tens of milliseconds. A dial that
 * is merely slow, or a listener that accepts but never answers, still
 * gets the call's whole time. A request is never
 * resent blindly (CreateToken is not idempotent). Replies are refused above
 * RPC_MAX_MESSAGE_CEILING bytes. A TLS URL is dialled with the TLS files of
 * cfg, the service's certificate verified against the CA file and the
 * server name (a failed handshake is retried like a service that is not
 * up). Returns TOKEND_OK and *out (free it with rpc_client_free), or
 * INVALID_ARGUMENT (no URL, an empty one, one NNG cannot dial; a TLS URL
 * without a CA file, TLS files without a TLS URL, a certificate without
 * its key or the reverse, TLS files that cannot be read or used) or
 * INTERNAL, with err filled.
 */
int rpc_client_open(const rpc_client_config *cfg, rpc_client **out, tokend_error *err);

/* Closes the socket, from any thread: every call in flight ends at once
 * with TOKEND_UNAVAILABLE ("client is closed"; its `done` runs), and so do
 * calls started later. Closing twice is harmless. */
void rpc_client_close(rpc_client *client);

/* Closes the client if need be and frees it. Every call made on it must
 * have been freed first. NULL is ignored. */
void rpc_client_free(rpc_client *client);

/* Runs once per started call, on an NNG thread, when the call is over. It
 * must not block (NNG has 4 such threads for everything); typically it
 * wakes whoever waits for the call. The call may be reset, restarted or
 * freed by another thread as soon as it is called. */
typedef void (*rpc_call_done_fn)(void *arg);

/*
 * Makes a call on `client`: a context and an aio of its own. With `done`,
 * each request's end runs done(arg) on an NNG thread; without (NULL), the
 * owner drives each request with rpc_call_wait() and no NNG thread runs
 * anything of it, which spares a synchronous caller the thread hops.
 * Returns TOKEND_OK and *out, or UNAVAILABLE (the client is closed) or
 * INTERNAL, with err filled.
 */
int rpc_call_new(rpc_client *client, rpc_call_done_fn done, void *arg, rpc_call **out,
                 tokend_error *err);

/*
 * Starts `call` (new or reset, not in flight) on TokenService method
 * `method` with `input`, its request message, sent with `credential` (NULL
 * or "": none) and `context`, the envelope's Request.context: the request
 * the call is made on behalf of (NULL: none; packed as given, not
 * checked, so the service refuses one past its bounds). timeout_ms (> 0)
 * bounds the whole call: waiting for a connection, sending and the reply;
 * it is also the deadline the envelope gives the service. `input` and
 * `context` are packed before this returns, and the packed copy wiped (it
 * may hold a token).
 *
 * Returns TOKEND_OK: the call is in flight and will end (its `done` runs
 * once, maybe before this returns). Or TOKEND_INTERNAL (out of memory,
 * `input` of another type than the method's) with err filled: nothing was
 * sent and `done` does not run.
 */
int rpc_call_start(rpc_call *call, const ProtobufCMethodDescriptor *method,
                   const ProtobufCMessage *input, const char *credential,
                   const Tokend__V1__RequestContext *context, int timeout_ms,
                   tokend_error *err);

/* Returns once the started call is over and its `done` (if any) has
 * returned; for a call without `done`, takes its steps meanwhile. Owner's
 * thread. */
void rpc_call_wait(rpc_call *call);

/*
 * The outcome of a call that is over (its `done` ran, or rpc_call_wait
 * returned), on the owner's thread; the first call decodes the reply.
 * Returns the status and fills err (if not NULL) with it and a message:
 * TOKEND_OK with *output the method's response message; the service's own
 * status and message; or the transport's — UNAVAILABLE (every URL refused
 * the connection: "connection refused: is tokend running at URL?" —
 * "is WHERE running?" when the config's `where` hides the network —; no
 * connection within the time limit — for a TLS URL whose handshakes
 * failed, the message says so, unless `where` hides the network —,
 * connection lost before the reply, client closed),
 * DEADLINE_EXCEEDED (no reply in time), BAD_MESSAGE (an undecodable reply,
 * or one to another request), RESOURCE_EXHAUSTED (a reply too large to
 * decode) — with *output NULL. *output stays valid until the call is reset
 * or freed; it is the owner's to wipe any token in it first.
 */
int rpc_call_result(rpc_call *call, const ProtobufCMessage **output, tokend_error *err);

/* Makes a call that is over (or new) ready to start again, on the owner's
 * thread: waits until its callback has returned, then frees its result,
 * wiping the reply. */
void rpc_call_reset(rpc_call *call);

/* Frees a call that is not in flight, with its result. NULL is ignored. */
void rpc_call_free(rpc_call *call);

#endif /* TOKEND_RPC_CLIENT_H */
