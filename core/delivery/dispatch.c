/* The dispatcher: a bounded in-memory queue in front of `connections`
 * worker threads, a retry heap, a token bucket, and a pump that brings
 * rows from the delivery log (deferred, or left by an earlier dispatcher)
 * back into the queue when they are due. */
#include "delivery/dispatch.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/deadline.h"
#include "delivery/content.h"
#include "delivery/dlog.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/record.h"

#define PUMP_MS 250
/* An owner beats every second. One whose process is gone (kill -9, a
 * crash) is dead at once; one silent for OWNER_STALE_S while its pid
 * lives (a pid reused, a process hung) is taken for dead too. Its rows go
 * back to the dispatchers of their channels. A live process is never
 * taken for dead for a mere pause: a long engine batch holds the write
 * lock, and two processes must never both send a row. */
#define HEARTBEAT_S 1
#define OWNER_STALE_S 300
/* Rows of owners gone without a trace are looked for this often (and at
 * once when a beat finds an owner dead). */
#define ORPHANS_S 30
/* A worker that finds less than a batch waits this long at most after the
 * oldest message arrived, for more to join it: a batch's cost is mostly
 * its two commits (in flight, outcomes), whatever its size, and a
 * producer that hands messages one by one (a journey) would otherwise pay
 * two commits for every few messages. */
#define LINGER_MS 4
#define MAX_BACKOFF_MS (3600 * 1000LL)
#define MAX_PAUSE_MS (30 * 1000LL)

typedef struct qmsg {
    struct qmsg *next;
    char *key, *recipient, *profile_id;
    size_t nparts;
    char **names, **values;
    record *row;
    int64_t time; /* accepted, UTC s */
    unsigned attempts;
    unsigned flags;
    int64_t due_ms; /* retry: monotonic ms */
    int64_t rowid;  /* in the delivery log; 0: not known (proofs) */
    int64_t enq_ms; /* queued at (monotonic ms); 0: ready at once */
    record rowbuf;  /* row points here (or is NULL) */
} qmsg;

struct dispatcher {
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
    int resend_uncertain; /* rows a dead process left in deliver() go again */
    int64_t backoff_ms;

    pthread_mutex_t mu;
    pthread_cond_t work, room, idle;
    pthread_cond_t pump_cv; /* wakes the pump */
    int pump_starved;       /* the pump found no room: wake it when there is */
    int flushing;           /* dispatch_flush waits: no lingering */
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

    pthread_mutex_t bucket_mu;
    double tokens, cur_rate;
    int64_t bucket_ns;

