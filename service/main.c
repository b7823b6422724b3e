/*
 * main.c — the tokend command: `tokend init` creates a store and prints its
 * first admin token; `tokend serve` serves the TokenService until SIGINT or
 * SIGTERM (and the Control service on the control socket in the data
 * dir), then drains requests in flight, flushes usage and closes the
 * store; `tokend admin-token` prints a new admin token for an operator
 * locked out, writing the store itself when tokend is stopped and asking
 * it over the control socket when it runs.
 *
 * The data dir is private: tokend runs with umask 077, so that every
 * file and directory it makes is its owner's alone (0600, 0700), and both
 * commands refuse a data dir that group or others may access; `serve`
 * makes files left wider by an older tokend 0600 (docs/design.md).
 *
 * Exit codes: 0 ok; 1 runtime failure (store, listen, TLS files, data dir
 * mode); 2 usage error (options, among them TLS options that do not fit
 * the listeners); 3 `init` on a store that is already initialised.
 * `admin-token`: 0 printed, 1 not (no store, not initialised, ...).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alerts.h"
#include "config.h"
#include "crypto.h"
#include "error.h"
#include "log.h"
#include "opt.h"
#include "rpc.h"
#include "rpc_client.h"
#include "secret.h"
#include "server.h"
#include "store.h"
#include "tls.h"
#include "tokend.h"
#include "methods.h"
#include "metrics_http.h"
#include "stats.h"
#include "usage.h"
#include "webhook.h"
#include "writer.h"

#define USAGE_CAPACITY (256 * 1024)
/* (token, minute) entries of the usage series between two flushes. */
#define SERIES_CAPACITY (64 * 1024)

static void usage_top(FILE *out) {
    fprintf(out,
            "tokend " TOKEND_VERSION " — API-token service\n"
            "\n"
            "Usage:\n"
            "  tokend init  [--data-dir DIR] [options]   create a store, print its admin "
            "token\n"
            "  tokend serve [--data-dir DIR] [--listen URL ...] [options]\n"
            "  tokend admin-token [--data-dir DIR]       recovery: print a new admin "
            "token\n"
            "  tokend COMMAND --help                     options of a command\n"
            "  tokend --version\n"
            "\n"
            "First start:\n"
            "  tokend init --data-dir ./data > admin-token   # line 1: the admin token\n"
            "  tokend serve --data-dir ./data --listen tcp://127.0.0.1:7450\n"
            "Then manage tokens with tokenctl (tokenctl --help).\n");
}

static void usage_command(FILE *out, config_command cmd) {
    if (cmd == CMD_INIT) {
        fprintf(out,
                "Usage: tokend init [options]\n\n"
                "Creates the token store in --data-dir and prints one admin token\n"
                "(ability tokend:admin) on the first line of stdout. It is shown once\n"
                "and only its digest is stored: keep it. On a store that is already\n"
                "initialised, changes nothing and exits 3.\n\nOptions:\n");
    } else if (cmd == CMD_ADMIN_TOKEN) {
        fprintf(
            out,
            "Usage: tokend admin-token [--data-dir DIR] [options]\n\n"
            "Recovery, for when no admin token is left (lost, or revoked): makes a\n"
            "new admin token (ability tokend:admin, no expiry, name \"admin recovery\")\n"
            "and prints it on the first line of stdout, once. Run it on tokend's host\n"
            "as the user that owns the data dir, tokend stopped or running: stopped,\n"
            "it writes the store itself; running (the store is locked), it asks the\n"
            "running tokend through its control socket, ipc://DIR/control, which\n"
            "only that user can reach. tokend logs event=admin.recovery with the new\n"
            "token's id (never the token); the token's metadata says\n"
            "made_by=tokend admin-token. Exit 0 when printed, 1 when not (the reason\n"
            "on stderr).\n\nOptions:\n");
    } else {
        fprintf(out,
                "Usage: tokend serve [options]\n\n"
                "Serves the tokend.v1.TokenService on every --listen URL until SIGINT\n"
                "or SIGTERM, and tokend.v1.Control on ipc://DIR/control in the data dir\n"
                "(for tokend admin-token). Logs one logfmt line per event on stderr.\n\n"
                "Options:\n");
    }
    opt_usage(out, &config_table, cmd);
}

static bool apply_common(const config *cfg) {
    log_level level;
    if (!log_parse_level(cfg->log_level, &level)) {
        fprintf(stderr, "tokend: --log-level must be debug, info, warn or error\n");
        return false;
    }
    log_min_level = level;
    if (!token_prefix_ok(cfg->token_prefix)) {
        fprintf(stderr, "tokend: --token-prefix must be 1-32 characters of "
                        "[A-Za-z0-9_]\n");
        return false;
    }
    tokend_error err;
    if (crypto_init(&err) != TOKEND_OK) {
        fprintf(stderr, "tokend: %s\n", err.message);
        return false;
    }
    return true;
}

