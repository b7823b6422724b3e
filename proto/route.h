/*
 * route.h — what a request context (tokend.proto's RequestContext) is
 * allowed to hold, and the route a request's method and path count under.
 *
 * Usage series count calls by route, not by path: "/orders/123" and
 * "/orders/456" are one route, "GET /orders/{id}". A path segment becomes
 * "{id}" when it is
 *   - numeric: 1 or more ASCII digits ("123");
 *   - UUID-like: 32 hex digits, bare or as 8-4-4-4-12 with hyphens;
 *   - a labelled number: [A-Za-z0-9_-] with 4 or more digits
 *     ("INV-2026001", "ord_93121"), while "v2", "sha256" and "oauth2" stay;
 *   - a long identifier: 16 or more of [A-Za-z0-9_-] with at least one
 *     digit (a base62 token id, a hash, a ULID) — words without a digit
 *     ("notificationsettings") stay as they are;
 *   - any segment of ROUTE_SEGMENT_LONG (38) bytes or more, whatever it
 *     holds: as long as a token's secret and checksum, so a token pasted
 *     into a URL never becomes a stored route.
 * The query and fragment are dropped, repeated slashes collapse, a
 * trailing slash goes (but "/" stays "/"), and an absolute-form target
 * ("https://host/x") keeps only its path. A route longer than ROUTE_MAX
 * bytes is cut at a segment boundary and ends in "/..." ("GET /x/..."). Pure
 * functions, no allocation, no I/O.
 */
#ifndef TOKEND_ROUTE_H
#define TOKEND_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "tokend.pb-c.h"

/* RequestContext bounds, in bytes (tokend.proto). */
#define ROUTE_METHOD_MAX 16
#define ROUTE_PATH_MAX 2048
#define ROUTE_CLIENT_IP_MAX 45
#define ROUTE_USER_AGENT_MAX 256

/* A segment this long is "{id}" whatever it holds (TOKEN_SECRET_LEN +
 * TOKEN_CHECKSUM_LEN). */
#define ROUTE_SEGMENT_LONG 38

/* The longest route route_normalise writes, in bytes, without its NUL. */
#define ROUTE_MAX 160

/* Checks a context against its bounds: method ASCII letters, digits or
 * "-_." (an HTTP token, at most 16); path and user agent UTF-8 without
 * control characters (at most 2048 and 256); client_ip an IPv4 or IPv6
 * address (at most 45). NULL is a valid (empty) context. On failure writes
 * the reason, naming the field under `where` ("context.client_ip: ..."),
 * into why[0..cap) and returns false. */
bool route_context_ok(const Tokend__V1__RequestContext *ctx, const char *where, char *why,
                      size_t cap);

/* Writes the route of `method` and `path` (either may be NULL or empty)
 * into out[0..cap): "GET /orders/{id}"; the path alone when there is no
 * method; "-" when there is neither. cap should be ROUTE_MAX + 1; a
 * smaller one cuts the route as above. Returns the route's length. */
size_t route_normalise(const char *method, const char *path, char *out, size_t cap);

/* Whether `seg` (len bytes, no '/') is a segment that counts as "{id}". */
bool route_segment_is_id(const char *seg, size_t len);

#endif /* TOKEND_ROUTE_H */
