/*
 * store.c — tokend's durable state in RocksDB; the layout of the column
 * families is in store.h.
 *
 * This file owns everything that touches RocksDB: the options (one LRU
 * block cache shared by every column family, bloom filters where lookups
 * are by exact key, index and filter blocks charged to that cache so memory
 * stays bounded however many tokens there are), which keys and values go
 * to which family, and the translation of RocksDB's errptr strings into
 * tokend statuses. It is the only file that includes rocksdb/c.h. The bytes
 * of records, index keys and cursors are record.c's, which it calls. It
 * knows nothing of RPC, crypto or the clock: callers pass digests and
 * times in.
 *
 * Write batches are recorded here as a plain list of operations and turned
 * into a rocksdb_writebatch_t only at commit, because store_batch_new()
 * takes no store and RocksDB needs the store's column family handles to
 * build a batch.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "error.h"
#include "record.h"
#include "tokend.h"

/* Tuning. The aim is a small, bounded footprint (tokend under 200 MB with
 * a million tokens): a 32 MiB block cache that also holds the index and
 * filter blocks, and at most 64 MiB of memtables across all families. */
#define STORE_DEFAULT_CACHE_BYTES ((size_t)32 << 20)
/* All memtables together (store_options.memtable_bytes, --memtable-mb);
 * a family's own write buffer is a share of it: the tokens family a
 * quarter, each index family an eighth, meta a 64th, so that each flushes
 * at its own size well before the total is reached. */
#define STORE_DEFAULT_MEMTABLE_BYTES ((size_t)64 << 20)
#define STORE_TOKENS_SHARE 4
#define STORE_INDEX_SHARE 8
#define STORE_META_SHARE 64
#define STORE_MAX_TOTAL_WAL_BYTES ((uint64_t)64 << 20)
#define STORE_MAX_OPEN_FILES 256
#define STORE_BLOOM_BITS_PER_KEY 10.0
#define STORE_CACHE_MIN_SHARD_BYTES ((size_t)8 << 20)
#define STORE_CACHE_MAX_SHARD_BITS 4
/* RocksDB's InfoLogLevel HEADER_LEVEL: its LOG file gets the options and
 * file summary written at open, and nothing at run time (see
 * database_options). */
#define STORE_INFO_LOG_HEADER_ONLY 5
/* Free space the data dir must have for the store to be opened for
 * writing: room for what RocksDB writes at open, with a wide margin. */
#define STORE_MIN_FREE_BYTES ((unsigned long long)4 << 20)

#define STORE_SCHEMA_VERSION "1"
/* Tombstones and seen networks, unless store_options says otherwise. */
#define STORE_DEFAULT_RETENTION_MS ((int64_t)30 * 24 * 3600 * 1000)
#define STORE_ABILITY_ADMIN "tokend:admin"

/* Column families, in the order of their handles in struct store. */
enum {
    CF_META,
    CF_TOKENS,
    CF_IDS,
    CF_OWNERS,
    CF_USAGE,
    CF_EVENTS,
    CF_EVENT_INDEX,
    CF_SERIES,
    CF_TOMBSTONES,
    CF_NETWORKS,
    CF_COUNT
};

/* Families added after the first release (the audit log's, record.h has
 * their keys; the usage series'; the alerts' tombstones and networks): a
 * store made before them gets them at its first read-write open. */
static bool family_optional(int c) {
    return c == CF_EVENTS || c == CF_EVENT_INDEX || c == CF_SERIES ||
           c == CF_TOMBSTONES || c == CF_NETWORKS;
}

/* The owners whose token counts are cached (store_batch_owner_count):
 * slots of a direct-mapped table, an owner in the slot its hash names. */
#define STORE_COUNT_SLOTS 1024

typedef struct owner_count {
    bool used;
    uint64_t count; /* committed tokens of `owner` */
    char owner[TOKEN_OWNER_MAX + 1];
} owner_count;

_Static_assert(CF_COUNT == STORE_FAMILIES, "STORE_FAMILIES is the number of families");

static const char *const cf_names[CF_COUNT] = {
    "default", "tokens",      "ids",    "owners",     "usage",
    "events",  "event_index", "series", "tombstones", "networks"};

/* The compaction filter of a family whose values begin with a be64 Unix
 * ms time (tombstones: revoked; networks: last seen): an entry older than
 * `retention_ms` is dropped when its table is compacted. Readers check
 * the age too, so an entry no compaction has reached yet is ignored. */
typedef struct age_filter {
    int64_t retention_ms;
    const char *name;
} age_filter;

struct store {
    rocksdb_t *db;
    rocksdb_column_family_handle_t *cf[CF_COUNT];
    rocksdb_cache_t *cache;
    age_filter tombstone_age, network_age;
    rocksdb_compactionfilter_t *tombstone_filter, *network_filter;
    size_t memtable_bytes;            /* all memtables together */
    rocksdb_readoptions_t *read_opts; /* shared by every point read */
    rocksdb_writeoptions_t *write_sync;
    rocksdb_writeoptions_t *write_nosync;
    bool read_only;
    /* Reads and commits hold it shared; store_reopen exclusive, while it
     * swaps the database handle. */
    pthread_rwlock_t swap;
    char *dir;
    /* A commit failed since the last open: RocksDB may hold its WAL in an
     * error state, so close must not flush (see store_reopen). */
    atomic_bool write_failed;
    /* The owner count cache, allocated on first use, and a generation
     * that every commit changing counts (and every reopen) moves on, so
     * that a count read before a commit is not cached after it. */
    pthread_mutex_t count_lock;
    owner_count *counts;
    uint64_t count_generation;
    /* The audit log's head: the last committed event's seq (0: none) and
     * hash, loaded at open and moved on by each commit that appends
     * events. Written by the committing thread only; the seq is atomic
     * so that readers (ListEvents) may ask for it. */
    _Atomic uint64_t ev_seq;
    uint8_t ev_hash[RECORD_EVENT_HASH_LEN];
    /* Drops series buckets past their retention when RocksDB compacts the
     * series family; it must outlive the database, so it is the store's.
     * keep_ms: [0] minute buckets, [1] hour buckets. */
    rocksdb_compactionfilter_t *series_filter;
    int64_t series_keep_ms[2];
};

/* A batch is a byte log of operations, never stored: op, cf, key length,
 * key, and for a put value length and value, each length a uint32_t in
 * host order. */
enum { OP_PUT = 1, OP_DELETE = 2 };

/* The batch's index, so that reads through the batch (store_batch_get_*)
 * cost a hash lookup rather than a walk of the log: for each key of the
 * tokens, ids and owners families the batch touches, the offset of its
 * latest operation; and for each owner whose tokens it adds or removes,
 * the difference in their count. Open addressing, at most half full. */
enum { SLOT_EMPTY = 0, SLOT_COUNT = 0x80 }; /* else 1 + the op's family */

typedef struct batch_slot {
    uint8_t tag;
    uint32_t hash;
    size_t at;     /* an op: its offset in the log; a count: its owner's in names */
    int64_t delta; /* a count: tokens put less tokens deleted */
} batch_slot;

#define BATCH_SLOTS_MIN 64
#define BATCH_SLOTS_KEEP 4096 /* a clear frees a bigger index, not wipes it */

struct store_batch {
    uint8_t *log;
    size_t len;
    size_t cap;
    size_t count; /* store_batch_* calls that added operations */
    /* TOKEND_OK, or the status commit must return and why: the first
     * operation that could not be added. */
    tokend_error failure;
    batch_slot *slots;
    size_t slot_cap, slot_used;
    char *names; /* owners of the count slots, each NUL-terminated */
    size_t names_len, names_cap;
    /* The audit log's head through the batch, once it appends an event;
     * the store's head takes it only if the batch commits. */
    bool ev_set;
    uint64_t ev_seq;
    uint8_t ev_hash[RECORD_EVENT_HASH_LEN];
};

/* One operation of a batch's log, as batch_read_op reads it. */
typedef struct batch_op_view {
    size_t at; /* its offset in the log */
    int op;    /* OP_PUT or OP_DELETE */
    int cf;
    const char *key, *val; /* val: NULL for a delete */
    size_t klen, vlen;
} batch_op_view;

/* ---------- the admin index ---------- */

/* Every token with the tokend:admin ability has a meta key "admin\0" +
 * its id, whose value is its expiry (be64 Unix ms, 0: never), written and
 * deleted with the token in the same batch. Admin tokens are few, so
 * counting the valid ones (store_batch_admins_valid) is a short scan of
 * these keys, and the refusal to revoke the last one is decided in the
 * writer's order like every other write. A store made before the index
 * gets it built once, at its first read-write open (admin_index_build). */
#define ADMIN_KEY_PREFIX "admin\0"
#define ADMIN_KEY_PREFIX_LEN 6
#define ADMIN_KEY_LEN (ADMIN_KEY_PREFIX_LEN + TOKEN_ID_LEN)
#define ADMIN_INDEXED_KEY "admin_index"

static void put_be64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static bool admin_key_is(const void *key, size_t klen) {
    return klen == ADMIN_KEY_LEN &&
           memcmp(key, ADMIN_KEY_PREFIX, ADMIN_KEY_PREFIX_LEN) == 0;
}

static void admin_key(const char *id, uint8_t out[ADMIN_KEY_LEN]) {
    memcpy(out, ADMIN_KEY_PREFIX, ADMIN_KEY_PREFIX_LEN);
    memcpy(out + ADMIN_KEY_PREFIX_LEN, id, TOKEN_ID_LEN);
}

static bool record_is_admin(const token_record *rec) {
    return token_ability_granted(rec->abilities, rec->n_abilities, STORE_ABILITY_ADMIN);
}

/* ---------- errors ---------- */

/* Copies RocksDB's message `in` into out[size] with each absolute path cut
 * to its file name ("While appending to file: /srv/tokend/data/000009.log:
 * Read-only file system" keeps "000009.log"). The data dir is in tokend's
 * start-up line; what matters here is the reason RocksDB puts last, which a
 * long path would otherwise push past the end of a tokend_error. */
static void shorten_paths(const char *in, char *out, size_t size) {
    size_t n = 0;
    while (*in != '\0' && n + 1 < size) {
        bool path_start = *in == '/' && (n == 0 || out[n - 1] == ' ');
        if (path_start) {
            const char *end = in + strcspn(in, ": ");
            const char *base = end;
            while (base > in && base[-1] != '/') {
                base--;
            }
            in = base;
        }
        out[n++] = *in++;
    }
    out[n] = '\0';
}

/* Translates a RocksDB errptr at the boundary: its text (paths cut to file
 * names), prefixed with what we were doing, goes into *err, and RocksDB's
 * string is freed. Always TOKEND_STORAGE_ERROR. */
static int storage_error(char *rocks_err, const char *what, tokend_error *err) {
    char text[sizeof err->message];
    shorten_paths(rocks_err != NULL ? rocks_err : "unknown error", text, sizeof text);
    error_set(err, TOKEND_STORAGE_ERROR, "%s: %s", what, text);
    rocksdb_free(rocks_err);
    return TOKEND_STORAGE_ERROR;
}

/* Ends a scan: destroys `it` and returns `rv`, or, when the scan went well
 * but the iterator met an error, that error as TOKEND_STORAGE_ERROR
 * ("`what`: ..."). The first failure is the one reported. */
static int iter_close(rocksdb_iterator_t *it, int rv, const char *what,
                      tokend_error *err) {
    char *rocks_err = NULL;
    rocksdb_iter_get_error(it, &rocks_err);
    rocksdb_iter_destroy(it);
    if (rocks_err == NULL) {
        return rv;
    }
    if (rv != TOKEND_OK) {
        rocksdb_free(rocks_err);
        return rv;
    }
    return storage_error(rocks_err, what, err);
}

/* ---------- open and close ---------- */

/* The shared block cache, in few large shards. RocksDB's default splits
 * 32 MiB into 64 shards of 512 KiB, and a shard that small cannot keep a
 * table's index and filter blocks: measured with a million tokens, every
 * lookup then re-read them (about 140 us a get, hit or miss, against
 * 12-17 us with shards of 8 MiB or more). */
