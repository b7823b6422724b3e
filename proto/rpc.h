/*
 * rpc.h — what both ends of the tokend wire share: the envelope codec, a
 * size-capped allocator for decoding untrusted bytes, string validation,
 * and the one mapping between the wire `Status` and tokend_status.
 *
 * This module owns protobuf packing of the envelope; it does no I/O (the
 * service owns its NNG socket, rpc_client.c the clients'). Generated
 * protobuf-c types appear here and in the service, never in the public
 * client header.
 */
#ifndef TOKEND_RPC_H
#define TOKEND_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "tokend.h"
#include "tokend.pb-c.h"

/* Default and hard ceilings on one NNG message, in bytes. */
#define RPC_DEFAULT_MAX_MESSAGE (64 * 1024)
#define RPC_MAX_MESSAGE_CEILING (16 * 1024 * 1024)

/*
 * A protobuf-c allocator with a budget. protobuf-c has no size limit of its
 * own: a small message of many empty repeated fields can make it allocate
 * tens of times its size. Unpacking through an rpc_arena fails (returns
 * NULL, as for malformed bytes) once `cap` bytes are in use, and `used`
 * tells how much was. Every block is wiped when it is freed (decoded
 * messages hold credentials and tokens). Caller-allocated; not thread-safe
 * (one per decode).
 */
typedef struct rpc_arena {
    ProtobufCAllocator base;
    size_t used;
    size_t cap;
    bool exhausted; /* set when an allocation was refused */
} rpc_arena;

/* Prepares `arena` to hand out at most `cap` bytes in all. */
void rpc_arena_init(rpc_arena *arena, size_t cap);

/* The budget to decode a message of `len` bytes: generous for any honest
 * message (every field of ours costs at most a few times its wire size),
 * small enough that hostile input cannot balloon. */
size_t rpc_decode_budget(size_t len);

/* True if s[0..len) is well-formed UTF-8 with no NUL and no C0 control
 * characters other than none at all (tab, newline included are refused):
 * what owners, names, abilities and metadata keys must be. */
bool rpc_text_ok(const char *s, size_t len);

/* True if s[0..len) is well-formed UTF-8 with no NUL (control characters
 * allowed): what metadata values must be. */
bool rpc_utf8_ok(const char *s, size_t len);

/* How the message of a CreateToken refused RESOURCE_EXHAUSTED begins when
 * the owner already has as many tokens as the service allows
 * (`--max-tokens-per-owner`); the gateway answers that refusal, and no
 * other RESOURCE_EXHAUSTED, with 429. */
#define RPC_OWNER_LIMIT_MESSAGE "owner has reached its token limit"

/* The method descriptor named `name` in TokenService, or NULL. */
const ProtobufCMethodDescriptor *rpc_method(const char *name);

/* Maps a wire status to tokend_status (unknown numbers become
 * TOKEND_INTERNAL) and back. They are the same numbers; this is the one
 * place that says so (and static-asserts it). */
int rpc_status_from_wire(Tokend__V1__Status status);
Tokend__V1__Status rpc_status_to_wire(int status);

/* Packs `msg` into a fresh malloc'd buffer; *out is the caller's to free.
 * Returns 0 or TOKEND_INTERNAL (out of memory). */
int rpc_pack(const ProtobufCMessage *msg, uint8_t **out, size_t *out_len);

/* Current Unix time in milliseconds (CLOCK_REALTIME). */
int64_t rpc_now_ms(void);

#endif /* TOKEND_RPC_H */
