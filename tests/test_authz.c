/*
 * test_authz.c — the authorization matrix: every management operation
 * (list, create, revoke one, revoke all, revoke an id no token has, get
 * one by id)
 * against every kind of caller (admin; same owner with and without the
 * right; another owner; expired, revoked, no credential), each cell
 * asserted twice, through libtokend and through tokend-gateway with curl,
 * with its effect checked (a refused revoke leaves the target valid, an
 * allowed one removes it).
 *
 * Every cell gets its own target owner, target token and caller
 * credential, so no cell sees another's effects. All cells are prepared
 * first (expired callers with a 1 s lifetime), then one wait lets those
 * expire, then the cells run.
 *
 * The authorization parts of service_cross_owner_attempts_are_refused and
 * service_credential_rights_and_expiry_cap are covered here too (through
 * both paths); those tests stay for their other checks.
 */
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"
#include "test.h"

#define TOK 128

typedef enum authz_op {
    OP_LIST,          /* list the target owner's tokens */
    OP_CREATE,        /* create for the target owner, within the caller */
    OP_REVOKE_ONE,    /* revoke a token of the target owner, by id */
    OP_REVOKE_ALL,    /* revoke every token of the target owner */
    OP_CREATE_WIDER,  /* create with an ability the caller lacks */
    OP_CREATE_LONGER, /* create outliving the caller's own expiry */
    OP_REVOKE_NONE,   /* revoke, by id, a token that does not exist */
    OP_GET,           /* get a token of the target owner, by id */
} authz_op;

typedef enum authz_caller {
    C_ADMIN,   /* the admin token of `tokend init` */
    C_WITH,    /* target owner, with tokens:read (list) or tokens:write */
    C_WITHOUT, /* target owner, with the other of the two only */
    C_OTHER,   /* another owner, with tokens:read and tokens:write */
    C_EXPIRED, /* as C_WITH, but expired */
    C_REVOKED, /* as C_WITH, but revoked */
    C_NONE,    /* no credential at all */
} authz_caller;

static const char *const op_names[] = {"list",        "create",       "revoke-one",
                                       "revoke-all",  "create-wider", "create-longer",
                                       "revoke-none", "get"};
static const char *const caller_names[] = {"admin",
                                           "same-owner-with-right",
                                           "same-owner-without-right",
                                           "other-owner",
                                           "expired",
                                           "revoked",
                                           "no-credential"};

typedef struct authz_cell {
    authz_op op;
    authz_caller caller;
    int want_rpc;  /* tokend status through libtokend */
    int want_http; /* HTTP status through the gateway */
} authz_cell;

#define OK_ TOKEND_OK
#define DENIED TOKEND_PERMISSION_DENIED
#define UNAUTH TOKEND_UNAUTHENTICATED

