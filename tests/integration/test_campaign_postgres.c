/* Campaigns on PostgreSQL against the same campaigns on SQLite: one
 * private server for the binary (tests/support/pg_server.c), the sample
 * CRM written into both by `baton sample-data` with the same seed and
 * reference time (identical rows: NULL emails, tiers and amounts,
 * timestamps, dates, bools), then generated campaigns (every targeting
 * activity, links, aggregates, splits with seeds, change of dimension)
 * planned on both give the same counts, and runs export the same
 * messages (keys and rendered columns). A run's work tables are UNLOGGED
 * tables of the schema baton_work, dropped when it ends; those of runs
 * that are gone are swept at the next run's start; saved audiences
 * persist in the database. `journey test` reads profile.*, linked rows
 * and aggregates alike from both. Runs in this process deliver the same
 * messages (keys and rendered text) to the fake channel from either
 * source; a server killed during a run (as a send starts, or in the
 * middle of a send's streaming SELECT) fails it with the reason, and
 * --resume after the restart finishes it (its UNLOGGED tables emptied by
 * the crash recovery are computed again), sending nothing twice. Bad input: a wrong password and a
 * server that is down (the host named, exit 1), a missing table named by check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sqlite3.h>
#include <string.h>

#include "base/buf.h"
#include "campaign/engine.h"
#include "delivery/dispatch.h"
#include "plugin/app.h"
#include "scope/cond.h"
#include "scope/source.h"
#include "store/store.h"
#include "support/fake_channel.h"
#include "support/fs.h"
#include "support/pg_server.h"

#define NOW 1790000000 /* the sample's reference time: 2026-09-21 */

static pg_server pg;
static char *dir, *sq_cfg, *pg_cfg;

static char *write_cfg(const char *name, const char *source, const char *var)
{
    char *text;
    if (asprintf(&text,
                 "baton: { data_dir = \"%s\"; plugin_path = [ \"%s\" ]; log = { level = "
                 "\"warn\"; }; };\n"
                 "sources: { crm: { %s schema = \"%s/conf/schema.cfg\"; }; };\n"
                 "profiles = \"crm\";\n"
                 "channels: { mail: { plugin = \"channel_directmail\"; dir = \"%s/exports\"; "
                 "}; };\n"
                 "campaigns = [ \"campaigns\" ];\n",
                 var, getenv("BATON_PLUGINS"), source, getenv("BATON_SRC"), var) < 0)
        abort();
    char *path = file_write(dir, name, text);
    free(text);
    return path;
}

static int setup(void **st)
{
    if (!getenv("BATON_BIN") || pg_server_start(&pg) != 0)
        return -1;
    dir = tmpdir_make("campaign-pg");
    char *cd = NULL;
    if (asprintf(&cd, "%s/campaigns", dir) < 0)
        abort();
    char *cmd = NULL;
    if (asprintf(&cmd, "mkdir -p %s", cd) < 0)
        abort();
    run_capture(cmd, NULL, NULL);
    free(cmd);
    free(cd);
    sq_cfg = write_cfg("sqlite.cfg", "plugin = \"source_sqlite\"; path = \"var/crm.db\";", "var");
    char src[512];
    snprintf(src, sizeof src, "plugin = \"source_postgres\"; conninfo = \"%s\";", pg.conninfo);
    pg_cfg = write_cfg("pg.cfg", src, "varpg");
    const char *cfgs[] = {sq_cfg, pg_cfg};
    for (int i = 0; i < 2; i++) {
        char *out = NULL, *err = NULL;
        int rc =
            run_baton(dir, cfgs[i], &out, &err,
                      "sample-data --profiles 1500 --orders 4 --stores 12 --seed 5 --now %d", NOW);
        if (rc != 0)
            fprintf(stderr, "sample-data: %s%s\n", out ? out : "", err ? err : "");
        free(out);
        free(err);
        if (rc != 0)
            return -1;
    }
    return 0;
}

static int teardown(void **st)
{
    pg_server_stop(&pg);
    if (dir)
        tmpdir_remove(dir);
    free(dir);
    free(sq_cfg);
    free(pg_cfg);
    return 0;
}

static char *sqlite_out(const char *sql)
{
    char *cmd, *out = NULL;
    if (asprintf(&cmd, "sqlite3 -separator '|' %s/var/crm.db \"%s\"", dir, sql) < 0)
        abort();
    int rc = run_capture(cmd, &out, NULL);
    free(cmd);
    assert_int_equal(rc, 0);
    return out;
}

/* Both sources hold the same rows, column by column, in text. */
static void test_same_sample_data(void **st)
{
    static const char *const q[][2] = {
        {"SELECT id, email, phone, first_name, city, tier, birth_date, created_at, "
         "consent_email, consent_sms, consent_push, printf('%.2f', score) FROM profiles ORDER BY "
         "id",
         "SELECT id, email, phone, first_name, city, tier, birth_date, "
         "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
         "consent_email::int, consent_sms::int, consent_push::int, score::numeric(8, 2) FROM "
         "profiles ORDER BY id"},
        {"SELECT id, profile_id, store_id, CASE WHEN amount IS NULL THEN '' ELSE printf('%.2f', "
         "amount) END, created_at FROM orders ORDER BY id",
         "SELECT id, profile_id, store_id, amount::numeric(10, 2), to_char(created_at AT TIME ZONE "
         "'UTC', "
         "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM orders ORDER BY id"},
        {"SELECT * FROM reservations ORDER BY id",
         "SELECT id, profile_id, store_id, to_char(starts_at AT TIME ZONE 'UTC', "
         "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), party, status FROM reservations ORDER BY id"},
        {"SELECT * FROM stores ORDER BY id", "SELECT * FROM stores ORDER BY id"}};
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        char *a = sqlite_out(q[i][0]), *b = NULL;
        assert_int_equal(pg_server_psql(&pg, q[i][1], &b), 0);
        assert_true(strlen(a) > 100);
        assert_string_equal(a, b);
        free(a);
        free(b);
    }
}

/* ------------------------------------------------------------------ */
/* Generated campaigns                                                 */
/* ------------------------------------------------------------------ */

