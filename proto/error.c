/*
 * error.c — filling tokend_error the one way. See error.h.
 */
#include "error.h"

#include <stdio.h>
#include <string.h>

void error_copy_text(char *dst, size_t size, const char *src) {
    size_t n = strlen(src);
    if (n >= size) {
        n = size - 1;
        /* Back up to the start of the sequence the cut falls in; keep it
         * only if it fits whole. */
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80) {
            n--;
        }
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = (c < 0x20 || c == 0x7F) ? ' ' : (char)c;
    }
    dst[n] = '\0';
}

int error_setv(tokend_error *err, int code, const char *fmt, va_list ap) {
    if (err == NULL) {
        return code;
    }
    err->code = code;
    if (code == TOKEND_OK) {
        err->message[0] = '\0';
        return code;
    }
    if (fmt == NULL || fmt[0] == '\0') {
        error_copy_text(err->message, sizeof err->message, tokend_strerror(code));
        return code;
    }
    /* Formatted at twice the room, so that the cut happens in
     * error_copy_text, at a sequence boundary, not in vsnprintf. */
    char text[2 * sizeof err->message];
    vsnprintf(text, sizeof text, fmt, ap);
    error_copy_text(err->message, sizeof err->message,
                    text[0] != '\0' ? text : tokend_strerror(code));
    return code;
}

int error_set(tokend_error *err, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    error_setv(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int error_prefix(tokend_error *err, const char *fmt, ...) {
    if (err == NULL) {
        return TOKEND_OK;
    }
    char prefix[sizeof err->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char text[2 * sizeof err->message];
    snprintf(text, sizeof text, "%s%s", prefix, err->message);
    error_copy_text(err->message, sizeof err->message, text);
    return err->code;
}
