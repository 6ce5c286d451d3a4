/* The campaign engine: the checks that need the schema and the activity
 * types, then plan or run in topological order, one activity at a time,
 * each a few SQL statements in the data source. */
#include "campaign/engine.h"
#include "base/deadline.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "campaign/act_host.h"
#include "campaign/incremental.h"
#include "config/keymap.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/suggest.h"
#include "base/timefmt.h"

int camp_sql(camp_env *e, const char *sql, const baton_value *params, size_t n, baton_row_fn fn,
             void *ud, char *err, size_t errlen)
{
    /* a run's work table is created the dialect's way (UNLOGGED on
     * PostgreSQL): activities write CREATE TABLE <its name> AS ... */
    expr_work w;
    expr_dialect_work(e->dialect, &w);
    char *own = NULL;
    if (w.work_schema && !strncmp(sql, "CREATE TABLE ", 13) &&
        !strncmp(sql + 13, w.work_schema, strlen(w.work_schema)) &&
        sql[13 + strlen(w.work_schema)] == '.')
        sql = own = xasprintf("%s %s", w.work_create, sql + 13);
    log_debug("sql: %s", sql);
    int rc = e->ops->exec(e->src->state, sql, params, n, fn, ud, err, errlen);
    free(own);
    return rc;
}

static int take_int(void *ud, size_t n, const char *const *names, const baton_value *v)
{
    int64_t *out = ud;
    if (n > 0)
        *out = v[0].type == BATON_T_INT     ? v[0].v.i
               : v[0].type == BATON_T_FLOAT ? (int64_t)v[0].v.f
                                            : 0;
    return 1;
}

int64_t camp_count(camp_env *e, const char *table, char *err, size_t errlen)
{
    char *sql = xasprintf("SELECT count(*) FROM %s", table);
    int64_t n = -1;
    if (camp_sql(e, sql, NULL, 0, take_int, &n, err, errlen) != 0)
        n = -1;
    free(sql);
    return n;
}

static int groups_exec(void *ud, const char *sql, const baton_value *params, size_t n, char *err,
                       size_t errlen)
{
    return camp_sql(ud, sql, params, n, NULL, NULL, err, errlen);
}

/* The grouped tables of aggregates live as long as the activities' work
 * tables, named like them. */
static void groups_name(camp_env *e)
{
    expr_work w;
    expr_dialect_work(e->dialect, &w);
    char *p = e->plan ? xasprintf("%s.baton_plan_g", w.temp_schema)
                      : xasprintf("%s%sbaton_w%lld_g", w.work_schema ? w.work_schema : "",
                                  w.work_schema ? "." : "", (long long)e->run_id);
    expr_groups_prefix(e->groups, p);
    free(p);
}

/* ------------------------------------------------------------------ */
/* Source and schema                                                   */
/* ------------------------------------------------------------------ */

typedef struct col_list {
    char **names, **types; /* types: the declared types, when a second column says */
    size_t n;
} col_list;

static int take_col(void *ud, size_t n, const char *const *names, const baton_value *v)
{
    col_list *l = ud;
    l->names = xrealloc(l->names, (l->n + 1) * sizeof *l->names);
    l->types = xrealloc(l->types, (l->n + 1) * sizeof *l->types);
    l->names[l->n] = xstrndup(v[0].v.s.ptr, v[0].v.s.len);
    l->types[l->n++] =
        n > 1 && v[1].type == BATON_T_STRING ? xstrndup(v[1].v.s.ptr, v[1].v.s.len) : NULL;
    return 0;
}

static void col_list_free(col_list *l)
{
    for (size_t k = 0; k < l->n; k++) {
        free(l->names[k]);
        free(l->types[k]);
    }
    free(l->names);
    free(l->types);
    memset(l, 0, sizeof *l);
}

static int said(const diag *d, const char *msg);

int camp_has_index(camp_env *e, const char *table, const char *column)
{
    expr_work w;
    expr_dialect_work(e->dialect, &w);
    col_list l = {0};
    baton_value t = {.type = BATON_T_STRING, .v.s = {table, strlen(table)}};
    char err[256];
    int have = camp_sql(e, w.index_list, &t, 1, take_col, &l, err, sizeof err) != 0; /* unknown */
    for (size_t k = 0; k < l.n; k++)
        have |= !strcmp(l.names[k], column);
    col_list_free(&l);
    return have;
}

/* baton check: a link's columns without an index make every aggregate
 * or linked field read over it scan the table. */
