/*
 * test_writes.c — writes in the writer's serial order, against the real
 * tokend through libtokend: whatever lands in one commit group, the
 * outcome is that of the acknowledged writes applied one after another
 * (docs/design.md, "Writes, durability, group commit").
 *
 * The race it holds shut: six threads create tokens with a tokens:write
 * credential C of owner O while O's tokens are revoked all at once. A
 * create is authenticated when its request is handled but applied later
 * by the writer; revoke-all used to read only committed data, so creates
 * queued before it in the same group escaped it, and creates queued after
 * it were applied with C already revoked. Either way tokens of O survived
 * an acknowledged revoke-all. Both cases come up in every few trials: the
 * test counts the second kind (refused by the writer, "before this write
 * was applied") and fails if it never saw one. And six revokes of one
 * token at once revoke it once: one OK, the others NOT_FOUND.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "test.h"

#define TOK 128
#define RACE_THREADS 6
#define RACE_TRIALS 30
/* Creates every thread may make in one trial, at most. */
#define RACE_MAX_CREATES 300
/* The revoke-all goes out once this many creates were acknowledged. */
#define RACE_REVOKE_AFTER 12

typedef struct race_made {
    char token[TOK];
    char id[TOK];
} race_made;

typedef struct race {
    tokend_client *as_c; /* credential C, of owner O */
    atomic_int acknowledged;
    atomic_bool revoke_acked;
    struct race_thread {
        pthread_t thread;
        struct race *r;
        race_made made[RACE_MAX_CREATES];
        size_t n_made;
        int refused;           /* UNAUTHENTICATED answers */
        int refused_applied;   /* of those, refused when the writer applied it */
        int after_ack;         /* creates sent after the revoke-all's answer */
        int after_ack_refused; /* of those, answered UNAUTHENTICATED */
        int other;             /* any other answer: a failure */
        char other_text[320];
    } t[RACE_THREADS];
} race;

static const char *const race_abilities[] = {"orders:read"};

/* Creates tokens of O with C until C is refused, and once more after the
 * revoke-all was answered (which must be refused too). */
static void *race_thread_main(void *arg) {
    struct race_thread *t = arg;
    for (int i = 0; i < RACE_MAX_CREATES; i++) {
        bool after = atomic_load(&t->r->revoke_acked);
        tokend_create_params params = {
            .name = "racer", .abilities = race_abilities, .n_abilities = 1};
        tokend_created created;
        tokend_error err = {0};
        int rv = tokend_create(t->r->as_c, NULL, &params, &created, &err);
        t->after_ack += after;
        if (rv == TOKEND_OK) {
            race_made *m = &t->made[t->n_made++];
            snprintf(m->token, sizeof(m->token), "%s", created.token);
            snprintf(m->id, sizeof(m->id), "%s", created.info.id);
            tokend_created_free(&created);
            atomic_fetch_add(&t->r->acknowledged, 1);
        } else if (rv == TOKEND_UNAUTHENTICATED) {
            t->refused++;
            t->refused_applied +=
                test_contains(err.message, "before this write was applied");
            t->after_ack_refused += after;
        } else {
            t->other++;
            snprintf(t->other_text, sizeof(t->other_text), "%s: %s",
                     tokend_status_name(rv), err.message);
        }
        if (after) {
            break;
        }
    }
    return NULL;
}

/* Every token of `owner` there is now, through the admin, page by page. */
static size_t count_owner(tokend_client *admin, const char *owner) {
    size_t total = 0;
    char *cursor = NULL;
    for (int pages = 0; pages < 100; pages++) {
        tokend_token_page page;
        REQUIRE(tokend_list(admin, NULL, owner, 1000, cursor, &page, NULL) == TOKEND_OK);
        total += page.n_tokens;
        free(cursor);
        cursor = page.next_cursor != NULL ? strdup(page.next_cursor) : NULL;
        tokend_token_page_free(&page);
        if (cursor == NULL) {
            break;
        }
    }
    free(cursor);
    return total;
}

/* One trial: owner O with C (the racers' credential), T (a bystander) and
 * D (a second tokens:write credential). The revoke-all of O comes from
 * the admin in odd trials and from D ("sign me out everywhere") in even
 * ones. After it is answered: O has no token at all; every create that
 * was acknowledged was counted by it (so it was applied before it: the
 * revoke-all revoked exactly C, T, D and those); every create sent after
 * the answer was refused UNAUTHENTICATED; nothing else was answered. */
