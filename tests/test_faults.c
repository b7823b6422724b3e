/*
 * test_faults.c — the service on a data dir that stops taking writes: made
 * read-only under it, or full. Writes must fail promptly with
 * STORAGE_ERROR (503 through the gateway), reads must go on, nothing
 * acknowledged may be lost, nothing refused may appear, and a full disk
 * must recover by itself once space returns.
 *
 * Both tests mount a file system of their own, so they need root (as the
 * suite runs, locally and in CI). Where mounting is refused (not root, no
 * CAP_SYS_ADMIN, no loop device) they skip, with the system's reason in
 * their line (test_skip); any other failure to mount fails them. Every mount is detached
 * on the way out, also when a check fails or the test times out (atexit and a SIGALRM
 * handler), so a failing test leaves nothing mounted.
 *
 * Read-only: Linux refuses `mount -o remount,ro` (EBUSY) while any file is
 * open for writing, and tokend always has its WAL open. A data dir turns
 * read-only under a running service when its file system hits an error
 * (ext4 errors=remount-ro), so that is what the test does: an ext4 image
 * on a loop device, and ext4's own trigger_fs_error. Such a file system
 * stays read-only until it is unmounted and checked, so recovery there is
 * a restart; the full-disk test shows recovery without one.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "test.h"

/* ------------------------------------------------------------------------
 * Mounts that are always undone. */

static char mounted_at[340];      /* "" when nothing is mounted */
static volatile pid_t tokend_pid; /* to kill before a forced unmount */
static volatile pid_t gateway_pid;

/* Kills what runs on the mount and detaches it (lazily, so a busy mount
 * goes as soon as its last file closes; a loop device mounted with -o loop
 * is freed with it). Async-signal-safe. */
static void unmount_all(void) {
    if (tokend_pid > 0) {
        kill(tokend_pid, SIGKILL);
    }
    if (gateway_pid > 0) {
        kill(gateway_pid, SIGKILL);
    }
    if (mounted_at[0] != '\0') {
        umount2(mounted_at, MNT_DETACH);
        mounted_at[0] = '\0';
    }
}

static void on_alarm(int sig) {
    unmount_all();
    signal(sig, SIG_DFL);
    raise(sig); /* the runner reports the timeout */
}

static void guard_mount(const char *dir) {
    static bool installed;
    snprintf(mounted_at, sizeof(mounted_at), "%s", dir);
    if (!installed) {
        atexit(unmount_all);
        signal(SIGALRM, on_alarm);
        installed = true;
    }
}

/* Runs a command (NULL-terminated argv); returns its exit code, putting its
 * output in the failure message if it is not one of `ok` codes. */
static int run(int ok_max, const char *const *argv) {
    char *out = NULL, *err = NULL;
    int rc = harness_exec(argv, NULL, NULL, &out, &err);
    if (rc > ok_max) {
        test_fail(__FILE__, __LINE__, "%s exited %d: %s%s", argv[0], rc, out ? out : "",
                  err ? err : "");
    }
    free(out);
    free(err);
    return rc;
}

#define RUN(ok_max, ...) run((ok_max), (const char *const[]){__VA_ARGS__, NULL})

/* Mounts a tmpfs of `size` ("32m") on `dir`. Skips the test if this
 * process may not mount (EPERM: not root, or no CAP_SYS_ADMIN); fails it,
 * saying why, on any other error. */
static void mount_tmpfs(const char *dir, const char *size) {
    char opts[64];
    snprintf(opts, sizeof(opts), "size=%s,mode=0700", size);
    if (mount("tmpfs", dir, "tmpfs", 0, opts) != 0) {
        int e = errno;
        if (e == EPERM) {
            test_skip("cannot mount a tmpfs: %s; this test needs root (CAP_SYS_ADMIN)",
                      strerror(e));
        }
        test_fail(__FILE__, __LINE__, "cannot mount a tmpfs on %s: %s", dir, strerror(e));
        exit(1);
    }
    guard_mount(dir);
}

