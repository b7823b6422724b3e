/*
 * test_audit.c — the audit log against the real tokend, tokenctl and
 * gateway:
 *
 * - creates, revokes (by id, plain text, owner), refused calls and admin
 *   recovery (offline and through the control socket) are recorded with
 *   caller, target, detail and the envelope's client context;
 * - an acknowledged create's event survives kill -9 with it, and the
 *   chain goes on gap-free after the restart; racing writes give one
 *   gap-free chain in the writer's order;
 * - `tokenctl events --verify` passes on a sound log and names the first
 *   broken link of a tampered store (a rewritten event, a re-hashed one,
 *   a deleted one);
 * - filters and rights, --json lines, --follow, retention, refusal
 *   coalescing and GET /v1/events.
 */
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "crypto.h"
#include "events.h"
#include "harness.h"
#include "rpc.h"
#include "store.h"
#include "test.h"
#include "token.h"
#include "tokend.pb-c.h"
#include "writer.h"

#define TOK 128

extern char **environ;

static const char *const rw_abilities[] = {"tokens:read", "tokens:write"};
static const char *const read_ability[] = {"tokens:read"};
static const char *const any_ability[] = {"orders:read"};

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Every event the credential of `c` may see with filter `f` (its cursor
 * ignored), oldest first, into *all (free with tokend_event_page_free).
 * Returns the status of the first failed page. */
static int list_all(tokend_client *c, tokend_event_filter f, tokend_event_page *all) {
    memset(all, 0, sizeof(*all));
    char *cursor = NULL;
    int rv = TOKEND_OK;
    for (int pages = 0; pages < 1000; pages++) {
        tokend_event_page page;
        f.cursor = cursor;
        rv = tokend_list_events(c, NULL, &f, &page, NULL);
        if (rv != TOKEND_OK) {
            break;
        }
        tokend_event *grown =
            realloc(all->events, (all->n_events + page.n_events + 1) * sizeof(*grown));
        REQUIRE(grown != NULL);
        all->events = grown;
        if (page.n_events > 0) { /* an empty page may have no array */
            memcpy(all->events + all->n_events, page.events,
                   page.n_events * sizeof(*page.events));
        }
        all->n_events += page.n_events;
        page.n_events = 0; /* moved */
        free(cursor);
        cursor = page.next_cursor != NULL ? strdup(page.next_cursor) : NULL;
        bool more = page.more;
        tokend_event_page_free(&page);
        if (!more) {
            break;
        }
    }
    free(all->next_cursor);
    all->next_cursor = cursor;
    return rv;
}

static const char *detail_of(const tokend_event *e, const char *key) {
    for (size_t i = 0; i < e->n_detail; i++) {
        if (strcmp(e->detail[i].key, key) == 0) {
            return e->detail[i].value;
        }
    }
    return NULL;
}

/* The last event of `kind` about token `id` (NULL: any), or NULL. */
static const tokend_event *find(const tokend_event_page *all, const char *kind,
                                const char *id) {
    for (size_t i = all->n_events; i-- > 0;) {
        const tokend_event *e = &all->events[i];
        if (strcmp(e->kind, kind) == 0 && (id == NULL || strcmp(e->token_id, id) == 0)) {
            return e;
        }
    }
    return NULL;
}

/* The last CALL_REFUSED of `method` with `status`, or NULL. */
static const tokend_event *find_refusal(const tokend_event_page *all, const char *method,
                                        const char *status) {
    for (size_t i = all->n_events; i-- > 0;) {
        const tokend_event *e = &all->events[i];
        const char *m = detail_of(e, "method"), *s = detail_of(e, "status");
        if (strcmp(e->kind, "CALL_REFUSED") == 0 && m != NULL && s != NULL &&
            strcmp(m, method) == 0 && strcmp(s, status) == 0) {
            return e;
        }
    }
    return NULL;
}

/* Seqs 1.. (or from the first kept) without a gap. */
static bool gap_free(const tokend_event_page *all) {
    for (size_t i = 1; i < all->n_events; i++) {
        if (all->events[i].seq != all->events[i - 1].seq + 1) {
            return false;
        }
    }
    return true;
}

/* Sends a CreateToken envelope carrying a RequestContext; returns the
 * reply's status and the new token's id into id_out. */
static int create_with_context(const tokend_proc *p, const char *credential,
                               const char *owner, const char *client_ip, char *id_out) {
    Tokend__V1__CreateTokenRequest in = TOKEND__V1__CREATE_TOKEN_REQUEST__INIT;
    char *abilities[] = {"orders:read"};
    in.owner = (char *)owner;
    in.name = "with context";
    in.abilities = abilities;
    in.n_abilities = 1;
    uint8_t payload[512];
    size_t plen = tokend__v1__create_token_request__pack(&in, payload);
    Tokend__V1__RequestContext ctx = TOKEND__V1__REQUEST_CONTEXT__INIT;
    ctx.method = "POST";
    ctx.path = "/v1/tokens?note=secret-in-query";
    ctx.client_ip = (char *)client_ip;
    ctx.user_agent = "audit-test/1.0";
    Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
    req.method = "CreateToken";
    req.request_id = 42;
    req.credential = (char *)credential;
    req.payload.data = payload;
    req.payload.len = plen;
    req.context = &ctx;
    uint8_t *buf = NULL;
    size_t len = 0;
    REQUIRE(rpc_pack(&req.base, &buf, &len) == TOKEND_OK);
    nng_socket s;
    REQUIRE(nng_req0_open(&s) == 0);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 5000);
    REQUIRE(nng_dial(s, p->url, NULL, 0) == 0);
    REQUIRE(nng_send(s, buf, len, 0) == 0);
    free(buf);
    void *rbuf = NULL;
    size_t rlen = 0;
    REQUIRE(nng_recv(s, &rbuf, &rlen, NNG_FLAG_ALLOC) == 0);
    nng_close(s);
    Tokend__V1__Reply *reply = tokend__v1__reply__unpack(NULL, rlen, rbuf);
    nng_free(rbuf, rlen);
    REQUIRE(reply != NULL);
    int status = reply->status;
    if (status == 0 && id_out != NULL) {
        Tokend__V1__CreateTokenResponse *out = tokend__v1__create_token_response__unpack(
            NULL, reply->payload.len, reply->payload.data);
        REQUIRE(out != NULL && out->info != NULL);
        snprintf(id_out, TOKEN_ID_LEN + 1, "%s", out->info->id);
        tokend__v1__create_token_response__free_unpacked(out, NULL);
    }
    tokend__v1__reply__free_unpacked(reply, NULL);
    return status;
}

