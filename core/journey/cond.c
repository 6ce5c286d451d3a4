#include "journey/cond.h"

#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "buf.h"
#include "config/keymap.h"
#include "expr/expr.h"
#include "mem.h"
#include "schema.h"
#include "template/template.h"
#include "timefmt.h"

struct jcompile {
    schema *sch; /* owned until taken */
    expr_scope *sc;
};

/* The schema file of the profiles source: its `schema` setting, relative
 * to the file that holds it. */
static schema *profiles_schema(struct app *a, diag *d)
{
    if (!a || !a->conf.profiles)
        return NULL;
    conf_use *u = conf_find(&a->conf, "sources", a->conf.profiles);
    config_setting_t *s = u && u->group ? config_setting_get_member(u->group, "schema") : NULL;
    if (!s || config_setting_type(s) != CONFIG_TYPE_STRING)
        return NULL;
    const char *file = config_setting_source_file(s);
    char *dir = path_dirname(file ? file : a->conf.path);
    char *path = path_resolve(dir, config_setting_get_string(s));
    free(dir);
    schema *sch = xcalloc(1, sizeof *sch);
    diag local;
    diag_init(&local);
    schema_load(sch, path, &local);
    /* baton check reports the schema's own errors; journeys just lose the
     * types of what failed to load */
    diag_free(&local);
    free(path);
    return sch;
}

jcompile *jcompile_new(struct app *a, const char *const *action_ids, size_t nactions, diag *d)
{
    jcompile *c = xcalloc(1, sizeof *c);
    c->sch = profiles_schema(a, d);
    const char **names = xcalloc(nactions + (a ? a->conf.nuses : 0) + 1, sizeof *names);
    size_t n = 0;
    for (size_t i = 0; i < nactions; i++)
        names[n++] = action_ids[i];
    for (size_t i = 0; a && i < a->conf.nuses; i++) {
        conf_use *u = &a->conf.uses[i];
        if (u->kind == BATON_KIND_SOURCE && (!a->conf.profiles || strcmp(u->name, a->conf.profiles)))
            names[n++] = u->name;
    }
    c->sc = expr_scope_journey(c->sch, c->sch ? schema_entity_find(c->sch, "profiles") : NULL,
                               names, n);
    if (!a)
        expr_scope_set_open(c->sc, 1);
    free(names);
    return c;
}

void jcompile_free(jcompile *c)
{
    if (!c)
        return;
    expr_scope_free(c->sc);
    jschema_free(c->sch);
    free(c);
}

void *jcompile_take_schema(jcompile *c)
{
    void *s = c->sch;
    c->sch = NULL;
    return s;
}

void jschema_free(void *s)
{
    if (!s)
        return;
    schema_free(s);
    free(s);
}

void jcond_compile(jcond *c, const jcompile *cc, int want_bool, const char *file,
                   const char *where, const char *key, diag *d)
{
    char setting[256];
    snprintf(setting, sizeof setting, "%s: %s", where, key);
    expr_origin o = {file, c->line, setting};
    c->compiled = expr_compile(c->text, cc->sc, &o, want_bool ? EXPR_WANT_BOOL : 0, d);
}

void jcond_release(jcond *c)
{
    expr_free(c->compiled);
    c->compiled = NULL;
}

void *jtemplate_compile(const char *text, int html, const jcompile *cc, const char *file,
                        int line, const char *where, const char *key, diag *d)
{
    char setting[256];
    snprintf(setting, sizeof setting, "%s: %s", where, key);
    expr_origin o = {file, line, setting};
    return template_compile(text, cc->sc, &o, html ? TEMPLATE_HTML : 0, d);
}

void jtemplate_free(void *t) { template_free(t); }

void jscope_release(jscope *s)
{
    json_decref(s->profile_row);
    json_decref(s->lookups);
    s->profile_row = NULL;
    s->lookups = NULL;
    s->profile_loaded = 0;
}

/* A JSON value as the type the checker expects (when it knows one). */
static int from_json(json_t *v, int want, baton_value *out)
{
    memset(out, 0, sizeof *out);
    if (!v || json_is_null(v) || json_is_object(v) || json_is_array(v)) {
        out->type = BATON_T_NULL;
        return 1;
    }
    if (json_is_boolean(v)) {
        out->type = BATON_T_BOOL;
        out->v.b = json_is_true(v);
    } else if (json_is_integer(v)) {
        if (want == BATON_T_BOOL) { /* SQLite keeps bools as 0/1 */
            out->type = BATON_T_BOOL;
            out->v.b = json_integer_value(v) != 0;
        } else if (want == BATON_T_FLOAT) {
            out->type = BATON_T_FLOAT;
            out->v.f = (double)json_integer_value(v);
        } else {
            out->type = BATON_T_INT;
            out->v.i = json_integer_value(v);
        }
    } else if (json_is_real(v)) {
        out->type = BATON_T_FLOAT;
        out->v.f = json_real_value(v);
    } else {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        int64_t x;
        if (want == BATON_T_TIMESTAMP && timestamp_parse(s, len, &x) == 0) {
            out->type = BATON_T_TIMESTAMP;
            out->v.ts = x;
        } else if (want == BATON_T_DATE && date_parse(s, len, &x) == 0) {
            out->type = BATON_T_DATE;
            out->v.date = x;
        } else {
            out->type = BATON_T_STRING;
            out->v.s.ptr = s;
            out->v.s.len = len;
        }
    }
    return 0;
}

