/* The SQL compiler: exact fragments, bound parameters, quoting, links as
 * correlated subqueries, aggregates as subqueries, the PostgreSQL hooks,
 * and what SQL cannot reach. (Agreement with the evaluator on real data
 * is test_expr_differential's job.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "lang/expr.h"
#include "support/expr_fixture.h"
#include "base/timefmt.h"

static schema S;
static expr_scope *P, *O, *J;
static const int64_t NOW = 1763892000; /* 2026-11-23T10:00:00Z */

static int setup(void **st)
{
    fx_schema(&S);
    P = expr_scope_new(&S, schema_entity_find(&S, "profiles"));
    O = expr_scope_new(&S, schema_entity_find(&S, "orders"));
    expr_scope_add_field(P, "orders_90d", BATON_T_INT, "orders_90d");
    J = expr_scope_journey(&S, schema_entity_find(&S, "profiles"), NULL, 0);
    return 0;
}

static int teardown(void **st)
{
    expr_scope_free(P);
    expr_scope_free(O);
    expr_scope_free(J);
    schema_free(&S);
    return 0;
}

static const char *sql_of(const expr_scope *sc, const char *text, const expr_dialect *d,
                          expr_sql *q)
{
    static char out[4096];
    char err[256];
    expr *e = expr_compile_msg(text, sc, 0, err, sizeof err);
    if (!e) {
        snprintf(out, sizeof out, "compile:%s", err);
        return out;
    }
    expr_sql_init(q);
    if (expr_to_sql(e, "t", d, NOW, q, err, sizeof err) != 0)
        snprintf(out, sizeof out, "error:%s", err);
    else
        snprintf(out, sizeof out, "%s", q->sql.data);
    expr_free(e);
    return out;
}

static void test_fragments(void **st)
{
    expr_sql q;
    assert_string_equal(sql_of(P, "tier == 'gold'", &expr_dialect_sqlite, &q),
                        "(\"t\".\"tier\" = ?1)");
    assert_int_equal(q.nparams, 1);
    assert_int_equal(q.params[0].type, BATON_T_STRING);
    assert_string_equal(q.params[0].v.s.ptr, "gold");
    expr_sql_free(&q);

    /* constants, now() included, fold into one parameter */
    assert_string_equal(sql_of(P, "created_at < now() - 90d", &expr_dialect_sqlite, &q),
                        "(\"t\".\"created_at\" < ?1)");
    assert_int_equal(q.nparams, 1);
    assert_int_equal(q.params[0].type, BATON_T_TIMESTAMP);
    assert_int_equal(q.params[0].v.ts, NOW - 90 * 86400);
    expr_sql_free(&q);

    /* arithmetic on timestamps goes through seconds */
    assert_string_equal(sql_of(P, "now() - created_at > 30d", &expr_dialect_sqlite, &q),
                        "((?1 - CAST(strftime('%s', \"t\".\"created_at\") AS INTEGER)) > ?2)");
    assert_int_equal(q.nparams, 2);
    assert_int_equal(q.params[0].type, BATON_T_INT);
    assert_int_equal(q.params[0].v.i, NOW);
    assert_int_equal(q.params[1].v.dur, 30 * 86400);
    expr_sql_free(&q);

    assert_string_equal(
        sql_of(P, "consent_email and (visits / 2 > 1 or city is null)", &expr_dialect_sqlite, &q),
        "(\"t\".\"consent_email\" AND (((\"t\".\"visits\" / NULLIF(?1, 0)) > ?2) OR "
        "(\"t\".\"city\" IS NULL)))");
    expr_sql_free(&q);
    assert_string_equal(sql_of(P, "tier not in ['a', null]", &expr_dialect_sqlite, &q),
                        "(\"t\".\"tier\" NOT IN (?1, ?2))");
    assert_int_equal(q.params[1].type, BATON_T_NULL);
    expr_sql_free(&q);
    assert_string_equal(sql_of(P, "tier in []", &expr_dialect_sqlite, &q), "0");
    expr_sql_free(&q);
    assert_string_equal(sql_of(P, "consent_email == true", &expr_dialect_sqlite, &q),
                        "(\"t\".\"consent_email\" = ?1)");
    assert_int_equal(q.params[0].type, BATON_T_INT); /* SQLite bools are 0/1 */
    expr_sql_free(&q);
    /* a typed extra column of the row (an enriched column) */
    assert_string_equal(sql_of(P, "orders_90d >= 2", &expr_dialect_sqlite, &q),
                        "(\"t\".\"orders_90d\" >= ?1)");
    expr_sql_free(&q);
}

