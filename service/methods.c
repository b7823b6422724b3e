/*
 * methods.c — the TokenService's methods and who may call them. See
 * methods.h for the rights model; each handler's comment says its steps.
 *
 * Every handler answers exactly once: through its closure (success) or
 * server_call_fail (error). Handlers that write hand a job to the writer
 * and answer from the job's done(), after the WAL is synced.
 */
#include "methods.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "events.h"
#include "error.h"
#include "log.h"
#include "record.h"
#include "route.h"
#include "rpc.h"
#include "server.h"
#include "tokend.h"

struct methods {
    Tokend__V1__TokenService_Service base; /* first: protobuf-c casts to it */
    Tokend__V1__Control_Service control;   /* the control socket's service */
    char *prefix;
    int64_t max_lifetime_s;
    bool verify_requires_credential;
    uint64_t max_tokens_per_owner;
    store *st;
    writer *w;
    usage *u;
    series *series; /* NULL: no usage series */
    alerts *alerts;
    atomic_uint created_seq; /* see token_record.created_seq */
    events *ev;              /* the audit log; NULL: none (methods_set_events) */
};

typedef Tokend__V1__TokenService_Service service_base;
typedef Tokend__V1__TokenInfo__MetadataEntry info_meta;

#define METHODS_LIST_DEFAULT 100
#define METHODS_LIST_MAX 1000
#define METHODS_CURSOR_MAX 256
/* A ListTokens page's tokens, packed, at most: with the cursor and the
 * Reply envelope around them the reply stays within 1 MiB, far below a
 * client's receive limit (16 MiB), whatever the tokens hold. */
#define METHODS_LIST_BYTES ((1u << 20) - 4096)

/* ------------------------------------------------------------------------
 * Checking input. Each check answers the call itself and returns false. */

static bool check_text(void *call, const char *field, const char *s, size_t max) {
    size_t len = s != NULL ? strlen(s) : 0;
    if (len == 0) {
        server_call_fail(call, TOKEND_INVALID_ARGUMENT, "%s is required", field);
        return false;
    }
    if (len > max) {
        server_call_fail(call, TOKEND_INVALID_ARGUMENT, "%s is longer than %zu bytes",
                         field, max);
        return false;
    }
    if (!rpc_text_ok(s, len)) {
        server_call_fail(call, TOKEND_INVALID_ARGUMENT,
                         "%s must be UTF-8 text without control characters", field);
        return false;
    }
    return true;
}

/* `n` items of a repeated field, `what` they are ("abilities"). */
static bool check_count(void *call, size_t n, int max, const char *what) {
    if (n > (size_t)max) {
        server_call_fail(call, TOKEND_INVALID_ARGUMENT,
                         "%zu %s given; at most %d are allowed", n, what, max);
        return false;
    }
    return true;
}

/* Abilities of a CreateToken (`required`: at least one, and within the
 * bound on their joined length) or of a Verify (any number up to the
 * maximum), each by the grammar of token.h. */
static bool check_abilities(void *call, char *const *abilities, size_t n, bool required) {
    if (required && n == 0) {
        server_call_fail(call, TOKEND_INVALID_ARGUMENT,
                         "at least one ability is required");
        return false;
    }
    if (!check_count(call, n, TOKEN_ABILITIES_MAX, "abilities")) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char field[32];
        snprintf(field, sizeof(field), "abilities[%zu]", i);
        char msg[TOKEN_ABILITY_MESSAGE_MAX];
        if (!check_text(call, field, abilities[i], TOKEN_ABILITY_MAX)) {
            return false;
        }
        if (!token_ability_check(abilities[i], "abilities", i, msg, sizeof(msg))) {
            server_call_fail(call, TOKEND_INVALID_ARGUMENT, "%s", msg);
            return false;
        }
    }
    size_t joined = token_abilities_joined_len(abilities, n);
    if (required && joined > TOKEN_ABILITIES_JOINED_MAX) {
        server_call_fail(call, TOKEND_INVALID_ARGUMENT,
                         "abilities joined with commas are %zu bytes; at most %d are "
                         "allowed",
                         joined, TOKEN_ABILITIES_JOINED_MAX);
        return false;
    }
    return true;
}

static bool check_metadata(void *call, Tokend__V1__CreateTokenRequest__MetadataEntry **m,
                           size_t n) {
    if (!check_count(call, n, TOKEN_METADATA_MAX, "metadata entries")) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char field[32];
        snprintf(field, sizeof(field), "metadata key %zu", i);
        if (!check_text(call, field, m[i]->key, TOKEN_META_KEY_MAX)) {
            return false;
        }
        const char *v = m[i]->value != NULL ? m[i]->value : "";
        size_t vlen = strlen(v);
        if (vlen > TOKEN_META_VALUE_MAX || !rpc_utf8_ok(v, vlen)) {
            server_call_fail(call, TOKEND_INVALID_ARGUMENT,
                             "metadata value %zu must be UTF-8 of at most %d bytes", i,
                             TOKEN_META_VALUE_MAX);
            return false;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(m[i]->key, m[j]->key) == 0) {
                server_call_fail(call, TOKEND_INVALID_ARGUMENT,
                                 "metadata key %zu repeats key %zu", i, j);
                return false;
            }
        }
    }
    return true;
}

/* The bound on a token's text together (TOKEN_TEXT_MAX), after each
 * field passed its own. */
