/* The state store: opens in WAL, creates its folder, migrates once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "store/store.h"
#include "support/fs.h"

static int count(store *s, const char *sql)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(s->db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

static void test_open_migrate(void **st)
{
    char *dir = tmpdir_make("store");
    char data[512];
    snprintf(data, sizeof data, "%s/deep/var", dir);
    store s;
    char err[256];
    assert_int_equal(store_open(&s, data, err, sizeof err), 0);
    char db[600];
    snprintf(db, sizeof db, "%s/state.db", data);
    struct stat sb;
    assert_int_equal(stat(db, &sb), 0);
    assert_int_equal(store_migrate(&s, "demo", 1, "CREATE TABLE t(x INTEGER)", err, sizeof err), 0);
    assert_int_equal(store_exec(&s, "INSERT INTO t VALUES (1)", err, sizeof err), 0);
    /* same version again: not re-run (it would fail: table exists) */
    assert_int_equal(store_migrate(&s, "demo", 1, "CREATE TABLE t(x INTEGER)", err, sizeof err), 0);
    assert_int_equal(count(&s, "SELECT count(*) FROM t"), 1);
    /* a failing migration rolls back and reports */
    assert_int_equal(
        store_migrate(&s, "demo", 2, "CREATE TABLE u(x); CREATE TABLE t(y)", err, sizeof err), -1);
    assert_non_null(strstr(err, "already exists"));
    assert_int_equal(count(&s, "SELECT count(*) FROM sqlite_master WHERE name = 'u'"), 0);
    assert_int_equal(count(&s, "SELECT version FROM store_schema WHERE module = 'demo'"), 1);
    sqlite3_stmt *jm;
    sqlite3_prepare_v2(s.db, "PRAGMA journal_mode", -1, &jm, NULL);
    sqlite3_step(jm);
    assert_string_equal((const char *)sqlite3_column_text(jm, 0), "wal");
    sqlite3_finalize(jm);
    store_close(&s);
    tmpdir_remove(dir);
    free(dir);
}

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : 0;
}

/* Bursts of writes with pauses, as serve makes them: the background
 * checkpointer copies the log into the database once it holds 1,000
 * pages (4 MB) or after a second of quiet, so the log starts over and
 * stays at about that — not at the 10,000-page backstop (40 MB) the
 * commits' own checkpoint would let it reach. */
static void test_background_checkpoints(void **st)
{
    char *dir = tmpdir_make("ckpt");
    store s;
    char err[256];
    assert_int_equal(store_open(&s, dir, err, sizeof err), 0);
    assert_int_equal(
        store_exec(&s, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", err, sizeof err), 0);
    assert_int_equal(store_checkpoint_in_background(&s, err, sizeof err), 0);
    char wal[1024];
    snprintf(wal, sizeof wal, "%s/state.db-wal", dir);
    long largest = 0;
    for (int burst = 0; burst < 25; burst++) {
        store_lock(&s);
        assert_int_equal(store_exec(&s, "BEGIN IMMEDIATE", err, sizeof err), 0);
        /* about 1 MB: 2,000 rows of 512 bytes */
        assert_int_equal(
            store_exec(&s,
                       "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
                       " WHERE i < 2000) INSERT INTO t (v) SELECT randomblob(512) FROM n",
                       err, sizeof err),
            0);
        assert_int_equal(store_exec(&s, "COMMIT", err, sizeof err), 0);
        store_unlock(&s);
        long now = file_size(wal);
        if (now > largest)
            largest = now;
        struct timespec pause = {0, 450 * 1000000L};
        nanosleep(&pause, NULL);
    }
    print_message("25 MB written in 25 bursts; the log was at most %.1f MB\n", largest / 1e6);
    assert_true(largest < 10 * 1000 * 1000);
    store_close(&s);
    tmpdir_remove(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_open_migrate),
                                       cmocka_unit_test(test_background_checkpoints)};
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
