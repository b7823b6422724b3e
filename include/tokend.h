/*
 * tokend.h — libtokend, the C client of the tokend token service.
 *
 * This is the whole public API: connect once, then create, verify, revoke,
 * list and read tokens from any number of threads, each call bounded by a
 * timeout. Results are plain C structs with matching free functions; no
 * protobuf or NNG type appears here. The library never logs and never
 * keeps a plain-text token longer than the call that carries it (tokens
 * it returns are wiped by their free functions).
 *
 * Errors: every call returns a tokend status (TOKEND_OK is 0) and, when
 * given a tokend_error, fills it with the code and a readable message.
 * The status list is the wire contract's `Status` enum, number for number.
 */
#ifndef TOKEND_H
#define TOKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The release, MAJOR.MINOR.PATCH, written here only: the Makefile reads it
 * (the shared library's file names and soname, from MAJOR; tokend.pc) and
 * every program's --version prints it. */
#define TOKEND_VERSION "0.1.0"

/* The release this library was built as (its TOKEND_VERSION), for a program linked
 * against the shared library to compare with the TOKEND_VERSION it was
 * compiled with. Static. */
const char *tokend_version(void);

/*
 * The one list of outcomes, shared by the service, this library, tokenctl
 * and the gateway. X(NAME, number, description). Numbers match
 * `tokend.v1.Status` in tokend.proto and are never renumbered.
 */
#define TOKEND_STATUS_LIST(X)                                              \
    X(OK, 0, "ok")                                                         \
    X(MALFORMED, 1, "token is malformed (bad prefix, length or checksum)") \
    X(NOT_FOUND, 2, "not found (never issued, or revoked)")                \
    X(EXPIRED, 3, "token has expired")                                     \
    X(INSUFFICIENT_ABILITY, 4, "token lacks a required ability")           \
    X(INVALID_ARGUMENT, 5, "invalid argument")                             \
    X(UNAUTHENTICATED, 6, "missing or invalid caller credential")          \
    X(PERMISSION_DENIED, 7, "caller credential does not allow this")       \
    X(ALREADY_EXISTS, 8, "already exists")                                 \
    X(RESOURCE_EXHAUSTED, 9, "limit exceeded")                             \
    X(DEADLINE_EXCEEDED, 10, "deadline exceeded (timed out)")              \
    X(UNAVAILABLE, 11, "service unavailable")                              \
    X(BAD_MESSAGE, 12, "message could not be decoded")                     \
    X(UNIMPLEMENTED, 13, "unknown method")                                 \
    X(STORAGE_ERROR, 14, "storage error")                                  \
    X(INTERNAL, 15, "internal error")                                      \
    X(FAILED_PRECONDITION, 16, "refused in the store's present state")     \
    X(RATE_LIMITED, 17, "rate limit exceeded; retry later")                \
    X(QUOTA_EXHAUSTED, 18, "quota used up for this period")                \
    X(NETWORK_DENIED, 19, "client network not allowed for this token")     \
    X(ROUTE_DENIED, 20, "request route not allowed for this token")        \
    X(SUSPENDED, 21, "token is suspended")

typedef enum tokend_status {
#define TOKEND_X_ENUM(name, num, desc) TOKEND_##name = num,
    TOKEND_STATUS_LIST(TOKEND_X_ENUM)
#undef TOKEND_X_ENUM
} tokend_status;

/* Number of codes in TOKEND_STATUS_LIST (they are 0..TOKEND_STATUS_COUNT-1,
 * without gaps, so this is one past the last). */
enum {
#define TOKEND_X_COUNT(name, num, desc) TOKEND_COUNT_AFTER_##name,
    TOKEND_STATUS_LIST(TOKEND_X_COUNT)
#undef TOKEND_X_COUNT
        TOKEND_STATUS_COUNT
};

/* A one-line description of a status ("token has expired"). Never NULL;
 * unknown codes give "unknown status". The string is static. */
const char *tokend_strerror(int status);

/* The status's stable name as in the contract ("EXPIRED"); for logs, JSON
 * and exit reasons. Never NULL; unknown codes give "UNKNOWN". Static. */
const char *tokend_status_name(int status);

/* Error detail of one call: the code it returned and a message that may
 * carry the service's explanation ("abilities[2]: longer than 128 bytes").
 * Messages never contain a token. Caller-allocated; may be passed as NULL. */
typedef struct tokend_error {
    int code;
    char message[256];
} tokend_error;

/* ------------------------------------------------------------------------
 * Connecting. */

typedef struct tokend_client tokend_client;

typedef struct tokend_options {
    /* Service URLs to dial, e.g. "ipc:///run/tokend.sock" or
     * "tcp://127.0.0.1:7450". With several, requests are spread over the
     * connected ones. NULL or n_urls == 0 means TOKEND_DEFAULT_URL. */
    const char *const *urls;
    size_t n_urls;
    /* Default time limit of each call, in milliseconds; 0 means 5000. */
    int timeout_ms;
    /* Default caller credential (a tokend token) sent with every call;
     * NULL for none. The library keeps its own copy, wiped on close. */
    const char *credential;
    /* TLS, for "tls+tcp://HOST:PORT" URLs (NNG's mbedTLS 2.28: TLS 1.2).
     * All NULL (the zeroed default) for other transports; set with no TLS
     * URL, they are refused (TOKEND_INVALID_ARGUMENT). Paths of PEM files,
     * read by tokend_connect and not kept, nor are the strings. */
    /* The CA certificate(s) the service's certificate must chain to.
     * Required with a TLS URL: the service is always verified, there is
     * no unverified TLS. */
    const char *tls_ca_file;
    /* The client's certificate chain and its (unencrypted) private key,
     * both or neither: for a service that admits only clients with a
     * certificate from its CA (tokend --tls-client-ca). */
    const char *tls_cert_file;
    const char *tls_key_file;
    /* The name the service's certificate must be issued for; NULL or "":
     * each URL's host. mbedTLS 2.28 matches DNS names only (not IP
     * addresses): for a URL by address, give the certificate's DNS name. */
    const char *tls_server_name;
} tokend_options;

#define TOKEND_DEFAULT_URL "tcp://127.0.0.1:7450"

/* Creates a client and starts dialling. Dialling goes on in the background
 * (a service that is not up yet is retried), so this fails only for bad
 * options (TOKEND_INVALID_ARGUMENT, e.g. an unparsable URL, a TLS URL
 * without tls_ca_file, a TLS file that cannot be read) or lack of
 * resources. On success *out is a client to free with tokend_close(); it
 * may be used from any number of threads at once. A TLS handshake that
 * fails (the service's certificate not accepted, or ours refused) is
 * retried like a service that is not up: calls fail with
 * TOKEND_UNAVAILABLE, and the message says the handshakes failed. */
int tokend_connect(const tokend_options *opts, tokend_client **out, tokend_error *err);

/* Closes the client. Calls still running in other threads fail with
 * TOKEND_UNAVAILABLE; do not use the client after this. NULL is ignored. */
void tokend_close(tokend_client *client);

/* The HTTP request a call is made for, e.g. the one a token came with.
 * Every field is optional (NULL or ""). The service refuses a context past
 * its bounds with TOKEND_INVALID_ARGUMENT naming the field
 * ("context.client_ip: not an IPv4 or IPv6 address"). */
typedef struct tokend_request_context {
    const char *method;     /* "GET": letters, digits, '-', '_', '.'; at most 16 bytes */
    const char *path;       /* "/orders/42?x=1": UTF-8 text, at most 2048 bytes */
    const char *client_ip;  /* "203.0.113.7" or "2001:db8::1"; at most 45 bytes */
    const char *user_agent; /* UTF-8 text, at most 256 bytes */
} tokend_request_context;

/* Per-call overrides; pass NULL to use the client's defaults. Fields are
 * only ever appended, so a caller that zero-initialises the struct keeps
 * working with a newer library. */
typedef struct tokend_call {
    int timeout_ms;         /* 0: the client's default */
    const char *credential; /* NULL: the client's default */
    /* The request the call is made on behalf of (NULL: none): sent with
     * every call (the envelope's Request.context) and, by tokend_verify,
     * as the request the token was presented with (VerifyRequest.context).
     * Read during the call only. */
    const tokend_request_context *context;
} tokend_call;

/* ------------------------------------------------------------------------
 * Results. Strings in results are NUL-terminated, owned by the result and
 * freed by its free function. */

typedef struct tokend_kv {
    char *key;
    char *value;
} tokend_kv;

typedef struct tokend_token_info {
    char *id;         /* public id: safe to log and show */
    char *owner;      /* e.g. "partner:acme" */
    char *name;       /* e.g. "ERP nightly sync" */
    char **abilities; /* n_abilities strings */
    size_t n_abilities;
    int64_t created_unix_ms;   /* creation time */
    int64_t expires_unix_ms;   /* 0: never expires */
    int64_t last_used_unix_ms; /* 0: never used (stored and in-memory uses) */
    uint64_t use_count;        /* uses: verifies, calls made with it */
    tokend_kv *metadata;       /* n_metadata entries */
    size_t n_metadata;
} tokend_token_info;

/* Frees the strings and arrays inside *info (not info itself) and zeroes it. */
void tokend_token_info_free(tokend_token_info *info);

/* ------------------------------------------------------------------------
 * CreateToken. */

typedef struct tokend_create_params {
    const char *owner;            /* NULL/"": the caller's own owner */
    const char *name;             /* required */
    const char *const *abilities; /* at least one */
    size_t n_abilities;
    int64_t expires_in_seconds; /* 0: no expiry of its own */
    const tokend_kv *metadata;  /* optional */
    size_t n_metadata;
} tokend_create_params;

typedef struct tokend_created {
    char *token;            /* the plain text: shown once, store it now */
    tokend_token_info info; /* id, owner, expiry as applied, ... */
} tokend_created;

/* Creates a token. Needs a credential that may create for params->owner.
 * On TOKEND_OK *out holds the new token; free it with tokend_created_free(),
 * which wipes the plain text. On error *out is zeroed. The service has
 * written the token durably before it answers. */
int tokend_create(tokend_client *client, const tokend_call *call,
                  const tokend_create_params *params, tokend_created *out,
                  tokend_error *err);

/* Wipes and frees what tokend_create() put in *created. */
void tokend_created_free(tokend_created *created);

/* ------------------------------------------------------------------------
 * Verify. */

typedef enum tokend_ability_mode {
    TOKEND_ABILITIES_ALL = 0, /* every listed ability is needed */
    TOKEND_ABILITIES_ANY = 1  /* one of them is enough */
} tokend_ability_mode;

typedef struct tokend_verdict {
    int reason;   /* TOKEND_OK, MALFORMED, NOT_FOUND, EXPIRED, ... */
    int has_info; /* 1 when info is filled (OK, EXPIRED,
                     INSUFFICIENT_ABILITY) */
    tokend_token_info info;
} tokend_verdict;

/* Checks `token` and that it has `abilities` (all or any, by `mode`; none
 * listed means any valid token passes). Returns TOKEND_OK when the token is
 * valid and has them; the verdict (TOKEND_MALFORMED, TOKEND_NOT_FOUND,
 * TOKEND_EXPIRED, TOKEND_INSUFFICIENT_ABILITY) when it is not; or why the
 * call failed (TOKEND_UNAVAILABLE, TOKEND_DEADLINE_EXCEEDED, ...). `out`
 * may be NULL; if given, free it with tokend_verdict_free(). */
int tokend_verify(tokend_client *client, const tokend_call *call, const char *token,
                  const char *const *abilities, size_t n_abilities,
                  tokend_ability_mode mode, tokend_verdict *out, tokend_error *err);

/* Frees what tokend_verify() put in *verdict. */
void tokend_verdict_free(tokend_verdict *verdict);

/* ------------------------------------------------------------------------
 * Revoke. Each sets *revoked (if not NULL) to how many tokens were revoked.
 * The next verify of a revoked token, anywhere, fails: the service has
 * written the revocation durably before it answers. */

/* Revokes the token with public id `id`. TOKEND_NOT_FOUND if none. */
int tokend_revoke_id(tokend_client *client, const tokend_call *call, const char *id,
                     uint64_t *revoked, tokend_error *err);

/* Revokes the token whose plain text is `token` (logout). */
int tokend_revoke_token(tokend_client *client, const tokend_call *call, const char *token,
                        uint64_t *revoked, tokend_error *err);

/* Revokes every token of `owner` (NULL or "": the caller's own owner, e.g.
 * "sign me out everywhere"). Succeeds with *revoked == 0 if it had none. */
int tokend_revoke_owner(tokend_client *client, const tokend_call *call, const char *owner,
                        uint64_t *revoked, tokend_error *err);

/* ------------------------------------------------------------------------
 * ListTokens. */

typedef struct tokend_token_page {
    tokend_token_info *tokens; /* n_tokens entries, oldest first */
    size_t n_tokens;
    char *next_cursor; /* NULL on the last page */
} tokend_token_page;

/* Lists `owner`'s tokens (NULL/"": the caller's own), `page_size` at a time
 * (0: 100; at most 1000), starting after `cursor` (NULL: from the first).
 * Free *out with tokend_token_page_free(). */
int tokend_list(tokend_client *client, const tokend_call *call, const char *owner,
                uint32_t page_size, const char *cursor, tokend_token_page *out,
                tokend_error *err);

/* Frees what tokend_list() put in *page. */
void tokend_token_page_free(tokend_token_page *page);

/* ------------------------------------------------------------------------
 * GetToken. */

/* Reads the token with public id `id` into *out, with its use so far
 * (last_used_unix_ms, use_count: the stored counts plus those the service
 * holds in memory). Needs a credential that may list the token's owner
 * (tokend:admin, or tokens:read of the same owner). TOKEND_NOT_FOUND for
 * an id no token has and, alike, for another owner's token;
 * TOKEND_PERMISSION_DENIED for a credential without tokens:read. On
 * TOKEND_OK free *out with tokend_token_info_free(); on error it is
 * zeroed. */
int tokend_get(tokend_client *client, const tokend_call *call, const char *id,
               tokend_token_info *out, tokend_error *err);

/* ------------------------------------------------------------------------
 * ListEvents: the audit log (docs/audit.md). */

/* Which events to list; every field optional (zeroed: all the caller may
 * see, from the oldest). */
typedef struct tokend_event_filter {
    const char *owner;     /* NULL/"": any (a non-admin sees its own only) */
    const char *token_id;  /* NULL/"": any */
    const char *kind;      /* an EventKind name ("TOKEN_CREATED"); NULL/"": any */
    int64_t since_unix_ms; /* only events at or after it; 0: any */
    const char *cursor;    /* next_cursor of an earlier page; NULL: the oldest */
    uint32_t page_size;    /* 0: 100; at most 1000 */
} tokend_event_filter;

#define TOKEND_EVENT_HASH_LEN 32

typedef struct tokend_event {
    uint64_t seq; /* from 1, in the log's order, without gaps */
    int64_t time_unix_ms;
    char *kind;                   /* "TOKEN_CREATED", "CALL_REFUSED", ... */
    char *actor_id, *actor_owner; /* the caller credential's; "" when none */
    char *owner, *token_id;       /* what it concerns; "" when none */
    /* The request behind it ("" when not known). */
    char *method, *path, *client_ip, *user_agent;
    tokend_kv *detail; /* n_detail key/values, in the event's order */
    size_t n_detail;
    /* The chain: hash = SHA-256(prev_hash || hashed), where `hashed` is the
     * event as received, packed again without its hash. The lengths are
     * the received ones (TOKEND_EVENT_HASH_LEN in a sound log; at most
     * that much is copied). */
    uint8_t prev_hash[TOKEND_EVENT_HASH_LEN];
    uint8_t hash[TOKEND_EVENT_HASH_LEN];
    size_t prev_hash_len, hash_len;
    uint8_t *hashed;
    size_t hashed_len;
} tokend_event;

typedef struct tokend_event_page {
    tokend_event *events; /* n_events, oldest first */
    size_t n_events;
    /* Pass as filter.cursor for the next page, and keep polling with it
     * for new events; NULL only while the log is empty. */
    char *next_cursor;
    bool more; /* the page was cut: more may match at once */
} tokend_event_page;

/* Lists audit events. Needs tokend:admin (any owner's) or tokens:read
 * (its own owner's; another owner filter is TOKEND_PERMISSION_DENIED). An
 * unknown kind name is TOKEND_INVALID_ARGUMENT. Free *out with
 * tokend_event_page_free(). */
int tokend_list_events(tokend_client *client, const tokend_call *call,
                       const tokend_event_filter *filter, tokend_event_page *out,
                       tokend_error *err);

/* Frees what tokend_list_events() put in *page. */
void tokend_event_page_free(tokend_event_page *page);

/* ------------------------------------------------------------------------
 * GetUsage: usage series, Verify calls per minute or per hour. */

typedef enum tokend_usage_step {
    TOKEND_USAGE_MINUTE = 0, /* kept for tokend --usage-minute-retention (48 h) */
    TOKEND_USAGE_HOUR = 1    /* kept for tokend --usage-hour-retention (90 days) */
} tokend_usage_step;

/* What a GetUsage asks for: at most one of id, owner and deployment. */
typedef struct tokend_usage_query {
    const char *id;         /* a token's own series */
    const char *owner;      /* the sum over an owner's tokens; NULL/"" with id
                               NULL/"" and deployment 0: the caller's owner */
    int deployment;         /* 1: the whole deployment (tokend:admin only) */
    int64_t from_unix_ms;   /* buckets starting in [from, to); 0: to less 24 h */
    int64_t to_unix_ms;     /* 0: now */
    tokend_usage_step step; /* at most 2880 buckets of it in the range */
} tokend_usage_query;

/* One count of a bucket: an outcome ("OK", "EXPIRED", ...), a route
 * ("GET /orders/{id}", "-" for none, "other" past the bound) or a client
 * address ("203.0.113.7", "-", "other"), and its calls. */
typedef struct tokend_usage_count {
    char *key;
    uint64_t count;
} tokend_usage_count;

typedef struct tokend_usage_bucket {
    int64_t start_unix_ms; /* a multiple of the step */
    tokend_usage_count *outcomes;
    size_t n_outcomes;
    tokend_usage_count *routes;
    size_t n_routes;
    tokend_usage_count *client_ips;
    size_t n_client_ips;
} tokend_usage_bucket;

typedef struct tokend_usage {
    tokend_usage_step step;
    tokend_usage_bucket *buckets; /* n_buckets, oldest first; only those with calls */
    size_t n_buckets;
} tokend_usage;

/* Reads a usage series into *out: the stored buckets and the calls the
 * service still holds in memory. Rights as tokend_list (tokens:read of the
 * owner, or tokend:admin; the deployment for tokend:admin only); another
 * owner's token id is TOKEND_NOT_FOUND as in tokend_get. On TOKEND_OK free
 * *out with tokend_usage_free(); on error it is zeroed. */
int tokend_get_usage(tokend_client *client, const tokend_call *call,
                     const tokend_usage_query *query, tokend_usage *out,
                     tokend_error *err);

/* Frees what tokend_get_usage() put in *usage and zeroes it. */
void tokend_usage_free(tokend_usage *usage);

#ifdef __cplusplus
}
#endif

#endif /* TOKEND_H */