    dispatch_stats st;
    pthread_t *workers;
    int nstarted;
    pthread_t pump;
    int pump_started;
    unsigned seed;
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t now_s(const dispatcher *d)
{
    if (d->o.clock)
        return d->o.clock(d->o.ud);
    return (int64_t)time(NULL);
}

static void sleep_ms(int64_t ms)
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

/* ------------------------------------------------------------------ */
/* Messages                                                            */
/* ------------------------------------------------------------------ */

/* A message is one allocation: the qmsg, its part arrays, its row's
 * fields and every string, copied in (a message is made on the
 * submitting thread and freed on a worker: one malloc and one free each,
 * not one per string). */
static size_t str_size(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

static char *put(char **at, const char *s, size_t n)
{
    char *p = *at;
    memcpy(p, s, n);
    p[n] = '\0';
    *at += n + 1;
    return p;
}

static qmsg *qmsg_pack(const char *key, const char *recipient, const char *profile_id,
                       size_t nparts, const char *const *names, const char *const *values,
                       const baton_record *row)
{
    if (!recipient)
        recipient = "";
    size_t nfields = row ? row->n : 0;
    size_t size = sizeof(qmsg) + 2 * (nparts + 1) * sizeof(char *) +
                  nfields * sizeof(record_field) + str_size(key) + str_size(recipient) +
                  str_size(profile_id);
    for (size_t i = 0; i < nparts; i++)
        size += str_size(names[i]) + str_size(values[i] ? values[i] : "");
    for (size_t i = 0; i < nfields; i++) {
        size += str_size(row->v[i].name);
        if (row->v[i].value.type == BATON_T_STRING)
            size += row->v[i].value.v.s.len + 1;
    }
    qmsg *q = xmalloc(size);
    memset(q, 0, sizeof *q);
    char **ptrs = (char **)(q + 1);
    q->names = ptrs;
    q->values = ptrs + nparts + 1;
    q->names[nparts] = q->values[nparts] = NULL;
    record_field *fields = (record_field *)(ptrs + 2 * (nparts + 1));
    char *at = (char *)(fields + nfields);
    q->key = put(&at, key, strlen(key));
    q->recipient = put(&at, recipient, strlen(recipient));
    q->profile_id = profile_id ? put(&at, profile_id, strlen(profile_id)) : NULL;
    q->nparts = nparts;
    for (size_t i = 0; i < nparts; i++) {
        const char *v = values[i] ? values[i] : "";
        q->names[i] = put(&at, names[i], strlen(names[i]));
        q->values[i] = put(&at, v, strlen(v));
    }
    if (row) {
        for (size_t i = 0; i < nfields; i++) {
            fields[i].name = put(&at, row->v[i].name, strlen(row->v[i].name));
            fields[i].value = row->v[i].value;
            if (row->v[i].value.type == BATON_T_STRING)
                fields[i].value.v.s.ptr =
                    put(&at, row->v[i].value.v.s.ptr, row->v[i].value.v.s.len);
        }
        q->rowbuf = (record){.v = fields, .n = nfields, .cap = nfields};
        q->row = &q->rowbuf;
    }
    return q;
}

static void qmsg_free(qmsg *m)
{
    free(m);
}

static qmsg *qmsg_from(const dispatch_msg *m, int64_t t)
{
    qmsg *q = qmsg_pack(m->key, m->recipient, m->profile_id, m->nparts, m->part_names,
                        m->part_values, m->row);
    q->time = t;
    q->flags = m->flags;
    return q;
}

/* ------------------------------------------------------------------ */
/* Queue and retry heap (under d->mu)                                  */
/* ------------------------------------------------------------------ */

static void push_tail(dispatcher *d, qmsg *m)
{
    d->nqueued++;
    m->next = NULL;
    if (d->tail)
        d->tail->next = m;
    else
        d->head = m;
    d->tail = m;
}

static void heap_push(dispatcher *d, qmsg *m)
{
    if (d->nheap == d->heapcap) {
        d->heapcap = d->heapcap ? d->heapcap * 2 : 64;
        d->heap = xrealloc(d->heap, d->heapcap * sizeof *d->heap);
    }
    size_t i = d->nheap++;
    while (i && d->heap[(i - 1) / 2]->due_ms > m->due_ms) {
        d->heap[i] = d->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    d->heap[i] = m;
}

static qmsg *heap_pop(dispatcher *d)
{
    qmsg *top = d->heap[0], *last = d->heap[--d->nheap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= d->nheap)
            break;
        if (c + 1 < d->nheap && d->heap[c + 1]->due_ms < d->heap[c]->due_ms)
            c++;
        if (d->heap[c]->due_ms >= last->due_ms)
            break;
        d->heap[i] = d->heap[c];
        i = c;
    }
    if (d->nheap)
        d->heap[i] = last;
    return top;
}

/* Due retries go to the front: they have waited already. */
static void release_due(dispatcher *d, int64_t now, int all)
{
    while (d->nheap && (all || d->heap[0]->due_ms <= now)) {
        qmsg *m = heap_pop(d);
        m->enq_ms = 0; /* it has waited */
        d->nqueued++;
        m->next = d->head;
        d->head = m;
        if (!d->tail)
            d->tail = m;
    }
}

/* Messages left memory: wake submitters waiting for room, the pump if it
 * found none, and flushers when nothing is left. */
static void room_freed(dispatcher *d)
{
    pthread_cond_broadcast(&d->room);
    if (d->pump_starved) {
        d->pump_starved = 0;
        pthread_cond_signal(&d->pump_cv);
    }
    if (d->pending == 0)
        pthread_cond_broadcast(&d->idle);
}

/* ------------------------------------------------------------------ */
/* Rate                                                                */
/* ------------------------------------------------------------------ */

static void rate_acquire(dispatcher *d, size_t n)
{
    if (d->rate <= 0)
        return;
    pthread_mutex_lock(&d->bucket_mu);
    int64_t now = mono_ns();
    double r = d->cur_rate, burst = r * 0.1 > 1 ? r * 0.1 : 1;
    d->tokens += (double)(now - d->bucket_ns) / 1e9 * r;
    if (d->tokens > burst)
        d->tokens = burst;
    d->bucket_ns = now;
    d->tokens -= (double)n;
    double wait = d->tokens < 0 ? -d->tokens / r : 0;
    pthread_mutex_unlock(&d->bucket_mu);
    sleep_ms((int64_t)(wait * 1000));
}

/* A batch mostly answered RETRY (429s, a server gone): pause the whole
 * channel and halve the rate; a clean batch undoes it step by step. */
static void adapt(dispatcher *d, size_t n, size_t nretry)
{
    int storm = nretry > 0 && nretry * 2 >= n;
    pthread_mutex_lock(&d->mu);
    if (storm) {
        d->pause_level = d->pause_level < 16 ? d->pause_level + 1 : 16;
        int64_t p = d->backoff_ms << (d->pause_level - 1);
        if (p > MAX_PAUSE_MS || p <= 0)
            p = MAX_PAUSE_MS;
        p = p / 2 + (int64_t)(rand_r(&d->seed) % (unsigned)(p / 2 + 1));
        d->pause_until_ms = deadline_now_ms() + p;
        d->st.throttled++;
    } else if (nretry == 0) {
        d->pause_level = 0;
    }
    pthread_mutex_unlock(&d->mu);
    if (d->rate <= 0)
        return;
    pthread_mutex_lock(&d->bucket_mu);
    if (storm)
        d->cur_rate = fmax(d->rate / 64, d->cur_rate / 2);
    else if (nretry == 0)
        d->cur_rate = fmin(d->rate, d->cur_rate * 1.25 + 1);
    pthread_mutex_unlock(&d->bucket_mu);
}

/* ------------------------------------------------------------------ */
/* Workers                                                             */
/* ------------------------------------------------------------------ */

static void emit(dispatcher *d, const qmsg *m, dispatch_status st, const char *pid,
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

static void fill_message(const qmsg *q, baton_message *bm)
{
    memset(bm, 0, sizeof *bm);
    bm->size = sizeof *bm;
    bm->key = q->key;
    bm->recipient = q->recipient;
    bm->profile_id = q->profile_id;
    bm->nparts = q->nparts;
    bm->part_names = (const char *const *)q->names;
    bm->part_values = (const char *const *)q->values;
    bm->row = q->row;
    bm->time = q->time;
    bm->attempt = q->attempts;
}

static int64_t retry_delay_ms(dispatcher *d, unsigned attempt)
{
    int64_t ms = d->backoff_ms > 0 ? d->backoff_ms : 1;
    for (unsigned i = 1; i < attempt && ms < MAX_BACKOFF_MS; i++)
        ms *= 2;
    if (ms > MAX_BACKOFF_MS)
        ms = MAX_BACKOFF_MS;
    pthread_mutex_lock(&d->mu);
    unsigned r = (unsigned)rand_r(&d->seed);
    pthread_mutex_unlock(&d->mu);
    return ms / 2 + (int64_t)(r % (uint64_t)(ms / 2 + 1)); /* jitter: [ms/2, ms] */
}

/* Under d->mu: the first max messages of the queue, out of it. */
static size_t take(dispatcher *d, qmsg **batch, size_t max)
{
    size_t n = 0;
    while (d->head && n < max) {
        batch[n++] = d->head;
        d->head = d->head->next;
        d->nqueued--;
    }
    if (!d->head)
        d->tail = NULL;
    else
        pthread_cond_signal(&d->work);
    return n;
}

/* Under d->log->mu, before a commit: the batch goes in flight (its
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

/* Under d->mu: the queue is short of a batch of max and its oldest has
 * waited less than LINGER_MS, with no flush or close hurrying it. */
static int lingering(const dispatcher *d, size_t max, int64_t now)
{
    return d->head && d->nqueued < max && d->head->enq_ms + LINGER_MS > now && !d->flushing &&
           !d->closing;
}

/* Deliver a batch marked in flight and committed (flight: its record), and
 * commit its outcomes. When the next batch is ready by then (next: room
 * for max), it is taken and marked in flight in the same commit as these
 * outcomes — one commit per batch instead of two — and its size returned
 * (*next_flight its record); it must be run next. */
static size_t run_batch(dispatcher *d, void *conn, qmsg **batch, size_t n, int64_t flight,
                        qmsg **next, size_t max, int64_t *next_flight)
{
    baton_message *bms = xcalloc(n, sizeof *bms);
    const baton_message **ptrs = xcalloc(n, sizeof *ptrs);
    baton_delivery *out = xcalloc(n, sizeof *out);
    for (size_t i = 0; i < n; i++) {
        fill_message(batch[i], &bms[i]);
        ptrs[i] = &bms[i];
        out[i].status = BATON_RETRY;
        snprintf(out[i].reason, sizeof out[i].reason, "the channel gave no answer");
    }
    d->ops->deliver(d->inst->state, conn, ptrs, n, out);

    int64_t now = now_s(d), mnow = deadline_now_ms();
    size_t nretry = 0, logged = 0;
    dispatch_status *fin = xcalloc(n, sizeof *fin);
    int64_t *due = xcalloc(n, sizeof *due);
    for (size_t i = 0; i < n; i++) {
        qmsg *m = batch[i];
        out[i].provider_id[sizeof out[i].provider_id - 1] = '\0';
        out[i].reason[sizeof out[i].reason - 1] = '\0';
        if (out[i].status == BATON_OK) {
            fin[i] = DISPATCH_SENT;
        } else if (out[i].status == BATON_RETRY && m->attempts <= d->retries) {
            fin[i] = DISPATCH_RETRY;
            nretry++;
            due[i] = retry_delay_ms(d, m->attempts);
        } else {
            fin[i] = DISPATCH_FAILED;
            if (out[i].status == BATON_RETRY) {
                char r[sizeof out[i].reason + 64];
                int k = snprintf(r, sizeof r, "gave up after %u attempts: ", m->attempts);
                snprintf(r + k, sizeof r - (size_t)k, "%s", out[i].reason);
                size_t len =
                    strlen(r) < sizeof out[i].reason - 1 ? strlen(r) : sizeof out[i].reason - 1;
                memcpy(out[i].reason, r, len);
                out[i].reason[len] = '\0';
                nretry++;
            }
        }
        logged += !(m->flags & DISPATCH_F_PROOF);
    }
    /* the next batch, when it is ready now: not under a rate (its wait
     * comes before the mark) nor after a storm of failures (the pause) */
    size_t nn = 0;
    *next_flight = 0;
    if (d->rate <= 0 && !(nretry > 0 && nretry * 2 >= n)) {
        pthread_mutex_lock(&d->mu);
        int64_t mn = deadline_now_ms();
        release_due(d, mn, 0);
        if (!d->stop && d->pause_until_ms <= mn && d->head && !lingering(d, max, mn))
            nn = take(d, next, max);
        pthread_mutex_unlock(&d->mu);
    }
    if (logged || nn) {
        pthread_mutex_lock(d->log->mu);
        for (size_t i = 0; i < n; i++) {
            qmsg *m = batch[i];
            if (m->flags & DISPATCH_F_PROOF)
                continue;
            dlog_update(d->log, m->rowid, m->key, fin[i], out[i].provider_id, out[i].reason,
                        m->attempts, out[i].segments, now,
                        fin[i] == DISPATCH_RETRY ? now + (due[i] + 999) / 1000 : 0, d->owner);
        }
        if (flight)
            dlog_inflight_end(d->log, flight);
        if (nn)
            *next_flight = mark_locked(d, next, nn);
        store_group_commit_locked(d->s); /* out of flight at once */
        pthread_mutex_unlock(d->log->mu);
    }
    for (size_t i = 0; i < n; i++)
        emit(d, batch[i], fin[i], out[i].provider_id, out[i].reason, out[i].segments,
             fin[i] == DISPATCH_RETRY ? now + (due[i] + 999) / 1000 : 0, NULL, 0);
    adapt(d, n, nretry);

    pthread_mutex_lock(&d->mu);
    d->st.attempts += n;
    for (size_t i = 0; i < n; i++) {
        qmsg *m = batch[i];
        switch (fin[i]) {
        case DISPATCH_SENT: d->st.sent++; break;
        case DISPATCH_FAILED: d->st.failed++; break;
        default: break;
        }
        if (fin[i] == DISPATCH_RETRY || out[i].status == BATON_RETRY)
            d->st.retries++;
        if (fin[i] == DISPATCH_RETRY) {
            m->due_ms = mnow + due[i];
            heap_push(d, m);
        } else {
            d->pending--;
            qmsg_free(m);
        }
    }
    room_freed(d);
    if (d->nheap)
        pthread_cond_signal(&d->work); /* someone must watch the heap's clock */
    pthread_mutex_unlock(&d->mu);
    free(fin);
    free(due);
    free(bms);
    free(ptrs);
    free(out);
    return nn;
}

static void *worker(void *arg)
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
        release_due(d, now, 0);
        int64_t wait = -1;
        if (d->pause_until_ms > now)
            wait = d->pause_until_ms - now;
        else if (!d->head && d->nheap)
            wait = d->heap[0]->due_ms - now;
        else if (lingering(d, max, now))
            wait = d->head->enq_ms + LINGER_MS - now; /* more may come */
        if (wait > 0 && d->nheap && d->heap[0]->due_ms - now < wait)
            wait = d->heap[0]->due_ms - now; /* > 0: release_due took the due ones */
        if (wait >= 0 || !d->head) {
            struct timespec ts;
            deadline_in(&ts, wait >= 0 ? (wait ? wait : 1) : 1000);
            pthread_cond_timedwait(&d->work, &d->mu, &ts);
            continue;
        }
        n = take(d, batch, max);
        pthread_mutex_unlock(&d->mu);
        rate_acquire(d, n);
        pthread_mutex_lock(d->log->mu);
        flight = mark_locked(d, batch, n);
        store_group_commit_locked(d->s);
        pthread_mutex_unlock(d->log->mu);
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

/* ------------------------------------------------------------------ */
/* The pump: due rows of the log back into memory                      */
/* ------------------------------------------------------------------ */

/* Run sql with ?1 = text (when not NULL), ?2 = a, ?3 = b; a statement
 * without some of them ignores those. */
static void exec_bound(dispatcher *d, const char *sql, const char *text, int64_t a, int64_t b)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(d->log->db, sql, -1, &st, NULL) != SQLITE_OK) {
        log_error("delivery log: %s", sqlite3_errmsg(d->log->db));
        return;
    }
    if (text)
        sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, a);
    sqlite3_bind_int64(st, 3, b);
    if (sqlite3_step(st) != SQLITE_DONE)
        log_error("delivery log: %s", sqlite3_errmsg(d->log->db));
    sqlite3_finalize(st);
}

