#include "journey/inbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/mem.h"
#include "base/timefmt.h"
#include "base/utf8.h"

static const char *const ddl =
    "CREATE TABLE IF NOT EXISTS journey_inbox ("
    " seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,"
    " profile TEXT NOT NULL, time INTEGER NOT NULL, received INTEGER NOT NULL,"
    " source TEXT, body TEXT);"
    "CREATE TABLE IF NOT EXISTS journey_dead_letters ("
    " seq INTEGER PRIMARY KEY, received INTEGER NOT NULL, source TEXT,"
    " reason TEXT NOT NULL, body TEXT)";

int jinbox_open(jinbox *b, const char *path, char *err, size_t errlen)
{
    memset(b, 0, sizeof *b);
    if (store_open_path(&b->st, path, err, errlen))
        return -1;
    if (store_migrate(&b->st, "journey_inbox", 1, ddl, err, errlen))
        goto fail;
    /* checkpoints (which sync) on a thread of their own, never in the
     * ingest's commits; the inbox stays readable by other processes
     * (journey status reads its dead letters while serve runs; one
     * writer is kept by serve's data_dir/serve.lock) */
    if (store_checkpoint_in_background(&b->st, err, errlen))
        goto fail;
    struct {
        sqlite3_stmt **st;
        const char *sql;
    } q[] = {
        {&b->ins, "INSERT OR IGNORE INTO journey_inbox(id, type, profile, time, received, source,"
                  " body) VALUES (?, ?, ?, ?, ?, ?, ?)"},
        {&b->dead, "INSERT INTO journey_dead_letters(received, source, reason, body)"
                   " VALUES (?, ?, ?, ?)"},
        {&b->last, "SELECT coalesce(max(seq), 0) FROM journey_inbox"},
        {&b->read, "SELECT seq, id, type, profile, time, source, body FROM journey_inbox"
                   " WHERE seq > ? ORDER BY seq LIMIT ?"},
        {&b->prune_scan, "SELECT seq, received FROM journey_inbox WHERE seq <= ? ORDER BY seq"
                         " LIMIT ?"},
        {&b->prune, "DELETE FROM journey_inbox WHERE seq <= ?"},
        {&b->count_dead, "SELECT count(*) FROM journey_dead_letters"},
        {&b->body, "SELECT body FROM journey_inbox WHERE id = ?"},
    };
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++)
        if (sqlite3_prepare_v3(b->st.db, q[i].sql, -1, SQLITE_PREPARE_PERSISTENT, q[i].st, NULL) !=
            SQLITE_OK) {
            snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(b->st.db));
            goto fail;
        }
    pthread_mutex_init(&b->mu, NULL);
    b->ready = 1;
    return 0;
fail:
    jinbox_close(b);
    return -1;
}

void jinbox_close(jinbox *b)
{
    if (!b->st.db)
        return;
    sqlite3_stmt *all[] = {b->ins,   b->dead,       b->last,       b->read,
                           b->prune, b->prune_scan, b->count_dead, b->body};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        sqlite3_finalize(all[i]);
    if (b->ready)
        pthread_mutex_destroy(&b->mu);
    store_close(&b->st);
    memset(b, 0, sizeof *b);
}

static int step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int jinbox_begin(jinbox *b, char *err, size_t errlen)
{
    if (store_txn(&b->st, STORE_BEGIN) != SQLITE_OK) {
        snprintf(err, errlen, "inbox: begin: %s", sqlite3_errmsg(b->st.db));
        return -1;
    }
    return 0;
}

/* In WAL mode with synchronous=NORMAL a commit is one write() to the log:
 * it survives the process being killed (not a power cut before the next
 * checkpoint, as for the rest of the state store). */
int jinbox_commit(jinbox *b, char *err, size_t errlen)
{
    if (store_txn(&b->st, STORE_COMMIT) != SQLITE_OK) {
        snprintf(err, errlen, "inbox: commit: %s", sqlite3_errmsg(b->st.db));
        store_txn(&b->st, STORE_ROLLBACK);
        return -1;
    }
    return 0;
}

void jinbox_rollback(jinbox *b)
{
    store_txn(&b->st, STORE_ROLLBACK);
}

/* The same event again, or another one under its id: the bytes, or else
 * the JSON they hold (a source that serialises it again may space it
 * otherwise), compared with what the inbox kept. Under mu. */
static int same_content(jinbox *b, const jevent *ev)
{
    sqlite3_bind_text(b->body, 1, ev->id, -1, SQLITE_STATIC);
    int same = 1; /* not found: pruned meanwhile, nothing to tell apart */
    if (sqlite3_step(b->body) == SQLITE_ROW) {
        const char *kept = (const char *)sqlite3_column_text(b->body, 0);
        size_t n = (size_t)sqlite3_column_bytes(b->body, 0);
        same = n == ev->rawlen && (!n || memcmp(kept, ev->raw, n) == 0);
        if (!same && kept) {
            json_t *x = json_loadb(kept, n, 0, NULL);
            json_t *y = json_loadb(ev->raw, ev->rawlen, 0, NULL);
            same = x && y && json_equal(x, y);
            json_decref(x);
            json_decref(y);
        }
    }
    sqlite3_reset(b->body);
    return same;
}

