/* journey/cond — until core/expr's evaluator is wired in, an expression
 * cannot be evaluated: journeys that use none run, the others fail with
 * this reason rather than guess. */
#include "journey/cond.h"

#include <stdio.h>

void jcond_compile(jcond *c, const char *scope, const char *file, const char *where,
                   const char *key, diag *d)
{
}

void jcond_release(jcond *c) { c->compiled = NULL; }

void jcond_check_template(const char *text, const char *file, int line, const char *where,
                          const char *key, diag *d)
{
}

int jcond_truth(const jcond *c, jscope *s, int *truth, char *err, size_t errlen)
{
    if (!c->text) {
        *truth = 1;
        return 0;
    }
    snprintf(err, errlen, "expressions are not available in this build");
    return -1;
}

int jcond_timestamp(const jcond *c, jscope *s, int64_t *ms, char *err, size_t errlen)
{
    snprintf(err, errlen, "expressions are not available in this build");
    return -1;
}
