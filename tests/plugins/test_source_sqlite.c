/* source_sqlite's exec(): kept statements give the same rows as fresh
 * ones, a row callback may run the same SQL again (nested), a table can
 * be dropped and altered after a kept SELECT read it, and column names are
 * right after another connection changed the schema (the statement is
 * re-prepared by its first step). baton_tz_local(t, zone) is the host's
 * reading of the tz database, NULL for an unknown zone or a NULL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "plugin/plugin_host.h"
#include "support/fs.h"
#include "support/instance.h"

const baton_plugin *baton_plugin_entry(void);

static char *dir, *db_path;
static instance *inst;

static int setup(void **st)
{
    dir = tmpdir_make("source_sqlite");
    char settings[1200];
    snprintf(settings, sizeof settings, "path = \"%s/crm.db\";", dir);
    char err[512];
    inst = test_instance_new(baton_plugin_entry(), "sources", "crm", settings, 1, err, sizeof err);
    if (!inst)
        fail_msg("instance: %s", err);
    db_path = malloc(strlen(dir) + 16);
    sprintf(db_path, "%s/crm.db", dir);
    return 0;
}

static int teardown(void **st)
{
    test_instance_free(inst);
    tmpdir_remove(dir);
    free(dir);
    free(db_path);
    return 0;
}

/* Rows as "name=value,name=value;" */
static int collect(void *ud, size_t ncols, const char *const *names, const baton_value *v)
{
    buf *b = ud;
    for (size_t i = 0; i < ncols; i++) {
        buf_addf(b, "%s%s=", i ? "," : "", names[i]);
        if (v[i].type == BATON_T_INT)
            buf_addf(b, "%lld", (long long)v[i].v.i);
        else if (v[i].type == BATON_T_STRING)
            buf_add(b, v[i].v.s.ptr, v[i].v.s.len);
        else
            buf_adds(b, "null");
    }
    buf_addc(b, ';');
    return 0;
}

static char *run(const char *sql, const char *param)
{
    const baton_source_ops *ops = instance_source(inst);
    baton_value p = {.type = BATON_T_STRING, .v.s = {param, param ? strlen(param) : 0}};
    buf b;
    buf_init(&b);
    buf_adds(&b, "");
    char err[256];
    if (ops->exec(inst->state, sql, &p, param ? 1 : 0, collect, &b, err, sizeof err)) {
        buf_free(&b);
        buf_init(&b);
        buf_addf(&b, "error: %s", err);
    }
    return buf_steal(&b);
}

static void expect(const char *sql, const char *param, const char *want)
{
    char *got = run(sql, param);
    if (strcmp(got, want))
        fail_msg("%s [%s]: got '%s', expected '%s'", sql, param ? param : "", got, want);
    free(got);
}

static void test_kept_statements(void **st)
{
    expect("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER); "
           "INSERT INTO t VALUES ('a', 1), ('b', 2), ('c', NULL);",
           NULL, "");
    const char *q = "SELECT * FROM t WHERE id = ?1";
    for (int i = 0; i < 3; i++) { /* the second and third use the kept one */
        expect(q, "a", "id=a,n=1;");
        expect(q, "c", "id=c,n=null;");
        expect(q, "zz", "");
    }
    /* more distinct statements than are kept: each still right */
    for (int i = 0; i < 40; i++) {
        char sql[128], want[64];
        snprintf(sql, sizeof sql, "SELECT id, n + %d AS m FROM t WHERE id = ?1", i);
        snprintf(want, sizeof want, "id=b,m=%d;", 2 + i);
        expect(sql, "b", want);
    }
    expect(q, "b", "id=b,n=2;");
}

static char *run_value(const char *sql, const baton_value *v)
{
    const baton_source_ops *ops = instance_source(inst);
    buf b;
    buf_init(&b);
    buf_adds(&b, "");
    char err[256];
    if (ops->exec(inst->state, sql, v, 1, collect, &b, err, sizeof err))
        buf_addf(&b, "error: %s", err);
    return buf_steal(&b);
}

/* A kept statement binds a number equal to its last one only once (its
 * binding stays): every value still reads as a statement prepared for
 * it alone would (two statements in one text are never kept). */
