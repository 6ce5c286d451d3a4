/* The act_* members of the host table: settings read by path in the
 * campaign file, inputs and outputs as work tables, the schema, and SQL
 * on the campaign's source with every literal bound. */
#include "campaign/act_host.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/suggest.h"

void act_ctx_init(baton_activity_ctx *x, camp_env *e, size_t idx, int running)
{
    memset(x, 0, sizeof *x);
    x->env = e;
    x->idx = idx;
    x->running = running;
    expr_sql_init(&x->q);
    buf_init(&x->scratch);
}

void act_ctx_free(baton_activity_ctx *x)
{
    expr_sql_free(&x->q);
    buf_free(&x->scratch);
}

static camp_activity *act(baton_activity_ctx *x)
{
    return &x->env->c->acts[x->idx];
}

/* A string the host owns for the plugin: kept with the activity's state,
 * freed when the plan or run ends (longer than the call, as promised). */
static const char *keep(baton_activity_ctx *x, char *s)
{
    act_state *st = &x->env->s[x->idx];
    st->strs = xrealloc(st->strs, (st->nstrs + 1) * sizeof *st->strs);
    st->strs[st->nstrs++] = s;
    return s;
}

const char *ah_id(baton_activity_ctx *x)
{
    return act(x)->id;
}

static config_setting_t *setting(baton_activity_ctx *x, const char *path)
{
    return campaign_setting(act(x)->group, path);
}

static int setting_line(baton_activity_ctx *x, const char *path)
{
    config_setting_t *s = path ? setting(x, path) : NULL;
    return s ? (int)config_setting_source_line(s) : act(x)->line;
}

int ah_setting_count(baton_activity_ctx *x, const char *path)
{
    config_setting_t *s = setting(x, path);
    if (!s)
        return -1;
    int t = config_setting_type(s);
    if (t == CONFIG_TYPE_GROUP || t == CONFIG_TYPE_LIST || t == CONFIG_TYPE_ARRAY)
        return config_setting_length(s);
    return 0;
}

const char *ah_setting_string(baton_activity_ctx *x, const char *path)
{
    config_setting_t *s = setting(x, path);
    return s && config_setting_type(s) == CONFIG_TYPE_STRING ? config_setting_get_string(s) : NULL;
}

int ah_setting_number(baton_activity_ctx *x, const char *path, double *out)
{
    config_setting_t *s = setting(x, path);
    if (!s)
        return -1;
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT: *out = config_setting_get_int(s); return 0;
    case CONFIG_TYPE_INT64: *out = (double)config_setting_get_int64(s); return 0;
    case CONFIG_TYPE_FLOAT: *out = config_setting_get_float(s); return 0;
    default: return -1;
    }
}

int ah_setting_bool(baton_activity_ctx *x, const char *path, int *out)
{
    config_setting_t *s = setting(x, path);
    if (!s || config_setting_type(s) != CONFIG_TYPE_BOOL)
        return -1;
    *out = config_setting_get_bool(s);
    return 0;
}

const char *ah_setting_path(baton_activity_ctx *x, const char *path)
{
    const char *v = ah_setting_string(x, path);
    if (!v)
        return NULL;
    char *p = path_resolve(x->env->c->dir, v);
    return keep(x, p);
}

void ah_error(baton_activity_ctx *x, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    if (x->running) {
        snprintf(x->env->error, sizeof x->env->error, "%s:%d: activity '%s': %s", x->env->c->file,
                 setting_line(x, path), act(x)->id, msg);
        x->env->failed = 1;
    } else {
        diag_error(x->env->d, x->env->c->file, setting_line(x, path), "activity '%s': %s",
                   act(x)->id, msg);
    }
    free(msg);
}

static const camp_output *input(baton_activity_ctx *x, size_t i)
{
    camp_activity *a = act(x);
    return i < a->ninputs ? campaign_input_output(x->env->c, &a->inputs[i]) : NULL;
}

size_t ah_input_count(baton_activity_ctx *x)
{
    return act(x)->ninputs;
}

const char *ah_input_dimension(baton_activity_ctx *x, size_t i)
{
    const camp_output *o = input(x, i);
    return o ? o->dimension : NULL;
}

const char *ah_input_table(baton_activity_ctx *x, size_t i)
{
    if (!x->running || i >= act(x)->ninputs)
        return NULL;
    const camp_input *in = &act(x)->inputs[i];
    return x->env->s[in->act].tables ? x->env->s[in->act].tables[in->out] : NULL;
}

size_t ah_input_column_count(baton_activity_ctx *x, size_t i)
{
    const camp_output *o = input(x, i);
    return o ? o->ncols : 0;
}

