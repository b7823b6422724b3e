/*
 * events.c — the audit log behind events.h: building, hashing and
 * appending events, the queue of events with no change of their own, the
 * refusal limiter, retention and ListEvents' reading.
 */
#include "events.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "crypto.h"
#include "error.h"
#include "log.h"
#include "rpc.h"
#include "token.h"

/* ------------------------------------------------------------------------
 * Building one event. */

/* Bytes of `s` kept, at most `max`, never cutting a UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t max) {
    size_t len = strlen(s);
    if (len <= max) {
        return len;
    }
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80) {
        max--;
    }
    return max;
}

/* A copy of `path` fit for the log: no query or fragment (they may carry
 * secrets), and any segment shaped like a token replaced by "{token}". */
static char *safe_path(const char *path) {
    size_t len = strcspn(path, "?#");
    char *out = malloc(len + 1);
    if (out == NULL) {
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t seg = strcspn(path + i, "/?#");
        if (seg > len - i) {
            seg = len - i;
        }
        if (seg > 0 && token_well_formed(path + i, seg) && seg >= 7) {
            memcpy(out + o, "{token}", 7);
            o += 7;
        } else {
            memcpy(out + o, path + i, seg);
            o += seg;
        }
        i += seg;
        if (i < len) {
            out[o++] = path[i++]; /* the '/' */
        }
    }
    out[o] = '\0';
    return out;
}

static char *dup_cut(const char *s, size_t max) {
    if (s == NULL) {
        return strdup("");
    }
    return strndup(s, utf8_cut(s, max));
}

/* An event whose strings it owns: what the queue and events_put build
 * the packed Event from. */
typedef struct owned_event {
    Tokend__V1__Event msg;
    Tokend__V1__RequestContext ctx;
    Tokend__V1__EventField *fields;
    Tokend__V1__EventField **field_ptrs;
} owned_event;

static void owned_free(owned_event *e) {
    if (e == NULL) {
        return;
    }
    free(e->msg.actor_id);
    free(e->msg.actor_owner);
    free(e->msg.owner);
    free(e->msg.token_id);
    if (e->msg.context != NULL) { /* else the fields are protobuf-c's static "" */
        free(e->ctx.method);
        free(e->ctx.path);
        free(e->ctx.client_ip);
        free(e->ctx.user_agent);
    }
    for (size_t i = 0; i < e->msg.n_detail; i++) {
        free(e->fields[i].key);
        free(e->fields[i].value);
    }
    free(e->fields);
    free(e->field_ptrs);
    free(e);
}

/* Copies `what` (bounded) into a new owned_event; NULL when out of
 * memory. */
static owned_event *owned_new(int64_t now_ms, const events_what *what) {
    owned_event *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return NULL;
    }
    tokend__v1__event__init(&e->msg);
    tokend__v1__request_context__init(&e->ctx);
    e->msg.time_unix_ms = now_ms;
    e->msg.kind = what->kind;
    e->msg.actor_id = dup_cut(what->actor_id, TOKEN_ID_LEN);
    e->msg.actor_owner = dup_cut(what->actor_owner, TOKEN_OWNER_MAX);
    e->msg.owner = dup_cut(what->owner, TOKEN_OWNER_MAX);
    e->msg.token_id = dup_cut(what->token_id, TOKEN_ID_LEN);
    bool oom = e->msg.actor_id == NULL || e->msg.actor_owner == NULL ||
               e->msg.owner == NULL || e->msg.token_id == NULL;
    const Tokend__V1__RequestContext *c = what->context;
    if (c != NULL) {
        e->msg.context = &e->ctx;
        e->ctx.method = dup_cut(c->method, 16);
        e->ctx.path = safe_path(c->path != NULL ? c->path : "");
        e->ctx.client_ip = dup_cut(c->client_ip, 45);
        e->ctx.user_agent = dup_cut(c->user_agent, 256);
        oom = oom || e->ctx.method == NULL || e->ctx.path == NULL ||
              e->ctx.client_ip == NULL || e->ctx.user_agent == NULL;
    }
    size_t n = what->n_detail < EVENTS_DETAIL_MAX ? what->n_detail : EVENTS_DETAIL_MAX;
    e->fields = calloc(n + 1, sizeof(*e->fields));
    e->field_ptrs = calloc(n + 1, sizeof(*e->field_ptrs));
    oom = oom || e->fields == NULL || e->field_ptrs == NULL;
    for (size_t i = 0; !oom && i < n; i++) {
        tokend__v1__event_field__init(&e->fields[i]);
        e->fields[i].key = dup_cut(what->detail[i].key, 64);
        e->fields[i].value = dup_cut(what->detail[i].value, EVENTS_VALUE_MAX);
        e->field_ptrs[i] = &e->fields[i];
        e->msg.n_detail = i + 1;
        oom = e->fields[i].key == NULL || e->fields[i].value == NULL;
    }
    e->msg.detail = e->field_ptrs;
    if (oom) {
        owned_free(e);
        return NULL;
    }
    return e;
}

