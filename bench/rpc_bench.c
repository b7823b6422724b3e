/*
 * rpc_bench.c — tokend's RPC cost next to the bare transport, measured in
 * the same run on the same machine.
 *
 * Reference: an NNG REP echo server of the same shape as tokend's (a pool
 * of aio-driven contexts, its own process) that answers each request with
 * a reply of the size a Verify reply has. The client side is the same for
 * both: the REQ socket pattern libtokend uses (a context per call), N
 * threads, sequential calls per thread.
 *
 * Usage: rpc_bench [--seconds S] [--threads N] [--tsv FILE]
 *        rpc_bench latency --url URL --tokens FILE [--url URL2 --tokens FILE2]
 *                          [--seconds S]
 *        rpc_bench echo-server URL REPLY_BYTES     (internal: the reference)
 * The first form starts its own tokend (../tokend relative to this
 * program) and echo server; --tsv writes the figures as lines of
 * "metric value unit reference ratio" for bench/run.sh. The latency form
 * verifies, from one caller, tokens picked at random from FILE (one per
 * line) on a running tokend, and prints "p50_us P p99_us Q calls N
 * errors E"; given two tokends (and files), it measures them in
 * alternating slices and prints a line for each (the scale benchmark:
 * bench/run.sh).
 */
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>

#include "rpc.h"
#include "rpc_client.h"
#include "tokend.h"

#define ECHO_CTXS 128

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the reference echo server ---- */

typedef struct echo_ctx {
    nng_ctx ctx;
    nng_aio *aio;
    int sending;
} echo_ctx;

static size_t echo_reply_bytes;

static void echo_cb(void *arg) {
    echo_ctx *e = arg;
    int rv = nng_aio_result(e->aio);
    if (e->sending) {
        if (rv != 0) {
            nng_msg_free(nng_aio_get_msg(e->aio));
        }
        e->sending = 0;
        nng_ctx_recv(e->ctx, e->aio);
        return;
    }
    if (rv != 0) {
        if (rv != NNG_ECLOSED) {
            nng_ctx_recv(e->ctx, e->aio);
        }
        return;
    }
    nng_msg *m = nng_aio_get_msg(e->aio);
    nng_msg_realloc(m, echo_reply_bytes);
    e->sending = 1;
    nng_aio_set_msg(e->aio, m);
    nng_ctx_send(e->ctx, e->aio);
}

static int echo_server(const char *url, size_t reply_bytes) {
    echo_reply_bytes = reply_bytes;
    nng_socket s;
    if (nng_rep0_open(&s) != 0 || nng_listen(s, url, NULL, 0) != 0) {
        fprintf(stderr, "echo-server: cannot listen on %s\n", url);
        return 1;
    }
    static echo_ctx ctxs[ECHO_CTXS];
    for (int i = 0; i < ECHO_CTXS; i++) {
        nng_aio_alloc(&ctxs[i].aio, echo_cb, &ctxs[i]);
        nng_ctx_open(&ctxs[i].ctx, s);
        nng_ctx_recv(ctxs[i].ctx, ctxs[i].aio);
    }
    for (;;) {
        pause();
    }
}

/* ---- processes ---- */

static char bindir[PATH_MAX];

