/*
 * soak.c — `make soak`: a long mixed load through tokend-gateway, watching
 * the resident memory of tokend and the gateway.
 *
 * It starts the real tokend (fresh store in a temporary dir, ipc://) and
 * tokend-gateway (127.0.0.1, a free port), then runs --threads clients,
 * each on one keep-alive HTTP/1.1 connection and its own owner, paced to
 * --rate requests a second in all. Each client mixes creates, auth checks
 * of valid tokens, of tokens lacking the ability asked for, of revoked,
 * malformed and missing tokens, its own token, listings, revokes by id,
 * revokes of unknown ids and revoke-all of a group. Every request has one
 * expected status; 401, 403 and 404 are provoked on purpose and counted
 * apart. Anything else (another status, a broken connection, a level=error
 * line in either log, an unclean exit) is unexpected.
 *
 * The warm-up runs write-heavy (see pick), so that RocksDB's memtables and
 * cache reach their configured bounds first; then the mix runs, unpaced
 * unless --rate is given. tokend runs with an 8 MiB block cache and 16 MiB
 * of memtables (its defaults are 32 and 64) so that they fill within the
 * warm-up: at the defaults the slower column families take longer than
 * ten minutes to reach their write-buffer size, and that bounded growth
 * would read as a leak. VmRSS of both processes is sampled every 5 s. The
 * warm-up lasts at least --warmup seconds and until tokend's RSS has
 * grown by less than 1% over the last PLATEAU_S seconds (its caches are
 * full), at most half the run. Pass: no unexpected error, and for each
 * process the highest RSS after the warm-up (to the end) less than 5%
 * above the highest of the warm-up: a leak grows past it, a full cache
 * does not.
 *
 * Usage: soak [--seconds N] [--warmup N] [--threads N] [--rate N]
 *   (defaults: SOAK_SECONDS or 600; 120 or a quarter of it; 4; 0 =
 *   unpaced).
 *   Exit 0 on PASS.
 * Binaries are found beside it (build/tests/soak -> build/tokend).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 32
#define POOL 100     /* live tokens a client keeps */
#define REVOKED 16   /* revoked tokens a client remembers */
#define TOKEN_MAX 96 /* plain-text token, with room */
#define ID_MAX 24
#define GROWTH_LIMIT 5.0 /* percent */
#define PLATEAU_S 60     /* the window over which the warm-up's end is judged */
/* tokend's block cache and memtable budget in the soak (defaults 32 and
 * 64 MiB): small enough to fill within the warm-up at the soak's rate. */
#define SOAK_CACHE_MB "8"
#define SOAK_MEMTABLE_MB "16"

/* ------------------------------------------------------------------------
 * Request kinds: what each expects. */

enum kind {
    K_CREATE,
    K_AUTH_OK,
    K_SELF,
    K_LIST,
    K_REVOKE_ID,
    K_REVOKE_ALL,
    K_AUTH_SCOPE,     /* provoked: 403 */
    K_AUTH_REVOKED,   /* provoked: 401 */
    K_AUTH_MALFORMED, /* provoked: 401 */
    K_AUTH_MISSING,   /* provoked: 401 */
    K_REVOKE_UNKNOWN, /* provoked: 404 */
    K_COUNT
};

static const struct {
    const char *name;
    int expect;
    int weight; /* of the random mix; revoke-all also creates and checks */
} kinds[K_COUNT] = {
    [K_CREATE] = {"create (POST /v1/tokens)", 201, 10},
    [K_AUTH_OK] = {"auth, valid token", 200, 40},
    [K_SELF] = {"self (GET /v1/tokens/self)", 200, 5},
    [K_LIST] = {"list (GET /v1/tokens)", 200, 8},
    [K_REVOKE_ID] = {"revoke one (DELETE /v1/tokens/{id})", 204, 10},
    [K_REVOKE_ALL] = {"revoke all (DELETE /v1/tokens)", 204, 1},
    [K_AUTH_SCOPE] = {"auth, missing ability", 403, 8},
    [K_AUTH_REVOKED] = {"auth, revoked token", 401, 5},
    [K_AUTH_MALFORMED] = {"auth, malformed token", 401, 4},
    [K_AUTH_MISSING] = {"auth, no token", 401, 2},
    [K_REVOKE_UNKNOWN] = {"revoke, unknown id", 404, 2},
};

