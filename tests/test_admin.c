/*
 * test_admin.c — the admin lock-out and one token by id, against the real
 * tokend through libtokend, tokenctl and `tokend admin-token`:
 *
 * - a revoke that would leave no valid admin token is refused
 *   (FAILED_PRECONDITION, naming the recovery), by id, by plain text and
 *   of a whole owner, decided in the writer's order so that racing
 *   revokes of every admin token leave exactly one;
 * - `tokend admin-token` makes a new admin token with tokend stopped (it
 *   writes the store) and running (through the control socket), prints it
 *   once, logs the event without the token, and explains bad data dirs;
 * - GetToken (tokend_get, `tokenctl show`) returns a token with the uses
 *   the service holds in memory, so a just-used token never shows "never",
 *   and authorizes like ListTokens.
 */
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "rpc.h"
#include "rpc_client.h"
#include "store.h"
#include "test.h"
#include "token.h"

#define TOK 128

static const char *const admin_ability[] = {"tokend:admin"};

/* Runs `tokend admin-token --data-dir DIR` (plus `extra`, may be NULL);
 * returns its exit code, *out and *err as harness_exec gives them. */
static int admin_token(const char *dir, const char *extra, char **out, char **err) {
    const char *argv[] = {
        harness_bin("tokend"), "admin-token", "--data-dir", dir, extra, NULL};
    return harness_exec(argv, NULL, NULL, out, err);
}

/* The first line of `text` into out[size] (the token a command printed). */
static void first_line(const char *text, char *out, size_t size) {
    size_t n = text != NULL ? strcspn(text, "\n") : 0;
    if (n >= size) {
        n = size - 1;
    }
    memcpy(out, text != NULL ? text : "", n);
    out[n] = '\0';
}

static int count_admins(tokend_client *admin) {
    tokend_token_page page;
    if (tokend_list(admin, NULL, "admin", 1000, NULL, &page, NULL) != TOKEND_OK) {
        return -1;
    }
    int n = (int)page.n_tokens;
    tokend_token_page_free(&page);
    return n;
}

/* Every path that revokes refuses to take the last valid admin token, and
 * says how to recover; an expired admin token does not count as one left.
 * With a second admin token, the first may go. */
