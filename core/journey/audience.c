/* journey/audience — the entry stage for journeys that read profiles
 * instead of waiting for an event: `entry = { audience = "NAME" }` or
 * `{ filter = "..." }` with a schedule reads the profiles (a saved
 * audience, or those the filter selects, in key order, a page at a time)
 * when a slot of the schedule is due; `entry = { qualifies = "...";
 * every = "15m"; }` evaluates the filter every so often and keeps the set
 * that matched in the state store (journey_qualified), so only newcomers
 * enter. Each profile goes in as an event of type "audience" (its data the
 * profile's columns) through the ingest queue and the inbox, at the
 * entry's `rate`: an id per journey, slot and profile makes a run that a
 * restart repeats enter no one twice (the inbox drops the repeats), and
 * reentry, pause, close, start_at and end_at apply as for any entry. */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/deadline.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/ratelimit.h"
#include "base/timefmt.h"
#include "campaign/schedule.h"
#include "journey/runner_impl.h"

#define PAGE 1000

static const char *const ddl_audience =
    "CREATE TABLE IF NOT EXISTS journey_qualified (journey TEXT NOT NULL, profile TEXT NOT NULL,"
    " gen INTEGER NOT NULL, PRIMARY KEY (journey, profile)) WITHOUT ROWID";

static int64_t meta_get(jrunner *r, const char *key)
{
    sqlite3_stmt *q;
    int64_t v = 0;
    store_lock(r->st);
    if (sqlite3_prepare_v2(r->st->db, "SELECT value FROM journey_meta WHERE key = ?", -1, &q,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
        if (sqlite3_step(q) == SQLITE_ROW)
            v = sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
    }
    store_unlock(r->st);
    return v;
}

static void meta_set(jrunner *r, const char *key, int64_t v)
{
    sqlite3_stmt *q;
    store_lock(r->st);
    if (sqlite3_prepare_v2(r->st->db,
                           "INSERT OR REPLACE INTO journey_meta(key, value) VALUES (?, ?)", -1, &q,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, v);
        if (sqlite3_step(q) != SQLITE_DONE)
            log_msg(BATON_LOG_ERROR, "journey", "state store: %s", sqlite3_errmsg(r->st->db));
        sqlite3_finalize(q);
    }
    store_unlock(r->st);
}

static int stopping(jrunner *r)
{
    pthread_mutex_lock(&r->aumu);
    int s = r->aud_stop;
    pthread_mutex_unlock(&r->aumu);
    return s;
}

/* One run over one journey's profiles. */
typedef struct arun {
    jrunner *r;
    const journey *j;
    const char *kind; /* "aud" or "q" */
    int64_t slot;     /* seconds: the event's time and part of its id */
    ratelimit rl;
    double chunk; /* tokens taken at once (5 ms worth) */
    double left;  /* of the chunk */
    int qualify;  /* only newcomers (journey_qualified) */
    json_t *pending_ids, *pending_rows;
    _Atomic long acked;
    long submitted, entered;
    int aborted;
} arun;

static void on_ack(void *ud)
{
    arun *a = ud;
    a->acked++;
}

static void submit_one(arun *a, const char *pid, json_t *row)
{
    if (a->aborted)
        return;
    if (a->j->rate > 0) {
        if (a->left <= 0) {
            int64_t us = ratelimit_take(&a->rl, a->chunk);
            if (us > 0) {
                struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
                nanosleep(&ts, NULL);
            }
            a->left = a->chunk;
        }
        a->left -= 1;
    }
    char ts[21];
    timestamp_format(a->slot, ts);
    char *idtxt = xasprintf("%s:%s:%lld:%s", a->kind, a->j->name, (long long)a->slot, pid);
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:O}", "id", idtxt, "type", "audience", "profile",
                           pid, "time", ts, "data", row);
    free(idtxt);
    char *txt = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    for (;;) {
        int rc = jr_submit_from(a->r, "audience", txt, strlen(txt), on_ack, a);
        if (rc == 0) {
            a->submitted++;
            break;
        }
        if (rc < 0 || stopping(a->r)) {
            a->aborted = 1;
            break;
        }
        struct timespec nap = {0, 1000000}; /* the ingest queue is full */
        nanosleep(&nap, NULL);
    }
    free(txt);
}

