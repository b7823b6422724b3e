/*
 * secret.c — wiping secrets before their memory is given back. See secret.h.
 */
#include "secret.h"

#include <stdlib.h>
#include <string.h>

void secret_wipe(void *ptr, size_t len) {
    if (ptr != NULL && len > 0) {
        explicit_bzero(ptr, len);
    }
}

void secret_free(char *s) {
    if (s != NULL) {
        secret_wipe(s, strlen(s));
        free(s);
    }
}
