#include "scope/source.h"

#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "lang/expr.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/record.h"
#include "schema/schema.h"
#include "schema/schema_source.h"
#include "base/timefmt.h"

struct jsource {
    app *a;
    instance *profiles; /* the SQL source holding profiles, or NULL */
    char *table, *key;
    const expr_dialect *dialect; /* the profiles source's (sqlite without one) */
    instance **lookups;
    size_t nlookups;
    instance **owned; /* instances this module created (not the app's) */
    size_t nowned;
    pthread_mutex_t lock; /* exec is one call at a time per instance */
    struct agg_sql *aggc; /* under lock */
    size_t naggc;
    unsigned tick;
};

/* The statements of aggregates computed here (expr_aggs_sql), compiled
 * once for this source's dialect by expression, link and now (now() is a
 * bound constant: one compile a second at most), so the text is the
 * same from profile to profile and the source keeps it prepared. */
#define AGG_CACHE 64
#define JAGGS_MAX 8 /* reads in one call: the links of one expression */
typedef struct agg_sql {
    uint64_t id; /* expr_id; 0: free */
    const expr_ref *rows;
    int64_t now;
    int ok;
    expr_sql q;
    size_t *which, n;
    unsigned used;
} agg_sql;

/* The app's instance when it has one (serve), else one of our own. */
static instance *source_instance(jsource *s, const char *name, diag *d)
{
    instance *inst = app_find(s->a, "sources", name);
    if (inst)
        return inst->phase == INSTANCE_RUNNING || inst->phase == INSTANCE_READY ? inst : NULL;
    conf_use *u = conf_find(&s->a->conf, "sources", name);
    if (!u || !u->plugin)
        return NULL;
    char err[1024];
    plugin *p = plugin_load(&s->a->reg, u->plugin, err, sizeof err);
    if (!p) {
        diag_error(d, u->file, u->line, "%s: %s", u->where, err);
        return NULL;
    }
    inst = instance_create(p, u, s->a->conf.dir, d);
    if (!inst)
        return NULL;
    if (instance_init(inst) || instance_start(inst)) {
        diag_error(d, u->file, u->line, "%s: %s", u->where, inst->error);
        instance_destroy(inst);
        return NULL;
    }
    s->owned = xrealloc(s->owned, (s->nowned + 1) * sizeof *s->owned);
    s->owned[s->nowned++] = inst;
    return inst;
}

jsource *jsource_open(app *a, diag *d)
{
    jsource *s = xcalloc(1, sizeof *s);
    s->a = a;
    pthread_mutex_init(&s->lock, NULL);
    /* the profiles entity of the schema says which table and key */
    schema *sch = a->schema ? a->schema : schema_load_profiles(&a->conf, NULL);
    const schema_entity *pe = sch ? schema_entity_find(sch, "profiles") : NULL;
    s->table = xstrdup(pe ? pe->table : "profiles");
    s->key = xstrdup(pe && pe->key ? pe->key->name : "id");
    if (sch != a->schema)
        schema_destroy(sch);
    if (a->conf.profiles) {
        instance *inst = source_instance(s, a->conf.profiles, d);
        const baton_source_ops *ops = inst ? instance_source(inst) : NULL;
        if (ops && ops->exec)
            s->profiles = inst;
        s->dialect = ops && ops->dialect ? expr_dialect_find(ops->dialect) : NULL;
    }
    if (!s->dialect)
        s->dialect = &expr_dialect_sqlite;
    for (size_t i = 0; i < a->conf.nuses; i++) {
        conf_use *u = &a->conf.uses[i];
        if (u->kind != BATON_KIND_SOURCE ||
            (a->conf.profiles && !strcmp(u->name, a->conf.profiles)))
            continue;
        /* only lookup sources are read per profile; SQL ones belong to
         * campaigns and are not opened here */
        char err[1024];
        plugin *p = u->plugin ? plugin_load(&a->reg, u->plugin, err, sizeof err) : NULL;
        const baton_source_ops *ops = p ? p->desc.ops : NULL;
        if (!ops || !ops->lookup)
            continue;
        instance *inst = source_instance(s, u->name, d);
        if (inst) {
            s->lookups = xrealloc(s->lookups, (s->nlookups + 1) * sizeof *s->lookups);
            s->lookups[s->nlookups++] = inst;
        }
    }
    return s;
}

