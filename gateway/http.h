/*
 * http.h — the gateway's HTTP/1.1 server: libmicrohttpd with a pool of
 * epoll worker threads, keep-alive, optional TLS (GnuTLS, 1.2 and 1.3),
 * SO_REUSEPORT, and every limit of docs/gateway.md enforced before a
 * handler sees a request: unambiguous framing (400), header size (431),
 * body size (413, counted while reading), request arrival time, idle
 * time.
 *
 * It owns connections and requests, not meaning: the handlers given to
 * http_start() (api.c) decide every answer. A handler either replies at
 * once or suspends the request (http_suspend) and has it resumed later from
 * any thread (http_resume), so no worker thread ever waits on anything.
 * Every finished request is logged as one logfmt line (method if it is a
 * standard one, else OTHER; path without the query; status, duration,
 * client address, notes the handler added); header values are never
 * logged.
 */
#ifndef GATEWAY_HTTP_H
#define GATEWAY_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include <jansson.h>

#include "tokend.h"

typedef struct http_server http_server;
typedef struct http_request http_request;

typedef struct http_handlers {
    /* The request is whole (headers and body within the limits). Must
     * either reply (http_reply_*) or call http_suspend() and see that
     * http_resume() is called exactly once later. */
    void (*handle)(void *cls, http_request *req);
    /* A suspended request was resumed: reply now. */
    void (*resume)(void *cls, http_request *req);
    /* The request is over (answered, or the connection died): free what
     * the handler attached with http_set_data(). */
    void (*release)(void *cls, void *data);
    /* Optional (NULL: none): the request is over, `status` the HTTP
     * status sent (0: the connection ended before a reply went out). The
     * request may still be read (path, http_reply_code). Runs on a worker
     * thread; must not block. */
    void (*finished)(void *cls, const http_request *req, int status);
    void *cls;
} http_handlers;

typedef struct http_config {
    const char *listen; /* "HOST:PORT" or "[IPv6]:PORT" */
    int threads;
    size_t max_body;
    size_t max_header;
    int request_timeout_s;
    int idle_timeout_s;
    /* Connections open at once, in all and from one client address (an
     * IPv4 address, an IPv6 client's /64); both at least 1. A new
     * connection past either limit closes the connection that has been
     * idle longest among those it competes with (from its address, or
     * from any); with none idle it is answered 503 OVERLOADED and closed
     * before a byte is read (over HTTPS: closed). */
    int max_connections;
    int max_connections_per_ip;
    /* PEM texts (not file names) for HTTPS, or NULL for plain HTTP. The
     * server keeps the pointers until http_stop(). */
    const char *tls_cert_pem;
    const char *tls_key_pem;
    /* The Strict-Transport-Security value sent with every reply over
     * HTTPS (checked with http_hsts_ok), or NULL to send none. Never sent
     * over plain HTTP (RFC 6797 §7.2). Kept until http_stop(). */
    const char *hsts;
} http_config;

/* Makes jansson allocate through a wiping allocator, so that every JSON
 * buffer — parsed bodies, built documents, serialized replies, and the
 * buffers jansson outgrew on the way — is zeroed before it is freed: a
 * reply may carry a new token. Call once, before any other jansson use. */
void http_json_init(void);

/* True if `value` is a Strict-Transport-Security value the gateway
 * sends: "max-age=SECONDS", optionally followed by "; includeSubDomains"
 * and "; preload" (RFC 6797 §6.1; directive names in any case). */
bool http_hsts_ok(const char *value);

/* Parses "HOST:PORT"/"[IPv6]:PORT" with a numeric host. Returns false if
 * it is not one (used to check --listen before anything starts). */
bool http_listen_ok(const char *listen);

/* File descriptors a server started with cfg may hold at once: its
 * connections (a few more than max_connections, while refused ones
 * close), the listening socket and its threads' own. The process's limit
 * (RLIMIT_NOFILE) must allow this many besides its others, or past it new
 * connections would wait unanswered. */
size_t http_fds_needed(const http_config *cfg);

/* Starts serving. Returns TOKEND_OK and *out (stop it with http_stop), or
 * INVALID_ARGUMENT (a --listen that is not HOST:PORT, a connection limit
 * below 1), UNAVAILABLE (the address cannot be served: in use, not ours,
 * bad TLS files) or INTERNAL, with err filled. */
