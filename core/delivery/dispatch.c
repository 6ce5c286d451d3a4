/* The dispatcher's API (dispatch.h): open, submit, flush, close. Its
 * parts are listed in dispatch_int.h. */
#include "delivery/dispatch_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/deadline.h"
#include "base/log.h"
#include "base/mem.h"
#include "delivery/content.h"

int64_t dispatch_now_s(const dispatcher *d)
{
    if (d->o.clock)
        return d->o.clock(d->o.ud);
    return (int64_t)time(NULL);
}

void dispatch_sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

const char *dispatch_channel(const dispatcher *d)
{
    return d->channel;
}

store *dispatch_store(const dispatcher *d)
{
    return d->s;
}

const conf *dispatch_conf(const dispatcher *d)
{
    return d->o.caps;
}

void dispatch_emit(dispatcher *d, const qmsg *m, dispatch_status st, const char *pid,
                   const char *reason, unsigned segments, int64_t next_at, const char *fmt,
                   size_t fmtlen)
{
    if (!d->o.on_outcome)
        return;
    dispatch_outcome o = {.channel = d->channel,
                          .key = m->key,
                          .recipient = m->recipient,
                          .profile_id = m->profile_id,
                          .status = st,
                          .provider_id = pid ? pid : "",
                          .reason = reason ? reason : "",
                          .attempts = m->attempts,
                          .segments = segments,
                          .next_at = next_at,
                          .formatted = fmt,
                          .formatted_len = fmtlen};
    d->o.on_outcome(d->o.ud, &o);
}

/* ------------------------------------------------------------------ */
/* Open, submit, flush, close                                          */
/* ------------------------------------------------------------------ */

dispatcher *dispatch_open(instance *inst, store *s, const dispatch_opts *opts, char *err,
                          size_t errlen)
{
    const baton_channel_ops *ops = instance_channel(inst);
    if (!ops) {
        snprintf(err, errlen, "%s: not a channel", inst->where);
        return NULL;
    }
    if (!opts || !opts->dry_run) {
        if (inst->phase != INSTANCE_RUNNING) {
            snprintf(err, errlen, "%s: the channel is not started", inst->where);
            return NULL;
        }
    }
    dispatcher *d = xcalloc(1, sizeof *d);
    d->inst = inst;
    d->ops = ops;
    d->channel = xstrdup(inst->name);
    d->s = s;
    if (opts)
        d->o = *opts;
    const channel_settings *cs = &inst->host.channel;
    d->rate = cs->rate;
    d->nworkers = cs->connections;
    d->batch = cs->batch > 0 ? (size_t)cs->batch : 1;
    d->retries = (unsigned)cs->retries;
    d->backoff_ms = cs->retry_backoff_ms;
    d->retry_for_ms = cs->retry_for_ms;
    d->max_backoff_ms = cs->max_backoff_ms > 0 ? cs->max_backoff_ms : 15 * 60 * 1000LL;
    d->cap = cs->queue > 0 ? (size_t)cs->queue : 1;
    /* a channel that drops repeats itself (directmail's journal) is safe
     * to resend */
    d->resend_uncertain =
        cs->resend_uncertain != 0 ||
        (ops->size > offsetof(baton_channel_ops, flags) && (ops->flags & BATON_CHANNEL_IDEMPOTENT));
    if (d->nworkers < 1)
        d->nworkers = 1;
    if (d->batch < 1)
        d->batch = 1;
    if (d->cap < d->batch)
        d->cap = d->batch;
    d->max = d->batch;
    if (d->rate > 0 && d->max > (size_t)ceil(d->rate))
        d->max = (size_t)ceil(d->rate); /* at most a second's worth at once */
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, 0) != sizeof r)
        r = (uint64_t)deadline_now_us() ^ ((uint64_t)getpid() << 32);
    d->owner = (int64_t)(r & 0x7fffffffffffffffULL) | 1;
    d->seed = (unsigned)r;
    pthread_mutex_init(&d->mu, NULL);
    retry_init(d);
    deadline_cond_init(&d->work);
    deadline_cond_init(&d->room);
    deadline_cond_init(&d->idle);
    deadline_cond_init(&d->pump_cv);
    if (d->o.dry_run) { /* no threads, no writes: submit formats inline */
        if (s && dispatch_log_init(s, err, errlen) != 0)
            goto fail; /* caps read the log */
        return d;
    }
    if (!(d->log = dlog_attach(s, err, errlen)))
        goto fail;
    /* Rows held by a dispatcher that is gone (a restart, a reload, a
     * crash) are this channel's to finish: the first beat hands them to
     * the pump. One still beating (another process) keeps its own. */
    dlog_lock(d->log);
    pump_heartbeat(d);
    dlog_unlock(d->log);
    d->workers = xcalloc((size_t)d->nworkers, sizeof *d->workers);
    for (int i = 0; i < d->nworkers; i++) {
        if (pthread_create(&d->workers[i], NULL, dispatch_worker, d) != 0) {
            snprintf(err, errlen, "%s: cannot start a delivery worker: %s", inst->where,
                     strerror(errno));
            goto fail;
        }
        d->nstarted++;
    }
    if (pthread_create(&d->pump, NULL, dispatch_pump, d) != 0) {
        snprintf(err, errlen, "%s: cannot start the delivery pump: %s", inst->where,
                 strerror(errno));
        goto fail;
    }
    d->pump_started = 1;
    return d;
