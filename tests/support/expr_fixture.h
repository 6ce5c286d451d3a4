/* expr_fixture — the sample schema loaded, scopes over it, and an env of
 * baton_records with rows for one-to-many links, for expression and
 * template tests. */
#ifndef BATON_TEST_EXPR_FIXTURE_H
#define BATON_TEST_EXPR_FIXTURE_H

#include "lang/expr.h"
#include "base/record.h"
#include "schema/schema.h"

typedef struct fx_rows {
    const char *path;        /* the ROWS ref's path: "orders" */
    const void *const *rows; /* const record * each */
    size_t n;
} fx_rows;

typedef struct fx_env {
    const record *top;
    const fx_rows *rows; /* rows for level 0, by path */
    size_t nrows;
    int64_t now;
} fx_env;

/* Load the sample schema (aborts on error). */
void fx_schema(schema *s);
/* An env whose get() reads records by path and rows() hands out fx->rows
 * by path (for any level: a test keeps paths distinct). */
expr_env fx_env_make(fx_env *fx);
/* Evaluate and describe the result as "TYPE:value" ("int:3", "null:",
 * "string:abc", "timestamp:2026-01-01T00:00:00Z"), "error:<msg>" when
 * evaluation fails, "compile:<first error>" when compiling fails. The
 * string is static (overwritten by the next call). */
const char *fx_eval(const char *text, const expr_scope *sc, const expr_env *env);

#endif
