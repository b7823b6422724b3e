/*
 * usage.c — the in-memory usage table behind usage.h: open addressing on
 * the token id, a list of occupied slots so a drain touches only those.
 */
#include "usage.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tokend.h"

struct usage {
    pthread_mutex_t lock;
    usage_entry *slots; /* nslots entries; id[0] == '\0' means empty */
    size_t nslots;      /* power of two, at least twice capacity */
    size_t *occupied;   /* indexes of used slots, `used` of them */
    size_t used;
    size_t capacity;
    uint64_t dropped;
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
    u->slots = calloc(nslots, sizeof(*u->slots));
    u->occupied = calloc(capacity, sizeof(*u->occupied));
    if (u->slots == NULL || u->occupied == NULL) {
        usage_free(u);
        return NULL;
    }
    u->nslots = nslots;
    u->capacity = capacity;
    pthread_mutex_init(&u->lock, NULL);
    return u;
}

void usage_free(usage *u) {
    if (u == NULL) {
        return;
    }
    if (u->slots != NULL && u->occupied != NULL) {
        pthread_mutex_destroy(&u->lock);
    }
    free(u->slots);
    free(u->occupied);
    free(u);
}

static size_t id_hash(const char *id) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < TOKEN_ID_LEN && id[i] != '\0'; i++) {
        h = (h ^ (unsigned char)id[i]) * 1099511628211ULL;
    }
    return (size_t)h;
}

/* Adds `count` uses of `id`, the latest at last_ms. Lock held. */
static void add_locked(usage *u, const char *id, int64_t last_ms, uint64_t count) {
    size_t mask = u->nslots - 1;
    size_t i = id_hash(id) & mask;
    for (;;) {
        usage_entry *e = &u->slots[i];
        if (e->id[0] == '\0') {
            if (u->used == u->capacity) {
                u->dropped += count;
                return;
            }
            memcpy(e->id, id, TOKEN_ID_LEN);
            e->id[TOKEN_ID_LEN] = '\0';
            e->last_used_ms = last_ms;
            e->count = count;
            u->occupied[u->used++] = i;
            return;
        }
        if (memcmp(e->id, id, TOKEN_ID_LEN) == 0) {
            if (last_ms > e->last_used_ms) {
                e->last_used_ms = last_ms;
            }
            e->count += count;
            return;
        }
        i = (i + 1) & mask;
    }
}

void usage_touch(usage *u, const char *id, int64_t now_ms) {
    pthread_mutex_lock(&u->lock);
    add_locked(u, id, now_ms, 1);
    pthread_mutex_unlock(&u->lock);
}

void usage_restore(usage *u, const usage_entry *entries, size_t n) {
    pthread_mutex_lock(&u->lock);
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
    if (u->used > 0) {
        usage_entry *entries = malloc(u->used * sizeof(*entries));
        if (entries == NULL) {
            pthread_mutex_unlock(&u->lock);
            return TOKEND_INTERNAL;
        }
        for (size_t k = 0; k < u->used; k++) {
            usage_entry *e = &u->slots[u->occupied[k]];
            entries[k] = *e;
            e->id[0] = '\0';
        }
        *out = entries;
        *n = u->used;
        u->used = 0;
    }
    pthread_mutex_unlock(&u->lock);
    return TOKEND_OK;
}
