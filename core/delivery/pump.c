/* The pump: one thread per dispatcher that beats in the owners' table
 * and brings rows of the delivery log back into memory when they are due
 * (deferred by quiet hours, or left by a dispatcher that is gone); a row
 * a dead process left in deliver() becomes uncertain here. */
#include "delivery/dispatch_int.h"

#include <stdlib.h>
#include <unistd.h>

#include "base/deadline.h"
#include "base/log.h"
#include "delivery/content.h"

#define PUMP_MS 250
/* An owner beats every second (dlog.h: dlog_heartbeat). */
#define HEARTBEAT_S 1

#define UNCERTAIN_REASON                                                                           \
    "baton stopped while the channel was delivering it: it may have gone out, so it is not "       \
    "sent again (resend_uncertain = false)"

void pump_heartbeat(dispatcher *d)
{
    dlog_heartbeat(d->log, d->channel, d->owner, (int64_t)getpid(), &d->orphans_ms);
}

typedef struct pump_acc {
    dispatcher *d;
    int64_t now;
    qmsg *got, **tailp, *unsure, **utailp;
    size_t n;
} pump_acc;

static void pump_row(void *ud, const dlog_due_row *r)
{
    pump_acc *a = ud;
    dispatcher *d = a->d;
    qmsg *q;
    if (r->sending && !d->resend_uncertain) {
        q = qmsg_pack(r->key, r->recipient, r->profile_id, 0, NULL, NULL, NULL);
        *a->utailp = q;
        a->utailp = &q->next;
    } else {
        size_t np = 0;
        char **names = NULL, **values = NULL;
        record *row = NULL;
        if (content_parse(r->content, &np, &names, &values, &row) != 0) {
            dlog_update(d->log, r->rowid, r->key, DISPATCH_FAILED, NULL,
                        "the message's content is missing from the delivery log", r->attempts, 0,
                        a->now, 0, 0);
            return;
        }
        q = qmsg_pack(r->key, r->recipient, r->profile_id, np, (const char *const *)names,
                      (const char *const *)values, row);
        for (size_t i = 0; i < np; i++) {
            free(names[i]);
            free(values[i]);
        }
        free(names);
        free(values);
        record_free(row);
        *a->tailp = q;
        a->tailp = &q->next;
        a->n++;
    }
    q->attempts = r->attempts;
    q->time = r->created_at;
    /* one never tried (deferred by quiet hours, left by a dead owner)
     * has its first attempt now: its retry_for starts here, not at its
     * acceptance hours ago */
    q->first = r->attempts ? r->created_at : a->now;
    q->rowid = r->rowid;
}

static size_t pump_once(dispatcher *d)
{
    pthread_mutex_lock(&d->mu);
    size_t room = d->cap > d->pending ? d->cap - d->pending : 0;
    int stop = d->stop || d->closing;
    d->pump_starved = !room; /* queue_room_freed wakes it */
    /* the rows it takes are the log's no more (owned) before they are
     * pending in memory: dispatch_flush waits through that */
    d->pumping = room && !stop;
    pthread_mutex_unlock(&d->mu);
    if (!room || stop)
        return 0;
    if (room > 1000)
        room = 1000;
    pump_acc a = {.d = d, .now = dispatch_now_s(d)};
    a.tailp = &a.got;
    a.utailp = &a.unsure;
    dlog_lock(d->log);
    dlog_due_rows(d->log, d->channel, a.now, room, pump_row, &a);
    for (qmsg *q = a.got; q; q = q->next)
        dlog_update(d->log, q->rowid, q->key, DISPATCH_QUEUED, NULL, NULL, q->attempts, 0, a.now, 0,
                    d->owner);
    for (qmsg *q = a.unsure; q; q = q->next)
        dlog_update(d->log, q->rowid, q->key, DISPATCH_UNCERTAIN, NULL, UNCERTAIN_REASON,
                    q->attempts, 0, a.now, 0, 0);
    dlog_unlock(d->log);
    while (a.unsure) {
        qmsg *q = a.unsure;
        a.unsure = q->next;
        log_msg(BATON_LOG_WARN, d->inst->who, "%s: %s", q->key, UNCERTAIN_REASON);
        dispatch_emit(d, q, DISPATCH_UNCERTAIN, NULL, UNCERTAIN_REASON, 0, 0, NULL, 0);
        pthread_mutex_lock(&d->mu);
        d->st.uncertain++;
        pthread_mutex_unlock(&d->mu);
        qmsg_free(q);
    }
    pthread_mutex_lock(&d->mu);
    while (a.got) {
        qmsg *q = a.got;
        a.got = a.got->next;
        queue_push(d, q);
        d->pending++;
    }
    d->pumping = 0;
    pthread_cond_broadcast(a.n ? &d->work : &d->idle);
    pthread_mutex_unlock(&d->mu);
    return a.n;
}

void *dispatch_pump(void *arg)
{
    dispatcher *d = arg;
    pthread_setname_np(pthread_self(), "baton-pump"); /* top -H, perf */
    int64_t beat = 0;
    pthread_mutex_lock(&d->mu);
    while (!d->stop) {
        pthread_mutex_unlock(&d->mu);
        if (deadline_now_ms() - beat >= HEARTBEAT_S * 1000) {
            dlog_lock(d->log);
            pump_heartbeat(d);
            dlog_unlock(d->log);
            beat = deadline_now_ms();
        }
        size_t n = pump_once(d);
        pthread_mutex_lock(&d->mu);
        if (n)
            continue; /* more may be due */
        struct timespec ts;
        deadline_in(&ts, PUMP_MS);
        pthread_cond_timedwait(&d->pump_cv, &d->mu, &ts);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}
