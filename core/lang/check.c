/* expr/check — resolves names to refs (slots) against the scope and the
 * schema, turns calls into functions and aggregates, and computes static
 * types, reporting every error with its line:col and a suggestion. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lang/ast.h"
#include "base/mem.h"
#include "base/suggest.h"
#include "base/timefmt.h"
#include "base/zone.h"

#define T_ANY EXPR_T_ANY
#define MAX_HOPS 16
#define MAX_SEGS 32

static int is_num(int t)
{
    return t == BATON_T_INT || t == BATON_T_FLOAT;
}
static int is_time(int t)
{
    return t == BATON_T_DATE || t == BATON_T_TIMESTAMP;
}
static int loose(int t)
{
    return t == T_ANY || t == BATON_T_NULL;
}

/* --- refs ------------------------------------------------------------ */

static int add_ref(check_ctx *c, expr_ref_kind kind, const char *path, const char *prefix, int type,
                   const schema_entity *entity, const schema_field *sfield,
                   const schema_link *const *hops, size_t nhops, const schema_link *rows,
                   const char *column)
{
    expr *e = c->e;
    const expr_ref *outer = c->level > 0 ? c->frames[c->level].rows : NULL;
    for (size_t i = 0; i < e->nrefs; i++) {
        const expr_ref *r = &e->refs[i]->pub;
        if (r->kind == kind && r->level == c->level && r->outer == outer &&
            strcmp(r->path, path) == 0)
            return (int)i;
    }
    ref_slot *s = xcalloc(1, sizeof *s);
    s->path = xstrdup(path);
    s->prefix = prefix ? xstrdup(prefix) : NULL;
    const char *dot = strrchr(path, '.');
    s->field = xstrdup(dot ? dot + 1 : path);
    s->hops = xcalloc(nhops + 1, sizeof *s->hops);
    if (nhops)
        memcpy(s->hops, hops, nhops * sizeof *hops);
    s->column = column;
    s->pub.slot = (int)e->nrefs;
    s->pub.kind = kind;
    s->pub.path = s->path;
    s->pub.prefix = s->prefix;
    s->pub.field = s->field;
    s->pub.type = type;
    s->pub.entity = entity;
    s->pub.sfield = sfield;
    s->pub.hops = s->hops;
    s->pub.nhops = nhops;
    s->pub.rows = rows;
    s->pub.level = c->level;
    s->pub.outer = outer;
    e->refs = xrealloc(e->refs, (e->nrefs + 1) * sizeof *e->refs);
    e->refs[e->nrefs++] = s;
    return s->pub.slot;
}

void expr_refs_free(expr *e)
{
    for (size_t i = 0; i < e->nrefs; i++) {
        ref_slot *s = e->refs[i];
        free(s->path);
        free(s->prefix);
        free(s->field);
        free(s->hops);
        free(s);
    }
    free(e->refs);
    e->refs = NULL;
    e->nrefs = 0;
}

/* --- name resolution -------------------------------------------------- */

enum { WANT_VALUE, WANT_ROWS };

typedef struct resolved {
    int slot;
    int type;
    const schema_entity *rows_entity; /* WANT_ROWS: the rows' entity */
    size_t rest;                      /* WANT_ROWS: first segment after the link */
} resolved;

typedef struct segs {
    char *buf;
    const char *v[MAX_SEGS];
    size_t n;
} segs;

static int split(segs *s, const char *path)
{
    s->buf = xstrdup(path);
    s->n = 0;
    char *p = s->buf;
    for (;;) {
        if (s->n == MAX_SEGS)
            return -1;
        s->v[s->n++] = p;
        char *dot = strchr(p, '.');
        if (!dot)
            return 0;
        *dot = '\0';
        p = dot + 1;
    }
}

static char *join(const segs *s, size_t from, size_t to)
{
    buf b;
    buf_init(&b);
    buf_adds(&b, "");
    for (size_t i = from; i < to; i++)
        buf_addf(&b, "%s%s", i > from ? "." : "", s->v[i]);
    return buf_steal(&b);
}

static int entity_knows(const schema_entity *e, const char *name)
{
    return e && (schema_field_find(e, name) || schema_link_find(e, name) ||
                 schema_reverse_find(e, name));
}

/* Walk segs[i..] from entity ent: fields, many-to-one links, then (for
 * WANT_ROWS) a one-to-many link. `from` is where the ref's path starts. */
