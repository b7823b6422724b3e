/*
 * test_metrics.c — Prometheus metrics (docs/metrics.md): the exposition
 * format and its primitives, tokend's --metrics-listen and the gateway's
 * GET /metrics, checked with promtool, moved by real traffic, free of
 * owners, names, ids and tokens, and scraped by a real Prometheus.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"
#include "metrics.h"
#include "test.h"
#include "tokend.h"

#define PROMETHEUS "/usr/bin/prometheus"

/* ------------------------------------------------------------------------
 * Helpers. */

/* The value of the sample whose line starts with `series` and a space
 * (name and labels exactly as written), or -1 when the page has none. */
static double sample(const char *page, const char *series) {
    size_t n = strlen(series);
    for (const char *line = page; line != NULL && *line != '\0';) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ') {
            return strtod(line + n + 1, NULL);
        }
        line = strchr(line, '\n');
        line = line != NULL ? line + 1 : NULL;
    }
    return -1;
}

/* promtool check metrics on `page`: true when it exits 0 and reports
 * nothing (no lint problem either); prints what it said otherwise. */
static bool promtool_clean(const char *what, const char *page) {
    const char *argv[] = {"promtool", "check", "metrics", NULL};
    char *out = NULL, *err = NULL;
    int rc = harness_exec(argv, page, NULL, &out, &err);
    bool clean =
        rc == 0 && (out == NULL || out[0] == '\0') && (err == NULL || err[0] == '\0');
    if (!clean) {
        fprintf(stderr, "    promtool on %s: rc %d: %s%s\n", what, rc, out ? out : "",
                err ? err : "");
    }
    free(out);
    free(err);
    return clean;
}

/* GET url into *r; REQUIREs a 200. */
static const char *scrape(http_res *r, const char *url) {
    REQUIRE(CURL(r, url) == 200);
    REQUIRE(r->body != NULL);
    return r->body;
}

static int verify(tokend_client *c, const char *token, const char *ability) {
    const char *abilities[] = {ability};
    return tokend_verify(c, NULL, token, abilities, ability != NULL ? 1 : 0,
                         TOKEND_ABILITIES_ALL, NULL, NULL);
}

/* ------------------------------------------------------------------------
 * The format. */

TEST(metrics_format_escapes_and_writes_cumulative_histograms) {
    metrics_out o;
    metrics_out_init(&o, 0);
    metrics_family(&o, "t_total", METRICS_COUNTER, "help with \\ and\nnewline");
    metrics_label l[] = {{"a", "q\"b\\s\nn"}, {"b", "plain"}};
    metrics_sample_u64(&o, "t_total", l, 2, 18446744073709551615ull);
    metrics_family(&o, "t_ratio", METRICS_GAUGE, "a gauge");
    metrics_sample(&o, "t_ratio", NULL, 0, 0.1);
    metrics_histogram h;
    metrics_histogram_init(&h, &metrics_latency_us);
    metrics_histogram_observe(&h, 10);      /* <= 1e-05 */
    metrics_histogram_observe(&h, 11);      /* <= 2.5e-05 */
    metrics_histogram_observe(&h, 9000000); /* above every bound */
    metrics_family(&o, "t_seconds", METRICS_HISTOGRAM, "a histogram");
    metrics_label m[] = {{"method", "Verify"}};
    metrics_histogram_write(&o, "t_seconds", m, 1, &h);
    REQUIRE(!o.failed && o.buf != NULL);

    CHECK(test_contains(o.buf, "# HELP t_total help with \\\\ and\\nnewline\n"
                               "# TYPE t_total counter\n"));
    CHECK(test_contains(o.buf, "t_total{a=\"q\\\"b\\\\s\\nn\",b=\"plain\"} "
                               "18446744073709551615\n"));
    CHECK(test_contains(o.buf, "t_ratio 0.1\n"));
    CHECK(test_contains(o.buf, "t_seconds_bucket{method=\"Verify\",le=\"1e-05\"} 1\n"));
    CHECK(test_contains(o.buf, "t_seconds_bucket{method=\"Verify\",le=\"2.5e-05\"} 2\n"));
    CHECK(test_contains(o.buf, "t_seconds_bucket{method=\"Verify\",le=\"5\"} 2\n"));
    CHECK(test_contains(o.buf, "t_seconds_bucket{method=\"Verify\",le=\"+Inf\"} 3\n"));
    CHECK(test_contains(o.buf, "t_seconds_sum{method=\"Verify\"} 9.000021\n"));
    CHECK(test_contains(o.buf, "t_seconds_count{method=\"Verify\"} 3\n"));
    CHECK(promtool_clean("the format test's page", o.buf));
    metrics_out_free(&o);

    /* Past its ceiling a page fails as a whole, never cut mid-line. */
    metrics_page page;
    metrics_page_init(&page, "test");
    metrics_out small;
    metrics_out_init(&small, 64);
    tokend_error err;
    CHECK_INT(metrics_page_render(&page, &small, &err), TOKEND_RESOURCE_EXHAUSTED);
    CHECK(test_contains(err.message, "outgrew"));
    metrics_out_free(&small);
}

