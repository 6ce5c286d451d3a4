/* The alert activity: a message to an operator (`to`, on a configured
 * channel) with the run's counts so far, when the run reaches it, and
 * one more from every alert of the campaign when the run fails. It goes
 * the one delivery path (delivery_send): the delivery log keeps it under
 * <campaign>/<run>/<alert id>[/failed], so a resumed run sends none twice. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/mem.h"
#include "base/record.h"
#include "campaign/act_host.h"
#include "campaign/alert.h"
#include "campaign/engine.h"
#include "delivery/dispatch.h"
#include "delivery/send.h"

static const char *setting(const camp_activity *a, const char *key)
{
    const char *v = NULL;
    config_setting_lookup_string(a->group, key, &v);
    return v;
}

static int alert_check(void *state, baton_activity_ctx *x)
{
    camp_env *e = x->env;
    camp_activity *a = &e->c->acts[x->idx];
    if (ah_input_count(x) < 1) {
        ah_error(x, NULL, "an alert takes one input or more: it is sent once they are done");
        return -1;
    }
    conf_use *use;
    const char *chname;
    int line;
    if (camp_send_channel(e, a, &use, &chname, &line))
        return -1;
    instance *inst = app_find(e->a, "channels", chname);
    if (!inst || !instance_channel(inst)) {
        ah_error(x, "channel", "channel '%s' is not loaded", chname);
        return -1;
    }
    if (!instance_channel(inst)->parts) {
        ah_error(x, "channel",
                 "channel '%s' has no content parts (it exports the columns of a send): an "
                 "alert needs a channel with a text, such as email or sms",
                 chname);
        return -1;
    }
    const char *to = setting(a, "to");
    if (!to || !*to) {
        ah_error(x, "to", "to must be the operator's address on channel '%s' (\"ops@example.com\")",
                 chname);
        return -1;
    }
    return 0;
}

/* "campaign winback: run 12 failed: ..." and a line per activity done. */
static void summary(const camp_env *e, const char *status, buf *subject, buf *text)
{
    buf_addf(subject, "baton: campaign %s, run %lld: %s", e->c->name, (long long)e->run_id, status);
    buf_addf(text, "campaign %s, run %lld: %s\n\n", e->c->name, (long long)e->run_id, status);
    /* in file order: a run executes one activity at a time through
     * c->order, which then holds only the one running */
    for (size_t i = 0; i < e->c->nacts; i++) {
        const camp_activity *a = &e->c->acts[i];
        const act_state *s = &e->s[i];
        if (!s->done)
            continue;
        buf_addf(text, "%-16s %-16s", a->id, a->type_name);
        for (size_t j = 0; s->counts && j < a->nouts; j++)
            buf_addf(text, " %s=%lld", a->outs[j].transition, (long long)s->counts[j]);
        if (a->type && a->type->send)
            buf_addf(text, " sent=%lld failed=%lld no_address=%lld no_consent=%lld",
                     (long long)s->sent, (long long)s->failed, (long long)s->no_address,
                     (long long)s->no_consent);
        buf_addc(text, '\n');
    }
}

typedef struct parts_ctx {
    const char *subject, *text;
    const char *const *names;
} parts_ctx;

/* subject and title: the first line; text and body: the whole text;
 * html: the text, escaped, as <pre>; other parts (url, data,
 * list_unsubscribe) stay empty. */
static int render(void *ud, size_t i, buf *out, char *err, size_t errlen)
{
    parts_ctx *p = ud;
    const char *n = p->names[i];
    if (!strcmp(n, "subject") || !strcmp(n, "title"))
        buf_adds(out, p->subject);
    else if (!strcmp(n, "text") || !strcmp(n, "body"))
        buf_adds(out, p->text);
    else if (!strcmp(n, "html")) {
        buf_adds(out, "<pre>");
        for (const char *c = p->text; *c; c++)
            buf_adds(out, *c == '<'   ? "&lt;"
                          : *c == '>' ? "&gt;"
                          : *c == '&' ? "&amp;"
                                      : (char[2]){*c, 0});
        buf_adds(out, "</pre>");
    }
    return 0;
}

