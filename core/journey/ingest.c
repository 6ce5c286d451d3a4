/* journey/ingest — the first stage: events from the sources' threads
 * (jrunner_submit) wait in the ingest queue for the ingest thread, which
 * commits what arrived together to the inbox (dedup by id, dead letters)
 * in one transaction, acknowledges each event after that commit, and
 * queues the new ones for the engine thread. A source that hands in a
 * whole group at once (the HTTP face) commits it on its own thread when
 * the ingest thread is idle: one writer at a time all the same (ibusy). */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/deadline.h"
#include "base/log.h"
#include "base/mem.h"
#include "journey/runner_impl.h"

/* Wait on cv (deadline_cond_init) for up to us microseconds. */
static void cond_wait_us(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t us)
{
    struct timespec ts;
    deadline_in_us(&ts, us);
    pthread_cond_timedwait(cv, mu, &ts);
}

/* Append a chain of n items for the engine thread: one lock, one wakeup. */
static void enqueue_chain(jrunner *r, qitem *head, qitem *tail, size_t n)
{
    if (!head)
        return;
    pthread_mutex_lock(&r->mu);
    if (!r->qhead)
        r->qsince = deadline_now_ms();
    if (r->qtail)
        r->qtail->next = head;
    else
        r->qhead = head;
    r->qtail = tail;
    r->qlen += n;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->mu);
}

static qitem *qitem_new(int64_t seq, jevent *ev)
{
    qitem *it = xcalloc(1, sizeof *it);
    it->seq = seq;
    it->ev = *ev;
    return it;
}

void jr_enqueue(jrunner *r, int64_t seq, jevent *ev)
{
    qitem *it = qitem_new(seq, ev);
    enqueue_chain(r, it, it, 1);
}

/* On the source's thread: parse and queue for the ingest thread, which
 * commits what arrived together in one transaction and then acknowledges
 * each event (ack may thus run on another thread, after we return). */
static int submit(jrunner *r, const char *source, const char *json, size_t len, void (*ack)(void *),
                  jrunner_outcome_fn outcome, void *ack_ctx)
{
    pthread_mutex_lock(&r->mu);
    int stopping = r->stopping, full = r->qlen >= r->o.queue;
    if (full)
        r->stats.full++;
    pthread_mutex_unlock(&r->mu);
    if (stopping)
        return -1;
    pthread_mutex_lock(&r->imu);
    full = full || r->ilen >= r->o.queue;
    pthread_mutex_unlock(&r->imu);
    if (full)
        return 1;
    initem *it = xcalloc(1, sizeof *it);
    char reason[256];
    it->now = jr_real_ms();
    if (jevent_parse(json, len, it->now, &it->ev, reason, sizeof reason))
        it->reason = xstrdup(reason);
    it->source = source;
    it->ack = ack;
    it->outcome = outcome;
    it->ack_ctx = ack_ctx;
    pthread_mutex_lock(&r->imu);
    if (r->istop) {
        /* a stop began after the look at stopping: the ingest thread may
         * have found its queue empty and exited, and nobody would commit
         * or acknowledge what is queued now. Refused, under imu, where
         * the ingest thread decides to exit. */
        pthread_mutex_unlock(&r->imu);
        jevent_free(&it->ev);
        free(it->reason);
        free(it);
        return -1;
    }
    if (r->itail)
        r->itail->next = it;
    else
        r->ihead = it;
    r->itail = it;
    if (!r->ilen++)
        r->isince_us = deadline_now_us();
    if (r->iwaiting) /* the rest of a burst is picked up by the ingest thread's gather */
        pthread_cond_signal(&r->icv);
    pthread_mutex_unlock(&r->imu);
    return 0;
}

/* On the source's thread: parse and queue for the ingest thread, which
 * commits what arrived together in one transaction and then acknowledges
 * each event (ack may thus run on another thread, after we return). */
int jrunner_submit(void *ud, instance *from, const char *json, size_t len, void (*ack)(void *),
                   void *ack_ctx)
{
    return submit(ud, from ? from->where : "events", json, len, ack, NULL, ack_ctx);
}

int jr_submit_from(jrunner *r, const char *source, const char *json, size_t len,
                   void (*ack)(void *), void *ack_ctx)
{
    return submit(r, source, json, len, ack, NULL, ack_ctx);
}

int jrunner_submit_outcome(jrunner *r, const char *source, const char *json, size_t len,
                           jrunner_outcome_fn outcome, void *ctx)
{
    return submit(r, source, json, len, NULL, outcome, ctx);
}

static void commit_group(jrunner *r, initem *items);

/* Commits everything queued, as one group, on the calling thread: called
 * and returns with imu held; ibusy keeps the inbox to one writer. */
static void commit_queued(jrunner *r)
{
    initem *items = r->ihead;
    r->ihead = r->itail = NULL;
    r->ilen = 0;
    r->ibusy = 1;
    pthread_mutex_unlock(&r->imu);
    commit_group(r, items);
    pthread_mutex_lock(&r->imu);
    r->ibusy = 0;
}

