/*
 * test_store.c — unit tests of the storage module (service/store.c) on a
 * real RocksDB in a temporary directory: opening, point reads, the owner
 * index and its paging cursors, usage, the initialised marker, durability
 * across reopen, write batches; and of the bytes it stores
 * (service/record.c): the record codec against truncated and hostile
 * bytes.
 */
#include "rawstore.h"
#include "test.h"

#include <pthread.h>

#include <rocksdb/c.h>

#include "record.h"
#include "store.h"
#include "tokend.h"
#include "usage.h"

/* Fills `id` with a valid public id made from n (16 base62 chars). */
static void make_id(unsigned n, char id[TOKEN_ID_LEN + 1]) {
    snprintf(id, TOKEN_ID_LEN + 1, "id%014u", n);
}

/* A digest that differs for every n. */
static void make_digest(unsigned n, uint8_t digest[TOKEN_DIGEST_LEN]) {
    for (int i = 0; i < TOKEN_DIGEST_LEN; i++) {
        digest[i] = (uint8_t)(0xA5 ^ (n >> ((i % 4) * 8)) ^ (unsigned)i);
    }
}

/* A record with every kind of field: two abilities, `n_meta` metadata
 * pairs. Free with token_record_free. */
static token_record make_record(unsigned n, const char *owner, int64_t created_ms,
                                size_t n_meta) {
    token_record rec;
    memset(&rec, 0, sizeof(rec));
    make_id(n, rec.id);
    rec.owner = strdup(owner);
    char name[64];
    snprintf(name, sizeof(name), "token %u", n);
    rec.name = strdup(name);
    rec.n_abilities = 2;
    rec.abilities = calloc(2, sizeof(char *));
    rec.abilities[0] = strdup("orders:read");
    rec.abilities[1] = strdup("orders:*");
    rec.created_ms = created_ms;
    rec.created_seq = n * 2654435761u; /* any value; it must round-trip */
    rec.expires_ms = created_ms + 3600 * 1000;
    rec.n_metadata = n_meta;
    rec.metadata = n_meta > 0 ? calloc(n_meta, sizeof(token_kv)) : NULL;
    for (size_t i = 0; i < n_meta; i++) {
        char key[32], value[32];
        snprintf(key, sizeof(key), "k%zu", i);
        snprintf(value, sizeof(value), "value %zu", i);
        rec.metadata[i].key = strdup(key);
        rec.metadata[i].value = strdup(value);
    }
    return rec;
}

static void check_same_record(const token_record *got, const token_record *want) {
    CHECK_STR(got->id, want->id);
    CHECK_STR(got->owner, want->owner);
    CHECK_STR(got->name, want->name);
    CHECK_INT(got->created_ms, want->created_ms);
    CHECK_INT(got->created_seq, want->created_seq);
    CHECK_INT(got->expires_ms, want->expires_ms);
    CHECK_INT(got->n_abilities, want->n_abilities);
    for (size_t i = 0; i < got->n_abilities && i < want->n_abilities; i++) {
        CHECK_STR(got->abilities[i], want->abilities[i]);
    }
    CHECK_INT(got->n_metadata, want->n_metadata);
    for (size_t i = 0; i < got->n_metadata && i < want->n_metadata; i++) {
        CHECK_STR(got->metadata[i].key, want->metadata[i].key);
        CHECK_STR(got->metadata[i].value, want->metadata[i].value);
    }
}

static store *open_store(const char *dir, bool create) {
    store_options opts = {.create_if_missing = create};
    store *st = NULL;
    tokend_error err;
    int rv = store_open(dir, &opts, &st, &err);
    if (rv != TOKEND_OK) {
        test_fail(__FILE__, __LINE__, "store_open(%s): %d %s", dir, rv, err.message);
    }
    REQUIRE(st != NULL);
    return st;
}

/* Stores token n of `owner`, created at created_ms, and commits (synced). */
static void put_token(store *st, unsigned n, const char *owner, int64_t created_ms) {
    uint8_t digest[TOKEN_DIGEST_LEN];
    make_digest(n, digest);
    token_record rec = make_record(n, owner, created_ms, n % 3);
    store_batch *b = store_batch_new();
    REQUIRE(b != NULL);
    CHECK_INT(store_batch_put_token(b, digest, &rec, NULL), TOKEND_OK);
    tokend_error err = {0};
    CHECK_INT(store_batch_commit(st, b, true, &err), TOKEND_OK);
    CHECK(err.message[0] == '\0');
    store_batch_free(b);
    token_record_free(&rec);
}

static void free_records(token_record *recs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        token_record_free(&recs[i]);
    }
    free(recs);
}

TEST(store_open_creates) {
    const char *dir = test_tmpdir();
    char *sub = NULL;
    REQUIRE(asprintf(&sub, "%s/data", dir) > 0);
    store *st = open_store(sub, true);
    CHECK(!store_is_initialised(st));
    store_close(st);
    /* Opening again without create finds it. */
    st = open_store(sub, false);
    store_close(st);
    store_close(NULL);
    free(sub);
}

TEST(store_open_missing_fails) {
    const char *dir = test_tmpdir();
    store_options opts = {.create_if_missing = false};
    store *st = (store *)1;
    tokend_error err;
    CHECK_INT(store_open(dir, &opts, &st, &err), TOKEND_NOT_FOUND);
    CHECK(st == NULL);
    CHECK(test_contains(err.message, "no tokend store in"));
    CHECK(test_contains(err.message, dir));
    CHECK(test_contains(err.message, "run tokend init"));

    /* A directory that does not exist at all, and the read-only open. */
    char *sub = NULL;
    REQUIRE(asprintf(&sub, "%s/nope", dir) > 0);
    opts.read_only = true;
    CHECK_INT(store_open(sub, &opts, &st, &err), TOKEND_NOT_FOUND);
    CHECK(test_contains(err.message, "run tokend init"));

    /* Contradictory options. */
    opts.create_if_missing = true;
    CHECK_INT(store_open(sub, &opts, &st, &err), TOKEND_INVALID_ARGUMENT);
    CHECK(err.message[0] != '\0');
    free(sub);
}

/* A second open of a store in use fails with RocksDB's reason kept. */
TEST(store_open_locked) {
    const char *dir = test_tmpdir();
    store *st = open_store(dir, true);
    store_options opts = {.create_if_missing = false};
    store *again = (store *)1;
    tokend_error err;
    CHECK_INT(store_open(dir, &opts, &again, &err), TOKEND_UNAVAILABLE);
    CHECK(again == NULL);
    CHECK(test_contains(err.message, dir));
    CHECK(test_contains(err.message, "in use by another process"));
    CHECK(test_contains(err.message, "LOCK"));
    /* Reads give their detail the same way. */
    uint8_t digest[TOKEN_DIGEST_LEN];
    CHECK_INT(store_get_digest(st, NULL, digest, &err), TOKEND_INVALID_ARGUMENT);
    CHECK(test_contains(err.message, "store_get_digest"));
    store_close(st);
}

