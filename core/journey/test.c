/* journey/test — journey test over the configuration's data; see test.h. */
#include "journey/test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/timefmt.h"
#include "config/cfgfile.h"
#include "delivery/dispatch.h"
#include "config/keymap.h"
#include "journey/sim.h"
#include "scope/source.h"

typedef struct jtest {
    app *a;
    jsource *src;
    json_t *mocks;   /* {"lookups": {...}, "actions": {...}}, or NULL */
    json_t *trace;   /* profile -> {"steps": [...], "sends": [...]} */
    json_t *notes;   /* what the run could not do faithfully, once each */
    json_t *refused; /* [{"profile", "reason", "event"}] */
} jtest;

static json_t *trace_of(jtest *t, const char *profile)
{
    json_t *p = json_object_get(t->trace, profile);
    if (!p) {
        p = json_pack("{s:[], s:[]}", "steps", "sends");
        json_object_set_new(t->trace, profile, p);
    }
    return p;
}

static json_t *ts_json(int64_t ms)
{
    char ts[21];
    timestamp_format(ms / 1000, ts);
    return json_string(ts);
}

static void note(jtest *t, const char *msg)
{
    size_t i;
    json_t *v;
    json_array_foreach(t->notes, i, v) if (!strcmp(json_string_value(v), msg)) return;
    json_array_append_new(t->notes, json_string(msg));
}

static int t_enabled(void *ud, const char *channel)
{
    jtest *t = ud;
    conf_use *u = t->a ? conf_find(&t->a->conf, "channels", channel) : NULL;
    return !u || u->enabled;
}

static json_t *t_profile(void *ud, const char *id)
{
    jtest *t = ud;
    return t->src ? jsource_profile(t->src, id) : NULL;
}

static int t_profile_exists(void *ud, const char *id)
{
    jtest *t = ud;
    return t->src ? jsource_profile_exists(t->src, id) : -1;
}

static void t_not_entered(void *ud, const journey *j, const char *profile, json_t *event,
                          const char *reason)
{
    jtest *t = ud;
    json_array_append_new(t->refused, json_pack("{s:s, s:s, s:O}", "profile", profile, "reason",
                                                reason, "event", event));
}

/* No network: a lookup reads its mock, or null (said once in notes). */
static json_t *t_lookup(void *ud, const char *source, const char *id, json_t *event)
{
    jtest *t = ud;
    json_t *m = json_object_get(json_object_get(t->mocks, "lookups"), source);
    if (json_is_object(m))
        return json_deep_copy(m);
    char msg[300];
    snprintf(msg, sizeof msg, "lookup '%s' has no mock (--mocks): read as null", source);
    note(t, msg);
    return NULL;
}

/* An action's answer: its mock by node id, else by action name, else {}. */
static json_t *t_action(void *ud, const jsend_req *r)
{
    jtest *t = ud;
    json_t *acts = json_object_get(t->mocks, "actions");
    json_t *m = json_object_get(acts, r->node->id);
    if (!m && r->node->action)
        m = json_object_get(acts, r->node->action);
    if (r->node->type == JN_ACTION && !json_is_object(m)) {
        char msg[300];
        snprintf(msg, sizeof msg, "action node '%s' has no mock (--mocks): its answer is {}",
                 r->node->id);
        note(t, msg);
    }
    return json_is_object(m) ? json_deep_copy(m) : NULL;
}

static void t_step(void *ud, const journey *j, const char *profile, const char *node, int64_t now)
{
    jtest *t = ud;
    json_array_append_new(json_object_get(trace_of(t, profile), "steps"),
                          json_pack("{s:s, s:o}", "node", node, "at", ts_json(now)));
}

static json_t *t_rows(void *ud, const struct schema_entity *ent, const struct schema_field *col,
                      const baton_value *v, size_t limit, char *err, size_t errlen)
{
    jtest *t = ud;
    return jsource_rows(t->src, ent, col, v, limit, err, errlen);
}

