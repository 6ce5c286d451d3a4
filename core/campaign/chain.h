/* campaign/chain — an `end` that starts another campaign (chain.c). */
#ifndef BATON_CAMPAIGN_CHAIN_H
#define BATON_CAMPAIGN_CHAIN_H

#include <jansson.h>

#include "campaign/engine.h"

/* end_check's part: start names a configured campaign, parameters fit
 * its declarations, and no chain of starts leads back here. 0 or -1. */
int camp_chain_check(baton_activity_ctx *x);
/* After a run is done: the ends with `start` that rows reached, as
 * [{"end", "start", "parameters", "rows"}]. */
json_t *camp_chain_pending(const camp_env *e);
/* Run each pending campaign (trigger "chain") with its parameters, with
 * o's store, dispatchers and progress; the worst exit code. */
int camp_chain_start(app *a, act_registry *reg, const char *from, int64_t run, json_t *pending,
                     const camp_run_opts *o, diag *d);

#endif