static void on_row(void *ud, const char *pid, json_t *row)
{
    arun *a = ud;
    if (a->qualify) { /* decided per page, after the store says who is new */
        json_array_append_new(a->pending_ids, json_string(pid));
        json_array_append(a->pending_rows, row);
        return;
    }
    submit_one(a, pid, row);
}

/* Qualification: the page's profiles that were not in the set enter;
 * every one of them is marked with this evaluation's generation once its
 * entry is durable (acknowledged by the inbox). */
static int qualify_page(arun *a)
{
    jrunner *r = a->r;
    size_t n = json_array_size(a->pending_ids);
    if (!n)
        return 0;
    char *isnew = xcalloc(n + 1, 1);
    sqlite3_stmt *q;
    store_lock(r->st);
    int ok = sqlite3_prepare_v2(r->st->db,
                                "SELECT 1 FROM journey_qualified WHERE journey = ? AND profile = ?",
                                -1, &q, NULL) == SQLITE_OK;
    for (size_t i = 0; ok && i < n; i++) {
        sqlite3_reset(q);
        sqlite3_bind_text(q, 1, a->j->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, json_string_value(json_array_get(a->pending_ids, i)), -1,
                          SQLITE_STATIC);
        isnew[i] = sqlite3_step(q) != SQLITE_ROW;
    }
    sqlite3_finalize(q);
    store_unlock(r->st);
    long before = a->submitted;
    for (size_t i = 0; ok && i < n && !a->aborted; i++)
        if (isnew[i])
            submit_one(a, json_string_value(json_array_get(a->pending_ids, i)),
                       json_array_get(a->pending_rows, i));
    jrunner_flush(r);
    /* durable before the set says they are in */
    for (int w = 0; a->acked < a->submitted && !a->aborted && w < 60000; w++) {
        struct timespec nap = {0, 1000000};
        nanosleep(&nap, NULL);
    }
    a->entered += a->submitted - before;
    if (a->acked < a->submitted)
        a->aborted = 1;
    if (!a->aborted && ok) {
        store_lock(r->st);
        if (sqlite3_prepare_v2(
                r->st->db,
                "INSERT INTO journey_qualified(journey, profile, gen) VALUES (?, ?, ?)"
                " ON CONFLICT(journey, profile) DO UPDATE SET gen = excluded.gen",
                -1, &q, NULL) == SQLITE_OK) {
            sqlite3_exec(r->st->db, "SAVEPOINT q", NULL, NULL, NULL);
            for (size_t i = 0; i < n; i++) {
                sqlite3_reset(q);
                sqlite3_bind_text(q, 1, a->j->name, -1, SQLITE_STATIC);
                sqlite3_bind_text(q, 2, json_string_value(json_array_get(a->pending_ids, i)), -1,
                                  SQLITE_STATIC);
                sqlite3_bind_int64(q, 3, a->slot);
                sqlite3_step(q);
            }
            sqlite3_exec(r->st->db, "RELEASE q", NULL, NULL, NULL);
            sqlite3_finalize(q);
        }
        store_unlock(r->st);
    }
    free(isnew);
    json_array_clear(a->pending_ids);
    json_array_clear(a->pending_rows);
    return a->aborted ? -1 : 0;
}

/* 0: the run went through every profile; -1: stopped or failed (the
 * slot is tried again, its repeats dropped by the inbox). */
