/* expr — the expression language of docs/expressions.md: compiled
 * once (parsed, names resolved to slots, type-checked against a scope),
 * then evaluated in memory many times or compiled to SQL.
 *
 *   expr_scope *sc = expr_scope_new(schema, schema_entity_find(schema, "profiles"));
 *   expr_origin o = {"campaigns/winback.cfg", 14, "filter"};
 *   expr *e = expr_compile("tier == 'gold'", sc, &o, EXPR_WANT_BOOL, &d);
 *   ...
 *   expr_env env = {.get = my_get, .rows = my_rows, .ud = ctx, .now = now};
 *   int keep = expr_eval_bool(e, &env, &arena, err, sizeof err);
 *
 * Compiled expressions and scopes are immutable: any number of threads may
 * evaluate one expression at once, each with its own env and arena. An
 * expression keeps a pointer to its scope's schema (not to the scope):
 * free expressions before the schema.
 *
 * Names. A scope says what a name means:
 *   - bare `tier`: a field of the scope's entity (a row of `profiles`);
 *   - `store.city`: through a many-to-one link of that entity (any depth);
 *   - `profile.tier`: a prefix bound to an entity (journeys: profile →
 *     profiles), then fields and links as above;
 *   - `event.total`, `weather.temperature`: an untyped prefix: any field,
 *     its type known only at run time (JSON payloads, lookup sources,
 *     action results). The checker accepts any use of an untyped name and
 *     the evaluator decides by the value's run-time type (see below);
 *   - extra typed names (`orders_90d`, `event.time`): expr_scope_add_field;
 *   - an open scope (plugins' NULL scope) takes every other name as an
 *     untyped field of the record, looked up by its full dotted path.
 * Aggregates range over a one-to-many (reverse) link: `count(orders)`,
 * `sum(orders.amount where amount > 10)`, `count(profile.orders)` in a
 * journey; inside `where`, bare names are fields of the linked entity,
 * and prefixed names (`event.total`) keep their outer meaning.
 *
 * Each distinct name an expression reads is one expr_ref, numbered
 * 0..expr_ref_count()-1 (its slot): the evaluator asks the env for the
 * value of a ref (no string lookups needed on the hot path), and a caller
 * can list an expression's refs to know what to load or select.
 *
 * NULL follows SQL: comparisons and arithmetic with NULL give NULL,
 * and/or/not are three-valued, `x in [..]` is NULL when x is NULL or when
 * nothing matched and the list holds a NULL, a filter keeps a row only
 * when the result is true. Division or modulo by zero gives NULL; integer
 * overflow gives a float (as SQLite does). Integer / integer truncates.
 *
 * Run-time types. The evaluator dispatches on the values it meets, so an
 * untyped name works wherever its value fits: ints and floats compare and
 * add as numbers; a string meeting a timestamp, a date or a number is
 * parsed as one (ISO 8601, or a decimal number); a comparison or an
 * operation on values that still do not fit gives NULL (unknown), never an
 * error, so one odd event never stops a journey.
 *
 * Time: now() and today() read env->now (seconds since the epoch, UTC),
 * never the clock, so tests and simulated clocks fix them. timestamp ±
 * duration = timestamp, timestamp − timestamp = duration, date ± duration
 * = date (whole days), date − date = duration; a date meets a timestamp as
 * its midnight UTC. weekday() is 0 for Sunday .. 6 for Saturday.
 *
 * Strings are UTF-8: length() counts characters; lower()/upper() map
 * ASCII and the Latin-1 Supplement and Latin Extended-A letters; trim()
 * strips spaces, tabs, CR and LF; comparisons are bytewise (SQLite's
 * BINARY collation). */
#ifndef BATON_EXPR_H
#define BATON_EXPR_H

#include <stddef.h>
#include <stdint.h>

#include <baton/baton.h>

#include "base/buf.h"
#include "base/diag.h"
#include "schema/schema.h"

typedef struct expr expr;
typedef struct expr_scope expr_scope;

/* The static type of an expression or a ref: a baton_type, or this when
 * it is known only at run time. */
#define EXPR_T_ANY (-1)

