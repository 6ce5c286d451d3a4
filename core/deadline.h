/* deadline — absolute times for pthread_cond_timedwait (CLOCK_REALTIME,
 * the condition variables' default clock). */
#ifndef BATON_DEADLINE_H
#define BATON_DEADLINE_H

#include <stdint.h>
#include <time.h>

/* *ts = now + ms */
void deadline_in(struct timespec *ts, int64_t ms);

#endif
