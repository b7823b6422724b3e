/*
 * test_gateway.c — integration tests of tokend-gateway: the real tokend on
 * a temporary ipc:// socket, the real gateway in front of it on a free TCP
 * port, driven with curl as partners use it, with raw sockets for bytes no
 * honest client sends, and behind a real nginx (auth_request).
 */
#include <dirent.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "crypto.h"
#include "harness.h"
#include "rpc.h"
#include "store.h"
#include "test.h"
#include "token.h"

#define TOK 128

static const char *const orders_read[] = {"orders:read"};

/* ------------------------------------------------------------------------
 * Helpers. */

/* printf into one of 16 rotating static buffers: for building arguments. */
static const char *fmt(const char *format, ...) __attribute__((format(printf, 1, 2)));

static const char *fmt(const char *format, ...) {
    static char bufs[16][2048];
    static int next;
    char *buf = bufs[next++ % 16];
    va_list ap;
    va_start(ap, format);
    vsnprintf(buf, sizeof(bufs[0]), format, ap);
    va_end(ap);
    return buf;
}

/* A copy of a fmt() result that outlives the next 16 calls. */
#define LOCAL(name, expr) \
    char name[2048];      \
    snprintf(name, sizeof(name), "%s", (expr))

static const char *bearer(const char *token) {
    return fmt("Authorization: Bearer %s", token);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct fixture {
    tokend_proc p;
    gateway_proc g;
    tokend_client *admin;
} fixture;

/* Starts tokend and a gateway in front of it with `flags` (NULL-terminated,
 * may be NULL). */
static void fixture_start(fixture *f, const char *const *flags) {
    memset(f, 0, sizeof(*f));
    harness_init(&f->p);
    REQUIRE(harness_start(&f->p));
    for (size_t i = 0; flags != NULL && flags[i] != NULL && i < 23; i++) {
        f->g.extra[i] = flags[i];
    }
    REQUIRE(harness_gateway_start(&f->g, f->p.url, 0));
    f->admin = harness_client(&f->p, f->p.admin);
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

static const char *url(const fixture *f, const char *path) {
    return fmt("%s%s", f->g.base, path);
}

/* Value of the last header `name` in r (static, rotating), or NULL. */
static const char *header(const http_res *r, const char *name) {
    static char bufs[8][1024];
    static int next;
    char *buf = bufs[next++ % 8];
    const char *found = NULL;
    size_t name_len = strlen(name);
    for (const char *line = r->headers; line != NULL && *line != '\0';) {
        const char *end = strstr(line, "\r\n");
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
        if (len > name_len && strncasecmp(line, name, name_len) == 0 &&
            line[name_len] == ':') {
            const char *v = line + name_len + 1;
            while (*v == ' ') {
                v++;
            }
            size_t vlen = len - (size_t)(v - line);
            if (vlen >= sizeof(bufs[0])) {
                vlen = sizeof(bufs[0]) - 1;
            }
            memcpy(buf, v, vlen);
            buf[vlen] = '\0';
            found = buf;
        }
        line = end != NULL ? end + 2 : NULL;
    }
    return found;
}

/* String member `key` of the JSON body (static, rotating), or NULL. */
static const char *jstr(const http_res *r, const char *key) {
    static char bufs[8][512];
    static int next;
    char *buf = bufs[next++ % 8];
    json_t *doc = json_loads(r->body, 0, NULL);
    json_t *v = doc != NULL ? json_object_get(doc, key) : NULL;
    const char *result = NULL;
    if (json_is_string(v)) {
        snprintf(buf, sizeof(bufs[0]), "%s", json_string_value(v));
        result = buf;
    }
    json_decref(doc);
    return result;
}

#define CODE(r) jstr((r), "code")

/* Checks a problem reply: status, code, content type. */
#define CHECK_PROBLEM(r, want_status, want_code)                            \
    do {                                                                    \
        CHECK_INT((r)->status, (want_status));                              \
        CHECK_STR(CODE(r), (want_code));                                    \
        CHECK_STR(header((r), "Content-Type"), "application/problem+json"); \
        if ((r)->status != (want_status)) {                                 \
            fprintf(stderr, "    body: %s\n", (r)->body);                   \
        }                                                                   \
    } while (0)

/* Occurrences of `needle` in the file at `path`. */
static int count_in_file(const char *path, const char *needle) {
    char *text = harness_read_file(path);
    int n = 0;
    for (const char *s = text; s != NULL && (s = strstr(s, needle)) != NULL; s++) {
        n++;
    }
    free(text);
    return n;
}

static void create_token(fixture *f, const char *owner, const char *const *abilities,
                         size_t n, int64_t expires_in_s, char *token, char *id) {
    harness_create(f->admin, owner, "gateway test", abilities, n, expires_in_s, token,
                   TOK, id, id != NULL ? TOK : 0);
}

/* A well-formed token that was never issued. */
static void unknown_token(char out[TOKEN_MAX_LEN + 1]) {
    uint8_t random[TOKEN_RANDOM_BYTES];
    memset(random, 9, sizeof(random));
    REQUIRE(token_generate("tkd_", random, sizeof(random), out) > 0);
}

/* True if every thread of `pid` is stopped ('T' in /proc/PID/task/TID/stat). */
static bool all_threads_stopped(pid_t pid) {
    char dir_path[64];
    snprintf(dir_path, sizeof(dir_path), "/proc/%d/task", (int)pid);
    DIR *dir = opendir(dir_path);
    if (dir == NULL) {
        return false;
    }
    bool stopped = true;
    struct dirent *e;
    while (stopped && (e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char path[400];
        snprintf(path, sizeof(path), "%s/%s/stat", dir_path, e->d_name);
        char *stat = harness_read_file(path);
        const char *paren = stat != NULL ? strrchr(stat, ')') : NULL;
        stopped = paren != NULL && paren[1] == ' ' && paren[2] == 'T';
        free(stat);
    }
    closedir(dir);
    return stopped;
}

/* SIGSTOPs `pid` and waits (up to 5 s) until the kernel shows every thread
 * stopped: kill() only queues the signal, and on a busy machine the
 * process can still answer a request before all its threads have stopped. */
static void stop_process(pid_t pid) {
    REQUIRE(kill(pid, SIGSTOP) == 0);
    for (int i = 0; i < 500; i++) {
        if (all_threads_stopped(pid)) {
            return;
        }
        usleep(10 * 1000);
    }
    REQUIRE(!"the process did not stop");
}

/* A TCP connection to 127.0.0.1:port from the loopback address `from`
 * (NULL: the system's choice); connecting and each send give up after
 * 2 s. -1 if it failed. */
static int connect_from(const char *from, int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (from != NULL) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        REQUIRE(inet_pton(AF_INET, from, &src.sin_addr) == 1);
        REQUIRE(bind(fd, (struct sockaddr *)&src, sizeof(src)) == 0);
    }
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Raw TCP: for requests curl will not send. */
static int raw_connect(int port) {
    return connect_from(NULL, port);
}

static void raw_send(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w <= 0) {
            return; /* the server may hang up on garbage half-way */
        }
        p += w;
        len -= (size_t)w;
    }
}

/* Reads until the peer closes (*closed) or nothing came for wait_ms.
 * Returns what came, NUL-terminated (malloc'd). */
static char *raw_read(int fd, int wait_ms, bool *closed) {
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap + 1);
    REQUIRE(buf != NULL);
    *closed = false;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, wait_ms) <= 0) {
            break;
        }
        ssize_t r = recv(fd, buf + len, cap - len, 0);
        if (r <= 0) {
            *closed = true;
            break;
        }
        len += (size_t)r;
        if (len == cap) {
            break;
        }
    }
    buf[len] = '\0';
    return buf;
}

/* Sends `req` on a new connection and returns what came back. */
static char *raw_exchange(int port, const void *req, size_t len, int wait_ms,
                          bool *closed) {
    int fd = raw_connect(port);
    REQUIRE(fd >= 0);
    raw_send(fd, req, len);
    char *reply = raw_read(fd, wait_ms, closed);
    close(fd);
    return reply;
}

static void check_healthy(const fixture *f) {
    http_res r = {0};
    CHECK_INT(CURL(&r, url(f, "/healthz")), 200);
    res_free(&r);
}

/* ------------------------------------------------------------------------
 * Endpoints. */

TEST(gateway_health_ready_and_openapi) {
    fixture f;
    fixture_start(&f, NULL);
    http_res r = {0};
    CHECK_INT(CURL(&r, url(&f, "/healthz")), 200);
    CHECK_STR(jstr(&r, "status"), "ok");
    CHECK_STR(header(&r, "Content-Type"), "application/json");
    /* HEAD: the headers of GET (curl writes them as the body), no body. */
    CHECK_INT(CURL(&r, "-I", url(&f, "/healthz")), 200);
    CHECK(test_contains(r.body,
                        "Content-Length: 33")); /* {"status":"ok","rpc_in_flight":0} */
    CHECK(!test_contains(r.body, "\"status\""));
    CHECK_INT(CURL(&r, url(&f, "/readyz")), 200);
    CHECK_STR(jstr(&r, "status"), "ready");

    CHECK_INT(CURL(&r, url(&f, "/v1/openapi.json")), 200);
    json_t *doc = json_loads(r.body, 0, NULL);
    REQUIRE(doc != NULL);
    const char *version = json_string_value(json_object_get(doc, "openapi"));
    CHECK(version != NULL && strncmp(version, "3.0.", 4) == 0);
    json_t *paths = json_object_get(doc, "paths");
    const char *const want[] = {"/v1/auth",        "/v1/tokens/self",  "/v1/tokens",
                                "/v1/tokens/{id}", "/v1/openapi.json", "/healthz",
                                "/readyz"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (json_object_get(paths, want[i]) == NULL) {
            test_fail(__FILE__, __LINE__, "openapi.json lacks path %s", want[i]);
        }
    }
    CHECK(json_object_get(json_object_get(json_object_get(paths, "/v1/tokens"), "post"),
                          "requestBody") != NULL);
    json_decref(doc);
    res_free(&r);
    CHECK(count_in_file(f.g.log_path, "event=request method=\"GET\" path=\"/healthz\" "
                                      "status=200") >= 1);
    fixture_stop(&f);
}

