/* campaign/run — the run policy of one campaign file: one run at a time
 * across processes (a lock file in the data folder), its history in the
 * state store, activities executed one by one and each recorded as it
 * ends (a kill loses at most the one in flight, which --resume redoes),
 * and a `wait` that ends the run until it is due. Used by `campaign run`
 * and by serve's scheduler. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/exit.h"
#include "base/lockfile.h"
#include "base/mem.h"
#include "base/timefmt.h"
#include "campaign/engine.h"
#include "campaign/alert.h"
#include "campaign/chain.h"
#include "campaign/history.h"
#include "delivery/dispatch.h"

/* 1 when a done activity's work table is gone or no longer holds the
 * rows recorded for it. */
static int tables_lost(camp_env *e)
{
    for (size_t i = 0; i < e->c->nacts; i++) {
        const camp_activity *a = &e->c->acts[i];
        const act_state *s = &e->s[i];
        if (!s->done || !s->tables || (a->type && a->type->flow))
            continue;
        for (size_t j = 0; j < a->nouts; j++) {
            char err[256];
            if (s->tables[j] && s->counts[j] >= 0 &&
                camp_count(e, s->tables[j], err, sizeof err) != s->counts[j])
                return 1;
        }
    }
    return 0;
}

static int keep_tables(void *ud, int64_t run)
{
    return history_resumable(ud, run);
}