TEST(store_open_read_only) {
    const char *dir = test_tmpdir();
    store *st = open_store(dir, true);
    put_token(st, 1, "user:1", 1000);
    store_close(st);

    store_options opts = {.read_only = true};
    tokend_error err;
    REQUIRE(store_open(dir, &opts, &st, &err) == TOKEND_OK);
    uint8_t digest[TOKEN_DIGEST_LEN];
    CHECK_INT(store_get_digest(st, "id00000000000001", digest, NULL), TOKEND_OK);
    store_batch *b = store_batch_new();
    store_batch_put_usage(b, "id00000000000001", 5, 6);
    CHECK_INT(store_batch_commit(st, b, true, &err), TOKEND_STORAGE_ERROR);
    CHECK(test_contains(err.message, "read-only"));
    CHECK_INT(store_batch_count(b), 0);
    store_batch_free(b);
    store_close(st);
}

TEST(store_put_get) {
    const char *dir = test_tmpdir();
    store *st = open_store(dir, true);
    uint8_t digest[TOKEN_DIGEST_LEN];
    make_digest(7, digest);
    token_record want = make_record(7, "partner:acme", 1700000000000, 2);
    store_batch *b = store_batch_new();
    CHECK_INT(store_batch_put_token(b, digest, &want, NULL), TOKEND_OK);
    CHECK_INT(store_batch_count(b), 1);
    CHECK_INT(store_batch_commit(st, b, false, NULL), TOKEND_OK);
    CHECK_INT(store_batch_count(b), 0);
    store_batch_free(b);

    token_record got;
    CHECK_INT(store_get_token(st, digest, &got, NULL), TOKEND_OK);
    check_same_record(&got, &want);
    token_record_free(&got);

    uint8_t by_id[TOKEN_DIGEST_LEN];
    CHECK_INT(store_get_digest(st, want.id, by_id, NULL), TOKEND_OK);
    CHECK(memcmp(by_id, digest, TOKEN_DIGEST_LEN) == 0);
    token_record_free(&want);
    store_close(st);
}

TEST(store_get_missing) {
    const char *dir = test_tmpdir();
    store *st = open_store(dir, true);
    put_token(st, 1, "user:1", 1000);
    uint8_t digest[TOKEN_DIGEST_LEN];
    make_digest(2, digest);
    token_record rec;
    CHECK_INT(store_get_token(st, digest, &rec, NULL), TOKEND_NOT_FOUND);
    CHECK(rec.owner == NULL);
    CHECK_INT(store_get_digest(st, "id00000000000002", digest, NULL), TOKEND_NOT_FOUND);
    CHECK_INT(store_get_digest(st, "", digest, NULL), TOKEND_NOT_FOUND);
    int64_t last = 0;
    uint64_t count = 0;
    CHECK_INT(store_get_usage(st, "id00000000000001", &last, &count, NULL),
              TOKEND_NOT_FOUND);
    CHECK_INT(store_get_digest(st, NULL, digest, NULL), TOKEND_INVALID_ARGUMENT);
    store_close(st);
}

TEST(store_delete_removes_all) {
    const char *dir = test_tmpdir();
    store *st = open_store(dir, true);
    put_token(st, 1, "user:1", 1000);
    put_token(st, 2, "user:1", 2000);
    uint8_t digest[TOKEN_DIGEST_LEN];
    make_digest(1, digest);
    store_batch *b = store_batch_new();
    store_batch_put_usage(b, "id00000000000001", 1234, 5);
    CHECK_INT(store_batch_commit(st, b, true, NULL), TOKEND_OK);

    token_record rec;
    REQUIRE(store_get_token(st, digest, &rec, NULL) == TOKEND_OK);
    store_batch_delete_token(b, digest, &rec);
    CHECK_INT(store_batch_count(b), 1);
    CHECK_INT(store_batch_commit(st, b, true, NULL), TOKEND_OK);
    token_record_free(&rec);

    CHECK_INT(store_get_token(st, digest, &rec, NULL), TOKEND_NOT_FOUND);
    uint8_t other[TOKEN_DIGEST_LEN];
    CHECK_INT(store_get_digest(st, "id00000000000001", other, NULL), TOKEND_NOT_FOUND);
    int64_t last = 0;
    uint64_t count = 0;
    CHECK_INT(store_get_usage(st, "id00000000000001", &last, &count, NULL),
              TOKEND_NOT_FOUND);
    char **ids = NULL;
    size_t n = 0;
    CHECK_INT(store_owner_ids(st, "user:1", &ids, &n, NULL), TOKEND_OK);
    REQUIRE(n == 1);
    CHECK_STR(ids[0], "id00000000000002");
    free(ids[0]);
    free(ids);
    token_record *recs = NULL;
    char *next = NULL;
    CHECK_INT(store_list_owner(st, "user:1", NULL, 10, &recs, &n, &next, NULL),
              TOKEND_OK);
    CHECK_INT(n, 1);
    CHECK(next == NULL);
    free_records(recs, n);
    /* The other token is untouched. */
    make_digest(2, digest);
    CHECK_INT(store_get_token(st, digest, &rec, NULL), TOKEND_OK);
    token_record_free(&rec);
    store_batch_free(b);
    store_close(st);
}

TEST(store_list_same_millisecond_follows_sequence) {
    /* Ids sort the other way from the sequence: the sequence must win. */
    const char *dir = test_tmpdir();
    store *st = open_store(dir, true);
    store_batch *b = store_batch_new();
    REQUIRE(b != NULL);
    for (unsigned i = 0; i < 5; i++) {
        uint8_t digest[TOKEN_DIGEST_LEN];
        make_digest(900 + i, digest);
        token_record rec = make_record(900 + i, "user:ms", 4242, 0);
        rec.created_seq = 100 - i; /* id 900 has the highest sequence */
        CHECK_INT(store_batch_put_token(b, digest, &rec, NULL), TOKEND_OK);
        token_record_free(&rec);
    }
    tokend_error err;
    CHECK_INT(store_batch_commit(st, b, true, &err), TOKEND_OK);
    store_batch_free(b);
    token_record *recs = NULL;
    size_t n = 0;
    char *next = NULL;
    REQUIRE(store_list_owner(st, "user:ms", NULL, 10, &recs, &n, &next, NULL) ==
            TOKEND_OK);
    CHECK_INT(n, 5);
    for (size_t i = 0; i < n; i++) {
        char id[TOKEN_ID_LEN + 1];
        make_id(904 - (unsigned)i, id);
        CHECK_STR(recs[i].id, id);
    }
    free_records(recs, n);
    free(next);
    store_close(st);
}

