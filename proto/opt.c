/*
 * opt.c — the option engine: reading a table's options from defaults, a
 * config file, the environment and flags, checking their values, printing
 * --help, and the parsers and argv reader it is built on. See opt.h.
 */
#include "opt.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "secret.h"

/* Room for PREFIX_NAME. */
#define ENV_NAME_MAX 96
/* --help's text column and right margin. */
#define HELP_INDENT 6
#define HELP_WIDTH 79

/* ------------------------------------------------------------------------
 * Parsers. */

int opt_parse_duration(const char *s, int64_t *seconds, tokend_error *err) {
    static const char garbage[] = "expected a number of seconds, or one with a "
                                  "suffix s, m, h or d (e.g. 90d, 12h, 30m, 45s)";
    static const char too_long[] = "too long (at most 10000 years)";
    /* strtoll alone would take a sign or leading blanks. */
    if (s == NULL || !isdigit((unsigned char)s[0])) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "%s", garbage);
    }
    const long long max_s = 10000LL * 366 * 86400;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE) {
        return error_set(err, TOKEND_RESOURCE_EXHAUSTED, "%s", too_long);
    }
    long long unit;
    switch (*end) {
        case '\0':
        case 's':
            unit = 1;
            break;
        case 'm':
            unit = 60;
            break;
        case 'h':
            unit = 3600;
            break;
        case 'd':
            unit = 86400;
            break;
        default:
            return error_set(err, TOKEND_INVALID_ARGUMENT,
                             "unknown unit (use s, m, h or d, e.g. 90d)");
    }
    if (*end != '\0' && end[1] != '\0') {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "%s", garbage);
    }
    if (v > max_s / unit) {
        return error_set(err, TOKEND_RESOURCE_EXHAUSTED, "%s", too_long);
    }
    *seconds = v * unit;
    return error_set(err, TOKEND_OK, NULL);
}

int opt_parse_int(const char *s, long long min, long long max, long long *out,
                  tokend_error *err) {
    const char *digits = s[0] == '-' ? s + 1 : s;
    errno = 0;
    char *end = NULL;
    long long v = isdigit((unsigned char)digits[0]) ? strtoll(s, &end, 10) : 0;
    if (end == NULL || *end != '\0' || errno != 0 || v < min || v > max) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "must be a whole number from %lld to %lld", min, max);
    }
    *out = v;
    return error_set(err, TOKEND_OK, NULL);
}

int opt_check_url(const char *url, tokend_error *err) {
    /* A scheme: a letter, then letters, digits, '+', '-' or '.', then "://". */
    const char *p = url;
    if (isalpha((unsigned char)*p)) {
        p += strspn(p,
                    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
        if (strncmp(p, "://", 3) == 0) {
            return error_set(err, TOKEND_OK, NULL);
        }
    }
    if (url[0] == '/') {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "\"%s\" has no scheme: use ipc://%s", url, url);
    }
    if (url[0] != '\0' && strspn(url, "0123456789") == strlen(url)) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "\"%s\" has no scheme: use tcp://127.0.0.1:%s", url, url);
    }
    if (strchr(url, ':') != NULL && strchr(url, '/') == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "\"%s\" has no scheme: use tcp://%s", url, url);
    }
    return error_set(err, TOKEND_INVALID_ARGUMENT,
                     "\"%s\" has no scheme: use tcp://HOST:PORT, tls+tcp://HOST:PORT or "
                     "ipc:///PATH",
                     url);
}

static bool parse_bool(const char *s, bool *out) {
    if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0 || strcmp(s, "yes") == 0) {
        *out = true;
        return true;
    }
    if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0 || strcmp(s, "no") == 0) {
        *out = false;
        return true;
    }
    return false;
}

int opt_split_list(const char *text, int (*add)(void *arg, const char *item, size_t len),
                   void *arg) {
    for (const char *p = text;;) {
        size_t len = strcspn(p, ",");
        const char *item = p;
        const char *after = p + len;
        while (item < after && isspace((unsigned char)*item)) {
            item++;
        }
        while (after > item && isspace((unsigned char)after[-1])) {
            after--;
        }
        int rv = after > item ? add(arg, item, (size_t)(after - item)) : TOKEND_OK;
        if (rv != TOKEND_OK || p[len] == '\0') {
            return rv;
        }
        p += len + 1;
    }
}

