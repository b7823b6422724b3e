/*
 * http.c — libmicrohttpd glue: connection bookkeeping, the request life
 * cycle (two-call pattern, body limits, suspend/resume), replies and the
 * access log. See http.h; this file's comments say why.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "clock.h"
#include "error.h"
#include "listen.h"
#include "log.h"

#define HTTP_MAX_REPLY_HEADERS 8
/* Most query parameters a request may carry. libmicrohttpd records each
 * one in the connection's memory pool (a 56-byte record, 64 with
 * alignment) while parsing the request line; were they to outgrow the
 * pool it would answer nothing and hold the connection, so a request with
 * more is refused before it parses them (on_request_line), and the pool
 * has room for this many (http_start). The API needs at most 64 (the
 * abilities of a check) plus a few. */
#define HTTP_MAX_QUERY_PARAMS 128
#define HTTP_QUERY_PARAM_POOL_BYTES 64
/* GnuTLS's priorities for HTTPS: TLS 1.3 (its suites are all AEAD with
 * ephemeral key exchange), and on TLS 1.2 only ECDHE key exchange (forward
 * secrecy; no static RSA, no finite-field DHE) with AES-GCM or
 * ChaCha20-Poly1305 (no CBC, no SHA-1 MAC). The server's order wins. */
#define HTTP_TLS_PRIORITIES                                                  \
    "NORMAL:%SERVER_PRECEDENCE:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-KX-ALL:" \
    "+ECDHE-ECDSA:+ECDHE-RSA:-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:"         \
    "+CHACHA20-POLY1305:-MAC-ALL:+AEAD"
/* How often the watchdog looks for requests that take too long to arrive. */
#define HTTP_WATCHDOG_PERIOD_MS 100
/* A path segment this long or longer could be a token (a token is a prefix
 * of 1..32 characters and 38 more): the access log shows it as {redacted}. */
#define HTTP_LOG_SEGMENT_MAX 38

/* How often, at most, the watchdog logs what the connection limits did. */
#define HTTP_LIMIT_REPORT_MS 1000
/* libmicrohttpd's own connection limit is --max-connections plus this
 * much: room for the connections that the gateway has refused or closed
 * to make room but libmicrohttpd has not closed yet (it does on its next
 * turn of the loop). libmicrohttpd, at its limit, stops accepting until
 * one closes; the gateway's own limit is always reached first. */
#define HTTP_CONN_RESERVE(max) (64 + (max) / 8)
/* File descriptors the server needs besides connections: the listening
 * socket, and per worker thread an epoll fd and a wake-up pipe. */
#define HTTP_FDS_PER_THREAD 4
#define HTTP_FDS_FIXED 16

typedef struct http_conn http_conn;

/* A connection's place in one of the server's lists, and a list. */
typedef struct conn_link {
    http_conn *prev, *next;
} conn_link;

typedef struct conn_list {
    http_conn *head, *tail;
} conn_list;

/* Connections counted for one client address: an IPv4 address, or an
 * IPv6 client's /64 (a host usually has a whole /64 to pick from). */
typedef struct http_addr {
    struct http_addr *next; /* in its bucket */
    uint64_t key;           /* addr_key */
    bool v6;
    int open;       /* counted connections */
    conn_list idle; /* its idle ones, longest idle first */
} http_addr;

/*
 * One per TCP connection (MHD's socket context). All connections are
 * listed so that the watchdog can close those whose request takes too
 * long to arrive (libmicrohttpd's own timeout is an idle timeout, which a
 * client sending a byte now and then never trips); they are counted, in
 * all and per address, for --max-connections and --max-connections-per-ip;
 * and those with no request in progress are on the idle list, longest
 * idle first, to be closed first when a limit is reached. Everything but
 * arriving_since_ms is under the server's conns_mtx.
 */
struct http_conn {
    conn_link in_all;       /* in the list of every connection */
    conn_link in_idle;      /* in the idle list, while idle */
    conn_link in_addr_idle; /* and in its address's */
    /* Its address's record while it is counted; NULL once it was refused,
     * or shut, or is closing. */
    http_addr *addr;
    int fd;
    bool idle; /* on the idle list: no request begun (or all answered) */
    bool shut; /* shut down by the gateway: none of its requests is served */
    /* The peer's address as text, for the log (client=). */
    char client[INET6_ADDRSTRLEN];
    /* Monotonic ms since which a request has been arriving; 0 while none
     * is (idle between requests, or the request is whole); -1 once the
     * connection has been shut down. */
    _Atomic int64_t arriving_since_ms;
};

typedef enum req_state { REQ_READING, REQ_SUSPENDED, REQ_REPLIED } req_state;

typedef struct reply_header {
    const char *name;
    char *value;
} reply_header;

struct http_request {
    http_server *srv;
    struct MHD_Connection *conn;
    http_conn *hc;
    struct timespec started;
    const char *method;
    const char *path;
    req_state state;
    /* The body, read up to max_body; past it only counted. */
    char *body;
    size_t body_len, body_cap;
    bool body_too_large;
    void *data; /* the handler's */
    /* The reply being built. */
    int status;
    const char *content_type;
    char *out; /* malloc'd body, or NULL */
    const void *out_static;
    size_t out_len;
    reply_header headers[HTTP_MAX_REPLY_HEADERS];
    size_t n_headers;
    bool close;
    bool queued;   /* handed to MHD */
    char code[32]; /* the problem's code, "" when the reply is none */
    char note[256];
    size_t note_len;
};

struct http_server {
    struct MHD_Daemon *daemon;
    http_handlers h;
    size_t max_body;
    size_t max_header;
    int64_t request_timeout_ms;
    int port;
    const char *hsts; /* Strict-Transport-Security, over HTTPS only */
    atomic_bool starting;
    atomic_bool quiescing;
    atomic_int active; /* requests begun and not yet over */
    atomic_uint_fast64_t served;
    bool tls;
    /* The connection list and the watchdog that walks it; the counts, the
     * per-address table and the idle list. All under conns_mtx. */
    pthread_mutex_t conns_mtx;
    pthread_cond_t watchdog_cv;
    conn_list conns;
    int max_conns, max_conns_per_addr;
    int open; /* counted connections */
    http_addr **addrs;
    size_t addr_mask;
    uint64_t addr_seed;
    conn_list idle; /* longest idle first */
    /* What the limits did since the watchdog last logged it. */
    uint64_t refused, closed_idle;
    int64_t limits_reported_ms;
    char refused_client[INET6_ADDRSTRLEN]; /* the last refused */
    bool watchdog_stop;
    bool watchdog_running;
    pthread_t watchdog;
};

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------
 * Option values checked at start: HSTS, the listen address (listen.h). */

bool http_hsts_ok(const char *value) {
    if (value == NULL || strncmp(value, "max-age=", 8) != 0) {
        return false;
    }
    const char *p = value + 8;
    size_t digits = strspn(p, "0123456789");
    if (digits == 0 || digits > 10) {
        return false;
    }
    p += digits;
    bool sub = false, preload = false;
    while (*p != '\0') {
        p += strspn(p, " \t");
        if (*p++ != ';') {
            return false;
        }
        p += strspn(p, " \t");
        if (!sub && strncasecmp(p, "includeSubDomains", 17) == 0) {
            sub = true;
            p += 17;
        } else if (!preload && strncasecmp(p, "preload", 7) == 0) {
            preload = true;
            p += 7;
        } else {
            return false;
        }
        p += strspn(p, " \t");
    }
    return true;
}