static int walk_entity(check_ctx *c, const schema_entity *ent, const segs *s, size_t from, size_t i,
                       const char *prefix, int want, int line, int col, resolved *out)
{
    const schema_link *hops[MAX_HOPS];
    size_t nhops = 0;
    for (; i < s->n; i++) {
        const char *seg = s->v[i];
        const schema_field *f = schema_field_find(ent, seg);
        if (f) {
            if (i + 1 < s->n) {
                expr_err(c->E, line, col,
                         "'%s' is a field of %s (a %s), not a link: nothing can "
                         "follow it",
                         seg, ent->name, schema_type_name(f->type));
                return -1;
            }
            if (want == WANT_ROWS) {
                expr_err(c->E, line, col,
                         "'%s' is a field of %s, not a one-to-many link (one of: %s)", seg,
                         ent->name, ent->nreverse ? "the reverse links" : "none here");
                return -1;
            }
            char *path = join(s, from, s->n);
            out->slot = add_ref(c, EXPR_REF_VALUE, path, prefix, (int)f->type, ent, f, hops, nhops,
                                NULL, NULL);
            out->type = (int)f->type;
            free(path);
            return 0;
        }
        const schema_link *l = schema_link_find(ent, seg);
        if (l) {
            if (nhops == MAX_HOPS) {
                expr_err(c->E, line, col, "too many links in one name (at most %d)", MAX_HOPS);
                return -1;
            }
            hops[nhops++] = l;
            ent = l->to;
            if (i + 1 == s->n) {
                const char *ex = ent->nfields ? ent->fields[ent->nfields > 1 ? 1 : 0].name : "id";
                expr_err(c->E, line, col, "'%s' is a link to %s: name one of its fields (%s.%s)",
                         seg, ent->name, seg, ex);
                return -1;
            }
            continue;
        }
        const schema_link *r = schema_reverse_find(ent, seg);
        if (r) {
            if (want == WANT_VALUE) {
                char *p = join(s, from, i + 1);
                expr_err(c->E, line, col,
                         "'%s' is a one-to-many link (many %s per %s): use an aggregate such as "
                         "count(%s) or exists(%s where ...)",
                         p, r->from->name, ent->name, p, p);
                free(p);
                return -1;
            }
            char *path = join(s, from, i + 1);
            out->slot =
                add_ref(c, EXPR_REF_ROWS, path, prefix, T_ANY, ent, NULL, hops, nhops, r, NULL);
            out->type = T_ANY;
            out->rows_entity = r->from;
            out->rest = i + 1;
            free(path);
            return 0;
        }
        const char *best = schema_suggest(c->sc->s, ent, seg);
        if (best)
            expr_err(c->E, line, col, "unknown field '%s' in %s (did you mean '%s'?)", seg,
                     ent->name, best);
        else
            expr_err(c->E, line, col, "unknown field '%s' in %s", seg, ent->name);
        return -1;
    }
    return -1;
}

/* Names that are not fields of a row: typed extras, prefixes, open. 1 when
 * resolved (or failed: *rc), 0 when no rule applies. */
static int resolve_scope_rules(check_ctx *c, const segs *s, const char *path, int want, int line,
                               int col, resolved *out, int *rc)
{
    const expr_scope *sc = c->sc;
    for (size_t i = 0; i < sc->nfields; i++)
        if (strcmp(sc->fields[i].name, path) == 0) {
            if (want == WANT_ROWS) {
                expr_err(c->E, line, col, "'%s' is a value, not a one-to-many link", path);
                *rc = -1;
                return 1;
            }
            int saved = c->level;
            c->level = 0; /* outer names keep their outer meaning */
            out->slot =
                add_ref(c, EXPR_REF_VALUE, path, s->n > 1 ? s->v[0] : NULL, (int)sc->fields[i].type,
                        NULL, NULL, NULL, 0, NULL, sc->fields[i].column);
            c->level = saved;
            out->type = (int)sc->fields[i].type;
            *rc = 0;
            return 1;
        }
    if (s->n > 1)
        for (size_t i = 0; i < sc->nprefixes; i++) {
            if (strcmp(sc->prefixes[i].prefix, s->v[0]) != 0)
                continue;
            int saved = c->level;
            c->level = 0;
            if (sc->prefixes[i].entity) {
                *rc =
                    walk_entity(c, sc->prefixes[i].entity, s, 0, 1, s->v[0], want, line, col, out);
            } else if (want == WANT_ROWS) {
                expr_err(c->E, line, col,
                         "'%s' is not a one-to-many link of the schema (%s.* is untyped data)",
                         path, s->v[0]);
                *rc = -1;
            } else {
                out->slot = add_ref(c, EXPR_REF_VALUE, path, s->v[0], T_ANY, NULL, NULL, NULL, 0,
                                    NULL, NULL);
                out->type = T_ANY;
                *rc = 0;
            }
            c->level = saved;
            return 1;
        }
    if (s->n == 1)
        for (size_t i = 0; i < sc->nprefixes; i++)
            if (strcmp(sc->prefixes[i].prefix, s->v[0]) == 0) {
                expr_err(c->E, line, col, "'%s' needs a field: %s.<name>", path, path);
                *rc = -1;
                return 1;
            }
    if (sc->open && want == WANT_VALUE) {
        int saved = c->level;
        c->level = 0;
        out->slot = add_ref(c, EXPR_REF_VALUE, path, s->n > 1 ? s->v[0] : NULL, T_ANY, NULL, NULL,
                            NULL, 0, NULL, NULL);
        c->level = saved;
        out->type = T_ANY;
        *rc = 0;
        return 1;
    }
    return 0;
}

