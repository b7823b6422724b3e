/*
 * record.c — the bytes of what tokend stores, behind record.h: the token
 * record codec, the owners index key, list cursors and the usage value.
 *
 * Everything here is a pure function of its arguments: no I/O, no RocksDB,
 * no clock, no state. Multi-byte integers are big-endian, so that keys
 * sort by their numbers; decoders read only after checking what is left.
 */
#include "record.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

/* The first byte of every encoded record. */
#define RECORD_FORMAT_VERSION 1

/* ---------- byte helpers ---------- */

static void put_be64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
           (uint32_t)p[3];
}

/* ---------- the token record ----------
 *
 * Version 1 layout, all lengths and counts as LEB128 varints:
 *   u8 version (1)
 *   id        len (== TOKEN_ID_LEN) + bytes
 *   owner     len (<= TOKEN_OWNER_MAX) + bytes
 *   name      len (<= TOKEN_NAME_MAX) + bytes
 *   abilities count (<= TOKEN_ABILITIES_MAX), each len (<= TOKEN_ABILITY_MAX)
 *             + bytes
 *   created_ms, expires_ms   be64 each (two's complement)
 *   created_seq               be32
 *   metadata  count (<= TOKEN_METADATA_MAX), each key len (<= TOKEN_META_KEY_MAX)
 *             + bytes, value len (<= TOKEN_META_VALUE_MAX) + bytes
 * and nothing after. Strings hold no NUL byte. Every bound is below 2^14,
 * so a valid varint here is one or two bytes; decode accepts at most three.
 */

