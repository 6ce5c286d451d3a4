/* journey/actions — the action stage: an action node passed in a
 * transaction becomes a call for the worker threads after the commit;
 * each call is rate-capped per action, retried with backoff, and its
 * result comes back to the engine thread for the next transaction. A call
 * left in flight by a stop or a crash is invoked again with the same key. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/deadline.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/record.h"
#include "journey/runner_impl.h"

ajob *jr_job_new(const char *key, const char *action, const char *profile, const char *node,
                 json_t *event, json_t *results)
{
    ajob *j = xcalloc(1, sizeof *j);
    j->key = xstrdup(key);
    j->action = action ? xstrdup(action) : NULL;
    j->profile = xstrdup(profile);
    j->node = xstrdup(node);
    j->event = event ? json_incref(event) : json_object();
    j->results = results ? json_deep_copy(results) : NULL;
    return j;
}

void jr_on_action(void *ud, const jsend_req *q)
{
    jrunner *r = ud;
    ajob *j = jr_job_new(q->key, q->node->action, q->profile, q->node->id, q->event, q->results);
    if (q->set)
        j->set = json_incref(q->set);
    j->next = r->txn_jobs;
    r->txn_jobs = j;
}

void jr_ajob_free(ajob *j)
{
    free(j->key);
    free(j->action);
    free(j->profile);
    free(j->node);
    json_decref(j->event);
    json_decref(j->results);
    json_decref(j->set);
    free(j);
}

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

/* An update_profile node's values, by the profile's key. The values were
 * evaluated once when the node ran, so a retry or a replay after a crash
 * writes the same row again, never an increment twice. */
static void run_update(jrunner *r, ajob *j)
{
    char err[512] = "";
    int64_t backoff = 500;
    for (int attempt = 0;; attempt++) {
        if (jsource_update(r->src, j->profile, j->set, err, sizeof err) == 0) {
            char *written = json_dumps(j->set, JSON_COMPACT); /* kept as the node's record */
            post_done(r, j, 1, written, NULL);
            free(written);
            return;
        }
        if (attempt >= 3) {
            char *why = xasprintf("%s (after %d attempts)", err, attempt + 1);
            post_done(r, j, 0, NULL, why);
            free(why);
            return;
        }
        log_msg(BATON_LOG_INFO, "journey", "%s: %s; retrying in %lld ms", j->key, err,
                (long long)backoff);
        if (action_sleep(r, backoff))
            return; /* stopping: left pending, written again on the next start */
        backoff *= 2;
    }
}

static void run_job(jrunner *r, ajob *j)
{
    if (j->set) {
        run_update(r, j);
        return;
    }
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

void *jr_action_worker(void *arg)
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
        jr_ajob_free(j);
        pthread_mutex_lock(&r->mu);
        pthread_cond_signal(&r->wake); /* room in the action queue */
        pthread_mutex_unlock(&r->mu);
    }
    return NULL;
}

void jr_queue_job(jrunner *r, ajob *j)
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

size_t jr_action_backlog(jrunner *r)
{
    pthread_mutex_lock(&r->amu);
    size_t n = r->alen;
    pthread_mutex_unlock(&r->amu);
    return n;
}

/* After the commit: the calls the transaction decided go to the workers,
 * oldest first. */
void jr_actions_commit(jrunner *r)
{
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
        jr_queue_job(r, j);
    }
}
