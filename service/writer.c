/*
 * writer.c — the group-committing writer thread behind writer.h.
 *
 * One mutex guards a FIFO of jobs; the thread sleeps on a condition
 * variable until jobs arrive or the usage flush is due. Each round takes
 * the whole queue, so the group size adapts to load by itself: while one
 * fsync runs, the next group gathers.
 */
#include "writer.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "rpc.h"
#include "tokend.h"

struct writer {
    store *st;
    usage *usage;
    int usage_flush_ms;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    writer_job *head, *tail;
    bool stopping;
    unsigned long groups, jobs; /* guarded by lock */
};

/* Writes the drained usage counters, adding to what is stored. Tokens
 * revoked since their use are skipped, so no orphan usage rows appear. */
static void flush_usage(writer *w, store_batch *batch) {
    usage_entry *entries = NULL;
    size_t n = 0;
    uint64_t dropped = 0;
    if (w->usage == NULL || usage_drain(w->usage, &entries, &n, &dropped) != TOKEND_OK) {
        return;
    }
    if (dropped > 0) {
        LOG(LOG_WARN, "usage.dropped", "count=%llu", (unsigned long long)dropped);
    }
    if (n == 0) {
        free(entries);
        return;
    }
    store_batch_clear(batch);
    for (size_t i = 0; i < n; i++) {
        uint8_t digest[TOKEN_DIGEST_LEN];
        if (store_get_digest(w->st, entries[i].id, digest) != TOKEND_OK) {
            continue;
        }
        int64_t last = 0;
        uint64_t count = 0;
        (void)store_get_usage(w->st, entries[i].id, &last, &count);
        if (entries[i].last_used_ms > last) {
            last = entries[i].last_used_ms;
        }
        store_batch_put_usage(batch, entries[i].id, last, count + entries[i].count);
    }
    char *err = NULL;
    if (store_batch_count(batch) > 0 &&
        store_batch_commit(w->st, batch, false, &err) != TOKEND_OK) {
        char q[256];
        LOG(LOG_WARN, "usage.flush_failed", "tokens=%zu error=%s", n,
            log_quote(q, sizeof(q), err));
    }
    free(err);
    store_batch_clear(batch);
    free(entries);
}

/* Applies and commits one group of jobs, then settles each. */
static void commit_group(writer *w, writer_job *jobs, store_batch *batch) {
    store_batch_clear(batch);
    unsigned long n = 0;
    for (writer_job *j = jobs; j != NULL; j = j->next, n++) {
        j->apply_status = j->apply(j, w->st, batch);
    }
    int commit_rv = TOKEND_OK;
    if (store_batch_count(batch) > 0) {
        char *err = NULL;
        commit_rv = store_batch_commit(w->st, batch, true, &err);
        if (commit_rv != TOKEND_OK) {
            char q[256];
            LOG(LOG_ERROR, "store.commit_failed", "jobs=%lu error=%s", n,
                log_quote(q, sizeof(q), err));
        }
        free(err);
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

static void deadline_after(struct timespec *ts, int ms) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *writer_main(void *arg) {
    writer *w = arg;
    store_batch *batch = store_batch_new();
    if (batch == NULL) {
        LOG(LOG_ERROR, "writer.oom", "%s", "");
        abort();
    }
    struct timespec next_flush;
    deadline_after(&next_flush, w->usage_flush_ms);
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
            flush_usage(w, batch);
            deadline_after(&next_flush, w->usage_flush_ms);
        }
        if (stopping && jobs == NULL) {
            break;
        }
    }
    store_batch_free(batch);
    return NULL;
}

int writer_start(store *st, usage *u, int usage_flush_ms, writer **out) {
    writer *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return TOKEND_INTERNAL;
    }
    w->st = st;
    w->usage = u;
    w->usage_flush_ms = usage_flush_ms > 0 ? usage_flush_ms : 2000;
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