instance *jsource_profiles(jsource *s)
{
    return s ? s->profiles : NULL;
}

void jsource_close(jsource *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nowned; i++)
        instance_destroy(s->owned[i]);
    free(s->owned);
    for (size_t i = 0; i < s->naggc; i++) {
        expr_sql_free(&s->aggc[i].q);
        free(s->aggc[i].which);
    }
    free(s->aggc);
    free(s->lookups);
    free(s->table);
    free(s->key);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static json_t *value_json(const baton_value *v)
{
    char text[32];
    switch (v->type) {
    case BATON_T_NULL: return json_null();
    case BATON_T_BOOL: return json_boolean(v->v.b);
    case BATON_T_INT: return json_integer(v->v.i);
    case BATON_T_FLOAT: return json_real(v->v.f);
    case BATON_T_STRING: return json_stringn(v->v.s.ptr, v->v.s.len);
    case BATON_T_DATE: date_format(v->v.date, text); return json_string(text);
    case BATON_T_TIMESTAMP: timestamp_format(v->v.ts, text); return json_string(text);
    case BATON_T_DURATION: return json_integer(v->v.dur);
    }
    return json_null();
}

static int row_to_json(void *ud, size_t ncols, const char *const *names, const baton_value *values)
{
    json_t **out = ud;
    *out = json_object();
    for (size_t i = 0; i < ncols; i++)
        json_object_set_new(*out, names[i], value_json(&values[i]));
    return 1; /* one row is all we want */
}

/* "SELECT <what> FROM <profiles> WHERE <key> = <the profile>" in the
 * source's dialect (one statement text per jsource: kept prepared). */
static void by_key(jsource *s, const char *what, const char *profile_id, expr_sql *q)
{
    const expr_dialect *d = s->dialect;
    expr_sql_init(q);
    buf_addf(&q->sql, "SELECT %s FROM ", what);
    expr_sql_ident(q, d, s->table);
    buf_adds(&q->sql, " WHERE ");
    expr_sql_ident(q, d, s->key);
    buf_adds(&q->sql, " = ");
    baton_value p = {.type = BATON_T_STRING, .v.s = {profile_id, strlen(profile_id)}};
    expr_sql_param(q, d, &p);
}

static json_t *profile_row(void *ud, const char *profile_id)
{
    jsource *s = ud;
    if (!s || !s->profiles)
        return NULL;
    const baton_source_ops *ops = instance_source(s->profiles);
    expr_sql q;
    by_key(s, "*", profile_id, &q);
    json_t *row = NULL;
    char err[512] = "";
    pthread_mutex_lock(&s->lock);
    int rc = ops->exec(s->profiles->state, q.sql.data, q.params, q.nparams, row_to_json, &row, err,
                       sizeof err);
    pthread_mutex_unlock(&s->lock);
    expr_sql_free(&q);
    if (rc) {
        log_msg(BATON_LOG_WARN, "journey", "profile %s: %s: %s", profile_id, s->profiles->where,
                err);
        json_decref(row);
        return NULL;
    }
    return row;
}

typedef struct rows_acc {
    json_t *rows;
    size_t limit;
} rows_acc;

static int row_append(void *ud, size_t ncols, const char *const *names, const baton_value *values)
{
    rows_acc *acc = ud;
    json_t *o = json_object();
    for (size_t i = 0; i < ncols; i++)
        json_object_set_new(o, names[i], value_json(&values[i]));
    json_array_append_new(acc->rows, o);
    return json_array_size(acc->rows) >= acc->limit;
}

/* "SELECT * FROM <ent> WHERE <col> = v ORDER BY <key fields> LIMIT limit". */
static void rows_sql(const expr_dialect *d, const schema_entity *ent, const schema_field *col,
                     const baton_value *v, size_t limit, expr_sql *q)
{
    expr_sql_init(q);
    buf_adds(&q->sql, "SELECT * FROM ");
    expr_sql_ident(q, d, ent->table);
    buf_adds(&q->sql, " WHERE ");
    expr_sql_ident(q, d, col->name);
    buf_adds(&q->sql, " = ");
    expr_sql_param(q, d, v);
    for (size_t i = 0; i < ent->nkeys; i++) { /* a stable order: the key's fields */
        buf_adds(&q->sql, i ? ", " : " ORDER BY ");
        expr_sql_ident(q, d, ent->keys[i]->name);
    }
    buf_addf(&q->sql, " LIMIT %zu", limit ? limit : 1);
}

