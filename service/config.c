/*
 * config.c — the option table and its parsers. See config.h.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef enum opt_type { OPT_STRING, OPT_LIST, OPT_INT, OPT_DURATION, OPT_BOOL } opt_type;

typedef struct opt_def {
    const char *name; /* flag --name, file key, env TOKEND_NAME */
    opt_type type;
    const char *def; /* default, as text */
    size_t offset;   /* field in struct config */
    long long min, max;
    unsigned commands; /* CMD_* where it applies */
    const char *help;
} opt_def;

#define FIELD(f) offsetof(config, f)

static const opt_def options[] = {
    {"data-dir", OPT_STRING, "./data", FIELD(data_dir), 0, 0, CMD_INIT | CMD_SERVE,
     "directory of the token store (created by init)"},
    {"listen", OPT_LIST, "tcp://127.0.0.1:7450", FIELD(listen), 0, 0, CMD_SERVE,
     "URL to serve on: tcp://HOST:PORT or ipc:///PATH; repeat for several "
     "(comma-separated in the environment or file)"},
    {"token-prefix", OPT_STRING, "tkd_", FIELD(token_prefix), 0, 0, CMD_INIT | CMD_SERVE,
     "prefix of new tokens, 1-32 of [A-Za-z0-9_], e.g. acme_live_ (old tokens "
     "keep verifying when it changes)"},
    {"max-lifetime", OPT_DURATION, "0", FIELD(max_lifetime_s), 0, 0, CMD_SERVE,
     "deployment-wide maximum token lifetime (e.g. 365d); 0 for none"},
    {"max-message", OPT_INT, "65536", FIELD(max_message), 1024, 16 * 1024 * 1024,
     CMD_SERVE, "largest request accepted, in bytes"},
    {"contexts", OPT_INT, "128", FIELD(contexts), 1, 4096, CMD_SERVE,
     "requests served concurrently"},
    {"usage-flush-ms", OPT_INT, "2000", FIELD(usage_flush_ms), 10, 60000, CMD_SERVE,
     "how often last-used times and use counts are written, in ms"},
    {"block-cache-mb", OPT_INT, "32", FIELD(block_cache_mb), 1, 65536, CMD_SERVE,
     "RocksDB block cache size, in MiB"},
    {"memtable-mb", OPT_INT, "64", FIELD(memtable_mb), 4, 65536, CMD_SERVE,
     "RocksDB memtables (writes not yet in table files), all together, in MiB"},
    {"drain-ms", OPT_INT, "5000", FIELD(drain_ms), 0, 600000, CMD_SERVE,
     "on SIGTERM/SIGINT, how long to wait for requests in flight, in ms"},
    {"log-level", OPT_STRING, "info", FIELD(log_level), 0, 0, CMD_INIT | CMD_SERVE,
     "debug, info, warn or error (debug logs every Verify)"},
    {"verify-requires-credential", OPT_BOOL, "false", FIELD(verify_requires_credential),
     0, 0, CMD_SERVE,
     "Verify callers must send a credential with tokend:verify (or tokend:admin)"},
    {"admin-owner", OPT_STRING, "admin", FIELD(admin_owner), 0, 0, CMD_INIT,
     "owner of the admin token that init prints"},
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

bool config_parse_duration(const char *s, int64_t *out) {
    if (s == NULL || !isdigit((unsigned char)s[0])) {
        return false;
    }
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno != 0) {
        return false;
    }
    long long mult = 1;
    if (*end != '\0') {
        switch (*end) {
            case 's':
                mult = 1;
                break;
            case 'm':
                mult = 60;
                break;
            case 'h':
                mult = 3600;
                break;
            case 'd':
                mult = 86400;
                break;
            default:
                return false;
        }
        if (end[1] != '\0') {
            return false;
        }
    }
    const long long max_s = 10000LL * 366 * 86400;
    if (v > max_s / mult) {
        return false;
    }
    *out = v * mult;
    return true;
}

static bool parse_bool(const char *s, bool *out) {
    if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0 || strcmp(s, "yes") == 0) {
        *out = true;
        return true;
    }
    if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0 || strcmp(s, "no") == 0) {
        *out = false;
        return true;
    }
    return false;
}

