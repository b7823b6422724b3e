/*
 * test_hostile.c — hostile input, as two tables: each row a request no
 * honest client sends, and the exact outcome docs/reliability.md documents
 * for it. The RPC table sends raw NNG messages to the real tokend (a plain
 * REQ socket: the envelope itself may be hostile; well-formed envelopes are
 * built with the generated protobuf-c types around hostile payloads). The
 * REST table sends raw bytes over TCP to the real tokend-gateway (so
 * duplicate headers, garbage, megabyte headers and a byte-a-second client
 * are possible). Before a table runs a few tokens are created; after every
 * row the service and the gateway still answer, and every one of those
 * tokens verifies with its abilities and is listed, in order.
 */
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "harness.h"
#include "rpc.h"
#include "test.h"
#include "token.h"
#include "tokend.pb-c.h"

#define TOK 128
#define MIB (1024 * 1024)

/* The service's and the gateway's limits, given explicitly (they are the
 * defaults) so the rows below can be read against them. */
#define MAX_MESSAGE 65536
#define MAX_BODY 65536
#define MAX_HEADER 8192
/* Short, so the byte-a-second client is cut off within seconds. */
#define REQUEST_TIMEOUT_S 2
#define STR_(x) #x
#define STR(x) STR_(x)

/* The tokens that must survive every row. They share one owner with every
 * hostile create and revoke below, so a row that wrongly created or
 * revoked a token shows up in the listing. */
#define VICTIM_OWNER "hostile:victim"
#define N_VICTIMS 3

typedef struct victim {
    const char *name;
    const char *abilities[2];
    size_t n_abilities;
    char token[TOK];
    char id[TOK];
} victim;

typedef struct hostile {
    tokend_proc p;
    gateway_proc g;
    tokend_client *admin;
    victim v[N_VICTIMS];
} hostile;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Starts tokend (and, with `gateway_flags`, a gateway in front of it) and
 * creates the victims. */
static void hostile_start(hostile *h, const char *const *gateway_flags) {
    memset(h, 0, sizeof(*h));
    harness_init(&h->p);
    h->p.extra[0] = "--max-message";
    h->p.extra[1] = STR(MAX_MESSAGE);
    REQUIRE(harness_start(&h->p));
    if (gateway_flags != NULL) {
        for (size_t i = 0; gateway_flags[i] != NULL && i < 23; i++) {
            h->g.extra[i] = gateway_flags[i];
        }
        REQUIRE(harness_gateway_start(&h->g, h->p.url, 0));
    }
    h->admin = harness_client(&h->p, h->p.admin);
    static const victim victims[N_VICTIMS] = {
        {"erp sync", {"orders:read", "invoices:*"}, 2, "", ""},
        {"reader", {"tokens:read"}, 1, "", ""},
        {"writer", {"tokens:write", "orders:read"}, 2, "", ""},
    };
    for (size_t i = 0; i < N_VICTIMS; i++) {
        h->v[i] = victims[i];
        harness_create(h->admin, VICTIM_OWNER, h->v[i].name, h->v[i].abilities,
                       h->v[i].n_abilities, 0, h->v[i].token, TOK, h->v[i].id, TOK);
    }
}

/* Every victim verifies with its abilities, owner and name, and the
 * owner's listing is exactly the victims, oldest first: nothing lost,
 * nothing added. `after` names the row for the failure message. */
static void check_victims_rpc(const hostile *h, const char *after) {
    for (size_t i = 0; i < N_VICTIMS; i++) {
        const victim *v = &h->v[i];
        tokend_verdict verdict;
        tokend_error err;
        int rv = tokend_verify(h->admin, NULL, v->token, v->abilities, v->n_abilities,
                               TOKEND_ABILITIES_ALL, &verdict, &err);
        if (rv != TOKEND_OK) {
            test_fail(__FILE__, __LINE__, "after %s: victim %zu verifies %s", after, i,
                      tokend_status_name(rv));
            continue;
        }
        bool same = verdict.has_info && strcmp(verdict.info.id, v->id) == 0 &&
                    strcmp(verdict.info.owner, VICTIM_OWNER) == 0 &&
                    strcmp(verdict.info.name, v->name) == 0 &&
                    verdict.info.n_abilities == v->n_abilities;
        for (size_t k = 0; same && k < v->n_abilities; k++) {
            same = strcmp(verdict.info.abilities[k], v->abilities[k]) == 0;
        }
        if (!same) {
            test_fail(__FILE__, __LINE__, "after %s: victim %zu's record changed", after,
                      i);
        }
        tokend_verdict_free(&verdict);
    }
    tokend_token_page page;
    int rv = tokend_list(h->admin, NULL, VICTIM_OWNER, 0, NULL, &page, NULL);
    if (rv != TOKEND_OK) {
        test_fail(__FILE__, __LINE__, "after %s: list gives %s", after,
                  tokend_status_name(rv));
        return;
    }
    bool same = page.n_tokens == N_VICTIMS;
    for (size_t i = 0; same && i < N_VICTIMS; i++) {
        same = strcmp(page.tokens[i].id, h->v[i].id) == 0;
    }
    if (!same) {
        test_fail(__FILE__, __LINE__,
                  "after %s: the listing has %zu tokens, not the %d "
                  "victims in order",
                  after, page.n_tokens, N_VICTIMS);
    }
    tokend_token_page_free(&page);
}

/* True if `pid` is still running (not exited, not reaped). */
static bool running(pid_t pid) {
    return pid > 0 && waitpid(pid, NULL, WNOHANG) == 0 && kill(pid, 0) == 0;
}

/* ------------------------------------------------------------------------
 * The RPC table. */

/* Reply.status of a row whose connection the service drops unanswered. */
#define DROPPED (-1)

static atomic_int pipes_removed;

static void on_pipe_removed(nng_pipe pipe, nng_pipe_ev ev, void *arg) {
    (void)pipe;
    (void)ev;
    (void)arg;
    atomic_fetch_add(&pipes_removed, 1);
}

typedef struct rpc_result {
    int status; /* Reply.status, or DROPPED */
    int reason; /* VerifyResponse.reason for an OK Verify, else -1 */
    char message[512];
    bool message_utf8; /* Reply.message is a valid proto3 string */
    int dropped;       /* connections the service closed while we waited */
} rpc_result;

/* Sends `bytes` on a fresh REQ socket and reads the reply (up to
 * `wait_ms`). */
static void rpc_exchange(const char *url, const uint8_t *bytes, size_t len, int wait_ms,
                         rpc_result *out) {
    memset(out, 0, sizeof(*out));
    out->reason = -1;
    nng_socket s;
    REQUIRE(nng_req0_open(&s) == 0);
    atomic_store(&pipes_removed, 0);
    REQUIRE(nng_pipe_notify(s, NNG_PIPE_EV_REM_POST, on_pipe_removed, NULL) == 0);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, wait_ms);
    nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, wait_ms);
    /* No redial once the service drops the connection: REQ would resend
     * the request on every new connection, and NNG 1.5.2's nng_close() can
     * hang for good when it meets an ipc:// connection mid-handshake (seen
     * about once in ten runs of the dropped row). One connection, one
     * request, then a close with nothing in flight. */
    nng_socket_set_ms(s, NNG_OPT_RECONNMINT, 600000);
    nng_socket_set_ms(s, NNG_OPT_RECONNMAXT, 600000);
    REQUIRE(nng_dial(s, url, NULL, 0) == 0);
    REQUIRE(nng_send(s, (void *)(len > 0 ? bytes : (const uint8_t *)""), len, 0) == 0);
    void *buf = NULL;
    size_t blen = 0;
    int rv = nng_recv(s, &buf, &blen, NNG_FLAG_ALLOC);
    out->dropped = atomic_load(&pipes_removed);
    nng_close(s);
    if (rv == NNG_ETIMEDOUT) {
        out->status = DROPPED;
        return;
    }
    REQUIRE(rv == 0);
    Tokend__V1__Reply *reply = tokend__v1__reply__unpack(NULL, blen, buf);
    nng_free(buf, blen);
    REQUIRE(reply != NULL);
    out->status = reply->status;
    snprintf(out->message, sizeof(out->message), "%s", reply->message);
    out->message_utf8 = rpc_utf8_ok(reply->message, strlen(reply->message));
    if (reply->status == TOKEND__V1__STATUS__OK && reply->payload.len > 0) {
        /* Only Verify rows answer OK; their payload is a VerifyResponse. */
        Tokend__V1__VerifyResponse *vr = tokend__v1__verify_response__unpack(
            NULL, reply->payload.len, reply->payload.data);
        if (vr != NULL) {
            out->reason = vr->reason;
            tokend__v1__verify_response__free_unpacked(vr, NULL);
        }
    }
    tokend__v1__reply__free_unpacked(reply, NULL);
}

#define REQUEST_ID 7

/* A packed envelope around raw payload bytes. */
static uint8_t *envelope_raw(const char *method, const void *payload, size_t plen,
                             const char *credential, int64_t deadline, size_t *len) {
    Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
    req.method = (char *)method;
    req.request_id = REQUEST_ID;
    req.deadline_unix_ms = deadline;
    req.credential = (char *)(credential != NULL ? credential : "");
    req.payload.data = (uint8_t *)payload;
    req.payload.len = plen;
    uint8_t *buf = NULL;
    REQUIRE(rpc_pack(&req.base, &buf, len) == TOKEND_OK);
    return buf;
}

/* A packed envelope around a payload message. */
static uint8_t *envelope(const char *method, const ProtobufCMessage *payload,
                         const char *credential, int64_t deadline, size_t *len) {
    uint8_t *p = NULL;
    size_t plen = 0;
    REQUIRE(rpc_pack(payload, &p, &plen) == TOKEND_OK);
    uint8_t *env = envelope_raw(method, p, plen, credential, deadline, len);
    free(p);
    return env;
}

/* A Verify envelope whose whole message is exactly `total` bytes (its
 * payload is zero bytes, which do not decode). */
static uint8_t *envelope_of_size(size_t total, size_t *len) {
    size_t plen = total;
    for (int i = 0; i < 4; i++) {
        uint8_t *zeros = calloc(1, plen);
        REQUIRE(zeros != NULL);
        uint8_t *env = envelope_raw("Verify", zeros, plen, NULL, 0, len);
        free(zeros);
        if (*len == total) {
            return env;
        }
        free(env);
        plen -= *len - total; /* the envelope's own bytes, one more try */
    }
    REQUIRE(!"no envelope of that size");
    return NULL;
}

