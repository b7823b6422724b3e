/*
 * api.c — routes, bearer and query parsing, JSON in and out, and the
 * tokend-status-to-HTTP mapping. See api.h and docs/gateway.md.
 */
#include "api.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "log.h"
#include "proxy.h"
#include "rpc.h"
#include "secret.h"
#include "token.h"
#include "tokend.h"

/* Request bodies nest at most this deep (the API needs 2: an object
 * holding an array or an object); deeper is refused before parsing. */
#define API_JSON_MAX_DEPTH 8
/* Query parameters of one request, at most (64 abilities and a few more). */
#define API_MAX_PARAMS (TOKEN_ABILITIES_MAX + 8)
/* ListTokens page size bounds (tokend.proto). */
#define API_LIMIT_MAX 1000

#define TYPE_JSON "application/json"

struct api {
    upstream *up;
    char *verify_credential; /* own copy or NULL */
    int ready_timeout_ms;    /* /readyz's call; 0: the RPC timeout */
    const void *openapi;
    size_t openapi_len;
    gw_stats *stats;   /* NULL: no /metrics */
    proxy_trust trust; /* whose forwarded headers are believed */
};

typedef enum route {
    ROUTE_NONE,
    ROUTE_HEALTHZ,
    ROUTE_READYZ,
    ROUTE_OPENAPI,
    ROUTE_METRICS,
    ROUTE_AUTH,
    ROUTE_SELF,
    ROUTE_TOKENS,
    ROUTE_TOKEN_ID,
    ROUTE_EVENTS,
    ROUTE_TOKEN_USAGE, /* GET /v1/tokens/{id}/usage */
    ROUTE_USAGE,       /* GET /v1/usage */
} route;

enum { M_GET = 1, M_HEAD = 2, M_POST = 4, M_DELETE = 8 };

/* Which TokenService call a request became, for reading its outcome. */
typedef enum call_kind {
    CALL_READY,        /* Verify of "" to see that tokend answers */
    CALL_AUTH,         /* Verify with abilities: GET /v1/auth */
    CALL_SELF,         /* Verify without: GET /v1/tokens/self */
    CALL_LIST,         /* ListTokens */
    CALL_CREATE,       /* CreateToken */
    CALL_REVOKE_ID,    /* Revoke one id */
    CALL_REVOKE_OWNER, /* Revoke the caller's owner's tokens */
    CALL_GET,          /* GetToken: GET /v1/tokens/{id} */
    CALL_EVENTS,       /* ListEvents: GET /v1/events */
    CALL_TOKEN_USAGE,  /* GetUsage of an id: GET /v1/tokens/{id}/usage */
    CALL_USAGE,        /* GetUsage of an owner: GET /v1/usage */
} call_kind;

/* Per request, attached with http_set_data; api_release frees it. */
typedef struct api_req {
    call_kind kind;
    upstream_call *call;
    int start_failure; /* why upstream_start refused, or 0 */
    /* Decoded query values (owned). */
    char *abilities[TOKEN_ABILITIES_MAX];
    size_t n_abilities;
    bool mode_any;
    bool have_mode;
    bool have_limit;
    uint32_t limit;
    char *cursor;
    char *owner;
    /* GET /v1/events only */
    char *token_id;
    int event_kind; /* an EventKind; 0: any */
    bool have_kind, have_since;
    int64_t since;
    /* The usage routes' range and step. */
    bool have_from, have_to, have_step;
    int64_t from_ms, to_ms;
    bool step_hour;
} api_req;

api *api_new(const api_config *cfg) {
    api *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        return NULL;
    }
    a->up = cfg->up;
    a->ready_timeout_ms = cfg->ready_timeout_ms;
    a->openapi = cfg->openapi;
    a->openapi_len = cfg->openapi_len;
    a->stats = cfg->stats;
    if (cfg->trust != NULL) {
        a->trust = *cfg->trust;
    }
    if (cfg->verify_credential != NULL && cfg->verify_credential[0] != '\0' &&
        (a->verify_credential = strdup(cfg->verify_credential)) == NULL) {
        free(a);
        return NULL;
    }
    return a;
}

void api_free(api *a) {
    if (a == NULL) {
        return;
    }
    secret_free(a->verify_credential);
    free(a);
}

void api_release(void *cls, void *data) {
    (void)cls;
    api_req *st = data;
    upstream_call_release(st->call);
    for (size_t i = 0; i < st->n_abilities; i++) {
        free(st->abilities[i]);
    }
    free(st->cursor);
    free(st->owner);
    free(st->token_id);
    free(st);
}

/* ------------------------------------------------------------------------
 * Errors. */

