/*
 * token.h — what a tokend token is: its format, checksum, public id,
 * abilities and expiry rules, and the record kept for it.
 *
 * Pure logic: no I/O, no randomness of its own (callers pass random bytes
 * from crypto.h), no clock (callers pass "now"). So every rule here is
 * unit-tested directly.
 *
 * Format: <prefix><secret><checksum>
 *   prefix    1..32 chars of [A-Za-z0-9_], e.g. "tkd_" or "acme_live_"
 *   secret    32 base62 chars drawn uniformly (190.5 bits)
 *   checksum  6 base62 chars: CRC32 (IEEE) of prefix+secret, big-endian
 *             base62, zero-padded
 *
 * Abilities: one grammar, checked wherever an ability comes in (CreateToken,
 * Verify, the gateway's query and body):
 *   ability  = "*" | segment *(":" segment) [":*"]
 *   segment  = 1*( A-Z / a-z / 0-9 / "_" / "." / "-" )
 * 1..128 bytes, e.g. "orders:read", "orders:*", "a.b-c_d:e", "*". So an
 * ability never holds a comma, a space or anything a header or a list
 * separator could be confused by, and abilities joined with commas split
 * back into exactly those abilities.
 */
#ifndef TOKEND_TOKEN_H
#define TOKEND_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOKEN_PREFIX_MAX 32
#define TOKEN_SECRET_LEN 32
#define TOKEN_CHECKSUM_LEN 6
#define TOKEN_MAX_LEN (TOKEN_PREFIX_MAX + TOKEN_SECRET_LEN + TOKEN_CHECKSUM_LEN)
#define TOKEN_DEFAULT_PREFIX "tkd_"
#define TOKEN_ID_LEN 16
#define TOKEN_DIGEST_LEN 32

/* Bounds on a token's fields, enforced at the RPC boundary and by the store
 * codec alike (the contract documents the same numbers). */
#define TOKEN_OWNER_MAX 128
#define TOKEN_NAME_MAX 256
#define TOKEN_ABILITIES_MAX 64
#define TOKEN_ABILITY_MAX 128
#define TOKEN_METADATA_MAX 16
#define TOKEN_META_KEY_MAX 64
#define TOKEN_META_VALUE_MAX 1024

/* The abilities of one token joined with commas (the gateway's
 * X-Token-Abilities header) are at most this many bytes: CreateToken
 * refuses more. 64 abilities of 128 bytes would be 8255. */
#define TOKEN_ABILITIES_JOINED_MAX 4095
/* A token's owner, name, abilities and metadata keys and values together
 * are at most this many bytes: CreateToken refuses more. It bounds one
 * token's record, and its TokenInfo, to under 17 KiB, so that a ListTokens
 * page of 1 MiB holds at least 60 tokens; the bounds of the fields alone
 * would allow about 21.8 KB. */
#define TOKEN_TEXT_MAX 16384
/* Room for the message of token_abilities_check, NUL included. */
#define TOKEN_ABILITY_MESSAGE_MAX 256

/* Abilities with this prefix are tokend's own rights and are granted only
 * by exact match, never by "*" or "tokend:*". */
#define TOKEN_RESERVED_PREFIX "tokend:"

/* Random bytes token_generate() and token_new_id() consume at most; the
 * rejection sampling that keeps base62 uniform needs some spare. */
#define TOKEN_RANDOM_BYTES 128

typedef struct token_kv {
    char *key;
    char *value;
} token_kv;

/* Everything stored about a token except its digest and its usage. All
 * strings are NUL-terminated heap strings owned by the record. */
typedef struct token_record {
    char id[TOKEN_ID_LEN + 1];
    char *owner;
    char *name;
    char **abilities;
    size_t n_abilities;
    int64_t created_ms;   /* Unix ms */
    uint32_t created_seq; /* orders tokens created in the same millisecond */
    int64_t expires_ms;   /* Unix ms; 0 = never */
    token_kv *metadata;
    size_t n_metadata;
} token_record;

/* Frees the strings and arrays of *rec (not rec itself) and zeroes it. */
void token_record_free(token_record *rec);

/* True if `prefix` is a valid token prefix (1..32 of [A-Za-z0-9_]). */
bool token_prefix_ok(const char *prefix);