/* A string of `n` copies of `c` (malloc'd). */
static char *repeat(char c, size_t n) {
    char *s = malloc(n + 1);
    REQUIRE(s != NULL);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static const char *const one_ability[] = {"orders:read"};

/* CreateToken as the admin, for the victims' owner, with `name`,
 * `expires_in` and `deadline`; abilities and owner as given unless NULL. */
static uint8_t *create_env(const hostile *h, const char *owner, const char *name,
                           char **abilities, size_t n_abilities, int64_t expires_in,
                           int64_t deadline, size_t *len) {
    Tokend__V1__CreateTokenRequest cr = TOKEND__V1__CREATE_TOKEN_REQUEST__INIT;
    cr.owner = (char *)(owner != NULL ? owner : VICTIM_OWNER);
    cr.name = (char *)name;
    cr.abilities = abilities != NULL ? abilities : (char **)one_ability;
    cr.n_abilities = abilities != NULL ? n_abilities : 1;
    cr.expires_in_seconds = expires_in;
    return envelope("CreateToken", &cr.base, h->p.admin, deadline, len);
}

static uint8_t *verify_env(const char *token, char **abilities, size_t n, int mode,
                           int64_t deadline, size_t *len) {
    Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
    vr.token = (char *)token;
    vr.abilities = abilities;
    vr.n_abilities = n;
    vr.mode = (Tokend__V1__AbilityMode)mode;
    return envelope("Verify", &vr.base, NULL, deadline, len);
}

static uint8_t *revoke_id_env(const char *id, const char *credential, size_t *len) {
    Tokend__V1__RevokeRequest rr = TOKEND__V1__REVOKE_REQUEST__INIT;
    rr.target_case = TOKEND__V1__REVOKE_REQUEST__TARGET_ID;
    rr.id = (char *)id;
    return envelope("Revoke", &rr.base, credential, 0, len);
}

static uint8_t *list_env(const char *credential, uint32_t page_size, const char *cursor,
                         size_t *len) {
    Tokend__V1__ListTokensRequest lr = TOKEND__V1__LIST_TOKENS_REQUEST__INIT;
    lr.owner = VICTIM_OWNER;
    lr.page_size = page_size;
    lr.cursor = (char *)(cursor != NULL ? cursor : "");
    return envelope("ListTokens", &lr.base, credential, 0, len);
}

/* -- the rows' inputs: raw envelopes -- */

static uint8_t *in_empty(const hostile *h, size_t *len) {
    (void)h;
    *len = 0;
    return calloc(1, 1);
}

static uint8_t *in_garbage(const hostile *h, size_t *len) {
    (void)h;
    *len = 4;
    uint8_t *b = malloc(4);
    REQUIRE(b != NULL);
    memset(b, 0xff, 4);
    return b;
}

/* 4 KiB from a fixed-seed xorshift: the same bytes every run. */
static uint8_t *in_random(const hostile *h, size_t *len) {
    (void)h;
    *len = 4096;
    uint8_t *b = malloc(*len);
    REQUIRE(b != NULL);
    uint32_t x = 0x7f4a7c15u;
    for (size_t i = 0; i < *len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b[i] = (uint8_t)x;
    }
    return b;
}

/* A whole Verify envelope cut 5 bytes short: the payload field announces
 * more bytes than follow. */
static uint8_t *in_truncated_envelope(const hostile *h, size_t *len) {
    char *abilities[] = {"orders:read"};
    uint8_t *env = verify_env(h->v[0].token, abilities, 1, 0, 0, len);
    *len -= 5;
    return env;
}

/* A whole envelope around a VerifyRequest cut 5 bytes short. */
static uint8_t *in_truncated_payload(const hostile *h, size_t *len) {
    Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
    vr.token = (char *)h->v[0].token;
    uint8_t *p = NULL;
    size_t plen = 0;
    REQUIRE(rpc_pack(&vr.base, &p, &plen) == TOKEND_OK);
    uint8_t *env = envelope_raw("Verify", p, plen - 5, NULL, 0, len);
    free(p);
    return env;
}

static uint8_t *in_at_max(const hostile *h, size_t *len) {
    (void)h;
    return envelope_of_size(MAX_MESSAGE, len);
}

static uint8_t *in_over_max(const hostile *h, size_t *len) {
    (void)h;
    return envelope_of_size(MAX_MESSAGE + 1, len);
}

/* Over the receive ceiling (max(4 x --max-message, --max-message + 1 MiB)):
 * dropped unread. */
static uint8_t *in_far_over_max(const hostile *h, size_t *len) {
    (void)h;
    return envelope_of_size(2 * MIB, len);
}

static uint8_t *in_unknown_method(const hostile *h, size_t *len) {
    char *abilities[] = {"orders:read"};
    Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
    vr.token = (char *)h->v[0].token;
    vr.abilities = abilities;
    vr.n_abilities = 1;
    return envelope("Nope", &vr.base, h->p.admin, 0, len);
}

static uint8_t *in_method_wrong_case(const hostile *h, size_t *len) {
    (void)h;
    return envelope_raw("verify", NULL, 0, NULL, 0, len);
}

/* Full name with the package: the envelope takes the bare method name. */
static uint8_t *in_method_qualified(const hostile *h, size_t *len) {
    (void)h;
    return envelope_raw("tokend.v1.TokenService.Verify", NULL, 0, NULL, 0, len);
}

static uint8_t *in_method_not_utf8(const hostile *h, size_t *len) {
    (void)h;
    return envelope_raw("Verify\xff\xfe", NULL, 0, NULL, 0, len);
}

/* Valid UTF-8, long enough that the reply's quote of it is cut, at an
 * odd byte: in the middle of a two-byte character. */
static uint8_t *in_method_long_utf8(const hostile *h, size_t *len) {
    (void)h;
    char method[1 + 2 * 100 + 1] = "x";
    for (size_t i = 0; i < 100; i++) {
        memcpy(method + 1 + 2 * i, "\xc3\xa9", 2); /* é */
    }
    method[sizeof(method) - 1] = '\0';
    return envelope_raw(method, NULL, 0, NULL, 0, len);
}

/* -- wrong payload types -- */

static uint8_t *in_payload_undecodable(const hostile *h, size_t *len) {
    (void)h;
    return envelope_raw("Verify", "\x0a\xff", 2, NULL, 0, len);
}

/* A VerifyRequest (field 2: strings) sent as ListTokens (field 2: an
 * integer). */
static uint8_t *in_verify_as_list(const hostile *h, size_t *len) {
    char *abilities[] = {"orders:read"};
    Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
    vr.token = (char *)h->v[0].token;
    vr.abilities = abilities;
    vr.n_abilities = 1;
    return envelope("ListTokens", &vr.base, h->p.admin, 0, len);
}

/* A CreateTokenRequest (field 3: strings) sent as Verify (field 3: an
 * enum). */
static uint8_t *in_create_as_verify(const hostile *h, size_t *len) {
    Tokend__V1__CreateTokenRequest cr = TOKEND__V1__CREATE_TOKEN_REQUEST__INIT;
    cr.owner = VICTIM_OWNER;
    cr.name = "n";
    cr.abilities = (char **)one_ability;
    cr.n_abilities = 1;
    return envelope("Verify", &cr.base, h->p.admin, 0, len);
}

/* A ListTokensRequest (field 2: an integer) sent as Verify (field 2:
 * strings). */
static uint8_t *in_list_as_verify(const hostile *h, size_t *len) {
    (void)h;
    Tokend__V1__ListTokensRequest lr = TOKEND__V1__LIST_TOKENS_REQUEST__INIT;
    lr.owner = VICTIM_OWNER;
    lr.page_size = 5;
    return envelope("Verify", &lr.base, NULL, 0, len);
}

/* -- invalid UTF-8 and control characters -- */

static uint8_t *in_owner_not_utf8(const hostile *h, size_t *len) {
    return create_env(h, "hostile:\xc3\x28", "n", NULL, 0, 0, 0, len);
}

static uint8_t *in_name_not_utf8(const hostile *h, size_t *len) {
    return create_env(h, NULL, "name \xed\xa0\x80 surrogate", NULL, 0, 0, 0, len);
}

static uint8_t *in_name_control(const hostile *h, size_t *len) {
    return create_env(h, NULL, "line\nbreak", NULL, 0, 0, 0, len);
}

/* CreateToken as the admin, for the victims' owner, name "n", ability
 * orders:read and the `n` metadata entries keys[i] = values[i]. */
static uint8_t *create_env_metadata(const hostile *h, char *const *keys,
                                    char *const *values, size_t n, size_t *len) {
    Tokend__V1__CreateTokenRequest__MetadataEntry e[TOKEN_METADATA_MAX];
    Tokend__V1__CreateTokenRequest__MetadataEntry *entries[TOKEN_METADATA_MAX];
    REQUIRE(n <= TOKEN_METADATA_MAX);
    for (size_t i = 0; i < n; i++) {
        tokend__v1__create_token_request__metadata_entry__init(&e[i]);
        e[i].key = keys[i];
        e[i].value = values[i];
        entries[i] = &e[i];
    }
    Tokend__V1__CreateTokenRequest cr = TOKEND__V1__CREATE_TOKEN_REQUEST__INIT;
    cr.owner = VICTIM_OWNER;
    cr.name = "n";
    cr.abilities = (char **)one_ability;
    cr.n_abilities = 1;
    cr.metadata = entries;
    cr.n_metadata = n;
    return envelope("CreateToken", &cr.base, h->p.admin, 0, len);
}

static uint8_t *in_meta_value_not_utf8(const hostile *h, size_t *len) {
    char *keys[] = {"k"};
    char *values[] = {"\xf8\x88\x80\x80\x80"};
    return create_env_metadata(h, keys, values, 1, len);
}

static uint8_t *in_ability_not_utf8(const hostile *h, size_t *len) {
    char *abilities[] = {"orders:\xc3\x28"};
    return verify_env(h->v[0].token, abilities, 1, 0, 0, len);
}

static uint8_t *in_token_not_utf8(const hostile *h, size_t *len) {
    char token[TOK];
    snprintf(token, sizeof(token), "%s", h->v[0].token);
    token[10] = (char)0xff;
    return verify_env(token, NULL, 0, 0, 0, len);
}

static uint8_t *in_credential_not_utf8(const hostile *h, size_t *len) {
    (void)h;
    return list_env("tkd_\xff\xfe\xfd", 0, NULL, len);
}

/* -- sizes and counts -- */

static char **many_abilities(size_t n) {
    char **a = calloc(n, sizeof(char *));
    REQUIRE(a != NULL);
    for (size_t i = 0; i < n; i++) {
        a[i] = "a";
    }
    return a;
}

static uint8_t *in_verify_10000_abilities(const hostile *h, size_t *len) {
    char **a = many_abilities(10000);
    uint8_t *env = verify_env(h->v[0].token, a, 10000, 0, 0, len);
    free(a);
    return env;
}

static uint8_t *in_create_10000_abilities(const hostile *h, size_t *len) {
    char **a = many_abilities(10000);
    uint8_t *env = create_env(h, NULL, "n", a, 10000, 0, 0, len);
    free(a);
    return env;
}

static uint8_t *in_name_257(const hostile *h, size_t *len) {
    char *name = repeat('n', TOKEN_NAME_MAX + 1);
    uint8_t *env = create_env(h, NULL, name, NULL, 0, 0, 0, len);
    free(name);
    return env;
}

/* Within --max-message, so the handler judges it. */
static uint8_t *in_name_60k(const hostile *h, size_t *len) {
    char *name = repeat('n', 60000);
    uint8_t *env = create_env(h, NULL, name, NULL, 0, 0, 0, len);
    free(name);
    return env;
}

static uint8_t *in_name_1mb(const hostile *h, size_t *len) {
    char *name = repeat('n', MIB);
    uint8_t *env = create_env(h, NULL, name, NULL, 0, 0, 0, len);
    free(name);
    return env;
}

static uint8_t *in_owner_1mb(const hostile *h, size_t *len) {
    char *owner = repeat('o', MIB);
    uint8_t *env = create_env(h, owner, "n", NULL, 0, 0, 0, len);
    free(owner);
    return env;
}

static uint8_t *in_credential_1000(const hostile *h, size_t *len) {
    (void)h;
    char *cred = repeat('t', 1000);
    uint8_t *env = list_env(cred, 0, NULL, len);
    free(cred);
    return env;
}

static uint8_t *in_page_size_5000(const hostile *h, size_t *len) {
    return list_env(h->p.admin, 5000, NULL, len);
}

static uint8_t *in_cursor_garbage(const hostile *h, size_t *len) {
    char *cursor = repeat('c', 300);
    uint8_t *env = list_env(h->p.admin, 0, cursor, len);
    free(cursor);
    return env;
}

/* -- expiry and deadlines -- */

static uint8_t *in_expiry_past(const hostile *h, size_t *len) {
    return create_env(h, NULL, "n", NULL, 0, -1, 0, len);
}

static uint8_t *in_expiry_int64_min(const hostile *h, size_t *len) {
    return create_env(h, NULL, "n", NULL, 0, INT64_MIN, 0, len);
}

static uint8_t *in_expiry_10001_years(const hostile *h, size_t *len) {
    return create_env(h, NULL, "n", NULL, 0, 10001LL * 366 * 24 * 3600, 0, len);
}

static uint8_t *in_expiry_int64_max(const hostile *h, size_t *len) {
    return create_env(h, NULL, "n", NULL, 0, INT64_MAX, 0, len);
}

/* A valid create whose deadline has passed: refused, and nothing is
 * created (the listing check after the row sees it). */
static uint8_t *in_deadline_passed(const hostile *h, size_t *len) {
    return create_env(h, NULL, "late", NULL, 0, 0, rpc_now_ms() - 1000, len);
}

static uint8_t *in_deadline_negative(const hostile *h, size_t *len) {
    return verify_env(h->v[0].token, NULL, 0, 0, INT64_MIN, len);
}

static uint8_t *in_mode_unknown(const hostile *h, size_t *len) {
    return verify_env(h->v[0].token, NULL, 0, 7, 0, len);
}

/* -- abilities that are not abilities (token.h's grammar) -- */

/* One "ability" that is a comma-separated list: orders:* would cover it by
 * prefix, and X-Token-Abilities would carry abilities nobody granted. */
#define COMMA_ABILITY "orders:x,invoices:write,billing:*,tokend:admin"

static uint8_t *in_create_comma_ability(const hostile *h, size_t *len) {
    char *abilities[] = {COMMA_ABILITY};
    return create_env(h, NULL, "n", abilities, 1, 0, 0, len);
}

static uint8_t *in_verify_comma_ability(const hostile *h, size_t *len) {
    char *abilities[] = {"orders:read,invoices:write"};
    return verify_env(h->v[0].token, abilities, 1, 0, 0, len);
}

static uint8_t *in_verify_empty_segment(const hostile *h, size_t *len) {
    char *abilities[] = {"orders:read", "orders::read"};
    return verify_env(h->v[0].token, abilities, 2, 0, 0, len);
}

/* 64 abilities of 128 bytes: 8255 bytes joined with commas, more than
 * X-Token-Abilities carries. */
static uint8_t *in_create_joined_8255(const hostile *h, size_t *len) {
    static char ability[TOKEN_ABILITIES_MAX][TOKEN_ABILITY_MAX + 1];
    char *abilities[TOKEN_ABILITIES_MAX];
    for (size_t i = 0; i < TOKEN_ABILITIES_MAX; i++) {
        memset(ability[i], 'a' + (int)(i % 26), TOKEN_ABILITY_MAX);
        abilities[i] = ability[i];
    }
    return create_env(h, NULL, "n", abilities, TOKEN_ABILITIES_MAX, 0, 0, len);
}

/* -- one token's text together (TOKEN_TEXT_MAX) -- */

/* Metadata that takes a create of the victims' owner, name "n" and
 * ability orders:read to exactly `total` bytes of text: entries of a
 * 64-byte key and a 1 KiB value, the last cut to fit. Keys and values
 * point into `buf`; returns the number of entries. */
#define TEXT_OVER (TOKEN_TEXT_MAX + 1)
static size_t text_metadata(size_t total, char keys[][TOKEN_META_KEY_MAX + 1],
                            char values[][TOKEN_META_VALUE_MAX + 1]) {
    size_t left = total - strlen(VICTIM_OWNER) - strlen("n") - strlen("orders:read");
    size_t n = 0;
    for (; left > 0 && n < TOKEN_METADATA_MAX; n++) {
        size_t klen = left < TOKEN_META_KEY_MAX ? left : TOKEN_META_KEY_MAX;
        REQUIRE(klen >= 2); /* the index, then 'k's */
        snprintf(keys[n], TOKEN_META_KEY_MAX + 1, "%02zu", n);
        memset(keys[n] + 2, 'k', klen - 2);
        keys[n][klen] = '\0';
        left -= klen;
        size_t vlen = left < TOKEN_META_VALUE_MAX ? left : TOKEN_META_VALUE_MAX;
        memset(values[n], 'v', vlen);
        values[n][vlen] = '\0';
        left -= vlen;
    }
    REQUIRE(left == 0);
    return n;
}

static char text_keys[TOKEN_METADATA_MAX][TOKEN_META_KEY_MAX + 1];
static char text_values[TOKEN_METADATA_MAX][TOKEN_META_VALUE_MAX + 1];

static uint8_t *in_create_text_over(const hostile *h, size_t *len) {
    size_t n = text_metadata(TEXT_OVER, text_keys, text_values);
    char *keys[TOKEN_METADATA_MAX], *values[TOKEN_METADATA_MAX];
    for (size_t i = 0; i < n; i++) {
        keys[i] = text_keys[i];
        values[i] = text_values[i];
    }
    return create_env_metadata(h, keys, values, n, len);
}

/* -- revocations aimed at the victims -- */

static uint8_t *in_revoke_no_target(const hostile *h, size_t *len) {
    return envelope_raw("Revoke", NULL, 0, h->p.admin, 0, len);
}

static uint8_t *in_revoke_path_id(const hostile *h, size_t *len) {
    return revoke_id_env("../../etc/passwd", h->p.admin, len);
}

static uint8_t *in_revoke_id_suffixed(const hostile *h, size_t *len) {
    char id[TOK + 8];
    snprintf(id, sizeof(id), "%s/..", h->v[0].id);
    return revoke_id_env(id, h->p.admin, len);
}

static uint8_t *in_revoke_no_credential(const hostile *h, size_t *len) {
    return revoke_id_env(h->v[0].id, NULL, len);
}

/* By the "reader" victim (tokens:read, not tokens:write): one answer for
 * a victim's id and for an id no token has. */
static uint8_t *in_revoke_by_reader(const hostile *h, size_t *len) {
    return revoke_id_env(h->v[0].id, h->v[1].token, len);
}

static uint8_t *in_revoke_none_by_reader(const hostile *h, size_t *len) {
    return revoke_id_env("NoSuchTokenId000", h->v[1].token, len);
}

/* -- GetToken, the control service, the last admin -- */

static uint8_t *get_env(const char *id, const char *credential, size_t *len) {
    Tokend__V1__GetTokenRequest gr = TOKEND__V1__GET_TOKEN_REQUEST__INIT;
    gr.id = (char *)id;
    return envelope("GetToken", &gr.base, credential, 0, len);
}

static uint8_t *in_get_path_id(const hostile *h, size_t *len) {
    return get_env("../../etc/passwd", h->p.admin, len);
}

static uint8_t *in_get_no_credential(const hostile *h, size_t *len) {
    return get_env(h->v[0].id, NULL, len);
}

/* By the "writer" victim (tokens:write, not tokens:read). */
static uint8_t *in_get_by_writer(const hostile *h, size_t *len) {
    return get_env(h->v[0].id, h->v[2].token, len);
}

static uint8_t *in_get_none_by_writer(const hostile *h, size_t *len) {
    return get_env("NoSuchTokenId000", h->v[2].token, len);
}

/* The control socket's method, sent to the --listen socket. */
static uint8_t *in_mint_on_listen(const hostile *h, size_t *len) {
    Tokend__V1__MintAdminTokenRequest mr = TOKEND__V1__MINT_ADMIN_TOKEN_REQUEST__INIT;
    return envelope("MintAdminToken", &mr.base, h->p.admin, 0, len);
}

/* The admin revoking every token of its own owner, itself the only admin. */
static uint8_t *in_revoke_last_admin(const hostile *h, size_t *len) {
    Tokend__V1__RevokeRequest rr = TOKEND__V1__REVOKE_REQUEST__INIT;
    rr.target_case = TOKEND__V1__REVOKE_REQUEST__TARGET_OWNER;
    rr.owner = "";
    return envelope("Revoke", &rr.base, h->p.admin, 0, len);
}

/* -- request contexts past their bounds (RequestContext) -- */

/* A Verify of a victim with `ctx` as VerifyRequest.context. */
static uint8_t *verify_ctx_env(const hostile *h, Tokend__V1__RequestContext *ctx,
                               size_t *len) {
    Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
    vr.token = (char *)h->v[0].token;
    vr.context = ctx;
    return envelope("Verify", &vr.base, NULL, 0, len);
}

/* A ListTokens of the victims with `ctx` as the envelope's context. */
static uint8_t *list_ctx_env(const hostile *h, Tokend__V1__RequestContext *ctx,
                             size_t *len) {
    Tokend__V1__ListTokensRequest lr = TOKEND__V1__LIST_TOKENS_REQUEST__INIT;
    lr.owner = VICTIM_OWNER;
    uint8_t *p = NULL;
    size_t plen = 0;
    REQUIRE(rpc_pack(&lr.base, &p, &plen) == TOKEND_OK);
    Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
    req.method = "ListTokens";
    req.request_id = REQUEST_ID;
    req.credential = (char *)h->p.admin;
    req.context = ctx;
    req.payload.data = p;
    req.payload.len = plen;
    uint8_t *buf = NULL;
    REQUIRE(rpc_pack(&req.base, &buf, len) == TOKEND_OK);
    free(p);
    return buf;
}

static uint8_t *in_verify_ctx_path_2049(const hostile *h, size_t *len) {
    Tokend__V1__RequestContext ctx = TOKEND__V1__REQUEST_CONTEXT__INIT;
    ctx.path = repeat('p', 2049);
    uint8_t *env = verify_ctx_env(h, &ctx, len);
    free(ctx.path);
    return env;
}

static uint8_t *in_verify_ctx_bad_ip(const hostile *h, size_t *len) {
    Tokend__V1__RequestContext ctx = TOKEND__V1__REQUEST_CONTEXT__INIT;
    ctx.client_ip = "999.0.0.1";
    return verify_ctx_env(h, &ctx, len);
}

static uint8_t *in_verify_ctx_method_17(const hostile *h, size_t *len) {
    Tokend__V1__RequestContext ctx = TOKEND__V1__REQUEST_CONTEXT__INIT;
    ctx.method = "GETGETGETGETGETGE";
    return verify_ctx_env(h, &ctx, len);
}

static uint8_t *in_verify_ctx_method_space(const hostile *h, size_t *len) {
    Tokend__V1__RequestContext ctx = TOKEND__V1__REQUEST_CONTEXT__INIT;
    ctx.method = "GET /";
    return verify_ctx_env(h, &ctx, len);
}

static uint8_t *in_verify_ctx_ua_newline(const hostile *h, size_t *len) {
    Tokend__V1__RequestContext ctx = TOKEND__V1__REQUEST_CONTEXT__INIT;
    ctx.user_agent = "curl/8\r\nX-Injected: 1";
    return verify_ctx_env(h, &ctx, len);
}

static uint8_t *in_list_ctx_ua_257(const hostile *h, size_t *len) {
    Tokend__V1__RequestContext ctx = TOKEND__V1__REQUEST_CONTEXT__INIT;
    ctx.user_agent = repeat('u', 257);
    uint8_t *env = list_ctx_env(h, &ctx, len);
    free(ctx.user_agent);
    return env;
}

static uint8_t *in_list_ctx_ip_46(const hostile *h, size_t *len) {
    Tokend__V1__RequestContext ctx = TOKEND__V1__REQUEST_CONTEXT__INIT;
    ctx.client_ip = repeat('1', 46);
    uint8_t *env = list_ctx_env(h, &ctx, len);
    free(ctx.client_ip);
    return env;
}

static uint8_t *in_list_ctx_path_not_utf8(const hostile *h, size_t *len) {
    Tokend__V1__RequestContext ctx = TOKEND__V1__REQUEST_CONTEXT__INIT;
    ctx.path = "/orders/\xc3";
    return list_ctx_env(h, &ctx, len);
}

/* -- usage series and the audit log (GetUsage, ListEvents) -- */

static uint8_t *usage_env(const hostile *h, Tokend__V1__GetUsageRequest *ur,
                          const char *credential, size_t *len) {
    (void)h;
    return envelope("GetUsage", &ur->base, credential, 0, len);
}

static uint8_t *in_usage_path_id(const hostile *h, size_t *len) {
    Tokend__V1__GetUsageRequest ur = TOKEND__V1__GET_USAGE_REQUEST__INIT;
    ur.id = "../../etc/passwd";
    return usage_env(h, &ur, h->p.admin, len);
}

static uint8_t *in_usage_id_and_owner(const hostile *h, size_t *len) {
    Tokend__V1__GetUsageRequest ur = TOKEND__V1__GET_USAGE_REQUEST__INIT;
    ur.id = (char *)h->v[0].id;
    ur.owner = VICTIM_OWNER;
    return usage_env(h, &ur, h->p.admin, len);
}

static uint8_t *in_usage_range_reversed(const hostile *h, size_t *len) {
    Tokend__V1__GetUsageRequest ur = TOKEND__V1__GET_USAGE_REQUEST__INIT;
    ur.owner = VICTIM_OWNER;
    ur.from_unix_ms = 2000000000000;
    ur.to_unix_ms = 1000000000000;
    return usage_env(h, &ur, h->p.admin, len);
}

static uint8_t *in_usage_range_too_long(const hostile *h, size_t *len) {
    Tokend__V1__GetUsageRequest ur = TOKEND__V1__GET_USAGE_REQUEST__INIT;
    ur.owner = VICTIM_OWNER;
    ur.from_unix_ms = 1;
    ur.to_unix_ms = INT64_MAX;
    return usage_env(h, &ur, h->p.admin, len);
}

static uint8_t *in_usage_step_9(const hostile *h, size_t *len) {
    Tokend__V1__GetUsageRequest ur = TOKEND__V1__GET_USAGE_REQUEST__INIT;
    ur.owner = VICTIM_OWNER;
    ur.step = (Tokend__V1__UsageStep)9;
    return usage_env(h, &ur, h->p.admin, len);
}

static uint8_t *in_usage_no_credential(const hostile *h, size_t *len) {
    Tokend__V1__GetUsageRequest ur = TOKEND__V1__GET_USAGE_REQUEST__INIT;
    ur.owner = VICTIM_OWNER;
    return usage_env(h, &ur, NULL, len);
}

static uint8_t *events_env(Tokend__V1__ListEventsRequest *er, const char *credential,
                           size_t *len) {
    return envelope("ListEvents", &er->base, credential, 0, len);
}

static uint8_t *in_events_kind_99(const hostile *h, size_t *len) {
    Tokend__V1__ListEventsRequest er = TOKEND__V1__LIST_EVENTS_REQUEST__INIT;
    er.kind = (Tokend__V1__EventKind)99;
    return events_env(&er, h->p.admin, len);
}

static uint8_t *in_events_since_negative(const hostile *h, size_t *len) {
    Tokend__V1__ListEventsRequest er = TOKEND__V1__LIST_EVENTS_REQUEST__INIT;
    er.since_unix_ms = INT64_MIN;
    return events_env(&er, h->p.admin, len);
}

static uint8_t *in_events_cursor_garbage(const hostile *h, size_t *len) {
    Tokend__V1__ListEventsRequest er = TOKEND__V1__LIST_EVENTS_REQUEST__INIT;
    er.cursor = "\x01not-a-cursor";
    return events_env(&er, h->p.admin, len);
}

static uint8_t *in_events_token_id_path(const hostile *h, size_t *len) {
    Tokend__V1__ListEventsRequest er = TOKEND__V1__LIST_EVENTS_REQUEST__INIT;
    er.token_id = "../../etc/passwd";
    return events_env(&er, h->p.admin, len);
}

static uint8_t *in_events_page_5000(const hostile *h, size_t *len) {
    Tokend__V1__ListEventsRequest er = TOKEND__V1__LIST_EVENTS_REQUEST__INIT;
    er.page_size = 5000;
    return events_env(&er, h->p.admin, len);
}

static uint8_t *in_events_other_owner(const hostile *h, size_t *len) {
    Tokend__V1__ListEventsRequest er = TOKEND__V1__LIST_EVENTS_REQUEST__INIT;
    er.owner = "admin"; /* a victim reading the admin's events */
    return events_env(&er, h->v[0].token, len);
}

typedef struct rpc_row {
    const char *name;
    uint8_t *(*input)(const hostile *h, size_t *len);
    int status;          /* Reply.status wanted, or DROPPED */
    int reason;          /* VerifyResponse.reason wanted when status is OK, else -1 */
    const char *message; /* must appear in Reply.message, or NULL */
} rpc_row;

#define OK_ TOKEND__V1__STATUS__OK
#define DENIED TOKEND__V1__STATUS__PERMISSION_DENIED
#define BAD TOKEND__V1__STATUS__BAD_MESSAGE
#define INVALID TOKEND__V1__STATUS__INVALID_ARGUMENT
#define EXHAUSTED TOKEND__V1__STATUS__RESOURCE_EXHAUSTED
#define UNIMPL TOKEND__V1__STATUS__UNIMPLEMENTED
#define UNAUTH TOKEND__V1__STATUS__UNAUTHENTICATED
#define LATE TOKEND__V1__STATUS__DEADLINE_EXCEEDED
#define MALFORMED_ TOKEND__V1__STATUS__MALFORMED

static const rpc_row rpc_rows[] = {
    {"empty message", in_empty, UNIMPL, -1, "unknown method \"\""},
    {"4 bytes of 0xff", in_garbage, BAD, -1, "not a tokend.v1.Request"},
    {"4 KiB of random bytes", in_random, BAD, -1, "not a tokend.v1.Request"},
    {"truncated envelope", in_truncated_envelope, BAD, -1, "not a tokend.v1.Request"},
    {"truncated payload", in_truncated_payload, BAD, -1,
     "not a valid tokend.v1.VerifyRequest"},
    {"exactly --max-message bytes", in_at_max, BAD, -1,
     "not a valid tokend.v1.VerifyRequest"},
    {"--max-message + 1 bytes", in_over_max, EXHAUSTED, -1,
     "exceeds the maximum of " STR(MAX_MESSAGE)},
    {"1 MiB name", in_name_1mb, EXHAUSTED, -1,
     "exceeds the maximum of " STR(MAX_MESSAGE)},
    {"1 MiB owner", in_owner_1mb, EXHAUSTED, -1,
     "exceeds the maximum of " STR(MAX_MESSAGE)},
    {"2 MiB message", in_far_over_max, DROPPED, -1, NULL},
    {"unknown method", in_unknown_method, UNIMPL, -1, "unknown method \"Nope\""},
    {"method name in the wrong case", in_method_wrong_case, UNIMPL, -1, "\"verify\""},
    {"qualified method name", in_method_qualified, UNIMPL, -1, "unknown method"},
    {"method name not UTF-8", in_method_not_utf8, UNIMPL, -1, "unknown method"},
    {"long UTF-8 method name", in_method_long_utf8, UNIMPL, -1, "unknown method"},
    {"undecodable payload", in_payload_undecodable, BAD, -1,
     "not a valid tokend.v1.VerifyRequest"},
    {"VerifyRequest sent as ListTokens", in_verify_as_list, BAD, -1,
     "not a valid tokend.v1.ListTokensRequest"},
    {"CreateTokenRequest sent as Verify", in_create_as_verify, BAD, -1,
     "not a valid tokend.v1.VerifyRequest"},
    {"ListTokensRequest sent as Verify", in_list_as_verify, BAD, -1,
     "not a valid tokend.v1.VerifyRequest"},
    {"owner not UTF-8", in_owner_not_utf8, INVALID, -1, "owner must be UTF-8"},
    {"name with a UTF-16 surrogate", in_name_not_utf8, INVALID, -1, "name must be UTF-8"},
    {"name with a newline", in_name_control, INVALID, -1, "without control characters"},
    {"metadata value not UTF-8", in_meta_value_not_utf8, INVALID, -1,
     "metadata value 0 must be UTF-8"},
    {"ability not UTF-8", in_ability_not_utf8, INVALID, -1, "abilities[0] must be UTF-8"},
    {"token not UTF-8", in_token_not_utf8, OK_, MALFORMED_, NULL},
    {"credential not UTF-8", in_credential_not_utf8, UNAUTH, -1,
     "caller credential is malformed"},
    {"credential of 1000 bytes", in_credential_1000, UNAUTH, -1,
     "caller credential is malformed"},
    {"Verify of 10,000 abilities", in_verify_10000_abilities, INVALID, -1,
     "10000 abilities given; at most 64"},
    {"CreateToken of 10,000 abilities", in_create_10000_abilities, INVALID, -1,
     "10000 abilities given; at most 64"},
    {"name of 257 bytes", in_name_257, INVALID, -1, "name is longer than 256 bytes"},
    {"name of 60,000 bytes", in_name_60k, INVALID, -1, "name is longer than 256 bytes"},
    {"page_size 5000", in_page_size_5000, INVALID, -1, "page_size must be at most 1000"},
    {"cursor of 300 bytes", in_cursor_garbage, INVALID, -1, "cursor is not valid"},
    {"expiry 1 s in the past", in_expiry_past, INVALID, -1, "expires_in_seconds"},
    {"expiry INT64_MIN", in_expiry_int64_min, INVALID, -1, "expires_in_seconds"},
    {"expiry 10,001 years", in_expiry_10001_years, INVALID, -1, "expires_in_seconds"},
    {"expiry INT64_MAX", in_expiry_int64_max, INVALID, -1, "expires_in_seconds"},
    {"deadline passed (create)", in_deadline_passed, LATE, -1, "deadline passed"},
    {"deadline INT64_MIN", in_deadline_negative, LATE, -1, "deadline passed"},
    {"ability mode 7", in_mode_unknown, INVALID, -1, "mode must be ALL or ANY"},
    {"CreateToken of an ability with commas", in_create_comma_ability, INVALID, -1,
     "abilities[0]: \"" COMMA_ABILITY "\" is not an ability: ',' at offset 8"},
    {"Verify of an ability with a comma", in_verify_comma_ability, INVALID, -1,
     "abilities[0]: \"orders:read,invoices:write\" is not an ability"},
    {"Verify of an ability with an empty segment", in_verify_empty_segment, INVALID, -1,
     "abilities[1]: \"orders::read\" is not an ability: empty segment at offset 7"},
    {"CreateToken of abilities 8255 bytes joined", in_create_joined_8255, INVALID, -1,
     "abilities joined with commas are 8255 bytes; at most 4095"},
    {"Revoke without a target", in_revoke_no_target, INVALID, -1,
     "one of id, token or owner"},
    {"Revoke of id ../../etc/passwd", in_revoke_path_id, INVALID, -1,
     "id must be 16 base62 characters"},
    {"Revoke of a victim's id + \"/..\"", in_revoke_id_suffixed, INVALID, -1,
     "id must be 16 base62 characters"},
    {"Revoke of a victim without a credential", in_revoke_no_credential, UNAUTH, -1,
     "needs a caller credential"},
    {"CreateToken of 16,385 bytes of text together", in_create_text_over, INVALID, -1,
     "are 16385 bytes together; at most 16384 are allowed"},
    {"Revoke of a victim's id by a token without tokens:write", in_revoke_by_reader,
     DENIED, -1, "caller credential lacks the tokens:write ability"},
    {"Revoke of an id of none by that token", in_revoke_none_by_reader, DENIED, -1,
     "caller credential lacks the tokens:write ability"},
    {"GetToken of id ../../etc/passwd", in_get_path_id, INVALID, -1,
     "id must be 16 base62 characters"},
    {"GetToken without a credential", in_get_no_credential, UNAUTH, -1,
     "needs a caller credential"},
    {"GetToken of a victim's id by a token without tokens:read", in_get_by_writer, DENIED,
     -1, "caller credential lacks the tokens:read ability"},
    {"GetToken of an id of none by that token", in_get_none_by_writer, DENIED, -1,
     "caller credential lacks the tokens:read ability"},
    {"MintAdminToken on a --listen socket", in_mint_on_listen, UNIMPL, -1,
     "unknown method \"MintAdminToken\""},
    {"Revoke of the only admin token's whole owner", in_revoke_last_admin,
     TOKEND__V1__STATUS__FAILED_PRECONDITION, -1,
     "this would revoke the last admin token"},
    {"Verify with a context path of 2049 bytes", in_verify_ctx_path_2049, INVALID, -1,
     "context.path: longer than 2048 bytes"},
    {"Verify with a context client_ip 999.0.0.1", in_verify_ctx_bad_ip, INVALID, -1,
     "context.client_ip: not an IPv4 or IPv6 address"},
    {"Verify with a context method of 17 bytes", in_verify_ctx_method_17, INVALID, -1,
     "context.method: longer than 16 bytes"},
    {"Verify with a context method \"GET /\"", in_verify_ctx_method_space, INVALID, -1,
     "context.method: not an HTTP method"},
    {"Verify with a context user_agent holding CR LF", in_verify_ctx_ua_newline, INVALID,
     -1, "context.user_agent: not UTF-8 text without control characters"},
    {"ListTokens with an envelope user_agent of 257 bytes", in_list_ctx_ua_257, INVALID,
     -1, "context.user_agent: longer than 256 bytes"},
    {"ListTokens with an envelope client_ip of 46 bytes", in_list_ctx_ip_46, INVALID, -1,
     "context.client_ip: longer than 45 bytes"},
    {"ListTokens with an envelope path not UTF-8", in_list_ctx_path_not_utf8, INVALID, -1,
     "context.path: not UTF-8 text without control characters"},
    {"GetUsage of id ../../etc/passwd", in_usage_path_id, INVALID, -1,
     "id must be 16 base62 characters"},
    {"GetUsage of an id and an owner", in_usage_id_and_owner, INVALID, -1,
     "give at most one of id, owner and deployment"},
    {"GetUsage of a reversed range", in_usage_range_reversed, INVALID, -1,
     "the range must have 0 <= from_unix_ms < to_unix_ms"},
    {"GetUsage of a range to INT64_MAX", in_usage_range_too_long, INVALID, -1,
     "the range holds more than 2880 buckets of the step"},
    {"GetUsage of step 9", in_usage_step_9, INVALID, -1, "step must be MINUTE or HOUR"},
    {"GetUsage without a credential", in_usage_no_credential, UNAUTH, -1,
     "needs a caller credential"},
    {"ListEvents of kind 99", in_events_kind_99, INVALID, -1,
     "kind 99 is not an EventKind"},
    {"ListEvents since INT64_MIN", in_events_since_negative, INVALID, -1,
     "since_unix_ms must not be negative"},
    {"ListEvents of a garbage cursor", in_events_cursor_garbage, INVALID, -1,
     "cursor is not valid"},
    {"ListEvents of token_id ../../etc/passwd", in_events_token_id_path, INVALID, -1,
     "token_id must be 16 base62 characters"},
    {"ListEvents page_size 5000", in_events_page_5000, INVALID, -1,
     "page_size must be at most 1000"},
    {"ListEvents of another owner by a victim", in_events_other_owner, DENIED, -1, NULL},
};

TEST(hostile_rpc_table) {
    hostile h;
    hostile_start(&h, NULL);
    check_victims_rpc(&h, "setup");
    for (size_t i = 0; i < sizeof(rpc_rows) / sizeof(rpc_rows[0]); i++) {
        const rpc_row *row = &rpc_rows[i];
        size_t len = 0;
        uint8_t *bytes = row->input(&h, &len);
        rpc_result res;
        /* A dropped request is never answered: wait long enough to be sure
         * the drop was seen, not the full time an answer may take. */
        rpc_exchange(h.p.url, bytes, len, row->status == DROPPED ? 2000 : 10000, &res);
        free(bytes);
        bool ok = res.status == row->status &&
                  (row->status != OK_ || res.reason == row->reason) &&
                  (row->message == NULL || test_contains(res.message, row->message));
        if (!ok) {
            test_fail(__FILE__, __LINE__,
                      "row \"%s\": status %d reason %d message \"%s\"; want status %d "
                      "reason %d message with \"%s\"",
                      row->name, res.status, res.reason, res.message, row->status,
                      row->reason, row->message != NULL ? row->message : "");
        }
        if (row->status == DROPPED) {
            /* Dropped: the service closed the connection, unread. */
            if (res.dropped < 1) {
                test_fail(__FILE__, __LINE__, "row \"%s\": no connection was dropped",
                          row->name);
            }
        } else {
            /* Answered over a connection that stays up, with a reply any
             * proto3 decoder accepts (Reply.message is a string: UTF-8). */
            if (res.dropped != 0 || !res.message_utf8) {
                test_fail(__FILE__, __LINE__,
                          "row \"%s\": %d connections dropped, message %s UTF-8",
                          row->name, res.dropped, res.message_utf8 ? "is" : "is not");
            }
        }
        REQUIRE(running(h.p.pid));
        check_victims_rpc(&h, row->name);
    }
    tokend_close(h.admin);
    CHECK_INT(harness_stop(&h.p), 0);
}

/* ------------------------------------------------------------------------
 * The REST table. */

/* A TCP connection to the gateway; sends give up after 5 s, so a gateway
 * that stops reading cannot hang the test. */
static int tcp_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
    return fd;
}

