/*
 * tokenctl.c — the operators' command-line tool for tokend: create, verify,
 * list, show and revoke tokens.
 *
 * It talks to tokend only through the public client API (tokend.h), like
 * any other client, so it also serves as a worked example of libtokend.
 * It owns its command line (a flag table per command, global flags before
 * or after the command; read with the shared argv reader and parsers of
 * opt.h), output formatting (a table or text for people, JSON for
 * scripts) and the mapping of outcomes to exit codes (see usage_main).
 *
 * It must not echo a token into an error message: only `create` prints a
 * plain-text token, and only to stdout. Tokens and credentials it reads are
 * wiped before they are freed, and those given on the command line are
 * blanked out of argv once copied (as curl does), shortening the time they
 * show in `ps`; TOKEND_CREDENTIAL, --credential-file and "-" (stdin) keep
 * them out of argv altogether.
 */
#include "tokend.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "error.h"
#include "opt.h"
#include "secret.h"

/* Exit codes; documented in usage_main. */
enum {
    EXIT_DONE = 0,        /* success; verify: the token is valid */
    EXIT_REFUSED = 1,     /* verify: invalid; or the service refused the call */
    EXIT_USAGE = 2,       /* bad or missing arguments */
    EXIT_UNAVAILABLE = 3, /* service unreachable or timed out */
};

/* Longest secret (token or credential) read from a file or stdin. */
#define SECRET_MAX 4096
/* Longest --expires-in: 100 years. */
#define EXPIRES_IN_MAX_SECONDS (36500LL * 86400)
/* Longest --timeout: one hour. */
#define TIMEOUT_MAX_MS (3600 * 1000)

/* ------------------------------------------------------------------------
 * Help texts. */

static const char usage_main[] =
    "Usage: tokenctl [GLOBAL FLAGS] COMMAND [ARGS...]\n"
    "\n"
    "Create, verify, list, show and revoke API tokens of a tokend service.\n"
    "\n"
    "Commands:\n"
    "  create   create a token; prints its plain text (shown once) and its id\n"
    "  verify   check a token and, optionally, its abilities\n"
    "  list     list an owner's tokens\n"
    "  show     show one token by its id, with its last use and use count\n"
    "  revoke   revoke a token by id or plain text, or every token of an owner\n"
    "  events   the audit log: list, follow or verify its hash chain\n"
    "  usage    calls per minute or hour of a token or an owner: outcomes,\n"
    "           routes, clients\n"
    "  help     show the help of a command (same as: tokenctl COMMAND --help)\n"
    "\n"
    "Global flags (accepted before or after the command):\n"
    "  --url URL               service URL, e.g. tcp://127.0.0.1:7450 or\n"
    "                          ipc:///run/tokend.sock (the scheme is required);\n"
    "                          repeat (or separate with commas) for several.\n"
    "                          Default: $TOKEND_URL, else " TOKEND_DEFAULT_URL "\n"
    "  --credential TOKEN      caller credential (a tokend token). Default:\n"
    "                          $TOKEND_CREDENTIAL. Other users can see argv:\n"
    "                          prefer the environment or --credential-file\n"
    "  --credential-file FILE  read the credential from the first line of FILE\n"
    "  --timeout MS            time limit of each call, in milliseconds\n"
    "                          (1..3600000; default 5000)\n"
    "  --tls-ca FILE           for a tls+tcp://HOST:PORT URL (required with one):\n"
    "                          the CA certificate(s), PEM, that the service's\n"
    "                          certificate must be signed by\n"
    "  --tls-cert FILE         client certificate, PEM, for a service that asks\n"
    "                          for one (tokend --tls-client-ca); with --tls-key\n"
    "  --tls-key FILE          private key, PEM, of --tls-cert\n"
    "  --tls-server-name NAME  name the service's certificate must be issued for\n"
    "                          (default: the URL's host; DNS names only)\n"
    "  --json                  print JSON instead of text (times as Unix ms);\n"
    "                          errors too (see Errors below)\n"
    "  -h, --help              show help; after a command, that command's help\n"
    "  --version               print the version and exit\n"
    "\n"
    "Environment:\n"
    "  TOKEND_URL              default service URL(s), comma-separated\n"
    "  TOKEND_CREDENTIAL       default caller credential\n"
    "  TOKEND_TLS_CA, TOKEND_TLS_CERT, TOKEND_TLS_KEY, TOKEND_TLS_SERVER_NAME\n"
    "                          defaults of the --tls-* flags\n"
    "  Flags win over the environment.\n"
    "\n"
    "Exit codes:\n"
    "  0  success (verify: the token is valid)\n"
    "  1  verify: the token is not valid; or the service refused the call\n"
    "     (stderr: \"tokenctl: STATUS: message\", e.g. PERMISSION_DENIED)\n"
    "  2  usage error: unknown command or flag, bad or missing argument\n"
    "  3  service unavailable, or no answer within the timeout (also when TLS\n"
    "     handshakes fail: the message says whose certificate was refused).\n"
    "     When nothing listens at the URL (connection refused) this comes at\n"
    "     once: \"connection refused: is tokend running at URL?\"\n"
    "\n"
    "Errors:\n"
    "  Results go to stdout, errors to stderr: \"tokenctl: STATUS: message\".\n"
    "  With --json anywhere on the line, each error is one JSON object instead\n"
    "  (exit codes unchanged; a usage error is INVALID_ARGUMENT, code 5):\n"
    "    {\"error\":{\"status\":\"UNAVAILABLE\",\"code\":11,\"message\":\"...\"}}\n"
    "  status and code are a status name and number of tokend.h.\n";

static const char usage_create[] =
    "Usage: tokenctl create --owner OWNER --name NAME --ability ABILITY...\n"
    "                       [--expires-in DURATION] [--meta KEY=VALUE...]\n"
    "\n"
    "Creates a token and prints its plain text on the first line of stdout and\n"
    "its id on the second. The plain text is shown this once: store it now.\n"
    "\n"
    "  --owner OWNER          who the token acts for, e.g. partner:acme (may be\n"
    "                         left out by a non-admin caller: its own owner)\n"
    "  --name NAME            what the token is for (required)\n"
    "  --ability ABILITY      an ability, e.g. orders:read, orders:*, *; repeat\n"
    "                         for several (at least one)\n"
    "  --expires-in DURATION  lifetime: seconds, or a number with a suffix\n"
    "                         s, m, h or d (45s, 30m, 12h, 90d); at most 36500d.\n"
    "                         Default: no expiry of its own\n"
    "  --meta KEY=VALUE       metadata kept with the token; repeat for several\n"
    "\n"
    "With --json, prints one object:\n"
    "  {\"token\":\"...\",\"id\":\"...\",\"owner\":\"...\",\"name\":\"...\",\n"
    "   \"abilities\":[\"...\"],\"created_at\":MS,\"expires_at\":MS|null,\n"
    "   \"last_used_at\":null,\"use_count\":0,\"metadata\":{\"KEY\":\"VALUE\"}}\n"
    "Times are Unix milliseconds; null means never.\n"
    "\n"
    "Needs a credential allowed to create tokens for OWNER.\n"
    "Exit codes: 0 created, 1 refused, 2 usage error, 3 unavailable.\n";

static const char usage_verify[] =
    "Usage: tokenctl verify TOKEN [--ability ABILITY...] [--any]\n"
    "                       [--method M] [--path P] [--client-ip IP] [--user-agent UA]\n"
    "\n"
    "Checks TOKEN (\"-\": read it from the first line of stdin, which keeps it\n"
    "out of argv) and, if given, that it has the abilities.\n"
    "\n"
    "  --ability ABILITY  an ability the token must have; repeat for several\n"
    "  --any              one of the abilities is enough (default: all)\n"
    "\n"
    "The request the token came with, which tokend counts the use under (each\n"
    "optional; a value past its bound is refused with the field named):\n"
    "  --method M         its HTTP method, e.g. GET (at most 16 bytes)\n"
    "  --path P           its path and query, e.g. /orders/42 (at most 2048 bytes)\n"
    "  --client-ip IP     the client's IPv4 or IPv6 address\n"
    "  --user-agent UA    the client's User-Agent (at most 256 bytes)\n"
    "\n"
    "Prints the verdict on the first line: OK, MALFORMED, NOT_FOUND, EXPIRED\n"
    "or INSUFFICIENT_ABILITY; then, when the token is known, its id, owner,\n"
    "name, abilities, creation and expiry times, last use and use count.\n"
    "\n"
    "With --json, prints one object:\n"
    "  {\"valid\":true|false,\"reason\":\"OK\"|\"EXPIRED\"|...,\n"
    "   plus, when the token is known, \"id\",\"owner\",\"name\",\"abilities\",\n"
    "   \"created_at\",\"expires_at\",\"last_used_at\",\"use_count\",\"metadata\"}\n"
    "Times are Unix milliseconds; null means never.\n"
    "\n"
    "Exit codes: 0 valid, 1 not valid (or refused), 2 usage error,\n"
    "3 unavailable.\n";

