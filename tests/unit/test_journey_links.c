/* Aggregates, {{#each}} and links of profile.* in journeys: rows read
 * from the profiles source (source_sqlite, the real plugin) once per
 * step, with the SQL path's answers (NULLs, empty sets, `where`,
 * dangling references), the per-link cap, load-time errors with
 * file:line, and a differential check against expr_to_sql on generated
 * data in the same database. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "plugin/app.h"
#include "delivery/dispatch.h"
#include "base/buf.h"
#include "lang/expr.h"
#include "scope/cond.h"
#include "journey/journey.h"
#include "journey/runner.h"
#include "journey/sim.h"
#include "scope/source.h"
#include "base/mem.h"
#include "schema/schema.h"
#include "schema/schema_source.h"
#include "support/fake_channel.h"
#include "support/fs.h"
#include "base/timefmt.h"

static const char ddl[] =
    "CREATE TABLE profiles (id TEXT PRIMARY KEY, email TEXT, phone TEXT, first_name TEXT,"
    " city TEXT, tier TEXT, birth_date TEXT, created_at TEXT, consent_email INTEGER,"
    " consent_sms INTEGER, consent_push INTEGER, score REAL);"
    "CREATE TABLE stores (id TEXT PRIMARY KEY, city TEXT, name TEXT);"
    "CREATE TABLE orders (id TEXT PRIMARY KEY, profile_id TEXT, store_id TEXT, amount REAL,"
    " created_at TEXT);"
    "CREATE INDEX orders_profile ON orders (profile_id);"
    "CREATE INDEX orders_store ON orders (store_id);";

/* p1 gold: four orders (one without amount, one at a store that does not
 * exist), two reservations; p2: nothing; p3: one order of NULLs; p4: more
 * orders than the cap; p9 has an order but no profile row. */
static const char fixture[] =
    "CREATE TABLE reservations (id TEXT PRIMARY KEY, profile_id TEXT, store_id TEXT,"
    " starts_at TEXT, party INTEGER, status TEXT);"
    "INSERT INTO stores VALUES ('s1', 'Paris', 'Opéra'), ('s2', 'Lyon', 'Bellecour'),"
    " ('s3', NULL, 'Nowhere');"
    "INSERT INTO profiles (id, first_name, tier) VALUES ('p1', 'Ann', 'gold'),"
    " ('p2', 'Bob', 'silver'), ('p3', 'Cy', NULL), ('p4', 'Di', 'gold');"
    "INSERT INTO orders VALUES ('o01', 'p1', 's1', 10.0, '2026-11-01T10:00:00Z'),"
    " ('o02', 'p1', 's2', 50.0, '2026-11-10T10:00:00Z'),"
    " ('o03', 'p1', 's1', NULL, '2026-11-20T10:00:00Z'),"
    " ('o04', 'p1', 'sX', 5.5, NULL),"
    " ('o05', 'p3', NULL, NULL, NULL),"
    " ('o06', 'p9', 's1', 7.0, '2026-11-02T10:00:00Z'),"
    " ('o07', NULL, 's1', 3.0, '2026-11-03T10:00:00Z');"
    "INSERT INTO orders WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n"
    " WHERE i < 1004) SELECT printf('q%04d', i), 'p4', NULL, 1.0, NULL FROM n;"
    "INSERT INTO reservations VALUES ('r1', 'p1', 's1', NULL, 2, 'ok'),"
    " ('r2', 'p1', 's2', NULL, 4, 'cancelled'), ('r3', 'p1', 's1', NULL, NULL, 'ok');";

typedef struct rig {
    char *dir, *cfg;
    app a;
    jsource *src;
    jcompile *cc;
    sqlite3 *db;
} rig;

static rig R;
static int row_reads; /* calls of the rows callback */
static int agg_reads; /* aggregates computed by the source (jagg_read) */
static int push;      /* scope(): aggregates computed by the source */

static int counting_aggs(void *ud, const char *profile_id, json_t **profile, size_t n,
                         jagg_read *reads, int64_t now, char *err, size_t errlen)
{
    agg_reads += (int)n;
    return jsource_aggs(ud, profile_id, profile, n, reads, now, err, errlen);
}

static json_t *counting_rows(void *ud, const struct schema_entity *ent,
                             const struct schema_field *col, const baton_value *v, size_t limit,
                             char *err, size_t errlen)
{
    row_reads++;
    return jsource_rows(ud, ent, col, v, limit, err, errlen);
}

static void rig_open(rig *g, const char *tag, const char *sql)
{
    g->dir = tmpdir_make(tag);
    char text[2048];
    snprintf(
        text, sizeof text,
        "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; log = { level = \"warn\"; }; };\n"
        "sources: { crm: { plugin = \"source_sqlite\"; path = \"crm.db\"; schema = "
        "\"%s/conf/schema.cfg\"; }; };\n"
        "profiles = \"crm\";\n"
        "channels: { email: { plugin = \"channel_directmail\"; dir = \"out\"; }; };\n",
        getenv("BATON_PLUGINS"), getenv("BATON_SRC"));
    g->cfg = file_write(g->dir, "baton.cfg", text);
    char *db = xasprintf("%s/crm.db", g->dir);
    assert_int_equal(sqlite3_open(db, &g->db), SQLITE_OK);
    free(db);
    char *e = NULL;
    if (sqlite3_exec(g->db, ddl, NULL, NULL, &e) != SQLITE_OK ||
        (sql && sqlite3_exec(g->db, sql, NULL, NULL, &e) != SQLITE_OK))
        fail_msg("fixture: %s", e);
    diag d;
    diag_init(&d);
    if (app_open(&g->a, g->cfg, 0, &d)) {
        diag_print(&d, stderr);
        fail_msg("app_open");
    }
    g->src = jsource_open(&g->a, &d);
    assert_int_equal(d.errors, 0);
    g->cc = jcompile_new(&g->a, NULL, 0, &d);
    diag_free(&d);
}

