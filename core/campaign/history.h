/* campaign/history — the run history in the state store: one row per run
 * of a campaign and one per activity of it, with counts and timing
 * (`baton campaign runs`), and what resume needs to finish a run. */
#ifndef BATON_CAMPAIGN_HISTORY_H
#define BATON_CAMPAIGN_HISTORY_H

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "campaign/engine.h"
#include "store/store.h"

int history_init(store *s, char *err, size_t errlen);
/* The parameters a run was given (a JSON object), kept for its resume;
 * history_params: a new string, or NULL when none. */
void history_set_params(store *s, int64_t run, const char *json);
char *history_params(store *s, int64_t run);
/* A new run: status "running". Returns its id, or -1. */
int64_t history_start(store *s, const campaign *c, const char *trigger, int dry_run);
/* The latest run of the campaign when it did not finish ("running":
 * interrupted, "waiting", "failed"), with its status in out (may be
 * NULL); 0 when none. */
int64_t history_unfinished(store *s, const char *cname, char out[16]);
/* 1 when run is the latest real run of its campaign and not done: what
 * --resume would finish, so its work tables are kept. */
int history_resumable(store *s, int64_t run);
/* Mark the activities recorded done in run (their tables still exist):
 * fills e->s[i].done, counts and figures. */
int history_load(store *s, int64_t run, camp_env *e);
/* One activity finished. */
void history_activity(store *s, int64_t run, const camp_env *e, size_t i);
/* The run ended: status "done", "failed" (with error). */
void history_finish(store *s, int64_t run, const char *status, const char *error);
/* A wait activity holds the run until `until` (UTC s; 0 clears it):
 * status "waiting", resumed by --resume or by serve once due. */
void history_wait(store *s, int64_t run, int64_t until);
int64_t history_wait_until(store *s, int64_t run);
/* The earliest wait_until after `after` of the waiting runs serve would
 * resume (the latest run of each campaign; UTC s), 0 when none. */
int64_t history_next_wait(store *s, int64_t after);
/* When the run started (UTC s; 0 when unknown). */
int64_t history_started_at(store *s, int64_t run);
/* Status "running" again, wait_until kept (serve resumes the run if the
 * process is killed before it waits again or ends). */
void history_running(store *s, int64_t run);
/* One holding activity of a run (a wait, a signal): until when it holds
 * its rows (UTC s) and its state ("waiting", "passed", "signaled", "timed_out");
 * 0 and "" when it never held. history_hold records it (once: a later
 * call changes only the state). */
/* The run's holds as [{"activity", "until", "state"}] (state also
 * "passed": a wait that let its rows go), NULL when it has none. */
json_t *history_holds_json(store *s, int64_t run);
int64_t history_hold_get(store *s, int64_t run, const char *activity, char state[16]);
void history_hold(store *s, int64_t run, const char *activity, int64_t until, const char *state);
/* An external signal for run of campaign c: every signal activity the
 * run waits at is signaled (its rows go on at the next resume), the
 * run's parameters take params' values (checked by the caller), and the
 * run is due at now. *signaled: the activities' ids. Returns 0; -2 when c
 * has no such run; -1 when it is not waiting at a signal (or the store
 * failed): the reason in err, naming the run. */
int history_signal(store *s, const campaign *c, int64_t run, const json_t *params, int64_t now,
                   json_t **signaled, char *err, size_t errlen);
/* A send activity of run starts delivering the rows it would send: what
 * `campaign runs` counts it against until it finishes (a run killed
 * mid-send shows its sent, uncertain and not yet sent). */
void history_send_started(store *s, int64_t run, const char *activity, int64_t rows);
/* The lock one run of a campaign holds at a time (base/lockfile), in
 * data_dir. A new string. */
char *history_lock_path(const char *data_dir, const char *cname);
/* 1 when run, recorded running, is going on: it is the campaign's latest
 * and the process holding the campaign's lock is alive; 0 when it was
 * interrupted (killed, or left behind by a later run). */
int history_run_live(store *s, const char *cname, int64_t run);
/* Print the runs of one campaign (NULL: all), newest first. */
int history_print(store *s, const char *cname, int json, FILE *out);

/* Schedules: the last slot (UTC s) a campaign's schedule ran. */
int64_t history_last_slot(store *s, const char *cname);
void history_set_slot(store *s, const char *cname, int64_t slot);

#endif
