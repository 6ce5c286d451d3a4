/* campaign/params — a campaign's declared parameters
 * (`parameters = ( { name = "discount"; type = "int"; default = "10"; } );`),
 * read as `param.NAME` in its expressions and templates.
 *
 * A run's values (from POST /v1/campaigns/NAME/runs, else the defaults)
 * are checked against the declarations, then written into the campaign's
 * settings as literals of their type wherever `param.NAME` stands in
 * expression position (outside quoted strings; inside {{ }} in a text that
 * has placeholders), before any activity compiles them: the expression
 * language and SQL see a constant, never text to splice. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/mem.h"
#include "base/timefmt.h"
#include "campaign/campaign.h"
#include "schema/schema.h"

static int line_of(const config_setting_t *s)
{
    return (int)config_setting_source_line(s);
}

static int valid_name(const char *s)
{
    if (!*s)
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
              (p != s && *p >= '0' && *p <= '9')))
            return 0;
    return 1;
}

/* The literal for a value of type t given as text (a default); NULL when
 * it does not parse. A new string. */
static char *literal_of_text(baton_type t, const char *v)
{
    char *end;
    int64_t x;
    switch (t) {
    case BATON_T_INT: strtoll(v, &end, 10); return *v && !*end ? xstrdup(v) : NULL;
    case BATON_T_FLOAT:
        strtod(v, &end);
        return *v && !*end ? xasprintf("%.17g", strtod(v, NULL)) : NULL;
    case BATON_T_BOOL: return !strcmp(v, "true") || !strcmp(v, "false") ? xstrdup(v) : NULL;
    case BATON_T_DATE: return date_parse(v, strlen(v), &x) == 0 ? xasprintf("date('%s')", v) : NULL;
    case BATON_T_TIMESTAMP:
        return timestamp_parse(v, strlen(v), &x) == 0 ? xasprintf("timestamp('%s')", v) : NULL;
    case BATON_T_STRING: {
        buf b;
        buf_init(&b);
        buf_addc(&b, '\'');
        for (const char *p = v; *p; p++) {
            if (*p == '\\' || *p == '\'')
                buf_addc(&b, '\\');
            if (*p == '\n') {
                buf_adds(&b, "\\n");
                continue;
            }
            buf_addc(&b, *p);
        }
        buf_addc(&b, '\'');
        return buf_steal(&b);
    }
    default: return NULL;
    }
}

int campaign_params_parse(campaign *c, config_setting_t *l, diag *d)
{
    size_t before = d->errors;
    if (!config_setting_is_list(l) && !(config_setting_is_array(l) && !config_setting_length(l))) {
        diag_error(d, c->file, line_of(l),
                   "campaign: parameters must be a list ( { name = \"discount\"; type = \"int\"; "
                   "default = \"10\"; } )");
        return -1;
    }
    int n = config_setting_length(l);
    c->params = xcalloc((size_t)n + 1, sizeof *c->params);
    for (int i = 0; i < n; i++) {
        config_setting_t *g = config_setting_get_elem(l, (unsigned)i);
        if (!config_setting_is_group(g)) {
            diag_error(d, c->file, line_of(g),
                       "parameters[%d] must be a group { name; type; default; }", i);
            continue;
        }
        const char *name = NULL, *type = NULL, *def = NULL;
        for (int k = 0; k < config_setting_length(g); k++) {
            config_setting_t *m = config_setting_get_elem(g, (unsigned)k);
            const char *key = config_setting_name(m);
            const char **slot = !strcmp(key, "name")      ? &name
                                : !strcmp(key, "type")    ? &type
                                : !strcmp(key, "default") ? &def
                                                          : NULL;
            if (!slot)
                diag_error(d, c->file, line_of(m),
                           "parameters[%d]: unknown key '%s'; known keys: name, type, default", i,
                           key);
            else if (config_setting_type(m) != CONFIG_TYPE_STRING)
                diag_error(d, c->file, line_of(m),
                           "parameters[%d].%s must be a string (default = \"10\", quoted)", i, key);
            else
                *slot = config_setting_get_string(m);
        }
        baton_type t = BATON_T_NULL;
        if (!name || !valid_name(name)) {
            diag_error(d, c->file, line_of(g),
                       "parameters[%d]: name must be letters, digits and '_' (param.NAME)", i);
            continue;
        }
        if (!type || schema_type_parse(type, &t) != 0 || t == BATON_T_DURATION) {
            diag_error(d, c->file, line_of(g),
                       "parameter %s: type must be one of string, int, float, bool, date, "
                       "timestamp",
                       name);
            continue;
        }
        for (size_t j = 0; j < c->nparams; j++)
            if (!strcmp(c->params[j].name, name))
                diag_error(d, c->file, line_of(g), "parameter %s is declared twice", name);
        char *lit = NULL;
        if (def && !(lit = literal_of_text(t, def))) {
            diag_error(d, c->file, line_of(g), "parameter %s: default \"%s\" is not a %s", name,
                       def, type);
            continue;
        }
        camp_param *p = &c->params[c->nparams++];
        p->name = xstrdup(name);
        p->type = t;
        p->type_name = xstrdup(type);
        p->def = lit;
        p->line = line_of(g);
    }
    return d->errors == before ? 0 : -1;
}