/* Chains, packs and appends an owned event at the head through `b`. The
 * stored bytes are the Event packed without hash, then the hash as field
 * 11 (tag 0x5a, length 32): exactly the Event packed with it, since
 * protobuf-c packs fields in number order and hash is the last. */
static int owned_put(store *st, store_batch *b, owned_event *e, tokend_error *err) {
    uint64_t head = 0;
    uint8_t prev[STORE_EVENT_HASH_LEN];
    store_batch_event_head(st, b, &head, prev);
    e->msg.seq = head + 1;
    e->msg.prev_hash.data = prev;
    e->msg.prev_hash.len = sizeof(prev);
    e->msg.hash.data = NULL;
    e->msg.hash.len = 0;
    size_t len = tokend__v1__event__get_packed_size(&e->msg);
    uint8_t *buf = malloc(STORE_EVENT_HASH_LEN + len + 2 + STORE_EVENT_HASH_LEN);
    if (buf == NULL) {
        return error_set(err, TOKEND_INTERNAL, "out of memory packing an event");
    }
    memcpy(buf, prev, STORE_EVENT_HASH_LEN);
    tokend__v1__event__pack(&e->msg, buf + STORE_EVENT_HASH_LEN);
    uint8_t hash[STORE_EVENT_HASH_LEN];
    int rv = crypto_sha256(buf, STORE_EVENT_HASH_LEN + len, hash);
    if (rv == TOKEND_OK) {
        uint8_t *tail = buf + STORE_EVENT_HASH_LEN + len;
        tail[0] = 0x5a;
        tail[1] = STORE_EVENT_HASH_LEN;
        memcpy(tail + 2, hash, STORE_EVENT_HASH_LEN);
        rv = store_batch_put_event(st, b, e->msg.seq, buf + STORE_EVENT_HASH_LEN,
                                   len + 2 + STORE_EVENT_HASH_LEN, hash, e->msg.owner,
                                   e->msg.token_id, err);
    } else {
        error_set(err, rv, "hashing an event failed");
    }
    e->msg.prev_hash.data = NULL;
    e->msg.prev_hash.len = 0;
    free(buf);
    if (rv != TOKEND_OK) {
        /* The change this event records may be in the batch already:
         * neither may be written without the other. */
        store_batch_fail(b, rv, "an audit event could not be added");
    }
    return rv;
}

int events_put(store *st, store_batch *b, int64_t now_ms, const events_what *what,
               tokend_error *err) {
    owned_event *e = owned_new(now_ms, what);
    if (e == NULL) {
        store_batch_fail(b, TOKEND_INTERNAL, "out of memory building an audit event");
        return error_set(err, TOKEND_INTERNAL, "out of memory building an event");
    }
    int rv = owned_put(st, b, e, err);
    owned_free(e);
    return rv;
}

/* ------------------------------------------------------------------------
 * The service's side. */

#define LIMITER_SLOTS 1024

typedef struct limiter_slot {
    uint64_t key; /* 0: empty */
    int64_t last_ms;
} limiter_slot;

struct events {
    store *st;
    writer *w;
    int64_t retention_ms;
    atomic_uint queued;
    atomic_ullong dropped;
    pthread_mutex_t lock; /* the limiter's */
    limiter_slot slots[LIMITER_SLOTS];
    double tokens;
    int64_t tokens_ms;
    uint64_t unrecorded;
    /* retention */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond;
    bool stopping;
    atomic_bool retention_queued;
    atomic_bool retention_more;
};

