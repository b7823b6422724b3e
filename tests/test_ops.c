/*
 * test_ops.c — what an operator meets before the first token: the test
 * runner's --help and its skips, a port that another process holds (tokend
 * and the gateway name the address and the way out), `make run` on the
 * addresses of the environment, and `make install` into a PREFIX of one's
 * own, whose library a program built with pkg-config finds by itself.
 *
 * The make tests run the source tree's Makefile with this build's BUILD
 * dir, on what is built already: make run with `-o deps`, so that a test
 * never installs a package, make install with `-o all`.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "test.h"

/* ------------------------------------------------------------------------
 * Helpers. */

/* The source tree (the build dir's parent) and the build dir's name in
 * it, as the Makefile's BUILD= wants it ("build", "build-asan"). */
static const char *source_root(void) {
    return harness_bin("..");
}

static const char *build_name(void) {
    static char name[PATH_MAX];
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", harness_bin("."));
    dir[strlen(dir) - 2] = '\0'; /* "…/build/." -> "…/build" */
    snprintf(name, sizeof(name), "%s", basename(dir));
    return name;
}

/* Environment for a make run from inside the suite: none of an outer
 * make's jobserver or level (make test runs the suite). */
#define MAKE_ENV "MAKEFLAGS=", "MAKELEVEL=", "MFLAGS="

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* How many times `needle` occurs in `text`. */
static int count_of(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = text; p != NULL && (p = strstr(p, needle)) != NULL;
         p += strlen(needle)) {
        n++;
    }
    return n;
}

/* The last non-empty line of `text`, copied into buf. */
static const char *last_line(const char *text, char *buf, size_t size) {
    buf[0] = '\0';
    if (text == NULL) {
        return buf;
    }
    size_t len = strlen(text);
    while (len > 0 && text[len - 1] == '\n') {
        len--;
    }
    size_t start = len;
    while (start > 0 && text[start - 1] != '\n') {
        start--;
    }
    snprintf(buf, size, "%.*s", (int)(len - start), text + start);
    return buf;
}

/* ------------------------------------------------------------------------
 * The test runner. */

TEST(runner_help_prints_usage) {
    const char *flags[] = {"--help", "-h"};
    for (size_t i = 0; i < 2; i++) {
        const char *argv[] = {harness_bin("tests/run"), flags[i], NULL};
        char *out = NULL, *err = NULL;
        CHECK_INT(harness_exec(argv, NULL, NULL, &out, &err), 0);
        CHECK(test_contains(out, "Usage: tests/run [SUBSTRING...]"));
        CHECK(test_contains(out, "TEST_TIMEOUT"));
        CHECK(test_contains(out, "Exit status"));
        CHECK(test_contains(out, "skipped"));
        /* Usage, not a run of no test. */
        CHECK(!test_contains(out, "0 passed"));
        free(out);
        free(err);
    }
    const char *argv[] = {harness_bin("tests/run"), "--no-such-flag", NULL};
    char *out = NULL, *err = NULL;
    CHECK_INT(harness_exec(argv, NULL, NULL, &out, &err), 2);
    CHECK(test_contains(err, "unknown option --no-such-flag"));
    CHECK(!test_contains(out, "passed"));
    free(out);
    free(err);
}

/* The fault tests mount file systems. Run where mounting is refused — as
 * root without CAP_SYS_ADMIN (setpriv drops it), or as the unprivileged
 * user the suite runs as — they report skipped, with the reason, and the
 * closing line, still the last, counts them. */
TEST(runner_skips_the_fault_tests_where_mounting_is_refused) {
    char *out = NULL, *err = NULL;
    int rc = 0;
    if (geteuid() == 0) {
        const char *argv[] = {"setpriv",
                              "--bounding-set=-sys_admin",
                              "--inh-caps=-sys_admin",
                              harness_bin("tests/run"),
                              "faults_",
                              NULL};
        rc = harness_exec(argv, NULL, NULL, &out, &err);
        if (rc != 0 && test_contains(err, "setpriv:") && !test_contains(out, "passed")) {
            /* Not allowed to drop a capability (no CAP_SETPCAP, as in a
             * container): then it has no CAP_SYS_ADMIN to drop either. */
            free(out);
            free(err);
            out = err = NULL;
        }
    }
    if (out == NULL) {
        const char *argv[] = {harness_bin("tests/run"), "faults_", NULL};
        rc = harness_exec(argv, NULL, NULL, &out, &err);
    }
    if (rc != 0 || !test_contains(out, "2 skipped")) {
        fprintf(stderr, "    nested run said:\n%s%s", out != NULL ? out : "",
                err != NULL ? err : "");
    }
    CHECK_INT(rc, 0);
    CHECK(
        test_contains(out, "skip faults_read_only_data_dir (cannot mount an ext4 image"));
    CHECK(test_contains(out, "skip faults_full_disk (cannot mount a tmpfs: Operation not "
                             "permitted; this test needs root"));
    CHECK(!test_contains(out, "FAIL"));
    char line[256];
    CHECK_STR(last_line(out, line, sizeof(line)), "0 passed, 0 failed, 2 skipped");
    free(out);
    free(err);
}

