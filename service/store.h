/*
 * store.h — tokend's durable state, in RocksDB. The only module that
 * includes rocksdb/c.h.
 *
 * Column families, each access path a point read or a prefix scan:
 *   default  meta: "schema" -> "1", "initialised" -> Unix ms of init
 *   tokens   SHA-256 digest (32 bytes)   -> encoded token_record
 *   ids      public id (16 chars)        -> digest (32 bytes)
 *   owners   owner NUL be64(created_ms) be32(created_seq) id -> "" (an
 *            owner's tokens in creation order, for paging)
 *   usage    public id -> be64(last_used_ms) be64(use_count)
 *   series   scope step name NUL be64(bucket start ms) -> a usage series
 *            bucket (record.h; scope: token, owner or deployment; step:
 *            minute or hour), dropped past its retention by a compaction
 *            filter (created by a read-write open of an older store)
 *   tombstones  digest of a revoked token, and 'i' + its id ->
 *            be64(revoked_ms) id owner, for
 *            store_options.tombstone_retention_ms (the alerts tell a
 *            revoked token presented from one never issued)
 *   networks id + network bytes (store_network) -> be64(last_seen_ms), the
 *            client networks a token was used from, for
 *            store_options.network_history_ms
 * Tombstones and networks older than their retention are dropped by a
 * compaction filter, and readers ignore those no compaction reached yet.
 * A read-write open of a store made before these two families adds them.
 * and in default, the admin index: "admin\0" + id -> be64(expires_ms) for
 * every token with the tokend:admin ability, kept by put_token and
 * delete_token (built once for a store made before it, at its first
 * read-write open).
 * The bytes of the record, the owners key, the list cursor and the usage
 * value are record.h's.
 *
 * Reads may run from any thread at once. Writes go through a store_batch
 * committed by one thread (the service's writer); a committed batch with
 * sync == true has its WAL fsynced before store_batch_commit returns, so
 * an acknowledged change survives kill -9 and power loss.
 *
 * Errors follow error.h: every call that can fail returns a tokend
 * status and, when given a tokend_error (NULL is allowed), fills it on
 * failure with the status and what went wrong, RocksDB's own text
 * included. TOKEND_STORAGE_ERROR is a RocksDB or file system failure,
 * TOKEND_INTERNAL stored bytes that do not decode (or no memory),
 * TOKEND_INVALID_ARGUMENT a NULL argument or, in a write, a record outside
 * token.h's bounds. A point read of a missing key is TOKEND_NOT_FOUND, an
 * answer rather than a failure: it leaves *err alone.
 */
#ifndef TOKEND_STORE_H
#define TOKEND_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "token.h"
#include "tokend.h"

typedef struct store store;
typedef struct store_batch store_batch;

typedef struct store_options {
    size_t block_cache_bytes; /* 0: 32 MiB */
    size_t memtable_bytes;    /* all memtables together; 0: 64 MiB */
    bool create_if_missing;   /* create the directory and column families */
    bool read_only;           /* open for reading only (no writer) */
    /* Retention of usage series buckets (series.h), in ms; 0 keeps them. */
    int64_t series_minute_keep_ms;
    int64_t series_hour_keep_ms;
    /* How long tombstones and seen networks are kept, in ms; 0: 30 days. */
    int64_t tombstone_retention_ms;
    int64_t network_history_ms;
} store_options;

/* Opens (or with create_if_missing, creates) the store in `dir`; on
 * TOKEND_OK *out is the store, to close with store_close. A dir without a
 * store, when not creating, is TOKEND_NOT_FOUND ("no tokend store in DIR
 * (run tokend init)", in *err like every failure here); a store another
 * process (or this one) has open is TOKEND_UNAVAILABLE ("the data dir DIR
 * is in use by another process").
 * create_if_missing with read_only is TOKEND_INVALID_ARGUMENT. `opts` may
 * be NULL (defaults: open an existing store read-write). */
int store_open(const char *dir, const store_options *opts, store **out,
               tokend_error *err);

/* Flushes memtables and closes. NULL is ignored. After a failed commit
 * (store_write_failed) it closes without a flush: the WAL keeps the
 * writes. */
void store_close(store *st);

/* Recovery after a failed write (a full or read-only disk). RocksDB then
 * refuses every write with the error, and the WAL file whose write failed
 * must not be written again (see store.c), so the writer stops committing
 * and, once store_probe_writable passes, calls store_reopen before it
 * commits again.
 *
 * store_write_failed: whether a commit failed since the last open.
 * store_probe_writable: TOKEND_OK if the data dir has at least 4 MiB free
 *   and takes a small file (created, written, fsynced, removed); else
 *   TOKEND_STORAGE_ERROR with the reason in *err.
 * store_reopen: closes the database (without a flush) and opens it again
 *   for writing; reads wait meanwhile. If that open fails the store is
 *   opened read-only, so that reads go on and commits fail, and the error
 *   is returned; call it again later. Call it from the writing thread. */
