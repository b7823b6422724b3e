/*
 * rpc_client.c — the client end of the tokend wire: the REQ socket and its
 * dialers, the calls' state machine on an NNG context and aio, packing the
 * request envelope, decoding the reply, and the one mapping of NNG errors
 * to tokend statuses. See rpc_client.h for the life of a call.
 *
 * It owns the NNG socket of a client and every NNG object of its calls; it
 * must not block on an NNG thread (the callback only moves a call from its
 * send to its receive, or ends it), must not decode there (decoding is the
 * owner's, in rpc_call_result), must not log, and must not let a token or
 * a credential into a message or into freed memory it owns.
 */
#include "rpc_client.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>
#include <nng/supplemental/util/platform.h>

#include "error.h"
#include "opt.h"
#include "rpc.h"
#include "secret.h"
#include "tls.h"

/* Ceiling on a reply; a page of 1000 tokens with metadata stays well below. */
#define RPC_CLIENT_RECV_MAX ((size_t)RPC_MAX_MESSAGE_CEILING)
/* Reconnect back-off: short, so that a restarted service is found fast,
 * and so that a call made while nothing listens sees a fresh refusal
 * (which is what ends it at once) within about the longest step. */
#define RPC_CLIENT_RECONNECT_MIN_MS 10
#define RPC_CLIENT_RECONNECT_MAX_MS 100
/* How much of the URL list messages quote. */
#define RPC_CLIENT_WHERE_MAX 160
/* Request payloads up to this size are packed on the stack. */
#define RPC_CLIENT_STACK_PAYLOAD 512
/* A send that waits for a connection looks, after each slice of its
 * time, whether the service refused the last dial attempts; the slices
 * double from the first to the last size. */
#define RPC_CLIENT_SLICE_FIRST_MS 10
#define RPC_CLIENT_SLICE_MAX_MS 250
/* NNG's dialer statistics are read at most this often per client. */
#define RPC_CLIENT_REFUSED_CHECK_MS 5

/* A TLS dialer, whose failed handshakes a message may explain. */
typedef struct client_tls_dialer {
    nng_dialer dialer;
    char *server_name; /* what the service's certificate must be issued for */
} client_tls_dialer;

/* A dialer and what its statistics said when a connection last came up:
 * attempts refused since then mean the service is not there. */
typedef struct client_dialer {
    nng_dialer dialer;
    uint64_t connects;       /* its "connect" counter, as last seen */
    uint64_t refused_before; /* its "refused" counter when `connects` changed */
} client_dialer;

struct rpc_client {
    nng_socket socket;
    char *where;        /* what messages call the service */
    bool network_shown; /* messages may speak of the network (no cfg->where) */
    client_tls_dialer *tls_dialers;
    size_t n_tls_dialers;
    /* Connections up (or being added) now, from NNG's pipe events: NNG
     * runs REM_POST for exactly the pipes it ran ADD_PRE for. */
    atomic_int pipes;
    /* Whether every dialer's attempts since its last connection were
     * refused (ECONNREFUSED; for ipc:// also a missing socket file), judged
     * under refused_mtx from the dialers' statistics at most every
     * RPC_CLIENT_REFUSED_CHECK_MS. */
    client_dialer *dialers;
    size_t n_dialers;
    pthread_mutex_t refused_mtx;
    nng_time refused_checked;
    atomic_bool refused;
    /* The dialers' "refused" counters summed, as last read: a call ends
     * as refused only on refusals counted after it started, so that a
     * service that has just come back is not reported down by the
     * attempts made before it did. */
    _Atomic uint64_t refusals;
    _Atomic uint64_t next_request_id;
    atomic_bool closed;
};

/* The TLS files of a client, read once for all its TLS dialers. */
typedef struct client_tls_pem {
    const rpc_client_config *cfg; /* their paths, for messages */
    char *ca;
    char *cert; /* NULL: no client certificate */
    char *key;  /* with cert; wiped when freed */
} client_tls_pem;

typedef enum call_stage { CALL_IDLE, CALL_SENDING, CALL_RECEIVING, CALL_OVER } call_stage;

struct rpc_call {
    rpc_client *client;
    nng_ctx ctx;
    nng_aio *aio;
    rpc_call_done_fn done; /* NULL: the owner steps the call (rpc_call_wait) */
    void *done_arg;
    /* The request in flight. */
    call_stage stage;
    const ProtobufCMethodDescriptor *method;
    uint64_t request_id;
    int timeout_ms;
    nng_time deadline;          /* nng_clock() ms, for send and reply together */
    int slice_ms;               /* the send's current wait for a connection */
    uint64_t refusals_at_start; /* client->refusals when the call started */
    /* The outcome: the reply until rpc_call_result decodes it, then the
     * output; err says how the call ended (TOKEND_OK until it fails), and
     * `unreached` that no connection came up in time (rpc_call_result may
     * then say why, if TLS handshakes failed). */
    bool unreached;
    nng_msg *reply_msg;
    rpc_arena output_arena;
    ProtobufCMessage *output;
    tokend_error err;
};

