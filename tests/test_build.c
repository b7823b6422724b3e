/*
 * test_build.c — the build's shape, checked as part of the suite: the
 * folder graph of the sources (tests/structure.sh layers), that the check
 * itself catches a planted back-edge, that libtokend.so exports exactly
 * the functions of tokend.h, one error convention's text rules, and a
 * short crash-durability run (tests/crash, 5 SIGKILLs under load), so that
 * the runner's closing line counts it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "harness.h"
#include "test.h"

/* The source tree: the build dir's parent (BUILD is a folder of it). */
static const char *source_root(void) {
    return harness_bin("..");
}

static int run_structure(const char *mode, const char *arg, char **out) {
    const char *script = harness_bin("../tests/structure.sh");
    const char *argv[] = {"bash", script, mode, arg, NULL};
    char *err = NULL;
    int rc = harness_exec(argv, NULL, NULL, out, &err);
    if (rc != 0 && err != NULL && err[0] != '\0') {
        fprintf(stderr, "    structure.sh %s: %s", mode, err);
    }
    free(err);
    return rc;
}

TEST(build_layers_follow_the_folder_graph) {
    char *out = NULL;
    int rc = run_structure("layers", source_root(), &out);
    if (rc != 0 && out != NULL) {
        fprintf(stderr, "%s", out);
    }
    CHECK_INT(rc, 0);
    CHECK(test_contains(out, "layers: ok"));
    free(out);
}

/* Copies the five layered folders to a temp dir, plants `line` at the end
 * of `file` there, and returns the check's exit code and output. */
static int layers_with(const char *file, const char *line, char **out) {
    const char *dir = test_tmpdir();
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && cp -r include proto client service gateway '%s'/ && "
             "printf '%%s\\n' '%s' >> '%s/%s'",
             source_root(), dir, line, dir, file);
    REQUIRE(system(cmd) == 0);
    return run_structure("layers", dir, out);
}

TEST(build_layer_check_catches_a_back_edge) {
    struct {
        const char *file, *line, *expect;
    } cases[] = {
        {"gateway/api.c", "#include \"store.h\"", "gateway/api.c:",
         /* a service header from the gateway */},
        {"proto/rpc.h", "#include \"upstream.h\"", "not allowed from proto/"},
        {"client/tokend.c", "#include \"config.h\"", "not allowed from client/"},
        {"service/server.c", "#include \"../gateway/http.h\"", "by path"},
        {"include/tokend.h", "#include \"rpc.h\"", "not allowed from include/"},
        {"include/tokend.h", "#include \"tokend.pb-c.h\"", "generated"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = NULL;
        int rc = layers_with(cases[i].file, cases[i].line, &out);
        CHECK_INT(rc, 1);
        if (!test_contains(out, cases[i].expect)) {
            fprintf(stderr, "    planted %s in %s; check said: %s\n", cases[i].line,
                    cases[i].file, out != NULL ? out : "(nothing)");
            CHECK(0);
        }
        free(out);
    }
}

TEST(build_library_exports_only_the_api) {
    char *out = NULL;
    int rc = run_structure("exports", harness_bin(""), &out);
    if (rc != 0 && out != NULL) {
        fprintf(stderr, "%s", out);
    }
    CHECK_INT(rc, 0);
    CHECK(test_contains(out, "exports: ok"));
    free(out);
}

TEST(build_error_detail_rules) {
    tokend_error err;
    CHECK_INT(error_set(&err, TOKEND_NOT_FOUND, NULL), TOKEND_NOT_FOUND);
    CHECK_INT(err.code, TOKEND_NOT_FOUND);
    CHECK_STR(err.message, tokend_strerror(TOKEND_NOT_FOUND));
    CHECK_INT(error_set(&err, TOKEND_INVALID_ARGUMENT, "bad\tvalue\n\"%s\"", "x\x1b[31m"),
              TOKEND_INVALID_ARGUMENT);
    CHECK_STR(err.message, "bad value \"x [31m\"");
    CHECK_INT(error_prefix(&err, "--%s: ", "listen"), TOKEND_INVALID_ARGUMENT);
    CHECK_STR(err.message, "--listen: bad value \"x [31m\"");
    CHECK_INT(error_set(&err, TOKEND_OK, "ignored"), TOKEND_OK);
    CHECK_STR(err.message, "");
    CHECK_INT(error_set(NULL, TOKEND_INTERNAL, "no detail wanted"), TOKEND_INTERNAL);

    /* A long message is cut whole-character: 300 two-byte "é". */
    char long_text[601];
    for (int i = 0; i < 300; i++) {
        memcpy(long_text + 2 * i, "\xc3\xa9", 2);
    }
    long_text[600] = '\0';
    error_set(&err, TOKEND_INTERNAL, "%s", long_text);
    size_t n = strlen(err.message);
    CHECK(n < sizeof err.message);
    CHECK_INT(n % 2, 0);
    CHECK(n >= sizeof err.message - 2);
}

TEST(crash_smoke_five_kills) {
    const char *argv[] = {harness_bin("tests/crash"), "--kills", "5", NULL};
    char *out = NULL, *err = NULL;
    int rc = harness_exec(argv, NULL, NULL, &out, &err);
    if (rc != 0) {
        fprintf(stderr, "%s%s", out != NULL ? out : "", err != NULL ? err : "");
    }
    CHECK_INT(rc, 0);
    /* Its closing line, as in `make crash`. */
    const char *text = out != NULL && strstr(out, "acknowledged") ? out : err;
    CHECK(test_contains(text, ", lost 0"));
    const char *line = text != NULL ? strstr(text, "acknowledged") : NULL;
    if (line != NULL) {
        printf("    %.*s\n", (int)strcspn(line, "\n"), line);
    }
    free(out);
    free(err);
}
