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

TEST(token_ability_grammar) {
    static const char *const accepted[] = {
        "*", "orders:*",     "orders:read",  "a.b-c_d:e",
        "a", "orders:pdf:*", "tokend:admin", "A-Z.0_9:x",
    };
    for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
        if (!token_ability_ok(accepted[i])) {
            test_fail(__FILE__, __LINE__, "\"%s\" refused", accepted[i]);
        }
    }
    static const char *const refused[] = {
        "",
        ":",
        "a:",
        ":a",
        "a::b",
        "a,b",
        "a b",
        "*a",
        "a:*:b",
        "a*",
        "**",
        "a:**",
        "orders:x,invoices:write,billing:*,tokend:admin",
        "ord\xc3\xa9rs:read", /* unicode */
        "\xe2\x80\x8b",       /* a zero-width space alone */
        "orders:\tread",
        "orders:read\n",
        "a\x7f",
        "a/b",
        "a;b",
        "a=b",
        "\"a\"",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        if (token_ability_ok(refused[i])) {
            test_fail(__FILE__, __LINE__, "refused[%zu] accepted", i);
        }
    }
    CHECK(!token_ability_ok(NULL));
    char at_max[TOKEN_ABILITY_MAX + 2];
    memset(at_max, 'a', sizeof(at_max));
    at_max[TOKEN_ABILITY_MAX] = '\0';
    CHECK(token_ability_ok(at_max));
    at_max[TOKEN_ABILITY_MAX] = 'a';
    at_max[TOKEN_ABILITY_MAX + 1] = '\0';
    CHECK(!token_ability_ok(at_max)); /* over-length */
}

TEST(token_ability_messages_name_the_ability_by_index) {
    char msg[TOKEN_ABILITY_MESSAGE_MAX];
    CHECK(token_ability_check("orders:read", "abilities", 0, msg, sizeof(msg)));
    CHECK(token_ability_check("*", "abilities", 0, msg, sizeof(msg)));

    CHECK(!token_ability_check("orders:x,invoices:write", "abilities", 1, msg,
                               sizeof(msg)));
    CHECK(test_contains(msg, "abilities[1]: \"orders:x,invoices:write\" is not an "
                             "ability: ',' at offset 8 is not allowed"));
    CHECK(!token_ability_check("", "ability", 0, msg, sizeof(msg)));
    CHECK(test_contains(msg, "ability[0]: \"\" is not an ability: it is empty"));
    CHECK(!token_ability_check(NULL, "ability", 3, msg, sizeof(msg)));
    CHECK(test_contains(msg, "ability[3]: \"\" is not an ability: it is empty"));
    CHECK(!token_ability_check("a::b", "abilities", 0, msg, sizeof(msg)));
    CHECK(test_contains(msg, "empty segment at offset 2"));
    CHECK(!token_ability_check("a:*:b", "abilities", 0, msg, sizeof(msg)));
    CHECK(test_contains(msg, "'*' at offset 2 is not a whole last segment"));
    char long_one[TOKEN_ABILITY_MAX + 2];
    memset(long_one, 'a', sizeof(long_one) - 1);
    long_one[sizeof(long_one) - 1] = '\0';
    CHECK(!token_ability_check(long_one, "abilities", 0, msg, sizeof(msg)));
    CHECK(test_contains(msg, "it is longer than 128 bytes"));

    /* Whatever the input, the message is printable ASCII: control bytes,
     * UTF-8, quotes and backslashes are escaped. */
    CHECK(!token_ability_check("a\n\"\\\xc3\xa9", "abilities", 0, msg, sizeof(msg)));
    CHECK(test_contains(msg, "\"a\\x0A\\x22\\x5C\\xC3\\xA9\" is not an ability: "
                             "byte 0x0A at offset 1"));
    for (const char *c = msg; *c != '\0'; c++) {
        CHECK(*c >= 0x20 && *c <= 0x7E);
    }

    /* A long one is cut, and a token pasted in is never shown. */
    CHECK(!token_ability_check(
        "orders:read,orders:write,invoices:read,invoices:write,billing:*", "abilities", 0,
        msg, sizeof(msg)));
    CHECK(test_contains(msg, "\"orders:read,orders:write,invoices:read,invoices:...\""));
    char t[TOKEN_MAX_LEN + 1];
    REQUIRE(make_token("tkd_", 5, t) > 0);
    char pasted[TOKEN_ABILITY_MAX + 1];
    snprintf(pasted, sizeof(pasted), "Bearer %s", t);
    CHECK(!token_ability_check(pasted, "abilities", 0, msg, sizeof(msg)));
    CHECK(test_contains(msg, "\"Bearer {redacted}\" is not an ability: ' ' at offset 6"));
    CHECK(!test_contains(msg, t + 4));
    snprintf(pasted, sizeof(pasted), "x:%s,y", t);
    CHECK(!token_ability_check(pasted, "abilities", 0, msg, sizeof(msg)));
    CHECK(test_contains(msg, "\"x:{redacted},y\""));

    /* Nor a run of token characters as long as a token made of an
     * escape's "xHH" and what follows (found by fuzz_token). */
    char after_escape[64] = "\x05";
    memset(after_escape + 1, '0', 36);
    after_escape[37] = '*';
    CHECK(!token_ability_check(after_escape, "abilities", 0, msg, sizeof(msg)));
    CHECK(test_contains(msg, "\"\\x05{redacted}*\""));
    size_t run = 0, longest = 0;
    for (const char *c = msg; *c != '\0'; c++) {
        bool token_char = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                          (*c >= '0' && *c <= '9') || *c == '_';
        run = token_char ? run + 1 : 0;
        longest = run > longest ? run : longest;
    }
    CHECK(longest < 1 + TOKEN_SECRET_LEN + TOKEN_CHECKSUM_LEN);

    /* A small buffer is cut, never overrun. */
    char tiny[16];
    CHECK(!token_ability_check("a,b", "abilities", 0, tiny, sizeof(tiny)));
    CHECK_INT(strlen(tiny), sizeof(tiny) - 1);
}

