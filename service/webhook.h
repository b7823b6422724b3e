/*
 * webhook.h — delivery of alerts to `--alert-webhook URL`: a POST of the
 * alert's JSON (alerts_json) with
 *   Content-Type: application/json
 *   X-Tokend-Timestamp: <Unix seconds of the attempt>
 *   X-Tokend-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
 * (the signature only with a secret). A 2xx answer delivers it; anything
 * else (another status, no connection, no answer within the timeout) is
 * tried again after a backoff that starts at backoff_min_ms and doubles
 * up to backoff_max_ms, with up to a quarter more of jitter, until it is
 * delivered or tokend stops.
 *
 * One delivery thread, bodies in order, a bounded queue: webhook_enqueue
 * copies the body and never waits for the network; a full queue drops
 * the body and counts it. The alert itself is kept regardless (the log
 * line, the audit event): the webhook is a notification, not the record.
 * HTTP and TLS are NNG's (nng/supplemental/http); an https:// URL is
 * checked against ca_file, by default the system's CA bundle, and its
 * host name.
 */
#ifndef TOKEND_WEBHOOK_H
#define TOKEND_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokend.h"

typedef struct webhook_config {
    const char *url;        /* http:// or https:// */
    const char *secret;     /* HMAC key; NULL or "": no signature header */
    const char *ca_file;    /* https://: CAs (PEM) to check it by; NULL: the system's */
    size_t queue;           /* bodies waiting at most */
    int64_t timeout_ms;     /* one attempt at most */
    int64_t backoff_min_ms; /* first retry after about this */
    int64_t backoff_max_ms; /* retries at most this far apart */
} webhook_config;

typedef struct webhook webhook;

/* Starts the delivery thread. Returns TOKEND_OK with *out set,
 * TOKEND_INVALID_ARGUMENT for a URL that is not http:// or https:// (or
 * does not parse), TOKEND_INTERNAL otherwise; *err says why. The secret is
 * copied (and wiped when freed). */
int webhook_start(const webhook_config *cfg, webhook **out, tokend_error *err);

/* Queues a copy of body[0..len) for delivery. Returns false (and counts a
 * drop) if the queue is full or the webhook stopping. Any thread. */
bool webhook_enqueue(webhook *w, const char *body, size_t len);

/* Delivered bodies, failed attempts and dropped bodies so far. */
void webhook_counts(webhook *w, uint64_t *delivered, uint64_t *failed_attempts,
                    uint64_t *dropped);

/* Writes the signature header's value, "sha256=" and 64 hex digits, of
 * `body` at `timestamp` into out. TOKEND_OK or TOKEND_INTERNAL. */
#define WEBHOOK_SIGNATURE_LEN (7 + 64)
int webhook_sign(const char *secret, long long timestamp, const char *body, size_t len,
                 char out[WEBHOOK_SIGNATURE_LEN + 1]);

/* Cancels an attempt under way, stops the thread (bodies not yet
 * delivered are counted in the log line), frees everything. NULL is
 * ignored. */
void webhook_stop(webhook *w);

#endif /* TOKEND_WEBHOOK_H */