/* Frees a request or a reply, wiping it first: either may carry a
 * credential or a token. (An empty message may have no body at all:
 * secret_wipe does nothing for length 0.) */
static void wipe_free_msg(nng_msg *msg) {
    if (msg != NULL) {
        secret_wipe(nng_msg_body(msg), nng_msg_len(msg));
        nng_msg_free(msg);
    }
}

/*
 * The one mapping of an NNG error to a tokend status. `sent` says the
 * request had left: REQ hands a request to a connection only once one is
 * up and free, so a send that times out never left (the service was
 * unreachable, and a retry is safe), while a receive that times out is a
 * reply that did not come in time.
 */
static int status_of_nng(int nrv, bool sent) {
    switch (nrv) {
        case NNG_ETIMEDOUT:
            return sent ? TOKEND_DEADLINE_EXCEEDED : TOKEND_UNAVAILABLE;
        case NNG_ENOMEM:
            return TOKEND_INTERNAL;
        case NNG_EINVAL:
        case NNG_EADDRINVAL:
        case NNG_ENOTSUP:
            return TOKEND_INVALID_ARGUMENT;
        case NNG_EMSGSIZE:
            return TOKEND_RESOURCE_EXHAUSTED;
        default:
            /* ECLOSED, ECONNREFUSED, ECONNRESET, ECONNSHUT, EUNREACHABLE,
             * ... : the service cannot be reached. */
            return TOKEND_UNAVAILABLE;
    }
}

/* ------------------------------------------------------------------------
 * The client. */

/* Joins the URLs into one string for messages, cut at RPC_CLIENT_WHERE_MAX. */
static char *join_urls(const char *const *urls, size_t n_urls) {
    char *where = calloc(1, RPC_CLIENT_WHERE_MAX + 1);
    if (where == NULL) {
        return NULL;
    }
    size_t len = 0;
    for (size_t i = 0; i < n_urls && len < RPC_CLIENT_WHERE_MAX; i++) {
        int w = snprintf(where + len, RPC_CLIENT_WHERE_MAX + 1 - len, "%s%s",
                         i > 0 ? ", " : "", urls[i]);
        if (w < 0) {
            break;
        }
        len += (size_t)w;
    }
    if (len > RPC_CLIENT_WHERE_MAX) {
        memcpy(where + RPC_CLIENT_WHERE_MAX - 3, "...", 4);
    }
    return where;
}

/* Checks that the TLS settings of cfg fit its URLs, and reads the files
 * into *pem when some URL needs them (fields NULL otherwise). */
static int client_tls_read(const rpc_client_config *cfg, client_tls_pem *pem,
                           tokend_error *err) {
    memset(pem, 0, sizeof *pem);
    pem->cfg = cfg;
    const char *tls = NULL;
    for (size_t i = 0; i < cfg->n_urls && tls == NULL; i++) {
        tls = tls_url(cfg->urls[i]) ? cfg->urls[i] : NULL;
    }
    bool server_name = cfg->tls_server_name != NULL && cfg->tls_server_name[0] != '\0';
    if ((cfg->tls_cert_file == NULL) != (cfg->tls_key_file == NULL)) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "a TLS client certificate and its key go together");
    }
    if (tls == NULL &&
        (cfg->tls_ca_file != NULL || cfg->tls_cert_file != NULL || server_name)) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "TLS options are set but no service URL is tls+tcp://: the "
                         "connection would not be encrypted");
    }
    if (tls == NULL) {
        return TOKEND_OK;
    }
    if (cfg->tls_ca_file == NULL) {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "service URL \"%s\" is a TLS one: it needs a TLS CA file, to "
                         "verify the service's certificate against",
                         tls);
    }
    int rv = tls_read_pem("the TLS CA file", cfg->tls_ca_file, &pem->ca, err);
    if (rv == TOKEND_OK && cfg->tls_cert_file != NULL) {
        rv = tls_read_pem("the TLS client certificate", cfg->tls_cert_file, &pem->cert,
                          err);
    }
    if (rv == TOKEND_OK && cfg->tls_cert_file != NULL) {
        rv = tls_read_pem("the TLS client key", cfg->tls_key_file, &pem->key, err);
    }
    return rv;
}

