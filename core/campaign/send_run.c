/* The run half of send: read the input's rows with every name the
 * templates use (one SELECT, set work), render each message and hand it to
 * the channel's dispatcher, which owns rate limits, retries, caps, the
 * delivery log and idempotency. Keys are "<campaign>/<run>/<activity>/
 * <row key>", so a resumed run submits the same keys and nothing is
 * delivered twice. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "campaign/engine.h"
#include "campaign/history.h"
#include "delivery/dispatch.h"
#include "delivery/send.h"
#include "scope/cond.h"
#include "scope/source.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/record.h"
#include "lang/template.h"

typedef struct deliver_ctx {
    camp_env *e;
    size_t idx;
    send_plan *p;
    dispatcher *d;
    char *batch;
    record *row;
    expr_arena arena;
    buf *parts;
    int64_t rows, no_address, no_consent, suppressed, capped, dup, submitted, invalid;
    size_t proofs_left;
    char err[1024];
    int failed;
} deliver_ctx;

static void escape_key(buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '/')
            buf_adds(b, "%2F");
        else if (s[i] == '%')
            buf_adds(b, "%25");
        else
            buf_addc(b, s[i]);
    }
}

/* Linked rows from the campaign's data source, read while the send's
 * SELECT is still stepping (a nested statement on the same connection). */
static json_t *source_rows(void *ud, const schema_entity *ent, const schema_field *col,
                           const baton_value *v, size_t limit, char *err, size_t errlen)
{
    camp_env *e = ud;
    return jsource_read_rows(e->src, NULL, ent, col, v, limit, err, errlen);
}

/* How a send's parts render: through the journey scope when they read
 * linked rows (p->scoped), else straight from the row. */
typedef struct part_ctx {
    deliver_ctx *c;
    jscope sc;
    int render_failed;
} part_ctx;

static int render_part(void *ud, size_t i, buf *out, char *err, size_t errlen)
{
    part_ctx *pc = ud;
    deliver_ctx *c = pc->c;
    send_plan *p = c->p;
    expr_env env = expr_env_record(c->row, c->e->now);
    int rc = p->scoped ? jtemplate_render(p->parts[i], &pc->sc, out, err, errlen)
                       : template_render(p->parts[i], &env, &c->arena, out, err, errlen);
    pc->render_failed |= rc != 0;
    return rc;
}

