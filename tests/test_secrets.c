/*
 * test_secrets.c — what the memory of the real tokend and gateway gives
 * away: whether they dump core (not by default; yes with
 * --allow-core-dumps), and whether a caller's credential is still in
 * tokend's memory once its calls are over (what a core dump would hand
 * out). Not among `make valgrind`'s tests (service_, cli_, gateway_):
 * valgrind writes cores of its own.
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

/* How many times `needle` occurs in the writable memory of `pid` (its
 * heap, thread arenas and stacks: what a core dump would hold). */
static size_t count_in_memory(pid_t pid, const char *needle) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    char *maps = harness_read_file(path);
    REQUIRE(maps != NULL);
    snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
    int fd = open(path, O_RDONLY);
    REQUIRE(fd >= 0);
    size_t needle_len = strlen(needle), found = 0, chunk = 1 << 20;
    /* Chunks overlap by the needle's length, so none is missed at a seam. */
    char *buf = malloc(chunk + needle_len);
    REQUIRE(buf != NULL);
    for (char *line = maps; *line != '\0';) {
        unsigned long lo = 0, hi = 0;
        char perms[8] = "";
        /* Past a GiB a mapping is a sanitizer's shadow (terabytes, under
         * `make asan`), not a heap or a stack. */
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && perms[0] == 'r' &&
            perms[1] == 'w' && hi - lo <= (1ul << 30)) {
            for (unsigned long at = lo; at < hi; at += chunk) {
                size_t want = hi - at < chunk + needle_len ? hi - at : chunk + needle_len;
                ssize_t n = pread(fd, buf, want, (off_t)at);
                for (size_t off = 0; n > 0 && off < (size_t)n;) {
                    char *hit = memmem(buf + off, (size_t)n - off, needle, needle_len);
                    if (hit == NULL) {
                        break;
                    }
                    /* A hit in the overlap is the next chunk's to count. */
                    off = (size_t)(hit - buf);
                    found += off < chunk;
                    off++;
                }
            }
        }
        char *nl = strchr(line, '\n');
        line = nl != NULL ? nl + 1 : line + strlen(line);
    }
    free(buf);
    close(fd);
    free(maps);
    return found;
}

TEST(secrets_tokend_memory_holds_no_credential_after_calls) {
    tokend_proc p;
    harness_init(&p);
    /* Dumpable, so that this test may read the memory as a core would. */
    p.extra[0] = "--allow-core-dumps";
    REQUIRE(harness_start(&p));
    tokend_client *admin = harness_client(&p, p.admin);
    static const char *const abilities[] = {"orders:read"};
    char token[128];
    harness_create(admin, "partner:mem", "first", abilities, 1, 0, token, sizeof(token),
                   NULL, 0);
    for (int i = 0; i < 3; i++) {
        harness_create(admin, "partner:mem", "more", abilities, 1, 0, NULL, 0, NULL, 0);
    }
    tokend_token_page page;
    CHECK_INT(tokend_list(admin, NULL, "partner:mem", 0, NULL, &page, NULL), TOKEND_OK);
    tokend_token_page_free(&page);
    CHECK_INT(
        tokend_verify(admin, NULL, token, abilities, 1, TOKEND_ABILITIES_ALL, NULL, NULL),
        TOKEND_OK);
    tokend_close(admin);
    usleep(300 * 1000); /* the usage flush (100 ms) and the writer settle */

    /* Every buffer that held the credential was wiped before it was
     * freed: the request, its decoded envelope. */
    CHECK_INT(count_in_memory(p.pid, p.admin), 0);
    /* A new token leaves in its reply, which NNG frees after sending
     * without a hook to wipe it: at most that one copy, until the memory
     * is reused. */
    CHECK(count_in_memory(p.pid, token) <= 1);
    harness_stop(&p);
}