/* Sends what it can: the gateway may close half-way through a request it
 * refuses. */
static void tcp_send(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w <= 0) {
            return;
        }
        p += w;
        len -= (size_t)w;
    }
}

typedef struct http_reply {
    char *raw; /* everything received (NUL-terminated) */
    size_t len;
    int status;       /* of the status line; 0 if none came */
    const char *body; /* within raw */
    bool closed;      /* the gateway closed the connection */
} http_reply;

/* Reads once (up to wait_ms) into r; false when nothing more will come. */
static bool read_some(int fd, http_reply *r, int wait_ms) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, wait_ms) <= 0) {
        return false;
    }
    char buf[65536];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) {
        r->closed = true; /* FIN, or a reset after a refused request */
        return false;
    }
    char *grown = realloc(r->raw, r->len + (size_t)n + 1);
    REQUIRE(grown != NULL);
    r->raw = grown;
    memcpy(r->raw + r->len, buf, (size_t)n);
    r->len += (size_t)n;
    r->raw[r->len] = '\0';
    return true;
}

/* Value of header `name` in r (into buf), or NULL. */
static const char *reply_header(const http_reply *r, const char *name, char *buf,
                                size_t size) {
    const char *end = r->body != NULL ? r->body : r->raw + r->len;
    size_t name_len = strlen(name);
    for (const char *line = r->raw; line != NULL && line < end;) {
        const char *eol = strstr(line, "\r\n");
        if (eol == NULL || eol >= end) {
            break;
        }
        if ((size_t)(eol - line) > name_len && strncasecmp(line, name, name_len) == 0 &&
            line[name_len] == ':') {
            const char *v = line + name_len + 1;
            while (*v == ' ') {
                v++;
            }
            snprintf(buf, size, "%.*s", (int)(eol - v), v);
            return buf;
        }
        line = eol + 2;
    }
    return NULL;
}