static uint64_t rng;
static unsigned pick(unsigned n)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)((rng >> 33) % n);
}

static const char *const profile_filters[] = {
    "tier == 'gold'",
    "tier is null",
    "tier in ['silver', 'bronze'] and consent_email",
    "not consent_sms",
    "consent_email is null",
    "email is not null and city == 'Paris'",
    "created_at > timestamp('2025-06-01T00:00:00Z')",
    "birth_date < date('1980-01-01') or score > 80",
    "year(birth_date) == 1975 or month(created_at) == 3",
    "count(orders where amount > 150) >= 2",
    "sum(orders.amount) > 800",
    "avg(orders.amount) > 160",
    "min(orders.amount) < 20",
    "max(orders.created_at) > timestamp('2026-06-01T00:00:00Z')",
    "exists(reservations where party > 5)",
    "count(orders where store.city == 'Lyon') > 0",
    "not exists(orders where created_at > timestamp('2026-03-01T00:00:00Z'))",
    "starts_with(first_name, 'M') or contains(email, '7')",
    "length(city) > 5 and score >= 25.5",
    "coalesce(sum(orders.amount where amount > 200), 0) > 300",
    "count(orders where amount is null) > 0",
    "store_count >= 2"};
static const char *const order_filters[] = {
    "amount > 100", "store.city == 'Paris'", "amount is null",
    "created_at > timestamp('2026-01-01T00:00:00Z') and amount < 150", "profile.tier == 'gold'"};
static const char *const orders_by[] = {"score desc", "created_at desc", "birth_date, city desc",
                                        "spent desc"};

static void gen_campaign(buf *b, unsigned seed)
{
    rng = seed * 2654435761u + 1;
    const unsigned nf = sizeof profile_filters / sizeof profile_filters[0];
    buf_addf(b, "campaign: {\n  name = \"gen%u\";\n  activities = (\n", seed);
    /* store_count is an enrich's column: only after rich */
    buf_addf(
        b,
        "    { id = \"a\"; type = \"build_audience\"; dimension = \"profiles\"; filter = \"%s\"; "
        "},\n",
        profile_filters[pick(nf - 1)]);
    buf_addf(
        b,
        "    { id = \"b\"; type = \"build_audience\"; dimension = \"profiles\"; filter = \"%s\"; "
        "},\n",
        profile_filters[pick(nf - 1)]);
    static const char *const ops[] = {"union", "intersection", "exclusion"};
    buf_addf(b,
             "    { id = \"c\"; type = \"combine\"; op = \"%s\"; inputs = [ \"a\", \"b\" ]; },\n",
             ops[pick(3)]);
    static const char *const by[] = {"city", "tier", "email", "lower(first_name)"};
    buf_addf(
        b,
        "    { id = \"d\"; type = \"deduplicate\"; input = \"c\"; by = [ \"%s\" ]; keep = \"%s\"; "
        "},\n",
        by[pick(4)], orders_by[pick(3)]);
    buf_adds(
        b,
        "    { id = \"rich\"; type = \"enrich\"; input = \"d\"; add = (\n"
        "      { name = \"spent\"; value = \"coalesce(sum(orders.amount), 0)\"; },\n"
        "      { name = \"store_count\"; value = \"count(orders where store_id is not null)\"; },\n"
        "      { name = \"last\"; value = \"max(orders.created_at)\"; } ); },\n");
    buf_addf(
        b,
        "    { id = \"r\"; type = \"build_audience\"; dimension = \"profiles\"; filter = \"%s\"; "
        "},\n",
        profile_filters[pick(nf - 1)]);
    switch (pick(3)) {
    case 0:
        buf_addf(
            b,
            "    { id = \"s\"; type = \"split\"; input = \"rich\"; mode = \"random\"; seed = %u;\n"
            "      branches = ( { name = \"x\"; percent = %u; }, { name = \"y\"; remainder = "
            "true; } ); },\n",
            pick(1000), 10 + pick(80));
        break;
    case 1:
        buf_addf(b,
                 "    { id = \"s\"; type = \"split\"; input = \"rich\"; mode = \"limit\"; order = "
                 "\"%s\";\n"
                 "      branches = ( { name = \"x\"; limit = %u; }, { name = \"y\"; remainder = "
                 "true; } ); },\n",
                 orders_by[pick(4)], 5 + pick(300));
        break;
    default:
        buf_addf(b,
                 "    { id = \"s\"; type = \"split\"; input = \"rich\"; exclusive = %s;\n"
                 "      branches = ( { name = \"x\"; filter = \"spent > %u or %s\"; }, { name = "
                 "\"z\"; filter = \"last > timestamp('2026-05-01T00:00:00Z')\"; },\n"
                 "                   { name = \"y\"; remainder = true; } ); },\n",
                 pick(2) ? "true" : "false", 100 + pick(900), profile_filters[pick(nf)]);
        buf_adds(b, "    { id = \"zend\"; type = \"end\"; input = \"s.z\"; },\n");
    }
    buf_addf(
        b,
        "    { id = \"o\"; type = \"change_dimension\"; input = \"s.x\"; to = \"orders\"; filter "
        "= \"%s\"; },\n",
        order_filters[pick(sizeof order_filters / sizeof order_filters[0])]);
    buf_adds(
        b,
        "    { id = \"back\"; type = \"change_dimension\"; input = \"o\"; to = \"profiles\"; },\n"
        "    { id = \"st\"; type = \"change_dimension\"; input = \"o\"; to = \"stores\"; },\n"
        "    { id = \"rend\"; type = \"end\"; input = \"r\"; },\n"
        "    { id = \"stend\"; type = \"end\"; input = \"st\"; },\n"
        "    { id = \"u\"; type = \"combine\"; op = \"union\"; inputs = [ \"back\", \"s.y\" ]; "
        "},\n"
        "    { id = \"letter\"; type = \"send\"; channel = \"mail\"; input = \"u\";\n"
        "      columns = [ \"first_name\", \"tier\", \"birth_date\", \"created_at\", "
        "\"consent_email\", \"round(score, 1)\", \"count(orders)\", \"round(sum(orders.amount), "
        "2)\", \"max(orders.created_at)\", \"exists(reservations where status == "
        "'cancelled')\" ]; }\n"
        "  );\n};\n");
}