TEST(store_list_pages) {
    const char *dir = test_tmpdir();
    store *st = open_store(dir, true);
    /* Inserted out of creation order: the index must sort by created_ms. */
    for (unsigned i = 0; i < 25; i++) {
        unsigned k = (i * 7) % 25;
        put_token(st, 100 + k, "user:1", 1000 + (int64_t)k);
    }
    put_token(st, 500, "user:0", 5);
    put_token(st, 501, "user:2", 5);

    const size_t want_sizes[] = {10, 10, 5};
    char *cursor = NULL;
    unsigned seen = 0;
    for (int page = 0; page < 3; page++) {
        token_record *recs = NULL;
        size_t n = 0;
        char *next = NULL;
        CHECK_INT(store_list_owner(st, "user:1", cursor, 10, &recs, &n, &next, NULL),
                  TOKEND_OK);
        CHECK_INT(n, want_sizes[page]);
        for (size_t i = 0; i < n; i++) {
            char id[TOKEN_ID_LEN + 1];
            make_id(100 + seen, id);
            CHECK_STR(recs[i].id, id);
            CHECK_STR(recs[i].owner, "user:1");
            CHECK_INT(recs[i].created_ms, 1000 + seen);
            seen++;
        }
        free_records(recs, n);
        free(cursor);
        cursor = next;
        if (page < 2) {
            CHECK(cursor != NULL && *cursor != '\0');
        } else {
            CHECK(cursor == NULL);
        }
        if (cursor == NULL) {
            break;
        }
    }
    CHECK_INT(seen, 25);
    free(cursor);

    /* Exactly one full page: no cursor, since nothing follows. */
    token_record *recs = NULL;
    size_t n = 0;
    char *next = NULL;
    CHECK_INT(store_list_owner(st, "user:1", "", 25, &recs, &n, &next, NULL), TOKEND_OK);
    CHECK_INT(n, 25);
    CHECK(next == NULL);
    free_records(recs, n);

    /* An owner with no tokens: an empty page. */
    CHECK_INT(store_list_owner(st, "nobody", NULL, 10, &recs, &n, &next, NULL),
              TOKEND_OK);
    CHECK_INT(n, 0);
    CHECK(next == NULL);
    free(recs);
    store_close(st);
}

/* A cursor whose entry was revoked between pages still resumes right
 * after where it stood. */
TEST(store_list_cursor_after_delete) {
    const char *dir = test_tmpdir();
    store *st = open_store(dir, true);
    for (unsigned i = 0; i < 6; i++) {
        put_token(st, i, "user:1", 1000 + i);
    }
    token_record *recs = NULL;
    size_t n = 0;
    char *next = NULL;
    REQUIRE(store_list_owner(st, "user:1", NULL, 3, &recs, &n, &next, NULL) == TOKEND_OK);
    REQUIRE(n == 3 && next != NULL);
    uint8_t digest[TOKEN_DIGEST_LEN];
    make_digest(2, digest);
    store_batch *b = store_batch_new();
    store_batch_delete_token(b, digest, &recs[2]);
    CHECK_INT(store_batch_commit(st, b, true, NULL), TOKEND_OK);
    store_batch_free(b);
    free_records(recs, n);

    char *cursor = next;
    CHECK_INT(store_list_owner(st, "user:1", cursor, 3, &recs, &n, &next, NULL),
              TOKEND_OK);
    CHECK_INT(n, 3);
    if (n == 3) {
        CHECK_STR(recs[0].id, "id00000000000003");
        CHECK_STR(recs[2].id, "id00000000000005");
    }
    CHECK(next == NULL);
    free_records(recs, n);
    free(cursor);
    store_close(st);
}

TEST(store_list_owner_prefixes) {
    const char *dir = test_tmpdir();
    store *st = open_store(dir, true);
    put_token(st, 1, "user:1", 3000);
    put_token(st, 2, "user:10", 1000);
    put_token(st, 3, "user:10", 2000);
    put_token(st, 4, "user:", 500);
    put_token(st, 5, "user:1", 4000);

    token_record *recs = NULL;
    size_t n = 0;
    char *next = NULL;
    CHECK_INT(store_list_owner(st, "user:1", NULL, 100, &recs, &n, &next, NULL),
              TOKEND_OK);
    REQUIRE(n == 2);
    CHECK_STR(recs[0].id, "id00000000000001");
    CHECK_STR(recs[1].id, "id00000000000005");
    CHECK(next == NULL);
    free_records(recs, n);

    CHECK_INT(store_list_owner(st, "user:10", NULL, 1, &recs, &n, &next, NULL),
              TOKEND_OK);
    REQUIRE(n == 1);
    CHECK_STR(recs[0].id, "id00000000000002");
    CHECK(next != NULL);
    free_records(recs, n);
    char *cursor = next;
    CHECK_INT(store_list_owner(st, "user:10", cursor, 1, &recs, &n, &next, NULL),
              TOKEND_OK);
    REQUIRE(n == 1);
    CHECK_STR(recs[0].id, "id00000000000003");
    CHECK(next == NULL);
    free_records(recs, n);

    /* A cursor from user:10 used for user:1 must not leak user:10's tokens. */
    CHECK_INT(store_list_owner(st, "user:1", cursor, 100, &recs, &n, &next, NULL),
              TOKEND_OK);
    for (size_t i = 0; i < n; i++) {
        CHECK_STR(recs[i].owner, "user:1");
    }
    free_records(recs, n);
    free(next);
    free(cursor);

    char **ids = NULL;
    CHECK_INT(store_owner_ids(st, "user:", &ids, &n, NULL), TOKEND_OK);
    REQUIRE(n == 1);
    CHECK_STR(ids[0], "id00000000000004");
    free(ids[0]);
    free(ids);
    store_close(st);
}

TEST(store_list_bad_cursor) {
    const char *dir = test_tmpdir();
    store *st = open_store(dir, true);
    put_token(st, 1, "user:1", 1000);
    put_token(st, 2, "user:1", 2000);
    /* A cursor is hex of be64 created_ms, be32 created_seq and the id. */
    const char *bad[] = {
        "zz",
        "not a cursor at all",
        "00000000000003e8",                                           /* too short */
        "00000000000003e89e3779b1696430303030303030303030303031ff",   /* too long */
        "00000000000003e89e3779b16964303030303030303030303030303g1",  /* not hex */
        "00000000000003e89e3779b16964303030303030303030303030303",    /* odd length */
        "00000000000003e89e3779b100000000000000000000000000000000ff", /* id not base62 */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        token_record *recs = (token_record *)1;
        size_t n = 99;
        char *next = (char *)1;
        CHECK_INT(store_list_owner(st, "user:1", bad[i], 10, &recs, &n, &next, NULL),
                  TOKEND_INVALID_ARGUMENT);
        CHECK(recs == NULL && n == 0 && next == NULL);
    }
    /* A cursor that decodes (the first token's position; its sequence is
     * 1 * 2654435761 = 0x9E3779B1) is accepted, in either hex case. */
    token_record *recs = NULL;
    size_t n = 0;
    char *next = NULL;
    CHECK_INT(store_list_owner(st, "user:1",
                               "00000000000003E89E3779B169643030303030303030303030303031",
                               10, &recs, &n, &next, NULL),
              TOKEND_OK);
    REQUIRE(n == 1);
    CHECK_STR(recs[0].id, "id00000000000002");
    free_records(recs, n);
    /* Other invalid arguments. */
    CHECK_INT(store_list_owner(st, "user:1", NULL, 0, &recs, &n, &next, NULL),
              TOKEND_INVALID_ARGUMENT);
    CHECK_INT(store_list_owner(st, NULL, NULL, 10, &recs, &n, &next, NULL),
              TOKEND_INVALID_ARGUMENT);
    char long_owner[TOKEN_OWNER_MAX + 2];
    memset(long_owner, 'o', sizeof(long_owner) - 1);
    long_owner[sizeof(long_owner) - 1] = '\0';
    CHECK_INT(store_list_owner(st, long_owner, NULL, 10, &recs, &n, &next, NULL),
              TOKEND_INVALID_ARGUMENT);
    store_close(st);
}

