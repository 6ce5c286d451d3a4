/* ratelimit — a token bucket on the monotonic clock, shared by threads:
 * the `rate` of a channel (core/delivery) and of an action (the journey's
 * action workers). A wall clock stepped back (NTP, an operator) neither
 * stalls nor releases a burst: tokens accrue only with monotonic time.
 *
 * The bucket holds at most `burst` tokens and refills at `rate` per
 * second; ratelimit_take debits n tokens at once (it may go negative)
 * and answers how long the caller must wait before it may go — so
 * concurrent takers queue up behind one another instead of all waking at
 * once. A rate <= 0 means no limit. Any thread. */
#ifndef BATON_RATELIMIT_H
#define BATON_RATELIMIT_H

#include <pthread.h>
#include <stdint.h>

typedef struct ratelimit {
    pthread_mutex_t mu;
    double rate;   /* tokens per second now (ratelimit_set_rate) */
    double burst;  /* the bucket's size, in tokens */
    double tokens; /* may be negative: debt the next takers wait out */
    int64_t last_us;
} ratelimit;

/* A bucket holding `initial` tokens (at most burst). */
void ratelimit_init(ratelimit *rl, double rate, double burst, double initial);
void ratelimit_destroy(ratelimit *rl);

/* Take n tokens; returns the microseconds to wait before using them (0:
 * go now). Never blocks. */
int64_t ratelimit_take(ratelimit *rl, double n);

/* Take n tokens and sleep until they are due. */
void ratelimit_acquire(ratelimit *rl, double n);

/* Change the rate (and bucket size) from now on: tokens already accrued
 * are kept, up to the new size. */
void ratelimit_set_rate(ratelimit *rl, double rate, double burst);
double ratelimit_rate(ratelimit *rl);

#endif