static const char usage_list[] =
    "Usage: tokenctl list [--owner OWNER] [--limit N] [--cursor CURSOR] [--all]\n"
    "\n"
    "Lists OWNER's tokens (default: the credential's own owner), oldest first,\n"
    "as a table: id, name, abilities, created, expires, last used, uses\n"
    "(times in UTC). If more pages follow, stderr says which --cursor to pass.\n"
    "\n"
    "  --owner OWNER    whose tokens to list\n"
    "  --limit N        tokens per page, 1..1000 (default: the service's, 100)\n"
    "  --cursor CURSOR  continue after a previous page\n"
    "  --all            follow the pages to the end\n"
    "\n"
    "With --json, prints one object:\n"
    "  {\"tokens\":[{\"id\":...,\"owner\":...,\"name\":...,\"abilities\":[...],\n"
    "    \"created_at\":MS,\"expires_at\":MS|null,\"last_used_at\":MS|null,\n"
    "    \"use_count\":N,\"metadata\":{...}}, ...],\n"
    "   \"next_cursor\":\"...\"|null}\n"
    "\n"
    "Needs a credential allowed to read OWNER's tokens.\n"
    "Exit codes: 0 listed, 1 refused, 2 usage error, 3 unavailable.\n";

static const char usage_show[] =
    "Usage: tokenctl show ID\n"
    "\n"
    "Shows the token with public id ID: its owner, name, abilities, creation\n"
    "and expiry times, last use and use count (uses the service holds in\n"
    "memory included, so a use shows at once) and metadata, one per line.\n"
    "\n"
    "With --json, prints one object:\n"
    "  {\"id\":...,\"owner\":...,\"name\":...,\"abilities\":[...],\n"
    "   \"created_at\":MS,\"expires_at\":MS|null,\"last_used_at\":MS|null,\n"
    "   \"use_count\":N,\"metadata\":{...}}\n"
    "\n"
    "Needs a credential allowed to read the token's owner (tokend:admin, or\n"
    "tokens:read of the same owner). Another owner's id is NOT_FOUND, as is\n"
    "an id no token has.\n"
    "Exit codes: 0 shown, 1 refused (NOT_FOUND: no such id), 2 usage error,\n"
    "3 unavailable.\n";

static const char usage_revoke[] =
    "Usage: tokenctl revoke ID\n"
    "       tokenctl revoke --token TOKEN\n"
    "       tokenctl revoke --owner OWNER --all\n"
    "\n"
    "Revokes the token with public id ID; or the token whose plain text is\n"
    "TOKEN (\"-\": read it from the first line of stdin); or every token of\n"
    "OWNER. Revocation is final. Prints how many tokens were revoked:\n"
    "\"revoked N\", or with --json {\"revoked\":N}.\n"
    "\n"
    "  --token TOKEN  revoke by plain text (any token may revoke itself)\n"
    "  --owner OWNER  with --all: revoke all of OWNER's tokens\n"
    "  --all          confirms that every token of OWNER is meant\n"
    "\n"
    "A revoke that would leave no valid tokend:admin token is refused\n"
    "(FAILED_PRECONDITION) and revokes nothing: make another admin token\n"
    "first. With none left, the operator recovers on tokend's host with\n"
    "tokend admin-token --data-dir DIR.\n"
    "\n"
    "Exit codes: 0 done, 1 refused (NOT_FOUND: no such id), 2 usage error,\n"
    "3 unavailable.\n";

static const char usage_events[] =
    "Usage: tokenctl events [--owner O] [--token ID] [--kind K] [--since 7d]\n"
    "                       [--follow] [--json]\n"
    "       tokenctl events --verify\n"
    "\n"
    "Lists the audit log, oldest first: creates, revokes, refused management\n"
    "calls, admin recoveries and alerts, with time, caller and client address.\n"
    "\n"
    "  --owner OWNER  only events about OWNER's tokens (a non-admin sees its\n"
    "                 own owner's only)\n"
    "  --token ID     only events about the token with public id ID\n"
    "  --kind KIND    only events of KIND: TOKEN_CREATED, TOKEN_REVOKED,\n"
    "                 CALL_REFUSED, ADMIN_RECOVERY or an ALERT_* kind\n"
    "  --since DUR    only events of the last DUR (e.g. 7d, 12h, 30m)\n"
    "  --follow       after the log so far, poll every second for new events\n"
    "                 until interrupted (with --json: a feed for a SIEM); while\n"
    "                 tokend cannot be reached it says so once and keeps polling\n"
    "  --verify       read the whole log and recompute its hash chain; prints\n"
    "                 \"chain verified: N events, seq A..B\", or names the first\n"
    "                 broken link (\"seq N: hash does not match\", \"seq N:\n"
    "                 prev_hash is not seq N-1's hash\", \"gap after seq N\")\n"
    "                 and exits 1. A log cut by retention is verified from its\n"
    "                 oldest kept event, whose prev_hash is taken as given.\n"
    "\n"
    "A table by default; with --json one JSON object per line:\n"
    "  {\"seq\":N,\"time\":MS,\"kind\":K,\"actor_id\":...,\"actor_owner\":...,\n"
    "   \"owner\":...,\"token_id\":...,\"method\":...,\"path\":...,\n"
    "   \"client_ip\":...,\"user_agent\":...,\"detail\":{...},\"hash\":HEX}\n"
    "\n"
    "Needs tokend:admin (every owner) or tokens:read (its own owner).\n"
    "Exit codes: 0 done (verify: the chain holds), 1 refused or a broken chain,\n"
    "2 usage error, 3 unavailable.\n";
static const char usage_usage[] =
    "Usage: tokenctl usage ID [--since DURATION] [--step minute|hour]\n"
    "       tokenctl usage --owner OWNER [--since DURATION] [--step minute|hour]\n"
    "\n"
    "Shows the Verify calls of the token with public id ID, or the sum over\n"
    "OWNER's tokens, as a table: one row per minute (or hour) with calls,\n"
    "its start (UTC), OK, denied, and the busiest route and client address,\n"
    "then the totals. On a terminal a sparkline of calls per step comes first.\n"
    "Calls the service holds in memory are included.\n"
    "\n"
    "  --owner OWNER      the sum over OWNER's tokens (revoked ones included)\n"
    "  --since DURATION   how far back: 90m, 24h, 7d (default 24h; at most\n"
    "                     2880 steps: 48h of minutes, 120d of hours)\n"
    "  --step STEP        minute (default; kept 48h by default) or hour (90d)\n"
    "\n"
    "With --json, prints one object, as the gateway's GET /v1/tokens/{id}/usage:\n"
    "  {\"step\":\"minute\",\"buckets\":[{\"start\":MS,\"outcomes\":{\"OK\":N,...},\n"
    "    \"routes\":{\"GET "
    "/orders/{id}\":N,...},\"client_ips\":{\"203.0.113.7\":N,...}}]}\n"
    "\n"
    "Needs a credential allowed to read the owner's tokens (tokend:admin, or\n"
    "tokens:read of the same owner). Another owner's id is NOT_FOUND. A revoked\n"
    "token's id still shows its calls for tokend's --tombstone-retention (30d).\n"
    "Exit codes: 0 shown, 1 refused, 2 usage error, 3 unavailable.\n";

/* ------------------------------------------------------------------------
 * Small utilities. */

/* A growable array of string pointers (owned or not, as its user says). */
typedef struct strlist {
    char **items;
    size_t n;
    size_t cap;
} strlist;

static void oom(void) {
    fputs("tokenctl: out of memory\n", stderr);
    exit(EXIT_REFUSED);
}

static void strlist_push(strlist *list, char *s) {
    if (list->n == list->cap) {
        size_t cap = list->cap > 0 ? list->cap * 2 : 8;
        char **items = realloc(list->items, cap * sizeof *items);
        if (items == NULL) {
            oom();
        }
        list->items = items;
        list->cap = cap;
    }
    list->items[list->n++] = s;
}

static char *xstrdup(const char *s) {
    char *copy = strdup(s);
    if (copy == NULL) {
        oom();
    }
    return copy;
}

/* Copies a secret given in argv and blanks it there, so that `ps` shows
 * it no longer. Returns the copy; free it with secret_free(). */
static char *secret_from_argv(char *arg) {
    char *copy = xstrdup(arg);
    memset(arg, '*', strlen(arg));
    return copy;
}

/* Reads the first line of `in` as a secret (token or credential): at most
 * SECRET_MAX bytes, surrounding whitespace dropped. Returns TOKEND_OK with
 * *out a copy to free with secret_free(), or TOKEND_INVALID_ARGUMENT with
 * why in *err. */
static int secret_read(FILE *in, char **out, tokend_error *err) {
    int rv = TOKEND_OK;
    *out = NULL;
    char *buf = calloc(1, SECRET_MAX + 2);
    if (buf == NULL) {
        oom();
    }
    size_t len = 0;
    int c;
    while ((c = getc(in)) != EOF && c != '\n') {
        if (len == SECRET_MAX + 1) {
            continue; /* too long; keep reading the line to report it */
        }
        buf[len++] = (char)c;
    }
    if (ferror(in)) {
        rv = error_set(err, TOKEND_INVALID_ARGUMENT, "cannot read it");
    } else if (len > SECRET_MAX) {
        rv = error_set(err, TOKEND_INVALID_ARGUMENT, "it is too long");
    } else {
        size_t start = 0;
        while (len > 0 &&
               (buf[len - 1] == '\r' || buf[len - 1] == ' ' || buf[len - 1] == '\t')) {
            buf[--len] = '\0';
        }
        while (start < len && (buf[start] == ' ' || buf[start] == '\t')) {
            start++;
        }
        if (start == len) {
            rv = error_set(err, TOKEND_INVALID_ARGUMENT, "it is empty");
        } else if ((*out = strndup(buf + start, len - start)) == NULL) {
            oom();
        }
    }
    secret_wipe(buf, SECRET_MAX + 2);
    free(buf);
    return rv;
}