TEST(store_usage) {
    const char *dir = test_tmpdir();
    store *st = open_store(dir, true);
    store_batch *b = store_batch_new();
    store_batch_put_usage(b, "id00000000000009", 1700000000123, 1);
    store_batch_put_usage(b, "id00000000000009", 1700000000456, 0x1122334455667788ULL);
    CHECK_INT(store_batch_count(b), 2);
    CHECK_INT(store_batch_commit(st, b, false, NULL), TOKEND_OK);
    int64_t last = 0;
    uint64_t count = 0;
    CHECK_INT(store_get_usage(st, "id00000000000009", &last, &count, NULL), TOKEND_OK);
    CHECK_INT(last, 1700000000456);
    CHECK(count == 0x1122334455667788ULL);

    /* An invalid id poisons the batch: nothing of it is applied. */
    store_batch_put_usage(b, "id00000000000009", 1, 1);
    store_batch_put_usage(b, "short", 1, 1);
    tokend_error err;
    CHECK_INT(store_batch_commit(st, b, true, &err), TOKEND_INVALID_ARGUMENT);
    CHECK(err.message[0] != '\0');
    CHECK_INT(store_batch_count(b), 0);
    CHECK_INT(store_get_usage(st, "id00000000000009", &last, &count, NULL), TOKEND_OK);
    CHECK_INT(last, 1700000000456);
    /* The batch is usable again after a failed commit. */
    store_batch_put_usage(b, "id00000000000009", 7, 8);
    CHECK_INT(store_batch_commit(st, b, true, NULL), TOKEND_OK);
    CHECK_INT(store_get_usage(st, "id00000000000009", &last, &count, NULL), TOKEND_OK);
    CHECK_INT(last, 7);
    CHECK_INT(count, 8);
    store_batch_free(b);
    store_close(st);
}

TEST(store_batch_rules) {
    const char *dir = test_tmpdir();
    store *st = open_store(dir, true);
    store_batch *b = store_batch_new();
    /* An empty commit is fine. */
    CHECK_INT(store_batch_commit(st, b, true, NULL), TOKEND_OK);

    /* A record beyond token.h's bounds is refused and adds nothing. */
    uint8_t digest[TOKEN_DIGEST_LEN];
    make_digest(1, digest);
    token_record rec = make_record(1, "user:1", 1000, 0);
    free(rec.owner);
    rec.owner = malloc(TOKEN_OWNER_MAX + 2);
    memset(rec.owner, 'x', TOKEN_OWNER_MAX + 1);
    rec.owner[TOKEN_OWNER_MAX + 1] = '\0';
    CHECK_INT(store_batch_put_token(b, digest, &rec, NULL), TOKEND_INVALID_ARGUMENT);
    CHECK_INT(store_batch_count(b), 0);
    rec.owner[TOKEN_OWNER_MAX] = '\0'; /* exactly the maximum is fine */
    CHECK_INT(store_batch_put_token(b, digest, &rec, NULL), TOKEND_OK);
    strcpy(rec.id, "bad id");
    CHECK_INT(store_batch_put_token(b, digest, &rec, NULL), TOKEND_INVALID_ARGUMENT);
    CHECK_INT(store_batch_count(b), 1);
    store_batch_clear(b);
    CHECK_INT(store_batch_count(b), 0);
    CHECK_INT(store_batch_commit(st, b, true, NULL), TOKEND_OK);
    token_record_free(&rec);
    CHECK_INT(store_get_token(st, digest, &rec, NULL), TOKEND_NOT_FOUND);

    /* A delete with a bad record fails the commit rather than half-delete. */
    put_token(st, 2, "user:1", 1000);
    make_digest(2, digest);
    REQUIRE(store_get_token(st, digest, &rec, NULL) == TOKEND_OK);
    store_batch_delete_token(b, digest, NULL);
    tokend_error err;
    CHECK_INT(store_batch_commit(st, b, true, &err), TOKEND_INVALID_ARGUMENT);
    CHECK_INT(store_get_digest(st, rec.id, digest, NULL), TOKEND_OK);
    token_record_free(&rec);
    store_batch_free(b);
    store_batch_free(NULL);
    store_close(st);
}

TEST(store_initialised_survives_reopen) {
    const char *dir = test_tmpdir();
    store *st = open_store(dir, true);
    CHECK(!store_is_initialised(st));
    store_batch *b = store_batch_new();
    store_batch_mark_initialised(b, 1700000000000);
    CHECK_INT(store_batch_count(b), 1);
    CHECK_INT(store_batch_commit(st, b, true, NULL), TOKEND_OK);
    store_batch_free(b);
    CHECK(store_is_initialised(st));
    store_close(st);
    st = open_store(dir, false);
    CHECK(store_is_initialised(st));
    store_close(st);
}

TEST(store_data_survives_reopen) {
    const char *dir = test_tmpdir();
    store *st = open_store(dir, true);
    for (unsigned i = 0; i < 50; i++) {
        put_token(st, i, i % 2 ? "odd" : "even", 1000 + i);
    }
    /* Unsynced writes survive a clean close too (close flushes). */
    store_batch *b = store_batch_new();
    store_batch_put_usage(b, "id00000000000003", 42, 43);
    CHECK_INT(store_batch_commit(st, b, false, NULL), TOKEND_OK);
    store_batch_free(b);
    store_close(st);

    st = open_store(dir, false);
    for (unsigned i = 0; i < 50; i++) {
        uint8_t digest[TOKEN_DIGEST_LEN], by_id[TOKEN_DIGEST_LEN];
        make_digest(i, digest);
        token_record got, want = make_record(i, i % 2 ? "odd" : "even", 1000 + i, i % 3);
        CHECK_INT(store_get_token(st, digest, &got, NULL), TOKEND_OK);
        check_same_record(&got, &want);
        CHECK_INT(store_get_digest(st, want.id, by_id, NULL), TOKEND_OK);
        CHECK(memcmp(digest, by_id, TOKEN_DIGEST_LEN) == 0);
        token_record_free(&got);
        token_record_free(&want);
    }
    int64_t last = 0;
    uint64_t count = 0;
    CHECK_INT(store_get_usage(st, "id00000000000003", &last, &count, NULL), TOKEND_OK);
    CHECK_INT(last, 42);
    CHECK_INT(count, 43);
    char **ids = NULL;
    size_t n = 0;
    CHECK_INT(store_owner_ids(st, "odd", &ids, &n, NULL), TOKEND_OK);
    CHECK_INT(n, 25);
    for (size_t i = 0; i < n; i++) {
        free(ids[i]);
    }
    free(ids);
    store_close(st);
}