/* Changes the size of the tmpfs on `dir`. */
static void remount_tmpfs(const char *dir, const char *size) {
    char opts[64];
    snprintf(opts, sizeof(opts), "size=%s,mode=0700", size);
    if (mount("tmpfs", dir, "tmpfs", MS_REMOUNT, opts) != 0) {
        test_fail(__FILE__, __LINE__, "cannot resize the tmpfs on %s to %s: %s", dir,
                  size, strerror(errno));
        exit(1);
    }
}

/* True if mount(8)'s complaint `said` (or this process) shows mounting is
 * not allowed here, rather than broken: not root, no right to mount, no
 * loop device to be had. */
static bool mount_refused(const char *said) {
    static const char *const refusals[] = {
        "must be superuser",
        "permission denied",
        "operation not permitted",
        "failed to setup loop",
        "could not find any free loop",
    };
    if (geteuid() != 0 || access("/dev/loop-control", F_OK) != 0) {
        return true;
    }
    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
        if (strcasestr(said, refusals[i]) != NULL) {
            return true;
        }
    }
    return false;
}

/* Makes an ext4 image of 64 MiB in `img` and mounts it on `dir` through a
 * loop device, errors=remount-ro. Skips the test where mounting is refused
 * (mount_refused); fails it otherwise. */
static void mount_ext4(const char *img, const char *dir) {
    if (access("/sbin/mkfs.ext4", X_OK) != 0 &&
        access("/usr/sbin/mkfs.ext4", X_OK) != 0) {
        test_fail(__FILE__, __LINE__,
                  "mkfs.ext4 is missing: `make deps` installs e2fsprogs");
        exit(1);
    }
    int fd = open(img, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0 && ftruncate(fd, (off_t)64 << 20) == 0);
    close(fd);
    REQUIRE(RUN(0, "mkfs.ext4", "-q", "-F", img) == 0);
    char *err = NULL;
    int rc = harness_exec(
        (const char *const[]){"mount", "-o", "loop,errors=remount-ro", img, dir, NULL},
        NULL, NULL, NULL, &err);
    if (rc != 0) {
        char reason[256];
        snprintf(reason, sizeof(reason), "%s", err != NULL ? err : "");
        reason[strcspn(reason, "\n")] = '\0';
        free(err);
        if (mount_refused(reason)) {
            test_skip("cannot mount an ext4 image on a loop device: %s; this test needs "
                      "root and loop devices (/dev/loop-control)",
                      reason);
        }
        test_fail(__FILE__, __LINE__, "cannot mount an ext4 image on a loop device: %s",
                  reason);
        exit(1);
    }
    free(err);
    guard_mount(dir);
}

/* Makes the ext4 file system on `dir` hit an error, so that the kernel
 * turns it read-only at once, under every open file. */
static void ext4_fail(const char *dir) {
    char *src = NULL;
    int rc =
        harness_exec((const char *const[]){"findmnt", "-n", "-o", "SOURCE", dir, NULL},
                     NULL, NULL, &src, NULL);
    REQUIRE(rc == 0 && src != NULL && strncmp(src, "/dev/", 5) == 0);
    src[strcspn(src, "\n")] = '\0';
    char path[128];
    snprintf(path, sizeof(path), "/sys/fs/ext4/%s/trigger_fs_error",
             strrchr(src, '/') + 1);
    free(src);
    int fd = open(path, O_WRONLY);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, "tokend fault test\n", 18) == 18);
    close(fd);
}

