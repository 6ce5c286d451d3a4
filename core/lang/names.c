/* expr/scope — what names mean where an expression is compiled. */
#include <stdlib.h>
#include <string.h>

#include "lang/ast.h"
#include "base/mem.h"

expr_scope *expr_scope_new(const schema *s, const schema_entity *entity)
{
    expr_scope *sc = xcalloc(1, sizeof *sc);
    sc->s = s;
    sc->entity = entity;
    return sc;
}

static void add_prefix(expr_scope *sc, const char *prefix, const schema_entity *entity)
{
    for (size_t i = 0; i < sc->nprefixes; i++)
        if (strcmp(sc->prefixes[i].prefix, prefix) == 0) {
            sc->prefixes[i].entity = entity;
            return;
        }
    sc->prefixes = xrealloc(sc->prefixes, (sc->nprefixes + 1) * sizeof *sc->prefixes);
    sc->prefixes[sc->nprefixes].prefix = xstrdup(prefix);
    sc->prefixes[sc->nprefixes].entity = entity;
    sc->nprefixes++;
}

void expr_scope_add_entity(expr_scope *sc, const char *prefix, const schema_entity *entity)
{
    add_prefix(sc, prefix, entity);
}

void expr_scope_add_untyped(expr_scope *sc, const char *prefix)
{
    add_prefix(sc, prefix, NULL);
}

void expr_scope_add_field(expr_scope *sc, const char *name, baton_type type, const char *column)
{
    for (size_t i = 0; i < sc->nfields; i++)
        if (strcmp(sc->fields[i].name, name) == 0) {
            sc->fields[i].type = type;
            free(sc->fields[i].column);
            sc->fields[i].column = xstrdup(column ? column : name);
            return;
        }
    sc->fields = xrealloc(sc->fields, (sc->nfields + 1) * sizeof *sc->fields);
    sc->fields[sc->nfields].name = xstrdup(name);
    sc->fields[sc->nfields].type = type;
    sc->fields[sc->nfields].column = xstrdup(column ? column : name);
    sc->nfields++;
}

void expr_scope_set_open(expr_scope *sc, int open)
{
    sc->open = open;
}

void expr_scope_free(expr_scope *sc)
{
    if (!sc)
        return;
    for (size_t i = 0; i < sc->nprefixes; i++)
        free(sc->prefixes[i].prefix);
    for (size_t i = 0; i < sc->nfields; i++) {
        free(sc->fields[i].name);
        free(sc->fields[i].column);
    }
    free(sc->prefixes);
    free(sc->fields);
    free(sc);
}

expr_scope *expr_scope_journey(const schema *s, const schema_entity *profiles,
                               const char *const *sources, size_t nsources)
{
    expr_scope *sc = expr_scope_new(s, NULL);
    expr_scope_add_entity(sc, "profile", profiles);
    expr_scope_add_untyped(sc, "event");
    expr_scope_add_field(sc, "event.type", BATON_T_STRING, NULL);
    expr_scope_add_field(sc, "event.id", BATON_T_STRING, NULL);
    expr_scope_add_field(sc, "event.time", BATON_T_TIMESTAMP, NULL);
    for (size_t i = 0; i < nsources; i++)
        expr_scope_add_untyped(sc, sources[i]);
    return sc;
}
