/*
 * clock.h — the absolute time `ms` from now on a clock, as the timed
 * waits (pthread_cond_timedwait, sem_timedwait) want it.
 */
#ifndef TOKEND_CLOCK_H
#define TOKEND_CLOCK_H

#include <stdint.h>
#include <time.h>

/* *out = now on `clock` (CLOCK_REALTIME, CLOCK_MONOTONIC) plus ms >= 0. */
void clock_after(clockid_t clock, int64_t ms, struct timespec *out);

#endif /* TOKEND_CLOCK_H */