/* Number of code points in a UTF-8 string (for table column widths). */
static size_t display_width(const char *s) {
    size_t width = 0;
    for (; *s != '\0'; s++) {
        if (((unsigned char)*s & 0xC0) != 0x80) {
            width++;
        }
    }
    return width;
}

/* Writes `s` for a terminal: control characters become '?'. */
static void put_text(FILE *out, const char *s) {
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        putc(c < 0x20 || c == 0x7F ? '?' : c, out);
    }
}

static void put_padded(FILE *out, const char *s, size_t width) {
    put_text(out, s);
    for (size_t w = display_width(s); w < width; w++) {
        putc(' ', out);
    }
}

/* Formats Unix ms as ISO-8601 UTC ("2024-05-01T12:00:00Z"), or `zero_text`
 * for 0. The result lives in buf. */
static const char *format_time(int64_t unix_ms, const char *zero_text, char *buf,
                               size_t size) {
    if (unix_ms == 0) {
        return zero_text;
    }
    time_t secs = (time_t)(unix_ms / 1000);
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL ||
        strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        snprintf(buf, size, "%" PRId64 "ms", unix_ms);
    }
    return buf;
}

/* ------------------------------------------------------------------------
 * JSON output. Strings from the service are UTF-8; anything that is not
 * becomes U+FFFD, so the output is always valid JSON. */

/* Length of the well-formed UTF-8 sequence at s, or 0. */
static size_t utf8_len(const unsigned char *s) {
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c < 0x80) {
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if (s[1] < lo || s[1] > hi) {
        return 0; /* also stops at the NUL terminator */
    }
    for (size_t i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF) {
            return 0;
        }
    }
    return n;
}

static void json_string(FILE *out, const char *str) {
    const unsigned char *s = (const unsigned char *)(str != NULL ? str : "");
    putc('"', out);
    while (*s != '\0') {
        unsigned char c = *s;
        if (c == '"' || c == '\\') {
            putc('\\', out);
            putc(c, out);
            s++;
        } else if (c < 0x20 || c == 0x7F) {
            switch (c) {
                case '\n':
                    fputs("\\n", out);
                    break;
                case '\r':
                    fputs("\\r", out);
                    break;
                case '\t':
                    fputs("\\t", out);
                    break;
                case '\b':
                    fputs("\\b", out);
                    break;
                case '\f':
                    fputs("\\f", out);
                    break;
                default:
                    fprintf(out, "\\u%04x", c);
                    break;
            }
            s++;
        } else {
            size_t n = utf8_len(s);
            if (n == 0) {
                fputs("\\ufffd", out);
                s++;
            } else {
                fwrite(s, 1, n, out);
                s += n;
            }
        }
    }
    putc('"', out);
}

/* A time in Unix ms, or null for 0 ("never"). */
static void json_time(FILE *out, int64_t unix_ms) {
    if (unix_ms == 0) {
        fputs("null", out);
    } else {
        fprintf(out, "%" PRId64, unix_ms);
    }
}

/* The fields of a token, without braces, after `sep` (e.g. ","). */
static void json_info_fields(FILE *out, const tokend_token_info *info, const char *sep) {
    fprintf(out, "%s\"id\":", sep);
    json_string(out, info->id);
    fputs(",\"owner\":", out);
    json_string(out, info->owner);
    fputs(",\"name\":", out);
    json_string(out, info->name);
    fputs(",\"abilities\":[", out);
    for (size_t i = 0; i < info->n_abilities; i++) {
        if (i > 0) {
            putc(',', out);
        }
        json_string(out, info->abilities[i]);
    }
    fputs("],\"created_at\":", out);
    json_time(out, info->created_unix_ms);
    fputs(",\"expires_at\":", out);
    json_time(out, info->expires_unix_ms);
    fputs(",\"last_used_at\":", out);
    json_time(out, info->last_used_unix_ms);
    fprintf(out, ",\"use_count\":%" PRIu64 ",\"metadata\":{", info->use_count);
    for (size_t i = 0; i < info->n_metadata; i++) {
        if (i > 0) {
            putc(',', out);
        }
        json_string(out, info->metadata[i].key);
        putc(':', out);
        json_string(out, info->metadata[i].value);
    }
    fputs("}", out);
}

/* ------------------------------------------------------------------------
 * Command line. */

typedef enum flag_id {
    FLAG_URL,
    FLAG_CREDENTIAL,
    FLAG_CREDENTIAL_FILE,
    FLAG_TIMEOUT,
    FLAG_TLS_CA,
    FLAG_TLS_CERT,
    FLAG_TLS_KEY,
    FLAG_TLS_SERVER_NAME,
    FLAG_JSON,
    FLAG_HELP,
    FLAG_VERSION,
    FLAG_OWNER,
    FLAG_NAME,
    FLAG_ABILITY,
    FLAG_EXPIRES_IN,
    FLAG_META,
    FLAG_ANY,
    FLAG_LIMIT,
    FLAG_CURSOR,
    FLAG_ALL,
    FLAG_TOKEN,
    FLAG_METHOD,
    FLAG_PATH,
    FLAG_CLIENT_IP,
    FLAG_USER_AGENT,
    FLAG_TOKEN_ID,
    FLAG_KIND,
    FLAG_SINCE,
    FLAG_FOLLOW,
    FLAG_VERIFY,
    FLAG_STEP,
    FLAG_COUNT
} flag_id;

typedef struct flag_spec {
    const char *name;
    flag_id id;
    bool takes_value;
    bool repeats; /* may be given more than once */
} flag_spec;

static const flag_spec global_flags[] = {
    {"--url", FLAG_URL, true, true},
    {"--credential", FLAG_CREDENTIAL, true, false},
    {"--credential-file", FLAG_CREDENTIAL_FILE, true, false},
    {"--timeout", FLAG_TIMEOUT, true, false},
    {"--tls-ca", FLAG_TLS_CA, true, false},
    {"--tls-cert", FLAG_TLS_CERT, true, false},
    {"--tls-key", FLAG_TLS_KEY, true, false},
    {"--tls-server-name", FLAG_TLS_SERVER_NAME, true, false},
    {"--json", FLAG_JSON, false, true},
    {"--help", FLAG_HELP, false, true},
    {"-h", FLAG_HELP, false, true},
    {"--version", FLAG_VERSION, false, true},
    {NULL, FLAG_COUNT, false, false},
};

static const flag_spec create_flags[] = {
    {"--owner", FLAG_OWNER, true, false},
    {"--name", FLAG_NAME, true, false},
    {"--ability", FLAG_ABILITY, true, true},
    {"--expires-in", FLAG_EXPIRES_IN, true, false},
    {"--meta", FLAG_META, true, true},
    {NULL, FLAG_COUNT, false, false},
};

static const flag_spec verify_flags[] = {
    {"--ability", FLAG_ABILITY, true, true},
    {"--any", FLAG_ANY, false, true},
    {"--method", FLAG_METHOD, true, false},
    {"--path", FLAG_PATH, true, false},
    {"--client-ip", FLAG_CLIENT_IP, true, false},
    {"--user-agent", FLAG_USER_AGENT, true, false},
    {NULL, FLAG_COUNT, false, false},
};

static const flag_spec list_flags[] = {
    {"--owner", FLAG_OWNER, true, false},   {"--limit", FLAG_LIMIT, true, false},
    {"--cursor", FLAG_CURSOR, true, false}, {"--all", FLAG_ALL, false, true},
    {NULL, FLAG_COUNT, false, false},
};

static const flag_spec events_flags[] = {
    {"--owner", FLAG_OWNER, true, false},   {"--token", FLAG_TOKEN_ID, true, false},
    {"--kind", FLAG_KIND, true, false},     {"--since", FLAG_SINCE, true, false},
    {"--follow", FLAG_FOLLOW, false, true}, {"--verify", FLAG_VERIFY, false, true},
    {NULL, FLAG_COUNT, false, false},
};

static const flag_spec show_flags[] = {
    {NULL, FLAG_COUNT, false, false},
};

static const flag_spec usage_flags[] = {
    {"--owner", FLAG_OWNER, true, false},
    {"--since", FLAG_SINCE, true, false},
    {"--step", FLAG_STEP, true, false},
    {NULL, FLAG_COUNT, false, false},
};

static const flag_spec revoke_flags[] = {
    {"--owner", FLAG_OWNER, true, false},
    {"--all", FLAG_ALL, false, true},
    {"--token", FLAG_TOKEN, true, false},
    {NULL, FLAG_COUNT, false, false},
};

struct cli;

typedef struct command {
    const char *name;
    const flag_spec *flags;
    const char *usage;
    int (*run)(struct cli *cli);
} command;

/* Everything parsed from argv and the environment. */
typedef struct cli {
    const command *cmd;
    /* global */
    strlist urls;     /* owned copies, one URL each */
    char *credential; /* owned secret copy, or NULL */
    int timeout_ms;   /* 0: the library's default */
    bool json;
    bool help;
    bool version;
    /* command */
    const char *values[FLAG_COUNT]; /* single-valued flags; NULL if absent */
    char *token_flag;               /* --token: owned secret copy */
    bool seen[FLAG_COUNT];
    strlist abilities;  /* not owned (argv) */
    strlist metas;      /* not owned (argv) */
    strlist positional; /* not owned (argv) */
    tokend_client *client;
} cli;