static void check_link_indexes(camp_env *e, const char *srcname, diag *d)
{
    for (size_t i = 0; i < e->sch.nentities; i++) {
        const schema_entity *en = &e->sch.entities[i];
        for (size_t k = 0; k < en->nlinks; k++) {
            const schema_link *lk = &en->links[k];
            const struct {
                const schema_entity *ent;
                const char *col;
            } ends[] = {{en, lk->via->name}, {lk->to, lk->to->key->name}};
            for (size_t j = 0; j < 2; j++) {
                if (camp_has_index(e, ends[j].ent->table, ends[j].col))
                    continue;
                /* a statement both SQLite and PostgreSQL run as it is */
                expr_sql ix;
                expr_sql_init(&ix);
                char *iname = xasprintf("%s_%s", ends[j].ent->table, ends[j].col);
                buf_adds(&ix.sql, "CREATE INDEX ");
                expr_sql_ident(&ix, e->dialect, iname);
                buf_adds(&ix.sql, " ON ");
                expr_sql_ident(&ix, e->dialect, ends[j].ent->table);
                buf_adds(&ix.sql, " (");
                expr_sql_ident(&ix, e->dialect, ends[j].col);
                buf_adds(&ix.sql, ")");
                free(iname);
                char *msg = xasprintf(
                    "link %s.%s: table '%s' of source '%s' has no index on '%s': journeys, "
                    "templates and linked fields look rows up by it, each lookup a scan of "
                    "the table; run %s;",
                    en->name, lk->name, ends[j].ent->table, srcname, ends[j].col, ix.sql.data);
                expr_sql_free(&ix);
                if (!said(d, msg))
                    diag_warn(d, e->sch.file, lk->line, "%s", msg);
                free(msg);
            }
        }
    }
}

/* Whether an error about this field (or entity) was said already: every
 * campaign opens the source, the checks run once. */
static int said_error(const diag *d, const schema_entity *en, const schema_field *f)
{
    char *pre = xasprintf("field %s.%s ", en->name, f->name);
    int hit = 0;
    for (size_t i = 0; i < d->n && !hit; i++)
        hit = !d->v[i].warning && !strncmp(d->v[i].msg, pre, strlen(pre));
    free(pre);
    return hit;
}

static int said_entity(const diag *d, const schema_entity *en)
{
    char *pre = xasprintf("entity '%s': key ", en->name);
    int hit = 0;
    for (size_t i = 0; i < d->n && !hit; i++)
        hit = !d->v[i].warning && !strncmp(d->v[i].msg, pre, strlen(pre));
    free(pre);
    return hit;
}

typedef struct value_sample {
    baton_type want;
    char *bad; /* the first value that does not fit, as text */
    const char *got;
} value_sample;

static const char *stored_kind(const baton_value *v)
{
    switch (v->type) {
    case BATON_T_INT: return "an integer";
    case BATON_T_FLOAT: return "a real";
    case BATON_T_STRING: return "text";
    case BATON_T_BOOL: return "a bool";
    default: return "a value of another type";
    }
}

/* Whether a stored value reads as the declared type (dates and
 * timestamps: sample_times). */
static int value_fits(baton_type want, const baton_value *v)
{
    switch (want) {
    case BATON_T_STRING: return v->type == BATON_T_STRING;
    case BATON_T_INT: return v->type == BATON_T_INT;
    case BATON_T_FLOAT: return v->type == BATON_T_INT || v->type == BATON_T_FLOAT;
    case BATON_T_BOOL:
        return v->type == BATON_T_BOOL || (v->type == BATON_T_INT && (v->v.i == 0 || v->v.i == 1));
    default: return 1;
    }
}

/* A stored value as check quotes it: its text, cut at 60 bytes. */
static char *sample_text(const baton_value *v)
{
    buf b;
    buf_init(&b);
    buf_adds(&b, "");
    expr_value_format(v, &b);
    if (b.len > 60) {
        b.len = 60;
        b.data[60] = '\0';
    }
    return buf_steal(&b);
}

static int take_value(void *ud, size_t n, const char *const *names, const baton_value *v)
{
    value_sample *t = ud;
    if (n == 0 || v[0].type == BATON_T_NULL || t->bad || value_fits(t->want, &v[0]))
        return 0;
    t->bad = sample_text(&v[0]);
    t->got = stored_kind(&v[0]);
    return 1;
}

/* baton check: the first 1,000 non-null values of a column must read as
 * the field's type (SQLite stores any value in any column: a float
 * column holding 'n/a', ids stored as integers in a string field, which
 * then never equal a string). */
static void check_values(camp_env *e, const schema_entity *en, const schema_field *f,
                         const char *srcname, diag *d)
{
    value_sample t = {.want = f->type};
    expr_sql q;
    expr_sql_init(&q);
    buf_adds(&q.sql, "SELECT ");
    expr_sql_ident(&q, e->dialect, f->name);
    buf_adds(&q.sql, " FROM ");
    expr_sql_ident(&q, e->dialect, en->table);
    buf_adds(&q.sql, " WHERE ");
    expr_sql_ident(&q, e->dialect, f->name);
    buf_adds(&q.sql, " IS NOT NULL LIMIT 1000");
    char err[256];
    camp_sql(e, q.sql.data, NULL, 0, take_value, &t, err, sizeof err);
    expr_sql_free(&q);
    if (t.bad) {
        const char *tn = schema_type_name(f->type);
        diag_error(d, e->sch.file, f->line,
                   "field %s.%s is a%s %s, but column '%s' of table '%s' of source '%s' holds "
                   "'%s' (%s)",
                   en->name, f->name, strchr("aeiou", tn[0]) ? "n" : "", tn, f->name, en->table,
                   srcname, t.bad, t.got);
    }
    free(t.bad);
}

