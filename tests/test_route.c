/*
 * test_route.c — route normalisation and request-context bounds
 * (proto/route.h).
 */
#include <string.h>

#include "route.h"
#include "test.h"

static const char *route(const char *method, const char *path) {
    static char out[ROUTE_MAX + 1];
    route_normalise(method, path, out, sizeof(out));
    return out;
}

TEST(route_ids_become_one_route) {
    CHECK_STR(route("GET", "/orders/123"), "GET /orders/{id}");
    CHECK_STR(route("GET", "/orders/456"), "GET /orders/{id}");
    CHECK_STR(route("GET", "/orders/456?expand=lines#x"), "GET /orders/{id}");
    CHECK_STR(route("DELETE", "/users/0f8fad5b-d9cb-469f-a165-70867728950e/keys"),
              "DELETE /users/{id}/keys");
    CHECK_STR(route("GET", "/blobs/0f8fad5bd9cb469fa16570867728950e"), "GET /blobs/{id}");
    /* A tokend token id (16 base62) and a ULID are ids; words are not. */
    CHECK_STR(route("GET", "/v1/tokens/3kTMd9Qx0aBcDeFg"), "GET /v1/tokens/{id}");
    CHECK_STR(route("GET", "/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV"), "GET /runs/{id}");
    CHECK_STR(route("GET", "/account/notificationsettings"),
              "GET /account/notificationsettings");
    CHECK_STR(route("GET", "/v2/orders"), "GET /v2/orders");
    CHECK_STR(route("GET", "/invoices/INV-2026001"), "GET /invoices/{id}");
    CHECK_STR(route("GET", "/orders/ord_93121/lines"), "GET /orders/{id}/lines");
    CHECK_STR(route("GET", "/hash/sha256/oauth2"), "GET /hash/sha256/oauth2");
    CHECK(!route_segment_is_id("v2", 2));
    CHECK(!route_segment_is_id("", 0));
    CHECK(route_segment_is_id("7", 1));
    CHECK(!route_segment_is_id("billing-address-settings", 24));
    CHECK(!route_segment_is_id("abc123", 6));
    /* A token in a URL, digits or none, never becomes a route. */
    CHECK_STR(route("GET", "/hook/tkd_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL"),
              "GET /hook/{id}");
    CHECK_STR(route("GET", "/a/Bearer%20tkd_abcdefghijklmnopqrstuvwxyzABCDEF"),
              "GET /a/{id}");
}

TEST(route_shapes_of_paths) {
    CHECK_STR(route("GET", ""), "GET /");
    CHECK_STR(route("GET", "/"), "GET /");
    CHECK_STR(route("GET", "//orders//12/"), "GET /orders/{id}");
    CHECK_STR(route("GET", "?q=1"), "GET /");
    CHECK_STR(route("GET", "https://api.example.com/orders/9?x"), "GET /orders/{id}");
    CHECK_STR(route("GET", "https://api.example.com"), "GET /");
    CHECK_STR(route("", "/orders/9"), "/orders/{id}");
    CHECK_STR(route(NULL, NULL), "-");
    CHECK_STR(route("", ""), "-");
}

TEST(route_long_paths_are_cut_at_a_segment) {
    char path[4096] = "";
    for (int i = 0; i < 100; i++) {
        strcat(path, "/segment");
    }
    const char *r = route("GET", path);
    CHECK(strlen(r) <= ROUTE_MAX);
    CHECK(strncmp(r, "GET /segment/segment", 20) == 0);
    CHECK(strcmp(r + strlen(r) - 4, "/...") == 0);
    /* One segment too long for a route on its own is an id. */
    char one[600] = "/";
    memset(one + 1, 'a', 500);
    one[501] = '\0';
    CHECK_STR(route("GET", one), "GET /{id}");
    /* A small buffer cuts, never overruns. */
    char small[12];
    size_t n = route_normalise("GET", "/orders/123/lines", small, sizeof(small));
    CHECK(n < sizeof(small));
    CHECK_INT(strlen(small), n);
}

TEST(route_context_bounds_name_the_field) {
    char why[160];
    CHECK(route_context_ok(NULL, "context", why, sizeof(why)));
    Tokend__V1__RequestContext ctx = TOKEND__V1__REQUEST_CONTEXT__INIT;
    ctx.method = "GET";
    ctx.path = "/orders/1?x=2";
    ctx.client_ip = "203.0.113.7";
    ctx.user_agent = "acme-erp/1.0";
    CHECK(route_context_ok(&ctx, "context", why, sizeof(why)));
    ctx.client_ip = "2001:db8::1";
    CHECK(route_context_ok(&ctx, "context", why, sizeof(why)));
    ctx.client_ip = "";
    CHECK(route_context_ok(&ctx, "context", why, sizeof(why)));
    ctx.client_ip = "203.0.113.300";
    CHECK(!route_context_ok(&ctx, "context", why, sizeof(why)));
    CHECK_STR(why, "context.client_ip: not an IPv4 or IPv6 address");
    ctx.client_ip = "203.0.113.7";
    ctx.method = "GET /x";
    CHECK(!route_context_ok(&ctx, "context", why, sizeof(why)));
    CHECK(strncmp(why, "context.method: ", 16) == 0);
    ctx.method = "AVERYLONGMETHODNAME";
    CHECK(!route_context_ok(&ctx, "context", why, sizeof(why)));
    CHECK_STR(why, "context.method: longer than 16 bytes");
    ctx.method = "GET";
    ctx.path = "/a\nb";
    CHECK(!route_context_ok(&ctx, "verify.context", why, sizeof(why)));
    CHECK(strncmp(why, "verify.context.path: ", 21) == 0);
    static char longpath[2100];
    memset(longpath, 'a', 2049);
    ctx.path = longpath;
    CHECK(!route_context_ok(&ctx, "context", why, sizeof(why)));
    CHECK_STR(why, "context.path: longer than 2048 bytes");
    ctx.path = "/";
    static char ua[300];
    memset(ua, 'u', 257);
    ctx.user_agent = ua;
    CHECK(!route_context_ok(&ctx, "context", why, sizeof(why)));
    CHECK_STR(why, "context.user_agent: longer than 256 bytes");
}