const char *ah_input_column(baton_activity_ctx *x, size_t i, size_t col, baton_type *type)
{
    const camp_output *o = input(x, i);
    if (!o || col >= o->ncols)
        return NULL;
    if (type)
        *type = o->cols[col].type;
    return o->cols[col].name;
}

static const schema_entity *entity(baton_activity_ctx *x, const char *dimension)
{
    return x->env->have_schema && dimension ? schema_entity_find(&x->env->sch, dimension) : NULL;
}

int ah_output(baton_activity_ctx *x, const char *name, const char *dimension, int like)
{
    camp_activity *a = act(x);
    if (x->running)
        return 0; /* declared by check() already */
    if (campaign_output(a, name) >= 0)
        return -1;
    const schema_entity *en = entity(x, dimension);
    if (en && !en->key && en->nkeys > 1) {
        buf names;
        buf_init(&names);
        for (size_t i = 0; i < en->nkeys; i++)
            buf_addf(&names, "%s%s", i ? ", " : "", en->keys[i]->name);
        ah_error(x, NULL,
                 "the rows of %s cannot be an audience: its key is composite (%s); read it "
                 "through a path of links from the entities it joins, or change_dimension "
                 "through = [ \"%s\" ] to one of them",
                 en->name, names.data, en->name);
        buf_free(&names);
        return -1;
    }
    a->outs = xrealloc(a->outs, (a->nouts + 1) * sizeof *a->outs);
    camp_output *o = &a->outs[a->nouts++];
    memset(o, 0, sizeof *o);
    o->name = name ? xstrdup(name) : NULL;
    o->transition = name ? xasprintf("%s.%s", a->id, name) : xstrdup(a->id);
    o->dimension = dimension ? xstrdup(dimension) : NULL;
    const camp_output *src = like >= 0 ? input(x, (size_t)like) : NULL;
    for (size_t i = 0; src && i < src->ncols; i++) {
        o->cols = xrealloc(o->cols, (o->ncols + 1) * sizeof *o->cols);
        o->cols[o->ncols++] = (camp_column){xstrdup(src->cols[i].name), src->cols[i].type};
    }
    return 0;
}

int ah_output_column(baton_activity_ctx *x, const char *name, const char *column, baton_type type)
{
    camp_activity *a = act(x);
    if (x->running)
        return 0;
    int oi = campaign_output(a, name);
    if (oi < 0)
        return -1;
    camp_output *o = &a->outs[oi];
    for (size_t i = 0; i < o->ncols; i++)
        if (strcmp(o->cols[i].name, column) == 0) {
            o->cols[i].type = type;
            return 0;
        }
    o->cols = xrealloc(o->cols, (o->ncols + 1) * sizeof *o->cols);
    o->cols[o->ncols++] = (camp_column){xstrdup(column), type};
    return 0;
}

const char *ah_output_table(baton_activity_ctx *x, const char *name)
{
    int oi = campaign_output(act(x), name);
    if (oi < 0 || !x->running || !x->env->s[x->idx].tables)
        return NULL;
    return x->env->s[x->idx].tables[oi];
}

static int valid_name(const char *s)
{
    if (!s || !*s || strlen(s) > 64)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return 0;
    return 1;
}

typedef struct one_string {
    char *s;
} one_string;

static int take_string(void *ud, size_t n, const char *const *names, const baton_value *v)
{
    one_string *o = ud;
    if (n > 0 && v[0].type == BATON_T_STRING)
        o->s = xstrndup(v[0].v.s.ptr, v[0].v.s.len);
    return 1;
}

static int audiences_table(camp_env *e)
{
    char err[256];
    return camp_sql(e,
                    "CREATE TABLE IF NOT EXISTS baton_audiences (name TEXT PRIMARY KEY, "
                    "dimension TEXT NOT NULL, campaign TEXT, saved_at INTEGER)",
                    NULL, 0, NULL, NULL, err, sizeof err);
}

const char *ah_audience_table(baton_activity_ctx *x, const char *name, const char **dimension)
{
    if (dimension)
        *dimension = NULL;
    if (!valid_name(name))
        return NULL;
    if (dimension && x->env->src && audiences_table(x->env) == 0) {
        baton_value p = {.type = BATON_T_STRING, .v.s = {name, strlen(name)}};
        one_string o = {0};
        char err[256];
        expr_sql q;
        expr_sql_init(&q);
        buf_adds(&q.sql, "SELECT dimension FROM baton_audiences WHERE name = ");
        expr_sql_param(&q, x->env->dialect, &p);
        camp_sql(x->env, q.sql.data, q.params, q.nparams, take_string, &o, err, sizeof err);
        expr_sql_free(&q);
        if (o.s)
            *dimension = keep(x, o.s);
        else
            free(o.s);
    }
    return keep(x, xasprintf("baton_audience_%s", name));
}

