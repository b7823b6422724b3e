/*
 * test_limits.c — what one owner may cost the service, against the real
 * tokend (through libtokend and a raw REQ socket) and tokend-gateway:
 * ListTokens pages bounded in bytes as well as in count, the per-owner
 * token limit (--max-tokens-per-owner: RESOURCE_EXHAUSTED, 429 at the
 * gateway, exact under concurrent creates and across a restart), and the
 * bound on one token's text (TOKEN_TEXT_MAX).
 *
 * Before these, 700 tokens of 64 abilities and 16 KiB of metadata made one
 * page of `GET /v1/tokens?limit=1000` larger than a client's 16 MiB
 * receive limit: the gateway lost its connection to tokend, and every
 * partner's calls through it with it.
 */
#include <stdlib.h>
#include <string.h>

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
/* The bound tokend.proto gives a ListTokens reply. */
#define PAGE_BYTES_MAX MIB

/* A token's fields, made to a given size of text (owner, name, abilities,
 * metadata keys and values together), with 31 abilities of 128 bytes and
 * as many metadata entries of 1 KiB as that takes. */
typedef struct big_token {
    char name[TOKEN_NAME_MAX + 1];
    char ability[31][TOKEN_ABILITY_MAX + 1];
    const char *abilities[31];
    char key[TOKEN_METADATA_MAX][TOKEN_META_KEY_MAX + 1];
    char value[TOKEN_METADATA_MAX][TOKEN_META_VALUE_MAX + 1];
    tokend_kv metadata[TOKEN_METADATA_MAX];
    tokend_create_params params;
} big_token;

static void big_token_make(big_token *b, const char *owner, int index, size_t text) {
    memset(b, 0, sizeof(*b));
    size_t total = strlen(owner);
    snprintf(b->name, sizeof(b->name), "big %d ", index);
    memset(b->name + strlen(b->name), 'n', 200 - strlen(b->name));
    total += strlen(b->name);
    for (int i = 0; i < 31; i++) {
        snprintf(b->ability[i], sizeof(b->ability[i]), "a%02d:", i);
        memset(b->ability[i] + 4, 'x', TOKEN_ABILITY_MAX - 4);
        b->abilities[i] = b->ability[i];
        total += TOKEN_ABILITY_MAX;
    }
    size_t n = 0;
    while (total < text && n < TOKEN_METADATA_MAX) {
        snprintf(b->key[n], sizeof(b->key[n]), "k%02zu", n);
        memset(b->key[n] + 3, 'k', TOKEN_META_KEY_MAX - 3);
        total += TOKEN_META_KEY_MAX;
        size_t len =
            text - total < TOKEN_META_VALUE_MAX ? text - total : TOKEN_META_VALUE_MAX;
        memset(b->value[n], 'v', len);
        total += len;
        b->metadata[n] = (tokend_kv){b->key[n], b->value[n]};
        n++;
    }
    REQUIRE(total == text);
    b->params = (tokend_create_params){.owner = owner,
                                       .name = b->name,
                                       .abilities = b->abilities,
                                       .n_abilities = 31,
                                       .metadata = b->metadata,
                                       .n_metadata = n};
}

/* The same token as a create body for the gateway (all of it ASCII, so no
 * escapes); malloc'd. */
static char *big_token_json(const big_token *b) {
    json_t *abilities = json_array(), *metadata = json_object();
    for (size_t i = 0; i < b->params.n_abilities; i++) {
        json_array_append_new(abilities, json_string(b->abilities[i]));
    }
    for (size_t i = 0; i < b->params.n_metadata; i++) {
        json_object_set_new(metadata, b->key[i], json_string(b->value[i]));
    }
    json_t *doc =
        json_pack("{s:s, s:s, s:o, s:o}", "name", b->name, "owner", b->params.owner,
                  "abilities", abilities, "metadata", metadata);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    REQUIRE(text != NULL);
    return text;
}

/* One ListTokens over a raw REQ socket, to see the size of the reply
 * itself: *reply_len gets it; the page is returned (NULL if the call did
 * not answer OK). Free it with
 * tokend__v1__list_tokens_response__free_unpacked. */
