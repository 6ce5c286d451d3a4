/* journey/cond — conditions, filters and `until` expressions of a journey,
 * and the templates of its send nodes, through the expression engine
 * (core/expr). The names an expression sees in a journey:
 *   event.<field>   the event that entered the profile (event.type,
 *                   event.id, event.time read the envelope; anything else
 *                   data.<field>); in a wait_event filter and an exit
 *                   filter, the event being matched
 *   profile.<field> the profile's row in the profiles source, read when
 *                   the node runs
 *   <source>.<field> a lookup source (source_http), e.g. weather.temperature
 *   <action node id>.<field>  a field of the JSON response of an action
 *                   node this instance already ran (e.g. points.balance)
 */
#ifndef BATON_JOURNEY_COND_H
#define BATON_JOURNEY_COND_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "diag.h"
#include "journey/journey.h"

/* Compile c->text (scope "journey"); errors go to d as
 * file:line: where: key: line:col: message. */
void jcond_compile(jcond *c, const char *scope, const char *file, const char *where,
                   const char *key, diag *d);
void jcond_release(jcond *c);
/* Check a send node's template text. */
void jcond_check_template(const char *text, const char *file, int line, const char *where,
                          const char *key, diag *d);

/* What an expression of one instance reads. */
typedef struct jscope {
    const char *profile_id;
    json_t *event;   /* {"id","type","profile","time","data":{...}} borrowed */
    json_t *results; /* {"<action node>": {...response...}} borrowed, may be NULL */
    /* Fill *row with the profile's fields (a new JSON object, or NULL when
     * the profile is unknown). Called at most once per evaluation. */
    json_t *(*profile)(void *ud, const char *profile_id);
    /* A lookup source by name (weather): a new JSON object, or NULL. */
    json_t *(*lookup)(void *ud, const char *source, const char *profile_id, json_t *event);
    void *ud;
} jscope;

/* Evaluate a condition: *truth is 1 only when it is true (NULL and false
 * give 0). An absent condition is true. Returns 0, or -1 with err. */
int jcond_truth(const jcond *c, jscope *s, int *truth, char *err, size_t errlen);
/* Evaluate an `until` expression to a timestamp in ms. */
int jcond_timestamp(const jcond *c, jscope *s, int64_t *ms, char *err, size_t errlen);

#endif