static const authz_cell cells[] = {
    /* GET /v1/tokens?owner=T (owner= names the target for every caller). */
    {OP_LIST, C_ADMIN, OK_, 200},
    {OP_LIST, C_WITH, OK_, 200},
    {OP_LIST, C_WITHOUT, DENIED, 403},
    {OP_LIST, C_OTHER, DENIED, 403},
    {OP_LIST, C_EXPIRED, UNAUTH, 401},
    {OP_LIST, C_REVOKED, UNAUTH, 401},
    {OP_LIST, C_NONE, UNAUTH, 401}, /* REST: MISSING_TOKEN, no RPC */

    /* POST /v1/tokens with "owner":T, abilities ["orders:read"] and
     * expires_in 600 (the same-owner caller has orders:read and expires
     * in an hour: within both). */
    {OP_CREATE, C_ADMIN, OK_, 201},
    {OP_CREATE, C_WITH, OK_, 201},
    {OP_CREATE, C_WITHOUT, DENIED, 403},
    {OP_CREATE, C_OTHER, DENIED, 403},
    {OP_CREATE, C_EXPIRED, UNAUTH, 401},
    {OP_CREATE, C_REVOKED, UNAUTH, 401},
    {OP_CREATE, C_NONE, UNAUTH, 401},

    /* DELETE /v1/tokens/{id}. Another owner's id is NOT_FOUND, as if it
     * did not exist (ids are not secret; who has which is). */
    {OP_REVOKE_ONE, C_ADMIN, OK_, 204},
    {OP_REVOKE_ONE, C_WITH, OK_, 204},
    {OP_REVOKE_ONE, C_WITHOUT, DENIED, 403},
    {OP_REVOKE_ONE, C_OTHER, TOKEND_NOT_FOUND, 404},
    {OP_REVOKE_ONE, C_EXPIRED, UNAUTH, 401},
    {OP_REVOKE_ONE, C_REVOKED, UNAUTH, 401},
    {OP_REVOKE_ONE, C_NONE, UNAUTH, 401},

    /* DELETE /v1/tokens always acts on the caller's own owner: REST cannot
     * name another owner, even for an admin. So over REST:
     * - admin: the cell uses an admin token whose owner is T (made by the
     *   init admin); 204 and T's tokens are gone;
     * - other owner: the call revokes the other owner's own tokens (204)
     *   and T's target must survive; that is the cell's assertion.
     * Over RPC both name T explicitly. */
    {OP_REVOKE_ALL, C_ADMIN, OK_, 204},
    {OP_REVOKE_ALL, C_WITH, OK_, 204},
    {OP_REVOKE_ALL, C_WITHOUT, DENIED, 403},
    {OP_REVOKE_ALL, C_OTHER, DENIED, 204},
    {OP_REVOKE_ALL, C_EXPIRED, UNAUTH, 401},
    {OP_REVOKE_ALL, C_REVOKED, UNAUTH, 401},
    {OP_REVOKE_ALL, C_NONE, UNAUTH, 401},

    /* A token cannot hand out more than it has: abilities ["orders:write"]
     * (the caller has orders:read), or expires_in 7200 (the caller expires
     * in 3600). The admin is bound by neither. */
    {OP_CREATE_WIDER, C_ADMIN, OK_, 201},
    {OP_CREATE_WIDER, C_WITH, DENIED, 403},
    {OP_CREATE_LONGER, C_ADMIN, OK_, 201},
    {OP_CREATE_LONGER, C_WITH, DENIED, 403},

    /* DELETE /v1/tokens/{id} of an id no token has. A caller without
     * tokens:write is refused before the id is looked at, as for an id
     * of its own owner (revoke-one above): the answer tells nothing
     * about which ids exist. */
    {OP_REVOKE_NONE, C_ADMIN, TOKEND_NOT_FOUND, 404},
    {OP_REVOKE_NONE, C_WITH, TOKEND_NOT_FOUND, 404},
    {OP_REVOKE_NONE, C_WITHOUT, DENIED, 403},
    {OP_REVOKE_NONE, C_OTHER, TOKEND_NOT_FOUND, 404},
    {OP_REVOKE_NONE, C_EXPIRED, UNAUTH, 401},
    {OP_REVOKE_NONE, C_REVOKED, UNAUTH, 401},
    {OP_REVOKE_NONE, C_NONE, UNAUTH, 401},

    /* GET /v1/tokens/{id}: the rule of list (tokens:read), and another
     * owner's id is NOT_FOUND as in revoke-one. */
    {OP_GET, C_ADMIN, OK_, 200},
    {OP_GET, C_WITH, OK_, 200},
    {OP_GET, C_WITHOUT, DENIED, 403},
    {OP_GET, C_OTHER, TOKEND_NOT_FOUND, 404},
    {OP_GET, C_EXPIRED, UNAUTH, 401},
    {OP_GET, C_REVOKED, UNAUTH, 401},
    {OP_GET, C_NONE, UNAUTH, 401},
};

/* A well-formed id that no token has. */
#define NO_SUCH_ID "NoSuchTokenId000"

#define N_CELLS (sizeof(cells) / sizeof(cells[0]))

enum { VIA_RPC, VIA_REST };
static const char *const path_names[] = {"RPC", "REST"};

/* One cell on one path: its own owner, target and caller. */
typedef struct authz_case {
    char owner[64];
    char target[TOK], target_id[TOK];
    char cred[TOK]; /* "" for none */
} authz_case;

static bool is_create(authz_op op) {
    return op == OP_CREATE || op == OP_CREATE_WIDER || op == OP_CREATE_LONGER;
}

static bool is_revoke(authz_op op) {
    return op == OP_REVOKE_ONE || op == OP_REVOKE_ALL;
}

