/*
 * crash.c — the crash-durability driver: `build/tests/crash [--kills N]`.
 *
 * It runs the real tokend (found beside it, as build/tokend for
 * build/tests/crash) on a temporary data dir and ipc:// socket, and for
 * each of N rounds drives a mixed load from several client threads —
 * creates for a handful of owners, verifies, revokes by id, by plain text
 * and of a whole owner — SIGKILLs the service at a random moment while the
 * load runs, restarts it and checks the store against what the service
 * acknowledged. The model (see tests/crash/README.md):
 *
 *   - A call answered TOKEND_OK (for a revoke by id or token, also
 *     TOKEND_NOT_FOUND) is acknowledged; any other answer, a timeout or a
 *     connection lost to the kill leaves its outcome unknown ("in flight"):
 *     it may or may not have been applied.
 *   - After the restart every acknowledged create that no revoke could
 *     have reached verifies OK; every token an acknowledged revoke reached
 *     (a revoke-all reaches the tokens acknowledged before it was sent), or
 *     that a verify saw NOT_FOUND, verifies NOT_FOUND; and every token an
 *     owner lists is an acknowledged create or an in-flight create of that
 *     owner (matched by its unique name), listed at most once.
 *   - Verifies made during the load are checked the same way: OK after an
 *     acknowledged revoke, or NOT_FOUND with no revoke that could explain
 *     it, is a violation.
 *
 * It prints one line per round and ends with `acknowledged N, lost L`;
 * exit 0 when L is 0 and N > 0, 1 when something was lost, 2 when the run
 * could not be made (tokend would not start or stopped answering). It uses
 * only the public client API (tokend.h) and never prints a plain-text
 * token: findings name token ids, owners and names.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tokend.h"

#define CRASH_DEFAULT_KILLS 50
#define CRASH_MAX_KILLS 100000
#define CRASH_THREADS 8
#define CRASH_SHARED_THREADS 4 /* threads 0..3 share one client; the rest own one */
#define CRASH_OWNERS 6
#define CRASH_LOAD_MIN_MS 100
#define CRASH_LOAD_MAX_MS 600
/* Short, so that a call started just as tokend dies cannot hold a round up
 * for long; a call that times out is simply an unknown outcome. */
#define CRASH_CALL_TIMEOUT_MS 1000
#define CRASH_CHECK_TIMEOUT_MS 5000
#define CRASH_CHECK_ATTEMPTS 3
#define CRASH_START_TIMEOUT_MS 10000
#define CRASH_PROBE_INTERVAL_MS 20
#define CRASH_INIT_TIMEOUT_MS 10000
#define CRASH_REAP_TIMEOUT_MS 5000
#define CRASH_STOP_TIMEOUT_MS 15000
#define CRASH_LIST_PAGE 64
#define CRASH_MAX_REPORTED 25 /* violations printed in full */
#define CRASH_LOG_TAIL 20     /* lines of tokend's log shown on an error */

/* Load mix, in percent; what is left goes to revoke-all. */
#define CRASH_PCT_CREATE 46
#define CRASH_PCT_VERIFY 30
#define CRASH_PCT_REVOKE_ID 15
#define CRASH_PCT_REVOKE_TOKEN 8

#define CRASH_TOKEN_BUF 128
#define CRASH_ID_BUF 32
#define CRASH_NAME_BUF 48

/* ------------------------------------------------------------------------
 * Clock and random numbers. */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(int ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* splitmix64: small, fast and good enough to pick operations and targets. */
static uint64_t rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static size_t rng_below(uint64_t *state, size_t n) {
    return (size_t)(rng_next(state) % n);
}

/* Out of memory in a test driver ends the run as an error (exit 2); the
 * service dies with us (PR_SET_PDEATHSIG). */
static void *xrealloc(void *ptr, size_t n, size_t size) {
    void *p = reallocarray(ptr, n, size);
    if (p == NULL) {
        fprintf(stderr, "crash: out of memory\n");
        exit(2);
    }
    return p;
}

/* Returns ptr, grown if needed to hold element n (of `size` bytes);
 * *cap is its capacity in elements. */
static void *grow(void *ptr, size_t *cap, size_t n, size_t size) {
    if (n < *cap) {
        return ptr;
    }
    *cap = *cap == 0 ? 64 : *cap * 2;
    return xrealloc(ptr, *cap, size);
}

static void owner_name(int owner, char *out, size_t size) {
    snprintf(out, size, "crash:o%d", owner);
}

/* ------------------------------------------------------------------------
 * The model: every token the run knows of, and this round's operations. */

typedef enum tok_state { TOK_ALIVE, TOK_GONE } tok_state;

typedef struct tok {
    char *plain; /* plain text; NULL for an in-flight create found by listing */
    char id[CRASH_ID_BUF];
    char name[CRASH_NAME_BUF]; /* unique: r<round>-t<thread>-<seq> */
    int owner;
    unsigned round;            /* the round of its create */
    bool acked;                /* its create was acknowledged */
    int64_t sent_ns, acked_ns; /* its create call (acked_ns: when answered) */
    tok_state state;           /* as the last check saw it */
    unsigned listed_round;     /* last round whose check listed it */
    size_t pool_pos;           /* position in model.pool, or SIZE_MAX */
} tok;

typedef enum op_kind {
    OP_CREATE,
    OP_VERIFY,
    OP_REVOKE_ID,
    OP_REVOKE_TOKEN,
    OP_REVOKE_OWNER,
} op_kind;

/* One call of the load, recorded when it returned. */
typedef struct op {
    op_kind kind;
    int status; /* what the call returned */
    int owner;  /* CREATE, REVOKE_OWNER */
    /* VERIFY, REVOKE_ID, REVOKE_TOKEN and an acknowledged CREATE: the token;
     * an unanswered CREATE: its index in model.pending. */
    size_t target;
    int64_t sent_ns, answered_ns;
    size_t next_on_target; /* chaining of ops per token / per owner */
} op;

/* A create whose outcome is unknown: it may have landed, at most once. */
typedef struct pending_create {
    char name[CRASH_NAME_BUF];
    int owner;
    bool landed;
} pending_create;

/* Public ids to token indices: open addressing, slots hold index + 1. */
typedef struct id_index {
    size_t *slots;
    size_t cap; /* a power of two */
    size_t n;
} id_index;

typedef struct model {
    pthread_mutex_t lock; /* guards everything below while the load runs */
    tok *toks;
    size_t n_toks, cap_toks;
    id_index index;
    /* Tokens offered to the load as targets: those not known to be gone. */
    size_t *pool;
    size_t n_pool, cap_pool;
    /* This round. */
    unsigned round;
    int64_t round_start_ns;
    op *ops;
    size_t n_ops, cap_ops;
    pending_create *pending;
    size_t n_pending, cap_pending;
    int odd_status; /* first unexpected answer of the round, or -1 */
    char odd_message[sizeof(((tokend_error *)0)->message)];
    /* Totals. */
    unsigned long acknowledged, lost;
} model;

static uint64_t hash_id(const char *id) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *id != '\0'; id++) {
        h = (h ^ (unsigned char)*id) * 0x100000001b3ull;
    }
    return h;
}

