/*
 * test_usage.c — usage series (service/series.h, GetUsage): counts by
 * outcome, route and client address across a flush and a restart, the
 * bounds ("other"), owner and deployment sums, minute and hour steps,
 * retention, who may read what, the REST shape, tokenctl usage, and that
 * a verify writes nothing to the store until the flush.
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "harness.h"
#include "rpc_client.h"
#include "store.h"
#include "rawstore.h"
#include "test.h"
#include "token.h"
#include "tokend.pb-c.h"

#define TOK 128

/* One Verify with a request context (method, path, client address; any
 * may be NULL, and all NULL sends none), over the RPC client engine, as
 * a gateway sends it. Returns the verdict, or the call's failure. */
static int verify_ctx(const tokend_proc *p, const char *token, const char *ability,
                      const char *method, const char *path, const char *ip) {
    const char *urls[] = {p->url};
    rpc_client_config rc = {.urls = urls, .n_urls = 1};
    rpc_client *client = NULL;
    rpc_call *call = NULL;
    REQUIRE(rpc_client_open(&rc, &client, NULL) == TOKEND_OK);
    REQUIRE(rpc_call_new(client, NULL, NULL, &call, NULL) == TOKEND_OK);
    Tokend__V1__VerifyRequest req = TOKEND__V1__VERIFY_REQUEST__INIT;
    Tokend__V1__RequestContext ctx = TOKEND__V1__REQUEST_CONTEXT__INIT;
    char *abilities[] = {(char *)ability};
    req.token = (char *)token;
    if (ability != NULL) {
        req.abilities = abilities;
        req.n_abilities = 1;
    }
    if (method != NULL || path != NULL || ip != NULL) {
        ctx.method = (char *)(method != NULL ? method : "");
        ctx.path = (char *)(path != NULL ? path : "");
        ctx.client_ip = (char *)(ip != NULL ? ip : "");
        req.context = &ctx;
    }
    const ProtobufCMethodDescriptor *m = protobuf_c_service_descriptor_get_method_by_name(
        &tokend__v1__token_service__descriptor, "Verify");
    REQUIRE(rpc_call_start(call, m, &req.base, NULL, NULL, 3000, NULL) == TOKEND_OK);
    rpc_call_wait(call);
    const ProtobufCMessage *reply = NULL;
    int rv = rpc_call_result(call, &reply, NULL);
    if (rv == TOKEND_OK) {
        rv = ((const Tokend__V1__VerifyResponse *)reply)->reason;
    }
    rpc_call_free(call);
    rpc_client_free(client);
    return rv;
}

/* How many distinct keys one map has in the bucket with the most. */
static size_t widest(const tokend_usage *u, char map) {
    size_t w = 0;
    for (size_t i = 0; i < u->n_buckets; i++) {
        size_t n = map == 'r' ? u->buckets[i].n_routes : u->buckets[i].n_client_ips;
        w = n > w ? n : w;
    }
    return w;
}

static int get_usage(tokend_client *c, const char *id, const char *owner, int deployment,
                     tokend_usage_step step, tokend_usage *out, tokend_error *err) {
    tokend_usage_query q = {
        .id = id, .owner = owner, .deployment = deployment, .step = step};
    return tokend_get_usage(c, NULL, &q, out, err);
}

/* Checks the series of the first test: what it verified, wherever the
 * calls are (memory, store, after a restart). */
static void check_counts(tokend_client *admin, const char *id) {
    tokend_usage u;
    REQUIRE(get_usage(admin, id, NULL, 0, TOKEND_USAGE_MINUTE, &u, NULL) == TOKEND_OK);
    CHECK_INT(u.step, TOKEND_USAGE_MINUTE);
    CHECK(u.n_buckets >= 1 && u.n_buckets <= 2);
    CHECK_INT(harness_usage_sum(&u, 'o', "OK"), 4);
    CHECK_INT(harness_usage_sum(&u, 'o', "INSUFFICIENT_ABILITY"), 1);
    CHECK_INT(harness_usage_sum(&u, 'o', "MALFORMED"), 0);
    CHECK_INT(harness_usage_sum(&u, 'r', "GET /orders/{id}"), 2);
    CHECK_INT(harness_usage_sum(&u, 'r', "POST /orders"), 2);
    CHECK_INT(harness_usage_sum(&u, 'r', "-"), 1);
    CHECK_INT(harness_usage_sum(&u, 'c', "203.0.113.7"), 2);
    CHECK_INT(harness_usage_sum(&u, 'c', "2001:db8::1"), 2);
    CHECK_INT(harness_usage_sum(&u, 'c', "-"), 1);
    for (size_t i = 0; i < u.n_buckets; i++) {
        CHECK_INT(u.buckets[i].start_unix_ms % 60000, 0);
    }
    tokend_usage_free(&u);
}

TEST(usage_series_by_outcome_route_client_across_restart) {
    tokend_proc p;
    harness_init(&p);
    p.extra[0] = "--usage-flush-ms=300";
    REQUIRE(harness_start(&p));
    tokend_client *admin = harness_client(&p, p.admin);
    const char *abilities[] = {"orders:read"};
    char token[TOK], id[TOK];
    harness_create(admin, "acme", "erp", abilities, 1, 0, token, sizeof(token), id,
                   sizeof(id));
    CHECK_INT(verify_ctx(&p, token, "orders:read", "GET", "/orders/1?x=2", "203.0.113.7"),
              TOKEND_OK);
    CHECK_INT(verify_ctx(&p, token, NULL, "GET", "/orders/22", "203.0.113.7"), TOKEND_OK);
    CHECK_INT(verify_ctx(&p, token, NULL, "POST", "/orders", "2001:db8::1"), TOKEND_OK);
    CHECK_INT(verify_ctx(&p, token, "orders:write", "POST", "/orders/", "2001:db8::1"),
              TOKEND_INSUFFICIENT_ABILITY);
    CHECK_INT(verify_ctx(&p, token, NULL, NULL, NULL, NULL), TOKEND_OK);
    /* At once, from memory; then after flushes; then after a restart. */
    check_counts(admin, id);
    usleep(800 * 1000);
    check_counts(admin, id);
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
    REQUIRE(harness_start(&p));
    admin = harness_client(&p, p.admin);
    check_counts(admin, id);
    /* A management call made with the token is not usage. */
    tokend_client *own = harness_client(&p, token);
    tokend_token_page page;
    CHECK_INT(tokend_list(own, NULL, NULL, 0, NULL, &page, NULL),
              TOKEND_PERMISSION_DENIED);
    check_counts(admin, id);
    tokend_close(own);
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
}