/* Runs `tokenctl --url URL --credential C events ARGS...`. */
static int tokenctl_events(const tokend_proc *p, const char *credential, const char *a1,
                           const char *a2, char **out, char **err) {
    const char *argv[] = {harness_bin("tokenctl"),
                          "--url",
                          p->url,
                          "--credential",
                          credential,
                          "events",
                          a1,
                          a2,
                          NULL};
    return harness_exec(argv, NULL, NULL, out, err);
}

/* The admin's token id (the init token, seq 1's). */
static void admin_id(tokend_client *admin, char *id) {
    tokend_token_page page;
    REQUIRE(tokend_list(admin, NULL, "admin", 10, NULL, &page, NULL) == TOKEND_OK);
    REQUIRE(page.n_tokens >= 1);
    snprintf(id, TOKEN_ID_LEN + 1, "%s", page.tokens[0].id);
    tokend_token_page_free(&page);
}

TEST(audit_records_creates_revokes_and_refusals_with_their_fields) {
    tokend_proc p;
    harness_init(&p);
    p.extra[0] = "--max-tokens-per-owner";
    p.extra[1] = "3";
    p.extra[2] = NULL;
    REQUIRE(harness_start(&p));
    tokend_client *admin = harness_client(&p, p.admin);
    char aid[TOKEN_ID_LEN + 1];
    admin_id(admin, aid);

    /* A create with a context: client IP, user agent, path without query. */
    char cid[TOKEN_ID_LEN + 1] = "";
    CHECK_INT(create_with_context(&p, p.admin, "partner:ctx", "203.0.113.7", cid), 0);
    /* A create with an expiry, through libtokend. */
    tokend_created created;
    tokend_create_params params = {.owner = "partner:a",
                                   .name = "wclient",
                                   .abilities = rw_abilities,
                                   .n_abilities = 2,
                                   .expires_in_seconds = 3600};
    REQUIRE(tokend_create(admin, NULL, &params, &created, NULL) == TOKEND_OK);
    char wtok[TOK], wid[TOKEN_ID_LEN + 1];
    snprintf(wtok, sizeof(wtok), "%s", created.token);
    snprintf(wid, sizeof(wid), "%s", created.info.id);
    int64_t wexp = created.info.expires_unix_ms;
    tokend_created_free(&created);
    char t1[TOK], id1[TOKEN_ID_LEN + 1], t2[TOK], id2[TOKEN_ID_LEN + 1];
    char id3[TOKEN_ID_LEN + 1], id4[TOKEN_ID_LEN + 1];
    harness_create(admin, "partner:b", "one", any_ability, 1, 0, t1, sizeof(t1), id1,
                   sizeof(id1));
    harness_create(admin, "partner:b", "two", any_ability, 1, 0, t2, sizeof(t2), id2,
                   sizeof(id2));
    harness_create(admin, "partner:c", "three", any_ability, 1, 0, NULL, 0, id3,
                   sizeof(id3));
    harness_create(admin, "partner:c", "four", any_ability, 1, 0, NULL, 0, id4,
                   sizeof(id4));
    uint64_t n = 0;
    CHECK_INT(tokend_revoke_id(admin, NULL, id1, &n, NULL), TOKEND_OK);
    CHECK_INT(tokend_revoke_token(admin, NULL, t2, &n, NULL), TOKEND_OK);
    CHECK_INT(tokend_revoke_owner(admin, NULL, "partner:c", &n, NULL), TOKEND_OK);
    CHECK_INT(n, 2);

    /* Refusals: no valid credential, another owner, the last admin, the
     * owner limit (3 for partner:a: wclient + two more, then refused). */
    tokend_client *nobody = harness_client(&p, "tkd_notatoken");
    CHECK_INT(tokend_revoke_owner(nobody, NULL, "partner:a", &n, NULL),
              TOKEND_UNAUTHENTICATED);
    tokend_close(nobody);
    tokend_client *wclient = harness_client(&p, wtok);
    tokend_token_page tp;
    CHECK_INT(tokend_list(wclient, NULL, "partner:b", 10, NULL, &tp, NULL),
              TOKEND_PERMISSION_DENIED);
    CHECK_INT(tokend_revoke_id(admin, NULL, aid, &n, NULL), TOKEND_FAILED_PRECONDITION);
    for (int i = 0; i < 2; i++) {
        harness_create(admin, "partner:a", "more", any_ability, 1, 0, NULL, 0, NULL, 0);
    }
    tokend_create_params over = {.owner = "partner:a",
                                 .name = "over",
                                 .abilities = read_ability,
                                 .n_abilities = 1};
    CHECK_INT(tokend_create(wclient, NULL, &over, &created, NULL),
              TOKEND_RESOURCE_EXHAUSTED);
    tokend_close(wclient);
    sleep_ms(300); /* refusals are queued, not waited for */

    tokend_event_page all;
    REQUIRE(list_all(admin, (tokend_event_filter){0}, &all) == TOKEND_OK);
    CHECK(gap_free(&all));
    REQUIRE(all.n_events > 0);
    CHECK_INT(all.events[0].seq, 1);
    CHECK_STR(all.events[0].kind, "TOKEN_CREATED"); /* tokend init's */
    CHECK_STR(all.events[0].token_id, aid);

    const tokend_event *e = find(&all, "TOKEN_CREATED", cid);
    REQUIRE(e != NULL);
    CHECK_STR(e->actor_id, aid);
    CHECK_STR(e->actor_owner, "admin");
    CHECK_STR(e->owner, "partner:ctx");
    CHECK_STR(e->client_ip, "203.0.113.7");
    CHECK_STR(e->user_agent, "audit-test/1.0");
    CHECK_STR(e->method, "POST");
    CHECK_STR(e->path, "/v1/tokens");
    CHECK_STR(detail_of(e, "abilities"), "orders:read");
    CHECK_STR(detail_of(e, "expires_unix_ms"), "0");

    e = find(&all, "TOKEN_CREATED", wid);
    REQUIRE(e != NULL);
    CHECK_STR(e->owner, "partner:a");
    CHECK_STR(detail_of(e, "name"), "wclient");
    CHECK_STR(detail_of(e, "abilities"), "tokens:read,tokens:write");
    char want[24];
    snprintf(want, sizeof(want), "%lld", (long long)wexp);
    CHECK_STR(detail_of(e, "expires_unix_ms"), want);
    CHECK_STR(e->client_ip, ""); /* no context sent */

    e = find(&all, "TOKEN_REVOKED", id1);
    REQUIRE(e != NULL);
    CHECK_STR(detail_of(e, "by"), "id");
    CHECK_STR(detail_of(e, "revoked"), "1");
    CHECK_STR(e->owner, "partner:b");
    CHECK_STR(e->actor_id, aid);
    e = find(&all, "TOKEN_REVOKED", id2);
    REQUIRE(e != NULL);
    CHECK_STR(detail_of(e, "by"), "token");
    e = NULL;
    for (size_t i = 0; i < all.n_events; i++) {
        if (strcmp(all.events[i].kind, "TOKEN_REVOKED") == 0 &&
            strcmp(all.events[i].owner, "partner:c") == 0) {
            e = &all.events[i];
        }
    }
    REQUIRE(e != NULL);
    CHECK_STR(detail_of(e, "by"), "owner");
    CHECK_STR(detail_of(e, "revoked"), "2");
    CHECK_STR(e->token_id, "");

    e = find_refusal(&all, "Revoke", "UNAUTHENTICATED");
    REQUIRE(e != NULL);
    CHECK_STR(e->actor_id, ""); /* the credential was not valid */
    CHECK(test_contains(detail_of(e, "reason"), "malformed"));
    e = find_refusal(&all, "ListTokens", "PERMISSION_DENIED");
    REQUIRE(e != NULL);
    CHECK_STR(e->actor_id, wid);
    CHECK_STR(e->actor_owner, "partner:a");
    /* Recorded under the caller's own owner, the target in the detail:
     * partner:b does not learn partner:a's token ids. */
    CHECK_STR(e->owner, "partner:a");
    CHECK_STR(detail_of(e, "target_owner"), "partner:b");
    e = find_refusal(&all, "Revoke", "FAILED_PRECONDITION");
    REQUIRE(e != NULL);
    CHECK_STR(e->actor_id, aid);
    CHECK(test_contains(detail_of(e, "reason"), "last admin token"));
    e = find_refusal(&all, "CreateToken", "RESOURCE_EXHAUSTED");
    REQUIRE(e != NULL);
    CHECK_STR(e->actor_id, wid);
    CHECK(test_contains(detail_of(e, "reason"), "token limit"));
    /* Never a token in any event. */
    for (size_t i = 0; i < all.n_events; i++) {
        for (size_t k = 0; k < all.events[i].n_detail; k++) {
            CHECK(!test_contains(all.events[i].detail[k].value, "tkd_"));
        }
    }
    tokend_event_page_free(&all);
    tokend_close(admin);
    harness_stop(&p);
    CHECK(!harness_dir_contains(p.data_dir, t1));
}