TEST(gateway_create_auth_list_revoke_over_http) {
    fixture f;
    fixture_start(&f, NULL);
    http_res r = {0};
    CHECK_INT(CURL(&r, "-X", "POST", url(&f, "/v1/tokens"), "-H", bearer(f.p.admin), "-H",
                   "Content-Type: application/json", "--data",
                   "{\"owner\":\"partner:acme\",\"name\":\"ERP sync\",\"abilities\":"
                   "[\"orders:read\",\"invoices:*\"],\"expires_in\":3600,"
                   "\"metadata\":{\"env\":\"prod\"}}"),
              201);
    char token[TOK], id[TOK];
    REQUIRE(jstr(&r, "token") != NULL && jstr(&r, "id") != NULL);
    snprintf(token, sizeof(token), "%s", jstr(&r, "token"));
    snprintf(id, sizeof(id), "%s", jstr(&r, "id"));
    CHECK(token_well_formed(token, strlen(token)));
    CHECK(token_id_ok(id, strlen(id)));
    CHECK_STR(header(&r, "Location"), fmt("/v1/tokens/%s", id));
    CHECK_STR(jstr(&r, "owner"), "partner:acme");
    CHECK_STR(jstr(&r, "name"), "ERP sync");
    json_t *doc = json_loads(r.body, 0, NULL);
    REQUIRE(doc != NULL);
    CHECK(json_is_integer(json_object_get(doc, "expires_at")));
    CHECK(json_is_null(json_object_get(doc, "last_used_at")));
    CHECK_INT(json_array_size(json_object_get(doc, "abilities")), 2);
    CHECK_STR(json_string_value(json_object_get(json_object_get(doc, "metadata"), "env")),
              "prod");
    json_decref(doc);

    /* Forward auth: 200 with the token's identity in headers and body. */
    CHECK_INT(CURL(&r, url(&f, "/v1/auth?ability=orders:read"), "-H", bearer(token)),
              200);
    CHECK_STR(header(&r, "X-Token-Id"), id);
    CHECK_STR(header(&r, "X-Token-Owner"), "partner:acme");
    CHECK_STR(header(&r, "X-Token-Abilities"), "orders:read,invoices:*");
    CHECK_STR(jstr(&r, "id"), id);
    CHECK(jstr(&r, "token") == NULL);
    CHECK_INT(CURL(&r, url(&f, "/v1/auth?ability=orders%3Aread&ability=invoices%3Apdf"),
                   "-H", bearer(token)),
              200);
    CHECK_INT(CURL(&r,
                   url(&f, "/v1/auth?ability=orders:write&ability=orders:read&mode=any"),
                   "-H", bearer(token)),
              200);
    CHECK_INT(CURL(&r, url(&f, "/v1/auth"), "-H", bearer(token)), 200);
    CHECK_INT(CURL(&r, url(&f, "/v1/tokens/self"), "-H", bearer(token)), 200);
    CHECK_STR(jstr(&r, "id"), id);

    /* Listing, a page at a time, as an admin naming the owner. */
    for (int i = 0; i < 3; i++) {
        create_token(&f, "o:list", orders_read, 1, 0, NULL, NULL);
    }
    CHECK_INT(
        CURL(&r, url(&f, "/v1/tokens?owner=o:list&limit=2"), "-H", bearer(f.p.admin)),
        200);
    doc = json_loads(r.body, 0, NULL);
    REQUIRE(doc != NULL);
    CHECK_INT(json_array_size(json_object_get(doc, "tokens")), 2);
    const char *cursor = json_string_value(json_object_get(doc, "next_cursor"));
    REQUIRE(cursor != NULL);
    char next[256];
    snprintf(next, sizeof(next), "%s", cursor);
    json_decref(doc);
    CHECK_INT(CURL(&r, "-G", url(&f, "/v1/tokens"), "--data-urlencode", "owner=o:list",
                   "--data-urlencode", fmt("cursor=%s", next), "-H", bearer(f.p.admin)),
              200);
    doc = json_loads(r.body, 0, NULL);
    REQUIRE(doc != NULL);
    CHECK_INT(json_array_size(json_object_get(doc, "tokens")), 1);
    CHECK(json_is_null(json_object_get(doc, "next_cursor")));
    json_decref(doc);

    /* Keep-alive holds across error replies: the second URL reuses the
     * connection of the first (a 401). */
    char *out = NULL, *err = NULL;
    const char *argv[] = {"curl",
                          "-s",
                          "-o",
                          "/dev/null",
                          "-o",
                          "/dev/null",
                          "-w",
                          "%{num_connects} ",
                          url(&f, "/v1/auth"),
                          url(&f, "/healthz"),
                          NULL};
    CHECK_INT(harness_exec(argv, NULL, NULL, &out, &err), 0);
    CHECK_STR(out, "1 0 ");
    free(out);
    free(err);

    /* Revoke by id: 204, and the very next check fails. */
    CHECK_INT(CURL(&r, "-X", "DELETE", url(&f, fmt("/v1/tokens/%s", id)), "-H",
                   bearer(f.p.admin)),
              204);
    CHECK_STR(r.body, "");
    CHECK_INT(CURL(&r, url(&f, "/v1/auth"), "-H", bearer(token)), 401);
    CHECK_STR(CODE(&r), "NOT_FOUND");

    /* Revoke all of the caller's owner, with a tokens:write token. */
    const char *rights[] = {"tokens:write", "tokens:read"};
    char writer[TOK];
    create_token(&f, "o:list", rights, 2, 0, writer, NULL);
    CHECK_INT(CURL(&r, url(&f, "/v1/tokens"), "-H", bearer(writer)), 200);
    CHECK(strstr(r.body, "\"tokens\":[") != NULL);
    CHECK_INT(CURL(&r, "-X", "DELETE", url(&f, "/v1/tokens"), "-H", bearer(writer)), 204);
    CHECK_INT(CURL(&r, url(&f, "/v1/tokens?owner=o:list"), "-H", bearer(f.p.admin)), 200);
    CHECK(strstr(r.body, "\"tokens\":[]") != NULL);
    res_free(&r);
    fixture_stop(&f);
}

/* ------------------------------------------------------------------------
 * Errors a client can reach. */

TEST(gateway_401_missing_malformed_unknown_expired_revoked) {
    fixture f;
    fixture_start(&f, NULL);
    char token[TOK], short_lived[TOK], unknown[TOKEN_MAX_LEN + 1];
    create_token(&f, "user:7", orders_read, 1, 0, token, NULL);
    create_token(&f, "user:7", orders_read, 1, 1, short_lived, NULL);
    unknown_token(unknown);
    LOCAL(auth, url(&f, "/v1/auth"));
    http_res r = {0};

    CURL(&r, auth);
    CHECK_PROBLEM(&r, 401, "MISSING_TOKEN");
    CHECK_STR(header(&r, "WWW-Authenticate"), "Bearer realm=\"tokend\"");
    CURL(&r, auth, "-H", "Authorization: Basic dXNlcjpwdw==");
    CHECK_PROBLEM(&r, 401, "MISSING_TOKEN");

    const char *invalid = "Bearer realm=\"tokend\", error=\"invalid_token\", "
                          "error_description=\"the token is malformed\"";
    char bad[TOK];
    snprintf(bad, sizeof(bad), "%s", token);
    bad[10] = bad[10] == 'a' ? 'b' : 'a'; /* the checksum no longer matches */
    const char *const malformed[] = {
        "Authorization: Bearer",
        fmt("Authorization: Bearer  %s", token),
        fmt("Authorization: Bearer %s x", token),
        "Authorization: Bearer tkd_short",
        fmt("Authorization: Bearer %s", bad),
    };
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
        CURL(&r, auth, "-H", malformed[i]);
        CHECK_PROBLEM(&r, 401, "MALFORMED");
        CHECK_STR(header(&r, "WWW-Authenticate"), invalid);
    }
    CURL(&r, auth, "-H", bearer(token), "-H", bearer(token));
    CHECK_PROBLEM(&r, 401, "MALFORMED");
    /* The scheme is case-insensitive. */
    CHECK_INT(CURL(&r, auth, "-H", fmt("Authorization: bEaReR %s", token)), 200);

    CURL(&r, auth, "-H", bearer(unknown));
    CHECK_PROBLEM(&r, 401, "NOT_FOUND");
    CHECK(test_contains(header(&r, "WWW-Authenticate"), "error=\"invalid_token\""));
    CURL(&r, url(&f, "/v1/tokens/self"), "-H", bearer(unknown));
    CHECK_PROBLEM(&r, 401, "NOT_FOUND");
    /* A management call with an unknown token: tokend says UNAUTHENTICATED. */
    CURL(&r, url(&f, "/v1/tokens"), "-H", bearer(unknown));
    CHECK_PROBLEM(&r, 401, "UNAUTHENTICATED");
    CHECK(test_contains(header(&r, "WWW-Authenticate"), "error=\"invalid_token\""));

    usleep(1100 * 1000); /* short_lived expires */
    CURL(&r, auth, "-H", bearer(short_lived));
    CHECK_PROBLEM(&r, 401, "EXPIRED");
    CHECK(test_contains(header(&r, "WWW-Authenticate"), "the token has expired"));

    uint64_t revoked = 0;
    CHECK_INT(tokend_revoke_token(f.admin, NULL, token, &revoked, NULL), TOKEND_OK);
    CURL(&r, auth, "-H", bearer(token));
    CHECK_PROBLEM(&r, 401, "NOT_FOUND");

    /* MALFORMED is decided without a call: with tokend gone it still is
     * 401, not 503, and at once. */
    harness_stop(&f.p);
    CURL(&r, auth, "-H", fmt("Authorization: Bearer %s", bad));
    CHECK_PROBLEM(&r, 401, "MALFORMED");
    CHECK(r.seconds < 1.0);
    res_free(&r);
    fixture_stop(&f);
}

TEST(gateway_403_scope_and_permission) {
    fixture f;
    fixture_start(&f, NULL);
    char token[TOK], reader[TOK];
    create_token(&f, "partner:a", orders_read, 1, 0, token, NULL);
    const char *rights[] = {"tokens:read"};
    create_token(&f, "partner:a", rights, 1, 0, reader, NULL);
    http_res r = {0};
    CURL(&r, url(&f, "/v1/auth?ability=orders:write&ability=invoices:pdf"), "-H",
         bearer(token));
    CHECK_PROBLEM(&r, 403, "INSUFFICIENT_ABILITY");
    CHECK_STR(jstr(&r, "type"), "urn:tokend:problem:insufficient-scope");
    CHECK_STR(header(&r, "WWW-Authenticate"),
              "Bearer realm=\"tokend\", error=\"insufficient_scope\", "
              "scope=\"orders:write invoices:pdf\"");
    CURL(&r, url(&f, "/v1/auth?ability=orders:write&ability=x:y&mode=any"), "-H",
         bearer(token));
    CHECK_PROBLEM(&r, 403, "INSUFFICIENT_ABILITY");

    /* Another owner's tokens; creating without tokens:write. */
    CURL(&r, url(&f, "/v1/tokens?owner=partner:b"), "-H", bearer(reader));
    CHECK_PROBLEM(&r, 403, "PERMISSION_DENIED");
    CHECK(header(&r, "WWW-Authenticate") == NULL);
    CHECK_INT(CURL(&r, url(&f, "/v1/tokens"), "-H", bearer(reader)), 200);
    CURL(&r, "-X", "POST", url(&f, "/v1/tokens"), "-H", bearer(reader), "-H",
         "Content-Type: application/json", "--data",
         "{\"name\":\"n\",\"abilities\":[\"orders:read\"]}");
    CHECK_PROBLEM(&r, 403, "PERMISSION_DENIED");
    res_free(&r);
    fixture_stop(&f);
}

/* Writes a token of `owner` with `abilities` exactly as given straight
 * into p's store (tokend stopped): a record from before the ability
 * grammar, which CreateToken would refuse now. */