/* baton ARGS with cfg; its stdout, after a success. */
static char *baton_ok(const char *cfg, const char *args)
{
    char *out = NULL, *err = NULL;
    int rc = run_baton(dir, cfg, &out, &err, "%s", args);
    if (rc != 0)
        fail_msg("baton %s (%s): exit %d: %s%s", args, cfg, rc, out ? out : "", err ? err : "");
    free(err);
    return out;
}

static void test_generated_plans_agree(void **st)
{
    unsigned nonzero = 0;
    for (unsigned seed = 1; seed <= 24; seed++) {
        buf b;
        buf_init(&b);
        gen_campaign(&b, seed);
        char name[64];
        snprintf(name, sizeof name, "campaigns/gen%u.cfg", seed);
        free(file_write(dir, name, b.data));
        char args[128];
        snprintf(args, sizeof args, "campaign plan %s --json", name);
        char *a = baton_ok(sq_cfg, args);
        char *p = baton_ok(pg_cfg, args);
        if (strcmp(a, p) != 0)
            fail_msg("campaign %u: SQLite and PostgreSQL differ\n%s\n--- sqlite\n%s\n--- "
                     "postgresql\n%s",
                     seed, b.data, a, p);
        nonzero += strstr(a, "\"letter\": 0") == NULL;
        free(a);
        free(p);
        buf_free(&b);
    }
    assert_true(nonzero >= 12); /* the campaigns select something */
}

/* A file's lines, sorted (a send's rows come in no set order). */
static char *sorted(const char *path)
{
    char *cmd, *out = NULL;
    if (asprintf(&cmd, "LC_ALL=C sort %s", path) < 0)
        abort();
    assert_int_equal(run_capture(cmd, &out, NULL), 0);
    free(cmd);
    return out;
}

/* A run: the same export on both (every message's key and columns), its
 * work tables gone at the end, the saved audience kept in the database. */
static void test_runs_export_the_same(void **st)
{
    buf b;
    buf_init(&b);
    gen_campaign(&b, 3);
    /* a save and a read of the audience in the same run */
    char *text = b.data;
    char *cut = strstr(text, "    { id = \"letter\"");
    assert_non_null(cut);
    buf c;
    buf_init(&c);
    buf_add(&c, text, (size_t)(cut - text));
    buf_adds(
        &c,
        "    { id = \"keep\"; type = \"save_audience\"; input = \"rich\"; name = \"gen_u\"; },\n"
        "    { id = \"kend\"; type = \"end\"; input = \"keep\"; },\n");
    buf_adds(&c, cut);
    char *body = c.data;
    /* rename the campaign so that its exports have their own names */
    char *nm = strstr(body, "gen3");
    memcpy(nm, "run3", 4);
    free(file_write(dir, "campaigns/run3.cfg", body));
    char *a = baton_ok(sq_cfg, "campaign run run3");
    char *p = baton_ok(pg_cfg, "campaign run run3");
    free(a);
    free(p);
    char *pa = NULL, *pb = NULL;
    if (asprintf(&pa, "%s/var/exports/run3-1-letter.csv", dir) < 0 ||
        asprintf(&pb, "%s/varpg/exports/run3-1-letter.csv", dir) < 0)
        abort();
    char *ea = sorted(pa), *eb = sorted(pb);
    assert_true(strlen(ea) > 200);
    assert_string_equal(ea, eb);
    free(ea);
    free(eb);
    free(pa);
    free(pb);
    /* no work table left; the audience saved with its rows */
    char *out = NULL;
    assert_int_equal(pg_server_psql(&pg,
                                    "SELECT count(*) FROM pg_tables WHERE schemaname = "
                                    "'baton_work'; SELECT count(*) > 0 FROM baton_audience_gen_u; "
                                    "SELECT dimension FROM baton_audiences WHERE name = 'gen_u'",
                                    &out),
                     0);
    assert_string_equal(out, "0\nt\nprofiles\n");
    free(out);
    /* read back in another campaign, with a reconciled file */
    buf csv;
    buf_init(&csv);
    buf_adds(&csv, "email,item\n");
    char *emails = NULL; /* the saved audience's, and others */
    assert_int_equal(pg_server_psql(&pg,
                                    "SELECT p.email FROM baton_audience_gen_u a JOIN profiles p ON "
                                    "p.id = a._key WHERE p.email IS NOT NULL",
                                    &emails),
                     0);
    int i = 0;
    for (char *line = strtok(emails, "\n"); line; line = strtok(NULL, "\n"))
        buf_addf(&csv, "%s,\"item %d, \"\"red\"\"\"\n", line, i++);
    free(emails);
    for (i = 1; i <= 400; i += 3)
        buf_addf(&csv, "user%d@example.com,\"item %d, \"\"red\"\"\"\n", i, i);
    buf_adds(&csv, "nobody@example.org,scarf\n");
    free(file_write(dir, "returns.csv", csv.data));
    buf_free(&csv);
    free(file_write(dir, "campaigns/back.cfg",
                    "campaign: { name = \"back\"; activities = (\n"
                    "  { id = \"ret\"; type = \"reconcile\"; file = \"../returns.csv\"; "
                    "dimension = \"profiles\"; column = \"email\"; },\n"
                    "  { id = \"saved\"; type = \"read_audience\"; name = \"gen_u\"; },\n"
                    "  { id = \"both\"; type = \"combine\"; op = \"intersection\"; inputs = [ "
                    "\"ret\", \"saved\" ]; },\n"
                    "  { id = \"out\"; type = \"send\"; channel = \"mail\"; input = \"both\"; "
                    "columns = [ \"first_name\", \"item\", \"score\" ]; } ); };\n"));
    a = baton_ok(sq_cfg, "campaign run back");
    p = baton_ok(pg_cfg, "campaign run back");
    free(a);
    if (asprintf(&pa, "%s/var/exports/back-2-out.csv", dir) < 0 ||
        asprintf(&pb, "%s/varpg/exports/back-2-out.csv", dir) < 0)
        abort();
    ea = sorted(pa);
    eb = sorted(pb);
    if (!strstr(ea, "red"))
        fail_msg("back: %s", ea);
    free(p);
    assert_string_equal(ea, eb);
    free(ea);
    free(eb);
    free(pa);
    free(pb);
    buf_free(&b);
    buf_free(&c);
}

