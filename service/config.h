/*
 * config.h — tokend's options: one table feeds the command-line flags, the
 * environment (TOKEND_*), the config file (--config FILE, "name = value"
 * lines) and --help, so they cannot drift apart. Precedence, lowest first:
 * built-in default, config file, environment, flag.
 */
#ifndef TOKEND_CONFIG_H
#define TOKEND_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_MAX_LISTEN 16

typedef enum config_command { CMD_INIT = 1, CMD_SERVE = 2 } config_command;

typedef struct config {
    char *data_dir;
    char *listen[CONFIG_MAX_LISTEN];
    size_t n_listen;
    char *token_prefix;
    int64_t max_lifetime_s;
    int64_t max_message;
    int64_t contexts;
    int64_t usage_flush_ms;
    int64_t block_cache_mb;
    int64_t memtable_mb;
    int64_t drain_ms;
    char *log_level;
    bool verify_requires_credential;
    char *admin_owner;
    char *config_file;
} config;

/* Fills *cfg for `cmd` from defaults, the config file, the environment and
 * argv[first..argc). On a bad option writes one clear line to `err` and
 * returns false. Sets *help when --help was given. */
bool config_load(config *cfg, config_command cmd, int argc, char **argv, int first,
                 bool *help, FILE *err);

/* Prints the options of `cmd` with their defaults, environment names and
 * help text. */
void config_usage(FILE *out, config_command cmd);

/* Frees the strings in *cfg. */
void config_free(config *cfg);

/* Parses "90", "90s", "15m", "12h", "30d" into seconds; false if garbage,
 * negative or absurd (more than 10000 years). */
bool config_parse_duration(const char *s, int64_t *out);

#endif /* TOKEND_CONFIG_H */