bool store_write_failed(store *st);
int store_probe_writable(store *st, tokend_error *err);
int store_reopen(store *st, tokend_error *err);

/* Whether `tokend init` completed on this store (meta "initialised"). */
bool store_is_initialised(store *st);

/* Point reads, safe from any thread. A missing key is TOKEND_NOT_FOUND.
 * store_get_token overwrites *out (zeroed on failure; on TOKEND_OK free
 * it with token_record_free). */
int store_get_token(store *st, const uint8_t digest[TOKEN_DIGEST_LEN], token_record *out,
                    tokend_error *err);
int store_get_digest(store *st, const char *id, uint8_t digest[TOKEN_DIGEST_LEN],
                     tokend_error *err);
int store_get_usage(store *st, const char *id, int64_t *last_used_ms, uint64_t *use_count,
                    tokend_error *err);

/* One page of `owner`'s tokens in creation order, at most `limit`,
 * starting after `cursor` (NULL or "" for the first page). On TOKEND_OK
 * *out is a malloc'd array of *n records (free each with token_record_free
 * then free the array) and *next_cursor a malloc'd opaque string, or NULL
 * when no tokens follow. A cursor that does not decode is
 * TOKEND_INVALID_ARGUMENT, as are a limit of 0 and an owner longer than
 * TOKEN_OWNER_MAX. The page is read from one snapshot. */
int store_list_owner(store *st, const char *owner, const char *cursor, size_t limit,
                     token_record **out, size_t *n, char **next_cursor,
                     tokend_error *err);

/* store_list_owner, but the page also stops before the record that would
 * take the encoded records' bytes together over `max_bytes` (the first
 * record is always taken), so a page of large records holds fewer of
 * them; *next_cursor then continues with that record. */
int store_list_owner_within(store *st, const char *owner, const char *cursor,
                            size_t limit, size_t max_bytes, token_record **out, size_t *n,
                            char **next_cursor, tokend_error *err);

/* Every public id of `owner` (for revoke-all), malloc'd array of malloc'd
 * strings; the caller frees both. Committed ids only: the writer uses
 * store_batch_owner_ids, which also sees its batch. */
int store_owner_ids(store *st, const char *owner, char ***ids, size_t *n,
                    tokend_error *err);

/* Write batches. A batch collects operations; commit applies them all or
 * none. Not thread-safe: one batch belongs to one thread. */
store_batch *store_batch_new(void);
void store_batch_free(store_batch *b);
void store_batch_clear(store_batch *b);
/* Operations added since the last clear or commit: each put_token,
 * delete_token, put_usage, put_tombstone, put_network and
 * mark_initialised call counts one. */
size_t store_batch_count(const store_batch *b);

/* Adds a new token: tokens[digest], ids[id], owners[owner,created,id]. A
 * record outside token.h's bounds is TOKEND_INVALID_ARGUMENT and adds
 * nothing; a batch that an earlier operation failed answers with that
 * failure. */
int store_batch_put_token(store_batch *b, const uint8_t digest[TOKEN_DIGEST_LEN],
                          const token_record *rec, tokend_error *err);
/* Removes a token and its index entries and usage. A NULL digest or a
 * record without a valid id and owner makes the commit fail with
 * TOKEND_INVALID_ARGUMENT (as does put_usage with an invalid id). */
void store_batch_delete_token(store_batch *b, const uint8_t digest[TOKEN_DIGEST_LEN],
                              const token_record *rec);
/* Sets usage[id]. */
void store_batch_put_usage(store_batch *b, const char *id, int64_t last_used_ms,
                           uint64_t use_count);
/* Marks the store initialised (meta "initialised" = now_ms). */
void store_batch_mark_initialised(store_batch *b, int64_t now_ms);

/* Reads through a batch: what the store will hold once `b` commits, that
 * is the committed state with b's operations applied in order on top. The
 * writer reads this way while it builds a group, so that each job sees
 * every job before it, committed or earlier in the same group. Errors and
 * outputs as store_get_token, store_get_digest and store_owner_ids (the
 * ids: the committed ones still there, in creation order, then the
 * batch's own). A poisoned batch is read as it stands (its commit will
 * fail anyway). Call them from the thread that builds and commits `b`. */
int store_batch_get_token(store *st, const store_batch *b,
                          const uint8_t digest[TOKEN_DIGEST_LEN], token_record *out,
                          tokend_error *err);
int store_batch_get_digest(store *st, const store_batch *b, const char *id,
                           uint8_t digest[TOKEN_DIGEST_LEN], tokend_error *err);
