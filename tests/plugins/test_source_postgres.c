/* source_postgres against a real PostgreSQL (tests/support/pg_server.c):
 * bound parameters of every type and the rows' shapes (as source_sqlite
 * gives them), NULLs, a nested exec from a row callback, temporary tables
 * kept on their thread's session, pg_temp.baton_hash equal to
 * source_sqlite's hash, pg_temp.baton_tz_local equal to the host's
 * reading of the tz database (DST changes included; NULL for an unknown
 * zone), columns() from the catalog, statement_timeout,
 * a wrong password (the password never shown), a server down at start
 * and a server restarted under a started instance (reconnect). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/zone.h"
#include "plugin/plugin_host.h"
#include "support/fs.h"
#include "support/instance.h"
#include "support/pg_server.h"

const baton_plugin *baton_plugin_entry(void);

static pg_server pg;
static instance *inst;

static instance *open_src(const char *conninfo, const char *extra, char *err, size_t errlen)
{
    char settings[1024];
    snprintf(settings, sizeof settings, "conninfo = \"%s\"; %s", conninfo, extra ? extra : "");
    return test_instance_new(baton_plugin_entry(), "sources", "crm", settings, 1, err, errlen);
}

static int setup(void **st)
{
    if (pg_server_start(&pg) != 0)
        return -1;
    char err[512];
    inst = open_src(pg.conninfo, "statement_timeout = \"1s\";", err, sizeof err);
    if (!inst) {
        fprintf(stderr, "instance: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **st)
{
    test_instance_free(inst);
    pg_server_stop(&pg);
    return 0;
}

/* Rows as "name=value,name=value;", each value tagged with its type. */
static int collect(void *ud, size_t ncols, const char *const *names, const baton_value *v)
{
    buf *b = ud;
    for (size_t i = 0; i < ncols; i++) {
        buf_addf(b, "%s%s=", i ? "," : "", names[i]);
        switch (v[i].type) {
        case BATON_T_INT: buf_addf(b, "i:%lld", (long long)v[i].v.i); break;
        case BATON_T_FLOAT: buf_addf(b, "f:%g", v[i].v.f); break;
        case BATON_T_STRING:
            buf_adds(b, "s:");
            buf_add(b, v[i].v.s.ptr, v[i].v.s.len);
            break;
        case BATON_T_NULL: buf_adds(b, "null"); break;
        default: buf_addf(b, "?%d", v[i].type);
        }
    }
    buf_addc(b, ';');
    return 0;
}

static char *run_on(instance *in, const char *sql, const baton_value *p, size_t n)
{
    const baton_source_ops *ops = instance_source(in);
    buf b;
    buf_init(&b);
    buf_adds(&b, "");
    char err[512];
    if (ops->exec(in->state, sql, p, n, collect, &b, err, sizeof err)) {
        buf_free(&b);
        buf_init(&b);
        buf_addf(&b, "error: %s", err);
    }
    return buf_steal(&b);
}

static char *run(const char *sql, const baton_value *p, size_t n)
{
    return run_on(inst, sql, p, n);
}

static void must(const char *sql)
{
    char *r = run(sql, NULL, 0);
    if (!strncmp(r, "error", 5))
        fail_msg("%s: %s", sql, r);
    free(r);
}