static size_t varint_len(size_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, size_t v) {
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static uint8_t *put_string(uint8_t *p, const char *s, size_t len) {
    p = put_varint(p, len);
    memcpy(p, s, len);
    return p + len;
}

/* Adds the encoded size of string `s` (NULL is refused, or taken as ""
 * where null_ok) to *size, if it is within `max` bytes. */
static bool size_string(const char *s, size_t max, bool null_ok, size_t *size,
                        const char *field, tokend_error *err) {
    if (s == NULL) {
        if (!null_ok) {
            error_set(err, TOKEND_INVALID_ARGUMENT, "record %s is missing", field);
            return false;
        }
        s = "";
    }
    size_t len = strnlen(s, max + 1);
    if (len > max) {
        error_set(err, TOKEND_INVALID_ARGUMENT, "record %s longer than %zu bytes", field,
                  max);
        return false;
    }
    *size += varint_len(len) + len;
    return true;
}

/* Checks `rec` against the bounds of token.h and computes its encoded
 * size. Returns false (TOKEND_INVALID_ARGUMENT in *err, saying which
 * field) if it is out of bounds. */
static bool record_size(const token_record *rec, size_t *size, tokend_error *err) {
    size_t total = 1;
    if (!token_id_ok(rec->id, strnlen(rec->id, sizeof(rec->id)))) {
        error_set(err, TOKEND_INVALID_ARGUMENT, "record id is not a valid public id");
        return false;
    }
    total += varint_len(TOKEN_ID_LEN) + TOKEN_ID_LEN;
    if (!size_string(rec->owner, TOKEN_OWNER_MAX, false, &total, "owner", err) ||
        !size_string(rec->name, TOKEN_NAME_MAX, true, &total, "name", err)) {
        return false;
    }
    if (rec->n_abilities > TOKEN_ABILITIES_MAX ||
        (rec->n_abilities > 0 && rec->abilities == NULL)) {
        error_set(err, TOKEND_INVALID_ARGUMENT, "record has %zu abilities (at most %d)",
                  rec->n_abilities, TOKEN_ABILITIES_MAX);
        return false;
    }
    total += varint_len(rec->n_abilities);
    for (size_t i = 0; i < rec->n_abilities; i++) {
        if (!size_string(rec->abilities[i], TOKEN_ABILITY_MAX, false, &total, "ability",
                         err)) {
            return false;
        }
    }
    total += 20;
    if (rec->n_metadata > TOKEN_METADATA_MAX ||
        (rec->n_metadata > 0 && rec->metadata == NULL)) {
        error_set(err, TOKEND_INVALID_ARGUMENT,
                  "record has %zu metadata entries (at most %d)", rec->n_metadata,
                  TOKEN_METADATA_MAX);
        return false;
    }
    total += varint_len(rec->n_metadata);
    for (size_t i = 0; i < rec->n_metadata; i++) {
        if (!size_string(rec->metadata[i].key, TOKEN_META_KEY_MAX, false, &total,
                         "metadata key", err) ||
            !size_string(rec->metadata[i].value, TOKEN_META_VALUE_MAX, true, &total,
                         "metadata value", err)) {
            return false;
        }
    }
    *size = total;
    return true;
}

/* Encodes after record_size() has checked every bound, so it cannot fail
 * and writes exactly the size that function computed. A NULL name or
 * metadata value is written as "". */
int record_encode(const token_record *rec, uint8_t **out, size_t *len,
                  tokend_error *err) {
    if (out != NULL) {
        *out = NULL;
    }
    if (len != NULL) {
        *len = 0;
    }
    if (rec == NULL || out == NULL || len == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "record_encode: NULL argument");
    }
    size_t size = 0;
    if (!record_size(rec, &size, err)) {
        return TOKEND_INVALID_ARGUMENT;
    }
    uint8_t *buf = malloc(size);
    if (buf == NULL) {
        return error_set(err, TOKEND_INTERNAL, "out of memory encoding a record");
    }
    uint8_t *p = buf;
    *p++ = RECORD_FORMAT_VERSION;
    p = put_string(p, rec->id, TOKEN_ID_LEN);
    p = put_string(p, rec->owner, strlen(rec->owner));
    const char *name = rec->name != NULL ? rec->name : "";
    p = put_string(p, name, strlen(name));
    p = put_varint(p, rec->n_abilities);
    for (size_t i = 0; i < rec->n_abilities; i++) {
        p = put_string(p, rec->abilities[i], strlen(rec->abilities[i]));
    }
    put_be64(p, (uint64_t)rec->created_ms);
    put_be64(p + 8, (uint64_t)rec->expires_ms);
    put_be32(p + 16, rec->created_seq);
    p += 20;
    p = put_varint(p, rec->n_metadata);
    for (size_t i = 0; i < rec->n_metadata; i++) {
        const token_kv *kv = &rec->metadata[i];
        const char *value = kv->value != NULL ? kv->value : "";
        p = put_string(p, kv->key, strlen(kv->key));
        p = put_string(p, value, strlen(value));
    }
    *out = buf;
    *len = (size_t)(p - buf);
    return TOKEND_OK;
}

/* A cursor over untrusted bytes: every read checks what is left first. */
typedef struct reader {
    const uint8_t *p;
    size_t left;
} reader;

