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
    {"tombstone-retention", OPT_DURATION, "30d", FIELD(tombstone_retention_s), 0, 0, 0,
     CMD_SERVE, "DURATION",
     "how long a revoked token's digest is kept, so that presenting it raises "
     "ALERT_REVOKED_TOKEN_USED rather than counting as a token never issued"},
    {"alert-network-history", OPT_DURATION, "30d", FIELD(alert_network_history_s), 0, 0,
     0, CMD_SERVE, "DURATION",
     "how long a client network (/24 or /64) a token used counts as known; a use from "
     "one not seen within it raises ALERT_NEW_NETWORK"},
    {"alert-denials", OPT_INT, "20", FIELD(alert_denials), 1, 1000000, 0, CMD_SERVE, "N",
     "denials (insufficient ability or expired) of one token within "
     "--alert-denial-window that raise ALERT_DENIAL_BURST"},
    {"alert-denial-window", OPT_DURATION, "60s", FIELD(alert_denial_window_s), 0, 0, 0,
     CMD_SERVE, "DURATION", "the window --alert-denials are counted in"},
    {"alert-volume-factor", OPT_INT, "10", FIELD(alert_volume_factor), 2, 1000000, 0,
     CMD_SERVE, "K",
     "a token's calls in one --alert-volume-interval over K times its trailing "
     "baseline (and at least --alert-volume-min) raise ALERT_VOLUME_SPIKE"},
    {"alert-volume-min", OPT_INT, "600", FIELD(alert_volume_min), 1, 1000000000, 0,
     CMD_SERVE, "N", "fewest calls in one interval that count as a volume spike"},
    {"alert-volume-interval", OPT_DURATION, "60s", FIELD(alert_volume_interval_s), 0, 0,
     0, CMD_SERVE, "DURATION",
     "the interval a token's calls are counted in for the baseline"},
    {"alert-spray", OPT_INT, "20", FIELD(alert_spray), 1, 1000000, 0, CMD_SERVE, "N",
     "well-formed unknown tokens from one client address within --alert-spray-window "
     "that raise ALERT_UNKNOWN_TOKEN_SPRAY"},
    {"alert-spray-window", OPT_DURATION, "60s", FIELD(alert_spray_window_s), 0, 0, 0,
     CMD_SERVE, "DURATION", "the window --alert-spray unknown tokens are counted in"},
    {"alert-repeat", OPT_DURATION, "1h", FIELD(alert_repeat_s), 0, 0, 0, CMD_SERVE,
     "DURATION",
     "after an alert, how long the same kind stays quiet for the same token (or "
     "client address), so that one incident is one alert"},
    {"alert-tracked", OPT_INT, "16384", FIELD(alert_tracked), 64, 4194304, 0, CMD_SERVE,
     "N",
     "tokens, and client addresses, whose recent use the alerts keep in memory at once "
     "(the least recently seen makes room)"},
    {"alert-webhook", OPT_STRING, NULL, FIELD(alert_webhook), 0, 0, 0, CMD_SERVE, "URL",
     "POST each alert as JSON to this http:// or https:// URL, retrying with backoff "
     "until it answers 2xx (docs/alerts.md)"},
    {"alert-webhook-secret", OPT_STRING, NULL, FIELD(alert_webhook_secret), 0, 0,
     OPT_SECRET, CMD_SERVE, "SECRET",
     "key of the webhook's X-Tokend-Signature (HMAC-SHA256 of \"TIMESTAMP.BODY\"); "
     "better given in the environment or the config file than as a flag"},
    {"alert-webhook-ca", OPT_STRING, NULL, FIELD(alert_webhook_ca), 0, 0, 0, CMD_SERVE,
     "PEM",
     "CA certificates (PEM file) an https:// --alert-webhook must have a certificate "
     "from (default: the system's, /etc/ssl/certs/ca-certificates.crt)"},
    {"alert-webhook-timeout-ms", OPT_INT, "5000", FIELD(alert_webhook_timeout_ms), 100,
     600000, 0, CMD_SERVE, "MS", "how long one webhook delivery may take, in ms"},
};

const opt_table config_table = {OPT_TABLE_OF(options, config), .env_prefix = "TOKEND_"};
