/* campaign engine — checks a parsed campaign against the schema, the
 * activity types and the channels, then plans or runs it: every targeting
 * activity becomes work tables in the campaign's data source (set work,
 * pushed down as SQL), with an exact count on every transition. */
#ifndef BATON_CAMPAIGN_ENGINE_H
#define BATON_CAMPAIGN_ENGINE_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "plugin/app.h"
#include "campaign/campaign.h"
#include "lang/expr.h"
#include "schema/schema.h"
#include "store/store.h"

struct dispatcher;

/* Where a send finds the dispatcher of a channel when the process already
 * runs one per channel (baton serve: at most one dispatcher per channel
 * may be open), and the started channel instance it delivers through.
 * Returns NULL when there is none: the send opens its own for the run. */
typedef struct dispatcher *(*camp_dispatcher_fn)(void *ud, const char *channel, instance **inst);

/* An activity type: a plugin's, or one of the host's own (send, wait,
 * and_join, end). */
typedef struct act_type {
    const char *name;
    const baton_activity_type *t;
    instance *inst; /* NULL for the host's own */
    int flow;       /* wait, and_join, end: no data of their own */
    int send;
} act_type;

/* The activity types: every activity_*.so on the plugin path, loaded and
 * initialised once per app, and the host's own. */
typedef struct act_registry {
    act_type *v;
    size_t n;
    instance **insts;
    size_t ninsts;
} act_registry;

int act_registry_load(act_registry *r, app *a, diag *d);
const act_type *act_registry_find(const act_registry *r, const char *name);
void act_registry_free(act_registry *r);
/* Every activity type and its keys, as `plugins --describe` prints them:
 * {"build_audience": {"help", "keys": [...]}, ...}. */
json_t *act_registry_describe(const act_registry *r);

/* Check text as the campaign file at path, as `baton check` checks a
 * campaign (parse, graph, every activity against the schema); messages
 * name path. Returns the number of errors added to d. */
size_t campaign_check_text(app *a, const char *path, const char *text, size_t n, diag *d);

/* Per-activity state of one plan or run. */
typedef struct act_state {
    char **tables;   /* per output: the work table */
    int64_t *counts; /* per output: rows; -1 not computed */
    int done;
    int64_t ms;
    /* send */
    int64_t would_send, no_address, no_consent, sent, failed, skipped;
    int64_t suppressed; /* run: unsubscribed, bounced or complained */
    char **notes;       /* act_note lines, bounded */
    size_t nnotes;
    char **strs; /* strings handed to the plugin, freed with the state */
    size_t nstrs;
    struct send_plan *send; /* send activities */
} act_state;

typedef struct camp_env {
    app *a;
    campaign *c;
    diag *d;
    act_registry *reg;
    instance *src; /* the campaign's data source */
    const baton_source_ops *ops;
    const expr_dialect *dialect;
    schema sch;
    int have_schema;
    int64_t now;
    int plan;       /* plan: temporary tables, nothing sent */
    int dry_run;    /* run --dry-run: render, deliver nothing */
    int64_t run_id; /* 0 in a plan */
    store *st;      /* state store (runs), NULL in a plan */
    char **proof;   /* --proof addresses */
    size_t nproof;
    json_t *preview;                   /* a dry run that keeps each send's first messages here */
    expr_groups *groups;               /* aggregates' grouped work tables */
    act_state *s;                      /* per activity */
    FILE *progress;                    /* a terminal to show progress on, or NULL */
    camp_dispatcher_fn dispatcher_for; /* shared dispatchers (serve), or NULL */
    void *dispatcher_ud;
    int failed;      /* a runtime failure happened */
    int unreachable; /* camp_env_open: the source would not start (a
                        server down): a runtime failure, not an error
                        of the files */
    char error[2048];
} camp_env;

/* Open the campaign's source (started) and schema, and check the schema
 * against the database; d gets the errors. With CAMP_OPEN_CHECK (baton
 * check), a database holding none of the schema's tables yet is a
 * warning, not an error: a fresh install has no data before sample-data
 * or an import. */
enum { CAMP_OPEN_CHECK = 1 };
int camp_env_open(camp_env *e, app *a, campaign *c, act_registry *reg, unsigned flags, diag *d);
void camp_env_close(camp_env *e);

/* Check every activity (types, settings, inputs, expressions, channels).
 * Errors go to e->d; returns 0 when none. */
int camp_check(camp_env *e);

/* Compute every targeting activity in order (plan: counts only; run: also
 * send). Returns 0, or -1 with e->error. Activities already done (resume)
 * are skipped. */