bool http_listen_ok(const char *listen) {
    struct sockaddr_storage ss;
    bool v6;
    return listen_addr_parse(listen, &ss, &v6);
}

/* ------------------------------------------------------------------------
 * Connections and the arrival watchdog. */

/* The peer address of `conn` (NULL if unknown). */
static const struct sockaddr *peer_of(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    return info != NULL ? info->client_addr : NULL;
}

/* `sa` as text ("127.0.0.1", "::1"), or "-". */
static void client_text(const struct sockaddr *sa, char *out, size_t size) {
    const void *bytes = NULL;
    if (sa != NULL && sa->sa_family == AF_INET) {
        bytes = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    } else if (sa != NULL && sa->sa_family == AF_INET6) {
        bytes = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    }
    if (bytes == NULL || inet_ntop(sa->sa_family, bytes, out, (socklen_t)size) == NULL) {
        snprintf(out, size, "-");
    }
}

/* The per-address key of `sa`: an IPv4 address (also written as
 * ::ffff:a.b.c.d), or an IPv6 address's first 64 bits. */
static void addr_key(const struct sockaddr *sa, uint64_t *key, bool *v6) {
    *key = 0;
    *v6 = false;
    if (sa != NULL && sa->sa_family == AF_INET) {
        *key = ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr);
    } else if (sa != NULL && sa->sa_family == AF_INET6) {
        const struct in6_addr *a =
            &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        const uint8_t *b = a->s6_addr;
        bool mapped = IN6_IS_ADDR_V4MAPPED(a);
        for (int i = mapped ? 12 : 0; i < (mapped ? 16 : 8); i++) {
            *key = *key << 8 | b[i];
        }
        *v6 = !mapped;
    }
}

/* The bucket of a key: a keyed mix (the key is the client's choice, the
 * seed is not), so that no one can aim many addresses at one bucket. */
static size_t addr_bucket(const http_server *srv, uint64_t key, bool v6) {
    uint64_t h = key ^ srv->addr_seed ^ (v6 ? UINT64_C(0x9e3779b97f4a7c15) : 0);
    h ^= h >> 30;
    h *= UINT64_C(0xbf58476d1ce4e5b9);
    h ^= h >> 27;
    h *= UINT64_C(0x94d049bb133111eb);
    h ^= h >> 31;
    return (size_t)h & srv->addr_mask;
}

/* The record of an address, made (with no connection) if it has none;
 * NULL when out of memory. Under conns_mtx, as everything below. */
static http_addr *addr_get(http_server *srv, uint64_t key, bool v6) {
    http_addr **slot = &srv->addrs[addr_bucket(srv, key, v6)];
    for (http_addr *a = *slot; a != NULL; a = a->next) {
        if (a->key == key && a->v6 == v6) {
            return a;
        }
    }
    http_addr *a = calloc(1, sizeof(*a));
    if (a != NULL) {
        a->key = key;
        a->v6 = v6;
        a->next = *slot;
        *slot = a;
    }
    return a;
}

/* Frees the record of an address once it has no connection left. */
static void addr_put(http_server *srv, http_addr *a) {
    if (a->open > 0) {
        return;
    }
    for (http_addr **p = &srv->addrs[addr_bucket(srv, a->key, a->v6)]; *p != NULL;
         p = &(*p)->next) {
        if (*p == a) {
            *p = a->next;
            free(a);
            return;
        }
    }
}

/* The link of `hc` at `offset` (offsetof http_conn, in_all or in_idle). */
static conn_link *link_of(http_conn *hc, size_t offset) {
    return (conn_link *)(void *)((char *)hc + offset);
}

static void list_append(conn_list *list, http_conn *hc, size_t offset) {
    conn_link *link = link_of(hc, offset);
    link->prev = list->tail;
    link->next = NULL;
    if (list->tail != NULL) {
        link_of(list->tail, offset)->next = hc;
    } else {
        list->head = hc;
    }
    list->tail = hc;
}

static void list_remove(conn_list *list, http_conn *hc, size_t offset) {
    conn_link *link = link_of(hc, offset);
    if (link->prev != NULL) {
        link_of(link->prev, offset)->next = link->next;
    } else {
        list->head = link->next;
    }
    if (link->next != NULL) {
        link_of(link->next, offset)->prev = link->prev;
    } else {
        list->tail = link->prev;
    }
    link->prev = link->next = NULL;
}

/* Puts a counted connection at the end of the idle list (the longest
 * idle are at its head). */
static void idle_push(http_server *srv, http_conn *hc) {
    if (!hc->idle && hc->addr != NULL) {
        list_append(&srv->idle, hc, offsetof(http_conn, in_idle));
        list_append(&hc->addr->idle, hc, offsetof(http_conn, in_addr_idle));
        hc->idle = true;
    }
}

static void idle_pop(http_server *srv, http_conn *hc) {
    if (hc->idle) {
        list_remove(&srv->idle, hc, offsetof(http_conn, in_idle));
        list_remove(&hc->addr->idle, hc, offsetof(http_conn, in_addr_idle));
        hc->idle = false;
    }
}

/* Stops counting a connection (it is closing). */
static void conn_uncount(http_server *srv, http_conn *hc) {
    idle_pop(srv, hc);
    if (hc->addr != NULL) {
        hc->addr->open--;
        srv->open--;
        addr_put(srv, hc->addr);
        hc->addr = NULL;
    }
}

/* Shuts a connection down: libmicrohttpd's next read on it fails and it
 * closes it on its own thread. Called only under conns_mtx, and CLOSED
 * takes the lock before libmicrohttpd closes the socket, so the fd is
 * never one that a newer connection has been given. No request of the
 * connection is served from here on (on_request_line). */
static void conn_shut(http_server *srv, http_conn *hc) {
    shutdown(hc->fd, SHUT_RDWR);
    hc->shut = true;
    atomic_store(&hc->arriving_since_ms, -1);
    conn_uncount(srv, hc);
}

/* Closes the connection that has been idle longest, from `a` or (NULL)
 * from anywhere, to make room. False if none is idle. */
static bool close_longest_idle(http_server *srv, const http_addr *a) {
    http_conn *hc = a != NULL ? a->idle.head : srv->idle.head;
    if (hc == NULL) {
        return false;
    }
    conn_shut(srv, hc);
    srv->closed_idle++;
    return true;
}

/*
 * Counts a new connection from (key, v6) against --max-connections-per-ip
 * and --max-connections. At either limit the longest-idle connection it
 * competes with (from the same address, or from any) is closed to make
 * room: an idle connection costs its client nothing to open again, and
 * holding idle connections open is how one client would lock the others
 * out. Returns NULL when hc is counted (and idle: no request yet), or
 * which limit refuses it, with no idle connection to close.
 */
