/*
 * test_tls.c — the RPC over tls+tcp://, against the real tokend: a CA and
 * certificates made with the openssl command at test time (in the test's
 * scratch dir; no key is ever committed), tokenctl and the gateway as
 * clients, and every refusal an operator can meet: a service certificate
 * from another CA or for another name, a TLS URL without a CA, TLS options
 * without a TLS URL, a client without a certificate (or with one from
 * another CA) under mutual TLS, a TLS listener without a certificate.
 *
 * tokend listens on its usual ipc:// socket too, which the harness uses to
 * see it is up; the clients under test dial the TLS URL.
 */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "test.h"
#include "token.h"

#define PATH 400

/* A test's certificates: a CA signing a server and a client certificate,
 * and a second CA, unknown to the service, signing another client's. */
typedef struct pki {
    char ca[PATH], ca_key[PATH];
    char server[PATH], server_key[PATH];
    char client[PATH], client_key[PATH];
    char other_ca[PATH], other_ca_key[PATH];
    char other_client[PATH], other_client_key[PATH];
} pki;

static void run_openssl(const char *const *argv) {
    char *out = NULL, *err = NULL;
    int rc = harness_exec(argv, NULL, NULL, &out, &err);
    if (rc != 0) {
        fprintf(stderr, "openssl %s: exit %d: %s\n", argv[1], rc, err ? err : "");
    }
    REQUIRE(rc == 0);
    free(out);
    free(err);
}

/* A self-signed CA certificate (P-256, one day) and its key. */
static void make_ca(const char *cert, const char *key, const char *cn) {
    char subj[128];
    snprintf(subj, sizeof(subj), "/CN=%s", cn);
    const char *argv[] = {"openssl",
                          "req",
                          "-x509",
                          "-newkey",
                          "ec",
                          "-pkeyopt",
                          "ec_paramgen_curve:P-256",
                          "-nodes",
                          "-keyout",
                          key,
                          "-out",
                          cert,
                          "-days",
                          "1",
                          "-subj",
                          subj,
                          NULL};
    run_openssl(argv);
}

/* A certificate for `cn` signed by ca/ca_key, with the extensions of the
 * file `ext` ("name = value" lines). */
static void make_cert(const char *dir, const char *cert, const char *key, const char *cn,
                      const char *ext_text, const char *ca, const char *ca_key,
                      const char *serial) {
    char csr[PATH + 8], ext[PATH + 8], subj[128];
    snprintf(csr, sizeof(csr), "%s.csr", cert);
    snprintf(ext, sizeof(ext), "%s/%s.ext", dir, serial);
    snprintf(subj, sizeof(subj), "/CN=%s", cn);
    FILE *f = fopen(ext, "w");
    REQUIRE(f != NULL);
    fputs(ext_text, f);
    fclose(f);
    const char *req[] = {
        "openssl", "req",     "-newkey", "ec",   "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes",  "-keyout", key,       "-out", csr,        "-subj",
        subj,      NULL};
    run_openssl(req);
    const char *sign[] = {"openssl", "x509",   "-req", "-in",         csr,    "-CA",
                          ca,        "-CAkey", ca_key, "-set_serial", serial, "-out",
                          cert,      "-days",  "1",    "-extfile",    ext,    NULL};
    run_openssl(sign);
}