static int put_dead(jinbox *b, const jevent *ev, const char *reason, const char *source,
                    int64_t now_ms)
{
    sqlite3_bind_int64(b->dead, 1, now_ms);
    sqlite3_bind_text(b->dead, 2, source, -1, SQLITE_STATIC);
    sqlite3_bind_text(b->dead, 3, reason, -1, SQLITE_STATIC);
    sqlite3_bind_text(b->dead, 4, ev->raw ? ev->raw : "", ev->raw ? (int)ev->rawlen : 0,
                      SQLITE_STATIC);
    int rc = step_done(b->dead);
    if (!rc)
        b->dead_letters++;
    return rc;
}

int jinbox_put(jinbox *b, const jevent *ev, const char *reason, const char *source, int64_t now_ms,
               int64_t *seq, int *outcome, char *err, size_t errlen)
{
    int rc;
    *outcome = JINBOX_STORED;
    *seq = 0;
    pthread_mutex_lock(&b->mu);
    if (reason) {
        rc = put_dead(b, ev, reason, source, now_ms);
        *outcome = JINBOX_DEAD;
    } else {
        sqlite3_bind_text(b->ins, 1, ev->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(b->ins, 2, ev->type, -1, SQLITE_STATIC);
        sqlite3_bind_text(b->ins, 3, ev->profile, -1, SQLITE_STATIC);
        sqlite3_bind_int64(b->ins, 4, ev->time_ms);
        sqlite3_bind_int64(b->ins, 5, now_ms);
        sqlite3_bind_text(b->ins, 6, source, -1, SQLITE_STATIC);
        sqlite3_bind_text(b->ins, 7, ev->raw, (int)ev->rawlen, SQLITE_STATIC);
        rc = step_done(b->ins);
        if (!rc) {
            if (sqlite3_changes(b->st.db) != 0) {
                *seq = sqlite3_last_insert_rowid(b->st.db);
            } else if (same_content(b, ev)) {
                *outcome = JINBOX_DUPLICATE;
                b->duplicates++;
            } else {
                rc = put_dead(b, ev, JINBOX_REUSED_REASON, source, now_ms);
                *outcome = JINBOX_DEAD;
            }
        }
    }
    if (rc)
        snprintf(err, errlen, "inbox: %s", sqlite3_errmsg(b->st.db));
    pthread_mutex_unlock(&b->mu);
    return rc;
}

int jinbox_read(jinbox *b, int64_t after, size_t max,
                void (*fn)(void *ud, int64_t seq, jevent *ev, const char *source), void *ud)
{
    pthread_mutex_lock(&b->mu);
    sqlite3_stmt *st = b->read;
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        jevent ev;
        jevent_from_stored(
            (const char *)sqlite3_column_text(st, 1), (const char *)sqlite3_column_text(st, 2),
            (const char *)sqlite3_column_text(st, 3), sqlite3_column_int64(st, 4),
            (const char *)sqlite3_column_text(st, 6), (size_t)sqlite3_column_bytes(st, 6), &ev);
        fn(ud, sqlite3_column_int64(st, 0), &ev, (const char *)sqlite3_column_text(st, 5));
        n++;
    }
    sqlite3_reset(st);
    pthread_mutex_unlock(&b->mu);
    return rc == SQLITE_DONE ? n : -1;
}

int64_t jinbox_last(jinbox *b)
{
    pthread_mutex_lock(&b->mu);
    int64_t v = 0;
    if (sqlite3_step(b->last) == SQLITE_ROW)
        v = sqlite3_column_int64(b->last, 0);
    sqlite3_reset(b->last);
    pthread_mutex_unlock(&b->mu);
    return v;
}

/* The oldest rows, in order, up to the first one still young: the work is
 * what is forgotten. (Selecting every old row among those <= upto read
 * the whole inbox while nothing was a week old yet, 120 ms for 300,000
 * rows, each minute, with mu held: the intake's puts waited for it.) */
int jinbox_prune(jinbox *b, int64_t upto, int64_t older_than_ms, int max)
{
    pthread_mutex_lock(&b->mu);
    sqlite3_bind_int64(b->prune_scan, 1, upto);
    sqlite3_bind_int(b->prune_scan, 2, max);
    int64_t last = 0;
    int rc;
    while ((rc = sqlite3_step(b->prune_scan)) == SQLITE_ROW &&
           sqlite3_column_int64(b->prune_scan, 1) < older_than_ms)
        last = sqlite3_column_int64(b->prune_scan, 0);
    sqlite3_reset(b->prune_scan);
    int n = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
    if (n == 0 && last) {
        sqlite3_bind_int64(b->prune, 1, last);
        n = step_done(b->prune) ? -1 : sqlite3_changes(b->st.db);
    }
    pthread_mutex_unlock(&b->mu);
    return n;
}