static void unknown_name(check_ctx *c, const segs *s, const schema_entity *ent, int line, int col)
{
    const char *name = s->v[0];
    const expr_scope *sc = c->sc;
    size_t n = 0, cap = 8 + sc->nprefixes + sc->nfields;
    if (ent)
        cap += ent->nfields + ent->nlinks + ent->nreverse;
    const char **cands = xmalloc(cap * sizeof *cands);
    if (ent) {
        for (size_t i = 0; i < ent->nfields; i++)
            cands[n++] = ent->fields[i].name;
        for (size_t i = 0; i < ent->nlinks; i++)
            cands[n++] = ent->links[i].name;
        for (size_t i = 0; i < ent->nreverse; i++)
            cands[n++] = ent->reverse[i]->reverse;
    }
    for (size_t i = 0; i < sc->nprefixes; i++)
        cands[n++] = sc->prefixes[i].prefix;
    for (size_t i = 0; i < sc->nfields; i++)
        if (!strchr(sc->fields[i].name, '.'))
            cands[n++] = sc->fields[i].name;
    const char *best = NULL;
    for (size_t i = 0; i < n && !best; i++)
        if (strcasecmp(cands[i], name) == 0)
            best = cands[i];
    if (!best)
        best = suggest_nearest(name, cands, n);
    char *hint = best ? xasprintf(" (did you mean '%s'?)", best) : xstrdup("");
    if (ent && s->n == 1)
        expr_err(c->E, line, col, "unknown field '%s' in %s%s", name, ent->name, hint);
    else if (ent)
        expr_err(c->E, line, col, "unknown field or link '%s' in %s%s", name, ent->name, hint);
    else
        expr_err(c->E, line, col, "unknown name '%s'%s", name, hint);
    free(hint);
    free(cands);
}

/* Does some enclosing level (or the scope) know the name? */
static int names_known_outside(check_ctx *c, const segs *s)
{
    for (int l = c->level - 1; l >= 1; l--)
        if (entity_knows(c->frames[l].entity, s->v[0]))
            return 1;
    const expr_scope *sc = c->sc;
    if (entity_knows(sc->entity, s->v[0]) || sc->open)
        return 1;
    for (size_t i = 0; i < sc->nprefixes; i++)
        if (strcmp(sc->prefixes[i].prefix, s->v[0]) == 0)
            return 1;
    for (size_t i = 0; i < sc->nfields; i++) {
        const char *f = sc->fields[i].name;
        size_t n = strlen(s->v[0]);
        if (strncmp(f, s->v[0], n) == 0 && (f[n] == '\0' || f[n] == '.'))
            return 1;
    }
    return 0;
}

static int resolve(check_ctx *c, const char *path, int want, int line, int col, resolved *out)
{
    segs s;
    memset(out, 0, sizeof *out);
    int rc = -1;
    if (split(&s, path) != 0) {
        expr_err(c->E, line, col, "name too long (more than %d parts)", MAX_SEGS);
        free(s.buf);
        return -1;
    }
    const schema_entity *row = c->level > 0 ? c->frames[c->level].entity : c->sc->entity;
    if (entity_knows(row, s.v[0])) {
        rc = walk_entity(c, row, &s, 0, 0, NULL, want, line, col, out);
    } else if (c->level > 0 && c->level <= c->outer_levels && names_known_outside(c, &s)) {
        int saved = c->level;
        c->level--;
        rc = resolve(c, path, want, line, col, out);
        c->level = saved;
    } else if (resolve_scope_rules(c, &s, path, want, line, col, out, &rc)) {
        /* rc set */
    } else {
        unknown_name(c, &s, row, line, col);
        rc = -1;
    }
    free(s.buf);
    return rc;
}

const expr_ref *expr_check_rows(check_ctx *c, const char *path, int line, int col,
                                const schema_entity **entity)
{
    resolved r;
    if (resolve(c, path, WANT_ROWS, line, col, &r) != 0)
        return NULL;
    segs s;
    split(&s, path);
    size_t n = s.n;
    free(s.buf);
    if (r.rest != n) {
        expr_err(c->E, line, col, "#each takes a one-to-many link such as 'orders', not a field");
        return NULL;
    }
    *entity = r.rows_entity;
    return &c->e->refs[r.slot]->pub;
}

/* --- types --------------------------------------------------------------- */

const char *expr_type_name(int t)
{
    if (t == T_ANY)
        return "untyped value";
    return schema_type_name((baton_type)t);
}

static const char *a_type(int t)
{
    switch (t) {
    case BATON_T_INT: return "an int";
    case BATON_T_FLOAT: return "a float";
    case BATON_T_STRING: return "a string";
    case BATON_T_BOOL: return "a bool";
    case BATON_T_DATE: return "a date";
    case BATON_T_TIMESTAMP: return "a timestamp";
    case BATON_T_DURATION: return "a duration";
    case BATON_T_NULL: return "null";
    default: return "an untyped value";
    }
}

static int comparable(int a, int b)
{
    if (loose(a) || loose(b))
        return 1;
    if (is_num(a) && is_num(b))
        return 1;
    if (is_time(a) && is_time(b))
        return 1;
    return a == b;
}

