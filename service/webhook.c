/*
 * webhook.c — the alert webhook's delivery thread behind webhook.h, on
 * NNG's HTTP client (one connection per attempt: alerts are rare, and a
 * kept connection would need its own failure handling).
 *
 * An attempt is started under the queue's lock and waited for outside
 * it, so webhook_stop, which sets `stopping` under the same lock and then
 * cancels the attempt's aio, either finds no attempt started or cancels
 * the one that is: a receiver that hangs never holds a stop up.
 */
#include "webhook.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <nng/supplemental/tls/tls.h>

#include "clock.h"
#include "crypto.h"
#include "error.h"
#include "log.h"
#include "secret.h"

#define WEBHOOK_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

typedef struct body {
    char *text;
    size_t len;
} body;

struct webhook {
    webhook_config cfg;
    char *secret;
    nng_url *url;
    nng_http_client *client;
    nng_tls_config *tls;
    nng_aio *aio;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* on CLOCK_MONOTONIC */
    bool stopping;
    body *ring;
    size_t head, count;
    uint64_t delivered, failed, dropped; /* under lock */
    unsigned int seed;                   /* the jitter's, the thread's */
};

int webhook_sign(const char *secret, long long timestamp, const char *text, size_t len,
                 char out[WEBHOOK_SIGNATURE_LEN + 1]) {
    /* HMAC over "<timestamp>.<body>": the timestamp is signed with the
     * body, so a receiver that refuses old timestamps refuses replays. */
    char prefix[32];
    int plen = snprintf(prefix, sizeof(prefix), "%lld.", timestamp);
    char *msg = malloc((size_t)plen + len);
    if (msg == NULL) {
        return TOKEND_INTERNAL;
    }
    memcpy(msg, prefix, (size_t)plen);
    memcpy(msg + plen, text, len);
    uint8_t mac[32];
    int rv = crypto_hmac_sha256(secret, strlen(secret), msg, (size_t)plen + len, mac);
    free(msg);
    if (rv != TOKEND_OK) {
        return rv;
    }
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "sha256=", 7);
    for (size_t i = 0; i < sizeof(mac); i++) {
        out[7 + 2 * i] = hex[mac[i] >> 4];
        out[8 + 2 * i] = hex[mac[i] & 15];
    }
    out[WEBHOOK_SIGNATURE_LEN] = '\0';
    return TOKEND_OK;
}

/* Builds the request of one attempt; NULL when out of memory. */
static nng_http_req *request_of(webhook *w, const body *b) {
    nng_http_req *req = NULL;
    if (nng_http_req_alloc(&req, w->url) != 0) {
        return NULL;
    }
    long long ts = (long long)time(NULL);
    char ts_text[32];
    snprintf(ts_text, sizeof(ts_text), "%lld", ts);
    int rv = nng_http_req_set_method(req, "POST");
    rv = rv != 0 ? rv : nng_http_req_set_header(req, "Content-Type", "application/json");
    rv = rv != 0 ? rv
                 : nng_http_req_set_header(req, "User-Agent", "tokend/" TOKEND_VERSION);
    rv = rv != 0 ? rv : nng_http_req_set_header(req, "X-Tokend-Timestamp", ts_text);
    if (rv == 0 && w->secret != NULL) {
        char sig[WEBHOOK_SIGNATURE_LEN + 1];
        rv = webhook_sign(w->secret, ts, b->text, b->len, sig) == TOKEND_OK
                 ? nng_http_req_set_header(req, "X-Tokend-Signature", sig)
                 : NNG_ENOMEM;
    }
    rv = rv != 0 ? rv : nng_http_req_copy_data(req, b->text, b->len);
    if (rv != 0) {
        nng_http_req_free(req);
        return NULL;
    }
    return req;
}

/* One attempt at the queue's head, which the caller holds the lock for
 * and which stays queued meanwhile. Returns the HTTP status, or 0 with
 * *why set when there was none. Unlocks while it waits. */