int campaign_run_file(app *a, act_registry *reg, const char *file, const camp_run_opts *o, diag *d)
{
    const char *trigger = o->trigger ? o->trigger : "manual";
    int resume = o->resume, dry_run = o->dry_run || o->preview;
    char **proof = o->proof;
    size_t nproof = o->nproof;
    FILE *progress = o->progress;
    campaign c;
    camp_env e;
    int rc = EXIT_OK;
    int have_e = 0;
    lockfile lock = {NULL, -1};
    /* a run needs a value for every parameter without a default */
    json_t *vals = NULL;
    json_t *chains = NULL; /* the campaigns its ends start, once it is done */
    char *cname = NULL;
    int64_t chain_run = 0;
    int bad = campaign_parse(&c, file, d) != 0 || campaign_graph(&c, d) != 0;
    if (!bad && resume && c.nparams) { /* a resumed run goes on with its own values */
        store tmp = {0}, *hs = o->store ? o->store : &tmp;
        char herr[256];
        if ((o->store || store_open(&tmp, a->conf.data_dir, herr, sizeof herr) == 0) &&
            history_init(hs, herr, sizeof herr) == 0) {
            char *pj = history_params(hs, history_unfinished(hs, c.name, NULL));
            vals = pj ? json_loads(pj, 0, NULL) : NULL;
            free(pj);
        }
        if (!o->store)
            store_close(&tmp);
    }
    if (!bad) {
        if (!vals)
            vals = !o->params       ? json_object()
                   : o->params_text ? campaign_params_from_text(&c, o->params)
                                    : json_incref((json_t *)o->params);
        bad = campaign_params_apply(&c, vals, d) != 0;
    }
    if (bad) {
        rc = EXIT_USAGE;
        goto out;
    }
    have_e = 1;
    if (camp_env_open(&e, a, &c, reg, 0, d) != 0 || camp_check(&e) != 0) {
        rc = e.unreachable ? EXIT_RUNTIME : EXIT_USAGE;
        goto out;
    }
    /* serve's own store when it runs schedules: one writer per process */
    store own = {0}, *st = o->store ? o->store : &own;
    char err[512];
    if ((!o->store && store_open(&own, a->conf.data_dir, err, sizeof err) != 0) ||
        history_init(st, err, sizeof err) != 0) {
        if (!o->store)
            store_close(&own);
        diag_error(d, a->conf.path, 0, "%s", err);
        rc = EXIT_RUNTIME;
        goto out;
    }
    /* one run of a campaign at a time, across processes; the kernel drops
     * the lock of a killed process, so --resume can take over at once */
    char *lockpath = history_lock_path(a->conf.data_dir, c.name);
    char holder[32];
    int lrc = lockfile_take(&lock, lockpath, holder, err, sizeof err);
    free(lockpath);
    if (lrc != 0) {
        if (lrc == 1)
            diag_error(d, c.file, 0,
                       "campaign %s is being run by another process%s%s%s; nothing was started",
                       c.name, *holder ? " (pid " : "", holder, *holder ? ")" : "");
        else
            diag_error(d, c.file, 0, "%s", err);
        if (!o->store)
            store_close(&own);
        rc = EXIT_RUNTIME;
        goto out;
    }
    if (o->now)
        e.now = o->now;
    e.st = st;
    e.dry_run = dry_run;
    e.proof = proof;
    e.nproof = nproof;
    e.preview = o->preview;
    e.progress = progress;
    e.dispatcher_for = o->dispatcher_for;
    e.dispatcher_ud = o->dispatcher_ud;
    int64_t run = 0;
    if (resume) {
        run = history_unfinished(st, c.name, NULL);
        if (run == 0) {
            fprintf(stderr, "campaign %s: no interrupted run to resume\n", c.name);
            if (!o->store)
                store_close(&own);
            goto out;
        }
        e.run_id = run;
        history_load(st, run, &e);
        if (tables_lost(&e)) {
            /* a server's crash recovery empties UNLOGGED tables: the
             * targeting is computed again (sends deliver no key twice) */
            for (size_t i = 0; i < c.nacts; i++)
                e.s[i].done = 0;
            if (progress)
                fprintf(progress,
                        "campaign %s: the work tables of run %lld were lost; recomputing them\n",
                        c.name, (long long)run);
        }
        if (progress)
            fprintf(progress, "campaign %s: resuming run %lld\n", c.name, (long long)run);
    } else {
        run = history_start(st, &c, trigger, dry_run || nproof);
        e.run_id = run;
        if (run > 0 && json_object_size(vals)) {
            char *pj = json_dumps(vals, JSON_COMPACT | JSON_SORT_KEYS);
            history_set_params(st, run, pj);
            free(pj);
        }
        if (progress)
            fprintf(progress, "campaign %s: run %lld%s\n", c.name, (long long)run,
                    dry_run ? " (dry run: nothing is delivered)" : "");
    }
    if (run < 0) {
        diag_error(d, a->conf.path, 0, "cannot record the run in the state store");
        if (!o->store)
            store_close(&own);
        rc = EXIT_RUNTIME;
        goto out;
    }
    /* the work schema, without the tables of runs that are gone */
    if (camp_work_prepare(&e, keep_tables, st, err, sizeof err) != 0) {
        diag_error(d, e.src->file, e.src->line, "%s: preparing the work tables: %s", e.src->where,
                   err);
        history_finish(st, run, "failed", err);
        snprintf(e.error, sizeof e.error, "preparing the work tables: %s", err);
        camp_alert_failed(&e);
        if (!o->store)
            store_close(&own);
        rc = EXIT_RUNTIME;
        goto out;
    }
    if (o->on_run)
        o->on_run(o->on_run_ud, run);
    int failed = 0;
    int64_t next = 0; /* the earliest a holding activity is due */
    /* held: a wait (or what follows it) still holding its rows; closed: a
     * branch that ends (what follows a signal that timed out). Other
     * branches run on. */
    char *held = xcalloc(c.nacts + 1, 1), *closed = xcalloc(c.nacts + 1, 1);
    char *fresh = xcalloc(c.nacts + 1, 1); /* run in this pass */
    int64_t started = history_started_at(st, run);
    int holds = !dry_run && !nproof;
    if (resume && holds)
        history_running(st, run);
    for (size_t k = 0; k < c.norder && !failed; k++) {
        size_t i = c.order[k];
        camp_activity *act = &c.acts[i];
        char hstate[16] = "";
        int holding = holds && act->type && act->type->flow &&
                      (!strcmp(act->type_name, "wait") || !strcmp(act->type_name, "signal"));
        int64_t until = holding ? history_hold_get(st, run, act->id, hstate) : 0;
        int join = !strcmp(act->type_name, "or_join"), again = 0;
        if (join) /* it goes on as soon as one input has arrived */
            held[i] = closed[i] = 1;
        for (size_t j = 0; j < act->ninputs; j++) {
            int p = act->inputs[j].act;
            if (join) {
                held[i] &= held[p] || closed[p];
                closed[i] &= closed[p];
            } else {
                held[i] |= held[p];
                closed[i] |= closed[p];
            }
            again |= fresh[p];
        }
        if (join && closed[i])
            held[i] = 0;
        /* an input run in this pass after it (an or_join's late input):
         * it, and after it what reads it, run again over what came since */
        if (again && e.s[i].done)
            e.s[i].done = 0;
        if (!strcmp(hstate, "timed_out"))
            closed[i] = 1;
        if (e.s[i].done || held[i] || closed[i])
            continue;
        int timed_out = 0;
        if (holding) {
            /* a wait holds its own path's rows (in its input's work table)
             * until it is due, a signal until it is signaled or times out */
            int sig = !strcmp(act->type_name, "signal");
            int64_t now = e.now;
            if (until == 0) {
                until = now + campaign_hold_s(act);
                if (until > now)
                    history_hold(st, run, act->id, until, "waiting");
            }
            int pending = sig ? strcmp(hstate, "signaled") && until > now : until > now;
            timed_out = sig && strcmp(hstate, "signaled") && !pending;
            if (pending) {
                char ts[21], rs[32];
                timestamp_format(until, ts);
                if (started && until > started + c.retention_s) {
                    duration_format(c.retention_s, rs, sizeof rs);
                    snprintf(e.error, sizeof e.error,
                             "%s:%d: activity '%s': run %lld would hold its rows until %s, past "
                             "the campaign's retention (%s from the run's start)",
                             c.file, act->line, act->id, (long long)run, ts, rs);
                    failed = 1;
                    break;
                }
                if (progress && sig)
                    fprintf(progress,
                            "campaign %s: run %lld waits at '%s' for a signal until %s (`baton "
                            "campaign signal %s %lld`)\n",
                            c.name, (long long)run, act->id, ts, c.name, (long long)run);
                else if (progress)
                    fprintf(progress,
                            "campaign %s: run %lld waits at '%s' until %s (resumed by `baton "
                            "serve` or `campaign run %s --resume`)\n",
                            c.name, (long long)run, act->id, ts, c.name);
                held[i] = 1;
                if (!next || until < next)
                    next = until;
                continue;
            }
            if (timed_out) {
                /* no signal in time: this branch ends here */
                history_hold(st, run, act->id, until, "timed_out");
                closed[i] = 1;
                if (progress)
                    fprintf(progress,
                            "campaign %s: run %lld: no signal at '%s' in time; the activities "
                            "after it do not run\n",
                            c.name, (long long)run, act->id);
            }
        }
        /* one at a time, each recorded as it ends: a kill loses at most
         * the activity in flight, which resume redoes */
        size_t saved = c.norder;
        size_t only[1] = {i};
        size_t *ord = c.order;
        c.order = only;
        c.norder = 1;
        int r = camp_execute(&e);
        c.order = ord;
        c.norder = saved;
        if (r != 0) {
            failed = 1;
            break;
        }
        fresh[i] = 1;
        if (holding && !timed_out && until > 0 && strcmp(hstate, "signaled"))
            history_hold(st, run, act->id, until, "passed");
        if (timed_out)
            e.s[i].counts[0] = 0; /* nothing passed on */
        if (!dry_run && !nproof)
            history_activity(st, run, &e, i);
    }
    for (size_t i = 0; i < c.nacts && next && !failed; i++) {
        /* a signal received while this run went on: resumed at once */
        char hs[16];
        if (held[i] && !strcmp(c.acts[i].type_name, "signal") &&
            history_hold_get(st, run, c.acts[i].id, hs) && !strcmp(hs, "signaled"))
            next = e.now;
    }
    free(held);
    free(closed);
    free(fresh);
    if (failed) {
        fprintf(stderr, "baton campaign run: %s\n", e.error);
        history_finish(st, run, "failed", e.error);
        camp_alert_failed(&e);
        rc = EXIT_RUNTIME;
    } else if (next) {
        /* resumed later: the work tables stay */
        history_wait(st, run, next);
    } else {
        history_finish(st, run, "done", NULL);
        if (!dry_run && !nproof) {
            chains = camp_chain_pending(&e);
            cname = xstrdup(c.name);
            chain_run = run;
        }
        camp_drop_tables(&e);
        /* a run that lost messages says so, and exits 1: permanent
         * failures (a refusal, retries past retry_for) and messages a
         * crash left uncertain (the delivery log has the whole run) */
        long long nfailed = 0, nuncertain = 0;
        for (size_t i = 0; i < c.nacts && !dry_run && !nproof; i++)
            if (c.acts[i].type && c.acts[i].type->send)
                nfailed += e.s[i].failed;
        if (!dry_run && !nproof) {
            uint64_t lc[DISPATCH_NSTATUS];
            char *prefix = xasprintf("%s/%lld/", c.name, (long long)run);
            if (dispatch_log_counts(st, prefix, NULL, lc) == 0)
                nuncertain = (long long)lc[DISPATCH_UNCERTAIN];
            free(prefix);
        }
        if (nfailed || nuncertain) {
            fprintf(stderr,
                    "campaign %s: run %lld done with %lld message(s) failed and %lld uncertain "
                    "(`baton campaign runs %s`)\n",
                    c.name, (long long)run, nfailed, nuncertain, c.name);
            rc = EXIT_RUNTIME;
        } else if (progress)
            fprintf(progress, "campaign %s: run %lld done\n", c.name, (long long)run);
    }
    if (!o->store)
        store_close(&own);
out:
    json_decref(vals);
    lockfile_release(&lock);
    if (have_e)
        camp_env_close(&e);
    campaign_free(&c);
    if (chains) { /* started once this run is closed: its lock and store are free */
        int crc = camp_chain_start(a, reg, cname, chain_run, chains, o, d);
        if (crc > rc)
            rc = crc;
        json_decref(chains);
    }
    free(cname);
    return rc;
}
