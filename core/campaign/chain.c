/* Chaining: an `end` with `start = "other"; parameters = { ... };` starts
 * that campaign once the run is done, when rows reached the end. Checked
 * like a run's parameters (the other campaign's declarations) and for
 * cycles among the campaigns (a -> b -> a), at file:line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/exit.h"
#include "base/mem.h"
#include "campaign/act_host.h"
#include "campaign/chain.h"
#include "campaign/engine.h"
#include "campaign/report.h"

/* parameters = { discount = 20; tier = "gold"; } as a JSON object; NULL
 * with err when a value is not a scalar. */
static json_t *params_json(config_setting_t *g, char *err, size_t errlen)
{
    json_t *o = json_object();
    for (int i = 0; g && i < config_setting_length(g); i++) {
        config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
        const char *k = config_setting_name(m);
        json_t *v = NULL;
        switch (config_setting_type(m)) {
        case CONFIG_TYPE_INT: v = json_integer(config_setting_get_int(m)); break;
        case CONFIG_TYPE_INT64: v = json_integer(config_setting_get_int64(m)); break;
        case CONFIG_TYPE_FLOAT: v = json_real(config_setting_get_float(m)); break;
        case CONFIG_TYPE_BOOL: v = json_boolean(config_setting_get_bool(m)); break;
        case CONFIG_TYPE_STRING: v = json_string(config_setting_get_string(m)); break;
        default:
            snprintf(err, errlen, "parameters.%s must be a number, true or false, or a string", k);
            json_decref(o);
            return NULL;
        }
        json_object_set_new(o, k, v);
    }
    return o;
}

/* The campaigns the ends of file start, in order. A new array. */
static json_t *starts_of(const char *file)
{
    json_t *l = json_array();
    config_t lc;
    config_init(&lc);
    if (config_read_file(&lc, file)) {
        config_setting_t *acts = config_lookup(&lc, "campaign.activities");
        for (int i = 0; acts && i < config_setting_length(acts); i++) {
            config_setting_t *g = config_setting_get_elem(acts, (unsigned)i);
            const char *type = NULL, *start = NULL;
            if (config_setting_lookup_string(g, "type", &type) && !strcmp(type, "end") &&
                config_setting_lookup_string(g, "start", &start))
                json_array_append_new(l, json_string(start));
        }
    }
    config_destroy(&lc);
    return l;
}

/* Depth first from `name` along starts: 1 when `root` is reached, with
 * the way there appended to path (" -> b -> a"). */
static int reaches(app *a, const char *name, const char *root, json_t *seen, buf *path)
{
    if (!strcmp(name, root))
        return 1;
    if (json_object_get(seen, name))
        return 0;
    json_object_set_new(seen, name, json_true());
    char *file = campaign_file_named(a, name);
    if (!file)
        return 0;
    json_t *l = starts_of(file);
    free(file);
    int hit = 0;
    size_t i;
    json_t *v;
    json_array_foreach(l, i, v)
    {
        size_t mark = path->len;
        buf_addf(path, " -> %s", json_string_value(v));
        if (reaches(a, json_string_value(v), root, seen, path)) {
            hit = 1;
            break;
        }
        path->len = mark;
        path->data[mark] = '\0';
    }
    json_decref(l);
    return hit;
}

