/*
 * upstream.c — asynchronous calls to tokend over NNG REQ contexts. See
 * upstream.h for the life of a call; this file's comments say why.
 */
#include "upstream.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>

#include "error.h"
#include "rpc.h"
#include "tokend.h"

/* Reconnect back-off: short, so that a restarted tokend is found fast. */
#define UPSTREAM_RECONNECT_MIN_MS 10
#define UPSTREAM_RECONNECT_MAX_MS 500
/* Largest reply accepted; a page of 1000 tokens stays well below. */
#define UPSTREAM_RECV_MAX_BYTES ((size_t)RPC_MAX_MESSAGE_CEILING)
/* Released calls kept for reuse at most (the rest are freed). */
#define UPSTREAM_POOL_MAX 1024

typedef enum call_state { CALL_IDLE, CALL_SEND, CALL_RECV, CALL_DONE } call_state;

struct upstream_call {
    upstream *up;
    nng_ctx ctx;
    nng_aio *aio;
    call_state state;
    const ProtobufCMethodDescriptor *method;
    uint64_t request_id;
    nng_time deadline; /* nng_clock() ms */
    upstream_done_fn done;
    void *done_arg;
    /* Set by the callback: the reply, or why there is none. */
    nng_msg *reply_msg;
    int status;
    char message[256];
    /* Set by upstream_call_result (decoded once, on the owner's thread). */
    bool decoded;
    rpc_arena reply_arena;
    rpc_arena output_arena;
    Tokend__V1__Reply *reply;
    ProtobufCMessage *output;
    upstream_call *next_free;
};

struct upstream {
    nng_socket sock;
    int timeout_ms;
    int max_inflight;
    atomic_int inflight;
    atomic_bool closing;
    _Atomic uint64_t next_request_id;
    nng_mtx *pool_mtx;
    upstream_call *pool;
    size_t n_pool;
};

static void call_callback(void *arg);

/* Zeroes memory the compiler may not skip; len 0 (and NULL) is fine. */
static void wipe(void *ptr, size_t len) {
    if (ptr != NULL && len > 0) {
        explicit_bzero(ptr, len);
    }
}

static void wipe_free_msg(nng_msg *msg) {
    if (msg != NULL) {
        wipe(nng_msg_body(msg), nng_msg_len(msg));
        nng_msg_free(msg);
    }
}

int upstream_open(const upstream_config *cfg, upstream **out, tokend_error *err) {
    *out = NULL;
    if (cfg->n_urls == 0) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "no tokend URL given");
    }
    upstream *up = calloc(1, sizeof(*up));
    if (up == NULL || nng_mtx_alloc(&up->pool_mtx) != 0) {
        free(up);
        return error_set(err, TOKEND_INTERNAL, "out of memory");
    }
    up->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 2000;
    up->max_inflight = cfg->max_inflight > 0 ? cfg->max_inflight : 1024;
    atomic_init(&up->next_request_id, ((uint64_t)nng_random() << 32) | 1u);
    int rv = nng_req0_open(&up->sock);
    if (rv != 0) {
        error_set(err, TOKEND_INTERNAL, "cannot open an NNG REQ socket: %s",
                  nng_strerror(rv));
        nng_mtx_free(up->pool_mtx);
        free(up);
        return TOKEND_INTERNAL;
    }
    /* No blind resends (CreateToken is not idempotent; every call has its
     * own deadline). A bounded reply size, so a confused peer cannot make
     * us buffer without limit. Reconnect times on the socket, so dialers
     * inherit them. */
    if ((rv = nng_socket_set_ms(up->sock, NNG_OPT_REQ_RESENDTIME,
                                NNG_DURATION_INFINITE)) != 0 ||
        (rv = nng_socket_set_size(up->sock, NNG_OPT_RECVMAXSZ,
                                  UPSTREAM_RECV_MAX_BYTES)) != 0 ||
        (rv = nng_socket_set_ms(up->sock, NNG_OPT_RECONNMINT,
                                UPSTREAM_RECONNECT_MIN_MS)) != 0 ||
        (rv = nng_socket_set_ms(up->sock, NNG_OPT_RECONNMAXT,
                                UPSTREAM_RECONNECT_MAX_MS)) != 0) {
        error_set(err, TOKEND_INVALID_ARGUMENT, "cannot configure the NNG socket: %s",
                  nng_strerror(rv));
        goto fail;
    }
    for (size_t i = 0; i < cfg->n_urls; i++) {
        /* Non-blocking: a tokend that is down now is dialled again and
         * again in the background; requests meanwhile get 503. */
        rv = nng_dial(up->sock, cfg->urls[i], NULL, NNG_FLAG_NONBLOCK);
        if (rv != 0) {
            error_set(err, TOKEND_INVALID_ARGUMENT, "cannot dial %s: %s", cfg->urls[i],
                      nng_strerror(rv));
            goto fail;
        }
    }
    *out = up;
    return TOKEND_OK;