TEST(admin_last_admin_token_cannot_be_revoked) {
    tokend_proc p;
    harness_start_or_die(&p);
    tokend_client *admin = harness_client(&p, p.admin);
    tokend_client *anon = harness_client(&p, NULL);
    tokend_error err = {0};
    tokend_token_info self;
    REQUIRE(tokend_verify(admin, NULL, p.admin, NULL, 0, TOKEND_ABILITIES_ALL, NULL,
                          NULL) == TOKEND_OK);
    tokend_verdict verdict;
    REQUIRE(tokend_verify(admin, NULL, p.admin, NULL, 0, TOKEND_ABILITIES_ALL, &verdict,
                          NULL) == TOKEND_OK);
    char root_id[TOKEN_ID_LEN + 1];
    snprintf(root_id, sizeof(root_id), "%s", verdict.info.id);
    tokend_verdict_free(&verdict);

    uint64_t revoked = 99;
    CHECK_INT(tokend_revoke_id(admin, NULL, root_id, &revoked, &err),
              TOKEND_FAILED_PRECONDITION);
    CHECK(test_contains(err.message, "last admin token"));
    CHECK(test_contains(err.message, "tokend admin-token --data-dir"));
    CHECK_INT(revoked, 0);
    CHECK_INT(tokend_revoke_token(anon, NULL, p.admin, NULL, &err),
              TOKEND_FAILED_PRECONDITION);
    CHECK_INT(tokend_revoke_owner(admin, NULL, "admin", NULL, &err),
              TOKEND_FAILED_PRECONDITION);

    /* tokenctl: the same refusal, exit 1, the message on stderr. */
    char cred_env[200];
    snprintf(cred_env, sizeof(cred_env), "TOKEND_CREDENTIAL=%s", p.admin);
    const char *env[] = {cred_env, NULL};
    const char *argv[] = {harness_bin("tokenctl"),
                          "--url",
                          p.url,
                          "revoke",
                          "--owner",
                          "admin",
                          "--all",
                          NULL};
    char *out = NULL, *errt = NULL;
    CHECK_INT(harness_exec(argv, NULL, env, &out, &errt), 1);
    CHECK(test_contains(errt, "FAILED_PRECONDITION"));
    CHECK(test_contains(errt, "tokend admin-token"));
    free(out);
    free(errt);

    /* Other owners' tokens still go, the admin's owner's non-admin ones too. */
    const char *reader[] = {"orders:read"};
    char plain_id[TOK];
    harness_create(admin, "admin", "not an admin", reader, 1, 0, NULL, 0, plain_id,
                   sizeof(plain_id));
    CHECK_INT(tokend_revoke_id(admin, NULL, plain_id, NULL, &err), TOKEND_OK);

    /* An admin token that has expired is no admin left. */
    char brief_id[TOK];
    harness_create(admin, "admin", "brief admin", admin_ability, 1, 1, NULL, 0, brief_id,
                   sizeof(brief_id));
    usleep(1300 * 1000);
    CHECK_INT(tokend_revoke_id(admin, NULL, root_id, NULL, &err),
              TOKEND_FAILED_PRECONDITION);
    /* Revoking the expired one takes no valid admin away. */
    CHECK_INT(tokend_revoke_id(admin, NULL, brief_id, NULL, &err), TOKEND_OK);

    /* With another valid admin token, the first may go; then not the other. */
    char second[TOK], second_id[TOK];
    harness_create(admin, "ops", "second admin", admin_ability, 1, 0, second,
                   sizeof(second), second_id, sizeof(second_id));
    CHECK_INT(tokend_revoke_owner(admin, NULL, "admin", &revoked, &err), TOKEND_OK);
    CHECK_INT(revoked, 1);
    CHECK_INT(
        tokend_verify(anon, NULL, p.admin, NULL, 0, TOKEND_ABILITIES_ALL, NULL, NULL),
        TOKEND_NOT_FOUND);
    tokend_client *ops = harness_client(&p, second);
    CHECK_INT(tokend_revoke_id(ops, NULL, second_id, NULL, &err),
              TOKEND_FAILED_PRECONDITION);
    CHECK_INT(tokend_get(ops, NULL, second_id, &self, &err), TOKEND_OK);
    tokend_token_info_free(&self);
    tokend_close(ops);
    tokend_close(anon);
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
}

/* The race: one thread per admin token, each revoking its own at once
 * (half by id with itself as the credential, half by plain text). In the
 * writer's order every revoke but the last applied one passes: exactly
 * one is refused and one admin token remains, whatever the grouping. */
#define ADMIN_RACERS 8
#define ADMIN_TRIALS 8

typedef struct admin_race {
    tokend_client *clients[ADMIN_RACERS];
    char tokens[ADMIN_RACERS][TOK];
    char ids[ADMIN_RACERS][TOK];
} admin_race;

static int revoke_own(void *arg, int i) {
    admin_race *r = arg;
    if (i % 2 == 0) {
        return tokend_revoke_id(r->clients[i], NULL, r->ids[i], NULL, NULL);
    }
    return tokend_revoke_token(r->clients[i], NULL, r->tokens[i], NULL, NULL);
}

