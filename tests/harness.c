/*
 * harness.c — see harness.h.
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

extern char **environ;

const char *harness_bin(const char *name) {
    static char paths[8][PATH_MAX];
    static int next;
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    REQUIRE(n > 0);
    self[n] = '\0';
    /* build/tests/run -> build */
    char *dir = dirname(dirname(self));
    char *out = paths[next++ % 8];
    snprintf(out, PATH_MAX, "%s/%s", dir, name);
    return out;
}

/* Reads all of fd into a malloc'd string. */
static char *slurp_fd(int fd) {
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL) {
        return NULL;
    }
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                return NULL;
            }
            buf = nb;
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break;
        }
        len += (size_t)r;
    }
    buf[len] = '\0';
    return buf;
}

char *harness_read_file(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        return NULL;
    }
    char *s = slurp_fd(fd);
    close(fd);
    return s;
}

/* TEST_WRAPPER (e.g. "valgrind -q --leak-check=full --error-exitcode=99"):
 * a command, split on spaces, that our own binaries (tokend, tokenctl,
 * tokend-gateway) are run under; `make valgrind` sets it. */
static bool wrapper_set(void) {
    const char *w = getenv("TEST_WRAPPER");
    return w != NULL && w[strspn(w, " ")] != '\0';
}

/* How much longer than usual to wait for a program to come up: valgrind
 * starts a program (and RocksDB) an order of magnitude slower. */
static int wrapper_slowdown(void) {
    return wrapper_set() ? 10 : 1;
}

/* True if `path` is one of the binaries built beside the test runner. */
static bool is_our_bin(const char *path) {
    const char *base = strrchr(path, '/');
    if (base == NULL) {
        return false;
    }
    base++;
    return strcmp(base, "tokend") == 0 || strcmp(base, "tokenctl") == 0 ||
           strcmp(base, "tokend-gateway") == 0;
}

/* Execs argv (argv[0] a path), through TEST_WRAPPER if set and argv[0] is
 * one of ours; returns only if the exec failed. For a forked child. */
static void exec_wrapped(const char *const *argv) {
    const char *w = getenv("TEST_WRAPPER");
    if (wrapper_set() && is_our_bin(argv[0])) {
        char buf[1024];
        const char *full[96];
        size_t n = 0;
        snprintf(buf, sizeof(buf), "%s", w);
        char *save = NULL;
        for (char *t = strtok_r(buf, " ", &save); t != NULL && n < 48;
             t = strtok_r(NULL, " ", &save)) {
            full[n++] = t;
        }
        for (size_t i = 0; argv[i] != NULL && n < 95; i++) {
            full[n++] = argv[i];
        }
        full[n] = NULL;
        execvp(full[0], (char *const *)full);
        return;
    }
    execvp(argv[0], (char *const *)argv);
}

/* Takes the wrapper's "==PID== ..." lines out of a program's captured
 * stderr, so tests see only the program's own; a line other than a
 * "Warning:" or a blank one is a report (valgrind -q prints nothing else)
 * and fails the test with all of them, whatever the exit code. */
static void strip_wrapper_lines(const char *prog, char *text) {
    char *w = text, *report = NULL;
    size_t report_len = 0;
    FILE *rf = open_memstream(&report, &report_len);
    bool failed = false;
    for (char *line = text; *line != '\0';) {
        char *nl = strchr(line, '\n');
        size_t len = nl != NULL ? (size_t)(nl - line) + 1 : strlen(line);
        int skip = 0;
        if (line[0] == '=' && line[1] == '=' && sscanf(line, "==%*d==%n", &skip) == 0 &&
            skip > 0) {
            const char *msg = line + skip + strspn(line + skip, " ");
            if (*msg != '\n' && *msg != '\0' && strncmp(msg, "Warning:", 8) != 0) {
                failed = true;
            }
            if (rf != NULL) {
                fwrite(line, 1, len, rf);
            }
        } else {
            memmove(w, line, len);
            w += len;
        }
        line += len;
    }
    *w = '\0';
    if (rf != NULL) {
        fclose(rf);
    }
    if (failed) {
        test_fail(__FILE__, __LINE__, "%s under TEST_WRAPPER reported:\n%s", prog,
                  report != NULL ? report : "");
    }
    free(report);
}

