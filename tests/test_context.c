/*
 * test_context.c — the request context on its way to tokend: the gateway
 * filling it from what a trusted proxy forwards (nginx, Caddy and Traefik
 * headers, X-Forwarded-For chains) or from the request itself, ignoring
 * forwarded headers from any other peer; tokenctl verify's context flags;
 * the service refusing a context past its bounds; and a real Caddy
 * (forward_auth) in front of an upstream. What tokend received is read
 * from its debug line of each Verify (route= client=).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "test.h"
#include "token.h"

#define TOK 128
/* RequestContext.path's bound (tokend.proto). */
#define ROUTE_PATH_TEST 2048

static const char *const orders_read[] = {"orders:read"};
static const char *const invoices_read[] = {"invoices:read"};

/* printf into one of 16 rotating static buffers. */
static const char *fmt(const char *format, ...) __attribute__((format(printf, 1, 2)));

static const char *fmt(const char *format, ...) {
    static char bufs[16][8192];
    static int next;
    char *buf = bufs[next++ % 16];
    va_list ap;
    va_start(ap, format);
    vsnprintf(buf, sizeof(bufs[0]), format, ap);
    va_end(ap);
    return buf;
}

typedef struct fixture {
    tokend_proc p;
    gateway_proc g;
    tokend_client *admin;
    char good[TOK]; /* partner:acme, orders:read */
    char weak[TOK]; /* partner:acme, invoices:read */
} fixture;

/* tokend at --log-level debug (so each Verify's line shows its context)
 * and a gateway with `flags` (NULL-terminated, may be NULL). */
static void fixture_start(fixture *f, const char *const *flags) {
    memset(f, 0, sizeof(*f));
    harness_init(&f->p);
    f->p.extra[0] = "--log-level";
    f->p.extra[1] = "debug";
    REQUIRE(harness_start(&f->p));
    for (size_t i = 0; flags != NULL && flags[i] != NULL && i < 23; i++) {
        f->g.extra[i] = flags[i];
    }
    REQUIRE(harness_gateway_start(&f->g, f->p.url, 0));
    f->admin = harness_client(&f->p, f->p.admin);
    harness_create(f->admin, "partner:acme", "orders", orders_read, 1, 0, f->good,
                   sizeof(f->good), NULL, 0);
    harness_create(f->admin, "partner:acme", "invoices", invoices_read, 1, 0, f->weak,
                   sizeof(f->weak), NULL, 0);
}

static void fixture_stop(fixture *f) {
    tokend_close(f->admin);
    if (f->g.pid != 0) {
        CHECK_INT(harness_gateway_stop(&f->g), 0);
    }
    if (f->p.pid != 0) {
        harness_stop(&f->p);
    }
}

#define FLAGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* True once tokend's log holds `needle`: a Verify's line is written just
 * after its reply, so it may come a moment after curl returns. */
static bool log_has(const tokend_proc *p, const char *needle) {
    for (int i = 0; i < 250; i++) {
        char *log = harness_read_file(p->log_path);
        bool found = test_contains(log, needle);
        free(log);
        if (found) {
            return true;
        }
        usleep(20 * 1000);
    }
    return false;
}

/* CHECKs that tokend logged a Verify with this route and client. */
#define CHECK_SEEN(f, route, client)                                          \
    do {                                                                      \
        const char *want_ = fmt("route=\"%s\" client=%s", (route), (client)); \
        if (!log_has(&(f)->p, want_)) {                                       \
            test_fail(__FILE__, __LINE__, "tokend never logged %s", want_);   \
        }                                                                     \
    } while (0)

static const char *bearer(const char *token) {
    return fmt("Authorization: Bearer %s", token);
}

static const char *auth_url(const fixture *f) {
    return fmt("%s/v1/auth?ability=orders:read", f->g.base);
}

/* No plain-text token ever reaches tokend's log, whatever came with it. */
static void check_log_clean(const fixture *f) {
    char *log = harness_read_file(f->p.log_path);
    CHECK(log != NULL && !test_contains(log, f->good));
    CHECK(f->weak[0] == '\0' || !test_contains(log, f->weak));
    free(log);
}

/* ------------------------------------------------------------------------
 * The gateway. */

