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
    /* One writer: SQLite serialises writers anyway; holding this keeps
     * our own threads from spinning on SQLITE_BUSY. */
    pthread_mutex_t write_lock;
} store;

/* Create data_dir if needed and open (or create) state.db in it. */
int store_open(store *s, const char *data_dir, char *err, size_t errlen);
/* Open a database at an exact path (":memory:" for tests). */
int store_open_path(store *s, const char *path, char *err, size_t errlen);
void store_close(store *s);

/* Apply ddl once per (module, version): modules call this at start with
 * their CREATE TABLE IF NOT EXISTS statements; a higher version re-runs
 * the module's ddl (which must then be idempotent or an ALTER). */
int store_migrate(store *s, const char *module, int version, const char *ddl,
                  char *err, size_t errlen);

/* Run statements with no result. */
int store_exec(store *s, const char *sql, char *err, size_t errlen);

/* mkdir -p */
int store_mkdirs(const char *path);

#endif
