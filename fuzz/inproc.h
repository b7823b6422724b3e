/*
 * inproc.h — what the fuzz targets share: tokend's whole service (store,
 * writer, usage table, TokenService, NNG server) started in the calling
 * process on an inproc:// URL, over a fresh store in a temporary
 * directory, and tokens written straight into that store.
 *
 * Every function aborts the process (with a line on stderr saying why) on
 * failure: a fuzz target cannot run without them.
 */
#ifndef TOKEND_FUZZ_INPROC_H
#define TOKEND_FUZZ_INPROC_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "token.h"

/* Prints "fuzz: what" and aborts. */
_Noreturn void fuzz_die(const char *what);

/* crypto_init, then a new store in a fresh temporary directory named
 * after `name` (left behind, as libFuzzer never returns). */
store *fuzz_store_open(const char *name);

/* Stores a new token of `owner` with `abilities`, minted as CreateToken
 * mints one (methods_mint), written with the WAL synced. `text` gets the
 * plain text, `digest` its digest; `id` (may be NULL) the public id. */
void fuzz_put_token(store *st, const char *owner, char *const *abilities,
                    size_t n_abilities, char text[TOKEN_MAX_LEN + 1],
                    uint8_t digest[TOKEN_DIGEST_LEN], char id[TOKEN_ID_LEN + 1]);

/* Serves the TokenService over `st` on `url` (inproc://...) until the
 * process ends: 8 contexts, 64 KiB messages, usage flushed every second. */
void fuzz_serve(store *st, const char *url);

#endif /* TOKEND_FUZZ_INPROC_H */
