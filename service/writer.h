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

#include <stddef.h>

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
     * an error it must have added nothing. Runs on the writer thread. */
    int (*apply)(writer_job *job, store *st, store_batch *batch);
    /* Runs on the writer thread once the job is settled: `status` is
     * apply's error, or the commit's status. The job may free itself. */
    void (*done)(writer_job *job, int status);
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

#endif /* TOKEND_WRITER_H */
