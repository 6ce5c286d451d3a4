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
    assert_int_equal(store_migrate(&s, "demo", 2, "CREATE TABLE u(x); CREATE TABLE t(y)", err,
                                   sizeof err),
                     -1);
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

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_open_migrate)};
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