/* ------------------------------------------------------------------------
 * A port another process holds. */

TEST(service_listen_address_in_use_names_it_and_the_way_out) {
    tokend_proc p;
    harness_init(&p);
    int port = 0;
    int fd = harness_occupy_port(&port);
    char url[64], want[300], env_listen[96];
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);
    snprintf(want, sizeof(want),
             "tokend: cannot listen on %s: address already in use (another process "
             "listens there); pick another with --listen URL or TOKEND_LISTEN",
             url);
    snprintf(env_listen, sizeof(env_listen), "TOKEND_LISTEN=%s", url);

    /* Through the flag, then through the environment. */
    const char *by_flag[] = {
        harness_bin("tokend"), "serve", "--data-dir", p.data_dir, "--listen", url, NULL};
    const char *by_env[] = {harness_bin("tokend"), "serve", "--data-dir", p.data_dir,
                            NULL};
    const char *env[] = {env_listen, NULL};
    for (int i = 0; i < 2; i++) {
        char *out = NULL, *err = NULL;
        int rc = harness_exec(i == 0 ? by_flag : by_env, NULL, i == 0 ? NULL : env, &out,
                              &err);
        CHECK_INT(rc, 1); /* runtime failure, as tokend --help documents */
        if (!test_contains(err, want)) {
            fprintf(stderr, "    tokend said: %s\n", err != NULL ? err : "(nothing)");
            CHECK(0);
        }
        free(out);
        free(err);
    }
    close(fd);
    /* Free again, the same store serves on it. */
    p.extra[0] = "--listen";
    p.extra[1] = url;
    REQUIRE(harness_start(&p));
    CHECK_INT(harness_stop(&p), 0);
}

TEST(gateway_listen_address_in_use_names_it_and_the_way_out) {
    int port = 0;
    int fd = harness_occupy_port(&port);
    char listen_at[64], want[300], env_listen[96];
    snprintf(listen_at, sizeof(listen_at), "127.0.0.1:%d", port);
    snprintf(want, sizeof(want),
             "tokend-gateway: cannot listen on %s: address already in use (another "
             "process listens there); pick another with --listen HOST:PORT or "
             "TOKEND_GATEWAY_LISTEN",
             listen_at);
    snprintf(env_listen, sizeof(env_listen), "TOKEND_GATEWAY_LISTEN=%s", listen_at);

    const char *by_flag[] = {
        harness_bin("tokend-gateway"), "--listen", listen_at, "--service",
        "tcp://127.0.0.1:1",           NULL};
    const char *by_env[] = {harness_bin("tokend-gateway"), "--service",
                            "tcp://127.0.0.1:1", NULL};
    const char *env[] = {env_listen, NULL};
    for (int i = 0; i < 2; i++) {
        char *out = NULL, *err = NULL;
        int rc = harness_exec(i == 0 ? by_flag : by_env, NULL, i == 0 ? NULL : env, &out,
                              &err);
        CHECK_INT(rc, 1); /* runtime failure, as tokend-gateway's main.c documents */
        if (!test_contains(err, want)) {
            fprintf(stderr, "    tokend-gateway said: %s\n",
                    err != NULL ? err : "(nothing)");
            CHECK(0);
        }
        /* libmicrohttpd's own line named no address ("port 0"). */
        CHECK(!test_contains(err, "port 0"));
        free(out);
        free(err);
    }
    close(fd);
}

/* ------------------------------------------------------------------------
 * make run and make install. */

/* Starts `make -o deps run` in the source tree with `env` added, in a
 * process group of its own, stdout and stderr into `log_path`. */