/* FNV-1a over the limiter's key parts. */
static uint64_t key_hash(const char *method, int status, const char *who) {
    uint64_t h = 1469598103934665603ULL;
    const char *parts[] = {method != NULL ? method : "", who != NULL ? who : ""};
    for (int p = 0; p < 2; p++) {
        for (const char *s = parts[p]; *s != '\0'; s++) {
            h = (h ^ (unsigned char)*s) * 1099511628211ULL;
        }
        h = (h ^ 0xff) * 1099511628211ULL;
    }
    h = (h ^ (uint64_t)(unsigned)status) * 1099511628211ULL;
    return h != 0 ? h : 1;
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool events_refusal_admit(events *ev, const char *method, int status,
                          const char *actor_id, const char *client_ip,
                          uint64_t *unrecorded_before) {
    const char *who = actor_id != NULL && actor_id[0] != '\0' ? actor_id : client_ip;
    uint64_t key = key_hash(method, status, who);
    int64_t now = mono_ms();
    pthread_mutex_lock(&ev->lock);
    limiter_slot *s = &ev->slots[key % LIMITER_SLOTS];
    double refill = (double)(now - ev->tokens_ms) * EVENTS_REFUSALS_PER_S / 1000.0;
    ev->tokens_ms = now;
    ev->tokens += refill;
    if (ev->tokens > EVENTS_REFUSALS_BURST) {
        ev->tokens = EVENTS_REFUSALS_BURST;
    }
    bool admit = !(s->key == key && now - s->last_ms < EVENTS_REFUSAL_WINDOW_MS) &&
                 ev->tokens >= 1.0;
    if (admit) {
        ev->tokens -= 1.0;
        s->key = key;
        s->last_ms = now;
        *unrecorded_before = ev->unrecorded;
        ev->unrecorded = 0;
    } else {
        ev->unrecorded++;
    }
    pthread_mutex_unlock(&ev->lock);
    return admit;
}

void events_refusal_detail(events_what *what, events_field fields[5], char buf[24],
                           const char *method, int status, const char *reason,
                           const char *owner, uint64_t unrecorded_before) {
    bool actor = what->actor_owner != NULL && what->actor_owner[0] != '\0';
    bool other = owner != NULL && owner[0] != '\0' &&
                 (!actor || strcmp(owner, what->actor_owner) != 0);
    what->owner = actor ? what->actor_owner : owner;
    fields[0] = (events_field){"method", method};
    fields[1] = (events_field){"status", tokend_status_name(status)};
    fields[2] = (events_field){"reason", reason};
    size_t n = 3;
    if (actor && other) {
        fields[n++] = (events_field){"target_owner", owner};
    }
    if (unrecorded_before > 0) {
        snprintf(buf, 24, "%" PRIu64, unrecorded_before);
        fields[n++] = (events_field){"unrecorded_before", buf};
    }
    what->kind = TOKEND__V1__EVENT_KIND__CALL_REFUSED;
    what->detail = fields;
    what->n_detail = n;
}

/* A job that only appends one event. */
typedef struct event_job {
    writer_job base; /* first */
    events *ev;
    owned_event *e;
} event_job;

static int event_job_apply(writer_job *wj, store *st, store_batch *b) {
    event_job *job = (event_job *)wj;
    tokend_error err;
    int rv = owned_put(st, b, job->e, &err);
    if (rv != TOKEND_OK) {
        char q[256];
        LOG(LOG_WARN, "events.not_written", "error=%s",
            log_quote(q, sizeof(q), err.message));
    }
    return rv;
}

static void event_job_done(writer_job *wj, int status) {
    event_job *job = (event_job *)wj;
    if (status != TOKEND_OK) {
        LOG(LOG_WARN, "events.lost", "kind=%d status=%s", (int)job->e->msg.kind,
            tokend_status_name(status));
    }
    atomic_fetch_sub(&job->ev->queued, 1);
    owned_free(job->e);
    free(job);
}

/* Queues `what` as its own writer job. */
static int queue_event(events *ev, const events_what *what) {
    if (atomic_fetch_add(&ev->queued, 1) >= EVENTS_QUEUE_MAX) {
        atomic_fetch_sub(&ev->queued, 1);
        unsigned long long n = atomic_fetch_add(&ev->dropped, 1) + 1;
        if ((n & (n - 1)) == 0) { /* 1, 2, 4, ...: a line per doubling */
            LOG(LOG_WARN, "events.dropped", "count=%llu", n);
        }
        return TOKEND_RESOURCE_EXHAUSTED;
    }
    event_job *job = calloc(1, sizeof(*job));
    owned_event *e = job != NULL ? owned_new(rpc_now_ms(), what) : NULL;
    if (e == NULL) {
        free(job);
        atomic_fetch_sub(&ev->queued, 1);
        return TOKEND_INTERNAL;
    }
    job->ev = ev;
    job->e = e;
    job->base.apply = event_job_apply;
    job->base.done = event_job_done;
    if (writer_submit(ev->w, &job->base) != TOKEND_OK) {
        owned_free(e);
        free(job);
        atomic_fetch_sub(&ev->queued, 1);
        return TOKEND_UNAVAILABLE;
    }
    return TOKEND_OK;
}

void events_refused(events *ev, const char *method, int status, const char *reason,
                    const char *actor_id, const char *actor_owner, const char *owner,
                    const Tokend__V1__RequestContext *context) {
    if (ev == NULL) {
        return;
    }
    uint64_t before = 0;
    const char *ip = context != NULL ? context->client_ip : NULL;
    if (!events_refusal_admit(ev, method, status, actor_id, ip, &before)) {
        return;
    }
    events_what what = {
        .actor_id = actor_id,
        .actor_owner = actor_owner,
        .context = context,
    };
    events_field fields[5];
    char buf[24];
    events_refusal_detail(&what, fields, buf, method, status, reason, owner, before);
    (void)queue_event(ev, &what);
}

/* NULL, or text an event may hold (UTF-8, no control characters), so
 * that every reader of the log can decode and show it. */
static bool text_ok(const char *s) {
    return s == NULL || rpc_text_ok(s, strlen(s));
}

int events_append_alert(events *ev, Tokend__V1__EventKind kind, const char *token_id,
                        const char *owner, const Tokend__V1__RequestContext *context,
                        const events_field *detail, size_t n_detail) {
    if (ev == NULL || kind < TOKEND__V1__EVENT_KIND__ALERT_REVOKED_TOKEN_USED ||
        kind > TOKEND__V1__EVENT_KIND__ALERT_UNKNOWN_TOKEN_SPRAY ||
        n_detail > EVENTS_DETAIL_MAX || (n_detail > 0 && detail == NULL) ||
        !text_ok(token_id) || !text_ok(owner)) {
        return TOKEND_INVALID_ARGUMENT;
    }
    for (size_t i = 0; i < n_detail; i++) {
        if (detail[i].key == NULL || !text_ok(detail[i].key) ||
            !text_ok(detail[i].value)) {
            return TOKEND_INVALID_ARGUMENT;
        }
    }
    events_what what = {
        .kind = kind,
        .owner = owner,
        .token_id = token_id,
        .context = context,
        .detail = detail,
        .n_detail = n_detail,
    };
    return queue_event(ev, &what);
}

/* ------------------------------------------------------------------------
 * Retention: a job a tick deletes at most RETENTION_STEP events older than
 * the cutoff, oldest first, never the newest event (the head: the next
 * open reads the chain's seq and hash from it). */

#define RETENTION_STEP 1000

typedef struct doomed {
    uint64_t seq;
    char owner[TOKEN_OWNER_MAX + 1];
    char token_id[TOKEN_ID_LEN + 1];
} doomed;

typedef struct retention_scan {
    int64_t cutoff_ms;
    uint64_t head;
    doomed *list;
    size_t n;
    bool corrupt;
} retention_scan;

static int retention_take(void *arg, uint64_t seq, const uint8_t *v, size_t len) {
    retention_scan *r = arg;
    if (seq >= r->head) {
        return 1;
    }
    Tokend__V1__Event *e = tokend__v1__event__unpack(NULL, len, v);
    if (e == NULL) {
        r->corrupt = true;
        return 1;
    }
    int stop = e->time_unix_ms >= r->cutoff_ms;
    if (!stop) {
        doomed *d = &r->list[r->n++];
        d->seq = seq;
        snprintf(d->owner, sizeof(d->owner), "%s", e->owner != NULL ? e->owner : "");
        snprintf(d->token_id, sizeof(d->token_id), "%s",
                 e->token_id != NULL ? e->token_id : "");
    }
    tokend__v1__event__free_unpacked(e, NULL);
    return stop || r->n == RETENTION_STEP;
}

typedef struct retention_job {
    writer_job base; /* first */
    events *ev;
    size_t deleted;
} retention_job;

static int retention_apply(writer_job *wj, store *st, store_batch *b) {
    retention_job *job = (retention_job *)wj;
    retention_scan r = {.cutoff_ms = rpc_now_ms() - job->ev->retention_ms};
    uint8_t hash[STORE_EVENT_HASH_LEN];
    store_batch_event_head(st, b, &r.head, hash);
    r.list = calloc(RETENTION_STEP, sizeof(*r.list));
    if (r.list == NULL) {
        return TOKEND_INTERNAL;
    }
    uint64_t last = 0;
    bool ended = false;
    tokend_error err;
    int rv = store_events_scan(st, 0, NULL, 0, RETENTION_STEP, retention_take, &r, &last,
                               &ended, &err);
    if (rv == TOKEND_OK && r.corrupt) {
        LOG(LOG_WARN, "events.retention_stopped", "%s",
            "reason=\"an old event does not decode\"");
    }
    for (size_t i = 0; rv == TOKEND_OK && i < r.n; i++) {
        store_batch_delete_event(b, r.list[i].seq, r.list[i].owner, r.list[i].token_id);
    }
    job->deleted = rv == TOKEND_OK ? r.n : 0;
    free(r.list);
    return rv;
}

static void retention_done(writer_job *wj, int status) {
    retention_job *job = (retention_job *)wj;
    if (status == TOKEND_OK && job->deleted > 0) {
        LOG(LOG_INFO, "events.retention", "deleted=%zu", job->deleted);
    }
    atomic_store(&job->ev->retention_more,
                 status == TOKEND_OK && job->deleted == RETENTION_STEP);
    atomic_store(&job->ev->retention_queued, false);
    free(job);
}

static void retention_queue(events *ev) {
    if (atomic_exchange(&ev->retention_queued, true)) {
        return; /* one at a time */
    }
    retention_job *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        atomic_store(&ev->retention_queued, false);
        return;
    }
    job->ev = ev;
    job->base.apply = retention_apply;
    job->base.done = retention_done;
    if (writer_submit(ev->w, &job->base) != TOKEND_OK) {
        atomic_store(&ev->retention_queued, false);
        free(job);
    }
}

