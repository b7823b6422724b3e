/*
 * server.c — NNG REP serving with a pool of aio-driven contexts, and
 * dispatch of the tokend.v1 envelope through the served service's descriptor.
 * See server.h for the shape; this file's comments say why.
 */
#include "server.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/tls/tls.h>
#include <nng/supplemental/util/platform.h>

#include "crypto.h"
#include "error.h"
#include "log.h"
#include "route.h"
#include "rpc.h"
#include "secret.h"
#include "tls.h"
#include "tokend.h"

typedef enum ctx_state { CTX_RECV, CTX_WORK, CTX_SEND } ctx_state;

/* One context: one request at a time, from receipt to reply. */
typedef struct server_ctx {
    server *srv;
    nng_ctx ctx;
    nng_aio *aio;
    ctx_state state;
    nng_msg *msg;             /* the request, reused for the reply */
    rpc_arena arena;          /* budget for decoding this request */
    Tokend__V1__Request *req; /* decoded envelope (arena) */
    ProtobufCMessage *input;  /* decoded payload (arena) */
    const ProtobufCMethodDescriptor *method;
    int status; /* set by server_call_fail */
    char message[256];
    char note[512]; /* logfmt pairs for the log line (a Verify's route: 160) */
    size_t note_len;
    bool quiet; /* its OK line will not be logged: skip notes */
    struct timespec started;
} server_ctx;

struct server {
    nng_socket sock;
    nng_listener *listeners;
    size_t n_listeners;
    server_ctx *ctxs;
    int n_ctxs;
    ProtobufCService *svc;
    size_t max_message;
    server_observe_fn observe;
    void *observe_arg;
    atomic_bool draining;
    atomic_int in_flight;
    atomic_uint_fast64_t requests;
};

static void ctx_callback(void *arg);

static int64_t elapsed_us(const struct timespec *since) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)(now.tv_sec - since->tv_sec) * 1000000 +
           (now.tv_nsec - since->tv_nsec) / 1000;
}

/* Frees a request or a reply NNG gave back, wiping it first: either may
 * hold a credential or a token. NULL is ignored. */
static void server_msg_free(nng_msg *msg) {
    if (msg != NULL) {
        secret_wipe(nng_msg_body(msg), nng_msg_len(msg));
        nng_msg_free(msg);
    }
}

static void ctx_recv(server_ctx *c) {
    c->state = CTX_RECV;
    nng_ctx_recv(c->ctx, c->aio);
}

/* Frees what decoding the request allocated. */
static void ctx_release(server_ctx *c) {
    if (c->input != NULL) {
        protobuf_c_message_free_unpacked(c->input, &c->arena.base);
        c->input = NULL;
    }
    if (c->req != NULL) {
        protobuf_c_message_free_unpacked(&c->req->base, &c->arena.base);
        c->req = NULL;
    }
    c->method = NULL;
}

/* Makes `s` valid UTF-8 (bytes of 0x80 and up become '?' if it is not).
 * Reply.message is a proto3 string, which strict decoders (Go, Java,
 * Python) refuse unless it is UTF-8, failing the whole reply; yet it can
 * quote what the caller sent (an unknown method's name), cut to fit. */
static void utf8_scrub(char *s) {
    if (rpc_utf8_ok(s, strlen(s))) {
        return;
    }
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s >= 0x80) {
            *s = '?';
        }
    }
}

