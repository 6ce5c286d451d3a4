#include "journey/runner.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "config/keymap.h"
#include "base/deadline.h"
#include "base/ratelimit.h"
#include "journey/engine.h"
#include "journey/event.h"
#include "scope/cond.h"
#include "journey/inbox.h"
#include "scope/source.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/record.h"

/* An event handed in by a source, waiting for the ingest thread. */
typedef struct initem {
    struct initem *next;
    jevent ev;
    char *reason; /* a dead letter */
    const char *source;
    int64_t now;
    void (*ack)(void *);
    void *ack_ctx;
    jrunner_outcome_fn outcome; /* instead of ack: the event's fate */
} initem;

/* An event in the inbox, waiting for the engine thread. */
typedef struct qitem {
    struct qitem *next;
    int64_t seq;
    jevent ev;
} qitem;

/* A send node passed in a transaction, handed to its dispatcher after. */
typedef struct psend {
    struct psend *next;
    char *key, *profile;
    const jnode *node;
    json_t *event, *results;
} psend;

/* An action call, for the workers. */
typedef struct ajob {
    struct ajob *next;
    char *key, *action, *profile, *node;
    json_t *event, *results;
} ajob;

/* What a worker brings back. */
typedef struct adone {
    struct adone *next;
    char *key, *response, *reason;
    int ok;
} adone;

/* A status to write on a journey_sends row in the next transaction. */
typedef struct smark {
    struct smark *next;
    char *key, *status;
} smark;

/* The `rate` of one action (base/ratelimit), shared by the workers. */
typedef struct bucket {
    struct bucket *next;
    char *action;
    ratelimit rl;
} bucket;

struct jrunner {
    app *a;
    store *st;
    jinbox inbox;
    int64_t last_prune_ms;
    jengine eng;
    jsource *src;
    jchannel *ch;
    size_t nch;
    jrunner_opts o;

    pthread_mutex_t mu;
    pthread_cond_t wake, idle;
    qitem *qhead, *qtail;
    size_t qlen;
    int64_t qsince;                /* deadline_now_ms: when the queue last became non-empty */
    jrunner_source_stats srcs[16]; /* under mu */
    histo action_latency;          /* each invoke() */
    size_t nsrcs;
    adone *done;
    int stopping; /* submit refuses */
    int stop;     /* the engine thread exits once the queue is empty */
    int busy;     /* the engine thread is in a batch */
    jrunner_stats stats;

    /* engine thread only */
    psend *txn_sends, *wait_sends;
    ajob *txn_jobs;
    smark *marks;

    /* action workers */
    pthread_mutex_t amu;
    pthread_cond_t awake;
    ajob *ahead, *atail;
    size_t alen;
    int astop;
    pthread_t *workers;
    int nworkers;
    bucket *buckets;

    pthread_t engine;
    int engine_started;

    /* ingest: sources -> inbox.db (group commit) -> acks */
    pthread_mutex_t imu;
    pthread_cond_t icv;
    initem *ihead, *itail;
    size_t ilen;
    int istop;
    int ibusy;         /* a group is being committed */
    int iwaiting;      /* the ingest thread sleeps until an event comes */
    int iflush;        /* a source said its group is complete */
    int64_t isince_us; /* monotonic: the first event of the group queued */
    pthread_t ingest;
    int ingest_started;
};

static int64_t real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_ms(const jrunner *r)
{
    return r->o.clock_ms ? r->o.clock_ms() : real_ms();
}

/* Wait on cv (deadline_cond_init) for up to us microseconds. */
static void cond_wait_us(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t us)
{
    struct timespec ts;
    deadline_in_us(&ts, us);
    pthread_cond_timedwait(cv, mu, &ts);
}

/* ------------------------------------------------------------------ */
/* The sink                                                            */
/* ------------------------------------------------------------------ */

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

static void enqueue(jrunner *r, int64_t seq, jevent *ev)
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
    it->now = real_ms();
    if (jevent_parse(json, len, it->now, &it->ev, reason, sizeof reason))
        it->reason = xstrdup(reason);
    it->source = source;
    it->ack = ack;
    it->outcome = outcome;
    it->ack_ctx = ack_ctx;
    pthread_mutex_lock(&r->imu);
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

