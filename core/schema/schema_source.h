/* schema_source — which schema a configured data source declares
 * (`schema = "conf/schema.cfg"` in its group), found and loaded the same
 * way by `baton check`, the plugin host API and anyone else. */
#ifndef BATON_SCHEMA_SOURCE_H
#define BATON_SCHEMA_SOURCE_H

#include "config/config.h"
#include "base/diag.h"
#include "schema/schema.h"

/* The path of source `name`'s schema file, resolved against the file
 * that holds the setting (a new string), or NULL when the source names
 * none. *line (may be NULL) gets the setting's line. */
char *schema_source_path(const conf *c, const char *name, int *line);
/* Load the schema of the profiles source (conf's `profiles`). NULL when
 * none is configured or it has errors (reported to d when d is not NULL). */
schema *schema_load_profiles(const conf *c, diag *d);
void schema_destroy(schema *s);

#endif