TEST(context_trusted_proxy_nginx_and_caddy_headers) {
    fixture f;
    fixture_start(&f, NULL); /* default: loopback is trusted */
    http_res r = {0};
    /* nginx auth_request: X-Original-*, X-Real-IP. */
    CHECK_INT(CURL(&r, auth_url(&f), "-H", bearer(f.good), "-H",
                   "X-Original-Method: POST", "-H", "X-Original-URI: /orders/42?secret=x",
                   "-H", "X-Real-IP: 203.0.113.7", "-H", "User-Agent: ctx-test/1"),
              200);
    CHECK_SEEN(&f, "POST /orders/{id}", "203.0.113.7");
    /* Caddy and Traefik: X-Forwarded-*, the client in X-Forwarded-For. */
    CHECK_INT(CURL(&r, auth_url(&f), "-H", bearer(f.good), "-H",
                   "X-Forwarded-Method: DELETE", "-H",
                   "X-Forwarded-Uri: /invoices/9/lines", "-H",
                   "X-Forwarded-For: 198.51.100.9"),
              200);
    CHECK_SEEN(&f, "DELETE /invoices/{id}/lines", "198.51.100.9");
    /* IPv6 clients, written in their canonical form. */
    CHECK_INT(CURL(&r, auth_url(&f), "-H", bearer(f.good), "-H", "X-Forwarded-Uri: /v6",
                   "-H", "X-Real-IP: 2001:DB8:0:0::1"),
              200);
    CHECK_SEEN(&f, "/v6", "2001:db8::1");
    /* An X-Real-IP that is no address is ignored: the peer is the client. */
    CHECK_INT(CURL(&r, auth_url(&f), "-H", bearer(f.good), "-H", "X-Original-URI: /badip",
                   "-H", "X-Original-Method: GET", "-H", "X-Real-IP: not-an-address"),
              200);
    CHECK_SEEN(&f, "GET /badip", "127.0.0.1");
    /* The verdict is the token's, whatever the context: weak is 403. */
    CHECK_INT(CURL(&r, auth_url(&f), "-H", bearer(f.weak), "-H", "X-Original-URI: /weak",
                   "-H", "X-Original-Method: GET"),
              403);
    CHECK_SEEN(&f, "GET /weak", "127.0.0.1");
    /* Without forwarded method and URI the check's own request is the
     * context. */
    CHECK_INT(CURL(&r, auth_url(&f), "-H", bearer(f.good)), 200);
    CHECK_SEEN(&f, "GET /v1/auth", "127.0.0.1");
    res_free(&r);
    check_log_clean(&f);
    fixture_stop(&f);
}

TEST(context_untrusted_peer_forwarded_headers_are_ignored) {
    /* The tests' peer is 127.0.0.1: not in the networks named. */
    fixture f;
    fixture_start(
        &f, FLAGS("--trusted-proxy", "192.0.2.0/24", "--trusted-proxy", "2001:db8::/32"));
    http_res r = {0};
    CHECK_INT(CURL(&r, auth_url(&f), "-H", bearer(f.good), "-H",
                   "X-Original-Method: POST", "-H", "X-Original-URI: /orders/1", "-H",
                   "X-Real-IP: 203.0.113.7", "-H", "X-Forwarded-For: 198.51.100.9", "-H",
                   "X-Forwarded-Method: PUT", "-H", "X-Forwarded-Uri: /spoofed"),
              200);
    CHECK_SEEN(&f, "GET /v1/auth", "127.0.0.1");
    CHECK_INT(CURL(&r, fmt("%s/v1/tokens/self", f.g.base), "-H", bearer(f.good), "-H",
                   "X-Forwarded-For: 198.51.100.10"),
              200);
    CHECK_SEEN(&f, "GET /v1/tokens/self", "127.0.0.1");
    res_free(&r);
    char *log = harness_read_file(f.p.log_path);
    CHECK(!test_contains(log, "203.0.113.7") && !test_contains(log, "198.51.100"));
    CHECK(!test_contains(log, "/spoofed") && !test_contains(log, "POST /orders"));
    free(log);
    fixture_stop(&f);
}

