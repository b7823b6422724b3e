/*
 * alerts.c — the detectors behind alerts.h and their thread.
 *
 * The queue is a bounded multi-producer ring in the manner of Vyukov's:
 * each cell carries a sequence number, a producer claims a position with
 * one compare-and-swap and publishes the cell with a release store, so a
 * Verify callback never waits on a lock, and a full ring is seen at once
 * (the observation is dropped and counted). The alert thread drains the
 * ring without waiting and sleeps on a semaphore only when it is empty;
 * a producer posts it only then, so a busy ring costs no system call.
 *
 * All detector state belongs to the alert thread alone: no locks.
 */
#include "alerts.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "error.h"
#include "log.h"
#include "tokend.h"

#define QUEUE_CELLS 4096 /* a power of two */
/* Every this many publications, one wakes a sleeping alert thread. */
#define QUEUE_WAKE_EVERY (QUEUE_CELLS / 4)
/* How long the alert thread sleeps when it found its queue empty: the
 * first sleep after work is short (observations wait at most that long),
 * each further idle one twice as long, up to the longest. */
#define SLEEP_MIN_MS 10
#define SLEEP_MAX_MS 200
#define PROBES 8         /* slots a key may sit in, from its hash on */
#define NETS_MAX 16      /* networks remembered per token */
#define PENDING_MAX 1024 /* network writes gathered for one writer job */
#define FLUSH_MS 2000    /* how often gathered network writes go out */
/* Weight of the interval just ended in a token's volume baseline: about
 * the last ten intervals count. */
#define VOLUME_ALPHA 0.1

typedef struct observation {
    int verdict;
    int64_t time_ms;
    char id[TOKEN_ID_LEN + 1];
    char owner[TOKEN_OWNER_MAX + 1];
    uint8_t digest[TOKEN_DIGEST_LEN];
    char method[ROUTE_METHOD_MAX + 1];
    char route[ROUTE_MAX + 1];
    char client_ip[ROUTE_CLIENT_IP_MAX + 1];
    char user_agent[ROUTE_USER_AGENT_MAX + 1];
} observation;

typedef struct cell {
    atomic_size_t seq;
    observation obs;
} cell;

/* What the detectors keep of one token. */
typedef struct token_state {
    bool used;
    char id[TOKEN_ID_LEN + 1];
    int64_t last_ms; /* last observation: the eviction order */
    int64_t quiet_until[ALERTS_KINDS];
    int64_t denial_start;
    int64_t denials;
    int64_t volume_start;
    int64_t volume_calls;
    double baseline;
    bool has_baseline;
    size_t n_nets;
    store_network nets[NETS_MAX];
    int64_t persisted_ms[NETS_MAX]; /* last_seen_ms as last written */
} token_state;

/* What the spray detector keeps of one client address. */
typedef struct client_state {
    bool used;
    uint8_t addr[17]; /* family byte, then 4 or 16 address bytes */
    int64_t last_ms;
    int64_t quiet_until;
    int64_t window_start;
    int64_t unknown;
} client_state;

/* A writer job with the networks to write. */
typedef struct networks_job {
    writer_job base; /* first */
    size_t n;
    char ids[PENDING_MAX][TOKEN_ID_LEN + 1];
    store_network nets[PENDING_MAX];
} networks_job;

struct alerts {
    alerts_config cfg;
    store *st;
    writer *w;
    alerts_sink sink;
    void *sink_ctx;
    cell *cells;
    atomic_size_t enq;
    size_t deq;           /* the alert thread's */
    sem_t wake;           /* posted when the thread sleeps and cells came */
    atomic_bool sleeping; /* the thread is about to wait on `wake` */
    atomic_bool stopping;
    atomic_uint_fast64_t counts[ALERTS_KINDS];
    atomic_uint_fast64_t dropped;
    pthread_t thread;
    bool started;
    size_t slots; /* of each table, a power of two */
    token_state *tokens;
    client_state *clients;
    networks_job *pending;
    int64_t next_flush_ms;
};