static void store_token_as_is(const tokend_proc *p, const char *owner,
                              const char *const *abilities, size_t n, char *token,
                              char *id) {
    REQUIRE(crypto_init(NULL) == TOKEND_OK);
    uint8_t random[TOKEN_RANDOM_BYTES];
    REQUIRE(crypto_random(random, sizeof(random)) == 0);
    REQUIRE(token_generate("tkd_", random, sizeof(random), token) > 0);
    REQUIRE(crypto_random(random, sizeof(random)) == 0);
    token_record rec = {0};
    REQUIRE(token_new_id(random, sizeof(random), rec.id));
    snprintf(id, TOK, "%s", rec.id);
    rec.owner = strdup(owner);
    rec.name = strdup("stored as is");
    rec.abilities = calloc(n, sizeof(char *));
    REQUIRE(rec.owner != NULL && rec.name != NULL && rec.abilities != NULL);
    for (size_t i = 0; i < n; i++) {
        REQUIRE((rec.abilities[i] = strdup(abilities[i])) != NULL);
        rec.n_abilities = i + 1;
    }
    rec.created_ms = rpc_now_ms();
    uint8_t digest[TOKEN_DIGEST_LEN];
    REQUIRE(crypto_sha256(token, strlen(token), digest) == 0);
    store *st = NULL;
    tokend_error err;
    REQUIRE(store_open(p->data_dir, NULL, &st, &err) == TOKEND_OK);
    store_batch *b = store_batch_new();
    REQUIRE(b != NULL);
    REQUIRE(store_batch_put_token(b, digest, &rec, &err) == TOKEND_OK);
    REQUIRE(store_batch_commit(st, b, true, &err) == TOKEND_OK);
    store_batch_free(b);
    store_close(st);
    token_record_free(&rec);
    crypto_shutdown();
}

/* The raw value of header `name` in r (no length limit, malloc'd), or
 * NULL. */
static char *header_raw(const http_res *r, const char *name) {
    size_t name_len = strlen(name);
    for (const char *line = r->headers; line != NULL && *line != '\0';) {
        const char *end = strstr(line, "\r\n");
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
        if (len > name_len + 1 && strncasecmp(line, name, name_len) == 0 &&
            line[name_len] == ':') {
            return strndup(line + name_len + 2, len - name_len - 2);
        }
        line = end != NULL ? end + 2 : NULL;
    }
    return NULL;
}

/* Tokens stored before the ability grammar keep working: Verify answers
 * for them with their abilities as stored, but an ability asked for must
 * be one. X-Token-Abilities carries whole abilities only: a stored one
 * that is not well-formed is left out (and logged with the token's id),
 * and so are those past 4095 bytes. */
TEST(gateway_abilities_stored_before_the_grammar) {
    fixture f;
    memset(&f, 0, sizeof(f));
    harness_init(&f.p);
    static const char *const legacy[] = {
        "orders:read", "orders:x,invoices:write,tokend:admin", "billing:*", "repo/read"};
    char token[TOK], id[TOK];
    store_token_as_is(&f.p, "partner:old", legacy, 4, token, id);
    /* 64 abilities of 128 bytes: 8255 bytes joined. */
    static char big[TOKEN_ABILITIES_MAX][TOKEN_ABILITY_MAX + 1];
    const char *bigs[TOKEN_ABILITIES_MAX];
    for (size_t i = 0; i < TOKEN_ABILITIES_MAX; i++) {
        memset(big[i], 'a' + (int)(i % 26), TOKEN_ABILITY_MAX);
        bigs[i] = big[i];
    }
    char big_token[TOK], big_id[TOK];
    store_token_as_is(&f.p, "partner:old", bigs, TOKEN_ABILITIES_MAX, big_token, big_id);
    REQUIRE(harness_start(&f.p));
    REQUIRE(harness_gateway_start(&f.g, f.p.url, 0));
    f.admin = harness_client(&f.p, f.p.admin);

    /* Over RPC: valid, abilities as stored; asking for a stored ability
     * that is not one is INVALID_ARGUMENT, the others work. */
    tokend_verdict v;
    tokend_error err = {0};
    const char *asked[] = {"orders:read", "billing:pdf"};
    REQUIRE(tokend_verify(f.admin, NULL, token, asked, 2, TOKEND_ABILITIES_ALL, &v,
                          &err) == TOKEND_OK);
    CHECK_INT(v.info.n_abilities, 4);
    for (size_t i = 0; i < v.info.n_abilities && i < 4; i++) {
        CHECK_STR(v.info.abilities[i], legacy[i]);
    }
    tokend_verdict_free(&v);
    const char *injected[] = {legacy[1]};
    CHECK_INT(tokend_verify(f.admin, NULL, token, injected, 1, TOKEND_ABILITIES_ALL, NULL,
                            &err),
              TOKEND_INVALID_ARGUMENT);
    CHECK(test_contains(err.message,
                        "abilities[0]: \"orders:x,invoices:write,tokend:admin\" "
                        "is not an ability"));

    /* Through the gateway: the body lists them as stored, the header only
     * the well-formed ones. */
    http_res r = {0};
    CHECK_INT(CURL(&r, url(&f, "/v1/auth?ability=orders:read"), "-H", bearer(token)),
              200);
    CHECK_STR(header(&r, "X-Token-Abilities"), "orders:read,billing:*");
    json_t *doc = json_loads(r.body, 0, NULL);
    CHECK_INT(json_array_size(json_object_get(doc, "abilities")), 4);
    CHECK_STR(json_string_value(json_array_get(json_object_get(doc, "abilities"), 1)),
              legacy[1]);
    json_decref(doc);

    CHECK_INT(CURL(&r, url(&f, "/v1/auth"), "-H", bearer(big_token)), 200);
    char *joined = header_raw(&r, "X-Token-Abilities");
    REQUIRE(joined != NULL);
    size_t whole = (TOKEN_ABILITIES_JOINED_MAX + 1) / (TOKEN_ABILITY_MAX + 1);
    CHECK_INT(strlen(joined), whole * (TOKEN_ABILITY_MAX + 1) - 1);
    size_t n = 0;
    for (char *save = NULL, *a = strtok_r(joined, ",", &save); a != NULL;
         a = strtok_r(NULL, ",", &save), n++) {
        CHECK(n < TOKEN_ABILITIES_MAX && strcmp(a, big[n]) == 0);
    }
    CHECK_INT(n, whole);
    free(joined);
    res_free(&r);

    fixture_stop(&f);
    CHECK_INT(count_in_file(f.g.log_path, fmt("event=auth.abilities_left_out id=%s "
                                              "left_out=2",
                                              id)),
              1);
    CHECK_INT(count_in_file(f.g.log_path, fmt("event=auth.abilities_left_out id=%s "
                                              "left_out=%zu",
                                              big_id, TOKEN_ABILITIES_MAX - whole)),
              1);
}

TEST(gateway_400_bad_json_types_and_query) {
    fixture f;
    fixture_start(&f, NULL);
    char token[TOK];
    create_token(&f, "user:8", orders_read, 1, 0, token, NULL);
    http_res r = {0};
    static const struct {
        const char *body;
        const char *code;
        const char *detail; /* must appear in the detail */
    } cases[] = {
        {"{\"name\":", "BAD_REQUEST", "not valid JSON"},
        {"", "BAD_REQUEST", "not valid JSON"},
        {"[1]", "BAD_REQUEST", "JSON object"},
        {"{\"name\":\"a\",\"name\":\"b\",\"abilities\":[\"x\"]}", "BAD_REQUEST",
         "not valid JSON"},
        {"{\"name\":5,\"abilities\":[\"a\"]}", "BAD_REQUEST", "name"},
        {"{\"name\":\"n\",\"abilities\":\"a\"}", "BAD_REQUEST", "abilities"},
        {"{\"name\":\"n\",\"abilities\":[\"a\",7]}", "BAD_REQUEST", "abilities[1]"},
        {"{\"name\":\"n\",\"abilities\":[\"a\"],\"expires_in\":\"1d\"}", "BAD_REQUEST",
         "expires_in"},
        {"{\"name\":\"n\",\"abilities\":[\"a\"],\"expires_in\":-5}", "BAD_REQUEST",
         "expires_in"},
        {"{\"name\":\"n\",\"abilities\":[\"a\"],\"expires_in\":1.5}", "BAD_REQUEST",
         "expires_in"},
        {"{\"name\":\"n\",\"abilities\":[\"a\"],\"metadata\":{\"k\":1}}", "BAD_REQUEST",
         "metadata"},
        {"{\"name\":\"n\",\"abilities\":[\"a\"],\"owner\":true}", "BAD_REQUEST", "owner"},
        {"{\"nme\":\"n\",\"abilities\":[\"a\"]}", "BAD_REQUEST", "nme"},
        {"{\"name\":\"n\",\"abilities\":[[[[[[[[[[\"a\"]]]]]]]]]]}", "BAD_REQUEST",
         "deeper"},
        {"{\"name\":\"\",\"abilities\":[\"a\"],\"owner\":\"o\"}", "INVALID_ARGUMENT",
         "name"},
        {"{\"name\":\"n\",\"abilities\":[\"has space\"],\"owner\":\"o\"}",
         "INVALID_ARGUMENT", "abilities"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CURL(&r, "-X", "POST", url(&f, "/v1/tokens"), "-H", bearer(f.p.admin), "-H",
             "Content-Type: application/json", "--data-binary", cases[i].body);
        CHECK_PROBLEM(&r, 400, cases[i].code);
        const char *detail = jstr(&r, "detail");
        if (!test_contains(detail, cases[i].detail)) {
            test_fail(__FILE__, __LINE__, "case %zu: detail \"%s\" lacks \"%s\"", i,
                      detail ? detail : "(null)", cases[i].detail);
        }
    }
    static const char *const queries[] = {
        "/v1/auth?mode=some",         "/v1/auth?abilities=orders:read",
        "/v1/auth?ability=%zz",       "/v1/auth?ability=%00",
        "/v1/auth?ability=%ff",       "/v1/tokens?limit=0",
        "/v1/tokens?limit=1001",      "/v1/tokens?limit=ten",
        "/v1/tokens/self?x=1",        "/v1/tokens?cursor=a&cursor=b",
        "/v1/auth?mode=any&mode=all", "/v1/tokens?limit=1&limit=2",
    };
    for (size_t i = 0; i < sizeof(queries) / sizeof(queries[0]); i++) {
        CURL(&r, url(&f, queries[i]), "-H", bearer(f.p.admin));
        if (r.status != 400) {
            fprintf(stderr, "    query %s\n", queries[i]);
        }
        CHECK_PROBLEM(&r, 400, "BAD_REQUEST");
    }
    /* A cursor tokend cannot read is its INVALID_ARGUMENT. */
    CURL(&r, url(&f, "/v1/tokens?owner=user:8&cursor=garbage"), "-H", bearer(f.p.admin));
    CHECK_PROBLEM(&r, 400, "INVALID_ARGUMENT");
    res_free(&r);
    fixture_stop(&f);
}

TEST(gateway_404_405_routes) {
    fixture f;
    fixture_start(&f, NULL);
    char token[TOK], id[TOK], unknown_id[TOKEN_ID_LEN + 1];
    create_token(&f, "user:9", orders_read, 1, 0, token, id);
    memcpy(unknown_id, "AAAAAAAAAAAAAAAA", TOKEN_ID_LEN + 1);
    http_res r = {0};
    const char *const no_route[] = {"/",         "/v1",        "/v2/auth",
                                    "/v1/auth/", "/healthz/x", "/v1/tokensX"};
    for (size_t i = 0; i < sizeof(no_route) / sizeof(no_route[0]); i++) {
        CURL(&r, url(&f, no_route[i]));
        CHECK_PROBLEM(&r, 404, "NO_ROUTE");
    }
    /* Anything below /v1/tokens/ is an id, and a bad id is just not found:
     * no path is special, and no call is made. */
    const char *const bad_ids[] = {"/v1/tokens/",       "/v1/tokens/short",
                                   "/v1/tokens/../x",   "/v1/tokens/..%2Fx",
                                   "/v1/tokens/%2e%2e", "/v1/tokens/AAAAAAAAAAAAAAA%41"};
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        CURL(&r, "--path-as-is", "-X", "DELETE", url(&f, bad_ids[i]), "-H",
             bearer(f.p.admin));
        CHECK_PROBLEM(&r, 404, "NOT_FOUND");
    }
    CHECK(count_in_file(f.g.log_path, "path=\"/v1/tokens/../x\" status=404") == 1);
    CURL(&r, "-X", "DELETE", url(&f, fmt("/v1/tokens/%s", unknown_id)), "-H",
         bearer(f.p.admin));
    CHECK_PROBLEM(&r, 404, "NOT_FOUND");
    /* Another owner's id looks the same as none. */
    const char *rights[] = {"tokens:write"};
    char other[TOK];
    create_token(&f, "user:10", rights, 1, 0, other, NULL);
    CURL(&r, "-X", "DELETE", url(&f, fmt("/v1/tokens/%s", id)), "-H", bearer(other));
    CHECK_PROBLEM(&r, 404, "NOT_FOUND");

    static const struct {
        const char *method;
        const char *path;
        const char *allow;
    } wrong[] = {
        {"PUT", "/v1/tokens", "GET, HEAD, POST, DELETE"},
        {"POST", "/v1/tokens/AAAAAAAAAAAAAAAA", "GET, HEAD, DELETE"},
        {"POST", "/v1/auth", "GET, HEAD"},
        {"DELETE", "/v1/tokens/self", "GET, HEAD"},
        {"BREW", "/healthz", "GET, HEAD"},
        {"OPTIONS", "/v1/openapi.json", "GET, HEAD"},
    };
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        CURL(&r, "-X", wrong[i].method, url(&f, wrong[i].path));
        CHECK_PROBLEM(&r, 405, "METHOD_NOT_ALLOWED");
        CHECK_STR(header(&r, "Allow"), wrong[i].allow);
    }
    CHECK_INT(CURL(&r, url(&f, "/v1/auth"), "-H", bearer(token)), 200);
    res_free(&r);
    fixture_stop(&f);
}