static void client_tls_pem_free(client_tls_pem *pem) {
    free(pem->ca);
    free(pem->cert);
    secret_free(pem->key);
}

/* Gives the TLS dialer for `url` a configuration of its own (the server
 * name is per URL): the service's certificate must chain to the CA file
 * and be issued for the server name, and the client shows its own
 * certificate if it has one. Records the dialer for rpc_call_result's
 * messages. */
static int client_dial_tls(rpc_client *client, nng_dialer dialer, const char *url,
                           const client_tls_pem *pem, tokend_error *err) {
    const rpc_client_config *cfg = pem->cfg;
    nng_url *parsed = NULL;
    int nrv = nng_url_parse(&parsed, url);
    if (nrv != 0) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "bad service URL \"%s\": %s", url,
                         nng_strerror(nrv));
    }
    const char *name = cfg->tls_server_name != NULL && cfg->tls_server_name[0] != '\0'
                           ? cfg->tls_server_name
                           : parsed->u_hostname;
    client_tls_dialer *d = &client->tls_dialers[client->n_tls_dialers];
    d->dialer = dialer;
    d->server_name = strdup(name != NULL ? name : "");
    nng_url_free(parsed);
    if (d->server_name == NULL) {
        return error_set(err, TOKEND_INTERNAL, "out of memory");
    }
    client->n_tls_dialers++;
    if (d->server_name[0] == '\0') {
        return error_set(err, TOKEND_INVALID_ARGUMENT,
                         "service URL \"%s\" names no host to check the service's "
                         "certificate against: give a TLS server name",
                         url);
    }
    nng_tls_config *tls = NULL;
    int rv = TOKEND_OK;
    if ((nrv = nng_tls_config_alloc(&tls, NNG_TLS_MODE_CLIENT)) != 0) {
        return error_set(err, TOKEND_INTERNAL, "cannot make a TLS configuration: %s",
                         nng_strerror(nrv));
    }
    if ((nrv = nng_tls_config_ca_chain(tls, pem->ca, NULL)) != 0) {
        rv = error_set(err, TOKEND_INVALID_ARGUMENT,
                       "cannot use the TLS CA file %s (PEM CA certificates expected): %s",
                       cfg->tls_ca_file, nng_strerror(nrv));
    } else if (pem->cert != NULL &&
               (nrv = nng_tls_config_own_cert(tls, pem->cert, pem->key, NULL)) != 0) {
        rv = error_set(err, TOKEND_INVALID_ARGUMENT,
                       "cannot use the TLS client certificate %s with the key %s: %s",
                       cfg->tls_cert_file, cfg->tls_key_file, nng_strerror(nrv));
    } else if ((nrv = nng_tls_config_auth_mode(tls, NNG_TLS_AUTH_MODE_REQUIRED)) != 0 ||
               (nrv = nng_tls_config_server_name(tls, d->server_name)) != 0 ||
               (nrv = nng_dialer_set_ptr(dialer, NNG_OPT_TLS_CONFIG, tls)) != 0) {
        rv = error_set(err, status_of_nng(nrv, false), "cannot set up TLS for \"%s\": %s",
                       url, nng_strerror(nrv));
    }
    nng_tls_config_free(tls); /* the dialer holds its own reference */
    return rv;
}

/* Adds a dialer for `url` with the client's limits (and TLS files, for a
 * TLS URL) and starts it in the background. The options are the dialer's
 * own, so they hold for exactly the connections it makes. */
static int client_dial(rpc_client *client, const char *url, const client_tls_pem *pem,
                       tokend_error *err) {
    nng_dialer dialer;
    int nrv = nng_dialer_create(&dialer, client->socket, url);
    tokend_error why;
    if (nrv != 0 && opt_check_url(url, &why) != TOKEND_OK) {
        /* The common slip: "127.0.0.1:7450" for tcp://127.0.0.1:7450. */
        return error_set(err, TOKEND_INVALID_ARGUMENT, "bad service URL %s", why.message);
    }
    if (nrv != 0) {
        /* A URL NNG cannot even take is the caller's to fix. */
        int code = status_of_nng(nrv, false);
        return error_set(err, code == TOKEND_UNAVAILABLE ? TOKEND_INVALID_ARGUMENT : code,
                         "bad service URL \"%s\": %s", url, nng_strerror(nrv));
    }
    if (tls_url(url)) {
        int rv = client_dial_tls(client, dialer, url, pem, err);
        if (rv != TOKEND_OK) {
            nng_dialer_close(dialer);
            return rv;
        }
    }
    /* Transports without a size option (inproc) have no limit to set. */
    nrv = nng_dialer_set_size(dialer, NNG_OPT_RECVMAXSZ, RPC_CLIENT_RECV_MAX);
    if ((nrv != 0 && nrv != NNG_ENOTSUP) ||
        (nrv = nng_dialer_set_ms(dialer, NNG_OPT_RECONNMINT,
                                 RPC_CLIENT_RECONNECT_MIN_MS)) != 0 ||
        (nrv = nng_dialer_set_ms(dialer, NNG_OPT_RECONNMAXT,
                                 RPC_CLIENT_RECONNECT_MAX_MS)) != 0 ||
        (nrv = nng_dialer_start(dialer, NNG_FLAG_NONBLOCK)) != 0) {
        nng_dialer_close(dialer);
        return error_set(err, status_of_nng(nrv, false), "cannot dial \"%s\": %s", url,
                         nng_strerror(nrv));
    }
    client->dialers[client->n_dialers++] = (client_dialer){.dialer = dialer};
    return TOKEND_OK;
}

