/*
 * fuzz_rpc.c — libFuzzer target: arbitrary bytes as one RPC message to a
 * real tokend, as the service's dispatch sees them.
 *
 * The whole service runs in this process (store in a temp dir, writer,
 * usage table, TokenService, NNG REP server) on an inproc:// URL; each
 * input is sent as one NNG message and must be answered, within 5 s, with
 * a reply that decodes as a tokend.v1.Reply. ASan/UBSan watch the
 * handlers, the store codec and the envelope code while it runs.
 *
 * So the fuzzer reaches past authentication, an envelope whose credential
 * is the text "@admin" has it replaced by the admin token of this run
 * before sending. Seeds (fuzz/corpus/rpc) are written by running the
 * target with FUZZ_WRITE_SEEDS=DIR.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "inproc.h"
#include "log.h"
#include "rpc.h"
#include "store.h"
#include "methods.h"

#define FUZZ_URL "inproc://tokend-fuzz"
#define ADMIN_PLACEHOLDER "@admin"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static nng_socket client;
static char admin[TOKEN_MAX_LEN + 1];
static char user_token[TOKEN_MAX_LEN + 1];

/* Stores a token for `owner` directly, for the seeds to refer to. */
static void put_token(store *st, const char *owner, char *ability, char *token_out) {
    uint8_t digest[TOKEN_DIGEST_LEN];
    char *abilities[] = {ability};
    fuzz_put_token(st, owner, abilities, 1, token_out, digest, NULL);
}

static void write_seed(const char *dir, const char *name, const char *method,
                       const ProtobufCMessage *payload, const char *credential) {
    uint8_t *p = NULL, *buf = NULL;
    size_t plen = 0, len = 0;
    if (rpc_pack(payload, &p, &plen) != TOKEND_OK) {
        fuzz_die("pack");
    }
    Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
    req.method = (char *)method;
    req.request_id = 1;
    req.credential = (char *)credential;
    req.payload.data = p;
    req.payload.len = plen;
    if (rpc_pack(&req.base, &buf, &len) != TOKEND_OK) {
        fuzz_die("pack");
    }
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(buf, 1, len, f) != len) {
        fuzz_die("cannot write a seed");
    }
    fclose(f);
    free(p);
    free(buf);
}