TEST(usage_series_routes_past_the_bound_count_as_other) {
    tokend_proc p;
    harness_init(&p);
    p.extra[0] = "--usage-flush-ms=200";
    p.extra[1] = "--usage-routes=3";
    REQUIRE(harness_start(&p));
    tokend_client *admin = harness_client(&p, p.admin);
    const char *abilities[] = {"orders:read"};
    char token[TOK], id[TOK];
    harness_create(admin, "acme", "routes", abilities, 1, 0, token, sizeof(token), id,
                   sizeof(id));
    const char *paths[] = {"/a", "/b", "/c", "/d", "/e", "/a/7", "/a/8"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(*paths); i++) {
        CHECK_INT(verify_ctx(&p, token, NULL, "GET", paths[i], "203.0.113.7"), TOKEND_OK);
    }
    usleep(500 * 1000);
    tokend_usage u;
    REQUIRE(get_usage(admin, id, NULL, 0, TOKEND_USAGE_HOUR, &u, NULL) == TOKEND_OK);
    REQUIRE(u.n_buckets >= 1);
    /* Per bucket: 3 routes and "other". */
    CHECK(widest(&u, 'r') <= 4);
    CHECK_INT(harness_usage_sum(&u, 'o', "OK"), 7);
    uint64_t named =
        harness_usage_sum(&u, 'r', "GET /a") + harness_usage_sum(&u, 'r', "GET /b") +
        harness_usage_sum(&u, 'r', "GET /c") + harness_usage_sum(&u, 'r', "GET /d") +
        harness_usage_sum(&u, 'r', "GET /e") + harness_usage_sum(&u, 'r', "GET /a/{id}");
    CHECK_INT(named + harness_usage_sum(&u, 'r', "other"), 7);
    CHECK(harness_usage_sum(&u, 'r', "other") >= 2);
    if (u.n_buckets == 1) {
        CHECK_INT(harness_usage_sum(&u, 'r', "GET /a"), 1);
        CHECK_INT(harness_usage_sum(&u, 'r', "other"), 4);
    }
    tokend_usage_free(&u);
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
}

TEST(usage_series_keeps_the_top_client_addresses) {
    tokend_proc p;
    harness_init(&p);
    p.extra[0] = "--usage-flush-ms=200";
    p.extra[1] = "--usage-client-ips=2";
    REQUIRE(harness_start(&p));
    tokend_client *admin = harness_client(&p, p.admin);
    const char *abilities[] = {"orders:read"};
    char token[TOK], id[TOK];
    harness_create(admin, "acme", "ips", abilities, 1, 0, token, sizeof(token), id,
                   sizeof(id));
    struct {
        const char *ip;
        int n;
    } calls[] = {
        {"198.51.100.9", 1}, {"203.0.113.7", 5}, {"192.0.2.1", 3}, {"198.51.100.10", 1}};
    for (size_t i = 0; i < 4; i++) {
        for (int k = 0; k < calls[i].n; k++) {
            CHECK_INT(verify_ctx(&p, token, NULL, "GET", "/x", calls[i].ip), TOKEND_OK);
        }
    }
    tokend_usage u;
    /* Before the flush the service holds them all in memory; a reply still
     * shows the top 2. */
    REQUIRE(get_usage(admin, id, NULL, 0, TOKEND_USAGE_HOUR, &u, NULL) == TOKEND_OK);
    CHECK(widest(&u, 'c') <= 3);
    tokend_usage_free(&u);
    usleep(500 * 1000);
    REQUIRE(get_usage(admin, id, NULL, 0, TOKEND_USAGE_HOUR, &u, NULL) == TOKEND_OK);
    CHECK_INT(u.n_buckets, 1);
    CHECK_INT(harness_usage_sum(&u, 'c', "203.0.113.7"), 5);
    CHECK_INT(harness_usage_sum(&u, 'c', "192.0.2.1"), 3);
    CHECK_INT(harness_usage_sum(&u, 'c', "198.51.100.9"), 0);
    CHECK_INT(harness_usage_sum(&u, 'c', "other"), 2);
    CHECK(widest(&u, 'c') == 3);
    tokend_usage_free(&u);
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
}

