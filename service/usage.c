/*
 * usage.c — the in-memory usage table behind usage.h: open addressing on
 * the token id, a list of occupied slots so a drain touches only those.
 *
 * Two tables: `live` takes the touches; a drain swaps it with `flushing`,
 * which keeps the drained entries until the writer has committed them
 * (usage_flushed) or given them back (usage_restore), so that usage_peek
 * sees every use that is not yet in the store. While the flush commits, a
 * drained entry is counted or not by comparing the stored count the
 * reader saw with the total the flush writes (stored_total), so nothing
 * is counted twice; `generation` moves on whenever drained entries leave
 * the table, so that a reader whose store read came before the commit and
 * whose peek came after (finding them gone) sees the change and reads
 * again.
 */
#include "usage.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "tokend.h"

typedef struct usage_table {
    usage_entry *slots; /* nslots entries; id[0] == '\0' means empty */
    size_t *occupied;   /* indexes of used slots, `used` of them */
    size_t used;
} usage_table;

struct usage {
    pthread_mutex_t lock;
    usage_table tables[2];
    usage_table *live, *flushing;
    size_t nslots; /* power of two, at least twice capacity */
    size_t capacity;
    uint64_t dropped;
    /* Moved on (under the lock) whenever drained entries leave the
     * flushing table; read without it (usage_generation, on the verify
     * path, then costs no second lock). */
    _Atomic uint64_t generation;
};

usage *usage_new(size_t capacity) {
    usage *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        return NULL;
    }
    size_t nslots = 16;
    while (nslots < capacity * 2) {
        nslots *= 2;
    }
    bool ok = true;
    for (int t = 0; t < 2; t++) {
        u->tables[t].slots = calloc(nslots, sizeof(*u->tables[t].slots));
        u->tables[t].occupied = calloc(capacity + 1, sizeof(*u->tables[t].occupied));
        ok = ok && u->tables[t].slots != NULL && u->tables[t].occupied != NULL;
    }
    pthread_mutex_init(&u->lock, NULL);
    if (!ok) {
        usage_free(u);
        return NULL;
    }
    u->live = &u->tables[0];
    u->flushing = &u->tables[1];
    u->nslots = nslots;
    u->capacity = capacity;
    return u;
}

void usage_free(usage *u) {
    if (u == NULL) {
        return;
    }
    pthread_mutex_destroy(&u->lock);
    for (int t = 0; t < 2; t++) {
        free(u->tables[t].slots);
        free(u->tables[t].occupied);
    }
    free(u);
}

static size_t id_hash(const char *id) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < TOKEN_ID_LEN && id[i] != '\0'; i++) {
        h = (h ^ (unsigned char)id[i]) * 1099511628211ULL;
    }
    return (size_t)h;
}

/* The slot of `id` in `t`, or the empty slot where it would go. */
static usage_entry *slot_of(const usage *u, const usage_table *t, const char *id) {
    size_t mask = u->nslots - 1;
    for (size_t i = id_hash(id) & mask;; i = (i + 1) & mask) {
        usage_entry *e = &t->slots[i];
        if (e->id[0] == '\0' || memcmp(e->id, id, TOKEN_ID_LEN) == 0) {
            return e;
        }
    }
}

/* Adds `count` uses of `id`, the latest at last_ms, to the live table.
 * Lock held. */
static void add_locked(usage *u, const char *id, int64_t last_ms, uint64_t count) {
    usage_table *t = u->live;
    usage_entry *e = slot_of(u, t, id);
    if (e->id[0] == '\0') {
        if (t->used == u->capacity) {
            u->dropped += count;
            return;
        }
        memcpy(e->id, id, TOKEN_ID_LEN);
        e->id[TOKEN_ID_LEN] = '\0';
        e->last_used_ms = last_ms;
        e->count = count;
        e->stored_total = 0;
        t->occupied[t->used++] = (size_t)(e - t->slots);
        return;
    }
    if (last_ms > e->last_used_ms) {
        e->last_used_ms = last_ms;
    }
    e->count += count;
}

/* Empties the flushing table. Lock held. */
static void clear_flushing_locked(usage *u) {
    usage_table *t = u->flushing;
    for (size_t k = 0; k < t->used; k++) {
        t->slots[t->occupied[k]].id[0] = '\0';
    }
    if (t->used > 0) {
        atomic_fetch_add(&u->generation, 1);
    }
    t->used = 0;
}

void usage_touch(usage *u, const char *id, int64_t now_ms) {
    pthread_mutex_lock(&u->lock);
    add_locked(u, id, now_ms, 1);
    pthread_mutex_unlock(&u->lock);
}

void usage_restore(usage *u, const usage_entry *entries, size_t n) {
    pthread_mutex_lock(&u->lock);
    clear_flushing_locked(u);
    for (size_t k = 0; k < n; k++) {
        add_locked(u, entries[k].id, entries[k].last_used_ms, entries[k].count);
    }
    pthread_mutex_unlock(&u->lock);
}

int usage_drain(usage *u, usage_entry **out, size_t *n, uint64_t *dropped) {
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&u->lock);
    *dropped = u->dropped;
    u->dropped = 0;
    usage_table *t = u->live;
    if (t->used > 0) {
        usage_entry *entries = malloc(t->used * sizeof(*entries));
        if (entries == NULL) {
            pthread_mutex_unlock(&u->lock);
            return TOKEND_INTERNAL;
        }
        for (size_t k = 0; k < t->used; k++) {
            entries[k] = t->slots[t->occupied[k]];
            entries[k].stored_total = 0;
        }
        *out = entries;
        *n = t->used;
        /* The drained entries stay visible in `flushing` until the writer
         * says they are stored (or gives them back). */
        clear_flushing_locked(u);
        u->live = u->flushing;
        u->flushing = t;
    }
    pthread_mutex_unlock(&u->lock);
    return TOKEND_OK;
}

void usage_commit_begin(usage *u, const usage_entry *entries, size_t n) {
    pthread_mutex_lock(&u->lock);
    for (size_t k = 0; k < n; k++) {
        usage_entry *e = slot_of(u, u->flushing, entries[k].id);
        if (e->id[0] != '\0') {
            e->stored_total = entries[k].stored_total;
        }
    }
    pthread_mutex_unlock(&u->lock);
}

void usage_flushed(usage *u) {
    pthread_mutex_lock(&u->lock);
    clear_flushing_locked(u);
    pthread_mutex_unlock(&u->lock);
}

uint64_t usage_generation(usage *u) {
    return atomic_load(&u->generation);
}

uint64_t usage_peek(usage *u, const char *id, uint64_t stored_count,
                    int64_t *last_used_ms, uint64_t *count) {
    *last_used_ms = 0;
    *count = 0;
    if (id == NULL || strlen(id) != TOKEN_ID_LEN) {
        return usage_generation(u);
    }
    pthread_mutex_lock(&u->lock);
    const usage_table *tables[2] = {u->live, u->flushing};
    for (int t = 0; t < 2; t++) {
        const usage_entry *e = slot_of(u, tables[t], id);
        bool stored = t == 1 && e->stored_total != 0 && stored_count >= e->stored_total;
        if (e->id[0] != '\0' && !stored) {
            if (e->last_used_ms > *last_used_ms) {
                *last_used_ms = e->last_used_ms;
            }
            *count += e->count;
        }
    }
    uint64_t g = atomic_load(&u->generation);
    pthread_mutex_unlock(&u->lock);
    return g;
}