TEST(audit_admin_recovery_offline_and_via_control) {
    tokend_proc p;
    harness_start_or_die(&p);
    harness_stop(&p);
    const char *argv[] = {harness_bin("tokend"), "admin-token", "--data-dir", p.data_dir,
                          NULL};
    char *out = NULL;
    CHECK_INT(harness_exec(argv, NULL, NULL, &out, NULL), 0);
    char offline_tok[TOK];
    snprintf(offline_tok, sizeof(offline_tok), "%.*s", (int)strcspn(out, "\n"), out);
    free(out);
    REQUIRE(harness_start(&p));
    CHECK_INT(harness_exec(argv, NULL, NULL, NULL, NULL), 0); /* via the control socket */
    tokend_client *admin = harness_client(&p, p.admin);
    tokend_event_page all;
    REQUIRE(list_all(admin, (tokend_event_filter){.kind = "ADMIN_RECOVERY"}, &all) ==
            TOKEND_OK);
    REQUIRE(all.n_events == 2);
    CHECK_STR(detail_of(&all.events[0], "via"), "offline");
    CHECK_STR(detail_of(&all.events[1], "via"), "control");
    CHECK_STR(all.events[0].owner, "admin");
    CHECK_STR(detail_of(&all.events[0], "abilities"), "tokend:admin");
    CHECK(all.events[0].seq < all.events[1].seq);
    tokend_token_info info;
    CHECK_INT(tokend_get(admin, NULL, all.events[1].token_id, &info, NULL), TOKEND_OK);
    tokend_token_info_free(&info);
    tokend_event_page_free(&all);
    char *vout = NULL;
    CHECK_INT(tokenctl_events(&p, p.admin, "--verify", NULL, &vout, NULL), 0);
    CHECK(test_contains(vout, "chain verified: 3 events, seq 1..3"));
    free(vout);
    tokend_close(admin);
    harness_stop(&p);
    CHECK(!harness_dir_contains(p.data_dir, offline_tok)); /* events hold ids only */
}

TEST(audit_acknowledged_create_keeps_its_event_across_kill9) {
    tokend_proc p;
    harness_start_or_die(&p);
    tokend_client *admin = harness_client(&p, p.admin);
    char ids[20][TOKEN_ID_LEN + 1];
    for (int i = 0; i < 20; i++) {
        harness_create(admin, "partner:k", "k", any_ability, 1, 0, NULL, 0, ids[i],
                       sizeof(ids[i]));
    }
    tokend_close(admin);
    harness_kill9(&p);
    REQUIRE(harness_start(&p));
    admin = harness_client(&p, p.admin);
    tokend_event_page all;
    REQUIRE(list_all(admin, (tokend_event_filter){.owner = "partner:k"}, &all) ==
            TOKEND_OK);
    CHECK_INT(all.n_events, 20);
    for (int i = 0; i < 20; i++) {
        CHECK(find(&all, "TOKEN_CREATED", ids[i]) != NULL);
    }
    uint64_t last = all.n_events > 0 ? all.events[all.n_events - 1].seq : 0;
    tokend_event_page_free(&all);
    /* The chain goes on from the head read back at open. */
    char id[TOKEN_ID_LEN + 1];
    harness_create(admin, "partner:k", "after", any_ability, 1, 0, NULL, 0, id,
                   sizeof(id));
    REQUIRE(list_all(admin, (tokend_event_filter){.token_id = id}, &all) == TOKEND_OK);
    REQUIRE(all.n_events == 1);
    CHECK_INT(all.events[0].seq, last + 1);
    tokend_event_page_free(&all);
    char *out = NULL;
    CHECK_INT(tokenctl_events(&p, p.admin, "--verify", NULL, &out, NULL), 0);
    CHECK(test_contains(out, "chain verified: 22 events, seq 1..22"));
    free(out);
    tokend_close(admin);
    harness_stop(&p);
}