/* ------------------------------------------------------------------ */
/* Scopes                                                              */
/* ------------------------------------------------------------------ */

/* A scope whose bare names are fields, links and reverse links of entity
 * (NULL: no bare names). s may be NULL when the scope uses no entity. */
expr_scope *expr_scope_new(const schema *s, const schema_entity *entity);
/* `prefix.x` resolves in entity ("profile" → profiles). */
void expr_scope_add_entity(expr_scope *sc, const char *prefix, const schema_entity *entity);
/* `prefix.anything` is an untyped field ("event", "weather"). */
void expr_scope_add_untyped(expr_scope *sc, const char *prefix);
/* One typed name, bare ("orders_90d") or dotted ("event.time"); it wins
 * over the other rules. `column` is its SQL column on the current row
 * (NULL: the name itself); only bare names can be compiled to SQL. */
void expr_scope_add_field(expr_scope *sc, const char *name, baton_type type, const char *column);
/* Every name no other rule knows is an untyped field read at run time by
 * its full path (the record env looks "a.b" up as the field "a.b"). */
void expr_scope_set_open(expr_scope *sc, int open);
void expr_scope_free(expr_scope *sc);

/* The journey scope of docs/journeys.md: `profile.*` in the profiles
 * entity of s (NULL: untyped), `event.*` untyped but for the envelope
 * `event.type`, `event.id` (string) and `event.time` (timestamp), and
 * each of the `nsources` names (lookup sources, custom action results) an
 * untyped prefix. */
expr_scope *expr_scope_journey(const schema *s, const schema_entity *profiles,
                               const char *const *sources, size_t nsources);

/* ------------------------------------------------------------------ */
/* Compiling                                                           */
/* ------------------------------------------------------------------ */

/* Where an expression was written, for messages:
 * "campaigns/winback.cfg:14: filter: 1:9: unknown field ..." */
typedef struct expr_origin {
    const char *file;    /* may be NULL */
    int line;            /* of the setting; 0 when unknown */
    const char *setting; /* "filter", "branches[1].when"; may be NULL */
} expr_origin;

enum {
    EXPR_WANT_BOOL = 1, /* the result must be a condition (bool or untyped) */
};

/* Compile text in scope. Every error goes to d (file, line, then the
 * setting and line:col within the text), each saying what was expected
 * and, for a misspelt name, the nearest one. Returns NULL when any error
 * was found. o may be NULL. */
expr *expr_compile(const char *text, const expr_scope *sc, const expr_origin *o, unsigned flags,
                   diag *d);
/* The same, with the first error written to err as "1:9: message". */
expr *expr_compile_msg(const char *text, const expr_scope *sc, unsigned flags, char *err,
                       size_t errlen);
void expr_free(expr *e);

/* The result's static type: a baton_type or EXPR_T_ANY (BATON_T_NULL for
 * the literal null). */
int expr_result_type(const expr *e);
/* The source text, as compiled. */
const char *expr_text(const expr *e);
/* A number no other expression compiled by this process has (a cache
 * key that outlives e safely, as its address does not). */
uint64_t expr_id(const expr *e);

/* ------------------------------------------------------------------ */
/* Refs: the names an expression reads                                 */
/* ------------------------------------------------------------------ */

typedef enum expr_ref_kind {
    EXPR_REF_VALUE = 1, /* a field's value */
    EXPR_REF_ROWS       /* the rows of a one-to-many link (aggregates, #each) */
} expr_ref_kind;

typedef struct expr_ref {
    int slot; /* index among the expression's refs */
    expr_ref_kind kind;
    const char *path;            /* as written, relative to its row: "tier",
                                    "store.city", "profile.tier", "event.total",
                                    "orders" (ROWS) */
    const char *prefix;          /* "profile", "event", "weather" when the name
                                    started with a scope prefix, else NULL */
    const char *field;           /* the last segment: "city" */
    int type;                    /* VALUE: baton_type or EXPR_T_ANY */
    const schema_entity *entity; /* whose field it is (NULL: untyped) */
    const schema_field *sfield;  /* VALUE in the schema, else NULL */
    /* Many-to-one links followed from the row to reach the field, in
     * order (store.city: orders.store), and their count. */
    const schema_link *const *hops;
    size_t nhops;
    const schema_link *rows;      /* ROWS: the link whose `from` rows are
                                     listed (profiles.orders: orders.profile) */
    int level;                    /* 0: the record evaluated; k > 0: a row of
                                     the k-th enclosing aggregate or #each */
    const struct expr_ref *outer; /* the ROWS ref that provides the row at
                                     `level` (NULL at level 0) */
} expr_ref;

