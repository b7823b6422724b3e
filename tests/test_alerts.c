/*
 * test_alerts.c — the alerts (service/alerts.h) through the real tokend:
 * each kind provoked with Verify calls carrying a RequestContext (sent as
 * raw protobuf over NNG, as a gateway sends them), then asserted in the
 * log line and in the webhook delivery to a small HTTP receiver this test
 * runs on loopback, whose signature it checks with OpenSSL on its own.
 * Thresholds are set small through the options.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <rocksdb/c.h>

#include "harness.h"
#include "rpc.h"
#include "alerts.h"
#include "store.h"
#include "rawstore.h"
#include "test.h"
#include "token.h"
#include "tokend.pb-c.h"
#include "writer.h"

#define SECRET "alert-secret-for-the-test"

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------
 * The webhook receiver: one thread, one connection at a time. */

typedef enum { ANSWER_OK, ANSWER_FAIL_FIRST, ANSWER_HANG } answer_mode;

#define DELIVERIES_MAX 64

typedef struct delivery {
    char *body;
    char timestamp[32];
    char signature[80];
    int answered; /* the status the receiver gave */
    int64_t at_ms;
} delivery;

typedef struct receiver {
    int fd;
    int port;
    answer_mode mode;
    int fail_first; /* ANSWER_FAIL_FIRST: that many 500s first */
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t lock;
    int n;
    delivery got[DELIVERIES_MAX];
} receiver;

/* The value of header `name` in the head, into out (empty when none). */
static void header_value(const char *head, const char *name, char *out, size_t cap) {
    out[0] = '\0';
    size_t nlen = strlen(name);
    for (const char *line = head; line != NULL && *line != '\0';) {
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ') {
                v++;
            }
            size_t len = strcspn(v, "\r\n");
            snprintf(out, cap, "%.*s", (int)(len < cap ? len : cap - 1), v);
            return;
        }
        line = strchr(line, '\n');
        line = line != NULL ? line + 1 : NULL;
    }
}

/* Reads one request (head and Content-Length body); false on EOF. */
static bool read_request(int c, char *buf, size_t cap, char **body) {
    size_t len = 0;
    for (;;) {
        ssize_t n = read(c, buf + len, cap - 1 - len);
        if (n <= 0) {
            return false;
        }
        len += (size_t)n;
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end != NULL) {
            char cl[32];
            header_value(buf, "Content-Length", cl, sizeof(cl));
            size_t want = (size_t)(end + 4 - buf) + (size_t)atol(cl);
            if (len >= want || len == cap - 1) {
                *body = end + 4;
                return true;
            }
        }
        if (len == cap - 1) {
            return false;
        }
    }
}

static void *receiver_thread(void *arg) {
    receiver *r = arg;
    while (!atomic_load(&r->stop)) {
        int c = accept(r->fd, NULL, NULL);
        if (c < 0) {
            continue;
        }
        char buf[16384];
        char *body = NULL;
        if (!read_request(c, buf, sizeof(buf), &body)) {
            close(c);
            continue;
        }
        pthread_mutex_lock(&r->lock);
        int i = r->n < DELIVERIES_MAX ? r->n++ : -1;
        int status = r->mode == ANSWER_FAIL_FIRST && i < r->fail_first ? 500 : 200;
        if (i >= 0) {
            delivery *d = &r->got[i];
            d->body = strdup(body);
            header_value(buf, "X-Tokend-Timestamp", d->timestamp, sizeof(d->timestamp));
            header_value(buf, "X-Tokend-Signature", d->signature, sizeof(d->signature));
            d->answered = r->mode == ANSWER_HANG ? 0 : status;
            d->at_ms = mono_ms();
        }
        pthread_mutex_unlock(&r->lock);
        if (r->mode == ANSWER_HANG) {
            while (!atomic_load(&r->stop)) {
                usleep(20000); /* never answers; the connection stays open */
            }
        } else {
            char res[128];
            int n = snprintf(res, sizeof(res),
                             "HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: "
                             "close\r\n\r\n",
                             status, status == 200 ? "OK" : "Internal Server Error");
            (void)!write(c, res, (size_t)n);
        }
        close(c);
    }
    return NULL;
}

