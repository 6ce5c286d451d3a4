/* expr/host_api — expressions and templates as the SDK's host table
 * offers them to plugins (baton_host.expr_* and template_*). Scopes are
 * described in baton.h; an entity or "journey" scope needs the schema of
 * the profiles source, which whoever loads it registers here. */
#ifndef BATON_EXPR_HOST_API_H
#define BATON_EXPR_HOST_API_H

#include <stdint.h>

#include <baton/baton.h>

#include "schema/schema.h"

/* The schema scopes resolve against when a plugin compiles with no
 * instance (NULL: none; then only the NULL scope compiles). Instances use
 * their own app's schema (instance.schema); this is for tests and tools.
 * Keep it alive while any expression compiled against it lives. */
void expr_host_set_schema(const schema *s);
/* The clock now() reads for plugins (NULL: the system clock), in seconds
 * since the epoch. */
void expr_host_set_clock(int64_t (*now)(void));

baton_expr *host_expr_compile(baton_instance *inst, const char *text, const char *scope, char *err,
                              size_t errlen);
int host_expr_eval(const baton_expr *e, const baton_record *r, baton_value *out,
                   baton_buf *scratch);
void host_expr_free(baton_expr *e);
baton_template *host_template_compile(baton_instance *inst, const char *text, int html, char *err,
                                      size_t errlen);
baton_template *host_template_compile_as(baton_instance *inst, const char *text, int escape,
                                         char *err, size_t errlen);
int host_template_render(const baton_template *t, const baton_record *r, baton_buf *out);
void host_template_free(baton_template *t);

#endif