static void rig_close(rig *g)
{
    jcompile_free(g->cc);
    jsource_close(g->src);
    app_close(&g->a);
    sqlite3_close(g->db);
    tmpdir_remove(g->dir);
    free(g->dir);
    free(g->cfg);
}

static int setup(void **st)
{
    rig_open(&R, "jlinks", fixture);
    return 0;
}

static int teardown(void **st)
{
    rig_close(&R);
    return 0;
}

static json_t *scope_profile(void *ud, const char *id)
{
    return jsource_profile(ud, id);
}

static jscope scope(const rig *g, const char *profile, json_t *event)
{
    jscope s = {.profile_id = profile,
                .event = event,
                .now_ms = 1795428000000LL, /* 2026-11-23T10:00:00Z */
                .profile = scope_profile,
                .rows = counting_rows,
                .aggs = push ? counting_aggs : NULL,
                .ud = g->src};
    return s;
}

static jcond compile(const rig *g, const char *text)
{
    jcond c = {.text = (char *)text, .line = 1};
    diag d;
    diag_init(&d);
    jcond_compile(&c, g->cc, 0, "test.cfg", "node 'c'", "when", &d);
    if (!c.compiled) {
        diag_print(&d, stderr);
        fail_msg("'%s' does not compile", text);
    }
    diag_free(&d);
    return c;
}

/* The value of text for a profile, formatted ("null" for NULL). */
static char *value_of(const char *profile, const char *text)
{
    jcond c = compile(&R, text);
    json_t *ev =
        json_pack("{s:s, s:s, s:{s:f}}", "type", "go", "profile", profile, "data", "total", 20.0);
    jscope s = scope(&R, profile, ev);
    expr_arena arena;
    expr_arena_init(&arena);
    baton_value v;
    char err[256];
    if (jcond_eval(&c, &s, &arena, &v, err, sizeof err))
        fail_msg("%s for %s: %s", text, profile, err);
    buf b;
    buf_init(&b);
    buf_adds(&b, "");
    if (v.type == BATON_T_NULL)
        buf_adds(&b, "null");
    else
        expr_value_format(&v, &b);
    expr_arena_free(&arena);
    jscope_release(&s);
    jcond_release(&c);
    json_decref(ev);
    return buf_steal(&b);
}

/* Both ways: the aggregates evaluated from the rows read, and computed
 * by the source where it can. */
static void expect(const char *profile, const char *text, const char *want)
{
    for (push = 0; push < 2; push++) {
        char *got = value_of(profile, text);
        if (strcmp(got, want))
            fail_msg("%s for %s%s: got '%s', expected '%s'", text, profile,
                     push ? " (computed by the source)" : "", got, want);
        free(got);
    }
    push = 0;
}

static void test_aggregates(void **st)
{
    expect("p1", "count(profile.orders)", "4");
    expect("p1", "count(profile.orders.amount)", "3");
    expect("p1", "count(profile.orders where amount > 20)", "1");
    expect("p1", "sum(profile.orders.amount)", "65.5");
    expect("p1", "min(profile.orders.amount)", "5.5");
    expect("p1", "max(profile.orders.amount where amount < 50)", "10");
    expect("p1", "avg(profile.orders.amount where amount >= 10)", "30");
    expect("p1", "exists(profile.orders where amount is null)", "true");
    expect("p1", "exists(profile.orders where amount > 1000)", "false");
    expect("p1", "max(profile.orders.created_at)", "2026-11-20T10:00:00Z");
    expect("p1", "min(profile.orders.id where created_at is null)", "o04");
    /* a NULL in `where` is not true: the row is left out */
    expect("p1", "count(profile.orders where amount > 6 or created_at > now())", "2");
    /* outer names keep their meaning inside where */
    expect("p1", "count(profile.orders where amount > event.total)", "1");
    expect("p1", "count(profile.orders where profile.tier == 'gold')", "4");
    /* ints stay ints; a NULL party is skipped */
    expect("p1", "sum(profile.reservations.party where status == 'ok')", "2");
    expect("p1", "count(profile.orders) + count(profile.reservations)", "7");
}

static void test_empty_and_null(void **st)
{
    /* no linked rows: count 0, exists false, the others NULL (as SQL) */
    expect("p2", "count(profile.orders)", "0");
    expect("p2", "count(profile.orders.amount)", "0");
    expect("p2", "exists(profile.orders)", "false");
    expect("p2", "sum(profile.orders.amount)", "null");
    expect("p2", "avg(profile.orders.amount)", "null");
    expect("p2", "min(profile.orders.created_at)", "null");
    expect("p2", "coalesce(sum(profile.orders.amount), 0)", "0");
    expect("p2", "sum(profile.orders.amount) > 10", "null");
    /* rows of NULLs */
    expect("p3", "count(profile.orders)", "1");
    expect("p3", "count(profile.orders.amount)", "0");
    expect("p3", "sum(profile.orders.amount)", "null");
    expect("p3", "max(profile.orders.created_at)", "null");
    expect("p3", "count(profile.orders where store.city is null)", "1");
}

