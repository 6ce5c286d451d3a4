/* store — the durable state store: one SQLite database,
 * <data_dir>/state.db, in WAL mode. Each module owns its own tables and
 * creates them with store_migrate(); the delivery log, run history,
 * journey instances, timers and the event inbox all live here. */
#ifndef BATON_STORE_H
#define BATON_STORE_H

#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>

typedef struct store {
    sqlite3 *db;
    char *path;
    /* One writer per process: every thread writes through db while it
     * holds write_lock, so our own threads never spin on SQLITE_BUSY (the
     * busy handler sleeps for milliseconds) and the page cache of the one
     * connection stays warm. */
    pthread_mutex_t write_lock; /* recursive: see group_held */
    /* The group transaction (under write_lock): small writes that may
     * wait (the delivery log) join one open transaction, committed by
     * store_group_commit or by the next store_lock. */
    int group_open;
    unsigned group_writes;
    /* A savepoint is open on top of the group (the journey engine's
     * batch, which hands messages to the channels' delivery logs on its
     * own thread): the group is committed only once it is released. */
    int group_held;
    /* store_txn's statements, prepared on first use */
    sqlite3_stmt *txn[6];
    /* store_checkpoint_in_background */
    pthread_t ckpt;
    int ckpt_running, ckpt_stop, ckpt_due;
    pthread_mutex_t ckpt_mu;
    pthread_cond_t ckpt_cv;
    /* statements run and transactions committed on db (store_counts) */
    _Atomic unsigned long long nstatements, ncommits;
} store;

/* Create data_dir if needed and open (or create) state.db in it. */
int store_open(store *s, const char *data_dir, char *err, size_t errlen);
/* Open a database at an exact path (":memory:" for tests). */
int store_open_path(store *s, const char *path, char *err, size_t errlen);
void store_close(store *s);

/* Apply ddl once per (module, version): modules call this at start with
 * their CREATE TABLE IF NOT EXISTS statements; a higher version re-runs
 * the module's ddl (which must then be idempotent or an ALTER). */
int store_migrate(store *s, const char *module, int version, const char *ddl, char *err,
                  size_t errlen);

/* Run statements with no result. */
int store_exec(store *s, const char *sql, char *err, size_t errlen);

/* Transaction control through statements prepared once: sqlite3_exec
 * parses its text every time, and the parser's allocation is the largest
 * malloc a hot path makes. The savepoint is named "batch". Returns
 * SQLite's result code (SQLITE_OK, or the error: sqlite3_errmsg says). */
typedef enum {
    STORE_BEGIN, /* BEGIN IMMEDIATE */
    STORE_COMMIT,
    STORE_ROLLBACK,
    STORE_SAVEPOINT,
    STORE_RELEASE,
    STORE_ROLLBACK_TO,
} store_txn_op;
int store_txn(store *s, store_txn_op op);
/* Become the writer for a transaction of your own (BEGIN ... COMMIT):
 * takes write_lock and commits the open group transaction first. */
void store_lock(store *s);
void store_unlock(store *s);

/* Under write_lock: join the group transaction, opening it if needed (it
 * is committed after 20,000 writes at the latest). */
void store_group_join(store *s);
/* Under write_lock: commit the group transaction if one is open. A
 * failed commit (disk full, I/O error) loses what every thread wrote since
 * the last one, so it stops the process (logged, exit 1): a restart
 * recovers from what is durable. */
void store_group_commit_locked(store *s);
/* Under write_lock: what this thread wrote in the group can no longer be
 * trusted (a savepoint that had handed messages on was rolled back): stop
 * as store_group_commit_locked does when a commit fails. */
void store_group_fail(store *s, const char *why) __attribute__((noreturn));
/* Takes write_lock. */
void store_group_commit(store *s);

/* For long-lived writers (serve): WAL checkpoints, which copy the log
 * into the database and sync, run on a thread of their own (with its own
 * connection, PASSIVE: never blocking a writer) once the log holds 4,000
 * pages or after a second of quiet, so commits never wait for a sync; a
 * commit checkpoints itself only as a backstop, past 20,000 pages.
 * store_close stops it. A no-op for ":memory:". */
int store_checkpoint_in_background(store *s, char *err, size_t errlen);

/* What db has done since it was opened, for the benches' stage
 * breakdown: statements run (each sqlite3_step from a reset, DDL and
 * transaction control included) and transactions committed. */
void store_counts(store *s, unsigned long long *statements, unsigned long long *commits);

/* mkdir -p */
int store_mkdirs(const char *path);

#endif