/* Reads one reply (status line, headers, Content-Length bytes of body), or
 * until the connection closes or 10 s pass. */
static void read_reply(int fd, http_reply *r) {
    memset(r, 0, sizeof(*r));
    r->raw = calloc(1, 1);
    REQUIRE(r->raw != NULL);
    double until = now_s() + 10;
    while (now_s() < until) {
        bool more = read_some(fd, r, 200);
        const char *head_end = strstr(r->raw, "\r\n\r\n");
        if (head_end != NULL) {
            r->body = head_end + 4;
            char value[32];
            const char *cl = reply_header(r, "Content-Length", value, sizeof(value));
            size_t want = cl != NULL ? (size_t)strtoul(cl, NULL, 10) : 0;
            if ((size_t)(r->raw + r->len - r->body) >= want) {
                break;
            }
        }
        if (!more && r->closed) {
            break;
        }
    }
    if (strncmp(r->raw, "HTTP/1.1 ", 9) == 0) {
        r->status = atoi(r->raw + 9);
    }
}

/* Waits (up to wait_ms) for the gateway to close the connection; anything
 * received meanwhile is appended. */
static void wait_closed(int fd, http_reply *r, int wait_ms) {
    double until = now_s() + wait_ms / 1000.0;
    while (!r->closed && now_s() < until) {
        read_some(fd, r, 100);
    }
}