/* The Location of a create answers: GET /v1/tokens/{id} is the token as
 * a list item, with the uses made a moment ago (held in tokend's memory,
 * long before they are written); /v1/tokens/self says the same. Another
 * owner's id and an unknown one are 404 alike, a credential without
 * tokens:read is 403, and a DELETE of the last admin token is 409 with
 * the way out. */
TEST(gateway_get_token_by_id_and_last_admin_refusal) {
    fixture f;
    fixture_start(&f, FLAGS("--log-level=info"));
    http_res r = {0};
    CHECK_INT(CURL(&r, "-X", "POST", url(&f, "/v1/tokens"), "-H", bearer(f.p.admin), "-H",
                   "Content-Type: application/json", "--data",
                   "{\"owner\":\"partner:g\",\"name\":\"located\",\"abilities\":"
                   "[\"orders:read\",\"tokens:read\"]}"),
              201);
    char token[TOK], id[TOK], location[TOK];
    REQUIRE(jstr(&r, "token") != NULL && jstr(&r, "id") != NULL &&
            header(&r, "Location") != NULL);
    snprintf(token, sizeof(token), "%s", jstr(&r, "token"));
    snprintf(id, sizeof(id), "%s", jstr(&r, "id"));
    snprintf(location, sizeof(location), "%s", header(&r, "Location"));
    CHECK_INT(CURL(&r, url(&f, location), "-H", bearer(f.p.admin)), 200);
    CHECK_STR(jstr(&r, "id"), id);
    CHECK_STR(jstr(&r, "name"), "located");
    CHECK(jstr(&r, "token") == NULL);
    json_t *doc = json_loads(r.body, 0, NULL);
    REQUIRE(doc != NULL);
    CHECK(json_is_null(json_object_get(doc, "last_used_at")));
    CHECK_INT(json_integer_value(json_object_get(doc, "use_count")), 0);
    json_decref(doc);

    for (int i = 0; i < 2; i++) {
        CHECK_INT(CURL(&r, url(&f, "/v1/auth?ability=orders:read"), "-H", bearer(token)),
                  200);
    }
    CHECK_INT(CURL(&r, url(&f, "/v1/tokens/self"), "-H", bearer(token)), 200);
    doc = json_loads(r.body, 0, NULL);
    REQUIRE(doc != NULL);
    CHECK_INT(json_integer_value(json_object_get(doc, "use_count")), 3);
    CHECK(json_is_integer(json_object_get(doc, "last_used_at")));
    json_decref(doc);
    /* Its own owner's token, read with its own tokens:read. */
    CHECK_INT(CURL(&r, url(&f, location), "-H", bearer(token)), 200);
    doc = json_loads(r.body, 0, NULL);
    REQUIRE(doc != NULL);
    /* 3 verifies, and this call's own use of it as the credential. */
    CHECK(json_integer_value(json_object_get(doc, "use_count")) >= 3);
    int64_t last = json_integer_value(json_object_get(doc, "last_used_at"));
    CHECK(last > 0 && llabs(last - (int64_t)(time(NULL)) * 1000) < 60000);
    json_decref(doc);
    CHECK_INT(CURL(&r, "-I", url(&f, location), "-H", bearer(f.p.admin)), 200);

    const char *rights[] = {"tokens:read"};
    char other[TOK], none[TOK];
    create_token(&f, "partner:h", rights, 1, 0, other, NULL);
    create_token(&f, "partner:g", orders_read, 1, 0, none, NULL);
    CHECK_INT(CURL(&r, url(&f, location), "-H", bearer(other)), 404);
    CHECK_PROBLEM(&r, 404, "NOT_FOUND");
    CURL(&r, url(&f, "/v1/tokens/AAAAAAAAAAAAAAAA"), "-H", bearer(f.p.admin));
    CHECK_PROBLEM(&r, 404, "NOT_FOUND");
    CURL(&r, url(&f, location), "-H", bearer(none));
    CHECK_PROBLEM(&r, 403, "PERMISSION_DENIED");
    CURL(&r, url(&f, location));
    CHECK_PROBLEM(&r, 401, "MISSING_TOKEN");
    CURL(&r, url(&f, fmt("%s?x=1", location)), "-H", bearer(f.p.admin));
    CHECK_INT(r.status, 400);

    /* The admin revoking its own owner's tokens, itself the only admin. */
    CURL(&r, "-X", "DELETE", url(&f, "/v1/tokens"), "-H", bearer(f.p.admin));
    CHECK_PROBLEM(&r, 409, "FAILED_PRECONDITION");
    CHECK(test_contains(jstr(&r, "detail"), "tokend admin-token"));
    tokend_verdict v;
    REQUIRE(tokend_verify(f.admin, NULL, f.p.admin, NULL, 0, TOKEND_ABILITIES_ALL, &v,
                          NULL) == TOKEND_OK);
    CURL(&r, "-X", "DELETE", url(&f, fmt("/v1/tokens/%s", v.info.id)), "-H",
         bearer(f.p.admin));
    tokend_verdict_free(&v);
    CHECK_PROBLEM(&r, 409, "FAILED_PRECONDITION");
    CHECK_INT(CURL(&r, url(&f, "/v1/tokens/self"), "-H", bearer(f.p.admin)), 200);
    res_free(&r);
    fixture_stop(&f);
}

