/*
 * options.h — tokend-gateway's options: one table feeds the command-line
 * flags, the environment (TOKEND_GATEWAY_*) and --help, so the three cannot
 * drift apart. Precedence, lowest first: built-in default, environment,
 * flag. The pattern is service/config.c's; the table is the gateway's own
 * (the gateway has no subcommands and no config file).
 */
#ifndef GATEWAY_OPTIONS_H
#define GATEWAY_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define OPTIONS_MAX_SERVICES 16

typedef struct gw_options {
    char *listen;                         /* "HOST:PORT" or "[IPv6]:PORT" */
    char *services[OPTIONS_MAX_SERVICES]; /* tokend URLs */
    size_t n_services;
    char *tls_cert; /* PEM file or NULL */
    char *tls_key;  /* PEM file or NULL */
    int64_t rpc_timeout_ms;
    int64_t max_inflight;
    int64_t max_body;
    int64_t max_header;
    int64_t request_timeout_s;
    int64_t idle_timeout_s;
    int64_t threads;
    char *verify_credential; /* a tokend token or NULL; wiped on free */
    char *log_level;
} gw_options;

/* Fills *opts from defaults, the environment and argv[1..argc). On a bad
 * option writes one line to `err` and returns false (opts must still be
 * freed). Sets *help or *version when --help or --version was given. */
bool options_load(gw_options *opts, int argc, char **argv, bool *help, bool *version,
                  FILE *err);

/* Prints every option with its default, environment name and help. */
void options_usage(FILE *out);

/* Frees the strings in *opts, wiping the credential first. */
void options_free(gw_options *opts);

#endif /* GATEWAY_OPTIONS_H */
