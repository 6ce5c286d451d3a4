#include "base/deadline.h"

void deadline_cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

void deadline_in_us(struct timespec *ts, int64_t us)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    int64_t ns = ts->tv_nsec + us % 1000000 * 1000;
    ts->tv_sec += (time_t)(us / 1000000 + ns / 1000000000L);
    ts->tv_nsec = (long)(ns % 1000000000L);
}

void deadline_in(struct timespec *ts, int64_t ms)
{
    deadline_in_us(ts, ms * 1000);
}

int64_t deadline_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t deadline_now_ms(void)
{
    return deadline_now_us() / 1000;
}
