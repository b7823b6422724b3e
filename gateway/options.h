/*
 * options.h — tokend-gateway's options: struct gw_options and the table
 * (options_table) that proto/opt.c reads into it from the command-line
 * flags and the environment (TOKEND_GATEWAY_*) and prints as --help, so
 * the three cannot drift apart. Precedence, lowest first: built-in
 * default, environment, flag. The gateway has no subcommands and no config
 * file.
 */
#ifndef GATEWAY_OPTIONS_H
#define GATEWAY_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "opt.h"

typedef struct gw_options {
    char *listen;      /* "HOST:PORT" or "[IPv6]:PORT" */
    opt_list services; /* tokend URLs */
    char *tls_cert;    /* PEM file or NULL */
    char *tls_key;     /* PEM file or NULL */
    char *hsts;        /* Strict-Transport-Security value, or "off" */
    int64_t rpc_timeout_ms;
    int64_t ready_timeout_ms;
    int64_t max_inflight;
    int64_t max_body;
    int64_t max_header;
    int64_t request_timeout_s;
    int64_t idle_timeout_s;
    int64_t threads;
    int64_t max_connections;
    int64_t max_connections_per_ip;
    opt_list trusted_proxies; /* CIDRs whose forwarded headers are believed */
    char *verify_credential;  /* a tokend token or NULL; wiped on free */
    char *log_level;
    /* TLS to a tls+tcp:// --service: PEM files (NULL: none) and a name */
    char *service_tls_ca;
    char *service_tls_cert;
    char *service_tls_key;
    char *service_tls_server_name;
    bool allow_core_dumps;
    bool metrics; /* GET /metrics on --listen */
} gw_options;

/* The gateway's options over struct gw_options, for opt_load (command 0;
 * it understands --version), opt_usage and opt_free. */
extern const opt_table options_table;

#endif /* GATEWAY_OPTIONS_H */