static int op_cmp(check_ctx *c, node *n)
{
    node *a = n->kids[0], *b = n->kids[1];
    n->type = BATON_T_BOOL;
    if (a->type == BATON_T_NULL || b->type == BATON_T_NULL) {
        node *x = a->type == BATON_T_NULL ? b : a;
        (void)x;
        if (n->kind == N_EQ)
            expr_err(c->E, n->line, n->col,
                     "'== null' is never true (NULL compares as unknown): write 'is null'");
        else if (n->kind == N_NE)
            expr_err(c->E, n->line, n->col,
                     "'!= null' is never true (NULL compares as unknown): write 'is not null'");
        else
            expr_err(c->E, n->line, n->col,
                     "a comparison with null is never true: test it with 'is null'");
        return -1;
    }
    if (!comparable(a->type, b->type)) {
        const char *hint = "";
        if ((a->type == BATON_T_STRING && is_time(b->type)) ||
            (b->type == BATON_T_STRING && is_time(a->type)))
            hint = " (write timestamp('2026-01-31T09:00:00Z') or date('2026-01-31'))";
        expr_err(c->E, n->line, n->col, "cannot compare %s with %s%s", a_type(a->type),
                 a_type(b->type), hint);
        return -1;
    }
    if (n->kind != N_EQ && n->kind != N_NE &&
        (a->type == BATON_T_BOOL || b->type == BATON_T_BOOL)) {
        expr_err(c->E, n->line, n->col, "bools have no order: use == or !=");
        return -1;
    }
    return 0;
}

static const char *op_name(node_kind k)
{
    switch (k) {
    case N_ADD: return "+";
    case N_SUB: return "-";
    case N_MUL: return "*";
    case N_DIV: return "/";
    case N_MOD: return "%";
    default: return "?";
    }
}

static int op_arith(check_ctx *c, node *n)
{
    int a = n->kids[0]->type, b = n->kids[1]->type;
    int r = -2;
    if (loose(a) || loose(b)) {
        n->type = T_ANY;
        if (n->kind == N_MOD &&
            ((!loose(a) && a != BATON_T_INT) || (!loose(b) && b != BATON_T_INT)))
            r = -2;
        else if ((a == BATON_T_STRING || b == BATON_T_STRING || a == BATON_T_BOOL ||
                  b == BATON_T_BOOL))
            r = -2;
        else
            return 0;
    } else {
        switch (n->kind) {
        case N_ADD:
            if (is_num(a) && is_num(b))
                r = a == BATON_T_INT && b == BATON_T_INT ? BATON_T_INT : BATON_T_FLOAT;
            else if (is_time(a) && b == BATON_T_DURATION)
                r = a;
            else if (a == BATON_T_DURATION && is_time(b))
                r = b;
            else if (a == BATON_T_DURATION && b == BATON_T_DURATION)
                r = BATON_T_DURATION;
            break;
        case N_SUB:
            if (is_num(a) && is_num(b))
                r = a == BATON_T_INT && b == BATON_T_INT ? BATON_T_INT : BATON_T_FLOAT;
            else if (is_time(a) && b == BATON_T_DURATION)
                r = a;
            else if (is_time(a) && is_time(b))
                r = BATON_T_DURATION;
            else if (a == BATON_T_DURATION && b == BATON_T_DURATION)
                r = BATON_T_DURATION;
            break;
        case N_MUL:
            if (is_num(a) && is_num(b))
                r = a == BATON_T_INT && b == BATON_T_INT ? BATON_T_INT : BATON_T_FLOAT;
            else if ((a == BATON_T_DURATION && b == BATON_T_INT) ||
                     (a == BATON_T_INT && b == BATON_T_DURATION))
                r = BATON_T_DURATION;
            break;
        case N_DIV:
            if (is_num(a) && is_num(b))
                r = a == BATON_T_INT && b == BATON_T_INT ? BATON_T_INT : BATON_T_FLOAT;
            break;
        case N_MOD:
            if (a == BATON_T_INT && b == BATON_T_INT)
                r = BATON_T_INT;
            break;
        default: break;
        }
    }
    if (r == -2) {
        const char *hint = "";
        if (n->kind == N_MOD && is_num(a) && is_num(b))
            hint = " (% takes ints)";
        else if (n->kind == N_ADD && a == BATON_T_STRING && b == BATON_T_STRING)
            hint = " (text is joined in templates: {{ a }}{{ b }})";
        else if (is_time(a) && is_num(b))
            hint = " (add a duration: 7d, 12h, 30m)";
        expr_err(c->E, n->line, n->col, "cannot apply '%s' to %s and %s%s", op_name(n->kind),
                 a_type(a), a_type(b), hint);
        n->type = T_ANY;
        return -1;
    }
    n->type = r;
    return 0;
}

static int want_bool(check_ctx *c, node *k, const char *what)
{
    if (loose(k->type) || k->type == BATON_T_BOOL)
        return 0;
    expr_err(c->E, k->line, k->col, "%s needs a condition (true or false), not %s", what,
             a_type(k->type));
    return -1;
}

/* --- functions ------------------------------------------------------------ */

