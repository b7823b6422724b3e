/*
 * proxy.h — which peers are trusted proxies (--trusted-proxy CIDR), and the
 * RequestContext (tokend.proto) of an HTTP request: the request itself, or,
 * on /v1/auth from a trusted proxy, the request the proxy is asking about.
 *
 * Forwarded headers are believed only from a trusted peer; from any other
 * the peer's address is the client and the request's own method and path
 * are the context's. Every value taken from a header is made to fit the
 * contract's bounds here, so a context the gateway sends is never refused:
 * a path or user agent too long is cut (at a UTF-8 boundary), a method
 * that is not an HTTP token, text with control characters and an address
 * that does not parse are left out. Nothing here allocates.
 */
#ifndef GATEWAY_PROXY_H
#define GATEWAY_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <netinet/in.h>

#include "http.h"
#include "opt.h"
#include "route.h"
#include "tokend.h"
#include "tokend.pb-c.h"

/* One trusted network; IPv4 ones are kept as IPv4-mapped IPv6 (::ffff:0:0/96),
 * so one comparison serves both families. */
typedef struct proxy_net {
    uint8_t addr[16];
    unsigned bits; /* prefix length over the 128 bits */
} proxy_net;

/* The trusted proxies: at most as many as a list option holds. */
typedef struct proxy_trust {
    proxy_net nets[OPT_LIST_MAX];
    size_t n;
} proxy_trust;

/* The default of --trusted-proxy: the loopback networks. */
#define PROXY_TRUST_DEFAULT "127.0.0.0/8,::1/128"

/* Reads cidrs[0..n) ("10.0.0.0/8", "2001:db8::/32", or an address alone
 * for one host) into *out. Returns TOKEND_OK, or TOKEND_INVALID_ARGUMENT
 * with err naming the value and why ("--trusted-proxy \"10.0.0.1/8\" has
 * bits set past its prefix: 10.0.0.0/8?"). */
int proxy_trust_parse(const char *const *cidrs, size_t n, proxy_trust *out,
                      tokend_error *err);

/* Whether addr (16 bytes, IPv4 mapped) is in one of the trusted networks. */
bool proxy_trusted(const proxy_trust *t, const uint8_t addr[16]);

/* Parses text[0..len) as an IPv4 or IPv6 address into addr (16 bytes, IPv4
 * mapped). False if it is not one. */
bool proxy_addr_parse(const char *text, size_t len, uint8_t addr[16]);

/* A request's context, built in place: `wire` points at the request's own
 * strings (headers, path) where they fit, and at the buffers here only
 * for what had to be cut or rewritten. Valid while the request is. */
typedef struct proxy_context {
    Tokend__V1__RequestContext wire;
    char client_ip[INET6_ADDRSTRLEN];
    char path[ROUTE_PATH_MAX + 1];
    char user_agent[ROUTE_USER_AGENT_MAX + 1];
} proxy_context;

/* Fills *out with the context of `req` (t NULL: no peer is trusted). With
 * `forwarded` (GET /v1/auth, a forward-auth check) and a trusted peer, the
 * method and path are X-Original-Method/X-Original-URI (nginx) or
 * X-Forwarded-Method/X-Forwarded-Uri (Caddy, Traefik), else the request's
 * own. The client is, from a trusted peer, X-Real-IP, else the right-most
 * address of X-Forwarded-For that is not itself a trusted proxy (the
 * left-most when all are), else the peer; from any other peer, the peer.
 * The user agent is the request's User-Agent (a forward-auth proxy passes
 * the client's headers on). */
void proxy_context_fill(const proxy_trust *t, const http_request *req, bool forwarded,
                        proxy_context *out);

#endif /* GATEWAY_PROXY_H */
