/*
 * opt.h — the one option engine of tokend's programs. A program describes
 * its options once, as a table of opt_def rows over the fields of its own
 * option struct, and the engine turns that table into command-line flags
 * (--name value, --name=value, a bool flag alone), environment variables
 * (PREFIX_NAME), an optional config file ("name = value" lines, #
 * comments) and --help text, so none of them can drift from the others.
 * Values are checked here, once: integer bounds, durations, booleans, list
 * sizes. Precedence, lowest first: default, config file, environment,
 * flag.
 *
 * For a program whose command line has a shape of its own (tokenctl:
 * subcommands, positional words, flags before or after the command) it
 * also offers the pieces without the table: a word-by-word reader of argv,
 * the integer and duration parsers and the comma-list splitter.
 *
 * Errors follow error.h: a tokend status is returned and the optional
 * tokend_error gets one line, which the program prints after its own name
 * ("tokend: flag: --contexts must be ...").
 */
#ifndef TOKEND_OPT_H
#define TOKEND_OPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tokend.h"

/* What a field holds, and how its text is read. */
typedef enum opt_type {
    OPT_STRING,   /* char *, owned by the struct */
    OPT_LIST,     /* opt_list: a flag repeats to add, commas elsewhere */
    OPT_INT,      /* int64_t from min to max */
    OPT_DURATION, /* int64_t seconds, read by opt_parse_duration */
    OPT_BOOL,     /* bool: true/false, yes/no, 1/0; a flag alone is true */
} opt_type;

/* Bits of opt_def.flags. */
enum {
    /* A string wiped with explicit_bzero before it is freed. */
    OPT_SECRET = 1u << 0,
    /* A string naming the config file: taken from its flag or environment
     * variable before anything else, then read as "name = value" lines. */
    OPT_FILE = 1u << 1,
    /* A string or list of service URLs: each must have a scheme
     * (opt_check_url), so "127.0.0.1:7450" is refused with a hint. */
    OPT_URL = 1u << 2,
};

/* Most items a list option holds. */
#define OPT_LIST_MAX 16

/* The field of an OPT_LIST option: n owned strings. */
typedef struct opt_list {
    char *items[OPT_LIST_MAX];
    size_t n;
} opt_list;

/* One option. A table of these is the whole description of a program's
 * options; everything else is derived from it. */
typedef struct opt_def {
    const char *name;    /* flag --name, file key name, environment PREFIX_NAME */
    opt_type type;       /* the field's type */
    const char *def;     /* default, as text; NULL: none (the field stays 0) */
    size_t offset;       /* offsetof the field in the program's struct */
    long long min, max;  /* OPT_INT: the bounds, both allowed */
    unsigned flags;      /* OPT_SECRET, OPT_FILE */
    unsigned commands;   /* bitmask of the commands it belongs to; 0: all */
    const char *metavar; /* --help's placeholder ("URL"); NULL for a bool; a
                            list's also names its items in messages ("at
                            most 16 --listen URLs") */
    const char *help;    /* one sentence or two; --help wraps it */
} opt_def;

/* Most rows a table may have (repeated list flags are tracked in a
 * 64-bit mask). */
#define OPT_MAX_DEFS 64

/* A program's options: its rows and the struct they fill. */
typedef struct opt_table {
    const opt_def *defs;
    size_t n_defs;
    size_t size;            /* sizeof the program's option struct */
    const char *env_prefix; /* "TOKEND_": TOKEND_DATA_DIR for data-dir */
    bool version;           /* --version is understood (OPT_VERSION) */
} opt_table;

/* The start of an opt_table's initializer: its rows, the array `rows`, and
 * the struct `type` they fill.
 *   const opt_table t = {OPT_TABLE_OF(rows, struct config), .env_prefix = ...}; */
#define OPT_TABLE_OF(rows, type) \
    .defs = (rows), .n_defs = sizeof(rows) / sizeof((rows)[0]), .size = sizeof(type)

/* What the command line asked for, once it was read without error; after
 * an error, OPT_UNKNOWN_KEY says that a config file named a key the table
 * does not have (opt_keys lists the ones it has). */
typedef enum opt_outcome {
    OPT_RUN,        /* go on with the options */
    OPT_HELP,       /* --help or -h: print the help and stop */
    OPT_VERSION,    /* --version (where the table has it) */
    OPT_UNKNOWN_KEY /* (with an error) an unknown config file key */
} opt_outcome;