int harness_exec(const char *const *argv, const char *stdin_text, const char *const *env,
                 char **out, char **err) {
    char tmpl_out[] = "/tmp/tokend-exec-out-XXXXXX";
    char tmpl_err[] = "/tmp/tokend-exec-err-XXXXXX";
    int fd_out = mkstemp(tmpl_out);
    int fd_err = mkstemp(tmpl_err);
    int in_pipe[2];
    REQUIRE(fd_out >= 0 && fd_err >= 0 && pipe(in_pipe) == 0);
    unlink(tmpl_out);
    unlink(tmpl_err);
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        dup2(in_pipe[0], 0);
        dup2(fd_out, 1);
        dup2(fd_err, 2);
        close(in_pipe[1]);
        for (size_t i = 0; env != NULL && env[i] != NULL; i++) {
            putenv((char *)env[i]);
        }
        exec_wrapped(argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(in_pipe[0]);
    if (stdin_text != NULL) {
        ssize_t w = write(in_pipe[1], stdin_text, strlen(stdin_text));
        (void)w;
    }
    close(in_pipe[1]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    lseek(fd_out, 0, SEEK_SET);
    lseek(fd_err, 0, SEEK_SET);
    if (out != NULL) {
        *out = slurp_fd(fd_out);
    }
    char *err_text = slurp_fd(fd_err);
    if (wrapper_set() && is_our_bin(argv[0]) && err_text != NULL) {
        strip_wrapper_lines(argv[0], err_text);
    }
    if (err != NULL) {
        *err = err_text;
    } else {
        free(err_text);
    }
    close(fd_out);
    close(fd_err);
    if (WIFSIGNALED(status)) {
        return 128 + WTERMSIG(status);
    }
    return WEXITSTATUS(status);
}

void harness_init(tokend_proc *p) {
    memset(p, 0, sizeof(*p));
    const char *dir = test_tmpdir();
    REQUIRE(strlen(dir) < sizeof(p->dir));
    snprintf(p->dir, sizeof(p->dir), "%s", dir);
    snprintf(p->data_dir, sizeof(p->data_dir), "%s/data", dir);
    snprintf(p->log_path, sizeof(p->log_path), "%s/tokend.log", dir);
    snprintf(p->url, sizeof(p->url), "ipc://%s/tokend.sock", p->dir);
    const char *argv[] = {harness_bin("tokend"), "init", "--data-dir", p->data_dir, NULL};
    char *out = NULL, *err = NULL;
    int rc = harness_exec(argv, NULL, NULL, &out, &err);
    if (rc != 0) {
        fprintf(stderr, "tokend init failed (%d): %s\n", rc, err ? err : "");
    }
    REQUIRE(rc == 0);
    char *nl = strchr(out, '\n');
    REQUIRE(nl != NULL && (size_t)(nl - out) < sizeof(p->admin));
    memcpy(p->admin, out, (size_t)(nl - out));
    p->admin[nl - out] = '\0';
    free(out);
    free(err);
}

bool harness_start(tokend_proc *p) {
    const char *argv[40] = {harness_bin("tokend"), "serve",    "--data-dir",
                            p->data_dir,           "--listen", p->url,
                            "--usage-flush-ms",    "100"};
    size_t n = 8;
    for (size_t i = 0; p->extra[i] != NULL && n < 38; i++) {
        argv[n++] = p->extra[i];
    }
    argv[n] = NULL;
    int log_fd = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    REQUIRE(log_fd >= 0);
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        dup2(log_fd, 2);
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(devnull, 1);
        exec_wrapped(argv);
        _exit(127);
    }
    close(log_fd);
    p->pid = pid;
    tokend_client *c = harness_client(p, NULL);
    tokend_call call = {.timeout_ms = 200};
    for (int i = 0; i < 100 * wrapper_slowdown(); i++) {
        int rv = tokend_verify(c, &call, "x", NULL, 0, TOKEND_ABILITIES_ALL, NULL, NULL);
        /* Any answer from the service means it is up. */
        if (rv != TOKEND_UNAVAILABLE && rv != TOKEND_DEADLINE_EXCEEDED) {
            tokend_close(c);
            return true;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            p->pid = 0;
            break;
        }
        usleep(100 * 1000);
    }
    tokend_close(c);
    return false;
}

/* SIGTERMs *pid, waits for it and returns its exit status (-1 if it was
 * not running). A clean stop must exit 0; under ASan or valgrind a leak or
 * error report makes it non-zero, so a non-zero status fails the test with
 * the process's log. */
static int stop_checked(pid_t *pid, const char *name, const char *log_path) {
    if (*pid == 0) {
        return -1;
    }
    kill(*pid, SIGTERM);
    int status = 0;
    pid_t r;
    while ((r = waitpid(*pid, &status, 0)) < 0 && errno == EINTR) {
    }
    *pid = 0;
    if (r < 0) {
        return -1;
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0) {
        char *log = harness_read_file(log_path);
        test_fail(__FILE__, __LINE__, "%s exited %d on SIGTERM; log:\n%s", name, code,
                  log ? log : "");
        free(log);
    }
    return code;
}

int harness_stop(tokend_proc *p) {
    return stop_checked(&p->pid, "tokend", p->log_path);
}

void harness_kill9(tokend_proc *p) {
    if (p->pid == 0) {
        return;
    }
    kill(p->pid, SIGKILL);
    while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR) {
    }
    p->pid = 0;
}