/* Sets option `o` from text `value` (from `source`, for error messages).
 * A list given again from a later source replaces the earlier one, except
 * repeated flags, which add (`append`). */
static bool set_option(config *cfg, const opt_def *o, const char *value, bool append,
                       const char *source, FILE *err) {
    void *field = (char *)cfg + o->offset;
    switch (o->type) {
        case OPT_STRING: {
            char **p = field;
            char *copy = strdup(value);
            if (copy == NULL) {
                fprintf(err, "tokend: out of memory\n");
                return false;
            }
            free(*p);
            *p = copy;
            return true;
        }
        case OPT_LIST: {
            if (!append) {
                for (size_t i = 0; i < cfg->n_listen; i++) {
                    free(cfg->listen[i]);
                }
                cfg->n_listen = 0;
            }
            char *copy = strdup(value);
            if (copy == NULL) {
                fprintf(err, "tokend: out of memory\n");
                return false;
            }
            char *save = NULL;
            for (char *tok = strtok_r(copy, ",", &save); tok != NULL;
                 tok = strtok_r(NULL, ",", &save)) {
                while (isspace((unsigned char)*tok)) {
                    tok++;
                }
                if (*tok == '\0') {
                    continue;
                }
                if (cfg->n_listen == CONFIG_MAX_LISTEN) {
                    fprintf(err, "tokend: at most %d --%s URLs\n", CONFIG_MAX_LISTEN,
                            o->name);
                    free(copy);
                    return false;
                }
                cfg->listen[cfg->n_listen] = strdup(tok);
                if (cfg->listen[cfg->n_listen] == NULL) {
                    free(copy);
                    return false;
                }
                cfg->n_listen++;
            }
            free(copy);
            if (cfg->n_listen == 0) {
                fprintf(err, "tokend: %s: --%s needs a URL\n", source, o->name);
                return false;
            }
            return true;
        }
        case OPT_INT: {
            errno = 0;
            char *end = NULL;
            long long v = strtoll(value, &end, 10);
            if (errno != 0 || end == value || *end != '\0' || v < o->min || v > o->max) {
                fprintf(err,
                        "tokend: %s: --%s must be a whole number from %lld to %lld, "
                        "not \"%s\"\n",
                        source, o->name, o->min, o->max, value);
                return false;
            }
            *(int64_t *)field = v;
            return true;
        }
        case OPT_DURATION:
            if (!config_parse_duration(value, (int64_t *)field)) {
                fprintf(err,
                        "tokend: %s: --%s must be a duration like 3600, 90m, 12h "
                        "or 30d, not \"%s\"\n",
                        source, o->name, value);
                return false;
            }
            return true;
        case OPT_BOOL:
            if (!parse_bool(value, (bool *)field)) {
                fprintf(err, "tokend: %s: --%s must be true or false, not \"%s\"\n",
                        source, o->name, value);
                return false;
            }
            return true;
    }
    return false;
}

static const opt_def *find_option(const char *name, size_t len, config_command cmd) {
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if ((options[i].commands & cmd) && strlen(options[i].name) == len &&
            strncmp(options[i].name, name, len) == 0) {
            return &options[i];
        }
    }
    return NULL;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) {
        s++;
    }
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) {
        *--e = '\0';
    }
    return s;
}

static bool load_file(config *cfg, config_command cmd, const char *path, FILE *err) {
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(err, "tokend: cannot read config file %s: %s\n", path, strerror(errno));
        return false;
    }
    char line[4096];
    int lineno = 0;
    bool ok = true;
    while (ok && fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        char *s = trim(line);
        if (*s == '\0' || *s == '#') {
            continue;
        }
        char *eq = strchr(s, '=');
        char where[600];
        snprintf(where, sizeof(where), "%s:%d", path, lineno);
        if (eq == NULL) {
            fprintf(err, "tokend: %s: expected \"name = value\"\n", where);
            ok = false;
            break;
        }
        *eq = '\0';
        char *key = trim(s);
        char *value = trim(eq + 1);
        const opt_def *o = find_option(key, strlen(key), cmd);
        if (o == NULL) {
            /* Options of the other command are fine in a shared file. */
            if (find_option(key, strlen(key), CMD_INIT | CMD_SERVE) != NULL) {
                continue;
            }
            fprintf(err, "tokend: %s: unknown option \"%s\"\n", where, key);
            ok = false;
            break;
        }
        ok = set_option(cfg, o, value, false, where, err);
    }
    fclose(f);
    return ok;
}

