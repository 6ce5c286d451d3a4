/* The delivery log: tables, the group-committing writer, and the public
 * queries of dispatch.h. */
#include "delivery/dlog.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/deadline.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/timefmt.h"

/* How long a group transaction stays open at most. */
#define COMMIT_MS 20
/* An owner silent this long while its pid lives (a pid reused, a process
 * hung) is taken for dead. A live process is never taken for dead for a
 * mere pause: a long engine batch holds the write lock, and two processes
 * must never both send a row. */
#define OWNER_STALE_S 300
/* Rows of owners gone without a trace are looked for this often (and at
 * once when a beat finds an owner dead). */
#define ORPHANS_S 30
/* The rowids that may have gone out in the batches in deliver() of the
 * owners `dead` names (a condition on f): every row of a batch whose
 * channel never said what went on the wire, else those at the positions
 * dispatch_wire lists. */
#define ON_THE_WIRE(dead)                                                                          \
    "SELECT j.value FROM dispatch_inflight f, json_each(f.rowids) j WHERE " dead " AND"            \
    " (f.wire = 0 OR EXISTS (SELECT 1 FROM dispatch_wire w, json_each(w.ranges) r"                 \
    " WHERE w.flight = f.id AND j.key >= r.value ->> 0 AND j.key < r.value ->> 1))"

struct dlog {
    store *s;
    sqlite3 *db;         /* s->db */
    pthread_mutex_t *mu; /* &s->write_lock: every use of db */
    pthread_t committer;
    pthread_cond_t wake;
    int stopping;
    int refs;
    /* prepared once: every statement a message or a batch runs; rows are
     * found by rowid (no walk of the key index) */
    sqlite3_stmt *ins, *upd_id, *sending_id, *get, *cap_all, *cap_chan, *sup, *sup_any;
    /* whether the suppression list has a row, as of data version sup_dv
     * (sup_fn) */
    unsigned sup_dv;
    int sup_known, sup_rows;
    sqlite3_stmt *pump, *due; /* the pump's and flush's */
    sqlite3_stmt *fl_ins, *fl_del, *fl_wire, *wire_set, *wire_del;
    struct dlog *next;
};

static const char *const status_names[DISPATCH_NSTATUS] = {
    "queued",  "retry",     "deferred",  "sent",    "failed",    "capped",
    "dry_run", "duplicate", "uncertain", "bounced", "complained"};

const char *dispatch_status_name(dispatch_status s)
{
    return (unsigned)s < DISPATCH_NSTATUS ? status_names[s] : "unknown";
}

dispatch_status dispatch_status_parse(const char *s)
{
    for (int i = 0; i < DISPATCH_NSTATUS; i++)
        if (s && strcmp(s, status_names[i]) == 0)
            return (dispatch_status)i;
    return DISPATCH_FAILED;
}

/* The statuses that are not final. Spelt as ORs, not IN (...): SQLite
 * evaluates an IN list through an ephemeral table built at every run of
 * the statement, and the partial index below has its condition evaluated
 * at every insert and every update of the row (twice). */
#define PENDING "(status = 'queued' OR status = 'retry' OR status = 'deferred')"
#define CAPPED_STATUS                                                                              \
    "(status = 'queued' OR status = 'retry' OR status = 'deferred' OR status = 'sent')"

static const char *const ddl =
    "CREATE TABLE IF NOT EXISTS deliveries ("
    " key TEXT PRIMARY KEY, channel TEXT NOT NULL, recipient TEXT NOT NULL, profile_id TEXT,"
    " status TEXT NOT NULL, provider_id TEXT, reason TEXT,"
    " attempts INTEGER NOT NULL DEFAULT 0, segments INTEGER NOT NULL DEFAULT 0,"
    " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
    " next_at INTEGER NOT NULL DEFAULT 0,"
    " owner INTEGER NOT NULL DEFAULT 0," /* the dispatcher holding it in memory; 0: none */
    " content TEXT);"                    /* the message, while it is not final */
    "CREATE INDEX IF NOT EXISTS deliveries_profile ON deliveries(profile_id, created_at);"
    "CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries(channel, next_at)"
    " WHERE owner = 0 AND " PENDING ";"
    /* live dispatchers, any process: a row held by an owner that stopped
     * beating is released to the others */
    "CREATE TABLE IF NOT EXISTS dispatch_owners (owner INTEGER PRIMARY KEY,"
    " channel TEXT NOT NULL, pid INTEGER NOT NULL, heartbeat INTEGER NOT NULL)";

/* 1 while a worker has the row in deliver(): what a crash leaves set is
 * "uncertain" (dispatch.h) */
static const char *const ddl_sending =
    "ALTER TABLE deliveries ADD COLUMN sending INTEGER NOT NULL DEFAULT 0";
/* the pending index as first made (status IN (...)) costs an ephemeral
 * table at every write of a row: made again with the ORs */
static const char *const ddl_pending =
    "DROP INDEX IF EXISTS deliveries_pending;"
    "CREATE INDEX deliveries_pending ON deliveries(channel, next_at)"
    " WHERE owner = 0 AND " PENDING;
/* the batches in deliver() (dlog.h: dlog_inflight_begin) */
static const char *const ddl_inflight =
    "CREATE TABLE IF NOT EXISTS dispatch_inflight (id INTEGER PRIMARY KEY,"
    " owner INTEGER NOT NULL, rowids TEXT NOT NULL)"; /* a JSON array */
/* 1: the channel reports what goes on the wire (baton.h 1.4): of its rows
 * only those with `sending` set may have gone out */
static const char *const ddl_inflight_wire =
    "ALTER TABLE dispatch_inflight ADD COLUMN wire INTEGER NOT NULL DEFAULT 0";
/* what of an in-flight batch went on the wire (dlog_inflight_wire):
 * ranges [from, to) of positions in its rowids, a JSON array of pairs */
static const char *const ddl_wire =
    "CREATE TABLE IF NOT EXISTS dispatch_wire (flight INTEGER PRIMARY KEY,"
    " ranges TEXT NOT NULL)";
/* the rows some dispatcher holds: looked up when one dies */
static const char *const ddl_owned =
    "CREATE INDEX IF NOT EXISTS deliveries_owned ON deliveries(channel, owner)"
    " WHERE owner != 0";

/* addresses and profiles no channel sends to (dispatch.h: Suppressions) */
static const char *const ddl_suppress =
    "CREATE TABLE IF NOT EXISTS suppressions (channel TEXT NOT NULL, kind TEXT NOT NULL,"
    " value TEXT NOT NULL, reason TEXT NOT NULL, source TEXT NOT NULL,"
    " created_at INTEGER NOT NULL, PRIMARY KEY (channel, kind, value));"
    /* bounces and complaints as they came (dispatch_feedback_record) */
    "CREATE TABLE IF NOT EXISTS feedback (id INTEGER PRIMARY KEY, at INTEGER NOT NULL,"
    " provider TEXT NOT NULL, type TEXT NOT NULL, address TEXT, key TEXT, message_id TEXT,"
    " reason TEXT);"
    /* feedback finds its delivery by the provider's message id */
    "CREATE INDEX IF NOT EXISTS deliveries_provider ON deliveries(provider_id)"
    " WHERE provider_id IS NOT NULL";