static bool check_text_total(void *call, const char *owner,
                             const Tokend__V1__CreateTokenRequest *in) {
    size_t total = strlen(owner) + strlen(in->name);
    for (size_t i = 0; i < in->n_abilities; i++) {
        total += strlen(in->abilities[i]);
    }
    for (size_t i = 0; i < in->n_metadata; i++) {
        total += strlen(in->metadata[i]->key) +
                 (in->metadata[i]->value != NULL ? strlen(in->metadata[i]->value) : 0);
    }
    if (total > TOKEN_TEXT_MAX) {
        server_call_fail(call, TOKEND_INVALID_ARGUMENT,
                         "owner, name, abilities and metadata are %zu bytes together; "
                         "at most %d are allowed",
                         total, TOKEN_TEXT_MAX);
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------------
 * Refusals: answered at once, and recorded as CALL_REFUSED events (through
 * the limiter of events.h) for the management calls, `method` naming the
 * call (NULL: not one, e.g. Verify). The event is queued before the call
 * is answered, while its context is still valid; the answer does not wait
 * for it. */

static void refuse(methods *ms, void *call, const char *method,
                   const token_record *caller, const char *owner, int status,
                   const char *fmt, ...) __attribute__((format(printf, 7, 8)));

static void refuse(methods *ms, void *call, const char *method,
                   const token_record *caller, const char *owner, int status,
                   const char *fmt, ...) {
    char reason[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (method != NULL) {
        events_refused(ms->ev, method, status, reason, caller != NULL ? caller->id : NULL,
                       caller != NULL ? caller->owner : NULL, owner,
                       server_call_context(call));
    }
    server_call_fail(call, status, "%s", reason);
}

/* ------------------------------------------------------------------------
 * Who is calling. */

static bool has_ability(const token_record *rec, const char *ability) {
    return token_ability_granted(rec->abilities, rec->n_abilities, ability);
}

/* Adds the route and client of a request context to the call's log line
 * at --log-level debug (the route, never the query: a query may carry
 * secrets; a segment long enough to be a token is "{id}" in a route, so a
 * token put in the URL never reaches the log). Formatted only when debug lines are
 * printed: Verify is the hot path. */
static void note_context(void *call, const Tokend__V1__RequestContext *ctx) {
    if (log_min_level > LOG_DEBUG || ctx == NULL) {
        return;
    }
    char route[ROUTE_MAX + 1], q[2 * ROUTE_MAX + 3];
    route_normalise(ctx->method, ctx->path, route, sizeof(route));
    const char *client =
        ctx->client_ip != NULL && ctx->client_ip[0] ? ctx->client_ip : "-";
    server_call_note(call, "route=%s client=%s", log_quote(q, sizeof(q), route), client);
}

/* Loads the token behind the call's credential into *caller, and its
 * digest into `digest` (if not NULL). On failure answers the call
 * (UNAUTHENTICATED, or why the record could not be read) and returns
 * false. On success notes the caller and, with `note_envelope`, the
 * request the call is made for (Request.context); a Verify notes its own
 * VerifyRequest.context instead. `method` names the call in the audit
 * event of a refusal (NULL: no event, as for Verify). */
static bool authenticate(methods *ms, void *call, const char *method, int64_t now_ms,
                         token_record *caller, uint8_t *digest_out, bool note_envelope) {
    const char *cred = server_call_credential(call);
    size_t len = strlen(cred);
    if (len == 0) {
        refuse(ms, call, method, NULL, NULL, TOKEND_UNAUTHENTICATED,
               "this call needs a caller credential (a tokend token)");
        return false;
    }
    if (!token_well_formed(cred, len)) {
        refuse(ms, call, method, NULL, NULL, TOKEND_UNAUTHENTICATED,
               "caller credential is malformed");
        return false;
    }
    uint8_t digest[TOKEN_DIGEST_LEN];
    if (crypto_sha256(cred, len, digest) != TOKEND_OK) {
        server_call_fail(call, TOKEND_INTERNAL, "hashing failed");
        return false;
    }
    int rv = store_get_token(ms->st, digest, caller, NULL);
    if (rv == TOKEND_NOT_FOUND) {
        refuse(ms, call, method, NULL, NULL, TOKEND_UNAUTHENTICATED,
               "caller credential is not a valid token (unknown or revoked)");
        return false;
    }
    if (digest_out != NULL) {
        memcpy(digest_out, digest, TOKEN_DIGEST_LEN);
    }
    if (rv != TOKEND_OK) {
        server_call_fail(call, rv, "could not read the caller credential's record");
        return false;
    }
    if (token_expired(caller->expires_ms, now_ms)) {
        refuse(ms, call, method, NULL, NULL, TOKEND_UNAUTHENTICATED,
               "caller credential has expired");
        token_record_free(caller);
        return false;
    }
    usage_touch(ms->u, caller->id, now_ms);
    server_call_note(call, "caller=%s", caller->id);
    if (note_envelope) {
        note_context(call, server_call_context(call));
    }
    return true;
}

/* The one rule for managing an owner's tokens: an admin may manage any
 * owner's; any other caller only its own owner's, and only with `right`
 * (tokens:read or tokens:write). `verb` names the action for the message.
 * Answers the call (PERMISSION_DENIED) and returns false when refused. */
static bool may_manage(methods *ms, void *call, const char *method,
                       const token_record *caller, const char *owner, const char *right,
                       const char *verb) {
    if (has_ability(caller, METHODS_ABILITY_ADMIN)) {
        return true;
    }
    if (strcmp(owner, caller->owner) != 0) {
        refuse(ms, call, method, caller, owner, TOKEND_PERMISSION_DENIED,
               "caller may only %s its own owner's tokens", verb);
        return false;
    }
    if (!has_ability(caller, right)) {
        refuse(ms, call, method, caller, owner, TOKEND_PERMISSION_DENIED,
               "caller credential lacks the %s ability", right);
        return false;
    }
    return true;
}

/* The caller credential of a write, as its job carries it to the writer:
 * the handler authenticated it, but a job may wait behind others, and one
 * of those may revoke it (by id, by plain text, or with all of its owner's
 * tokens). Tokens are never changed, only created and deleted, so the
 * same digest still stored is the same record with the same rights: the
 * authorization the handler decided on stands as long as it exists and is
 * unexpired. */
typedef struct job_caller {
    bool present; /* false: a revoke by plain text, which needs none */
    uint8_t digest[TOKEN_DIGEST_LEN];
    int64_t expires_ms;
    char id[TOKEN_ID_LEN + 1]; /* for the audit event: the actor */
    char owner[TOKEN_OWNER_MAX + 1];
} job_caller;

static void job_caller_set(job_caller *jc, const token_record *caller,
                           const uint8_t digest[TOKEN_DIGEST_LEN]) {
    jc->present = true;
    memcpy(jc->digest, digest, TOKEN_DIGEST_LEN);
    jc->expires_ms = caller->expires_ms;
    snprintf(jc->id, sizeof(jc->id), "%s", caller->id);
    snprintf(jc->owner, sizeof(jc->owner), "%s", caller->owner);
}

/* Run by a job's apply: TOKEND_OK if the caller credential is still valid
 * in the writer's order, read through `batch` (so a revocation earlier in
 * the same group counts); else UNAUTHENTICATED, why in *why. */
static int job_caller_check(const job_caller *jc, store *st, const store_batch *batch,
                            tokend_error *why) {
    if (!jc->present) {
        return TOKEND_OK;
    }
    token_record rec;
    int rv = store_batch_get_token(st, batch, jc->digest, &rec, NULL);
    if (rv == TOKEND_NOT_FOUND) {
        return error_set(why, TOKEND_UNAUTHENTICATED,
                         "caller credential was revoked before this write was applied");
    }
    if (rv != TOKEND_OK) {
        return rv;
    }
    token_record_free(&rec);
    if (token_expired(jc->expires_ms, rpc_now_ms())) {
        return error_set(why, TOKEND_UNAUTHENTICATED,
                         "caller credential expired before this write was applied");
    }
    return TOKEND_OK;
}

/* Answers a write the writer settled with an error: with the job's own
 * reason when its apply gave one (`why`, for this status), else with
 * `otherwise`. */
static void fail_settled(void *call, int status, const tokend_error *why,
                         const char *otherwise) {
    if (why->code == status) {
        server_call_fail(call, status, "%s", why->message);
    } else {
        server_call_fail(call, status, "%s", otherwise);
    }
}

/* ------------------------------------------------------------------------
 * Building replies. */

/* Points `info` at rec's strings (no copies: the reply is packed before
 * rec is freed). `meta`/`meta_ptrs` must have room for rec->n_metadata. */
static void info_fill(Tokend__V1__TokenInfo *info, const token_record *rec,
                      info_meta *meta, info_meta **meta_ptrs) {
    tokend__v1__token_info__init(info);
    info->id = (char *)rec->id;
    info->owner = rec->owner;
    info->name = rec->name;
    info->abilities = rec->abilities;
    info->n_abilities = rec->n_abilities;
    info->created_unix_ms = rec->created_ms;
    info->expires_unix_ms = rec->expires_ms;
    for (size_t i = 0; i < rec->n_metadata; i++) {
        tokend__v1__token_info__metadata_entry__init(&meta[i]);
        meta[i].key = rec->metadata[i].key;
        meta[i].value = rec->metadata[i].value;
        meta_ptrs[i] = &meta[i];
    }
    info->metadata = meta_ptrs;
    info->n_metadata = rec->n_metadata;
}

/* A token's use so far: the stored usage plus the uses the usage table
 * holds that are not stored yet (usage.h). A flush that moved drained
 * uses out of the table between the store read and the peek makes it
 * read again; flushes are seconds apart, so once is almost always
 * enough. */
static void usage_of(methods *ms, const char *id, int64_t *last_used_ms,
                     uint64_t *use_count) {
    for (int tries = 0;; tries++) {
        uint64_t before = usage_generation(ms->u);
        int64_t stored_last = 0;
        uint64_t stored_count = 0;
        (void)store_get_usage(ms->st, id, &stored_last, &stored_count, NULL);
        int64_t mem_last = 0;
        uint64_t mem_count = 0;
        uint64_t after = usage_peek(ms->u, id, stored_count, &mem_last, &mem_count);
        if (before == after || tries == 3) {
            *last_used_ms = mem_last > stored_last ? mem_last : stored_last;
            *use_count = stored_count + mem_count;
            return;
        }
    }
}

/* info_fill's usage fields, from usage_of. */
static void info_usage(methods *ms, Tokend__V1__TokenInfo *info) {
    int64_t last = 0;
    uint64_t count = 0;
    usage_of(ms, info->id, &last, &count);
    info->last_used_unix_ms = last;
    info->use_count = count;
}

static char *dup_str(const char *s) {
    return strdup(s != NULL ? s : "");
}

int methods_mint(const char *prefix, const char *owner, const char *name,
                 char *const *abilities, size_t n_abilities, int64_t created_ms,
                 int64_t expires_ms, char token_out[TOKEN_MAX_LEN + 1],
                 uint8_t digest[TOKEN_DIGEST_LEN], token_record *rec) {
    uint8_t random[TOKEN_RANDOM_BYTES];
    uint8_t id_random[TOKEN_RANDOM_BYTES];
    memset(rec, 0, sizeof(*rec));
    if (crypto_random(random, sizeof(random)) != 0 ||
        crypto_random(id_random, sizeof(id_random)) != 0) {
        return TOKEND_INTERNAL;
    }
    size_t len = token_generate(prefix, random, sizeof(random), token_out);
    bool id_ok = token_new_id(id_random, sizeof(id_random), rec->id);
    crypto_wipe(random, sizeof(random));
    if (len == 0 || !id_ok || crypto_sha256(token_out, len, digest) != TOKEND_OK) {
        crypto_wipe(token_out, TOKEN_MAX_LEN + 1);
        return TOKEND_INTERNAL;
    }
    rec->owner = dup_str(owner);
    rec->name = dup_str(name);
    rec->abilities = calloc(n_abilities > 0 ? n_abilities : 1, sizeof(char *));
    bool oom = rec->owner == NULL || rec->name == NULL || rec->abilities == NULL;
    for (size_t i = 0; !oom && i < n_abilities; i++) {
        rec->abilities[i] = dup_str(abilities[i]);
        oom = rec->abilities[i] == NULL;
        rec->n_abilities = i + 1;
    }
    rec->created_ms = created_ms;
    rec->expires_ms = expires_ms;
    if (oom) {
        token_record_free(rec);
        crypto_wipe(token_out, TOKEN_MAX_LEN + 1);
        return TOKEND_INTERNAL;
    }
    return TOKEND_OK;
}

/* ------------------------------------------------------------------------
 * Audit events of writes, added to the batch of the change they record. */

/* Whether `status` is a refusal the audit log records. */
static bool is_refusal(int status) {
    return status == TOKEND_UNAUTHENTICATED || status == TOKEND_PERMISSION_DENIED ||
           status == TOKEND_FAILED_PRECONDITION || status == TOKEND_RESOURCE_EXHAUSTED;
}

/* A write refused in the writer's order (apply): its CALL_REFUSED event
 * goes into the batch, through the limiter like any refusal. Returns
 * `status`, for apply to return. */
static int apply_refused(events *ev, store *st, store_batch *batch, const char *method,
                         int status, const tokend_error *why, const job_caller *caller,
                         const char *owner, void *call) {
    uint64_t before = 0;
    const Tokend__V1__RequestContext *ctx =
        call != NULL ? server_call_context(call) : NULL;
    if (ev == NULL || !is_refusal(status) ||
        !events_refusal_admit(ev, method, status, caller->present ? caller->id : NULL,
                              ctx != NULL ? ctx->client_ip : NULL, &before)) {
        return status;
    }
    events_what what = {
        .actor_id = caller->present ? caller->id : NULL,
        .actor_owner = caller->present ? caller->owner : NULL,
        .context = ctx,
    };
    events_field fields[5];
    char buf[24];
    events_refusal_detail(&what, fields, buf, method, status,
                          why->code == status ? why->message : tokend_status_name(status),
                          owner, before);
    (void)events_put(st, batch, rpc_now_ms(), &what, NULL);
    return status;
}

/* TOKEN_CREATED (or, for `tokend admin-token`, ADMIN_RECOVERY with `via`)
 * of `rec`, made by `caller` (NULL: none). */
int methods_event_created(store *st, store_batch *batch, const token_record *rec,
                          const char *actor_id, const char *actor_owner,
                          const Tokend__V1__RequestContext *ctx, const char *via) {
    char abilities[TOKEN_ABILITIES_JOINED_MAX + 1];
    (void)token_abilities_join(rec->abilities, rec->n_abilities, abilities);
    char expires[24];
    snprintf(expires, sizeof(expires), "%lld", (long long)rec->expires_ms);
    events_field fields[4] = {{"name", rec->name},
                              {"abilities", abilities},
                              {"expires_unix_ms", expires},
                              {"via", via}};
    events_what what = {
        .kind = via != NULL ? TOKEND__V1__EVENT_KIND__ADMIN_RECOVERY
                            : TOKEND__V1__EVENT_KIND__TOKEN_CREATED,
        .actor_id = actor_id,
        .actor_owner = actor_owner,
        .owner = rec->owner,
        .token_id = rec->id,
        .context = ctx,
        .detail = fields,
        .n_detail = via != NULL ? 4 : 3,
    };
    return events_put(st, batch, rpc_now_ms(), &what, NULL);
}

/* ------------------------------------------------------------------------
 * CreateToken. */

typedef struct create_job {
    writer_job base; /* first */
    Tokend__V1__CreateTokenResponse_Closure closure;
    /* Set instead of closure for a MintAdminToken of the control socket. */
    Tokend__V1__MintAdminTokenResponse_Closure recovery_closure;
    void *call;
    job_caller caller;
    uint64_t max_tokens; /* the owner's limit; 0: none */
    tokend_error why;    /* apply's reason for a refusal */
    char token[TOKEN_MAX_LEN + 1];
    uint8_t digest[TOKEN_DIGEST_LEN];
    token_record rec;
    events *ev; /* the audit log, or NULL */
} create_job;

/* In the writer's order: the caller credential still valid, the id new,
 * the owner under its limit (counted through the batch, so the creates
 * earlier in the group count too), then the put. */
static int create_apply(writer_job *wj, store *st, store_batch *batch) {
    create_job *job = (create_job *)wj;
    int rv = job_caller_check(&job->caller, st, batch, &job->why);
    if (rv != TOKEND_OK) {
        return apply_refused(job->ev, st, batch, "CreateToken", rv, &job->why,
                             &job->caller, job->rec.owner, job->call);
    }
    uint8_t existing[TOKEN_DIGEST_LEN];
    /* 95 random bits make an id collision absurdly unlikely; refusing one
     * costs a bloom-filtered point read. */
    rv = store_batch_get_digest(st, batch, job->rec.id, existing, NULL);
    if (rv != TOKEND_NOT_FOUND) {
        return rv == TOKEND_OK ? TOKEND_INTERNAL : rv;
    }
    uint64_t count = 0;
    rv = store_batch_owner_count(st, batch, job->rec.owner, &count, NULL);
    if (rv != TOKEND_OK) {
        return rv;
    }
    if (job->max_tokens != 0 && count >= job->max_tokens) {
        rv = error_set(&job->why, TOKEND_RESOURCE_EXHAUSTED,
                       RPC_OWNER_LIMIT_MESSAGE
                       ": %s has %llu tokens, the most allowed; revoke some to "
                       "create more",
                       job->rec.owner, (unsigned long long)count);
        return apply_refused(job->ev, st, batch, "CreateToken", rv, &job->why,
                             &job->caller, job->rec.owner, job->call);
    }
    rv = store_batch_put_token(batch, job->digest, &job->rec, NULL);
    if (rv == TOKEND_OK && job->ev != NULL) {
        bool recovery = job->recovery_closure != NULL;
        rv = methods_event_created(st, batch, &job->rec,
                                   job->caller.present ? job->caller.id : NULL,
                                   job->caller.present ? job->caller.owner : NULL,
                                   recovery ? NULL : server_call_context(job->call),
                                   recovery ? "control" : NULL);
    }
    return rv;
}

static void create_done(writer_job *wj, int status) {
    create_job *job = (create_job *)wj;
    if (status == TOKEND_OK) {
        Tokend__V1__CreateTokenResponse resp = TOKEND__V1__CREATE_TOKEN_RESPONSE__INIT;
        Tokend__V1__TokenInfo info;
        info_meta meta[TOKEN_METADATA_MAX];
        info_meta *meta_ptrs[TOKEN_METADATA_MAX];
        info_fill(&info, &job->rec, meta, meta_ptrs);
        server_call_note(job->call, "id=%s", job->rec.id);
        if (job->recovery_closure != NULL) {
            methods_log_recovery(&job->rec, "control");
            Tokend__V1__MintAdminTokenResponse rr =
                TOKEND__V1__MINT_ADMIN_TOKEN_RESPONSE__INIT;
            rr.token = job->token;
            rr.info = &info;
            job->recovery_closure(&rr, job->call);
        } else {
            resp.token = job->token;
            resp.info = &info;
            job->closure(&resp, job->call);
        }
    } else if (status == TOKEND_STORAGE_ERROR) {
        server_call_fail(job->call, status,
                         "the token could not be written durably and was not created");
    } else {
        fail_settled(job->call, status, &job->why, "the token was not created");
    }
    crypto_wipe(job->token, sizeof(job->token));
    token_record_free(&job->rec);
    free(job);
}

/* Copies the request's metadata into the record. */
static bool copy_metadata(token_record *rec,
                          Tokend__V1__CreateTokenRequest__MetadataEntry **m, size_t n) {
    if (n == 0) {
        return true;
    }
    rec->metadata = calloc(n, sizeof(*rec->metadata));
    if (rec->metadata == NULL) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        rec->metadata[i].key = dup_str(m[i]->key);
        rec->metadata[i].value = dup_str(m[i]->value);
        rec->n_metadata = i + 1;
        if (rec->metadata[i].key == NULL || rec->metadata[i].value == NULL) {
            return false;
        }
    }
    return true;
}

/* Checks the request and the caller's right to it, mints the token and
 * queues its durable write; the reply comes from create_done(). */
/* The token rules of tokend.proto (TokenPolicy, canary, the expiring
 * filter) are the contract of the release being built and not served by
 * this one. A request that sets them is refused whole rather than served
 * without them: a partner that asked for a network binding must never
 * get a token that is not bound. */
#define METHODS_POLICY_UNSERVED                                             \
    "is part of the token policy contract (docs/policy.md) and not served " \
    "by this release; nothing was done"

static bool policy_set(const Tokend__V1__TokenPolicy *p) {
    return p != NULL &&
           (p->n_rate_limits > 0 || p->quota != NULL || p->n_allowed_networks > 0 ||
            p->n_allowed_routes > 0 || p->idle_timeout_seconds != 0);
}

static void handle_create_token(service_base *svc,
                                const Tokend__V1__CreateTokenRequest *in,
                                Tokend__V1__CreateTokenResponse_Closure closure,
                                void *call) {
    methods *ms = (methods *)svc;
    int64_t now = rpc_now_ms();
    if (policy_set(in->policy) || in->canary) {
        server_call_fail(call, TOKEND_UNIMPLEMENTED, "%s %s",
                         in->canary ? "canary" : "policy", METHODS_POLICY_UNSERVED);
        return;
    }
    token_record caller;
    uint8_t caller_digest[TOKEN_DIGEST_LEN];
    if (!authenticate(ms, call, "CreateToken", now, &caller, caller_digest, true)) {
        return;
    }
    bool admin = has_ability(&caller, METHODS_ABILITY_ADMIN);
    const char *owner = in->owner != NULL && in->owner[0] != '\0' ? in->owner
                        : admin                                   ? NULL
                                                                  : caller.owner;
    create_job *job = NULL;
    if (owner == NULL) {
        server_call_fail(call, TOKEND_INVALID_ARGUMENT, "owner is required");
        goto done;
    }
    if (!check_text(call, "owner", owner, TOKEN_OWNER_MAX) ||
        !check_text(call, "name", in->name, TOKEN_NAME_MAX) ||
        !check_abilities(call, in->abilities, in->n_abilities, true) ||
        !check_metadata(call, in->metadata, in->n_metadata) ||
        !check_text_total(call, owner, in)) {
        goto done;
    }
    if (!may_manage(ms, call, "CreateToken", &caller, owner, METHODS_ABILITY_WRITE,
                    "create")) {
        goto done;
    }
    if (!admin) {
        for (size_t i = 0; i < in->n_abilities; i++) {
            if (!token_pattern_within(caller.abilities, caller.n_abilities,
                                      in->abilities[i])) {
                refuse(ms, call, "CreateToken", &caller, owner, TOKEND_PERMISSION_DENIED,
                       "abilities[%zu] is not within the caller's own abilities", i);
                goto done;
            }
        }
    }
    int64_t expires = token_expiry(now, in->expires_in_seconds, ms->max_lifetime_s,
                                   admin ? 0 : caller.expires_ms);
    if (expires < 0) {
        if (in->expires_in_seconds < 0 ||
            token_expiry(now, in->expires_in_seconds, 0, 0) < 0) {
            server_call_fail(call, TOKEND_INVALID_ARGUMENT,
                             "expires_in_seconds must be between 0 and 10000 years");
        } else {
            refuse(ms, call, "CreateToken", &caller, owner, TOKEND_PERMISSION_DENIED,
                   "a token may not outlive the caller's own credential");
        }
        goto done;
    }
    job = calloc(1, sizeof(*job));
    if (job == NULL) {
        server_call_fail(call, TOKEND_INTERNAL, "out of memory");
        goto done;
    }
    int rv = methods_mint(ms->prefix, owner, in->name, in->abilities, in->n_abilities,
                          now, expires, job->token, job->digest, &job->rec);
    job->rec.created_seq = atomic_fetch_add(&ms->created_seq, 1);
    if (rv != TOKEND_OK || !copy_metadata(&job->rec, in->metadata, in->n_metadata)) {
        server_call_fail(call, TOKEND_INTERNAL, "could not mint a token");
        goto done;
    }
    job->base.apply = create_apply;
    job->base.done = create_done;
    job->closure = closure;
    job->call = call;
    job_caller_set(&job->caller, &caller, caller_digest);
    job->max_tokens = ms->max_tokens_per_owner;
    job->ev = ms->ev;
    if (writer_submit(ms->w, &job->base) != TOKEND_OK) {
        server_call_fail(call, TOKEND_UNAVAILABLE, "service is shutting down");
        goto done;
    }
    job = NULL; /* the writer owns it now */
done:
    if (job != NULL) {
        crypto_wipe(job->token, sizeof(job->token));
        token_record_free(&job->rec);
        free(job);
    }
    token_record_free(&caller);
}

/* ------------------------------------------------------------------------
 * Verify: the hot path. A shape/checksum test, one SHA-256, one point
 * read, then pure checks; usage is counted in memory. */

/* Hands a Verify's verdict to the usage series (series.h) and the alerts
 * (alerts.h), with the route of its context computed once for both
 * (route_normalise makes any segment long enough to hold a token "{id}",
 * so no plain-text token reaches a stored route). `rec` is NULL for a
 * token the service does not know, which then counts in the deployment's
 * sums only; `digest` is given for NOT_FOUND (the alerts look for a
 * tombstone) and NULL otherwise; MALFORMED goes to the series only. */
static void verify_seen(methods *ms, const Tokend__V1__VerifyRequest *in,
                        const token_record *rec, const uint8_t *digest, int reason,
                        int64_t now_ms) {
    bool to_alerts = ms->alerts != NULL && reason != TOKEND__V1__STATUS__MALFORMED;
    if (ms->series == NULL && !to_alerts) {
        return;
    }
    const Tokend__V1__RequestContext *c = in->context;
    char route[ROUTE_MAX + 1];
    route_normalise(c != NULL ? c->method : NULL, c != NULL ? c->path : NULL, route,
                    sizeof(route));
    if (ms->series != NULL) {
        series_add_call(ms->series, rec != NULL ? rec->id : NULL,
                        rec != NULL ? rec->owner : NULL, reason, route,
                        c != NULL ? c->client_ip : NULL, now_ms);
    }
    if (to_alerts) {
        alerts_observe(ms->alerts, reason, rec != NULL ? rec->id : NULL,
                       rec != NULL ? rec->owner : NULL, digest, c, route, now_ms);
    }
}

static void handle_verify(service_base *svc, const Tokend__V1__VerifyRequest *in,
                          Tokend__V1__VerifyResponse_Closure closure, void *call) {
    methods *ms = (methods *)svc;
    int64_t now = rpc_now_ms();
    if (ms->verify_requires_credential) {
        token_record caller;
        if (!authenticate(ms, call, NULL, now, &caller, NULL, false)) {
            return;
        }
        bool allowed = has_ability(&caller, METHODS_ABILITY_VERIFY) ||
                       has_ability(&caller, METHODS_ABILITY_ADMIN);
        token_record_free(&caller);
        if (!allowed) {
            server_call_fail(call, TOKEND_PERMISSION_DENIED,
                             "caller credential lacks the %s ability",
                             METHODS_ABILITY_VERIFY);
            return;
        }
    }
    if (!check_abilities(call, in->abilities, in->n_abilities, false)) {
        return;
    }
    char why[160];
    if (!route_context_ok(in->context, "context", why, sizeof(why))) {
        server_call_fail(call, TOKEND_INVALID_ARGUMENT, "%s", why);
        return;
    }
    if (in->mode != TOKEND__V1__ABILITY_MODE__ALL &&
        in->mode != TOKEND__V1__ABILITY_MODE__ANY) {
        server_call_fail(call, TOKEND_INVALID_ARGUMENT, "mode must be ALL or ANY");
        return;
    }
    Tokend__V1__VerifyResponse resp = TOKEND__V1__VERIFY_RESPONSE__INIT;
    const char *token = in->token != NULL ? in->token : "";
    size_t len = strlen(token);
    if (!token_well_formed(token, len)) {
        resp.reason = TOKEND__V1__STATUS__MALFORMED;
        verify_seen(ms, in, NULL, NULL, resp.reason, now);
        closure(&resp, call);
        return;
    }
    uint8_t digest[TOKEN_DIGEST_LEN];
    if (crypto_sha256(token, len, digest) != TOKEND_OK) {
        server_call_fail(call, TOKEND_INTERNAL, "hashing failed");
        return;
    }
    token_record rec;
    int rv = store_get_token(ms->st, digest, &rec, NULL);
    if (rv == TOKEND_NOT_FOUND) {
        resp.reason = TOKEND__V1__STATUS__NOT_FOUND;
        /* Revoked or never issued: the alerts tell which, off this path. */
        verify_seen(ms, in, NULL, digest, resp.reason, now);
        closure(&resp, call);
        return;
    }
    if (rv != TOKEND_OK) {
        server_call_fail(call, rv, "could not read the token's record");
        return;
    }
    Tokend__V1__TokenInfo info;
    info_meta meta[TOKEN_METADATA_MAX];
    info_meta *meta_ptrs[TOKEN_METADATA_MAX];
    info_fill(&info, &rec, meta, meta_ptrs);
    resp.info = &info;
    if (token_expired(rec.expires_ms, now)) {
        resp.reason = TOKEND__V1__STATUS__EXPIRED;
    } else if (!token_abilities_cover(rec.abilities, rec.n_abilities, in->abilities,
                                      in->n_abilities,
                                      in->mode == TOKEND__V1__ABILITY_MODE__ALL)) {
        resp.reason = TOKEND__V1__STATUS__INSUFFICIENT_ABILITY;
    } else {
        resp.reason = TOKEND__V1__STATUS__OK;
        usage_touch(ms->u, rec.id, now);
    }
    info_usage(ms, &info);
    verify_seen(ms, in, &rec, NULL, resp.reason, now);
    server_call_note(call, "id=%s reason=%s", rec.id, tokend_status_name(resp.reason));
    note_context(call, in->context);
    closure(&resp, call);
    token_record_free(&rec);
}

/* ------------------------------------------------------------------------
 * Revoke. */

typedef enum revoke_kind { REVOKE_ID, REVOKE_TOKEN, REVOKE_OWNER } revoke_kind;

typedef struct revoke_job {
    writer_job base; /* first */
    Tokend__V1__RevokeResponse_Closure closure;
    void *call;
    revoke_kind kind;
    job_caller caller;
    /* A revoke by id from a non-admin: the caller's owner, the only one
     * whose tokens it may revoke. NULL otherwise. */
    char *scope;
    tokend_error why; /* apply's reason for a refusal */
    char id[TOKEN_ID_LEN + 1];
    uint8_t digest[TOKEN_DIGEST_LEN];
    char *owner;
    uint64_t revoked;
    events *ev; /* the audit log, or NULL */
    /* The one token revoked by id or plain text, for its event. */
    char target_id[TOKEN_ID_LEN + 1];
    char target_owner[TOKEN_OWNER_MAX + 1];
} revoke_job;

static void revoke_job_free(revoke_job *job) {
    free(job->owner);
    free(job->scope);
    free(job);
}

/* Adds the deletion of the token with `digest`, as read through the
 * batch, to the batch, and its tombstone: a later presentation of it is
 * then told from one of a token never issued (alerts.h). */
static int revoke_digest(store *st, store_batch *batch, const uint8_t *digest,
                         int64_t now_ms) {
    token_record rec;
    int rv = store_batch_get_token(st, batch, digest, &rec, NULL);
    if (rv != TOKEND_OK) {
        return rv;
    }
    store_batch_delete_token(batch, digest, &rec);
    store_batch_put_tombstone(batch, digest, &rec, now_ms);
    token_record_free(&rec);
    return TOKEND_OK;
}

/* Whether the token with `digest`, as read through the batch, is a valid
 * admin token at now_ms, into *admin. A token of another owner than
 * `scope` (when not NULL) is NOT_FOUND, as if it did not exist. */
static int revoke_target(store *st, store_batch *batch, const uint8_t *digest,
                         const char *scope, int64_t now_ms, bool *admin,
                         revoke_job *job) {
    token_record rec;
    int rv = store_batch_get_token(st, batch, digest, &rec, NULL);
    if (rv != TOKEND_OK) {
        return rv;
    }
    if (job != NULL) {
        snprintf(job->target_id, sizeof(job->target_id), "%s", rec.id);
        snprintf(job->target_owner, sizeof(job->target_owner), "%s", rec.owner);
    }
    *admin = has_ability(&rec, METHODS_ABILITY_ADMIN) &&
             !token_expired(rec.expires_ms, now_ms);
    if (scope != NULL && strcmp(rec.owner, scope) != 0) {
        rv = TOKEND_NOT_FOUND;
    }
    token_record_free(&rec);
    return rv;
}

/* TOKEND_OK unless revoking `admins` valid admin tokens would leave none
 * valid, counted through the batch (so in the writer's order: of two
 * racing revokes of the last two admin tokens, the second is refused). */
static int keep_an_admin(store *st, store_batch *batch, uint64_t admins, int64_t now_ms,
                         tokend_error *why) {
    if (admins == 0) {
        return TOKEND_OK; /* takes no admin token away */
    }
    uint64_t valid = 0;
    int rv = store_batch_admins_valid(st, batch, now_ms, &valid, why);
    if (rv != TOKEND_OK) {
        return rv;
    }
    if (valid <= admins) {
        return error_set(why, TOKEND_FAILED_PRECONDITION, "%s",
                         METHODS_LAST_ADMIN_MESSAGE);
    }
    return TOKEND_OK;
}

/* In the writer's order: the caller credential still valid, then the
 * targets as the batch sees them, then that a valid admin token would
 * remain; only then the deletions. A revoke-all takes the owner's tokens
 * through the batch too, so the creates queued before it in the same
 * group go with the rest; the creates after it find their credential
 * gone if it was one of them. */
static int revoke_change(revoke_job *job, store *st, store_batch *batch) {
    int rv = job_caller_check(&job->caller, st, batch, &job->why);
    if (rv != TOKEND_OK) {
        return rv;
    }
    int64_t now = rpc_now_ms();
    bool admin = false;
    switch (job->kind) {
        case REVOKE_ID:
            rv = store_batch_get_digest(st, batch, job->id, job->digest, NULL);
            if (rv != TOKEND_OK) {
                return rv;
            }
            /* now we know the digest */
            __attribute__((fallthrough));
        case REVOKE_TOKEN:
            rv = revoke_target(st, batch, job->digest, job->scope, now, &admin, job);
            if (rv == TOKEND_OK) {
                rv = keep_an_admin(st, batch, admin ? 1 : 0, now, &job->why);
            }
            if (rv == TOKEND_OK) {
                rv = revoke_digest(st, batch, job->digest, now);
            }
            job->revoked = rv == TOKEND_OK ? 1 : 0;
            return rv;
        case REVOKE_OWNER: {
            char **ids = NULL;
            size_t n = 0;
            rv = store_batch_owner_ids(st, batch, job->owner, &ids, &n, NULL);
            /* Two passes over the same batch state: count the admin
             * tokens among the owner's, then, if one would remain,
             * delete. (Records are read twice rather than held: an owner
             * may have thousands.) */
            uint64_t admins = 0;
            for (size_t i = 0; rv == TOKEND_OK && i < n; i++) {
                uint8_t digest[TOKEN_DIGEST_LEN];
                if (store_batch_get_digest(st, batch, ids[i], digest, NULL) ==
                        TOKEND_OK &&
                    revoke_target(st, batch, digest, NULL, now, &admin, NULL) ==
                        TOKEND_OK &&
                    admin) {
                    admins++;
                }
            }
            if (rv == TOKEND_OK) {
                rv = keep_an_admin(st, batch, admins, now, &job->why);
            }
            for (size_t i = 0; i < n; i++) {
                uint8_t digest[TOKEN_DIGEST_LEN];
                if (rv == TOKEND_OK &&
                    store_batch_get_digest(st, batch, ids[i], digest, NULL) ==
                        TOKEND_OK &&
                    revoke_digest(st, batch, digest, now) == TOKEND_OK) {
                    job->revoked++;
                }
                free(ids[i]);
            }
            free(ids);
            return rv;
        }
    }
    return TOKEND_INTERNAL;
}

/* The revoke, then its event in the same batch: TOKEN_REVOKED with by
 * and revoked, or CALL_REFUSED for a refusal in the writer's order. */
static int revoke_apply(writer_job *wj, store *st, store_batch *batch) {
    revoke_job *job = (revoke_job *)wj;
    int rv = revoke_change(job, st, batch);
    const char *owner = job->kind == REVOKE_OWNER ? job->owner : job->target_owner;
    if (rv != TOKEND_OK) {
        return apply_refused(job->ev, st, batch, "Revoke", rv, &job->why, &job->caller,
                             owner[0] != '\0' ? owner : NULL, job->call);
    }
    if (job->ev == NULL) {
        return rv;
    }
    static const char *const by[] = {"id", "token", "owner"};
    char count[24];
    snprintf(count, sizeof(count), "%llu", (unsigned long long)job->revoked);
    events_field fields[2] = {{"by", by[job->kind]}, {"revoked", count}};
    events_what what = {
        .kind = TOKEND__V1__EVENT_KIND__TOKEN_REVOKED,
        .actor_id = job->caller.present ? job->caller.id : NULL,
        .actor_owner = job->caller.present ? job->caller.owner : NULL,
        .owner = owner,
        .token_id = job->kind == REVOKE_OWNER ? NULL : job->target_id,
        .context = server_call_context(job->call),
        .detail = fields,
        .n_detail = 2,
    };
    return events_put(st, batch, rpc_now_ms(), &what, NULL);
}

static void revoke_done(writer_job *wj, int status) {
    revoke_job *job = (revoke_job *)wj;
    if (status == TOKEND_OK) {
        Tokend__V1__RevokeResponse resp = TOKEND__V1__REVOKE_RESPONSE__INIT;
        resp.revoked = job->revoked;
        server_call_note(job->call, "revoked=%llu", (unsigned long long)job->revoked);
        job->closure(&resp, job->call);
    } else if (status == TOKEND_NOT_FOUND) {
        server_call_fail(job->call, status, "no such token (never issued, or revoked)");
    } else {
        fail_settled(job->call, status, &job->why, "nothing was revoked");
    }
    revoke_job_free(job);
}

/* TOKEND_OK if the token `id` exists and belongs to `owner`; NOT_FOUND
 * if it does not exist or belongs to another. */
static int revoke_target_visible(store *st, const char *id, const char *owner) {
    uint8_t digest[TOKEN_DIGEST_LEN];
    token_record target;
    int rv = store_get_digest(st, id, digest, NULL);
    if (rv == TOKEND_OK) {
        rv = store_get_token(st, digest, &target, NULL);
    }
    if (rv == TOKEND_OK) {
        bool same_owner = strcmp(target.owner, owner) == 0;
        token_record_free(&target);
        rv = same_owner ? TOKEND_OK : TOKEND_NOT_FOUND;
    }
    return rv;
}

/* Checks the target and the caller's right, then queues the deletion.
 * Another owner's token id is answered NOT_FOUND, as if it did not exist:
 * ids are not secret, but which exist for whom is not the caller's to
 * learn; the writer decides it again when it applies the revoke, against
 * the token as it then stands. The right (tokens:write) is checked
 * first, before anything about the id is read, so that a caller without
 * it gets the same PERMISSION_DENIED for every id, of its own owner,
 * another's or none: which ids exist is not learnt by trying. */
static void handle_revoke(service_base *svc, const Tokend__V1__RevokeRequest *in,
                          Tokend__V1__RevokeResponse_Closure closure, void *call) {
    methods *ms = (methods *)svc;
    int64_t now = rpc_now_ms();
    token_record caller = {0};
    uint8_t caller_digest[TOKEN_DIGEST_LEN];
    bool have_caller = false;
    revoke_job *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        server_call_fail(call, TOKEND_INTERNAL, "out of memory");
        return;
    }
    switch (in->target_case) {
        case TOKEND__V1__REVOKE_REQUEST__TARGET_TOKEN: {
            /* Possession of the plain text is the authority: no credential. */
            size_t len = strlen(in->token);
            if (!token_well_formed(in->token, len)) {
                server_call_fail(call, TOKEND_MALFORMED, "token is malformed");
                goto fail;
            }
            if (crypto_sha256(in->token, len, job->digest) != TOKEND_OK) {
                server_call_fail(call, TOKEND_INTERNAL, "hashing failed");
                goto fail;
            }
            job->kind = REVOKE_TOKEN;
            break;
        }
        case TOKEND__V1__REVOKE_REQUEST__TARGET_ID: {
            if (!token_id_ok(in->id, strlen(in->id))) {
                server_call_fail(call, TOKEND_INVALID_ARGUMENT,
                                 "id must be %d base62 characters", TOKEN_ID_LEN);
                goto fail;
            }
            if (!(have_caller = authenticate(ms, call, "Revoke", now, &caller,
                                             caller_digest, true))) {
                goto fail;
            }
            if (!may_manage(ms, call, "Revoke", &caller, caller.owner,
                            METHODS_ABILITY_WRITE, "revoke")) {
                goto fail;
            }
            if (!has_ability(&caller, METHODS_ABILITY_ADMIN)) {
                /* Another owner's id, or none, refused without queueing;
                 * the writer decides again on the token as it then is. */
                int rv = revoke_target_visible(ms->st, in->id, caller.owner);
                if (rv == TOKEND_NOT_FOUND) {
                    server_call_fail(call, rv,
                                     "no such token (never issued, or revoked)");
                    goto fail;
                }
                if (rv != TOKEND_OK) {
                    server_call_fail(call, rv, "could not read the token's record");
                    goto fail;
                }
                if ((job->scope = strdup(caller.owner)) == NULL) {
                    server_call_fail(call, TOKEND_INTERNAL, "out of memory");
                    goto fail;
                }
            }
            memcpy(job->id, in->id, TOKEN_ID_LEN + 1);
            job->kind = REVOKE_ID;
            server_call_note(call, "id=%s", job->id);
            break;
        }
        case TOKEND__V1__REVOKE_REQUEST__TARGET_OWNER: {
            if (!(have_caller = authenticate(ms, call, "Revoke", now, &caller,
                                             caller_digest, true))) {
                goto fail;
            }
            const char *owner = in->owner[0] != '\0' ? in->owner : caller.owner;
            if (!check_text(call, "owner", owner, TOKEN_OWNER_MAX)) {
                goto fail;
            }
            if (!may_manage(ms, call, "Revoke", &caller, owner, METHODS_ABILITY_WRITE,
                            "revoke")) {
                goto fail;
            }
            job->owner = strdup(owner);
            if (job->owner == NULL) {
                server_call_fail(call, TOKEND_INTERNAL, "out of memory");
                goto fail;
            }
            job->kind = REVOKE_OWNER;
            break;
        }
        default:
            server_call_fail(call, TOKEND_INVALID_ARGUMENT,
                             "one of id, token or owner must be given");
            goto fail;
    }
    if (have_caller) {
        job_caller_set(&job->caller, &caller, caller_digest);
        token_record_free(&caller);
    }
    job->base.apply = revoke_apply;
    job->base.done = revoke_done;
    job->ev = ms->ev;
    job->closure = closure;
    job->call = call;
    if (writer_submit(ms->w, &job->base) != TOKEND_OK) {
        server_call_fail(call, TOKEND_UNAVAILABLE, "service is shutting down");
        revoke_job_free(job);
    }
    return;
fail:
    if (have_caller) {
        token_record_free(&caller);
    }
    revoke_job_free(job);
}

/* ------------------------------------------------------------------------
 * ListTokens. */

/* Bytes a field of `len` packed bytes takes in its message: tag, length
 * varint, the bytes. */
static size_t packed_field_len(size_t len) {
    size_t n = 2;
    for (size_t v = len; v >= 0x80; v >>= 7) {
        n++;
    }
    return n + len;
}

/* A page is cut twice by size: the store stops reading once the records
 * pass METHODS_LIST_BYTES (so a call never holds much more than a page in
 * memory), then the page ends before the token whose TokenInfo would take
 * the packed tokens past it (a TokenInfo packs a little larger than its
 * record). Either way next_cursor continues right after the page's last
 * token; a page holds at least one. */
static void handle_list_tokens(service_base *svc, const Tokend__V1__ListTokensRequest *in,
                               Tokend__V1__ListTokensResponse_Closure closure,
                               void *call) {
    methods *ms = (methods *)svc;
    int64_t now = rpc_now_ms();
    if (in->expiring_within_seconds != 0) {
        server_call_fail(call, TOKEND_UNIMPLEMENTED, "expiring_within_seconds %s",
                         METHODS_POLICY_UNSERVED);
        return;
    }
    token_record caller;
    if (!authenticate(ms, call, "ListTokens", now, &caller, NULL, true)) {
        return;
    }
    token_record *recs = NULL;
    size_t n = 0;
    char *next = NULL;
    Tokend__V1__TokenInfo *infos = NULL;
    Tokend__V1__TokenInfo **info_ptrs = NULL;
    info_meta *meta = NULL;
    info_meta **meta_ptrs = NULL;

    const char *owner =
        in->owner != NULL && in->owner[0] != '\0' ? in->owner : caller.owner;
    size_t limit = in->page_size == 0 ? METHODS_LIST_DEFAULT : in->page_size;
    const char *cursor = in->cursor != NULL ? in->cursor : "";
    if (!check_text(call, "owner", owner, TOKEN_OWNER_MAX)) {
        goto done;
    }
    if (limit > METHODS_LIST_MAX) {
        server_call_fail(call, TOKEND_INVALID_ARGUMENT, "page_size must be at most %d",
                         METHODS_LIST_MAX);
        goto done;
    }
    if (strlen(cursor) > METHODS_CURSOR_MAX || !rpc_text_ok(cursor, strlen(cursor))) {
        server_call_fail(call, TOKEND_INVALID_ARGUMENT, "cursor is not valid");
        goto done;
    }
    if (!may_manage(ms, call, "ListTokens", &caller, owner, METHODS_ABILITY_READ,
                    "list")) {
        goto done;
    }
    int rv = store_list_owner_within(ms->st, owner, cursor, limit, METHODS_LIST_BYTES,
                                     &recs, &n, &next, NULL);
    if (rv != TOKEND_OK) {
        server_call_fail(call, rv,
                         rv == TOKEND_INVALID_ARGUMENT ? "cursor is not valid"
                                                       : "could not list tokens");
        goto done;
    }
    size_t n_meta = 0;
    for (size_t i = 0; i < n; i++) {
        n_meta += recs[i].n_metadata;
    }
    infos = calloc(n + 1, sizeof(*infos));
    info_ptrs = calloc(n + 1, sizeof(*info_ptrs));
    meta = calloc(n_meta + 1, sizeof(*meta));
    meta_ptrs = calloc(n_meta + 1, sizeof(*meta_ptrs));
    if (infos == NULL || info_ptrs == NULL || meta == NULL || meta_ptrs == NULL) {
        server_call_fail(call, TOKEND_INTERNAL, "out of memory");
        goto done;
    }
    size_t m = 0, bytes = 0, kept = n;
    for (size_t i = 0; i < n; i++) {
        info_fill(&infos[i], &recs[i], meta + m, meta_ptrs + m);
        m += recs[i].n_metadata;
        info_usage(ms, &infos[i]);
        size_t one = packed_field_len(tokend__v1__token_info__get_packed_size(&infos[i]));
        if (i > 0 && one > METHODS_LIST_BYTES - bytes) {
            kept = i;
            break;
        }
        bytes += one;
        info_ptrs[i] = &infos[i];
    }
    if (kept < n) {
        free(next);
        next = malloc(RECORD_CURSOR_LEN + 1);
        if (next == NULL || !record_cursor_of(&recs[kept - 1], next)) {
            server_call_fail(call, TOKEND_INTERNAL, "could not make the page's cursor");
            goto done;
        }
    }
    Tokend__V1__ListTokensResponse resp = TOKEND__V1__LIST_TOKENS_RESPONSE__INIT;
    resp.tokens = info_ptrs;
    resp.n_tokens = kept;
    resp.next_cursor = next != NULL ? next : "";
    server_call_note(call, "count=%zu", kept);
    closure(&resp, call);
done:
    for (size_t i = 0; i < n; i++) {
        token_record_free(&recs[i]);
    }
    free(recs);
    free(next);
    free(infos);
    free(info_ptrs);
    free(meta);
    free(meta_ptrs);
    token_record_free(&caller);
}

/* ------------------------------------------------------------------------
 * GetToken. */

/* The rule of ListTokens, for one token: an admin reads any; another
 * caller needs tokens:read, checked before the id is looked up (so every
 * id gets the same PERMISSION_DENIED without it), and then sees only its
 * own owner's tokens: another owner's id is NOT_FOUND, as for one no
 * token has. */
static void handle_get_token(service_base *svc, const Tokend__V1__GetTokenRequest *in,
                             Tokend__V1__GetTokenResponse_Closure closure, void *call) {
    methods *ms = (methods *)svc;
    int64_t now = rpc_now_ms();
    const char *id = in->id != NULL ? in->id : "";
    if (!token_id_ok(id, strlen(id))) {
        server_call_fail(call, TOKEND_INVALID_ARGUMENT, "id must be %d base62 characters",
                         TOKEN_ID_LEN);
        return;
    }
    token_record caller;
    if (!authenticate(ms, call, "GetToken", now, &caller, NULL, true)) {
        return;
    }
    token_record rec = {0};
    bool have_rec = false;
    if (!may_manage(ms, call, "GetToken", &caller, caller.owner, METHODS_ABILITY_READ,
                    "read")) {
        goto done;
    }
    server_call_note(call, "id=%s", id);
    uint8_t digest[TOKEN_DIGEST_LEN];
    int rv = store_get_digest(ms->st, id, digest, NULL);
    if (rv == TOKEND_OK) {
        rv = store_get_token(ms->st, digest, &rec, NULL);
        have_rec = rv == TOKEND_OK;
    }
    if (rv == TOKEND_OK && !has_ability(&caller, METHODS_ABILITY_ADMIN) &&
        strcmp(rec.owner, caller.owner) != 0) {
        rv = TOKEND_NOT_FOUND;
    }
    if (rv == TOKEND_NOT_FOUND) {
        server_call_fail(call, rv, "no such token (never issued, or revoked)");
        goto done;
    }
    if (rv != TOKEND_OK) {
        server_call_fail(call, rv, "could not read the token's record");
        goto done;
    }
    Tokend__V1__TokenInfo info;
    info_meta meta[TOKEN_METADATA_MAX];
    info_meta *meta_ptrs[TOKEN_METADATA_MAX];
    info_fill(&info, &rec, meta, meta_ptrs);
    info_usage(ms, &info);
    Tokend__V1__GetTokenResponse resp = TOKEND__V1__GET_TOKEN_RESPONSE__INIT;
    resp.info = &info;
    closure(&resp, call);
done:
    if (have_rec) {
        token_record_free(&rec);
    }
    token_record_free(&caller);
}

/* ------------------------------------------------------------------------
 * ListEvents. */

/* Checks a ListEvents request's filters into *q; answers the call and
 * returns false when one is not valid. */
static bool events_query_of(void *call, const Tokend__V1__ListEventsRequest *in,
                            events_query *q) {
    const char *token_id = in->token_id != NULL ? in->token_id : "";
    const char *cursor = in->cursor != NULL ? in->cursor : "";
    if (token_id[0] != '\0' && !token_id_ok(token_id, strlen(token_id))) {
        server_call_fail(call, TOKEND_INVALID_ARGUMENT,
                         "token_id must be %d base62 characters", TOKEN_ID_LEN);
        return false;
    }
    if (protobuf_c_enum_descriptor_get_value(&tokend__v1__event_kind__descriptor,
                                             (int)in->kind) == NULL) {
        server_call_fail(call, TOKEND_INVALID_ARGUMENT, "kind %d is not an EventKind",
                         (int)in->kind);
        return false;
    }
    if (in->since_unix_ms < 0) {
        server_call_fail(call, TOKEND_INVALID_ARGUMENT,
                         "since_unix_ms must not be negative");
        return false;
    }
    if (in->page_size > METHODS_LIST_MAX) {
        server_call_fail(call, TOKEND_INVALID_ARGUMENT, "page_size must be at most %d",
                         METHODS_LIST_MAX);
        return false;
    }
    if (cursor[0] != '\0' && !events_cursor_decode(cursor, &q->after)) {
        server_call_fail(call, TOKEND_INVALID_ARGUMENT, "cursor is not valid");
        return false;
    }
    q->token_id = token_id[0] != '\0' ? token_id : NULL;
    q->kind = in->kind;
    q->since_ms = in->since_unix_ms;
    q->page_size = in->page_size == 0 ? METHODS_LIST_DEFAULT : in->page_size;
    return true;
}

/* The audit log, a page at a time. An admin reads any events; another
 * caller needs tokens:read and reads its own owner's events only (an
 * owner filter naming another owner is PERMISSION_DENIED, as in
 * ListTokens). */
static void handle_list_events(service_base *svc, const Tokend__V1__ListEventsRequest *in,
                               Tokend__V1__ListEventsResponse_Closure closure,
                               void *call) {
    methods *ms = (methods *)svc;
    token_record caller;
    if (!authenticate(ms, call, "ListEvents", rpc_now_ms(), &caller, NULL, true)) {
        return;
    }
    events_query q = {0};
    Tokend__V1__Event **page = NULL;
    size_t n = 0;
    bool admin = has_ability(&caller, METHODS_ABILITY_ADMIN);
    const char *owner = in->owner != NULL && in->owner[0] != '\0' ? in->owner
                        : admin                                   ? NULL
                                                                  : caller.owner;
    if (owner != NULL && !check_text(call, "owner", owner, TOKEN_OWNER_MAX)) {
        goto done;
    }
    if (!events_query_of(call, in, &q)) {
        goto done;
    }
    if (!may_manage(ms, call, "ListEvents", &caller, owner != NULL ? owner : caller.owner,
                    METHODS_ABILITY_READ, "read the events of")) {
        goto done;
    }
    q.owner = owner;
    char next[EVENTS_CURSOR_LEN + 1];
    bool more = false;
    tokend_error err;
    int rv = events_list(ms->st, &q, &page, &n, next, &more, &err);
    if (rv != TOKEND_OK) {
        server_call_fail(call, rv, "could not read the audit log: %s", err.message);
        goto done;
    }
    Tokend__V1__ListEventsResponse resp = TOKEND__V1__LIST_EVENTS_RESPONSE__INIT;
    resp.events = page;
    resp.n_events = n;
    resp.next_cursor = next;
    resp.more = more;
    server_call_note(call, "count=%zu", n);
    closure(&resp, call);
done:
    events_page_free(page, n);
    token_record_free(&caller);
}

/* ------------------------------------------------------------------------
 * GetUsage. */

#define METHODS_USAGE_BUCKETS_MAX 2880
#define METHODS_USAGE_DEFAULT_MS (24LL * 3600 * 1000)
/* A GetUsage reply's bound, packed: routes and addresses of 2880 buckets
 * could otherwise pass a client's 16 MiB receive limit. */
#define METHODS_USAGE_BYTES ((size_t)8 << 20)

/* The series a GetUsage names, once checked and authorized. */
typedef struct usage_target {
    series_scope scope;
    const char *name;
} usage_target;

/* Checks the request's shape and its range into *from, *to and *step_ms
 * (the defaults applied); answers INVALID_ARGUMENT and returns false on a
 * bad one. */
static bool usage_request_ok(void *call, const Tokend__V1__GetUsageRequest *in,
                             int64_t now, int64_t *from, int64_t *to, int64_t *step_ms) {
    const char *id = in->id != NULL ? in->id : "";
    const char *owner = in->owner != NULL ? in->owner : "";
    if (id[0] != '\0' && !token_id_ok(id, strlen(id))) {
        server_call_fail(call, TOKEND_INVALID_ARGUMENT, "id must be %d base62 characters",
                         TOKEN_ID_LEN);
        return false;
    }
    if (owner[0] != '\0' && !check_text(call, "owner", owner, TOKEN_OWNER_MAX)) {
        return false;
    }
    if ((id[0] != '\0') + (owner[0] != '\0') + in->deployment > 1) {
        server_call_fail(call, TOKEND_INVALID_ARGUMENT,
                         "give at most one of id, owner and deployment");
        return false;
    }
    if (in->step != TOKEND__V1__USAGE_STEP__MINUTE &&
        in->step != TOKEND__V1__USAGE_STEP__HOUR) {
        server_call_fail(call, TOKEND_INVALID_ARGUMENT, "step must be MINUTE or HOUR");
        return false;
    }
    *step_ms =
        in->step == TOKEND__V1__USAGE_STEP__HOUR ? SERIES_HOUR_MS : SERIES_MINUTE_MS;
    *to = in->to_unix_ms != 0 ? in->to_unix_ms : now;
    *from = in->from_unix_ms != 0 ? in->from_unix_ms : *to - METHODS_USAGE_DEFAULT_MS;
    if (*from < 0 || *to <= *from) {
        server_call_fail(call, TOKEND_INVALID_ARGUMENT,
                         "the range must have 0 <= from_unix_ms < to_unix_ms");
        return false;
    }
    if ((*to - *from) / *step_ms > METHODS_USAGE_BUCKETS_MAX) {
        server_call_fail(call, TOKEND_INVALID_ARGUMENT,
                         "the range holds more than %d buckets of the step",
                         METHODS_USAGE_BUCKETS_MAX);
        return false;
    }
    return true;
}

/* The rights of ListTokens: the deployment for an admin only; an owner
 * with tokens:read of it (or as an admin); a token id as GetToken (another
 * owner's is NOT_FOUND). Answers the call and returns false when refused.
 * The target points into the request or the caller's record. */
static bool usage_authorize(methods *ms, void *call,
                            const Tokend__V1__GetUsageRequest *in,
                            const token_record *caller, usage_target *target) {
    const char *id = in->id != NULL ? in->id : "";
    bool admin = has_ability(caller, METHODS_ABILITY_ADMIN);
    if (in->deployment) {
        if (!admin) {
            server_call_fail(call, TOKEND_PERMISSION_DENIED,
                             "the deployment's usage needs the %s ability",
                             METHODS_ABILITY_ADMIN);
            return false;
        }
        *target = (usage_target){SERIES_ALL, ""};
        return true;
    }
    if (id[0] == '\0') {
        const char *owner =
            in->owner != NULL && in->owner[0] != '\0' ? in->owner : caller->owner;
        *target = (usage_target){SERIES_OWNER, owner};
        return may_manage(ms, call, "GetUsage", caller, owner, METHODS_ABILITY_READ,
                          "read the usage of");
    }
    if (!may_manage(ms, call, "GetUsage", caller, caller->owner, METHODS_ABILITY_READ,
                    "read")) {
        return false;
    }
    uint8_t digest[TOKEN_DIGEST_LEN];
    token_record rec;
    int rv = store_get_digest(ms->st, id, digest, NULL);
    if (rv == TOKEND_OK) {
        rv = store_get_token(ms->st, digest, &rec, NULL);
        if (rv == TOKEND_OK) {
            if (!admin && strcmp(rec.owner, caller->owner) != 0) {
                rv = TOKEND_NOT_FOUND;
            }
            token_record_free(&rec);
        }
    }
    if (rv == TOKEND_NOT_FOUND) {
        /* A revoked token's series stay readable while its tombstone is
         * kept (--tombstone-retention): what a leaked token did is the
         * first question after revoking it. Its owner's rights apply. */
        store_tombstone tomb;
        rv = store_get_tombstone_of_id(ms->st, id, rpc_now_ms(), &tomb, NULL);
        if (rv == TOKEND_OK && !admin && strcmp(tomb.owner, caller->owner) != 0) {
            rv = TOKEND_NOT_FOUND;
        }
    }
    if (rv == TOKEND_NOT_FOUND) {
        server_call_fail(call, rv, "no such token (never issued, or revoked)");
        return false;
    }
    if (rv != TOKEND_OK) {
        server_call_fail(call, rv, "could not read the token's record");
        return false;
    }
    *target = (usage_target){SERIES_TOKEN, id};
    return true;
}

/* One (text, count) list of a bucket as a map of the reply. The three map
 * entry types have one layout (base, key, value) and differ in their
 * descriptor. The entries' array rides in the pointer array's spare last
 * slot, for usage_map_free. */
typedef Tokend__V1__UsageBucket__RoutesEntry usage_entry_msg;

static void *usage_map(const series_count *c, size_t n,
                       const ProtobufCMessageDescriptor *desc, size_t *n_out) {
    usage_entry_msg *items = calloc(n + 1, sizeof(*items));
    usage_entry_msg **ptrs = calloc(n + 1, sizeof(*ptrs));
    if (items == NULL || ptrs == NULL) {
        free(items);
        free(ptrs);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        protobuf_c_message_init(desc, &items[i]);
        items[i].key = c[i].text;
        items[i].value = c[i].n;
        ptrs[i] = &items[i];
    }
    ptrs[n] = items;
    *n_out = n;
    return ptrs;
}

static void usage_map_free(void *ptrs, size_t n) {
    usage_entry_msg **p = ptrs;
    if (p != NULL) {
        free(p[n]);
    }
    free(p);
}

/* Fills `out` from `b` (pointing at its texts). False without memory. */
static bool usage_bucket_fill(Tokend__V1__UsageBucket *out, int64_t start,
                              const series_bucket *b,
                              Tokend__V1__UsageBucket__OutcomesEntry *outcomes,
                              Tokend__V1__UsageBucket__OutcomesEntry **outcome_ptrs) {
    tokend__v1__usage_bucket__init(out);
    out->start_unix_ms = start;
    for (int o = 0; o < RECORD_SERIES_OUTCOMES; o++) {
        if (b->outcomes[o] == 0) {
            continue;
        }
        tokend__v1__usage_bucket__outcomes_entry__init(&outcomes[out->n_outcomes]);
        outcomes[out->n_outcomes].key = (char *)tokend_status_name(o);
        outcomes[out->n_outcomes].value = b->outcomes[o];
        outcome_ptrs[out->n_outcomes] = &outcomes[out->n_outcomes];
        out->n_outcomes++;
    }
    out->outcomes = outcome_ptrs;
    out->routes =
        usage_map(b->routes, b->n_routes,
                  &tokend__v1__usage_bucket__routes_entry__descriptor, &out->n_routes);
    out->client_ips = usage_map(b->ips, b->n_ips,
                                &tokend__v1__usage_bucket__client_ips_entry__descriptor,
                                &out->n_client_ips);
    return out->routes != NULL && out->client_ips != NULL;
}

/* Steps: check the request, authenticate, authorize (usage_authorize),
 * read the stored and not yet stored buckets (series_read), answer. */
static void handle_get_usage(service_base *svc, const Tokend__V1__GetUsageRequest *in,
                             Tokend__V1__GetUsageResponse_Closure closure, void *call) {
    methods *ms = (methods *)svc;
    int64_t now = rpc_now_ms(), from = 0, to = 0, step_ms = 0;
    if (!usage_request_ok(call, in, now, &from, &to, &step_ms)) {
        return;
    }
    token_record caller;
    if (!authenticate(ms, call, "GetUsage", now, &caller, NULL, true)) {
        return;
    }
    series_bucket *buckets = NULL;
    int64_t *starts = NULL;
    size_t n = 0;
    Tokend__V1__UsageBucket *msgs = NULL;
    Tokend__V1__UsageBucket **msg_ptrs = NULL;
    Tokend__V1__UsageBucket__OutcomesEntry *outcomes = NULL;
    Tokend__V1__UsageBucket__OutcomesEntry **outcome_ptrs = NULL;
    usage_target target;
    if (!usage_authorize(ms, call, in, &caller, &target)) {
        goto done;
    }
    if (ms->series == NULL) {
        server_call_fail(call, TOKEND_UNIMPLEMENTED,
                         "this service keeps no usage series");
        goto done;
    }
    series_step step = step_ms == SERIES_HOUR_MS ? SERIES_HOUR : SERIES_MINUTE;
    tokend_error err;
    int rv = series_read(ms->series, ms->st, target.scope, step, target.name, from, to,
                         &buckets, &starts, &n, &err);
    if (rv != TOKEND_OK) {
        server_call_fail(call, rv, "could not read the usage series: %s", err.message);
        goto done;
    }
    msgs = calloc(n + 1, sizeof(*msgs));
    msg_ptrs = calloc(n + 1, sizeof(*msg_ptrs));
    outcomes = calloc((n + 1) * RECORD_SERIES_OUTCOMES, sizeof(*outcomes));
    outcome_ptrs = calloc((n + 1) * RECORD_SERIES_OUTCOMES, sizeof(*outcome_ptrs));
    bool ok =
        msgs != NULL && msg_ptrs != NULL && outcomes != NULL && outcome_ptrs != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        ok = usage_bucket_fill(&msgs[i], starts[i], &buckets[i],
                               outcomes + i * RECORD_SERIES_OUTCOMES,
                               outcome_ptrs + i * RECORD_SERIES_OUTCOMES);
        msg_ptrs[i] = &msgs[i];
    }
    if (!ok) {
        server_call_fail(call, TOKEND_INTERNAL, "out of memory");
        goto done;
    }
    Tokend__V1__GetUsageResponse resp = TOKEND__V1__GET_USAGE_RESPONSE__INIT;
    resp.step = in->step;
    resp.buckets = msg_ptrs;
    resp.n_buckets = n;
    if (tokend__v1__get_usage_response__get_packed_size(&resp) > METHODS_USAGE_BYTES) {
        server_call_fail(call, TOKEND_RESOURCE_EXHAUSTED,
                         "the usage of this range is over %zu MiB: ask for a shorter "
                         "range or the hour step",
                         METHODS_USAGE_BYTES >> 20);
        goto done;
    }
    server_call_note(call, "buckets=%zu", n);
    closure(&resp, call);
done:
    for (size_t i = 0; msgs != NULL && i < n; i++) {
        usage_map_free(msgs[i].routes, msgs[i].n_routes);
        usage_map_free(msgs[i].client_ips, msgs[i].n_client_ips);
    }
    for (size_t i = 0; i < n; i++) {
        series_bucket_free(&buckets[i]);
    }
    free(buckets);
    free(starts);
    free(msgs);
    free(msg_ptrs);
    free(outcomes);
    free(outcome_ptrs);
    token_record_free(&caller);
}