TEST(usage_series_owner_and_deployment_sums) {
    tokend_proc p;
    harness_init(&p);
    p.extra[0] = "--usage-flush-ms=200";
    REQUIRE(harness_start(&p));
    tokend_client *admin = harness_client(&p, p.admin);
    const char *abilities[] = {"orders:read"};
    char t1[TOK], t2[TOK], t3[TOK], id1[TOK], id2[TOK], id3[TOK];
    harness_create(admin, "acme", "one", abilities, 1, 0, t1, sizeof(t1), id1,
                   sizeof(id1));
    harness_create(admin, "acme", "two", abilities, 1, 0, t2, sizeof(t2), id2,
                   sizeof(id2));
    harness_create(admin, "beta", "three", abilities, 1, 0, t3, sizeof(t3), id3,
                   sizeof(id3));
    /* harness_start's readiness probes are verifies too: counted before. */
    tokend_usage before;
    REQUIRE(get_usage(admin, NULL, NULL, 1, TOKEND_USAGE_MINUTE, &before, NULL) ==
            TOKEND_OK);
    uint64_t probes = harness_usage_sum(&before, 'o', "MALFORMED");
    CHECK_INT(harness_usage_sum(&before, 'o', "OK"), 0);
    tokend_usage_free(&before);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(verify_ctx(&p, t1, NULL, "GET", "/o", "192.0.2.1"), TOKEND_OK);
    }
    for (int i = 0; i < 2; i++) {
        CHECK_INT(verify_ctx(&p, t2, NULL, "GET", "/o", "192.0.2.2"), TOKEND_OK);
    }
    CHECK_INT(verify_ctx(&p, t3, NULL, "GET", "/p", "192.0.2.3"), TOKEND_OK);
    CHECK_INT(verify_ctx(&p, "tkd_nonsense", NULL, "GET", "/o", "192.0.2.9"),
              TOKEND_MALFORMED);
    /* Well-formed but unknown to the service: a revoked token. */
    char t4[TOK], id4[TOK];
    harness_create(admin, "acme", "gone", abilities, 1, 0, t4, sizeof(t4), id4,
                   sizeof(id4));
    CHECK_INT(tokend_revoke_id(admin, NULL, id4, NULL, NULL), TOKEND_OK);
    CHECK_INT(verify_ctx(&p, t4, NULL, "GET", "/o", "192.0.2.9"), TOKEND_NOT_FOUND);
    for (int round = 0; round < 2; round++) {
        tokend_usage u;
        REQUIRE(get_usage(admin, NULL, "acme", 0, TOKEND_USAGE_MINUTE, &u, NULL) ==
                TOKEND_OK);
        CHECK_INT(harness_usage_sum(&u, 'o', "OK"), 5);
        CHECK_INT(harness_usage_sum(&u, 'o', "NOT_FOUND"), 0);
        CHECK_INT(harness_usage_sum(&u, 'c', "192.0.2.1"), 3);
        CHECK_INT(harness_usage_sum(&u, 'c', "192.0.2.2"), 2);
        tokend_usage_free(&u);
        REQUIRE(get_usage(admin, NULL, "beta", 0, TOKEND_USAGE_HOUR, &u, NULL) ==
                TOKEND_OK);
        CHECK_INT(harness_usage_sum(&u, 'o', "OK"), 1);
        CHECK_INT(harness_usage_sum(&u, 'r', "GET /p"), 1);
        tokend_usage_free(&u);
        REQUIRE(get_usage(admin, NULL, NULL, 1, TOKEND_USAGE_MINUTE, &u, NULL) ==
                TOKEND_OK);
        CHECK_INT(harness_usage_sum(&u, 'o', "OK"), 6);
        CHECK_INT(harness_usage_sum(&u, 'o', "MALFORMED"), probes + 1);
        CHECK_INT(harness_usage_sum(&u, 'o', "NOT_FOUND"), 1);
        CHECK_INT(harness_usage_sum(&u, 'r', "GET /o"), 7);
        CHECK_INT(harness_usage_sum(&u, 'c', "192.0.2.9"), 2);
        tokend_usage_free(&u);
        /* The caller's own owner when none is named: the admin's. */
        REQUIRE(get_usage(admin, NULL, NULL, 0, TOKEND_USAGE_MINUTE, &u, NULL) ==
                TOKEND_OK);
        CHECK_INT(u.n_buckets, 0);
        tokend_usage_free(&u);
        usleep(500 * 1000); /* the second round reads what the flush stored */
    }
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
}

TEST(usage_series_minute_and_hour_steps_and_ranges) {
    tokend_proc p;
    harness_init(&p);
    p.extra[0] = "--usage-flush-ms=200";
    REQUIRE(harness_start(&p));
    tokend_client *admin = harness_client(&p, p.admin);
    const char *abilities[] = {"orders:read"};
    char token[TOK], id[TOK];
    harness_create(admin, "acme", "steps", abilities, 1, 0, token, sizeof(token), id,
                   sizeof(id));
    for (int i = 0; i < 3; i++) {
        CHECK_INT(verify_ctx(&p, token, NULL, "GET", "/s", "192.0.2.1"), TOKEND_OK);
    }
    usleep(400 * 1000);
    tokend_usage m, h;
    REQUIRE(get_usage(admin, id, NULL, 0, TOKEND_USAGE_MINUTE, &m, NULL) == TOKEND_OK);
    REQUIRE(get_usage(admin, id, NULL, 0, TOKEND_USAGE_HOUR, &h, NULL) == TOKEND_OK);
    CHECK_INT(h.step, TOKEND_USAGE_HOUR);
    CHECK_INT(harness_usage_sum(&m, 'o', "OK"), 3);
    CHECK_INT(harness_usage_sum(&h, 'o', "OK"), 3);
    REQUIRE(h.n_buckets >= 1 && m.n_buckets >= 1);
    CHECK_INT(h.buckets[0].start_unix_ms % 3600000, 0);
    CHECK_INT(m.buckets[0].start_unix_ms % 60000, 0);
    CHECK(m.buckets[0].start_unix_ms - h.buckets[0].start_unix_ms < 3600000);
    CHECK(m.buckets[0].start_unix_ms >= h.buckets[0].start_unix_ms);
    /* A range that ends before the calls holds none of them. */
    int64_t first = m.buckets[0].start_unix_ms;
    tokend_usage_query q = {.id = id,
                            .from_unix_ms = first - 600000,
                            .to_unix_ms = first,
                            .step = TOKEND_USAGE_MINUTE};
    tokend_usage none;
    CHECK_INT(tokend_get_usage(admin, NULL, &q, &none, NULL), TOKEND_OK);
    CHECK_INT(none.n_buckets, 0);
    tokend_usage_free(&none);
    /* Bounds: 2880 buckets at most; from before to. */
    tokend_error err;
    q.from_unix_ms = first - 2881LL * 60000;
    CHECK_INT(tokend_get_usage(admin, NULL, &q, &none, &err), TOKEND_INVALID_ARGUMENT);
    CHECK(test_contains(err.message, "2880"));
    q.step = TOKEND_USAGE_HOUR;
    CHECK_INT(tokend_get_usage(admin, NULL, &q, &none, &err), TOKEND_OK);
    tokend_usage_free(&none);
    q.from_unix_ms = first;
    q.to_unix_ms = first - 1;
    CHECK_INT(tokend_get_usage(admin, NULL, &q, &none, &err), TOKEND_INVALID_ARGUMENT);
    tokend_usage_query two = {.id = id, .owner = "acme"};
    CHECK_INT(tokend_get_usage(admin, NULL, &two, &none, &err), TOKEND_INVALID_ARGUMENT);
    tokend_usage_query bad = {.id = "not-an-id"};
    CHECK_INT(tokend_get_usage(admin, NULL, &bad, &none, &err), TOKEND_INVALID_ARGUMENT);
    tokend_usage_free(&m);
    tokend_usage_free(&h);
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
}

