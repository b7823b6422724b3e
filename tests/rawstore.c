/*
 * rawstore.c — see rawstore.h.
 */
#include "rawstore.h"

#include <stdlib.h>
#include <string.h>

#include "test.h"

void rawstore_open(const char *dir, rawstore *r) {
    memset(r, 0, sizeof(*r));
    r->options = rocksdb_options_create();
    char *err = NULL;
    r->names = rocksdb_list_column_families(r->options, dir, &r->n, &err);
    REQUIRE(err == NULL && r->names != NULL && r->n > 0);
    const rocksdb_options_t **fam = calloc(r->n, sizeof(*fam));
    r->cf = calloc(r->n, sizeof(*r->cf));
    REQUIRE(fam != NULL && r->cf != NULL);
    for (size_t i = 0; i < r->n; i++) {
        fam[i] = r->options;
    }
    r->db = rocksdb_open_column_families(r->options, dir, (int)r->n,
                                         (const char *const *)r->names, fam, r->cf, &err);
    free(fam);
    REQUIRE(err == NULL && r->db != NULL);
}

static size_t family_index(const rawstore *r, const char *name) {
    for (size_t i = 0; i < r->n; i++) {
        if (r->cf[i] != NULL && strcmp(r->names[i], name) == 0) {
            return i;
        }
    }
    REQUIRE(!"the store has that column family");
    return 0;
}

rocksdb_column_family_handle_t *rawstore_family(const rawstore *r, const char *name) {
    return r->cf[family_index(r, name)];
}

void rawstore_drop(rawstore *r, const char *name) {
    size_t i = family_index(r, name);
    char *err = NULL;
    rocksdb_drop_column_family(r->db, r->cf[i], &err);
    REQUIRE(err == NULL);
    rocksdb_column_family_handle_destroy(r->cf[i]);
    r->cf[i] = NULL;
}

void rawstore_close(rawstore *r) {
    for (size_t i = 0; i < r->n; i++) {
        if (r->cf[i] != NULL) {
            rocksdb_column_family_handle_destroy(r->cf[i]);
        }
    }
    rocksdb_close(r->db);
    rocksdb_list_column_families_destroy(r->names, r->n);
    free(r->cf);
    rocksdb_options_destroy(r->options);
    memset(r, 0, sizeof(*r));
}