TEST(store_owner_ids_all) {
    const char *dir = test_tmpdir();
    store *st = open_store(dir, true);
    char **ids = NULL;
    size_t n = 7;
    CHECK_INT(store_owner_ids(st, "user:1", &ids, &n, NULL), TOKEND_OK);
    CHECK_INT(n, 0);
    free(ids);
    for (unsigned i = 0; i < 40; i++) {
        put_token(st, i, i < 37 ? "user:1" : "user:10", 1000 + i);
    }
    CHECK_INT(store_owner_ids(st, "user:1", &ids, &n, NULL), TOKEND_OK);
    CHECK_INT(n, 37);
    for (size_t i = 0; i < n; i++) {
        char id[TOKEN_ID_LEN + 1];
        make_id((unsigned)i, id);
        CHECK_STR(ids[i], id);
        free(ids[i]);
    }
    free(ids);
    CHECK_INT(store_owner_ids(st, NULL, &ids, &n, NULL), TOKEND_INVALID_ARGUMENT);
    store_close(st);
}

/* Frees a list of ids from store_owner_ids; returns how many held `id`. */
static size_t free_ids_counting(char **ids, size_t n, const char *id) {
    size_t seen = 0;
    for (size_t i = 0; i < n; i++) {
        seen += strcmp(ids[i], id) == 0;
        free(ids[i]);
    }
    free(ids);
    return seen;
}

/* What the writer relies on: reads through a batch see the batch's own
 * puts and deletes on top of the committed state, each key as its latest
 * operation left it, and an empty batch reads as the store. */
TEST(store_batch_reads_see_the_batch) {
    const char *dir = test_tmpdir();
    store *st = open_store(dir, true);
    for (unsigned i = 0; i < 3; i++) {
        put_token(st, i, "user:1", 1000 + i);
    }
    store_batch *b = store_batch_new();
    uint8_t digest[TOKEN_DIGEST_LEN], got_digest[TOKEN_DIGEST_LEN];
    token_record got;
    make_digest(0, digest);
    CHECK_INT(store_batch_get_token(st, b, digest, &got, NULL), TOKEND_OK);
    token_record_free(&got);

    /* A token put in the batch: found by digest and id, listed, not yet
     * in the store. */
    token_record fresh = make_record(7, "user:1", 2000, 2);
    uint8_t fresh_digest[TOKEN_DIGEST_LEN];
    make_digest(7, fresh_digest);
    REQUIRE(store_batch_put_token(b, fresh_digest, &fresh, NULL) == TOKEND_OK);
    CHECK_INT(store_batch_get_token(st, b, fresh_digest, &got, NULL), TOKEND_OK);
    check_same_record(&got, &fresh);
    token_record_free(&got);
    CHECK_INT(store_batch_get_digest(st, b, fresh.id, got_digest, NULL), TOKEND_OK);
    CHECK(memcmp(got_digest, fresh_digest, TOKEN_DIGEST_LEN) == 0);
    CHECK_INT(store_get_token(st, fresh_digest, &got, NULL), TOKEND_NOT_FOUND);

    /* A committed token deleted in the batch: gone through it, there in
     * the store. */
    token_record old;
    make_digest(1, digest);
    REQUIRE(store_get_token(st, digest, &old, NULL) == TOKEND_OK);
    store_batch_delete_token(b, digest, &old);
    CHECK_INT(store_batch_get_token(st, b, digest, &got, NULL), TOKEND_NOT_FOUND);
    CHECK_INT(store_batch_get_digest(st, b, old.id, got_digest, NULL), TOKEND_NOT_FOUND);
    CHECK_INT(store_get_digest(st, old.id, got_digest, NULL), TOKEND_OK);

    char **ids = NULL;
    size_t n = 0;
    CHECK_INT(store_batch_owner_ids(st, b, "user:1", &ids, &n, NULL), TOKEND_OK);
    CHECK_INT(n, 3); /* 0 and 2 committed, 7 from the batch; not 1 */
    if (n == 3) {
        CHECK_STR(ids[0], "id00000000000000");
        CHECK_STR(ids[1], "id00000000000002");
        CHECK_STR(ids[2], "id00000000000007");
    }
    CHECK_INT(free_ids_counting(ids, n, old.id), 0);
    CHECK_INT(store_owner_ids(st, "user:1", &ids, &n, NULL), TOKEND_OK);
    CHECK_INT(free_ids_counting(ids, n, old.id), 1);
    CHECK_INT(n, 3);

    /* Put, then deleted, in the same batch: the latest operation wins. */
    store_batch_delete_token(b, fresh_digest, &fresh);
    CHECK_INT(store_batch_get_token(st, b, fresh_digest, &got, NULL), TOKEND_NOT_FOUND);
    CHECK_INT(store_batch_owner_ids(st, b, "user:1", &ids, &n, NULL), TOKEND_OK);
    CHECK_INT(n, 2);
    CHECK_INT(free_ids_counting(ids, n, fresh.id), 0);

    /* Many keys (the index grows); every one still found. */
    for (unsigned i = 100; i < 400; i++) {
        token_record r = make_record(i, "user:2", 3000 + i, 0);
        uint8_t d[TOKEN_DIGEST_LEN];
        make_digest(i, d);
        REQUIRE(store_batch_put_token(b, d, &r, NULL) == TOKEND_OK);
        token_record_free(&r);
    }
    unsigned found = 0;
    for (unsigned i = 100; i < 400; i++) {
        uint8_t d[TOKEN_DIGEST_LEN];
        make_digest(i, d);
        if (store_batch_get_token(st, b, d, &got, NULL) == TOKEND_OK) {
            found++;
            token_record_free(&got);
        }
    }
    CHECK_INT(found, 300);

    /* Committed, the store reads as the batch did; the cleared batch reads
     * as the store. */
    CHECK_INT(store_batch_commit(st, b, true, NULL), TOKEND_OK);
    CHECK_INT(store_get_token(st, digest, &got, NULL), TOKEND_NOT_FOUND);
    CHECK_INT(store_get_token(st, fresh_digest, &got, NULL), TOKEND_NOT_FOUND);
    make_digest(399, digest);
    CHECK_INT(store_batch_get_token(st, b, digest, &got, NULL), TOKEND_OK);
    token_record_free(&got);
    CHECK_INT(store_batch_owner_ids(st, b, "user:2", &ids, &n, NULL), TOKEND_OK);
    CHECK_INT(n, 300);
    free_ids_counting(ids, n, "");
    CHECK_INT(store_batch_get_token(st, b, NULL, &got, NULL), TOKEND_INVALID_ARGUMENT);
    token_record_free(&old);
    token_record_free(&fresh);
    store_batch_free(b);
    store_close(st);
}

/* Owner counts through a batch: the committed count (read from the index
 * once, then cached) plus the batch's puts less its deletes; commits move
 * the cached count; a cleared batch's changes never count. */