static const char *conn_admit(http_server *srv, http_conn *hc, uint64_t key, bool v6) {
    http_addr *a = addr_get(srv, key, v6);
    if (a == NULL) {
        return "out_of_memory";
    }
    /* Counted first, so that `a` stays while its idle connections go. */
    a->open++;
    srv->open++;
    const char *refused = NULL;
    if (a->open > srv->max_conns_per_addr && !close_longest_idle(srv, a)) {
        refused = "per_ip";
    } else if (srv->open > srv->max_conns && !close_longest_idle(srv, NULL)) {
        refused = "total";
    }
    if (refused != NULL) {
        a->open--;
        srv->open--;
        addr_put(srv, a);
        srv->refused++;
        memcpy(srv->refused_client, hc->client, sizeof(hc->client));
        return refused;
    }
    hc->addr = a;
    idle_push(srv, hc);
    return NULL;
}

static bool send_raw(http_server *srv, int fd, int status, const char *reason,
                     const char *code, const char *detail, const char *headers);

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    http_server *srv = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        http_conn *hc = calloc(1, sizeof(*hc));
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (hc == NULL || info == NULL) {
            /* Without its record a connection can be neither counted nor
             * timed: it is not served (on_request_line). */
            free(hc);
            if (info != NULL) {
                shutdown(info->connect_fd, SHUT_RDWR);
            }
            return;
        }
        hc->fd = info->connect_fd;
        const struct sockaddr *peer = peer_of(conn);
        client_text(peer, hc->client, sizeof(hc->client));
        uint64_t key;
        bool v6;
        addr_key(peer, &key, &v6);
        /* The first request is timed from the connection's start, so a
         * client that connects and sends nothing is closed too. */
        atomic_init(&hc->arriving_since_ms, mono_ms());
        pthread_mutex_lock(&srv->conns_mtx);
        list_append(&srv->conns, hc, offsetof(http_conn, in_all));
        const char *refused = conn_admit(srv, hc, key, v6);
        if (refused != NULL) {
            hc->shut = true;
            atomic_store(&hc->arriving_since_ms, -1);
        }
        pthread_mutex_unlock(&srv->conns_mtx);
        *socket_context = hc;
        if (refused != NULL) {
            /* This is the connection's own thread and nothing has been
             * read or written: the reply goes straight out. */
            send_raw(srv, hc->fd, 503, "Service Unavailable", "OVERLOADED",
                     strcmp(refused, "per_ip") == 0
                         ? "too many connections from this address"
                         : "too many connections",
                     "Retry-After: 1\r\n");
        }
        return;
    }
    /* CLOSED comes before MHD closes the socket, and the gateway touches
     * the socket of another thread's connection only under the same lock
     * (conn_shut): it never shuts down an fd number that a newer
     * connection has been given. */
    http_conn *hc = *socket_context;
    if (hc == NULL) {
        return;
    }
    pthread_mutex_lock(&srv->conns_mtx);
    list_remove(&srv->conns, hc, offsetof(http_conn, in_all));
    conn_uncount(srv, hc);
    pthread_mutex_unlock(&srv->conns_mtx);
    free(hc);
    *socket_context = NULL;
}

static http_conn *conn_of(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info != NULL ? info->socket_context : NULL;
}

/* How many query parameters libmicrohttpd will record for `uri`: the
 * pieces of its query between '&'s, empty ones included. */
static size_t query_params(const char *uri) {
    const char *q = strchr(uri, '?');
    if (q == NULL) {
        return 0;
    }
    size_t n = 1;
    for (q++; *q != '\0'; q++) {
        n += *q == '&';
    }
    return n;
}

/* What on_request_line hands MHD as the request's context when it has
 * refused the request itself: on_access then only drops the connection. */
static char request_refused;

static json_t *problem_doc(int status, const char *code, const char *detail);
static void log_path(const char *path, char *out, size_t size);
static void json_block_free(void *ptr);

/*
 * Writes a whole reply, a problem document with Connection: close and
 * `headers` (whole "Name: value\r\n" lines, or ""), straight on the
 * socket of a connection for which no reply can be queued, and shuts the
 * connection down; libmicrohttpd's next read on it then fails and it
 * closes it. Only on the connection's own thread, inside libmicrohttpd's
 * callback, before a reply could be queued: nothing else writes to the
 * socket. Over HTTPS nothing is written (plain bytes are no TLS record):
 * the connection is just closed. Returns false if a reply was due and
 * could not be sent whole.
 */
static bool send_raw(http_server *srv, int fd, int status, const char *reason,
                     const char *code, const char *detail, const char *headers) {
    ssize_t sent = -1;
    size_t want = 0;
    if (!srv->tls) {
        json_t *doc = problem_doc(status, code, detail);
        char *body = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
        json_decref(doc);
        size_t body_len = body != NULL ? strlen(body) : 0;
        char head[320];
        int n = snprintf(head, sizeof(head),
                         "HTTP/1.1 %d %s\r\nConnection: close\r\n%s"
                         "Content-Type: application/problem+json\r\n"
                         "Content-Length: %zu\r\n\r\n",
                         status, reason, headers, body_len);
        struct iovec iov[2] = {{head, (size_t)n}, {body, body_len}};
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
        want = (size_t)n + body_len;
        sent = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        json_block_free(body); /* json_dumps allocates through http_json_init's */
    }
    /* What the client sent already is read and dropped, so that closing
     * with it unread does not reset the connection (which could take the
     * reply with it) in the common case of a request sent whole. */
    char sink[4096];
    for (int i = 0; i < 16 && recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++) {
    }
    shutdown(fd, SHUT_RDWR);
    return srv->tls || (sent >= 0 && (size_t)sent == want);
}

/* Answers 414 on the connection's socket itself and shuts it down, for a
 * request line with more than HTTP_MAX_QUERY_PARAMS parameters: this runs
 * before MHD parses the parameters and before any reply could be queued. */
static void refuse_query(http_server *srv, http_conn *hc, const char *uri,
                         size_t params) {
    char detail[96];
    snprintf(detail, sizeof(detail), "the query has more than %d parameters",
             HTTP_MAX_QUERY_PARAMS);
    bool sent =
        send_raw(srv, hc->fd, 414, "URI Too Long", "TOO_MANY_PARAMETERS", detail, "");
    pthread_mutex_lock(&srv->conns_mtx);
    conn_shut(srv, hc);
    pthread_mutex_unlock(&srv->conns_mtx);
    size_t path_len = strcspn(uri, "?");
    char path[300], shown[300], qpath[340];
    snprintf(path, sizeof(path), "%.*s", (int)(path_len < 299 ? path_len : 299), uri);
    log_path(path, shown, sizeof(shown));
    LOG(LOG_INFO, "request",
        "path=%s status=414 client=%s code=TOO_MANY_PARAMETERS params=%zu%s",
        log_quote(qpath, sizeof(qpath), shown), hc->client, params,
        sent ? "" : " error=send");
}

/* MHD calls this when a request line has arrived: the connection is busy
 * from here until the request is over (on_completed), and a later request
 * on a kept-alive connection starts its clock here. */
static void *on_request_line(void *cls, const char *uri, struct MHD_Connection *conn) {
    http_server *srv = cls;
    http_conn *hc = conn_of(conn);
    bool shut = true;
    if (hc != NULL) {
        pthread_mutex_lock(&srv->conns_mtx);
        shut = hc->shut;
        idle_pop(srv, hc);
        pthread_mutex_unlock(&srv->conns_mtx);
    }
    if (shut) {
        /* Refused, closed to make room or timed out, with the request's
         * bytes already read: it is not served (it might create a token
         * whose reply no one reads). */
        return &request_refused;
    }
    size_t params = query_params(uri); /* the query is never logged */
    if (params > HTTP_MAX_QUERY_PARAMS) {
        refuse_query(srv, hc, uri, params);
        return &request_refused;
    }
    int64_t idle = 0;
    atomic_compare_exchange_strong(&hc->arriving_since_ms, &idle, mono_ms());
    return NULL;
}

