/*
 * tokend.c — libtokend: the C client of the tokend token service (see
 * tokend.h for the public API and its ownership rules).
 *
 * This module owns one NNG REQ socket per client and the client side of
 * the RPC envelope. Calls are driven by protoc-c's generated service
 * machinery: the public functions build a request message and call the
 * generated stub (tokend__v1__token_service__verify() ...), which calls
 * client_invoke() with the method's index. client_invoke() is the whole
 * transport: it packs the input, wraps it in a tokend.v1.Request, sends it
 * on a fresh NNG context, decodes the Reply with a capped allocator and
 * hands the method's output message to the stub's closure, which copies it
 * into the plain C result structs of tokend.h. No method is named by hand
 * anywhere in the transport, so a method added to tokend.proto needs only
 * a public wrapper and a closure.
 *
 * It must not log or print, must not put a token into an error message,
 * and wipes every buffer of its own that held a credential or a plain-text
 * token before freeing it. (NNG's internal copy of a sent message is freed
 * by NNG, which offers no hook to wipe it.)
 */
#include "tokend.h"
#include "rpc.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>

/* Call time limit when neither the options nor the call give one. */
#define CLIENT_DEFAULT_TIMEOUT_MS 5000
/* Ceiling on a reply; a page of 1000 tokens with metadata stays well below. */
#define CLIENT_RECV_MAX_BYTES ((size_t)RPC_MAX_MESSAGE_CEILING)
/* Reconnect back-off: short, so that a restarted service is found fast. */
#define CLIENT_RECONNECT_MIN_MS 10
#define CLIENT_RECONNECT_MAX_MS 500
/* How much of the URL list error messages quote. */
#define CLIENT_WHERE_MAX 160

struct tokend_client {
    /* The generated stubs call service.invoke; client_of() gets back here. */
    ProtobufCService service;
    nng_socket socket;
    int timeout_ms;
    char *credential; /* own copy or NULL; wiped and freed by tokend_close */
    char *where;      /* the URLs, joined, for error messages */
    _Atomic uint64_t next_request_id;
    /* tokend_close() waits for calls in flight before freeing the client. */
    nng_mtx *mtx;
    nng_cv *idle;
    unsigned in_flight;
    bool closing;
};

/*
 * One call's state, passed to the generated stub as closure_data. The
 * transport records a failure in status/message; the method's closure
 * copies the output into `result` (its type depends on the method) and may
 * record a failure of its own (out of memory, a reply missing a field).
 */
typedef struct client_call {
    int timeout_ms;
    const char *credential; /* NULL or "": none */
    int status;
    char message[sizeof(((tokend_error *)0)->message)];
    void *result;
} client_call;

static tokend_client *client_of(ProtobufCService *service) {
    return (tokend_client *)((char *)service - offsetof(tokend_client, service));
}

/* Zeroes memory in a way the compiler may not drop as a dead store. */
static void wipe(void *ptr, size_t len) {
    if (ptr != NULL && len > 0) {
        explicit_bzero(ptr, len);
    }
}

static void wipe_free_string(char *s) {
    if (s != NULL) {
        wipe(s, strlen(s));
        free(s);
    }
}

static void wipe_free_msg(nng_msg *msg) {
    if (msg != NULL) {
        wipe(nng_msg_body(msg), nng_msg_len(msg));
        nng_msg_free(msg);
    }
}

/*
 * Copies `src` into dst[size] for an error message: control characters
 * become spaces (the text may reach a terminal), and a cut never splits a
 * UTF-8 sequence.
 */
static void message_copy(char *dst, size_t size, const char *src) {
    size_t n = strlen(src);
    if (n >= size) {
        n = size - 1;
        /* Back up to the start of the sequence the cut falls in; keep it
         * only if it fits whole. */
        size_t start = n;
        while (start > 0 && ((unsigned char)src[start] & 0xC0) == 0x80) {
            start--;
        }
        n = start;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = (c < 0x20 || c == 0x7F) ? ' ' : (char)c;
    }
    dst[n] = '\0';
}