/* Packs the reply envelope into the request's message and sends it. */
static void ctx_reply(server_ctx *c, const ProtobufCMessage *output) {
    Tokend__V1__Reply reply = TOKEND__V1__REPLY__INIT;
    uint8_t stack_buf[1024];
    uint8_t *payload = NULL;
    if (c->req != NULL) {
        reply.request_id = c->req->request_id;
    }
    if (output != NULL) {
        size_t len = protobuf_c_message_get_packed_size(output);
        payload = len <= sizeof(stack_buf) ? stack_buf : malloc(len);
        if (payload == NULL) {
            c->status = TOKEND_INTERNAL;
            snprintf(c->message, sizeof(c->message), "out of memory");
        } else {
            protobuf_c_message_pack(output, payload);
            reply.payload.data = payload;
            reply.payload.len = len;
            c->status = TOKEND_OK;
        }
    }
    reply.status = rpc_status_to_wire(c->status);
    utf8_scrub(c->message);
    reply.message = c->status == TOKEND_OK ? "" : c->message;

    size_t len = protobuf_c_message_get_packed_size(&reply.base);
    /* The request's bytes (a credential, a token) go before its buffer is
     * reused or grown for the reply, and so does the packed output (a new
     * token). The reply itself is freed by NNG once sent, which offers no
     * hook to wipe it. */
    secret_wipe(nng_msg_body(c->msg), nng_msg_len(c->msg));
    nng_msg_clear(c->msg);
    if (nng_msg_realloc(c->msg, len) == 0) {
        protobuf_c_message_pack(&reply.base, nng_msg_body(c->msg));
    } else {
        nng_msg_clear(c->msg); /* an empty reply reads as BAD_MESSAGE */
    }
    if (payload != NULL) {
        secret_wipe(payload, reply.payload.len);
    }
    if (payload != stack_buf) {
        free(payload);
    }

    int64_t dur_us = elapsed_us(&c->started);
    if (c->srv->observe != NULL) {
        c->srv->observe(c->srv->observe_arg, c->method, c->status,
                        c->status == TOKEND_OK ? output : NULL, dur_us);
    }
    const char *method = c->method ? c->method->name : "-";
    log_level level =
        c->status == TOKEND_INTERNAL || c->status == TOKEND_STORAGE_ERROR
            ? LOG_ERROR
            : (c->method && strcmp(method, "Verify") == 0 ? LOG_DEBUG : LOG_INFO);
    if (level >= log_min_level) {
        char q[300];
        log_write(level, "rpc", "method=%s request_id=%llu status=%s dur_us=%lld%s%s%s%s",
                  method, (unsigned long long)reply.request_id,
                  tokend_status_name(c->status), (long long)dur_us,
                  c->note_len ? " " : "", c->note, c->status ? " error=" : "",
                  c->status ? log_quote(q, sizeof(q), c->message) : "");
    }
    ctx_release(c);
    c->state = CTX_SEND;
    nng_aio_set_msg(c->aio, c->msg);
    c->msg = NULL;
    nng_ctx_send(c->ctx, c->aio);
}

/* The closure every handler answers through (protobuf-c's convention:
 * output NULL means failure, with the status set by server_call_fail). */
static void ctx_closure(const ProtobufCMessage *output, void *closure_data) {
    server_ctx *c = closure_data;
    if (output == NULL && c->status == TOKEND_OK) {
        c->status = TOKEND_INTERNAL;
        snprintf(c->message, sizeof(c->message), "handler gave no reply");
    }
    ctx_reply(c, output);
}

