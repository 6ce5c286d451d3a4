#include "journey/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "delivery/dispatch.h"
#include "scope/cond.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/timefmt.h"
#include "base/zone.h"
#include "lang/expr.h"

static const char *const ddl =
    "CREATE TABLE IF NOT EXISTS journey_meta (key TEXT PRIMARY KEY, value INTEGER);"
    "CREATE TABLE IF NOT EXISTS journey_instances ("
    " id INTEGER PRIMARY KEY, journey TEXT NOT NULL, profile TEXT NOT NULL,"
    " state TEXT NOT NULL, node TEXT, wait TEXT, due INTEGER,"
    " entered INTEGER NOT NULL, updated INTEGER NOT NULL, path TEXT NOT NULL,"
    " event TEXT NOT NULL, results TEXT, reason TEXT);"
    "CREATE TABLE IF NOT EXISTS journey_sends ("
    " key TEXT PRIMARY KEY, instance INTEGER NOT NULL, journey TEXT NOT NULL,"
    " profile TEXT NOT NULL, node TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL,"
    " status TEXT NOT NULL, at INTEGER NOT NULL, step INTEGER NOT NULL, response TEXT)"
    " WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS journey_sends_profile ON journey_sends(profile);"
    "CREATE INDEX IF NOT EXISTS journey_sends_pending ON journey_sends(status)"
    " WHERE status = 'pending'";

/* versions: each journey file's text as it was when it became a version;
 * an instance runs on the version it entered */
static const char *const ddl_versions =
    "ALTER TABLE journey_instances ADD COLUMN version INTEGER NOT NULL DEFAULT 1;"
    "CREATE TABLE IF NOT EXISTS journey_versions (journey TEXT NOT NULL, version INTEGER NOT"
    " NULL, hash TEXT NOT NULL, file TEXT NOT NULL, text TEXT NOT NULL, at INTEGER NOT NULL,"
    " PRIMARY KEY (journey, version))";

/* pause, resume, close (journey_control) and the events a paused journey
 * holds (journey_held) */
static const char *const ddl_control =
    "CREATE TABLE IF NOT EXISTS journey_control (journey TEXT PRIMARY KEY, state TEXT NOT NULL,"
    " at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS journey_held (seq INTEGER PRIMARY KEY, journey TEXT NOT NULL,"
    " event TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS journey_held_journey ON journey_held(journey, seq)";

/* A send's message has one record of its outcome: the delivery log's row
 * with the same key. journey_sends keeps the step's (queued, skipped:
 * channel disabled, capped, pending...) and readers join the two, as the
 * view journey_send_outcomes does for whoever reads the store. Version 2
 * kept a copy in journey_sends with a trigger on the log: one more row
 * write for every message (bench_journey: about 18,000 instructions), under
 * the store's one write lock the engine's batches hold too; version 3
 * drops it. */
#define FINAL_STATUS                                                                               \
    "(d.status = 'sent' OR d.status = 'failed' OR d.status = 'uncertain' OR"                       \
    " d.status = 'bounced' OR d.status = 'complained' OR d.status = 'capped')"
#define SEND_STATUS_OF                                                                             \
    "CASE WHEN d.status = 'failed' AND d.reason IS NOT NULL THEN 'failed: ' || d.reason"           \
    " ELSE d.status END"
static const char *const ddl_outcome =
    "DROP TRIGGER IF EXISTS journey_sends_outcome;"
    "DROP VIEW IF EXISTS journey_send_outcomes;"
    "CREATE VIEW journey_send_outcomes AS SELECT s.key, s.instance, s.journey, s.profile,"
    " s.node, s.kind, s.target, coalesce(" SEND_STATUS_OF
    ", s.status) AS status, s.at, s.step, s.response"
    " FROM journey_sends s LEFT JOIN deliveries d ON d.key = s.key";

/* the latest instance of each journey for a profile, from the index */
static const char *const ddl_latest = "CREATE INDEX IF NOT EXISTS journey_instances_latest"
                                      " ON journey_instances(profile, journey, id);"
                                      "DROP INDEX IF EXISTS journey_instances_profile";

enum {
    S_META_GET,
    S_META_SET,
    S_BY_PROFILE,
    S_BY_ID,
    S_UPSERT,
    S_SEND_INS,
    S_SEND_STATUS,
    S_SEND_MARK,
    S_SEND_GET,
    S_SEND_RESPONSE,
    S_CTL_ALL,
    S_HOLD,
    S_NSTMT
};

static const char *const sql[S_NSTMT] = {
    [S_META_GET] = "SELECT value FROM journey_meta WHERE key = ?",
    [S_META_SET] = "INSERT OR REPLACE INTO journey_meta(key, value) VALUES (?, ?)",
    /* the latest instance of one journey, from the index: a profile's
     * history (reentry "always", over years) must not slow every event
     * down, and a seek needs no temporary table */
    [S_BY_PROFILE] = "SELECT id, journey, state, node, wait, due, entered, path, event,"
                     " results, reason, version FROM journey_instances"
                     " WHERE profile = ?1 AND journey = ?2"
                     " ORDER BY id DESC LIMIT 1",
    [S_BY_ID] = "SELECT id, journey, state, node, wait, due, entered, path, event, results,"
                " reason, profile, version FROM journey_instances WHERE id = ?",
    /* an update in place (REPLACE would delete and re-insert the row and
     * its index entries) */
    [S_UPSERT] = "INSERT INTO journey_instances(id, journey, profile, state, node,"
                 " wait, due, entered, updated, path, event, results, reason, version)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
                 " state = excluded.state, node = excluded.node, wait = excluded.wait,"
                 " due = excluded.due, updated = excluded.updated, path = excluded.path,"
                 " event = excluded.event, results = excluded.results, reason = excluded.reason",
    [S_SEND_INS] = "INSERT OR IGNORE INTO journey_sends(key, instance, journey, profile, node,"
                   " kind, target, status, at, step) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    [S_SEND_STATUS] = "UPDATE journey_sends SET status = ? WHERE key = ?",
    /* a handed send's status, unless its message's is final already (it
     * was in the log when handed again) */
    [S_SEND_MARK] = "UPDATE journey_sends SET status = coalesce((SELECT " SEND_STATUS_OF
                    " FROM deliveries d WHERE d.key = ?2 AND " FINAL_STATUS "), ?1)"
                    " WHERE key = ?2 AND status = 'pending'",
    [S_SEND_GET] = "SELECT instance, node, status FROM journey_sends WHERE key = ?",
    [S_SEND_RESPONSE] = "UPDATE journey_sends SET status = ?, response = ? WHERE key = ?",
    [S_CTL_ALL] = "SELECT journey, state FROM journey_control",
    [S_HOLD] = "INSERT INTO journey_held(journey, event) VALUES (?, ?)",
};

/* One instance while it is being worked on. */
typedef struct jinst {
    int64_t id;
    journey *j;
    char *profile;
    const char *state; /* static strings */
    int node;          /* index in j->nodes, -1 none */
    const char *wait;  /* "timer", "event", "action" or NULL */
    int64_t due;       /* ms, or -1 */
    int64_t entered;
    buf path;
    size_t steps; /* nodes in path */
    json_t *event;
    char *event_text; /* event as stored, while it is unchanged (NULL: dump it) */
    json_t *results;
    char *reason;
    char *stored_node; /* node id as stored, when the journey no longer has it */
    int wall_passed;   /* a send's local_time came: send now (not saved) */
} jinst;

