/*
 * series.c — the usage series table behind series.h.
 *
 * Two tables, as in usage.c: `live` takes the calls; series_stage swaps
 * it with `flushing`, which keeps the staged entries, read-only, until the
 * writer has committed them (series_flushed) or given them back
 * (series_restore). Each table is an array of entries that grows up to the
 * capacity and an open-addressing index of (token id, minute) over it.
 *
 * Readers tell a flush's commit by `epoch`: odd from series_commit_begin
 * until the flushing table is emptied (or given back), even otherwise. A
 * reader notes the epoch, reads the store, and adds the tables only if the
 * epoch, checked under the lock, has not moved: then no commit started
 * since, so its store read holds none of the flushing entries, which it
 * adds from memory. Otherwise it reads again.
 */
#include "series.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "rpc.h"
#include "tokend.h"

/* Addresses a bucket keeps in memory, per address it stores: the top
 * `max_ips` of a flush are then taken from a wider field. */
#define SERIES_IPS_IN_MEMORY 4

typedef struct series_entry {
    char id[TOKEN_ID_LEN + 1]; /* "" for calls of no known token */
    char *owner;               /* malloc'd; NULL with id "" */
    int64_t minute;            /* bucket start, Unix ms */
    series_bucket b;
} series_entry;

typedef struct series_table {
    series_entry *entries; /* used of them, cap allocated */
    size_t used, cap;
    uint32_t *index; /* nslots; entry index + 1, 0 empty */
} series_table;

struct series {
    pthread_mutex_t lock;
    series_table tables[2];
    series_table *live, *flushing;
    size_t nslots, capacity, max_routes, max_ips;
    size_t text_bytes; /* route and address text held, both tables */
    uint64_t dropped;
    _Atomic uint64_t epoch;
};