/* Consumes the next n bytes and returns them, or NULL if fewer are left. */
static const uint8_t *take(reader *r, size_t n) {
    if (r->left < n) {
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

static bool read_u8(reader *r, uint8_t *v) {
    const uint8_t *p = take(r, 1);
    if (p != NULL) {
        *v = *p;
    }
    return p != NULL;
}

static bool read_be32(reader *r, uint32_t *v) {
    const uint8_t *p = take(r, 4);
    if (p != NULL) {
        *v = get_be32(p);
    }
    return p != NULL;
}

static bool read_be64(reader *r, int64_t *v) {
    const uint8_t *p = take(r, 8);
    if (p != NULL) {
        *v = (int64_t)get_be64(p);
    }
    return p != NULL;
}

/* Reads a varint of at most three bytes whose value is at most `max`. */
static bool read_varint(reader *r, size_t max, size_t *v) {
    size_t value = 0;
    for (int shift = 0; shift < 21; shift += 7) {
        uint8_t b;
        if (!read_u8(r, &b)) {
            return false;
        }
        value |= (size_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            if (value > max) {
                return false;
            }
            *v = value;
            return true;
        }
    }
    return false;
}

/* Reads a length-prefixed string of at most `max` bytes with no NUL into
 * a malloc'd, NUL-terminated copy. */
static bool read_string(reader *r, size_t max, char **out) {
    size_t len;
    if (!read_varint(r, max, &len) || len > r->left || memchr(r->p, 0, len) != NULL) {
        return false;
    }
    char *s = malloc(len + 1);
    if (s == NULL) {
        return false;
    }
    memcpy(s, r->p, len);
    s[len] = '\0';
    r->p += len;
    r->left -= len;
    *out = s;
    return true;
}

/* Reads a count of at most `max` and allocates that many zeroed elements
 * of `size` bytes: *array (NULL for none) and *n are set together, so
 * that token_record_free frees an array whose elements were only partly
 * read. */
static bool read_array(reader *r, size_t max, size_t size, void **array, size_t *n) {
    size_t count;
    if (!read_varint(r, max, &count)) {
        return false;
    }
    if (count > 0) {
        *array = calloc(count, size);
        if (*array == NULL) {
            return false;
        }
        *n = count;
    }
    return true;
}

/* Decodes into a local record and hands it over only when all of it
 * decoded, so a failure leaves *out zeroed and frees every partial
 * allocation (token_record_free copes with a half-filled record because
 * the arrays are calloc'd and their counts set before they are filled). */
int record_decode(const uint8_t *buf, size_t len, token_record *out, tokend_error *err) {
    if (out == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "record_decode: NULL argument");
    }
    memset(out, 0, sizeof(*out));
    if (buf == NULL) {
        return error_set(err, TOKEND_INTERNAL, "record is empty");
    }
    token_record rec;
    memset(&rec, 0, sizeof(rec));
    reader r = {buf, len};
    uint8_t version = 0;
    char *id = NULL;
    void *array = NULL;

    if (!read_u8(&r, &version) || version != RECORD_FORMAT_VERSION) {
        goto fail;
    }
    if (!read_string(&r, TOKEN_ID_LEN, &id)) {
        goto fail;
    }
    if (!token_id_ok(id, strlen(id))) {
        free(id);
        goto fail;
    }
    memcpy(rec.id, id, TOKEN_ID_LEN + 1);
    free(id);
    if (!read_string(&r, TOKEN_OWNER_MAX, &rec.owner) ||
        !read_string(&r, TOKEN_NAME_MAX, &rec.name)) {
        goto fail;
    }
    if (!read_array(&r, TOKEN_ABILITIES_MAX, sizeof(*rec.abilities), &array,
                    &rec.n_abilities)) {
        goto fail;
    }
    rec.abilities = array;
    for (size_t i = 0; i < rec.n_abilities; i++) {
        if (!read_string(&r, TOKEN_ABILITY_MAX, &rec.abilities[i])) {
            goto fail;
        }
    }
    if (!read_be64(&r, &rec.created_ms) || !read_be64(&r, &rec.expires_ms) ||
        !read_be32(&r, &rec.created_seq)) {
        goto fail;
    }
    array = NULL;
    if (!read_array(&r, TOKEN_METADATA_MAX, sizeof(*rec.metadata), &array,
                    &rec.n_metadata)) {
        goto fail;
    }
    rec.metadata = array;
    for (size_t i = 0; i < rec.n_metadata; i++) {
        if (!read_string(&r, TOKEN_META_KEY_MAX, &rec.metadata[i].key) ||
            !read_string(&r, TOKEN_META_VALUE_MAX, &rec.metadata[i].value)) {
            goto fail;
        }
    }
    if (r.left != 0) {
        goto fail;
    }
    *out = rec;
    return TOKEND_OK;

fail:
    token_record_free(&rec);
    return error_set(err, TOKEND_INTERNAL,
                     "stored record does not decode (byte %zu of %zu)", len - r.left,
                     len);
}

/* ---------- the owners index ---------- */

size_t record_owner_prefix(const char *owner, uint8_t key[RECORD_OWNER_KEY_MAX]) {
    if (owner == NULL) {
        return 0;
    }
    size_t len = strnlen(owner, TOKEN_OWNER_MAX + 1);
    if (len > TOKEN_OWNER_MAX) {
        return 0;
    }
    memcpy(key, owner, len);
    key[len] = 0;
    return len + 1;
}

size_t record_owner_key(const token_record *rec, uint8_t key[RECORD_OWNER_KEY_MAX]) {
    size_t len = record_owner_prefix(rec->owner, key);
    if (len == 0 || !token_id_ok(rec->id, strnlen(rec->id, sizeof(rec->id)))) {
        return 0;
    }
    put_be64(key + len, (uint64_t)rec->created_ms);
    put_be32(key + len + 8, rec->created_seq);
    memcpy(key + len + RECORD_OWNER_ORDER_LEN, rec->id, TOKEN_ID_LEN);
    return len + RECORD_OWNER_SUFFIX_LEN;
}

const char *record_owner_suffix_id(const uint8_t *suffix, size_t len) {
    if (len != RECORD_OWNER_SUFFIX_LEN) {
        return NULL;
    }
    const char *id = (const char *)suffix + RECORD_OWNER_ORDER_LEN;
    return token_id_ok(id, TOKEN_ID_LEN) ? id : NULL;
}

/* ---------- list cursors ---------- */

static const char hex_digits[] = "0123456789abcdef";

/* The value of hex digit `c` in either case, or -1. */
static int hex_digit(char c) {
    static const char both_cases[] = "0123456789abcdefABCDEF";
    const char *at = c != '\0' ? strchr(both_cases, c) : NULL;
    if (at == NULL) {
        return -1;
    }
    int v = (int)(at - both_cases);
    return v < 16 ? v : v - 6;
}

void record_cursor_encode(const uint8_t suffix[RECORD_OWNER_SUFFIX_LEN],
                          char cursor[RECORD_CURSOR_LEN + 1]) {
    for (size_t i = 0; i < RECORD_OWNER_SUFFIX_LEN; i++) {
        cursor[2 * i] = hex_digits[suffix[i] >> 4];
        cursor[2 * i + 1] = hex_digits[suffix[i] & 0xf];
    }
    cursor[RECORD_CURSOR_LEN] = '\0';
}

bool record_cursor_of(const token_record *rec, char cursor[RECORD_CURSOR_LEN + 1]) {
    uint8_t key[RECORD_OWNER_KEY_MAX];
    size_t len = record_owner_key(rec, key);
    if (len == 0) {
        return false;
    }
    record_cursor_encode(key + len - RECORD_OWNER_SUFFIX_LEN, cursor);
    return true;
}

bool record_cursor_decode(const char *cursor, uint8_t suffix[RECORD_OWNER_SUFFIX_LEN]) {
    if (strnlen(cursor, RECORD_CURSOR_LEN + 1) != RECORD_CURSOR_LEN) {
        return false;
    }
    for (size_t i = 0; i < RECORD_OWNER_SUFFIX_LEN; i++) {
        int hi = hex_digit(cursor[2 * i]);
        int lo = hex_digit(cursor[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        suffix[i] = (uint8_t)(hi << 4 | lo);
    }
    return record_owner_suffix_id(suffix, RECORD_OWNER_SUFFIX_LEN) != NULL;
}

/* ---------- usage ---------- */

void record_usage_encode(int64_t last_used_ms, uint64_t use_count,
                         uint8_t value[RECORD_USAGE_LEN]) {
    put_be64(value, (uint64_t)last_used_ms);
    put_be64(value + 8, use_count);
}

bool record_usage_decode(const uint8_t *value, size_t len, int64_t *last_used_ms,
                         uint64_t *use_count) {
    if (len != RECORD_USAGE_LEN) {
        return false;
    }
    *last_used_ms = (int64_t)get_be64(value);
    *use_count = get_be64(value + 8);
    return true;
}

/* ---------- the audit log's keys ---------- */

void record_event_key(uint64_t seq, uint8_t key[RECORD_EVENT_KEY_LEN]) {
    put_be64(key, seq);
}

uint64_t record_event_key_seq(const uint8_t *key, size_t len) {
    return len == RECORD_EVENT_KEY_LEN ? get_be64(key) : 0;
}

size_t record_event_index_prefix(char kind, const char *name,
                                 uint8_t key[RECORD_EVENT_INDEX_MAX]) {
    size_t len = name != NULL ? strlen(name) : 0;
    if (len == 0 || len > TOKEN_OWNER_MAX) {
        return 0;
    }
    key[0] = (uint8_t)kind;
    memcpy(key + 1, name, len);
    key[1 + len] = 0;
    return len + 2;
}

size_t record_event_index_key(char kind, const char *name, uint64_t seq,
                              uint8_t key[RECORD_EVENT_INDEX_MAX]) {
    size_t len = record_event_index_prefix(kind, name, key);
    if (len == 0) {
        return 0;
    }
    put_be64(key + len, seq);
    return len + RECORD_EVENT_KEY_LEN;
}

bool record_event_hash(const uint8_t *value, size_t len,
                       uint8_t hash[RECORD_EVENT_HASH_LEN]) {
    if (value == NULL || len < RECORD_EVENT_HASH_LEN + 2 ||
        value[len - RECORD_EVENT_HASH_LEN - 2] != 0x5a ||
        value[len - RECORD_EVENT_HASH_LEN - 1] != RECORD_EVENT_HASH_LEN) {
        return false;
    }
    memcpy(hash, value + len - RECORD_EVENT_HASH_LEN, RECORD_EVENT_HASH_LEN);
    return true;
}

/* ---------- usage series ---------- */

void series_bucket_free(series_bucket *b) {
    for (size_t i = 0; i < b->n_routes; i++) {
        free(b->routes[i].text);
    }
    for (size_t i = 0; i < b->n_ips; i++) {
        free(b->ips[i].text);
    }
    free(b->routes);
    free(b->ips);
    memset(b, 0, sizeof(*b));
}

size_t record_series_key(series_scope scope, series_step step, const char *name,
                         int64_t start_ms, uint8_t key[RECORD_SERIES_KEY_MAX]) {
    size_t len = name != NULL ? strnlen(name, TOKEN_OWNER_MAX + 1) : TOKEN_OWNER_MAX + 1;
    if (len > TOKEN_OWNER_MAX) {
        return 0;
    }
    key[0] = (uint8_t)scope;
    key[1] = (uint8_t)step;
    memcpy(key + 2, name, len);
    key[2 + len] = 0;
    put_be64(key + 3 + len, (uint64_t)start_ms);
    return 3 + len + 8;
}

bool record_series_key_parse(const uint8_t *key, size_t len, int64_t *start_ms,
                             series_step *step) {
    if (len < 3 + 8) {
        return false;
    }
    *step = (series_step)key[1];
    *start_ms = (int64_t)get_be64(key + len - 8);
    return true;
}

/* A growing output buffer; `failed` once an allocation failed. */
typedef struct out_buf {
    uint8_t *p;
    size_t len, cap;
    bool failed;
} out_buf;

static void out_bytes(out_buf *o, const void *src, size_t n) {
    if (o->failed) {
        return;
    }
    if (o->len + n > o->cap) {
        size_t cap = o->cap == 0 ? 256 : o->cap;
        while (cap < o->len + n) {
            cap *= 2;
        }
        uint8_t *grown = realloc(o->p, cap);
        if (grown == NULL) {
            o->failed = true;
            return;
        }
        o->p = grown;
        o->cap = cap;
    }
    memcpy(o->p + o->len, src, n);
    o->len += n;
}

static void out_varint(out_buf *o, uint64_t v) {
    uint8_t b[10];
    size_t n = 0;
    do {
        b[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v != 0) {
            b[n] |= 0x80;
        }
        n++;
    } while (v != 0);
    out_bytes(o, b, n);
}

static bool out_counts(out_buf *o, const series_count *c, size_t n) {
    out_varint(o, n);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(c[i].text);
        if (len > RECORD_SERIES_TEXT_MAX) {
            return false;
        }
        uint8_t l = (uint8_t)len;
        out_bytes(o, &l, 1);
        out_bytes(o, c[i].text, len);
        out_varint(o, c[i].n);
    }
    return true;
}

int record_series_encode(const series_bucket *b, uint8_t **out, size_t *len,
                         tokend_error *err) {
    *out = NULL;
    *len = 0;
    out_buf o = {0};
    uint8_t version = 1, n_out = 0;
    for (int s = 0; s < RECORD_SERIES_OUTCOMES; s++) {
        n_out += b->outcomes[s] != 0;
    }
    out_bytes(&o, &version, 1);
    out_bytes(&o, &n_out, 1);
    for (int s = 0; s < RECORD_SERIES_OUTCOMES; s++) {
        if (b->outcomes[s] != 0) {
            uint8_t code = (uint8_t)s;
            out_bytes(&o, &code, 1);
            out_varint(&o, b->outcomes[s]);
        }
    }
    bool fits =
        out_counts(&o, b->routes, b->n_routes) && out_counts(&o, b->ips, b->n_ips);
    if (!fits || o.failed) {
        free(o.p);
        return !fits ? error_set(err, TOKEND_INVALID_ARGUMENT,
                                 "a series text is longer than %d bytes",
                                 RECORD_SERIES_TEXT_MAX)
                     : error_set(err, TOKEND_INTERNAL, "out of memory encoding a bucket");
    }
    *out = o.p;
    *len = o.len;
    return TOKEND_OK;
}

/* A bounded reader over stored bytes; `bad` once it ran past the end. */
typedef struct in_buf {
    const uint8_t *p;
    size_t left;
    bool bad;
} in_buf;

static uint8_t in_byte(in_buf *in) {
    if (in->left == 0) {
        in->bad = true;
        return 0;
    }
    in->left--;
    return *in->p++;
}

static uint64_t in_varint(in_buf *in) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64 && !in->bad; shift += 7) {
        uint8_t b = in_byte(in);
        v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            return v;
        }
    }
    in->bad = true;
    return 0;
}

