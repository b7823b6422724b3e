/*
 * options.c — the gateway's option table and its parsers. See options.h.
 */
#include "options.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef enum opt_type { OPT_STRING, OPT_LIST, OPT_INT } opt_type;

typedef struct opt_def {
    const char *name; /* flag --name, environment TOKEND_GATEWAY_NAME */
    opt_type type;
    const char *def; /* default as text; NULL: none */
    size_t offset;   /* field in gw_options */
    long long min, max;
    const char *meta; /* placeholder shown by --help */
    const char *help;
} opt_def;

#define FIELD(f) offsetof(gw_options, f)

static const opt_def options[] = {
    {"listen", OPT_STRING, "127.0.0.1:8080", FIELD(listen), 0, 0, "ADDR:PORT",
     "address and port to serve on: IPv4 (0.0.0.0:8080) or [IPv6]:PORT; port 0 picks a "
     "free one (logged). Gateways on one host may share a port (SO_REUSEPORT)"},
    {"service", OPT_LIST, "tcp://127.0.0.1:7450", FIELD(services), 0, 0, "URL",
     "tokend URL (tcp://HOST:PORT, ipc:///PATH); repeat for several (comma-separated "
     "in the environment); calls are spread over the connected ones"},
    {"tls-cert", OPT_STRING, NULL, FIELD(tls_cert), 0, 0, "PEM",
     "certificate chain file: serve HTTPS (TLS 1.2 and 1.3) instead of HTTP; needs "
     "--tls-key"},
    {"tls-key", OPT_STRING, NULL, FIELD(tls_key), 0, 0, "PEM",
     "private key file of --tls-cert"},
    {"rpc-timeout-ms", OPT_INT, "2000", FIELD(rpc_timeout_ms), 1, 600000, "MS",
     "time limit of each call to tokend; no reply in time: 504, tokend unreachable for "
     "that long: 503"},
    {"max-inflight", OPT_INT, "1024", FIELD(max_inflight), 1, 1000000, "N",
     "calls to tokend in flight at once; past it requests get 503 OVERLOADED"},
    {"max-body", OPT_INT, "65536", FIELD(max_body), 1, 16 * 1024 * 1024, "BYTES",
     "largest request body; past it: 413"},
    {"max-header", OPT_INT, "8192", FIELD(max_header), 1024, 1024 * 1024, "BYTES",
     "largest request line plus header fields; past it: 431 and the connection closes"},
    {"request-timeout-s", OPT_INT, "10", FIELD(request_timeout_s), 1, 3600, "S",
     "a request must arrive whole (headers and body) within this, counted from the "
     "connection's start for its first request and from the request line for later "
     "ones; past it the connection is closed"},
    {"idle-timeout-s", OPT_INT, "30", FIELD(idle_timeout_s), 1, 86400, "S",
     "a connection with nothing to read or write for this long is closed"},
    {"threads", OPT_INT, "2", FIELD(threads), 1, 256, "N",
     "HTTP worker threads, each an epoll event loop; no thread ever waits for tokend"},
    {"verify-credential", OPT_STRING, NULL, FIELD(verify_credential), 0, 0, "TOKEN",
     "credential sent with Verify calls, for a tokend run with "
     "--verify-requires-credential (prefer the environment: flags show in ps)"},
    {"log-level", OPT_STRING, "info", FIELD(log_level), 0, 0, "LEVEL",
     "debug, info, warn or error; info logs one line per request"},
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

static void wipe_free(char *s) {
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void list_clear(gw_options *opts) {
    for (size_t i = 0; i < opts->n_services; i++) {
        free(opts->services[i]);
        opts->services[i] = NULL;
    }
    opts->n_services = 0;
}

/* Sets option `o` from `value` (found in `source`, for messages). A list
 * given again replaces the earlier one, except repeated flags (`append`). */
static bool set_option(gw_options *opts, const opt_def *o, const char *value, bool append,
                       const char *source, FILE *err) {
    void *field = (char *)opts + o->offset;
    switch (o->type) {
        case OPT_STRING: {
            char **p = field;
            char *copy = strdup(value);
            if (copy == NULL) {
                fprintf(err, "tokend-gateway: out of memory\n");
                return false;
            }
            wipe_free(*p);
            *p = copy;
            return true;
        }
        case OPT_LIST: {
            if (!append) {
                list_clear(opts);
            }
            char *copy = strdup(value);
            if (copy == NULL) {
                fprintf(err, "tokend-gateway: out of memory\n");
                return false;
            }
            char *save = NULL;
            bool ok = true;
            for (char *tok = strtok_r(copy, ",", &save); ok && tok != NULL;
                 tok = strtok_r(NULL, ",", &save)) {
                while (isspace((unsigned char)*tok)) {
                    tok++;
                }
                size_t len = strlen(tok);
                while (len > 0 && isspace((unsigned char)tok[len - 1])) {
                    tok[--len] = '\0';
                }
                if (len == 0) {
                    continue;
                }
                if (opts->n_services == OPTIONS_MAX_SERVICES) {
                    fprintf(err, "tokend-gateway: %s: at most %d --%s URLs\n", source,
                            OPTIONS_MAX_SERVICES, o->name);
                    ok = false;
                } else if ((opts->services[opts->n_services] = strdup(tok)) == NULL) {
                    fprintf(err, "tokend-gateway: out of memory\n");
                    ok = false;
                } else {
                    opts->n_services++;
                }
            }
            free(copy);
            if (ok && opts->n_services == 0) {
                fprintf(err, "tokend-gateway: %s: --%s needs a URL\n", source, o->name);
                ok = false;
            }
            return ok;
        }
        case OPT_INT: {
            errno = 0;
            char *end = NULL;
            long long v = strtoll(value, &end, 10);
            if (errno != 0 || end == value || *end != '\0' || v < o->min || v > o->max) {
                fprintf(err,
                        "tokend-gateway: %s: --%s must be a whole number from %lld to "
                        "%lld, not \"%s\"\n",
                        source, o->name, o->min, o->max, value);
                return false;
            }
            *(int64_t *)field = v;
            return true;
        }
    }
    return false;
}

static const opt_def *find_option(const char *name, size_t len) {
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (strlen(options[i].name) == len && strncmp(options[i].name, name, len) == 0) {
            return &options[i];
        }
    }
    return NULL;
}

/* TOKEND_GATEWAY_ and the name in upper case, '-' as '_'. */
static void env_name(const opt_def *o, char *env, size_t size) {
    size_t k = (size_t)snprintf(env, size, "TOKEND_GATEWAY_");
    for (const char *p = o->name; *p != '\0' && k < size - 1; p++) {
        env[k++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    }
    env[k] = '\0';
}

bool options_load(gw_options *opts, int argc, char **argv, bool *help, bool *version,
                  FILE *err) {
    memset(opts, 0, sizeof(*opts));
    *help = false;
    *version = false;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (options[i].def != NULL &&
            !set_option(opts, &options[i], options[i].def, false, "default", err)) {
            return false;
        }
    }
    for (size_t i = 0; i < N_OPTIONS; i++) {
        char env[64];
        env_name(&options[i], env, sizeof(env));
        const char *v = getenv(env);
        if (v != NULL && *v != '\0' &&
            !set_option(opts, &options[i], v, false, env, err)) {
            return false;
        }
    }
    bool list_from_flags = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            *help = true;
            return true;
        }
        if (strcmp(arg, "--version") == 0) {
            *version = true;
            return true;
        }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(err, "tokend-gateway: unexpected argument \"%s\" (see --help)\n",
                    arg);
            return false;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const opt_def *o = find_option(name, len);
        if (o == NULL) {
            fprintf(err, "tokend-gateway: unknown option \"--%.*s\" (see --help)\n",
                    (int)len, name);
            return false;
        }
        const char *value;
        if (eq != NULL) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            fprintf(err, "tokend-gateway: --%s needs a value (see --help)\n", o->name);
            return false;
        }
        bool append = o->type == OPT_LIST && list_from_flags;
        if (!set_option(opts, o, value, append, "flag", err)) {
            return false;
        }
        if (o->type == OPT_LIST) {
            list_from_flags = true;
        }
    }
    return true;
}

/* Prints `text` indented by 6, wrapped at 79 columns. */
static void print_wrapped(FILE *out, const char *text) {
    const size_t width = 79 - 6;
    while (*text != '\0') {
        size_t len = strlen(text);
        size_t cut = len;
        if (len > width) {
            cut = width;
            while (cut > 0 && text[cut] != ' ') {
                cut--;
            }
            if (cut == 0) {
                cut = width;
            }
        }
        fprintf(out, "      %.*s\n", (int)cut, text);
        text += cut;
        while (*text == ' ') {
            text++;
        }
    }
}

void options_usage(FILE *out) {
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const opt_def *o = &options[i];
        char env[64];
        env_name(o, env, sizeof(env));
        fprintf(out, "  --%s %s\n", o->name, o->meta);
        print_wrapped(out, o->help);
        fprintf(out, "      default: %s; environment: %s\n",
                o->def != NULL ? o->def : "none", env);
    }
    fprintf(out, "  --help     this text\n  --version  print the version and exit\n");
}

void options_free(gw_options *opts) {
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (options[i].type == OPT_STRING) {
            char **p = (char **)((char *)opts + options[i].offset);
            wipe_free(*p);
            *p = NULL;
        }
    }
    list_clear(opts);
}