typedef struct race_ctx {
    tokend_proc *p;
    char ids[32][TOKEN_ID_LEN + 1];
} race_ctx;

/* Even i creates, odd i revokes the token made before the race for it. */
static int race_write(void *arg, int i) {
    race_ctx *r = arg;
    tokend_client *c = harness_client(r->p, r->p->admin);
    /* 32 at once on a loaded machine: wait longer than the usual 3 s. */
    const tokend_call slow = {.timeout_ms = 30000};
    int rv;
    if (i % 2 == 0) {
        tokend_created created;
        tokend_create_params params = {.owner = "partner:r",
                                       .name = "race",
                                       .abilities = any_ability,
                                       .n_abilities = 1};
        rv = tokend_create(c, &slow, &params, &created, NULL);
        if (rv == TOKEND_OK) {
            tokend_created_free(&created);
        }
    } else {
        uint64_t n = 0;
        rv = tokend_revoke_id(c, &slow, r->ids[i], &n, NULL);
    }
    tokend_close(c);
    return rv;
}

TEST(audit_concurrent_writes_give_a_gap_free_chain_in_order) {
    tokend_proc p;
    harness_start_or_die(&p);
    race_ctx r = {.p = &p};
    tokend_client *admin = harness_client(&p, p.admin);
    for (int i = 1; i < 32; i += 2) {
        harness_create(admin, "partner:r", "pre", any_ability, 1, 0, NULL, 0, r.ids[i],
                       sizeof(r.ids[i]));
    }
    int status[32];
    harness_race(32, race_write, &r, status);
    for (int i = 0; i < 32; i++) {
        CHECK_INT(status[i], TOKEND_OK);
    }
    tokend_event_page all;
    REQUIRE(list_all(admin, (tokend_event_filter){0}, &all) == TOKEND_OK);
    CHECK_INT(all.n_events, 1 + 16 + 32);
    CHECK(gap_free(&all));
    size_t created = 0, revoked = 0;
    for (size_t i = 0; i < all.n_events; i++) {
        CHECK_INT(all.events[i].seq, i + 1);
        created += strcmp(all.events[i].kind, "TOKEN_CREATED") == 0;
        revoked += strcmp(all.events[i].kind, "TOKEN_REVOKED") == 0;
        if (i > 0) {
            /* Each links to the one before it. */
            CHECK(memcmp(all.events[i].prev_hash, all.events[i - 1].hash, 32) == 0);
        }
    }
    CHECK_INT(created, 1 + 16 + 16);
    CHECK_INT(revoked, 16);
    tokend_event_page_free(&all);
    char *out = NULL;
    CHECK_INT(tokenctl_events(&p, p.admin, "--verify", NULL, &out, NULL), 0);
    CHECK(test_contains(out, "chain verified: 49 events, seq 1..49"));
    free(out);
    tokend_close(admin);
    harness_stop(&p);
}

/* Reads event `seq` of the store in `dir` (tokend stopped), decoded. */
typedef struct one_event {
    uint64_t want;
    Tokend__V1__Event *e;
} one_event;

static int take_one(void *arg, uint64_t seq, const uint8_t *v, size_t len) {
    one_event *o = arg;
    if (seq == o->want) {
        o->e = tokend__v1__event__unpack(NULL, len, v);
        return 1;
    }
    return 0;
}

/* Rewrites event `seq`: its owner changed to `owner`; with `rehash`, its
 * hash recomputed so that the event itself checks out. */
static void tamper(const char *dir, uint64_t seq, const char *owner, bool rehash) {
    REQUIRE(crypto_init(NULL) == TOKEND_OK);
    store *st = NULL;
    REQUIRE(store_open(dir, NULL, &st, NULL) == TOKEND_OK);
    one_event o = {.want = seq};
    uint64_t last = 0;
    bool ended = false;
    REQUIRE(store_events_scan(st, 0, NULL, seq - 1, 1, take_one, &o, &last, &ended,
                              NULL) == TOKEND_OK);
    REQUIRE(o.e != NULL);
    char *kept_owner = o.e->owner;
    o.e->owner = (char *)owner;
    if (rehash) {
        ProtobufCBinaryData keep = o.e->hash;
        o.e->hash.len = 0;
        size_t len = tokend__v1__event__get_packed_size(o.e);
        uint8_t *buf = malloc(32 + len);
        memcpy(buf, o.e->prev_hash.data, 32);
        tokend__v1__event__pack(o.e, buf + 32);
        REQUIRE(crypto_sha256(buf, 32 + len, keep.data) == TOKEND_OK);
        free(buf);
        o.e->hash = keep;
    }
    size_t len = tokend__v1__event__get_packed_size(o.e);
    uint8_t *buf = malloc(len);
    tokend__v1__event__pack(o.e, buf);
    REQUIRE(store_event_raw_put(st, seq, buf, len, NULL) == TOKEND_OK);
    free(buf);
    o.e->owner = kept_owner;
    tokend__v1__event__free_unpacked(o.e, NULL);
    store_close(st);
}

TEST(audit_verify_names_the_first_broken_link_of_a_tampered_store) {
    tokend_proc p;
    harness_start_or_die(&p);
    tokend_client *admin = harness_client(&p, p.admin);
    for (int i = 0; i < 5; i++) {
        harness_create(admin, "partner:v", "v", any_ability, 1, 0, NULL, 0, NULL, 0);
    }
    tokend_close(admin);
    char *out = NULL;
    CHECK_INT(tokenctl_events(&p, p.admin, "--verify", NULL, &out, NULL), 0);
    CHECK(test_contains(out, "chain verified: 6 events, seq 1..6"));
    free(out);

    harness_stop(&p);
    tamper(p.data_dir, 3, "partner:evil", false);
    REQUIRE(harness_start(&p));
    CHECK_INT(tokenctl_events(&p, p.admin, "--verify", NULL, &out, NULL), 1);
    CHECK(test_contains(out, "seq 3: hash does not match"));
    free(out);

    /* Re-hashed so that seq 3 checks out alone: the link to 4 breaks. */
    harness_stop(&p);
    tamper(p.data_dir, 3, "partner:evil", true);
    REQUIRE(harness_start(&p));
    CHECK_INT(tokenctl_events(&p, p.admin, "--verify", NULL, &out, NULL), 1);
    CHECK(test_contains(out, "seq 4: prev_hash is not seq 3's hash"));
    free(out);

    /* An event taken out leaves a gap. */
    harness_stop(&p);
    store *st = NULL;
    REQUIRE(store_open(p.data_dir, NULL, &st, NULL) == TOKEND_OK);
    store_batch *b = store_batch_new();
    store_batch_delete_event(b, 2, "partner:v", NULL);
    REQUIRE(store_batch_commit(st, b, true, NULL) == TOKEND_OK);
    store_batch_free(b);
    store_close(st);
    REQUIRE(harness_start(&p));
    CHECK_INT(tokenctl_events(&p, p.admin, "--verify", NULL, &out, NULL), 1);
    CHECK(test_contains(out, "gap after seq 1"));
    free(out);
    harness_stop(&p);
}