static void test_links_and_aggregates(void **st)
{
    expr_sql q;
    assert_string_equal(
        sql_of(O, "store.city == 'Paris'", &expr_dialect_sqlite, &q),
        "((SELECT \"t_j1_1\".\"city\" FROM \"shops\" AS \"t_j1_1\" WHERE \"t_j1_1\".\"id\" = "
        "\"t\".\"store_id\") = ?1)");
    expr_sql_free(&q);
    assert_string_equal(
        sql_of(P, "count(orders where amount > 100)", &expr_dialect_sqlite, &q),
        "(SELECT count(*) FROM \"orders\" AS \"t_a1\" WHERE \"t_a1\".\"profile_id\" = "
        "\"t\".\"id\" AND ((\"t_a1\".\"amount\" > ?1)))");
    expr_sql_free(&q);
    assert_string_equal(sql_of(P, "max(orders.created_at) < now() - 90d", &expr_dialect_sqlite, &q),
                        "((SELECT max(\"t_a1\".\"created_at\") FROM \"orders\" AS \"t_a1\" WHERE "
                        "\"t_a1\".\"profile_id\" = \"t\".\"id\") < ?1)");
    expr_sql_free(&q);
    assert_string_equal(sql_of(P, "exists(orders)", &expr_dialect_sqlite, &q),
                        "EXISTS (SELECT 1 FROM \"orders\" AS \"t_a1\" WHERE "
                        "\"t_a1\".\"profile_id\" = \"t\".\"id\")");
    expr_sql_free(&q);
    /* through a link, the key is read from the linked row */
    assert_string_equal(
        sql_of(O, "count(store.orders)", &expr_dialect_sqlite, &q),
        "(SELECT count(*) FROM \"orders\" AS \"t_a2\" WHERE \"t_a2\".\"store_id\" = (SELECT "
        "\"t_j1_1\".\"id\" FROM \"shops\" AS \"t_j1_1\" WHERE \"t_j1_1\".\"id\" = "
        "\"t\".\"store_id\"))");
    expr_sql_free(&q);
}

static void test_postgresql(void **st)
{
    expr_sql q;
    assert_ptr_equal(expr_dialect_find("postgresql"), &expr_dialect_postgresql);
    assert_ptr_equal(expr_dialect_find("sqlite"), &expr_dialect_sqlite);
    assert_null(expr_dialect_find("oracle"));
    assert_string_equal(
        sql_of(P, "tier == 'gold' and length(city) > 3", &expr_dialect_postgresql, &q),
        "((\"t\".\"tier\" = $1) AND (char_length(\"t\".\"city\") > $2))");
    expr_sql_free(&q);
    assert_string_equal(sql_of(P, "now() - created_at > 30d", &expr_dialect_postgresql, &q),
                        "(($1 - CAST(EXTRACT(EPOCH FROM \"t\".\"created_at\") AS BIGINT)) > $2)");
    expr_sql_free(&q);
    assert_string_equal(sql_of(P, "lower(city) == 'x'", &expr_dialect_postgresql, &q),
                        "(lower(\"t\".\"city\") = $1)");
    expr_sql_free(&q);
    assert_string_equal(sql_of(P, "consent_email == true", &expr_dialect_postgresql, &q),
                        "(\"t\".\"consent_email\" = $1)");
    assert_int_equal(q.params[0].type, BATON_T_BOOL);
    expr_sql_free(&q);
}

static void test_composition_and_errors(void **st)
{
    /* fragments share one parameter list: numbers continue */
    char err[256];
    expr *a = expr_compile_msg("tier == 'a'", P, 0, err, sizeof err);
    expr *b = expr_compile_msg("visits > 3", P, 0, err, sizeof err);
    expr_sql q;
    expr_sql_init(&q);
    buf_adds(&q.sql, "SELECT ");
    expr_sql_ident(&q, &expr_dialect_sqlite, "we\"ird");
    buf_adds(&q.sql, " FROM profiles AS t WHERE ");
    assert_int_equal(expr_to_sql(a, "t", &expr_dialect_sqlite, NOW, &q, err, sizeof err), 0);
    buf_adds(&q.sql, " AND ");
    assert_int_equal(expr_to_sql(b, "t", &expr_dialect_sqlite, NOW, &q, err, sizeof err), 0);
    buf_adds(&q.sql, " LIMIT ");
    baton_value ten = {.type = BATON_T_INT, .v.i = 10};
    expr_sql_param(&q, &expr_dialect_sqlite, &ten);
    assert_string_equal(q.sql.data, "SELECT \"we\"\"ird\" FROM profiles AS t WHERE (\"t\".\"tier\" "
                                    "= ?1) AND (\"t\".\"visits\" > ?2) LIMIT ?3");
    assert_int_equal(q.nparams, 3);
    /* it runs */
    sqlite3 *db;
    sqlite3_open(":memory:", &db);
    assert_int_equal(
        sqlite3_exec(db, "CREATE TABLE profiles(\"we\"\"ird\", tier, visits)", 0, 0, 0), SQLITE_OK);
    sqlite3_stmt *stmt;
    assert_int_equal(sqlite3_prepare_v2(db, q.sql.data, -1, &stmt, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_bind_parameter_count(stmt), 3);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    expr_sql_free(&q);
    expr_free(a);
    expr_free(b);

    /* names SQL cannot reach fail cleanly, leaving the fragment untouched */
    assert_string_equal(sql_of(J, "profile.tier == 'gold'", &expr_dialect_sqlite, &q),
                        "error:'profile.tier' cannot be computed in SQL: only fields of the "
                        "schema (and their links) can");
    assert_int_equal(q.nparams, 0);
    assert_string_equal(q.sql.data, "");
    expr_sql_free(&q);
    assert_string_equal(sql_of(J, "event.total > 3", &expr_dialect_sqlite, &q),
                        "error:'event.total' cannot be computed in SQL: only fields of the "
                        "schema (and their links) can");
    expr_sql_free(&q);
    expr *e = expr_compile_msg("tier == 'x'", P, 0, err, sizeof err);
    expr_sql_init(&q);
    assert_int_equal(expr_to_sql(e, NULL, &expr_dialect_sqlite, NOW, &q, err, sizeof err), -1);
    assert_string_equal(err, "expr_to_sql needs the alias of the current table");
    expr_sql_free(&q);
    expr_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fragments),
        cmocka_unit_test(test_links_and_aggregates),
        cmocka_unit_test(test_postgresql),
        cmocka_unit_test(test_composition_and_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