static void ctx_fail_now(server_ctx *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void ctx_fail_now(server_ctx *c, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    c->status = status;
    vsnprintf(c->message, sizeof(c->message), fmt, ap);
    va_end(ap);
    ctx_reply(c, NULL);
}

/* A request has arrived: decode, check, dispatch. */
static void ctx_dispatch(server_ctx *c) {
    server *srv = c->srv;
    size_t len = nng_msg_len(c->msg);
    const uint8_t *body = nng_msg_body(c->msg);

    clock_gettime(CLOCK_MONOTONIC, &c->started);
    c->status = TOKEND_OK;
    c->message[0] = '\0';
    c->note[0] = '\0';
    c->note_len = 0;
    c->quiet = false;
    atomic_fetch_add(&srv->requests, 1);

    if (len > srv->max_message) {
        ctx_fail_now(c, TOKEND_RESOURCE_EXHAUSTED,
                     "request of %zu bytes exceeds the maximum of %zu", len,
                     srv->max_message);
        return;
    }
    rpc_arena_init(&c->arena, rpc_decode_budget(len));
    c->req = tokend__v1__request__unpack(&c->arena.base, len, body);
    if (c->req == NULL) {
        ctx_fail_now(c,
                     c->arena.exhausted ? TOKEND_RESOURCE_EXHAUSTED : TOKEND_BAD_MESSAGE,
                     c->arena.exhausted ? "request envelope exceeds the decode budget"
                                        : "request is not a tokend.v1.Request envelope");
        return;
    }
    if (atomic_load(&srv->draining)) {
        ctx_fail_now(c, TOKEND_UNAVAILABLE, "service is shutting down");
        return;
    }
    if (c->req->deadline_unix_ms != 0 && c->req->deadline_unix_ms < rpc_now_ms()) {
        ctx_fail_now(c, TOKEND_DEADLINE_EXCEEDED,
                     "deadline passed before the request "
                     "was served");
        return;
    }
    char why[160];
    if (!route_context_ok(c->req->context, "context", why, sizeof(why))) {
        ctx_fail_now(c, TOKEND_INVALID_ARGUMENT, "%s", why);
        return;
    }
    const ProtobufCMethodDescriptor *method =
        protobuf_c_service_descriptor_get_method_by_name(srv->svc->descriptor,
                                                         c->req->method);
    if (method == NULL) {
        char q[80];
        ctx_fail_now(c, TOKEND_UNIMPLEMENTED, "unknown method %s",
                     log_quote(q, sizeof(q), c->req->method));
        return;
    }
    /* A method of the descriptor this build has no handler for (protobuf-c
     * would call NULL): answered as a method it does not have. */
    typedef void (*generic_handler)(void);
    const generic_handler *handlers = (const generic_handler *)(srv->svc + 1);
    if (handlers[method - srv->svc->descriptor->methods] == NULL) {
        ctx_fail_now(c, TOKEND_UNIMPLEMENTED, "method %s is not served here",
                     method->name);
        return;
    }
    c->method = method;
    /* Verify is the hot path and logs only at debug: formatting notes for a
     * line nobody prints would be pure cost. */
    c->quiet = log_min_level > LOG_DEBUG && strcmp(method->name, "Verify") == 0;
    c->input = protobuf_c_message_unpack(method->input, &c->arena.base,
                                         c->req->payload.len, c->req->payload.data);
    if (c->input == NULL) {
        ctx_fail_now(c,
                     c->arena.exhausted ? TOKEND_RESOURCE_EXHAUSTED : TOKEND_BAD_MESSAGE,
                     c->arena.exhausted ? "payload exceeds the decode budget"
                                        : "payload is not a valid %s",
                     method->input->name);
        return;
    }
    unsigned index = (unsigned)(method - srv->svc->descriptor->methods);
    srv->svc->invoke(srv->svc, index, c->input, ctx_closure, c);
}

static void ctx_callback(void *arg) {
    server_ctx *c = arg;
    server *srv = c->srv;
    int rv = nng_aio_result(c->aio);
    switch (c->state) {
        case CTX_RECV:
            if (rv != 0) {
                if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
                    return; /* the socket is closing */
                }
                ctx_recv(c);
                return;
            }
            c->msg = nng_aio_get_msg(c->aio);
            c->state = CTX_WORK;
            atomic_fetch_add(&srv->in_flight, 1);
            ctx_dispatch(c);
            return;
        case CTX_SEND:
            if (rv != 0) {
                server_msg_free(nng_aio_get_msg(c->aio));
            }
            atomic_fetch_sub(&srv->in_flight, 1);
            if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
                return;
            }
            ctx_recv(c);
            return;
        case CTX_WORK:
            return; /* not driven by the aio */
    }
}

const Tokend__V1__RequestContext *server_call_context(void *closure_data) {
    server_ctx *c = closure_data;
    return c->req != NULL ? c->req->context : NULL;
}

const char *server_call_credential(void *closure_data) {
    server_ctx *c = closure_data;
    return c->req != NULL && c->req->credential != NULL ? c->req->credential : "";
}

void server_call_fail(void *closure_data, int status, const char *fmt, ...) {
    server_ctx *c = closure_data;
    va_list ap;
    va_start(ap, fmt);
    c->status = status == TOKEND_OK ? TOKEND_INTERNAL : status;
    vsnprintf(c->message, sizeof(c->message), fmt, ap);
    va_end(ap);
    ctx_reply(c, NULL);
}

void server_call_note(void *closure_data, const char *fmt, ...) {
    server_ctx *c = closure_data;
    if (c->quiet || c->note_len >= sizeof(c->note) - 2) {
        return;
    }
    if (c->note_len > 0) {
        c->note[c->note_len++] = ' ';
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->note + c->note_len, sizeof(c->note) - c->note_len, fmt, ap);
    va_end(ap);
    if (n > 0) {
        c->note_len += (size_t)n;
        if (c->note_len >= sizeof(c->note)) {
            c->note_len = sizeof(c->note) - 1;
        }
    }
}