/* a delivery's first report of a kind (dispatch_feedback_event) */
static const char *const ddl_feedback_key =
    "CREATE INDEX IF NOT EXISTS feedback_key ON feedback(key, type)";

/* hits of the open pixel and click redirects (dispatch_engagement_record) */
static const char *const ddl_engagement =
    "CREATE TABLE IF NOT EXISTS engagement (id INTEGER PRIMARY KEY, at INTEGER NOT NULL,"
    " kind TEXT NOT NULL, key TEXT NOT NULL, channel TEXT NOT NULL, profile_id TEXT,"
    " origin TEXT, name TEXT, node TEXT, link TEXT);"
    "CREATE INDEX IF NOT EXISTS engagement_key ON engagement(key, kind);"
    "CREATE INDEX IF NOT EXISTS engagement_origin ON engagement(origin, name, node)";

int dispatch_log_init(store *s, char *err, size_t errlen)
{
    return store_migrate(s, "dispatch", 2, ddl, err, errlen) ||
           store_migrate(s, "engagement", 1, ddl_engagement, err, errlen) ||
           store_migrate(s, "suppressions", 2, ddl_suppress, err, errlen) ||
           store_migrate(s, "feedback_key", 1, ddl_feedback_key, err, errlen) ||
           store_migrate(s, "dispatch_sending", 1, ddl_sending, err, errlen) ||
           store_migrate(s, "dispatch_owned", 1, ddl_owned, err, errlen) ||
           store_migrate(s, "dispatch_pending", 1, ddl_pending, err, errlen) ||
           store_migrate(s, "dispatch_inflight", 1, ddl_inflight, err, errlen) ||
           store_migrate(s, "dispatch_inflight_wire", 1, ddl_inflight_wire, err, errlen) ||
           store_migrate(s, "dispatch_wire", 1, ddl_wire, err, errlen);
}

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static dlog *reg_head;

/* The attached log of s, or NULL: under reg_mu, reference not counted. */
static dlog *dlog_find(store *s)
{
    for (dlog *l = reg_head; l; l = l->next)
        if (l->s == s)
            return l;
    return NULL;
}

static void *committer(void *arg)
{
    dlog *l = arg;
    pthread_setname_np(pthread_self(), "baton-dlog"); /* top -H, perf */
    pthread_mutex_lock(l->mu);
    while (!l->stopping) {
        struct timespec ts;
        deadline_in(&ts, COMMIT_MS);
        pthread_cond_timedwait(&l->wake, l->mu, &ts);
        store_group_commit_locked(l->s);
    }
    pthread_mutex_unlock(l->mu);
    return NULL;
}

static int prepare(dlog *l, const char *sql, sqlite3_stmt **st, char *err, size_t errlen)
{
    if (sqlite3_prepare_v3(l->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "delivery log: %s", sqlite3_errmsg(l->db));
        return -1;
    }
    return 0;
}

static void dlog_free(dlog *l)
{
    sqlite3_finalize(l->ins);
    sqlite3_finalize(l->upd_id);
    sqlite3_finalize(l->sending_id);
    sqlite3_finalize(l->pump);
    sqlite3_finalize(l->due);
    sqlite3_finalize(l->fl_ins);
    sqlite3_finalize(l->fl_del);
    sqlite3_finalize(l->fl_wire);
    sqlite3_finalize(l->wire_set);
    sqlite3_finalize(l->wire_del);
    sqlite3_finalize(l->get);
    sqlite3_finalize(l->cap_all);
    sqlite3_finalize(l->cap_chan);
    sqlite3_finalize(l->sup);
    sqlite3_finalize(l->sup_any);
    pthread_cond_destroy(&l->wake);
    free(l);
}

#define ROW_COLS                                                                                   \
    "key, channel, recipient, coalesce(profile_id, ''), status, coalesce(provider_id, ''),"        \
    " coalesce(reason, ''), attempts, segments, created_at, updated_at, next_at"

#define UPD_SET                                                                                    \
    "status = ?2, provider_id = ?3, reason = ?4, attempts = ?5, segments = ?6,"                    \
    " updated_at = ?7, next_at = ?8, owner = ?9, sending = 0,"                                     \
    " content = CASE WHEN ?10 THEN NULL ELSE content END"

/* Lock order: the store's write_lock may be held (by the journey engine,
 * for its whole batch) when reg_mu is taken, so nothing takes write_lock
 * while it holds reg_mu. */
dlog *dlog_attach(store *s, char *err, size_t errlen)
{
    if (dispatch_log_init(s, err, errlen) != 0) /* takes write_lock; idempotent */
        return NULL;
    pthread_mutex_lock(&reg_mu);
    dlog *l = dlog_find(s);
    if (l) {
        l->refs++;
        pthread_mutex_unlock(&reg_mu);
        return l;
    }
    l = xcalloc(1, sizeof *l);
    l->s = s;
    l->db = s->db;
    l->mu = &s->write_lock;
    deadline_cond_init(&l->wake);
    if (prepare(
            l,
            "INSERT INTO deliveries (key, channel, recipient, profile_id, status, created_at,"
            " updated_at, next_at, owner, content) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9)"
            " ON CONFLICT(key) DO NOTHING",
            &l->ins, err, errlen) ||
        /* OR IGNORE: a statement that cannot fail part way needs no
         * statement journal, whatever trigger a store may have on the
         * table; it has nothing to ignore (no NULL for a NOT NULL column,
         * the key unchanged) */
        prepare(l, "UPDATE OR IGNORE deliveries SET " UPD_SET " WHERE rowid = ?1", &l->upd_id, err,
                errlen) ||
        prepare(l, "UPDATE deliveries SET sending = 1, attempts = ?2 WHERE rowid = ?1",
                &l->sending_id, err, errlen) ||
        prepare(l,
                "SELECT key, recipient, profile_id, attempts, created_at, content, sending, rowid"
                " FROM deliveries WHERE channel = ?1 AND owner = 0 AND " PENDING
                " AND next_at <= ?2 ORDER BY next_at LIMIT ?3",
                &l->pump, err, errlen) ||
        prepare(l,
                "SELECT count(*) FROM deliveries WHERE channel = ?1 AND owner = 0 AND " PENDING
                " AND next_at <= ?2",
                &l->due, err, errlen) ||
        prepare(l, "INSERT INTO dispatch_inflight (owner, rowids) VALUES (?1, ?2)", &l->fl_ins, err,
                errlen) ||
        prepare(l, "DELETE FROM dispatch_inflight WHERE id = ?1", &l->fl_del, err, errlen) ||
        prepare(l, "UPDATE dispatch_inflight SET wire = 1 WHERE id = ?1", &l->fl_wire, err,
                errlen) ||
        prepare(l, "INSERT OR REPLACE INTO dispatch_wire (flight, ranges) VALUES (?1, ?2)",
                &l->wire_set, err, errlen) ||
        prepare(l, "DELETE FROM dispatch_wire WHERE flight = ?1", &l->wire_del, err, errlen) ||
        prepare(l, "SELECT " ROW_COLS " FROM deliveries WHERE key = ?1", &l->get, err, errlen) ||
        prepare(l,
                "SELECT count(*) FROM deliveries WHERE profile_id = ?1 AND created_at > ?2"
                " AND " CAPPED_STATUS,
                &l->cap_all, err, errlen) ||
        prepare(l,
                "SELECT count(*) FROM deliveries WHERE profile_id = ?1 AND created_at > ?2"
                " AND " CAPPED_STATUS " AND channel = ?3",
                &l->cap_chan, err, errlen)) {
        dlog_free(l);
        pthread_mutex_unlock(&reg_mu);
        return NULL;
    }
    if (pthread_create(&l->committer, NULL, committer, l) != 0) {
        snprintf(err, errlen, "delivery log: cannot start its committer: %s", strerror(errno));
        dlog_free(l);
        pthread_mutex_unlock(&reg_mu);
        return NULL;
    }
    l->refs = 1;
    l->next = reg_head;
    reg_head = l;
    pthread_mutex_unlock(&reg_mu);
    return l;
}