/* NNG's pipe events, on an NNG thread: a connection is being added
 * (ADD_PRE) or is gone (REM_POST). Counting only, nothing that blocks. */
static void client_pipe_event(nng_pipe pipe, nng_pipe_ev event, void *arg) {
    (void)pipe;
    rpc_client *client = arg;
    atomic_fetch_add(&client->pipes, event == NNG_PIPE_EV_ADD_PRE ? 1 : -1);
}

int rpc_client_open(const rpc_client_config *cfg, rpc_client **out, tokend_error *err) {
    *out = NULL;
    if (cfg->urls == NULL || cfg->n_urls == 0) {
        return error_set(err, TOKEND_INVALID_ARGUMENT, "no service URL given");
    }
    for (size_t i = 0; i < cfg->n_urls; i++) {
        if (cfg->urls[i] == NULL || cfg->urls[i][0] == '\0') {
            return error_set(err, TOKEND_INVALID_ARGUMENT, "service URL %zu is empty", i);
        }
    }
    rpc_client *client = calloc(1, sizeof *client);
    if (client == NULL) {
        return error_set(err, TOKEND_INTERNAL, "out of memory");
    }
    /* Request ids start at a random point so that ids from different
     * clients rarely collide in the service's log. */
    atomic_init(&client->next_request_id, ((uint64_t)nng_random() << 32) | 1u);
    atomic_init(&client->closed, false);
    client->where =
        cfg->where != NULL ? strdup(cfg->where) : join_urls(cfg->urls, cfg->n_urls);
    client->network_shown = cfg->where == NULL;
    client->tls_dialers = calloc(cfg->n_urls, sizeof *client->tls_dialers);
    client->dialers = calloc(cfg->n_urls, sizeof *client->dialers);
    atomic_init(&client->pipes, 0);
    atomic_init(&client->refused, false);
    pthread_mutex_init(&client->refused_mtx, NULL);
    if (client->where == NULL || client->tls_dialers == NULL || client->dialers == NULL) {
        rpc_client_free(client);
        return error_set(err, TOKEND_INTERNAL, "out of memory");
    }
    client_tls_pem pem;
    int rv = client_tls_read(cfg, &pem, err);
    if (rv != TOKEND_OK) {
        client_tls_pem_free(&pem);
        rpc_client_free(client);
        return rv;
    }
    int nrv = nng_req0_open(&client->socket);
    if (nrv != 0) {
        rv = error_set(err, status_of_nng(nrv, false),
                       "cannot open an NNG REQ socket: %s", nng_strerror(nrv));
    }
    /* No blind resends: CreateToken is not idempotent, and every call has
     * its own deadline anyway. */
    if (rv == TOKEND_OK &&
        (nrv = nng_socket_set_ms(client->socket, NNG_OPT_REQ_RESENDTIME,
                                 NNG_DURATION_INFINITE)) != 0) {
        rv = error_set(err, status_of_nng(nrv, false),
                       "cannot configure the NNG socket: %s", nng_strerror(nrv));
    }
    /* Before any dialer starts, so that no connection goes uncounted. */
    if (rv == TOKEND_OK && ((nrv = nng_pipe_notify(client->socket, NNG_PIPE_EV_ADD_PRE,
                                                   client_pipe_event, client)) != 0 ||
                            (nrv = nng_pipe_notify(client->socket, NNG_PIPE_EV_REM_POST,
                                                   client_pipe_event, client)) != 0)) {
        rv = error_set(err, status_of_nng(nrv, false),
                       "cannot configure the NNG socket: %s", nng_strerror(nrv));
    }
    for (size_t i = 0; i < cfg->n_urls && rv == TOKEND_OK; i++) {
        rv = client_dial(client, cfg->urls[i], &pem, err);
    }
    client_tls_pem_free(&pem);
    if (rv != TOKEND_OK) {
        rpc_client_free(client);
        return rv;
    }
    *out = client;
    return error_set(err, TOKEND_OK, NULL);
}