int camp_chain_check(baton_activity_ctx *x)
{
    camp_env *e = x->env;
    const char *start = ah_setting_string(x, "start");
    int has_params = ah_setting_count(x, "parameters") >= 0;
    if (!start) {
        if (has_params) {
            ah_error(x, "parameters",
                     "parameters are those of the campaign `start` names: set "
                     "start = \"NAME\"");
            return -1;
        }
        return 0;
    }
    char *file = campaign_file_named(e->a, start);
    if (!file) { /* camp_locate says it, with the nearest name */
        diag ld;
        diag_init(&ld);
        free(camp_locate(e->a, start, &ld));
        ah_error(x, "start", "start = \"%s\": %s", start,
                 ld.n ? ld.v[0].msg : "no campaign of that name in the configured campaigns");
        diag_free(&ld);
        return -1;
    }
    int rc = 0;
    char err[256];
    json_t *given =
        params_json(campaign_setting(e->c->acts[x->idx].group, "parameters"), err, sizeof err);
    if (!given) {
        ah_error(x, "parameters", "%s", err);
        rc = -1;
    }
    /* the other campaign's declarations: values it does not declare, of
     * another type, or missing without a default */
    campaign other;
    diag od;
    diag_init(&od);
    int parsed = rc == 0;
    if (parsed && campaign_parse(&other, file, &od) == 0) {
        json_t *p = campaign_params_check(&other, given, 1);
        if (p) {
            buf m;
            buf_init(&m);
            const char *what[] = {"unknown", "mistyped", "missing"};
            for (size_t k = 0; k < 3; k++) {
                size_t i;
                json_t *v;
                json_array_foreach(json_object_get(p, what[k]), i, v)
                {
                    if (k == 1)
                        buf_addf(&m, "%s%s must be a %s", m.len ? "; " : "",
                                 json_string_value(json_object_get(v, "name")),
                                 json_string_value(json_object_get(v, "type")));
                    else
                        buf_addf(&m, "%s%s %s", m.len ? "; " : "", json_string_value(v),
                                 k == 0 ? "is not a parameter of it" : "has no default: give it");
                }
            }
            ah_error(x, "parameters", "start = \"%s\": parameters: %s", start, m.data);
            buf_free(&m);
            json_decref(p);
            rc = -1;
        }
    }
    if (parsed)
        campaign_free(&other);
    diag_free(&od);
    json_decref(given);
    free(file);
    /* a chain back to this campaign would start runs without end */
    buf path;
    buf_init(&path);
    buf_addf(&path, "%s -> %s", e->c->name, start);
    json_t *seen = json_object();
    if (rc == 0 && reaches(e->a, start, e->c->name, seen, &path)) {
        ah_error(x, "start", "the campaigns form a cycle: %s", path.data);
        rc = -1;
    }
    json_decref(seen);
    buf_free(&path);
    return rc;
}

json_t *camp_chain_pending(const camp_env *e)
{
    json_t *l = json_array();
    for (size_t i = 0; i < e->c->nacts; i++) {
        const camp_activity *a = &e->c->acts[i];
        if (strcmp(a->type_name, "end") != 0)
            continue;
        config_setting_t *s = config_setting_get_member(a->group, "start");
        if (!s || config_setting_type(s) != CONFIG_TYPE_STRING)
            continue;
        int64_t rows = 0;
        for (size_t j = 0; j < a->ninputs; j++) {
            const camp_input *in = &a->inputs[j];
            const act_state *p = in->act >= 0 ? &e->s[in->act] : NULL;
            if (p && p->counts && in->out >= 0 && p->counts[in->out] > 0)
                rows += p->counts[in->out];
        }
        if (rows == 0)
            continue; /* no row reached this end: it starts nothing */
        char err[256];
        json_t *params =
            params_json(config_setting_get_member(a->group, "parameters"), err, sizeof err);
        json_array_append_new(l,
                              json_pack("{s:s, s:s, s:o, s:I}", "end", a->id, "start",
                                        config_setting_get_string(s), "parameters",
                                        params ? params : json_object(), "rows", (json_int_t)rows));
    }
    return l;
}

int camp_chain_start(app *a, act_registry *reg, const char *from, int64_t run, json_t *pending,
                     const camp_run_opts *o, diag *d)
{
    int rc = EXIT_OK;
    size_t i;
    json_t *p;
    json_array_foreach(pending, i, p)
    {
        const char *name = json_string_value(json_object_get(p, "start"));
        char *file = campaign_file_named(a, name);
        if (!file) {
            diag_error(d, NULL, 0,
                       "campaign %s: run %lld: end '%s' starts campaign %s, which is "
                       "no longer configured",
                       from, (long long)run, json_string_value(json_object_get(p, "end")), name);
            rc = EXIT_RUNTIME;
            continue;
        }
        if (o->progress)
            fprintf(o->progress, "campaign %s: run %lld: end '%s' starts campaign %s\n", from,
                    (long long)run, json_string_value(json_object_get(p, "end")), name);
        camp_run_opts co = {.trigger = "chain",
                            .progress = o->progress,
                            .dispatcher_for = o->dispatcher_for,
                            .dispatcher_ud = o->dispatcher_ud,
                            .store = o->store,
                            .params = json_object_get(p, "parameters"),
                            .now = o->now};
        int r = campaign_run_file(a, reg, file, &co, d);
        if (r > rc)
            rc = r;
        free(file);
    }
    return rc;
}
