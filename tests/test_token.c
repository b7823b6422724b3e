/*
 * test_token.c — unit tests of token.c: format, checksum, ids, abilities,
 * expiry. No I/O; random bytes are fixed or drawn from rand() seeds.
 */
#include <string.h>

#include "test.h"
#include "token.h"

static void fill_random(uint8_t *buf, size_t n, unsigned seed) {
    srand(seed);
    for (size_t i = 0; i < n; i++) {
        buf[i] = (uint8_t)(rand() & 0xFF);
    }
}

static size_t make_token(const char *prefix, unsigned seed, char out[TOKEN_MAX_LEN + 1]) {
    uint8_t r[TOKEN_RANDOM_BYTES];
    fill_random(r, sizeof(r), seed);
    return token_generate(prefix, r, sizeof(r), out);
}

TEST(token_format_has_prefix_secret_checksum) {
    char t[TOKEN_MAX_LEN + 1];
    size_t len = make_token("tkd_", 1, t);
    CHECK_INT(len, 4 + TOKEN_SECRET_LEN + TOKEN_CHECKSUM_LEN);
    CHECK_INT(strlen(t), len);
    CHECK(strncmp(t, "tkd_", 4) == 0);
    CHECK(token_well_formed(t, len));
    char t2[TOKEN_MAX_LEN + 1];
    make_token("tkd_", 2, t2);
    CHECK(strcmp(t, t2) != 0);
}

TEST(token_every_single_char_change_is_malformed) {
    char t[TOKEN_MAX_LEN + 1];
    size_t len = make_token("acme_live_", 7, t);
    REQUIRE(token_well_formed(t, len));
    static const char alphabet[] =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_";
    int accepted = 0;
    for (size_t i = 0; i < len; i++) {
        char saved = t[i];
        for (const char *c = alphabet; *c; c++) {
            if (*c == saved) {
                continue;
            }
            t[i] = *c;
            /* A prefix char changed to another valid prefix char is still a
             * different token: the CRC catches every single-char change. */
            if (token_well_formed(t, len)) {
                accepted++;
            }
        }
        t[i] = saved;
    }
    CHECK_INT(accepted, 0);
}

TEST(token_shape_rejections) {
    char t[TOKEN_MAX_LEN + 1];
    size_t len = make_token("tkd_", 3, t);
    CHECK(!token_well_formed(t, len - 1));     /* truncated */
    CHECK(!token_well_formed(t + 4, len - 4)); /* no prefix */
    CHECK(!token_well_formed("", 0));
    CHECK(!token_well_formed(NULL, 0));
    char longer[TOKEN_MAX_LEN + 8];
    memset(longer, 'a', sizeof(longer));
    CHECK(!token_well_formed(longer, sizeof(longer)));
    char bad[TOKEN_MAX_LEN + 1];
    memcpy(bad, t, len + 1);
    bad[6] = '-'; /* not base62 */
    CHECK(!token_well_formed(bad, len));
    memcpy(bad, t, len + 1);
    bad[1] = '\0'; /* embedded NUL */
    CHECK(!token_well_formed(bad, len));
}

TEST(token_prefix_rules) {
    CHECK(token_prefix_ok("tkd_"));
    CHECK(token_prefix_ok("acme_live_"));
    CHECK(token_prefix_ok("x"));
    CHECK(!token_prefix_ok(""));
    CHECK(!token_prefix_ok(NULL));
    CHECK(!token_prefix_ok("has-dash"));
    CHECK(!token_prefix_ok("has space"));
    CHECK(!token_prefix_ok("abcdefghijabcdefghijabcdefghijabc")); /* 33 */
    char t[TOKEN_MAX_LEN + 1];
    CHECK_INT(make_token("bad-prefix", 1, t), 0);
}

TEST(token_crc32_known_values) {
    /* The standard check value of CRC-32/IEEE. */
    CHECK_INT(token_crc32("123456789", 9), 0xCBF43926u);
    CHECK_INT(token_crc32("", 0), 0);
}