void rpc_client_close(rpc_client *client) {
    /* Closing the socket fails every pending send and receive, so the
     * calls in flight end now. A socket never opened has id 0, which NNG
     * refuses harmlessly. */
    if (!atomic_exchange(&client->closed, true)) {
        nng_close(client->socket);
    }
}

void rpc_client_free(rpc_client *client) {
    if (client == NULL) {
        return;
    }
    rpc_client_close(client);
    for (size_t i = 0; i < client->n_tls_dialers; i++) {
        free(client->tls_dialers[i].server_name);
    }
    free(client->tls_dialers);
    free(client->dialers);
    pthread_mutex_destroy(&client->refused_mtx);
    free(client->where);
    free(client);
}

/* The value of counter `name` of a dialer's statistics, 0 if NNG keeps
 * none. */
static uint64_t dialer_counter(nng_stat *dialer, const char *name) {
    nng_stat *stat = dialer != NULL ? nng_stat_find(dialer, name) : NULL;
    return stat != NULL ? nng_stat_value(stat) : 0;
}

/* Why the TLS dialers of `client` found no service, from NNG's dialer
 * statistics (its only record of failed handshakes: the dialer retries
 * them quietly): into buf, or false when none of them failed a
 * handshake. mbedTLS counts a certificate it did not accept as an "auth"
 * error; a service that ends the handshake (one that wants a client
 * certificate, or does not speak TLS) shows as an "other" one. */
static bool client_tls_failures(const rpc_client *client, char *buf, size_t size) {
    nng_stat *root = NULL;
    if (client->n_tls_dialers == 0 || nng_stats_get(&root) != 0) {
        return false;
    }
    uint64_t refused = 0, ended = 0;
    const char *name = NULL;
    for (size_t i = 0; i < client->n_tls_dialers; i++) {
        nng_stat *dialer = nng_stat_find_dialer(root, client->tls_dialers[i].dialer);
        uint64_t auth = dialer_counter(dialer, "auth");
        if (auth > 0 && name == NULL) {
            name = client->tls_dialers[i].server_name;
        }
        refused += auth;
        ended += dialer_counter(dialer, "other");
    }
    nng_stats_free(root);
    if (refused > 0) {
        snprintf(buf, size,
                 "TLS handshake failed %llu times, certificate not accepted (not "
                 "signed by the TLS CA file, or not issued for \"%s\")",
                 (unsigned long long)refused, name);
    } else if (ended > 0) {
        snprintf(buf, size,
                 "the service ended %llu TLS handshakes (it may want a client "
                 "certificate from its client CA, or not speak TLS)",
                 (unsigned long long)ended);
    }
    return refused > 0 || ended > 0;
}

/* True when every dialer of `client` had its attempts refused since its
 * last connection (and made one at all), from NNG's dialer statistics:
 * the service is not listening there. A dialer still connecting, or whose
 * connections fail otherwise (a TLS handshake, a listener that accepts
 * but never speaks), is not refused: its calls wait their full time.
 * Called with refused_mtx held. */
static bool dialers_refused(rpc_client *client) {
    nng_stat *root = NULL;
    if (client->n_dialers == 0 || nng_stats_get(&root) != 0) {
        return false;
    }
    bool refused = true;
    uint64_t total = 0;
    for (size_t i = 0; i < client->n_dialers; i++) {
        client_dialer *d = &client->dialers[i];
        nng_stat *stats = nng_stat_find_dialer(root, d->dialer);
        if (stats == NULL) {
            refused = false;
            continue;
        }
        uint64_t connects = dialer_counter(stats, "connect");
        uint64_t refusals = dialer_counter(stats, "refused");
        total += refusals;
        if (connects != d->connects) {
            /* A connection came up since the last look: only refusals
             * after it count (this look cannot tell which came after, so
             * none does; the next look will). */
            d->connects = connects;
            d->refused_before = refusals;
        }
        if (refusals <= d->refused_before) {
            refused = false;
        }
    }
    nng_stats_free(root);
    atomic_store(&client->refusals, total);
    return refused;
}

/* Whether the service refuses `client`'s connections now (see
 * dialers_refused), judged by refusals counted after `since` (a value of
 * client->refusals): never while a connection is up. Cheap and safe on an
 * NNG thread: the statistics are read at most every
 * RPC_CLIENT_REFUSED_CHECK_MS, and a thread that finds another reading
 * them takes the last verdict instead of waiting. */
