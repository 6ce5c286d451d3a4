/* expr/sql — compiles a checked expression to a SQL fragment for the data
 * source. Every literal (and every constant part, now() included) is a
 * bound parameter; identifiers come only from the schema, quoted.
 * Placeholders are numbered (?N for SQLite, $N for PostgreSQL) so a
 * fragment may repeat one and fragments compose in any order.
 *
 * Timestamps and dates have two forms here: PLAIN, as stored (ISO 8601
 * text in SQLite, so canonical values compare as text and indexes work),
 * and EPOCH, integer seconds since 1970 for arithmetic. A sub-expression
 * is converted only where an operation needs the other form. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lang/ast.h"
#include "lang/text.h"
#include "base/mem.h"

struct expr_dialect {
    const char *name;
    int dollar; /* $N placeholders, else ?N */
    /* Templates: @1 (and @2) stand for the operands' SQL. */
    const char *ts_epoch, *date_epoch; /* PLAIN → seconds */
    const char *epoch_ts, *epoch_date; /* seconds → PLAIN */
    const char *date_ts;               /* PLAIN date → PLAIN timestamp */
    const char *ts_date;               /* PLAIN timestamp → PLAIN date */
    const char *str_ts, *str_date;     /* a string parsed as one */
    /* A stored column in any form expr_value_stored reads (a field whose
     * stored_any is set): a timestamp to seconds, a date to PLAIN. */
    const char *any_ts_epoch, *any_date;
    const char *length, *trim, *contains, *starts_with, *ends_with;
    const char *year, *month, *day, *hour, *weekday; /* of a PLAIN date or timestamp */
    /* seconds (@1) → the wall clock of zone @2 in seconds, NULL for an
     * unknown zone: the source's function over the host's tz reading */
    const char *tz_local;
    const char *round1, *round2;
    const char *f_true, *f_false;
    int latin_case; /* lower()/upper() know only ASCII: add the Latin letters */
    /* Campaign work tables (expr_dialect_work): the schema of a plan's
     * temporary tables, the schema of a run's tables (NULL: the
     * database's own) with the statement that makes it, how a run's
     * tables are created, and the names of the tables in that schema
     * whose name starts with the bound prefix ($1 / ?1). */
    const char *temp_schema, *work_schema, *work_schema_ddl, *work_create, *work_list;
    /* expr_dialect_cond: a stored value that is true (consent), a text
     * that is blank (space and tab trimmed, as dispatch_recipient) */
    const char *is_true, *is_blank;
    /* expr_dialect_work's index_list; type_ok: whether a column of a
     * declared type holds a field of a baton type (NULL: not checked) */
    const char *index_list;
    int (*type_ok)(int type, const char *declared);
    /* A grouped work table keyed by "k" (expr_groups): @1 the table, @2
     * the key and columns ("k" PRIMARY KEY, "c1", ...) for keyed_create,
     * the SELECT for keyed_fill; keyed_create and keyed_after may be
     * NULL. */
    const char *keyed_create, *keyed_fill, *keyed_after;
    /* keyed_create: the key's declared type by the via field's
     * baton_type (an affinity the lookups' comparison keeps, so they use
     * the key's index) */
    const char *keyed_type[8];
};

/* PostgreSQL's format_type() names, as the compiled SQL needs them: a
 * timestamp compared with a timestamptz parameter, a bool as a WHERE.
 * 1 fits, 0 does not, -1 a type not judged here (domains, enums...). */
static int pg_type_ok(int type, const char *t)
{
    static const char *const ints[] = {"smallint", "integer", "bigint", NULL};
    static const char *const texts[] = {
        "text", "character varying", "character", "citext", "uuid", "name", NULL};
    static const char *const known[] = {"boolean",   "real", "double precision", "numeric", "date",
                                        "timestamp", "time", "interval",         "json",    "jsonb",
                                        "bytea",     NULL};
    int is_int = 0, is_text = 0, is_known = 0;
    for (const char *const *k = ints; *k; k++)
        is_int |= !strcmp(t, *k);
    for (const char *const *k = texts; *k; k++)
        is_text |= !strncmp(t, *k, strlen(*k));
    for (const char *const *k = known; *k; k++)
        is_known |= !strncmp(t, *k, strlen(*k));
    if (!is_int && !is_text && !is_known)
        return -1;
    int num =
        is_int || !strncmp(t, "numeric", 7) || !strcmp(t, "real") || !strcmp(t, "double precision");
    switch (type) {
    case BATON_T_STRING: return is_text;
    case BATON_T_INT: return is_int || !strncmp(t, "numeric", 7);
    case BATON_T_FLOAT: return num;
    case BATON_T_BOOL: return !strcmp(t, "boolean");
    case BATON_T_DATE: return !strcmp(t, "date") || !strncmp(t, "timestamp", 9);
    case BATON_T_TIMESTAMP: return !strncmp(t, "timestamp", 9) || !strcmp(t, "date");
    case BATON_T_DURATION: return is_int || !strncmp(t, "interval", 8);
    default: return -1;
    }
}

const expr_dialect expr_dialect_sqlite = {
    .name = "sqlite",
    .dollar = 0,
    .ts_epoch = "CAST(strftime('%s', @1) AS INTEGER)",
    .date_epoch = "CAST(strftime('%s', @1) AS INTEGER)",
    .epoch_ts = "strftime('%Y-%m-%dT%H:%M:%SZ', @1, 'unixepoch')",
    .epoch_date = "date(@1, 'unixepoch')",
    .date_ts = "(@1 || 'T00:00:00Z')",
    .ts_date = "date(@1)",
    .str_ts = "strftime('%Y-%m-%dT%H:%M:%SZ', @1)",
    .str_date = "date(@1)",
    /* unixepoch() (SQLite 3.38) reads text as strftime('%s') does, at
     * half its cost: no text made and parsed back */
    .any_ts_epoch = "(CASE typeof(@1) WHEN 'integer' THEN @1 WHEN 'real' THEN CAST(@1 AS INTEGER) "
                    "ELSE unixepoch(@1) END)",
    .any_date = "(CASE WHEN typeof(@1) IN ('integer', 'real') THEN date(CAST(@1 AS INTEGER), "
                "'unixepoch') ELSE date(@1) END)",
    .length = "length(@1)",
    .trim = "trim(@1, char(32, 9, 13, 10))",
    .contains = "(instr(@1, @2) > 0)",
    .starts_with = "(substr(@1, 1, length(@2)) = @2)",
    .ends_with = "(substr(@1, length(@1) - length(@2) + 1) = @2)",
    .year = "CAST(strftime('%Y', @1) AS INTEGER)",
    .month = "CAST(strftime('%m', @1) AS INTEGER)",
    .day = "CAST(strftime('%d', @1) AS INTEGER)",
    .hour = "CAST(strftime('%H', @1) AS INTEGER)",
    .weekday = "CAST(strftime('%w', @1) AS INTEGER)",
    .tz_local = "baton_tz_local(@1, @2)", /* source_sqlite registers it */
    .round1 = "round(@1)",
    .round2 = "round(@1, @2)",
    .f_true = "1",
    .f_false = "0",
    .latin_case = 1,
    .is_true = "coalesce((@1) <> 0, 0) = 1",
    .is_blank = "coalesce(trim(@1, ' ' || char(9)), '') = ''",
    /* an INTEGER PRIMARY KEY is the rowid itself: indexed, though no
     * index lists it */
    .index_list = "SELECT ii.name FROM pragma_index_list(?1) AS il, pragma_index_info(il.name) "
                  "AS ii WHERE ii.seqno = 0 UNION ALL SELECT name FROM pragma_table_info(?1) "
                  "WHERE pk = 1 AND upper(type) = 'INTEGER'",
    .temp_schema = "temp",
    .work_create = "CREATE TABLE",
    .work_list = "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, "
                 "length(?1)) = ?1",
    /* rows stored in key order: the GROUP BY's output goes in as it comes */
    .keyed_create = "CREATE TABLE @1 (@2) WITHOUT ROWID",
    .keyed_fill = "INSERT INTO @1 @2",
    .keyed_after = NULL,
    .keyed_type = {"", "INTEGER", "INTEGER", "REAL", "TEXT", "", "", "INTEGER"},
};

/* PostgreSQL: timestamp columns are timestamptz, dates date, bools
 * boolean; parameters arrive typed. Not exercised against a server here:
 * the hooks are the place to adjust. */