/* Writes `prefix` + secret + checksum into out (room for TOKEN_MAX_LEN+1),
 * drawing the secret from `random`/`n_random` (n_random must be
 * TOKEN_RANDOM_BYTES; see crypto_random). Returns the token's length, or 0
 * if the prefix is invalid or the random bytes ran out (vanishingly rare;
 * call again with fresh bytes). */
size_t token_generate(const char *prefix, const uint8_t *random, size_t n_random,
                      char out[TOKEN_MAX_LEN + 1]);

/* Writes a public id (TOKEN_ID_LEN base62 chars + NUL) drawn from random
 * bytes, like token_generate. Returns false if the bytes ran out. */
bool token_new_id(const uint8_t *random, size_t n_random, char out[TOKEN_ID_LEN + 1]);

/* True if s[0..len) has a token's shape: a valid prefix, a base62 secret
 * and a checksum that matches. Cheap: answers MALFORMED before any lookup. */
bool token_well_formed(const char *s, size_t len);

/* True if s[0..len) is a valid public id (TOKEN_ID_LEN base62 chars). */
bool token_id_ok(const char *s, size_t len);

/* CRC32 (IEEE 802.3, as zlib's crc32) of data[0..len). */
uint32_t token_crc32(const void *data, size_t len);

/* True if `s` is an ability by the grammar above (NULL is not). */
bool token_ability_ok(const char *s);

/* True if `s` is an ability. Otherwise false, with msg (`size` bytes;
 * TOKEN_ABILITY_MESSAGE_MAX holds any) set to
 *   <field>[<index>]: "<s>" is not an ability: <why> (<the grammar>)
 * `s` is shown cut to a few dozen characters, bytes other than printable
 * ASCII (and '"', '\\') as \xHH, and any run of token characters long
 * enough to be a token as {redacted}: the message is ASCII and never holds
 * a token, whatever the input. */
bool token_ability_check(const char *s, const char *field, size_t index, char *msg,
                         size_t size);

/* Bytes of abilities[0..n) joined with commas (0 for none). */
size_t token_abilities_joined_len(char *const *abilities, size_t n);

/* Writes into out those of abilities[0..n) that are abilities, joined with
 * commas, whole ones only and at most TOKEN_ABILITIES_JOINED_MAX bytes in
 * all: an ability that is not well-formed (a record stored before the
 * grammar), or that would not fit, is left out. Returns how many were
 * left out. */
size_t token_abilities_join(char *const *abilities, size_t n,
                            char out[TOKEN_ABILITIES_JOINED_MAX + 1]);

/* True if `granted` (a token's abilities) covers the single ability `want`:
 * an exact match, "*", or "x:*" for any ability starting with "x:".
 * Reserved abilities (TOKEN_RESERVED_PREFIX) need an exact match. */
bool token_ability_granted(char *const *granted, size_t n_granted, const char *want);

/* True if `granted` covers every (all == true) or at least one (all ==
 * false) of `wanted`. An empty `wanted` is always covered. */
bool token_abilities_cover(char *const *granted, size_t n_granted, char *const *wanted,
                           size_t n_wanted, bool all);

/* True if the ability pattern `want` (which may itself be "*" or "x:*") is
 * no wider than what `granted` allows: used so that a token cannot mint a
 * token with more power than its own. */
bool token_pattern_within(char *const *granted, size_t n_granted, const char *want);

/* The expiry to give a new token, or -1 if the request is not allowed.
 *   now_ms            the current time
 *   expires_in_s      the request's lifetime (0: none of its own; < 0 invalid)
 *   max_lifetime_s    the deployment maximum (0: none)
 *   cap_ms            a ceiling from the caller's own expiry (0: none)
 * Returns 0 for "never expires" when nothing bounds it; otherwise the
 * earliest of the bounds. A request for a lifetime beyond cap_ms is -1
 * (refused, not silently shortened), since the caller asked for more than
 * it may give; the deployment maximum instead shortens silently, as
 * Sanctum's `expiration` does. */
int64_t token_expiry(int64_t now_ms, int64_t expires_in_s, int64_t max_lifetime_s,
                     int64_t cap_ms);

/* True if a token with expiry `expires_ms` (0: never) is expired at now_ms. */
bool token_expired(int64_t expires_ms, int64_t now_ms);

#endif /* TOKEND_TOKEN_H */
