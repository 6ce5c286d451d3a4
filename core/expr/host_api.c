/* Until core/expr lands, the host table answers that expressions are
 * unavailable; plugins see a clean error, never a NULL pointer. */
#include "expr/host_api.h"

#include <stdio.h>

baton_expr *host_expr_compile(baton_instance *inst, const char *text, const char *scope,
                              char *err, size_t errlen)
{
    snprintf(err, errlen, "expressions are not available in this build");
    return NULL;
}
int host_expr_eval(const baton_expr *e, const baton_record *r, baton_value *out,
                   baton_buf *scratch)
{
    return -1;
}
void host_expr_free(baton_expr *e) {}
baton_template *host_template_compile(baton_instance *inst, const char *text, int html,
                                      char *err, size_t errlen)
{
    snprintf(err, errlen, "templates are not available in this build");
    return NULL;
}
int host_template_render(const baton_template *t, const baton_record *r, baton_buf *out)
{
    return -1;
}
void host_template_free(baton_template *t) {}