/* ------------------------------------------------------------------------
 * The queue. */

/* Claims the next free cell, or NULL when the ring is full; *pos is its
 * position, for queue_publish. */
static cell *queue_claim(alerts *a, size_t *pos_out) {
    size_t pos = atomic_load_explicit(&a->enq, memory_order_relaxed);
    for (;;) {
        cell *c = &a->cells[pos & (QUEUE_CELLS - 1)];
        size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)seq - (intptr_t)pos;
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(
                    &a->enq, &pos, pos + 1, memory_order_relaxed, memory_order_relaxed)) {
                *pos_out = pos;
                return c;
            }
        } else if (dif < 0) {
            return NULL; /* full */
        } else {
            pos = atomic_load_explicit(&a->enq, memory_order_relaxed);
        }
    }
}

/* Hands a claimed and filled cell to the alert thread. The thread polls
 * (alert_sleep), so a Verify does not wake it: a wake-up is a futex call
 * and a context switch, several microseconds of CPU, more than the whole
 * hand-off. Only the publication that fills a quarter of the queue wakes
 * a sleeping thread, so a burst cannot fill the queue while it sleeps.
 * The fence orders the publication before the look at `sleeping`, as the
 * thread orders its `sleeping` before its look at the queue. */
static void queue_publish(alerts *a, cell *c, size_t pos) {
    atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
    if ((pos & (QUEUE_WAKE_EVERY - 1)) != QUEUE_WAKE_EVERY - 1) {
        return;
    }
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&a->sleeping, memory_order_relaxed) &&
        atomic_exchange(&a->sleeping, false)) {
        sem_post(&a->wake);
    }
}

/* Whether the next cell is published. */
static bool queue_ready(alerts *a) {
    cell *c = &a->cells[a->deq & (QUEUE_CELLS - 1)];
    return atomic_load_explicit(&c->seq, memory_order_acquire) == a->deq + 1;
}

/* Takes the next observation, which queue_ready said is published. */
static void queue_pop(alerts *a, observation *o) {
    cell *c = &a->cells[a->deq & (QUEUE_CELLS - 1)];
    *o = c->obs;
    atomic_store_explicit(&c->seq, a->deq + QUEUE_CELLS, memory_order_release);
    a->deq++;
}

static void copy_str(char *dst, size_t cap, const char *src) {
    size_t n = src != NULL ? strnlen(src, cap - 1) : 0;
    memcpy(dst, src != NULL ? src : "", n);
    dst[n] = '\0';
}

void alerts_observe(alerts *a, int verdict, const char *id, const char *owner,
                    const uint8_t digest[TOKEN_DIGEST_LEN],
                    const Tokend__V1__RequestContext *ctx, const char *route,
                    int64_t now_ms) {
    if (a == NULL || atomic_load_explicit(&a->stopping, memory_order_relaxed)) {
        return;
    }
    size_t pos;
    cell *c = queue_claim(a, &pos);
    if (c == NULL) {
        atomic_fetch_add_explicit(&a->dropped, 1, memory_order_relaxed);
        return;
    }
    /* Filled in place: the cell is this caller's until published. */
    observation *o = &c->obs;
    o->verdict = verdict;
    o->time_ms = now_ms;
    copy_str(o->id, sizeof(o->id), id);
    copy_str(o->owner, sizeof(o->owner), owner);
    if (digest != NULL) {
        memcpy(o->digest, digest, TOKEN_DIGEST_LEN);
    } else {
        memset(o->digest, 0, TOKEN_DIGEST_LEN);
    }
    copy_str(o->method, sizeof(o->method), ctx != NULL ? ctx->method : NULL);
    if (route != NULL) {
        copy_str(o->route, sizeof(o->route), route);
    } else {
        route_normalise(ctx != NULL ? ctx->method : NULL, ctx != NULL ? ctx->path : NULL,
                        o->route, sizeof(o->route));
    }
    copy_str(o->client_ip, sizeof(o->client_ip), ctx != NULL ? ctx->client_ip : NULL);
    copy_str(o->user_agent, sizeof(o->user_agent), ctx != NULL ? ctx->user_agent : NULL);
    queue_publish(a, c, pos);
}

