/*
 * runner.c — runs the tests of list.h, each in a forked child with a time
 * limit, and prints one line per test and "N passed, N failed" last
 * (", N skipped" added when a test skipped: test_skip in test.h).
 *
 * Usage: tests/run [SUBSTRING...]   run only tests whose name contains one
 *                                   of the substrings (usage() below).
 * Environment: TEST_TIMEOUT (seconds per test, default 60).
 */
#include "test.h"

#include <errno.h>
#include <stdbool.h>
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

/* A test's child that skips exits with this status, after writing its
 * reason to skip_path(its pid). 77, as automake's test drivers use. */
#define SKIP_STATUS 77

static void skip_path(char *buf, size_t size, pid_t pid) {
    snprintf(buf, size, "%s/skip-%d", scratch, (int)pid);
}

void test_skip(const char *fmt, ...) {
    if (test_failures > 0) {
        /* A check already failed: that is the outcome, not a skip. */
        exit(1);
    }
    char path[300];
    skip_path(path, sizeof(path), getpid());
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "    %s: cannot record a skip in %s: %s\n", current_test, path,
                strerror(errno));
        exit(1);
    }
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    if (fclose(f) != 0) {
        exit(1);
    }
    exit(SKIP_STATUS);
}

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

typedef enum outcome { OUTCOME_FAIL, OUTCOME_PASS, OUTCOME_SKIP } outcome;

/* Reads (and removes) the skip reason the child `pid` wrote into `reason`
 * (one line). False if it wrote none: then status 77 is no skip. */
static bool read_skip(pid_t pid, char *reason, size_t size) {
    char path[300];
    skip_path(path, sizeof(path), pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    bool got = fgets(reason, (int)size, f) != NULL;
    fclose(f);
    unlink(path);
    if (got) {
        reason[strcspn(reason, "\n")] = '\0';
    }
    return got;
}

/* Runs one test in a child; returns its outcome, and a skip's reason. */
static outcome run_one(const test_entry *t, int timeout_s, char *reason, size_t size) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "fork: %s\n", strerror(errno));
        return OUTCOME_FAIL;
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
        return OUTCOME_PASS;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == SKIP_STATUS &&
        read_skip(pid, reason, size)) {
        return OUTCOME_SKIP;
    }
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "    %s: killed by signal %d%s\n", t->name, WTERMSIG(status),
                WTERMSIG(status) == SIGALRM ? " (timed out)" : "");
    }
    return OUTCOME_FAIL;
}

static void usage(FILE *out) {
    fprintf(out,
            "Usage: tests/run [SUBSTRING...]\n"
            "       tests/run --help\n"
            "\n"
            "Runs tokend's tests (tests/list.h), each in a child process of its own,\n"
            "and prints one line per test (ok, FAIL or skip) and the counts last:\n"
            "\"N passed, N failed\", with \", N skipped\" when a test skipped.\n"
            "\n"
            "Arguments:\n"
            "  SUBSTRING   run only the tests whose name contains one of them\n"
            "              (none: every test); e.g. tests/run gateway_ cli_\n"
            "\n"
            "A test skips, with the reason in its line, only when this machine does\n"
            "not allow what it needs (the faults_ tests mount file systems: root).\n"
            "\n"
            "Environment:\n"
            "  TEST_TIMEOUT   seconds a test may take before it fails (default 60)\n"
            "  TEST_WRAPPER   a command the integration tests run tokend, tokenctl\n"
            "                 and tokend-gateway under (make valgrind sets it)\n"
            "  TMPDIR         where the run's scratch directory is made (/tmp)\n"
            "\n"
            "Exit status: 0 if no test failed and at least one passed or skipped;\n"
            "1 otherwise (a failure, or no test matched); 2 if the run could not\n"
            "start.\n");
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (argv[i][0] == '-') {
            fprintf(stderr, "tests/run: unknown option %s\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
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

    int passed = 0, failed = 0, skipped = 0;
    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        if (!selected(tests[i].name, argc, argv)) {
            continue;
        }
        double t0 = now_s();
        char reason[512] = "";
        outcome o = run_one(&tests[i], timeout_s, reason, sizeof(reason));
        double ms = (now_s() - t0) * 1000;
        if (o == OUTCOME_SKIP) {
            printf("skip %s (%s) (%.0f ms)\n", tests[i].name, reason, ms);
            skipped++;
        } else {
            printf("%s %s (%.0f ms)\n", o == OUTCOME_PASS ? "ok  " : "FAIL",
                   tests[i].name, ms);
            o == OUTCOME_PASS ? passed++ : failed++;
        }
        fflush(stdout);
    }
    char *cmd = NULL;
    if (asprintf(&cmd, "rm -rf '%s'", scratch) > 0) {
        if (system(cmd) != 0) {
            fprintf(stderr, "could not remove %s\n", scratch);
        }
        free(cmd);
    }
    if (skipped > 0) {
        printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    } else {
        printf("%d passed, %d failed\n", passed, failed);
    }
    return failed == 0 && passed + skipped > 0 ? 0 : 1;
}