static Tokend__V1__ListTokensResponse *raw_list(const char *url, const char *credential,
                                                const char *owner, const char *cursor,
                                                size_t *reply_len) {
    Tokend__V1__ListTokensRequest lr = TOKEND__V1__LIST_TOKENS_REQUEST__INIT;
    lr.owner = (char *)owner;
    lr.page_size = 1000;
    lr.cursor = (char *)(cursor != NULL ? cursor : "");
    Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
    req.method = "ListTokens";
    req.request_id = 1;
    req.credential = (char *)credential;
    REQUIRE(rpc_pack(&lr.base, &req.payload.data, &req.payload.len) == TOKEND_OK);
    uint8_t *msg = NULL;
    size_t len = 0;
    REQUIRE(rpc_pack(&req.base, &msg, &len) == TOKEND_OK);
    free(req.payload.data);

    nng_socket s;
    REQUIRE(nng_req0_open(&s) == 0);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 10000);
    nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 0); /* see whatever comes */
    REQUIRE(nng_dial(s, url, NULL, 0) == 0);
    REQUIRE(nng_send(s, msg, len, 0) == 0);
    free(msg);
    void *buf = NULL;
    size_t blen = 0;
    int rv = nng_recv(s, &buf, &blen, NNG_FLAG_ALLOC);
    nng_close(s);
    REQUIRE(rv == 0);
    *reply_len = blen;
    Tokend__V1__Reply *reply = tokend__v1__reply__unpack(NULL, blen, buf);
    nng_free(buf, blen);
    REQUIRE(reply != NULL);
    Tokend__V1__ListTokensResponse *page = NULL;
    if (reply->status == TOKEND__V1__STATUS__OK) {
        page = tokend__v1__list_tokens_response__unpack(NULL, reply->payload.len,
                                                        reply->payload.data);
    } else {
        test_fail(__FILE__, __LINE__, "ListTokens: status %d: %s", reply->status,
                  reply->message);
    }
    tokend__v1__reply__free_unpacked(reply, NULL);
    return page;
}

/* The "code" of r's problem body, into buf ("" if none). */
static const char *problem_code(const http_res *r, char *buf, size_t size) {
    json_t *doc = json_loads(r->body != NULL ? r->body : "", 0, NULL);
    const char *code = json_string_value(json_object_get(doc, "code"));
    snprintf(buf, size, "%s", code != NULL ? code : "");
    json_decref(doc);
    return buf;
}

/* tokend (with `flags`, NULL-terminated, or none) on a fresh store, a
 * gateway in front of it, and a client of its admin. */
static tokend_client *limits_start(tokend_proc *p, gateway_proc *g,
                                   const char *const *flags) {
    memset(p, 0, sizeof(*p));
    memset(g, 0, sizeof(*g));
    harness_init(p);
    for (size_t i = 0; flags != NULL && flags[i] != NULL && i < 15; i++) {
        p->extra[i] = flags[i];
    }
    REQUIRE(harness_start(p));
    REQUIRE(harness_gateway_start(g, p->url, 0));
    return harness_client(p, p->admin);
}

#define N_BIG 150
#define BIG_OWNER "big:one"

/* 150 tokens of about 16 KiB each (2.4 MB): every page answers, over raw
 * RPC within 1 MiB, and following next_cursor walks all 150 in creation
 * order, raw, through libtokend and through the gateway; a partner's
 * /v1/auth through the same gateway still answers after. */
