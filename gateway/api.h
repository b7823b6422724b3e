/*
 * api.h — the partners' REST API of docs/gateway.md, on top of http.h and
 * upstream.h: routes and methods, bearer and query parsing, JSON request
 * bodies (type-checked, depth- and size-bounded) and JSON replies, and the
 * one mapping from tokend status to HTTP status and problem code.
 *
 * Every request becomes at most one TokenService call. The bearer token's
 * shape and checksum are checked here first (token_well_formed, the
 * service's own rule), so a malformed token never costs a call. While a
 * call is in flight the HTTP request is suspended; the call's completion
 * resumes it, and the reply is built on an HTTP worker thread.
 */
#ifndef GATEWAY_API_H
#define GATEWAY_API_H

#include <stddef.h>

#include "http.h"
#include "stats.h"
#include "proxy.h"
#include "upstream.h"

typedef struct api api;

typedef struct api_config {
    upstream *up;                  /* borrowed; outlives the api */
    const char *verify_credential; /* sent with Verify; NULL: none (copied) */
    int ready_timeout_ms;          /* limit of /readyz's call; 0: the RPC one */
    const void *openapi;           /* the OpenAPI document, static */
    size_t openapi_len;
    gw_stats *stats; /* borrowed: GET /metrics and the counts; NULL: off (404) */
    /* Peers whose forwarded headers (X-Forwarded-For, X-Original-URI, ...)
     * are believed (copied); NULL: none. */
    const proxy_trust *trust;
} api_config;

/* Returns a new api or NULL when out of memory. Free with api_free(). */
api *api_new(const api_config *cfg);

/* Wipes the credential copy and frees the api. NULL is ignored. */
void api_free(api *a);

/* The http_handlers of the API; `cls` is the api. */
void api_handle(void *cls, http_request *req);
void api_resume(void *cls, http_request *req);
void api_release(void *cls, void *data);
void api_finished(void *cls, const http_request *req, int status);

#endif /* GATEWAY_API_H */