/* Fills *record, an option struct of table->size bytes that is zeroed
 * first, with the options of `command` (a bit of opt_def.commands; 0 for a
 * program without commands): defaults, then the config file if the table
 * has an OPT_FILE row and it is given, then the environment, then the flags
 * argv[first..argc). --help and -h (and --version where the table has it)
 * stop the reading, with *outcome saying which; it is OPT_RUN otherwise.
 *
 * A config file key may be written with '_' for '-' (log_level for
 * log-level).
 *
 * Returns TOKEND_OK, TOKEND_INVALID_ARGUMENT for an option that is unknown,
 * misspelt or out of bounds, with one line in *err naming where the value
 * came from ("flag", "TOKEND_CONTEXTS", "tokend.conf:3") and, for an
 * unknown flag or key near a known one, which was meant, or TOKEND_INTERNAL
 * when out of memory. Success or not, *record may own strings: give it to
 * opt_free. */
int opt_load(const opt_table *table, void *record, unsigned command, int argc,
             char **argv, int first, opt_outcome *outcome, tokend_error *err);

/* Writes the options of `command` to `out` for --help: each flag with its
 * metavar, its help wrapped at 79 columns, its default and its
 * environment variable. */
void opt_usage(FILE *out, const opt_table *table, unsigned command);

/* Writes the keys a config file may set for `command` to `out`, for the
 * line after an OPT_UNKNOWN_KEY error. */
void opt_keys(FILE *out, const opt_table *table, unsigned command);

/* Frees the strings and lists of *record, wiping OPT_SECRET ones first,
 * and zeroes it. */
void opt_free(const opt_table *table, void *record);

/* Checks that `url` names its transport: a scheme such as tcp://,
 * tls+tcp:// or ipc:// before the rest. Returns TOKEND_OK, or
 * TOKEND_INVALID_ARGUMENT with a hint derived from what was given in *err:
 * "\"127.0.0.1:7450\" has no scheme: use tcp://127.0.0.1:7450" (a path:
 * ipc:///PATH; a port alone: tcp://127.0.0.1:PORT). */
int opt_check_url(const char *url, tokend_error *err);

/* Parses a duration in seconds: "90" or "90s", "15m", "12h", "30d". Returns
 * TOKEND_OK with *seconds set; TOKEND_INVALID_ARGUMENT for anything else
 * (a sign, blanks, another unit); TOKEND_RESOURCE_EXHAUSTED past 10000
 * years. *err says why, in words a usage message can quote. */
int opt_parse_duration(const char *s, int64_t *seconds, tokend_error *err);

/* Parses a whole number from min to max: an optional '-' and decimal
 * digits, nothing else. Returns TOKEND_OK with *out set, or
 * TOKEND_INVALID_ARGUMENT with "must be a whole number from MIN to MAX" in
 * *err. */
int opt_parse_int(const char *s, long long min, long long max, long long *out,
                  tokend_error *err);

/* Calls add(arg, item, len) for each comma-separated item of `text`,
 * without the blanks around it; empty items are skipped. Returns TOKEND_OK,
 * or the first other status that add returns, which ends the walk. */
int opt_split_list(const char *text, int (*add)(void *arg, const char *item, size_t len),
                   void *arg);

/* Reads a command line one word at a time: argv[next..argc). */
typedef struct opt_cursor {
    int argc;
    char **argv;
    int next;
} opt_cursor;

/* A word of the command line. A flag is a word that starts with '-' and is
 * not "-" alone (which, by custom, names stdin). All pointers are into
 * argv. */
typedef struct opt_word {
    char *text;      /* the whole word */
    size_t name_len; /* a flag: length of its name, dashes included, up to
                        any '='; 0 for any other word */
    char *value;     /* a flag written --name=value: the value; else NULL */
} opt_word;

/* Reads the next word into *word. Returns false when none is left. */
bool opt_next_word(opt_cursor *cur, opt_word *word);

/* The value of the flag `word` just read: what followed its '=', else the
 * next word whole, which is then used up. NULL when there is none. */
char *opt_take_value(opt_cursor *cur, const opt_word *word);

#endif /* TOKEND_OPT_H */