typedef struct dup_key {
    char *key;
    int64_t n;
} dup_key;

static int take_dup(void *ud, size_t n, const char *const *names, const baton_value *v)
{
    dup_key *k = ud;
    if (n < 2 || k->key)
        return 1;
    buf b;
    buf_init(&b);
    buf_adds(&b, "");
    for (size_t i = 0; i + 1 < n; i++) { /* the key's values, then the count */
        if (i)
            buf_adds(&b, ", ");
        expr_value_format(&v[i], &b);
    }
    k->key = buf_steal(&b);
    k->n = v[n - 1].type == BATON_T_INT ? v[n - 1].v.i : 0;
    return 1;
}

/* baton check: an entity's key must be unique (a send would reach a
 * profile twice, a link would count rows twice); a composite key, the
 * combination of its fields. */
static void check_key_unique(camp_env *e, const schema_entity *en, const char *srcname, diag *d)
{
    if (!en->nkeys)
        return;
    expr_sql q;
    expr_sql_init(&q);
    buf names;
    buf_init(&names);
    buf_adds(&q.sql, "SELECT ");
    for (size_t i = 0; i < en->nkeys; i++) {
        expr_sql_ident(&q, e->dialect, en->keys[i]->name);
        buf_adds(&q.sql, ", ");
        buf_addf(&names, "%s%s", i ? ", " : "", en->keys[i]->name);
    }
    buf_adds(&q.sql, "count(*) FROM ");
    expr_sql_ident(&q, e->dialect, en->table);
    buf_adds(&q.sql, " WHERE ");
    for (size_t i = 0; i < en->nkeys; i++) {
        buf_adds(&q.sql, i ? " AND " : "");
        expr_sql_ident(&q, e->dialect, en->keys[i]->name);
        buf_adds(&q.sql, " IS NOT NULL");
    }
    buf_adds(&q.sql, " GROUP BY ");
    for (size_t i = 0; i < en->nkeys; i++) {
        buf_adds(&q.sql, i ? ", " : "");
        expr_sql_ident(&q, e->dialect, en->keys[i]->name);
    }
    buf_adds(&q.sql, " HAVING count(*) > 1 LIMIT 1");
    dup_key k = {0};
    char err[256];
    camp_sql(e, q.sql.data, NULL, 0, take_dup, &k, err, sizeof err);
    expr_sql_free(&q);
    if (k.key && en->nkeys == 1)
        diag_error(d, e->sch.file, en->keys[0]->line,
                   "entity '%s': key '%s' is not unique in table '%s' of source '%s': '%s' is "
                   "the key of %lld rows",
                   en->name, names.data, en->table, srcname, k.key, (long long)k.n);
    else if (k.key)
        diag_error(d, e->sch.file, en->line,
                   "entity '%s': key (%s) is not unique in table '%s' of source '%s': (%s) is "
                   "the key of %lld rows",
                   en->name, names.data, en->table, srcname, k.key, (long long)k.n);
    buf_free(&names);
    free(k.key);
}

/* A warning said once per message, however many campaigns open the
 * source. */
static int said(const diag *d, const char *msg)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->v[i].warning && strcmp(d->v[i].msg, msg) == 0)
            return 1;
    return 0;
}

typedef struct time_sample {
    int want;
    size_t seen, other;
    char *bad; /* the first value no reader reads */
} time_sample;

static int take_time(void *ud, size_t n, const char *const *names, const baton_value *v)
{
    time_sample *t = ud;
    if (n == 0 || v[0].type == BATON_T_NULL)
        return 0;
    t->seen++;
    int form = expr_value_stored_form(&v[0], t->want);
    if (form != 0)
        t->other++;
    if (form < 0 && !t->bad) {
        t->bad = sample_text(&v[0]);
    }
    return 0;
}

/* How each date and timestamp column is stored, from a sample of its
 * first and (SQLite) last rows: a column with any value not in the
 * canonical form is compared as instants (schema_field.stored_any). A
 * value no reader reads is reported (baton check) with the column and
 * the value. */
