/*
 * test_service.c — integration tests: the real tokend on a temporary
 * ipc:// socket, driven through libtokend as an internal service would,
 * and through raw NNG for bytes no honest client sends.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "harness.h"
#include "rpc.h"
#include "test.h"
#include "token.h"

#define TOK 128

static const char *const orders_read[] = {"orders:read"};

static int verify(tokend_client *c, const char *token, const char *ability) {
    const char *abilities[] = {ability};
    return tokend_verify(c, NULL, token, abilities, ability ? 1 : 0, TOKEND_ABILITIES_ALL,
                         NULL, NULL);
}

TEST(service_create_verify_revoke_flow) {
    tokend_proc p;
    harness_start_or_die(&p);
    tokend_client *admin = harness_client(&p, p.admin);
    tokend_client *anon = harness_client(&p, NULL);

    const char *abilities[] = {"orders:read", "invoices:*"};
    tokend_create_params params = {.owner = "partner:acme",
                                   .name = "ERP nightly sync",
                                   .abilities = abilities,
                                   .n_abilities = 2};
    tokend_created created;
    tokend_error err;
    REQUIRE(tokend_create(admin, NULL, &params, &created, &err) == TOKEND_OK);
    CHECK(strncmp(created.token, "tkd_", 4) == 0);
    CHECK(token_well_formed(created.token, strlen(created.token)));
    CHECK_INT(strlen(created.info.id), TOKEN_ID_LEN);
    CHECK_STR(created.info.owner, "partner:acme");
    CHECK_STR(created.info.name, "ERP nightly sync");
    CHECK_INT(created.info.expires_unix_ms, 0);
    CHECK(created.info.created_unix_ms > 0);

    tokend_verdict v;
    const char *want[] = {"orders:read", "invoices:pdf"};
    CHECK_INT(
        tokend_verify(anon, NULL, created.token, want, 2, TOKEND_ABILITIES_ALL, &v, &err),
        TOKEND_OK);
    CHECK_INT(v.reason, TOKEND_OK);
    CHECK(v.has_info);
    CHECK_STR(v.info.id, created.info.id);
    CHECK_STR(v.info.owner, "partner:acme");
    CHECK_INT(v.info.n_abilities, 2);
    tokend_verdict_free(&v);

    CHECK_INT(verify(anon, created.token, "orders:write"), TOKEND_INSUFFICIENT_ABILITY);
    const char *some[] = {"orders:write", "orders:read"};
    CHECK_INT(tokend_verify(anon, NULL, created.token, some, 2, TOKEND_ABILITIES_ANY,
                            NULL, NULL),
              TOKEND_OK);
    CHECK_INT(tokend_verify(anon, NULL, created.token, some, 2, TOKEND_ABILITIES_ALL,
                            NULL, NULL),
              TOKEND_INSUFFICIENT_ABILITY);

    uint64_t revoked = 0;
    CHECK_INT(tokend_revoke_id(admin, NULL, created.info.id, &revoked, &err), TOKEND_OK);
    CHECK_INT(revoked, 1);
    /* No window: the very next verify fails. */
    CHECK_INT(verify(anon, created.token, NULL), TOKEND_NOT_FOUND);
    CHECK_INT(tokend_revoke_id(admin, NULL, created.info.id, &revoked, &err),
              TOKEND_NOT_FOUND);
    tokend_created_free(&created);
    tokend_close(admin);
    tokend_close(anon);
    CHECK_INT(harness_stop(&p), 0);
}

TEST(service_checksum_change_is_malformed_unknown_is_not_found) {
    tokend_proc p;
    harness_start_or_die(&p);
    tokend_client *admin = harness_client(&p, p.admin);
    char token[TOK];
    harness_create(admin, "user:1", "laptop", orders_read, 1, 0, token, sizeof(token),
                   NULL, 0);
    size_t len = strlen(token);
    for (size_t i = 0; i < len; i += 5) {
        char bad[TOK];
        memcpy(bad, token, len + 1);
        bad[i] = bad[i] == 'a' ? 'b' : 'a';
        CHECK_INT(verify(admin, bad, NULL), TOKEND_MALFORMED);
    }
    /* A well-formed token (valid checksum) that was never issued. */
    uint8_t random[TOKEN_RANDOM_BYTES];
    memset(random, 7, sizeof(random));
    char unknown[TOKEN_MAX_LEN + 1];
    REQUIRE(token_generate("tkd_", random, sizeof(random), unknown) > 0);
    CHECK_INT(verify(admin, unknown, NULL), TOKEND_NOT_FOUND);
    CHECK_INT(verify(admin, "", NULL), TOKEND_MALFORMED);
    CHECK_INT(verify(admin, "Bearer xyz", NULL), TOKEND_MALFORMED);
    CHECK_INT(verify(admin, token, NULL), TOKEND_OK);
    tokend_close(admin);
    harness_stop(&p);
}