static void index_put(id_index *ix, const tok *toks, size_t t) {
    if (2 * (ix->n + 1) > ix->cap) {
        id_index grown = {.cap = ix->cap == 0 ? 1024 : ix->cap * 2};
        grown.slots = xrealloc(NULL, grown.cap, sizeof(*grown.slots));
        memset(grown.slots, 0, grown.cap * sizeof(*grown.slots));
        for (size_t i = 0; i < ix->cap; i++) {
            if (ix->slots[i] != 0) {
                index_put(&grown, toks, ix->slots[i] - 1);
            }
        }
        free(ix->slots);
        *ix = grown;
    }
    size_t i = (size_t)hash_id(toks[t].id) & (ix->cap - 1);
    while (ix->slots[i] != 0) {
        i = (i + 1) & (ix->cap - 1);
    }
    ix->slots[i] = t + 1;
    ix->n++;
}

/* The token with public id `id`, or SIZE_MAX. */
static size_t index_find(const id_index *ix, const tok *toks, const char *id) {
    if (ix->cap == 0) {
        return SIZE_MAX;
    }
    size_t i = (size_t)hash_id(id) & (ix->cap - 1);
    while (ix->slots[i] != 0) {
        if (strcmp(toks[ix->slots[i] - 1].id, id) == 0) {
            return ix->slots[i] - 1;
        }
        i = (i + 1) & (ix->cap - 1);
    }
    return SIZE_MAX;
}

static void model_init(model *m) {
    memset(m, 0, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
    m->odd_status = -1;
}

static void model_free(model *m) {
    for (size_t i = 0; i < m->n_toks; i++) {
        if (m->toks[i].plain != NULL) {
            explicit_bzero(m->toks[i].plain, strlen(m->toks[i].plain));
            free(m->toks[i].plain);
        }
    }
    free(m->toks);
    free(m->index.slots);
    free(m->pool);
    free(m->ops);
    free(m->pending);
    pthread_mutex_destroy(&m->lock);
}

/* Adds a token (plain may be NULL) and indexes its id; returns its index.
 * Caller holds the lock or runs alone. */
static size_t model_add_tok(model *m, const char *plain, const char *id, const char *name,
                            int owner) {
    m->toks = grow(m->toks, &m->cap_toks, m->n_toks, sizeof(*m->toks));
    size_t t = m->n_toks++;
    tok *k = &m->toks[t];
    memset(k, 0, sizeof(*k));
    if (plain != NULL && (k->plain = strdup(plain)) == NULL) {
        fprintf(stderr, "crash: out of memory\n");
        exit(2);
    }
    snprintf(k->id, sizeof(k->id), "%s", id);
    snprintf(k->name, sizeof(k->name), "%s", name);
    k->owner = owner;
    k->round = m->round;
    k->state = TOK_ALIVE;
    k->pool_pos = SIZE_MAX;
    index_put(&m->index, m->toks, t);
    return t;
}

static void pool_add(model *m, size_t t) {
    m->pool = grow(m->pool, &m->cap_pool, m->n_pool, sizeof(*m->pool));
    m->toks[t].pool_pos = m->n_pool;
    m->pool[m->n_pool++] = t;
}

static void pool_remove(model *m, size_t t) {
    size_t pos = m->toks[t].pool_pos;
    if (pos == SIZE_MAX) {
        return;
    }
    size_t last = m->pool[--m->n_pool];
    m->pool[pos] = last;
    m->toks[last].pool_pos = pos;
    m->toks[t].pool_pos = SIZE_MAX;
}

/* Records a returned call; caller holds the lock. */
static void model_add_op(model *m, const op *o, const tokend_error *err) {
    m->ops = grow(m->ops, &m->cap_ops, m->n_ops, sizeof(*m->ops));
    m->ops[m->n_ops++] = *o;
    bool expected = o->status == TOKEND_OK || o->status == TOKEND_UNAVAILABLE ||
                    o->status == TOKEND_DEADLINE_EXCEEDED ||
                    (o->status == TOKEND_NOT_FOUND && o->kind != OP_CREATE &&
                     o->kind != OP_REVOKE_OWNER);
    if (!expected && m->odd_status < 0) {
        m->odd_status = o->status;
        snprintf(m->odd_message, sizeof(m->odd_message), "%s", err->message);
    }
}

static void model_begin_round(model *m) {
    m->round++;
    m->n_ops = 0;
    m->n_pending = 0;
    m->odd_status = -1;
    m->odd_message[0] = '\0';
}

/* Whether token t surely existed when op r was sent: it was seen alive by
 * an earlier round's check, or its create was answered before r was sent. */
static bool existed_before(const model *m, const tok *t, const op *r) {
    return t->round < m->round || (t->acked && t->acked_ns < r->sent_ns);
}

/* Whether revoke-all r may have deleted t: r was applied (between its send
 * and its answer; if unanswered, at any time before the kill) after t was
 * committed (no earlier than t's create was sent). */
static bool revoke_all_may_cover(const model *m, const tok *t, const op *r) {
    return t->round < m->round || r->status != TOKEND_OK || t->sent_ns < r->answered_ns;
}

/* Whether revoke-all r surely deleted t. */
static bool revoke_all_covers(const model *m, const tok *t, const op *r) {
    return r->status == TOKEND_OK && existed_before(m, t, r);
}

/* A revoke by id or token answered OK or NOT_FOUND: the token is gone. */
static bool revoke_settled(const op *o) {
    return o->status == TOKEND_OK || o->status == TOKEND_NOT_FOUND;
}

static double ms_since(const model *m, int64_t ns) {
    return (double)(ns - m->round_start_ns) / 1e6;
}

/* Reports one violation; the first CRASH_MAX_REPORTED are printed. */
static void lost(model *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void lost(model *m, const char *fmt, ...) {
    if (m->lost < CRASH_MAX_REPORTED) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stdout, "  LOST: ");
        vfprintf(stdout, fmt, ap);
        fputc('\n', stdout);
        va_end(ap);
    } else if (m->lost == CRASH_MAX_REPORTED) {
        printf("  (further violations are counted, not printed)\n");
    }
    m->lost++;
}