TEST(store_owner_count_follows_batches_and_commits) {
    const char *dir = test_tmpdir();
    store *st = open_store(dir, true);
    for (unsigned i = 0; i < 5; i++) {
        put_token(st, i, i < 4 ? "user:1" : "user:10", 1000 + i);
    }
    uint64_t count = 99;
    CHECK_INT(store_batch_owner_count(st, NULL, "user:1", &count, NULL), TOKEND_OK);
    CHECK_INT(count, 4);
    CHECK_INT(store_batch_owner_count(st, NULL, "nobody", &count, NULL), TOKEND_OK);
    CHECK_INT(count, 0);

    store_batch *b = store_batch_new();
    token_record r = make_record(20, "user:1", 2000, 0);
    uint8_t d[TOKEN_DIGEST_LEN];
    make_digest(20, d);
    REQUIRE(store_batch_put_token(b, d, &r, NULL) == TOKEND_OK);
    CHECK_INT(store_batch_owner_count(st, b, "user:1", &count, NULL), TOKEND_OK);
    CHECK_INT(count, 5);
    CHECK_INT(store_batch_owner_count(st, NULL, "user:1", &count, NULL), TOKEND_OK);
    CHECK_INT(count, 4);
    store_batch_clear(b); /* never committed: never counted */
    CHECK_INT(store_batch_owner_count(st, b, "user:1", &count, NULL), TOKEND_OK);
    CHECK_INT(count, 4);

    /* One batch that adds one and removes two: 4 + 1 - 2. */
    REQUIRE(store_batch_put_token(b, d, &r, NULL) == TOKEND_OK);
    for (unsigned i = 0; i < 2; i++) {
        uint8_t di[TOKEN_DIGEST_LEN];
        token_record ri;
        make_digest(i, di);
        REQUIRE(store_get_token(st, di, &ri, NULL) == TOKEND_OK);
        store_batch_delete_token(b, di, &ri);
        token_record_free(&ri);
    }
    CHECK_INT(store_batch_owner_count(st, b, "user:1", &count, NULL), TOKEND_OK);
    CHECK_INT(count, 3);
    CHECK_INT(store_batch_commit(st, b, true, NULL), TOKEND_OK);
    CHECK_INT(store_batch_owner_count(st, b, "user:1", &count, NULL), TOKEND_OK);
    CHECK_INT(count, 3);
    CHECK_INT(store_batch_owner_count(st, b, "user:10", &count, NULL), TOKEND_OK);
    CHECK_INT(count, 1);

    /* A failed (poisoned) commit moves no count. */
    token_record r2 = make_record(21, "user:1", 2001, 0);
    make_digest(21, d);
    REQUIRE(store_batch_put_token(b, d, &r2, NULL) == TOKEND_OK);
    store_batch_delete_token(b, d, NULL);
    CHECK_INT(store_batch_commit(st, b, true, NULL), TOKEND_INVALID_ARGUMENT);
    CHECK_INT(store_batch_owner_count(st, b, "user:1", &count, NULL), TOKEND_OK);
    CHECK_INT(count, 3);

    /* The same after a reopen, counted afresh from the index. */
    store_close(st);
    st = open_store(dir, false);
    CHECK_INT(store_batch_owner_count(st, b, "user:1", &count, NULL), TOKEND_OK);
    CHECK_INT(count, 3);
    CHECK_INT(store_batch_owner_count(st, b, NULL, &count, NULL),
              TOKEND_INVALID_ARGUMENT);
    token_record_free(&r);
    token_record_free(&r2);
    store_batch_free(b);
    store_close(st);
}

/* A page cut by bytes: it stops before the record that would pass the
 * budget (always taking one), and its cursor walks the rest. */
TEST(store_list_pages_bounded_by_bytes) {
    const char *dir = test_tmpdir();
    store *st = open_store(dir, true);
    for (unsigned i = 0; i < 9; i++) {
        put_token(st, i * 3, "user:1", 1000 + i); /* no metadata: same sizes */
    }
    token_record *recs = NULL;
    size_t n = 0;
    char *next = NULL;
    REQUIRE(store_list_owner(st, "user:1", NULL, 1, &recs, &n, &next, NULL) == TOKEND_OK);
    uint8_t *enc = NULL;
    size_t one = 0;
    REQUIRE(n == 1 && record_encode(&recs[0], &enc, &one, NULL) == TOKEND_OK);
    free(enc);
    free_records(recs, n);
    free(next);

    /* Room for two and a half records: pages of 2, 2, 2, 2, 1. */
    char *cursor = NULL;
    size_t pages = 0, total = 0;
    do {
        CHECK_INT(store_list_owner_within(st, "user:1", cursor, 100, one * 5 / 2, &recs,
                                          &n, &next, NULL),
                  TOKEND_OK);
        CHECK_INT(n, next != NULL ? 2 : 1);
        for (size_t i = 0; i < n; i++) {
            char id[TOKEN_ID_LEN + 1];
            make_id((unsigned)(total + i) * 3, id);
            CHECK_STR(recs[i].id, id);
        }
        total += n;
        pages++;
        free_records(recs, n);
        free(cursor);
        cursor = next;
    } while (cursor != NULL && pages < 20);
    CHECK_INT(pages, 5);
    CHECK_INT(total, 9);
    /* A budget below one record still gives one a page. */
    CHECK_INT(store_list_owner_within(st, "user:1", NULL, 100, 1, &recs, &n, &next, NULL),
              TOKEND_OK);
    CHECK_INT(n, 1);
    CHECK(next != NULL);
    free_records(recs, n);
    free(next);
    store_close(st);
}

typedef struct reader_arg {
    store *st;
    int failures;
} reader_arg;

static void *reader_thread(void *p) {
    reader_arg *arg = p;
    for (unsigned round = 0; round < 200; round++) {
        unsigned i = round % 20;
        uint8_t digest[TOKEN_DIGEST_LEN];
        make_digest(i, digest);
        token_record rec;
        if (store_get_token(arg->st, digest, &rec, NULL) != TOKEND_OK) {
            arg->failures++;
            continue;
        }
        char id[TOKEN_ID_LEN + 1];
        make_id(i, id);
        if (strcmp(rec.id, id) != 0) {
            arg->failures++;
        }
        token_record_free(&rec);
        token_record *recs = NULL;
        size_t n = 0;
        char *next = NULL;
        if (store_list_owner(arg->st, "user:1", NULL, 5, &recs, &n, &next, NULL) !=
                TOKEND_OK ||
            n != 5) {
            arg->failures++;
        }
        free_records(recs, n);
        free(next);
    }
    return NULL;
}

/* Reads from several threads while the test thread writes. */
TEST(store_concurrent_reads) {
    const char *dir = test_tmpdir();
    store *st = open_store(dir, true);
    for (unsigned i = 0; i < 20; i++) {
        put_token(st, i, "user:1", 1000 + i);
    }
    pthread_t threads[4];
    reader_arg args[4];
    for (int t = 0; t < 4; t++) {
        args[t] = (reader_arg){st, 0};
        REQUIRE(pthread_create(&threads[t], NULL, reader_thread, &args[t]) == 0);
    }
    for (unsigned i = 20; i < 60; i++) {
        put_token(st, i, "user:2", 1000 + i);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(threads[t], NULL);
        CHECK_INT(args[t].failures, 0);
    }
    store_close(st);
}