int ah_audience_saved(baton_activity_ctx *x, const char *name, const char *dimension)
{
    if (!valid_name(name) || audiences_table(x->env) != 0)
        return -1;
    baton_value p[4] = {{.type = BATON_T_STRING, .v.s = {name, strlen(name)}},
                        {.type = BATON_T_STRING, .v.s = {dimension, strlen(dimension)}},
                        {.type = BATON_T_STRING, .v.s = {x->env->c->name, strlen(x->env->c->name)}},
                        {.type = BATON_T_INT, .v.i = x->env->now}};
    char err[256];
    /* replaced as a DELETE and an INSERT: the same SQL on every dialect */
    expr_sql del, ins;
    expr_sql_init(&del);
    expr_sql_init(&ins);
    buf_adds(&del.sql, "DELETE FROM baton_audiences WHERE name = ");
    expr_sql_param(&del, x->env->dialect, &p[0]);
    buf_adds(&ins.sql,
             "INSERT INTO baton_audiences (name, dimension, campaign, saved_at) VALUES (");
    for (size_t i = 0; i < 4; i++) {
        buf_adds(&ins.sql, i ? ", " : "");
        expr_sql_param(&ins, x->env->dialect, &p[i]);
    }
    buf_adds(&ins.sql, ")");
    int rc = camp_sql(x->env, del.sql.data, del.params, del.nparams, NULL, NULL, err, sizeof err);
    if (rc == 0)
        rc = camp_sql(x->env, ins.sql.data, ins.params, ins.nparams, NULL, NULL, err, sizeof err);
    expr_sql_free(&del);
    expr_sql_free(&ins);
    if (rc) {
        ah_error(x, "name", "cannot record the audience: %s", err);
        return -1;
    }
    return 0;
}

/* a dry run changes nothing either: no audience is saved */
int ah_is_plan(baton_activity_ctx *x)
{
    return x->env->plan || x->env->dry_run || x->env->nproof;
}

void ah_note(baton_activity_ctx *x, const char *fmt, ...)
{
    act_state *st = &x->env->s[x->idx];
    if (st->nnotes >= 50)
        return; /* bounded: the first ones say enough */
    va_list ap;
    va_start(ap, fmt);
    char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    st->notes = xrealloc(st->notes, (st->nnotes + 1) * sizeof *st->notes);
    st->notes[st->nnotes++] = msg;
}

int ah_entity(baton_activity_ctx *x, const char *dimension, const char **table, const char **key)
{
    const schema_entity *en = entity(x, dimension);
    if (!en)
        return -1;
    if (table)
        *table = en->table;
    if (key) /* NULL: a composite key (schema.h) */
        *key = en->key ? en->key->name : NULL;
    return 0;
}

int ah_field_type(baton_activity_ctx *x, const char *dimension, const char *field)
{
    const schema_entity *en = entity(x, dimension);
    const schema_field *f = en ? schema_field_find(en, field) : NULL;
    return f ? (int)f->type : -1;
}

int ah_link(baton_activity_ctx *x, const char *from, const char *to, const char **from_col,
            const char **to_col)
{
    const schema_entity *a = entity(x, from), *b = entity(x, to);
    if (!a || !b)
        return -1;
    for (size_t i = 0; i < a->nlinks; i++)
        if (a->links[i].to == b) { /* many-to-one: a.via = b.key */
            *from_col = a->links[i].via->name;
            *to_col = b->key->name;
            return 0;
        }
    for (size_t i = 0; i < b->nlinks; i++)
        if (b->links[i].to == a) { /* one-to-many: a.key = b.via */
            *from_col = a->key->name;
            *to_col = b->links[i].via->name;
            return 1;
        }
    return -1;
}

/* Up to this many input rows, aggregates over indexed links stay
 * correlated subqueries: a few thousand index lookups beat one scan of
 * a linked table of millions (an enrich of a small segment). */
#define CORRELATED_MAX_ROWS 10000

/* Whether ex, over input input_i, should read its aggregates by index
 * rather than from grouped tables: a small input (its count is known:
 * it ran) and an index on every link's via column. */