static void test_links_through_rows(void **st)
{
    /* many-to-one from a linked row; a dangling store reads as NULL */
    expect("p1", "count(profile.orders where store.city == 'Paris')", "2");
    expect("p1", "count(profile.orders where store.city is null)", "1");
    expect("p1", "min(profile.orders.store.name)", "Bellecour");
    /* an aggregate inside an aggregate: orders at stores with 3+ orders
     * (s1 has four, counting p9's and the one without a profile) */
    expect("p1", "count(profile.orders where count(store.orders) >= 3)", "2");
    expect("p1", "count(profile.orders where count(store.orders where profile_id is null) > 0)",
           "2");
}

static void test_missing_profile(void **st)
{
    /* no row in profiles: fields read NULL, profile.id is the event's,
     * and links go by that id, as profile.id does */
    expect("p9", "profile.tier is null", "true");
    expect("p9", "profile.id", "p9");
    expect("p9", "count(profile.orders)", "1");
    expect("p9", "sum(profile.orders.amount)", "7");
    expect("nobody", "count(profile.orders)", "0");
    expect("nobody", "exists(profile.orders)", "false");
}

static void test_one_read_per_step(void **st)
{
    jcond c = compile(&R, "count(profile.orders) + count(profile.orders where amount > 1) + "
                          "sum(profile.orders.amount)");
    json_t *ev = json_pack("{s:s}", "type", "go");
    jscope s = scope(&R, "p1", ev);
    expr_arena arena;
    expr_arena_init(&arena);
    baton_value v;
    char err[256];
    row_reads = 0;
    assert_int_equal(jcond_eval(&c, &s, &arena, &v, err, sizeof err), 0);
    assert_int_equal(row_reads, 1);
    assert_int_equal(jcond_eval(&c, &s, &arena, &v, err, sizeof err), 0);
    assert_int_equal(row_reads, 1); /* same step: cached */
    assert_true(v.type == BATON_T_FLOAT && v.v.f == 4 + 3 + 65.5);
    jscope_release(&s);
    /* the next step reads again, and sees what changed in between */
    assert_int_equal(sqlite3_exec(R.db,
                                  "INSERT INTO orders VALUES ('o99', 'p1', 's1', 100.0, NULL)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    s = scope(&R, "p1", ev);
    assert_int_equal(jcond_eval(&c, &s, &arena, &v, err, sizeof err), 0);
    assert_int_equal(row_reads, 2);
    assert_true(v.type == BATON_T_FLOAT && v.v.f == 5 + 4 + 165.5);
    jscope_release(&s);
    assert_int_equal(sqlite3_exec(R.db, "DELETE FROM orders WHERE id = 'o99'", NULL, NULL, NULL),
                     SQLITE_OK);
    expr_arena_free(&arena);
    jcond_release(&c);
    json_decref(ev);
}

/* count(profile.orders where ...) and the like computed by the source:
 * one statement per link, no rows read; what reads the event stays in
 * memory; the profile's fields come in the same call. */
static void test_pushed(void **st)
{
    struct {
        const char *text;
        int rows, aggs;
        const char *want;
    } cases[] = {
        {"count(profile.orders where amount > 20) + sum(profile.orders.amount) + "
         "count(profile.reservations where status == 'ok')",
         0, 2, "68.5"},
        {"count(profile.orders where amount > event.total)", 1, 1, "1"},
        {"count(profile.orders where amount > event.total) + count(profile.orders)", 1, 1, "5"},
        {"count(profile.orders) > 3 and profile.tier == 'gold'", 0, 1, "true"},
        {"max(profile.orders.created_at where created_at < now())", 0, 1, "2026-11-20T10:00:00Z"},
        {"min(profile.orders.store.city)", 0, 1, "Lyon"},
    };
    json_t *ev = json_pack("{s:s, s:{s:f}}", "type", "go", "data", "total", 20.0);
    push = 1;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        jcond c = compile(&R, cases[i].text);
        jscope s = scope(&R, "p1", ev);
        expr_arena arena;
        expr_arena_init(&arena);
        baton_value v;
        char err[256];
        row_reads = agg_reads = 0;
        if (jcond_eval(&c, &s, &arena, &v, err, sizeof err))
            fail_msg("%s: %s", cases[i].text, err);
        buf b;
        buf_init(&b);
        buf_adds(&b, "");
        expr_value_format(&v, &b);
        if (strcmp(b.data, cases[i].want) || row_reads != cases[i].rows ||
            agg_reads != cases[i].aggs)
            fail_msg("%s: '%s' with %d row read(s) and %d computed, expected '%s', %d and %d",
                     cases[i].text, b.data, row_reads, agg_reads, cases[i].want, cases[i].rows,
                     cases[i].aggs);
        /* the same step again: nothing read again */
        assert_int_equal(jcond_eval(&c, &s, &arena, &v, err, sizeof err), 0);
        assert_int_equal(row_reads, cases[i].rows);
        assert_int_equal(agg_reads, cases[i].aggs);
        buf_free(&b);
        expr_arena_free(&arena);
        jscope_release(&s);
        jcond_release(&c);
    }
    push = 0;
    json_decref(ev);
}

static void test_cap(void **st)
{
    /* 1005 orders: the first JSCOPE_LINK_ROWS by key, and a warning */
    fflush(stderr);
    int saved = dup(2);
    char *log = xasprintf("%s/stderr.log", R.dir);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0 && saved >= 0);
    dup2(fd, 2);
    close(fd);
    push = 1; /* the source counts 1005 rows and leaves the link to the evaluator */
    char *got = value_of("p4", "count(profile.orders)");
    char *max = value_of("p4", "max(profile.orders.id)");
    push = 0;
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char want[16];
    snprintf(want, sizeof want, "%d", JSCOPE_LINK_ROWS);
    assert_string_equal(got, want);
    assert_string_equal(max, "q0999");
    char *text = file_read(log, NULL);
    assert_non_null(text);
    if (!strstr(text, "'profile.orders' has more than 1000 rows in orders"))
        fail_msg("no warning in: %s", text);
    free(text);
    free(log);
    free(got);
    free(max);
}