TEST(audit_list_events_filters_and_rights) {
    tokend_proc p;
    harness_start_or_die(&p);
    tokend_client *admin = harness_client(&p, p.admin);
    char rtok[TOK], wtok[TOK], bid[TOKEN_ID_LEN + 1], aid2[TOKEN_ID_LEN + 1];
    harness_create(admin, "partner:a", "reader", read_ability, 1, 0, rtok, sizeof(rtok),
                   NULL, 0);
    harness_create(admin, "partner:a", "other", any_ability, 1, 0, NULL, 0, aid2,
                   sizeof(aid2));
    harness_create(admin, "partner:a", "no read", any_ability, 1, 0, wtok, sizeof(wtok),
                   NULL, 0);
    harness_create(admin, "partner:b", "b", any_ability, 1, 0, NULL, 0, bid, sizeof(bid));
    uint64_t n = 0;
    CHECK_INT(tokend_revoke_id(admin, NULL, aid2, &n, NULL), TOKEND_OK);

    tokend_client *reader = harness_client(&p, rtok);
    tokend_event_page all;
    REQUIRE(list_all(reader, (tokend_event_filter){0}, &all) == TOKEND_OK);
    CHECK_INT(all.n_events, 4); /* partner:a's three creates and one revoke */
    for (size_t i = 0; i < all.n_events; i++) {
        CHECK_STR(all.events[i].owner, "partner:a");
    }
    tokend_event_page_free(&all);
    REQUIRE(list_all(reader, (tokend_event_filter){.kind = "TOKEN_REVOKED"}, &all) ==
            TOKEND_OK);
    CHECK_INT(all.n_events, 1);
    tokend_event_page_free(&all);
    REQUIRE(list_all(reader, (tokend_event_filter){.token_id = aid2}, &all) == TOKEND_OK);
    CHECK_INT(all.n_events, 2);
    tokend_event_page_free(&all);
    /* Another owner's token id shows nothing to a non-admin. */
    REQUIRE(list_all(reader, (tokend_event_filter){.token_id = bid}, &all) == TOKEND_OK);
    CHECK_INT(all.n_events, 0);
    tokend_event_page_free(&all);
    tokend_error err;
    tokend_event_page page;
    CHECK_INT(tokend_list_events(reader, NULL,
                                 &(tokend_event_filter){.owner = "partner:b"}, &page,
                                 &err),
              TOKEND_PERMISSION_DENIED);
    CHECK_INT(tokend_list_events(reader, NULL, &(tokend_event_filter){.kind = "NOPE"},
                                 &page, &err),
              TOKEND_INVALID_ARGUMENT);
    CHECK_INT(tokend_list_events(reader, NULL, &(tokend_event_filter){.cursor = "zz"},
                                 &page, &err),
              TOKEND_INVALID_ARGUMENT);
    CHECK_INT(tokend_list_events(reader, NULL, &(tokend_event_filter){.page_size = 1001},
                                 &page, &err),
              TOKEND_INVALID_ARGUMENT);
    char longer[200];
    memset(longer, 'o', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    CHECK_INT(tokend_list_events(admin, NULL, &(tokend_event_filter){.owner = longer},
                                 &page, &err),
              TOKEND_INVALID_ARGUMENT);
    CHECK(test_contains(err.message, "owner"));
    CHECK_INT(tokend_list_events(admin, NULL, &(tokend_event_filter){.token_id = "../x"},
                                 &page, &err),
              TOKEND_INVALID_ARGUMENT);
    CHECK(test_contains(err.message, "token_id"));
    CHECK_INT(tokend_list_events(admin, NULL,
                                 &(tokend_event_filter){.owner = "bad\nowner"}, &page,
                                 &err),
              TOKEND_INVALID_ARGUMENT);
    tokend_close(reader);
    tokend_client *noread = harness_client(&p, wtok);
    CHECK_INT(tokend_list_events(noread, NULL, NULL, &page, &err),
              TOKEND_PERMISSION_DENIED);
    tokend_close(noread);

    /* The admin sees every owner, filters by owner, since and page. */
    REQUIRE(list_all(admin, (tokend_event_filter){.owner = "partner:b"}, &all) ==
            TOKEND_OK);
    CHECK_INT(all.n_events, 1);
    tokend_event_page_free(&all);
    REQUIRE(list_all(admin,
                     (tokend_event_filter){.since_unix_ms = harness_now_ms() + 60000},
                     &all) == TOKEND_OK);
    CHECK_INT(all.n_events, 0);
    tokend_event_page_free(&all);
    REQUIRE(tokend_list_events(admin, NULL, &(tokend_event_filter){.page_size = 2}, &page,
                               NULL) == TOKEND_OK);
    CHECK_INT(page.n_events, 2);
    CHECK(page.more);
    REQUIRE(page.next_cursor != NULL);
    char cursor[64];
    snprintf(cursor, sizeof(cursor), "%s", page.next_cursor);
    tokend_event_page_free(&page);
    REQUIRE(tokend_list_events(admin, NULL, &(tokend_event_filter){.cursor = cursor},
                               &page, NULL) == TOKEND_OK);
    CHECK(page.n_events >= 4);
    CHECK_INT(page.events[0].seq, 3);
    tokend_event_page_free(&page);
    /* The reader's PERMISSION_DENIED is itself in the log. */
    sleep_ms(200);
    REQUIRE(list_all(admin, (tokend_event_filter){.kind = "CALL_REFUSED"}, &all) ==
            TOKEND_OK);
    CHECK(find_refusal(&all, "ListEvents", "PERMISSION_DENIED") != NULL);
    tokend_event_page_free(&all);
    tokend_close(admin);
    harness_stop(&p);
}

/* Starts `tokenctl events --follow --json` with its stdout in `path`. */
static pid_t follow_start(const tokend_proc *p, const char *path) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    char err_path[420];
    snprintf(err_path, sizeof(err_path), "%s.err", path);
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC,
                                     0600);
    const char *argv[] = {harness_bin("tokenctl"),
                          "--url",
                          p->url,
                          "--credential",
                          p->admin,
                          "events",
                          "--follow",
                          "--json",
                          NULL};
    pid_t pid = 0;
    int rv = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    REQUIRE(rv == 0);
    return pid;
}

