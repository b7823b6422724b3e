/*
 * methods.h — the TokenService's methods and who may call them: the five
 * methods (CreateToken, Verify, Revoke, ListTokens, GetToken) over the store, the
 * writer and the usage table, and the rights each one checks. It owns the
 * validation of every request field and the authorization rule; it does
 * not touch NNG (the server hands it decoded requests), RocksDB (it goes
 * through store.h) or OpenSSL (crypto.h), and never logs a plain-text
 * token.
 *
 * The server hands each decoded request to these handlers through
 * protoc-c's ProtobufCService; reads happen in the handler (on an NNG
 * callback thread), writes are queued to the writer and answered from
 * there once durable. A write is checked twice: in the handler (so that
 * most refusals cost no queueing) and again when the writer applies it,
 * in the writer's serial order, against the store as every earlier write
 * left it: the caller credential must still exist and be unexpired, the
 * target still be there, the owner still be under its token limit.
 *
 * Rights (abilities of the caller credential):
 *   tokend:admin   anything, for any owner
 *   tokens:read    list its own owner's tokens, read one of them (GetToken)
 *   tokens:write   create tokens for its own owner, within its own
 *                  abilities and expiry, and revoke its own owner's tokens
 *   tokend:verify  call Verify when --verify-requires-credential is set
 * Knowing a token's plain text is authority to revoke that token.
 */
#ifndef TOKEND_METHODS_H
#define TOKEND_METHODS_H

#include <stdbool.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "events.h"
#include "alerts.h"
#include "store.h"
#include "token.h"
#include "series.h"
#include "usage.h"
#include "writer.h"

/* The abilities that carry the rights above. */
#define METHODS_ABILITY_ADMIN "tokend:admin"
#define METHODS_ABILITY_VERIFY "tokend:verify"
#define METHODS_ABILITY_READ "tokens:read"
#define METHODS_ABILITY_WRITE "tokens:write"

/* Why a Revoke was refused FAILED_PRECONDITION: afterwards no valid token
 * with tokend:admin would remain. */
#define METHODS_LAST_ADMIN_MESSAGE                                                \
    "refused: this would revoke the last admin token; make another first "        \
    "(tokenctl create --ability tokend:admin ...) or recover later with `tokend " \
    "admin-token --data-dir DIR`"

/* What `tokend serve` configures of the methods. */
typedef struct methods_config {
    const char *prefix;              /* prefix of new tokens */
    int64_t max_lifetime_s;          /* 0: none */
    bool verify_requires_credential; /* Verify needs tokend:verify or admin */
    uint64_t max_tokens_per_owner;   /* a create past it: RESOURCE_EXHAUSTED; 0: none */
    series *series;                  /* usage series (series.h); NULL: none kept */
    alerts *alerts;                  /* every Verify's outcome goes there; NULL: none */
} methods_config;

/* The TokenService: its handlers and what they share. */
typedef struct methods methods;

/* A TokenService over `st`, `w` and `u` (all must outlive it). The config
 * strings are copied. Returns NULL when out of memory. Free it with
 * methods_free once the server and the writer have stopped. NULL is
 * ignored there. */
methods *methods_new(const methods_config *cfg, store *st, writer *w, usage *u);
void methods_free(methods *ms);

/* The service as protobuf-c's generic ProtobufCService, for the server;
 * owned by `ms`, valid until methods_free. */
ProtobufCService *methods_service(methods *ms);

/* Makes a new token and its record without storing anything: fills
 * token_out (plain text), digest and *rec (the caller frees it with
 * token_record_free and wipes token_out). Used by CreateToken and by
 * `tokend init`. Returns TOKEND_OK or TOKEND_INTERNAL (CSPRNG failure). */
int methods_mint(const char *prefix, const char *owner, const char *name,
                 char *const *abilities, size_t n_abilities, int64_t created_ms,
                 int64_t expires_ms, char token_out[TOKEN_MAX_LEN + 1],
                 uint8_t digest[TOKEN_DIGEST_LEN], token_record *rec);

/* Admin recovery (`tokend admin-token`), made and recorded in one place
 * whether tokend is stopped (main.c writes the store itself) or running
 * (the control socket's MintAdminToken, methods_control_service). The
 * token has tokend:admin, no expiry, the name "admin recovery" and the
 * metadata made_by = "tokend admin-token"; the event is one log line
 * (event=admin.recovery, the id, owner, time and path; never the token). */
#define METHODS_RECOVERY_NAME "admin recovery"
#define METHODS_RECOVERY_OWNER "admin"
#define METHODS_RECOVERY_META_KEY "made_by"
#define METHODS_RECOVERY_META_VALUE "tokend admin-token"

/* Mints the recovery token for `owner` as methods_mint does (the caller
 * wipes token_out and frees *rec). TOKEND_OK or TOKEND_INTERNAL. */
int methods_mint_recovery(const char *prefix, const char *owner, int64_t now_ms,
                          char token_out[TOKEN_MAX_LEN + 1],
                          uint8_t digest[TOKEN_DIGEST_LEN], token_record *rec);

/* Logs the recovery of `rec`, made `via` "offline" or "control". */
void methods_log_recovery(const token_record *rec, const char *via);

/* The audit log the methods record their events in (events.h); until it
 * is set, none are recorded. Set it before serving. */
void methods_set_events(methods *ms, events *ev);

/* Adds the audit event of a new token `rec` to `batch`: TOKEN_CREATED, or
 * with `via` ("offline", "control") ADMIN_RECOVERY; actor and context may
 * be NULL. Used by the writer's creates and by `tokend init` and `tokend
 * admin-token` offline, in the batch that puts the token. On failure the
 * batch is failed too (events_put). */
int methods_event_created(store *st, store_batch *batch, const token_record *rec,
                          const char *actor_id, const char *actor_owner,
                          const Tokend__V1__RequestContext *ctx, const char *via);

/* The Control service (tokend.proto), for the control socket's server
 * only; owned by `ms`, valid until methods_free. */
ProtobufCService *methods_control_service(methods *ms);

#endif /* TOKEND_METHODS_H */