/* ------------------------------------------------------------------------
 * Reading argv. */

bool opt_next_word(opt_cursor *cur, opt_word *word) {
    if (cur->next >= cur->argc) {
        return false;
    }
    char *text = cur->argv[cur->next++];
    bool flag = text[0] == '-' && text[1] != '\0';
    size_t name_len = flag ? strcspn(text, "=") : 0;
    *word = (opt_word){
        .text = text,
        .name_len = name_len,
        .value = flag && text[name_len] == '=' ? text + name_len + 1 : NULL,
    };
    return true;
}

char *opt_take_value(opt_cursor *cur, const opt_word *word) {
    if (word->value != NULL) {
        return word->value;
    }
    return cur->next < cur->argc ? cur->argv[cur->next++] : NULL;
}

/* ------------------------------------------------------------------------
 * The table. */

static void *field_of(void *record, const opt_def *d) {
    return (char *)record + d->offset;
}

static bool belongs(const opt_def *d, unsigned command) {
    return d->commands == 0 || (d->commands & command) != 0;
}

/* The row of `command` after `d` (the first one if d is NULL), or NULL:
 * for (d = next_def(t, NULL, cmd); d != NULL; d = next_def(t, d, cmd)). */
static const opt_def *next_def(const opt_table *t, const opt_def *d, unsigned command) {
    const opt_def *end = t->defs + t->n_defs;
    for (d = d == NULL ? t->defs : d + 1; d < end; d++) {
        if (belongs(d, command)) {
            return d;
        }
    }
    return NULL;
}

static bool named(const opt_def *d, const char *name, size_t len) {
    return strlen(d->name) == len && strncmp(d->name, name, len) == 0;
}

/* As named(), with '_' in `name` standing for '-' (a config file key). */
static bool named_as_key(const opt_def *d, const char *name, size_t len) {
    if (strlen(d->name) != len) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (d->name[i] != (name[i] == '_' ? '-' : name[i])) {
            return false;
        }
    }
    return true;
}

/* Edit distance of a[0..n) and b (at most 63 bytes each; longer: far):
 * insertions, deletions, changes and swaps of two neighbours, '_' counting
 * as '-'. */
static size_t distance(const char *a, size_t n, const char *b) {
    size_t m = strlen(b);
    if (n > 63 || m > 63) {
        return SIZE_MAX;
    }
    uint8_t d[64][64]; /* distances stay below 64 */
    for (size_t i = 0; i <= n; i++) {
        d[i][0] = (uint8_t)i;
    }
    for (size_t j = 0; j <= m; j++) {
        d[0][j] = (uint8_t)j;
    }
    for (size_t i = 1; i <= n; i++) {
        char ca = a[i - 1] == '_' ? '-' : a[i - 1];
        for (size_t j = 1; j <= m; j++) {
            unsigned best = d[i - 1][j - 1] + (ca == b[j - 1] ? 0u : 1u);
            unsigned del = d[i - 1][j] + 1u, ins = d[i][j - 1] + 1u;
            best = del < best ? del : best;
            best = ins < best ? ins : best;
            char before = i > 1 && a[i - 2] == '_' ? '-' : (i > 1 ? a[i - 2] : 0);
            if (i > 1 && j > 1 && ca == b[j - 2] && before == b[j - 1] &&
                d[i - 2][j - 2] + 1u < best) {
                best = d[i - 2][j - 2] + 1u;
            }
            d[i][j] = (uint8_t)best;
        }
    }
    return d[n][m];
}

/* The name of `command`'s row nearest to name[0..len) if it is near
 * enough to be a slip (an edit for every three bytes of the name), else
 * NULL. The config file's own row is never suggested for a key. */
static const char *nearest_name(const opt_table *t, const char *name, size_t len,
                                unsigned command, bool key) {
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (const opt_def *d = next_def(t, NULL, command); d != NULL;
         d = next_def(t, d, command)) {
        size_t dist = distance(name, len, d->name);
        if (!(key && (d->flags & OPT_FILE)) && dist < best_d) {
            best = d->name;
            best_d = dist;
        }
    }
    return best_d * 3 <= len ? best : NULL;
}

