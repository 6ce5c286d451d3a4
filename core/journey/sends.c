/* journey/sends — the send stage: a send node passed in a transaction
 * goes to its channel's dispatcher, at once when nothing waits before it
 * (its delivery log row commits with the step), else after the commit,
 * oldest first (hand_sends). hand() renders the message and submits it. */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/mem.h"
#include "base/record.h"
#include "delivery/dispatch.h"
#include "delivery/send.h"
#include "journey/runner_impl.h"

static jchannel *channel(jrunner *r, const char *name)
{
    for (size_t i = 0; i < r->nch; i++)
        if (!strcmp(r->ch[i].name, name))
            return &r->ch[i];
    return NULL;
}

int jr_on_channel_enabled(void *ud, const char *name)
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
int jr_on_send(void *ud, const jsend_req *q, char *status, size_t statuslen)
{
    jrunner *r = ud;
    psend now = {.key = (char *)q->key,
                 .profile = (char *)q->profile,
                 .journey = (char *)q->j->name,
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
    p->journey = xstrdup(q->j->name);
    p->node = q->node;
    p->event = json_incref(q->event);
    p->results = q->results ? json_deep_copy(q->results) : NULL;
    p->next = r->txn_sends;
    r->txn_sends = p;
    return 1;
}

void jr_psend_free(psend *p)
{
    free(p->key);
    free(p->profile);
    free(p->journey);
    json_decref(p->event);
    json_decref(p->results);
    free(p);
}

void jr_mark(jrunner *r, const char *key, const char *status)
{
    smark *m = xcalloc(1, sizeof *m);
    m->key = xstrdup(key);
    m->status = xstrdup(status);
    m->next = r->marks;
    r->marks = m;
}

void jr_free_marks(smark *m)
{
    while (m) {
        smark *n = m->next;
        free(m->key);
        free(m->status);
        free(m);
        m = n;
    }
}

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

/* A send node's part: its template rendered in the instance's scope, or
 * its literal value. */
typedef struct part_ctx {
    const jnode *node;
    jscope sc;
} part_ctx;

static int render_part(void *ud, size_t i, buf *out, char *err, size_t errlen)
{
    part_ctx *pc = ud;
    const jnode *n = pc->node;
    if (!n->parts[i].tmpl) {
        buf_adds(out, n->parts[i].value ? n->parts[i].value : "");
        return 0;
    }
    return jtemplate_render(n->parts[i].tmpl, &pc->sc, out, err, errlen);
}

/* The profile's zone (profiles_timezone) for its quiet hours; NULL: the
 * dispatcher's default. */
static const char *profile_tz(const jrunner *r, const json_t *prof)
{
    const char *f = r->a ? r->a->conf.profiles_tz : NULL;
    return f ? json_string_value(json_object_get(prof, f)) : NULL;
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
    const jnode *n = p->node;
    part_ctx pc = {.node = n,
                   .sc = {.profile_id = p->profile,
                          .event = p->event,
                          .results = p->results,
                          .now_ms = jr_now_ms(r),
                          .profile = jsource_profile_cb,
                          .lookup = jsource_lookup_cb,
                          .rows = jsource_rows,
                          .batch = jsource_batch,
                          .ud = r->src,
                          .profile_row = prof,
                          .profile_loaded = 1}};
    /* the parts' buffers are kept from send to send (engine thread only:
     * dispatch_submit copied what it keeps) */
    if (r->nscratch < n->nparts + 1) {
        r->scratch = xrealloc(r->scratch, (n->nparts + 1) * sizeof *r->scratch);
        for (size_t i = r->nscratch; i < n->nparts + 1; i++)
            buf_init(&r->scratch[i]);
        r->nscratch = n->nparts + 1;
    }
    buf *scratch = r->scratch;
    const char *names_few[8];
    const char **names = n->nparts < 8 ? names_few : xcalloc(n->nparts + 1, sizeof *names);
    for (size_t i = 0; i < n->nparts; i++)
        names[i] = n->parts[i].name;
    send_req req = {.d = c->d,
                    .channel = c->inst,
                    .key = p->key,
                    .profile_id = p->profile,
                    .row = row,
                    .nparts = n->nparts,
                    .part_names = names,
                    .render = render_part,
                    .render_ud = &pc,
                    .scratch = scratch,
                    .wait_ms = 0,
                    .origin = "journey",
                    .origin_name = p->journey,
                    .node = n->id,
                    .tz = profile_tz(r, prof)};
    char err[256] = "";
    send_outcome o = delivery_send(&req, err, sizeof err);
    jscope_release(&pc.sc); /* also drops prof */
    if (names != names_few)
        free(names);
    record_free(row);
    if (o == SEND_FULL || o == SEND_CLOSED) /* closing: a reload; try again later */
        return 1;
    delivery_outcome_status(o, err, status, statuslen);
    *queued = o == SEND_QUEUED;
    if (o == SEND_NO_ADDRESS || o == SEND_NO_CONSENT || o == SEND_SUPPRESSED)
        return 0;
    pthread_mutex_lock(&r->mu);
    r->stats.sends_handed++;
    pthread_mutex_unlock(&r->mu);
    return 0;
}

/* Hand what waits (kept when a dispatcher was full, or left pending by an
 * earlier run), oldest first; stop at the first full dispatcher. Their
 * statuses are written in the next transaction. */
void jr_hand_sends(jrunner *r)
{
    psend *p;
    char status[300];
    int queued;
    while ((p = r->wait_sends)) {
        if (hand(r, p, status, sizeof status, &queued))
            break;
        jr_mark(r, p->key, status);
        r->wait_sends = p->next;
        jr_psend_free(p);
    }
}

/* After the commit and the hand: the batch's messages are all in their
 * dispatchers, and committed: no worker need linger for more of them. */
void jr_kick_sends(jrunner *r)
{
    for (size_t i = 0; i < r->nch; i++)
        if (r->ch[i].d)
            dispatch_kick(r->ch[i].d);
}

/* After the commit: what the transaction decided waits behind what was
 * kept before, oldest first. */
void jr_sends_commit(jrunner *r)
{
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
}

/* A send an earlier run left pending, at the end of the waiting ones. */
void jr_resume_send(jrunner *r, const char *key, const char *profile, const char *jname,
                    const jnode *node, json_t *event, json_t *results)
{
    psend *p = xcalloc(1, sizeof *p);
    p->key = xstrdup(key);
    p->profile = xstrdup(profile);
    p->journey = xstrdup(jname);
    p->node = node;
    p->event = event ? json_incref(event) : json_object();
    p->results = results ? json_incref(results) : NULL;
    psend **wt = &r->wait_sends;
    while (*wt)
        wt = &(*wt)->next;
    *wt = p;
}
