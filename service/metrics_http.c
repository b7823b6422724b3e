/*
 * metrics_http.c — the --metrics-listen listener (metrics_http.h).
 *
 * The socket is bound here, not by libmicrohttpd, so that a taken port is
 * reported with its reason and the way out, as the RPC listeners do
 * (libmicrohttpd's own bind failure names neither).
 */
#include "metrics_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "error.h"
#include "listen.h"
#include "log.h"

/* A scraper or two, and an operator's curl. */
#define METRICS_HTTP_CONNECTIONS 16
#define METRICS_HTTP_TIMEOUT_S 10
/* A request is a line and a few headers. */
#define METRICS_HTTP_POOL (32 * 1024)

struct metrics_http {
    struct MHD_Daemon *daemon;
    const metrics_page *page;
    int port;
};

bool metrics_http_listen_ok(const char *listen) {
    struct sockaddr_storage ss;
    bool v6;
    return listen_addr_parse(listen, &ss, &v6);
}

/* A listening socket on `listen` into *out; the status, with the reason
 * in *err. */
static int listen_socket(const char *where, int *out, tokend_error *err) {
    struct sockaddr_storage addr;
    bool v6 = false;
    *out = -1;
    if (!listen_addr_parse(where, &addr, &v6)) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "--metrics-listen must be IPv4:PORT or [IPv6]:PORT, not \"%s\"",
                         where);
    }
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int on = 1;
    if (fd >= 0) {
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
        if (v6) {
            (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
        }
    }
    socklen_t len = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (fd < 0 || bind(fd, (const struct sockaddr *)&addr, len) != 0 ||
        listen(fd, 16) != 0) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
        }
        const char *why = e == EADDRINUSE      ? "address already in use (another "
                                                 "process listens there)"
                          : e == EACCES        ? "permission denied (a port below "
                                                 "1024 needs root)"
                          : e == EADDRNOTAVAIL ? "no such address on this host"
                                               : strerror(e);
        return error_set(err, TOKEND_UNAVAILABLE,
                         "cannot listen on %s: %s; pick another with --metrics-listen "
                         "ADDR:PORT or TOKEND_METRICS_LISTEN",
                         where, why);
    }
    *out = fd;
    return TOKEND_OK;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status,
                                  const char *text) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text,
                                                             MHD_RESPMEM_PERSISTENT);
    if (r == NULL) {
        return MHD_NO;
    }
    (void)MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
    enum MHD_Result rv = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rv;
}

/* The page, rendered afresh for each scrape. */
static enum MHD_Result reply_page(const metrics_http *mh, struct MHD_Connection *conn) {
    metrics_out out;
    metrics_out_init(&out, 0);
    tokend_error err;
    if (metrics_page_render(mh->page, &out, &err) != TOKEND_OK) {
        char q[200];
        LOG(LOG_WARN, "metrics.render_failed", "error=%s",
            log_quote(q, sizeof(q), err.message));
        metrics_out_free(&out);
        return reply_text(conn, 500, "the metrics page could not be rendered\n");
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer_with_free_callback(out.len, out.buf, free);
    if (r == NULL) {
        metrics_out_free(&out);
        return MHD_NO;
    }
    (void)MHD_add_response_header(r, "Content-Type", METRICS_CONTENT_TYPE);
    enum MHD_Result rv = MHD_queue_response(conn, 200, r);
    MHD_destroy_response(r);
    return rv;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_size,
                                 void **req_cls) {
    (void)version;
    (void)upload_data;
    if (*req_cls == NULL) {
        *req_cls = conn; /* headers are in: answer on the next call */
        return MHD_YES;
    }
    if (*upload_size != 0) {
        *upload_size = 0; /* a body is not read, only skipped */
        return MHD_YES;
    }
    if (strcmp(url, "/metrics") != 0) {
        return reply_text(conn, 404, "only /metrics is served here\n");
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        return reply_text(conn, 405, "GET /metrics only\n");
    }
    return reply_page(cls, conn);
}

int metrics_http_start(const char *listen, const metrics_page *page, metrics_http **out,
                       tokend_error *err) {
    *out = NULL;
    int fd = -1;
    int rv = listen_socket(listen, &fd, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    metrics_http *mh = calloc(1, sizeof(*mh));
    if (mh == NULL) {
        close(fd);
        return error_set(err, TOKEND_INTERNAL, "out of memory");
    }
    mh->page = page;
    mh->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL, on_access, mh,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)METRICS_HTTP_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)METRICS_HTTP_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)METRICS_HTTP_POOL, MHD_OPTION_END);
    if (mh->daemon == NULL) {
        close(fd);
        free(mh);
        return error_set(err, TOKEND_INTERNAL, "cannot serve metrics on %s", listen);
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(mh->daemon, MHD_DAEMON_INFO_BIND_PORT);
    mh->port = info != NULL ? info->port : 0;
    *out = mh;
    return TOKEND_OK;
}

int metrics_http_port(const metrics_http *mh) {
    return mh->port;
}

void metrics_http_stop(metrics_http *mh) {
    if (mh == NULL) {
        return;
    }
    MHD_stop_daemon(mh->daemon); /* closes the listening socket too */
    free(mh);
}