static bool client_refused(rpc_client *client, uint64_t since) {
    if (atomic_load(&client->pipes) > 0) {
        return false;
    }
    if (pthread_mutex_trylock(&client->refused_mtx) == 0) {
        nng_time now = nng_clock();
        if (client->refused_checked == 0 ||
            now - client->refused_checked >= RPC_CLIENT_REFUSED_CHECK_MS) {
            client->refused_checked = now;
            atomic_store(&client->refused, dialers_refused(client));
        }
        pthread_mutex_unlock(&client->refused_mtx);
    }
    return atomic_load(&client->refused) && atomic_load(&client->refusals) > since &&
           atomic_load(&client->pipes) == 0;
}

/* The refusals counted so far, for a call that starts now: read afresh
 * while no connection is up (the caller's thread may wait for the lock),
 * so that only attempts after this moment can end the call as refused.
 * With a connection up, the last reading does: refusals after that
 * connection came up are newer than it anyway. */
static uint64_t client_refusals_now(rpc_client *client) {
    if (atomic_load(&client->pipes) == 0) {
        pthread_mutex_lock(&client->refused_mtx);
        client->refused_checked = nng_clock();
        atomic_store(&client->refused, dialers_refused(client));
        pthread_mutex_unlock(&client->refused_mtx);
    }
    return atomic_load(&client->refusals);
}

/* ------------------------------------------------------------------------
 * A call: pack, send, receive; decoding waits for the owner. */

/* Records why the call's send, or once it was sent its receive, failed. */
static void call_failed(rpc_call *c, int nrv) {
    const char *where = c->client->where;
    bool sent = c->stage == CALL_RECEIVING;
    /* Closing the socket resets its connections first, so a call cut short
     * by rpc_client_close() may see NNG_ECONNRESET: that is the close. */
    if (atomic_load(&c->client->closed)) {
        nrv = NNG_ECLOSED;
    }
    int status = status_of_nng(nrv, sent);
    if (nrv == NNG_ECONNREFUSED && !sent) {
        /* Said so at once, not after the whole time limit: nothing listens
         * where the service should be. */
        if (c->client->network_shown) {
            error_set(&c->err, status, "connection refused: is tokend running at %s?",
                      where);
        } else {
            error_set(&c->err, status, "connection refused: is %s running?", where);
        }
    } else if (nrv == NNG_ECLOSED) {
        error_set(&c->err, status, "%s",
                  sent ? "client closed while waiting for a reply" : "client is closed");
    } else if (nrv == NNG_ETIMEDOUT && !sent) {
        error_set(&c->err, status, "could not reach %s within %d ms", where,
                  c->timeout_ms);
        c->unreached = true;
    } else if (nrv == NNG_ETIMEDOUT) {
        error_set(&c->err, status, "no reply from %s within %d ms", where, c->timeout_ms);
    } else if (!sent) {
        error_set(&c->err, status, "sending to %s failed: %s", where, nng_strerror(nrv));
    } else if (nrv == NNG_ECONNRESET || nrv == NNG_ECONNSHUT) {
        error_set(&c->err, status,
                  "connection to %s lost before the reply "
                  "(the call may or may not have been carried out)",
                  where);
    } else {
        error_set(&c->err, status, "no reply from %s: %s", where, nng_strerror(nrv));
    }
}

/* Moves the call on after its aio completed: from the send to the receive,
 * under what is left of the deadline, or to its end. Returns true when the
 * call is over. */
static bool call_step(rpc_call *c) {
    int nrv = nng_aio_result(c->aio);
    if (nrv == NNG_ETIMEDOUT && c->stage == CALL_SENDING) {
        /* A slice of the wait for a connection is over: a refused service
         * ends the call now, any other goes on waiting (the request is
         * still the aio's: a send that times out never left). */
        nng_time now = nng_clock();
        if (client_refused(c->client, c->refusals_at_start)) {
            nrv = NNG_ECONNREFUSED;
        } else if (now < c->deadline) {
            c->slice_ms = c->slice_ms * 2 < RPC_CLIENT_SLICE_MAX_MS
                              ? c->slice_ms * 2
                              : RPC_CLIENT_SLICE_MAX_MS;
            nng_time left = c->deadline - now;
            nng_aio_set_timeout(c->aio, left < (nng_time)c->slice_ms
                                            ? (nng_duration)left
                                            : (nng_duration)c->slice_ms);
            nng_ctx_send(c->ctx, c->aio);
            return false;
        }
    }
    if (nrv == 0 && c->stage == CALL_SENDING) {
        c->stage = CALL_RECEIVING;
        nng_time now = nng_clock();
        nng_aio_set_timeout(c->aio,
                            c->deadline > now ? (nng_duration)(c->deadline - now) : 1);
        nng_ctx_recv(c->ctx, c->aio);
        return false;
    }
    if (nrv == 0) {
        c->reply_msg = nng_aio_get_msg(c->aio);
    } else {
        /* A failed send hands the request back. */
        if (c->stage == CALL_SENDING) {
            wipe_free_msg(nng_aio_get_msg(c->aio));
        }
        call_failed(c, nrv);
    }
    nng_aio_set_msg(c->aio, NULL);
    c->stage = CALL_OVER;
    return true;
}