TEST(service_revoke_all_of_an_owner) {
    tokend_proc p;
    harness_start_or_die(&p);
    tokend_client *admin = harness_client(&p, p.admin);
    char a[3][TOK], b[TOK];
    for (int i = 0; i < 3; i++) {
        harness_create(admin, "partner:a", "t", orders_read, 1, 0, a[i], TOK, NULL, 0);
    }
    harness_create(admin, "partner:ab", "t", orders_read, 1, 0, b, TOK, NULL, 0);
    uint64_t revoked = 0;
    tokend_error err;
    CHECK_INT(tokend_revoke_owner(admin, NULL, "partner:a", &revoked, &err), TOKEND_OK);
    CHECK_INT(revoked, 3);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(verify(admin, a[i], NULL), TOKEND_NOT_FOUND);
    }
    CHECK_INT(verify(admin, b, NULL), TOKEND_OK);
    CHECK_INT(tokend_revoke_owner(admin, NULL, "partner:a", &revoked, &err), TOKEND_OK);
    CHECK_INT(revoked, 0);
    /* No owner: the caller's own ("sign me out everywhere"). */
    const char *rights[] = {"tokens:write"};
    char self1[TOK], self2[TOK];
    harness_create(admin, "partner:ab", "self 1", rights, 1, 0, self1, TOK, NULL, 0);
    harness_create(admin, "partner:ab", "self 2", orders_read, 1, 0, self2, TOK, NULL, 0);
    tokend_call as_self = {.credential = self1};
    CHECK_INT(tokend_revoke_owner(admin, &as_self, NULL, &revoked, &err), TOKEND_OK);
    CHECK_INT(revoked, 3); /* b, self1, self2 */
    CHECK_INT(verify(admin, b, NULL), TOKEND_NOT_FOUND);
    CHECK_INT(verify(admin, self2, NULL), TOKEND_NOT_FOUND);
    tokend_token_page page;
    CHECK_INT(tokend_list(admin, NULL, "partner:a", 0, NULL, &page, &err), TOKEND_OK);
    CHECK_INT(page.n_tokens, 0);
    tokend_token_page_free(&page);
    tokend_close(admin);
    harness_stop(&p);
}

TEST(service_revoke_by_plain_token_needs_no_credential) {
    tokend_proc p;
    harness_start_or_die(&p);
    tokend_client *admin = harness_client(&p, p.admin);
    tokend_client *anon = harness_client(&p, NULL);
    char t[TOK];
    harness_create(admin, "user:9", "phone", orders_read, 1, 0, t, TOK, NULL, 0);
    uint64_t revoked = 0;
    tokend_error err;
    CHECK_INT(tokend_revoke_token(anon, NULL, t, &revoked, &err), TOKEND_OK);
    CHECK_INT(revoked, 1);
    CHECK_INT(verify(anon, t, NULL), TOKEND_NOT_FOUND);
    CHECK_INT(tokend_revoke_token(anon, NULL, t, &revoked, &err), TOKEND_NOT_FOUND);
    CHECK_INT(tokend_revoke_token(anon, NULL, "garbage", &revoked, &err),
              TOKEND_MALFORMED);
    tokend_close(admin);
    tokend_close(anon);
    harness_stop(&p);
}

TEST(service_list_pages_in_creation_order) {
    tokend_proc p;
    harness_start_or_die(&p);
    tokend_client *admin = harness_client(&p, p.admin);
    char ids[25][TOK];
    char tokens[25][TOK];
    for (int i = 0; i < 25; i++) {
        char name[32];
        snprintf(name, sizeof(name), "token %02d", i);
        harness_create(admin, "partner:list", name, orders_read, 1, 0, tokens[i], TOK,
                       ids[i], TOK);
    }
    harness_create(admin, "partner:listX", "other", orders_read, 1, 0, NULL, 0, NULL, 0);
    char *cursor = NULL;
    int seen = 0, pages = 0;
    size_t sizes[4] = {0};
    tokend_error err;
    do {
        tokend_token_page page;
        REQUIRE(tokend_list(admin, NULL, "partner:list", 10, cursor, &page, &err) ==
                TOKEND_OK);
        sizes[pages < 4 ? pages : 3] = page.n_tokens;
        for (size_t i = 0; i < page.n_tokens; i++, seen++) {
            CHECK_STR(page.tokens[i].id, ids[seen]);
            CHECK_STR(page.tokens[i].owner, "partner:list");
            char name[32];
            snprintf(name, sizeof(name), "token %02d", seen);
            CHECK_STR(page.tokens[i].name, name);
        }
        free(cursor);
        cursor = page.next_cursor ? strdup(page.next_cursor) : NULL;
        tokend_token_page_free(&page);
        pages++;
    } while (cursor != NULL && pages < 10);
    CHECK_INT(seen, 25);
    CHECK_INT(pages, 3);
    CHECK_INT(sizes[0], 10);
    CHECK_INT(sizes[1], 10);
    CHECK_INT(sizes[2], 5);

    tokend_token_page page;
    CHECK_INT(tokend_list(admin, NULL, "partner:list", 10, "not-a-cursor", &page, &err),
              TOKEND_INVALID_ARGUMENT);
    CHECK_INT(tokend_list(admin, NULL, "partner:list", 5000, NULL, &page, &err),
              TOKEND_INVALID_ARGUMENT);
    tokend_close(admin);
    harness_stop(&p);
}