static void receiver_start(receiver *r, answer_mode mode, int fail_first) {
    memset(r, 0, sizeof(*r));
    r->mode = mode;
    r->fail_first = fail_first;
    pthread_mutex_init(&r->lock, NULL);
    r->fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(r->fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    REQUIRE(bind(r->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    socklen_t sl = sizeof(sa);
    REQUIRE(getsockname(r->fd, (struct sockaddr *)&sa, &sl) == 0);
    r->port = ntohs(sa.sin_port);
    REQUIRE(listen(r->fd, 16) == 0);
    /* accept() wakes every 100 ms to see `stop`. */
    struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
    setsockopt(r->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    REQUIRE(pthread_create(&r->thread, NULL, receiver_thread, r) == 0);
}

static void receiver_stop(receiver *r) {
    atomic_store(&r->stop, true);
    pthread_join(r->thread, NULL);
    close(r->fd);
    for (int i = 0; i < r->n; i++) {
        free(r->got[i].body);
    }
}

/* Waits up to ms for at least n deliveries; returns how many there are. */
static int receiver_wait(receiver *r, int n, int ms) {
    int64_t until = mono_ms() + ms;
    for (;;) {
        pthread_mutex_lock(&r->lock);
        int got = r->n;
        pthread_mutex_unlock(&r->lock);
        if (got >= n || mono_ms() >= until) {
            return got;
        }
        usleep(20000);
    }
}

/* The index of the first delivery of `kind`, or -1. */
static int receiver_find(receiver *r, const char *kind) {
    char want[64];
    snprintf(want, sizeof(want), "\"kind\":\"%s\"", kind);
    pthread_mutex_lock(&r->lock);
    int found = -1;
    for (int i = 0; i < r->n && found < 0; i++) {
        if (strstr(r->got[i].body, want) != NULL) {
            found = i;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return found;
}

static int receiver_wait_kind(receiver *r, const char *kind, int ms) {
    int64_t until = mono_ms() + ms;
    int i;
    while ((i = receiver_find(r, kind)) < 0 && mono_ms() < until) {
        usleep(20000);
    }
    return i;
}

static int receiver_count_kind(receiver *r, const char *kind) {
    char want[64];
    snprintf(want, sizeof(want), "\"kind\":\"%s\"", kind);
    pthread_mutex_lock(&r->lock);
    int n = 0;
    for (int i = 0; i < r->n; i++) {
        n += strstr(r->got[i].body, want) != NULL;
    }
    pthread_mutex_unlock(&r->lock);
    return n;
}

/* Checks X-Tokend-Signature against HMAC-SHA256(SECRET, "ts.body"). */
static bool signature_ok(const delivery *d) {
    char *msg = NULL;
    REQUIRE(asprintf(&msg, "%s.%s", d->timestamp, d->body) > 0);
    unsigned char mac[32];
    unsigned int mac_len = 0;
    HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (unsigned char *)msg, strlen(msg),
         mac, &mac_len);
    free(msg);
    char want[80] = "sha256=";
    for (unsigned i = 0; i < mac_len; i++) {
        snprintf(want + 7 + 2 * i, 3, "%02x", mac[i]);
    }
    return d->timestamp[0] != '\0' && strcmp(want, d->signature) == 0;
}

/* The delivery's JSON, checked to parse; json_decref it. */
static json_t *delivery_json(receiver *r, int i) {
    pthread_mutex_lock(&r->lock);
    json_error_t jerr;
    json_t *j = json_loads(r->got[i].body, 0, &jerr);
    pthread_mutex_unlock(&r->lock);
    REQUIRE(j != NULL);
    return j;
}

static const char *jstr(json_t *j, const char *a, const char *b) {
    json_t *v = json_object_get(j, a);
    if (b != NULL) {
        v = json_object_get(v, b);
    }
    return json_is_string(v) ? json_string_value(v) : "";
}

/* ------------------------------------------------------------------------
 * tokend and raw Verify calls with a context. */

typedef struct rig {
    tokend_proc p;
    receiver r;
    tokend_client *admin;
    nng_socket s;
    char hook[96];
} rig;

/* Starts tokend with the webhook pointed at a receiver in `mode`, the
 * secret from the environment, and `flags` (NULL-terminated). */
static void rig_start(rig *g, answer_mode mode, int fail_first,
                      const char *const *flags) {
    memset(g, 0, sizeof(*g));
    receiver_start(&g->r, mode, fail_first);
    snprintf(g->hook, sizeof(g->hook), "http://127.0.0.1:%d/hook", g->r.port);
    harness_init(&g->p);
    size_t k = 0;
    g->p.extra[k++] = "--alert-webhook";
    g->p.extra[k++] = g->hook;
    for (size_t i = 0; flags != NULL && flags[i] != NULL && k < 15; i++) {
        g->p.extra[k++] = flags[i];
    }
    g->p.extra[k] = NULL;
    setenv("TOKEND_ALERT_WEBHOOK_SECRET", SECRET, 1);
    REQUIRE(harness_start(&g->p));
    g->admin = harness_client(&g->p, g->p.admin);
    REQUIRE(g->admin != NULL);
    REQUIRE(nng_req0_open(&g->s) == 0);
    nng_socket_set_ms(g->s, NNG_OPT_RECVTIMEO, 5000);
    nng_socket_set_ms(g->s, NNG_OPT_SENDTIMEO, 5000);
    REQUIRE(nng_dial(g->s, g->p.url, NULL, 0) == 0);
}

static void rig_stop(rig *g) {
    nng_close(g->s);
    tokend_close(g->admin);
    CHECK_INT(harness_stop(&g->p), 0);
    receiver_stop(&g->r);
}

/* A Verify of `token` needing `ability` (NULL: none) from client `ip`;
 * returns VerifyResponse.reason. */
static int verify_from(rig *g, const char *token, const char *ability, const char *ip) {
    Tokend__V1__RequestContext ctx = TOKEND__V1__REQUEST_CONTEXT__INIT;
    ctx.method = "GET";
    ctx.path = "/orders/123?page=2";
    ctx.client_ip = (char *)ip;
    ctx.user_agent = "alert-test/1";
    Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
    vr.token = (char *)token;
    char *abilities[1] = {(char *)ability};
    vr.abilities = abilities;
    vr.n_abilities = ability != NULL ? 1 : 0;
    vr.context = &ctx;
    uint8_t *payload = NULL;
    size_t plen = 0;
    REQUIRE(rpc_pack(&vr.base, &payload, &plen) == TOKEND_OK);
    Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
    req.method = "Verify";
    req.request_id = 42;
    req.payload.data = payload;
    req.payload.len = plen;
    uint8_t *env = NULL;
    size_t elen = 0;
    REQUIRE(rpc_pack(&req.base, &env, &elen) == TOKEND_OK);
    free(payload);
    REQUIRE(nng_send(g->s, env, elen, 0) == 0);
    free(env);
    void *buf = NULL;
    size_t blen = 0;
    REQUIRE(nng_recv(g->s, &buf, &blen, NNG_FLAG_ALLOC) == 0);
    Tokend__V1__Reply *reply = tokend__v1__reply__unpack(NULL, blen, buf);
    nng_free(buf, blen);
    REQUIRE(reply != NULL);
    REQUIRE(reply->status == TOKEND__V1__STATUS__OK);
    Tokend__V1__VerifyResponse *resp = tokend__v1__verify_response__unpack(
        NULL, reply->payload.len, reply->payload.data);
    REQUIRE(resp != NULL);
    int reason = resp->reason;
    tokend__v1__verify_response__free_unpacked(resp, NULL);
    tokend__v1__reply__free_unpacked(reply, NULL);
    return reason;
}

static void create(rig *g, const char *owner, const char *ability, int64_t expires_in_s,
                   char token[TOKEN_MAX_LEN + 1], char id[TOKEN_ID_LEN + 1]) {
    const char *ab[] = {ability};
    harness_create(g->admin, owner, "alerted", ab, 1, expires_in_s, token,
                   TOKEN_MAX_LEN + 1, id, TOKEN_ID_LEN + 1);
}

/* A well-formed token no one ever issued. */
static void unknown_token(char out[TOKEN_MAX_LEN + 1]) {
    uint8_t random[TOKEN_RANDOM_BYTES];
    FILE *f = fopen("/dev/urandom", "rb");
    REQUIRE(f != NULL && fread(random, 1, sizeof(random), f) == sizeof(random));
    fclose(f);
    REQUIRE(token_generate("tkd_", random, sizeof(random), out) > 0);
}

/* The log line of `kind` with `needle` in it, waited for up to 5 s. */
static bool log_has_alert(rig *g, const char *kind, const char *needle) {
    char want[96];
    snprintf(want, sizeof(want), "event=alert kind=%s ", kind);
    int64_t until = mono_ms() + 5000;
    do {
        char *log = harness_read_file(g->p.log_path);
        bool found = false;
        for (char *line = log; line != NULL && *line != '\0' && !found;) {
            char *end = strchr(line, '\n');
            size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
            char *copy = strndup(line, len);
            found = strstr(copy, want) != NULL && strstr(copy, needle) != NULL;
            free(copy);
            line = end != NULL ? end + 1 : NULL;
        }
        free(log);
        if (found) {
            return true;
        }
        usleep(50000);
    } while (mono_ms() < until);
    return false;
}

/* Whether the audit log holds an event of `kind` whose `key` is `value`:
 * key "token_id", "client_ip" or a detail key ("network"). Alerts reach
 * the log through the writer, so it waits up to 5 s. */
static bool event_has_alert(rig *g, const char *kind, const char *key,
                            const char *value) {
    int64_t until = mono_ms() + 5000;
    do {
        tokend_event_filter f = {.kind = kind};
        tokend_event_page page;
        bool found = false;
        if (tokend_list_events(g->admin, NULL, &f, &page, NULL) == TOKEND_OK) {
            for (size_t i = 0; i < page.n_events && !found; i++) {
                const tokend_event *e = &page.events[i];
                CHECK_STR(e->kind, kind);
                if (strcmp(key, "token_id") == 0) {
                    found = strcmp(e->token_id, value) == 0;
                } else if (strcmp(key, "client_ip") == 0) {
                    found = strcmp(e->client_ip, value) == 0;
                }
                for (size_t k = 0; k < e->n_detail && !found; k++) {
                    found = strcmp(e->detail[k].key, key) == 0 &&
                            strcmp(e->detail[k].value, value) == 0;
                }
            }
            tokend_event_page_free(&page);
        }
        if (found) {
            return true;
        }
        usleep(50000);
    } while (mono_ms() < until);
    return false;
}

static bool log_contains(rig *g, const char *needle) {
    char *log = harness_read_file(g->p.log_path);
    bool found = log != NULL && strstr(log, needle) != NULL;
    free(log);
    return found;
}

/* ------------------------------------------------------------------------ */

TEST(alerts_revoked_token_presented_is_told_from_one_never_issued) {
    rig g;
    rig_start(&g, ANSWER_OK, 0, (const char *const[]){"--alert-spray", "1000", NULL});
    char token[TOKEN_MAX_LEN + 1], id[TOKEN_ID_LEN + 1], never[TOKEN_MAX_LEN + 1];
    create(&g, "acme", "orders:read", 0, token, id);
    CHECK_INT(verify_from(&g, token, NULL, "203.0.113.7"), TOKEND__V1__STATUS__OK);
    uint64_t revoked = 0;
    REQUIRE(tokend_revoke_id(g.admin, NULL, id, &revoked, NULL) == TOKEND_OK);
    /* The contract does not change: revoked and never issued are both
     * NOT_FOUND to the caller. */
    unknown_token(never);
    CHECK_INT(verify_from(&g, never, NULL, "203.0.113.7"), TOKEND__V1__STATUS__NOT_FOUND);
    CHECK_INT(verify_from(&g, token, NULL, "203.0.113.8"), TOKEND__V1__STATUS__NOT_FOUND);

    int i = receiver_wait_kind(&g.r, "ALERT_REVOKED_TOKEN_USED", 5000);
    REQUIRE(i >= 0);
    json_t *j = delivery_json(&g.r, i);
    CHECK_STR(jstr(j, "token_id", NULL), id);
    CHECK_STR(jstr(j, "owner", NULL), "acme");
    CHECK_STR(jstr(j, "context", "client_ip"), "203.0.113.8");
    CHECK_STR(jstr(j, "context", "route"), "GET /orders/{id}");
    CHECK_STR(jstr(j, "context", "user_agent"), "alert-test/1");
    CHECK(json_is_integer(json_object_get(j, "time_unix_ms")));
    CHECK(strlen(jstr(j, "detail", "revoked_unix_ms")) > 0);
    json_decref(j);
    pthread_mutex_lock(&g.r.lock);
    CHECK(signature_ok(&g.r.got[i]));
    CHECK(strstr(g.r.got[i].body, token) == NULL);
    CHECK(strstr(g.r.got[i].body, "page=2") == NULL); /* the route, never the query */
    pthread_mutex_unlock(&g.r.lock);
    CHECK(log_has_alert(&g, "ALERT_REVOKED_TOKEN_USED", id));
    CHECK(event_has_alert(&g, "ALERT_REVOKED_TOKEN_USED", "token_id", id));

    /* The token never issued raised nothing: one delivery in all. */
    usleep(500000);
    CHECK_INT(receiver_wait(&g.r, 2, 0), 1);
    CHECK(!log_contains(&g, token));
    CHECK(!log_contains(&g, never));
    CHECK(!log_contains(&g, SECRET));
    rig_stop(&g);
}

TEST(alerts_revoked_token_past_retention_counts_as_unknown) {
    rig g;
    rig_start(
        &g, ANSWER_OK, 0,
        (const char *const[]){"--tombstone-retention", "1s", "--alert-spray", "1", NULL});
    char token[TOKEN_MAX_LEN + 1], id[TOKEN_ID_LEN + 1];
    create(&g, "acme", "orders:read", 0, token, id);
    REQUIRE(tokend_revoke_id(g.admin, NULL, id, NULL, NULL) == TOKEND_OK);
    usleep(2100000);
    CHECK_INT(verify_from(&g, token, NULL, "192.0.2.9"), TOKEND__V1__STATUS__NOT_FOUND);
    CHECK(receiver_wait_kind(&g.r, "ALERT_UNKNOWN_TOKEN_SPRAY", 5000) >= 0);
    CHECK_INT(receiver_count_kind(&g.r, "ALERT_REVOKED_TOKEN_USED"), 0);
    rig_stop(&g);
}

TEST(alerts_expired_token_presented_alerts_once) {
    rig g;
    rig_start(&g, ANSWER_OK, 0, (const char *const[]){"--alert-denials", "1000", NULL});
    char token[TOKEN_MAX_LEN + 1], id[TOKEN_ID_LEN + 1];
    create(&g, "acme", "orders:read", 1, token, id);
    usleep(1200000);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(verify_from(&g, token, NULL, "203.0.113.7"),
                  TOKEND__V1__STATUS__EXPIRED);
    }
    int i = receiver_wait_kind(&g.r, "ALERT_EXPIRED_TOKEN_USED", 5000);
    REQUIRE(i >= 0);
    json_t *j = delivery_json(&g.r, i);
    CHECK_STR(jstr(j, "token_id", NULL), id);
    CHECK_STR(jstr(j, "owner", NULL), "acme");
    json_decref(j);
    CHECK(log_has_alert(&g, "ALERT_EXPIRED_TOKEN_USED", id));
    CHECK(event_has_alert(&g, "ALERT_EXPIRED_TOKEN_USED", "token_id", id));
    usleep(300000);
    CHECK_INT(receiver_count_kind(&g.r, "ALERT_EXPIRED_TOKEN_USED"), 1);
    rig_stop(&g);
}

TEST(alerts_new_network_per_24_and_64_and_kept_across_a_restart) {
    rig g;
    rig_start(&g, ANSWER_OK, 0, (const char *const[]){"--alert-repeat", "1s", NULL});
    char t4[TOKEN_MAX_LEN + 1], id4[TOKEN_ID_LEN + 1];
    char t6[TOKEN_MAX_LEN + 1], id6[TOKEN_ID_LEN + 1];
    create(&g, "acme", "orders:read", 0, t4, id4);
    create(&g, "acme", "orders:read", 0, t6, id6);
    /* First networks, and another address of the same /24 or /64: none. */
    CHECK_INT(verify_from(&g, t4, NULL, "203.0.113.7"), TOKEND__V1__STATUS__OK);
    CHECK_INT(verify_from(&g, t4, NULL, "203.0.113.99"), TOKEND__V1__STATUS__OK);
    CHECK_INT(verify_from(&g, t6, NULL, "2001:db8:1:2::1"), TOKEND__V1__STATUS__OK);
    CHECK_INT(verify_from(&g, t6, NULL, "2001:db8:1:2:ffff::9"), TOKEND__V1__STATUS__OK);
    usleep(500000);
    CHECK_INT(receiver_count_kind(&g.r, "ALERT_NEW_NETWORK"), 0);

    CHECK_INT(verify_from(&g, t4, NULL, "198.51.100.20"), TOKEND__V1__STATUS__OK);
    CHECK_INT(verify_from(&g, t6, NULL, "2001:db8:1:3::1"), TOKEND__V1__STATUS__OK);
    REQUIRE(receiver_wait(&g.r, 2, 5000) >= 2);
    CHECK_INT(receiver_count_kind(&g.r, "ALERT_NEW_NETWORK"), 2);
    bool seen4 = false, seen6 = false;
    for (int i = 0; i < 2; i++) {
        json_t *j = delivery_json(&g.r, i);
        const char *net = jstr(j, "detail", "network");
        if (strcmp(jstr(j, "token_id", NULL), id4) == 0) {
            CHECK_STR(net, "198.51.100.0/24");
            CHECK_STR(jstr(j, "context", "client_ip"), "198.51.100.20");
            seen4 = true;
        } else {
            CHECK_STR(jstr(j, "token_id", NULL), id6);
            CHECK_STR(net, "2001:db8:1:3::/64");
            seen6 = true;
        }
        json_decref(j);
    }
    CHECK(seen4 && seen6);
    CHECK(log_has_alert(&g, "ALERT_NEW_NETWORK", "network=198.51.100.0/24"));
    CHECK(event_has_alert(&g, "ALERT_NEW_NETWORK", "network", "198.51.100.0/24"));

    /* After a restart the networks seen are still known. */
    nng_close(g.s);
    tokend_close(g.admin);
    CHECK_INT(harness_stop(&g.p), 0);
    REQUIRE(harness_start(&g.p));
    g.admin = harness_client(&g.p, g.p.admin);
    REQUIRE(nng_req0_open(&g.s) == 0);
    nng_socket_set_ms(g.s, NNG_OPT_RECVTIMEO, 5000);
    REQUIRE(nng_dial(g.s, g.p.url, NULL, 0) == 0);
    usleep(1100000); /* past --alert-repeat */
    CHECK_INT(verify_from(&g, t4, NULL, "203.0.113.50"), TOKEND__V1__STATUS__OK);
    CHECK_INT(verify_from(&g, t4, NULL, "198.51.100.21"), TOKEND__V1__STATUS__OK);
    usleep(500000);
    CHECK_INT(receiver_count_kind(&g.r, "ALERT_NEW_NETWORK"), 2);
    CHECK_INT(verify_from(&g, t4, NULL, "192.0.2.1"), TOKEND__V1__STATUS__OK);
    REQUIRE(receiver_wait(&g.r, 3, 5000) >= 3);
    json_t *j = delivery_json(&g.r, 2);
    CHECK_STR(jstr(j, "kind", NULL), "ALERT_NEW_NETWORK");
    CHECK_STR(jstr(j, "detail", "network"), "192.0.2.0/24");
    json_decref(j);
    rig_stop(&g);
}

TEST(alerts_denial_burst_of_one_token) {
    rig g;
    int metrics_port = harness_free_port();
    char metrics_addr[32], metrics_url[64];
    snprintf(metrics_addr, sizeof metrics_addr, "127.0.0.1:%d", metrics_port);
    snprintf(metrics_url, sizeof metrics_url, "http://%s/metrics", metrics_addr);
    rig_start(&g, ANSWER_OK, 0,
              (const char *const[]){"--alert-denials", "5", "--alert-denial-window",
                                    "60s", "--metrics-listen", metrics_addr, NULL});
    char probed[TOKEN_MAX_LEN + 1], id[TOKEN_ID_LEN + 1];
    char quiet[TOKEN_MAX_LEN + 1], qid[TOKEN_ID_LEN + 1];
    create(&g, "acme", "orders:read", 0, probed, id);
    create(&g, "acme", "orders:read", 0, quiet, qid);
    for (int i = 0; i < 4; i++) {
        CHECK_INT(verify_from(&g, quiet, "orders:write", "203.0.113.7"),
                  TOKEND__V1__STATUS__INSUFFICIENT_ABILITY);
    }
    const char *abilities[] = {"orders:write", "users:read", "billing:read", "admin:all",
                               "orders:delete"};
    for (int i = 0; i < 5; i++) {
        CHECK_INT(verify_from(&g, probed, abilities[i], "203.0.113.7"),
                  TOKEND__V1__STATUS__INSUFFICIENT_ABILITY);
    }
    int i = receiver_wait_kind(&g.r, "ALERT_DENIAL_BURST", 5000);
    REQUIRE(i >= 0);
    json_t *j = delivery_json(&g.r, i);
    CHECK_STR(jstr(j, "token_id", NULL), id);
    CHECK_STR(jstr(j, "detail", "denials"), "5");
    CHECK_STR(jstr(j, "detail", "window_s"), "60");
    json_decref(j);
    CHECK(log_has_alert(&g, "ALERT_DENIAL_BURST", id));
    CHECK(event_has_alert(&g, "ALERT_DENIAL_BURST", "token_id", id));
    usleep(300000);
    CHECK_INT(receiver_count_kind(&g.r, "ALERT_DENIAL_BURST"), 1); /* not the quiet one */
    /* Counted on the metrics page, by kind, as is the delivery. */
    http_res r = {0};
    CHECK_INT(CURL(&r, metrics_url), 200);
    CHECK(r.body != NULL &&
          strstr(r.body, "tokend_alerts_total{kind=\"ALERT_DENIAL_BURST\"} 1\n") != NULL);
    CHECK(r.body != NULL &&
          strstr(r.body, "tokend_alerts_total{kind=\"ALERT_VOLUME_SPIKE\"} 0\n") != NULL);
    CHECK(r.body != NULL &&
          strstr(r.body, "tokend_alert_webhook_deliveries_total 1\n") != NULL);
    res_free(&r);
    rig_stop(&g);
}

TEST(alerts_volume_spike_over_the_tokens_baseline) {
    rig g;
    rig_start(&g, ANSWER_OK, 0,
              (const char *const[]){"--alert-volume-interval", "1s", "--alert-volume-min",
                                    "20", "--alert-volume-factor", "5", NULL});
    char token[TOKEN_MAX_LEN + 1], id[TOKEN_ID_LEN + 1];
    create(&g, "acme", "orders:read", 0, token, id);
    /* Two calls an interval, for three intervals: the baseline is ~2. */
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 2; i++) {
            CHECK_INT(verify_from(&g, token, NULL, "203.0.113.7"),
                      TOKEND__V1__STATUS__OK);
        }
        usleep(1050000);
    }
    usleep(300000);
    CHECK_INT(receiver_count_kind(&g.r, "ALERT_VOLUME_SPIKE"), 0);
    for (int i = 0; i < 60; i++) {
        CHECK_INT(verify_from(&g, token, NULL, "203.0.113.7"), TOKEND__V1__STATUS__OK);
    }
    int i = receiver_wait_kind(&g.r, "ALERT_VOLUME_SPIKE", 5000);
    REQUIRE(i >= 0);
    json_t *j = delivery_json(&g.r, i);
    CHECK_STR(jstr(j, "token_id", NULL), id);
    CHECK(atoi(jstr(j, "detail", "calls")) >= 20);
    CHECK(atof(jstr(j, "detail", "baseline")) < 4.0);
    json_decref(j);
    CHECK(log_has_alert(&g, "ALERT_VOLUME_SPIKE", id));
    CHECK(event_has_alert(&g, "ALERT_VOLUME_SPIKE", "token_id", id));
    rig_stop(&g);
}

TEST(alerts_unknown_token_spray_from_one_client) {
    rig g;
    rig_start(
        &g, ANSWER_OK, 0,
        (const char *const[]){"--alert-spray", "5", "--alert-spray-window", "60s", NULL});
    char t[TOKEN_MAX_LEN + 1];
    for (int i = 0; i < 4; i++) {
        unknown_token(t);
        CHECK_INT(verify_from(&g, t, NULL, "198.51.100.1"),
                  TOKEND__V1__STATUS__NOT_FOUND);
    }
    for (int i = 0; i < 5; i++) {
        unknown_token(t);
        CHECK_INT(verify_from(&g, t, NULL, "192.0.2.66"), TOKEND__V1__STATUS__NOT_FOUND);
    }
    /* A malformed token is not a well-formed unknown one. */
    CHECK_INT(verify_from(&g, "tkd_garbage", NULL, "198.51.100.1"),
              TOKEND__V1__STATUS__MALFORMED);
    int i = receiver_wait_kind(&g.r, "ALERT_UNKNOWN_TOKEN_SPRAY", 5000);
    REQUIRE(i >= 0);
    json_t *j = delivery_json(&g.r, i);
    CHECK_STR(jstr(j, "context", "client_ip"), "192.0.2.66");
    CHECK_STR(jstr(j, "detail", "unknown"), "5");
    CHECK_STR(jstr(j, "token_id", NULL), "");
    json_decref(j);
    CHECK(log_has_alert(&g, "ALERT_UNKNOWN_TOKEN_SPRAY", "client_ip=192.0.2.66"));
    CHECK(event_has_alert(&g, "ALERT_UNKNOWN_TOKEN_SPRAY", "client_ip", "192.0.2.66"));
    usleep(300000);
    CHECK_INT(receiver_count_kind(&g.r, "ALERT_UNKNOWN_TOKEN_SPRAY"), 1);
    rig_stop(&g);
}

TEST(alerts_webhook_retries_after_500s_with_backoff) {
    rig g;
    rig_start(&g, ANSWER_FAIL_FIRST, 2,
              (const char *const[]){"--alert-spray", "1", NULL});
    char t[TOKEN_MAX_LEN + 1];
    unknown_token(t);
    CHECK_INT(verify_from(&g, t, NULL, "192.0.2.7"), TOKEND__V1__STATUS__NOT_FOUND);
    REQUIRE(receiver_wait(&g.r, 3, 15000) >= 3);
    pthread_mutex_lock(&g.r.lock);
    CHECK_INT(g.r.got[0].answered, 500);
    CHECK_INT(g.r.got[1].answered, 500);
    CHECK_INT(g.r.got[2].answered, 200);
    CHECK_STR(g.r.got[2].body, g.r.got[0].body); /* the same event, again */
    CHECK(signature_ok(&g.r.got[2]));
    /* Backoff: about 1 s, then about 2 s (with up to a quarter of jitter). */
    int64_t gap1 = g.r.got[1].at_ms - g.r.got[0].at_ms;
    int64_t gap2 = g.r.got[2].at_ms - g.r.got[1].at_ms;
    pthread_mutex_unlock(&g.r.lock);
    CHECK(gap1 >= 900 && gap1 < 2000);
    CHECK(gap2 >= 1900 && gap2 < 3500);
    usleep(1500000);
    CHECK_INT(receiver_wait(&g.r, 4, 0), 3); /* delivered: no fourth try */
    CHECK(log_contains(&g, "event=alert.webhook_failed status=500"));
    rig_stop(&g);
}

TEST(alerts_hanging_webhook_slows_no_verify) {
    rig g;
    rig_start(&g, ANSWER_HANG, 0,
              (const char *const[]){"--alert-spray", "1", "--alert-repeat", "1s",
                                    "--alert-webhook-timeout-ms", "60000", NULL});
    char t[TOKEN_MAX_LEN + 1], ok[TOKEN_MAX_LEN + 1];
    create(&g, "acme", "orders:read", 0, ok, NULL);
    unknown_token(t);
    CHECK_INT(verify_from(&g, t, NULL, "192.0.2.7"), TOKEND__V1__STATUS__NOT_FOUND);
    REQUIRE(receiver_wait(&g.r, 1, 5000) >= 1); /* the receiver holds it */
    int64_t worst = 0, start = mono_ms();
    for (int i = 0; i < 300; i++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "192.0.2.%d", i % 200 + 1);
        int64_t t0 = mono_ms();
        unknown_token(t);
        CHECK_INT(verify_from(&g, i % 2 ? t : ok, NULL, ip),
                  i % 2 ? TOKEND__V1__STATUS__NOT_FOUND : TOKEND__V1__STATUS__OK);
        int64_t took = mono_ms() - t0;
        worst = took > worst ? took : worst;
    }
    int64_t total = mono_ms() - start;
    CHECK(worst < 500);
    CHECK(total < 5000);
    /* The alerts went on being raised and logged meanwhile. */
    CHECK(log_has_alert(&g, "ALERT_UNKNOWN_TOKEN_SPRAY", "client_ip=192.0.2.100"));
    /* And the stop is not held up by the attempt in flight. */
    int64_t t0 = mono_ms();
    rig_stop(&g);
    CHECK(mono_ms() - t0 < 5000);
}

TEST(alerts_options_from_flags_environment_and_bad_values) {
    tokend_proc p;
    harness_init(&p);
    const char *bin = harness_bin("tokend");
    char *err = NULL;
    int rc = harness_exec((const char *const[]){bin, "serve", "--data-dir", p.data_dir,
                                                "--alert-spray", "0", NULL},
                          NULL, NULL, NULL, &err);
    CHECK_INT(rc, 2);
    CHECK(err != NULL &&
          strstr(err, "--alert-spray must be a whole number from 1") != NULL);
    free(err);
    err = NULL;
    rc = harness_exec((const char *const[]){bin, "serve", "--data-dir", p.data_dir, NULL},
                      NULL, (const char *const[]){"TOKEND_ALERT_DENIAL_WINDOW=0", NULL},
                      NULL, &err);
    CHECK_INT(rc, 2);
    CHECK(err != NULL &&
          strstr(err, "--alert-denial-window must be longer than 0s") != NULL);
    free(err);
    err = NULL;
    rc = harness_exec((const char *const[]){bin, "serve", "--data-dir", p.data_dir,
                                            "--alert-webhook", "ftp://x/hook", NULL},
                      NULL, NULL, NULL, &err);
    CHECK_INT(rc, 2);
    CHECK(err != NULL && strstr(err, "http:// or https://") != NULL);
    free(err);
    err = NULL;
    rc = harness_exec((const char *const[]){bin, "serve", "--data-dir", p.data_dir, NULL},
                      NULL, (const char *const[]){"TOKEND_ALERT_WEBHOOK_SECRET=x", NULL},
                      NULL, &err);
    CHECK_INT(rc, 2);
    CHECK(err != NULL && strstr(err, "no --alert-webhook URL") != NULL);
    free(err);
    char *out = NULL;
    rc = harness_exec((const char *const[]){bin, "serve", "--help", NULL}, NULL, NULL,
                      &out, NULL);
    CHECK_INT(rc, 0);
    CHECK(out != NULL && strstr(out, "--alert-webhook-secret") != NULL &&
          strstr(out, "TOKEND_TOMBSTONE_RETENTION") != NULL);
    free(out);

    /* Through the environment: a spray of 2 alerts at the second. */
    rig g;
    setenv("TOKEND_ALERT_SPRAY", "2", 1);
    rig_start(&g, ANSWER_OK, 0, NULL);
    unsetenv("TOKEND_ALERT_SPRAY");
    char t[TOKEN_MAX_LEN + 1];
    unknown_token(t);
    CHECK_INT(verify_from(&g, t, NULL, "192.0.2.5"), TOKEND__V1__STATUS__NOT_FOUND);
    usleep(300000);
    CHECK_INT(receiver_count_kind(&g.r, "ALERT_UNKNOWN_TOKEN_SPRAY"), 0);
    unknown_token(t);
    CHECK_INT(verify_from(&g, t, NULL, "192.0.2.5"), TOKEND__V1__STATUS__NOT_FOUND);
    CHECK(receiver_wait_kind(&g.r, "ALERT_UNKNOWN_TOKEN_SPRAY", 5000) >= 0);
    rig_stop(&g);
}

/* ------------------------------------------------------------------------
 * The two families behind the alerts, in the store itself. */

static store *open_at(const char *dir, bool create, bool read_only, int64_t retention_ms,
                      int *rv) {
    store_options so = {.create_if_missing = create,
                        .read_only = read_only,
                        .tombstone_retention_ms = retention_ms,
                        .network_history_ms = retention_ms};
    store *st = NULL;
    *rv = store_open(dir, &so, &st, NULL);
    return st;
}

TEST(alerts_store_tombstones_and_networks_within_their_retention) {
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/store", test_tmpdir());
    int rv;
    store *st = open_at(dir, true, false, 10000, &rv);
    REQUIRE(rv == TOKEND_OK);
    token_record rec = {.id = "AAAAAAAAAAAAAAA1", .owner = "acme"};
    uint8_t digest[TOKEN_DIGEST_LEN] = {1, 2, 3};
    uint8_t other[TOKEN_DIGEST_LEN] = {9};
    store_batch *b = store_batch_new();
    store_batch_put_tombstone(b, digest, &rec, 50000);
    store_network seen[3] = {{{4, 203, 0, 113}, 4, 50000},
                             {{6, 0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2}, 9, 41000},
                             {{4, 198, 51, 100}, 4, 30000}};
    for (int i = 0; i < 3; i++) {
        store_batch_put_network(b, rec.id, &seen[i]);
    }
    store_batch_put_network(b, "AAAAAAAAAAAAAAA2", &seen[0]);
    REQUIRE(store_batch_commit(st, b, true, NULL) == TOKEND_OK);

    store_tombstone t;
    CHECK_INT(store_get_tombstone(st, digest, 55000, &t, NULL), TOKEND_OK);
    CHECK_STR(t.id, rec.id);
    CHECK_STR(t.owner, "acme");
    CHECK(t.revoked_ms == 50000);
    CHECK_INT(store_get_tombstone(st, digest, 60001, &t, NULL), TOKEND_NOT_FOUND);
    CHECK_INT(store_get_tombstone(st, other, 55000, &t, NULL), TOKEND_NOT_FOUND);

    /* At 45000 with 10 s of history, the one seen at 30000 is out. */
    store_network got[4];
    size_t n = 0;
    CHECK_INT(store_get_networks(st, rec.id, 45000, got, 4, &n, NULL), TOKEND_OK);
    CHECK_INT((int)n, 2);
    for (size_t i = 0; i < n; i++) {
        CHECK(got[i].len == 4 ? got[i].last_seen_ms == 50000
                              : got[i].len == 9 && got[i].last_seen_ms == 41000);
    }
    CHECK_INT(store_get_networks(st, rec.id, 45000, got, 1, &n, NULL), TOKEND_OK);
    CHECK_INT((int)n, 1); /* at most `max` */

    /* A bad record fails the commit, and nothing of it is written. */
    token_record bad = {.id = "short", .owner = "acme"};
    store_batch_put_tombstone(b, other, &bad, 50000);
    CHECK_INT(store_batch_commit(st, b, true, NULL), TOKEND_INVALID_ARGUMENT);
    store_batch_free(b);
    store_close(st);
}

TEST(alerts_store_an_older_store_gains_the_two_families_on_a_write_open) {
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/store", test_tmpdir());
    int rv;
    store *st = open_at(dir, true, false, 0, &rv);
    REQUIRE(rv == TOKEND_OK);
    store_close(st);
    /* Make it a store of before: without tombstones and networks. */
    rawstore raw;
    rawstore_open(dir, &raw);
    rawstore_drop(&raw, "tombstones");
    rawstore_drop(&raw, "networks");
    rawstore_close(&raw);

    /* Read-only, it is incomplete; read-write adds the families. */
    tokend_error err;
    store_options ro = {.read_only = true};
    CHECK_INT(store_open(dir, &ro, &st, &err), TOKEND_STORAGE_ERROR);
    CHECK(strstr(err.message, "no column family \"tombstones\"") != NULL);
    st = open_at(dir, false, false, 0, &rv);
    REQUIRE(rv == TOKEND_OK);
    token_record rec = {.id = "AAAAAAAAAAAAAAA1", .owner = "acme"};
    uint8_t digest[TOKEN_DIGEST_LEN] = {7};
    store_batch *b = store_batch_new();
    store_batch_put_tombstone(b, digest, &rec, 1000);
    CHECK_INT(store_batch_commit(st, b, true, NULL), TOKEND_OK);
    store_batch_free(b);
    store_tombstone t;
    CHECK_INT(store_get_tombstone(st, digest, 2000, &t, NULL), TOKEND_OK);
    store_close(st);
}

/* ------------------------------------------------------------------------
 * The queue in front of the alert thread, with the module alone. */

typedef struct held_sink {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool release;
    atomic_int alerts; /* read while the thread is held */
} held_sink;

/* A sink that holds the alert thread until released: the queue fills. */
static void hold_sink(void *ctx, const alert *a) {
    held_sink *h = ctx;
    (void)a;
    pthread_mutex_lock(&h->lock);
    atomic_fetch_add(&h->alerts, 1);
    while (!h->release) {
        pthread_cond_wait(&h->cond, &h->lock);
    }
    pthread_mutex_unlock(&h->lock);
}

TEST(alerts_full_queue_drops_and_counts_without_blocking) {
    char dir[400];
    snprintf(dir, sizeof(dir), "%s/store", test_tmpdir());
    int rv;
    store *st = open_at(dir, true, false, 0, &rv);
    REQUIRE(rv == TOKEND_OK);
    writer *w = NULL;
    REQUIRE(writer_start(st, NULL, NULL, 1000, &w) == TOKEND_OK);
    held_sink h = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};
    alerts_config cfg = {.network_history_ms = 1000,
                         .denials = 1000,
                         .denial_window_ms = 1000,
                         .volume_factor = 10,
                         .volume_min = 1000000,
                         .volume_interval_ms = 1000,
                         .spray = 1,
                         .spray_window_ms = 1000,
                         .repeat_ms = 1000,
                         .tracked = 64};
    alerts *a = NULL;
    REQUIRE(alerts_start(&cfg, st, w, hold_sink, &h, &a, NULL) == TOKEND_OK);
    Tokend__V1__RequestContext ctx = TOKEND__V1__REQUEST_CONTEXT__INIT;
    ctx.client_ip = "192.0.2.1";
    uint8_t digest[TOKEN_DIGEST_LEN] = {1};
    /* The first unknown token makes a spray alert, which the sink holds;
     * everything after waits in the queue, then is dropped. */
    alerts_observe(a, TOKEND__V1__STATUS__NOT_FOUND, NULL, NULL, digest, &ctx, NULL,
                   1000);
    for (int i = 0; i < 200 && atomic_load(&h.alerts) == 0; i++) {
        usleep(10000);
    }
    REQUIRE(atomic_load(&h.alerts) == 1);
    const int n = 20000;
    int64_t t0 = mono_ms();
    for (int i = 0; i < n; i++) {
        alerts_observe(a, TOKEND__V1__STATUS__NOT_FOUND, NULL, NULL, digest, &ctx, NULL,
                       1001);
    }
    int64_t took = mono_ms() - t0;
    uint64_t counts[ALERTS_KINDS], dropped = 0;
    alerts_counts(a, counts, &dropped);
    CHECK(dropped > 0 && dropped < (uint64_t)n);
    CHECK(counts[TOKEND__V1__EVENT_KIND__ALERT_UNKNOWN_TOKEN_SPRAY - ALERTS_FIRST] == 1);
    CHECK(took < 1000); /* none of them waited for the held thread */
    pthread_mutex_lock(&h.lock);
    h.release = true;
    pthread_cond_broadcast(&h.cond);
    pthread_mutex_unlock(&h.lock);
    alerts_stop(a);
    alerts_free(a);
    /* The rest were taken, and quiet: one spray, one alert. */
    CHECK_INT(atomic_load(&h.alerts), 1);
    writer_stop(w);
    store_close(st);
}

