/*
 * test_cli.c — tokenctl as an operator uses it, against the real tokend:
 * output lines, --json shapes, exit codes, environment, and usage errors.
 */
#include <string.h>

#include "harness.h"
#include "test.h"
#include "token.h"

/* Runs tokenctl with `args` (NULL-terminated) against p, the admin
 * credential in the environment. Returns the exit code. */
static int ctl(const tokend_proc *p, const char *credential, const char *stdin_text,
               char **out, char **err, const char *const *args) {
    const char *argv[32] = {harness_bin("tokenctl")};
    size_t n = 1;
    for (size_t i = 0; args[i] != NULL && n < 31; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    static char url_env[400], cred_env[200];
    snprintf(url_env, sizeof(url_env), "TOKEND_URL=%s", p->url);
    snprintf(cred_env, sizeof(cred_env), "TOKEND_CREDENTIAL=%s",
             credential != NULL ? credential : "");
    const char *env[] = {url_env, cred_env, NULL};
    return harness_exec(argv, stdin_text, env, out, err);
}

#define CTL(p, cred, in, out, err, ...) \
    ctl((p), (cred), (in), (out), (err), (const char *const[]){__VA_ARGS__, NULL})

/* First line of s copied into buf. */
static void line_of(const char *s, int index, char *buf, size_t size) {
    buf[0] = '\0';
    for (int i = 0; s != NULL && i < index; i++) {
        s = strchr(s, '\n');
        s = s ? s + 1 : NULL;
    }
    if (s == NULL) {
        return;
    }
    size_t len = strcspn(s, "\n");
    if (len >= size) {
        len = size - 1;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
}

TEST(cli_create_verify_list_revoke) {
    tokend_proc p;
    harness_init(&p);
    REQUIRE(harness_start(&p));
    char *out = NULL, *err = NULL;
    CHECK_INT(CTL(&p, p.admin, NULL, &out, &err, "create", "--owner", "partner:acme",
                  "--name", "ERP sync", "--ability", "orders:read", "--ability",
                  "invoices:*", "--expires-in", "30d"),
              0);
    char token[128], id[64];
    line_of(out, 0, token, sizeof(token));
    line_of(out, 1, id, sizeof(id));
    CHECK(token_well_formed(token, strlen(token)));
    CHECK(token_id_ok(id, strlen(id)));
    CHECK(!test_contains(err, token));
    free(out);
    free(err);

    /* verify: valid (exit 0) with details, insufficient (exit 1, reason). */
    CHECK_INT(
        CTL(&p, NULL, NULL, &out, &err, "verify", token, "--ability", "orders:read"), 0);
    CHECK(test_contains(out, "partner:acme"));
    CHECK(test_contains(out, id));
    free(out);
    free(err);
    CHECK_INT(
        CTL(&p, NULL, NULL, &out, &err, "verify", token, "--ability", "orders:write"), 1);
    CHECK(test_contains(out, "INSUFFICIENT_ABILITY"));
    free(out);
    free(err);
    CHECK_INT(CTL(&p, NULL, NULL, &out, &err, "verify", token, "--ability",
                  "orders:write", "--ability", "orders:read", "--any"),
              0);
    free(out);
    free(err);
    /* The token from stdin keeps it out of argv. */
    char stdin_line[140];
    snprintf(stdin_line, sizeof(stdin_line), "%s\n", token);
    CHECK_INT(CTL(&p, NULL, stdin_line, &out, &err, "verify", "-"), 0);
    free(out);
    free(err);

    CHECK_INT(CTL(&p, p.admin, NULL, &out, &err, "list", "--owner", "partner:acme"), 0);
    CHECK(test_contains(out, id));
    CHECK(test_contains(out, "ERP sync"));
    CHECK(!test_contains(out, token));
    free(out);
    free(err);

    CHECK_INT(CTL(&p, p.admin, NULL, &out, &err, "revoke", id), 0);
    CHECK(test_contains(out, "1"));
    free(out);
    free(err);
    CHECK_INT(CTL(&p, NULL, NULL, &out, &err, "verify", token), 1);
    CHECK(test_contains(out, "NOT_FOUND"));
    free(out);
    free(err);
    harness_stop(&p);
}

TEST(cli_json_output) {
    tokend_proc p;
    harness_init(&p);
    REQUIRE(harness_start(&p));
    char *out = NULL, *err = NULL;
    CHECK_INT(CTL(&p, p.admin, NULL, &out, &err, "--json", "create", "--owner", "u:\"q\"",
                  "--name", "tab\\name", "--ability", "a:b", "--meta", "env=prod"),
              0);
    CHECK(test_contains(out, "\"token\":\"tkd_"));
    CHECK(test_contains(out, "\"owner\":\"u:\\\"q\\\"\""));
    CHECK(test_contains(out, "\"name\":\"tab\\\\name\""));
    CHECK(test_contains(out, "\"abilities\":[\"a:b\"]"));
    CHECK(test_contains(out, "\"expires_at\":null"));
    CHECK(test_contains(out, "\"env\":\"prod\""));
    const char *t = strstr(out, "\"token\":\"");
    REQUIRE(t != NULL);
    char token[128];
    t += 9;
    size_t len = strcspn(t, "\"");
    REQUIRE(len < sizeof(token));
    memcpy(token, t, len);
    token[len] = '\0';
    free(out);
    free(err);

    CHECK_INT(CTL(&p, NULL, NULL, &out, &err, "verify", token, "--json"), 0);
    CHECK(test_contains(out, "\"valid\":true"));
    CHECK(test_contains(out, "\"reason\":\"OK\""));
    free(out);
    free(err);
    CHECK_INT(CTL(&p, NULL, NULL, &out, &err, "verify", "tkd_nope", "--json"), 1);
    CHECK(test_contains(out, "\"valid\":false"));
    CHECK(test_contains(out, "\"reason\":\"MALFORMED\""));
    free(out);
    free(err);
    CHECK_INT(CTL(&p, p.admin, NULL, &out, &err, "list", "--owner", "u:\"q\"", "--json"),
              0);
    CHECK(test_contains(out, "\"tokens\":["));
    CHECK(test_contains(out, "\"next_cursor\":null"));
    free(out);
    free(err);
    CHECK_INT(CTL(&p, p.admin, NULL, &out, &err, "revoke", "--owner", "u:\"q\"", "--all",
                  "--json"),
              0);
    CHECK(test_contains(out, "\"revoked\":1"));
    free(out);
    free(err);
    harness_stop(&p);
}

TEST(cli_revoke_token_and_list_all_pages) {
    tokend_proc p;
    harness_init(&p);
    REQUIRE(harness_start(&p));
    char *out = NULL, *err = NULL;
    char token[128] = "";
    for (int i = 0; i < 5; i++) {
        CHECK_INT(CTL(&p, p.admin, NULL, &out, &err, "create", "--owner", "o:pages",
                      "--name", "n", "--ability", "x:y"),
                  0);
        line_of(out, 0, token, sizeof(token));
        free(out);
        free(err);
    }
    CHECK_INT(CTL(&p, p.admin, NULL, &out, &err, "list", "--owner", "o:pages", "--limit",
                  "2", "--all", "--json"),
              0);
    int count = 0;
    for (const char *s = out; (s = strstr(s, "\"id\":")) != NULL; s++) {
        count++;
    }
    CHECK_INT(count, 5);
    free(out);
    free(err);
    CHECK_INT(CTL(&p, NULL, NULL, &out, &err, "revoke", "--token", token), 0);
    free(out);
    free(err);
    CHECK_INT(CTL(&p, NULL, NULL, &out, &err, "verify", token), 1);
    free(out);
    free(err);
    harness_stop(&p);
}

TEST(cli_refusals_and_usage_errors) {
    tokend_proc p;
    harness_init(&p);
    REQUIRE(harness_start(&p));
    char *out = NULL, *err = NULL;
    /* No credential: the service refuses (exit 1, status on stderr). */
    CHECK_INT(CTL(&p, NULL, NULL, &out, &err, "list", "--owner", "x"), 1);
    CHECK(test_contains(err, "UNAUTHENTICATED"));
    free(out);
    free(err);
    /* Usage errors: exit 2, a hint, nothing on stdout. */
    const char *const cases[][6] = {
        {"frobnicate", NULL},
        {"create", "--name", "n", "--ability", NULL},
        {"create", "--owner", "o", "--name", "n", NULL}, /* no ability */
        {"create", "--owner", "o", "--name", "n", "--ability"},
        {"verify", NULL},
        {"revoke", "--owner", "o", NULL}, /* --all missing */
        {"list", "--limit", "zero", NULL},
        {"--timeout", "-5", "list", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *argv[8] = {0};
        for (size_t k = 0; k < 6 && cases[i][k] != NULL; k++) {
            argv[k] = cases[i][k];
        }
        int rc = ctl(&p, p.admin, NULL, &out, &err, argv);
        if (rc != 2) {
            fprintf(stderr, "    case %zu (%s): exit %d\n", i, cases[i][0], rc);
        }
        CHECK_INT(rc, 2);
        CHECK(err != NULL && strlen(err) > 0);
        CHECK_STR(out, "");
        free(out);
        free(err);
    }
    CHECK_INT(CTL(&p, p.admin, NULL, &out, &err, "create", "--owner", "o", "--name", "n",
                  "--ability", "a", "--expires-in", "ten days"),
              2);
    CHECK(test_contains(err, "expires-in"));
    free(out);
    free(err);
    /* An ability that is not one: tokend says which and why (exit 1). */
    CHECK_INT(CTL(&p, p.admin, NULL, &out, &err, "create", "--owner", "o", "--name", "n",
                  "--ability", "orders:read", "--ability", "orders:x,invoices:write"),
              1);
    CHECK(test_contains(err,
                        "INVALID_ARGUMENT: abilities[1]: \"orders:x,invoices:write\" "
                        "is not an ability: ',' at offset 8 is not allowed"));
    CHECK_STR(out, "");
    free(out);
    free(err);
    CHECK_INT(CTL(&p, p.admin, NULL, &out, &err, "verify", p.admin, "--ability", "a b"),
              1);
    CHECK(
        test_contains(err, "INVALID_ARGUMENT: abilities[0]: \"a b\" is not an ability"));
    free(out);
    free(err);
    /* --help on every command, exit 0. */
    const char *cmds[] = {"create", "verify", "list", "revoke"};
    for (size_t i = 0; i < 4; i++) {
        CHECK_INT(CTL(&p, NULL, NULL, &out, &err, cmds[i], "--help"), 0);
        CHECK(test_contains(out, "Usage"));
        free(out);
        free(err);
    }
    CHECK_INT(CTL(&p, NULL, NULL, &out, &err, "--help"), 0);
    CHECK(test_contains(out, "TOKEND_URL"));
    free(out);
    free(err);
    harness_stop(&p);
}

TEST(cli_unavailable_service_exits_3) {
    tokend_proc p;
    harness_init(&p); /* not started */
    char *out = NULL, *err = NULL;
    CHECK_INT(CTL(&p, NULL, NULL, &out, &err, "--timeout", "300", "verify", "tkd_x"), 3);
    CHECK(strlen(err) > 0);
    free(out);
    free(err);
    CHECK_INT(CTL(&p, NULL, NULL, &out, &err, "--url", "bogus://x", "verify", "tkd_x"),
              2);
    free(out);
    free(err);
}
