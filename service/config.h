/*
 * config.h — tokend's options: struct config and the table (config_table)
 * that proto/opt.c reads into it from the command-line flags, the
 * environment (TOKEND_*), the config file (--config FILE, "name = value"
 * lines) and prints as --help, so they cannot drift apart. Precedence,
 * lowest first: built-in default, config file, environment, flag.
 */
#ifndef TOKEND_CONFIG_H
#define TOKEND_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "opt.h"

/* The commands, as bits of opt_def.commands. */
typedef enum config_command {
    CMD_INIT = 1,
    CMD_SERVE = 2,
    CMD_ADMIN_TOKEN = 4
} config_command;

typedef struct config {
    char *data_dir;
    opt_list listen;
    char *token_prefix;
    int64_t max_lifetime_s;
    int64_t max_message;
    int64_t max_tokens_per_owner;
    int64_t contexts;
    int64_t usage_flush_ms;
    int64_t events_retention_s; /* audit events older are deleted; 0: kept */
    int64_t usage_minute_retention_s;
    int64_t usage_hour_retention_s;
    int64_t usage_routes;
    int64_t usage_client_ips;
    int64_t block_cache_mb;
    int64_t memtable_mb;
    int64_t drain_ms;
    char *log_level;
    bool verify_requires_credential;
    char *admin_owner;
    char *config_file;
    char *tls_cert;      /* PEM file: the certificate chain of TLS listeners */
    char *tls_key;       /* PEM file: its private key */
    char *tls_client_ca; /* PEM file: CA(s) a client's certificate must chain to */
    bool allow_core_dumps;
    char *metrics_listen; /* ADDR:PORT of GET /metrics, or NULL: none */
    /* Alerts (service/alerts.h) and their webhook (service/webhook.h). */
    int64_t tombstone_retention_s;
    int64_t alert_network_history_s;
    int64_t alert_denials;
    int64_t alert_denial_window_s;
    int64_t alert_volume_factor;
    int64_t alert_volume_min;
    int64_t alert_volume_interval_s;
    int64_t alert_spray;
    int64_t alert_spray_window_s;
    int64_t alert_repeat_s;
    int64_t alert_tracked;
    char *alert_webhook;
    char *alert_webhook_secret; /* wiped when freed */
    char *alert_webhook_ca;     /* PEM file of an https:// webhook's CAs */
    int64_t alert_webhook_timeout_ms;
} config;

/* tokend's options over struct config, for opt_load (with a config_command
 * as the command), opt_usage and opt_free. */
extern const opt_table config_table;

#endif /* TOKEND_CONFIG_H */