static const struct fn_def {
    const char *name;
    fn_id id;
    int min, max;
    const char *usage;
} fns[] = {
    {"now", F_NOW, 0, 0, "now()"},
    {"today", F_TODAY, 0, 1, "today([zone])"},
    {"lower", F_LOWER, 1, 1, "lower(string)"},
    {"upper", F_UPPER, 1, 1, "upper(string)"},
    {"length", F_LENGTH, 1, 1, "length(string)"},
    {"trim", F_TRIM, 1, 1, "trim(string)"},
    {"contains", F_CONTAINS, 2, 2, "contains(string, part)"},
    {"starts_with", F_STARTS_WITH, 2, 2, "starts_with(string, prefix)"},
    {"ends_with", F_ENDS_WITH, 2, 2, "ends_with(string, suffix)"},
    {"coalesce", F_COALESCE, 1, 64, "coalesce(a, b, ...)"},
    {"abs", F_ABS, 1, 1, "abs(number)"},
    {"round", F_ROUND, 1, 2, "round(number[, digits])"},
    {"date", F_DATE, 1, 1, "date('2026-01-31') or date(timestamp)"},
    {"timestamp", F_TIMESTAMP, 1, 1, "timestamp('2026-01-31T09:00:00Z') or timestamp(date)"},
    {"year", F_YEAR, 1, 1, "year(timestamp or date)"},
    {"month", F_MONTH, 1, 1, "month(timestamp or date)"},
    {"day", F_DAY, 1, 1, "day(timestamp or date)"},
    {"hour", F_HOUR, 1, 2, "hour(timestamp[, zone])"},
    {"weekday", F_WEEKDAY, 1, 2, "weekday(timestamp or date[, zone])"},
};
#define NFNS (sizeof fns / sizeof fns[0])

static const struct agg_def {
    const char *name;
    agg_id id;
} aggs[] = {
    {"count", AGG_COUNT}, {"sum", AGG_SUM}, {"min", AGG_MIN},
    {"max", AGG_MAX},     {"avg", AGG_AVG}, {"exists", AGG_EXISTS},
};
#define NAGGS (sizeof aggs / sizeof aggs[0])

static int chk(check_ctx *c, node *n);

static int arg_is(check_ctx *c, node *call, node *k, int ok, const char *usage,
                  const char *expected)
{
    if (ok || loose(k->type))
        return 0;
    expr_err(c->E, k->line, k->col, "%s: expected %s, got %s", usage, expected, a_type(k->type));
    call->type = T_ANY;
    return -1;
}

static void to_literal(node *n, baton_type t)
{
    for (size_t i = 0; i < n->nkids; i++)
        node_free(n->kids[i]);
    free(n->kids);
    n->kids = NULL;
    n->nkids = 0;
    n->kind = N_LIT;
    n->lit.type = t;
    n->type = (int)t;
}

/* The zone argument of today(), hour(), weekday(): a string; a literal
 * one must name a zone the tz database has. */
static int chk_zone(check_ctx *c, node *call, node *z, const char *usage)
{
    if (arg_is(c, call, z, z->type == BATON_T_STRING, usage, "a time zone name (a string)"))
        return -1;
    if (z->kind == N_LIT && z->lit.type == BATON_T_STRING) {
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)z->lit.v.s.len, z->lit.v.s.ptr);
        if (z->lit.v.s.len >= sizeof name || memchr(z->lit.v.s.ptr, 0, z->lit.v.s.len) ||
            !zone_find(name)) {
            expr_err(c->E, z->line, z->col,
                     "unknown time zone '%.*s' (an IANA name such as 'Europe/Paris', as in "
                     "/usr/share/zoneinfo)",
                     (int)z->lit.v.s.len, z->lit.v.s.ptr);
            return -1;
        }
    }
    return 0;
}