TEST(record_codec_roundtrip) {
    size_t meta_counts[] = {0, 1, TOKEN_METADATA_MAX};
    for (size_t m = 0; m < sizeof(meta_counts) / sizeof(meta_counts[0]); m++) {
        token_record want = make_record(3, "partner:acme", 1700000000000, meta_counts[m]);
        uint8_t *buf = NULL;
        size_t len = 0;
        CHECK_INT(record_encode(&want, &buf, &len, NULL), TOKEND_OK);
        CHECK(buf != NULL && len > 0);
        token_record got;
        CHECK_INT(record_decode(buf, len, &got, NULL), TOKEND_OK);
        check_same_record(&got, &want);
        if (meta_counts[m] == 0) {
            CHECK(got.metadata == NULL);
        }
        token_record_free(&got);
        free(buf);
        token_record_free(&want);
    }

    /* Edge values: no abilities, empty name, negative and extreme times,
     * a NULL name and a NULL metadata value (stored as ""), and every
     * field at its maximum size. */
    token_record rec;
    memset(&rec, 0, sizeof(rec));
    strcpy(rec.id, "zzzzzzzzzzzzzzzz");
    rec.owner = calloc(TOKEN_OWNER_MAX + 1, 1);
    memset(rec.owner, 'o', TOKEN_OWNER_MAX);
    rec.created_ms = INT64_MIN;
    rec.expires_ms = INT64_MAX;
    rec.n_metadata = 1;
    rec.metadata = calloc(1, sizeof(token_kv));
    rec.metadata[0].key = strdup("k");
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK_INT(record_encode(&rec, &buf, &len, NULL), TOKEND_OK);
    token_record got;
    CHECK_INT(record_decode(buf, len, &got, NULL), TOKEND_OK);
    CHECK_STR(got.owner, rec.owner);
    CHECK_STR(got.name, "");
    CHECK_INT(got.n_abilities, 0);
    CHECK(got.abilities == NULL);
    CHECK(got.created_ms == INT64_MIN);
    CHECK(got.expires_ms == INT64_MAX);
    CHECK_STR(got.metadata[0].value, "");
    token_record_free(&got);
    free(buf);
    token_record_free(&rec);

    rec = make_record(4, "o", 1, 0);
    for (size_t i = 0; i < rec.n_abilities; i++) {
        free(rec.abilities[i]);
    }
    free(rec.abilities);
    rec.n_abilities = TOKEN_ABILITIES_MAX;
    rec.abilities = calloc(TOKEN_ABILITIES_MAX, sizeof(char *));
    for (size_t i = 0; i < TOKEN_ABILITIES_MAX; i++) {
        rec.abilities[i] = calloc(TOKEN_ABILITY_MAX + 1, 1);
        memset(rec.abilities[i], 'a', TOKEN_ABILITY_MAX);
    }
    free(rec.name);
    rec.name = calloc(TOKEN_NAME_MAX + 1, 1);
    memset(rec.name, 'n', TOKEN_NAME_MAX);
    CHECK_INT(record_encode(&rec, &buf, &len, NULL), TOKEND_OK);
    CHECK_INT(record_decode(buf, len, &got, NULL), TOKEND_OK);
    check_same_record(&got, &rec);
    token_record_free(&got);
    free(buf);
    /* One more of anything is refused. */
    rec.abilities[0][TOKEN_ABILITY_MAX - 1] = '\0';
    rec.name = realloc(rec.name, TOKEN_NAME_MAX + 2);
    strcat(rec.name, "n");
    CHECK_INT(record_encode(&rec, &buf, &len, NULL), TOKEND_INVALID_ARGUMENT);
    CHECK(buf == NULL && len == 0);
    token_record_free(&rec);
}

TEST(record_codec_truncated) {
    token_record rec = make_record(5, "user:1", 1700000000000, 3);
    uint8_t *buf = NULL;
    size_t len = 0;
    REQUIRE(record_encode(&rec, &buf, &len, NULL) == TOKEND_OK);
    for (size_t cut = 0; cut < len; cut++) {
        /* A copy of exactly `cut` bytes, so ASan sees any read past it. */
        uint8_t *part = malloc(cut > 0 ? cut : 1);
        memcpy(part, buf, cut);
        token_record got;
        CHECK_INT(record_decode(part, cut, &got, NULL), TOKEND_INTERNAL);
        CHECK(got.owner == NULL && got.abilities == NULL && got.metadata == NULL);
        free(part);
    }
    /* Trailing bytes are an inconsistency too. */
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0;
    token_record got;
    CHECK_INT(record_decode(longer, len + 1, &got, NULL), TOKEND_INTERNAL);
    /* So is an unknown version. */
    longer[0] = 2;
    CHECK_INT(record_decode(longer, len, &got, NULL), TOKEND_INTERNAL);
    CHECK_INT(record_decode(NULL, 0, &got, NULL), TOKEND_INTERNAL);
    free(longer);
    free(buf);
    token_record_free(&rec);
}

