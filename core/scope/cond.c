#include "scope/cond.h"

#include <libconfig.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/app.h"
#include "base/buf.h"
#include "base/log.h"
#include "config/keymap.h"
#include "lang/expr.h"
#include "base/mem.h"
#include "base/record.h"
#include "schema/schema.h"
#include "schema/schema_source.h"
#include "lang/template.h"
#include "base/timefmt.h"

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
    char *path = schema_source_path(&a->conf, a->conf.profiles, NULL);
    if (!path)
        return NULL;
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
        if (u->kind == BATON_KIND_SOURCE &&
            (!a->conf.profiles || strcmp(u->name, a->conf.profiles)))
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

void jcond_compile(jcond *c, const jcompile *cc, int want_bool, const char *file, const char *where,
                   const char *key, diag *d)
{
    char setting[256];
    snprintf(setting, sizeof setting, "%s: %s", where, key);
    expr_origin o = {file, c->line, setting};
    c->compiled = expr_compile(c->text, cc->sc, &o, want_bool ? EXPR_WANT_BOOL : 0, d);
}

void jcond_compile_profiles(jcond *c, const jcompile *cc, const char *file, const char *where,
                            const char *key, diag *d)
{
    const schema_entity *pe = cc->sch ? schema_entity_find(cc->sch, "profiles") : NULL;
    if (!pe) {
        diag_error(d, file, c->line,
                   "%s: %s needs the profiles source's schema (profiles = \"...\" with a schema)",
                   where, key);
        return;
    }
    expr_scope *sc = expr_scope_new(cc->sch, pe);
    char setting[256];
    snprintf(setting, sizeof setting, "%s: %s", where, key);
    expr_origin o = {file, c->line, setting};
    c->compiled = expr_compile(c->text, sc, &o, EXPR_WANT_BOOL, d);
    expr_scope_free(sc); /* the compiled expression points into the schema, not the scope */
}

void jcond_release(jcond *c)
{
    expr_free(c->compiled);
    c->compiled = NULL;
}

void *jtemplate_compile(const char *text, unsigned escape, const jcompile *cc, const char *file,
                        int line, const char *where, const char *key, diag *d)
{
    char setting[256];
    snprintf(setting, sizeof setting, "%s: %s", where, key);
    expr_origin o = {file, line, setting};
    return template_compile(text, cc->sc, &o, escape, d);
}

void jtemplate_free(void *t)
{
    template_free(t);
}

/* ------------------------------------------------------------------ */
/* Linked rows: read once per step                                     */
/* ------------------------------------------------------------------ */

/* The rows one (table, column, value) gave: the JSON array and its
 * objects as the row pointers expr hands back to get(). */
typedef struct jrowset {
    json_t *rows;
    const void **ptrs;
    size_t n;
} jrowset;

/* The aggregates of one expression the source computed this step. */
typedef struct jpushed {
    const expr *e;
    size_t n; /* expr_agg_count(e) */
    baton_value *vals;
    unsigned char *have;
    int inline_vals; /* vals and have in the jlinks' own arrays */
} jpushed;

/* A step's usual expressions and their aggregates fit in the jlinks
 * itself: pushing them allocates nothing more. */
#define PUSHED_IN 4
#define PUSHED_VALS_IN 16

struct jlinks {
    json_t *index; /* cache key -> index into sets */
    jrowset *sets;
    size_t n, cap;
    size_t total;    /* rows read by this step, against JSCOPE_STEP_ROWS */
    jpushed *pushed; /* pushed_in up to PUSHED_IN */
    size_t npushed;
    size_t nvals_in;
    /* not zeroed (links_of): each part is written as it is taken */
    jpushed pushed_in[PUSHED_IN];
    baton_value vals_in[PUSHED_VALS_IN];
    unsigned char have_in[PUSHED_VALS_IN];
};

static void links_free(struct jlinks *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->npushed; i++) {
        for (size_t k = 0; k < l->pushed[i].n; k++)
            if (l->pushed[i].have[k] && l->pushed[i].vals[k].type == BATON_T_STRING)
                free((char *)l->pushed[i].vals[k].v.s.ptr);
        if (!l->pushed[i].inline_vals)
            free(l->pushed[i].vals); /* have is in the same block */
    }
    if (l->pushed != l->pushed_in)
        free(l->pushed);
    for (size_t i = 0; i < l->n; i++) {
        json_decref(l->sets[i].rows);
        free(l->sets[i].ptrs);
    }
    free(l->sets);
    json_decref(l->index);
    free(l);
}