static int chk_fn(check_ctx *c, node *n, const struct fn_def *f)
{
    int rc = 0;
    if (f->id == F_NOW && n->nkids > 0) {
        expr_err(c->E, n->line, n->col,
                 "now() takes no zone: an instant is the same in every zone; read it in one with "
                 "hour(now(), zone), weekday(now(), zone) or today(zone)");
        n->type = T_ANY;
        return -1;
    }
    if ((int)n->nkids < f->min || (int)n->nkids > f->max) {
        char least[32] = "";
        if (f->max > 2)
            snprintf(least, sizeof least, "at least ");
        else if (f->min != f->max)
            snprintf(least, sizeof least, "%d or ", f->min);
        int shown = f->max > 2 ? f->min : f->max;
        expr_err(c->E, n->line, n->col, "%s() takes %s%d argument%s, got %zu: %s", f->name, least,
                 shown, shown == 1 ? "" : "s", n->nkids, f->usage);
        n->type = T_ANY;
        return -1;
    }
    /* date('...') and timestamp('...') are literals, checked now */
    if ((f->id == F_DATE || f->id == F_TIMESTAMP) && n->kids[0] && n->kids[0]->kind == N_LIT &&
        n->kids[0]->lit.type == BATON_T_STRING) {
        const baton_value *s = &n->kids[0]->lit;
        int64_t v;
        if (f->id == F_DATE) {
            if (date_parse(s->v.s.ptr, s->v.s.len, &v) != 0) {
                expr_err(c->E, n->kids[0]->line, n->kids[0]->col,
                         "invalid date '%.*s' (expected YYYY-MM-DD, e.g. '2026-01-31')",
                         (int)s->v.s.len, s->v.s.ptr);
                return -1;
            }
            to_literal(n, BATON_T_DATE);
            n->lit.v.date = v;
        } else {
            if (timestamp_parse(s->v.s.ptr, s->v.s.len, &v) != 0) {
                expr_err(c->E, n->kids[0]->line, n->kids[0]->col,
                         "invalid timestamp '%.*s' (expected ISO 8601, e.g. "
                         "'2026-01-31T09:00:00Z')",
                         (int)s->v.s.len, s->v.s.ptr);
                return -1;
            }
            to_literal(n, BATON_T_TIMESTAMP);
            n->lit.v.ts = v;
        }
        return 0;
    }
    for (size_t i = 0; i < n->nkids; i++)
        if (chk(c, n->kids[i]) != 0)
            rc = -1;
    n->kind = N_FN;
    n->fn = f->id;
    if (rc)
        return -1;
    node **k = n->kids;
    switch (f->id) {
    case F_NOW: n->type = BATON_T_TIMESTAMP; break;
    case F_TODAY:
        n->type = BATON_T_DATE;
        if (n->nkids == 1)
            rc = chk_zone(c, n, k[0], f->usage);
        break;
    case F_LOWER:
    case F_UPPER:
    case F_TRIM:
        n->type = BATON_T_STRING;
        rc = arg_is(c, n, k[0], k[0]->type == BATON_T_STRING, f->usage, "a string");
        break;
    case F_LENGTH:
        n->type = BATON_T_INT;
        rc = arg_is(c, n, k[0], k[0]->type == BATON_T_STRING, f->usage, "a string");
        break;
    case F_CONTAINS:
    case F_STARTS_WITH:
    case F_ENDS_WITH:
        n->type = BATON_T_BOOL;
        rc = arg_is(c, n, k[0], k[0]->type == BATON_T_STRING, f->usage, "a string");
        rc |= arg_is(c, n, k[1], k[1]->type == BATON_T_STRING, f->usage, "a string");
        break;
    case F_COALESCE: {
        int t = BATON_T_NULL;
        for (size_t i = 0; i < n->nkids; i++) {
            int kt = k[i]->type;
            if (kt == BATON_T_NULL)
                continue;
            if (t == BATON_T_NULL || t == kt) {
                t = kt;
            } else if (kt == T_ANY || t == T_ANY) {
                t = T_ANY;
            } else if (is_num(t) && is_num(kt)) {
                t = BATON_T_FLOAT;
            } else {
                expr_err(c->E, k[i]->line, k[i]->col,
                         "coalesce(): every value must be of one type; %s after %s", a_type(kt),
                         a_type(t));
                rc = -1;
            }
        }
        n->type = t;
        break;
    }
    case F_ABS:
        n->type = k[0]->type;
        rc = arg_is(c, n, k[0], is_num(k[0]->type) || k[0]->type == BATON_T_DURATION, f->usage,
                    "a number or a duration");
        break;
    case F_ROUND:
        n->type = BATON_T_FLOAT;
        rc = arg_is(c, n, k[0], is_num(k[0]->type), f->usage, "a number");
        if (n->nkids == 2)
            rc |= arg_is(c, n, k[1], k[1]->type == BATON_T_INT, f->usage, "an int (digits)");
        break;
    case F_DATE:
        n->type = BATON_T_DATE;
        rc = arg_is(c, n, k[0], is_time(k[0]->type) || k[0]->type == BATON_T_STRING, f->usage,
                    "a timestamp, a date or a string");
        break;
    case F_TIMESTAMP:
        n->type = BATON_T_TIMESTAMP;
        rc = arg_is(c, n, k[0], is_time(k[0]->type) || k[0]->type == BATON_T_STRING, f->usage,
                    "a timestamp, a date or a string");
        break;
    case F_YEAR:
    case F_MONTH:
    case F_DAY:
    case F_HOUR:
    case F_WEEKDAY:
        n->type = BATON_T_INT;
        rc = arg_is(c, n, k[0], is_time(k[0]->type), f->usage, "a timestamp or a date");
        if (n->nkids == 2)
            rc |= chk_zone(c, n, k[1], f->usage);
        break;
    }
    return rc;
}

static int chk(check_ctx *c, node *n);

/* An aggregate over a path of one-to-many links (count(orders.lines),
 * exists(orders.lines where ...), sum(profile.orders.lines.qty)) is the
 * aggregate over the first link of the aggregate over the rest in each
 * of its rows: count = sum of the counts (0 without rows), exists =
 * exists with exists, sum, min and max of the inner ones. n becomes that
 * tree, checked; r is the first link's ROWS ref. */
