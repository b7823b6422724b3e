/*
 * route.c — request-context bounds and route normalisation (route.h).
 */
#include "route.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "rpc.h"

static bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

static bool is_hex(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_alnum(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool method_ok(const char *m, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (!is_alnum(m[i]) && m[i] != '-' && m[i] != '_' && m[i] != '.') {
            return false;
        }
    }
    return true;
}

static bool ip_ok(const char *s) {
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static bool field_fail(char *why, size_t cap, const char *where, const char *field,
                       const char *what) {
    if (cap > 0) {
        snprintf(why, cap, "%s.%s: %s", where, field, what);
    }
    return false;
}

bool route_context_ok(const Tokend__V1__RequestContext *ctx, const char *where, char *why,
                      size_t cap) {
    if (ctx == NULL) {
        return true;
    }
    const char *m = ctx->method != NULL ? ctx->method : "";
    const char *p = ctx->path != NULL ? ctx->path : "";
    const char *ip = ctx->client_ip != NULL ? ctx->client_ip : "";
    const char *ua = ctx->user_agent != NULL ? ctx->user_agent : "";
    size_t ml = strlen(m), pl = strlen(p), il = strlen(ip), ul = strlen(ua);
    if (ml > ROUTE_METHOD_MAX) {
        return field_fail(why, cap, where, "method", "longer than 16 bytes");
    }
    if (!method_ok(m, ml)) {
        return field_fail(why, cap, where, "method",
                          "not an HTTP method (letters, digits, '-', '_', '.')");
    }
    if (pl > ROUTE_PATH_MAX) {
        return field_fail(why, cap, where, "path", "longer than 2048 bytes");
    }
    if (!rpc_text_ok(p, pl)) {
        return field_fail(why, cap, where, "path",
                          "not UTF-8 text without control characters");
    }
    if (il > ROUTE_CLIENT_IP_MAX) {
        return field_fail(why, cap, where, "client_ip", "longer than 45 bytes");
    }
    if (il > 0 && !ip_ok(ip)) {
        return field_fail(why, cap, where, "client_ip", "not an IPv4 or IPv6 address");
    }
    if (ul > ROUTE_USER_AGENT_MAX) {
        return field_fail(why, cap, where, "user_agent", "longer than 256 bytes");
    }
    if (!rpc_text_ok(ua, ul)) {
        return field_fail(why, cap, where, "user_agent",
                          "not UTF-8 text without control characters");
    }
    return true;
}

bool route_segment_is_id(const char *seg, size_t len) {
    if (len == 0) {
        return false;
    }
    /* Long enough to hold a token's secret and checksum: whatever it is, a
     * route name it is not, and a token pasted into a URL must never
     * become a stored route. */
    if (len >= ROUTE_SEGMENT_LONG) {
        return true;
    }
    bool all_digits = true, all_hex = true, ident = true, has_digit = false;
    size_t hyphens = 0, digits = 0;
    for (size_t i = 0; i < len; i++) {
        char c = seg[i];
        digits += is_digit(c);
        all_digits = all_digits && is_digit(c);
        has_digit = has_digit || is_digit(c);
        all_hex = all_hex && is_hex(c);
        ident = ident && (is_alnum(c) || c == '_' || c == '-');
        hyphens += c == '-';
    }
    if (all_digits) {
        return true;
    }
    if (len == 32 && all_hex) {
        return true;
    }
    if (len == 36 && hyphens == 4 && seg[8] == '-' && seg[13] == '-' && seg[18] == '-' &&
        seg[23] == '-') {
        bool hex = true;
        for (size_t i = 0; i < len; i++) {
            hex = hex && (seg[i] == '-' || is_hex(seg[i]));
        }
        if (hex) {
            return true;
        }
    }
    if (ident && digits >= 4) {
        return true; /* "INV-2026001", "ord_93121": a number with a label */
    }
    return len >= 16 && ident && has_digit;
}

/* Appends s[0..len) to out if it fits in `limit` bytes in all. */
static bool put(char *out, size_t limit, size_t *n, const char *s, size_t len) {
    if (*n + len > limit) {
        return false;
    }
    memcpy(out + *n, s, len);
    *n += len;
    return true;
}

size_t route_normalise(const char *method, const char *path, char *out, size_t cap) {
    if (cap == 0) {
        return 0;
    }
    size_t limit = cap - 1 < ROUTE_MAX ? cap - 1 : ROUTE_MAX;
    const char *m = method != NULL ? method : "";
    const char *p = path != NULL ? path : "";
    size_t n = 0;
    size_t ml = strlen(m);
    if (ml == 0 && p[0] == '\0') {
        return (size_t)snprintf(out, cap, "-") < cap ? 1 : 0;
    }
    if (ml > 0) {
        if (ml + 2 > limit) {
            ml = limit - 2;
        }
        put(out, limit, &n, m, ml);
        put(out, limit, &n, " ", 1);
    }
    /* Absolute form: keep the path after the authority. */
    const char *scheme = strstr(p, "://");
    if (scheme != NULL && strcspn(p, ":/?#") == (size_t)(scheme - p)) {
        p = scheme + 3;
        p += strcspn(p, "/?#");
    }
    size_t end = strcspn(p, "?#");
    size_t path_start = n;
    size_t i = 0;
    bool cut = false;
    while (i < end) {
        while (i < end && p[i] == '/') {
            i++;
        }
        if (i == end) {
            break;
        }
        size_t j = i;
        while (j < end && p[j] != '/') {
            j++;
        }
        const char *seg = route_segment_is_id(p + i, j - i) ? "{id}" : p + i;
        size_t seg_len = seg == p + i ? j - i : 4;
        /* Room for "/seg" and, should a later one not fit, "/...". */
        size_t before = n;
        if (!put(out, limit, &n, "/", 1) || !put(out, limit, &n, seg, seg_len) ||
            (j < end && n + 4 > limit)) {
            n = before;
            cut = true;
            break;
        }
        i = j;
    }
    if (cut) {
        /* put cannot fail here: every segment kept left room for it. */
        if (!put(out, limit, &n, "/...", 4)) {
            n = path_start;
            put(out, limit, &n, "/...", 4);
        }
    } else if (n == path_start) {
        put(out, limit, &n, "/", 1);
    }
    out[n] = '\0';
    return n;
}