/* ------------------------------------------------------------------------
 * The tables: a key sits in one of PROBES slots from its hash; a new key
 * takes a free one or the least recently seen. */

static uint32_t hash_bytes(const void *p, size_t n) {
    const uint8_t *b = p;
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h = (h ^ b[i]) * 16777619u;
    }
    return h;
}

/* The token's state, made fresh (its networks read back from the store)
 * if it has none. */
static token_state *token_of(alerts *a, const char *id, int64_t now) {
    uint32_t h = hash_bytes(id, TOKEN_ID_LEN);
    token_state *victim = NULL;
    for (size_t i = 0; i < PROBES; i++) {
        token_state *t = &a->tokens[(h + i) & (a->slots - 1)];
        if (t->used && strcmp(t->id, id) == 0) {
            t->last_ms = now;
            return t;
        }
        if (victim == NULL || !t->used ||
            (victim->used && t->last_ms < victim->last_ms)) {
            victim = t;
        }
    }
    memset(victim, 0, sizeof(*victim));
    victim->used = true;
    copy_str(victim->id, sizeof(victim->id), id);
    victim->last_ms = now;
    victim->volume_start = now;
    victim->denial_start = now;
    tokend_error err;
    if (store_get_networks(a->st, id, now, victim->nets, NETS_MAX, &victim->n_nets,
                           &err) != TOKEND_OK) {
        char q[300];
        LOG(LOG_WARN, "alert.networks_unreadable", "id=%s error=%s", id,
            log_quote(q, sizeof(q), err.message));
    }
    for (size_t i = 0; i < victim->n_nets; i++) {
        victim->persisted_ms[i] = victim->nets[i].last_seen_ms;
    }
    return victim;
}

/* The client address as a key: family byte and address bytes; an empty
 * or unparsable address is the all-zero key (one "unknown client"). */
static void client_key(const char *ip, uint8_t key[17]) {
    memset(key, 0, 17);
    if (inet_pton(AF_INET, ip, key + 1) == 1) {
        key[0] = 4;
    } else if (inet_pton(AF_INET6, ip, key + 1) == 1) {
        key[0] = 6;
    }
}

static client_state *client_of(alerts *a, const char *ip, int64_t now) {
    uint8_t key[17];
    client_key(ip, key);
    uint32_t h = hash_bytes(key, sizeof(key));
    client_state *victim = NULL;
    for (size_t i = 0; i < PROBES; i++) {
        client_state *c = &a->clients[(h + i) & (a->slots - 1)];
        if (c->used && memcmp(c->addr, key, sizeof(key)) == 0) {
            c->last_ms = now;
            return c;
        }
        if (victim == NULL || !c->used ||
            (victim->used && c->last_ms < victim->last_ms)) {
            victim = c;
        }
    }
    memset(victim, 0, sizeof(*victim));
    victim->used = true;
    memcpy(victim->addr, key, sizeof(key));
    victim->last_ms = now;
    victim->window_start = now;
    return victim;
}

/* ------------------------------------------------------------------------
 * Raising an alert. */

static void detail_add(alert *al, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void detail_add(alert *al, const char *key, const char *fmt, ...) {
    if (al->n_detail >= ALERTS_DETAIL_MAX) {
        return;
    }
    alert_field *f = &al->detail[al->n_detail++];
    copy_str(f->key, sizeof(f->key), key);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->value, sizeof(f->value), fmt, ap);
    va_end(ap);
}

/* An alert of `kind` about the observation, for token id/owner (either
 * may be ""). */