/* The export of a campaign's send in a data_dir, sorted (one file). */
static char *export_of(const char *var, const char *pattern)
{
    char *cmd, *out = NULL;
    if (asprintf(&cmd, "LC_ALL=C sort %s/%s/exports/%s", dir, var, pattern) < 0)
        abort();
    assert_int_equal(run_capture(cmd, &out, NULL), 0);
    free(cmd);
    return out;
}

/* The control activities and saved columns on both databases: an enrich
 * saved and read back with its column, a test, an or_join and an
 * incremental audience give the same export; a second run targets no one
 * on either (the keys in each data_dir's state store). */
static void test_control_activities_agree(void **st)
{
    free(file_write(
        dir, "campaigns/ctls.cfg",
        "campaign: { name = \"ctls\"; activities = (\n"
        "  { id = \"g\"; type = \"build_audience\"; dimension = \"profiles\"; filter = "
        "\"score > 40\"; },\n"
        "  { id = \"e\"; type = \"enrich\"; input = \"g\"; add = ( { name = \"spent\"; "
        "value = \"round(sum(orders.amount), 2)\"; } ); },\n"
        "  { id = \"s\"; type = \"save_audience\"; input = \"e\"; name = \"ctl_spent\"; },\n"
        "  { id = \"z\"; type = \"end\"; input = \"s\"; } ); };\n"));
    free(baton_ok(sq_cfg, "campaign run ctls"));
    free(baton_ok(pg_cfg, "campaign run ctls"));
    free(file_write(
        dir, "campaigns/ctl.cfg",
        "campaign: { name = \"ctl\"; retention = \"30d\"; activities = (\n"
        "  { id = \"r\"; type = \"read_audience\"; name = \"ctl_spent\"; },\n"
        "  { id = \"inc\"; type = \"build_audience\"; dimension = \"profiles\"; filter "
        "= \"tier == 'gold'\"; incremental = true; },\n"
        "  { id = \"both\"; type = \"combine\"; op = \"intersection\"; inputs = [ \"r\", "
        "\"inc\" ]; },\n"
        "  { id = \"j\"; type = \"or_join\"; inputs = [ \"both\", \"inc\" ]; },\n"
        "  { id = \"t\"; type = \"test\"; input = \"j\"; when = \"count(input) > 0 and "
        "count(r) > count(both)\"; },\n"
        "  { id = \"x\"; type = \"send\"; channel = \"mail\"; input = \"t.then\"; "
        "columns = [ \"id\", \"spent\" ]; } ); };\n"));
    char *a = baton_ok(sq_cfg, "campaign plan ctl --json");
    char *p = baton_ok(pg_cfg, "campaign plan ctl --json");
    assert_string_equal(a, p);
    assert_null(strstr(a, "\"x\": 0"));
    free(a);
    free(p);
    free(baton_ok(sq_cfg, "campaign run ctl"));
    free(baton_ok(pg_cfg, "campaign run ctl"));
    char *ea = export_of("var", "ctl-*-x.csv"), *eb = export_of("varpg", "ctl-*-x.csv");
    assert_true(strlen(ea) > 100);
    assert_non_null(strstr(ea, "id,spent\r\n")); /* read back from the saved audience */
    assert_string_equal(ea, eb);
    free(ea);
    free(eb);
    /* nobody twice */
    a = baton_ok(sq_cfg, "campaign plan ctl --json");
    p = baton_ok(pg_cfg, "campaign plan ctl --json");
    assert_string_equal(a, p);
    assert_non_null(strstr(a, "\"inc\": 0"));
    free(a);
    free(p);
}

/* A failed run keeps its tables (UNLOGGED, in baton_work) for --resume,
 * the grouped table of its aggregate among them; a table of a run that is
 * gone goes at the next run's start. */
static void test_work_tables_kept_and_swept(void **st)
{
    free(file_write(
        dir, "campaigns/broken.cfg",
        "campaign: { name = \"broken\"; activities = (\n"
        "  { id = \"a\"; type = \"build_audience\"; dimension = \"profiles\"; filter = "
        "\"tier == 'gold' and count(orders where amount > 10) >= 1\"; },\n"
        "  { id = \"b\"; type = \"read_audience\"; name = \"never_saved\"; dimension = "
        "\"profiles\"; },\n"
        "  { id = \"c\"; type = \"combine\"; op = \"union\"; inputs = [ \"a\", \"b\" ]; },\n"
        "  { id = \"e\"; type = \"end\"; input = \"c\"; } ); };\n"));
    char *out = NULL, *err = NULL;
    int rc = run_baton(dir, pg_cfg, &out, &err, "campaign run broken");
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "no audience 'never_saved'"));
    free(out);
    free(err);
    out = NULL;
    assert_int_equal(pg_server_psql(&pg,
                                    "SELECT c.relname, c.relpersistence FROM pg_class c JOIN "
                                    "pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = "
                                    "'baton_work' AND c.relkind = 'r' ORDER BY 1",
                                    &out),
                     0);
    /* run 3 of this data folder (after run3 and back): a's table and the
     * grouped table of its count, both unlogged */
    assert_string_equal(out, "baton_w3_0_0|u\nbaton_w3_g1|u\n");
    free(out);
    /* a stray table of a run this install never had */
    assert_int_equal(
        pg_server_psql(&pg, "CREATE TABLE baton_work.baton_w999_0_0 (_key text)", NULL), 0);
    char *r = baton_ok(pg_cfg, "campaign run gen1");
    free(r);
    out = NULL;
    assert_int_equal(pg_server_psql(&pg,
                                    "SELECT tablename FROM pg_tables WHERE schemaname = "
                                    "'baton_work' ORDER BY 1",
                                    &out),
                     0);
    /* broken's failed run is still the one --resume would finish */
    assert_string_equal(out, "baton_w3_0_0\nbaton_w3_g1\n");
    free(out);
}

