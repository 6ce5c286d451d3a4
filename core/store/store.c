#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mem.h"

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
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            free(p);
            return -1;
        }
        *s = '/';
    }
    int rc = mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
    free(p);
    return rc;
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
    pthread_mutex_init(&s->write_lock, NULL);
    sqlite3_busy_timeout(s->db, 10000);
    if (store_exec(s,
                   "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
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

void store_close(store *s)
{
    if (!s->path && !s->db)
        return;
    if (s->db)
        sqlite3_close(s->db);
    if (s->path)
        pthread_mutex_destroy(&s->write_lock);
    free(s->path);
    memset(s, 0, sizeof *s);
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
    pthread_mutex_lock(&s->write_lock);
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
    pthread_mutex_unlock(&s->write_lock);
    return rc;
}