static rocksdb_cache_t *block_cache_create(size_t capacity) {
    int shard_bits = 0;
    while (shard_bits < STORE_CACHE_MAX_SHARD_BITS &&
           (capacity >> (shard_bits + 1)) >= STORE_CACHE_MIN_SHARD_BYTES) {
        shard_bits++;
    }
    rocksdb_lru_cache_options_t *lru = rocksdb_lru_cache_options_create();
    rocksdb_lru_cache_options_set_capacity(lru, capacity);
    rocksdb_lru_cache_options_set_num_shard_bits(lru, shard_bits);
    rocksdb_cache_t *cache = rocksdb_cache_create_lru_opts(lru);
    rocksdb_lru_cache_options_destroy(lru);
    return cache;
}

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static unsigned char age_filter_drop(void *state, int level, const char *key,
                                     size_t key_len, const char *value, size_t value_len,
                                     char **new_value, size_t *new_value_len,
                                     unsigned char *value_changed) {
    (void)level, (void)key, (void)key_len, (void)new_value, (void)new_value_len;
    const age_filter *f = state;
    *value_changed = 0;
    if (value_len < 8) {
        return 1; /* not an entry of ours */
    }
    int64_t at = (int64_t)get_be64((const uint8_t *)value);
    return at + f->retention_ms < wall_ms() ? 1 : 0;
}

static const char *age_filter_name(void *state) {
    return ((const age_filter *)state)->name;
}

static void age_filter_state_free(void *state) {
    (void)state; /* part of struct store */
}

static rocksdb_compactionfilter_t *age_filter_create(age_filter *f) {
    return rocksdb_compactionfilter_create(f, age_filter_state_free, age_filter_drop,
                                           age_filter_name);
}

/* Options for one column family (or, for CF_META, the database as a
 * whole): shared cache, lz4 (cheap; a token record's text compresses, its
 * random keys do not), and a bloom filter where `bloom`. Index and filter
 * blocks live in the block cache, so their memory is bounded by it however
 * many tokens there are. They are whole per table, not partitioned:
 * measured at 1 and 5 million tokens with a 32 MiB cache, whole blocks
 * stayed cached and lookups were faster (hit 13 us, miss 3 us with data
 * blocks from the page cache, against 18 and 5 us partitioned). Far
 * beyond that, when the blocks of all tables outgrow the cache, the
 * change to make is a two-level index with partition_filters and
 * pin_top_level_index_and_filter. The returned options own their table
 * factory. */
static rocksdb_options_t *family_options(rocksdb_cache_t *cache, bool bloom,
                                         size_t write_buffer_bytes) {
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_compression(o, rocksdb_lz4_compression);
    rocksdb_options_set_write_buffer_size(o, write_buffer_bytes);
    rocksdb_options_set_max_write_buffer_number(o, 2);
    rocksdb_options_set_level_compaction_dynamic_level_bytes(o, 1);

    rocksdb_block_based_table_options_t *t = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(t, cache);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(t, 1);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks_with_high_priority(t,
                                                                                     1);
    rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(t, 1);
    if (bloom) {
        /* The table options take ownership of the policy. */
        rocksdb_block_based_options_set_filter_policy(
            t, rocksdb_filterpolicy_create_bloom_full(STORE_BLOOM_BITS_PER_KEY));
    }
    rocksdb_options_set_block_based_table_factory(o, t);
    rocksdb_block_based_options_destroy(t);
    return o;
}

/* Settings that belong to the database rather than a family. */
static void database_options(rocksdb_options_t *o, bool create, bool read_only,
                             size_t memtable_bytes) {
    rocksdb_options_set_create_if_missing(o, create);
    /* The audit log's families are added to an older store when it is
     * opened for writing; check_families refuses any other one missing. */
    rocksdb_options_set_create_missing_column_families(o, create || !read_only);
    rocksdb_options_set_max_open_files(o, STORE_MAX_OPEN_FILES);
    rocksdb_options_set_db_write_buffer_size(o, memtable_bytes);
    /* Families written rarely (meta) would otherwise pin old WAL files. */
    rocksdb_options_set_max_total_wal_size(o, STORE_MAX_TOTAL_WAL_BYTES);
    rocksdb_options_set_max_background_jobs(o, 2);
    rocksdb_options_set_keep_log_file_num(o, 4);
    rocksdb_options_set_max_log_file_size(o, (size_t)4 << 20);
    /* Debian's librocksdb is built with assertions, and RocksDB 7.8's file
     * writer asserts if a file is written again after a failed write. Its
     * LOG lives in the data dir, so with the disk full the second line it
     * logs (and it logs every failure) aborts tokend. So the LOG file gets
     * only what RocksDB writes at open; tokend logs storage errors itself. */
    rocksdb_options_set_info_log_level(o, STORE_INFO_LOG_HEADER_ONLY);
}

/* True if `dir` holds a RocksDB database (its CURRENT file). */
static bool store_exists(const char *dir) {
    char *path = NULL;
    if (asprintf(&path, "%s/CURRENT", dir) < 0) {
        return false;
    }
    struct stat sb;
    bool exists = stat(path, &sb) == 0;
    free(path);
    return exists;
}

/* Checks the column families an existing store has: none unknown to this
 * version (RocksDB would make us open them all), and, unless we may
 * create them, all of ours present. */
static int check_families(const char *dir, bool create, bool read_only,
                          tokend_error *err) {
    rocksdb_options_t *o = rocksdb_options_create();
    char *rocks_err = NULL;
    size_t n = 0;
    char **names = rocksdb_list_column_families(o, dir, &n, &rocks_err);
    rocksdb_options_destroy(o);
    if (rocks_err != NULL) {
        return storage_error(rocks_err, "listing column families", err);
    }
    int rv = TOKEND_OK;
    bool have[CF_COUNT] = {false};
    for (size_t i = 0; i < n && rv == TOKEND_OK; i++) {
        bool known = false;
        for (int c = 0; c < CF_COUNT; c++) {
            if (strcmp(names[i], cf_names[c]) == 0) {
                have[c] = known = true;
            }
        }
        if (!known) {
            rv = error_set(err, TOKEND_STORAGE_ERROR,
                           "%s has column family \"%s\", unknown to this tokend", dir,
                           names[i]);
        }
    }
    for (int c = 0; c < CF_COUNT && rv == TOKEND_OK; c++) {
        if (!have[c] && !create && (read_only || !family_optional(c))) {
            rv = error_set(err, TOKEND_STORAGE_ERROR,
                           "%s is not a complete tokend store (no column family \"%s\")",
                           dir, cf_names[c]);
        }
    }
    rocksdb_list_column_families_destroy(names, n);
    return rv;
}

/* Point read of key in family `cf`. TOKEND_OK with *value set (destroy
 * it), TOKEND_NOT_FOUND (err untouched), or TOKEND_STORAGE_ERROR. */
static int get_raw(store *st, const rocksdb_readoptions_t *ro, int cf, const void *key,
                   size_t klen, rocksdb_pinnableslice_t **value, tokend_error *err) {
    char *rocks_err = NULL;
    *value = rocksdb_get_pinned_cf(st->db, ro, st->cf[cf], key, klen, &rocks_err);
    if (rocks_err != NULL) {
        rocksdb_pinnableslice_destroy(*value);
        *value = NULL;
        char what[64];
        snprintf(what, sizeof(what), "reading %s", cf_names[cf]);
        return storage_error(rocks_err, what, err);
    }
    return *value != NULL ? TOKEND_OK : TOKEND_NOT_FOUND;
}

/* The schema marker: written into a new store, checked in an old one so
 * that a store from a future layout is refused rather than misread. */
static int check_schema(store *st, tokend_error *err) {
    rocksdb_pinnableslice_t *v = NULL;
    int rv = get_raw(st, st->read_opts, CF_META, "schema", 6, &v, err);
    if (rv == TOKEND_NOT_FOUND) {
        if (st->read_only) {
            return TOKEND_OK;
        }
        char *rocks_err = NULL;
        rocksdb_put_cf(st->db, st->write_sync, st->cf[CF_META], "schema", 6,
                       STORE_SCHEMA_VERSION, strlen(STORE_SCHEMA_VERSION), &rocks_err);
        if (rocks_err != NULL) {
            return storage_error(rocks_err, "writing the schema version", err);
        }
        return TOKEND_OK;
    }
    if (rv != TOKEND_OK) {
        return rv;
    }
    size_t len = 0;
    const char *val = rocksdb_pinnableslice_value(v, &len);
    if (len != strlen(STORE_SCHEMA_VERSION) ||
        memcmp(val, STORE_SCHEMA_VERSION, len) != 0) {
        rv =
            error_set(err, TOKEND_STORAGE_ERROR,
                      "store schema \"%.*s\" is not supported (this tokend reads \"%s\")",
                      (int)(len < 16 ? len : 16), val, STORE_SCHEMA_VERSION);
    }
    rocksdb_pinnableslice_destroy(v);
    return rv;
}

/* Builds the admin index of a store made before it (no meta
 * "admin_index"): one scan of every token, then the admin keys and the
 * marker in one synced write. A store from this version has the marker
 * from its first open, when it is still empty. */
static int admin_index_build(store *st, tokend_error *err) {
    rocksdb_pinnableslice_t *v = NULL;
    int rv = get_raw(st, st->read_opts, CF_META, ADMIN_INDEXED_KEY,
                     strlen(ADMIN_INDEXED_KEY), &v, err);
    rocksdb_pinnableslice_destroy(v);
    if (rv != TOKEND_NOT_FOUND) {
        return rv;
    }
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(st->db, st->read_opts, st->cf[CF_TOKENS]);
    rv = TOKEND_OK;
    for (rocksdb_iter_seek_to_first(it); rv == TOKEND_OK && rocksdb_iter_valid(it);
         rocksdb_iter_next(it)) {
        size_t len = 0;
        const char *val = rocksdb_iter_value(it, &len);
        token_record rec;
        rv = record_decode((const uint8_t *)val, len, &rec, err);
        if (rv == TOKEND_OK && record_is_admin(&rec)) {
            uint8_t akey[ADMIN_KEY_LEN], aval[8];
            admin_key(rec.id, akey);
            put_be64(aval, (uint64_t)rec.expires_ms);
            rocksdb_writebatch_put_cf(wb, st->cf[CF_META], (const char *)akey,
                                      sizeof(akey), (const char *)aval, sizeof(aval));
        }
        if (rv == TOKEND_OK) {
            token_record_free(&rec);
        }
    }
    rv = iter_close(it, rv, "building the admin index", err);
    char *rocks_err = NULL;
    if (rv == TOKEND_OK) {
        rocksdb_writebatch_put_cf(wb, st->cf[CF_META], ADMIN_INDEXED_KEY,
                                  strlen(ADMIN_INDEXED_KEY), "1", 1);
        rocksdb_write(st->db, st->write_sync, wb, &rocks_err);
        if (rocks_err != NULL) {
            rv = storage_error(rocks_err, "writing the admin index", err);
        }
    }
    rocksdb_writebatch_destroy(wb);
    return rv;
}

/* Refuses to open for writing (or reopen) with less than
 * STORE_MIN_FREE_BYTES free in `dir`: opening writes a new LOG, OPTIONS
 * file, MANIFEST and WAL, and a write failing half-way through the LOG
 * aborts tokend (see database_options). */
static int check_free_space(const char *dir, tokend_error *err) {
    struct statvfs vfs;
    if (statvfs(dir, &vfs) != 0) {
        return error_set(err, TOKEND_STORAGE_ERROR, "cannot check free space in %s: %s",
                         dir, strerror(errno));
    }
    unsigned long long free_bytes =
        (unsigned long long)vfs.f_bavail * (unsigned long long)vfs.f_frsize;
    if (free_bytes < STORE_MIN_FREE_BYTES) {
        return error_set(err, TOKEND_STORAGE_ERROR,
                         "%s has %llu KiB free; the store needs at least %llu KiB to be "
                         "opened for writing",
                         dir, free_bytes >> 10,
                         (unsigned long long)STORE_MIN_FREE_BYTES >> 10);
    }
    return TOKEND_OK;
}

/* ---------- series retention ---------- */