/* Owner-only: the store holds digests, not tokens, but who has which
 * token and abilities is nobody else's business. Refuses (with the line
 * on stderr) a data dir that group or others may enter or read: a mode
 * the operator chose is the operator's to change, and the files in it
 * may have been readable for as long as it was. */
static bool data_dir_private(const char *dir) {
    struct stat sb;
    if (stat(dir, &sb) != 0) {
        return true; /* missing: store_open says so, or init makes it */
    }
    if ((sb.st_mode & 077) != 0) {
        fprintf(stderr,
                "tokend: data dir %s has mode %04o: group or others may access it. "
                "It must be private to tokend's user (0700): chmod 700 %s\n",
                dir, (unsigned)(sb.st_mode & 07777), dir);
        return false;
    }
    return true;
}

/* Makes every regular file in the data dir that group or others may
 * access 0600: an older tokend let RocksDB create them under the
 * caller's umask. Logs how many it changed. False (with the line on
 * stderr) if one cannot be changed. */
static bool data_files_private(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL) {
        return true; /* store_open reports a dir it cannot read */
    }
    unsigned changed = 0;
    bool ok = true;
    for (struct dirent *e; ok && (e = readdir(d)) != NULL;) {
        struct stat sb;
        if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(sb.st_mode) || (sb.st_mode & 077) == 0) {
            continue;
        }
        if (fchmodat(dirfd(d), e->d_name, 0600, 0) != 0) {
            fprintf(stderr, "tokend: cannot make %s/%s private (0600): %s\n", dir,
                    e->d_name, strerror(errno));
            ok = false;
        } else {
            changed++;
        }
    }
    closedir(d);
    if (changed > 0) {
        char q[600];
        LOG(LOG_WARN, "data_dir.files_made_private", "data_dir=%s files=%u mode=0600",
            log_quote(q, sizeof(q), dir), changed);
    }
    return ok;
}

static int cmd_init(const config *cfg) {
    tokend_error err;
    store *st = NULL;
    store_options so = {.create_if_missing = true};
    (void)mkdir(cfg->data_dir, 0700);
    if (!data_dir_private(cfg->data_dir)) {
        return 1;
    }
    int rv = store_open(cfg->data_dir, &so, &st, &err);
    if (rv == TOKEND_UNAVAILABLE) {
        fprintf(stderr,
                "tokend: the data dir %s is in use by a running tokend: stop it first, "
                "or give another --data-dir (a store that is served is initialised "
                "already: make another admin token with tokenctl create --ability "
                "tokend:admin)\n",
                cfg->data_dir);
        return 1;
    }
    if (rv != TOKEND_OK) {
        fprintf(stderr, "tokend: cannot open a store in %s: %s\n", cfg->data_dir,
                err.message);
        return 1;
    }
    if (store_is_initialised(st)) {
        fprintf(stderr,
                "tokend: %s is already initialised; nothing was changed.\n"
                "Its admin token was printed when it was initialised. To make another,\n"
                "use an admin credential: tokenctl create --owner %s --name NAME "
                "--ability tokend:admin\n",
                cfg->data_dir, cfg->admin_owner);
        store_close(st);
        return 3;
    }
    char token[TOKEN_MAX_LEN + 1];
    uint8_t digest[TOKEN_DIGEST_LEN];
    token_record rec;
    char *abilities[] = {METHODS_ABILITY_ADMIN};
    int64_t now = rpc_now_ms();
    rv = methods_mint(cfg->token_prefix, cfg->admin_owner, "initial admin token",
                      abilities, 1, now, 0, token, digest, &rec);
    if (rv != TOKEND_OK) {
        fprintf(stderr, "tokend: could not mint the admin token\n");
        store_close(st);
        return 1;
    }
    store_batch *b = store_batch_new();
    rv = b ? store_batch_put_token(b, digest, &rec, &err)
           : error_set(&err, TOKEND_INTERNAL, NULL);
    if (rv == TOKEND_OK) {
        /* The first event of the log, with the token it records. */
        (void)methods_event_created(st, b, &rec, NULL, NULL, NULL, NULL);
        store_batch_mark_initialised(b, now);
        rv = store_batch_commit(st, b, true, &err);
    }
    store_batch_free(b);
    if (rv != TOKEND_OK) {
        fprintf(stderr, "tokend: could not write the store: %s\n", err.message);
        crypto_wipe(token, sizeof(token));
        token_record_free(&rec);
        store_close(st);
        return 1;
    }
    printf("%s\n", token);
    fflush(stdout);
    fprintf(
        stderr,
        "tokend: initialised %s. The line above is the admin token (id %s, owner %s):\n"
        "it is shown only now. Keep it secret; use it as tokenctl --credential.\n",
        cfg->data_dir, rec.id, rec.owner);
    crypto_wipe(token, sizeof(token));
    token_record_free(&rec);
    store_close(st);
    crypto_shutdown();
    return 0;
}

