/*
 * fuzz_gateway.c — libFuzzer target: arbitrary bytes as one raw HTTP
 * connection to a real tokend-gateway, in front of a real tokend.
 *
 * The whole stack runs in this process: tokend as in fuzz_rpc.c (store in a
 * temp dir, writer, usage table, TokenService, NNG server) on an inproc://
 * URL, and the gateway's own modules — upstream.c dialling that URL,
 * api.c, http.c's libmicrohttpd server — started as main.c starts them.
 * Each input is written to one end of a socketpair whose other end the
 * gateway serves as an accepted connection (http_serve_fd); the write side
 * is then shut down and the reply read until the gateway closes. Path
 * routing, query parsing, bearer and header checks, JSON bodies, the size
 * limits and the RPC round trip all run on the gateway's own threads, as
 * they do in production; ASan/UBSan watch them, and the coverage they
 * reach guides the fuzzer.
 *
 * What must hold for every input:
 *   - the gateway closes the connection within 5 s of the input (no
 *     hang);
 *   - whatever it sent starts with an HTTP/1.x status line (100..599) and
 *     a whole header block;
 *   - a plainly well-formed request head without a body (clean_head) is
 *     answered: a close without a word is for what libmicrohttpd cannot
 *     parse (a head or body cut short, a bare CR, ...);
 *   - no 500: nothing in this setup can fail inside, so a 500 is a gateway
 *     or service bug (a reply the gateway could not build, say).
 *
 * So the fuzzer reaches past authentication, the texts "@admin", "@token"
 * and "@id" in an input are replaced by the admin token of this run, a
 * partner's token (owner partner:fuzz, abilities orders:read, invoices:*,
 * tokens:read, tokens:write) and that token's id. An input that revokes
 * either token (DELETE) gets it minted anew for the next one.
 *
 * With FUZZ_SHOW_REPLIES set in the environment, each reply (its first
 * 4 KiB) and the gateway's log at debug level are printed, to see what
 * the seeds reach (fuzz/README.md).
 *
 * The limits are small (--max-body 4096, --max-header 2048) so that inputs
 * of -max_len=8192 reach the 413 and 431 paths too.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <linux/sockios.h>
#include <unistd.h>

#include "api.h"
#include "inproc.h"
#include "http.h"
#include "log.h"
#include "openapi.h"
#include "rpc.h"
#include "store.h"
#include "methods.h"
#include "upstream.h"

#define FUZZ_URL "inproc://tokend-fuzz-gateway"
#define FUZZ_DEADLINE_MS 5000
/* Bytes of the reply kept for the checks; the rest is read and dropped. */
#define FUZZ_REPLY_KEEP 4096

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A token this run keeps valid: minted at start, again after a revocation. */
typedef struct fuzz_token {
    const char *marker;
    const char *owner;
    char *const *abilities;
    size_t n_abilities;
    char text[TOKEN_MAX_LEN + 1];
    char id[TOKEN_ID_LEN + 1];
    uint8_t digest[TOKEN_DIGEST_LEN];
} fuzz_token;

static char *admin_abilities[] = {METHODS_ABILITY_ADMIN};
static char *partner_abilities[] = {"orders:read", "invoices:*", METHODS_ABILITY_READ,
                                    METHODS_ABILITY_WRITE};
static fuzz_token admin = {"@admin", "admin", admin_abilities, 1, "", "", {0}};
static fuzz_token partner = {"@token", "partner:fuzz", partner_abilities, 4, "", "", {0}};

static store *st;
static http_server *srv;
static bool show_replies; /* FUZZ_SHOW_REPLIES set */

/* Stores a new token for t->owner directly (the service sees it at once:
 * it reads the store on every check). */
static void mint(fuzz_token *t) {
    fuzz_put_token(st, t->owner, t->abilities, t->n_abilities, t->text, t->digest, t->id);
}