/* Whether an allowed call of this cell on this path removes the target. */
static bool hits_target(const authz_cell *c, int path) {
    return is_revoke(c->op) &&
           !(path == VIA_REST && c->op == OP_REVOKE_ALL && c->caller == C_OTHER);
}

static const char *ability_asked(authz_op op) {
    return op == OP_CREATE_WIDER ? "orders:write" : "orders:read";
}

static int64_t expiry_asked(authz_op op) {
    return op == OP_CREATE_LONGER ? 7200 : 600;
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Makes k's owner, target and caller; returns when an expiring caller was
 * made (else 0). */
static double prepare(tokend_client *admin, const char *admin_token, const authz_cell *c,
                      int path, size_t index, authz_case *k) {
    static const char *const target_abilities[] = {"orders:read"};
    bool reads = c->op == OP_LIST || c->op == OP_GET;
    const char *right = reads ? "tokens:read" : "tokens:write";
    const char *other_right = reads ? "tokens:write" : "tokens:read";
    const char *with[] = {right, "orders:read"};
    const char *without[] = {other_right, "orders:read"};
    static const char *const other[] = {"tokens:read", "tokens:write", "orders:read"};
    static const char *const admin_ab[] = {"tokend:admin"};
    char id[TOK];
    double expiring_at = 0;

    snprintf(k->owner, sizeof(k->owner), "partner:t%zu%c", index, "rh"[path]);
    harness_create(admin, k->owner, "target", target_abilities, 1, 0, k->target,
                   sizeof(k->target), k->target_id, sizeof(k->target_id));
    switch (c->caller) {
        case C_ADMIN:
            if (path == VIA_REST && c->op == OP_REVOKE_ALL) {
                /* See the table: REST revoke-all is the caller's owner. */
                harness_create(admin, k->owner, "admin of T", admin_ab, 1, 0, k->cred,
                               sizeof(k->cred), NULL, 0);
            } else {
                snprintf(k->cred, sizeof(k->cred), "%s", admin_token);
            }
            break;
        case C_WITH:
            harness_create(admin, k->owner, "with", with, 2, is_create(c->op) ? 3600 : 0,
                           k->cred, sizeof(k->cred), NULL, 0);
            break;
        case C_WITHOUT:
            harness_create(admin, k->owner, "without", without, 2, 0, k->cred,
                           sizeof(k->cred), NULL, 0);
            break;
        case C_OTHER: {
            char other_owner[64];
            snprintf(other_owner, sizeof(other_owner), "partner:o%zu%c", index,
                     "rh"[path]);
            harness_create(admin, other_owner, "other", other, 3, 0, k->cred,
                           sizeof(k->cred), NULL, 0);
            break;
        }
        case C_EXPIRED:
            harness_create(admin, k->owner, "expired", with, 2, 1, k->cred,
                           sizeof(k->cred), NULL, 0);
            expiring_at = mono_s();
            break;
        case C_REVOKED:
            harness_create(admin, k->owner, "revoked", with, 2, 0, k->cred,
                           sizeof(k->cred), id, sizeof(id));
            REQUIRE(tokend_revoke_id(admin, NULL, id, NULL, NULL) == TOKEND_OK);
            break;
        case C_NONE:
            k->cred[0] = '\0';
            break;
    }
    return expiring_at;
}

#define CELL_FAIL(c, path, ...)                                              \
    do {                                                                     \
        char what_[512];                                                     \
        snprintf(what_, sizeof(what_), __VA_ARGS__);                         \
        test_fail(__FILE__, __LINE__, "%s x %s x %s: %s", op_names[(c)->op], \
                  caller_names[(c)->caller], path_names[path], what_);       \
    } while (0)

/* Runs c over libtokend with k's credential. */
static void run_rpc(tokend_client *cl, const authz_cell *c, const authz_case *k) {
    tokend_call call = {.credential = k->cred[0] != '\0' ? k->cred : NULL};
    tokend_error err = {0};
    int got = TOKEND_INTERNAL;
    const char *asked[] = {ability_asked(c->op)};
    switch (c->op) {
        case OP_LIST: {
            tokend_token_page page;
            got = tokend_list(cl, &call, k->owner, 0, NULL, &page, &err);
            if (got == TOKEND_OK) {
                bool seen = false;
                for (size_t i = 0; i < page.n_tokens; i++) {
                    seen = seen || strcmp(page.tokens[i].id, k->target_id) == 0;
                }
                if (!seen) {
                    CELL_FAIL(c, VIA_RPC, "listing lacks the target %s", k->target_id);
                }
                tokend_token_page_free(&page);
            }
            break;
        }
        case OP_CREATE:
        case OP_CREATE_WIDER:
        case OP_CREATE_LONGER: {
            tokend_create_params params = {.owner = k->owner,
                                           .name = "made",
                                           .abilities = asked,
                                           .n_abilities = 1,
                                           .expires_in_seconds = expiry_asked(c->op)};
            tokend_created created;
            got = tokend_create(cl, &call, &params, &created, &err);
            if (got == TOKEND_OK) {
                if (strcmp(created.info.owner, k->owner) != 0) {
                    CELL_FAIL(c, VIA_RPC, "created for owner %s, want %s",
                              created.info.owner, k->owner);
                }
                tokend_created_free(&created);
            }
            break;
        }
        case OP_REVOKE_ONE:
            got = tokend_revoke_id(cl, &call, k->target_id, NULL, &err);
            break;
        case OP_REVOKE_ALL:
            got = tokend_revoke_owner(cl, &call, k->owner, NULL, &err);
            break;
        case OP_REVOKE_NONE:
            got = tokend_revoke_id(cl, &call, NO_SUCH_ID, NULL, &err);
            break;
        case OP_GET: {
            tokend_token_info info;
            got = tokend_get(cl, &call, k->target_id, &info, &err);
            if (got == TOKEND_OK) {
                if (strcmp(info.id, k->target_id) != 0 ||
                    strcmp(info.owner, k->owner) != 0) {
                    CELL_FAIL(c, VIA_RPC, "got token %s of %s, want %s of %s", info.id,
                              info.owner, k->target_id, k->owner);
                }
                tokend_token_info_free(&info);
            }
            break;
        }
    }
    if (got != c->want_rpc) {
        CELL_FAIL(c, VIA_RPC, "got %s (%s), want %s", tokend_status_name(got),
                  err.message, tokend_status_name(c->want_rpc));
    }
}

/* The string member `key` of r's problem body ("code", "detail"), or "". */
static void problem_string(const http_res *r, const char *key, char *out, size_t size) {
    json_t *doc = json_loads(r->body, 0, NULL);
    json_t *v = doc != NULL ? json_object_get(doc, key) : NULL;
    snprintf(out, size, "%s", json_is_string(v) ? json_string_value(v) : "");
    json_decref(doc);
}

/* Runs c over the gateway at `base` with k's credential. */
static void run_rest(const char *base, const authz_cell *c, const authz_case *k) {
    char url[512], auth[TOK + 32], body[512];
    const char *args[16];
    size_t n = 0;
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", k->cred);
    if (k->cred[0] != '\0') {
        args[n++] = "-H";
        args[n++] = auth;
    }
    switch (c->op) {
        case OP_LIST:
            snprintf(url, sizeof(url), "%s/v1/tokens?owner=%s", base, k->owner);
            break;
        case OP_CREATE:
        case OP_CREATE_WIDER:
        case OP_CREATE_LONGER:
            snprintf(url, sizeof(url), "%s/v1/tokens", base);
            snprintf(body, sizeof(body),
                     "{\"name\":\"made\",\"owner\":\"%s\",\"abilities\":[\"%s\"],"
                     "\"expires_in\":%lld}",
                     k->owner, ability_asked(c->op), (long long)expiry_asked(c->op));
            args[n++] = "-X";
            args[n++] = "POST";
            args[n++] = "-H";
            args[n++] = "Content-Type: application/json";
            args[n++] = "--data";
            args[n++] = body;
            break;
        case OP_REVOKE_ONE:
            snprintf(url, sizeof(url), "%s/v1/tokens/%s", base, k->target_id);
            args[n++] = "-X";
            args[n++] = "DELETE";
            break;
        case OP_REVOKE_ALL:
            snprintf(url, sizeof(url), "%s/v1/tokens", base);
            args[n++] = "-X";
            args[n++] = "DELETE";
            break;
        case OP_REVOKE_NONE:
            snprintf(url, sizeof(url), "%s/v1/tokens/" NO_SUCH_ID, base);
            args[n++] = "-X";
            args[n++] = "DELETE";
            break;
        case OP_GET:
            snprintf(url, sizeof(url), "%s/v1/tokens/%s", base, k->target_id);
            break;
    }
    args[n++] = url;
    args[n] = NULL;
    http_res r = {0};
    int got = curl_call(&r, args);
    char code[64];
    problem_string(&r, "code", code, sizeof(code));
    if (got != c->want_http) {
        CELL_FAIL(c, VIA_REST, "got HTTP %d %s, want %d", got, code, c->want_http);
    } else if (got >= 400) {
        /* The problem code is tokend's status, but for a missing bearer,
         * which the gateway answers itself. */
        const char *want =
            c->caller == C_NONE ? "MISSING_TOKEN" : tokend_status_name(c->want_rpc);
        if (strcmp(code, want) != 0) {
            CELL_FAIL(c, VIA_REST, "got code \"%s\", want \"%s\"", code, want);
        }
    } else if ((c->op == OP_LIST || c->op == OP_GET) &&
               !test_contains(r.body, k->target_id)) {
        CELL_FAIL(c, VIA_REST, "listing lacks the target %s", k->target_id);
    } else if (is_create(c->op)) {
        json_t *doc = json_loads(r.body, 0, NULL);
        json_t *owner = doc != NULL ? json_object_get(doc, "owner") : NULL;
        if (!json_is_string(owner) || strcmp(json_string_value(owner), k->owner) != 0) {
            CELL_FAIL(c, VIA_REST, "created token's owner is not %s", k->owner);
        }
        json_decref(doc);
    }
    res_free(&r);
}

/* The target must be gone exactly when an allowed call revoked it. */
static void check_target(tokend_client *admin, const authz_cell *c, int path,
                         const authz_case *k) {
    bool allowed = path == VIA_RPC ? c->want_rpc == TOKEND_OK : c->want_http < 300;
    int want = allowed && hits_target(c, path) ? TOKEND_NOT_FOUND : TOKEND_OK;
    int got =
        tokend_verify(admin, NULL, k->target, NULL, 0, TOKEND_ABILITIES_ALL, NULL, NULL);
    if (got != want) {
        CELL_FAIL(c, path, "afterwards the target verifies %s, want %s",
                  tokend_status_name(got), tokend_status_name(want));
    }
}

/* Starts tokend and a gateway in front of it; returns an admin client. */
static tokend_client *start_both(tokend_proc *p, gateway_proc *g) {
    memset(p, 0, sizeof(*p));
    memset(g, 0, sizeof(*g));
    harness_init(p);
    REQUIRE(harness_start(p));
    REQUIRE(harness_gateway_start(g, p->url, 0));
    return harness_client(p, p->admin);
}

TEST(authz_matrix_rpc_and_rest) {
    tokend_proc p;
    gateway_proc g;
    tokend_client *admin = start_both(&p, &g);
    tokend_client *anon = harness_client(&p, NULL);

    static authz_case cases[N_CELLS][2];
    double last_expiring = 0;
    for (size_t i = 0; i < N_CELLS; i++) {
        for (int path = VIA_RPC; path <= VIA_REST; path++) {
            double t = prepare(admin, p.admin, &cells[i], path, i, &cases[i][path]);
            if (t > last_expiring) {
                last_expiring = t;
            }
        }
    }
    /* One wait for every expired caller (1 s lifetimes). */
    double wait = last_expiring + 1.1 - mono_s();
    if (wait > 0) {
        usleep((useconds_t)(wait * 1e6));
    }

    for (size_t i = 0; i < N_CELLS; i++) {
        run_rpc(anon, &cells[i], &cases[i][VIA_RPC]);
        check_target(admin, &cells[i], VIA_RPC, &cases[i][VIA_RPC]);
        run_rest(g.base, &cells[i], &cases[i][VIA_REST]);
        check_target(admin, &cells[i], VIA_REST, &cases[i][VIA_REST]);
    }

    tokend_close(anon);
    tokend_close(admin);
    CHECK_INT(harness_gateway_stop(&g), 0);
    harness_stop(&p);
}

/* Ability injection. A partner token with orders:* and the rights to
 * create and list asks for one "ability" that is a comma-separated list:
 * orders:* covers it by prefix, and X-Token-Abilities of the new token
 * would have read as abilities nobody granted (tokend:admin among them).
 * Refused through the gateway (before any RPC: tokend's log shows no
 * call) and through libtokend, nothing created; a requested ability with
 * a comma is refused on both paths too. */
TEST(authz_ability_injection_is_refused) {
    tokend_proc p;
    gateway_proc g;
    tokend_client *admin = start_both(&p, &g);
    static const char *const partner_abilities[] = {"orders:*", "tokens:write",
                                                    "tokens:read"};
    char partner[TOK], partner_id[TOK];
    harness_create(admin, "partner:acme", "partner", partner_abilities, 3, 0, partner,
                   sizeof(partner), partner_id, sizeof(partner_id));
    static const char injected[] = "orders:x,invoices:write,billing:*,tokend:admin";
    static const char create_detail[] =
        "abilities[0]: \"orders:x,invoices:write,billing:*,tokend:admin\" is not an "
        "ability: ',' at offset 8 is not allowed";

    char auth[TOK + 32], url[512], body[256], code[64], detail[512];
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", partner);
    snprintf(url, sizeof(url), "%s/v1/tokens", g.base);
    snprintf(body, sizeof(body), "{\"name\":\"c\",\"abilities\":[\"%s\"]}", injected);
    http_res r = {0};
    CHECK_INT(CURL(&r, "-X", "POST", "-H", auth, "-H", "Content-Type: application/json",
                   "--data", body, url),
              400);
    problem_string(&r, "code", code, sizeof(code));
    problem_string(&r, "detail", detail, sizeof(detail));
    CHECK_STR(code, "INVALID_ARGUMENT");
    CHECK(test_contains(detail, create_detail));
    snprintf(url, sizeof(url), "%s/v1/auth?ability=orders:read,invoices:write", g.base);
    CHECK_INT(CURL(&r, "-H", auth, url), 400);
    problem_string(&r, "code", code, sizeof(code));
    problem_string(&r, "detail", detail, sizeof(detail));
    CHECK_STR(code, "INVALID_ARGUMENT");
    CHECK(test_contains(detail,
                        "ability[0]: \"orders:read,invoices:write\" is not an ability"));
    CHECK(!test_contains(r.headers, "X-Token-Abilities"));
    char *log = harness_read_file(p.log_path);
    CHECK(log != NULL && !test_contains(log, "is not an ability"));
    free(log);

    tokend_client *as_partner = harness_client(&p, partner);
    const char *create_abilities[] = {injected};
    tokend_create_params params = {
        .name = "c", .abilities = create_abilities, .n_abilities = 1};
    tokend_created created;
    tokend_error err = {0};
    CHECK_INT(tokend_create(as_partner, NULL, &params, &created, &err),
              TOKEND_INVALID_ARGUMENT);
    CHECK(test_contains(err.message, create_detail));
    const char *asked[] = {"orders:read,invoices:write"};
    CHECK_INT(tokend_verify(as_partner, NULL, partner, asked, 1, TOKEND_ABILITIES_ALL,
                            NULL, &err),
              TOKEND_INVALID_ARGUMENT);
    CHECK(test_contains(
        err.message, "abilities[0]: \"orders:read,invoices:write\" is not an ability"));

    /* Nothing created: the owner has the partner token alone. */
    tokend_token_page page;
    REQUIRE(tokend_list(admin, NULL, "partner:acme", 0, NULL, &page, NULL) == TOKEND_OK);
    CHECK_INT(page.n_tokens, 1);
    CHECK(page.n_tokens < 1 || strcmp(page.tokens[0].id, partner_id) == 0);
    tokend_token_page_free(&page);

    /* The honest request still works, and its header is its abilities. */
    snprintf(url, sizeof(url), "%s/v1/tokens", g.base);
    CHECK_INT(CURL(&r, "-X", "POST", "-H", auth, "-H", "Content-Type: application/json",
                   "--data", "{\"name\":\"c\",\"abilities\":[\"orders:x\",\"orders:y\"]}",
                   url),
              201);
    json_t *doc = json_loads(r.body, 0, NULL);
    const char *made = json_string_value(json_object_get(doc, "token"));
    REQUIRE(made != NULL);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", made);
    json_decref(doc);
    snprintf(url, sizeof(url), "%s/v1/auth?ability=orders:x", g.base);
    CHECK_INT(CURL(&r, "-H", auth, url), 200);
    CHECK(test_contains(r.headers, "X-Token-Abilities: orders:x,orders:y\r\n"));
    res_free(&r);

    tokend_close(as_partner);
    tokend_close(admin);
    CHECK_INT(harness_gateway_stop(&g), 0);
    harness_stop(&p);
}

/* No existence oracle in revoke by id: a caller of its owner without
 * tokens:write gets one answer, status and message alike, over RPC and
 * through the gateway, for an id of its own owner, an id of another
 * owner and an id no token has; and every token stays. (Before, its own
 * owner's id was 403 and the others 404: it could tell its owner's ids
 * from the rest.) */
TEST(authz_revoke_without_the_right_tells_no_id_from_another) {
    tokend_proc p;
    gateway_proc g;
    tokend_client *admin = start_both(&p, &g);
    static const char *const reader_abilities[] = {"tokens:read", "orders:read"};
    static const char *const target_abilities[] = {"orders:read"};
    char reader[TOK], mine[TOK], mine_id[TOK], theirs[TOK], theirs_id[TOK];
    harness_create(admin, "partner:r", "reader", reader_abilities, 2, 0, reader, TOK,
                   NULL, 0);
    harness_create(admin, "partner:r", "mine", target_abilities, 1, 0, mine, TOK, mine_id,
                   TOK);
    harness_create(admin, "partner:s", "theirs", target_abilities, 1, 0, theirs, TOK,
                   theirs_id, TOK);
    const char *ids[] = {mine_id, theirs_id, NO_SUCH_ID};
    const char *what[] = {"its own owner's id", "another owner's id", "an id of none"};

    tokend_client *as_reader = harness_client(&p, reader);
    tokend_error first = {0};
    for (size_t i = 0; i < 3; i++) {
        tokend_error err = {0};
        int rv = tokend_revoke_id(as_reader, NULL, ids[i], NULL, &err);
        if (rv != TOKEND_PERMISSION_DENIED ||
            (i > 0 && strcmp(err.message, first.message) != 0)) {
            test_fail(__FILE__, __LINE__, "RPC revoke of %s: %s \"%s\"; want %s \"%s\"",
                      what[i], tokend_status_name(rv), err.message,
                      tokend_status_name(TOKEND_PERMISSION_DENIED),
                      i > 0 ? first.message : "(any)");
        }
        if (i == 0) {
            first = err;
        }
    }

    char auth[TOK + 32], url[512], code[64], detail[512], first_detail[512] = "";
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", reader);
    http_res r = {0};
    for (size_t i = 0; i < 3; i++) {
        snprintf(url, sizeof(url), "%s/v1/tokens/%s", g.base, ids[i]);
        int status = CURL(&r, "-X", "DELETE", "-H", auth, url);
        problem_string(&r, "code", code, sizeof(code));
        problem_string(&r, "detail", detail, sizeof(detail));
        if (status != 403 || strcmp(code, "PERMISSION_DENIED") != 0 ||
            (i > 0 && strcmp(detail, first_detail) != 0)) {
            test_fail(__FILE__, __LINE__,
                      "DELETE of %s: %d %s \"%s\"; want 403 PERMISSION_DENIED \"%s\"",
                      what[i], status, code, detail, i > 0 ? first_detail : "(any)");
        }
        if (i == 0) {
            snprintf(first_detail, sizeof(first_detail), "%s", detail);
        }
    }
    res_free(&r);
    CHECK_STR(first_detail, first.message);
    CHECK_INT(tokend_verify(admin, NULL, mine, NULL, 0, TOKEND_ABILITIES_ALL, NULL, NULL),
              TOKEND_OK);
    CHECK_INT(
        tokend_verify(admin, NULL, theirs, NULL, 0, TOKEND_ABILITIES_ALL, NULL, NULL),
        TOKEND_OK);
    tokend_close(as_reader);
    tokend_close(admin);
    CHECK_INT(harness_gateway_stop(&g), 0);
    harness_stop(&p);
}