void jscope_release(jscope *s)
{
    json_decref(s->profile_row);
    json_decref(s->lookups);
    links_free(s->links);
    s->profile_row = NULL;
    s->lookups = NULL;
    s->links = NULL;
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
            expr_value_stored(out, want); /* a timestamp as epoch seconds */
        }
    } else if (json_is_real(v)) {
        out->type = BATON_T_FLOAT;
        out->v.f = json_real_value(v);
        expr_value_stored(out, want);
    } else {
        out->type = BATON_T_STRING;
        out->v.s.ptr = json_string_value(v);
        out->v.s.len = json_string_length(v);
        /* any stored form of a date or timestamp, as SQL reads it */
        expr_value_stored(out, want);
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

static json_t *profile_of(jscope *s)
{
    if (!s->profile_loaded) {
        s->profile_loaded = 1;
        s->profile_row = s->profile ? s->profile(s->ud, s->profile_id) : NULL;
    }
    return s->profile_row;
}

/* Link cuts are logged at the 1st, 2nd, 4th, 8th... time: seen, never a
 * flood. */
static _Atomic unsigned long long cuts;

static void warn_cut(const jscope *s, const schema_entity *ent, const char *what)
{
    unsigned long long n = ++cuts;
    if (n & (n - 1))
        return;
    log_msg(BATON_LOG_WARN, s->record ? "campaign" : "journey",
            "profile %s: '%s' has more than %d rows in %s: aggregates and {{#each}} read the "
            "first %d by key (%llu time%s so far)",
            s->profile_id, what, JSCOPE_LINK_ROWS, ent->table, JSCOPE_LINK_ROWS, n,
            n == 1 ? "" : "s");
}

/* The cache key of the rows of ent whose column equals v. */
static void rows_key(buf *key, const schema_entity *ent, const schema_field *col, int one,
                     const baton_value *v)
{
    buf_init(key);
    buf_addf(key, "%s\x1f%s\x1f%d\x1f%d\x1f", ent->table, col->name, one, (int)v->type);
    expr_value_format(v, key);
}

/* The step's reads (their index made at the first rows kept). */
static struct jlinks *links_of(jscope *s)
{
    if (!s->links) {
        s->links = xmalloc(sizeof *s->links);
        memset(s->links, 0, offsetof(struct jlinks, pushed_in));
    }
    return s->links;
}

/* Keep rows (owned now) under key; the set kept. */
static const jrowset *rows_put(jscope *s, const buf *key, json_t *rows, const schema_entity *ent,
                               int one, const char *what)
{
    struct jlinks *l = links_of(s);
    size_t n = json_array_size(rows);
    if (n > (one ? 1 : JSCOPE_LINK_ROWS)) {
        n = one ? 1 : JSCOPE_LINK_ROWS;
        if (!one)
            warn_cut(s, ent, what);
    }
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 8;
        l->sets = xrealloc(l->sets, l->cap * sizeof *l->sets);
    }
    jrowset *set = &l->sets[l->n];
    set->rows = rows;
    set->n = n;
    set->ptrs = xcalloc(n + 1, sizeof *set->ptrs);
    for (size_t i = 0; i < n; i++)
        set->ptrs[i] = json_array_get(rows, i);
    if (!l->index)
        l->index = json_object();
    json_object_setn_new_nocheck(l->index, key->data, key->len, json_integer((json_int_t)l->n));
    l->n++;
    l->total += n;
    return set;
}

/* The rows of ent whose column equals v, read through s->rows once per
 * step. limit 1 for a key, else JSCOPE_LINK_ROWS (one more is asked for,
 * to know when a link was cut). 0 with *out, or -1 with err. */
