/* journey/loop — the engine thread and the runner's life. engine_main is
 * the data flow, one stage call each (runner_impl.h says where each
 * lives): take what the inbox stage has ready, apply it in one transaction
 * (router), then hand on what that transaction decided (actions, sends)
 * and tidy the inbox. Start and stop, drain and statistics are here too. */
#include <errno.h>
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

/* A batch costs a commit and the log pages it rewrites, whatever it
 * holds: a few events wait up to LINGER_MS for the next groups to join
 * them (the sources' groups come every millisecond or so under load). */
#define LINGER_EVENTS 256
#define LINGER_MS 2
#define CONTROL_MS 1000

/* The inbox stage: wait until there is work (events that may be taken,
 * action results, send statuses, due timers), handing waiting sends
 * meanwhile, and take it. 1 when the engine should stop. */
static int inbox_take(jrunner *r, jwork *w)
{
    pthread_mutex_lock(&r->mu);
    for (;;) {
        int64_t due;
        int has_due = jengine_next_due(&r->eng, &due);
        int due_now = has_due && due <= jr_now_ms(r);
        int take = r->qhead && !r->wait_sends && jr_action_backlog(r) < r->o.action_queue;
        int64_t linger = 0;
        if (take && r->qlen < LINGER_EVENTS && r->qlen < r->o.batch && !r->stop && !r->done &&
            !r->marks && !due_now)
            linger = r->qsince + LINGER_MS - deadline_now_ms();
        /* a transaction at least every CONTROL_MS reads pause, resume and
         * close (journey_control) while nothing else happens */
        int64_t idle = r->last_txn + CONTROL_MS - deadline_now_ms();
        if ((take && linger <= 0) || r->done || r->marks || due_now || (idle <= 0 && !r->stop))
            break;
        if (r->stop && !r->qhead)
            break;
        int64_t wait = r->wait_sends ? 20 : 1000;
        if (has_due && due - jr_now_ms(r) < wait)
            wait = due - jr_now_ms(r);
        if (linger > 0 && linger < wait)
            wait = linger;
        if (idle > 0 && idle < wait)
            wait = idle;
        struct timespec ts;
        deadline_in(&ts, wait < 1 ? 1 : wait);
        pthread_cond_timedwait(&r->wake, &r->mu, &ts);
        if (r->wait_sends) {
            pthread_mutex_unlock(&r->mu);
            jr_hand_sends(r);
            pthread_mutex_lock(&r->mu);
        }
    }
    if (r->stop && !r->qhead && !r->done && !r->marks) {
        pthread_mutex_unlock(&r->mu);
        return 1;
    }
    qitem **tail = &w->items;
    w->items = NULL;
    w->n = 0;
    if (!r->wait_sends && jr_action_backlog(r) < r->o.action_queue)
        while (r->qhead && w->n < r->o.batch) {
            qitem *it = r->qhead;
            r->qhead = it->next;
            it->next = NULL;
            *tail = it;
            tail = &it->next;
            w->n++;
        }
    if (!r->qhead)
        r->qtail = NULL;
    r->qlen -= w->n;
    w->done = r->done;
    r->done = NULL;
    r->busy = 1;
    pthread_mutex_unlock(&r->mu);
    w->marks = r->marks;
    r->marks = NULL;
    return 0;
}

/* After the commit: the work is done with; the inbox forgets ids older
 * than a week now and then. */
static void inbox_done(jrunner *r, jwork *w)
{
    uint64_t nrouted = 0;
    for (qitem *it = w->items; it;) {
        nrouted++;
        qitem *nx = it->next;
        jevent_free(&it->ev);
        free(it);
        it = nx;
    }
    for (adone *done = w->done; done;) {
        adone *nx = done->next;
        free(done->key);
        free(done->response);
        free(done->reason);
        free(done);
        done = nx;
    }
    jr_free_marks(w->marks);
    int64_t now = jr_real_ms();
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
}

/* The transaction rolled back: everything goes back, in order, and is
 * tried again shortly. */
static void inbox_put_back(jrunner *r, jwork *w)
{
    pthread_mutex_lock(&r->mu);
    if (w->items) {
        qitem *last = w->items;
        while (last->next)
            last = last->next;
        last->next = r->qhead;
        if (!r->qhead)
            r->qtail = last;
        r->qhead = w->items;
        r->qlen += w->n;
    }
    adone **dt = &w->done;
    while (*dt)
        dt = &(*dt)->next;
    *dt = r->done;
    r->done = w->done;
    r->busy = 0;
    pthread_mutex_unlock(&r->mu);
    smark **mt = &w->marks;
    while (*mt)
        mt = &(*mt)->next;
    *mt = r->marks;
    r->marks = w->marks;
    struct timespec ts = {0, 200 * 1000000};
    nanosleep(&ts, NULL);
}