void dlog_detach(dlog *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&reg_mu);
    if (--l->refs > 0) {
        pthread_mutex_unlock(&reg_mu);
        return;
    }
    for (dlog **pp = &reg_head; *pp; pp = &(*pp)->next)
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    pthread_mutex_unlock(&reg_mu);
    pthread_mutex_lock(l->mu);
    l->stopping = 1;
    pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(l->mu);
    pthread_join(l->committer, NULL);
    store_group_commit(l->s);
    dlog_free(l);
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

int dlog_insert(dlog *l, const char *key, const char *channel, const char *recipient,
                const char *profile_id, dispatch_status st, int64_t now, int64_t next_at,
                int64_t owner, const char *content, int64_t *rowid)
{
    store_group_join(l->s);
    sqlite3_stmt *s = l->ins;
    bind_text(s, 1, key);
    bind_text(s, 2, channel);
    bind_text(s, 3, recipient ? recipient : "");
    bind_text(s, 4, profile_id);
    bind_text(s, 5, dispatch_status_name(st));
    sqlite3_bind_int64(s, 6, now);
    sqlite3_bind_int64(s, 7, next_at);
    sqlite3_bind_int64(s, 8, owner);
    bind_text(s, 9, content);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE) {
        log_error("delivery log: insert %s: %s", key, sqlite3_errmsg(l->db));
        return -1;
    }
    if (sqlite3_changes(l->db) == 0)
        return 0;
    if (rowid)
        *rowid = sqlite3_last_insert_rowid(l->db);
    return 1;
}

void dlog_update(dlog *l, int64_t rowid, const char *key, dispatch_status st,
                 const char *provider_id, const char *reason, unsigned attempts, unsigned segments,
                 int64_t now, int64_t next_at, int64_t owner)
{
    int final = st == DISPATCH_SENT || st == DISPATCH_FAILED || st == DISPATCH_CAPPED ||
                st == DISPATCH_UNCERTAIN;
    store_group_join(l->s);
    sqlite3_stmt *s = l->upd_id;
    sqlite3_bind_int64(s, 1, rowid);
    bind_text(s, 2, dispatch_status_name(st));
    bind_text(s, 3, provider_id && *provider_id ? provider_id : NULL);
    bind_text(s, 4, reason && *reason ? reason : NULL);
    sqlite3_bind_int(s, 5, (int)attempts);
    sqlite3_bind_int(s, 6, (int)segments);
    sqlite3_bind_int64(s, 7, now);
    sqlite3_bind_int64(s, 8, next_at);
    sqlite3_bind_int64(s, 9, final ? 0 : owner);
    sqlite3_bind_int(s, 10, final);
    if (sqlite3_step(s) != SQLITE_DONE)
        log_error("delivery log: update %s: %s", key, sqlite3_errmsg(l->db));
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

void dlog_mark_sending(dlog *l, int64_t rowid, const char *key, unsigned attempts)
{
    store_group_join(l->s);
    sqlite3_stmt *s = l->sending_id;
    sqlite3_bind_int64(s, 1, rowid);
    sqlite3_bind_int(s, 2, (int)attempts);
    if (sqlite3_step(s) != SQLITE_DONE)
        log_error("delivery log: in flight %s: %s", key, sqlite3_errmsg(l->db));
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

int64_t dlog_inflight_begin(dlog *l, int64_t owner, const int64_t *rowids, size_t n)
{
    buf b;
    buf_init(&b);
    buf_addc(&b, '[');
    for (size_t i = 0; i < n; i++)
        buf_addf(&b, i ? ",%lld" : "%lld", (long long)rowids[i]);
    buf_addc(&b, ']');
    store_group_join(l->s);
    sqlite3_bind_int64(l->fl_ins, 1, owner);
    sqlite3_bind_text(l->fl_ins, 2, b.data, (int)b.len, SQLITE_STATIC);
    int64_t id = 0;
    if (sqlite3_step(l->fl_ins) == SQLITE_DONE)
        id = sqlite3_last_insert_rowid(l->db);
    else
        log_error("delivery log: in flight: %s", sqlite3_errmsg(l->db));
    sqlite3_reset(l->fl_ins);
    sqlite3_clear_bindings(l->fl_ins);
    buf_free(&b);
    return id;
}

static void step_id(dlog *l, sqlite3_stmt *st, int64_t id)
{
    store_group_join(l->s);
    sqlite3_bind_int64(st, 1, id);
    if (sqlite3_step(st) != SQLITE_DONE)
        log_error("delivery log: in flight: %s", sqlite3_errmsg(l->db));
    sqlite3_reset(st);
}

void dlog_inflight_end(dlog *l, int64_t id, int wired)
{
    step_id(l, l->fl_del, id);
    if (wired)
        step_id(l, l->wire_del, id);
}

void dlog_inflight_wire(dlog *l, int64_t id, const unsigned char *on, size_t n, int first)
{
    if (first)
        step_id(l, l->fl_wire, id);
    buf b;
    buf_init(&b);
    buf_addc(&b, '[');
    for (size_t i = 0; i < n;) {
        if (!on[i]) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && on[j])
            j++;
        buf_addf(&b, "%s[%zu,%zu]", b.len > 1 ? "," : "", i, j);
        i = j;
    }
    buf_addc(&b, ']');
    store_group_join(l->s);
    sqlite3_bind_int64(l->wire_set, 1, id);
    sqlite3_bind_text(l->wire_set, 2, b.data, (int)b.len, SQLITE_STATIC);
    if (sqlite3_step(l->wire_set) != SQLITE_DONE)
        log_error("delivery log: on the wire: %s", sqlite3_errmsg(l->db));
    sqlite3_reset(l->wire_set);
    sqlite3_clear_bindings(l->wire_set);
    buf_free(&b);
}

void dlog_lock(dlog *l)
{
    pthread_mutex_lock(l->mu);
}

void dlog_unlock(dlog *l)
{
    pthread_mutex_unlock(l->mu);
}

void dlog_commit_locked(dlog *l)
{
    store_group_commit_locked(l->s);
}

void dlog_commit(dlog *l)
{
    store_group_commit(l->s);
}

/* ------------------------------------------------------------------ */
/* Owners                                                              */
/* ------------------------------------------------------------------ */

/* Run sql with ?1 = text (when not NULL), ?2 = a, ?3 = b; a statement
 * without some of them ignores those. */
static void exec_bound(dlog *l, const char *sql, const char *text, int64_t a, int64_t b)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(l->db, sql, -1, &st, NULL) != SQLITE_OK) {
        log_error("delivery log: %s", sqlite3_errmsg(l->db));
        return;
    }
    if (text)
        sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, a);
    sqlite3_bind_int64(st, 3, b);
    if (sqlite3_step(st) != SQLITE_DONE)
        log_error("delivery log: %s", sqlite3_errmsg(l->db));
    sqlite3_finalize(st);
}

