/* journey/test — journey test over the configuration's data; see test.h. */
#include "journey/test.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/cfgfile.h"
#include "config/keymap.h"
#include "journey/sim.h"
#include "scope/source.h"

typedef struct jtest {
    app *a;
    jsource *src;
} jtest;

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

static json_t *t_lookup(void *ud, const char *source, const char *id, json_t *event)
{
    jtest *t = ud;
    return t->src ? jsource_lookup(t->src, source, id, event) : NULL;
}

static json_t *t_rows(void *ud, const struct schema_entity *ent, const struct schema_field *col,
                      const baton_value *v, size_t limit, char *err, size_t errlen)
{
    jtest *t = ud;
    return jsource_rows(t->src, ent, col, v, limit, err, errlen);
}

int journey_test_run(app *a, journey *j, const char *events_path, int64_t until_ms, json_t **out,
                     diag *d, char *err, size_t errlen)
{
    *out = NULL;
    jtest t = {a, NULL};
    jengine_ops ops = {0};
    ops.ud = &t;
    if (a) {
        size_t before = d->errors;
        t.src = jsource_open(a, d);
        if (d->errors != before) {
            jsource_close(t.src);
            return -1;
        }
        ops.profile = t_profile;
        ops.lookup = t_lookup;
        ops.rows = t_rows;
        ops.channel_enabled = t_enabled;
    }
    int rc = journey_simulate(j, &ops, events_path, until_ms, out, d, err, errlen);
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
