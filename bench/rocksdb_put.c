/*
 * rocksdb_put.c — the reference for rpc_create_tput_64: raw RocksDB puts
 * with the WAL synced (sync = true), one thread, one put after another,
 * into a fresh database in a temporary directory next to where tokend
 * keeps its data in the same run.
 *
 * Each put is a 32-byte key (a token digest's size) and a value of the
 * size tokend's record codec gives the token rpc_bench creates (owner
 * "bench:create", name "bench", ability "orders:read"), so both sides
 * write records of the same size; group commit is what the ratio shows.
 *
 * Usage: rocksdb_put --dir DIR [--seconds S]
 * Prints "puts/s <rate> value_bytes <n>" on stdout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rocksdb/c.h>

#include "record.h"
#include "tokend.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The encoded size of the record a benchmark CreateToken stores. */
static size_t record_bytes(void) {
    char *abilities[] = {"orders:read"};
    token_record rec = {.id = "0123456789abcdef",
                        .owner = "bench:create",
                        .name = "bench",
                        .abilities = abilities,
                        .n_abilities = 1,
                        .created_ms = 1700000000000};
    uint8_t *buf = NULL;
    size_t len = 0;
    if (record_encode(&rec, &buf, &len, NULL) != TOKEND_OK) {
        return 0;
    }
    free(buf);
    return len;
}

int main(int argc, char **argv) {
    const char *dir = NULL;
    double seconds = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--dir") == 0) {
            dir = argv[i + 1];
        } else if (strcmp(argv[i], "--seconds") == 0) {
            seconds = atof(argv[i + 1]);
        } else {
            dir = NULL;
            break;
        }
    }
    if (dir == NULL || argc % 2 == 0 || seconds <= 0) {
        fprintf(stderr, "usage: rocksdb_put --dir DIR [--seconds S]\n");
        return 2;
    }
    size_t value_len = record_bytes();
    if (value_len == 0) {
        fprintf(stderr, "rocksdb_put: cannot size a record\n");
        return 1;
    }

    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    char *err = NULL;
    rocksdb_t *db = rocksdb_open(o, dir, &err);
    if (db == NULL) {
        fprintf(stderr, "rocksdb_put: %s: %s\n", dir, err);
        free(err);
        rocksdb_options_destroy(o);
        return 1;
    }
    rocksdb_writeoptions_t *w = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(w, 1);

    char *value = malloc(value_len);
    memset(value, 'v', value_len);
    uint8_t key[32] = {0};
    long puts = 0;
    double t0 = now_s(), stop = t0 + seconds, t = t0;
    while (t < stop && err == NULL) {
        memcpy(key, &puts, sizeof(puts)); /* distinct keys, as digests are */
        rocksdb_put(db, w, (const char *)key, sizeof(key), value, value_len, &err);
        puts++;
        t = now_s();
    }
    int rc = 0;
    if (err != NULL) {
        fprintf(stderr, "rocksdb_put: put failed: %s\n", err);
        free(err);
        rc = 1;
    } else {
        printf("puts/s %.0f value_bytes %zu\n", (double)puts / (t - t0), value_len);
    }
    free(value);
    rocksdb_writeoptions_destroy(w);
    rocksdb_close(db);
    rocksdb_options_destroy(o);
    return rc;
}
