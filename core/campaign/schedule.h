/* campaign/schedule — runs campaign schedules (`schedule = { at; repeat;
 * timezone; }`) from `baton serve`. A repeat keeps its wall-clock time in
 * its timezone across daylight-saving changes. After downtime, the missed
 * slots are not replayed: one catch-up run is made, and logged, never a
 * burst. A run left unfinished (the process was killed) is resumed first. */
#ifndef BATON_CAMPAIGN_SCHEDULE_H
#define BATON_CAMPAIGN_SCHEDULE_H

#include <stdint.h>

#include "plugin/app.h"
#include "campaign/campaign.h"
#include "campaign/engine.h"
#include "store/store.h"

/* The latest slot of c's schedule at or before now (UTC s), and in
 * *missed how many slots fall after `last` (exclusive) up to it. -1 when
 * none is due yet (or c has no schedule). */
int64_t schedule_due_slot(const campaign *c, int64_t now, int64_t last, int64_t *missed);

/* One pass over every configured campaign: resume interrupted runs, start
 * the due ones. Blocking: the runs happen on the caller's thread (serve's
 * scheduler thread). Returns the number of runs started or resumed, or -1
 * when the state store cannot be opened. */
int campaign_scheduler_tick(app *a, int64_t now);
/* The same in a process that already runs the channels' dispatchers and
 * has the state store open (baton serve): sends use the one
 * dispatcher_for(ud, channel) returns, and the run history is written
 * through st (NULL: open the data_dir's), the process's one writer. */
int campaign_scheduler_tick_with(app *a, int64_t now, camp_dispatcher_fn dispatcher_for, void *ud,
                                 store *st);

/* The scheduler of `baton serve`: a thread that ticks at once and then
 * every period_ms, or sooner when a waiting run is due (at its
 * wait_until), with its own app opened from the configuration file
 * (its own connections to the data sources, so campaign SQL never shares
 * one with journeys), sending through the dispatchers dispatcher_for
 * returns, recording runs through st (see campaign_scheduler_tick_with).
 * NULL when the thread cannot start. */
typedef struct campaign_scheduler campaign_scheduler;
campaign_scheduler *campaign_scheduler_start(const char *config, int64_t period_ms,
                                             camp_dispatcher_fn dispatcher_for, void *ud,
                                             store *st);
/* Stop ticking and join the thread; a run in progress finishes first
 * (a run cut short would be resumed at the next start anyway). NULL is a
 * no-op. */
void campaign_scheduler_stop(campaign_scheduler *s);

#endif