void dlog_heartbeat(dlog *l, const char *channel, int64_t owner, int64_t pid, int64_t *orphans_ms)
{
    int64_t wall = (int64_t)time(NULL);
    store_group_join(l->s);
    exec_bound(l,
               "INSERT INTO dispatch_owners (owner, channel, pid, heartbeat) VALUES (?2, ?1, ?3, "
               "strftime('%s','now')) ON CONFLICT(owner) DO UPDATE SET heartbeat = "
               "excluded.heartbeat",
               channel, owner, pid);
    exec_bound(l, "DELETE FROM dispatch_owners WHERE heartbeat < ?2", NULL, wall - OWNER_STALE_S,
               0);
    int gone = sqlite3_changes(l->db) > 0;
    /* an owner whose process is gone (killed, crashed) is dead now: its
     * rows need not wait for the heartbeat to go stale */
    sqlite3_stmt *st;
    int64_t dead[64];
    size_t ndead = 0;
    if (sqlite3_prepare_v2(l->db, "SELECT owner, pid FROM dispatch_owners WHERE pid != ?1", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, pid);
        while (sqlite3_step(st) == SQLITE_ROW && ndead < 64) {
            pid_t p = (pid_t)sqlite3_column_int64(st, 1);
            if (p > 0 && kill(p, 0) != 0 && errno == ESRCH)
                dead[ndead++] = sqlite3_column_int64(st, 0);
        }
        sqlite3_finalize(st);
    }
    for (size_t i = 0; i < ndead; i++)
        exec_bound(l, "DELETE FROM dispatch_owners WHERE owner = ?2", NULL, dead[i], 0);
    /* the look costs a scan of the rows held in memory: not every beat,
     * which would stall every writer each second */
    if (!gone && !ndead && *orphans_ms && deadline_now_ms() - *orphans_ms < ORPHANS_S * 1000)
        return;
    *orphans_ms = deadline_now_ms();
    /* the batches dead owners had in deliver(): their rows become "in
     * flight" (attempts counted), which the pump turns into uncertain —
     * except in a batch whose channel said what went on the wire, where
     * only the rows at the positions dispatch_wire lists may have gone
     * (rows marked `sending` one by one, as before that table, are so
     * already) and the others never went */
    exec_bound(
        l,
        "UPDATE deliveries SET sending = 1, attempts = attempts + 1 WHERE rowid IN"
        " (" ON_THE_WIRE("f.owner != ?2 AND f.owner NOT IN (SELECT owner FROM"
                         " dispatch_owners)") ")"
                                              " AND status IN ('queued', 'retry', 'deferred')",
        NULL, owner, 0);
    exec_bound(l,
               "DELETE FROM dispatch_wire WHERE flight IN (SELECT id FROM dispatch_inflight"
               " WHERE owner != ?2 AND owner NOT IN (SELECT owner FROM dispatch_owners))",
               NULL, owner, 0);
    exec_bound(l,
               "DELETE FROM dispatch_inflight WHERE owner != ?2 AND owner NOT IN"
               " (SELECT owner FROM dispatch_owners)",
               NULL, owner, 0);
    /* every channel's: the beat that found an owner dead also removed it
     * from dispatch_owners, so no other channel's beat would notice */
    exec_bound(l,
               "UPDATE deliveries SET owner = 0 WHERE owner != 0 AND owner != ?2"
               " AND status IN ('queued', 'retry', 'deferred') AND owner NOT IN"
               " (SELECT owner FROM dispatch_owners)",
               NULL, owner, 0);
}

void dlog_release(dlog *l, int64_t owner)
{
    store_group_join(l->s);
    exec_bound(l, "UPDATE deliveries SET owner = 0 WHERE owner = ?2", NULL, owner, 0);
    exec_bound(l, "DELETE FROM dispatch_owners WHERE owner = ?2", NULL, owner, 0);
    exec_bound(l,
               "DELETE FROM dispatch_wire WHERE flight IN (SELECT id FROM dispatch_inflight"
               " WHERE owner = ?2)",
               NULL, owner, 0);
    exec_bound(l, "DELETE FROM dispatch_inflight WHERE owner = ?2", NULL, owner, 0);
}

void dlog_due_rows(dlog *l, const char *channel, int64_t now, size_t limit,
                   void (*fn)(void *ud, const dlog_due_row *r), void *ud)
{
    sqlite3_stmt *st = l->pump; /* prepared once: it runs at every wake */
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
    while (sqlite3_step(st) == SQLITE_ROW) {
        dlog_due_row r = {.key = (const char *)sqlite3_column_text(st, 0),
                          .recipient = (const char *)sqlite3_column_text(st, 1),
                          .profile_id = (const char *)sqlite3_column_text(st, 2),
                          .attempts = (unsigned)sqlite3_column_int(st, 3),
                          .created_at = sqlite3_column_int64(st, 4),
                          .content = (const char *)sqlite3_column_text(st, 5),
                          .sending = sqlite3_column_int(st, 6),
                          .rowid = sqlite3_column_int64(st, 7)};
        fn(ud, &r);
    }
    sqlite3_reset(st);
}