int store_batch_owner_ids(store *st, const store_batch *b, const char *owner, char ***ids,
                          size_t *n, tokend_error *err);

/* How many tokens `owner` has through the batch (as above), into *count.
 * The committed count is read from the owners index the first time an
 * owner is asked for and then kept in a bounded cache (1024 owners; an
 * evicted one is counted again), which each commit updates by the
 * batch's puts and deletes. That is exact as long as every put_token adds
 * a token not yet stored and every delete_token removes one that is, as
 * read through the same batch: the service's writer jobs check both
 * before they add the operation. A reopen (store_reopen) empties the
 * cache. Call it from the thread that commits. */
int store_batch_owner_count(store *st, const store_batch *b, const char *owner,
                            uint64_t *count, tokend_error *err);

/* How many tokens with the tokend:admin ability are valid (not expired at
 * now_ms) through the batch, into *count: a scan of the admin index (admin
 * tokens are few), with b's puts and deletes applied. Call it from the
 * thread that builds and commits `b`. */
int store_batch_admins_valid(store *st, const store_batch *b, int64_t now_ms,
                             uint64_t *count, tokend_error *err);

/* Tombstones: what a revoked token was, kept for the retention. */
typedef struct store_tombstone {
    int64_t revoked_ms;
    char id[TOKEN_ID_LEN + 1];
    char owner[TOKEN_OWNER_MAX + 1];
} store_tombstone;

/* Adds the tombstone of the token `rec` with `digest`, revoked at
 * revoked_ms (the revoke's batch adds it with the deletion). A bad record
 * makes the commit fail with TOKEND_INVALID_ARGUMENT. */
void store_batch_put_tombstone(store_batch *b, const uint8_t digest[TOKEN_DIGEST_LEN],
                               const token_record *rec, int64_t revoked_ms);
/* The tombstone of `digest` into *out; TOKEND_NOT_FOUND if there is none
 * or it is past its retention at now_ms. Safe from any thread. */
int store_get_tombstone(store *st, const uint8_t digest[TOKEN_DIGEST_LEN], int64_t now_ms,
                        store_tombstone *out, tokend_error *err);

/* The same by the revoked token's public id (a second key, 'i' + id, put
 * with the first): who owned a revoked token, for GetUsage of its id. */
int store_get_tombstone_of_id(store *st, const char *id, int64_t now_ms,
                              store_tombstone *out, tokend_error *err);

/* A client network a token was used from: 1 family byte (4 or 6) and the
 * network's prefix (3 bytes of a /24, 8 of a /64). */
#define STORE_NETWORK_MAX 9
typedef struct store_network {
    uint8_t bytes[STORE_NETWORK_MAX];
    size_t len;
    int64_t last_seen_ms;
} store_network;

/* Sets networks[id + net]. An invalid id or length fails the commit. */
void store_batch_put_network(store_batch *b, const char *id, const store_network *net);
/* At most `max` of id's networks seen within the history window at now_ms
 * into out[0..*n), in key order. Safe from any thread. */
int store_get_networks(store *st, const char *id, int64_t now_ms, store_network *out,
                       size_t max, size_t *n, tokend_error *err);

/* Applies the batch atomically; with sync, fsyncs the WAL first. A batch
 * an operation failed (see store_batch_delete_token) applies nothing and
 * returns that failure. The batch is empty afterwards whatever the
 * outcome (ready for reuse; a failed batch is not retried by a later
 * commit). */
int store_batch_commit(store *st, store_batch *b, bool sync, tokend_error *err);

/* Column families of the store, for store_sizes (store.c asserts it is
 * their number). */
#define STORE_FAMILIES 10

/* RocksDB's memory and sizes, for the metrics page (RocksDB's properties,
 * estimates where RocksDB says so). */
typedef struct store_family_sizes {
    const char *name;             /* "default", "tokens", "ids", ... (store.h's top) */
    uint64_t memtable_bytes;      /* rocksdb.cur-size-all-mem-tables */
    uint64_t table_readers_bytes; /* rocksdb.estimate-table-readers-mem */
    uint64_t live_data_bytes;     /* rocksdb.estimate-live-data-size */
    uint64_t sst_bytes;           /* rocksdb.total-sst-files-size */
    uint64_t keys;                /* rocksdb.estimate-num-keys */
} store_family_sizes;

typedef struct store_sizes {
    uint64_t block_cache_capacity, block_cache_usage, block_cache_pinned;
    store_family_sizes families[STORE_FAMILIES];
} store_sizes;

/* Reads them, safe from any thread (a reopen waits for it). A property
 * RocksDB does not answer reads as 0. TOKEND_OK, or TOKEND_STORAGE_ERROR
 * when the store is closed (a failed reopen). */
