/*
 * record.h — the bytes of what tokend stores: a token_record as the value
 * of the tokens family, the key of the owners index and the list cursor
 * made from it, and the value of the usage family (store.h has the
 * families).
 *
 * Pure: no I/O, no RocksDB, no clock. store.c puts these bytes into
 * RocksDB and reads them back; this module only turns values into bytes
 * and bytes into values. Whatever decodes takes its input as untrusted
 * (bytes from disk, a cursor from a caller) and checks every length
 * against the bounds of token.h before it reads.
 */
#ifndef TOKEND_RECORD_H
#define TOKEND_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "token.h"
#include "tokend.h"

/* Encodes `rec` into a malloc'd buffer: on TOKEND_OK *out holds *len
 * bytes, the caller's to free. A NULL name or metadata value is encoded
 * as "". A record outside token.h's bounds is TOKEND_INVALID_ARGUMENT
 * (*err names the field), no memory TOKEND_INTERNAL; on error *out is
 * NULL and *len 0. */
int record_encode(const token_record *rec, uint8_t **out, size_t *len, tokend_error *err);

/* Decodes buf[0..len) into *out, which it overwrites; on TOKEND_OK free
 * it with token_record_free. Bytes that are not exactly one record of the
 * known version within token.h's bounds are TOKEND_INTERNAL (stored bytes
 * that do not decode are corruption, not a caller's mistake), with *out
 * zeroed and nothing left allocated. */
int record_decode(const uint8_t *buf, size_t len, token_record *out, tokend_error *err);

/* The owners index key: owner NUL be64(created_ms) be32(created_seq) id.
 * An owner's keys sort by creation time, then by the creation sequence,
 * which orders tokens made in the same millisecond (the random id cannot).
 * The part after owner NUL is the key's suffix, what a list cursor holds. */
#define RECORD_OWNER_ORDER_LEN 12
#define RECORD_OWNER_SUFFIX_LEN (RECORD_OWNER_ORDER_LEN + TOKEN_ID_LEN)
#define RECORD_OWNER_KEY_MAX (TOKEN_OWNER_MAX + 1 + RECORD_OWNER_SUFFIX_LEN)

/* Writes owner NUL, the prefix every key of that owner starts with, into
 * `key`; returns its length, or 0 if owner is NULL or longer than
 * TOKEN_OWNER_MAX. */
size_t record_owner_prefix(const char *owner, uint8_t key[RECORD_OWNER_KEY_MAX]);

/* Writes the owners key of `rec` into `key`; returns its length, or 0 if
 * rec has no storable owner or no valid id. */
size_t record_owner_key(const token_record *rec, uint8_t key[RECORD_OWNER_KEY_MAX]);

/* The id inside the key suffix suffix[0..len) (TOKEN_ID_LEN characters,
 * not NUL-terminated; it points into `suffix`), or NULL if the bytes are
 * not a suffix record_owner_key writes. */
const char *record_owner_suffix_id(const uint8_t *suffix, size_t len);

/* A list cursor: the key suffix of a page's last entry in hex, so that
 * the next page starts right after that entry. */
#define RECORD_CURSOR_LEN (2 * RECORD_OWNER_SUFFIX_LEN)

/* Writes the cursor of `suffix` into `cursor`, NUL-terminated. */
void record_cursor_encode(const uint8_t suffix[RECORD_OWNER_SUFFIX_LEN],
                          char cursor[RECORD_CURSOR_LEN + 1]);

/* Writes the cursor that continues right after `rec` in its owner's
 * list; false if rec has no storable owner or no valid id. */
bool record_cursor_of(const token_record *rec, char cursor[RECORD_CURSOR_LEN + 1]);

/* Decodes `cursor` (hex digits in either case) into `suffix`; false if it
 * is not the cursor of a key suffix (its length, a non-hex digit, an
 * invalid id). */
bool record_cursor_decode(const char *cursor, uint8_t suffix[RECORD_OWNER_SUFFIX_LEN]);

/* The usage value: be64(last_used_ms) be64(use_count). */
#define RECORD_USAGE_LEN 16

/* Writes the usage value of a token into `value`. */
void record_usage_encode(int64_t last_used_ms, uint64_t use_count,
                         uint8_t value[RECORD_USAGE_LEN]);

/* Reads a usage value of `len` bytes; false if it is not one. */
bool record_usage_decode(const uint8_t *value, size_t len, int64_t *last_used_ms,
                         uint64_t *use_count);

/* The audit log (events.h). The events family's key is be64(seq), so its
 * keys sort in the log's order; the value is the packed Event, hash set.
 * The event index family holds, for each event, empty-valued keys
 * 'o' owner NUL be64(seq) (when it concerns an owner) and 't' token id
 * be64(seq) (when it concerns a token), so that a filter on either is a
 * prefix scan in seq order. */