fail:
    dispatch_close(d, 0, 0);
    return NULL;
}

static dispatch_submit_rc submit_dry(dispatcher *d, const dispatch_msg *m, char *err, size_t errlen)
{
    qmsg *q = qmsg_from(m, dispatch_now_s(d));
    dispatch_submit_rc rc = DISPATCH_ACCEPTED;
    char reason[256] = "";
    int64_t until = 0;
    dispatch_cap cap = DISPATCH_CAP_OK;
    if (!(m->flags & (DISPATCH_F_NOCAPS | DISPATCH_F_PROOF)))
        cap = dispatch_caps_check(d->s, d->o.caps, d->channel, m->profile_id, m->tz, q->time,
                                  &until, reason, sizeof reason);
    baton_message bm;
    qmsg_fill(q, &bm);
    buf out;
    buf_init(&out);
    char ferr[256] = "";
    if (d->ops->format(d->inst->state, &bm, &out, ferr, sizeof ferr) != 0) {
        if (err)
            snprintf(err, errlen, "%s: %s: format: %s", d->channel, m->key,
                     ferr[0] ? ferr : "failed");
        rc = DISPATCH_INVALID;
    } else {
        dispatch_status st = cap == DISPATCH_CAP_CAPPED  ? DISPATCH_CAPPED
                             : cap == DISPATCH_CAP_QUIET ? DISPATCH_DEFERRED
                                                         : DISPATCH_DRY_RUN;
        rc = cap == DISPATCH_CAP_CAPPED  ? DISPATCH_REFUSED_CAPPED
             : cap == DISPATCH_CAP_QUIET ? DISPATCH_ACCEPTED_DEFERRED
                                         : DISPATCH_ACCEPTED;
        dispatch_emit(d, q, st, NULL, reason, 0, until, out.data ? out.data : "", out.len);
        pthread_mutex_lock(&d->mu);
        d->st.submitted += rc != DISPATCH_REFUSED_CAPPED;
        d->st.dry_run += st == DISPATCH_DRY_RUN;
        d->st.capped += st == DISPATCH_CAPPED;
        d->st.deferred += st == DISPATCH_DEFERRED;
        pthread_mutex_unlock(&d->mu);
    }
    buf_free(&out);
    qmsg_free(q);
    return rc;
}