/* ------------------------------------------------------------------------
 * Admin recovery: `tokend admin-token`, offline (main.c) or through the
 * control socket (below). Both make the token here and log it here. */

int methods_mint_recovery(const char *prefix, const char *owner, int64_t now_ms,
                          char token_out[TOKEN_MAX_LEN + 1],
                          uint8_t digest[TOKEN_DIGEST_LEN], token_record *rec) {
    char *abilities[] = {METHODS_ABILITY_ADMIN};
    int rv = methods_mint(prefix, owner, METHODS_RECOVERY_NAME, abilities, 1, now_ms, 0,
                          token_out, digest, rec);
    if (rv != TOKEND_OK) {
        return rv;
    }
    rec->metadata = calloc(1, sizeof(*rec->metadata));
    if (rec->metadata != NULL) {
        rec->n_metadata = 1;
        rec->metadata[0].key = strdup(METHODS_RECOVERY_META_KEY);
        rec->metadata[0].value = strdup(METHODS_RECOVERY_META_VALUE);
    }
    if (rec->metadata == NULL || rec->metadata[0].key == NULL ||
        rec->metadata[0].value == NULL) {
        token_record_free(rec);
        crypto_wipe(token_out, TOKEN_MAX_LEN + 1);
        return TOKEND_INTERNAL;
    }
    return TOKEND_OK;
}

