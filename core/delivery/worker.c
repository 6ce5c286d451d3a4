/* The delivery workers: `connections` threads, each with its own
 * worker_open() connection, taking batches from the queue, marking them in
 * flight, calling deliver() and recording what it answered. */
#include "delivery/dispatch_int.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/deadline.h"
#include "base/log.h"
#include "base/mem.h"

/* Under the log's lock, before a commit: the batch goes in flight (its
 * attempts counted). "queued" must be durable before a message can go out
 * (otherwise a crash right after delivery forgets the row, and the caller
 * — a journey resuming its pending sends — hands the key again), and so
 * must "in flight": what a crash leaves in flight is never sent twice.
 * Returns the in-flight record (0: none, or the rows were marked one by
 * one). */
static int64_t mark_locked(dispatcher *d, qmsg **batch, size_t n)
{
    int64_t *ids = xcalloc(n, sizeof *ids);
    size_t nids = 0;
    for (size_t i = 0; i < n; i++) {
        batch[i]->attempts++;
        if (!(batch[i]->flags & DISPATCH_F_PROOF) && batch[i]->rowid > 0)
            ids[nids++] = batch[i]->rowid;
    }
    int64_t flight = nids ? dlog_inflight_begin(d->log, d->owner, ids, nids) : 0;
    for (size_t i = 0; i < n; i++)
        if (!(batch[i]->flags & DISPATCH_F_PROOF) && !flight)
            dlog_mark_sending(d->log, batch[i]->rowid, batch[i]->key, batch[i]->attempts);
    free(ids);
    return flight;
}

/* A batch in deliver(): what deliver_wire and deliver_done (baton.h 1.4)
 * find from a message they are handed. The messages are wmsg, their
 * baton_message first, so a pointer deliver() got leads back here. */
typedef struct wbatch {
    dispatcher *d;
    qmsg **batch;
    size_t n;
    int64_t flight; /* its in-flight record (0: none) */
    baton_delivery *out;
    dispatch_status *fin;
    int64_t *due;
    pthread_mutex_t mu; /* wire, marked, done, on: a channel's threads report */
    int wire;           /* the record says "on the wire only" */
    unsigned char *marked, *done;
    /* a message's position in the in-flight record's rowids (-1: none),
     * and what the record says of each position: on the wire */
    ptrdiff_t *pos;
    unsigned char *on;
    size_t npos;
    struct wmsg *ws; /* the messages deliver() was handed */
    struct wbatch *next;
} wbatch;

typedef struct wmsg {
    baton_message bm; /* first: what deliver() sees */
    wbatch *b;
    size_t i;
} wmsg;

/* The batches in deliver() now, every dispatcher's: a message is found
 * by its address among them, so a pointer no dispatcher handed out (a
 * plugin's own test, a copy) is ignored, never read through. */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static wbatch *live;

static wmsg *wmsg_of(const baton_message *m)
{
    wmsg *w = NULL;
    pthread_mutex_lock(&live_mu);
    for (wbatch *b = live; b && !w; b = b->next)
        if ((const void *)m >= (const void *)b->ws &&
            (const void *)m < (const void *)(b->ws + b->n))
            w = (wmsg *)m;
    pthread_mutex_unlock(&live_mu);
    return w && &w->bm == m ? w : NULL;
}