/* Bad input: a wrong password, a server that is down, a missing table. */
static void test_bad_input(void **st)
{
    char src[512];
    snprintf(src, sizeof src,
             "plugin = \"source_postgres\"; conninfo = \"host=127.0.0.1 port=%d dbname=%s "
             "user=%s password=wrong-%s\";",
             pg.port, PG_TEST_DB, PG_TEST_PW_USER, "guess");
    char *cfg = write_cfg("badpw.cfg", src, "varbad");
    char *out = NULL, *err = NULL;
    int rc = run_baton(dir, cfg, &out, &err, "campaign plan gen1");
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(err, "password authentication failed"));
    assert_null(strstr(err, "wrong-guess"));
    free(out);
    free(err);
    free(cfg);

    snprintf(src, sizeof src,
             "plugin = \"source_postgres\"; conninfo = \"host=127.0.0.1 port=%d dbname=%s "
             "user=%s connect_timeout=2\";",
             pg.port + 1 == 65536 ? 1 : pg.port + 1, PG_TEST_DB, PG_TEST_USER);
    cfg = write_cfg("down.cfg", src, "vardown");
    out = err = NULL;
    char where[128];
    snprintf(where, sizeof where, "postgresql://127.0.0.1:%d/%s", pg.port + 1, PG_TEST_DB);
    static const char *const cmds[] = {"campaign run gen1", "campaign plan gen1"};
    for (int i = 0; i < 2; i++) {
        out = err = NULL;
        rc = run_baton(dir, cfg, &out, &err, "%s", cmds[i]);
        if (!strstr(err, where))
            fail_msg("%s: no host in: %s", cmds[i], err);
        assert_int_equal(rc, 1); /* a runtime failure, not the files' */
        free(out);
        free(err);
    }
    free(cfg);

    assert_int_equal(
        pg_server_psql(&pg, "ALTER TABLE reservations RENAME TO reservations_old", NULL), 0);
    out = err = NULL;
    rc = run_baton(dir, pg_cfg, &out, &err, "check");
    assert_int_not_equal(rc, 0);
    if (!strstr(err, "has no table 'reservations'") && !strstr(out, "has no table 'reservations'"))
        fail_msg("check did not name the table: %s%s", out, err);
    free(out);
    free(err);
    assert_int_equal(
        pg_server_psql(&pg, "ALTER TABLE reservations_old RENAME TO reservations", NULL), 0);
}

/* check reads the catalog: a column of a type that cannot hold its
 * field is an error, a link column without an index a warning (on
 * SQLite too); the data as generated has neither. */
static void test_check_reads_catalog(void **st)
{
    const char *cfgs[] = {sq_cfg, pg_cfg};
    for (int i = 0; i < 2; i++) {
        char *out = NULL, *err = NULL;
        int rc = run_baton(dir, cfgs[i], &out, &err, "check");
        if (rc != 0 || strstr(err, "index"))
            fail_msg("check %s: %d: %s%s", cfgs[i], rc, out, err);
        free(out);
        free(err);
    }
    assert_int_equal(pg_server_psql(&pg,
                                    "ALTER TABLE orders ALTER COLUMN created_at TYPE text; DROP "
                                    "INDEX reservations_store",
                                    NULL),
                     0);
    char *out = NULL, *err = NULL;
    assert_int_equal(run_baton(dir, pg_cfg, &out, &err, "check"), 2);
    if (!strstr(err, "field orders.created_at is a timestamp, but column 'created_at' of table "
                     "'orders' of source 'crm' is text"))
        fail_msg("%s", err);
    free(out);
    free(err);
    assert_int_equal(pg_server_psql(&pg,
                                    "ALTER TABLE orders ALTER COLUMN created_at TYPE timestamptz "
                                    "USING created_at::timestamptz",
                                    NULL),
                     0);
    out = err = NULL;
    assert_int_equal(run_baton(dir, pg_cfg, &out, &err, "check"), 0);
    if (!strstr(err, "warning: link reservations.store: table 'reservations' of source 'crm' has "
                     "no index on 'store_id'"))
        fail_msg("%s", err);
    free(out);
    free(err);
    assert_int_equal(
        pg_server_psql(&pg, "CREATE INDEX reservations_store ON reservations (store_id)", NULL), 0);
    char *cmd;
    if (asprintf(&cmd, "sqlite3 %s/var/crm.db 'DROP INDEX orders_profile'", dir) < 0)
        abort();
    assert_int_equal(run_capture(cmd, NULL, NULL), 0);
    free(cmd);
    out = err = NULL;
    assert_int_equal(run_baton(dir, sq_cfg, &out, &err, "check"), 0);
    if (!strstr(err, "link orders.profile: table 'orders' of source 'crm' has no index on "
                     "'profile_id'"))
        fail_msg("%s", err);
    free(out);
    free(err);
    if (asprintf(&cmd, "sqlite3 %s/var/crm.db 'CREATE INDEX orders_profile ON orders (profile_id)'",
                 dir) < 0)
        abort();
    assert_int_equal(run_capture(cmd, NULL, NULL), 0);
    free(cmd);
}

/* journey test reads profile.*, linked rows and aggregates from either
 * source with the same answers. */