TEST(gateway_413_415_bodies) {
    fixture f;
    fixture_start(&f, FLAGS("--max-body", "1024"));
    http_res r = {0};
    LOCAL(post, url(&f, "/v1/tokens"));
    LOCAL(admin, bearer(f.p.admin));
    char big[2048];
    memset(big, ' ', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    big[0] = '{';
    big[sizeof(big) - 2] = '}';
    /* Announced by Content-Length: refused before the body is read. */
    CURL(&r, "-X", "POST", post, "-H", admin, "-H", "Content-Type: application/json",
         "--data-binary", big);
    CHECK_PROBLEM(&r, 413, "BODY_TOO_LARGE");
    CHECK_STR(header(&r, "Connection"), "close");
    /* Chunked: counted while reading. */
    CURL(&r, "-X", "POST", post, "-H", admin, "-H", "Content-Type: application/json",
         "-H", "Transfer-Encoding: chunked", "--data-binary", big);
    CHECK_PROBLEM(&r, 413, "BODY_TOO_LARGE");
    /* Exactly at the limit is fine. */
    char fits[1025];
    const char *json = "{\"owner\":\"o\",\"name\":\"n\",\"abilities\":[\"a\"]";
    memset(fits, ' ', sizeof(fits) - 1);
    fits[sizeof(fits) - 1] = '\0';
    memcpy(fits, json, strlen(json));
    fits[sizeof(fits) - 2] = '}';
    CHECK_INT(strlen(fits), 1024);
    CHECK_INT(CURL(&r, "-X", "POST", post, "-H", admin, "-H",
                   "Content-Type: application/json; charset=utf-8", "--data-binary",
                   fits),
              201);

    CURL(&r, "-X", "POST", post, "-H", admin, "-H", "Content-Type: text/plain",
         "--data-binary", "{}");
    CHECK_PROBLEM(&r, 415, "UNSUPPORTED_MEDIA_TYPE");
    CURL(&r, "-X", "POST", post, "-H", admin, "-H", "Content-Type:", "--data-binary",
         "{}");
    CHECK_PROBLEM(&r, 415, "UNSUPPORTED_MEDIA_TYPE");
    CURL(&r, "-X", "POST", post, "-H", admin, "-H", "Content-Type: application/jsonx",
         "--data-binary", "{}");
    CHECK_PROBLEM(&r, 415, "UNSUPPORTED_MEDIA_TYPE");
    res_free(&r);
    check_healthy(&f);
    fixture_stop(&f);
}

/* ------------------------------------------------------------------------
 * tokend down, stalled, overloaded. */

TEST(gateway_503_when_tokend_down_then_recovers) {
    fixture f;
    fixture_start(&f, FLAGS("--rpc-timeout-ms", "500"));
    char token[TOK];
    create_token(&f, "user:11", orders_read, 1, 0, token, NULL);
    http_res r = {0};
    LOCAL(auth, url(&f, "/v1/auth"));
    CHECK_INT(CURL(&r, auth, "-H", bearer(token)), 200);

    harness_stop(&f.p);
    CURL(&r, auth, "-H", bearer(token));
    CHECK_PROBLEM(&r, 503, "UNAVAILABLE");
    CHECK(r.seconds < 1.5);
    CURL(&r, url(&f, "/readyz"));
    CHECK_PROBLEM(&r, 503, "UNAVAILABLE");
    check_healthy(&f);

    /* Same socket path, same data: the gateway redials on its own. */
    REQUIRE(harness_start(&f.p));
    double t0 = now_s();
    while (CURL(&r, auth, "-H", bearer(token)) != 200 && now_s() - t0 < 3.0) {
        usleep(50 * 1000);
    }
    CHECK_INT(r.status, 200);
    CHECK(now_s() - t0 < 2.0);
    CHECK_INT(CURL(&r, url(&f, "/readyz")), 200);
    res_free(&r);
    fixture_stop(&f);
}

TEST(gateway_504_when_tokend_stalls) {
    fixture f;
    fixture_start(&f, FLAGS("--rpc-timeout-ms", "400"));
    char token[TOK];
    create_token(&f, "user:12", orders_read, 1, 0, token, NULL);
    http_res r = {0};
    LOCAL(auth, url(&f, "/v1/auth"));
    CHECK_INT(CURL(&r, auth, "-H", bearer(token)), 200);
    stop_process(f.p.pid);
    CURL(&r, auth, "-H", bearer(token));
    kill(f.p.pid, SIGCONT);
    CHECK_PROBLEM(&r, 504, "DEADLINE_EXCEEDED");
    CHECK(r.seconds >= 0.35 && r.seconds < 1.5);
    CHECK_INT(CURL(&r, auth, "-H", bearer(token)), 200);
    res_free(&r);
    fixture_stop(&f);
}

/* /readyz answers within --ready-timeout-ms however long --rpc-timeout-ms
 * is: 503 DEADLINE_EXCEEDED when tokend is stopped (slow), 503
 * UNAVAILABLE at once when it is down, 200 again when it is back. */
TEST(gateway_readyz_has_its_own_time_limit) {
    fixture f;
    fixture_start(&f, FLAGS("--rpc-timeout-ms", "8000", "--ready-timeout-ms", "300"));
    http_res r = {0};
    CHECK_INT(CURL(&r, url(&f, "/readyz")), 200);
    stop_process(f.p.pid);
    CURL(&r, url(&f, "/readyz"));
    kill(f.p.pid, SIGCONT);
    CHECK_PROBLEM(&r, 503, "DEADLINE_EXCEEDED");
    CHECK(r.seconds >= 0.25 && r.seconds < 1.2);
    CHECK_INT(CURL(&r, url(&f, "/readyz")), 200);

    harness_stop(&f.p);
    CURL(&r, url(&f, "/readyz"));
    CHECK_PROBLEM(&r, 503, "UNAVAILABLE");
    CHECK(r.seconds < 1.0);
    CHECK_STR(jstr(&r, "detail"), "connection refused: is tokend running?");
    /* Other calls keep the RPC limit, and a refused connection ends
     * them at once as well. */
    char token[TOK];
    unknown_token(token);
    LOCAL(auth, url(&f, "/v1/auth"));
    CURL(&r, auth, "-H", bearer(token));
    CHECK_PROBLEM(&r, 503, "UNAVAILABLE");
    CHECK(r.seconds < 1.5);
    REQUIRE(harness_start(&f.p));
    double t0 = now_s();
    while (CURL(&r, url(&f, "/readyz")) != 200 && now_s() - t0 < 3.0) {
        usleep(50 * 1000);
    }
    CHECK_INT(r.status, 200);
    res_free(&r);
    fixture_stop(&f);

    /* The option's bounds, from the environment too. */
    const char *bin = harness_bin("tokend-gateway");
    char *out = NULL, *err = NULL;
    const char *zero[] = {bin, "--ready-timeout-ms", "0", NULL};
    CHECK_INT(harness_exec(zero, NULL, NULL, &out, &err), 2);
    CHECK_STR(err,
              "tokend-gateway: flag: --ready-timeout-ms must be a whole number from 1 "
              "to 600000, not \"0\"\n");
    free(out);
    free(err);
    const char *plain[] = {bin, NULL};
    const char *env[] = {"TOKEND_GATEWAY_READY_TIMEOUT_MS=soon", NULL};
    CHECK_INT(harness_exec(plain, NULL, env, &out, &err), 2);
    CHECK_STR(err, "tokend-gateway: TOKEND_GATEWAY_READY_TIMEOUT_MS: --ready-timeout-ms "
                   "must be a whole number from 1 to 600000, not \"soon\"\n");
    free(out);
    free(err);
}

/* Waits (up to 5 s) until the gateway reports `n` RPCs in flight on
 * /healthz: a request sent on a raw socket is then surely waiting for
 * tokend, whatever the machine's load. */
static bool wait_inflight(fixture *f, int n) {
    char want[48];
    snprintf(want, sizeof(want), "\"rpc_in_flight\":%d", n);
    for (int i = 0; i < 250; i++) {
        http_res r = {0};
        if (CURL(&r, url(f, "/healthz")) == 200 && test_contains(r.body, want)) {
            res_free(&r);
            return true;
        }
        if (i == 249) {
            char *log = harness_read_file(f->g.log_path);
            fprintf(stderr,
                    "    /healthz never showed %s; last: %s\n    gateway log:\n%s", want,
                    r.body != NULL ? r.body : "(none)", log != NULL ? log : "");
            free(log);
        }
        res_free(&r);
        usleep(20 * 1000);
    }
    return false;
}

TEST(gateway_503_overloaded_past_max_inflight) {
    fixture f;
    /* A long RPC timeout: the held slot must outlast the checks below even
     * on a loaded machine. */
    fixture_start(&f, FLAGS("--max-inflight", "1", "--rpc-timeout-ms", "8000"));
    char token[TOK];
    create_token(&f, "user:13", orders_read, 1, 0, token, NULL);
    http_res r = {0};
    stop_process(f.p.pid);
    /* One request holds the only slot while tokend is stopped... */
    int fd = raw_connect(f.g.port);
    REQUIRE(fd >= 0);
    LOCAL(req, fmt("GET /v1/auth HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
                   "%s\r\n\r\n",
                   token));
    raw_send(fd, req, strlen(req));
    REQUIRE(wait_inflight(&f, 1));
    /* ...so the next is refused at once, without waiting. */
    CURL(&r, url(&f, "/v1/auth"), "-H", bearer(token));
    CHECK_PROBLEM(&r, 503, "OVERLOADED");
    CHECK(r.seconds < 0.5);
    kill(f.p.pid, SIGCONT);
    bool closed = false;
    char *reply = raw_read(fd, 3000, &closed);
    CHECK(strncmp(reply, "HTTP/1.1 200", 12) == 0);
    free(reply);
    close(fd);
    CHECK_INT(CURL(&r, url(&f, "/v1/auth"), "-H", bearer(token)), 200);
    res_free(&r);
    fixture_stop(&f);
}

/* ------------------------------------------------------------------------
 * Transport: TLS, shared port, hostile bytes, shutdown. */

/* A self-signed certificate for 127.0.0.1 and localhost in a new scratch
 * dir: cert.pem and key.pem (paths into cert and key, 400 bytes each), the
 * key `newkey` as openssl req takes it ("ec", "rsa:2048") with `pkeyopt`
 * (or NULL). */
static void make_cert(const char *newkey, const char *pkeyopt, char *cert, char *key) {
    const char *dir = test_tmpdir();
    snprintf(cert, 400, "%s/cert.pem", dir);
    snprintf(key, 400, "%s/key.pem", dir);
    const char *openssl[] = {"openssl",
                             "req",
                             "-x509",
                             "-nodes",
                             "-keyout",
                             key,
                             "-out",
                             cert,
                             "-days",
                             "1",
                             "-subj",
                             "/CN=localhost",
                             "-addext",
                             "subjectAltName=IP:127.0.0.1,DNS:localhost",
                             "-newkey",
                             newkey,
                             pkeyopt != NULL ? "-pkeyopt" : NULL,
                             pkeyopt,
                             NULL};
    char *out = NULL, *err = NULL;
    int rc = harness_exec(openssl, NULL, NULL, &out, &err);
    if (rc != 0) {
        fprintf(stderr, "openssl: %s\n", err ? err : "");
    }
    REQUIRE(rc == 0);
    free(out);
    free(err);
}

/* Starts tokend, and a gateway in front of it serving HTTPS with a new
 * certificate of make_cert(newkey, pkeyopt, cert, key); g->extra[0..3]
 * are the TLS flags. */
static void start_https(tokend_proc *p, gateway_proc *g, const char *newkey,
                        const char *pkeyopt, char *cert, char *key) {
    harness_init(p);
    REQUIRE(harness_start(p));
    make_cert(newkey, pkeyopt, cert, key);
    memset(g, 0, sizeof(*g));
    g->extra[0] = "--tls-cert";
    g->extra[1] = cert;
    g->extra[2] = "--tls-key";
    g->extra[3] = key;
    REQUIRE(harness_gateway_start(g, p->url, 0));
    CHECK(strncmp(g->base, "https://", 8) == 0);
}

TEST(gateway_https_tls13_and_tls12) {
    tokend_proc p;
    gateway_proc g;
    char cert[400], key[400];
    start_https(&p, &g, "ec", "ec_paramgen_curve:P-256", cert, key);
    char *out = NULL, *err = NULL;
    tokend_client *admin = harness_client(&p, p.admin);
    char token[TOK];
    harness_create(admin, "user:tls", "t", orders_read, 1, 0, token, TOK, NULL, 0);
    tokend_close(admin);

    http_res r = {0};
    LOCAL(auth, fmt("%s/v1/auth?ability=orders:read", g.base));
    CHECK_INT(CURL(&r, "--cacert", cert, "--tlsv1.3", auth, "-H", bearer(token)), 200);
    CHECK_STR(header(&r, "X-Token-Owner"), "user:tls");
    /* -v shows the protocol curl agreed on. */
    const char *v13[] = {"curl",     "-sv", "-o",        "/dev/null",
                         "--cacert", cert,  "--tlsv1.3", fmt("%s/healthz", g.base),
                         NULL};
    CHECK_INT(harness_exec(v13, NULL, NULL, &out, &err), 0);
    CHECK(test_contains(err, "SSL connection using TLSv1.3"));
    free(out);
    free(err);
    const char *v12[] = {
        "curl", "-sv",       "-o",        "/dev/null", "--cacert",
        cert,   "--tlsv1.2", "--tls-max", "1.2",       fmt("%s/healthz", g.base),
        NULL};
    CHECK_INT(harness_exec(v12, NULL, NULL, &out, &err), 0);
    CHECK(test_contains(err, "SSL connection using TLSv1.2"));
    free(out);
    free(err);
    CHECK_INT(CURL(&r, "--cacert", cert, "--tlsv1.2", "--tls-max", "1.2", auth, "-H",
                   bearer(token)),
              200);
    /* Plain HTTP on the TLS port gets no answer from the API. */
    CHECK(CURL(&r, fmt("http://127.0.0.1:%d/healthz", g.port)) != 200);
    res_free(&r);
    CHECK_INT(harness_gateway_stop(&g), 0);
    harness_stop(&p);
}

/* Runs openssl s_client against the gateway with `args` (a TLS version
 * flag and a cipher choice); returns the cipher it agreed on, or "" if the
 * handshake failed (static, overwritten by the next call). */
static const char *s_client(int port, const char *const *args) {
    static char cipher[128];
    const char *argv[16] = {"openssl", "s_client", "-connect", fmt("127.0.0.1:%d", port)};
    size_t n = 4;
    for (size_t i = 0; args[i] != NULL && n < 15; i++) {
        argv[n++] = args[i];
    }
    char *out = NULL, *err = NULL;
    int rc = harness_exec(argv, NULL, NULL, &out, &err);
    const char *is = out != NULL ? strstr(out, "Cipher is ") : NULL;
    cipher[0] = '\0';
    if (rc == 0 && is != NULL) {
        snprintf(cipher, sizeof(cipher), "%.*s", (int)strcspn(is + 10, " \r\n"), is + 10);
    }
    free(out);
    free(err);
    return cipher;
}

TEST(gateway_https_forward_secret_aead_only_and_hsts) {
    /* An RSA key, which static-RSA key exchange could use. */
    tokend_proc p;
    gateway_proc g;
    char cert[400], key[400];
    start_https(&p, &g, "rsa:2048", NULL, cert, key);
    /* TLS 1.2 without forward secrecy (static RSA, or finite-field DHE)
     * or with CBC and SHA-1: refused. */
    static const char *const refused[] = {
        "AES256-GCM-SHA384",
        "AES128-GCM-SHA256",
        "AES128-SHA",
        "AES256-SHA256",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-RSA-AES256-SHA384",
        "DHE-RSA-AES128-GCM-SHA256",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        const char *got = s_client(g.port, FLAGS("-tls1_2", "-cipher", refused[i]));
        if (got[0] != '\0') {
            test_fail(__FILE__, __LINE__, "TLS 1.2 with %s: agreed on %s", refused[i],
                      got);
        }
    }
    /* ECDHE with AEAD on TLS 1.2, and TLS 1.3: agreed. */
    static const char *const allowed[] = {
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-CHACHA20-POLY1305",
    };
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        CHECK_STR(s_client(g.port, FLAGS("-tls1_2", "-cipher", allowed[i])), allowed[i]);
    }
    CHECK_STR(
        s_client(g.port, FLAGS("-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256")),
        "TLS_AES_128_GCM_SHA256");
    CHECK_STR(s_client(g.port, FLAGS("-tls1_3")), "TLS_AES_256_GCM_SHA384");
    /* Older protocols: refused. */
    CHECK_STR(s_client(g.port, FLAGS("-tls1_1", "-cipher", "ALL:@SECLEVEL=0")), "");

    /* HSTS on every HTTPS reply, by default for a year. */
    http_res r = {0};
    CHECK_INT(CURL(&r, "--cacert", cert, fmt("%s/healthz", g.base)), 200);
    CHECK_STR(header(&r, "Strict-Transport-Security"), "max-age=31536000");
    CHECK_INT(CURL(&r, "--cacert", cert, fmt("%s/v1/auth", g.base)), 401);
    CHECK_STR(header(&r, "Strict-Transport-Security"), "max-age=31536000");
    CHECK_INT(harness_gateway_stop(&g), 0);
    /* Configurable through the environment, and off by a flag. */
    static char env_hsts[] = "TOKEND_GATEWAY_HSTS=max-age=600; includeSubDomains";
    putenv(env_hsts);
    REQUIRE(harness_gateway_start(&g, p.url, 0));
    CHECK_INT(CURL(&r, "--cacert", cert, fmt("%s/healthz", g.base)), 200);
    CHECK_STR(header(&r, "Strict-Transport-Security"), "max-age=600; includeSubDomains");
    CHECK_INT(harness_gateway_stop(&g), 0);
    g.extra[4] = "--hsts";
    g.extra[5] = "off";
    REQUIRE(harness_gateway_start(&g, p.url, 0));
    CHECK_INT(CURL(&r, "--cacert", cert, fmt("%s/healthz", g.base)), 200);
    CHECK(header(&r, "Strict-Transport-Security") == NULL);
    CHECK_INT(harness_gateway_stop(&g), 0);
    /* Never over plain HTTP, whatever --hsts says. */
    memset(&g, 0, sizeof(g));
    REQUIRE(harness_gateway_start(&g, p.url, 0));
    CHECK_INT(CURL(&r, fmt("%s/healthz", g.base)), 200);
    CHECK(header(&r, "Strict-Transport-Security") == NULL);
    CHECK_INT(harness_gateway_stop(&g), 0);
    res_free(&r);
    harness_stop(&p);
}