json_t *jsource_read_rows(instance *src, pthread_mutex_t *lock, const schema_entity *ent,
                          const schema_field *col, const baton_value *v, size_t limit, char *err,
                          size_t errlen)
{
    const baton_source_ops *ops = instance_source(src);
    if (!ops || !ops->exec) {
        snprintf(err, errlen, "reading %s: %s is not a SQL source", ent->table, src->where);
        return NULL;
    }
    const expr_dialect *d = expr_dialect_find(ops->dialect ? ops->dialect : "sqlite");
    if (!d)
        d = &expr_dialect_sqlite;
    expr_sql q;
    rows_sql(d, ent, col, v, limit, &q);
    rows_acc acc = {json_array(), limit ? limit : 1};
    char why[512] = "";
    if (lock)
        pthread_mutex_lock(lock);
    int rc =
        ops->exec(src->state, q.sql.data, q.params, q.nparams, row_append, &acc, why, sizeof why);
    if (lock)
        pthread_mutex_unlock(lock);
    expr_sql_free(&q);
    if (rc) {
        snprintf(err, errlen, "%s: reading %s: %s", src->where, ent->table, why);
        json_decref(acc.rows);
        return NULL;
    }
    return acc.rows;
}

typedef struct batch_read {
    expr_sql q;
    rows_acc acc;
} batch_read;

int jsource_batch(void *ud, const char *profile_id, json_t **profile, size_t n,
                  const schema_entity *const *ents, const schema_field *const *cols,
                  const baton_value *vals, size_t limit, json_t **rows, char *err, size_t errlen)
{
    jsource *s = ud;
    if (!s || !s->profiles) {
        snprintf(err, errlen, "`profiles` names no SQL source to read from");
        return -1;
    }
    const baton_source_ops *ops = instance_source(s->profiles);
    const expr_dialect *d = s->dialect;
    size_t np = profile ? 1 : 0, total = np + n;
    batch_read *r = xcalloc(total + 1, sizeof *r);
    baton_sql_stmt *st = xcalloc(total + 1, sizeof *st);
    json_t *prow = NULL;
    if (profile) {
        by_key(s, "*", profile_id, &r[0].q);
        st[0] =
            (baton_sql_stmt){r[0].q.sql.data, r[0].q.params, r[0].q.nparams, row_to_json, &prow};
    }
    for (size_t i = 0; i < n; i++) {
        batch_read *b = &r[np + i];
        rows_sql(d, ents[i], cols[i], &vals[i], limit, &b->q);
        b->acc = (rows_acc){json_array(), limit ? limit : 1};
        st[np + i] =
            (baton_sql_stmt){b->q.sql.data, b->q.params, b->q.nparams, row_append, &b->acc};
    }
    char why[512] = "";
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    if (ops->size > offsetof(baton_source_ops, exec_batch) && ops->exec_batch) {
        rc = ops->exec_batch(s->profiles->state, st, total, why, sizeof why);
    } else { /* one by one: the same answers */
        for (size_t i = 0; i < total && rc == 0; i++)
            rc = ops->exec(s->profiles->state, st[i].sql, st[i].params, st[i].nparams, st[i].fn,
                           st[i].ud, why, sizeof why);
    }
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; i < total; i++) {
        expr_sql_free(&r[i].q);
        if (i >= np && rc == 0)
            rows[i - np] = r[i].acc.rows;
        else if (i >= np)
            json_decref(r[i].acc.rows);
    }
    free(r);
    free(st);
    if (rc) {
        json_decref(prow);
        snprintf(err, errlen, "%s: %s", s->profiles->where, why);
        return -1;
    }
    if (profile)
        *profile = prow;
    return 0;
}

