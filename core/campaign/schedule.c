#include "campaign/schedule.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>

#include "campaign/engine.h"
#include "campaign/history.h"
#include "base/deadline.h"
#include "base/zone.h"
#include "base/log.h"
#include "base/mem.h"

/* Slot k of the schedule: at + k*repeat, counted in local wall-clock time
 * when a timezone is given (09:00 stays 09:00 across DST). */
static int64_t slot_at(const campaign *c, const zone *z, int64_t k)
{
    if (!z)
        return c->at + k * c->repeat_s;
    int64_t local = c->at + zone_offset(z, c->at) + k * c->repeat_s;
    return zone_to_utc(z, local);
}

int64_t schedule_due_slot(const campaign *c, int64_t now, int64_t last, int64_t *missed)
{
    if (missed)
        *missed = 0;
    if (!c->has_schedule || now < c->at)
        return -1;
    if (c->repeat_s <= 0) {
        if (missed)
            *missed = last < c->at ? 1 : 0;
        return c->at;
    }
    char err[128];
    zone *z = c->timezone ? zone_load(c->timezone, err, sizeof err) : NULL;
    int64_t k = (now - c->at) / c->repeat_s;
    /* DST shifts a local slot by at most an hour either way */
    while (k > 0 && slot_at(c, z, k) > now)
        k--;
    while (slot_at(c, z, k + 1) <= now)
        k++;
    int64_t due = slot_at(c, z, k);
    if (missed) {
        int64_t first = last < c->at ? 0 : (last - c->at) / c->repeat_s + 1;
        while (first > 0 && slot_at(c, z, first - 1) > last)
            first--;
        while (first <= k && slot_at(c, z, first) <= last)
            first++;
        *missed = k - first + 1 > 0 ? k - first + 1 : 0;
    }
    zone_free(z);
    return due;
}

int campaign_scheduler_tick(app *a, int64_t now)
{
    return campaign_scheduler_tick_with(a, now, NULL, NULL, NULL);
}

int campaign_scheduler_tick_with(app *a, int64_t now, camp_dispatcher_fn dispatcher_for, void *ud,
                                 store *given)
{
    size_t n;
    char **files = campaign_files(a->conf.campaigns, a->conf.ncampaigns, &n);
    store own = {0}, *st = given ? given : &own;
    char err[512];
    if ((!given && store_open(&own, a->conf.data_dir, err, sizeof err) != 0) ||
        history_init(st, err, sizeof err) != 0) {
        log_error("campaign scheduler: %s", err);
        if (!given)
            store_close(&own);
        campaign_files_free(files);
        return -1;
    }
    int started = 0;
    act_registry reg;
    int have_reg = 0;
    for (size_t i = 0; i < n; i++) {
        campaign c;
        diag d;
        diag_init(&d);
        if (campaign_parse(&c, files[i], &d) != 0) {
            campaign_free(&c);
            diag_free(&d);
            continue;
        }
        /* a campaign without a schedule is here for its waiting runs */
        int64_t last = c.has_schedule ? history_last_slot(st, c.name) : 0, missed = 0;
        int64_t due = c.has_schedule ? schedule_due_slot(&c, now, last, &missed) : -1;
        char status[16];
        int64_t unf = history_unfinished(st, c.name, status);
        /* killed runs of a schedule are resumed, and those killed after a
         * wait (scheduled or not); waits when due; failed ones wait for an
         * operator's --resume (no retry loop), the next slot runs anew */
        int64_t wu = unf ? history_wait_until(st, unf) : 0;
        int resume = unf && ((!strcmp(status, "running") && (c.has_schedule || wu > 0)) ||
                             (!strcmp(status, "waiting") && wu <= now));
        if (unf && !strcmp(status, "waiting") && !resume) {
            campaign_free(&c);
            diag_free(&d);
            continue;
        }
        if (!resume && (due < 0 || due <= last)) {
            campaign_free(&c);
            diag_free(&d);
            continue;
        }
        if (!have_reg) {
            have_reg = act_registry_load(&reg, a, &d) == 0 ? 1 : -1;
        }
        if (have_reg < 0)
            break;
        const char *trigger = resume ? "resume" : missed > 1 ? "catch-up" : "schedule";
        if (resume)
            log_info("campaign %s: resuming its interrupted run", c.name);
        else if (missed > 1)
            log_warn("campaign %s: %lld scheduled runs were missed while baton was down; one "
                     "catch-up run now, the others are skipped",
                     c.name, (long long)missed);
        else
            log_info("campaign %s: scheduled run", c.name);
        /* the slot is recorded first: a crash during the run resumes it,
         * never starts the same slot again */
        if (!resume || due > last)
            history_set_slot(st, c.name, due > last ? due : last);
        camp_run_opts o = {.trigger = trigger,
                           .resume = resume,
                           .dispatcher_for = dispatcher_for,
                           .dispatcher_ud = ud,
                           .store = given,
                           .now = now};
        int rc = campaign_run_file(a, &reg, files[i], &o, &d);
        if (d.n) {
            buf msg;
            buf_init(&msg);
            for (size_t k = 0; k < d.n; k++)
                buf_addf(&msg, "%s%s:%d: %s", k ? "; " : "", d.v[k].file ? d.v[k].file : "",
                         d.v[k].line, d.v[k].msg);
            log_error("campaign %s: %s", c.name, msg.data);
            buf_free(&msg);
        }
        if (rc == 0)
            started++;
        campaign_free(&c);
        diag_free(&d);
    }
    if (have_reg > 0)
        act_registry_free(&reg);
    if (!given)
        store_close(&own);
    campaign_files_free(files);
    return started;
}