static int one_row(void *ud, size_t n, const char *const *names, const baton_value *v)
{
    deliver_ctx *c = ud;
    send_plan *p = c->p;
    record_clear(c->row);
    for (size_t i = 0; i < p->npaths && i < n; i++)
        record_set(c->row, p->paths[i], &v[i]);
    /* address and consent where dispatch_recipient looks for them */
    const char *fields[2] = {p->addr_field, p->consent_field};
    for (size_t k = 0; k < 2; k++)
        if (fields[k] && p->npaths + k < n) {
            record_set(c->row, fields[k], &v[p->npaths + k]);
            char *pn = xasprintf("profile.%s", fields[k]);
            record_set(c->row, pn, &v[p->npaths + k]);
            free(pn);
        }
    const baton_value *pid = &v[p->npaths + 2], *tzv = &v[p->npaths + 3], *key = &v[n - 1];
    c->rows++;
    char pidbuf[128] = "";
    if (pid->type == BATON_T_STRING)
        snprintf(pidbuf, sizeof pidbuf, "%.*s", (int)pid->v.s.len, pid->v.s.ptr);
    else if (pid->type == BATON_T_INT)
        snprintf(pidbuf, sizeof pidbuf, "%lld", (long long)pid->v.i);
    char tzbuf[64] = "";
    if (tzv->type == BATON_T_STRING && tzv->v.s.len < sizeof tzbuf)
        snprintf(tzbuf, sizeof tzbuf, "%.*s", (int)tzv->v.s.len, tzv->v.s.ptr);
    /* the message's linked rows are read once, for all its parts, with
     * the bounds of a journey step (scope/cond.h) */
    part_ctx pc = {.c = c,
                   .sc = {.profile_id = pidbuf,
                          .now_ms = c->e->now * 1000,
                          .rows = source_rows,
                          .ud = c->e,
                          .record = c->row,
                          .record_prefix = p->record_prefix}};
    if (c->e->preview) {
        /* rendered as delivery_send would render it, handed to no channel */
        json_t *parts = json_object();
        int bad = 0;
        for (size_t i = 0; i < p->nparts && !bad; i++) {
            buf out;
            buf_init(&out);
            char rerr[512];
            if (render_part(&pc, i, &out, rerr, sizeof rerr) == 0)
                json_object_set_new(parts, p->part_names[i],
                                    json_stringn(out.data ? out.data : "", out.len));
            else {
                snprintf(c->err, sizeof c->err, "%s: %s", p->part_names[i], rerr);
                bad = 1;
            }
            buf_free(&out);
        }
        baton_value av = {.type = BATON_T_NULL};
        if (p->addr_field)
            record_get(c->row, p->addr_field, &av);
        json_array_append_new(c->e->preview, json_pack("{s:s, s:s, s:s, s:o, s:o}", "activity",
                                                       c->e->c->acts[c->idx].id, "channel",
                                                       p->channel, "profile", pidbuf, "recipient",
                                                       av.type == BATON_T_STRING
                                                           ? json_stringn(av.v.s.ptr, av.v.s.len)
                                                           : json_null(),
                                                       "parts", parts));
        jscope_release(&pc.sc);
        if (bad) {
            c->failed = 1;
            return 1;
        }
        return --c->proofs_left == 0; /* three messages of each send */
    }
    buf k;
    buf_init(&k);
    buf_addf(&k, "%s/", c->batch);
    if (key->type == BATON_T_STRING)
        escape_key(&k, key->v.s.ptr, key->v.s.len);
    else
        buf_addf(&k, "%lld", (long long)key->v.i);
    send_req r = {.d = c->d,
                  .channel = p->chan,
                  .key = k.data,
                  .profile_id = pidbuf,
                  .row = c->row,
                  .nparts = p->nparts,
                  .part_names = (const char *const *)p->part_names,
                  .render = render_part,
                  .render_ud = &pc,
                  .scratch = c->parts,
                  .wait_ms = -1,
                  .proofs = (const char *const *)c->e->proof,
                  .nproofs = c->e->nproof,
                  .origin = "campaign",
                  .origin_name = c->e->c->name,
                  .node = c->e->c->acts[c->idx].id,
                  .tz = tzbuf[0] ? tzbuf : NULL};
    send_outcome o = delivery_send(&r, c->err, sizeof c->err);
    jscope_release(&pc.sc);
    buf_free(&k);
    int stop = 0;
    switch (o) {
    case SEND_NO_ADDRESS: c->no_address++; break;
    case SEND_NO_CONSENT: c->no_consent++; break;
    case SEND_SUPPRESSED: c->suppressed++; break;
    case SEND_QUEUED:
    case SEND_DEFERRED: c->submitted += c->e->nproof ? (int64_t)c->e->nproof : 1; break;
    case SEND_CAPPED: c->capped++; break;
    case SEND_DUPLICATE: c->dup++; break;
    case SEND_INVALID:
        if (pc.render_failed) { /* a template that cannot render fails the activity */
            c->failed = 1;
            return 1;
        }
        c->invalid++;
        break;
    case SEND_FULL:
    case SEND_CLOSED:
        c->failed = 1;
        stop = 1;
        break;
    }
    if (c->e->nproof && o != SEND_NO_ADDRESS && o != SEND_NO_CONSENT && o != SEND_SUPPRESSED)
        stop = --c->proofs_left == 0;
    return stop;
}

