/* deadline — timed waits on the monotonic clock. A condition variable
 * made by deadline_cond_init waits until an absolute time deadline_in
 * computes: a wall clock stepped back (NTP, an operator) can neither
 * stretch a wait nor stall a linger. Every condition variable of the
 * core that is waited on with a timeout is made here. */
#ifndef BATON_DEADLINE_H
#define BATON_DEADLINE_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

void deadline_cond_init(pthread_cond_t *cv);
/* *ts = now + ms, on the clock of deadline_cond_init's conditions */
void deadline_in(struct timespec *ts, int64_t ms);
void deadline_in_us(struct timespec *ts, int64_t us);
/* that clock, in milliseconds and microseconds */
int64_t deadline_now_ms(void);
int64_t deadline_now_us(void);

#endif
