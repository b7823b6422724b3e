/*
 * secret.h — wiping memory that held a credential or a plain-text token,
 * for every side (service/crypto.c keeps OpenSSL's own cleanse for the
 * buffers OpenSSL touches).
 *
 * A plain free() leaves the bytes in the heap, where a core dump or the
 * next allocation can read them; these zero them first, with a store the
 * compiler may not remove as dead.
 */
#ifndef TOKEND_SECRET_H
#define TOKEND_SECRET_H

#include <stddef.h>

/* Zeroes ptr[0..len). NULL or len 0 does nothing. */
void secret_wipe(void *ptr, size_t len);

/* Zeroes the string s (up to its NUL) and frees it. NULL does nothing. */
void secret_free(char *s);

#endif /* TOKEND_SECRET_H */