/* The control socket's URL, ipc://<absolute data dir>/control, into
 * url[size]; false if the dir cannot be resolved or the path is too long
 * for a socket (108 bytes with its NUL). */
static bool control_url(const char *dir, char *url, size_t size) {
    char abs[PATH_MAX];
    if (realpath(dir, abs) == NULL) {
        return false;
    }
    int n = snprintf(url, size, "ipc://%s/control", abs);
    return n > 0 && (size_t)n < size && strlen(abs) + strlen("/control") < 108;
}

/* Prints a recovery token: the token alone on stdout, the rest on
 * stderr. */
static void recovery_print(const char *dir, const char *token, const char *id,
                           const char *owner, const char *how) {
    printf("%s\n", token);
    fflush(stdout);
    fprintf(stderr,
            "tokend: the line above is a new admin token (id %s, owner %s) for %s, %s.\n"
            "It is shown only now. Keep it secret; use it as tokenctl --credential.\n",
            id, owner, dir, how);
}

/* tokend runs and holds the store: ask it through the control socket. */
static int admin_token_via_control(const config *cfg) {
    char url[PATH_MAX + 32];
    if (!control_url(cfg->data_dir, url, sizeof(url))) {
        fprintf(
            stderr,
            "tokend: the store in %s is in use (a tokend runs on it), and its control "
            "socket path is too long to reach; stop that tokend and run this again\n",
            cfg->data_dir);
        return 1;
    }
    struct stat sb;
    if (stat(url + strlen("ipc://"), &sb) != 0 || !S_ISSOCK(sb.st_mode)) {
        fprintf(stderr,
                "tokend: the store in %s is in use (locked by another process), and it "
                "has no control socket (%s): that is not a tokend serving it, or one "
                "too old to have one; stop it and run this again\n",
                cfg->data_dir, url + strlen("ipc://"));
        return 1;
    }
    const char *urls[] = {url};
    rpc_client_config rc = {
        .urls = urls, .n_urls = 1, .where = "tokend's control socket"};
    rpc_client *client = NULL;
    rpc_call *call = NULL;
    tokend_error err;
    int rv = rpc_client_open(&rc, &client, &err);
    if (rv == TOKEND_OK) {
        rv = rpc_call_new(client, NULL, NULL, &call, &err);
    }
    Tokend__V1__MintAdminTokenRequest req = TOKEND__V1__MINT_ADMIN_TOKEN_REQUEST__INIT;
    req.owner = cfg->admin_owner;
    if (rv == TOKEND_OK) {
        rv = rpc_call_start(call, &tokend__v1__control__descriptor.methods[0], &req.base,
                            NULL, NULL, 5000, &err);
    }
    const ProtobufCMessage *out = NULL;
    if (rv == TOKEND_OK) {
        rpc_call_wait(call);
        rv = rpc_call_result(call, &out, &err);
    }
    int exit_code = 1;
    if (rv == TOKEND_OK) {
        const Tokend__V1__MintAdminTokenResponse *resp =
            (const Tokend__V1__MintAdminTokenResponse *)out;
        if (resp->token != NULL && resp->token[0] != '\0' && resp->info != NULL) {
            recovery_print(cfg->data_dir, resp->token, resp->info->id, resp->info->owner,
                           "made by the running tokend");
            crypto_wipe(resp->token, strlen(resp->token));
            exit_code = 0;
        } else {
            fprintf(stderr, "tokend: the running tokend's reply holds no token\n");
        }
    } else {
        fprintf(
            stderr,
            "tokend: the store in %s is in use (a tokend runs on it), and asking that "
            "tokend through %s failed: %s\n",
            cfg->data_dir, url, err.message);
    }
    rpc_call_free(call);
    rpc_client_free(client);
    return exit_code;
}

