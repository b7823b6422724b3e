/*
 * tls.c — TLS URLs and PEM files. See tls.h.
 */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error.h"
#include "secret.h"

bool tls_url(const char *url) {
    static const char *const schemes[] = {"tls+tcp", "tls+tcp4", "tls+tcp6",
                                          "wss",     "wss4",     "wss6"};
    const char *end = url != NULL ? strstr(url, "://") : NULL;
    if (end == NULL) {
        return false;
    }
    size_t len = (size_t)(end - url);
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        if (strlen(schemes[i]) == len && strncasecmp(url, schemes[i], len) == 0) {
            return true;
        }
    }
    return false;
}

int tls_read_pem(const char *option, const char *path, char **out, tokend_error *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "cannot read %s %s: %s", option,
                         path, strerror(errno));
    }
    char *buf = malloc(TLS_PEM_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        return error_set(err, TOKEND_INTERNAL, "cannot read %s %s: out of memory", option,
                         path);
    }
    size_t n = fread(buf, 1, TLS_PEM_MAX + 1, f);
    bool failed = ferror(f);
    fclose(f);
    const char *why = failed || n == 0               ? "empty or unreadable"
                      : n > TLS_PEM_MAX              ? "too large"
                      : memchr(buf, '\0', n) != NULL ? "not a PEM file (a NUL byte)"
                                                     : NULL;
    if (why != NULL) {
        /* Whatever was read may be part of a key. */
        secret_wipe(buf, n);
        free(buf);
        return error_set(err, TOKEND_INVALID_ARGUMENT, "cannot read %s %s: %s", option,
                         path, why);
    }
    buf[n] = '\0';
    *out = buf;
    return TOKEND_OK;
}