/* A tick every quarter of the retention, between 1 s and a minute; at
 * once again while a step deleted a full RETENTION_STEP. */
static void *retention_main(void *arg) {
    events *ev = arg;
    int64_t tick = ev->retention_ms / 4;
    tick = tick < 1000 ? 1000 : tick > 60000 ? 60000 : tick;
    pthread_mutex_lock(&ev->stop_lock);
    while (!ev->stopping) {
        int64_t wait = atomic_load(&ev->retention_more) ? 50 : tick;
        struct timespec ts;
        clock_after(CLOCK_REALTIME, wait, &ts);
        int rc = pthread_cond_timedwait(&ev->stop_cond, &ev->stop_lock, &ts);
        if (ev->stopping) {
            break;
        }
        if (rc == ETIMEDOUT) {
            pthread_mutex_unlock(&ev->stop_lock);
            retention_queue(ev);
            pthread_mutex_lock(&ev->stop_lock);
        }
    }
    pthread_mutex_unlock(&ev->stop_lock);
    return NULL;
}

events *events_new(store *st, writer *w, int64_t retention_s) {
    events *ev = calloc(1, sizeof(*ev));
    if (ev == NULL) {
        return NULL;
    }
    ev->st = st;
    ev->w = w;
    ev->retention_ms = retention_s * 1000;
    ev->tokens = EVENTS_REFUSALS_BURST;
    ev->tokens_ms = mono_ms();
    pthread_mutex_init(&ev->lock, NULL);
    pthread_mutex_init(&ev->stop_lock, NULL);
    pthread_cond_init(&ev->stop_cond, NULL);
    if (retention_s > 0) {
        if (pthread_create(&ev->thread, NULL, retention_main, ev) != 0) {
            events_free(ev);
            return NULL;
        }
        ev->thread_started = true;
    }
    return ev;
}