static int run(jrunner *r, const journey *j, int64_t slot, int qualify)
{
    arun a = {.r = r, .j = j, .kind = qualify ? "q" : "aud", .slot = slot, .qualify = qualify};
    if (j->rate > 0) {
        a.chunk = j->rate / 200 < 1 ? 1 : j->rate / 200;
        /* a burst of 100 ms worth: a late wakeup is made up, not lost */
        ratelimit_init(&a.rl, j->rate, j->rate / 10 > a.chunk ? j->rate / 10 : a.chunk, a.chunk);
    }
    a.pending_ids = json_array();
    a.pending_rows = json_array();
    char *table = j->audience ? xasprintf("baton_audience_%s", j->audience) : NULL;
    char *after = NULL, err[512];
    int rc = 0;
    int64_t t0 = deadline_now_ms();
    for (;;) {
        long got = jsource_scan(r->src, table, j->profiles_filter.compiled, slot, &after, PAGE,
                                on_row, &a, err, sizeof err);
        if (got < 0) {
            log_msg(BATON_LOG_ERROR, "journey", "%s: audience entry: %s", j->name, err);
            rc = -1;
            break;
        }
        if (qualify && qualify_page(&a)) {
            rc = -1;
            break;
        }
        if (a.aborted || stopping(r)) {
            rc = -1;
            break;
        }
        if ((size_t)got < PAGE)
            break;
    }
    jrunner_flush(r);
    if (!rc && qualify) {
        /* who no longer matches leaves the set: matching again is new */
        sqlite3_stmt *q;
        store_lock(r->st);
        if (sqlite3_prepare_v2(r->st->db,
                               "DELETE FROM journey_qualified WHERE journey = ? AND gen < ?", -1,
                               &q, NULL) == SQLITE_OK) {
            sqlite3_bind_text(q, 1, j->name, -1, SQLITE_STATIC);
            sqlite3_bind_int64(q, 2, slot);
            sqlite3_step(q);
            sqlite3_finalize(q);
        }
        store_unlock(r->st);
    }
    if (!rc)
        log_msg(BATON_LOG_INFO, "journey", "%s: %s: %ld profile(s) handed in in %lld ms", j->name,
                qualify ? "qualification" : "audience entry", qualify ? a.entered : a.submitted,
                (long long)(deadline_now_ms() - t0));
    free(after);
    free(table);
    json_decref(a.pending_ids);
    json_decref(a.pending_rows);
    if (j->rate > 0)
        ratelimit_destroy(&a.rl);
    return rc;
}

static void tick(jrunner *r)
{
    int64_t now = jr_now_ms(r) / 1000;
    for (size_t i = 0; i < r->eng.njs && !stopping(r); i++) {
        const journey *j = r->eng.js[i];
        if (j->entry_kind == JE_EVENT)
            continue;
        char key[300];
        snprintf(key, sizeof key, "%s:%s", j->entry_kind == JE_AUDIENCE ? "audience" : "qualified",
                 j->name);
        int64_t last = meta_get(r, key);
        if (j->entry_kind == JE_AUDIENCE) {
            campaign c;
            memset(&c, 0, sizeof c);
            c.has_schedule = j->has_schedule;
            c.at = j->sched_at;
            c.repeat_s = j->sched_repeat_s;
            c.timezone = j->sched_timezone;
            int64_t due = schedule_due_slot(&c, now, last, NULL);
            if (due >= 0 && due > last && run(r, j, due, 0) == 0)
                meta_set(r, key, due);
        } else if (!last || (now - last) * 1000 >= j->every_ms) {
            if (run(r, j, now, 1) == 0)
                meta_set(r, key, now);
        }
    }
}

static void *aud_main(void *arg)
{
    jrunner *r = arg;
    pthread_setname_np(pthread_self(), "baton-audience"); /* top -H, perf */
    for (;;) {
        tick(r);
        pthread_mutex_lock(&r->aumu);
        if (!r->aud_stop) {
            struct timespec ts;
            deadline_in(&ts, 500);
            pthread_cond_timedwait(&r->aucv, &r->aumu, &ts);
        }
        int stop = r->aud_stop;
        pthread_mutex_unlock(&r->aumu);
        if (stop)
            break;
    }
    return NULL;
}

int jr_audience_start(jrunner *r, char *err, size_t errlen)
{
    int any = 0;
    for (size_t i = 0; i < r->eng.njs; i++)
        any |= r->eng.js[i]->entry_kind != JE_EVENT;
    if (!any)
        return 0;
    if (store_migrate(r->st, "journey_audience", 1, ddl_audience, err, errlen))
        return -1;
    pthread_mutex_init(&r->aumu, NULL);
    deadline_cond_init(&r->aucv);
    r->aud_inited = 1;
    if (pthread_create(&r->aud, NULL, aud_main, r) != 0) {
        snprintf(err, errlen, "cannot start the journey audience thread");
        return -1;
    }
    r->aud_started = 1;
    return 0;
}

void jr_audience_stop(jrunner *r)
{
    if (!r->aud_inited)
        return;
    pthread_mutex_lock(&r->aumu);
    r->aud_stop = 1;
    pthread_cond_signal(&r->aucv);
    pthread_mutex_unlock(&r->aumu);
    if (r->aud_started)
        pthread_join(r->aud, NULL);
    r->aud_started = 0;
    pthread_mutex_destroy(&r->aumu);
    pthread_cond_destroy(&r->aucv);
    r->aud_inited = 0;
}