/* A bucket's retention by its step: (minute, hour); 0 keeps it. */
static int64_t series_keep(const store *st, series_step step) {
    return st->series_keep_ms[step == SERIES_HOUR ? 1 : 0];
}

int64_t store_series_oldest(const store *st, series_step step, int64_t now_ms) {
    int64_t keep = series_keep(st, step);
    return keep > 0 ? now_ms - keep : INT64_MIN;
}

/* RocksDB's compaction filter of the series family: drops a bucket whose
 * start is past its step's retention. Retention costs the writer nothing
 * this way, and it reaches every series, also those of tokens and owners
 * long idle, which deletes by the writer would have to scan for. Readers
 * filter by the same cut (store_series_oldest), so a bucket compaction
 * has not reached yet is not shown either. Runs on RocksDB's threads. */
static unsigned char series_filter(void *state, int level, const char *key, size_t klen,
                                   const char *val, size_t vlen, char **new_val,
                                   size_t *new_vlen, unsigned char *changed) {
    (void)level, (void)val, (void)vlen, (void)new_val, (void)new_vlen;
    *changed = 0;
    const store *st = state;
    int64_t start = 0;
    series_step step;
    if (!record_series_key_parse((const uint8_t *)key, klen, &start, &step)) {
        return 0;
    }
    return start < store_series_oldest(st, step, wall_ms());
}

/* RocksDB calls a filter's destructor without checking it; the state is
 * the store, which frees itself. */
static void series_filter_state_free(void *state) {
    (void)state;
}

static const char *series_filter_name(void *state) {
    (void)state;
    return "tokend.series_retention";
}

/* Opens st->db and st->cf on st->dir: for reading only if st->read_only,
 * else read-write (creating the missing families if `create`). */
static int db_open(store *st, bool create, tokend_error *err) {
    rocksdb_options_t *fam[CF_COUNT];
    size_t mem = st->memtable_bytes;
    fam[CF_META] = family_options(st->cache, false, mem / STORE_META_SHARE);
    fam[CF_TOKENS] = family_options(st->cache, true, mem / STORE_TOKENS_SHARE);
    fam[CF_IDS] = family_options(st->cache, true, mem / STORE_INDEX_SHARE);
    fam[CF_OWNERS] = family_options(st->cache, false, mem / STORE_INDEX_SHARE);
    fam[CF_USAGE] = family_options(st->cache, false, mem / STORE_INDEX_SHARE);
    fam[CF_EVENTS] = family_options(st->cache, false, mem / STORE_INDEX_SHARE);
    fam[CF_EVENT_INDEX] = family_options(st->cache, false, mem / STORE_INDEX_SHARE);
    fam[CF_SERIES] = family_options(st->cache, false, mem / STORE_INDEX_SHARE);
    rocksdb_options_set_compaction_filter(fam[CF_SERIES], st->series_filter);
    fam[CF_TOMBSTONES] = family_options(st->cache, true, mem / STORE_INDEX_SHARE);
    fam[CF_NETWORKS] = family_options(st->cache, false, mem / STORE_INDEX_SHARE);
    rocksdb_options_set_compaction_filter(fam[CF_TOMBSTONES], st->tombstone_filter);
    rocksdb_options_set_compaction_filter(fam[CF_NETWORKS], st->network_filter);
    database_options(fam[CF_META], create, st->read_only, mem);

    char *rocks_err = NULL;
    if (st->read_only) {
        st->db = rocksdb_open_for_read_only_column_families(
            fam[CF_META], st->dir, CF_COUNT, cf_names,
            (const rocksdb_options_t *const *)fam, st->cf, 0, &rocks_err);
    } else {
        st->db = rocksdb_open_column_families(fam[CF_META], st->dir, CF_COUNT, cf_names,
                                              (const rocksdb_options_t *const *)fam,
                                              st->cf, &rocks_err);
    }
    for (int c = 0; c < CF_COUNT; c++) {
        rocksdb_options_destroy(fam[c]);
    }
    if (rocks_err != NULL) {
        st->db = NULL;
        for (int c = 0; c < CF_COUNT; c++) {
            st->cf[c] = NULL;
        }
        /* RocksDB's file lock: "While lock file: DIR/LOCK: Resource
         * temporarily unavailable" from another process, "lock hold by
         * current process" from this one. */
        if (strstr(rocks_err, "lock file") != NULL ||
            strstr(rocks_err, "lock hold") != NULL) {
            rocksdb_free(rocks_err);
            return error_set(err, TOKEND_UNAVAILABLE,
                             "the data dir %s is in use by another process (its LOCK "
                             "file is held)",
                             st->dir);
        }
        char what[256];
        snprintf(what, sizeof(what), "opening %s", st->dir);
        return storage_error(rocks_err, what, err);
    }
    return TOKEND_OK;
}

/* Closes st->db, flushing the memtables first if `flush`. Never flush after
 * a failed commit: RocksDB's flush first writes out the WAL's buffer, and
 * a WAL file whose write failed is one RocksDB 7.8 asserts on. Closing
 * without a flush loses nothing: the next open replays the WAL. */
static void db_close(store *st, bool flush) {
    if (st->db != NULL && flush) {
        rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
        rocksdb_flushoptions_set_wait(fo, 1);
        for (int c = 0; c < CF_COUNT; c++) {
            char *err = NULL;
            rocksdb_flush_cf(st->db, fo, st->cf[c], &err);
            rocksdb_free(err);
        }
        rocksdb_flushoptions_destroy(fo);
    }
    for (int c = 0; c < CF_COUNT; c++) {
        if (st->cf[c] != NULL) {
            rocksdb_column_family_handle_destroy(st->cf[c]);
            st->cf[c] = NULL;
        }
    }
    if (st->db != NULL) {
        rocksdb_close(st->db);
        st->db = NULL;
    }
}

/* Reads the audit log's head: the last key of the events family and the
 * hash its value ends with. */
static int event_head_load(store *st, tokend_error *err) {
    atomic_store(&st->ev_seq, 0);
    memset(st->ev_hash, 0, sizeof(st->ev_hash));
    rocksdb_iterator_t *it =
        rocksdb_create_iterator_cf(st->db, st->read_opts, st->cf[CF_EVENTS]);
    rocksdb_iter_seek_to_last(it);
    int rv = TOKEND_OK;
    if (rocksdb_iter_valid(it)) {
        size_t klen = 0, vlen = 0;
        const uint8_t *key = (const uint8_t *)rocksdb_iter_key(it, &klen);
        const uint8_t *val = (const uint8_t *)rocksdb_iter_value(it, &vlen);
        uint64_t seq = record_event_key_seq(key, klen);
        if (seq == 0 || !record_event_hash(val, vlen, st->ev_hash)) {
            rv =
                error_set(err, TOKEND_INTERNAL,
                          "the audit log's last event does not decode (%zu bytes)", vlen);
        } else {
            atomic_store(&st->ev_seq, seq);
        }
    }
    return iter_close(it, rv, "reading the audit log's head", err);
}

/* Opening is: refuse a missing store unless creating; check the families
 * on disk; open them all with their options (creating the missing ones if
 * allowed); check or write the schema marker. Any failure unwinds
 * through store_close, which copes with a half-built store. */
int store_open(const char *dir, const store_options *opts, store **out,
               tokend_error *err) {
    if (out != NULL) {
        *out = NULL;
    }
    if (dir == NULL || *dir == '\0' || out == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "store_open: no directory given");
    }
    store_options defaults = {0};
    if (opts == NULL) {
        opts = &defaults;
    }
    if (opts->create_if_missing && opts->read_only) {
        return error_set(
            err, TOKEND_INVALID_ARGUMENT,
            "store_open: create_if_missing and read_only exclude each other");
    }
    bool create = opts->create_if_missing;
    bool exists = store_exists(dir);
    if (!exists && !create) {
        return error_set(err, TOKEND_NOT_FOUND, "no tokend store in %s (run tokend init)",
                         dir);
    }
    if (exists) {
        int rv = check_families(dir, create, opts->read_only, err);
        if (rv != TOKEND_OK) {
            return rv;
        }
    } else if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        /* Made here, not by RocksDB, so that it is private (0700). */
        return error_set(err, TOKEND_STORAGE_ERROR, "cannot create %s: %s", dir,
                         strerror(errno));
    }

    if (!opts->read_only) {
        int rv = check_free_space(dir, err);
        if (rv != TOKEND_OK) {
            return rv;
        }
    }

    store *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        return error_set(err, TOKEND_INTERNAL, "out of memory opening the store");
    }
    /* Writer-preferring: under a steady stream of reads a reopen would
     * otherwise wait for a moment with no reader at all. (No thread takes
     * the read lock twice, as this kind requires.) */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&st->swap, &attr);
    pthread_rwlockattr_destroy(&attr);
    pthread_mutex_init(&st->count_lock, NULL);
    st->dir = strdup(dir);
    st->read_only = opts->read_only;
    st->cache =
        block_cache_create(opts->block_cache_bytes != 0 ? opts->block_cache_bytes
                                                        : STORE_DEFAULT_CACHE_BYTES);
    st->memtable_bytes =
        opts->memtable_bytes != 0 ? opts->memtable_bytes : STORE_DEFAULT_MEMTABLE_BYTES;
    st->series_keep_ms[0] = opts->series_minute_keep_ms;
    st->series_keep_ms[1] = opts->series_hour_keep_ms;
    st->series_filter = rocksdb_compactionfilter_create(
        st, series_filter_state_free, series_filter, series_filter_name);
    st->tombstone_age =
        (age_filter){opts->tombstone_retention_ms != 0 ? opts->tombstone_retention_ms
                                                       : STORE_DEFAULT_RETENTION_MS,
                     "tokend.tombstone_age"};
    st->network_age =
        (age_filter){opts->network_history_ms != 0 ? opts->network_history_ms
                                                   : STORE_DEFAULT_RETENTION_MS,
                     "tokend.network_age"};
    st->tombstone_filter = age_filter_create(&st->tombstone_age);
    st->network_filter = age_filter_create(&st->network_age);
    st->read_opts = rocksdb_readoptions_create();
    st->write_sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(st->write_sync, 1);
    st->write_nosync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(st->write_nosync, 0);

    int rv = st->dir != NULL
                 ? db_open(st, create, err)
                 : error_set(err, TOKEND_INTERNAL, "out of memory opening the store");
    if (rv == TOKEND_OK) {
        rv = check_schema(st, err);
    }
    if (rv == TOKEND_OK && !st->read_only) {
        rv = admin_index_build(st, err);
    }
    if (rv == TOKEND_OK) {
        rv = event_head_load(st, err);
    }
    if (rv != TOKEND_OK) {
        st->read_only = true; /* nothing to flush */
        store_close(st);
        return rv;
    }
    *out = st;
    return TOKEND_OK;
}

/* Flushing first means the next open replays no WAL. A failed flush loses
 * nothing (the WAL still holds the writes), so it is not reported. After a
 * failed commit there is no flush: see db_close. */
void store_close(store *st) {
    if (st == NULL) {
        return;
    }
    db_close(st, !st->read_only && !atomic_load(&st->write_failed));
    rocksdb_readoptions_destroy(st->read_opts);
    rocksdb_writeoptions_destroy(st->write_sync);
    rocksdb_writeoptions_destroy(st->write_nosync);
    if (st->cache != NULL) {
        rocksdb_cache_destroy(st->cache);
    }
    if (st->series_filter != NULL) {
        rocksdb_compactionfilter_destroy(st->series_filter);
    }
    if (st->tombstone_filter != NULL) {
        rocksdb_compactionfilter_destroy(st->tombstone_filter);
    }
    if (st->network_filter != NULL) {
        rocksdb_compactionfilter_destroy(st->network_filter);
    }
    pthread_rwlock_destroy(&st->swap);
    pthread_mutex_destroy(&st->count_lock);
    free(st->counts);
    free(st->dir);
    free(st);
}

/* Forgets every cached count: after a reopen the WAL's replay decides
 * what is stored (a failed commit's write may yet have reached it). */