int camp_send_deliver(camp_env *e, size_t idx)
{
    camp_activity *a = &e->c->acts[idx];
    act_state *s = &e->s[idx];
    send_plan *p = s->send;
    deliver_ctx c = {.e = e, .idx = idx, .p = p, .proofs_left = 3};
    char err[400];
    dispatch_opts o = {.dry_run = e->dry_run, .caps = &e->a->conf};
    /* serve already runs one dispatcher per channel: share it, and its
     * channel instance (batch_end goes to the instance that delivered) */
    instance *chan = p->chan;
    dispatcher *shared = e->dispatcher_for && !e->dry_run && !e->nproof
                             ? e->dispatcher_for(e->dispatcher_ud, p->channel, &chan)
                             : NULL;
    if (!shared) {
        chan = p->chan;
        if (instance_start(chan) != 0) {
            snprintf(e->error, sizeof e->error, "channel '%s': start failed: %s", p->channel,
                     chan->error);
            return -1;
        }
    }
    c.d = shared ? shared : dispatch_open(chan, e->st, &o, err, sizeof err);
    if (!c.d) {
        snprintf(e->error, sizeof e->error, "channel '%s': %s", p->channel, err);
        return -1;
    }
    c.batch = xasprintf("%s/%lld/%s", e->c->name, (long long)e->run_id, a->id);
    if (!e->dry_run && !e->nproof)
        history_send_started(e->st, e->run_id, a->id, s->would_send);
    c.row = record_new();
    expr_arena_init(&c.arena);
    c.parts = xcalloc(p->nparts + 1, sizeof *c.parts);
    expr_sql q;
    expr_sql_init(&q);
    int rc = camp_send_select(e, idx, &q, err, sizeof err);
    if (rc == 0)
        rc = camp_sql(e, q.sql.data, q.params, q.nparams, one_row, &c, err, sizeof err);
    if (rc != 0)
        snprintf(c.err, sizeof c.err, "%s", err);
    expr_sql_free(&q);
    dispatch_flush(c.d, -1);
    dispatch_stats st;
    dispatch_get_stats(c.d, &st);
    if (!shared)
        dispatch_close(c.d, 1, 60000);
    s->no_address = c.no_address;
    s->no_consent = c.no_consent;
    s->suppressed = c.suppressed;
    s->sent = (int64_t)st.sent;
    s->failed = (int64_t)st.failed + c.invalid;
    s->skipped = c.capped;
    /* the run's own figures are its rows in the delivery log: a shared
     * dispatcher's counters (serve) add up every run and journey since it
     * opened. Proofs and dry runs are not logged: theirs are this call's. */
    uint64_t counts[DISPATCH_NSTATUS] = {0};
    char *prefix = xasprintf("%s/", c.batch);
    int logged =
        !e->dry_run && !e->nproof && dispatch_log_counts(e->st, prefix, p->channel, counts) == 0;
    /* uncertain (may have gone out: a crash caught it on the wire, or the
     * provider never answered) is counted apart from failed */
    int64_t unsure = (int64_t)st.uncertain;
    if (logged) {
        s->sent = (int64_t)counts[DISPATCH_SENT];
        s->failed = (int64_t)counts[DISPATCH_FAILED] + c.invalid;
        s->skipped = (int64_t)counts[DISPATCH_CAPPED];
        unsure = (int64_t)counts[DISPATCH_UNCERTAIN];
    }
    /* a send none of whose messages is known to have gone out fails the
     * run, with the counts (the channel is down or refuses them all) */
    if (rc == 0 && !c.failed && logged && s->sent == 0 && s->failed + unsure > 0 &&
        counts[DISPATCH_QUEUED] + counts[DISPATCH_RETRY] + counts[DISPATCH_DEFERRED] == 0) {
        char why[256] = "";
        dispatch_log_reason(e->st, prefix, s->failed ? DISPATCH_FAILED : DISPATCH_UNCERTAIN, why,
                            sizeof why);
        char more[64] = "";
        if (unsure)
            snprintf(more, sizeof more, ", %lld uncertain", (long long)unsure);
        snprintf(c.err, sizeof c.err,
                 "%s: 0 sent, %lld failed, %lld capped, %lld no address, %lld no consent%s%s%s",
                 unsure ? "no message is known to have gone out" : "every message failed",
                 (long long)s->failed, (long long)s->skipped, (long long)c.no_address,
                 (long long)c.no_consent, more, why[0] ? "; the first: " : "", why);
        c.failed = 1;
    }
    if (rc == 0 && !c.failed && !e->dry_run && p->ops->batch_end) {
        /* proofs are not in the delivery log: their count is this run's */
        uint64_t total = e->nproof ? st.sent : counts[DISPATCH_SENT];
        if (p->ops->batch_end(chan->state, c.batch, total, err, sizeof err)) {
            snprintf(c.err, sizeof c.err, "channel '%s': finishing %s: %s", p->channel, c.batch,
                     err);
            c.failed = 1;
        }
    }
    free(prefix);
    if (e->progress && e->nproof)
        fprintf(e->progress, "  %-16s %-16s %lld proof(s) sent to %zu address(es), %lld failed\n",
                a->id, "send", (long long)st.sent, e->nproof, (long long)st.failed);
    else if (e->progress && e->dry_run)
        fprintf(e->progress,
                "  %-16s %-16s %lld rows: %lld rendered (dry run, nothing delivered), %lld capped, "
                "%lld no address, %lld no consent\n",
                a->id, "send", (long long)c.rows, (long long)st.dry_run, (long long)c.capped,
                (long long)c.no_address, (long long)c.no_consent);
    else if (e->progress) {
        char more[64] = "";
        if (unsure)
            snprintf(more, sizeof more, ", %lld uncertain", (long long)unsure);
        fprintf(e->progress,
                "%s  %-16s %-16s %lld rows: %lld sent, %lld already sent, %lld failed, %lld "
                "capped, %lld no address, %lld no consent, %lld suppressed%s\n",
                isatty(fileno(e->progress)) ? "\r" : "", a->id, "send", (long long)c.rows,
                (long long)st.sent, (long long)c.dup, (long long)s->failed, (long long)c.capped,
                (long long)c.no_address, (long long)c.no_consent, (long long)c.suppressed, more);
    }
    for (size_t i = 0; i < p->nparts; i++)
        buf_free(&c.parts[i]);
    free(c.parts);
    expr_arena_free(&c.arena);
    record_free(c.row);
    free(c.batch);
    if (rc != 0 || c.failed) {
        snprintf(e->error, sizeof e->error, "%s:%d: activity '%s': %s", e->c->file, a->line, a->id,
                 c.err[0] ? c.err : "delivery failed");
        return -1;
    }
    return 0;
}