static int t_aggs(void *ud, const char *profile_id, json_t **profile, size_t n, jagg_read *reads,
                  int64_t now, char *err, size_t errlen)
{
    jtest *t = ud;
    return jsource_aggs(t->src, profile_id, profile, n, reads, now, err, errlen);
}

static int t_batch(void *ud, const char *profile_id, json_t **profile, size_t n,
                   const struct schema_entity *const *ents, const struct schema_field *const *cols,
                   const baton_value *vals, size_t limit, json_t **rows, char *err, size_t errlen)
{
    jtest *t = ud;
    return jsource_batch(t->src, profile_id, profile, n, ents, cols, vals, limit, rows, err,
                         errlen);
}

static int truthy(json_t *v)
{
    return json_is_true(v) || (json_is_integer(v) && json_integer_value(v)) ||
           (json_is_string(v) &&
            (!strcmp(json_string_value(v), "true") || !strcmp(json_string_value(v), "1")));
}

/* A send: rendered as the channel would get it, with what consent, the
 * address and quiet hours decide (frequency caps need the delivery log:
 * not simulated, and said so). Nothing is delivered. */
static int t_send(void *ud, const jsend_req *q, char *status, size_t statuslen)
{
    jtest *t = ud;
    const jnode *n = q->node;
    json_t *prof = t_profile(t, q->profile);
    conf_use *u = t->a ? conf_find(&t->a->conf, "channels", n->channel) : NULL;
    const char *addr_key = NULL, *consent_key = NULL;
    if (u && u->group) {
        config_setting_lookup_string(u->group, "address", &addr_key);
        config_setting_lookup_string(u->group, "consent", &consent_key);
    }
    json_t *d = json_object();
    const char *outcome = "would be sent";
    if (consent_key) {
        int ok = truthy(json_object_get(prof, consent_key));
        json_object_set_new(d, "consent",
                            json_pack("{s:s, s:b}", "field", consent_key, "given", ok));
        if (!ok)
            outcome = "skipped: no consent";
    }
    if (addr_key) {
        json_t *a = json_object_get(prof, addr_key);
        int ok = json_is_string(a) && json_string_length(a) > 0;
        json_object_set_new(d, "address", ok ? json_incref(a) : json_null());
        if (!ok && !strncmp(outcome, "would", 5))
            outcome = "skipped: no address";
    }
    int64_t until = 0;
    const char *tzf = t->a ? t->a->conf.profiles_tz : NULL;
    const char *tz = tzf ? json_string_value(json_object_get(prof, tzf)) : NULL;
    if (t->a && dispatch_quiet_hours(&t->a->conf, q->now_ms / 1000, tz, &until)) {
        json_object_set_new(d, "quiet_hours",
                            json_pack("{s:b, s:o}", "in", 1, "until", ts_json(until * 1000)));
        if (!strncmp(outcome, "would", 5))
            outcome = "deferred";
    } else {
        json_object_set_new(d, "quiet_hours", json_pack("{s:b}", "in", 0));
    }
    json_object_set_new(d, "caps", json_string("not simulated (they count the delivery log)"));
    jscope sc = {.profile_id = q->profile,
                 .event = q->event,
                 .results = q->results,
                 .now_ms = q->now_ms,
                 .profile = t_profile,
                 .lookup = t_lookup,
                 .rows = t->src ? t_rows : NULL,
                 .batch = t->src ? t_batch : NULL,
                 .ud = t,
                 .profile_row = prof,
                 .profile_loaded = 1};
    json_t *parts = json_object();
    for (size_t i = 0; i < n->nparts; i++) {
        buf out;
        buf_init(&out);
        char err[256] = "";
        if (n->parts[i].tmpl && jtemplate_render(n->parts[i].tmpl, &sc, &out, err, sizeof err)) {
            json_object_set_new(parts, n->parts[i].name, json_null());
            json_object_set_new(d, "render_error", json_string(err));
            outcome = "failed: render";
        } else {
            json_object_set_new(
                parts, n->parts[i].name,
                json_string(n->parts[i].tmpl ? (out.data ? out.data : "") : n->parts[i].value));
        }
        buf_free(&out);
    }
    jscope_release(&sc); /* drops prof */
    json_array_append_new(json_object_get(trace_of(t, q->profile), "sends"),
                          json_pack("{s:s, s:s, s:o, s:o, s:s, s:o}", "node", n->id, "channel",
                                    n->channel, "at", ts_json(q->now_ms), "content", parts,
                                    "outcome", outcome, "decided", d));
    snprintf(status, statuslen, "%s", strncmp(outcome, "would", 5) ? outcome : "simulated");
    return 0;
}