void methods_log_recovery(const token_record *rec, const char *via) {
    char q[300];
    LOG(LOG_WARN, "admin.recovery", "id=%s owner=%s created_ms=%lld via=%s", rec->id,
        log_quote(q, sizeof(q), rec->owner), (long long)rec->created_ms, via);
}

/* The control socket's MintAdminToken: the recovery token, written by the
 * writer like a create (no caller credential: reaching the socket is the
 * authority; no owner limit: a recovery must not be refused by it). */
static void handle_mint_admin_token(Tokend__V1__Control_Service *svc,
                                    const Tokend__V1__MintAdminTokenRequest *in,
                                    Tokend__V1__MintAdminTokenResponse_Closure closure,
                                    void *call) {
    methods *ms = (methods *)((char *)svc - offsetof(methods, control));
    const char *owner =
        in->owner != NULL && in->owner[0] != '\0' ? in->owner : METHODS_RECOVERY_OWNER;
    if (!check_text(call, "owner", owner, TOKEN_OWNER_MAX)) {
        return;
    }
    create_job *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        server_call_fail(call, TOKEND_INTERNAL, "out of memory");
        return;
    }
    if (methods_mint_recovery(ms->prefix, owner, rpc_now_ms(), job->token, job->digest,
                              &job->rec) != TOKEND_OK) {
        server_call_fail(call, TOKEND_INTERNAL, "could not mint a token");
        free(job);
        return;
    }
    job->rec.created_seq = atomic_fetch_add(&ms->created_seq, 1);
    job->base.apply = create_apply;
    job->base.done = create_done;
    job->ev = ms->ev;
    job->recovery_closure = closure;
    job->call = call;
    if (writer_submit(ms->w, &job->base) != TOKEND_OK) {
        server_call_fail(call, TOKEND_UNAVAILABLE, "service is shutting down");
        crypto_wipe(job->token, sizeof(job->token));
        token_record_free(&job->rec);
        free(job);
    }
}

