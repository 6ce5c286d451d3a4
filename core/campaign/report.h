/* campaign/report — what campaigns say about themselves as JSON, built
 * once for the CLI (`campaign plan --json`, `campaign runs --json`) and
 * for the HTTP API (GET /v1/campaigns...): the same answer either way. */
#ifndef BATON_CAMPAIGN_REPORT_H
#define BATON_CAMPAIGN_REPORT_H

#include <jansson.h>

#include "campaign/engine.h"
#include "plugin/app.h"
#include "store/store.h"

/* `campaign plan --json` of an executed plan: {"campaign", "counts",
 * "excluded", "notes"?}. */
json_t *campaign_plan_json(const camp_env *e);

/* The configured campaign file whose campaign.name is name (a name
 * only: never a path), or NULL. A new string. */
char *campaign_file_named(app *a, const char *name);

/* Plan the campaign in file with a (opened with APP_INIT): parse, check,
 * count. 0 with *out; -1 when the file has errors (in d); -2 when the
 * plan failed while it ran (its reason in err). */
int campaign_plan_file(app *a, const char *file, json_t **out, diag *d, char *err, size_t errlen);

/* {"runs": [...]} of one campaign (NULL: all), newest first, each with
 * its activities; run > 0: that run only (empty when it is not there). */
json_t *campaign_runs_json(store *s, const char *cname, int64_t run);

/* {"campaigns": [{"name", "file", "schedule", "last_run", "state"}]} for
 * the configured campaigns; st may be NULL (no run history read). A
 * file that does not parse is listed with its "error". */
json_t *campaign_list_json(app *a, store *st);

#endif