const expr_dialect expr_dialect_postgresql = {
    .name = "postgresql",
    .dollar = 1,
    .ts_epoch = "CAST(EXTRACT(EPOCH FROM @1) AS BIGINT)",
    .date_epoch = "CAST(EXTRACT(EPOCH FROM CAST(@1 AS TIMESTAMP) AT TIME ZONE 'UTC') AS BIGINT)",
    .epoch_ts = "to_timestamp(@1)",
    .epoch_date = "CAST(to_timestamp(@1) AT TIME ZONE 'UTC' AS DATE)",
    .date_ts = "(CAST(@1 AS TIMESTAMP) AT TIME ZONE 'UTC')",
    .ts_date = "CAST(@1 AT TIME ZONE 'UTC' AS DATE)",
    .str_ts = "CAST(@1 AS TIMESTAMPTZ)",
    .str_date = "CAST(CAST(@1 AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS DATE)",
    /* timestamptz and date columns are instants and days whatever the
     * text a client sees */
    .any_ts_epoch = "CAST(EXTRACT(EPOCH FROM @1) AS BIGINT)",
    .any_date = "@1",
    .length = "char_length(@1)",
    .trim = "btrim(@1, E' \\t\\r\\n')",
    .contains = "(strpos(@1, @2) > 0)",
    .starts_with = "(left(@1, char_length(@2)) = @2)",
    .ends_with = "(right(@1, char_length(@2)) = @2)",
    .year = "CAST(EXTRACT(YEAR FROM @1) AS INTEGER)",
    .month = "CAST(EXTRACT(MONTH FROM @1) AS INTEGER)",
    .day = "CAST(EXTRACT(DAY FROM @1) AS INTEGER)",
    .hour = "CAST(EXTRACT(HOUR FROM @1) AS INTEGER)",
    .weekday = "CAST(EXTRACT(DOW FROM @1) AS INTEGER)",
    .tz_local = "pg_temp.baton_tz_local(@1, @2)", /* source_postgres creates it */
    .round1 = "CAST(round(CAST(@1 AS NUMERIC)) AS DOUBLE PRECISION)",
    .round2 = "CAST(round(CAST(@1 AS NUMERIC), CAST(@2 AS INTEGER)) AS DOUBLE PRECISION)",
    .f_true = "TRUE",
    .f_false = "FALSE",
    .latin_case = 0,
    /* a run's tables outlive the session (resume) but need no WAL: they
     * are recomputed when lost, so UNLOGGED, in a schema of baton's own */
    .is_true = "coalesce(CAST(@1 AS BOOLEAN), FALSE)",
    .is_blank = "coalesce(btrim(CAST(@1 AS TEXT), E' \\t'), '') = ''",
    .index_list = "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = "
                  "i.indrelid AND a.attnum = i.indkey[0] WHERE i.indrelid = (SELECT c.oid FROM "
                  "pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN "
                  "unnest(current_schemas(false)) WITH ORDINALITY AS sp(name, pos) ON n.nspname = "
                  "sp.name WHERE c.relname = $1::text ORDER BY sp.pos LIMIT 1)",
    .type_ok = pg_type_ok,
    .temp_schema = "pg_temp",
    .work_schema = "baton_work",
    .work_schema_ddl = "CREATE SCHEMA IF NOT EXISTS baton_work",
    .work_create = "CREATE UNLOGGED TABLE",
    .work_list = "SELECT tablename FROM pg_tables WHERE schemaname = 'baton_work' AND "
                 "left(tablename, char_length($1)) = $1",
    .keyed_create = NULL,
    .keyed_fill = "CREATE TABLE @1 AS @2",
    .keyed_after = "ALTER TABLE @1 ADD PRIMARY KEY (\"k\")",
};

const expr_dialect *expr_dialect_find(const char *name)
{
    if (!name)
        return NULL;
    if (strcmp(name, "sqlite") == 0)
        return &expr_dialect_sqlite;
    if (strcmp(name, "postgresql") == 0 || strcmp(name, "postgres") == 0)
        return &expr_dialect_postgresql;
    return NULL;
}

static char *fill(const char *tmpl, const char *a, const char *b);

const expr_work *expr_dialect_work(const expr_dialect *d, expr_work *w)
{
    if (!d)
        d = &expr_dialect_sqlite;
    *w = (expr_work){d->temp_schema, d->work_schema, d->work_schema_ddl,
                     d->work_create, d->work_list,   d->index_list};
    return w;
}

int expr_dialect_type_ok(const expr_dialect *d, int type, const char *declared)
{
    return d && d->type_ok && declared ? d->type_ok(type, declared) : -1;
}

char *expr_dialect_cond(const expr_dialect *d, expr_cond which, const char *sql)
{
    if (!d)
        d = &expr_dialect_sqlite;
    return fill(which == EXPR_COND_TRUE ? d->is_true : d->is_blank, sql, NULL);
}

/* --- expr_sql ------------------------------------------------------------ */

void expr_sql_init(expr_sql *q)
{
    memset(q, 0, sizeof *q);
    buf_init(&q->sql);
    buf_adds(&q->sql, "");
}

void expr_sql_free(expr_sql *q)
{
    for (size_t i = 0; i < q->nparams; i++)
        if (q->params[i].type == BATON_T_STRING)
            free((char *)q->params[i].v.s.ptr);
    free(q->params);
    buf_free(&q->sql);
    memset(q, 0, sizeof *q);
}

/* Add v to the list; its 1-based number. */
static size_t add_param(expr_sql *q, const baton_value *v)
{
    if (q->nparams == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 8;
        q->params = xrealloc(q->params, q->cap * sizeof *q->params);
    }
    baton_value *p = &q->params[q->nparams++];
    *p = *v;
    if (v->type == BATON_T_STRING) {
        char *s = xmalloc(v->v.s.len + 1);
        if (v->v.s.len)
            memcpy(s, v->v.s.ptr, v->v.s.len);
        s[v->v.s.len] = '\0';
        p->v.s.ptr = s;
    }
    return q->nparams;
}

static void placeholder(buf *b, const expr_dialect *d, size_t n)
{
    buf_addf(b, "%c%zu", d->dollar ? '$' : '?', n);
}

void expr_sql_param(expr_sql *q, const expr_dialect *d, const baton_value *v)
{
    placeholder(&q->sql, d, add_param(q, v));
}

static void ident(buf *b, const char *name)
{
    buf_addc(b, '"');
    for (const char *p = name; *p; p++) {
        if (*p == '"')
            buf_addc(b, '"');
        buf_addc(b, *p);
    }
    buf_addc(b, '"');
}

void expr_sql_ident(expr_sql *q, const expr_dialect *d, const char *name)
{
    ident(&q->sql, name);
}

/* --- generation ---------------------------------------------------------- */

enum { PLAIN, EPOCH };

typedef struct sqlv {
    char *sql;
    int type; /* static type */
    int form; /* PLAIN or EPOCH (timestamps and dates) */
    int is_const;
    baton_value cv; /* is_const: the value (strings borrowed from the arena) */
    size_t pidx;    /* is_const: its parameter's number */
} sqlv;

typedef struct gen {
    const expr *e;
    const expr_dialect *d;
    expr_sql *q;
    int64_t now;
    expr_groups *groups; /* NULL: aggregates as correlated subqueries */
    int in_group;        /* a grouped table's column: tables by marker */
    buf *joins;          /* NULL, or where the current row's grouped tables join */
    size_t *deps;        /* the group tables the SQL so far reads */
    size_t ndeps;
    expr_arena arena;
    const char *alias[EXPR_MAX_LEVEL + 2];
    const schema_entity *entity[EXPR_MAX_LEVEL + 2];
    char *owned_alias[EXPR_MAX_LEVEL + 2];
    int naliases; /* counter for unique aliases */
    char *err;
    size_t errlen;
    int failed;
    int any_times; /* read every date and timestamp field in any stored form */
} gen;

static void gfail(gen *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void gfail(gen *g, const char *fmt, ...)
{
    if (g->failed)
        return;
    g->failed = 1;
    if (g->err && g->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->err, g->errlen, fmt, ap);
        va_end(ap);
    }
}

/* tmpl with @1 and @2 replaced; a new string. */
static char *fill(const char *tmpl, const char *a, const char *b)
{
    buf out;
    buf_init(&out);
    buf_adds(&out, "");
    for (const char *p = tmpl; *p; p++) {
        if (p[0] == '@' && (p[1] == '1' || p[1] == '2')) {
            buf_adds(&out, p[1] == '1' ? a : (b ? b : ""));
            p++;
        } else {
            buf_addc(&out, *p);
        }
    }
    return buf_steal(&out);
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    char *s = xvasprintf(f, ap);
    va_end(ap);
    return s;
}

