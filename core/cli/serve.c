/* baton serve — event sources, journeys and channel delivery together
 * until SIGTERM (or SIGINT); SIGHUP re-reads the configuration.
 *
 * Reload: the new configuration (and every journey file it names) is
 * validated and its plugins initialised first; if anything is wrong it is
 * refused with its errors and the running one stays in force, untouched.
 * Otherwise the running one is brought down gracefully (sources stop,
 * queued events are committed, in-flight action calls finish, each
 * channel's queue drains for up to 10 s, what is left stays in the
 * delivery log) and the new one brought up: channels turned on start
 * sending, channels turned off stop (their unfinished messages wait in
 * the log until they are turned on again). MQTT sessions are persistent,
 * so nothing published during the switch is lost. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "campaign/schedule.h"
#include "cli/cli.h"
#include "dispatch/dispatch.h"
#include "journey/journey.h"
#include "journey/runner.h"
#include "log.h"
#include "mem.h"
#include "store/store.h"

typedef struct running {
    app a;
    int have_app;
    journey **js;
    size_t njs;
    store st;
    int have_store;
    jchannel *ch;
    size_t nch;
    jrunner *r;
    campaign_scheduler *sched; /* campaign schedules, on their own thread */
} running;

/* Campaign sends go through the dispatcher serve runs for the channel. */
static dispatcher *campaign_dispatcher(void *ud, const char *channel, instance **inst)
{
    running *rn = ud;
    for (size_t i = 0; i < rn->nch; i++)
        if (rn->ch[i].d && strcmp(rn->ch[i].name, channel) == 0) {
            *inst = rn->ch[i].inst;
            return rn->ch[i].d;
        }
    return NULL;
}

/* Until the runner is up, sources are told to wait (queue full). */
static int not_yet(void *ud, instance *from, const char *json, size_t len, void (*ack)(void *),
                   void *ack_ctx)
{
    return 1;
}

/* Validate: the configuration, its plugins (init), every journey. */
static int prepare(const char *config, running *rn, diag *d)
{
    memset(rn, 0, sizeof *rn);
    if (app_open(&rn->a, config, APP_INIT, d) != 0) {
        app_close(&rn->a);
        return -1;
    }
    rn->have_app = 1;
    size_t before = d->errors;
    rn->js = journey_load_all(rn->a.conf.journeys, rn->a.conf.njourneys, &rn->a, d, &rn->njs);
    if (d->errors != before) {
        journey_free_all(rn->js, rn->njs);
        app_close(&rn->a);
        memset(rn, 0, sizeof *rn);
        return -1;
    }
    return 0;
}

static void bring_down(running *rn)
{
    if (!rn->have_app)
        return;
    campaign_scheduler_stop(rn->sched); /* before the dispatchers it sends through */
    rn->sched = NULL;
    /* sources first: nothing new comes in while the rest winds down */
    for (size_t i = 0; i < rn->a.ninst; i++)
        if (rn->a.inst[i]->kind == BATON_KIND_EVENT)
            instance_stop(rn->a.inst[i]);
    jrunner_stop(rn->r);
    rn->r = NULL;
    for (size_t i = 0; i < rn->nch; i++)
        dispatch_close(rn->ch[i].d, 1, 10000);
    free(rn->ch);
    rn->ch = NULL;
    app_close(&rn->a);
    journey_free_all(rn->js, rn->njs);
    if (rn->have_store)
        store_close(&rn->st);
    memset(rn, 0, sizeof *rn);
}

static int bring_up(running *rn, diag *d)
{
    char err[1024];
    if (store_open(&rn->st, rn->a.conf.data_dir, err, sizeof err)) {
        diag_error(d, rn->a.conf.path, 0, "%s", err);
        goto fail;
    }
    rn->have_store = 1;
    plugin_host_set_event_sink(not_yet, NULL);
    if (app_start(&rn->a, d) != 0)
        goto fail;
    for (size_t i = 0; i < rn->a.conf.nuses; i++) {
        conf_use *u = &rn->a.conf.uses[i];
        if (u->kind != BATON_KIND_CHANNEL)
            continue;
        rn->ch = xrealloc(rn->ch, (rn->nch + 1) * sizeof *rn->ch);
        jchannel *c = &rn->ch[rn->nch++];
        memset(c, 0, sizeof *c);
        c->name = u->name;
        instance *inst = app_find(&rn->a, "channels", u->name);
        if (!inst || inst->phase != INSTANCE_RUNNING)
            continue; /* turned off */
        dispatch_opts o = {.caps = &rn->a.conf};
        c->d = dispatch_open(inst, &rn->st, &o, err, sizeof err);
        if (!c->d) {
            diag_error(d, u->file, u->line, "%s: %s", u->where, err);
            goto fail;
        }
        c->inst = inst;
    }
    rn->r = jrunner_start(&rn->a, &rn->st, rn->js, rn->njs, rn->ch, rn->nch, NULL, err,
                          sizeof err);
    if (!rn->r) {
        diag_error(d, rn->a.conf.path, 0, "journeys: %s", err);
        goto fail;
    }
    size_t nev = 0, non = 0;
    for (size_t i = 0; i < rn->a.ninst; i++)
        nev += rn->a.inst[i]->kind == BATON_KIND_EVENT;
    for (size_t i = 0; i < rn->nch; i++)
        non += rn->ch[i].d != NULL;
    log_info("serving %s: %zu journey(s), %zu event source(s), %zu of %zu channel(s) on",
             rn->a.conf.path, rn->njs, nev, non, rn->nch);
    rn->sched = campaign_scheduler_start(rn->a.conf.path, 30000, campaign_dispatcher, rn);
    return 0;
fail:
    bring_down(rn);
    return -1;
}

int cmd_serve(const cli_ctx *ctx, int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr, "baton serve: unexpected argument '%s'\n", argv[1]);
        return EXIT_USAGE;
    }
    /* Signals are taken by sigwait here; every thread started from now on
     * inherits the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    diag d;
    diag_init(&d);
    running rn;
    if (prepare(ctx->config, &rn, &d) != 0 || bring_up(&rn, &d) != 0) {
        diag_print(&d, stderr);
        int rc = rn.have_app || d.errors ? EXIT_USAGE : EXIT_RUNTIME;
        diag_free(&d);
        return rc;
    }
    diag_print(&d, stderr); /* warnings */
    diag_free(&d);
    int rc = EXIT_OK;
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            log_info("SIGHUP: re-reading %s", ctx->config);
            diag_init(&d);
            running next;
            if (prepare(ctx->config, &next, &d) != 0) {
                diag_print(&d, stderr);
                log_error("reload refused: %zu error(s) in the new configuration; the running "
                          "one stays in force",
                          d.errors);
                diag_free(&d);
                continue;
            }
            diag_print(&d, stderr);
            diag_free(&d);
            bring_down(&rn);
            rn = next;
            diag_init(&d);
            if (bring_up(&rn, &d) != 0) {
                diag_print(&d, stderr);
                log_error("reload: the new configuration was valid but failed to start; "
                          "stopping");
                diag_free(&d);
                rc = EXIT_RUNTIME;
                break;
            }
            diag_free(&d);
            log_info("reload done");
            continue;
        }
        log_info("%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
        bring_down(&rn);
        break;
    }
    return rc;
}