static void control_destroy(Tokend__V1__Control_Service *svc) {
    (void)svc; /* freed by methods_free */
}

ProtobufCService *methods_control_service(methods *ms) {
    return &ms->control.base;
}

/* ------------------------------------------------------------------------ */

static void service_destroy(service_base *svc) {
    (void)svc; /* freed by methods_free */
}

methods *methods_new(const methods_config *cfg, store *st, writer *w, usage *u) {
    methods *ms = calloc(1, sizeof(*ms));
    if (ms == NULL) {
        return NULL;
    }
    tokend__v1__token_service__init(&ms->base, service_destroy);
    ms->base.create_token = handle_create_token;
    ms->base.verify = handle_verify;
    ms->base.revoke = handle_revoke;
    ms->base.list_tokens = handle_list_tokens;
    ms->base.get_token = handle_get_token;
    ms->base.list_events = handle_list_events;
    ms->base.get_usage = handle_get_usage;
    tokend__v1__control__init(&ms->control, control_destroy);
    ms->control.mint_admin_token = handle_mint_admin_token;
    ms->prefix = strdup(cfg->prefix != NULL ? cfg->prefix : TOKEN_DEFAULT_PREFIX);
    if (ms->prefix == NULL) {
        free(ms);
        return NULL;
    }
    ms->max_lifetime_s = cfg->max_lifetime_s;
    ms->verify_requires_credential = cfg->verify_requires_credential;
    ms->max_tokens_per_owner = cfg->max_tokens_per_owner;
    ms->st = st;
    ms->w = w;
    ms->u = u;
    ms->series = cfg->series;
    ms->alerts = cfg->alerts;
    return ms;
}

void methods_set_events(methods *ms, events *ev) {
    ms->ev = ev;
}

void methods_free(methods *ms) {
    if (ms == NULL) {
        return;
    }
    free(ms->prefix);
    free(ms);
}

ProtobufCService *methods_service(methods *ms) {
    return &ms->base.base;
}