/* Fills the file system holding `dir` with `dir`/filler; returns its size. */
static long long fill(const char *dir) {
    char path[360];
    snprintf(path, sizeof(path), "%s/filler", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    static char block[1 << 16];
    long long total = 0;
    for (size_t size = sizeof(block); size >= 512; size /= 2) {
        ssize_t w;
        while ((w = write(fd, block, size)) > 0) {
            total += w;
        }
    }
    CHECK(errno == ENOSPC);
    close(fd);
    return total;
}

/* ------------------------------------------------------------------------
 * tokend on a given data dir. */

/* harness_init, but with the store in `data_dir` (on the test's mount). */
static void init_at(tokend_proc *p, const char *data_dir) {
    memset(p, 0, sizeof(*p));
    snprintf(p->dir, sizeof(p->dir), "%s", test_tmpdir());
    snprintf(p->data_dir, sizeof(p->data_dir), "%s", data_dir);
    snprintf(p->log_path, sizeof(p->log_path), "%s/tokend.log", p->dir);
    snprintf(p->url, sizeof(p->url), "ipc://%s/tokend.sock", p->dir);
    char *out = NULL;
    REQUIRE(harness_exec((const char *const[]){harness_bin("tokend"), "init",
                                               "--data-dir", p->data_dir, NULL},
                         NULL, NULL, &out, NULL) == 0);
    REQUIRE(out != NULL && strcspn(out, "\n") < sizeof(p->admin));
    snprintf(p->admin, sizeof(p->admin), "%.*s", (int)strcspn(out, "\n"), out);
    free(out);
}

static void start(tokend_proc *p) {
    REQUIRE(harness_start(p));
    tokend_pid = p->pid;
}

static void stop(tokend_proc *p) {
    CHECK_INT(harness_stop(p), 0);
    tokend_pid = 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define MAX_TOKENS 600

/* What the test was told: acknowledged tokens, and names refused. */
typedef struct ledger {
    char token[MAX_TOKENS][128];
    char id[MAX_TOKENS][32];
    char name[MAX_TOKENS][32];
    bool revoked[MAX_TOKENS];
    size_t n;
    char refused[MAX_TOKENS][32];
    size_t n_refused;
} ledger;

static const char *const ABILITIES[] = {"orders:read"};
#define OWNER "partner:faults"

/* One create of a token named `name`, with a 1 KiB metadata value so that
 * a disk fills in fewer calls. Returns the status; an acknowledged token
 * goes into the ledger, a refused name into its refused list. */
static int create(tokend_client *admin, ledger *l, const char *name, double *seconds) {
    static char big[1025];
    memset(big, 'm', 1024);
    tokend_kv meta = {.key = "padding", .value = big};
    tokend_create_params params = {.owner = OWNER,
                                   .name = name,
                                   .abilities = ABILITIES,
                                   .n_abilities = 1,
                                   .metadata = &meta,
                                   .n_metadata = 1};
    tokend_created c;
    tokend_error err;
    double t0 = now_s();
    int rv = tokend_create(admin, NULL, &params, &c, &err);
    if (seconds != NULL) {
        *seconds = now_s() - t0;
    }
    if (rv == TOKEND_OK) {
        REQUIRE(l->n < MAX_TOKENS);
        snprintf(l->token[l->n], sizeof(l->token[0]), "%s", c.token);
        snprintf(l->id[l->n], sizeof(l->id[0]), "%s", c.info.id);
        snprintf(l->name[l->n], sizeof(l->name[0]), "%s", name);
        l->n++;
        tokend_created_free(&c);
    } else {
        REQUIRE(l->n_refused < MAX_TOKENS);
        snprintf(l->refused[l->n_refused++], sizeof(l->refused[0]), "%s", name);
    }
    return rv;
}

/* What both tests hold before the fault: five tokens, the first revoked. */
static void seed(tokend_client *admin, ledger *l) {
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof(name), "before-%d", i);
        REQUIRE(create(admin, l, name, NULL) == TOKEND_OK);
    }
    REQUIRE(tokend_revoke_id(admin, NULL, l->id[0], NULL, NULL) == TOKEND_OK);
    l->revoked[0] = true;
}

/* Every acknowledged token verifies (or, if revoked, is NOT_FOUND), and
 * the owner's list holds exactly the live acknowledged names. */
