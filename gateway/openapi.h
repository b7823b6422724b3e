/*
 * openapi.h — the OpenAPI 3 document of the gateway's API, embedded at
 * build time: the Makefile turns gateway/openapi.json (checked in, the
 * single source) into build/gen/openapi_json.c with od and sed.
 */
#ifndef GATEWAY_OPENAPI_H
#define GATEWAY_OPENAPI_H

#include <stddef.h>

/* The bytes of gateway/openapi.json (not NUL-terminated). */
extern const unsigned char gateway_openapi_json[];
extern const size_t gateway_openapi_json_len;

#endif /* GATEWAY_OPENAPI_H */
