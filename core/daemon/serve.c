/* daemon/serve — `baton serve`: event sources, journeys and channel delivery together
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
 * so nothing published during the switch is lost.
 *
 * A new configuration that is valid but fails to start (a plugin's start
 * fails, the journeys cannot open) is logged with its reason and the
 * previous one is brought back up from what was loaded then (parsed
 * configuration and journeys kept in memory, plugin instances created
 * again from them: changed files are not read). Events already in the
 * inbox and messages pending in the delivery log are picked up again, as
 * after any restart. Only when the previous one cannot start either does
 * serve exit 1, with both reasons.
 *
 * One serve per data folder: <data_dir>/serve.lock is held (flock) while
 * it runs, so a second one refuses to start instead of routing the same
 * inbox twice. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plugin/app.h"
#include "campaign/schedule.h"
#include "base/exit.h"
#include "base/lockfile.h"
#include "daemon/http.h"
#include "daemon/serve.h"
#include "delivery/dispatch.h"
#include "journey/journey.h"
#include "journey/runner.h"
#include "base/log.h"
#include "base/mem.h"
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

/* What the HTTP server reaches of what runs. */
static void env_of(running *rn, const char *config, http_env *e)
{
    *e = (http_env){.config = config,
                    .a = &rn->a,
                    .st = &rn->st,
                    .js = rn->js,
                    .njs = rn->njs,
                    .ch = rn->ch,
                    .nch = rn->nch,
                    .r = rn->r,
                    .dispatcher_for = campaign_dispatcher,
                    .dispatcher_ud = rn};
}

static void attach(http_server *srv, running *rn, const char *config)
{
    if (!srv)
        return;
    http_env e;
    env_of(rn, config, &e);
    http_attach(srv, &e);
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

/* Stop everything that runs; the configuration, its (stopped) plugin
 * instances and the journeys stay, for a rollback or bring_down. */
static void stop_running(running *rn)
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
    rn->nch = 0;
    app_stop(&rn->a);
    if (rn->have_store)
        store_close(&rn->st);
    rn->have_store = 0;
}

static void bring_down(running *rn)
{
    if (!rn->have_app)
        return;
    stop_running(rn);
    app_close(&rn->a);
    journey_free_all(rn->js, rn->njs);
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
    plugin_host_set_event_sink(not_yet, NULL, NULL);
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
    rn->r = jrunner_start(&rn->a, &rn->st, rn->js, rn->njs, rn->ch, rn->nch, NULL, err, sizeof err);
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
    rn->sched = campaign_scheduler_start(rn->a.conf.path, 30000, campaign_dispatcher, rn, &rn->st);
    return 0;
fail:
    bring_down(rn);
    return -1;
}

/* The data folder's serve.lock, held while serve runs on it. */
typedef struct dirlock {
    char *dir;
    lockfile lock;
} dirlock;

/* "var", "./var" and an absolute path may name one folder: the lock is
 * held per open file, so taking it again would find ourselves */
static int same_dir(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) != 0 || stat(b, &sb) != 0)
        return strcmp(a, b) == 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static int dirlock_take(dirlock *l, const char *dir, char *err, size_t errlen)
{
    l->dir = NULL;
    l->lock.fd = -1;
    l->lock.path = NULL;
    if (store_mkdirs(dir) != 0) {
        snprintf(err, errlen, "%s: cannot create the data directory: %s", dir, strerror(errno));
        return -1;
    }
    char *path = xasprintf("%s/serve.lock", dir);
    char pid[32];
    int rc = lockfile_take(&l->lock, path, pid, err, errlen);
    if (rc == 1)
        snprintf(err, errlen, "%s: another baton serve%s%s%s is running on this data directory",
                 path, *pid ? " (pid " : "", pid, *pid ? ")" : "");
    free(path);
    if (rc != 0)
        return -1;
    l->dir = xstrdup(dir);
    return 0;
}