/* The problem "code" of the reply's body, into buf, or NULL. */
static const char *problem_code(const http_reply *r, char *buf, size_t size) {
    if (r->body == NULL) {
        return NULL;
    }
    json_t *doc = json_loads(r->body, 0, NULL);
    const char *code = json_string_value(json_object_get(doc, "code"));
    const char *result = NULL;
    if (code != NULL) {
        snprintf(buf, size, "%s", code);
        result = buf;
    }
    json_decref(doc);
    return result;
}

/* One whole request on a new connection, with Connection: close. */
static void http_get(int port, const char *path, const char *token, http_reply *r) {
    char req[1024];
    snprintf(req, sizeof(req),
             "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
             "Connection: close\r\n\r\n",
             path, token);
    int fd = tcp_connect(port);
    tcp_send(fd, req, strlen(req));
    read_reply(fd, r);
    close(fd);
}

/* Through the gateway: every victim passes /v1/auth with its abilities
 * (and its id, owner and abilities in the X-Token-* headers), and the
 * admin's listing of the owner is exactly the victims, oldest first. Then
 * the same through the RPC socket. */
static void check_victims_rest(const hostile *h, const char *after) {
    char value[1024];
    for (size_t i = 0; i < N_VICTIMS; i++) {
        const victim *v = &h->v[i];
        char path[256], joined[256];
        snprintf(path, sizeof(path), "/v1/auth?ability=%s%s%s", v->abilities[0],
                 v->n_abilities > 1 ? "&ability=" : "",
                 v->n_abilities > 1 ? v->abilities[1] : "");
        snprintf(joined, sizeof(joined), "%s%s%s", v->abilities[0],
                 v->n_abilities > 1 ? "," : "",
                 v->n_abilities > 1 ? v->abilities[1] : "");
        http_reply r;
        http_get(h->g.port, path, v->token, &r);
        const char *id = reply_header(&r, "X-Token-Id", value, sizeof(value));
        bool same = r.status == 200 && id != NULL && strcmp(id, v->id) == 0;
        const char *owner = reply_header(&r, "X-Token-Owner", value, sizeof(value));
        same = same && owner != NULL && strcmp(owner, VICTIM_OWNER) == 0;
        const char *ab = reply_header(&r, "X-Token-Abilities", value, sizeof(value));
        same = same && ab != NULL && strcmp(ab, joined) == 0;
        if (!same) {
            test_fail(__FILE__, __LINE__, "after %s: GET %s for victim %zu: %.200s",
                      after, path, i, r.raw);
        }
        free(r.raw);
    }
    http_reply r;
    http_get(h->g.port, "/v1/tokens?owner=" VICTIM_OWNER, h->p.admin, &r);
    json_t *doc = r.status == 200 && r.body != NULL ? json_loads(r.body, 0, NULL) : NULL;
    json_t *tokens = json_object_get(doc, "tokens");
    bool same = json_array_size(tokens) == N_VICTIMS;
    for (size_t i = 0; same && i < N_VICTIMS; i++) {
        const char *id =
            json_string_value(json_object_get(json_array_get(tokens, i), "id"));
        same = id != NULL && strcmp(id, h->v[i].id) == 0;
    }
    if (!same) {
        test_fail(__FILE__, __LINE__, "after %s: GET /v1/tokens: %.300s", after, r.raw);
    }
    json_decref(doc);
    free(r.raw);
    check_victims_rpc(h, after);
}