static void race_trial(const tokend_proc *p, tokend_client *admin, int trial,
                       int *survivors, int *uncounted, int *refused_applied) {
    static const char *const cred_abilities[] = {"tokens:write", "orders:read"};
    char owner[64], c[TOK], d[TOK], bystander[TOK];
    snprintf(owner, sizeof(owner), "race:%d", trial);
    harness_create(admin, owner, "C", cred_abilities, 2, 0, c, TOK, NULL, 0);
    harness_create(admin, owner, "T", race_abilities, 1, 0, bystander, TOK, NULL, 0);
    harness_create(admin, owner, "D", cred_abilities, 2, 0, d, TOK, NULL, 0);
    tokend_client *as_d = harness_client(p, d);

    static race r;
    memset(&r, 0, sizeof(r));
    r.as_c = harness_client(p, c);
    for (int i = 0; i < RACE_THREADS; i++) {
        r.t[i].r = &r;
        REQUIRE(pthread_create(&r.t[i].thread, NULL, race_thread_main, &r.t[i]) == 0);
    }
    struct timespec pause = {.tv_nsec = 200 * 1000};
    for (int spins = 0; atomic_load(&r.acknowledged) < RACE_REVOKE_AFTER && spins < 20000;
         spins++) {
        nanosleep(&pause, NULL);
    }
    uint64_t revoked = 0;
    tokend_error err = {0};
    int rv = tokend_revoke_owner(trial % 2 ? admin : as_d, NULL, owner, &revoked, &err);
    atomic_store(&r.revoke_acked, true);
    for (int i = 0; i < RACE_THREADS; i++) {
        pthread_join(r.t[i].thread, NULL);
    }
    if (rv != TOKEND_OK) {
        test_fail(__FILE__, __LINE__, "trial %d: revoke-all: %s (%s)", trial,
                  tokend_status_name(rv), err.message);
    }

    size_t made = 0;
    int left = 0;
    for (int i = 0; i < RACE_THREADS; i++) {
        const struct race_thread *t = &r.t[i];
        made += t->n_made;
        *refused_applied += t->refused_applied;
        for (size_t k = 0; k < t->n_made; k++) {
            int v = tokend_verify(admin, NULL, t->made[k].token, NULL, 0,
                                  TOKEND_ABILITIES_ALL, NULL, NULL);
            left += v != TOKEND_NOT_FOUND;
        }
        if (t->after_ack != 1 || t->after_ack_refused != 1) {
            test_fail(__FILE__, __LINE__,
                      "trial %d, thread %d: %d creates sent after the revoke-all's "
                      "answer, %d refused UNAUTHENTICATED; want 1 and 1",
                      trial, i, t->after_ack, t->after_ack_refused);
        }
        if (t->other > 0) {
            test_fail(__FILE__, __LINE__, "trial %d, thread %d: %d creates answered %s",
                      trial, i, t->other, t->other_text);
        }
    }
    size_t listed = count_owner(admin, owner);
    *survivors += (int)listed;
    if (left > 0 || listed > 0) {
        test_fail(__FILE__, __LINE__,
                  "trial %d: after the acknowledged revoke-all %d acknowledged creates "
                  "still verify and %zu tokens of %s are listed",
                  trial, left, listed, owner);
    }
    if (revoked != 3 + made) {
        *uncounted += (int)((long long)(3 + made) - (long long)revoked);
        test_fail(__FILE__, __LINE__,
                  "trial %d: revoke-all revoked %llu, want 3 + the %zu acknowledged "
                  "creates",
                  trial, (unsigned long long)revoked, made);
    }
    CHECK_INT(
        tokend_verify(admin, NULL, bystander, NULL, 0, TOKEND_ABILITIES_ALL, NULL, NULL),
        TOKEND_NOT_FOUND);
    tokend_close(r.as_c);
    tokend_close(as_d);
}

/* tokend on a fresh store, and a client of its admin. */
static tokend_client *writes_start(tokend_proc *p) {
    memset(p, 0, sizeof(*p));
    harness_init(p);
    REQUIRE(harness_start(p));
    return harness_client(p, p->admin);
}

TEST(writes_revoke_all_leaves_no_survivor_of_racing_creates) {
    tokend_proc p;
    tokend_client *admin = writes_start(&p);
    int survivors = 0, uncounted = 0, refused_applied = 0;
    for (int trial = 0; trial < RACE_TRIALS; trial++) {
        race_trial(&p, admin, trial, &survivors, &uncounted, &refused_applied);
    }
    /* Creates authenticated before the revoke-all but applied after it
     * (about three a trial): refused by the writer's own check. None means
     * the race was never run as it must be. */
    if (refused_applied == 0) {
        test_fail(__FILE__, __LINE__,
                  "over %d trials no create was refused when applied: no create "
                  "ever queued behind the revoke-all",
                  RACE_TRIALS);
    }
    if (survivors > 0 || uncounted > 0) {
        test_fail(__FILE__, __LINE__,
                  "over %d trials: %d tokens survived a revoke-all, %d acknowledged "
                  "creates were not counted by it",
                  RACE_TRIALS, survivors, uncounted);
    }
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
}

/* What harness_race runs: one revoke of `id` as the admin. */
typedef struct revoke_race {
    tokend_client *admin;
    const char *id;
} revoke_race;

static int revoke_once(void *arg, int i) {
    (void)i;
    const revoke_race *r = arg;
    return tokend_revoke_id(r->admin, NULL, r->id, NULL, NULL);
}

/* Six revokes of one token at once: in the writer's order the first
 * revokes it and the others find it gone, also when they share its
 * commit group. (Before, every revoke in the group read the committed
 * token and answered OK.) */
TEST(writes_concurrent_revokes_of_one_token_revoke_it_once) {
    tokend_proc p;
    tokend_client *admin = writes_start(&p);
    int extra_ok = 0;
    for (int trial = 0; trial < RACE_TRIALS; trial++) {
        char id[TOK];
        harness_create(admin, "race:revokes", "target", race_abilities, 1, 0, NULL, 0, id,
                       sizeof(id));
        revoke_race r = {.admin = admin, .id = id};
        int status[RACE_THREADS];
        harness_race(RACE_THREADS, revoke_once, &r, status);
        int ok = 0, not_found = 0;
        for (int i = 0; i < RACE_THREADS; i++) {
            ok += status[i] == TOKEND_OK;
            not_found += status[i] == TOKEND_NOT_FOUND;
        }
        if (ok != 1 || not_found != RACE_THREADS - 1) {
            extra_ok += ok - 1;
            test_fail(__FILE__, __LINE__,
                      "trial %d: %d revokes of one token answered OK, %d NOT_FOUND; want "
                      "1 and %d",
                      trial, ok, not_found, RACE_THREADS - 1);
        }
    }
    CHECK_INT(extra_ok, 0);
    tokend_close(admin);
    CHECK_INT(harness_stop(&p), 0);
}