/* ------------------------------------------------------------------------
 * The service process. */

typedef struct service {
    char bin[PATH_MAX];
    char dir[200]; /* the data dir, also holding the socket and the log */
    char url[256];
    char log_path[256];
    char admin[CRASH_TOKEN_BUF];
    pid_t pid; /* 0 when not running */
} service;

/* Reaps `pid` within timeout_ms; false if it is still running. */
static bool wait_child(pid_t pid, int timeout_ms, int *status) {
    int64_t deadline = now_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) {
            return true;
        }
        if (r < 0 && errno != EINTR) {
            return false;
        }
        if (now_ns() > deadline) {
            return false;
        }
        sleep_ms(2);
    }
}

/* "exit 3", "signal 11" */
static const char *describe_status(int status, char *buf, size_t size) {
    if (WIFSIGNALED(status)) {
        snprintf(buf, size, "signal %d", WTERMSIG(status));
    } else {
        snprintf(buf, size, "exit %d", WEXITSTATUS(status));
    }
    return buf;
}

static void print_log_tail(const service *s) {
    FILE *f = fopen(s->log_path, "r");
    if (f == NULL) {
        return;
    }
    char lines[CRASH_LOG_TAIL][512];
    size_t n = 0;
    while (fgets(lines[n % CRASH_LOG_TAIL], sizeof(lines[0]), f) != NULL) {
        n++;
    }
    fclose(f);
    size_t first = n > CRASH_LOG_TAIL ? n - CRASH_LOG_TAIL : 0;
    fprintf(stderr, "crash: last lines of %s:\n", s->log_path);
    for (size_t i = first; i < n; i++) {
        fprintf(stderr, "  %s", lines[i % CRASH_LOG_TAIL]);
    }
}

/* Finds build/tokend beside this program and makes the scratch data dir. */
static bool service_prepare(service *s) {
    memset(s, 0, sizeof(*s));
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        fprintf(stderr, "crash: cannot find my own path: %s\n", strerror(errno));
        return false;
    }
    self[n] = '\0';
    /* build/tests/crash -> build/tokend */
    snprintf(s->bin, sizeof(s->bin), "%s/tokend", dirname(dirname(self)));
    if (access(s->bin, X_OK) != 0) {
        fprintf(stderr, "crash: %s: %s (build it first: make build-all)\n", s->bin,
                strerror(errno));
        return false;
    }
    const char *tmp = getenv("TMPDIR");
    int len = snprintf(s->dir, sizeof(s->dir), "%s/tokend-crash-XXXXXX",
                       tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (len < 0 || (size_t)len >= sizeof(s->dir)) {
        fprintf(stderr, "crash: TMPDIR is too long for an ipc:// socket path\n");
        s->dir[0] = '\0';
        return false;
    }
    if (mkdtemp(s->dir) == NULL) {
        fprintf(stderr, "crash: cannot make a scratch dir %s: %s\n", s->dir,
                strerror(errno));
        s->dir[0] = '\0';
        return false;
    }
    /* ipc://, as the other integration tests use. NNG 1.5.2's ipc listener
     * can stop answering when a *client* dies mid-handshake
     * (docs/design.md); here only the service dies, and clients are closed
     * only once their connection is up or while nothing listens. Every
     * wait is bounded, so a hang would end the run as an error (exit 2),
     * never as a loss. */
    snprintf(s->url, sizeof(s->url), "ipc://%s/s.sock", s->dir);
    snprintf(s->log_path, sizeof(s->log_path), "%s/tokend.log", s->dir);
    if (strlen(s->url) - strlen("ipc://") >=
        sizeof(((struct sockaddr_un *)0)->sun_path)) {
        fprintf(stderr,
                "crash: socket path %s is too long for ipc://; set TMPDIR shorter\n",
                s->url);
        return false;
    }
    return true;
}

