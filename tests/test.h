/*
 * test.h — tokend's test runner: one list of tests, each run in a child
 * process (a crash or hang fails that test, not the run), a summary line
 * "N passed, N failed" last (", N skipped" when a test skipped).
 *
 * A test is `void name(void)` declared with TEST(name) and listed once in
 * tests/list.h. Checks do not stop the test; REQUIRE does (for a check
 * whose failure makes the rest meaningless).
 */
#ifndef TOKEND_TEST_H
#define TOKEND_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST(name)   \
    void name(void); \
    void name(void)

/* Failures so far in the running test (per child process). */
extern int test_failures;

void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define CHECK(cond)                                                   \
    do {                                                              \
        if (!(cond)) {                                                \
            test_fail(__FILE__, __LINE__, "check failed: %s", #cond); \
        }                                                             \
    } while (0)

#define REQUIRE(cond)                                             \
    do {                                                          \
        if (!(cond)) {                                            \
            test_fail(__FILE__, __LINE__, "required: %s", #cond); \
            exit(1);                                              \
        }                                                         \
    } while (0)

#define CHECK_INT(got, want)                                                           \
    do {                                                                               \
        long long got_ = (long long)(got), want_ = (long long)(want);                  \
        if (got_ != want_) {                                                           \
            test_fail(__FILE__, __LINE__, "%s == %lld, want %lld", #got, got_, want_); \
        }                                                                              \
    } while (0)

#define CHECK_STR(got, want)                                                 \
    do {                                                                     \
        const char *got_ = (got), *want_ = (want);                           \
        if (got_ == NULL || want_ == NULL || strcmp(got_, want_) != 0) {     \
            test_fail(__FILE__, __LINE__, "%s == \"%s\", want \"%s\"", #got, \
                      got_ ? got_ : "(null)", want_ ? want_ : "(null)");     \
        }                                                                    \
    } while (0)

/* Ends the running test as skipped, with a one-line reason (printf-style)
 * that the runner prints in the test's line and counts in the closing
 * one. Only for what this machine does not allow (no right to mount, no
 * loop device), found by trying it: never for a check that failed. A
 * test that has already failed a check fails instead. Does not return. */
void test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* True if haystack contains needle (both may be NULL: false). */
int test_contains(const char *haystack, const char *needle);

/* A fresh empty directory under the run's scratch directory, which the
 * runner removes when it finishes. The string belongs to the runner (freed
 * at exit, so LeakSanitizer stays quiet); do not free it. */
const char *test_tmpdir(void);

#endif /* TOKEND_TEST_H */
