/*
 * clock.c — see clock.h.
 */
#include "clock.h"

void clock_after(clockid_t clock, int64_t ms, struct timespec *out) {
    clock_gettime(clock, out);
    out->tv_sec += (time_t)(ms / 1000);
    out->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (out->tv_nsec >= 1000000000L) {
        out->tv_sec++;
        out->tv_nsec -= 1000000000L;
    }
}