static void counts_forget(store *st) {
    pthread_mutex_lock(&st->count_lock);
    if (st->counts != NULL) {
        memset(st->counts, 0, STORE_COUNT_SLOTS * sizeof(*st->counts));
    }
    st->count_generation++;
    pthread_mutex_unlock(&st->count_lock);
}

/* Recovery after a failed write. RocksDB 7.8 answers every write after a
 * failed WAL write or flush with that error (its "background error"). For
 * a full disk it resumes by itself once enough space is free, but if no
 * memtable held data at that moment it keeps writing to the WAL file
 * whose write failed, and Debian's build (with assertions) then aborts.
 * A read-only file system it does not resume from at all, and the C API
 * has no rocksdb_resume. Closing the database and opening it again always
 * works: the open replays the WAL up to the torn record of the failed
 * write (point-in-time recovery) and starts a new WAL. */
int store_reopen(store *st, tokend_error *err) {
    if (st == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "store_reopen: NULL argument");
    }
    int rv = check_free_space(st->dir, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    counts_forget(st);
    pthread_rwlock_wrlock(&st->swap);
    db_close(st, false);
    atomic_store(&st->write_failed, false);
    st->read_only = false;
    rv = db_open(st, false, err);
    if (rv != TOKEND_OK) {
        /* Reads go on from a read-only instance; the next reopen retries. */
        st->read_only = true;
        (void)db_open(st, false, NULL);
    }
    if (rv == TOKEND_OK) {
        rv = event_head_load(st, err);
    }
    pthread_rwlock_unlock(&st->swap);
    return rv;
}

int store_probe_writable(store *st, tokend_error *err) {
    if (st == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "store_probe_writable: NULL argument");
    }
    int rv = check_free_space(st->dir, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    char *path = NULL;
    if (asprintf(&path, "%s/.tokend-probe", st->dir) < 0) {
        return error_set(err, TOKEND_INTERNAL, "out of memory probing %s", st->dir);
    }
    static const char block[4096];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write(fd, block, sizeof(block)) == (ssize_t)sizeof(block) &&
              fsync(fd) == 0;
    int saved = errno;
    if (fd >= 0) {
        close(fd);
    }
    unlink(path);
    free(path);
    if (!ok) {
        return error_set(err, TOKEND_STORAGE_ERROR, "%s does not take writes: %s",
                         st->dir, saved != 0 ? strerror(saved) : "short write");
    }
    return TOKEND_OK;
}

bool store_write_failed(store *st) {
    return st != NULL && atomic_load(&st->write_failed);
}

/* Readers and commits share the database handle with store_reopen. A
 * store whose reopen left no database at all answers STORAGE_ERROR. */
static int read_begin(store *st, tokend_error *err) {
    pthread_rwlock_rdlock(&st->swap);
    if (st->db == NULL) {
        pthread_rwlock_unlock(&st->swap);
        return error_set(err, TOKEND_STORAGE_ERROR,
                         "the store is closed: reopening it failed");
    }
    return TOKEND_OK;
}

static void read_end(store *st) {
    pthread_rwlock_unlock(&st->swap);
}

/* ---------- reads ---------- */

bool store_is_initialised(store *st) {
    if (st == NULL) {
        return false;
    }
    if (read_begin(st, NULL) != TOKEND_OK) {
        return false;
    }
    rocksdb_pinnableslice_t *v = NULL;
    int rv = get_raw(st, st->read_opts, CF_META, "initialised", 11, &v, NULL);
    read_end(st);
    if (rv != TOKEND_OK) {
        return false;
    }
    rocksdb_pinnableslice_destroy(v);
    return true;
}

/* Reads and decodes the record of `digest`; *encoded_len (if not NULL)
 * gets the size of its stored bytes. */
static int get_token_ro(store *st, const rocksdb_readoptions_t *ro,
                        const uint8_t digest[TOKEN_DIGEST_LEN], token_record *out,
                        size_t *encoded_len, tokend_error *err) {
    rocksdb_pinnableslice_t *v = NULL;
    int rv = get_raw(st, ro, CF_TOKENS, digest, TOKEN_DIGEST_LEN, &v, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    size_t len = 0;
    const char *val = rocksdb_pinnableslice_value(v, &len);
    if (encoded_len != NULL) {
        *encoded_len = len;
    }
    rv = record_decode((const uint8_t *)val, len, out, err);
    rocksdb_pinnableslice_destroy(v);
    return rv;
}

int store_get_token(store *st, const uint8_t digest[TOKEN_DIGEST_LEN], token_record *out,
                    tokend_error *err) {
    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    if (st == NULL || digest == NULL || out == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "store_get_token: NULL argument");
    }
    int rv = read_begin(st, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    rv = get_token_ro(st, st->read_opts, digest, out, NULL, err);
    read_end(st);
    return rv;
}

static int get_digest_ro(store *st, const rocksdb_readoptions_t *ro, const char *id,
                         size_t id_len, uint8_t digest[TOKEN_DIGEST_LEN],
                         tokend_error *err) {
    rocksdb_pinnableslice_t *v = NULL;
    int rv = get_raw(st, ro, CF_IDS, id, id_len, &v, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    size_t len = 0;
    const char *val = rocksdb_pinnableslice_value(v, &len);
    if (len == TOKEN_DIGEST_LEN) {
        memcpy(digest, val, TOKEN_DIGEST_LEN);
    } else {
        rv = error_set(err, TOKEND_INTERNAL,
                       "ids entry for %.*s holds %zu bytes, not a digest", (int)id_len,
                       id, len);
    }
    rocksdb_pinnableslice_destroy(v);
    return rv;
}

int store_get_digest(store *st, const char *id, uint8_t digest[TOKEN_DIGEST_LEN],
                     tokend_error *err) {
    if (st == NULL || id == NULL || digest == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "store_get_digest: NULL argument");
    }
    int rv = read_begin(st, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    rv = get_digest_ro(st, st->read_opts, id, strlen(id), digest, err);
    read_end(st);
    return rv;
}

int store_get_usage(store *st, const char *id, int64_t *last_used_ms, uint64_t *use_count,
                    tokend_error *err) {
    if (st == NULL || id == NULL || last_used_ms == NULL || use_count == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "store_get_usage: NULL argument");
    }
    int rv = read_begin(st, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    rocksdb_pinnableslice_t *v = NULL;
    rv = get_raw(st, st->read_opts, CF_USAGE, id, strlen(id), &v, err);
    read_end(st);
    if (rv != TOKEND_OK) {
        return rv;
    }
    size_t len = 0;
    const uint8_t *val = (const uint8_t *)rocksdb_pinnableslice_value(v, &len);
    if (!record_usage_decode(val, len, last_used_ms, use_count)) {
        rv = error_set(err, TOKEND_INTERNAL, "usage entry for %s holds %zu bytes, not %d",
                       id, len, RECORD_USAGE_LEN);
    }
    rocksdb_pinnableslice_destroy(v);
    return rv;
}

/* ---------- owner scans ---------- */

/* An iteration over one owner's index entries, from a snapshot so that
 * the ids and tokens read alongside agree with the index. The upper bound
 * owner+"\x01" is the first key past every owner+"\0"+... key, so RocksDB
 * stops at the owner's end instead of scanning into the next owner. */
typedef struct owner_scan {
    uint8_t prefix[RECORD_OWNER_KEY_MAX];
    size_t prefix_len;
    uint8_t upper[RECORD_OWNER_KEY_MAX];
    const rocksdb_snapshot_t *snap;
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
} owner_scan;

static void owner_scan_begin(store *st, owner_scan *s) {
    memcpy(s->upper, s->prefix, s->prefix_len);
    s->upper[s->prefix_len - 1] = 1;
    s->snap = rocksdb_create_snapshot(st->db);
    s->ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_snapshot(s->ro, s->snap);
    rocksdb_readoptions_set_iterate_upper_bound(s->ro, (const char *)s->upper,
                                                s->prefix_len);
    s->it = rocksdb_create_iterator_cf(st->db, s->ro, st->cf[CF_OWNERS]);
}

/* Ends the scan; returns TOKEND_STORAGE_ERROR if the iterator failed
 * (which it reports as "not valid"), else `rv`, whose detail is in *err
 * already. */
static int owner_scan_end(store *st, owner_scan *s, int rv, tokend_error *err) {
    rv = iter_close(s->it, rv, "scanning owners", err);
    rocksdb_readoptions_destroy(s->ro);
    rocksdb_release_snapshot(st->db, s->snap);
    return rv;
}

/* The id in the owners key at the iterator, or NULL (TOKEND_INTERNAL in
 * *err) if the key does not have the layout we write. */
static const char *owner_scan_id(const owner_scan *s, const uint8_t **suffix,
                                 tokend_error *err) {
    size_t klen = 0;
    const uint8_t *key = (const uint8_t *)rocksdb_iter_key(s->it, &klen);
    /* Within the scan's bounds every key starts with the owner's prefix. */
    const char *id = record_owner_suffix_id(key + s->prefix_len, klen - s->prefix_len);
    if (id == NULL) {
        error_set(err, TOKEND_INTERNAL, "owners index holds a malformed key (%zu bytes)",
                  klen);
        return NULL;
    }
    if (suffix != NULL) {
        *suffix = key + s->prefix_len;
    }
    return id;
}

int store_list_owner(store *st, const char *owner, const char *cursor, size_t limit,
                     token_record **out, size_t *n, char **next_cursor,
                     tokend_error *err) {
    return store_list_owner_within(st, owner, cursor, limit, SIZE_MAX, out, n,
                                   next_cursor, err);
}

/* Seeks to just after the cursor's entry: to the entry itself and one
 * step on if it is still there, or to whatever followed it if it was
 * deleted since. The records array grows as needed rather than being
 * sized by `limit`, which the caller may set large. After the page the
 * iterator already sits on the next entry (also when the byte budget
 * ended the page: that entry was read, then dropped), so whether it is
 * valid says whether there is a next page. */
int store_list_owner_within(store *st, const char *owner, const char *cursor,
                            size_t limit, size_t max_bytes, token_record **out, size_t *n,
                            char **next_cursor, tokend_error *err) {
    if (out != NULL) {
        *out = NULL;
    }
    if (n != NULL) {
        *n = 0;
    }
    if (next_cursor != NULL) {
        *next_cursor = NULL;
    }
    owner_scan s;
    if (st == NULL || out == NULL || n == NULL || next_cursor == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "store_list_owner: NULL argument");
    }
    s.prefix_len = record_owner_prefix(owner, s.prefix);
    if (s.prefix_len == 0 || limit == 0) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "store_list_owner: %s",
                         limit == 0 ? "limit is 0" : "bad owner");
    }
    uint8_t seek[RECORD_OWNER_KEY_MAX];
    size_t seek_len = s.prefix_len;
    memcpy(seek, s.prefix, s.prefix_len);
    if (cursor != NULL && *cursor != '\0') {
        if (!record_cursor_decode(cursor, seek + s.prefix_len)) {
            return error_set(err, TOKEND_INVALID_ARGUMENT, "list cursor does not decode");
        }
        seek_len += RECORD_OWNER_SUFFIX_LEN;
    }

    int rv = read_begin(st, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    owner_scan_begin(st, &s);
    rocksdb_iter_seek(s.it, (const char *)seek, seek_len);
    if (seek_len > s.prefix_len && rocksdb_iter_valid(s.it)) {
        size_t klen = 0;
        const char *key = rocksdb_iter_key(s.it, &klen);
        if (klen == seek_len && memcmp(key, seek, seek_len) == 0) {
            rocksdb_iter_next(s.it);
        }
    }

    token_record *recs = NULL;
    size_t count = 0, cap = 0, bytes = 0;
    uint8_t last_suffix[RECORD_OWNER_SUFFIX_LEN];
    while (rv == TOKEND_OK && count < limit && rocksdb_iter_valid(s.it)) {
        const uint8_t *suffix = NULL;
        const char *id = owner_scan_id(&s, &suffix, err);
        if (id == NULL) {
            rv = TOKEND_INTERNAL;
            break;
        }
        if (count == cap) {
            size_t ncap = cap == 0 ? (limit < 16 ? limit : 16) : cap * 2;
            ncap = ncap > limit ? limit : ncap;
            token_record *grown = realloc(recs, ncap * sizeof(*recs));
            if (grown == NULL) {
                rv = error_set(err, TOKEND_INTERNAL, "out of memory listing tokens");
                break;
            }
            recs = grown;
            cap = ncap;
        }
        uint8_t digest[TOKEN_DIGEST_LEN];
        size_t encoded = 0;
        rv = get_digest_ro(st, s.ro, id, TOKEN_ID_LEN, digest, err);
        if (rv == TOKEND_OK) {
            rv = get_token_ro(st, s.ro, digest, &recs[count], &encoded, err);
        }
        if (rv == TOKEND_OK && count > 0 &&
            (bytes >= max_bytes || encoded > max_bytes - bytes)) {
            token_record_free(&recs[count]); /* the next page's first */
            break;
        }
        bytes += encoded;
        if (rv == TOKEND_NOT_FOUND) {
            /* The batch writes all three together; a gap is corruption. */
            rv = error_set(err, TOKEND_INTERNAL,
                           "owners index names %.*s, which has no token", TOKEN_ID_LEN,
                           id);
        }
        if (rv != TOKEND_OK) {
            break;
        }
        memcpy(last_suffix, suffix, RECORD_OWNER_SUFFIX_LEN);
        count++;
        rocksdb_iter_next(s.it);
    }
    bool more = rv == TOKEND_OK && rocksdb_iter_valid(s.it);
    rv = owner_scan_end(st, &s, rv, err);
    read_end(st);
    if (rv == TOKEND_OK && more) {
        char hex[RECORD_CURSOR_LEN + 1];
        record_cursor_encode(last_suffix, hex);
        *next_cursor = strdup(hex);
        if (*next_cursor == NULL) {
            rv = error_set(err, TOKEND_INTERNAL, "out of memory listing tokens");
        }
    }
    if (rv != TOKEND_OK) {
        for (size_t i = 0; i < count; i++) {
            token_record_free(&recs[i]);
        }
        free(recs);
        return rv;
    }
    *out = recs;
    *n = count;
    return TOKEND_OK;
}