void dispatch_deliver_wire(const baton_message *const *msgs, size_t n)
{
    wbatch *b = NULL;
    for (size_t k = 0; k < n && !b; k++)
        b = wmsg_of(msgs[k]) ? wmsg_of(msgs[k])->b : NULL;
    if (!b)
        return;
    dispatcher *d = b->d;
    /* without a record the rows are marked one by one */
    int64_t *ids = b->flight ? NULL : xcalloc(n, sizeof *ids);
    size_t nids = 0;
    /* the record is written under the log's lock with what every call
     * so far marked: two threads of a channel never write it out of
     * order */
    dlog_lock(d->log);
    pthread_mutex_lock(&b->mu);
    int changed = 0;
    for (size_t k = 0; k < n; k++) {
        wmsg *w = wmsg_of(msgs[k]);
        if (!w || w->b != b || b->marked[w->i] || b->done[w->i])
            continue;
        b->marked[w->i] = 1;
        qmsg *q = b->batch[w->i];
        if (b->flight && b->pos[w->i] >= 0) {
            b->on[b->pos[w->i]] = 1;
            changed = 1;
        } else if (!b->flight && !(q->flags & DISPATCH_F_PROOF) && q->rowid > 0) {
            ids[nids++] = (int64_t)w->i;
        }
    }
    if (changed) {
        dlog_inflight_wire(d->log, b->flight, b->on, b->npos, !b->wire);
        b->wire = 1;
    }
    pthread_mutex_unlock(&b->mu);
    for (size_t k = 0; k < nids; k++) {
        qmsg *q = b->batch[ids[k]];
        dlog_mark_sending(d->log, q->rowid, q->key, q->attempts);
    }
    if (changed || nids)
        dlog_commit_locked(d->log); /* durable before the first byte goes */
    dlog_unlock(d->log);
    free(ids);
}

void dispatch_deliver_done(const baton_message *msg, const baton_delivery *out)
{
    wmsg *w = wmsg_of(msg);
    if (!w || !out)
        return;
    wbatch *b = w->b;
    dispatcher *d = b->d;
    size_t i = w->i;
    baton_delivery o = *out;
    dispatch_status fin;
    int64_t due;
    retry_classify(d, b->batch[i], &o, &fin, &due);
    pthread_mutex_lock(&b->mu);
    if (b->done[i]) {
        pthread_mutex_unlock(&b->mu);
        return;
    }
    b->done[i] = 1;
    b->out[i] = o;
    b->fin[i] = fin;
    b->due[i] = due;
    pthread_mutex_unlock(&b->mu);
    qmsg *m = b->batch[i];
    if (m->flags & DISPATCH_F_PROOF)
        return;
    int64_t now = dispatch_now_s(d);
    dlog_lock(d->log);
    dlog_update(d->log, m->rowid, m->key, fin, o.provider_id, o.reason, m->attempts, o.segments,
                now, fin == DISPATCH_RETRY ? now + (due + 999) / 1000 : 0, d->owner);
    /* a transient answer: the row is known not delivered, so no longer
     * on the wire for the record (in the same transaction) */
    pthread_mutex_lock(&b->mu);
    if (fin == DISPATCH_RETRY && b->flight && b->pos[i] >= 0 && b->on[b->pos[i]]) {
        b->on[b->pos[i]] = 0;
        dlog_inflight_wire(d->log, b->flight, b->on, b->npos, 0);
    }
    pthread_mutex_unlock(&b->mu);
    dlog_unlock(d->log); /* committed by the log's group commit */
}

/* Deliver a batch marked in flight and committed (flight: its record), and
 * commit its outcomes. When the next batch is ready by then (next: room
 * for max), it is taken and marked in flight in the same commit as these
 * outcomes — one commit per batch instead of two — and its size returned
 * (*next_flight its record); it must be run next. */