/* The one TLS configuration of every TLS listener: the service's
 * certificate and key and, for mutual TLS, the CAs a client's certificate
 * must chain to (a client without one is refused in the handshake). The
 * PEM texts are not kept: NNG parses them here. */
static int server_tls_config(const server_config *cfg, nng_tls_config **out,
                             tokend_error *err) {
    *out = NULL;
    if (cfg->tls_cert_file == NULL || cfg->tls_key_file == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "a tls+tcp:// listener needs --tls-cert and --tls-key");
    }
    char *cert = NULL, *key = NULL, *ca = NULL;
    nng_tls_config *tls = NULL;
    int status = tls_read_pem("--tls-cert", cfg->tls_cert_file, &cert, err);
    if (status == TOKEND_OK) {
        status = tls_read_pem("--tls-key", cfg->tls_key_file, &key, err);
    }
    if (status == TOKEND_OK && cfg->tls_client_ca_file != NULL) {
        status = tls_read_pem("--tls-client-ca", cfg->tls_client_ca_file, &ca, err);
    }
    if (status == TOKEND_OK && crypto_key_pair_ok(cert, key, err) != TOKEND_OK) {
        status = error_prefix(err, "cannot use --tls-cert %s with --tls-key %s: ",
                              cfg->tls_cert_file, cfg->tls_key_file);
    }
    int rv = 0;
    if (status == TOKEND_OK &&
        (rv = nng_tls_config_alloc(&tls, NNG_TLS_MODE_SERVER)) != 0) {
        status = error_set(err, TOKEND_INTERNAL, "cannot make a TLS configuration: %s",
                           nng_strerror(rv));
    }
    if (status == TOKEND_OK &&
        (rv = nng_tls_config_own_cert(tls, cert, key, NULL)) != 0) {
        status = error_set(err, TOKEND_INVALID_ARGUMENT,
                           "cannot use --tls-cert %s with --tls-key %s: %s",
                           cfg->tls_cert_file, cfg->tls_key_file, nng_strerror(rv));
    }
    if (status == TOKEND_OK && ca != NULL &&
        ((rv = nng_tls_config_ca_chain(tls, ca, NULL)) != 0 ||
         (rv = nng_tls_config_auth_mode(tls, NNG_TLS_AUTH_MODE_REQUIRED)) != 0)) {
        status =
            error_set(err, TOKEND_INVALID_ARGUMENT,
                      "cannot use --tls-client-ca %s (PEM CA certificates expected): %s",
                      cfg->tls_client_ca_file, nng_strerror(rv));
    }
    secret_free(key);
    free(cert);
    free(ca);
    if (status != TOKEND_OK) {
        if (tls != NULL) {
            nng_tls_config_free(tls);
        }
        return status;
    }
    *out = tls;
    return TOKEND_OK;
}

/* Listens on `url`, a TLS one with `tls`, and records the listener. */
static int server_listen(server *srv, const char *url, nng_tls_config *tls,
                         tokend_error *err) {
    nng_listener l;
    int rv = nng_listener_create(&l, srv->sock, url);
    if (rv == 0 && tls_url(url)) {
        /* The listener takes a hold of its own on the configuration. */
        rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, tls);
    }
    if (rv == 0 && (rv = nng_listener_start(l, 0)) != 0) {
        nng_listener_close(l);
    }
    if (rv == NNG_EADDRINUSE) {
        /* The usual first-start snag: say what it means and the way out. */
        return error_set(
            err, TOKEND_UNAVAILABLE,
            "cannot listen on %s: address already in use (another process "
            "listens there); pick another with --listen URL or TOKEND_LISTEN",
            url);
    }
    if (rv == NNG_EPERM) {
        return error_set(err, TOKEND_UNAVAILABLE,
                         "cannot listen on %s: permission denied (a port below 1024 "
                         "needs root); pick another with --listen URL or TOKEND_LISTEN",
                         url);
    }
    if (rv != 0) {
        return error_set(err, TOKEND_UNAVAILABLE, "cannot listen on %s: %s", url,
                         nng_strerror(rv));
    }
    srv->listeners[srv->n_listeners++] = l;
    return TOKEND_OK;
}

