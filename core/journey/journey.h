/* journey — a journey file (docs/journeys.md) parsed into a graph of
 * nodes whose links are indices, checked once: every error in the file is
 * reported as file:line: message and nothing half-valid is returned. */
#ifndef BATON_JOURNEY_H
#define BATON_JOURNEY_H

#include <stddef.h>
#include <stdint.h>

#include "base/diag.h"
#include "scope/cond.h"

struct app;

typedef enum jnode_type {
    JN_CONDITION,
    JN_SPLIT,
    JN_WAIT,
    JN_WAIT_EVENT,
    JN_SEND,
    JN_ACTION,
    JN_END,
    JN_JUMP,
    JN_UPDATE_PROFILE
} jnode_type;

typedef enum jreentry { JR_NEVER, JR_ALWAYS, JR_AFTER } jreentry;

/* How profiles enter: by an event; by reading an audience (a saved one,
 * or the profiles a filter selects) on a schedule; or by qualifying (a
 * filter evaluated every so often: the newcomers enter). */
typedef enum jentry_kind { JE_EVENT, JE_AUDIENCE, JE_QUALIFIES } jentry_kind;

/* A condition as written and, once the expression engine is wired in,
 * compiled. `line` is the line of the setting that holds it. */

typedef struct jbranch {
    jcond when;     /* condition branches */
    char *name;     /* split branches */
    double percent; /* split branches */
    int next;
    int line;
} jbranch;

typedef struct jpart {
    char *name;  /* "subject", "text" (a *_file key is read into its part) */
    char *value; /* template text */
    void *tmpl;  /* compiled (journey/cond.h) */
} jpart;

/* One field an update_profile node writes: value is an expression. */
typedef struct jset {
    char *field;
    jcond value;
} jset;

typedef struct jnode {
    char *id;
    jnode_type type;
    int line;
    int next; /* wait, send, action; -1 when none */
    /* condition, split */
    jbranch *br;
    size_t nbr;
    int otherwise;
    /* wait */
    int64_t duration_ms; /* -1 when `until` is used */
    jcond until;
    /* wait until = "next 09:00" (wall_local: local = true, the profile's
     * zone) and send local_time = "09:00" (always the profile's zone):
     * minutes after midnight, -1 when unset */
    int wall_min, wall_local;
    /* wait_event */
    char *event;
    jcond filter;
    int64_t timeout_ms; /* -1: no timeout */
    int on_event, on_timeout;
    /* send */
    char *channel;
    jpart *parts;
    size_t nparts;
    /* action */
    char *action;
    int on_error; /* -1: an error fails the instance */
    /* jump */
    char *jump; /* the journey the profile enters */
    /* update_profile */
    jset *sets;
    size_t nsets;
} jnode;

typedef struct jexit {
    char *event;
    jcond filter;
    int line;
} jexit;

typedef struct journey {
    char *name;
    char *file;
    int line;
    char *entry_event;
    jcond entry_filter;
    jreentry reentry;
    int missing_profile_enter; /* entry.missing_profile = "enter" */
    jentry_kind entry_kind;
    char *audience;        /* JE_AUDIENCE: a saved audience (campaigns' save_audience) */
    jcond profiles_filter; /* JE_AUDIENCE filter / JE_QUALIFIES qualifies, over profiles */
    int has_schedule;      /* JE_AUDIENCE: schedule = { at; repeat; timezone; } */
    int64_t sched_at, sched_repeat_s;
    char *sched_timezone;
    double rate;      /* profiles entered per second at most (0: no limit) */
    int64_t every_ms; /* JE_QUALIFIES */
    int64_t reentry_after_ms;
    jexit *exits;
    size_t nexits;
    int start;
    jnode *nodes;
    size_t nnodes;
    /* lifecycle: an instance older than timeout_ms ends timed_out (0:
     * never); entries only from start_at_ms until end_at_ms */
    int64_t timeout_ms;
    int64_t start_at_ms, end_at_ms; /* INT64_MIN, INT64_MAX when unset */
    /* versions: the file's text as read, a hash of it and of the files
     * its sends read (*_file), and the version the engine gave it */
    char *text;
    uint64_t hash;
    int version;
    void *schema; /* what the compiled expressions point into; freed last */
    /* local time: the profiles field with a profile's zone
     * (profiles_timezone), and the zone of a profile without one
     * (caps.quiet_hours.timezone; NULL: UTC) */
    char *tz_field, *tz_default;
} journey;

/* Parse and check one journey file. `a` (may be NULL) supplies the
 * configured channels and actions to check names against and the channel
 * plugins' content parts. Returns NULL when d got errors from this file. */
journey *journey_load(const char *path, struct app *a, diag *d);
/* The same over text, as the file at path (relative *_file paths resolve
 * against path's folder): an earlier version kept in the state store. */
journey *journey_load_text(const char *path, const char *text, struct app *a, diag *d);
void journey_free(journey *j);

/* Every journey file named by a configuration's `journeys` list (files or
 * folders of *.cfg, sorted). Errors go to d; *n counts what loaded. */
journey **journey_load_all(char **paths, size_t npaths, struct app *a, diag *d, size_t *n);
void journey_free_all(journey **js, size_t n);

/* The index of node id, or -1. */
int journey_node(const journey *j, const char *id);
const char *jnode_type_name(jnode_type t);

/* Find a journey by name, or by file path when name holds a '/' or ends
 * in .cfg. */
journey *journey_find(journey **js, size_t n, const char *name_or_file);

#endif
