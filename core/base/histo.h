/* base/histo — a latency histogram of fixed buckets, lock-free (atomic
 * counters), for the Prometheus /metrics: observe from any thread, read
 * a snapshot from another. */
#ifndef BATON_BASE_HISTO_H
#define BATON_BASE_HISTO_H

#include <stdatomic.h>
#include <stdint.h>

#define HISTO_NBUCKETS 14

/* Upper bounds of the buckets, in seconds (the last one is +Inf). */
extern const double histo_bounds[HISTO_NBUCKETS];

typedef struct histo {
    atomic_ullong bucket[HISTO_NBUCKETS]; /* not cumulative */
    atomic_ullong count;
    atomic_ullong sum_us;
} histo;

void histo_observe_us(histo *h, int64_t us);

#endif
