/*
 * server.h — the RPC front of tokend: NNG REP sockets, a pool of contexts
 * driven by aio callbacks, the envelope, and dispatch through protoc-c's
 * generated service descriptor.
 *
 * The only service module that touches NNG. Each context is a small state
 * machine (RECV -> WORK -> SEND -> RECV, NNG's demo/async shape): a
 * request is decoded with a capped allocator, its method looked up by name
 * in the descriptor of the service served (TokenService on the --listen
 * URLs, Control on the control socket), its payload unpacked with that method's
 * input descriptor, and the ProtobufCService's invoke() called. The
 * handler answers through its closure (now, or later from the writer
 * thread); the closure packs the output into the reply envelope and sends.
 * Callbacks never block: reads of the store are microseconds, writes are
 * handed to the writer thread. TLS listeners (tls+tcp://) share one NNG TLS
 * configuration: the service's certificate and, for mutual TLS, the CAs a
 * client's certificate must chain to.
 */
#ifndef TOKEND_SERVER_H
#define TOKEND_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "tokend.pb-c.h"

#include "tokend.h"

typedef struct server server;

/* Told of every call answered: the method (NULL when the request named
 * none this server serves, or did not decode), the status, the output
 * (NULL on failure) and how long the call took from receipt to reply, in
 * microseconds. Runs on NNG's threads and the writer's, so it must be
 * quick and never block (metrics.h's atomics). */
typedef void (*server_observe_fn)(void *arg, const ProtobufCMethodDescriptor *method,
                                  int status, const ProtobufCMessage *output,
                                  int64_t dur_us);

typedef struct server_config {
    const char *const *listen; /* URLs: ipc://PATH, tcp://HOST:PORT, ... */
    size_t n_listen;
    size_t max_message; /* bytes; larger requests are refused unread */
    int contexts;       /* requests served at once */
    /* PEM files for the TLS listeners (tls_url() of tls.h), read during
     * server_start and not kept: the certificate chain and its private key,
     * needed when there is such a listener, and optionally the CA(s) a
     * client's certificate must chain to (NULL: no client certificate is
     * asked for). */
    const char *tls_cert_file;
    const char *tls_key_file;
    const char *tls_client_ca_file;
    server_observe_fn observe; /* NULL: none */
    void *observe_arg;
} server_config;

/* Listens on every URL and starts serving `svc` (which must outlive the
 * server); on TOKEND_OK *out is the server, to drain and close. A URL that
 * cannot be listened on is TOKEND_UNAVAILABLE, with the URL and NNG's
 * reason in *err; a TLS listener without a certificate and key, or TLS
 * files that cannot be read or used, TOKEND_INVALID_ARGUMENT; lack of
 * memory or of NNG resources TOKEND_INTERNAL. */
int server_start(const server_config *cfg, ProtobufCService *svc, server **out,
                 tokend_error *err);

/* Stops taking new requests (new ones are answered UNAVAILABLE) and waits
 * up to drain_ms for the ones in flight to be answered. Returns how many
 * were still in flight when it gave up (0: drained). */
int server_drain(server *srv, int drain_ms);

/* Closes the sockets and frees the server. Replies still pending are
 * dropped; call after server_drain and after the writer has stopped. */
void server_close(server *srv);

/* Requests answered so far. */
uint64_t server_requests(server *srv);

/* Requests received and not yet answered, now. */
int server_in_flight(server *srv);

/* --- for handlers: `closure_data` of a handler is its call --- */

/* The caller credential of the call ("" if none). Valid until the reply. */
const char *server_call_credential(void *closure_data);

/* The envelope's RequestContext (Request.context): the request the call is
 * made on behalf of, already checked against its bounds (route.h); NULL
 * when the caller sent none. Valid until the call is answered. */
const Tokend__V1__RequestContext *server_call_context(void *closure_data);

/* Answers the call with an error status and a message (printf-style; never
 * put a token in it). The handler must not call its closure afterwards. */
void server_call_fail(void *closure_data, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Adds "k=v" pairs (logfmt) to the call's log line, e.g. the token id. */
void server_call_note(void *closure_data, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* TOKEND_SERVER_H */