static void inst_free(jinst *in)
{
    free(in->profile);
    buf_free(&in->path);
    json_decref(in->event);
    free(in->event_text);
    json_decref(in->results);
    free(in->reason);
    free(in->stored_node);
    memset(in, 0, sizeof *in);
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

static int sqlfail(jengine *e, char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "state store: %s: %s", what, sqlite3_errmsg(e->st->db));
    return -1;
}

static journey *find_journey(jengine *e, const char *name)
{
    for (size_t i = 0; i < e->njs; i++)
        if (!strcmp(e->js[i]->name, name))
            return e->js[i];
    return NULL;
}

static int64_t max_id(jengine *e)
{
    sqlite3_stmt *st;
    int64_t id = 0;
    if (sqlite3_prepare_v2(e->st->db, "SELECT max(id) FROM journey_instances", -1, &st, NULL) ==
        SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            id = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    return id;
}

static int rebuild_timers(jengine *e, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(e->st->db,
                           "SELECT id, due FROM journey_instances WHERE state = 'active' AND"
                           " due IS NOT NULL",
                           -1, &st, NULL) != SQLITE_OK)
        return sqlfail(e, err, errlen, "timers");
    jtimers_free(&e->timers);
    jtimers_init(&e->timers);
    while (sqlite3_step(st) == SQLITE_ROW)
        jtimers_set(&e->timers, sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 0));
    sqlite3_finalize(st);
    return 0;
}

/* Each journey's version: the latest stored one when its text (and the
 * files it reads) hash the same, else a new version, stored with its
 * text. */
