/*
 * options.c — the gateway's option table. proto/opt.c does the reading;
 * this file only says which options there are. See options.h.
 */
#include "options.h"

#include <stddef.h>

#define FIELD(f) offsetof(gw_options, f)

/* name, type, default, field, min, max, flags, commands, metavar, help */
static const opt_def options[] = {
    {"listen", OPT_STRING, "127.0.0.1:8080", FIELD(listen), 0, 0, 0, 0, "ADDR:PORT",
     "address and port to serve on: IPv4 (0.0.0.0:8080) or [IPv6]:PORT; port 0 picks a "
     "free one (logged). Gateways on one host may share a port (SO_REUSEPORT)"},
    {"service", OPT_LIST, "tcp://127.0.0.1:7450", FIELD(services), 0, 0, OPT_URL, 0,
     "URL",
     "tokend URL (tcp://HOST:PORT, tls+tcp://HOST:PORT, ipc:///PATH); repeat for "
     "several (comma-separated in the environment); calls are spread over the "
     "connected ones"},
    {"tls-cert", OPT_STRING, NULL, FIELD(tls_cert), 0, 0, 0, 0, "PEM",
     "certificate chain file: serve HTTPS (TLS 1.2 and 1.3) instead of HTTP; needs "
     "--tls-key"},
    {"tls-key", OPT_STRING, NULL, FIELD(tls_key), 0, 0, 0, 0, "PEM",
     "private key file of --tls-cert"},
    {"hsts", OPT_STRING, "max-age=31536000", FIELD(hsts), 0, 0, 0, 0, "VALUE",
     "Strict-Transport-Security sent with every HTTPS reply: max-age=SECONDS, optionally "
     "with '; includeSubDomains' and '; preload'; off sends none. Never sent over plain "
     "HTTP"},
    {"rpc-timeout-ms", OPT_INT, "2000", FIELD(rpc_timeout_ms), 1, 600000, 0, 0, "MS",
     "time limit of each call to tokend; no reply in time: 504, tokend unreachable for "
     "that long: 503"},
    {"ready-timeout-ms", OPT_INT, "500", FIELD(ready_timeout_ms), 1, 600000, 0, 0, "MS",
     "time limit of /readyz's call to tokend, whatever --rpc-timeout-ms is: past it, "
     "or at once when tokend refuses the connection, /readyz answers 503 (keep it "
     "under the probe's own timeout)"},
    {"max-inflight", OPT_INT, "1024", FIELD(max_inflight), 1, 1000000, 0, 0, "N",
     "calls to tokend in flight at once; past it requests get 503 OVERLOADED"},
    {"max-body", OPT_INT, "65536", FIELD(max_body), 1, 16 * 1024 * 1024, 0, 0, "BYTES",
     "largest request body; past it: 413"},
    {"max-header", OPT_INT, "8192", FIELD(max_header), 1024, 1024 * 1024, 0, 0, "BYTES",
     "largest request line plus header fields; past it: 431 and the connection closes"},
    {"request-timeout-s", OPT_INT, "10", FIELD(request_timeout_s), 1, 3600, 0, 0, "S",
     "a request must arrive whole (headers and body) within this, counted from the "
     "connection's start for its first request and from the request line for later "
     "ones; past it the connection is closed"},
    {"idle-timeout-s", OPT_INT, "30", FIELD(idle_timeout_s), 1, 86400, 0, 0, "S",
     "a connection with nothing to read or write for this long is closed"},
    {"max-connections", OPT_INT, "2048", FIELD(max_connections), 1, 1000000, 0, 0, "N",
     "connections open at once; past it a new one closes the longest-idle connection, "
     "or with none idle is answered 503 and closed. The gateway raises its open-file "
     "limit to fit, or does not start"},
    {"max-connections-per-ip", OPT_INT, "256", FIELD(max_connections_per_ip), 1, 1000000,
     0, 0, "N",
     "connections open at once from one client address (IPv6: one /64); past it as "
     "--max-connections, among that address's. Behind a proxy every client has its "
     "address: raise it to --max-connections"},
    {"trusted-proxy", OPT_LIST, "127.0.0.0/8,::1/128", FIELD(trusted_proxies), 0, 0, 0, 0,
     "CIDR",
     "network (10.0.0.0/8, 2001:db8::/32) or address of proxies whose forwarded headers "
     "are believed: X-Real-IP and X-Forwarded-For for the client, and on /v1/auth "
     "X-Original-Method/-URI or X-Forwarded-Method/-Uri for the request checked; repeat "
     "for several (comma-separated in the environment). From any other peer they are "
     "ignored and the peer is the client"},
    {"threads", OPT_INT, "2", FIELD(threads), 1, 256, 0, 0, "N",
     "HTTP worker threads, each an epoll event loop; no thread ever waits for tokend"},
    {"verify-credential", OPT_STRING, NULL, FIELD(verify_credential), 0, 0, OPT_SECRET, 0,
     "TOKEN",
     "credential sent with Verify calls, for a tokend run with "
     "--verify-requires-credential (prefer the environment: flags show in ps)"},
    {"log-level", OPT_STRING, "info", FIELD(log_level), 0, 0, 0, 0, "LEVEL",
     "debug, info, warn or error; info logs one line per request"},
    {"service-tls-ca", OPT_STRING, NULL, FIELD(service_tls_ca), 0, 0, 0, 0, "PEM",
     "for a tls+tcp://HOST:PORT --service (required with one): the CA certificate(s) "
     "tokend's certificate must be signed by"},
    {"service-tls-cert", OPT_STRING, NULL, FIELD(service_tls_cert), 0, 0, 0, 0, "PEM",
     "the gateway's client certificate, for a tokend run with --tls-client-ca; needs "
     "--service-tls-key"},
    {"service-tls-key", OPT_STRING, NULL, FIELD(service_tls_key), 0, 0, 0, 0, "PEM",
     "private key (unencrypted PEM file) of --service-tls-cert"},
    {"service-tls-server-name", OPT_STRING, NULL, FIELD(service_tls_server_name), 0, 0, 0,
     0, "NAME",
     "name tokend's certificate must be issued for (default: the --service URL's "
     "host; DNS names only, so give one for a URL by IP address)"},
    {"metrics", OPT_BOOL, "true", FIELD(metrics), 0, 0, 0, 0, NULL,
     "serve Prometheus metrics on GET /metrics of --listen, without a credential (the "
     "page holds no token, token id or owner; docs/metrics.md); --metrics=false "
     "turns it off (404)"},
    {"allow-core-dumps", OPT_BOOL, "false", FIELD(allow_core_dumps), 0, 0, 0, 0, NULL,
     "let the process dump core, for debugging (by default it cannot, and other "
     "processes of the same user cannot read its memory, which holds tokens)"},
};

const opt_table options_table = {
    OPT_TABLE_OF(options, gw_options),
    .env_prefix = "TOKEND_GATEWAY_",
    .version = true,
};