static int cmd_admin_token(const config *cfg) {
    struct stat sb;
    if (stat(cfg->data_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        fprintf(
            stderr,
            "tokend: data dir %s %s; give the --data-dir of the store (the one tokend "
            "serve uses)\n",
            cfg->data_dir,
            stat(cfg->data_dir, &sb) != 0 ? "does not exist" : "is not a directory");
        return 1;
    }
    if (!data_dir_private(cfg->data_dir)) {
        return 1;
    }
    tokend_error err;
    store *st = NULL;
    int rv = store_open(cfg->data_dir, NULL, &st, &err);
    if (rv == TOKEND_NOT_FOUND) {
        fprintf(stderr,
                "tokend: %s holds no tokend store, so there is nothing to recover; to "
                "make one: tokend init --data-dir %s\n",
                cfg->data_dir, cfg->data_dir);
        return 1;
    }
    if (rv == TOKEND_UNAVAILABLE) { /* store_open: the data dir's LOCK is held */
        return admin_token_via_control(cfg);
    }
    if (rv != TOKEND_OK) {
        fprintf(stderr, "tokend: cannot open the store in %s: %s\n", cfg->data_dir,
                err.message);
        return 1;
    }
    if (!store_is_initialised(st)) {
        fprintf(stderr,
                "tokend: the store in %s is not initialised (tokend init did not "
                "complete), so there is no admin to recover; run: tokend init "
                "--data-dir %s\n",
                cfg->data_dir, cfg->data_dir);
        store_close(st);
        return 1;
    }
    char token[TOKEN_MAX_LEN + 1];
    uint8_t digest[TOKEN_DIGEST_LEN];
    token_record rec;
    size_t owner_len = strlen(cfg->admin_owner);
    if (owner_len == 0 || owner_len > TOKEN_OWNER_MAX ||
        !rpc_text_ok(cfg->admin_owner, owner_len)) {
        fprintf(stderr, "tokend: --admin-owner must be 1-%d bytes of text\n",
                TOKEN_OWNER_MAX);
        store_close(st);
        return 2;
    }
    rv = methods_mint_recovery(cfg->token_prefix, cfg->admin_owner, rpc_now_ms(), token,
                               digest, &rec);
    if (rv != TOKEND_OK) {
        fprintf(stderr, "tokend: could not mint the admin token\n");
        store_close(st);
        return 1;
    }
    store_batch *b = store_batch_new();
    rv = b ? store_batch_put_token(b, digest, &rec, &err)
           : error_set(&err, TOKEND_INTERNAL, "out of memory");
    if (rv == TOKEND_OK) {
        /* Its ADMIN_RECOVERY event in the same batch: a failure there
         * fails the commit, and then neither is written. */
        (void)methods_event_created(st, b, &rec, NULL, NULL, NULL, "offline");
        rv = store_batch_commit(st, b, true, &err);
    }
    store_batch_free(b);
    if (rv == TOKEND_OK) {
        methods_log_recovery(&rec, "offline");
        recovery_print(cfg->data_dir, token, rec.id, rec.owner, "written to the store");
    } else {
        fprintf(stderr, "tokend: could not write the store: %s\n", err.message);
    }
    crypto_wipe(token, sizeof(token));
    token_record_free(&rec);
    store_close(st);
    return rv == TOKEND_OK ? 0 : 1;
}

/* How long closing the NNG socket may take once every write is durable. */
#define CLOSE_WATCHDOG_S 10

/* NNG 1.5.2's nng_close() was seen to wait forever for a pipe after a peer
 * on ipc:// died mid-handshake (docs/design.md). By the time it is called
 * the writer has stopped, so every acknowledged write is in the synced
 * WAL; past CLOSE_WATCHDOG_S this ends the process rather than leave a
 * stop hanging until a supervisor's SIGKILL. */
static void *close_watchdog(void *arg) {
    (void)arg;
    struct timespec ts = {.tv_sec = CLOSE_WATCHDOG_S};
    while (nanosleep(&ts, &ts) != 0) {
    }
    LOG(LOG_ERROR, "stop.stuck", "what=nng_close after_s=%d writes=durable action=exit",
        CLOSE_WATCHDOG_S);
    _exit(1);
}

/* The TLS options make sense together: a TLS listener needs the
 * service's certificate and key, and TLS files with no TLS listener would
 * leave the operator believing the RPC is encrypted. Prints the refusal
 * and returns false on a usage error. */
static bool tls_options_ok(const config *cfg) {
    const char *tls_listener = NULL;
    for (size_t i = 0; i < cfg->listen.n && tls_listener == NULL; i++) {
        if (tls_url(cfg->listen.items[i])) {
            tls_listener = cfg->listen.items[i];
        }
    }
    if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL)) {
        fprintf(stderr, "tokend: --tls-cert and --tls-key go together\n");
        return false;
    }
    if (tls_listener != NULL && cfg->tls_cert == NULL) {
        fprintf(stderr,
                "tokend: --listen %s is a TLS URL: it needs --tls-cert PEM and "
                "--tls-key PEM (the service's certificate chain and private key)\n",
                tls_listener);
        return false;
    }
    if (tls_listener == NULL && (cfg->tls_cert != NULL || cfg->tls_client_ca != NULL)) {
        fprintf(stderr,
                "tokend: --%s is set but no --listen URL is tls+tcp://: "
                "nothing would be served over TLS\n",
                cfg->tls_cert != NULL ? "tls-cert" : "tls-client-ca");
        return false;
    }
    return true;
}

