/*
 * writer.h — the one thread that writes the store, committing in groups.
 *
 * An fsync costs milliseconds; a callback must never wait for one (NNG has
 * four task threads). So writes are handed here as jobs: the writer takes
 * every queued job, lets each add its operations to one batch, commits the
 * batch with the WAL synced, and then tells each job how it went (the job
 * replies to its caller from there). Under load one fsync serves many
 * creates and revokes ("group commit"); alone, a job waits for one fsync.
 * Jobs are applied one at a time in the order they were queued, each
 * reading the batch as the jobs before it left it, so a group commits
 * exactly what those jobs would have committed one by one.
 *
 * The writer also flushes the usage counters (usage.h) and series
 * (series.h) every
 * `usage_flush_ms` and once more when it stops.
 */
#ifndef TOKEND_WRITER_H
#define TOKEND_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"
#include "store.h"
#include "series.h"
#include "usage.h"

typedef struct writer writer;
typedef struct writer_job writer_job;

struct writer_job {
    /* Adds the job's writes to `batch`, reading through it as it needs
     * (store_batch_get_*: it sees every job before it, committed or
     * earlier in the same group, so the jobs' outcome is that of running
     * them one after another in queue order). Returns a tokend status; on
     * an error it must have added nothing but, for a refusal, its audit
     * event (events.h), which then commits with the group. Runs on the
     * writer thread. */
    int (*apply)(writer_job *job, store *st, store_batch *batch);
    /* Runs on the writer thread once the job is settled: `status` is
     * apply's error, or the commit's status. The job may free itself. */
    void (*done)(writer_job *job, int status);
    /* The job's writes are data a crash may lose, like the usage counts
     * (the alerts' seen networks): a group of only such jobs commits
     * without an fsync; any other job in the group makes it synced. */
    bool unsynced;
    writer_job *next; /* the writer's; leave alone */
    int apply_status; /* the writer's; leave alone */
};

/* Starts the writer thread. `usage` may be NULL (nothing to flush), and
 * `series` (no usage series; series.h) too. */
int writer_start(store *st, usage *usage, series *series, int usage_flush_ms,
                 writer **out);

/* Queues a job. Returns TOKEND_OK, or TOKEND_UNAVAILABLE if the writer is
 * stopping (the job is then not run; its done is not called). */
int writer_submit(writer *w, writer_job *job);

/* Runs every queued job, flushes usage, stops and joins the thread, frees
 * the writer. */
void writer_stop(writer *w);

/* Groups committed and jobs committed so far (for logs and benchmarks). */
void writer_stats(writer *w, unsigned long *groups, unsigned long *jobs);

/* What the metrics page reads of the writer, at any time from any thread. */
typedef struct writer_observed {
    const metrics_histogram *commit_us;  /* each group's synced commit, in us */
    const metrics_histogram *group_jobs; /* jobs per committed group */
    int64_t started_unix_ms;             /* when the writer started */
    int64_t last_flush_unix_ms;          /* the last usage flush's end; 0: none yet */
    int64_t last_flush_us;               /* how long that flush took */
    bool writes_stopped;                 /* a disk fault stopped commits (degraded) */
} writer_observed;

/* Fills *out; the histograms stay the writer's, valid until writer_stop. */
void writer_observe(writer *w, writer_observed *out);

#endif /* TOKEND_WRITER_H */