static void test_each_and_errors(void **st)
{
    diag d;
    diag_init(&d);
    void *t = jtemplate_compile("{{#each profile.orders limit 2}}{{ id }}={{ amount }} at "
                                "{{ store.city }};{{/each}}",
                                0, R.cc, "t.cfg", 1, "node 's'", "text", &d);
    if (!t)
        diag_print(&d, stderr);
    assert_non_null(t);
    json_t *ev = json_pack("{s:s}", "type", "go");
    jscope s = scope(&R, "p1", ev);
    buf out;
    buf_init(&out);
    char err[256];
    assert_int_equal(jtemplate_render(t, &s, &out, err, sizeof err), 0);
    assert_string_equal(out.data, "o01=10 at Paris;o02=50 at Lyon;");
    buf_free(&out);
    jscope_release(&s);
    jtemplate_free(t);
    /* a table the database lacks: the evaluation fails, naming it */
    assert_int_equal(
        sqlite3_exec(R.db, "ALTER TABLE reservations RENAME TO gone", NULL, NULL, NULL), SQLITE_OK);
    jcond c = compile(&R, "count(profile.reservations) > 0");
    s = scope(&R, "p1", ev);
    int truth = -1;
    if (jcond_truth(&c, &s, &truth, err, sizeof err) != -1)
        fail_msg("a missing table gave %d", truth);
    if (!strstr(err, "reservations"))
        fail_msg("error does not name the table: %s", err);
    jscope_release(&s);
    /* no rows callback (no SQL profiles source): a clear error */
    s = scope(&R, "p1", ev);
    s.rows = NULL;
    assert_int_equal(jcond_truth(&c, &s, &truth, err, sizeof err), -1);
    assert_non_null(strstr(err, "'profile.reservations': linked rows cannot be read here"));
    jscope_release(&s);
    jcond_release(&c);
    assert_int_equal(
        sqlite3_exec(R.db, "ALTER TABLE gone RENAME TO reservations", NULL, NULL, NULL), SQLITE_OK);
    json_decref(ev);
    diag_free(&d);
}

/* ---- journey files ------------------------------------------------- */

static void test_load_errors(void **st)
{
    const char *text =
        "journey: { name = \"bad\"; entry = { event = \"go\"; };\n"
        "  start = \"c\"; nodes = (\n"
        "    { id = \"c\"; type = \"condition\";\n"
        "      branches = ( { when = \"count(profile.ordres) > 1\"; next = \"e\"; },\n"
        "                   { when = \"sum(profile.orders.amout) > 1\"; next = \"e\"; },\n"
        "                   { when = \"count(profile.tier) > 1\"; next = \"e\"; },\n"
        "                   { when = \"exists(profile.orders where stor.city == 'Paris')\"; next = "
        "\"e\"; } );\n"
        "      otherwise = \"s\"; },\n"
        "    { id = \"s\"; type = \"send\"; channel = \"x\"; text = \"{{#each "
        "profile.reservation}}x{{/each}}\"; next = \"e\"; },\n"
        "    { id = \"e\"; type = \"end\"; } ); };\n";
    char *path = file_write(R.dir, "bad.cfg", text);
    diag d;
    diag_init(&d);
    assert_null(journey_load(path, &R.a, &d));
    buf all;
    buf_init(&all);
    buf_adds(&all, "");
    for (size_t i = 0; i < d.n; i++)
        buf_addf(&all, "%s:%d: %s\n", d.v[i].file ? d.v[i].file : "", d.v[i].line, d.v[i].msg);
    const char *want[] = {"bad.cfg:4: node 'c': branches[0]: when: 1:7: unknown field 'ordres' in "
                          "profiles (did you mean 'orders'?)",
                          "bad.cfg:5: node 'c': branches[1]: when: 1:5: unknown field 'amout' in "
                          "orders (did you mean 'amount'?)",
                          "bad.cfg:6: node 'c': branches[2]: when: 1:7: 'tier' is a field of "
                          "profiles, not a one-to-many link",
                          "bad.cfg:7: node 'c': branches[3]: when: 1:29: unknown field or link "
                          "'stor' in orders (did you mean 'store'?)",
                          "bad.cfg:9: node 's': text: 1:9: unknown field 'reservation' in profiles "
                          "(did you mean 'reservations'?)",
                          NULL};
    for (const char *const *w = want; *w; w++)
        if (!strstr(all.data, *w))
            fail_msg("expected '%s' among:\n%s", *w, all.data);
    buf_free(&all);
    diag_free(&d);
    free(path);
}