/* The hot paths' cost: one counter add and one histogram observe. */
TEST(metrics_counter_and_histogram_cost_in_nanoseconds) {
    enum { N = 2000000 };
    metrics_counter c = {0};
    metrics_histogram h;
    metrics_histogram_init(&h, &metrics_latency_us);
    struct timespec t0, t1, t2;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (uint64_t i = 0; i < N; i++) {
        metrics_counter_add(&c, 1);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    for (uint64_t i = 0; i < N; i++) {
        metrics_histogram_observe(&h, (i * 7919) % 3000); /* 0..3 ms */
    }
    clock_gettime(CLOCK_MONOTONIC, &t2);
    double add_ns =
        ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / N;
    double obs_ns =
        ((double)(t2.tv_sec - t1.tv_sec) * 1e9 + (double)(t2.tv_nsec - t1.tv_nsec)) / N;
    printf("    counter add %.1f ns, histogram observe %.1f ns\n", add_ns, obs_ns);
    CHECK_INT(metrics_counter_get(&c), N);
    uint64_t total = 0;
    for (size_t i = 0; i <= h.buckets->n; i++) {
        total += h.counts[i];
    }
    CHECK_INT(total, N);
    /* Uncontended atomics cost a few ns; 200 ns would mean a lock or a
     * syscall crept in (generous: the machine may be shared). */
    CHECK(add_ns < 200);
    CHECK(obs_ns < 200);
}

/* ------------------------------------------------------------------------
 * tokend and the gateway. */

typedef struct fixture {
    tokend_proc p;
    gateway_proc g;
    char metrics_at[64];
    char tokend_url[96]; /* http://127.0.0.1:PORT/metrics */
    char gateway_url[96];
    tokend_client *admin;
} fixture;

static void fixture_start(fixture *f, const char *const *gateway_flags) {
    memset(f, 0, sizeof(*f));
    harness_init(&f->p);
    int port = harness_free_port();
    snprintf(f->metrics_at, sizeof(f->metrics_at), "127.0.0.1:%d", port);
    snprintf(f->tokend_url, sizeof(f->tokend_url), "http://%s/metrics", f->metrics_at);
    f->p.extra[0] = "--metrics-listen";
    f->p.extra[1] = f->metrics_at;
    REQUIRE(harness_start(&f->p));
    for (size_t i = 0; gateway_flags != NULL && gateway_flags[i] != NULL; i++) {
        f->g.extra[i] = gateway_flags[i];
    }
    REQUIRE(harness_gateway_start(&f->g, f->p.url, 0));
    snprintf(f->gateway_url, sizeof(f->gateway_url), "%s/metrics", f->g.base);
    f->admin = harness_client(&f->p, f->p.admin);
}

static void fixture_stop(fixture *f) {
    tokend_close(f->admin);
    CHECK_INT(harness_gateway_stop(&f->g), 0);
    CHECK_INT(harness_stop(&f->p), 0);
}

TEST(metrics_pages_pass_promtool_move_and_hold_no_owner_or_id) {
    fixture f;
    fixture_start(&f, NULL);
    /* Distinctive owners and names: none may show on either page. */
    const char *owner = "partner:zqxmetricsowner";
    char token[128], id[32], other[128], other_id[32];
    const char *read[] = {"orders:read"};
    harness_create(f.admin, owner, "zqxmetricsname", read, 1, 0, token, sizeof(token), id,
                   sizeof(id));
    harness_create(f.admin, "partner:zqxsecondowner", "zqxsecondname", read, 1, 0, other,
                   sizeof(other), other_id, sizeof(other_id));

    http_res r = {0}, g = {0};
    const char *page = scrape(&r, f.tokend_url);
    CHECK(promtool_clean("tokend's page", page));
    double ok0 = sample(page, "tokend_verify_total{reason=\"OK\"}");
    double nf0 = sample(page, "tokend_verify_total{reason=\"NOT_FOUND\"}");
    double ins0 = sample(page, "tokend_verify_total{reason=\"INSUFFICIENT_ABILITY\"}");
    double mal0 = sample(page, "tokend_verify_total{reason=\"MALFORMED\"}");
    double calls0 =
        sample(page, "tokend_rpc_requests_total{method=\"Verify\",status=\"OK\"}");
    double creates =
        sample(page, "tokend_rpc_requests_total{method=\"CreateToken\",status=\"OK\"}");
    /* Every reason is on the page from the start (the harness's own
     * readiness probe may have counted one already). */
    CHECK(ok0 >= 0 && nf0 >= 0 && ins0 >= 0 && mal0 >= 0);
    CHECK(creates == 2);
    /* Two creates: two synced group commits at most, one at least. */
    double commits = sample(page, "tokend_writer_commit_duration_seconds_count");
    CHECK(commits >= 1 && commits <= 2);
    CHECK(sample(page, "tokend_writer_group_jobs_sum") == 2);
    CHECK(sample(page, "tokend_build_info{version=\"" TOKEND_VERSION
                       "\",program=\"tokend\"}") == 1);
    CHECK(sample(page, "tokend_rocksdb_block_cache_capacity_bytes") ==
          32.0 * 1024 * 1024);
    CHECK(sample(page, "tokend_rocksdb_keys{cf=\"tokens\"}") >= 0);

    /* Traffic: each Verify outcome once over RPC. */
    tokend_client *anon = harness_client(&f.p, NULL);
    CHECK_INT(verify(anon, token, "orders:read"), TOKEND_OK);
    CHECK_INT(verify(anon, token, "orders:write"), TOKEND_INSUFFICIENT_ABILITY);
    CHECK_INT(verify(anon, "tkd_notatoken", NULL), TOKEND_MALFORMED);
    CHECK_INT(tokend_revoke_id(f.admin, NULL, other_id, NULL, NULL), TOKEND_OK);
    CHECK_INT(verify(anon, other, NULL), TOKEND_NOT_FOUND);
    tokend_close(anon);

    page = scrape(&r, f.tokend_url);
    CHECK(promtool_clean("tokend's page after traffic", page));
    CHECK(sample(page, "tokend_verify_total{reason=\"OK\"}") == ok0 + 1);
    CHECK(sample(page, "tokend_verify_total{reason=\"INSUFFICIENT_ABILITY\"}") ==
          ins0 + 1);
    CHECK(sample(page, "tokend_verify_total{reason=\"MALFORMED\"}") == mal0 + 1);
    CHECK(sample(page, "tokend_verify_total{reason=\"NOT_FOUND\"}") == nf0 + 1);
    CHECK(sample(page, "tokend_rpc_requests_total{method=\"Verify\",status=\"OK\"}") ==
          calls0 + 4);
    CHECK(sample(page, "tokend_rpc_request_duration_seconds_count{method=\"Verify\"}") ==
          calls0 + 4);
    CHECK(sample(page, "tokend_rpc_requests_total{method=\"Revoke\",status=\"OK\"}") ==
          1);

    /* Through the gateway: forward auth, each verdict. */
    char bearer[200], bad[200];
    snprintf(bearer, sizeof(bearer), "Authorization: Bearer %s", token);
    snprintf(bad, sizeof(bad), "Authorization: Bearer %s", other);
    char auth_url[128];
    snprintf(auth_url, sizeof(auth_url), "%s/v1/auth?ability=orders:read", f.g.base);
    http_res a = {0};
    CHECK_INT(CURL(&a, "-H", bearer, auth_url), 200);
    CHECK_INT(CURL(&a, "-H", bad, auth_url), 401);
    CHECK_INT(CURL(&a, auth_url), 401);
    char self_url[128];
    snprintf(self_url, sizeof(self_url), "%s/v1/tokens/self", f.g.base);
    CHECK_INT(CURL(&a, "-H", bearer, self_url), 200);
    res_free(&a);

    const char *gpage = scrape(&g, f.gateway_url);
    CHECK(promtool_clean("the gateway's page", gpage));
    CHECK(sample(gpage, "tokend_gateway_auth_verdicts_total{reason=\"OK\"}") == 1);
    CHECK(sample(gpage, "tokend_gateway_auth_verdicts_total{reason=\"NOT_FOUND\"}") == 1);
    CHECK(sample(gpage, "tokend_gateway_auth_verdicts_total{reason=\"MISSING_TOKEN\"}") ==
          1);
    CHECK(sample(gpage,
                 "tokend_gateway_http_requests_total{route=\"auth\",code=\"200\"}") == 1);
    CHECK(sample(gpage,
                 "tokend_gateway_http_requests_total{route=\"auth\",code=\"401\"}") == 2);
    CHECK(sample(gpage,
                 "tokend_gateway_http_requests_total{route=\"self\",code=\"200\"}") == 1);
    /* Two of the three auth requests and the self one reached tokend. */
    CHECK(sample(gpage, "tokend_gateway_rpc_duration_seconds_count{method=\"Verify\"}") ==
          3);
    CHECK(sample(gpage, "tokend_gateway_rpc_in_flight") == 0);
    CHECK(sample(gpage, "tokend_gateway_upstream_errors_total{reason=\"UNAVAILABLE\"}") ==
          0);
    CHECK(sample(gpage, "tokend_build_info{version=\"" TOKEND_VERSION
                        "\",program=\"tokend-gateway\"}") == 1);
    CHECK(sample(gpage, "process_start_time_seconds") > 1.7e9);
    /* The scrape before this one counts as route "other". */
    gpage = scrape(&g, f.gateway_url);
    CHECK(sample(gpage,
                 "tokend_gateway_http_requests_total{route=\"other\",code=\"200\"}") ==
          1);

    /* Neither page names an owner, a name, a token id or a token. */
    page = scrape(&r, f.tokend_url);
    const char *pages[] = {page, gpage};
    const char *secrets[] = {"zqxmetricsowner",
                             "zqxsecondowner",
                             "zqxmetricsname",
                             "zqxsecondname",
                             id,
                             other_id,
                             token,
                             other,
                             "partner:"};
    for (size_t i = 0; i < 2; i++) {
        for (size_t j = 0; j < sizeof(secrets) / sizeof(secrets[0]); j++) {
            if (test_contains(pages[i], secrets[j])) {
                fprintf(stderr, "    %s page holds \"%s\"\n",
                        i == 0 ? "tokend's" : "gateway's", secrets[j]);
                CHECK(0);
            }
        }
    }
    /* Only GET /metrics is served by tokend's listener. */
    char other_path[128];
    snprintf(other_path, sizeof(other_path), "http://%s/", f.metrics_at);
    CHECK_INT(CURL(&r, other_path), 404);
    CHECK_INT(CURL(&r, "-X", "POST", f.tokend_url), 405);
    res_free(&r);
    res_free(&g);
    fixture_stop(&f);
}

TEST(metrics_listen_refuses_a_taken_port_and_a_bad_address) {
    tokend_proc p;
    harness_init(&p);
    int port = 0;
    int fd = harness_occupy_port(&port);
    char at[64], want[300], env_at[96];
    snprintf(at, sizeof(at), "127.0.0.1:%d", port);
    snprintf(want, sizeof(want),
             "tokend: cannot listen on %s: address already in use (another process "
             "listens there); pick another with --metrics-listen ADDR:PORT or "
             "TOKEND_METRICS_LISTEN",
             at);
    snprintf(env_at, sizeof(env_at), "TOKEND_METRICS_LISTEN=%s", at);
    const char *by_flag[] = {
        harness_bin("tokend"), "serve", "--data-dir", p.data_dir, "--listen", p.url,
        "--metrics-listen",    at,      NULL};
    const char *by_env[] = {harness_bin("tokend"),
                            "serve",
                            "--data-dir",
                            p.data_dir,
                            "--listen",
                            p.url,
                            NULL};
    const char *env[] = {env_at, NULL};
    /* And through the config file. */
    char conf[400], conf_flag[420];
    snprintf(conf, sizeof(conf), "%s/tokend.conf", p.dir);
    FILE *cf = fopen(conf, "w");
    REQUIRE(cf != NULL);
    fprintf(cf, "metrics_listen = %s\n", at);
    fclose(cf);
    snprintf(conf_flag, sizeof(conf_flag), "--config=%s", conf);
    const char *by_file[] = {harness_bin("tokend"),
                             "serve",
                             "--data-dir",
                             p.data_dir,
                             "--listen",
                             p.url,
                             conf_flag,
                             NULL};
    const char *const *ways[] = {by_flag, by_env, by_file};
    for (int i = 0; i < 3; i++) {
        char *out = NULL, *err = NULL;
        int rc = harness_exec(ways[i], NULL, i == 1 ? env : NULL, &out, &err);
        CHECK_INT(rc, 1);
        if (!test_contains(err, want)) {
            fprintf(stderr, "    tokend said: %s\n", err != NULL ? err : "(nothing)");
            CHECK(0);
        }
        free(out);
        free(err);
    }
    close(fd);

    /* Not an address: a usage error, before the store is touched. */
    const char *bad_values[] = {"localhost:9100", "9100", "127.0.0.1:99999", "[::1]9100",
                                "127.0.0.1:"};
    for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++) {
        const char *argv[] = {
            harness_bin("tokend"), "serve",       "--data-dir", p.data_dir,
            "--metrics-listen",    bad_values[i], NULL};
        char *out = NULL, *err = NULL;
        CHECK_INT(harness_exec(argv, NULL, NULL, &out, &err), 2);
        char line[200];
        snprintf(line, sizeof(line),
                 "tokend: --metrics-listen must be IPv4:PORT or [IPv6]:PORT, not \"%s\"",
                 bad_values[i]);
        if (!test_contains(err, line)) {
            fprintf(stderr, "    tokend said: %s\n", err != NULL ? err : "(nothing)");
            CHECK(0);
        }
        free(out);
        free(err);
    }
    /* Free again (and over IPv6 loopback where there is one): it serves. */
    p.extra[0] = "--metrics-listen";
    p.extra[1] = at;
    REQUIRE(harness_start(&p));
    char url[96];
    snprintf(url, sizeof(url), "http://%s/metrics", at);
    http_res r = {0};
    CHECK_INT(CURL(&r, url), 200);
    CHECK(test_contains(r.headers, "text/plain; version=0.0.4"));
    res_free(&r);
    CHECK_INT(harness_stop(&p), 0);
}