int journey_test_run(app *a, journey *j, const char *events_path, int64_t until_ms, json_t **out,
                     diag *d, char *err, size_t errlen)
{
    return journey_test_run_mocks(a, j, events_path, until_ms, NULL, out, d, err, errlen);
}

int journey_test_run_mocks(app *a, journey *j, const char *events_path, int64_t until_ms,
                           json_t *mocks, json_t **out, diag *d, char *err, size_t errlen)
{
    *out = NULL;
    jtest t = {a, NULL, mocks, json_object(), json_array(), json_array()};
    jengine_ops ops = {0};
    ops.ud = &t;
    ops.lookup = t_lookup;
    ops.action_result = t_action;
    ops.step = t_step;
    ops.send = t_send;
    ops.not_entered = t_not_entered;
    if (a) {
        size_t before = d->errors;
        t.src = jsource_open(a, d);
        if (d->errors != before) {
            jsource_close(t.src);
            json_decref(t.trace);
            json_decref(t.notes);
            json_decref(t.refused);
            return -1;
        }
        ops.profile = t_profile;
        ops.profile_exists = t_profile_exists;
        ops.rows = t_rows;
        ops.batch = t_batch;
        ops.aggs = t_aggs;
        ops.channel_enabled = t_enabled;
    }
    int rc = journey_simulate(j, &ops, events_path, until_ms, out, d, err, errlen);
    if (*out) {
        const char *pid;
        json_t *p;
        json_object_foreach(json_object_get(*out, "profiles"), pid, p)
        {
            json_t *tr = json_object_get(t.trace, pid);
            json_object_set(p, "steps", tr ? json_object_get(tr, "steps") : json_array());
            json_object_set(p, "sends", tr ? json_object_get(tr, "sends") : json_array());
        }
        /* a profile the source lacks is a dead letter, as in serve */
        json_object_set_new(*out, "dead_letters",
                            json_integer(json_integer_value(json_object_get(*out, "dead_letters")) +
                                         (json_int_t)json_array_size(t.refused)));
        json_object_set(*out, "not_entered", t.refused);
        json_object_set(*out, "notes", t.notes);
    }
    json_decref(t.trace);
    json_decref(t.notes);
    json_decref(t.refused);
    jsource_close(t.src);
    return rc || d->errors ? -1 : 0;
}

/* The keys each node type takes (journey/parse.c checks them). */
#define NEXT                                                                                       \
    {                                                                                              \
        .name = "next", .type = BATON_CFG_STRING, .required = 1, .help = "the node after this one" \
    }

static const baton_config_key k_condition[] = {
    {.name = "branches",
     .type = BATON_CFG_LIST,
     .required = 1,
     .help = "( { when = \"profile.tier == 'gold'\"; next = \"vip\"; } ): the first true wins"},
    {.name = "otherwise",
     .type = BATON_CFG_STRING,
     .required = 1,
     .help = "the node when no branch is true"},
    {0}};
static const baton_config_key k_split[] = {
    {.name = "branches",
     .type = BATON_CFG_LIST,
     .required = 1,
     .help = "( { name = \"a\"; percent = 50; next = \"mail_a\"; } ): stable per profile"},
    {0}};