size_t expr_ref_count(const expr *e);
/* The aggregates of e (count(), sum()...), numbered 0..n-1 in the order
 * of the text. */
size_t expr_agg_count(const expr *e);
/* The ROWS ref aggregate agg ranges over. */
const expr_ref *expr_agg_rows(const expr *e, size_t agg);
const expr_ref *expr_ref_at(const expr *e, size_t i);

/* ------------------------------------------------------------------ */
/* Evaluating                                                          */
/* ------------------------------------------------------------------ */

/* How an evaluation reads names. `row` is NULL for the record being
 * evaluated (level 0), or a row pointer handed out by rows() for refs at a
 * deeper level. */
typedef struct expr_env {
    /* Fill *out with ref's value on row. Return 0, or 1 when absent (read
     * as NULL), or -1 on failure (the evaluation fails; write err).
     * Strings must stay valid until the evaluation returns. */
    int (*get)(void *ud, const void *row, const expr_ref *ref, baton_value *out, char *err,
               size_t errlen);
    /* The rows of a ROWS ref on row: *rows and *n, valid until the
     * evaluation returns. NULL: aggregates fail with a clear error.
     * Return 0, or -1 on failure (write err). */
    int (*rows)(void *ud, const void *row, const expr_ref *ref, const void *const **rows, size_t *n,
                char *err, size_t errlen);
    void *ud;
    int64_t now; /* seconds since the epoch: now(), today() */
    /* Optional: the value of aggregate `agg` of e (see expr_aggs_sql)
     * over a one-to-many link of the record itself (level 0), computed
     * ahead. 0 with *out (strings valid until the evaluation returns), or
     * 1: the evaluator computes it from rows(). */
    int (*agg)(void *ud, const expr *e, size_t agg, baton_value *out);
} expr_env;

/* Memory for the strings an evaluation makes (lower(), trim() of a
 * computed value...): chunks that never move, reused after a reset, so a
 * warmed-up arena allocates nothing. One per thread. */
typedef struct expr_arena {
    struct expr_chunk *head; /* the chunk being filled */
    struct expr_chunk *free; /* chunks kept for reuse */
} expr_arena;

void expr_arena_init(expr_arena *a);
/* Forget every string made so far (results become invalid). */
void expr_arena_reset(expr_arena *a);
void expr_arena_free(expr_arena *a);

/* Evaluate e. *out may point into the env's data or into arena (valid
 * until expr_arena_reset). Returns 0, or -1 with err (a failing env
 * callback, rows not available). arena may be NULL only for expressions
 * that make no strings. */
int expr_eval(const expr *e, const expr_env *env, expr_arena *arena, baton_value *out, char *err,
              size_t errlen);
/* As a filter: 1 when the result is true, 0 when false or NULL, -1 on
 * failure. */
int expr_eval_bool(const expr *e, const expr_env *env, expr_arena *arena, char *err, size_t errlen);

/* An env over baton_records: get() looks a ref up by its path in the
 * record (row NULL: ud; else the row, itself a const baton_record *),
 * rows() is absent. Use expr_record_get as the get of your own env to
 * add rows. */
expr_env expr_env_record(const baton_record *r, int64_t now);
int expr_record_get(void *ud, const void *row, const expr_ref *ref, baton_value *out, char *err,
                    size_t errlen);

/* ------------------------------------------------------------------ */
/* Values                                                              */
/* ------------------------------------------------------------------ */

/* Compare two non-NULL values as the language does: -1, 0, 1, or 2 when
 * they cannot be compared (different kinds). */
int expr_value_compare(const baton_value *a, const baton_value *b);
/* Append v as text: strings raw, ints, floats (%.15g, always with a
 * digit), true/false, dates YYYY-MM-DD, timestamps ISO 8601 UTC,
 * durations "90s"/"7d", NULL as nothing. */
