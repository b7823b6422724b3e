/*
 * writer.c — the group-committing writer thread behind writer.h.
 *
 * One mutex guards a FIFO of jobs; the thread sleeps on a condition
 * variable until jobs arrive or the usage flush is due. Each round takes
 * the whole queue, so the group size adapts to load by itself: while one
 * fsync runs, the next group gathers.
 *
 * A failed commit (a full or read-only disk) puts the writer in degraded
 * mode: it commits nothing more through that database handle (see
 * store_reopen), answers every job STORAGE_ERROR at once, keeps drained
 * usage counters in memory, and at most once a second (on a job or the
 * usage tick) probes the data dir; when the probe passes it reopens the
 * store and carries on. The log gets one line when writes stop, one when
 * they resume, and a reminder a minute while they stay stopped.
 */
#include "writer.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdint.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "rpc.h"
#include "tokend.h"

struct writer {
    store *st;
    usage *usage;
    series *series;
    int usage_flush_ms;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    writer_job *head, *tail;
    bool stopping;
    unsigned long groups, jobs; /* guarded by lock */
    /* Degraded mode; the writer thread's alone. */
    bool degraded;
    int64_t degraded_since_ms, next_probe_ms, next_reminder_ms;
    unsigned long refused; /* jobs answered STORAGE_ERROR while degraded */
    /* For writer_observe, read from other threads. */
    metrics_histogram commit_us, group_jobs;
    int64_t started_unix_ms;
    _Atomic int64_t last_flush_unix_ms, last_flush_us;
    atomic_bool writes_stopped;
};

#define WRITER_PROBE_MS 1000
#define WRITER_REMINDER_MS 60000

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Stops commits after a failed one: `why` is the commit's error. */
static void enter_degraded(writer *w, const tokend_error *why) {
    if (w->degraded) {
        return;
    }
    int64_t now = mono_ms();
    w->degraded = true;
    atomic_store(&w->writes_stopped, true);
    w->degraded_since_ms = now;
    w->next_probe_ms = now + WRITER_PROBE_MS;
    w->next_reminder_ms = now + WRITER_REMINDER_MS;
    w->refused = 0;
    char q[256];
    LOG(LOG_ERROR, "store.writes_stopped", "error=%s",
        log_quote(q, sizeof(q), why->message));
}

/* True if commits may go ahead: not degraded, or the data dir takes
 * writes again and the store reopened. Probes at most once a second
 * unless `now_please` (at shutdown). */
static bool writable(writer *w, bool now_please) {
    if (!w->degraded) {
        return true;
    }
    int64_t now = mono_ms();
    if (!now_please && now < w->next_probe_ms) {
        return false;
    }
    w->next_probe_ms = now + WRITER_PROBE_MS;
    tokend_error err;
    int rv = store_probe_writable(w->st, &err);
    if (rv == TOKEND_OK) {
        rv = store_reopen(w->st, &err);
    }
    if (rv != TOKEND_OK) {
        if (now >= w->next_reminder_ms) {
            char q[256];
            LOG(LOG_WARN, "store.writes_still_stopped",
                "down_ms=%lld refused=%lu error=%s",
                (long long)(now - w->degraded_since_ms), w->refused,
                log_quote(q, sizeof(q), err.message));
            w->next_reminder_ms = now + WRITER_REMINDER_MS;
        }
        return false;
    }
    LOG(LOG_INFO, "store.writes_resumed", "down_ms=%lld refused=%lu",
        (long long)(now - w->degraded_since_ms), w->refused);
    w->degraded = false;
    atomic_store(&w->writes_stopped, false);
    return true;
}

/* Adds the usage series (series.h) to the flush's batch, which must be
 * empty: a failure empties it again, so that no part of them commits, and
 * they wait for the next flush. False when there was nothing to stage. */
static bool stage_series(writer *w, store_batch *batch) {
    size_t staged = 0;
    uint64_t dropped = 0;
    tokend_error err;
    int rv = series_stage(w->series, w->st, batch, &staged, &dropped, &err);
    if (dropped > 0) {
        LOG(LOG_WARN, "series.dropped", "calls=%llu", (unsigned long long)dropped);
    }
    if (rv != TOKEND_OK) {
        char q[256];
        LOG(LOG_WARN, "series.stage_failed", "entries=%zu error=%s", staged,
            log_quote(q, sizeof(q), err.message));
        store_batch_clear(batch);
        series_restore(w->series);
        return false;
    }
    return staged > 0;
}