static void sv_free(sqlv *v)
{
    free(v->sql);
    v->sql = NULL;
}

static int is_time_t(int t)
{
    return t == BATON_T_TIMESTAMP || t == BATON_T_DATE;
}

static char *param_sql(gen *g, const baton_value *v)
{
    baton_value p = *v;
    if (g->d == &expr_dialect_sqlite && p.type == BATON_T_BOOL) {
        p.type = BATON_T_INT; /* SQLite stores bools as 0/1 */
        p.v.i = v->v.b != 0;
    }
    size_t n = add_param(g->q, &p);
    buf b;
    buf_init(&b);
    placeholder(&b, g->d, n);
    return buf_steal(&b);
}

/* Forget a constant's parameter when it was the last one added (it is
 * about to be bound again in another form). */
static void drop_const(gen *g, sqlv *v)
{
    expr_sql *q = g->q;
    if (v->pidx && v->pidx == q->nparams) {
        if (q->params[q->nparams - 1].type == BATON_T_STRING)
            free((char *)q->params[q->nparams - 1].v.s.ptr);
        q->nparams--;
    }
    v->pidx = 0;
}

/* A constant in the form asked for. */
static char *const_sql(gen *g, sqlv *v, int form)
{
    drop_const(g, v);
    v->pidx = g->q->nparams + 1;
    if (form == EPOCH && is_time_t(v->cv.type)) {
        baton_value s = {.type = BATON_T_INT};
        s.v.i = v->cv.type == BATON_T_DATE ? v->cv.v.date * 86400 : v->cv.v.ts;
        return param_sql(g, &s);
    }
    return param_sql(g, &v->cv);
}

/* Convert v to `form` (timestamps and dates only). */
/* The SQL aggregate of fn over val (NULL: count rows; exists counts them). */
static void agg_call(buf *b, agg_id fn, const char *val)
{
    switch (fn) {
    case AGG_COUNT:
        if (val)
            buf_addf(b, "count(%s)", val);
        else
            buf_adds(b, "count(*)");
        break;
    case AGG_SUM: buf_addf(b, "sum(%s)", val); break;
    case AGG_AVG: buf_addf(b, "avg(%s)", val); break;
    case AGG_MIN: buf_addf(b, "min(%s)", val); break;
    case AGG_MAX: buf_addf(b, "max(%s)", val); break;
    case AGG_EXISTS: buf_adds(b, "count(*)"); break;
    }
}

static void to_form(gen *g, sqlv *v, int form)
{
    if (!is_time_t(v->type) || v->form == form)
        return;
    char *s;
    if (v->is_const) {
        s = const_sql(g, v, form);
    } else if (form == EPOCH) {
        s = fill(v->type == BATON_T_DATE ? g->d->date_epoch : g->d->ts_epoch, v->sql, NULL);
    } else {
        s = fill(v->type == BATON_T_DATE ? g->d->epoch_date : g->d->epoch_ts, v->sql, NULL);
    }
    free(v->sql);
    v->sql = s;
    v->form = form;
}

/* A date meeting a timestamp becomes one (midnight UTC). */
static void date_to_ts(gen *g, sqlv *v)
{
    if (v->type != BATON_T_DATE)
        return;
    if (v->is_const) {
        baton_value t = {.type = BATON_T_TIMESTAMP, .v.ts = v->cv.v.date * 86400};
        v->cv = t;
        free(v->sql);
        v->sql = const_sql(g, v, v->form);
    } else if (v->form == PLAIN) {
        char *s = fill(g->d->date_ts, v->sql, NULL);
        free(v->sql);
        v->sql = s;
    }
    /* EPOCH: a date's seconds are already its midnight */
    v->type = BATON_T_TIMESTAMP;
}

static int has_refs(const node *n)
{
    if (!n)
        return 0;
    if (n->kind == N_REF || n->kind == N_AGG)
        return 1;
    for (size_t i = 0; i < n->nkids; i++)
        if (has_refs(n->kids[i]))
            return 1;
    return 0;
}

static sqlv gen_node(gen *g, const node *n, int level);

/* The SQL of a column reached from the row at `level` through hops. */
static char *path_sql(gen *g, int level, const schema_link *const *hops, size_t nhops,
                      const char *column, const char *wrap)
{
    buf b;
    buf_init(&b);
    buf_adds(&b, "");
    if (nhops == 0) {
        ident(&b, g->alias[level]);
        buf_addc(&b, '.');
        ident(&b, column);
        if (!wrap)
            return buf_steal(&b);
        char *col = buf_steal(&b), *w = fill(wrap, col, NULL);
        free(col);
        return w;
    }
    int base = ++g->naliases;
    char a0[64];
    snprintf(a0, sizeof a0, "%s_j%d_%zu", g->alias[0], base, nhops);
    buf_adds(&b, "(SELECT ");
    if (wrap) {
        buf c;
        buf_init(&c);
        buf_adds(&c, "");
        ident(&c, a0);
        buf_addc(&c, '.');
        ident(&c, column);
        char *w = fill(wrap, c.data, NULL);
        buf_adds(&b, w);
        free(w);
        buf_free(&c);
    } else {
        ident(&b, a0);
        buf_addc(&b, '.');
        ident(&b, column);
    }
    buf_adds(&b, " FROM ");
    for (size_t i = 0; i < nhops; i++) {
        char ai[64], prev[64];
        snprintf(ai, sizeof ai, "%s_j%d_%zu", g->alias[0], base, i + 1);
        snprintf(prev, sizeof prev, "%s_j%d_%zu", g->alias[0], base, i);
        if (i)
            buf_adds(&b, " JOIN ");
        ident(&b, hops[i]->to->table);
        buf_adds(&b, " AS ");
        ident(&b, ai);
        if (i) {
            buf_adds(&b, " ON ");
            ident(&b, ai);
            buf_addc(&b, '.');
            ident(&b, hops[i]->to->key->name);
            buf_adds(&b, " = ");
            ident(&b, prev);
            buf_addc(&b, '.');
            ident(&b, hops[i]->via->name);
        }
    }
    char first[64];
    snprintf(first, sizeof first, "%s_j%d_1", g->alias[0], base);
    buf_adds(&b, " WHERE ");
    ident(&b, first);
    buf_addc(&b, '.');
    ident(&b, hops[0]->to->key->name);
    buf_adds(&b, " = ");
    ident(&b, g->alias[level]);
    buf_addc(&b, '.');
    ident(&b, hops[0]->via->name);
    buf_adds(&b, ")");
    return buf_steal(&b);
}

static int sql_reachable(gen *g, const ref_slot *s)
{
    const expr_ref *r = &s->pub;
    if (r->prefix && !s->column) {
        gfail(g,
              "'%s' cannot be computed in SQL: only fields of the schema (and their links) "
              "can",
              r->path);
        return 0;
    }
    if (r->kind == EXPR_REF_VALUE && !r->sfield && !s->column) {
        gfail(g, "'%s' is untyped and cannot be computed in SQL", r->path);
        return 0;
    }
    if (s->column && r->level == 0 && strchr(r->path, '.')) {
        gfail(g, "'%s' cannot be computed in SQL: only fields of the row can", r->path);
        return 0;
    }
    return 1;
}

static sqlv gen_ref(gen *g, const node *n)
{
    const ref_slot *s = g->e->refs[n->ref];
    const expr_ref *r = &s->pub;
    sqlv v = {.type = n->type, .form = PLAIN};
    if (!sql_reachable(g, s)) {
        v.sql = xstrdup("NULL");
        return v;
    }
    const char *wrap = NULL;
    int any = !s->column && (r->sfield->stored_any || g->any_times);
    if (any && r->sfield->type == BATON_T_TIMESTAMP) {
        wrap = g->d->any_ts_epoch; /* instants, whatever the text */
        v.form = EPOCH;
    } else if (any && r->sfield->type == BATON_T_DATE) {
        wrap = g->d->any_date;
    }
    v.sql = path_sql(g, r->level, r->hops, r->nhops, s->column ? s->column : r->sfield->name, wrap);
    return v;
}

/* --- grouped work tables --------------------------------------------------
 * An aggregate whose value and where read only the linked rows (no name
 * of an enclosing row) is the same function of the link's key for every
 * row: one GROUP BY scan of the linked table computes it for all keys at
 * once, into a work table keyed by the link's via value; the row then
 * reads it by its key. Columns of one link go into one table (each with
 * its where as a FILTER), so aggregates registered before the first use
 * (expr_groups_collect: a campaign's check sees every activity's) share
 * one scan. */