static char *reqf(size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static char *reqf(size_t *len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    REQUIRE(n >= 0);
    *len = (size_t)n;
    return s;
}

/* A create request as the admin with `body` as application/json. */
static char *post_json(const hostile *h, const char *body, size_t *len) {
    return reqf(len,
                "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                h->p.admin, strlen(body), body);
}

/* A DELETE of `path` (as sent) with `token`. */
static char *delete_path(const char *path, const char *token, size_t *len) {
    return reqf(len, "DELETE %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n",
                path, token);
}

/* -- the rows' inputs -- */

static char *rq_no_authorization(const hostile *h, size_t *len) {
    (void)h;
    return reqf(len, "GET /v1/auth HTTP/1.1\r\nHost: x\r\n\r\n");
}

static char *rq_basic(const hostile *h, size_t *len) {
    (void)h;
    return reqf(len, "GET /v1/auth HTTP/1.1\r\nHost: x\r\n"
                     "Authorization: Basic dXNlcjpwdw==\r\n\r\n");
}

static char *rq_empty_authorization(const hostile *h, size_t *len) {
    (void)h;
    return reqf(len, "GET /v1/auth HTTP/1.1\r\nHost: x\r\nAuthorization: \r\n\r\n");
}

static char *rq_duplicate_same(const hostile *h, size_t *len) {
    return reqf(len,
                "GET /v1/auth HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Authorization: Bearer %s\r\n\r\n",
                h->v[0].token, h->v[0].token);
}

static char *rq_duplicate_two(const hostile *h, size_t *len) {
    return reqf(len,
                "GET /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Authorization: Bearer %s\r\n\r\n",
                h->v[1].token, h->p.admin);
}

static char *rq_garbage_bearer(const hostile *h, size_t *len) {
    (void)h;
    return reqf(len, "GET /v1/auth HTTP/1.1\r\nHost: x\r\n"
                     "Authorization: Bearer !!garbage!!'; DROP TABLE tokens;--\r\n\r\n");
}

static char *rq_binary_bearer(const hostile *h, size_t *len) {
    (void)h;
    return reqf(len, "GET /v1/auth HTTP/1.1\r\nHost: x\r\n"
                     "Authorization: Bearer \xff\xfe\x80\xc3\x28tkd_\r\n\r\n");
}

static char *rq_long_bearer(const hostile *h, size_t *len) {
    (void)h;
    char *t = repeat('A', 4000);
    char *req = reqf(
        len, "GET /v1/auth HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tkd_%s\r\n\r\n",
        t);
    free(t);
    return req;
}

static char *rq_header_1mb(const hostile *h, size_t *len) {
    char *big = repeat('h', MIB);
    char *req = reqf(len,
                     "GET /v1/auth HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                     "X-Big: %s\r\n\r\n",
                     h->v[0].token, big);
    free(big);
    return req;
}

/* 1 MiB spread over 10,000 header fields of about 100 bytes. */
static char *rq_headers_1mb(const hostile *h, size_t *len) {
    (void)h;
    size_t cap = 11 * MIB / 10;
    char *req = malloc(cap);
    REQUIRE(req != NULL);
    size_t k = (size_t)snprintf(req, cap, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    char *v = repeat('v', 90);
    for (int i = 0; i < 10000; i++) {
        k += (size_t)snprintf(req + k, cap - k, "X-H%05d: %s\r\n", i, v);
    }
    k += (size_t)snprintf(req + k, cap - k, "\r\n");
    free(v);
    *len = k;
    return req;
}

static char *rq_header_over_limit(const hostile *h, size_t *len) {
    char *big = repeat('h', MAX_HEADER);
    char *req = reqf(len,
                     "GET /v1/auth HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                     "X-Big: %s\r\n\r\n",
                     h->v[0].token, big);
    free(big);
    return req;
}

/* GET /v1/auth with a query of `n` parameters: "ability=a", "ability=b"...
 * or, with `empty`, n empty ones ("&&&..."). */
static char *query_of(const hostile *h, size_t *len, int n, bool empty) {
    size_t cap = (size_t)n * 12 + 1, k = 0;
    char *q = calloc(1, cap);
    for (int i = 0; i < n; i++) {
        const char *sep = i > 0 ? "&" : "";
        k += empty ? (size_t)snprintf(q + k, cap - k, "%s", sep)
                   : (size_t)snprintf(q + k, cap - k, "%sability=%c", sep, 'a' + i % 26);
    }
    char *req = reqf(
        len, "GET /v1/auth?%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", q,
        h->v[0].token);
    free(q);
    return req;
}

/* 7,000 empty query parameters in under --max-header bytes: libmicrohttpd
 * would spend its connection memory recording them and answer nothing. */
static char *rq_query_flood(const hostile *h, size_t *len) {
    return query_of(h, len, 7000, true);
}

/* One parameter over the limit, and exactly the limit: parsed and answered
 * by the route (which takes at most 64 abilities). */
static char *rq_query_129(const hostile *h, size_t *len) {
    return query_of(h, len, 129, false);
}

static char *rq_query_128(const hostile *h, size_t *len) {
    return query_of(h, len, 128, false);
}

/* Headers announcing 1 MiB of body, and no body: refused before it. */
static char *rq_body_announced(const hostile *h, size_t *len) {
    return reqf(len,
                "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n",
                h->p.admin, MIB);
}

/* -- framing (RFC 9112): what a proxy in front may read differently -- */

/* Content-Length twice, alike: which one frames the body is a guess. */
static char *rq_content_length_twice(const hostile *h, size_t *len) {
    (void)h;
    return reqf(len, "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                     "Content-Length: 0\r\n\r\n");
}

/* Content-Length 0 and 5: a proxy that takes the last reads "hello" as
 * this request's body; libmicrohttpd took the first, and "hello" for the
 * start of the next request. */
static char *rq_content_length_conflict(const hostile *h, size_t *len) {
    (void)h;
    return reqf(len, "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                     "Content-Length: 5\r\n\r\nhello");
}

/* Both framings: libmicrohttpd took the chunked one. */
static char *rq_length_and_chunked(const hostile *h, size_t *len) {
    return reqf(len,
                "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\nContent-Length: 5\r\n"
                "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                h->p.admin);
}

/* Chunked not the final coding: the body has no length at all. */
static char *rq_gzip_chunked(const hostile *h, size_t *len) {
    return reqf(len,
                "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\n"
                "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
                h->p.admin);
}

/* "Content-Length :" named a header "Content-Length ": the body framed
 * nothing, and went for the next request. */
static char *rq_space_before_colon(const hostile *h, size_t *len) {
    (void)h;
    return reqf(len, "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\n"
                     "hello");
}

/* A victim's token, a NUL, then junk: libmicrohttpd kept the value up to
 * the NUL, so the token passed. */
static char *rq_nul_in_authorization(const hostile *h, size_t *len) {
    char *req = reqf(len,
                     "GET /v1/auth HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s#junk"
                     "\r\n\r\n",
                     h->v[0].token);
    *strchr(req, '#') = '\0';
    return req;
}

static char *rq_control_in_value(const hostile *h, size_t *len) {
    (void)h;
    return reqf(len, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Note: a\x01b\r\n\r\n");
}

static char *rq_bare_lf(const hostile *h, size_t *len) {
    (void)h;
    return reqf(len, "GET /healthz HTTP/1.1\nHost: x\n\n");
}

/* One header line ended by LF alone: a proxy that ends lines at CRLF
 * only sees one header, "Authorization: Bearer ...\nX-Forwarded-For: ...". */
static char *rq_bare_lf_in_one_header(const hostile *h, size_t *len) {
    return reqf(len,
                "GET /v1/auth HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\n"
                "X-Forwarded-For: 10.0.0.1\r\n\r\n",
                h->v[0].token);
}

static char *rq_folded_header(const hostile *h, size_t *len) {
    (void)h;
    return reqf(len, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Note: a\r\n b\r\n\r\n");
}

/* 128 KiB of chunked body: counted while it is read. */
static char *rq_body_chunked(const hostile *h, size_t *len) {
    char *chunk = repeat(' ', 8192);
    chunk[0] = '[';
    size_t cap = 160 * 1024;
    char *req = malloc(cap);
    REQUIRE(req != NULL);
    size_t k = (size_t)snprintf(req, cap,
                                "POST /v1/tokens HTTP/1.1\r\nHost: x\r\n"
                                "Authorization: Bearer %s\r\n"
                                "Content-Type: application/json\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n",
                                h->p.admin);
    for (int i = 0; i < 16; i++) {
        k += (size_t)snprintf(req + k, cap - k, "2000\r\n%s\r\n", chunk);
        chunk[0] = ' ';
    }
    k += (size_t)snprintf(req + k, cap - k, "0\r\n\r\n");
    free(chunk);
    *len = k;
    return req;
}

static char *rq_bad_json(const hostile *h, size_t *len) {
    return post_json(h, "{\"name\":\"n\",\"abilities\":[\"orders:read\"", len);
}

static char *rq_json_not_utf8(const hostile *h, size_t *len) {
    return post_json(h, "{\"name\":\"\xc3\x28\",\"abilities\":[\"orders:read\"]}", len);
}

static char *rq_json_deep(const hostile *h, size_t *len) {
    char *open = repeat('[', 10000);
    char *close_ = repeat(']', 10000);
    char body[20100];
    snprintf(body, sizeof(body), "{\"abilities\":%s%s}", open, close_);
    free(open);
    free(close_);
    return post_json(h, body, len);
}

static char *rq_json_10000_abilities(const hostile *h, size_t *len) {
    size_t cap = 10000 * 4 + 200;
    char *body = malloc(cap);
    REQUIRE(body != NULL);
    size_t k = (size_t)snprintf(body, cap,
                                "{\"owner\":\"" VICTIM_OWNER "\",\"name\":\"n\","
                                "\"abilities\":[");
    for (int i = 0; i < 10000; i++) {
        k += (size_t)snprintf(body + k, cap - k, "%s\"a\"", i > 0 ? "," : "");
    }
    snprintf(body + k, cap - k, "]}");
    char *req = post_json(h, body, len);
    free(body);
    return req;
}

static char *rq_json_name_60k(const hostile *h, size_t *len) {
    char *name = repeat('n', 60000);
    char *body = NULL;
    REQUIRE(asprintf(&body,
                     "{\"owner\":\"" VICTIM_OWNER "\",\"name\":\"%s\","
                     "\"abilities\":[\"orders:read\"]}",
                     name) > 0);
    char *req = post_json(h, body, len);
    free(name);
    free(body);
    return req;
}

static char *rq_json_expiry_past(const hostile *h, size_t *len) {
    return post_json(h,
                     "{\"owner\":\"" VICTIM_OWNER "\",\"name\":\"n\","
                     "\"abilities\":[\"orders:read\"],\"expires_in\":-1}",
                     len);
}

static char *rq_json_expiry_absurd(const hostile *h, size_t *len) {
    return post_json(
        h,
        "{\"owner\":\"" VICTIM_OWNER "\",\"name\":\"n\","
        "\"abilities\":[\"orders:read\"],\"expires_in\":9000000000000000000}",
        len);
}

static char *rq_json_expiry_huge_real(const hostile *h, size_t *len) {
    return post_json(h,
                     "{\"owner\":\"" VICTIM_OWNER "\",\"name\":\"n\","
                     "\"abilities\":[\"orders:read\"],\"expires_in\":1e300}",
                     len);
}

static char *rq_json_comma_ability(const hostile *h, size_t *len) {
    return post_json(h,
                     "{\"owner\":\"" VICTIM_OWNER "\",\"name\":\"n\","
                     "\"abilities\":[\"orders:read\",\"" COMMA_ABILITY "\"]}",
                     len);
}

/* A create of 16,385 bytes of text together: tokend's INVALID_ARGUMENT. */
static char *rq_json_text_over(const hostile *h, size_t *len) {
    size_t n = text_metadata(TEXT_OVER, text_keys, text_values);
    json_t *metadata = json_object();
    for (size_t i = 0; i < n; i++) {
        json_object_set_new(metadata, text_keys[i], json_string(text_values[i]));
    }
    json_t *doc = json_pack("{s:s, s:s, s:[s], s:o}", "owner", VICTIM_OWNER, "name", "n",
                            "abilities", "orders:read", "metadata", metadata);
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    REQUIRE(body != NULL);
    char *req = post_json(h, body, len);
    free(body);
    return req;
}

/* DELETE of a victim's id, and of an id of none, by the "reader" victim
 * (no tokens:write): one answer. */
static char *rq_delete_by_reader(const hostile *h, size_t *len) {
    char path[TOK + 16];
    snprintf(path, sizeof(path), "/v1/tokens/%s", h->v[0].id);
    return delete_path(path, h->v[1].token, len);
}

static char *rq_delete_none_by_reader(const hostile *h, size_t *len) {
    return delete_path("/v1/tokens/NoSuchTokenId000", h->v[1].token, len);
}

/* GET /v1/auth?`query` with the first victim (orders:read, invoices:*). */
static char *auth_query(const hostile *h, const char *query, size_t *len) {
    return reqf(len,
                "GET /v1/auth?%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n",
                query, h->v[0].token);
}

static char *rq_query_comma_ability(const hostile *h, size_t *len) {
    return auth_query(h, "ability=orders:read,invoices:write", len);
}

/* invoices:* covers it by prefix: before the grammar, 200. */
static char *rq_query_comma_covered(const hostile *h, size_t *len) {
    return auth_query(h, "ability=orders:read&ability=invoices:x,tokend:admin", len);
}

/* A '*' that is not a whole last segment: invoices:* covered it too. */
static char *rq_query_star_inside(const hostile *h, size_t *len) {
    return auth_query(h, "ability=invoices:*:x", len);
}

static char *rq_text_plain(const hostile *h, size_t *len) {
    const char *body = "{\"owner\":\"" VICTIM_OWNER "\",\"name\":\"n\","
                       "\"abilities\":[\"orders:read\"]}";
    return reqf(len,
                "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s",
                h->p.admin, strlen(body), body);
}

static char *rq_no_content_type(const hostile *h, size_t *len) {
    const char *body = "{\"owner\":\"" VICTIM_OWNER "\",\"name\":\"n\","
                       "\"abilities\":[\"orders:read\"]}";
    return reqf(len,
                "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Content-Length: %zu\r\n\r\n%s",
                h->p.admin, strlen(body), body);
}

static char *rq_json_suffix_type(const hostile *h, size_t *len) {
    const char *body = "{\"owner\":\"" VICTIM_OWNER "\",\"name\":\"n\","
                       "\"abilities\":[\"orders:read\"]}";
    return reqf(
        len,
        "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
        "Content-Type: application/json-patch+json\r\nContent-Length: %zu\r\n\r\n%s",
        h->p.admin, strlen(body), body);
}

static char *rq_traversal_etc(const hostile *h, size_t *len) {
    return delete_path("/v1/tokens/../../etc/passwd", h->p.admin, len);
}

/* Normalised, this would be DELETE /v1/tokens: revoke every token of the
 * writer's owner, the victims'. */
static char *rq_traversal_to_revoke_all(const hostile *h, size_t *len) {
    return delete_path("/v1/tokens/../tokens", h->v[2].token, len);
}

static char *rq_traversal_after_id(const hostile *h, size_t *len) {
    char path[TOK + 64];
    snprintf(path, sizeof(path), "/v1/tokens/%s/..", h->v[0].id);
    return delete_path(path, h->p.admin, len);
}

static char *rq_traversal_encoded(const hostile *h, size_t *len) {
    return delete_path("/v1/tokens/..%2F..%2Fetc%2Fpasswd", h->p.admin, len);
}

static char *rq_traversal_encoded_id(const hostile *h, size_t *len) {
    char path[TOK + 64];
    snprintf(path, sizeof(path), "/v1/tokens/%%2e%%2e%%2f%s", h->v[0].id);
    return delete_path(path, h->p.admin, len);
}

static char *rq_id_with_nul(const hostile *h, size_t *len) {
    char path[TOK + 64];
    snprintf(path, sizeof(path), "/v1/tokens/%s%%00", h->v[0].id);
    return delete_path(path, h->p.admin, len);
}

static char *rq_traversal_route(const hostile *h, size_t *len) {
    return reqf(len,
                "GET /v1/../v1/tokens/self HTTP/1.1\r\nHost: x\r\n"
                "Authorization: Bearer %s\r\n\r\n",
                h->v[0].token);
}

static char *rq_dot_self(const hostile *h, size_t *len) {
    return reqf(len,
                "GET /v1/tokens/./self HTTP/1.1\r\nHost: x\r\n"
                "Authorization: Bearer %s\r\n\r\n",
                h->v[0].token);
}

static char *rq_garbage(const hostile *h, size_t *len) {
    (void)h;
    return reqf(len, "\x01\x02GARBAGE\xff\xfe\r\n\r\n");
}

static char *rq_tls_hello(const hostile *h, size_t *len) {
    (void)h;
    static const char hello[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n";
    char *b = malloc(sizeof(hello));
    REQUIRE(b != NULL);
    memcpy(b, hello, sizeof(hello));
    *len = sizeof(hello) - 1;
    return b;
}

static char *rq_slow(const hostile *h, size_t *len) {
    return reqf(len,
                "GET /v1/auth HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n",
                h->v[0].token);
}

typedef enum send_mode {
    SEND_WHOLE,   /* all at once */
    SEND_TRICKLE, /* one byte a second */
} send_mode;

typedef struct rest_row {
    const char *name;
    char *(*input)(const hostile *h, size_t *len);
    send_mode mode;
    int status;         /* HTTP status wanted; 0: closed without an answer */
    const char *code;   /* problem code wanted; NULL: not a problem reply */
    bool closes;        /* the gateway closes the connection after replying */
    const char *header; /* a header the reply must carry ("Name: value"), or NULL */
} rest_row;

#define WWW_MISSING "WWW-Authenticate: Bearer realm=\"tokend\""
#define WWW_MALFORMED                                                      \
    "WWW-Authenticate: Bearer realm=\"tokend\", error=\"invalid_token\", " \
    "error_description=\"the token is malformed\""

static const rest_row rest_rows[] = {
    {"no Authorization", rq_no_authorization, SEND_WHOLE, 401, "MISSING_TOKEN", false,
     WWW_MISSING},
    {"Authorization: Basic", rq_basic, SEND_WHOLE, 401, "MISSING_TOKEN", false,
     WWW_MISSING},
    {"empty Authorization", rq_empty_authorization, SEND_WHOLE, 401, "MISSING_TOKEN",
     false, WWW_MISSING},
    {"two Authorization headers, one token", rq_duplicate_same, SEND_WHOLE, 401,
     "MALFORMED", false, WWW_MALFORMED},
    {"two Authorization headers, two tokens", rq_duplicate_two, SEND_WHOLE, 401,
     "MALFORMED", false, WWW_MALFORMED},
    {"garbage bearer", rq_garbage_bearer, SEND_WHOLE, 401, "MALFORMED", false,
     WWW_MALFORMED},
    {"binary bearer", rq_binary_bearer, SEND_WHOLE, 401, "MALFORMED", false,
     WWW_MALFORMED},
    {"bearer of 4,000 bytes", rq_long_bearer, SEND_WHOLE, 401, "MALFORMED", false,
     WWW_MALFORMED},
    {"a 1 MiB header", rq_header_1mb, SEND_WHOLE, 431, NULL, true, "Connection: close"},
    {"1 MiB of headers", rq_headers_1mb, SEND_WHOLE, 431, NULL, true,
     "Connection: close"},
    {"headers just over --max-header", rq_header_over_limit, SEND_WHOLE, 431,
     "HEADERS_TOO_LARGE", true, "Connection: close"},
    {"7,000 empty query parameters", rq_query_flood, SEND_WHOLE, 414,
     "TOO_MANY_PARAMETERS", true, "Connection: close"},
    {"129 query parameters", rq_query_129, SEND_WHOLE, 414, "TOO_MANY_PARAMETERS", true,
     "Connection: close"},
    {"128 query parameters", rq_query_128, SEND_WHOLE, 400, "BAD_REQUEST", false, NULL},
    {"Content-Length of 1 MiB", rq_body_announced, SEND_WHOLE, 413, "BODY_TOO_LARGE",
     true, "Connection: close"},
    {"128 KiB chunked body", rq_body_chunked, SEND_WHOLE, 413, "BODY_TOO_LARGE", false,
     NULL},
    {"Content-Length twice, alike", rq_content_length_twice, SEND_WHOLE, 400,
     "BAD_REQUEST", true, "Connection: close"},
    {"Content-Length 0 and 5", rq_content_length_conflict, SEND_WHOLE, 400, "BAD_REQUEST",
     true, "Connection: close"},
    {"Content-Length with Transfer-Encoding: chunked", rq_length_and_chunked, SEND_WHOLE,
     400, "BAD_REQUEST", true, "Connection: close"},
    {"Transfer-Encoding: chunked, gzip", rq_gzip_chunked, SEND_WHOLE, 400, "BAD_REQUEST",
     true, "Connection: close"},
    {"Content-Length : 5 (space before the colon)", rq_space_before_colon, SEND_WHOLE,
     400, "BAD_REQUEST", true, "Connection: close"},
    {"a NUL inside Authorization", rq_nul_in_authorization, SEND_WHOLE, 400,
     "BAD_REQUEST", true, "Connection: close"},
    {"a control character in a header value", rq_control_in_value, SEND_WHOLE, 400,
     "BAD_REQUEST", true, "Connection: close"},
    {"bare LF line ends", rq_bare_lf, SEND_WHOLE, 400, "BAD_REQUEST", true,
     "Connection: close"},
    {"one header line ended by a bare LF", rq_bare_lf_in_one_header, SEND_WHOLE, 400,
     "BAD_REQUEST", true, "Connection: close"},
    {"a folded header line", rq_folded_header, SEND_WHOLE, 400, "BAD_REQUEST", true,
     "Connection: close"},
    {"bad JSON", rq_bad_json, SEND_WHOLE, 400, "BAD_REQUEST", false, NULL},
    {"JSON not UTF-8", rq_json_not_utf8, SEND_WHOLE, 400, "BAD_REQUEST", false, NULL},
    {"JSON nested 10,000 deep", rq_json_deep, SEND_WHOLE, 400, "BAD_REQUEST", false,
     NULL},
    {"JSON of 10,000 abilities", rq_json_10000_abilities, SEND_WHOLE, 400,
     "INVALID_ARGUMENT", false, NULL},
    {"JSON name of 60,000 bytes", rq_json_name_60k, SEND_WHOLE, 400, "INVALID_ARGUMENT",
     false, NULL},
    {"expires_in -1", rq_json_expiry_past, SEND_WHOLE, 400, "BAD_REQUEST", false, NULL},
    {"expires_in 9e18", rq_json_expiry_absurd, SEND_WHOLE, 400, "INVALID_ARGUMENT", false,
     NULL},
    {"expires_in 1e300", rq_json_expiry_huge_real, SEND_WHOLE, 400, "BAD_REQUEST", false,
     NULL},
    {"a create of 16,385 bytes of text together", rq_json_text_over, SEND_WHOLE, 400,
     "INVALID_ARGUMENT", false, NULL},
    {"DELETE of a victim's id by a token without tokens:write", rq_delete_by_reader,
     SEND_WHOLE, 403, "PERMISSION_DENIED", false, NULL},
    {"DELETE of an id of none by that token", rq_delete_none_by_reader, SEND_WHOLE, 403,
     "PERMISSION_DENIED", false, NULL},
    {"an ability with commas in a create", rq_json_comma_ability, SEND_WHOLE, 400,
     "INVALID_ARGUMENT", false, NULL},
    {"?ability=orders:read,invoices:write", rq_query_comma_ability, SEND_WHOLE, 400,
     "INVALID_ARGUMENT", false, NULL},
    {"?ability=invoices:x,tokend:admin (within invoices:*)", rq_query_comma_covered,
     SEND_WHOLE, 400, "INVALID_ARGUMENT", false, NULL},
    {"?ability=invoices:*:x (within invoices:*)", rq_query_star_inside, SEND_WHOLE, 400,
     "INVALID_ARGUMENT", false, NULL},
    {"Content-Type: text/plain", rq_text_plain, SEND_WHOLE, 415, "UNSUPPORTED_MEDIA_TYPE",
     false, NULL},
    {"no Content-Type", rq_no_content_type, SEND_WHOLE, 415, "UNSUPPORTED_MEDIA_TYPE",
     false, NULL},
    {"Content-Type: application/json-patch+json", rq_json_suffix_type, SEND_WHOLE, 415,
     "UNSUPPORTED_MEDIA_TYPE", false, NULL},
    {"DELETE /v1/tokens/../../etc/passwd", rq_traversal_etc, SEND_WHOLE, 404, "NOT_FOUND",
     false, NULL},
    {"DELETE /v1/tokens/../tokens", rq_traversal_to_revoke_all, SEND_WHOLE, 404,
     "NOT_FOUND", false, NULL},
    {"DELETE /v1/tokens/{id}/..", rq_traversal_after_id, SEND_WHOLE, 404, "NOT_FOUND",
     false, NULL},
    {"DELETE /v1/tokens/..%2F..%2Fetc%2Fpasswd", rq_traversal_encoded, SEND_WHOLE, 404,
     "NOT_FOUND", false, NULL},
    {"DELETE /v1/tokens/%2e%2e%2f{id}", rq_traversal_encoded_id, SEND_WHOLE, 404,
     "NOT_FOUND", false, NULL},
    {"DELETE /v1/tokens/{id}%00", rq_id_with_nul, SEND_WHOLE, 404, "NOT_FOUND", false,
     NULL},
    {"GET /v1/../v1/tokens/self", rq_traversal_route, SEND_WHOLE, 404, "NO_ROUTE", false,
     NULL},
    {"GET /v1/tokens/./self", rq_dot_self, SEND_WHOLE, 404, "NOT_FOUND", false, NULL},
    {"garbage bytes", rq_garbage, SEND_WHOLE, 0, NULL, true, NULL},
    {"a TLS ClientHello", rq_tls_hello, SEND_WHOLE, 0, NULL, true, NULL},
    {"a header a byte a second", rq_slow, SEND_TRICKLE, 0, NULL, true, NULL},
};

/* Sends the request a byte a second until the gateway closes the
 * connection (or 30 s pass); returns the seconds from connect to close. */
static double trickle(int fd, const char *bytes, size_t len, http_reply *r) {
    double t0 = now_s();
    for (size_t i = 0; i < len && !r->closed && now_s() - t0 < 30; i++) {
        tcp_send(fd, bytes + i, 1);
        double next = now_s() + 1.0;
        while (!r->closed && now_s() < next) {
            read_some(fd, r, 100);
        }
    }
    return now_s() - t0;
}

TEST(hostile_rest_table) {
    hostile h;
    const char *flags[] = {"--max-body",
                           STR(MAX_BODY),
                           "--max-header",
                           STR(MAX_HEADER),
                           "--request-timeout-s",
                           STR(REQUEST_TIMEOUT_S),
                           NULL};
    hostile_start(&h, flags);
    check_victims_rest(&h, "setup");
    for (size_t i = 0; i < sizeof(rest_rows) / sizeof(rest_rows[0]); i++) {
        const rest_row *row = &rest_rows[i];
        size_t len = 0;
        char *bytes = row->input(&h, &len);
        int fd = tcp_connect(h.g.port);
        http_reply r;
        double took = 0;
        if (row->mode == SEND_TRICKLE) {
            memset(&r, 0, sizeof(r));
            r.raw = calloc(1, 1);
            REQUIRE(r.raw != NULL);
            took = trickle(fd, bytes, len, &r);
        } else {
            tcp_send(fd, bytes, len);
            read_reply(fd, &r);
        }
        free(bytes);
        char value[512], code_buf[64];
        const char *code = problem_code(&r, code_buf, sizeof(code_buf));
        const char *type = reply_header(&r, "Content-Type", value, sizeof(value));
        bool problem = type != NULL && strcmp(type, "application/problem+json") == 0;
        bool ok =
            r.status == row->status &&
            (row->code != NULL ? problem && code != NULL && strcmp(code, row->code) == 0
                               : !problem);
        if (row->status == 0) {
            ok = ok && r.len == 0; /* not a byte of answer */
        }
        if (ok && row->header != NULL) {
            const char *colon = strchr(row->header, ':');
            char name[64];
            snprintf(name, sizeof(name), "%.*s", (int)(colon - row->header), row->header);
            const char *got = reply_header(&r, name, value, sizeof(value));
            ok = got != NULL && strcmp(got, colon + 2) == 0;
        }
        if (row->closes) {
            wait_closed(fd, &r, 5000);
            ok = ok && r.closed;
        } else if (ok) {
            /* Still serving, on the very same connection. */
            const char *next =
                "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            tcp_send(fd, next, strlen(next));
            http_reply again;
            read_reply(fd, &again);
            if (again.status != 200) {
                test_fail(__FILE__, __LINE__,
                          "row \"%s\": the connection no longer "
                          "serves: %.200s",
                          row->name, again.raw);
            }
            free(again.raw);
        }
        if (!ok) {
            test_fail(
                __FILE__, __LINE__,
                "row \"%s\": got %d %s (closed: %d): %.300s; want %d %s (closes: %d)",
                row->name, r.status, code != NULL ? code : "-", r.closed, r.raw,
                row->status, row->code != NULL ? row->code : "-", row->closes);
        }
        if (row->mode == SEND_TRICKLE) {
            /* Cut at --request-timeout-s from the connection's start (the
             * watchdog looks every 100 ms), not by the 30 s idle timeout,
             * with room for a loaded machine. */
            if (took < REQUEST_TIMEOUT_S - 0.5 || took > REQUEST_TIMEOUT_S + 8) {
                test_fail(__FILE__, __LINE__,
                          "row \"%s\": closed after %.1f s, want "
                          "about %d s",
                          row->name, took, REQUEST_TIMEOUT_S);
            }
        }
        close(fd);
        free(r.raw);
        REQUIRE(running(h.p.pid));
        REQUIRE(running(h.g.pid));
        check_victims_rest(&h, row->name);
    }
    tokend_close(h.admin);
    CHECK_INT(harness_gateway_stop(&h.g), 0);
    CHECK_INT(harness_stop(&h.p), 0);
}