static int small_and_indexed(baton_activity_ctx *x, const expr *ex, int input_i)
{
    camp_env *e = x->env;
    if (!x->running || input_i < 0 || (size_t)input_i >= act(x)->ninputs)
        return 0;
    const camp_input *in = &act(x)->inputs[input_i];
    const act_state *s = &e->s[in->act];
    int64_t n = s->counts ? s->counts[in->out] : -1;
    if (n < 0 || n > CORRELATED_MAX_ROWS)
        return 0;
    int any = 0;
    for (size_t i = 0; i < expr_ref_count(ex); i++) {
        const expr_ref *r = expr_ref_at(ex, i);
        if (r->kind != EXPR_REF_ROWS || !r->rows)
            continue;
        any = 1;
        if (!camp_has_index(e, r->rows->from->table, r->rows->via->name))
            return 0;
    }
    return any;
}

/* Compile against the dimension (and the input's work-table columns) and
 * move the SQL the compiler appended to the ctx's parameter list into the
 * caller's buffer: the parameters stay, numbered, in the ctx. */
int ah_expr_sql(baton_activity_ctx *x, const char *path, const char *text, const char *dimension,
                const char *alias, int input_i, baton_type want, baton_type *type, baton_buf *out)
{
    return ah_expr_sql_joins(x, path, text, dimension, alias, input_i, want, type, out, NULL);
}

int ah_expr_sql_joins(baton_activity_ctx *x, const char *path, const char *text,
                      const char *dimension, const char *alias, int input_i, baton_type want,
                      baton_type *type, baton_buf *out, baton_buf *joins)
{
    camp_env *e = x->env;
    if (!text)
        text = ah_setting_string(x, path);
    if (!text) {
        ah_error(x, path, "%s must be an expression (a string)", path ? path : "expression");
        return -1;
    }
    const schema_entity *en = entity(x, dimension);
    if (!en) {
        ah_error(x, path, "unknown dimension '%s'", dimension ? dimension : "(none)");
        return -1;
    }
    expr_scope *sc = expr_scope_new(&e->sch, en);
    const camp_output *in = input_i >= 0 ? input(x, (size_t)input_i) : NULL;
    for (size_t i = 0; in && i < in->ncols; i++)
        expr_scope_add_field(sc, in->cols[i].name, in->cols[i].type, NULL);
    expr_origin o = {e->c->file, setting_line(x, path), path};
    expr *ex;
    if (x->running) {
        char err[512];
        ex = expr_compile_msg(text, sc, want == BATON_T_BOOL ? EXPR_WANT_BOOL : 0, err, sizeof err);
        if (!ex)
            ah_error(x, path, "%s: %s", path ? path : "expression", err);
    } else {
        ex = expr_compile(text, sc, &o, want == BATON_T_BOOL ? EXPR_WANT_BOOL : 0, e->d);
    }
    if (!ex) {
        expr_scope_free(sc);
        return -1;
    }
    int rt = expr_result_type(ex);
    if (type)
        *type = rt < 0 ? BATON_T_STRING : (baton_type)rt;
    size_t mark = x->q.sql.len;
    char err[512];
    expr_groups_collect(e->groups, !x->running);
    int rc = expr_to_sql_joined(ex, alias ? alias : "t", e->dialect, e->now,
                                small_and_indexed(x, ex, input_i) ? NULL : e->groups,
                                out ? joins : NULL, &x->q, err, sizeof err);
    if (rc != 0)
        ah_error(x, path, "%s: %s", path ? path : "expression", err);
    else if (out)
        buf_add(out, x->q.sql.data + mark, x->q.sql.len - mark);
    x->q.sql.len = mark;
    if (x->q.sql.data)
        x->q.sql.data[mark] = '\0';
    expr_free(ex);
    expr_scope_free(sc);
    return rc;
}

void ah_param(baton_activity_ctx *x, const baton_value *v, baton_buf *out)
{
    size_t mark = x->q.sql.len;
    expr_sql_param(&x->q, x->env->dialect, v);
    buf_add(out, x->q.sql.data + mark, x->q.sql.len - mark);
    x->q.sql.len = mark;
    x->q.sql.data[mark] = '\0';
}

int ah_sql(baton_activity_ctx *x, const char *sql, baton_row_fn fn, void *ud)
{
    char err[512];
    int rc = 0;
    /* check() too: the source is open (no work table exists yet) */
    if (x->running || x->env->src) {
        rc = camp_sql(x->env, sql, x->q.params, x->q.nparams, fn, ud, err, sizeof err);
        if (rc)
            ah_error(x, NULL, "SQL failed: %s", err);
    }
    expr_sql_free(&x->q);
    expr_sql_init(&x->q);
    return rc;
}

const char *ah_dialect(baton_activity_ctx *x)
{
    return x->env->ops && x->env->ops->dialect ? x->env->ops->dialect : "sqlite";
}