static int assign_versions(jengine *e, char *err, size_t errlen)
{
    sqlite3_stmt *get = NULL, *put = NULL;
    if (sqlite3_prepare_v2(e->st->db,
                           "SELECT version, hash FROM journey_versions WHERE journey = ?"
                           " ORDER BY version DESC LIMIT 1",
                           -1, &get, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(e->st->db,
                           "INSERT INTO journey_versions(journey, version, hash, file, text, at)"
                           " VALUES (?, ?, ?, ?, ?, ?)",
                           -1, &put, NULL) != SQLITE_OK) {
        sqlite3_finalize(get);
        return sqlfail(e, err, errlen, "versions");
    }
    int rc = 0;
    store_lock(e->st);
    for (size_t i = 0; i < e->njs && !rc; i++) {
        journey *j = e->js[i];
        char hash[17];
        snprintf(hash, sizeof hash, "%016llx", (unsigned long long)j->hash);
        sqlite3_reset(get);
        sqlite3_bind_text(get, 1, j->name, -1, SQLITE_STATIC);
        int latest = 0, same = 0;
        if (sqlite3_step(get) == SQLITE_ROW) {
            latest = sqlite3_column_int(get, 0);
            same = !strcmp(col_text(get, 1), hash);
        }
        sqlite3_reset(get);
        if (same) {
            j->version = latest;
            continue;
        }
        j->version = latest + 1;
        sqlite3_reset(put);
        sqlite3_bind_text(put, 1, j->name, -1, SQLITE_STATIC);
        sqlite3_bind_int(put, 2, j->version);
        sqlite3_bind_text(put, 3, hash, -1, SQLITE_STATIC);
        sqlite3_bind_text(put, 4, j->file ? j->file : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(put, 5, j->text ? j->text : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(put, 6, (int64_t)time(NULL) * 1000);
        if (sqlite3_step(put) != SQLITE_DONE)
            rc = sqlfail(e, err, errlen, "new version");
        else if (latest)
            log_msg(BATON_LOG_INFO, "journey",
                    "%s: version %d (the file changed); instances of "
                    "earlier versions finish on theirs",
                    j->name, j->version);
    }
    store_unlock(e->st);
    sqlite3_finalize(get);
    sqlite3_finalize(put);
    return rc;
}

/* The journey an instance of `version` runs on: cur when it is that
 * version, else the earlier version, parsed once from its stored text
 * (cur when it cannot be had). */
static journey *version_of(jengine *e, journey *cur, int version)
{
    if (!cur || cur->version == version || version <= 0)
        return cur;
    for (size_t i = 0; i < e->nold; i++)
        if (e->old[i]->version == version && !strcmp(e->old[i]->name, cur->name))
            return e->old[i];
    if (!e->ops.load_version)
        return cur;
    sqlite3_stmt *q;
    journey *j = NULL;
    if (sqlite3_prepare_v2(e->st->db,
                           "SELECT file, text FROM journey_versions WHERE journey = ? AND"
                           " version = ?",
                           -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, cur->name, -1, SQLITE_STATIC);
        sqlite3_bind_int(q, 2, version);
        if (sqlite3_step(q) == SQLITE_ROW)
            j = e->ops.load_version(e->ops.ud, col_text(q, 0), col_text(q, 1));
        sqlite3_finalize(q);
    }
    if (!j || strcmp(j->name, cur->name)) {
        log_msg(BATON_LOG_WARN, "journey",
                "%s: version %d cannot be loaded; its instances go on in version %d", cur->name,
                version, cur->version);
        journey_free(j);
        return cur;
    }
    j->version = version;
    e->old = xrealloc(e->old, (e->nold + 1) * sizeof *e->old);
    e->old[e->nold++] = j;
    return j;
}

const journey *jengine_instance_journey(jengine *e, int64_t inst)
{
    sqlite3_stmt *st = e->stmt[S_BY_ID];
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, inst);
    journey *j = NULL;
    if (sqlite3_step(st) == SQLITE_ROW)
        j = version_of(e, find_journey(e, col_text(st, 1)), sqlite3_column_int(st, 12));
    sqlite3_reset(st);
    return j;
}

int jengine_open(jengine *e, store *st, journey **js, size_t njs, const jengine_ops *ops, char *err,
                 size_t errlen)
{
    memset(e, 0, sizeof *e);
    e->st = st;
    e->js = js;
    e->njs = njs;
    if (ops)
        e->ops = *ops;
    jtimers_init(&e->timers);
    if (store_migrate(st, "journey", JOURNEY_DDL_VERSION, ddl, err, errlen) ||
        store_migrate(st, "journey_latest", 1, ddl_latest, err, errlen) ||
        store_migrate(st, "journey_control", 1, ddl_control, err, errlen) ||
        store_migrate(st, "journey_versions", 1, ddl_versions, err, errlen) ||
        dispatch_log_init(st, err, errlen) ||
        store_migrate(st, "journey_sends_outcome", 3, ddl_outcome, err, errlen))
        return -1;
    /* the pages of the profile index are touched at random: keep more of
     * them (bounded: 16 MiB) */
    sqlite3_exec(st->db, "PRAGMA cache_size = -16384", NULL, NULL, NULL);
    for (int i = 0; i < S_NSTMT; i++)
        if (sqlite3_prepare_v3(st->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &e->stmt[i], NULL) !=
            SQLITE_OK) {
            sqlfail(e, err, errlen, "prepare");
            jengine_close(e);
            return -1;
        }
    e->next_id = max_id(e) + 1;
    if (assign_versions(e, err, errlen) || rebuild_timers(e, err, errlen)) {
        jengine_close(e);
        return -1;
    }
    return 0;
}

void jengine_close(jengine *e)
{
    for (int i = 0; i < S_NSTMT; i++)
        sqlite3_finalize(e->stmt[i]);
    jtimers_free(&e->timers);
    free(e->ctl);
    free(e->jumped);
    for (size_t i = 0; i < e->nold; i++)
        journey_free(e->old[i]);
    free(e->old);
    memset(e, 0, sizeof *e);
}

void jengine_set_journeys(jengine *e, journey **js, size_t njs)
{
    e->js = js;
    e->njs = njs;
    free(e->ctl);
    e->ctl = NULL; /* read again, for these journeys */
    free(e->jumped);
    e->jumped = NULL;
    char err[256];
    if (assign_versions(e, err, sizeof err))
        log_msg(BATON_LOG_ERROR, "journey", "%s", err);
}

/* The engine's transaction is a savepoint in the store's group
 * transaction: the delivery log's writes (the messages the batch hands
 * on, on this thread, and the dispatchers' own) and the engine's commit
 * together, on the one connection. The group stays open until the
 * savepoint is released (group_held). */
int jengine_begin(jengine *e, char *err, size_t errlen)
{
    pthread_mutex_lock(&e->st->write_lock);
    store_group_join(e->st);
    /* without the group transaction a SAVEPOINT would open a transaction
     * of its own, which RELEASE commits alone */
    if (!e->st->group_open || store_txn(e->st, STORE_SAVEPOINT) != SQLITE_OK) {
        int rc = sqlfail(e, err, errlen, "begin");
        pthread_mutex_unlock(&e->st->write_lock);
        return rc;
    }
    e->st->group_held = 1;
    e->handed_on = 0;
    return 0;
}

int jengine_commit(jengine *e, char *err, size_t errlen)
{
    int rc = 0;
    if (store_txn(e->st, STORE_RELEASE) != SQLITE_OK) {
        if (e->handed_on)
            store_group_fail(e->st, sqlite3_errmsg(e->st->db));
        rc = sqlfail(e, err, errlen, "commit");
        store_txn(e->st, STORE_ROLLBACK_TO);
        store_txn(e->st, STORE_RELEASE);
        e->next_id = max_id(e) + 1;
        rebuild_timers(e, err, errlen);
    }
    e->st->group_held = 0;
    if (!rc)
        store_group_commit_locked(e->st); /* a failure there stops the process */
    pthread_mutex_unlock(&e->st->write_lock);
    return rc;
}

void jengine_rollback(jengine *e)
{
    char err[256];
    if (e->handed_on)
        store_group_fail(e->st, "a batch that had handed messages on failed");
    store_txn(e->st, STORE_ROLLBACK_TO);
    store_txn(e->st, STORE_RELEASE);
    e->st->group_held = 0;
    e->next_id = max_id(e) + 1;
    rebuild_timers(e, err, sizeof err);
    pthread_mutex_unlock(&e->st->write_lock);
}

/* ------------------------------------------------------------------ */
/* Instances in the store                                              */
/* ------------------------------------------------------------------ */

static const char *intern_state(const char *s)
{
    static const char *const states[] = {"active", "completed", "exited",
                                         "failed", "timed_out", NULL};
    for (int i = 0; states[i]; i++)
        if (!strcmp(states[i], s))
            return states[i];
    return "failed";
}

static const char *intern_wait(const char *s)
{
    if (!s)
        return NULL;
    if (!strcmp(s, "timer"))
        return "timer";
    if (!strcmp(s, "event"))
        return "event";
    if (!strcmp(s, "action"))
        return "action";
    return NULL;
}

static journey *version_of(jengine *e, journey *cur, int version);

/* Columns: id, journey, state, node, wait, due, entered, path, event,
 * results, reason, then the version at vcol. */
static void inst_from_row(jengine *e, sqlite3_stmt *st, journey *j, const char *profile, jinst *in,
                          int vcol)
{
    memset(in, 0, sizeof *in);
    j = version_of(e, j, sqlite3_column_int(st, vcol));
    in->id = sqlite3_column_int64(st, 0);
    in->j = j;
    in->profile = xstrdup(profile);
    in->state = intern_state(col_text(st, 2));
    const char *node = col_text(st, 3);
    in->node = node && j ? journey_node(j, node) : -1;
    if (node && in->node < 0)
        in->stored_node = xstrdup(node);
    in->wait = intern_wait(col_text(st, 4));
    in->due = sqlite3_column_type(st, 5) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 5);
    in->entered = sqlite3_column_int64(st, 6);
    buf_init(&in->path);
    const char *path = col_text(st, 7);
    if (path && *path) {
        buf_adds(&in->path, path);
        in->steps = 1;
        for (const char *p = path; *p; p++)
            in->steps += *p == ' ';
    }
    const char *ev = col_text(st, 8);
    in->event = ev ? json_loads(ev, 0, NULL) : NULL;
    if (in->event) /* an instance's event never changes: saved again as read */
        in->event_text = xstrdup(ev);
    else
        in->event = json_object();
    const char *res = col_text(st, 9);
    in->results = res ? json_loads(res, 0, NULL) : NULL;
    const char *reason = col_text(st, 10);
    in->reason = reason ? xstrdup(reason) : NULL;
}

/* Not copied: every statement here is bound, stepped and reset within one
 * call, while the strings live, and is bound afresh before its next step. */
static int bind_text(sqlite3_stmt *st, int i, const char *s)
{
    return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

static int inst_save(jengine *e, jinst *in, int64_t now, char *err, size_t errlen)
{
    sqlite3_stmt *st = e->stmt[S_UPSERT];
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, in->id);
    bind_text(st, 2, in->j->name);
    bind_text(st, 3, in->profile);
    bind_text(st, 4, in->state);
    bind_text(st, 5, in->node >= 0 ? in->j->nodes[in->node].id : in->stored_node);
    bind_text(st, 6, in->wait);
    if (in->due >= 0)
        sqlite3_bind_int64(st, 7, in->due);
    else
        sqlite3_bind_null(st, 7);
    sqlite3_bind_int64(st, 8, in->entered);
    sqlite3_bind_int64(st, 9, now);
    bind_text(st, 10, in->path.data ? in->path.data : "");
    if (!in->event_text)
        in->event_text = json_dumps(in->event, JSON_COMPACT);
    char *res = in->results ? json_dumps(in->results, JSON_COMPACT) : NULL;
    bind_text(st, 11, in->event_text);
    if (res)
        sqlite3_bind_text(st, 12, res, -1, free);
    else
        sqlite3_bind_null(st, 12);
    bind_text(st, 13, in->reason);
    sqlite3_bind_int(st, 14, in->j->version);
    /* the journey's timeout bounds every wait */
    if (in->state[0] == 'a' && in->wait && in->j->timeout_ms > 0) {
        int64_t deadline = in->entered + in->j->timeout_ms;
        if (in->due < 0 || in->due > deadline) {
            in->due = deadline;
            sqlite3_bind_int64(st, 7, in->due);
        }
    }
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return sqlfail(e, err, errlen, "save instance");
    if (in->due >= 0 && in->state[0] == 'a')
        jtimers_set(&e->timers, in->due, in->id);
    else
        jtimers_remove(&e->timers, in->id); /* moved on before its timer */
    return 0;
}

static int send_row(jengine *e, jinst *in, const jnode *n, const char *key, const char *kind,
                    const char *target, const char *status, int64_t now, char *err, size_t errlen)
{
    sqlite3_stmt *st = e->stmt[S_SEND_INS];
    sqlite3_reset(st);
    bind_text(st, 1, key);
    sqlite3_bind_int64(st, 2, in->id);
    bind_text(st, 3, in->j->name);
    bind_text(st, 4, in->profile);
    bind_text(st, 5, n->id);
    bind_text(st, 6, kind);
    bind_text(st, 7, target);
    bind_text(st, 8, status);
    sqlite3_bind_int64(st, 9, now);
    sqlite3_bind_int64(st, 10, (int64_t)in->steps);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : sqlfail(e, err, errlen, "record send");
}

/* ------------------------------------------------------------------ */
/* Stepping                                                            */
/* ------------------------------------------------------------------ */

static uint64_t fnv1a(const char *s, uint64_t h)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

/* Stable per profile: the same profile takes the same branch of a split
 * every time, on every machine. */
static const jbranch *split_pick(const journey *j, const jnode *n, const char *profile)
{
    uint64_t h = 1469598103934665603ULL;
    h = fnv1a(j->name, h);
    h = fnv1a("\x1f", h);
    h = fnv1a(n->id, h);
    h = fnv1a("\x1f", h);
    h = fnv1a(profile, h);
    h ^= h >> 33; /* mix: FNV's low bits are weak */
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    double point = (double)(h % 1000000) / 10000.0; /* 0..100 */
    double acc = 0;
    for (size_t i = 0; i < n->nbr; i++) {
        acc += n->br[i].percent;
        if (point < acc)
            return &n->br[i];
    }
    return n->nbr ? &n->br[n->nbr - 1] : NULL;
}

static void scope_for(jengine *e, jinst *in, json_t *event, int64_t now, jscope *s)
{
    memset(s, 0, sizeof *s);
    s->now_ms = now;
    s->profile_id = in->profile;
    s->event = event ? event : in->event;
    s->results = in->results;
    s->profile = e->ops.profile;
    s->lookup = e->ops.lookup;
    s->rows = e->ops.rows;
    s->batch = e->ops.batch;
    s->aggs = e->ops.aggs;
    s->ud = e->ops.ud;
}

/* The zone of the instance's profile: its profiles_timezone field when
 * that names a zone, else caps.quiet_hours.timezone, else UTC. */
static const zone *profile_zone(const jinst *in, jscope *sc)
{
    const journey *j = in->j;
    if (j->tz_field) {
        if (!sc->profile_loaded) { /* as the conditions read it: once per step */
            sc->profile_loaded = 1;
            sc->profile_row = sc->profile ? sc->profile(sc->ud, sc->profile_id) : NULL;
        }
        const char *name = json_string_value(json_object_get(sc->profile_row, j->tz_field));
        const zone *z = name ? zone_find(name) : NULL;
        if (z)
            return z;
    }
    const zone *z = j->tz_default ? zone_find(j->tz_default) : NULL;
    return z ? z : zone_find("UTC");
}

/* The next time (ms) the wall clock reads n's time of day: in the
 * profile's zone, or UTC. From is excluded, except that a send whose
 * minute has come goes at once (from - 59 s). */
static int64_t next_wall_ms(const jinst *in, const jnode *n, jscope *sc, int64_t now, int slack)
{
    const zone *z = n->wall_local ? profile_zone(in, sc) : zone_find("UTC");
    int64_t from = now / 1000 - (slack ? 60 : 0);
    return zone_next_wall(z, from, n->wall_min) * 1000;
}

static void set_failed(jengine *e, jinst *in, const char *prefix, const char *what)
{
    in->state = "failed";
    in->wait = NULL;
    in->due = -1;
    free(in->reason);
    in->reason = xasprintf("%s%s%s", prefix ? prefix : "", prefix ? ": " : "", what);
    e->stats.failed++;
    log_msg(BATON_LOG_WARN, "journey", "%s: profile %s failed at node '%s': %s", in->j->name,
            in->profile, in->node >= 0 ? in->j->nodes[in->node].id : "?", in->reason);
}

static void path_add(jinst *in, const char *id)
{
    if (in->path.len)
        buf_addc(&in->path, ' ');
    buf_adds(&in->path, id);
    in->steps++;
}

/* Move the instance into node `at` and on, until it waits or ends; then
 * save it. */
static int run_steps(jengine *e, jinst *in, int at, int64_t now, jscope *sc, char *err,
                     size_t errlen);

static int run_from(jengine *e, jinst *in, int at, int64_t now, char *err, size_t errlen)
{
    jscope sc;
    scope_for(e, in, NULL, now, &sc);
    int rc = run_steps(e, in, at, now, &sc, err, errlen);
    jscope_release(&sc);
    return rc;
}

static json_t *value_to_json(const baton_value *v)
{
    char text[32];
    switch (v->type) {
    case BATON_T_NULL: return json_null();
    case BATON_T_BOOL: return json_boolean(v->v.b);
    case BATON_T_INT: return json_integer(v->v.i);
    case BATON_T_FLOAT: return json_real(v->v.f);
    case BATON_T_STRING: return json_stringn(v->v.s.ptr, v->v.s.len);
    case BATON_T_DATE: date_format(v->v.date, text); return json_string(text);
    case BATON_T_TIMESTAMP: timestamp_format(v->v.ts, text); return json_string(text);
    case BATON_T_DURATION: return json_integer(v->v.dur);
    }
    return json_null();
}

/* An update_profile node's values, evaluated once, when the node runs: a
 * replay writes the same values (never `points + 10` twice). NULL after
 * set_failed. */
static json_t *update_values(jengine *e, jinst *in, const jnode *n, jscope *sc)
{
    json_t *set = json_object();
    expr_arena arena;
    expr_arena_init(&arena);
    for (size_t k = 0; k < n->nsets; k++) {
        baton_value v;
        char why[512];
        if (jcond_eval(&n->sets[k].value, sc, &arena, &v, why, sizeof why)) {
            set_failed(e, in, "update_profile", why);
            json_decref(set);
            set = NULL;
            break;
        }
        json_object_set_new(set, n->sets[k].field, value_to_json(&v));
    }
    expr_arena_free(&arena);
    return set;
}

static int jump(jengine *e, const jinst *from, const char *name, int64_t now, char *err,
                size_t errlen);

/* The profile is read once per run (sc caches it), when a node needs it. */
/* A send's, an action's or an update's idempotency key,
 * "j:<journey>:<instance>:<node>:<step>", cut at keylen - 1 bytes as
 * snprintf would cut it (written directly: a snprintf per step). */
static void step_key(char *key, size_t keylen, const jinst *in, const jnode *n)
{
    char num[2][24];
    int64_t id = in->id;
    size_t v[2] = {(size_t)(id < 0 ? -(uint64_t)id : (uint64_t)id), in->steps}, nl[2];
    for (int k = 0; k < 2; k++) {
        char *p = num[k] + sizeof num[k];
        uint64_t x = v[k];
        do
            *--p = (char)('0' + x % 10);
        while (x /= 10);
        if (k == 0 && id < 0)
            *--p = '-';
        nl[k] = (size_t)(num[k] + sizeof num[k] - p);
        memmove(num[k], p, nl[k]);
    }
    const char *part[] = {"j:", in->j->name, ":", num[0], ":", n->id, ":", num[1]};
    size_t plen[] = {2, strlen(in->j->name), 1, nl[0], 1, strlen(n->id), 1, nl[1]};
    size_t at = 0;
    for (size_t i = 0; i < sizeof part / sizeof part[0] && at + 1 < keylen; i++) {
        size_t c = plen[i] < keylen - 1 - at ? plen[i] : keylen - 1 - at;
        memcpy(key + at, part[i], c);
        at += c;
    }
    key[at] = '\0';
}

static int run_steps(jengine *e, jinst *in, int at, int64_t now, jscope *sc, char *err,
                     size_t errlen)
{
    const char *jump_to = NULL;
    in->wait = NULL;
    in->due = -1;
    for (int guard = 0;; guard++) {
        if (at < 0) { /* a condition with no otherwise and no true branch */
            in->state = "completed";
            e->stats.completed++;
            break;
        }
        if (guard > 1000) {
            set_failed(e, in, NULL, "more than 1000 nodes in a row without waiting");
            break;
        }
        const jnode *n = &in->j->nodes[at];
        int resumed = in->wall_passed && in->node == at; /* a send whose local_time came */
        in->wall_passed = 0;
        in->node = at;
        if (!resumed) {
            path_add(in, n->id);
            if (e->ops.step)
                e->ops.step(e->ops.ud, in->j, in->profile, n->id, now);
        }
        sc->results = in->results;
        char why[512];
        if (n->type == JN_CONDITION) {
            int next = n->otherwise, failed = 0;
            for (size_t b = 0; b < n->nbr; b++) {
                int t;
                if (jcond_truth(&n->br[b].when, sc, &t, why, sizeof why)) {
                    set_failed(e, in, "condition", why);
                    failed = 1;
                    break;
                }
                if (t) {
                    next = n->br[b].next;
                    break;
                }
            }
            if (failed)
                break;
            at = next;
            if (at < 0) {
                in->state = "completed";
                e->stats.completed++;
                break;
            }
        } else if (n->type == JN_SPLIT) {
            const jbranch *b = split_pick(in->j, n, in->profile);
            at = b ? b->next : -1;
        } else if (n->type == JN_WAIT) {
            int64_t due;
            if (n->wall_min >= 0) {
                due = next_wall_ms(in, n, sc, now, 0);
            } else if (n->duration_ms >= 0) {
                due = now + n->duration_ms;
            } else if (jcond_timestamp(&n->until, sc, &due, why, sizeof why)) {
                set_failed(e, in, "until", why);
                break;
            }
            if (due <= now) {
                at = n->next;
                continue;
            }
            in->wait = "timer";
            in->due = due;
            break;
        } else if (n->type == JN_WAIT_EVENT) {
            in->wait = "event";
            in->due = n->timeout_ms >= 0 ? now + n->timeout_ms : -1;
            break;
        } else if (n->type == JN_SEND || n->type == JN_ACTION) {
            char key[256];
            step_key(key, sizeof key, in, n);
            jsend_req r = {key, in->id, in->j, n, in->profile, in->event, in->results, NULL, now};
            if (n->type == JN_SEND && n->wall_min >= 0 && !resumed) {
                int64_t due = next_wall_ms(in, n, sc, now, 1);
                if (due > now) { /* held at the node until then */
                    in->wait = "timer";
                    in->due = due;
                    break;
                }
            }
            if (n->type == JN_SEND) {
                int on = !e->ops.channel_enabled || e->ops.channel_enabled(e->ops.ud, n->channel);
                char status[300] = "skipped: channel disabled";
                if (on) {
                    e->stats.sends++;
                    if (!e->ops.send || e->ops.send(e->ops.ud, &r, status, sizeof status))
                        snprintf(status, sizeof status, "pending");
                } else {
                    e->stats.skipped++;
                }
                if (send_row(e, in, n, key, "send", n->channel, status, now, err, errlen))
                    return -1;
                at = n->next;
            } else {
                e->stats.actions++;
                if (send_row(e, in, n, key, "action", n->action,
                             e->ops.action ? "pending" : "recorded", now, err, errlen))
                    return -1;
                if (!e->ops.action) {
                    json_t *res = e->ops.action_result ? e->ops.action_result(e->ops.ud, &r) : NULL;
                    if (!in->results)
                        in->results = json_object();
                    json_object_set_new(in->results, n->id,
                                        json_is_object(res) ? res : json_object());
                    if (res && !json_is_object(res))
                        json_decref(res);
                    sc->results = in->results;
                    at = n->next;
                    continue;
                }
                e->ops.action(e->ops.ud, &r);
                in->wait = "action";
                break;
            }
        } else if (n->type == JN_UPDATE_PROFILE) {
            char key[256];
            step_key(key, sizeof key, in, n);
            json_t *set = update_values(e, in, n, sc);
            if (!set)
                break;
            e->stats.updates++;
            const char *status = e->ops.action ? "pending" : "recorded";
            char *txt = json_dumps(set, JSON_COMPACT);
            int rc = send_row(e, in, n, key, "update", "profiles", status, now, err, errlen);
            if (!rc) {
                sqlite3_stmt *st = e->stmt[S_SEND_RESPONSE];
                sqlite3_reset(st);
                bind_text(st, 1, status);
                bind_text(st, 2, txt);
                bind_text(st, 3, key);
                rc = sqlite3_step(st) == SQLITE_DONE ? 0 : sqlfail(e, err, errlen, "record update");
                sqlite3_reset(st);
            }
            free(txt);
            if (rc) {
                json_decref(set);
                return -1;
            }
            if (!e->ops.action) {
                json_decref(set);
                at = n->next;
                continue;
            }
            jsend_req r = {key, in->id, in->j, n, in->profile, in->event, in->results, set, now};
            e->ops.action(e->ops.ud, &r);
            json_decref(set);
            in->wait = "action";
            break;
        } else if (n->type == JN_JUMP) {
            in->state = "completed";
            free(in->reason);
            in->reason = xasprintf("jumped to journey '%s'", n->jump);
            e->stats.completed++;
            jump_to = n->jump;
            break;
        } else { /* JN_END */
            in->state = "completed";
            e->stats.completed++;
            break;
        }
    }
    int rc = inst_save(e, in, now, err, errlen);
    if (!rc && jump_to)
        rc = jump(e, in, jump_to, now, err, errlen);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Events                                                              */
/* ------------------------------------------------------------------ */

/* What a wait_event node received, as <node id>.*: the event's data
 * fields, and its id, type, time and profile over any of the same name. */
static json_t *reaction_json(json_t *evj)
{
    json_t *data = json_object_get(evj, "data");
    json_t *o = json_is_object(data) ? json_deep_copy(data) : json_object();
    const char *env[] = {"id", "type", "time", "profile", NULL};
    for (const char *const *k = env; *k; k++)
        json_object_set(o, *k, json_object_get(evj, *k));
    return o;
}

static int truth_or_log(jengine *e, const jcond *c, jinst *in, json_t *event, int64_t now,
                        const char *what)
{
    if (!c->text)
        return 1;
    jscope sc;
    scope_for(e, in, event, now, &sc);
    char why[512];
    int t = 0;
    int rc = jcond_truth(c, &sc, &t, why, sizeof why);
    jscope_release(&sc);
    if (rc) {
        log_msg(BATON_LOG_WARN, "journey", "%s: %s for profile %s: %s (taken as false)",
                in->j->name, what, in->profile, why);
        return 0;
    }
    return t;
}

/* The instance an event finds for one journey. The reaction a wait_event
 * node is waiting for comes first (docs/journeys.md: a cart journey that exits
 * on order_placed still completes through its wait for order_placed);
 * otherwise an exit rule ends the instance wherever it is. */
static int route_active(jengine *e, jinst *in, const jevent *ev, json_t *evj, int64_t now,
                        char *err, size_t errlen)
{
    if (in->node >= 0 && in->wait && !strcmp(in->wait, "event")) {
        const jnode *n = &in->j->nodes[in->node];
        if (n->type == JN_WAIT_EVENT && !strcmp(n->event, ev->type)) {
            /* the event is <node id>.* in the filter and every later
             * node; event.* stays the entry event */
            if (!in->results)
                in->results = json_object();
            json_t *before = json_incref(json_object_get(in->results, n->id));
            json_object_set_new(in->results, n->id, reaction_json(evj));
            if (truth_or_log(e, &n->filter, in, NULL, now, "wait_event filter")) {
                json_decref(before);
                return run_from(e, in, n->on_event, now, err, errlen);
            }
            if (before) /* a wait reached again on a loop: the earlier one stays */
                json_object_set_new(in->results, n->id, before);
            else
                json_object_del(in->results, n->id);
        }
    }
    for (size_t x = 0; x < in->j->nexits; x++) {
        const jexit *xr = &in->j->exits[x];
        if (strcmp(xr->event, ev->type) ||
            !truth_or_log(e, &xr->filter, in, evj, now, "exit filter"))
            continue;
        in->state = "exited";
        in->wait = NULL;
        in->due = -1;
        free(in->reason);
        in->reason = xasprintf("exit event '%s' (%s)", ev->type, ev->id);
        e->stats.exited++;
        return inst_save(e, in, now, err, errlen);
    }
    return 0;
}

static int journey_index(const jengine *e, const journey *j)
{
    for (size_t i = 0; i < e->njs; i++)
        if (e->js[i] == j)
            return (int)i;
    return -1;
}

static char ctl_of(const jengine *e, const journey *j)
{
    int i = e->ctl ? journey_index(e, j) : -1;
    for (size_t k = 0; e->ctl && i < 0 && k < e->njs; k++) /* an earlier version */
        if (!strcmp(e->js[k]->name, j->name))
            i = (int)k;
    return i >= 0 ? e->ctl[i] : 'r';
}

/* New entries: not closed, within start_at .. end_at. */
static int entry_open(const jengine *e, const journey *j, int64_t now)
{
    return ctl_of(e, j) == 'r' && now >= j->start_at_ms && now < j->end_at_ms;
}

static int may_enter(const journey *j, const jinst *last, int64_t now)
{
    if (!last)
        return 1;
    if (!strcmp(last->state, "active"))
        return 0; /* one instance at a time per profile and journey */
    switch (j->reentry) {
    case JR_NEVER: return 0;
    case JR_ALWAYS: return 1;
    case JR_AFTER: return now - last->entered >= j->reentry_after_ms;
    }
    return 0;
}

/* evtext: evj as text when the caller has it (NULL: dumped at the save). */
static int enter(jengine *e, journey *j, const char *profile, json_t *evj, const char *evtext,
                 int64_t now, char *err, size_t errlen)
{
    jinst in = {0};
    in.id = e->next_id;
    in.j = j;
    if (!j->missing_profile_enter && e->ops.profile_exists &&
        e->ops.profile_exists(e->ops.ud, profile) == 0) {
        e->stats.missing_profiles++;
        if (e->ops.not_entered)
            e->ops.not_entered(e->ops.ud, j, profile, evj, "profile not found");
        else
            log_msg(BATON_LOG_WARN, "journey",
                    "%s: profile %s not found in the profiles source; "
                    "not entered",
                    j->name, profile);
        return 0;
    }
    in.profile = xstrdup(profile);
    in.state = "active";
    in.node = -1;
    in.due = -1;
    in.entered = now;
    buf_init(&in.path);
    in.event = json_incref(evj);
    in.event_text = evtext ? xstrdup(evtext) : NULL;
    if (!truth_or_log(e, &j->entry_filter, &in, evj, now, "entry filter")) {
        inst_free(&in);
        return 0;
    }
    e->next_id++;
    e->stats.entered++;
    int rc = run_from(e, &in, j->start, now, err, errlen);
    inst_free(&in);
    return rc;
}

/* The latest instance of j for a profile: *have 0 when none. */
static int latest(jengine *e, const char *profile, journey *j, jinst *last, int *have, char *err,
                  size_t errlen)
{
    sqlite3_stmt *st = e->stmt[S_BY_PROFILE];
    sqlite3_reset(st);
    bind_text(st, 1, profile);
    bind_text(st, 2, j->name);
    int rc = sqlite3_step(st);
    *have = rc == SQLITE_ROW;
    if (*have)
        inst_from_row(e, st, j, profile, last, 11);
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sqlfail(e, err, errlen, "instances");
}

/* A jump node: the profile enters the other journey (its reentry rule,
 * start_at/end_at, pause and close apply), carrying the entry event. */
static int jump(jengine *e, const jinst *from, const char *name, int64_t now, char *err,
                size_t errlen)
{
    journey *to = find_journey(e, name);
    if (!to || e->jump_depth >= 8) {
        log_msg(BATON_LOG_WARN, "journey", "%s: profile %s: jump to '%s': %s", from->j->name,
                from->profile, name,
                to ? "more than 8 jumps in a row (a loop of jumps?)" : "no such journey");
        return 0;
    }
    int ti = journey_index(e, to);
    if (e->jumped && ti >= 0)
        e->jumped[ti] = 1;
    jinst last;
    int have;
    if (latest(e, from->profile, to, &last, &have, err, errlen))
        return -1;
    int ok = entry_open(e, to, now) && may_enter(to, have ? &last : NULL, now);
    if (have)
        inst_free(&last);
    if (!ok)
        return 0;
    e->stats.jumps++;
    e->jump_depth++;
    int rc = enter(e, to, from->profile, from->event, from->event_text, now, err, errlen);
    e->jump_depth--;
    return rc;
}

static int hold(jengine *e, const journey *j, json_t *evj, char *err, size_t errlen)
{
    sqlite3_stmt *st = e->stmt[S_HOLD];
    char *txt = json_dumps(evj, JSON_COMPACT);
    sqlite3_reset(st);
    bind_text(st, 1, j->name);
    sqlite3_bind_text(st, 2, txt, -1, free);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    e->stats.held++;
    return rc == SQLITE_DONE ? 0 : sqlfail(e, err, errlen, "hold event");
}

/* Whether an event of this type can do anything in j: enter it, end an
 * instance by an exit rule, or answer a wait_event node. */
static int journey_hears(const journey *j, const char *type)
{
    if (!strcmp(j->entry_event, type))
        return 1;
    for (size_t x = 0; x < j->nexits; x++)
        if (!strcmp(j->exits[x].event, type))
            return 1;
    for (size_t n = 0; n < j->nnodes; n++)
        if (j->nodes[n].type == JN_WAIT_EVENT && !strcmp(j->nodes[n].event, type))
            return 1;
    return 0;
}

/* An "audience" event (journey/audience.c: id "aud:<journey>:..." or
 * "q:<journey>:...") is for its journey alone. */
static int audience_for(const jevent *ev, const journey *j)
{
    if (strcmp(ev->type, "audience"))
        return 1;
    const char *id = ev->id;
    size_t skip = !strncmp(id, "aud:", 4) ? 4 : !strncmp(id, "q:", 2) ? 2 : 0;
    size_t n = strlen(j->name);
    return skip && !strncmp(id + skip, j->name, n) && id[skip + n] == ':';
}

/* Route ev to every journey (only < 0) or to journey `only` (the events
 * a paused journey held, on resume). */
static int route_event(jengine *e, const jevent *ev, int only, int64_t now_ms, char *err,
                       size_t errlen)
{
    sqlite3_stmt *st = e->stmt[S_BY_PROFILE];
    int rc = SQLITE_DONE;
    e->stats.events++;

    /* The latest instance of each journey this event can move. */
    size_t nj = e->njs;
    /* on the stack for the usual few journeys: three allocations an event */
    jinst last_few[8];
    char have_few[8], hears_few[8];
    int few = nj <= 8;
    jinst *last = few ? last_few : xcalloc(nj + 1, sizeof *last);
    char *have = few ? have_few : xcalloc(nj + 1, 1), *hears = few ? hears_few : xcalloc(nj + 1, 1);
    if (few) {
        memset(last_few, 0, sizeof last_few);
        memset(have_few, 0, sizeof have_few);
        memset(hears_few, 0, sizeof hears_few);
    }
    if (!e->jumped)
        e->jumped = xcalloc(nj + 1, 1);
    memset(e->jumped, 0, nj);
    for (size_t i = 0; i < nj && rc == SQLITE_DONE; i++) {
        if ((only >= 0 && (int)i != only) || !audience_for(ev, e->js[i]) ||
            !(hears[i] = (char)journey_hears(e->js[i], ev->type)))
            continue;
        sqlite3_reset(st);
        bind_text(st, 1, ev->profile);
        bind_text(st, 2, e->js[i]->name);
        if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            inst_from_row(e, st, e->js[i], ev->profile, &last[i], 11);
            have[i] = 1;
            rc = SQLITE_DONE;
        }
    }
    sqlite3_reset(st);
    int out = 0;
    if (rc != SQLITE_DONE)
        out = sqlfail(e, err, errlen, "instances");
    json_t *evj = out ? NULL : jevent_json(ev);
    char *evtext = NULL; /* made for the first journey it enters */
    for (size_t i = 0; i < nj && !out; i++) {
        journey *j = e->js[i];
        if (!hears[i] || e->jumped[i]) /* a jump entered it: last[i] is stale */
            continue;
        if (e->ctl && e->ctl[i] == 'p')
            out = hold(e, j, evj, err, errlen);
        else if (have[i] && !strcmp(last[i].state, "active"))
            out = route_active(e, &last[i], ev, evj, now_ms, err, errlen);
        else if (!strcmp(j->entry_event, ev->type) && entry_open(e, j, now_ms) &&
                 may_enter(j, have[i] ? &last[i] : NULL, now_ms)) {
            if (!evtext)
                evtext = jevent_text(ev);
            out = enter(e, j, ev->profile, evj, evtext, now_ms, err, errlen);
        }
    }
    json_decref(evj);
    free(evtext);
    for (size_t i = 0; i < nj; i++)
        if (have[i])
            inst_free(&last[i]);
    if (!few) {
        free(last);
        free(have);
        free(hears);
    }
    return out;
}

int jengine_event(jengine *e, const jevent *ev, int64_t now_ms, char *err, size_t errlen)
{
    return route_event(e, ev, -1, now_ms, err, errlen);
}

int64_t jengine_watermark(jengine *e)
{
    sqlite3_stmt *st = e->stmt[S_META_GET];
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, "inbox_seq", -1, SQLITE_STATIC);
    int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return v;
}

