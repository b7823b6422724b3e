/*
 * crypto.c — CSPRNG, SHA-256 and wiping on OpenSSL 3. See crypto.h.
 */
#include "crypto.h"

#include <limits.h>
#include <pthread.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

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

int crypto_init(const char **errmsg) {
    pthread_once(&ctx_key_once, ctx_key_create);
    if (sha256_md != NULL) {
        return 0;
    }
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (sha256_md == NULL) {
        *errmsg = "OpenSSL has no SHA-256";
        return -1;
    }
    unsigned char probe[16];
    if (RAND_bytes(probe, sizeof(probe)) != 1) {
        *errmsg = "OpenSSL's random generator is not seeded";
        return -1;
    }
    return 0;
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
        return -1;
    }
    return 0;
}

int crypto_sha256(const void *data, size_t len, uint8_t out[32]) {
    EVP_MD_CTX *ctx = pthread_getspecific(ctx_key);
    if (ctx == NULL) {
        ctx = EVP_MD_CTX_new();
        if (ctx == NULL || pthread_setspecific(ctx_key, ctx) != 0) {
            EVP_MD_CTX_free(ctx);
            return -1;
        }
    }
    unsigned int outlen = 0;
    if (EVP_DigestInit_ex2(ctx, sha256_md, NULL) != 1 ||
        EVP_DigestUpdate(ctx, data, len) != 1 ||
        EVP_DigestFinal_ex(ctx, out, &outlen) != 1 || outlen != 32) {
        ERR_clear_error();
        return -1;
    }
    return 0;
}

void crypto_wipe(void *buf, size_t n) {
    OPENSSL_cleanse(buf, n);
}