TEST(admin_concurrent_revokes_of_every_admin_leave_exactly_one) {
    tokend_proc p;
    harness_start_or_die(&p);
    char survivor[TOK];
    snprintf(survivor, sizeof(survivor), "%s", p.admin);
    for (int trial = 0; trial < ADMIN_TRIALS; trial++) {
        tokend_client *admin = harness_client(&p, survivor);
        admin_race r;
        memset(&r, 0, sizeof(r));
        /* The survivor of the last trial, and ADMIN_RACERS - 1 new ones. */
        snprintf(r.tokens[0], TOK, "%s", survivor);
        tokend_verdict v;
        REQUIRE(tokend_verify(admin, NULL, survivor, NULL, 0, TOKEND_ABILITIES_ALL, &v,
                              NULL) == TOKEND_OK);
        snprintf(r.ids[0], TOK, "%s", v.info.id);
        tokend_verdict_free(&v);
        for (int i = 1; i < ADMIN_RACERS; i++) {
            harness_create(admin, "admin", "racer", admin_ability, 1, 0, r.tokens[i], TOK,
                           r.ids[i], TOK);
        }
        CHECK_INT(count_admins(admin), ADMIN_RACERS);
        tokend_close(admin);
        for (int i = 0; i < ADMIN_RACERS; i++) {
            r.clients[i] = harness_client(&p, r.tokens[i]);
        }
        int status[ADMIN_RACERS];
        harness_race(ADMIN_RACERS, revoke_own, &r, status);
        int ok = 0, refused = -1, other = 0;
        for (int i = 0; i < ADMIN_RACERS; i++) {
            if (status[i] == TOKEND_OK) {
                ok++;
            } else if (status[i] == TOKEND_FAILED_PRECONDITION && refused < 0) {
                refused = i;
            } else {
                other++;
                test_fail(__FILE__, __LINE__, "trial %d: racer %d answered %s", trial, i,
                          tokend_status_name(status[i]));
            }
        }
        CHECK_INT(ok, ADMIN_RACERS - 1);
        CHECK_INT(other, 0);
        REQUIRE(refused >= 0);
        snprintf(survivor, sizeof(survivor), "%s", r.tokens[refused]);
        for (int i = 0; i < ADMIN_RACERS; i++) {
            tokend_close(r.clients[i]);
        }
        tokend_client *left = harness_client(&p, survivor);
        CHECK_INT(count_admins(left), 1);
        CHECK_INT(tokend_verify(left, NULL, survivor, admin_ability, 1,
                                TOKEND_ABILITIES_ALL, NULL, NULL),
                  TOKEND_OK);
        tokend_close(left);
    }
    CHECK_INT(harness_stop(&p), 0);
}

/* Recovery with tokend stopped (the command writes the store) and running
 * (it asks tokend through the control socket): each prints one working
 * admin token, once, records how it was made, and logs the event with the
 * id but never the token. The control service is not on --listen. */
TEST(admin_token_recovers_stopped_and_running) {
    tokend_proc p;
    harness_init(&p);
    char *out = NULL, *err = NULL;
    CHECK_INT(admin_token(p.data_dir, NULL, &out, &err), 0);
    char offline[TOK];
    first_line(out, offline, sizeof(offline));
    CHECK(token_well_formed(offline, strlen(offline)));
    CHECK(test_contains(err, "event=admin.recovery"));
    CHECK(test_contains(err, "via=offline"));
    CHECK(!test_contains(err, offline));
    free(out);
    free(err);
    CHECK(!harness_dir_contains(p.data_dir, offline));

    REQUIRE(harness_start(&p));
    tokend_client *rec = harness_client(&p, offline);
    tokend_verdict v;
    CHECK_INT(tokend_verify(rec, NULL, offline, admin_ability, 1, TOKEND_ABILITIES_ALL,
                            &v, NULL),
              TOKEND_OK);
    CHECK_STR(v.info.owner, "admin");
    CHECK_STR(v.info.name, "admin recovery");
    CHECK_INT(v.info.expires_unix_ms, 0);
    REQUIRE(v.info.n_metadata == 1);
    CHECK_STR(v.info.metadata[0].key, "made_by");
    CHECK_STR(v.info.metadata[0].value, "tokend admin-token");
    tokend_verdict_free(&v);

    /* Running: the store is locked, the command goes through tokend. */
    CHECK_INT(admin_token(p.data_dir, "--admin-owner=ops", &out, &err), 0);
    char online[TOK];
    first_line(out, online, sizeof(online));
    CHECK(token_well_formed(online, strlen(online)));
    CHECK(test_contains(err, "made by the running tokend"));
    free(out);
    free(err);
    tokend_client *on = harness_client(&p, online);
    const char *reader[] = {"orders:read"};
    tokend_create_params params = {.owner = "partner:x",
                                   .name = "made by recovery",
                                   .abilities = reader,
                                   .n_abilities = 1};
    tokend_created created;
    CHECK_INT(tokend_create(on, NULL, &params, &created, NULL), TOKEND_OK);
    tokend_created_free(&created);
    CHECK_INT(
        tokend_verify(on, NULL, online, admin_ability, 1, TOKEND_ABILITIES_ALL, &v, NULL),
        TOKEND_OK);
    CHECK_STR(v.info.owner, "ops");
    CHECK_STR(v.info.name, "admin recovery");
    char online_id[TOKEN_ID_LEN + 1];
    snprintf(online_id, sizeof(online_id), "%s", v.info.id);
    tokend_verdict_free(&v);

    /* MintAdminToken is not a method of the --listen socket. */
    const char *urls[] = {p.url};
    rpc_client_config rc = {.urls = urls, .n_urls = 1};
    rpc_client *client = NULL;
    rpc_call *call = NULL;
    REQUIRE(rpc_client_open(&rc, &client, NULL) == TOKEND_OK);
    REQUIRE(rpc_call_new(client, NULL, NULL, &call, NULL) == TOKEND_OK);
    Tokend__V1__MintAdminTokenRequest req = TOKEND__V1__MINT_ADMIN_TOKEN_REQUEST__INIT;
    REQUIRE(rpc_call_start(call, &tokend__v1__control__descriptor.methods[0], &req.base,
                           NULL, NULL, 3000, NULL) == TOKEND_OK);
    rpc_call_wait(call);
    const ProtobufCMessage *reply = NULL;
    tokend_error rerr;
    CHECK_INT(rpc_call_result(call, &reply, &rerr), TOKEND_UNIMPLEMENTED);
    rpc_call_free(call);
    rpc_client_free(client);

    tokend_close(on);
    tokend_close(rec);
    CHECK_INT(harness_stop(&p), 0);
    char *log = harness_read_file(p.log_path);
    CHECK(test_contains(log, "event=admin.recovery"));
    CHECK(test_contains(log, online_id));
    CHECK(test_contains(log, "via=control"));
    CHECK(!test_contains(log, online));
    CHECK(!test_contains(log, offline));
    free(log);
    CHECK(!harness_dir_contains(p.dir, online));
    /* The control socket goes with tokend; the command then writes the
     * store itself again. */
    CHECK_INT(admin_token(p.data_dir, NULL, &out, &err), 0);
    CHECK(test_contains(err, "via=offline"));
    free(out);
    free(err);
}