static void sample_times(camp_env *e, schema_entity *en, schema_field *f, unsigned flags, diag *d)
{
    static const char *const tails[] = {"", " ORDER BY rowid DESC"};
    int sqlite = !e->ops->dialect || !strcmp(e->ops->dialect, "sqlite");
    time_sample t = {.want = (int)f->type};
    for (size_t k = 0; k < (sqlite ? 2u : 1u); k++) {
        expr_sql sq;
        expr_sql_init(&sq);
        buf_adds(&sq.sql, "SELECT ");
        expr_sql_ident(&sq, e->dialect, f->name);
        buf_adds(&sq.sql, " FROM ");
        expr_sql_ident(&sq, e->dialect, en->table);
        buf_adds(&sq.sql, " WHERE ");
        expr_sql_ident(&sq, e->dialect, f->name);
        buf_addf(&sq.sql, " IS NOT NULL%s LIMIT 1000", tails[k]);
        char err[256];
        camp_sql(e, sq.sql.data, NULL, 0, take_time, &t, err, sizeof err); /* a view: no rowid */
        expr_sql_free(&sq);
    }
    f->stored_any = t.other > 0;
    if (t.bad && (flags & CAMP_OPEN_CHECK)) {
        char *msg =
            xasprintf("field %s.%s: column '%s' of table '%s' holds '%s', which is not a "
                      "%s baton can read (ISO 8601 such as %s, %s, or seconds since "
                      "1970); such values read as null",
                      en->name, f->name, f->name, en->table, t.bad, schema_type_name(f->type),
                      f->type == BATON_T_DATE ? "2026-11-23" : "2026-11-23T10:00:00Z",
                      f->type == BATON_T_DATE ? "2026-11-23 10:00:00" : "2026-11-23 10:00:00.250");
        if (!said(d, msg))
            diag_warn(d, e->sch.file, f->line, "%s", msg);
        free(msg);
    }
    free(t.bad);
}

/* Every entity's table and field must exist in the database, in a column
 * of a type that holds it. Returns the number of such errors (those said
 * already for another campaign included). */
static int verify_schema(camp_env *e, const char *srcname, unsigned flags, diag *d)
{
    int bad = 0;
    if (!e->ops->columns)
        return 0;
    if (flags & CAMP_OPEN_CHECK) {
        size_t missing = 0;
        for (size_t i = 0; i < e->sch.nentities; i++) {
            char err[256];
            missing += e->ops->columns(e->src->state, e->sch.entities[i].table, NULL, NULL, err,
                                       sizeof err) == 1;
        }
        if (missing == e->sch.nentities && missing > 0) {
            /* said once per source, however many campaigns use it */
            for (size_t i = 0; i < d->n; i++)
                if (d->v[i].warning && strstr(d->v[i].msg, e->src->where) &&
                    strstr(d->v[i].msg, "holds none of the tables"))
                    return 0;
            diag_warn(d, e->src->file, e->src->line,
                      "%s holds none of the tables of %s yet (`baton sample-data` makes a "
                      "sample); campaigns cannot plan or run until it does",
                      e->src->where, e->sch.file);
            return 0;
        }
    }
    size_t errors = d->errors;
    for (size_t i = 0; i < e->sch.nentities; i++) {
        const schema_entity *en = &e->sch.entities[i];
        col_list l = {0};
        char err[512];
        int rc = e->ops->columns(e->src->state, en->table, take_col, &l, err, sizeof err);
        if (rc < 0)
            diag_error(d, e->sch.file, en->line, "entity '%s': source '%s': %s", en->name, srcname,
                       err);
        else if (rc == 1)
            diag_error(d, e->sch.file, en->line,
                       "entity '%s': source '%s' has no table '%s' (generate sample data with "
                       "`baton sample-data`, or set table = \"...\")",
                       en->name, srcname, en->table);
        else
            for (size_t f = 0; f < en->nfields; f++) {
                int have = 0;
                for (size_t k = 0; k < l.n; k++)
                    have |= strcmp(l.names[k], en->fields[f].name) == 0;
                const char *declared = NULL;
                for (size_t k = 0; k < l.n; k++)
                    if (!strcmp(l.names[k], en->fields[f].name))
                        declared = l.types[k];
                if (have &&
                    expr_dialect_type_ok(e->dialect, (int)en->fields[f].type, declared) == 0) {
                    const char *tn = schema_type_name(en->fields[f].type);
                    char *msg =
                        xasprintf("field %s.%s is a%s %s, but column '%s' of table '%s' "
                                  "of source '%s' is %s",
                                  en->name, en->fields[f].name, strchr("aeiou", tn[0]) ? "n" : "",
                                  tn, en->fields[f].name, en->table, srcname, declared);
                    int dup = 0; /* said once, however many campaigns open the source */
                    for (size_t k = 0; k < d->n; k++)
                        dup |= !d->v[k].warning && strcmp(d->v[k].msg, msg) == 0;
                    if (!dup)
                        diag_error(d, e->sch.file, en->fields[f].line, "%s", msg);
                    bad++;
                    free(msg);
                }
                if (have &&
                    (en->fields[f].type == BATON_T_TIMESTAMP || en->fields[f].type == BATON_T_DATE))
                    sample_times(e, (schema_entity *)en, (schema_field *)&en->fields[f], flags, d);
                else if (have && (flags & CAMP_OPEN_CHECK) && !said_error(d, en, &en->fields[f]) &&
                         expr_dialect_type_ok(e->dialect, (int)en->fields[f].type, declared) < 0)
                    /* the catalog cannot tell (SQLite's affinities): the values can */
                    check_values(e, en, &en->fields[f], srcname, d);
                if (!have) {
                    const char *near =
                        suggest_nearest(en->fields[f].name, (const char *const *)l.names, l.n);
                    diag_error(d, e->sch.file, en->fields[f].line,
                               "field %s.%s: table '%s' of source '%s' has no column '%s'%s%s%s",
                               en->name, en->fields[f].name, en->table, srcname, en->fields[f].name,
                               near ? " (it has '" : "", near ? near : "", near ? "')" : "");
                }
            }
        if (rc == 0 && (flags & CAMP_OPEN_CHECK) && !said_entity(d, en))
            check_key_unique(e, en, srcname, d);
        col_list_free(&l);
    }
    if ((flags & CAMP_OPEN_CHECK) && d->errors == errors && !bad)
        check_link_indexes(e, srcname, d);
    return bad;
}

