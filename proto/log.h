/*
 * log.h — levelled, one line per event, logfmt on stderr:
 *   ts=2026-11-29T15:21:04.123Z level=info event=token.create id=... owner=...
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

/* Parses "debug", "info", "warn" or "error". Returns false if unknown. */
bool log_parse_level(const char *name, log_level *out);

/* Writes one line: ts, level, event, then `fmt` (printf-style, already in
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