static int attempt(webhook *w, const body *b, const char **why) {
    nng_http_req *req = request_of(w, b);
    nng_http_res *res = NULL;
    if (req == NULL || nng_http_res_alloc(&res) != 0) {
        nng_http_req_free(req);
        *why = "out of memory";
        return 0;
    }
    nng_aio_set_timeout(w->aio, (nng_duration)w->cfg.timeout_ms);
    nng_http_client_transact(w->client, req, res, w->aio);
    pthread_mutex_unlock(&w->lock);
    nng_aio_wait(w->aio);
    int rv = nng_aio_result(w->aio);
    int status = rv == 0 ? nng_http_res_get_status(res) : 0;
    *why = rv != 0 ? nng_strerror(rv) : "";
    nng_http_res_free(res);
    nng_http_req_free(req);
    pthread_mutex_lock(&w->lock);
    return status;
}

/* Sleeps up to ms unless stopped meanwhile; called with the lock held. */
static void backoff_wait(webhook *w, int64_t ms) {
    struct timespec until;
    clock_after(CLOCK_MONOTONIC, ms, &until);
    while (!w->stopping &&
           pthread_cond_timedwait(&w->cond, &w->lock, &until) != ETIMEDOUT) {
    }
}

static void *delivery_thread(void *arg) {
    webhook *w = arg;
    int64_t backoff = w->cfg.backoff_min_ms;
    int attempts = 0;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->stopping && w->count == 0) {
            pthread_cond_wait(&w->cond, &w->lock);
        }
        if (w->stopping) {
            break;
        }
        const char *why = "";
        int status = attempt(w, &w->ring[w->head], &why);
        attempts++;
        if (status >= 200 && status < 300) {
            body *b = &w->ring[w->head];
            free(b->text);
            b->text = NULL;
            w->head = (w->head + 1) % w->cfg.queue;
            w->count--;
            w->delivered++;
            backoff = w->cfg.backoff_min_ms;
            attempts = 0;
            continue;
        }
        if (w->stopping) {
            break; /* the attempt was cancelled */
        }
        w->failed++;
        /* Up to a quarter more, so that many tokends do not retry in step. */
        int64_t wait =
            backoff + (int64_t)(rand_r(&w->seed) % (unsigned)(backoff / 4 + 1));
        char q[128];
        LOG(LOG_WARN, "alert.webhook_failed",
            "status=%d error=%s attempt=%d retry_ms=%lld", status,
            log_quote(q, sizeof(q), why), attempts, (long long)wait);
        backoff_wait(w, wait);
        backoff =
            backoff * 2 > w->cfg.backoff_max_ms ? w->cfg.backoff_max_ms : backoff * 2;
    }
    size_t left = w->count;
    pthread_mutex_unlock(&w->lock);
    if (left > 0) {
        LOG(LOG_WARN, "alert.webhook_undelivered", "alerts=%zu", left);
    }
    return NULL;
}

static int client_setup(webhook *w, const char *url, const char *ca_file,
                        tokend_error *err) {
    if (nng_url_parse(&w->url, url) != 0) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "--alert-webhook does not parse as a URL");
    }
    bool https = strcmp(w->url->u_scheme, "https") == 0;
    if (!https && strcmp(w->url->u_scheme, "http") != 0) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "--alert-webhook must be an http:// or https:// URL");
    }
    int rv = nng_http_client_alloc(&w->client, w->url);
    if (rv == 0 && https) {
        rv = nng_tls_config_alloc(&w->tls, NNG_TLS_MODE_CLIENT);
        rv = rv != 0 ? rv : nng_tls_config_server_name(w->tls, w->url->u_hostname);
        rv = rv != 0 ? rv : nng_tls_config_auth_mode(w->tls, NNG_TLS_AUTH_MODE_REQUIRED);
        rv = rv != 0 ? rv
                     : nng_tls_config_ca_file(
                           w->tls, ca_file != NULL ? ca_file : WEBHOOK_CA_BUNDLE);
        rv = rv != 0 ? rv : nng_http_client_set_tls(w->client, w->tls);
    }
    rv = rv != 0 ? rv : nng_aio_alloc(&w->aio, NULL, NULL);
    if (rv != 0) {
        return error_set(err, TOKEND_INTERNAL, "cannot set up the alert webhook: %s",
                         nng_strerror(rv));
    }
    return TOKEND_OK;
}