int jengine_set_watermark(jengine *e, int64_t seq, char *err, size_t errlen)
{
    sqlite3_stmt *st = e->stmt[S_META_SET];
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, "inbox_seq", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, seq);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : sqlfail(e, err, errlen, "watermark");
}

static int load_by_id(jengine *e, int64_t id, jinst *in, int *found, char *err, size_t errlen)
{
    sqlite3_stmt *st = e->stmt[S_BY_ID];
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    *found = 0;
    if (rc == SQLITE_ROW) {
        journey *j = find_journey(e, col_text(st, 1));
        if (j) {
            inst_from_row(e, st, j, col_text(st, 11), in, 12);
            *found = 1;
        }
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sqlfail(e, err, errlen, "instance");
    return 0;
}

int jengine_fire(jengine *e, int64_t now_ms, size_t max, size_t *fired, char *err, size_t errlen)
{
    *fired = 0;
    jtimer t;
    while (*fired < max && jtimers_pop_due(&e->timers, now_ms, &t)) {
        jinst in;
        int found;
        if (load_by_id(e, t.inst, &in, &found, err, errlen))
            return -1;
        if (!found)
            continue;
        int rc = 0;
        /* stale entries (the instance moved on) are dropped here */
        if (!strcmp(in.state, "active") && in.due == t.due_ms && ctl_of(e, in.j) == 'p') {
            /* frozen: the timer is set again on resume (rebuild_timers) */
        } else if (!strcmp(in.state, "active") && in.due == t.due_ms && in.j->timeout_ms > 0 &&
                   now_ms >= in.entered + in.j->timeout_ms) {
            (*fired)++;
            e->stats.timers_fired++;
            e->stats.timed_out++;
            in.state = "timed_out";
            in.wait = NULL;
            in.due = -1;
            free(in.reason);
            char d[32];
            duration_format(in.j->timeout_ms / 1000, d, sizeof d);
            in.reason = xasprintf("the journey's timeout (%s) passed at node '%s'", d,
                                  in.node >= 0 ? in.j->nodes[in.node].id : "?");
            rc = inst_save(e, &in, now_ms, err, errlen);
        } else if (!strcmp(in.state, "active") && in.due == t.due_ms && in.wait && in.node >= 0) {
            const jnode *n = &in.j->nodes[in.node];
            int next = n->type == JN_WAIT ? n->next : n->type == JN_WAIT_EVENT ? n->on_timeout : -2;
            if (n->type == JN_SEND && n->wall_min >= 0) { /* its local_time: send it now */
                in.wall_passed = 1;
                next = in.node;
            }
            if (next != -2) {
                (*fired)++;
                e->stats.timers_fired++;
                rc = run_from(e, &in, next, now_ms, err, errlen);
            }
        }
        inst_free(&in);
        if (rc)
            return -1;
    }
    jtimers_trim(&e->timers);
    return 0;
}

int jengine_next_due(const jengine *e, int64_t *due_ms)
{
    jtimer t;
    if (!jtimers_peek(&e->timers, &t))
        return 0;
    *due_ms = t.due_ms;
    return 1;
}

int jengine_action_done(jengine *e, const char *key, int ok, const char *response,
                        const char *reason, int64_t now_ms, char *err, size_t errlen)
{
    sqlite3_stmt *st = e->stmt[S_SEND_GET];
    sqlite3_reset(st);
    bind_text(st, 1, key);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return rc == SQLITE_DONE ? 0 : sqlfail(e, err, errlen, "action");
    }
    int64_t id = sqlite3_column_int64(st, 0);
    char *node = xstrdup(col_text(st, 1));
    int pending = !strcmp(col_text(st, 2), "pending");
    sqlite3_reset(st);
    char *status = ok ? xstrdup("ok") : xasprintf("error: %s", reason ? reason : "failed");
    /* an update's response is the values it wrote: kept */
    st = e->stmt[response || ok ? S_SEND_RESPONSE : S_SEND_STATUS];
    sqlite3_reset(st);
    bind_text(st, 1, status);
    if (st == e->stmt[S_SEND_RESPONSE]) {
        bind_text(st, 2, response);
        bind_text(st, 3, key);
    } else {
        bind_text(st, 2, key);
    }
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    free(status);
    if (rc != SQLITE_DONE) {
        free(node);
        return sqlfail(e, err, errlen, "action");
    }
    jinst in;
    int found;
    if (!pending || load_by_id(e, id, &in, &found, err, errlen) || !found) {
        free(node);
        return 0;
    }
    int out = 0;
    if (!strcmp(in.state, "active") && in.wait && !strcmp(in.wait, "action") && in.node >= 0 &&
        !strcmp(in.j->nodes[in.node].id, node)) {
        const jnode *n = &in.j->nodes[in.node];
        if (ok && n->type == JN_UPDATE_PROFILE) {
            out = run_from(e, &in, n->next, now_ms, err, errlen);
        } else if (ok) {
            json_t *resp = response && *response ? json_loads(response, 0, NULL) : NULL;
            if (!in.results)
                in.results = json_object();
            json_object_set_new(in.results, n->id, json_is_object(resp) ? resp : json_object());
            if (resp && !json_is_object(resp))
                json_decref(resp);
            out = run_from(e, &in, n->next, now_ms, err, errlen);
        } else if (n->on_error >= 0) {
            out = run_from(e, &in, n->on_error, now_ms, err, errlen);
        } else {
            set_failed(e, &in,
                       n->type == JN_UPDATE_PROFILE ? "update_profile failed" : "action failed",
                       reason ? reason : "error");
            out = inst_save(e, &in, now_ms, err, errlen);
        }
    }
    inst_free(&in);
    free(node);
    return out;
}

