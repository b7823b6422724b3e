/*
 * crypto.c — CSPRNG, SHA-256, wiping and the TLS key-pair check on
 * OpenSSL 3, behind crypto.h.
 *
 * The only file that includes OpenSSL: it owns the fetched digest and the
 * per-thread hashing contexts, and it turns OpenSSL's error queue into
 * tokend statuses where a call fails, leaving nothing queued. It knows
 * nothing of tokens: it hashes and fills the bytes it is given.
 */
#include "crypto.h"

#include <limits.h>
#include <pthread.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "error.h"

static EVP_MD *sha256_md;

/* Each thread's hashing context lives under a pthread key whose destructor
 * frees it when the thread exits, including threads we do not own (NNG's
 * task threads run the verify callbacks). */
static pthread_key_t ctx_key;
static pthread_once_t ctx_key_once = PTHREAD_ONCE_INIT;

static void ctx_destroy(void *ctx) {
    EVP_MD_CTX_free(ctx);
}

static void ctx_key_create(void) {
    (void)pthread_key_create(&ctx_key, ctx_destroy);
}

/* Translates OpenSSL's error queue at the boundary: `what` failed, for
 * the reason OpenSSL gives first (if it gives one), into *err; the queue
 * is emptied. Always TOKEND_INTERNAL. */
static int openssl_error(tokend_error *err, const char *what) {
    unsigned long code = ERR_get_error();
    ERR_clear_error();
    if (code == 0) {
        return error_set(err, TOKEND_INTERNAL, "%s", what);
    }
    char reason[256];
    ERR_error_string_n(code, reason, sizeof(reason));
    return error_set(err, TOKEND_INTERNAL, "%s: %s", what, reason);
}

int crypto_init(tokend_error *err) {
    pthread_once(&ctx_key_once, ctx_key_create);
    if (sha256_md != NULL) {
        return TOKEND_OK;
    }
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (sha256_md == NULL) {
        return openssl_error(err, "OpenSSL has no SHA-256");
    }
    unsigned char probe[16];
    if (RAND_bytes(probe, sizeof(probe)) != 1) {
        return openssl_error(err, "OpenSSL's random generator is not seeded");
    }
    return TOKEND_OK;
}

void crypto_thread_done(void) {
    EVP_MD_CTX *ctx = pthread_getspecific(ctx_key);
    if (ctx != NULL) {
        EVP_MD_CTX_free(ctx);
        (void)pthread_setspecific(ctx_key, NULL);
    }
}

void crypto_shutdown(void) {
    crypto_thread_done();
    EVP_MD_free(sha256_md);
    sha256_md = NULL;
}

int crypto_random(void *buf, size_t n) {
    if (n > INT_MAX || RAND_bytes(buf, (int)n) != 1) {
        ERR_clear_error();
        return TOKEND_INTERNAL;
    }
    return TOKEND_OK;
}

int crypto_sha256(const void *data, size_t len, uint8_t out[32]) {
    EVP_MD_CTX *ctx = pthread_getspecific(ctx_key);
    if (ctx == NULL) {
        ctx = EVP_MD_CTX_new();
        if (ctx == NULL || pthread_setspecific(ctx_key, ctx) != 0) {
            EVP_MD_CTX_free(ctx);
            return TOKEND_INTERNAL;
        }
    }
    unsigned int outlen = 0;
    if (EVP_DigestInit_ex2(ctx, sha256_md, NULL) != 1 ||
        EVP_DigestUpdate(ctx, data, len) != 1 ||
        EVP_DigestFinal_ex(ctx, out, &outlen) != 1 || outlen != 32) {
        ERR_clear_error();
        return TOKEND_INTERNAL;
    }
    return TOKEND_OK;
}

/* PEM's password callback: there is no password, and no terminal to ask
 * one from (OpenSSL's default would prompt). */
static int no_password(char *buf, int size, int rwflag, void *arg) {
    (void)buf, (void)size, (void)rwflag, (void)arg;
    return 0;
}

int crypto_key_pair_ok(const char *cert_pem, const char *key_pem, tokend_error *err) {
    BIO *cert_bio = BIO_new_mem_buf(cert_pem, -1);
    BIO *key_bio = BIO_new_mem_buf(key_pem, -1);
    X509 *cert =
        cert_bio != NULL ? PEM_read_bio_X509(cert_bio, NULL, no_password, NULL) : NULL;
    EVP_PKEY *key = key_bio != NULL
                        ? PEM_read_bio_PrivateKey(key_bio, NULL, no_password, NULL)
                        : NULL;
    int status = TOKEND_OK;
    if (cert == NULL) {
        status = error_set(err, TOKEND_INVALID_ARGUMENT,
                           "no PEM certificate in the certificate file");
    } else if (key == NULL) {
        status = error_set(err, TOKEND_INVALID_ARGUMENT,
                           "no unencrypted PEM private key in the key file");
    } else if (X509_check_private_key(cert, key) != 1) {
        status = error_set(err, TOKEND_INVALID_ARGUMENT,
                           "the key does not belong to the certificate");
    }
    ERR_clear_error();
    EVP_PKEY_free(key);
    X509_free(cert);
    BIO_free(key_bio);
    BIO_free(cert_bio);
    return status;
}

int crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                       uint8_t out[32]) {
    unsigned int out_len = 0;
    if (key_len > INT_MAX ||
        HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &out_len) == NULL ||
        out_len != 32) {
        ERR_clear_error();
        return TOKEND_INTERNAL;
    }
    return TOKEND_OK;
}

void crypto_wipe(void *buf, size_t n) {
    OPENSSL_cleanse(buf, n);
}
