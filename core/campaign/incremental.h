/* campaign/incremental — build_audience with `incremental = true`
 * (incremental.c). */
#ifndef BATON_CAMPAIGN_INCREMENTAL_H
#define BATON_CAMPAIGN_INCREMENTAL_H

#include <stddef.h>

#include "campaign/engine.h"

/* Whether a is a build_audience with incremental = true. */
int camp_incremental(const camp_activity *a);
/* After it ran: leave out of its output the keys earlier runs of the
 * campaign targeted within its retention, then (a real run) record this
 * run's. 0, or -1 with e->error. */
int camp_incremental_apply(camp_env *e, size_t idx);

#endif