/* Logs, at most once a second, what the connection limits did since the
 * last time. Under conns_mtx. */
static void report_limits(http_server *srv, int64_t now) {
    if ((srv->refused == 0 && srv->closed_idle == 0) ||
        now - srv->limits_reported_ms < HTTP_LIMIT_REPORT_MS) {
        return;
    }
    LOG(LOG_WARN, "connections.limit",
        "refused=%llu closed_idle=%llu open=%d max=%d max_per_ip=%d%s%s",
        (unsigned long long)srv->refused, (unsigned long long)srv->closed_idle, srv->open,
        srv->max_conns, srv->max_conns_per_addr, srv->refused > 0 ? " last_refused=" : "",
        srv->refused > 0 ? srv->refused_client : "");
    srv->refused = srv->closed_idle = 0;
    srv->limits_reported_ms = now;
}

static void *watchdog_main(void *arg) {
    http_server *srv = arg;
    pthread_mutex_lock(&srv->conns_mtx);
    while (!srv->watchdog_stop) {
        struct timespec until;
        clock_after(CLOCK_MONOTONIC, HTTP_WATCHDOG_PERIOD_MS, &until);
        pthread_cond_timedwait(&srv->watchdog_cv, &srv->conns_mtx, &until);
        int64_t now = mono_ms();
        for (http_conn *hc = srv->conns.head; hc != NULL; hc = hc->in_all.next) {
            int64_t since = atomic_load(&hc->arriving_since_ms);
            if (since > 0 && now - since > srv->request_timeout_ms) {
                /* No 408 can be sent from here. */
                conn_shut(srv, hc);
                LOG(LOG_DEBUG, "request.timeout", "after_ms=%lld client=%s",
                    (long long)(now - since), hc->client);
            }
        }
        report_limits(srv, now);
    }
    pthread_mutex_unlock(&srv->conns_mtx);
    return NULL;
}

/* ------------------------------------------------------------------------
 * Replies. */

/* jansson's allocator (http_json_init): the size rides in front of each
 * block so that free can wipe it. */
typedef struct json_block {
    size_t size;
    max_align_t align;
} json_block;

static void *json_block_alloc(size_t size) {
    json_block *b = malloc(offsetof(json_block, align) + size);
    if (b == NULL) {
        return NULL;
    }
    b->size = size;
    return (char *)b + offsetof(json_block, align);
}

static void json_block_free(void *ptr) {
    if (ptr == NULL) {
        return;
    }
    json_block *b = (json_block *)((char *)ptr - offsetof(json_block, align));
    explicit_bzero(ptr, b->size);
    free(b);
}

void http_json_init(void) {
    json_set_alloc_funcs(json_block_alloc, json_block_free);
}

static void reply_clear(http_request *req) {
    json_block_free(req->out);
    req->out = NULL;
    req->out_static = NULL;
    req->out_len = 0;
    for (size_t i = 0; i < req->n_headers; i++) {
        free(req->headers[i].value);
    }
    req->n_headers = 0;
    req->status = 0;
    req->content_type = NULL;
    req->code[0] = '\0';
}

void http_reply_json(http_request *req, int status, const char *content_type,
                     json_t *doc) {
    reply_clear(req);
    char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (text == NULL) {
        /* Out of memory (or a document that could not be built): nothing
         * better than a bare 500 can be said. */
        req->status = 500;
        http_log_note(req, "code=INTERNAL");
        return;
    }
    req->status = status;
    req->content_type = content_type;
    req->out = text;
    req->out_len = strlen(text);
}

void http_reply_static(http_request *req, int status, const char *content_type,
                       const void *body, size_t len) {
    reply_clear(req);
    req->status = status;
    req->content_type = content_type;
    req->out_static = body;
    req->out_len = len > 0 ? len : strlen(body);
}

void http_reply_text(http_request *req, int status, const char *content_type,
                     const char *body, size_t len) {
    reply_clear(req);
    req->out = json_block_alloc(len + 1);
    if (req->out == NULL) {
        req->status = 500;
        http_log_note(req, "code=INTERNAL");
        return;
    }
    memcpy(req->out, body, len);
    req->out[len] = '\0';
    req->out_len = len;
    req->status = status;
    req->content_type = content_type;
}

const char *http_reply_code(const http_request *req) {
    return req->code[0] != '\0' ? req->code : NULL;
}

void http_reply_empty(http_request *req, int status) {
    reply_clear(req);
    req->status = status;
}

bool http_reply_header(http_request *req, const char *name, const char *value) {
    if (req->n_headers == HTTP_MAX_REPLY_HEADERS) {
        return false;
    }
    char *copy = strdup(value);
    if (copy == NULL) {
        return false;
    }
    req->headers[req->n_headers].name = name;
    req->headers[req->n_headers].value = copy;
    req->n_headers++;
    return true;
}

/* "INSUFFICIENT_ABILITY" -> "insufficient-scope" (as RFC 6750 names it);
 * any other code in kebab case. */
static void problem_type(const char *code, char *out, size_t size) {
    if (strcmp(code, "INSUFFICIENT_ABILITY") == 0) {
        code = "INSUFFICIENT_SCOPE";
    }
    size_t k = (size_t)snprintf(out, size, "urn:tokend:problem:");
    for (const char *p = code; *p != '\0' && k + 1 < size; p++) {
        out[k++] = *p == '_' ? '-' : (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
    }
    out[k] = '\0';
}

/* The RFC 9457 document; NULL when out of memory. */
static json_t *problem_doc(int status, const char *code, const char *detail) {
    char type[96];
    problem_type(code, type, sizeof(type));
    const char *title = MHD_get_reason_phrase_for((unsigned)status);
    json_t *doc = json_object();
    json_t *detail_json = json_string(detail != NULL ? detail : "");
    if (detail_json == NULL) {
        /* Not UTF-8 (a confused peer's message): say so rather than fail. */
        detail_json = json_string("(detail withheld: not valid UTF-8)");
    }
    if (doc != NULL) {
        json_object_set_new(doc, "type", json_string(type));
        json_object_set_new(doc, "code", json_string(code));
        json_object_set_new(doc, "title", json_string(title));
        json_object_set_new(doc, "status", json_integer(status));
        json_object_set_new(doc, "detail", detail_json);
    } else {
        json_decref(detail_json);
    }
    return doc;
}

void http_reply_problem(http_request *req, int status, const char *code,
                        const char *detail) {
    http_reply_json(req, status, "application/problem+json",
                    problem_doc(status, code, detail));
    snprintf(req->code, sizeof(req->code), "%s", code);
    http_log_note(req, "code=%s", code);
}

/* Hands the reply built in req to MHD. */
static enum MHD_Result queue_reply(http_request *req) {
    if (req->status == 0) {
        LOG(LOG_ERROR, "bug", "handler gave no reply path_len=%zu", strlen(req->path));
        http_reply_problem(req, 500, "INTERNAL", "the gateway built no reply");
    }
    struct MHD_Response *resp;
    if (req->out != NULL) {
        resp = MHD_create_response_from_buffer_with_free_callback(req->out_len, req->out,
                                                                  json_block_free);
        if (resp != NULL) {
            req->out = NULL; /* MHD's now */
        }
    } else {
        resp = MHD_create_response_from_buffer(
            req->out_len, (void *)(req->out_static != NULL ? req->out_static : ""),
            MHD_RESPMEM_PERSISTENT);
    }
    if (resp == NULL) {
        return MHD_NO; /* out of memory: MHD closes the connection */
    }
    if (req->content_type != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, req->content_type);
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (req->srv->hsts != NULL) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_STRICT_TRANSPORT_SECURITY,
                                req->srv->hsts);
    }
    for (size_t i = 0; i < req->n_headers; i++) {
        /* MHD refuses values with CR or LF: such a header is dropped. */
        MHD_add_response_header(resp, req->headers[i].name, req->headers[i].value);
    }
    if (req->close || atomic_load(&req->srv->quiescing)) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    }
    enum MHD_Result ret = MHD_queue_response(req->conn, (unsigned)req->status, resp);
    MHD_destroy_response(resp);
    req->state = REQ_REPLIED;
    req->queued = ret == MHD_YES;
    return ret;
}

