/*
 * tokend.c — libtokend: the C client of the tokend token service (see
 * tokend.h for the public API and its ownership rules).
 *
 * This module owns a client's settings (URLs, time limit, credential) and
 * the public calls; the wire is the shared engine's (rpc_client.h), whose
 * socket it holds and whose calls it starts and waits for. Calls are
 * driven by protoc-c's generated service machinery: the public functions
 * build a request message and call the generated stub
 * (tokend__v1__token_service__verify() ...), which calls client_invoke()
 * with the method's index. client_invoke() runs one engine call on the
 * caller's thread and hands the method's output message to the stub's
 * closure, which copies it into the plain C result structs of tokend.h. No
 * method is named by hand anywhere in the transport, so a method added to
 * tokend.proto needs only a public wrapper and a closure.
 *
 * It must not log or print, must not put a token into an error message,
 * and wipes every buffer of its own that held a credential or a plain-text
 * token before freeing it.
 */
#include "tokend.h"
#include "error.h"
#include "rpc.h"
#include "rpc_client.h"
#include "secret.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Call time limit when neither the options nor the call give one. */
#define CLIENT_DEFAULT_TIMEOUT_MS 5000

struct tokend_client {
    /* The generated stubs call service.invoke; client_of() gets back here. */
    ProtobufCService service;
    rpc_client *rpc;
    int timeout_ms;
    char *credential; /* own copy or NULL; wiped and freed by tokend_close */
    /* tokend_close() waits for calls in flight before freeing the client. */
    pthread_mutex_t mtx;
    pthread_cond_t idle;
    unsigned in_flight;
    bool closing;
};

/*
 * One call's state, passed to the generated stub as closure_data. The
 * transport records its outcome in err; the method's closure copies the
 * output into `result` (its type depends on the method) and may record a
 * failure of its own (out of memory, a reply missing a field).
 */
typedef struct client_call {
    int timeout_ms;
    const char *credential; /* NULL or "": none */
    /* The caller's tokend_request_context as the wire's, pointing at the
     * caller's strings; `context` is &wire_context, or NULL for none. */
    Tokend__V1__RequestContext wire_context;
    const Tokend__V1__RequestContext *context;
    tokend_error err;
    void *result;
} client_call;

static tokend_client *client_of(ProtobufCService *service) {
    return (tokend_client *)((char *)service - offsetof(tokend_client, service));
}

/* Hands the call's outcome to the caller's err (if given). */
static int finish_call(const client_call *call, tokend_error *err) {
    if (err != NULL) {
        *err = call->err;
    }
    return call->err.code;
}

/* ------------------------------------------------------------------------
 * Connecting and closing. */

/* Frees what tokend_connect() built; the engine's client is freed already. */
static void client_free(tokend_client *client) {
    secret_free(client->credential);
    pthread_cond_destroy(&client->idle);
    pthread_mutex_destroy(&client->mtx);
    free(client);
}

static void client_invoke(ProtobufCService *service, unsigned method_index,
                          const ProtobufCMessage *input, ProtobufCClosure closure,
                          void *closure_data);

int tokend_connect(const tokend_options *opts, tokend_client **out, tokend_error *err) {
    static const char *const default_urls[] = {TOKEND_DEFAULT_URL};
    tokend_options defaults = {0};

    if (out == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "tokend_connect: out is NULL");
    }
    *out = NULL;
    if (opts == NULL) {
        opts = &defaults;
    }
    rpc_client_config cfg = {
        .urls = opts->urls,
        .n_urls = opts->n_urls,
        .tls_ca_file = opts->tls_ca_file,
        .tls_cert_file = opts->tls_cert_file,
        .tls_key_file = opts->tls_key_file,
        .tls_server_name = opts->tls_server_name,
    };
    if (cfg.urls == NULL || cfg.n_urls == 0) {
        cfg.urls = default_urls;
        cfg.n_urls = 1;
    }
    if (opts->timeout_ms < 0) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "timeout_ms must not be negative");
    }

    tokend_client *client = calloc(1, sizeof *client);
    if (client == NULL) {
        return error_set(err, TOKEND_INTERNAL, "out of memory");
    }
    pthread_mutex_init(&client->mtx, NULL);
    pthread_cond_init(&client->idle, NULL);
    client->timeout_ms =
        opts->timeout_ms > 0 ? opts->timeout_ms : CLIENT_DEFAULT_TIMEOUT_MS;
    client->service.descriptor = &tokend__v1__token_service__descriptor;
    client->service.invoke = client_invoke;
    client->service.destroy = NULL;
    if (opts->credential != NULL && opts->credential[0] != '\0' &&
        (client->credential = strdup(opts->credential)) == NULL) {
        client_free(client);
        return error_set(err, TOKEND_INTERNAL, "out of memory");
    }
    int rv = rpc_client_open(&cfg, &client->rpc, err);
    if (rv != TOKEND_OK) {
        client_free(client);
        return rv;
    }
    *out = client;
    return TOKEND_OK;
}

