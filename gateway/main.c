/*
 * main.c — tokend-gateway: reads the options, connects to tokend, serves
 * the REST API of docs/gateway.md until SIGINT or SIGTERM, then stops
 * accepting, lets requests in flight finish (each is bounded by
 * --rpc-timeout-ms), closes and exits 0.
 *
 * Exit codes: 0 clean stop; 1 runtime failure (cannot listen, cannot read
 * a TLS file); 2 usage error (one line on stderr).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "api.h"
#include "error.h"
#include "http.h"
#include "log.h"
#include "openapi.h"
#include "opt.h"
#include "secret.h"
#include "tls.h"
#include "options.h"
#include "stats.h"
#include "tokend.h"
#include "upstream.h"

/* Open files the gateway needs besides the HTTP server's: standard
 * streams, the PEM files while read, tokend connections and NNG's own. */
#define GATEWAY_FDS_OTHER 128

static void usage(FILE *out) {
    fprintf(out,
            "tokend-gateway " TOKEND_VERSION " — the REST API of tokend for partners\n"
            "\n"
            "Usage: tokend-gateway [--listen ADDR:PORT] [--service URL ...]\n"
            "                      [--tls-cert PEM --tls-key PEM] [options]\n"
            "\n"
            "Turns HTTP requests carrying \"Authorization: Bearer <token>\" into calls\n"
            "to tokend: GET /v1/auth (forward auth for nginx auth_request, Traefik,\n"
            "Envoy), GET/POST/DELETE /v1/tokens, GET /v1/tokens/self,\n"
            "DELETE /v1/tokens/{id}, GET /v1/openapi.json, /healthz, /readyz and\n"
            "/metrics (Prometheus).\n"
            "It keeps no state: run as many as load needs; on one host they may share\n"
            "the port. Every request asks tokend, so a revocation holds everywhere on\n"
            "the next request. Logs one logfmt line per request on stderr (never a\n"
            "token or the Authorization header). Stops on SIGINT/SIGTERM.\n"
            "\n"
            "Options (each also an environment variable, as shown; flags win):\n");
    opt_usage(out, &options_table, 0);
    fprintf(out, "  --help     this text\n  --version  print the version and exit\n");
    fprintf(out, "\nExample:\n"
                 "  tokend-gateway --listen 127.0.0.1:8080 --service "
                 "tcp://127.0.0.1:7450\n"
                 "  curl -H \"Authorization: Bearer $TOKEN\" "
                 "'http://127.0.0.1:8080/v1/auth?ability=orders:read'\n");
}

/* Raises the soft limit on open files to `need` if it is lower. Returns
 * TOKEND_OK, or UNAVAILABLE (the hard limit is lower still) with err
 * filled: past the limit, new connections would wait unanswered. */
static int fit_fd_limit(rlim_t need, long long max_connections, tokend_error *err) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return error_set(err, TOKEND_UNAVAILABLE, "cannot read the open-file limit: %s",
                         strerror(errno));
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        bool fits = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need;
        rl.rlim_cur = need;
        if (!fits || setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            return error_set(err, TOKEND_UNAVAILABLE,
                             "--max-connections %lld needs %llu open files, more than "
                             "the limit allows (%s): lower --max-connections or raise "
                             "the limit",
                             max_connections, (unsigned long long)need,
                             fits ? strerror(errno) : "ulimit -Hn is lower");
        }
    }
    return TOKEND_OK;
}