static int count_bucket(void *arg, int64_t start, series_bucket *b) {
    (void)start;
    (*(size_t *)arg)++;
    series_bucket_free(b);
    return TOKEND_OK;
}

/* The deployment's buckets of `step` in a stopped tokend's store, read
 * with retention off: what compaction left. */
static size_t stored_buckets(const char *data_dir, series_step step) {
    store *st = NULL;
    REQUIRE(store_open(data_dir, NULL, &st, NULL) == TOKEND_OK);
    size_t n = 0;
    REQUIRE(store_series_range(st, SERIES_ALL, step, "", 0, INT64_MAX, count_bucket, &n,
                               NULL) == TOKEND_OK);
    store_close(st);
    return n;
}

TEST(usage_series_retention_drops_old_buckets) {
    tokend_proc p;
    harness_init(&p);
    p.extra[0] = "--usage-flush-ms=200";
    p.extra[1] = "--usage-minute-retention=1";
    REQUIRE(harness_start(&p));
    tokend_client *admin = harness_client(&p, p.admin);
    const char *abilities[] = {"orders:read"};
    char token[TOK], id[TOK];
    harness_create(admin, "acme", "old", abilities, 1, 0, token, sizeof(token), id,
                   sizeof(id));
    CHECK_INT(verify_ctx(&p, token, NULL, "GET", "/r", "192.0.2.1"), TOKEND_OK);
    /* Past the minute bucket's start by more than its 1 s retention. */
    int64_t start = harness_now_ms() / 60000 * 60000;
    while (harness_now_ms() < start + 1500) {
        usleep(100 * 1000);
    }
    usleep(400 * 1000);
    tokend_usage u;
    REQUIRE(get_usage(admin, id, NULL, 0, TOKEND_USAGE_MINUTE, &u, NULL) == TOKEND_OK);
    CHECK_INT(u.n_buckets, 0);
    tokend_usage_free(&u);
    REQUIRE(get_usage(admin, id, NULL, 0, TOKEND_USAGE_HOUR, &u, NULL) == TOKEND_OK);
    CHECK_INT(harness_usage_sum(&u, 'o', "OK"), 1);
    tokend_usage_free(&u);
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
    /* On disk: stored, then compacted away by the retention filter. */
    CHECK_INT(stored_buckets(p.data_dir, SERIES_MINUTE), 1);
    store_options so = {.series_minute_keep_ms = 1000};
    store *st = NULL;
    REQUIRE(store_open(p.data_dir, &so, &st, NULL) == TOKEND_OK);
    CHECK_INT(store_compact_series(st, NULL), TOKEND_OK);
    store_close(st);
    CHECK_INT(stored_buckets(p.data_dir, SERIES_MINUTE), 0);
    CHECK_INT(stored_buckets(p.data_dir, SERIES_HOUR), 1);
}

TEST(usage_series_authorization) {
    tokend_proc p;
    harness_init(&p);
    REQUIRE(harness_start(&p));
    tokend_client *admin = harness_client(&p, p.admin);
    const char *reader_ab[] = {"tokens:read"};
    const char *plain_ab[] = {"orders:read"};
    char reader[TOK], plain[TOK], other[TOK], rid[TOK], pid[TOK], oid[TOK];
    harness_create(admin, "acme", "reader", reader_ab, 1, 0, reader, sizeof(reader), rid,
                   sizeof(rid));
    harness_create(admin, "acme", "plain", plain_ab, 1, 0, plain, sizeof(plain), pid,
                   sizeof(pid));
    harness_create(admin, "beta", "other", plain_ab, 1, 0, other, sizeof(other), oid,
                   sizeof(oid));
    tokend_client *r = harness_client(&p, reader);
    tokend_client *np = harness_client(&p, plain);
    tokend_client *anon = harness_client(&p, NULL);
    tokend_usage u;
    tokend_error err;
    /* Its own owner's token and sum: yes. */
    CHECK_INT(get_usage(r, pid, NULL, 0, TOKEND_USAGE_MINUTE, &u, NULL), TOKEND_OK);
    tokend_usage_free(&u);
    CHECK_INT(get_usage(r, NULL, NULL, 0, TOKEND_USAGE_MINUTE, &u, NULL), TOKEND_OK);
    tokend_usage_free(&u);
    CHECK_INT(get_usage(r, NULL, "acme", 0, TOKEND_USAGE_HOUR, &u, NULL), TOKEND_OK);
    tokend_usage_free(&u);
    /* Another owner's token: as if it did not exist. */
    CHECK_INT(get_usage(r, oid, NULL, 0, TOKEND_USAGE_MINUTE, &u, &err),
              TOKEND_NOT_FOUND);
    CHECK_INT(get_usage(r, "AAAAAAAAAAAAAAAA", NULL, 0, TOKEND_USAGE_MINUTE, &u, &err),
              TOKEND_NOT_FOUND);
    /* Another owner, the deployment: refused. */
    CHECK_INT(get_usage(r, NULL, "beta", 0, TOKEND_USAGE_MINUTE, &u, &err),
              TOKEND_PERMISSION_DENIED);
    CHECK_INT(get_usage(r, NULL, NULL, 1, TOKEND_USAGE_MINUTE, &u, &err),
              TOKEND_PERMISSION_DENIED);
    CHECK(test_contains(err.message, "tokend:admin"));
    /* Without tokens:read: refused whatever it names. */
    CHECK_INT(get_usage(np, pid, NULL, 0, TOKEND_USAGE_MINUTE, &u, &err),
              TOKEND_PERMISSION_DENIED);
    CHECK_INT(get_usage(np, oid, NULL, 0, TOKEND_USAGE_MINUTE, &u, &err),
              TOKEND_PERMISSION_DENIED);
    CHECK_INT(get_usage(np, NULL, NULL, 0, TOKEND_USAGE_MINUTE, &u, &err),
              TOKEND_PERMISSION_DENIED);
    CHECK(test_contains(err.message, "tokens:read"));
    CHECK_INT(get_usage(anon, NULL, NULL, 0, TOKEND_USAGE_MINUTE, &u, &err),
              TOKEND_UNAUTHENTICATED);
    /* The admin: any token, any owner, the deployment. */
    CHECK_INT(get_usage(admin, oid, NULL, 0, TOKEND_USAGE_MINUTE, &u, NULL), TOKEND_OK);
    tokend_usage_free(&u);
    CHECK_INT(get_usage(admin, NULL, "beta", 0, TOKEND_USAGE_MINUTE, &u, NULL),
              TOKEND_OK);
    tokend_usage_free(&u);
    CHECK_INT(get_usage(admin, NULL, NULL, 1, TOKEND_USAGE_HOUR, &u, NULL), TOKEND_OK);
    tokend_usage_free(&u);
    tokend_close(anon);
    tokend_close(np);
    tokend_close(r);
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
}