/* ------------------------------------------------------------------------
 * Shared state. */

static char bin_dir[PATH_MAX];
static char work_dir[64];
static char admin_token[TOKEN_MAX];
static int gw_port;
static atomic_bool stop_flag;
static atomic_bool warming = true; /* cleared by the sampler at the warm-up's end */
static atomic_ulong sent[K_COUNT], as_expected[K_COUNT], unexpected[K_COUNT];
static atomic_ulong conn_errors;
static int n_threads = 4;
static double rate = 0;
static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;
static int reports; /* unexpected answers printed so far (at most 20) */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "soak: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* ------------------------------------------------------------------------
 * Processes. */

static pid_t spawn(const char *const *argv, const char *log_path, int out_fd) {
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (log_fd < 0) {
        die("cannot open %s: %s", log_path, strerror(errno));
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        die("fork: %s", strerror(errno));
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(out_fd >= 0 ? out_fd : devnull, 1);
        dup2(log_fd, 2);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(log_fd);
    return pid;
}

static int wait_exit(pid_t pid) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* VmRSS of `pid` in KiB, or 0. */
static long rss_kib(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmRSS: %ld", &kib) == 1) {
            break;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return kib;
}

/* Lines of `path` containing `needle`. */
static unsigned long count_lines(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    char line[8192];
    unsigned long n = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        n += strstr(line, needle) != NULL;
    }
    if (f != NULL) {
        fclose(f);
    }
    return n;
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        die("cannot find a free port: %s", strerror(errno));
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* ------------------------------------------------------------------------
 * HTTP/1.1 over one keep-alive connection. */

typedef struct conn {
    int fd;
    char buf[1 << 16];
    size_t len; /* bytes of buf holding unread response data */
} conn;

static bool conn_open(conn *c) {
    c->len = 0;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) {
        return false;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct timeval tv = {.tv_sec = 10};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)gw_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(c->fd);
        c->fd = -1;
        return false;
    }
    return true;
}

static void conn_close(conn *c) {
    if (c->fd >= 0) {
        close(c->fd);
    }
    c->fd = -1;
    c->len = 0;
}

/* Reads until buf holds at least `want` bytes; false on EOF or error. */
static bool fill_to(conn *c, size_t want) {
    while (c->len < want) {
        if (want > sizeof(c->buf)) {
            return false;
        }
        ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return false;
        }
        c->len += (size_t)r;
    }
    return true;
}

/* One request; returns the status (0: the connection failed) and copies
 * the body (NUL-terminated, truncated) into `body`. */