int camp_env_open(camp_env *e, app *a, campaign *c, act_registry *reg, unsigned flags, diag *d)
{
    memset(e, 0, sizeof *e);
    e->a = a;
    e->c = c;
    e->d = d;
    e->reg = reg;
    e->now = (int64_t)time(NULL);
    e->s = xcalloc(c->nacts + 1, sizeof *e->s);
    size_t before = d->errors;
    campaign_params_apply(c, NULL, d); /* the defaults, unless a run gave values */
    const char *srcname = c->source ? c->source : a->conf.profiles;
    if (!srcname) {
        diag_error(d, c->file, 0,
                   "campaign '%s' names no source, and the configuration sets no `profiles` source",
                   c->name);
        return -1;
    }
    e->src = app_find(a, "sources", srcname);
    e->ops = e->src ? instance_source(e->src) : NULL;
    if (!e->src || !e->ops || !e->ops->exec) {
        diag_error(d, c->file, 0, "campaign '%s': source '%s' is %s", c->name, srcname,
                   e->src ? "not a SQL source (it has no exec)" : "not configured");
        return -1;
    }
    e->dialect = expr_dialect_find(e->ops->dialect ? e->ops->dialect : "sqlite");
    if (!e->dialect) {
        diag_error(d, c->file, 0, "source '%s': unknown SQL dialect '%s'", srcname,
                   e->ops->dialect);
        return -1;
    }
    e->groups = expr_groups_new(e->dialect, "baton_g", groups_exec, e);
    if (instance_start(e->src) != 0) {
        diag_error(d, e->src->file, e->src->line, "%s: %s", e->src->where, e->src->error);
        e->unreachable = 1;
        return -1;
    }
    const char *schema_file = e->src->host.source.schema;
    if (!schema_file) {
        diag_error(d, e->src->file, e->src->line,
                   "%s: no `schema` file: campaigns need the entities of their source",
                   e->src->where);
        return -1;
    }
    if (schema_load(&e->sch, schema_file, d) == 0)
        e->have_schema = 1;
    else
        return -1;
    int bad = verify_schema(e, srcname, flags, d);
    return d->errors == before && !bad ? 0 : -1;
}

void camp_env_close(camp_env *e)
{
    if (!e->s)
        return;
    for (size_t i = 0; i < e->c->nacts; i++) {
        act_state *s = &e->s[i];
        for (size_t j = 0; s->tables && j < e->c->acts[i].nouts; j++)
            free(s->tables[j]);
        free(s->tables);
        free(s->counts);
        for (size_t j = 0; j < s->nnotes; j++)
            free(s->notes[j]);
        free(s->notes);
        for (size_t j = 0; j < s->nstrs; j++)
            free(s->strs[j]);
        free(s->strs);
        camp_send_free(s->send);
    }
    free(e->s);
    expr_groups_free(e->groups);
    if (e->have_schema)
        schema_free(&e->sch);
    memset(e, 0, sizeof *e);
}

/* ------------------------------------------------------------------ */
/* Checks                                                              */
/* ------------------------------------------------------------------ */

static const char *const host_keys[] = {"id", "type", "input", "inputs", NULL};

static int cfg_type_ok(const baton_config_key *k, config_setting_t *s)
{
    int t = config_setting_type(s);
    switch (k->type) {
    case BATON_CFG_INT: return t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
    case BATON_CFG_FLOAT:
        return t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64 || t == CONFIG_TYPE_FLOAT;
    case BATON_CFG_BOOL: return t == CONFIG_TYPE_BOOL;
    case BATON_CFG_LIST: return t == CONFIG_TYPE_ARRAY || t == CONFIG_TYPE_LIST;
    default: return t == CONFIG_TYPE_STRING;
    }
}