static void check_ledger(tokend_client *admin, const ledger *l) {
    for (size_t i = 0; i < l->n; i++) {
        int rv = tokend_verify(admin, NULL, l->token[i], ABILITIES, 1,
                               TOKEND_ABILITIES_ALL, NULL, NULL);
        if (rv != (l->revoked[i] ? TOKEND_NOT_FOUND : TOKEND_OK)) {
            test_fail(__FILE__, __LINE__, "token %s (%s): verify %s", l->id[i],
                      l->name[i], tokend_status_name(rv));
        }
    }
    size_t live = 0, listed = 0;
    for (size_t i = 0; i < l->n; i++) {
        live += !l->revoked[i];
    }
    char *cursor = NULL;
    do {
        tokend_token_page page;
        int rv = tokend_list(admin, NULL, OWNER, 1000, cursor, &page, NULL);
        free(cursor);
        cursor = NULL;
        CHECK_INT(rv, TOKEND_OK);
        if (rv != TOKEND_OK) {
            break;
        }
        for (size_t k = 0; k < page.n_tokens; k++, listed++) {
            bool known = false;
            for (size_t i = 0; i < l->n; i++) {
                known =
                    known || (!l->revoked[i] && strcmp(l->id[i], page.tokens[k].id) == 0);
            }
            for (size_t i = 0; i < l->n_refused; i++) {
                if (strcmp(l->refused[i], page.tokens[k].name) == 0) {
                    test_fail(__FILE__, __LINE__, "refused create %s exists",
                              l->refused[i]);
                }
            }
            if (!known) {
                test_fail(__FILE__, __LINE__,
                          "listed token %s (%s) was never acknowledged",
                          page.tokens[k].id, page.tokens[k].name);
            }
        }
        cursor = page.next_cursor != NULL ? strdup(page.next_cursor) : NULL;
        tokend_token_page_free(&page);
    } while (cursor != NULL);
    CHECK_INT(listed, live);
}

/* Occurrences of `needle` in the service's log. */
static int log_count(const tokend_proc *p, const char *needle) {
    char *log = harness_read_file(p->log_path);
    int n = 0;
    for (const char *s = log; s != NULL && (s = strstr(s, needle)) != NULL; s++) {
        n++;
    }
    free(log);
    return n;
}

static bool log_has(const tokend_proc *p, const char *needle) {
    return log_count(p, needle) > 0;
}

/* While writes fail: creates and revokes are STORAGE_ERROR at once, and
 * the service stays up and keeps answering reads. `tag` names the refused
 * creates. */
static void check_writes_refused(const tokend_proc *p, tokend_client *admin, ledger *l,
                                 const char *tag) {
    for (int i = 0; i < 3; i++) {
        double secs = 0;
        char name[32];
        snprintf(name, sizeof(name), "%s-refused-%d", tag, i);
        CHECK_INT(create(admin, l, name, &secs), TOKEND_STORAGE_ERROR);
        CHECK(secs < 1.0);
    }
    tokend_error err;
    CHECK_INT(tokend_revoke_id(admin, NULL, l->id[1], NULL, &err), TOKEND_STORAGE_ERROR);
    CHECK(test_contains(err.message, "nothing was revoked"));
    CHECK_INT(tokend_revoke_token(admin, NULL, l->token[2], NULL, NULL),
              TOKEND_STORAGE_ERROR);
    CHECK_INT(tokend_revoke_owner(admin, NULL, OWNER, NULL, NULL), TOKEND_STORAGE_ERROR);
    /* Verifies (which count usage, written behind every 100 ms here) and
     * lists go on; a second later the service is still up. */
    for (int i = 0; i < 20; i++) {
        CHECK_INT(tokend_verify(admin, NULL, l->token[3], ABILITIES, 1,
                                TOKEND_ABILITIES_ALL, NULL, NULL),
                  TOKEND_OK);
        usleep(50 * 1000);
    }
    check_ledger(admin, l);
    CHECK(kill(p->pid, 0) == 0);
    /* One line when writes stop, none per usage flush. */
    CHECK_INT(log_count(p, "event=store.writes_stopped"), 1);
    CHECK(log_count(p, "event=usage.flush_failed") <= 1);
}

/* ------------------------------------------------------------------------
 * The tests. */