int jrunner_submit_outcome(jrunner *r, const char *source, const char *json, size_t len,
                           jrunner_outcome_fn outcome, void *ctx)
{
    return submit(r, source, json, len, NULL, outcome, ctx);
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

const histo *jrunner_action_latency(const jrunner *r)
{
    return &r->action_latency;
}

size_t jrunner_get_source_stats(jrunner *r, jrunner_source_stats *out, size_t max)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->nsrcs < max ? r->nsrcs : max;
    memcpy(out, r->srcs, n * sizeof *out);
    pthread_mutex_unlock(&r->mu);
    return n;
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

static void *ingest_main(void *arg)
{
    jrunner *r = arg;
    pthread_setname_np(pthread_self(), "baton-ingest"); /* top -H, perf */
    for (;;) {
        pthread_mutex_lock(&r->imu);
        r->iwaiting = 1;
        while (!r->ihead && !r->istop)
            pthread_cond_wait(&r->icv, &r->imu);
        r->iwaiting = 0;
        if (!r->ihead && r->istop) {
            pthread_mutex_unlock(&r->imu);
            break;
        }
        gather(r);
        initem *items = r->ihead;
        r->ihead = r->itail = NULL;
        r->ilen = 0;
        r->ibusy = 1;
        pthread_mutex_unlock(&r->imu);
        while (ingest_group(r, items) != 0) {
            struct timespec ts = {0, 200 * 1000000};
            nanosleep(&ts, NULL);
        }
        pthread_mutex_lock(&r->imu);
        r->ibusy = 0;
        pthread_mutex_unlock(&r->imu);
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Engine callbacks (inside a transaction, engine thread)              */
/* ------------------------------------------------------------------ */

static jchannel *channel(jrunner *r, const char *name)
{
    for (size_t i = 0; i < r->nch; i++)
        if (!strcmp(r->ch[i].name, name))
            return &r->ch[i];
    return NULL;
}

static int on_channel_enabled(void *ud, const char *name)
{
    jchannel *c = channel(ud, name);
    return c && c->d;
}

static int hand(jrunner *r, const psend *p, char *status, size_t statuslen, int *queued);

/* A send node, inside the batch: handed to its dispatcher at once, so
 * that its delivery log row commits with the step that decided it (the
 * dispatcher's workers take the store's lock to mark it in flight, so
 * nothing is delivered before that commit). Kept for after the commit
 * when a dispatcher is full, and behind sends kept so before. */
static int on_send(void *ud, const jsend_req *q, char *status, size_t statuslen)
{
    jrunner *r = ud;
    psend now = {.key = (char *)q->key,
                 .profile = (char *)q->profile,
                 .node = q->node,
                 .event = q->event,
                 .results = q->results};
    int queued = 0;
    if (!r->wait_sends && !r->txn_sends && hand(r, &now, status, statuslen, &queued) == 0) {
        if (queued) /* the dispatcher holds it against this batch's log row */
            r->eng.handed_on = 1;
        return 0;
    }
    psend *p = xcalloc(1, sizeof *p);
    p->key = xstrdup(q->key);
    p->profile = xstrdup(q->profile);
    p->node = q->node;
    p->event = json_incref(q->event);
    p->results = q->results ? json_deep_copy(q->results) : NULL;
    p->next = r->txn_sends;
    r->txn_sends = p;
    return 1;
}

static ajob *job_new(const char *key, const char *action, const char *profile, const char *node,
                     json_t *event, json_t *results)
{
    ajob *j = xcalloc(1, sizeof *j);
    j->key = xstrdup(key);
    j->action = xstrdup(action);
    j->profile = xstrdup(profile);
    j->node = xstrdup(node);
    j->event = event ? json_incref(event) : json_object();
    j->results = results ? json_deep_copy(results) : NULL;
    return j;
}

static void on_action(void *ud, const jsend_req *q)
{
    jrunner *r = ud;
    ajob *j = job_new(q->key, q->node->action, q->profile, q->node->id, q->event, q->results);
    j->next = r->txn_jobs;
    r->txn_jobs = j;
}

static json_t *on_profile(void *ud, const char *profile_id)
{
    return jsource_profile(((jrunner *)ud)->src, profile_id);
}

static json_t *on_lookup(void *ud, const char *source, const char *profile_id, json_t *event)
{
    return jsource_lookup(((jrunner *)ud)->src, source, profile_id, event);
}

static json_t *on_rows(void *ud, const schema_entity *ent, const schema_field *col,
                       const baton_value *v, size_t limit, char *err, size_t errlen)
{
    return jsource_rows(((jrunner *)ud)->src, ent, col, v, limit, err, errlen);
}

static void psend_free(psend *p)
{
    free(p->key);
    free(p->profile);
    json_decref(p->event);
    json_decref(p->results);
    free(p);
}

static void ajob_free(ajob *j)
{
    free(j->key);
    free(j->action);
    free(j->profile);
    free(j->node);
    json_decref(j->event);
    json_decref(j->results);
    free(j);
}

static void mark(jrunner *r, const char *key, const char *status)
{
    smark *m = xcalloc(1, sizeof *m);
    m->key = xstrdup(key);
    m->status = xstrdup(status);
    m->next = r->marks;
    r->marks = m;
}

/* ------------------------------------------------------------------ */
/* Sends: after the commit, to the channel's dispatcher                */
/* ------------------------------------------------------------------ */

/* The record a message is addressed by (and that channel-side templates
 * read): the profile's fields, bare and as profile.<field>, and the
 * event's as event.<field>. */
static record *message_row(const psend *p, json_t *prof)
{
    record *row = record_new();
    record_set_string(row, "id", p->profile);
    record_set_string(row, "profile.id", p->profile);
    if (prof) {
        jsource_json_to_record(row, NULL, prof);
        jsource_json_to_record(row, "profile", prof);
    }
    json_t *data = json_object_get(p->event, "data");
    if (json_is_object(data))
        jsource_json_to_record(row, "event", data);
    return row;
}

/* Hand a send to its dispatcher. 0 done with it (handed or refused),
 * with the status to record, and *queued 1 when the dispatcher took it
 * into its queue; 1 the dispatcher is full (or closing for a reload):
 * keep it for later. Engine thread. */
static int hand(jrunner *r, const psend *p, char *status, size_t statuslen, int *queued)
{
    jchannel *c = channel(r, p->node->channel);
    if (!c || !c->d) {
        snprintf(status, statuslen, "skipped: channel disabled");
        return 0;
    }
    json_t *prof = jsource_profile(r->src, p->profile);
    record *row = message_row(p, prof);
    char addr[512];
    dispatch_eligibility el = dispatch_recipient(c->inst, row, addr, sizeof addr);
    if (el != DISPATCH_ELIGIBLE) {
        snprintf(status, statuslen, "%s",
                 el == DISPATCH_NO_ADDRESS ? "skipped: no address" : "skipped: no consent");
        record_free(row);
        json_decref(prof);
        return 0;
    }
    const jnode *n = p->node;
    jscope sc = {.profile_id = p->profile,
                 .event = p->event,
                 .results = p->results,
                 .now_ms = now_ms(r),
                 .profile = jsource_profile_cb,
                 .lookup = jsource_lookup_cb,
                 .rows = jsource_rows,
                 .ud = r->src,
                 .profile_row = prof,
                 .profile_loaded = 1};
    const char **names = xcalloc(n->nparts + 1, sizeof *names);
    char **values = xcalloc(n->nparts + 1, sizeof *values);
    char err[256] = "";
    int bad = 0;
    for (size_t i = 0; i < n->nparts && !bad; i++) {
        names[i] = n->parts[i].name;
        buf out;
        buf_init(&out);
        if (n->parts[i].tmpl && jtemplate_render(n->parts[i].tmpl, &sc, &out, err, sizeof err))
            bad = 1;
        values[i] = n->parts[i].tmpl ? buf_steal(&out) : xstrdup(n->parts[i].value);
        buf_free(&out);
    }
    jscope_release(&sc); /* also drops prof */
    dispatch_submit_rc rc = DISPATCH_INVALID;
    if (!bad) {
        dispatch_msg m = {.key = p->key,
                          .recipient = addr,
                          .profile_id = p->profile,
                          .nparts = n->nparts,
                          .part_names = names,
                          .part_values = (const char *const *)values,
                          .row = row};
        rc = dispatch_submit(c->d, &m, 0, err, sizeof err);
    }
    for (size_t i = 0; i < n->nparts; i++)
        free(values[i]);
    free(names);
    free(values);
    record_free(row);
    const char *st = NULL;
    switch (rc) {
    case DISPATCH_FULL: return 1;
    case DISPATCH_CLOSED: return 1; /* a reload is closing it: try again later */
    case DISPATCH_ACCEPTED:
        st = "queued";
        *queued = 1;
        break;
    case DISPATCH_ACCEPTED_DEFERRED: st = "deferred"; break;
    case DISPATCH_REFUSED_CAPPED: st = "capped"; break;
    case DISPATCH_REFUSED_DUPLICATE: st = "queued"; break; /* handed before */
    case DISPATCH_INVALID: break;
    }
    if (st)
        snprintf(status, statuslen, "%s", st);
    else
        snprintf(status, statuslen, "failed: %s", err[0] ? err : "refused by the channel");
    pthread_mutex_lock(&r->mu);
    r->stats.sends_handed++;
    pthread_mutex_unlock(&r->mu);
    return 0;
}

/* Hand what waits (kept when a dispatcher was full, or left pending by an
 * earlier run), oldest first; stop at the first full dispatcher. Their
 * statuses are written in the next transaction. */
static void hand_sends(jrunner *r)
{
    psend *p;
    char status[300];
    int queued;
    while ((p = r->wait_sends)) {
        if (hand(r, p, status, sizeof status, &queued))
            break;
        mark(r, p->key, status);
        r->wait_sends = p->next;
        psend_free(p);
    }
}

/* ------------------------------------------------------------------ */
/* Action workers                                                      */
/* ------------------------------------------------------------------ */

static void post_done(jrunner *r, const ajob *j, int ok, const char *response, const char *reason)
{
    adone *d = xcalloc(1, sizeof *d);
    d->key = xstrdup(j->key);
    d->ok = ok;
    d->response = response ? xstrdup(response) : NULL;
    d->reason = reason ? xstrdup(reason) : NULL;
    pthread_mutex_lock(&r->mu);
    d->next = r->done;
    r->done = d;
    if (ok)
        r->stats.actions_ok++;
    else
        r->stats.actions_failed++;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->mu);
}

/* Sleep up to ms unless the workers are told to stop; 1 when stopped. */
static int action_sleep(jrunner *r, int64_t ms)
{
    struct timespec ts;
    deadline_in(&ts, ms);
    pthread_mutex_lock(&r->amu);
    while (!r->astop && pthread_cond_timedwait(&r->awake, &r->amu, &ts) != ETIMEDOUT)
        ;
    int stop = r->astop;
    pthread_mutex_unlock(&r->amu);
    return stop;
}

/* The `rate` cap of an action: a token bucket shared by the workers. */
static int64_t rate_wait_ms(jrunner *r, instance *inst)
{
    double rate = inst->host.action.rate;
    if (rate <= 0)
        return 0;
    pthread_mutex_lock(&r->amu);
    bucket *b = r->buckets;
    while (b && strcmp(b->action, inst->name) != 0)
        b = b->next;
    if (!b) {
        b = xcalloc(1, sizeof *b);
        b->action = xstrdup(inst->name);
        ratelimit_init(&b->rl, rate, rate < 1 ? 1 : rate, rate < 1 ? 1 : rate);
        b->next = r->buckets;
        r->buckets = b;
    }
    pthread_mutex_unlock(&r->amu);
    int64_t us = ratelimit_take(&b->rl, 1);
    return us > 0 ? us / 1000 + 1 : 0;
}

static void run_job(jrunner *r, ajob *j)
{
    instance *inst = app_find(r->a, "actions", j->action);
    const baton_action_ops *ops = inst ? instance_action(inst) : NULL;
    if (!ops || inst->phase != INSTANCE_RUNNING) {
        post_done(r, j, 0, NULL, "the action is not configured or not running");
        return;
    }
    record *ctx = record_new();
    record_set_string(ctx, "profile.id", j->profile);
    json_t *prof = jsource_profile(r->src, j->profile);
    if (prof) {
        jsource_json_to_record(ctx, "profile", prof);
        json_decref(prof);
    }
    json_t *data = json_object_get(j->event, "data");
    if (json_is_object(data))
        jsource_json_to_record(ctx, "event", data);
    const char *env[] = {"id", "type", "time", NULL};
    for (const char *const *k = env; *k; k++) {
        json_t *v = json_object_get(j->event, *k);
        if (json_is_string(v)) {
            char name[32];
            snprintf(name, sizeof name, "event.%s", *k);
            record_set_string(ctx, name, json_string_value(v));
        }
    }
    if (j->results)
        jsource_json_to_record(ctx, NULL, j->results);
    int retries = inst->host.action.retries;
    baton_action_call call = {
        .size = sizeof call, .key = j->key, .profile_id = j->profile, .context = ctx};
    int64_t backoff = 500;
    for (int attempt = 0;; attempt++) {
        int64_t w = rate_wait_ms(r, inst);
        if (w > 0 && action_sleep(r, w))
            break; /* stopping: left pending, invoked again on the next start */
        buf resp;
        buf_init(&resp);
        char reason[512] = "";
        int64_t t0 = deadline_now_us();
        baton_status st = ops->invoke(inst->state, &call, &resp, reason, sizeof reason);
        histo_observe_us(&r->action_latency, deadline_now_us() - t0);
        if (st == BATON_OK) {
            post_done(r, j, 1, resp.data ? resp.data : "", NULL);
            buf_free(&resp);
            break;
        }
        buf_free(&resp);
        if (st == BATON_ERROR || attempt >= retries) {
            char *why = st == BATON_ERROR ? xstrdup(reason[0] ? reason : "error")
                                          : xasprintf("%s (after %d attempts)",
                                                      reason[0] ? reason : "failed", attempt + 1);
            post_done(r, j, 0, NULL, why);
            free(why);
            break;
        }
        log_msg(BATON_LOG_INFO, inst->who, "%s: %s; retrying in %lld ms", j->key, reason,
                (long long)backoff);
        if (action_sleep(r, backoff))
            break;
        backoff = backoff * 2 > 30000 ? 30000 : backoff * 2;
    }
    record_free(ctx);
}

static void *action_worker(void *arg)
{
    jrunner *r = arg;
    pthread_setname_np(pthread_self(), "baton-action"); /* top -H, perf */
    for (;;) {
        pthread_mutex_lock(&r->amu);
        while (!r->astop && !r->ahead)
            pthread_cond_wait(&r->awake, &r->amu);
        if (r->astop) {
            pthread_mutex_unlock(&r->amu);
            break;
        }
        ajob *j = r->ahead;
        r->ahead = j->next;
        if (!r->ahead)
            r->atail = NULL;
        r->alen--;
        pthread_mutex_unlock(&r->amu);
        run_job(r, j);
        ajob_free(j);
        pthread_mutex_lock(&r->mu);
        pthread_cond_signal(&r->wake); /* room in the action queue */
        pthread_mutex_unlock(&r->mu);
    }
    return NULL;
}

static void queue_job(jrunner *r, ajob *j)
{
    j->next = NULL;
    pthread_mutex_lock(&r->amu);
    if (r->atail)
        r->atail->next = j;
    else
        r->ahead = j;
    r->atail = j;
    r->alen++;
    pthread_cond_signal(&r->awake);
    pthread_mutex_unlock(&r->amu);
}

static size_t action_backlog(jrunner *r)
{
    pthread_mutex_lock(&r->amu);
    size_t n = r->alen;
    pthread_mutex_unlock(&r->amu);
    return n;
}

/* ------------------------------------------------------------------ */
/* The engine thread                                                   */
/* ------------------------------------------------------------------ */

static void free_txn_work(jrunner *r)
{
    while (r->txn_sends) {
        psend *p = r->txn_sends;
        r->txn_sends = p->next;
        psend_free(p);
    }
    while (r->txn_jobs) {
        ajob *j = r->txn_jobs;
        r->txn_jobs = j->next;
        ajob_free(j);
    }
}

static void free_marks(smark *m)
{
    while (m) {
        smark *n = m->next;
        free(m->key);
        free(m->status);
        free(m);
        m = n;
    }
}

/* One transaction: marks, action results, events, due timers. Returns 0
 * committed, -1 rolled back (nothing of it happened). */
static int batch(jrunner *r, qitem *items, adone *done, smark *marks)
{
    char err[512] = "";
    int64_t now = now_ms(r);
    /* the marks say "handed": the delivery log's rows commit with them,
     * in the store's group transaction the engine's is part of */
    if (jengine_begin(&r->eng, err, sizeof err))
        goto fail_nobegin;
    for (smark *m = marks; m; m = m->next)
        if (jengine_send_status(&r->eng, m->key, m->status, err, sizeof err))
            goto fail;
    for (adone *d = done; d; d = d->next)
        if (jengine_action_done(&r->eng, d->key, d->ok, d->response, d->reason, now, err,
                                sizeof err))
            goto fail;
    int64_t last_seq = 0;
    for (qitem *it = items; it; it = it->next) {
        if (jengine_event(&r->eng, &it->ev, now, err, sizeof err))
            goto fail;
        last_seq = it->seq;
    }
    if (last_seq && jengine_set_watermark(&r->eng, last_seq, err, sizeof err))
        goto fail;
    size_t fired;
    if (jengine_fire(&r->eng, now, 20000, &fired, err, sizeof err))
        goto fail;
    if (jengine_commit(&r->eng, err, sizeof err))
        goto fail_committed;
    return 0;
fail:
    if (r->eng.handed_on) /* the rollback stops the process: say why first */
        log_msg(BATON_LOG_ERROR, "journey", "%s", err);
    jengine_rollback(&r->eng);
fail_committed:
fail_nobegin:
    free_txn_work(r);
    log_msg(BATON_LOG_ERROR, "journey", "%s; retrying the batch", err);
    return -1;
}

/* A batch costs a commit and the log pages it rewrites, whatever it
 * holds: a few events wait up to LINGER_MS for the next groups to join
 * them (the sources' groups come every millisecond or so under load). */
#define LINGER_EVENTS 256
#define LINGER_MS 2

static void *engine_main(void *arg)
{
    jrunner *r = arg;
    pthread_setname_np(pthread_self(), "baton-journey"); /* top -H, perf */
    for (;;) {
        pthread_mutex_lock(&r->mu);
        for (;;) {
            int64_t due;
            int has_due = jengine_next_due(&r->eng, &due);
            int due_now = has_due && due <= now_ms(r);
            int take = r->qhead && !r->wait_sends && action_backlog(r) < r->o.action_queue;
            int64_t linger = 0;
            if (take && r->qlen < LINGER_EVENTS && r->qlen < r->o.batch && !r->stop && !r->done &&
                !r->marks && !due_now)
                linger = r->qsince + LINGER_MS - deadline_now_ms();
            if ((take && linger <= 0) || r->done || r->marks || due_now)
                break;
            if (r->stop && !r->qhead)
                break;
            int64_t wait = r->wait_sends ? 20 : 1000;
            if (has_due && due - now_ms(r) < wait)
                wait = due - now_ms(r);
            if (linger > 0 && linger < wait)
                wait = linger;
            struct timespec ts;
            deadline_in(&ts, wait < 1 ? 1 : wait);
            pthread_cond_timedwait(&r->wake, &r->mu, &ts);
            if (r->wait_sends) {
                pthread_mutex_unlock(&r->mu);
                hand_sends(r);
                pthread_mutex_lock(&r->mu);
            }
        }
        if (r->stop && !r->qhead && !r->done && !r->marks) {
            pthread_mutex_unlock(&r->mu);
            break;
        }
        qitem *items = NULL, **tail = &items;
        size_t n = 0;
        if (!r->wait_sends && action_backlog(r) < r->o.action_queue)
            while (r->qhead && n < r->o.batch) {
                qitem *it = r->qhead;
                r->qhead = it->next;
                it->next = NULL;
                *tail = it;
                tail = &it->next;
                n++;
            }
        if (!r->qhead)
            r->qtail = NULL;
        r->qlen -= n;
        adone *done = r->done;
        r->done = NULL;
        r->busy = 1;
        pthread_mutex_unlock(&r->mu);
        smark *marks = r->marks;
        r->marks = NULL;

        if (batch(r, items, done, marks) == 0) {
            uint64_t nrouted = 0;
            for (qitem *it = items; it;) {
                nrouted++;
                qitem *nx = it->next;
                jevent_free(&it->ev);
                free(it);
                it = nx;
            }
            while (done) {
                adone *nx = done->next;
                free(done->key);
                free(done->response);
                free(done->reason);
                free(done);
                done = nx;
            }
            free_marks(marks);
            /* hand on what the transaction decided, oldest first */
            psend *rev = NULL;
            while (r->txn_sends) {
                psend *p = r->txn_sends;
                r->txn_sends = p->next;
                p->next = rev;
                rev = p;
            }
            psend **wt = &r->wait_sends;
            while (*wt)
                wt = &(*wt)->next;
            *wt = rev;
            ajob *jrev = NULL;
            while (r->txn_jobs) {
                ajob *j = r->txn_jobs;
                r->txn_jobs = j->next;
                j->next = jrev;
                jrev = j;
            }
            while (jrev) {
                ajob *j = jrev;
                jrev = j->next;
                queue_job(r, j);
            }
            hand_sends(r);
            int64_t now = real_ms();
            if (now - r->last_prune_ms > 60000) {
                /* ids are remembered (deduplicated) for a week */
                r->last_prune_ms = now;
                jinbox_prune(&r->inbox, jengine_watermark(&r->eng), now - 7 * 86400000LL, 20000);
            }
            pthread_mutex_lock(&r->mu);
            r->stats.batches++;
            r->stats.routed += nrouted;
            r->busy = 0;
            pthread_cond_broadcast(&r->idle);
            pthread_mutex_unlock(&r->mu);
        } else {
            /* put everything back, in order, and try again shortly */
            pthread_mutex_lock(&r->mu);
            if (items) {
                qitem *last = items;
                while (last->next)
                    last = last->next;
                last->next = r->qhead;
                if (!r->qhead)
                    r->qtail = last;
                r->qhead = items;
                r->qlen += n;
            }
            adone **dt = &done;
            while (*dt)
                dt = &(*dt)->next;
            *dt = r->done;
            r->done = done;
            r->busy = 0;
            pthread_mutex_unlock(&r->mu);
            smark **mt = &marks;
            while (*mt)
                mt = &(*mt)->next;
            *mt = r->marks;
            r->marks = marks;
            struct timespec ts = {0, 200 * 1000000};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Start and stop                                                      */
/* ------------------------------------------------------------------ */

static void requeue(void *ud, int64_t seq, jevent *ev, const char *source)
{
    enqueue(ud, seq, ev);
}

static void resume_one(void *ud, const char *kind, const char *key, int64_t inst, const char *jname,
                       const char *node, const char *profile, const char *event_json,
                       const char *results_json)
{
    jrunner *r = ud;
    json_t *ev = event_json ? json_loads(event_json, 0, NULL) : NULL;
    json_t *res = results_json ? json_loads(results_json, 0, NULL) : NULL;
    journey *j = NULL;
    for (size_t i = 0; i < r->eng.njs; i++)
        if (!strcmp(r->eng.js[i]->name, jname))
            j = r->eng.js[i];
    int idx = j ? journey_node(j, node) : -1;
    if (idx < 0) {
        mark(r, key, "failed: the journey or its node is gone");
    } else if (!strcmp(kind, "send")) {
        psend *p = xcalloc(1, sizeof *p);
        p->key = xstrdup(key);
        p->profile = xstrdup(profile);
        p->node = &j->nodes[idx];
        p->event = ev ? json_incref(ev) : json_object();
        p->results = res ? json_incref(res) : NULL;
        psend **wt = &r->wait_sends;
        while (*wt)
            wt = &(*wt)->next;
        *wt = p;
    } else {
        queue_job(r, job_new(key, j->nodes[idx].action, profile, node, ev, res));
    }
    json_decref(ev);
    json_decref(res);
}

jrunner *jrunner_start(app *a, store *st, journey **js, size_t njs, const jchannel *ch, size_t nch,
                       const jrunner_opts *opts, char *err, size_t errlen)
{
    jrunner *r = xcalloc(1, sizeof *r);
    r->a = a;
    r->st = st;
    if (opts)
        r->o = *opts;
    if (!r->o.queue)
        r->o.queue = 65536;
    if (!r->o.batch)
        r->o.batch = 4096;
    if (!r->o.action_queue)
        r->o.action_queue = 10000;
    if (!r->o.action_workers)
        r->o.action_workers = 4;
    r->ch = xcalloc(nch + 1, sizeof *r->ch);
    if (nch)
        memcpy(r->ch, ch, nch * sizeof *ch);
    r->nch = nch;
    pthread_mutex_init(&r->mu, NULL);
    deadline_cond_init(&r->wake);
    deadline_cond_init(&r->idle);
    pthread_mutex_init(&r->amu, NULL);
    deadline_cond_init(&r->awake);
    pthread_mutex_init(&r->imu, NULL);
    deadline_cond_init(&r->icv);
    diag d;
    diag_init(&d);
    r->src = jsource_open(a, &d);
    if (d.errors) {
        snprintf(err, errlen, "%s", d.v[0].msg);
        diag_free(&d);
        jsource_close(r->src);
        free(r->ch);
        free(r);
        return NULL;
    }
    diag_free(&d);
    char *dir = path_dirname(st->path);
    char *ipath =
        strcmp(st->path, ":memory:") ? xasprintf("%s/inbox.db", dir) : xstrdup(":memory:");
    free(dir);
    int irc = jinbox_open(&r->inbox, ipath, err, errlen);
    free(ipath);
    if (irc) {
        jsource_close(r->src);
        free(r->ch);
        free(r);
        return NULL;
    }
    jengine_ops ops = {.ud = r,
                       .channel_enabled = on_channel_enabled,
                       .send = on_send,
                       .action = on_action,
                       .profile = on_profile,
                       .lookup = on_lookup,
                       .rows = on_rows};
    if (jengine_open(&r->eng, st, js, njs, &ops, err, errlen)) {
        jinbox_close(&r->inbox);
        jsource_close(r->src);
        free(r->ch);
        free(r);
        return NULL;
    }
    /* a long-lived writer: commits must never wait for a checkpoint's
     * sync */
    char cerr[256];
    if (store_checkpoint_in_background(st, cerr, sizeof cerr))
        log_msg(BATON_LOG_WARN, "journey", "%s; checkpoints stay in the commits", cerr);
    /* events committed to the inbox but not routed before a stop or a
     * crash come first */
    int64_t from = jengine_watermark(&r->eng);
    int got;
    while ((got = jinbox_read(&r->inbox, from, 4096, requeue, r)) > 0)
        from = r->qtail ? r->qtail->seq : from;
    /* what a previous run left in flight goes out again, same keys */
    jengine_pending(&r->eng, resume_one, r, err, errlen);
    r->workers = xcalloc((size_t)r->o.action_workers, sizeof *r->workers);
    for (int i = 0; i < r->o.action_workers; i++)
        if (pthread_create(&r->workers[i], NULL, action_worker, r) == 0)
            r->nworkers++;
    if (pthread_create(&r->engine, NULL, engine_main, r) != 0) {
        snprintf(err, errlen, "cannot start the journey engine thread");
        r->engine_started = 0;
        jrunner_stop(r);
        return NULL;
    }
    r->engine_started = 1;
    if (pthread_create(&r->ingest, NULL, ingest_main, r) != 0) {
        snprintf(err, errlen, "cannot start the journey ingest thread");
        jrunner_stop(r);
        return NULL;
    }
    r->ingest_started = 1;
    plugin_host_set_event_sink(jrunner_submit, jrunner_flush, r);
    return r;
}

int jrunner_drain(jrunner *r, int64_t timeout_ms)
{
    struct timespec ts;
    deadline_in(&ts, timeout_ms);
    for (;;) { /* the ingest queue first */
        pthread_mutex_lock(&r->imu);
        int empty = !r->ihead && !r->ibusy;
        pthread_mutex_unlock(&r->imu);
        if (empty)
            break;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now); /* deadline_in's clock */
        if (now.tv_sec > ts.tv_sec || (now.tv_sec == ts.tv_sec && now.tv_nsec >= ts.tv_nsec))
            return -1;
        struct timespec nap = {0, 1000000};
        nanosleep(&nap, NULL);
    }
    pthread_mutex_lock(&r->mu);
    int rc = 0;
    while ((r->qhead || r->busy || r->done) && rc == 0)
        if (pthread_cond_timedwait(&r->idle, &r->mu, &ts) == ETIMEDOUT)
            rc = -1;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void jrunner_stop(jrunner *r)
{
    if (!r)
        return;
    plugin_host_set_event_sink(NULL, NULL, NULL);
    pthread_mutex_lock(&r->mu);
    r->stopping = 1;
    pthread_mutex_unlock(&r->mu);
    /* what sources handed in is committed and acknowledged */
    if (r->ingest_started) {
        pthread_mutex_lock(&r->imu);
        r->istop = 1;
        pthread_cond_signal(&r->icv);
        pthread_mutex_unlock(&r->imu);
        pthread_join(r->ingest, NULL);
    }
    /* calls in flight finish and report; queued ones stay pending */
    pthread_mutex_lock(&r->amu);
    r->astop = 1;
    pthread_cond_broadcast(&r->awake);
    pthread_mutex_unlock(&r->amu);
    for (int i = 0; i < r->nworkers; i++)
        pthread_join(r->workers[i], NULL);
    free(r->workers);
    if (r->engine_started) {
        pthread_mutex_lock(&r->mu);
        r->stop = 1;
        pthread_cond_signal(&r->wake);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->engine, NULL);
    }
    /* a final pass for marks the last batch produced */
    if (r->marks) {
        batch(r, NULL, NULL, r->marks);
        free_marks(r->marks);
        r->marks = NULL;
    }
    while (r->wait_sends) {
        psend *p = r->wait_sends;
        r->wait_sends = p->next;
        psend_free(p);
    }
    free_txn_work(r);
    while (r->ahead) {
        ajob *j = r->ahead;
        r->ahead = j->next;
        ajob_free(j);
    }
    while (r->qhead) { /* in the inbox: routed on the next start */
        qitem *it = r->qhead;
        r->qhead = it->next;
        jevent_free(&it->ev);
        free(it);
    }
    jengine_close(&r->eng);
    jinbox_close(&r->inbox);
    jsource_close(r->src);
    while (r->buckets) {
        bucket *b = r->buckets;
        r->buckets = b->next;
        ratelimit_destroy(&b->rl);
        free(b->action);
        free(b);
    }
    free(r->ch);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->wake);
    pthread_cond_destroy(&r->idle);
    pthread_mutex_destroy(&r->amu);
    pthread_cond_destroy(&r->awake);
    pthread_mutex_destroy(&r->imu);
    pthread_cond_destroy(&r->icv);
    free(r);
}

void jrunner_get_stats(jrunner *r, jrunner_stats *s)
{
    pthread_mutex_lock(&r->mu);
    *s = r->stats;
    s->queued = r->qlen;
    s->lag_ms = r->qhead ? deadline_now_ms() - r->qsince : 0;
    pthread_mutex_unlock(&r->mu);
}