static void test_kept_bindings(void **st)
{
    const char *kept = "SELECT typeof(?1) AS t, quote(?1) AS q";
    const char *fresh = "SELECT typeof(?1) AS t, quote(?1) AS q; SELECT 1 WHERE 0";
    baton_value vs[] = {
        {.type = BATON_T_INT, .v.i = 1},
        {.type = BATON_T_INT, .v.i = 1},
        {.type = BATON_T_INT, .v.i = 2},
        {.type = BATON_T_FLOAT, .v.f = 2.0},
        {.type = BATON_T_FLOAT, .v.f = 2.0},
        {.type = BATON_T_FLOAT, .v.f = 2.5},
        {.type = BATON_T_NULL},
        {.type = BATON_T_NULL},
        {.type = BATON_T_BOOL, .v.b = 1},
        {.type = BATON_T_BOOL, .v.b = 0},
        {.type = BATON_T_DURATION, .v.dur = 0},
        {.type = BATON_T_INT, .v.i = 0},
        {.type = BATON_T_DATE, .v.date = 0},
        {.type = BATON_T_DATE, .v.date = 1},
        {.type = BATON_T_TIMESTAMP, .v.ts = 1},
        {.type = BATON_T_TIMESTAMP, .v.ts = 1},
        {.type = BATON_T_STRING, .v.s = {"x", 1}},
        {.type = BATON_T_STRING, .v.s = {"y", 1}},
        {.type = BATON_T_INT, .v.i = 2},
    };
    for (size_t i = 0; i < sizeof vs / sizeof *vs; i++) {
        char *want = run_value(fresh, &vs[i]), *got = run_value(kept, &vs[i]);
        if (strcmp(got, want))
            fail_msg("value %zu: got '%s', expected '%s'", i, got, want);
        free(want);
        free(got);
    }
}

/* A row callback that runs the same statement for another id. */
static int nested(void *ud, size_t ncols, const char *const *names, const baton_value *v)
{
    buf *b = ud;
    collect(b, ncols, names, v);
    if (v[0].type == BATON_T_STRING && v[0].v.s.len == 1 && v[0].v.s.ptr[0] == 'a') {
        char *inner = run("SELECT * FROM t WHERE id >= ?1 ORDER BY id", "b");
        buf_addf(b, "[%s]", inner);
        free(inner);
    }
    return 0;
}

static void test_nested_same_sql(void **st)
{
    const baton_source_ops *ops = instance_source(inst);
    baton_value p = {.type = BATON_T_STRING, .v.s = {"a", 1}};
    buf b;
    buf_init(&b);
    buf_adds(&b, "");
    char err[256];
    assert_int_equal(ops->exec(inst->state, "SELECT * FROM t WHERE id >= ?1 ORDER BY id", &p, 1,
                               nested, &b, err, sizeof err),
                     0);
    assert_string_equal(b.data, "id=a,n=1;[id=b,n=2;id=c,n=null;]id=b,n=2;id=c,n=null;");
    buf_free(&b);
}

static void test_tz_local(void **st)
{
    /* 2026-03-29T00:30:00Z and 01:30: Paris goes from +1 to +2 at 01:00Z */
    expect("SELECT baton_tz_local(1774744200, ?1) - 1774744200 AS a, "
           "baton_tz_local(1774747800, ?1) - 1774747800 AS b",
           "Europe/Paris", "a=3600,b=7200;");
    expect("SELECT baton_tz_local(0, ?1) AS a", "Asia/Kolkata", "a=19800;");
    expect("SELECT baton_tz_local(0, ?1) AS a", "Mars/Olympus", "a=null;");
    expect("SELECT baton_tz_local(NULL, ?1) AS a, baton_tz_local(0, NULL) AS b", "UTC",
           "a=null,b=null;");
}

static void test_schema_changes(void **st)
{
    const char *q = "SELECT * FROM t WHERE id = ?1";
    expect(q, "a", "id=a,n=1;");
    /* another connection adds a column: the kept SELECT * sees it */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "ALTER TABLE t ADD COLUMN label TEXT; "
                                  "UPDATE t SET label = 'x' || id",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    expect(q, "a", "id=a,n=1,label=xa;");
    /* renamed away: a clear error; this connection can still drop and
     * recreate the table while it keeps the statement */
    assert_int_equal(sqlite3_exec(db, "ALTER TABLE t RENAME TO u", NULL, NULL, NULL), SQLITE_OK);
    expect(q, "a", "error: no such table: t");
    sqlite3_close(db);
    expect("DROP TABLE u", NULL, "");
    expect("CREATE TABLE t (id TEXT, v TEXT); INSERT INTO t VALUES ('a', 'new')", NULL, "");
    expect(q, "a", "id=a,v=new;");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tz_local),       cmocka_unit_test(test_kept_statements),
        cmocka_unit_test(test_kept_bindings),  cmocka_unit_test(test_nested_same_sql),
        cmocka_unit_test(test_schema_changes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