TEST(service_expiry) {
    tokend_proc p;
    harness_start_or_die(&p);
    tokend_client *admin = harness_client(&p, p.admin);
    char t[TOK];
    harness_create(admin, "user:exp", "short", orders_read, 1, 1, t, TOK, NULL, 0);
    tokend_verdict v;
    CHECK_INT(tokend_verify(admin, NULL, t, NULL, 0, TOKEND_ABILITIES_ALL, &v, NULL),
              TOKEND_OK);
    CHECK_INT(v.info.expires_unix_ms - v.info.created_unix_ms, 1000);
    tokend_verdict_free(&v);
    usleep(1100 * 1000);
    CHECK_INT(tokend_verify(admin, NULL, t, NULL, 0, TOKEND_ABILITIES_ALL, &v, NULL),
              TOKEND_EXPIRED);
    CHECK(v.has_info);
    tokend_verdict_free(&v);

    tokend_create_params params = {.owner = "user:exp",
                                   .name = "negative",
                                   .abilities = orders_read,
                                   .n_abilities = 1,
                                   .expires_in_seconds = -5};
    tokend_created created;
    tokend_error err;
    CHECK_INT(tokend_create(admin, NULL, &params, &created, &err),
              TOKEND_INVALID_ARGUMENT);
    params.expires_in_seconds = INT64_MAX / 4;
    CHECK_INT(tokend_create(admin, NULL, &params, &created, &err),
              TOKEND_INVALID_ARGUMENT);
    tokend_close(admin);
    harness_stop(&p);
}

TEST(service_max_lifetime_caps_expiry) {
    tokend_proc p;
    harness_init(&p);
    p.extra[0] = "--max-lifetime";
    p.extra[1] = "1h";
    REQUIRE(harness_start(&p));
    tokend_client *admin = harness_client(&p, p.admin);
    tokend_create_params params = {
        .owner = "u:1", .name = "n", .abilities = orders_read, .n_abilities = 1};
    tokend_created created;
    tokend_error err;
    REQUIRE(tokend_create(admin, NULL, &params, &created, &err) == TOKEND_OK);
    CHECK_INT(created.info.expires_unix_ms - created.info.created_unix_ms, 3600 * 1000);
    tokend_created_free(&created);
    params.expires_in_seconds = 60;
    REQUIRE(tokend_create(admin, NULL, &params, &created, &err) == TOKEND_OK);
    CHECK_INT(created.info.expires_unix_ms - created.info.created_unix_ms, 60 * 1000);
    tokend_created_free(&created);
    tokend_close(admin);
    harness_stop(&p);
}

TEST(service_restart_keeps_tokens_revocations_and_usage) {
    tokend_proc p;
    harness_start_or_die(&p);
    tokend_client *admin = harness_client(&p, p.admin);
    char keep[TOK], gone[TOK], keep_id[TOK], gone_id[TOK];
    harness_create(admin, "p:r", "keep", orders_read, 1, 0, keep, TOK, keep_id, TOK);
    harness_create(admin, "p:r", "gone", orders_read, 1, 0, gone, TOK, gone_id, TOK);
    CHECK_INT(tokend_revoke_id(admin, NULL, gone_id, NULL, NULL), TOKEND_OK);
    for (int i = 0; i < 7; i++) {
        CHECK_INT(verify(admin, keep, "orders:read"), TOKEND_OK);
    }
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0); /* clean stop flushes usage */
    REQUIRE(harness_start(&p));
    admin = harness_client(&p, p.admin);
    CHECK_INT(verify(admin, keep, "orders:read"), TOKEND_OK);
    CHECK_INT(verify(admin, gone, NULL), TOKEND_NOT_FOUND);
    tokend_token_page page;
    REQUIRE(tokend_list(admin, NULL, "p:r", 0, NULL, &page, NULL) == TOKEND_OK);
    REQUIRE(page.n_tokens == 1);
    CHECK_STR(page.tokens[0].id, keep_id);
    CHECK(page.tokens[0].use_count >= 7);
    CHECK(page.tokens[0].last_used_unix_ms >= page.tokens[0].created_unix_ms);
    tokend_token_page_free(&page);
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
}

TEST(service_usage_is_written_behind_while_running) {
    tokend_proc p;
    harness_start_or_die(&p); /* the harness sets --usage-flush-ms 100 */
    tokend_client *admin = harness_client(&p, p.admin);
    char t[TOK];
    harness_create(admin, "p:u", "n", orders_read, 1, 0, t, TOK, NULL, 0);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(verify(admin, t, NULL), TOKEND_OK);
    }
    usleep(400 * 1000);
    tokend_token_page page;
    REQUIRE(tokend_list(admin, NULL, "p:u", 0, NULL, &page, NULL) == TOKEND_OK);
    REQUIRE(page.n_tokens == 1);
    CHECK_INT(page.tokens[0].use_count, 3);
    CHECK(page.tokens[0].last_used_unix_ms > 0);
    tokend_token_page_free(&page);
    tokend_close(admin);
    harness_stop(&p);
}

TEST(service_kill9_after_acknowledged_create_and_revoke) {
    tokend_proc p;
    harness_start_or_die(&p);
    tokend_client *admin = harness_client(&p, p.admin);
    char t[TOK], victim[TOK], victim_id[TOK];
    harness_create(admin, "p:k", "victim", orders_read, 1, 0, victim, TOK, victim_id,
                   TOK);
    harness_create(admin, "p:k", "fresh", orders_read, 1, 0, t, TOK, NULL, 0);
    harness_kill9(&p); /* right after the acknowledged create */
    tokend_close(admin);
    REQUIRE(harness_start(&p));
    admin = harness_client(&p, p.admin);
    CHECK_INT(verify(admin, t, NULL), TOKEND_OK);
    CHECK_INT(tokend_revoke_id(admin, NULL, victim_id, NULL, NULL), TOKEND_OK);
    harness_kill9(&p); /* right after the acknowledged revoke */
    tokend_close(admin);
    REQUIRE(harness_start(&p));
    admin = harness_client(&p, p.admin);
    CHECK_INT(verify(admin, victim, NULL), TOKEND_NOT_FOUND);
    CHECK_INT(verify(admin, t, NULL), TOKEND_OK);
    tokend_close(admin);
    harness_stop(&p);
}

