/*
 * error.h — the one error convention inside tokend, for every folder.
 *
 * An internal function that can fail returns a tokend status (TOKEND_OK is
 * 0) and, when its caller passes a tokend_error (the public detail struct
 * of include/tokend.h; NULL is allowed everywhere), fills it with that code
 * and one readable line. Foreign errors (NNG's rv, RocksDB's errptr,
 * OpenSSL's error queue, errno) are translated into a status where they
 * arise, and their own text goes into the message, so it reaches the log
 * or the user without any other channel.
 *
 * Messages are for people and logs: they never carry a plain-text token.
 */
#ifndef TOKEND_ERROR_H
#define TOKEND_ERROR_H

#include <stdarg.h>
#include <stddef.h>

#include "tokend.h"

/* Fills *err (if not NULL) with `code` and the printf-style message, and
 * returns `code`. TOKEND_OK clears the message; a NULL or empty format
 * gives the code's description (tokend_strerror). Control characters
 * become spaces and a message cut to fit never ends mid UTF-8 sequence, so
 * the text is safe for a terminal, a log line and a protobuf string. */
int error_set(tokend_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int error_setv(tokend_error *err, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Puts `prefix` ("tokend: data dir ./data: ") in front of err's message,
 * keeping its code; for a caller that adds where a failure happened. NULL
 * err is ignored. Returns err's code (TOKEND_OK if err is NULL). */
int error_prefix(tokend_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Copies `src` into dst[size] (size >= 1) with the rules of error_set:
 * control characters as spaces, a cut only at a UTF-8 sequence boundary. */
void error_copy_text(char *dst, size_t size, const char *src);

#endif /* TOKEND_ERROR_H */
