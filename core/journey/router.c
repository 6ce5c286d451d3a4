/* journey/router — the transaction stage: what the inbox stage took is
 * applied in one transaction of the engine (engine.c): send statuses and
 * action results first, then each event routed (entry filters, re-entry,
 * exits) and the instances it moves stepped, then the timers that are due.
 * The engine's callbacks read profiles and lookups through the sources. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "journey/runner_impl.h"

void jr_free_txn_work(jrunner *r)
{
    while (r->txn_sends) {
        psend *p = r->txn_sends;
        r->txn_sends = p->next;
        jr_psend_free(p);
    }
    while (r->txn_jobs) {
        ajob *j = r->txn_jobs;
        r->txn_jobs = j->next;
        jr_ajob_free(j);
    }
    while (r->txn_dead) {
        pdead *d = r->txn_dead;
        r->txn_dead = d->next;
        jevent_free(&d->ev);
        free(d->reason);
        free(d);
    }
}

int jr_on_profile_exists(void *ud, const char *profile_id)
{
    return jsource_profile_exists(((jrunner *)ud)->src, profile_id);
}

/* A profile the profiles source lacks: a dead letter (reason "profile not
 * found", source "journey:<name>") once this transaction commits, so a
 * batch tried again does not write it twice. */
void jr_on_not_entered(void *ud, const journey *j, const char *profile, json_t *event,
                       const char *reason)
{
    jrunner *r = ud;
    char src[256];
    snprintf(src, sizeof src, "journey:%s", j->name);
    size_t i = 0;
    while (i < r->ndead_sources && strcmp(r->dead_sources[i], src))
        i++;
    if (i == r->ndead_sources) {
        r->dead_sources = xrealloc(r->dead_sources, (i + 1) * sizeof *r->dead_sources);
        r->dead_sources[r->ndead_sources++] = xstrdup(src);
    }
    pdead *d = xcalloc(1, sizeof *d);
    d->source = r->dead_sources[i];
    d->ev.id = xstrdup(json_string_value(json_object_get(event, "id")) ?: "");
    d->ev.type = xstrdup(json_string_value(json_object_get(event, "type")) ?: "");
    d->ev.profile = xstrdup(profile);
    d->ev.raw = json_dumps(event, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (!d->ev.raw)
        d->ev.raw = xstrdup("");
    d->ev.rawlen = strlen(d->ev.raw);
    d->reason = xstrdup(reason);
    d->next = r->txn_dead;
    r->txn_dead = d;
}

json_t *jr_on_profile(void *ud, const char *profile_id)
{
    return jsource_profile(((jrunner *)ud)->src, profile_id);
}

json_t *jr_on_lookup(void *ud, const char *source, const char *profile_id, json_t *event)
{
    return jsource_lookup(((jrunner *)ud)->src, source, profile_id, event);
}

int jr_on_batch(void *ud, const char *profile_id, json_t **profile, size_t n,
                const schema_entity *const *ents, const schema_field *const *cols,
                const baton_value *vals, size_t limit, json_t **rows, char *err, size_t errlen)
{
    return jsource_batch(((jrunner *)ud)->src, profile_id, profile, n, ents, cols, vals, limit,
                         rows, err, errlen);
}

int jr_on_aggs(void *ud, const char *profile_id, json_t **profile, size_t n, jagg_read *reads,
               int64_t now, char *err, size_t errlen)
{
    return jsource_aggs(((jrunner *)ud)->src, profile_id, profile, n, reads, now, err, errlen);
}

json_t *jr_on_rows(void *ud, const schema_entity *ent, const schema_field *col,
                   const baton_value *v, size_t limit, char *err, size_t errlen)
{
    return jsource_rows(((jrunner *)ud)->src, ent, col, v, limit, err, errlen);
}

/* The statuses of sends handed after the last commit (the delivery log's
 * rows commit with them, in the store's group transaction the engine's is
 * part of) and the results the action workers brought back. */
static int step_results(jrunner *r, const jwork *w, int64_t now, char *err, size_t errlen)
{
    for (smark *m = w->marks; m; m = m->next)
        if (jengine_send_status(&r->eng, m->key, m->status, err, errlen))
            return -1;
    for (adone *d = w->done; d; d = d->next)
        if (jengine_action_done(&r->eng, d->key, d->ok, d->response, d->reason, now, err, errlen))
            return -1;
    return 0;
}

/* Each event to the journeys it enters, exits or wakes; the inbox's
 * watermark moves past the last one in the same transaction. */
static int route_events(jrunner *r, const jwork *w, int64_t now, char *err, size_t errlen)
{
    int64_t last_seq = 0;
    for (qitem *it = w->items; it; it = it->next) {
        if (jengine_event(&r->eng, &it->ev, now, err, errlen))
            return -1;
        last_seq = it->seq;
    }
    if (last_seq && jengine_set_watermark(&r->eng, last_seq, err, errlen))
        return -1;
    return 0;
}

static int fire_timers(jrunner *r, int64_t now, char *err, size_t errlen)
{
    size_t fired;
    return jengine_fire(&r->eng, now, 20000, &fired, err, errlen);
}

int jr_route(jrunner *r, const jwork *w)
{
    char err[512] = "";
    int64_t now = jr_now_ms(r);
    if (jengine_begin(&r->eng, err, sizeof err))
        goto fail_nobegin;
    r->last_txn = deadline_now_ms();
    /* pause, resume, close: `baton journey pause NAME` wrote it */
    if (jengine_control_refresh(&r->eng, now, err, sizeof err))
        goto fail;
    if (step_results(r, w, now, err, sizeof err) || route_events(r, w, now, err, sizeof err) ||
        fire_timers(r, now, err, sizeof err))
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
    jr_free_txn_work(r);
    log_msg(BATON_LOG_ERROR, "journey", "%s; retrying the batch", err);
    return -1;
}