fail:
    nng_close(up->sock);
    nng_mtx_free(up->pool_mtx);
    free(up);
    return TOKEND_INVALID_ARGUMENT;
}

/* Frees what decoding the reply allocated, and the reply itself. */
static void call_clear(upstream_call *c) {
    if (c->output != NULL) {
        protobuf_c_message_free_unpacked(c->output, &c->output_arena.base);
        c->output = NULL;
    }
    if (c->reply != NULL) {
        protobuf_c_message_free_unpacked(&c->reply->base, &c->reply_arena.base);
        c->reply = NULL;
    }
    wipe_free_msg(c->reply_msg);
    c->reply_msg = NULL;
    c->decoded = false;
    c->status = TOKEND_OK;
    c->message[0] = '\0';
    c->state = CALL_IDLE;
}

static void call_destroy(upstream_call *c) {
    if (c->aio != NULL) {
        nng_aio_free(c->aio); /* stops and waits for a running callback */
    }
    nng_ctx_close(c->ctx);
    call_clear(c);
    free(c);
}

/* A pooled call, or a new one. NULL when out of resources. */
static upstream_call *call_get(upstream *up) {
    nng_mtx_lock(up->pool_mtx);
    upstream_call *c = up->pool;
    if (c != NULL) {
        up->pool = c->next_free;
        up->n_pool--;
    }
    nng_mtx_unlock(up->pool_mtx);
    if (c != NULL) {
        return c;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->up = up;
    if (nng_aio_alloc(&c->aio, call_callback, c) != 0) {
        free(c);
        return NULL;
    }
    if (nng_ctx_open(&c->ctx, up->sock) != 0) {
        nng_aio_free(c->aio);
        free(c);
        return NULL;
    }
    return c;
}

/* The call is over: tell its owner, then stop counting it. The owner may
 * release (and another thread reuse) the call as soon as `done` returns, so
 * nothing here touches it afterwards. */
static void call_finish(upstream_call *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void call_finish(upstream_call *c, int status, const char *fmt, ...) {
    upstream *up = c->up;
    c->status = status;
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->message, sizeof(c->message), fmt, ap);
        va_end(ap);
    }
    c->state = CALL_DONE;
    c->done(c->done_arg);
    atomic_fetch_sub(&up->inflight, 1);
}

