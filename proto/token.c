/*
 * token.c — token format, checksum, ids, abilities and expiry rules.
 * Pure functions over memory; see token.h for the rules themselves.
 */
#include "token.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char base62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

void token_record_free(token_record *rec) {
    if (rec == NULL) {
        return;
    }
    free(rec->owner);
    free(rec->name);
    for (size_t i = 0; i < rec->n_abilities; i++) {
        free(rec->abilities[i]);
    }
    free(rec->abilities);
    for (size_t i = 0; i < rec->n_metadata; i++) {
        free(rec->metadata[i].key);
        free(rec->metadata[i].value);
    }
    free(rec->metadata);
    memset(rec, 0, sizeof(*rec));
}

static bool is_base62(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* The characters of a token: those of a prefix (base62 and '_'). */
static bool token_char(unsigned char c) {
    return is_base62(c) || c == '_';
}

static bool prefix_ok(const char *s, size_t len) {
    if (len == 0 || len > TOKEN_PREFIX_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!token_char((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

bool token_prefix_ok(const char *prefix) {
    return prefix != NULL && prefix_ok(prefix, strnlen(prefix, TOKEN_PREFIX_MAX + 1));
}

/* Fills out[0..n) with base62 characters drawn uniformly from random bytes.
 * A byte is used only if below 248 (4 * 62), so `% 62` has no bias; the
 * rest are skipped. Returns false if the bytes ran out first. */
static bool draw_base62(const uint8_t *random, size_t n_random, char *out, size_t n) {
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        while (used < n_random && random[used] >= 248) {
            used++;
        }
        if (used == n_random) {
            return false;
        }
        out[i] = base62[random[used++] % 62];
    }
    return true;
}

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_table_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        crc_table[i] = c;
    }
}

uint32_t token_crc32(const void *data, size_t len) {
    pthread_once(&crc_once, crc_table_init);
    const uint32_t *table = crc_table;
    const uint8_t *p = data;
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    }
    return crc ^ 0xFFFFFFFFu;
}

/* The 6-character base62 form of `crc` (62^6 > 2^32, so it always fits). */
static void checksum_chars(uint32_t crc, char out[TOKEN_CHECKSUM_LEN]) {
    for (int i = TOKEN_CHECKSUM_LEN - 1; i >= 0; i--) {
        out[i] = base62[crc % 62];
        crc /= 62;
    }
}

size_t token_generate(const char *prefix, const uint8_t *random, size_t n_random,
                      char out[TOKEN_MAX_LEN + 1]) {
    if (!token_prefix_ok(prefix)) {
        return 0;
    }
    size_t plen = strlen(prefix);
    memcpy(out, prefix, plen);
    if (!draw_base62(random, n_random, out + plen, TOKEN_SECRET_LEN)) {
        return 0;
    }
    size_t body = plen + TOKEN_SECRET_LEN;
    checksum_chars(token_crc32(out, body), out + body);
    out[body + TOKEN_CHECKSUM_LEN] = '\0';
    return body + TOKEN_CHECKSUM_LEN;
}

bool token_new_id(const uint8_t *random, size_t n_random, char out[TOKEN_ID_LEN + 1]) {
    if (!draw_base62(random, n_random, out, TOKEN_ID_LEN)) {
        return false;
    }
    out[TOKEN_ID_LEN] = '\0';
    return true;
}

bool token_well_formed(const char *s, size_t len) {
    const size_t tail = TOKEN_SECRET_LEN + TOKEN_CHECKSUM_LEN;
    if (s == NULL || len <= tail || len > TOKEN_MAX_LEN) {
        return false;
    }
    size_t plen = len - tail;
    if (!prefix_ok(s, plen)) {
        return false;
    }
    for (size_t i = plen; i < len; i++) {
        if (!is_base62((unsigned char)s[i])) {
            return false;
        }
    }
    char want[TOKEN_CHECKSUM_LEN];
    checksum_chars(token_crc32(s, plen + TOKEN_SECRET_LEN), want);
    return memcmp(want, s + plen + TOKEN_SECRET_LEN, TOKEN_CHECKSUM_LEN) == 0;
}

bool token_id_ok(const char *s, size_t len) {
    if (s == NULL || len != TOKEN_ID_LEN) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!is_base62((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------------
 * The ability grammar (token.h). */

/* What is wrong with an ability, and where. */
typedef enum ability_fault {
    ABILITY_OK,
    ABILITY_EMPTY,
    ABILITY_LONG,
    ABILITY_CHAR,    /* a byte no segment may hold */
    ABILITY_SEGMENT, /* an empty segment */
    ABILITY_STAR,    /* '*' other than a whole last segment */
} ability_fault;

static bool segment_char(unsigned char c) {
    return token_char(c) || c == '.' || c == '-';
}

/* The first fault of `s`, with *at its byte offset. */
static ability_fault ability_fault_of(const char *s, size_t *at) {
    *at = 0;
    size_t len = strnlen(s, TOKEN_ABILITY_MAX + 1);
    if (len == 0) {
        return ABILITY_EMPTY;
    }
    if (len > TOKEN_ABILITY_MAX) {
        return ABILITY_LONG;
    }
    size_t i = 0;
    for (;;) {
        size_t start = i;
        while (i < len && segment_char((unsigned char)s[i])) {
            i++;
        }
        *at = i;
        if (i == start) {
            /* No segment here: "*" as the whole ability or after the last
             * ':' is the wildcard; anything else is a fault. */
            if (s[i] == '*') {
                return i + 1 == len ? ABILITY_OK : ABILITY_STAR;
            }
            return i == len || s[i] == ':' ? ABILITY_SEGMENT : ABILITY_CHAR;
        }
        if (i == len) {
            return ABILITY_OK;
        }
        if (s[i] != ':') {
            return s[i] == '*' ? ABILITY_STAR : ABILITY_CHAR;
        }
        i++;
    }
}

bool token_ability_ok(const char *s) {
    size_t at;
    return s != NULL && ability_fault_of(s, &at) == ABILITY_OK;
}

/* Appends printf output to out[*k..size), never past the end. */
static void append(char *out, size_t size, size_t *k, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void append(char *out, size_t size, size_t *k, const char *fmt, ...) {
    if (*k + 1 >= size) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + *k, size - *k, fmt, ap);
    va_end(ap);
    if (n > 0) {
        *k = *k + (size_t)n < size ? *k + (size_t)n : size - 1;
    }
}

/* Characters of `s` shown in a message at most (then "..."). */
#define ABILITY_SHOWN_MAX 48

/* Appends `s` as token_ability_check shows it: printable ASCII as is,
 * other bytes and '"', '\\' as \xHH, cut after ABILITY_SHOWN_MAX
 * characters, and a run of [A-Za-z0-9_] that could hold a token shown as
 * {redacted}. A token is such a run of at least 39 characters; the
 * threshold is three fewer, so that the "xHH" of an escape just before a
 * shorter run cannot make a run of 39 in the message either. */
static void append_shown(char *out, size_t size, size_t *k, const char *s) {
    const size_t redact_at = 1 + TOKEN_SECRET_LEN + TOKEN_CHECKSUM_LEN - 3;
    size_t shown = 0;
    for (size_t i = 0; s[i] != '\0';) {
        unsigned char c = (unsigned char)s[i];
        char piece[16];
        size_t run = 0;
        if (i == 0 || !token_char((unsigned char)s[i - 1])) {
            while (token_char((unsigned char)s[i + run])) {
                run++;
            }
        }
        if (run >= redact_at) {
            snprintf(piece, sizeof(piece), "{redacted}");
            i += run;
        } else {
            if (c >= 0x20 && c <= 0x7E && c != '"' && c != '\\') {
                snprintf(piece, sizeof(piece), "%c", c);
            } else {
                snprintf(piece, sizeof(piece), "\\x%02X", c);
            }
            i++;
        }
        shown += strlen(piece);
        if (shown > ABILITY_SHOWN_MAX) {
            append(out, size, k, "...");
            return;
        }
        append(out, size, k, "%s", piece);
    }
}

bool token_ability_check(const char *s, const char *field, size_t index, char *msg,
                         size_t size) {
    if (s == NULL) {
        s = "";
    }
    size_t at;
    ability_fault fault = ability_fault_of(s, &at);
    if (fault == ABILITY_OK) {
        return true;
    }
    size_t k = 0;
    msg[0] = '\0';
    append(msg, size, &k, "%s[%zu]: \"", field, index);
    append_shown(msg, size, &k, s);
    append(msg, size, &k, "\" is not an ability: ");
    unsigned char c = (unsigned char)s[at];
    switch (fault) {
        case ABILITY_EMPTY:
            append(msg, size, &k, "it is empty");
            break;
        case ABILITY_LONG:
            append(msg, size, &k, "it is longer than %d bytes", TOKEN_ABILITY_MAX);
            break;
        case ABILITY_CHAR:
            if (c >= 0x20 && c <= 0x7E) {
                append(msg, size, &k, "'%c' at offset %zu is not allowed", c, at);
            } else {
                append(msg, size, &k, "byte 0x%02X at offset %zu is not allowed", c, at);
            }
            break;
        case ABILITY_SEGMENT:
            append(msg, size, &k, "empty segment at offset %zu", at);
            break;
        default:
            append(msg, size, &k, "'*' at offset %zu is not a whole last segment", at);
            break;
    }
    append(msg, size, &k,
           " (an ability is segments of A-Z a-z 0-9 _ . - joined by ':', the last may "
           "be '*')");
    return false;
}

size_t token_abilities_joined_len(char *const *abilities, size_t n) {
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        len += strlen(abilities[i]) + (i > 0 ? 1 : 0);
    }
    return len;
}

size_t token_abilities_join(char *const *abilities, size_t n,
                            char out[TOKEN_ABILITIES_JOINED_MAX + 1]) {
    size_t k = 0, left_out = 0;
    for (size_t i = 0; i < n; i++) {
        const char *a = abilities[i];
        size_t len = a != NULL ? strlen(a) : 0;
        size_t sep = k > 0 ? 1 : 0;
        if (!token_ability_ok(a) || k + sep + len > TOKEN_ABILITIES_JOINED_MAX) {
            left_out++;
            continue;
        }
        if (sep) {
            out[k++] = ',';
        }
        memcpy(out + k, a, len);
        k += len;
    }
    out[k] = '\0';
    return left_out;
}

/* Abilities under "tokend:" are the service's own rights (tokend:admin);
 * no wildcard grants them, so a partner token given "*" for "everything in
 * our app" does not become an administrator of tokend. */
static bool reserved(const char *ability) {
    return strncmp(ability, TOKEN_RESERVED_PREFIX, sizeof(TOKEN_RESERVED_PREFIX) - 1) ==
           0;
}

/* True if the single granted pattern `g` allows the concrete ability `want`. */
static bool pattern_allows(const char *g, const char *want) {
    if (strcmp(g, want) == 0) {
        return true;
    }
    if (reserved(want)) {
        return false;
    }
    if (strcmp(g, "*") == 0) {
        return true;
    }
    size_t glen = strlen(g);
    /* "orders:*" allows "orders:read" (and "orders:x:y"), not "orders". */
    return glen >= 2 && g[glen - 1] == '*' && g[glen - 2] == ':' &&
           strncmp(g, want, glen - 1) == 0 && want[glen - 1] != '\0';
}

bool token_ability_granted(char *const *granted, size_t n_granted, const char *want) {
    for (size_t i = 0; i < n_granted; i++) {
        if (pattern_allows(granted[i], want)) {
            return true;
        }
    }
    return false;
}

bool token_abilities_cover(char *const *granted, size_t n_granted, char *const *wanted,
                           size_t n_wanted, bool all) {
    if (n_wanted == 0) {
        return true;
    }
    for (size_t i = 0; i < n_wanted; i++) {
        bool ok = token_ability_granted(granted, n_granted, wanted[i]);
        if (ok && !all) {
            return true;
        }
        if (!ok && all) {
            return false;
        }
    }
    return all;
}

bool token_pattern_within(char *const *granted, size_t n_granted, const char *want) {
    /* A concrete ability, or a wildcard pattern that some granted pattern
     * includes as a whole: "*" only under "*"; "orders:*" under "*",
     * "orders:*" itself, or a wider "x:*" whose prefix it starts with. */
    size_t wlen = strlen(want);
    bool wild = strcmp(want, "*") == 0 ||
                (wlen >= 2 && want[wlen - 1] == '*' && want[wlen - 2] == ':');
    if (!wild || reserved(want)) {
        return token_ability_granted(granted, n_granted, want);
    }
    for (size_t i = 0; i < n_granted; i++) {
        const char *g = granted[i];
        if (strcmp(g, "*") == 0 || strcmp(g, want) == 0) {
            return true;
        }
        size_t glen = strlen(g);
        if (strcmp(want, "*") != 0 && glen >= 2 && g[glen - 1] == '*' &&
            g[glen - 2] == ':' && wlen > glen && strncmp(g, want, glen - 1) == 0) {
            return true;
        }
    }
    return false;
}

int64_t token_expiry(int64_t now_ms, int64_t expires_in_s, int64_t max_lifetime_s,
                     int64_t cap_ms) {
    /* Ten thousand years: beyond it a lifetime is a mistake, and the
     * arithmetic below stays far from overflow. */
    const int64_t lifetime_max_s = 10000LL * 366 * 24 * 3600;
    if (expires_in_s < 0 || expires_in_s > lifetime_max_s || max_lifetime_s < 0 ||
        max_lifetime_s > lifetime_max_s) {
        return -1;
    }
    int64_t expires = expires_in_s > 0 ? now_ms + expires_in_s * 1000 : 0;
    if (cap_ms > 0) {
        if (cap_ms <= now_ms || (expires != 0 && expires > cap_ms)) {
            return -1;
        }
        if (expires == 0) {
            expires = cap_ms;
        }
    }
    if (max_lifetime_s > 0) {
        int64_t max_at = now_ms + max_lifetime_s * 1000;
        if (expires == 0 || expires > max_at) {
            expires = max_at;
        }
    }
    return expires;
}

bool token_expired(int64_t expires_ms, int64_t now_ms) {
    return expires_ms != 0 && now_ms >= expires_ms;
}