int jengine_send_status(jengine *e, const char *key, const char *status, char *err, size_t errlen)
{
    sqlite3_stmt *st = e->stmt[S_SEND_MARK];
    sqlite3_reset(st);
    bind_text(st, 1, status);
    bind_text(st, 2, key);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : sqlfail(e, err, errlen, "send status");
}

int jengine_pending(jengine *e,
                    void (*fn)(void *ud, const char *kind, const char *key, int64_t inst,
                               const char *journey, const char *node, const char *profile,
                               const char *event_json, const char *results_json,
                               const char *set_json),
                    void *ud, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(e->st->db,
                           "SELECT s.kind, s.key, s.instance, s.journey, s.node, s.profile,"
                           " i.event, i.results, s.response FROM journey_sends s"
                           " JOIN journey_instances i"
                           " ON i.id = s.instance WHERE s.status = 'pending' ORDER BY s.at",
                           -1, &st, NULL) != SQLITE_OK)
        return sqlfail(e, err, errlen, "pending");
    while (sqlite3_step(st) == SQLITE_ROW)
        fn(ud, col_text(st, 0), col_text(st, 1), sqlite3_column_int64(st, 2), col_text(st, 3),
           col_text(st, 4), col_text(st, 5), col_text(st, 6), col_text(st, 7), col_text(st, 8));
    sqlite3_finalize(st);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Lifecycle: pause, resume, close                                     */