long long dlog_due_count(dlog *l, const char *channel, int64_t now)
{
    long long n = 0;
    pthread_mutex_lock(l->mu);
    sqlite3_stmt *st = l->due;
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    pthread_mutex_unlock(l->mu);
    return n;
}

/* ------------------------------------------------------------------ */
/* Queries                                                             */

/* ------------------------------------------------------------------ */

static void copy_col(char *dst, size_t n, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(dst, n, "%s", t ? (const char *)t : "");
}

static int read_row(sqlite3_stmt *st, dispatch_log_row *row)
{
    if (!row)
        return 1;
    memset(row, 0, sizeof *row);
    copy_col(row->key, sizeof row->key, st, 0);
    copy_col(row->channel, sizeof row->channel, st, 1);
    copy_col(row->recipient, sizeof row->recipient, st, 2);
    copy_col(row->profile_id, sizeof row->profile_id, st, 3);
    row->status = dispatch_status_parse((const char *)sqlite3_column_text(st, 4));
    copy_col(row->provider_id, sizeof row->provider_id, st, 5);
    copy_col(row->reason, sizeof row->reason, st, 6);
    row->attempts = (unsigned)sqlite3_column_int(st, 7);
    row->segments = (unsigned)sqlite3_column_int(st, 8);
    row->created_at = sqlite3_column_int64(st, 9);
    row->updated_at = sqlite3_column_int64(st, 10);
    row->next_at = sqlite3_column_int64(st, 11);
    return 1;
}

/* Run fn with the connection that sees pending writes: the attached
 * log's (under its lock), else the store's own. */
typedef int (*with_db_fn)(sqlite3 *db, dlog *l, void *ud);
/* A reference to the log attached to s, or NULL; taken under reg_mu,
 * which is let go before anything else is locked (see dlog_attach). */
static dlog *log_ref(store *s)
{
    pthread_mutex_lock(&reg_mu);
    dlog *l = dlog_find(s);
    if (l)
        l->refs++;
    pthread_mutex_unlock(&reg_mu);
    return l;
}

static int with_db(store *s, with_db_fn fn, void *ud)
{
    dlog *l = log_ref(s);
    if (!l)
        return fn(s->db, NULL, ud);
    pthread_mutex_lock(l->mu);
    int rc = fn(l->db, l, ud);
    pthread_mutex_unlock(l->mu);
    dlog_detach(l);
    return rc;
}

typedef struct get_args {
    const char *key;
    dispatch_log_row *row;
} get_args;

static int get_fn(sqlite3 *db, dlog *l, void *ud)
{
    get_args *a = ud;
    sqlite3_stmt *st = l ? l->get : NULL;
    if (!st && sqlite3_prepare_v2(db, "SELECT " ROW_COLS " FROM deliveries WHERE key = ?1", -1, &st,
                                  NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, a->key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int out = rc == SQLITE_ROW ? read_row(st, a->row) : rc == SQLITE_DONE ? 0 : -1;
    if (l)
        sqlite3_reset(st);
    else
        sqlite3_finalize(st);
    return out;
}

int dispatch_log_get(store *s, const char *key, dispatch_log_row *row)
{
    get_args a = {key, row};
    return with_db(s, get_fn, &a);
}

int dispatch_log_delivered(store *s, const char *key)
{
    dispatch_log_row row;
    return dispatch_log_get(s, key, &row) == 1 && row.status == DISPATCH_SENT;
}

typedef struct count_args {
    const char *prefix, *channel;
    uint64_t *counts;
} count_args;

/* The owners (dispatch_owners) whose process lives and beats, as a JSON
 * array: the heartbeat's test of who is dead, without forgetting anyone. */
static void live_owners(sqlite3 *db, buf *out)
{
    buf_addc(out, '[');
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT owner, pid, heartbeat FROM dispatch_owners", -1, &st,
                           NULL) == SQLITE_OK) {
        int64_t stale = (int64_t)time(NULL) - OWNER_STALE_S;
        int n = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
            pid_t p = (pid_t)sqlite3_column_int64(st, 1);
            if (sqlite3_column_int64(st, 2) < stale || (p > 0 && kill(p, 0) != 0 && errno == ESRCH))
                continue;
            buf_addf(out, n++ ? ",%lld" : "%lld", (long long)sqlite3_column_int64(st, 0));
        }
        sqlite3_finalize(st);
    }
    buf_addc(out, ']');
}

/* A row a dead process left in deliver() (?3: the live owners, as
 * live_owners writes them): uncertain, as the next dispatcher on its
 * channel records it */
#define IN_DOUBT                                                                                   \
    "(" PENDING " AND ((sending = 1 AND owner NOT IN (SELECT value FROM json_each(?3))) OR"        \
    " rowid IN (" ON_THE_WIRE("f.owner NOT IN (SELECT value FROM json_each(?3))") ")))"

/* " WHERE ..." over the rows whose key starts with ?1 (a key range: the
 * primary key index serves it, which an "?1 = '' OR" would not), on
 * channel ?2, of profile ?4: those of them given. */
static void where_of(buf *q, const char *prefix, const char *channel, const char *profile)
{
    buf_adds(q, " WHERE 1");
    if (prefix && *prefix)
        buf_adds(q, " AND key >= ?1 AND key < ?1 || x'f48fbfbf'");
    if (channel)
        buf_adds(q, " AND channel = ?2");
    if (profile)
        buf_adds(q, " AND profile_id = ?4");
}

static void bind_where(sqlite3_stmt *st, const char *prefix, const char *channel,
                       const char *profile, const buf *live)
{
    if (prefix && *prefix)
        sqlite3_bind_text(st, 1, prefix, -1, SQLITE_STATIC);
    if (channel)
        sqlite3_bind_text(st, 2, channel, -1, SQLITE_STATIC);
    if (live)
        sqlite3_bind_text(st, 3, live->data, (int)live->len, SQLITE_STATIC);
    if (profile)
        sqlite3_bind_text(st, 4, profile, -1, SQLITE_STATIC);
}