TEST(token_abilities_join_sends_whole_abilities_only) {
    char out[TOKEN_ABILITIES_JOINED_MAX + 1];
    char *plain[] = {"orders:read", "invoices:*"};
    CHECK_INT(token_abilities_join(plain, 2, out), 0);
    CHECK_STR(out, "orders:read,invoices:*");
    CHECK_INT(token_abilities_joined_len(plain, 2), strlen("orders:read,invoices:*"));
    CHECK_INT(token_abilities_joined_len(NULL, 0), 0);

    /* Stored before the grammar: left out, the rest kept in order. */
    char *stored[] = {"orders:x,invoices:write", "orders:read", "a b", "*"};
    CHECK_INT(token_abilities_join(stored, 4, out), 2);
    CHECK_STR(out, "orders:read,*");
    CHECK_INT(token_abilities_join(stored, 1, out), 1);
    CHECK_STR(out, "");

    /* 64 of 128 bytes (8255 joined) never end mid-ability. */
    static char big[TOKEN_ABILITIES_MAX][TOKEN_ABILITY_MAX + 1];
    char *bigs[TOKEN_ABILITIES_MAX];
    for (size_t i = 0; i < TOKEN_ABILITIES_MAX; i++) {
        memset(big[i], 'a' + (int)(i % 26), TOKEN_ABILITY_MAX);
        big[i][TOKEN_ABILITY_MAX] = '\0';
        bigs[i] = big[i];
    }
    CHECK_INT(token_abilities_joined_len(bigs, TOKEN_ABILITIES_MAX),
              TOKEN_ABILITIES_MAX * (TOKEN_ABILITY_MAX + 1) - 1);
    size_t whole = (TOKEN_ABILITIES_JOINED_MAX + 1) / (TOKEN_ABILITY_MAX + 1);
    CHECK_INT(token_abilities_join(bigs, TOKEN_ABILITIES_MAX, out),
              TOKEN_ABILITIES_MAX - whole);
    CHECK_INT(strlen(out), whole * (TOKEN_ABILITY_MAX + 1) - 1);
    CHECK(strlen(out) <= TOKEN_ABILITIES_JOINED_MAX);
    CHECK(out[strlen(out) - 1] == big[whole - 1][0]);
}