/* Creates, as admin, a partner token with `abilities` and expiry. */
static void partner_token(tokend_client *admin, const char *owner,
                          const char *const *abilities, size_t n, int64_t expires_in,
                          char *token) {
    harness_create(admin, owner, "partner credential", abilities, n, expires_in, token,
                   TOK, NULL, 0);
}

TEST(service_cross_owner_attempts_are_refused) {
    tokend_proc p;
    harness_start_or_die(&p);
    tokend_client *admin = harness_client(&p, p.admin);
    const char *rights[] = {"tokens:read", "tokens:write", "orders:*"};
    char acme[TOK], globex[TOK], globex_id[TOK];
    partner_token(admin, "partner:acme", rights, 3, 0, acme);
    harness_create(admin, "partner:globex", "their token", orders_read, 1, 0, globex, TOK,
                   globex_id, TOK);
    tokend_client *c = harness_client(&p, acme);
    tokend_error err;
    tokend_token_page page;
    uint64_t revoked = 0;

    CHECK_INT(tokend_list(c, NULL, "partner:globex", 0, NULL, &page, &err),
              TOKEND_PERMISSION_DENIED);
    CHECK_INT(tokend_revoke_id(c, NULL, globex_id, &revoked, &err), TOKEND_NOT_FOUND);
    CHECK_INT(tokend_revoke_owner(c, NULL, "partner:globex", &revoked, &err),
              TOKEND_PERMISSION_DENIED);
    tokend_create_params params = {.owner = "partner:globex",
                                   .name = "sneaky",
                                   .abilities = orders_read,
                                   .n_abilities = 1};
    tokend_created created;
    CHECK_INT(tokend_create(c, NULL, &params, &created, &err), TOKEND_PERMISSION_DENIED);
    CHECK_INT(verify(c, globex, NULL), TOKEND_OK); /* untouched */

    /* Its own owner: allowed, within its own abilities only. */
    CHECK_INT(tokend_list(c, NULL, NULL, 0, NULL, &page, &err), TOKEND_OK);
    CHECK_INT(page.n_tokens, 1);
    tokend_token_page_free(&page);
    params.owner = NULL;
    params.name = "sub";
    CHECK_INT(tokend_create(c, NULL, &params, &created, &err), TOKEND_OK);
    CHECK_STR(created.info.owner, "partner:acme");
    tokend_created_free(&created);
    const char *wider[] = {"users:read"};
    params.abilities = wider;
    CHECK_INT(tokend_create(c, NULL, &params, &created, &err), TOKEND_PERMISSION_DENIED);
    const char *admin_ability[] = {"tokend:admin"};
    params.abilities = admin_ability;
    CHECK_INT(tokend_create(c, NULL, &params, &created, &err), TOKEND_PERMISSION_DENIED);
    tokend_close(c);
    tokend_close(admin);
    harness_stop(&p);
}

TEST(service_credential_rights_and_expiry_cap) {
    tokend_proc p;
    harness_start_or_die(&p);
    tokend_client *admin = harness_client(&p, p.admin);
    const char *read_only[] = {"tokens:read", "orders:read"};
    const char *writer_rights[] = {"tokens:write", "orders:read"};
    char reader[TOK], writer_tok[TOK];
    partner_token(admin, "partner:x", read_only, 2, 0, reader);
    partner_token(admin, "partner:x", writer_rights, 2, 3600, writer_tok);
    tokend_error err;
    tokend_created created;
    tokend_token_page page;

    tokend_client *r = harness_client(&p, reader);
    tokend_create_params params = {
        .name = "n", .abilities = orders_read, .n_abilities = 1};
    CHECK_INT(tokend_create(r, NULL, &params, &created, &err), TOKEND_PERMISSION_DENIED);
    CHECK(test_contains(err.message, "tokens:write"));
    CHECK_INT(tokend_list(r, NULL, NULL, 0, NULL, &page, &err), TOKEND_OK);
    tokend_token_page_free(&page);

    tokend_client *w = harness_client(&p, writer_tok);
    CHECK_INT(tokend_list(w, NULL, NULL, 0, NULL, &page, &err), TOKEND_PERMISSION_DENIED);
    params.expires_in_seconds = 7200; /* later than its own */
    CHECK_INT(tokend_create(w, NULL, &params, &created, &err), TOKEND_PERMISSION_DENIED);
    params.expires_in_seconds = 0; /* inherits its own expiry */
    REQUIRE(tokend_create(w, NULL, &params, &created, &err) == TOKEND_OK);
    CHECK(created.info.expires_unix_ms > 0);
    CHECK(created.info.expires_unix_ms - created.info.created_unix_ms <= 3600 * 1000);
    tokend_created_free(&created);

    /* No credential, garbage, and a revoked one. */
    tokend_client *anon = harness_client(&p, NULL);
    CHECK_INT(tokend_list(anon, NULL, "partner:x", 0, NULL, &page, &err),
              TOKEND_UNAUTHENTICATED);
    tokend_call bad = {.credential = "tkd_garbage"};
    CHECK_INT(tokend_list(anon, &bad, "partner:x", 0, NULL, &page, &err),
              TOKEND_UNAUTHENTICATED);
    CHECK_INT(tokend_revoke_token(anon, NULL, reader, NULL, &err), TOKEND_OK);
    CHECK_INT(tokend_list(r, NULL, NULL, 0, NULL, &page, &err), TOKEND_UNAUTHENTICATED);
    /* A "*" token is not an administrator. */
    const char *star[] = {"*"};
    char star_tok[TOK];
    partner_token(admin, "partner:star", star, 1, 0, star_tok);
    tokend_call as_star = {.credential = star_tok};
    CHECK_INT(tokend_list(anon, &as_star, "partner:x", 0, NULL, &page, &err),
              TOKEND_PERMISSION_DENIED);
    CHECK_INT(tokend_list(anon, &as_star, NULL, 0, NULL, &page, &err), TOKEND_OK);
    tokend_token_page_free(&page);
    tokend_close(anon);
    tokend_close(r);
    tokend_close(w);
    tokend_close(admin);
    harness_stop(&p);
}