static void *engine_main(void *arg)
{
    jrunner *r = arg;
    pthread_setname_np(pthread_self(), "baton-journey"); /* top -H, perf */
    jwork w;
    while (inbox_take(r, &w) == 0) {
        if (jr_route(r, &w) != 0) { /* results, events, steps, due timers */
            inbox_put_back(r, &w);
            continue;
        }
        jr_sends_commit(r);   /* what the transaction decided, oldest first */
        jr_actions_commit(r); /* calls to the action workers */
        jr_dead_commit(r);    /* profiles not found, to the inbox's dead letters */
        jr_hand_sends(r);     /* sends to the dispatchers */
        jr_kick_sends(r);     /* what they hold of this batch goes now */
        inbox_done(r, &w);
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Start and stop                                                      */
/* ------------------------------------------------------------------ */

/* An earlier version of a journey, from the text the state store kept. */
static journey *load_version(void *ud, const char *file, const char *text)
{
    jrunner *r = ud;
    diag d;
    diag_init(&d);
    /* checked against the running configuration (none in some tests) */
    journey *j = journey_load_text(file, text, r->a && r->a->conf.nuses ? r->a : NULL, &d);
    if (!j && d.n)
        log_msg(BATON_LOG_WARN, "journey", "%s:%d: %s", d.v[0].file ? d.v[0].file : file,
                d.v[0].line, d.v[0].msg);
    diag_free(&d);
    return j;
}

static void requeue(void *ud, int64_t seq, jevent *ev, const char *source)
{
    jr_enqueue(ud, seq, ev);
}

static void resume_one(void *ud, const char *kind, const char *key, int64_t inst, const char *jname,
                       const char *node, const char *profile, const char *event_json,
                       const char *results_json, const char *set_json)
{
    jrunner *r = ud;
    json_t *ev = event_json ? json_loads(event_json, 0, NULL) : NULL;
    json_t *res = results_json ? json_loads(results_json, 0, NULL) : NULL;
    /* the version the instance entered */
    const journey *j = jengine_instance_journey(&r->eng, inst);
    int idx = j && !strcmp(j->name, jname) ? journey_node(j, node) : -1;
    if (idx < 0)
        jr_mark(r, key, "failed: the journey or its node is gone");
    else if (!strcmp(kind, "send"))
        jr_resume_send(r, key, profile, j->name, &j->nodes[idx], ev, res);
    else {
        ajob *job = jr_job_new(key, j->nodes[idx].action, profile, node, ev, res);
        if (!strcmp(kind, "update"))
            job->set = set_json ? json_loads(set_json, 0, NULL) : json_object();
        jr_queue_job(r, job);
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
                       .channel_enabled = jr_on_channel_enabled,
                       .send = jr_on_send,
                       .action = jr_on_action,
                       .profile = jr_on_profile,
                       .lookup = jr_on_lookup,
                       .rows = jr_on_rows,
                       .batch = jr_on_batch,
                       .aggs = jr_on_aggs,
                       .load_version = load_version,
                       .profile_exists = jr_on_profile_exists,
                       .not_entered = jr_on_not_entered};
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
        if (pthread_create(&r->workers[i], NULL, jr_action_worker, r) == 0)
            r->nworkers++;
    if (pthread_create(&r->engine, NULL, engine_main, r) != 0) {
        snprintf(err, errlen, "cannot start the journey engine thread");
        r->engine_started = 0;
        jrunner_stop(r);
        return NULL;
    }
    r->engine_started = 1;
    if (pthread_create(&r->ingest, NULL, jr_ingest_main, r) != 0) {
        snprintf(err, errlen, "cannot start the journey ingest thread");
        jrunner_stop(r);
        return NULL;
    }
    r->ingest_started = 1;
    if (jr_audience_start(r, err, errlen) || jr_spool_start(r, err, errlen)) {
        jrunner_stop(r);
        return NULL;
    }
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
    jr_audience_stop(r); /* a run in progress stops; its slot is run again next time */
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
    jr_spool_stop(r);
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
        jr_route(r, &(jwork){.marks = r->marks});
        jr_free_marks(r->marks);
        r->marks = NULL;
    }
    while (r->wait_sends) {
        psend *p = r->wait_sends;
        r->wait_sends = p->next;
        jr_psend_free(p);
    }
    jr_free_txn_work(r);
    while (r->ahead) {
        ajob *j = r->ahead;
        r->ahead = j->next;
        jr_ajob_free(j);
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
    for (size_t i = 0; i < r->ndead_sources; i++)
        free(r->dead_sources[i]);
    free(r->dead_sources);
    for (size_t i = 0; i < r->nscratch; i++)
        buf_free(&r->scratch[i]);
    free(r->scratch);
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
    store_counts(&r->inbox.st, &s->inbox_statements, &s->inbox_commits);
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