/* Appends a copy of id (TOKEN_ID_LEN characters) to *list. */
static bool id_list_add(char ***list, size_t *count, size_t *cap, const char *id) {
    if (*count == *cap) {
        size_t ncap = *cap == 0 ? 16 : *cap * 2;
        char **grown = realloc(*list, ncap * sizeof(**list));
        if (grown == NULL) {
            return false;
        }
        *list = grown;
        *cap = ncap;
    }
    char *copy = strndup(id, TOKEN_ID_LEN);
    if (copy == NULL) {
        return false;
    }
    (*list)[(*count)++] = copy;
    return true;
}

static int batch_latest(const store_batch *b, int cf, const void *key, size_t klen,
                        batch_op_view *v);
static bool batch_read_op(const store_batch *b, size_t *at, batch_op_view *v);

/* The ids of owner's tokens: the committed ones that `b` (NULL: none)
 * leaves alone, then those b puts. A key the batch touches is decided by
 * b's latest operation on it alone, so none is listed twice. */
static int owner_ids(store *st, const store_batch *b, const char *owner, char ***ids,
                     size_t *n, tokend_error *err) {
    if (ids != NULL) {
        *ids = NULL;
    }
    if (n != NULL) {
        *n = 0;
    }
    owner_scan s;
    if (st == NULL || ids == NULL || n == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "store_owner_ids: NULL argument");
    }
    s.prefix_len = record_owner_prefix(owner, s.prefix);
    if (s.prefix_len == 0) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "store_owner_ids: bad owner");
    }
    int rv = read_begin(st, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    owner_scan_begin(st, &s);
    rocksdb_iter_seek(s.it, (const char *)s.prefix, s.prefix_len);
    char **list = NULL;
    size_t count = 0, cap = 0;
    for (; rocksdb_iter_valid(s.it); rocksdb_iter_next(s.it)) {
        const char *id = owner_scan_id(&s, NULL, err);
        if (id == NULL) {
            rv = TOKEND_INTERNAL;
            break;
        }
        batch_op_view v;
        size_t klen = 0;
        const char *key = rocksdb_iter_key(s.it, &klen);
        if (b != NULL && batch_latest(b, CF_OWNERS, key, klen, &v) != 0) {
            continue;
        }
        if (!id_list_add(&list, &count, &cap, id)) {
            rv = error_set(err, TOKEND_INTERNAL, "out of memory listing ids");
            break;
        }
    }
    rv = owner_scan_end(st, &s, rv, err);
    read_end(st);
    batch_op_view op;
    for (size_t at = 0; rv == TOKEND_OK && b != NULL && batch_read_op(b, &at, &op);) {
        batch_op_view latest;
        if (op.cf != CF_OWNERS || op.klen <= s.prefix_len ||
            memcmp(op.key, s.prefix, s.prefix_len) != 0 ||
            batch_latest(b, CF_OWNERS, op.key, op.klen, &latest) != OP_PUT ||
            latest.at != op.at) {
            continue;
        }
        const char *id = record_owner_suffix_id((const uint8_t *)op.key + s.prefix_len,
                                                op.klen - s.prefix_len);
        if (id != NULL && !id_list_add(&list, &count, &cap, id)) {
            rv = error_set(err, TOKEND_INTERNAL, "out of memory listing ids");
        }
    }
    if (rv != TOKEND_OK) {
        for (size_t i = 0; i < count; i++) {
            free(list[i]);
        }
        free(list);
        return rv;
    }
    *ids = list;
    *n = count;
    return TOKEND_OK;
}

int store_owner_ids(store *st, const char *owner, char ***ids, size_t *n,
                    tokend_error *err) {
    return owner_ids(st, NULL, owner, ids, n, err);
}

/* The number of owner's committed tokens: its entries in the owners
 * index. */
static int owner_count_scan(store *st, const char *owner, uint64_t *n,
                            tokend_error *err) {
    owner_scan s;
    s.prefix_len = record_owner_prefix(owner, s.prefix);
    int rv = read_begin(st, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    owner_scan_begin(st, &s);
    uint64_t count = 0;
    for (rocksdb_iter_seek(s.it, (const char *)s.prefix, s.prefix_len);
         rocksdb_iter_valid(s.it); rocksdb_iter_next(s.it)) {
        count++;
    }
    rv = owner_scan_end(st, &s, TOKEND_OK, err);
    read_end(st);
    *n = count;
    return rv;
}

/* ---------- write batches ---------- */

store_batch *store_batch_new(void) {
    return calloc(1, sizeof(store_batch));
}

void store_batch_free(store_batch *b) {
    if (b == NULL) {
        return;
    }
    free(b->log);
    free(b->slots);
    free(b->names);
    free(b);
}

void store_batch_clear(store_batch *b) {
    if (b == NULL) {
        return;
    }
    b->len = 0;
    b->count = 0;
    error_set(&b->failure, TOKEND_OK, NULL);
    if (b->slot_cap > BATCH_SLOTS_KEEP) {
        free(b->slots); /* one revoke-all of a big owner; most groups are small */
        b->slots = NULL;
        b->slot_cap = 0;
    } else if (b->slot_used > 0) {
        memset(b->slots, 0, b->slot_cap * sizeof(*b->slots));
    }
    b->slot_used = 0;
    b->names_len = 0;
    b->ev_set = false;
}

size_t store_batch_count(const store_batch *b) {
    return b != NULL ? b->count : 0;
}

/* Marks the batch failed: commit will apply none of it and return
 * `status`. The first failure is the one reported. */
static void batch_fail(store_batch *b, int status, const char *why) {
    if (b->failure.code == TOKEND_OK) {
        error_set(&b->failure, status, "%s", why);
    }
}

/* The batch's failure, into *err; its status. */
static int batch_failure(const store_batch *b, tokend_error *err) {
    return error_set(err, b->failure.code, "%s", b->failure.message);
}

/* Writes a length and `len` bytes into the log at p; returns their end. */
static uint8_t *log_put(uint8_t *p, const void *bytes, size_t len) {
    uint32_t n = (uint32_t)len;
    memcpy(p, &n, sizeof(n));
    if (len > 0) {
        memcpy(p + sizeof(n), bytes, len);
    }
    return p + sizeof(n) + len;
}

/* Reads what log_put wrote at p; returns its end. */
static const uint8_t *log_get(const uint8_t *p, const char **bytes, size_t *len) {
    uint32_t n;
    memcpy(&n, p, sizeof(n));
    *bytes = (const char *)p + sizeof(n);
    *len = n;
    return p + sizeof(n) + n;
}

/* Reads the operation at offset *at of the log into *v and moves *at past
 * it; false at the end. The log was written by batch_op alone, so it is
 * read without re-checking its lengths. */
static bool batch_read_op(const store_batch *b, size_t *at, batch_op_view *v) {
    if (*at >= b->len) {
        return false;
    }
    const uint8_t *p = b->log + *at;
    v->at = *at;
    v->op = p[0];
    v->cf = p[1];
    p = log_get(p + 2, &v->key, &v->klen);
    v->val = NULL;
    v->vlen = 0;
    if (v->op == OP_PUT) {
        p = log_get(p, &v->val, &v->vlen);
    }
    *at = (size_t)(p - b->log);
    return true;
}

/* `buf` (of *cap bytes, `len` used) with room for `need` bytes more:
 * itself, or grown (doubling from 256, *cap updated); NULL, with buf
 * left as it was, when out of memory. */
static void *buffer_room(void *buf, size_t *cap, size_t len, size_t need) {
    if (*cap - len >= need) {
        return buf;
    }
    size_t ncap = *cap == 0 ? 256 : *cap;
    while (ncap - len < need) {
        ncap *= 2;
    }
    void *grown = realloc(buf, ncap);
    if (grown != NULL) {
        *cap = ncap;
    }
    return grown;
}

/* ---------- the batch's index ---------- */

/* FNV-1a over the tag and the key. */
static uint32_t slot_hash(uint8_t tag, const void *key, size_t len) {
    uint32_t h = (2166136261u ^ tag) * 16777619u;
    const uint8_t *p = key;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ p[i]) * 16777619u;
    }
    return h;
}

/* Whether occupied slot `s` holds the key key[0..len). */
static bool slot_is(const store_batch *b, const batch_slot *s, const void *key,
                    size_t len) {
    if (s->tag == SLOT_COUNT) {
        const char *owner = b->names + s->at;
        return strlen(owner) == len && memcmp(owner, key, len) == 0;
    }
    batch_op_view v;
    size_t at = s->at;
    batch_read_op(b, &at, &v);
    return v.klen == len && memcmp(v.key, key, len) == 0;
}

/* The slot holding (tag, key), or the empty slot where it would go; NULL
 * if the index is empty. */
static batch_slot *slot_find(const store_batch *b, uint8_t tag, const void *key,
                             size_t len) {
    if (b->slot_cap == 0) {
        return NULL;
    }
    uint32_t h = slot_hash(tag, key, len);
    size_t mask = b->slot_cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        batch_slot *s = &b->slots[i];
        if (s->tag == SLOT_EMPTY ||
            (s->tag == tag && s->hash == h && slot_is(b, s, key, len))) {
            return s;
        }
    }
}

/* Makes room for one more slot, keeping the index at most half full. */
static bool slots_reserve(store_batch *b) {
    if ((b->slot_used + 1) * 2 <= b->slot_cap) {
        return true;
    }
    size_t ncap = b->slot_cap == 0 ? BATCH_SLOTS_MIN : b->slot_cap * 2;
    batch_slot *grown = calloc(ncap, sizeof(*grown));
    if (grown == NULL) {
        return false;
    }
    for (size_t i = 0; i < b->slot_cap; i++) {
        const batch_slot *s = &b->slots[i];
        if (s->tag != SLOT_EMPTY) {
            size_t j = s->hash & (ncap - 1);
            while (grown[j].tag != SLOT_EMPTY) {
                j = (j + 1) & (ncap - 1);
            }
            grown[j] = *s;
        }
    }
    free(b->slots);
    b->slots = grown;
    b->slot_cap = ncap;
    return true;
}

/* The slot of (tag, key); a new one (*created) has a zero delta and its
 * `at` is the caller's to set at once. NULL (the batch failed) when out
 * of memory. */