tokend_client *harness_client(const tokend_proc *p, const char *credential) {
    const char *urls[] = {p->url};
    tokend_options opts = {
        .urls = urls, .n_urls = 1, .timeout_ms = 3000, .credential = credential};
    tokend_client *c = NULL;
    tokend_error err;
    int rv = tokend_connect(&opts, &c, &err);
    if (rv != TOKEND_OK) {
        fprintf(stderr, "connect: %s\n", err.message);
    }
    REQUIRE(rv == TOKEND_OK && c != NULL);
    return c;
}

bool harness_dir_contains(const char *dir, const char *needle) {
    DIR *d = opendir(dir);
    if (d == NULL) {
        return false;
    }
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        char *path = NULL;
        if (asprintf(&path, "%s/%s", dir, e->d_name) < 0) {
            break;
        }
        struct stat st;
        if (lstat(path, &st) == 0) {
            if (S_ISDIR(st.st_mode)) {
                found = harness_dir_contains(path, needle);
            } else if (S_ISREG(st.st_mode)) {
                int fd = open(path, O_RDONLY);
                if (fd >= 0) {
                    char *content = slurp_fd(fd);
                    close(fd);
                    /* Binary files: search the raw bytes, not up to a NUL. */
                    if (content != NULL) {
                        found = memmem(content, (size_t)st.st_size, needle,
                                       strlen(needle)) != NULL;
                    }
                    free(content);
                }
            }
        }
        free(path);
    }
    closedir(d);
    return found;
}

typedef struct race_thread {
    pthread_t thread;
    pthread_barrier_t *start;
    int (*call)(void *arg, int i);
    void *arg;
    int i;
    int status;
} race_thread;

static void *race_main(void *p) {
    race_thread *t = p;
    pthread_barrier_wait(t->start);
    t->status = t->call(t->arg, t->i);
    return NULL;
}

void harness_race(int n, int (*call)(void *arg, int i), void *arg, int *status) {
    race_thread t[64];
    pthread_barrier_t start;
    REQUIRE(n > 0 && n <= 64 && pthread_barrier_init(&start, NULL, (unsigned)n) == 0);
    for (int i = 0; i < n; i++) {
        t[i] = (race_thread){.start = &start, .call = call, .arg = arg, .i = i};
        REQUIRE(pthread_create(&t[i].thread, NULL, race_main, &t[i]) == 0);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(t[i].thread, NULL);
        status[i] = t[i].status;
    }
    pthread_barrier_destroy(&start);
}

void harness_create(tokend_client *admin, const char *owner, const char *name,
                    const char *const *abilities, size_t n, int64_t expires_in_s,
                    char *token_out, size_t token_size, char *id_out, size_t id_size) {
    tokend_create_params params = {
        .owner = owner,
        .name = name,
        .abilities = abilities,
        .n_abilities = n,
        .expires_in_seconds = expires_in_s,
    };
    tokend_created created;
    tokend_error err;
    int rv = tokend_create(admin, NULL, &params, &created, &err);
    if (rv != TOKEND_OK) {
        fprintf(stderr, "create failed: %s: %s\n", tokend_status_name(rv), err.message);
    }
    REQUIRE(rv == TOKEND_OK);
    if (token_out != NULL) {
        snprintf(token_out, token_size, "%s", created.token);
    }
    if (id_out != NULL) {
        snprintf(id_out, id_size, "%s", created.info.id);
    }
    tokend_created_free(&created);
}

/* The port of the "event=listening" line written after `from` in the log,
 * or 0. */
static int listening_port(const char *log_path, size_t from) {
    char *log = harness_read_file(log_path);
    int port = 0;
    if (log != NULL && strlen(log) > from) {
        const char *line = strstr(log + from, "event=listening");
        const char *p = line != NULL ? strstr(line, " port=") : NULL;
        if (p != NULL) {
            port = atoi(p + 6);
        }
    }
    free(log);
    return port;
}