static void test_journey_paths(void **st)
{
    const char *text = "journey: { name = \"loyal\"; entry = { event = \"go\"; filter = "
                       "\"exists(profile.orders)\"; };\n"
                       "  start = \"c\"; nodes = (\n"
                       "    { id = \"c\"; type = \"condition\";\n"
                       "      branches = ( { when = \"count(profile.orders where amount > "
                       "event.min) >= 1\"; next = \"big\"; } );\n"
                       "      otherwise = \"small\"; },\n"
                       "    { id = \"big\"; type = \"end\"; },\n"
                       "    { id = \"small\"; type = \"end\"; } ); };\n";
    char *path = file_write(R.dir, "loyal.cfg", text);
    char *events = file_write(R.dir, "events.jsonl",
                              "{\"id\": \"1\", \"type\": \"go\", \"profile\": \"p1\", \"time\": "
                              "\"2026-11-23T10:00:00Z\", \"data\": {\"min\": 20}}\n"
                              "{\"id\": \"2\", \"type\": \"go\", \"profile\": \"p2\", \"time\": "
                              "\"2026-11-23T10:00:00Z\", \"data\": {\"min\": 20}}\n"
                              "{\"id\": \"3\", \"type\": \"go\", \"profile\": \"p3\", \"time\": "
                              "\"2026-11-23T10:00:00Z\", \"data\": {\"min\": 20}}\n"
                              "{\"id\": \"4\", \"type\": \"go\", \"profile\": \"p9\", \"time\": "
                              "\"2026-11-23T10:00:00Z\", \"data\": {\"min\": 5}}\n");
    diag d;
    diag_init(&d);
    journey *j = journey_load(path, &R.a, &d);
    if (!j)
        diag_print(&d, stderr);
    assert_non_null(j);
    jengine_ops ops = {0};
    ops.ud = R.src;
    ops.profile = jsource_profile_cb;
    ops.lookup = jsource_lookup_cb;
    ops.rows = jsource_rows;
    json_t *out = NULL;
    char err[256];
    assert_int_equal(journey_simulate(j, &ops, events, INT64_MAX, &out, &d, err, sizeof err), 0);
    json_t *p = json_object_get(out, "profiles");
    char *s = json_dumps(p, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s,
                        "{\"p1\":{\"path\":[\"c\",\"big\"],\"sent\":[],\"state\":\"completed\"},"
                        "\"p3\":{\"path\":[\"c\",\"small\"],\"sent\":[],\"state\":\"completed\"},"
                        "\"p9\":{\"path\":[\"c\",\"big\"],\"sent\":[],\"state\":\"completed\"}}");
    free(s);
    json_decref(out);
    journey_free(j);
    diag_free(&d);
    free(path);
    free(events);
}

/* ---- the live runner (baton serve's engine) ------------------------- */

static int64_t fixed_clock(void)
{
    return 1795428000000LL;
}
static void no_ack(void *ud) {}

static int count_of(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    int n = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int(q, 0) : -1;
    sqlite3_finalize(q);
    return n;
}

/* Conditions through the engine's scope and templates through the
 * runner's: the condition routes by the orders, the send renders its
 * {{#each}} (a render that cannot read rows would mark it failed). */
static void test_live_runner(void **st)
{
    /* p9 has no profile row: missing_profile = "enter" lets it in */
    const char *text = "journey: { name = \"live\"; entry = { event = \"visit\"; "
                       "missing_profile = \"enter\"; };\n"
                       "  start = \"c\"; nodes = (\n"
                       "    { id = \"c\"; type = \"condition\";\n"
                       "      branches = ( { when = \"count(profile.orders where amount > 20) >= "
                       "1\"; next = \"mail\"; } );\n"
                       "      otherwise = \"small\"; },\n"
                       "    { id = \"mail\"; type = \"send\"; channel = \"email\"; subject = \"{{ "
                       "count(profile.orders) }} orders\";\n"
                       "      text = \"{{#each profile.orders limit 2}}{{ id }} at {{ store.city "
                       "}}\\n{{/each}}\"; next = \"done\"; },\n"
                       "    { id = \"small\"; type = \"end\"; },\n"
                       "    { id = \"done\"; type = \"end\"; } ); };\n";
    char *path = file_write(R.dir, "live.cfg", text);
    diag d;
    diag_init(&d);
    journey *j = journey_load(path, &R.a, &d);
    if (!j)
        diag_print(&d, stderr);
    assert_non_null(j);
    char err[512];
    char *sdir = xasprintf("%s/state", R.dir);
    store sto;
    assert_int_equal(store_open(&sto, sdir, err, sizeof err), 0);
    fake_channel_reset();
    instance *email = fake_channel_new("email", "connections = 1;", err, sizeof err);
    assert_non_null(email);
    dispatcher *dp = dispatch_open(email, &sto, &(dispatch_opts){0}, err, sizeof err);
    assert_non_null(dp);
    jchannel ch[] = {{"email", email, dp}};
    jrunner_opts o = {.clock_ms = fixed_clock, .queue = 100};
    jrunner *r = jrunner_start(&R.a, &sto, &j, 1, ch, 1, &o, err, sizeof err);
    if (!r)
        fail_msg("runner: %s", err);
    const char *profiles[] = {"p1", "p2", "p9"};
    for (int i = 0; i < 3; i++) {
        char json[256];
        snprintf(json, sizeof json, "{\"id\": \"v%d\", \"type\": \"visit\", \"profile\": \"%s\"}",
                 i, profiles[i]);
        assert_int_equal(jrunner_submit(r, NULL, json, strlen(json), no_ack, NULL), 0);
    }
    assert_int_equal(jrunner_drain(r, 5000), 0);
    assert_int_equal(dispatch_flush(dp, 5000), 0);
    assert_int_equal(jrunner_drain(r, 5000), 0);
    const char *done = "SELECT count(*) FROM journey_instances WHERE state = 'completed'";
    for (int i = 0; i < 500 && count_of(sto.db, done) != 3; i++)
        nanosleep(&(struct timespec){0, 10 * 1000000}, NULL);
    assert_int_equal(count_of(sto.db, done), 3);
    assert_int_equal(count_of(sto.db, "SELECT count(*) FROM journey_instances WHERE profile = "
                                      "'p1' AND path = 'c mail done'"),
                     1);
    assert_int_equal(count_of(sto.db, "SELECT count(*) FROM journey_instances WHERE profile = "
                                      "'p2' AND path = 'c small'"),
                     1);
    /* p9 has no profile row: its one order of 7 is not > 20 */
    assert_int_equal(count_of(sto.db, "SELECT count(*) FROM journey_instances WHERE profile = "
                                      "'p9' AND path = 'c small'"),
                     1);
    const char *sent = "SELECT count(*) FROM journey_send_outcomes WHERE profile = 'p1' AND "
                       "status = 'sent'";
    for (int i = 0; i < 500 && count_of(sto.db, sent) != 1; i++)
        nanosleep(&(struct timespec){0, 10 * 1000000}, NULL);
    assert_int_equal(count_of(sto.db, sent), 1);
    jrunner_stop(r);
    dispatch_close(dp, 1, 5000);
    assert_int_equal(fake_channel_total(), 1);
    fake_channel_free(email);
    store_close(&sto);
    journey_free(j);
    diag_free(&d);
    free(sdir);
    free(path);
}

