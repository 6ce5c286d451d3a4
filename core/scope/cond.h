/* journey/cond — conditions, filters and `until` expressions of a journey,
 * and the templates of its send nodes, compiled once by core/expr and
 * evaluated in memory. The names an expression sees in a journey:
 *   event.<field>   the event that entered the profile (event.type,
 *                   event.id, event.time read the envelope; anything else
 *                   data.<field>, dotted names into nested objects); in a
 *                   wait_event filter and an exit filter, the event being
 *                   matched
 *   profile.<field> the profile's row in the profiles source (typed by the
 *                   schema of that source), read when the node runs;
 *                   profile.store.city follows many-to-one links, and
 *                   count(profile.orders where ...), sum(), min(), max(),
 *                   avg(), exists() and {{#each profile.orders}} read the
 *                   rows of one-to-many links, from the same source, when
 *                   the expression needs them (see JSCOPE_LINK_ROWS)
 *   <source>.<field> a lookup source (source_http), e.g.
 *                   weather.temperature; a failed lookup reads as null
 *   <action node id>.<field>  a field of the JSON response of an action
 *                   node this instance already ran (points.balance;
 *                   nested objects as points.account.level)
 * Campaign sends render through the same scope (jscope.record): the row
 * being sent is level 0 and linked rows come from the campaign's source,
 * with the same bounds, once per message.
 */
#ifndef BATON_JOURNEY_COND_H
#define BATON_JOURNEY_COND_H

#include <stddef.h>
#include <stdint.h>

#include <baton/baton.h>
#include <jansson.h>

#include "base/diag.h"

struct app;

/* An expression as written in a file (text, line) and, once compiled by
 * jcond_compile, its compiled form (owned here). */
typedef struct jcond {
    char *text;
    int line;
    void *compiled;
} jcond;
struct schema_entity;
struct schema_field;

/* At most this many rows of one link (the orders of one profile) are read
 * for one evaluation, in key order; a link with more is cut there, with a
 * warning in the log: aggregates then see the first rows only. */
#define JSCOPE_LINK_ROWS 1000
/* At most this many linked rows are read in all by one step (nested
 * aggregates multiply them); past it the evaluation fails, naming the
 * expression, rather than stall the engine. */
#define JSCOPE_STEP_ROWS 50000

/* Rows of ent's table whose `column` equals *value, in key order, at most
 * limit: a new JSON array of row objects ([] when none), or NULL with err
 * on failure. One callback serves one-to-many links (column: the link's
 * via) and many-to-one hops (column: the key). */
typedef json_t *(*jrows_fn)(void *ud, const struct schema_entity *ent,
                            const struct schema_field *column, const baton_value *value,
                            size_t limit, char *err, size_t errlen);

/* The profile's row (asked when profile is not NULL: *profile is the row,
 * NULL when there is none) and the rows of n reads (ents[i], cols[i],
 * vals[i]) as jrows_fn gives them, limit each, in one call: one round
 * trip to a source that batches (PostgreSQL). 0 with every output set, or
 * -1 with err and nothing set. */
typedef int (*jbatch_fn)(void *ud, const char *profile_id, json_t **profile, size_t n,
                         const struct schema_entity *const *ents,
                         const struct schema_field *const *cols, const baton_value *vals,
                         size_t limit, json_t **rows, char *err, size_t errlen);

/* Aggregates a SQL source computes (see jaggs_fn): those of expression
 * e over rows, a one-to-many link of the profile itself (profile.orders:
 * a ROWS ref at level 0 without hops), for the profile whose key is key.
 * The source fills nrows (the link's rows; -1 when it computed nothing)
 * and, by aggregate number (expr_agg_count), vals and have (1: computed;
 * strings are the caller's to free). */
struct expr;
struct expr_ref;
typedef struct jagg_read {
    const struct expr *e;
    const struct expr_ref *rows;
    baton_value key;
    int64_t nrows;
    baton_value *vals;
    unsigned char *have;
} jagg_read;

/* The profile's row (asked when profile is not NULL, as jbatch_fn) and
 * the aggregates of n reads at now (seconds), in one call: one round trip
 * to a source that batches, one bound statement per read (expr_aggs_sql,
 * kept prepared by the source). 0 with every output set, or -1 with err
 * and nothing set. */
typedef int (*jaggs_fn)(void *ud, const char *profile_id, json_t **profile, size_t n,
                        jagg_read *reads, int64_t now, char *err, size_t errlen);

/* What the expressions of one journey file are compiled against: the
 * schema of the profiles source and the names of lookup sources and
 * action nodes. */