static size_t run_batch(dispatcher *d, void *conn, qmsg **batch, size_t n, int64_t flight,
                        qmsg **next, size_t max, int64_t *next_flight)
{
    wmsg *ws = xcalloc(n, sizeof *ws);
    const baton_message **ptrs = xcalloc(n, sizeof *ptrs);
    baton_delivery *out = xcalloc(n, sizeof *out);
    dispatch_status *fin = xcalloc(n, sizeof *fin);
    int64_t *due = xcalloc(n, sizeof *due);
    wbatch b = {.d = d,
                .batch = batch,
                .n = n,
                .flight = flight,
                .out = out,
                .fin = fin,
                .due = due,
                .marked = xcalloc(n, 1),
                .done = xcalloc(n, 1),
                .pos = xcalloc(n, sizeof *b.pos),
                .on = xcalloc(n, 1)};
    pthread_mutex_init(&b.mu, NULL);
    b.ws = ws;
    for (size_t i = 0; i < n; i++) /* the order mark_locked listed them in */
        b.pos[i] =
            !(batch[i]->flags & DISPATCH_F_PROOF) && batch[i]->rowid > 0 ? (ptrdiff_t)b.npos++ : -1;
    for (size_t i = 0; i < n; i++) {
        qmsg_fill(batch[i], &ws[i].bm);
        ws[i].b = &b;
        ws[i].i = i;
        ptrs[i] = &ws[i].bm;
        out[i].status = BATON_RETRY;
        snprintf(out[i].reason, sizeof out[i].reason, "the channel gave no answer");
    }
    pthread_mutex_lock(&live_mu);
    b.next = live;
    live = &b;
    pthread_mutex_unlock(&live_mu);
    int64_t t0 = deadline_now_us();
    d->ops->deliver(d->inst->state, conn, ptrs, n, out);
    histo_observe_us(&d->latency, deadline_now_us() - t0);
    pthread_mutex_lock(&live_mu);
    for (wbatch **pb = &live; *pb; pb = &(*pb)->next)
        if (*pb == &b) {
            *pb = b.next;
            break;
        }
    pthread_mutex_unlock(&live_mu);

    int64_t now = dispatch_now_s(d), mnow = deadline_now_ms();
    size_t nretry = 0, logged = 0;
    pthread_mutex_lock(&b.mu); /* what the channel's threads reported is seen */
    for (size_t i = 0; i < n; i++) {
        if (b.done[i]) /* classified and recorded as it came */
            nretry += out[i].status == BATON_RETRY || out[i].status == BATON_UNCERTAIN;
        else
            nretry += (size_t)retry_classify(d, batch[i], &out[i], &fin[i], &due[i]);
        logged += !(batch[i]->flags & DISPATCH_F_PROOF) && !b.done[i];
    }
    pthread_mutex_unlock(&b.mu);
    /* the next batch, when it is ready now: not under a rate (its wait
     * comes before the mark) nor after a storm of failures (the pause) */
    size_t nn = 0;
    *next_flight = 0;
    if (d->rate <= 0 && !retry_storm(n, nretry)) {
        pthread_mutex_lock(&d->mu);
        int64_t mn = deadline_now_ms();
        queue_release_due(d, mn, 0);
        if (!d->stop && d->pause_until_ms <= mn && d->head && !queue_lingering(d, max, mn))
            nn = queue_take(d, next, max);
        pthread_mutex_unlock(&d->mu);
    }
    if (logged || nn || flight) {
        dlog_lock(d->log);
        for (size_t i = 0; i < n; i++) {
            qmsg *m = batch[i];
            if ((m->flags & DISPATCH_F_PROOF) || b.done[i])
                continue;
            dlog_update(d->log, m->rowid, m->key, fin[i], out[i].provider_id, out[i].reason,
                        m->attempts, out[i].segments, now,
                        fin[i] == DISPATCH_RETRY ? now + (due[i] + 999) / 1000 : 0, d->owner);
        }
        if (flight)
            dlog_inflight_end(d->log, flight, b.wire);
        if (nn)
            *next_flight = mark_locked(d, next, nn);
        dlog_commit_locked(d->log); /* out of flight at once */
        dlog_unlock(d->log);
    }
    pthread_mutex_destroy(&b.mu);
    free(b.marked);
    free(b.done);
    free(b.pos);
    free(b.on);
    for (size_t i = 0; i < n; i++) {
        if (fin[i] == DISPATCH_UNCERTAIN) /* as the pump says of a crash's */
            log_msg(BATON_LOG_WARN, d->inst->who, "%s: uncertain, not sent again: %s",
                    batch[i]->key, out[i].reason);
        dispatch_emit(d, batch[i], fin[i], out[i].provider_id, out[i].reason, out[i].segments,
                      fin[i] == DISPATCH_RETRY ? now + (due[i] + 999) / 1000 : 0, NULL, 0);
    }
    retry_adapt(d, n, nretry);

    pthread_mutex_lock(&d->mu);
    d->st.attempts += n;
    int64_t sec = deadline_now_ms() / 1000;
    size_t slot = (size_t)sec % DISPATCH_RATE_SLOTS;
    if (d->sent_sec[slot] != sec) {
        d->sent_sec[slot] = sec;
        d->sent_in[slot] = 0;
    }
    for (size_t i = 0; i < n; i++) {
        qmsg *m = batch[i];
        switch (fin[i]) {
        case DISPATCH_SENT:
            d->st.sent++;
            d->sent_in[slot]++;
            break;
        case DISPATCH_FAILED: d->st.failed++; break;
        case DISPATCH_UNCERTAIN: d->st.uncertain++; break;
        default: break;
        }
        if (fin[i] == DISPATCH_RETRY || out[i].status == BATON_RETRY)
            d->st.retries++;
        if (fin[i] == DISPATCH_RETRY) {
            m->due_ms = mnow + due[i];
            queue_retry(d, m);
        } else {
            d->pending--;
            qmsg_free(m);
        }
    }
    queue_room_freed(d);
    if (d->nheap)
        pthread_cond_signal(&d->work); /* someone must watch the heap's clock */
    pthread_mutex_unlock(&d->mu);
    free(fin);
    free(due);
    free(ws);
    free(ptrs);
    free(out);
    return nn;
}