/* Waits up to `ms` for `needle` in the file at path. */
static bool file_gets(const char *path, const char *needle, int ms) {
    for (int waited = 0; waited <= ms; waited += 100) {
        char *text = harness_read_file(path);
        bool found = test_contains(text, needle);
        free(text);
        if (found) {
            return true;
        }
        sleep_ms(100);
    }
    return false;
}

TEST(audit_tokenctl_json_lines_parse_and_follow_sees_a_new_event) {
    tokend_proc p;
    harness_start_or_die(&p);
    tokend_client *admin = harness_client(&p, p.admin);
    harness_create(admin, "partner:j", "j", any_ability, 1, 0, NULL, 0, NULL, 0);
    char *out = NULL;
    CHECK_INT(tokenctl_events(&p, p.admin, "--json", NULL, &out, NULL), 0);
    REQUIRE(out != NULL);
    int lines = 0;
    for (char *line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        json_t *doc = json_loads(line, 0, NULL);
        CHECK(doc != NULL && json_is_object(doc));
        CHECK_INT(json_integer_value(json_object_get(doc, "seq")), lines + 1);
        CHECK(json_is_string(json_object_get(doc, "kind")));
        CHECK(json_is_object(json_object_get(doc, "detail")));
        CHECK_INT(strlen(json_string_value(json_object_get(doc, "hash"))), 64);
        json_decref(doc);
        lines++;
    }
    CHECK_INT(lines, 2);
    free(out);
    /* The table names the columns and the kinds. */
    CHECK_INT(tokenctl_events(&p, p.admin, "--kind", "TOKEN_CREATED", &out, NULL), 0);
    CHECK(test_contains(out, "SEQ"));
    CHECK(test_contains(out, "partner:j"));
    free(out);
    CHECK_INT(tokenctl_events(&p, p.admin, "--since", "bogus", NULL, NULL), 2);

    char path[400];
    snprintf(path, sizeof(path), "%s/follow.out", test_tmpdir());
    pid_t pid = follow_start(&p, path);
    CHECK(file_gets(path, "partner:j", 5000));
    char id[TOKEN_ID_LEN + 1];
    harness_create(admin, "partner:later", "later", any_ability, 1, 0, NULL, 0, id,
                   sizeof(id));
    CHECK(file_gets(path, id, 5000));
    /* It keeps following across a restart of tokend. */
    tokend_close(admin);
    harness_stop(&p);
    sleep_ms(1500);
    REQUIRE(harness_start(&p));
    admin = harness_client(&p, p.admin);
    harness_create(admin, "partner:restarted", "r", any_ability, 1, 0, NULL, 0, id,
                   sizeof(id));
    CHECK(file_gets(path, id, 8000));
    char err_path[420];
    snprintf(err_path, sizeof(err_path), "%s.err", path);
    CHECK(file_gets(err_path, "still following", 0));
    kill(pid, SIGINT);
    int ws = 0;
    REQUIRE(waitpid(pid, &ws, 0) == pid);
    CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    tokend_close(admin);
    harness_stop(&p);
}

TEST(audit_retention_deletes_old_events_and_verify_starts_at_the_oldest_kept) {
    tokend_proc p;
    harness_init(&p);
    setenv("TOKEND_EVENTS_RETENTION", "3s", 1);
    bool up = harness_start(&p);
    unsetenv("TOKEND_EVENTS_RETENTION");
    REQUIRE(up);
    tokend_client *admin = harness_client(&p, p.admin);
    for (int i = 0; i < 3; i++) {
        harness_create(admin, "partner:old", "old", any_ability, 1, 0, NULL, 0, NULL, 0);
    }
    sleep_ms(3500);
    char id[TOKEN_ID_LEN + 1];
    harness_create(admin, "partner:new", "new", any_ability, 1, 0, NULL, 0, id,
                   sizeof(id));
    tokend_event_page all = {0};
    bool cut = false;
    for (int waited = 0; waited < 8000 && !cut; waited += 200) {
        sleep_ms(200);
        REQUIRE(list_all(admin, (tokend_event_filter){0}, &all) == TOKEND_OK);
        cut = all.n_events > 0 && all.events[0].seq == 5;
        if (!cut) {
            tokend_event_page_free(&all);
        }
    }
    REQUIRE(cut);
    CHECK_INT(all.n_events, 1);
    CHECK_STR(all.events[0].token_id, id);
    tokend_event_page_free(&all);
    REQUIRE(list_all(admin, (tokend_event_filter){.owner = "partner:old"}, &all) ==
            TOKEND_OK);
    CHECK_INT(all.n_events, 0); /* the index went with them */
    tokend_event_page_free(&all);
    char *out = NULL;
    CHECK_INT(tokenctl_events(&p, p.admin, "--verify", NULL, &out, NULL), 0);
    CHECK(test_contains(out, "chain verified: 1 events, seq 5..5"));
    CHECK(test_contains(out, "prev_hash is taken as given"));
    free(out);
    /* The newest is never deleted: the chain goes on after a restart. */
    sleep_ms(3500);
    harness_stop(&p);
    REQUIRE(harness_start(&p));
    tokend_close(admin);
    admin = harness_client(&p, p.admin);
    harness_create(admin, "partner:new", "newer", any_ability, 1, 0, NULL, 0, id,
                   sizeof(id));
    REQUIRE(list_all(admin, (tokend_event_filter){.token_id = id}, &all) == TOKEND_OK);
    REQUIRE(all.n_events == 1);
    CHECK_INT(all.events[0].seq, 6);
    tokend_event_page_free(&all);
    tokend_close(admin);
    harness_stop(&p);
}