/* Starts the --metrics-listen listener on a page of every module's
 * collectors (stats.h): *src must be filled with the sources and, like
 * *page, outlive the listener. Logs where it listens. */
static int serve_metrics(const char *listen, metrics_page *page, stats_sources *src,
                         metrics_http **out, tokend_error *err) {
    metrics_page_init(page, "tokend");
    int rv = stats_page_add(page, src);
    if (rv != TOKEND_OK) {
        return error_set(err, rv, "too many metrics collectors");
    }
    rv = metrics_http_start(listen, page, out, err);
    if (rv == TOKEND_OK) {
        char q[300];
        LOG(LOG_INFO, "metrics.listening", "addr=%s port=%d",
            log_quote(q, sizeof(q), listen), metrics_http_port(*out));
    }
    return rv;
}

/* The alert durations must be more than nothing (0 would make every
 * window empty, or keep no tombstone at all). */
static bool alert_options_ok(const config *cfg) {
    const struct {
        const char *name;
        int64_t value;
    } d[] = {
        {"tombstone-retention", cfg->tombstone_retention_s},
        {"alert-network-history", cfg->alert_network_history_s},
        {"alert-denial-window", cfg->alert_denial_window_s},
        {"alert-volume-interval", cfg->alert_volume_interval_s},
        {"alert-spray-window", cfg->alert_spray_window_s},
        {"alert-repeat", cfg->alert_repeat_s},
    };
    for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++) {
        if (d[i].value <= 0) {
            fprintf(stderr, "tokend: --%s must be longer than 0s\n", d[i].name);
            return false;
        }
    }
    if (cfg->alert_webhook_secret != NULL && cfg->alert_webhook == NULL) {
        fprintf(stderr,
                "tokend: --alert-webhook-secret is set but no --alert-webhook URL "
                "to sign for\n");
        return false;
    }
    return true;
}

/* A logfmt value: bare when it is a number, address or network (what the
 * alerts' own values are), else quoted. */
static const char *log_value(char *buf, unsigned size, const char *s) {
    size_t n = strspn(s, "0123456789abcdefABCDEF.:/-_");
    if (s[0] != '\0' && s[n] == '\0' && n < size) {
        memcpy(buf, s, n + 1);
        return buf;
    }
    return log_quote(buf, size, s);
}

/* Where an alert goes: the audit log (events_append_alert, through the
 * writer, in order), one log line (event=alert, never a token) and, with
 * --alert-webhook, a POST. */
typedef struct alert_sinks {
    events *ev;
    webhook *wh;
} alert_sinks;

/* The alert as an audit event: its request context (the route's path,
 * never a query) and its detail. */
static void alert_record(events *ev, const alert *a) {
    const char *path = strchr(a->route, ' ');
    Tokend__V1__RequestContext ctx = TOKEND__V1__REQUEST_CONTEXT__INIT;
    ctx.method = (char *)a->method;
    ctx.path = (char *)(path != NULL ? path + 1 : a->route[0] == '/' ? a->route : "");
    ctx.client_ip = (char *)a->client_ip;
    ctx.user_agent = (char *)a->user_agent;
    events_field detail[ALERTS_DETAIL_MAX];
    size_t n = a->n_detail < ALERTS_DETAIL_MAX ? a->n_detail : ALERTS_DETAIL_MAX;
    for (size_t i = 0; i < n; i++) {
        detail[i] = (events_field){a->detail[i].key, a->detail[i].value};
    }
    int rv = events_append_alert(ev, a->kind, a->token_id, a->owner, &ctx, detail, n);
    if (rv != TOKEND_OK) {
        LOG(LOG_WARN, "alert.not_recorded", "kind=%s status=%s",
            alerts_kind_name(a->kind), tokend_status_name(rv));
    }
}

