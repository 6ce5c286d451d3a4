/* What a channel's answer becomes, and how long a retry waits: backoff
 * with jitter per message, and for the channel as a whole a pause and a
 * lower rate after a batch that mostly failed transiently (a 429 storm, a
 * server gone). */
#include "delivery/dispatch_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/deadline.h"
#include "base/timefmt.h"

#define MAX_PAUSE_MS (30 * 1000LL)

/* The bucket of a rate r: a tenth of a second's worth, at least one. */
static double burst_of(double r)
{
    return r * 0.1 > 1 ? r * 0.1 : 1;
}

void retry_init(dispatcher *d)
{
    ratelimit_init(&d->bucket, d->rate, burst_of(d->rate), 1);
}

static int64_t retry_delay_ms(dispatcher *d, unsigned attempt)
{
    int64_t ms = d->backoff_ms > 0 ? d->backoff_ms : 1, cap = d->max_backoff_ms;
    for (unsigned i = 1; i < attempt && ms < cap; i++)
        ms *= 2;
    if (ms > cap)
        ms = cap;
    pthread_mutex_lock(&d->mu);
    unsigned r = (unsigned)rand_r(&d->seed);
    pthread_mutex_unlock(&d->mu);
    return ms / 2 + (int64_t)(r % (uint64_t)(ms / 2 + 1)); /* jitter: [ms/2, ms] */
}

int retry_classify(dispatcher *d, const qmsg *m, baton_delivery *out, dispatch_status *fin,
                   int64_t *delay_ms)
{
    out->provider_id[sizeof out->provider_id - 1] = '\0';
    out->reason[sizeof out->reason - 1] = '\0';
    *delay_ms = 0;
    if (out->status == BATON_OK) {
        *fin = DISPATCH_SENT;
        return 0;
    }
    if (out->status != BATON_RETRY && out->status != BATON_ERROR &&
        out->status != BATON_UNCERTAIN) {
        /* a value no SDK defines (baton.h: read as RETRY) */
        char r[sizeof out->reason];
        int k = snprintf(r, sizeof r, "the channel answered an unknown status %d%s",
                         (int)out->status, out->reason[0] ? ": " : "");
        size_t len = strlen(out->reason), room = sizeof r - 1 - (size_t)k;
        memcpy(r + k, out->reason, len < room ? len : room);
        r[k + (len < room ? len : room)] = '\0';
        memcpy(out->reason, r, sizeof r);
        out->status = BATON_RETRY;
    }
    /* a message that may have gone out (a timeout after SMTP's final dot)
     * is uncertain, as one a crash caught on the wire: not sent again
     * unless the channel may send it twice */
    int unsure = out->status == BATON_UNCERTAIN;
    if (unsure && !d->resend_uncertain) {
        *fin = DISPATCH_UNCERTAIN;
        return 1;
    }
    /* like an MTA: a transient failure is retried until retry_for has
     * passed since the message's first attempt (the last attempt at that
     * horizon), and at most `retries` times */
    int again = out->status == BATON_RETRY || unsure;
    int64_t age_ms = (dispatch_now_s(d) - (m->first ? m->first : m->time)) * 1000;
    int in_time = d->retry_for_ms <= 0 || age_ms < d->retry_for_ms;
    if (again && m->attempts <= d->retries && in_time) {
        *fin = DISPATCH_RETRY;
        *delay_ms = retry_delay_ms(d, m->attempts);
        if (d->retry_for_ms > 0 && age_ms + *delay_ms > d->retry_for_ms)
            *delay_ms = d->retry_for_ms - age_ms;
        return 1;
    }
    *fin = unsure ? DISPATCH_UNCERTAIN : DISPATCH_FAILED;
    if (!again)
        return 0;
    char r[sizeof out->reason + 64];
    int k;
    if (!in_time) {
        char span[32];
        duration_format(d->retry_for_ms / 1000, span, sizeof span);
        k = snprintf(r, sizeof r, "gave up after %u attempts over %s: ", m->attempts, span);
    } else
        k = snprintf(r, sizeof r, "gave up after %u attempts: ", m->attempts);
    snprintf(r + k, sizeof r - (size_t)k, "%s", out->reason);
    size_t len = strlen(r) < sizeof out->reason - 1 ? strlen(r) : sizeof out->reason - 1;
    memcpy(out->reason, r, len);
    out->reason[len] = '\0';
    return 1;
}

int retry_storm(size_t n, size_t nretry)
{
    return nretry > 0 && nretry * 2 >= n;
}

void retry_adapt(dispatcher *d, size_t n, size_t nretry)
{
    int storm = retry_storm(n, nretry);
    pthread_mutex_lock(&d->mu);
    if (storm) {
        d->pause_level = d->pause_level < 16 ? d->pause_level + 1 : 16;
        int64_t p = d->backoff_ms << (d->pause_level - 1);
        if (p > MAX_PAUSE_MS || p <= 0)
            p = MAX_PAUSE_MS;
        if (p > d->max_backoff_ms) /* no message waits longer than max_backoff */
            p = d->max_backoff_ms;
        p = p / 2 + (int64_t)(rand_r(&d->seed) % (unsigned)(p / 2 + 1));
        d->pause_until_ms = deadline_now_ms() + p;
        d->st.throttled++;
    } else if (nretry == 0) {
        d->pause_level = 0;
    }
    pthread_mutex_unlock(&d->mu);
    if (d->rate <= 0)
        return;
    double cur = ratelimit_rate(&d->bucket), next = cur;
    if (storm)
        next = fmax(d->rate / 64, cur / 2);
    else if (nretry == 0)
        next = fmin(d->rate, cur * 1.25 + 1);
    if (next != cur)
        ratelimit_set_rate(&d->bucket, next, burst_of(next));
}