/* With --json anywhere on the command line, errors go to stderr as one
 * JSON object, {"error":{"status":NAME,"code":N,"message":TEXT}}, instead
 * of "tokenctl: NAME: TEXT" (see usage_main). Set by main before anything
 * can fail. */
static bool json_errors;

/* Writes one error as JSON on stderr (json_errors). */
static void json_error(int code, const char *message) {
    fputs("{\"error\":{\"status\":", stderr);
    json_string(stderr, tokend_status_name(code));
    fprintf(stderr, ",\"code\":%d,\"message\":", code);
    json_string(stderr, message);
    fputs("}}\n", stderr);
}

/* Reports an error that is not a usage error nor a call's: "tokenctl:
 * NAME: TEXT", or the JSON object. */
static void report_error(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void report_error(int code, const char *fmt, ...) {
    char message[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (json_errors) {
        json_error(code, message);
    } else {
        fprintf(stderr, "tokenctl: %s: %s\n", tokend_status_name(code), message);
    }
}

/* Prints a one-line usage error and the hint (with --json, the error
 * object, status INVALID_ARGUMENT); returns EXIT_USAGE. */
static int usage_error(const cli *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const cli *c, const char *fmt, ...) {
    va_list ap;
    if (json_errors) {
        char message[600];
        va_start(ap, fmt);
        vsnprintf(message, sizeof message, fmt, ap);
        va_end(ap);
        json_error(TOKEND_INVALID_ARGUMENT, message);
        return EXIT_USAGE;
    }
    fputs("tokenctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (c != NULL && c->cmd != NULL) {
        fprintf(stderr, "\nTry 'tokenctl %s --help'.\n", c->cmd->name);
    } else {
        fputs("\nTry 'tokenctl --help'.\n", stderr);
    }
    return EXIT_USAGE;
}

/* Reports a failed call on stderr and returns its exit code. */
static int call_failed(const tokend_error *err) {
    report_error(err->code, "%s", err->message);
    return err->code == TOKEND_UNAVAILABLE || err->code == TOKEND_DEADLINE_EXCEEDED
               ? EXIT_UNAVAILABLE
               : EXIT_REFUSED;
}

static const flag_spec *find_flag(const flag_spec *table, const char *name, size_t len) {
    for (; table != NULL && table->name != NULL; table++) {
        if (strlen(table->name) == len && strncmp(table->name, name, len) == 0) {
            return table;
        }
    }
    return NULL;
}

static int push_url(void *arg, const char *url, size_t len) {
    char *copy = strndup(url, len);
    if (copy == NULL) {
        oom();
    }
    strlist_push(arg, copy);
    return TOKEND_OK;
}

/* Splits a comma-separated list of URLs into c->urls. */
static void add_urls(cli *c, const char *list) {
    opt_split_list(list, push_url, &c->urls);
}

/* Reads --expires-in: a duration (opt_parse_duration) of more than 0 and
 * at most EXPIRES_IN_MAX_SECONDS. Returns -1 with *seconds set, or the
 * exit code of a usage error. */
static int parse_expires_in(const cli *c, const char *text, int64_t *seconds) {
    tokend_error err;
    int rv = opt_parse_duration(text, seconds, &err);
    const char *why = err.message;
    if (rv == TOKEND_RESOURCE_EXHAUSTED ||
        (rv == TOKEND_OK && *seconds > EXPIRES_IN_MAX_SECONDS)) {
        why = "too long (at most 36500d)";
    } else if (rv == TOKEND_OK && *seconds == 0) {
        why = "must be more than 0 (leave --expires-in out for no expiry)";
    } else if (rv == TOKEND_OK) {
        return -1;
    }
    return usage_error(c, "--expires-in '%s': %s", text, why);
}

/* Records one flag. Returns -1 to go on, or an exit code. */
static int apply_flag(cli *c, const flag_spec *spec, char *value) {
    if (c->seen[spec->id] && !spec->repeats) {
        return usage_error(c, "%s given more than once", spec->name);
    }
    c->seen[spec->id] = true;
    switch (spec->id) {
        case FLAG_URL:
            add_urls(c, value);
            break;
        case FLAG_CREDENTIAL:
            c->credential = secret_from_argv(value);
            break;
        case FLAG_TOKEN:
            c->token_flag =
                strcmp(value, "-") == 0 ? xstrdup("-") : secret_from_argv(value);
            break;
        case FLAG_JSON:
            c->json = true;
            break;
        case FLAG_HELP:
            c->help = true;
            break;
        case FLAG_VERSION:
            c->version = true;
            break;
        case FLAG_ANY:
        case FLAG_ALL:
        case FLAG_FOLLOW:
        case FLAG_VERIFY:
            break;
        case FLAG_ABILITY:
            strlist_push(&c->abilities, value);
            break;
        case FLAG_META:
            strlist_push(&c->metas, value);
            break;
        default:
            c->values[spec->id] = value;
            break;
    }
    return -1;
}

static int run_create(cli *c);
static int run_verify(cli *c);
static int run_list(cli *c);
static int run_revoke(cli *c);
static int run_show(cli *c);
static int run_usage(cli *c);
static int run_help(cli *c);
static int run_events(cli *c);

static const command commands[] = {
    {"create", create_flags, usage_create, run_create},
    {"verify", verify_flags, usage_verify, run_verify},
    {"list", list_flags, usage_list, run_list},
    {"show", show_flags, usage_show, run_show},
    {"revoke", revoke_flags, usage_revoke, run_revoke},
    {"events", events_flags, usage_events, run_events},
    {"usage", usage_flags, usage_usage, run_usage},
    {"help", NULL, usage_main, run_help},
};

static const command *find_command(const char *name) {
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(commands[i].name, name) == 0) {
            return &commands[i];
        }
    }
    return NULL;
}

/* A word that is not a flag: the command, then its arguments. Returns -1
 * to go on, or an exit code. */
static int take_word(cli *c, char *word) {
    if (c->cmd != NULL) {
        strlist_push(&c->positional, word);
        return -1;
    }
    if ((c->cmd = find_command(word)) != NULL) {
        return -1;
    }
    /* Echo it only if it cannot be a pasted token. */
    if (strlen(word) <= 16 &&
        strspn(word, "abcdefghijklmnopqrstuvwxyz-") == strlen(word)) {
        return usage_error(c, "unknown command '%s'", word);
    }
    return usage_error(c, "unknown command");
}

/* A flag that neither the global table nor the command's has. */
static int unknown_flag(const cli *c, const opt_word *w) {
    /* Echo the name only (what follows '=' might be a secret), and only if
     * it cannot be a pasted token. */
    if (w->name_len > 32 ||
        strspn(w->text, "-abcdefghijklmnopqrstuvwxyz") < w->name_len) {
        return usage_error(c, "unknown flag");
    }
    if (c->cmd != NULL) {
        return usage_error(c, "unknown flag '%.*s' for %s", (int)w->name_len, w->text,
                           c->cmd->name);
    }
    return usage_error(c, "unknown flag '%.*s'", (int)w->name_len, w->text);
}

/* A flag word, "--flag=value" or "--flag value": the global table's or the
 * command's. Returns -1 to go on, or an exit code. */
static int take_flag(cli *c, opt_cursor *cur, const opt_word *w) {
    const flag_spec *spec = find_flag(global_flags, w->text, w->name_len);
    if (spec == NULL && c->cmd != NULL) {
        spec = find_flag(c->cmd->flags, w->text, w->name_len);
    }
    if (spec == NULL) {
        return unknown_flag(c, w);
    }
    char *value = NULL;
    if (spec->takes_value && (value = opt_take_value(cur, w)) == NULL) {
        return usage_error(c, "%s needs a value", spec->name);
    }
    if (!spec->takes_value && w->value != NULL) {
        return usage_error(c, "%s takes no value", spec->name);
    }
    return apply_flag(c, spec, value);
}

/* Parses argv into *c. Returns -1 to go on, or an exit code. */
static int parse_args(cli *c, int argc, char **argv) {
    opt_cursor cur = {.argc = argc, .argv = argv, .next = 1};
    bool only_positional = false;
    opt_word w;
    while (opt_next_word(&cur, &w)) {
        int rv = -1;
        if (only_positional || w.name_len == 0) {
            rv = take_word(c, w.text);
        } else if (strcmp(w.text, "--") == 0) {
            only_positional = true;
        } else {
            rv = take_flag(c, &cur, &w);
        }
        if (rv >= 0) {
            return rv;
        }
    }
    return -1;
}

/* Resolves global settings (flags over environment) and connects. Returns
 * -1 to go on, or an exit code. */
