/* campaign — one campaign file (docs/campaigns.md): its activities,
 * their settings and the graph their inputs make. Parsing and graph checks
 * need no data: every problem is collected as file:line. */
#ifndef BATON_CAMPAIGN_H
#define BATON_CAMPAIGN_H

#include <jansson.h>
#include <libconfig.h>
#include <stddef.h>
#include <stdint.h>

#include <baton/baton.h>

#include "base/diag.h"

struct act_type;

/* A column a work table carries beyond _key. */
typedef struct camp_column {
    char *name;
    baton_type type;
} camp_column;

/* One output of an activity: the transition "id" or "id.name". */
typedef struct camp_output {
    char *name;       /* NULL for the single output */
    char *transition; /* "lapsed", "ab.a" */
    char *dimension;  /* entity one row stands for; NULL for flow */
    camp_column *cols;
    size_t ncols;
} camp_output;

typedef struct camp_input {
    char *text; /* as written: "ab.a" */
    int line;
    int act; /* producer's index, -1 unresolved */
    int out; /* producer's output index, -1 unresolved */
} camp_input;

typedef struct camp_activity {
    char *id;
    char *type_name;
    int line;
    config_setting_t *group;
    const struct act_type *type; /* NULL when unknown */
    camp_input *inputs;
    size_t ninputs;
    camp_output *outs;
    size_t nouts;
    int checked; /* check() passed */
} camp_activity;

/* A declared parameter, read as param.NAME (params.c). */
typedef struct camp_param {
    char *name;
    baton_type type;
    char *type_name; /* as written */
    char *def;       /* the default as a literal of the type, or NULL (required) */
    int line;
} camp_param;

typedef struct campaign {
    config_t lc;
    char *file; /* as found */
    char *dir;  /* its directory, for relative paths */
    char *name;
    char *source; /* NULL: the configured profiles source */
    int has_schedule;
    int64_t at;       /* seconds since epoch */
    int64_t repeat_s; /* 0: once */
    char *timezone;
    /* retention = "5d": how long a run may hold rows in its work tables
     * (waits and signals) and incremental audiences keep their keys */
    int64_t retention_s;
    camp_activity *acts;
    size_t nacts;
    size_t *order; /* topological order, when the graph is acyclic */
    size_t norder;
    camp_param *params;
    size_t nparams;
    int params_applied; /* param.NAME written into the settings */
} campaign;

/* Parse a campaign file: structure, ids, inputs, schedule. Errors go to d;
 * returns 0 when none. c is freed with campaign_free either way. */
int campaign_parse(campaign *c, const char *path, diag *d);
void campaign_free(campaign *c);

/* Resolve input ids, reject unknown ones and cycles, and compute the
 * topological order. Errors go to d; returns 0 when none. */
int campaign_graph(campaign *c, diag *d);

/* How long activity a holds its rows (a wait's duration, a signal's
 * timeout; UTC s), 0 for any other. */
int64_t campaign_hold_s(const camp_activity *a);

/* The activity with this id, or -1. */
int campaign_find(const campaign *c, const char *id);
/* Output by name (NULL for the single one), or -1. */
int campaign_output(const camp_activity *a, const char *name);
/* The input's producer output. */
const camp_output *campaign_input_output(const campaign *c, const camp_input *in);

/* The setting at a dotted path ("branches.0.name") under g, or NULL. */
config_setting_t *campaign_setting(config_setting_t *g, const char *path);

/* parameters = ( ... ): the declarations into c->params. */
int campaign_params_parse(campaign *c, config_setting_t *list, diag *d);
/* Check given values ({"NAME": value}) against the declarations: NULL
 * when fine, else {"unknown": [...], "mistyped": [{name, type}],
 * "missing": [...] (with require: declared without a default and not
 * given), "declared": [{name, type}]}. */
json_t *campaign_params_check(const campaign *c, const json_t *given, int require);
/* Write the values (given, else the defaults; NULL given: the defaults,
 * and null for those without one) into the activities' settings where
 * param.NAME is read. Once per campaign; camp_env_open does it with the
 * defaults when nobody did. 0, or -1 with the problems in d. */
int campaign_params_apply(campaign *c, const json_t *given, diag *d);
void campaign_params_free(campaign *c);
/* Values typed as text (`campaign run --param NAME=VALUE`) converted to
 * the declared types where they read as such (a new object; what does
 * not convert is left as text, for campaign_params_check to refuse). */
json_t *campaign_params_from_text(const campaign *c, const json_t *given);

/* Campaign files named by a list of files and folders (folders: every
 * *.cfg in them, sorted). Returns a NULL-terminated array of new strings. */
char **campaign_files(char *const *paths, size_t n, size_t *count);
void campaign_files_free(char **files);

#endif