int webhook_start(const webhook_config *cfg, webhook **out, tokend_error *err) {
    *out = NULL;
    if (cfg == NULL || cfg->url == NULL || cfg->queue == 0 || cfg->timeout_ms <= 0 ||
        cfg->backoff_min_ms <= 0 || cfg->backoff_max_ms < cfg->backoff_min_ms) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "webhook_start: bad config");
    }
    webhook *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return error_set(err, TOKEND_INTERNAL, "out of memory for the alert webhook");
    }
    w->cfg = *cfg;
    w->cfg.url = NULL; /* the caller's; only the parsed copy is kept */
    w->cfg.ca_file = NULL;
    w->seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    w->ring = calloc(cfg->queue, sizeof(*w->ring));
    if (cfg->secret != NULL && cfg->secret[0] != '\0') {
        w->secret = strdup(cfg->secret);
    }
    w->cfg.secret = NULL;
    int rv = w->ring == NULL ||
                     (cfg->secret != NULL && cfg->secret[0] != '\0' && w->secret == NULL)
                 ? error_set(err, TOKEND_INTERNAL, "out of memory for the alert webhook")
                 : client_setup(w, cfg->url, cfg->ca_file, err);
    if (rv == TOKEND_OK && pthread_create(&w->thread, NULL, delivery_thread, w) != 0) {
        rv = error_set(err, TOKEND_INTERNAL, "cannot start the alert webhook's thread");
    }
    if (rv != TOKEND_OK) {
        webhook_stop(w);
        return rv;
    }
    w->started = true;
    *out = w;
    return TOKEND_OK;
}

bool webhook_enqueue(webhook *w, const char *text, size_t len) {
    if (w == NULL) {
        return false;
    }
    char *copy = malloc(len + 1);
    pthread_mutex_lock(&w->lock);
    bool ok = copy != NULL && !w->stopping && w->count < w->cfg.queue;
    if (ok) {
        memcpy(copy, text, len);
        copy[len] = '\0';
        w->ring[(w->head + w->count) % w->cfg.queue] = (body){copy, len};
        w->count++;
        pthread_cond_signal(&w->cond);
    } else {
        w->dropped++;
    }
    pthread_mutex_unlock(&w->lock);
    if (!ok) {
        free(copy);
    }
    return ok;
}

void webhook_counts(webhook *w, uint64_t *delivered, uint64_t *failed_attempts,
                    uint64_t *dropped) {
    pthread_mutex_lock(&w->lock);
    *delivered = w->delivered;
    *failed_attempts = w->failed;
    *dropped = w->dropped;
    pthread_mutex_unlock(&w->lock);
}

void webhook_stop(webhook *w) {
    if (w == NULL) {
        return;
    }
    if (w->started) {
        pthread_mutex_lock(&w->lock);
        w->stopping = true;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
        nng_aio_cancel(w->aio);
        pthread_join(w->thread, NULL);
    }
    if (w->aio != NULL) {
        nng_aio_free(w->aio);
    }
    if (w->client != NULL) {
        nng_http_client_free(w->client);
    }
    if (w->tls != NULL) {
        nng_tls_config_free(w->tls);
    }
    if (w->url != NULL) {
        nng_url_free(w->url);
    }
    for (size_t i = 0; w->ring != NULL && i < w->count; i++) {
        free(w->ring[(w->head + i) % w->cfg.queue].text);
    }
    free(w->ring);
    if (w->secret != NULL) {
        secret_free(w->secret);
    }
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
}