/* Records a failure in `call` and returns its code. */
static int call_fail(client_call *call, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int call_fail(client_call *call, int code, const char *fmt, ...) {
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    call->status = code;
    message_copy(call->message, sizeof call->message, text);
    return code;
}

/* Fills *err (if given) and returns `code`. An empty message becomes the
 * code's description. */
static int set_error(tokend_error *err, int code, const char *message) {
    if (err != NULL) {
        err->code = code;
        if (code == TOKEND_OK) {
            err->message[0] = '\0';
        } else {
            message_copy(err->message, sizeof err->message,
                         message != NULL && message[0] != '\0' ? message
                                                               : tokend_strerror(code));
        }
    }
    return code;
}

static int finish_call(const client_call *call, tokend_error *err) {
    return set_error(err, call->status, call->message);
}

/* ------------------------------------------------------------------------
 * Connecting and closing. */

static int nng_to_status(int nrv) {
    switch (nrv) {
        case NNG_ETIMEDOUT:
            return TOKEND_DEADLINE_EXCEEDED;
        case NNG_ENOMEM:
            return TOKEND_INTERNAL;
        case NNG_EINVAL:
        case NNG_EADDRINVAL:
        case NNG_ENOTSUP:
            return TOKEND_INVALID_ARGUMENT;
        case NNG_EMSGSIZE:
            return TOKEND_RESOURCE_EXHAUSTED;
        default:
            /* ECLOSED, ECONNREFUSED, ECONNRESET, ECONNSHUT, EUNREACHABLE,
             * ... : the service cannot be reached. */
            return TOKEND_UNAVAILABLE;
    }
}

/* Joins the URLs into one string for messages, cut at CLIENT_WHERE_MAX. */
static char *join_urls(const char *const *urls, size_t n_urls) {
    char *where = calloc(1, CLIENT_WHERE_MAX + 1);
    if (where == NULL) {
        return NULL;
    }
    size_t len = 0;
    for (size_t i = 0; i < n_urls && len < CLIENT_WHERE_MAX; i++) {
        int w = snprintf(where + len, CLIENT_WHERE_MAX + 1 - len, "%s%s",
                         i > 0 ? ", " : "", urls[i]);
        if (w < 0) {
            break;
        }
        len += (size_t)w;
    }
    if (len > CLIENT_WHERE_MAX) {
        memcpy(where + CLIENT_WHERE_MAX - 3, "...", 4);
    }
    return where;
}

/* Frees what tokend_connect() built; the socket must be closed already. */
static void client_free(tokend_client *client) {
    wipe_free_string(client->credential);
    free(client->where);
    if (client->idle != NULL) {
        nng_cv_free(client->idle);
    }
    if (client->mtx != NULL) {
        nng_mtx_free(client->mtx);
    }
    free(client);
}

static void client_invoke(ProtobufCService *service, unsigned method_index,
                          const ProtobufCMessage *input, ProtobufCClosure closure,
                          void *closure_data);

/* Adds a dialer for `url` and starts it in the background. */
static int client_dial(tokend_client *client, const char *url, tokend_error *err) {
    char text[512];
    nng_dialer dialer;
    int nrv = nng_dialer_create(&dialer, client->socket, url);
    if (nrv != 0) {
        int code = nng_to_status(nrv);
        if (code == TOKEND_UNAVAILABLE) {
            code = TOKEND_INVALID_ARGUMENT;
        }
        snprintf(text, sizeof text, "bad service URL \"%s\": %s", url, nng_strerror(nrv));
        return set_error(err, code, text);
    }
    /* Transports without a size option (inproc) have no limit to set. */
    nrv = nng_dialer_set_size(dialer, NNG_OPT_RECVMAXSZ, CLIENT_RECV_MAX_BYTES);
    if ((nrv != 0 && nrv != NNG_ENOTSUP) ||
        (nrv = nng_dialer_set_ms(dialer, NNG_OPT_RECONNMINT, CLIENT_RECONNECT_MIN_MS)) !=
            0 ||
        (nrv = nng_dialer_set_ms(dialer, NNG_OPT_RECONNMAXT, CLIENT_RECONNECT_MAX_MS)) !=
            0 ||
        (nrv = nng_dialer_start(dialer, NNG_FLAG_NONBLOCK)) != 0) {
        nng_dialer_close(dialer);
        snprintf(text, sizeof text, "cannot dial \"%s\": %s", url, nng_strerror(nrv));
        return set_error(err, nng_to_status(nrv), text);
    }
    return TOKEND_OK;
}

int tokend_connect(const tokend_options *opts, tokend_client **out, tokend_error *err) {
    static const char *const default_urls[] = {TOKEND_DEFAULT_URL};
    tokend_options defaults = {0};
    char text[256];

    if (out == NULL) {
        return set_error(err, TOKEND_INVALID_ARGUMENT, "tokend_connect: out is NULL");
    }
    *out = NULL;
    if (opts == NULL) {
        opts = &defaults;
    }
    const char *const *urls = opts->urls;
    size_t n_urls = opts->n_urls;
    if (urls == NULL || n_urls == 0) {
        urls = default_urls;
        n_urls = 1;
    }
    for (size_t i = 0; i < n_urls; i++) {
        if (urls[i] == NULL || urls[i][0] == '\0') {
            snprintf(text, sizeof text, "service URL %zu is empty", i);
            return set_error(err, TOKEND_INVALID_ARGUMENT, text);
        }
    }
    if (opts->timeout_ms < 0) {
        return set_error(err, TOKEND_INVALID_ARGUMENT, "timeout_ms must not be negative");
    }

    tokend_client *client = calloc(1, sizeof *client);
    if (client == NULL) {
        return set_error(err, TOKEND_INTERNAL, "out of memory");
    }
    client->timeout_ms =
        opts->timeout_ms > 0 ? opts->timeout_ms : CLIENT_DEFAULT_TIMEOUT_MS;
    /* Request ids start at a random point so that ids from different
     * clients rarely collide in the service's log. */
    atomic_init(&client->next_request_id, ((uint64_t)nng_random() << 32) | 1u);
    client->service.descriptor = &tokend__v1__token_service__descriptor;
    client->service.invoke = client_invoke;
    client->service.destroy = NULL;
    if (opts->credential != NULL && opts->credential[0] != '\0' &&
        (client->credential = strdup(opts->credential)) == NULL) {
        client_free(client);
        return set_error(err, TOKEND_INTERNAL, "out of memory");
    }
    if ((client->where = join_urls(urls, n_urls)) == NULL ||
        nng_mtx_alloc(&client->mtx) != 0 ||
        nng_cv_alloc(&client->idle, client->mtx) != 0) {
        client_free(client);
        return set_error(err, TOKEND_INTERNAL, "out of memory");
    }

    int nrv = nng_req0_open(&client->socket);
    if (nrv != 0) {
        client_free(client);
        snprintf(text, sizeof text, "cannot open an NNG REQ socket: %s",
                 nng_strerror(nrv));
        return set_error(err, nng_to_status(nrv), text);
    }
    /* No blind resends: CreateToken is not idempotent, and every call has
     * its own deadline anyway. Reconnect times are set on the socket too,
     * so that they hold whatever NNG's dialers inherit. */
    if ((nrv = nng_socket_set_ms(client->socket, NNG_OPT_REQ_RESENDTIME,
                                 NNG_DURATION_INFINITE)) != 0 ||
        (nrv = nng_socket_set_size(client->socket, NNG_OPT_RECVMAXSZ,
                                   CLIENT_RECV_MAX_BYTES)) != 0 ||
        (nrv = nng_socket_set_ms(client->socket, NNG_OPT_RECONNMINT,
                                 CLIENT_RECONNECT_MIN_MS)) != 0 ||
        (nrv = nng_socket_set_ms(client->socket, NNG_OPT_RECONNMAXT,
                                 CLIENT_RECONNECT_MAX_MS)) != 0) {
        nng_close(client->socket);
        client_free(client);
        snprintf(text, sizeof text, "cannot configure the NNG socket: %s",
                 nng_strerror(nrv));
        return set_error(err, TOKEND_INTERNAL, text);
    }
    for (size_t i = 0; i < n_urls; i++) {
        int rv = client_dial(client, urls[i], err);
        if (rv != TOKEND_OK) {
            nng_close(client->socket);
            client_free(client);
            return rv;
        }
    }
    *out = client;
    return set_error(err, TOKEND_OK, NULL);
}

void tokend_close(tokend_client *client) {
    if (client == NULL) {
        return;
    }
    nng_mtx_lock(client->mtx);
    client->closing = true;
    nng_mtx_unlock(client->mtx);
    /* Closing the socket fails every pending send and receive with
     * NNG_ECLOSED, so the calls in flight return promptly. */
    nng_close(client->socket);
    nng_mtx_lock(client->mtx);
    while (client->in_flight > 0) {
        nng_cv_wait(client->idle);
    }
    nng_mtx_unlock(client->mtx);
    client_free(client);
}

static bool client_closing(tokend_client *client) {
    nng_mtx_lock(client->mtx);
    bool closing = client->closing;
    nng_mtx_unlock(client->mtx);
    return closing;
}

/* Starts a call: checks the client and resolves the per-call overrides.
 * On TOKEND_OK the caller must call call_end(). */
static int call_begin(tokend_client *client, const tokend_call *opts, client_call *call,
                      void *result) {
    memset(call, 0, sizeof *call);
    call->result = result;
    if (client == NULL) {
        return call_fail(call, TOKEND_INVALID_ARGUMENT, "client is NULL");
    }
    if (opts != NULL && opts->timeout_ms < 0) {
        return call_fail(call, TOKEND_INVALID_ARGUMENT,
                         "timeout_ms must not be negative");
    }
    call->timeout_ms =
        opts != NULL && opts->timeout_ms > 0 ? opts->timeout_ms : client->timeout_ms;
    call->credential =
        opts != NULL && opts->credential != NULL ? opts->credential : client->credential;
    nng_mtx_lock(client->mtx);
    bool closing = client->closing;
    if (!closing) {
        client->in_flight++;
    }
    nng_mtx_unlock(client->mtx);
    if (closing) {
        return call_fail(call, TOKEND_UNAVAILABLE, "client is closed");
    }
    return TOKEND_OK;
}

static void call_end(tokend_client *client) {
    nng_mtx_lock(client->mtx);
    if (--client->in_flight == 0 && client->closing) {
        nng_cv_wake(client->idle);
    }
    nng_mtx_unlock(client->mtx);
}

/* ------------------------------------------------------------------------
 * The transport: one request, one reply. */

/* Sends `input` as method `method` and waits for the reply. On TOKEND_OK
 * *reply_out is the reply message, the caller's to wipe and free. */
static int exchange(tokend_client *client, client_call *call,
                    const ProtobufCMethodDescriptor *method,
                    const ProtobufCMessage *input, uint64_t *request_id_out,
                    nng_msg **reply_out) {
    uint8_t *payload = NULL;
    size_t payload_len = 0;
    if (rpc_pack(input, &payload, &payload_len) != TOKEND_OK) {
        return call_fail(call, TOKEND_INTERNAL, "out of memory");
    }

    Tokend__V1__Request request = TOKEND__V1__REQUEST__INIT;
    request.method = (char *)method->name;
    request.request_id = atomic_fetch_add(&client->next_request_id, 1);
    *request_id_out = request.request_id;
    nng_time started = nng_clock();
    request.deadline_unix_ms = rpc_now_ms() + call->timeout_ms;
    if (call->credential != NULL && call->credential[0] != '\0') {
        request.credential = (char *)call->credential;
    }
    request.payload.data = payload;
    request.payload.len = payload_len;

    /* Pack straight into the NNG message: one copy fewer of the secrets. */
    nng_msg *msg = NULL;
    size_t len = protobuf_c_message_get_packed_size(&request.base);
    int nrv = nng_msg_alloc(&msg, len);
    if (nrv == 0) {
        protobuf_c_message_pack(&request.base, nng_msg_body(msg));
    }
    wipe(payload, payload_len);
    free(payload);
    if (nrv != 0) {
        return call_fail(call, TOKEND_INTERNAL, "out of memory");
    }

    nng_ctx ctx;
    nng_aio *aio = NULL;
    if ((nrv = nng_ctx_open(&ctx, client->socket)) != 0) {
        wipe_free_msg(msg);
        return call_fail(call, nng_to_status(nrv), "cannot open a request context: %s",
                         nrv == NNG_ECLOSED ? "client is closed" : nng_strerror(nrv));
    }
    if ((nrv = nng_aio_alloc(&aio, NULL, NULL)) != 0) {
        nng_ctx_close(ctx);
        wipe_free_msg(msg);
        return call_fail(call, TOKEND_INTERNAL, "out of memory");
    }

    /* The aio keeps its default timeout, so the context's timeouts apply. */
    int rv = TOKEND_OK;
    nng_ctx_set_ms(ctx, NNG_OPT_SENDTIMEO, call->timeout_ms);
    nng_aio_set_msg(aio, msg);
    nng_ctx_send(ctx, aio);
    nng_aio_wait(aio);
    if ((nrv = nng_aio_result(aio)) != 0) {
        /* A failed send hands the message back. */
        wipe_free_msg(nng_aio_get_msg(aio));
        if (nrv == NNG_ETIMEDOUT) {
            /* REQ hands a request to a connection only once one is up and
             * free, so the request never left: the service is unreachable
             * (usually: not connected), and a retry is safe. */
            rv = call_fail(call, TOKEND_UNAVAILABLE, "could not reach %s within %d ms",
                           client->where, call->timeout_ms);
        } else if (nrv == NNG_ECLOSED || client_closing(client)) {
            rv = call_fail(call, TOKEND_UNAVAILABLE, "client is closed");
        } else {
            rv = call_fail(call, nng_to_status(nrv), "sending to %s failed: %s",
                           client->where, nng_strerror(nrv));
        }
        goto done;
    }

    int64_t left_ms = (int64_t)call->timeout_ms - (int64_t)(nng_clock() - started);
    nng_ctx_set_ms(ctx, NNG_OPT_RECVTIMEO, left_ms > 0 ? (nng_duration)left_ms : 1);
    nng_ctx_recv(ctx, aio);
    nng_aio_wait(aio);
    if ((nrv = nng_aio_result(aio)) != 0) {
        if (nrv == NNG_ETIMEDOUT) {
            rv =
                call_fail(call, TOKEND_DEADLINE_EXCEEDED, "no reply from %s within %d ms",
                          client->where, call->timeout_ms);
        } else if (nrv == NNG_ECLOSED || client_closing(client)) {
            /* Closing the socket resets its connections first, so a call
             * cut short by tokend_close() may see NNG_ECONNRESET. */
            rv = call_fail(call, TOKEND_UNAVAILABLE,
                           "client closed while waiting for a reply");
        } else if (nrv == NNG_ECONNRESET || nrv == NNG_ECONNSHUT) {
            rv = call_fail(call, TOKEND_UNAVAILABLE,
                           "connection to %s lost before the reply "
                           "(the call may or may not have been carried out)",
                           client->where);
        } else {
            rv = call_fail(call, nng_to_status(nrv), "no reply from %s: %s",
                           client->where, nng_strerror(nrv));
        }
        goto done;
    }
    *reply_out = nng_aio_get_msg(aio);

done:
    nng_aio_free(aio);
    nng_ctx_close(ctx);
    return rv;
}

/* Decodes `reply_msg` as the Reply to request `request_id` and, if OK, its
 * payload as method->output using `out_arena`. Returns the output (free it
 * with protobuf_c_message_free_unpacked(out, &out_arena->base)) or NULL
 * with the failure recorded in `call`. */
static ProtobufCMessage *decode_reply(client_call *call,
                                      const ProtobufCMethodDescriptor *method,
                                      uint64_t request_id, nng_msg *reply_msg,
                                      rpc_arena *out_arena) {
    size_t len = nng_msg_len(reply_msg);
    rpc_arena arena;
    rpc_arena_init(&arena, rpc_decode_budget(len));
    Tokend__V1__Reply *reply =
        tokend__v1__reply__unpack(&arena.base, len, nng_msg_body(reply_msg));
    if (reply == NULL) {
        call_fail(call, arena.exhausted ? TOKEND_RESOURCE_EXHAUSTED : TOKEND_BAD_MESSAGE,
                  "%s reply could not be decoded%s", method->name,
                  arena.exhausted ? " (too large)" : "");
        return NULL;
    }

    ProtobufCMessage *output = NULL;
    int status = rpc_status_from_wire(reply->status);
    /* NNG's REQ protocol pairs replies with requests itself; the envelope's
     * id is checked as well, so that a confused peer is caught, not obeyed.
     * A refusal may carry id 0 when the service could not read the request
     * (too large, undecodable): its status is still the answer. */
    bool id_unknown = status != TOKEND_OK && reply->request_id == 0;
    if (reply->request_id != request_id && !id_unknown) {
        call_fail(call, TOKEND_BAD_MESSAGE, "%s reply answers request %llu, not %llu",
                  method->name, (unsigned long long)reply->request_id,
                  (unsigned long long)request_id);
    } else if (status != TOKEND_OK) {
        call_fail(call, status, "%s", reply->message != NULL ? reply->message : "");
    } else {
        rpc_arena_init(out_arena, rpc_decode_budget(reply->payload.len));
        output = protobuf_c_message_unpack(method->output, &out_arena->base,
                                           reply->payload.len, reply->payload.data);
        if (output == NULL) {
            call_fail(call,
                      out_arena->exhausted ? TOKEND_RESOURCE_EXHAUSTED
                                           : TOKEND_BAD_MESSAGE,
                      "%s reply payload could not be decoded%s", method->name,
                      out_arena->exhausted ? " (too large)" : "");
        }
    }
    /* The payload may carry a plain-text token (CreateToken). */
    wipe(reply->payload.data, reply->payload.len);
    tokend__v1__reply__free_unpacked(reply, &arena.base);
    return output;
}

/*
 * The ProtobufCService invoke function behind every generated stub. Calls
 * closure(output, call) on success (output lives until closure returns)
 * and closure(NULL, call) with call->status/message set on failure.
 */
static void client_invoke(ProtobufCService *service, unsigned method_index,
                          const ProtobufCMessage *input, ProtobufCClosure closure,
                          void *closure_data) {
    tokend_client *client = client_of(service);
    client_call *call = closure_data;
    if (method_index >= service->descriptor->n_methods) {
        call_fail(call, TOKEND_INTERNAL, "method index %u out of range", method_index);
        closure(NULL, closure_data);
        return;
    }
    const ProtobufCMethodDescriptor *method = &service->descriptor->methods[method_index];

    uint64_t request_id = 0;
    nng_msg *reply_msg = NULL;
    if (exchange(client, call, method, input, &request_id, &reply_msg) != TOKEND_OK) {
        closure(NULL, closure_data);
        return;
    }
    rpc_arena out_arena;
    ProtobufCMessage *output =
        decode_reply(call, method, request_id, reply_msg, &out_arena);
    wipe_free_msg(reply_msg);
    closure(output, closure_data);
    if (output != NULL) {
        protobuf_c_message_free_unpacked(output, &out_arena.base);
    }
}

/* ------------------------------------------------------------------------
 * Results: copies out of protobuf-c messages into tokend.h structs. */

/* strdup that maps NULL to "" (so results never hold NULL strings). */
static char *dup_string(const char *s) {
    return strdup(s != NULL ? s : "");
}

void tokend_token_info_free(tokend_token_info *info) {
    if (info == NULL) {
        return;
    }
    free(info->id);
    free(info->owner);
    free(info->name);
    if (info->abilities != NULL) {
        for (size_t i = 0; i < info->n_abilities; i++) {
            free(info->abilities[i]);
        }
        free(info->abilities);
    }
    if (info->metadata != NULL) {
        for (size_t i = 0; i < info->n_metadata; i++) {
            free(info->metadata[i].key);
            free(info->metadata[i].value);
        }
        free(info->metadata);
    }
    memset(info, 0, sizeof *info);
}

/* Copies `in` (NULL: an empty info) into *out. Returns 0, or -1 when out
 * of memory, with *out freed. */
static int info_from_wire(const Tokend__V1__TokenInfo *in, tokend_token_info *out) {
    static const Tokend__V1__TokenInfo empty = TOKEND__V1__TOKEN_INFO__INIT;
    if (in == NULL) {
        in = &empty;
    }
    memset(out, 0, sizeof *out);
    out->created_unix_ms = in->created_unix_ms;
    out->expires_unix_ms = in->expires_unix_ms;
    out->last_used_unix_ms = in->last_used_unix_ms;
    out->use_count = in->use_count;
    if ((out->id = dup_string(in->id)) == NULL ||
        (out->owner = dup_string(in->owner)) == NULL ||
        (out->name = dup_string(in->name)) == NULL) {
        goto fail;
    }
    if (in->n_abilities > 0) {
        if ((out->abilities = calloc(in->n_abilities, sizeof *out->abilities)) == NULL) {
            goto fail;
        }
        for (; out->n_abilities < in->n_abilities; out->n_abilities++) {
            char *ability = dup_string(in->abilities[out->n_abilities]);
            if (ability == NULL) {
                goto fail;
            }
            out->abilities[out->n_abilities] = ability;
        }
    }
    if (in->n_metadata > 0) {
        if ((out->metadata = calloc(in->n_metadata, sizeof *out->metadata)) == NULL) {
            goto fail;
        }
        for (; out->n_metadata < in->n_metadata; out->n_metadata++) {
            const Tokend__V1__TokenInfo__MetadataEntry *entry =
                in->metadata[out->n_metadata];
            tokend_kv *kv = &out->metadata[out->n_metadata];
            kv->key = dup_string(entry != NULL ? entry->key : NULL);
            kv->value = dup_string(entry != NULL ? entry->value : NULL);
            if (kv->key == NULL || kv->value == NULL) {
                out->n_metadata++; /* so that free sees this entry */
                goto fail;
            }
        }
    }
    return 0;

fail:
    tokend_token_info_free(out);
    return -1;
}

/* ------------------------------------------------------------------------
 * CreateToken. */

static void create_done(const Tokend__V1__CreateTokenResponse *response, void *data) {
    client_call *call = data;
    tokend_created *out = call->result;
    if (response == NULL) {
        return;
    }
    if (response->token == NULL || response->token[0] == '\0' || response->info == NULL) {
        call_fail(call, TOKEND_BAD_MESSAGE,
                  "CreateToken reply lacks the token or its info");
    } else if ((out->token = strdup(response->token)) == NULL ||
               info_from_wire(response->info, &out->info) != 0) {
        wipe_free_string(out->token);
        out->token = NULL;
        call_fail(call, TOKEND_INTERNAL, "out of memory");
    }
    /* The decoded reply is ours until we return (client_invoke frees it):
     * wipe its copy of the plain text now. */
    if (response->token != NULL) {
        wipe(response->token, strlen(response->token));
    }
}

int tokend_create(tokend_client *client, const tokend_call *call_opts,
                  const tokend_create_params *params, tokend_created *out,
                  tokend_error *err) {
    client_call call;
    if (out != NULL) {
        memset(out, 0, sizeof *out);
    }
    if (call_begin(client, call_opts, &call, out) != TOKEND_OK) {
        return finish_call(&call, err);
    }
    Tokend__V1__CreateTokenRequest request = TOKEND__V1__CREATE_TOKEN_REQUEST__INIT;
    Tokend__V1__CreateTokenRequest__MetadataEntry *entries = NULL;
    Tokend__V1__CreateTokenRequest__MetadataEntry **entry_ptrs = NULL;

    if (out == NULL || params == NULL) {
        call_fail(&call, TOKEND_INVALID_ARGUMENT, "tokend_create: %s is NULL",
                  out == NULL ? "out" : "params");
        goto end;
    }
    if (params->name == NULL || params->name[0] == '\0') {
        call_fail(&call, TOKEND_INVALID_ARGUMENT, "name is required");
        goto end;
    }
    if (params->abilities == NULL || params->n_abilities == 0) {
        call_fail(&call, TOKEND_INVALID_ARGUMENT, "at least one ability is required");
        goto end;
    }
    for (size_t i = 0; i < params->n_abilities; i++) {
        if (params->abilities[i] == NULL || params->abilities[i][0] == '\0') {
            call_fail(&call, TOKEND_INVALID_ARGUMENT, "abilities[%zu] is empty", i);
            goto end;
        }
    }
    if (params->expires_in_seconds < 0) {
        call_fail(&call, TOKEND_INVALID_ARGUMENT,
                  "expires_in_seconds must not be negative");
        goto end;
    }
    if (params->n_metadata > 0 && params->metadata == NULL) {
        call_fail(&call, TOKEND_INVALID_ARGUMENT, "metadata is NULL");
        goto end;
    }
    for (size_t i = 0; i < params->n_metadata; i++) {
        if (params->metadata[i].key == NULL || params->metadata[i].key[0] == '\0') {
            call_fail(&call, TOKEND_INVALID_ARGUMENT, "metadata[%zu]: key is empty", i);
            goto end;
        }
    }

    if (params->owner != NULL) {
        request.owner = (char *)params->owner;
    }
    request.name = (char *)params->name;
    request.abilities = (char **)params->abilities;
    request.n_abilities = params->n_abilities;
    request.expires_in_seconds = params->expires_in_seconds;
    if (params->n_metadata > 0) {
        entries = calloc(params->n_metadata, sizeof *entries);
        entry_ptrs = calloc(params->n_metadata, sizeof *entry_ptrs);
        if (entries == NULL || entry_ptrs == NULL) {
            call_fail(&call, TOKEND_INTERNAL, "out of memory");
            goto end;
        }
        for (size_t i = 0; i < params->n_metadata; i++) {
            tokend__v1__create_token_request__metadata_entry__init(&entries[i]);
            entries[i].key = params->metadata[i].key;
            if (params->metadata[i].value != NULL) {
                entries[i].value = params->metadata[i].value;
            }
            entry_ptrs[i] = &entries[i];
        }
        request.metadata = entry_ptrs;
        request.n_metadata = params->n_metadata;
    }
    tokend__v1__token_service__create_token(&client->service, &request, create_done,
                                            &call);

end:
    free(entries);
    free(entry_ptrs);
    call_end(client);
    return finish_call(&call, err);
}

void tokend_created_free(tokend_created *created) {
    if (created == NULL) {
        return;
    }
    wipe_free_string(created->token);
    tokend_token_info_free(&created->info);
    memset(created, 0, sizeof *created);
}

/* ------------------------------------------------------------------------
 * Verify. */

static void verify_done(const Tokend__V1__VerifyResponse *response, void *data) {
    client_call *call = data;
    tokend_verdict *out = call->result;
    if (response == NULL) {
        return;
    }
    out->reason = rpc_status_from_wire(response->reason);
    if (response->info != NULL) {
        if (info_from_wire(response->info, &out->info) != 0) {
            call_fail(call, TOKEND_INTERNAL, "out of memory");
            return;
        }
        out->has_info = 1;
    }
}

int tokend_verify(tokend_client *client, const tokend_call *call_opts, const char *token,
                  const char *const *abilities, size_t n_abilities,
                  tokend_ability_mode mode, tokend_verdict *out, tokend_error *err) {
    client_call call;
    tokend_verdict local;
    tokend_verdict *verdict = out != NULL ? out : &local;
    memset(verdict, 0, sizeof *verdict);
    if (call_begin(client, call_opts, &call, verdict) != TOKEND_OK) {
        verdict->reason = call.status;
        return finish_call(&call, err);
    }
    if (token == NULL) {
        call_fail(&call, TOKEND_INVALID_ARGUMENT, "token is NULL");
        goto end;
    }
    if (n_abilities > 0 && abilities == NULL) {
        call_fail(&call, TOKEND_INVALID_ARGUMENT, "abilities is NULL");
        goto end;
    }
    for (size_t i = 0; i < n_abilities; i++) {
        if (abilities[i] == NULL) {
            call_fail(&call, TOKEND_INVALID_ARGUMENT, "abilities[%zu] is NULL", i);
            goto end;
        }
    }
    if (mode != TOKEND_ABILITIES_ALL && mode != TOKEND_ABILITIES_ANY) {
        call_fail(&call, TOKEND_INVALID_ARGUMENT, "mode must be ALL or ANY");
        goto end;
    }
    Tokend__V1__VerifyRequest request = TOKEND__V1__VERIFY_REQUEST__INIT;
    request.token = (char *)token;
    request.abilities = (char **)abilities;
    request.n_abilities = n_abilities;
    request.mode = mode == TOKEND_ABILITIES_ANY ? TOKEND__V1__ABILITY_MODE__ANY
                                                : TOKEND__V1__ABILITY_MODE__ALL;
    tokend__v1__token_service__verify(&client->service, &request, verify_done, &call);

end:
    call_end(client);
    if (call.status != TOKEND_OK) {
        /* No verdict: the reason is why the call failed, never OK. */
        tokend_verdict_free(verdict);
        verdict->reason = call.status;
    } else if (verdict->reason != TOKEND_OK) {
        /* The call worked; the token did not pass. */
        call.status = verdict->reason;
        call.message[0] = '\0';
    }
    if (verdict == &local) {
        tokend_verdict_free(&local);
    }
    return finish_call(&call, err);
}

void tokend_verdict_free(tokend_verdict *verdict) {
    if (verdict == NULL) {
        return;
    }
    tokend_token_info_free(&verdict->info);
    memset(verdict, 0, sizeof *verdict);
}

/* ------------------------------------------------------------------------
 * Revoke. */

static void revoke_done(const Tokend__V1__RevokeResponse *response, void *data) {
    client_call *call = data;
    if (response != NULL) {
        *(uint64_t *)call->result = response->revoked;
    }
}

static int revoke(tokend_client *client, const tokend_call *call_opts,
                  Tokend__V1__RevokeRequest__TargetCase target, const char *what,
                  const char *value, uint64_t *revoked, tokend_error *err) {
    client_call call;
    uint64_t count = 0;
    if (revoked != NULL) {
        *revoked = 0;
    }
    if (call_begin(client, call_opts, &call, &count) != TOKEND_OK) {
        return finish_call(&call, err);
    }
    /* An empty owner means the caller's own; an empty id or token is a
     * mistake caught here. */
    if (target == TOKEND__V1__REVOKE_REQUEST__TARGET_OWNER && value == NULL) {
        value = "";
    }
    if (value == NULL ||
        (value[0] == '\0' && target != TOKEND__V1__REVOKE_REQUEST__TARGET_OWNER)) {
        call_fail(&call, TOKEND_INVALID_ARGUMENT, "%s is required", what);
    } else {
        Tokend__V1__RevokeRequest request = TOKEND__V1__REVOKE_REQUEST__INIT;
        request.target_case = target;
        switch (target) {
            case TOKEND__V1__REVOKE_REQUEST__TARGET_ID:
                request.id = (char *)value;
                break;
            case TOKEND__V1__REVOKE_REQUEST__TARGET_TOKEN:
                request.token = (char *)value;
                break;
            default:
                request.owner = (char *)value;
                break;
        }
        tokend__v1__token_service__revoke(&client->service, &request, revoke_done, &call);
    }
    call_end(client);
    if (call.status == TOKEND_OK && revoked != NULL) {
        *revoked = count;
    }
    return finish_call(&call, err);
}

int tokend_revoke_id(tokend_client *client, const tokend_call *call, const char *id,
                     uint64_t *revoked, tokend_error *err) {
    return revoke(client, call, TOKEND__V1__REVOKE_REQUEST__TARGET_ID, "id", id, revoked,
                  err);
}

int tokend_revoke_token(tokend_client *client, const tokend_call *call, const char *token,
                        uint64_t *revoked, tokend_error *err) {
    return revoke(client, call, TOKEND__V1__REVOKE_REQUEST__TARGET_TOKEN, "token", token,
                  revoked, err);
}

int tokend_revoke_owner(tokend_client *client, const tokend_call *call, const char *owner,
                        uint64_t *revoked, tokend_error *err) {
    return revoke(client, call, TOKEND__V1__REVOKE_REQUEST__TARGET_OWNER, "owner", owner,
                  revoked, err);
}

/* ------------------------------------------------------------------------
 * ListTokens. */

static void list_done(const Tokend__V1__ListTokensResponse *response, void *data) {
    client_call *call = data;
    tokend_token_page *out = call->result;
    if (response == NULL) {
        return;
    }
    if (response->n_tokens > 0) {
        if ((out->tokens = calloc(response->n_tokens, sizeof *out->tokens)) == NULL) {
            goto oom;
        }
        for (; out->n_tokens < response->n_tokens; out->n_tokens++) {
            if (info_from_wire(response->tokens[out->n_tokens],
                               &out->tokens[out->n_tokens]) != 0) {
                goto oom;
            }
        }
    }
    if (response->next_cursor != NULL && response->next_cursor[0] != '\0' &&
        (out->next_cursor = strdup(response->next_cursor)) == NULL) {
        goto oom;
    }
    return;

oom:
    tokend_token_page_free(out);
    call_fail(call, TOKEND_INTERNAL, "out of memory");
}

int tokend_list(tokend_client *client, const tokend_call *call_opts, const char *owner,
                uint32_t page_size, const char *cursor, tokend_token_page *out,
                tokend_error *err) {
    client_call call;
    if (out != NULL) {
        memset(out, 0, sizeof *out);
    }
    if (call_begin(client, call_opts, &call, out) != TOKEND_OK) {
        return finish_call(&call, err);
    }
    if (out == NULL) {
        call_fail(&call, TOKEND_INVALID_ARGUMENT, "tokend_list: out is NULL");
    } else {
        Tokend__V1__ListTokensRequest request = TOKEND__V1__LIST_TOKENS_REQUEST__INIT;
        if (owner != NULL) {
            request.owner = (char *)owner;
        }
        request.page_size = page_size;
        if (cursor != NULL) {
            request.cursor = (char *)cursor;
        }
        tokend__v1__token_service__list_tokens(&client->service, &request, list_done,
                                               &call);
    }
    call_end(client);
    return finish_call(&call, err);
}

void tokend_token_page_free(tokend_token_page *page) {
    if (page == NULL) {
        return;
    }
    if (page->tokens != NULL) {
        for (size_t i = 0; i < page->n_tokens; i++) {
            tokend_token_info_free(&page->tokens[i]);
        }
        free(page->tokens);
    }
    free(page->next_cursor);
    memset(page, 0, sizeof *page);
}