/* Under d->log->mu: beat, forget owners that stopped beating, and hand
 * the rows they held (this channel's) to the pump. */
static void heartbeat(dispatcher *d)
{
    int64_t wall = (int64_t)time(NULL);
    store_group_join(d->s);
    exec_bound(d,
               "INSERT INTO dispatch_owners (owner, channel, pid, heartbeat) VALUES (?2, ?1, ?3, "
               "strftime('%s','now')) ON CONFLICT(owner) DO UPDATE SET heartbeat = "
               "excluded.heartbeat",
               d->channel, d->owner, (int64_t)getpid());
    exec_bound(d, "DELETE FROM dispatch_owners WHERE heartbeat < ?2", NULL, wall - OWNER_STALE_S,
               0);
    int gone = sqlite3_changes(d->log->db) > 0;
    /* an owner whose process is gone (killed, crashed) is dead now: its
     * rows need not wait for the heartbeat to go stale */
    sqlite3_stmt *st;
    int64_t dead[64];
    size_t ndead = 0;
    if (sqlite3_prepare_v2(d->log->db, "SELECT owner, pid FROM dispatch_owners WHERE pid != ?1", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (int64_t)getpid());
        while (sqlite3_step(st) == SQLITE_ROW && ndead < 64) {
            pid_t pid = (pid_t)sqlite3_column_int64(st, 1);
            if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH)
                dead[ndead++] = sqlite3_column_int64(st, 0);
        }
        sqlite3_finalize(st);
    }
    for (size_t i = 0; i < ndead; i++)
        exec_bound(d, "DELETE FROM dispatch_owners WHERE owner = ?2", NULL, dead[i], 0);
    /* the look costs a scan of the rows held in memory: not every beat,
     * which would stall every writer each second */
    if (!gone && !ndead && d->orphans_ms && deadline_now_ms() - d->orphans_ms < ORPHANS_S * 1000)
        return;
    d->orphans_ms = deadline_now_ms();
    /* the batches dead owners had in deliver(): their rows become "in
     * flight" (attempts counted), which the pump turns into uncertain */
    exec_bound(d,
               "UPDATE deliveries SET sending = 1, attempts = attempts + 1 WHERE rowid IN"
               " (SELECT j.value FROM dispatch_inflight f, json_each(f.rowids) j WHERE"
               " f.owner != ?2 AND f.owner NOT IN (SELECT owner FROM dispatch_owners))"
               " AND status IN ('queued', 'retry', 'deferred')",
               NULL, d->owner, 0);
    exec_bound(d,
               "DELETE FROM dispatch_inflight WHERE owner != ?2 AND owner NOT IN"
               " (SELECT owner FROM dispatch_owners)",
               NULL, d->owner, 0);
    /* every channel's: the beat that found an owner dead also removed it
     * from dispatch_owners, so no other channel's beat would notice */
    exec_bound(d,
               "UPDATE deliveries SET owner = 0 WHERE owner != 0 AND owner != ?2"
               " AND status IN ('queued', 'retry', 'deferred') AND owner NOT IN"
               " (SELECT owner FROM dispatch_owners)",
               NULL, d->owner, 0);
}