/* Bytes of the store's write-ahead log files (*.log in the data dir). */
static long long wal_bytes(const char *data_dir) {
    DIR *d = opendir(data_dir);
    REQUIRE(d != NULL);
    long long total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".log") == 0) {
            char path[700];
            snprintf(path, sizeof(path), "%s/%s", data_dir, e->d_name);
            struct stat sb;
            if (stat(path, &sb) == 0) {
                total += sb.st_size;
            }
        }
    }
    closedir(d);
    return total;
}

TEST(usage_series_no_store_write_per_verify) {
    tokend_proc p;
    harness_init(&p);
    p.extra[0] = "--usage-flush-ms=60000";
    REQUIRE(harness_start(&p));
    tokend_client *admin = harness_client(&p, p.admin);
    const char *abilities[] = {"orders:read"};
    char token[TOK], id[TOK];
    harness_create(admin, "acme", "hot", abilities, 1, 0, token, sizeof(token), id,
                   sizeof(id));
    long long before = wal_bytes(p.data_dir);
    REQUIRE(before > 0); /* the create is in the WAL */
    const int n = 300;
    for (int i = 0; i < n; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/orders/%d", i);
        REQUIRE(verify_ctx(&p, token, NULL, "GET", path,
                           i % 2 ? "192.0.2.1" : "192.0.2.2") == TOKEND_OK);
    }
    long long during = wal_bytes(p.data_dir);
    printf("    WAL bytes: %lld before %d verifies, %lld after them\n", before, n,
           during);
    CHECK_INT(during, before);
    /* The calls are counted all the same (from memory)... */
    tokend_usage u;
    REQUIRE(get_usage(admin, id, NULL, 0, TOKEND_USAGE_MINUTE, &u, NULL) == TOKEND_OK);
    CHECK_INT(harness_usage_sum(&u, 'o', "OK"), n);
    CHECK_INT(harness_usage_sum(&u, 'r', "GET /orders/{id}"), n);
    tokend_usage_free(&u);
    CHECK_INT(wal_bytes(p.data_dir), before);
    tokend_close(admin);
    /* ...and the flush at stop writes them, in one batch. */
    CHECK_INT(harness_stop(&p), 0);
    REQUIRE(harness_start(&p));
    admin = harness_client(&p, p.admin);
    REQUIRE(get_usage(admin, id, NULL, 0, TOKEND_USAGE_MINUTE, &u, NULL) == TOKEND_OK);
    CHECK_INT(harness_usage_sum(&u, 'o', "OK"), n);
    tokend_usage_free(&u);
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
}

TEST(usage_series_options_by_flag_environment_and_bad_value) {
    tokend_proc p;
    harness_init(&p);
    char *out = NULL, *err = NULL;
    const char *bad[] = {harness_bin("tokend"), "serve", "--data-dir", p.data_dir,
                         "--usage-routes=0",    NULL};
    CHECK_INT(harness_exec(bad, NULL, NULL, &out, &err), 2);
    CHECK(test_contains(err, "usage-routes"));
    free(out);
    free(err);
    const char *bad_env[] = {"TOKEND_USAGE_MINUTE_RETENTION=soon", NULL};
    const char *serve[] = {harness_bin("tokend"), "serve", "--data-dir", p.data_dir,
                           NULL};
    CHECK_INT(harness_exec(serve, NULL, bad_env, &out, &err), 2);
    CHECK(test_contains(err, "usage-minute-retention"));
    free(out);
    free(err);
    const char *help[] = {harness_bin("tokend"), "serve", "--help", NULL};
    CHECK_INT(harness_exec(help, NULL, NULL, &out, &err), 0);
    CHECK(test_contains(out, "--usage-hour-retention"));
    CHECK(test_contains(out, "--usage-client-ips"));
    free(out);
    free(err);
    /* Through the environment: one route per bucket, then "other". */
    setenv("TOKEND_USAGE_ROUTES", "1", 1);
    p.extra[0] = "--usage-flush-ms=100";
    REQUIRE(harness_start(&p));
    unsetenv("TOKEND_USAGE_ROUTES");
    tokend_client *admin = harness_client(&p, p.admin);
    const char *abilities[] = {"orders:read"};
    char token[TOK], id[TOK];
    harness_create(admin, "acme", "env", abilities, 1, 0, token, sizeof(token), id,
                   sizeof(id));
    CHECK_INT(verify_ctx(&p, token, NULL, "GET", "/one", NULL), TOKEND_OK);
    CHECK_INT(verify_ctx(&p, token, NULL, "GET", "/two", NULL), TOKEND_OK);
    usleep(300 * 1000);
    tokend_usage u;
    REQUIRE(get_usage(admin, id, NULL, 0, TOKEND_USAGE_HOUR, &u, NULL) == TOKEND_OK);
    CHECK_INT(
        harness_usage_sum(&u, 'r', "GET /one") + harness_usage_sum(&u, 'r', "other"), 2);
    CHECK_INT(harness_usage_sum(&u, 'r', "GET /two"), 0);
    tokend_usage_free(&u);
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
}