/* Mints t again if an input revoked it. */
static void keep_valid(fuzz_token *t) {
    token_record rec;
    int rv = store_get_token(st, t->digest, &rec, NULL);
    if (rv == TOKEND_OK) {
        token_record_free(&rec);
    } else if (rv == TOKEND_NOT_FOUND) {
        mint(t);
    } else {
        fuzz_die("store read failed");
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    log_min_level = LOG_ERROR; /* quiet, but a gateway "bug" line shows */
    signal(SIGPIPE, SIG_IGN);
    http_json_init();
    st = fuzz_store_open("fuzz-gateway");
    mint(&admin);
    mint(&partner);
    fuzz_serve(st, FUZZ_URL);
    const char *urls[] = {FUZZ_URL};

    /* The gateway, as main.c starts it (the listening socket is unused). */
    tokend_error gerr;
    upstream_config uc = {
        .urls = urls, .n_urls = 1, .timeout_ms = 2000, .max_inflight = 1024};
    upstream *up = NULL;
    if (upstream_open(&uc, &up, &gerr) != TOKEND_OK) {
        fuzz_die(gerr.message);
    }
    api_config ac = {
        .up = up,
        .openapi = gateway_openapi_json,
        .openapi_len = gateway_openapi_json_len,
    };
    api *a = api_new(&ac);
    if (a == NULL) {
        fuzz_die("api_new");
    }
    http_handlers handlers = {
        .handle = api_handle, .resume = api_resume, .release = api_release, .cls = a};
    http_config hc = {
        .listen = "127.0.0.1:0",
        .threads = 1,
        .max_body = 4096,
        .max_header = 2048,
        .request_timeout_s = 10,
        .idle_timeout_s = 30,
        .max_connections = 2048,
        .max_connections_per_ip = 256,
    };
    if (http_start(&hc, &handlers, &srv, &gerr) != TOKEND_OK) {
        fuzz_die(gerr.message);
    }
    show_replies = getenv("FUZZ_SHOW_REPLIES") != NULL;
    if (show_replies) {
        log_min_level = LOG_DEBUG; /* the access log and libmicrohttpd's words */
    }
    /* Everything lives until the process ends: libFuzzer never returns. */
    return 0;
}

/* `data` with every marker replaced by its text (malloc'd, NUL-terminated
 * for the checks; *len excludes the NUL). */
static char *substitute(const uint8_t *data, size_t size, size_t *len) {
    const fuzz_token *tokens[] = {&admin, &partner};
    size_t cap = size + 1, k = 0;
    char *out = malloc(cap);
    if (out == NULL) {
        fuzz_die("out of memory");
    }
    for (size_t i = 0; i < size;) {
        const char *text = NULL;
        size_t skip = 0;
        for (size_t t = 0; t < 2 && text == NULL; t++) {
            size_t m = strlen(tokens[t]->marker);
            if (size - i >= m && memcmp(data + i, tokens[t]->marker, m) == 0) {
                text = tokens[t]->text;
                skip = m;
            }
        }
        if (text == NULL && size - i >= 3 && memcmp(data + i, "@id", 3) == 0) {
            text = partner.id;
            skip = 3;
        }
        if (text == NULL) {
            out[k++] = (char)data[i++];
            continue;
        }
        size_t n = strlen(text);
        if (k + n + (size - i - skip) + 1 > cap) {
            cap = k + n + (size - i - skip) + 1;
            char *grown = realloc(out, cap);
            if (grown == NULL) {
                fuzz_die("out of memory");
            }
            out = grown;
        }
        memcpy(out + k, text, n);
        k += n;
        i += skip;
    }
    out[k] = '\0';
    *len = k;
    return out;
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Bytes written to fd that the gateway has not read yet. */
static int unread_by_peer(int fd) {
    int n = 0;
    if (ioctl(fd, SIOCOUTQ, &n) != 0) {
        fuzz_die("ioctl SIOCOUTQ");
    }
    return n;
}

/*
 * Writes req[0..len) to fd, waits until the gateway has read it all, shuts
 * the write side and reads until the gateway closes, keeping the first
 * `keep` bytes in reply. Returns how many bytes came in all. Aborts after
 * FUZZ_DEADLINE_MS.
 *
 * Why wait before the shutdown: libmicrohttpd 0.9.75 with edge-triggered
 * epoll and without MHD_USE_TURBO misses an end of stream that arrives in
 * the same read as the tail of an unfinished request, and holds the
 * connection until --request-timeout-s or --idle-timeout-s. A real client
 * sends its bytes and its FIN apart in time; so does this, whichever way
 * http.c sets libmicrohttpd up.
 */
static size_t round_trip(int fd, const char *req, size_t len, char *reply, size_t keep) {
    enum { SENDING, DRAINING, SHUT } phase = len > 0 ? SENDING : DRAINING;
    int64_t deadline = now_ms() + FUZZ_DEADLINE_MS;
    size_t sent = 0, got = 0;
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            fprintf(stderr,
                    "fuzz_gateway: the gateway did not close within %d ms "
                    "(%zu of %zu bytes sent, %s, %zu bytes of reply)\n",
                    FUZZ_DEADLINE_MS, sent, len,
                    phase == SHUT ? "write side shut" : "never read it all", got);
            abort();
        }
        if (phase == DRAINING && unread_by_peer(fd) == 0) {
            shutdown(fd, SHUT_WR);
            phase = SHUT;
        }
        /* While the gateway reads the input, look again every 20 us. */
        struct timespec wait = {.tv_sec = left / 1000,
                                .tv_nsec = (left % 1000) * 1000000};
        if (phase == DRAINING) {
            wait = (struct timespec){.tv_nsec = 20 * 1000};
        }
        struct pollfd p = {.fd = fd, .events = POLLIN | (phase == SENDING ? POLLOUT : 0)};
        if (ppoll(&p, 1, &wait, NULL) < 0 && errno != EINTR) {
            fuzz_die("poll");
        }
        if (phase == SENDING && (p.revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t n = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
            if (n > 0) {
                sent += (size_t)n;
            }
            /* A gateway that answered early (413, 431) and closed takes no
             * more: the rest of the request goes unsent. */
            if (sent == len || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                phase = DRAINING;
            }
        }
        if (p.revents & (POLLIN | POLLERR | POLLHUP)) {
            char buf[4096];
            ssize_t n = recv(fd, buf, sizeof(buf), 0);
            if (n > 0) {
                if (got < keep) {
                    size_t take = (size_t)n < keep - got ? (size_t)n : keep - got;
                    memcpy(reply + got, buf, take);
                }
                got += (size_t)n;
            } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                return got; /* closed (ECONNRESET: closed with input unread) */
            }
        }
    }
}

