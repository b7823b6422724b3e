/*
 * test_opt.c — unit tests of proto/opt.c, the option engine, on a sample
 * table of its own (every type, a secret, a row of one command only, a
 * config file): the parsers, the order of the sources, the error lines,
 * --help, and the argv reader tokenctl uses. Each test runs in its own
 * process, so the environment it sets goes with it.
 */
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "opt.h"
#include "test.h"

typedef struct sample {
    char *name;
    opt_list urls;
    int64_t count;
    int64_t ttl_s;
    bool quiet;
    char *secret;
    char *only_b;
    char *file;
    opt_list services;
    char *max_idle;
} sample;

enum { CMD_A = 1, CMD_B = 2 };

#define F(f) offsetof(sample, f)

static const opt_def rows[] = {
    {"name", OPT_STRING, "dflt", F(name), 0, 0, 0, 0, "NAME", "a name"},
    {"url", OPT_LIST, "u0", F(urls), 0, 0, 0, 0, "URL", "a URL; repeat for several"},
    {"count", OPT_INT, "5", F(count), 1, 10, 0, 0, "N", "how many"},
    {"ttl", OPT_DURATION, "0", F(ttl_s), 0, 0, 0, 0, "DURATION", "how long"},
    {"quiet", OPT_BOOL, "false", F(quiet), 0, 0, 0, 0, NULL,
     "say less; this help is long enough that --help has to wrap it over more than "
     "one line of at most seventy-nine columns"},
    {"secret", OPT_STRING, NULL, F(secret), 0, 0, OPT_SECRET, 0, "TOKEN", "a secret"},
    {"only-b", OPT_STRING, NULL, F(only_b), 0, 0, 0, CMD_B, "X", "for command B"},
    {"config", OPT_STRING, NULL, F(file), 0, 0, OPT_FILE, 0, "FILE", "options file"},
    {"service", OPT_LIST, NULL, F(services), 0, 0, OPT_URL, 0, "URL", "a service URL"},
    {"max-idle", OPT_STRING, NULL, F(max_idle), 0, 0, 0, 0, "X", "a dashed name"},
};

static const opt_table table = {
    OPT_TABLE_OF(rows, sample),
    .env_prefix = "OPTTEST_",
    .version = true,
};

/* opt_load of `table` for `cmd` on the flags `args` (NULL-terminated). */
static int load(sample *s, unsigned cmd, const char *const *args, opt_outcome *outcome,
                tokend_error *err) {
    char *argv[32] = {"prog"};
    int argc = 1;
    for (; args[argc - 1] != NULL && argc < 31; argc++) {
        argv[argc] = (char *)args[argc - 1]; /* opt_load only reads argv */
    }
    return opt_load(&table, s, cmd, argc, argv, 1, outcome, err);
}

/* Writes `text` to a new file in a temp dir; returns its path (static). */
static const char *write_file(const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/opt.conf", test_tmpdir());
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    fputs(text, f);
    fclose(f);
    return path;
}

#define CHECK_LIST(list, ...)                                 \
    do {                                                      \
        const char *want_list_[] = {__VA_ARGS__};             \
        size_t n_ = sizeof want_list_ / sizeof want_list_[0]; \
        CHECK_INT((list).n, n_);                              \
        for (size_t i_ = 0; i_ < n_ && i_ < (list).n; i_++) { \
            CHECK_STR((list).items[i_], want_list_[i_]);      \
        }                                                     \
    } while (0)