static int fetch(jscope *s, const schema_entity *ent, const schema_field *col, const baton_value *v,
                 int one, const char *what, const jrowset **out, char *err, size_t errlen)
{
    static const jrowset none = {0};
    *out = &none;
    if (v->type == BATON_T_NULL)
        return 0; /* SQL: `via = NULL` matches nothing */
    if (!s->rows) {
        snprintf(err, errlen, "'%s': linked rows cannot be read here (no SQL profiles source)",
                 what);
        return -1;
    }
    struct jlinks *l = links_of(s);
    buf key;
    rows_key(&key, ent, col, one, v);
    json_t *at = json_object_getn(l->index, key.data, key.len);
    if (at) {
        buf_free(&key);
        *out = &l->sets[json_integer_value(at)];
        return 0;
    }
    if (l->total >= JSCOPE_STEP_ROWS) {
        buf_free(&key);
        snprintf(err, errlen, "'%s': more than %d linked rows read in one step", what,
                 JSCOPE_STEP_ROWS);
        return -1;
    }
    size_t limit = one ? 1 : JSCOPE_LINK_ROWS + 1;
    json_t *rows = s->rows(s->ud, ent, col, v, limit, err, errlen);
    if (!rows) {
        buf_free(&key);
        return -1;
    }
    *out = rows_put(s, &key, rows, ent, one, what);
    buf_free(&key);
    return 0;
}

/* Whether every aggregate of e over rows was computed by the source. */
static int all_pushed(const jscope *s, const expr *e, const expr_ref *rows)
{
    for (size_t i = 0; s->links && i < s->links->npushed; i++) {
        const jpushed *p = &s->links->pushed[i];
        if (p->e != e)
            continue;
        for (size_t k = 0; k < p->n; k++)
            if (expr_agg_rows(e, k) == rows && !p->have[k])
                return 0;
        return 1;
    }
    return 0;
}

/* Journeys: the profile (when not read yet) and the rows of its own
 * one-to-many links that the expressions read, in one s->batch call (one
 * round trip on PostgreSQL) before they are evaluated. Reads it cannot
 * batch (links of linked rows, a key of another type) happen one by one
 * as the evaluation asks; so does everything when the batch fails. */
#define PREFETCH_MAX 16
static void prefetch(jscope *s, const expr *const *ex, size_t nex)
{
    if (!s->batch || s->record || !s->profile_id)
        return;
    int want = 0;
    const schema_link *links[PREFETCH_MAX];
    size_t nl = 0;
    for (size_t e = 0; e < nex; e++)
        for (size_t i = 0; ex[e] && i < expr_ref_count(ex[e]); i++) {
            const expr_ref *r = expr_ref_at(ex[e], i);
            if (r->level != 0 || !r->prefix || strcmp(r->prefix, "profile") != 0)
                continue;
            if (r->kind == EXPR_REF_ROWS && all_pushed(s, ex[e], r))
                continue;
            want |= !s->profile_loaded;
            if (r->kind != EXPR_REF_ROWS || !r->rows || r->nhops || !r->rows->to->key)
                continue;
            size_t k = 0;
            while (k < nl && links[k] != r->rows)
                k++;
            if (k == nl && nl < PREFETCH_MAX)
                links[nl++] = r->rows;
        }
    /* each link's key is the profile's: its row's when read, else the id
     * as the row would give it (a text key) */
    const schema_entity *ents[PREFETCH_MAX];
    const schema_field *cols[PREFETCH_MAX];
    baton_value vals[PREFETCH_MAX];
    buf keys[PREFETCH_MAX];
    size_t n = 0;
    struct jlinks *l = links_of(s);
    for (size_t k = 0; k < nl; k++) {
        const schema_link *link = links[k];
        baton_value v;
        if (s->profile_loaded && s->profile_row)
            from_json(json_object_get(s->profile_row, link->to->key->name),
                      (int)link->to->key->type, &v);
        else if (link->to->key->type == BATON_T_STRING)
            v = (baton_value){.type = BATON_T_STRING,
                              .v.s = {s->profile_id, strlen(s->profile_id)}};
        else
            continue;
        if (v.type == BATON_T_NULL)
            continue;
        rows_key(&keys[n], link->from, link->via, 0, &v);
        if (json_object_getn(l->index, keys[n].data, keys[n].len)) {
            buf_free(&keys[n]);
            continue;
        }
        ents[n] = link->from;
        cols[n] = link->via;
        vals[n] = v;
        n++;
    }
    /* one read alone is no batch: the evaluation makes it */
    if ((want ? 1 : 0) + n >= 2 && l->total < JSCOPE_STEP_ROWS) {
        json_t *prow = NULL, *rows[PREFETCH_MAX] = {0};
        char err[512];
        if (s->batch(s->ud, s->profile_id, want ? &prow : NULL, n, ents, cols, vals,
                     JSCOPE_LINK_ROWS + 1, rows, err, sizeof err) == 0) {
            if (want) {
                s->profile_loaded = 1;
                s->profile_row = prow;
            }
            for (size_t k = 0; k < n; k++)
                rows_put(s, &keys[k], rows[k], ents[k], 0, ents[k]->table);
        }
    }
    for (size_t k = 0; k < n; k++)
        buf_free(&keys[k]);
}