TEST(service_rejects_invalid_fields) {
    tokend_proc p;
    harness_start_or_die(&p);
    tokend_client *admin = harness_client(&p, p.admin);
    tokend_created created;
    tokend_error err;
    tokend_create_params params = {
        .owner = "o", .name = "n", .abilities = orders_read, .n_abilities = 1};

    params.owner = "bad\nowner";
    CHECK_INT(tokend_create(admin, NULL, &params, &created, &err),
              TOKEND_INVALID_ARGUMENT);
    CHECK(test_contains(err.message, "owner"));
    params.owner = "bad\xC3\x28utf8";
    CHECK_INT(tokend_create(admin, NULL, &params, &created, &err),
              TOKEND_INVALID_ARGUMENT);
    params.owner = "o";
    params.name = "";
    CHECK_INT(tokend_create(admin, NULL, &params, &created, &err),
              TOKEND_INVALID_ARGUMENT);
    params.name = "n";
    params.n_abilities = 0;
    CHECK_INT(tokend_create(admin, NULL, &params, &created, &err),
              TOKEND_INVALID_ARGUMENT);
    const char *spaced[] = {"orders read"};
    params.abilities = spaced;
    params.n_abilities = 1;
    CHECK_INT(tokend_create(admin, NULL, &params, &created, &err),
              TOKEND_INVALID_ARGUMENT);
    const char *many[65];
    for (int i = 0; i < 65; i++) {
        many[i] = "a:b";
    }
    params.abilities = many;
    params.n_abilities = 65;
    CHECK_INT(tokend_create(admin, NULL, &params, &created, &err),
              TOKEND_INVALID_ARGUMENT);
    char longname[300];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    params.abilities = orders_read;
    params.n_abilities = 1;
    params.name = longname;
    CHECK_INT(tokend_create(admin, NULL, &params, &created, &err),
              TOKEND_INVALID_ARGUMENT);
    params.name = "n";
    tokend_kv meta[] = {{"k", "v"}, {"k", "w"}};
    params.metadata = meta;
    params.n_metadata = 2;
    CHECK_INT(tokend_create(admin, NULL, &params, &created, &err),
              TOKEND_INVALID_ARGUMENT);
    params.n_metadata = 1;
    REQUIRE(tokend_create(admin, NULL, &params, &created, &err) == TOKEND_OK);
    CHECK_INT(created.info.n_metadata, 1);
    CHECK_STR(created.info.metadata[0].key, "k");
    CHECK_STR(created.info.metadata[0].value, "v");
    tokend_created_free(&created);
    CHECK_INT(tokend_revoke_id(admin, NULL, "../../etc/passwd", NULL, &err),
              TOKEND_INVALID_ARGUMENT);
    tokend_close(admin);
    harness_stop(&p);
}

/* Sends raw bytes to the service and decodes the reply envelope. */
static int raw_call(const char *url, const void *bytes, size_t len, char *message,
                    size_t msize) {
    nng_socket s;
    REQUIRE(nng_req0_open(&s) == 0);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 3000);
    nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 3000);
    REQUIRE(nng_dial(s, url, NULL, 0) == 0);
    REQUIRE(nng_send(s, (void *)bytes, len, 0) == 0);
    void *buf = NULL;
    size_t blen = 0;
    int rv = nng_recv(s, &buf, &blen, NNG_FLAG_ALLOC);
    nng_close(s);
    if (rv != 0) {
        return -rv;
    }
    Tokend__V1__Reply *reply = tokend__v1__reply__unpack(NULL, blen, buf);
    nng_free(buf, blen);
    REQUIRE(reply != NULL);
    int status = reply->status;
    if (message != NULL) {
        snprintf(message, msize, "%s", reply->message);
    }
    tokend__v1__reply__free_unpacked(reply, NULL);
    return status;
}

/* Packs an envelope for `method` around `payload`. */
static uint8_t *envelope(const char *method, const uint8_t *payload, size_t plen,
                         int64_t deadline, const char *credential, size_t *len) {
    Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
    req.method = (char *)method;
    req.request_id = 7;
    req.deadline_unix_ms = deadline;
    req.credential = (char *)(credential ? credential : "");
    req.payload.data = (uint8_t *)payload;
    req.payload.len = plen;
    uint8_t *buf = NULL;
    REQUIRE(rpc_pack(&req.base, &buf, len) == TOKEND_OK);
    return buf;
}