int store_sizes_read(store *st, store_sizes *out, tokend_error *err);
/* ---------- the audit log (events.h builds the events) ----------
 *
 * events       be64(seq) -> the packed Event (its hash last, record.h)
 * event_index  'o' owner NUL be64(seq), 't' token id be64(seq) -> ""
 *
 * The log's head (last seq, its hash) is kept in memory: loaded at open,
 * read through a batch while the writer builds a group, and moved on only
 * when a batch that appended events commits. A failed or cleared batch
 * leaves it where the last commit put it, so the next event takes the
 * seq the failed one would have had. */
#define STORE_EVENT_HASH_LEN 32

/* The head through the batch: the seq of the last event (0: none yet)
 * and its hash (32 zero bytes before the first). `b` may be NULL (the
 * committed head). Call it from the thread that commits. */
void store_batch_event_head(store *st, const store_batch *b, uint64_t *seq,
                            uint8_t hash[STORE_EVENT_HASH_LEN]);

/* The last committed event's seq (0: none); any thread. */
uint64_t store_event_last_seq(store *st);

/* Appends event `seq`, which must be the head's seq + 1 (else
 * TOKEND_INTERNAL and nothing added): value[0..len) is the packed Event,
 * hash its hash; owner and token_id (NULL or "": none) get index keys.
 * The batch's head becomes this event. */
int store_batch_put_event(store *st, store_batch *b, uint64_t seq, const uint8_t *value,
                          size_t len, const uint8_t hash[STORE_EVENT_HASH_LEN],
                          const char *owner, const char *token_id, tokend_error *err);

/* Makes the batch's commit fail with `status` and `why`, applying none of
 * it: for a job that added its change but could not add the change's
 * event, so that neither is written. */
void store_batch_fail(store_batch *b, int status, const char *why);

/* Deletes event `seq` and its index keys (retention: the same owner and
 * token id it was put with). */
void store_batch_delete_event(store_batch *b, uint64_t seq, const char *owner,
                              const char *token_id);

/* Called for each event of a scan, in seq order; returns nonzero to stop
 * after it. The value is valid during the call only. */
typedef int (*store_event_fn)(void *arg, uint64_t seq, const uint8_t *value, size_t len);

/* Scans the events after seq `after` in seq order, from one snapshot:
 * all of them (index 0), or those of owner `name` (index 'o') or token
 * id `name` ('t'), through the event index. Reads at most `max_keys`
 * keys, so a call's work is bounded whatever the filters match. On
 * TOKEND_OK *last_seq is the seq of the last key read (`after` if none)
 * and *ended whether no key follows it. */
int store_events_scan(store *st, char index, const char *name, uint64_t after,
                      size_t max_keys, store_event_fn fn, void *arg, uint64_t *last_seq,
                      bool *ended, tokend_error *err);

/* Overwrites the stored bytes of event `seq`, outside any batch and
 * without its index or head: for tests of `tokenctl events --verify` (a
 * tampered store) only. */
int store_event_raw_put(store *st, uint64_t seq, const uint8_t *value, size_t len,
                        tokend_error *err);
/* ---------- usage series (series.h) ---------- */

#include "record.h"

/* Sets series[key] to `bucket` (encoded by record.h); counts one
 * operation. INVALID_ARGUMENT for a bucket that does not encode. */
int store_batch_put_series(store_batch *b, const uint8_t *key, size_t klen,
                           const series_bucket *bucket, tokend_error *err);

/* The bucket at `key` through the batch into *out (free it with
 * series_bucket_free); TOKEND_NOT_FOUND when there is none. */
int store_batch_get_series(store *st, const store_batch *b, const uint8_t *key,
                           size_t klen, series_bucket *out, tokend_error *err);

/* Called for each stored bucket of a range, oldest first; takes the
 * bucket (frees it or keeps it). A status other than TOKEND_OK ends the
 * scan with it. */
typedef int (*store_series_fn)(void *arg, int64_t start_ms, series_bucket *bucket);

/* The stored buckets of one series (scope, step, name: the id, the owner,
 * or "" for the deployment) whose start is in [from_ms, to_ms) and not
 * past the step's retention, oldest first, through `fn`. */
int store_series_range(store *st, series_scope scope, series_step step, const char *name,
                       int64_t from_ms, int64_t to_ms, store_series_fn fn, void *arg,
                       tokend_error *err);

/* The oldest bucket start the step's retention keeps at now_ms
 * (INT64_MIN when it keeps all). */
int64_t store_series_oldest(const store *st, series_step step, int64_t now_ms);

/* Compacts the series family now, which drops the buckets past their
 * retention (RocksDB also does it by itself as the family grows). */
int store_compact_series(store *st, tokend_error *err);

#endif /* TOKEND_STORE_H */