typedef struct gcol {
    char *sql; /* the aggregate over "bg", placeholders numbered from 1 */
    baton_value *params;
    size_t nparams;
    size_t *deps; /* group tables its SQL reads */
    size_t ndeps;
} gcol;

typedef struct gtab {
    const schema_link *link;
    char *name;
    gcol *cols;
    size_t ncols;
    int state; /* 0 pending, 1 being made, 2 made */
} gtab;

struct expr_groups {
    const expr_dialect *d;
    char *prefix;
    expr_exec_fn exec;
    void *ud;
    int collect;
    gtab *t;
    size_t nt;
};

expr_groups *expr_groups_new(const expr_dialect *d, const char *prefix, expr_exec_fn exec, void *ud)
{
    expr_groups *g = xcalloc(1, sizeof *g);
    g->d = d ? d : &expr_dialect_sqlite;
    g->prefix = xstrdup(prefix);
    g->exec = exec;
    g->ud = ud;
    return g;
}

void expr_groups_collect(expr_groups *g, int on)
{
    g->collect = on;
}

void expr_groups_prefix(expr_groups *g, const char *prefix)
{
    free(g->prefix);
    g->prefix = xstrdup(prefix);
    for (size_t i = 0; i < g->nt; i++)
        if (g->t[i].state == 0) {
            free(g->t[i].name);
            g->t[i].name = xasprintf("%s%zu", prefix, i + 1);
        }
}

size_t expr_groups_made(const expr_groups *g)
{
    size_t n = 0;
    for (size_t i = 0; g && i < g->nt; i++)
        n += g->t[i].state == 2;
    return n;
}

void expr_groups_drop(expr_groups *g)
{
    for (size_t i = 0; g && i < g->nt; i++) {
        if (g->t[i].state == 0)
            continue;
        char *sql = xasprintf("DROP TABLE IF EXISTS %s", g->t[i].name);
        char err[256];
        g->exec(g->ud, sql, NULL, 0, err, sizeof err);
        free(sql);
        g->t[i].state = 0;
    }
}

static void params_free(baton_value *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i].type == BATON_T_STRING)
            free((char *)p[i].v.s.ptr);
    free(p);
}

void expr_groups_free(expr_groups *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->nt; i++) {
        for (size_t c = 0; c < g->t[i].ncols; c++) {
            free(g->t[i].cols[c].sql);
            params_free(g->t[i].cols[c].params, g->t[i].cols[c].nparams);
            free(g->t[i].cols[c].deps);
        }
        free(g->t[i].cols);
        free(g->t[i].name);
    }
    free(g->t);
    free(g->prefix);
    free(g);
}

static int value_same(const baton_value *a, const baton_value *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case BATON_T_NULL: return 1;
    case BATON_T_BOOL: return a->v.b == b->v.b;
    case BATON_T_FLOAT: return memcmp(&a->v.f, &b->v.f, sizeof a->v.f) == 0;
    case BATON_T_STRING:
        return a->v.s.len == b->v.s.len && memcmp(a->v.s.ptr, b->v.s.ptr, a->v.s.len) == 0;
    default: return a->v.i == b->v.i;
    }
}

static int col_same(const gcol *c, const char *sql, const expr_sql *q)
{
    if (strcmp(c->sql, sql) != 0 || c->nparams != q->nparams)
        return 0;
    for (size_t i = 0; i < q->nparams; i++)
        if (!value_same(&c->params[i], &q->params[i]))
            return 0;
    return 1;
}

/* Whether table `to` is read, directly or not, by table `from`. */
static int reaches(const expr_groups *g, size_t from, size_t to, int depth)
{
    if (from == to)
        return 1;
    if (depth > 64)
        return 1; /* cannot be: say yes, the caller starts a table */
    const gtab *t = &g->t[from];
    for (size_t c = 0; c < t->ncols; c++)
        for (size_t k = 0; k < t->cols[c].ndeps; k++)
            if (reaches(g, t->cols[c].deps[k], to, depth + 1))
                return 1;
    return 0;
}

/* Append frag (placeholders numbered from 1 over params) to q, its
 * placeholders renumbered after q's. Quoted text is copied as it is. */
static void splice(const expr_groups *g_names, expr_sql *q, const expr_dialect *d, const char *frag,
                   const baton_value *params, size_t nparams)
{
    size_t base = q->nparams;
    for (size_t i = 0; i < nparams; i++)
        add_param(q, &params[i]);
    char quote = 0;
    for (const char *p = frag; *p; p++) {
        if (quote) {
            buf_addc(&q->sql, *p);
            if (*p == quote)
                quote = 0;
            continue;
        }
        if (*p == '\'' || *p == '"') {
            quote = *p;
            buf_addc(&q->sql, *p);
            continue;
        }
        if (*p == '\x01') { /* a table read, by number: its name now */
            char *end;
            unsigned long t = strtoul(p + 1, &end, 10);
            buf_adds(&q->sql, t < g_names->nt ? g_names->t[t].name : "NULL");
            p = *end == '\x01' ? end : end - 1;
            continue;
        }
        if ((*p == '?' || *p == '$') && p[1] >= '0' && p[1] <= '9') {
            char *end;
            unsigned long n = strtoul(p + 1, &end, 10);
            placeholder(&q->sql, d, base + n);
            p = end - 1;
            continue;
        }
        buf_addc(&q->sql, *p);
    }
}

static int materialise(expr_groups *g, size_t ti, char *err, size_t errlen);

static int make_deps(expr_groups *g, const gtab *t, char *err, size_t errlen)
{
    for (size_t c = 0; c < t->ncols; c++)
        for (size_t k = 0; k < t->cols[c].ndeps; k++)
            if (materialise(g, t->cols[c].deps[k], err, errlen) != 0)
                return -1;
    return 0;
}

static int run_sql(expr_groups *g, const char *tmpl, const char *a, const char *b,
                   const expr_sql *q, char *err, size_t errlen)
{
    if (!tmpl)
        return 0;
    char *sql = fill(tmpl, a, b);
    int rc = g->exec(g->ud, sql, q ? q->params : NULL, q ? q->nparams : 0, err, errlen);
    free(sql);
    return rc;
}

static int materialise(expr_groups *g, size_t ti, char *err, size_t errlen)
{
    gtab *t = &g->t[ti];
    if (t->state == 2)
        return 0;
    if (t->state == 1) {
        snprintf(err, errlen, "grouped table %s reads itself", t->name);
        return -1;
    }
    t->state = 1;
    if (make_deps(g, t, err, errlen) != 0)
        return -1;
    t = &g->t[ti];
    const expr_dialect *d = g->d;
    const schema_link *l = t->link;
    expr_sql q;
    expr_sql_init(&q);
    buf defs;
    buf_init(&defs);
    buf_addf(&defs, "\"k\" %s PRIMARY KEY", d->keyed_type[l->via->type & 7]);
    buf_adds(&q.sql, "SELECT \"bg\".");
    ident(&q.sql, l->via->name);
    buf_adds(&q.sql, " AS \"k\"");
    for (size_t c = 0; c < t->ncols; c++) {
        buf_addf(&defs, ", \"c%zu\"", c);
        buf_adds(&q.sql, ", ");
        splice(g, &q, d, t->cols[c].sql, t->cols[c].params, t->cols[c].nparams);
        buf_addf(&q.sql, " AS \"c%zu\"", c);
    }
    buf_adds(&q.sql, " FROM ");
    ident(&q.sql, l->from->table);
    buf_adds(&q.sql, " AS \"bg\" WHERE \"bg\".");
    ident(&q.sql, l->via->name);
    buf_adds(&q.sql, " IS NOT NULL GROUP BY \"bg\".");
    ident(&q.sql, l->via->name);
    char *drop = xasprintf("DROP TABLE IF EXISTS %s", t->name);
    int rc = g->exec(g->ud, drop, NULL, 0, err, errlen);
    free(drop);
    if (rc == 0)
        rc = run_sql(g, d->keyed_create, t->name, defs.data, NULL, err, errlen);
    if (rc == 0)
        rc = run_sql(g, d->keyed_fill, t->name, q.sql.data, &q, err, errlen);
    if (rc == 0)
        rc = run_sql(g, d->keyed_after, t->name, NULL, NULL, err, errlen);
    buf_free(&defs);
    expr_sql_free(&q);
    t->state = rc == 0 ? 2 : 0;
    return rc;
}