TEST(limits_list_pages_are_byte_bounded_and_walk_every_token) {
    tokend_proc p;
    gateway_proc g;
    tokend_client *admin = limits_start(&p, &g, NULL);
    static char ids[N_BIG][TOK];
    static big_token b;
    for (int i = 0; i < N_BIG; i++) {
        big_token_make(&b, BIG_OWNER, i, 16000);
        tokend_created created;
        tokend_error err;
        REQUIRE(tokend_create(admin, NULL, &b.params, &created, &err) == TOKEND_OK);
        snprintf(ids[i], TOK, "%s", created.info.id);
        tokend_created_free(&created);
    }
    static const char *const bystander_abilities[] = {"orders:read"};
    char bystander[TOK];
    harness_create(admin, "partner:other", "bystander", bystander_abilities, 1, 0,
                   bystander, TOK, NULL, 0);

    /* Raw: the reply's own bytes. */
    char *cursor = NULL;
    int seen = 0, pages = 0;
    size_t largest = 0;
    do {
        size_t reply_len = 0;
        Tokend__V1__ListTokensResponse *page =
            raw_list(p.url, p.admin, BIG_OWNER, cursor, &reply_len);
        REQUIRE(page != NULL);
        largest = reply_len > largest ? reply_len : largest;
        if (reply_len > PAGE_BYTES_MAX) {
            test_fail(__FILE__, __LINE__, "page %d: the reply is %zu bytes, over %d",
                      pages, reply_len, PAGE_BYTES_MAX);
        }
        CHECK(page->n_tokens > 0);
        for (size_t i = 0; i < page->n_tokens && seen < N_BIG; i++, seen++) {
            CHECK_STR(page->tokens[i]->id, ids[seen]);
        }
        free(cursor);
        cursor = page->next_cursor[0] != '\0' ? strdup(page->next_cursor) : NULL;
        tokend__v1__list_tokens_response__free_unpacked(page, NULL);
        pages++;
    } while (cursor != NULL && pages < 50);
    CHECK_INT(seen, N_BIG);
    CHECK(pages >= 3);                   /* 2.4 MB of tokens */
    CHECK(largest > PAGE_BYTES_MAX / 2); /* pages are full, not tiny */

    /* libtokend, asking for 1000 a page. */
    seen = 0;
    pages = 0;
    do {
        tokend_token_page page;
        REQUIRE(tokend_list(admin, NULL, BIG_OWNER, 1000, cursor, &page, NULL) ==
                TOKEND_OK);
        CHECK(page.n_tokens > 0 && page.n_tokens < N_BIG);
        for (size_t i = 0; i < page.n_tokens && seen < N_BIG; i++, seen++) {
            CHECK_STR(page.tokens[i].id, ids[seen]);
            CHECK_INT(page.tokens[i].n_abilities, 31);
        }
        free(cursor);
        cursor = page.next_cursor != NULL ? strdup(page.next_cursor) : NULL;
        tokend_token_page_free(&page);
        pages++;
    } while (cursor != NULL && pages < 50);
    CHECK_INT(seen, N_BIG);

    /* The gateway: GET /v1/tokens?limit=1000, page after page. */
    char auth[TOK + 32], url[1024];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", p.admin);
    seen = 0;
    pages = 0;
    http_res r = {0};
    do {
        snprintf(url, sizeof(url), "%s/v1/tokens?owner=" BIG_OWNER "&limit=1000%s%s",
                 g.base, cursor != NULL ? "&cursor=" : "", cursor != NULL ? cursor : "");
        CHECK_INT(CURL(&r, "-H", auth, url), 200);
        CHECK(r.body != NULL && strlen(r.body) < 2 * MIB);
        json_t *doc = json_loads(r.body != NULL ? r.body : "", 0, NULL);
        json_t *tokens = json_object_get(doc, "tokens");
        CHECK(json_array_size(tokens) > 0);
        for (size_t i = 0; i < json_array_size(tokens) && seen < N_BIG; i++, seen++) {
            const char *id =
                json_string_value(json_object_get(json_array_get(tokens, i), "id"));
            CHECK_STR(id, ids[seen]);
        }
        const char *next = json_string_value(json_object_get(doc, "next_cursor"));
        free(cursor);
        cursor = next != NULL ? strdup(next) : NULL;
        json_decref(doc);
        pages++;
    } while (cursor != NULL && pages < 50);
    CHECK_INT(seen, N_BIG);

    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", bystander);
    snprintf(url, sizeof(url), "%s/v1/auth?ability=orders:read", g.base);
    CHECK_INT(CURL(&r, "-H", auth, url), 200);
    res_free(&r);
    char *log = harness_read_file(g.log_path);
    CHECK(log != NULL && !test_contains(log, "status=503"));
    free(log);
    tokend_close(admin);
    CHECK_INT(harness_gateway_stop(&g), 0);
    CHECK_INT(harness_stop(&p), 0);
}

static int create_one(tokend_client *c, const char *owner, tokend_error *err) {
    static const char *const abilities[] = {"orders:read"};
    tokend_create_params params = {
        .owner = owner, .name = "one", .abilities = abilities, .n_abilities = 1};
    tokend_created created;
    int rv = tokend_create(c, NULL, &params, &created, err);
    if (rv == TOKEND_OK) {
        tokend_created_free(&created);
    }
    return rv;
}