/* ------------------------------------------------------------------------
 * The request life cycle. */

typedef struct size_sum {
    size_t total;
} size_sum;

static enum MHD_Result add_size(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value) {
    size_sum *sum = cls;
    /* "Key: value\r\n" for a header, "key=value&" for a query parameter. */
    sum->total += strlen(key) + (value != NULL ? strlen(value) : 0) +
                  (kind == MHD_HEADER_KIND ? 4 : 2);
    return MHD_YES;
}

/* The size of the request line and header fields, as sent (give or take
 * the spaces MHD trimmed). */
static size_t header_block_size(struct MHD_Connection *conn, const char *method,
                                const char *url, const char *version) {
    size_sum sum = {strlen(method) + strlen(url) + strlen(version) + 5};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, add_size, &sum);
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, add_size, &sum);
    return sum.total;
}

/*
 * Framing (RFC 9112). libmicrohttpd 0.9.75 takes the first of two
 * Content-Length headers, reads a chunked body when Transfer-Encoding
 * comes with a Content-Length, keeps a header value only up to a NUL byte,
 * ends a line at a bare LF, joins folded lines, and keeps whitespace
 * before a colon as part of the name ("Content-Length :" frames nothing).
 * A proxy in front may read each of these differently, and what it takes
 * for one request's body the gateway would take for the next request
 * (request smuggling). So the head of every request is checked before
 * anything else looks at it, and any of these is a 400 and a closed
 * connection.
 *
 * What the API reports (names, values, how many) covers the headers'
 * count and characters. NUL bytes, bare LFs and folding are gone from
 * what it reports, so for those the head itself is read: libmicrohttpd
 * parses it in place in its read buffer, ending each line with a NUL in
 * place of CR and one in place of LF, and one in place of each header's
 * colon, and reports keys and values pointing into that buffer. A head
 * made of CRLF lines without NULs or folding is therefore exactly the
 * request line, then for each header "name\0", blanks, "value\0\0", then
 * "\0\0", with the keys in the order the API reports them; anything
 * else had one of those. A NUL right before an LF reads the same as a CR
 * and is not seen (the value is then cut at it). This relies on how
 * 0.9.75 parses, so it is done only with that version (http_start).
 */
static bool head_layout_known;

typedef struct head_walk {
    const char *start, *end; /* the head, in libmicrohttpd's read buffer */
    const char *next;        /* where the next header line must start */
    bool layout;             /* read the head itself */
    int content_lengths, transfer_encodings;
    const char *transfer_encoding; /* the first one's value */
    const char *fault;             /* why it is refused, or NULL */
    const char *fault_name;        /* the header it is about, or NULL */
    size_t fault_name_len;
} head_walk;

/* A token character of RFC 9110 §5.6.2 (header names, methods). */
static bool is_tchar(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* True if [p, p + n) lies within the head. */
static bool in_head(const head_walk *w, const char *p, size_t n) {
    uintptr_t a = (uintptr_t)p, lo = (uintptr_t)w->start, hi = (uintptr_t)w->end;
    return a >= lo && a <= hi && n <= hi - a;
}

/* True if a CRLF line end, as libmicrohttpd leaves it ("\0\0"), is at p. */
static bool crlf_at(const head_walk *w, const char *p) {
    return in_head(w, p, 2) && p[0] == '\0' && p[1] == '\0';
}

static enum MHD_Result walk_head(void *cls, enum MHD_ValueKind kind, const char *key,
                                 size_t key_size, const char *value, size_t value_size) {
    (void)kind;
    head_walk *w = cls;
    bool name_ok = key_size > 0;
    for (size_t i = 0; name_ok && i < key_size; i++) {
        name_ok = is_tchar(key[i]);
    }
    if (!name_ok) {
        w->fault = "a header name that is not a token (whitespace before its colon?)";
        return MHD_NO;
    }
    for (size_t i = 0; i < value_size; i++) {
        unsigned char c = (unsigned char)value[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            w->fault = "a control character in a header value";
            w->fault_name = key;
            w->fault_name_len = key_size;
            return MHD_NO;
        }
    }
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        w->content_lengths++;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        if (w->transfer_encodings++ == 0) {
            w->transfer_encoding = value;
        }
    }
    if (w->layout) {
        /* "name\0", blanks, "value\0\0", right where the last line ended. */
        const char *p = key + key_size;
        bool ok = key == w->next && in_head(w, p, 1) && *p == '\0';
        for (p++; ok && p != value; p++) {
            ok = in_head(w, p, 1) && (*p == ' ' || *p == '\t');
        }
        ok = ok && crlf_at(w, value + value_size);
        if (!ok) {
            w->fault =
                "a line not ended by CRLF, a NUL byte, or a folded line in the head";
            return MHD_NO;
        }
        w->next = value + value_size + 2;
    }
    return MHD_YES;
}

/* Why the head of the request is refused for its framing, or NULL. The
 * name of the header concerned, if any, goes to *name (not terminated). */
static const char *framing_fault(struct MHD_Connection *conn, const char *method,
                                 const char *version, const char **name,
                                 size_t *name_len) {
    head_walk w = {0};
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    if (head_layout_known && info != NULL) {
        w.start = method;
        w.end = method + info->header_size;
        /* The request line ends after the version (libmicrohttpd checked
         * it is HTTP/1.x): the first header line, or the blank line,
         * starts right after its CRLF. */
        const char *line_end = version + strlen(version);
        w.layout = in_head(&w, version, 1);
        if (w.layout && !crlf_at(&w, line_end)) {
            return "a line not ended by CRLF, a NUL byte, or a folded line in the head";
        }
        w.next = line_end + 2;
    }
    MHD_get_connection_values_n(conn, MHD_HEADER_KIND, walk_head, &w);
    *name = w.fault_name;
    *name_len = w.fault_name_len;
    if (w.fault != NULL) {
        return w.fault;
    }
    if (w.layout && !(crlf_at(&w, w.next) && w.next + 2 == w.end)) {
        return "a line not ended by CRLF, a NUL byte, or a folded line in the head";
    }
    if (w.content_lengths > 1) {
        return "more than one Content-Length header";
    }
    if (w.transfer_encodings > 0 && w.content_lengths > 0) {
        return "both Content-Length and Transfer-Encoding";
    }
    if (w.transfer_encodings > 1 ||
        (w.transfer_encodings == 1 && strcasecmp(w.transfer_encoding, "chunked") != 0)) {
        return "a Transfer-Encoding other than chunked";
    }
    if (w.transfer_encodings > 0 && strcmp(version, MHD_HTTP_VERSION_1_0) == 0) {
        return "Transfer-Encoding in an HTTP/1.0 request";
    }
    return NULL;
}