void tokend_close(tokend_client *client) {
    if (client == NULL) {
        return;
    }
    pthread_mutex_lock(&client->mtx);
    client->closing = true;
    pthread_mutex_unlock(&client->mtx);
    /* The engine fails every call in flight at once, so they return
     * promptly. */
    rpc_client_close(client->rpc);
    pthread_mutex_lock(&client->mtx);
    while (client->in_flight > 0) {
        pthread_cond_wait(&client->idle, &client->mtx);
    }
    pthread_mutex_unlock(&client->mtx);
    rpc_client_free(client->rpc);
    client_free(client);
}

/* The wire's string of a public one: NULL is the empty string. */
static char *wire_string(const char *s) {
    return (char *)(s != NULL ? s : "");
}

/* Points call->context at the wire form of `ctx` (NULL: none). Nothing is
 * checked here: the service refuses a field past its bounds and says which,
 * so the one rule and its message live there. */
static void call_context(client_call *call, const tokend_request_context *ctx) {
    if (ctx == NULL) {
        return;
    }
    Tokend__V1__RequestContext *w = &call->wire_context;
    tokend__v1__request_context__init(w);
    w->method = wire_string(ctx->method);
    w->path = wire_string(ctx->path);
    w->client_ip = wire_string(ctx->client_ip);
    w->user_agent = wire_string(ctx->user_agent);
    call->context = w;
}

/* Starts a call: checks the client and resolves the per-call overrides.
 * On TOKEND_OK the caller must call call_end(). */
static int call_begin(tokend_client *client, const tokend_call *opts, client_call *call,
                      void *result) {
    memset(call, 0, sizeof *call);
    call->result = result;
    if (client == NULL) {
        return error_set(&call->err, TOKEND_INVALID_ARGUMENT, "client is NULL");
    }
    if (opts != NULL && opts->timeout_ms < 0) {
        return error_set(&call->err, TOKEND_INVALID_ARGUMENT,
                         "timeout_ms must not be negative");
    }
    call->timeout_ms =
        opts != NULL && opts->timeout_ms > 0 ? opts->timeout_ms : client->timeout_ms;
    call->credential =
        opts != NULL && opts->credential != NULL ? opts->credential : client->credential;
    call_context(call, opts != NULL ? opts->context : NULL);
    pthread_mutex_lock(&client->mtx);
    bool closing = client->closing;
    if (!closing) {
        client->in_flight++;
    }
    pthread_mutex_unlock(&client->mtx);
    if (closing) {
        return error_set(&call->err, TOKEND_UNAVAILABLE, "client is closed");
    }
    return TOKEND_OK;
}

static void call_end(tokend_client *client) {
    pthread_mutex_lock(&client->mtx);
    if (--client->in_flight == 0 && client->closing) {
        pthread_cond_signal(&client->idle);
    }
    pthread_mutex_unlock(&client->mtx);
}

/*
 * The ProtobufCService invoke function behind every generated stub: one
 * engine call, started and waited for on the caller's thread. Calls
 * closure(output, call) on success (output lives until closure returns)
 * and closure(NULL, call) with call->err set on failure.
 */
