#include "support/expr_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "support/sample_schema.h"

void fx_schema(schema *s)
{
    diag d;
    diag_init(&d);
    if (schema_load_string(s, sample_schema_text, "sample_schema", &d) != 0) {
        diag_print(&d, stderr);
        abort();
    }
    diag_free(&d);
}

static int fx_get(void *ud, const void *row, const expr_ref *ref, baton_value *out, char *err,
                  size_t errlen)
{
    fx_env *fx = ud;
    return expr_record_get((void *)fx->top, row, ref, out, err, errlen);
}

static int fx_rows_cb(void *ud, const void *row, const expr_ref *ref, const void *const **rows,
                      size_t *n, char *err, size_t errlen)
{
    fx_env *fx = ud;
    for (size_t i = 0; i < fx->nrows; i++)
        if (strcmp(fx->rows[i].path, ref->path) == 0) {
            *rows = fx->rows[i].rows;
            *n = fx->rows[i].n;
            return 0;
        }
    *rows = NULL;
    *n = 0;
    return 0;
}

expr_env fx_env_make(fx_env *fx)
{
    expr_env env = {.get = fx_get, .rows = fx_rows_cb, .ud = fx, .now = fx->now};
    return env;
}

const char *fx_eval(const char *text, const expr_scope *sc, const expr_env *env)
{
    static char out[512];
    char err[256];
    expr *e = expr_compile_msg(text, sc, 0, err, sizeof err);
    if (!e) {
        snprintf(out, sizeof out, "compile:%s", err);
        return out;
    }
    expr_arena a;
    expr_arena_init(&a);
    baton_value v;
    if (expr_eval(e, env, &a, &v, err, sizeof err) != 0) {
        snprintf(out, sizeof out, "error:%s", err);
    } else {
        buf b;
        buf_init(&b);
        buf_adds(&b, "");
        expr_value_format(&v, &b);
        snprintf(out, sizeof out, "%s:%s",
                 v.type == BATON_T_NULL ? "null" : schema_type_name(v.type), b.data);
        buf_free(&b);
    }
    expr_arena_free(&a);
    expr_free(e);
    return out;
}