static void alert_init(alert *al, Tokend__V1__EventKind kind, const observation *o,
                       const char *id, const char *owner) {
    memset(al, 0, sizeof(*al));
    al->kind = kind;
    al->time_ms = o->time_ms;
    copy_str(al->token_id, sizeof(al->token_id), id);
    copy_str(al->owner, sizeof(al->owner), owner);
    copy_str(al->method, sizeof(al->method), o->method);
    copy_str(al->route, sizeof(al->route), o->route);
    copy_str(al->client_ip, sizeof(al->client_ip), o->client_ip);
    copy_str(al->user_agent, sizeof(al->user_agent), o->user_agent);
}

static void raise_alert(alerts *a, const alert *al) {
    atomic_fetch_add_explicit(&a->counts[al->kind - ALERTS_FIRST], 1,
                              memory_order_relaxed);
    a->sink(a->sink_ctx, al);
}

/* Whether `kind` may fire for this token now; if so it is quiet from now
 * for repeat_ms. */
static bool may_fire(alerts *a, int64_t *quiet_until, int64_t now) {
    if (now < *quiet_until) {
        return false;
    }
    *quiet_until = now + a->cfg.repeat_ms;
    return true;
}

#define QUIET(t, kind) (&(t)->quiet_until[(kind)-ALERTS_FIRST])

/* ------------------------------------------------------------------------
 * The detectors. */

/* A NOT_FOUND: a tombstone makes it a revoked token presented, else it
 * counts towards its client's spray. */
static void detect_unknown(alerts *a, const observation *o) {
    store_tombstone tomb;
    tokend_error err;
    int rv = store_get_tombstone(a->st, o->digest, o->time_ms, &tomb, &err);
    if (rv == TOKEND_OK) {
        token_state *t = token_of(a, tomb.id, o->time_ms);
        if (may_fire(a, QUIET(t, TOKEND__V1__EVENT_KIND__ALERT_REVOKED_TOKEN_USED),
                     o->time_ms)) {
            alert al;
            alert_init(&al, TOKEND__V1__EVENT_KIND__ALERT_REVOKED_TOKEN_USED, o, tomb.id,
                       tomb.owner);
            detail_add(&al, "revoked_unix_ms", "%lld", (long long)tomb.revoked_ms);
            raise_alert(a, &al);
        }
        return;
    }
    if (rv != TOKEND_NOT_FOUND) {
        char q[300];
        LOG(LOG_WARN, "alert.tombstone_unreadable", "error=%s",
            log_quote(q, sizeof(q), err.message));
    }
    client_state *c = client_of(a, o->client_ip, o->time_ms);
    if (o->time_ms - c->window_start >= a->cfg.spray_window_ms) {
        c->window_start = o->time_ms;
        c->unknown = 0;
    }
    c->unknown++;
    if (c->unknown >= a->cfg.spray && may_fire(a, &c->quiet_until, o->time_ms)) {
        alert al;
        alert_init(&al, TOKEND__V1__EVENT_KIND__ALERT_UNKNOWN_TOKEN_SPRAY, o, "", "");
        detail_add(&al, "unknown", "%lld", (long long)c->unknown);
        detail_add(&al, "window_s", "%lld", (long long)(a->cfg.spray_window_ms / 1000));
        raise_alert(a, &al);
    }
}

