/*
 * log.c — logfmt lines on stderr. See log.h.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

log_level log_min_level = LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* " proc=NAME", or "" while unset: written once at start, read after. */
static char proc_field[40];

void log_set_proc(const char *name) {
    if (name == NULL) {
        proc_field[0] = '\0';
    } else {
        snprintf(proc_field, sizeof(proc_field), " proc=%s", name);
    }
}

bool log_parse_level(const char *name, log_level *out) {
    for (int i = 0; i <= LOG_ERROR; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (log_level)i;
            return true;
        }
    }
    return false;
}

void log_write(log_level level, const char *event, const char *fmt, ...) {
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n =
        snprintf(line, sizeof(line),
                 "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s%s event=%s ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                 tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], proc_field, event);
    if (n < 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2) {
        len = sizeof(line) - 2;
    }
    line[len++] = '\n';
    /* One write per line so concurrent threads never interleave a line. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

const char *log_quote(char *buf, unsigned size, const char *s) {
    unsigned o = 0;
    if (size < 8) {
        buf[0] = '\0';
        return buf;
    }
    buf[o++] = '"';
    for (; s != NULL && *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        const char *esc = NULL;
        char hex[5];
        if (c == '"') {
            esc = "\\\"";
        } else if (c == '\\') {
            esc = "\\\\";
        } else if (c == '\n') {
            esc = "\\n";
        } else if (c < 0x20 || c == 0x7F) {
            snprintf(hex, sizeof(hex), "\\x%02x", c);
            esc = hex;
        }
        size_t need = esc ? strlen(esc) : 1;
        if (o + need + 5 > size) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (esc) {
            memcpy(buf + o, esc, need);
            o += (unsigned)need;
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}
