/* journey/sim — `baton journey test`: one journey over a JSON-lines
 * events file with a simulated clock that jumps to each next event or
 * timer, in a state store of its own in memory. Nothing is delivered:
 * sends and actions are recorded. */
#ifndef BATON_JOURNEY_SIM_H
#define BATON_JOURNEY_SIM_H

#include <jansson.h>
#include <stdint.h>

#include "base/diag.h"
#include "journey/engine.h"
#include "journey/journey.h"

/* Run j over the events in events_path, in time order, then timers until
 * none is pending or the clock passes until_ms (INT64_MAX: no limit).
 * ops supplies channel_enabled and the condition data (send and action
 * are ignored). On success *out is {"journey", "profiles",
 * "dead_letters"} (docs/cli.md). A file that cannot be read
 * goes to d; a store failure returns -1 with err. */
int journey_simulate(journey *j, const jengine_ops *ops, const char *events_path, int64_t until_ms,
                     json_t **out, diag *d, char *err, size_t errlen);

#endif