TEST(audit_events_retention_option_flag_and_bad_value) {
    tokend_proc p;
    harness_init(&p);
    p.extra[0] = "--events-retention";
    p.extra[1] = "0";
    p.extra[2] = NULL;
    REQUIRE(harness_start(&p));
    harness_stop(&p);
    const char *argv[] = {harness_bin("tokend"), "serve", "--data-dir", p.data_dir,
                          "--events-retention",  "5x",    NULL};
    char *err = NULL;
    CHECK_INT(harness_exec(argv, NULL, NULL, NULL, &err), 2);
    CHECK(test_contains(err, "events-retention"));
    free(err);
    const char *help[] = {harness_bin("tokend"), "serve", "--help", NULL};
    char *out = NULL;
    CHECK_INT(harness_exec(help, NULL, NULL, &out, NULL), 0);
    CHECK(test_contains(out, "--events-retention"));
    free(out);
}

TEST(audit_repeated_refusals_are_folded_and_counted) {
    tokend_proc p;
    harness_start_or_die(&p);
    tokend_client *nobody = harness_client(&p, "tkd_notatoken");
    tokend_token_page page;
    for (int i = 0; i < 5; i++) {
        CHECK_INT(tokend_list(nobody, NULL, "x", 1, NULL, &page, NULL),
                  TOKEND_UNAUTHENTICATED);
    }
    uint64_t n = 0;
    CHECK_INT(tokend_revoke_owner(nobody, NULL, "x", &n, NULL), TOKEND_UNAUTHENTICATED);
    tokend_close(nobody);
    /* Many client addresses, many keys: the overall rate holds. */
    int64_t start = harness_now_ms();
    for (int i = 0; i < 60; i++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "198.51.100.%d", i + 1);
        CHECK_INT(create_with_context(&p, "", "x", ip, NULL), TOKEND_UNAUTHENTICATED);
    }
    double elapsed_s = (double)(harness_now_ms() - start) / 1000.0;
    sleep_ms(300);
    tokend_client *admin = harness_client(&p, p.admin);
    tokend_event_page all;
    REQUIRE(list_all(admin, (tokend_event_filter){.kind = "CALL_REFUSED"}, &all) ==
            TOKEND_OK);
    size_t lists = 0, creates = 0;
    const tokend_event *revoke = NULL;
    for (size_t i = 0; i < all.n_events; i++) {
        const char *m = detail_of(&all.events[i], "method");
        lists += strcmp(m, "ListTokens") == 0;
        creates += strcmp(m, "CreateToken") == 0;
        if (strcmp(m, "Revoke") == 0) {
            revoke = &all.events[i];
        }
    }
    CHECK_INT(lists, 1);
    REQUIRE(revoke != NULL);
    CHECK_STR(detail_of(revoke, "unrecorded_before"), "4");
    CHECK(creates >= 10);
    CHECK((double)creates <= 20 + 10 * elapsed_s + 1);
    CHECK(creates < 60);
    tokend_event_page_free(&all);
    tokend_close(admin);
    harness_stop(&p);
}

TEST(audit_gateway_get_events) {
    tokend_proc p;
    harness_start_or_die(&p);
    tokend_client *admin = harness_client(&p, p.admin);
    char rtok[TOK], id[TOKEN_ID_LEN + 1];
    harness_create(admin, "partner:g", "reader", read_ability, 1, 0, rtok, sizeof(rtok),
                   id, sizeof(id));
    harness_create(admin, "partner:h", "h", any_ability, 1, 0, NULL, 0, NULL, 0);
    tokend_close(admin);
    gateway_proc g = {0};
    REQUIRE(harness_gateway_start(&g, p.url, 0));
    char url[256], auth[256], rauth[256];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", p.admin);
    snprintf(rauth, sizeof(rauth), "Authorization: Bearer %s", rtok);
    http_res r = {0};
    snprintf(url, sizeof(url), "%s/v1/events", g.base);
    CHECK_INT(CURL(&r, "-H", auth, url), 200);
    json_t *doc = json_loads(r.body, 0, NULL);
    REQUIRE(doc != NULL);
    json_t *list = json_object_get(doc, "events");
    CHECK_INT(json_array_size(list), 3);
    json_t *second = json_array_get(list, 1);
    CHECK_STR(json_string_value(json_object_get(second, "kind")), "TOKEN_CREATED");
    CHECK_STR(json_string_value(json_object_get(second, "token_id")), id);
    CHECK_STR(
        json_string_value(json_object_get(json_object_get(second, "detail"), "name")),
        "reader");
    CHECK(json_is_string(json_object_get(doc, "next_cursor")));
    CHECK(json_is_false(json_object_get(doc, "more")));
    json_decref(doc);

    snprintf(url, sizeof(url), "%s/v1/events?kind=TOKEN_CREATED&limit=1", g.base);
    CHECK_INT(CURL(&r, "-H", auth, url), 200);
    doc = json_loads(r.body, 0, NULL);
    REQUIRE(doc != NULL);
    CHECK_INT(json_array_size(json_object_get(doc, "events")), 1);
    CHECK(json_is_true(json_object_get(doc, "more")));
    json_decref(doc);

    /* A partner sees its own owner's events; another owner is 403. */
    snprintf(url, sizeof(url), "%s/v1/events", g.base);
    CHECK_INT(CURL(&r, "-H", rauth, url), 200);
    doc = json_loads(r.body, 0, NULL);
    REQUIRE(doc != NULL);
    CHECK_INT(json_array_size(json_object_get(doc, "events")), 1);
    json_decref(doc);
    snprintf(url, sizeof(url), "%s/v1/events?owner=partner:h", g.base);
    CHECK_INT(CURL(&r, "-H", rauth, url), 403);
    snprintf(url, sizeof(url), "%s/v1/events?kind=BOGUS", g.base);
    CHECK_INT(CURL(&r, "-H", auth, url), 400);
    snprintf(url, sizeof(url), "%s/v1/events?since=-1", g.base);
    CHECK_INT(CURL(&r, "-H", auth, url), 400);
    snprintf(url, sizeof(url), "%s/v1/events?bogus=1", g.base);
    CHECK_INT(CURL(&r, "-H", auth, url), 400);
    snprintf(url, sizeof(url), "%s/v1/events", g.base);
    CHECK_INT(CURL(&r, url), 401);
    res_free(&r);
    harness_gateway_stop(&g);
    harness_stop(&p);
}