static batch_slot *slot_take(store_batch *b, uint8_t tag, const void *key, size_t len,
                             bool *created) {
    *created = false;
    if (!slots_reserve(b)) {
        batch_fail(b, TOKEND_INTERNAL, "out of memory indexing a write batch");
        return NULL;
    }
    batch_slot *s = slot_find(b, tag, key, len);
    if (s->tag == SLOT_EMPTY) {
        s->tag = tag;
        s->hash = slot_hash(tag, key, len);
        s->delta = 0;
        b->slot_used++;
        *created = true;
    }
    return s;
}

/* Notes the operation at `at` as the latest on its key. Only the families
 * read through the batch are indexed (not usage, which a flush writes by
 * the thousand; of meta, the admin index's keys). */
static void index_op(store_batch *b, int cf, const void *key, size_t klen, size_t at) {
    if (cf != CF_TOKENS && cf != CF_IDS && cf != CF_OWNERS && cf != CF_SERIES &&
        !(cf == CF_META && admin_key_is(key, klen))) {
        return;
    }
    bool created;
    batch_slot *s = slot_take(b, (uint8_t)(1 + cf), key, klen, &created);
    if (s != NULL) {
        s->at = at;
    }
}

/* Adds `delta` to the count of owner's tokens the batch changes. The
 * owner is copied to the end of `names` first, where a new slot then
 * points, so that no slot ever points at bytes not yet written. */
static void index_count(store_batch *b, const char *owner, int64_t delta) {
    if (b->failure.code != TOKEND_OK) {
        return;
    }
    size_t len = strlen(owner);
    char *names = buffer_room(b->names, &b->names_cap, b->names_len, len + 1);
    if (names == NULL) {
        batch_fail(b, TOKEND_INTERNAL, "out of memory indexing a write batch");
        return;
    }
    b->names = names;
    memcpy(b->names + b->names_len, owner, len + 1);
    bool created;
    batch_slot *s = slot_take(b, SLOT_COUNT, owner, len, &created);
    if (s == NULL) {
        return;
    }
    if (created) {
        s->at = b->names_len;
        b->names_len += len + 1;
    }
    s->delta += delta;
}

/* The batch's latest operation on `key` in `cf` (into *v): 0 if it has
 * none, else OP_PUT or OP_DELETE. */
static int batch_latest(const store_batch *b, int cf, const void *key, size_t klen,
                        batch_op_view *v) {
    const batch_slot *s = b != NULL ? slot_find(b, (uint8_t)(1 + cf), key, klen) : NULL;
    if (s == NULL || s->tag == SLOT_EMPTY) {
        return 0;
    }
    size_t at = s->at;
    batch_read_op(b, &at, v);
    return v->op;
}

/* Appends one operation to the log (value ignored for a delete). */
static void batch_op(store_batch *b, int op, int cf, const void *key, size_t klen,
                     const void *val, size_t vlen) {
    if (b->failure.code != TOKEND_OK) {
        return;
    }
    size_t need =
        2 + sizeof(uint32_t) + klen + (op == OP_PUT ? sizeof(uint32_t) + vlen : 0);
    uint8_t *log = buffer_room(b->log, &b->cap, b->len, need);
    if (log == NULL) {
        batch_fail(b, TOKEND_INTERNAL, "out of memory building a write batch");
        return;
    }
    b->log = log;
    size_t at = b->len;
    uint8_t *p = b->log + at;
    *p++ = (uint8_t)op;
    *p++ = (uint8_t)cf;
    p = log_put(p, key, klen);
    if (op == OP_PUT) {
        p = log_put(p, val, vlen);
    }
    b->len = (size_t)(p - b->log);
    index_op(b, cf, key, klen, at);
}

int store_batch_put_token(store_batch *b, const uint8_t digest[TOKEN_DIGEST_LEN],
                          const token_record *rec, tokend_error *err) {
    if (b == NULL || digest == NULL || rec == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "store_batch_put_token: NULL argument");
    }
    uint8_t *enc = NULL;
    size_t enc_len = 0;
    int rv = record_encode(rec, &enc, &enc_len, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    uint8_t okey[RECORD_OWNER_KEY_MAX];
    size_t okey_len = record_owner_key(rec, okey); /* cannot fail: encode checked */
    batch_op(b, OP_PUT, CF_TOKENS, digest, TOKEN_DIGEST_LEN, enc, enc_len);
    batch_op(b, OP_PUT, CF_IDS, rec->id, TOKEN_ID_LEN, digest, TOKEN_DIGEST_LEN);
    batch_op(b, OP_PUT, CF_OWNERS, okey, okey_len, "", 0);
    if (record_is_admin(rec)) {
        uint8_t akey[ADMIN_KEY_LEN], aval[8];
        admin_key(rec->id, akey);
        put_be64(aval, (uint64_t)rec->expires_ms);
        batch_op(b, OP_PUT, CF_META, akey, sizeof(akey), aval, sizeof(aval));
    }
    index_count(b, rec->owner, 1);
    free(enc);
    b->count++;
    return b->failure.code != TOKEND_OK ? batch_failure(b, err) : TOKEND_OK;
}

void store_batch_delete_token(store_batch *b, const uint8_t digest[TOKEN_DIGEST_LEN],
                              const token_record *rec) {
    if (b == NULL) {
        return;
    }
    b->count++;
    uint8_t okey[RECORD_OWNER_KEY_MAX];
    size_t okey_len = rec != NULL ? record_owner_key(rec, okey) : 0;
    if (digest == NULL || okey_len == 0) {
        batch_fail(b, TOKEND_INVALID_ARGUMENT, "delete of a token with a bad record");
        return;
    }
    batch_op(b, OP_DELETE, CF_TOKENS, digest, TOKEN_DIGEST_LEN, NULL, 0);
    batch_op(b, OP_DELETE, CF_IDS, rec->id, TOKEN_ID_LEN, NULL, 0);
    batch_op(b, OP_DELETE, CF_OWNERS, okey, okey_len, NULL, 0);
    batch_op(b, OP_DELETE, CF_USAGE, rec->id, TOKEN_ID_LEN, NULL, 0);
    if (record_is_admin(rec)) {
        uint8_t akey[ADMIN_KEY_LEN];
        admin_key(rec->id, akey);
        batch_op(b, OP_DELETE, CF_META, akey, sizeof(akey), NULL, 0);
    }
    index_count(b, rec->owner, -1);
}

void store_batch_put_usage(store_batch *b, const char *id, int64_t last_used_ms,
                           uint64_t use_count) {
    if (b == NULL) {
        return;
    }
    b->count++;
    if (id == NULL || !token_id_ok(id, strnlen(id, TOKEN_ID_LEN + 1))) {
        batch_fail(b, TOKEND_INVALID_ARGUMENT, "usage for a bad id");
        return;
    }
    uint8_t val[RECORD_USAGE_LEN];
    record_usage_encode(last_used_ms, use_count, val);
    batch_op(b, OP_PUT, CF_USAGE, id, TOKEN_ID_LEN, val, sizeof(val));
}

void store_batch_mark_initialised(store_batch *b, int64_t now_ms) {
    if (b == NULL) {
        return;
    }
    b->count++;
    char val[32];
    int len = snprintf(val, sizeof(val), "%lld", (long long)now_ms);
    batch_op(b, OP_PUT, CF_META, "initialised", 11, val, (size_t)len);
}

/* ---------- the owner count cache ---------- */

/* The cache slot of owner[0..len), or NULL while the cache could not be
 * allocated. Called with count_lock held. */
static owner_count *counts_slot(store *st, const char *owner, size_t len) {
    if (st->counts == NULL) {
        return NULL;
    }
    return &st->counts[slot_hash(0, owner, len) % STORE_COUNT_SLOTS];
}

/* After `b` committed: each cached owner's count moves by b's difference.
 * A count that would fall below zero was not what the store held (a
 * broken precondition, see store.h): it is dropped, to be counted again. */
static void counts_commit(store *st, const store_batch *b) {
    if (b->slot_used == 0) {
        return; /* a usage flush, or an empty group */
    }
    pthread_mutex_lock(&st->count_lock);
    bool changed = false;
    for (size_t i = 0; i < b->slot_cap; i++) {
        const batch_slot *s = &b->slots[i];
        if (s->tag != SLOT_COUNT || s->delta == 0) {
            continue;
        }
        changed = true;
        const char *owner = b->names + s->at;
        owner_count *c = counts_slot(st, owner, strlen(owner));
        if (c == NULL || !c->used || strcmp(c->owner, owner) != 0) {
            continue;
        }
        if (s->delta < 0 && (uint64_t)-s->delta > c->count) {
            c->used = false;
        } else {
            c->count += (uint64_t)s->delta;
        }
    }
    if (changed) {
        st->count_generation++;
    }
    pthread_mutex_unlock(&st->count_lock);
}

/* Replays the log into a RocksDB batch with this store's family handles
 * and writes it in one go. */
static int batch_write(store *st, const store_batch *b, bool sync, tokend_error *err) {
    int rv = read_begin(st, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    if (st->read_only) {
        rv = error_set(err, TOKEND_STORAGE_ERROR, "store is open read-only");
    } else {
        rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
        batch_op_view v;
        for (size_t at = 0; batch_read_op(b, &at, &v);) {
            if (v.op == OP_PUT) {
                rocksdb_writebatch_put_cf(wb, st->cf[v.cf], v.key, v.klen, v.val, v.vlen);
            } else {
                rocksdb_writebatch_delete_cf(wb, st->cf[v.cf], v.key, v.klen);
            }
        }
        char *rocks_err = NULL;
        rocksdb_write(st->db, sync ? st->write_sync : st->write_nosync, wb, &rocks_err);
        rocksdb_writebatch_destroy(wb);
        if (rocks_err != NULL) {
            atomic_store(&st->write_failed, true);
            rv = storage_error(rocks_err, "committing a write batch", err);
        }
    }
    read_end(st);
    return rv;
}

/* The batch is cleared whatever the outcome, so that a failed or poisoned
 * batch is never half-replayed into a later commit. */
int store_batch_commit(store *st, store_batch *b, bool sync, tokend_error *err) {
    if (st == NULL || b == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "store_batch_commit: NULL argument");
    }
    int rv = TOKEND_OK;
    if (b->failure.code != TOKEND_OK) {
        rv = batch_failure(b, err);
    } else if (b->len > 0) {
        rv = batch_write(st, b, sync, err);
        if (rv == TOKEND_OK) {
            counts_commit(st, b);
            if (b->ev_set) {
                memcpy(st->ev_hash, b->ev_hash, sizeof(st->ev_hash));
                atomic_store(&st->ev_seq, b->ev_seq);
            }
        }
    }
    store_batch_clear(b);
    return rv;
}

/* ---------- reads through a batch ---------- */

int store_batch_get_token(store *st, const store_batch *b,
                          const uint8_t digest[TOKEN_DIGEST_LEN], token_record *out,
                          tokend_error *err) {
    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    if (st == NULL || digest == NULL || out == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "store_batch_get_token: NULL argument");
    }
    batch_op_view v;
    switch (batch_latest(b, CF_TOKENS, digest, TOKEN_DIGEST_LEN, &v)) {
        case OP_PUT:
            return record_decode((const uint8_t *)v.val, v.vlen, out, err);
        case OP_DELETE:
            return TOKEND_NOT_FOUND;
        default:
            return store_get_token(st, digest, out, err);
    }
}

int store_batch_get_digest(store *st, const store_batch *b, const char *id,
                           uint8_t digest[TOKEN_DIGEST_LEN], tokend_error *err) {
    if (st == NULL || id == NULL || digest == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "store_batch_get_digest: NULL argument");
    }
    batch_op_view v;
    switch (batch_latest(b, CF_IDS, id, strlen(id), &v)) {
        case OP_PUT:
            memcpy(digest, v.val, TOKEN_DIGEST_LEN); /* put_token writes a digest */
            return TOKEND_OK;
        case OP_DELETE:
            return TOKEND_NOT_FOUND;
        default:
            return store_get_digest(st, id, digest, err);
    }
}