static bool in_counts(in_buf *in, series_count **out, size_t *n_out) {
    uint64_t n = in_varint(in);
    if (in->bad || n > RECORD_SERIES_ENTRIES_MAX) {
        return false;
    }
    series_count *c = calloc(n + 1, sizeof(*c));
    if (c == NULL) {
        return false;
    }
    *out = c;
    for (size_t i = 0; i < n; i++) {
        size_t len = in_byte(in);
        if (in->bad || len > RECORD_SERIES_TEXT_MAX || len > in->left) {
            return false;
        }
        c[i].text = strndup((const char *)in->p, len);
        if (c[i].text == NULL || strlen(c[i].text) != len) {
            free(c[i].text);
            return false;
        }
        *n_out = i + 1;
        in->p += len;
        in->left -= len;
        c[i].n = in_varint(in);
        if (in->bad) {
            return false;
        }
    }
    return true;
}

int record_series_decode(const uint8_t *buf, size_t len, series_bucket *b,
                         tokend_error *err) {
    memset(b, 0, sizeof(*b));
    in_buf in = {buf, len, false};
    bool ok = in_byte(&in) == 1;
    size_t n_out = in_byte(&in);
    for (size_t i = 0; ok && i < n_out; i++) {
        uint8_t code = in_byte(&in);
        uint64_t n = in_varint(&in);
        ok = !in.bad && code < RECORD_SERIES_OUTCOMES;
        if (ok) {
            b->outcomes[code] += n;
        }
    }
    ok = ok && !in.bad && in_counts(&in, &b->routes, &b->n_routes) &&
         in_counts(&in, &b->ips, &b->n_ips) && in.left == 0;
    if (!ok) {
        series_bucket_free(b);
        return error_set(err, TOKEND_INTERNAL, "a usage series bucket does not decode");
    }
    return TOKEND_OK;
}