typedef struct jcompile jcompile;
/* a may be NULL: no configuration, so no schema (profile.* untyped) and
 * no list of sources (any other prefix is taken as untyped). action_ids:
 * the file's action nodes. */
jcompile *jcompile_new(struct app *a, const char *const *action_ids, size_t nactions, diag *d);
void jcompile_free(jcompile *c);
/* The schema the compiled expressions point into: it must outlive them
 * (journey_free frees it last). Ownership passes to the caller. */
void *jcompile_take_schema(jcompile *c);
void jschema_free(void *schema);

/* Compile c->text (a condition when want_bool, else any value: `until`);
 * errors go to d as file:line: where: key: line:col: message. */
void jcond_compile(jcond *c, const jcompile *cc, int want_bool, const char *file, const char *where,
                   const char *key, diag *d);
void jcond_release(jcond *c);
/* Compile c->text as a condition over the profiles entity itself (bare
 * field names, links and aggregates: a campaign filter), for SQL
 * (expr_to_sql): a journey's audience entry. Errors go to d. */
void jcond_compile_profiles(jcond *c, const jcompile *cc, const char *file, const char *where,
                            const char *key, diag *d);
/* Compile a send node's template, its values escaped for `escape` (a
 * TEMPLATE_* context: template_part_escape of the part). NULL after
 * adding errors to d. */
void *jtemplate_compile(const char *text, unsigned escape, const jcompile *cc, const char *file,
                        int line, const char *where, const char *key, diag *d);
void jtemplate_free(void *t);

/* What an expression of one instance reads. */
typedef struct jscope {
    const char *profile_id;
    json_t *event;   /* {"id","type","profile","time","data":{...}} borrowed */
    json_t *results; /* {"<action node>": {...response...}} borrowed, may be NULL */
    int64_t now_ms;  /* now() and today() */
    /* The profile's row (a new JSON object) or NULL when unknown. */
    json_t *(*profile)(void *ud, const char *profile_id);
    /* A lookup source by name (weather): a new JSON object, or NULL. */
    json_t *(*lookup)(void *ud, const char *source, const char *profile_id, json_t *event);
    /* Linked rows (aggregates, {{#each}}, profile.store.city). NULL: those
     * fail with a clear error. */
    jrows_fn rows;
    /* Optional: before an evaluation, the profile and the rows of its own
     * links the expression reads, in one call (see jbatch_fn); what it
     * could not read is read one by one as the evaluation asks. */
    jbatch_fn batch;
    /* Optional: a condition's aggregates over the profile's own links
     * computed by the source (see jaggs_fn), one statement per link
     * instead of its rows read and the aggregate evaluated here; what it
     * cannot compute is evaluated from the rows. */
    jaggs_fn aggs;
    void *ud;
    /* Campaign sends: the row being rendered is level 0 instead of the
     * event and profile (NULL in journeys). Names read it by path, with
     * `record_prefix.` dropped ("profile" when the row is a profile); a
     * one-to-many link at level 0 reads its key from the record under
     * jscope_key_path(). */
    const baton_record *record;
    const char *record_prefix;
    /* filled as the evaluation reads: call jscope_release */
    json_t *profile_row;
    int profile_loaded;
    json_t *lookups;
    struct jlinks *links; /* rows read so far, this step only */
} jscope;

void jscope_release(jscope *s);

/* The record name a level-0 one-to-many ref reads its key from (the ref's
 * path without prefix and link, then the key: "profile.orders" on orders
 * -> "profile.id", "orders" on profiles -> "id"), as a new string. */
struct expr_ref;
char *jscope_key_path(const struct expr_ref *ref, const char *record_prefix);

/* Evaluate a condition: *truth is 1 only when it is true (NULL and false
 * give 0). An absent condition is true. Returns 0, or -1 with err. */
int jcond_truth(const jcond *c, jscope *s, int *truth, char *err, size_t errlen);
/* Evaluate any compiled expression to a value; strings may point into
 * arena or s's rows (valid until expr_arena_reset and jscope_release). */
struct expr_arena;
int jcond_eval(const jcond *c, jscope *s, struct expr_arena *arena, baton_value *out, char *err,
               size_t errlen);
/* Evaluate an `until` expression to a timestamp in ms. */
int jcond_timestamp(const jcond *c, jscope *s, int64_t *ms, char *err, size_t errlen);
/* Render a compiled template into out. 0, or -1 with err. */
int jtemplate_render(const void *t, jscope *s, void *out_buf, char *err, size_t errlen);

#endif