static void client_invoke(ProtobufCService *service, unsigned method_index,
                          const ProtobufCMessage *input, ProtobufCClosure closure,
                          void *closure_data) {
    tokend_client *client = client_of(service);
    client_call *call = closure_data;
    const ProtobufCMessage *output = NULL;
    rpc_call *rpc = NULL;
    if (method_index >= service->descriptor->n_methods) {
        error_set(&call->err, TOKEND_INTERNAL, "method index %u out of range",
                  method_index);
    } else if (rpc_call_new(client->rpc, NULL, NULL, &rpc, &call->err) == TOKEND_OK &&
               rpc_call_start(rpc, &service->descriptor->methods[method_index], input,
                              call->credential, call->context, call->timeout_ms,
                              &call->err) == TOKEND_OK) {
        rpc_call_wait(rpc);
        rpc_call_result(rpc, &output, &call->err);
    }
    closure(output, closure_data);
    rpc_call_free(rpc);
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
        error_set(&call->err, TOKEND_BAD_MESSAGE,
                  "CreateToken reply lacks the token or its info");
    } else if ((out->token = strdup(response->token)) == NULL ||
               info_from_wire(response->info, &out->info) != 0) {
        secret_free(out->token);
        out->token = NULL;
        error_set(&call->err, TOKEND_INTERNAL, "out of memory");
    }
    /* The decoded reply is ours until we return (client_invoke frees it):
     * wipe its copy of the plain text now. */
    if (response->token != NULL) {
        secret_wipe(response->token, strlen(response->token));
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
        error_set(&call.err, TOKEND_INVALID_ARGUMENT, "tokend_create: %s is NULL",
                  out == NULL ? "out" : "params");
        goto end;
    }
    if (params->name == NULL || params->name[0] == '\0') {
        error_set(&call.err, TOKEND_INVALID_ARGUMENT, "name is required");
        goto end;
    }
    if (params->abilities == NULL || params->n_abilities == 0) {
        error_set(&call.err, TOKEND_INVALID_ARGUMENT, "at least one ability is required");
        goto end;
    }
    for (size_t i = 0; i < params->n_abilities; i++) {
        if (params->abilities[i] == NULL || params->abilities[i][0] == '\0') {
            error_set(&call.err, TOKEND_INVALID_ARGUMENT, "abilities[%zu] is empty", i);
            goto end;
        }
    }
    if (params->expires_in_seconds < 0) {
        error_set(&call.err, TOKEND_INVALID_ARGUMENT,
                  "expires_in_seconds must not be negative");
        goto end;
    }
    if (params->n_metadata > 0 && params->metadata == NULL) {
        error_set(&call.err, TOKEND_INVALID_ARGUMENT, "metadata is NULL");
        goto end;
    }
    for (size_t i = 0; i < params->n_metadata; i++) {
        if (params->metadata[i].key == NULL || params->metadata[i].key[0] == '\0') {
            error_set(&call.err, TOKEND_INVALID_ARGUMENT, "metadata[%zu]: key is empty",
                      i);
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
            error_set(&call.err, TOKEND_INTERNAL, "out of memory");
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
    secret_free(created->token);
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
            error_set(&call->err, TOKEND_INTERNAL, "out of memory");
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
        verdict->reason = call.err.code;
        return finish_call(&call, err);
    }
    if (token == NULL) {
        error_set(&call.err, TOKEND_INVALID_ARGUMENT, "token is NULL");
        goto end;
    }
    if (n_abilities > 0 && abilities == NULL) {
        error_set(&call.err, TOKEND_INVALID_ARGUMENT, "abilities is NULL");
        goto end;
    }
    for (size_t i = 0; i < n_abilities; i++) {
        if (abilities[i] == NULL) {
            error_set(&call.err, TOKEND_INVALID_ARGUMENT, "abilities[%zu] is NULL", i);
            goto end;
        }
    }
    if (mode != TOKEND_ABILITIES_ALL && mode != TOKEND_ABILITIES_ANY) {
        error_set(&call.err, TOKEND_INVALID_ARGUMENT, "mode must be ALL or ANY");
        goto end;
    }
    Tokend__V1__VerifyRequest request = TOKEND__V1__VERIFY_REQUEST__INIT;
    request.token = (char *)token;
    request.abilities = (char **)abilities;
    request.n_abilities = n_abilities;
    request.mode = mode == TOKEND_ABILITIES_ANY ? TOKEND__V1__ABILITY_MODE__ANY
                                                : TOKEND__V1__ABILITY_MODE__ALL;
    /* The request the token came with; it also rides in the envelope. */
    request.context = (Tokend__V1__RequestContext *)call.context;
    tokend__v1__token_service__verify(&client->service, &request, verify_done, &call);

end:
    call_end(client);
    if (call.err.code != TOKEND_OK) {
        /* No verdict: the reason is why the call failed, never OK. */
        tokend_verdict_free(verdict);
        verdict->reason = call.err.code;
    } else if (verdict->reason != TOKEND_OK) {
        /* The call worked; the token did not pass. */
        error_set(&call.err, verdict->reason, NULL);
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
        error_set(&call.err, TOKEND_INVALID_ARGUMENT, "%s is required", what);
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
    if (call.err.code == TOKEND_OK && revoked != NULL) {
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
    error_set(&call->err, TOKEND_INTERNAL, "out of memory");
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
        error_set(&call.err, TOKEND_INVALID_ARGUMENT, "tokend_list: out is NULL");
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

/* ------------------------------------------------------------------------
 * GetToken. */

static void get_done(const Tokend__V1__GetTokenResponse *response, void *data) {
    client_call *call = data;
    tokend_token_info *out = call->result;
    if (response == NULL) {
        return;
    }
    if (response->info == NULL) {
        error_set(&call->err, TOKEND_BAD_MESSAGE, "GetToken reply without the token");
        return;
    }
    if (info_from_wire(response->info, out) != 0) {
        tokend_token_info_free(out);
        error_set(&call->err, TOKEND_INTERNAL, "out of memory");
    }
}

int tokend_get(tokend_client *client, const tokend_call *call_opts, const char *id,
               tokend_token_info *out, tokend_error *err) {
    client_call call;
    if (out != NULL) {
        memset(out, 0, sizeof *out);
    }
    if (call_begin(client, call_opts, &call, out) != TOKEND_OK) {
        return finish_call(&call, err);
    }
    if (out == NULL) {
        error_set(&call.err, TOKEND_INVALID_ARGUMENT, "tokend_get: out is NULL");
    } else if (id == NULL || id[0] == '\0') {
        error_set(&call.err, TOKEND_INVALID_ARGUMENT, "id is required");
    } else {
        Tokend__V1__GetTokenRequest request = TOKEND__V1__GET_TOKEN_REQUEST__INIT;
        request.id = (char *)id;
        tokend__v1__token_service__get_token(&client->service, &request, get_done, &call);
    }
    call_end(client);
    if (call.err.code != TOKEND_OK && out != NULL) {
        tokend_token_info_free(out);
    }
    return finish_call(&call, err);
}

/* ------------------------------------------------------------------------
 * ListEvents. */

static void event_free(tokend_event *e) {
    free(e->kind);
    free(e->actor_id);
    free(e->actor_owner);
    free(e->owner);
    free(e->token_id);
    free(e->method);
    free(e->path);
    free(e->client_ip);
    free(e->user_agent);
    for (size_t i = 0; e->detail != NULL && i < e->n_detail; i++) {
        free(e->detail[i].key);
        free(e->detail[i].value);
    }
    free(e->detail);
    free(e->hashed);
    memset(e, 0, sizeof *e);
}

/* The bytes the event's hash covers after prev_hash: the event packed
 * again with its hash left out (the message is the decoded reply's, so
 * its hash field is put back before the reply is freed). */
static int event_hashed(Tokend__V1__Event *in, tokend_event *out) {
    ProtobufCBinaryData hash = in->hash;
    in->hash.data = NULL;
    in->hash.len = 0;
    out->hashed_len = tokend__v1__event__get_packed_size(in);
    out->hashed = malloc(out->hashed_len + 1);
    if (out->hashed != NULL) {
        tokend__v1__event__pack(in, out->hashed);
    }
    in->hash = hash;
    return out->hashed != NULL ? 0 : -1;
}

static int event_from_wire(Tokend__V1__Event *in, tokend_event *out) {
    const ProtobufCEnumValue *kind = protobuf_c_enum_descriptor_get_value(
        &tokend__v1__event_kind__descriptor, in->kind);
    const Tokend__V1__RequestContext *c = in->context;
    out->seq = in->seq;
    out->time_unix_ms = in->time_unix_ms;
    out->kind = dup_string(kind != NULL ? kind->name : "UNKNOWN");
    out->actor_id = dup_string(in->actor_id);
    out->actor_owner = dup_string(in->actor_owner);
    out->owner = dup_string(in->owner);
    out->token_id = dup_string(in->token_id);
    out->method = dup_string(c != NULL ? c->method : NULL);
    out->path = dup_string(c != NULL ? c->path : NULL);
    out->client_ip = dup_string(c != NULL ? c->client_ip : NULL);
    out->user_agent = dup_string(c != NULL ? c->user_agent : NULL);
    if (out->kind == NULL || out->actor_id == NULL || out->actor_owner == NULL ||
        out->owner == NULL || out->token_id == NULL || out->method == NULL ||
        out->path == NULL || out->client_ip == NULL || out->user_agent == NULL) {
        return -1;
    }
    if (in->n_detail > 0) {
        if ((out->detail = calloc(in->n_detail, sizeof *out->detail)) == NULL) {
            return -1;
        }
        for (; out->n_detail < in->n_detail; out->n_detail++) {
            tokend_kv *kv = &out->detail[out->n_detail];
            kv->key = dup_string(in->detail[out->n_detail]->key);
            kv->value = dup_string(in->detail[out->n_detail]->value);
            if (kv->key == NULL || kv->value == NULL) {
                out->n_detail++;
                return -1;
            }
        }
    }
    out->prev_hash_len = in->prev_hash.len;
    out->hash_len = in->hash.len;
    memcpy(out->prev_hash, in->prev_hash.data,
           in->prev_hash.len < TOKEND_EVENT_HASH_LEN ? in->prev_hash.len
                                                     : TOKEND_EVENT_HASH_LEN);
    memcpy(out->hash, in->hash.data,
           in->hash.len < TOKEND_EVENT_HASH_LEN ? in->hash.len : TOKEND_EVENT_HASH_LEN);
    return event_hashed(in, out);
}

static void events_done(const Tokend__V1__ListEventsResponse *response, void *data) {
    client_call *call = data;
    tokend_event_page *out = call->result;
    if (response == NULL) {
        return;
    }
    if (response->n_events > 0) {
        if ((out->events = calloc(response->n_events, sizeof *out->events)) == NULL) {
            goto oom;
        }
        for (; out->n_events < response->n_events; out->n_events++) {
            /* The reply is the caller's to read only; the hash is put back. */
            if (event_from_wire(response->events[out->n_events],
                                &out->events[out->n_events]) != 0) {
                out->n_events++;
                goto oom;
            }
        }
    }
    if (response->next_cursor != NULL && response->next_cursor[0] != '\0' &&
        (out->next_cursor = strdup(response->next_cursor)) == NULL) {
        goto oom;
    }
    out->more = response->more;
    return;

oom:
    tokend_event_page_free(out);
    error_set(&call->err, TOKEND_INTERNAL, "out of memory");
}

int tokend_list_events(tokend_client *client, const tokend_call *call_opts,
                       const tokend_event_filter *filter, tokend_event_page *out,
                       tokend_error *err) {
    client_call call;
    if (out != NULL) {
        memset(out, 0, sizeof *out);
    }
    if (call_begin(client, call_opts, &call, out) != TOKEND_OK) {
        return finish_call(&call, err);
    }
    tokend_event_filter none = {0};
    const tokend_event_filter *f = filter != NULL ? filter : &none;
    const ProtobufCEnumValue *kind =
        f->kind != NULL && f->kind[0] != '\0'
            ? protobuf_c_enum_descriptor_get_value_by_name(
                  &tokend__v1__event_kind__descriptor, f->kind)
            : NULL;
    if (out == NULL) {
        error_set(&call.err, TOKEND_INVALID_ARGUMENT, "tokend_list_events: out is NULL");
    } else if (f->kind != NULL && f->kind[0] != '\0' && kind == NULL) {
        error_set(&call.err, TOKEND_INVALID_ARGUMENT, "kind is not an event kind");
    } else {
        Tokend__V1__ListEventsRequest request = TOKEND__V1__LIST_EVENTS_REQUEST__INIT;
        request.owner = (char *)(f->owner != NULL ? f->owner : "");
        request.token_id = (char *)(f->token_id != NULL ? f->token_id : "");
        request.kind = kind != NULL ? (Tokend__V1__EventKind)kind->value
                                    : TOKEND__V1__EVENT_KIND__EVENT_ANY;
        request.since_unix_ms = f->since_unix_ms;
        request.cursor = (char *)(f->cursor != NULL ? f->cursor : "");
        request.page_size = f->page_size;
        tokend__v1__token_service__list_events(&client->service, &request, events_done,
                                               &call);
    }
    call_end(client);
    return finish_call(&call, err);
}

void tokend_event_page_free(tokend_event_page *page) {
    if (page == NULL) {
        return;
    }
    for (size_t i = 0; page->events != NULL && i < page->n_events; i++) {
        event_free(&page->events[i]);
    }
    free(page->events);
    free(page->next_cursor);
    memset(page, 0, sizeof *page);
}

/* ------------------------------------------------------------------------
 * GetUsage. */

/* Copies one map of a bucket (all three entry types share a layout). */
static int counts_from_wire(Tokend__V1__UsageBucket__RoutesEntry *const *entries,
                            size_t n, tokend_usage_count **out, size_t *n_out) {
    if (n == 0) {
        return 0;
    }
    if ((*out = calloc(n, sizeof **out)) == NULL) {
        return -1;
    }
    for (; *n_out < n; (*n_out)++) {
        const char *key = entries[*n_out]->key != NULL ? entries[*n_out]->key : "";
        if (((*out)[*n_out].key = strdup(key)) == NULL) {
            return -1;
        }
        (*out)[*n_out].count = entries[*n_out]->value;
    }
    return 0;
}

static void usage_done(const Tokend__V1__GetUsageResponse *response, void *data) {
    client_call *call = data;
    tokend_usage *out = call->result;
    if (response == NULL) {
        return;
    }
    out->step = response->step == TOKEND__V1__USAGE_STEP__HOUR ? TOKEND_USAGE_HOUR
                                                               : TOKEND_USAGE_MINUTE;
    if (response->n_buckets > 0 &&
        (out->buckets = calloc(response->n_buckets, sizeof *out->buckets)) == NULL) {
        goto oom;
    }
    for (; out->n_buckets < response->n_buckets; out->n_buckets++) {
        const Tokend__V1__UsageBucket *in = response->buckets[out->n_buckets];
        tokend_usage_bucket *b = &out->buckets[out->n_buckets];
        b->start_unix_ms = in->start_unix_ms;
        if (counts_from_wire((Tokend__V1__UsageBucket__RoutesEntry *const *)in->outcomes,
                             in->n_outcomes, &b->outcomes, &b->n_outcomes) != 0 ||
            counts_from_wire(in->routes, in->n_routes, &b->routes, &b->n_routes) != 0 ||
            counts_from_wire(
                (Tokend__V1__UsageBucket__RoutesEntry *const *)in->client_ips,
                in->n_client_ips, &b->client_ips, &b->n_client_ips) != 0) {
            out->n_buckets++;
            goto oom;
        }
    }
    return;

oom:
    tokend_usage_free(out);
    error_set(&call->err, TOKEND_INTERNAL, "out of memory");
}

int tokend_get_usage(tokend_client *client, const tokend_call *call_opts,
                     const tokend_usage_query *query, tokend_usage *out,
                     tokend_error *err) {
    client_call call;
    if (out != NULL) {
        memset(out, 0, sizeof *out);
    }
    if (call_begin(client, call_opts, &call, out) != TOKEND_OK) {
        return finish_call(&call, err);
    }
    if (out == NULL || query == NULL) {
        error_set(&call.err, TOKEND_INVALID_ARGUMENT,
                  "tokend_get_usage: query or out is NULL");
    } else {
        Tokend__V1__GetUsageRequest request = TOKEND__V1__GET_USAGE_REQUEST__INIT;
        if (query->id != NULL) {
            request.id = (char *)query->id;
        }
        if (query->owner != NULL) {
            request.owner = (char *)query->owner;
        }
        request.deployment = query->deployment != 0;
        request.from_unix_ms = query->from_unix_ms;
        request.to_unix_ms = query->to_unix_ms;
        request.step = query->step == TOKEND_USAGE_HOUR ? TOKEND__V1__USAGE_STEP__HOUR
                                                        : TOKEND__V1__USAGE_STEP__MINUTE;
        tokend__v1__token_service__get_usage(&client->service, &request, usage_done,
                                             &call);
    }
    call_end(client);
    if (call.err.code != TOKEND_OK && out != NULL) {
        tokend_usage_free(out);
    }
    return finish_call(&call, err);
}

static void counts_free(tokend_usage_count *c, size_t n) {
    for (size_t i = 0; c != NULL && i < n; i++) {
        free(c[i].key);
    }
    free(c);
}

void tokend_usage_free(tokend_usage *usage) {
    if (usage == NULL) {
        return;
    }
    for (size_t i = 0; usage->buckets != NULL && i < usage->n_buckets; i++) {
        tokend_usage_bucket *b = &usage->buckets[i];
        counts_free(b->outcomes, b->n_outcomes);
        counts_free(b->routes, b->n_routes);
        counts_free(b->client_ips, b->n_client_ips);
    }
    free(usage->buckets);
    memset(usage, 0, sizeof *usage);
}