/* The table and column holding the aggregate sql (over q's parameters)
 * of link l; made now unless collecting. */
static int group_col(gen *gg, const schema_link *l, const char *sql, const expr_sql *q,
                     const size_t *deps, size_t ndeps, size_t *table, size_t *col)
{
    expr_groups *g = gg->groups;
    for (size_t i = 0; i < g->nt; i++)
        if (g->t[i].link == l)
            for (size_t c = 0; c < g->t[i].ncols; c++)
                if (col_same(&g->t[i].cols[c], sql, q)) {
                    *table = i;
                    *col = c;
                    goto found;
                }
    /* a pending table of the link that none of its reads reach */
    size_t ti = g->nt;
    for (size_t i = 0; i < g->nt && ti == g->nt; i++) {
        if (g->t[i].link != l || g->t[i].state != 0)
            continue;
        int cyc = 0;
        for (size_t k = 0; k < ndeps; k++)
            cyc |= reaches(g, deps[k], i, 0);
        if (!cyc)
            ti = i;
    }
    if (ti == g->nt) {
        g->t = xrealloc(g->t, (g->nt + 1) * sizeof *g->t);
        gtab *t = &g->t[g->nt++];
        memset(t, 0, sizeof *t);
        t->link = l;
        t->name = xasprintf("%s%zu", g->prefix, ti + 1);
    }
    gtab *t = &g->t[ti];
    t->cols = xrealloc(t->cols, (t->ncols + 1) * sizeof *t->cols);
    gcol *c = &t->cols[t->ncols++];
    c->sql = xstrdup(sql);
    c->nparams = q->nparams;
    c->params = xcalloc(q->nparams + 1, sizeof *c->params);
    for (size_t i = 0; i < q->nparams; i++) {
        c->params[i] = q->params[i];
        if (q->params[i].type == BATON_T_STRING)
            c->params[i].v.s.ptr = xstrndup(q->params[i].v.s.ptr, q->params[i].v.s.len);
    }
    c->deps = xcalloc(ndeps + 1, sizeof *c->deps);
    if (ndeps)
        memcpy(c->deps, deps, ndeps * sizeof *deps);
    c->ndeps = ndeps;
    *table = ti;
    *col = t->ncols - 1;
found:
    if (!g->collect && g->t[*table].state != 2) {
        char err[512];
        if (materialise(g, *table, err, sizeof err) != 0) {
            gfail(gg, "cannot make the grouped table of %s.%s: %s", l->to->name,
                  l->reverse ? l->reverse : l->from->name, err);
            return -1;
        }
    }
    return 0;
}

/* Whether n's subtree reads only rows at `inner` or deeper. */
static int self_contained(const node *n, const expr *e, int inner)
{
    if (!n)
        return 1;
    if ((n->kind == N_REF || n->kind == N_AGG) && e->refs[n->ref]->pub.level < inner)
        return 0;
    if (n->kind == N_REF && e->refs[n->ref]->column)
        return 0;
    for (size_t i = 0; i < n->nkids; i++)
        if (!self_contained(n->kids[i], e, inner))
            return 0;
    return 1;
}

static void add_dep(gen *g, size_t t)
{
    for (size_t i = 0; i < g->ndeps; i++)
        if (g->deps[i] == t)
            return;
    g->deps = xrealloc(g->deps, (g->ndeps + 1) * sizeof *g->deps);
    g->deps[g->ndeps++] = t;
}

/* The aggregate n read from its grouped table by the key of the row. */
static sqlv gen_grouped(gen *g, const node *n)
{
    const ref_slot *s = g->e->refs[n->ref];
    const expr_ref *r = &s->pub;
    const schema_link *link = r->rows;
    sqlv v = {.type = n->type, .form = PLAIN};
    int inner = n->level;
    expr_sql cq;
    expr_sql_init(&cq);
    gen sub = {.e = g->e, .d = g->d, .q = &cq, .now = g->now, .groups = g->groups, .in_group = 1};
    sub.err = g->err;
    sub.errlen = g->errlen;
    sub.alias[0] = "bg";
    sub.alias[inner] = "bg";
    sub.entity[inner] = link->from;
    expr_arena_init(&sub.arena);
    sqlv val = {0}, where = {0};
    if (n->kids[0])
        val = gen_node(&sub, n->kids[0], inner);
    if (n->kids[1])
        where = gen_node(&sub, n->kids[1], inner);
    if (val.sql && !(val.form == EPOCH && (n->fn == AGG_MIN || n->fn == AGG_MAX)))
        to_form(&sub, &val, PLAIN);
    else if (val.sql)
        v.form = EPOCH;
    buf b;
    buf_init(&b);
    buf_adds(&b, "");
    agg_call(&b, (agg_id)n->fn, val.sql);
    if (where.sql)
        buf_addf(&b, " FILTER (WHERE %s)", where.sql);
    sv_free(&val);
    sv_free(&where);
    size_t ti = 0, ci = 0;
    if (sub.failed) {
        g->failed = 1;
    } else if (group_col(&sub, link, b.data, &cq, sub.deps, sub.ndeps, &ti, &ci) != 0) {
        g->failed = 1;
    }
    buf_free(&b);
    for (int i = 0; i <= EXPR_MAX_LEVEL + 1; i++)
        free(sub.owned_alias[i]);
    expr_arena_free(&sub.arena);
    free(sub.deps);
    expr_sql_free(&cq);
    if (g->failed) {
        v.sql = xstrdup("NULL");
        return v;
    }
    add_dep(g, ti);
    char *key = path_sql(g, r->level, r->hops, r->nhops, link->to->key->name, NULL);
    char ga[64];
    snprintf(ga, sizeof ga, "%s_g%d", g->alias[0], ++g->naliases);
    buf o;
    buf_init(&o);
    buf_adds(&o, "");
    char marker[32];
    snprintf(marker, sizeof marker, "\x01%zu\x01", ti);
    const char *table = g->in_group ? marker : g->groups->t[ti].name;
    if (g->joins && !g->in_group && r->level == 0 && r->nhops == 0) {
        /* the current row's own key: one LEFT JOIN of the table, shared
         * by every column read from it (a scalar subquery is a probe per
         * row, which PostgreSQL never turns into a join) */
        snprintf(ga, sizeof ga, "%s_gj%zu", g->alias[0], ti + 1);
        buf j;
        buf_init(&j);
        buf_addf(&j, " LEFT JOIN %s AS ", table);
        ident(&j, ga);
        buf_adds(&j, " ON ");
        ident(&j, ga);
        buf_addf(&j, ".\"k\" = %s", key);
        if (!g->joins->data || !strstr(g->joins->data, j.data))
            buf_adds(g->joins, j.data);
        buf_free(&j);
        buf_adds(&o, n->fn == AGG_COUNT ? "coalesce(" : "(");
        ident(&o, ga);
        buf_addf(&o, ".\"c%zu\"", ci);
        if (n->fn == AGG_EXISTS) { /* never NULL, as in memory */
            buf_adds(&o, " > 0 AND ");
            ident(&o, ga);
            buf_addf(&o, ".\"c%zu\" IS NOT NULL", ci);
        }
        buf_adds(&o, n->fn == AGG_COUNT ? ", 0)" : ")");
    } else if (n->fn == AGG_EXISTS) {
        buf_addf(&o, "EXISTS (SELECT 1 FROM %s AS ", table);
        ident(&o, ga);
        buf_adds(&o, " WHERE ");
        ident(&o, ga);
        buf_addf(&o, ".\"k\" = %s AND ", key);
        ident(&o, ga);
        buf_addf(&o, ".\"c%zu\" > 0)", ci);
    } else {
        buf_adds(&o, n->fn == AGG_COUNT ? "coalesce((SELECT " : "(SELECT ");
        ident(&o, ga);
        buf_addf(&o, ".\"c%zu\" FROM %s AS ", ci, table);
        ident(&o, ga);
        buf_adds(&o, " WHERE ");
        ident(&o, ga);
        buf_addf(&o, ".\"k\" = %s)%s", key, n->fn == AGG_COUNT ? ", 0)" : "");
    }
    free(key);
    v.sql = buf_steal(&o);
    return v;
}