static int http(conn *c, const char *method, const char *path, const char *bearer,
                const char *json, char *body, size_t body_size) {
    if (c->fd < 0 && !conn_open(c)) {
        return 0;
    }
    char auth[TOKEN_MAX + 32] = "", content[96] = "", req[4096];
    if (bearer != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", bearer);
    }
    if (json != NULL) {
        snprintf(content, sizeof(content),
                 "Content-Type: application/json\r\nContent-Length: %zu\r\n",
                 strlen(json));
    }
    int n =
        snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s%s\r\n%s",
                 method, path, gw_port, auth, content, json != NULL ? json : "");
    if (n <= 0 || (size_t)n >= sizeof(req)) {
        return 0;
    }
    for (size_t off = 0; off < (size_t)n;) {
        ssize_t w = send(c->fd, req + off, (size_t)n - off, MSG_NOSIGNAL);
        if (w <= 0) {
            conn_close(c);
            return 0;
        }
        off += (size_t)w;
    }
    /* Headers. */
    char *end = NULL;
    while ((end = memmem(c->buf, c->len, "\r\n\r\n", 4)) == NULL) {
        if (!fill_to(c, c->len + 1)) {
            conn_close(c);
            return 0;
        }
    }
    size_t head_len = (size_t)(end - c->buf) + 4;
    int status = 0;
    if (sscanf(c->buf, "HTTP/1.1 %d", &status) != 1) {
        conn_close(c);
        return 0;
    }
    size_t clen = 0;
    bool close_after = false;
    for (char *line = c->buf; line < end;) {
        char *nl = memmem(line, (size_t)(end - line) + 2, "\r\n", 2);
        if (nl == NULL) {
            break;
        }
        if (strncasecmp(line, "Content-Length:", 15) == 0) {
            clen = strtoul(line + 15, NULL, 10);
        } else if (strncasecmp(line, "Connection:", 11) == 0 &&
                   memmem(line, (size_t)(nl - line), "close", 5) != NULL) {
            close_after = true;
        } else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0) {
            conn_close(c); /* never sent by the gateway: unexpected */
            return 0;
        }
        line = nl + 2;
    }
    if (strcmp(method, "HEAD") == 0) {
        clen = 0;
    }
    if (!fill_to(c, head_len + clen)) {
        conn_close(c);
        return 0;
    }
    if (body != NULL && body_size > 0) {
        size_t k = clen < body_size - 1 ? clen : body_size - 1;
        memcpy(body, c->buf + head_len, k);
        body[k] = '\0';
    }
    memmove(c->buf, c->buf + head_len + clen, c->len - head_len - clen);
    c->len -= head_len + clen;
    if (close_after) {
        conn_close(c);
    }
    return status;
}

