#include "store/store.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/deadline.h"
#include "base/log.h"
#include "base/mem.h"

int store_mkdirs(const char *path)
{
    if (!*path) {
        errno = ENOENT;
        return -1;
    }
    char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            free(p);
            return -1;
        }
        *s = '/';
    }
    int rc = mkdir(p, 0700) != 0 && errno != EEXIST ? -1 : 0;
    free(p);
    return rc;
}

/* Counters only: SQLITE_TRACE_STMT hands the statement, expanding
 * nothing; the commit hook's 0 lets the commit go on. */
static int count_stmt(unsigned type, void *ud, void *p, void *x)
{
    atomic_fetch_add_explicit(&((store *)ud)->nstatements, 1, memory_order_relaxed);
    return 0;
}

static int count_commit(void *ud)
{
    atomic_fetch_add_explicit(&((store *)ud)->ncommits, 1, memory_order_relaxed);
    return 0;
}

void store_counts(store *s, unsigned long long *statements, unsigned long long *commits)
{
    *statements = atomic_load_explicit(&s->nstatements, memory_order_relaxed);
    *commits = atomic_load_explicit(&s->ncommits, memory_order_relaxed);
}

int store_open_path(store *s, const char *path, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: cannot open the state store: %s", path,
                 s->db ? sqlite3_errmsg(s->db) : "out of memory");
        sqlite3_close(s->db);
        s->db = NULL;
        return -1;
    }
    s->path = xstrdup(path);
    sqlite3_trace_v2(s->db, SQLITE_TRACE_STMT, count_stmt, s);
    sqlite3_commit_hook(s->db, count_commit, s);
    /* recursive: the journey engine holds it for its batch and hands
     * messages on, whose delivery log rows join the same transaction */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&s->write_lock, &ma);
    pthread_mutexattr_destroy(&ma);
    sqlite3_busy_timeout(s->db, 10000);
    if (store_exec(s,
                   "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
                   "PRAGMA temp_store=MEMORY;" /* savepoint journals: no temp files */
                   "CREATE TABLE IF NOT EXISTS store_schema (module TEXT PRIMARY KEY, "
                   "version INTEGER NOT NULL);",
                   err, errlen)) {
        store_close(s);
        return -1;
    }
    return 0;
}

int store_open(store *s, const char *data_dir, char *err, size_t errlen)
{
    if (store_mkdirs(data_dir) != 0) {
        snprintf(err, errlen, "%s: cannot create the data directory: %s", data_dir,
                 strerror(errno));
        return -1;
    }
    char *path = xasprintf("%s/state.db", data_dir);
    int rc = store_open_path(s, path, err, errlen);
    free(path);
    return rc;
}

static void checkpointer_stop(store *s);

void store_close(store *s)
{
    if (!s->path && !s->db)
        return;
    checkpointer_stop(s);
    for (size_t i = 0; i < sizeof s->txn / sizeof s->txn[0]; i++)
        sqlite3_finalize(s->txn[i]);
    if (s->db)
        sqlite3_close(s->db);
    if (s->path)
        pthread_mutex_destroy(&s->write_lock);
    free(s->path);
    memset(s, 0, sizeof *s);
}

