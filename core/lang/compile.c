/* expr/compile — the public entry points: parse, check, own the result;
 * errors as "file:line: setting: L:C: message". */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lang/ast.h"
#include "base/mem.h"

void expr_err(expr_errs *E, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    if (E->line0 > 0) {
        if (line == 1)
            col += E->col0 - 1;
        line += E->line0 - 1;
    }
    if (!E->first)
        E->first = xasprintf("%d:%d: %s", line, col, msg);
    if (E->d) {
        const expr_origin *o = E->o;
        const char *file = o ? o->file : NULL;
        int l = o ? o->line : 0;
        if (o && o->setting)
            diag_error(E->d, file, l, "%s: %d:%d: %s", o->setting, line, col, msg);
        else
            diag_error(E->d, file, l, "%d:%d: %s", line, col, msg);
    }
    E->n++;
    free(msg);
}

/* Number the aggregates (expr_agg_count), each node once. */
static void number_aggs(expr *e, node *n)
{
    if (!n)
        return;
    if (n->kind == N_AGG) {
        n->agg = (int)e->naggs;
        e->aggs = xrealloc(e->aggs, (e->naggs + 1) * sizeof *e->aggs);
        e->aggs[e->naggs++] = n;
    }
    for (size_t i = 0; i < n->nkids; i++)
        number_aggs(e, n->kids[i]);
}

expr *expr_compile_frames(const char *text, const expr_scope *sc, const check_frame *frames,
                          int level, unsigned flags, expr_errs *E)
{
    static const expr_scope empty;
    if (!sc)
        sc = &empty;
    expr *e = xcalloc(1, sizeof *e);
    e->text = xstrdup(text ? text : "");
    e->schema = sc->s;
    e->entity = sc->entity;
    e->owns_refs = 1;
    size_t before = E->n;
    e->root = expr_parse(e->text, E);
    if (e->root) {
        check_ctx c = {.sc = sc, .e = e, .E = E, .level = level, .outer_levels = level};
        for (int i = 1; i <= level && i <= EXPR_MAX_LEVEL; i++)
            c.frames[i] = frames[i];
        e->max_level = level;
        expr_check(&c, e->root);
        if (E->n == before && (flags & EXPR_WANT_BOOL) && e->root->type != EXPR_T_ANY &&
            e->root->type != BATON_T_BOOL && e->root->type != BATON_T_NULL)
            expr_err(E, 1, 1, "expected a condition (true or false), but this is %s %s",
                     e->root->type == BATON_T_INT ? "an" : "a", expr_type_name(e->root->type));
    }
    if (E->n != before || !e->root) {
        expr_free(e);
        return NULL;
    }
    number_aggs(e, e->root);
    static _Atomic uint64_t ids;
    e->id = ++ids;
    return e;
}

expr *expr_compile(const char *text, const expr_scope *sc, const expr_origin *o, unsigned flags,
                   diag *d)
{
    expr_errs E = {.d = d, .o = o};
    expr *e = expr_compile_frames(text, sc, NULL, 0, flags, &E);
    free(E.first);
    return e;
}

expr *expr_compile_msg(const char *text, const expr_scope *sc, unsigned flags, char *err,
                       size_t errlen)
{
    expr_errs E = {0};
    expr *e = expr_compile_frames(text, sc, NULL, 0, flags, &E);
    if (!e && err && errlen)
        snprintf(err, errlen, "%s", E.first ? E.first : "invalid expression");
    free(E.first);
    return e;
}

void expr_free(expr *e)
{
    if (!e)
        return;
    node_free(e->root);
    free(e->aggs);
    if (e->owns_refs)
        expr_refs_free(e);
    free(e->text);
    free(e);
}

int expr_result_type(const expr *e)
{
    return e->root->type;
}
const char *expr_text(const expr *e)
{
    return e->text;
}
uint64_t expr_id(const expr *e)
{
    return e->id;
}

size_t expr_agg_count(const expr *e)
{
    return e->naggs;
}

const expr_ref *expr_agg_rows(const expr *e, size_t agg)
{
    return agg < e->naggs ? &e->refs[e->aggs[agg]->ref]->pub : NULL;
}

size_t expr_ref_count(const expr *e)
{
    return e->nrefs;
}
const expr_ref *expr_ref_at(const expr *e, size_t i)
{
    return i < e->nrefs ? &e->refs[i]->pub : NULL;
}