/* ------------------------------------------------------------------ */

int jengine_control_set(store *st, const char *jname, const char *state, int64_t now_ms, char *err,
                        size_t errlen)
{
    if (store_migrate(st, "journey_control", 1, ddl_control, err, errlen))
        return -1;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(st->db,
                           "INSERT INTO journey_control(journey, state, at) VALUES (?, ?, ?)"
                           " ON CONFLICT(journey) DO UPDATE SET state = excluded.state,"
                           " at = excluded.at",
                           -1, &q, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "state store: %s", sqlite3_errmsg(st->db));
        return -1;
    }
    sqlite3_bind_text(q, 1, jname, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, now_ms);
    store_lock(st);
    int rc = sqlite3_step(q);
    store_unlock(st);
    if (rc != SQLITE_DONE)
        snprintf(err, errlen, "state store: %s", sqlite3_errmsg(st->db));
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? 0 : -1;
}

const char *jengine_control_get(store *st, const char *jname)
{
    sqlite3_stmt *q;
    const char *out = "running";
    if (sqlite3_prepare_v2(st->db, "SELECT state FROM journey_control WHERE journey = ?", -1, &q,
                           NULL) != SQLITE_OK)
        return out;
    sqlite3_bind_text(q, 1, jname, -1, SQLITE_STATIC);
    if (sqlite3_step(q) == SQLITE_ROW) {
        const char *v = col_text(q, 0);
        out = v && !strcmp(v, "paused")   ? "paused"
              : v && !strcmp(v, "closed") ? "closed"
                                          : "running";
    }
    sqlite3_finalize(q);
    return out;
}