struct campaign_scheduler {
    char *config;
    int64_t period_ms;
    camp_dispatcher_fn dispatcher_for;
    void *ud;
    store *st;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
};

static void *scheduler_main(void *arg)
{
    campaign_scheduler *s = arg;
    pthread_setname_np(pthread_self(), "baton-schedule"); /* top -H, perf */
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        pthread_mutex_unlock(&s->mu);
        app a;
        diag d;
        diag_init(&d);
        int64_t tick_at = (int64_t)time(NULL);
        if (app_open(&a, s->config, APP_INIT | APP_SECONDARY, &d) == 0)
            campaign_scheduler_tick_with(&a, tick_at, s->dispatcher_for, s->ud, s->st);
        else
            log_error("campaign scheduler: %s: %zu configuration error(s); no campaign started",
                      s->config, d.errors);
        app_close(&a);
        diag_free(&d);
        pthread_mutex_lock(&s->mu);
        if (s->stop)
            break;
        /* a wait due before the next period is resumed on time; one this
         * tick saw due and did not resume (its campaign fails) waits for
         * the period, never a spin */
        int64_t ms = s->period_ms, next = s->st ? history_next_wait(s->st, tick_at) : 0;
        if (next > 0) {
            int64_t in = (next - (int64_t)time(NULL)) * 1000 + 100;
            ms = in < 100 ? 100 : in < ms ? in : ms;
        }
        struct timespec until;
        deadline_in(&until, ms);
        while (!s->stop && pthread_cond_timedwait(&s->cv, &s->mu, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

campaign_scheduler *campaign_scheduler_start(const char *config, int64_t period_ms,
                                             camp_dispatcher_fn dispatcher_for, void *ud, store *st)
{
    campaign_scheduler *s = xcalloc(1, sizeof *s);
    s->config = xstrdup(config);
    s->period_ms = period_ms > 0 ? period_ms : 30000;
    s->dispatcher_for = dispatcher_for;
    s->ud = ud;
    s->st = st;
    pthread_mutex_init(&s->mu, NULL);
    deadline_cond_init(&s->cv);
    if (pthread_create(&s->thread, NULL, scheduler_main, s) != 0) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        free(s->config);
        free(s);
        return NULL;
    }
    return s;
}

void campaign_scheduler_stop(campaign_scheduler *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->config);
    free(s);
}
