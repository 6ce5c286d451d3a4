#include "base/ratelimit.h"

#include <errno.h>
#include <time.h>

#include "base/deadline.h"

void ratelimit_init(ratelimit *rl, double rate, double burst, double initial)
{
    pthread_mutex_init(&rl->mu, NULL);
    rl->rate = rate;
    rl->burst = burst > 0 ? burst : 1;
    rl->tokens = initial < rl->burst ? initial : rl->burst;
    rl->last_us = deadline_now_us();
}

void ratelimit_destroy(ratelimit *rl)
{
    pthread_mutex_destroy(&rl->mu);
}

/* Under rl->mu: credit what accrued since the last call. */
static void refill(ratelimit *rl, int64_t now)
{
    rl->tokens += (double)(now - rl->last_us) / 1e6 * rl->rate;
    if (rl->tokens > rl->burst)
        rl->tokens = rl->burst;
    rl->last_us = now;
}

int64_t ratelimit_take(ratelimit *rl, double n)
{
    pthread_mutex_lock(&rl->mu);
    if (rl->rate <= 0) {
        pthread_mutex_unlock(&rl->mu);
        return 0;
    }
    refill(rl, deadline_now_us());
    rl->tokens -= n;
    int64_t wait = rl->tokens < 0 ? (int64_t)(-rl->tokens / rl->rate * 1e6) : 0;
    pthread_mutex_unlock(&rl->mu);
    return wait;
}

void ratelimit_acquire(ratelimit *rl, double n)
{
    int64_t us = ratelimit_take(rl, n);
    if (us <= 0)
        return;
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

void ratelimit_set_rate(ratelimit *rl, double rate, double burst)
{
    pthread_mutex_lock(&rl->mu);
    refill(rl, deadline_now_us());
    rl->rate = rate;
    rl->burst = burst > 0 ? burst : 1;
    if (rl->tokens > rl->burst)
        rl->tokens = rl->burst;
    pthread_mutex_unlock(&rl->mu);
}

double ratelimit_rate(ratelimit *rl)
{
    pthread_mutex_lock(&rl->mu);
    double r = rl->rate;
    pthread_mutex_unlock(&rl->mu);
    return r;
}
