/*
 * tls.h — what every side needs to know about TLS short of configuring it:
 * which URLs are TLS ones, and reading the PEM files of certificates and
 * keys into memory.
 *
 * It touches no NNG object: proto/rpc_client.c (the dialers) and
 * service/server.c (the listeners) turn what this reads into NNG's TLS
 * configuration, and the gateway hands its HTTPS files to libmicrohttpd.
 * A PEM that may hold a private key is wiped when freed (secret_free).
 */
#ifndef TOKEND_TLS_H
#define TOKEND_TLS_H

#include <stdbool.h>

#include "tokend.h"

/* Largest PEM file read: far above any certificate chain or key. */
#define TLS_PEM_MAX (1024 * 1024)

/* True if `url` is one NNG serves over TLS: its scheme (before "://",
 * any case) is tls+tcp, tls+tcp4, tls+tcp6, wss, wss4 or wss6. Such a
 * listener needs a certificate and such a dialer a CA to check the
 * service's against. */
bool tls_url(const char *url);

/*
 * Reads the PEM file `path`, given as `option` (the flag or field that
 * named it, for the message), into *out: malloc'd and NUL-terminated, to
 * free with secret_free(). Returns TOKEND_OK, or INVALID_ARGUMENT ("cannot
 * read OPTION PATH: REASON": it cannot be opened, is empty, holds a NUL
 * byte or is over TLS_PEM_MAX) or INTERNAL (out of memory), with err
 * filled and *out NULL.
 */
int tls_read_pem(const char *option, const char *path, char **out, tokend_error *err);

#endif /* TOKEND_TLS_H */