static sqlv gen_agg(gen *g, const node *n, int level)
{
    const ref_slot *s = g->e->refs[n->ref];
    const expr_ref *r = &s->pub;
    sqlv v = {.type = n->type, .form = PLAIN};
    if (!sql_reachable(g, s) || n->level > EXPR_MAX_LEVEL) {
        v.sql = xstrdup("NULL");
        return v;
    }
    if (g->groups && self_contained(n->kids[0], g->e, n->level) &&
        self_contained(n->kids[1], g->e, n->level))
        return gen_grouped(g, n);
    const schema_link *link = r->rows; /* rows of link->from where via = key */
    /* the key of the row the link points at, seen from the current row */
    const schema_entity *target = link->to;
    /* through links, the key is read from the linked row itself: a
     * dangling reference reaches no row, hence no rows */
    char *key = path_sql(g, r->level, r->hops, r->nhops, target->key->name, NULL);
    int inner = n->level;
    char alias[64];
    snprintf(alias, sizeof alias, "%s_a%d", g->alias[0], ++g->naliases);
    free(g->owned_alias[inner]);
    g->owned_alias[inner] = xstrdup(alias);
    g->alias[inner] = g->owned_alias[inner];
    g->entity[inner] = link->from;

    buf b;
    buf_init(&b);
    buf_adds(&b, "");
    sqlv val = {0}, where = {0};
    if (n->kids[0])
        val = gen_node(g, n->kids[0], inner);
    if (n->kids[1])
        where = gen_node(g, n->kids[1], inner);
    /* min and max of instants stay in seconds when they are read so */
    if (val.sql && !(val.form == EPOCH && (n->fn == AGG_MIN || n->fn == AGG_MAX)))
        to_form(g, &val, PLAIN);
    else if (val.sql)
        v.form = EPOCH;
    buf_adds(&b, n->fn == AGG_EXISTS ? "EXISTS (SELECT 1" : "(SELECT ");
    if (n->fn != AGG_EXISTS)
        agg_call(&b, (agg_id)n->fn, val.sql);
    buf_adds(&b, " FROM ");
    ident(&b, link->from->table);
    buf_adds(&b, " AS ");
    ident(&b, alias);
    buf_adds(&b, " WHERE ");
    ident(&b, alias);
    buf_addc(&b, '.');
    ident(&b, link->via->name);
    buf_addf(&b, " = %s", key);
    if (where.sql)
        buf_addf(&b, " AND (%s)", where.sql);
    buf_addc(&b, ')');
    if (n->fn == AGG_EXISTS) {
        /* EXISTS is never NULL, as in memory */
    }
    sv_free(&val);
    sv_free(&where);
    free(key);
    v.sql = buf_steal(&b);
    return v;
}

/* SQLite's lower()/upper() map ASCII only. A string with other
 * characters is mapped one character at a time by a recursive CTE doing
 * what expr/text does (a nest of replace() calls would overflow SQLite's
 * parser); ASCII strings take the built-in. */
static char *latin_case(const char *s, int upper)
{
    static const char *const map_lower =
        "CASE WHEN @u BETWEEN 65 AND 90 THEN @u + 32 "
        "WHEN @u BETWEEN 192 AND 222 AND @u <> 215 THEN @u + 32 "
        "WHEN @u = 376 THEN 255 "
        "WHEN ((@u BETWEEN 256 AND 303) OR (@u BETWEEN 306 AND 311) OR (@u BETWEEN 330 AND 375)) "
        "AND @u % 2 = 0 THEN @u + 1 "
        "WHEN ((@u BETWEEN 313 AND 328) OR (@u BETWEEN 377 AND 382)) AND @u % 2 = 1 THEN @u + 1 "
        "ELSE @u END";
    static const char *const map_upper =
        "CASE WHEN @u BETWEEN 97 AND 122 THEN @u - 32 "
        "WHEN @u BETWEEN 224 AND 254 AND @u <> 247 THEN @u - 32 "
        "WHEN @u = 255 THEN 376 "
        "WHEN ((@u BETWEEN 257 AND 303) OR (@u BETWEEN 307 AND 311) OR (@u BETWEEN 331 AND 375)) "
        "AND @u % 2 = 1 THEN @u - 1 "
        "WHEN ((@u BETWEEN 314 AND 328) OR (@u BETWEEN 378 AND 382)) AND @u % 2 = 0 THEN @u - 1 "
        "ELSE @u END";
    buf b;
    buf_init(&b);
    buf_addf(&b,
             "CASE WHEN %s GLOB '*[^ -~]*' THEN (WITH RECURSIVE baton_case(baton_s, baton_i, "
             "baton_o) AS (SELECT %s, 1, '' UNION ALL SELECT baton_s, baton_i + 1, baton_o || "
             "char(",
             s, s);
    for (const char *p = upper ? map_upper : map_lower; *p; p++) {
        if (p[0] == '@' && p[1] == 'u') {
            buf_adds(&b, "unicode(substr(baton_s, baton_i, 1))");
            p++;
        } else {
            buf_addc(&b, *p);
        }
    }
    buf_addf(&b,
             ") FROM baton_case WHERE baton_i <= length(baton_s)) SELECT baton_o FROM baton_case "
             "ORDER BY baton_i DESC LIMIT 1) ELSE %s(%s) END",
             upper ? "upper" : "lower", s);
    return buf_steal(&b);
}

static sqlv gen_fn(gen *g, const node *n, int level)
{
    sqlv v = {.type = n->type, .form = PLAIN};
    sqlv a = {0}, b = {0};
    if (n->fn != F_COALESCE && n->nkids > 0)
        a = gen_node(g, n->kids[0], level);
    if (n->fn != F_COALESCE && n->nkids > 1)
        b = gen_node(g, n->kids[1], level);
    const expr_dialect *d = g->d;
    switch ((fn_id)n->fn) {
    case F_LOWER:
    case F_UPPER:
        if (d->latin_case)
            v.sql = latin_case(a.sql, n->fn == F_UPPER);
        else
            v.sql = fmt("%s(%s)", n->fn == F_UPPER ? "upper" : "lower", a.sql);
        break;
    case F_LENGTH: v.sql = fill(d->length, a.sql, NULL); break;
    case F_TRIM: v.sql = fill(d->trim, a.sql, NULL); break;
    case F_CONTAINS: v.sql = fill(d->contains, a.sql, b.sql); break;
    case F_STARTS_WITH: v.sql = fill(d->starts_with, a.sql, b.sql); break;
    case F_ENDS_WITH: v.sql = fill(d->ends_with, a.sql, b.sql); break;
    case F_COALESCE: {
        sqlv *args = xcalloc(n->nkids, sizeof *args);
        int any_ts = 0;
        for (size_t i = 0; i < n->nkids; i++) {
            args[i] = gen_node(g, n->kids[i], level);
            any_ts |= args[i].type == BATON_T_TIMESTAMP;
        }
        buf s;
        buf_init(&s);
        buf_adds(&s, "coalesce(");
        for (size_t i = 0; i < n->nkids; i++) {
            to_form(g, &args[i], PLAIN);
            if (any_ts)
                date_to_ts(g, &args[i]);
            buf_addf(&s, "%s%s", i ? ", " : "", args[i].sql);
            sv_free(&args[i]);
        }
        buf_addc(&s, ')');
        free(args);
        v.sql = buf_steal(&s);
        break;
    }
    case F_ABS: v.sql = fmt("abs(%s)", a.sql); break;
    case F_ROUND:
        v.sql = n->nkids > 1 ? fill(d->round2, a.sql, b.sql) : fill(d->round1, a.sql, NULL);
        break;
    case F_DATE:
        if (a.type == BATON_T_DATE) {
            to_form(g, &a, PLAIN);
            v.sql = a.sql;
            a.sql = NULL;
        } else if (a.type == BATON_T_TIMESTAMP) {
            if (a.form == EPOCH) {
                v.sql = fill(d->epoch_date, a.sql, NULL);
            } else {
                v.sql = fill(d->ts_date, a.sql, NULL);
            }
        } else {
            v.sql = fill(d->str_date, a.sql, NULL);
        }
        break;
    case F_TIMESTAMP:
        if (a.type == BATON_T_TIMESTAMP) {
            to_form(g, &a, PLAIN);
            v.sql = a.sql;
            a.sql = NULL;
        } else if (a.type == BATON_T_DATE) {
            to_form(g, &a, PLAIN);
            v.sql = fill(d->date_ts, a.sql, NULL);
        } else {
            v.sql = fill(d->str_ts, a.sql, NULL);
        }
        break;
    case F_TODAY: { /* in a zone a row gives (without one: a constant) */
        baton_value now = {.type = BATON_T_INT, .v.i = g->now};
        char *p = param_sql(g, &now);
        char *local = fill(d->tz_local, p, a.sql);
        v.sql = fill(d->epoch_date, local, NULL);
        free(p);
        free(local);
        break;
    }
    case F_HOUR:
    case F_WEEKDAY:
        if (n->nkids == 2) { /* in zone b: a timestamp's wall clock there */
            const char *t = n->fn == F_HOUR ? d->hour : d->weekday;
            if (a.type == BATON_T_DATE) { /* a date has no time of day; the zone must be known */
                to_form(g, &a, PLAIN);
                char *day = fill(t, a.sql, NULL);
                char *zero = fill(d->tz_local, "0", b.sql);
                v.sql = fmt("(CASE WHEN %s IS NULL THEN NULL ELSE %s END)", zero, day);
                free(day);
                free(zero);
                break;
            }
            char *epoch;
            if (a.type == BATON_T_TIMESTAMP) {
                to_form(g, &a, EPOCH);
                epoch = xstrdup(a.sql);
            } else { /* a string read as a timestamp */
                char *ts = fill(d->str_ts, a.sql, NULL);
                epoch = fill(d->ts_epoch, ts, NULL);
                free(ts);
            }
            char *local = fill(d->tz_local, epoch, b.sql);
            char *plain = fill(d->epoch_ts, local, NULL);
            v.sql = fill(t, plain, NULL);
            free(epoch);
            free(local);
            free(plain);
            break;
        }
        /* fall through */
    case F_YEAR:
    case F_MONTH:
    case F_DAY: {
        to_form(g, &a, PLAIN);
        const char *t = n->fn == F_YEAR    ? d->year
                        : n->fn == F_MONTH ? d->month
                        : n->fn == F_DAY   ? d->day
                        : n->fn == F_HOUR  ? d->hour
                                           : d->weekday;
        v.sql = fill(t, a.sql, NULL);
        break;
    }
    case F_NOW: /* a constant: folded before we get here */
    default: v.sql = xstrdup("NULL"); break;
    }
    sv_free(&a);
    sv_free(&b);
    return v;
}