static void test_params_and_rows(void **st)
{
    must("DROP TABLE IF EXISTS t; CREATE TABLE t (id text PRIMARY KEY, n bigint, f double "
         "precision, b boolean, d date, ts timestamptz, x numeric, s text)");
    baton_value p[8] = {{.type = BATON_T_STRING, .v.s = {"p'1\"x", 5}},
                        {.type = BATON_T_INT, .v.i = -42},
                        {.type = BATON_T_FLOAT, .v.f = 59.9},
                        {.type = BATON_T_BOOL, .v.b = 1},
                        {.type = BATON_T_DATE, .v.date = 20000},         /* 2024-10-04 */
                        {.type = BATON_T_TIMESTAMP, .v.ts = 1795428000}, /* 2026-11-23T10:00:00Z */
                        {.type = BATON_T_FLOAT, .v.f = 12.5},
                        {.type = BATON_T_NULL}};
    char *r = run("INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", p, 8);
    assert_string_equal(r, "");
    free(r);
    r = run("SELECT id, n, f, b, d, ts, x, s, 3::numeric AS whole FROM t WHERE id = $1", p, 1);
    assert_string_equal(r, "id=s:p'1\"x,n=i:-42,f=f:59.9,b=i:1,d=s:2024-10-04,"
                           "ts=s:2026-11-23T10:00:00Z,x=f:12.5,s=null,whole=i:3;");
    free(r);
    /* a timestamp parameter meets the column as a timestamp, a date as a date */
    r = run("SELECT count(*) AS n FROM t WHERE ts = $6 AND d = $5 AND b = $4 AND n = $2", p, 6);
    assert_string_equal(r, "n=i:1;");
    free(r);
    /* the session is UTC whatever the server's zone (the test server's is Paris) */
    r = run("SELECT extract(hour FROM ts)::int AS h FROM t", NULL, 0);
    assert_string_equal(r, "h=i:10;");
    free(r);
    /* strings are `unknown`: they meet a uuid column as a uuid */
    must("DROP TABLE IF EXISTS u; CREATE TABLE u (id uuid)");
    must("INSERT INTO u VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11')");
    baton_value id = {.type = BATON_T_STRING, .v.s = {"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", 36}};
    r = run("SELECT count(*) AS n FROM u WHERE id = $1", &id, 1);
    assert_string_equal(r, "n=i:1;");
    free(r);
    /* an error is PostgreSQL's message */
    r = run("SELECT nope FROM t", NULL, 0);
    assert_string_equal(r, "error: column \"nope\" does not exist");
    free(r);
}

typedef struct nest {
    buf out;
    int rows;
} nest;

static int nested_row(void *ud, size_t n, const char *const *names, const baton_value *v)
{
    nest *c = ud;
    c->rows++;
    /* while the outer SELECT streams, read again on the same instance */
    char *r = run("SELECT count(*) AS c FROM generate_series(1, $1::int)", v, 1);
    buf_addf(&c->out, "%s", r);
    free(r);
    return 0;
}

static void test_nested_exec(void **st)
{
    const baton_source_ops *ops = instance_source(inst);
    nest c = {.rows = 0};
    buf_init(&c.out);
    buf_adds(&c.out, "");
    char err[256];
    assert_int_equal(ops->exec(inst->state, "SELECT i FROM generate_series(1, 3) i", NULL, 0,
                               nested_row, &c, err, sizeof err),
                     0);
    assert_int_equal(c.rows, 3);
    assert_string_equal(c.out.data, "c=i:1;c=i:2;c=i:3;");
    buf_free(&c.out);
}

/* Plan's work tables are temporary: the session that holds them stays
 * with its thread, while another thread's statements go elsewhere. */
static void *other_thread(void *arg)
{
    char *r = run("SELECT count(*) AS n FROM pg_temp.baton_plan_0_0", NULL, 0);
    return r;
}

static void test_temp_tables_stay(void **st)
{
    must("DROP TABLE IF EXISTS pg_temp.baton_plan_0_0");
    must("CREATE TABLE pg_temp.baton_plan_0_0 AS SELECT i AS _key FROM generate_series(1, 5) i");
    /* many statements later, on this thread, the table is there */
    for (int i = 0; i < 20; i++) {
        char *r = run("SELECT count(*) AS n FROM pg_temp.baton_plan_0_0", NULL, 0);
        assert_string_equal(r, "n=i:5;");
        free(r);
    }
    pthread_t t;
    pthread_create(&t, NULL, other_thread, NULL);
    char *r;
    pthread_join(t, (void **)&r);
    assert_non_null(strstr(r, "does not exist")); /* another session */
    free(r);
    must("DROP TABLE IF EXISTS pg_temp.baton_plan_0_0");
}

/* source_sqlite's baton_hash, as C. */
static int64_t ref_hash(int64_t seed, const char *t)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)seed;
    h *= 1099511628211ull;
    for (const unsigned char *p = (const unsigned char *)t; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (int64_t)(h >> 1);
}

typedef struct hashes {
    int n, bad;
    char first_bad[256];
} hashes;

static int check_hash(void *ud, size_t n, const char *const *names, const baton_value *v)
{
    hashes *h = ud;
    char key[128];
    snprintf(key, sizeof key, "%.*s", (int)v[1].v.s.len, v[1].v.s.ptr);
    int64_t want = ref_hash(v[0].v.i, key);
    h->n++;
    if (v[2].type != BATON_T_INT || v[2].v.i != want) {
        if (!h->bad++)
            snprintf(h->first_bad, sizeof h->first_bad, "seed %lld key '%s': %lld, want %lld",
                     (long long)v[0].v.i, key, (long long)v[2].v.i, (long long)want);
    }
    return 0;
}

