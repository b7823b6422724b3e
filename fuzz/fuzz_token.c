/*
 * fuzz_token.c — libFuzzer target for the pure token rules (token.c): the
 * shape/checksum check on arbitrary bytes, and ability matching on
 * arbitrary lists, with invariants that must hold for any input:
 *   - a token that passes token_well_formed has a correct CRC32 checksum
 *     (recomputed here independently of the parser's path);
 *   - a concrete ability allowed by token_pattern_within is granted by
 *     token_ability_granted, and reserved ("tokend:") abilities are only
 *     granted by an exact entry;
 *   - token_ability_ok agrees with the grammar of token.h restated here
 *     independently, and token_ability_check with it; a refusal's message
 *     is printable ASCII without a run of token characters as long as a
 *     token;
 *   - token_abilities_join gives at most TOKEN_ABILITIES_JOINED_MAX bytes
 *     that split on ',' into abilities, each one of the lines given, in
 *     order, as many as were not left out.
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

/* The grammar of token.h, restated: "*", or segments of [A-Za-z0-9_.-]+
 * joined by ':', optionally followed by ":*"; 1..TOKEN_ABILITY_MAX bytes. */
static bool ability_by_grammar(const char *s) {
    size_t len = strlen(s);
    if (len == 0 || len > TOKEN_ABILITY_MAX) {
        return false;
    }
    if (strcmp(s, "*") == 0) {
        return true;
    }
    size_t body = len >= 2 && strcmp(s + len - 2, ":*") == 0 ? len - 2 : len;
    bool empty = true;
    for (size_t i = 0; i < body; i++) {
        char c = s[i];
        if (c == ':') {
            if (empty) {
                return false;
            }
            empty = true;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-') {
            empty = false;
        } else {
            return false;
        }
    }
    return !empty;
}

static void check_ability(const char *s) {
    bool ok = token_ability_ok(s);
    if (ok != ability_by_grammar(s)) {
        abort(); /* the grammar and its implementation disagree */
    }
    char msg[TOKEN_ABILITY_MESSAGE_MAX];
    if (token_ability_check(s, "abilities", 63, msg, sizeof(msg)) != ok) {
        abort();
    }
    if (ok) {
        return;
    }
    size_t len = strnlen(msg, sizeof(msg));
    if (len == sizeof(msg)) {
        abort(); /* not NUL-terminated */
    }
    /* A token is a run of at least this many [A-Za-z0-9_]; none may be in
     * a message, so no token can be either. */
    const size_t token_min = 1 + TOKEN_SECRET_LEN + TOKEN_CHECKSUM_LEN;
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        char c = msg[i];
        if (c < 0x20 || c > 0x7E) {
            abort(); /* not printable ASCII */
        }
        bool token_char = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '_';
        run = token_char ? run + 1 : 0;
        if (run >= token_min) {
            abort(); /* room for a token in a message */
        }
    }
}

static void check_join(char **lines, size_t n) {
    char out[TOKEN_ABILITIES_JOINED_MAX + 1];
    size_t left_out = token_abilities_join(lines, n, out);
    size_t len = strlen(out);
    if (left_out > n || len > TOKEN_ABILITIES_JOINED_MAX) {
        abort();
    }
    size_t next = 0, kept = 0;
    for (char *piece = out; len > 0;) {
        char *comma = strchr(piece, ',');
        if (comma != NULL) {
            *comma = '\0';
        }
        if (!token_ability_ok(piece)) {
            abort(); /* a piece that is not a whole ability */
        }
        while (next < n && strcmp(lines[next], piece) != 0) {
            next++;
        }
        if (next == n) {
            abort(); /* not one of the lines, or out of order */
        }
        next++;
        kept++;
        if (comma == NULL) {
            break;
        }
        piece = comma + 1;
    }
    if (kept != n - left_out) {
        abort();
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
    for (size_t i = 0; i < n; i++) {
        check_ability(lines[i]);
    }
    check_join(lines, n);
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