static uint64_t hash_of(const char *id, int64_t minute) {
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)minute;
    for (size_t i = 0; i < TOKEN_ID_LEN && id[i] != '\0'; i++) {
        h = (h ^ (unsigned char)id[i]) * 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

series *series_new(size_t capacity, size_t max_routes, size_t max_ips) {
    series *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    size_t nslots = 16;
    while (nslots < capacity * 2) {
        nslots *= 2;
    }
    bool ok = true;
    for (int t = 0; t < 2; t++) {
        s->tables[t].index = calloc(nslots, sizeof(uint32_t));
        ok = ok && s->tables[t].index != NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->nslots = nslots;
    s->capacity = capacity;
    s->max_routes = max_routes;
    s->max_ips = max_ips;
    s->live = &s->tables[0];
    s->flushing = &s->tables[1];
    if (!ok) {
        series_free(s);
        return NULL;
    }
    return s;
}

/* Empties a table, freeing what its entries hold. Lock held. */
static void table_clear(series *s, series_table *t) {
    for (size_t i = 0; i < t->used; i++) {
        series_entry *e = &t->entries[i];
        for (size_t k = 0; k < e->b.n_routes; k++) {
            s->text_bytes -= strlen(e->b.routes[k].text) + 1;
        }
        for (size_t k = 0; k < e->b.n_ips; k++) {
            s->text_bytes -= strlen(e->b.ips[k].text) + 1;
        }
        series_bucket_free(&e->b);
        free(e->owner);
    }
    if (t->used > 0) {
        memset(t->index, 0, s->nslots * sizeof(uint32_t));
    }
    t->used = 0;
}

void series_free(series *s) {
    if (s == NULL) {
        return;
    }
    for (int t = 0; t < 2; t++) {
        table_clear(s, &s->tables[t]);
        free(s->tables[t].entries);
        free(s->tables[t].index);
    }
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* The entry of (id, minute) in t, made if missing and there is room;
 * NULL when the table is full. Lock held. */
static series_entry *entry_of(series *s, series_table *t, const char *id,
                              const char *owner, int64_t minute) {
    size_t mask = s->nslots - 1;
    size_t i = hash_of(id, minute) & mask;
    for (;; i = (i + 1) & mask) {
        uint32_t at = t->index[i];
        if (at == 0) {
            break;
        }
        series_entry *e = &t->entries[at - 1];
        if (e->minute == minute && strcmp(e->id, id) == 0) {
            return e;
        }
    }
    if (t->used == s->capacity) {
        return NULL;
    }
    if (t->used == t->cap) {
        size_t cap = t->cap == 0 ? 64 : t->cap * 2;
        cap = cap > s->capacity ? s->capacity : cap;
        series_entry *grown = realloc(t->entries, cap * sizeof(*grown));
        if (grown == NULL) {
            return NULL;
        }
        t->entries = grown;
        t->cap = cap;
    }
    series_entry *e = &t->entries[t->used];
    memset(e, 0, sizeof(*e));
    if (owner != NULL && (e->owner = strdup(owner)) == NULL) {
        return NULL;
    }
    snprintf(e->id, sizeof(e->id), "%s", id);
    e->minute = minute;
    t->index[i] = (uint32_t)++t->used;
    return e;
}

static bool is_special(const char *text) {
    return strcmp(text, SERIES_OTHER) == 0 || strcmp(text, SERIES_NONE) == 0;
}

/* Adds n calls under `text` to the list (*list, *len): to its entry, to a
 * new one while fewer than `max` ordinary texts are there and `budget`
 * (when not NULL) allows the bytes, else to "other". */
static int counts_add(series_count **list, size_t *len, const char *text, uint64_t n,
                      size_t max, size_t *budget) {
    size_t ordinary = 0;
    series_count *other = NULL;
    for (size_t i = 0; i < *len; i++) {
        if (strcmp((*list)[i].text, text) == 0) {
            (*list)[i].n += n;
            return TOKEND_OK;
        }
        if (strcmp((*list)[i].text, SERIES_OTHER) == 0) {
            other = &(*list)[i];
        } else if (strcmp((*list)[i].text, SERIES_NONE) != 0) {
            ordinary++;
        }
    }
    size_t need = strlen(text) + 1;
    bool fits =
        is_special(text) ||
        (ordinary < max && (budget == NULL || *budget + need <= SERIES_MEMORY_MAX));
    if (!fits) {
        if (other != NULL) {
            other->n += n;
            return TOKEND_OK;
        }
        text = SERIES_OTHER;
        need = sizeof(SERIES_OTHER);
    }
    series_count *grown = realloc(*list, (*len + 1) * sizeof(*grown));
    if (grown == NULL) {
        return TOKEND_INTERNAL;
    }
    *list = grown;
    char *copy = strdup(text);
    if (copy == NULL) {
        return TOKEND_INTERNAL;
    }
    grown[*len].text = copy;
    grown[*len].n = n;
    (*len)++;
    if (budget != NULL) {
        *budget += need;
    }
    return TOKEND_OK;
}

void series_add_call(series *s, const char *id, const char *owner, int outcome,
                     const char *route, const char *client_ip, int64_t now_ms) {
    if (outcome < 0 || outcome >= RECORD_SERIES_OUTCOMES) {
        return;
    }
    int64_t minute = now_ms - now_ms % SERIES_MINUTE_MS;
    route = route != NULL && route[0] != '\0' ? route : SERIES_NONE;
    client_ip = client_ip != NULL && client_ip[0] != '\0' ? client_ip : SERIES_NONE;
    pthread_mutex_lock(&s->lock);
    series_entry *e =
        entry_of(s, s->live, id != NULL ? id : "", id != NULL ? owner : NULL, minute);
    if (e == NULL) {
        s->dropped++;
    } else {
        e->b.outcomes[outcome]++;
        /* Out of memory here loses the call's route or address only. */
        (void)counts_add(&e->b.routes, &e->b.n_routes, route, 1, s->max_routes,
                         &s->text_bytes);
        (void)counts_add(&e->b.ips, &e->b.n_ips, client_ip, 1,
                         s->max_ips * SERIES_IPS_IN_MEMORY, &s->text_bytes);
    }
    pthread_mutex_unlock(&s->lock);
}

/* series_bucket_add, with new texts counted in *budget (when not NULL). */
static int bucket_add(series_bucket *dst, const series_bucket *src, size_t max_routes,
                      size_t max_ips, size_t *budget) {
    for (int o = 0; o < RECORD_SERIES_OUTCOMES; o++) {
        dst->outcomes[o] += src->outcomes[o];
    }
    int rv = TOKEND_OK;
    for (size_t i = 0; i < src->n_routes && rv == TOKEND_OK; i++) {
        rv = counts_add(&dst->routes, &dst->n_routes, src->routes[i].text,
                        src->routes[i].n, max_routes, budget);
    }
    for (size_t i = 0; i < src->n_ips && rv == TOKEND_OK; i++) {
        rv = counts_add(&dst->ips, &dst->n_ips, src->ips[i].text, src->ips[i].n, max_ips,
                        budget);
    }
    return rv;
}

int series_bucket_add(series_bucket *dst, const series_bucket *src, size_t max_routes,
                      size_t max_ips) {
    return bucket_add(dst, src, max_routes, max_ips, NULL);
}

/* Orders addresses by count, highest first, then by text. */
static int by_count(const void *a, const void *b) {
    const series_count *x = a, *y = b;
    if (x->n != y->n) {
        return x->n > y->n ? -1 : 1;
    }
    return strcmp(x->text, y->text);
}

int series_bucket_trim_ips(series_bucket *dst, size_t max_ips) {
    qsort(dst->ips, dst->n_ips, sizeof(*dst->ips), by_count);
    series_count *kept = calloc(dst->n_ips + 1, sizeof(*kept));
    if (kept == NULL) {
        return TOKEND_INTERNAL;
    }
    size_t n = 0, ordinary = 0;
    uint64_t rest = 0;
    series_count *other = NULL;
    for (size_t i = 0; i < dst->n_ips; i++) {
        series_count c = dst->ips[i];
        if (strcmp(c.text, SERIES_OTHER) == 0) {
            rest += c.n;
            free(c.text);
        } else if (strcmp(c.text, SERIES_NONE) == 0 || ordinary++ < max_ips) {
            kept[n++] = c;
        } else {
            rest += c.n;
            free(c.text);
        }
    }
    if (rest > 0) {
        other = &kept[n];
        other->text = strdup(SERIES_OTHER);
        other->n = rest;
        n += other->text != NULL;
    }
    free(dst->ips);
    dst->ips = kept;
    dst->n_ips = n;
    return TOKEND_OK;
}

/* ------------------------------------------------------------------------
 * The flush. */

/* The buckets a flush writes, by store key: each staged entry adds to six
 * of them (fewer for calls of no known token). */
typedef struct staged_bucket {
    uint8_t key[RECORD_SERIES_KEY_MAX];
    size_t klen;
    series_bucket b;
} staged_bucket;

typedef struct staging {
    staged_bucket *items; /* n of them, cap allocated: grown as keys come,
                             since owners and the deployment share theirs */
    size_t n, cap;
    uint32_t *index; /* nslots; item + 1 */
    size_t nslots;
} staging;

static uint64_t key_hash(const uint8_t *key, size_t len) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ key[i]) * 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

/* The staged bucket of `key`, made if missing; NULL without memory. The
 * pointer holds until the next call. */
static staged_bucket *staged_of(staging *g, const uint8_t *key, size_t klen) {
    size_t mask = g->nslots - 1;
    size_t i = key_hash(key, klen) & mask;
    for (;; i = (i + 1) & mask) {
        uint32_t at = g->index[i];
        if (at == 0) {
            break;
        }
        staged_bucket *sb = &g->items[at - 1];
        if (sb->klen == klen && memcmp(sb->key, key, klen) == 0) {
            return sb;
        }
    }
    if (g->n == g->cap) {
        size_t cap = g->cap == 0 ? 64 : g->cap * 2;
        staged_bucket *grown = realloc(g->items, cap * sizeof(*grown));
        if (grown == NULL) {
            return NULL;
        }
        g->items = grown;
        g->cap = cap;
    }
    staged_bucket *sb = &g->items[g->n];
    memset(sb, 0, sizeof(*sb));
    memcpy(sb->key, key, klen);
    sb->klen = klen;
    g->index[i] = (uint32_t)++g->n;
    return sb;
}

/* Adds one entry's bucket to the staged buckets of its series. */
static int stage_entry(series *s, staging *g, const series_entry *e) {
    struct {
        series_scope scope;
        const char *name;
    } targets[3] = {{SERIES_ALL, ""}, {SERIES_TOKEN, e->id}, {SERIES_OWNER, e->owner}};
    int n_targets = e->id[0] != '\0' && e->owner != NULL ? 3 : 1;
    int64_t hour = e->minute - e->minute % SERIES_HOUR_MS;
    for (int t = 0; t < n_targets; t++) {
        for (int h = 0; h < 2; h++) {
            uint8_t key[RECORD_SERIES_KEY_MAX];
            size_t klen =
                record_series_key(targets[t].scope, h ? SERIES_HOUR : SERIES_MINUTE,
                                  targets[t].name, h ? hour : e->minute, key);
            if (klen == 0) {
                continue;
            }
            staged_bucket *sb = staged_of(g, key, klen);
            int rv = sb == NULL ? TOKEND_INTERNAL
                                : series_bucket_add(&sb->b, &e->b, s->max_routes,
                                                    s->max_ips * SERIES_IPS_IN_MEMORY);
            if (rv != TOKEND_OK) {
                return rv;
            }
        }
    }
    return TOKEND_OK;
}

/* Merges each staged bucket with the stored one and adds it to the batch. */
static int stage_write(series *s, staging *g, store *st, store_batch *batch,
                       tokend_error *err) {
    for (size_t i = 0; i < g->n; i++) {
        staged_bucket *sb = &g->items[i];
        series_bucket stored;
        int rv = store_batch_get_series(st, batch, sb->key, sb->klen, &stored, err);
        if (rv == TOKEND_NOT_FOUND) {
            rv = TOKEND_OK;
        }
        if (rv == TOKEND_OK) {
            rv = series_bucket_add(&stored, &sb->b, s->max_routes,
                                   s->max_ips * SERIES_IPS_IN_MEMORY);
        }
        if (rv == TOKEND_OK) {
            rv = series_bucket_trim_ips(&stored, s->max_ips);
        }
        if (rv == TOKEND_OK) {
            rv = store_batch_put_series(batch, sb->key, sb->klen, &stored, err);
        }
        series_bucket_free(&stored);
        if (rv != TOKEND_OK) {
            return rv == TOKEND_INTERNAL
                       ? error_set(err, rv, "out of memory staging usage series")
                       : rv;
        }
    }
    return TOKEND_OK;
}

static void staging_free(staging *g) {
    for (size_t i = 0; i < g->n; i++) {
        series_bucket_free(&g->items[i].b);
    }
    free(g->items);
    free(g->index);
}

int series_stage(series *s, store *st, store_batch *batch, size_t *staged,
                 uint64_t *dropped, tokend_error *err) {
    pthread_mutex_lock(&s->lock);
    *dropped = s->dropped;
    s->dropped = 0;
    series_table *t = s->live;
    s->live = s->flushing;
    s->flushing = t;
    pthread_mutex_unlock(&s->lock);
    /* The flushing table is the writer's alone from here (readers only
     * read it, under the lock), so it is read without the lock. */
    *staged = t->used;
    if (t->used == 0) {
        return TOKEND_OK;
    }
    staging g = {0};
    g.nslots = 16;
    while (g.nslots < t->used * 6 * 2) {
        g.nslots *= 2;
    }
    g.index = calloc(g.nslots, sizeof(*g.index));
    int rv = g.index != NULL
                 ? TOKEND_OK
                 : error_set(err, TOKEND_INTERNAL, "out of memory staging usage series");
    for (size_t i = 0; i < t->used && rv == TOKEND_OK; i++) {
        rv = stage_entry(s, &g, &t->entries[i]);
        if (rv != TOKEND_OK) {
            rv = error_set(err, rv, "out of memory staging usage series");
        }
    }
    if (rv == TOKEND_OK) {
        rv = stage_write(s, &g, st, batch, err);
    }
    staging_free(&g);
    return rv;
}

void series_commit_begin(series *s) {
    pthread_mutex_lock(&s->lock);
    atomic_fetch_add(&s->epoch, 1);
    pthread_mutex_unlock(&s->lock);
}

/* Ends a commit's odd epoch, if one began. Lock held. */
static void commit_end_locked(series *s) {
    if (atomic_load(&s->epoch) % 2 == 1) {
        atomic_fetch_add(&s->epoch, 1);
    }
}

void series_flushed(series *s) {
    pthread_mutex_lock(&s->lock);
    table_clear(s, s->flushing);
    commit_end_locked(s);
    pthread_mutex_unlock(&s->lock);
}

void series_restore(series *s) {
    pthread_mutex_lock(&s->lock);
    series_table *t = s->flushing;
    for (size_t i = 0; i < t->used; i++) {
        const series_entry *f = &t->entries[i];
        series_entry *e = entry_of(s, s->live, f->id, f->owner, f->minute);
        if (e == NULL) {
            s->dropped += f->b.outcomes[0] + f->b.outcomes[1] + f->b.outcomes[2] +
                          f->b.outcomes[3] + f->b.outcomes[4];
            continue;
        }
        (void)bucket_add(&e->b, &f->b, s->max_routes, s->max_ips * SERIES_IPS_IN_MEMORY,
                         &s->text_bytes);
    }
    table_clear(s, t);
    commit_end_locked(s);
    pthread_mutex_unlock(&s->lock);
}

/* ------------------------------------------------------------------------
 * Reading. */

/* The buckets of a read being gathered, by start time. */
typedef struct gathered {
    series *s;
    series_bucket *b;
    int64_t *starts;
    size_t n, cap;
} gathered;

static void gathered_clear(gathered *g) {
    for (size_t i = 0; i < g->n; i++) {
        series_bucket_free(&g->b[i]);
    }
    g->n = 0;
}

/* The bucket of `start` in g (kept sorted), made if missing. */
static series_bucket *gathered_at(gathered *g, int64_t start) {
    size_t lo = 0, hi = g->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (g->starts[mid] < start) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo < g->n && g->starts[lo] == start) {
        return &g->b[lo];
    }
    if (g->n == g->cap) {
        size_t cap = g->cap == 0 ? 64 : g->cap * 2;
        series_bucket *nb = realloc(g->b, cap * sizeof(*nb));
        if (nb == NULL) {
            return NULL;
        }
        g->b = nb;
        int64_t *ns = realloc(g->starts, cap * sizeof(*ns));
        if (ns == NULL) {
            return NULL;
        }
        g->starts = ns;
        g->cap = cap;
    }
    memmove(&g->b[lo + 1], &g->b[lo], (g->n - lo) * sizeof(*g->b));
    memmove(&g->starts[lo + 1], &g->starts[lo], (g->n - lo) * sizeof(*g->starts));
    memset(&g->b[lo], 0, sizeof(g->b[lo]));
    g->starts[lo] = start;
    g->n++;
    return &g->b[lo];
}

static int gather_add(gathered *g, int64_t start, const series_bucket *b) {
    series_bucket *dst = gathered_at(g, start);
    if (dst == NULL) {
        return TOKEND_INTERNAL;
    }
    return series_bucket_add(dst, b, g->s->max_routes,
                             g->s->max_ips * SERIES_IPS_IN_MEMORY);
}

static int gather_stored(void *arg, int64_t start, series_bucket *b) {
    int rv = gather_add(arg, start, b);
    series_bucket_free(b);
    return rv;
}

static bool entry_in(const series_entry *e, series_scope scope, const char *name) {
    switch (scope) {
        case SERIES_TOKEN:
            return strcmp(e->id, name) == 0;
        case SERIES_OWNER:
            return e->owner != NULL && strcmp(e->owner, name) == 0;
        default:
            return true;
    }
}

/* Adds the table entries of the series in [from, to). Lock held. */
static int gather_memory(gathered *g, series_scope scope, series_step step,
                         const char *name, int64_t from_ms, int64_t to_ms) {
    const series_table *tables[2] = {g->s->live, g->s->flushing};
    for (int t = 0; t < 2; t++) {
        for (size_t i = 0; i < tables[t]->used; i++) {
            const series_entry *e = &tables[t]->entries[i];
            int64_t start =
                step == SERIES_HOUR ? e->minute - e->minute % SERIES_HOUR_MS : e->minute;
            if (start < from_ms || start >= to_ms || !entry_in(e, scope, name)) {
                continue;
            }
            int rv = gather_add(g, start, &e->b);
            if (rv != TOKEND_OK) {
                return rv;
            }
        }
    }
    return TOKEND_OK;
}

static void sleep_ms(int ms) {
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

int series_read(series *s, store *st, series_scope scope, series_step step,
                const char *name, int64_t from_ms, int64_t to_ms, series_bucket **out,
                int64_t **starts, size_t *n, tokend_error *err) {
    gathered g = {.s = s};
    int rv = TOKEND_UNAVAILABLE;
    /* A commit of an unsynced batch takes milliseconds; 2 s of them is a
     * writer stuck, not a race. */
    for (int tries = 0; tries < 2000 && rv == TOKEND_UNAVAILABLE; tries++) {
        uint64_t before = atomic_load(&s->epoch);
        if (before % 2 == 1) {
            sleep_ms(1);
            continue;
        }
        gathered_clear(&g);
        rv = store_series_range(st, scope, step, name, from_ms, to_ms, gather_stored, &g,
                                err);
        if (rv != TOKEND_OK) {
            break;
        }
        pthread_mutex_lock(&s->lock);
        if (atomic_load(&s->epoch) == before) {
            int64_t oldest = store_series_oldest(st, step, rpc_now_ms());
            rv = gather_memory(&g, scope, step, name, from_ms > oldest ? from_ms : oldest,
                               to_ms);
        } else {
            rv = TOKEND_UNAVAILABLE;
        }
        pthread_mutex_unlock(&s->lock);
    }
    for (size_t i = 0; i < g.n && rv == TOKEND_OK; i++) {
        rv = series_bucket_trim_ips(&g.b[i], s->max_ips);
    }
    if (rv != TOKEND_OK) {
        gathered_clear(&g);
        free(g.b);
        free(g.starts);
        if (rv == TOKEND_UNAVAILABLE) {
            return error_set(err, rv, "the usage flush did not finish in time");
        }
        return rv == TOKEND_INTERNAL ? error_set(err, rv, "out of memory reading usage")
                                     : rv;
    }
    *out = g.b;
    *starts = g.starts;
    *n = g.n;
    return TOKEND_OK;
}
