/*
 * proxy.c — trusted proxies and a request's context. See proxy.h.
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "rpc.h"

/* X-Forwarded-For headers of one request looked at, at most (the last
 * ones: the right-most addresses are the ones a proxy of ours added). */
#define PROXY_XFF_HEADERS 8

/* The IPv4-mapped prefix ::ffff:0:0/96. */
static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool is_v4_mapped(const uint8_t addr[16]) {
    return memcmp(addr, v4_mapped, sizeof v4_mapped) == 0;
}

bool proxy_addr_parse(const char *text, size_t len, uint8_t addr[16]) {
    char buf[INET6_ADDRSTRLEN];
    if (len == 0 || len >= sizeof buf) {
        return false;
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    struct in_addr v4;
    if (inet_pton(AF_INET, buf, &v4) == 1) {
        memcpy(addr, v4_mapped, sizeof v4_mapped);
        memcpy(addr + 12, &v4, 4);
        return true;
    }
    return inet_pton(AF_INET6, buf, addr) == 1;
}

/* The address as text: dotted quad for an IPv4(-mapped) one. */
static void addr_text(const uint8_t addr[16], char out[INET6_ADDRSTRLEN]) {
    const char *ok = is_v4_mapped(addr)
                         ? inet_ntop(AF_INET, addr + 12, out, INET6_ADDRSTRLEN)
                         : inet_ntop(AF_INET6, addr, out, INET6_ADDRSTRLEN);
    if (ok == NULL) {
        out[0] = '\0';
    }
}

/* The peer's address, IPv4 mapped; false when it has none. */
static bool peer_addr(const http_request *req, uint8_t addr[16]) {
    const struct sockaddr *sa = http_peer(req);
    if (sa == NULL) {
        return false;
    }
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        memcpy(addr, v4_mapped, sizeof v4_mapped);
        memcpy(addr + 12, &in->sin_addr, 4);
        return true;
    }
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
    memcpy(addr, &in6->sin6_addr, 16);
    return true;
}

/* ------------------------------------------------------------------------
 * Trusted networks. */

static bool prefix_match(const uint8_t *a, const uint8_t *b, unsigned bits) {
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0) {
        return false;
    }
    if (rest == 0) {
        return true;
    }
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

/* Reads one CIDR into *net. */
static int net_parse(const char *cidr, proxy_net *net, tokend_error *err) {
    const char *slash = strchr(cidr, '/');
    size_t addr_len = slash != NULL ? (size_t)(slash - cidr) : strlen(cidr);
    if (!proxy_addr_parse(cidr, addr_len, net->addr)) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "--trusted-proxy \"%.64s\" is not an address or a network "
                         "(10.0.0.0/8, 2001:db8::/32, 192.0.2.7)",
                         cidr);
    }
    bool v4 = is_v4_mapped(net->addr) && memchr(cidr, ':', addr_len) == NULL;
    unsigned max = v4 ? 32 : 128;
    long long prefix = max;
    if (slash != NULL && opt_parse_int(slash + 1, 0, max, &prefix, NULL) != TOKEND_OK) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "--trusted-proxy \"%.64s\": the prefix length after '/' must be "
                         "a whole number from 0 to %u",
                         cidr, max);
    }
    net->bits = (unsigned)prefix + (v4 ? 96 : 0);
    /* Bits past the prefix are most likely a typo for another network. */
    proxy_net masked = *net;
    for (unsigned i = net->bits; i < 128; i++) {
        masked.addr[i / 8] &= (uint8_t) ~(0x80u >> (i % 8));
    }
    if (memcmp(masked.addr, net->addr, 16) != 0) {
        char shown[INET6_ADDRSTRLEN];
        addr_text(masked.addr, shown);
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "--trusted-proxy \"%.64s\" has bits set past its prefix: "
                         "%s/%lld?",
                         cidr, shown, prefix);
    }
    return TOKEND_OK;
}

int proxy_trust_parse(const char *const *cidrs, size_t n, proxy_trust *out,
                      tokend_error *err) {
    memset(out, 0, sizeof *out);
    if (n > OPT_LIST_MAX) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "at most %d --trusted-proxy networks", OPT_LIST_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        int rv = net_parse(cidrs[i], &out->nets[i], err);
        if (rv != TOKEND_OK) {
            return rv;
        }
    }
    out->n = n;
    return TOKEND_OK;
}