/* tokenctl with the admin credential and p's URL in the environment. */
static int ctl(const tokend_proc *p, char **out, char **err, const char *const *args) {
    const char *argv[32] = {harness_bin("tokenctl")};
    size_t n = 1;
    for (size_t i = 0; args[i] != NULL && n < 31; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    static char url_env[400], cred_env[200];
    snprintf(url_env, sizeof(url_env), "TOKEND_URL=%s", p->url);
    snprintf(cred_env, sizeof(cred_env), "TOKEND_CREDENTIAL=%s", p->admin);
    const char *env[] = {url_env, cred_env, NULL};
    return harness_exec(argv, NULL, env, out, err);
}

#define CTL(p, out, err, ...) \
    ctl((p), (out), (err), (const char *const[]){__VA_ARGS__, NULL})

TEST(usage_series_tokenctl_table_json_and_errors) {
    tokend_proc p;
    harness_init(&p);
    REQUIRE(harness_start(&p));
    tokend_client *admin = harness_client(&p, p.admin);
    const char *abilities[] = {"orders:read"};
    char token[TOK], id[TOK];
    harness_create(admin, "acme", "ctl", abilities, 1, 0, token, sizeof(token), id,
                   sizeof(id));
    CHECK_INT(verify_ctx(&p, token, NULL, "GET", "/orders/5", "203.0.113.7"), TOKEND_OK);
    CHECK_INT(verify_ctx(&p, token, NULL, "GET", "/orders/6", "203.0.113.7"), TOKEND_OK);
    CHECK_INT(verify_ctx(&p, token, "orders:write", "POST", "/orders", "192.0.2.1"),
              TOKEND_INSUFFICIENT_ABILITY);
    char *out = NULL, *err = NULL;
    CHECK_INT(CTL(&p, &out, &err, "usage", id, "--step", "hour"), 0);
    CHECK(test_contains(out, "START"));
    CHECK(test_contains(out, "TOP ROUTE"));
    CHECK(test_contains(out, "GET /orders/{id} (2)"));
    CHECK(test_contains(out, "203.0.113.7 (2)"));
    CHECK(test_contains(out, "total: 3 calls, 2 OK, 1 denied"));
    CHECK(!test_contains(out, "calls ▁") && !test_contains(out, "█")); /* not a tty */
    free(out);
    free(err);
    CHECK_INT(CTL(&p, &out, &err, "usage", "--owner", "acme", "--since", "2h", "--json"),
              0);
    CHECK(test_contains(out, "{\"step\":\"minute\",\"buckets\":[{\"start\":"));
    CHECK(test_contains(out, "\"routes\":{"));
    CHECK(test_contains(out, "\"GET /orders/{id}\":2"));
    CHECK(test_contains(out, "\"client_ips\":{"));
    CHECK(test_contains(out, "\"INSUFFICIENT_ABILITY\":1"));
    free(out);
    free(err);
    CHECK_INT(CTL(&p, &out, &err, "usage", id, "--step", "day"), 2);
    CHECK(test_contains(err, "--step must be minute or hour"));
    free(out);
    free(err);
    CHECK_INT(CTL(&p, &out, &err, "usage", id, "--since", "200d"), 2);
    CHECK(test_contains(err, "--since"));
    free(out);
    free(err);
    CHECK_INT(CTL(&p, &out, &err, "usage", id, "--since", "49h"), 1);
    CHECK(test_contains(err, "INVALID_ARGUMENT"));
    free(out);
    free(err);
    CHECK_INT(CTL(&p, &out, &err, "usage"), 2);
    free(out);
    free(err);
    CHECK_INT(CTL(&p, &out, &err, "usage", "AAAAAAAAAAAAAAAA"), 1);
    CHECK(test_contains(err, "NOT_FOUND"));
    free(out);
    free(err);
    /* On a terminal, a sparkline first. */
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "TOKEND_URL='%s' TOKEND_CREDENTIAL='%s' '%s' usage %s",
             p.url, p.admin, harness_bin("tokenctl"), id);
    const char *script[] = {"script", "-qec", cmd, "/dev/null", NULL};
    CHECK_INT(harness_exec(script, NULL, NULL, &out, &err), 0);
    CHECK(test_contains(out, "calls "));
    CHECK(test_contains(out, "█")); /* the busiest step has the full bar */
    CHECK(test_contains(out, "total: 3 calls"));
    free(out);
    free(err);
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
}