static void make_pki(pki *k) {
    const char *dir = test_tmpdir();
    snprintf(k->ca, PATH, "%s/ca.pem", dir);
    snprintf(k->ca_key, PATH, "%s/ca.key", dir);
    snprintf(k->server, PATH, "%s/server.pem", dir);
    snprintf(k->server_key, PATH, "%s/server.key", dir);
    snprintf(k->client, PATH, "%s/client.pem", dir);
    snprintf(k->client_key, PATH, "%s/client.key", dir);
    snprintf(k->other_ca, PATH, "%s/other-ca.pem", dir);
    snprintf(k->other_ca_key, PATH, "%s/other-ca.key", dir);
    snprintf(k->other_client, PATH, "%s/other-client.pem", dir);
    snprintf(k->other_client_key, PATH, "%s/other-client.key", dir);
    make_ca(k->ca, k->ca_key, "tokend test CA");
    make_ca(k->other_ca, k->other_ca_key, "another CA");
    make_cert(dir, k->server, k->server_key, "localhost",
              "basicConstraints = CA:FALSE\n"
              "extendedKeyUsage = serverAuth\n"
              "subjectAltName = DNS:localhost, IP:127.0.0.1\n",
              k->ca, k->ca_key, "2");
    make_cert(dir, k->client, k->client_key, "service:billing",
              "basicConstraints = CA:FALSE\nextendedKeyUsage = clientAuth\n", k->ca,
              k->ca_key, "3");
    make_cert(dir, k->other_client, k->other_client_key, "service:intruder",
              "basicConstraints = CA:FALSE\nextendedKeyUsage = clientAuth\n", k->other_ca,
              k->other_ca_key, "4");
}

/* A test's certificates and tokend, listening on its ipc:// socket and
 * on `url`, a tls+tcp:// URL on a free port, with the server certificate. */
typedef struct tls_fixture {
    pki k;
    tokend_proc p;
    char url[64];
} tls_fixture;

/* Makes the certificates and starts tokend; with `mutual`, only clients
 * with a certificate from the test CA may connect to the TLS URL. */
static void fixture_start(tls_fixture *f, bool mutual) {
    make_pki(&f->k);
    harness_init(&f->p);
    snprintf(f->url, sizeof(f->url), "tls+tcp://127.0.0.1:%d", harness_free_port());
    const char *const flags[] = {"--listen",        f->url,      "--tls-cert",
                                 f->k.server,       "--tls-key", f->k.server_key,
                                 "--tls-client-ca", f->k.ca,     NULL};
    for (size_t i = 0; flags[i] != NULL && (mutual || i < 6); i++) {
        f->p.extra[i] = flags[i];
    }
    REQUIRE(harness_start(&f->p));
}

/* Runs tokenctl with `args` (NULL-terminated) and the extra environment
 * `env` (may be NULL), the credential in TOKEND_CREDENTIAL. */
