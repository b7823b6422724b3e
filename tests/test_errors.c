/*
 * test_errors.c — what a user meets when something is wrong, with the
 * real binaries: a service that is not running is reported at once while a
 * slow one gets its whole time limit, and the error texts of the common
 * slips (a URL without a scheme, a data dir in use, serve before init, a
 * config key spelt with '_' or mistyped, tokenctl --json) say what to do.
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "test.h"
#include "tokend.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs tokenctl with `args` (NULL-terminated) and no TOKEND_* environment
 * but `env`; *seconds gets the wall time. */
static int ctl_timed(const char *const *args, const char *const *env, char **out,
                     char **err, double *seconds) {
    const char *argv[32] = {harness_bin("tokenctl")};
    size_t n = 1;
    for (size_t i = 0; args[i] != NULL && n < 31; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    double t0 = now_s();
    int rc = harness_exec(argv, NULL, env, out, err);
    *seconds = now_s() - t0;
    return rc;
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Runs a program (argv NULL-terminated) and returns its exit status, with
 * stderr in *err (stdout dropped). */
static int run(const char *const *argv, char **err) {
    char *out = NULL;
    int rc = harness_exec(argv, NULL, NULL, &out, err);
    free(out);
    return rc;
}

/* A TCP port on 127.0.0.1 whose listener completes connections (the
 * kernel does, from its backlog) but never reads or writes: a service
 * that is there and does not answer. Returns the socket; *port its port. */
static int silent_listener(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    REQUIRE(listen(fd, 16) == 0);
    socklen_t len = sizeof sa;
    REQUIRE(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* The one JSON error object tokenctl --json writes on stderr: checks its
 * shape and returns its status name (static) and *code. */
static const char *json_error_status(const char *text, int *code, char *message,
                                     size_t size) {
    static char status[64];
    status[0] = '\0';
    *code = -1;
    json_error_t jerr;
    json_t *doc = json_loads(text != NULL ? text : "", 0, &jerr);
    if (doc == NULL) {
        test_fail(__FILE__, __LINE__, "stderr is not one JSON object: %s", text);
        return status;
    }
    json_t *e = json_object_get(doc, "error");
    json_t *s = json_object_get(e, "status");
    json_t *c = json_object_get(e, "code");
    json_t *m = json_object_get(e, "message");
    CHECK(json_object_size(doc) == 1 && json_object_size(e) == 3);
    if (json_is_string(s) && json_is_integer(c) && json_is_string(m)) {
        snprintf(status, sizeof status, "%s", json_string_value(s));
        *code = (int)json_integer_value(c);
        snprintf(message, size, "%s", json_string_value(m));
    } else {
        test_fail(__FILE__, __LINE__, "error object lacks status, code or message: %s",
                  text);
    }
    json_decref(doc);
    return status;
}

TEST(errors_refused_connection_fails_at_once) {
    /* Nothing listens on a port that was free a moment ago, nor at the
     * socket path of a tokend that was never started. */
    int port = harness_free_port();
    char url[64], want[160];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    char *out = NULL, *err = NULL;
    double seconds = 0;
    CHECK_INT(ctl_timed(ARGS("--url", url, "--timeout", "5000", "list"), NULL, &out, &err,
                        &seconds),
              3);
    snprintf(want, sizeof want,
             "tokenctl: UNAVAILABLE: connection refused: is tokend running at %s?\n",
             url);
    CHECK_STR(err, want);
    CHECK(seconds < 1.5); /* against a 5 s limit: at once, not at the deadline */
    free(out);
    free(err);

    tokend_proc p;
    harness_init(&p); /* not started: no socket file */
    CHECK_INT(ctl_timed(ARGS("--url", p.url, "--timeout", "5000", "verify", "tkd_x"),
                        NULL, &out, &err, &seconds),
              3);
    CHECK(test_contains(err, "connection refused: is tokend running at ipc://"));
    CHECK(seconds < 1.5);
    free(out);
    free(err);

    /* libtokend says the same, and the same client works once tokend is
     * up, and fails at once again after it stopped. */
    tokend_options opts = {
        .urls = (const char *const[]){p.url}, .n_urls = 1, .timeout_ms = 5000};
    tokend_client *c = NULL;
    tokend_error e;
    REQUIRE(tokend_connect(&opts, &c, &e) == TOKEND_OK);
    double t0 = now_s();
    CHECK_INT(tokend_verify(c, NULL, "x", NULL, 0, TOKEND_ABILITIES_ALL, NULL, &e),
              TOKEND_UNAVAILABLE);
    CHECK(test_contains(e.message, "connection refused"));
    CHECK(now_s() - t0 < 1.5);
    REQUIRE(harness_start(&p));
    t0 = now_s();
    int rv;
    while ((rv = tokend_verify(c, NULL, "x", NULL, 0, TOKEND_ABILITIES_ALL, NULL, &e)) ==
               TOKEND_UNAVAILABLE &&
           now_s() - t0 < 5.0) {
        usleep(20 * 1000);
    }
    CHECK_INT(rv, TOKEND_MALFORMED); /* the service answered */
    CHECK(now_s() - t0 < 2.0);
    harness_stop(&p);
    t0 = now_s();
    while ((rv = tokend_verify(c, NULL, "x", NULL, 0, TOKEND_ABILITIES_ALL, NULL, &e)) !=
               TOKEND_UNAVAILABLE &&
           now_s() - t0 < 5.0) {
        usleep(20 * 1000);
    }
    CHECK_INT(rv, TOKEND_UNAVAILABLE);
    t0 = now_s();
    CHECK_INT(tokend_verify(c, NULL, "x", NULL, 0, TOKEND_ABILITIES_ALL, NULL, &e),
              TOKEND_UNAVAILABLE);
    CHECK(test_contains(e.message, "connection refused"));
    CHECK(now_s() - t0 < 1.5);
    tokend_close(c);
}

TEST(errors_slow_service_gets_the_full_timeout) {
    /* A listener that takes the connection and never answers. */
    int port = 0;
    int fd = silent_listener(&port);
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    char *out = NULL, *err = NULL;
    double seconds = 0;
    CHECK_INT(ctl_timed(ARGS("--url", url, "--timeout", "1000", "list"), NULL, &out, &err,
                        &seconds),
              3);
    CHECK(test_contains(err, "could not reach"));
    CHECK(!test_contains(err, "refused"));
    CHECK(seconds >= 0.95);
    free(out);
    free(err);
    close(fd);

    /* A tokend that is stopped (SIGSTOP): its socket is there, nothing
     * answers. */
    tokend_proc p;
    harness_init(&p);
    REQUIRE(harness_start(&p));
    REQUIRE(kill(p.pid, SIGSTOP) == 0);
    CHECK_INT(ctl_timed(ARGS("--url", p.url, "--timeout", "800", "verify", "tkd_x"), NULL,
                        &out, &err, &seconds),
              3);
    kill(p.pid, SIGCONT);
    CHECK(!test_contains(err, "refused"));
    CHECK(test_contains(err, "within 800 ms"));
    CHECK(seconds >= 0.75);
    free(out);
    free(err);
    harness_stop(&p);
}

TEST(errors_urls_without_a_scheme_say_which_to_use) {
    char *out = NULL, *err = NULL;
    double seconds = 0;
    CHECK_INT(
        ctl_timed(ARGS("--url", "127.0.0.1:7450", "list"), NULL, &out, &err, &seconds),
        2);
    CHECK(test_contains(err, "tokenctl: --url \"127.0.0.1:7450\" has no scheme: use "
                             "tcp://127.0.0.1:7450\n"));
    CHECK(!test_contains(err, "Invalid argument"));
    free(out);
    free(err);
    CHECK_INT(ctl_timed(ARGS("list"), ARGS("TOKEND_URL=/run/tokend.sock"), &out, &err,
                        &seconds),
              2);
    CHECK(test_contains(err, "TOKEND_URL \"/run/tokend.sock\" has no scheme: use "
                             "ipc:///run/tokend.sock"));
    free(out);
    free(err);

    tokend_proc p;
    harness_init(&p);
    const char *serve[] = {
        harness_bin("tokend"), "serve", "--data-dir", p.data_dir, "--listen",
        "127.0.0.1:7462",      NULL};
    CHECK_INT(run(serve, &err), 2);
    CHECK_STR(err, "tokend: flag: --listen \"127.0.0.1:7462\" has no scheme: use "
                   "tcp://127.0.0.1:7462\n");
    free(err);
    const char *gateway[] = {harness_bin("tokend-gateway"), "--service", "127.0.0.1:7450",
                             NULL};
    CHECK_INT(run(gateway, &err), 2);
    CHECK_STR(err,
              "tokend-gateway: flag: --service \"127.0.0.1:7450\" has no scheme: use "
              "tcp://127.0.0.1:7450\n");
    free(err);

    /* libtokend's own refusal says the same. */
    tokend_options opts = {.urls = (const char *const[]){"127.0.0.1:7450"}, .n_urls = 1};
    tokend_client *c = NULL;
    tokend_error e;
    CHECK_INT(tokend_connect(&opts, &c, &e), TOKEND_INVALID_ARGUMENT);
    CHECK(test_contains(e.message, "use tcp://127.0.0.1:7450"));
}

/* Lines in s. */
static int lines_in(const char *s) {
    int n = 0;
    for (; s != NULL && *s != '\0'; s++) {
        n += *s == '\n';
    }
    return n;
}

TEST(errors_data_dir_in_use_missing_or_empty) {
    tokend_proc p;
    harness_init(&p);
    REQUIRE(harness_start(&p));
    char *err = NULL;
    char want[1200];
    snprintf(want, sizeof want,
             "tokend: the data dir %s is in use by a running tokend: "
             "stop it first, or give another --data-dir",
             p.data_dir);
    const char *init[] = {harness_bin("tokend"), "init", "--data-dir", p.data_dir, NULL};
    CHECK_INT(run(init, &err), 1);
    CHECK(test_contains(err, want));
    CHECK(!test_contains(err, "IO error") && !test_contains(err, "While lock"));
    CHECK_INT(lines_in(err), 1);
    free(err);
    /* A second serve of the same dir. */
    char sock[400];
    snprintf(sock, sizeof sock, "ipc://%s/second.sock", p.dir);
    const char *serve[] = {
        harness_bin("tokend"), "serve", "--data-dir", p.data_dir, "--listen", sock, NULL};
    CHECK_INT(run(serve, &err), 1);
    CHECK(test_contains(err, want));
    CHECK_INT(lines_in(err), 1);
    free(err);
    harness_stop(&p);

    /* serve before init: one sentence naming the command that fixes it. */
    char empty[400], missing[400];
    snprintf(empty, sizeof empty, "%s/empty", test_tmpdir());
    REQUIRE(mkdir(empty, 0700) == 0);
    const char *serve_empty[] = {harness_bin("tokend"), "serve", "--data-dir", empty,
                                 NULL};
    CHECK_INT(run(serve_empty, &err), 1);
    snprintf(want, sizeof want,
             "tokend: %s holds no initialised tokend store: create one first with tokend "
             "init --data-dir %s\n",
             empty, empty);
    CHECK_STR(err, want);
    free(err);
    snprintf(missing, sizeof missing, "%s/missing", test_tmpdir());
    const char *serve_missing[] = {harness_bin("tokend"), "serve", "--data-dir", missing,
                                   NULL};
    CHECK_INT(run(serve_missing, &err), 1);
    snprintf(want, sizeof want,
             "tokend: the data dir %s does not exist: create a store there first with "
             "tokend init --data-dir %s\n",
             missing, missing);
    CHECK_STR(err, want);
    free(err);
    struct stat sb;
    CHECK(stat(missing, &sb) != 0); /* serve made nothing */
}

/* Writes `text` to a new config file; returns its path (static). */
static const char *config_file(const char *text) {
    static char path[400];
    snprintf(path, sizeof path, "%s/tokend.conf", test_tmpdir());
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    fputs(text, f);
    fclose(f);
    return path;
}

TEST(errors_config_keys_in_either_spelling) {
    char dir[400];
    snprintf(dir, sizeof dir, "%s/data", test_tmpdir());
    /* Both spellings set their option: the admin token's owner and the
     * prefix of the token init prints. */
    const char *path = config_file("admin_owner = root\ntoken-prefix = cfg_\n"
                                   "log_level = warn\n");
    const char *init[] = {
        harness_bin("tokend"), "init", "--data-dir", dir, "--config", path, NULL};
    char *out = NULL, *err = NULL;
    CHECK_INT(harness_exec(init, NULL, NULL, &out, &err), 0);
    CHECK(strncmp(out, "cfg_", 4) == 0);
    CHECK(test_contains(err, "owner root"));
    free(out);
    free(err);

    /* A slip names the key that was meant. */
    path = config_file("log_level = warn\nlog_lvel = debug\n");
    const char *typo[] = {
        harness_bin("tokend"), "serve", "--data-dir", dir, "--config", path, NULL};
    CHECK_INT(run(typo, &err), 2);
    char want[800];
    snprintf(
        want, sizeof want,
        "tokend: %s:2: unknown option \"log_lvel\" (did you mean log-level? the keys "
        "are the options of --help without \"--\")\n"
        "The keys a config file may set (\"name = value\"; '_' may stand for '-'):\n",
        path);
    /* Then every key the file may set, and only those (not "config"). */
    CHECK(err != NULL && strncmp(err, want, strlen(want)) == 0);
    const char *keys =
        err != NULL && strlen(err) >= strlen(want) ? err + strlen(want) : "";
    CHECK(test_contains(keys, " data-dir "));
    CHECK(test_contains(keys, " log-level"));
    CHECK(test_contains(keys, " max-tokens-per-owner"));
    CHECK(test_contains(keys, " allow-core-dumps"));
    CHECK(test_contains(keys, " alert-webhook-timeout-ms"));
    CHECK(keys[0] != '\0' && keys[strlen(keys) - 1] == '\n'); /* whole lines */
    CHECK(!test_contains(keys, "config"));
    free(err);
    const char *flag[] = {harness_bin("tokend"), "serve", "--log_level", "warn", NULL};
    CHECK_INT(run(flag, &err), 2);
    CHECK_STR(err,
              "tokend: unknown option \"--log_level\" (did you mean --log-level? see "
              "--help)\n");
    free(err);
}

TEST(errors_tokenctl_json_errors) {
    char *out = NULL, *err = NULL;
    double seconds = 0;
    char message[300];
    int code = 0;
    /* A usage error, even one before --json on the line. */
    CHECK_INT(ctl_timed(ARGS("list", "--bogus", "--json"), NULL, &out, &err, &seconds),
              2);
    CHECK_STR(json_error_status(err, &code, message, sizeof message), "INVALID_ARGUMENT");
    CHECK_INT(code, TOKEND_INVALID_ARGUMENT);
    CHECK_STR(message, "unknown flag '--bogus' for list");
    CHECK_STR(out, "");
    free(out);
    free(err);
    CHECK_INT(ctl_timed(ARGS("--json", "--url", "127.0.0.1:7450", "list"), NULL, &out,
                        &err, &seconds),
              2);
    CHECK_STR(json_error_status(err, &code, message, sizeof message), "INVALID_ARGUMENT");
    CHECK(test_contains(message, "use tcp://127.0.0.1:7450"));
    free(out);
    free(err);

    /* Unreachable: exit 3. */
    tokend_proc p;
    harness_init(&p);
    CHECK_INT(
        ctl_timed(ARGS("--json", "--url", p.url, "list"), NULL, &out, &err, &seconds), 3);
    CHECK_STR(json_error_status(err, &code, message, sizeof message), "UNAVAILABLE");
    CHECK_INT(code, TOKEND_UNAVAILABLE);
    CHECK(test_contains(message, "connection refused"));
    free(out);
    free(err);

    /* Refused by the service: exit 1; the credential sent is not in it. */
    REQUIRE(harness_start(&p));
    char bogus[128];
    snprintf(bogus, sizeof bogus, "%.*sX", (int)strlen(p.admin) - 1, p.admin);
    CHECK_INT(ctl_timed(ARGS("--json", "--url", p.url, "--credential", bogus, "list"),
                        NULL, &out, &err, &seconds),
              1);
    const char *status = json_error_status(err, &code, message, sizeof message);
    CHECK(strcmp(status, "UNAUTHENTICATED") == 0 || strcmp(status, "MALFORMED") == 0);
    CHECK(code == TOKEND_UNAUTHENTICATED || code == TOKEND_MALFORMED);
    CHECK(!test_contains(err, bogus) && !test_contains(err, p.admin));
    CHECK_STR(out, "");
    free(out);
    free(err);
    /* Without --json, the text line as before. */
    CHECK_INT(ctl_timed(ARGS("--url", p.url, "--credential", bogus, "list"), NULL, &out,
                        &err, &seconds),
              1);
    CHECK(strncmp(err, "tokenctl: ", 10) == 0 && err[10] != '{');
    free(out);
    free(err);
    harness_stop(&p);
}
