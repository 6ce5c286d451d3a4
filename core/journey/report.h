/* journey/report — what the state store says about journeys, as JSON:
 * `journey test` (each profile's state, path and sends), `journey status`
 * (profiles at and through each node) and `baton profile`. */
#ifndef BATON_JOURNEY_REPORT_H
#define BATON_JOURNEY_REPORT_H

#include <jansson.h>

#include "journey/journey.h"
#include "store/store.h"

/* {"<profile>": {"state", "path", "sent"}} for one journey, profiles in
 * the order they entered. A profile's instances (re-entries) are joined:
 * path and sent run on, state is the latest's. */
json_t *jreport_profiles(store *st, const char *jname);
/* {"journey", "profiles", "states": {...}, "nodes": {"<id>": {"type",
 * "at", "through"}}} — through counts profiles that entered the node. */
json_t *jreport_status(store *st, const journey *j);
/* `journey status --json` (and GET /v1/journeys/NAME): jreport_status
 * with the inbox's dead letters of <data_dir> ("dead_letters": the count,
 * "latest_dead_letters": the latest 5). When they cannot be read, the
 * count is null and *dead_err (may be NULL) is set to 1 with err. */
json_t *jreport_journey(store *st, const journey *j, const char *data_dir, int *dead_err, char *err,
                        size_t errlen);
/* A journey's own dead letters: the profiles that failed at a node (state
 * failed: an `until` or a condition that could not be evaluated, an action
 * or update_profile that failed with no on_error...), at node (NULL: at
 * any), newest first, at most limit: {"journey", "node", "count",
 * "latest": [{"at", "profile", "node", "reason", "event"}]}; "event" is
 * the event that brought the profile in. */
json_t *jreport_dead_letters(store *st, const journey *j, const char *node, size_t limit);
/* {"profile", "journeys": [{"journey", "state", "node", "entered",
 * "updated", "path", "reason"}], "sent": [{"journey", "node", "kind",
 * "channel"|"action", "status", "at"}], "deliveries": [every row of the
 * delivery log for it, campaign sends included (delivery/report.h)]} */
json_t *jreport_profile(store *st, const char *profile);

/* The state as `journey test` names it: active becomes waiting. */
const char *jreport_state_name(const char *stored);

#endif
