/*
 * bulk_load.c — fills a tokend data dir with N tokens for the scale
 * benchmarks, through the service's own modules: methods_mint() makes each
 * token exactly as CreateToken does (CSPRNG secret, checksum, id, SHA-256
 * digest) and store_batch_put_token() writes it to the same column
 * families, in batches of BATCH, the last one with the WAL synced.
 *
 * Usage: bulk_load --data-dir DIR --tokens N [--owners K] [--sample M
 *        --sample-file FILE]
 *
 * The store must exist (`tokend init`) and tokend must not be running on
 * it (RocksDB's lock refuses a second opener). Tokens go to K owners
 * ("bench:owner-0" ...), round robin, each with the ability "orders:read".
 * M plain-text tokens spread evenly over the load are written to FILE, one
 * per line, for the verify runs that follow; the rest are wiped. This
 * file exists only for benchmarks on throw-away data dirs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto.h"
#include "error.h"
#include "store.h"
#include "tokend.h"
#include "methods.h"

#define BATCH 1000

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t unix_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void print_usage(FILE *to) {
    fprintf(to, "usage: bulk_load --data-dir DIR --tokens N [--owners K]\n"
                "                 [--sample M --sample-file FILE]\n"
                "Writes N tokens into an initialised, stopped tokend data dir; M of\n"
                "their plain texts (spread over the load) go to FILE.\n");
}

static bool parse_count(const char *s, long max, long *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < 0 || v > max) {
        return false;
    }
    *out = v;
    return true;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *sample_file = NULL;
    long n = -1, owners = 1000, sample = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = v != NULL;
        if (strcmp(a, "--help") == 0) {
            print_usage(stdout);
            return 0;
        } else if (ok && strcmp(a, "--data-dir") == 0) {
            dir = v;
        } else if (ok && strcmp(a, "--tokens") == 0) {
            ok = parse_count(v, 100000000, &n);
        } else if (ok && strcmp(a, "--owners") == 0) {
            ok = parse_count(v, 100000000, &owners) && owners > 0;
        } else if (ok && strcmp(a, "--sample") == 0) {
            ok = parse_count(v, 10000000, &sample);
        } else if (ok && strcmp(a, "--sample-file") == 0) {
            sample_file = v;
        } else {
            ok = false;
        }
        if (!ok) {
            fprintf(stderr, "bulk_load: bad argument '%s'\n", a);
            print_usage(stderr);
            return 2;
        }
        i++;
    }
    if (dir == NULL || n < 0 || (sample > 0) != (sample_file != NULL) || sample > n) {
        print_usage(stderr);
        return 2;
    }

    tokend_error err;
    if (crypto_init(&err) != TOKEND_OK) {
        fprintf(stderr, "bulk_load: %s\n", err.message);
        return 1;
    }
    store *st = NULL;
    if (store_open(dir, NULL, &st, &err) != TOKEND_OK) {
        fprintf(stderr, "bulk_load: %s\n", err.message);
        return 1;
    }
    FILE *sf = NULL;
    if (sample_file != NULL && (sf = fopen(sample_file, "w")) == NULL) {
        perror(sample_file);
        store_close(st);
        return 1;
    }

    store_batch *b = store_batch_new();
    char *abilities[] = {"orders:read"};
    long every = sample > 0 ? n / sample : 0;
    long written = 0, sampled = 0;
    int64_t created = unix_ms();
    double t0 = now_s();
    int rv = TOKEND_OK;
    for (long i = 0; i < n && rv == TOKEND_OK; i++) {
        char owner[48], token[TOKEN_MAX_LEN + 1];
        uint8_t digest[TOKEN_DIGEST_LEN];
        token_record rec;
        snprintf(owner, sizeof(owner), "bench:owner-%ld", i % owners);
        rv = methods_mint(TOKEN_DEFAULT_PREFIX, owner, "bulk", abilities, 1, created, 0,
                          token, digest, &rec);
        if (rv != TOKEND_OK) {
            error_set(&err, rv, "minting a token failed");
            break;
        }
        rec.created_seq = (uint32_t)i;
        rv = store_batch_put_token(b, digest, &rec, &err);
        token_record_free(&rec);
        if (sf != NULL && sampled < sample && i % every == 0) {
            fprintf(sf, "%s\n", token);
            sampled++;
        }
        crypto_wipe(token, sizeof(token));
        if (rv == TOKEND_OK && (store_batch_count(b) >= BATCH || i + 1 == n)) {
            rv = store_batch_commit(st, b, i + 1 == n, &err);
            written = i + 1;
        }
    }
    double dt = now_s() - t0;
    store_batch_free(b);
    if (sf != NULL && fclose(sf) != 0 && rv == TOKEND_OK) {
        rv = error_set(&err, TOKEND_INTERNAL, "%s: %s", sample_file, strerror(errno));
    }
    store_close(st); /* flushes the memtables: tokend starts without a WAL replay */
    crypto_shutdown();
    if (rv != TOKEND_OK) {
        fprintf(stderr, "bulk_load: stopped after %ld tokens: %s\n", written,
                err.message);
        return 1;
    }
    fprintf(stderr, "bulk_load: %ld tokens in %.1f s (%.0f/s), %ld sampled\n", written,
            dt, dt > 0 ? (double)written / dt : 0.0, sampled);
    return 0;
}