/* Each way the command can find nothing to recover says so in a sentence,
 * exit 1, and prints no token; --help explains the command. */
TEST(admin_token_refuses_bad_data_dirs_clearly) {
    const char *tmp = test_tmpdir();
    char path[512];
    char *out = NULL, *err = NULL;

    snprintf(path, sizeof(path), "%s/missing", tmp);
    CHECK_INT(admin_token(path, NULL, &out, &err), 1);
    CHECK(test_contains(err, "does not exist"));
    CHECK_STR(out, "");
    free(out);
    free(err);

    snprintf(path, sizeof(path), "%s/file", tmp);
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    fclose(f);
    CHECK_INT(admin_token(path, NULL, &out, &err), 1);
    CHECK(test_contains(err, "is not a directory"));
    free(out);
    free(err);

    snprintf(path, sizeof(path), "%s/empty", tmp);
    REQUIRE(mkdir(path, 0700) == 0);
    CHECK_INT(admin_token(path, NULL, &out, &err), 1);
    CHECK(test_contains(err, "holds no tokend store"));
    CHECK(test_contains(err, "tokend init"));
    CHECK_STR(out, "");
    free(out);
    free(err);

    /* A store whose init never completed. */
    snprintf(path, sizeof(path), "%s/half", tmp);
    store *st = NULL;
    store_options so = {.create_if_missing = true};
    REQUIRE(store_open(path, &so, &st, NULL) == TOKEND_OK);
    store_close(st);
    CHECK_INT(admin_token(path, NULL, &out, &err), 1);
    CHECK(test_contains(err, "not initialised"));
    CHECK_STR(out, "");
    free(out);
    free(err);

    /* A store another process holds, without a control socket. */
    REQUIRE(store_open(path, NULL, &st, NULL) == TOKEND_OK);
    CHECK_INT(admin_token(path, NULL, &out, &err), 1);
    CHECK(test_contains(err, "is in use"));
    CHECK(test_contains(err, "no control socket"));
    CHECK_STR(out, "");
    free(out);
    free(err);
    store_close(st);

    snprintf(path, sizeof(path), "%s/open", tmp);
    REQUIRE(mkdir(path, 0755) == 0);
    CHECK_INT(admin_token(path, NULL, &out, &err), 1);
    CHECK(test_contains(err, "chmod 700"));
    free(out);
    free(err);

    const char *help[] = {harness_bin("tokend"), "admin-token", "--help", NULL};
    CHECK_INT(harness_exec(help, NULL, NULL, &out, &err), 0);
    CHECK(test_contains(out, "control socket"));
    CHECK(test_contains(out, "--data-dir"));
    CHECK(test_contains(out, "event=admin.recovery"));
    free(out);
    free(err);
}