static void detect_denials(alerts *a, token_state *t, const observation *o) {
    if (o->verdict != TOKEND__V1__STATUS__INSUFFICIENT_ABILITY &&
        o->verdict != TOKEND__V1__STATUS__EXPIRED) {
        return;
    }
    if (o->verdict == TOKEND__V1__STATUS__EXPIRED &&
        may_fire(a, QUIET(t, TOKEND__V1__EVENT_KIND__ALERT_EXPIRED_TOKEN_USED),
                 o->time_ms)) {
        alert al;
        alert_init(&al, TOKEND__V1__EVENT_KIND__ALERT_EXPIRED_TOKEN_USED, o, o->id,
                   o->owner);
        raise_alert(a, &al);
    }
    if (o->time_ms - t->denial_start >= a->cfg.denial_window_ms) {
        t->denial_start = o->time_ms;
        t->denials = 0;
    }
    t->denials++;
    if (t->denials >= a->cfg.denials &&
        may_fire(a, QUIET(t, TOKEND__V1__EVENT_KIND__ALERT_DENIAL_BURST), o->time_ms)) {
        alert al;
        alert_init(&al, TOKEND__V1__EVENT_KIND__ALERT_DENIAL_BURST, o, o->id, o->owner);
        detail_add(&al, "denials", "%lld", (long long)t->denials);
        detail_add(&al, "window_s", "%lld", (long long)(a->cfg.denial_window_ms / 1000));
        raise_alert(a, &al);
    }
}

/* Closes the intervals that ended before `now`: the last one's calls join
 * the baseline (the first ever one becomes it), empty ones decay it. */
static void volume_roll(alerts *a, token_state *t, int64_t now) {
    int64_t interval = a->cfg.volume_interval_ms;
    if (now - t->volume_start < interval) {
        return;
    }
    int64_t ended = (now - t->volume_start) / interval;
    if (!t->has_baseline) {
        t->baseline = (double)t->volume_calls;
        t->has_baseline = true;
    } else {
        t->baseline += VOLUME_ALPHA * ((double)t->volume_calls - t->baseline);
    }
    /* Each empty interval after it pulls the baseline towards 0 (a
     * loop rather than pow(): no libm for one line; it stops once the
     * baseline is nothing). */
    for (int64_t k = 1; k < ended && t->baseline > 0.001; k++) {
        t->baseline *= 1.0 - VOLUME_ALPHA;
    }
    t->volume_start += ended * interval;
    t->volume_calls = 0;
}

static void detect_volume(alerts *a, token_state *t, const observation *o) {
    volume_roll(a, t, o->time_ms);
    t->volume_calls++;
    double floor = t->baseline > 1.0 ? t->baseline : 1.0;
    if (!t->has_baseline || t->volume_calls < a->cfg.volume_min ||
        (double)t->volume_calls <= (double)a->cfg.volume_factor * floor) {
        return;
    }
    if (may_fire(a, QUIET(t, TOKEND__V1__EVENT_KIND__ALERT_VOLUME_SPIKE), o->time_ms)) {
        alert al;
        alert_init(&al, TOKEND__V1__EVENT_KIND__ALERT_VOLUME_SPIKE, o, o->id, o->owner);
        detail_add(&al, "calls", "%lld", (long long)t->volume_calls);
        detail_add(&al, "baseline", "%.1f", t->baseline);
        detail_add(&al, "interval_s", "%lld",
                   (long long)(a->cfg.volume_interval_ms / 1000));
        raise_alert(a, &al);
    }
}

/* The /24 or /64 of `ip` as a network key and as text ("203.0.113.0/24").
 * False for an empty or unparsable address. */
static bool network_of(const char *ip, store_network *net, char text[ALERTS_VALUE_MAX]) {
    uint8_t addr[16] = {0};
    char shown[INET6_ADDRSTRLEN];
    if (inet_pton(AF_INET, ip, addr) == 1) {
        net->bytes[0] = 4;
        memcpy(net->bytes + 1, addr, 3);
        net->len = 4;
        addr[3] = 0;
        inet_ntop(AF_INET, addr, shown, sizeof(shown));
        snprintf(text, ALERTS_VALUE_MAX, "%.40s/24", shown);
        return true;
    }
    if (inet_pton(AF_INET6, ip, addr) == 1) {
        net->bytes[0] = 6;
        memcpy(net->bytes + 1, addr, 8);
        net->len = 9;
        memset(addr + 8, 0, 8);
        inet_ntop(AF_INET6, addr, shown, sizeof(shown));
        snprintf(text, ALERTS_VALUE_MAX, "%.40s/64", shown);
        return true;
    }
    return false;
}