/*
 * Limits answered on MHD's first call, before any body is read. Everywhere
 * else the gateway replies on a later call (replying on the first call
 * makes libmicrohttpd close the connection after the reply); for a request
 * refused for its size that is exactly right: the body it announced is
 * never read, and the connection goes.
 */
static bool refuse_early(http_request *req, const char *version) {
    http_server *srv = req->srv;
    if (header_block_size(req->conn, req->method, req->path, version) > srv->max_header) {
        char detail[96];
        snprintf(detail, sizeof(detail),
                 "request line and headers exceed the limit of %zu bytes",
                 srv->max_header);
        http_reply_problem(req, 431, "HEADERS_TOO_LARGE", detail);
        req->close = true;
        return true;
    }
    const char *name = NULL;
    size_t name_len = 0;
    const char *fault = framing_fault(req->conn, req->method, version, &name, &name_len);
    if (fault != NULL) {
        char detail[160];
        snprintf(detail, sizeof(detail), "%s%s%.*s", fault, name != NULL ? ": " : "",
                 (int)(name_len < 48 ? name_len : 48), name != NULL ? name : "");
        http_reply_problem(req, 400, "BAD_REQUEST", detail);
        req->close = true;
        return true;
    }
    const char *length =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Content-Length");
    if (length != NULL) {
        char *end = NULL;
        errno = 0;
        unsigned long long n = strtoull(length, &end, 10);
        if (errno != 0 || n > srv->max_body) {
            char detail[80];
            snprintf(detail, sizeof(detail), "body exceeds the limit of %zu bytes",
                     srv->max_body);
            http_reply_problem(req, 413, "BODY_TOO_LARGE", detail);
            req->close = true;
            return true;
        }
    }
    return false;
}

/* Keeps body bytes up to max_body; past it, only notes that it overflowed
 * (the rest is read and dropped, and the reply is 413). */
static void take_body(http_request *req, const char *data, size_t size) {
    if (req->body_too_large) {
        return;
    }
    if (size > req->srv->max_body - req->body_len) {
        req->body_too_large = true;
        free(req->body);
        req->body = NULL;
        req->body_len = req->body_cap = 0;
        return;
    }
    if (req->body_len + size + 1 > req->body_cap) {
        size_t cap = req->body_cap > 0 ? req->body_cap : 1024;
        while (cap < req->body_len + size + 1) {
            cap *= 2;
        }
        char *grown = realloc(req->body, cap);
        if (grown == NULL) {
            req->body_too_large = true; /* as good an answer as any */
            return;
        }
        req->body = grown;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, size);
    req->body_len += size;
    req->body[req->body_len] = '\0';
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_size,
                                 void **req_cls) {
    http_server *srv = cls;
    http_request *req = *req_cls;
    if (req == (void *)&request_refused) {
        return MHD_NO; /* answered and shut down by refuse_query */
    }
    if (req == NULL) {
        req = calloc(1, sizeof(*req));
        if (req == NULL) {
            return MHD_NO;
        }
        clock_gettime(CLOCK_MONOTONIC, &req->started);
        req->srv = srv;
        req->conn = conn;
        req->hc = conn_of(conn);
        req->method = method;
        req->path = url;
        *req_cls = req;
        atomic_fetch_add(&srv->active, 1);
        if (refuse_early(req, version)) {
            return queue_reply(req);
        }
        return MHD_YES;
    }
    if (*upload_size > 0) {
        take_body(req, upload_data, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    switch (req->state) {
        case REQ_READING:
            if (req->hc != NULL) {
                atomic_store(&req->hc->arriving_since_ms, 0); /* it is whole */
            }
            if (req->body_too_large) {
                char detail[80];
                snprintf(detail, sizeof(detail), "body exceeds the limit of %zu bytes",
                         srv->max_body);
                http_reply_problem(req, 413, "BODY_TOO_LARGE", detail);
                break;
            }
            srv->h.handle(srv->h.cls, req);
            if (req->state == REQ_SUSPENDED) {
                return MHD_YES;
            }
            break;
        case REQ_SUSPENDED:
            req->state = REQ_READING;
            srv->h.resume(srv->h.cls, req);
            break;
        case REQ_REPLIED:
            return MHD_YES; /* MHD has the reply already */
    }
    return queue_reply(req);
}

void http_suspend(http_request *req) {
    req->state = REQ_SUSPENDED;
    MHD_suspend_connection(req->conn);
}

void http_resume(http_request *req) {
    MHD_resume_connection(req->conn);
}

/* The path for the log: segments long enough to be a token are redacted
 * (someone will paste a token into a URL), control bytes are escaped by
 * log_quote. */
static void log_path(const char *path, char *out, size_t size) {
    size_t k = 0;
    const char *p = path;
    while (*p != '\0' && k + 1 < size) {
        if (*p == '/') {
            out[k++] = *p++;
            continue;
        }
        size_t seg = strcspn(p, "/");
        const char *text = p;
        size_t n = seg;
        if (seg >= HTTP_LOG_SEGMENT_MAX) {
            text = "{redacted}";
            n = strlen(text);
        }
        if (n > size - 1 - k) {
            n = size - 1 - k;
        }
        memcpy(out + k, text, n);
        k += n;
        p += seg;
    }
    out[k] = '\0';
}

static const char *termination_name(enum MHD_RequestTerminationCode toe) {
    switch (toe) {
        case MHD_REQUEST_TERMINATED_COMPLETED_OK:
            return NULL;
        case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED:
            return "idle_timeout";
        case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN:
            return "shutdown";
        case MHD_REQUEST_TERMINATED_CLIENT_ABORT:
            return "client_closed";
        case MHD_REQUEST_TERMINATED_READ_ERROR:
            return "read_error";
        default:
            return "error";
    }
}

/* The method for the log: one of RFC 9110's (and PATCH) as sent, any
 * other as OTHER. A method is free text the client chose, and `curl -X`
 * puts whatever it is given there: a token, say. */
static const char *log_method(const char *method) {
    static const char *const known[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                        "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcmp(method, known[i]) == 0) {
            return known[i];
        }
    }
    return "OTHER";
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
    http_server *srv = cls;
    http_conn *hc = conn_of(conn);
    if (hc != NULL && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) {
        /* Answered: idle until its next request line (a shut connection
         * is no longer counted, and stays off the list). */
        pthread_mutex_lock(&srv->conns_mtx);
        idle_push(srv, hc);
        pthread_mutex_unlock(&srv->conns_mtx);
    }
    http_request *req = *req_cls;
    if (req == NULL || req == (void *)&request_refused) {
        return;
    }
    int status = req->queued ? req->status : 0;
    const char *failure = termination_name(toe);
    log_level level = status >= 500 || status == 0 ? LOG_WARN : LOG_INFO;
    if (level >= log_min_level) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long dur_us = (long long)(now.tv_sec - req->started.tv_sec) * 1000000 +
                           (now.tv_nsec - req->started.tv_nsec) / 1000;
        char path[300], qpath[340], qmethod[48];
        log_path(req->path, path, sizeof(path));
        log_write(level, "request",
                  "method=%s path=%s status=%d dur_us=%lld client=%s%s%s%s%s",
                  log_quote(qmethod, sizeof(qmethod), log_method(req->method)),
                  log_quote(qpath, sizeof(qpath), path), status, dur_us,
                  req->hc != NULL ? req->hc->client : "-", req->note_len > 0 ? " " : "",
                  req->note, failure ? " error=" : "", failure ? failure : "");
    }
    if (srv->h.finished != NULL) {
        srv->h.finished(srv->h.cls, req, status);
    }
    if (req->data != NULL) {
        srv->h.release(srv->h.cls, req->data);
    }
    reply_clear(req);
    free(req->body);
    free(req);
    *req_cls = NULL;
    atomic_fetch_add(&srv->served, 1);
    atomic_fetch_sub(&srv->active, 1);
}