/* The head moves only with a commit: a failed batch's events leave it
 * where it was, and the next event takes the seq the failed one had;
 * several events of one batch chain one after another. */
TEST(audit_failed_commit_leaves_the_head_where_it_was) {
    REQUIRE(crypto_init(NULL) == TOKEND_OK);
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/store", test_tmpdir());
    store_options so = {.create_if_missing = true};
    store *st = NULL;
    REQUIRE(store_open(dir, &so, &st, NULL) == TOKEND_OK);
    store_batch *b = store_batch_new();
    events_what what = {.kind = TOKEND__V1__EVENT_KIND__TOKEN_REVOKED, .owner = "o"};
    REQUIRE(events_put(st, b, 1000, &what, NULL) == TOKEND_OK);
    REQUIRE(events_put(st, b, 1001, &what, NULL) == TOKEND_OK);
    uint64_t seq = 0;
    uint8_t hash[STORE_EVENT_HASH_LEN], committed[STORE_EVENT_HASH_LEN];
    store_batch_event_head(st, b, &seq, hash);
    CHECK_INT(seq, 2); /* through the batch */
    CHECK_INT(store_event_last_seq(st), 0);
    REQUIRE(store_batch_commit(st, b, true, NULL) == TOKEND_OK);
    CHECK_INT(store_event_last_seq(st), 2);
    store_batch_event_head(st, NULL, &seq, committed);
    CHECK(memcmp(hash, committed, sizeof(hash)) == 0);

    /* A batch that fails applies nothing and moves nothing. */
    REQUIRE(events_put(st, b, 1002, &what, NULL) == TOKEND_OK);
    store_batch_fail(b, TOKEND_INTERNAL, "test");
    CHECK_INT(store_batch_commit(st, b, true, NULL), TOKEND_INTERNAL);
    CHECK_INT(store_event_last_seq(st), 2);
    store_batch_event_head(st, b, &seq, hash);
    CHECK_INT(seq, 2);
    CHECK(memcmp(hash, committed, sizeof(hash)) == 0);
    REQUIRE(events_put(st, b, 1003, &what, NULL) == TOKEND_OK);
    REQUIRE(store_batch_commit(st, b, true, NULL) == TOKEND_OK);
    CHECK_INT(store_event_last_seq(st), 3);
    /* An event out of order is refused and adds nothing. */
    CHECK_INT(
        store_batch_put_event(st, b, 9, (const uint8_t *)"x", 1, hash, NULL, NULL, NULL),
        TOKEND_INTERNAL);
    CHECK_INT(store_batch_count(b), 0);
    store_batch_free(b);
    store_close(st);

    /* The head is read back at open. */
    REQUIRE(store_open(dir, NULL, &st, NULL) == TOKEND_OK);
    CHECK_INT(store_event_last_seq(st), 3);
    store_close(st);
}

/* What an alert module hands over: queued through the writer, in order,
 * with its context and detail; anything but an alert kind is refused. */
TEST(audit_alerts_are_written_through_the_writer_in_order) {
    REQUIRE(crypto_init(NULL) == TOKEND_OK);
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/store", test_tmpdir());
    store_options so = {.create_if_missing = true};
    store *st = NULL;
    REQUIRE(store_open(dir, &so, &st, NULL) == TOKEND_OK);
    writer *w = NULL;
    REQUIRE(writer_start(st, NULL, NULL, 1000, &w) == TOKEND_OK);
    events *ev = events_new(st, w, 0);
    REQUIRE(ev != NULL);
    Tokend__V1__RequestContext ctx = TOKEND__V1__REQUEST_CONTEXT__INIT;
    ctx.client_ip = "2001:db8::1";
    ctx.path = "/orders/1?token=tkd_secret";
    events_field detail[] = {{"network", "2001:db8::/64"}};
    for (int i = 0; i < 20; i++) {
        CHECK_INT(events_append_alert(ev, TOKEND__V1__EVENT_KIND__ALERT_NEW_NETWORK,
                                      "AAAAAAAAAAAAAAAA", "partner:x", &ctx, detail, 1),
                  TOKEND_OK);
    }
    CHECK_INT(events_append_alert(ev, TOKEND__V1__EVENT_KIND__TOKEN_CREATED, NULL, NULL,
                                  NULL, NULL, 0),
              TOKEND_INVALID_ARGUMENT);
    CHECK_INT(events_append_alert(ev, TOKEND__V1__EVENT_KIND__ALERT_DENIAL_BURST, NULL,
                                  NULL, NULL, detail, EVENTS_DETAIL_MAX + 1),
              TOKEND_INVALID_ARGUMENT);
    events_field bad[] = {{"denials", "3\x01"}};
    CHECK_INT(events_append_alert(ev, TOKEND__V1__EVENT_KIND__ALERT_DENIAL_BURST, NULL,
                                  NULL, NULL, bad, 1),
              TOKEND_INVALID_ARGUMENT);
    CHECK_INT(events_append_alert(ev, TOKEND__V1__EVENT_KIND__ALERT_DENIAL_BURST, NULL,
                                  "\xff", NULL, NULL, 0),
              TOKEND_INVALID_ARGUMENT);
    events_stop(ev);
    writer_stop(w); /* writes what is queued */
    events_free(ev);
    events_query q = {.kind = TOKEND__V1__EVENT_KIND__ALERT_NEW_NETWORK,
                      .page_size = 100};
    Tokend__V1__Event **page = NULL;
    size_t n = 0;
    char next[EVENTS_CURSOR_LEN + 1];
    bool more = true;
    REQUIRE(events_list(st, &q, &page, &n, next, &more, NULL) == TOKEND_OK);
    CHECK_INT(n, 20);
    CHECK(!more);
    CHECK_STR(next, "0000000000000014");
    for (size_t i = 0; i < n; i++) {
        CHECK_INT(page[i]->seq, i + 1);
        CHECK_STR(page[i]->owner, "partner:x");
        CHECK_STR(page[i]->token_id, "AAAAAAAAAAAAAAAA");
        REQUIRE(page[i]->context != NULL);
        CHECK_STR(page[i]->context->client_ip, "2001:db8::1");
        CHECK_STR(page[i]->context->path, "/orders/1"); /* never the query */
        REQUIRE(page[i]->n_detail == 1);
        CHECK_STR(page[i]->detail[0]->value, "2001:db8::/64");
    }
    events_page_free(page, n);
    store_close(st);
}
