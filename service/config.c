/*
 * config.c — tokend's option table. proto/opt.c does the reading; this
 * file only says which options there are. See config.h.
 */
#include "config.h"

#include <stddef.h>

#define FIELD(f) offsetof(config, f)
#define BOTH (CMD_INIT | CMD_SERVE)
#define ALL (CMD_INIT | CMD_SERVE | CMD_ADMIN_TOKEN)

/* name, type, default, field, min, max, flags, commands, metavar, help */
static const opt_def options[] = {
    {"data-dir", OPT_STRING, "./data", FIELD(data_dir), 0, 0, 0, ALL, "DIR",
     "directory of the token store (created by init)"},
    {"listen", OPT_LIST, "tcp://127.0.0.1:7450", FIELD(listen), 0, 0, OPT_URL, CMD_SERVE,
     "URL",
     "URL to serve on: tcp://HOST:PORT, tls+tcp://HOST:PORT (with --tls-cert and "
     "--tls-key) or ipc:///PATH; repeat for several (comma-separated in the "
     "environment or file)"},
    {"token-prefix", OPT_STRING, "tkd_", FIELD(token_prefix), 0, 0, 0, ALL, "PREFIX",
     "prefix of new tokens, 1-32 of [A-Za-z0-9_], e.g. acme_live_ (old tokens "
     "keep verifying when it changes)"},
    {"max-lifetime", OPT_DURATION, "0", FIELD(max_lifetime_s), 0, 0, 0, CMD_SERVE,
     "DURATION", "deployment-wide maximum token lifetime (e.g. 365d); 0 for none"},
    {"max-message", OPT_INT, "65536", FIELD(max_message), 1024, 16 * 1024 * 1024, 0,
     CMD_SERVE, "BYTES", "largest request accepted, in bytes"},
    {"max-tokens-per-owner", OPT_INT, "10000", FIELD(max_tokens_per_owner), 1, 100000000,
     0, CMD_SERVE, "N", "tokens one owner may hold at once; a create past it is refused"},
    {"contexts", OPT_INT, "128", FIELD(contexts), 1, 4096, 0, CMD_SERVE, "N",
     "requests served concurrently"},
    {"usage-flush-ms", OPT_INT, "2000", FIELD(usage_flush_ms), 10, 60000, 0, CMD_SERVE,
     "MS", "how often last-used times and use counts are written, in ms"},
    {"events-retention", OPT_DURATION, "365d", FIELD(events_retention_s), 0, 0, 0,
     CMD_SERVE, "DURATION",
     "how long audit events are kept (e.g. 90d); older ones are deleted, the newest "
     "never; 0 keeps them forever"},
    {"usage-minute-retention", OPT_DURATION, "48h", FIELD(usage_minute_retention_s), 0, 0,
     0, CMD_SERVE, "DURATION",
     "how long usage series are kept by the minute (e.g. 48h); 0 keeps them"},
    {"usage-hour-retention", OPT_DURATION, "90d", FIELD(usage_hour_retention_s), 0, 0, 0,
     CMD_SERVE, "DURATION",
     "how long usage series are kept by the hour (e.g. 90d); 0 keeps them"},
    {"usage-routes", OPT_INT, "20", FIELD(usage_routes), 1, 100, 0, CMD_SERVE, "N",
     "routes counted per token and usage bucket; the rest count as \"other\""},
    {"usage-client-ips", OPT_INT, "10", FIELD(usage_client_ips), 1, 100, 0, CMD_SERVE,
     "N",
     "client addresses kept per usage bucket (the top N by calls); the rest count as "
     "\"other\""},
    {"block-cache-mb", OPT_INT, "32", FIELD(block_cache_mb), 1, 65536, 0, CMD_SERVE,
     "MIB", "RocksDB block cache size, in MiB"},
    {"memtable-mb", OPT_INT, "64", FIELD(memtable_mb), 4, 65536, 0, CMD_SERVE, "MIB",
     "RocksDB memtables (writes not yet in table files), all together, in MiB"},
    {"drain-ms", OPT_INT, "5000", FIELD(drain_ms), 0, 600000, 0, CMD_SERVE, "MS",
     "on SIGTERM/SIGINT, how long to wait for requests in flight, in ms"},
    {"log-level", OPT_STRING, "info", FIELD(log_level), 0, 0, 0, ALL, "LEVEL",
     "debug, info, warn or error (debug logs every Verify)"},
    {"verify-requires-credential", OPT_BOOL, "false", FIELD(verify_requires_credential),
     0, 0, 0, CMD_SERVE, NULL,
     "Verify callers must send a credential with tokend:verify (or tokend:admin)"},
    {"admin-owner", OPT_STRING, "admin", FIELD(admin_owner), 0, 0, 0,
     CMD_INIT | CMD_ADMIN_TOKEN, "OWNER",
     "owner of the admin token that init (or admin-token) prints"},
    {"config", OPT_STRING, NULL, FIELD(config_file), 0, 0, OPT_FILE, ALL, "FILE",
     "read options from FILE (\"name = value\" lines, # comments; a name is an "
     "option's without --, spelt with - or _: log-level or log_level)"},
    {"tls-cert", OPT_STRING, NULL, FIELD(tls_cert), 0, 0, 0, CMD_SERVE, "PEM",
     "certificate chain (PEM file) of the tls+tcp:// listeners, which speak TLS 1.2 "
     "(NNG's mbedTLS 2.28); needs --tls-key"},
    {"tls-key", OPT_STRING, NULL, FIELD(tls_key), 0, 0, 0, CMD_SERVE, "PEM",
     "private key (unencrypted PEM file) of --tls-cert"},
    {"tls-client-ca", OPT_STRING, NULL, FIELD(tls_client_ca), 0, 0, 0, CMD_SERVE, "PEM",
     "mutual TLS: only clients with a certificate signed by a CA of this PEM file may "
     "connect to the tls+tcp:// listeners (default: any client may, and the caller "
     "credential alone decides what it may do)"},
    {"metrics-listen", OPT_STRING, NULL, FIELD(metrics_listen), 0, 0, 0, CMD_SERVE,
     "ADDR:PORT",
     "serve Prometheus metrics (GET /metrics, plain HTTP, no credential) on IPv4:PORT "
     "or [IPv6]:PORT; off by default. The page holds no token, token id or owner, but "
     "listen where only the scraper reaches (docs/metrics.md)"},
    {"allow-core-dumps", OPT_BOOL, "false", FIELD(allow_core_dumps), 0, 0, 0, ALL, NULL,
     "let the process dump core, for debugging (by default it cannot, and other "
     "processes of the same user cannot read its memory, which holds credentials and "
     "new tokens)"},
};

const opt_table config_table = {OPT_TABLE_OF(options, config), .env_prefix = "TOKEND_"};