TEST(context_x_forwarded_for_chains) {
    fixture f;
    fixture_start(&f, FLAGS("--trusted-proxy", "127.0.0.0/8", "--trusted-proxy",
                            "10.0.0.0/8", "--trusted-proxy", "fd00::/8"));
    http_res r = {0};
    static const struct {
        const char *path, *xff, *client;
    } cases[] = {
        /* The right-most address that is no proxy of ours. */
        {"/chain-a", "203.0.113.1, 10.1.2.3, 127.0.0.5", "203.0.113.1"},
        /* What the client wrote itself, left of it, is not believed. */
        {"/chain-b", "6.6.6.6, 203.0.113.50, 10.0.0.9", "203.0.113.50"},
        /* Values that are no address are skipped. */
        {"/chain-c", "junk, 198.51.100.2, not-an-ip, 10.0.0.1", "198.51.100.2"},
        /* All proxies of ours: the furthest is the client. */
        {"/chain-d", "10.0.0.1, 127.0.0.2", "10.0.0.1"},
        /* IPv6 hops. */
        {"/chain-e", "2001:db8::7, fd00::1", "2001:db8::7"},
        /* Nothing usable: the peer. */
        {"/chain-f", "garbage, ,", "127.0.0.1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK_INT(CURL(&r, auth_url(&f), "-H", bearer(f.good), "-H",
                       fmt("X-Forwarded-Uri: %s", cases[i].path), "-H",
                       "X-Forwarded-Method: GET", "-H",
                       fmt("X-Forwarded-For: %s", cases[i].xff)),
                  200);
        CHECK_SEEN(&f, fmt("GET %s", cases[i].path), cases[i].client);
    }
    /* Two X-Forwarded-For headers are one list, the later one right-most. */
    CHECK_INT(CURL(&r, auth_url(&f), "-H", bearer(f.good), "-H", "X-Forwarded-Uri: /two",
                   "-H", "X-Forwarded-Method: GET", "-H", "X-Forwarded-For: 203.0.113.99",
                   "-H", "X-Forwarded-For: 10.9.9.9"),
              200);
    CHECK_SEEN(&f, "GET /two", "203.0.113.99");
    /* The gateway's own REST calls believe the client of a trusted proxy
     * too, but their method and path are the request's own. */
    CHECK_INT(CURL(&r, fmt("%s/v1/tokens/self", f.g.base), "-H", bearer(f.good), "-H",
                   "X-Forwarded-For: 192.0.2.44, 10.0.0.3", "-H",
                   "X-Forwarded-Uri: /not-this"),
              200);
    CHECK_SEEN(&f, "GET /v1/tokens/self", "192.0.2.44");
    res_free(&r);
    fixture_stop(&f);
}

/* n letters without a digit (static): a segment the route keeps. */
static const char *repeat_letters(size_t n) {
    static char buf[128];
    REQUIRE(n < sizeof buf);
    for (size_t i = 0; i < n; i++) {
        buf[i] = (char)('a' + i % 26);
    }
    buf[n] = '\0';
    return buf;
}

TEST(context_gateway_management_calls_carry_the_request) {
    fixture f;
    fixture_start(&f, NULL);
    http_res r = {0};
    const char *xff = "X-Forwarded-For: 192.0.2.81";
    const char *admin = bearer(f.p.admin);
    CHECK_INT(CURL(&r, fmt("%s/v1/tokens?owner=partner:acme", f.g.base), "-H", admin,
                   "-H", xff),
              200);
    CHECK_SEEN(&f, "GET /v1/tokens", "192.0.2.81");
    CHECK_INT(CURL(&r, fmt("%s/v1/tokens", f.g.base), "-X", "POST", "-H", admin, "-H",
                   "Content-Type: application/json", "-H", "X-Real-IP: 192.0.2.82", "-d",
                   "{\"name\":\"n\",\"owner\":\"partner:acme\",\"abilities\":[\"orders:"
                   "read\"]}"),
              201);
    CHECK_SEEN(&f, "POST /v1/tokens", "192.0.2.82");
    /* Without forwarded headers: the peer. */
    char id[64];
    snprintf(id, sizeof id, "%s",
             test_contains(r.body, "\"id\":\"") ? strstr(r.body, "\"id\":\"") + 6 : "");
    REQUIRE(strlen(id) > 16);
    id[16] = '\0';
    CHECK_INT(CURL(&r, fmt("%s/v1/tokens/%s", f.g.base, id), "-X", "DELETE", "-H", admin),
              204);
    /* The id is "{id}" in the route unless it happens to hold no digit. */
    CHECK(log_has(&f.p, "route=\"DELETE /v1/tokens/"));
    CHECK(log_has(&f.p, fmt("client=127.0.0.1 id=%s", id)));
    res_free(&r);
    /* libtokend's management calls carry a context as given. */
    tokend_request_context ctx = {.method = "GET",
                                  .path = "/admin/list?all=1",
                                  .client_ip = "2001:db8::99",
                                  .user_agent = "ops"};
    tokend_call call = {.context = &ctx};
    tokend_token_page page;
    CHECK_INT(tokend_list(f.admin, &call, "partner:acme", 0, NULL, &page, NULL),
              TOKEND_OK);
    tokend_token_page_free(&page);
    CHECK_SEEN(&f, "GET /admin/list", "2001:db8::99");
    check_log_clean(&f);
    fixture_stop(&f);
}