static const baton_config_key k_wait[] = {
    {.name = "duration", .type = BATON_CFG_DURATION, .help = "\"1h\" (or until)"},
    {.name = "until", .type = BATON_CFG_STRING, .help = "an expression giving a timestamp"},
    NEXT,
    {0}};
static const baton_config_key k_wait_event[] = {
    {.name = "event", .type = BATON_CFG_STRING, .required = 1, .help = "the event type awaited"},
    {.name = "filter", .type = BATON_CFG_STRING, .help = "the event must make this true"},
    {.name = "timeout", .type = BATON_CFG_DURATION, .help = "how long to wait at most"},
    {.name = "on_event",
     .type = BATON_CFG_STRING,
     .required = 1,
     .help = "the node when the event comes"},
    {.name = "on_timeout", .type = BATON_CFG_STRING, .help = "the node after the timeout"},
    {0}};
static const baton_config_key k_send[] = {
    {.name = "channel", .type = BATON_CFG_STRING, .required = 1, .help = "a configured channel"},
    {.name = "subject", .type = BATON_CFG_TEMPLATE, .help = "email: the subject"},
    {.name = "text", .type = BATON_CFG_TEMPLATE, .help = "the text part (or text_file)"},
    {.name = "html", .type = BATON_CFG_TEMPLATE, .help = "email: the HTML part (or html_file)"},
    {.name = "title", .type = BATON_CFG_TEMPLATE, .help = "push: the title"},
    {.name = "body", .type = BATON_CFG_TEMPLATE, .help = "push: the body"},
    NEXT,
    {0}};
static const baton_config_key k_action[] = {
    {.name = "action", .type = BATON_CFG_STRING, .required = 1, .help = "a configured action"},
    NEXT,
    {.name = "on_error",
     .type = BATON_CFG_STRING,
     .help = "the node when the action fails (default: the instance fails)"},
    {0}};
static const baton_config_key k_end[] = {{0}};
static const baton_config_key k_jump[] = {
    {.name = "journey",
     .type = BATON_CFG_STRING,
     .required = 1,
     .help = "the journey the profile enters (this instance ends), carrying the entry event"},
    {0}};
static const baton_config_key k_update_profile[] = {
    {.name = "set",
     .type = BATON_CFG_LIST,
     .required = 1,
     .help = "( { field = \"tier\"; value = \"'silver'\"; } ): written by the profile's key; "
             "the profiles source must say writable = true"},
    NEXT,
    {0}};

json_t *journey_describe(void)
{
    static const struct {
        const char *name, *help;
        const baton_config_key *keys;
    } types[] = {
        {"condition", "ordered branches, the first true wins, otherwise", k_condition},
        {"split", "percentage branches, stable per profile", k_split},
        {"wait", "a duration, or until a timestamp", k_wait},
        {"wait_event", "an event, with an optional filter and timeout", k_wait_event},
        {"send", "a message on a channel", k_send},
        {"action", "a custom action (a third-party call)", k_action},
        {"end", "the profile completes the journey", k_end},
        {"jump", "the profile leaves for another journey", k_jump},
        {"update_profile", "fields of the profile written in the profiles source",
         k_update_profile},
    };
    json_t *o = json_object();
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        json_t *t = json_object();
        json_object_set_new(t, "help", json_string(types[i].help));
        json_object_set_new(t, "keys", keymap_describe_json(types[i].keys));
        json_object_set_new(o, types[i].name, t);
    }
    return o;
}

size_t journey_check_text(app *a, const char *path, const char *text, size_t n, diag *d)
{
    size_t before = d->errors, first = d->n;
    char err[512], *tmp = NULL;
    if (cfgfile_scratch(path, text, n, &tmp, err, sizeof err) != 0) {
        diag_error(d, path, 0, "cannot check the text: %s", err);
        return d->errors - before;
    }
    journey *j = journey_load(tmp, a, d);
    journey_free(j);
    unlink(tmp);
    diag_rename(d, first, tmp, path);
    free(tmp);
    return d->errors - before;
}