TEST(gateway_two_gateways_share_one_port) {
    fixture f;
    fixture_start(&f, NULL);
    gateway_proc g2;
    memset(&g2, 0, sizeof(g2));
    REQUIRE(harness_gateway_start(&g2, f.p.url, f.g.port));
    CHECK_INT(g2.port, f.g.port);
    char token[TOK], id[TOK];
    create_token(&f, "user:14", orders_read, 1, 0, token, id);
    http_res r = {0};
    LOCAL(auth, url(&f, "/v1/auth"));
    /* Each curl is a new connection; the kernel spreads them. */
    for (int i = 0; i < 24; i++) {
        CHECK_INT(CURL(&r, auth, "-H", bearer(token)), 200);
    }
    const char *ok_line = "path=\"/v1/auth\" status=200";
    /* A request's log line is written as it completes, which may be just
     * after curl has its answer: wait (up to 3 s) for all 24. */
    int first = 0, second = 0;
    for (int i = 0; i < 300 && first + second < 24; i++) {
        first = count_in_file(f.g.log_path, ok_line);
        second = count_in_file(g2.log_path, ok_line);
        if (first + second < 24) {
            usleep(10 * 1000);
        }
    }
    CHECK_INT(first + second, 24);
    CHECK(first > 0 && second > 0);

    /* A revoke through whichever took it is seen by both on the next
     * request: neither keeps any state of its own. */
    CHECK_INT(CURL(&r, "-X", "DELETE", url(&f, fmt("/v1/tokens/%s", id)), "-H",
                   bearer(f.p.admin)),
              204);
    for (int i = 0; i < 24; i++) {
        CURL(&r, auth, "-H", bearer(token));
        CHECK_PROBLEM(&r, 401, "NOT_FOUND");
    }
    const char *gone_line = "path=\"/v1/auth\" status=401";
    int gone1 = 0, gone2 = 0;
    for (int i = 0; i < 300 && gone1 + gone2 < 24; i++) {
        gone1 = count_in_file(f.g.log_path, gone_line);
        gone2 = count_in_file(g2.log_path, gone_line);
        if (gone1 + gone2 < 24) {
            usleep(10 * 1000);
        }
    }
    CHECK_INT(gone1 + gone2, 24);
    CHECK(gone1 > 0 && gone2 > 0);
    /* One stops; the other keeps the port. */
    CHECK_INT(harness_gateway_stop(&g2), 0);
    for (int i = 0; i < 5; i++) {
        CHECK_INT(CURL(&r, url(&f, "/healthz")), 200);
    }
    res_free(&r);
    fixture_stop(&f);
}

/* ------------------------------------------------------------------------
 * Connection limits. */

/* Raises this process's soft limit on open files to at least n. */
static void want_open_files(rlim_t n) {
    struct rlimit rl;
    REQUIRE(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < n) {
        REQUIRE(rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= n);
        rl.rlim_cur = n;
        REQUIRE(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    }
}

/* True once the gateway has closed fd (waits up to wait_ms). */
static bool closed_by_peer(int fd, int wait_ms) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&pfd, 1, wait_ms) <= 0) {
        return false;
    }
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
    return n == 0 || (n < 0 && errno != EAGAIN);
}

/* GET /healthz from `from` on a new connection (kept open into *keep if
 * keep is not NULL, else closed). Returns what came back within 3 s
 * (malloc'd) and the seconds it took. */
static char *healthz_from(const char *from, int port, int *keep, double *took) {
    double t0 = now_s();
    int fd = connect_from(from, port);
    char *reply = NULL;
    if (fd >= 0) {
        const char *req = keep != NULL ? "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                                       : "GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                         "Connection: close\r\n\r\n";
        raw_send(fd, req, strlen(req));
        bool closed = false;
        reply = raw_read(fd, keep != NULL ? 300 : 3000, &closed);
    }
    *took = now_s() - t0;
    if (keep != NULL) {
        *keep = fd;
    } else if (fd >= 0) {
        close(fd);
    }
    return reply != NULL ? reply : strdup("");
}

#define FLOOD 2000

TEST(gateway_idle_connection_flood_from_one_address) {
    want_open_files(FLOOD + 256);
    fixture f;
    fixture_start(&f, NULL); /* the default limits */
    /* 2,000 idle connections from 127.0.0.1: more than libmicrohttpd took
     * before it stopped accepting (about 1,020), until the request timeout
     * closed them 10 s later. */
    static int flood[FLOOD];
    for (int i = 0; i < FLOOD; i++) {
        flood[i] = connect_from("127.0.0.1", f.g.port);
        REQUIRE(flood[i] >= 0);
    }
    /* A new client is answered at once, from another address and from the
     * same one: the flood's longest-idle connections make room. */
    static const char *const from[] = {"127.0.0.2", "127.0.0.1"};
    for (size_t i = 0; i < 2; i++) {
        double took = 0;
        char *reply = healthz_from(from[i], f.g.port, NULL, &took);
        if (strncmp(reply, "HTTP/1.1 200", 12) != 0 || took > 1.0) {
            test_fail(__FILE__, __LINE__, "from %s: %.1f s, \"%.40s\"", from[i], took,
                      reply);
        }
        free(reply);
    }
    /* At most --max-connections-per-ip (256) of the flood stay open: the
     * newest; the oldest were closed first. */
    int open = FLOOD;
    for (int wait = 0; wait < 30 && open > 256; wait++) {
        open = 0;
        for (int i = 0; i < FLOOD; i++) {
            open += !closed_by_peer(flood[i], 0);
        }
        if (open > 256) {
            usleep(100 * 1000);
        }
    }
    CHECK(open <= 256);
    CHECK(open >= 200);
    for (int i = 0; i < FLOOD; i++) {
        if (i < 1000 && !closed_by_peer(flood[i], 0)) {
            test_fail(__FILE__, __LINE__, "flood connection %d (of the oldest) is open",
                      i);
            break;
        }
        if (i >= FLOOD - 100 && closed_by_peer(flood[i], 0)) {
            test_fail(__FILE__, __LINE__,
                      "flood connection %d (of the newest) was closed", i);
            break;
        }
    }
    for (int i = 0; i < FLOOD; i++) {
        close(flood[i]);
    }
    check_healthy(&f);
    CHECK_INT(harness_gateway_stop(&f.g), 0);
    CHECK(count_in_file(f.g.log_path, "event=connections.limit refused=0 closed_idle=") >=
          1);
    fixture_stop(&f);
}

/* A connection whose request has begun (the request line and part of the
 * headers): busy until it ends. */
static int busy_from(const char *from, int port) {
    int fd = connect_from(from, port);
    REQUIRE(fd >= 0);
    const char *part = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    raw_send(fd, part, strlen(part));
    return fd;
}