static pid_t start_make_run(const char *log_path, const char *const *env) {
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int null_fd = open("/dev/null", O_RDONLY);
        if (fd < 0 || null_fd < 0) {
            _exit(127);
        }
        dup2(null_fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        for (size_t i = 0; env[i] != NULL; i++) {
            putenv((char *)env[i]);
        }
        char build[PATH_MAX + 8];
        snprintf(build, sizeof(build), "BUILD=%s", build_name());
        execlp("make", "make", "--no-print-directory", "-C", source_root(), "-o", "deps",
               build, "run", (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    return pid;
}

TEST(build_make_run_honours_the_environment) {
    const char *dir = test_tmpdir();
    int http_port = harness_free_port();
    char data_dir[400], sock[400], log_path[400];
    snprintf(data_dir, sizeof(data_dir), "%s/data", dir);
    snprintf(sock, sizeof(sock), "ipc://%s/tokend.sock", dir);
    snprintf(log_path, sizeof(log_path), "%s/make-run.log", dir);
    char e_data[440], e_listen[440], e_http[80];
    snprintf(e_data, sizeof(e_data), "TOKEND_DATA_DIR=%s", data_dir);
    snprintf(e_listen, sizeof(e_listen), "TOKEND_LISTEN=%s", sock);
    snprintf(e_http, sizeof(e_http), "TOKEND_GATEWAY_LISTEN=127.0.0.1:%d", http_port);
    /* The Makefile's own variables stay unset, as in a user's shell. */
    const char *env[] = {e_data, e_listen, e_http, MAKE_ENV, NULL};
    pid_t make = start_make_run(log_path, env);

    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/readyz", http_port);
    const char *w = getenv("TEST_WRAPPER");
    double limit = w != NULL && w[0] != '\0' ? 100 : 20;
    http_res r = {0};
    bool ready = false;
    for (double t0 = now_s(); now_s() - t0 < limit && !ready;) {
        ready = CURL(&r, url) == 200;
        if (!ready) {
            usleep(100 * 1000);
        }
    }
    res_free(&r);
    CHECK(
        ready); /* the gateway on TOKEND_GATEWAY_LISTEN reaches tokend on TOKEND_LISTEN */

    /* Ctrl-C: SIGINT to the terminal's process group. */
    kill(-make, SIGINT);
    int status = 0;
    bool exited = false;
    for (double t0 = now_s(); now_s() - t0 < limit && !exited;) {
        pid_t got = waitpid(make, &status, WNOHANG);
        exited = got == make;
        if (!exited) {
            usleep(50 * 1000);
        }
    }
    CHECK(exited);
    kill(-make, SIGKILL);
    if (!exited) {
        waitpid(make, &status, 0);
    }
    /* Give the two programs a moment to write their last lines. */
    usleep(200 * 1000);

    char *log = harness_read_file(log_path);
    REQUIRE(log != NULL);
    char want[600];
    snprintf(want, sizeof(want),
             "tokend is starting on %s, tokend-gateway on "
             "http://127.0.0.1:%d",
             sock, http_port);
    CHECK(test_contains(log, want));
    snprintf(want, sizeof(want), "export TOKEND_URL=%s", sock);
    CHECK(test_contains(log, want));
    snprintf(want, sizeof(want), "First start: initialising %s.", data_dir);
    CHECK(test_contains(log, want));
    CHECK(!test_contains(log, "Nothing to be done"));
    /* Each process says which it is, stops once and cleanly. */
    CHECK_INT(count_of(log, "proc=tokend event=listening"), 1);
    CHECK_INT(count_of(log, "proc=gateway event=listening"), 1);
    CHECK_INT(count_of(log, "proc=tokend event=stopping"), 1);
    CHECK_INT(count_of(log, "proc=gateway event=stopping"), 1);
    CHECK_INT(count_of(log, "proc=tokend event=stopped"), 1);
    CHECK_INT(count_of(log, "proc=gateway event=stopped"), 1);
    CHECK_INT(count_of(log, "event=stopping"), 2);
    CHECK(!test_contains(log, "level=error"));
    snprintf(want, sizeof(want), "%s/CURRENT", data_dir);
    CHECK(access(want, F_OK) == 0);
    if (test_failures > 0) {
        fprintf(stderr, "    make run printed:\n%s", log);
    }
    free(log);
}

TEST(build_install_into_a_prefix_runs_without_ld_library_path) {
    const char *dir = test_tmpdir();
    char prefix[400], build_arg[PATH_MAX + 8], prefix_arg[420];
    snprintf(prefix, sizeof(prefix), "%s/prefix", dir);
    snprintf(prefix_arg, sizeof(prefix_arg), "PREFIX=%s", prefix);
    snprintf(build_arg, sizeof(build_arg), "BUILD=%s", build_name());
    const char *env[] = {MAKE_ENV, NULL};
    /* -o all: install what this run tests, never build it again here
     * (with flags other than this build's own, such as make asan's). */
    const char *install[] = {"make",    "-s",          "--no-print-directory",
                             "-C",      source_root(), "-o",
                             "all",     build_arg,     prefix_arg,
                             "install", NULL};
    char *out = NULL, *err = NULL;
    int rc = harness_exec(install, NULL, env, &out, &err);
    if (rc != 0) {
        fprintf(stderr, "    make install: %s%s", out ? out : "", err ? err : "");
    }
    REQUIRE(rc == 0);
    free(out);
    free(err);

    /* The contract, for other languages' code generators. */
    char path[600], src[600];
    snprintf(path, sizeof(path), "%s/share/tokend/tokend.proto", prefix);
    snprintf(src, sizeof(src), "%s/proto/tokend.proto", source_root());
    char *installed = harness_read_file(path), *original = harness_read_file(src);
    CHECK(installed != NULL && original != NULL && strcmp(installed, original) == 0);
    free(installed);
    free(original);

    /* A program built the documented way, run with no LD_LIBRARY_PATH. */
    char prog_c[420], prog[420];
    snprintf(prog_c, sizeof(prog_c), "%s/prog.c", dir);
    snprintf(prog, sizeof(prog), "%s/prog", dir);
    FILE *f = fopen(prog_c, "w");
    REQUIRE(f != NULL);
    fputs("#include <stdio.h>\n#include <tokend.h>\n"
          "int main(void) {\n"
          "    printf(\"%s %s\\n\", TOKEND_VERSION, "
          "tokend_status_name(TOKEND_NOT_FOUND));\n"
          "    return 0;\n}\n",
          f);
    REQUIRE(fclose(f) == 0);
    /* Under make asan the library needs the sanitizers' runtime first in
     * line: the program is then built with them too. */
    char cmd[3200];
    snprintf(cmd, sizeof(cmd),
             "PKG_CONFIG_PATH='%s/lib/pkgconfig' && export PKG_CONFIG_PATH && "
             "san=$(readelf -d '%s/lib/libtokend.so' | grep -q libasan && "
             "echo -fsanitize=address,undefined); "
             "cc $san -o '%s' '%s' $(pkg-config --cflags --libs tokend) && "
             "env -u LD_LIBRARY_PATH '%s' > '%s.out' 2>&1",
             prefix, prefix, prog, prog_c, prog, prog);
    rc = system(cmd);
    snprintf(path, sizeof(path), "%s.out", prog);
    char *said = harness_read_file(path);
    if (rc != 0) {
        fprintf(stderr, "    %s\n    said: %s\n", cmd, said ? said : "");
    }
    CHECK_INT(rc, 0);
    CHECK(test_contains(said, TOKEND_VERSION " NOT_FOUND"));
    free(said);

    /* And it is the installed library it loaded, through its rpath. */
    const char *readelf[] = {"readelf", "-d", prog, NULL};
    out = NULL;
    CHECK_INT(harness_exec(readelf, NULL, NULL, &out, NULL), 0);
    snprintf(path, sizeof(path), "[%s/lib]", prefix);
    CHECK(test_contains(out, path));
    free(out);

    /* make uninstall takes it all away again. */
    const char *uninstall[] = {"make",     "-s",          "--no-print-directory",
                               "-C",       source_root(), build_arg,
                               prefix_arg, "uninstall",   NULL};
    CHECK_INT(harness_exec(uninstall, NULL, env, NULL, NULL), 0);
    snprintf(path, sizeof(path), "%s/share/tokend/tokend.proto", prefix);
    CHECK(access(path, F_OK) != 0);
    snprintf(path, sizeof(path), "%s/lib/libtokend.so", prefix);
    CHECK(access(path, F_OK) != 0);
}