/* A token's record by id, with the uses the service holds in memory:
 * right after verifies (long before the usage flush) the count and the
 * last use are there, in GetToken, ListTokens and the Verify reply. Who
 * may read it follows ListTokens: an admin any token; tokens:read its own
 * owner's; another owner's id is NOT_FOUND like an unknown one. */
TEST(get_token_reports_usage_held_in_memory_and_authorizes) {
    tokend_proc p;
    harness_init(&p);
    p.extra[0] = "--usage-flush-ms=60000";
    REQUIRE(harness_start(&p));
    tokend_client *admin = harness_client(&p, p.admin);
    const char *abilities[] = {"orders:read"};
    char token[TOK], id[TOK];
    harness_create(admin, "partner:a", "used", abilities, 1, 0, token, sizeof(token), id,
                   sizeof(id));
    tokend_token_info info;
    tokend_error err = {0};
    REQUIRE(tokend_get(admin, NULL, id, &info, &err) == TOKEND_OK);
    CHECK_STR(info.id, id);
    CHECK_STR(info.owner, "partner:a");
    CHECK_STR(info.name, "used");
    CHECK_INT(info.use_count, 0);
    CHECK_INT(info.last_used_unix_ms, 0);
    tokend_token_info_free(&info);

    int64_t before = harness_now_ms();
    tokend_verdict v;
    for (int i = 0; i < 3; i++) {
        REQUIRE(tokend_verify(admin, NULL, token, abilities, 1, TOKEND_ABILITIES_ALL, &v,
                              NULL) == TOKEND_OK);
        CHECK_INT(v.info.use_count, (uint64_t)i + 1); /* counts this verify */
        CHECK(v.info.last_used_unix_ms >= before);
        tokend_verdict_free(&v);
    }
    REQUIRE(tokend_get(admin, NULL, id, &info, &err) == TOKEND_OK);
    CHECK_INT(info.use_count, 3);
    CHECK(info.last_used_unix_ms >= before &&
          info.last_used_unix_ms <= harness_now_ms() + 1000);
    tokend_token_info_free(&info);
    tokend_token_page page;
    REQUIRE(tokend_list(admin, NULL, "partner:a", 10, NULL, &page, NULL) == TOKEND_OK);
    REQUIRE(page.n_tokens == 1);
    CHECK_INT(page.tokens[0].use_count, 3);
    CHECK(page.tokens[0].last_used_unix_ms >= before);
    tokend_token_page_free(&page);

    /* tokenctl show: text and JSON. */
    char cred_env[200];
    snprintf(cred_env, sizeof(cred_env), "TOKEND_CREDENTIAL=%s", p.admin);
    const char *env[] = {cred_env, NULL};
    const char *show[] = {harness_bin("tokenctl"), "--url", p.url, "show", id, NULL};
    char *out = NULL, *errt = NULL;
    CHECK_INT(harness_exec(show, NULL, env, &out, &errt), 0);
    CHECK(test_contains(out, "uses:       3"));
    CHECK(!test_contains(out, "last used:  never"));
    CHECK(test_contains(out, "name:       used"));
    free(out);
    free(errt);
    const char *show_json[] = {
        harness_bin("tokenctl"), "--url", p.url, "--json", "show", id, NULL};
    CHECK_INT(harness_exec(show_json, NULL, env, &out, &errt), 0);
    CHECK(test_contains(out, "\"use_count\":3"));
    CHECK(!test_contains(out, "\"last_used_at\":null"));
    CHECK(test_contains(out, id));
    free(out);
    free(errt);
    const char *show_none[] = {harness_bin("tokenctl"), "--url", p.url, "show",
                               "AAAAAAAAAAAAAAAA",      NULL};
    CHECK_INT(harness_exec(show_none, NULL, env, &out, &errt), 1);
    CHECK(test_contains(errt, "NOT_FOUND"));
    free(out);
    free(errt);
    const char *show_usage[] = {harness_bin("tokenctl"), "--url", p.url, "show", NULL};
    CHECK_INT(harness_exec(show_usage, NULL, env, &out, &errt), 2);
    free(out);
    free(errt);

    /* Who may read it. */
    const char *read_right[] = {"tokens:read"};
    char same[TOK], other[TOK], no_right[TOK];
    harness_create(admin, "partner:a", "reader a", read_right, 1, 0, same, sizeof(same),
                   NULL, 0);
    harness_create(admin, "partner:b", "reader b", read_right, 1, 0, other, sizeof(other),
                   NULL, 0);
    harness_create(admin, "partner:a", "no right", abilities, 1, 0, no_right,
                   sizeof(no_right), NULL, 0);
    tokend_client *as_same = harness_client(&p, same);
    tokend_client *as_other = harness_client(&p, other);
    tokend_client *as_none = harness_client(&p, no_right);
    tokend_client *anon = harness_client(&p, NULL);
    CHECK_INT(tokend_get(as_same, NULL, id, &info, &err), TOKEND_OK);
    CHECK_INT(info.use_count, 3);
    tokend_token_info_free(&info);
    CHECK_INT(tokend_get(as_other, NULL, id, &info, &err), TOKEND_NOT_FOUND);
    char other_msg[256];
    snprintf(other_msg, sizeof(other_msg), "%s", err.message);
    CHECK_INT(tokend_get(as_other, NULL, "AAAAAAAAAAAAAAAA", &info, &err),
              TOKEND_NOT_FOUND);
    CHECK_STR(err.message, other_msg); /* the same answer as for no token */
    CHECK_INT(tokend_get(as_none, NULL, id, &info, &err), TOKEND_PERMISSION_DENIED);
    CHECK_INT(tokend_get(as_none, NULL, "AAAAAAAAAAAAAAAA", &info, &err),
              TOKEND_PERMISSION_DENIED);
    CHECK_INT(tokend_get(anon, NULL, id, &info, &err), TOKEND_UNAUTHENTICATED);
    CHECK_INT(tokend_get(admin, NULL, "not-an-id", &info, &err), TOKEND_INVALID_ARGUMENT);
    CHECK_INT(tokend_get(admin, NULL, "", &info, &err), TOKEND_INVALID_ARGUMENT);
    CHECK(info.id == NULL); /* zeroed on error */
    /* A revoked token is gone. */
    CHECK_INT(tokend_revoke_id(admin, NULL, id, NULL, NULL), TOKEND_OK);
    CHECK_INT(tokend_get(admin, NULL, id, &info, &err), TOKEND_NOT_FOUND);
    tokend_close(anon);
    tokend_close(as_none);
    tokend_close(as_other);
    tokend_close(as_same);
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
}