/* Paths and query parameters are handed over as sent: the handlers decode
 * what they need, and "%2e%2e" or "%00" never turn into something else
 * before a route is matched. */
static size_t on_unescape(void *cls, struct MHD_Connection *conn, char *s) {
    (void)cls;
    (void)conn;
    return strlen(s);
}

/* libmicrohttpd's own messages: errors while starting (bind failures),
 * debug afterwards (they are about clients' mistakes, one per bad
 * connection). */
static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    http_server *srv = cls;
    log_level level = atomic_load(&srv->starting) ? LOG_ERROR : LOG_DEBUG;
    if (level < log_min_level) {
        return;
    }
    char msg[512], q[560];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) {
        msg[--n] = '\0';
    }
    log_write(level, "mhd", "msg=%s", log_quote(q, sizeof(q), msg));
}

/* ------------------------------------------------------------------------
 * Accessors. */

const char *http_method(const http_request *req) {
    return req->method;
}

const char *http_path(const http_request *req) {
    return req->path;
}

const char *http_body(const http_request *req, size_t *len) {
    *len = req->body_len;
    return req->body != NULL ? req->body : "";
}

const char *http_header(const http_request *req, const char *name) {
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

typedef struct header_count {
    const char *name;
    int n;
} header_count;

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value) {
    (void)kind;
    (void)value;
    header_count *hc = cls;
    if (strcasecmp(key, hc->name) == 0) {
        hc->n++;
    }
    return MHD_YES;
}

int http_header_count(const http_request *req, const char *name) {
    header_count hc = {name, 0};
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, count_header, &hc);
    return hc.n;
}

typedef struct header_walk {
    const char *name;
    bool (*fn)(void *cls, const char *value);
    void *cls;
} header_walk;

static enum MHD_Result walk_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value) {
    (void)kind;
    header_walk *w = cls;
    if (strcasecmp(key, w->name) != 0) {
        return MHD_YES;
    }
    return w->fn(w->cls, value != NULL ? value : "") ? MHD_YES : MHD_NO;
}

void http_header_each(const http_request *req, const char *name,
                      bool (*fn)(void *cls, const char *value), void *cls) {
    header_walk w = {name, fn, cls};
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, walk_header, &w);
}

const struct sockaddr *http_peer(const http_request *req) {
    const struct sockaddr *sa = peer_of(req->conn);
    if (sa == NULL || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)) {
        return NULL;
    }
    return sa;
}

typedef struct query_walk {
    bool (*fn)(void *cls, const char *key, const char *value);
    void *cls;
    bool stopped;
} query_walk;

static enum MHD_Result walk_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value) {
    (void)kind;
    query_walk *w = cls;
    if (!w->fn(w->cls, key, value)) {
        w->stopped = true;
        return MHD_NO;
    }
    return MHD_YES;
}

bool http_query_each(const http_request *req,
                     bool (*fn)(void *cls, const char *key, const char *value),
                     void *cls) {
    query_walk w = {fn, cls, false};
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, walk_query, &w);
    return !w.stopped;
}

void http_set_data(http_request *req, void *data) {
    req->data = data;
}

void *http_data(const http_request *req) {
    return req->data;
}

void http_log_note(http_request *req, const char *fmt, ...) {
    if (req->note_len >= sizeof(req->note) - 2) {
        return;
    }
    if (req->note_len > 0) {
        req->note[req->note_len++] = ' ';
    }
    va_list ap;
    va_start(ap, fmt);
    int n =
        vsnprintf(req->note + req->note_len, sizeof(req->note) - req->note_len, fmt, ap);
    va_end(ap);
    if (n > 0) {
        req->note_len += (size_t)n;
        if (req->note_len >= sizeof(req->note)) {
            req->note_len = sizeof(req->note) - 1;
        }
    }
    req->note[req->note_len] = '\0';
}

/* ------------------------------------------------------------------------
 * Starting and stopping. */

/* Binds a socket to `addr` as libmicrohttpd is about to (SO_REUSEADDR and
 * SO_REUSEPORT, IPv6 only for an IPv6 address), then closes it. A port
 * another process holds is refused here, with its errno turned into the
 * reason and the way out; libmicrohttpd's own bind failure names neither
 * (its message says "port 0" when given a socket address). Gateways that
 * share a port (SO_REUSEPORT) pass, as they do in libmicrohttpd. */
static int listen_probe(const struct sockaddr_storage *addr, bool v6, const char *listen,
                        tokend_error *err) {
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return error_set(err, TOKEND_UNAVAILABLE, "cannot listen on %s: socket: %s",
                         listen, strerror(errno));
    }
    int on = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
    if (v6) {
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
    }
    socklen_t len = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int rc = bind(fd, (const struct sockaddr *)addr, len);
    int e = errno;
    close(fd);
    if (rc == 0) {
        return TOKEND_OK;
    }
    const char *why = e == EADDRINUSE      ? "address already in use (another process "
                                             "listens there)"
                      : e == EACCES        ? "permission denied (a port below 1024 needs "
                                             "root)"
                      : e == EADDRNOTAVAIL ? "no such address on this host"
                                           : strerror(e);
    return error_set(err, TOKEND_UNAVAILABLE,
                     "cannot listen on %s: %s; pick another with --listen HOST:PORT or "
                     "TOKEND_GATEWAY_LISTEN",
                     listen, why);
}

size_t http_fds_needed(const http_config *cfg) {
    size_t conns = (size_t)cfg->max_connections + HTTP_CONN_RESERVE(cfg->max_connections);
    return conns + HTTP_FDS_FIXED + HTTP_FDS_PER_THREAD * (size_t)cfg->threads;
}