int jrunner_submit_events(jrunner *r, const char *source, jevent *evs, char **reasons, size_t n,
                          jrunner_outcome_fn outcome, void *const *ctx, size_t *taken)
{
    *taken = 0;
    pthread_mutex_lock(&r->mu);
    int stopping = r->stopping, full = r->qlen >= r->o.queue;
    if (full)
        r->stats.full++;
    pthread_mutex_unlock(&r->mu);
    if (stopping)
        return -1;
    if (full || !n)
        return full;
    /* built before the lock, queued under one */
    pthread_mutex_lock(&r->imu);
    size_t room = r->ilen < r->o.queue ? r->o.queue - r->ilen : 0;
    pthread_mutex_unlock(&r->imu);
    size_t k = n < room ? n : room;
    if (!k)
        return 1;
    int64_t now = jr_real_ms();
    initem *head = NULL, **tail = &head, *last = NULL;
    for (size_t i = 0; i < k; i++) {
        initem *it = xcalloc(1, sizeof *it);
        it->ev = evs[i];
        it->reason = reasons ? reasons[i] : NULL;
        it->now = now;
        it->source = source;
        it->outcome = outcome;
        it->ack_ctx = ctx[i];
        *tail = last = it;
        tail = &it->next;
    }
    pthread_mutex_lock(&r->imu);
    if (r->istop) { /* as in submit; the events stay the caller's */
        pthread_mutex_unlock(&r->imu);
        while (head) {
            initem *it = head;
            head = it->next;
            free(it);
        }
        return -1;
    }
    if (r->itail)
        r->itail->next = head;
    else
        r->ihead = head;
    r->itail = last;
    if (!r->ilen)
        r->isince_us = deadline_now_us();
    r->ilen += k;
    *taken = k;
    if (r->iwaiting && !r->ibusy) {
        /* the ingest thread sleeps: this thread commits the group itself
         * (everything queued, in order), so the outcomes come without two
         * wakeups (the ingest thread's, then the source's), each a wait
         * for a CPU on a busy machine */
        commit_queued(r);
        /* what came meanwhile, and a stop, are the ingest thread's */
        pthread_cond_signal(&r->icv);
    } else if (r->iwaiting) {
        pthread_cond_signal(&r->icv);
    }
    pthread_mutex_unlock(&r->imu);
    return k < n;
}

static void count_source(jrunner *r, const char *src, uint64_t acc, uint64_t dup, uint64_t dead)
{
    pthread_mutex_lock(&r->mu);
    size_t i = 0;
    while (i < r->nsrcs && strcmp(r->srcs[i].source, src))
        i++;
    if (i == r->nsrcs && i < sizeof r->srcs / sizeof r->srcs[0]) {
        snprintf(r->srcs[i].source, sizeof r->srcs[i].source, "%s", src);
        r->nsrcs++;
    }
    if (i < r->nsrcs) {
        r->srcs[i].accepted += acc;
        r->srcs[i].duplicates += dup;
        r->srcs[i].dead_letters += dead;
    }
    pthread_mutex_unlock(&r->mu);
}

/* One group: every event in one inbox transaction; acknowledged after the
 * commit, then queued for the engine. -1: nothing of it is stored. */
static int ingest_group(jrunner *r, initem *items)
{
    char err[512];
    if (jinbox_begin(&r->inbox, err, sizeof err))
        goto fail;
    for (initem *it = items; it; it = it->next) {
        int64_t seq;
        int outcome;
        if (jinbox_put(&r->inbox, &it->ev, it->reason, it->source, it->now, &seq, &outcome, err,
                       sizeof err)) {
            jinbox_rollback(&r->inbox);
            goto fail;
        }
        if (outcome == JINBOX_DEAD && !it->reason)
            it->reason = xstrdup(JINBOX_REUSED_REASON);
        it->now = outcome == JINBOX_STORED ? seq : -1; /* reused: the sequence number, or -1 */
    }
    if (jinbox_commit(&r->inbox, err, sizeof err))
        goto fail;
    uint64_t acc = 0, dup = 0, dead = 0;
    qitem *qhead = NULL, *qtail = NULL;
    /* counts by source: a group mostly comes from one */
    const char *src = NULL;
    uint64_t sacc = 0, sdup = 0, sdead = 0;
    while (items) {
        initem *it = items;
        items = it->next;
        if (src && strcmp(src, it->source)) {
            count_source(r, src, sacc, sdup, sdead);
            sacc = sdup = sdead = 0;
        }
        src = it->source;
        sacc += !it->reason && it->now >= 0;
        sdup += !it->reason && it->now < 0;
        sdead += it->reason != NULL;
        if (it->ack)
            it->ack(it->ack_ctx);
        if (it->outcome)
            it->outcome(it->ack_ctx,
                        it->reason    ? JRUNNER_DEAD_LETTERED
                        : it->now < 0 ? JRUNNER_DUPLICATE
                                      : JRUNNER_ACCEPTED,
                        it->ev.id, it->reason);
        if (it->reason) {
            dead++;
            jevent_free(&it->ev);
        } else if (it->now < 0) {
            dup++;
            jevent_free(&it->ev);
        } else {
            acc++;
            qitem *q = qitem_new(it->now, &it->ev);
            if (qtail)
                qtail->next = q;
            else
                qhead = q;
            qtail = q;
        }
        free(it->reason);
        free(it);
    }
    enqueue_chain(r, qhead, qtail, acc);
    if (src)
        count_source(r, src, sacc, sdup, sdead);
    pthread_mutex_lock(&r->mu);
    r->stats.accepted += acc;
    r->stats.duplicates += dup;
    r->stats.dead_letters += dead;
    r->stats.ingest_groups++;
    pthread_mutex_unlock(&r->mu);
    return 0;
fail:
    log_msg(BATON_LOG_ERROR, "journey", "%s; not acknowledged, retrying", err);
    return -1;
}