int store_batch_owner_ids(store *st, const store_batch *b, const char *owner, char ***ids,
                          size_t *n, tokend_error *err) {
    return owner_ids(st, b, owner, ids, n, err);
}

int store_batch_owner_count(store *st, const store_batch *b, const char *owner,
                            uint64_t *count, tokend_error *err) {
    if (count != NULL) {
        *count = 0;
    }
    size_t len = owner != NULL ? strnlen(owner, TOKEN_OWNER_MAX + 1) : 0;
    if (st == NULL || count == NULL || len == 0 || len > TOKEN_OWNER_MAX) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "store_batch_owner_count: NULL argument or bad owner");
    }
    pthread_mutex_lock(&st->count_lock);
    if (st->counts == NULL) {
        st->counts = calloc(STORE_COUNT_SLOTS, sizeof(*st->counts));
    }
    owner_count *c = counts_slot(st, owner, len);
    bool cached = c != NULL && c->used && strcmp(c->owner, owner) == 0;
    uint64_t committed = cached ? c->count : 0;
    uint64_t generation = st->count_generation;
    pthread_mutex_unlock(&st->count_lock);
    if (!cached) {
        int rv = owner_count_scan(st, owner, &committed, err);
        if (rv != TOKEND_OK) {
            return rv;
        }
        pthread_mutex_lock(&st->count_lock);
        if (c != NULL && st->count_generation == generation) {
            c->used = true;
            c->count = committed;
            memcpy(c->owner, owner, len + 1);
        }
        pthread_mutex_unlock(&st->count_lock);
    }
    const batch_slot *s = b != NULL ? slot_find(b, SLOT_COUNT, owner, len) : NULL;
    int64_t delta = s != NULL && s->tag != SLOT_EMPTY ? s->delta : 0;
    *count =
        delta >= 0 || (uint64_t)-delta <= committed ? committed + (uint64_t)delta : 0;
    return TOKEND_OK;
}

int store_batch_admins_valid(store *st, const store_batch *b, int64_t now_ms,
                             uint64_t *count, tokend_error *err) {
    if (count != NULL) {
        *count = 0;
    }
    if (st == NULL || count == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "store_batch_admins_valid: NULL argument");
    }
    int rv = read_begin(st, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    char upper[ADMIN_KEY_PREFIX_LEN];
    memcpy(upper, ADMIN_KEY_PREFIX, ADMIN_KEY_PREFIX_LEN);
    upper[ADMIN_KEY_PREFIX_LEN - 1] = 1;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, upper, sizeof(upper));
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, ro, st->cf[CF_META]);
    uint64_t n = 0;
    for (rocksdb_iter_seek(it, ADMIN_KEY_PREFIX, ADMIN_KEY_PREFIX_LEN);
         rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen = 0, vlen = 0;
        const char *key = rocksdb_iter_key(it, &klen);
        const char *val = rocksdb_iter_value(it, &vlen);
        batch_op_view v;
        if (!admin_key_is(key, klen) || vlen != 8 ||
            (b != NULL && batch_latest(b, CF_META, key, klen, &v) != 0)) {
            continue; /* the batch's own operation decides it, below */
        }
        if (!token_expired((int64_t)get_be64((const uint8_t *)val), now_ms)) {
            n++;
        }
    }
    rv = iter_close(it, TOKEND_OK, "scanning the admin index", err);
    rocksdb_readoptions_destroy(ro);
    read_end(st);
    if (rv != TOKEND_OK) {
        return rv;
    }
    batch_op_view op;
    for (size_t at = 0; b != NULL && batch_read_op(b, &at, &op);) {
        batch_op_view latest;
        if (op.op == OP_PUT && op.cf == CF_META && admin_key_is(op.key, op.klen) &&
            op.vlen == 8 &&
            batch_latest(b, CF_META, op.key, op.klen, &latest) == OP_PUT &&
            latest.at == op.at &&
            !token_expired((int64_t)get_be64((const uint8_t *)op.val), now_ms)) {
            n++;
        }
    }
    *count = n;
    return TOKEND_OK;
}

/* ---------- sizes, for the metrics page ---------- */

static uint64_t family_property(store *st, int cf, const char *name) {
    uint64_t v = 0;
    return rocksdb_property_int_cf(st->db, st->cf[cf], name, &v) == 0 ? v : 0;
}

int store_sizes_read(store *st, store_sizes *out, tokend_error *err) {
    memset(out, 0, sizeof(*out));
    int rv = read_begin(st, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    out->block_cache_capacity = rocksdb_cache_get_capacity(st->cache);
    out->block_cache_usage = rocksdb_cache_get_usage(st->cache);
    out->block_cache_pinned = rocksdb_cache_get_pinned_usage(st->cache);
    for (int c = 0; c < CF_COUNT && c < STORE_FAMILIES; c++) {
        store_family_sizes *f = &out->families[c];
        f->name = cf_names[c];
        f->memtable_bytes = family_property(st, c, "rocksdb.cur-size-all-mem-tables");
        f->table_readers_bytes =
            family_property(st, c, "rocksdb.estimate-table-readers-mem");
        f->live_data_bytes = family_property(st, c, "rocksdb.estimate-live-data-size");
        f->sst_bytes = family_property(st, c, "rocksdb.total-sst-files-size");
        f->keys = family_property(st, c, "rocksdb.estimate-num-keys");
    }
    read_end(st);
    return TOKEND_OK;
}

/* ---------- the audit log ---------- */

void store_batch_fail(store_batch *b, int status, const char *why) {
    if (b != NULL) {
        batch_fail(b, status, why != NULL ? why : "the write batch was failed");
    }
}

void store_batch_event_head(store *st, const store_batch *b, uint64_t *seq,
                            uint8_t hash[STORE_EVENT_HASH_LEN]) {
    if (b != NULL && b->ev_set) {
        *seq = b->ev_seq;
        memcpy(hash, b->ev_hash, STORE_EVENT_HASH_LEN);
    } else {
        *seq = atomic_load(&st->ev_seq);
        memcpy(hash, st->ev_hash, STORE_EVENT_HASH_LEN);
    }
}

uint64_t store_event_last_seq(store *st) {
    return st != NULL ? atomic_load(&st->ev_seq) : 0;
}

/* The index keys of one event, put or deleted. */
static void event_index_ops(store_batch *b, int op, uint64_t seq, const char *owner,
                            const char *token_id) {
    uint8_t key[RECORD_EVENT_INDEX_MAX];
    size_t klen = record_event_index_key('o', owner, seq, key);
    if (klen > 0) {
        batch_op(b, op, CF_EVENT_INDEX, key, klen, "", 0);
    }
    klen = record_event_index_key('t', token_id, seq, key);
    if (klen > 0) {
        batch_op(b, op, CF_EVENT_INDEX, key, klen, "", 0);
    }
}

int store_batch_put_event(store *st, store_batch *b, uint64_t seq, const uint8_t *value,
                          size_t len, const uint8_t hash[STORE_EVENT_HASH_LEN],
                          const char *owner, const char *token_id, tokend_error *err) {
    if (st == NULL || b == NULL || value == NULL || hash == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "store_batch_put_event: NULL argument");
    }
    uint64_t head = 0;
    uint8_t head_hash[STORE_EVENT_HASH_LEN];
    store_batch_event_head(st, b, &head, head_hash);
    if (seq != head + 1) {
        return error_set(err, TOKEND_INTERNAL,
                         "audit event %llu does not follow the log's head %llu",
                         (unsigned long long)seq, (unsigned long long)head);
    }
    if (b->failure.code != TOKEND_OK) {
        return batch_failure(b, err);
    }
    uint8_t key[RECORD_EVENT_KEY_LEN];
    record_event_key(seq, key);
    batch_op(b, OP_PUT, CF_EVENTS, key, sizeof(key), value, len);
    event_index_ops(b, OP_PUT, seq, owner, token_id);
    b->count++;
    b->ev_set = true;
    b->ev_seq = seq;
    memcpy(b->ev_hash, hash, STORE_EVENT_HASH_LEN);
    return b->failure.code != TOKEND_OK ? batch_failure(b, err) : TOKEND_OK;
}

void store_batch_delete_event(store_batch *b, uint64_t seq, const char *owner,
                              const char *token_id) {
    if (b == NULL) {
        return;
    }
    uint8_t key[RECORD_EVENT_KEY_LEN];
    record_event_key(seq, key);
    batch_op(b, OP_DELETE, CF_EVENTS, key, sizeof(key), NULL, 0);
    event_index_ops(b, OP_DELETE, seq, owner, token_id);
    b->count++;
}

/* One event read during a scan: its value under the scan's snapshot.
 * Index entries whose event is gone are skipped (none should be). */
static int scan_take_indexed(store *st, const rocksdb_readoptions_t *ro, uint64_t seq,
                             store_event_fn fn, void *arg, int *stop, tokend_error *err) {
    uint8_t key[RECORD_EVENT_KEY_LEN];
    record_event_key(seq, key);
    rocksdb_pinnableslice_t *v = NULL;
    int rv = get_raw(st, ro, CF_EVENTS, key, sizeof(key), &v, err);
    if (rv == TOKEND_NOT_FOUND) {
        return TOKEND_OK;
    }
    if (rv != TOKEND_OK) {
        return rv;
    }
    size_t vlen = 0;
    const uint8_t *val = (const uint8_t *)rocksdb_pinnableslice_value(v, &vlen);
    *stop = fn(arg, seq, val, vlen);
    rocksdb_pinnableslice_destroy(v);
    return TOKEND_OK;
}

int store_events_scan(store *st, char index, const char *name, uint64_t after,
                      size_t max_keys, store_event_fn fn, void *arg, uint64_t *last_seq,
                      bool *ended, tokend_error *err) {
    *last_seq = after;
    *ended = false;
    if (st == NULL || fn == NULL || max_keys == 0 || (index != 0 && name == NULL)) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "store_events_scan: bad argument");
    }
    uint8_t lower[RECORD_EVENT_INDEX_MAX], upper[RECORD_EVENT_INDEX_MAX];
    size_t plen = 0;
    if (index != 0) {
        plen = record_event_index_prefix(index, name, lower);
        if (plen == 0) {
            return error_set(err, TOKEND_INVALID_ARGUMENT, "filter name is not valid");
        }
        memcpy(upper, lower, plen);
        upper[plen - 1] = 1; /* past every prefix NUL ... key */
        record_event_index_key(index, name, after + 1, lower);
    } else {
        record_event_key(after + 1, lower);
    }
    int rv = read_begin(st, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    const rocksdb_snapshot_t *snap = rocksdb_create_snapshot(st->db);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_snapshot(ro, snap);
    if (index != 0) {
        rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)upper, plen);
    }
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(
        st->db, ro, st->cf[index != 0 ? CF_EVENT_INDEX : CF_EVENTS]);
    rocksdb_iter_seek(it, (const char *)lower,
                      index != 0 ? plen + RECORD_EVENT_KEY_LEN : RECORD_EVENT_KEY_LEN);
    size_t seen = 0;
    int stop = 0;
    for (; rv == TOKEND_OK && !stop && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        if (seen == max_keys) {
            break;
        }
        seen++;
        size_t klen = 0;
        const uint8_t *key = (const uint8_t *)rocksdb_iter_key(it, &klen);
        uint64_t seq = 0;
        if (index != 0) {
            seq = klen == plen + RECORD_EVENT_KEY_LEN
                      ? record_event_key_seq(key + plen, RECORD_EVENT_KEY_LEN)
                      : 0;
        } else {
            seq = record_event_key_seq(key, klen);
        }
        if (seq == 0) {
            rv = error_set(err, TOKEND_INTERNAL, "the audit log holds a malformed key");
            break;
        }
        *last_seq = seq;
        if (index != 0) {
            rv = scan_take_indexed(st, ro, seq, fn, arg, &stop, err);
        } else {
            size_t vlen = 0;
            const uint8_t *val = (const uint8_t *)rocksdb_iter_value(it, &vlen);
            stop = fn(arg, seq, val, vlen);
        }
    }
    /* The loop's step ran past a stopping event, and a scan cut by
     * max_keys stands on the next key unread: either way the iterator is
     * valid exactly when keys follow. */
    *ended = rv == TOKEND_OK && !rocksdb_iter_valid(it);
    rv = iter_close(it, rv, "scanning the audit log", err);
    rocksdb_readoptions_destroy(ro);
    rocksdb_release_snapshot(st->db, snap);
    read_end(st);
    return rv;
}