/* The row called name[0..len) among those of `command`, or NULL. */
static const opt_def *find_def(const opt_table *t, const char *name, size_t len,
                               unsigned command) {
    const opt_def *d = next_def(t, NULL, command);
    while (d != NULL && !named(d, name, len)) {
        d = next_def(t, d, command);
    }
    return d;
}

/* The row of a "--name" flag word, or NULL if it is none of `command`'s. */
static const opt_def *flag_def(const opt_table *t, const opt_word *w, unsigned command) {
    if (w->name_len < 2 || strncmp(w->text, "--", 2) != 0) {
        return NULL;
    }
    return find_def(t, w->text + 2, w->name_len - 2, command);
}

/* The environment variable of `d`: the prefix, then the name in upper case
 * with '-' as '_' (data-dir: TOKEND_DATA_DIR). */
static void env_name(const opt_table *t, const opt_def *d, char *env, size_t size) {
    size_t k = (size_t)snprintf(env, size, "%s", t->env_prefix);
    k = k < size ? k : size - 1;
    for (const char *p = d->name; *p != '\0' && k < size - 1; p++) {
        env[k++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    }
    env[k] = '\0';
}

static void text_free(const opt_def *d, char *s) {
    if (d->flags & OPT_SECRET) {
        secret_free(s);
    } else {
        free(s);
    }
}

static void list_clear(const opt_def *d, opt_list *list) {
    for (size_t i = 0; i < list->n; i++) {
        text_free(d, list->items[i]);
        list->items[i] = NULL;
    }
    list->n = 0;
}

/* ------------------------------------------------------------------------
 * Setting one option from text. `source` says where the text came from,
 * for the message. */

static int out_of_memory(tokend_error *err) {
    return error_set(err, TOKEND_INTERNAL, "out of memory");
}

static int set_string(const opt_def *d, char **field, const char *value,
                      tokend_error *err) {
    char *copy = strdup(value);
    if (copy == NULL) {
        return out_of_memory(err);
    }
    text_free(d, *field);
    *field = copy;
    return TOKEND_OK;
}

/* Where one list's items go, for opt_split_list's callback. */
typedef struct list_target {
    const opt_def *d;
    opt_list *list;
    const char *source;
    tokend_error *err;
} list_target;

/* A value of an OPT_URL row must have a scheme. */
static int check_url_value(const opt_def *d, const char *value, const char *source,
                           tokend_error *err) {
    tokend_error why;
    if (!(d->flags & OPT_URL) || opt_check_url(value, &why) == TOKEND_OK) {
        return TOKEND_OK;
    }
    return error_set(err, why.code, "%s: --%s %s", source, d->name, why.message);
}

static int list_add(void *arg, const char *item, size_t len) {
    list_target *to = arg;
    if (to->list->n == OPT_LIST_MAX) {
        return error_set(to->err, TOKEND_INVALID_ARGUMENT, "%s: at most %d --%s %ss",
                         to->source, OPT_LIST_MAX, to->d->name, to->d->metavar);
    }
    char *copy = strndup(item, len);
    if (copy == NULL) {
        return out_of_memory(to->err);
    }
    int rv = check_url_value(to->d, copy, to->source, to->err);
    if (rv != TOKEND_OK) {
        text_free(to->d, copy);
        return rv;
    }
    to->list->items[to->list->n++] = copy;
    return TOKEND_OK;
}

/* A list given again replaces the earlier one, except that a repeated flag
 * adds to it (`append`). */
static int set_list(const opt_def *d, opt_list *list, const char *value, bool append,
                    const char *source, tokend_error *err) {
    if (!append) {
        list_clear(d, list);
    }
    list_target to = {.d = d, .list = list, .source = source, .err = err};
    int rv = opt_split_list(value, list_add, &to);
    if (rv == TOKEND_OK && list->n == 0) {
        rv = error_set(err, TOKEND_INVALID_ARGUMENT, "%s: --%s needs a %s", source,
                       d->name, d->metavar);
    }
    return rv;
}

static int set_int(const opt_def *d, int64_t *field, const char *value,
                   const char *source, tokend_error *err) {
    long long v;
    tokend_error why;
    if (opt_parse_int(value, d->min, d->max, &v, &why) != TOKEND_OK) {
        return error_set(err, why.code, "%s: --%s %s, not \"%s\"", source, d->name,
                         why.message, value);
    }
    *field = v;
    return TOKEND_OK;
}

static int set_value(const opt_def *d, void *record, const char *value, bool append,
                     const char *source, tokend_error *err) {
    void *field = field_of(record, d);
    switch (d->type) {
        case OPT_STRING: {
            int rv = check_url_value(d, value, source, err);
            return rv == TOKEND_OK ? set_string(d, field, value, err) : rv;
        }
        case OPT_LIST:
            return set_list(d, field, value, append, source, err);
        case OPT_INT:
            return set_int(d, field, value, source, err);
        case OPT_DURATION:
            if (opt_parse_duration(value, field, NULL) != TOKEND_OK) {
                return error_set(err, TOKEND_INVALID_ARGUMENT,
                                 "%s: --%s must be a duration like 3600, 90m, 12h or "
                                 "30d, not \"%s\"",
                                 source, d->name, value);
            }
            return TOKEND_OK;
        case OPT_BOOL:
            if (!parse_bool(value, field)) {
                return error_set(err, TOKEND_INVALID_ARGUMENT,
                                 "%s: --%s must be true or false, not \"%s\"", source,
                                 d->name, value);
            }
            return TOKEND_OK;
    }
    return error_set(err, TOKEND_INTERNAL, "--%s has an unknown type", d->name);
}

/* ------------------------------------------------------------------------
 * The sources, lowest first: defaults, config file, environment, flags. */

static int load_defaults(const opt_table *t, void *record, tokend_error *err) {
    for (size_t i = 0; i < t->n_defs; i++) {
        const opt_def *d = &t->defs[i];
        int rv = d->def != NULL ? set_value(d, record, d->def, false, "default", err)
                                : TOKEND_OK;
        if (rv != TOKEND_OK) {
            return rv;
        }
    }
    return TOKEND_OK;
}

/* The config file to read: the value of the last flag of the OPT_FILE row,
 * else its environment variable; NULL if neither is given or the table has
 * no such row. The flags are walked as load_flags walks them, so that the
 * value of another flag that merely looks like this one is not taken. */
static const char *file_path(const opt_table *t, unsigned command, opt_cursor args) {
    const opt_def *file = next_def(t, NULL, command);
    while (file != NULL && !(file->flags & OPT_FILE)) {
        file = next_def(t, file, command);
    }
    if (file == NULL) {
        return NULL;
    }
    const char *path = NULL;
    opt_word w;
    while (opt_next_word(&args, &w)) {
        const opt_def *d = flag_def(t, &w, command);
        const char *value =
            d != NULL && d->type != OPT_BOOL ? opt_take_value(&args, &w) : NULL;
        if (d == file && value != NULL) {
            path = value;
        }
    }
    if (path == NULL) {
        char env[ENV_NAME_MAX];
        env_name(t, file, env, sizeof env);
        path = getenv(env);
    }
    return path;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) {
        s++;
    }
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) {
        *--e = '\0';
    }
    return s;
}