static void dirlock_release(dirlock *l)
{
    lockfile_release(&l->lock);
    free(l->dir);
    l->dir = NULL;
}

/* "file:line: message" of the first error in d, for one log line. */
static void first_error(const diag *d, char *out, size_t len)
{
    snprintf(out, len, "unknown error");
    for (size_t i = 0; i < d->n; i++)
        if (!d->v[i].warning) {
            if (d->v[i].file && d->v[i].line)
                snprintf(out, len, "%s:%d: %s", d->v[i].file, d->v[i].line, d->v[i].msg);
            else if (d->v[i].file)
                snprintf(out, len, "%s: %s", d->v[i].file, d->v[i].msg);
            else
                snprintf(out, len, "%s", d->v[i].msg);
            return;
        }
}

/* SIGHUP: *cur runs; the new configuration goes into *next. Returns 0
 * while serving (the new configuration, or the previous one back after
 * the new one failed to start), -1 when nothing runs any more. */
/* The HTTP server a reload to nx needs: the running one when its
 * listener is unchanged; else one started now (on another port: both
 * listen until the switch) or, on the same port, one to start after the
 * old one closed (*later). -1 when the new listener cannot be had: the
 * reload is refused. */
typedef struct http_plan {
    int keep;             /* the running server stays */
    http_server *started; /* a new one, listening already */
    int later;            /* stop the old one, then start from l */
    http_listener l;
} http_plan;

static int plan_http(http_server *srv, running *nx, http_plan *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    const conf_http *h = &nx->a.conf.http;
    if (!h->on) {
        p->later = 1; /* stop the old one (if any), start nothing */
        return 0;
    }
    if (http_listener_load(&p->l, h, err, errlen) != 0)
        return -1;
    if (srv && !http_listener_differs(http_server_listener(srv), &p->l)) {
        http_listener_free(&p->l);
        p->keep = 1;
        return 0;
    }
    if (srv && http_listener_same_port(http_server_listener(srv), &p->l)) {
        p->later = 1;
        return 0;
    }
    p->started = http_start(&p->l, err, errlen);
    return p->started ? 0 : -1;
}