static int setup(cli *c) {
    if (c->values[FLAG_TIMEOUT] != NULL) {
        long long ms;
        if (opt_parse_int(c->values[FLAG_TIMEOUT], 1, TIMEOUT_MAX_MS, &ms, NULL) !=
            TOKEND_OK) {
            return usage_error(c, "--timeout: expected milliseconds, 1..%d",
                               TIMEOUT_MAX_MS);
        }
        c->timeout_ms = (int)ms;
    }
    if (c->credential != NULL && c->values[FLAG_CREDENTIAL_FILE] != NULL) {
        return usage_error(c, "give --credential or --credential-file, not both");
    }
    if (c->values[FLAG_CREDENTIAL_FILE] != NULL) {
        const char *path = c->values[FLAG_CREDENTIAL_FILE];
        FILE *f = fopen(path, "r");
        if (f == NULL) {
            return usage_error(c, "--credential-file %s: %s", path, strerror(errno));
        }
        tokend_error why;
        int rv = secret_read(f, &c->credential, &why);
        fclose(f);
        if (rv != TOKEND_OK) {
            return usage_error(c, "--credential-file %s: %s", path, why.message);
        }
    }
    if (c->credential == NULL) {
        const char *env = getenv("TOKEND_CREDENTIAL");
        if (env != NULL && env[0] != '\0') {
            c->credential = xstrdup(env);
        }
    }
    bool urls_from_env = c->urls.n == 0;
    if (c->urls.n == 0) {
        const char *env = getenv("TOKEND_URL");
        if (env != NULL) {
            add_urls(c, env);
        }
    }
    for (size_t i = 0; i < c->urls.n; i++) {
        tokend_error why;
        if (opt_check_url(c->urls.items[i], &why) != TOKEND_OK) {
            return usage_error(c, "%s %s", urls_from_env ? "TOKEND_URL" : "--url",
                               why.message);
        }
    }
    static const struct {
        flag_id flag;
        const char *env;
    } tls_env[] = {{FLAG_TLS_CA, "TOKEND_TLS_CA"},
                   {FLAG_TLS_CERT, "TOKEND_TLS_CERT"},
                   {FLAG_TLS_KEY, "TOKEND_TLS_KEY"},
                   {FLAG_TLS_SERVER_NAME, "TOKEND_TLS_SERVER_NAME"}};
    for (size_t i = 0; i < sizeof tls_env / sizeof tls_env[0]; i++) {
        const char *env = getenv(tls_env[i].env);
        if (c->values[tls_env[i].flag] == NULL && env != NULL && env[0] != '\0') {
            c->values[tls_env[i].flag] = env;
        }
    }

    tokend_options opts = {
        .urls = (const char *const *)c->urls.items,
        .n_urls = c->urls.n,
        .timeout_ms = c->timeout_ms,
        .credential = c->credential,
        .tls_ca_file = c->values[FLAG_TLS_CA],
        .tls_cert_file = c->values[FLAG_TLS_CERT],
        .tls_key_file = c->values[FLAG_TLS_KEY],
        .tls_server_name = c->values[FLAG_TLS_SERVER_NAME],
    };
    tokend_error err;
    int rv = tokend_connect(&opts, &c->client, &err);
    if (rv == TOKEND_INVALID_ARGUMENT) {
        return usage_error(c, "%s", err.message);
    }
    if (rv != TOKEND_OK) {
        return call_failed(&err);
    }
    return -1;
}

/* Gets a token argument: "-" reads stdin, anything else is blanked out of
 * argv. Returns a copy to free with secret_free(), or NULL after printing
 * a usage error. */
static char *token_argument(const cli *c, char *arg, bool from_argv, const char *what) {
    if (strcmp(arg, "-") == 0) {
        char *token = NULL;
        tokend_error why;
        if (secret_read(stdin, &token, &why) != TOKEND_OK) {
            usage_error(c, "%s from stdin: %s", what, why.message);
        }
        return token;
    }
    if (arg[0] == '\0') {
        usage_error(c, "%s is empty", what);
        return NULL;
    }
    return from_argv ? secret_from_argv(arg) : xstrdup(arg);
}

/* ------------------------------------------------------------------------
 * Commands. */

static int run_help(cli *c) {
    if (c->positional.n == 0) {
        fputs(usage_main, stdout);
        return EXIT_DONE;
    }
    const command *cmd = find_command(c->positional.items[0]);
    if (cmd == NULL || c->positional.n > 1) {
        c->cmd = NULL;
        return usage_error(
            c, "help: expected one of create, verify, list, show, revoke, events");
    }
    fputs(cmd->usage, stdout);
    return EXIT_DONE;
}

static int run_create(cli *c) {
    if (c->positional.n > 0) {
        return usage_error(c, "create takes no arguments, only flags");
    }
    if (c->values[FLAG_NAME] == NULL || c->values[FLAG_NAME][0] == '\0') {
        return usage_error(c, "create needs --name NAME");
    }
    if (c->abilities.n == 0) {
        return usage_error(c, "create needs at least one --ability ABILITY");
    }
    for (size_t i = 0; i < c->abilities.n; i++) {
        if (c->abilities.items[i][0] == '\0') {
            return usage_error(c, "--ability: empty ability");
        }
    }
    int64_t expires_in = 0;
    if (c->values[FLAG_EXPIRES_IN] != NULL) {
        int rv = parse_expires_in(c, c->values[FLAG_EXPIRES_IN], &expires_in);
        if (rv >= 0) {
            return rv;
        }
    }
    tokend_kv *meta = NULL;
    if (c->metas.n > 0 && (meta = calloc(c->metas.n, sizeof *meta)) == NULL) {
        oom();
    }
    for (size_t i = 0; i < c->metas.n; i++) {
        char *eq = strchr(c->metas.items[i], '=');
        if (eq == NULL || eq == c->metas.items[i]) {
            free(meta);
            return usage_error(c, "--meta: expected KEY=VALUE with a non-empty KEY");
        }
        *eq = '\0'; /* argv is ours to split */
        meta[i].key = c->metas.items[i];
        meta[i].value = eq + 1;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(meta[j].key, meta[i].key) == 0) {
                int rv = usage_error(c, "--meta: key '%s' given twice", meta[i].key);
                free(meta);
                return rv;
            }
        }
    }
    int rv = setup(c);
    if (rv >= 0) {
        free(meta);
        return rv;
    }

    tokend_create_params params = {
        .owner = c->values[FLAG_OWNER],
        .name = c->values[FLAG_NAME],
        .abilities = (const char *const *)c->abilities.items,
        .n_abilities = c->abilities.n,
        .expires_in_seconds = expires_in,
        .metadata = meta,
        .n_metadata = c->metas.n,
    };
    tokend_created created;
    tokend_error err;
    rv = tokend_create(c->client, NULL, &params, &created, &err);
    free(meta);
    if (rv != TOKEND_OK) {
        return call_failed(&err);
    }
    if (c->json) {
        fputs("{\"token\":", stdout);
        json_string(stdout, created.token);
        json_info_fields(stdout, &created.info, ",");
        fputs("}\n", stdout);
    } else {
        printf("%s\n%s\n", created.token, created.info.id);
    }
    tokend_created_free(&created);
    return EXIT_DONE;
}

static void print_info_text(const tokend_token_info *info) {
    char buf[64];
    fputs("id:         ", stdout);
    put_text(stdout, info->id);
    fputs("\nowner:      ", stdout);
    put_text(stdout, info->owner);
    fputs("\nname:       ", stdout);
    put_text(stdout, info->name);
    fputs("\nabilities:  ", stdout);
    for (size_t i = 0; i < info->n_abilities; i++) {
        if (i > 0) {
            fputs(", ", stdout);
        }
        put_text(stdout, info->abilities[i]);
    }
    printf("\ncreated:    %s", format_time(info->created_unix_ms, "-", buf, sizeof buf));
    printf("\nexpires:    %s",
           format_time(info->expires_unix_ms, "never", buf, sizeof buf));
    printf("\nlast used:  %s",
           format_time(info->last_used_unix_ms, "never", buf, sizeof buf));
    printf("\nuses:       %" PRIu64 "\n", info->use_count);
    for (size_t i = 0; i < info->n_metadata; i++) {
        fputs("meta:       ", stdout);
        put_text(stdout, info->metadata[i].key);
        putc('=', stdout);
        put_text(stdout, info->metadata[i].value);
        putc('\n', stdout);
    }
}

static int run_verify(cli *c) {
    if (c->positional.n != 1) {
        return usage_error(c, "verify needs exactly one TOKEN (\"-\": read from stdin)");
    }
    if (c->seen[FLAG_ANY] && c->abilities.n == 0) {
        return usage_error(c, "--any needs at least one --ability");
    }
    char *token = token_argument(c, c->positional.items[0], true, "TOKEN");
    if (token == NULL) {
        return EXIT_USAGE;
    }
    int rv = setup(c);
    if (rv >= 0) {
        secret_free(token);
        return rv;
    }
    /* The context goes as given: the service's check names a bad field. */
    tokend_request_context context = {
        .method = c->values[FLAG_METHOD],
        .path = c->values[FLAG_PATH],
        .client_ip = c->values[FLAG_CLIENT_IP],
        .user_agent = c->values[FLAG_USER_AGENT],
    };
    bool has_context = c->seen[FLAG_METHOD] || c->seen[FLAG_PATH] ||
                       c->seen[FLAG_CLIENT_IP] || c->seen[FLAG_USER_AGENT];
    tokend_call opts = {.context = has_context ? &context : NULL};
    tokend_verdict verdict;
    tokend_error err;
    rv = tokend_verify(
        c->client, &opts, token, (const char *const *)c->abilities.items, c->abilities.n,
        c->seen[FLAG_ANY] ? TOKEND_ABILITIES_ANY : TOKEND_ABILITIES_ALL, &verdict, &err);
    secret_free(token);
    switch (rv) {
        case TOKEND_OK:
        case TOKEND_MALFORMED:
        case TOKEND_NOT_FOUND:
        case TOKEND_EXPIRED:
        case TOKEND_INSUFFICIENT_ABILITY:
            break;
        default:
            return call_failed(&err);
    }
    if (c->json) {
        printf("{\"valid\":%s,\"reason\":", rv == TOKEND_OK ? "true" : "false");
        json_string(stdout, tokend_status_name(verdict.reason));
        if (verdict.has_info) {
            json_info_fields(stdout, &verdict.info, ",");
        }
        fputs("}\n", stdout);
    } else {
        printf("%s\n", tokend_status_name(verdict.reason));
        if (verdict.has_info) {
            print_info_text(&verdict.info);
        }
    }
    tokend_verdict_free(&verdict);
    return rv == TOKEND_OK ? EXIT_DONE : EXIT_REFUSED;
}