/* Runs `tokend init` and keeps the admin token (its first stdout line). */
static bool service_init(service *s) {
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) {
        fprintf(stderr, "crash: pipe: %s\n", strerror(errno));
        return false;
    }
    int log_fd = open(s->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    fflush(NULL);
    pid_t pid = log_fd < 0 ? -1 : fork();
    if (pid == 0) {
        dup2(out[1], 1);
        dup2(log_fd, 2);
        close(out[0]);
        close(out[1]);
        execl(s->bin, s->bin, "init", "--data-dir", s->dir, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    if (log_fd >= 0) {
        close(log_fd);
    }
    if (pid < 0) {
        close(out[0]);
        fprintf(stderr, "crash: cannot run tokend init: %s\n", strerror(errno));
        return false;
    }
    char buf[CRASH_TOKEN_BUF * 4];
    size_t len = 0;
    int64_t deadline = now_ns() + (int64_t)CRASH_INIT_TIMEOUT_MS * 1000000;
    while (len < sizeof(buf) - 1 && memchr(buf, '\n', len) == NULL) {
        struct pollfd pfd = {.fd = out[0], .events = POLLIN};
        int left_ms = (int)((deadline - now_ns()) / 1000000);
        if (left_ms <= 0 || poll(&pfd, 1, left_ms) <= 0) {
            break;
        }
        ssize_t r = read(out[0], buf + len, sizeof(buf) - 1 - len);
        if (r <= 0) {
            break;
        }
        len += (size_t)r;
    }
    close(out[0]);
    buf[len] = '\0';
    int status = 0;
    if (!wait_child(pid, CRASH_INIT_TIMEOUT_MS, &status)) {
        kill(pid, SIGKILL);
        wait_child(pid, CRASH_REAP_TIMEOUT_MS, &status);
        fprintf(stderr, "crash: tokend init did not finish within %d ms\n",
                CRASH_INIT_TIMEOUT_MS);
        return false;
    }
    char *nl = strchr(buf, '\n');
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || nl == NULL || nl == buf ||
        (size_t)(nl - buf) >= sizeof(s->admin)) {
        char how[64];
        fprintf(stderr, "crash: tokend init failed (%s)\n",
                describe_status(status, how, sizeof(how)));
        print_log_tail(s);
        explicit_bzero(buf, sizeof(buf));
        return false;
    }
    memcpy(s->admin, buf, (size_t)(nl - buf));
    s->admin[nl - buf] = '\0';
    explicit_bzero(buf, sizeof(buf));
    return true;
}

/* An admin client of the service with the given call time limit. */
static tokend_client *service_client(const service *s, int timeout_ms) {
    const char *urls[] = {s->url};
    tokend_options opts = {
        .urls = urls, .n_urls = 1, .timeout_ms = timeout_ms, .credential = s->admin};
    tokend_client *c = NULL;
    tokend_error err;
    if (tokend_connect(&opts, &c, &err) != TOKEND_OK) {
        fprintf(stderr, "crash: cannot make a client: %s\n", err.message);
        return NULL;
    }
    return c;
}

/* Starts `tokend serve` and waits until it answers. */
static bool service_start(service *s) {
    int log_fd = open(s->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log_fd < 0) {
        fprintf(stderr, "crash: %s: %s\n", s->log_path, strerror(errno));
        return false;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* The service must not outlive the driver, whatever ends it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(log_fd, 2);
        execl(s->bin, s->bin, "serve", "--data-dir", s->dir, "--listen", s->url,
              "--usage-flush-ms", "200", (char *)NULL);
        _exit(127);
    }
    close(log_fd);
    if (pid < 0) {
        fprintf(stderr, "crash: fork: %s\n", strerror(errno));
        return false;
    }
    s->pid = pid;
    tokend_client *probe = service_client(s, CRASH_PROBE_INTERVAL_MS * 5);
    if (probe == NULL) {
        return false;
    }
    bool up = false;
    int status = 0;
    int64_t deadline = now_ns() + (int64_t)CRASH_START_TIMEOUT_MS * 1000000;
    while (!up && now_ns() < deadline) {
        /* Any answer means it serves; "x" is answered MALFORMED. */
        int rv =
            tokend_verify(probe, NULL, "x", NULL, 0, TOKEND_ABILITIES_ALL, NULL, NULL);
        up = rv != TOKEND_UNAVAILABLE && rv != TOKEND_DEADLINE_EXCEEDED;
        if (!up && waitpid(pid, &status, WNOHANG) == pid) {
            s->pid = 0;
            break;
        }
        if (!up) {
            sleep_ms(CRASH_PROBE_INTERVAL_MS);
        }
    }
    tokend_close(probe);
    if (!up) {
        fprintf(stderr, "crash: tokend serve %s within %d ms\n",
                s->pid == 0 ? "exited" : "did not answer", CRASH_START_TIMEOUT_MS);
        print_log_tail(s);
    }
    return up;
}

/* SIGKILL and reap. */
static bool service_kill(service *s) {
    if (s->pid == 0) {
        return true;
    }
    kill(s->pid, SIGKILL);
    int status;
    bool reaped = wait_child(s->pid, CRASH_REAP_TIMEOUT_MS, &status);
    if (!reaped) {
        fprintf(stderr, "crash: tokend (pid %d) did not die within %d ms of SIGKILL\n",
                (int)s->pid, CRASH_REAP_TIMEOUT_MS);
    }
    s->pid = 0;
    return reaped;
}

/* SIGTERM, reap, and insist on a clean exit. */
static bool service_stop(service *s) {
    if (s->pid == 0) {
        return true;
    }
    kill(s->pid, SIGTERM);
    int status = 0;
    if (!wait_child(s->pid, CRASH_STOP_TIMEOUT_MS, &status)) {
        fprintf(stderr, "crash: tokend did not stop within %d ms of SIGTERM\n",
                CRASH_STOP_TIMEOUT_MS);
        service_kill(s);
        return false;
    }
    s->pid = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char how[64];
        fprintf(stderr, "crash: tokend stopped uncleanly on SIGTERM (%s)\n",
                describe_status(status, how, sizeof(how)));
        print_log_tail(s);
        return false;
    }
    return true;
}

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_tree(const char *dir) {
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ------------------------------------------------------------------------
 * The load. */

typedef struct loader {
    model *m;
    tokend_client *client;
    unsigned index;
    unsigned seq;
    uint64_t rng;
    atomic_bool *stop;
    pthread_t thread;
} loader;

static const char *const crash_abilities[] = {"orders:read"};

static void load_create(loader *l) {
    model *m = l->m;
    int owner = (int)rng_below(&l->rng, CRASH_OWNERS);
    char owner_text[32], name[CRASH_NAME_BUF];
    owner_name(owner, owner_text, sizeof(owner_text));
    snprintf(name, sizeof(name), "r%u-t%u-%u", m->round, l->index, l->seq++);
    tokend_create_params params = {.owner = owner_text,
                                   .name = name,
                                   .abilities = crash_abilities,
                                   .n_abilities = 1};
    tokend_created created;
    tokend_error err;
    op o = {.kind = OP_CREATE, .owner = owner};
    o.sent_ns = now_ns();
    o.status = tokend_create(l->client, NULL, &params, &created, &err);
    o.answered_ns = now_ns();

    pthread_mutex_lock(&m->lock);
    if (o.status == TOKEND_OK) {
        o.target = model_add_tok(m, created.token, created.info.id, name, owner);
        tok *t = &m->toks[o.target];
        t->acked = true;
        t->sent_ns = o.sent_ns;
        t->acked_ns = o.answered_ns;
        pool_add(m, o.target);
    } else {
        m->pending = grow(m->pending, &m->cap_pending, m->n_pending, sizeof(*m->pending));
        pending_create *p = &m->pending[m->n_pending];
        memset(p, 0, sizeof(*p));
        snprintf(p->name, sizeof(p->name), "%s", name);
        p->owner = owner;
        o.target = m->n_pending++;
    }
    model_add_op(m, &o, &err);
    pthread_mutex_unlock(&m->lock);
    if (o.status == TOKEND_OK) {
        tokend_created_free(&created);
    }
}

/* A verify or a revoke by id or plain text of a token from the pool. */
static void load_on_token(loader *l, op_kind kind) {
    model *m = l->m;
    char plain[CRASH_TOKEN_BUF] = "", id[CRASH_ID_BUF];
    op o = {.kind = kind};

    pthread_mutex_lock(&m->lock);
    if (m->n_pool == 0) {
        pthread_mutex_unlock(&m->lock);
        load_create(l);
        return;
    }
    o.target = m->pool[rng_below(&l->rng, m->n_pool)];
    const tok *t = &m->toks[o.target];
    if (t->plain != NULL) {
        snprintf(plain, sizeof(plain), "%s", t->plain);
    }
    snprintf(id, sizeof(id), "%s", t->id);
    o.owner = t->owner;
    pthread_mutex_unlock(&m->lock);

    if (plain[0] == '\0') {
        o.kind = OP_REVOKE_ID; /* only its id is known */
    }
    tokend_error err;
    o.sent_ns = now_ns();
    switch (o.kind) {
        case OP_VERIFY:
            o.status = tokend_verify(l->client, NULL, plain, crash_abilities, 1,
                                     TOKEND_ABILITIES_ALL, NULL, &err);
            break;
        case OP_REVOKE_TOKEN:
            o.status = tokend_revoke_token(l->client, NULL, plain, NULL, &err);
            break;
        default:
            o.status = tokend_revoke_id(l->client, NULL, id, NULL, &err);
            break;
    }
    o.answered_ns = now_ns();
    explicit_bzero(plain, sizeof(plain));

    pthread_mutex_lock(&m->lock);
    model_add_op(m, &o, &err);
    if (o.kind == OP_VERIFY ? o.status == TOKEND_NOT_FOUND : revoke_settled(&o)) {
        pool_remove(m, o.target);
    }
    pthread_mutex_unlock(&m->lock);
}

static void load_revoke_owner(loader *l) {
    model *m = l->m;
    op o = {.kind = OP_REVOKE_OWNER, .owner = (int)rng_below(&l->rng, CRASH_OWNERS)};
    char owner_text[32];
    owner_name(o.owner, owner_text, sizeof(owner_text));
    tokend_error err;
    o.sent_ns = now_ns();
    o.status = tokend_revoke_owner(l->client, NULL, owner_text, NULL, &err);
    o.answered_ns = now_ns();

    pthread_mutex_lock(&m->lock);
    model_add_op(m, &o, &err);
    if (o.status == TOKEND_OK) {
        for (size_t i = 0; i < m->n_pool;) {
            const tok *t = &m->toks[m->pool[i]];
            if (t->owner == o.owner && existed_before(m, t, &o)) {
                pool_remove(m, m->pool[i]); /* moves another entry to i */
            } else {
                i++;
            }
        }
    }
    pthread_mutex_unlock(&m->lock);
}

static void *load_main(void *arg) {
    loader *l = arg;
    while (!atomic_load(l->stop)) {
        size_t dice = rng_below(&l->rng, 100);
        if (dice < CRASH_PCT_CREATE) {
            load_create(l);
        } else if ((dice -= CRASH_PCT_CREATE) < CRASH_PCT_VERIFY) {
            load_on_token(l, OP_VERIFY);
        } else if ((dice -= CRASH_PCT_VERIFY) < CRASH_PCT_REVOKE_ID) {
            load_on_token(l, OP_REVOKE_ID);
        } else if ((dice -= CRASH_PCT_REVOKE_ID) < CRASH_PCT_REVOKE_TOKEN) {
            load_on_token(l, OP_REVOKE_TOKEN);
        } else {
            load_revoke_owner(l);
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------
 * Checking. */

/* What this round's operations allow for one token after the restart. */
typedef struct fate {
    size_t must_gone_op; /* an op that surely removed it, or SIZE_MAX */
    bool may_be_gone;    /* some op may have removed it */
} fate;

static const char *op_text(op_kind kind) {
    switch (kind) {
        case OP_CREATE:
            return "create acknowledged";
        case OP_VERIFY:
            return "verify answered NOT_FOUND";
        case OP_REVOKE_ID:
            return "revoke by id acknowledged";
        case OP_REVOKE_TOKEN:
            return "revoke by token acknowledged";
        case OP_REVOKE_OWNER:
            return "revoke-all of its owner acknowledged";
    }
    return "?";
}

/* This round's ops chained per target token (by_tok) and per owner for
 * revoke-alls (by_owner); chains end in SIZE_MAX. by_tok has n_toks heads. */
static void chain_ops(model *m, size_t *by_tok, size_t *by_owner) {
    for (size_t t = 0; t < m->n_toks; t++) {
        by_tok[t] = SIZE_MAX;
    }
    for (int o = 0; o < CRASH_OWNERS; o++) {
        by_owner[o] = SIZE_MAX;
    }
    for (size_t i = m->n_ops; i-- > 0;) {
        op *o = &m->ops[i];
        o->next_on_target = SIZE_MAX;
        if (o->kind == OP_REVOKE_OWNER) {
            o->next_on_target = by_owner[o->owner];
            by_owner[o->owner] = i;
        } else if (o->kind != OP_CREATE) {
            o->next_on_target = by_tok[o->target];
            by_tok[o->target] = i;
        }
    }
}

static fate token_fate(const model *m, size_t t, const size_t *by_tok,
                       const size_t *by_owner) {
    const tok *k = &m->toks[t];
    fate f = {.must_gone_op = SIZE_MAX};
    for (size_t i = by_tok[t]; i != SIZE_MAX; i = m->ops[i].next_on_target) {
        const op *o = &m->ops[i];
        bool sure =
            o->kind == OP_VERIFY ? o->status == TOKEND_NOT_FOUND : revoke_settled(o);
        if (sure && f.must_gone_op == SIZE_MAX) {
            f.must_gone_op = i;
        }
        f.may_be_gone |= o->kind != OP_VERIFY;
    }
    for (size_t i = by_owner[k->owner]; i != SIZE_MAX; i = m->ops[i].next_on_target) {
        const op *r = &m->ops[i];
        if (revoke_all_covers(m, k, r) && f.must_gone_op == SIZE_MAX) {
            f.must_gone_op = i;
        }
        f.may_be_gone |= revoke_all_may_cover(m, k, r);
    }
    f.may_be_gone |= f.must_gone_op != SIZE_MAX;
    return f;
}

/* Checks the verifies made during the load against the revokes around
 * them: OK after a settled revoke, or NOT_FOUND with nothing that could
 * have removed the token, is a violation. */
static void check_live_verifies(model *m, const size_t *by_tok, const size_t *by_owner) {
    for (size_t v = 0; v < m->n_ops; v++) {
        const op *ver = &m->ops[v];
        if (ver->kind != OP_VERIFY ||
            (ver->status != TOKEND_OK && ver->status != TOKEND_NOT_FOUND)) {
            continue;
        }
        const tok *k = &m->toks[ver->target];
        size_t gone_before = SIZE_MAX; /* surely removed before the verify was sent */
        bool explained = false; /* something may have removed it before the answer */
        for (size_t i = by_tok[ver->target]; i != SIZE_MAX;
             i = m->ops[i].next_on_target) {
            const op *o = &m->ops[i];
            bool sure =
                o->kind == OP_VERIFY ? o->status == TOKEND_NOT_FOUND : revoke_settled(o);
            if (sure && o->answered_ns < ver->sent_ns) {
                gone_before = i;
            }
            explained |= o->kind != OP_VERIFY && o->sent_ns < ver->answered_ns;
        }
        for (size_t i = by_owner[k->owner]; i != SIZE_MAX; i = m->ops[i].next_on_target) {
            const op *r = &m->ops[i];
            if (revoke_all_covers(m, k, r) && r->answered_ns < ver->sent_ns) {
                gone_before = i;
            }
            explained |= r->sent_ns < ver->answered_ns && revoke_all_may_cover(m, k, r);
        }
        if (ver->status == TOKEND_OK && gone_before != SIZE_MAX) {
            lost(m,
                 "verify at %.1f ms answered OK for token %s (%s), after a %s at %.1f "
                 "ms",
                 ms_since(m, ver->sent_ns), k->id, k->name,
                 op_text(m->ops[gone_before].kind),
                 ms_since(m, m->ops[gone_before].answered_ns));
        } else if (ver->status == TOKEND_NOT_FOUND && !explained) {
            lost(m,
                 "verify at %.1f ms answered NOT_FOUND for token %s (%s), which nothing "
                 "had revoked",
                 ms_since(m, ver->sent_ns), k->id, k->name);
        }
    }
}

/* Verifies `plain` with the check client, retrying a service hiccup.
 * Returns TOKEND_OK or TOKEND_NOT_FOUND; -1 if the service did not answer. */
static int check_verify(tokend_client *c, const char *plain) {
    int rv = TOKEND_UNAVAILABLE;
    tokend_error err;
    for (int attempt = 0; attempt < CRASH_CHECK_ATTEMPTS; attempt++) {
        rv = tokend_verify(c, NULL, plain, crash_abilities, 1, TOKEND_ABILITIES_ALL, NULL,
                           &err);
        if (rv == TOKEND_OK || rv == TOKEND_NOT_FOUND) {
            return rv;
        }
        if (rv != TOKEND_UNAVAILABLE && rv != TOKEND_DEADLINE_EXCEEDED) {
            break;
        }
    }
    fprintf(stderr, "crash: verify during the check failed: %s: %s\n",
            tokend_status_name(rv), err.message);
    return -1;
}

/* One token of a list. */
typedef struct listed {
    char id[CRASH_ID_BUF];
    char name[CRASH_NAME_BUF];
} listed;

/* Lists every token of `owner`, page by page, into *out (the caller
 * frees it). Returns false if the service would not answer. */
static bool list_owner(tokend_client *c, int owner, listed **out, size_t *n) {
    char owner_text[32];
    owner_name(owner, owner_text, sizeof(owner_text));
    size_t cap = 0;
    char *cursor = NULL;
    *out = NULL;
    *n = 0;
    for (;;) {
        tokend_token_page page;
        tokend_error err;
        int rv = TOKEND_UNAVAILABLE;
        for (int attempt = 0; attempt < CRASH_CHECK_ATTEMPTS; attempt++) {
            rv = tokend_list(c, NULL, owner_text, CRASH_LIST_PAGE, cursor, &page, &err);
            if (rv != TOKEND_UNAVAILABLE && rv != TOKEND_DEADLINE_EXCEEDED) {
                break;
            }
        }
        free(cursor);
        cursor = NULL;
        if (rv != TOKEND_OK) {
            fprintf(stderr, "crash: listing %s failed: %s: %s\n", owner_text,
                    tokend_status_name(rv), err.message);
            free(*out);
            *out = NULL;
            return false;
        }
        for (size_t i = 0; i < page.n_tokens; i++) {
            *out = grow(*out, &cap, *n, sizeof(**out));
            snprintf((*out)[*n].id, sizeof((*out)[*n].id), "%s", page.tokens[i].id);
            snprintf((*out)[*n].name, sizeof((*out)[*n].name), "%s", page.tokens[i].name);
            (*n)++;
        }
        if (page.next_cursor != NULL && (cursor = strdup(page.next_cursor)) == NULL) {
            fprintf(stderr, "crash: out of memory\n");
            exit(2);
        }
        tokend_token_page_free(&page);
        if (cursor == NULL) {
            return true;
        }
    }
}

/* This round's in-flight create of `owner` named `name` that has not
 * landed yet, or SIZE_MAX. */
static size_t find_pending(const model *m, int owner, const char *name) {
    for (size_t p = 0; p < m->n_pending; p++) {
        const pending_create *pc = &m->pending[p];
        if (pc->owner == owner && !pc->landed && strcmp(pc->name, name) == 0) {
            return p;
        }
    }
    return SIZE_MAX;
}

/* Lists every owner and matches each listed token: a known id must be of
 * that owner, listed once and not gone (tokens verified this round carry
 * their new state already); an unknown id must be one of this round's
 * in-flight creates of that owner, by name, which then becomes a known
 * token without plain text. Anything else was never acknowledged nor in
 * flight. Returns false if the service would not answer. */
static bool check_lists(model *m, tokend_client *c, size_t *landed) {
    for (int owner = 0; owner < CRASH_OWNERS; owner++) {
        listed *items = NULL;
        size_t n = 0;
        if (!list_owner(c, owner, &items, &n)) {
            return false;
        }
        for (size_t i = 0; i < n; i++) {
            size_t t = index_find(&m->index, m->toks, items[i].id);
            if (t != SIZE_MAX) {
                tok *k = &m->toks[t];
                if (k->listed_round == m->round || k->owner != owner) {
                    lost(m, "token %s (%s) is listed twice or under another owner (o%d)",
                         k->id, k->name, owner);
                } else if (k->state == TOK_GONE) {
                    lost(m,
                         "token %s (%s) is gone (revoked, or verifies NOT_FOUND) but "
                         "its owner still lists it",
                         k->id, k->name);
                }
                k->listed_round = m->round;
                continue;
            }
            size_t p = find_pending(m, owner, items[i].name);
            if (p == SIZE_MAX) {
                lost(m, "token %s (%s) of o%d was never acknowledged nor in flight",
                     items[i].id, items[i].name, owner);
                continue;
            }
            m->pending[p].landed = true;
            t = model_add_tok(m, NULL, items[i].id, items[i].name, owner);
            m->toks[t].listed_round = m->round;
            pool_add(m, t);
            (*landed)++;
        }
        free(items);
    }
    return true;
}

/* Holds one token's state after the restart against its fate. */
static void judge(model *m, size_t t, const fate *f, bool alive_now) {
    tok *k = &m->toks[t];
    if (alive_now && f->must_gone_op != SIZE_MAX) {
        const op *o = &m->ops[f->must_gone_op];
        lost(m, "token %s (%s): %s at %.1f ms, yet it is valid after the restart", k->id,
             k->name, op_text(o->kind), ms_since(m, o->answered_ns));
    } else if (!alive_now && !f->may_be_gone) {
        lost(m,
             "token %s (%s) of o%d: %s, nothing could have revoked it, yet it is "
             "gone after the restart",
             k->id, k->name, k->owner,
             k->round < m->round ? "alive at the previous check" : "acknowledged create");
    }
    if (alive_now && k->plain != NULL && k->listed_round != m->round) {
        lost(m, "token %s (%s) verifies OK but its owner o%d does not list it", k->id,
             k->name, k->owner);
    }
    k->state = alive_now ? TOK_ALIVE : TOK_GONE;
    /* The next round's load targets exactly the tokens alive now. */
    if (!alive_now) {
        pool_remove(m, t);
    } else if (k->pool_pos == SIZE_MAX) {
        pool_add(m, t);
    }
}

/* After a restart: every token alive at the last check or created this
 * round is verified (without plain text: looked up in its owner's list)
 * and held against what this round's operations allow; the lists are
 * matched against the model. With `all`, tokens already gone are verified
 * too (they must stay gone). Returns false if the service would not
 * answer; *landed counts in-flight creates found to have landed. */
static bool check_round(model *m, tokend_client *c, bool all, size_t *landed) {
    size_t n_known = m->n_toks;
    size_t *by_tok = xrealloc(NULL, n_known + 1, sizeof(*by_tok));
    fate *fates = xrealloc(NULL, n_known + 1, sizeof(*fates));
    bool *candidate = xrealloc(NULL, n_known + 1, sizeof(*candidate));
    size_t by_owner[CRASH_OWNERS];
    chain_ops(m, by_tok, by_owner);
    check_live_verifies(m, by_tok, by_owner);

    bool ok = true;
    for (size_t t = 0; t < n_known && ok; t++) {
        tok *k = &m->toks[t];
        candidate[t] = k->state == TOK_ALIVE;
        if (candidate[t]) {
            fates[t] = token_fate(m, t, by_tok, by_owner);
        }
        if (k->plain == NULL || !(candidate[t] || all)) {
            continue;
        }
        int rv = check_verify(c, k->plain);
        ok = rv >= 0;
        if (ok && !candidate[t] && rv == TOKEND_OK) {
            lost(m, "token %s (%s) was gone at an earlier check but is valid again",
                 k->id, k->name);
        } else if (ok && candidate[t]) {
            k->state = rv == TOKEND_OK ? TOK_ALIVE : TOK_GONE;
        }
    }
    ok = ok && check_lists(m, c, landed);
    for (size_t t = 0; t < n_known && ok; t++) {
        tok *k = &m->toks[t];
        if (candidate[t]) {
            bool alive_now =
                k->plain != NULL ? k->state == TOK_ALIVE : k->listed_round == m->round;
            judge(m, t, &fates[t], alive_now);
        }
    }
    free(candidate);
    free(fates);
    free(by_tok);
    return ok;
}

/* ------------------------------------------------------------------------
 * Rounds. */

typedef struct round_stats {
    size_t creates, creates_unknown, revokes, revokes_unknown, verifies, landed;
} round_stats;

static void count_ops(const model *m, round_stats *st) {
    for (size_t i = 0; i < m->n_ops; i++) {
        const op *o = &m->ops[i];
        switch (o->kind) {
            case OP_CREATE:
                *(o->status == TOKEND_OK ? &st->creates : &st->creates_unknown) += 1;
                break;
            case OP_VERIFY:
                st->verifies += o->status == TOKEND_OK || o->status == TOKEND_NOT_FOUND;
                break;
            case OP_REVOKE_OWNER:
                *(o->status == TOKEND_OK ? &st->revokes : &st->revokes_unknown) += 1;
                break;
            default:
                *(revoke_settled(o) ? &st->revokes : &st->revokes_unknown) += 1;
                break;
        }
    }
}

static size_t count_alive(const model *m) {
    size_t n = 0;
    for (size_t t = 0; t < m->n_toks; t++) {
        n += m->toks[t].state == TOK_ALIVE;
    }
    return n;
}

/* Checks the service's state with a fresh admin client. */
static bool check_with_client(model *m, const service *s, bool all, size_t *landed) {
    tokend_client *c = service_client(s, CRASH_CHECK_TIMEOUT_MS);
    if (c == NULL) {
        return false;
    }
    bool ok = check_round(m, c, all, landed);
    tokend_close(c);
    return ok;
}

/* One round: load, SIGKILL at a random moment, restart, check. Returns
 * false on an error that ends the run. */
static bool run_round(model *m, service *s, uint64_t *rng, unsigned kills) {
    model_begin_round(m);
    loader loaders[CRASH_THREADS];
    tokend_client *own[CRASH_THREADS] = {NULL};
    atomic_bool stop;
    atomic_init(&stop, false);
    bool ok = (own[0] = service_client(s, CRASH_CALL_TIMEOUT_MS)) != NULL;
    for (unsigned i = CRASH_SHARED_THREADS; i < CRASH_THREADS && ok; i++) {
        ok = (own[i] = service_client(s, CRASH_CALL_TIMEOUT_MS)) != NULL;
    }
    unsigned started = 0;
    m->round_start_ns = now_ns();
    for (unsigned i = 0; i < CRASH_THREADS && ok; i++, started++) {
        loaders[i] = (loader){.m = m,
                              .client = i < CRASH_SHARED_THREADS ? own[0] : own[i],
                              .index = i,
                              .rng = rng_next(rng),
                              .stop = &stop};
        if (pthread_create(&loaders[i].thread, NULL, load_main, &loaders[i]) != 0) {
            fprintf(stderr, "crash: cannot start a load thread\n");
            ok = false;
            break;
        }
    }
    int load_ms = CRASH_LOAD_MIN_MS +
                  (int)rng_below(rng, CRASH_LOAD_MAX_MS - CRASH_LOAD_MIN_MS + 1);
    if (ok) {
        sleep_ms(load_ms);
        kill(s->pid, SIGKILL); /* the crash, while the load runs */
    }
    atomic_store(&stop, true);
    ok = service_kill(s) && ok;
    for (unsigned i = 0; i < started; i++) {
        pthread_join(loaders[i].thread, NULL);
    }
    for (unsigned i = 0; i < CRASH_THREADS; i++) {
        tokend_close(own[i]);
    }
    round_stats st = {0};
    ok = ok && service_start(s) && check_with_client(m, s, false, &st.landed);
    if (!ok) {
        return false;
    }
    count_ops(m, &st);
    m->acknowledged += st.creates + st.revokes;
    printf("round %u/%u: kill at %d ms; creates %zu acked, %zu in flight (%zu landed); "
           "revokes %zu acked, %zu in flight; verifies %zu; alive %zu; lost %lu\n",
           m->round, kills, load_ms, st.creates, st.creates_unknown, st.landed,
           st.revokes, st.revokes_unknown, st.verifies, count_alive(m), m->lost);
    if (m->odd_status >= 0) {
        printf("  note: a load call was answered %s: %s\n",
               tokend_status_name(m->odd_status), m->odd_message);
    }
    return true;
}

/* ------------------------------------------------------------------------
 * Command line. */

static void usage(FILE *out) {
    fprintf(out,
            "Usage: crash [--kills N] [--seed S]\n\n"
            "Runs build/tokend (beside this program) on a scratch data dir, kills it\n"
            "with SIGKILL N times under a concurrent load, restarts it each time and\n"
            "checks that every acknowledged create and revoke survived. Ends with\n"
            "`acknowledged N, lost L`. Exit: 0 nothing lost, 1 something lost,\n"
            "2 the run could not be made.\n\n"
            "  --kills N   rounds (default: $KILLS, else %d)\n"
            "  --seed S    seed of the load's choices (default: from the clock)\n",
            CRASH_DEFAULT_KILLS);
}

static bool parse_count(const char *text, unsigned long long max,
                        unsigned long long *out) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 0);
    if (errno != 0 || end == text || *end != '\0' || v > max || text[0] == '-') {
        return false;
    }
    *out = v;
    return true;
}

/* Returns 0 to run, 1 when help was printed, -1 on a usage error. */
static int parse_args(int argc, char **argv, unsigned *kills, uint64_t *seed) {
    unsigned long long v = CRASH_DEFAULT_KILLS;
    const char *env = getenv("KILLS");
    if (env != NULL && env[0] != '\0' && !parse_count(env, CRASH_MAX_KILLS, &v)) {
        fprintf(stderr, "crash: KILLS must be a number from 1 to %d\n", CRASH_MAX_KILLS);
        return -1;
    }
    *kills = (unsigned)v;
    *seed = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = NULL;
        bool is_kills = strncmp(arg, "--kills", 7) == 0;
        bool is_seed = strncmp(arg, "--seed", 6) == 0;
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            usage(stdout);
            return 1;
        }
        if (is_kills || is_seed) {
            const char *rest = arg + (is_kills ? 7 : 6);
            if (*rest == '=') {
                value = rest + 1;
            } else if (*rest == '\0' && i + 1 < argc) {
                value = argv[++i];
            }
        }
        if (value == NULL) {
            usage(stderr);
            return -1;
        }
        if (is_kills && (!parse_count(value, CRASH_MAX_KILLS, &v) || v == 0)) {
            fprintf(stderr, "crash: --kills must be a number from 1 to %d\n",
                    CRASH_MAX_KILLS);
            return -1;
        }
        if (is_kills) {
            *kills = (unsigned)v;
        } else if (!parse_count(value, UINT64_MAX, &v)) {
            fprintf(stderr, "crash: --seed must be a number\n");
            return -1;
        } else {
            *seed = v;
        }
    }
    if (*kills == 0) {
        fprintf(stderr, "crash: KILLS must be a number from 1 to %d\n", CRASH_MAX_KILLS);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    unsigned kills;
    uint64_t seed;
    int parsed = parse_args(argc, argv, &kills, &seed);
    if (parsed != 0) {
        return parsed > 0 ? 0 : 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    int64_t started_ns = now_ns();
    service s;
    model m;
    model_init(&m);
    bool ok = service_prepare(&s);
    if (ok) {
        printf("crash: %u kills, seed %" PRIu64 ", %s on %s\n", kills, seed, s.bin,
               s.url);
        ok = service_init(&s) && service_start(&s);
    }
    uint64_t rng = seed;
    unsigned done = 0;
    while (ok && done < kills) {
        ok = run_round(&m, &s, &rng, kills);
        done += ok;
    }
    size_t landed = 0, known = m.n_toks;
    if (ok) {
        /* A last look with nothing in flight: every token the run ever knew
         * must be exactly as the last check left it. */
        model_begin_round(&m);
        ok = check_with_client(&m, &s, true, &landed) && service_stop(&s);
    }
    service_kill(&s);
    double elapsed_s = (double)(now_ns() - started_ns) / 1e9;
    int rc;
    if (!ok) {
        fprintf(stderr,
                "crash: run aborted after %u of %u kills (%.1f s); so far acknowledged "
                "%lu, lost %lu\n",
                done, kills, elapsed_s, m.acknowledged, m.lost);
        rc = 2;
    } else {
        printf("kills %u, elapsed %.1f s, final check of %zu tokens (%zu alive)\n", done,
               elapsed_s, known, count_alive(&m));
        printf("acknowledged %lu, lost %lu\n", m.acknowledged, m.lost);
        rc = m.lost > 0 ? 1 : 0;
        if (m.acknowledged == 0) {
            fprintf(stderr, "crash: invalid run: nothing was acknowledged\n");
            rc = 2;
        }
    }
    if (s.dir[0] != '\0') {
        if (rc == 0) {
            remove_tree(s.dir);
        } else {
            fprintf(stderr, "crash: data dir and tokend.log kept in %s\n", s.dir);
        }
    }
    explicit_bzero(s.admin, sizeof(s.admin));
    model_free(&m);
    return rc;
}