TEST(opt_durations_and_whole_numbers) {
    static const struct {
        const char *text;
        int64_t seconds;
    } good[] = {{"0", 0},
                {"90", 90},
                {"90s", 90},
                {"15m", 900},
                {"12h", 43200},
                {"30d", 2592000},
                {"3660000d", 10000LL * 366 * 86400}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int64_t s = -1;
        CHECK_INT(opt_parse_duration(good[i].text, &s, NULL), TOKEND_OK);
        CHECK_INT(s, good[i].seconds);
    }
    static const char *const garbage[] = {"", "-5", "+5", " 5", "5 ", "5sx", "s", "5x"};
    tokend_error err;
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        int64_t s = -1;
        CHECK_INT(opt_parse_duration(garbage[i], &s, &err), TOKEND_INVALID_ARGUMENT);
        CHECK_INT(s, -1);
    }
    CHECK(test_contains(err.message, "unknown unit"));
    int64_t s;
    CHECK_INT(opt_parse_duration("3660001d", &s, &err), TOKEND_RESOURCE_EXHAUSTED);
    CHECK(test_contains(err.message, "too long"));
    CHECK_INT(opt_parse_duration("99999999999999999999", &s, NULL),
              TOKEND_RESOURCE_EXHAUSTED);

    long long v = 0;
    CHECK_INT(opt_parse_int("7", 1, 10, &v, NULL), TOKEND_OK);
    CHECK_INT(v, 7);
    CHECK_INT(opt_parse_int("-3", -5, 5, &v, NULL), TOKEND_OK);
    CHECK_INT(v, -3);
    CHECK_INT(opt_parse_int("11", 1, 10, &v, &err), TOKEND_INVALID_ARGUMENT);
    CHECK_STR(err.message, "must be a whole number from 1 to 10");
    static const char *const not_ints[] = {"",   "-",   "+5",  " 5",
                                           "5 ", "0x5", "5.0", "99999999999999999999"};
    for (size_t i = 0; i < sizeof not_ints / sizeof not_ints[0]; i++) {
        CHECK_INT(opt_parse_int(not_ints[i], LLONG_MIN, LLONG_MAX, &v, NULL),
                  TOKEND_INVALID_ARGUMENT);
    }
}

TEST(opt_sources_in_order) {
    sample s;
    opt_outcome outcome;
    tokend_error err;
    const char *none[] = {NULL};
    CHECK_INT(load(&s, CMD_A, none, &outcome, &err), TOKEND_OK);
    CHECK_INT(outcome, OPT_RUN);
    CHECK_STR(s.name, "dflt");
    CHECK_LIST(s.urls, "u0");
    CHECK_INT(s.count, 5);
    CHECK(!s.quiet);
    CHECK(s.secret == NULL && s.file == NULL);
    opt_free(&table, &s);

    /* The file (named by the environment) over defaults; a key of the
     * other command is passed over. */
    const char *path = write_file(
        "# comment\n\nname = from-file\nurl = f1, f2\ncount = 6\nonly-b = x\n");
    setenv("OPTTEST_CONFIG", path, 1);
    CHECK_INT(load(&s, CMD_A, none, &outcome, &err), TOKEND_OK);
    CHECK_STR(s.name, "from-file");
    CHECK_LIST(s.urls, "f1", "f2");
    CHECK_INT(s.count, 6);
    CHECK(s.only_b == NULL);
    CHECK_STR(s.file, path);
    opt_free(&table, &s);

    /* The environment over the file, a list replaced whole. */
    setenv("OPTTEST_NAME", "from-env", 1);
    setenv("OPTTEST_URL", "e1", 1);
    CHECK_INT(load(&s, CMD_A, none, &outcome, &err), TOKEND_OK);
    CHECK_STR(s.name, "from-env");
    CHECK_LIST(s.urls, "e1");
    CHECK_INT(s.count, 6);
    opt_free(&table, &s);

    /* Flags over everything: the first list flag replaces, later ones add. */
    const char *flags[] = {"--name",  "from-flag", "--url", "a", "--url=b, c",
                           "--quiet", "--ttl",     "2h",    NULL};
    CHECK_INT(load(&s, CMD_A, flags, &outcome, &err), TOKEND_OK);
    CHECK_STR(s.name, "from-flag");
    CHECK_LIST(s.urls, "a", "b", "c");
    CHECK_INT(s.count, 6);
    CHECK(s.quiet);
    CHECK_INT(s.ttl_s, 7200);
    opt_free(&table, &s);

    /* --config over the environment's file; its value is not a flag. */
    const char *other = write_file("count = 7\n");
    const char *with_file[] = {"--name", "--config", "--config", other, NULL};
    CHECK_INT(load(&s, CMD_A, with_file, &outcome, &err), TOKEND_OK);
    CHECK_INT(s.count, 7);
    CHECK_STR(s.name, "--config");
    opt_free(&table, &s);
    CHECK(s.name == NULL && s.urls.n == 0);
}