TEST(metrics_gateway_page_off_by_flag_and_by_environment) {
    tokend_proc p;
    harness_init(&p);
    REQUIRE(harness_start(&p));
    for (int i = 0; i < 2; i++) {
        gateway_proc g;
        memset(&g, 0, sizeof(g));
        if (i == 0) {
            g.extra[0] = "--metrics=false";
        } else {
            setenv("TOKEND_GATEWAY_METRICS", "false", 1);
        }
        REQUIRE(harness_gateway_start(&g, p.url, 0));
        unsetenv("TOKEND_GATEWAY_METRICS");
        char url[96];
        snprintf(url, sizeof(url), "%s/metrics", g.base);
        http_res r = {0};
        CHECK_INT(CURL(&r, url), 404);
        CHECK(r.body != NULL && test_contains(r.body, "NO_ROUTE"));
        res_free(&r);
        CHECK_INT(harness_gateway_stop(&g), 0);
    }
    /* A bad value is refused with the option's name. */
    const char *argv[] = {harness_bin("tokend-gateway"), "--metrics=maybe", "--service",
                          p.url, NULL};
    char *out = NULL, *err = NULL;
    CHECK_INT(harness_exec(argv, NULL, NULL, &out, &err), 2);
    CHECK(err != NULL &&
          test_contains(err, "tokend-gateway: flag: --metrics must be true or false, not "
                             "\"maybe\""));
    free(out);
    free(err);
    CHECK_INT(harness_stop(&p), 0);
}