/* The aio's callback, for calls with `done`: nothing touches the call
 * after `done` returns, as its owner may already be reusing it. */
static void call_callback(void *arg) {
    rpc_call *c = arg;
    if (call_step(c)) {
        c->done(c->done_arg);
    }
}

int rpc_call_new(rpc_client *client, rpc_call_done_fn done, void *arg, rpc_call **out,
                 tokend_error *err) {
    *out = NULL;
    rpc_call *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return error_set(err, TOKEND_INTERNAL, "out of memory");
    }
    c->client = client;
    c->done = done;
    c->done_arg = arg;
    int nrv = nng_aio_alloc(&c->aio, done != NULL ? call_callback : NULL, c);
    if (nrv != 0) {
        free(c);
        return error_set(err, status_of_nng(nrv, false), "cannot allocate an NNG aio: %s",
                         nng_strerror(nrv));
    }
    if ((nrv = nng_ctx_open(&c->ctx, client->socket)) != 0) {
        nng_aio_free(c->aio);
        free(c);
        return error_set(err, status_of_nng(nrv, false),
                         "cannot open a request context: %s",
                         nrv == NNG_ECLOSED ? "client is closed" : nng_strerror(nrv));
    }
    *out = c;
    return TOKEND_OK;
}

/* Packs the envelope of `input` straight into an NNG message: one copy
 * fewer of the secrets. The packed payload in between is wiped. */
static int call_pack(const rpc_call *c, const ProtobufCMessage *input,
                     const char *credential, const Tokend__V1__RequestContext *context,
                     nng_msg **out, tokend_error *err) {
    uint8_t stack_payload[RPC_CLIENT_STACK_PAYLOAD];
    size_t payload_len = protobuf_c_message_get_packed_size(input);
    uint8_t *payload =
        payload_len <= sizeof stack_payload ? stack_payload : malloc(payload_len);
    if (payload == NULL) {
        return error_set(err, TOKEND_INTERNAL, "out of memory");
    }
    protobuf_c_message_pack(input, payload);

    Tokend__V1__Request request = TOKEND__V1__REQUEST__INIT;
    request.method = (char *)c->method->name;
    request.request_id = c->request_id;
    request.deadline_unix_ms = rpc_now_ms() + c->timeout_ms;
    if (credential != NULL && credential[0] != '\0') {
        request.credential = (char *)credential;
    }
    /* Packed from the caller's own strings: no copy of the context. */
    request.context = (Tokend__V1__RequestContext *)context;
    request.payload.data = payload;
    request.payload.len = payload_len;
    nng_msg *msg = NULL;
    int nrv = nng_msg_alloc(&msg, protobuf_c_message_get_packed_size(&request.base));
    if (nrv == 0) {
        protobuf_c_message_pack(&request.base, nng_msg_body(msg));
    }
    secret_wipe(payload, payload_len);
    if (payload != stack_payload) {
        free(payload);
    }
    if (nrv != 0) {
        return error_set(err, TOKEND_INTERNAL, "out of memory");
    }
    *out = msg;
    return TOKEND_OK;
}

int rpc_call_start(rpc_call *c, const ProtobufCMethodDescriptor *method,
                   const ProtobufCMessage *input, const char *credential,
                   const Tokend__V1__RequestContext *context, int timeout_ms,
                   tokend_error *err) {
    if (input->descriptor != method->input) {
        return error_set(err, TOKEND_INTERNAL, "%s takes a %s, not a %s", method->name,
                         method->input->name, input->descriptor->name);
    }
    c->method = method;
    c->timeout_ms = timeout_ms;
    c->request_id = atomic_fetch_add(&c->client->next_request_id, 1);
    nng_msg *msg = NULL;
    int rv = call_pack(c, input, credential, context, &msg, err);
    if (rv != TOKEND_OK) {
        return rv;
    }
    /* One time limit for send and reply together: a send that waits for a
     * connection uses up the time the reply would have had. */
    c->stage = CALL_SENDING;
    c->deadline = nng_clock() + (nng_time)timeout_ms;
    c->slice_ms = RPC_CLIENT_SLICE_FIRST_MS;
    c->refusals_at_start = client_refusals_now(c->client);
    nng_aio_set_timeout(c->aio, timeout_ms < c->slice_ms ? timeout_ms : c->slice_ms);
    nng_aio_set_msg(c->aio, msg);
    nng_ctx_send(c->ctx, c->aio);
    return TOKEND_OK;
}