static int multi_hop(check_ctx *c, node *n, const struct agg_def *a, node *arg, node *where,
                     const resolved *r, const segs *s)
{
    if (a->id == AGG_AVG) {
        char *p = join(s, 0, s->n);
        expr_err(c->E, arg->line, arg->col,
                 "avg() over several one-to-many links ('%s') is not defined: write "
                 "sum(%s) / count(%s) (a float when one side is)",
                 p, p, p);
        free(p);
        return -1;
    }
    node *inner = node_new(N_CALL, arg->line, arg->col);
    inner->name = xstrdup(a->name);
    node *iarg = node_new(N_NAME, arg->line, arg->col);
    iarg->name = join(s, r->rest, s->n);
    node_add_kid(inner, iarg);
    if (where)
        node_add_kid(inner, where);
    inner->fn = where != NULL;
    n->kids[1] = NULL; /* where now belongs to inner */
    c->level++;
    c->frames[c->level].entity = r->rows_entity;
    c->frames[c->level].rows = &c->e->refs[r->slot]->pub;
    if (c->level > c->e->max_level)
        c->e->max_level = c->level;
    int rc = chk(c, inner);
    c->level--;
    node *agg = node_new(N_AGG, n->line, n->col);
    agg->ref = r->slot;
    agg->level = c->level + 1;
    agg->fn = a->id == AGG_COUNT ? AGG_SUM : a->id;
    agg->kids = xcalloc(2, sizeof *agg->kids);
    agg->nkids = 2;
    if (a->id == AGG_EXISTS)
        agg->kids[1] = inner;
    else
        agg->kids[0] = inner;
    agg->height = inner->height + 1;
    agg->type = a->id == AGG_EXISTS ? BATON_T_BOOL : a->id == AGG_COUNT ? BATON_T_INT : inner->type;
    node_free(arg);
    free(n->kids);
    n->kids = NULL;
    n->nkids = 0;
    if (a->id == AGG_COUNT) {
        node *zero = node_new(N_LIT, n->line, n->col);
        zero->lit.type = BATON_T_INT;
        zero->type = BATON_T_INT;
        n->kind = N_FN;
        n->fn = F_COALESCE;
        n->height = 1;
        node_add_kid(n, agg);
        node_add_kid(n, zero);
        n->type = BATON_T_INT;
    } else {
        free(n->name);
        *n = *agg;
        free(agg);
    }
    if (rc)
        n->type = T_ANY;
    return rc;
}

static int chk_agg(check_ctx *c, node *n, const struct agg_def *a)
{
    node *arg = n->nkids ? n->kids[0] : NULL;
    int has_where = n->fn == 1;
    node *where = has_where ? n->kids[1] : NULL;
    const char *ex = a->id == AGG_COUNT || a->id == AGG_EXISTS ? "orders" : "orders.amount";
    if (!arg || n->nkids != (size_t)(has_where ? 2 : 1) || arg->kind != N_NAME) {
        expr_err(c->E, n->line, n->col,
                 "%s() takes a one-to-many link%s and an optional 'where': %s(%s where ...)",
                 a->name, a->id == AGG_COUNT || a->id == AGG_EXISTS ? "" : " and a field", a->name,
                 ex);
        n->type = T_ANY;
        return -1;
    }
    if (c->level >= EXPR_MAX_LEVEL) {
        expr_err(c->E, n->line, n->col, "aggregates nested too deeply (at most %d)",
                 EXPR_MAX_LEVEL);
        return -1;
    }
    resolved r;
    if (resolve(c, arg->name, WANT_ROWS, arg->line, arg->col, &r) != 0) {
        n->type = T_ANY;
        return -1;
    }
    segs s;
    split(&s, arg->name);
    if (r.rest < s.n && schema_reverse_find(r.rows_entity, s.v[r.rest])) {
        int mrc = multi_hop(c, n, a, arg, where, &r, &s);
        free(s.buf);
        return mrc;
    }
    int rc = 0;
    node *value = NULL;
    c->level++;
    c->frames[c->level].entity = r.rows_entity;
    c->frames[c->level].rows = &c->e->refs[r.slot]->pub;
    if (c->level > c->e->max_level)
        c->e->max_level = c->level;
    if (r.rest < s.n) {
        if (a->id == AGG_EXISTS) {
            expr_err(c->E, arg->line, arg->col, "exists() takes a link, not a field: exists(%s)",
                     s.v[0]);
            rc = -1;
        } else {
            resolved v;
            rc = walk_entity(c, r.rows_entity, &s, r.rest, r.rest, NULL, WANT_VALUE, arg->line,
                             arg->col, &v);
            if (rc == 0) {
                value = node_new(N_REF, arg->line, arg->col);
                value->ref = v.slot;
                value->type = v.type;
            }
        }
    } else if (a->id != AGG_COUNT && a->id != AGG_EXISTS) {
        expr_err(c->E, arg->line, arg->col, "%s() needs a field of the linked rows: %s(%s.<field>)",
                 a->name, a->name, arg->name);
        rc = -1;
    }
    if (where) {
        if (chk(c, where) != 0 || want_bool(c, where, "'where'") != 0)
            rc = -1;
    }
    c->level--;
    free(s.buf);
    int vt = value ? value->type : T_ANY;
    switch (a->id) {
    case AGG_COUNT: n->type = BATON_T_INT; break;
    case AGG_EXISTS: n->type = BATON_T_BOOL; break;
    case AGG_SUM:
        n->type = vt;
        if (value && !loose(vt) && !is_num(vt) && vt != BATON_T_DURATION) {
            expr_err(c->E, arg->line, arg->col, "sum() adds numbers; '%s' is %s", arg->name,
                     a_type(vt));
            rc = -1;
        }
        break;
    case AGG_AVG:
        n->type = BATON_T_FLOAT;
        if (value && !loose(vt) && !is_num(vt)) {
            expr_err(c->E, arg->line, arg->col, "avg() averages numbers; '%s' is %s", arg->name,
                     a_type(vt));
            rc = -1;
        }
        break;
    case AGG_MIN:
    case AGG_MAX:
        n->type = vt;
        if (vt == BATON_T_BOOL) {
            expr_err(c->E, arg->line, arg->col, "%s() needs values with an order; '%s' is a bool",
                     a->name, arg->name);
            rc = -1;
        }
        break;
    }
    /* becomes N_AGG: kids[0] value (or NULL), kids[1] where (or NULL) */
    node_free(arg);
    free(n->kids);
    n->kids = xcalloc(2, sizeof *n->kids);
    n->kids[0] = value;
    n->kids[1] = where;
    n->nkids = 2;
    n->kind = N_AGG;
    n->fn = a->id;
    n->ref = r.slot;
    n->level = c->level + 1;
    if (rc)
        n->type = T_ANY;
    return rc;
}