TEST(faults_read_only_data_dir) {
    const char *dir = test_tmpdir();
    char img[340], mnt[330], data[340];
    snprintf(img, sizeof(img), "%s/ext4.img", dir);
    snprintf(mnt, sizeof(mnt), "%s/mnt", dir);
    snprintf(data, sizeof(data), "%s/data", mnt);
    REQUIRE(mkdir(mnt, 0700) == 0);
    mount_ext4(img, mnt);

    tokend_proc p;
    init_at(&p, data);
    start(&p);
    tokend_client *admin = harness_client(&p, p.admin);
    static ledger l;
    seed(admin, &l);

    ext4_fail(mnt);
    char probe[360];
    snprintf(probe, sizeof(probe), "%s/probe", mnt);
    int fd = open(probe, O_WRONLY | O_CREAT, 0600);
    CHECK(fd < 0 && errno == EROFS);
    if (fd >= 0) {
        close(fd);
    }

    check_writes_refused(&p, admin, &l, "ro");
    /* The OS's reason reaches the log. Which one depends on what the first
     * failing write touched as ext4 aborted its journal: EROFS for a write
     * after the remount, EIO for an fsync caught in it (RocksDB syncs the
     * data dir itself at times). Both mean the same to the writer. */
    CHECK(log_has(&p, "Read-only file system") || log_has(&p, "Input/output error"));
    /* It keeps trying, and keeps refusing, while the dir stays read-only. */
    usleep(1200 * 1000);
    CHECK_INT(create(admin, &l, "ro-refused-late", NULL), TOKEND_STORAGE_ERROR);
    CHECK(!log_has(&p, "event=store.writes_resumed"));
    tokend_close(admin);

    /* A clean stop still works (nothing to flush, nothing lost). ext4
     * after an error must be unmounted and checked before it is writable
     * again: that is the operator's repair, then a restart. */
    stop(&p);
    REQUIRE(umount(mnt) == 0);
    mounted_at[0] = '\0';
    CHECK(RUN(1, "e2fsck", "-f", "-y", img) <= 1); /* 1: errors corrected */
    REQUIRE(RUN(0, "mount", "-o", "loop", img, mnt) == 0);
    guard_mount(mnt);

    start(&p);
    admin = harness_client(&p, p.admin);
    check_ledger(admin, &l);
    CHECK_INT(create(admin, &l, "after-repair", NULL), TOKEND_OK);
    check_ledger(admin, &l);
    tokend_close(admin);
    stop(&p);
}