/* Prints a table: the headers, then n_rows rows of n_columns cells
 * (cells[row * n_columns + col], malloc'd), every column but the last
 * padded to its widest cell; frees the cells and the array. */
static void put_table(const char *const *headers, size_t n_columns, char **cells,
                      size_t n_rows) {
    size_t *width = calloc(n_columns, sizeof *width);
    if (width == NULL) {
        oom();
    }
    for (size_t col = 0; col < n_columns; col++) {
        width[col] = display_width(headers[col]);
        for (size_t row = 0; row < n_rows; row++) {
            size_t w = display_width(cells[row * n_columns + col]);
            width[col] = w > width[col] ? w : width[col];
        }
    }
    for (size_t col = 0; col < n_columns; col++) {
        if (col == n_columns - 1) {
            fputs(headers[col], stdout);
        } else {
            put_padded(stdout, headers[col], width[col] + 2);
        }
    }
    putc('\n', stdout);
    for (size_t row = 0; row < n_rows; row++) {
        for (size_t col = 0; col < n_columns; col++) {
            char *cell = cells[row * n_columns + col];
            if (col == n_columns - 1) {
                put_text(stdout, cell);
            } else {
                put_padded(stdout, cell, width[col] + 2);
            }
            free(cell);
        }
        putc('\n', stdout);
    }
    free(cells);
    free(width);
}

/* Prints tokens as a table with aligned columns. */
static void print_table(const tokend_token_info *const *tokens, size_t n) {
    enum { ID, NAME, ABILITIES, CREATED, EXPIRES, LAST_USED, USES, N_COLUMNS };
    static const char *const headers[N_COLUMNS] = {
        "ID", "NAME", "ABILITIES", "CREATED", "EXPIRES", "LAST USED", "USES"};
    /* Cells are built once, measured, then printed. */
    char **cells = calloc(n * N_COLUMNS + 1, sizeof *cells);
    if (cells == NULL) {
        oom();
    }
    for (size_t row = 0; row < n; row++) {
        const tokend_token_info *info = tokens[row];
        char buf[64];
        size_t abilities_len = 1;
        for (size_t i = 0; i < info->n_abilities; i++) {
            abilities_len += strlen(info->abilities[i]) + 1;
        }
        char *abilities = calloc(1, abilities_len);
        if (abilities == NULL) {
            oom();
        }
        for (size_t i = 0; i < info->n_abilities; i++) {
            if (i > 0) {
                strcat(abilities, ",");
            }
            strcat(abilities, info->abilities[i]);
        }
        char **cell = &cells[row * N_COLUMNS];
        cell[ID] = xstrdup(info->id);
        cell[NAME] = xstrdup(info->name);
        cell[ABILITIES] = abilities;
        cell[CREATED] = xstrdup(format_time(info->created_unix_ms, "-", buf, sizeof buf));
        cell[EXPIRES] =
            xstrdup(format_time(info->expires_unix_ms, "never", buf, sizeof buf));
        cell[LAST_USED] =
            xstrdup(format_time(info->last_used_unix_ms, "never", buf, sizeof buf));
        snprintf(buf, sizeof buf, "%" PRIu64, info->use_count);
        cell[USES] = xstrdup(buf);
    }
    put_table(headers, N_COLUMNS, cells, n);
}

static int run_list(cli *c) {
    if (c->positional.n > 0) {
        return usage_error(c, "list takes no arguments, only flags");
    }
    long long limit = 0;
    if (c->values[FLAG_LIMIT] != NULL &&
        opt_parse_int(c->values[FLAG_LIMIT], 1, 1000, &limit, NULL) != TOKEND_OK) {
        return usage_error(c, "--limit: expected a number of tokens, 1..1000");
    }
    int rv = setup(c);
    if (rv >= 0) {
        return rv;
    }

    /* Pages are kept until the end so that the table's columns line up and
     * the JSON is one object. */
    tokend_token_page *pages = NULL;
    size_t n_pages = 0;
    size_t n_tokens = 0;
    const char *cursor = c->values[FLAG_CURSOR];
    const char *next_cursor = NULL;
    int exit_code = EXIT_DONE;
    for (;;) {
        tokend_token_page *grown = realloc(pages, (n_pages + 1) * sizeof *pages);
        if (grown == NULL) {
            oom();
        }
        pages = grown;
        tokend_token_page *page = &pages[n_pages];
        tokend_error err;
        rv = tokend_list(c->client, NULL, c->values[FLAG_OWNER], (uint32_t)limit, cursor,
                         page, &err);
        if (rv != TOKEND_OK) {
            exit_code = call_failed(&err);
            break;
        }
        n_pages++;
        n_tokens += page->n_tokens;
        next_cursor = page->next_cursor;
        if (!c->seen[FLAG_ALL] || next_cursor == NULL) {
            break;
        }
        if (cursor != NULL && strcmp(cursor, next_cursor) == 0) {
            report_error(TOKEND_INTERNAL, "the service returned the same cursor twice");
            exit_code = EXIT_REFUSED;
            break;
        }
        cursor = next_cursor;
    }

    if (exit_code == EXIT_DONE) {
        const tokend_token_info **all = calloc(n_tokens + 1, sizeof *all);
        if (all == NULL) {
            oom();
        }
        size_t k = 0;
        for (size_t p = 0; p < n_pages; p++) {
            for (size_t i = 0; i < pages[p].n_tokens; i++) {
                all[k++] = &pages[p].tokens[i];
            }
        }
        if (c->json) {
            fputs("{\"tokens\":[", stdout);
            for (size_t i = 0; i < n_tokens; i++) {
                fputs(i > 0 ? ",{" : "{", stdout);
                json_info_fields(stdout, all[i], "");
                putc('}', stdout);
            }
            fputs("],\"next_cursor\":", stdout);
            if (next_cursor != NULL) {
                json_string(stdout, next_cursor);
            } else {
                fputs("null", stdout);
            }
            fputs("}\n", stdout);
        } else {
            print_table(all, n_tokens);
            if (next_cursor != NULL) {
                fputs("tokenctl: more tokens follow: pass --cursor ", stderr);
                put_text(stderr, next_cursor);
                fputs(" (or use --all)\n", stderr);
            }
        }
        free(all);
    }
    for (size_t p = 0; p < n_pages; p++) {
        tokend_token_page_free(&pages[p]);
    }
    free(pages);
    return exit_code;
}

static int run_show(cli *c) {
    if (c->positional.n != 1 || c->positional.items[0][0] == '\0') {
        return usage_error(c, "show needs exactly one ID");
    }
    int rv = setup(c);
    if (rv >= 0) {
        return rv;
    }
    tokend_token_info info;
    tokend_error err;
    rv = tokend_get(c->client, NULL, c->positional.items[0], &info, &err);
    if (rv != TOKEND_OK) {
        return call_failed(&err);
    }
    if (c->json) {
        putc('{', stdout);
        json_info_fields(stdout, &info, "");
        fputs("}\n", stdout);
    } else {
        print_info_text(&info);
    }
    tokend_token_info_free(&info);
    return EXIT_DONE;
}

static int run_revoke(cli *c) {
    bool by_id = c->positional.n > 0;
    bool by_token = c->token_flag != NULL;
    bool by_owner = c->values[FLAG_OWNER] != NULL;
    if (c->positional.n > 1) {
        return usage_error(c, "revoke takes one ID");
    }
    if (!by_owner && c->seen[FLAG_ALL]) {
        return usage_error(c, "--all goes with --owner OWNER");
    }
    if ((int)by_id + (int)by_token + (int)by_owner != 1) {
        return usage_error(c,
                           "revoke needs one of: ID, --token TOKEN, --owner OWNER --all");
    }
    if (by_owner && !c->seen[FLAG_ALL]) {
        return usage_error(c, "revoking every token of an owner needs --all as well");
    }
    if (by_id && c->positional.items[0][0] == '\0') {
        return usage_error(c, "ID is empty");
    }
    if (by_owner && c->values[FLAG_OWNER][0] == '\0') {
        return usage_error(c, "--owner is empty");
    }
    char *token = NULL;
    if (by_token &&
        (token = token_argument(c, c->token_flag, false, "--token")) == NULL) {
        return EXIT_USAGE;
    }
    int rv = setup(c);
    if (rv >= 0) {
        secret_free(token);
        return rv;
    }
    uint64_t revoked = 0;
    tokend_error err;
    if (by_id) {
        rv = tokend_revoke_id(c->client, NULL, c->positional.items[0], &revoked, &err);
    } else if (by_token) {
        rv = tokend_revoke_token(c->client, NULL, token, &revoked, &err);
    } else {
        rv = tokend_revoke_owner(c->client, NULL, c->values[FLAG_OWNER], &revoked, &err);
    }
    secret_free(token);
    if (rv != TOKEND_OK) {
        return call_failed(&err);
    }
    if (c->json) {
        printf("{\"revoked\":%" PRIu64 "}\n", revoked);
    } else {
        printf("revoked %" PRIu64 "\n", revoked);
    }
    return EXIT_DONE;
}

