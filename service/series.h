/*
 * series.h — usage series: Verify calls per token and minute by outcome,
 * route and client address, counted in memory on the verify path and
 * written behind by the writer with the usage flush (usage.h).
 *
 * A verify adds one call to the entry of (token, minute) under one mutex:
 * a hash lookup and a few short string compares, no allocation once the
 * bucket has seen its route and address. Calls of a token the service
 * does not know (MALFORMED, NOT_FOUND) count in an entry of the deployment
 * alone. The writer drains the table every `--usage-flush-ms` and adds
 * every entry to six stored buckets — the token's, its owner's and the
 * deployment's, each by the minute and by the hour — merged with what is
 * stored for them, in the same unsynced batch as the use counts.
 *
 * Bounded: at most `capacity` (token, minute) entries between two flushes
 * (the calls of further ones are dropped and counted); per bucket at most
 * `max_routes` routes (the rest count as "other") and, in memory,
 * 4 x `max_ips` client addresses (the rest "other"), of which a stored
 * bucket keeps the top `max_ips`; and at most SERIES_MEMORY_MAX bytes of
 * route and address text, past which new ones count as "other".
 *
 * Readers (GetUsage) add the entries not yet stored to what they read
 * from the store, as GetToken does for use counts (series_read).
 */
#ifndef TOKEND_SERIES_H
#define TOKEND_SERIES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "record.h"
#include "store.h"

#define SERIES_MEMORY_MAX ((size_t)64 << 20)
#define SERIES_OTHER "other"
#define SERIES_NONE "-"
#define SERIES_MINUTE_MS 60000
#define SERIES_HOUR_MS 3600000

typedef struct series series;

/* A table for at most `capacity` (token, minute) entries between flushes,
 * keeping `max_routes` routes and `max_ips` addresses per bucket. */
series *series_new(size_t capacity, size_t max_routes, size_t max_ips);
void series_free(series *s);

/* Counts one Verify at now_ms: of token `id` of `owner` (both NULL for a
 * token the service does not know), with verdict `outcome` (a tokend
 * status below RECORD_SERIES_OUTCOMES), under `route` and `client_ip`
 * (NULL or "": counted as "-"). */
void series_add_call(series *s, const char *id, const char *owner, int outcome,
                     const char *route, const char *client_ip, int64_t now_ms);

/* The writer's flush. series_stage moves the counted entries out of the
 * table (they stay visible to readers) and adds their buckets, merged
 * with the stored ones read through `batch`, to `batch`; *staged is how
 * many (token, minute) entries it took. Then, just before the batch
 * commits, series_commit_begin; after it, series_flushed if it committed,
 * else series_restore (the entries go back into the table for the next
 * flush). *dropped gets the calls dropped since the last stage. */
int series_stage(series *s, store *st, store_batch *batch, size_t *staged,
                 uint64_t *dropped, tokend_error *err);
void series_commit_begin(series *s);
void series_flushed(series *s);
void series_restore(series *s);

/* One series' buckets of [from_ms, to_ms), stored and not yet stored, as
 * the sum over `scope` (`name`: the id, the owner, "" for the deployment):
 * *out is a malloc'd array of *n buckets, oldest first, each with at most
 * the table's max_routes routes and max_ips addresses (free each with
 * series_bucket_free, then the array); *starts their start times. A flush
 * committing meanwhile makes it read again, so that no call is missed or
 * counted twice. */
int series_read(series *s, store *st, series_scope scope, series_step step,
                const char *name, int64_t from_ms, int64_t to_ms, series_bucket **out,
                int64_t **starts, size_t *n, tokend_error *err);

/* Adds `src` into `dst`: outcomes summed, routes kept up to max_routes
 * (then "other"), addresses up to max_ips (then "other"); "-" and "other"
 * never count against a bound. TOKEND_INTERNAL without memory (dst then
 * holds part of src). */
int series_bucket_add(series_bucket *dst, const series_bucket *src, size_t max_routes,
                      size_t max_ips);

/* Keeps dst's top `max_ips` addresses by count (ties: the smaller text),
 * adding the rest to "other". */
int series_bucket_trim_ips(series_bucket *dst, size_t max_ips);

#endif /* TOKEND_SERIES_H */