/* Copies the string value of "key" in a flat JSON text into out. */
static bool json_str(const char *json, const char *key, char *out, size_t size) {
    char pat[32];
    snprintf(pat, sizeof(pat), "\"%s\":\"", key);
    const char *p = strstr(json, pat);
    if (p == NULL) {
        return false;
    }
    p += strlen(pat);
    size_t n = strcspn(p, "\"");
    if (n == 0 || n >= size) {
        return false;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

/* ------------------------------------------------------------------------
 * A client. */

typedef struct client {
    int index;
    conn c;
    uint64_t rng;
    char owner[32];
    char pool_token[POOL][TOKEN_MAX];
    char pool_id[POOL][ID_MAX];
    int pool_n;
    char revoked[REVOKED][TOKEN_MAX];
    int revoked_n, revoked_next;
    unsigned long groups;
    char body[1 << 15];
} client;

static uint64_t rnd(client *cl) {
    uint64_t x = cl->rng; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    cl->rng = x;
    return x;
}

/* Counts one answer; prints the first unexpected ones. */
static bool tally(client *cl, enum kind k, int status) {
    atomic_fetch_add(&sent[k], 1);
    if (status == kinds[k].expect) {
        atomic_fetch_add(&as_expected[k], 1);
        return true;
    }
    if (status == 0) {
        atomic_fetch_add(&conn_errors, 1);
    }
    atomic_fetch_add(&unexpected[k], 1);
    pthread_mutex_lock(&report_lock);
    if (reports++ < 20) {
        fprintf(stderr, "soak: client %d: %s: got %d, want %d: %.300s\n", cl->index,
                kinds[k].name, status, kinds[k].expect, cl->body);
    }
    pthread_mutex_unlock(&report_lock);
    return false;
}

static void remember_revoked(client *cl, const char *token) {
    memcpy(cl->revoked[cl->revoked_next], token, TOKEN_MAX); /* a pool slot */
    cl->revoked_next = (cl->revoked_next + 1) % REVOKED;
    if (cl->revoked_n < REVOKED) {
        cl->revoked_n++;
    }
}

/* POST /v1/tokens as the admin for `owner`; on 201 copies token and id. */
static bool create(client *cl, const char *owner, const char *abilities, char *token,
                   char *id) {
    char json[512];
    snprintf(json, sizeof(json),
             "{\"owner\":\"%s\",\"name\":\"soak %lu\",\"abilities\":[%s],"
             "\"expires_in\":3600,\"metadata\":{\"run\":\"soak\"}}",
             owner, (unsigned long)(rnd(cl) % 1000000), abilities);
    int status =
        http(&cl->c, "POST", "/v1/tokens", admin_token, json, cl->body, sizeof(cl->body));
    if (!tally(cl, K_CREATE, status)) {
        return false;
    }
    if (!json_str(cl->body, "token", token, TOKEN_MAX) ||
        !json_str(cl->body, "id", id, ID_MAX)) {
        tally(cl, K_CREATE, -1); /* a 201 without a token: unexpected */
        return false;
    }
    return true;
}

static void op_create(client *cl) {
    char token[TOKEN_MAX], id[ID_MAX];
    if (create(cl, cl->owner, "\"orders:read\",\"orders:list\"", token, id)) {
        snprintf(cl->pool_token[cl->pool_n], TOKEN_MAX, "%s", token);
        snprintf(cl->pool_id[cl->pool_n], ID_MAX, "%s", id);
        cl->pool_n++;
    }
}

static void op_revoke_id(client *cl) {
    int i = (int)(rnd(cl) % (uint64_t)cl->pool_n);
    char path[64];
    snprintf(path, sizeof(path), "/v1/tokens/%s", cl->pool_id[i]);
    int status =
        http(&cl->c, "DELETE", path, admin_token, NULL, cl->body, sizeof(cl->body));
    if (tally(cl, K_REVOKE_ID, status)) {
        remember_revoked(cl, cl->pool_token[i]);
    }
    /* Whatever the answer, the slot is reused (an unexpected answer is
     * already counted). */
    cl->pool_n--;
    memcpy(cl->pool_token[i], cl->pool_token[cl->pool_n], TOKEN_MAX);
    memcpy(cl->pool_id[i], cl->pool_id[cl->pool_n], ID_MAX);
}

/* A group: a session token with tokens:write and a second token, both of
 * a fresh owner; DELETE /v1/tokens as the session; the second is gone. */
static void op_revoke_all(client *cl) {
    char owner[64], session[TOKEN_MAX], other[TOKEN_MAX], id[ID_MAX];
    snprintf(owner, sizeof(owner), "%s:group%lu", cl->owner, cl->groups++);
    if (!create(cl, owner, "\"tokens:write\",\"orders:read\"", session, id) ||
        !create(cl, owner, "\"orders:read\"", other, id)) {
        return;
    }
    int status =
        http(&cl->c, "DELETE", "/v1/tokens", session, NULL, cl->body, sizeof(cl->body));
    if (tally(cl, K_REVOKE_ALL, status)) {
        status = http(&cl->c, "GET", "/v1/auth?ability=orders:read", other, NULL,
                      cl->body, sizeof(cl->body));
        tally(cl, K_AUTH_REVOKED, status);
    }
}

static void op_auth(client *cl, enum kind k) {
    const char *bearer = NULL;
    const char *path = "/v1/auth?ability=orders:read";
    char malformed[TOKEN_MAX];
    switch (k) {
        case K_AUTH_OK:
        case K_AUTH_SCOPE:
        case K_SELF:
            bearer = cl->pool_token[rnd(cl) % (uint64_t)cl->pool_n];
            path = k == K_AUTH_SCOPE ? "/v1/auth?ability=orders:write&ability=orders:read"
                   : k == K_SELF     ? "/v1/tokens/self"
                                     : "/v1/auth?ability=orders:read&ability=orders:list";
            break;
        case K_AUTH_REVOKED:
            bearer = cl->revoked[rnd(cl) % (uint64_t)cl->revoked_n];
            break;
        case K_AUTH_MALFORMED:
            /* A pool token with one character changed: the checksum fails. */
            snprintf(malformed, sizeof(malformed), "%s",
                     cl->pool_token[rnd(cl) % (uint64_t)cl->pool_n]);
            malformed[10] = malformed[10] == 'A' ? 'B' : 'A';
            bearer = malformed;
            break;
        default: /* K_AUTH_MISSING */
            break;
    }
    tally(cl, k, http(&cl->c, "GET", path, bearer, NULL, cl->body, sizeof(cl->body)));
}

static void op_list(client *cl) {
    char path[96];
    snprintf(path, sizeof(path), "/v1/tokens?owner=%s&limit=50", cl->owner);
    tally(cl, K_LIST,
          http(&cl->c, "GET", path, admin_token, NULL, cl->body, sizeof(cl->body)));
}

static void op_revoke_unknown(client *cl) {
    char path[64];
    snprintf(path, sizeof(path), "/v1/tokens/soak%012llu",
             (unsigned long long)(rnd(cl) % 1000000000000ULL));
    tally(cl, K_REVOKE_UNKNOWN,
          http(&cl->c, "DELETE", path, admin_token, NULL, cl->body, sizeof(cl->body)));
}

/* The warm-up is write-heavy and unpaced: RocksDB's memory (memtables up
 * to their size, then flushed; the block cache) grows until it reaches
 * its configured bounds, and that growth, by design, must be over before
 * RSS is compared. It still sends every kind of request, so that each
 * path's first allocations also fall in it. */
static int weight(enum kind k, bool warm) {
    if (warm && (k == K_CREATE || k == K_REVOKE_ID)) {
        return 80;
    }
    return kinds[k].weight;
}

static enum kind pick(client *cl, bool warm) {
    int total = 0;
    for (int k = 0; k < K_COUNT; k++) {
        total += weight(k, warm);
    }
    int r = (int)(rnd(cl) % (uint64_t)total);
    enum kind k = 0;
    while (r >= weight(k, warm)) {
        r -= weight(k, warm);
        k++;
    }
    if (cl->pool_n == 0 && k != K_AUTH_MISSING && k != K_REVOKE_UNKNOWN &&
        k != K_REVOKE_ALL) {
        return K_CREATE;
    }
    if (k == K_CREATE && cl->pool_n == POOL) {
        return K_REVOKE_ID;
    }
    if (k == K_REVOKE_ID && warm && cl->pool_n < POOL / 2) {
        return K_CREATE; /* keeps tokens to check */
    }
    if (k == K_AUTH_REVOKED && cl->revoked_n == 0) {
        return K_AUTH_OK;
    }
    return k;
}

static void *client_main(void *arg) {
    client *cl = arg;
    cl->c.fd = -1;
    double interval = rate > 0 ? (double)n_threads / rate : 0;
    double next = now_s();
    while (!atomic_load(&stop_flag)) {
        bool warm = atomic_load(&warming);
        if (warm) {
            next = now_s(); /* unpaced; pacing starts from the end of it */
        }
        switch (pick(cl, warm)) {
            case K_CREATE:
                op_create(cl);
                break;
            case K_REVOKE_ID:
                op_revoke_id(cl);
                break;
            case K_REVOKE_ALL:
                op_revoke_all(cl);
                break;
            case K_LIST:
                op_list(cl);
                break;
            case K_REVOKE_UNKNOWN:
                op_revoke_unknown(cl);
                break;
            case K_AUTH_OK:
                op_auth(cl, K_AUTH_OK);
                break;
            case K_SELF:
                op_auth(cl, K_SELF);
                break;
            case K_AUTH_SCOPE:
                op_auth(cl, K_AUTH_SCOPE);
                break;
            case K_AUTH_REVOKED:
                op_auth(cl, K_AUTH_REVOKED);
                break;
            case K_AUTH_MALFORMED:
                op_auth(cl, K_AUTH_MALFORMED);
                break;
            default:
                op_auth(cl, K_AUTH_MISSING);
                break;
        }
        if (interval > 0 && !warm) {
            next += interval;
            double wait = next - now_s();
            if (wait > 0) {
                struct timespec ts = {(time_t)wait,
                                      (long)((wait - (double)(time_t)wait) * 1e9)};
                nanosleep(&ts, NULL);
            } else if (wait < -1) {
                next = now_s(); /* fell behind: do not burst to catch up */
            }
        }
    }
    conn_close(&cl->c);
    return NULL;
}

/* ------------------------------------------------------------------------
 * Main. */

static unsigned long sum(atomic_ulong *a, int from, int to) {
    unsigned long n = 0;
    for (int k = from; k < to; k++) {
        n += atomic_load(&a[k]);
    }
    return n;
}

static double growth(long from, long to) {
    return from > 0 ? 100.0 * (double)(to - from) / (double)from : 0;
}

int main(int argc, char **argv) {
    const char *env = getenv("SOAK_SECONDS");
    int seconds = env != NULL && atoi(env) > 0 ? atoi(env) : 600;
    int warmup = -1;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--seconds") == 0 && v != NULL) {
            seconds = atoi(v);
        } else if (strcmp(argv[i], "--warmup") == 0 && v != NULL) {
            warmup = atoi(v);
        } else if (strcmp(argv[i], "--threads") == 0 && v != NULL) {
            n_threads = atoi(v);
        } else if (strcmp(argv[i], "--rate") == 0 && v != NULL) {
            rate = atof(v);
        } else {
            fprintf(stderr,
                    "usage: soak [--seconds N] [--warmup N] [--threads N] [--rate N]\n");
            return 2;
        }
        i++;
    }
    if (warmup < 0) {
        warmup = seconds / 4 < 120 ? seconds / 4 : 120;
    }
    if (seconds <= 0 || warmup >= seconds || n_threads < 1 || n_threads > MAX_THREADS ||
        rate < 0) {
        die("bad arguments: need 0 <= warmup < seconds, 1..%d threads, rate >= 0",
            MAX_THREADS);
    }
    signal(SIGPIPE, SIG_IGN);

    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        die("cannot find myself");
    }
    self[n] = '\0';
    snprintf(bin_dir, sizeof(bin_dir), "%s", dirname(dirname(self)));
    const char *tmp = getenv("TMPDIR");
    snprintf(work_dir, sizeof(work_dir), "%s/tokend-soak-XXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(work_dir) == NULL) {
        die("mkdtemp: %s", strerror(errno));
    }
    char tokend[PATH_MAX + 16], gateway[PATH_MAX + 16], data[128], sock[128], tlog[128],
        glog[128], listen_addr[32];
    snprintf(tokend, sizeof(tokend), "%s/tokend", bin_dir);
    snprintf(gateway, sizeof(gateway), "%s/tokend-gateway", bin_dir);
    snprintf(data, sizeof(data), "%s/data", work_dir);
    snprintf(sock, sizeof(sock), "ipc://%s/tokend.sock", work_dir);
    snprintf(tlog, sizeof(tlog), "%s/tokend.log", work_dir);
    snprintf(glog, sizeof(glog), "%s/gateway.log", work_dir);

    /* tokend init prints the admin token on its first line. */
    char out_path[128];
    snprintf(out_path, sizeof(out_path), "%s/init.out", work_dir);
    int out_fd = open(out_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    const char *init_argv[] = {tokend, "init", "--data-dir", data, NULL};
    if (out_fd < 0 || wait_exit(spawn(init_argv, tlog, out_fd)) != 0) {
        die("tokend init failed; see %s", tlog);
    }
    lseek(out_fd, 0, SEEK_SET);
    ssize_t got = read(out_fd, admin_token, sizeof(admin_token) - 1);
    close(out_fd);
    admin_token[got > 0 ? strcspn(admin_token, "\n") : 0] = '\0';
    if (admin_token[0] == '\0') {
        die("tokend init printed no token");
    }

    gw_port = free_port();
    snprintf(listen_addr, sizeof(listen_addr), "127.0.0.1:%d", gw_port);
    /* Small bounded caches, so that they fill during the warm-up: then
     * what grows after it is not a cache. */
    const char *serve_argv[] = {tokend,        "serve",         "--data-dir",
                                data,          "--listen",      sock,
                                "--log-level", "warn",          "--block-cache-mb",
                                SOAK_CACHE_MB, "--memtable-mb", SOAK_MEMTABLE_MB,
                                NULL};
    const char *gw_argv[] = {gateway, "--listen",    listen_addr, "--service",
                             sock,    "--log-level", "warn",      NULL};
    pid_t tpid = spawn(serve_argv, tlog, -1);
    usleep(300 * 1000);
    pid_t gpid = spawn(gw_argv, glog, -1);
    conn probe = {.fd = -1};
    char body[256];
    bool ready = false;
    for (int i = 0; i < 100 && !ready; i++) {
        ready = http(&probe, "GET", "/readyz", NULL, NULL, body, sizeof(body)) == 200;
        if (!ready) {
            conn_close(&probe);
            usleep(100 * 1000);
        }
    }
    conn_close(&probe);
    if (!ready) {
        kill(tpid, SIGKILL);
        kill(gpid, SIGKILL);
        die("tokend and the gateway did not come up; logs in %s", work_dir);
    }
    printf("soak: %d s: warm-up of at least %d s, until tokend's RSS grows < 1%% in %d s "
           "(unpaced, write-heavy), then the mix paced to %.0f req/s (0: unpaced); %d "
           "clients; "
           "tokend pid %d, gateway pid %d on port %d; logs in %s\n",
           seconds, warmup, PLATEAU_S, rate, n_threads, (int)tpid, (int)gpid, gw_port,
           work_dir);
    fflush(stdout);

    static client clients[MAX_THREADS];
    pthread_t threads[MAX_THREADS];
    for (int i = 0; i < n_threads; i++) {
        clients[i].index = i;
        clients[i].rng = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1) ^ (uint64_t)time(NULL);
        snprintf(clients[i].owner, sizeof(clients[i].owner), "soak:t%d", i);
        pthread_create(&threads[i], NULL, client_main, &clients[i]);
    }

    /* RSS every 5 s; printed every 5 s during the warm-up, then every 30 s. */
    double t0 = now_s();
    /* tokend's RSS rises and falls by design during the warm-up: each
     * memtable grows to its size, is flushed and freed. So the baseline is
     * the highest RSS of the warm-up, and the check the highest after it. */
    long t_warm = 0, g_warm = 0, t_max = 0, g_max = 0, t_wpeak = 0, g_wpeak = 0;
    unsigned long req_warm = 0;
    /* tokend's RSS at each 5 s sample, for the plateau test. */
    long *t_at = calloc((size_t)seconds / 5 + 2, sizeof(long));
    int warm_at = -1;
    bool plateau = false;
    for (int at = 0; at < seconds; at += 5) {
        while (now_s() - t0 < at) {
            usleep(100 * 1000);
        }
        long t = rss_kib(tpid), g = rss_kib(gpid);
        unsigned long req = sum(sent, 0, K_COUNT);
        if (t == 0 || g == 0) {
            fprintf(stderr, "soak: a process died at %d s; logs in %s\n", at, work_dir);
            break;
        }
        t_at[at / 5] = t;
        plateau = at >= PLATEAU_S &&
                  t < t_at[(at - PLATEAU_S) / 5] + t_at[(at - PLATEAU_S) / 5] / 100;
        bool warm_end = warm_at < 0 && at >= warmup && (plateau || at >= seconds / 2);
        if (warm_end) {
            t_warm = t;
            g_warm = g;
            req_warm = req;
            warm_at = at;
            atomic_store(&warming, false);
        }
        if (warm_at < 0 || warm_end) {
            t_wpeak = t > t_wpeak ? t : t_wpeak;
            g_wpeak = g > g_wpeak ? g : g_wpeak;
        } else {
            t_max = t > t_max ? t : t_max;
            g_max = g > g_max ? g : g_max;
        }
        if (warm_at < 0 || warm_end || (at - warm_at) % 30 == 0) {
            printf(
                "  t=%4d s  requests %9lu  unexpected %lu  rss tokend %6ld KiB  gateway "
                "%6ld KiB%s\n",
                at, req, sum(unexpected, 0, K_COUNT), t, g,
                warm_end ? "  (end of warm-up)" : "");
            if (warm_end && !plateau) {
                printf("  (tokend's RSS still grew 1%% or more in the last %d s; the "
                       "warm-up ends at half the run)\n",
                       PLATEAU_S);
            }
            fflush(stdout);
        }
    }
    while (now_s() - t0 < seconds) {
        usleep(100 * 1000);
    }
    long t_end = rss_kib(tpid), g_end = rss_kib(gpid);
    unsigned long req_end = sum(sent, 0, K_COUNT);
    double elapsed = now_s() - t0;
    atomic_store(&stop_flag, true);
    for (int i = 0; i < n_threads; i++) {
        pthread_join(threads[i], NULL);
    }
    kill(gpid, SIGTERM);
    int g_exit = wait_exit(gpid);
    kill(tpid, SIGTERM);
    int t_exit = wait_exit(tpid);
    unsigned long t_errors = count_lines(tlog, "level=error");
    unsigned long g_errors = count_lines(glog, "level=error");

    printf("\nrequests by kind (expected status: as expected / unexpected)\n");
    for (int k = 0; k < K_COUNT; k++) {
        printf("  %-40s %3d  %9lu / %lu%s\n", kinds[k].name, kinds[k].expect,
               atomic_load(&as_expected[k]), atomic_load(&unexpected[k]),
               kinds[k].expect >= 400 ? "  (provoked)" : "");
    }
    unsigned long total = sum(sent, 0, K_COUNT);
    unsigned long provoked = sum(as_expected, K_AUTH_SCOPE, K_COUNT);
    unsigned long unexp = sum(unexpected, 0, K_COUNT);
    printf("total %lu requests in %.0f s (%.0f req/s; %.0f req/s after warm-up)\n", total,
           elapsed, (double)total / elapsed,
           (double)(req_end - req_warm) / (elapsed - (warm_at > 0 ? warm_at : warmup)));
    printf("provoked errors (401/403/404, as expected): %lu\n", provoked);
    printf("unexpected: %lu answers (%lu connection failures), %lu + %lu level=error log "
           "lines (tokend + gateway), exit codes %d + %d\n",
           unexp, atomic_load(&conn_errors), t_errors, g_errors, t_exit, g_exit);
    t_max = t_end > t_max ? t_end : t_max;
    g_max = g_end > g_max ? g_end : g_max;
    double tg = growth(t_wpeak, t_max), gg = growth(g_wpeak, g_max);
    printf(
        "rss tokend:  warm-up peak %ld KiB (%ld at its end); after it peak %ld KiB, end "
        "%ld KiB: %+.1f%% over the warm-up peak\n",
        t_wpeak, t_warm, t_max, t_end, tg);
    printf(
        "rss gateway: warm-up peak %ld KiB (%ld at its end); after it peak %ld KiB, end "
        "%ld KiB: %+.1f%% over the warm-up peak\n",
        g_wpeak, g_warm, g_max, g_end, gg);
    bool pass = unexp == 0 && t_errors == 0 && g_errors == 0 && t_exit == 0 &&
                g_exit == 0 && t_warm > 0 && g_warm > 0 && tg < GROWTH_LIMIT &&
                gg < GROWTH_LIMIT;
    if (pass) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", work_dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "soak: could not remove %s\n", work_dir);
        }
    } else {
        printf("logs kept in %s\n", work_dir);
    }
    printf("%s\n", pass ? "PASS" : "FAIL");
    free(t_at);
    return pass ? 0 : 1;
}