TEST(service_survives_malformed_and_oversized_requests) {
    tokend_proc p;
    harness_start_or_die(&p);
    tokend_client *admin = harness_client(&p, p.admin);
    char t[TOK];
    harness_create(admin, "p:h", "n", orders_read, 1, 0, t, TOK, NULL, 0);
    char msg[256];

    /* An empty message is an empty envelope: no method. */
    CHECK_INT(raw_call(p.url, "", 0, msg, sizeof(msg)), TOKEND_UNIMPLEMENTED);
    CHECK_INT(raw_call(p.url, "\xff\xff\xff\xff", 4, msg, sizeof(msg)),
              TOKEND_BAD_MESSAGE);
    size_t len = 0;
    uint8_t *env = envelope("Nope", NULL, 0, 0, NULL, &len);
    CHECK_INT(raw_call(p.url, env, len, msg, sizeof(msg)), TOKEND_UNIMPLEMENTED);
    CHECK(test_contains(msg, "Nope"));
    free(env);
    env = envelope("Verify", (const uint8_t *)"\x0a\xff", 2, 0, NULL, &len);
    CHECK_INT(raw_call(p.url, env, len, msg, sizeof(msg)), TOKEND_BAD_MESSAGE);
    free(env);
    env = envelope("Verify", NULL, 0, rpc_now_ms() - 1000, NULL, &len);
    CHECK_INT(raw_call(p.url, env, len, msg, sizeof(msg)), TOKEND_DEADLINE_EXCEEDED);
    free(env);

    /* Just over the 64 KiB maximum: answered, not dropped. */
    size_t big = 100 * 1024;
    uint8_t *junk = calloc(1, big);
    REQUIRE(junk != NULL);
    env = envelope("Verify", junk, big, 0, NULL, &len);
    CHECK_INT(raw_call(p.url, env, len, msg, sizeof(msg)), TOKEND_RESOURCE_EXHAUSTED);
    free(env);
    free(junk);

    /* 10,000 abilities in a Verify (fits in the limit as tiny strings). */
    Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
    char **abilities = calloc(10000, sizeof(char *));
    for (int i = 0; i < 10000; i++) {
        abilities[i] = "a";
    }
    vr.token = t;
    vr.abilities = abilities;
    vr.n_abilities = 10000;
    uint8_t *payload = NULL;
    size_t plen = 0;
    REQUIRE(rpc_pack(&vr.base, &payload, &plen) == TOKEND_OK);
    env = envelope("Verify", payload, plen, 0, NULL, &len);
    CHECK_INT(raw_call(p.url, env, len, msg, sizeof(msg)), TOKEND_INVALID_ARGUMENT);
    free(env);
    free(payload);
    free(abilities);

    /* Invalid UTF-8 in an ability. */
    char *bad_utf8[] = {"orders:\xC3\x28"};
    vr.abilities = bad_utf8;
    vr.n_abilities = 1;
    REQUIRE(rpc_pack(&vr.base, &payload, &plen) == TOKEND_OK);
    env = envelope("Verify", payload, plen, 0, NULL, &len);
    CHECK_INT(raw_call(p.url, env, len, msg, sizeof(msg)), TOKEND_INVALID_ARGUMENT);
    free(env);
    free(payload);

    /* A CreateToken payload sent as Verify: decodes as some other message
     * or not at all; either way an answer, never a crash. */
    Tokend__V1__CreateTokenRequest cr = TOKEND__V1__CREATE_TOKEN_REQUEST__INIT;
    cr.owner = "x";
    cr.name = "y";
    REQUIRE(rpc_pack(&cr.base, &payload, &plen) == TOKEND_OK);
    env = envelope("ListTokens", payload, plen, 0, p.admin, &len);
    CHECK(raw_call(p.url, env, len, msg, sizeof(msg)) >= 0);
    free(env);
    free(payload);

    /* Still serving, and the token is intact. */
    CHECK_INT(verify(admin, t, "orders:read"), TOKEND_OK);
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
}

TEST(service_no_plain_text_token_in_data_or_logs) {
    tokend_proc p;
    harness_init(&p);
    p.extra[0] = "--log-level";
    p.extra[1] = "debug"; /* the most the service ever logs */
    REQUIRE(harness_start(&p));
    tokend_client *admin = harness_client(&p, p.admin);
    char t[TOK];
    harness_create(admin, "p:s", "n", orders_read, 1, 0, t, TOK, NULL, 0);
    for (int i = 0; i < 300; i++) {
        CHECK_INT(verify(admin, t, "orders:read"), TOKEND_OK);
    }
    CHECK_INT(tokend_revoke_token(admin, NULL, t, NULL, NULL), TOKEND_OK);
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
    char *log = harness_read_file(p.log_path);
    REQUIRE(log != NULL);
    CHECK(test_contains(log, "method=Verify"));
    /* Neither the token, nor its secret part, nor the admin credential. */
    char secret[TOKEN_SECRET_LEN + 1];
    memcpy(secret, t + 4, TOKEN_SECRET_LEN);
    secret[TOKEN_SECRET_LEN] = '\0';
    CHECK(!test_contains(log, t));
    CHECK(!test_contains(log, secret));
    CHECK(!test_contains(log, p.admin));
    CHECK(!harness_dir_contains(p.dir, t));
    CHECK(!harness_dir_contains(p.dir, secret));
    CHECK(!harness_dir_contains(p.dir, p.admin));
    free(log);
}

typedef struct load_arg {
    tokend_proc *p;
    const char *token;
    int ok;
    int created;
} load_arg;