void expr_value_format(const baton_value *v, buf *out);
/* 1 for a true bool, 0 otherwise (false, NULL, other types). */
int expr_value_true(const baton_value *v);

/* A value as a data source stored it, read as `want` (a date or a
 * timestamp; other types are left alone): text in any form
 * timestamp_parse reads (ISO 8601 with T or a space, fractional seconds,
 * Z or an offset; a timestamp in a date column gives its UTC day), an
 * integer or a real as seconds since the epoch (truncated). 1 when *v
 * was converted, 0 when it was left as it was (NULL, another type, text
 * that does not parse). The SQL compiler's normalising expressions
 * (schema_field.stored_any) read stored values the same way. */
int expr_value_stored(baton_value *v, int want);
/* What form a stored value has, for a date or timestamp column: 0
 * canonical (FORMATS.md: "2026-11-23T10:00:00Z", "2026-11-23"), 1 another
 * form expr_value_stored reads, -1 one it cannot read. */
int expr_value_stored_form(const baton_value *v, int want);

/* ------------------------------------------------------------------ */
/* SQL                                                                 */
/* ------------------------------------------------------------------ */

/* A SQL dialect: placeholders, quoting and the functions that differ.
 * Fragments and parameters follow docs/schema.md's SQLite storage:
 * timestamps ISO 8601 UTC text, dates YYYY-MM-DD text, bools 0/1. */
typedef struct expr_dialect expr_dialect;
extern const expr_dialect expr_dialect_sqlite;
extern const expr_dialect expr_dialect_postgresql;
/* By a source's dialect name ("sqlite", "postgresql"), or NULL. */
const expr_dialect *expr_dialect_find(const char *name);

/* Where a dialect keeps a campaign's work tables: temp_schema, the
 * schema of a plan's temporary tables ("temp", "pg_temp"); work_schema,
 * that of a run's tables (NULL: unqualified), made by work_schema_ddl
 * (NULL: nothing to make); work_create, the words that create a run's
 * table ("CREATE TABLE", "CREATE UNLOGGED TABLE"); work_list, a SELECT
 * of the names of the tables in work_schema whose name starts with its
 * one bound parameter; index_list, a SELECT of the first column of every
 * index of the table its one bound parameter names (baton check). */
typedef struct expr_work {
    const char *temp_schema, *work_schema, *work_schema_ddl, *work_create, *work_list, *index_list;
} expr_work;
/* Whether a column of the declared type (as the source's columns()
 * names it) holds a field of baton type `type`: 1 yes, 0 no, -1 not
 * judged (SQLite's affinities, types the dialect does not know). */
int expr_dialect_type_ok(const expr_dialect *d, int type, const char *declared);
const expr_work *expr_dialect_work(const expr_dialect *d, expr_work *w);
/* A SQL condition on the value `sql` in the dialect (a new string):
 * EXPR_COND_TRUE, it is stored true (a consent: 1 or boolean true, never
 * NULL); EXPR_COND_BLANK, it is NULL or only spaces and tabs (an
 * address, as the dispatcher judges it). */
typedef enum { EXPR_COND_TRUE, EXPR_COND_BLANK } expr_cond;
char *expr_dialect_cond(const expr_dialect *d, expr_cond which, const char *sql);

/* A SQL fragment and its parameters, in order. Fragments appended to one
 * expr_sql share its parameter list, so several make one statement. */
typedef struct expr_sql {
    buf sql;
    baton_value *params; /* strings owned by the expr_sql */
    size_t nparams, cap;
} expr_sql;

void expr_sql_init(expr_sql *q);
void expr_sql_free(expr_sql *q);
/* Append a placeholder for v (copied) to q->sql. */
void expr_sql_param(expr_sql *q, const expr_dialect *d, const baton_value *v);
/* Append name as a quoted identifier ("order" → "order"). */
void expr_sql_ident(expr_sql *q, const expr_dialect *d, const char *name);