int store_event_raw_put(store *st, uint64_t seq, const uint8_t *value, size_t len,
                        tokend_error *err) {
    if (st == NULL || value == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "store_event_raw_put: NULL argument");
    }
    uint8_t key[RECORD_EVENT_KEY_LEN];
    record_event_key(seq, key);
    char *rocks_err = NULL;
    rocksdb_put_cf(st->db, st->write_sync, st->cf[CF_EVENTS], (const char *)key,
                   sizeof(key), (const char *)value, len, &rocks_err);
    return rocks_err != NULL ? storage_error(rocks_err, "rewriting an event", err)
                             : TOKEND_OK;
}

/* ---------- usage series ---------- */

int store_batch_put_series(store_batch *b, const uint8_t *key, size_t klen,
                           const series_bucket *bucket, tokend_error *err) {
    if (b == NULL || key == NULL || bucket == NULL || klen > RECORD_SERIES_KEY_MAX) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "store_batch_put_series: bad argument");
    }
    uint8_t *enc = NULL;
    size_t enc_len = 0;
    int rv = record_series_encode(bucket, &enc, &enc_len, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    batch_op(b, OP_PUT, CF_SERIES, key, klen, enc, enc_len);
    b->count++;
    free(enc);
    return TOKEND_OK;
}

int store_batch_get_series(store *st, const store_batch *b, const uint8_t *key,
                           size_t klen, series_bucket *out, tokend_error *err) {
    memset(out, 0, sizeof(*out));
    batch_op_view v;
    switch (batch_latest(b, CF_SERIES, key, klen, &v)) {
        case OP_PUT:
            return record_series_decode((const uint8_t *)v.val, v.vlen, out, err);
        case OP_DELETE:
            return TOKEND_NOT_FOUND;
        default:
            break;
    }
    int rv = read_begin(st, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    rocksdb_pinnableslice_t *val = NULL;
    rv = get_raw(st, st->read_opts, CF_SERIES, key, klen, &val, err);
    read_end(st);
    if (rv == TOKEND_OK) {
        size_t len = 0;
        const char *bytes = rocksdb_pinnableslice_value(val, &len);
        rv = record_series_decode((const uint8_t *)bytes, len, out, err);
        rocksdb_pinnableslice_destroy(val);
    }
    return rv;
}

int store_series_range(store *st, series_scope scope, series_step step, const char *name,
                       int64_t from_ms, int64_t to_ms, store_series_fn fn, void *arg,
                       tokend_error *err) {
    uint8_t lower[RECORD_SERIES_KEY_MAX], upper[RECORD_SERIES_KEY_MAX];
    int64_t oldest = store_series_oldest(st, step, wall_ms());
    if (from_ms < oldest) {
        from_ms = oldest;
    }
    if (from_ms < 0) {
        from_ms = 0;
    }
    size_t llen = record_series_key(scope, step, name, from_ms, lower);
    size_t ulen = record_series_key(scope, step, name, to_ms, upper);
    if (llen == 0 || ulen == 0) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "store_series_range: bad name");
    }
    if (from_ms >= to_ms) {
        return TOKEND_OK;
    }
    int rv = read_begin(st, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, (const char *)upper, ulen);
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, ro, st->cf[CF_SERIES]);
    for (rocksdb_iter_seek(it, (const char *)lower, llen);
         rv == TOKEND_OK && rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
        size_t klen = 0, vlen = 0;
        const uint8_t *key = (const uint8_t *)rocksdb_iter_key(it, &klen);
        const uint8_t *val = (const uint8_t *)rocksdb_iter_value(it, &vlen);
        int64_t start = 0;
        series_step kstep;
        series_bucket bucket;
        if (klen != llen || memcmp(key, lower, llen - 8) != 0 ||
            !record_series_key_parse(key, klen, &start, &kstep)) {
            continue; /* a longer name sharing the prefix: not this series */
        }
        rv = record_series_decode(val, vlen, &bucket, err);
        if (rv == TOKEND_OK) {
            rv = fn(arg, start, &bucket);
        }
    }
    rv = iter_close(it, rv, "reading series", err);
    rocksdb_readoptions_destroy(ro);
    read_end(st);
    return rv;
}

int store_compact_series(store *st, tokend_error *err) {
    int rv = read_begin(st, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    rocksdb_compact_range_cf(st->db, st->cf[CF_SERIES], NULL, 0, NULL, 0);
    read_end(st);
    return TOKEND_OK;
}

/* ---------- tombstones and seen networks ---------- */

/* A tombstone's value: be64(revoked_ms), the id, the owner (the rest).
 * It is put under two keys: the digest (32 bytes: the alerts look up a
 * token presented) and 'i' + the public id (17 bytes: GetUsage of a
 * revoked token's id), which the age filter drops alike. */
#define TOMBSTONE_HEAD (8 + TOKEN_ID_LEN)
#define TOMBSTONE_ID_KEY_LEN (1 + TOKEN_ID_LEN)

static void tombstone_id_key(const char *id, uint8_t key[TOMBSTONE_ID_KEY_LEN]) {
    key[0] = 'i';
    memcpy(key + 1, id, TOKEN_ID_LEN);
}

void store_batch_put_tombstone(store_batch *b, const uint8_t digest[TOKEN_DIGEST_LEN],
                               const token_record *rec, int64_t revoked_ms) {
    if (b == NULL) {
        return;
    }
    b->count++;
    size_t owner_len = rec != NULL ? strnlen(rec->owner, TOKEN_OWNER_MAX + 1) : 0;
    if (digest == NULL || rec == NULL || !token_id_ok(rec->id, strlen(rec->id)) ||
        owner_len == 0 || owner_len > TOKEN_OWNER_MAX) {
        batch_fail(b, TOKEND_INVALID_ARGUMENT, "tombstone of a token with a bad record");
        return;
    }
    uint8_t val[TOMBSTONE_HEAD + TOKEN_OWNER_MAX];
    put_be64(val, (uint64_t)revoked_ms);
    memcpy(val + 8, rec->id, TOKEN_ID_LEN);
    memcpy(val + TOMBSTONE_HEAD, rec->owner, owner_len);
    batch_op(b, OP_PUT, CF_TOMBSTONES, digest, TOKEN_DIGEST_LEN, val,
             TOMBSTONE_HEAD + owner_len);
    uint8_t id_key[TOMBSTONE_ID_KEY_LEN];
    tombstone_id_key(rec->id, id_key);
    batch_op(b, OP_PUT, CF_TOMBSTONES, id_key, sizeof(id_key), val,
             TOMBSTONE_HEAD + owner_len);
}

/* The tombstone under key[0..klen) into *out (see store_get_tombstone). */
static int tombstone_read(store *st, const uint8_t *key, size_t klen, int64_t now_ms,
                          store_tombstone *out, tokend_error *err) {
    memset(out, 0, sizeof(*out));
    int rv = read_begin(st, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    rocksdb_pinnableslice_t *v = NULL;
    rv = get_raw(st, st->read_opts, CF_TOMBSTONES, key, klen, &v, err);
    read_end(st);
    if (rv != TOKEND_OK) {
        return rv;
    }
    size_t len = 0;
    const uint8_t *val = (const uint8_t *)rocksdb_pinnableslice_value(v, &len);
    if (len <= TOMBSTONE_HEAD || len > TOMBSTONE_HEAD + TOKEN_OWNER_MAX) {
        rv = error_set(err, TOKEND_INTERNAL, "a tombstone holds %zu bytes", len);
    } else {
        out->revoked_ms = (int64_t)get_be64(val);
        memcpy(out->id, val + 8, TOKEN_ID_LEN);
        memcpy(out->owner, val + TOMBSTONE_HEAD, len - TOMBSTONE_HEAD);
        if (out->revoked_ms + st->tombstone_age.retention_ms < now_ms) {
            rv = TOKEND_NOT_FOUND; /* past retention, not yet compacted away */
        }
    }
    rocksdb_pinnableslice_destroy(v);
    return rv;
}

int store_get_tombstone(store *st, const uint8_t digest[TOKEN_DIGEST_LEN], int64_t now_ms,
                        store_tombstone *out, tokend_error *err) {
    if (st == NULL || digest == NULL || out == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "store_get_tombstone: NULL argument");
    }
    return tombstone_read(st, digest, TOKEN_DIGEST_LEN, now_ms, out, err);
}

int store_get_tombstone_of_id(store *st, const char *id, int64_t now_ms,
                              store_tombstone *out, tokend_error *err) {
    if (st == NULL || id == NULL || out == NULL ||
        !token_id_ok(id, strnlen(id, TOKEN_ID_LEN + 1))) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "store_get_tombstone_of_id: NULL argument or bad id");
    }
    uint8_t key[TOMBSTONE_ID_KEY_LEN];
    tombstone_id_key(id, key);
    return tombstone_read(st, key, sizeof(key), now_ms, out, err);
}

/* A network's key: the token's id, then the network's bytes. */
void store_batch_put_network(store_batch *b, const char *id, const store_network *net) {
    if (b == NULL) {
        return;
    }
    b->count++;
    if (id == NULL || !token_id_ok(id, strnlen(id, TOKEN_ID_LEN + 1)) || net == NULL ||
        net->len == 0 || net->len > STORE_NETWORK_MAX) {
        batch_fail(b, TOKEND_INVALID_ARGUMENT, "a seen network with a bad id or length");
        return;
    }
    uint8_t key[TOKEN_ID_LEN + STORE_NETWORK_MAX];
    memcpy(key, id, TOKEN_ID_LEN);
    memcpy(key + TOKEN_ID_LEN, net->bytes, net->len);
    uint8_t val[8];
    put_be64(val, (uint64_t)net->last_seen_ms);
    batch_op(b, OP_PUT, CF_NETWORKS, key, TOKEN_ID_LEN + net->len, val, sizeof(val));
}

int store_get_networks(store *st, const char *id, int64_t now_ms, store_network *out,
                       size_t max, size_t *n, tokend_error *err) {
    if (n != NULL) {
        *n = 0;
    }
    if (st == NULL || id == NULL || !token_id_ok(id, strnlen(id, TOKEN_ID_LEN + 1)) ||
        out == NULL || n == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "store_get_networks: NULL argument or bad id");
    }
    int rv = read_begin(st, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    /* The id's keys are id + network bytes; id + "\xff..." bounds them. */
    char upper[TOKEN_ID_LEN + 1];
    memcpy(upper, id, TOKEN_ID_LEN);
    upper[TOKEN_ID_LEN] = (char)0xff;
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_iterate_upper_bound(ro, upper, sizeof(upper));
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf(st->db, ro, st->cf[CF_NETWORKS]);
    for (rocksdb_iter_seek(it, id, TOKEN_ID_LEN); rocksdb_iter_valid(it) && *n < max;
         rocksdb_iter_next(it)) {
        size_t klen = 0, vlen = 0;
        const char *key = rocksdb_iter_key(it, &klen);
        const char *val = rocksdb_iter_value(it, &vlen);
        if (klen <= TOKEN_ID_LEN || klen > TOKEN_ID_LEN + STORE_NETWORK_MAX ||
            memcmp(key, id, TOKEN_ID_LEN) != 0 || vlen != 8) {
            continue;
        }
        store_network *net = &out[*n];
        net->last_seen_ms = (int64_t)get_be64((const uint8_t *)val);
        if (net->last_seen_ms + st->network_age.retention_ms < now_ms) {
            continue; /* outside the history window */
        }
        net->len = klen - TOKEN_ID_LEN;
        memcpy(net->bytes, key + TOKEN_ID_LEN, net->len);
        (*n)++;
    }
    rv = iter_close(it, TOKEND_OK, "scanning seen networks", err);
    rocksdb_readoptions_destroy(ro);
    read_end(st);
    if (rv != TOKEND_OK) {
        *n = 0;
    }
    return rv;
}
