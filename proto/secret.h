/*
 * secret.h — wiping memory that held a credential or a plain-text token,
 * for every side (service/crypto.c keeps OpenSSL's own cleanse for the
 * buffers OpenSSL touches), and keeping a process's memory out of core
 * dumps.
 *
 * A plain free() leaves the bytes in the heap, where a core dump or the
 * next allocation can read them; these zero them first, with a store the
 * compiler may not remove as dead.
 */
#ifndef TOKEND_SECRET_H
#define TOKEND_SECRET_H

#include <stdbool.h>
#include <stddef.h>

#include "tokend.h"

/* Zeroes ptr[0..len). NULL or len 0 does nothing. */
void secret_wipe(void *ptr, size_t len);

/* Zeroes the string s (up to its NUL) and frees it. NULL does nothing. */
void secret_free(char *s);

/*
 * Keeps the process's memory, which holds credentials and new tokens, out
 * of core dumps and away from other processes of the same user: the core
 * size limit becomes 0 (soft and hard, so it cannot be raised again) and
 * the process not dumpable (prctl PR_SET_DUMPABLE 0: no core, and no
 * ptrace or /proc/PID/mem, environ, maps without CAP_SYS_PTRACE). With
 * `allow` (an option for debugging), the opposite: dumpable, and the soft
 * core limit raised to the hard one. Call early in main, before any
 * secret is read. Returns TOKEND_OK, or TOKEND_INTERNAL with the system's
 * reason in *err.
 */
int secret_core_dumps(bool allow, tokend_error *err);

#endif /* TOKEND_SECRET_H */
