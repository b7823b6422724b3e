/*
 * log.h — levelled, one line per event, logfmt on stderr:
 *   ts=2026-11-29T15:21:04.123Z level=info proc=tokend event=token.create id=...
 *
 * proc= names the program (log_set_proc), so that the lines of tokend and
 * tokend-gateway sharing one terminal or file (`make run`) tell apart.
 *
 * The level is tested before anything is formatted, so a disabled debug
 * line costs one comparison. Free text goes through log_quote(), which
 * quotes and escapes it as logfmt requires. Never pass a plain-text token:
 * log its id.
 */
#ifndef TOKEND_LOG_H
#define TOKEND_LOG_H

#include <stdbool.h>

typedef enum log_level {
    LOG_DEBUG = 0,
    LOG_INFO = 1,
    LOG_WARN = 2,
    LOG_ERROR = 3,
} log_level;

extern log_level log_min_level;

/* Names the program in every later line's proc= field: a short word
 * ("tokend", "gateway") with static storage. Call once at start, before
 * any thread logs. Unset (NULL): lines have no proc= field. */
void log_set_proc(const char *name);

/* Parses "debug", "info", "warn" or "error". Returns false if unknown. */
bool log_parse_level(const char *name, log_level *out);

/* Writes one line: ts, level, proc (if set), event, then `fmt` (printf-style, already in
 * logfmt "k=v k=v" form; use log_quote for free text). Thread-safe: one
 * write(2) per line. */
void log_write(log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define LOG(level, event, ...)                        \
    do {                                              \
        if ((level) >= log_min_level) {               \
            log_write((level), (event), __VA_ARGS__); \
        }                                             \
    } while (0)

/* Quotes `s` for a logfmt value into buf (always NUL-terminated, truncated
 * with "..." if long) and returns buf. */
const char *log_quote(char *buf, unsigned size, const char *s);

#endif /* TOKEND_LOG_H */