TEST(usage_series_rest_json_shape_and_errors) {
    tokend_proc p;
    harness_init(&p);
    REQUIRE(harness_start(&p));
    gateway_proc g = {0};
    REQUIRE(harness_gateway_start(&g, p.url, 0));
    tokend_client *admin = harness_client(&p, p.admin);
    const char *reader_ab[] = {"tokens:read"};
    const char *plain_ab[] = {"orders:read"};
    char reader[TOK], token[TOK], other[TOK], rid[TOK], id[TOK], oid[TOK];
    harness_create(admin, "acme", "reader", reader_ab, 1, 0, reader, sizeof(reader), rid,
                   sizeof(rid));
    harness_create(admin, "acme", "erp", plain_ab, 1, 0, token, sizeof(token), id,
                   sizeof(id));
    harness_create(admin, "beta", "other", plain_ab, 1, 0, other, sizeof(other), oid,
                   sizeof(oid));
    CHECK_INT(verify_ctx(&p, token, NULL, "GET", "/orders/9", "203.0.113.7"), TOKEND_OK);
    CHECK_INT(verify_ctx(&p, token, NULL, "GET", "/orders/10", "203.0.113.7"), TOKEND_OK);
    /* The bucket's start, as the RPC sees it, for the exact body. */
    tokend_usage u;
    REQUIRE(get_usage(admin, id, NULL, 0, TOKEND_USAGE_HOUR, &u, NULL) == TOKEND_OK);
    REQUIRE(u.n_buckets == 1);
    int64_t hour = u.buckets[0].start_unix_ms;
    tokend_usage_free(&u);

    char bearer[200], url[300], want[600];
    snprintf(bearer, sizeof(bearer), "Authorization: Bearer %s", reader);
    snprintf(url, sizeof(url), "%s/v1/tokens/%s/usage?step=hour", g.base, id);
    http_res r = {0};
    CHECK_INT(CURL(&r, url, "-H", bearer), 200);
    snprintf(want, sizeof(want),
             "{\"step\":\"hour\",\"buckets\":[{\"start\":%lld,\"outcomes\":{\"OK\":2},"
             "\"routes\":{\"GET /orders/{id}\":2},\"client_ips\":{\"203.0.113.7\":2}}]}",
             (long long)hour);
    CHECK(test_contains(r.body, want));
    CHECK(test_contains(r.headers, "application/json"));
    /* The caller's owner, the range given. */
    snprintf(url, sizeof(url), "%s/v1/usage?step=minute&from=%lld&to=%lld", g.base,
             (long long)hour, (long long)(hour + 3600000));
    CHECK_INT(CURL(&r, url, "-H", bearer), 200);
    CHECK(test_contains(r.body, "{\"step\":\"minute\",\"buckets\":[{\"start\":"));
    CHECK(test_contains(r.body, "\"outcomes\":{\"OK\":"));
    /* A range before the calls: no buckets. */
    snprintf(url, sizeof(url), "%s/v1/usage?from=1000&to=2000", g.base);
    CHECK_INT(CURL(&r, url, "-H", bearer), 200);
    CHECK(test_contains(r.body, "{\"step\":\"minute\",\"buckets\":[]}"));
    /* owner= : another owner is 403 for a non-admin, fine for the admin. */
    snprintf(url, sizeof(url), "%s/v1/usage?owner=beta", g.base);
    CHECK_INT(CURL(&r, url, "-H", bearer), 403);
    CHECK(test_contains(r.body, "PERMISSION_DENIED"));
    char admin_bearer[200];
    snprintf(admin_bearer, sizeof(admin_bearer), "Authorization: Bearer %s", p.admin);
    CHECK_INT(CURL(&r, url, "-H", admin_bearer), 200);
    /* Another owner's token id, an id no token has, a bad id: 404. */
    snprintf(url, sizeof(url), "%s/v1/tokens/%s/usage", g.base, oid);
    CHECK_INT(CURL(&r, url, "-H", bearer), 404);
    CHECK(test_contains(r.body, "NOT_FOUND"));
    snprintf(url, sizeof(url), "%s/v1/tokens/short/usage", g.base);
    CHECK_INT(CURL(&r, url, "-H", bearer), 404);
    /* Without tokens:read: 403; without a bearer: 401. */
    char plain_bearer[200];
    snprintf(plain_bearer, sizeof(plain_bearer), "Authorization: Bearer %s", token);
    snprintf(url, sizeof(url), "%s/v1/tokens/%s/usage", g.base, id);
    CHECK_INT(CURL(&r, url, "-H", plain_bearer), 403);
    CHECK_INT(CURL(&r, url), 401);
    /* Bad queries: 400 as problem JSON. */
    const char *bad[] = {"?step=day", "?from=abc", "?from=5&to=4", "?owner=acme",
                         "?from=1&to=999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        snprintf(url, sizeof(url), "%s/v1/tokens/%s/usage%s", g.base, id, bad[i]);
        CHECK_INT(CURL(&r, url, "-H", bearer), 400);
        CHECK(test_contains(r.body, "\"status\":400"));
    }
    snprintf(url, sizeof(url), "%s/v1/usage", g.base);
    CHECK_INT(CURL(&r, "-X", "DELETE", url, "-H", bearer), 405);
    snprintf(url, sizeof(url), "%s/v1/openapi.json", g.base);
    CHECK_INT(CURL(&r, url), 200);
    CHECK(test_contains(r.body, "\"/v1/tokens/{id}/usage\""));
    CHECK(test_contains(r.body, "\"/v1/usage\""));
    res_free(&r);
    tokend_close(admin);
    CHECK_INT(harness_gateway_stop(&g), 0);
    CHECK_INT(harness_stop(&p), 0);
}

TEST(usage_series_never_stores_a_token_in_a_route) {
    tokend_proc p;
    harness_init(&p);
    p.extra[0] = "--usage-flush-ms=100";
    REQUIRE(harness_start(&p));
    tokend_client *admin = harness_client(&p, p.admin);
    const char *abilities[] = {"orders:read"};
    char token[TOK], id[TOK];
    harness_create(admin, "acme", "paths", abilities, 1, 0, token, sizeof(token), id,
                   sizeof(id));
    /* A token inside a segment; one as a whole segment; one without a
     * digit in sight (not a token by its checksum, but one by its length):
     * each segment becomes {id}. */
    char path[300], wordy[64];
    snprintf(path, sizeof(path), "/login/key=%s/done", token);
    CHECK_INT(verify_ctx(&p, token, NULL, "GET", path, "192.0.2.1"), TOKEND_OK);
    snprintf(path, sizeof(path), "/by-token/%s", token);
    CHECK_INT(verify_ctx(&p, token, NULL, "GET", path, "192.0.2.1"), TOKEND_OK);
    memset(wordy, 'x', 45);
    wordy[45] = '\0';
    snprintf(path, sizeof(path), "/a/b=%s", wordy);
    CHECK_INT(verify_ctx(&p, token, NULL, "GET", path, "192.0.2.1"), TOKEND_OK);
    usleep(300 * 1000);
    tokend_usage u;
    REQUIRE(get_usage(admin, id, NULL, 0, TOKEND_USAGE_HOUR, &u, NULL) == TOKEND_OK);
    CHECK_INT(harness_usage_sum(&u, 'r', "GET /login/{id}/done"), 1);
    CHECK_INT(harness_usage_sum(&u, 'r', "GET /by-token/{id}"), 1);
    CHECK_INT(harness_usage_sum(&u, 'r', "GET /a/{id}"), 1);
    tokend_usage_free(&u);
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
    CHECK(!harness_dir_contains(p.data_dir, token));
    CHECK(!harness_dir_contains(p.data_dir, token + 4)); /* nor its secret */
}