static void pending_add(alerts *a, const char *id, const store_network *net);

static void detect_network(alerts *a, token_state *t, const observation *o) {
    store_network net = {0};
    char text[ALERTS_VALUE_MAX];
    if (!network_of(o->client_ip, &net, text)) {
        return;
    }
    net.last_seen_ms = o->time_ms;
    size_t oldest = 0;
    for (size_t i = 0; i < t->n_nets; i++) {
        store_network *n = &t->nets[i];
        bool in_window = n->last_seen_ms + a->cfg.network_history_ms >= o->time_ms;
        if (in_window && n->len == net.len && memcmp(n->bytes, net.bytes, net.len) == 0) {
            n->last_seen_ms = o->time_ms;
            /* Written again only once it moved by a 64th of the window:
             * the stored time need not be exact, only within it. */
            if (o->time_ms - t->persisted_ms[i] > a->cfg.network_history_ms / 64) {
                t->persisted_ms[i] = o->time_ms;
                pending_add(a, t->id, n);
            }
            return;
        }
        if (t->nets[i].last_seen_ms < t->nets[oldest].last_seen_ms) {
            oldest = i;
        }
    }
    bool any_in_window = false;
    for (size_t i = 0; i < t->n_nets; i++) {
        any_in_window |=
            t->nets[i].last_seen_ms + a->cfg.network_history_ms >= o->time_ms;
    }
    size_t at = t->n_nets < NETS_MAX ? t->n_nets++ : oldest;
    t->nets[at] = net;
    t->persisted_ms[at] = o->time_ms;
    pending_add(a, t->id, &net);
    /* The first network of a token (within the window) is where it lives. */
    if (any_in_window &&
        may_fire(a, QUIET(t, TOKEND__V1__EVENT_KIND__ALERT_NEW_NETWORK), o->time_ms)) {
        alert al;
        alert_init(&al, TOKEND__V1__EVENT_KIND__ALERT_NEW_NETWORK, o, o->id, o->owner);
        detail_add(&al, "network", "%s", text);
        raise_alert(a, &al);
    }
}

static void observe_one(alerts *a, const observation *o) {
    if (o->verdict == TOKEND__V1__STATUS__NOT_FOUND) {
        detect_unknown(a, o);
        return;
    }
    if (o->verdict != TOKEND__V1__STATUS__OK &&
        o->verdict != TOKEND__V1__STATUS__EXPIRED &&
        o->verdict != TOKEND__V1__STATUS__INSUFFICIENT_ABILITY) {
        return;
    }
    if (!token_id_ok(o->id, strlen(o->id))) {
        return;
    }
    token_state *t = token_of(a, o->id, o->time_ms);
    detect_denials(a, t, o);
    detect_volume(a, t, o);
    detect_network(a, t, o);
}

/* ------------------------------------------------------------------------
 * Seen networks, written behind through the writer. */

static int networks_apply(writer_job *wj, store *st, store_batch *batch) {
    (void)st;
    networks_job *job = (networks_job *)wj;
    for (size_t i = 0; i < job->n; i++) {
        store_batch_put_network(batch, job->ids[i], &job->nets[i]);
    }
    return TOKEND_OK;
}

static void networks_done(writer_job *wj, int status) {
    networks_job *job = (networks_job *)wj;
    if (status != TOKEND_OK) {
        LOG(LOG_WARN, "alert.networks_unwritten", "networks=%zu status=%s", job->n,
            tokend_status_name(status));
    }
    free(job);
}

/* Hands the gathered writes to the writer. A failure loses them (a
 * restart may then alert on a network once more), never a token. */
