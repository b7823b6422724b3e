/*
 * fuzz_token.c — libFuzzer target for the pure token rules (token.c): the
 * shape/checksum check on arbitrary bytes, and ability matching on
 * arbitrary lists, with invariants that must hold for any input:
 *   - a token that passes token_well_formed has a correct CRC32 checksum
 *     (recomputed here independently of the parser's path);
 *   - a concrete ability allowed by token_pattern_within is granted by
 *     token_ability_granted, and reserved ("tokend:") abilities are only
 *     granted by an exact entry.
 * Input layout: bytes up to the first NUL are tried as a token; the rest
 * is split on '\n' into granted patterns, and the last line is the ability
 * asked for.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char b62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static void check_token(const char *s, size_t len) {
    if (!token_well_formed(s, len)) {
        return;
    }
    size_t body = len - TOKEN_CHECKSUM_LEN;
    uint32_t crc = token_crc32(s, body);
    char want[TOKEN_CHECKSUM_LEN];
    for (int i = TOKEN_CHECKSUM_LEN - 1; i >= 0; i--) {
        want[i] = b62[crc % 62];
        crc /= 62;
    }
    if (memcmp(want, s + body, TOKEN_CHECKSUM_LEN) != 0) {
        abort(); /* accepted a token whose checksum is wrong */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *nul = memchr(data, 0, size);
    size_t token_len = nul ? (size_t)(nul - (const char *)data) : size;
    check_token((const char *)data, token_len);
    if (nul == NULL) {
        return 0;
    }
    /* The rest: NUL-free lines. */
    size_t rest = size - token_len - 1;
    char *text = malloc(rest + 1);
    if (text == NULL) {
        return 0;
    }
    memcpy(text, nul + 1, rest);
    text[rest] = '\0';
    char *lines[64];
    size_t n = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL && n < 64;
         line = strtok_r(NULL, "\n", &save)) {
        lines[n++] = line;
    }
    if (n >= 1) {
        const char *want = lines[n - 1];
        char **granted = lines;
        size_t n_granted = n - 1;
        bool granted_it = token_ability_granted(granted, n_granted, want);
        bool wild = strchr(want, '*') != NULL;
        if (!wild && token_pattern_within(granted, n_granted, want) && !granted_it) {
            abort(); /* within the caller's abilities but not granted */
        }
        if (strncmp(want, TOKEN_RESERVED_PREFIX, strlen(TOKEN_RESERVED_PREFIX)) == 0 &&
            granted_it) {
            bool exact = false;
            for (size_t i = 0; i < n_granted; i++) {
                exact = exact || strcmp(granted[i], want) == 0;
            }
            if (!exact) {
                abort(); /* a reserved ability granted by a wildcard */
            }
        }
        (void)token_abilities_cover(granted, n_granted, granted, n_granted, true);
        (void)token_abilities_cover(granted, n_granted, &lines[n - 1], 1, false);
    }
    free(text);
    return 0;
}