/* The row whose name the config file key `key` spells (with '_' or '-'),
 * among those of `command`, or NULL. */
static const opt_def *find_key(const opt_table *t, const char *key, unsigned command) {
    size_t len = strlen(key);
    const opt_def *d = next_def(t, NULL, command);
    while (d != NULL && !named_as_key(d, key, len)) {
        d = next_def(t, d, command);
    }
    return d;
}

/* One line of a config file: blank, a # comment, or "name = value". Keys
 * of the table's other commands are passed over, so that one file can
 * serve every command. */
static int load_line(const opt_table *t, void *record, unsigned command, char *line,
                     const char *where, opt_outcome *outcome, tokend_error *err) {
    char *s = trim(line);
    if (*s == '\0' || *s == '#') {
        return TOKEND_OK;
    }
    char *eq = strchr(s, '=');
    if (eq == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "%s: expected \"name = value\"",
                         where);
    }
    *eq = '\0';
    char *key = trim(s);
    char *value = trim(eq + 1);
    const opt_def *d = find_key(t, key, command);
    if (d == NULL && find_key(t, key, ~0u) != NULL) {
        return TOKEND_OK;
    }
    /* A file does not name another file. */
    if (d == NULL || (d->flags & OPT_FILE)) {
        *outcome = OPT_UNKNOWN_KEY;
        const char *near = nearest_name(t, key, strlen(key), ~0u, true);
        if (near != NULL) {
            return error_set(err, TOKEND_INVALID_ARGUMENT,
                             "%s: unknown option \"%s\" (did you mean %s? the keys "
                             "are the options of --help without \"--\")",
                             where, key, near);
        }
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "%s: unknown option \"%s\" (the keys are the options of "
                         "--help without \"--\", e.g. %s)",
                         where, key, t->n_defs > 0 ? t->defs[0].name : "");
    }
    return set_value(d, record, value, false, where, err);
}