TEST(context_over_long_and_odd_values_still_verify) {
    fixture f;
    fixture_start(&f, NULL);
    http_res r = {0};
    /* A path far past 2048 bytes is cut, never refused. */
    char uri[6001];
    strcpy(uri, "/long/");
    memset(uri + 6, 'a', sizeof(uri) - 7);
    uri[sizeof(uri) - 1] = '\0';
    CHECK_INT(CURL(&r, auth_url(&f), "-H", bearer(f.good), "-H",
                   fmt("X-Original-URI: %s", uri), "-H", "X-Original-Method: GET", "-H",
                   "X-Real-IP: 192.0.2.61"),
              200);
    CHECK_SEEN(&f, "GET /long/{id}", "192.0.2.61");
    /* A user agent past 256 bytes, cut in the middle of a UTF-8 sequence
     * ("é" is 2 bytes at 255..256), a method that is no HTTP token and a
     * URI that is not UTF-8: all fitted or left out, the token verified. */
    char ua[400];
    strcpy(ua, "User-Agent: ");
    size_t k = strlen(ua);
    memset(ua + k, 'u', 255);
    strcpy(ua + k + 255, "\xc3\xa9tail-past-the-bound");
    CHECK_INT(CURL(&r, auth_url(&f), "-H", bearer(f.good), "-H", ua, "-H",
                   "X-Original-Method: GET /x", "-H", "X-Original-URI: /odd", "-H",
                   "X-Real-IP: 192.0.2.62"),
              200);
    CHECK_SEEN(&f, "/odd", "192.0.2.62");
    CHECK_INT(CURL(&r, auth_url(&f), "-H", bearer(f.good), "-H", "X-Original-Method: GET",
                   "-H", "X-Original-URI: /bad\xff\xfe", "-H", "X-Real-IP: 192.0.2.63"),
              200);
    CHECK_SEEN(&f, "GET /", "192.0.2.63"); /* the path left out */
    /* A token (or anything as long) in the URL never reaches the log. */
    CHECK_INT(CURL(&r, auth_url(&f), "-H", bearer(f.good), "-H", "X-Original-Method: GET",
                   "-H", fmt("X-Original-URI: /t/%s/x", f.good), "-H",
                   "X-Real-IP: 192.0.2.64"),
              200);
    CHECK(log_has(&f.p, "client=192.0.2.64"));
    CHECK_INT(CURL(&r, auth_url(&f), "-H", bearer(f.good), "-H", "X-Original-Method: GET",
                   "-H", fmt("X-Original-URI: /w/%s", repeat_letters(45)), "-H",
                   "X-Real-IP: 192.0.2.65"),
              200);
    CHECK_SEEN(&f, "GET /w/{id}", "192.0.2.65");
    res_free(&r);
    check_log_clean(&f);
    fixture_stop(&f);
}