/* ------------------------------------------------------------------------
 * An https:// webhook, checked against --alert-webhook-ca. */

static const char https_receiver_py[] =
    "import http.server, os, socket, ssl, sys\n"
    "out, cert, key = sys.argv[1:4]\n"
    "class S(http.server.HTTPServer):\n"
    "    address_family = socket.AF_INET6\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    protocol_version = 'HTTP/1.1'\n"
    "    def do_POST(self):\n"
    "        body = self.rfile.read(int(self.headers['Content-Length']))\n"
    "        with open(out + '.tmp', 'wb') as f:\n"
    "            f.write(self.headers.get('X-Tokend-Timestamp', '').encode() + b'\\n')\n"
    "            f.write(self.headers.get('X-Tokend-Signature', '').encode() + b'\\n')\n"
    "            f.write(body)\n"
    "        os.rename(out + '.tmp', out)\n"
    "        self.send_response(200)\n"
    "        self.send_header('Content-Length', '0')\n"
    "        self.send_header('Connection', 'close')\n"
    "        self.end_headers()\n"
    "    def log_message(self, *a):\n"
    "        pass\n"
    "srv = S(('::', 0), H)\n"
    "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "ctx.load_cert_chain(cert, key)\n"
    "srv.socket = ctx.wrap_socket(srv.socket, server_side=True)\n"
    "with open(out + '.port.tmp', 'w') as f:\n"
    "    f.write(str(srv.server_address[1]))\n"
    "os.rename(out + '.port.tmp', out + '.port')\n"
    "srv.serve_forever()\n";