static int load_file(const opt_table *t, void *record, unsigned command, opt_cursor args,
                     opt_outcome *outcome, tokend_error *err) {
    const char *path = file_path(t, command, args);
    if (path == NULL || *path == '\0') {
        return TOKEND_OK;
    }
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "cannot read config file %s: %s",
                         path, strerror(errno));
    }
    char line[4096];
    int rv = TOKEND_OK;
    for (int lineno = 1; rv == TOKEND_OK && fgets(line, sizeof line, f) != NULL;
         lineno++) {
        char where[600];
        snprintf(where, sizeof where, "%s:%d", path, lineno);
        rv = load_line(t, record, command, line, where, outcome, err);
    }
    if (rv == TOKEND_OK && ferror(f)) {
        rv = error_set(err, TOKEND_INVALID_ARGUMENT, "cannot read config file %s", path);
    }
    fclose(f);
    return rv;
}

static int load_env(const opt_table *t, void *record, unsigned command,
                    tokend_error *err) {
    for (const opt_def *d = next_def(t, NULL, command); d != NULL;
         d = next_def(t, d, command)) {
        char env[ENV_NAME_MAX];
        env_name(t, d, env, sizeof env);
        const char *v = getenv(env);
        int rv = v != NULL && *v != '\0' ? set_value(d, record, v, false, env, err)
                                         : TOKEND_OK;
        if (rv != TOKEND_OK) {
            return rv;
        }
    }
    return TOKEND_OK;
}

/* --help, -h and, where the table has it, --version end the reading. */
static bool stops(const opt_table *t, const char *word, opt_outcome *outcome) {
    if (strcmp(word, "--help") == 0 || strcmp(word, "-h") == 0) {
        *outcome = OPT_HELP;
        return true;
    }
    if (t->version && strcmp(word, "--version") == 0) {
        *outcome = OPT_VERSION;
        return true;
    }
    return false;
}

static int load_flags(const opt_table *t, void *record, unsigned command, opt_cursor args,
                      opt_outcome *outcome, tokend_error *err) {
    uint64_t listed = 0; /* rows of lists given by a flag already: later ones add */
    opt_word w;
    while (opt_next_word(&args, &w)) {
        if (stops(t, w.text, outcome)) {
            return TOKEND_OK;
        }
        if (strncmp(w.text, "--", 2) != 0) {
            return error_set(err, TOKEND_INVALID_ARGUMENT,
                             "unexpected argument \"%s\" (see --help)", w.text);
        }
        const opt_def *d = flag_def(t, &w, command);
        const char *near =
            d == NULL && w.name_len > 2
                ? nearest_name(t, w.text + 2, w.name_len - 2, command, false)
                : NULL;
        if (near != NULL) {
            return error_set(err, TOKEND_INVALID_ARGUMENT,
                             "unknown option \"%.*s\" (did you mean --%s? see --help)",
                             (int)w.name_len, w.text, near);
        }
        if (d == NULL) {
            return error_set(err, TOKEND_INVALID_ARGUMENT,
                             "unknown option \"%.*s\" (see --help)", (int)w.name_len,
                             w.text);
        }
        const char *value =
            d->type == OPT_BOOL && w.value == NULL ? "true" : opt_take_value(&args, &w);
        if (value == NULL) {
            return error_set(err, TOKEND_INVALID_ARGUMENT,
                             "--%s needs a value (see --help)", d->name);
        }
        uint64_t bit = (uint64_t)1 << (d - t->defs);
        int rv = set_value(d, record, value, (listed & bit) != 0, "flag", err);
        if (rv != TOKEND_OK) {
            return rv;
        }
        listed |= d->type == OPT_LIST ? bit : 0;
    }
    return TOKEND_OK;
}