static int count_fn(sqlite3 *db, dlog *l, void *ud)
{
    count_args *a = ud;
    sqlite3_stmt *st;
    /* a row a dead process left in deliver() is uncertain already, as
     * the next dispatcher on its channel records it (dispatch.h:
     * Durability) */
    buf live, q, old;
    buf_init(&live);
    buf_init(&q);
    buf_init(&old);
    live_owners(db, &live);
    buf_adds(&q, "SELECT CASE WHEN " IN_DOUBT " THEN 'uncertain' ELSE status END, count(*) FROM"
                 " deliveries");
    where_of(&q, a->prefix, a->channel, NULL);
    buf_adds(&q, " GROUP BY 1");
    buf_adds(&old, "SELECT status, count(*) FROM deliveries"); /* a log before dispatch_wire */
    where_of(&old, a->prefix, a->channel, NULL);
    buf_adds(&old, " GROUP BY 1");
    int rc = -1, have = sqlite3_prepare_v2(db, q.data, -1, &st, NULL) == SQLITE_OK;
    if (!have && sqlite3_prepare_v2(db, old.data, -1, &st, NULL) != SQLITE_OK)
        goto out;
    bind_where(st, a->prefix, a->channel, NULL, have ? &live : NULL);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        a->counts[dispatch_status_parse((const char *)sqlite3_column_text(st, 0))] +=
            (uint64_t)sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    rc = rc == SQLITE_DONE ? 0 : -1;
out:
    buf_free(&live);
    buf_free(&q);
    buf_free(&old);
    return rc;
}

typedef struct unsure_args {
    const char *prefix, *profile;
    void (*fn)(void *ud, const char *key);
    void *ud;
} unsure_args;