#define UNCERTAIN_REASON                                                                           \
    "baton stopped while the channel was delivering it: it may have gone out, so it is not "       \
    "sent again (resend_uncertain = false)"

static size_t pump_once(dispatcher *d)
{
    pthread_mutex_lock(&d->mu);
    size_t room = d->cap > d->pending ? d->cap - d->pending : 0;
    int stop = d->stop || d->closing;
    d->pump_starved = !room; /* room_freed wakes it */
    pthread_mutex_unlock(&d->mu);
    if (!room || stop)
        return 0;
    if (room > 1000)
        room = 1000;
    int64_t now = now_s(d);
    qmsg *got = NULL, **tailp = &got, *unsure = NULL, **utailp = &unsure;
    size_t n = 0;
    pthread_mutex_lock(d->log->mu);
    sqlite3_stmt *st = d->log->pump; /* prepared once: it runs at every wake */
    sqlite3_bind_text(st, 1, d->channel, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)room);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 0);
        const char *recipient = (const char *)sqlite3_column_text(st, 1);
        const char *pid = (const char *)sqlite3_column_text(st, 2);
        unsigned attempts = (unsigned)sqlite3_column_int(st, 3);
        int64_t rowid = sqlite3_column_int64(st, 7);
        qmsg *q;
        if (sqlite3_column_int(st, 6) && !d->resend_uncertain) {
            q = qmsg_pack(key, recipient, pid, 0, NULL, NULL, NULL);
            *utailp = q;
            utailp = &q->next;
        } else {
            size_t np = 0;
            char **names = NULL, **values = NULL;
            record *row = NULL;
            if (content_parse((const char *)sqlite3_column_text(st, 5), &np, &names, &values,
                              &row) != 0) {
                dlog_update(d->log, rowid, key, DISPATCH_FAILED, NULL,
                            "the message's content is missing from the delivery log", attempts, 0,
                            now, 0, 0);
                continue;
            }
            q = qmsg_pack(key, recipient, pid, np, (const char *const *)names,
                          (const char *const *)values, row);
            for (size_t i = 0; i < np; i++) {
                free(names[i]);
                free(values[i]);
            }
            free(names);
            free(values);
            record_free(row);
            *tailp = q;
            tailp = &q->next;
            n++;
        }
        q->attempts = attempts;
        q->time = sqlite3_column_int64(st, 4);
        q->rowid = rowid;
    }
    sqlite3_reset(st);
    for (qmsg *q = got; q; q = q->next)
        dlog_update(d->log, q->rowid, q->key, DISPATCH_QUEUED, NULL, NULL, q->attempts, 0, now, 0,
                    d->owner);
    for (qmsg *q = unsure; q; q = q->next)
        dlog_update(d->log, q->rowid, q->key, DISPATCH_UNCERTAIN, NULL, UNCERTAIN_REASON,
                    q->attempts, 0, now, 0, 0);
    pthread_mutex_unlock(d->log->mu);
    while (unsure) {
        qmsg *q = unsure;
        unsure = q->next;
        log_msg(BATON_LOG_WARN, d->inst->who, "%s: %s", q->key, UNCERTAIN_REASON);
        emit(d, q, DISPATCH_UNCERTAIN, NULL, UNCERTAIN_REASON, 0, 0, NULL, 0);
        pthread_mutex_lock(&d->mu);
        d->st.uncertain++;
        pthread_mutex_unlock(&d->mu);
        qmsg_free(q);
    }
    if (!n)
        return 0;
    pthread_mutex_lock(&d->mu);
    while (got) {
        qmsg *q = got;
        got = got->next;
        push_tail(d, q);
        d->pending++;
    }
    pthread_cond_broadcast(&d->work);
    pthread_mutex_unlock(&d->mu);
    return n;
}