static void pending_flush(alerts *a) {
    networks_job *job = a->pending;
    if (job == NULL || job->n == 0) {
        return;
    }
    a->pending = NULL;
    job->base.apply = networks_apply;
    job->base.done = networks_done;
    job->base.unsynced = true; /* lost in a crash: a network alerts once more */
    if (writer_submit(a->w, &job->base) != TOKEND_OK) {
        free(job);
    }
}

static void pending_add(alerts *a, const char *id, const store_network *net) {
    if (a->pending == NULL) {
        a->pending = calloc(1, sizeof(*a->pending));
        if (a->pending == NULL) {
            return; /* remembered in memory only */
        }
    }
    networks_job *job = a->pending;
    copy_str(job->ids[job->n], sizeof(job->ids[job->n]), id);
    job->nets[job->n++] = *net;
    if (job->n == PENDING_MAX) {
        pending_flush(a);
    }
}

/* ------------------------------------------------------------------------
 * The thread. */

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits on `wake` for up to `ms` (woken early only by a queue filling
 * up, or by alerts_stop). */
static void alert_sleep(alerts *a, long ms) {
    struct timespec until;
    clock_after(CLOCK_REALTIME, ms, &until);
    (void)sem_timedwait(&a->wake, &until);
}

static void *alert_thread(void *arg) {
    alerts *a = arg;
    long sleep_ms = SLEEP_MIN_MS;
    for (;;) {
        if (queue_ready(a)) {
            observation o;
            queue_pop(a, &o);
            observe_one(a, &o);
            sleep_ms = SLEEP_MIN_MS;
        } else if (atomic_load(&a->stopping)) {
            break; /* and nothing is left */
        } else {
            atomic_store(&a->sleeping, true);
            if (!queue_ready(a)) {
                alert_sleep(a, sleep_ms);
                sleep_ms = sleep_ms * 2 < SLEEP_MAX_MS ? sleep_ms * 2 : SLEEP_MAX_MS;
            }
            atomic_store(&a->sleeping, false);
        }
        int64_t now = now_ms();
        if (now >= a->next_flush_ms) {
            pending_flush(a);
            a->next_flush_ms = now + FLUSH_MS;
        }
    }
    pending_flush(a);
    return NULL;
}

static int config_check(const alerts_config *c, tokend_error *err) {
    const int64_t v[] = {c->network_history_ms,
                         c->denials,
                         c->denial_window_ms,
                         c->volume_factor,
                         c->volume_min,
                         c->volume_interval_ms,
                         c->spray,
                         c->spray_window_ms,
                         c->repeat_ms,
                         c->tracked};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        if (v[i] <= 0) {
            return error_set(err, TOKEND_INVALID_ARGUMENT,
                             "alert thresholds must all be positive");
        }
    }
    return TOKEND_OK;
}

int alerts_start(const alerts_config *cfg, store *st, writer *w, alerts_sink sink,
                 void *sink_ctx, alerts **out, tokend_error *err) {
    *out = NULL;
    if (cfg == NULL || st == NULL || w == NULL || sink == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "alerts_start: NULL argument");
    }
    int rv = config_check(cfg, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    alerts *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        return error_set(err, TOKEND_INTERNAL, "out of memory starting the alerts");
    }
    a->cfg = *cfg;
    a->st = st;
    a->w = w;
    a->sink = sink;
    a->sink_ctx = sink_ctx;
    a->slots = 1;
    while (a->slots < (size_t)cfg->tracked) {
        a->slots <<= 1;
    }
    a->cells = calloc(QUEUE_CELLS, sizeof(*a->cells));
    a->tokens = calloc(a->slots, sizeof(*a->tokens));
    a->clients = calloc(a->slots, sizeof(*a->clients));
    sem_init(&a->wake, 0, 0);
    if (a->cells == NULL || a->tokens == NULL || a->clients == NULL) {
        alerts_free(a);
        return error_set(err, TOKEND_INTERNAL, "out of memory for the alert tables");
    }
    for (size_t i = 0; i < QUEUE_CELLS; i++) {
        atomic_init(&a->cells[i].seq, i);
    }
    a->next_flush_ms = now_ms() + FLUSH_MS;
    if (pthread_create(&a->thread, NULL, alert_thread, a) != 0) {
        alerts_free(a);
        return error_set(err, TOKEND_INTERNAL, "cannot start the alert thread");
    }
    a->started = true;
    *out = a;
    return TOKEND_OK;
}

