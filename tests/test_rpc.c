/*
 * test_rpc.c — unit tests of the shared RPC layer: envelope round trips,
 * malformed and hostile bytes, the capped allocator, UTF-8 checks and the
 * status mapping.
 */
#include <string.h>

#include "rpc.h"
#include "test.h"

TEST(rpc_envelope_round_trip) {
    Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
    char *abilities[] = {"orders:read", "users:read"};
    vr.token = "tkd_x";
    vr.abilities = abilities;
    vr.n_abilities = 2;
    vr.mode = TOKEND__V1__ABILITY_MODE__ANY;
    uint8_t *payload = NULL;
    size_t plen = 0;
    REQUIRE(rpc_pack(&vr.base, &payload, &plen) == TOKEND_OK);

    Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
    req.method = "Verify";
    req.request_id = 42;
    req.deadline_unix_ms = 1234;
    req.credential = "cred";
    req.payload.data = payload;
    req.payload.len = plen;
    uint8_t *buf = NULL;
    size_t len = 0;
    REQUIRE(rpc_pack(&req.base, &buf, &len) == TOKEND_OK);

    rpc_arena arena;
    rpc_arena_init(&arena, rpc_decode_budget(len));
    Tokend__V1__Request *got = tokend__v1__request__unpack(&arena.base, len, buf);
    REQUIRE(got != NULL);
    CHECK_STR(got->method, "Verify");
    CHECK_INT(got->request_id, 42);
    CHECK_INT(got->deadline_unix_ms, 1234);
    CHECK_STR(got->credential, "cred");
    const ProtobufCMethodDescriptor *m = rpc_method(got->method);
    REQUIRE(m != NULL);
    Tokend__V1__VerifyRequest *in =
        (Tokend__V1__VerifyRequest *)protobuf_c_message_unpack(
            m->input, &arena.base, got->payload.len, got->payload.data);
    REQUIRE(in != NULL);
    CHECK_STR(in->token, "tkd_x");
    CHECK_INT(in->n_abilities, 2);
    CHECK_STR(in->abilities[1], "users:read");
    CHECK_INT(in->mode, TOKEND__V1__ABILITY_MODE__ANY);
    protobuf_c_message_free_unpacked(&in->base, &arena.base);
    protobuf_c_message_free_unpacked(&got->base, &arena.base);
    CHECK_INT(arena.used, 0);
    free(buf);
    free(payload);
}

TEST(rpc_methods_come_from_the_descriptor) {
    CHECK(rpc_method("CreateToken") != NULL);
    CHECK(rpc_method("Verify") != NULL);
    CHECK(rpc_method("Revoke") != NULL);
    CHECK(rpc_method("ListTokens") != NULL);
    CHECK(rpc_method("Nope") == NULL);
    CHECK(rpc_method("") == NULL);
}

TEST(rpc_malformed_bytes_do_not_decode) {
    Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
    req.method = "Verify";
    req.credential = "abc";
    uint8_t *buf = NULL;
    size_t len = 0;
    REQUIRE(rpc_pack(&req.base, &buf, &len) == TOKEND_OK);
    /* Every truncation either fails or decodes; none may crash or leak. */
    for (size_t cut = 0; cut < len; cut++) {
        rpc_arena arena;
        rpc_arena_init(&arena, rpc_decode_budget(cut));
        Tokend__V1__Request *got = tokend__v1__request__unpack(&arena.base, cut, buf);
        if (got != NULL) {
            protobuf_c_message_free_unpacked(&got->base, &arena.base);
        }
        CHECK_INT(arena.used, 0);
    }
    /* Random garbage. */
    srand(5);
    int decoded = 0;
    for (int i = 0; i < 20000; i++) {
        uint8_t junk[64];
        size_t n = (size_t)(rand() % (int)sizeof(junk));
        for (size_t k = 0; k < n; k++) {
            junk[k] = (uint8_t)rand();
        }
        rpc_arena arena;
        rpc_arena_init(&arena, rpc_decode_budget(n));
        Tokend__V1__Request *got = tokend__v1__request__unpack(&arena.base, n, junk);
        if (got != NULL) {
            decoded++;
            protobuf_c_message_free_unpacked(&got->base, &arena.base);
        }
        CHECK_INT(arena.used, 0);
    }
    CHECK(decoded < 20000);
    free(buf);
}

TEST(rpc_arena_caps_amplification) {
    /* 100,000 empty repeated strings: ~200 KB on the wire, megabytes once
     * decoded. The budget makes the decode fail instead. */
    size_t n = 100000;
    uint8_t *buf = malloc(n * 2);
    REQUIRE(buf != NULL);
    for (size_t i = 0; i < n; i++) {
        buf[2 * i] = (2 << 3) | 2; /* field 2 (abilities), length-delimited */
        buf[2 * i + 1] = 0;        /* empty */
    }
    rpc_arena arena;
    rpc_arena_init(&arena, 64 * 1024);
    ProtobufCMessage *m = protobuf_c_message_unpack(
        &tokend__v1__verify_request__descriptor, &arena.base, n * 2, buf);
    CHECK(m == NULL);
    CHECK(arena.exhausted);
    CHECK_INT(arena.used, 0);
    free(buf);
}

TEST(rpc_utf8_validation) {
    CHECK(rpc_text_ok("partner:acme", 12));
    CHECK(rpc_text_ok("Zoë ☕ 🙂", strlen("Zoë ☕ 🙂")));
    CHECK(!rpc_text_ok("a\nb", 3));
    CHECK(!rpc_text_ok("a\tb", 3));
    CHECK(!rpc_text_ok("a\0b", 3));
    CHECK(!rpc_text_ok("\xC3", 1));             /* truncated */
    CHECK(!rpc_text_ok("\xC0\xAF", 2));         /* overlong '/' */
    CHECK(!rpc_text_ok("\xED\xA0\x80", 3));     /* surrogate */
    CHECK(!rpc_text_ok("\xF4\x90\x80\x80", 4)); /* > U+10FFFF */
    CHECK(!rpc_text_ok("\xFF", 1));
    CHECK(rpc_utf8_ok("line1\nline2", 11));
    CHECK(!rpc_utf8_ok("\xC3\x28", 2));
}

TEST(rpc_status_names_and_mapping) {
    CHECK_STR(tokend_status_name(TOKEND_OK), "OK");
    CHECK_STR(tokend_status_name(TOKEND_MALFORMED), "MALFORMED");
    CHECK_STR(tokend_status_name(TOKEND_INTERNAL), "INTERNAL");
    CHECK_STR(tokend_status_name(99), "UNKNOWN");
    CHECK_STR(tokend_status_name(-1), "UNKNOWN");
    CHECK(strlen(tokend_strerror(TOKEND_EXPIRED)) > 0);
    CHECK_STR(tokend_strerror(1000), "unknown status");
    CHECK_INT(rpc_status_from_wire(TOKEND__V1__STATUS__EXPIRED), TOKEND_EXPIRED);
    CHECK_INT(rpc_status_from_wire((Tokend__V1__Status)77), TOKEND_INTERNAL);
    CHECK_INT(rpc_status_to_wire(TOKEND_NOT_FOUND), TOKEND__V1__STATUS__NOT_FOUND);
    /* Every wire value has a name in the generated enum descriptor, and the
     * names agree with ours. */
    const ProtobufCEnumDescriptor *d = &tokend__v1__status__descriptor;
    CHECK_INT(d->n_values, TOKEND_STATUS_COUNT);
    for (unsigned i = 0; i < d->n_values; i++) {
        CHECK_STR(tokend_status_name(d->values[i].value), d->values[i].name);
    }
}