/* Writes the drained usage counters, adding to what is stored, and the
 * usage series, in one unsynced batch. Tokens revoked since their use are
 * skipped for the counters, so no orphan usage rows appear; their series
 * stay until retention drops them (the owner's sums keep them anyway).
 * True if the table was flushed (also with nothing in it); false if the
 * counts stay in memory (degraded, a failed commit) or there is no table. */
static bool flush_usage(writer *w, store_batch *batch, bool stopping) {
    usage_entry *entries = NULL;
    size_t n = 0;
    uint64_t dropped = 0;
    if (w->usage == NULL || usage_drain(w->usage, &entries, &n, &dropped) != TOKEND_OK) {
        return false;
    }
    if (dropped > 0) {
        LOG(LOG_WARN, "usage.dropped", "count=%llu", (unsigned long long)dropped);
    }
    /* Probes even with nothing to write, so that writes resume (and say
     * so) without waiting for the next job. */
    bool ok = writable(w, stopping);
    if (!ok) {
        /* Kept for a later flush; lost only if tokend stops meanwhile. */
        usage_restore(w->usage, entries, n);
        if (stopping && n > 0) {
            LOG(LOG_WARN, "usage.not_written", "tokens=%zu", n);
        }
        free(entries);
        return false;
    }
    store_batch_clear(batch);
    bool staged = w->series != NULL && stage_series(w, batch);
    if (n == 0 && !staged) {
        usage_flushed(w->usage);
        if (w->series != NULL) {
            series_flushed(w->series);
        }
        store_batch_clear(batch);
        free(entries);
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t digest[TOKEN_DIGEST_LEN];
        if (store_get_digest(w->st, entries[i].id, digest, NULL) != TOKEND_OK) {
            continue;
        }
        int64_t last = 0;
        uint64_t count = 0;
        (void)store_get_usage(w->st, entries[i].id, &last, &count, NULL);
        if (entries[i].last_used_ms > last) {
            last = entries[i].last_used_ms;
        }
        entries[i].stored_total = count + entries[i].count;
        store_batch_put_usage(batch, entries[i].id, last, entries[i].stored_total);
    }
    tokend_error err;
    int rv = TOKEND_OK;
    /* From here a reader tells by the stored count whether an entry's
     * flush is in the store yet (usage.h). */
    usage_commit_begin(w->usage, entries, n);
    if (staged) {
        series_commit_begin(w->series);
    }
    if (store_batch_count(batch) > 0) {
        rv = store_batch_commit(w->st, batch, false, &err);
    }
    if (rv != TOKEND_OK) {
        char q[256];
        LOG(LOG_WARN, "usage.flush_failed", "tokens=%zu error=%s", n,
            log_quote(q, sizeof(q), err.message));
        if (rv == TOKEND_STORAGE_ERROR) {
            enter_degraded(w, &err);
            usage_restore(w->usage, entries, n);
        }
    }
    if (staged && rv == TOKEND_STORAGE_ERROR) {
        series_restore(w->series);
    } else if (staged) {
        series_flushed(w->series);
    }
    usage_flushed(w->usage); /* no-op after a restore */
    store_batch_clear(batch);
    free(entries);
    return rv == TOKEND_OK;
}