static int chk_call(check_ctx *c, node *n)
{
    for (size_t i = 0; i < NAGGS; i++)
        if (strcmp(aggs[i].name, n->name) == 0)
            return chk_agg(c, n, &aggs[i]);
    for (size_t i = 0; i < NFNS; i++)
        if (strcmp(fns[i].name, n->name) == 0)
            return chk_fn(c, n, &fns[i]);
    const char *cands[NFNS + NAGGS];
    for (size_t i = 0; i < NFNS; i++)
        cands[i] = fns[i].name;
    for (size_t i = 0; i < NAGGS; i++)
        cands[NFNS + i] = aggs[i].name;
    const char *best = suggest_nearest(n->name, cands, NFNS + NAGGS);
    if (best)
        expr_err(c->E, n->line, n->col, "unknown function '%s' (did you mean '%s'?)", n->name,
                 best);
    else
        expr_err(c->E, n->line, n->col, "unknown function '%s'", n->name);
    n->type = T_ANY;
    return -1;
}

static int chk(check_ctx *c, node *n)
{
    int rc = 0;
    switch (n->kind) {
    case N_LIT: n->type = (int)n->lit.type; return 0;
    case N_NAME: {
        resolved r;
        if (resolve(c, n->name, WANT_VALUE, n->line, n->col, &r) != 0) {
            n->type = T_ANY;
            return -1;
        }
        n->kind = N_REF;
        n->ref = r.slot;
        n->type = r.type;
        return 0;
    }
    case N_CALL: return chk_call(c, n);
    default: break;
    }
    for (size_t i = 0; i < n->nkids; i++)
        if (chk(c, n->kids[i]) != 0)
            rc = -1;
    if (rc) {
        n->type = T_ANY;
        return -1;
    }
    node **k = n->kids;
    switch (n->kind) {
    case N_NEG:
        n->type = k[0]->type;
        if (!loose(k[0]->type) && !is_num(k[0]->type) && k[0]->type != BATON_T_DURATION) {
            expr_err(c->E, n->line, n->col, "cannot negate %s", a_type(k[0]->type));
            return -1;
        }
        return 0;
    case N_NOT: n->type = BATON_T_BOOL; return want_bool(c, k[0], "'not'");
    case N_AND:
    case N_OR:
        n->type = BATON_T_BOOL;
        rc = want_bool(c, k[0], n->kind == N_AND ? "'and'" : "'or'");
        rc |= want_bool(c, k[1], n->kind == N_AND ? "'and'" : "'or'");
        return rc;
    case N_EQ:
    case N_NE:
    case N_LT:
    case N_LE:
    case N_GT:
    case N_GE: return op_cmp(c, n);
    case N_ADD:
    case N_SUB:
    case N_MUL:
    case N_DIV:
    case N_MOD: return op_arith(c, n);
    case N_IN:
    case N_NOTIN:
        n->type = BATON_T_BOOL;
        if (k[0]->type == BATON_T_NULL) {
            expr_err(c->E, n->line, n->col, "'null in [..]' is never true: test with 'is null'");
            return -1;
        }
        for (size_t i = 1; i < n->nkids; i++)
            if (!comparable(k[0]->type, k[i]->type)) {
                expr_err(c->E, k[i]->line, k[i]->col, "list item is %s but the value is %s",
                         a_type(k[i]->type), a_type(k[0]->type));
                rc = -1;
            } else if (k[i]->type == BATON_T_BOOL && 0) {
                rc = -1;
            }
        return rc;
    case N_ISNULL:
    case N_NOTNULL: n->type = BATON_T_BOOL; return 0;
    default: return 0;
    }
}

int expr_check(check_ctx *c, node *n)
{
    return chk(c, n);
}
