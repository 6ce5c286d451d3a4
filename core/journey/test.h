/* journey/test — `baton journey test` with the configuration's data: the
 * profiles source and lookups for conditions, disabled channels recorded
 * as skipped; shared by the CLI and the console (POST
 * /v1/journeys/NAME/test). */
#ifndef BATON_JOURNEY_TEST_H
#define BATON_JOURNEY_TEST_H

#include <jansson.h>
#include <stdint.h>

#include "base/diag.h"
#include "journey/journey.h"
#include "plugin/app.h"

/* Run j over the JSON-lines events in events_path (journey/sim.h) with
 * the data of a (may be NULL: no profiles, every channel on). 0 with *out,
 * or -1: errors in d, or a runtime failure in err. */
int journey_test_run(app *a, journey *j, const char *events_path, int64_t until_ms, json_t **out,
                     diag *d, char *err, size_t errlen);
/* The same with mocks ({"lookups": {"<source>": {...}}, "actions":
 * {"<node id or action>": {...}}}, may be NULL): no lookup or action
 * reaches the network, with or without them (one without a mock reads as
 * null or {}, said in "notes"). *out gains, per profile, "steps" [{"node",
 * "at"}] and "sends" [{"node", "channel", "at", "content": {part: text},
 * "outcome", "decided": {"consent", "address", "quiet_hours", "caps"}}],
 * and "not_entered" (profiles the profiles source lacks) and "notes". */
int journey_test_run_mocks(app *a, journey *j, const char *events_path, int64_t until_ms,
                           json_t *mocks, json_t **out, diag *d, char *err, size_t errlen);

/* Check text as the journey file at path (journey_load: every error of
 * the file); messages name path. Returns the number of errors added. */
size_t journey_check_text(app *a, const char *path, const char *text, size_t n, diag *d);

/* The settings of each journey node type, for the console's forms:
 * {"wait": {"help", "keys": [...]}, ...} (keys as keymap_describe_json). */
json_t *journey_describe(void);

#endif