int opt_load(const opt_table *table, void *record, unsigned command, int argc,
             char **argv, int first, opt_outcome *outcome, tokend_error *err) {
    memset(record, 0, table->size);
    *outcome = OPT_RUN;
    if (table->n_defs > OPT_MAX_DEFS) {
        return error_set(err, TOKEND_INTERNAL, "an option table has more than %d rows",
                         OPT_MAX_DEFS);
    }
    opt_cursor args = {.argc = argc, .argv = argv, .next = first};
    int rv = load_defaults(table, record, err);
    if (rv == TOKEND_OK) {
        rv = load_file(table, record, command, args, outcome, err);
    }
    if (rv == TOKEND_OK) {
        rv = load_env(table, record, command, err);
    }
    if (rv == TOKEND_OK) {
        rv = load_flags(table, record, command, args, outcome, err);
    }
    return rv == TOKEND_OK ? error_set(err, TOKEND_OK, NULL) : rv;
}

/* ------------------------------------------------------------------------
 * --help and freeing. */

/* Writes `text` indented by HELP_INDENT, broken at spaces before
 * HELP_WIDTH (a word longer than the room is cut). */
static void print_wrapped(FILE *out, const char *text) {
    const size_t room = HELP_WIDTH - HELP_INDENT;
    while (*text != '\0') {
        size_t cut = strlen(text);
        if (cut > room) {
            cut = room;
            while (cut > 0 && text[cut] != ' ') {
                cut--;
            }
            cut = cut > 0 ? cut : room;
        }
        fprintf(out, "%*s%.*s\n", HELP_INDENT, "", (int)cut, text);
        text += cut;
        while (*text == ' ') {
            text++;
        }
    }
}

void opt_usage(FILE *out, const opt_table *table, unsigned command) {
    for (const opt_def *d = next_def(table, NULL, command); d != NULL;
         d = next_def(table, d, command)) {
        char env[ENV_NAME_MAX];
        env_name(table, d, env, sizeof env);
        fprintf(out, "  --%s%s%s\n", d->name, d->metavar != NULL ? " " : "",
                d->metavar != NULL ? d->metavar : "");
        print_wrapped(out, d->help);
        fprintf(out, "%*sdefault: %s; environment: %s\n", HELP_INDENT, "",
                d->def != NULL ? d->def : "none", env);
    }
}

void opt_keys(FILE *out, const opt_table *table, unsigned command) {
    fputs("The keys a config file may set (\"name = value\"; '_' may stand for '-'):\n",
          out);
    size_t col = 0;
    for (const opt_def *d = next_def(table, NULL, command); d != NULL;
         d = next_def(table, d, command)) {
        if (d->flags & OPT_FILE) {
            continue;
        }
        size_t len = strlen(d->name);
        if (col > 0 && col + 1 + len > HELP_WIDTH) {
            fputc('\n', out);
            col = 0;
        }
        col += (size_t)fprintf(out, "%s%s", col == 0 ? "  " : " ", d->name);
    }
    fputc('\n', out);
}

void opt_free(const opt_table *table, void *record) {
    for (size_t i = 0; i < table->n_defs; i++) {
        const opt_def *d = &table->defs[i];
        if (d->type == OPT_STRING) {
            text_free(d, *(char **)field_of(record, d));
        } else if (d->type == OPT_LIST) {
            list_clear(d, field_of(record, d));
        }
    }
    memset(record, 0, table->size);
}