/* Loads `args` for command A and checks the one error line. */
static void check_refused(const char *const *args, const char *want) {
    sample s;
    opt_outcome outcome;
    tokend_error err;
    CHECK_INT(load(&s, CMD_A, args, &outcome, &err), TOKEND_INVALID_ARGUMENT);
    CHECK_INT(err.code, TOKEND_INVALID_ARGUMENT);
    if (strcmp(err.message, want) != 0) {
        test_fail(__FILE__, __LINE__, "got \"%s\", want \"%s\"", err.message, want);
    }
    opt_free(&table, &s);
}

TEST(opt_refusals_name_the_source) {
    static const struct {
        const char *args[3];
        const char *want;
    } flags[] = {
        {{"--bogus=1"}, "unknown option \"--bogus\" (see --help)"},
        {{"--only-b", "x"}, "unknown option \"--only-b\" (see --help)"},
        {{"--count"}, "--count needs a value (see --help)"},
        {{"--count", "11"},
         "flag: --count must be a whole number from 1 to 10, not \"11\""},
        {{"stray"}, "unexpected argument \"stray\" (see --help)"},
        {{"--quiet", "yes"}, "unexpected argument \"yes\" (see --help)"},
        {{"--quiet=maybe"}, "flag: --quiet must be true or false, not \"maybe\""},
        {{"--ttl", "5x"},
         "flag: --ttl must be a duration like 3600, 90m, 12h or 30d, not \"5x\""},
        {{"--url", " , "}, "flag: --url needs a URL"},
        {{"--url", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17"},
         "flag: at most 16 --url URLs"},
    };
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        check_refused(flags[i].args, flags[i].want);
    }

    setenv("OPTTEST_COUNT", "lots", 1);
    check_refused((const char *[]){NULL},
                  "OPTTEST_COUNT: --count must be a whole number from 1 to 10, not "
                  "\"lots\"");
    unsetenv("OPTTEST_COUNT");

    char want[1024];
    const char *path = write_file("count = 3\njust words\n");
    snprintf(want, sizeof want, "%s:2: expected \"name = value\"", path);
    check_refused((const char *[]){"--config", path, NULL}, want);
    path = write_file("nope = 1\n");
    snprintf(want, sizeof want,
             "%s:1: unknown option \"nope\" (the keys are the options of --help "
             "without \"--\", e.g. name)",
             path);
    check_refused((const char *[]){"--config", path, NULL}, want);
    path = write_file("config = /elsewhere\n");
    snprintf(want, sizeof want,
             "%s:1: unknown option \"config\" (the keys are the options of --help "
             "without \"--\", e.g. name)",
             path);
    check_refused((const char *[]){"--config", path, NULL}, want);
}

/* Config file keys in either spelling; a slip in a key or a flag names
 * the option that was meant. */