static const camp_param *find(const campaign *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->nparams; i++)
        if (strlen(c->params[i].name) == len && !strncmp(c->params[i].name, name, len))
            return &c->params[i];
    return NULL;
}

static int ident(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_';
}

/* Rewrite param.NAME outside quotes in s[0..n) into out. */
static void rewrite_expr(const campaign *c, char **vals, const char *s, size_t n, buf *out)
{
    char q = 0;
    for (size_t i = 0; i < n;) {
        char ch = s[i];
        if (q) {
            buf_addc(out, ch);
            if (ch == '\\' && i + 1 < n) {
                buf_addc(out, s[i + 1]);
                i += 2;
                continue;
            }
            if (ch == q)
                q = 0;
            i++;
            continue;
        }
        if (ch == '\'' || ch == '"') {
            q = ch;
            buf_addc(out, ch);
            i++;
            continue;
        }
        if (!strncmp(s + i, "param.", 6) && i + 6 <= n &&
            (i == 0 || (!ident(s[i - 1]) && s[i - 1] != '.'))) {
            size_t j = i + 6;
            while (j < n && ident(s[j]))
                j++;
            const camp_param *p = find(c, s + i + 6, j - i - 6);
            if (p && (j == n || s[j] != '.')) {
                buf_adds(out, vals[p - c->params]);
                i = j;
                continue;
            }
        }
        buf_addc(out, ch);
        i++;
    }
}

static void rewrite_setting(const campaign *c, char **vals, config_setting_t *s)
{
    int t = config_setting_type(s);
    if (t == CONFIG_TYPE_GROUP || t == CONFIG_TYPE_LIST || t == CONFIG_TYPE_ARRAY) {
        for (int i = 0; i < config_setting_length(s); i++)
            rewrite_setting(c, vals, config_setting_get_elem(s, (unsigned)i));
        return;
    }
    if (t != CONFIG_TYPE_STRING)
        return;
    const char *v = config_setting_get_string(s);
    if (!strstr(v, "param."))
        return;
    buf out;
    buf_init(&out);
    if (strstr(v, "{{")) { /* a template: only its placeholders */
        const char *p = v;
        while (*p) {
            const char *open = strstr(p, "{{");
            const char *close = open ? strstr(open + 2, "}}") : NULL;
            if (!open || !close) {
                buf_adds(&out, p);
                break;
            }
            buf_add(&out, p, (size_t)(open + 2 - p));
            rewrite_expr(c, vals, open + 2, (size_t)(close - open - 2), &out);
            buf_adds(&out, "}}");
            p = close + 2;
        }
    } else {
        rewrite_expr(c, vals, v, strlen(v), &out);
    }
    config_setting_set_string(s, out.data ? out.data : "");
    buf_free(&out);
}