/* What harness_race runs: one create of `owner`. */
typedef struct create_race {
    tokend_client *c;
    const char *owner;
} create_race;

static int create_once(void *arg, int i) {
    (void)i;
    const create_race *r = arg;
    return create_one(r->c, r->owner, NULL);
}

/* How many of `n` (at most 16) simultaneous creates of `owner` succeed;
 * the others must all be RESOURCE_EXHAUSTED. */
static int burst_creates(tokend_client *c, const char *owner, int n) {
    create_race r = {.c = c, .owner = owner};
    int status[16];
    REQUIRE(n <= 16);
    harness_race(n, create_once, &r, status);
    int ok = 0;
    for (int i = 0; i < n; i++) {
        ok += status[i] == TOKEND_OK;
        CHECK(status[i] == TOKEND_OK || status[i] == TOKEND_RESOURCE_EXHAUSTED);
    }
    return ok;
}

/* --max-tokens-per-owner 5: the partner P (orders:*, tokens:write,
 * tokens:read) is its owner's first token; four more, then the sixth is
 * RESOURCE_EXHAUSTED over RPC and 429 through the gateway, for the admin
 * too; another owner is not affected; a revoke makes room for one. Twelve
 * creates at once for a new owner: exactly five succeed. After a restart
 * (counted again from the store) the limit holds, and the limit set
 * through TOKEND_MAX_TOKENS_PER_OWNER applies. A bad value is refused. */
TEST(limits_tokens_per_owner) {
    tokend_proc p;
    gateway_proc g;
    static const char *const flags[] = {"--max-tokens-per-owner", "5", NULL};
    tokend_client *admin = limits_start(&p, &g, flags);
    static const char *const partner_abilities[] = {"orders:*", "tokens:write",
                                                    "tokens:read"};
    char partner[TOK];
    harness_create(admin, "partner:acme", "P", partner_abilities, 3, 0, partner, TOK,
                   NULL, 0);
    tokend_client *as_p = harness_client(&p, partner);
    for (int i = 0; i < 4; i++) {
        CHECK_INT(create_one(as_p, NULL, NULL), TOKEND_OK);
    }
    harness_create(admin, "partner:other", "o", partner_abilities, 1, 0, NULL, 0, NULL,
                   0);
    tokend_error err = {0};
    CHECK_INT(create_one(as_p, NULL, &err), TOKEND_RESOURCE_EXHAUSTED);
    CHECK(strncmp(err.message, RPC_OWNER_LIMIT_MESSAGE ": partner:acme has 5 tokens",
                  strlen(RPC_OWNER_LIMIT_MESSAGE ": partner:acme has 5 tokens")) == 0);
    CHECK_INT(create_one(admin, "partner:acme", NULL), TOKEND_RESOURCE_EXHAUSTED);

    char auth[TOK + 32], url[256], code[64];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", partner);
    snprintf(url, sizeof(url), "%s/v1/tokens", g.base);
    http_res r = {0};
    CHECK_INT(CURL(&r, "-X", "POST", "-H", auth, "-H", "Content-Type: application/json",
                   "--data", "{\"name\":\"sixth\",\"abilities\":[\"orders:read\"]}", url),
              429);
    CHECK_STR(problem_code(&r, code, sizeof(code)), "RESOURCE_EXHAUSTED");
    CHECK(test_contains(r.body, RPC_OWNER_LIMIT_MESSAGE));
    res_free(&r);

    /* Revoking one makes room for exactly one. */
    tokend_token_page page;
    REQUIRE(tokend_list(admin, NULL, "partner:acme", 0, NULL, &page, NULL) == TOKEND_OK);
    CHECK_INT(page.n_tokens, 5);
    REQUIRE(page.n_tokens == 5);
    CHECK_INT(tokend_revoke_id(admin, NULL, page.tokens[4].id, NULL, NULL), TOKEND_OK);
    tokend_token_page_free(&page);
    CHECK_INT(create_one(as_p, NULL, NULL), TOKEND_OK);
    CHECK_INT(create_one(as_p, NULL, NULL), TOKEND_RESOURCE_EXHAUSTED);

    /* Exact under concurrency: the writer counts in its own order. */
    CHECK_INT(burst_creates(admin, "partner:burst", 12), 5);
    CHECK_INT(burst_creates(admin, "partner:burst", 4), 0);
    REQUIRE(tokend_list(admin, NULL, "partner:burst", 0, NULL, &page, NULL) == TOKEND_OK);
    CHECK_INT(page.n_tokens, 5);
    tokend_token_page_free(&page);
    tokend_close(as_p);
    tokend_close(admin);
    CHECK_INT(harness_gateway_stop(&g), 0);
    CHECK_INT(harness_stop(&p), 0);

    /* Restarted with the limit from the environment: 2. */
    p.extra[0] = NULL;
    setenv("TOKEND_MAX_TOKENS_PER_OWNER", "2", 1);
    REQUIRE(harness_start(&p));
    unsetenv("TOKEND_MAX_TOKENS_PER_OWNER");
    admin = harness_client(&p, p.admin);
    CHECK_INT(create_one(admin, "partner:acme", &err), TOKEND_RESOURCE_EXHAUSTED);
    CHECK(test_contains(err.message, "partner:acme has 5 tokens"));
    CHECK_INT(create_one(admin, "partner:fresh", NULL), TOKEND_OK);
    CHECK_INT(create_one(admin, "partner:fresh", NULL), TOKEND_OK);
    CHECK_INT(create_one(admin, "partner:fresh", &err), TOKEND_RESOURCE_EXHAUSTED);
    CHECK(test_contains(err.message, "partner:fresh has 2 tokens"));
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);

    char *out = NULL, *errs = NULL;
    const char *bad[] = {harness_bin("tokend"),    "serve", "--data-dir", p.data_dir,
                         "--max-tokens-per-owner", "0",     NULL};
    CHECK_INT(harness_exec(bad, NULL, NULL, &out, &errs), 2);
    CHECK(test_contains(errs, "--max-tokens-per-owner must be a whole number from 1 to "
                              "100000000, not \"0\""));
    free(out);
    free(errs);
}

