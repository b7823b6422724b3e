/*
 * inproc.c — the service in a fuzz target's own process (inproc.h).
 */
#include "inproc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "rpc.h"
#include "server.h"
#include "tokend.h"
#include "methods.h"
#include "usage.h"
#include "writer.h"

_Noreturn void fuzz_die(const char *what) {
    fprintf(stderr, "fuzz: %s\n", what);
    abort();
}

store *fuzz_store_open(const char *name) {
    tokend_error err;
    if (crypto_init(&err) != TOKEND_OK) {
        fuzz_die(err.message);
    }
    char dir[96];
    snprintf(dir, sizeof(dir), "/tmp/tokend-%s-XXXXXX", name);
    if (mkdtemp(dir) == NULL) {
        fuzz_die("mkdtemp");
    }
    store *st = NULL;
    store_options so = {.create_if_missing = true, .block_cache_bytes = 8 << 20};
    if (store_open(dir, &so, &st, &err) != TOKEND_OK) {
        fuzz_die(err.message);
    }
    return st;
}

void fuzz_put_token(store *st, const char *owner, char *const *abilities,
                    size_t n_abilities, char text[TOKEN_MAX_LEN + 1],
                    uint8_t digest[TOKEN_DIGEST_LEN], char id[TOKEN_ID_LEN + 1]) {
    token_record rec;
    if (methods_mint(TOKEN_DEFAULT_PREFIX, owner, "fuzz", abilities, n_abilities,
                     rpc_now_ms(), 0, text, digest, &rec) != TOKEND_OK) {
        fuzz_die("mint failed");
    }
    store_batch *b = store_batch_new();
    if (b == NULL) {
        fuzz_die("out of memory");
    }
    tokend_error err;
    if (store_batch_put_token(b, digest, &rec, &err) != TOKEND_OK ||
        store_batch_commit(st, b, true, &err) != TOKEND_OK) {
        fuzz_die(err.message);
    }
    store_batch_free(b);
    if (id != NULL) {
        memcpy(id, rec.id, TOKEN_ID_LEN + 1);
    }
    token_record_free(&rec);
}

void fuzz_serve(store *st, const char *url) {
    usage *u = usage_new(1024);
    series *sr = series_new(1024, 20, 10); /* GetUsage and Verify's contexts too */
    writer *w = NULL;
    if (u == NULL || sr == NULL || writer_start(st, u, sr, 1000, &w) != TOKEND_OK) {
        fuzz_die("writer");
    }
    methods_config mc = {.prefix = TOKEN_DEFAULT_PREFIX, .series = sr};
    methods *ms = methods_new(&mc, st, w, u);
    if (ms == NULL) {
        fuzz_die("out of memory");
    }
    const char *urls[] = {url};
    server_config sc = {
        .listen = urls, .n_listen = 1, .max_message = 65536, .contexts = 8};
    server *srv = NULL;
    tokend_error err;
    if (server_start(&sc, methods_service(ms), &srv, &err) != TOKEND_OK) {
        fuzz_die(err.message);
    }
}
