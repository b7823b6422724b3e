/*
 * rpc.c — the envelope codec, capped allocator, string checks and status
 * mapping shared by the service and libtokend. See rpc.h.
 */
#include "rpc.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "secret.h"

/* The wire Status and tokend_status are one list: prove it at build time. */
#define RPC_X_ASSERT(name, num, desc)                                     \
    _Static_assert((int)TOKEND__V1__STATUS__##name == (int)TOKEND_##name, \
                   "wire status " #name " drifted from tokend_status");
TOKEND_STATUS_LIST(RPC_X_ASSERT)
#undef RPC_X_ASSERT
/* ...and numbered without gaps, so TOKEND_STATUS_COUNT bounds the tables. */
#define RPC_X_DENSE(name, num, desc) \
    _Static_assert((num) >= 0 && (num) < TOKEND_STATUS_COUNT, #name " leaves a gap");
TOKEND_STATUS_LIST(RPC_X_DENSE)
#undef RPC_X_DENSE

/* Each allocation carries its size in front so free can give it back. */
typedef struct arena_hdr {
    size_t size;
    max_align_t align;
} arena_hdr;

static void *arena_alloc(void *data, size_t size) {
    rpc_arena *arena = data;
    if (size > arena->cap || arena->used > arena->cap - size) {
        arena->exhausted = true;
        return NULL;
    }
    arena_hdr *hdr = malloc(offsetof(arena_hdr, align) + size);
    if (hdr == NULL) {
        arena->exhausted = true;
        return NULL;
    }
    hdr->size = size;
    arena->used += size;
    return (char *)hdr + offsetof(arena_hdr, align);
}

/* Every block is wiped before it is freed: the decoded strings of an
 * envelope are credentials and tokens as often as not, and the arena is
 * the one place that knows each block's size. */
static void arena_free(void *data, void *ptr) {
    rpc_arena *arena = data;
    if (ptr == NULL) {
        return;
    }
    arena_hdr *hdr = (arena_hdr *)((char *)ptr - offsetof(arena_hdr, align));
    arena->used -= hdr->size;
    secret_wipe(ptr, hdr->size);
    free(hdr);
}

void rpc_arena_init(rpc_arena *arena, size_t cap) {
    arena->base.alloc = arena_alloc;
    arena->base.free = arena_free;
    arena->base.allocator_data = arena;
    arena->used = 0;
    arena->cap = cap;
    arena->exhausted = false;
}

size_t rpc_decode_budget(size_t len) {
    /* While unpacking, protobuf-c keeps a ~32-byte "scanned member" record
     * per field occurrence, and a field can take as little as 2 wire
     * bytes: 16 bytes per wire byte before the decoded message itself
     * (pointers and copies, a few bytes per wire byte). 32x covers every
     * message of ours, hostile or not, and still bounds a 64 KiB request to
     * about 2 MiB. */
    return 32 * len + 64 * 1024;
}

/* Length of the UTF-8 sequence starting at s (at most `left` bytes), or 0
 * if it is not well-formed (overlongs, surrogates and > U+10FFFF refused). */
static size_t utf8_seq(const unsigned char *s, size_t left) {
    unsigned char c = s[0];
    if (c < 0x80) {
        return 1;
    }
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) {
            lo = 0xA0;
        } else if (c == 0xED) {
            hi = 0x9F;
        }
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) {
            lo = 0x90;
        } else if (c == 0xF4) {
            hi = 0x8F;
        }
    } else {
        return 0;
    }
    if (left < n || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF) {
            return 0;
        }
    }
    return n;
}

static bool utf8_check(const char *str, size_t len, bool allow_control) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        if (s[i] >= 0x20 && s[i] < 0x7F) {
            i++; /* printable ASCII, nearly every byte we see: no decoding */
            continue;
        }
        if (s[i] == 0 || (!allow_control && (s[i] < 0x20 || s[i] == 0x7F))) {
            return false;
        }
        size_t n = utf8_seq(s + i, len - i);
        if (n == 0) {
            return false;
        }
        i += n;
    }
    return true;
}

bool rpc_text_ok(const char *s, size_t len) {
    return utf8_check(s, len, false);
}

bool rpc_utf8_ok(const char *s, size_t len) {
    return utf8_check(s, len, true);
}

const ProtobufCMethodDescriptor *rpc_method(const char *name) {
    return protobuf_c_service_descriptor_get_method_by_name(
        &tokend__v1__token_service__descriptor, name);
}

int rpc_status_from_wire(Tokend__V1__Status status) {
    if ((int)status < 0 || (int)status >= TOKEND_STATUS_COUNT) {
        return TOKEND_INTERNAL;
    }
    return (int)status;
}

Tokend__V1__Status rpc_status_to_wire(int status) {
    if (status < 0 || status >= TOKEND_STATUS_COUNT) {
        return TOKEND__V1__STATUS__INTERNAL;
    }
    return (Tokend__V1__Status)status;
}

int rpc_pack(const ProtobufCMessage *msg, uint8_t **out, size_t *out_len) {
    size_t len = protobuf_c_message_get_packed_size(msg);
    /* malloc(0) may return NULL; an empty message is a valid payload. */
    uint8_t *buf = malloc(len > 0 ? len : 1);
    if (buf == NULL) {
        return TOKEND_INTERNAL;
    }
    protobuf_c_message_pack(msg, buf);
    *out = buf;
    *out_len = len;
    return TOKEND_OK;
}

int64_t rpc_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *const status_names[TOKEND_STATUS_COUNT] = {
#define RPC_X_NAME(name, num, desc) [num] = #name,
    TOKEND_STATUS_LIST(RPC_X_NAME)
#undef RPC_X_NAME
};

static const char *const status_descs[TOKEND_STATUS_COUNT] = {
#define RPC_X_DESC(name, num, desc) [num] = desc,
    TOKEND_STATUS_LIST(RPC_X_DESC)
#undef RPC_X_DESC
};

const char *tokend_status_name(int status) {
    if (status < 0 || status >= TOKEND_STATUS_COUNT) {
        return "UNKNOWN";
    }
    return status_names[status];
}

const char *tokend_strerror(int status) {
    if (status < 0 || status >= TOKEND_STATUS_COUNT) {
        return "unknown status";
    }
    return status_descs[status];
}

const char *tokend_version(void) {
    return TOKEND_VERSION;
}
