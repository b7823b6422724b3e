/*
 * rawstore.h — a tokend store opened with RocksDB directly, behind the
 * store module's back, for tests that make it look like an older tokend's
 * (a column family or an index entry taken away). Every family the store
 * has is opened, whatever their number, so a test does not break when a
 * family is added.
 */
#ifndef TOKEND_TESTS_RAWSTORE_H
#define TOKEND_TESTS_RAWSTORE_H

#include <stddef.h>

#include <rocksdb/c.h>

typedef struct rawstore {
    rocksdb_t *db;
    rocksdb_options_t *options;
    char **names;
    size_t n;
    rocksdb_column_family_handle_t **cf;
} rawstore;

/* Opens the (closed) store in `dir` with all its families; REQUIREs it. */
void rawstore_open(const char *dir, rawstore *r);

/* The handle of family `name`; REQUIREs that the store has it. */
rocksdb_column_family_handle_t *rawstore_family(const rawstore *r, const char *name);

/* Drops family `name` (a store made before it); REQUIREs it. */
void rawstore_drop(rawstore *r, const char *name);

/* Closes and frees everything. */
void rawstore_close(rawstore *r);

#endif /* TOKEND_TESTS_RAWSTORE_H */