static void *pump(void *arg)
{
    dispatcher *d = arg;
    pthread_setname_np(pthread_self(), "baton-pump"); /* top -H, perf */
    int64_t beat = 0;
    pthread_mutex_lock(&d->mu);
    while (!d->stop) {
        pthread_mutex_unlock(&d->mu);
        if (deadline_now_ms() - beat >= HEARTBEAT_S * 1000) {
            pthread_mutex_lock(d->log->mu);
            heartbeat(d);
            pthread_mutex_unlock(d->log->mu);
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

/* ------------------------------------------------------------------ */
/* Open, submit, flush, close                                          */
/* ------------------------------------------------------------------ */

static double cfg_f(const instance *inst, const char *k, double def)
{
    const keymap_value *v = keymap_get(&inst->values, k);
    return v ? v->f : def;
}
static int64_t cfg_i(const instance *inst, const char *k, int64_t def)
{
    const keymap_value *v = keymap_get(&inst->values, k);
    return v ? v->i : def;
}

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
    d->rate = cfg_f(inst, "rate", 0);
    d->cur_rate = d->rate;
    d->nworkers = (int)cfg_i(inst, "connections", 1);
    d->batch = (size_t)cfg_i(inst, "batch", 100);
    d->retries = (unsigned)cfg_i(inst, "retries", 5);
    d->backoff_ms = cfg_i(inst, "retry_backoff", 1000);
    d->cap = (size_t)cfg_i(inst, "queue", 10000);
    d->resend_uncertain = cfg_i(inst, "resend_uncertain", 0) != 0;
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
        r = (uint64_t)mono_ns() ^ ((uint64_t)getpid() << 32);
    d->owner = (int64_t)(r & 0x7fffffffffffffffULL) | 1;
    d->seed = (unsigned)r;
    d->bucket_ns = mono_ns();
    d->tokens = 1;
    pthread_mutex_init(&d->mu, NULL);
    pthread_mutex_init(&d->bucket_mu, NULL);
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
    pthread_mutex_lock(d->log->mu);
    heartbeat(d);
    pthread_mutex_unlock(d->log->mu);
    d->workers = xcalloc((size_t)d->nworkers, sizeof *d->workers);
    for (int i = 0; i < d->nworkers; i++) {
        if (pthread_create(&d->workers[i], NULL, worker, d) != 0) {
            snprintf(err, errlen, "%s: cannot start a delivery worker: %s", inst->where,
                     strerror(errno));
            goto fail;
        }
        d->nstarted++;
    }
    if (pthread_create(&d->pump, NULL, pump, d) != 0) {
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
    qmsg *q = qmsg_from(m, now_s(d));
    dispatch_submit_rc rc = DISPATCH_ACCEPTED;
    char reason[256] = "";
    int64_t until = 0;
    dispatch_cap cap = DISPATCH_CAP_OK;
    if (!(m->flags & (DISPATCH_F_NOCAPS | DISPATCH_F_PROOF)))
        cap = dispatch_caps_check(d->s, d->o.caps, d->channel, m->profile_id, q->time, &until,
                                  reason, sizeof reason);
    baton_message bm;
    fill_message(q, &bm);
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
        emit(d, q, st, NULL, reason, 0, until, out.data ? out.data : "", out.len);
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
    int64_t now = now_s(d);
    char reason[256] = "";
    int64_t until = 0;
    dispatch_cap cap = DISPATCH_CAP_OK;
    if (!(m->flags & DISPATCH_F_NOCAPS) && !proof)
        cap = dispatch_caps_check(d->s, d->o.caps, d->channel, m->profile_id, now, &until, reason,
                                  sizeof reason);
    qmsg *q = qmsg_from(m, now);
    if (cap != DISPATCH_CAP_OK) {
        char *content =
            cap == DISPATCH_CAP_QUIET ? content_json(q->nparts, q->names, q->values, q->row) : NULL;
        pthread_mutex_lock(d->log->mu);
        int ins = dlog_insert(d->log, q->key, d->channel, q->recipient, q->profile_id,
                              cap == DISPATCH_CAP_QUIET ? DISPATCH_DEFERRED : DISPATCH_CAPPED, now,
                              until, 0, content, &q->rowid);
        if (ins == 1)
            dlog_update(d->log, q->rowid, q->key,
                        cap == DISPATCH_CAP_QUIET ? DISPATCH_DEFERRED : DISPATCH_CAPPED, NULL,
                        reason, 0, 0, now, until, 0);
        pthread_mutex_unlock(d->log->mu);
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
            emit(d, q, cap == DISPATCH_CAP_QUIET ? DISPATCH_DEFERRED : DISPATCH_CAPPED, NULL,
                 reason, 0, until, NULL, 0);
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
        pthread_mutex_lock(d->log->mu);
        ins = dlog_insert(d->log, q->key, d->channel, q->recipient, q->profile_id, DISPATCH_QUEUED,
                          now, 0, d->owner, content, &q->rowid);
        pthread_mutex_unlock(d->log->mu);
        free(content);
    }
    pthread_mutex_lock(&d->mu);
    if (ins != 1) {
        d->pending--;
        d->st.duplicates += ins == 0;
        room_freed(d);
        pthread_mutex_unlock(&d->mu);
        qmsg_free(q);
        if (ins < 0 && err)
            snprintf(err, errlen, "%s: %s: the delivery log refused the message", d->channel,
                     m->key);
        return ins == 0 ? DISPATCH_REFUSED_DUPLICATE : DISPATCH_INVALID;
    }
    d->st.submitted++;
    q->enq_ms = deadline_now_ms();
    push_tail(d, q);
    /* a worker lingers on a short queue by itself: wake one only when the
     * queue starts (it starts the clock) or holds a batch */
    if (d->nqueued == 1 || d->nqueued == d->max)
        pthread_cond_signal(&d->work);
    pthread_mutex_unlock(&d->mu);
    return DISPATCH_ACCEPTED;
}

/* Rows of this channel the pump would take now (left by a dispatcher
 * that is gone, or deferred and due). */
static long long due_in_log(dispatcher *d)
{
    long long n = 0;
    pthread_mutex_lock(d->log->mu);
    sqlite3_stmt *st = d->log->due;
    sqlite3_bind_text(st, 1, d->channel, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_s(d));
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    pthread_mutex_unlock(d->log->mu);
    return n;
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
        while (d->pending > 0) {
            if (end >= 0) {
                struct timespec ts;
                int64_t left = end - deadline_now_ms();
                deadline_in(&ts, left > 0 ? left : 0);
                if (left <= 0 || pthread_cond_timedwait(&d->idle, &d->mu, &ts) == ETIMEDOUT) {
                    rc = d->pending ? -1 : 0;
                    break;
                }
            } else {
                pthread_cond_wait(&d->idle, &d->mu);
            }
        }
        pthread_mutex_unlock(&d->mu);
        if (rc || !d->log || d->stop || due_in_log(d) == 0)
            break;
        /* due rows the pump has not taken yet: wake it, wait for them */
        pthread_mutex_lock(&d->mu);
        pthread_cond_signal(&d->pump_cv);
        pthread_mutex_unlock(&d->mu);
        if (end >= 0 && deadline_now_ms() >= end) {
            rc = -1;
            break;
        }
        sleep_ms(10);
    }
    pthread_mutex_lock(&d->mu);
    d->flushing--;
    pthread_mutex_unlock(&d->mu);
    if (d->log)
        store_group_commit(d->s);
    return rc;
}

void dispatch_get_stats(dispatcher *d, dispatch_stats *st)
{
    pthread_mutex_lock(&d->mu);
    *st = d->st;
    st->pending = d->pending;
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
        release_due(d, 0, 1);
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
        pthread_mutex_lock(d->log->mu);
        store_group_join(d->s);
        exec_bound(d, "UPDATE deliveries SET owner = 0 WHERE owner = ?2", NULL, d->owner, 0);
        exec_bound(d, "DELETE FROM dispatch_owners WHERE owner = ?2", NULL, d->owner, 0);
        exec_bound(d, "DELETE FROM dispatch_inflight WHERE owner = ?2", NULL, d->owner, 0);
        pthread_mutex_unlock(d->log->mu);
        store_group_commit(d->s);
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
    pthread_mutex_destroy(&d->bucket_mu);
    pthread_cond_destroy(&d->work);
    pthread_cond_destroy(&d->room);
    pthread_cond_destroy(&d->idle);
    pthread_cond_destroy(&d->pump_cv);
    free(d->channel);
    free(d);
}