/* True for a token character of RFC 9110 (methods, header names). */
static bool tchar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/*
 * True if s begins with a request head that is plainly well formed and
 * announces no body: "METHOD SP target SP HTTP/1.x CRLF", then header lines
 * "name: value CRLF" of printable ASCII, then CRLF; no Content-Length or
 * Transfer-Encoding. The gateway must answer such a request. Anything else
 * libmicrohttpd may refuse by just closing, which it does for some
 * malformed heads (a bare CR, say) and for a body cut short.
 */
static bool clean_head(const char *s) {
    const char *p = s;
    while (*p >= 'A' && *p <= 'Z') {
        p++;
    }
    if (p == s || *p++ != ' ') {
        return false;
    }
    const char *target = p;
    while (*p > ' ' && *p < 0x7f) {
        p++;
    }
    if (p == target || *p++ != ' ' ||
        (strncmp(p, "HTTP/1.1\r\n", 10) != 0 && strncmp(p, "HTTP/1.0\r\n", 10) != 0)) {
        return false;
    }
    p += 10;
    while (strncmp(p, "\r\n", 2) != 0) {
        const char *name = p;
        while (tchar(*p)) {
            p++;
        }
        size_t name_len = (size_t)(p - name);
        if (name_len == 0 || *p++ != ':' ||
            (name_len == 14 && strncasecmp(name, "Content-Length", 14) == 0) ||
            (name_len == 17 && strncasecmp(name, "Transfer-Encoding", 17) == 0)) {
            return false;
        }
        while ((*p >= ' ' && *p < 0x7f) || *p == '\t') {
            p++;
        }
        if (strncmp(p, "\r\n", 2) != 0) {
            return false;
        }
        p += 2;
    }
    return true;
}

static void fail(const char *why, const char *reply, size_t len) {
    fprintf(stderr, "fuzz_gateway: %s; reply (%zu bytes): %.*s\n", why, len,
            (int)(len < 300 ? len : 300), reply);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t len = 0;
    char *req = substitute(data, size, &len);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        fuzz_die("socketpair");
    }
    if (!http_serve_fd(srv, sv[1])) {
        fuzz_die("the gateway refused the connection");
    }
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    static char reply[FUZZ_REPLY_KEEP + 1];
    size_t got = round_trip(sv[0], req, len, reply, FUZZ_REPLY_KEEP);
    close(sv[0]);
    size_t kept = got < FUZZ_REPLY_KEEP ? got : FUZZ_REPLY_KEEP;
    reply[kept] = '\0';

    if (got == 0) {
        if (clean_head(req)) {
            fail("a well-formed request without a body got no answer", reply, 0);
        }
    } else {
        if (kept < 13 || (strncmp(reply, "HTTP/1.1 ", 9) != 0 &&
                          strncmp(reply, "HTTP/1.0 ", 9) != 0)) {
            fail("the reply does not start with an HTTP/1.x status line", reply, kept);
        }
        int code = 0;
        for (int i = 9; i < 12; i++) {
            if (reply[i] < '0' || reply[i] > '9') {
                fail("the status code is not three digits", reply, kept);
            }
            code = code * 10 + (reply[i] - '0');
        }
        if (code < 100 || code > 599 || (reply[12] != ' ' && reply[12] != '\r')) {
            fail("the status line is malformed", reply, kept);
        }
        if (code == 500) {
            fail("500: the gateway or tokend failed inside", reply, kept);
        }
        if (got < FUZZ_REPLY_KEEP && strstr(reply, "\r\n\r\n") == NULL) {
            fail("the reply's header block never ends", reply, kept);
        }
    }
    if (show_replies) {
        fprintf(stderr, "fuzz_gateway: %zu bytes in, %zu out:\n%s\n", len, got, reply);
    }
    /* Only DELETE revokes: keep both tokens valid for the next input. */
    if (memmem(req, len, "DELETE", 6) != NULL) {
        keep_valid(&admin);
        keep_valid(&partner);
    }
    free(req);
    return 0;
}