TEST(context_bad_trusted_proxy_is_refused_at_start) {
    const char *bin = harness_bin("tokend-gateway");
    static const struct {
        const char *value, *says;
    } bad[] = {
        {"nonsense", "\"nonsense\" is not an address or a network"},
        {"10.0.0.1/8", "has bits set past its prefix: 10.0.0.0/8?"},
        {"10.0.0.0/33", "a whole number from 0 to 32"},
        {"2001:db8::/129", "a whole number from 0 to 128"},
        {"10.0.0.0/", "a whole number from 0 to 32"},
        {"fe80::1%eth0/64", "is not an address or a network"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *argv[] = {bin,          "--listen", "127.0.0.1:0", "--trusted-proxy",
                              bad[i].value, NULL};
        char *out = NULL, *err = NULL;
        CHECK_INT(harness_exec(argv, NULL, NULL, &out, &err), 2);
        if (!test_contains(err, bad[i].says)) {
            test_fail(__FILE__, __LINE__, "--trusted-proxy %s: stderr %s", bad[i].value,
                      err ? err : "(null)");
        }
        free(out);
        free(err);
    }
    /* The environment variable is read, and checked, the same way. */
    const char *argv[] = {bin, "--listen", "127.0.0.1:0", NULL};
    const char *env[] = {"TOKEND_GATEWAY_TRUSTED_PROXY=10.0.0.0/8,bogus", NULL};
    char *out = NULL, *err = NULL;
    CHECK_INT(harness_exec(argv, NULL, env, &out, &err), 2);
    CHECK(test_contains(err, "\"bogus\" is not an address"));
    free(out);
    free(err);
    const char *help[] = {bin, "--help", NULL};
    CHECK_INT(harness_exec(help, NULL, NULL, &out, &err), 0);
    CHECK(test_contains(out, "--trusted-proxy CIDR"));
    CHECK(test_contains(out, "TOKEND_GATEWAY_TRUSTED_PROXY"));
    free(out);
    free(err);
}

TEST(context_trusted_proxy_from_the_environment) {
    /* Set in the environment the gateway inherits: loopback is then no
     * longer trusted, so the forwarded client is ignored. */
    setenv("TOKEND_GATEWAY_TRUSTED_PROXY", "192.0.2.0/24,2001:db8::1", 1);
    fixture f;
    fixture_start(&f, NULL);
    http_res r = {0};
    CHECK_INT(CURL(&r, auth_url(&f), "-H", bearer(f.good), "-H", "X-Real-IP: 203.0.113.8",
                   "-H", "X-Original-URI: /env", "-H", "X-Original-Method: GET"),
              200);
    CHECK_SEEN(&f, "GET /v1/auth", "127.0.0.1");
    res_free(&r);
    fixture_stop(&f);
    unsetenv("TOKEND_GATEWAY_TRUSTED_PROXY");
}

/* ------------------------------------------------------------------------
 * tokenctl and the RPC. */

TEST(context_tokenctl_verify_flags) {
    fixture f;
    memset(&f, 0, sizeof f);
    harness_init(&f.p);
    f.p.extra[0] = "--log-level";
    f.p.extra[1] = "debug";
    REQUIRE(harness_start(&f.p));
    f.admin = harness_client(&f.p, f.p.admin);
    harness_create(f.admin, "partner:acme", "orders", orders_read, 1, 0, f.good,
                   sizeof(f.good), NULL, 0);
    const char *ctl = harness_bin("tokenctl");
    char *out = NULL, *err = NULL;
    const char *ok[] = {ctl,         "--url",        f.p.url,          "verify",
                        "-",         "--ability",    "orders:read",    "--method",
                        "PATCH",     "--path",       "/orders/77?x=1", "--client-ip",
                        "192.0.2.5", "--user-agent", "tokenctl-test",  NULL};
    char line[TOK + 2];
    snprintf(line, sizeof line, "%s\n", f.good);
    CHECK_INT(harness_exec(ok, line, NULL, &out, &err), 0);
    CHECK(test_contains(out, "OK"));
    CHECK_SEEN(&f, "PATCH /orders/{id}", "192.0.2.5");
    free(out);
    free(err);
    /* Each bad value gets the service's refusal, naming the field. */
    static const struct {
        const char *flag, *value, *says;
    } bad[] = {
        {"--client-ip", "192.0.2.300", "context.client_ip: not an IPv4 or IPv6 address"},
        {"--method", "GET /", "context.method: not an HTTP method"},
        {"--method", "ABCDEFGHIJKLMNOPQ", "context.method: longer than 16 bytes"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *argv[] = {ctl, "--url",     f.p.url,      "verify",
                              "-", bad[i].flag, bad[i].value, NULL};
        CHECK_INT(harness_exec(argv, line, NULL, &out, &err), 1);
        CHECK(test_contains(err, "INVALID_ARGUMENT"));
        if (!test_contains(err, bad[i].says)) {
            test_fail(__FILE__, __LINE__, "%s %s: stderr %s", bad[i].flag, bad[i].value,
                      err ? err : "(null)");
        }
        CHECK(!test_contains(err, f.good));
        free(out);
        free(err);
    }
    const char *help[] = {ctl, "verify", "--help", NULL};
    CHECK_INT(harness_exec(help, NULL, NULL, &out, &err), 0);
    CHECK(test_contains(out, "--client-ip IP") && test_contains(out, "--user-agent UA") &&
          test_contains(out, "--method M") && test_contains(out, "--path P"));
    free(out);
    free(err);
    check_log_clean(&f);
    tokend_close(f.admin);
    harness_stop(&f.p);
}

/* A string of n copies of c (static, rotating). */
static const char *repeat(char c, size_t n) {
    static char bufs[4][4096];
    static int next;
    char *buf = bufs[next++ % 4];
    REQUIRE(n < sizeof(bufs[0]));
    memset(buf, c, n);
    buf[n] = '\0';
    return buf;
}

TEST(context_out_of_bounds_over_rpc_is_invalid_argument) {
    tokend_proc p;
    memset(&p, 0, sizeof p);
    harness_init(&p);
    REQUIRE(harness_start(&p));
    tokend_client *admin = harness_client(&p, p.admin);
    char good[TOK];
    harness_create(admin, "partner:acme", "orders", orders_read, 1, 0, good, sizeof good,
                   NULL, 0);
    char path[ROUTE_PATH_TEST + 2];
    snprintf(path, sizeof path, "/%s", repeat('p', ROUTE_PATH_TEST));
    static const struct {
        tokend_request_context ctx;
        const char *says;
    } bad[] = {
        {{.method = "ABCDEFGHIJKLMNOPQ"}, "context.method: longer than 16 bytes"},
        {{.method = "GE T"}, "context.method: not an HTTP method"},
        {{.client_ip = "1.2.3"}, "context.client_ip: not an IPv4 or IPv6 address"},
        {{.client_ip = "2001:db8::1%eth0"}, "context.client_ip"},
        {{.path = "/a\tb"}, "context.path: not UTF-8 text"},
        {{.user_agent = "\xff"}, "context.user_agent: not UTF-8 text"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tokend_call call = {.context = &bad[i].ctx};
        tokend_error err;
        tokend_verdict v;
        CHECK_INT(
            tokend_verify(admin, &call, good, NULL, 0, TOKEND_ABILITIES_ALL, &v, &err),
            TOKEND_INVALID_ARGUMENT);
        if (!test_contains(err.message, bad[i].says)) {
            test_fail(__FILE__, __LINE__, "case %zu: %s", i, err.message);
        }
        /* A management call's envelope is checked the same way. */
        tokend_token_page page;
        CHECK_INT(tokend_list(admin, &call, "partner:acme", 0, NULL, &page, &err),
                  TOKEND_INVALID_ARGUMENT);
        CHECK(test_contains(err.message, bad[i].says));
    }
    /* One byte past each length bound, and exactly at it. */
    tokend_request_context over[] = {
        {.path = path},
        {.user_agent = repeat('u', 257)},
        {.client_ip = repeat('1', 46)},
    };
    const char *over_says[] = {"context.path: longer than 2048 bytes",
                               "context.user_agent: longer than 256 bytes",
                               "context.client_ip: longer than 45 bytes"};
    for (size_t i = 0; i < sizeof(over) / sizeof(over[0]); i++) {
        tokend_call call = {.context = &over[i]};
        tokend_error err;
        CHECK_INT(
            tokend_verify(admin, &call, good, NULL, 0, TOKEND_ABILITIES_ALL, NULL, &err),
            TOKEND_INVALID_ARGUMENT);
        CHECK(test_contains(err.message, over_says[i]));
    }
    path[ROUTE_PATH_TEST] = '\0'; /* 2048 bytes */
    tokend_request_context at = {
        .method = "ABCDEFGHIJKLMNOP",
        .path = path,
        .client_ip = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
        .user_agent = repeat('u', 256),
    };
    tokend_call call = {.context = &at};
    tokend_verdict v;
    CHECK_INT(tokend_verify(admin, &call, good, NULL, 0, TOKEND_ABILITIES_ALL, &v, NULL),
              TOKEND_OK);
    tokend_verdict_free(&v);
    tokend_token_page page;
    CHECK_INT(tokend_list(admin, &call, "partner:acme", 0, NULL, &page, NULL), TOKEND_OK);
    tokend_token_page_free(&page);
    tokend_close(admin);
    harness_stop(&p);
}

/* ------------------------------------------------------------------------
 * Behind Caddy (forward_auth). */

/* Writes the Caddyfile of docs/caddy-forward-auth.md on free ports, with
 * a second site (`respond`) standing in for the application. */
static void write_caddyfile(const char *path, const char *dir, int caddy_port,
                            int upstream_port, int gateway_port) {
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    fprintf(f,
            "{\n"
            "  admin off\n"
            "  auto_https off\n"
            "  storage file_system %s/storage\n"
            "  grace_period 1s\n"
            "}\n"
            "http://127.0.0.1:%d {\n"
            "  respond \"upstream ok owner={http.request.header.X-Token-Owner}\" 200\n"
            "}\n"
            "http://127.0.0.1:%d {\n"
            "  @orders path /orders/*\n"
            "  handle @orders {\n"
            "    forward_auth 127.0.0.1:%d {\n"
            "      uri /v1/auth?ability=orders:read\n"
            "      copy_headers X-Token-Id X-Token-Owner\n"
            "    }\n"
            "    request_header -Authorization\n"
            "    reverse_proxy 127.0.0.1:%d\n"
            "  }\n"
            "}\n",
            dir, upstream_port, caddy_port, gateway_port, upstream_port);
    fclose(f);
}

/* True once something accepts connections on 127.0.0.1:port. */
static bool port_open(int port) {
    http_res r = {0};
    CURL(&r, fmt("http://127.0.0.1:%d/", port), "-o", "/dev/null");
    bool up = r.curl_rc != 7; /* 7: could not connect */
    res_free(&r);
    return up;
}

TEST(context_caddy_forward_auth) {
    const char *caddy_bin = "/usr/bin/caddy";
    REQUIRE(access(caddy_bin, X_OK) == 0);
    fixture f;
    fixture_start(&f, NULL);
    const char *dir = test_tmpdir();
    char conf[400], caddy_log[400];
    snprintf(conf, sizeof(conf), "%s/Caddyfile", dir);
    snprintf(caddy_log, sizeof(caddy_log), "%s/caddy.log", dir);
    int caddy_port = harness_free_port();
    int upstream_port = harness_free_port();
    write_caddyfile(conf, dir, caddy_port, upstream_port, f.g.port);
    fflush(NULL);
    pid_t caddy = fork();
    REQUIRE(caddy >= 0);
    if (caddy == 0) {
        int devnull = open("/dev/null", O_RDWR);
        int log = open(caddy_log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(devnull, 0);
        dup2(log, 1);
        dup2(log, 2);
        /* Caddy keeps its data and config under these: none of the user's. */
        setenv("HOME", dir, 1);
        setenv("XDG_DATA_HOME", dir, 1);
        setenv("XDG_CONFIG_HOME", dir, 1);
        execl(caddy_bin, caddy_bin, "run", "--config", conf, "--adapter", "caddyfile",
              (char *)NULL);
        _exit(127);
    }
    bool up = false;
    for (int i = 0; i < 250 && !(up = port_open(caddy_port) && port_open(upstream_port));
         i++) {
        usleep(20 * 1000);
    }
    if (!up) {
        char *log = harness_read_file(caddy_log);
        fprintf(stderr, "caddy did not start; log:\n%s\n", log ? log : "");
        free(log);
    }
    REQUIRE(up);

    http_res r = {0};
    const char *orders = fmt("http://127.0.0.1:%d/orders/42?page=2", caddy_port);
    char orders_url[256];
    snprintf(orders_url, sizeof orders_url, "%s", orders);
    /* Through, with the owner passed on and the secret not. */
    CHECK_INT(
        CURL(&r, orders_url, "-H", bearer(f.good), "-H", "User-Agent: caddy-test/1"),
        200);
    CHECK_STR(r.body, "upstream ok owner=partner:acme");
    /* The owner the client claims itself is replaced by the gateway's. */
    CHECK_INT(CURL(&r, orders_url, "-H", bearer(f.good), "-H", "X-Token-Owner: admin"),
              200);
    CHECK_STR(r.body, "upstream ok owner=partner:acme");
    /* tokend saw the request Caddy checked: its method and URI (not
     * /v1/auth) and its client, which Caddy's X-Forwarded-For names. The
     * client connects from 127.0.0.2 so that it differs from Caddy's own
     * address. */
    CHECK_INT(CURL(&r, "-X", "POST", "--interface", "127.0.0.2", orders_url, "-H",
                   bearer(f.good)),
              200);
    CHECK_SEEN(&f, "POST /orders/{id}", "127.0.0.2");
    CHECK_SEEN(&f, "GET /orders/{id}", "127.0.0.1");
    /* Wrong token: 401 with the challenge; none: 401; weak: 403. */
    char unknown[TOK];
    snprintf(unknown, sizeof unknown, "%s", f.good);
    unknown[strlen(unknown) - 8] ^= 1; /* breaks the checksum: malformed */
    CHECK_INT(CURL(&r, orders_url, "-H", bearer(unknown)), 401);
    CHECK(test_contains(r.headers, "invalid_token"));
    CHECK(!test_contains(r.body, "upstream ok"));
    CHECK_INT(CURL(&r, orders_url), 401);
    CHECK(!test_contains(r.body, "upstream ok"));
    CHECK_INT(CURL(&r, orders_url, "-H", bearer(f.weak)), 403);
    CHECK(test_contains(r.headers, "insufficient_scope"));
    CHECK(!test_contains(r.body, "upstream ok"));
    /* The usage series of the owner show those calls by the route and
     * client Caddy forwarded, and the weak token's denial. */
    tokend_usage_query q = {.owner = "partner:acme", .step = TOKEND_USAGE_HOUR};
    tokend_usage u;
    REQUIRE(tokend_get_usage(f.admin, NULL, &q, &u, NULL) == TOKEND_OK);
    CHECK_INT(harness_usage_sum(&u, 'r', "GET /orders/{id}"), 3); /* 2 through, 1 weak */
    CHECK_INT(harness_usage_sum(&u, 'r', "POST /orders/{id}"), 1);
    CHECK_INT(harness_usage_sum(&u, 'c', "127.0.0.2"), 1);
    CHECK_INT(harness_usage_sum(&u, 'c', "127.0.0.1"), 3);
    CHECK_INT(harness_usage_sum(&u, 'o', "OK"), 3);
    CHECK_INT(harness_usage_sum(&u, 'o', "INSUFFICIENT_ABILITY"), 1);
    tokend_usage_free(&u);
    /* Revoked: refused on the very next request. */
    uint64_t revoked = 0;
    CHECK_INT(tokend_revoke_token(f.admin, NULL, f.good, &revoked, NULL), TOKEND_OK);
    CHECK_INT(CURL(&r, orders_url, "-H", bearer(f.good)), 401);
    CHECK(!test_contains(r.body, "upstream ok"));
    res_free(&r);
    check_log_clean(&f);

    kill(caddy, SIGTERM);
    while (waitpid(caddy, NULL, 0) < 0 && errno == EINTR) {
    }
    fixture_stop(&f);
}

/* ------------------------------------------------------------------------
 * Behind nginx (auth_request). */

/* The check location of docs/nginx-auth-request.md in front of an
 * upstream (`return 200`), on free ports. */
static void write_nginx_conf(const char *path, const char *dir, int nginx_port,
                             int upstream_port, int gateway_port) {
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    fprintf(f,
            "daemon off;\n"
            "worker_processes 1;\n"
            "pid %s/nginx.pid;\n"
            "error_log %s/error.log info;\n"
            "events { worker_connections 64; }\n"
            "http {\n"
            "  access_log off;\n"
            "  client_body_temp_path %s/body;\n"
            "  proxy_temp_path %s/proxy;\n"
            "  fastcgi_temp_path %s/fastcgi;\n"
            "  uwsgi_temp_path %s/uwsgi;\n"
            "  scgi_temp_path %s/scgi;\n"
            "  server {\n"
            "    listen 127.0.0.1:%d;\n"
            "    location / { return 200 \"upstream ok\\n\"; }\n"
            "  }\n"
            "  server {\n"
            "    listen 127.0.0.1:%d;\n"
            "    location /orders/ {\n"
            "      auth_request /_tokend_auth;\n"
            "      proxy_set_header Authorization \"\";\n"
            "      proxy_pass http://127.0.0.1:%d;\n"
            "    }\n"
            "    location = /_tokend_auth {\n"
            "      internal;\n"
            "      proxy_pass http://127.0.0.1:%d/v1/auth?ability=orders:read;\n"
            "      proxy_pass_request_body off;\n"
            "      proxy_set_header Content-Length \"\";\n"
            "      proxy_set_header X-Original-Method $request_method;\n"
            "      proxy_set_header X-Original-URI $request_uri;\n"
            "      proxy_set_header X-Real-IP $remote_addr;\n"
            "    }\n"
            "  }\n"
            "}\n",
            dir, dir, dir, dir, dir, dir, dir, upstream_port, nginx_port, upstream_port,
            gateway_port);
    fclose(f);
}

TEST(context_nginx_auth_request_sends_the_checked_request) {
    const char *nginx_bin = "/usr/sbin/nginx";
    REQUIRE(access(nginx_bin, X_OK) == 0);
    fixture f;
    fixture_start(&f, NULL);
    const char *dir = test_tmpdir();
    char conf[400], errlog[400];
    snprintf(conf, sizeof(conf), "%s/nginx.conf", dir);
    snprintf(errlog, sizeof(errlog), "%s/error.log", dir);
    int nginx_port = harness_free_port();
    int upstream_port = harness_free_port();
    write_nginx_conf(conf, dir, nginx_port, upstream_port, f.g.port);
    fflush(NULL);
    pid_t nginx = fork();
    REQUIRE(nginx >= 0);
    if (nginx == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(devnull, 1);
        execl(nginx_bin, nginx_bin, "-p", dir, "-e", errlog, "-c", conf, (char *)NULL);
        _exit(127);
    }
    bool up = false;
    for (int i = 0; i < 250 && !(up = port_open(nginx_port)); i++) {
        usleep(20 * 1000);
    }
    REQUIRE(up);
    http_res r = {0};
    char orders[128];
    snprintf(orders, sizeof orders, "http://127.0.0.1:%d/orders/42?x=1", nginx_port);
    /* A POST: nginx makes the check a GET, and says POST in X-Original-Method. */
    CHECK_INT(
        CURL(&r, "-X", "POST", "--interface", "127.0.0.3", orders, "-H", bearer(f.good)),
        200);
    CHECK_STR(r.body, "upstream ok\n");
    CHECK_SEEN(&f, "POST /orders/{id}", "127.0.0.3");
    CHECK_INT(CURL(&r, orders, "-H", bearer(f.weak)), 403);
    CHECK_SEEN(&f, "GET /orders/{id}", "127.0.0.1");
    res_free(&r);
    check_log_clean(&f);
    kill(nginx, SIGTERM);
    while (waitpid(nginx, NULL, 0) < 0 && errno == EINTR) {
    }
    fixture_stop(&f);
}