/* A token's text together is at most TOKEN_TEXT_MAX bytes: exactly that
 * is created, one byte more is INVALID_ARGUMENT over RPC and 400 through
 * the gateway, and nothing is created. */
TEST(limits_token_text_is_bounded) {
    tokend_proc p;
    gateway_proc g;
    tokend_client *admin = limits_start(&p, &g, NULL);
    static big_token b;
    big_token_make(&b, "partner:size", 0, TOKEN_TEXT_MAX);
    tokend_created created;
    tokend_error err = {0};
    int rv = tokend_create(admin, NULL, &b.params, &created, &err);
    CHECK_INT(rv, TOKEND_OK);
    if (rv == TOKEND_OK) {
        tokend_created_free(&created);
    }
    big_token_make(&b, "partner:size", 1, TOKEN_TEXT_MAX + 1);
    CHECK_INT(tokend_create(admin, NULL, &b.params, &created, &err),
              TOKEND_INVALID_ARGUMENT);
    CHECK(test_contains(err.message, "owner, name, abilities and metadata are 16385 "
                                     "bytes together; at most 16384 are allowed"));

    char *body = big_token_json(&b);
    char auth[TOK + 32], url[256], code[64];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", p.admin);
    snprintf(url, sizeof(url), "%s/v1/tokens", g.base);
    http_res r = {0};
    CHECK_INT(CURL(&r, "-X", "POST", "-H", auth, "-H", "Content-Type: application/json",
                   "--data", body, url),
              400);
    CHECK_STR(problem_code(&r, code, sizeof(code)), "INVALID_ARGUMENT");
    CHECK(test_contains(r.body, "16385 bytes together"));
    res_free(&r);
    free(body);

    tokend_token_page page;
    REQUIRE(tokend_list(admin, NULL, "partner:size", 0, NULL, &page, NULL) == TOKEND_OK);
    CHECK_INT(page.n_tokens, 1);
    tokend_token_page_free(&page);
    tokend_close(admin);
    CHECK_INT(harness_gateway_stop(&g), 0);
    CHECK_INT(harness_stop(&p), 0);
}