void alerts_stop(alerts *a) {
    if (a == NULL || !a->started) {
        return;
    }
    atomic_store(&a->stopping, true);
    sem_post(&a->wake);
    pthread_join(a->thread, NULL);
    a->started = false;
}

void alerts_free(alerts *a) {
    if (a == NULL) {
        return;
    }
    alerts_stop(a);
    sem_destroy(&a->wake);
    free(a->pending);
    free(a->cells);
    free(a->tokens);
    free(a->clients);
    free(a);
}

void alerts_counts(alerts *a, uint64_t counts[ALERTS_KINDS], uint64_t *dropped) {
    for (size_t i = 0; i < ALERTS_KINDS; i++) {
        counts[i] = a != NULL ? atomic_load(&a->counts[i]) : 0;
    }
    if (dropped != NULL) {
        *dropped = a != NULL ? atomic_load(&a->dropped) : 0;
    }
}

const char *alerts_kind_name(Tokend__V1__EventKind kind) {
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&tokend__v1__event_kind__descriptor, kind);
    return v != NULL ? v->name : "UNKNOWN";
}

/* ------------------------------------------------------------------------
 * JSON. */

typedef struct json_out {
    char *p;
    size_t len, cap;
    bool overflow;
} json_out;

static void json_raw(json_out *j, const char *s, size_t n) {
    if (j->len + n >= j->cap) {
        j->overflow = true;
        return;
    }
    memcpy(j->p + j->len, s, n);
    j->len += n;
    j->p[j->len] = '\0';
}

/* A JSON string: quotes, backslashes and control characters escaped; the
 * strings are UTF-8 already (route_context_ok, token.h's owner rules). */
static void json_str(json_out *j, const char *s) {
    json_raw(j, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c != '\0'; c++) {
        char esc[8];
        if (*c == '"' || *c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*c;
            json_raw(j, esc, 2);
        } else if (*c < 0x20 || *c == 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", *c);
            json_raw(j, esc, 6);
        } else {
            json_raw(j, (const char *)c, 1);
        }
    }
    json_raw(j, "\"", 1);
}

static void json_member(json_out *j, const char *key, const char *value, bool first) {
    if (!first) {
        json_raw(j, ",", 1);
    }
    json_str(j, key);
    json_raw(j, ":", 1);
    json_str(j, value);
}

size_t alerts_json(const alert *a, char *out, size_t cap) {
    json_out j = {out, 0, cap, cap == 0};
    char num[32];
    json_raw(&j, "{", 1);
    json_member(&j, "kind", alerts_kind_name(a->kind), true);
    snprintf(num, sizeof(num), ",\"time_unix_ms\":%lld", (long long)a->time_ms);
    json_raw(&j, num, strlen(num));
    json_member(&j, "token_id", a->token_id, false);
    json_member(&j, "owner", a->owner, false);
    json_raw(&j, ",\"context\":{", 12);
    json_member(&j, "method", a->method, true);
    json_member(&j, "route", a->route, false);
    json_member(&j, "client_ip", a->client_ip, false);
    json_member(&j, "user_agent", a->user_agent, false);
    json_raw(&j, "},\"detail\":{", 12);
    for (size_t i = 0; i < a->n_detail; i++) {
        json_member(&j, a->detail[i].key, a->detail[i].value, i == 0);
    }
    json_raw(&j, "}}", 2);
    return j.overflow ? 0 : j.len;
}