/* A store made before the series family: drop it behind the store's back. */
static void drop_series_family(const char *dir) {
    rawstore raw;
    rawstore_open(dir, &raw);
    rawstore_drop(&raw, "series");
    rawstore_close(&raw);
}

TEST(usage_series_family_is_added_to_an_older_store) {
    tokend_proc p;
    harness_init(&p);
    drop_series_family(p.data_dir);
    /* Read-only, it cannot be made: refused, naming it. */
    store_options ro = {.read_only = true};
    store *st = NULL;
    tokend_error err;
    CHECK_INT(store_open(p.data_dir, &ro, &st, &err), TOKEND_STORAGE_ERROR);
    CHECK(test_contains(err.message, "\"series\""));
    /* tokend serve opens it read-write and adds it; the admin token of
     * init still works and usage is counted. */
    REQUIRE(harness_start(&p));
    tokend_client *admin = harness_client(&p, p.admin);
    const char *abilities[] = {"orders:read"};
    char token[TOK], id[TOK];
    harness_create(admin, "acme", "upgraded", abilities, 1, 0, token, sizeof(token), id,
                   sizeof(id));
    CHECK_INT(verify_ctx(&p, token, NULL, "GET", "/u", "192.0.2.1"), TOKEND_OK);
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
    REQUIRE(store_open(p.data_dir, &ro, &st, &err) == TOKEND_OK);
    size_t n = 0;
    CHECK_INT(store_series_range(st, SERIES_TOKEN, SERIES_HOUR, id, 0, INT64_MAX,
                                 count_bucket, &n, NULL),
              TOKEND_OK);
    CHECK_INT(n, 1);
    store_close(st);
}

/* What a leaked token did is the first question after revoking it: a
 * revoked token's series stay readable by its id, with its owner's rights,
 * while its tombstone is kept (--tombstone-retention), and not after. */
TEST(usage_series_of_a_revoked_token_stay_readable_by_id) {
    tokend_proc p;
    harness_init(&p);
    p.extra[0] = "--usage-flush-ms=100";
    p.extra[1] = "--tombstone-retention=3s";
    REQUIRE(harness_start(&p));
    tokend_client *admin = harness_client(&p, p.admin);
    const char *reader_ab[] = {"tokens:read"};
    const char *orders_ab[] = {"orders:read"};
    char leaked[TOK], lid[TOK], reader[TOK], outsider[TOK];
    harness_create(admin, "acme", "leaked", orders_ab, 1, 0, leaked, sizeof(leaked), lid,
                   sizeof(lid));
    harness_create(admin, "acme", "reader", reader_ab, 1, 0, reader, sizeof(reader), NULL,
                   0);
    harness_create(admin, "beta", "reader", reader_ab, 1, 0, outsider, sizeof(outsider),
                   NULL, 0);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(verify_ctx(&p, leaked, NULL, "GET", "/orders/7", "198.51.100.23"),
                  TOKEND_OK);
    }
    uint64_t revoked = 0;
    REQUIRE(tokend_revoke_id(admin, NULL, lid, &revoked, NULL) == TOKEND_OK);
    CHECK_INT(verify_ctx(&p, leaked, NULL, "GET", "/orders/8", "198.51.100.23"),
              TOKEND_NOT_FOUND);
    tokend_client *r = harness_client(&p, reader);
    tokend_client *o = harness_client(&p, outsider);
    tokend_usage u;
    REQUIRE(get_usage(r, lid, NULL, 0, TOKEND_USAGE_HOUR, &u, NULL) == TOKEND_OK);
    CHECK_INT(harness_usage_sum(&u, 'o', "OK"), 3);
    CHECK_INT(harness_usage_sum(&u, 'o', "NOT_FOUND"),
              0); /* an unknown token has no series */
    CHECK_INT(harness_usage_sum(&u, 'r', "GET /orders/{id}"), 3);
    CHECK_INT(harness_usage_sum(&u, 'c', "198.51.100.23"), 3);
    tokend_usage_free(&u);
    REQUIRE(get_usage(admin, lid, NULL, 0, TOKEND_USAGE_MINUTE, &u, NULL) == TOKEND_OK);
    CHECK_INT(harness_usage_sum(&u, 'o', "OK"), 3);
    tokend_usage_free(&u);
    /* Another owner: as if it never existed. */
    tokend_error err;
    CHECK_INT(get_usage(o, lid, NULL, 0, TOKEND_USAGE_HOUR, &u, &err), TOKEND_NOT_FOUND);
    /* Past the retention the tombstone no longer tells whose it was. */
    usleep(3300 * 1000);
    CHECK_INT(get_usage(r, lid, NULL, 0, TOKEND_USAGE_HOUR, &u, &err), TOKEND_NOT_FOUND);
    CHECK_INT(get_usage(admin, lid, NULL, 0, TOKEND_USAGE_HOUR, &u, &err),
              TOKEND_NOT_FOUND);
    tokend_close(o);
    tokend_close(r);
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
}