/* The statement of r's aggregates at now (s->lock held). */
static const agg_sql *agg_sql_of(jsource *s, const expr_dialect *d, const jagg_read *r, int64_t now)
{
    uint64_t id = expr_id(r->e);
    agg_sql *c = NULL;
    for (size_t i = 0; i < s->naggc && !c; i++)
        if (s->aggc[i].id == id && s->aggc[i].rows == r->rows)
            c = &s->aggc[i];
    if (c && c->now == now) {
        c->used = ++s->tick;
        return c;
    }
    if (!c && s->naggc < AGG_CACHE) {
        if (!s->aggc) /* all at once: a call holds entries while it takes more */
            s->aggc = xcalloc(AGG_CACHE, sizeof *s->aggc);
        c = &s->aggc[s->naggc++];
    }
    if (!c) { /* full: the least recently used goes */
        c = &s->aggc[0];
        for (size_t k = 1; k < s->naggc; k++)
            c = s->aggc[k].used < c->used ? &s->aggc[k] : c;
    }
    if (c->id) {
        expr_sql_free(&c->q);
        free(c->which);
    }
    c->id = id;
    c->rows = r->rows;
    c->now = now;
    c->used = ++s->tick;
    c->which = xcalloc(expr_agg_count(r->e) + 1, sizeof *c->which);
    char err[256];
    c->ok = expr_aggs_sql(r->e, r->rows, d, now, &c->q, c->which, &c->n, err, sizeof err) == 0;
    return c;
}

typedef struct agg_acc {
    jagg_read *r;
    const agg_sql *c;
    int got;
} agg_acc;

static int agg_row(void *ud, size_t ncols, const char *const *names, const baton_value *values)
{
    agg_acc *a = ud;
    if (a->got++ || ncols < a->c->n + 1)
        return 1;
    jagg_read *r = a->r;
    const baton_value *c = &values[0]; /* count(*): an int, or text (PostgreSQL's bigint) */
    r->nrows = c->type == BATON_T_INT      ? c->v.i
               : c->type == BATON_T_FLOAT  ? (int64_t)c->v.f
               : c->type == BATON_T_STRING ? strtoll(c->v.s.ptr, NULL, 10)
                                           : -1;
    for (size_t k = 0; k < a->c->n; k++) {
        size_t i = a->c->which[k];
        baton_value v;
        expr_agg_value(r->e, i, &values[k + 1], &v);
        if (v.type == BATON_T_STRING)
            v.v.s.ptr = xstrndup(v.v.s.ptr, v.v.s.len);
        r->vals[i] = v;
        r->have[i] = 1;
    }
    return 1;
}