static int ctl(const char *credential, const char *const *env, char **out, char **err,
               const char *const *args) {
    const char *argv[40] = {harness_bin("tokenctl")};
    size_t n = 1;
    for (size_t i = 0; args[i] != NULL && n < 39; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    static char cred_env[200];
    snprintf(cred_env, sizeof(cred_env), "TOKEND_CREDENTIAL=%s",
             credential != NULL ? credential : "");
    const char *all_env[16] = {cred_env};
    for (size_t i = 0; env != NULL && env[i] != NULL && i < 14; i++) {
        all_env[i + 1] = env[i];
    }
    return harness_exec(argv, NULL, all_env, out, err);
}

#define CTL(cred, env, out, err, ...) \
    ctl((cred), (env), (out), (err), (const char *const[]){__VA_ARGS__, NULL})

/* Line `index` of s copied into buf. */
static void line_of(const char *s, int index, char *buf, size_t size) {
    buf[0] = '\0';
    for (int i = 0; s != NULL && i < index; i++) {
        s = strchr(s, '\n');
        s = s ? s + 1 : NULL;
    }
    if (s != NULL) {
        size_t len = strcspn(s, "\n");
        snprintf(buf, size, "%.*s", (int)(len < size ? len : size - 1), s);
    }
}

TEST(cli_tls_create_verify_list) {
    tls_fixture f;
    fixture_start(&f, false);
    char *out = NULL, *err = NULL;
    /* Flags: the CA and the name on the certificate (the URL's host is an
     * IP address, which mbedTLS 2.28 does not match against IP SANs). */
    CHECK_INT(CTL(f.p.admin, NULL, &out, &err, "--url", f.url, "--tls-ca", f.k.ca,
                  "--tls-server-name", "localhost", "create", "--owner", "partner:tls",
                  "--name", "over TLS", "--ability", "orders:read"),
              0);
    if (err != NULL && err[0] != '\0') {
        fprintf(stderr, "    tokenctl: %s", err);
    }
    char token[128], id[64];
    line_of(out, 0, token, sizeof(token));
    line_of(out, 1, id, sizeof(id));
    CHECK(token_well_formed(token, strlen(token)));
    free(out);
    free(err);

    /* The environment gives the same settings. */
    char url_env[100], ca_env[PATH + 20];
    snprintf(url_env, sizeof(url_env), "TOKEND_URL=%s", f.url);
    snprintf(ca_env, sizeof(ca_env), "TOKEND_TLS_CA=%s", f.k.ca);
    const char *env[] = {url_env, ca_env, "TOKEND_TLS_SERVER_NAME=localhost", NULL};
    CHECK_INT(CTL(NULL, env, &out, &err, "verify", token, "--ability", "orders:read"), 0);
    CHECK(test_contains(out, "OK"));
    CHECK(test_contains(out, id));
    free(out);
    free(err);
    CHECK_INT(CTL(f.p.admin, env, &out, &err, "list", "--owner", "partner:tls"), 0);
    CHECK(test_contains(out, id));
    CHECK(test_contains(out, "over TLS"));
    free(out);
    free(err);

    /* The log says the listener is a TLS one. */
    char *log = harness_read_file(f.p.log_path);
    char want[120];
    snprintf(want, sizeof(want), "event=listening url=\"%s\" tls=server", f.url);
    CHECK(test_contains(log, want));
    free(log);
    harness_stop(&f.p);
}

/* A call tokenctl is to refuse: its flags (before `list --owner x`, with
 * a 1 s limit), exit code and what stderr must say. */
typedef struct refusal {
    const char *args[12];
    int code;
    const char *want[3];
} refusal;

/* Runs each case as the admin and checks its refusal. */
static void check_refusals(const tls_fixture *f, const refusal *cases, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const char *argv[20];
        size_t k = 0;
        for (; cases[i].args[k] != NULL; k++) {
            argv[k] = cases[i].args[k];
        }
        const char *const tail[] = {"--timeout", "1000", "list", "--owner", "x", NULL};
        memcpy(argv + k, tail, sizeof(tail));
        char *out = NULL, *err = NULL;
        int rc = ctl(f->p.admin, NULL, &out, &err, argv);
        bool said = true;
        for (size_t w = 0; w < 3 && cases[i].want[w] != NULL; w++) {
            said = said && test_contains(err, cases[i].want[w]);
        }
        if (rc != cases[i].code || !said || out == NULL || out[0] != '\0') {
            test_fail(__FILE__, __LINE__, "case %zu: exit %d (want %d), stderr: %s", i,
                      rc, cases[i].code, err != NULL ? err : "");
        }
        free(out);
        free(err);
    }
}

TEST(cli_tls_wrong_ca_or_name_is_refused) {
    tls_fixture f;
    fixture_start(&f, false);
    const char *const unreachable = "tokenctl: UNAVAILABLE: could not reach";
    const refusal cases[] = {
        /* A service certificate from a CA the client does not trust: no
         * connection, UNAVAILABLE (exit 3), and the message says why. */
        {{"--url", f.url, "--tls-ca", f.k.other_ca, "--tls-server-name", "localhost"},
         3,
         {unreachable, "certificate not accepted", "\"localhost\""}},
        /* The right CA but another name than the certificate's. */
        {{"--url", f.url, "--tls-ca", f.k.ca, "--tls-server-name", "tokend.example"},
         3,
         {unreachable, "certificate not accepted", "\"tokend.example\""}},
        /* A TLS URL without a CA verifies against nothing: refused before
         * any connection (usage error, exit 2). */
        {{"--url", f.url}, 2, {"needs a TLS CA file"}},
        /* TLS options with a URL that is not TLS would send everything in
         * the clear: refused too. */
        {{"--url", f.p.url, "--tls-ca", f.k.ca}, 2, {"no service URL is tls+tcp://"}},
        /* A certificate without its key, a CA file that is not there. */
        {{"--url", f.url, "--tls-ca", f.k.ca, "--tls-cert", f.k.client},
         2,
         {"certificate and its key go together"}},
        {{"--url", f.url, "--tls-ca", "/nonexistent/ca"},
         2,
         {"cannot read the TLS CA file /nonexistent/ca"}},
    };
    check_refusals(&f, cases, sizeof(cases) / sizeof(cases[0]));
    harness_stop(&f.p);
}