/* The environment variable of option `o`: TOKEND_ and the name in upper
 * case with '-' as '_' (data-dir: TOKEND_DATA_DIR). */
static void env_name(const opt_def *o, char *env, size_t size) {
    size_t k = (size_t)snprintf(env, size, "TOKEND_");
    for (const char *p = o->name; *p && k < size - 1; p++) {
        env[k++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    }
    env[k] = '\0';
}

static bool load_env(config *cfg, config_command cmd, FILE *err) {
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const opt_def *o = &options[i];
        if (!(o->commands & cmd)) {
            continue;
        }
        char env[64];
        env_name(o, env, sizeof(env));
        const char *v = getenv(env);
        if (v != NULL && *v != '\0' && !set_option(cfg, o, v, false, env, err)) {
            return false;
        }
    }
    return true;
}

bool config_load(config *cfg, config_command cmd, int argc, char **argv, int first,
                 bool *help, FILE *err) {
    memset(cfg, 0, sizeof(*cfg));
    *help = false;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (!set_option(cfg, &options[i], options[i].def, false, "default", err)) {
            return false;
        }
    }
    /* --config first, wherever it stands, so flags override the file. */
    const char *file = getenv("TOKEND_CONFIG");
    for (int i = first; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            file = argv[i + 1];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            file = argv[i] + 9;
        }
    }
    if (file != NULL && *file != '\0') {
        cfg->config_file = strdup(file);
        if (!load_file(cfg, cmd, file, err)) {
            return false;
        }
    }
    if (!load_env(cfg, cmd, err)) {
        return false;
    }
    bool listen_from_flags = false;
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            *help = true;
            return true;
        }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(err, "tokend: unexpected argument \"%s\" (see --help)\n", arg);
            return false;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        if (len == 6 && strncmp(name, "config", 6) == 0) {
            i += eq ? 0 : 1;
            continue;
        }
        const opt_def *o = find_option(name, len, cmd);
        if (o == NULL) {
            fprintf(err, "tokend: unknown option \"--%.*s\" (see --help)\n", (int)len,
                    name);
            return false;
        }
        const char *value;
        if (eq != NULL) {
            value = eq + 1;
        } else if (o->type == OPT_BOOL) {
            value = "true";
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            fprintf(err, "tokend: --%s needs a value (see --help)\n", o->name);
            return false;
        }
        bool append = o->type == OPT_LIST && listen_from_flags;
        if (!set_option(cfg, o, value, append, "flag", err)) {
            return false;
        }
        if (o->type == OPT_LIST) {
            listen_from_flags = true;
        }
    }
    return true;
}

void config_usage(FILE *out, config_command cmd) {
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const opt_def *o = &options[i];
        if (!(o->commands & cmd)) {
            continue;
        }
        char env[64];
        env_name(o, env, sizeof(env));
        fprintf(out, "  --%s %s\n      %s\n      default: %s; environment: %s\n", o->name,
                o->type == OPT_BOOL       ? ""
                : o->type == OPT_DURATION ? "DURATION"
                : o->type == OPT_INT      ? "N"
                                          : "VALUE",
                o->help, o->def, env);
    }
    fprintf(out, "  --config FILE\n      read options from FILE (\"name = value\" lines, "
                 "# comments)\n      environment: TOKEND_CONFIG\n");
}

void config_free(config *cfg) {
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (options[i].type == OPT_STRING) {
            char **p = (char **)((char *)cfg + options[i].offset);
            free(*p);
        }
    }
    for (size_t i = 0; i < cfg->n_listen; i++) {
        free(cfg->listen[i]);
    }
    free(cfg->config_file);
    memset(cfg, 0, sizeof(*cfg));
}
