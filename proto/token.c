/*
 * token.c — token format, checksum, ids, abilities and expiry rules.
 * Pure functions over memory; see token.h for the rules themselves.
 */
#include "token.h"

#include <pthread.h>
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

static bool prefix_ok(const char *s, size_t len) {
    if (len == 0 || len > TOKEN_PREFIX_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!is_base62((unsigned char)s[i]) && s[i] != '_') {
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
