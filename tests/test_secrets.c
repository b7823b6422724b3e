/*
 * test_secrets.c — what the memory of the real tokend and gateway gives
 * away: whether they dump core (not by default; yes with
 * --allow-core-dumps). Not among `make valgrind`'s tests (service_,
 * cli_, gateway_): valgrind writes cores of its own.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "test.h"
#include "token.h"

/* The soft and hard core size limits of `pid`, as /proc/PID/limits writes
 * them ("0", "unlimited", a number). */
static void core_limits(pid_t pid, char *soft, char *hard, size_t size) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
    char *limits = harness_read_file(path);
    REQUIRE(limits != NULL);
    const char *line = strstr(limits, "Max core file size");
    REQUIRE(line != NULL);
    char fmt[32];
    snprintf(fmt, sizeof(fmt), "Max core file size %%%zus %%%zus", size - 1, size - 1);
    REQUIRE(sscanf(line, fmt, soft, hard) == 2);
    free(limits);
}

/* Aborts *pid, a child of this process, with SIGABRT and returns whether
 * it dumped core (the kernel says so in its exit status; a process that
 * is not dumpable never does, whatever the core limit or core_pattern).
 * A core file lands in its working directory, a scratch one. */
static bool aborts_with_core(pid_t *pid) {
    REQUIRE(*pid > 0);
    kill(*pid, SIGABRT);
    int status = 0;
    while (waitpid(*pid, &status, 0) < 0 && errno == EINTR) {
    }
    *pid = 0;
    REQUIRE(WIFSIGNALED(status));
    return WCOREDUMP(status);
}

/* Checks what `*pid` allows, then aborts it: no core by default (limit 0,
 * not dumpable), a core of the hard limit's size with --allow-core-dumps. */
static void check_core_dump(pid_t *pid, bool allowed, const char *what) {
    char soft[32], hard[32];
    core_limits(*pid, soft, hard, sizeof(soft));
    bool limits_ok = allowed ? strcmp(soft, hard) == 0 && strcmp(soft, "0") != 0
                             : strcmp(soft, "0") == 0 && strcmp(hard, "0") == 0;
    bool dumped = aborts_with_core(pid);
    if (!limits_ok || dumped != allowed) {
        test_fail(__FILE__, __LINE__, "%s%s: core size limit %s (hard %s), %s on SIGABRT",
                  what, allowed ? " --allow-core-dumps" : "", soft, hard,
                  dumped ? "dumped core" : "no core");
    }
}

/* Gives the test room to see cores: its own hard core limit above 0 (root
 * may raise it), a core_pattern that writes one, and a scratch working
 * directory for the programs it starts, where a core file lands. */
static void prepare_for_cores(void) {
    struct rlimit core;
    REQUIRE(getrlimit(RLIMIT_CORE, &core) == 0);
    if (core.rlim_max == 0) {
        core.rlim_max = RLIM_INFINITY;
        REQUIRE(setrlimit(RLIMIT_CORE, &core) == 0);
    }
    char *pattern = harness_read_file("/proc/sys/kernel/core_pattern");
    REQUIRE(pattern != NULL && pattern[0] != '\0' && pattern[0] != '\n');
    free(pattern);
    REQUIRE(chdir(test_tmpdir()) == 0);
}

TEST(secrets_tokend_core_dumps_off_unless_allowed) {
    prepare_for_cores();
    tokend_proc p;
    harness_init(&p);
    REQUIRE(harness_start(&p));
    check_core_dump(&p.pid, false, "tokend serve");
    p.extra[0] = "--allow-core-dumps";
    REQUIRE(harness_start(&p));
    check_core_dump(&p.pid, true, "tokend serve");
    /* The environment sets it like the flag (TOKEND_ALLOW_CORE_DUMPS). */
    p.extra[0] = NULL;
    static char env[] = "TOKEND_ALLOW_CORE_DUMPS=true";
    putenv(env);
    REQUIRE(harness_start(&p));
    check_core_dump(&p.pid, true, "tokend serve (environment)");
}

TEST(secrets_gateway_core_dumps_off_unless_allowed) {
    prepare_for_cores();
    tokend_proc p;
    harness_init(&p);
    REQUIRE(harness_start(&p));
    gateway_proc g;
    memset(&g, 0, sizeof(g));
    REQUIRE(harness_gateway_start(&g, p.url, 0));
    check_core_dump(&g.pid, false, "tokend-gateway");
    g.extra[0] = "--allow-core-dumps";
    REQUIRE(harness_gateway_start(&g, p.url, 0));
    check_core_dump(&g.pid, true, "tokend-gateway");
    harness_stop(&p);
}