int jsource_aggs(void *ud, const char *profile_id, json_t **profile, size_t n, jagg_read *reads,
                 int64_t now, char *err, size_t errlen)
{
    jsource *s = ud;
    if (!s || !s->profiles) {
        snprintf(err, errlen, "`profiles` names no SQL source to read from");
        return -1;
    }
    const baton_source_ops *ops = instance_source(s->profiles);
    const expr_dialect *d = s->dialect;
    if (n > JAGGS_MAX) {
        snprintf(err, errlen, "more than %d links in one expression", JAGGS_MAX);
        return -1;
    }
    size_t total = profile ? 1 : 0, np = total;
    /* on the stack: a step's usual few reads allocate nothing here */
    baton_sql_stmt st[JAGGS_MAX + 1];
    agg_acc acc[JAGGS_MAX];
    const agg_sql *cs[JAGGS_MAX];
    baton_value pbuf[32], *params = pbuf;
    size_t nparams = 0;
    expr_sql pq;
    json_t *prow = NULL;
    if (profile) {
        by_key(s, "*", profile_id, &pq);
        st[0] = (baton_sql_stmt){pq.sql.data, pq.params, pq.nparams, row_to_json, &prow};
    }
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < n; i++) {
        reads[i].nrows = -1;
        cs[i] = agg_sql_of(s, d, &reads[i], now);
        nparams += cs[i]->ok ? cs[i]->q.nparams : 0;
    }
    /* each statement's parameters as compiled, the first the profile's key */
    if (nparams > sizeof pbuf / sizeof *pbuf)
        params = xcalloc(nparams, sizeof *params);
    baton_value *p = params;
    for (size_t i = 0; i < n; i++) {
        if (!cs[i]->ok)
            continue;
        memcpy(p, cs[i]->q.params, cs[i]->q.nparams * sizeof *p);
        p[0] = reads[i].key;
        acc[i] = (agg_acc){&reads[i], cs[i], 0};
        st[total++] = (baton_sql_stmt){cs[i]->q.sql.data, p, cs[i]->q.nparams, agg_row, &acc[i]};
        p += cs[i]->q.nparams;
    }
    char why[512]; /* not zeroed: 512 bytes a call */
    why[0] = '\0';
    int rc = 0;
    if (total > 1 && ops->size > offsetof(baton_source_ops, exec_batch) && ops->exec_batch) {
        rc = ops->exec_batch(s->profiles->state, st, total, why, sizeof why);
    } else { /* one by one: the same answers */
        for (size_t i = 0; i < total && rc == 0; i++)
            rc = ops->exec(s->profiles->state, st[i].sql, st[i].params, st[i].nparams, st[i].fn,
                           st[i].ud, why, sizeof why);
    }
    if (rc) /* nothing set (the statements are the cache's: still locked) */
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; cs[i]->ok && acc[i].got && k < cs[i]->n; k++) {
                size_t a = cs[i]->which[k];
                if (reads[i].vals[a].type == BATON_T_STRING)
                    free((char *)reads[i].vals[a].v.s.ptr);
                reads[i].have[a] = 0;
            }
    pthread_mutex_unlock(&s->lock);
    if (rc) {
        json_decref(prow);
        snprintf(err, errlen, "%s: %s", s->profiles->where, why);
    } else if (profile) {
        *profile = prow;
    }
    if (np)
        expr_sql_free(&pq);
    if (params != pbuf)
        free(params);
    return rc ? -1 : 0;
}

json_t *jsource_rows(void *ud, const schema_entity *ent, const schema_field *col,
                     const baton_value *v, size_t limit, char *err, size_t errlen)
{
    jsource *s = ud;
    if (!s || !s->profiles) {
        snprintf(err, errlen, "reading %s: `profiles` names no SQL source to read it from",
                 ent->table);
        return NULL;
    }
    return jsource_read_rows(s->profiles, &s->lock, ent, col, v, limit, err, errlen);
}

void jsource_json_to_record(baton_record *r, const char *prefix, json_t *o)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        char *name = prefix ? xasprintf("%s.%s", prefix, k) : xstrdup(k);
        baton_value bv = {.type = BATON_T_NULL};
        if (json_is_string(v))
            bv = (baton_value){.type = BATON_T_STRING,
                               .v.s = {json_string_value(v), json_string_length(v)}};
        else if (json_is_integer(v))
            bv = (baton_value){.type = BATON_T_INT, .v.i = json_integer_value(v)};
        else if (json_is_real(v))
            bv = (baton_value){.type = BATON_T_FLOAT, .v.f = json_real_value(v)};
        else if (json_is_boolean(v))
            bv = (baton_value){.type = BATON_T_BOOL, .v.b = json_is_true(v)};
        if (json_is_object(v))
            jsource_json_to_record(r, name, v);
        else
            record_set(r, name, &bv);
        free(name);
    }
}

static json_t *lookup(void *ud, const char *source, const char *profile_id, json_t *event)
{
    jsource *s = ud;
    instance *inst = NULL;
    for (size_t i = 0; s && i < s->nlookups; i++)
        if (!strcmp(s->lookups[i]->name, source))
            inst = s->lookups[i];
    if (!inst)
        return NULL;
    record *ctx = record_new();
    record_set_string(ctx, "profile.id", profile_id);
    json_t *prow = profile_row(s, profile_id);
    if (prow)
        jsource_json_to_record(ctx, "profile", prow);
    json_decref(prow);
    if (event)
        jsource_json_to_record(ctx, "event", event);
    record *out = record_new();
    char err[512] = "";
    int rc = instance_source(inst)->lookup(inst->state, ctx, out, err, sizeof err);
    json_t *res = NULL;
    if (rc == 0) {
        res = json_object();
        for (size_t i = 0; i < out->n; i++)
            json_object_set_new(res, out->v[i].name, value_json(&out->v[i].value));
    } else if (rc < 0) {
        log_msg(BATON_LOG_WARN, "journey", "lookup %s for profile %s failed (reads as null): %s",
                source, profile_id, err);
    }
    record_free(ctx);
    record_free(out);
    return res;
}