static int alert_send(camp_env *e, size_t idx, const char *suffix, const char *status, char *err,
                      size_t errlen)
{
    const camp_activity *a = &e->c->acts[idx];
    const char *chname = setting(a, "channel"), *to = setting(a, "to");
    instance *chan = chname ? app_find(e->a, "channels", chname) : NULL;
    const baton_channel_ops *ops = chan ? instance_channel(chan) : NULL;
    if (!ops || !to) {
        snprintf(err, errlen, "channel '%s' is not loaded", chname ? chname : "");
        return -1;
    }
    instance *inst = chan;
    dispatcher *shared = e->dispatcher_for && !e->dry_run
                             ? e->dispatcher_for(e->dispatcher_ud, chname, &inst)
                             : NULL;
    if (!shared && instance_start(chan) != 0) {
        snprintf(err, errlen, "channel '%s': start failed: %.300s", chname, chan->error);
        return -1;
    }
    dispatch_opts o = {.dry_run = e->dry_run, .caps = &e->a->conf};
    dispatcher *d = shared ? shared : dispatch_open(chan, e->st, &o, err, errlen);
    if (!d)
        return -1;
    buf subject, text;
    buf_init(&subject);
    buf_init(&text);
    summary(e, status, &subject, &text);
    /* the operator is the row: the channel's address field holds `to` */
    record *row = record_new();
    const channel_settings *cs = &chan->host.channel;
    record_set_string(row, cs->address ? cs->address : "recipient", to);
    if (cs->consent) {
        baton_value yes = {.type = BATON_T_BOOL, .v.b = 1};
        record_set(row, cs->consent, &yes);
    }
    size_t nparts = 0;
    while (ops->parts && ops->parts[nparts])
        nparts++;
    buf *scratch = xcalloc(nparts + 1, sizeof *scratch);
    parts_ctx pc = {subject.data, text.data, ops->parts};
    char *key = xasprintf("%s/%lld/%s%s", e->c->name, (long long)e->run_id, a->id, suffix);
    send_req r = {.d = d,
                  .channel = shared ? inst : chan,
                  .key = key,
                  .row = row,
                  .nparts = nparts,
                  .part_names = ops->parts,
                  .render = render,
                  .render_ud = &pc,
                  .scratch = scratch,
                  .wait_ms = -1,
                  .origin = "campaign",
                  .origin_name = e->c->name,
                  .node = a->id};
    send_outcome out = delivery_send(&r, err, errlen);
    dispatch_flush(d, -1);
    if (!shared)
        dispatch_close(d, 1, 60000);
    int rc = 0;
    if (out == SEND_NO_ADDRESS || out == SEND_INVALID || out == SEND_FULL || out == SEND_CLOSED) {
        if (!err[0])
            snprintf(err, errlen, "the alert to %s was not sent", to);
        rc = -1;
    }
    for (size_t i = 0; i < nparts; i++)
        buf_free(&scratch[i]);
    free(scratch);
    free(key);
    record_free(row);
    buf_free(&subject);
    buf_free(&text);
    return rc;
}

static int alert_run(void *state, baton_activity_ctx *x)
{
    camp_env *e = x->env;
    if (e->plan || e->nproof)
        return 0; /* a plan sends nothing; proofs go to their addresses only */
    char err[512] = "";
    if (alert_send(e, x->idx, "", "running", err, sizeof err) != 0) {
        ah_error(x, "to", "alert: %s", err);
        return -1;
    }
    return 0;
}

void camp_alert_failed(camp_env *e)
{
    if (e->plan || e->nproof)
        return;
    char *status = xasprintf("failed: %s", e->error);
    for (size_t i = 0; i < e->c->nacts; i++) {
        const camp_activity *a = &e->c->acts[i];
        if (!a->checked || strcmp(a->type_name, "alert") != 0)
            continue;
        char err[512] = "";
        if (alert_send(e, i, "/failed", status, err, sizeof err) != 0)
            fprintf(stderr, "baton campaign run: %s:%d: activity '%s': the failure alert: %s\n",
                    e->c->file, a->line, a->id, err);
    }
    free(status);
}

static const baton_config_key alert_keys[] = {{.name = "channel",
                                               .type = BATON_CFG_STRING,
                                               .required = 1,
                                               .help = "a configured, enabled channel"},
                                              {.name = "to",
                                               .type = BATON_CFG_STRING,
                                               .required = 1,
                                               .help = "the operator's address on that channel"},
                                              {0}};

const baton_activity_type camp_alert_type = {
    .size = sizeof(baton_activity_type),
    .name = "alert",
    .help = "notify an operator with the run's counts (and again if the run fails)",
    .keys = alert_keys,
    .check = alert_check,
    .run = alert_run,
};