dispatch_submit_rc dispatch_submit(dispatcher *d, const dispatch_msg *m, int64_t timeout_ms,
                                   char *err, size_t errlen)
{
    if (!m->key || !*m->key) {
        if (err)
            snprintf(err, errlen, "%s: a message without an idempotency key", d->channel);
        return DISPATCH_INVALID;
    }
    if (d->closing)
        return DISPATCH_CLOSED;
    if (d->o.dry_run)
        return submit_dry(d, m, err, errlen);
    int proof = (m->flags & DISPATCH_F_PROOF) != 0;
    int64_t now = dispatch_now_s(d);
    char reason[256] = "";
    int64_t until = 0;
    dispatch_cap cap = DISPATCH_CAP_OK;
    if (!(m->flags & DISPATCH_F_NOCAPS) && !proof)
        cap = dispatch_caps_check(d->s, d->o.caps, d->channel, m->profile_id, m->tz, now, &until,
                                  reason, sizeof reason);
    qmsg *q = qmsg_from(m, now);
    if (cap != DISPATCH_CAP_OK) {
        char *content =
            cap == DISPATCH_CAP_QUIET ? content_json(q->nparts, q->names, q->values, q->row) : NULL;
        dlog_lock(d->log);
        int ins = dlog_insert(d->log, q->key, d->channel, q->recipient, q->profile_id,
                              cap == DISPATCH_CAP_QUIET ? DISPATCH_DEFERRED : DISPATCH_CAPPED, now,
                              until, 0, content, &q->rowid);
        if (ins == 1)
            dlog_update(d->log, q->rowid, q->key,
                        cap == DISPATCH_CAP_QUIET ? DISPATCH_DEFERRED : DISPATCH_CAPPED, NULL,
                        reason, 0, 0, now, until, 0);
        dlog_unlock(d->log);
        free(content);
        dispatch_submit_rc rc;
        pthread_mutex_lock(&d->mu);
        if (ins != 1) {
            d->st.duplicates++;
            rc = DISPATCH_REFUSED_DUPLICATE;
        } else if (cap == DISPATCH_CAP_QUIET) {
            d->st.submitted++;
            d->st.deferred++;
            rc = DISPATCH_ACCEPTED_DEFERRED;
        } else {
            d->st.capped++;
            rc = DISPATCH_REFUSED_CAPPED;
        }
        pthread_mutex_unlock(&d->mu);
        if (ins == 1)
            dispatch_emit(d, q, cap == DISPATCH_CAP_QUIET ? DISPATCH_DEFERRED : DISPATCH_CAPPED,
                          NULL, reason, 0, until, NULL, 0);
        qmsg_free(q);
        return rc;
    }

    /* room first, so that a full queue leaves nothing recorded */
    pthread_mutex_lock(&d->mu);
    if (d->pending >= d->cap && timeout_ms != 0) {
        struct timespec ts;
        if (timeout_ms > 0)
            deadline_in(&ts, timeout_ms);
        while (d->pending >= d->cap && !d->closing) {
            if (timeout_ms > 0) {
                if (pthread_cond_timedwait(&d->room, &d->mu, &ts) == ETIMEDOUT)
                    break;
            } else {
                pthread_cond_wait(&d->room, &d->mu);
            }
        }
    }
    if (d->closing || d->pending >= d->cap) {
        dispatch_submit_rc rc = d->closing ? DISPATCH_CLOSED : DISPATCH_FULL;
        pthread_mutex_unlock(&d->mu);
        qmsg_free(q);
        return rc;
    }
    d->pending++;
    pthread_mutex_unlock(&d->mu);

    int ins = 1;
    if (!proof) {
        char *content = content_json(q->nparts, q->names, q->values, q->row);
        dlog_lock(d->log);
        ins = dlog_insert(d->log, q->key, d->channel, q->recipient, q->profile_id, DISPATCH_QUEUED,
                          now, 0, d->owner, content, &q->rowid);
        dlog_unlock(d->log);
        free(content);
    }
    pthread_mutex_lock(&d->mu);
    if (ins != 1) {
        d->pending--;
        d->st.duplicates += ins == 0;
        queue_room_freed(d);
        pthread_mutex_unlock(&d->mu);
        qmsg_free(q);
        if (ins < 0 && err)
            snprintf(err, errlen, "%s: %s: the delivery log refused the message", d->channel,
                     m->key);
        return ins == 0 ? DISPATCH_REFUSED_DUPLICATE : DISPATCH_INVALID;
    }
    d->st.submitted++;
    q->enq_ms = deadline_now_ms();
    queue_push(d, q);
    /* a worker lingers on a short queue by itself: wake one only when the
     * queue starts (it starts the clock) or holds a batch */
    if (d->nqueued == 1 || d->nqueued == d->max)
        pthread_cond_signal(&d->work);
    pthread_mutex_unlock(&d->mu);
    return DISPATCH_ACCEPTED;
}

void dispatch_kick(dispatcher *d)
{
    pthread_mutex_lock(&d->mu);
    if (d->head && !d->kicked) {
        d->kicked = 1;
        pthread_cond_signal(&d->work);
    }
    pthread_mutex_unlock(&d->mu);
}