static void *load_thread(void *arg) {
    load_arg *a = arg;
    tokend_client *c = harness_client(a->p, a->p->admin);
    for (int i = 0; i < 200; i++) {
        if (verify(c, a->token, "orders:read") == TOKEND_OK) {
            a->ok++;
        }
        if (i % 10 == 0) {
            tokend_create_params params = {.owner = "p:load",
                                           .name = "n",
                                           .abilities = orders_read,
                                           .n_abilities = 1};
            tokend_created created;
            if (tokend_create(c, NULL, &params, &created, NULL) == TOKEND_OK) {
                a->created++;
                tokend_created_free(&created);
            }
        }
    }
    tokend_close(c);
    return NULL;
}

TEST(service_concurrent_callers_share_one_client_and_many) {
    tokend_proc p;
    harness_start_or_die(&p);
    tokend_client *admin = harness_client(&p, p.admin);
    char t[TOK];
    harness_create(admin, "p:load", "base", orders_read, 1, 0, t, TOK, NULL, 0);
    pthread_t th[8];
    load_arg args[8];
    for (int i = 0; i < 8; i++) {
        args[i] = (load_arg){.p = &p, .token = t};
        pthread_create(&th[i], NULL, load_thread, &args[i]);
    }
    int ok = 0, created = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        ok += args[i].ok;
        created += args[i].created;
    }
    CHECK_INT(ok, 8 * 200);
    CHECK_INT(created, 8 * 20);
    tokend_token_page page;
    REQUIRE(tokend_list(admin, NULL, "p:load", 1000, NULL, &page, NULL) == TOKEND_OK);
    CHECK_INT(page.n_tokens, 1 + 8 * 20);
    tokend_token_page_free(&page);
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
}

TEST(service_init_twice_changes_nothing) {
    tokend_proc p;
    harness_start_or_die(&p);
    const char *argv[] = {harness_bin("tokend"), "init", "--data-dir", p.data_dir, NULL};
    char *out = NULL, *err = NULL;
    /* The store is locked by the running service: refused either way. */
    int rc = harness_exec(argv, NULL, NULL, &out, &err);
    CHECK(rc != 0);
    CHECK_STR(out, "");
    harness_stop(&p);
    free(out);
    free(err);
    rc = harness_exec(argv, NULL, NULL, &out, &err);
    CHECK_INT(rc, 3);
    CHECK_STR(out, "");
    CHECK(test_contains(err, "already initialised"));
    free(out);
    free(err);
    REQUIRE(harness_start(&p));
    tokend_client *admin = harness_client(&p, p.admin);
    tokend_token_page page;
    CHECK_INT(tokend_list(admin, NULL, NULL, 0, NULL, &page, NULL), TOKEND_OK);
    CHECK_INT(page.n_tokens, 1); /* still only the first admin token */
    tokend_token_page_free(&page);
    tokend_close(admin);
    harness_stop(&p);
}

/* Files in `dir` whose mode (permission bits) is not `want`; their names
 * go into `names` (for the failure message). */
static int files_not_of_mode(const char *dir, unsigned want, char *names, size_t size) {
    DIR *d = opendir(dir);
    REQUIRE(d != NULL);
    int wrong = 0;
    names[0] = '\0';
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        struct stat sb;
        REQUIRE(fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0);
        if (S_ISREG(sb.st_mode) && (sb.st_mode & 0777) != want) {
            wrong++;
            size_t used = strlen(names);
            snprintf(names + used, size - used, " %s:%04o", e->d_name,
                     (unsigned)(sb.st_mode & 0777));
        }
    }
    closedir(d);
    return wrong;
}

static unsigned mode_of(const char *path) {
    struct stat sb;
    REQUIRE(stat(path, &sb) == 0);
    return (unsigned)(sb.st_mode & 07777);
}

/* The data dir is 0700 and every file in it 0600 after init and after a
 * serve (which writes new ones). A data dir group or others may access
 * is refused, with the fix in the message, by serve and by init (which
 * then creates nothing in it); files made wider by an older tokend are
 * made 0600 by serve, which logs it. */
TEST(service_data_dir_is_private) {
    tokend_proc p;
    memset(&p, 0, sizeof(p));
    harness_init(&p);
    char names[1024];
    CHECK_INT(mode_of(p.data_dir), 0700);
    if (files_not_of_mode(p.data_dir, 0600, names, sizeof(names)) > 0) {
        test_fail(__FILE__, __LINE__, "after init, not 0600:%s", names);
    }
    REQUIRE(harness_start(&p));
    tokend_client *admin = harness_client(&p, p.admin);
    harness_create(admin, "p:files", "t", orders_read, 1, 0, NULL, 0, NULL, 0);
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
    if (files_not_of_mode(p.data_dir, 0600, names, sizeof(names)) > 0) {
        test_fail(__FILE__, __LINE__, "after serve, not 0600:%s", names);
    }

    /* 0755: refused, it says why and what to do, and nothing serves. */
    REQUIRE(chmod(p.data_dir, 0755) == 0);
    CHECK(!harness_start(&p));
    harness_stop(&p);
    char *log = harness_read_file(p.log_path);
    char want[1024];
    snprintf(want, sizeof(want),
             "tokend: data dir %s has mode 0755: group or others may access it. It "
             "must be private to tokend's user (0700): chmod 700 %s",
             p.data_dir, p.data_dir);
    CHECK(test_contains(log, want));
    free(log);
    CHECK_INT(mode_of(p.data_dir), 0755); /* the operator's to change */

    /* An older tokend's files (0644) in a private dir: made 0600. */
    REQUIRE(chmod(p.data_dir, 0700) == 0);
    DIR *d = opendir(p.data_dir);
    REQUIRE(d != NULL);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        struct stat sb;
        if (fstatat(dirfd(d), e->d_name, &sb, 0) == 0 && S_ISREG(sb.st_mode)) {
            REQUIRE(fchmodat(dirfd(d), e->d_name, 0644, 0) == 0);
        }
    }
    closedir(d);
    REQUIRE(harness_start(&p));
    CHECK_INT(harness_stop(&p), 0);
    if (files_not_of_mode(p.data_dir, 0600, names, sizeof(names)) > 0) {
        test_fail(__FILE__, __LINE__, "after serve on 0644 files, not 0600:%s", names);
    }
    log = harness_read_file(p.log_path);
    CHECK(test_contains(log, "event=data_dir.files_made_private"));
    free(log);

    /* init into an existing 0755 dir: refused, nothing created. */
    char wide[400];
    snprintf(wide, sizeof(wide), "%s/wide", p.dir);
    REQUIRE(mkdir(wide, 0755) == 0 && chmod(wide, 0755) == 0);
    const char *init[] = {harness_bin("tokend"), "init", "--data-dir", wide, NULL};
    char *out = NULL, *err = NULL;
    CHECK_INT(harness_exec(init, NULL, NULL, &out, &err), 1);
    CHECK_STR(out, "");
    CHECK(test_contains(err, "has mode 0755: group or others may access it"));
    free(out);
    free(err);
    DIR *w = opendir(wide);
    REQUIRE(w != NULL);
    int entries = 0;
    for (struct dirent *e; (e = readdir(w)) != NULL;) {
        entries += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    }
    closedir(w);
    CHECK_INT(entries, 0);
}