TEST(opt_keys_in_either_spelling_and_slips_named) {
    sample s;
    opt_outcome outcome;
    tokend_error err;
    const char *path = write_file("max_idle = 5\nmax-idle = 6\nonly_b = b\n");
    const char *file[] = {"--config", path, NULL};
    CHECK_INT(load(&s, CMD_B, file, &outcome, &err), TOKEND_OK);
    CHECK_STR(s.max_idle, "6");
    CHECK_STR(s.only_b, "b");
    opt_free(&table, &s);
    /* Another command's key, in either spelling, is passed over. */
    CHECK_INT(load(&s, CMD_A, file, &outcome, &err), TOKEND_OK);
    CHECK(s.only_b == NULL);
    opt_free(&table, &s);
    /* Flags are spelt as --help shows them. */
    check_refused((const char *[]){"--max_idle", "5", NULL},
                  "unknown option \"--max_idle\" (did you mean --max-idle? see --help)");
    check_refused((const char *[]){"--qiuet", NULL},
                  "unknown option \"--qiuet\" (did you mean --quiet? see --help)");

    char want[1024];
    path = write_file("count = 3\nmax_idel = 5\n");
    snprintf(want, sizeof want,
             "%s:2: unknown option \"max_idel\" (did you mean max-idle? the keys are the "
             "options of --help without \"--\")",
             path);
    check_refused((const char *[]){"--config", path, NULL}, want);
}

/* A service URL without a scheme is refused with the URL it should be. */
TEST(opt_urls_need_a_scheme) {
    static const struct {
        const char *url;
        const char *want;
    } bad[] = {
        {"127.0.0.1:7450", "\"127.0.0.1:7450\" has no scheme: use tcp://127.0.0.1:7450"},
        {"localhost:80", "\"localhost:80\" has no scheme: use tcp://localhost:80"},
        {"[::1]:7450", "\"[::1]:7450\" has no scheme: use tcp://[::1]:7450"},
        {"7450", "\"7450\" has no scheme: use tcp://127.0.0.1:7450"},
        {"/run/tokend.sock",
         "\"/run/tokend.sock\" has no scheme: use ipc:///run/tokend.sock"},
        {"tokend",
         "\"tokend\" has no scheme: use tcp://HOST:PORT, tls+tcp://HOST:PORT or "
         "ipc:///PATH"},
        {"",
         "\"\" has no scheme: use tcp://HOST:PORT, tls+tcp://HOST:PORT or ipc:///PATH"},
    };
    tokend_error err;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_INT(opt_check_url(bad[i].url, &err), TOKEND_INVALID_ARGUMENT);
        if (strcmp(err.message, bad[i].want) != 0) {
            test_fail(__FILE__, __LINE__, "got \"%s\", want \"%s\"", err.message,
                      bad[i].want);
        }
    }
    static const char *const good[] = {"tcp://127.0.0.1:7450", "tls+tcp://h:1",
                                       "ipc:///run/tokend.sock", "ipc://rel.sock"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        CHECK_INT(opt_check_url(good[i], &err), TOKEND_OK);
    }

    /* An OPT_URL row checks every item, from every source. */
    check_refused((const char *[]){"--service", "tcp://a:1,127.0.0.1:7450", NULL},
                  "flag: --service \"127.0.0.1:7450\" has no scheme: use "
                  "tcp://127.0.0.1:7450");
    setenv("OPTTEST_SERVICE", "/tmp/x.sock", 1);
    check_refused((const char *[]){NULL},
                  "OPTTEST_SERVICE: --service \"/tmp/x.sock\" has no scheme: use "
                  "ipc:///tmp/x.sock");
    unsetenv("OPTTEST_SERVICE");
    sample s;
    opt_outcome outcome;
    const char *ok[] = {"--service", "tcp://a:1", "--service", "ipc:///b", NULL};
    CHECK_INT(load(&s, CMD_A, ok, &outcome, &err), TOKEND_OK);
    CHECK_LIST(s.services, "tcp://a:1", "ipc:///b");
    opt_free(&table, &s);
}