void jrunner_flush(void *ud)
{
    jrunner *r = ud;
    pthread_mutex_lock(&r->imu);
    if (r->ihead) { /* else its group was taken already: not the next one's end */
        r->iflush = 1;
        pthread_cond_signal(&r->icv);
    }
    pthread_mutex_unlock(&r->imu);
}

/* Under imu, with events queued. A source hands a burst over one event
 * at a time (the MQTT source: all that one read brought, then it waits
 * for their acknowledgements); committing at the first event would cut
 * the burst into many small groups, each a commit and a wakeup of the
 * source. So wait until the source says the group is complete
 * (event_flush), or else while the queue still grows, 100 us at a time,
 * for 2 ms at most.
 * Then a small group waits until GROUP_WAIT_US after its first event:
 * its source, waiting for the acknowledgements, finds that much more on
 * its next read. Fewer, larger groups (each a commit, and a round trip
 * for the source) for at most a millisecond more latency. */
#define GROUP_SMALL 64
#define GROUP_WAIT_US 1000

static void gather(jrunner *r)
{
    size_t seen = r->ilen;
    for (int i = 0; i < 20 && !r->iflush && !r->istop && r->ilen < r->o.queue; i++) {
        cond_wait_us(&r->icv, &r->imu, 100);
        if (r->iflush || r->ilen == seen)
            break;
        seen = r->ilen;
    }
    int64_t left;
    while (r->ilen < GROUP_SMALL && !r->istop &&
           (left = r->isince_us + GROUP_WAIT_US - deadline_now_us()) > 0)
        cond_wait_us(&r->icv, &r->imu, left);
    r->iflush = 0;
}

void *jr_ingest_main(void *arg)
{
    jrunner *r = arg;
    pthread_setname_np(pthread_self(), "baton-ingest"); /* top -H, perf */
    for (;;) {
        pthread_mutex_lock(&r->imu);
        r->iwaiting = 1;
        /* ibusy: a source's thread commits a group (jrunner_submit_events);
         * the next one waits for it, and so does a stop */
        while (r->ibusy || (!r->ihead && !r->istop))
            pthread_cond_wait(&r->icv, &r->imu);
        r->iwaiting = 0;
        if (!r->ihead && r->istop) {
            r->iexited = 1;
            pthread_mutex_unlock(&r->imu);
            break;
        }
        gather(r);
        commit_queued(r);
        pthread_mutex_unlock(&r->imu);
    }
    return NULL;
}

/* One writer of the inbox at a time: the caller set ibusy. */
static void commit_group(jrunner *r, initem *items)
{
    while (ingest_group(r, items) != 0) {
        struct timespec ts = {0, 200 * 1000000};
        nanosleep(&ts, NULL);
    }
}

void jr_dead_commit(jrunner *r)
{
    pdead *rev = NULL; /* oldest first */
    while (r->txn_dead) {
        pdead *d = r->txn_dead;
        r->txn_dead = d->next;
        d->next = rev;
        rev = d;
    }
    while (rev) {
        pdead *d = rev;
        rev = d->next;
        pthread_mutex_lock(&r->imu);
        if (!r->iexited) {
            /* the ingest thread's group commit writes it (one writer of
             * the inbox's transactions); not bounded by the queue's size:
             * what a committed transaction decided is not refused */
            initem *it = xcalloc(1, sizeof *it);
            it->ev = d->ev;
            it->reason = d->reason;
            it->source = d->source;
            it->now = jr_real_ms();
            if (r->itail)
                r->itail->next = it;
            else
                r->ihead = it;
            r->itail = it;
            if (!r->ilen++)
                r->isince_us = deadline_now_us();
            pthread_cond_signal(&r->icv);
            pthread_mutex_unlock(&r->imu);
        } else {
            pthread_mutex_unlock(&r->imu);
            char err[512];
            int64_t seq;
            int outcome;
            if (jinbox_put(&r->inbox, &d->ev, d->reason, d->source, jr_real_ms(), &seq, &outcome,
                           err, sizeof err))
                log_msg(BATON_LOG_ERROR, "journey", "%s: dead letter for %s not kept: %s",
                        d->source, d->ev.profile, err);
            jevent_free(&d->ev);
            free(d->reason);
        }
        free(d);
    }
}