/* The key of the profile as a link to it reads it: its row's when read,
 * else the id as the row would give it (a text key, or an integer key
 * written as the integer is). 0, or -1 when only the row can tell. */
static int profile_key(jscope *s, const schema_link *link, baton_value *v)
{
    int type = (int)link->to->key->type;
    if (s->profile_loaded && s->profile_row) {
        from_json(json_object_get(s->profile_row, link->to->key->name), type, v);
    } else if (type == BATON_T_STRING) {
        *v = (baton_value){.type = BATON_T_STRING, .v.s = {s->profile_id, strlen(s->profile_id)}};
    } else if (type == BATON_T_INT) {
        char *end, again[24];
        long long k = strtoll(s->profile_id, &end, 10);
        snprintf(again, sizeof again, "%lld", k);
        if (*end || strcmp(again, s->profile_id)) /* "041", " 41": the row would say */
            return -1;
        *v = (baton_value){.type = BATON_T_INT, .v.i = k};
    } else {
        return -1;
    }
    return 0;
}

/* Journeys: the aggregates of e over the profile's own one-to-many links,
 * computed by the source (s->aggs), once per step: one bound statement
 * per link, the linked rows never read here. The profile's row comes in
 * the same call when e reads its fields and it is not read yet. An
 * aggregate the source cannot compute (its where reads the event, a link
 * holds more rows than JSCOPE_LINK_ROWS: the evaluator cuts it) is
 * evaluated from the rows as before. */
#define PUSH_MAX 8 /* as jsource_aggs takes */
static void push_aggs(jscope *s, const expr *e)
{
    size_t na = e ? expr_agg_count(e) : 0;
    if (!s->aggs || s->record || !s->profile_id || !na)
        return;
    struct jlinks *l = links_of(s);
    for (size_t i = 0; i < l->npushed; i++)
        if (l->pushed[i].e == e)
            return;
    jagg_read reads[PUSH_MAX];
    size_t n = 0;
    int want = 0;
    jpushed p = {.e = e, .n = na};
    if (na <= PUSHED_VALS_IN - l->nvals_in) {
        p.vals = l->vals_in + l->nvals_in;
        p.have = l->have_in + l->nvals_in;
        memset(p.have, 0, na); /* vals are read only where have says */
        p.inline_vals = 1;
        l->nvals_in += na;
    } else {
        p.vals = xcalloc(na, sizeof *p.vals + 1);
        p.have = (unsigned char *)(p.vals + na);
    }
    for (size_t i = 0; i < expr_ref_count(e); i++) {
        const expr_ref *r = expr_ref_at(e, i);
        if (r->level != 0 || !r->prefix || strcmp(r->prefix, "profile") != 0)
            continue;
        if (r->kind == EXPR_REF_ROWS && r->rows && !r->nhops && r->rows->to->key && n < PUSH_MAX) {
            baton_value key;
            if (profile_key(s, r->rows, &key) || key.type == BATON_T_NULL)
                continue;
            reads[n] = (jagg_read){.e = e, .rows = r, .key = key, .vals = p.vals, .have = p.have};
            n++;
        } else {
            want |= !s->profile_loaded; /* a field of the profile, or a link of a link */
        }
    }
    char err[512];
    json_t *prow = NULL;
    if (n && s->aggs(s->ud, s->profile_id, want ? &prow : NULL, n, reads, s->now_ms / 1000, err,
                     sizeof err) == 0) {
        if (want) {
            s->profile_loaded = 1;
            s->profile_row = prow;
        }
        for (size_t k = 0; k < n; k++) {
            if (reads[k].nrows <= JSCOPE_LINK_ROWS)
                continue;
            /* cut in memory: every aggregate of that link is evaluated so */
            for (size_t i = 0; i < na; i++)
                if (p.have[i] && expr_agg_rows(e, i) == reads[k].rows) {
                    if (p.vals[i].type == BATON_T_STRING)
                        free((char *)p.vals[i].v.s.ptr);
                    p.have[i] = 0;
                }
        }
    } else if (n) {
        log_msg(BATON_LOG_DEBUG, "journey", "profile %s: aggregates read as rows: %s",
                s->profile_id, err);
    }
    size_t k = l->npushed;
    if (k == 0) {
        l->pushed = l->pushed_in;
    } else if (k == PUSHED_IN) { /* then doubled */
        l->pushed = xmalloc(2 * k * sizeof *l->pushed);
        memcpy(l->pushed, l->pushed_in, k * sizeof *l->pushed);
    } else if (k > PUSHED_IN && (k & (k - 1)) == 0) {
        l->pushed = xrealloc(l->pushed, 2 * k * sizeof *l->pushed);
    }
    l->pushed[l->npushed++] = p;
}