int http_start(const http_config *cfg, const http_handlers *handlers, http_server **out,
               tokend_error *err);

/* The port actually listened on (useful with port 0). */
int http_port(http_server *srv);

/* Serves `fd`, a connected stream socket made by the caller (one end of a
 * socketpair), exactly as a connection accepted on the listening socket:
 * same limits, handlers and log. The server owns fd from here on, also
 * when this fails (returns false). The fuzz target feeds requests through
 * it; tokend-gateway itself never calls it. */
bool http_serve_fd(http_server *srv, int fd);

/* Stops accepting connections (the listening socket is closed, so another
 * gateway on the same port takes them all) and waits up to wait_ms for
 * requests in progress to be answered. Returns how many were left. */
int http_quiesce(http_server *srv, int wait_ms);

/* Closes every connection and stops the threads. Suspended requests must
 * have been resumed first. Returns the number of requests served. */
uint64_t http_stop(http_server *srv);

/* --- The request, for handlers. Strings are the server's, valid until
 * the request is over. --- */

const char *http_method(const http_request *req);
/* The path as sent, without the query, not percent-decoded. */
const char *http_path(const http_request *req);
/* The body (NUL-terminated; may hold NUL bytes itself) and its length. */
const char *http_body(const http_request *req, size_t *len);
/* Value of the first header `name` (case-insensitive) or NULL, and how
 * many headers of that name there are. */
const char *http_header(const http_request *req, const char *name);
int http_header_count(const http_request *req, const char *name);
/* Calls fn(cls, value) for each header `name` (case-insensitive) in the
 * order sent, until fn returns false. */
void http_header_each(const http_request *req, const char *name,
                      bool (*fn)(void *cls, const char *value), void *cls);
/* The address of the connection's peer (AF_INET or AF_INET6), or NULL when
 * it has none of those (a socketpair's). */
const struct sockaddr *http_peer(const http_request *req);

/* Calls fn(cls, key, value) for each query parameter in order, as sent
 * (not percent-decoded; value NULL for a key without '='), until fn
 * returns false. Returns false if fn stopped it. */
bool http_query_each(const http_request *req,
                     bool (*fn)(void *cls, const char *key, const char *value),
                     void *cls);

/* The handler's own state for this request (NULL until set); the
 * handlers' release() frees it. */
void http_set_data(http_request *req, void *data);
void *http_data(const http_request *req);

/* Adds " key=value" (already logfmt-safe) to the request's log line. */
void http_log_note(http_request *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* --- Replying (once per request; a second reply replaces the first). --- */

/* Replies `status` with `doc` serialized as the body (steals the
 * reference; NULL, for a failed build, becomes a 500), typed
 * `content_type`. */
void http_reply_json(http_request *req, int status, const char *content_type,
                     json_t *doc);
/* Replies with a static body (not copied, never freed); len 0 means
 * strlen(body). */
void http_reply_static(http_request *req, int status, const char *content_type,
                       const void *body, size_t len);
/* Replies with no body (204). */
void http_reply_empty(http_request *req, int status);
/* Replies with an RFC 9457 problem, application/problem+json:
 *   {"type":"urn:tokend:problem:<code in kebab case>","code":CODE,
 *    "title":<reason phrase>,"status":STATUS,"detail":DETAIL}
 * (type "insufficient-scope" for INSUFFICIENT_ABILITY, as RFC 6750 names
 * it), and notes code=CODE for the log line. `detail` must hold no token. */
void http_reply_problem(http_request *req, int status, const char *code,
                        const char *detail);
/* Replies with a copy of body[0..len) (freed, wiped, with the request). */
void http_reply_text(http_request *req, int status, const char *content_type,
                     const char *body, size_t len);
/* The code of the problem the reply is (http_reply_problem), or NULL when
 * it is not one. */
const char *http_reply_code(const http_request *req);
/* Adds a response header (name static, value copied). False if out of room. */
bool http_reply_header(http_request *req, const char *name, const char *value);

/* --- Waiting without a thread. --- */

/* Parks the request: no thread serves it until http_resume(). Only from
 * handle(). */
void http_suspend(http_request *req);
/* Wakes a suspended request; resume() will run on a worker thread. Any
 * thread, exactly once per http_suspend(). */
void http_resume(http_request *req);

#endif /* GATEWAY_HTTP_H */