TEST(token_secret_is_uniform_base62) {
    /* 2000 tokens: every base62 char appears, in roughly equal counts. */
    int counts[128] = {0};
    for (unsigned s = 0; s < 2000; s++) {
        char t[TOKEN_MAX_LEN + 1];
        REQUIRE(make_token("p_", s + 100, t) > 0);
        for (size_t i = 2; i < 2 + TOKEN_SECRET_LEN; i++) {
            counts[(unsigned char)t[i]]++;
        }
    }
    int total = 2000 * TOKEN_SECRET_LEN, expected = total / 62;
    for (int c = 0; c < 128; c++) {
        bool b62 =
            (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
        if (b62) {
            CHECK(counts[c] > expected * 8 / 10 && counts[c] < expected * 12 / 10);
        } else {
            CHECK_INT(counts[c], 0);
        }
    }
}

TEST(token_random_exhaustion_fails_cleanly) {
    uint8_t r[TOKEN_RANDOM_BYTES];
    memset(r, 0xFF, sizeof(r)); /* every byte rejected by the sampler */
    char t[TOKEN_MAX_LEN + 1];
    CHECK_INT(token_generate("tkd_", r, sizeof(r), t), 0);
    char id[TOKEN_ID_LEN + 1];
    CHECK(!token_new_id(r, sizeof(r), id));
}

TEST(token_ids) {
    uint8_t r[TOKEN_RANDOM_BYTES];
    fill_random(r, sizeof(r), 9);
    char id[TOKEN_ID_LEN + 1];
    REQUIRE(token_new_id(r, sizeof(r), id));
    CHECK_INT(strlen(id), TOKEN_ID_LEN);
    CHECK(token_id_ok(id, strlen(id)));
    CHECK(!token_id_ok(id, TOKEN_ID_LEN - 1));
    CHECK(!token_id_ok("../../etc/passwd", 16));
    CHECK(!token_id_ok(NULL, 0));
}

TEST(token_abilities_exact_and_wildcards) {
    char *g[] = {"orders:read", "invoices:*"};
    CHECK(token_ability_granted(g, 2, "orders:read"));
    CHECK(!token_ability_granted(g, 2, "orders:write"));
    CHECK(token_ability_granted(g, 2, "invoices:read"));
    CHECK(token_ability_granted(g, 2, "invoices:pdf:download"));
    CHECK(!token_ability_granted(g, 2, "invoices"));
    CHECK(!token_ability_granted(g, 2, "invoicesX:read"));
    char *star[] = {"*"};
    CHECK(token_ability_granted(star, 1, "anything:at:all"));
    CHECK(!token_ability_granted(NULL, 0, "orders:read"));
}

TEST(token_reserved_abilities_need_exact_grant) {
    char *star[] = {"*", "tokend:*"};
    CHECK(!token_ability_granted(star, 2, "tokend:admin"));
    char *admin[] = {"tokend:admin"};
    CHECK(token_ability_granted(admin, 1, "tokend:admin"));
    CHECK(!token_ability_granted(admin, 1, "orders:read")); /* admin is not "*" */
    CHECK(!token_pattern_within(star, 2, "tokend:admin"));
}

TEST(token_abilities_all_and_any) {
    char *g[] = {"orders:read", "users:read"};
    char *both[] = {"orders:read", "users:read"};
    char *mixed[] = {"orders:read", "orders:write"};
    char *none[] = {"orders:write", "users:write"};
    CHECK(token_abilities_cover(g, 2, both, 2, true));
    CHECK(!token_abilities_cover(g, 2, mixed, 2, true));
    CHECK(token_abilities_cover(g, 2, mixed, 2, false));
    CHECK(!token_abilities_cover(g, 2, none, 2, false));
    CHECK(token_abilities_cover(g, 2, NULL, 0, true));
    CHECK(token_abilities_cover(g, 2, NULL, 0, false));
}

TEST(token_pattern_within_caller) {
    char *g[] = {"orders:*", "users:read"};
    CHECK(token_pattern_within(g, 2, "orders:read"));
    CHECK(token_pattern_within(g, 2, "orders:*"));
    CHECK(token_pattern_within(g, 2, "orders:pdf:*"));
    CHECK(!token_pattern_within(g, 2, "*"));
    CHECK(!token_pattern_within(g, 2, "users:*"));
    CHECK(token_pattern_within(g, 2, "users:read"));
    CHECK(!token_pattern_within(g, 2, "users:write"));
    char *star[] = {"*"};
    CHECK(token_pattern_within(star, 1, "*"));
    CHECK(token_pattern_within(star, 1, "users:*"));
}

TEST(token_expiry_rules) {
    const int64_t now = 1700000000000LL;
    CHECK_INT(token_expiry(now, 0, 0, 0), 0); /* never */
    CHECK_INT(token_expiry(now, 60, 0, 0), now + 60000);
    CHECK_INT(token_expiry(now, 0, 3600, 0), now + 3600000);    /* max applies */
    CHECK_INT(token_expiry(now, 7200, 3600, 0), now + 3600000); /* shortened */
    CHECK_INT(token_expiry(now, -1, 0, 0), -1);
    CHECK_INT(token_expiry(now, 0, 0, now + 5000), now + 5000); /* inherits cap */
    CHECK_INT(token_expiry(now, 4, 0, now + 5000), now + 4000);
    CHECK_INT(token_expiry(now, 6, 0, now + 5000), -1);    /* beyond cap */
    CHECK_INT(token_expiry(now, 0, 0, now - 1), -1);       /* cap passed */
    CHECK_INT(token_expiry(now, INT64_MAX / 2, 0, 0), -1); /* absurd */
    CHECK(!token_expired(0, now));
    CHECK(!token_expired(now + 1, now));
    CHECK(token_expired(now, now));
    CHECK(token_expired(now - 1, now));
}