/* ------------------------------------------------------------------------
 * main. */

/* ------------------------------------------------------------------------
 * usage: a token's or an owner's usage series. */

/* The calls of a bucket, and its largest entry of `c` (n of them). */
static uint64_t bucket_calls(const tokend_usage_bucket *b) {
    uint64_t n = 0;
    for (size_t i = 0; i < b->n_outcomes; i++) {
        n += b->outcomes[i].count;
    }
    return n;
}

static uint64_t bucket_count(const tokend_usage_count *c, size_t n, const char *key) {
    for (size_t i = 0; i < n; i++) {
        if (strcmp(c[i].key, key) == 0) {
            return c[i].count;
        }
    }
    return 0;
}

/* "KEY (N)" of the entry with most calls, or "-". */
static char *top_of(const tokend_usage_count *c, size_t n) {
    const tokend_usage_count *top = NULL;
    for (size_t i = 0; i < n; i++) {
        if (top == NULL || c[i].count > top->count) {
            top = &c[i];
        }
    }
    if (top == NULL) {
        return xstrdup("-");
    }
    char *s = NULL;
    if (asprintf(&s, "%s (%" PRIu64 ")", top->key, top->count) < 0) {
        oom();
    }
    return s;
}

/* The calls per step from the first bucket to the last, as a line of
 * block characters (at most the last 120 steps): for a terminal only. */
static void print_sparkline(const tokend_usage *u, int64_t step_ms) {
    static const char *const bars[] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
    if (u->n_buckets == 0) {
        return;
    }
    int64_t last = u->buckets[u->n_buckets - 1].start_unix_ms;
    int64_t first = u->buckets[0].start_unix_ms;
    if ((last - first) / step_ms >= 120) {
        first = last - 119 * step_ms;
    }
    uint64_t max = 1;
    for (size_t i = 0; i < u->n_buckets; i++) {
        uint64_t n = bucket_calls(&u->buckets[i]);
        max = n > max ? n : max;
    }
    fputs("calls ", stdout);
    size_t i = 0;
    for (int64_t t = first; t <= last; t += step_ms) {
        while (i < u->n_buckets && u->buckets[i].start_unix_ms < t) {
            i++;
        }
        uint64_t n = i < u->n_buckets && u->buckets[i].start_unix_ms == t
                         ? bucket_calls(&u->buckets[i])
                         : 0;
        /* 1..max calls map onto the 8 bars; none is a blank. */
        fputs(n == 0 ? " " : bars[(n * 8 - 1) / max], stdout);
    }
    fputs("\n\n", stdout);
}

static void print_usage_table(const tokend_usage *u) {
    enum { START, CALLS, OK, DENIED, ROUTE, CLIENT, N_COLUMNS };
    static const char *const headers[N_COLUMNS] = {"START",  "CALLS",     "OK",
                                                   "DENIED", "TOP ROUTE", "TOP CLIENT"};
    size_t n = u->n_buckets;
    char **cells = calloc(n * N_COLUMNS + 1, sizeof *cells);
    if (cells == NULL) {
        oom();
    }
    uint64_t total = 0, total_ok = 0;
    for (size_t row = 0; row < n; row++) {
        const tokend_usage_bucket *b = &u->buckets[row];
        char buf[64];
        char **cell = &cells[row * N_COLUMNS];
        uint64_t calls = bucket_calls(b),
                 ok = bucket_count(b->outcomes, b->n_outcomes, "OK");
        total += calls;
        total_ok += ok;
        cell[START] = xstrdup(format_time(b->start_unix_ms, "-", buf, sizeof buf));
        snprintf(buf, sizeof buf, "%" PRIu64, calls);
        cell[CALLS] = xstrdup(buf);
        snprintf(buf, sizeof buf, "%" PRIu64, ok);
        cell[OK] = xstrdup(buf);
        snprintf(buf, sizeof buf, "%" PRIu64, calls - ok);
        cell[DENIED] = xstrdup(buf);
        cell[ROUTE] = top_of(b->routes, b->n_routes);
        cell[CLIENT] = top_of(b->client_ips, b->n_client_ips);
    }
    put_table(headers, N_COLUMNS, cells, n);
    printf("total: %" PRIu64 " calls, %" PRIu64 " OK, %" PRIu64 " denied\n", total,
           total_ok, total - total_ok);
}

static void json_counts(FILE *out, const char *name, const tokend_usage_count *c,
                        size_t n) {
    fprintf(out, ",\"%s\":{", name);
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            putc(',', out);
        }
        json_string(out, c[i].key);
        fprintf(out, ":%" PRIu64, c[i].count);
    }
    putc('}', out);
}

/* The shape of the gateway's GET /v1/tokens/{id}/usage. */
static void print_usage_json(const tokend_usage *u) {
    printf("{\"step\":\"%s\",\"buckets\":[",
           u->step == TOKEND_USAGE_HOUR ? "hour" : "minute");
    for (size_t i = 0; i < u->n_buckets; i++) {
        const tokend_usage_bucket *b = &u->buckets[i];
        printf("%s{\"start\":%" PRId64, i > 0 ? "," : "", b->start_unix_ms);
        json_counts(stdout, "outcomes", b->outcomes, b->n_outcomes);
        json_counts(stdout, "routes", b->routes, b->n_routes);
        json_counts(stdout, "client_ips", b->client_ips, b->n_client_ips);
        putc('}', stdout);
    }
    fputs("]}\n", stdout);
}

static int run_usage(cli *c) {
    bool by_owner = c->values[FLAG_OWNER] != NULL;
    if ((c->positional.n != 1 && !by_owner) || (c->positional.n != 0 && by_owner) ||
        (c->positional.n == 1 && c->positional.items[0][0] == '\0')) {
        return usage_error(c, "usage needs exactly one ID, or --owner OWNER");
    }
    tokend_usage_query q = {0};
    const char *step = c->values[FLAG_STEP] != NULL ? c->values[FLAG_STEP] : "minute";
    if (strcmp(step, "minute") == 0) {
        q.step = TOKEND_USAGE_MINUTE;
    } else if (strcmp(step, "hour") == 0) {
        q.step = TOKEND_USAGE_HOUR;
    } else {
        return usage_error(c, "--step must be minute or hour, not '%s'", step);
    }
    int64_t step_ms = q.step == TOKEND_USAGE_HOUR ? 3600000 : 60000;
    int64_t since = 24 * 3600;
    const char *since_text = c->values[FLAG_SINCE];
    if (since_text != NULL &&
        (opt_parse_duration(since_text, &since, NULL) != TOKEND_OK || since <= 0 ||
         since > 120LL * 86400)) {
        return usage_error(c,
                           "--since '%s': expected a duration such as 90m, 24h or 7d "
                           "(at most 120d)",
                           since_text);
    }
    int rv = setup(c);
    if (rv >= 0) {
        return rv;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    /* From the start of the step the range begins in, so its first bucket
     * is whole. */
    q.from_unix_ms = (now_ms - since * 1000) / step_ms * step_ms;
    q.to_unix_ms = now_ms;
    q.id = by_owner ? NULL : c->positional.items[0];
    q.owner = by_owner ? c->values[FLAG_OWNER] : NULL;
    tokend_usage u;
    tokend_error err;
    rv = tokend_get_usage(c->client, NULL, &q, &u, &err);
    if (rv != TOKEND_OK) {
        return call_failed(&err);
    }
    if (c->json) {
        print_usage_json(&u);
    } else {
        if (isatty(STDOUT_FILENO)) {
            print_sparkline(&u, step_ms);
        }
        print_usage_table(&u);
    }
    tokend_usage_free(&u);
    return EXIT_DONE;
}

static void cli_free(cli *c) {
    tokend_close(c->client);
    for (size_t i = 0; i < c->urls.n; i++) {
        free(c->urls.items[i]);
    }
    free(c->urls.items);
    secret_free(c->credential);
    secret_free(c->token_flag);
    free(c->abilities.items);
    free(c->metas.items);
    free(c->positional.items);
}

int main(int argc, char **argv) {
    cli c = {0};
    /* Known before the first word is read, so that an error about any
     * word already comes out as JSON. */
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        json_errors = json_errors || strcmp(argv[i], "--json") == 0;
    }
    int rv = parse_args(&c, argc, argv);
    if (rv < 0) {
        if (c.version) {
            printf("tokenctl %s\n", TOKEND_VERSION);
            rv = EXIT_DONE;
        } else if (c.help) {
            fputs(c.cmd != NULL ? c.cmd->usage : usage_main, stdout);
            rv = EXIT_DONE;
        } else if (c.cmd == NULL) {
            rv = usage_error(&c, "no command given");
        } else {
            rv = c.cmd->run(&c);
        }
    }
    cli_free(&c);
    /* A result that did not reach stdout (disk full, closed pipe) is a
     * failure, even if the service call worked. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        report_error(TOKEND_INTERNAL, "cannot write the output: %s", strerror(errno));
        if (rv == EXIT_DONE) {
            rv = EXIT_REFUSED;
        }
    }
    return rv;
}

/* ------------------------------------------------------------------------
 * events: listing, following and verifying the audit log. */

#define EVENTS_POLL_MS 1000

static volatile sig_atomic_t events_stop;

static void on_stop_signal(int sig) {
    (void)sig;
    events_stop = 1;
}

static void put_hex(FILE *out, const uint8_t *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        fprintf(out, "%02x", b[i]);
    }
}