bool proxy_trusted(const proxy_trust *t, const uint8_t addr[16]) {
    for (size_t i = 0; t != NULL && i < t->n; i++) {
        if (prefix_match(addr, t->nets[i].addr, t->nets[i].bits)) {
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------------------
 * The context. */

/* The HTTP method `m` if it is one the contract takes, else NULL. */
static char *method_fit(const char *m) {
    if (m == NULL) {
        return NULL;
    }
    size_t len = strlen(m);
    if (len == 0 || len > ROUTE_METHOD_MAX) {
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        char c = m[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                  (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
        if (!ok) {
            return NULL;
        }
    }
    return (char *)m;
}

/* Text `s` within `max` bytes: itself when it fits, else its first bytes
 * up to a UTF-8 boundary copied into buf[0..max]; NULL when it is not
 * UTF-8 text without control characters (then left out, not mangled). */
static char *text_fit(const char *s, size_t max, char *buf) {
    if (s == NULL || s[0] == '\0') {
        return NULL;
    }
    size_t len = strlen(s);
    const char *out = s;
    if (len > max) {
        len = max;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80) {
            len--; /* s[len] continues a sequence: cut before it begins */
        }
        memcpy(buf, s, len);
        buf[len] = '\0';
        out = buf;
    }
    return rpc_text_ok(out, len) ? (char *)out : NULL;
}

typedef struct xff_walk {
    const char *values[PROXY_XFF_HEADERS];
    size_t n;
} xff_walk;

static bool take_xff(void *cls, const char *value) {
    xff_walk *w = cls;
    if (w->n == PROXY_XFF_HEADERS) {
        memmove(w->values, w->values + 1, sizeof(w->values[0]) * (PROXY_XFF_HEADERS - 1));
        w->n--;
    }
    w->values[w->n++] = value;
    return true;
}

/* Walks the items of one X-Forwarded-For value right to left: the first
 * address that is no trusted proxy goes into `client` (true); every
 * address seen goes into `leftmost`. */
static bool xff_scan(const proxy_trust *t, const char *v, uint8_t client[16],
                     uint8_t leftmost[16], bool *any) {
    size_t end = strlen(v);
    while (end > 0) {
        size_t start = end;
        while (start > 0 && v[start - 1] != ',') {
            start--;
        }
        size_t a = start, b = end;
        while (a < b && (v[a] == ' ' || v[a] == '\t')) {
            a++;
        }
        while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t')) {
            b--;
        }
        uint8_t addr[16];
        if (proxy_addr_parse(v + a, b - a, addr)) {
            if (!proxy_trusted(t, addr)) {
                memcpy(client, addr, 16);
                return true;
            }
            memcpy(leftmost, addr, 16);
            *any = true;
        }
        end = start > 0 ? start - 1 : 0;
    }
    return false;
}

/* The client a trusted proxy names, into addr; false if it names none. */
static bool forwarded_client(const proxy_trust *t, const http_request *req,
                             uint8_t addr[16]) {
    const char *real = http_header(req, "X-Real-IP");
    if (real != NULL && proxy_addr_parse(real, strlen(real), addr)) {
        return true;
    }
    xff_walk w = {.n = 0};
    http_header_each(req, "X-Forwarded-For", take_xff, &w);
    uint8_t leftmost[16];
    bool any = false;
    for (size_t i = w.n; i > 0; i--) {
        if (xff_scan(t, w.values[i - 1], addr, leftmost, &any)) {
            return true;
        }
    }
    /* Every address is a proxy of ours: the furthest one is the client. */
    if (any) {
        memcpy(addr, leftmost, 16);
    }
    return any;
}

/* The first of two headers that is present. */
static const char *header_either(const http_request *req, const char *a, const char *b) {
    const char *v = http_header(req, a);
    return v != NULL ? v : http_header(req, b);
}

void proxy_context_fill(const proxy_trust *t, const http_request *req, bool forwarded,
                        proxy_context *out) {
    tokend__v1__request_context__init(&out->wire);
    uint8_t peer[16], client[16];
    bool has_peer = peer_addr(req, peer);
    bool trusted = has_peer && proxy_trusted(t, peer);
    const char *method = http_method(req);
    const char *path = http_path(req);
    if (trusted && forwarded) {
        const char *m = header_either(req, "X-Original-Method", "X-Forwarded-Method");
        const char *p = header_either(req, "X-Original-URI", "X-Forwarded-Uri");
        if (m != NULL || p != NULL) {
            method = m;
            path = p;
        }
    }
    char *s;
    if ((s = method_fit(method)) != NULL) {
        out->wire.method = s;
    }
    if ((s = text_fit(path, ROUTE_PATH_MAX, out->path)) != NULL) {
        out->wire.path = s;
    }
    if ((s = text_fit(http_header(req, "User-Agent"), ROUTE_USER_AGENT_MAX,
                      out->user_agent)) != NULL) {
        out->wire.user_agent = s;
    }
    bool has_client = trusted && forwarded_client(t, req, client);
    if (!has_client && has_peer) {
        memcpy(client, peer, 16);
        has_client = true;
    }
    if (has_client) {
        addr_text(client, out->client_ip);
        if (out->client_ip[0] != '\0') {
            out->wire.client_ip = out->client_ip;
        }
    }
}