void events_stop(events *ev) {
    if (ev == NULL || !ev->thread_started) {
        return;
    }
    pthread_mutex_lock(&ev->stop_lock);
    ev->stopping = true;
    pthread_cond_signal(&ev->stop_cond);
    pthread_mutex_unlock(&ev->stop_lock);
    pthread_join(ev->thread, NULL);
    ev->thread_started = false;
}

void events_free(events *ev) {
    if (ev == NULL) {
        return;
    }
    events_stop(ev);
    pthread_mutex_destroy(&ev->lock);
    pthread_mutex_destroy(&ev->stop_lock);
    pthread_cond_destroy(&ev->stop_cond);
    free(ev);
}

/* ------------------------------------------------------------------------
 * ListEvents' reading. */

#define EVENTS_EVENT_MAX (EVENTS_DETAIL_MAX * (64 + EVENTS_VALUE_MAX) + 8192)

typedef struct list_scan {
    const events_query *q;
    Tokend__V1__Event **events;
    size_t n;
    size_t bytes;
    bool corrupt;
} list_scan;

static bool matches(const events_query *q, const Tokend__V1__Event *e) {
    return (q->kind == TOKEND__V1__EVENT_KIND__EVENT_ANY || e->kind == q->kind) &&
           e->time_unix_ms >= q->since_ms &&
           (q->owner == NULL || strcmp(e->owner, q->owner) == 0) &&
           (q->token_id == NULL || strcmp(e->token_id, q->token_id) == 0);
}