static void test_journeys_read_the_same(void **st)
{
    free(file_write(
        dir, "journey.cfg",
        "journey: { name = \"jt\"; entry = { event = \"visit\"; }; start = \"c\"; nodes = (\n"
        "  { id = \"c\"; type = \"condition\"; branches = ( { when = \"count(profile.orders where "
        "amount > 150) >= 2 and profile.consent_email\"; next = \"mail\"; } ); otherwise = "
        "\"other\"; },\n"
        "  { id = \"mail\"; type = \"send\"; channel = \"mail\"; next = \"done\";\n"
        "    text = \"{{ profile.first_name }} {{ count(profile.orders) }} {{ "
        "round(sum(profile.orders.amount), 2) }} {{ max(profile.orders.created_at) }} {{ "
        "profile.birth_date }} {{ profile.created_at }} {{ profile.tier }} {{ profile.score }} {{ "
        "profile.consent_sms }} {{#each profile.orders limit 2}}{{ id }}@{{ store.city }} "
        "{{/each}}\"; },\n"
        "  { id = \"other\"; type = \"send\"; channel = \"mail\"; next = \"done\";\n"
        "    text = \"{{ profile.id }} {{ min(profile.orders.amount) }} {{ "
        "exists(profile.reservations where party > 4) }} {{ avg(profile.orders.amount) }}\"; },\n"
        "  { id = \"done\"; type = \"end\"; } ); };\n"));
    buf ev;
    buf_init(&ev);
    for (int i = 1; i <= 60; i++)
        buf_addf(&ev,
                 "{\"id\": \"e%d\", \"type\": \"visit\", \"profile\": \"p%d\", \"time\": "
                 "\"2026-09-01T10:00:00Z\"}\n",
                 i, i * 7);
    free(file_write(dir, "events.jsonl", ev.data));
    buf_free(&ev);
    char *a = baton_ok(sq_cfg, "journey test journey.cfg --events events.jsonl --json");
    char *b = baton_ok(pg_cfg, "journey test journey.cfg --events events.jsonl --json");
    assert_non_null(strstr(a, "@Paris") ? a : strstr(a, "@Lyon"));
    assert_non_null(strstr(a, "\"other\""));
    assert_string_equal(a, b);
    free(a);
    free(b);
}

/* ------------------------------------------------------------------ */
/* Runs in this process, to the fake channel                           */
/* ------------------------------------------------------------------ */

static const char fake_campaign[] =
    "campaign: { name = \"fk\"; activities = (\n"
    "  { id = \"a\"; type = \"build_audience\"; dimension = \"profiles\";\n"
    "    filter = \"count(orders where amount > 150) >= 1 or tier is null\"; },\n"
    "  { id = \"rich\"; type = \"enrich\"; input = \"a\";\n"
    "    add = ( { name = \"spent\"; value = \"coalesce(sum(orders.amount), 0)\"; } ); },\n"
    "  { id = \"s\"; type = \"split\"; input = \"rich\"; mode = \"random\"; seed = 42;\n"
    "    branches = ( { name = \"x\"; percent = 40; }, { name = \"y\"; remainder = true; } ); },\n"
    "  { id = \"one\"; type = \"send\"; channel = \"email\"; input = \"s.x\";\n"
    "    subject = \"{{ first_name }} ({{ tier }}) {{ round(spent, 2) }}\";\n"
    "    text = \"{{ birth_date }} {{ created_at }} {{ consent_sms }} {{ score }} "
    "{{ max(orders.created_at) }}\\n{{#each orders limit 3}}{{ id }}@{{ store.city }}:{{ amount "
    "}} {{/each}}\"; },\n"
    "  { id = \"two\"; type = \"send\"; channel = \"email\"; input = \"s.y\";\n"
    "    subject = \"{{ first_name }}\"; text = \"{{ count(reservations) }} {{ city }}\"; }\n"
    "); };\n";

/* The fake channel's settings for run_fake: a small queue makes a send's
 * SELECT wait for the channel with rows still to stream. */
static const char *fake_settings = "connections = 1;";

typedef struct fake_rig {
    instance *fake;
    dispatcher *d;
    store *st;
    int calls, crash_at; /* crash the server when the send `crash_at` starts */
} fake_rig;

static dispatcher *fake_dispatcher(void *ud, const char *channel, instance **inst)
{
    fake_rig *r = ud;
    if (++r->calls == r->crash_at)
        pg_server_crash(&pg);
    *inst = r->fake;
    return r->d;
}

static char *inproc_cfg(const char *name, const char *source, const char *var)
{
    char *text;
    if (asprintf(&text,
                 "baton: { data_dir = \"%s\"; plugin_path = [ \"%s\" ]; log = { level = "
                 "\"error\"; }; };\n"
                 "sources: { crm: { %s schema = \"%s/conf/schema.cfg\"; }; };\n"
                 "profiles = \"crm\";\n"
                 "channels: { email: { plugin = \"channel_email\"; port = 9; from = \"Shop "
                 "<news@example.com>\"; address = \"email\"; consent = \"consent_email\"; }; };\n"
                 "campaigns = [ \"fake\" ];\n",
                 var, getenv("BATON_PLUGINS"), source, getenv("BATON_SRC")) < 0)
        abort();
    char *path = file_write(dir, name, text);
    free(text);
    return path;
}

/* campaign_run_file of fk with cfg, delivering to the fake channel; the
 * run's exit code. */
static int run_fake(const char *cfg, int resume, int crash_at, char *error, size_t errlen)
{
    diag d;
    diag_init(&d);
    app a;
    act_registry reg;
    if (app_open(&a, cfg, APP_INIT, &d) != 0 || act_registry_load(&reg, &a, &d) != 0) {
        diag_print(&d, stderr);
        fail_msg("app_open %s", cfg);
    }
    char err[512];
    store st;
    assert_int_equal(store_open(&st, a.conf.data_dir, err, sizeof err), 0);
    fake_rig r = {.st = &st, .crash_at = crash_at};
    r.fake = fake_channel_new("email", fake_settings, err, sizeof err);
    assert_non_null(r.fake);
    r.d = dispatch_open(r.fake, &st, &(dispatch_opts){0}, err, sizeof err);
    assert_non_null(r.d);
    char *file = camp_locate(&a, "fk", &d);
    assert_non_null(file);
    camp_run_opts o = {.trigger = resume ? "resume" : "manual",
                       .resume = resume,
                       .dispatcher_for = fake_dispatcher,
                       .dispatcher_ud = &r,
                       .store = &st};
    int rc = campaign_run_file(&a, &reg, file, &o, &d);
    assert_int_equal(dispatch_flush(r.d, 10000), 0);
    dispatch_close(r.d, 1, 10000);
    fake_channel_free(r.fake);
    if (error) {
        /* the run's recorded error */
        sqlite3_stmt *q;
        error[0] = '\0';
        if (sqlite3_prepare_v2(st.db,
                               "SELECT coalesce(error, '') FROM campaign_runs ORDER BY id "
                               "DESC LIMIT 1",
                               -1, &q, NULL) == SQLITE_OK) {
            if (sqlite3_step(q) == SQLITE_ROW)
                snprintf(error, errlen, "%s", (const char *)sqlite3_column_text(q, 0));
            sqlite3_finalize(q);
        }
    }
    store_close(&st);
    free(file);
    act_registry_free(&reg);
    app_close(&a);
    diag_free(&d);
    return rc;
}