static int env_agg(void *ud, const expr *e, size_t agg, baton_value *out)
{
    jscope *s = ud;
    for (size_t i = 0; s->links && i < s->links->npushed; i++) {
        const jpushed *p = &s->links->pushed[i];
        if (p->e == e && agg < p->n && p->have[agg]) {
            *out = p->vals[agg];
            return 0;
        }
    }
    return 1;
}

/* Follow many-to-one links from row r (NULL: none): the row reached, or
 * NULL for a NULL or dangling reference. -1 on failure. */
static int follow(jscope *s, json_t *r, const expr_ref *ref, json_t **out, char *err, size_t errlen)
{
    for (size_t i = 0; i < ref->nhops && r; i++) {
        const schema_link *l = ref->hops[i];
        baton_value v;
        from_json(json_object_get(r, l->via->name), (int)l->via->type, &v);
        const jrowset *set;
        if (fetch(s, l->to, l->to->key, &v, 1, ref->path, &set, err, errlen))
            return -1;
        r = set->n ? (json_t *)set->ptrs[0] : NULL;
    }
    *out = r;
    return 0;
}

/* A level-0 name as the record holds it: without record_prefix. */
static const char *record_name(const char *path, const char *prefix, const char *record_prefix)
{
    if (record_prefix && prefix && !strcmp(prefix, record_prefix))
        return path + strlen(prefix) + 1;
    return path;
}

char *jscope_key_path(const expr_ref *ref, const char *record_prefix)
{
    const char *p = record_name(ref->path, ref->prefix, record_prefix);
    const char *dot = strrchr(p, '.');
    const char *key = ref->rows->to->key->name;
    return dot ? xasprintf("%.*s.%s", (int)(dot - p), p, key) : xstrdup(key);
}

/* A one-to-many link of the record being rendered (campaigns): its key is
 * a column of the send's SELECT. */
static int record_rows(jscope *s, const expr_ref *ref, const void *const **rows, size_t *n,
                       char *err, size_t errlen)
{
    const schema_link *link = ref->rows;
    char *kp = jscope_key_path(ref, s->record_prefix);
    const baton_value *v = record_find(s->record, kp);
    free(kp);
    if (!v || v->type == BATON_T_NULL)
        return 0;
    const jrowset *set;
    if (fetch(s, link->from, link->via, v, 0, ref->path, &set, err, errlen))
        return -1;
    *rows = set->ptrs;
    *n = set->n;
    return 0;
}

/* The rows of a one-to-many link (rows of link->from whose via is the
 * key of the row reached): aggregates and {{#each}}. */
static int env_rows(void *ud, const void *row, const expr_ref *ref, const void *const **rows,
                    size_t *n, char *err, size_t errlen)
{
    jscope *s = ud;
    *rows = NULL;
    *n = 0;
    const schema_link *link = ref->rows;
    json_t *from = (json_t *)row;
    if (!row && s->record)
        return record_rows(s, ref, rows, n, err, errlen);
    if (!row) {
        if (!ref->prefix || strcmp(ref->prefix, "profile")) {
            snprintf(err, errlen, "'%s': only links of profile.* are read in journeys", ref->path);
            return -1;
        }
        from = profile_of(s);
    }
    json_t *r;
    if (follow(s, from, ref, &r, err, errlen))
        return -1;
    baton_value key;
    if (r) {
        from_json(json_object_get(r, link->to->key->name), (int)link->to->key->type, &key);
    } else if (!row && !ref->nhops && !from) {
        /* no row for the profile: its key is the event's, as profile.id */
        key = (baton_value){.type = BATON_T_STRING, .v.s = {s->profile_id, strlen(s->profile_id)}};
    } else {
        return 0; /* a NULL or dangling reference reaches no row, hence no rows */
    }
    const jrowset *set;
    if (fetch(s, link->from, link->via, &key, 0, ref->path, &set, err, errlen))
        return -1;
    *rows = set->ptrs;
    *n = set->n;
    return 0;
}