/* Bring two operands of a comparison to one form. */
static void align(gen *g, sqlv *a, sqlv *b)
{
    if (!is_time_t(a->type) || !is_time_t(b->type))
        return;
    int epoch = (a->form == EPOCH && !a->is_const) || (b->form == EPOCH && !b->is_const);
    if (epoch) {
        to_form(g, a, EPOCH);
        to_form(g, b, EPOCH);
        return;
    }
    to_form(g, a, PLAIN);
    to_form(g, b, PLAIN);
    if (a->type != b->type) {
        date_to_ts(g, a);
        date_to_ts(g, b);
    }
}

static const char *cmp_op(node_kind k)
{
    switch (k) {
    case N_EQ: return "=";
    case N_NE: return "<>";
    case N_LT: return "<";
    case N_LE: return "<=";
    case N_GT: return ">";
    default: return ">=";
    }
}

static sqlv gen_node(gen *g, const node *n, int level)
{
    sqlv v = {.type = n->type, .form = PLAIN};
    if (g->failed) {
        v.sql = xstrdup("NULL");
        return v;
    }
    if (!has_refs(n)) {
        /* constant: computed here, by the evaluator itself, bound once */
        expr_env env = {.now = g->now};
        expr tmp = *g->e;
        tmp.root = (node *)n;
        char err[128];
        if (expr_eval_at(&tmp, &env, &g->arena, NULL, 0, &v.cv, err, sizeof err) != 0) {
            gfail(g, "%s", err);
            v.sql = xstrdup("NULL");
            return v;
        }
        v.is_const = 1;
        if (v.cv.type != BATON_T_NULL)
            v.type = (int)v.cv.type;
        v.sql = const_sql(g, &v, PLAIN);
        return v;
    }
    sqlv a = {0}, b = {0};
    switch (n->kind) {
    case N_REF: return gen_ref(g, n);
    case N_AGG: return gen_agg(g, n, level);
    case N_FN: return gen_fn(g, n, level);
    case N_AND:
    case N_OR:
        a = gen_node(g, n->kids[0], level);
        b = gen_node(g, n->kids[1], level);
        v.sql = fmt("(%s %s %s)", a.sql, n->kind == N_AND ? "AND" : "OR", b.sql);
        break;
    case N_NOT:
        a = gen_node(g, n->kids[0], level);
        v.sql = fmt("(NOT %s)", a.sql);
        break;
    case N_ISNULL:
    case N_NOTNULL:
        a = gen_node(g, n->kids[0], level);
        v.sql = fmt("(%s IS %sNULL)", a.sql, n->kind == N_NOTNULL ? "NOT " : "");
        break;
    case N_NEG:
        a = gen_node(g, n->kids[0], level);
        v.sql = fmt("(- %s)", a.sql);
        break;
    case N_EQ:
    case N_NE:
    case N_LT:
    case N_LE:
    case N_GT:
    case N_GE:
        a = gen_node(g, n->kids[0], level);
        b = gen_node(g, n->kids[1], level);
        align(g, &a, &b);
        v.sql = fmt("(%s %s %s)", a.sql, cmp_op(n->kind), b.sql);
        break;
    case N_ADD:
    case N_SUB:
    case N_MUL:
    case N_DIV:
    case N_MOD: {
        a = gen_node(g, n->kids[0], level);
        b = gen_node(g, n->kids[1], level);
        int ta = a.type, tb = b.type;
        if (is_time_t(ta) || is_time_t(tb)) {
            /* time arithmetic in seconds */
            to_form(g, &a, EPOCH);
            to_form(g, &b, EPOCH);
            v.sql = fmt("(%s %s %s)", a.sql, n->kind == N_ADD ? "+" : "-", b.sql);
            if (n->type == BATON_T_DATE) {
                /* whole days, floored: back to a date at once */
                char *s = fill(g->d->epoch_date, v.sql, NULL);
                free(v.sql);
                v.sql = s;
                v.form = PLAIN;
            } else if (n->type == BATON_T_TIMESTAMP) {
                v.form = EPOCH;
            }
            break;
        }
        const char *op = n->kind == N_ADD   ? "+"
                         : n->kind == N_SUB ? "-"
                         : n->kind == N_MUL ? "*"
                         : n->kind == N_DIV ? "/"
                                            : "%";
        if (n->kind == N_DIV || n->kind == N_MOD)
            v.sql = fmt("(%s %s NULLIF(%s, 0))", a.sql, op, b.sql);
        else
            v.sql = fmt("(%s %s %s)", a.sql, op, b.sql);
        break;
    }
    case N_IN:
    case N_NOTIN: {
        int neg = n->kind == N_NOTIN;
        if (n->nkids == 1) {
            v.sql = xstrdup(neg ? g->d->f_true : g->d->f_false);
            break;
        }
        size_t k = n->nkids;
        sqlv *items = xcalloc(k, sizeof *items);
        int epoch = 0, ts = 0;
        for (size_t i = 0; i < k; i++) {
            items[i] = gen_node(g, n->kids[i], level);
            epoch |= is_time_t(items[i].type) && items[i].form == EPOCH && !items[i].is_const;
            ts |= items[i].type == BATON_T_TIMESTAMP;
        }
        buf s;
        buf_init(&s);
        buf_adds(&s, "(");
        for (size_t i = 0; i < k; i++) {
            if (is_time_t(items[i].type)) {
                to_form(g, &items[i], epoch ? EPOCH : PLAIN);
                if (!epoch && ts)
                    date_to_ts(g, &items[i]);
            }
            buf_addf(&s, "%s%s", items[i].sql,
                     i == 0      ? (neg ? " NOT IN (" : " IN (")
                     : i + 1 < k ? ", "
                                 : "))");
            sv_free(&items[i]);
        }
        free(items);
        v.sql = buf_steal(&s);
        break;
    }
    default: v.sql = xstrdup("NULL"); break;
    }
    sv_free(&a);
    sv_free(&b);
    return v;
}

int expr_to_sql(const expr *e, const char *alias, const expr_dialect *d, int64_t now, expr_sql *out,
                char *err, size_t errlen)
{
    return expr_to_sql_grouped(e, alias, d, now, NULL, out, err, errlen);
}

int expr_to_sql_grouped(const expr *e, const char *alias, const expr_dialect *d, int64_t now,
                        expr_groups *groups, expr_sql *out, char *err, size_t errlen)
{
    return expr_to_sql_joined(e, alias, d, now, groups, NULL, out, err, errlen);
}