static int list_take(void *arg, uint64_t seq, const uint8_t *v, size_t len) {
    (void)seq;
    list_scan *s = arg;
    Tokend__V1__Event *e = tokend__v1__event__unpack(NULL, len, v);
    if (e == NULL) {
        s->corrupt = true;
        return 1;
    }
    if (!matches(s->q, e)) {
        tokend__v1__event__free_unpacked(e, NULL);
        return 0;
    }
    s->events[s->n++] = e;
    s->bytes += len + 8;
    /* The page ends once one more event could take it past the bound: an
     * event is at most EVENTS_DETAIL_MAX values of EVENTS_VALUE_MAX bytes
     * with their keys, the context and a few ids, under EVENTS_EVENT_MAX. */
    return s->n == s->q->page_size || s->bytes >= EVENTS_PAGE_BYTES - EVENTS_EVENT_MAX;
}

int events_list(store *st, const events_query *q, Tokend__V1__Event ***out, size_t *n,
                char next[EVENTS_CURSOR_LEN + 1], bool *more, tokend_error *err) {
    *out = NULL;
    *n = 0;
    next[0] = '\0';
    *more = false;
    list_scan s = {.q = q};
    s.events = calloc(q->page_size + 1, sizeof(*s.events));
    if (s.events == NULL) {
        return error_set(err, TOKEND_INTERNAL, "out of memory");
    }
    /* Read before the scan: every event up to it is in the scan's
     * snapshot, so a scan that reaches the end has seen them all. */
    uint64_t head = store_event_last_seq(st);
    char index = q->token_id != NULL ? 't' : q->owner != NULL ? 'o' : 0;
    const char *name = index == 't' ? q->token_id : q->owner;
    uint64_t last = q->after;
    bool ended = false;
    int rv = store_events_scan(st, index, name, q->after, EVENTS_SCAN_MAX, list_take, &s,
                               &last, &ended, err);
    if (rv == TOKEND_OK && s.corrupt) {
        rv = error_set(err, TOKEND_INTERNAL, "a stored event does not decode");
    }
    if (rv != TOKEND_OK) {
        events_page_free(s.events, s.n);
        return rv;
    }
    uint64_t cursor = last;
    if (ended && head > cursor) {
        cursor = head;
    }
    if (cursor > 0) {
        snprintf(next, EVENTS_CURSOR_LEN + 1, "%016" PRIx64, cursor);
    }
    *more = !ended;
    *out = s.events;
    *n = s.n;
    return TOKEND_OK;
}

void events_page_free(Tokend__V1__Event **page, size_t n) {
    for (size_t i = 0; page != NULL && i < n; i++) {
        tokend__v1__event__free_unpacked(page[i], NULL);
    }
    free(page);
}

bool events_cursor_decode(const char *cursor, uint64_t *after) {
    if (strlen(cursor) != EVENTS_CURSOR_LEN) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < EVENTS_CURSOR_LEN; i++) {
        char c = cursor[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) {
            return false;
        }
        v = v << 4 | (uint64_t)d;
    }
    *after = v;
    return true;
}