int store_txn(store *s, store_txn_op op)
{
    static const char *const sql[] = {
        [STORE_BEGIN] = "BEGIN IMMEDIATE", [STORE_COMMIT] = "COMMIT",
        [STORE_ROLLBACK] = "ROLLBACK",     [STORE_SAVEPOINT] = "SAVEPOINT batch",
        [STORE_RELEASE] = "RELEASE batch", [STORE_ROLLBACK_TO] = "ROLLBACK TO batch",
    };
    _Static_assert(sizeof sql / sizeof sql[0] == sizeof s->txn / sizeof s->txn[0],
                   "one statement per store_txn_op");
    int rc;
    if (!s->txn[op] && (rc = sqlite3_prepare_v3(s->db, sql[op], -1, SQLITE_PREPARE_PERSISTENT,
                                                &s->txn[op], NULL)) != SQLITE_OK)
        return rc;
    rc = sqlite3_step(s->txn[op]);
    sqlite3_reset(s->txn[op]);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int store_exec(store *s, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", s->path ? s->path : "state store",
                 msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

int store_migrate(store *s, const char *module, int version, const char *ddl, char *err,
                  size_t errlen)
{
    /* read the version inside the write transaction: two processes
     * starting together must not both run the ddl */
    store_lock(s);
    int rc = store_exec(s, "BEGIN IMMEDIATE", err, errlen);
    if (rc)
        goto out;
    sqlite3_stmt *st;
    int have = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT version FROM store_schema WHERE module = ?", -1, &st,
                           NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", s->path, sqlite3_errmsg(s->db));
        rc = -1;
        goto rollback;
    }
    sqlite3_bind_text(st, 1, module, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        have = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (have >= version) {
        rc = store_exec(s, "COMMIT", err, errlen);
        goto out;
    }
    if (store_exec(s, ddl, err, errlen)) {
        rc = -1;
        goto rollback;
    }
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO store_schema(module, version) VALUES (?, ?) ON "
                           "CONFLICT(module) DO UPDATE SET version = excluded.version",
                           -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", s->path, sqlite3_errmsg(s->db));
        rc = -1;
        goto rollback;
    }
    sqlite3_bind_text(st, 1, module, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, version);
    int step = sqlite3_step(st);
    sqlite3_finalize(st);
    if (step != SQLITE_DONE) {
        snprintf(err, errlen, "%s: %s", s->path, sqlite3_errmsg(s->db));
        rc = -1;
        goto rollback;
    }
    rc = store_exec(s, "COMMIT", err, errlen);
    goto out;
rollback:
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
out:
    store_unlock(s);
    return rc;
}

/* Bounds the group transaction: the WAL grows with it. */
#define GROUP_WRITES 20000

/* The group's writes are lost: a COMMIT failed, or SQLite rolled the
 * transaction back on its own (disk full, an I/O error). What the threads
 * of this process hold in memory (queued messages, marks, the engine's
 * view) no longer matches the store, so stop the way a crash stops: a
 * restart recovers from what is durable, which is what a kill -9 already
 * relies on. Carrying on could send a message with no log row, or twice. */
void store_group_fail(store *s, const char *why)
{
    log_error("%s: %s: the last group of writes is lost; stopping so that a restart recovers"
              " from what is durable",
              s->path ? s->path : "state store", why);
    _exit(1);
}

void store_group_commit_locked(store *s)
{
    if (!s->group_open || s->group_held)
        return;
    s->group_open = 0;
    s->group_writes = 0;
    if (sqlite3_get_autocommit(s->db))
        store_group_fail(s, "the transaction was rolled back by SQLite");
    if (store_txn(s, STORE_COMMIT) != SQLITE_OK)
        store_group_fail(s, sqlite3_errmsg(s->db));
}

void store_group_commit(store *s)
{
    pthread_mutex_lock(&s->write_lock);
    store_group_commit_locked(s);
    pthread_mutex_unlock(&s->write_lock);
}

void store_group_join(store *s)
{
    if (s->group_open && sqlite3_get_autocommit(s->db))
        store_group_fail(s, "the transaction was rolled back by SQLite");
    if (s->group_open && ++s->group_writes >= GROUP_WRITES)
        store_group_commit_locked(s);
    /* if BEGIN fails (another process holds the write lock past the busy
     * timeout) the writes go one by one, each its own transaction */
    if (!s->group_open && store_txn(s, STORE_BEGIN) == SQLITE_OK) {
        s->group_open = 1;
        s->group_writes = 1;
    }
}

void store_lock(store *s)
{
    pthread_mutex_lock(&s->write_lock);
    store_group_commit_locked(s);
}

void store_unlock(store *s)
{
    pthread_mutex_unlock(&s->write_lock);
}

/* A checkpoint is worth its syncs once the log holds this many pages
 * (16 MiB: a page the engine rewrites at every commit, an index's last
 * leaf, is copied once per checkpoint, so fewer, larger ones copy less;
 * at 4x SQLite's default, half the checkpoint CPU per journey event and
 * no worse p99), or after a second of quiet; past the backstop the
 * committing thread checkpoints itself, as SQLite would. */
#define CHECKPOINT_FRAMES 4000
#define CHECKPOINT_IDLE_MS 1000
#define BACKSTOP_FRAMES 20000

/* SQLite's WAL hook, on the committing thread after each commit (it
 * replaces the auto-checkpoint, which is such a hook). */
static int wal_hook(void *ud, sqlite3 *db, const char *name, int frames)
{
    store *s = ud;
    if (frames >= BACKSTOP_FRAMES) {
        sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    } else if (frames >= CHECKPOINT_FRAMES) {
        pthread_mutex_lock(&s->ckpt_mu);
        s->ckpt_due = 1;
        pthread_cond_signal(&s->ckpt_cv);
        pthread_mutex_unlock(&s->ckpt_mu);
    }
    return SQLITE_OK;
}

static void *checkpointer(void *arg)
{
    store *s = arg;
    pthread_setname_np(pthread_self(), "baton-ckpt");
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(s->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        log_error("%s: checkpoints: %s", s->path, db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 1000);
    /* a connection that has read nothing does not know the file is in WAL
     * mode: its checkpoints would do nothing */
    sqlite3_exec(db, "SELECT 1 FROM sqlite_master LIMIT 1", NULL, NULL, NULL);
    int complained = 0;
    pthread_mutex_lock(&s->ckpt_mu);
    while (!s->ckpt_stop) {
        struct timespec ts;
        deadline_in(&ts, CHECKPOINT_IDLE_MS);
        while (!s->ckpt_due && !s->ckpt_stop &&
               pthread_cond_timedwait(&s->ckpt_cv, &s->ckpt_mu, &ts) == 0)
            ;
        s->ckpt_due = 0;
        pthread_mutex_unlock(&s->ckpt_mu);
        int nlog = 0, ndone = 0;
        int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &nlog, &ndone);
        /* BUSY: another checkpoint (the commits' backstop) is running */
        if (((rc != SQLITE_OK && rc != SQLITE_BUSY) || (rc == SQLITE_OK && nlog < 0)) &&
            !complained++)
            log_error("%s: background checkpoint: %s", s->path,
                      rc != SQLITE_OK ? sqlite3_errmsg(db) : "not in WAL mode");
        pthread_mutex_lock(&s->ckpt_mu);
    }
    pthread_mutex_unlock(&s->ckpt_mu);
    sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    sqlite3_close(db);
    return NULL;
}

int store_checkpoint_in_background(store *s, char *err, size_t errlen)
{
    if (s->ckpt_running || !s->path || !strcmp(s->path, ":memory:") ||
        !strncmp(s->path, "file:", 5))
        return 0;
    /* the log restarts once all of it is copied; this keeps its file from
     * staying at its largest size */
    if (store_exec(s, "PRAGMA journal_size_limit = 67108864", err, errlen))
        return -1;
    pthread_mutex_init(&s->ckpt_mu, NULL);
    deadline_cond_init(&s->ckpt_cv);
    s->ckpt_stop = 0;
    s->ckpt_due = 0;
    if (pthread_create(&s->ckpt, NULL, checkpointer, s) != 0) {
        snprintf(err, errlen, "%s: cannot start the checkpoint thread", s->path);
        pthread_mutex_destroy(&s->ckpt_mu);
        pthread_cond_destroy(&s->ckpt_cv);
        return -1;
    }
    s->ckpt_running = 1;
    sqlite3_wal_hook(s->db, wal_hook, s);
    return 0;
}

static void checkpointer_stop(store *s)
{
    if (!s->ckpt_running)
        return;
    sqlite3_wal_autocheckpoint(s->db, 1000); /* SQLite's own hook again */
    pthread_mutex_lock(&s->ckpt_mu);
    s->ckpt_stop = 1;
    pthread_cond_signal(&s->ckpt_cv);
    pthread_mutex_unlock(&s->ckpt_mu);
    pthread_join(s->ckpt, NULL);
    pthread_mutex_destroy(&s->ckpt_mu);
    pthread_cond_destroy(&s->ckpt_cv);
    s->ckpt_running = 0;
}
