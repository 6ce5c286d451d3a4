/* journey/source — the data a journey condition reads besides its event:
 * profile.<field> from the source named by `profiles` (a SQL source such
 * as source_sqlite: one row of the profiles table by key), and
 * <source>.<field> from lookup sources (source_http). Opens only the
 * source instances it needs, so `journey test` runs without channels. */
#ifndef BATON_JOURNEY_SOURCE_H
#define BATON_JOURNEY_SOURCE_H

#include <jansson.h>

#include "app.h"
#include "diag.h"
#include "journey/engine.h"

typedef struct jsource jsource;

/* NULL-safe: a configuration without `profiles` gives a jsource whose
 * profile() finds no one. Errors (a source that fails to start) go to d. */
jsource *jsource_open(app *a, diag *d);
void jsource_close(jsource *s);
/* Fill ops->profile, ops->lookup and ops->ud. */
void jsource_ops(jsource *s, jengine_ops *ops);

#endif