static void call_callback(void *arg) {
    upstream_call *c = arg;
    upstream *up = c->up;
    int rv = nng_aio_result(c->aio);
    if (c->state == CALL_SEND) {
        if (rv != 0) {
            /* A failed send hands the message back. */
            wipe_free_msg(nng_aio_get_msg(c->aio));
            nng_aio_set_msg(c->aio, NULL);
            if (rv == NNG_ETIMEDOUT) {
                /* REQ hands a request to a connection only once one is
                 * up, so it never left: tokend is not reachable. */
                call_finish(c, TOKEND_UNAVAILABLE, "tokend not reachable within %d ms",
                            up->timeout_ms);
            } else if (rv == NNG_ENOMEM) {
                call_finish(c, TOKEND_INTERNAL, "out of memory");
            } else {
                call_finish(c, TOKEND_UNAVAILABLE, "sending to tokend failed: %s",
                            nng_strerror(rv));
            }
            return;
        }
        c->state = CALL_RECV;
        nng_time now = nng_clock();
        nng_duration left = c->deadline > now ? (nng_duration)(c->deadline - now) : 1;
        nng_aio_set_timeout(c->aio, left);
        nng_ctx_recv(c->ctx, c->aio);
        return;
    }
    if (c->state != CALL_RECV) {
        return;
    }
    if (rv == 0) {
        c->reply_msg = nng_aio_get_msg(c->aio);
        nng_aio_set_msg(c->aio, NULL);
        call_finish(c, TOKEND_OK, NULL);
    } else if (rv == NNG_ETIMEDOUT) {
        call_finish(c, TOKEND_DEADLINE_EXCEEDED, "no reply from tokend within %d ms",
                    up->timeout_ms);
    } else if (rv == NNG_ECONNRESET || rv == NNG_ECONNSHUT) {
        call_finish(c, TOKEND_UNAVAILABLE,
                    "connection to tokend lost before the reply (the call may or may "
                    "not have been carried out)");
    } else if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
        call_finish(c, TOKEND_UNAVAILABLE, "the gateway is shutting down");
    } else {
        call_finish(c, TOKEND_UNAVAILABLE, "no reply from tokend: %s", nng_strerror(rv));
    }
}

/* Packs the envelope for `method` straight into an NNG message. */
static int pack_request(upstream *up, const ProtobufCMethodDescriptor *method,
                        const ProtobufCMessage *input, const char *credential,
                        uint64_t request_id, nng_msg **out) {
    uint8_t stack_buf[512];
    size_t payload_len = protobuf_c_message_get_packed_size(input);
    uint8_t *payload = payload_len <= sizeof(stack_buf) ? stack_buf : malloc(payload_len);
    if (payload == NULL) {
        return TOKEND_INTERNAL;
    }
    protobuf_c_message_pack(input, payload);

    Tokend__V1__Request request = TOKEND__V1__REQUEST__INIT;
    request.method = (char *)method->name;
    request.request_id = request_id;
    request.deadline_unix_ms = rpc_now_ms() + up->timeout_ms;
    if (credential != NULL && credential[0] != '\0') {
        request.credential = (char *)credential;
    }
    request.payload.data = payload;
    request.payload.len = payload_len;

    nng_msg *msg = NULL;
    size_t len = protobuf_c_message_get_packed_size(&request.base);
    int rv = nng_msg_alloc(&msg, len);
    if (rv == 0) {
        protobuf_c_message_pack(&request.base, nng_msg_body(msg));
    }
    /* The payload may hold a token (Verify); NNG frees its own copy of the
     * message after sending, with no hook to wipe it. */
    wipe(payload, payload_len);
    if (payload != stack_buf) {
        free(payload);
    }
    if (rv != 0) {
        return TOKEND_INTERNAL;
    }
    *out = msg;
    return TOKEND_OK;
}

int upstream_start(upstream *up, const char *method_name, const ProtobufCMessage *input,
                   const char *credential, upstream_done_fn done, void *arg,
                   upstream_call **out) {
    *out = NULL;
    if (atomic_load(&up->closing)) {
        return TOKEND_UNAVAILABLE;
    }
    const ProtobufCMethodDescriptor *method = rpc_method(method_name);
    if (method == NULL || input->descriptor != method->input) {
        return TOKEND_INTERNAL;
    }
    if (atomic_fetch_add(&up->inflight, 1) >= up->max_inflight) {
        atomic_fetch_sub(&up->inflight, 1);
        return UPSTREAM_OVERLOADED;
    }
    upstream_call *c = call_get(up);
    if (c == NULL) {
        atomic_fetch_sub(&up->inflight, 1);
        return TOKEND_INTERNAL;
    }
    c->method = method;
    c->done = done;
    c->done_arg = arg;
    c->request_id = atomic_fetch_add(&up->next_request_id, 1);
    nng_msg *msg = NULL;
    if (pack_request(up, method, input, credential, c->request_id, &msg) != TOKEND_OK) {
        atomic_fetch_sub(&up->inflight, 1);
        upstream_call_release(c);
        return TOKEND_INTERNAL;
    }
    c->state = CALL_SEND;
    c->deadline = nng_clock() + (nng_time)up->timeout_ms;
    *out = c;
    /* One time limit for send and reply together: a send that waits for a
     * connection uses up the time the reply would have had. */
    nng_aio_set_timeout(c->aio, up->timeout_ms);
    nng_aio_set_msg(c->aio, msg);
    nng_ctx_send(c->ctx, c->aio);
    return 0;
}

