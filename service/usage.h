/*
 * usage.h — last-used times and use counts, kept in memory on the verify
 * path and written behind by the writer thread.
 *
 * A database write per verify is the classic complaint about Sanctum; here
 * a verify only bumps an entry in a mutex-guarded hash table (a few tens of
 * nanoseconds), and the writer drains the table every few seconds into one
 * unsynced batch. A crash loses at most that window of usage data, never a
 * token or a revocation. The table is bounded: past `capacity` distinct
 * tokens between two flushes, further touches are dropped (and counted).
 */
#ifndef TOKEND_USAGE_H
#define TOKEND_USAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "token.h"

typedef struct usage usage;

typedef struct usage_entry {
    char id[TOKEN_ID_LEN + 1];
    int64_t last_used_ms;
    uint64_t count; /* uses since the last drain */
    /* A drained entry's flush: the use count the store will hold once it
     * commits (usage_commit_begin); 0 until the writer sets it. */
    uint64_t stored_total;
} usage_entry;

/* A table for at most `capacity` distinct tokens between drains. */
usage *usage_new(size_t capacity);
void usage_free(usage *u);

/* Records one use of token `id` at now_ms. Never blocks for long. */
void usage_touch(usage *u, const char *id, int64_t now_ms);

/* Moves every entry out: *out is a malloc'd array of *n entries (the
 * caller frees it), and the table is empty again. *dropped is how many
 * touches were dropped since the last drain because the table was full. */
int usage_drain(usage *u, usage_entry **out, size_t *n, uint64_t *dropped);

/* Puts drained entries back (adding to any use since the drain), for a
 * flush that could not be written; entries past the capacity count as
 * dropped. Ends the flush like usage_flushed. */
void usage_restore(usage *u, const usage_entry *entries, size_t n);

/* The writer's flush, after usage_drain: usage_commit_begin just before it
 * commits the drained entries, with each one's stored_total set (n of
 * them, as drained); usage_flushed once they are stored (or were
 * skipped). Until then usage_peek still sees them. */
void usage_commit_begin(usage *u, const usage_entry *entries, size_t n);
void usage_flushed(usage *u);

/* The uses of `id` not in the store yet, given the use count the caller
 * just read from the store (store_get_usage; 0 if none): the latest into
 * *last_used_ms (0: none) and their number into *count. A drained entry
 * whose flush the store already shows (stored_count has reached its
 * stored_total) is not counted again. Returns the table's generation,
 * which moves on whenever drained entries leave the table: a reader that
 * got another generation from usage_generation before its store read may
 * have missed uses the flush moved in between, and reads again
 * (methods.c's usage_of). */
uint64_t usage_peek(usage *u, const char *id, uint64_t stored_count,
                    int64_t *last_used_ms, uint64_t *count);
uint64_t usage_generation(usage *u);

#endif /* TOKEND_USAGE_H */
