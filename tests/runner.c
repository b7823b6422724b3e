/*
 * runner.c — runs the tests of list.h, each in a forked child with a time
 * limit, and prints one line per test and "N passed, N failed" last.
 *
 * Usage: tests/run [SUBSTRING...]   run only tests whose name contains one
 *                                   of the substrings.
 * Environment: TEST_TIMEOUT (seconds per test, default 60).
 */
#include "test.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "list.h"

#define X_DECL(name) void name(void);
TEST_LIST(X_DECL)
#undef X_DECL

typedef struct test_entry {
    const char *name;
    void (*fn)(void);
} test_entry;

static const test_entry tests[] = {
#define X_ENTRY(name) {#name, name},
    TEST_LIST(X_ENTRY)
#undef X_ENTRY
};

int test_failures;
static const char *current_test = "";
static char scratch[256];

void test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "    %s: %s:%d: ", current_test, file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    test_failures++;
}

int test_contains(const char *haystack, const char *needle) {
    return haystack != NULL && needle != NULL && strstr(haystack, needle) != NULL;
}

#define MAX_TMPDIRS 64

static char tmpdirs[MAX_TMPDIRS][320];

const char *test_tmpdir(void) {
    static int counter;
    if (counter == MAX_TMPDIRS) {
        fprintf(stderr, "a test may make at most %d temp dirs\n", MAX_TMPDIRS);
        exit(1);
    }
    char *path = tmpdirs[counter];
    snprintf(path, sizeof(tmpdirs[0]), "%s/t%d-%d", scratch, (int)getpid(), counter);
    counter++;
    if (mkdir(path, 0700) != 0) {
        fprintf(stderr, "cannot make a temp dir %s: %s\n", path, strerror(errno));
        exit(1);
    }
    return path;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int selected(const char *name, int argc, char **argv) {
    if (argc < 2) {
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        if (strstr(name, argv[i]) != NULL) {
            return 1;
        }
    }
    return 0;
}

/* Runs one test in a child; returns 1 if it passed. */
static int run_one(const test_entry *t, int timeout_s) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "fork: %s\n", strerror(errno));
        return 0;
    }
    if (pid == 0) {
        /* Own process group, so the runner can kill servers a test left. */
        setpgid(0, 0);
        current_test = t->name;
        alarm((unsigned)timeout_s);
        t->fn();
        /* exit(), not _exit(): LeakSanitizer runs at exit and turns a leak
         * into a non-zero status, failing the test under make asan. */
        exit(test_failures == 0 ? 0 : 1);
    }
    setpgid(pid, pid);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    /* Reap anything the test started and left behind. */
    kill(-pid, SIGKILL);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        return 1;
    }
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "    %s: killed by signal %d%s\n", t->name, WTERMSIG(status),
                WTERMSIG(status) == SIGALRM ? " (timed out)" : "");
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch, sizeof(scratch), "%s/tokend-test-XXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(scratch) == NULL) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return 2;
    }
    const char *to = getenv("TEST_TIMEOUT");
    int timeout_s = to ? atoi(to) : 60;
    if (timeout_s <= 0) {
        timeout_s = 60;
    }
    signal(SIGPIPE, SIG_IGN);

    int passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        if (!selected(tests[i].name, argc, argv)) {
            continue;
        }
        double t0 = now_s();
        int ok = run_one(&tests[i], timeout_s);
        printf("%s %s (%.0f ms)\n", ok ? "ok  " : "FAIL", tests[i].name,
               (now_s() - t0) * 1000);
        fflush(stdout);
        ok ? passed++ : failed++;
    }
    char *cmd = NULL;
    if (asprintf(&cmd, "rm -rf '%s'", scratch) > 0) {
        if (system(cmd) != 0) {
            fprintf(stderr, "could not remove %s\n", scratch);
        }
        free(cmd);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}