static void alert_sink(void *ctx, const alert *a) {
    alert_sinks *sinks = ctx;
    if (sinks->ev != NULL) {
        alert_record(sinks->ev, a);
    }
    char detail[ALERTS_DETAIL_MAX * (ALERTS_KEY_MAX + 2 * ALERTS_VALUE_MAX + 4)] = "";
    size_t used = 0;
    for (size_t i = 0; i < a->n_detail && used < sizeof(detail); i++) {
        char q[2 * ALERTS_VALUE_MAX + 4];
        int n = snprintf(detail + used, sizeof(detail) - used, " %s=%s", a->detail[i].key,
                         log_value(q, sizeof(q), a->detail[i].value));
        used += n > 0 ? (size_t)n : 0;
    }
    char owner[2 * TOKEN_OWNER_MAX + 4], route[2 * ROUTE_MAX + 4], ip[64];
    LOG(LOG_WARN, "alert", "kind=%s id=%s owner=%s client_ip=%s route=%s%s",
        alerts_kind_name(a->kind), a->token_id[0] != '\0' ? a->token_id : "-",
        log_quote(owner, sizeof(owner), a->owner[0] != '\0' ? a->owner : "-"),
        log_value(ip, sizeof(ip), a->client_ip[0] != '\0' ? a->client_ip : "-"),
        log_quote(route, sizeof(route), a->route), detail);
    if (sinks->wh != NULL) {
        char body[ALERTS_JSON_MAX];
        size_t len = alerts_json(a, body, sizeof(body));
        if (len == 0 || !webhook_enqueue(sinks->wh, body, len)) {
            LOG(LOG_WARN, "alert.webhook_dropped", "kind=%s", alerts_kind_name(a->kind));
        }
    }
}

/* Starts the webhook (with --alert-webhook) and the alerts, whose sink
 * writes to `sinks` (its ev set by the caller, its wh set here). */
static int start_alerts(const config *cfg, store *st, writer *w, alert_sinks *sinks,
                        webhook **wh, alerts **al) {
    tokend_error err;
    if (cfg->alert_webhook != NULL) {
        webhook_config wc = {
            .url = cfg->alert_webhook,
            .secret = cfg->alert_webhook_secret,
            .ca_file = cfg->alert_webhook_ca,
            .queue = 1024,
            .timeout_ms = cfg->alert_webhook_timeout_ms,
            .backoff_min_ms = 1000,
            .backoff_max_ms = 300000,
        };
        if (webhook_start(&wc, wh, &err) != TOKEND_OK) {
            fprintf(stderr, "tokend: %s\n", err.message);
            return err.code == TOKEND_INVALID_ARGUMENT ? 2 : 1;
        }
    }
    alerts_config ac = {
        .network_history_ms = cfg->alert_network_history_s * 1000,
        .denials = cfg->alert_denials,
        .denial_window_ms = cfg->alert_denial_window_s * 1000,
        .volume_factor = cfg->alert_volume_factor,
        .volume_min = cfg->alert_volume_min,
        .volume_interval_ms = cfg->alert_volume_interval_s * 1000,
        .spray = cfg->alert_spray,
        .spray_window_ms = cfg->alert_spray_window_s * 1000,
        .repeat_ms = cfg->alert_repeat_s * 1000,
        .tracked = cfg->alert_tracked,
    };
    sinks->wh = *wh;
    if (alerts_start(&ac, st, w, alert_sink, sinks, al, &err) != TOKEND_OK) {
        fprintf(stderr, "tokend: %s\n", err.message);
        return 1;
    }
    return 0;
}