/* NNG's rv is turned into a status here, where it arises, with
 * nng_strerror's text in *err. */
int server_start(const server_config *cfg, ProtobufCService *svc, server **out,
                 tokend_error *err) {
    server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        return error_set(err, TOKEND_INTERNAL, "out of memory");
    }
    srv->svc = svc;
    srv->max_message = cfg->max_message;
    srv->observe = cfg->observe;
    srv->observe_arg = cfg->observe_arg;
    srv->n_ctxs = cfg->contexts > 0 ? cfg->contexts : 128;
    int rv = nng_rep0_open(&srv->sock);
    if (rv != 0) {
        free(srv);
        return error_set(err, TOKEND_INTERNAL, "cannot open a REP socket: %s",
                         nng_strerror(rv));
    }
    /* Receive somewhat more than the limit, so a request just over it gets
     * a RESOURCE_EXHAUSTED reply instead of a dropped connection; past this
     * ceiling NNG drops the connection unread (protection against memory
     * exhaustion by a single peer). */
    size_t ceiling = cfg->max_message * 4 > cfg->max_message + (1u << 20)
                         ? cfg->max_message * 4
                         : cfg->max_message + (1u << 20);
    nng_socket_set_size(srv->sock, NNG_OPT_RECVMAXSZ, ceiling);

    int status = TOKEND_OK;
    srv->listeners = calloc(cfg->n_listen, sizeof(*srv->listeners));
    srv->ctxs = calloc((size_t)srv->n_ctxs, sizeof(*srv->ctxs));
    if (srv->listeners == NULL || srv->ctxs == NULL) {
        status = error_set(err, TOKEND_INTERNAL, "out of memory");
        goto fail;
    }
    nng_tls_config *tls = NULL;
    for (size_t i = 0; i < cfg->n_listen && tls == NULL; i++) {
        if (tls_url(cfg->listen[i]) &&
            (status = server_tls_config(cfg, &tls, err)) != TOKEND_OK) {
            goto fail;
        }
    }
    for (size_t i = 0; i < cfg->n_listen && status == TOKEND_OK; i++) {
        status = server_listen(srv, cfg->listen[i], tls, err);
    }
    if (tls != NULL) {
        nng_tls_config_free(tls); /* the listeners hold it */
    }
    if (status != TOKEND_OK) {
        goto fail;
    }
    for (int i = 0; i < srv->n_ctxs; i++) {
        server_ctx *c = &srv->ctxs[i];
        c->srv = srv;
        if ((rv = nng_aio_alloc(&c->aio, ctx_callback, c)) != 0 ||
            (rv = nng_ctx_open(&c->ctx, srv->sock)) != 0) {
            status = error_set(err, TOKEND_INTERNAL, "cannot open context %d: %s", i,
                               nng_strerror(rv));
            goto fail;
        }
    }
    for (int i = 0; i < srv->n_ctxs; i++) {
        ctx_recv(&srv->ctxs[i]);
    }
    *out = srv;
    return TOKEND_OK;
fail:
    server_close(srv);
    return status;
}

int server_drain(server *srv, int drain_ms) {
    atomic_store(&srv->draining, true);
    for (size_t i = 0; i < srv->n_listeners; i++) {
        nng_listener_close(srv->listeners[i]);
    }
    int waited = 0;
    while (atomic_load(&srv->in_flight) > 0 && waited < drain_ms) {
        nng_msleep(5);
        waited += 5;
    }
    return atomic_load(&srv->in_flight);
}

void server_close(server *srv) {
    if (srv == NULL) {
        return;
    }
    nng_close(srv->sock);
    for (int i = 0; srv->ctxs != NULL && i < srv->n_ctxs; i++) {
        server_ctx *c = &srv->ctxs[i];
        if (c->aio != NULL) {
            nng_aio_stop(c->aio);
            nng_aio_free(c->aio);
        }
        server_msg_free(c->msg);
        ctx_release(c);
    }
    free(srv->ctxs);
    free(srv->listeners);
    free(srv);
}

uint64_t server_requests(server *srv) {
    return atomic_load(&srv->requests);
}

int server_in_flight(server *srv) {
    return atomic_load(&srv->in_flight);
}