static int unsure_fn(sqlite3 *db, dlog *l, void *ud)
{
    unsure_args *a = ud;
    sqlite3_stmt *st;
    buf q, live;
    buf_init(&q);
    buf_init(&live);
    buf_adds(&q, "SELECT key FROM deliveries");
    where_of(&q, a->prefix, NULL, a->profile);
    buf_adds(&q, " AND " IN_DOUBT);
    int rc = 0; /* a log from before dispatch_wire: nothing to tell */
    if (sqlite3_prepare_v2(db, q.data, -1, &st, NULL) == SQLITE_OK) {
        live_owners(db, &live);
        bind_where(st, a->prefix, NULL, a->profile, &live);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            a->fn(a->ud, (const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        rc = rc == SQLITE_DONE ? 0 : -1;
    }
    buf_free(&q);
    buf_free(&live);
    return rc;
}

int dispatch_log_unsure(store *s, const char *key_prefix, const char *profile_id,
                        void (*fn)(void *ud, const char *key), void *ud)
{
    unsure_args a = {key_prefix, profile_id, fn, ud};
    return with_db(s, unsure_fn, &a);
}

int dispatch_log_counts(store *s, const char *key_prefix, const char *channel,
                        uint64_t counts[DISPATCH_NSTATUS])
{
    memset(counts, 0, sizeof(uint64_t) * DISPATCH_NSTATUS);
    count_args a = {key_prefix, channel, counts};
    return with_db(s, count_fn, &a);
}

typedef struct reason_args {
    const char *prefix;
    int status;
    char *out;
    size_t outlen;
} reason_args;

static int reason_fn(sqlite3 *db, dlog *l, void *ud)
{
    reason_args *a = ud;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "SELECT reason FROM deliveries WHERE key >= ?1 AND key < ?1 ||"
                           " x'f48fbfbf' AND status = ?2 AND reason IS NOT NULL LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, a->prefix, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, status_names[a->status], -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        snprintf(a->out, a->outlen, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return 0;
}

int dispatch_log_reason(store *s, const char *key_prefix, dispatch_status status, char *out,
                        size_t outlen)
{
    if (outlen)
        out[0] = '\0';
    reason_args a = {key_prefix, (int)status, out, outlen};
    return with_db(s, reason_fn, &a);
}

void dispatch_log_sync(store *s)
{
    dlog *l = log_ref(s);
    if (l) {
        store_group_commit(l->s);
        dlog_detach(l);
    }
}

typedef struct cap_args {
    const char *profile, *channel;
    int64_t since;
    long long n;
} cap_args;

static int cap_fn(sqlite3 *db, dlog *l, void *ud)
{
    cap_args *a = ud;
    const char *sql = a->channel ? "SELECT count(*) FROM deliveries WHERE profile_id = ?1 AND"
                                   " created_at > ?2 AND " CAPPED_STATUS " AND channel = ?3"
                                 : "SELECT count(*) FROM deliveries WHERE profile_id = ?1 AND"
                                   " created_at > ?2 AND " CAPPED_STATUS;
    sqlite3_stmt *st = l ? (a->channel ? l->cap_chan : l->cap_all) : NULL;
    if (!st && sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, a->profile, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, a->since);
    if (a->channel)
        sqlite3_bind_text(st, 3, a->channel, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    a->n = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    if (l)
        sqlite3_reset(st);
    else
        sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -1;
}

long long dlog_cap_count(store *s, const char *profile, const char *channel, int64_t since)
{
    cap_args a = {profile, channel, since, 0};
    if (with_db(s, cap_fn, &a) != 0)
        return 0;
    return a.n;
}

/* --- Suppressions ---------------------------------------------------- */

typedef struct sup_args {
    const char *channel, *profile, *address;
    char *reason;
    size_t reasonlen;
    int hit;
} sup_args;

/* 0 when the suppression list is known to be empty: most are, and then a
 * message costs no lookup. Known inside a transaction only (its snapshot
 * is current: every transaction here is a write one, no other writer
 * commits meanwhile), for as long as the database's data version stays
 * the same: it moves with every commit, this connection's (the list's
 * writers, dispatch_suppress and dispatch_feedback_record, commit theirs
 * under the write lock) and, at its next transaction, another's. */
static int sup_maybe(sqlite3 *db, dlog *l)
{
    unsigned dv = 0;
    if (!l || sqlite3_get_autocommit(db) ||
        sqlite3_file_control(db, "main", SQLITE_FCNTL_DATA_VERSION, &dv) != SQLITE_OK)
        return 1;
    if (l->sup_known && l->sup_dv == dv)
        return l->sup_rows;
    if (!l->sup_any &&
        sqlite3_prepare_v3(db, "SELECT 1 FROM suppressions LIMIT 1", -1, SQLITE_PREPARE_PERSISTENT,
                           &l->sup_any, NULL) != SQLITE_OK)
        return 1;
    int rc = sqlite3_step(l->sup_any);
    sqlite3_reset(l->sup_any);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return 1;
    l->sup_known = 1;
    l->sup_dv = dv;
    l->sup_rows = rc == SQLITE_ROW;
    return l->sup_rows;
}

static int sup_fn(sqlite3 *db, dlog *l, void *ud)
{
    sup_args *a = ud;
    if (!sup_maybe(db, l))
        return 0;
    /* three seeks of the primary key: spelt with ORs and IN, SQLite
     * built an ephemeral table (a pager opened and closed) at every
     * message */
    static const char *const sql =
        "SELECT kind, reason FROM suppressions WHERE channel = ?1 AND kind = 'profile' AND"
        " value = ?2 UNION ALL SELECT kind, reason FROM suppressions WHERE channel = ?1 AND"
        " kind = 'address' AND value = lower(?3) UNION ALL SELECT kind, reason FROM suppressions"
        " WHERE channel = '*' AND kind = 'address' AND value = lower(?3) LIMIT 1";
    sqlite3_stmt *st = l ? l->sup : NULL;
    if (!st && sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1; /* no table yet: nothing is suppressed */
    if (l && !l->sup)
        l->sup = st;
    sqlite3_bind_text(st, 1, a->channel, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, a->profile ? a->profile : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, a->address ? a->address : "", -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        a->hit = 1;
        if (a->reason && a->reasonlen)
            snprintf(a->reason, a->reasonlen, "%s (%s)", (const char *)sqlite3_column_text(st, 1),
                     (const char *)sqlite3_column_text(st, 0));
    }
    if (l)
        sqlite3_reset(st);
    else
        sqlite3_finalize(st);
    return 0;
}

int dispatch_suppressed(store *s, const char *channel, const char *profile_id, const char *address,
                        char *reason, size_t reasonlen)
{
    if (!s || !channel || ((!profile_id || !*profile_id) && (!address || !*address)))
        return 0;
    sup_args a = {channel, profile_id, address, reason, reasonlen, 0};
    with_db(s, sup_fn, &a);
    return a.hit;
}

struct suppress_reader {
    sqlite3 *db;
    sqlite3_stmt *st;
    char *channel;
};

suppress_reader *dispatch_suppress_reader(const char *data_dir, const char *channel)
{
    char *path = xasprintf("%s/state.db", data_dir);
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
    free(path);
    sqlite3_stmt *st = NULL;
    if (rc != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT 1 FROM suppressions WHERE channel IN (?1, '*') LIMIT 1", -1,
                           &st, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    sqlite3_bind_text(st, 1, channel, -1, SQLITE_STATIC);
    int any = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    if (!any) {
        sqlite3_close(db);
        return NULL;
    }
    suppress_reader *r = xcalloc(1, sizeof *r);
    r->db = db;
    r->channel = xstrdup(channel);
    return r;
}

int dispatch_suppress_reader_check(suppress_reader *r, const char *profile_id, const char *address)
{
    if (!r)
        return 0;
    sup_args a = {r->channel, profile_id, address, NULL, 0, 0};
    /* sup_fn keeps its statement only with a log: keep it here instead */
    dlog fake = {.sup = r->st};
    sup_fn(r->db, &fake, &a);
    r->st = fake.sup;
    return a.hit;
}

void dispatch_suppress_reader_close(suppress_reader *r)
{
    if (!r)
        return;
    sqlite3_finalize(r->st);
    sqlite3_close(r->db);
    free(r->channel);
    free(r);
}

int dispatch_suppress(store *s, const char *channel, const char *kind, const char *value,
                      const char *reason, const char *source, int64_t now, char *err, size_t errlen)
{
    if (dispatch_log_init(s, err, errlen) != 0)
        return -1;
    store_lock(s); /* our own statement, durable when we return */
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db,
                                "INSERT OR IGNORE INTO suppressions (channel, kind, value, reason,"
                                " source, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, channel, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
        buf v;
        buf_init(&v);
        buf_adds(&v, value);
        if (!strcmp(kind, "address")) /* addresses match whatever their case */
            for (size_t i = 0; i < v.len; i++)
                if (v.data[i] >= 'A' && v.data[i] <= 'Z')
                    v.data[i] = (char)(v.data[i] - 'A' + 'a');
        sqlite3_bind_text(st, 3, v.data, (int)v.len, SQLITE_TRANSIENT);
        buf_free(&v);
        sqlite3_bind_text(st, 4, reason, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, source, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, now);
        rc = sqlite3_step(st);
    }
    int out = rc == SQLITE_DONE ? sqlite3_changes(s->db) > 0 : -1;
    if (out < 0)
        snprintf(err, errlen, "suppressions: %s", sqlite3_errmsg(s->db));
    sqlite3_finalize(st);
    store_unlock(s);
    return out;
}

static const char *const feedback_names[] = {"hard_bounce", "soft_bounce", "complaint"};

/* The delivery's reason after a feedback of type t with the provider's
 * words why ("bounced: 5.1.1 ..."). */
static void feedback_reason(dispatch_feedback_type t, const char *why, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s%s%s",
             t == FEEDBACK_HARD_BOUNCE   ? "bounced"
             : t == FEEDBACK_SOFT_BOUNCE ? "soft bounce"
                                         : "complained",
             why && *why ? ": " : "", why ? why : "");
}

static int64_t find_delivery(sqlite3 *db, const char *sql, const char *v, dispatch_log_row *row)
{
    sqlite3_stmt *st;
    int64_t rowid = 0;
    if (!v || !*v || sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_text(st, 1, v, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        read_row(st, row);
        rowid = sqlite3_column_int64(st, 12);
    }
    sqlite3_finalize(st);
    return rowid;
}

int dispatch_feedback_record(store *s, const dispatch_feedback *f, int64_t now,
                             dispatch_log_row *out, char *err, size_t errlen)
{
    if (dispatch_log_init(s, err, errlen) != 0)
        return -1;
    dispatch_log_row row;
    memset(&row, 0, sizeof row);
    store_lock(s);
    int64_t rowid = find_delivery(
        s->db, "SELECT " ROW_COLS ", rowid FROM deliveries WHERE key = ?1", f->key, &row);
    char mkey[sizeof row.key];
    if (!rowid && f->message_id && baton_message_id_key(f->message_id, mkey, sizeof mkey))
        rowid = find_delivery(s->db, "SELECT " ROW_COLS ", rowid FROM deliveries WHERE key = ?1",
                              mkey, &row);
    if (!rowid)
        rowid = find_delivery(s->db,
                              "SELECT " ROW_COLS ", rowid FROM deliveries WHERE provider_id = ?1"
                              " ORDER BY rowid DESC LIMIT 1",
                              f->message_id, &row);
    const char *address = f->address && *f->address ? f->address : rowid ? row.recipient : NULL;
    char reason[sizeof row.reason];
    feedback_reason(f->type, f->reason, reason, sizeof reason);
    int rc = store_exec(s, "BEGIN IMMEDIATE", err, errlen);
    sqlite3_stmt *st = NULL;
    if (rc == 0 &&
        sqlite3_prepare_v2(s->db,
                           "INSERT INTO feedback (at, provider, type, address, key, message_id, "
                           "reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, now);
        sqlite3_bind_text(st, 2, f->provider, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, feedback_names[f->type], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, address, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, rowid ? row.key : f->key, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, f->message_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 7, f->reason, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = -1;
        sqlite3_finalize(st);
    } else {
        rc = -1;
    }
    if (rc == 0 && rowid) {
        /* a soft bounce notes its reason; a complaint after a bounce is a
         * complaint */
        const char *status = f->type == FEEDBACK_HARD_BOUNCE ? "bounced"
                             : f->type == FEEDBACK_COMPLAINT ? "complained"
                                                             : NULL;
        if (sqlite3_prepare_v2(s->db,
                               "UPDATE deliveries SET status = coalesce(?2, status), reason = ?3,"
                               " updated_at = ?4 WHERE rowid = ?1",
                               -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_int64(st, 1, rowid);
            sqlite3_bind_text(st, 2, status, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, reason, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 4, now);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = -1;
            sqlite3_finalize(st);
        } else {
            rc = -1;
        }
        if (status)
            row.status = dispatch_status_parse(status);
        memcpy(row.reason, reason, sizeof row.reason);
    }
    if (rc == 0 && address && f->type != FEEDBACK_SOFT_BOUNCE &&
        sqlite3_prepare_v2(s->db,
                           "INSERT OR IGNORE INTO suppressions (channel, kind, value, reason, "
                           "source, created_at) VALUES ('*', 'address', lower(?1), ?2, ?3, ?4)",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, f->type == FEEDBACK_HARD_BOUNCE ? "bounced" : "complained", -1,
                          SQLITE_STATIC);
        sqlite3_bind_text(st, 3, f->provider, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, now);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = -1;
        sqlite3_finalize(st);
    }
    if (rc == 0)
        rc = store_exec(s, "COMMIT", err, errlen);
    else {
        snprintf(err, errlen, "feedback: %s", sqlite3_errmsg(s->db));
        store_exec(s, "ROLLBACK", NULL, 0);
    }
    store_unlock(s);
    if (rc != 0)
        return -1;
    if (out)
        *out = row;
    return rowid ? 1 : 0;
}

json_t *dispatch_feedback_event(store *s, dispatch_feedback_type t, const dispatch_log_row *row)
{
    if (t == FEEDBACK_SOFT_BOUNCE || !row->profile_id[0])
        return NULL;
    /* made from the first report of its kind for the delivery, not this
     * one: a repeat (a webhook sent again, the same DSN read twice, a
     * second provider's) is the same event, a duplicate to the inbox */
    int64_t at = 0;
    char provider[64] = "", why[sizeof row->reason] = "";
    int found = 0;
    store_lock(s);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT at, provider, reason FROM feedback WHERE key = ?1 AND type = ?2"
                           " ORDER BY id LIMIT 1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, row->key, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, feedback_names[t], -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            found = 1;
            at = sqlite3_column_int64(st, 0);
            copy_col(provider, sizeof provider, st, 1);
            copy_col(why, sizeof why, st, 2);
        }
    }
    sqlite3_finalize(st);
    store_unlock(s);
    if (!found) /* not recorded (dispatch_feedback_record first) */
        return NULL;
    const char *et = t == FEEDBACK_COMPLAINT ? "email_complained" : "email_bounced";
    char ts[21], reason[sizeof row->reason];
    timestamp_format(at, ts);
    feedback_reason(t, why, reason, sizeof reason);
    char *id = xasprintf("%s:%s", et, row->key);
    json_t *data = json_pack("{s:s, s:s, s:s, s:s}", "channel", row->channel, "key", row->key,
                             "reason", reason, "provider", provider);
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:o}", "id", id, "type", et, "profile",
                           row->profile_id, "time", ts, "data", data);
    free(id);
    return ev;
}

int dispatch_engagement_record(store *s, const dispatch_engagement *e, int64_t now, int *first,
                               char *err, size_t errlen)
{
    *first = 0;
    if (!e->key || !*e->key) /* a proof's or a preview's link */
        return 0;
    if (dispatch_log_init(s, err, errlen) != 0)
        return -1;
    store_lock(s);
    sqlite3_stmt *st = NULL;
    int found = 0, rc = -1;
    /* a link of a message the log does not hold (another state store, a
     * row since purged) is not counted */
    if (sqlite3_prepare_v2(s->db, "SELECT 1 FROM deliveries WHERE key = ?1", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(st, 1, e->key, -1, SQLITE_STATIC);
        int step = sqlite3_step(st);
        found = step == SQLITE_ROW;
        rc = step == SQLITE_ROW || step == SQLITE_DONE ? 0 : -1;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc == 0 && found &&
        sqlite3_prepare_v2(s->db,
                           "SELECT count(*) FROM engagement WHERE key = ?1 AND kind = ?2"
                           " AND (?3 IS NULL OR link = ?3)",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, e->key, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, e->kind, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, e->link && *e->link ? e->link : NULL, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            *first = sqlite3_column_int64(st, 0) == 0;
        else
            rc = -1;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc == 0 && found) {
        rc =
            sqlite3_prepare_v2(s->db,
                               "INSERT INTO engagement (at, kind, key, channel, profile_id, origin,"
                               " name, node, link) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                               -1, &st, NULL) == SQLITE_OK
                ? 0
                : -1;
        if (rc == 0) {
            sqlite3_bind_int64(st, 1, now);
            sqlite3_bind_text(st, 2, e->kind, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, e->key, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 4, e->channel ? e->channel : "", -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 5, e->profile_id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 6, e->origin, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 7, e->name, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 8, e->node, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 9, e->link && *e->link ? e->link : NULL, -1, SQLITE_STATIC);
            rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
        }
        sqlite3_finalize(st);
    }
    if (rc != 0)
        snprintf(err, errlen, "engagement: %s", sqlite3_errmsg(s->db));
    store_unlock(s);
    return rc != 0 ? -1 : found;
}

int dispatch_engagement_counts(store *s, const char *origin, const char *name, const char *node,
                               const char *key_prefix, dispatch_engagement_count *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = NULL;
    /* read-only: a store with no such table has no hits */
    if (sqlite3_prepare_v2(s->db,
                           "SELECT count(CASE WHEN kind = 'open' THEN 1 END),"
                           " count(DISTINCT CASE WHEN kind = 'open' THEN key END),"
                           " count(CASE WHEN kind = 'click' THEN 1 END),"
                           " count(DISTINCT CASE WHEN kind = 'click' THEN key END)"
                           " FROM engagement WHERE origin = ?1 AND name = ?2"
                           " AND (?3 IS NULL OR node = ?3)"
                           " AND (?4 IS NULL OR substr(key, 1, length(?4)) = ?4)",
                           -1, &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return 0;
    }
    sqlite3_bind_text(st, 1, origin, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, node, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, key_prefix && *key_prefix ? key_prefix : NULL, -1, SQLITE_STATIC);
    int rc = -1;
    if (sqlite3_step(st) == SQLITE_ROW) {
        out->opens = (uint64_t)sqlite3_column_int64(st, 0);
        out->opened = (uint64_t)sqlite3_column_int64(st, 1);
        out->clicks = (uint64_t)sqlite3_column_int64(st, 2);
        out->clicked = (uint64_t)sqlite3_column_int64(st, 3);
        rc = 0;
    }
    sqlite3_finalize(st);
    return rc;
}