static int count_row(void *ud, size_t ncols, const char *const *names, const baton_value *values)
{
    (*(int64_t *)ud)++;
    return 0;
}

int jsource_update(jsource *s, const char *profile_id, json_t *set, char *err, size_t errlen)
{
    if (!s || !s->profiles) {
        snprintf(err, errlen, "no profiles source to write");
        return -1;
    }
    const baton_source_ops *ops = instance_source(s->profiles);
    const expr_dialect *d = s->dialect;
    expr_sql q;
    expr_sql_init(&q);
    buf_adds(&q.sql, "UPDATE ");
    expr_sql_ident(&q, d, s->table);
    buf_adds(&q.sql, " SET ");
    const char *field;
    json_t *v;
    int first = 1;
    json_object_foreach(set, field, v)
    {
        baton_value bv = {.type = BATON_T_NULL};
        if (json_is_string(v))
            bv = (baton_value){.type = BATON_T_STRING,
                               .v.s = {json_string_value(v), json_string_length(v)}};
        else if (json_is_integer(v))
            bv = (baton_value){.type = BATON_T_INT, .v.i = json_integer_value(v)};
        else if (json_is_real(v))
            bv = (baton_value){.type = BATON_T_FLOAT, .v.f = json_real_value(v)};
        else if (json_is_boolean(v))
            bv = (baton_value){.type = BATON_T_BOOL, .v.b = json_is_true(v)};
        if (!first)
            buf_adds(&q.sql, ", ");
        first = 0;
        expr_sql_ident(&q, d, field);
        buf_adds(&q.sql, " = ");
        expr_sql_param(&q, d, &bv);
    }
    buf_adds(&q.sql, " WHERE ");
    expr_sql_ident(&q, d, s->key);
    buf_adds(&q.sql, " = ");
    baton_value key = {.type = BATON_T_STRING, .v.s = {profile_id, strlen(profile_id)}};
    expr_sql_param(&q, d, &key);
    int64_t n = 0;
    char why[512] = "";
    pthread_mutex_lock(&s->lock);
    int rc = first ? 0
                   : ops->exec(s->profiles->state, q.sql.data, q.params, q.nparams, count_row, &n,
                               why, sizeof why);
    pthread_mutex_unlock(&s->lock);
    expr_sql_free(&q);
    if (rc) {
        snprintf(err, errlen, "%s: updating profile %s: %s", s->profiles->where, profile_id, why);
        return -1;
    }
    return 0;
}

typedef struct scan_acc {
    const char *key;
    jsource_scan_fn fn;
    void *ud;
    char *last;
    long n;
    json_t *page;
} scan_acc;

static int scan_row(void *ud, size_t ncols, const char *const *names, const baton_value *values)
{
    scan_acc *a = ud;
    json_t *row = json_object();
    char *id = NULL;
    for (size_t i = 0; i < ncols; i++) {
        if (!strcmp(names[i], "_key"))
            continue; /* the audience's own key: the profile's id again */
        json_object_set_new(row, names[i], value_json(&values[i]));
        if (!strcmp(names[i], a->key)) {
            json_t *k = json_object_get(row, names[i]);
            id = json_is_string(k)    ? xstrdup(json_string_value(k))
                 : json_is_integer(k) ? xasprintf("%lld", (long long)json_integer_value(k))
                                      : NULL;
        }
    }
    if (id) { /* handed to fn once the page is read and the lock is free */
        json_array_append_new(a->page, json_pack("{s:s, s:O}", "id", id, "row", row));
        free(a->last);
        a->last = id;
        a->n++;
    }
    json_decref(row);
    return 0;
}