static int cmd_serve(const config *cfg) {
    if (!tls_options_ok(cfg) || !alert_options_ok(cfg)) {
        return 2;
    }
    if (cfg->metrics_listen != NULL && !metrics_http_listen_ok(cfg->metrics_listen)) {
        fprintf(stderr,
                "tokend: --metrics-listen must be IPv4:PORT or [IPv6]:PORT, not "
                "\"%s\"\n",
                cfg->metrics_listen);
        return 2;
    }
    tokend_error err;
    store *st = NULL;
    usage *u = NULL;
    series *sr = NULL;
    writer *w = NULL;
    methods *ms = NULL;
    events *ev = NULL;
    webhook *wh = NULL;
    alerts *al = NULL;
    server *srv = NULL;
    server *control = NULL;
    stats_rpc *rpc_stats = NULL;
    metrics_http *mh = NULL;
    metrics_page page;
    stats_sources sources = {0};
    int exit_code = 1;

    /* Block the stop signals before any thread starts, so every thread
     * inherits the mask and only sigwait() below sees them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (!data_dir_private(cfg->data_dir) || !data_files_private(cfg->data_dir)) {
        return 1;
    }
    store_options so = {.block_cache_bytes = (size_t)cfg->block_cache_mb << 20,
                        .memtable_bytes = (size_t)cfg->memtable_mb << 20,
                        .series_minute_keep_ms = cfg->usage_minute_retention_s * 1000,
                        .series_hour_keep_ms = cfg->usage_hour_retention_s * 1000,
                        .tombstone_retention_ms = cfg->tombstone_retention_s * 1000,
                        .network_history_ms = cfg->alert_network_history_s * 1000};
    struct stat dir_stat;
    if (stat(cfg->data_dir, &dir_stat) != 0 && errno == ENOENT) {
        fprintf(stderr,
                "tokend: the data dir %s does not exist: create a store there first "
                "with tokend init --data-dir %s\n",
                cfg->data_dir, cfg->data_dir);
        return 1;
    }
    int rv = store_open(cfg->data_dir, &so, &st, &err);
    if (rv == TOKEND_UNAVAILABLE) {
        fprintf(stderr,
                "tokend: the data dir %s is in use by a running tokend: stop it first, "
                "or give another --data-dir\n",
                cfg->data_dir);
        return 1;
    }
    if (rv != TOKEND_OK && rv != TOKEND_NOT_FOUND) {
        fprintf(stderr, "tokend: cannot open the store: %s\n", err.message);
        return 1;
    }
    if (rv != TOKEND_OK || !store_is_initialised(st)) {
        fprintf(stderr,
                "tokend: %s holds no initialised tokend store: create one first with "
                "tokend init --data-dir %s\n",
                cfg->data_dir, cfg->data_dir);
        store_close(st);
        return 1;
    }
    u = usage_new(USAGE_CAPACITY);
    sr = series_new(SERIES_CAPACITY, (size_t)cfg->usage_routes,
                    (size_t)cfg->usage_client_ips);
    if (u == NULL || sr == NULL ||
        writer_start(st, u, sr, (int)cfg->usage_flush_ms, &w) != TOKEND_OK) {
        fprintf(stderr, "tokend: cannot start the writer\n");
        goto out;
    }
    /* The audit log before the alerts, which record into it. */
    ev = events_new(st, w, cfg->events_retention_s);
    if (ev == NULL) {
        fprintf(stderr, "tokend: out of memory\n");
        goto out;
    }
    static alert_sinks sinks; /* outlives the alert thread: until exit */
    sinks.ev = ev;
    int alerts_rv = start_alerts(cfg, st, w, &sinks, &wh, &al);
    if (alerts_rv != 0) {
        exit_code = alerts_rv;
        goto out;
    }
    methods_config mc = {
        .prefix = cfg->token_prefix,
        .max_lifetime_s = cfg->max_lifetime_s,
        .verify_requires_credential = cfg->verify_requires_credential,
        .max_tokens_per_owner = (uint64_t)cfg->max_tokens_per_owner,
        .series = sr,
        .alerts = al,
    };
    ms = methods_new(&mc, st, w, u);
    if (ms == NULL) {
        fprintf(stderr, "tokend: out of memory\n");
        goto out;
    }
    if ((rpc_stats = stats_rpc_new(&tokend__v1__token_service__descriptor)) == NULL) {
        fprintf(stderr, "tokend: out of memory\n");
        goto out;
    }
    methods_set_events(ms, ev);
    server_config sc = {
        .listen = (const char *const *)cfg->listen.items,
        .n_listen = cfg->listen.n,
        .max_message = (size_t)cfg->max_message,
        .contexts = (int)cfg->contexts,
        .tls_cert_file = cfg->tls_cert,
        .tls_key_file = cfg->tls_key,
        .tls_client_ca_file = cfg->tls_client_ca,
        .observe = stats_rpc_observe,
        .observe_arg = rpc_stats,
    };
    if (server_start(&sc, methods_service(ms), &srv, &err) != TOKEND_OK) {
        fprintf(stderr, "tokend: %s\n", err.message);
        goto out;
    }
    sources = (stats_sources){
        .rpc = rpc_stats, .srv = srv, .w = w, .st = st, .alerts = al, .wh = wh};
    if (cfg->metrics_listen != NULL &&
        (serve_metrics(cfg->metrics_listen, &page, &sources, &mh, &err) != TOKEND_OK)) {
        fprintf(stderr, "tokend: %s\n", err.message);
        goto out;
    }
    /* The control socket: a server of its own, serving only the Control
     * service, inside the 0700 data dir. Without it tokend still serves;
     * tokend admin-token then needs tokend stopped. */
    char curl[PATH_MAX + 32];
    const char *curls[] = {curl};
    server_config cc = {
        .listen = curls, .n_listen = 1, .max_message = 4096, .contexts = 2};
    if (!control_url(cfg->data_dir, curl, sizeof(curl))) {
        char q[600];
        LOG(LOG_WARN, "control.unavailable", "reason=%s",
            log_quote(q, sizeof(q), "the data dir's path is too long for a socket"));
    } else if (server_start(&cc, methods_control_service(ms), &control, &err) !=
               TOKEND_OK) {
        char q[300];
        LOG(LOG_WARN, "control.unavailable", "reason=%s",
            log_quote(q, sizeof(q), err.message));
    } else {
        char q[600];
        LOG(LOG_INFO, "control.listening", "url=%s", log_quote(q, sizeof(q), curl));
    }
    for (size_t i = 0; i < cfg->listen.n; i++) {
        char q[300];
        const char *url = cfg->listen.items[i];
        LOG(LOG_INFO, "listening", "url=%s%s", log_quote(q, sizeof(q), url),
            !tls_url(url)                ? ""
            : cfg->tls_client_ca != NULL ? " tls=mutual"
                                         : " tls=server");
    }
    {
        char q[600];
        LOG(LOG_INFO, "started", "version=" TOKEND_VERSION " data_dir=%s contexts=%lld",
            log_quote(q, sizeof(q), cfg->data_dir), (long long)cfg->contexts);
    }

    int sig = 0;
    sigwait(&stop, &sig);
    LOG(LOG_INFO, "stopping", "signal=%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    if (control != NULL) {
        (void)server_drain(control, 0);
    }
    int left = server_drain(srv, (int)cfg->drain_ms);
    if (left > 0) {
        LOG(LOG_WARN, "drain.timeout", "in_flight=%d", left);
    }
    exit_code = 0;
out:
    /* Order matters: the metrics page reads them all, so it goes first;
     * the alerts finish their queue (their last events go to the audit
     * log) and hand the writer their last networks; the webhook gives up
     * what it has not delivered; retention queues no more steps; the
     * writer settles its queued jobs (their replies go out through the
     * still-open server), flushes usage, then the server closes, then the
     * store. alerts_observe stays safe until alerts_free. */
    metrics_http_stop(mh);
    alerts_stop(al);
    webhook_stop(wh);
    events_stop(ev);
    writer_stop(w);
    if (srv != NULL) {
        uint64_t served = server_requests(srv);
        pthread_t watchdog;
        bool watching = pthread_create(&watchdog, NULL, close_watchdog, NULL) == 0;
        server_close(srv);
        server_close(control);
        if (watching) {
            pthread_cancel(watchdog); /* asleep in nanosleep, a cancellation point */
            pthread_join(watchdog, NULL);
        }
        LOG(LOG_INFO, "stopped", "requests=%llu", (unsigned long long)served);
    }
    methods_free(ms);
    stats_rpc_free(rpc_stats);
    events_free(ev);
    alerts_free(al);
    usage_free(u);
    series_free(sr);
    store_close(st);
    crypto_shutdown();
    return exit_code;
}