/* Unknown keys, missing required ones, scalar types, enum values. */
static void check_keys(camp_env *e, camp_activity *a, const baton_activity_type *t)
{
    config_setting_t *g = a->group;
    for (int i = 0; i < config_setting_length(g); i++) {
        config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(m);
        int known = 0;
        for (const char *const *h = host_keys; *h; h++)
            known |= strcmp(*h, name) == 0;
        const baton_config_key *k = NULL;
        for (const baton_config_key *kk = t->keys; kk && kk->name; kk++)
            if (strcmp(kk->name, name) == 0)
                k = kk;
        if (!known && !k) {
            const char *cands[64];
            size_t nc = 0;
            buf list;
            buf_init(&list);
            for (const baton_config_key *kk = t->keys; kk && kk->name && nc < 64; kk++) {
                cands[nc++] = kk->name;
                buf_addf(&list, "%s%s", list.len ? ", " : "", kk->name);
            }
            const char *near = suggest_nearest(name, cands, nc);
            diag_error(e->d, e->c->file, (int)config_setting_source_line(m),
                       "activity '%s': unknown key '%s' for a %s activity%s%s%s; known keys: %s",
                       a->id, name, a->type_name, near ? " (did you mean '" : "", near ? near : "",
                       near ? "'?)" : "", list.len ? list.data : "(none)");
            buf_free(&list);
            continue;
        }
        if (!k)
            continue;
        /* end's parameters are a group of values, which no key type says */
        int group_ok = !strcmp(a->type_name, "end") && !strcmp(name, "parameters") &&
                       config_setting_type(m) == CONFIG_TYPE_GROUP;
        if (!group_ok && !strcmp(a->type_name, "end") && !strcmp(name, "parameters")) {
            diag_error(e->d, e->c->file, (int)config_setting_source_line(m),
                       "activity '%s': parameters must be a group { NAME = value; ... }", a->id);
            continue;
        }
        if (!group_ok && !cfg_type_ok(k, m)) {
            diag_error(e->d, e->c->file, (int)config_setting_source_line(m),
                       "activity '%s': %s must be %s", a->id, name,
                       k->type == BATON_CFG_LIST    ? "a list"
                       : k->type == BATON_CFG_BOOL  ? "true or false"
                       : k->type == BATON_CFG_INT   ? "an integer"
                       : k->type == BATON_CFG_FLOAT ? "a number"
                                                    : "a string");
            continue;
        }
        if (k->type == BATON_CFG_ENUM && k->choices) {
            const char *v = config_setting_get_string(m);
            int ok = 0;
            buf list;
            buf_init(&list);
            for (const char *const *c = k->choices; *c; c++) {
                ok |= strcmp(*c, v) == 0;
                buf_addf(&list, "%s%s", list.len ? " | " : "", *c);
            }
            if (!ok)
                diag_error(e->d, e->c->file, (int)config_setting_source_line(m),
                           "activity '%s': %s = \"%s\" is not one of %s", a->id, name, v,
                           list.data);
            buf_free(&list);
        }
        if (k->type == BATON_CFG_DURATION) {
            int64_t ms;
            if (duration_parse_ms(config_setting_get_string(m), &ms) != 0)
                diag_error(e->d, e->c->file, (int)config_setting_source_line(m),
                           "activity '%s': %s = \"%s\" is not a duration (\"90s\", \"2h\", \"7d\")",
                           a->id, name, config_setting_get_string(m));
        }
        if (k->has_range && (k->type == BATON_CFG_INT || k->type == BATON_CFG_FLOAT)) {
            double v = config_setting_type(m) == CONFIG_TYPE_FLOAT
                           ? config_setting_get_float(m)
                           : (double)config_setting_get_int64(m);
            if (config_setting_type(m) == CONFIG_TYPE_INT)
                v = config_setting_get_int(m);
            if (v < k->min || v > k->max)
                diag_error(e->d, e->c->file, (int)config_setting_source_line(m),
                           "activity '%s': %s = %g is out of range [%g, %g]", a->id, name, v,
                           k->min, k->max);
        }
    }
    for (const baton_config_key *kk = t->keys; kk && kk->name; kk++)
        if (kk->required && !config_setting_get_member(g, kk->name))
            diag_error(e->d, e->c->file, a->line, "activity '%s': missing required key '%s'", a->id,
                       kk->name);
}

/* Resolve "ab.a" to the producer's output; 0 when every input resolved. */
static int resolve_outputs(camp_env *e, camp_activity *a)
{
    int ok = 1;
    for (size_t j = 0; j < a->ninputs; j++) {
        camp_input *in = &a->inputs[j];
        if (in->act < 0) {
            ok = 0;
            continue;
        }
        camp_activity *p = &e->c->acts[in->act];
        if (!p->checked) {
            ok = 0;
            continue;
        }
        const char *dot = strchr(in->text, '.');
        in->out = campaign_output(p, dot ? dot + 1 : NULL);
        if (in->out >= 0)
            continue;
        /* an alert may follow a send: it reads the run's counts, no rows */
        if (p->nouts == 0 && !dot && !strcmp(a->type_name, "alert"))
            continue;
        ok = 0;
        buf list;
        buf_init(&list);
        for (size_t k = 0; k < p->nouts; k++)
            buf_addf(&list, "%s%s", list.len ? ", " : "", p->outs[k].transition);
        if (p->nouts == 0)
            diag_error(e->d, e->c->file, in->line,
                       "activity '%s': input '%s': a %s activity has no output", a->id, in->text,
                       p->type_name);
        else if (!dot)
            diag_error(e->d, e->c->file, in->line,
                       "activity '%s': input '%s' has several outputs; name one: %s", a->id,
                       in->text, list.data);
        else
            diag_error(e->d, e->c->file, in->line,
                       "activity '%s': input '%s': '%s' has no output '%s'; its outputs: %s", a->id,
                       in->text, p->id, dot + 1, list.data);
        buf_free(&list);
    }
    return ok ? 0 : -1;
}

