/*
 * limiter.h — rate limits as token buckets in tokend's memory.
 *
 * Status: this header is the interface the policy work codes against;
 * its implementation is not in this release yet (docs/policy.md).
 *
 * A bucket per (key, limit name): the key is a token id or an owner, the
 * limit one of its policy_rate. A bucket holds at most `limit` calls and
 * refills continuously at limit / window (so "100/1m" allows a burst of
 * 100, then one call every 600 ms). A check takes one call from every
 * bucket of its key at once, or from none: a call refused by one limit
 * costs the others nothing.
 *
 * Thread-safe and non-blocking in practice: the table is split into
 * shards, each behind its own mutex, held for a hash lookup and a few
 * arithmetic operations. Memory is bounded: a shard holds at most
 * capacity / shards buckets; when one is full, a bucket that has refilled
 * completely (one that would allow as much as a new one) is evicted, and
 * failing that the least recently used one. Evicting a full bucket loses
 * nothing; evicting a partly used one forgives up to its used calls, which
 * only happens when more keys are limited at once than `capacity` allows
 * (counted in limiter_stats).
 *
 * State is in memory only: a restart refills every bucket (docs/policy.md).
 */
#ifndef TOKEND_LIMITER_H
#define TOKEND_LIMITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

typedef struct limiter limiter;

/* A table for about `capacity` buckets (at least 1024 are kept). NULL
 * when out of memory. */
limiter *limiter_new(size_t capacity);
void limiter_free(limiter *l);

/* What a limit looks like after a check, for the RateLimit header fields. */
typedef struct limiter_state {
    const policy_rate *rate; /* the limit (points into the caller's array) */
    uint64_t remaining;      /* calls that would pass now, after this check */
    int64_t reset_ms;        /* until the bucket is full again */
} limiter_state;

/* Takes one call at now_ms from each of rates[0..n) of `key` (NUL-terminated,
 * at most 160 bytes). True when every bucket had one: all are charged.
 * False when at least one had none: nothing is charged, and *retry_after_ms
 * is the time until every limit would allow a call again (>= 1).
 * states[0..n), when not NULL, receive each limit's state after the check
 * (on a refusal, the refusing limits show remaining 0). A bucket whose
 * limit or window changed since it was last used starts full with the new
 * one. n == 0 is always true. now_ms going backwards is taken as no time
 * passing. */
bool limiter_take(limiter *l, const char *key, const policy_rate *rates, size_t n,
                  int64_t now_ms, int64_t *retry_after_ms, limiter_state *states);

/* Forgets every bucket of `key` (a revoked token's). */
void limiter_forget(limiter *l, const char *key);

typedef struct limiter_stats {
    uint64_t buckets;         /* held now */
    uint64_t evicted_partial; /* partly used buckets evicted so far */
} limiter_stats;

void limiter_stats_read(limiter *l, limiter_stats *out);

#endif /* TOKEND_LIMITER_H */
