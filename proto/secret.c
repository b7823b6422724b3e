/*
 * secret.c — wiping secrets before their memory is given back, and core
 * dumps off. See secret.h.
 */
#include "secret.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include "error.h"

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

int secret_core_dumps(bool allow, tokend_error *err) {
    struct rlimit core;
    if (getrlimit(RLIMIT_CORE, &core) != 0) {
        return error_set(err, TOKEND_INTERNAL, "cannot read the core size limit: %s",
                         strerror(errno));
    }
    if (allow) {
        core.rlim_cur = core.rlim_max;
    } else {
        core.rlim_cur = 0;
        core.rlim_max = 0;
    }
    if (setrlimit(RLIMIT_CORE, &core) != 0) {
        return error_set(err, TOKEND_INTERNAL, "cannot set the core size limit: %s",
                         strerror(errno));
    }
    if (prctl(PR_SET_DUMPABLE, allow ? 1 : 0, 0, 0, 0) != 0) {
        return error_set(err, TOKEND_INTERNAL, "cannot make the process %sdumpable: %s",
                         allow ? "" : "non-", strerror(errno));
    }
    return TOKEND_OK;
}
