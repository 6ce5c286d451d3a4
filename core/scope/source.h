/* journey/source — the data a journey condition reads besides its event:
 * profile.<field> from the source named by `profiles` (a SQL source such
 * as source_sqlite: one row of the profiles table by key), and
 * <source>.<field> from lookup sources (source_http), and the rows of
 * other entities of that source for links of profile.* (aggregates,
 * {{#each}}, profile.store.city). Opens only the
 * source instances it needs, so `journey test` runs without channels. */
#ifndef BATON_JOURNEY_SOURCE_H
#define BATON_JOURNEY_SOURCE_H

#include <jansson.h>
#include <pthread.h>

#include "plugin/app.h"
#include "base/diag.h"
#include "schema/schema.h"
#include "scope/cond.h"

typedef struct jsource jsource;

/* NULL-safe: a configuration without `profiles` gives a jsource whose
 * profile() finds no one. Errors (a source that fails to start) go to d. */
jsource *jsource_open(app *a, diag *d);
void jsource_close(jsource *s);
/* The instance of the profiles source it reads (NULL: none). */
instance *jsource_profiles(jsource *s);
/* The profile's row as a JSON object (new reference), or NULL. */
json_t *jsource_profile(jsource *s, const char *profile_id);
/* Write fields of one profile: set is {field: value} (JSON scalars),
 * written by UPDATE ... WHERE <key> = ? with bound parameters and quoted
 * identifiers. 0, or -1 with err (no profiles source, no such profile, a
 * failed statement). */
int jsource_update(jsource *s, const char *profile_id, json_t *set, char *err, size_t errlen);
/* One page of profiles in key order, after the key *after (NULL: from the
 * first), at most limit: the members of the saved audience table (NULL:
 * every profile) for which filter (a compiled expression over the
 * profiles entity, NULL: none) is true at now (seconds). fn gets each
 * profile's key and its row (borrowed JSON); *after is replaced by the
 * page's last key (a new string; free it). Returns the rows read, or -1
 * with err. */
typedef void (*jsource_scan_fn)(void *ud, const char *profile_id, json_t *row);
long jsource_scan(jsource *s, const char *audience_table, const void *filter, int64_t now,
                  char **after, size_t limit, jsource_scan_fn fn, void *ud, char *err,
                  size_t errlen);
/* 1 when the profiles source has the profile, 0 when it has not, -1 when
 * there is no profiles source or the read failed. */
int jsource_profile_exists(jsource *s, const char *profile_id);
/* A lookup source's fields for a profile (new reference), or NULL. */
json_t *jsource_lookup(jsource *s, const char *source, const char *profile_id, json_t *event);
/* A journey step's profile and linked rows in one call (a jbatch_fn;
 * ud: the jsource): one round trip when the source batches (exec_batch),
 * else one exec per read. */
int jsource_batch(void *ud, const char *profile_id, json_t **profile, size_t n,
                  const schema_entity *const *ents, const schema_field *const *cols,
                  const baton_value *vals, size_t limit, json_t **rows, char *err, size_t errlen);
/* A step's profile and the aggregates of its conditions computed by the
 * source (a jaggs_fn; ud: the jsource): one bound statement per link,
 * compiled once a second at most and kept prepared by the source; one
 * round trip when the source batches. */
int jsource_aggs(void *ud, const char *profile_id, json_t **profile, size_t n, jagg_read *reads,
                 int64_t now, char *err, size_t errlen);
/* The jrows_fn of journey/cond.h over a jsource (ud): rows of ent's table
 * in the profiles source whose column equals v, in key order, at most
 * limit, as a new JSON array (strings for dates and timestamps, as the
 * profile's row), or NULL with err. Any thread (one query at a time). */
json_t *jsource_rows(void *ud, const schema_entity *ent, const schema_field *col,
                     const baton_value *v, size_t limit, char *err, size_t errlen);
/* The same read over any started SQL source instance (a campaign's data
 * source): lock, when not NULL, is held around the query. */
json_t *jsource_read_rows(instance *src, pthread_mutex_t *lock, const schema_entity *ent,
                          const schema_field *col, const baton_value *v, size_t limit, char *err,
                          size_t errlen);
/* Add the members of a JSON object to r as "<prefix>.<name>" (nested
 * objects as deeper dotted names; prefix NULL: bare names). */
void jsource_json_to_record(baton_record *r, const char *prefix, json_t *o);
/* jsource_profile and jsource_lookup with the jscope callbacks' types
 * (ud: the jsource), for the journey engine's ops. */
json_t *jsource_profile_cb(void *ud, const char *profile_id);
json_t *jsource_lookup_cb(void *ud, const char *source, const char *profile_id, json_t *event);

#endif