/* xorshift64: a fixed, reproducible stream of test bytes. */
static uint64_t rng_next(uint64_t *state) {
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

TEST(record_codec_random_bytes) {
    uint64_t state = 0x9E3779B97F4A7C15ULL;
    token_record rec = make_record(6, "user:1", 1700000000000, 2);
    uint8_t *valid = NULL;
    size_t valid_len = 0;
    REQUIRE(record_encode(&rec, &valid, &valid_len, NULL) == TOKEND_OK);
    token_record_free(&rec);
    int decoded = 0;
    for (int round = 0; round < 100000; round++) {
        size_t len;
        uint8_t *buf;
        if (round % 2 == 0) {
            /* Random bytes, version byte usually right to get further in. */
            len = (size_t)(rng_next(&state) % 400);
            buf = malloc(len > 0 ? len : 1);
            for (size_t i = 0; i < len; i++) {
                buf[i] = (uint8_t)rng_next(&state);
            }
            if (len > 0 && round % 4 == 0) {
                buf[0] = 1;
            }
        } else {
            /* A valid record with a few bytes changed and maybe cut. */
            len = valid_len;
            buf = malloc(len);
            memcpy(buf, valid, len);
            int flips = 1 + (int)(rng_next(&state) % 4);
            for (int f = 0; f < flips; f++) {
                buf[rng_next(&state) % len] = (uint8_t)rng_next(&state);
            }
            if (rng_next(&state) % 4 == 0) {
                len = (size_t)(rng_next(&state) % len);
            }
        }
        token_record got;
        int rv = record_decode(buf, len, &got, NULL);
        if (rv == TOKEND_OK) {
            decoded++;
            CHECK(strlen(got.id) == TOKEN_ID_LEN);
            CHECK(got.owner != NULL && strlen(got.owner) <= TOKEN_OWNER_MAX);
            CHECK(got.n_abilities <= TOKEN_ABILITIES_MAX);
            CHECK(got.n_metadata <= TOKEN_METADATA_MAX);
            token_record_free(&got);
        } else {
            CHECK_INT(rv, TOKEND_INTERNAL);
        }
        free(buf);
    }
    /* Some mutations only change a character and still decode. */
    CHECK(decoded > 0);
    free(valid);
}

/* Token n of `owner` with tokend:admin (and orders:read), expiring at
 * expires_ms (0: never), put into `b`. */
static void put_admin(store_batch *b, unsigned n, const char *owner, int64_t expires_ms) {
    uint8_t digest[TOKEN_DIGEST_LEN];
    make_digest(n, digest);
    token_record rec = make_record(n, owner, 1000, 0);
    free(rec.abilities[1]);
    rec.abilities[1] = strdup("tokend:admin");
    rec.expires_ms = expires_ms;
    CHECK_INT(store_batch_put_token(b, digest, &rec, NULL), TOKEND_OK);
    token_record_free(&rec);
}

static uint64_t admins_valid(store *st, const store_batch *b, int64_t now_ms) {
    uint64_t n = 999;
    CHECK_INT(store_batch_admins_valid(st, b, now_ms, &n, NULL), TOKEND_OK);
    return n;
}

/* The admin index counts the unexpired tokend:admin tokens, committed and
 * through a batch (its puts and deletes on top); a wildcard is no admin.
 * A store made before the index (no admin keys, no marker) gets it built
 * at its next read-write open. */
TEST(store_admin_index_counts_valid_admins_through_batches) {
    const char *dir = test_tmpdir();
    store *st = open_store(dir, true);
    CHECK_INT(admins_valid(st, NULL, 5000), 0);
    store_batch *b = store_batch_new();
    put_admin(b, 1, "admin", 0);
    put_admin(b, 2, "ops", 4000); /* expired at 5000 */
    put_token(st, 3, "partner:x", 1000);
    CHECK_INT(admins_valid(st, b, 3000), 2);
    CHECK_INT(admins_valid(st, b, 5000), 1);
    CHECK_INT(admins_valid(st, NULL, 3000), 0); /* not committed yet */
    CHECK_INT(store_batch_commit(st, b, true, NULL), TOKEND_OK);
    CHECK_INT(admins_valid(st, NULL, 3000), 2);
    CHECK_INT(admins_valid(st, NULL, 5000), 1);

    /* A "*" token is not an admin. */
    {
        uint8_t digest[TOKEN_DIGEST_LEN];
        make_digest(4, digest);
        token_record rec = make_record(4, "admin", 1000, 0);
        free(rec.abilities[1]);
        rec.abilities[1] = strdup("*");
        CHECK_INT(store_batch_put_token(b, digest, &rec, NULL), TOKEND_OK);
        token_record_free(&rec);
        CHECK_INT(admins_valid(st, b, 3000), 2);
        store_batch_clear(b);
    }

    /* A delete in the batch hides a committed admin; a put after it in
     * the same batch counts. */
    uint8_t digest1[TOKEN_DIGEST_LEN];
    make_digest(1, digest1);
    token_record rec1;
    REQUIRE(store_get_token(st, digest1, &rec1, NULL) == TOKEND_OK);
    store_batch_delete_token(b, digest1, &rec1);
    CHECK_INT(admins_valid(st, b, 3000), 1);
    CHECK_INT(admins_valid(st, b, 5000), 0);
    put_admin(b, 5, "admin", 0);
    CHECK_INT(admins_valid(st, b, 5000), 1);
    store_batch_clear(b);
    CHECK_INT(admins_valid(st, b, 5000), 1);
    token_record_free(&rec1);
    store_batch_free(b);
    store_close(st);

    /* An older store: take the index away behind the store's back. */
    rawstore raw;
    rawstore_open(dir, &raw);
    rocksdb_column_family_handle_t *meta = rawstore_family(&raw, "default");
    char *rerr = NULL;
    rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_delete_cf(wb, meta, "admin_index", 11);
    for (unsigned n = 1; n <= 2; n++) {
        char key[6 + TOKEN_ID_LEN + 1];
        memcpy(key, "admin\0", 6);
        make_id(n, key + 6);
        rocksdb_writebatch_delete_cf(wb, meta, key, 6 + TOKEN_ID_LEN);
    }
    rocksdb_write(raw.db, wo, wb, &rerr);
    REQUIRE(rerr == NULL);
    rocksdb_writebatch_destroy(wb);
    rocksdb_writeoptions_destroy(wo);
    rawstore_close(&raw);

    /* Read-only opens do not build it ... */
    store_options ro = {.read_only = true};
    REQUIRE(store_open(dir, &ro, &st, NULL) == TOKEND_OK);
    CHECK_INT(admins_valid(st, NULL, 3000), 0);
    store_close(st);
    /* ... the next read-write open does, once. */
    st = open_store(dir, false);
    CHECK_INT(admins_valid(st, NULL, 3000), 2);
    CHECK_INT(admins_valid(st, NULL, 5000), 1);
    store_close(st);
}

/* The usage table (service/usage.c) as GetToken reads it: a use is
 * counted once whether it sits in the table, in a drain whose flush is
 * being committed, or in the store; a flush that ends between a reader's
 * store read and its peek moves the generation on. */
TEST(usage_table_counts_each_use_once_across_a_flush) {
    usage *u = usage_new(16);
    REQUIRE(u != NULL);
    const char *id = "AAAAAAAAAAAAAAAA";
    int64_t last = 0;
    uint64_t n = 0;
    usage_peek(u, id, 0, &last, &n);
    CHECK_INT(n, 0);
    CHECK_INT(last, 0);
    for (int i = 1; i <= 3; i++) {
        usage_touch(u, id, 1000 * i);
    }
    usage_peek(u, id, 0, &last, &n);
    CHECK_INT(n, 3);
    CHECK_INT(last, 3000);

    usage_entry *entries = NULL;
    size_t count = 0;
    uint64_t dropped = 0;
    REQUIRE(usage_drain(u, &entries, &count, &dropped) == TOKEND_OK);
    REQUIRE(count == 1);
    CHECK_INT(entries[0].count, 3);
    usage_peek(u, id, 0, &last, &n); /* drained, not yet stored */
    CHECK_INT(n, 3);
    usage_touch(u, id, 4000);
    entries[0].stored_total = 10 + 3; /* the store held 10 before */
    usage_commit_begin(u, entries, count);
    usage_peek(u, id, 10, &last, &n); /* the store without the flush */
    CHECK_INT(n, 4);
    CHECK_INT(last, 4000);
    uint64_t gen = usage_peek(u, id, 13, &last, &n); /* the store with it */
    CHECK_INT(n, 1);
    usage_flushed(u);
    uint64_t after = usage_peek(u, id, 13, &last, &n);
    CHECK(after != gen); /* a reader that straddled the flush reads again */
    CHECK_INT(n, 1);
    free(entries);

    /* A flush that could not be written gives its entries back. */
    REQUIRE(usage_drain(u, &entries, &count, &dropped) == TOKEND_OK);
    REQUIRE(count == 1);
    usage_touch(u, id, 5000);
    usage_restore(u, entries, count);
    usage_peek(u, id, 13, &last, &n);
    CHECK_INT(n, 2);
    CHECK_INT(last, 5000);
    free(entries);
    usage_free(u);
}