TEST(cli_tls_mutual_refuses_clients_without_a_certificate) {
    tls_fixture f;
    fixture_start(&f, true);
    const char *const unreachable = "tokenctl: UNAVAILABLE: could not reach";
    const refusal cases[] = {
        /* No client certificate: the service ends the handshake. */
        {{"--url", f.url, "--tls-ca", f.k.ca, "--tls-server-name", "localhost"},
         3,
         {unreachable, "TLS handshakes (it may want a client certificate"}},
        /* A certificate from another CA is no better. */
        {{"--url", f.url, "--tls-ca", f.k.ca, "--tls-server-name", "localhost",
          "--tls-cert", f.k.other_client, "--tls-key", f.k.other_client_key},
         3,
         {unreachable}},
    };
    check_refusals(&f, cases, sizeof(cases) / sizeof(cases[0]));
    char *out = NULL, *err = NULL;
    /* With a certificate from the client CA, the call goes through. */
    char cert_env[PATH + 20], key_env[PATH + 20];
    snprintf(cert_env, sizeof(cert_env), "TOKEND_TLS_CERT=%s", f.k.client);
    snprintf(key_env, sizeof(key_env), "TOKEND_TLS_KEY=%s", f.k.client_key);
    const char *env[] = {cert_env, key_env, NULL};
    CHECK_INT(CTL(f.p.admin, env, &out, &err, "--url", f.url, "--tls-ca", f.k.ca,
                  "--tls-server-name", "localhost", "create", "--owner", "partner:m",
                  "--name", "mutual", "--ability", "a:b"),
              0);
    char token[128];
    line_of(out, 0, token, sizeof(token));
    CHECK(token_well_formed(token, strlen(token)));
    free(out);
    free(err);
    char *log = harness_read_file(f.p.log_path);
    CHECK(test_contains(log, "tls=mutual"));
    free(log);
    harness_stop(&f.p);
}

TEST(service_tls_listener_needs_a_certificate) {
    pki k;
    make_pki(&k);
    tokend_proc p;
    harness_init(&p);
    const char *tokend = harness_bin("tokend");
    char tls[64];
    snprintf(tls, sizeof(tls), "tls+tcp://127.0.0.1:%d", harness_free_port());
    char *out = NULL, *err = NULL;
    /* No certificate: refused at once, exit 2, one line naming the options. */
    const char *bare[] = {tokend,     "serve", "--data-dir", p.data_dir,
                          "--listen", tls,     NULL};
    CHECK_INT(harness_exec(bare, NULL, NULL, &out, &err), 2);
    CHECK(test_contains(err, "is a TLS URL: it needs --tls-cert PEM and --tls-key PEM"));
    CHECK(err != NULL && strchr(err, '\n') == err + strlen(err) - 1);
    free(out);
    free(err);
    /* Half a pair; TLS files with no TLS listener. */
    const char *half[] = {tokend, "serve",      "--data-dir", p.data_dir, "--listen",
                          tls,    "--tls-cert", k.server,     NULL};
    CHECK_INT(harness_exec(half, NULL, NULL, &out, &err), 2);
    CHECK(test_contains(err, "--tls-cert and --tls-key go together"));
    free(out);
    free(err);
    const char *plain[] = {tokend,      "serve",      "--data-dir", p.data_dir,
                           "--listen",  p.url,        "--tls-cert", k.server,
                           "--tls-key", k.server_key, NULL};
    CHECK_INT(harness_exec(plain, NULL, NULL, &out, &err), 2);
    CHECK(test_contains(err, "no --listen URL is tls+tcp://"));
    free(out);
    free(err);
    /* The environment is read like the flags. */
    const char *env[] = {"TOKEND_LISTEN=tls+tcp://127.0.0.1:1", NULL};
    const char *by_env[] = {tokend, "serve", "--data-dir", p.data_dir, NULL};
    CHECK_INT(harness_exec(by_env, NULL, env, &out, &err), 2);
    CHECK(test_contains(err, "needs --tls-cert"));
    free(out);
    free(err);
    /* A key that is not the certificate's: the start fails (exit 1) rather
     * than every handshake later. */
    const char *mismatch[] = {tokend,      "serve",      "--data-dir", p.data_dir,
                              "--listen",  tls,          "--tls-cert", k.server,
                              "--tls-key", k.client_key, NULL};
    CHECK_INT(harness_exec(mismatch, NULL, NULL, &out, &err), 1);
    CHECK(test_contains(err, "the key does not belong to the certificate"));
    free(out);
    free(err);
}