void *dispatch_worker(void *arg)
{
    dispatcher *d = arg;
    pthread_setname_np(pthread_self(), "baton-send"); /* top -H, perf */
    void *conn = d->ops->worker_open ? d->ops->worker_open(d->inst->state) : NULL;
    size_t max = d->max, n = 0; /* n: a batch carried, marked in flight */
    qmsg **batch = xcalloc(max, sizeof *batch), **next = xcalloc(max, sizeof *next);
    int64_t flight = 0;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        if (n) { /* taken and marked with the last outcomes: deliver it now */
            pthread_mutex_unlock(&d->mu);
            goto run;
        }
        if (d->stop)
            break;
        int64_t now = deadline_now_ms();
        queue_release_due(d, now, 0);
        int64_t wait = -1;
        if (d->pause_until_ms > now)
            wait = d->pause_until_ms - now;
        else if (!d->head && d->nheap)
            wait = d->heap[0]->due_ms - now;
        else if (queue_lingering(d, max, now))
            wait = d->head->enq_ms + LINGER_MS - now; /* more may come */
        if (wait > 0 && d->nheap && d->heap[0]->due_ms - now < wait)
            wait = d->heap[0]->due_ms - now; /* > 0: release_due took the due ones */
        if (wait >= 0 || !d->head) {
            struct timespec ts;
            deadline_in(&ts, wait >= 0 ? (wait ? wait : 1) : 1000);
            pthread_cond_timedwait(&d->work, &d->mu, &ts);
            continue;
        }
        n = queue_take(d, batch, max);
        pthread_mutex_unlock(&d->mu);
        if (d->rate > 0)
            ratelimit_acquire(&d->bucket, (double)n);
        dlog_lock(d->log);
        flight = mark_locked(d, batch, n);
        dlog_commit_locked(d->log);
        dlog_unlock(d->log);
    run:;
        int64_t next_flight = 0;
        size_t nn = run_batch(d, conn, batch, n, flight, next, max, &next_flight);
        qmsg **t = batch;
        batch = next;
        next = t;
        n = nn;
        flight = next_flight;
        pthread_mutex_lock(&d->mu);
    }
    pthread_mutex_unlock(&d->mu);
    if (d->ops->worker_close)
        d->ops->worker_close(d->inst->state, conn);
    free(batch);
    free(next);
    return NULL;
}