TEST(faults_full_disk) {
    const char *dir = test_tmpdir();
    char mnt[330], data[340];
    snprintf(mnt, sizeof(mnt), "%s/mnt", dir);
    snprintf(data, sizeof(data), "%s/data", mnt);
    REQUIRE(mkdir(mnt, 0700) == 0);
    mount_tmpfs(mnt, "64m");

    /* Shrunk after init: RocksDB reserves (fallocate) 17.6 MB for a new
     * WAL when it can, and writes into that reservation would go on long
     * after the disk is full. On 8 MB it cannot, as on any nearly full
     * disk, and the WAL grows a page at a time. */
    tokend_proc p;
    init_at(&p, data);
    remount_tmpfs(mnt, "8m");
    start(&p);
    gateway_proc g = {0};
    REQUIRE(harness_gateway_start(&g, p.url, 0));
    gateway_pid = g.pid;
    tokend_client *admin = harness_client(&p, p.admin);
    static ledger l;
    seed(admin, &l);

    CHECK(fill(mnt) > 0);
    /* The WAL's last page may still take a few records: creates go on
     * until one fails, and each acknowledged one must survive. */
    int rv = TOKEND_OK;
    for (int i = 0; i < 400 && rv == TOKEND_OK; i++) {
        char name[32];
        snprintf(name, sizeof(name), "filling-%d", i);
        rv = create(admin, &l, name, NULL);
    }
    CHECK_INT(rv, TOKEND_STORAGE_ERROR);
    check_writes_refused(&p, admin, &l, "full");
    CHECK(log_has(&p, "No space left on device"));

    /* Through the gateway: a refused write is 503 STORAGE_ERROR with a
     * problem document; an auth check is 200. */
    char bearer[200], auth[200];
    snprintf(bearer, sizeof(bearer), "Authorization: Bearer %s", p.admin);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", l.token[1]);
    char create_url[128], auth_url[128];
    snprintf(create_url, sizeof(create_url), "%s/v1/tokens", g.base);
    snprintf(auth_url, sizeof(auth_url), "%s/v1/auth?ability=orders:read", g.base);
    const char *body = "{\"owner\":\"" OWNER "\",\"name\":\"http-refused\","
                       "\"abilities\":[\"orders:read\"]}";
    http_res r = {0};
    CHECK_INT(CURL(&r, "-X", "POST", create_url, "-H", bearer, "-H",
                   "Content-Type: application/json", "-d", body),
              503);
    CHECK(test_contains(r.headers, "application/problem+json"));
    CHECK(test_contains(r.body, "\"STORAGE_ERROR\""));
    snprintf(l.refused[l.n_refused++], sizeof(l.refused[0]), "http-refused");
    CHECK_INT(CURL(&r, auth_url, "-H", auth), 200);

    /* Space returns (the filler goes, the file system grows): the service
     * resumes by itself, within a few probes. */
    char filler[360];
    snprintf(filler, sizeof(filler), "%s/filler", mnt);
    REQUIRE(unlink(filler) == 0);
    remount_tmpfs(mnt, "64m");
    double t0 = now_s();
    rv = TOKEND_STORAGE_ERROR;
    for (int i = 0; rv != TOKEND_OK && now_s() - t0 < 10; i++) {
        char name[32];
        snprintf(name, sizeof(name), "recovering-%d", i);
        rv = create(admin, &l, name, NULL);
        if (rv != TOKEND_OK) {
            CHECK_INT(rv, TOKEND_STORAGE_ERROR);
            usleep(200 * 1000);
        }
    }
    CHECK_INT(rv, TOKEND_OK);
    CHECK(log_has(&p, "event=store.writes_resumed"));
    CHECK_INT(CURL(&r, "-X", "POST", create_url, "-H", bearer, "-H",
                   "Content-Type: application/json", "-d",
                   "{\"owner\":\"" OWNER "\",\"name\":\"http-after\","
                   "\"abilities\":[\"orders:read\"]}"),
              201);
    /* That token exists but was not recorded here: revoke it by id. */
    char id[64] = "";
    const char *at = r.body != NULL ? strstr(r.body, "\"id\":\"") : NULL;
    REQUIRE(at != NULL && sscanf(at + 6, "%63[^\"]", id) == 1);
    CHECK_INT(tokend_revoke_id(admin, NULL, id, NULL, NULL), TOKEND_OK);
    res_free(&r);

    /* Revokes work again; the usage counted while writes failed was kept
     * and written once they resumed (20 verifies of l.token[3]). */
    CHECK_INT(tokend_revoke_id(admin, NULL, l.id[1], NULL, NULL), TOKEND_OK);
    l.revoked[1] = true;
    check_ledger(admin, &l);
    usleep(400 * 1000);
    tokend_token_page page;
    REQUIRE(tokend_list(admin, NULL, OWNER, 1000, NULL, &page, NULL) == TOKEND_OK);
    uint64_t uses = 0;
    for (size_t k = 0; k < page.n_tokens; k++) {
        if (strcmp(page.tokens[k].id, l.id[3]) == 0) {
            uses = page.tokens[k].use_count;
        }
    }
    CHECK(uses >= 20);
    tokend_token_page_free(&page);
    tokend_close(admin);

    /* And after a restart, everything acknowledged is there. */
    CHECK_INT(harness_gateway_stop(&g), 0);
    gateway_pid = 0;
    stop(&p);
    start(&p);
    admin = harness_client(&p, p.admin);
    check_ledger(admin, &l);
    tokend_close(admin);
    stop(&p);
}