TEST(gateway_tls_upstream_to_a_tls_tokend) {
    tls_fixture f;
    fixture_start(&f, true);
    gateway_proc g;
    memset(&g, 0, sizeof(g));
    const char *flags[] = {"--service-tls-ca",
                           f.k.ca,
                           "--service-tls-cert",
                           f.k.client,
                           "--service-tls-key",
                           f.k.client_key,
                           "--service-tls-server-name",
                           "localhost",
                           NULL};
    for (size_t i = 0; flags[i] != NULL; i++) {
        g.extra[i] = flags[i];
    }
    REQUIRE(harness_gateway_start(&g, f.url, 0));
    http_res r = {0};
    char ready[128];
    snprintf(ready, sizeof(ready), "%s/readyz", g.base);
    CHECK_INT(CURL(&r, ready), 200);
    /* A token made over HTTP, through TLS to tokend, then checked. */
    char post[128], bearer[200];
    snprintf(post, sizeof(post), "%s/v1/tokens", g.base);
    snprintf(bearer, sizeof(bearer), "Authorization: Bearer %s", f.p.admin);
    CHECK_INT(CURL(&r, "-X", "POST", post, "-H", bearer, "-H",
                   "Content-Type: application/json", "--data-binary",
                   "{\"owner\":\"partner:gw\",\"name\":\"via gateway\","
                   "\"abilities\":[\"orders:read\"]}"),
              201);
    const char *t = strstr(r.body, "\"token\":\"");
    REQUIRE(t != NULL);
    char token[128];
    snprintf(token, sizeof(token), "%.*s", (int)strcspn(t + 9, "\""), t + 9);
    char auth[160];
    snprintf(auth, sizeof(auth), "%s/v1/auth?ability=orders:read", g.base);
    snprintf(bearer, sizeof(bearer), "Authorization: Bearer %s", token);
    CHECK_INT(CURL(&r, auth, "-H", bearer), 200);
    res_free(&r);
    CHECK_INT(harness_gateway_stop(&g), 0);

    /* Without its client certificate the gateway gets no connection:
     * not ready (503). */
    g.extra[2] = NULL;
    REQUIRE(harness_gateway_start(&g, f.url, 0));
    snprintf(ready, sizeof(ready), "%s/readyz", g.base);
    CHECK_INT(CURL(&r, ready), 503);
    res_free(&r);
    CHECK_INT(harness_gateway_stop(&g), 0);

    /* A TLS --service without a CA is a usage error. */
    const char *argv[] = {harness_bin("tokend-gateway"),
                          "--listen",
                          "127.0.0.1:0",
                          "--service",
                          f.url,
                          NULL};
    char *out = NULL, *err = NULL;
    CHECK_INT(harness_exec(argv, NULL, NULL, &out, &err), 2);
    CHECK(test_contains(err, "tokend-gateway: "));
    CHECK(test_contains(err, "needs a TLS CA file"));
    free(out);
    free(err);
    harness_stop(&f.p);
}