int camp_check(camp_env *e)
{
    campaign *c = e->c;
    size_t before = e->d->errors;
    const char **names = xcalloc(e->reg->n + 1, sizeof *names);
    for (size_t i = 0; i < e->reg->n; i++)
        names[i] = e->reg->v[i].name;
    for (size_t i = 0; i < c->nacts; i++) {
        camp_activity *a = &c->acts[i];
        a->type = act_registry_find(e->reg, a->type_name);
        if (!a->type) {
            const char *near = suggest_nearest(a->type_name, names, e->reg->n);
            buf list;
            buf_init(&list);
            for (size_t k = 0; k < e->reg->n; k++)
                buf_addf(&list, "%s%s", k ? ", " : "", names[k]);
            diag_error(e->d, c->file, a->line,
                       "activity '%s': unknown type '%s'%s%s%s; known types: %s", a->id,
                       a->type_name, near ? " (did you mean '" : "", near ? near : "",
                       near ? "'?)" : "", list.data);
            buf_free(&list);
            continue;
        }
        if (!a->type->send) /* a send's keys depend on its channel: send_check */
            check_keys(e, a, a->type->t);
    }
    free(names);
    for (size_t k = 0; k < c->norder; k++) {
        camp_activity *a = &c->acts[c->order[k]];
        if (!a->type)
            continue;
        if (resolve_outputs(e, a) != 0) {
            conf_use *u;
            const char *n;
            int l;
            if (a->type->send)
                camp_send_channel(e, a, &u, &n, &l);
            continue;
        }
        size_t errs = e->d->errors;
        baton_activity_ctx x;
        act_ctx_init(&x, e, c->order[k], 0);
        int rc =
            a->type->t->check ? a->type->t->check(a->type->inst ? a->type->inst->state : e, &x) : 0;
        act_ctx_free(&x);
        if (rc == 0 && e->d->errors == errs)
            a->checked = 1;
        else if (e->d->errors == errs)
            diag_error(e->d, c->file, a->line, "activity '%s': its check failed", a->id);
    }
    return e->d->errors == before ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* Plan and run                                                        */
/* ------------------------------------------------------------------ */

char *camp_table_name(const camp_env *e, const camp_activity *a, const camp_output *o)
{
    size_t ai = (size_t)(a - e->c->acts), oi = (size_t)(o - a->outs);
    expr_work w;
    expr_dialect_work(e->dialect, &w);
    if (e->plan) /* temporary: gone with the connection, whatever happens */
        return xasprintf("%s.baton_plan_%zu_%zu", w.temp_schema, ai, oi);
    return xasprintf("%s%sbaton_w%lld_%zu_%zu", w.work_schema ? w.work_schema : "",
                     w.work_schema ? "." : "", (long long)e->run_id, ai, oi);
}

int camp_work_prepare(camp_env *e, int (*keep)(void *ud, int64_t run), void *ud, char *err,
                      size_t errlen)
{
    expr_work w;
    expr_dialect_work(e->dialect, &w);
    if (w.work_schema_ddl && camp_sql(e, w.work_schema_ddl, NULL, 0, NULL, NULL, err, errlen))
        return -1;
    col_list l = {0};
    baton_value prefix = {.type = BATON_T_STRING, .v.s = {"baton_w", 7}};
    if (camp_sql(e, w.work_list, &prefix, 1, take_col, &l, err, errlen))
        return -1;
    int rc = 0;
    for (size_t i = 0; i < l.n; i++) {
        char *end;
        long long run = strtoll(l.names[i] + 7, &end, 10);
        /* baton_w<run>_<activity>_<output>, with its _s or _imp helpers */
        if (rc == 0 && end != l.names[i] + 7 && *end == '_' && run > 0 && !keep(ud, run)) {
            char *sql = xasprintf("DROP TABLE IF EXISTS %s%s%s", w.work_schema ? w.work_schema : "",
                                  w.work_schema ? "." : "", l.names[i]);
            rc = camp_sql(e, sql, NULL, 0, NULL, NULL, err, errlen);
            free(sql);
        }
    }
    col_list_free(&l);
    return rc;
}

void camp_drop_tables(camp_env *e)
{
    for (size_t i = 0; i < e->c->nacts; i++) {
        camp_activity *a = &e->c->acts[i];
        if (!a->type || a->type->flow)
            continue; /* flow outputs are their input's table */
        for (size_t j = 0; j < a->nouts; j++) {
            char *t = camp_table_name(e, a, &a->outs[j]);
            char *sql = xasprintf("DROP TABLE IF EXISTS %s", t);
            char err[256];
            camp_sql(e, sql, NULL, 0, NULL, NULL, err, sizeof err);
            free(sql);
            free(t);
        }
    }
    expr_groups_drop(e->groups);
}

static int run_one(camp_env *e, size_t i)
{
    camp_activity *a = &e->c->acts[i];
    act_state *s = &e->s[i];
    int64_t t0 = deadline_now_ms();
    int tty = e->progress && isatty(fileno(e->progress));
    if (tty)
        fprintf(e->progress, "  %-16s %-16s ...", a->id, a->type_name);
    if (!s->tables) {
        s->tables = xcalloc(a->nouts + 1, sizeof *s->tables);
        s->counts = xcalloc(a->nouts + 1, sizeof *s->counts);
    }
    char err[512];
    for (size_t j = 0; j < a->nouts; j++) {
        free(s->tables[j]);
        s->counts[j] = -1;
        if (a->type->flow) {
            /* flow activities pass their first input's rows on */
            const camp_input *in = &a->inputs[0];
            s->tables[j] = xstrdup(e->s[in->act].tables[in->out]);
            continue;
        }
        s->tables[j] = camp_table_name(e, a, &a->outs[j]);
        char *sql = xasprintf("DROP TABLE IF EXISTS %s", s->tables[j]);
        camp_sql(e, sql, NULL, 0, NULL, NULL, err, sizeof err);
        free(sql);
    }
    int rc;
    if (a->type->send) {
        rc = camp_send_execute(e, i);
    } else if (a->type->flow) {
        rc = 0;
    } else {
        baton_activity_ctx x;
        act_ctx_init(&x, e, i, 1);
        rc = a->type->t->run(a->type->inst ? a->type->inst->state : e, &x);
        act_ctx_free(&x);
        if (rc == 0 && camp_incremental(a) && camp_incremental_apply(e, i) != 0) {
            e->failed = 1;
            rc = -1;
        }
        if (rc != 0 && !e->failed) {
            snprintf(e->error, sizeof e->error, "%s:%d: activity '%s': run failed", e->c->file,
                     a->line, a->id);
        }
    }
    if (rc != 0) {
        e->failed = 1;
        if (tty)
            fprintf(e->progress, " failed\n");
        return -1;
    }
    for (size_t j = 0; j < a->nouts; j++) {
        s->counts[j] = camp_count(e, s->tables[j], err, sizeof err);
        if (s->counts[j] < 0) {
            snprintf(e->error, sizeof e->error, "%s:%d: activity '%s': output '%s': %s", e->c->file,
                     a->line, a->id, a->outs[j].transition, err);
            e->failed = 1;
            return -1;
        }
    }
    s->ms = deadline_now_ms() - t0;
    s->done = 1;
    if (e->progress && !(a->type->send && !e->plan)) { /* a send reports its own line */
        fprintf(e->progress, "%s  %-16s %-16s", tty ? "\r" : "", a->id, a->type_name);
        for (size_t j = 0; j < a->nouts; j++)
            fprintf(e->progress, " %s=%lld", a->outs[j].transition, (long long)s->counts[j]);
        if (a->type->send)
            fprintf(e->progress, " messages=%lld", (long long)s->would_send);
        fprintf(e->progress, " (%lld ms)\n", (long long)s->ms);
    }
    return 0;
}

int camp_execute(camp_env *e)
{
    groups_name(e);
    for (size_t k = 0; k < e->c->norder; k++) {
        size_t i = e->c->order[k];
        if (e->s[i].done)
            continue;
        if (run_one(e, i) != 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Finding a campaign                                                  */
/* ------------------------------------------------------------------ */

char *camp_locate(app *a, const char *name_or_file, diag *d)
{
    if (strchr(name_or_file, '/') || strstr(name_or_file, ".cfg"))
        return xstrdup(name_or_file);
    size_t n;
    char **files = campaign_files(a->conf.campaigns, a->conf.ncampaigns, &n);
    char *hit = NULL;
    const char **names = xcalloc(n + 1, sizeof *names);
    char **owned = xcalloc(n + 1, sizeof *owned);
    buf unread;
    buf_init(&unread);
    for (size_t i = 0; i < n && !hit; i++) {
        config_t lc;
        config_init(&lc);
        if (!config_read_file(&lc, files[i])) {
            if (!unread.len) /* the one the user may be looking for */
                buf_addf(&unread, "; %s:%d does not parse: %s", files[i], config_error_line(&lc),
                         config_error_text(&lc));
        } else {
            const char *nm = NULL;
            if (config_lookup_string(&lc, "campaign.name", &nm)) {
                owned[i] = xstrdup(nm);
                names[i] = owned[i];
                if (strcmp(nm, name_or_file) == 0)
                    hit = xstrdup(files[i]);
            }
        }
        config_destroy(&lc);
    }
    if (!hit) {
        const char *near = suggest_nearest(name_or_file, names, n);
        diag_error(d, NULL, 0, "no campaign named '%s' in the configured campaigns%s%s%s%s",
                   name_or_file, near ? " (did you mean '" : "", near ? near : "",
                   near ? "'?)" : "", unread.len ? unread.data : "");
    }
    buf_free(&unread);
    for (size_t i = 0; i < n; i++)
        free(owned[i]);
    free(owned);
    free(names);
    campaign_files_free(files);
    return hit;
}