int camp_execute(camp_env *e);
/* Drop the work tables of a run (at its end) or a plan. */
void camp_drop_tables(camp_env *e);
/* Before a run: make the dialect's work schema, and drop the work tables
 * of every run that keep(ud, run) says is gone (finished, superseded,
 * unknown): a killed run's tables live until then. 0, or -1 with err. */
int camp_work_prepare(camp_env *e, int (*keep)(void *ud, int64_t run), void *ud, char *err,
                      size_t errlen);
/* The work-table name of an activity's output, for this plan or run. */
char *camp_table_name(const camp_env *e, const camp_activity *a, const camp_output *o);

/* SQL helpers shared by the engine and the host table. */
int camp_sql(camp_env *e, const char *sql, const baton_value *params, size_t n, baton_row_fn fn,
             void *ud, char *err, size_t errlen);
int64_t camp_count(camp_env *e, const char *table, char *err, size_t errlen);
/* Whether the source has an index whose first column is table.column
 * (1 too when the catalog cannot be read: no warning, no choice made on
 * a guess). */
int camp_has_index(camp_env *e, const char *table, const char *column);

/* Find a campaign by NAME (its `name`) or FILE among the configured ones.
 * Returns a new path or NULL (d says why). */
char *camp_locate(app *a, const char *name_or_file, diag *d);

typedef struct camp_run_opts {
    const char *trigger; /* "manual", "schedule", "catch-up", "resume" */
    int resume;          /* finish the latest unfinished run */
    int dry_run;
    char **proof; /* --proof addresses */
    size_t nproof;
    FILE *progress; /* a line per activity, or NULL */
    camp_dispatcher_fn dispatcher_for;
    void *dispatcher_ud;
    store *store; /* the state store to record the run in (serve's);
                     NULL: open the data_dir's */
    /* Called once the run has its id (recorded, about to execute), on
     * the running thread: a run triggered over HTTP answers with it. */
    void (*on_run)(void *ud, int64_t run);
    void *on_run_ud;
    /* {"NAME": value} for the campaign's parameters (NULL: the defaults) */
    const json_t *params;
    int params_text; /* the values are text, as typed on a command line */
    /* A preview (a dry run: nothing delivered): each send's first rows'
     * messages, rendered as a delivery would render them, appended here as
     * {"activity", "channel", "profile", "recipient", "parts": {NAME: text}} */
    json_t *preview;
    int64_t now; /* the run's clock (UTC s; 0: the system's): the
                    scheduler's tick, so a simulated one holds */
} camp_run_opts;

/* Run one campaign file end to end, recording it in the run history of
 * a's data_dir. Returns an exit code (0, 1 runtime failure, 2 errors in
 * d). Used by the CLI and schedules. */
int campaign_run_file(app *a, act_registry *reg, const char *file, const camp_run_opts *o, diag *d);

/* The host's own activity types. */
extern const baton_activity_type camp_flow_types[];
/* test and or_join (control.c): host activities with work tables */
extern const baton_activity_type camp_control_types[];
extern const baton_activity_type camp_send_type;

/* The send activity (send.c): what it renders and to whom. */
typedef struct send_plan {
    instance *chan;
    const baton_channel_ops *ops;
    char *channel;
    char **part_names; /* subject, text, html... or the export columns */
    struct template **parts;
    size_t nparts;
    char **paths; /* the names the templates read, each one select column */
    size_t npaths;
    char *addr_path, *consent_path, *profile_path; /* NULL when not set */
    char *tz_path;                    /* profiles_timezone, for quiet hours; NULL when not set */
    char *addr_field, *consent_field; /* the channel's keys */
    int columns;                      /* parts are export columns */
    /* "profile" when the rows are profiles: profile.tier reads tier and
     * profile.orders lists the row's orders, as in journeys */
    const char *record_prefix;
    /* the templates read one-to-many links (aggregates, #each) or
     * profile.*: rendered through journey/cond's scope, else straight
     * over the row */
    int scoped;
} send_plan;

int camp_send_execute(camp_env *e, size_t idx);
int camp_send_channel(camp_env *e, camp_activity *a, conf_use **use, const char **name, int *line);
/* The run half (send_run.c): render every eligible row and hand it to the
 * channel's dispatcher. */
int camp_send_deliver(camp_env *e, size_t idx);
/* The SELECT of a send's rows: every path, then address, consent,
 * profile id, the profile's zone and _key. Parameters in q. */
int camp_send_select(camp_env *e, size_t idx, expr_sql *q, char *err, size_t errlen);
void camp_send_free(send_plan *p);

#endif