static void test_runs_deliver_the_same_messages(void **st)
{
    char *cmd;
    if (asprintf(&cmd, "mkdir -p %s/fake", dir) < 0)
        abort();
    run_capture(cmd, NULL, NULL);
    free(cmd);
    free(file_write(dir, "fake/fk.cfg", fake_campaign));
    char *c1 =
        inproc_cfg("fake_sqlite.cfg", "plugin = \"source_sqlite\"; path = \"var/crm.db\";", "varf");
    char src[512];
    snprintf(src, sizeof src, "plugin = \"source_postgres\"; conninfo = \"%s\";", pg.conninfo);
    char *c2 = inproc_cfg("fake_pg.cfg", src, "varfpg");
    fake_channel_reset();
    fake_channel_record(1);
    assert_int_equal(run_fake(c1, 0, 0, NULL, 0), 0);
    char *a = fake_channel_messages();
    unsigned long n = fake_channel_total();
    fake_channel_reset();
    fake_channel_record(1);
    assert_int_equal(run_fake(c2, 0, 0, NULL, 0), 0);
    char *b = fake_channel_messages();
    assert_true(n > 300);
    assert_int_equal(fake_channel_total(), n);
    assert_non_null(strstr(a, "fk/1/one/p"));
    assert_non_null(strstr(a, "fk/1/two/p"));
    assert_string_equal(a, b);
    free(a);
    free(b);
    free(c1);
    free(c2);
}

/* The server dies when the second send starts: the run fails naming the
 * server; after the restart, --resume sends the rest, nothing twice. */
static void test_server_killed_during_run(void **st)
{
    char src[512];
    snprintf(src, sizeof src, "plugin = \"source_postgres\"; conninfo = \"%s connect_timeout=2\";",
             pg.conninfo);
    char *cfg = inproc_cfg("fake_kill.cfg", src, "varkill");
    fake_channel_reset();
    char error[1024];
    assert_int_equal(run_fake(cfg, 0, 2, error, sizeof error), 1);
    char where[128];
    snprintf(where, sizeof where, "postgresql://127.0.0.1:%d/%s", pg.port, PG_TEST_DB);
    if (!strstr(error, where) || !strstr(error, "activity 'two'"))
        fail_msg("the failure does not say where: %s", error);
    unsigned long first = fake_channel_total();
    assert_true(first > 100); /* send one was done */
    assert_int_equal(pg_server_restart(&pg), 0);
    fake_channel_reset();
    fake_channel_record(1);
    assert_int_equal(run_fake(cfg, 1, 0, error, sizeof error), 0);
    char *m = fake_channel_messages();
    /* only send two's messages now: send one's were delivered before */
    assert_null(strstr(m, "/one/"));
    assert_non_null(strstr(m, "fk/1/two/"));
    unsigned long second = fake_channel_total();
    assert_true(second > 100);
    free(m);
    /* the same total as a run that was never interrupted */
    char *c2 = NULL;
    if (asprintf(&c2, "%s/fake_pg.cfg", dir) < 0)
        abort();
    fake_channel_reset();
    char *cmd;
    if (asprintf(&cmd, "rm -rf %s/varfpg", dir) < 0)
        abort();
    run_capture(cmd, NULL, NULL);
    free(cmd);
    assert_int_equal(run_fake(c2, 0, 0, NULL, 0), 0);
    assert_int_equal(fake_channel_total(), first + second);
    free(c2);
    free(cfg);
}

static int cmp_line(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* text's lines, sorted: a new string. */
static char *sort_lines(const char *text)
{
    char *copy = strdup(text), **v = NULL, *save = NULL;
    size_t n = 0;
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        v = realloc(v, (n + 1) * sizeof *v);
        v[n++] = l;
    }
    qsort(v, n, sizeof *v, cmp_line);
    buf b;
    buf_init(&b);
    buf_adds(&b, "");
    for (size_t i = 0; i < n; i++)
        buf_addf(&b, "%s\n", v[i]);
    free(v);
    free(copy);
    return buf_steal(&b);
}

static uint64_t round_trips(instance *inst)
{
    for (size_t i = 0; i < inst->ncounters; i++)
        if (!strcmp(inst->counters[i]->name, "round_trips"))
            return inst->counters[i]->value;
    fail_msg("source_postgres has no counter round_trips");
    return 0;
}

static int row_reads; /* linked rows read for an evaluation: batches and single reads */

static json_t *counted_rows(void *ud, const schema_entity *ent, const schema_field *col,
                            const baton_value *v, size_t limit, char *err, size_t errlen)
{
    row_reads++;
    return jsource_rows(ud, ent, col, v, limit, err, errlen);
}

static int counted_batch(void *ud, const char *profile_id, json_t **profile, size_t n,
                         const schema_entity *const *ents, const schema_field *const *cols,
                         const baton_value *vals, size_t limit, json_t **rows, char *err,
                         size_t errlen)
{
    row_reads += (int)n;
    return jsource_batch(ud, profile_id, profile, n, ents, cols, vals, limit, rows, err, errlen);
}

/* A journey step reads the profile and the rows of its links in one round
 * trip (a pipeline), with the answers of reading them one by one (a round
 * trip each); and with its aggregates computed by PostgreSQL (one bound
 * statement per link, the profile's row in the same pipeline). */
