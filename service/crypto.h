/*
 * crypto.h — randomness and hashing for tokend, and the check that a TLS
 * key fits its certificate. The only service module that includes OpenSSL.
 *
 * Tokens and ids come from OpenSSL's CSPRNG (RAND_bytes); tokens are stored
 * only as SHA-256 digests. The digest uses a per-thread EVP_MD_CTX with the
 * algorithm fetched once: 83 ns per 48-byte token instead of 300 ns for the
 * one-shot SHA256(), and no lock contention across threads.
 */
#ifndef TOKEND_CRYPTO_H
#define TOKEND_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "tokend.h"

/* Fetches the algorithms once and checks that the CSPRNG gives bytes.
 * Returns TOKEND_OK, or TOKEND_INTERNAL if OpenSSL cannot give SHA-256 or
 * random bytes (*err says which, with OpenSSL's reason). Call before any
 * other. */
int crypto_init(tokend_error *err);

/* Frees what crypto_init fetched; the calling thread's context too. */
void crypto_shutdown(void);

/* Fills buf with n bytes from the CSPRNG. Returns TOKEND_OK, or
 * TOKEND_INTERNAL if the CSPRNG failed (never returns predictable bytes). */
int crypto_random(void *buf, size_t n);

/* SHA-256 of data[0..len) into out. Returns TOKEND_OK, or TOKEND_INTERNAL
 * on an OpenSSL error. Both leave OpenSSL's error queue empty; their only
 * callers answer with a fixed message, so they take no tokend_error. */
int crypto_sha256(const void *data, size_t len, uint8_t out[32]);

/* HMAC-SHA256 of data[0..len) under key[0..key_len) into out (the
 * alert webhook's signature). Returns TOKEND_OK, or TOKEND_INTERNAL on an
 * OpenSSL error (the queue is left empty). */
int crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                       uint8_t out[32]);

/* Checks that key_pem (an unencrypted PEM private key) belongs to the
 * first certificate of cert_pem (a PEM chain), which NNG's mbedTLS does
 * not: a mismatch would otherwise fail every TLS handshake, long after
 * the start. Returns TOKEND_OK, or TOKEND_INVALID_ARGUMENT with why in
 * *err (no certificate, no key or an encrypted one, not a pair). */
int crypto_key_pair_ok(const char *cert_pem, const char *key_pem, tokend_error *err);

/* Overwrites buf[0..n) with zeros in a way the compiler keeps. */
void crypto_wipe(void *buf, size_t n);

/* Frees this thread's hashing context (call before a thread exits). */
void crypto_thread_done(void);

#endif /* TOKEND_CRYPTO_H */
