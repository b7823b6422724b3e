/*
 * policy.h — the text forms of a token's rules and the pure checks a
 * Verify makes with them: rate limits ("100/1m"), quotas ("10000/month"),
 * client networks ("203.0.113.0/24", "2001:db8::/32") and routes
 * ("GET /orders/*").
 *
 * Status: this header is the interface the policy work codes against;
 * its implementation is not in this release yet (docs/policy.md).
 *
 * Shared by every side: tokenctl and the gateway parse what a user types
 * with the same functions tokend uses to check what it stores, so an
 * error message reads the same everywhere. Pure: no I/O, no allocation,
 * no clock.
 *
 * Grammar (docs/policy.md shows examples):
 *   rate     = [name "="] limit "/" window
 *   name     = 1*32 (ALPHA / DIGIT / "_" / "-" / ".")   ; default: the window
 *   limit    = 1..1000000000
 *   window   = [count] unit                 ; "1m", "15m", "1h", "1d", "s"
 *   unit     = "s" / "m" / "h" / "d"       ; window 1 s .. 31 d
 *   quota    = limit ["/" ("day" / "month")]   ; no period: never refilled
 *   network  = address ["/" bits]          ; IPv4 or IPv6; no bits: one host
 *   route    = method SP path-pattern
 *   method   = "*" / 1*16 (ALPHA)           ; stored upper-case
 *   path-pattern = "/" ... (at most 256 bytes), segments of
 *              pchar or "*", the last one may be "**"
 * A "*" path segment matches exactly one segment; a final "**" matches
 * any number of segments, none included ("/orders/**" covers "/orders"
 * and "/orders/1/items"). A pattern segment may also hold "*" beside
 * other text ("v*", "*.json"): then "*" matches any run of characters of
 * that one segment.
 */
#ifndef TOKEND_POLICY_H
#define TOKEND_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define POLICY_NAME_MAX 32
#define POLICY_LIMIT_MAX 1000000000ULL
#define POLICY_WINDOW_MAX_S (31LL * 86400)
#define POLICY_ROUTE_PATTERN_MAX 256 /* the path part */
#define POLICY_ROUTE_MAX (16 + 1 + POLICY_ROUTE_PATTERN_MAX)
#define POLICY_NETWORK_TEXT_MAX 49 /* "ffff:...:ffff/128" */
#define POLICY_MESSAGE_MAX 200     /* room for any message below, NUL included */

/* Per token (tokend.proto gives the same numbers). */
#define POLICY_RATE_LIMITS_MAX 8
#define POLICY_NETWORKS_MAX 64
#define POLICY_ROUTES_MAX 64

typedef struct policy_rate {
    char name[POLICY_NAME_MAX + 1];
    uint64_t limit;   /* calls per window, 1..POLICY_LIMIT_MAX */
    int64_t window_s; /* 1..POLICY_WINDOW_MAX_S */
} policy_rate;

typedef enum policy_refill {
    POLICY_REFILL_NEVER = 0,
    POLICY_REFILL_DAILY = 1,  /* at 00:00 UTC */
    POLICY_REFILL_MONTHLY = 2 /* at 00:00 UTC on the 1st */
} policy_refill;

typedef struct policy_network {
    uint8_t family;   /* 4 or 6 */
    uint8_t bits;     /* 0..32 or 0..128 */
    uint8_t addr[16]; /* network address, host bits zero; IPv4 in addr[0..4) */
} policy_network;

/* Each parser returns true and fills *out, or false with a message in
 * msg[0..cap) naming what is wrong, e.g.
 *   rate limit "100/1x": unknown unit 'x' (use s, m, h or d)
 * The message quotes at most the first 64 bytes of the input, bytes other
 * than printable ASCII as \xHH. */

/* "100/1m", "burst=10/1s", "5000/h". Without a name, the name is the
 * window as written canonically ("1m", "1h", "30s", "1d", "90s" for
 * "90s"; windows that are whole days, hours or minutes are named by that
 * unit: "60s" is "1m"). */
bool policy_rate_parse(const char *s, policy_rate *out, char *msg, size_t cap);

/* Writes the canonical text of a rate limit, "burst=10/1s" (the name is
 * left out when it equals the window's name), into out[0..cap). Returns
 * its length. */
size_t policy_rate_format(const policy_rate *r, char *out, size_t cap);

/* Writes the canonical window of `window_s` ("1m", "90s", "2h", "1d")
 * into out[0..cap); returns its length. */
size_t policy_window_format(int64_t window_s, char *out, size_t cap);

/* True if window_s and limit are within the bounds above and the name
 * matches the grammar. */
bool policy_rate_ok(const policy_rate *r, char *msg, size_t cap);

/* "10000/month", "500/day", "100000". */
bool policy_quota_parse(const char *s, uint64_t *limit, policy_refill *refill, char *msg,
                        size_t cap);

/* Writes "10000/month" (no suffix for POLICY_REFILL_NEVER). */
size_t policy_quota_format(uint64_t limit, policy_refill refill, char *out, size_t cap);

/* The start of the refill period holding now_ms (Unix ms, UTC), and the
 * start of the next one; for POLICY_REFILL_NEVER 0 and INT64_MAX. */
int64_t policy_refill_start(policy_refill refill, int64_t now_ms);
int64_t policy_refill_next(policy_refill refill, int64_t now_ms);

/* "10.0.0.0/8", "2001:db8::/32", "203.0.113.7" (a /32), "::1" (a /128).
 * Host bits past the prefix are refused ("10.0.0.1/8": did you mean
 * 10.0.0.0/8?), so what is stored is what was meant. An IPv4-mapped IPv6
 * network ("::ffff:10.0.0.0/104") is refused: write the IPv4 form. */
bool policy_network_parse(const char *s, policy_network *out, char *msg, size_t cap);

/* Writes the canonical text ("10.0.0.0/8", "2001:db8::/32") into
 * out[0..cap) (POLICY_NETWORK_TEXT_MAX + 1 holds any); returns its length. */
size_t policy_network_format(const policy_network *n, char *out, size_t cap);

/* True if the address `ip` (text, IPv4 or IPv6; an IPv4-mapped IPv6
 * address counts as its IPv4 form) lies in one of nets[0..n). False for a
 * NULL, empty or unparsable address. */
bool policy_networks_match(const policy_network *nets, size_t n, const char *ip);

/* Checks a route pattern ("GET /orders/*", "* /health") and writes its
 * canonical form (method upper-cased, repeated slashes collapsed) into
 * out[0..cap) (POLICY_ROUTE_MAX + 1 holds any). */
bool policy_route_parse(const char *s, char *out, size_t cap, char *msg, size_t cap_msg);

/* True if the request `method` and `path` (the request target as sent:
 * the query and fragment are ignored, an absolute-form target keeps only
 * its path) match one of the canonical patterns routes[0..n). A path that
 * could mean two things to the application behind is matched by no
 * pattern, so that a bound token is denied rather than let through: a
 * "." or ".." segment, a percent-encoded "/", "\\", "." or NUL
 * ("%2F", "%5C", "%2E", "%00"), a backslash, or a bad percent escape.
 * NULL or empty method or path match nothing. */
bool policy_routes_match(char *const *routes, size_t n, const char *method,
                         const char *path);

#endif /* TOKEND_POLICY_H */