/* The literal of a JSON value for p; NULL when it is not of p's type. */
static char *literal_of_json(const camp_param *p, const json_t *v)
{
    char tmp[64];
    switch (p->type) {
    case BATON_T_INT:
        if (!json_is_integer(v))
            return NULL;
        snprintf(tmp, sizeof tmp, "%lld", (long long)json_integer_value(v));
        return xstrdup(tmp);
    case BATON_T_FLOAT:
        if (!json_is_number(v))
            return NULL;
        snprintf(tmp, sizeof tmp, "%.17g", json_number_value(v));
        return xstrdup(tmp);
    case BATON_T_BOOL:
        return json_is_boolean(v) ? xstrdup(json_is_true(v) ? "true" : "false") : NULL;
    default: return json_is_string(v) ? literal_of_text(p->type, json_string_value(v)) : NULL;
    }
}

json_t *campaign_params_check(const campaign *c, const json_t *given, int require)
{
    json_t *unknown = json_array(), *bad = json_array(), *missing = json_array();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)given, k, v)
    {
        const camp_param *p = find(c, k, strlen(k));
        if (!p) {
            json_array_append_new(unknown, json_string(k));
            continue;
        }
        char *lit = literal_of_json(p, v);
        if (!lit)
            json_array_append_new(bad, json_pack("{s:s, s:s}", "name", k, "type", p->type_name));
        free(lit);
    }
    for (size_t i = 0; require && i < c->nparams; i++)
        if (!c->params[i].def && !json_object_get(given, c->params[i].name))
            json_array_append_new(missing, json_string(c->params[i].name));
    if (!json_array_size(unknown) && !json_array_size(bad) && !json_array_size(missing)) {
        json_decref(unknown);
        json_decref(bad);
        json_decref(missing);
        return NULL;
    }
    json_t *declared = json_array();
    for (size_t i = 0; i < c->nparams; i++)
        json_array_append_new(declared, json_pack("{s:s, s:s}", "name", c->params[i].name, "type",
                                                  c->params[i].type_name));
    return json_pack("{s:o, s:o, s:o, s:o}", "unknown", unknown, "mistyped", bad, "missing",
                     missing, "declared", declared);
}

int campaign_params_apply(campaign *c, const json_t *given, diag *d)
{
    if (c->params_applied)
        return 0;
    c->params_applied = 1;
    json_t *problems = given ? campaign_params_check(c, given, 1) : NULL;
    if (problems) {
        char *txt = json_dumps(problems, JSON_COMPACT);
        diag_error(d, c->file, 0, "campaign %s: parameters: %s", c->name, txt);
        free(txt);
        json_decref(problems);
        return -1;
    }
    if (!c->nparams)
        return 0;
    char **vals = xcalloc(c->nparams, sizeof *vals);
    for (size_t i = 0; i < c->nparams; i++) {
        const json_t *v = given ? json_object_get(given, c->params[i].name) : NULL;
        vals[i] = v ? literal_of_json(&c->params[i], v)
                    : xstrdup(c->params[i].def ? c->params[i].def : "null");
    }
    for (size_t i = 0; i < c->nacts; i++)
        rewrite_setting(c, vals, c->acts[i].group);
    for (size_t i = 0; i < c->nparams; i++)
        free(vals[i]);
    free(vals);
    return 0;
}

void campaign_params_free(campaign *c)
{
    for (size_t i = 0; i < c->nparams; i++) {
        free(c->params[i].name);
        free(c->params[i].type_name);
        free(c->params[i].def);
    }
    free(c->params);
    c->params = NULL;
    c->nparams = 0;
}

json_t *campaign_params_from_text(const campaign *c, const json_t *given)
{
    json_t *out = json_object();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)given, k, v)
    {
        const camp_param *p = find(c, k, strlen(k));
        const char *t = json_string_value(v);
        json_t *x = NULL;
        char *end;
        if (p && t && p->type == BATON_T_INT) {
            long long n = strtoll(t, &end, 10);
            if (*t && !*end)
                x = json_integer(n);
        } else if (p && t && p->type == BATON_T_FLOAT) {
            double f = strtod(t, &end);
            if (*t && !*end)
                x = json_real(f);
        } else if (p && t && p->type == BATON_T_BOOL) {
            if (!strcmp(t, "true") || !strcmp(t, "false"))
                x = json_boolean(!strcmp(t, "true"));
        }
        json_object_set_new(out, k, x ? x : json_incref(v)); /* else: checked as given */
    }
    return out;
}