long long jengine_held_count(store *st, const char *jname)
{
    sqlite3_stmt *q;
    long long n = 0;
    if (sqlite3_prepare_v2(st->db, "SELECT count(*) FROM journey_held WHERE journey = ?", -1, &q,
                           NULL) != SQLITE_OK)
        return 0; /* no table yet */
    sqlite3_bind_text(q, 1, jname, -1, SQLITE_STATIC);
    if (sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return n;
}

/* The events journey i held while paused, routed to it in order. */
static int release_held(jengine *e, size_t i, int64_t now_ms, char *err, size_t errlen)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(e->st->db,
                           "SELECT seq, event FROM journey_held WHERE journey = ? ORDER BY seq", -1,
                           &q, NULL) != SQLITE_OK)
        return sqlfail(e, err, errlen, "held events");
    sqlite3_bind_text(q, 1, e->js[i]->name, -1, SQLITE_STATIC);
    int rc = 0, step;
    while (!rc && (step = sqlite3_step(q)) == SQLITE_ROW) {
        const char *txt = col_text(q, 1);
        jevent ev;
        char reason[256];
        if (jevent_parse(txt, strlen(txt), now_ms, &ev, reason, sizeof reason) == 0)
            rc = route_event(e, &ev, (int)i, now_ms, err, errlen);
        jevent_free(&ev);
    }
    sqlite3_finalize(q);
    if (rc)
        return rc;
    if (sqlite3_prepare_v2(e->st->db, "DELETE FROM journey_held WHERE journey = ?", -1, &q, NULL) !=
        SQLITE_OK)
        return sqlfail(e, err, errlen, "held events");
    sqlite3_bind_text(q, 1, e->js[i]->name, -1, SQLITE_STATIC);
    step = sqlite3_step(q);
    sqlite3_finalize(q);
    return step == SQLITE_DONE ? 0 : sqlfail(e, err, errlen, "held events");
}