static void print_event_json(const tokend_event *e) {
    const struct {
        const char *key, *value;
    } fields[] = {
        {"kind", e->kind},   {"actor_id", e->actor_id},   {"actor_owner", e->actor_owner},
        {"owner", e->owner}, {"token_id", e->token_id},   {"method", e->method},
        {"path", e->path},   {"client_ip", e->client_ip}, {"user_agent", e->user_agent}};
    printf("{\"seq\":%" PRIu64 ",\"time\":%" PRId64, e->seq, e->time_unix_ms);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        printf(",\"%s\":", fields[i].key);
        json_string(stdout, fields[i].value);
    }
    fputs(",\"detail\":{", stdout);
    for (size_t i = 0; i < e->n_detail; i++) {
        if (i > 0) {
            putc(',', stdout);
        }
        json_string(stdout, e->detail[i].key);
        putc(':', stdout);
        json_string(stdout, e->detail[i].value);
    }
    fputs("},\"hash\":\"", stdout);
    put_hex(stdout, e->hash, e->hash_len < 32 ? e->hash_len : 32);
    fputs("\"}\n", stdout);
}

static void print_event_row(const tokend_event *e) {
    char when[32];
    printf("%-6" PRIu64 " %s ", e->seq,
           format_time(e->time_unix_ms, "-", when, sizeof when));
    put_padded(stdout, e->kind, 24);
    putc(' ', stdout);
    put_padded(stdout, e->actor_id[0] != '\0' ? e->actor_id : "-", 16);
    putc(' ', stdout);
    put_padded(stdout, e->owner[0] != '\0' ? e->owner : "-", 16);
    putc(' ', stdout);
    put_padded(stdout, e->token_id[0] != '\0' ? e->token_id : "-", 16);
    putc(' ', stdout);
    put_padded(stdout, e->client_ip[0] != '\0' ? e->client_ip : "-", 15);
    for (size_t i = 0; i < e->n_detail; i++) {
        putc(' ', stdout);
        put_text(stdout, e->detail[i].key);
        putc('=', stdout);
        put_text(stdout, e->detail[i].value);
    }
    putc('\n', stdout);
}

/* The chain as far as it has been read. */
typedef struct chain {
    uint64_t n, first, last;
    uint8_t last_hash[TOKEND_EVENT_HASH_LEN];
} chain;

/* Checks one event against the one before it; prints the broken link and
 * returns false when it breaks. */
static bool chain_step(chain *ch, const tokend_event *e) {
    uint8_t *buf = malloc(TOKEND_EVENT_HASH_LEN + e->hashed_len + 1);
    if (buf == NULL) {
        oom();
    }
    memcpy(buf, e->prev_hash, TOKEND_EVENT_HASH_LEN);
    memcpy(buf + TOKEND_EVENT_HASH_LEN, e->hashed, e->hashed_len);
    uint8_t hash[SHA256_DIGEST_LENGTH];
    SHA256(buf, TOKEND_EVENT_HASH_LEN + e->hashed_len, hash);
    free(buf);
    const char *broken = NULL;
    uint64_t at = e->seq;
    static const uint8_t zero[TOKEND_EVENT_HASH_LEN];
    if (ch->n > 0 && e->seq != ch->last + 1) {
        broken = "gap";
        at = ch->last;
    } else if (e->hash_len != TOKEND_EVENT_HASH_LEN ||
               e->prev_hash_len != TOKEND_EVENT_HASH_LEN ||
               memcmp(hash, e->hash, sizeof hash) != 0) {
        broken = "hash does not match";
    } else if (ch->n > 0 && memcmp(e->prev_hash, ch->last_hash, sizeof hash) != 0) {
        broken = "prev_hash";
    } else if (ch->n == 0 && e->seq == 1 &&
               memcmp(e->prev_hash, zero, sizeof zero) != 0) {
        broken = "prev_hash of seq 1 is not zero";
    }
    if (broken != NULL) {
        if (strcmp(broken, "gap") == 0) {
            printf("chain broken: gap after seq %" PRIu64 "\n", at);
        } else if (strcmp(broken, "prev_hash") == 0) {
            printf("chain broken: seq %" PRIu64 ": prev_hash is not seq %" PRIu64
                   "'s hash\n",
                   at, at - 1);
        } else {
            printf("chain broken: seq %" PRIu64 ": %s\n", at, broken);
        }
        return false;
    }
    if (ch->n == 0) {
        ch->first = e->seq;
    }
    ch->n++;
    ch->last = e->seq;
    memcpy(ch->last_hash, e->hash, sizeof ch->last_hash);
    return true;
}

/* Reads --since (a duration back from now) into *since_ms. */
static int parse_since(const cli *c, int64_t *since_ms) {
    const char *text = c->values[FLAG_SINCE];
    if (text == NULL) {
        *since_ms = 0;
        return -1;
    }
    int64_t seconds = 0;
    tokend_error err;
    if (opt_parse_duration(text, &seconds, &err) != TOKEND_OK || seconds <= 0) {
        return usage_error(c, "--since '%s': expected a duration such as 7d, 12h or 30m",
                           text);
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    *since_ms = seconds * 1000 < now_ms ? now_ms - seconds * 1000 : 0;
    return -1;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* a signal ends it early, which is what we want */
}

static int run_events(cli *c) {
    if (c->positional.n > 0) {
        return usage_error(c, "events takes no arguments, only flags");
    }
    bool verify = c->seen[FLAG_VERIFY];
    bool follow = c->seen[FLAG_FOLLOW];
    if (verify &&
        (follow || c->values[FLAG_OWNER] != NULL || c->values[FLAG_TOKEN_ID] != NULL ||
         c->values[FLAG_KIND] != NULL || c->values[FLAG_SINCE] != NULL)) {
        return usage_error(c,
                           "--verify reads the whole log: give it no filter or --follow");
    }
    tokend_event_filter f = {
        .owner = c->values[FLAG_OWNER],
        .token_id = c->values[FLAG_TOKEN_ID],
        .kind = c->values[FLAG_KIND],
        .page_size = verify ? 1000 : 0,
    };
    int rv = parse_since(c, &f.since_unix_ms);
    if (rv >= 0) {
        return rv;
    }
    if ((rv = setup(c)) >= 0) {
        return rv;
    }
    if (follow) {
        struct sigaction sa = {.sa_handler = on_stop_signal};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
    }
    chain ch = {0};
    char *cursor = NULL;
    int exit_code = EXIT_DONE;
    bool header = !c->json && !verify;
    bool waiting = false; /* --follow: tokend unreachable, said once */
    while (!events_stop) {
        tokend_event_page page;
        tokend_error err;
        f.cursor = cursor;
        if (tokend_list_events(c->client, NULL, &f, &page, &err) != TOKEND_OK) {
            /* A feed outlives a restart of tokend: it says so once and
             * polls on from its cursor. */
            bool transient =
                err.code == TOKEND_UNAVAILABLE || err.code == TOKEND_DEADLINE_EXCEEDED;
            if (follow && transient) {
                if (!waiting) {
                    report_error(err.code, "%s (still following)", err.message);
                    waiting = true;
                }
                sleep_ms(EVENTS_POLL_MS);
                continue;
            }
            exit_code = call_failed(&err);
            break;
        }
        waiting = false;
        if (header && page.n_events > 0) {
            printf("%-6s %-20s %-24s %-16s %-16s %-16s %-15s %s\n", "SEQ", "TIME", "KIND",
                   "ACTOR", "OWNER", "TOKEN", "CLIENT IP", "DETAIL");
            header = false;
        }
        bool sound = true;
        for (size_t i = 0; sound && i < page.n_events; i++) {
            if (verify) {
                sound = chain_step(&ch, &page.events[i]);
            } else if (c->json) {
                print_event_json(&page.events[i]);
            } else {
                print_event_row(&page.events[i]);
            }
        }
        fflush(stdout);
        bool more = page.more;
        if (page.next_cursor != NULL) {
            free(cursor);
            cursor = xstrdup(page.next_cursor);
        }
        tokend_event_page_free(&page);
        if (!sound) {
            exit_code = EXIT_REFUSED;
            break;
        }
        if (!more && !follow) {
            break;
        }
        if (!more) {
            sleep_ms(EVENTS_POLL_MS);
        }
    }
    free(cursor);
    if (verify && exit_code == EXIT_DONE) {
        if (ch.n == 0) {
            puts("chain verified: 0 events");
        } else {
            printf("chain verified: %" PRIu64 " events, seq %" PRIu64 "..%" PRIu64 "%s\n",
                   ch.n, ch.first, ch.last,
                   ch.first > 1 ? " (from the oldest kept event: older ones were deleted "
                                  "by retention, its prev_hash is taken as given)"
                                : "");
        }
    }
    return exit_code;
}