/* Applies and commits one group of jobs, then settles each. */
static void commit_group(writer *w, writer_job *jobs, store_batch *batch) {
    store_batch_clear(batch);
    unsigned long n = 0;
    if (!writable(w, false)) {
        writer_job *next;
        for (writer_job *j = jobs; j != NULL; j = next, n++) {
            next = j->next; /* done() may free j */
            j->done(j, TOKEND_STORAGE_ERROR);
        }
        w->refused += n;
        return;
    }
    bool sync = false;
    for (writer_job *j = jobs; j != NULL; j = j->next, n++) {
        j->apply_status = j->apply(j, w->st, batch);
        sync = sync || !j->unsynced;
    }
    int commit_rv = TOKEND_OK;
    if (store_batch_count(batch) > 0) {
        tokend_error err;
        int64_t commit_start = metrics_now_us();
        commit_rv = store_batch_commit(w->st, batch, sync, &err);
        metrics_histogram_observe(&w->commit_us,
                                  (uint64_t)(metrics_now_us() - commit_start));
        metrics_histogram_observe(&w->group_jobs, n);
        if (commit_rv != TOKEND_OK) {
            char q[256];
            LOG(LOG_ERROR, "store.commit_failed", "jobs=%lu error=%s", n,
                log_quote(q, sizeof(q), err.message));
        }
        if (commit_rv == TOKEND_STORAGE_ERROR) {
            enter_degraded(w, &err);
        }
    }
    store_batch_clear(batch);
    writer_job *next;
    for (writer_job *j = jobs; j != NULL; j = next) {
        next = j->next; /* done() may free j */
        j->done(j, j->apply_status != TOKEND_OK ? j->apply_status : commit_rv);
    }
    pthread_mutex_lock(&w->lock);
    w->groups++;
    w->jobs += n;
    pthread_mutex_unlock(&w->lock);
}

static void *writer_main(void *arg) {
    writer *w = arg;
    store_batch *batch = store_batch_new();
    if (batch == NULL) {
        LOG(LOG_ERROR, "writer.oom", "%s", "");
        abort();
    }
    struct timespec next_flush;
    clock_after(CLOCK_REALTIME, w->usage_flush_ms, &next_flush);
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (w->head == NULL && !w->stopping) {
            if (pthread_cond_timedwait(&w->cond, &w->lock, &next_flush) == ETIMEDOUT) {
                break;
            }
        }
        writer_job *jobs = w->head;
        w->head = w->tail = NULL;
        bool stopping = w->stopping;
        pthread_mutex_unlock(&w->lock);

        if (jobs != NULL) {
            commit_group(w, jobs, batch);
        }
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        if (stopping || now.tv_sec > next_flush.tv_sec ||
            (now.tv_sec == next_flush.tv_sec && now.tv_nsec >= next_flush.tv_nsec)) {
            int64_t flush_start = metrics_now_us();
            if (flush_usage(w, batch, stopping)) {
                atomic_store(&w->last_flush_us, metrics_now_us() - flush_start);
                atomic_store(&w->last_flush_unix_ms, rpc_now_ms());
            }
            clock_after(CLOCK_REALTIME, w->usage_flush_ms, &next_flush);
        }
        if (stopping && jobs == NULL) {
            break;
        }
    }
    store_batch_free(batch);
    return NULL;
}

int writer_start(store *st, usage *u, series *sr, int usage_flush_ms, writer **out) {
    writer *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return TOKEND_INTERNAL;
    }
    w->st = st;
    w->usage = u;
    w->series = sr;
    w->usage_flush_ms = usage_flush_ms > 0 ? usage_flush_ms : 2000;
    metrics_histogram_init(&w->commit_us, &metrics_latency_us);
    metrics_histogram_init(&w->group_jobs, &metrics_size);
    w->started_unix_ms = rpc_now_ms();
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return TOKEND_INTERNAL;
    }
    *out = w;
    return TOKEND_OK;
}

int writer_submit(writer *w, writer_job *job) {
    job->next = NULL;
    pthread_mutex_lock(&w->lock);
    if (w->stopping) {
        pthread_mutex_unlock(&w->lock);
        return TOKEND_UNAVAILABLE;
    }
    if (w->tail != NULL) {
        w->tail->next = job;
    } else {
        w->head = job;
    }
    w->tail = job;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return TOKEND_OK;
}

void writer_stop(writer *w) {
    if (w == NULL) {
        return;
    }
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

void writer_stats(writer *w, unsigned long *groups, unsigned long *jobs) {
    pthread_mutex_lock(&w->lock);
    *groups = w->groups;
    *jobs = w->jobs;
    pthread_mutex_unlock(&w->lock);
}

void writer_observe(writer *w, writer_observed *out) {
    out->commit_us = &w->commit_us;
    out->group_jobs = &w->group_jobs;
    out->started_unix_ms = w->started_unix_ms;
    out->last_flush_unix_ms = atomic_load(&w->last_flush_unix_ms);
    out->last_flush_us = atomic_load(&w->last_flush_us);
    out->writes_stopped = atomic_load(&w->writes_stopped);
}