/* One seed per method and target, with the placeholder credential. */
static void write_seeds(const char *dir) {
    char *abilities[] = {"orders:read", "orders:*"};
    Tokend__V1__CreateTokenRequest cr = TOKEND__V1__CREATE_TOKEN_REQUEST__INIT;
    cr.owner = "partner:fuzz";
    cr.name = "seed";
    cr.abilities = abilities;
    cr.n_abilities = 2;
    cr.expires_in_seconds = 3600;
    write_seed(dir, "create", "CreateToken", &cr.base, ADMIN_PLACEHOLDER);
    Tokend__V1__VerifyRequest vr = TOKEND__V1__VERIFY_REQUEST__INIT;
    vr.token = user_token;
    vr.abilities = abilities;
    vr.n_abilities = 1;
    write_seed(dir, "verify", "Verify", &vr.base, "");
    vr.mode = TOKEND__V1__ABILITY_MODE__ANY;
    vr.n_abilities = 2;
    write_seed(dir, "verify_any", "Verify", &vr.base, "");
    Tokend__V1__RevokeRequest rr = TOKEND__V1__REVOKE_REQUEST__INIT;
    rr.target_case = TOKEND__V1__REVOKE_REQUEST__TARGET_OWNER;
    rr.owner = "partner:nobody";
    write_seed(dir, "revoke_owner", "Revoke", &rr.base, ADMIN_PLACEHOLDER);
    rr.target_case = TOKEND__V1__REVOKE_REQUEST__TARGET_ID;
    rr.id = "0123456789abcdef";
    write_seed(dir, "revoke_id", "Revoke", &rr.base, ADMIN_PLACEHOLDER);
    Tokend__V1__ListTokensRequest lr = TOKEND__V1__LIST_TOKENS_REQUEST__INIT;
    lr.owner = "partner:fuzz";
    lr.page_size = 3;
    write_seed(dir, "list", "ListTokens", &lr.base, ADMIN_PLACEHOLDER);
    Tokend__V1__GetTokenRequest gr = TOKEND__V1__GET_TOKEN_REQUEST__INIT;
    gr.id = "0123456789abcdef";
    write_seed(dir, "get", "GetToken", &gr.base, ADMIN_PLACEHOLDER);
    Tokend__V1__RequestContext ctx = TOKEND__V1__REQUEST_CONTEXT__INIT;
    ctx.method = "GET";
    ctx.path = "/orders/123?expand=lines";
    ctx.client_ip = "203.0.113.7";
    ctx.user_agent = "fuzz/1";
    vr.context = &ctx;
    vr.mode = TOKEND__V1__ABILITY_MODE__ALL;
    vr.n_abilities = 1;
    write_seed(dir, "verify_context", "Verify", &vr.base, "");
    Tokend__V1__GetUsageRequest ur = TOKEND__V1__GET_USAGE_REQUEST__INIT;
    ur.owner = "partner:fuzz";
    ur.step = TOKEND__V1__USAGE_STEP__HOUR;
    write_seed(dir, "usage_owner", "GetUsage", &ur.base, ADMIN_PLACEHOLDER);
    ur.owner = "";
    ur.id = "0123456789abcdef";
    ur.step = TOKEND__V1__USAGE_STEP__MINUTE;
    ur.from_unix_ms = 1764685200000;
    ur.to_unix_ms = 1764688800000;
    write_seed(dir, "usage_id", "GetUsage", &ur.base, ADMIN_PLACEHOLDER);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    log_min_level = LOG_ERROR + 1; /* quiet: nothing to learn from logs here */
    store *st = fuzz_store_open("fuzz");
    put_token(st, "admin", METHODS_ABILITY_ADMIN, admin);
    put_token(st, "partner:fuzz", "orders:read", user_token);
    fuzz_serve(st, FUZZ_URL);
    if (nng_req0_open(&client) != 0 || nng_dial(client, FUZZ_URL, NULL, 0) != 0) {
        fuzz_die("dial");
    }
    nng_socket_set_ms(client, NNG_OPT_RECVTIMEO, 5000);
    nng_socket_set_ms(client, NNG_OPT_SENDTIMEO, 5000);
    const char *seeds = getenv("FUZZ_WRITE_SEEDS");
    if (seeds != NULL) {
        write_seeds(seeds);
    }
    /* The service lives until the process ends: libFuzzer never returns. */
    return 0;
}

/* If `data` is an envelope with the placeholder credential, a copy with the
 * admin token in its place (malloc'd); otherwise NULL. */
static uint8_t *with_admin(const uint8_t *data, size_t size, size_t *out_len) {
    Tokend__V1__Request *req = tokend__v1__request__unpack(NULL, size, data);
    if (req == NULL) {
        return NULL;
    }
    uint8_t *buf = NULL;
    if (strcmp(req->credential, ADMIN_PLACEHOLDER) == 0) {
        char *placeholder = req->credential;
        req->credential = admin;
        if (rpc_pack(&req->base, &buf, out_len) != TOKEND_OK) {
            buf = NULL;
        }
        req->credential = placeholder; /* freed with the message */
    }
    tokend__v1__request__free_unpacked(req, NULL);
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t len = size;
    uint8_t *swapped = with_admin(data, size, &len);
    const uint8_t *msg = swapped != NULL ? swapped : data;
    /* nng_send wants a non-NULL buffer even for an empty message. */
    uint8_t empty = 0;
    if (nng_send(client, len > 0 ? (void *)msg : &empty, len, 0) != 0) {
        fuzz_die("send failed");
    }
    free(swapped);
    void *reply = NULL;
    size_t rlen = 0;
    int rv = nng_recv(client, &reply, &rlen, NNG_FLAG_ALLOC);
    if (rv != 0) {
        /* Only a message over NNG's receive ceiling may go unanswered. */
        if (size > 4 * 65536) {
            return 0;
        }
        fprintf(stderr, "no reply: %s\n", nng_strerror(rv));
        abort();
    }
    Tokend__V1__Reply *r = tokend__v1__reply__unpack(NULL, rlen, reply);
    if (r == NULL) {
        fuzz_die("reply does not decode");
    }
    if ((int)r->status < 0 || (int)r->status >= TOKEND_STATUS_COUNT) {
        fuzz_die("reply status out of range");
    }
    tokend__v1__reply__free_unpacked(r, NULL);
    nng_free(reply, rlen);
    return 0;
}