int main(int argc, char **argv) {
    log_set_proc("tokend");
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage_top(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("tokend " TOKEND_VERSION "\n");
        return 0;
    }
    /* Before any file is made: RocksDB creates its files under it. */
    umask(077);
    config_command cmd;
    if (strcmp(argv[1], "init") == 0) {
        cmd = CMD_INIT;
    } else if (strcmp(argv[1], "serve") == 0) {
        cmd = CMD_SERVE;
    } else if (strcmp(argv[1], "admin-token") == 0) {
        cmd = CMD_ADMIN_TOKEN;
    } else {
        fprintf(stderr,
                "tokend: unknown command \"%s\" (commands: init, serve, admin-token; see "
                "tokend --help)\n",
                argv[1]);
        return 2;
    }
    config cfg;
    opt_outcome outcome;
    tokend_error err;
    if (opt_load(&config_table, &cfg, cmd, argc, argv, 2, &outcome, &err) != TOKEND_OK) {
        fprintf(stderr, "tokend: %s\n", err.message);
        if (outcome == OPT_UNKNOWN_KEY) {
            opt_keys(stderr, &config_table, cmd);
        }
        opt_free(&config_table, &cfg);
        return 2;
    }
    if (outcome == OPT_HELP) {
        usage_command(stdout, cmd);
        opt_free(&config_table, &cfg);
        return 0;
    }
    if (secret_core_dumps(cfg.allow_core_dumps, &err) != TOKEND_OK) {
        fprintf(stderr, "tokend: %s\n", err.message);
        opt_free(&config_table, &cfg);
        return 1;
    }
    int rv = 2;
    if (apply_common(&cfg)) {
        rv = cmd == CMD_INIT          ? cmd_init(&cfg)
             : cmd == CMD_ADMIN_TOKEN ? cmd_admin_token(&cfg)
                                      : cmd_serve(&cfg);
    }
    opt_free(&config_table, &cfg);
    return rv;
}