TEST(gateway_connection_limits_close_idle_first_then_503) {
    /* 12 in all through the environment (tokend reads no TOKEND_GATEWAY_
     * variable), 4 per address by a flag. */
    static char env_max[] = "TOKEND_GATEWAY_MAX_CONNECTIONS=12";
    putenv(env_max);
    fixture f;
    fixture_start(&f,
                  FLAGS("--max-connections-per-ip", "4", "--request-timeout-s", "60"));
    const gateway_proc g = f.g;
    int busy[12];
    for (int i = 0; i < 4; i++) {
        busy[i] = busy_from("127.0.0.1", g.port);
    }
    usleep(300 * 1000); /* for the gateway to read their request lines */
    /* A fifth from the same address, with all four busy: 503 at once, and
     * closed. */
    double took = 0;
    char *reply = healthz_from("127.0.0.1", g.port, NULL, &took);
    CHECK(strncmp(reply, "HTTP/1.1 503", 12) == 0);
    CHECK(test_contains(reply, "\"code\":\"OVERLOADED\""));
    CHECK(test_contains(reply, "too many connections from this address"));
    CHECK(test_contains(reply, "Connection: close\r\n"));
    CHECK(test_contains(reply, "Retry-After: 1\r\n"));
    CHECK(took < 1.0);
    free(reply);
    /* Another address is served. */
    reply = healthz_from("127.0.0.2", g.port, NULL, &took);
    CHECK(strncmp(reply, "HTTP/1.1 200", 12) == 0);
    free(reply);
    /* All 12 busy: a new address gets 503 too. */
    for (int i = 4; i < 12; i++) {
        busy[i] = busy_from(i < 8 ? "127.0.0.2" : "127.0.0.3", g.port);
    }
    usleep(300 * 1000);
    reply = healthz_from("127.0.0.4", g.port, NULL, &took);
    CHECK(strncmp(reply, "HTTP/1.1 503", 12) == 0);
    CHECK(test_contains(reply, "\"detail\":\"too many connections\""));
    CHECK(took < 1.0);
    free(reply);
    /* One busy goes; an idle kept-alive connection takes its place. At the
     * limit again, a new client closes that idle one, not a busy one. */
    close(busy[11]);
    usleep(300 * 1000);
    int kept = -1;
    reply = healthz_from("127.0.0.4", g.port, &kept, &took);
    CHECK(strncmp(reply, "HTTP/1.1 200", 12) == 0);
    free(reply);
    CHECK(!closed_by_peer(kept, 100));
    reply = healthz_from("127.0.0.5", g.port, NULL, &took);
    CHECK(strncmp(reply, "HTTP/1.1 200", 12) == 0);
    CHECK(took < 1.0);
    free(reply);
    CHECK(closed_by_peer(kept, 1000));
    close(kept);
    /* The busy ones were left alone: each finishes its request. */
    for (int i = 0; i < 11; i++) {
        const char *rest = "Connection: close\r\n\r\n";
        raw_send(busy[i], rest, strlen(rest));
        bool closed = false;
        char *got = raw_read(busy[i], 2000, &closed);
        if (strncmp(got, "HTTP/1.1 200", 12) != 0) {
            test_fail(__FILE__, __LINE__, "busy connection %d: \"%.40s\"", i, got);
        }
        free(got);
        close(busy[i]);
    }
    CHECK_INT(harness_gateway_stop(&f.g), 0);
    CHECK(count_in_file(g.log_path, "event=connections.limit refused=") >= 1);
    CHECK(count_in_file(g.log_path, "last_refused=127.0.0.") >= 1);
    fixture_stop(&f);
}