void rpc_call_wait(rpc_call *c) {
    nng_aio_wait(c->aio);
    if (c->done != NULL) {
        return; /* the callback took every step, and `done` has returned */
    }
    /* No callback: each completion is stepped here, on the owner's thread. */
    while (!call_step(c)) {
        nng_aio_wait(c->aio);
    }
}

/* Decodes the reply envelope and, if it says OK, the method's output; the
 * reply's bytes are wiped and freed on the way. */
static void call_decode(rpc_call *c) {
    nng_msg *msg = c->reply_msg;
    c->reply_msg = NULL;
    const char *name = c->method->name;
    size_t len = nng_msg_len(msg);
    rpc_arena arena;
    rpc_arena_init(&arena, rpc_decode_budget(len));
    Tokend__V1__Reply *reply =
        tokend__v1__reply__unpack(&arena.base, len, nng_msg_body(msg));
    wipe_free_msg(msg);
    if (reply == NULL) {
        error_set(&c->err,
                  arena.exhausted ? TOKEND_RESOURCE_EXHAUSTED : TOKEND_BAD_MESSAGE,
                  "%s reply could not be decoded%s", name,
                  arena.exhausted ? " (too large)" : "");
        return;
    }
    int status = rpc_status_from_wire(reply->status);
    /* NNG's REQ protocol pairs replies with requests itself; the envelope's
     * id is checked as well, so that a confused peer is caught, not obeyed.
     * A refusal may carry id 0 when the service could not read the request
     * (too large, undecodable): its status is still the answer. */
    bool id_unknown = status != TOKEND_OK && reply->request_id == 0;
    if (reply->request_id != c->request_id && !id_unknown) {
        error_set(&c->err, TOKEND_BAD_MESSAGE, "%s reply answers request %llu, not %llu",
                  name, (unsigned long long)reply->request_id,
                  (unsigned long long)c->request_id);
    } else if (status != TOKEND_OK) {
        error_set(&c->err, status, "%s", reply->message != NULL ? reply->message : "");
    } else {
        rpc_arena_init(&c->output_arena, rpc_decode_budget(reply->payload.len));
        c->output = protobuf_c_message_unpack(c->method->output, &c->output_arena.base,
                                              reply->payload.len, reply->payload.data);
        if (c->output == NULL) {
            bool exhausted = c->output_arena.exhausted;
            error_set(&c->err, exhausted ? TOKEND_RESOURCE_EXHAUSTED : TOKEND_BAD_MESSAGE,
                      "%s reply payload could not be decoded%s", name,
                      exhausted ? " (too large)" : "");
        }
    }
    /* The payload may carry a plain-text token (CreateToken). */
    if (reply->payload.data != NULL) {
        secret_wipe(reply->payload.data, reply->payload.len);
    }
    tokend__v1__reply__free_unpacked(reply, &arena.base);
}

int rpc_call_result(rpc_call *c, const ProtobufCMessage **output, tokend_error *err) {
    if (c->reply_msg != NULL) {
        call_decode(c);
    }
    /* Said here, on the owner's thread, not in the NNG callback: reading
     * the statistics takes NNG's locks and allocates. */
    char why[200];
    if (c->unreached && c->client->network_shown &&
        client_tls_failures(c->client, why, sizeof why)) {
        char said[sizeof c->err.message];
        memcpy(said, c->err.message, sizeof said);
        error_set(&c->err, c->err.code, "%s: %s", said, why);
    }
    c->unreached = false;
    *output = c->output;
    if (err != NULL) {
        *err = c->err;
    }
    return c->err.code;
}

void rpc_call_reset(rpc_call *c) {
    /* `done` may have returned a moment ago while the callback is still
     * unwinding; the aio must be quiet before it serves another request. */
    nng_aio_wait(c->aio);
    if (c->output != NULL) {
        protobuf_c_message_free_unpacked(c->output, &c->output_arena.base);
        c->output = NULL;
    }
    wipe_free_msg(c->reply_msg);
    c->reply_msg = NULL;
    error_set(&c->err, TOKEND_OK, NULL);
    c->unreached = false;
    c->stage = CALL_IDLE;
}

void rpc_call_free(rpc_call *c) {
    if (c == NULL) {
        return;
    }
    rpc_call_reset(c);
    nng_ctx_close(c->ctx);
    nng_aio_free(c->aio);
    free(c);
}
