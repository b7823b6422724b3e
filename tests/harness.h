/*
 * harness.h — integration-test helpers: run the real tokend on a temporary
 * data dir and ipc:// socket, the real tokend-gateway in front of it on a
 * free TCP port, run tokenctl and curl as a user would, and read what they
 * wrote. Binaries are found beside the test runner (build/tokend for
 * build/tests/run), so `make asan` tests the sanitized ones.
 */
#ifndef TOKEND_HARNESS_H
#define TOKEND_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "tokend.h"

typedef struct tokend_proc {
    pid_t pid;             /* 0 when not running */
    char dir[320];         /* scratch dir holding data/, the socket and the log */
    char data_dir[340];    /* dir/data */
    char log_path[340];    /* dir/tokend.log: stderr of every serve */
    char url[360];         /* ipc://dir/tokend.sock */
    char admin[128];       /* the admin token `tokend init` printed */
    const char *extra[16]; /* extra serve flags, NULL-terminated */
} tokend_proc;

/* Path of a built program ("tokend", "tokenctl"), static storage. */
const char *harness_bin(const char *name);

/* Makes a scratch dir and runs `tokend init` there, keeping the admin
 * token. Aborts the test (REQUIRE) on failure. */
void harness_init(tokend_proc *p);

/* Starts `tokend serve` (with p->extra flags) and waits until it answers.
 * Returns false if it did not come up within 10 s (100 s under
 * TEST_WRAPPER, which runs our binaries under e.g. valgrind). */
bool harness_start(tokend_proc *p);

/* SIGTERM and wait; returns the exit status (or -1). A status other than
 * 0 fails the test (with the service's log), since a clean stop must be. */
int harness_stop(tokend_proc *p);

/* SIGKILL and wait. */
void harness_kill9(tokend_proc *p);

/* A client for p with `credential` (NULL for none), 3 s timeout. */
tokend_client *harness_client(const tokend_proc *p, const char *credential);

/* Runs a program with argv (NULL-terminated, argv[0] a harness_bin path or
 * a name on PATH), `stdin_text` on its stdin (NULL: empty), extra
 * environment `env` ("K=V" strings, NULL-terminated, may be NULL). Returns
 * the exit code (128+signal if killed); *out and *err get malloc'd stdout
 * and stderr (either may be NULL). */
int harness_exec(const char *const *argv, const char *stdin_text, const char *const *env,
                 char **out, char **err);

/* Reads a whole file (malloc'd, NUL-terminated) or NULL. */
char *harness_read_file(const char *path);

/* True if `needle` occurs in any regular file below `dir` (like grep -r). */
bool harness_dir_contains(const char *dir, const char *needle);

/* Creates a token through the client as the admin; REQUIREs success.
 * token_out gets the plain text, id_out the id (either may be NULL). */
void harness_create(tokend_client *admin, const char *owner, const char *name,
                    const char *const *abilities, size_t n, int64_t expires_in_s,
                    char *token_out, size_t token_size, char *id_out, size_t id_size);

/* Runs call(arg, i) for each i in 0..n-1 (n at most 64) on a thread of
 * its own, all released at once by a barrier so that they reach the
 * service together, and returns when every one has: status[i] is what
 * call i returned. For races, such as revokes of one token at once. */
void harness_race(int n, int (*call)(void *arg, int i), void *arg, int *status);

typedef struct gateway_proc {
    pid_t pid;             /* 0 when not running */
    int port;              /* the port it listens on, once started */
    char dir[320];         /* scratch dir holding the log */
    char log_path[340];    /* dir/gateway.log: stderr of every start */
    char base[64];         /* "http://127.0.0.1:PORT" (https:// with --tls-cert) */
    const char *extra[24]; /* extra flags, NULL-terminated */
} gateway_proc;

/* Starts tokend-gateway for `service_url` on 127.0.0.1:`port` (0: a free
 * port, read back from the gateway's log) with g->extra flags, and waits
 * until it listens. g->dir is made on the first start. Returns false (and
 * prints the log) if it did not come up within 10 s (100 s under
 * TEST_WRAPPER). */
bool harness_gateway_start(gateway_proc *g, const char *service_url, int port);

/* SIGTERM and wait; returns the exit status. A status other than 0 fails
 * the test (with the gateway's log). */
int harness_gateway_stop(gateway_proc *g);

/* A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0 and
 * read it back). */
int harness_free_port(void);

/* A socket listening on 127.0.0.1 on a port of its own, without
 * SO_REUSEPORT: what any other program holding the port looks like.
 * Returns the fd (the caller closes it); *port gets the port. */
int harness_occupy_port(int *port);

/* harness_init and harness_start, printing tokend's log and ending the
 * test if it did not start. */
void harness_start_or_die(tokend_proc *p);

/* The wall clock, Unix ms (what tokend stamps times with). */
int64_t harness_now_ms(void);

/* The calls under `key` in a usage series, summed over its buckets, in
 * map 'o' (outcomes), 'r' (routes) or 'c' (client addresses). */
uint64_t harness_usage_sum(const tokend_usage *u, char map, const char *key);

/* One curl run: status, headers (every block), body, wall time. */
typedef struct http_res {
    int status;
    int curl_rc;
    char *headers;
    char *body;
    double seconds;
} http_res;

/* Frees r's strings and zeroes it. */
void res_free(http_res *r);

/* Runs curl (-sS, 10 s limit) with `args` (NULL-terminated); fills *r
 * (free with res_free, or call again: it frees first). Returns the HTTP
 * status (0: none). Headers and body go through files in a scratch dir. */
int curl_call(http_res *r, const char *const *args);

#define CURL(r, ...) curl_call((r), (const char *const[]){__VA_ARGS__, NULL})

#endif /* TOKEND_HARNESS_H */
