#include "journey/sim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journey/event.h"
#include "journey/inbox.h"
#include "journey/report.h"
#include "base/mem.h"

typedef struct simev {
    jevent ev;
    size_t order;
} simev;

static int by_time(const void *a, const void *b)
{
    const simev *x = a, *y = b;
    if (x->ev.time_ms != y->ev.time_ms)
        return x->ev.time_ms < y->ev.time_ms ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Fire every timer due up to `limit`, each at its own time. */
static int run_timers(jengine *e, int64_t limit, char *err, size_t errlen)
{
    int64_t due;
    while (jengine_next_due(e, &due) && due <= limit) {
        size_t fired;
        if (jengine_fire(e, due, SIZE_MAX, &fired, err, errlen))
            return -1;
    }
    return 0;
}

int journey_simulate(journey *j, const jengine_ops *ops, const char *events_path, int64_t until_ms,
                     json_t **out, diag *d, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(events_path, "r");
    if (!f) {
        diag_error(d, events_path, 0, "cannot read the events file: %s", strerror(errno));
        return 0;
    }
    store st;
    jinbox inbox;
    if (store_open_path(&st, ":memory:", err, errlen)) {
        fclose(f);
        return -1;
    }
    if (jinbox_open(&inbox, ":memory:", err, errlen)) {
        fclose(f);
        store_close(&st);
        return -1;
    }
    jengine_ops sim_ops = ops ? *ops : (jengine_ops){0};
    sim_ops.send = ops ? ops->send : NULL; /* journey test renders; nothing is delivered */
    sim_ops.action = NULL;
    jengine e;
    journey *one[1] = {j};
    if (jengine_open(&e, &st, one, 1, &sim_ops, err, errlen)) {
        fclose(f);
        jinbox_close(&inbox);
        store_close(&st);
        return -1;
    }
    int rc = jengine_begin(&e, err, errlen);
    simev *evs = NULL;
    size_t nev = 0, cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    int64_t last_time = 0;
    while (!rc && (len = getline(&line, &lcap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        size_t skip = strspn(line, " \t");
        if ((size_t)len == skip)
            continue; /* blank lines separate nothing */
        jevent ev;
        char reason[256];
        /* an event with no time happens when the one before it did */
        int bad = jevent_parse(line, (size_t)len, last_time, &ev, reason, sizeof reason);
        int64_t seq;
        int outcome;
        rc = jinbox_put(&inbox, &ev, bad ? reason : NULL, events_path, last_time, &seq, &outcome,
                        err, errlen);
        if (bad || outcome != JINBOX_STORED || rc) {
            jevent_free(&ev);
            continue;
        }
        last_time = ev.time_ms;
        if (nev == cap) {
            cap = cap ? cap * 2 : 64;
            evs = xrealloc(evs, cap * sizeof *evs);
        }
        evs[nev].ev = ev;
        evs[nev].order = nev;
        nev++;
    }
    free(line);
    fclose(f);
    if (nev)
        qsort(evs, nev, sizeof *evs, by_time);
    for (size_t i = 0; i < nev && !rc; i++) {
        if (evs[i].ev.time_ms > until_ms)
            break;
        rc = run_timers(&e, evs[i].ev.time_ms, err, errlen);
        if (!rc)
            rc = jengine_event(&e, &evs[i].ev, evs[i].ev.time_ms, err, errlen);
    }
    if (!rc)
        rc = run_timers(&e, until_ms, err, errlen);
    for (size_t i = 0; i < nev; i++)
        jevent_free(&evs[i].ev);
    free(evs);
    if (!rc) {
        uint64_t dead = jinbox_dead_count(&inbox);
        rc = jengine_commit(&e, err, errlen);
        if (!rc)
            *out = json_pack("{s:s, s:o, s:I}", "journey", j->name, "profiles",
                             jreport_profiles(&st, j->name), "dead_letters", (json_int_t)dead);
    } else {
        jengine_rollback(&e);
    }
    jengine_close(&e);
    jinbox_close(&inbox);
    store_close(&st);
    return rc;
}
