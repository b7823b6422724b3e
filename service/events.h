/*
 * events.h — the audit log: management events and alerts, append-only and
 * hash-chained (tokend.proto's Event; docs/audit.md).
 *
 * An event is written in the same store_batch as the change it records
 * (events_put, from a writer job's apply or from `tokend init` / `tokend
 * admin-token` offline), so the change and its event are durable together
 * or not at all. Its seq and prev_hash come from the log's head through
 * the batch (store.h), so the writer's order is the chain's order; a
 * failed commit leaves the head where it was.
 *
 * What has no change of its own to ride on (a refused call, an alert) is
 * queued through the writer as a job that only appends its event
 * (events_refused, events_append_alert): the caller never waits for it.
 * Refusals are bounded, since anyone can cause them: see
 * events_refused. Retention deletes old events in bounded steps through
 * the writer as well.
 *
 * Never a token or a credential in an event: callers pass ids, owners,
 * reasons and the request's context (its path without the query).
 */
#ifndef TOKEND_EVENTS_H
#define TOKEND_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokend.pb-c.h"

#include "store.h"
#include "tokend.h"
#include "writer.h"

/* One key/value of an event's detail. */
typedef struct events_field {
    const char *key;
    const char *value;
} events_field;

/* An event as the code that records it knows it. Strings may be NULL
 * (empty); they are copied or packed before the call returns. */
typedef struct events_what {
    Tokend__V1__EventKind kind;
    const char *actor_id, *actor_owner; /* the caller credential's */
    const char *owner, *token_id;       /* what the event concerns */
    const Tokend__V1__RequestContext *context;
    const events_field *detail;
    size_t n_detail;
} events_what;

/* At most this many detail fields, each value at most this many bytes
 * (longer ones are cut at a UTF-8 boundary). */
#define EVENTS_DETAIL_MAX 16
#define EVENTS_VALUE_MAX 4096

/* Appends the event to `b` at the head through the batch, stamped
 * `now_ms`: seq = head + 1, prev_hash = the head's hash, hash =
 * SHA-256(prev_hash || the Event packed without hash). Call it from the
 * thread that commits `b`. On failure (TOKEND_INTERNAL: out of memory)
 * it fails the whole batch too (store_batch_fail): the change the event
 * records may be in it already, and neither is written without the
 * other. */
int events_put(store *st, store_batch *b, int64_t now_ms, const events_what *what,
               tokend_error *err);

/* The service's side of the log: queued events, the refusal limiter and
 * retention. */
typedef struct events events;

/* Starts it over `st` and `w` (both outlive it). retention_s: events
 * older than this are deleted (0 keeps them forever). NULL when out of
 * memory. */
events *events_new(store *st, writer *w, int64_t retention_s);

/* Stops the retention thread; call before writer_stop. Queued events are
 * written by writer_stop. NULL is ignored. */
void events_stop(events *ev);

/* Frees it once the writer has stopped. NULL is ignored. */
void events_free(events *ev);

/* The limiter's rule, documented in docs/audit.md: a refusal with the same
 * method, status and caller key (the credential's id, else the client IP,
 * else none) as one recorded less than EVENTS_REFUSAL_WINDOW_MS ago is not
 * recorded; nor is one past the overall rate (EVENTS_REFUSALS_PER_S a
 * second, bursts of EVENTS_REFUSALS_BURST). Each one not recorded is
 * counted, and the next recorded refusal carries the count in its detail
 * as unrecorded_before. */
#define EVENTS_REFUSAL_WINDOW_MS 10000
#define EVENTS_REFUSALS_PER_S 10
#define EVENTS_REFUSALS_BURST 20
/* Queued events (refusals and alerts) not yet written, at most. */
#define EVENTS_QUEUE_MAX 4096

/* Whether a refusal with this key is to be recorded now (see above);
 * when it is, *unrecorded_before is the count to put in its detail. Any
 * thread. */
bool events_refusal_admit(events *ev, const char *method, int status,
                          const char *actor_id, const char *client_ip,
                          uint64_t *unrecorded_before);

/* Makes `what` a CALL_REFUSED event: its owner the caller's (so an owner
 * sees its own refused calls, and never learns of another's), else the
 * target `owner`; detail method, status, reason, target_owner (when the
 * target is another owner's) and, when not 0, unrecorded_before (into
 * fields[0..5) and buf, which must outlive the put). */
void events_refusal_detail(events_what *what, events_field fields[5], char buf[24],
                           const char *method, int status, const char *reason,
                           const char *owner, uint64_t unrecorded_before);

/* Records a refused management call (CALL_REFUSED) if the limiter admits
 * it, queued through the writer; never waits for the write. actor_id and
 * actor_owner: the caller credential's when it was valid, else NULL. */
void events_refused(events *ev, const char *method, int status, const char *reason,
                    const char *actor_id, const char *actor_owner, const char *owner,
                    const Tokend__V1__RequestContext *context);

/* For alerts: queues an event of `kind` (an ALERT_* kind) about token
 * `token_id` of `owner` (either may be NULL), with the Verify's context
 * (may be NULL) and n_detail detail fields, through the writer, durably
 * and in the writer's order. Any thread; copies everything and returns at
 * once: TOKEND_OK (queued), TOKEND_INVALID_ARGUMENT (not an alert kind,
 * over EVENTS_DETAIL_MAX fields, a NULL key, a string that is not UTF-8
 * text without control characters; the context is taken as checked, as
 * the server checks a Verify's), TOKEND_RESOURCE_EXHAUSTED (over
 * EVENTS_QUEUE_MAX events queued: dropped and counted in the log line
 * event=events.dropped), TOKEND_UNAVAILABLE (stopping). */
int events_append_alert(events *ev, Tokend__V1__EventKind kind, const char *token_id,
                        const char *owner, const Tokend__V1__RequestContext *context,
                        const events_field *detail, size_t n_detail);

/* ListEvents' reading: a query, already authorized. */
typedef struct events_query {
    const char *owner;          /* NULL: any */
    const char *token_id;       /* NULL: any */
    Tokend__V1__EventKind kind; /* EVENT_ANY: any */
    int64_t since_ms;
    uint64_t after;   /* from the cursor; 0: from the start */
    size_t page_size; /* 1..1000 */
} events_query;

/* At most this many keys read per call, matching or not (so a filter that
 * matches little costs a bounded scan; `more` then says go on). */
#define EVENTS_SCAN_MAX 10000
/* A page's events, packed, at most (the reply stays within 1 MiB). */
#define EVENTS_PAGE_BYTES ((1u << 20) - 4096)
#define EVENTS_CURSOR_LEN 16

/* One page: *out a malloc'd array of *n decoded events (free with
 * events_page_free), *next the cursor (EVENTS_CURSOR_LEN hex digits, or
 * "" when the log is empty), *more whether the page was cut. */
int events_list(store *st, const events_query *q, Tokend__V1__Event ***out, size_t *n,
                char next[EVENTS_CURSOR_LEN + 1], bool *more, tokend_error *err);
void events_page_free(Tokend__V1__Event **page, size_t n);

/* A cursor: false if it is not one events_list writes. */
bool events_cursor_decode(const char *cursor, uint64_t *after);

#endif /* TOKEND_EVENTS_H */
