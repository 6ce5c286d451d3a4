/* journey/spool — serve's side of the inbox's spool (jinbox_spool_put):
 * a thread that looks for spooled events every SPOOL_POLL_MS, submits
 * them like a source's (source "cli"), and deletes them once the inbox
 * has committed each (its acknowledgement). A stop or a crash between the
 * two hands them in again at the next start: their ids are in the inbox
 * already, so they count as duplicates and nothing happens twice. */
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "base/deadline.h"
#include "base/log.h"
#include "journey/runner_impl.h"

#define SPOOL_POLL_MS 200
#define SPOOL_BATCH 256 /* the LIMIT of the SELECT below */

static void spool_ack(void *ctx)
{
    jrunner *r = ctx;
    pthread_mutex_lock(&r->spmu);
    r->sp_acked++;
    pthread_cond_signal(&r->spcv);
    pthread_mutex_unlock(&r->spmu);
}

/* Submit what is spooled, up to SPOOL_BATCH; the last one's number in
 * *last. How many went in (0: none, or the runner cannot take them now). */
static long submit_spooled(jrunner *r, sqlite3_stmt *sel, int64_t *last)
{
    long sent = 0;
    while (sqlite3_step(sel) == SQLITE_ROW) {
        const char *body = (const char *)sqlite3_column_text(sel, 1);
        size_t len = (size_t)sqlite3_column_bytes(sel, 1);
        /* the submitted event is parsed (copied) before this returns */
        if (jr_submit_from(r, "cli", body ? body : "", len, spool_ack, r) != 0)
            break; /* queue full, or stopping: the rest next time */
        *last = sqlite3_column_int64(sel, 0);
        sent++;
    }
    sqlite3_reset(sel);
    return sent;
}

static void *spool_main(void *arg)
{
    jrunner *r = arg;
    pthread_setname_np(pthread_self(), "baton-spool");
    store st;
    char err[512];
    sqlite3_stmt *sel = NULL, *del = NULL;
    if (jinbox_spool_open(&st, r->inbox.st.path, err, sizeof err) ||
        sqlite3_prepare_v2(st.db, "SELECT n, body FROM journey_spool ORDER BY n LIMIT 256", -1,
                           &sel, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st.db, "DELETE FROM journey_spool WHERE n <= ?1", -1, &del, NULL) !=
            SQLITE_OK) {
        log_msg(BATON_LOG_ERROR, "journey", "spool: %s; spooled events (baton feedback) wait",
                st.db ? sqlite3_errmsg(st.db) : err);
        sqlite3_finalize(sel);
        store_close(&st);
        return NULL;
    }
    pthread_mutex_lock(&r->spmu);
    while (!r->sp_stop) {
        r->sp_acked = 0;
        pthread_mutex_unlock(&r->spmu);
        int64_t last = 0;
        long sent = submit_spooled(r, sel, &last);
        if (sent)
            jrunner_flush(r);
        pthread_mutex_lock(&r->spmu);
        while (r->sp_acked < sent && !r->sp_stop)
            pthread_cond_wait(&r->spcv, &r->spmu);
        int committed = sent && r->sp_acked == sent;
        pthread_mutex_unlock(&r->spmu);
        if (committed) {
            sqlite3_bind_int64(del, 1, last);
            if (sqlite3_step(del) != SQLITE_DONE)
                log_msg(BATON_LOG_WARN, "journey",
                        "spool: %s (handed in again later: dropped "
                        "as duplicates)",
                        sqlite3_errmsg(st.db));
            sqlite3_reset(del);
        }
        pthread_mutex_lock(&r->spmu);
        if (!r->sp_stop && sent < SPOOL_BATCH) {
            struct timespec ts;
            deadline_in(&ts, SPOOL_POLL_MS);
            pthread_cond_timedwait(&r->spcv, &r->spmu, &ts);
        }
    }
    pthread_mutex_unlock(&r->spmu);
    sqlite3_finalize(sel);
    sqlite3_finalize(del);
    store_close(&st);
    return NULL;
}

int jr_spool_start(jrunner *r, char *err, size_t errlen)
{
    if (!strcmp(r->inbox.st.path, ":memory:"))
        return 0;
    pthread_mutex_init(&r->spmu, NULL);
    deadline_cond_init(&r->spcv);
    r->sp_inited = 1;
    if (pthread_create(&r->spool, NULL, spool_main, r) != 0) {
        snprintf(err, errlen, "cannot start the journey spool thread");
        return -1;
    }
    r->sp_started = 1;
    return 0;
}

void jr_spool_stop(jrunner *r)
{
    if (!r->sp_inited)
        return;
    pthread_mutex_lock(&r->spmu);
    r->sp_stop = 1;
    pthread_cond_broadcast(&r->spcv);
    pthread_mutex_unlock(&r->spmu);
    if (r->sp_started)
        pthread_join(r->spool, NULL);
    r->sp_started = 0;
    pthread_mutex_destroy(&r->spmu);
    pthread_cond_destroy(&r->spcv);
    r->sp_inited = 0;
}