/* Append e as a SQL expression over the current row, whose table is
 * reachable as `alias` (its entity is the scope's). Every literal and
 * now() (from `now`, seconds since the epoch) is a bound parameter;
 * constant parts are folded into one. Identifiers come from the schema
 * only, quoted. Many-to-one links become correlated subqueries on the
 * target's key, aggregates subqueries over the reverse link. Values come
 * back in docs/schema.md storage form (a timestamp as ISO text, a bool as
 * 0/1, a duration as integer seconds). Returns 0, or -1 with err when e
 * reads a name SQL cannot reach (an untyped or prefixed name). */
int expr_to_sql(const expr *e, const char *alias, const expr_dialect *d, int64_t now, expr_sql *out,
                char *err, size_t errlen);

/* Grouped work tables (set-based aggregates). With groups, an aggregate
 * over a one-to-many link whose value and where read only the linked rows
 * is computed for every key at once by one GROUP BY scan of the linked
 * table into a work table keyed by the link's `via` (NULL vias left out),
 * and the row reads its value by key (count 0 and exists false when the
 * key has no rows, as in memory). Every aggregate of one link seen so far
 * is a column of the same table, its where a FILTER: compile every
 * expression once with collecting on (no SQL runs) and the scan made at
 * the first use serves them all. Tables are named prefix1, prefix2...;
 * exec runs each statement (with its bound parameters) on the source the
 * SQL is for. Aggregates reading an enclosing row (a typed extra field
 * inside where) stay correlated subqueries. */
typedef struct expr_groups expr_groups;
typedef int (*expr_exec_fn)(void *ud, const char *sql, const baton_value *params, size_t nparams,
                            char *err, size_t errlen);
expr_groups *expr_groups_new(const expr_dialect *d, const char *prefix, expr_exec_fn exec,
                             void *ud);
/* on: register aggregates, make no table (the SQL returned names tables
 * that do not exist yet). */
void expr_groups_collect(expr_groups *g, int on);
/* Name the tables not made yet prefix1, prefix2... (by registration). */
void expr_groups_prefix(expr_groups *g, const char *prefix);
/* How many tables were made (and not dropped). */
size_t expr_groups_made(const expr_groups *g);
/* Drop every table made; registered aggregates are kept (made again at
 * their next use). */
void expr_groups_drop(expr_groups *g);
void expr_groups_free(expr_groups *g);
/* expr_to_sql, reading aggregates from groups (NULL: correlated). A
 * table that fails to be made fails the compile with its error. */
int expr_to_sql_grouped(const expr *e, const char *alias, const expr_dialect *d, int64_t now,
                        expr_groups *groups, expr_sql *out, char *err, size_t errlen);
/* expr_to_sql_grouped, an aggregate keyed by the current row's own key
 * read through a LEFT JOIN of its table, appended to joins (each join
 * once: pass the same buf for every expression of one statement), which
 * the caller puts right after the FROM item `alias`. */
int expr_to_sql_joined(const expr *e, const char *alias, const expr_dialect *d, int64_t now,
                       expr_groups *groups, buf *joins, expr_sql *out, char *err, size_t errlen);

/* The aggregates of e over one one-to-many link of the record itself
 * (rows: a ROWS ref at level 0 without hops, profile.orders in a
 * journey), computed by the source for one record at a time: one SELECT
 * over the linked rows whose via equals its parameter 1 (left NULL in
 * out->params: the caller binds the record's key there). Column 0 is the
 * number of those rows (the caller decides whether the evaluator would
 * have cut them), column k + 1 the aggregate which[k], for each of the *n
 * aggregates over that link whose value and where read only those rows
 * and compile to SQL that answers as the evaluator does (dates and
 * timestamps read in any stored form; on PostgreSQL none that orders or
 * cases text, which its collation does otherwise). which has room for
 * expr_agg_count(e). Returns 0, or -1 with err when none can be. */
int expr_aggs_sql(const expr *e, const expr_ref *rows, const expr_dialect *d, int64_t now,
                  expr_sql *out, size_t *which, size_t *n, char *err, size_t errlen);
/* The value the evaluator gives aggregate agg of e, from the column of
 * expr_aggs_sql the source returned (strings point into col's). */
int expr_agg_value(const expr *e, size_t agg, const baton_value *col, baton_value *out);

#endif