int dispatch_flush(dispatcher *d, int64_t timeout_ms)
{
    int64_t end = timeout_ms >= 0 ? deadline_now_ms() + timeout_ms : -1;
    int rc = 0;
    pthread_mutex_lock(&d->mu);
    d->flushing++; /* workers stop lingering */
    pthread_cond_broadcast(&d->work);
    pthread_mutex_unlock(&d->mu);
    for (;;) {
        pthread_mutex_lock(&d->mu);
        while (d->pending > 0 || d->pumping) {
            if (end >= 0) {
                struct timespec ts;
                int64_t left = end - deadline_now_ms();
                deadline_in(&ts, left > 0 ? left : 0);
                if (left <= 0 || pthread_cond_timedwait(&d->idle, &d->mu, &ts) == ETIMEDOUT) {
                    rc = d->pending || d->pumping ? -1 : 0;
                    break;
                }
            } else {
                pthread_cond_wait(&d->idle, &d->mu);
            }
        }
        pthread_mutex_unlock(&d->mu);
        if (rc || !d->log || d->stop)
            break;
        if (dlog_due_count(d->log, d->channel, dispatch_now_s(d)) == 0) {
            /* none due: unless the pump took them between our look above
             * and the count (it says it pumps before it takes, under the
             * log's lock, and they are pending once it is done) */
            pthread_mutex_lock(&d->mu);
            int busy = d->pending > 0 || d->pumping;
            pthread_mutex_unlock(&d->mu);
            if (!busy)
                break;
            continue;
        }
        /* due rows the pump has not taken yet: wake it, wait for them */
        pthread_mutex_lock(&d->mu);
        pthread_cond_signal(&d->pump_cv);
        pthread_mutex_unlock(&d->mu);
        if (end >= 0 && deadline_now_ms() >= end) {
            rc = -1;
            break;
        }
        dispatch_sleep_ms(10);
    }
    pthread_mutex_lock(&d->mu);
    d->flushing--;
    pthread_mutex_unlock(&d->mu);
    if (d->log)
        dlog_commit(d->log);
    return rc;
}

const histo *dispatch_latency(const dispatcher *d)
{
    return &d->latency;
}

void dispatch_get_stats(dispatcher *d, dispatch_stats *st)
{
    int64_t sec = deadline_now_ms() / 1000;
    pthread_mutex_lock(&d->mu);
    *st = d->st;
    st->pending = d->pending;
    /* this second and the 59 before it */
    st->sent_last_minute = 0;
    for (size_t i = 0; i < DISPATCH_RATE_SLOTS; i++)
        if (d->sent_sec[i] > sec - 60 && d->sent_sec[i] <= sec)
            st->sent_last_minute += d->sent_in[i];
    pthread_mutex_unlock(&d->mu);
}

void dispatch_close(dispatcher *d, int drain, int64_t drain_ms)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->mu);
    d->closing = 1;
    pthread_cond_broadcast(&d->room);
    if (drain && d->nstarted) {
        /* retries go now rather than wait out their backoff */
        queue_release_due(d, 0, 1);
        d->pause_until_ms = 0;
        pthread_cond_broadcast(&d->work);
    }
    pthread_mutex_unlock(&d->mu);
    if (drain && d->nstarted)
        dispatch_flush(d, drain_ms);
    pthread_mutex_lock(&d->mu);
    d->stop = 1;
    pthread_cond_broadcast(&d->work);
    pthread_cond_broadcast(&d->room);
    pthread_cond_signal(&d->pump_cv);
    pthread_mutex_unlock(&d->mu);
    for (int i = 0; i < d->nstarted; i++)
        pthread_join(d->workers[i], NULL);
    if (d->pump_started)
        pthread_join(d->pump, NULL);
    if (d->log) {
        /* what is left in memory stays in the log for the next dispatcher */
        dlog_lock(d->log);
        dlog_release(d->log, d->owner);
        dlog_unlock(d->log);
        dlog_commit(d->log);
        dlog_detach(d->log);
    }
    while (d->head) {
        qmsg *m = d->head;
        d->head = m->next;
        qmsg_free(m);
    }
    for (size_t i = 0; i < d->nheap; i++)
        qmsg_free(d->heap[i]);
    free(d->heap);
    free(d->workers);
    pthread_mutex_destroy(&d->mu);
    ratelimit_destroy(&d->bucket);
    pthread_cond_destroy(&d->work);
    pthread_cond_destroy(&d->room);
    pthread_cond_destroy(&d->idle);
    pthread_cond_destroy(&d->pump_cv);
    free(d->channel);
    free(d);
}