int main(int argc, char **argv) {
    log_set_proc("gateway");
    gw_options opts;
    opt_outcome outcome;
    tokend_error bad;
    if (opt_load(&options_table, &opts, 0, argc, argv, 1, &outcome, &bad) != TOKEND_OK) {
        fprintf(stderr, "tokend-gateway: %s\n", bad.message);
        opt_free(&options_table, &opts);
        return 2;
    }
    if (outcome != OPT_RUN) {
        if (outcome == OPT_HELP) {
            usage(stdout);
        } else {
            printf("tokend-gateway " TOKEND_VERSION "\n");
        }
        opt_free(&options_table, &opts);
        return 0;
    }
    if (secret_core_dumps(opts.allow_core_dumps, &bad) != TOKEND_OK) {
        fprintf(stderr, "tokend-gateway: %s\n", bad.message);
        opt_free(&options_table, &opts);
        return 1;
    }
    int exit_code = 2;
    char *cert = NULL, *key = NULL;
    upstream *up = NULL;
    api *a = NULL;
    gw_stats *stats = NULL;
    tokend_error err;

    log_level level;
    if (!log_parse_level(opts.log_level, &level)) {
        fprintf(stderr,
                "tokend-gateway: --log-level must be debug, info, warn or error, "
                "not \"%s\"\n",
                opts.log_level);
        goto out;
    }
    log_min_level = level;
    if (!http_listen_ok(opts.listen)) {
        fprintf(stderr,
                "tokend-gateway: --listen must be IPv4:PORT or [IPv6]:PORT, not \"%s\"\n",
                opts.listen);
        goto out;
    }
    if (strcmp(opts.hsts, "off") != 0 && !http_hsts_ok(opts.hsts)) {
        char q[300];
        fprintf(stderr,
                "tokend-gateway: --hsts must be off or max-age=SECONDS "
                "[; includeSubDomains] [; preload], not %s\n",
                log_quote(q, sizeof(q), opts.hsts));
        goto out;
    }
    proxy_trust trust;
    if (proxy_trust_parse((const char *const *)opts.trusted_proxies.items,
                          opts.trusted_proxies.n, &trust, &err) != TOKEND_OK) {
        fprintf(stderr, "tokend-gateway: %s\n", err.message);
        goto out;
    }
    if ((opts.tls_cert == NULL) != (opts.tls_key == NULL)) {
        fprintf(stderr, "tokend-gateway: --tls-cert and --tls-key go together\n");
        goto out;
    }
    exit_code = 1;
    if (opts.tls_cert != NULL &&
        (tls_read_pem("--tls-cert", opts.tls_cert, &cert, &err) != TOKEND_OK ||
         tls_read_pem("--tls-key", opts.tls_key, &key, &err) != TOKEND_OK)) {
        fprintf(stderr, "tokend-gateway: %s\n", err.message);
        goto out;
    }

    /* Every thread started from here on inherits the mask, so the signals
     * reach only sigwait below. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    http_json_init();

    upstream_config uc = {
        .urls = (const char *const *)opts.services.items,
        .n_urls = opts.services.n,
        .timeout_ms = (int)opts.rpc_timeout_ms,
        .max_inflight = (int)opts.max_inflight,
        .tls_ca_file = opts.service_tls_ca,
        .tls_cert_file = opts.service_tls_cert,
        .tls_key_file = opts.service_tls_key,
        .tls_server_name = opts.service_tls_server_name,
    };
    int rv = upstream_open(&uc, &up, &err);
    if (rv != TOKEND_OK) {
        fprintf(stderr, "tokend-gateway: %s\n", err.message);
        exit_code = rv == TOKEND_INVALID_ARGUMENT ? 2 : 1;
        goto out;
    }
    if (opts.metrics && (stats = gw_stats_new(up)) == NULL) {
        fprintf(stderr, "tokend-gateway: out of memory\n");
        goto out;
    }
    api_config ac = {
        .up = up,
        .verify_credential = opts.verify_credential,
        .ready_timeout_ms = (int)opts.ready_timeout_ms,
        .openapi = gateway_openapi_json,
        .openapi_len = gateway_openapi_json_len,
        .stats = stats,
        .trust = &trust,
    };
    if ((a = api_new(&ac)) == NULL) {
        fprintf(stderr, "tokend-gateway: out of memory\n");
        goto out;
    }
    http_handlers handlers = {.handle = api_handle,
                              .resume = api_resume,
                              .release = api_release,
                              .finished = api_finished,
                              .cls = a};
    http_config hc = {
        .listen = opts.listen,
        .threads = (int)opts.threads,
        .max_body = (size_t)opts.max_body,
        .max_header = (size_t)opts.max_header,
        .request_timeout_s = (int)opts.request_timeout_s,
        .idle_timeout_s = (int)opts.idle_timeout_s,
        .max_connections = (int)opts.max_connections,
        .max_connections_per_ip = (int)opts.max_connections_per_ip,
        .tls_cert_pem = cert,
        .tls_key_pem = key,
        .hsts = strcmp(opts.hsts, "off") != 0 ? opts.hsts : NULL,
    };
    if (fit_fd_limit((rlim_t)(http_fds_needed(&hc) + GATEWAY_FDS_OTHER),
                     (long long)opts.max_connections, &err) != TOKEND_OK) {
        fprintf(stderr, "tokend-gateway: %s\n", err.message);
        goto out;
    }
    http_server *srv = NULL;
    if (http_start(&hc, &handlers, &srv, &err) != TOKEND_OK) {
        fprintf(stderr, "tokend-gateway: %s\n", err.message);
        goto out;
    }
    {
        char q[300];
        LOG(LOG_INFO, "listening", "addr=%s port=%d tls=%s",
            log_quote(q, sizeof(q), opts.listen), http_port(srv),
            cert != NULL ? "true" : "false");
        for (size_t i = 0; i < opts.services.n; i++) {
            LOG(LOG_INFO, "upstream", "url=%s",
                log_quote(q, sizeof(q), opts.services.items[i]));
        }
        LOG(LOG_INFO, "started", "version=" TOKEND_VERSION " threads=%lld",
            (long long)opts.threads);
    }

    int sig = 0;
    sigwait(&stop, &sig);
    LOG(LOG_INFO, "stopping", "signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    /* Requests in flight are each bounded by the RPC timeout (/readyz by
     * its own): wait that long (and a little) for them, then cut what is
     * left. */
    int64_t call_limit_ms = opts.rpc_timeout_ms > opts.ready_timeout_ms
                                ? opts.rpc_timeout_ms
                                : opts.ready_timeout_ms;
    int left = http_quiesce(srv, (int)call_limit_ms + 500);
    upstream_shutdown(up, 1000);
    if (left > 0) {
        LOG(LOG_WARN, "drain.timeout", "requests=%d", left);
        /* Requests the shutdown just failed are answered (503) now. */
        http_quiesce(srv, 500);
    }
    uint64_t served = http_stop(srv);
    LOG(LOG_INFO, "stopped", "requests=%llu", (unsigned long long)served);
    exit_code = 0;
out:
    api_free(a);
    gw_stats_free(stats);
    upstream_free(up);
    secret_free(key);
    secret_free(cert);
    opt_free(&options_table, &opts);
    return exit_code;
}