int http_start(const http_config *cfg, const http_handlers *handlers, http_server **out,
               tokend_error *err) {
    *out = NULL;
    if (cfg->max_connections < 1 || cfg->max_connections_per_ip < 1) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "the connection limits must be at least 1");
    }
    struct sockaddr_storage addr;
    bool v6 = false;
    if (!listen_addr_parse(cfg->listen, &addr, &v6)) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "--listen must be IPv4:PORT or [IPv6]:PORT, not \"%s\"",
                         cfg->listen);
    }
    int rv = listen_probe(&addr, v6, cfg->listen, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    http_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        return error_set(err, TOKEND_INTERNAL, "out of memory");
    }
    srv->h = *handlers;
    srv->max_body = cfg->max_body;
    srv->max_header = cfg->max_header;
    srv->request_timeout_ms = (int64_t)cfg->request_timeout_s * 1000;
    srv->tls = cfg->tls_cert_pem != NULL;
    srv->max_conns = cfg->max_connections;
    srv->max_conns_per_addr = cfg->max_connections_per_ip;
    /* A bucket per connection at most, a power of two. */
    size_t buckets = 64;
    while (buckets < (size_t)cfg->max_connections && buckets < ((size_t)1 << 20)) {
        buckets *= 2;
    }
    srv->addr_mask = buckets - 1;
    srv->addrs = calloc(buckets, sizeof(*srv->addrs));
    if (srv->addrs == NULL || getrandom(&srv->addr_seed, sizeof(srv->addr_seed), 0) !=
                                  (ssize_t)sizeof(srv->addr_seed)) {
        free(srv->addrs);
        free(srv);
        return error_set(err, TOKEND_INTERNAL, "cannot set up the connection table");
    }
    atomic_init(&srv->starting, true);
    pthread_condattr_t cattr;
    pthread_condattr_init(&cattr);
    pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
    pthread_cond_init(&srv->watchdog_cv, &cattr);
    pthread_condattr_destroy(&cattr);
    pthread_mutex_init(&srv->conns_mtx, NULL);

    /* The connection's memory pool holds the request's headers, then the
     * reply's headers (X-Token-Abilities can take a few KiB), and serves
     * as the read buffer. Twice --max-header plus room for the reply lets
     * the check in refuse_early answer 431 with a problem body; past the
     * pool, libmicrohttpd's own 431 is the backstop. Plus the records of
     * up to HTTP_MAX_QUERY_PARAMS query parameters. Not larger:
     * libmicrohttpd zeroes the pool between requests. */
    size_t pool = 2 * cfg->max_header + 8 * 1024 +
                  HTTP_MAX_QUERY_PARAMS * HTTP_QUERY_PARAM_POOL_BYTES;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (v6) {
        flags |= MHD_USE_IPv6;
    }
    struct MHD_OptionItem ops[24];
    size_t n = 0;
#define OPT(o, v, p) ops[n++] = (struct MHD_OptionItem){(o), (intptr_t)(v), (void *)(p)}
    /* The logger first, so that MHD's messages about the options after
     * it come through it too. */
    OPT(MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv);
    OPT(MHD_OPTION_SOCK_ADDR, 0, &addr);
    OPT(MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, NULL);
    if (cfg->threads > 1) {
        OPT(MHD_OPTION_THREAD_POOL_SIZE, cfg->threads, NULL);
    }
    OPT(MHD_OPTION_CONNECTION_TIMEOUT, cfg->idle_timeout_s, NULL);
    /* Not MHD_OPTION_PER_IP_CONNECTION_LIMIT: past it libmicrohttpd closes
     * a new connection without a word, and past its own connection limit
     * it stops accepting, so new clients wait unanswered in the backlog.
     * The gateway's limits (conn_admit) are lower, close idle connections
     * first, and answer 503. */
    OPT(MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(cfg->max_connections + HTTP_CONN_RESERVE(cfg->max_connections)), NULL);
    OPT(MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool, NULL);
    OPT(MHD_OPTION_STRICT_FOR_CLIENT, 1, NULL);
    OPT(MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv);
    OPT(MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv);
    OPT(MHD_OPTION_URI_LOG_CALLBACK, on_request_line, srv);
    OPT(MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, srv);
    if (cfg->tls_cert_pem != NULL) {
        flags |= MHD_USE_TLS;
        OPT(MHD_OPTION_HTTPS_MEM_CERT, 0, cfg->tls_cert_pem);
        OPT(MHD_OPTION_HTTPS_MEM_KEY, 0, cfg->tls_key_pem);
        OPT(MHD_OPTION_HTTPS_PRIORITIES, 0, HTTP_TLS_PRIORITIES);
        srv->hsts = cfg->hsts;
    }
    OPT(MHD_OPTION_END, 0, NULL);
#undef OPT

    errno = 0;
    srv->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_access, srv, MHD_OPTION_ARRAY,
                                   ops, MHD_OPTION_END);
    if (srv->daemon == NULL) {
        int e = errno;
        pthread_cond_destroy(&srv->watchdog_cv);
        pthread_mutex_destroy(&srv->conns_mtx);
        free(srv->addrs);
        free(srv);
        return error_set(err, TOKEND_UNAVAILABLE, "cannot serve on %s%s%s", cfg->listen,
                         e != 0 ? ": " : " (see the log above)",
                         e != 0 ? strerror(e) : "");
    }
    /* framing_fault reads the head as libmicrohttpd 0.9.75 leaves it. */
    head_layout_known = strcmp(MHD_get_version(), "0.9.75") == 0;
    if (!head_layout_known) {
        LOG(LOG_WARN, "framing",
            "msg=\"libmicrohttpd %s, not 0.9.75: bare LF line ends, NUL bytes and folded "
            "lines in a request head are not refused\"",
            MHD_get_version());
    }
    atomic_store(&srv->starting, false);
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info != NULL ? info->port : 0;
    if (pthread_create(&srv->watchdog, NULL, watchdog_main, srv) == 0) {
        srv->watchdog_running = true;
    } else {
        LOG(LOG_WARN, "watchdog",
            "msg=\"cannot start: --request-timeout-s not enforced\"");
    }
    *out = srv;
    return TOKEND_OK;
}

int http_port(http_server *srv) {
    return srv->port;
}

bool http_serve_fd(http_server *srv, int fd) {
    /* libmicrohttpd wants a peer address; nothing here reads it. */
    struct sockaddr_in peer = {.sin_family = AF_INET};
    peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return MHD_add_connection(srv->daemon, fd, (const struct sockaddr *)&peer,
                              sizeof(peer)) == MHD_YES;
}

int http_quiesce(http_server *srv, int wait_ms) {
    atomic_store(&srv->quiescing, true);
    MHD_socket fd = MHD_quiesce_daemon(srv->daemon);
    if (fd != MHD_INVALID_SOCKET) {
        close(fd);
    }
    for (int waited = 0; atomic_load(&srv->active) > 0 && waited < wait_ms; waited += 5) {
        usleep(5 * 1000);
    }
    return atomic_load(&srv->active);
}

uint64_t http_stop(http_server *srv) {
    if (srv->watchdog_running) {
        pthread_mutex_lock(&srv->conns_mtx);
        srv->watchdog_stop = true;
        pthread_cond_signal(&srv->watchdog_cv);
        pthread_mutex_unlock(&srv->conns_mtx);
        pthread_join(srv->watchdog, NULL);
    }
    MHD_stop_daemon(srv->daemon);
    uint64_t served = atomic_load(&srv->served);
    pthread_cond_destroy(&srv->watchdog_cv);
    pthread_mutex_destroy(&srv->conns_mtx);
    free(srv->addrs); /* every record went with its last connection */
    free(srv);
    return served;
}