#define RECORD_EVENT_KEY_LEN 8
#define RECORD_EVENT_HASH_LEN 32
#define RECORD_EVENT_INDEX_MAX (1 + TOKEN_OWNER_MAX + 1 + RECORD_EVENT_KEY_LEN)

void record_event_key(uint64_t seq, uint8_t key[RECORD_EVENT_KEY_LEN]);
/* The seq of an events key; 0 if key[0..len) is not one. */
uint64_t record_event_key_seq(const uint8_t *key, size_t len);

/* The prefix of the index keys of `owner` ('o') or of token id `id`
 * ('t'); returns its length, 0 for a NULL, empty or too long name. */
size_t record_event_index_prefix(char kind, const char *name,
                                 uint8_t key[RECORD_EVENT_INDEX_MAX]);
/* That prefix followed by be64(seq); returns the key's length or 0. */
size_t record_event_index_key(char kind, const char *name, uint64_t seq,
                              uint8_t key[RECORD_EVENT_INDEX_MAX]);

/* The hash an events value carries: protobuf-c packs fields in number
 * order and `hash` (field 11, 32 bytes) is the last, so a stored event
 * ends with its tag 0x5a, length 0x20 and the 32 bytes. False if the
 * value does not end so. */
bool record_event_hash(const uint8_t *value, size_t len,
                       uint8_t hash[RECORD_EVENT_HASH_LEN]);
/* ---------- usage series (series.h) ----------
 *
 * A series bucket: Verify calls in one minute or hour of one token, one
 * owner or the deployment, by outcome (the verdict's status number), by
 * route and by client address. Routes and addresses are kept as
 * (text, count) pairs; "other" and "-" are ordinary entries. */
#define RECORD_SERIES_OUTCOMES 5       /* OK .. INSUFFICIENT_ABILITY */
#define RECORD_SERIES_TEXT_MAX 160     /* a route (route.h's ROUTE_MAX) or an address */
#define RECORD_SERIES_ENTRIES_MAX 1024 /* routes or addresses of one bucket, decoded */

typedef struct series_count {
    char *text; /* malloc'd */
    uint64_t n;
} series_count;

typedef struct series_bucket {
    uint64_t outcomes[RECORD_SERIES_OUTCOMES];
    series_count *routes;
    size_t n_routes;
    series_count *ips;
    size_t n_ips;
} series_bucket;

/* Frees the bucket's entries and zeroes it. */
void series_bucket_free(series_bucket *b);

/* What a series key names: a token's series, an owner's sum, or the
 * deployment's; by the minute or by the hour. */
typedef enum series_scope {
    SERIES_TOKEN = 't',
    SERIES_OWNER = 'o',
    SERIES_ALL = 'd'
} series_scope;
typedef enum series_step { SERIES_MINUTE = 'm', SERIES_HOUR = 'h' } series_step;

/* Key of the series family: scope byte, step byte, the token id or owner
 * ("" for the deployment), NUL, be64(bucket start ms). One series' keys
 * are contiguous and sorted by time. */
#define RECORD_SERIES_KEY_MAX (2 + TOKEN_OWNER_MAX + 1 + 8)

/* Writes the key into `key`; returns its length, or 0 if `name` is NULL,
 * longer than TOKEN_OWNER_MAX or holds a NUL (it cannot: a C string). */
size_t record_series_key(series_scope scope, series_step step, const char *name,
                         int64_t start_ms, uint8_t key[RECORD_SERIES_KEY_MAX]);

/* The bucket start of a key of the series family (its last 8 bytes), and
 * its step byte; false if `key` is too short to be one. */
bool record_series_key_parse(const uint8_t *key, size_t len, int64_t *start_ms,
                             series_step *step);

/* Encodes a bucket into a malloc'd buffer (*out, *len bytes): version 1,
 * then the nonzero outcomes as (status byte, varint count), then routes
 * and addresses each as varint n, then n times (length byte, text,
 * varint count). TOKEND_INTERNAL without memory, TOKEND_INVALID_ARGUMENT
 * for a text over RECORD_SERIES_TEXT_MAX. */
int record_series_encode(const series_bucket *b, uint8_t **out, size_t *len,
                         tokend_error *err);

/* Decodes what record_series_encode wrote into *b (overwritten; free it
 * with series_bucket_free). Anything else — a bad version, a length past
 * the end, more than RECORD_SERIES_ENTRIES_MAX entries, trailing bytes —
 * is TOKEND_INTERNAL with *b empty. */
int record_series_decode(const uint8_t *buf, size_t len, series_bucket *b,
                         tokend_error *err);

#endif /* TOKEND_RECORD_H */