/* Uses survive the flush and a restart: the count after is the count
 * before, not doubled (the flush moves them from memory to the store) nor
 * lost. */
TEST(get_token_usage_is_counted_once_across_flush_and_restart) {
    tokend_proc p;
    harness_init(&p);
    p.extra[0] = "--usage-flush-ms=50";
    REQUIRE(harness_start(&p));
    tokend_client *admin = harness_client(&p, p.admin);
    const char *abilities[] = {"orders:read"};
    char token[TOK], id[TOK];
    harness_create(admin, "partner:c", "flushed", abilities, 1, 0, token, sizeof(token),
                   id, sizeof(id));
    tokend_token_info info;
    for (int i = 0; i < 40; i++) {
        REQUIRE(tokend_verify(admin, NULL, token, NULL, 0, TOKEND_ABILITIES_ALL, NULL,
                              NULL) == TOKEND_OK);
        REQUIRE(tokend_get(admin, NULL, id, &info, NULL) == TOKEND_OK);
        CHECK_INT(info.use_count, (uint64_t)i + 1);
        tokend_token_info_free(&info);
        usleep(7 * 1000);
    }
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
    REQUIRE(harness_start(&p));
    admin = harness_client(&p, p.admin);
    REQUIRE(tokend_get(admin, NULL, id, &info, NULL) == TOKEND_OK);
    CHECK_INT(info.use_count, 40);
    CHECK(info.last_used_unix_ms > 0);
    tokend_token_info_free(&info);
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
}