bool harness_gateway_start(gateway_proc *g, const char *service_url, int port) {
    if (g->dir[0] == '\0') {
        const char *dir = test_tmpdir();
        REQUIRE(strlen(dir) < sizeof(g->dir));
        snprintf(g->dir, sizeof(g->dir), "%s", dir);
        snprintf(g->log_path, sizeof(g->log_path), "%s/gateway.log", dir);
    }
    char listen[32];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    const char *argv[40] = {harness_bin("tokend-gateway"), "--listen", listen,
                            "--service", service_url};
    size_t n = 5;
    bool tls = false;
    for (size_t i = 0; g->extra[i] != NULL && n < 38; i++) {
        tls = tls || strcmp(g->extra[i], "--tls-cert") == 0;
        argv[n++] = g->extra[i];
    }
    argv[n] = NULL;
    int log_fd = open(g->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    REQUIRE(log_fd >= 0);
    struct stat st;
    size_t log_start = fstat(log_fd, &st) == 0 ? (size_t)st.st_size : 0;
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        dup2(log_fd, 2);
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(devnull, 1);
        exec_wrapped(argv);
        _exit(127);
    }
    close(log_fd);
    g->pid = pid;
    for (int i = 0; i < 500 * wrapper_slowdown(); i++) {
        int got = listening_port(g->log_path, log_start);
        if (got > 0) {
            g->port = got;
            snprintf(g->base, sizeof(g->base), "%s://127.0.0.1:%d",
                     tls ? "https" : "http", got);
            return true;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            g->pid = 0;
            break;
        }
        usleep(20 * 1000);
    }
    char *log = harness_read_file(g->log_path);
    fprintf(stderr, "tokend-gateway did not start; log:\n%s\n", log ? log : "");
    free(log);
    return false;
}

int harness_gateway_stop(gateway_proc *g) {
    return stop_checked(&g->pid, "tokend-gateway", g->log_path);
}

int harness_occupy_port(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    REQUIRE(bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
    REQUIRE(listen(fd, 16) == 0);
    REQUIRE(getsockname(fd, (struct sockaddr *)&addr, &len) == 0);
    *port = ntohs(addr.sin_port);
    return fd;
}

int harness_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    REQUIRE(bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
    REQUIRE(getsockname(fd, (struct sockaddr *)&addr, &len) == 0);
    close(fd);
    return ntohs(addr.sin_port);
}

void harness_start_or_die(tokend_proc *p) {
    harness_init(p);
    if (!harness_start(p)) {
        char *log = harness_read_file(p->log_path);
        fprintf(stderr, "tokend did not start; log:\n%s\n", log ? log : "");
        free(log);
    }
    REQUIRE(p->pid > 0);
}

int64_t harness_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------
 * curl, as partners call the gateway. */

static double curl_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void res_free(http_res *r) {
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* Runs curl with `args` (NULL-terminated); fills *r (free with res_free,
 * or call again: it frees first). Returns the HTTP status (0: none). */
int curl_call(http_res *r, const char *const *args) {
    static const char *dir;
    if (dir == NULL) {
        dir = test_tmpdir();
    }
    res_free(r);
    char hdr[400], body[400];
    snprintf(hdr, sizeof(hdr), "%s/headers", dir);
    snprintf(body, sizeof(body), "%s/body", dir);
    unlink(hdr);
    unlink(body);
    const char *argv[64] = {"curl", "-sS", "--max-time", "10", "-D",
                            hdr,    "-o",  body,         "-w", "%{http_code}"};
    size_t n = 10;
    for (size_t i = 0; args[i] != NULL && n < 63; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    char *out = NULL, *err = NULL;
    double t0 = curl_now_s();
    r->curl_rc = harness_exec(argv, NULL, NULL, &out, &err);
    r->seconds = curl_now_s() - t0;
    r->status = out != NULL ? atoi(out) : 0;
    if (r->curl_rc != 0 && getenv("TEST_VERBOSE") != NULL) {
        fprintf(stderr, "    curl exit %d: %s", r->curl_rc, err != NULL ? err : "");
    }
    r->headers = harness_read_file(hdr);
    r->body = harness_read_file(body);
    if (r->headers == NULL) {
        r->headers = strdup("");
    }
    if (r->body == NULL) {
        r->body = strdup("");
    }
    free(out);
    free(err);
    return r->status;
}

uint64_t harness_usage_sum(const tokend_usage *u, char map, const char *key) {
    uint64_t n = 0;
    for (size_t i = 0; i < u->n_buckets; i++) {
        const tokend_usage_bucket *b = &u->buckets[i];
        const tokend_usage_count *c = map == 'o'   ? b->outcomes
                                      : map == 'r' ? b->routes
                                                   : b->client_ips;
        size_t nc = map == 'o'   ? b->n_outcomes
                    : map == 'r' ? b->n_routes
                                 : b->n_client_ips;
        for (size_t k = 0; k < nc; k++) {
            if (strcmp(c[k].key, key) == 0) {
                n += c[k].count;
            }
        }
    }
    return n;
}
