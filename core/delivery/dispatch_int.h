/* dispatch_int — the dispatcher's insides, shared by the files that make
 * it (internal to core/delivery):
 *   dispatch.c  open, submit, flush, close: the API of dispatch.h
 *   queue.c     messages (one allocation each), the bounded queue, the
 *               retry heap, taking a batch
 *   retry.c     what an outcome becomes (sent, retry, failed), backoff
 *               with jitter, the pause and slow-down after a storm
 *   worker.c    the delivery workers: mark in flight, deliver(), record
 *               the outcomes
 *   pump.c      the pump: the owners' heartbeat and the log's due rows
 *               back into memory
 * The rate is a base/ratelimit token bucket; every delivery log write
 * goes through dlog.h. */
#ifndef BATON_DISPATCH_INT_H
#define BATON_DISPATCH_INT_H

#include <pthread.h>
#include <stdint.h>

#include "base/ratelimit.h"
#include "base/record.h"
#include "delivery/dispatch.h"
#include "delivery/dlog.h"

/* A worker that finds less than a batch waits this long at most after the
 * oldest message arrived, for more to join it: a batch's cost is mostly
 * its two commits (in flight, outcomes), whatever its size, and a
 * producer that hands messages one by one (a journey) would otherwise pay
 * two commits for every few messages. */
#define LINGER_MS 4

typedef struct qmsg {
    struct qmsg *next;
    char *key, *recipient, *profile_id;
    size_t nparts;
    char **names, **values;
    record *row;
    int64_t time;  /* accepted, UTC s */
    int64_t first; /* its first attempt (or accepted), UTC s: retry_for counts from it */
    unsigned attempts;
    unsigned flags;
    int64_t due_ms; /* retry: monotonic ms */
    int64_t rowid;  /* in the delivery log; 0: not known (proofs) */
    int64_t enq_ms; /* queued at (monotonic ms); 0: ready at once */
    record rowbuf;  /* row points here (or is NULL) */
} qmsg;

#define DISPATCH_RATE_SLOTS 64 /* > the 60 s the rate covers */

struct dispatcher {
    histo latency; /* each deliver() call */
    instance *inst;
    const baton_channel_ops *ops;
    char *channel;
    store *s;
    dlog *log;
    dispatch_opts o;
    int64_t owner;
    int64_t orphans_ms; /* pump: the last look for rows of dead owners */

    double rate;
    int nworkers;
    size_t batch, cap;
    unsigned retries;
    int64_t
        retry_for_ms; /* retried this long after the first attempt at most (0: retries decides) */
    int64_t max_backoff_ms; /* the longest wait between attempts */
    int resend_uncertain;   /* rows a dead process left in deliver(), and
                               BATON_UNCERTAIN answers, go again */
    int64_t backoff_ms;

    pthread_mutex_t mu;
    pthread_cond_t work, room, idle;
    pthread_cond_t pump_cv; /* wakes the pump */
    int pump_starved;       /* the pump found no room: wake it when there is */
    int flushing;           /* dispatch_flush waits: no lingering */
    int pumping;            /* the pump is taking rows of the log into memory */
    int kicked;             /* dispatch_kick: what is queued is a whole group,
                               not lingered on (until the queue empties) */
    qmsg *head, *tail;
    size_t nqueued; /* in head..tail */
    size_t max;     /* a worker's batch */
    qmsg **heap;    /* retries, by due_ms */
    size_t nheap, heapcap;
    size_t pending;      /* queued + in flight + retrying */
    _Atomic int closing; /* submit refuses (read unlocked on its fast path) */
    _Atomic int stop;    /* workers exit after their batch */
    int64_t pause_until_ms;
    unsigned pause_level;

    ratelimit bucket; /* `rate`, slowed down after a storm (retry.c) */

    dispatch_stats st;
    /* messages sent in each second of the monotonic clock (slot s % N
     * holds second sent_sec[slot]): the last minute's sending rate */
    uint32_t sent_in[DISPATCH_RATE_SLOTS];
    int64_t sent_sec[DISPATCH_RATE_SLOTS];
    pthread_t *workers;
    int nstarted;
    pthread_t pump;
    int pump_started;
    unsigned seed;
};

/* dispatch.c */
int64_t dispatch_now_s(const dispatcher *d); /* the clock of opts, UTC s */
void dispatch_sleep_ms(int64_t ms);
void dispatch_emit(dispatcher *d, const qmsg *m, dispatch_status st, const char *pid,
                   const char *reason, unsigned segments, int64_t next_at, const char *fmt,
                   size_t fmtlen);

/* queue.c */
qmsg *qmsg_pack(const char *key, const char *recipient, const char *profile_id, size_t nparts,
                const char *const *names, const char *const *values, const baton_record *row);
qmsg *qmsg_from(const dispatch_msg *m, int64_t t);
void qmsg_free(qmsg *m);
void qmsg_fill(const qmsg *q, baton_message *bm);
/* Under d->mu. */
void queue_push(dispatcher *d, qmsg *m);
void queue_retry(dispatcher *d, qmsg *m); /* into the heap, by m->due_ms */
void queue_release_due(dispatcher *d, int64_t now_ms, int all);
void queue_room_freed(dispatcher *d);
size_t queue_take(dispatcher *d, qmsg **batch, size_t max);
int queue_lingering(const dispatcher *d, size_t max, int64_t now_ms);

/* retry.c */
void retry_init(dispatcher *d);
/* The outcome a channel's answer becomes for m (attempts counted):
 * SENT, RETRY (*delay_ms: its backoff), FAILED (a RETRY past the budget
 * says so in reason) or UNCERTAIN (BATON_UNCERTAIN, retried as RETRY
 * when the channel has resend_uncertain). A status no SDK defines
 * becomes RETRY in out. Returns 1 when the answer was transient (RETRY,
 * UNCERTAIN: the provider did not answer in time). */
int retry_classify(dispatcher *d, const qmsg *m, baton_delivery *out, dispatch_status *fin,
                   int64_t *delay_ms);
/* After a batch of n with nretry transient answers: pause and slow down
 * on a storm, recover on a clean batch. */
void retry_adapt(dispatcher *d, size_t n, size_t nretry);
/* 1 when a batch of n with nretry transient answers is a storm */
int retry_storm(size_t n, size_t nretry);

/* worker.c */
void *dispatch_worker(void *arg);

/* pump.c */
void *dispatch_pump(void *arg);
void pump_heartbeat(dispatcher *d); /* under the log's lock */

#endif
