/*
 * test_policy_rpc.c — the token policy contract (tokend.proto's
 * TokenPolicy, canary, UpdateToken, RotateToken, the expiring filter)
 * through the RPC, as a client written from tokend.proto sends it.
 */
#include <string.h>

#include "harness.h"
#include "rpc_client.h"
#include "test.h"
#include "tokend.pb-c.h"

/* One call of `method` with `input` and the admin credential; returns its
 * status, the message in *err. */
static int call_admin(const tokend_proc *p, const char *method,
                      const ProtobufCMessage *input, tokend_error *err) {
    const char *urls[] = {p->url};
    rpc_client_config rc = {.urls = urls, .n_urls = 1};
    rpc_client *client = NULL;
    rpc_call *call = NULL;
    REQUIRE(rpc_client_open(&rc, &client, NULL) == TOKEND_OK);
    REQUIRE(rpc_call_new(client, NULL, NULL, &call, NULL) == TOKEND_OK);
    const ProtobufCMethodDescriptor *m = protobuf_c_service_descriptor_get_method_by_name(
        &tokend__v1__token_service__descriptor, method);
    REQUIRE(m != NULL);
    REQUIRE(rpc_call_start(call, m, input, p->admin, NULL, 3000, NULL) == TOKEND_OK);
    rpc_call_wait(call);
    const ProtobufCMessage *reply = NULL;
    int rv = rpc_call_result(call, &reply, err);
    rpc_call_free(call);
    rpc_client_free(client);
    return rv;
}

/* Until the policy is served, a request that sets any of it is refused
 * whole (nothing created) rather than served without the rule: a token
 * the caller asked to bind must never come back unbound. */
TEST(policy_rules_not_served_are_refused_whole) {
    tokend_proc p;
    harness_init(&p);
    harness_start_or_die(&p);
    tokend_error err;

    char *nets[] = {"203.0.113.0/24"};
    char *abilities[] = {"orders:read"};
    Tokend__V1__TokenPolicy pol = TOKEND__V1__TOKEN_POLICY__INIT;
    pol.n_allowed_networks = 1;
    pol.allowed_networks = nets;
    Tokend__V1__CreateTokenRequest create = TOKEND__V1__CREATE_TOKEN_REQUEST__INIT;
    create.owner = "partner:a";
    create.name = "bound";
    create.n_abilities = 1;
    create.abilities = abilities;
    create.policy = &pol;
    CHECK_INT(call_admin(&p, "CreateToken", &create.base, &err), TOKEND_UNIMPLEMENTED);
    CHECK(strstr(err.message, "policy is part of the token policy contract") != NULL);

    create.policy = NULL;
    create.canary = true;
    CHECK_INT(call_admin(&p, "CreateToken", &create.base, &err), TOKEND_UNIMPLEMENTED);
    CHECK(strstr(err.message, "canary") != NULL);

    Tokend__V1__ListTokensRequest list = TOKEND__V1__LIST_TOKENS_REQUEST__INIT;
    list.owner = "partner:a";
    list.expiring_within_seconds = 7 * 86400;
    CHECK_INT(call_admin(&p, "ListTokens", &list.base, &err), TOKEND_UNIMPLEMENTED);

    Tokend__V1__UpdateTokenRequest upd = TOKEND__V1__UPDATE_TOKEN_REQUEST__INIT;
    CHECK_INT(call_admin(&p, "UpdateToken", &upd.base, &err), TOKEND_UNIMPLEMENTED);
    Tokend__V1__RotateTokenRequest rot = TOKEND__V1__ROTATE_TOKEN_REQUEST__INIT;
    CHECK_INT(call_admin(&p, "RotateToken", &rot.base, &err), TOKEND_UNIMPLEMENTED);

    /* Nothing was created by the refused calls; a plain create still works. */
    tokend_client *admin = harness_client(&p, p.admin);
    tokend_token_page page;
    REQUIRE(tokend_list(admin, NULL, "partner:a", 0, NULL, &page, NULL) == TOKEND_OK);
    CHECK_INT(page.n_tokens, 0);
    tokend_token_page_free(&page);
    create.canary = false;
    CHECK_INT(call_admin(&p, "CreateToken", &create.base, &err), TOKEND_OK);
    tokend_close(admin);
    harness_stop(&p);
}