/* ---- differential: the same aggregates through expr_to_sql -------- */

static uint64_t rng = 0x1eadba7cULL;
static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ULL;
}
static int pick(int n)
{
    return (int)(rnd() % (uint64_t)n);
}

#define DIFF_PROFILES 40
#define DIFF_ORDERS 400
#define DIFF_EXPRS 400
#define EVENT_TOTAL "12.5"

static const char *const cities[] = {"Paris", "Lyon", "Nice", "paris", "Zürich"};

static void diff_data(sqlite3 *db)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "INSERT INTO stores VALUES (?1, ?2, ?3)", -1, &st, NULL), SQLITE_OK);
    for (int i = 1; i <= 6; i++) {
        char id[8];
        snprintf(id, sizeof id, "s%d", i);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        if (i == 6)
            sqlite3_bind_null(st, 2);
        else
            sqlite3_bind_text(st, 2, cities[i - 1], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, id, -1, SQLITE_TRANSIENT);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    assert_int_equal(
        sqlite3_prepare_v2(db, "INSERT INTO profiles (id, tier, score) VALUES (?1, ?2, ?3)", -1,
                           &st, NULL),
        SQLITE_OK);
    for (int i = 1; i <= DIFF_PROFILES; i++) {
        char id[8];
        snprintf(id, sizeof id, "p%02d", i);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        static const char *const tiers[] = {"gold", "silver", NULL};
        const char *t = tiers[pick(3)];
        if (t)
            sqlite3_bind_text(st, 2, t, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 2);
        sqlite3_bind_double(st, 3, (pick(800) - 400) / 8.0);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    assert_int_equal(
        sqlite3_prepare_v2(db, "INSERT INTO orders VALUES (?1, ?2, ?3, ?4, ?5)", -1, &st, NULL),
        SQLITE_OK);
    for (int i = 1; i <= DIFF_ORDERS; i++) {
        char id[8], prof[8], shop[8], ts[21];
        snprintf(id, sizeof id, "o%03d", i);
        /* skewed: some profiles have many orders, the last ten none */
        int p = pick(3) ? pick(DIFF_PROFILES - 10) + 1 : pick(5) + 1;
        snprintf(prof, sizeof prof, "p%02d", p);
        snprintf(shop, sizeof shop, pick(20) ? "s%d" : "sx%d", pick(6) + 1);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        if (pick(30))
            sqlite3_bind_text(st, 2, prof, -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_null(st, 2);
        if (pick(15))
            sqlite3_bind_text(st, 3, shop, -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_null(st, 3);
        if (pick(8))
            sqlite3_bind_double(st, 4, (pick(1601) - 200) / 8.0); /* exact in binary */
        else
            sqlite3_bind_null(st, 4);
        /* the forms imported data holds besides the canonical one: with a
         * space, fractional seconds, an offset (seconds since 1970 need
         * an INTEGER column: in this TEXT one they are text no reader
         * reads) */
        int64_t t = 1767225600LL + (int64_t)pick(330) * 86400 + pick(86400);
        char when[40];
        timestamp_format(t, ts);
        int form = pick(4);
        if (form == 1 || form == 2) {
            ts[10] = ' ';
            ts[19] = '\0';
            snprintf(when, sizeof when, "%s%s", ts, form == 2 ? ".250" : "");
        } else if (form == 3) {
            timestamp_format(t + 7200, ts);
            ts[19] = '\0';
            snprintf(when, sizeof when, "%s+02:00", ts);
        } else {
            snprintf(when, sizeof when, "%s", ts);
        }
        if (pick(10))
            sqlite3_bind_text(st, 5, when, -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_null(st, 5);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
}

/* A `where` over orders; `$` is event.total in the journey, its value
 * in SQL (which cannot read events). */
static void gen_where(buf *j, buf *q, int depth)
{
    static const char *const leaves[] = {"amount > 50",
                                         "amount <= 10.5",
                                         "amount is null",
                                         "created_at > now() - 90d",
                                         "created_at is null",
                                         "store.city == 'Paris'",
                                         "store.city is null",
                                         "store_id in ['s1', 's2']",
                                         "lower(store.city) == 'paris'",
                                         "amount > $",
                                         "profile.tier == 'gold'",
                                         "count(store.orders) > 60",
                                         "sum(store.orders.amount) > 5000",
                                         "exists(store.orders where amount < 0)",
                                         "profile.score > amount"};
    int k = pick(depth > 0 ? 4 : 1);
    if (k == 1 || k == 2) {
        buf_addc(j, '(');
        buf_addc(q, '(');
        gen_where(j, q, depth - 1);
        const char *op = k == 1 ? " and " : " or ";
        buf_adds(j, op);
        buf_adds(q, op);
        gen_where(j, q, depth - 1);
        buf_addc(j, ')');
        buf_addc(q, ')');
        return;
    }
    if (k == 3) {
        buf_adds(j, "not ");
        buf_adds(q, "not ");
    }
    const char *l = leaves[pick(sizeof leaves / sizeof *leaves)];
    for (const char *p = l; *p; p++) {
        if (*p == '$') {
            buf_adds(j, "event.total");
            buf_adds(q, EVENT_TOTAL);
        } else {
            buf_addc(j, *p);
            buf_addc(q, *p);
        }
    }
}

static void gen_agg(buf *j, buf *q)
{
    static const char *const fns[] = {"count", "sum", "min", "max", "avg", "exists"};
    static const char *const vals[] = {"",    ".amount",     ".created_at",
                                       ".id", ".store.city", ".store_id"};
    const char *fn = fns[pick(6)];
    const char *val = "";
    if (!strcmp(fn, "sum") || !strcmp(fn, "avg"))
        val = ".amount";
    else if (strcmp(fn, "exists"))
        val = vals[pick(6)];
    if (!strcmp(fn, "min") || !strcmp(fn, "max"))
        val = vals[1 + pick(5)];
    buf_addf(j, "%s(profile.orders%s", fn, val);
    buf_addf(q, "%s(orders%s", fn, val);
    if (pick(4)) {
        buf_adds(j, " where ");
        buf_adds(q, " where ");
        gen_where(j, q, 2);
    }
    buf_addc(j, ')');
    buf_addc(q, ')');
}

static int same(const baton_value *m, sqlite3_stmt *st)
{
    int ct = sqlite3_column_type(st, 0);
    if (m->type == BATON_T_NULL || ct == SQLITE_NULL)
        return m->type == BATON_T_NULL && ct == SQLITE_NULL;
    switch (m->type) {
    case BATON_T_BOOL: return ct == SQLITE_INTEGER && sqlite3_column_int64(st, 0) == m->v.b;
    case BATON_T_INT: return ct == SQLITE_INTEGER && sqlite3_column_int64(st, 0) == m->v.i;
    case BATON_T_FLOAT: return ct == SQLITE_FLOAT && sqlite3_column_double(st, 0) == m->v.f;
    case BATON_T_STRING:
        return ct == SQLITE_TEXT && (size_t)sqlite3_column_bytes(st, 0) == m->v.s.len &&
               !memcmp(sqlite3_column_text(st, 0), m->v.s.ptr, m->v.s.len);
    case BATON_T_TIMESTAMP: {
        int64_t ts;
        const char *s = (const char *)sqlite3_column_text(st, 0);
        return ct == SQLITE_TEXT && timestamp_parse(s, strlen(s), &ts) == 0 && ts == m->v.ts;
    }
    default: return 0;
    }
}

static int value_same(const baton_value *a, const baton_value *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case BATON_T_NULL: return 1;
    case BATON_T_BOOL: return a->v.b == b->v.b;
    case BATON_T_FLOAT: return a->v.f == b->v.f;
    case BATON_T_STRING:
        return a->v.s.len == b->v.s.len && !memcmp(a->v.s.ptr, b->v.s.ptr, a->v.s.len);
    default: return a->v.i == b->v.i;
    }
}

/* Each value three ways: the journey's aggregates from the rows read, the
 * same computed by the source (where it can), and the campaign SQL. */
static void test_differential(void **st)
{
    rig g;
    rig_open(&g, "jlinks-diff", NULL);
    diff_data(g.db);
    schema *sch = schema_load_profiles(&g.a.conf, NULL);
    assert_non_null(sch);
    /* created_at holds several forms: what a campaign's sample finds */
    const schema_entity *oe = schema_entity_find(sch, "orders");
    for (size_t f = 0; f < oe->nfields; f++)
        if (oe->fields[f].type == BATON_T_TIMESTAMP)
            ((schema_field *)&oe->fields[f])->stored_any = 1;
    expr_scope *sqlsc = expr_scope_new(sch, schema_entity_find(sch, "profiles"));
    int64_t now = 1795428000; /* 2026-11-23T10:00:00Z */
    json_t *ev = json_pack("{s:s, s:{s:f}}", "type", "go", "data", "total", atof(EVENT_TOTAL));
    expr_arena arena;
    expr_arena_init(&arena);
    size_t compared = 0, nulls = 0, empty = 0, pushed = 0;
    int failures = 0;
    for (int i = 0; i < DIFF_EXPRS && failures < 5; i++) {
        buf jt, qt;
        buf_init(&jt);
        buf_init(&qt);
        buf_adds(&jt, "");
        buf_adds(&qt, "");
        gen_agg(&jt, &qt);
        static const char *const tails[] = {"", "", " is null", " is not null"};
        const char *tail = tails[pick(4)];
        buf_adds(&jt, tail);
        buf_adds(&qt, tail);
        char err[512];
        expr *qe = expr_compile_msg(qt.data, sqlsc, 0, err, sizeof err);
        if (!qe)
            fail_msg("SQL side does not compile: %s\n  %s", err, qt.data);
        jcond c = compile(&g, jt.data);
        expr_sql q;
        expr_sql_init(&q);
        buf_adds(&q.sql, "SELECT ");
        assert_int_equal(expr_to_sql(qe, "t", &expr_dialect_sqlite, now, &q, err, sizeof err), 0);
        buf_adds(&q.sql, " FROM \"profiles\" AS \"t\" ORDER BY \"id\"");
        sqlite3_stmt *stmt;
        if (sqlite3_prepare_v2(g.db, q.sql.data, -1, &stmt, NULL) != SQLITE_OK)
            fail_msg("%s\n  %s", sqlite3_errmsg(g.db), q.sql.data);
        for (size_t k = 0; k < q.nparams; k++) {
            const baton_value *v = &q.params[k];
            char tmp[32];
            switch (v->type) {
            case BATON_T_INT: sqlite3_bind_int64(stmt, (int)k + 1, v->v.i); break;
            case BATON_T_BOOL: sqlite3_bind_int(stmt, (int)k + 1, v->v.b); break;
            case BATON_T_DURATION: sqlite3_bind_int64(stmt, (int)k + 1, v->v.dur); break;
            case BATON_T_FLOAT: sqlite3_bind_double(stmt, (int)k + 1, v->v.f); break;
            case BATON_T_STRING:
                sqlite3_bind_text(stmt, (int)k + 1, v->v.s.ptr, (int)v->v.s.len, SQLITE_TRANSIENT);
                break;
            case BATON_T_TIMESTAMP:
                timestamp_format(v->v.ts, tmp);
                sqlite3_bind_text(stmt, (int)k + 1, tmp, -1, SQLITE_TRANSIENT);
                break;
            case BATON_T_DATE:
                date_format(v->v.date, tmp);
                sqlite3_bind_text(stmt, (int)k + 1, tmp, -1, SQLITE_TRANSIENT);
                break;
            default: sqlite3_bind_null(stmt, (int)k + 1); break;
            }
        }
        for (int p = 1; p <= DIFF_PROFILES; p++) {
            assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
            char id[8];
            snprintf(id, sizeof id, "p%02d", p);
            push = 0;
            jscope s = scope(&g, id, ev);
            baton_value m;
            if (jcond_eval(&c, &s, &arena, &m, err, sizeof err))
                fail_msg("%s for %s: %s", jt.data, id, err);
            push = 1;
            jscope s2 = scope(&g, id, ev);
            baton_value m2;
            row_reads = 0;
            if (jcond_eval(&c, &s2, &arena, &m2, err, sizeof err))
                fail_msg("%s for %s (computed by the source): %s", jt.data, id, err);
            push = 0;
            pushed += row_reads == 0;
            if (!value_same(&m, &m2)) {
                buf mb, pb;
                buf_init(&mb);
                buf_init(&pb);
                buf_adds(&mb, "");
                buf_adds(&pb, "");
                expr_value_format(&m, &mb);
                expr_value_format(&m2, &pb);
                print_error("DISAGREE for %s: from the rows [%d] '%s', computed by the source "
                            "[%d] '%s'\n  journey: %s\n",
                            id, m.type, mb.data, m2.type, pb.data, jt.data);
                buf_free(&mb);
                buf_free(&pb);
                failures++;
            }
            jscope_release(&s2);
            if (!same(&m, stmt)) {
                buf mb;
                buf_init(&mb);
                buf_adds(&mb, "");
                expr_value_format(&m, &mb);
                print_error("DISAGREE for %s: journey [%d] '%s', SQL '%s'\n  journey: %s\n  sql: "
                            "%s\n",
                            id, m.type, mb.data, sqlite3_column_text(stmt, 0), jt.data, q.sql.data);
                buf_free(&mb);
                failures++;
            }
            compared++;
            nulls += m.type == BATON_T_NULL;
            empty += p > DIFF_PROFILES - 10;
            jscope_release(&s);
            expr_arena_reset(&arena);
        }
        sqlite3_finalize(stmt);
        expr_sql_free(&q);
        expr_free(qe);
        jcond_release(&c);
        buf_free(&jt);
        buf_free(&qt);
    }
    print_message("journey aggregates vs SQL: %zu values compared (%zu NULL, %zu on profiles "
                  "without orders, %zu computed by the source), %d disagreements\n",
                  compared, nulls, empty, pushed, failures);
    assert_int_equal(failures, 0);
    assert_true(compared >= (size_t)DIFF_EXPRS * DIFF_PROFILES);
    assert_true(nulls > compared / 20);
    assert_true(empty >= compared / 5); /* empty sets are a real part of it */
    /* both ways were exercised: by the source, and from the rows (a where
     * reading event.total) */
    assert_true(pushed > compared / 2 && compared - pushed > compared / 20);
    expr_arena_free(&arena);
    json_decref(ev);
    expr_scope_free(sqlsc);
    schema_destroy(sch);
    rig_close(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aggregates),
        cmocka_unit_test(test_empty_and_null),
        cmocka_unit_test(test_links_through_rows),
        cmocka_unit_test(test_missing_profile),
        cmocka_unit_test(test_one_read_per_step),
        cmocka_unit_test(test_pushed),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_each_and_errors),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_journey_paths),
        cmocka_unit_test(test_live_runner),
        cmocka_unit_test(test_differential),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