/* ------------------------------------------------------------------------
 * A real Prometheus. */

static pid_t prometheus_start(const char *dir, const char *config, int port) {
    char cfg_flag[600], tsdb_flag[600], listen_flag[64], log_path[600];
    snprintf(cfg_flag, sizeof(cfg_flag), "--config.file=%s", config);
    snprintf(tsdb_flag, sizeof(tsdb_flag), "--storage.tsdb.path=%s/tsdb", dir);
    snprintf(listen_flag, sizeof(listen_flag), "--web.listen-address=127.0.0.1:%d", port);
    snprintf(log_path, sizeof(log_path), "%s/prometheus.log", dir);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(PROMETHEUS, PROMETHEUS, cfg_flag, tsdb_flag, listen_flag, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Whether /api/v1/targets lists `want` active targets, all up. */
static bool targets_up(const char *api, size_t want) {
    char url[160];
    snprintf(url, sizeof(url), "%s/api/v1/targets", api);
    http_res r = {0};
    bool up = false;
    if (CURL(&r, url) == 200 && r.body != NULL) {
        json_t *doc = json_loads(r.body, 0, NULL);
        json_t *active = json_object_get(json_object_get(doc, "data"), "activeTargets");
        size_t n = 0;
        for (size_t i = 0; i < json_array_size(active); i++) {
            const char *health =
                json_string_value(json_object_get(json_array_get(active, i), "health"));
            n += health != NULL && strcmp(health, "up") == 0;
        }
        up = n == want && json_array_size(active) == want;
        json_decref(doc);
    }
    res_free(&r);
    return up;
}

/* The value of instant query `q` (one series), or -1 when it has none. */
static double query(const char *api, const char *q) {
    char url[512];
    snprintf(url, sizeof(url), "%s/api/v1/query", api);
    http_res r = {0};
    char data[300];
    snprintf(data, sizeof(data), "query=%s", q);
    double v = -1;
    if (CURL(&r, "--get", "--data-urlencode", data, url) == 200 && r.body != NULL) {
        json_t *doc = json_loads(r.body, 0, NULL);
        json_t *result = json_object_get(json_object_get(doc, "data"), "result");
        if (json_array_size(result) == 1) {
            json_t *value = json_object_get(json_array_get(result, 0), "value");
            const char *text = json_string_value(json_array_get(value, 1));
            v = text != NULL ? strtod(text, NULL) : -1;
        }
        json_decref(doc);
    }
    res_free(&r);
    return v;
}

/* Polls until query `q` reaches at least `want`, up to `seconds`. */
static double query_until(const char *api, const char *q, double want, int seconds) {
    double v = -1;
    for (int i = 0; i < seconds * 4; i++) {
        v = query(api, q);
        if (v >= want) {
            break;
        }
        usleep(250 * 1000);
    }
    return v;
}

TEST(metrics_real_prometheus_scrapes_both_and_sees_verifies) {
    if (access(PROMETHEUS, X_OK) != 0) {
        test_skip("%s is not installed (Debian's prometheus package)", PROMETHEUS);
    }
    fixture f;
    fixture_start(&f, NULL);
    const char *dir = test_tmpdir();
    char config[400];
    snprintf(config, sizeof(config), "%s/prometheus.yml", dir);
    FILE *cf = fopen(config, "w");
    REQUIRE(cf != NULL);
    fprintf(cf,
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "scrape_configs:\n"
            "  - job_name: tokend\n"
            "    static_configs:\n"
            "      - targets: ['%s']\n"
            "  - job_name: tokend-gateway\n"
            "    static_configs:\n"
            "      - targets: ['127.0.0.1:%d']\n",
            f.metrics_at, f.g.port);
    fclose(cf);
    int port = harness_free_port();
    char api[64];
    snprintf(api, sizeof(api), "http://127.0.0.1:%d", port);
    pid_t prom = prometheus_start(dir, config, port);

    bool up = false;
    for (int i = 0; i < 120 && !up; i++) { /* 30 s */
        up = targets_up(api, 2);
        if (!up) {
            usleep(250 * 1000);
        }
    }
    if (!up) {
        char log_path[400];
        snprintf(log_path, sizeof(log_path), "%s/prometheus.log", dir);
        char *log = harness_read_file(log_path);
        fprintf(stderr, "    targets never all up; prometheus said:\n%s\n",
                log ? log : "");
        free(log);
    }
    CHECK(up);

    /* Both jobs' series are there before the traffic... */
    const char *q_rpc = "tokend_verify_total{job=\"tokend\",reason=\"NOT_FOUND\"}";
    const char *q_gw = "tokend_gateway_auth_verdicts_total{job=\"tokend-gateway\","
                       "reason=\"NOT_FOUND\"}";
    double rpc0 = query_until(api, q_rpc, 0, 10);
    double gw0 = query_until(api, q_gw, 0, 10);
    CHECK(rpc0 >= 0);
    CHECK(gw0 == 0);

    /* ...and move with it: five unknown tokens through the gateway are
     * five NOT_FOUND verdicts there and five NOT_FOUND verifies in tokend. */
    char token[128];
    const char *read[] = {"orders:read"};
    harness_create(f.admin, "partner:prom", "prom", read, 1, 0, token, sizeof(token),
                   NULL, 0);
    char bearer[200], auth_url[128];
    snprintf(bearer, sizeof(bearer), "Authorization: Bearer %s", token);
    snprintf(auth_url, sizeof(auth_url), "%s/v1/auth", f.g.base);
    CHECK_INT(tokend_revoke_token(f.admin, NULL, token, NULL, NULL), TOKEND_OK);
    http_res a = {0};
    for (int i = 0; i < 5; i++) {
        CHECK_INT(CURL(&a, "-H", bearer, auth_url), 401);
    }
    res_free(&a);
    CHECK(query_until(api, q_rpc, rpc0 + 5, 15) == rpc0 + 5);
    CHECK(query_until(api, q_gw, gw0 + 5, 15) == gw0 + 5);
    /* A rate by reason, as docs/metrics.md suggests, is computed too. */
    CHECK(query_until(api, "sum(increase(tokend_verify_total{reason=\"NOT_FOUND\"}[1m]))",
                      1, 15) >= 1);

    /* Stopped cleanly. */
    REQUIRE(kill(prom, SIGTERM) == 0);
    int status = 0;
    REQUIRE(waitpid(prom, &status, 0) == prom);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    fixture_stop(&f);
}
