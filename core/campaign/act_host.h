/* campaign/act_host — the act_* members of the host table: what an
 * activity plugin sees of the campaign engine while its check() or run()
 * is called. */
#ifndef BATON_CAMPAIGN_ACT_HOST_H
#define BATON_CAMPAIGN_ACT_HOST_H

#include <baton/baton.h>

#include "campaign/engine.h"
#include "lang/expr.h"

struct baton_activity_ctx {
    camp_env *env;
    size_t idx; /* the activity's index in the campaign */
    int running;
    expr_sql q; /* parameters bound so far */
    buf scratch;
};

void act_ctx_init(baton_activity_ctx *x, camp_env *e, size_t idx, int running);
void act_ctx_free(baton_activity_ctx *x);

/* The act_* members, for the host table (plugin_host.c). */
const char *ah_id(baton_activity_ctx *x);
int ah_setting_count(baton_activity_ctx *x, const char *path);
const char *ah_setting_string(baton_activity_ctx *x, const char *path);
int ah_setting_number(baton_activity_ctx *x, const char *path, double *out);
int ah_setting_bool(baton_activity_ctx *x, const char *path, int *out);
void ah_error(baton_activity_ctx *x, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
size_t ah_input_count(baton_activity_ctx *x);
const char *ah_input_dimension(baton_activity_ctx *x, size_t i);
const char *ah_input_table(baton_activity_ctx *x, size_t i);
size_t ah_input_column_count(baton_activity_ctx *x, size_t i);
const char *ah_input_column(baton_activity_ctx *x, size_t i, size_t col, baton_type *type);
int ah_output(baton_activity_ctx *x, const char *name, const char *dimension, int like);
int ah_output_column(baton_activity_ctx *x, const char *name, const char *column, baton_type type);
const char *ah_output_table(baton_activity_ctx *x, const char *name);
const char *ah_audience_table(baton_activity_ctx *x, const char *name, const char **dimension);
int ah_audience_saved(baton_activity_ctx *x, const char *name, const char *dimension);
int ah_is_plan(baton_activity_ctx *x);
void ah_note(baton_activity_ctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ah_entity(baton_activity_ctx *x, const char *dimension, const char **table, const char **key);
int ah_field_type(baton_activity_ctx *x, const char *dimension, const char *field);
int ah_link(baton_activity_ctx *x, const char *from, const char *to, const char **from_col,
            const char **to_col);
int ah_expr_sql(baton_activity_ctx *x, const char *path, const char *text, const char *dimension,
                const char *alias, int input, baton_type want, baton_type *type, baton_buf *out);
int ah_expr_sql_joins(baton_activity_ctx *x, const char *path, const char *text,
                      const char *dimension, const char *alias, int input_i, baton_type want,
                      baton_type *type, baton_buf *out, baton_buf *joins);
void ah_param(baton_activity_ctx *x, const baton_value *v, baton_buf *out);
int ah_sql(baton_activity_ctx *x, const char *sql, baton_row_fn fn, void *ud);
const char *ah_dialect(baton_activity_ctx *x);
const char *ah_setting_path(baton_activity_ctx *x, const char *path);

#endif
