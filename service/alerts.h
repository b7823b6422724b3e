/*
 * alerts.h — "whether anything looks wrong", computed off the verify path.
 *
 * Each Verify hands the module an observation (alerts_observe): what it
 * answered, the token's id and owner when it exists, the digest when it
 * does not, the request's context. That costs a copy into a bounded
 * lock-free queue and never blocks; a full queue drops the observation
 * and counts the drop. One alert thread takes the observations and runs
 * the detectors (tokend.proto's EventKind has the kinds):
 *
 *   ALERT_REVOKED_TOKEN_USED   a NOT_FOUND whose digest has a tombstone
 *                              (store.h): a revoked token presented;
 *   ALERT_EXPIRED_TOKEN_USED   an EXPIRED verdict;
 *   ALERT_NEW_NETWORK          a token used from a /24 (IPv4) or /64 (IPv6)
 *                              it did not use within network_history_ms;
 *                              its first network ever is no alert;
 *   ALERT_DENIAL_BURST         `denials` INSUFFICIENT_ABILITY or EXPIRED
 *                              verdicts for one token within
 *                              denial_window_ms;
 *   ALERT_VOLUME_SPIKE         a token's calls in one volume_interval_ms at
 *                              least volume_min and over volume_factor
 *                              times its exponentially weighted baseline of
 *                              the intervals before;
 *   ALERT_UNKNOWN_TOKEN_SPRAY  `spray` well-formed tokens neither stored
 *                              nor tombstoned from one client address
 *                              within spray_window_ms.
 *
 * Every kind is quiet for repeat_ms after it fired for one token (or, a
 * spray, one client), so one incident is one alert. The detectors' state
 * is two fixed tables (tokens and clients, `tracked` slots each; the
 * least recently seen of a few candidates makes room), so memory does not
 * grow with what callers send. The networks a token was seen from are
 * written behind through the writer (store.h's networks family, a job
 * every few seconds), so a restart does not alert on every token again.
 *
 * Each alert goes to the sink, on the alert thread; the sink must not
 * block for long (the service's logs it and queues the webhook).
 */
#ifndef TOKEND_ALERTS_H
#define TOKEND_ALERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "route.h"
#include "store.h"
#include "token.h"
#include "tokend.pb-c.h"
#include "writer.h"

/* The alert kinds are EventKind's from ALERTS_FIRST on, ALERTS_KINDS of
 * them; counts are indexed by kind - ALERTS_FIRST. */
#define ALERTS_FIRST TOKEND__V1__EVENT_KIND__ALERT_REVOKED_TOKEN_USED
#define ALERTS_KINDS 6
#define ALERTS_DETAIL_MAX 3
#define ALERTS_KEY_MAX 16
#define ALERTS_VALUE_MAX 48

typedef struct alert_field {
    char key[ALERTS_KEY_MAX];
    char value[ALERTS_VALUE_MAX];
} alert_field;

/* One alert, as the sink gets it. Strings are NUL-terminated, "" when
 * unknown (a spray has no token id or owner). The context's strings
 * passed route_context_ok; `route` is route_normalise's, never a query. */
typedef struct alert {
    Tokend__V1__EventKind kind;
    int64_t time_ms;
    char token_id[TOKEN_ID_LEN + 1];
    char owner[TOKEN_OWNER_MAX + 1];
    char method[ROUTE_METHOD_MAX + 1];
    char route[ROUTE_MAX + 1];
    char client_ip[ROUTE_CLIENT_IP_MAX + 1];
    char user_agent[ROUTE_USER_AGENT_MAX + 1];
    size_t n_detail;
    alert_field detail[ALERTS_DETAIL_MAX];
} alert;

/* Called on the alert thread for each alert; `a` is valid for the call. */
typedef void (*alerts_sink)(void *ctx, const alert *a);

/* The thresholds (service/config.c's --alert-* and --tombstone-retention
 * options). Durations in ms; every field must be positive. */
typedef struct alerts_config {
    int64_t network_history_ms;
    int64_t denials, denial_window_ms;
    int64_t volume_factor, volume_min, volume_interval_ms;
    int64_t spray, spray_window_ms;
    int64_t repeat_ms;
    int64_t tracked; /* slots of the token and of the client table */
} alerts_config;

typedef struct alerts alerts;

/* Starts the alert thread over `st` (tombstones, networks) and `w` (the
 * networks' writes; both must outlive alerts_stop), handing alerts to
 * sink(sink_ctx, ...). Returns TOKEND_OK with *out set, TOKEND_INVALID_ARGUMENT
 * for a bad config, or TOKEND_INTERNAL (no memory, no thread). */
int alerts_start(const alerts_config *cfg, store *st, writer *w, alerts_sink sink,
                 void *sink_ctx, alerts **out, tokend_error *err);

/* Hands one Verify's outcome to the alert thread; never blocks. `verdict`
 * is a TOKEND__V1__STATUS__ value (OK, NOT_FOUND, EXPIRED,
 * INSUFFICIENT_ABILITY; others are ignored); id and owner the token's
 * (NULL for NOT_FOUND), digest the presented token's SHA-256 (for
 * NOT_FOUND); ctx the request's context, checked by route_context_ok (may
 * be NULL); route its route_normalise, when the caller has it already
 * (NULL: made here from ctx). NULL `a`, or one stopped, ignores it. */
void alerts_observe(alerts *a, int verdict, const char *id, const char *owner,
                    const uint8_t digest[TOKEN_DIGEST_LEN],
                    const Tokend__V1__RequestContext *ctx, const char *route,
                    int64_t now_ms);

/* Alerts raised per kind (counts[kind - ALERTS_FIRST]) and observations
 * dropped on a full queue, for metrics. Any thread. */
void alerts_counts(alerts *a, uint64_t counts[ALERTS_KINDS], uint64_t *dropped);

/* The kind's name as tokend.proto spells it ("ALERT_NEW_NETWORK"). */
const char *alerts_kind_name(Tokend__V1__EventKind kind);

/* The webhook's JSON body of `a` into out[0..cap): {"kind", "time_unix_ms",
 * "token_id", "owner", "context": {"method", "route", "client_ip",
 * "user_agent"}, "detail": {key: value}}. Returns its length, or 0 if cap
 * is too small (ALERTS_JSON_MAX always suffices). */
#define ALERTS_JSON_MAX 4096
size_t alerts_json(const alert *a, char *out, size_t cap);

/* Stops taking observations, lets the thread finish the queued ones and
 * queues the last networks' write to the writer; then joins the thread.
 * Call after the servers drained and before writer_stop. alerts_observe
 * stays safe (it drops) until alerts_free. */
void alerts_stop(alerts *a);

/* Frees a stopped module, once nothing calls alerts_observe any more.
 * NULL is ignored. */
void alerts_free(alerts *a);

#endif /* TOKEND_ALERTS_H */