static int reload(const char *config, running **cur, running **next, dirlock *lock,
                  http_server **srv)
{
    log_info("SIGHUP: re-reading %s", config);
    diag d;
    diag_init(&d);
    running *old = *cur, *nx = *next;
    if (prepare(config, nx, &d) != 0) {
        /* a configuration file that was fine but whose journeys are not
         * has already set its logging: the running one's comes back */
        log_configure(old->a.conf.log_level, old->a.conf.log_json);
        diag_print(&d, stderr);
        log_error("reload refused: %zu error(s) in the new configuration; the running one stays "
                  "in force",
                  d.errors);
        diag_free(&d);
        return 0;
    }
    diag_print(&d, stderr); /* warnings */
    diag_free(&d);
    /* a new data directory is taken before the old one is let go */
    dirlock nlock = {NULL, {NULL, -1}};
    char err[1024];
    if (!same_dir(nx->a.conf.data_dir, lock->dir) &&
        dirlock_take(&nlock, nx->a.conf.data_dir, err, sizeof err) != 0) {
        log_configure(old->a.conf.log_level, old->a.conf.log_json);
        log_error("reload refused: %s; the running configuration stays in force", err);
        bring_down(nx);
        return 0;
    }
    http_plan hp;
    if (plan_http(*srv, nx, &hp, err, sizeof err) != 0) {
        log_configure(old->a.conf.log_level, old->a.conf.log_json);
        log_error("reload refused: %s; the running configuration stays in force", err);
        if (nlock.lock.fd >= 0)
            dirlock_release(&nlock);
        bring_down(nx);
        return 0;
    }
    http_detach(*srv); /* requests wait for the new configuration */
    stop_running(old);
    diag_init(&d);
    if (bring_up(nx, &d) == 0) {
        diag_free(&d);
        bring_down(old);
        *cur = nx;
        *next = old;
        if (nlock.lock.fd >= 0) {
            dirlock_release(lock);
            *lock = nlock;
        }
        if (hp.started) {
            http_stop(*srv);
            *srv = hp.started;
        } else if (hp.later) {
            http_stop(*srv);
            *srv = NULL;
            if (nx->a.conf.http.on && !(*srv = http_start(&hp.l, err, sizeof err)))
                log_error("reload: %s; the HTTP server is off until the next reload", err);
        }
        http_listener_free(&hp.l);
        attach(*srv, nx, config);
        log_info("reload done");
        return 0;
    }
    if (hp.started)
        http_stop(hp.started);
    http_listener_free(&hp.l);
    /* valid, but it did not start: back to what ran before */
    diag_print(&d, stderr);
    char why[1024];
    first_error(&d, why, sizeof why);
    diag_free(&d);
    dirlock_release(&nlock);
    log_error("reload failed: the new configuration did not start: %s; bringing the previous "
              "one back",
              why);
    log_configure(old->a.conf.log_level, old->a.conf.log_json); /* the new one had set its own */
    diag_init(&d);
    if (app_reinit(&old->a, &d) != 0) {
        bring_down(old);
    } else if (bring_up(old, &d) == 0) {
        diag_free(&d);
        attach(*srv, old, config);
        log_warn("reload failed: running the previous configuration (as loaded before the "
                 "SIGHUP); fix the new one and send SIGHUP again");
        return 0;
    }
    diag_print(&d, stderr);
    char why2[1024];
    first_error(&d, why2, sizeof why2);
    diag_free(&d);
    log_error("reload failed: the new configuration did not start (%s) and the previous one did "
              "not come back (%s); stopping",
              why, why2);
    return -1;
}

int daemon_serve(const char *config)
{
    /* Signals are taken by sigwait here; every thread started from now on
     * inherits the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* two slots that never move: the runner, the dispatchers and the
     * scheduler hold pointers into the one that runs */
    running slots[2];
    running *cur = &slots[0], *next = &slots[1];
    memset(slots, 0, sizeof slots);
    diag d;
    diag_init(&d);
    if (prepare(config, cur, &d) != 0) {
        diag_print(&d, stderr);
        diag_free(&d);
        return EXIT_USAGE;
    }
    dirlock lock;
    char err[1024];
    if (dirlock_take(&lock, cur->a.conf.data_dir, err, sizeof err) != 0) {
        diag_print(&d, stderr);
        fprintf(stderr, "baton serve: %s\n", err);
        diag_free(&d);
        bring_down(cur);
        return EXIT_RUNTIME;
    }
    http_server *srv = NULL;
    if (cur->a.conf.http.on) {
        http_listener l;
        if (http_listener_load(&l, &cur->a.conf.http, err, sizeof err) != 0 ||
            !(srv = http_start(&l, err, sizeof err))) {
            diag_print(&d, stderr);
            fprintf(stderr, "baton serve: %s\n", err);
            diag_free(&d);
            bring_down(cur);
            dirlock_release(&lock);
            return EXIT_RUNTIME;
        }
    }
    if (bring_up(cur, &d) != 0) {
        diag_print(&d, stderr);
        diag_free(&d);
        http_stop(srv);
        dirlock_release(&lock);
        return EXIT_USAGE;
    }
    diag_print(&d, stderr); /* warnings */
    diag_free(&d);
    attach(srv, cur, config);
    int rc = EXIT_OK;
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            if (reload(config, &cur, &next, &lock, &srv) != 0) {
                rc = EXIT_RUNTIME;
                break;
            }
            continue;
        }
        log_info("%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
        http_stop(srv); /* requests in flight are answered first */
        srv = NULL;
        bring_down(cur);
        break;
    }
    http_stop(srv);
    dirlock_release(&lock);
    return rc;
}