uint64_t jinbox_dead_count(jinbox *b)
{
    pthread_mutex_lock(&b->mu);
    uint64_t v = 0;
    if (sqlite3_step(b->count_dead) == SQLITE_ROW)
        v = (uint64_t)sqlite3_column_int64(b->count_dead, 0);
    sqlite3_reset(b->count_dead);
    pthread_mutex_unlock(&b->mu);
    return v;
}

json_t *jinbox_dead_report(const char *data_dir, size_t latest, char *err, size_t errlen)
{
    char *path = xasprintf("%s/inbox.db", data_dir);
    sqlite3 *db = NULL;
    /* read-write without create: no inbox yet is no dead letter, and WAL
     * readers need the -shm (query_only: this connection never writes) */
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_CANTOPEN) {
        sqlite3_close(db);
        free(path);
        return json_pack("{s:I, s:[]}", "count", (json_int_t)0, "latest");
    }
    sqlite3_stmt *q = NULL;
    json_t *out = NULL;
    if (rc != SQLITE_OK || sqlite3_busy_timeout(db, 5000) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA query_only = 1; BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT count(*) FROM journey_dead_letters", -1, &q, NULL) !=
            SQLITE_OK ||
        sqlite3_step(q) != SQLITE_ROW)
        goto fail;
    out = json_pack("{s:I, s:[]}", "count", (json_int_t)sqlite3_column_int64(q, 0), "latest");
    sqlite3_finalize(q);
    if (sqlite3_prepare_v2(db,
                           "SELECT received, source, reason, substr(CAST(body AS BLOB), 1, 4096),"
                           " length(CAST(body AS BLOB)) FROM journey_dead_letters"
                           " ORDER BY seq DESC LIMIT ?",
                           -1, &q, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_int64(q, 1, (sqlite3_int64)latest);
    json_t *arr = json_object_get(out, "latest");
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        char at[21];
        timestamp_format(floor_div(sqlite3_column_int64(q, 0), 1000), at);
        /* a dead letter's bytes are anything a publisher sent (NULs,
         * invalid UTF-8): shown as text, each bad byte as U+FFFD */
        char *col[3];
        for (int c = 0; c < 3; c++) {
            const char *t = (const char *)sqlite3_column_blob(q, c + 1);
            col[c] = utf8_printable(t ? t : "", t ? (size_t)sqlite3_column_bytes(q, c + 1) : 0);
        }
        /* the first 4 KB of the body, and its size in bytes */
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s, s:I}", "at", at, "source",
                                             col[0], "reason", col[1], "body", col[2], "body_bytes",
                                             (json_int_t)sqlite3_column_int64(q, 4)));
        for (int c = 0; c < 3; c++)
            free(col[c]);
    }
    if (rc != SQLITE_DONE)
        goto fail;
    sqlite3_finalize(q);
    sqlite3_close(db); /* ends the read transaction */
    free(path);
    return out;
fail:
    snprintf(err, errlen, "%s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_finalize(q);
    sqlite3_close(db);
    free(path);
    json_decref(out);
    return NULL;
}

int jinbox_spool_open(store *st, const char *path, char *err, size_t errlen)
{
    static const char *const spool_ddl =
        "CREATE TABLE IF NOT EXISTS journey_spool (n INTEGER PRIMARY KEY, at INTEGER NOT NULL,"
        " body TEXT NOT NULL)";
    if (store_open_path(st, path, err, errlen))
        return -1;
    if (store_migrate(st, "journey_spool", 1, spool_ddl, err, errlen)) {
        store_close(st);
        return -1;
    }
    return 0;
}

int jinbox_spool_put(const char *data_dir, const char *json, size_t len, char *err, size_t errlen)
{
    store st;
    char *path = xasprintf("%s/inbox.db", data_dir);
    int rc = jinbox_spool_open(&st, path, err, errlen);
    free(path);
    if (rc)
        return -1;
    sqlite3_stmt *ins = NULL;
    rc = sqlite3_prepare_v2(st.db, "INSERT INTO journey_spool (at, body) VALUES (?1, ?2)", -1, &ins,
                            NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(ins, 1, (int64_t)time(NULL) * 1000);
        sqlite3_bind_text(ins, 2, json, (int)len, SQLITE_STATIC);
        rc = sqlite3_step(ins) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    }
    if (rc != SQLITE_OK)
        snprintf(err, errlen, "%s: the event could not be spooled: %s", st.path,
                 sqlite3_errmsg(st.db));
    sqlite3_finalize(ins);
    store_close(&st);
    return rc == SQLITE_OK ? 0 : -1;
}