static char *wait_for_file(const char *path, int ms) {
    int64_t until = mono_ms() + ms;
    char *text;
    while ((text = harness_read_file(path)) == NULL && mono_ms() < until) {
        usleep(20000);
    }
    return text;
}

TEST(alerts_https_webhook_checked_against_its_ca) {
    const char *dir = test_tmpdir();
    char cert[400], key[400], script[400], out[400], port_path[420];
    snprintf(cert, sizeof(cert), "%s/hook.crt", dir);
    snprintf(key, sizeof(key), "%s/hook.key", dir);
    snprintf(script, sizeof(script), "%s/hook.py", dir);
    snprintf(out, sizeof(out), "%s/delivered", dir);
    snprintf(port_path, sizeof(port_path), "%s.port", out);
    char *err = NULL;
    int rc = harness_exec(
        (const char *const[]){"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                              "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj",
                              "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                              "-keyout", key, "-out", cert, NULL},
        NULL, NULL, NULL, &err);
    if (rc != 0) {
        fprintf(stderr, "openssl: %s\n", err != NULL ? err : "");
    }
    free(err);
    REQUIRE(rc == 0);
    FILE *f = fopen(script, "w");
    REQUIRE(f != NULL && fputs(https_receiver_py, f) >= 0);
    fclose(f);
    pid_t py = fork();
    REQUIRE(py >= 0);
    if (py == 0) {
        execlp("python3", "python3", script, out, cert, key, (char *)NULL);
        _exit(127);
    }
    char *port = wait_for_file(port_path, 10000);
    REQUIRE(port != NULL);
    char hook[96];
    snprintf(hook, sizeof(hook), "https://localhost:%d/hook", atoi(port));
    free(port);

    rig g;
    memset(&g, 0, sizeof(g));
    harness_init(&g.p);
    setenv("TOKEND_ALERT_WEBHOOK_SECRET", SECRET, 1);
    char t[TOKEN_MAX_LEN + 1];

    /* By the system's CAs, the receiver's own certificate is refused. */
    const char *system_ca[] = {"--alert-webhook", hook, "--alert-spray", "1", NULL};
    memcpy(g.p.extra, system_ca, sizeof(system_ca));
    REQUIRE(harness_start(&g.p));
    REQUIRE(nng_req0_open(&g.s) == 0);
    nng_socket_set_ms(g.s, NNG_OPT_RECVTIMEO, 5000);
    REQUIRE(nng_dial(g.s, g.p.url, NULL, 0) == 0);
    unknown_token(t);
    CHECK_INT(verify_from(&g, t, NULL, "2001:db8::6"), TOKEND__V1__STATUS__NOT_FOUND);
    int64_t until = mono_ms() + 5000;
    while (!log_contains(&g, "event=alert.webhook_failed status=0") &&
           mono_ms() < until) {
        usleep(50000);
    }
    CHECK(log_contains(&g, "event=alert.webhook_failed status=0"));
    char *none = harness_read_file(out);
    CHECK(none == NULL);
    free(none);
    nng_close(g.s);
    CHECK_INT(harness_stop(&g.p), 0);
    CHECK(log_contains(&g, "event=alert.webhook_undelivered alerts=1"));

    /* With --alert-webhook-ca it is delivered. */
    const char *own_ca[] = {
        "--alert-webhook", hook, "--alert-webhook-ca", cert, "--alert-spray", "1", NULL};
    memcpy(g.p.extra, own_ca, sizeof(own_ca));
    REQUIRE(harness_start(&g.p));
    REQUIRE(nng_req0_open(&g.s) == 0);
    nng_socket_set_ms(g.s, NNG_OPT_RECVTIMEO, 5000);
    REQUIRE(nng_dial(g.s, g.p.url, NULL, 0) == 0);
    unknown_token(t);
    CHECK_INT(verify_from(&g, t, NULL, "2001:db8::7"), TOKEND__V1__STATUS__NOT_FOUND);
    char *got = wait_for_file(out, 10000);
    if (got == NULL) {
        char *log = harness_read_file(g.p.log_path);
        fprintf(stderr, "no delivery; tokend's log:\n%s\n", log != NULL ? log : "");
        free(log);
    }
    REQUIRE(got != NULL);
    /* timestamp \n signature \n body */
    char *sig = strchr(got, '\n');
    REQUIRE(sig != NULL);
    *sig++ = '\0';
    char *body = strchr(sig, '\n');
    REQUIRE(body != NULL);
    *body++ = '\0';
    delivery d = {.body = body};
    snprintf(d.timestamp, sizeof(d.timestamp), "%s", got);
    snprintf(d.signature, sizeof(d.signature), "%s", sig);
    CHECK(signature_ok(&d));
    CHECK(strstr(body, "\"kind\":\"ALERT_UNKNOWN_TOKEN_SPRAY\"") != NULL);
    CHECK(strstr(body, "\"client_ip\":\"2001:db8::7\"") != NULL);
    free(got);
    nng_close(g.s);
    CHECK_INT(harness_stop(&g.p), 0);
    kill(py, SIGTERM);
    waitpid(py, NULL, 0);
}