TEST(opt_help_and_version_stop_the_reading) {
    sample s;
    opt_outcome outcome;
    tokend_error err;
    const char *help[] = {"--count", "3", "--help", "--bogus", NULL};
    CHECK_INT(load(&s, CMD_A, help, &outcome, &err), TOKEND_OK);
    CHECK_INT(outcome, OPT_HELP);
    CHECK_INT(s.count, 3);
    opt_free(&table, &s);
    CHECK_INT(load(&s, CMD_A, (const char *[]){"-h", NULL}, &outcome, &err), TOKEND_OK);
    CHECK_INT(outcome, OPT_HELP);
    opt_free(&table, &s);
    const char *version[] = {"--version", NULL};
    CHECK_INT(load(&s, CMD_A, version, &outcome, &err), TOKEND_OK);
    CHECK_INT(outcome, OPT_VERSION);
    opt_free(&table, &s);
    /* Only a table that says so knows --version. */
    opt_table plain = table;
    plain.version = false;
    char *argv[] = {"prog", "--version", NULL};
    CHECK_INT(opt_load(&plain, &s, CMD_A, 2, argv, 1, &outcome, &err),
              TOKEND_INVALID_ARGUMENT);
    opt_free(&plain, &s);
}

TEST(opt_help_names_every_option) {
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    REQUIRE(out != NULL);
    opt_usage(out, &table, CMD_A);
    fclose(out);
    CHECK(test_contains(text, "  --name NAME\n      a name\n"
                              "      default: dflt; environment: OPTTEST_NAME\n"));
    CHECK(test_contains(text, "  --quiet\n      say less;"));
    CHECK(test_contains(text, "default: none; environment: OPTTEST_SECRET\n"));
    CHECK(test_contains(text, "environment: OPTTEST_CONFIG\n"));
    CHECK(!test_contains(text, "--only-b"));
    size_t lines = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        CHECK(strlen(line) <= 79);
        lines++;
    }
    CHECK_INT(lines, 9 * 3 + 1); /* three lines a row, --quiet's help on two */
    free(text);
    out = open_memstream(&text, &len);
    REQUIRE(out != NULL);
    opt_usage(out, &table, CMD_B);
    fclose(out);
    CHECK(test_contains(text, "  --only-b X\n"));
    free(text);
}

static int collect(void *arg, const char *item, size_t len) {
    char *buf = arg;
    strncat(buf, item, len);
    strcat(buf, "|");
    return strncmp(item, "stop", len) == 0 ? TOKEND_RESOURCE_EXHAUSTED : TOKEND_OK;
}

TEST(opt_argv_words_and_lists) {
    char *argv[] = {"prog", "-", "--", "-h", "--a=b=c", "word", "--last", NULL};
    opt_cursor cur = {.argc = 7, .argv = argv, .next = 1};
    opt_word w;
    REQUIRE(opt_next_word(&cur, &w));
    CHECK(w.name_len == 0 && w.value == NULL); /* "-" is a word: stdin */
    REQUIRE(opt_next_word(&cur, &w));
    CHECK(w.name_len == 2 && w.value == NULL);
    REQUIRE(opt_next_word(&cur, &w));
    CHECK(w.name_len == 2 && strcmp(w.text, "-h") == 0);
    REQUIRE(opt_next_word(&cur, &w));
    CHECK_INT(w.name_len, 3);
    CHECK_STR(w.value, "b=c");
    CHECK_STR(opt_take_value(&cur, &w), "b=c"); /* not the next word */
    REQUIRE(opt_next_word(&cur, &w));
    CHECK_STR(w.text, "word");
    CHECK_INT(w.name_len, 0);
    REQUIRE(opt_next_word(&cur, &w));
    CHECK(opt_take_value(&cur, &w) == NULL); /* --last has nothing after it */
    CHECK(!opt_next_word(&cur, &w));

    char buf[64] = "";
    CHECK_INT(opt_split_list(" a , ,b\t,c ,", collect, buf), TOKEND_OK);
    CHECK_STR(buf, "a|b|c|");
    buf[0] = '\0';
    CHECK_INT(opt_split_list("", collect, buf), TOKEND_OK);
    CHECK_STR(buf, "");
    CHECK_INT(opt_split_list("x, stop, y", collect, buf), TOKEND_RESOURCE_EXHAUSTED);
    CHECK_STR(buf, "x|stop|");
}