static void bad_request(http_request *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void bad_request(http_request *req, const char *fmt, ...) {
    char detail[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    http_reply_problem(req, 400, "BAD_REQUEST", detail);
}

/* error_description of WWW-Authenticate: fixed texts, so that nothing
 * needing quoting ever lands in the header. */
static const char *invalid_token_text(const char *code) {
    if (strcmp(code, "MALFORMED") == 0) {
        return "the token is malformed";
    }
    if (strcmp(code, "NOT_FOUND") == 0) {
        return "the token is unknown or revoked";
    }
    if (strcmp(code, "EXPIRED") == 0) {
        return "the token has expired";
    }
    return "the token is not valid";
}

/* 401 with WWW-Authenticate as RFC 6750 says: no error code when no
 * bearer token was sent at all, invalid_token otherwise. */
static void unauthorized(http_request *req, const char *code, const char *detail) {
    http_reply_problem(req, 401, code, detail);
    if (strcmp(code, "MISSING_TOKEN") == 0) {
        http_reply_header(req, "WWW-Authenticate", "Bearer realm=\"tokend\"");
        return;
    }
    char value[160];
    snprintf(value, sizeof(value),
             "Bearer realm=\"tokend\", error=\"invalid_token\", error_description=\"%s\"",
             invalid_token_text(code));
    http_reply_header(req, "WWW-Authenticate", value);
}

/* True for the characters RFC 6750 allows in a scope token. */
static bool scope_char(unsigned char c) {
    return c == 0x21 || (c >= 0x23 && c <= 0x5B) || (c >= 0x5D && c <= 0x7E);
}

/* 403 from /v1/auth: insufficient_scope, naming the abilities asked for
 * (those that can be written as scope tokens). */
static void insufficient_scope(http_request *req, const api_req *st, const char *detail) {
    http_reply_problem(req, 403, "INSUFFICIENT_ABILITY", detail);
    char value[1024];
    size_t k = (size_t)snprintf(value, sizeof(value),
                                "Bearer realm=\"tokend\", error=\"insufficient_scope\"");
    bool any = false;
    for (size_t i = 0; i < st->n_abilities; i++) {
        const char *a = st->abilities[i];
        size_t len = strlen(a);
        bool ok = len > 0;
        for (size_t j = 0; ok && j < len; j++) {
            ok = scope_char((unsigned char)a[j]);
        }
        /* room for the separator, the closing quote and the NUL */
        if (!ok || k + len + 12 >= sizeof(value)) {
            continue;
        }
        k += (size_t)snprintf(value + k, sizeof(value) - k, "%s%s",
                              any ? " " : ", scope=\"", a);
        any = true;
    }
    if (any) {
        snprintf(value + k, sizeof(value) - k, "\"");
    }
    http_reply_header(req, "WWW-Authenticate", value);
}

/*
 * The one mapping from a failed call's tokend status to HTTP. Statuses
 * about the caller credential map to 401/403; NOT_FOUND is 404 when a
 * token id was the target and 401 when the bearer token itself was;
 * FAILED_PRECONDITION (a revoke of the last admin token) is 409;
 * RESOURCE_EXHAUSTED is 429 for a create past the owner's token limit and
 * 503 otherwise.
 */
static void reply_failure(http_request *req, const api_req *st, int status,
                          const char *message) {
    const char *code = tokend_status_name(status);
    switch (status) {
        case TOKEND_MALFORMED:
        case TOKEND_EXPIRED:
        case TOKEND_UNAUTHENTICATED:
            unauthorized(req, code, message);
            return;
        case TOKEND_NOT_FOUND:
            if (st->kind == CALL_REVOKE_ID || st->kind == CALL_GET ||
                st->kind == CALL_TOKEN_USAGE) {
                http_reply_problem(req, 404, code, message);
            } else {
                unauthorized(req, code, message);
            }
            return;
        case TOKEND_INSUFFICIENT_ABILITY:
        case TOKEND_PERMISSION_DENIED:
            http_reply_problem(req, 403, code, message);
            return;
        case TOKEND_INVALID_ARGUMENT:
            http_reply_problem(req, 400, code, message);
            return;
        case TOKEND_ALREADY_EXISTS:
        case TOKEND_FAILED_PRECONDITION: /* the last admin token's revoke */
            http_reply_problem(req, 409, code, message);
            return;
        case TOKEND_DEADLINE_EXCEEDED:
            http_reply_problem(req, 504, code, message);
            return;
        case TOKEND_RESOURCE_EXHAUSTED:
            /* The owner's token limit: the client's to fix (revoke some),
             * not tokend's; any other limit is tokend's, below. */
            if (st->kind == CALL_CREATE &&
                strncmp(message, RPC_OWNER_LIMIT_MESSAGE,
                        sizeof(RPC_OWNER_LIMIT_MESSAGE) - 1) == 0) {
                http_reply_problem(req, 429, code, message);
                return;
            }
            __attribute__((fallthrough));
        case TOKEND_UNAVAILABLE:
        case TOKEND_STORAGE_ERROR: /* disk full or read-only: reads still work */
            http_reply_problem(req, 503, code, message);
            return;
        default: /* INTERNAL, BAD_MESSAGE, UNIMPLEMENTED */
            http_reply_problem(req, 500, code, message);
            return;
    }
}

/* True if each of abilities[0..n) is an ability (token.h); otherwise
 * replies 400 INVALID_ARGUMENT, the answer tokend would give, naming the
 * first that is not as `field`[index]. Checked here so that a bad one
 * never costs an RPC; tokend checks them again. */
static bool abilities_ok(http_request *req, const char *field, char *const *abilities,
                         size_t n) {
    char msg[TOKEN_ABILITY_MESSAGE_MAX];
    for (size_t i = 0; i < n; i++) {
        if (!token_ability_check(abilities[i], field, i, msg, sizeof(msg))) {
            http_reply_problem(req, 400, "INVALID_ARGUMENT", msg);
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------------
 * Requests in. */

static route route_of(const char *path, const char **id) {
    static const char tokens_prefix[] = "/v1/tokens/";
    *id = NULL;
    if (strcmp(path, "/v1/auth") == 0) {
        return ROUTE_AUTH;
    }
    if (strcmp(path, "/v1/tokens") == 0) {
        return ROUTE_TOKENS;
    }
    if (strcmp(path, "/v1/tokens/self") == 0) {
        return ROUTE_SELF;
    }
    if (strcmp(path, "/v1/events") == 0) {
        return ROUTE_EVENTS;
    }
    if (strcmp(path, "/v1/usage") == 0) {
        return ROUTE_USAGE;
    }
    /* Everything below /v1/tokens/ is a token id, checked by the caller:
     * "/v1/tokens/../x" is just an id that is not one. */
    if (strncmp(path, tokens_prefix, sizeof(tokens_prefix) - 1) == 0) {
        *id = path + sizeof(tokens_prefix) - 1;
        const char *slash = strchr(*id, '/');
        if (slash != NULL && strcmp(slash, "/usage") == 0) {
            return ROUTE_TOKEN_USAGE; /* *id ends at the slash */
        }
        return ROUTE_TOKEN_ID;
    }
    if (strcmp(path, "/healthz") == 0) {
        return ROUTE_HEALTHZ;
    }
    if (strcmp(path, "/readyz") == 0) {
        return ROUTE_READYZ;
    }
    if (strcmp(path, "/v1/openapi.json") == 0) {
        return ROUTE_OPENAPI;
    }
    if (strcmp(path, "/metrics") == 0) {
        return ROUTE_METRICS;
    }
    return ROUTE_NONE;
}

static unsigned route_methods(route r, const char **allow) {
    switch (r) {
        case ROUTE_TOKENS:
            *allow = "GET, HEAD, POST, DELETE";
            return M_GET | M_HEAD | M_POST | M_DELETE;
        case ROUTE_TOKEN_ID:
            *allow = "GET, HEAD, DELETE";
            return M_GET | M_HEAD | M_DELETE;
        default:
            *allow = "GET, HEAD";
            return M_GET | M_HEAD;
    }
}

static unsigned method_bit(const char *method) {
    if (strcmp(method, "GET") == 0) {
        return M_GET;
    }
    if (strcmp(method, "HEAD") == 0) {
        return M_HEAD;
    }
    if (strcmp(method, "POST") == 0) {
        return M_POST;
    }
    if (strcmp(method, "DELETE") == 0) {
        return M_DELETE;
    }
    return 0;
}

typedef enum bearer_result { BEARER_OK, BEARER_MISSING, BEARER_MALFORMED } bearer_result;

/*
 * The bearer token of the request: exactly one Authorization header,
 * scheme "Bearer" in any case, one space, then a token that passes the
 * service's own shape and checksum rule. Another scheme counts as no token
 * (RFC 6750: no error code for a request without bearer credentials).
 */
static bearer_result bearer_of(http_request *req, const char **token) {
    *token = NULL;
    int count = http_header_count(req, "Authorization");
    if (count == 0) {
        return BEARER_MISSING;
    }
    if (count > 1) {
        return BEARER_MALFORMED;
    }
    const char *value = http_header(req, "Authorization");
    if (value == NULL || strncasecmp(value, "Bearer", 6) != 0) {
        return BEARER_MISSING;
    }
    if (value[6] == '\0') {
        return BEARER_MALFORMED;
    }
    if (value[6] != ' ') {
        return BEARER_MISSING; /* "Bearerish ..." is another scheme */
    }
    const char *t = value + 7;
    size_t len = strlen(t);
    if (len == 0 || len > TOKEN_MAX_LEN || !token_well_formed(t, len)) {
        return BEARER_MALFORMED;
    }
    *token = t;
    return BEARER_OK;
}

/* Replies 401 and returns NULL unless the request carries a well-formed
 * bearer token. */
static const char *require_bearer(http_request *req) {
    const char *token = NULL;
    switch (bearer_of(req, &token)) {
        case BEARER_OK:
            return token;
        case BEARER_MISSING:
            unauthorized(req, "MISSING_TOKEN",
                         "no bearer token: send Authorization: Bearer <token>");
            return NULL;
        case BEARER_MALFORMED:
            unauthorized(req, "MALFORMED",
                         "the bearer token is malformed (one Authorization header, "
                         "\"Bearer\", one space, a token with a valid checksum)");
            return NULL;
    }
    return NULL;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Decodes a query key or value (%XX, '+' as space) into a new string.
 * NULL if it is not valid: a bad escape, a NUL, or not UTF-8. *oom tells
 * running out of memory apart. */
static char *query_decode(const char *s, bool *oom) {
    *oom = false;
    size_t n = strlen(s);
    char *out = malloc(n + 1);
    if (out == NULL) {
        *oom = true;
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < n ? hex_value(s[i + 1]) : -1;
            int lo = hi >= 0 ? hex_value(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            out[k++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (s[i] == '+') {
            out[k++] = ' ';
        } else {
            out[k++] = s[i];
        }
    }
    out[k] = '\0';
    if (!rpc_utf8_ok(out, k)) {
        free(out);
        return NULL;
    }
    return out;
}

typedef struct query_ctx {
    http_request *req;
    api_req *st;
    route r;
    int count;
    char error[160];
} query_ctx;

static bool usage_route(route r) {
    return r == ROUTE_USAGE || r == ROUTE_TOKEN_USAGE;
}

/* A time parameter: Unix ms, 1 up to year 9999. */
static bool unix_ms_of(const char *value, const char *name, int64_t *out, query_ctx *q) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || v < 1 || v > 253402300799999LL) {
        snprintf(q->error, sizeof(q->error), "%s must be a time in Unix milliseconds",
                 name);
        return false;
    }
    *out = v;
    return true;
}

static bool take_param(void *cls, const char *raw_key, const char *raw_value) {
    query_ctx *q = cls;
    api_req *st = q->st;
    bool oom = false;
    if (++q->count > API_MAX_PARAMS) {
        snprintf(q->error, sizeof(q->error), "more than %d query parameters",
                 API_MAX_PARAMS);
        return false;
    }
    char *key = query_decode(raw_key, &oom);
    char *value =
        key != NULL ? query_decode(raw_value != NULL ? raw_value : "", &oom) : NULL;
    if (key == NULL || value == NULL) {
        snprintf(q->error, sizeof(q->error), "%s",
                 oom ? "out of memory"
                     : "a query parameter is not valid percent-encoded UTF-8");
        free(key);
        return false;
    }
    bool ok = true;
    if (q->r == ROUTE_AUTH && strcmp(key, "ability") == 0) {
        if (st->n_abilities == TOKEN_ABILITIES_MAX) {
            snprintf(q->error, sizeof(q->error), "at most %d ability parameters",
                     TOKEN_ABILITIES_MAX);
            ok = false;
        } else {
            st->abilities[st->n_abilities++] = value;
            value = NULL;
        }
    } else if (q->r == ROUTE_AUTH && strcmp(key, "mode") == 0 && !st->have_mode) {
        st->have_mode = true;
        if (strcmp(value, "any") == 0) {
            st->mode_any = true;
        } else if (strcmp(value, "all") == 0) {
            st->mode_any = false;
        } else {
            snprintf(q->error, sizeof(q->error), "mode must be \"all\" or \"any\"");
            ok = false;
        }
    } else if (q->r == ROUTE_EVENTS && strcmp(key, "token_id") == 0 &&
               st->token_id == NULL) {
        st->token_id = value;
        value = NULL;
    } else if (q->r == ROUTE_EVENTS && strcmp(key, "kind") == 0 && !st->have_kind) {
        const ProtobufCEnumValue *k = protobuf_c_enum_descriptor_get_value_by_name(
            &tokend__v1__event_kind__descriptor, value);
        st->have_kind = true;
        if (k == NULL) {
            snprintf(q->error, sizeof(q->error),
                     "kind must be an event kind such as TOKEN_CREATED");
            ok = false;
        } else {
            st->event_kind = k->value;
        }
    } else if (q->r == ROUTE_EVENTS && strcmp(key, "since") == 0 && !st->have_since) {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0' || v < 0) {
            snprintf(q->error, sizeof(q->error), "since must be a time in Unix ms");
            ok = false;
        } else {
            st->have_since = true;
            st->since = v;
        }
    } else if ((q->r == ROUTE_TOKENS || q->r == ROUTE_EVENTS) &&
               strcmp(key, "limit") == 0 && !st->have_limit) {
        char *end = NULL;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0' || v < 1 || v > API_LIMIT_MAX) {
            snprintf(q->error, sizeof(q->error),
                     "limit must be a whole number from 1 to %d", API_LIMIT_MAX);
            ok = false;
        } else {
            st->have_limit = true;
            st->limit = (uint32_t)v;
        }
    } else if ((q->r == ROUTE_TOKENS || q->r == ROUTE_EVENTS) &&
               strcmp(key, "cursor") == 0 && st->cursor == NULL) {
        st->cursor = value;
        value = NULL;
    } else if ((q->r == ROUTE_TOKENS || q->r == ROUTE_EVENTS || q->r == ROUTE_USAGE) &&
               strcmp(key, "owner") == 0 && st->owner == NULL) {
        st->owner = value;
        value = NULL;
    } else if (usage_route(q->r) && strcmp(key, "step") == 0 && !st->have_step) {
        st->have_step = true;
        st->step_hour = strcmp(value, "hour") == 0;
        if (!st->step_hour && strcmp(value, "minute") != 0) {
            snprintf(q->error, sizeof(q->error), "step must be \"minute\" or \"hour\"");
            ok = false;
        }
    } else if (usage_route(q->r) && strcmp(key, "from") == 0 && !st->have_from) {
        st->have_from = true;
        ok = unix_ms_of(value, "from", &st->from_ms, q);
    } else if (usage_route(q->r) && strcmp(key, "to") == 0 && !st->have_to) {
        st->have_to = true;
        ok = unix_ms_of(value, "to", &st->to_ms, q);
    } else {
        /* Unknown or repeated: a typo ("abilities=") must not pass as
         * "no ability asked for". */
        char shown[41];
        snprintf(shown, sizeof(shown), "%s", key);
        snprintf(q->error, sizeof(q->error), "unexpected query parameter \"%s\"", shown);
        ok = false;
    }
    free(key);
    free(value);
    return ok;
}

/* Reads the query of a GET on `r` into st; replies 400 and returns false
 * on anything unexpected. */
static bool parse_query(http_request *req, api_req *st, route r) {
    query_ctx q = {.req = req, .st = st, .r = r};
    if (!http_query_each(req, take_param, &q)) {
        bad_request(req, "%s", q.error);
        return false;
    }
    return true;
}

/* True if the request has no query at all. */
static bool refuse_param(void *cls, const char *key, const char *value) {
    (void)cls;
    (void)key;
    (void)value;
    return false;
}

static bool no_query(http_request *req) {
    if (!http_query_each(req, refuse_param, NULL)) {
        bad_request(req, "this call takes no query parameters");
        return false;
    }
    return true;
}

/* True if Content-Type is application/json (any parameters). */
static bool json_content_type(const char *ct) {
    if (ct == NULL) {
        return false;
    }
    while (*ct == ' ' || *ct == '\t') {
        ct++;
    }
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t')) {
        n--;
    }
    return n == strlen(TYPE_JSON) && strncasecmp(ct, TYPE_JSON, n) == 0;
}

/* True if arrays and objects in text[0..len) nest at most `max` deep
 * (jansson's own limit is 2048, far more than this API needs). */
static bool json_depth_ok(const char *text, size_t len, int max) {
    int depth = 0;
    bool in_string = false, escaped = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (escaped) {
                escaped = false;
            } else if (c == '\\') {
                escaped = true;
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max) {
                return false;
            }
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return true;
}

/* Shortens user-supplied text quoted in a detail. */
static const char *shown(const char *s, char *buf, size_t size) {
    snprintf(buf, size, "%s", s);
    return buf;
}

/*
 * Fills `out` from the create body `doc` (an object), pointing into doc.
 * `abilities` and the metadata arrays are allocated here (freed by
 * create_free). Replies 400 and returns false on a field of the wrong
 * type, an unknown field or an ability that is not one; other values are
 * the service's to judge.
 */
typedef struct create_parts {
    char **abilities;
    Tokend__V1__CreateTokenRequest__MetadataEntry *entries;
    Tokend__V1__CreateTokenRequest__MetadataEntry **entry_ptrs;
} create_parts;

static void create_free(create_parts *parts) {
    free(parts->abilities);
    free(parts->entries);
    free(parts->entry_ptrs);
}

static bool create_from_json(http_request *req, json_t *doc,
                             Tokend__V1__CreateTokenRequest *out, create_parts *parts) {
    const char *key;
    json_t *value;
    char buf[48];
    json_object_foreach(doc, key, value) {
        if (strcmp(key, "name") == 0 || strcmp(key, "owner") == 0) {
            if (!json_is_string(value)) {
                bad_request(req, "%s must be a string", key);
                return false;
            }
            char *s = (char *)json_string_value(value);
            if (key[0] == 'n') {
                out->name = s;
            } else {
                out->owner = s;
            }
        } else if (strcmp(key, "abilities") == 0) {
            if (!json_is_array(value)) {
                bad_request(req, "abilities must be an array of strings");
                return false;
            }
            size_t n = json_array_size(value);
            parts->abilities = calloc(n > 0 ? n : 1, sizeof(char *));
            if (parts->abilities == NULL) {
                http_reply_problem(req, 500, "INTERNAL", "out of memory");
                return false;
            }
            for (size_t i = 0; i < n; i++) {
                json_t *item = json_array_get(value, i);
                if (!json_is_string(item)) {
                    bad_request(req, "abilities[%zu] must be a string", i);
                    return false;
                }
                parts->abilities[i] = (char *)json_string_value(item);
            }
            if (!abilities_ok(req, "abilities", parts->abilities, n)) {
                return false;
            }
            out->abilities = parts->abilities;
            out->n_abilities = n;
        } else if (strcmp(key, "expires_in") == 0) {
            if (json_is_null(value)) {
                continue;
            }
            if (!json_is_integer(value) || json_integer_value(value) < 0) {
                bad_request(req, "expires_in must be a whole number of seconds, 0 or "
                                 "more (or null)");
                return false;
            }
            out->expires_in_seconds = json_integer_value(value);
        } else if (strcmp(key, "metadata") == 0) {
            if (json_is_null(value)) {
                continue;
            }
            if (!json_is_object(value)) {
                bad_request(req, "metadata must be an object of strings");
                return false;
            }
            size_t n = json_object_size(value);
            parts->entries = calloc(n > 0 ? n : 1, sizeof(*parts->entries));
            parts->entry_ptrs = calloc(n > 0 ? n : 1, sizeof(*parts->entry_ptrs));
            if (parts->entries == NULL || parts->entry_ptrs == NULL) {
                http_reply_problem(req, 500, "INTERNAL", "out of memory");
                return false;
            }
            size_t i = 0;
            const char *mkey;
            json_t *mvalue;
            json_object_foreach(value, mkey, mvalue) {
                if (!json_is_string(mvalue)) {
                    bad_request(req, "metadata[\"%s\"] must be a string",
                                shown(mkey, buf, sizeof(buf)));
                    return false;
                }
                tokend__v1__create_token_request__metadata_entry__init(
                    &parts->entries[i]);
                parts->entries[i].key = (char *)mkey;
                parts->entries[i].value = (char *)json_string_value(mvalue);
                parts->entry_ptrs[i] = &parts->entries[i];
                i++;
            }
            out->metadata = parts->entry_ptrs;
            out->n_metadata = i;
        } else {
            bad_request(req,
                        "unknown field \"%s\" (fields: name, abilities, expires_in, "
                        "owner, metadata)",
                        shown(key, buf, sizeof(buf)));
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------------
 * Starting calls. */

static void call_done(void *arg) {
    http_resume(arg);
}

/* Suspends the request and starts the call, made on behalf of the
 * request `context` describes (NULL: none); the reply is built in
 * api_resume. Suspending first means the call's completion can never
 * come before the suspension it ends. */
static void start_call_for(api *a, http_request *req, api_req *st, call_kind kind,
                           const char *method, const ProtobufCMessage *input,
                           const char *credential,
                           const Tokend__V1__RequestContext *context) {
    st->kind = kind;
    http_suspend(req);
    /* A readiness probe wants its answer within its own (short) bound,
     * not after the RPC timeout. */
    int timeout_ms = kind == CALL_READY ? a->ready_timeout_ms : 0;
    int rv = upstream_start(a->up, method, input, credential, context, timeout_ms,
                            call_done, req, &st->call);
    if (rv != 0) {
        st->start_failure = rv;
        http_resume(req);
    }
}

/* A management call, made on behalf of the request itself. */
static void start_call(api *a, http_request *req, api_req *st, call_kind kind,
                       const char *method, const ProtobufCMessage *input,
                       const char *credential) {
    proxy_context ctx;
    proxy_context_fill(&a->trust, req, false, &ctx);
    start_call_for(a, req, st, kind, method, input, credential, &ctx.wire);
}

/* A Verify. Its context is the request the token came with: on /v1/auth
 * the one a trusted proxy asks about, on /v1/tokens/self this one; a
 * readiness probe is made for no request and has none. */
static void start_verify(api *a, http_request *req, api_req *st, call_kind kind,
                         const char *token) {
    Tokend__V1__VerifyRequest in = TOKEND__V1__VERIFY_REQUEST__INIT;
    in.token = (char *)token;
    in.abilities = st->abilities;
    in.n_abilities = st->n_abilities;
    in.mode =
        st->mode_any ? TOKEND__V1__ABILITY_MODE__ANY : TOKEND__V1__ABILITY_MODE__ALL;
    proxy_context ctx;
    if (kind != CALL_READY) {
        proxy_context_fill(&a->trust, req, kind == CALL_AUTH, &ctx);
        in.context = &ctx.wire;
    }
    start_call_for(a, req, st, kind, "Verify", &in.base, a->verify_credential,
                   in.context);
}

static void handle_create(api *a, http_request *req, api_req *st, const char *bearer) {
    if (!json_content_type(http_header(req, "Content-Type"))) {
        http_reply_problem(req, 415, "UNSUPPORTED_MEDIA_TYPE",
                           "the body must be application/json");
        return;
    }
    size_t len = 0;
    const char *body = http_body(req, &len);
    if (!json_depth_ok(body, len, API_JSON_MAX_DEPTH)) {
        bad_request(req, "the body nests deeper than %d levels", API_JSON_MAX_DEPTH);
        return;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        bad_request(req, "the body is not valid JSON: %s (line %d, column %d)", jerr.text,
                    jerr.line, jerr.column);
        return;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        bad_request(req, "the body must be a JSON object");
        return;
    }
    Tokend__V1__CreateTokenRequest in = TOKEND__V1__CREATE_TOKEN_REQUEST__INIT;
    create_parts parts = {0};
    if (create_from_json(req, doc, &in, &parts)) {
        /* upstream_start packs `in` before it returns: doc may go then. */
        start_call(a, req, st, CALL_CREATE, "CreateToken", &in.base, bearer);
    }
    create_free(&parts);
    json_decref(doc);
}

/* GET /metrics: the page in Prometheus's text format. No credential: it
 * holds no token, token id or owner (stats.h). */
static void reply_metrics(api *a, http_request *req) {
    metrics_out out;
    metrics_out_init(&out, 0);
    tokend_error err;
    if (metrics_page_render(gw_stats_page(a->stats), &out, &err) != TOKEND_OK) {
        http_reply_problem(req, 500, "INTERNAL", err.message);
    } else {
        http_reply_text(req, 200, METRICS_CONTENT_TYPE, out.buf, out.len);
    }
    metrics_out_free(&out);
}

void api_finished(void *cls, const http_request *req, int status) {
    api *a = cls;
    if (a->stats != NULL) {
        gw_stats_request(a->stats, req, status);
    }
}

void api_handle(void *cls, http_request *req) {
    api *a = cls;
    const char *id = NULL;
    route r = route_of(http_path(req), &id);
    if (r == ROUTE_NONE || (r == ROUTE_METRICS && a->stats == NULL)) {
        http_reply_problem(req, 404, "NO_ROUTE", "no such path");
        return;
    }
    char usage_id[TOKEN_ID_LEN + 1] = "";
    if (r == ROUTE_TOKEN_USAGE) {
        /* The id is the path's segment before "/usage". */
        size_t len = (size_t)(strchr(id, '/') - id);
        if (len == TOKEN_ID_LEN) {
            memcpy(usage_id, id, TOKEN_ID_LEN);
        }
        id = usage_id;
    }
    if ((r == ROUTE_TOKEN_ID || r == ROUTE_TOKEN_USAGE) && !token_id_ok(id, strlen(id))) {
        http_reply_problem(req, 404, "NOT_FOUND",
                           "no such token: an id is 16 base62 characters");
        return;
    }
    const char *allow = NULL;
    unsigned method = method_bit(http_method(req));
    if ((route_methods(r, &allow) & method) == 0) {
        http_reply_problem(req, 405, "METHOD_NOT_ALLOWED",
                           "method not allowed on this path (see Allow)");
        http_reply_header(req, "Allow", allow);
        return;
    }
    if (r == ROUTE_HEALTHZ) {
        /* The RPCs in flight tell an operator (and the tests) how close the
         * gateway is to --max-inflight. */
        http_reply_json(req, 200, TYPE_JSON,
                        json_pack("{s:s, s:i}", "status", "ok", "rpc_in_flight",
                                  upstream_inflight(a->up)));
        return;
    }
    if (r == ROUTE_OPENAPI) {
        http_reply_static(req, 200, TYPE_JSON, a->openapi, a->openapi_len);
        return;
    }
    if (r == ROUTE_METRICS) {
        reply_metrics(a, req);
        return;
    }
    api_req *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        http_reply_problem(req, 500, "INTERNAL", "out of memory");
        return;
    }
    http_set_data(req, st);
    if (r == ROUTE_READYZ) {
        start_verify(a, req, st, CALL_READY, "");
        return;
    }
    const char *bearer = require_bearer(req);
    if (bearer == NULL) {
        return;
    }
    switch (r) {
        case ROUTE_AUTH:
            if (parse_query(req, st, r) &&
                abilities_ok(req, "ability", st->abilities, st->n_abilities)) {
                start_verify(a, req, st, CALL_AUTH, bearer);
            }
            return;
        case ROUTE_SELF:
            if (no_query(req)) {
                start_verify(a, req, st, CALL_SELF, bearer);
            }
            return;
        case ROUTE_TOKENS:
            if (method == M_POST) {
                if (no_query(req)) {
                    handle_create(a, req, st, bearer);
                }
            } else if (method == M_DELETE) {
                if (no_query(req)) {
                    Tokend__V1__RevokeRequest in = TOKEND__V1__REVOKE_REQUEST__INIT;
                    in.target_case = TOKEND__V1__REVOKE_REQUEST__TARGET_OWNER;
                    in.owner = ""; /* the caller's own owner */
                    start_call(a, req, st, CALL_REVOKE_OWNER, "Revoke", &in.base, bearer);
                }
            } else if (parse_query(req, st, r)) {
                Tokend__V1__ListTokensRequest in = TOKEND__V1__LIST_TOKENS_REQUEST__INIT;
                in.page_size = st->have_limit ? st->limit : 0;
                if (st->cursor != NULL) {
                    in.cursor = st->cursor;
                }
                if (st->owner != NULL) {
                    in.owner = st->owner;
                }
                start_call(a, req, st, CALL_LIST, "ListTokens", &in.base, bearer);
            }
            return;
        case ROUTE_EVENTS:
            if (parse_query(req, st, r)) {
                Tokend__V1__ListEventsRequest in = TOKEND__V1__LIST_EVENTS_REQUEST__INIT;
                in.page_size = st->have_limit ? st->limit : 0;
                in.kind = (Tokend__V1__EventKind)st->event_kind;
                in.since_unix_ms = st->since;
                if (st->cursor != NULL) {
                    in.cursor = st->cursor;
                }
                if (st->owner != NULL) {
                    in.owner = st->owner;
                }
                if (st->token_id != NULL) {
                    in.token_id = st->token_id;
                }
                start_call(a, req, st, CALL_EVENTS, "ListEvents", &in.base, bearer);
            }
            return;
        case ROUTE_TOKEN_USAGE:
        case ROUTE_USAGE:
            if (parse_query(req, st, r)) {
                Tokend__V1__GetUsageRequest in = TOKEND__V1__GET_USAGE_REQUEST__INIT;
                if (r == ROUTE_TOKEN_USAGE) {
                    in.id = (char *)id;
                } else if (st->owner != NULL) {
                    in.owner = st->owner;
                }
                in.from_unix_ms = st->have_from ? st->from_ms : 0;
                in.to_unix_ms = st->have_to ? st->to_ms : 0;
                in.step = st->step_hour ? TOKEND__V1__USAGE_STEP__HOUR
                                        : TOKEND__V1__USAGE_STEP__MINUTE;
                start_call(a, req, st, r == ROUTE_USAGE ? CALL_USAGE : CALL_TOKEN_USAGE,
                           "GetUsage", &in.base, bearer);
            }
            return;
        case ROUTE_TOKEN_ID:
            if (!no_query(req)) {
                return;
            }
            if (method != M_DELETE) {
                Tokend__V1__GetTokenRequest in = TOKEND__V1__GET_TOKEN_REQUEST__INIT;
                in.id = (char *)id;
                start_call(a, req, st, CALL_GET, "GetToken", &in.base, bearer);
            } else {
                Tokend__V1__RevokeRequest in = TOKEND__V1__REVOKE_REQUEST__INIT;
                in.target_case = TOKEND__V1__REVOKE_REQUEST__TARGET_ID;
                in.id = (char *)id;
                start_call(a, req, st, CALL_REVOKE_ID, "Revoke", &in.base, bearer);
            }
            return;
        default:
            http_reply_problem(req, 500, "INTERNAL", "unrouted path");
            return;
    }
}

/* ------------------------------------------------------------------------
 * Replies out. */

static bool set_string(json_t *obj, const char *key, const char *value) {
    return json_object_set_new(obj, key, json_string(value != NULL ? value : "")) == 0;
}

static bool set_time(json_t *obj, const char *key, int64_t unix_ms) {
    return json_object_set_new(obj, key,
                               unix_ms != 0 ? json_integer(unix_ms) : json_null()) == 0;
}

/* A token in JSON (docs/gateway.md), with "token" first when `plain` is
 * given. NULL when out of memory or when the service sent text that is not
 * UTF-8. */
static json_t *token_json(const Tokend__V1__TokenInfo *info, const char *plain) {
    json_t *o = json_object();
    json_t *abilities = json_array();
    json_t *metadata = json_object();
    bool ok = o != NULL && abilities != NULL && metadata != NULL && info != NULL;
    if (ok && plain != NULL) {
        ok = set_string(o, "token", plain);
    }
    ok = ok && set_string(o, "id", info->id) && set_string(o, "owner", info->owner) &&
         set_string(o, "name", info->name);
    for (size_t i = 0; ok && i < info->n_abilities; i++) {
        ok = json_array_append_new(abilities, json_string(info->abilities[i])) == 0;
    }
    for (size_t i = 0; ok && i < info->n_metadata; i++) {
        const Tokend__V1__TokenInfo__MetadataEntry *e = info->metadata[i];
        ok = e != NULL && e->key != NULL &&
             json_object_set_new(metadata, e->key,
                                 json_string(e->value != NULL ? e->value : "")) == 0;
    }
    if (ok) {
        ok = json_object_set(o, "abilities", abilities) == 0 &&
             set_time(o, "created_at", info->created_unix_ms) &&
             set_time(o, "expires_at", info->expires_unix_ms) &&
             set_time(o, "last_used_at", info->last_used_unix_ms) &&
             json_object_set_new(o, "use_count",
                                 json_integer((json_int_t)info->use_count)) == 0 &&
             json_object_set(o, "metadata", metadata) == 0;
    }
    json_decref(abilities);
    json_decref(metadata);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *hex_json(ProtobufCBinaryData b) {
    char hex[2 * 64 + 1];
    size_t n = b.len < 64 ? b.len : 64;
    for (size_t i = 0; i < n; i++) {
        snprintf(hex + 2 * i, 3, "%02x", b.data[i]);
    }
    hex[2 * n] = '\0';
    return json_string(hex);
}

/* An audit event in JSON (docs/gateway.md); NULL when out of memory or
 * when the service sent text that is not UTF-8. */
static json_t *event_json(const Tokend__V1__Event *e) {
    const ProtobufCEnumValue *kind = protobuf_c_enum_descriptor_get_value(
        &tokend__v1__event_kind__descriptor, e->kind);
    const Tokend__V1__RequestContext *c = e->context;
    json_t *o = json_object();
    json_t *ctx = json_object();
    json_t *detail = json_object();
    bool ok = o != NULL && ctx != NULL && detail != NULL &&
              json_object_set_new(o, "seq", json_integer((json_int_t)e->seq)) == 0 &&
              json_object_set_new(o, "time", json_integer(e->time_unix_ms)) == 0 &&
              set_string(o, "kind", kind != NULL ? kind->name : "UNKNOWN") &&
              set_string(o, "actor_id", e->actor_id) &&
              set_string(o, "actor_owner", e->actor_owner) &&
              set_string(o, "owner", e->owner) && set_string(o, "token_id", e->token_id);
    if (ok && c != NULL) {
        ok = set_string(ctx, "method", c->method) && set_string(ctx, "path", c->path) &&
             set_string(ctx, "client_ip", c->client_ip) &&
             set_string(ctx, "user_agent", c->user_agent);
    }
    for (size_t i = 0; ok && i < e->n_detail; i++) {
        ok =
            e->detail[i]->key != NULL &&
            json_object_set_new(
                detail, e->detail[i]->key,
                json_string(e->detail[i]->value != NULL ? e->detail[i]->value : "")) == 0;
    }
    ok = ok && json_object_set(o, "context", ctx) == 0 &&
         json_object_set(o, "detail", detail) == 0 &&
         json_object_set_new(o, "prev_hash", hex_json(e->prev_hash)) == 0 &&
         json_object_set_new(o, "hash", hex_json(e->hash)) == 0;
    json_decref(ctx);
    json_decref(detail);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* One map of a usage bucket as a JSON object. */
static json_t *usage_map_json(Tokend__V1__UsageBucket__RoutesEntry *const *entries,
                              size_t n) {
    json_t *o = json_object();
    for (size_t i = 0; o != NULL && i < n; i++) {
        if (entries[i]->key == NULL ||
            json_object_set_new(o, entries[i]->key,
                                json_integer((json_int_t)entries[i]->value)) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

/* {"step":"minute"|"hour","buckets":[{"start":MS,"outcomes":{...},
 * "routes":{...},"client_ips":{...}}]} (docs/gateway.md); NULL when out of
 * memory or when the service sent text that is not UTF-8. */
static json_t *usage_json(const Tokend__V1__GetUsageResponse *resp) {
    json_t *doc = json_object();
    json_t *buckets = json_array();
    bool ok = doc != NULL && buckets != NULL &&
              set_string(doc, "step",
                         resp->step == TOKEND__V1__USAGE_STEP__HOUR ? "hour" : "minute");
    for (size_t i = 0; ok && i < resp->n_buckets; i++) {
        const Tokend__V1__UsageBucket *b = resp->buckets[i];
        json_t *o = json_object();
        json_t *outcomes = usage_map_json(
            (Tokend__V1__UsageBucket__RoutesEntry *const *)b->outcomes, b->n_outcomes);
        json_t *routes = usage_map_json(b->routes, b->n_routes);
        json_t *ips =
            usage_map_json((Tokend__V1__UsageBucket__RoutesEntry *const *)b->client_ips,
                           b->n_client_ips);
        ok = o != NULL && outcomes != NULL && routes != NULL && ips != NULL &&
             json_object_set_new(o, "start", json_integer(b->start_unix_ms)) == 0 &&
             json_object_set(o, "outcomes", outcomes) == 0 &&
             json_object_set(o, "routes", routes) == 0 &&
             json_object_set(o, "client_ips", ips) == 0 &&
             json_array_append(buckets, o) == 0;
        json_decref(o);
        json_decref(outcomes);
        json_decref(routes);
        json_decref(ips);
    }
    ok = ok && json_object_set(doc, "buckets", buckets) == 0;
    json_decref(buckets);
    if (!ok) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

static void reply_token(http_request *req, int status, json_t *doc) {
    if (doc == NULL) {
        http_reply_problem(req, 500, "INTERNAL",
                           "the reply from tokend could not be turned into JSON");
        return;
    }
    http_reply_json(req, status, TYPE_JSON, doc);
}

static void reply_verified(http_request *req, const api_req *st,
                           const Tokend__V1__VerifyResponse *resp) {
    const Tokend__V1__TokenInfo *info = resp->info;
    int reason = rpc_status_from_wire(resp->reason);
    bool id_ok =
        info != NULL && info->id != NULL && token_id_ok(info->id, strlen(info->id));
    if (id_ok) {
        http_log_note(req, "id=%s", info->id);
    }
    switch (reason) {
        case TOKEND_OK: {
            if (info == NULL) {
                http_reply_problem(req, 500, "BAD_MESSAGE",
                                   "Verify reply lacks the token");
                return;
            }
            reply_token(req, 200, token_json(info, NULL));
            if (st->kind == CALL_AUTH) {
                /* Whole abilities only: one stored before the grammar
                 * that is not an ability, or one past the bound, is left
                 * out (docs/gateway.md). */
                char abilities[TOKEN_ABILITIES_JOINED_MAX + 1];
                size_t left_out =
                    token_abilities_join(info->abilities, info->n_abilities, abilities);
                if (left_out > 0) {
                    LOG(LOG_WARN, "auth.abilities_left_out", "id=%s left_out=%zu",
                        id_ok ? info->id : "-", left_out);
                }
                http_reply_header(req, "X-Token-Id", info->id);
                http_reply_header(req, "X-Token-Owner", info->owner);
                http_reply_header(req, "X-Token-Abilities", abilities);
            }
            return;
        }
        case TOKEND_MALFORMED:
        case TOKEND_NOT_FOUND:
        case TOKEND_EXPIRED:
            unauthorized(req, tokend_status_name(reason), tokend_strerror(reason));
            return;
        case TOKEND_INSUFFICIENT_ABILITY:
            insufficient_scope(req, st, tokend_strerror(reason));
            return;
        default:
            http_reply_problem(req, 500, "BAD_MESSAGE",
                               "Verify reply has an unknown reason");
            return;
    }
}

void api_resume(void *cls, http_request *req) {
    (void)cls;
    api_req *st = http_data(req);
    if (st->start_failure == UPSTREAM_OVERLOADED) {
        http_reply_problem(req, 503, "OVERLOADED",
                           "too many calls to tokend in flight; retry shortly");
        return;
    }
    if (st->start_failure != 0) {
        reply_failure(req, st, st->start_failure, tokend_strerror(st->start_failure));
        return;
    }
    const ProtobufCMessage *out = NULL;
    tokend_error result;
    int status = upstream_call_result(st->call, &out, &result);
    const char *message = result.message;
    bool verify =
        st->kind == CALL_READY || st->kind == CALL_AUTH || st->kind == CALL_SELF;
    if (verify &&
        (status == TOKEND_UNAUTHENTICATED || status == TOKEND_PERMISSION_DENIED)) {
        /* The credential tokend refused is the gateway's own, not the
         * caller's: a deployment mistake, not the client's. */
        if (st->kind == CALL_READY) {
            http_reply_problem(req, 503, tokend_status_name(status),
                               "tokend refuses the gateway's --verify-credential");
        } else {
            http_reply_problem(req, 500, "INTERNAL",
                               "tokend refuses the gateway's --verify-credential");
        }
        return;
    }
    if (st->kind == CALL_READY) {
        if (status == TOKEND_UNAVAILABLE || status == TOKEND_DEADLINE_EXCEEDED) {
            http_reply_problem(req, 503, tokend_status_name(status), message);
        } else {
            http_reply_json(req, 200, TYPE_JSON, json_pack("{s:s}", "status", "ready"));
        }
        return;
    }
    if (status != TOKEND_OK) {
        reply_failure(req, st, status, message);
        return;
    }
    switch (st->kind) {
        case CALL_AUTH:
        case CALL_SELF:
            reply_verified(req, st, (const Tokend__V1__VerifyResponse *)out);
            return;
        case CALL_CREATE: {
            const Tokend__V1__CreateTokenResponse *resp =
                (const Tokend__V1__CreateTokenResponse *)out;
            if (resp->info == NULL || resp->token == NULL || resp->info->id == NULL ||
                !token_id_ok(resp->info->id, strlen(resp->info->id))) {
                http_reply_problem(req, 500, "BAD_MESSAGE",
                                   "CreateToken reply lacks the token or its id");
                return;
            }
            char location[64];
            snprintf(location, sizeof(location), "/v1/tokens/%s", resp->info->id);
            http_log_note(req, "created=%s", resp->info->id);
            reply_token(req, 201, token_json(resp->info, resp->token));
            http_reply_header(req, "Location", location);
            /* The decoded reply is freed without wiping: wipe the plain
             * text now that the JSON has its own (wiped) copy. */
            explicit_bzero(resp->token, strlen(resp->token));
            return;
        }
        case CALL_LIST: {
            const Tokend__V1__ListTokensResponse *resp =
                (const Tokend__V1__ListTokensResponse *)out;
            json_t *tokens = json_array();
            json_t *doc = json_object();
            bool ok = tokens != NULL && doc != NULL;
            for (size_t i = 0; ok && i < resp->n_tokens; i++) {
                json_t *t = token_json(resp->tokens[i], NULL);
                ok = t != NULL && json_array_append_new(tokens, t) == 0;
            }
            ok = ok && json_object_set(doc, "tokens", tokens) == 0 &&
                 json_object_set_new(doc, "next_cursor",
                                     resp->next_cursor != NULL && resp->next_cursor[0]
                                         ? json_string(resp->next_cursor)
                                         : json_null()) == 0;
            json_decref(tokens);
            if (!ok) {
                json_decref(doc);
                doc = NULL;
            }
            reply_token(req, 200, doc);
            return;
        }
        case CALL_EVENTS: {
            const Tokend__V1__ListEventsResponse *resp =
                (const Tokend__V1__ListEventsResponse *)out;
            json_t *list = json_array();
            json_t *doc = json_object();
            bool ok = list != NULL && doc != NULL;
            for (size_t i = 0; ok && i < resp->n_events; i++) {
                json_t *e = event_json(resp->events[i]);
                ok = e != NULL && json_array_append_new(list, e) == 0;
            }
            ok = ok && json_object_set(doc, "events", list) == 0 &&
                 json_object_set_new(doc, "next_cursor",
                                     resp->next_cursor != NULL && resp->next_cursor[0]
                                         ? json_string(resp->next_cursor)
                                         : json_null()) == 0 &&
                 json_object_set_new(doc, "more", json_boolean(resp->more)) == 0;
            json_decref(list);
            if (!ok) {
                json_decref(doc);
                doc = NULL;
            }
            reply_token(req, 200, doc);
            return;
        }
        case CALL_GET: {
            const Tokend__V1__GetTokenResponse *resp =
                (const Tokend__V1__GetTokenResponse *)out;
            if (resp->info == NULL) {
                http_reply_problem(req, 500, "BAD_MESSAGE",
                                   "GetToken reply lacks the token");
                return;
            }
            http_log_note(req, "id=%s", resp->info->id);
            reply_token(req, 200, token_json(resp->info, NULL));
            return;
        }
        case CALL_TOKEN_USAGE:
        case CALL_USAGE: {
            const Tokend__V1__GetUsageResponse *resp =
                (const Tokend__V1__GetUsageResponse *)out;
            http_log_note(req, "buckets=%zu", resp->n_buckets);
            reply_token(req, 200, usage_json(resp));
            return;
        }
        case CALL_REVOKE_ID:
        case CALL_REVOKE_OWNER: {
            const Tokend__V1__RevokeResponse *resp =
                (const Tokend__V1__RevokeResponse *)out;
            http_log_note(req, "revoked=%" PRIu64, resp->revoked);
            http_reply_empty(req, 204);
            return;
        }
        default:
            http_reply_problem(req, 500, "INTERNAL", "unknown call");
            return;
    }
}