TEST(gateway_garbage_and_oversized_requests) {
    fixture f;
    fixture_start(&f, FLAGS("--max-header", "2048", "--request-timeout-s", "1",
                            "--idle-timeout-s", "1"));
    int port = f.g.port;
#define BYTES(s) s, sizeof(s) - 1
    static const struct {
        const char *bytes;
        size_t len;
        const char *reply; /* prefix wanted; "": closed without an answer */
    } garbage[] = {
        {BYTES("GARBAGE\r\n\r\n"), ""},
        {BYTES("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"), ""},
        {BYTES("GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n"), "HTTP/1.1 505"},
        {BYTES("GET /healthz HTTP/1.1\r\n\r\n"), "HTTP/1.1 400"},
        {BYTES("GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: many\r\n\r\n"),
         "HTTP/1.1 400"},
        {BYTES("GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"), "HTTP/1.1 400"},
        {BYTES("POST /v1/tokens HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               "\r\nzz\r\n"),
         "HTTP/1.1 400"},
        {BYTES("GARBAGE / HTTP/1.1\r\nHost: x\r\n\r\n"), "HTTP/1.1 404"},
        {BYTES("GET /\0\0\0 HTTP/1.1\r\nHost: x\r\n\r\n"), "HTTP/1.1 404"},
    };
#undef BYTES
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        bool closed = false;
        char *reply = raw_exchange(port, garbage[i].bytes, garbage[i].len, 500, &closed);
        bool want_none = garbage[i].reply[0] == '\0';
        if (want_none ? (reply[0] != '\0' || !closed)
                      : strncmp(reply, garbage[i].reply, strlen(garbage[i].reply)) != 0) {
            test_fail(__FILE__, __LINE__, "garbage %zu: got \"%.40s\", want \"%s\"", i,
                      reply, garbage[i].reply);
        }
        free(reply);
        check_healthy(&f);
    }
    /* Headers over --max-header: 431 with a problem body. */
    http_res r = {0};
    char big[3000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    CURL(&r, url(&f, "/healthz"), "-H", fmt("X-Big: %.2100s", big));
    CHECK_PROBLEM(&r, 431, "HEADERS_TOO_LARGE");
    CHECK_INT(CURL(&r, url(&f, "/healthz"), "-H", fmt("X-Big: %.1500s", big)), 200);
    /* Far over it, libmicrohttpd's own 431; a huge request line; many
     * headers. */
    size_t huge_len = 200 * 1024;
    char *huge = malloc(huge_len + 128);
    REQUIRE(huge != NULL);
    size_t k = (size_t)snprintf(huge, 64, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: ");
    memset(huge + k, 'h', huge_len);
    k += huge_len;
    k += (size_t)snprintf(huge + k, 8, "\r\n\r\n");
    bool closed = false;
    char *reply = raw_exchange(port, huge, k, 500, &closed);
    CHECK(strncmp(reply, "HTTP/1.1 431", 12) == 0);
    free(reply);
    k = (size_t)snprintf(huge, 64, "GET /");
    memset(huge + k, 'u', huge_len);
    k += huge_len;
    k += (size_t)snprintf(huge + k, 64, " HTTP/1.1\r\nHost: x\r\n\r\n");
    reply = raw_exchange(port, huge, k, 500, &closed);
    CHECK(strncmp(reply, "HTTP/1.1 414", 12) == 0);
    free(reply);
    k = (size_t)snprintf(huge, 64, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 2000; i++) {
        k += (size_t)snprintf(huge + k, 32, "X-H%d: v\r\n", i);
    }
    k += (size_t)snprintf(huge + k, 8, "\r\n");
    reply = raw_exchange(port, huge, k, 500, &closed);
    CHECK(strncmp(reply, "HTTP/1.1 431", 12) == 0);
    free(reply);
    free(huge);
    check_healthy(&f);

    /* A request that never finishes arriving is cut at --request-timeout-s,
     * though bytes keep trickling in (the idle timeout alone would not). */
    int fd = raw_connect(port);
    REQUIRE(fd >= 0);
    const char *partial = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    raw_send(fd, partial, strlen(partial));
    double t0 = now_s();
    closed = false;
    while (!closed && now_s() - t0 < 2.5) {
        raw_send(fd, "X", 1);
        free(raw_read(fd, 300, &closed));
    }
    CHECK(closed);
    CHECK(now_s() - t0 >= 0.8);
    close(fd);
    /* A kept-alive connection left idle is closed at --idle-timeout-s. */
    fd = raw_connect(port);
    REQUIRE(fd >= 0);
    const char *whole = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    raw_send(fd, whole, strlen(whole));
    reply = raw_read(fd, 300, &closed);
    CHECK(strncmp(reply, "HTTP/1.1 200", 12) == 0);
    CHECK(!closed);
    free(reply);
    t0 = now_s();
    free(raw_read(fd, 2500, &closed));
    CHECK(closed);
    CHECK(now_s() - t0 < 2.4);
    close(fd);
    check_healthy(&f);
    CHECK(kill(f.g.pid, 0) == 0);
    res_free(&r);
    fixture_stop(&f);
}

TEST(gateway_log_never_holds_a_token) {
    fixture f;
    fixture_start(&f, NULL);
    http_res r = {0};
    CHECK_INT(
        CURL(&r, "-X", "POST", url(&f, "/v1/tokens"), "-H", bearer(f.p.admin), "-H",
             "Content-Type: application/json", "--data",
             "{\"owner\":\"user:15\",\"name\":\"n\",\"abilities\":[\"orders:read\"]}"),
        201);
    char token[TOK], id[TOK], bad[TOK], unknown[TOKEN_MAX_LEN + 1];
    REQUIRE(jstr(&r, "token") != NULL);
    snprintf(token, sizeof(token), "%s", jstr(&r, "token"));
    snprintf(id, sizeof(id), "%s", jstr(&r, "id"));
    snprintf(bad, sizeof(bad), "%s", token);
    bad[20] = bad[20] == 'x' ? 'y' : 'x';
    unknown_token(unknown);
    CHECK_INT(CURL(&r, url(&f, "/v1/auth"), "-H", bearer(token)), 200);
    CHECK_INT(CURL(&r, url(&f, "/v1/auth?ability=orders:write"), "-H", bearer(token)),
              403);
    CHECK_INT(CURL(&r, url(&f, "/v1/auth"), "-H", bearer(bad)), 401);
    CHECK_INT(CURL(&r, url(&f, "/v1/auth"), "-H", bearer(unknown)), 401);
    CHECK_INT(CURL(&r, url(&f, fmt("/v1/auth?ability=%s", token)), "-H", bearer(token)),
              403);
    /* Tokens pasted where ids go, in paths and queries. */
    CHECK_INT(CURL(&r, "-X", "DELETE", url(&f, fmt("/v1/tokens/%s", token)), "-H",
                   bearer(token)),
              404);
    CHECK_INT(CURL(&r, url(&f, fmt("/x/%s/y", token))), 404);
    CHECK_INT(CURL(&r, url(&f, fmt("/v1/tokens?cursor=%s", token)), "-H", bearer(token)),
              403);
    /* A token as the method (curl -X "$TOKEN"): not a method this API
     * takes, and not one the log may show. */
    CHECK_INT(CURL(&r, "-X", token, url(&f, "/v1/auth"), "-H", bearer(token)), 405);
    CHECK_INT(CURL(&r, "-X", token, url(&f, "/healthz")), 405);
    /* A request refused before it is parsed (414) is logged too. */
    char many[400] = "/v1/auth?";
    for (int i = 0; i < 129; i++) {
        strcat(many, i > 0 ? "&a" : "a");
    }
    CHECK_INT(CURL(&r, url(&f, many)), 414);
    res_free(&r);
    CHECK_INT(harness_gateway_stop(&f.g), 0);
    char *log = harness_read_file(f.g.log_path);
    REQUIRE(log != NULL);
    CHECK(!test_contains(log, token));
    CHECK(!test_contains(log, bad));
    CHECK(!test_contains(log, unknown));
    CHECK(!test_contains(log, f.p.admin));
    /* Not even a long piece of one. */
    char piece[24];
    snprintf(piece, sizeof(piece), "%.20s", token + 8);
    CHECK(!test_contains(log, piece));
    CHECK(strcasestr(log, "bearer") == NULL);
    CHECK(strcasestr(log, "authorization") == NULL);
    /* The id is what identifies the token in the log. */
    CHECK(test_contains(log, fmt("status=200 ")));
    CHECK(test_contains(log, fmt("id=%s", id)));
    CHECK(test_contains(log, "path=\"/v1/tokens/{redacted}\""));
    CHECK(test_contains(log, "method=\"OTHER\" path=\"/v1/auth\" status=405"));
    CHECK(test_contains(log, "method=\"OTHER\" path=\"/healthz\" status=405"));
    /* Every request line names the client. */
    int lines = 0;
    for (const char *line = strstr(log, "event=request "); line != NULL;
         line = strstr(line + 1, "event=request ")) {
        const char *eol = strchr(line, '\n');
        size_t len = eol != NULL ? (size_t)(eol - line) : strlen(line);
        if (memmem(line, len, " client=127.0.0.1", 17) == NULL) {
            test_fail(__FILE__, __LINE__, "a request line without client=: %.*s",
                      (int)len, line);
        }
        lines++;
    }
    CHECK_INT(lines, 12);
    free(log);
    fixture_stop(&f);
}

TEST(gateway_sigterm_lets_inflight_finish) {
    fixture f;
    fixture_start(&f, FLAGS("--rpc-timeout-ms", "1500"));
    char token[TOK];
    create_token(&f, "user:16", orders_read, 1, 0, token, NULL);
    stop_process(f.p.pid);
    int fd = raw_connect(f.g.port);
    REQUIRE(fd >= 0);
    LOCAL(req, fmt("GET /v1/auth HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
                   "%s\r\n\r\n",
                   token));
    raw_send(fd, req, strlen(req));
    /* The request waits for tokend: it is in flight, nothing has come back. */
    REQUIRE(wait_inflight(&f, 1));
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    CHECK(poll(&pfd, 1, 0) == 0);
    kill(f.g.pid, SIGTERM);
    usleep(150 * 1000);
    /* It stopped accepting at once... */
    CHECK(raw_connect(f.g.port) < 0);
    CHECK(waitpid(f.g.pid, NULL, WNOHANG) == 0);
    /* ...and answers the request in flight once tokend does. */
    kill(f.p.pid, SIGCONT);
    bool closed = false;
    char *reply = raw_read(fd, 2000, &closed);
    CHECK(strncmp(reply, "HTTP/1.1 200", 12) == 0);
    CHECK(test_contains(reply, "Connection: close"));
    free(reply);
    close(fd);
    CHECK_INT(harness_gateway_stop(&f.g), 0);
    CHECK(count_in_file(f.g.log_path, "event=stopped") == 1);
    if (test_failures > 0) {
        char *log = harness_read_file(f.g.log_path);
        fprintf(stderr, "    gateway log:\n%s", log != NULL ? log : "");
        free(log);
    }
    fixture_stop(&f);
}

TEST(gateway_command_line_and_environment) {
    const char *bin = harness_bin("tokend-gateway");
    char *out = NULL, *err = NULL;
    const char *help[] = {bin, "--help", NULL};
    CHECK_INT(harness_exec(help, NULL, NULL, &out, &err), 0);
    const char *const options[] = {"--listen",
                                   "--service",
                                   "--tls-cert",
                                   "--tls-key",
                                   "--hsts",
                                   "--rpc-timeout-ms",
                                   "--ready-timeout-ms",
                                   "--max-inflight",
                                   "--max-body",
                                   "--max-header",
                                   "--request-timeout-s",
                                   "--idle-timeout-s",
                                   "--threads",
                                   "--max-connections",
                                   "--max-connections-per-ip",
                                   "--verify-credential",
                                   "--log-level",
                                   "TOKEND_GATEWAY_LISTEN",
                                   "TOKEND_GATEWAY_MAX_INFLIGHT"};
    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
        if (!test_contains(out, options[i])) {
            test_fail(__FILE__, __LINE__, "--help lacks %s", options[i]);
        }
    }
    free(out);
    free(err);
    const char *version[] = {bin, "--version", NULL};
    CHECK_INT(harness_exec(version, NULL, NULL, &out, &err), 0);
    CHECK(strncmp(out, "tokend-gateway ", 15) == 0);
    free(out);
    free(err);

    static const char *const bad[][5] = {
        {"--bogus", NULL},
        {"--max-body", "0", NULL},
        {"--threads", "many", NULL},
        {"--listen", "localhost", NULL},
        {"--listen", "1.2.3.4:99999", NULL},
        {"--listen", "[::1]8080", NULL},
        {"--tls-cert", "cert.pem", NULL},
        {"--log-level", "loud", NULL},
        {"--max-connections", "0", NULL},
        {"--max-connections-per-ip", "lots", NULL},
        {"--hsts", "forever", NULL},
        {"--hsts", "max-age=1; preload; preload", NULL},
        {"--hsts", "max-age=1\r\nSet-Cookie: x=y", NULL},
        {"--service", "bogus://x", NULL},
        {"--rpc-timeout-ms", NULL},
        {"stray", NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *argv[8] = {bin};
        for (size_t k = 0; k < 5 && bad[i][k] != NULL; k++) {
            argv[k + 1] = bad[i][k];
        }
        int rc = harness_exec(argv, NULL, NULL, &out, &err);
        if (rc != 2) {
            fprintf(stderr, "    case %zu (%s): exit %d: %s", i, bad[i][0], rc, err);
        }
        CHECK_INT(rc, 2);
        CHECK_STR(out, "");
        /* One line, naming the option. */
        CHECK(err != NULL && strchr(err, '\n') == err + strlen(err) - 1);
        CHECK(test_contains(err, "tokend-gateway: "));
        free(out);
        free(err);
    }
    const char *env[] = {"TOKEND_GATEWAY_MAX_INFLIGHT=lots", NULL};
    const char *plain[] = {bin, NULL};
    CHECK_INT(harness_exec(plain, NULL, env, &out, &err), 2);
    CHECK(test_contains(err, "TOKEND_GATEWAY_MAX_INFLIGHT"));
    free(out);
    free(err);
    /* More connections than the open-file limit can hold: a runtime
     * failure (1), before it listens. */
    const char *too_many[] = {bin,       "--listen", "127.0.0.1:0", "--max-connections",
                              "1000000", NULL};
    CHECK_INT(harness_exec(too_many, NULL, NULL, &out, &err), 1);
    CHECK(test_contains(err, "--max-connections 1000000 needs "));
    free(out);
    free(err);
    /* Unreadable TLS files are a runtime failure (1), not a usage error. */
    const char *nofile[] = {
        bin,         "--listen",       "127.0.0.1:0", "--tls-cert", "/nonexistent/c",
        "--tls-key", "/nonexistent/k", NULL};
    CHECK_INT(harness_exec(nofile, NULL, NULL, &out, &err), 1);
    CHECK(test_contains(err, "/nonexistent/c"));
    free(out);
    free(err);

    /* The environment configures a running gateway; flags win over it. */
    tokend_proc p;
    harness_init(&p);
    REQUIRE(harness_start(&p));
    static char env_body[] = "TOKEND_GATEWAY_MAX_BODY=10";
    putenv(env_body);
    gateway_proc g;
    memset(&g, 0, sizeof(g));
    REQUIRE(harness_gateway_start(&g, p.url, 0));
    http_res r = {0};
    LOCAL(post, fmt("%s/v1/tokens", g.base));
    CURL(&r, "-X", "POST", post, "-H", "Content-Type: application/json", "--data-binary",
         "{\"name\":\"a long enough body\"}");
    CHECK_PROBLEM(&r, 413, "BODY_TOO_LARGE");
    CHECK_INT(harness_gateway_stop(&g), 0);
    g.extra[0] = "--max-body";
    g.extra[1] = "100";
    REQUIRE(harness_gateway_start(&g, p.url, 0));
    CURL(&r, "-X", "POST", fmt("%s/v1/tokens", g.base), "-H",
         "Content-Type: application/json", "--data-binary",
         "{\"name\":\"a long enough body\"}");
    CHECK_PROBLEM(&r, 401, "MISSING_TOKEN");
    res_free(&r);
    CHECK_INT(harness_gateway_stop(&g), 0);
    harness_stop(&p);
}

/* ------------------------------------------------------------------------
 * Behind nginx. */

/* Writes the nginx config of docs/nginx-auth-request.md, on free ports. */
static void write_nginx_conf(const char *path, const char *dir, int nginx_port,
                             int upstream_port, int gateway_port) {
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    fprintf(
        f,
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
        "  upstream tokend_gateway {\n"
        "    server 127.0.0.1:%d;\n"
        "    keepalive 8;\n"
        "  }\n"
        "  server {\n" /* stands in for the application */
        "    listen 127.0.0.1:%d;\n"
        "    location / { return 200 \"upstream ok owner=$http_x_token_owner\\n\"; }\n"
        "  }\n"
        "  server {\n"
        "    listen 127.0.0.1:%d;\n"
        "    location /orders/ {\n"
        "      set $tokend_ability \"orders:read\";\n"
        "      auth_request /_tokend_auth;\n"
        "      auth_request_set $token_owner $upstream_http_x_token_owner;\n"
        "      proxy_set_header X-Token-Owner $token_owner;\n"
        "      proxy_set_header Authorization \"\";\n"
        "      proxy_pass http://127.0.0.1:%d;\n"
        "    }\n"
        "    location = /_tokend_auth {\n"
        "      internal;\n"
        "      proxy_pass http://tokend_gateway/v1/auth?ability=$tokend_ability;\n"
        "      proxy_pass_request_body off;\n"
        "      proxy_set_header Content-Length \"\";\n"
        "      proxy_set_header X-Original-Method $request_method;\n"
        "      proxy_set_header X-Original-URI $request_uri;\n"
        "      proxy_set_header X-Real-IP $remote_addr;\n"
        "      proxy_http_version 1.1;\n"
        "      proxy_set_header Connection \"\";\n"
        "    }\n"
        "  }\n"
        "}\n",
        dir, dir, dir, dir, dir, dir, dir, gateway_port, upstream_port, nginx_port,
        upstream_port);
    fclose(f);
}

TEST(gateway_nginx_auth_request) {
    fixture f;
    fixture_start(&f, NULL);
    char good[TOK], weak[TOK], unknown[TOKEN_MAX_LEN + 1];
    const char *invoices[] = {"invoices:read"};
    create_token(&f, "partner:acme", orders_read, 1, 0, good, NULL);
    create_token(&f, "partner:acme", invoices, 1, 0, weak, NULL);
    unknown_token(unknown);

    const char *dir = test_tmpdir();
    char conf[400], errlog[400];
    snprintf(conf, sizeof(conf), "%s/nginx.conf", dir);
    snprintf(errlog, sizeof(errlog), "%s/error.log", dir);
    int nginx_port = harness_free_port();
    int upstream_port = harness_free_port();
    write_nginx_conf(conf, dir, nginx_port, upstream_port, f.g.port);
    const char *nginx_bin = "/usr/sbin/nginx";
    REQUIRE(access(nginx_bin, X_OK) == 0);
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
    int fd = -1;
    for (int i = 0; i < 250 && (fd = raw_connect(nginx_port)) < 0; i++) {
        usleep(20 * 1000);
    }
    if (fd < 0) {
        char *log = harness_read_file(errlog);
        fprintf(stderr, "nginx did not start; error.log:\n%s\n", log ? log : "");
        free(log);
    }
    REQUIRE(fd >= 0);
    close(fd);

    http_res r = {0};
    LOCAL(orders, fmt("http://127.0.0.1:%d/orders/42", nginx_port));
    CHECK_INT(CURL(&r, orders, "-H", bearer(good)), 200);
    CHECK_STR(r.body, "upstream ok owner=partner:acme\n");
    CHECK_INT(CURL(&r, orders, "-H", bearer(unknown)), 401);
    CHECK(test_contains(header(&r, "WWW-Authenticate"), "invalid_token"));
    CHECK_INT(CURL(&r, orders), 401);
    CHECK_INT(CURL(&r, orders, "-H", bearer(weak)), 403);
    CHECK_INT(CURL(&r, orders, "-H", bearer(good)), 200);
    uint64_t revoked = 0;
    CHECK_INT(tokend_revoke_token(f.admin, NULL, good, &revoked, NULL), TOKEND_OK);
    CHECK_INT(CURL(&r, orders, "-H", bearer(good)), 401);
    CHECK(!test_contains(r.body, "upstream ok"));
    res_free(&r);

    kill(nginx, SIGTERM);
    while (waitpid(nginx, NULL, 0) < 0 && errno == EINTR) {
    }
    fixture_stop(&f);
}