int jengine_control_refresh(jengine *e, int64_t now_ms, char *err, size_t errlen)
{
    size_t nj = e->njs;
    int first = !e->ctl;
    char *was = NULL;
    if (!first) {
        was = xcalloc(nj + 1, 1);
        memcpy(was, e->ctl, nj);
    }
    if (first)
        e->ctl = xcalloc(nj + 1, 1);
    memset(e->ctl, 'r', nj);
    sqlite3_stmt *st = e->stmt[S_CTL_ALL];
    sqlite3_reset(st);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        journey *j = find_journey(e, col_text(st, 0));
        int i = j ? journey_index(e, j) : -1;
        const char *v = col_text(st, 1);
        if (i >= 0 && v)
            e->ctl[i] = !strcmp(v, "paused") ? 'p' : !strcmp(v, "closed") ? 'c' : 'r';
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        free(was);
        return sqlfail(e, err, errlen, "journey control");
    }
    int resumed = 0, out = 0;
    for (size_t i = 0; i < nj && !out; i++)
        if (e->ctl[i] != 'p' && (first || was[i] == 'p')) {
            if (!first) {
                resumed = 1;
                log_msg(BATON_LOG_INFO, "journey", "%s: resumed", e->js[i]->name);
            }
            out = release_held(e, i, now_ms, err, errlen);
        } else if (!first && e->ctl[i] != was[i]) {
            log_msg(BATON_LOG_INFO, "journey", "%s: %s", e->js[i]->name,
                    e->ctl[i] == 'p' ? "paused" : "closed");
        }
    free(was);
    if (!out && resumed)
        out = rebuild_timers(e, err, errlen);
    return out;
}