/* Decodes the reply envelope and, if OK, the method's output. */
static void call_decode(upstream_call *c) {
    c->decoded = true;
    if (c->reply_msg == NULL) {
        return; /* status and message say why */
    }
    size_t len = nng_msg_len(c->reply_msg);
    rpc_arena_init(&c->reply_arena, rpc_decode_budget(len));
    c->reply =
        tokend__v1__reply__unpack(&c->reply_arena.base, len, nng_msg_body(c->reply_msg));
    if (c->reply == NULL) {
        c->status = TOKEND_BAD_MESSAGE;
        snprintf(c->message, sizeof(c->message), "%s reply from tokend is undecodable",
                 c->method->name);
        return;
    }
    int status = rpc_status_from_wire(c->reply->status);
    /* NNG pairs replies with requests itself; the envelope's id is checked
     * too. A refusal may carry id 0 when tokend could not read the request. */
    if (c->reply->request_id != c->request_id &&
        !(status != TOKEND_OK && c->reply->request_id == 0)) {
        c->status = TOKEND_BAD_MESSAGE;
        snprintf(c->message, sizeof(c->message), "%s reply answers another request",
                 c->method->name);
        return;
    }
    if (status != TOKEND_OK) {
        c->status = status;
        snprintf(c->message, sizeof(c->message), "%s",
                 c->reply->message != NULL && c->reply->message[0] != '\0'
                     ? c->reply->message
                     : tokend_strerror(status));
        return;
    }
    rpc_arena_init(&c->output_arena, rpc_decode_budget(c->reply->payload.len));
    c->output = protobuf_c_message_unpack(c->method->output, &c->output_arena.base,
                                          c->reply->payload.len, c->reply->payload.data);
    /* The payload may carry a plain-text token (CreateToken). */
    wipe(c->reply->payload.data, c->reply->payload.len);
    if (c->output == NULL) {
        c->status = TOKEND_BAD_MESSAGE;
        snprintf(c->message, sizeof(c->message),
                 "%s reply payload from tokend is undecodable", c->method->name);
    }
}

int upstream_call_result(upstream_call *c, const ProtobufCMessage **output,
                         const char **message) {
    *output = NULL;
    *message = "";
    if (c->state != CALL_DONE) {
        *message = "call not finished";
        return TOKEND_INTERNAL;
    }
    if (!c->decoded) {
        call_decode(c);
    }
    *message = c->message;
    if (c->status == TOKEND_OK) {
        *output = c->output;
    }
    return c->status;
}

void upstream_call_release(upstream_call *c) {
    if (c == NULL) {
        return;
    }
    upstream *up = c->up;
    /* `done` may have returned a moment ago while the callback is still
     * unwinding; the aio must be quiet before it serves another call. */
    nng_aio_wait(c->aio);
    call_clear(c);
    nng_mtx_lock(up->pool_mtx);
    bool keep = up->n_pool < UPSTREAM_POOL_MAX && !atomic_load(&up->closing);
    if (keep) {
        c->next_free = up->pool;
        up->pool = c;
        up->n_pool++;
    }
    nng_mtx_unlock(up->pool_mtx);
    if (!keep) {
        call_destroy(c);
    }
}

int upstream_inflight(upstream *up) {
    return atomic_load(&up->inflight);
}

void upstream_shutdown(upstream *up, int wait_ms) {
    atomic_store(&up->closing, true);
    /* Closing the socket fails every pending send and receive with
     * NNG_ECLOSED, so every call in flight finishes now. */
    nng_close(up->sock);
    for (int waited = 0; atomic_load(&up->inflight) > 0 && waited < wait_ms;
         waited += 5) {
        nng_msleep(5);
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
    nng_mtx_free(up->pool_mtx);
    free(up);
}