static void test_journey_step_one_round_trip(void **st)
{
    diag d;
    diag_init(&d);
    app a;
    if (app_open(&a, pg_cfg, APP_INIT, &d) != 0)
        fail_msg("app_open %s", pg_cfg);
    jsource *src = jsource_open(&a, &d);
    instance *inst = jsource_profiles(src);
    assert_non_null(inst);
    jcompile *cc = jcompile_new(&a, NULL, 0, &d);
    jcond c = {.text = "count(profile.orders where amount > 150) * 1000 + "
                       "count(profile.reservations) * 10 + coalesce(profile.score, 0) + "
                       "count(profile.orders where created_at > now() - 200d) * 1000000 + "
                       "coalesce(max(profile.orders.amount where created_at < now()), 0)",
               .line = 1};
    jcond_compile(&c, cc, 0, "test", "node", "value", &d);
    if (d.errors)
        diag_print(&d, stderr);
    assert_int_equal(d.errors, 0);
    int nonzero = 0;
    for (int pass = 0; pass < 3; pass++) { /* 0: prepares the lazy reads */
        for (int i = 1; i <= 40; i++) {
            char id[16];
            snprintf(id, sizeof id, "p%d", i * 13);
            double got[3];
            for (int batched = 0; batched < 3; batched++) {
                jscope sc = {.profile_id = id,
                             .now_ms = (int64_t)NOW * 1000,
                             .profile = jsource_profile_cb,
                             .rows = counted_rows,
                             .batch = batched ? counted_batch : NULL,
                             .aggs = batched == 2 ? jsource_aggs : NULL,
                             .ud = src};
                uint64_t t0 = round_trips(inst);
                row_reads = 0;
                expr_arena arena;
                expr_arena_init(&arena);
                baton_value v;
                char err[256];
                if (jcond_eval(&c, &sc, &arena, &v, err, sizeof err) != 0)
                    fail_msg("%s: %s", id, err);
                got[batched] = v.type == BATON_T_FLOAT ? v.v.f : (double)v.v.i;
                expr_arena_free(&arena);
                jscope_release(&sc);
                uint64_t trips = round_trips(inst) - t0;
                if ((batched == 2) != (row_reads == 0))
                    fail_msg("%s: %d linked rows read (mode %d)", id, row_reads, batched);
                if (pass > 0 && trips != (batched ? 1u : 3u))
                    fail_msg("%s: %s reads took %llu round trips", id,
                             batched == 2 ? "computed by the source"
                             : batched    ? "batched"
                                          : "one-by-one",
                             (unsigned long long)trips);
            }
            if (got[0] != got[1] || got[0] != got[2])
                fail_msg("%s: one by one %g, batched %g, computed by the source %g", id, got[0],
                         got[1], got[2]);
            nonzero += got[0] >= 1000;
        }
    }
    assert_true(nonzero > 0); /* orders were read, not only nothing */
    jcond_release(&c);
    jcompile_free(cc);
    jsource_close(src);
    app_close(&a);
    diag_free(&d);
}

/* Crash the server once deliver() holds messages at the closed gate (a
 * send is streaming: its queue is full, its SELECT waits), then open it. */
static void *crash_when_held(void *arg)
{
    (void)arg;
    if (fake_channel_held(60000) > 0)
        pg_server_crash(&pg);
    fake_channel_set_gate(0);
    return NULL;
}

/* The server dies in the middle of send one's streaming SELECT (a queue
 * of 4 messages holds the rest of its rows back): the run fails naming
 * the server; after the restart --resume sends what was not sent, and no
 * key is sent twice: the two runs together deliver exactly the messages
 * of a run that was never interrupted. */
static void test_server_killed_mid_stream(void **st)
{
    char src[512];
    snprintf(src, sizeof src, "plugin = \"source_postgres\"; conninfo = \"%s connect_timeout=2\";",
             pg.conninfo);
    char *cfg = inproc_cfg("fake_mid.cfg", src, "varmid");
    fake_settings = "connections = 1; queue = 4; batch = 1;";
    fake_channel_reset();
    fake_channel_record(1);
    fake_channel_set_gate(1);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, crash_when_held, NULL), 0);
    char error[1024];
    int rc = run_fake(cfg, 0, 0, error, sizeof error);
    pthread_join(th, NULL);
    assert_int_equal(rc, 1);
    char where[128];
    snprintf(where, sizeof where, "postgresql://127.0.0.1:%d/%s", pg.port, PG_TEST_DB);
    if (!strstr(error, where) || !strstr(error, "activity 'one'"))
        fail_msg("the failure does not say where: %s", error);
    char *m1 = fake_channel_messages();
    unsigned long first = fake_channel_total();
    assert_true(first > 0);
    assert_int_equal(pg_server_restart(&pg), 0);
    fake_channel_reset();
    fake_channel_record(1);
    assert_int_equal(run_fake(cfg, 1, 0, error, sizeof error), 0);
    char *m2 = fake_channel_messages();
    unsigned long second = fake_channel_total();
    assert_true(second > 0);
    print_message("send one cut after %lu messages; --resume sent %lu\n", first, second);
    /* send one was cut in its middle: both runs sent some of it */
    assert_non_null(strstr(m1, "/one/"));
    assert_non_null(strstr(m2, "/one/"));
    /* every message once: both runs' lines, sorted, are those of a run
     * never interrupted */
    buf all;
    buf_init(&all);
    buf_adds(&all, m1);
    buf_adds(&all, m2);
    free(m1);
    free(m2);
    fake_settings = "connections = 1;";
    char *c2 = NULL, *cmd = NULL;
    if (asprintf(&c2, "%s/fake_pg.cfg", dir) < 0 || asprintf(&cmd, "rm -rf %s/varfpg", dir) < 0)
        abort();
    run_capture(cmd, NULL, NULL);
    free(cmd);
    fake_channel_reset();
    fake_channel_record(1);
    assert_int_equal(run_fake(c2, 0, 0, NULL, 0), 0);
    char *whole = fake_channel_messages();
    assert_int_equal(fake_channel_total(), first + second);
    char *got = sort_lines(all.data), *want = sort_lines(whole);
    assert_string_equal(got, want);
    free(got);
    free(want);
    free(whole);
    buf_free(&all);
    free(c2);
    free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_sample_data),
        cmocka_unit_test(test_generated_plans_agree),
        cmocka_unit_test(test_runs_export_the_same),
        cmocka_unit_test(test_work_tables_kept_and_swept),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_check_reads_catalog),
        cmocka_unit_test(test_journeys_read_the_same),
        cmocka_unit_test(test_journey_step_one_round_trip),
        cmocka_unit_test(test_runs_deliver_the_same_messages),
        cmocka_unit_test(test_server_killed_during_run),
        cmocka_unit_test(test_server_killed_mid_stream),
        /* last: the runs above count on their run numbers */
        cmocka_unit_test(test_control_activities_agree),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