/* Follow a dotted path into nested objects. */
static json_t *dig(json_t *o, const char *path)
{
    const char *p = path;
    while (o && *p) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        o = json_is_object(o) ? json_object_getn(o, p, l) : NULL;
        if (!dot)
            break;
        p = dot + 1;
    }
    return o;
}

static int env_get(void *ud, const void *row, const expr_ref *ref, baton_value *out, char *err,
                   size_t errlen)
{
    jscope *s = ud;
    if (ref->kind != EXPR_REF_VALUE) {
        snprintf(err, errlen, "'%s': aggregates over linked rows are not available in journeys",
                 ref->path);
        return -1;
    }
    const char *prefix = ref->prefix;
    const char *rest = prefix ? ref->path + strlen(prefix) + 1 : ref->path;
    if (!prefix) {
        out->type = BATON_T_NULL;
        return 1;
    }
    if (!strcmp(prefix, "event")) {
        json_t *v = NULL;
        if (!strcmp(rest, "type") || !strcmp(rest, "id") || !strcmp(rest, "time") ||
            !strcmp(rest, "profile"))
            v = json_object_get(s->event, rest);
        else
            v = dig(json_object_get(s->event, "data"), rest);
        if (!strcmp(rest, "time") && v) {
            int64_t t;
            if (timestamp_parse(json_string_value(v), json_string_length(v), &t) == 0) {
                out->type = BATON_T_TIMESTAMP;
                out->v.ts = t;
                return 0;
            }
        }
        return from_json(v, ref->type, out);
    }
    if (!strcmp(prefix, "profile")) {
        if (!s->profile_loaded) {
            s->profile_loaded = 1;
            s->profile_row = s->profile ? s->profile(s->ud, s->profile_id) : NULL;
        }
        if (!strcmp(rest, "id") && !s->profile_row) {
            out->type = BATON_T_STRING;
            out->v.s.ptr = s->profile_id;
            out->v.s.len = strlen(s->profile_id);
            return 0;
        }
        if (ref->nhops) {
            snprintf(err, errlen, "'%s': links of the profile are not available in journeys",
                     ref->path);
            return -1;
        }
        return from_json(dig(s->profile_row, rest), ref->type, out);
    }
    json_t *res = json_object_get(s->results, prefix);
    if (res)
        return from_json(dig(res, rest), ref->type, out);
    if (!s->lookups)
        s->lookups = json_object();
    json_t *l = json_object_get(s->lookups, prefix);
    if (!l) {
        l = s->lookup ? s->lookup(s->ud, prefix, s->profile_id, s->event) : NULL;
        json_object_set_new(s->lookups, prefix, l ? l : json_null());
        l = json_object_get(s->lookups, prefix);
    }
    return from_json(dig(l, rest), ref->type, out);
}

static expr_env env_of(jscope *s)
{
    expr_env env = {.get = env_get, .rows = NULL, .ud = s, .now = s->now_ms / 1000};
    return env;
}

int jcond_truth(const jcond *c, jscope *s, int *truth, char *err, size_t errlen)
{
    if (!c->text) {
        *truth = 1;
        return 0;
    }
    if (!c->compiled) {
        snprintf(err, errlen, "'%s' was not compiled", c->text);
        return -1;
    }
    expr_env env = env_of(s);
    expr_arena arena;
    expr_arena_init(&arena);
    int rc = expr_eval_bool(c->compiled, &env, &arena, err, errlen);
    expr_arena_free(&arena);
    if (rc < 0)
        return -1;
    *truth = rc;
    return 0;
}

int jcond_timestamp(const jcond *c, jscope *s, int64_t *ms, char *err, size_t errlen)
{
    if (!c->compiled) {
        snprintf(err, errlen, "'%s' was not compiled", c->text ? c->text : "");
        return -1;
    }
    expr_env env = env_of(s);
    expr_arena arena;
    expr_arena_init(&arena);
    baton_value v;
    int rc = expr_eval(c->compiled, &env, &arena, &v, err, errlen);
    if (rc == 0) {
        int64_t t;
        if (v.type == BATON_T_TIMESTAMP)
            *ms = v.v.ts * 1000;
        else if (v.type == BATON_T_DATE)
            *ms = v.v.date * 86400000LL;
        else if (v.type == BATON_T_STRING && timestamp_parse(v.v.s.ptr, v.v.s.len, &t) == 0)
            *ms = t * 1000;
        else {
            snprintf(err, errlen, "until = '%s' gave %s, not a timestamp", c->text,
                     v.type == BATON_T_NULL ? "null" : schema_type_name(v.type));
            rc = -1;
        }
    }
    expr_arena_free(&arena);
    return rc;
}

int jtemplate_render(const void *t, jscope *s, void *out_buf, char *err, size_t errlen)
{
    expr_env env = env_of(s);
    expr_arena arena;
    expr_arena_init(&arena);
    int rc = template_render(t, &env, &arena, out_buf, err, errlen);
    expr_arena_free(&arena);
    return rc;
}