long jsource_scan(jsource *s, const char *audience_table, const void *filter, int64_t now,
                  char **after, size_t limit, jsource_scan_fn fn, void *ud, char *err,
                  size_t errlen)
{
    if (!s || !s->profiles) {
        snprintf(err, errlen, "no profiles source to read");
        return -1;
    }
    const baton_source_ops *ops = instance_source(s->profiles);
    const expr_dialect *d = s->dialect;
    expr_sql q;
    expr_sql_init(&q);
    /* a saved audience's columns (an enrich's) come with the profile's */
    buf_adds(&q.sql, audience_table ? "SELECT p.*, a.* FROM " : "SELECT p.* FROM ");
    expr_sql_ident(&q, d, s->table);
    buf_adds(&q.sql, " AS p");
    if (audience_table) {
        buf_adds(&q.sql, " JOIN ");
        expr_sql_ident(&q, d, audience_table);
        buf_adds(&q.sql, " AS a ON a.");
        expr_sql_ident(&q, d, "_key");
        buf_adds(&q.sql, " = p.");
        expr_sql_ident(&q, d, s->key);
    }
    buf_adds(&q.sql, " WHERE 1 = 1");
    if (filter) {
        expr_sql f;
        expr_sql_init(&f);
        if (expr_to_sql(filter, "p", d, now, &f, err, errlen)) {
            expr_sql_free(&f);
            expr_sql_free(&q);
            return -1;
        }
        /* q has no parameter yet: the filter's, numbered from 1, are its */
        buf_adds(&q.sql, " AND (");
        buf_adds(&q.sql, f.sql.data);
        buf_adds(&q.sql, ")");
        q.params = f.params;
        q.nparams = f.nparams;
        q.cap = f.cap;
        f.params = NULL;
        f.nparams = f.cap = 0;
        expr_sql_free(&f);
    }
    if (*after) {
        buf_adds(&q.sql, " AND p.");
        expr_sql_ident(&q, d, s->key);
        buf_adds(&q.sql, " > ");
        baton_value k = {.type = BATON_T_STRING, .v.s = {*after, strlen(*after)}};
        expr_sql_param(&q, d, &k);
    }
    buf_adds(&q.sql, " ORDER BY p.");
    expr_sql_ident(&q, d, s->key);
    buf_addf(&q.sql, " LIMIT %zu", limit ? limit : 1000);
    scan_acc acc = {s->key, fn, ud, NULL, 0, json_array()};
    char why[512] = "";
    pthread_mutex_lock(&s->lock);
    int rc = ops->exec(s->profiles->state, q.sql.data, q.params, q.nparams, scan_row, &acc, why,
                       sizeof why);
    pthread_mutex_unlock(&s->lock);
    expr_sql_free(&q);
    if (rc) {
        free(acc.last);
        json_decref(acc.page);
        snprintf(err, errlen, "%s: reading profiles: %s", s->profiles->where, why);
        return -1;
    }
    /* the rows go to fn with the source free: fn may wait (a rate), and
     * the engine reads profiles through the same lock */
    size_t i;
    json_t *v;
    json_array_foreach(acc.page, i, v)
        fn(ud, json_string_value(json_object_get(v, "id")), json_object_get(v, "row"));
    json_decref(acc.page);
    if (acc.last) {
        free(*after);
        *after = acc.last;
    }
    return acc.n;
}

int jsource_profile_exists(jsource *s, const char *profile_id)
{
    if (!s || !s->profiles)
        return -1;
    const baton_source_ops *ops = instance_source(s->profiles);
    expr_sql q;
    by_key(s, "1", profile_id, &q);
    int64_t n = 0;
    char err[512] = "";
    pthread_mutex_lock(&s->lock);
    int rc = ops->exec(s->profiles->state, q.sql.data, q.params, q.nparams, count_row, &n, err,
                       sizeof err);
    pthread_mutex_unlock(&s->lock);
    expr_sql_free(&q);
    return rc ? -1 : n > 0;
}

json_t *jsource_profile(jsource *s, const char *profile_id)
{
    return profile_row(s, profile_id);
}

json_t *jsource_lookup(jsource *s, const char *source, const char *profile_id, json_t *event)
{
    return lookup(s, source, profile_id, event);
}

json_t *jsource_profile_cb(void *ud, const char *profile_id)
{
    return profile_row(ud, profile_id);
}

json_t *jsource_lookup_cb(void *ud, const char *source, const char *profile_id, json_t *event)
{
    return lookup(ud, source, profile_id, event);
}