static pid_t spawn(const char *const *argv, const char *log) {
    pid_t pid = fork();
    if (pid == 0) {
        if (log != NULL && freopen(log, "a", stderr) == NULL) {
            _exit(127);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* CPU time of every thread of `pid` so far, in seconds: the sum of the
 * first field (ns on a CPU) of /proc/PID/task/TID/schedstat, exact where
 * /proc/PID/stat counts clock ticks of 10 ms (too coarse for slices of
 * half a second). Threads must outlive the measurement, as the servers'
 * do. */
static double cpu_seconds_of(pid_t pid) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (d == NULL) {
        return 0;
    }
    unsigned long long total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char stat_path[384];
        snprintf(stat_path, sizeof(stat_path), "%s/%s/schedstat", path, e->d_name);
        FILE *f = fopen(stat_path, "r");
        unsigned long long ns = 0;
        if (f != NULL) {
            if (fscanf(f, "%llu", &ns) == 1) {
                total += ns;
            }
            fclose(f);
        }
    }
    closedir(d);
    return (double)total / 1e9;
}

/* ---- raw REQ client for the echo (same per-call ctx as libtokend) ---- */

typedef struct raw_client {
    nng_socket sock;
    size_t request_bytes;
} raw_client;

/* One call the way libtokend makes it: a context and an aio per call. */
static int raw_call(raw_client *rc, const uint8_t *req) {
    nng_ctx ctx;
    nng_aio *aio = NULL;
    nng_msg *m = NULL;
    if (nng_ctx_open(&ctx, rc->sock) != 0) {
        return -1;
    }
    if (nng_aio_alloc(&aio, NULL, NULL) != 0) {
        nng_ctx_close(ctx);
        return -1;
    }
    nng_ctx_set_ms(ctx, NNG_OPT_RECVTIMEO, 5000);
    nng_ctx_set_ms(ctx, NNG_OPT_SENDTIMEO, 5000);
    nng_msg_alloc(&m, 0);
    nng_msg_append(m, req, rc->request_bytes);
    nng_aio_set_msg(aio, m);
    nng_ctx_send(ctx, aio);
    nng_aio_wait(aio);
    int rv = nng_aio_result(aio);
    if (rv != 0) {
        nng_msg_free(nng_aio_get_msg(aio));
    } else {
        nng_ctx_recv(ctx, aio);
        nng_aio_wait(aio);
        rv = nng_aio_result(aio);
        if (rv == 0) {
            nng_msg_free(nng_aio_get_msg(aio));
        }
    }
    nng_aio_free(aio);
    nng_ctx_close(ctx);
    return rv;
}

/* ---- load generation ---- */

typedef enum op { OP_ECHO, OP_VERIFY, OP_CREATE, OP_VERIFY_MANY, OP_VERIFY_RPC } op;

typedef struct shared {
    op what;
    raw_client *raw;
    tokend_client *client;
    const char *token;
    char **tokens; /* OP_VERIFY_MANY: picked at random */
    size_t n_tokens;
    const uint8_t *echo_req;
    /* OP_VERIFY_RPC: the RPC engine libtokend runs on, so that a Verify can
     * carry a request context (libtokend's calls have none yet); `context`
     * false sends none, for the usage_overhead reference. */
    rpc_client *rpc;
    bool context;
    atomic_ulong seq;
    double stop_at;
    atomic_long done;
    atomic_long errors;
} shared;

typedef struct worker {
    shared *sh;
    double *lat; /* per-call latency samples (seconds), sequential mode */
    size_t n_lat, cap_lat;
} worker;

/* What a gateway in front of an API sends: a few routes, each with ids,
 * from a few clients (the usage series count them all). */
static const char *const bench_paths[] = {
    "/orders/12345?expand=lines",
    "/orders/67890",
    "/orders",
    "/customers/42/orders",
    "/invoices/0f8fad5b-d9cb-469f-a165-70867728950e",
    "/orders/12345/lines/7",
    "/products?page=3",
    "/customers/9001"};
static const char *const bench_ips[] = {"203.0.113.7", "203.0.113.8", "198.51.100.20",
                                        "2001:db8::1"};

/* The Verify of OP_VERIFY_RPC; `n` picks its context. */
static void verify_request(const char *token, bool context, unsigned long n,
                           Tokend__V1__VerifyRequest *vr, Tokend__V1__RequestContext *ctx,
                           char **ab) {
    tokend__v1__verify_request__init(vr);
    tokend__v1__request_context__init(ctx);
    vr->token = (char *)token;
    vr->abilities = ab;
    vr->n_abilities = 1;
    if (context) {
        ctx->method = n % 5 == 4 ? "POST" : "GET";
        ctx->path = (char *)bench_paths[n % 8];
        ctx->client_ip = (char *)bench_ips[(n / 8) % 4];
        ctx->user_agent = "erp-sync/4.2 (+https://partner.example)";
        vr->context = ctx;
    }
}

static int verify_rpc(shared *sh) {
    static const ProtobufCMethodDescriptor *verify;
    if (verify == NULL) {
        verify = protobuf_c_service_descriptor_get_method_by_name(
            &tokend__v1__token_service__descriptor, "Verify");
    }
    char *ab[] = {"orders:read"};
    Tokend__V1__VerifyRequest vr;
    Tokend__V1__RequestContext ctx;
    verify_request(sh->token, sh->context, atomic_fetch_add(&sh->seq, 1), &vr, &ctx, ab);
    rpc_call *call = NULL;
    if (rpc_call_new(sh->rpc, NULL, NULL, &call, NULL) != TOKEND_OK) {
        return -1;
    }
    int rv = rpc_call_start(call, verify, &vr.base, NULL, NULL, 5000, NULL);
    if (rv == TOKEND_OK) {
        rpc_call_wait(call);
        const ProtobufCMessage *out = NULL;
        rv = rpc_call_result(call, &out, NULL);
        if (rv == TOKEND_OK) {
            rv = ((const Tokend__V1__VerifyResponse *)out)->reason;
        }
    }
    rpc_call_free(call);
    return rv;
}

static int one_call(shared *sh) {
    switch (sh->what) {
        case OP_ECHO:
            return raw_call(sh->raw, sh->echo_req);
        case OP_VERIFY: {
            const char *ab[] = {"orders:read"};
            return tokend_verify(sh->client, NULL, sh->token, ab, 1, TOKEND_ABILITIES_ALL,
                                 NULL, NULL);
        }
        case OP_VERIFY_MANY: {
            const char *ab[] = {"orders:read"};
            const char *t = sh->tokens[(size_t)random() % sh->n_tokens];
            return tokend_verify(sh->client, NULL, t, ab, 1, TOKEND_ABILITIES_ALL, NULL,
                                 NULL);
        }
        case OP_VERIFY_RPC:
            return verify_rpc(sh);
        case OP_CREATE: {
            const char *ab[] = {"orders:read"};
            tokend_create_params p = {.owner = "bench:create",
                                      .name = "bench",
                                      .abilities = ab,
                                      .n_abilities = 1};
            tokend_created c;
            int rv = tokend_create(sh->client, NULL, &p, &c, NULL);
            if (rv == TOKEND_OK) {
                tokend_created_free(&c);
            }
            return rv;
        }
    }
    return -1;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    shared *sh = w->sh;
    while (now_s() < sh->stop_at) {
        double t0 = now_s();
        int rv = one_call(sh);
        double dt = now_s() - t0;
        if (rv != 0) {
            atomic_fetch_add(&sh->errors, 1);
        }
        atomic_fetch_add(&sh->done, 1);
        if (w->lat != NULL && w->n_lat < w->cap_lat) {
            w->lat[w->n_lat++] = dt;
        }
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct result {
    double per_s;
    double p50_us, p99_us;
    double server_cpu_us; /* the server's CPU per call (pid given to measure) */
    long errors;
    long calls;
} result;

/* What a measurement gathers over its slices. */
typedef struct tally {
    shared *sh;
    pid_t server; /* whose CPU time is counted; 0: none */
    long calls, errors;
    double elapsed, server_cpu;
    double *lat; /* caller 0's latencies (seconds), when measuring latency */
    size_t n_lat, cap_lat;
} tally;

/* One slice: `threads` callers for `seconds`, added to *t. */
static void run_slice(tally *t, int threads, double seconds) {
    pthread_t th[256];
    worker w[256];
    shared *sh = t->sh;
    atomic_store(&sh->done, 0);
    atomic_store(&sh->errors, 0);
    double cpu0 = t->server != 0 ? cpu_seconds_of(t->server) : 0;
    double t0 = now_s();
    sh->stop_at = t0 + seconds;
    for (int i = 0; i < threads; i++) {
        w[i] = (worker){.sh = sh};
        if (i == 0 && t->lat != NULL) {
            w[i].lat = t->lat + t->n_lat;
            w[i].cap_lat = t->cap_lat - t->n_lat;
        }
        pthread_create(&th[i], NULL, worker_main, &w[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
    }
    t->elapsed += now_s() - t0;
    if (t->server != 0) {
        t->server_cpu += cpu_seconds_of(t->server) - cpu0;
    }
    t->calls += atomic_load(&sh->done);
    t->errors += atomic_load(&sh->errors);
    t->n_lat += w[0].n_lat;
}

static result tally_result(tally *t) {
    result r = {.calls = t->calls, .errors = t->errors};
    r.per_s = t->elapsed > 0 ? (double)t->calls / t->elapsed : 0;
    r.server_cpu_us = t->calls > 0 ? t->server_cpu / (double)t->calls * 1e6 : 0;
    if (t->n_lat > 0) {
        qsort(t->lat, t->n_lat, sizeof(double), cmp_double);
        r.p50_us = t->lat[t->n_lat / 2] * 1e6;
        r.p99_us = t->lat[(size_t)((double)t->n_lat * 0.99)] * 1e6;
    }
    free(t->lat);
    return r;
}

static void tally_init(tally *t, shared *sh, pid_t server, bool latency) {
    *t = (tally){.sh = sh, .server = server};
    if (latency) {
        t->cap_lat = 4000000;
        t->lat = malloc(t->cap_lat * sizeof(double));
    }
    for (int i = 0; i < 200; i++) { /* warm up */
        one_call(sh);
    }
}

/* Measures `a` and `b` for `seconds` each, in ROUNDS alternating slices,
 * so that whatever else the machine does in the meantime weighs on both
 * alike. */
#define ROUNDS 6
static void run_pair(shared *a, pid_t a_server, shared *b, pid_t b_server, int threads,
                     double seconds, bool latency, result *ra, result *rb) {
    tally ta, tb;
    tally_init(&ta, a, a_server, latency);
    tally_init(&tb, b, b_server, latency);
    for (int r = 0; r < ROUNDS; r++) {
        run_slice(&ta, threads, seconds / ROUNDS);
        run_slice(&tb, threads, seconds / ROUNDS);
    }
    *ra = tally_result(&ta);
    *rb = tally_result(&tb);
}

static result run(shared *sh, pid_t server, int threads, double seconds) {
    tally t;
    tally_init(&t, sh, server, false);
    run_slice(&t, threads, seconds);
    return tally_result(&t);
}

/* Wire sizes of a representative Verify request and reply, so the echo
 * moves exactly as many bytes as tokend does. */
static void verify_sizes(const char *token, size_t *req_bytes, size_t *reply_bytes) {
    Tokend__V1__VerifyRequest vr;
    Tokend__V1__RequestContext ctx;
    char *ab[] = {"orders:read"};
    verify_request(token, true, 0, &vr, &ctx, ab);
    uint8_t *payload;
    size_t plen;
    rpc_pack(&vr.base, &payload, &plen);
    Tokend__V1__Request req = TOKEND__V1__REQUEST__INIT;
    req.method = "Verify";
    req.request_id = 123456;
    req.deadline_unix_ms = rpc_now_ms();
    req.payload.data = payload;
    req.payload.len = plen;
    *req_bytes = protobuf_c_message_get_packed_size(&req.base);
    free(payload);

    Tokend__V1__TokenInfo info = TOKEND__V1__TOKEN_INFO__INIT;
    info.id = "0123456789abcdef";
    info.owner = "bench:verify";
    info.name = "bench";
    info.abilities = ab;
    info.n_abilities = 1;
    info.created_unix_ms = rpc_now_ms();
    Tokend__V1__VerifyResponse resp = TOKEND__V1__VERIFY_RESPONSE__INIT;
    resp.info = &info;
    rpc_pack(&resp.base, &payload, &plen);
    Tokend__V1__Reply reply = TOKEND__V1__REPLY__INIT;
    reply.request_id = 123456;
    reply.payload.data = payload;
    reply.payload.len = plen;
    *reply_bytes = protobuf_c_message_get_packed_size(&reply.base);
    free(payload);
}

static tokend_client *connect_to(const char *url, const char *credential) {
    const char *urls[] = {url};
    tokend_options o = {
        .urls = urls, .n_urls = 1, .timeout_ms = 5000, .credential = credential};
    tokend_client *c = NULL;
    if (tokend_connect(&o, &c, NULL) != TOKEND_OK) {
        fprintf(stderr, "rpc_bench: cannot connect to %s\n", url);
        exit(1);
    }
    return c;
}

static bool wait_up(tokend_client *c) {
    tokend_call quick = {.timeout_ms = 200};
    for (int i = 0; i < 100; i++) {
        int rv = tokend_verify(c, &quick, "x", NULL, 0, TOKEND_ABILITIES_ALL, NULL, NULL);
        if (rv == TOKEND_MALFORMED) {
            return true;
        }
        usleep(100000);
    }
    return false;
}

/* rpc_bench latency: one caller verifying tokens from a file at random. */
/* Reads FILE's lines (tokens) into a malloc'd array; NULL if none. */
static char **read_tokens(const char *file, size_t *n_out) {
    FILE *f = fopen(file, "r");
    if (f == NULL) {
        perror(file);
        return NULL;
    }
    size_t cap = 1024, n = 0;
    char **tokens = malloc(cap * sizeof(char *));
    char line[256];
    while (tokens != NULL && fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '\0') {
            continue;
        }
        if (n == cap) {
            cap *= 2;
            char **grown = realloc(tokens, cap * sizeof(char *));
            if (grown == NULL) {
                break;
            }
            tokens = grown;
        }
        tokens[n++] = strdup(line);
    }
    fclose(f);
    if (n == 0) {
        fprintf(stderr, "rpc_bench: no tokens in %s\n", file);
        free(tokens);
        return NULL;
    }
    *n_out = n;
    return tokens;
}

/* rpc_bench latency: one caller verifying tokens picked at random from a
 * file; with two --url/--tokens pairs, the two in alternating slices. */
static int latency_main(int argc, char **argv) {
    const char *url[2] = {NULL, NULL}, *file[2] = {NULL, NULL};
    int n_url = 0, n_file = 0;
    double seconds = 5;
    bool bad = argc % 2 != 0;
    for (int i = 2; !bad && i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--url") == 0 && n_url < 2) {
            url[n_url++] = argv[i + 1];
        } else if (strcmp(argv[i], "--tokens") == 0 && n_file < 2) {
            file[n_file++] = argv[i + 1];
        } else if (strcmp(argv[i], "--seconds") == 0) {
            seconds = atof(argv[i + 1]);
        } else {
            bad = true;
        }
    }
    if (bad || n_url == 0 || n_url != n_file || seconds <= 0) {
        fprintf(stderr, "usage: rpc_bench latency --url URL --tokens FILE "
                        "[--url URL2 --tokens FILE2] [--seconds S]\n");
        return 2;
    }
    srandom((unsigned)time(NULL));
    shared sh[2];
    tokend_client *c[2] = {NULL, NULL};
    int rc = 0;
    for (int k = 0; k < n_url; k++) {
        size_t n = 0;
        char **tokens = read_tokens(file[k], &n);
        if (tokens == NULL) {
            return 1;
        }
        c[k] = connect_to(url[k], NULL);
        sh[k] = (shared){
            .what = OP_VERIFY_MANY, .client = c[k], .tokens = tokens, .n_tokens = n};
    }
    result r[2];
    if (n_url == 2) {
        run_pair(&sh[0], 0, &sh[1], 0, 1, seconds, true, &r[0], &r[1]);
    } else {
        tally t;
        tally_init(&t, &sh[0], 0, true);
        run_slice(&t, 1, seconds);
        r[0] = tally_result(&t);
    }
    for (int k = 0; k < n_url; k++) {
        printf("p50_us %.1f p99_us %.1f calls %ld errors %ld\n", r[k].p50_us, r[k].p99_us,
               r[k].calls, r[k].errors);
        rc |= r[k].errors > 0;
        tokend_close(c[k]);
        for (size_t i = 0; i < sh[k].n_tokens; i++) {
            free(sh[k].tokens[i]);
        }
        free(sh[k].tokens);
    }
    return rc;
}

static void tsv_line(FILE *f, const char *metric, double value, const char *unit,
                     double reference) {
    if (reference > 0) {
        fprintf(f, "%s\t%.2f\t%s\t%.2f\t%.3f\n", metric, value, unit, reference,
                value / reference);
    } else {
        fprintf(f, "%s\t%.2f\t%s\t-\t-\n", metric, value, unit);
    }
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "echo-server") == 0) {
        return echo_server(argv[2], (size_t)atol(argv[3]));
    }
    if (argc > 1 && strcmp(argv[1], "latency") == 0) {
        return latency_main(argc, argv);
    }
    double seconds = 3;
    int threads = 64;
    const char *tsv = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--tsv") == 0 && i + 1 < argc) {
            tsv = argv[++i];
        } else {
            fprintf(stderr,
                    "usage: rpc_bench [--seconds S] [--threads N] [--tsv FILE]\n"
                    "       rpc_bench latency --url URL --tokens FILE [--seconds S]\n");
            return 2;
        }
    }
    if (threads < 1 || threads > 256 || seconds <= 0) {
        fprintf(stderr, "rpc_bench: --threads 1..256, --seconds > 0\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[n > 0 ? n : 0] = '\0';
    char self_copy[PATH_MAX];
    snprintf(self_copy, sizeof(self_copy), "%s", self); /* dirname() edits it */
    snprintf(bindir, sizeof(bindir), "%s", dirname(dirname(self_copy)));

    char dir[] = "/tmp/tokend-bench-XXXXXX";
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    char tokend_bin[PATH_MAX + 16], data[PATH_MAX], url[PATH_MAX], echo_url[PATH_MAX],
        log[PATH_MAX];
    snprintf(tokend_bin, sizeof(tokend_bin), "%s/tokend", bindir);
    snprintf(data, sizeof(data), "%s/data", dir);
    snprintf(url, sizeof(url), "ipc://%s/tokend.sock", dir);
    snprintf(echo_url, sizeof(echo_url), "ipc://%s/echo.sock", dir);
    snprintf(log, sizeof(log), "%s/tokend.log", dir);

    /* init: read the admin token from its stdout */
    char cmd[PATH_MAX * 3];
    snprintf(cmd, sizeof(cmd), "'%s' init --data-dir '%s' 2>/dev/null", tokend_bin, data);
    FILE *f = popen(cmd, "r");
    char admin[128] = "";
    if (f == NULL || fgets(admin, sizeof(admin), f) == NULL) {
        fprintf(stderr, "rpc_bench: tokend init failed\n");
        return 1;
    }
    pclose(f);
    admin[strcspn(admin, "\n")] = '\0';

    /* The create phase makes tens of thousands of tokens of one owner: the
     * per-owner limit is raised out of its way (it is still counted). */
    const char *serve[] = {tokend_bin,    "serve",    "--data-dir",
                           data,          "--listen", url,
                           "--log-level", "warn",     "--max-tokens-per-owner",
                           "100000000",   NULL};
    pid_t tokend_pid = spawn(serve, log);
    tokend_client *admin_c = connect_to(url, admin);
    if (!wait_up(admin_c)) {
        fprintf(stderr, "rpc_bench: tokend did not start (log: %s)\n", log);
        kill(tokend_pid, SIGKILL);
        return 1;
    }
    const char *ab[] = {"orders:read"};
    tokend_create_params p = {
        .owner = "bench:verify", .name = "bench", .abilities = ab, .n_abilities = 1};
    tokend_created created;
    if (tokend_create(admin_c, NULL, &p, &created, NULL) != TOKEND_OK) {
        fprintf(stderr, "rpc_bench: create failed\n");
        return 1;
    }

    size_t req_bytes, reply_bytes;
    verify_sizes(created.token, &req_bytes, &reply_bytes);
    char reply_arg[32];
    snprintf(reply_arg, sizeof(reply_arg), "%zu", reply_bytes);
    const char *echo_argv[] = {self, "echo-server", echo_url, reply_arg, NULL};
    pid_t echo_pid = spawn(echo_argv, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);

    raw_client raw = {.request_bytes = req_bytes};
    nng_req0_open(&raw.sock);
    nng_socket_set_ms(raw.sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    nng_dial(raw.sock, echo_url, NULL, NNG_FLAG_NONBLOCK);
    uint8_t *echo_req = calloc(1, req_bytes);
    nng_msleep(300);

    shared sh_echo = {.what = OP_ECHO, .raw = &raw, .echo_req = echo_req};
    const char *urls[] = {url};
    rpc_client_config rc = {.urls = urls, .n_urls = 1};
    rpc_client *rpc = NULL;
    if (rpc_client_open(&rc, &rpc, NULL) != TOKEND_OK) {
        fprintf(stderr, "rpc_bench: cannot open an RPC client for %s\n", url);
        return 1;
    }
    /* The verify benchmarks send the context a gateway sends. */
    shared sh_verify = {
        .what = OP_VERIFY_RPC, .rpc = rpc, .token = created.token, .context = true};
    shared sh_bare = {
        .what = OP_VERIFY_RPC, .rpc = rpc, .token = created.token, .context = false};
    shared sh_create = {.what = OP_CREATE, .client = admin_c};

    printf("rpc_bench: request %zu bytes, reply %zu bytes, ipc://, %d callers, %.1f s "
           "per run\n\n",
           req_bytes, reply_bytes, threads, seconds);

    result e1, v1, en, vn;
    run_pair(&sh_echo, echo_pid, &sh_verify, tokend_pid, 1, seconds, true, &e1, &v1);
    double self0 = cpu_seconds_of(getpid());
    result en_alone = run(&sh_echo, echo_pid, threads, seconds / ROUNDS);
    double client_us = (cpu_seconds_of(getpid()) - self0) / (double)en_alone.calls * 1e6;
    run_pair(&sh_echo, echo_pid, &sh_verify, tokend_pid, threads, seconds, false, &en,
             &vn);
    /* usage_overhead: tokend's CPU per Verify with a context (counted by
     * route and client in the usage series) against the same Verify
     * without one, in alternating slices. */
    result with_ctx, without_ctx;
    run_pair(&sh_verify, tokend_pid, &sh_bare, tokend_pid, threads, seconds, false,
             &with_ctx, &without_ctx);
    result cn = run(&sh_create, tokend_pid, threads, seconds);
    double e_cpu_us = en.server_cpu_us, v_cpu_us = vn.server_cpu_us,
           c_cpu_us = cn.server_cpu_us;

    printf("%-26s %12s %12s %8s\n", "metric", "tokend", "echo", "ratio");
    printf("%-26s %12.1f %12.1f %8.2f\n", "verify p50, 1 caller (us)", v1.p50_us,
           e1.p50_us, v1.p50_us / e1.p50_us);
    printf("%-26s %12.1f %12.1f %8.2f\n", "verify p99, 1 caller (us)", v1.p99_us,
           e1.p99_us, v1.p99_us / e1.p99_us);
    printf("%-26s %12.0f %12.0f %8.2f\n", "verify/s, N callers", vn.per_s, en.per_s,
           vn.per_s / en.per_s);
    printf("%-26s %12.1f %12.1f %8.2f\n", "server CPU per call (us)", v_cpu_us, e_cpu_us,
           v_cpu_us / e_cpu_us);
    printf("%-26s %12s %12.1f %8s\n", "client CPU per call (us)", "-", client_us, "-");
    printf("%-26s %12.1f %12.1f %8.2f\n", "CPU/verify ctx vs none",
           with_ctx.server_cpu_us, without_ctx.server_cpu_us,
           with_ctx.server_cpu_us / without_ctx.server_cpu_us);
    printf("%-26s %12.0f %12s %8s\n", "create/s, N callers (sync)", cn.per_s, "-", "-");
    printf("%-26s %12.1f %12s %8s\n", "server CPU per create (us)", c_cpu_us, "-", "-");
    printf("\nerrors: echo %ld, verify %ld/%ld/%ld, create %ld\n", e1.errors + en.errors,
           v1.errors, vn.errors, with_ctx.errors + without_ctx.errors, cn.errors);

    if (tsv != NULL) {
        FILE *tf = fopen(tsv, "w");
        if (tf == NULL) {
            perror(tsv);
        } else {
            char name[64];
            tsv_line(tf, "rpc_verify_p50_1", v1.p50_us, "us", e1.p50_us);
            tsv_line(tf, "rpc_verify_p99_1", v1.p99_us, "us", e1.p99_us);
            snprintf(name, sizeof(name), "rpc_verify_tput_%d", threads);
            tsv_line(tf, name, vn.per_s, "req/s", en.per_s);
            tsv_line(tf, "verify_cpu_us", v_cpu_us, "us", e_cpu_us);
            tsv_line(tf, "usage_overhead", with_ctx.server_cpu_us, "us",
                     without_ctx.server_cpu_us);
            snprintf(name, sizeof(name), "rpc_create_tput_%d", threads);
            tsv_line(tf, name, cn.per_s, "req/s", 0);
            fclose(tf);
        }
    }

    tokend_created_free(&created);
    tokend_close(admin_c);
    rpc_client_free(rpc);
    nng_close(raw.sock);
    free(echo_req);
    kill(echo_pid, SIGKILL);
    kill(tokend_pid, SIGTERM);
    waitpid(echo_pid, NULL, 0);
    waitpid(tokend_pid, NULL, 0);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "rpc_bench: could not remove %s\n", dir);
    }
    return vn.errors + with_ctx.errors + without_ctx.errors + cn.errors > 0 ? 1 : 0;
}