static void test_hash_matches_sqlite(void **st)
{
    const baton_source_ops *ops = instance_source(inst);
    hashes h = {0};
    char err[256];
    int rc = ops->exec(inst->state,
                       "SELECT s.seed, k.key, pg_temp.baton_hash(s.seed, k.key) AS h FROM "
                       "(VALUES (0::bigint), (7), (-1), (42), (9223372036854775807), "
                       "(-9223372036854775808)) s(seed), (SELECT 'p' || i AS key FROM "
                       "generate_series(1, 300) i UNION ALL VALUES (''), ('Chloé'), "
                       "('日本語のキー'), ('a/b%c')) k",
                       NULL, 0, check_hash, &h, err, sizeof err);
    if (rc)
        fail_msg("%s", err);
    assert_int_equal(h.n, 6 * 304);
    if (h.bad)
        fail_msg("%d of %d differ; first: %s", h.bad, h.n, h.first_bad);
}

/* Each row: t, zone, pg_temp.baton_tz_local(t, zone), and the hour of that
 * wall clock as the postgresql dialect reads it. */
static int check_tz(void *ud, size_t n, const char *const *names, const baton_value *v)
{
    hashes *h = ud;
    char zname[64];
    snprintf(zname, sizeof zname, "%.*s", (int)v[1].v.s.len, v[1].v.s.ptr);
    int64_t t = v[0].v.i, want;
    int known = zone_local(zname, t, &want) == 0;
    h->n++;
    int ok = known ? v[2].type == BATON_T_INT && v[2].v.i == want && v[3].type == BATON_T_INT &&
                         v[3].v.i == (want % 86400 + 86400) % 86400 / 3600
                   : v[2].type == BATON_T_NULL && v[3].type == BATON_T_NULL;
    if (!ok && !h->bad++)
        snprintf(h->first_bad, sizeof h->first_bad, "t %lld zone '%s': %lld, want %lld%s",
                 (long long)t, zname, (long long)v[2].v.i, (long long)want,
                 known ? "" : " (unknown: NULL)");
    return 0;
}

static void test_tz_local_matches_host(void **st)
{
    const baton_source_ops *ops = instance_source(inst);
    hashes h = {0};
    char err[256];
    /* every 3 hours (at :00, :20 or :40) over 2026: both DST changes of
     * each zone; and around 1970 and 2040. One statement per zone (each
     * well inside the instance's 1 s statement_timeout on a loaded
     * machine), the function called once per row. */
    static const char *const zones[] = {
        "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata",
        "UTC",          "Mars/Olympus"};
    for (size_t k = 0; k < 6; k++) {
        baton_value z = {.type = BATON_T_STRING, .v.s = {zones[k], strlen(zones[k])}};
        int rc = ops->exec(inst->state,
                           "SELECT t, z, l, CAST(EXTRACT(HOUR FROM to_timestamp(l)) AS INTEGER) AS "
                           "h FROM (SELECT t.t, CAST($1 AS text) AS z, pg_temp.baton_tz_local(t.t, "
                           "$1) AS l FROM (SELECT 1767225600 + 3 * 3600 * i + 1200 * (i % 3) AS t "
                           "FROM generate_series(0, 2920) i UNION ALL VALUES (0::bigint), (-3600), "
                           "(2216505600)) t) x",
                           &z, 1, check_tz, &h, err, sizeof err);
        if (rc)
            fail_msg("%s: %s", zones[k], err);
    }
    assert_int_equal(h.n, 6 * 2924);
    if (h.bad)
        fail_msg("%d of %d differ; first: %s", h.bad, h.n, h.first_bad);
}

static int take_col(void *ud, size_t n, const char *const *names, const baton_value *v)
{
    buf *b = ud;
    buf_addf(b, "%.*s:%.*s ", (int)v[0].v.s.len, v[0].v.s.ptr, (int)v[1].v.s.len, v[1].v.s.ptr);
    return 0;
}