static int env_get(void *ud, const void *row, const expr_ref *ref, baton_value *out, char *err,
                   size_t errlen)
{
    jscope *s = ud;
    if (ref->kind != EXPR_REF_VALUE) {
        snprintf(err, errlen, "'%s' is a one-to-many link, not a value", ref->path);
        return -1;
    }
    if (!row && s->record) {
        const baton_value *v =
            record_find(s->record, record_name(ref->path, ref->prefix, s->record_prefix));
        if (!v) {
            out->type = BATON_T_NULL;
            return 1;
        }
        *out = *v;
        /* as stored ('2005-08-23 05:57:04', epoch seconds): one form out,
         * whichever path read the value (a link, an aggregate, #each) */
        if (ref->type == BATON_T_TIMESTAMP || ref->type == BATON_T_DATE)
            expr_value_stored(out, ref->type);
        return 0;
    }
    const char *prefix = ref->prefix;
    const char *rest = prefix ? ref->path + strlen(prefix) + 1 : ref->path;
    if (!prefix && row) { /* a field of a linked row: amount, store.city */
        json_t *r;
        if (follow(s, (json_t *)row, ref, &r, err, errlen))
            return -1;
        return from_json(r ? json_object_get(r, ref->field) : NULL, ref->type, out);
    }
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
        json_t *prow = profile_of(s);
        if (!strcmp(rest, "id") && !prow) {
            out->type = BATON_T_STRING;
            out->v.s.ptr = s->profile_id;
            out->v.s.len = strlen(s->profile_id);
            return 0;
        }
        if (ref->nhops) { /* profile.store.city */
            json_t *r;
            if (follow(s, prow, ref, &r, err, errlen))
                return -1;
            return from_json(r ? json_object_get(r, ref->field) : NULL, ref->type, out);
        }
        return from_json(dig(prow, rest), ref->type, out);
    }
    json_t *res = json_object_get(s->results, prefix);
    if (res) {
        json_t *v = dig(res, rest);
        int64_t t;
        /* a wait_event's reaction: <node>.time is the event's timestamp */
        if (!strcmp(rest, "time") && json_is_string(v) &&
            timestamp_parse(json_string_value(v), json_string_length(v), &t) == 0) {
            out->type = BATON_T_TIMESTAMP;
            out->v.ts = t;
            return 0;
        }
        return from_json(v, ref->type, out);
    }
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
    expr_env env = {.get = env_get,
                    .rows = env_rows,
                    .agg = s->aggs ? env_agg : NULL,
                    .ud = s,
                    .now = s->now_ms / 1000};
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
    const expr *e = c->compiled;
    push_aggs(s, e);
    prefetch(s, &e, 1);
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

int jcond_eval(const jcond *c, jscope *s, expr_arena *arena, baton_value *out, char *err,
               size_t errlen)
{
    if (!c->compiled) {
        snprintf(err, errlen, "'%s' was not compiled", c->text ? c->text : "");
        return -1;
    }
    const expr *e = c->compiled;
    push_aggs(s, e);
    prefetch(s, &e, 1);
    expr_env env = env_of(s);
    return expr_eval(c->compiled, &env, arena, out, err, errlen);
}

int jcond_timestamp(const jcond *c, jscope *s, int64_t *ms, char *err, size_t errlen)
{
    if (!c->compiled) {
        snprintf(err, errlen, "'%s' was not compiled", c->text ? c->text : "");
        return -1;
    }
    const expr *e = c->compiled;
    push_aggs(s, e);
    prefetch(s, &e, 1);
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
    size_t nex = template_expr_count(t);
    const expr **ex = xcalloc(nex + 1, sizeof *ex);
    for (size_t i = 0; i < nex; i++)
        ex[i] = template_expr_at(t, i);
    prefetch(s, ex, nex);
    free(ex);
    expr_env env = env_of(s);
    expr_arena arena;
    expr_arena_init(&arena);
    int rc = template_render(t, &env, &arena, out_buf, err, errlen);
    expr_arena_free(&arena);
    return rc;
}