int expr_to_sql_joined(const expr *e, const char *alias, const expr_dialect *d, int64_t now,
                       expr_groups *groups, buf *joins, expr_sql *out, char *err, size_t errlen)
{
    if (!d)
        d = &expr_dialect_sqlite;
    gen g = {.e = e,
             .d = d,
             .q = out,
             .now = now,
             .groups = groups,
             .joins = joins,
             .err = err,
             .errlen = errlen};
    g.alias[0] = alias && *alias ? alias : NULL;
    g.entity[0] = e->entity;
    expr_arena_init(&g.arena);
    if (err && errlen)
        err[0] = '\0';
    if (!g.alias[0]) {
        gfail(&g, "expr_to_sql needs the alias of the current table");
    } else if (!e->entity && has_refs(e->root)) {
        /* names without a schema entity cannot reach a table */
        for (size_t i = 0; i < e->nrefs; i++)
            if (!sql_reachable(&g, e->refs[i]))
                break;
        if (!g.failed && e->nrefs && !e->refs[0]->column)
            gfail(&g, "the expression has no schema entity to compile against");
    }
    size_t mark = out->nparams, len = out->sql.len;
    if (!g.failed) {
        sqlv v = gen_node(&g, e->root, 0);
        to_form(&g, &v, PLAIN);
        if (!g.failed)
            buf_adds(&out->sql, v.sql);
        sv_free(&v);
    }
    for (int i = 0; i <= EXPR_MAX_LEVEL + 1; i++)
        free(g.owned_alias[i]);
    free(g.deps);
    expr_arena_free(&g.arena);
    if (g.failed) {
        /* leave out as it was */
        for (size_t i = mark; i < out->nparams; i++)
            if (out->params[i].type == BATON_T_STRING)
                free((char *)out->params[i].v.s.ptr);
        out->nparams = mark;
        out->sql.len = len;
        out->sql.data[len] = '\0';
        return -1;
    }
    return 0;
}

/* --- aggregates of one record (journeys) ------------------------------------ */

/* PostgreSQL orders and cases text by the database's collation, not
 * bytewise as the evaluator: a value or where that orders strings or
 * changes their case stays in memory there. */
static int collation_free(const node *n)
{
    if (!n)
        return 1;
    switch (n->kind) {
    case N_LT:
    case N_LE:
    case N_GT:
    case N_GE:
        for (size_t i = 0; i < n->nkids; i++)
            if (n->kids[i]->type == BATON_T_STRING || n->kids[i]->type == EXPR_T_ANY)
                return 0;
        break;
    case N_FN:
        if (n->fn == F_LOWER || n->fn == F_UPPER)
            return 0;
        break;
    case N_AGG:
        if ((n->fn == AGG_MIN || n->fn == AGG_MAX) && n->kids[0] &&
            (n->kids[0]->type == BATON_T_STRING || n->kids[0]->type == EXPR_T_ANY))
            return 0;
        break;
    default: break;
    }
    for (size_t i = 0; i < n->nkids; i++)
        if (!collation_free(n->kids[i]))
            return 0;
    return 1;
}

int expr_aggs_sql(const expr *e, const expr_ref *rows, const expr_dialect *d, int64_t now,
                  expr_sql *out, size_t *which, size_t *n, char *err, size_t errlen)
{
    if (!d)
        d = &expr_dialect_sqlite;
    *n = 0;
    expr_sql_init(out);
    if (!rows || rows->kind != EXPR_REF_ROWS || rows->level != 0 || rows->nhops || !rows->rows) {
        snprintf(err, errlen, "'%s' is not a one-to-many link of the record itself",
                 rows ? rows->path : "");
        return -1;
    }
    const schema_link *link = rows->rows;
    baton_value key = {.type = BATON_T_NULL};
    add_param(out, &key); /* the record's key, bound by the caller */
    buf_adds(&out->sql, "SELECT count(*)");
    for (size_t i = 0; i < e->naggs; i++) {
        const node *a = e->aggs[i];
        if (&e->refs[a->ref]->pub != rows || a->level > EXPR_MAX_LEVEL ||
            !self_contained(a->kids[0], e, a->level) || !self_contained(a->kids[1], e, a->level))
            continue;
        if (d != &expr_dialect_sqlite && !collation_free(a))
            continue;
        size_t mark = out->nparams, len = out->sql.len;
        char why[256];
        gen g = {
            .e = e, .d = d, .q = out, .now = now, .any_times = 1, .err = why, .errlen = sizeof why};
        g.alias[0] = "bg";
        g.alias[a->level] = "bg";
        g.entity[a->level] = link->from;
        expr_arena_init(&g.arena);
        sqlv val = {0}, where = {0};
        if (a->kids[0])
            val = gen_node(&g, a->kids[0], a->level);
        if (a->kids[1])
            where = gen_node(&g, a->kids[1], a->level);
        /* min and max of instants come back in seconds (expr_agg_value
         * reads either form) */
        if (val.sql && !(val.form == EPOCH && (a->fn == AGG_MIN || a->fn == AGG_MAX)))
            to_form(&g, &val, PLAIN);
        if (!g.failed) {
            buf_adds(&out->sql, ", ");
            agg_call(&out->sql, (agg_id)a->fn, val.sql);
            if (where.sql)
                buf_addf(&out->sql, " FILTER (WHERE %s)", where.sql);
            which[(*n)++] = i;
        } else { /* this one stays in memory */
            for (size_t k = mark; k < out->nparams; k++)
                if (out->params[k].type == BATON_T_STRING)
                    free((char *)out->params[k].v.s.ptr);
            out->nparams = mark;
            out->sql.len = len;
            out->sql.data[len] = '\0';
        }
        sv_free(&val);
        sv_free(&where);
        for (int k = 0; k <= EXPR_MAX_LEVEL + 1; k++)
            free(g.owned_alias[k]);
        free(g.deps);
        expr_arena_free(&g.arena);
    }
    buf_adds(&out->sql, " FROM ");
    ident(&out->sql, link->from->table);
    buf_adds(&out->sql, " AS \"bg\" WHERE \"bg\".");
    ident(&out->sql, link->via->name);
    buf_adds(&out->sql, " = ");
    placeholder(&out->sql, d, 1);
    if (!*n) {
        snprintf(err, errlen, "no aggregate over '%s' can be computed in SQL", rows->path);
        return -1;
    }
    return 0;
}

int expr_agg_value(const expr *e, size_t agg, const baton_value *col, baton_value *out)
{
    *out = *col;
    if (agg >= e->naggs)
        return -1;
    const node *a = e->aggs[agg];
    baton_value v = *col;
    if (v.type == BATON_T_STRING && a->type != BATON_T_STRING && a->type != EXPR_T_ANY &&
        !is_time_t(a->type))
        expr_num_of_string(v.v.s.ptr, v.v.s.len, &v); /* PostgreSQL's numeric as text */
    if (a->fn == AGG_EXISTS || a->fn == AGG_COUNT) {
        int64_t c = v.type == BATON_T_INT ? v.v.i : v.type == BATON_T_FLOAT ? (int64_t)v.v.f : 0;
        if (v.type == BATON_T_BOOL)
            c = v.v.b;
        if (a->fn == AGG_EXISTS)
            *out = (baton_value){.type = BATON_T_BOOL, .v.b = c > 0};
        else
            *out = (baton_value){.type = BATON_T_INT, .v.i = c};
        return 0;
    }
    if (v.type == BATON_T_NULL) {
        out->type = BATON_T_NULL;
        return 0;
    }
    switch (a->type) {
    case BATON_T_TIMESTAMP:
    case BATON_T_DATE:
        /* text in any stored form, or seconds (min and max of instants) */
        if (!expr_value_stored(&v, a->type) && (int)v.type != a->type)
            v.type = BATON_T_NULL;
        break;
    case BATON_T_FLOAT:
        if (v.type == BATON_T_INT)
            v = (baton_value){.type = BATON_T_FLOAT, .v.f = (double)v.v.i};
        break;
    case BATON_T_DURATION:
        if (v.type == BATON_T_INT)
            v = (baton_value){.type = BATON_T_DURATION, .v.dur = v.v.i};
        break;
    case BATON_T_BOOL:
        if (v.type == BATON_T_INT)
            v = (baton_value){.type = BATON_T_BOOL, .v.b = v.v.i != 0};
        break;
    default: break;
    }
    if (v.type == BATON_T_FLOAT && isnan(v.v.f))
        v.type = BATON_T_NULL;
    *out = v;
    return 0;
}