static void test_columns(void **st)
{
    const baton_source_ops *ops = instance_source(inst);
    buf b;
    buf_init(&b);
    buf_adds(&b, "");
    char err[256];
    assert_int_equal(ops->columns(inst->state, "t", take_col, &b, err, sizeof err), 0);
    assert_string_equal(b.data, "id:text n:bigint f:double precision b:boolean d:date "
                                "ts:timestamp with time zone x:numeric s:text ");
    buf_free(&b);
    assert_int_equal(ops->columns(inst->state, "no_such_table", NULL, NULL, err, sizeof err), 1);
    /* search_path decides which schema's table it is */
    must("CREATE SCHEMA IF NOT EXISTS crm; DROP TABLE IF EXISTS crm.only_here; "
         "CREATE TABLE crm.only_here (a int)");
    assert_int_equal(ops->columns(inst->state, "only_here", NULL, NULL, err, sizeof err), 1);
    char e2[512];
    instance *in2 = open_src(pg.conninfo, "search_path = \"crm, public\";", e2, sizeof e2);
    assert_non_null(in2);
    assert_int_equal(
        instance_source(in2)->columns(in2->state, "only_here", NULL, NULL, err, sizeof err), 0);
    assert_int_equal(instance_source(in2)->columns(in2->state, "t", NULL, NULL, err, sizeof err),
                     0);
    test_instance_free(in2);
}

static void test_statement_timeout(void **st)
{
    char *r = run("SELECT pg_sleep(3)", NULL, 0);
    assert_string_equal(r, "error: canceling statement due to statement timeout");
    free(r);
    r = run("SELECT 1 AS one", NULL, 0); /* the session goes on */
    assert_string_equal(r, "one=i:1;");
    free(r);
}

static void test_wrong_password(void **st)
{
    char conninfo[256], err[512];
    snprintf(conninfo, sizeof conninfo,
             "host=127.0.0.1 port=%d dbname=%s user=%s password=not-the-Pa55word-at-all", pg.port,
             PG_TEST_DB, PG_TEST_PW_USER);
    instance *in = open_src(conninfo, NULL, err, sizeof err);
    assert_null(in);
    assert_non_null(strstr(err, "password authentication failed"));
    assert_non_null(strstr(err, "127.0.0.1"));
    assert_null(strstr(err, "not-the-Pa55word"));
    /* the right one works */
    snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d dbname=%s user=%s password=%s",
             pg.port, PG_TEST_DB, PG_TEST_PW_USER, PG_TEST_PASSWORD);
    in = open_src(conninfo, NULL, err, sizeof err);
    if (!in)
        fail_msg("%s", err);
    char *r = run_on(in, "SELECT current_user AS u", NULL, 0);
    assert_string_equal(r, "u=s:" PG_TEST_PW_USER ";");
    free(r);
    test_instance_free(in);
}

static void test_server_down_at_start(void **st)
{
    char conninfo[256], err[512];
    int port = 1; /* nothing listens on 127.0.0.1:1 */
    snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d dbname=x user=y password=zz-top",
             port);
    instance *in = open_src(conninfo, "connect_timeout = \"2s\";", err, sizeof err);
    assert_null(in);
    assert_non_null(strstr(err, "127.0.0.1"));
    assert_non_null(strstr(err, "refused"));
    assert_null(strstr(err, "zz-top"));
}

/* The server goes away and comes back: the next statement reconnects. */
static void test_reconnect(void **st)
{
    char *r = run("SELECT 1 AS one", NULL, 0);
    assert_string_equal(r, "one=i:1;");
    free(r);
    pg_server_crash(&pg);
    r = run("SELECT 1 AS one", NULL, 0);
    if (!strstr(r, "error: ") || !strstr(r, "127.0.0.1"))
        fail_msg("%s", r);
    free(r);
    assert_int_equal(pg_server_restart(&pg), 0);
    r = run("SELECT 2 AS two", NULL, 0);
    assert_string_equal(r, "two=i:2;");
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_and_rows),       cmocka_unit_test(test_nested_exec),
        cmocka_unit_test(test_temp_tables_stay),      cmocka_unit_test(test_hash_matches_sqlite),
        cmocka_unit_test(test_tz_local_matches_host), cmocka_unit_test(test_columns),
        cmocka_unit_test(test_statement_timeout),     cmocka_unit_test(test_wrong_password),
        cmocka_unit_test(test_server_down_at_start),  cmocka_unit_test(test_reconnect),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