TEST(service_command_line_errors) {
    char *out = NULL, *err = NULL;
    const char *help[] = {harness_bin("tokend"), "serve", "--help", NULL};
    CHECK_INT(harness_exec(help, NULL, NULL, &out, &err), 0);
    CHECK(test_contains(out, "--listen"));
    CHECK(test_contains(out, "TOKEND_DATA_DIR"));
    free(out);
    free(err);
    const char *bogus[] = {harness_bin("tokend"), "serve", "--bogus", NULL};
    CHECK_INT(harness_exec(bogus, NULL, NULL, &out, &err), 2);
    CHECK(test_contains(err, "--bogus"));
    free(out);
    free(err);
    const char *badnum[] = {harness_bin("tokend"), "serve", "--max-message", "lots",
                            NULL};
    CHECK_INT(harness_exec(badnum, NULL, NULL, &out, &err), 2);
    CHECK(test_contains(err, "max-message"));
    free(out);
    free(err);
    const char *badcmd[] = {harness_bin("tokend"), "frobnicate", NULL};
    CHECK_INT(harness_exec(badcmd, NULL, NULL, &out, &err), 2);
    free(out);
    free(err);
    const char *dir = test_tmpdir();
    const char *uninit[] = {harness_bin("tokend"), "serve", "--data-dir", dir, NULL};
    CHECK_INT(harness_exec(uninit, NULL, NULL, &out, &err), 1);
    CHECK(test_contains(err, "tokend init"));
    free(out);
    free(err);
    const char *badurl[] = {harness_bin("tokend"), "serve", "--data-dir", dir, "--listen",
                            "bogus://x",           NULL};
    CHECK(harness_exec(badurl, NULL, NULL, &out, &err) != 0);
    free(out);
    free(err);
}

TEST(service_verify_can_require_a_credential) {
    tokend_proc p;
    harness_init(&p);
    p.extra[0] = "--verify-requires-credential";
    REQUIRE(harness_start(&p));
    tokend_client *admin = harness_client(&p, p.admin);
    char t[TOK], verifier[TOK];
    harness_create(admin, "p:v", "n", orders_read, 1, 0, t, TOK, NULL, 0);
    const char *vab[] = {"tokend:verify"};
    harness_create(admin, "svc:gateway", "gw", vab, 1, 0, verifier, TOK, NULL, 0);
    tokend_client *anon = harness_client(&p, NULL);
    CHECK_INT(verify(anon, t, NULL), TOKEND_UNAUTHENTICATED);
    tokend_call as_t = {.credential = t};
    CHECK_INT(tokend_verify(anon, &as_t, t, NULL, 0, TOKEND_ABILITIES_ALL, NULL, NULL),
              TOKEND_PERMISSION_DENIED);
    tokend_call as_v = {.credential = verifier};
    CHECK_INT(tokend_verify(anon, &as_v, t, NULL, 0, TOKEND_ABILITIES_ALL, NULL, NULL),
              TOKEND_OK);
    tokend_close(anon);
    tokend_close(admin);
    harness_stop(&p);
}

TEST(service_unavailable_when_down) {
    tokend_proc p;
    harness_init(&p); /* initialised but not started */
    tokend_client *c = harness_client(&p, NULL);
    tokend_call quick = {.timeout_ms = 300};
    tokend_error err;
    int rv = tokend_verify(c, &quick, "x", NULL, 0, TOKEND_ABILITIES_ALL, NULL, &err);
    CHECK(rv == TOKEND_DEADLINE_EXCEEDED || rv == TOKEND_UNAVAILABLE);
    /* Comes back by itself once the service is up. */
    REQUIRE(harness_start(&p));
    CHECK_INT(tokend_verify(c, NULL, "x", NULL, 0, TOKEND_ABILITIES_ALL, NULL, &err),
              TOKEND_MALFORMED);
    tokend_close(c);
    harness_stop(&p);
}
